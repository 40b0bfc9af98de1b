//! API keys: generated at random, shown once, stored as SHA-256, listed by prefix.

use crate::access::SCOPES;
use crate::crypto::{ct_eq, sha256_hex};
use crate::db::{Db, Row, Rows, Stmt, Value};
use crate::env::{random_token, rfc3339, Env};
use crate::errors::{Error, Result};
use crate::ipallow::NetList;
use crate::ratelimit::Gcra;
use crate::units::Rate;
use serde_json::{json, Value as Json};

/// The three kinds of key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// `cyfr_pk_`: may be embedded in browsers; `execution` scope only.
    Public,
    /// `cyfr_sk_`: for backends.
    Secret,
    /// `cyfr_ak_`: full access.
    Admin,
}

impl KeyType {
    /// Parses `public`, `secret` or `admin`.
    pub fn parse(s: &str) -> Result<KeyType> {
        match s {
            "public" => Ok(KeyType::Public),
            "secret" => Ok(KeyType::Secret),
            "admin" => Ok(KeyType::Admin),
            other => Err(Error::invalid_params(format!(
                "key type `{other}` must be one of public, secret, admin"
            ))),
        }
    }
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Public => "public",
            KeyType::Secret => "secret",
            KeyType::Admin => "admin",
        }
    }
    /// The raw key's prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyType::Public => "cyfr_pk_",
            KeyType::Secret => "cyfr_sk_",
            KeyType::Admin => "cyfr_ak_",
        }
    }
    /// The type a raw key claims by its prefix.
    pub fn of_raw(raw: &str) -> Option<KeyType> {
        [KeyType::Public, KeyType::Secret, KeyType::Admin]
            .into_iter()
            .find(|t| raw.starts_with(t.prefix()))
    }
}

/// A stored key (never the raw value).
#[derive(Clone, Debug)]
pub struct ApiKey {
    /// Stable id (`key_…`).
    pub id: String,
    /// Unique among active keys.
    pub name: String,
    /// Public, secret or admin.
    pub key_type: KeyType,
    /// The first 12 characters of the raw key.
    pub prefix: String,
    /// Scopes held (`*` for admin).
    pub scopes: Vec<String>,
    /// Per-key rate limit, if any.
    pub rate_limit: Option<Rate>,
    /// Allowed client networks; empty allows all.
    pub ip_allowlist: NetList,
    /// The lineage id of the key that created this one (`None` for the bootstrap admin key).
    pub created_by: Option<String>,
    /// Stable across rotation: the first key's id. Owns the lineage's user secrets and runs.
    pub lineage_id: String,
    /// The lineage whose rate-limit buckets this key draws from: its own, or for a key a
    /// non-admin created, its creator's (so minting keys never multiplies a budget).
    pub budget_id: String,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms of the last authenticated request.
    pub last_used_at: Option<u64>,
    /// Unix ms when revoked.
    pub revoked_at: Option<u64>,
    /// Whether the row holds the rate limit as GCRA numbers too (migration 8), so the
    /// caller check takes the request from the bucket in its own round trip.
    pub rate_in_sql: bool,
}

