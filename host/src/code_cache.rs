//! Compiled code on disk, sealed with an HMAC so only code this server (or one holding the
//! same key) compiled is ever deserialized.
//!
//! `Component::deserialize` runs the bytes as machine code without checking them, so a
//! cached `.cwasm` anyone else can write would run as any component (or as the router). Each
//! file is `MAGIC ‖ HMAC-SHA256(key, DOMAIN ‖ digest ‖ 0 ‖ code) ‖ code`: the tag binds the
//! code to the digest of the wasm it was compiled from, so neither a swapped file nor a copied
//! tag verifies. The key lives outside the cache directory (`DATA_DIR/code-cache.key`, 0600),
//! or only in memory ([`CacheKey::process`]), in which case the disk cache serves only this
//! process. A file that does not verify is ignored, recompiled from the verified artifact and
//! overwritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::component::Component;
use wasmtime::Engine;
use zeroize::Zeroizing;

/// The key file's name inside a data directory (never inside the cache directory).
pub const KEY_FILE: &str = "code-cache.key";
/// Names another key file, e.g. one that servers sharing a cache directory share (it must
/// not lie inside that directory).
pub const KEY_FILE_ENV: &str = "CYFR_CACHE_KEY_FILE";

/// Where a server with data directory `data_dir` keeps its cache key: `$CYFR_CACHE_KEY_FILE`,
/// else `data_dir/code-cache.key`.
pub fn key_file(data_dir: &Path) -> PathBuf {
    std::env::var_os(KEY_FILE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join(KEY_FILE))
}
/// Marks a sealed file (and its format version).
const MAGIC: &[u8; 16] = b"cyfr-cwasm-hmac1";
/// Separates these tags from any other use of the key.
const DOMAIN: &[u8] = b"cyfr compiled code v1\0";
const TAG_LEN: usize = 32;

/// The secret the cache's tags are made with. Its `Debug` never shows it.
pub struct CacheKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey([REDACTED])")
    }
}

impl CacheKey {
    /// Loads the key from `path` (base64 of 32 bytes), creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> anyhow::Result<CacheKey> {
        match std::fs::read(path) {
            Ok(text) => Self::parse(&text)
                .with_context(|| format!("{} must hold 32 base64 bytes", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                // Written whole to a temporary file, then linked into place: a server starting
                // beside us never reads half a key, and if one made it first we use theirs.
                let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let text = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(key.0.as_slice()),
                );
                let written = (|| {
                    let mut file = opts.open(&tmp)?;
                    file.write_all(text.as_bytes())?;
                    file.sync_all()?;
                    std::fs::hard_link(&tmp, path)
                })();
                let _ = std::fs::remove_file(&tmp);
                match written {
                    Ok(()) => Ok(key),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
                }
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// One random key per process, kept only in memory: sealed files then verify only in the
    /// process that wrote them.
    pub fn process() -> Arc<CacheKey> {
        static KEY: OnceLock<Arc<CacheKey>> = OnceLock::new();
        KEY.get_or_init(|| Arc::new(Self::random().expect("OS randomness for the code cache key")))
            .clone()
    }

    fn random() -> anyhow::Result<CacheKey> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *key).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        Ok(CacheKey(key))
    }

    fn parse(text: &[u8]) -> anyhow::Result<CacheKey> {
        let bytes =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(text.trim_ascii())?);
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("not 32 bytes"))?;
        Ok(CacheKey(Zeroizing::new(arr)))
    }

    fn mac(&self, digest_hex: &str, code: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&*self.0).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(digest_hex.as_bytes());
        mac.update(&[0]);
        mac.update(code);
        mac
    }

    /// `code` sealed for the wasm whose sha256 is `digest_hex`.
    pub fn seal(&self, digest_hex: &str, code: &[u8]) -> Vec<u8> {
        let tag = self.mac(digest_hex, code).finalize().into_bytes();
        let mut out = Vec::with_capacity(MAGIC.len() + TAG_LEN + code.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&tag);
        out.extend_from_slice(code);
        out
    }

    /// The code inside `file` if its tag verifies (in constant time) for `digest_hex`.
    pub fn open<'a>(&self, digest_hex: &str, file: &'a [u8]) -> Option<&'a [u8]> {
        let rest = file.strip_prefix(MAGIC.as_slice())?;
        if rest.len() < TAG_LEN {
            return None;
        }
        let (tag, code) = rest.split_at(TAG_LEN);
        self.mac(digest_hex, code).verify_slice(tag).ok()?;
        Some(code)
    }
}

/// A directory of sealed compiled components (private: 0700).
#[derive(Clone, Debug)]
pub struct CodeCache {
    dir: PathBuf,
    key: Arc<CacheKey>,
}

