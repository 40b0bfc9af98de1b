//! JSON Web Tokens signed with a shared secret (HS256, HS384, HS512): what signs the host
//! token and what verifies the JWTs callers bring (seed 000's claims).
//!
//! Written over `hmac`/`sha2` rather than `jsonwebtoken`: on wasm32 that crate pulls in
//! getrandom 0.2, which does not build for wasm32-unknown-unknown (core must). Tests check
//! both directions against `jsonwebtoken`.

use crate::errors::{Code, Error, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value as Json;
use sha2::{Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

/// The only algorithms accepted: HMAC with SHA-2. `none`, RS*, ES* and PS* never are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// HMAC-SHA256.
    HS256,
    /// HMAC-SHA384.
    HS384,
    /// HMAC-SHA512.
    HS512,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        match s {
            "HS256" => Some(Alg::HS256),
            "HS384" => Some(Alg::HS384),
            "HS512" => Some(Alg::HS512),
            _ => None,
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Alg::HS256 => run::<Hmac<Sha256>>(key, message),
            Alg::HS384 => run::<Hmac<Sha384>>(key, message),
            Alg::HS512 => run::<Hmac<Sha512>>(key, message),
        }
    }
}

/// A compact JWS of `header` and `claims` (already serialized JSON) under `key`.
pub fn sign(alg: Alg, header: &[u8], claims: &[u8], key: &[u8]) -> String {
    let message = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
    let signature = B64URL.encode(alg.mac(key, message.as_bytes()));
    format!("{message}.{signature}")
}

/// The JWT signing key (`jwt_signing_key`): at least [`MIN_KEY_BYTES`], never printed.
#[derive(Clone)]
pub struct JwtKey(Zeroizing<Vec<u8>>);

/// The shortest signing key accepted (seed 000: 256 bits).
pub const MIN_KEY_BYTES: usize = 32;

/// The most clock skew `jwt_clock_skew_seconds` may allow.
pub const MAX_SKEW_S: u64 = 300;

impl JwtKey {
    /// The key from its variable; refused when shorter than [`MIN_KEY_BYTES`].
    pub fn new(raw: &str) -> std::result::Result<JwtKey, String> {
        if raw.len() < MIN_KEY_BYTES {
            return Err(format!(
                "variable jwt_signing_key: must be at least {MIN_KEY_BYTES} bytes (it has {})",
                raw.len()
            ));
        }
        Ok(JwtKey(Zeroizing::new(raw.as_bytes().to_vec())))
    }
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey([redacted])")
    }
}

/// The claims cyfr reads from a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user (non-empty).
    pub sub: String,
    /// Permission strings: the caller's scopes.
    pub permissions: Vec<String>,
    /// `org` or `personal`.
    pub scope: String,
    /// The organisation, if any.
    pub org: Option<String>,
    /// A session id, refused once that session is revoked.
    pub session_id: Option<String>,
}

/// Whether a bearer token has the shape of a JWT (three base64url parts).
pub fn looks_like(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

fn invalid(why: &str) -> Error {
    Error::new(Code::AuthInvalid, format!("Invalid token: {why}"))
}

fn part(s: &str) -> Result<Json> {
    let bytes = B64URL
        .decode(s.trim_end_matches('='))
        .map_err(|_| invalid("not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| invalid("not JSON"))
}

/// Verifies `token` under `key` at `now_s`, allowing `skew_s` of clock skew: the algorithm
/// (HS256/384/512 only), the signature (in constant time), then the claims. Every refusal is
/// -33002, except an expired token: -33003.
pub fn verify(token: &str, key: &JwtKey, now_s: u64, skew_s: u64) -> Result<Claims> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a compact JWS"));
    };
    let header = part(h)?;
    let alg = header
        .get("alg")
        .and_then(Json::as_str)
        .and_then(Alg::parse)
        .ok_or_else(|| invalid("algorithm must be HS256, HS384 or HS512"))?;
    if header.get("crit").is_some() {
        return Err(invalid("critical header parameters are not supported"));
    }
    let given = B64URL
        .decode(s)
        .map_err(|_| invalid("signature not base64url"))?;
    let message = &token[..h.len() + 1 + p.len()];
    // verify_slice compares in constant time.
    let ok = match alg {
        Alg::HS256 => mac_ok::<Hmac<Sha256>>(&key.0, message, &given),
        Alg::HS384 => mac_ok::<Hmac<Sha384>>(&key.0, message, &given),
        Alg::HS512 => mac_ok::<Hmac<Sha512>>(&key.0, message, &given),
    };
    if !ok {
        return Err(invalid("bad signature"));
    }
    let claims = part(p)?;
    let num = |name: &str| -> Result<Option<u64>> {
        match claims.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| invalid(&format!("`{name}` must be a number"))),
        }
    };
    let text = |name: &str| -> Result<Option<String>> {
        match claims.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(&format!("`{name}` must be a string"))),
        }
    };
    let sub = text("sub")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid("`sub` is required"))?;
    if num("nbf")?.is_some_and(|nbf| nbf > now_s.saturating_add(skew_s)) {
        return Err(invalid("not valid yet (`nbf`)"));
    }
    if num("exp")?.is_some_and(|exp| exp.saturating_add(skew_s) <= now_s) {
        return Err(Error::new(Code::AuthExpired, "token expired"));
    }
    let permissions = match claims.get("permissions") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("`permissions` must be an array of strings"))?,
        Some(_) => return Err(invalid("`permissions` must be an array of strings")),
    };
    let scope = text("scope")?.unwrap_or_else(|| "personal".into());
    if scope != "org" && scope != "personal" {
        return Err(invalid("`scope` must be \"org\" or \"personal\""));
    }
    Ok(Claims {
        sub,
        permissions,
        scope,
        org: text("org")?,
        session_id: text("session_id")?,
    })
}

fn mac_ok<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &str, given: &[u8]) -> bool {
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac.verify_slice(given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "0123456789abcdef0123456789abcdef-test";

    fn theirs(alg: jsonwebtoken::Algorithm, claims: &Json, key: &str) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn tokens_jsonwebtoken_signs_verify_with_each_hmac_algorithm() {
        let key = JwtKey::new(KEY).unwrap();
        let claims = json!({"sub": "alice", "permissions": ["execution"], "org": "acme", "scope": "org", "exp": 2000});
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS384,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let c = verify(&theirs(alg, &claims, KEY), &key, 1000, 60).unwrap();
            assert_eq!(c.sub, "alice");
            assert_eq!(c.permissions, vec!["execution".to_string()]);
            assert_eq!(c.scope, "org");
            assert_eq!(c.org.as_deref(), Some("acme"));
        }
    }

    #[test]
    fn our_signatures_are_jsonwebtokens() {
        let header = br#"{"typ":"JWT","alg":"HS384"}"#;
        let ours = sign(Alg::HS384, header, br#"{"sub":"bob"}"#, KEY.as_bytes());
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS384);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let got = jsonwebtoken::decode::<Json>(
            &ours,
            &jsonwebtoken::DecodingKey::from_secret(KEY.as_bytes()),
            &v,
        )
        .unwrap();
        assert_eq!(got.claims["sub"], "bob");
    }

    #[test]
    fn a_short_key_is_refused_and_never_printed() {
        assert!(JwtKey::new("short").is_err());
        let k = JwtKey::new(KEY).unwrap();
        assert!(!format!("{k:?}").contains("0123"));
    }
}
