//! The component registry: manifests and content-addressed artifacts in the database.

use crate::crypto::digest;
use crate::db::{Db, Row, Stmt, Value};
use crate::env::rfc3339;
use crate::errors::{Code, Error, Result};
use crate::manifest::Manifest;
use crate::reference::{ComponentType, Reference, Semver};
use serde_json::{json, Value as Json};

/// Largest artifact accepted.
pub const MAX_ARTIFACT_BYTES: usize = 32 << 20;

/// A registered component.
#[derive(Clone, Debug)]
pub struct Component {
    /// Canonical reference with version.
    pub reference: String,
    /// Type.
    pub ctype: ComponentType,
    /// Version.
    pub version: String,
    /// `sha256:…` of the wasm.
    pub digest: String,
    /// Description.
    pub description: String,
    /// The manifest as registered, as stored (parsed only when shown: a run never needs it).
    pub manifest_text: String,
    /// Unix ms.
    pub created_at: u64,
}

impl Component {
    /// The component a `components` row holds.
    pub(crate) fn from_row(r: &Row<'_>) -> Component {
        let ctype =
            ComponentType::parse(&r.text("component_type")).unwrap_or(ComponentType::Reagent);
        Component {
            reference: format!(
                "{}:{}.{}:{}",
                ctype.as_str(),
                r.text("namespace"),
                r.text("name"),
                r.text("version")
            ),
            ctype,
            version: r.text("version"),
            digest: r.text("digest"),
            description: r.text("description"),
            manifest_text: r.text("manifest"),
            created_at: r.int("created_at") as u64,
        }
    }

    /// The manifest as registered (`null` if unreadable).
    pub fn manifest(&self) -> Json {
        serde_json::from_str(&self.manifest_text).unwrap_or(Json::Null)
    }

    /// The summary shown by search and register.
    pub fn summary(&self) -> Json {
        json!({
            "reference": self.reference,
            "type": self.ctype.as_str(),
            "version": self.version,
            "description": self.description,
            "digest": self.digest,
            "registered_at": rfc3339(self.created_at),
        })
    }
}

/// Largest README.md kept with a version (what `guide.readme` shows).
pub const MAX_README_BYTES: usize = 64 << 10;
/// Largest config.json kept with a version (its config defaults).
pub const MAX_CONFIG_BYTES: usize = 16 << 10;

/// The optional files of a component directory kept with its version: README.md and the
/// config.json defaults.
#[derive(Clone, Debug, Default)]
pub struct Files {
    /// README.md, as text.
    pub readme: Option<String>,
    /// config.json: a JSON object of defaults.
    pub config: Option<serde_json::Map<String, Json>>,
}

impl Files {
    /// Checks README text and config.json text (or an object) within their bounds.
    pub fn check(readme: Option<String>, config: Option<Json>) -> Result<Files> {
        if let Some(r) = &readme {
            if r.len() > MAX_README_BYTES {
                return Err(Error::new(
                    Code::ComponentInvalid,
                    format!(
                        "README.md is {} bytes; the limit is {MAX_README_BYTES}",
                        r.len()
                    ),
                ));
            }
        }
        let config = match config {
            None | Some(Json::Null) => None,
            Some(Json::String(text)) => Some(serde_json::from_str(&text).map_err(|e| {
                Error::new(
                    Code::ComponentInvalid,
                    format!("config.json is not valid JSON: {e}"),
                )
            })?),
            Some(v) => Some(v),
        };
        let config = match config {
            None => None,
            Some(Json::Object(o)) => {
                let len = Json::Object(o.clone()).to_string().len();
                if len > MAX_CONFIG_BYTES {
                    return Err(Error::new(
                        Code::ComponentInvalid,
                        format!("config.json is {len} bytes; the limit is {MAX_CONFIG_BYTES}"),
                    ));
                }
                Some(o)
            }
            Some(_) => {
                return Err(Error::new(
                    Code::ComponentInvalid,
                    "config.json must be a JSON object of defaults",
                ))
            }
        };
        Ok(Files { readme, config })
    }
}

/// Registers a checked manifest with its wasm. Registering the same bytes again is a
/// no-op; different bytes under an existing version are refused unless `replace`.
pub async fn register(
    db: &impl Db,
    manifest: &Manifest,
    wasm: &[u8],
    by: Option<&str>,
    replace: bool,
    now_ms: u64,
) -> Result<Component> {
    register_with(db, manifest, wasm, &Files::default(), by, replace, now_ms).await
}

