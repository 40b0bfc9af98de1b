//! The short-lived HS256 token a remote host checks on every request.
//!
//! Signed here with `hmac`/`sha2` rather than `jsonwebtoken`: on wasm32 that crate pulls in
//! getrandom 0.2, which does not build for wasm32-unknown-unknown (core must). The bytes are
//! what `jsonwebtoken::encode` makes with `Header::new(HS256)` (tested against it), and the
//! host checks them with `jsonwebtoken`.

use crate::host_api::{HostClaims, HostTarget};
use crate::jwt::{self, Alg};

/// How long a token is good for, in seconds.
pub const TOKEN_TTL_S: u64 = 30;

/// The claims of a token for `host`, request `method path` with `body`, id `jti`, at `now_s`.
pub fn claims(
    host: &HostTarget,
    jti: &str,
    method: &str,
    path: &str,
    body: &[u8],
    now_s: u64,
) -> HostClaims {
    HostClaims {
        aud: host.audience(),
        exp: now_s + TOKEN_TTL_S,
        iat: now_s,
        jti: jti.to_string(),
        req: HostClaims::binding(method, path, body),
    }
}

/// `claims` as a compact JWS signed with HS256 under `key`.
pub fn sign(claims: &HostClaims, key: &[u8]) -> String {
    // The header `jsonwebtoken::Header::new(Algorithm::HS256)` serializes to.
    let header = br#"{"typ":"JWT","alg":"HS256"}"#;
    jwt::sign(
        Alg::HS256,
        header,
        &serde_json::to_vec(claims).unwrap_or_default(),
        key,
    )
}
