//! The short-lived HS256 token a remote host checks on every request.
//!
//! Signed here with `hmac`/`sha2` rather than `jsonwebtoken`: on wasm32 that crate pulls in
//! getrandom 0.2, which does not build for wasm32-unknown-unknown (core must). The bytes are
//! what `jsonwebtoken::encode` makes with `Header::new(HS256)` (tested against it), and the
//! host checks them with `jsonwebtoken`.

use crate::host_api::{HostClaims, HostTarget};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

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
    let header = B64URL.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
    let body = B64URL.encode(serde_json::to_vec(claims).unwrap_or_default());
    let message = format!("{header}.{body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    let signature = B64URL.encode(mac.finalize().into_bytes());
    format!("{message}.{signature}")
}
