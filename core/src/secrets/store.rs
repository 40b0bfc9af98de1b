//! The secret store: AES-256-GCM under the owner's data key, with owner, name and version
//! as associated data, so a ciphertext copied to another row never decrypts.

use super::envelope;
use crate::db::{Db, Row, Rows, Stmt, Value};
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

/// A secret's row joined with its data key's wrapped form: one read gives all a decrypt
/// needs (a missing data key shows as NULL `kek_id`, an error, never a silently absent row).
const WITH_KEY: &str = "SELECT s.*, d.kek_id AS dek_kek_id, d.wrapped AS dek_wrapped \
     FROM secrets s LEFT JOIN data_keys d ON d.owner = s.owner AND d.version = s.dek_version";

/// The read of one secret with its data key.
fn read_stmt(owner: &str, name: &str) -> Stmt {
    Stmt::new(
        format!("{WITH_KEY} WHERE s.owner = ? AND s.name = ?"),
        vec![owner.into(), name.into()],
    )
}

/// The reads `set` starts from: the secret's current version and the owner's newest data
/// key. Sent ahead with the caller check (`tools::secret::read_ahead`), they cost nothing.
pub fn set_reads(scope: &Scope, name: &str) -> [Stmt; 2] {
    let owner = scope.owner();
    [
        Stmt::new(
            "SELECT version FROM secrets WHERE owner = ? AND name = ?",
            vec![owner.clone().into(), name.into()],
        ),
        envelope::newest_stmt(&owner),
    ]
}

/// Stores (or replaces) a secret. `ttl_ms` sets an expiry; `sealed` says the value arrived
/// sealed, so no character of it is ever shown.
///
/// Two round trips (one when [`set_reads`] went ahead): the reads, then one atomic write
/// that stores the value only if nothing moved in between — the version it was encrypted
/// for (part of its associated data) is still next, and the data key it is under is the
/// stored one. A concurrent writer makes it start over, a few times at most.
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
    for _ in 0..3 {
        let reads = db.batch(&set_reads(scope, name), false).await?;
        let version = reads[0].first().map(|r| r.int("version")).unwrap_or(0) + 1;
        let dek = envelope::from_newest(&reads[1], kms, env, &owner).await?;
        let key: &[u8; 32] = dek
            .key
            .as_slice()
            .try_into()
            .map_err(|_| Error::internal("data key has the wrong size"))?;
        let ciphertext = crate::kms::seal(env, key, value, aad(&owner, name, version).as_bytes())?;
        let now = env.now_ms() as i64;
        let expires = ttl_ms
            .map(|t| Value::Integer(now + t as i64))
            .unwrap_or(Value::Null);
        let mut writes: Vec<Stmt> = dek.insert.iter().cloned().collect();
        writes.push(Stmt::new(
            "INSERT INTO secrets (owner, name, version, dek_version, ciphertext, created_by, created_at, updated_at, expires_at, sealed) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9 \
             WHERE EXISTS (SELECT 1 FROM data_keys WHERE owner = ?1 AND version = ?4 AND wrapped = ?10) \
             AND COALESCE((SELECT version FROM secrets WHERE owner = ?1 AND name = ?2), 0) = ?3 - 1 \
             ON CONFLICT(owner, name) DO UPDATE SET version = ?3, dek_version = ?4, ciphertext = ?5, created_by = ?6, updated_at = ?7, expires_at = ?8, sealed = ?9 \
             RETURNING *",
            vec![
                owner.clone().into(),
                name.into(),
                Value::Integer(version),
                Value::Integer(dek.version),
                Value::Blob(ciphertext),
                by.into(),
                Value::Integer(now),
                expires,
                Value::Integer(sealed as i64),
                Value::Blob(dek.wrapped.clone()),
            ],
        ));
        let done = db.batch(&writes, true).await?;
        if let Some(r) = done.last().and_then(|rows| rows.first()) {
            let fingerprint =
                super::mask::fingerprint(&super::mask::fingerprint_key(&dek.key), value);
            return Ok(Meta::from_row(&r, fingerprint));
        }
    }
    Err(Error::internal(format!(
        "secret `{name}` kept changing while it was being set; try again"
    )))
}

/// Data keys unwrapped while reading several rows, by owner and version.
type Unwrapped = Vec<((String, i64), Zeroizing<Vec<u8>>)>;

/// Decrypts a row read with [`WITH_KEY`], unwrapping each data key once per `keys` cache.
async fn open_row(
    kms: &impl Kms,
    r: &Row<'_>,
    keys: &mut Unwrapped,
) -> Result<(Meta, Zeroizing<Vec<u8>>)> {
    let (owner, name) = (r.text("owner"), r.text("name"));
    let dek_version = r.int("dek_version");
    let id = (owner.clone(), dek_version);
    let i = match keys.iter().position(|(k, _)| *k == id) {
        Some(i) => i,
        None => {
            let kek_id = r.opt_text("dek_kek_id").ok_or_else(|| {
                Error::internal(format!("data key {dek_version} of {owner} is missing"))
            })?;
            let dek =
                envelope::unwrap(kms, &owner, dek_version, &kek_id, &r.blob("dek_wrapped")).await?;
            keys.push((id, dek));
            keys.len() - 1
        }
    };
    let dek = &keys[i].1;
    let key: &[u8; 32] = dek
        .as_slice()
        .try_into()
        .map_err(|_| Error::internal("data key has the wrong size"))?;
    let value = crate::kms::open(
        key,
        &r.blob("ciphertext"),
        aad(&owner, &name, r.int("version")).as_bytes(),
    )?;
    let fingerprint = super::mask::fingerprint(&super::mask::fingerprint_key(dek), &value);
    Ok((Meta::from_row(r, fingerprint), value))
}