impl ApiKey {
    /// The view shown by `key get`/`key list`: no hash, no raw key.
    pub fn to_json(&self) -> Json {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "type": self.key_type.as_str(),
            "scope": self.scopes,
            "created_at": rfc3339(self.created_at),
            "last_used_at": self.last_used_at.map(rfc3339),
            "revoked": self.revoked_at.is_some(),
        });
        self.shared_fields(&mut v);
        v
    }

    /// The fields every key answer shares, in CYFR's shape beside cyfr's: `prefix` and
    /// CYFR's `key_prefix`; `rate_limit` as text; `ip_allowlist` as CYFR's array (cyfr's
    /// comma-separated text, or null, as `ip_allowlist_text`); `rotated_at` (when this key
    /// replaced another: its creation).
    pub fn shared_fields(&self, v: &mut Json) {
        let prefix = format!("{}...", self.prefix);
        v["prefix"] = json!(prefix);
        v["key_prefix"] = json!(prefix);
        v["rate_limit"] = json!(self.rate_limit.map(|r| r.to_text()));
        let nets: Vec<String> = self.ip_allowlist.0.iter().map(|n| n.to_string()).collect();
        v["ip_allowlist_text"] = if nets.is_empty() {
            Json::Null
        } else {
            json!(self.ip_allowlist.to_text())
        };
        v["ip_allowlist"] = json!(nets);
        v["rotated_at"] = json!((self.lineage_id != self.id).then(|| rfc3339(self.created_at)));
    }

    fn from_row(r: &Row<'_>) -> Result<ApiKey> {
        let id = r.text("id");
        // Migration 0005 fills both; a row without them is its own lineage and budget.
        let lineage_id = r
            .opt_text("lineage_id")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| id.clone());
        Ok(ApiKey {
            budget_id: r
                .opt_text("budget_id")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| lineage_id.clone()),
            lineage_id,
            id,
            name: r.text("name"),
            key_type: KeyType::parse(&r.text("key_type"))?,
            prefix: r.text("prefix"),
            scopes: r
                .text("scopes")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            rate_limit: r
                .opt_text("rate_limit")
                .and_then(|s| Rate::parse(&Json::String(s)).ok()),
            ip_allowlist: NetList::parse(&r.text("ip_allowlist")).unwrap_or_default(),
            created_by: r.opt_text("created_by"),
            created_at: r.int("created_at") as u64,
            last_used_at: r.opt_int("last_used_at").map(|v| v as u64),
            revoked_at: r.opt_int("revoked_at").map(|v| v as u64),
            rate_in_sql: r.opt_int("rate_window_us").is_some_and(|w| w > 0),
        })
    }
}

/// What a caller asks for when creating a key.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// Unique name among active keys.
    pub name: String,
    /// Public, secret or admin.
    pub key_type: KeyType,
    /// Requested scopes (ignored for admin keys, which hold `*`).
    pub scopes: Vec<String>,
    /// Optional per-key rate limit.
    pub rate_limit: Option<Rate>,
    /// Optional IP allowlist.
    pub ip_allowlist: NetList,
}

impl NewKey {
    /// Checks the name, the scopes and the public-key rule; returns the scopes to store.
    pub fn validated_scopes(&self) -> Result<Vec<String>> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c))
        {
            return Err(Error::invalid_params(
                "key name must be 1-64 characters of letters, digits, space, '-', '_' or '.'",
            ));
        }
        if self.key_type == KeyType::Admin {
            return Ok(vec!["*".into()]);
        }
        let mut scopes: Vec<String> = Vec::new();
        for s in &self.scopes {
            if !SCOPES.contains(&s.as_str()) {
                return Err(Error::invalid_params(format!(
                    "unknown scope `{s}`; scopes are: {}",
                    SCOPES.join(", ")
                )));
            }
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        if scopes.is_empty() {
            if self.key_type == KeyType::Public {
                scopes.push("execution".into());
            } else {
                return Err(Error::invalid_params(
                    "a secret key needs at least one scope (e.g. \"scope\": [\"execution\"])",
                ));
            }
        }
        if self.key_type == KeyType::Public && scopes.iter().any(|s| s != "execution") {
            return Err(Error::invalid_params("public keys can hold only the `execution` scope: they are visible to anyone who loads your page"));
        }
        Ok(scopes)
    }
}

/// SHA-256 of a raw key, as stored.
pub fn hash_raw(raw: &str) -> String {
    sha256_hex(raw.as_bytes())
}

/// Creates a key, a lineage and a budget of its own, and returns it with its raw value,
/// which is shown only this once.
pub async fn create(
    db: &impl Db,
    env: &impl Env,
    new: &NewKey,
    created_by: Option<&str>,
) -> Result<(ApiKey, String)> {
    insert(db, env, new, created_by, None, None).await
}

/// Creates a key on behalf of a non-admin `creator`: it draws from the creator's budget.
/// The caller has already narrowed `new` to the creator's scopes, rate and allowlist.
pub async fn create_derived(
    db: &impl Db,
    env: &impl Env,
    new: &NewKey,
    creator: &ApiKey,
) -> Result<(ApiKey, String)> {
    insert(
        db,
        env,
        new,
        Some(&creator.lineage_id),
        None,
        Some(&creator.budget_id),
    )
    .await
}

