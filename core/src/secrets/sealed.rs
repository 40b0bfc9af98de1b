//! Session-scoped sealed boxes: each MCP session gets an X25519 key pair; clients seal
//! secrets to its public key (libsodium `crypto_box_seal`), so whatever sits between them
//! and cyfr (an LLM, a log) never sees the plaintext. The private key is stored wrapped by
//! the key-encryption key and lives only as long as the session.

use crate::db::{Db, Value};
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::kms::Kms;
use base64::Engine;
use serde_json::{json, Value as Json};
use zeroize::Zeroizing;

/// The algorithm name clients see.
pub const ALG: &str = "libsodium-sealedbox";
/// Largest ciphertext accepted, in bytes (decoded).
pub const MAX_CIPHERTEXT_BYTES: usize = 65536;
/// The resource that publishes a session's public key.
pub const PUBKEY_URI: &str = "mcp+session://encryption/pubkey";

fn context(session_hash: &str) -> String {
    format!("cyfr-session-key|{session_hash}")
}

fn err(msg: &str) -> Error {
    Error::invalid_params(msg)
}

/// Makes the session's key pair unless it has one. Called when the key is first asked for
/// (the pubkey resource), not at `initialize`: anonymous `initialize` floods cost no keys.
pub async fn create(
    db: &impl Db,
    kms: &impl Kms,
    env: &impl Env,
    session_hash: &str,
    expires_at: u64,
) -> Result<()> {
    let mut secret = Zeroizing::new([0u8; 32]);
    env.fill_random(&mut *secret);
    let sk = crypto_box::SecretKey::from(*secret);
    let pk = sk.public_key();
    let kid = kid_of(pk.as_bytes());
    let (kek, wrapped) = kms.wrap(env, &*secret, &context(session_hash)).await?;
    // DO NOTHING, not REPLACE: of two concurrent first reads, the key the first one published
    // stays the session's key. Expired keys are purged with their sessions
    // (`sessions::purge_expired`), not here.
    db.query(
        "INSERT INTO session_keys (session_hash, kid, public_key, kek_id, wrapped_private, expires_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session_hash) DO NOTHING",
        &[session_hash.into(), kid.into(), Value::Blob(pk.as_bytes().to_vec()), kek.into(), Value::Blob(wrapped), Value::Integer(expires_at as i64)],
    )
    .await?;
    Ok(())
}

/// Rewraps session private keys not under the current key-encryption key; how many.
pub async fn rewrap_all(db: &impl Db, kms: &impl Kms, env: &impl Env) -> Result<usize> {
    let rows = db
        .query(
            "SELECT session_hash, kek_id, wrapped_private FROM session_keys WHERE kek_id != ?",
            &[kms.current_id().into()],
        )
        .await?;
    let mut n = 0;
    for r in rows.iter() {
        let (hash, old) = (r.text("session_hash"), r.text("kek_id"));
        let key = kms
            .unwrap(&old, &r.blob("wrapped_private"), &context(&hash))
            .await?;
        let (kek, wrapped) = kms.wrap(env, &key, &context(&hash)).await?;
        db.query(
            "UPDATE session_keys SET kek_id = ?, wrapped_private = ? WHERE session_hash = ? AND kek_id = ?",
            &[kek.into(), Value::Blob(wrapped), hash.into(), old.into()],
        )
        .await?;
        n += 1;
    }
    Ok(n)
}

pub use crate::crypto::kid_of;

