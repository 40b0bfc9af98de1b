//! The component registry: manifests and content-addressed artifacts in the database.

use crate::crypto::digest;
use crate::db::{Db, Row, Stmt, Value};
use crate::env::rfc3339;
use crate::errors::{Code, Error, Result};
use crate::manifest::Manifest;
use crate::reference::{ComponentType, Reference, Semver, Target, Untyped};
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
    /// Namespace (CYFR's `publisher`).
    pub namespace: String,
    /// Name.
    pub name: String,
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
            namespace: r.text("namespace"),
            name: r.text("name"),
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

    /// The typed reference of exactly this version.
    pub fn as_reference(&self) -> Reference {
        Reference {
            ctype: self.ctype,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            version: Some(self.version.clone()),
        }
    }

    /// The summary shown by search, inspect and register: cyfr's fields (`reference`,
    /// `type`, `registered_at`) and CYFR's row (`id`, `name`, `publisher`, `component_type`,
    /// `component_ref`, `tags`, `category`, `license`, `source`, `inserted_at`, `updated_at`).
    pub fn summary(&self) -> Json {
        let m = self.manifest();
        let at = rfc3339(self.created_at);
        json!({
            "reference": self.reference,
            "type": self.ctype.as_str(),
            "version": self.version,
            "description": self.description,
            "digest": self.digest,
            "registered_at": at,
            "id": format!("{}:{}.{}", self.ctype.as_str(), self.namespace, self.name),
            "name": self.name,
            "publisher": self.namespace,
            "component_type": self.ctype.as_str(),
            "component_ref": self.reference,
            "tags": m.get("tags").filter(|t| t.is_array()).cloned().unwrap_or(json!([])),
            "category": m.get("category").filter(|t| t.is_string()).cloned(),
            "license": m.get("license").filter(|t| t.is_string()).cloned(),
            "source": "registry",
            "inserted_at": at,
            "updated_at": at,
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
    let key = Semver::parse(&manifest.version)
        .map(|s| s.sort_key())
        .unwrap_or_default();
    let id = lookup_stmt(
        manifest.ctype,
        &manifest.namespace,
        &manifest.name,
        Some(&manifest.version),
    );
    let (ident, replace_flag) = (id.params.clone(), Value::Integer(replace as i64));
    // A declared MCP tool name (`tool_name`) belongs to one component: another's is refused,
    // and the writes below change nothing then.
    let declared: Value = manifest
        .raw
        .get("tool_name")
        .and_then(Json::as_str)
        .map(String::from)
        .into();
    // One atomic round trip: what was there before, then writes that change nothing when
    // the version is already taken by other bytes and `replace` was not asked for (the
    // artifact included: no orphan blob is left behind by a refusal).
    let mut artifact_params = vec![
        d.clone().into(),
        Value::Integer(wasm.len() as i64),
        Value::Blob(wasm.to_vec()),
        Value::Integer(now_ms as i64),
        replace_flag.clone(),
    ];
    artifact_params.extend(ident.clone());
    artifact_params.push(declared.clone());
    let mut holder_params = vec![declared.clone()];
    holder_params.extend(ident.into_iter().take(3));
    let mut stmts = vec![
                id,
                Stmt::new(
                    format!("SELECT component_type, namespace, name FROM components WHERE {} LIMIT 1", declared_by_other(1, 2)),
                    holder_params,
                ),
                Stmt::new(
                    format!("INSERT OR IGNORE INTO artifacts (digest, size, bytes, created_at) SELECT ?1, ?2, ?3, ?4 \
                     WHERE (?5 OR NOT EXISTS (SELECT 1 FROM components WHERE component_type = ?6 AND namespace = ?7 AND name = ?8 AND version = ?9 AND digest != ?1)) \
                     AND NOT EXISTS (SELECT 1 FROM components WHERE {})", declared_by_other(10, 6)),
                    artifact_params,
                ),
                Stmt::new(
                    format!("INSERT INTO components (component_type, namespace, name, version, version_key, digest, description, manifest, registered_by, created_at) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE NOT EXISTS (SELECT 1 FROM components WHERE {}) \
                     ON CONFLICT(component_type, namespace, name, version) DO UPDATE SET digest = excluded.digest, \
                     description = excluded.description, manifest = excluded.manifest, registered_by = excluded.registered_by, created_at = excluded.created_at \
                     WHERE ?11 AND components.digest != excluded.digest", declared_by_other(12, 1)),
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
                        replace_flag,
                        declared,
                    ],
                ),
    ];
    if files.readme.is_some() || files.config.is_some() {
        stmts.push(files_stmt(manifest, files, &d));
    }
    let rows = db.batch(&stmts, true).await?;
    if let Some(h) = rows[1].first() {
        let holder = format!(
            "{}:{}.{}",
            h.text("component_type"),
            h.text("namespace"),
            h.text("name")
        );
        return Err(Error::new(
            Code::ComponentInvalid,
            format!(
                "cyfr-manifest.json: field `tool_name` `{}` is already declared by {holder}; choose another",
                manifest.raw["tool_name"].as_str().unwrap_or_default()
            ),
        )
        .with_data(json!({ "held_by": holder })));
    }
    if let Some(c) = rows[0].first().map(|r| Component::from_row(&r)) {
        if c.digest == d {
            return Ok(c);
        }
        if !replace {
            return Err(Error::new(
                Code::ComponentInvalid,
                format!("{reference} is already registered with {}; bump the version, or pass \"replace\": true", c.digest),
            ));
        }
    }
    Ok(Component {
        reference,
        ctype: manifest.ctype,
        namespace: manifest.namespace.clone(),
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        digest: d,
        description: manifest.description.clone(),
        manifest_text: manifest.raw.to_string(),
        created_at: now_ms,
    })
}

/// SQL true of a `components` row of ANOTHER component (type, namespace, name at
/// parameters `?ident`…`?ident+2`) whose manifest declares tool name `?name` (NULL: none).
fn declared_by_other(name: usize, ident: usize) -> String {
    format!(
        "?{name} IS NOT NULL AND json_extract(manifest, '$.tool_name') = ?{name} \
         AND NOT (component_type = ?{} AND namespace = ?{} AND name = ?{})",
        ident,
        ident + 1,
        ident + 2
    )
}

/// The upsert of a version's README.md and config.json.
/// The version's README and config defaults, written only when the version holds `digest`
/// after the registration's upsert (not when a refusal left other bytes there).
fn files_stmt(manifest: &Manifest, files: &Files, digest: &str) -> Stmt {
    Stmt::new(
        "INSERT INTO component_files (component_type, namespace, name, version, readme, config) SELECT ?1, ?2, ?3, ?4, ?5, ?6 \
         WHERE EXISTS (SELECT 1 FROM components WHERE component_type = ?1 AND namespace = ?2 AND name = ?3 AND version = ?4 AND digest = ?7) \
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
            digest.into(),
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

/// The component a [`Target`] names: a typed one as [`resolve`]; an untyped one by its
/// namespace, name (and version) across the three types — -33200 when none has it, -32602
/// naming the candidates when more than one type does.
pub async fn find(db: &impl Db, t: &Target) -> Result<Component> {
    let u = match t {
        Target::Typed(r) => return resolve(db, r).await,
        Target::Untyped(u) => u,
    };
    let s = untyped_stmt(u);
    let rows = db.query(&s.sql, &s.params).await?;
    let found: Vec<Component> = rows.iter().map(|r| Component::from_row(&r)).collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::new(
            Code::ComponentNotFound,
            format!("no component {} is registered (of any type)", u.shown()),
        )
        .with_data(json!({ "reference": u.shown() }))),
        many => {
            let candidates: Vec<&str> = many.iter().map(|c| c.reference.as_str()).collect();
            Err(Error::invalid_params(format!(
                "`{}` is ambiguous: it names {}; say which, with its type (e.g. `{}`) or `type`",
                u.shown(),
                candidates.join(", "),
                candidates[0]
            ))
            .with_data(json!({ "reference": u.shown(), "candidates": candidates })))
        }
    }
}

/// The read of an untyped reference: the version asked for, or each type's highest.
pub fn untyped_stmt(u: &Untyped) -> Stmt {
    match &u.version {
        Some(v) => Stmt::new(
            "SELECT * FROM components WHERE namespace = ? AND name = ? AND version = ? ORDER BY component_type",
            vec![u.namespace.clone().into(), u.name.clone().into(), v.clone().into()],
        ),
        None => Stmt::new(
            "SELECT c.* FROM components c WHERE c.namespace = ?1 AND c.name = ?2 AND c.version_key != '' \
             AND c.version_key = (SELECT max(version_key) FROM components d WHERE d.component_type = c.component_type AND d.namespace = c.namespace AND d.name = c.name) \
             ORDER BY c.component_type",
            vec![u.namespace.clone().into(), u.name.clone().into()],
        ),
    }
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
