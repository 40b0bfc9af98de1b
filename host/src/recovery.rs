//! What `cyfr up` does at start-up after a crash: one server per data directory, and runs a
//! dead server left `started` are ended as `failed`, since nothing will ever finish them.

use crate::core_db::CoreDb;
use crate::db::LocalDb;
use cyfr_core::db::{Db, Value};
use std::path::Path;
use std::sync::Arc;

/// The error a run left `started` by a previous process gets.
pub const ABANDONED: &str =
    "the server stopped before this run finished (ended at the next start-up)";

/// Takes `data_dir/cyfr.lock` for as long as the returned file lives. The OS drops the lock
/// when the process dies, even by SIGKILL, so a crash never leaves the directory locked; a
/// second `cyfr up` on the same directory is refused (it would end the first one's runs).
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("cyfr.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `cyfr up` is serving {}; stop it first",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::anyhow!("locking {}: {e}", path.display()))
        }
    }
}

/// Ends every run still `started` (only a previous process can have left one: this one holds
/// the directory's lock and has not served yet); how many there were.
pub async fn fail_abandoned_runs(db: &Arc<LocalDb>, now_ms: u64) -> anyhow::Result<usize> {
    let rows = CoreDb(db.clone())
        .query(
            "UPDATE executions SET status = 'failed', error = ?1, finished_at = ?2, duration_ms = max(?2 - started_at, 0) \
             WHERE status = 'started' RETURNING id",
            &[ABANDONED.into(), Value::Integer(now_ms as i64)],
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(rows.rows.len())
}
