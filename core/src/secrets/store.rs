//! The secret store: AES-256-GCM under the owner's data key, with owner, name and version
//! as associated data, so a ciphertext copied to another row never decrypts.

use super::envelope;
use crate::db::{Db, Row, Value};
use crate::env::{rfc3339, Env};
use crate::errors::{Error, Result};
use crate::kms::Kms;
use serde_json::{json, Value as Json};
use zeroize::Zeroizing;

/// Whose secret it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Shared by the organisation / app (`cyfr secret set`).
    Org,
    /// One user's own key (BYOK), by user id.
    User(String),
}

impl Scope {
    /// The owner column value.
    pub fn owner(&self) -> String {
        match self {
            Scope::Org => "org".into(),
            Scope::User(u) => format!("user:{u}"),
        }
    }
    /// `org` or `user`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Org => "org",
            Scope::User(_) => "user",
        }
    }
}

/// Largest secret value accepted.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// Checks a secret name: letters, digits, `_`, `-`, `.`, 1-128 characters.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_params(
            "a secret name is 1-128 letters, digits, '_', '-' or '.'",
        ))
    }
}

/// What may be shown about a stored secret.
#[derive(Clone, Debug)]
pub struct Meta {
    /// Name.
    pub name: String,
    /// `org` or `user`.
    pub scope: &'static str,
    /// Increases with every `set`.
    pub version: i64,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms.
    pub updated_at: u64,
    /// Unix ms, if it expires.
    pub expires_at: Option<u64>,
    /// Unix ms of the last read by a component.
    pub last_used_at: Option<u64>,
    /// Whether the value arrived sealed: then its mask shows none of it.
    pub sealed: bool,
    /// The value's keyed fingerprint (see [`super::mask::fingerprint`]).
    pub fingerprint: String,
}

