//! An embedded libsql (SQLite) database in a local file.
//!
//! [`LocalDb`] is what Spin's `default` SQLite database is backed by in the native host
//! (`cyfr_host::spin_runner`), and what [`crate::core_db::CoreDb`] sits on. Tests open it
//! in memory ([`LocalDb::open_in_memory`]).
//!
//! A `LocalDb` is ONE long-lived libsql connection (a `Gate`): one connection in the process
//! means our own requests never wait on each other's SQLite locks, and its schema and page
//! cache stay warm. Statements run inline on the calling task under a plain mutex, from a cache
//! of prepared statements (libsql's local futures complete without yielding; SQLite work is
//! microseconds), and the mutex is never held across an `.await`. It used to be an async,
//! fair mutex: under load it was handed to the next waiting task, which then held it while it
//! sat in the runtime's queue behind busy tasks — 1,000 concurrent runs made that convoy wait
//! past 5 s. [`LocalDb::execute`] and [`LocalDb::batch`] hold the mutex for their statements; a
//! [`LocalSession`] (a guest's `spin:sqlite` connection) per statement, and from a statement
//! that opens a transaction until the one that ends it the session OWNS the connection: others
//! wait (asynchronously, for its end) meanwhile. That wait is bounded by [`BUSY_TIMEOUT`], like
//! SQLite's own lock waits.
//!
//! Every statement goes through `query` and all of its rows are collected, so `SELECT`s and
//! `INSERT/UPDATE/DELETE ... RETURNING` both return rows. Automatic WAL checkpoints are off on
//! the shared connection (one would land on whichever request crosses the threshold); a
//! background thread checkpoints instead (`checkpoint.rs`).

mod checkpoint;
mod session;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

pub use session::LocalSession;

/// How long a statement waits for a lock: SQLite's `busy_timeout` (another process's lock)
/// and the wait for the shared connection (another session's transaction).
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Prepared statements kept per connection; past this the cache is emptied (cyfr's own SQL
/// is a few dozen distinct strings, so only a guest sending ad-hoc SQL ever gets here).
const STATEMENT_CACHE: usize = 256;

/// A single SQLite value, as a parameter or as a result column.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<SqlValue> for libsql::Value {
    fn from(v: SqlValue) -> Self {
        match v {
            SqlValue::Null => libsql::Value::Null,
            SqlValue::Integer(i) => libsql::Value::Integer(i),
            SqlValue::Real(f) => libsql::Value::Real(f),
            SqlValue::Text(s) => libsql::Value::Text(s),
            SqlValue::Blob(b) => libsql::Value::Blob(b),
        }
    }
}

impl From<libsql::Value> for SqlValue {
    fn from(v: libsql::Value) -> Self {
        match v {
            libsql::Value::Null => SqlValue::Null,
            libsql::Value::Integer(i) => SqlValue::Integer(i),
            libsql::Value::Real(f) => SqlValue::Real(f),
            libsql::Value::Text(s) => SqlValue::Text(s),
            libsql::Value::Blob(b) => SqlValue::Blob(b),
        }
    }
}

/// The result of one statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// Column names of the result set (empty for statements that return no columns).
    pub columns: Vec<String>,
    /// Every row produced (for `SELECT`, and for statements with `RETURNING`).
    pub rows: Vec<Vec<SqlValue>>,
    /// `last_insert_rowid()` of the connection, read right after the statement.
    pub last_insert_rowid: i64,
    /// `changes()` of the connection, read right after the statement (rows modified by the
    /// most recent completed INSERT/UPDATE/DELETE).
    pub changes: u64,
}

/// An embedded libsql database in a local file (created if missing) in WAL mode, or in memory.
pub struct LocalDb {
    /// Declared first so it is dropped first: its thread (and connection) end before the
    /// shared connection closes, so that close is the last one and checkpoints the WAL away.
    /// Held for that `Drop` (read only by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    checkpointer: Option<checkpoint::Checkpointer>,
    conn: Arc<Gate>,
    lock_timeout: Duration,
    path: PathBuf,
}

impl std::fmt::Debug for LocalDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDb").field("path", &self.path).finish()
    }
}

