//! [`LocalSession`]: one user's statements on a [`super::LocalDb`]'s shared connection.

use std::sync::Arc;
use std::time::Duration;

use super::{Gate, QueryResult, SqlValue};

/// A session on a [`super::LocalDb`] (what a guest's `spin:sqlite` connection is): it takes the
/// shared connection for each statement, except that a statement which leaves a transaction
/// open (`BEGIN IMMEDIATE`, …) keeps it until a statement ends that transaction (`COMMIT`,
/// `ROLLBACK`, or a failure SQLite rolls back itself), so other sessions wait meanwhile.
/// Dropping a session inside a transaction rolls it back.
///
/// `last_insert_rowid` and `changes` are remembered from the session's own statements: the
/// connection is shared, so its current values may be another session's.
pub struct LocalSession {
    conn: Arc<Gate>,
    lock_timeout: Duration,
    /// This session's number (what the connection's owner is while it has a transaction).
    id: u64,
    /// Whether this session has a transaction open (and so owns the connection).
    owns: bool,
    last_insert_rowid: i64,
    changes: u64,
}

impl LocalSession {
    pub(super) fn new(conn: Arc<Gate>, lock_timeout: Duration) -> LocalSession {
        LocalSession {
            id: conn.session_id(),
            conn,
            lock_timeout,
            owns: false,
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
        let id = self.id;
        let (r, rowid_before, open) = self
            .conn
            .with(id, self.lock_timeout, |conn| {
                let rowid_before = conn.conn.last_insert_rowid();
                let r = conn.run(sql, params);
                let open = conn.in_transaction();
                conn.owner = open.then_some(id);
                (r, rowid_before, open)
            })
            .await?;
        if self.owns && !open {
            self.conn.released.notify_waiters();
        }
        self.owns = open;
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
        self.owns
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
        if self.owns {
            let mut conn = self.conn.lock_now();
            conn.rollback();
            conn.owner = None;
            drop(conn);
            self.conn.released.notify_waiters();
        }
    }
}
