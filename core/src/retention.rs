//! Retention of run records: finished runs older than `execution_retention_days` are
//! deleted in small batches, now and then, so no request pays for a large purge.

use crate::db::{Db, Value};
use crate::env::Env;
use crate::errors::Result;

/// Most rows one purge deletes; the next purge takes the rest.
pub const PURGE_BATCH: i64 = 100;
/// About one `execution.run` in this many also purges (decided by the `Env`'s randomness).
pub const PURGE_ONE_IN: u8 = 32;

/// Deletes up to [`PURGE_BATCH`] runs that finished before `now_ms - retention_ms`, oldest
/// first (indexed by `finished_at`); how many. Runs still under way are never touched.
pub async fn purge(db: &impl Db, now_ms: u64, retention_ms: u64) -> Result<usize> {
    let cutoff = now_ms.saturating_sub(retention_ms) as i64;
    let rows = db
        .query(
            "DELETE FROM executions WHERE id IN \
             (SELECT id FROM executions WHERE finished_at IS NOT NULL AND finished_at < ?1 ORDER BY finished_at LIMIT ?2) RETURNING id",
            &[Value::Integer(cutoff), Value::Integer(PURGE_BATCH)],
        )
        .await?;
    Ok(rows.rows.len())
}

/// Purges on about one call in [`PURGE_ONE_IN`]; a retention of 0 keeps runs forever. A
/// failed purge is left for a later one: it must not fail the request it rode on.
pub async fn maybe_purge(db: &impl Db, env: &impl Env, retention_ms: u64) {
    let mut b = [0u8; 1];
    env.fill_random(&mut b);
    if retention_ms > 0 && b[0] % PURGE_ONE_IN == 0 {
        let _ = purge(db, env.now_ms(), retention_ms).await;
    }
}