/// A secret with its decrypted value, or `None` when there is none. One round trip.
pub async fn read(
    db: &impl Db,
    kms: &impl Kms,
    scope: &Scope,
    name: &str,
) -> Result<Option<(Meta, Zeroizing<Vec<u8>>)>> {
    let s = read_stmt(&scope.owner(), name);
    let rows = db.query(&s.sql, &s.params).await?;
    match rows.first() {
        Some(r) => Ok(Some(open_row(kms, &r, &mut Vec::new()).await?)),
        None => Ok(None),
    }
}

/// Every secret of the given owners with its decrypted value, in the owners' order and by
/// name within each. One round trip, whatever the count.
pub async fn read_all(
    db: &impl Db,
    kms: &impl Kms,
    scopes: &[Scope],
) -> Result<Vec<(Meta, Zeroizing<Vec<u8>>)>> {
    let owners: Vec<String> = scopes.iter().map(Scope::owner).collect();
    let marks = vec!["?"; owners.len()].join(", ");
    let params: Vec<Value> = owners.iter().map(|o| o.as_str().into()).collect();
    let rows = db
        .query(
            &format!("{WITH_KEY} WHERE s.owner IN ({marks}) ORDER BY s.owner, s.name"),
            &params,
        )
        .await?;
    let mut keys = Vec::new();
    let mut out = Vec::with_capacity(rows.rows.len());
    for r in rows.iter() {
        let rank = owners.iter().position(|o| *o == r.text("owner"));
        out.push((rank, open_row(kms, &r, &mut keys).await?));
    }
    // Stable: within one owner the rows are already by name.
    out.sort_by_key(|(rank, _)| *rank);
    Ok(out.into_iter().map(|(_, v)| v).collect())
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

/// The read of everything a run of `reference` by `user` may be given: each grant covering
/// it (exact version or version-less) with the shared and the user's own secret of that name
/// and their data keys. Sent with the run's admission, so a catalyst's secrets cost no
/// round trip of their own.
pub fn for_run_stmt(reference: &str, user: &str) -> Stmt {
    let unversioned = reference
        .rsplit_once(':')
        .map(|(k, _)| k)
        .unwrap_or(reference);
    Stmt::new(
        "SELECT g.name AS grant_name, g.reference AS grant_ref, g.allow_user_keys, s.*, \
         d.kek_id AS dek_kek_id, d.wrapped AS dek_wrapped \
         FROM secret_grants g \
         LEFT JOIN secrets s ON s.name = g.name AND (s.owner = 'org' OR s.owner = ?3) \
         LEFT JOIN data_keys d ON d.owner = s.owner AND d.version = s.dek_version \
         WHERE g.reference IN (?1, ?2) ORDER BY g.name",
        vec![
            reference.into(),
            unversioned.into(),
            Scope::User(user.to_string()).owner().into(),
        ],
    )
}

/// Secret values by name, as a run is given them.
pub type Given = std::collections::BTreeMap<String, Zeroizing<Vec<u8>>>;

/// The values a run gets from the rows of [`for_run_stmt`]: for each granted name, the
/// user's own unexpired key when the most specific grant allows user keys, else the shared
/// one; expired keys are never handed out. Also the `(owner, name)` of each value given, for
/// [`mark_used_stmt`].
pub async fn for_run(
    kms: &impl Kms,
    rows: &Rows,
    now: u64,
) -> Result<(Given, Vec<(String, String)>)> {
    let mut given = std::collections::BTreeMap::new();
    let mut used = Vec::new();
    let mut keys = Vec::new();
    let all: Vec<Row<'_>> = rows.iter().collect();
    for name in all.iter().map(|r| r.text("grant_name")) {
        if given.contains_key(&name) {
            continue;
        }
        // The exact version's grant wins over the version-less one.
        let Some(grant) = all
            .iter()
            .filter(|r| r.text("grant_name") == name)
            .map(|r| r.text("grant_ref"))
            .max_by_key(String::len)
        else {
            continue;
        };
        let of_grant: Vec<&Row<'_>> = all
            .iter()
            .filter(|r| r.text("grant_name") == name && r.text("grant_ref") == grant)
            .collect();
        let allow_user = of_grant.iter().any(|r| r.int("allow_user_keys") != 0);
        let pick = |user: bool| {
            of_grant.iter().find(|r| {
                r.opt_text("owner").is_some_and(|o| (o != "org") == user)
                    && r.opt_int("expires_at").is_none_or(|e| e as u64 > now)
            })
        };
        let chosen = if allow_user { pick(true) } else { None }.or_else(|| pick(false));
        if let Some(r) = chosen {
            let (_, value) = open_row(kms, r, &mut keys).await?;
            used.push((r.text("owner"), name.clone()));
            given.insert(name, value);
        }
    }
    Ok((given, used))
}

/// Marks the secrets a run was given as used at `now` (none: no statement).
pub fn mark_used_stmt(used: &[(String, String)], now: u64) -> Option<Stmt> {
    if used.is_empty() {
        return None;
    }
    let mut params = vec![Value::Integer(now as i64)];
    let mut terms = Vec::with_capacity(used.len());
    for (owner, name) in used {
        terms.push("(owner = ? AND name = ?)");
        params.push(owner.as_str().into());
        params.push(name.as_str().into());
    }
    Some(Stmt::new(
        format!(
            "UPDATE secrets SET last_used_at = ? WHERE {}",
            terms.join(" OR ")
        ),
        params,
    ))
}