impl Meta {
    fn from_row(r: &Row<'_>, fingerprint: String) -> Meta {
        let owner = r.text("owner");
        Meta {
            name: r.text("name"),
            scope: if owner == "org" { "org" } else { "user" },
            version: r.int("version"),
            created_at: r.int("created_at") as u64,
            updated_at: r.int("updated_at") as u64,
            expires_at: r.opt_int("expires_at").map(|v| v as u64),
            last_used_at: r.opt_int("last_used_at").map(|v| v as u64),
            sealed: r.opt_int("sealed").unwrap_or(0) != 0,
            fingerprint,
        }
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// The public view with the mask and fingerprint of `value` (never the value).
    pub fn to_json(&self, value: &[u8], now: u64) -> Json {
        let text = String::from_utf8_lossy(value);
        let masked = if self.sealed {
            super::mask::mask_sealed()
        } else {
            super::mask::mask(&text)
        };
        json!({
            "name": self.name,
            "scope": self.scope,
            "masked": masked,
            "length": text.chars().count(),
            "fingerprint": self.fingerprint,
            "version": self.version,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "expires_at": self.expires_at.map(rfc3339),
            "last_used_at": self.last_used_at.map(rfc3339),
            "expired": self.expired(now),
        })
    }
}

fn aad(owner: &str, name: &str, version: i64) -> String {
    format!("cyfr-secret|{owner}|{name}|{version}")
}

/// Stores (or replaces) a secret. `ttl_ms` sets an expiry; `sealed` says the value arrived
/// sealed, so no character of it is ever shown.
#[allow(clippy::too_many_arguments)]
pub async fn set(
    db: &impl Db,
    kms: &impl Kms,
    env: &impl Env,
    scope: &Scope,
    name: &str,
    value: &[u8],
    sealed: bool,
    ttl_ms: Option<u64>,
    by: &str,
) -> Result<Meta> {
    check_name(name)?;
    if value.is_empty() || value.len() > MAX_VALUE_BYTES {
        return Err(Error::invalid_params(format!(
            "a secret value is 1 to {MAX_VALUE_BYTES} bytes"
        )));
    }
    let owner = scope.owner();
    let rows = db
        .query(
            "SELECT version FROM secrets WHERE owner = ? AND name = ?",
            &[owner.clone().into(), name.into()],
        )
        .await?;
    let version = rows.first().map(|r| r.int("version")).unwrap_or(0) + 1;
    let (dek_version, dek) = envelope::current(db, kms, env, &owner).await?;
    let key: &[u8; 32] = dek
        .as_slice()
        .try_into()
        .map_err(|_| Error::internal("data key has the wrong size"))?;
    let ciphertext = crate::kms::seal(env, key, value, aad(&owner, name, version).as_bytes())?;
    let now = env.now_ms() as i64;
    let expires = ttl_ms
        .map(|t| Value::Integer(now + t as i64))
        .unwrap_or(Value::Null);
    db.query(
        "INSERT INTO secrets (owner, name, version, dek_version, ciphertext, created_by, created_at, updated_at, expires_at, sealed) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9) \
         ON CONFLICT(owner, name) DO UPDATE SET version = ?3, dek_version = ?4, ciphertext = ?5, created_by = ?6, updated_at = ?7, expires_at = ?8, sealed = ?9",
        &[
            owner.clone().into(),
            name.into(),
            Value::Integer(version),
            Value::Integer(dek_version),
            Value::Blob(ciphertext),
            by.into(),
            Value::Integer(now),
            expires,
            Value::Integer(sealed as i64),
        ],
    )
    .await?;
    let fingerprint = super::mask::fingerprint(&super::mask::fingerprint_key(&dek), value);
    let rows = db
        .query(
            "SELECT * FROM secrets WHERE owner = ? AND name = ?",
            &[owner.into(), name.into()],
        )
        .await?;
    rows.first()
        .map(|r| Meta::from_row(&r, fingerprint))
        .ok_or_else(|| Error::internal("secret vanished after write"))
}

/// A secret with its decrypted value, or `None` when there is none.
pub async fn read(
    db: &impl Db,
    kms: &impl Kms,
    scope: &Scope,
    name: &str,
) -> Result<Option<(Meta, Zeroizing<Vec<u8>>)>> {
    let owner = scope.owner();
    let rows = db
        .query(
            "SELECT * FROM secrets WHERE owner = ? AND name = ?",
            &[owner.clone().into(), name.into()],
        )
        .await?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let dek = envelope::get(db, kms, &owner, r.int("dek_version")).await?;
    let key: &[u8; 32] = dek
        .as_slice()
        .try_into()
        .map_err(|_| Error::internal("data key has the wrong size"))?;
    let value = crate::kms::open(
        key,
        &r.blob("ciphertext"),
        aad(&owner, name, r.int("version")).as_bytes(),
    )?;
    let meta = Meta::from_row(
        &r,
        super::mask::fingerprint(&super::mask::fingerprint_key(&dek), &value),
    );
    Ok(Some((meta, value)))
}

/// Names of an owner's secrets, sorted.
pub async fn names(db: &impl Db, scope: &Scope) -> Result<Vec<String>> {
    let rows = db
        .query(
            "SELECT name FROM secrets WHERE owner = ? ORDER BY name",
            &[scope.owner().into()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.text("name")).collect())
}

/// Deletes one secret; whether it existed.
pub async fn delete(db: &impl Db, scope: &Scope, name: &str) -> Result<bool> {
    let rows = db
        .query(
            "DELETE FROM secrets WHERE owner = ? AND name = ? RETURNING name",
            &[scope.owner().into(), name.into()],
        )
        .await?;
    Ok(!rows.rows.is_empty())
}

/// Deletes all of an owner's secrets; how many.
pub async fn clear(db: &impl Db, scope: &Scope) -> Result<usize> {
    let rows = db
        .query(
            "DELETE FROM secrets WHERE owner = ? RETURNING name",
            &[scope.owner().into()],
        )
        .await?;
    Ok(rows.rows.len())
}

/// Grants `reference` (with or without version) read access to secret `name`.
pub async fn grant(
    db: &impl Db,
    reference: &str,
    name: &str,
    allow_user_keys: bool,
    by: &str,
    now: u64,
) -> Result<()> {
    check_name(name)?;
    db.query(
        "INSERT INTO secret_grants (reference, name, allow_user_keys, granted_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(reference, name) DO UPDATE SET allow_user_keys = ?3, granted_by = ?4",
        &[reference.into(), name.into(), Value::Integer(allow_user_keys as i64), by.into(), Value::Integer(now as i64)],
    )
    .await?;
    Ok(())
}

/// Removes a grant; whether it existed.
pub async fn revoke(db: &impl Db, reference: &str, name: &str) -> Result<bool> {
    let rows = db
        .query(
            "DELETE FROM secret_grants WHERE reference = ? AND name = ? RETURNING name",
            &[reference.into(), name.into()],
        )
        .await?;
    Ok(!rows.rows.is_empty())
}

/// The grant covering component `reference` (exact version, or version-less) for `name`:
/// `Some(allow_user_keys)` when granted.
pub async fn grant_for(db: &impl Db, reference: &str, name: &str) -> Result<Option<bool>> {
    let unversioned = reference
        .rsplit_once(':')
        .map(|(k, _)| k)
        .unwrap_or(reference);
    let rows = db
        .query(
            "SELECT allow_user_keys FROM secret_grants WHERE name = ? AND reference IN (?, ?) ORDER BY length(reference) DESC LIMIT 1",
            &[name.into(), reference.into(), unversioned.into()],
        )
        .await?;
    Ok(rows.first().map(|r| r.int("allow_user_keys") != 0))
}

/// Every secret name granted to a component.
pub async fn granted_names(db: &impl Db, reference: &str) -> Result<Vec<String>> {
    let unversioned = reference
        .rsplit_once(':')
        .map(|(k, _)| k)
        .unwrap_or(reference);
    let rows = db
        .query(
            "SELECT DISTINCT name FROM secret_grants WHERE reference IN (?, ?) ORDER BY name",
            &[reference.into(), unversioned.into()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.text("name")).collect())
}

/// The value a component run by `user` gets for `name`: the user's own unexpired key when
/// the grant allows user keys, else the shared one. Expired keys are never handed out.
pub async fn resolve_for_run(
    db: &impl Db,
    kms: &impl Kms,
    reference: &str,
    name: &str,
    user: &str,
    now: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let Some(allow_user) = grant_for(db, reference, name).await? else {
        return Ok(None);
    };
    let mut scopes = Vec::new();
    if allow_user {
        scopes.push(Scope::User(user.to_string()));
    }
    scopes.push(Scope::Org);
    for scope in scopes {
        if let Some((meta, value)) = read(db, kms, &scope, name).await? {
            if meta.expired(now) {
                continue;
            }
            db.query(
                "UPDATE secrets SET last_used_at = ? WHERE owner = ? AND name = ?",
                &[
                    Value::Integer(now as i64),
                    scope.owner().into(),
                    name.into(),
                ],
            )
            .await?;
            return Ok(Some(value));
        }
    }
    Ok(None)
}