/// Inserts a key; `lineage`/`budget` default to the new key's own id.
async fn insert(
    db: &impl Db,
    env: &impl Env,
    new: &NewKey,
    created_by: Option<&str>,
    lineage: Option<&str>,
    budget: Option<&str>,
) -> Result<(ApiKey, String)> {
    // Scopes are checked (in `prepare`) before the name, as they always were.
    let (key, raw, params) = prepare(env, new, created_by, lineage, budget)?;
    if find_by_name(db, &new.name).await?.is_some() {
        return Err(name_taken(&new.name));
    }
    db.query(
        &format!("{INSERT_KEY} VALUES ({})", placeholders(params.len())),
        &params,
    )
    .await?;
    Ok((key, raw))
}

/// The id of the key `bootstrap_admin_key` lets in: there is at most one.
const BOOTSTRAP_ID: &str = "key_bootstrap";

/// The first admin key of an edge deployment (the `bootstrap_admin_key` variable holds its
/// SHA-256, never the key): inserted when `raw` is an admin key hashing to `expected`
/// (compared in constant time) and the database holds no key at all, revoked ones included.
/// One conditional statement, so racing requests create one key at most and a database
/// that ever had a key ignores the variable. `None`: not that key, or too late.
pub async fn bootstrap(
    db: &impl Db,
    expected: &str,
    raw: &str,
    now_ms: u64,
) -> Result<Option<ApiKey>> {
    let hash = hash_raw(raw);
    if KeyType::of_raw(raw) != Some(KeyType::Admin) || !ct_eq(hash.as_bytes(), expected.as_bytes())
    {
        return Ok(None);
    }
    let rows = db
        .query(
            "INSERT INTO api_keys (id, name, key_type, key_hash, prefix, scopes, created_at, lineage_id, budget_id) \
             SELECT ?1, 'admin', 'admin', ?2, ?3, '*', ?4, ?1, ?1 \
             WHERE NOT EXISTS (SELECT 1 FROM api_keys) RETURNING *",
            &[
                BOOTSTRAP_ID.into(),
                hash.into(),
                raw.get(..12).unwrap_or(raw).into(),
                Value::Integer(now_ms as i64),
            ],
        )
        .await?;
    if let Some(r) = rows.first() {
        return ApiKey::from_row(&r).map(Some);
    }
    // Nothing inserted: a key exists. It may be this very one, made by a concurrent first
    // request since this request's lookup; only the holder of the key gets this far.
    let by = KeyRef::Hash(hash_raw(raw));
    let select = by.select(now_ms);
    let found = db.query(&select.sql, &select.params).await?;
    Ok(by.key_of(&found)?.filter(|k| k.revoked_at.is_none()))
}

/// The columns of a new key row, in the order [`prepare`] gives their values.
const INSERT_KEY: &str = "INSERT INTO api_keys (id, name, key_type, key_hash, prefix, scopes, rate_limit, ip_allowlist, created_by, created_at, lineage_id, budget_id, rate_interval_us, rate_window_us)";

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn name_taken(name: &str) -> Error {
    Error::invalid_params(format!(
        "an active key named `{name}` exists; revoke or rotate it, or pick another name"
    ))
}

/// A new key (its raw secret made here) and the values of its row for [`INSERT_KEY`].
fn prepare(
    env: &impl Env,
    new: &NewKey,
    created_by: Option<&str>,
    lineage: Option<&str>,
    budget: Option<&str>,
) -> Result<(ApiKey, String, Vec<Value>)> {
    let scopes = new.validated_scopes()?;
    // 24 random bytes are 32 base64url characters.
    let raw = format!("{}{}", new.key_type.prefix(), random_token(env, 24));
    let id = format!("key_{}", random_token(env, 12));
    let lineage_id = lineage.map(String::from).unwrap_or_else(|| id.clone());
    let key = ApiKey {
        budget_id: budget
            .map(String::from)
            .unwrap_or_else(|| lineage_id.clone()),
        lineage_id,
        id,
        name: new.name.clone(),
        key_type: new.key_type,
        prefix: raw[..12].to_string(),
        scopes,
        rate_limit: new.rate_limit,
        ip_allowlist: new.ip_allowlist.clone(),
        created_by: created_by.map(String::from),
        created_at: env.now_ms(),
        last_used_at: None,
        revoked_at: None,
        rate_in_sql: true,
    };
    let gcra = key.rate_limit.map(Gcra::from);
    let params = vec![
        key.id.clone().into(),
        key.name.clone().into(),
        key.key_type.as_str().into(),
        hash_raw(&raw).into(),
        key.prefix.clone().into(),
        key.scopes.join(",").into(),
        key.rate_limit.map(|r| r.to_text()).into(),
        Value::from(if key.ip_allowlist.is_empty() {
            None
        } else {
            Some(key.ip_allowlist.to_text())
        }),
        key.created_by.clone().into(),
        Value::Integer(key.created_at as i64),
        key.lineage_id.clone().into(),
        key.budget_id.clone().into(),
        gcra.map_or(Value::Null, |g| Value::Integer(g.interval_us)),
        gcra.map_or(Value::Null, |g| Value::Integer(g.window_us)),
    ];
    Ok((key, raw, params))
}

