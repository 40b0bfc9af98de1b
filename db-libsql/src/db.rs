//! An embedded libsql (SQLite) database in a local file.
//!
//! [`LocalDb`] is what Spin's `default` SQLite database is backed by in the native host
//! (`cyfr_host::spin_runner`), and what [`crate::core_db::CoreDb`] sits on. Tests open it
//! in memory ([`LocalDb::open_in_memory`]).
//!
//! Every statement goes through `query` and all of its rows are collected, so `SELECT`s and
//! `INSERT/UPDATE/DELETE ... RETURNING` both return rows. SQLite calls are synchronous under
//! libsql's async API (and may sleep up to `busy_timeout` waiting for a lock), so each call runs
//! on tokio's blocking pool rather than on a runtime worker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

/// How long a connection waits for a lock held by another connection (`PRAGMA busy_timeout`).
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

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
    /// `last_insert_rowid()` of the connection that ran the statement, read right after it.
    pub last_insert_rowid: i64,
    /// `changes()` of the connection that ran the statement, read right after it (rows
    /// modified by the most recent completed INSERT/UPDATE/DELETE on that connection).
    pub changes: u64,
}

/// An embedded libsql database in a local file (created if missing), in WAL mode.
///
/// One `libsql::Database`; connections are opened as needed (each with `busy_timeout`).
pub struct LocalDb {
    db: Arc<libsql::Database>,
    path: PathBuf,
    /// Held open for the database's lifetime: when the last connection closes SQLite
    /// checkpoints and deletes the WAL (about four fsyncs), which with one short-lived
    /// connection per request happened after nearly every request.
    _keep_wal: Option<LocalConnection>,
    /// In memory, the one connection every statement uses: each new connection to
    /// `:memory:` would be a database of its own.
    memory: Option<LocalConnection>,
}

impl std::fmt::Debug for LocalDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDb").field("path", &self.path).finish()
    }
}

impl LocalDb {
    /// Opens (creating it, and its parent directories, if missing) the database file at `path`
    /// and switches it to WAL mode.
    pub async fn open(path: impl AsRef<Path>) -> anyhow::Result<LocalDb> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let db = libsql::Builder::new_local(&path)
            .build()
            .await
            .with_context(|| format!("opening database {}", path.display()))?;
        let mut this = LocalDb {
            db: Arc::new(db),
            path,
            _keep_wal: None,
            memory: None,
        };
        // journal_mode=WAL is persistent in the file; check that it took.
        let conn = this.connect().await?;
        let r = conn.execute("PRAGMA journal_mode=WAL", Vec::new()).await?;
        let mode = match r.rows.first().and_then(|row| row.first()) {
            Some(SqlValue::Text(m)) => m.to_ascii_lowercase(),
            other => anyhow::bail!("unexpected journal_mode result: {other:?}"),
        };
        anyhow::ensure!(
            mode == "wal",
            "could not enable WAL on {} (journal_mode is {mode})",
            this.path.display()
        );
        // A connection holds the WAL open only once it has read in WAL mode.
        conn.execute("SELECT count(*) FROM sqlite_schema", Vec::new())
            .await?;
        this._keep_wal = Some(conn);
        Ok(this)
    }

    /// A fresh, empty database in memory (no file, no WAL), gone when dropped. Every
    /// statement runs on one connection, so `connect` hands out that same connection.
    pub async fn open_in_memory() -> anyhow::Result<LocalDb> {
        let db = Arc::new(
            libsql::Builder::new_local(":memory:")
                .build()
                .await
                .context("opening an in-memory database")?,
        );
        let handle = db.clone();
        let conn = blocking(move || handle.connect().context("connecting to database")).await?;
        Ok(LocalDb {
            db,
            path: PathBuf::from(":memory:"),
            _keep_wal: None,
            memory: Some(LocalConnection { conn }),
        })
    }

    /// The database file's path (`:memory:` in memory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a new connection (with `busy_timeout` set). Its `last_insert_rowid` and `changes`
    /// are its own, as in SQLite. In memory, the database's one connection.
    pub async fn connect(&self) -> anyhow::Result<LocalConnection> {
        if let Some(conn) = &self.memory {
            return Ok(conn.clone());
        }
        let db = self.db.clone();
        let conn = blocking(move || {
            let conn = db.connect().context("connecting to database")?;
            conn.busy_timeout(BUSY_TIMEOUT)
                .context("setting busy_timeout")?;
            Ok(conn)
        })
        .await?;
        let conn = LocalConnection { conn };
        // In WAL mode NORMAL keeps the database consistent and skips an fsync per commit
        // (a power cut may lose the last commits, never corrupt the file).
        conn.execute("PRAGMA synchronous=NORMAL", Vec::new())
            .await?;
        Ok(conn)
    }

    /// Runs one statement on a fresh connection and collects all rows it returns.
    pub async fn execute(&self, sql: &str, params: Vec<SqlValue>) -> anyhow::Result<QueryResult> {
        self.connect().await?.execute(sql, params).await
    }
}