impl LocalDb {
    /// Opens (creating it, and its parent directories, if missing) the database file at `path`,
    /// switches it to WAL mode and starts its checkpointer.
    pub async fn open(path: impl AsRef<Path>) -> anyhow::Result<LocalDb> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let db = Arc::new(
            libsql::Builder::new_local(&path)
                .build()
                .await
                .with_context(|| format!("opening database {}", path.display()))?,
        );
        let mut conn = Conn::connect(&db)?;
        // In WAL mode NORMAL keeps the database consistent and skips an fsync per commit
        // (a power cut may lose the last commits, never corrupt the file; a killed process
        // loses nothing).
        conn.run("PRAGMA synchronous=NORMAL", Vec::new())?;
        // journal_mode=WAL is persistent in the file; check that it took.
        let r = conn.run("PRAGMA journal_mode=WAL", Vec::new())?;
        let mode = match r.rows.first().and_then(|row| row.first()) {
            Some(SqlValue::Text(m)) => m.to_ascii_lowercase(),
            other => anyhow::bail!("unexpected journal_mode result: {other:?}"),
        };
        anyhow::ensure!(
            mode == "wal",
            "could not enable WAL on {} (journal_mode is {mode})",
            path.display()
        );
        conn.run("PRAGMA wal_autocheckpoint=0", Vec::new())?;
        // A connection holds the WAL open (so it is not checkpointed away and deleted between
        // requests) only once it has read in WAL mode.
        conn.run("SELECT count(*) FROM sqlite_schema", Vec::new())?;
        let conn = Gate::new(conn);
        let checkpointer = checkpoint::Checkpointer::start(db.clone(), Arc::downgrade(&conn))?;
        conn.lock_now().writes = Some(checkpointer.signal());
        Ok(LocalDb {
            checkpointer: Some(checkpointer),
            conn,
            lock_timeout: BUSY_TIMEOUT,
            path,
        })
    }

    /// A fresh, empty database in memory (no file, no WAL), gone when dropped.
    pub async fn open_in_memory() -> anyhow::Result<LocalDb> {
        let db = Arc::new(
            libsql::Builder::new_local(":memory:")
                .build()
                .await
                .context("opening an in-memory database")?,
        );
        Ok(LocalDb {
            checkpointer: None,
            conn: Gate::new(Conn::connect(&db)?),
            lock_timeout: BUSY_TIMEOUT,
            path: PathBuf::from(":memory:"),
        })
    }

    /// The database file's path (`:memory:` in memory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A session: statements in the order it sends them, with its own `last_insert_rowid` and
    /// `changes`; a transaction it opens holds the database until it ends (see [`LocalSession`]).
    pub fn session(&self) -> LocalSession {
        LocalSession::new(self.conn.clone(), self.lock_timeout)
    }

    /// Runs one statement and collects all the rows it returns. Only the first statement of
    /// `sql` is run. A statement that would leave a transaction open is rolled back and
    /// refused: transactions belong in a [`LocalSession`] or an atomic [`LocalDb::batch`].
    pub async fn execute(&self, sql: &str, params: Vec<SqlValue>) -> anyhow::Result<QueryResult> {
        self.conn
            .with(NOT_A_SESSION, self.lock_timeout, |conn| {
                let r = conn.run(sql, params);
                // The statement's own error, if any, says more than "rolled back".
                match conn.end_stray_transaction() {
                    Ok(()) => r,
                    Err(e) => r.and(Err(e)),
                }
            })
            .await?
    }

    /// Runs `stmts` in order under one hold of the connection and returns each one's result.
    /// The first error stops the batch and is returned. With `atomic` the batch is one
    /// transaction (`BEGIN IMMEDIATE` … `COMMIT`): on an error nothing of it stays. Statements
    /// must not begin or end transactions themselves.
    pub async fn batch(
        &self,
        stmts: Vec<(String, Vec<SqlValue>)>,
        atomic: bool,
    ) -> anyhow::Result<Vec<QueryResult>> {
        self.conn
            .with(NOT_A_SESSION, self.lock_timeout, |conn| {
                if atomic {
                    conn.run("BEGIN IMMEDIATE", Vec::new())?;
                }
                let r = conn.run_batch(stmts, atomic);
                match r {
                    Ok(results) if atomic => match conn.run("COMMIT", Vec::new()) {
                        Ok(_) => Ok(results),
                        Err(e) => {
                            conn.rollback();
                            Err(e)
                        }
                    },
                    Ok(results) => {
                        conn.end_stray_transaction()?;
                        Ok(results)
                    }
                    Err(e) => {
                        conn.rollback();
                        Err(e)
                    }
                }
            })
            .await?
    }

    /// Runs `stmts` in order under one hold of the connection as ONE commit, with a loose
    /// batch's meaning: the first error stops it and is returned, and what ran before it
    /// stays (it is committed). The runner's one-call batch (`cyfr_core::sql_batch`) for a
    /// non-atomic batch: one WAL commit instead of one per statement.
    pub async fn batch_one_commit(
        &self,
        stmts: Vec<(String, Vec<SqlValue>)>,
    ) -> anyhow::Result<Vec<QueryResult>> {
        self.conn
            .with(NOT_A_SESSION, self.lock_timeout, |conn| {
                conn.run("BEGIN IMMEDIATE", Vec::new())?;
                let mut results = Vec::with_capacity(stmts.len());
                let mut failed = None;
                for (sql, params) in stmts {
                    match conn.run(&sql, params) {
                        Ok(r) => results.push(r),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                    if !conn.in_transaction() {
                        failed = Some(anyhow::anyhow!(
                            "a statement of a batch ended its transaction: {sql}"
                        ));
                        break;
                    }
                }
                // SQLite may have rolled the transaction back itself (a full disk, say): then
                // there is nothing to commit.
                if conn.in_transaction() {
                    if let Err(e) = conn.run("COMMIT", Vec::new()) {
                        conn.rollback();
                        return Err(e);
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => Ok(results),
                }
            })
            .await?
    }

    /// The same database waiting at most `timeout` for the shared connection (tests use a
    /// short bound instead of [`BUSY_TIMEOUT`]).
    #[cfg(test)]
    fn with_lock_timeout(mut self, timeout: Duration) -> LocalDb {
        self.lock_timeout = timeout;
        self
    }

    /// What the checkpointer has done so far (`None` in memory).
    #[cfg(test)]
    fn checkpoints(&self) -> Option<checkpoint::Stats> {
        self.checkpointer.as_ref().map(|c| c.stats())
    }
}

/// Who asks for the connection when it is not a session (sessions are numbered from 1).
const NOT_A_SESSION: u64 = 0;

/// The one shared connection, and which session (if any) has a transaction open on it.
struct Gate {
    conn: Mutex<Conn>,
    /// Woken when a session's transaction ends (or the session goes).
    released: tokio::sync::Notify,
    /// The next session's number.
    sessions: AtomicU64,
}

impl Gate {
    fn new(conn: Conn) -> Arc<Gate> {
        Arc::new(Gate {
            conn: Mutex::new(conn),
            released: tokio::sync::Notify::new(),
            sessions: AtomicU64::new(NOT_A_SESSION + 1),
        })
    }

    /// A number for a new session.
    fn session_id(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed)
    }

    /// The connection now, whoever owns it (its own statements, the checkpointer, tests). A
    /// panic while it was held poisons nothing that matters here: SQLite's state is its own.
    fn lock_now(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection once no other session has a transaction open on it, waiting
    /// at most `timeout` for that (then failing as SQLite does when a lock is held too long,
    /// so a guest that keeps a transaction open cannot stall the server). `f` runs under the
    /// mutex and must not block on anything but SQLite.
    async fn with<R>(
        &self,
        me: u64,
        timeout: Duration,
        f: impl FnOnce(&mut Conn) -> R,
    ) -> anyhow::Result<R> {
        let mut f = Some(f);
        let mut deadline = None;
        loop {
            // Made before looking, so an end that comes between the look and the wait wakes it.
            let released = self.released.notified();
            {
                let mut conn = self.lock_now();
                if conn.owner.is_none_or(|owner| owner == me) {
                    let f = f.take().expect("runs once");
                    return Ok(f(&mut conn));
                }
            }
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + timeout);
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                anyhow::bail!(
                    "database is locked: another session held a transaction for over {} ms",
                    timeout.as_millis()
                );
            }
        }
    }
}

