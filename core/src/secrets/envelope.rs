//! Per-owner data keys, wrapped by the key-encryption key. Secret ciphertexts never change
//! when the master key rotates: only these wrapped keys are rewrapped.

use crate::db::{Db, Value};
use crate::env::Env;
use crate::errors::{Error, Result};
use crate::kms::Kms;
use zeroize::Zeroizing;

fn context(owner: &str, version: i64) -> String {
    format!("cyfr-dek|{owner}|{version}")
}

/// The owner's current data key (created on first use) and its version.
pub async fn current(
    db: &impl Db,
    kms: &impl Kms,
    env: &impl Env,
    owner: &str,
) -> Result<(i64, Zeroizing<Vec<u8>>)> {
    let rows = db
        .query(
            "SELECT version FROM data_keys WHERE owner = ? ORDER BY version DESC LIMIT 1",
            &[owner.into()],
        )
        .await?;
    if let Some(v) = rows.first().map(|r| r.int("version")) {
        return Ok((v, get(db, kms, owner, v).await?));
    }
    let mut dek = Zeroizing::new(vec![0u8; 32]);
    env.fill_random(&mut dek);
    let (kek, wrapped) = kms.wrap(env, &dek, &context(owner, 1)).await?;
    // Two first writers race harmlessly: one insert wins and both read it back.
    db.query(
        "INSERT OR IGNORE INTO data_keys (owner, version, kek_id, wrapped, created_at) VALUES (?, 1, ?, ?, ?)",
        &[owner.into(), kek.into(), Value::Blob(wrapped), Value::Integer(env.now_ms() as i64)],
    )
    .await?;
    Ok((1, get(db, kms, owner, 1).await?))
}

/// A specific version of the owner's data key.
pub async fn get(
    db: &impl Db,
    kms: &impl Kms,
    owner: &str,
    version: i64,
) -> Result<Zeroizing<Vec<u8>>> {
    let rows = db
        .query(
            "SELECT kek_id, wrapped FROM data_keys WHERE owner = ? AND version = ?",
            &[owner.into(), Value::Integer(version)],
        )
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| Error::internal(format!("data key {version} of {owner} is missing")))?;
    kms.unwrap(
        &row.text("kek_id"),
        &row.blob("wrapped"),
        &context(owner, version),
    )
    .await
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
