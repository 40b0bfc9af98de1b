//! Retention of run records: finished runs older than `execution_retention_days` are
//! deleted in small batches, now and then, so no request pays for a large purge.

use crate::db::{Db, Stmt, Value};
use crate::env::Env;
use crate::errors::Result;

/// Most rows one purge deletes; the next purge takes the rest.
pub const PURGE_BATCH: i64 = 100;
/// About one `execution.run` in this many also purges (decided by the `Env`'s randomness).
pub const PURGE_ONE_IN: u8 = 32;

/// Deletes up to [`PURGE_BATCH`] runs that finished before `now_ms - retention_ms`, oldest
/// first (indexed by `finished_at`); how many. Runs still under way are never touched.
pub async fn purge(db: &impl Db, now_ms: u64, retention_ms: u64) -> Result<usize> {
    let s = purge_stmt(now_ms, retention_ms);
    Ok(db.query(&s.sql, &s.params).await?.rows.len())
}

fn purge_stmt(now_ms: u64, retention_ms: u64) -> Stmt {
    let cutoff = now_ms.saturating_sub(retention_ms) as i64;
    Stmt::new(
        "DELETE FROM executions WHERE id IN \
         (SELECT id FROM executions WHERE finished_at IS NOT NULL AND finished_at < ?1 ORDER BY finished_at LIMIT ?2) RETURNING id",
        vec![Value::Integer(cutoff), Value::Integer(PURGE_BATCH)],
    )
}

/// The purge on about one call in [`PURGE_ONE_IN`], to ride in a run's own write round trip
/// (so it costs no round trip of its own); `None` otherwise, and always for a retention of 0,
/// which keeps runs forever.
pub fn purge_now(env: &impl Env, retention_ms: u64) -> Option<Stmt> {
    let mut b = [0u8; 1];
    env.fill_random(&mut b);
    (retention_ms > 0 && b[0] % PURGE_ONE_IN == 0).then(|| purge_stmt(env.now_ms(), retention_ms))
}
