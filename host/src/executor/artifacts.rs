//! The content-addressed artifact store: component bytes by `sha256:<hex>`, verified before
//! they are stored and again before they are compiled.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::ExecError;

/// `<cache_dir>/artifacts`: one `<hex>.wasm` per stored digest.
pub(crate) struct Artifacts {
    dir: PathBuf,
    /// Unique suffix for temporary files.
    tmp_seq: AtomicU64,
    /// Hex digests seen stored: a file is never changed in place, so a run need not stat it
    /// again. One removed since is found missing when it must be read (no compiled form of
    /// it is held); until then its verified compiled code runs, as it would have anyway.
    present: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Artifacts {
    /// The store in `dir` (which must exist).
    pub(crate) fn new(dir: PathBuf) -> Artifacts {
        Artifacts {
            dir,
            tmp_seq: AtomicU64::new(0),
            present: Default::default(),
        }
    }

    /// The store's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `bytes` under `digest` after checking that they hash to it; a no-op when present.
    pub(crate) fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), ExecError> {
        let actual = digest_of(bytes);
        if digest != actual {
            return Err(ExecError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        let hex = &actual["sha256:".len()..];
        let path = self.path(hex);
        if path.is_file() {
            return Ok(());
        }
        self.write_atomic(&path, bytes)
            .map_err(|e| ExecError::Internal(format!("storing artifact {digest}: {e}")))
    }

    /// Whether the bytes of `digest` are stored.
    pub(crate) fn has(&self, digest: &str) -> bool {
        parse_digest(digest).is_some_and(|hex| self.has_hex(hex))
    }

    /// Whether the bytes of the digest with hex part `hex` are stored.
    pub(crate) fn has_hex(&self, hex: &str) -> bool {
        let present = || self.present.lock().unwrap_or_else(|p| p.into_inner());
        if present().contains(hex) {
            return true;
        }
        let stored = self.path(hex).is_file();
        if stored {
            present().insert(hex.to_string());
        }
        stored
    }

    /// The stored bytes of `hex`, hashed again: a file changed on disk is refused.
    pub(crate) fn read_verified(&self, hex: &str, digest: &str) -> Result<Vec<u8>, ExecError> {
        let bytes = match std::fs::read(self.path(hex)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ExecError::ArtifactMissing {
                    digest: digest.to_string(),
                });
            }
            Err(e) => {
                return Err(ExecError::Internal(format!(
                    "reading artifact {digest}: {e}"
                )))
            }
        };
        let actual = hex_sha256(&bytes);
        if actual != hex {
            return Err(ExecError::DigestMismatch {
                expected: digest.to_string(),
                actual: format!("sha256:{actual}"),
            });
        }
        Ok(bytes)
    }

    fn path(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}.wasm"))
    }

    /// Writes via a unique temporary file and a rename, so readers never see a partial file.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp-{}-{seq}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// The content address of `bytes`: `"sha256:<lowercase hex>"`.
pub(crate) fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex_sha256(bytes))
}

/// `"sha256:<64 lowercase hex>"` → the hex part; anything else → `None` (so a digest can never
/// smuggle a path into the cache directory).
pub(crate) fn parse_digest(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

fn hex_sha256(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let hash = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in hash {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}