impl LocalDb {
    /// Runs `stmts` in order on one connection and returns each one's result; with `atomic`
    /// inside `BEGIN IMMEDIATE … COMMIT`, rolled back on the first error (which is returned).
    pub async fn batch(
        &self,
        stmts: Vec<(String, Vec<SqlValue>)>,
        atomic: bool,
    ) -> anyhow::Result<Vec<QueryResult>> {
        let conn = self.connect().await?;
        if atomic {
            conn.execute("BEGIN IMMEDIATE", Vec::new()).await?;
        }
        let mut out = Vec::with_capacity(stmts.len());
        for (sql, params) in stmts {
            match conn.execute(&sql, params).await {
                Ok(r) => out.push(r),
                Err(e) => {
                    if atomic {
                        let _ = conn.execute("ROLLBACK", Vec::new()).await;
                    }
                    return Err(e);
                }
            }
        }
        if atomic {
            if let Err(e) = conn.execute("COMMIT", Vec::new()).await {
                let _ = conn.execute("ROLLBACK", Vec::new()).await;
                return Err(e);
            }
        }
        Ok(out)
    }
}

/// One connection to a [`LocalDb`].
#[derive(Clone)]
pub struct LocalConnection {
    conn: libsql::Connection,
}

impl LocalConnection {
    /// Runs one statement (through `query`) and collects all the rows it returns.
    ///
    /// Only the first statement of `sql` is run.
    pub async fn execute(&self, sql: &str, params: Vec<SqlValue>) -> anyhow::Result<QueryResult> {
        let conn = self.conn.clone();
        let sql = sql.to_owned();
        blocking(move || {
            let handle = tokio::runtime::Handle::current();
            handle.block_on(run_query(&conn, &sql, params))
        })
        .await
    }

    /// The rowid of the most recent successful INSERT on this connection (0 if none).
    pub fn last_insert_rowid(&self) -> i64 {
        self.conn.last_insert_rowid()
    }

    /// Rows modified by the most recently completed INSERT/UPDATE/DELETE on this connection.
    pub fn changes(&self) -> u64 {
        self.conn.changes()
    }
}

async fn run_query(
    conn: &libsql::Connection,
    sql: &str,
    params: Vec<SqlValue>,
) -> anyhow::Result<QueryResult> {
    let params = libsql::params::Params::Positional(params.into_iter().map(Into::into).collect());
    let mut rows = conn.query(sql, params).await?;
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
    drop(rows);
    Ok(QueryResult {
        columns,
        rows: out,
        last_insert_rowid: conn.last_insert_rowid(),
        changes: conn.changes(),
    })
}