/// How a request names its key in SQL: by the raw key's hash, or through the live session
/// it opened. Either way the key's row, its rate-limit take and its last-use mark can go in
/// one round trip ([`KeyRef::use_stmts`]).
#[derive(Clone, Debug)]
pub enum KeyRef {
    /// SHA-256 of a raw key.
    Hash(String),
    /// SHA-256 of a session id; only a session that has not expired names a key.
    Session(String),
}

impl KeyRef {
    /// The key a raw value would be.
    pub fn raw(raw: &str) -> KeyRef {
        KeyRef::Hash(hash_raw(raw))
    }

    /// The SQL condition on `api_keys` and its parameters after `?1` (`now`, Unix ms).
    fn condition(&self) -> (&'static str, Value) {
        match self {
            KeyRef::Hash(h) => ("key_hash = ?2", h.clone().into()),
            KeyRef::Session(s) => (
                "id = (SELECT key_id FROM sessions WHERE id_hash = ?2 AND expires_at > ?1)",
                s.clone().into(),
            ),
        }
    }

    fn stmt(&self, sql: fn(&str) -> String, now_ms: u64) -> Stmt {
        let (cond, v) = self.condition();
        Stmt::new(sql(cond), vec![Value::Integer(now_ms as i64), v])
    }

    /// The key's row.
    pub fn select(&self, now_ms: u64) -> Stmt {
        self.stmt(|c| format!("SELECT * FROM api_keys WHERE {c}"), now_ms)
    }

    /// The key's row; one request taken from its budget's bucket when the key has a rate
    /// limit (a row back means allowed; see `ratelimit::take_stmt`, the same GCRA); and its
    /// last use marked, at most once a minute. A revoked or unknown key takes nothing.
    pub fn use_stmts(&self, now_ms: u64) -> [Stmt; 3] {
        let now_us = (now_ms as i64).saturating_mul(1000);
        let mut take = self.stmt(|c| format!(
            "INSERT INTO rate_limits (bucket, tat) \
             SELECT 'key:' || COALESCE(NULLIF(budget_id, ''), NULLIF(lineage_id, ''), id), ?3 + rate_interval_us \
             FROM api_keys WHERE {c} AND revoked_at IS NULL AND rate_interval_us > 0 AND rate_window_us > 0 \
             ON CONFLICT(bucket) DO UPDATE SET tat = max(rate_limits.tat, ?3) + (excluded.tat - ?3) \
             WHERE max(rate_limits.tat, ?3) + (excluded.tat - ?3) - ?3 <= (SELECT rate_window_us FROM api_keys WHERE {c}) \
             RETURNING tat"
        ), now_ms);
        take.params.push(Value::Integer(now_us));
        [
            self.select(now_ms),
            take,
            self.stmt(|c| format!(
                "UPDATE api_keys SET last_used_at = ?1 WHERE {c} AND revoked_at IS NULL AND (last_used_at IS NULL OR last_used_at < ?1 - 60000)"
            ), now_ms),
        ]
    }

    /// The key in `rows` (of [`KeyRef::select`]); for a hash, compared again in constant time.
    pub fn key_of(&self, rows: &Rows) -> Result<Option<ApiKey>> {
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        if let KeyRef::Hash(hash) = self {
            // The index lookup already matched; this keeps the final check constant-time anyway.
            if !ct_eq(row.text("key_hash").as_bytes(), hash.as_bytes()) {
                return Ok(None);
            }
        }
        ApiKey::from_row(&row).map(Some)
    }
}

