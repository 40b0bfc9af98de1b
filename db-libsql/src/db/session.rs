//! [`LocalSession`]: one user's statements on a [`super::LocalDb`]'s shared connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{lock, Conn, QueryResult, SqlValue};

/// A session on a [`super::LocalDb`] (what a guest's `spin:sqlite` connection is): it takes the
/// shared connection for each statement, except that a statement which leaves a transaction
/// open (`BEGIN IMMEDIATE`, …) keeps it until a statement ends that transaction (`COMMIT`,
/// `ROLLBACK`, or a failure SQLite rolls back itself), so other sessions wait meanwhile.
/// Dropping a session inside a transaction rolls it back.
///
/// `last_insert_rowid` and `changes` are remembered from the session's own statements: the
/// connection is shared, so its current values may be another session's.
pub struct LocalSession {
    conn: Arc<Mutex<Conn>>,
    lock_timeout: Duration,
    /// The connection while this session has a transaction open on it.
    held: Option<OwnedMutexGuard<Conn>>,
    last_insert_rowid: i64,
    changes: u64,
}

impl LocalSession {
    pub(super) fn new(conn: Arc<Mutex<Conn>>, lock_timeout: Duration) -> LocalSession {
        LocalSession {
            conn,
            lock_timeout,
            held: None,
            last_insert_rowid: 0,
            changes: 0,
        }
    }

    /// Runs the first statement of `sql` and collects all the rows it returns. Waits (at most
    /// the lock timeout, then fails as "database is locked") while another session has a
    /// transaction open.
    pub async fn execute(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> anyhow::Result<QueryResult> {
        let mut conn = match self.held.take() {
            Some(conn) => conn,
            None => lock(&self.conn, self.lock_timeout).await?,
        };
        let rowid_before = conn.conn.last_insert_rowid();
        let r = conn.run(sql, params).await;
        if conn.in_transaction() {
            self.held = Some(conn);
        }
        if let Ok(r) = &r {
            // SQLite leaves last_insert_rowid alone unless a row is inserted; unchanged, the
            // connection's value may be another session's insert.
            if r.last_insert_rowid != rowid_before {
                self.last_insert_rowid = r.last_insert_rowid;
            }
            self.changes = r.changes;
        }
        r
    }

    /// Whether this session has a transaction open (and so holds the database).
    pub fn in_transaction(&self) -> bool {
        self.held.is_some()
    }

    /// The rowid of the most recent row this session inserted (0 if none).
    pub fn last_insert_rowid(&self) -> i64 {
        self.last_insert_rowid
    }

    /// SQLite's `changes()` as read right after this session's last successful statement.
    pub fn changes(&self) -> u64 {
        self.changes
    }
}

impl Drop for LocalSession {
    fn drop(&mut self) {
        if let Some(mut conn) = self.held.take() {
            conn.rollback();
        }
    }
}