/// Runs a libsql local future, which completes on its first poll (see [`now`]).
fn at_once<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    now(f).unwrap_or_else(|| Err(anyhow::anyhow!("a statement did not complete at once")))
}

/// The one libsql connection of a [`LocalDb`] and its prepared statements.
struct Conn {
    /// Declared before `conn`: statements are finalized before the connection closes.
    stmts: HashMap<String, libsql::Statement>,
    conn: libsql::Connection,
    /// Tells the checkpointer about writes (files only).
    writes: Option<checkpoint::Signal>,
    /// The session whose open transaction this is, if a session opened one.
    owner: Option<u64>,
    _db: Arc<libsql::Database>,
}

impl Conn {
    fn connect(db: &Arc<libsql::Database>) -> anyhow::Result<Conn> {
        let conn = db.connect().context("connecting to database")?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .context("setting busy_timeout")?;
        Ok(Conn {
            stmts: HashMap::new(),
            conn,
            writes: None,
            owner: None,
            _db: db.clone(),
        })
    }

    /// Runs the first statement of `sql` from the statement cache and collects its rows, there
    /// and then (see [`at_once`]): nothing holds the connection across an `.await`.
    fn run(&mut self, sql: &str, params: Vec<SqlValue>) -> anyhow::Result<QueryResult> {
        at_once(self.run_async(sql, params))
    }