impl CodeCache {
    /// A cache in `dir` (created, and made 0700) sealed with `key`.
    pub fn new(dir: impl Into<PathBuf>, key: Arc<CacheKey>) -> anyhow::Result<CodeCache> {
        let dir = dir.into();
        private_dir(&dir)?;
        Ok(CodeCache { dir, key })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads `name` if it is there, verifies for `digest_hex` and suits this engine; `None`
    /// (so the caller recompiles) otherwise.
    pub fn load(&self, engine: &Engine, name: &str, digest_hex: &str) -> Option<Component> {
        let path = self.dir.join(name);
        let file = std::fs::read(&path).ok()?;
        let Some(code) = self.key.open(digest_hex, &file) else {
            tracing::warn!(path = %path.display(), "compiled cache entry does not verify; ignored and recompiled");
            return None;
        };
        // SAFETY: the bytes are exactly ones `store` sealed with our key from
        // `Component::serialize` of the wasm with this digest; wasmtime still refuses code
        // from an incompatible engine or configuration.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::info!(path = %path.display(), error = %e, "compiled cache entry unusable; recompiling");
                None
            }
        }
    }

    /// Seals `component`'s compiled code for `digest_hex` and writes it as `name` (through a
    /// temporary file and a rename, so readers never see half a file).
    pub fn store(&self, name: &str, digest_hex: &str, component: &Component) -> anyhow::Result<()> {
        let code = component.serialize()?;
        let sealed = self.key.seal(digest_hex, &code);
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = self.dir.join(name);
        let tmp = path.with_extension(format!(
            "tmp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut file = opts.open(&tmp)?;
            file.write_all(&sealed)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.with_context(|| format!("writing {}", path.display()))
    }
}

/// Creates `dir` if needed and makes it 0700: compiled code and artifacts are not shared.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("making {} private (0700)", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cyfr-code-cache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A component exporting `f: func() -> u32` answering `n`.
    fn answering(engine: &Engine, n: u32) -> Component {
        let wat = format!(
            r#"(component
                (core module $m (func (export "f") (result i32) (i32.const {n})))
                (core instance $i (instantiate $m))
                (alias core export $i "f" (core func $f))
                (func (export "f") (result u32) (canon lift (core func $f))))"#
        );
        Component::new(engine, wat).unwrap()
    }

    fn answer(engine: &Engine, c: &Component) -> u32 {
        let mut store = wasmtime::Store::new(engine, ());
        let linker = wasmtime::component::Linker::<()>::new(engine);
        let instance = linker.instantiate(&mut store, c).unwrap();
        let f = instance
            .get_typed_func::<(), (u32,)>(&mut store, "f")
            .unwrap();
        f.call(&mut store, ()).unwrap().0
    }

    #[test]
    fn swapped_or_forged_files_do_not_load() {
        let root = tmp("swap");
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let key = Arc::new(CacheKey::load_or_create(&root.join(KEY_FILE)).unwrap());
        let cache = CodeCache::new(root.join("cache"), key.clone()).unwrap();
        cache
            .store("a.cwasm", "aa", &answering(&engine, 1))
            .unwrap();
        cache
            .store("b.cwasm", "bb", &answering(&engine, 2))
            .unwrap();
        assert_eq!(
            answer(&engine, &cache.load(&engine, "a.cwasm", "aa").unwrap()),
            1
        );

        // b's file (tag included) under a's name: its tag is for another digest.
        std::fs::copy(root.join("cache/b.cwasm"), root.join("cache/a.cwasm")).unwrap();
        assert!(cache.load(&engine, "a.cwasm", "aa").is_none());
        // Sealed by another server's key for the right digest.
        let other = CacheKey::random().unwrap();
        let code = answering(&engine, 2).serialize().unwrap();
        std::fs::write(root.join("cache/a.cwasm"), other.seal("aa", &code)).unwrap();
        assert!(cache.load(&engine, "a.cwasm", "aa").is_none());
        // Bare `serialize` output (no tag), and a file cut short.
        std::fs::write(root.join("cache/a.cwasm"), &code).unwrap();
        assert!(cache.load(&engine, "a.cwasm", "aa").is_none());
        std::fs::write(root.join("cache/a.cwasm"), &MAGIC[..]).unwrap();
        assert!(cache.load(&engine, "a.cwasm", "aa").is_none());

        // The same key file gives the same key: a restarted server still loads its cache.
        let again = CodeCache::new(
            root.join("cache"),
            Arc::new(CacheKey::load_or_create(&root.join(KEY_FILE)).unwrap()),
        )
        .unwrap();
        assert_eq!(
            answer(&engine, &again.load(&engine, "b.cwasm", "bb").unwrap()),
            2
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&root.join(KEY_FILE)), 0o600);
            assert_eq!(mode(&root.join("cache")), 0o700);
        }
        assert_eq!(format!("{key:?}"), "CacheKey([REDACTED])");
        let _ = std::fs::remove_dir_all(&root);
    }
}