/// The public half, as the `mcp+session://encryption/pubkey` resource describes it; the key
/// pair is made on the first read.
pub async fn public_info(
    db: &impl Db,
    kms: &impl Kms,
    env: &impl Env,
    session_hash: &str,
    expires_at: u64,
) -> Result<Json> {
    let select = "SELECT kid, public_key FROM session_keys WHERE session_hash = ?";
    let mut rows = db.query(select, &[session_hash.into()]).await?;
    if rows.rows.is_empty() {
        create(db, kms, env, session_hash, expires_at).await?;
        rows = db.query(select, &[session_hash.into()]).await?;
    }
    let row = rows.first().ok_or_else(|| {
        Error::new(
            Code::SessionExpired,
            "this session has no encryption key; initialize a new session",
        )
    })?;
    Ok(json!({
        "kid": row.text("kid"),
        "alg": ALG,
        "public_key": base64::engine::general_purpose::STANDARD.encode(row.blob("public_key")),
        "encoding": "base64",
        "max_size_bytes": MAX_CIPHERTEXT_BYTES,
    }))
}

/// Whether `v` is a sealed secret: `{"ciphertext": "...", "kid": "..."}`.
pub fn is_sealed(v: &Json) -> bool {
    v.as_object().is_some_and(|o| {
        o.len() == 2
            && o.get("ciphertext").is_some_and(Json::is_string)
            && o.get("kid").is_some_and(Json::is_string)
    })
}

/// Where sealed values can be opened: the session's key, if the feature is on.
pub struct Opener<'a, D, K> {
    /// Storage.
    pub db: &'a D,
    /// Unwraps the session's private key.
    pub kms: &'a K,
    /// The calling session's id hash, if the request has a session.
    pub session_hash: Option<&'a str>,
}

impl<D: Db, K: Kms> Opener<'_, D, K> {
    /// Decrypts one `{"ciphertext","kid"}` object, with the seed's error messages.
    pub async fn open(&self, sealed: &Json) -> Result<Zeroizing<Vec<u8>>> {
        let session = self.session_hash.ok_or_else(|| {
            Error::new(Code::SessionRequired, "sealed secrets need an MCP session: initialize, read mcp+session://encryption/pubkey, and send MCP-Session-Id")
        })?;
        let ct_b64 = sealed
            .get("ciphertext")
            .and_then(Json::as_str)
            .ok_or_else(|| err("a sealed secret needs `ciphertext` and `kid`"))?;
        let kid = sealed
            .get("kid")
            .and_then(Json::as_str)
            .ok_or_else(|| err("a sealed secret needs `ciphertext` and `kid`"))?;
        // Base64 grows 4/3: refuse long input before decoding it.
        if ct_b64.len() > MAX_CIPHERTEXT_BYTES.div_ceil(3) * 4 + 4 {
            return Err(err("Ciphertext too large"));
        }
        let ct = base64::engine::general_purpose::STANDARD
            .decode(ct_b64.trim())
            .map_err(|_| err("Invalid base64 ciphertext"))?;
        if ct.len() > MAX_CIPHERTEXT_BYTES {
            return Err(err("Ciphertext too large"));
        }
        let rows = self
            .db
            .query(
                "SELECT kid, kek_id, wrapped_private FROM session_keys WHERE session_hash = ?",
                &[session.into()],
            )
            .await?;
        // No key yet means the ciphertext was sealed to some other session's key.
        let row = rows.first().ok_or_else(|| err("Key ID mismatch: this session has no encryption key yet (read mcp+session://encryption/pubkey)"))?;
        if !crate::crypto::ct_eq(row.text("kid").as_bytes(), kid.as_bytes()) {
            return Err(err("Key ID mismatch"));
        }
        let raw = self
            .kms
            .unwrap(
                &row.text("kek_id"),
                &row.blob("wrapped_private"),
                &context(session),
            )
            .await?;
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| Error::internal("session key has the wrong size"))?;
        let sk = crypto_box::SecretKey::from(bytes);
        let plain = sk.unseal(&ct).map_err(|_| err("Decryption failed"))?;
        Ok(Zeroizing::new(plain))
    }

    /// Decrypts each entry of `args.encrypted_secrets` (dotted path → sealed object) and
    /// writes the plaintext at that path in `args`, creating objects on the way.
    /// Returns the opened values, for the caller to keep out of what it answers.
    pub async fn hydrate(&self, args: &mut Json) -> Result<Vec<Zeroizing<Vec<u8>>>> {
        let mut opened = Vec::new();
        let Some(map) = args
            .as_object_mut()
            .and_then(|o| o.remove("encrypted_secrets"))
        else {
            return Ok(opened);
        };
        let map = map.as_object().cloned().ok_or_else(|| {
            err("`encrypted_secrets` must map dotted paths to {\"ciphertext\",\"kid\"} objects")
        })?;
        for (path, sealed) in map {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(err(&format!("`{path}` is not a dotted path")));
            }
            let plain = self.open(&sealed).await?;
            let text = String::from_utf8(plain.to_vec())
                .map_err(|_| err("Decryption failed: the secret is not UTF-8 text"))?;
            set_path(args, &path, Json::String(text))?;
            opened.push(plain);
        }
        Ok(opened)
    }
}