/// [`register`], keeping the directory's README.md and config.json with the version (in
/// the same batch as the component's row, so it costs no round trip more). Registering the
/// same bytes again refreshes them.
pub async fn register_with(
    db: &impl Db,
    manifest: &Manifest,
    wasm: &[u8],
    files: &Files,
    by: Option<&str>,
    replace: bool,
    now_ms: u64,
) -> Result<Component> {
    check_wasm(manifest.ctype, wasm)?;
    let d = digest(wasm);
    let reference = manifest.reference();
    let s = existing_stmt(manifest);
    let existing = db.query(&s.sql, &s.params).await?;
    let existing = existing.first().map(|r| Component::from_row(&r));
    if let Some(c) = &existing {
        if c.digest == d {
            if files.readme.is_some() || files.config.is_some() {
                let s = files_stmt(manifest, files);
                db.query(&s.sql, &s.params).await?;
            }
            return Ok(c.clone());
        }
        if !replace {
            return Err(Error::new(
                Code::ComponentInvalid,
                format!("{reference} is already registered with {}; bump the version, or pass \"replace\": true", c.digest),
            ));
        }
    }
    let artifact = Stmt::new(
        "INSERT OR IGNORE INTO artifacts (digest, size, bytes, created_at) VALUES (?, ?, ?, ?)",
        vec![
            d.clone().into(),
            Value::Integer(wasm.len() as i64),
            Value::Blob(wasm.to_vec()),
            Value::Integer(now_ms as i64),
        ],
    );
    let key = Semver::parse(&manifest.version)
        .map(|s| s.sort_key())
        .unwrap_or_default();
    let row = Stmt::new(
        "INSERT INTO components (component_type, namespace, name, version, version_key, digest, description, manifest, registered_by, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(component_type, namespace, name, version) DO UPDATE SET digest = excluded.digest, \
         description = excluded.description, manifest = excluded.manifest, registered_by = excluded.registered_by, created_at = excluded.created_at",
        vec![
            manifest.ctype.as_str().into(),
            manifest.namespace.clone().into(),
            manifest.name.clone().into(),
            manifest.version.clone().into(),
            key.into(),
            d.clone().into(),
            manifest.description.clone().into(),
            manifest.raw.to_string().into(),
            by.map(String::from).into(),
            Value::Integer(now_ms as i64),
        ],
    );
    // One round trip: the artifact, the row and the files together, or none of them.
    db.batch(&[artifact, row, files_stmt(manifest, files)], true)
        .await?;
    Ok(Component {
        reference,
        ctype: manifest.ctype,
        version: manifest.version.clone(),
        digest: d,
        description: manifest.description.clone(),
        manifest_text: manifest.raw.to_string(),
        created_at: now_ms,
    })
}

/// The read of the version a manifest registers, that [`register_with`] makes first (to
/// send ahead).
pub fn existing_stmt(manifest: &Manifest) -> Stmt {
    lookup_stmt(
        manifest.ctype,
        &manifest.namespace,
        &manifest.name,
        Some(&manifest.version),
    )
}

/// The upsert of a version's README.md and config.json.
fn files_stmt(manifest: &Manifest, files: &Files) -> Stmt {
    Stmt::new(
        "INSERT INTO component_files (component_type, namespace, name, version, readme, config) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT(component_type, namespace, name, version) DO UPDATE SET readme = excluded.readme, config = excluded.config",
        vec![
            manifest.ctype.as_str().into(),
            manifest.namespace.clone().into(),
            manifest.name.clone().into(),
            manifest.version.clone().into(),
            files.readme.clone().into(),
            files
                .config
                .as_ref()
                .map(|c| Json::Object(c.clone()).to_string())
                .into(),
        ],
    )
}

/// The bytes are within the size limit and look like a component.
fn check_wasm(ctype: ComponentType, wasm: &[u8]) -> Result<()> {
    if wasm.len() > MAX_ARTIFACT_BYTES {
        return Err(Error::new(
            Code::ComponentInvalid,
            format!(
                "{}.wasm is {} bytes; the limit is {MAX_ARTIFACT_BYTES}",
                ctype.as_str(),
                wasm.len()
            ),
        ));
    }
    // Every component starts with the wasm magic and the component-model layer byte.
    if wasm.len() < 8 || &wasm[0..4] != b"\0asm" || wasm[6..8] != [0x01, 0x00] {
        return Err(Error::new(
            Code::ComponentInvalid,
            format!(
                "{}.wasm is not a WebAssembly component (build it for wasm32-wasip2)",
                ctype.as_str()
            ),
        ));
    }
    Ok(())
}

async fn lookup(
    db: &impl Db,
    ctype: ComponentType,
    ns: &str,
    name: &str,
    version: Option<&str>,
) -> Result<Option<Component>> {
    let s = lookup_stmt(ctype, ns, name, version);
    let rows = db.query(&s.sql, &s.params).await?;
    Ok(rows.first().map(|r| Component::from_row(&r)))
}