/// Stores a key's rate limit as GCRA numbers, for a row written before migration 8.
pub async fn store_rate(db: &impl Db, key: &ApiKey) -> Result<()> {
    if let Some(g) = key.rate_limit.map(Gcra::from) {
        db.query(
            "UPDATE api_keys SET rate_interval_us = ?2, rate_window_us = ?3 WHERE id = ?1",
            &[
                key.id.clone().into(),
                Value::Integer(g.interval_us),
                Value::Integer(g.window_us),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The active key with this name.
pub async fn find_by_name(db: &impl Db, name: &str) -> Result<Option<ApiKey>> {
    let s = find_by_name_stmt(name);
    let rows = db.query(&s.sql, &s.params).await?;
    rows.first().map(|r| ApiKey::from_row(&r)).transpose()
}

/// The read of [`find_by_name`], to send ahead.
pub fn find_by_name_stmt(name: &str) -> Stmt {
    Stmt::new(
        "SELECT * FROM api_keys WHERE name = ? AND revoked_at IS NULL",
        vec![name.into()],
    )
}

/// Every key, newest first; revoked ones only when asked.
pub async fn list(db: &impl Db, include_revoked: bool) -> Result<Vec<ApiKey>> {
    let sql = if include_revoked {
        "SELECT * FROM api_keys ORDER BY created_at DESC"
    } else {
        "SELECT * FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at DESC"
    };
    db.query(sql, &[])
        .await?
        .iter()
        .map(|r| ApiKey::from_row(&r))
        .collect()
}

/// Revokes a key; the very next request with it is refused.
pub async fn revoke(db: &impl Db, id: &str, now_ms: u64) -> Result<()> {
    db.query(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        &[Value::Integer(now_ms as i64), id.into()],
    )
    .await?;
    Ok(())
}

/// Replaces a key with a new one of the same name, type, scopes, limits, lineage and budget:
/// its secrets, runs and rate-limit buckets carry over (rotating never refills a budget).
pub async fn rotate(db: &impl Db, env: &impl Env, old: &ApiKey) -> Result<(ApiKey, String)> {
    let new = NewKey {
        name: old.name.clone(),
        key_type: old.key_type,
        scopes: if old.key_type == KeyType::Admin {
            vec![]
        } else {
            old.scopes.clone()
        },
        rate_limit: old.rate_limit,
        ip_allowlist: old.ip_allowlist.clone(),
    };
    let (key, raw, mut params) = prepare(
        env,
        &new,
        old.created_by.as_deref(),
        Some(&old.lineage_id),
        Some(&old.budget_id),
    )?;
    // One atomic round trip: the revoke, then the insert only if that revoke took the row
    // (`changes()` is the UPDATE's) and no other active key holds the name — so two
    // rotations racing for one key make one successor, and a key revoked meanwhile none.
    let n = params.len();
    params.push(new.name.clone().into());
    let revoke = Stmt::new(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        vec![Value::Integer(env.now_ms() as i64), old.id.clone().into()],
    );
    let insert = Stmt::new(
        format!(
            "{INSERT_KEY} SELECT {} WHERE changes() = 1 AND NOT EXISTS \
             (SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL) RETURNING id",
            placeholders(n)
        ),
        params,
    );
    let out = db.batch(&[revoke, insert], true).await?;
    if out.get(1).is_none_or(|r| r.rows.is_empty()) {
        return Err(Error::invalid_params(
            "no active key with that name or id (it was revoked or rotated meanwhile)",
        ));
    }
    Ok((key, raw))
}

/// The active key of a lineage (at most one: rotation revokes before it creates).
pub async fn find_active_by_lineage(db: &impl Db, lineage_id: &str) -> Result<Option<ApiKey>> {
    let rows = db
        .query("SELECT * FROM api_keys WHERE lineage_id = ? AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1", &[lineage_id.into()])
        .await?;
    rows.first().map(|r| ApiKey::from_row(&r)).transpose()
}

/// Records use, at most once a minute per key so reads stay cheap.
pub async fn touch(db: &impl Db, id: &str, now_ms: u64) -> Result<()> {
    db.query(
        "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1 - 60000)",
        &[Value::Integer(now_ms as i64), id.into()],
    )
    .await?;
    Ok(())
}

/// The key with this id, active or not.
pub async fn find_by_id(db: &impl Db, id: &str) -> Result<Option<ApiKey>> {
    let s = find_by_id_stmt(id);
    let rows = db.query(&s.sql, &s.params).await?;
    rows.first().map(|r| ApiKey::from_row(&r)).transpose()
}

/// The read of [`find_by_id`], to send ahead.
pub fn find_by_id_stmt(id: &str) -> Stmt {
    Stmt::new("SELECT * FROM api_keys WHERE id = ?", vec![id.into()])
}
