//! A component's config and README: the `config.json` defaults and `README.md` a version
//! was registered with (`component_files`), and per-component overrides
//! (`component_config`, one row per key, for every version). The effective config is the
//! defaults with the overrides over them. Each read or write is one round trip.

use crate::db::{Db, Rows, Stmt, Value};
use crate::errors::{Code, Error, Result};
use crate::reference::Reference;
use crate::registry::Component;
use serde_json::{Map, Value as Json};

/// Most override keys one component may hold.
pub const MAX_KEYS: i64 = 64;
/// Largest override value, as JSON text.
pub const MAX_VALUE_BYTES: usize = 4096;

/// A registered version with its stored files, and the component's overrides.
pub struct Config {
    /// The version the reference resolved to.
    pub component: Component,
    /// Its README.md, if it was registered with one.
    pub readme: Option<String>,
    /// Its config.json defaults (empty when none).
    pub defaults: Map<String, Json>,
    /// The overrides set for the component (every version).
    pub overrides: Map<String, Json>,
}

impl Config {
    /// The defaults with the overrides over them.
    pub fn effective(&self) -> Map<String, Json> {
        let mut m = self.defaults.clone();
        m.extend(self.overrides.clone());
        m
    }
}

/// The component `r` names (its highest version when none is given) with its files.
fn target_stmt(r: &Reference) -> Stmt {
    let mut params: Vec<Value> = vec![
        r.ctype.as_str().into(),
        r.namespace.clone().into(),
        r.name.clone().into(),
    ];
    let pick = match &r.version {
        Some(v) => {
            params.push(v.clone().into());
            "AND c.version = ?"
        }
        None => "AND c.version_key != '' ORDER BY c.version_key DESC LIMIT 1",
    };
    Stmt::new(
        format!(
            "SELECT c.*, f.readme AS readme_text, f.config AS config_defaults FROM components c \
             LEFT JOIN component_files f ON f.component_type = c.component_type AND f.namespace = c.namespace \
             AND f.name = c.name AND f.version = c.version \
             WHERE c.component_type = ? AND c.namespace = ? AND c.name = ? {pick}"
        ),
        params,
    )
}

fn overrides_stmt(r: &Reference) -> Stmt {
    Stmt::new(
        "SELECT key, value FROM component_config WHERE component_type = ? AND namespace = ? AND name = ? ORDER BY key",
        vec![
            r.ctype.as_str().into(),
            r.namespace.clone().into(),
            r.name.clone().into(),
        ],
    )
}

fn not_found(r: &Reference) -> Error {
    Error::new(
        Code::ComponentNotFound,
        format!("component {} is not registered", r.canonical()),
    )
    .with_data(serde_json::json!({ "reference": r.canonical() }))
}

fn object(text: Option<String>) -> Map<String, Json> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn overrides(rows: &Rows) -> Map<String, Json> {
    rows.iter()
        .map(|r| {
            let v = serde_json::from_str(&r.text("value")).unwrap_or(Json::Null);
            (r.text("key"), v)
        })
        .collect()
}

/// The component `r` names, its files and its overrides: one round trip.
pub async fn read(db: &impl Db, r: &Reference) -> Result<Config> {
    let rows = db
        .batch(&[target_stmt(r), overrides_stmt(r)], false)
        .await?;
    let row = rows[0].first().ok_or_else(|| not_found(r))?;
    Ok(Config {
        component: Component::from_row(&row),
        readme: row.opt_text("readme_text"),
        defaults: object(row.opt_text("config_defaults")),
        overrides: overrides(&rows[1]),
    })
}

/// A config key: 1-64 of letters, digits, `_`, `-` and `.`.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_params(format!(
            "`key` must be 1-64 letters, digits, '_', '-' or '.' (got `{}`)",
            key.escape_debug()
        )))
    }
}

/// Sets override `key` of the registered component `r` names: one round trip (the write,
/// guarded by the component's existence and the key cap, and the two reads saying which
/// guard refused).
pub async fn set(
    db: &impl Db,
    r: &Reference,
    key: &str,
    value: &Json,
    by: &str,
    now_ms: u64,
) -> Result<()> {
    check_key(key)?;
    let text = value.to_string();
    if text.len() > MAX_VALUE_BYTES {
        return Err(Error::invalid_params(format!(
            "`value` is {} bytes as JSON; the limit is {MAX_VALUE_BYTES}",
            text.len()
        )));
    }
    let id = || -> Vec<Value> {
        vec![
            r.ctype.as_str().into(),
            r.namespace.clone().into(),
            r.name.clone().into(),
        ]
    };
    let mut params = id();
    params.extend([
        key.into(),
        text.into(),
        Value::Integer(now_ms as i64),
        by.into(),
    ]);
    let write = Stmt::new(
        "INSERT INTO component_config (component_type, namespace, name, key, value, updated_at, updated_by) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
         WHERE EXISTS (SELECT 1 FROM components WHERE component_type = ?1 AND namespace = ?2 AND name = ?3) \
         AND (EXISTS (SELECT 1 FROM component_config WHERE component_type = ?1 AND namespace = ?2 AND name = ?3 AND key = ?4) \
              OR (SELECT count(*) FROM component_config WHERE component_type = ?1 AND namespace = ?2 AND name = ?3) < ?8) \
         ON CONFLICT(component_type, namespace, name, key) DO UPDATE SET value = excluded.value, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by \
         RETURNING key",
        {
            let mut p = params;
            p.push(Value::Integer(MAX_KEYS));
            p
        },
    );
    let exists = Stmt::new(
        "SELECT 1 AS found FROM components WHERE component_type = ? AND namespace = ? AND name = ? LIMIT 1",
        id(),
    );
    let rows = db.batch(&[write, exists], true).await?;
    if !rows[0].rows.is_empty() {
        return Ok(());
    }
    if rows[1].rows.is_empty() {
        return Err(not_found(r));
    }
    Err(Error::invalid_params(format!(
        "{} already has {MAX_KEYS} config keys; delete one first",
        r.canonical()
    )))
}

/// Deletes override `key`; whether there was one.
pub async fn delete(db: &impl Db, r: &Reference, key: &str) -> Result<bool> {
    check_key(key)?;
    let rows = db
        .query(
            "DELETE FROM component_config WHERE component_type = ? AND namespace = ? AND name = ? AND key = ? RETURNING key",
            &[
                r.ctype.as_str().into(),
                r.namespace.clone().into(),
                r.name.clone().into(),
                key.into(),
            ],
        )
        .await?;
    Ok(!rows.rows.is_empty())
}

/// Every component with overrides: `(type:namespace.name, number of keys)`.
pub async fn list(db: &impl Db) -> Result<Vec<(String, i64)>> {
    let rows = db
        .query(
            "SELECT component_type, namespace, name, count(*) AS n FROM component_config \
             GROUP BY component_type, namespace, name ORDER BY component_type, namespace, name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                format!(
                    "{}:{}.{}",
                    r.text("component_type"),
                    r.text("namespace"),
                    r.text("name")
                ),
                r.int("n"),
            )
        })
        .collect())
}