fn lookup_stmt(ctype: ComponentType, ns: &str, name: &str, version: Option<&str>) -> Stmt {
    let key = vec![ctype.as_str().into(), ns.into(), name.into()];
    match version {
        Some(v) => {
            let mut params = key;
            params.push(v.into());
            Stmt::new(
                "SELECT * FROM components WHERE component_type = ? AND namespace = ? AND name = ? AND version = ?",
                params,
            )
        }
        // The highest version by semver precedence, not the newest row; a row from before
        // versions were checked whose version is not semver (key '') is never picked.
        None => Stmt::new(
            "SELECT * FROM components WHERE component_type = ? AND namespace = ? AND name = ? AND version_key != '' ORDER BY version_key DESC LIMIT 1",
            key,
        ),
    }
}

/// The read [`resolve`] makes for `r`, to send ahead with an earlier round trip.
pub fn resolve_stmt(r: &Reference) -> Stmt {
    lookup_stmt(r.ctype, &r.namespace, &r.name, r.version.as_deref())
}

/// The component a reference names, or -33200.
pub async fn resolve(db: &impl Db, r: &Reference) -> Result<Component> {
    lookup(db, r.ctype, &r.namespace, &r.name, r.version.as_deref())
        .await?
        .ok_or_else(|| {
            Error::new(
                Code::ComponentNotFound,
                format!("component {} is not registered", r.canonical()),
            )
            .with_data(json!({ "reference": r.canonical() }))
        })
}

/// Components whose id or description contains `query` (case-insensitive), highest version of each.
pub async fn search(
    db: &impl Db,
    query: &str,
    ctype: Option<ComponentType>,
    limit: u32,
) -> Result<Vec<Component>> {
    let pattern = format!(
        "%{}%",
        query
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = db
        .query(
            "SELECT c.* FROM components c \
             WHERE (?1 IS NULL OR c.component_type = ?1) \
             AND (lower(c.namespace || '.' || c.name) LIKE ?2 ESCAPE '\\' OR lower(c.description) LIKE ?2 ESCAPE '\\') \
             AND c.version_key = (SELECT max(version_key) FROM components d WHERE d.component_type = c.component_type AND d.namespace = c.namespace AND d.name = c.name) \
             ORDER BY c.namespace, c.name LIMIT ?3",
            &[ctype.map(|t| t.as_str().to_string()).into(), pattern.into(), Value::Integer(limit as i64)],
        )
        .await?;
    Ok(rows.iter().map(|r| Component::from_row(&r)).collect())
}

/// Every registered version of the component a reference names, highest first.
pub async fn versions(db: &impl Db, r: &Reference) -> Result<Vec<String>> {
    let s = versions_stmt(r);
    let rows = db.query(&s.sql, &s.params).await?;
    Ok(rows.iter().map(|r| r.text("version")).collect())
}

/// The read of [`versions`], to send ahead.
pub fn versions_stmt(r: &Reference) -> Stmt {
    Stmt::new(
        "SELECT version FROM components WHERE component_type = ? AND namespace = ? AND name = ? ORDER BY version_key DESC",
        vec![r.ctype.as_str().into(), r.namespace.clone().into(), r.name.clone().into()],
    )
}

/// Recomputes every row's `version_key` with the current [`Semver::sort_key`]: run once by
/// the migration that changed the encoding, so old rows order like new ones.
pub async fn rekey_versions(db: &impl Db) -> Result<()> {
    let rows = db
        .query(
            "SELECT component_type, namespace, name, version FROM components",
            &[],
        )
        .await?;
    for r in rows.iter() {
        // A version that no longer parses sorts lowest rather than breaking the lookup.
        let key = Semver::parse(&r.text("version"))
            .map(|s| s.sort_key())
            .unwrap_or_default();
        db.query(
            "UPDATE components SET version_key = ? WHERE component_type = ? AND namespace = ? AND name = ? AND version = ?",
            &[key.into(), r.text("component_type").into(), r.text("namespace").into(), r.text("name").into(), r.text("version").into()],
        )
        .await?;
    }
    Ok(())
}

/// The bytes of an artifact.
pub async fn artifact(db: &impl Db, digest: &str) -> Result<Vec<u8>> {
    let rows = db
        .query(
            "SELECT bytes FROM artifacts WHERE digest = ?",
            &[digest.into()],
        )
        .await?;
    rows.first().map(|r| r.blob("bytes")).ok_or_else(|| {
        Error::new(
            Code::RegistryUnavailable,
            format!("artifact {digest} is missing from the registry"),
        )
    })
}