    /// [`Conn::run`]'s work, in libsql's async API.
    async fn run_async(&mut self, sql: &str, params: Vec<SqlValue>) -> anyhow::Result<QueryResult> {
        if !self.stmts.contains_key(sql) {
            let stmt = self.conn.prepare(sql).await?;
            if self.stmts.len() >= STATEMENT_CACHE {
                self.stmts.clear();
            }
            self.stmts.insert(sql.to_owned(), stmt);
        }
        let stmt = &self.stmts[sql];
        let before = self.conn.total_changes();
        let collected = collect(stmt, params).await;
        // Always reset: a statement left mid-rows keeps a read transaction open, which pins
        // the WAL (no checkpoint can pass it) and hides later commits from this connection.
        stmt.reset();
        if let Some(writes) = &self.writes {
            if self.conn.total_changes() != before || !is_select(sql) {
                writes.wrote();
            }
        }
        let (columns, rows) = match collected {
            Ok(c) => c,
            Err(e) => {
                // Prepared again next time rather than trusting a statement that failed.
                self.stmts.remove(sql);
                return Err(e);
            }
        };
        Ok(QueryResult {
            columns,
            rows,
            last_insert_rowid: self.conn.last_insert_rowid(),
            changes: self.conn.changes(),
        })
    }

    /// The statements of a batch, in order; the first error ends it.
    fn run_batch(
        &mut self,
        stmts: Vec<(String, Vec<SqlValue>)>,
        atomic: bool,
    ) -> anyhow::Result<Vec<QueryResult>> {
        let mut results = Vec::with_capacity(stmts.len());
        for (sql, params) in stmts {
            results.push(self.run(&sql, params)?);
            anyhow::ensure!(
                !atomic || !self.conn.is_autocommit(),
                "a statement of an atomic batch ended its transaction: {sql}"
            );
        }
        Ok(results)
    }

    /// Whether a transaction is open on the connection.
    fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Rolls back an open transaction (nothing if none is open).
    fn rollback(&mut self) {
        if self.in_transaction() {
            // libsql's local futures are complete on their first poll; see `now`.
            let done = now(self.conn.execute("ROLLBACK", ()));
            if !matches!(done, Some(Ok(_))) || self.in_transaction() {
                tracing::warn!("ROLLBACK failed: {done:?}");
            }
        }
    }

    /// Rolls back and fails if a single statement left a transaction open.
    fn end_stray_transaction(&mut self) -> anyhow::Result<()> {
        if self.in_transaction() {
            self.rollback();
            anyhow::bail!(
                "a transaction may only be opened by a session or an atomic batch; rolled back"
            );
        }
        Ok(())
    }
}

/// Binds `params` (the missing ones as NULL, as on a freshly prepared statement: a cached one
/// keeps its previous bindings), runs `stmt` and collects its columns and rows.
async fn collect(
    stmt: &libsql::Statement,
    params: Vec<SqlValue>,
) -> anyhow::Result<(Vec<String>, Vec<Vec<SqlValue>>)> {
    let mut values: Vec<libsql::Value> = params.into_iter().map(Into::into).collect();
    let wanted = stmt.parameter_count();
    if values.len() < wanted {
        values.resize(wanted, libsql::Value::Null);
    }
    let mut rows = stmt
        .query(libsql::params::Params::Positional(values))
        .await?;
    let n = rows.column_count();
    let columns = (0..n)
        .map(|i| rows.column_name(i).unwrap_or_default().to_owned())
        .collect();
    let mut out = Vec::new();
    while let Some(row) = rows.next().await? {
        let mut values = Vec::with_capacity(n as usize);
        for i in 0..n {
            values.push(row.get_value(i)?.into());
        }
        out.push(values);
    }
    Ok((columns, out))
}

/// Whether `sql` starts with `SELECT` (reads only; anything else may write a WAL frame).
fn is_select(sql: &str) -> bool {
    let s = sql.trim_start().as_bytes();
    s.len() >= 6 && s[..6].eq_ignore_ascii_case(b"select")
}

/// Polls `f` once: libsql's local futures do their (synchronous) SQLite work and complete on
/// the first poll, so this runs them where there is no task to await on (`Drop`, the
/// checkpointer thread). `None` if one ever did not complete.
fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
