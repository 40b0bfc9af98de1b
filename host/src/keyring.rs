//! The key-encryption keys of a self-hosted cyfr: from `CYFR_MASTER_KEY` (and, while
//! rotating, `CYFR_MASTER_KEY_PREVIOUS`) or from key files in the data directory, never
//! from a config value. `rotate` rewraps data and session keys only, and can be re-run if interrupted.

use crate::core_db::{CoreDb, NativeEnv};
use anyhow::{bail, Context, Result};
use base64::Engine;
use cyfr_core::secrets::kms::{parse_key, LocalKms};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const KEY_FILE: &str = "master.key";
const NEXT_FILE: &str = "master.key.next";

fn env_key(name: &str) -> Result<Option<Zeroizing<[u8; 32]>>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(
            parse_key(&v).map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
        )),
        _ => Ok(None),
    }
}

fn file_key(path: &Path) -> Result<Option<Zeroizing<[u8; 32]>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            parse_key(&Zeroizing::new(text))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The keys in force, current first: the environment's if set, else the key files
/// (`master.key.next` is current while a rotation is under way).
pub fn load(data_dir: &Path) -> Result<Vec<Zeroizing<[u8; 32]>>> {
    let mut keys = Vec::new();
    if let Some(k) = env_key("CYFR_MASTER_KEY")? {
        keys.push(k);
        keys.extend(env_key("CYFR_MASTER_KEY_PREVIOUS")?);
        return Ok(keys);
    }
    keys.extend(file_key(&data_dir.join(NEXT_FILE))?);
    keys.extend(file_key(&data_dir.join(KEY_FILE))?);
    if keys.is_empty() {
        bail!(
            "no master key: set CYFR_MASTER_KEY or run `cyfr init` (which writes {}/{KEY_FILE})",
            data_dir.display()
        );
    }
    Ok(keys)
}

/// The router's `master_keys` variable: base64 keys, comma-separated, current first.
pub fn variable(data_dir: &Path) -> Result<String> {
    let keys = load(data_dir)?;
    Ok(keys
        .iter()
        .map(|k| base64::engine::general_purpose::STANDARD.encode(**k))
        .collect::<Vec<_>>()
        .join(","))
}

/// Whether the keys come from the environment (`CYFR_MASTER_KEY`) rather than key files.
pub fn env_mode() -> bool {
    std::env::var("CYFR_MASTER_KEY").is_ok_and(|v| !v.trim().is_empty())
}

/// How long a running server trusts its cached key files before `stat`ing them again;
/// `rotate` waits longer than this before rewrapping, so every server has the new key by then.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The `master_keys` variable of a running server, read again only when a key file changed
/// (a `rotate-master` next to it), and the files are `stat`ed at most once per [`RECHECK`],
/// so a request usually costs neither a read nor a syscall.
pub struct KeyVariable {
    data_dir: PathBuf,
    cached: std::sync::Mutex<Option<Cached>>,
}

/// The last value read, the file stamps it was read under, and when they were last checked.
struct Cached {
    stamps: FileStamps,
    checked: std::time::Instant,
    value: Zeroizing<String>,
}

/// Modification times of `master.key.next` and `master.key` (`None`: missing).
type FileStamps = [Option<std::time::SystemTime>; 2];

impl KeyVariable {
    /// Reads the key files of `data_dir` on first use and whenever they change.
    pub fn new(data_dir: &Path) -> KeyVariable {
        KeyVariable {
            data_dir: data_dir.to_path_buf(),
            cached: std::sync::Mutex::new(None),
        }
    }

    /// The variable's value now.
    pub fn get(&self) -> Result<String> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if let Some(c) = cached.as_ref() {
            if now.duration_since(c.checked) < RECHECK {
                return Ok(c.value.to_string());
            }
        }
        let stamp = |f: &str| {
            std::fs::metadata(self.data_dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        };
        let stamps = [stamp(NEXT_FILE), stamp(KEY_FILE)];
        if let Some(c) = cached.as_mut() {
            if c.stamps == stamps {
                c.checked = now;
                return Ok(c.value.to_string());
            }
        }
        let value = Zeroizing::new(variable(&self.data_dir)?);
        *cached = Some(Cached {
            stamps,
            checked: now,
            value: value.clone(),
        });
        Ok(value.to_string())
    }
}

fn new_key_file(path: &Path) -> Result<()> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *key).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(*key));
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    std::io::Write::write_all(&mut opts.open(&tmp)?, text.as_bytes())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Writes `master.key` for a new data directory unless the environment provides the key.
pub fn init(data_dir: &Path) -> Result<Option<PathBuf>> {
    if env_mode() {
        return Ok(None);
    }
    let path = data_dir.join(KEY_FILE);
    new_key_file(&path)?;
    Ok(Some(path))
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    /// Data keys rewrapped under the new key.
    pub data_keys: usize,
    /// Session keys rewrapped.
    pub session_keys: usize,
    /// The id of the key now current.
    pub kek_id: String,
}

/// Rotates the key-encryption key: a new key wraps every data key (secret ciphertexts are
/// untouched), then replaces the old key file. With `CYFR_MASTER_KEY` set, the new key is
/// that one and the old one must be in `CYFR_MASTER_KEY_PREVIOUS`.
pub async fn rotate(data_dir: &Path, db: &CoreDb) -> Result<Rotation> {
    let env_mode = env_mode();
    if !env_mode {
        if !data_dir.join(NEXT_FILE).exists() {
            new_key_file(&data_dir.join(NEXT_FILE))?;
        }
        // A running server rechecks the key files once per RECHECK: wait until it has the
        // new key, so it can read what is rewrapped next and wraps new data keys under it.
        tokio::time::sleep(RECHECK + std::time::Duration::from_millis(200)).await;
    }
    let kms = LocalKms::new(load(data_dir)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let data_keys = cyfr_core::secrets::envelope::rewrap_all(db, &kms, &NativeEnv)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let session_keys = cyfr_core::secrets::sealed::rewrap_all(db, &kms, &NativeEnv)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !env_mode {
        // Everything is under the new key now: it replaces the old file in one rename.
        std::fs::rename(data_dir.join(NEXT_FILE), data_dir.join(KEY_FILE))
            .context("replacing master.key")?;
    }
    Ok(Rotation {
        data_keys,
        session_keys,
        kek_id: cyfr_core::secrets::kms::Kms::current_id(&kms).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed at the end of the test.
    struct Dir(PathBuf);
    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_replaced_key_file_is_picked_up() {
        let dir = std::env::temp_dir().join(format!("cyfr-keyvar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = Dir(dir);
        new_key_file(&dir.path().join(KEY_FILE)).unwrap();
        let var = KeyVariable::new(dir.path());
        let first = var.get().unwrap();
        assert_eq!(first, variable(dir.path()).unwrap());
        // Wait out the mtime granularity so the new file's stamp differs, then rotate the file.
        std::thread::sleep(std::time::Duration::from_millis(20));
        new_key_file(&dir.path().join(KEY_FILE)).unwrap();
        let second = variable(dir.path()).unwrap();
        assert_ne!(first, second);
        // Poll: the cache rechecks after RECHECK; no bound on when, only that it does.
        while var.get().unwrap() != second {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