fn set_path(root: &mut Json, path: &str, value: Json) -> Result<()> {
    let parts: Vec<&str> = path.split('.').collect();
    let (last, parents) = parts.split_last().ok_or_else(|| err("an empty path"))?;
    let mut cur = root;
    for (i, p) in parents.iter().enumerate() {
        cur = step(cur, p, path, &parts[..i])?;
    }
    match cur {
        // An existing array is entered by index (`steps.0.text`); it never grows.
        Json::Array(items) => {
            let at = index(items.len(), last, path, parents)?;
            items[at] = value;
        }
        Json::Object(obj) => {
            obj.insert(last.to_string(), value);
        }
        _ => {
            return Err(err(&format!(
                "cannot place a secret at `{path}`: `{}` is not an object",
                parents.join(".")
            )))
        }
    }
    Ok(())
}

/// One level down `path`: an object's member (created when missing) or an array's item.
fn step<'a>(cur: &'a mut Json, p: &str, path: &str, above: &[&str]) -> Result<&'a mut Json> {
    match cur {
        Json::Array(items) => {
            let at = index(items.len(), p, path, above)?;
            Ok(&mut items[at])
        }
        Json::Object(obj) => Ok(obj.entry(p.to_string()).or_insert_with(|| json!({}))),
        _ => Err(err(&format!(
            "cannot place a secret at `{path}`: `{}` is not an object",
            above.join(".")
        ))),
    }
}

fn index(len: usize, p: &str, path: &str, above: &[&str]) -> Result<usize> {
    p.parse::<usize>().ok().filter(|&n| n < len).ok_or_else(|| {
        err(&format!(
            "cannot place a secret at `{path}`: `{}` has no item {p}",
            above.join(".")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_create_objects_and_refuse_scalars() {
        let mut v = json!({"host": "api.example.com", "input": {"a": 1}});
        set_path(&mut v, "api_key", json!("k")).unwrap();
        set_path(&mut v, "input.credentials.password", json!("p")).unwrap();
        assert_eq!(
            v,
            json!({"host": "api.example.com", "api_key": "k", "input": {"a": 1, "credentials": {"password": "p"}}})
        );
        assert!(set_path(&mut v, "host.port", json!(1)).is_err());
        let mut v = json!({"steps": [{"text": "x"}, 2]});
        set_path(&mut v, "steps.0.text", json!("s")).unwrap();
        set_path(&mut v, "steps.1", json!("t")).unwrap();
        assert_eq!(v, json!({"steps": [{"text": "s"}, "t"]}));
        assert!(set_path(&mut v, "steps.2", json!(1)).is_err());
        assert!(set_path(&mut v, "steps.x.y", json!(1)).is_err());
    }

    #[test]
    fn sealed_objects_are_recognised_exactly() {
        assert!(is_sealed(&json!({"ciphertext": "x", "kid": "y"})));
        assert!(!is_sealed(&json!({"ciphertext": "x"})));
        assert!(!is_sealed(&json!({"ciphertext": "x", "kid": "y", "z": 1})));
        assert!(!is_sealed(&json!("plain")));
    }
}
