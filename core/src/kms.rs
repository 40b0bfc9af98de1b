//! Key-encryption keys behind a small provider trait. The local provider holds one or more
//! 32-byte keys (the first wraps, all unwrap) that come from the environment or a key
//! file, never from a config value.

use crate::env::Env;
use crate::errors::{Error, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use zeroize::Zeroizing;

/// A key-encryption service: wraps and unwraps data keys.
#[allow(async_fn_in_trait)]
pub trait Kms {
    /// The id of the key new wraps are made with.
    fn current_id(&self) -> &str;
    /// Wraps `dek`, binding it to `context`; returns (key id, wrapped bytes).
    async fn wrap(&self, env: &impl Env, dek: &[u8], context: &str) -> Result<(String, Vec<u8>)>;
    /// Unwraps bytes made by `wrap` with key `kek_id` and the same `context`.
    async fn unwrap(
        &self,
        kek_id: &str,
        wrapped: &[u8],
        context: &str,
    ) -> Result<Zeroizing<Vec<u8>>>;
}

/// The local provider: AES-256-GCM under keys held in memory for one request.
pub struct LocalKms {
    keys: Vec<Zeroizing<[u8; 32]>>,
    /// The keys' ids, in the same order: hashed on first use, not for every request that
    /// reads the configuration (`GET /health` spent 2 % of its time on them).
    ids: std::sync::OnceLock<Vec<String>>,
}

impl std::fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        write!(f, "LocalKms(current {})", self.current_id())
    }
}

/// The id of a key-encryption key: 8 bytes of its SHA-256, hex (not secret, not reversible).
pub fn kek_id(key: &[u8; 32]) -> String {
    crate::crypto::sha256_hex(key)[..16].to_string()
}

impl LocalKms {
    /// A keyring from raw keys; the first is current.
    pub fn new(keys: Vec<Zeroizing<[u8; 32]>>) -> Result<LocalKms> {
        if keys.is_empty() {
            return Err(Error::internal("no key-encryption key configured"));
        }
        Ok(LocalKms {
            keys,
            ids: std::sync::OnceLock::new(),
        })
    }

    /// Parses the `master_keys` variable: base64 keys separated by commas, current first.
    pub fn from_variable(v: &str) -> Result<LocalKms> {
        let mut keys = Vec::new();
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            keys.push(parse_key(part).map_err(Error::internal)?);
        }
        LocalKms::new(keys)
    }

    /// Keys for one purpose (`label`), one per key-encryption key, current first:
    /// HMAC-SHA256 of the label under each key, so no new secret is needed and rotation
    /// keeps what the older keys sealed readable.
    pub fn derived(&self, label: &[u8]) -> Vec<Zeroizing<[u8; 32]>> {
        use hmac::Mac;
        self.keys
            .iter()
            .map(|k| {
                let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&k[..])
                    .expect("HMAC takes any key length");
                m.update(label);
                Zeroizing::new(m.finalize().into_bytes().into())
            })
            .collect()
    }

    /// The keys' ids, current first.
    fn ids(&self) -> &[String] {
        self.ids
            .get_or_init(|| self.keys.iter().map(|k| kek_id(k)).collect())
    }

    fn key(&self, id: &str) -> Result<&[u8; 32]> {
        self.ids()
            .iter()
            .position(|k| k == id)
            .map(|i| &*self.keys[i])
            .ok_or_else(|| {
                Error::internal(format!(
                    "key-encryption key {id} is not configured (was the master key rotated away?)"
                ))
            })
    }
}

/// Decodes one base64 (standard or URL-safe) 32-byte key.
pub fn parse_key(b64: &str) -> std::result::Result<Zeroizing<[u8; 32]>, String> {
    let b64 = b64.trim();
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('='))
            })
            .map_err(|_| "a master key must be 32 bytes, base64-encoded".to_string())?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(format!(
            "a master key must be 32 bytes, not {}",
            bytes.len()
        ));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

impl Kms for LocalKms {
    fn current_id(&self) -> &str {
        &self.ids()[0]
    }

    async fn wrap(&self, env: &impl Env, dek: &[u8], context: &str) -> Result<(String, Vec<u8>)> {
        let id = self.current_id().to_string();
        Ok((id, seal(env, &self.keys[0], dek, context.as_bytes())?))
    }

    async fn unwrap(
        &self,
        kek_id: &str,
        wrapped: &[u8],
        context: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        open(self.key(kek_id)?, wrapped, context.as_bytes())
    }
}

/// AES-256-GCM with a random 96-bit nonce; output is nonce || ciphertext || tag.
pub fn seal(env: &impl Env, key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let cipher = Aes256Gcm::new(key.into());
    let mut nonce = [0u8; 12];
    env.fill_random(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::internal("encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens what [`seal`] made; fails if the key, the data or the associated data differ.
pub fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < 12 + 16 {
        return Err(Error::internal("ciphertext too short"));
    }
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(
            Nonce::from_slice(&sealed[..12]),
            Payload {
                msg: &sealed[12..],
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| {
            Error::internal("decryption failed: wrong key, or the ciphertext was altered or moved")
        })
}