/// Runs `f` on tokio's blocking pool (SQLite may sleep waiting for a lock).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("database task panicked")?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cyfr-db-test-{}-{}-{}",
            name,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("test.db")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_outlives_each_statements_connection() {
        let path = temp_path("keep-wal");
        let wal = path.with_extension("db-wal");
        let db = LocalDb::open(&path).await.unwrap();
        db.execute("CREATE TABLE t (x)", vec![]).await.unwrap();
        db.execute("INSERT INTO t VALUES (1)", vec![])
            .await
            .unwrap();
        // Each execute's connection is closed by now; the WAL is not checkpointed away.
        assert!(wal.exists(), "{} was deleted", wal.display());
        drop(db);
        assert!(!wal.exists(), "closing the database checkpoints the WAL");
        let db = LocalDb::open(&path).await.unwrap();
        let rows = db.execute("SELECT x FROM t", vec![]).await.unwrap();
        assert_eq!(rows.rows, vec![vec![SqlValue::Integer(1)]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opens_in_wal_mode_and_round_trips_values() {
        let path = temp_path("wal");
        let db = LocalDb::open(&path).await.unwrap();
        assert!(path.exists());
        let mode = db.execute("PRAGMA journal_mode", vec![]).await.unwrap();
        assert_eq!(mode.rows, vec![vec![SqlValue::Text("wal".into())]]);
        let bt = db.execute("PRAGMA busy_timeout", vec![]).await.unwrap();
        assert_eq!(bt.rows, vec![vec![SqlValue::Integer(5000)]]);

        db.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, n)",
            vec![],
        )
        .await
        .unwrap();
        let conn = db.connect().await.unwrap();
        assert_eq!(conn.last_insert_rowid(), 0);
        let ins = conn
            .execute(
                "INSERT INTO t (i, r, s, b, n) VALUES (?, ?, ?, ?, ?)",
                vec![
                    SqlValue::Integer(-7),
                    SqlValue::Real(1.5),
                    SqlValue::Text("héllo".into()),
                    SqlValue::Blob(vec![0, 1, 255]),
                    SqlValue::Null,
                ],
            )
            .await
            .unwrap();
        assert!(ins.columns.is_empty() && ins.rows.is_empty());
        assert_eq!((ins.last_insert_rowid, ins.changes), (1, 1));
        assert_eq!((conn.last_insert_rowid(), conn.changes()), (1, 1));

        let sel = db
            .execute(
                "SELECT i, r, s, b, n FROM t WHERE id = ?",
                vec![SqlValue::Integer(1)],
            )
            .await
            .unwrap();
        assert_eq!(sel.columns, vec!["i", "r", "s", "b", "n"]);
        assert_eq!(
            sel.rows,
            vec![vec![
                SqlValue::Integer(-7),
                SqlValue::Real(1.5),
                SqlValue::Text("héllo".into()),
                SqlValue::Blob(vec![0, 1, 255]),
                SqlValue::Null,
            ]]
        );

        // Errors surface as errors.
        assert!(db.execute("SELECT * FROM missing", vec![]).await.is_err());
        assert!(conn
            .execute("INSERT INTO t (id) VALUES (1)", vec![])
            .await
            .is_err());

        // Persisted: a second LocalDb on the same file sees the row.
        drop(db);
        let db2 = LocalDb::open(&path).await.unwrap();
        let count = db2
            .execute("SELECT count(*) AS c FROM t", vec![])
            .await
            .unwrap();
        assert_eq!(count.rows, vec![vec![SqlValue::Integer(1)]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_statements_share_one_database() {
        let db = LocalDb::open_in_memory().await.unwrap();
        assert_eq!(db.path(), Path::new(":memory:"));
        db.execute("CREATE TABLE t (x)", vec![]).await.unwrap();
        db.execute("INSERT INTO t VALUES (?)", vec![SqlValue::Integer(7)])
            .await
            .unwrap();
        let rows = db.execute("SELECT x FROM t", vec![]).await.unwrap();
        assert_eq!(rows.rows, vec![vec![SqlValue::Integer(7)]]);
        let other = LocalDb::open_in_memory().await.unwrap();
        assert!(other.execute("SELECT x FROM t", vec![]).await.is_err());
    }

    /// The rate limiter's statement: an upsert whose DO UPDATE has a WHERE. When the WHERE is
    /// false nothing is updated and RETURNING yields no row.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upsert_with_where_returning_yields_no_row_when_where_is_false() {
        let db = LocalDb::open(temp_path("upsert")).await.unwrap();
        db.execute(
            "CREATE TABLE rate (key TEXT PRIMARY KEY, count INTEGER NOT NULL)",
            vec![],
        )
        .await
        .unwrap();
        let upsert = "INSERT INTO rate (key, count) VALUES (?1, 1) \
                      ON CONFLICT(key) DO UPDATE SET count = count + 1 \
                      WHERE rate.count < ?2 \
                      RETURNING count";
        let limit = 3;
        let mut seen = Vec::new();
        for _ in 0..5 {
            let r = db
                .execute(
                    upsert,
                    vec![SqlValue::Text("k".into()), SqlValue::Integer(limit)],
                )
                .await
                .unwrap();
            assert_eq!(r.columns, vec!["count"]);
            seen.push((r.rows.clone(), r.changes));
        }
        let one = |n| (vec![vec![SqlValue::Integer(n)]], 1);
        assert_eq!(
            seen,
            vec![one(1), one(2), one(3), (vec![], 0), (vec![], 0)],
            "insert, two updates, then the WHERE is false: no row, no change"
        );
        let r = db
            .execute("SELECT count FROM rate WHERE key = 'k'", vec![])
            .await
            .unwrap();
        assert_eq!(r.rows, vec![vec![SqlValue::Integer(3)]]);
    }
}
