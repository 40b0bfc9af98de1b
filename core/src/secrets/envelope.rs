//! Per-owner data keys, wrapped by the key-encryption key. Secret ciphertexts never change
//! when the master key rotates: only these wrapped keys are rewrapped.

use crate::db::{Db, Rows, Stmt, Value};
use crate::env::Env;
use crate::errors::Result;
use crate::kms::Kms;
use zeroize::Zeroizing;

fn context(owner: &str, version: i64) -> String {
    format!("cyfr-dek|{owner}|{version}")
}

/// An owner's data key as a write will use it.
pub struct Dek {
    /// Its version (the secret row's `dek_version`).
    pub version: i64,
    /// The key itself.
    pub key: Zeroizing<Vec<u8>>,
    /// Its wrapped form as stored: a write checks the stored row still holds it.
    pub wrapped: Vec<u8>,
    /// For a key made just now, its `INSERT OR IGNORE`, to send with the write that uses it
    /// (when a concurrent first writer's insert wins, that write's check fails).
    pub insert: Option<Stmt>,
}

/// The read of an owner's newest data key.
pub fn newest_stmt(owner: &str) -> Stmt {
    Stmt::new(
        "SELECT version, kek_id, wrapped FROM data_keys WHERE owner = ? ORDER BY version DESC LIMIT 1",
        vec![owner.into()],
    )
}

/// The owner's current data key from the rows of [`newest_stmt`], or a new one (version 1)
/// when there is none yet.
pub async fn from_newest(rows: &Rows, kms: &impl Kms, env: &impl Env, owner: &str) -> Result<Dek> {
    if let Some(r) = rows.first() {
        let (version, wrapped) = (r.int("version"), r.blob("wrapped"));
        let key = unwrap(kms, owner, version, &r.text("kek_id"), &wrapped).await?;
        return Ok(Dek {
            version,
            key,
            wrapped,
            insert: None,
        });
    }
    let mut key = Zeroizing::new(vec![0u8; 32]);
    env.fill_random(&mut key);
    let (kek, wrapped) = kms.wrap(env, &key, &context(owner, 1)).await?;
    let insert = Stmt::new(
        "INSERT OR IGNORE INTO data_keys (owner, version, kek_id, wrapped, created_at) VALUES (?, 1, ?, ?, ?)",
        vec![
            owner.into(),
            kek.into(),
            Value::Blob(wrapped.clone()),
            Value::Integer(env.now_ms() as i64),
        ],
    );
    Ok(Dek {
        version: 1,
        key,
        wrapped,
        insert: Some(insert),
    })
}

/// Unwraps version `version` of the owner's data key from its stored row's fields.
pub async fn unwrap(
    kms: &impl Kms,
    owner: &str,
    version: i64,
    kek_id: &str,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    kms.unwrap(kek_id, wrapped, &context(owner, version)).await
}

/// Rewraps every data key not yet under the current key-encryption key, one row at a time
/// (each update is conditional on the old key id, so an interrupted run can simply be
/// repeated). Returns how many were rewrapped.
pub async fn rewrap_all(db: &impl Db, kms: &impl Kms, env: &impl Env) -> Result<usize> {
    let rows = db
        .query(
            "SELECT owner, version, kek_id, wrapped FROM data_keys WHERE kek_id != ?",
            &[kms.current_id().into()],
        )
        .await?;
    let mut n = 0;
    for r in rows.iter() {
        let (owner, version, old) = (r.text("owner"), r.int("version"), r.text("kek_id"));
        let dek = kms
            .unwrap(&old, &r.blob("wrapped"), &context(&owner, version))
            .await?;
        let (kek, wrapped) = kms.wrap(env, &dek, &context(&owner, version)).await?;
        db.query(
            "UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE owner = ? AND version = ? AND kek_id = ?",
            &[kek.into(), Value::Blob(wrapped), owner.into(), Value::Integer(version), old.into()],
        )
        .await?;
        n += 1;
    }
    Ok(n)
}
