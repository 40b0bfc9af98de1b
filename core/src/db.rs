//! The small SQL interface the repositories are written against.

use std::borrow::Cow;
use std::sync::Mutex;

/// One SQL value, as SQLite knows them.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// 64-bit integer.
    Integer(i64),
    /// 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Integer(n)
    }
}
impl From<Option<String>> for Value {
    fn from(s: Option<String>) -> Self {
        s.map(Value::Text).unwrap_or(Value::Null)
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Blob(b)
    }
}

/// The rows a statement returned (none for plain writes).
#[derive(Clone, Debug, Default)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<Value>>,
}

/// One row, read by column name.
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl Rows {
    /// Iterates rows with access by column name.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|v| Row {
            columns: &self.columns,
            values: v,
        })
    }
    /// The first row, if any.
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }
}

impl Row<'_> {
    fn get(&self, name: &str) -> &Value {
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| &self.values[i])
            .unwrap_or(&Value::Null)
    }
    /// Text column (empty when NULL).
    pub fn text(&self, name: &str) -> String {
        self.opt_text(name).unwrap_or_default()
    }
    /// Text column, `None` when NULL.
    pub fn opt_text(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Value::Text(s) => Some(s.clone()),
            Value::Integer(n) => Some(n.to_string()),
            _ => None,
        }
    }
    /// Integer column, `None` when NULL.
    pub fn opt_int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Value::Integer(n) => Some(*n),
            Value::Real(f) => Some(*f as i64),
            Value::Text(s) => s.parse().ok(),
            _ => None,
        }
    }
    /// Integer column (0 when NULL).
    pub fn int(&self, name: &str) -> i64 {
        self.opt_int(name).unwrap_or(0)
    }
    /// Blob column, `None` when NULL.
    pub fn opt_blob(&self, name: &str) -> Option<Vec<u8>> {
        match self.get(name) {
            Value::Null => None,
            _ => Some(self.blob(name)),
        }
    }

    /// Blob column (empty when NULL).
    pub fn blob(&self, name: &str) -> Vec<u8> {
        match self.get(name) {
            Value::Blob(b) => b.clone(),
            Value::Text(s) => s.clone().into_bytes(),
            _ => Vec::new(),
        }
    }
}

/// A database error, with the driver's message (never includes parameter values).
#[derive(Debug, Clone)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database error: {}", self.0)
    }
}

/// One statement of a [`Db::batch`]: SQL with positional `?` parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    /// The SQL text (one statement).
    pub sql: Cow<'static, str>,
    /// Its parameters, in order.
    pub params: Vec<Value>,
}

impl Stmt {
    /// A statement with its parameters.
    pub fn new(sql: impl Into<Cow<'static, str>>, params: Vec<Value>) -> Stmt {
        Stmt {
            sql: sql.into(),
            params,
        }
    }

    /// Whether the statement only reads (a `SELECT`); anything else counts as a write.
    pub fn reads_only(&self) -> bool {
        reads_only(&self.sql)
    }
}

/// Whether `sql` is a plain `SELECT` (conservative: everything else is treated as a write).
fn reads_only(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("select"))
}

/// SQL over whatever the platform offers: Spin SQLite, embedded libsql, D1, Hrana.
///
/// Each call is one **round trip** (at the edge, a network round trip): [`Db::query`] sends one
/// statement, [`Db::batch`] several. Requests group their SQL into batches to stay within the
/// round-trip budget (ARCHITECTURE.md).
#[allow(async_fn_in_trait)]
pub trait Db {
    /// Runs one statement with positional `?` parameters and returns its rows.
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError>;

    /// Runs `stmts` in order in one round trip and returns each one's rows. With `atomic`
    /// they take effect together or not at all (the first error is returned).
    ///
    /// This default loops over [`Db::query`] (inside `BEGIN IMMEDIATE … COMMIT` when atomic),
    /// which is what a connection without a batch call (Spin SQLite) can do; drivers with a
    /// batch call (D1's `batch()`, Hrana, embedded libsql) send them at once.
    async fn batch(&self, stmts: &[Stmt], atomic: bool) -> Result<Vec<Rows>, DbError> {
        batch_by_queries(self, stmts, atomic).await
    }
}

/// [`Db::batch`] as a loop over [`Db::query`] (inside `BEGIN IMMEDIATE … COMMIT` when
/// atomic): the default, and what a driver falls back to when it has no batch call.
pub async fn batch_by_queries<D: Db + ?Sized>(
    db: &D,
    stmts: &[Stmt],
    atomic: bool,
) -> Result<Vec<Rows>, DbError> {
    if atomic {
        db.query("BEGIN IMMEDIATE", &[]).await?;
    }
    let mut out = Vec::with_capacity(stmts.len());
    for s in stmts {
        match db.query(&s.sql, &s.params).await {
            Ok(rows) => out.push(rows),
            Err(e) => {
                if atomic {
                    let _ = db.query("ROLLBACK", &[]).await;
                }
                return Err(e);
            }
        }
    }
    if atomic {
        if let Err(e) = db.query("COMMIT", &[]).await {
            let _ = db.query("ROLLBACK", &[]).await;
            return Err(e);
        }
    }
    Ok(out)
}

/// A request's [`Db`] with **read-ahead**: reads a later step will need (e.g. the component
/// and policy of an `execution.run`) are sent along with the request's next round trip (its
/// authentication batch) and served from there when the step asks, instead of costing a
/// round trip of their own.
///
/// A read-ahead result is served once, to a statement with the same SQL and parameters, and
/// only until a later round trip writes: what it read may have changed then.
pub struct Ahead<D> {
    inner: D,
    pending: Mutex<Vec<Stmt>>,
    ready: Mutex<Vec<(Stmt, Rows)>>,
}

impl<D: Db> Ahead<D> {
    /// `inner` with nothing read ahead.
    pub fn new(inner: D) -> Ahead<D> {
        Ahead {
            inner,
            pending: Mutex::new(Vec::new()),
            ready: Mutex::new(Vec::new()),
        }
    }

    /// The database underneath.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Drops whatever was read ahead or is pending: a new request starts with nothing.
    pub fn forget(&self) {
        lock(&self.pending).clear();
        lock(&self.ready).clear();
    }

    /// Sends `reads` (plain `SELECT`s; anything else is ignored) with the next round trip.
    pub fn read_ahead(&self, reads: impl IntoIterator<Item = Stmt>) {
        let ready = lock(&self.ready);
        let mut pending = lock(&self.pending);
        for s in reads {
            // Already read, or already on its way: asking again costs nothing.
            let known = ready.iter().any(|(r, _)| *r == s) || pending.contains(&s);
            if s.reads_only() && !known {
                pending.push(s);
            }
        }
    }

    fn take_ready(&self, sql: &str, params: &[Value]) -> Option<Rows> {
        let mut ready = lock(&self.ready);
        let i = ready
            .iter()
            .position(|(s, _)| s.sql == sql && s.params == params)?;
        Some(ready.swap_remove(i).1)
    }

    /// One round trip of `stmts` plus whatever reads are pending; keeps the reads' rows.
    async fn send(&self, stmts: Vec<Stmt>, atomic: bool) -> Result<Vec<Rows>, DbError> {
        let ahead = std::mem::take(&mut *lock(&self.pending));
        if stmts.iter().any(|s| !s.reads_only()) {
            lock(&self.ready).clear();
        }
        let n = stmts.len();
        if ahead.is_empty() && n == 1 && !atomic {
            let s = &stmts[0];
            return Ok(vec![self.inner.query(&s.sql, &s.params).await?]);
        }
        let mut all = stmts;
        all.extend(ahead);
        let mut rows = self.inner.batch(&all, atomic).await?;
        let extra = rows.split_off(n);
        lock(&self.ready).extend(all.split_off(n).into_iter().zip(extra));
        Ok(rows)
    }
}

impl<D: Db> Db for Ahead<D> {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        if let Some(rows) = self.take_ready(sql, params) {
            return Ok(rows);
        }
        let stmt = Stmt::new(sql.to_string(), params.to_vec());
        Ok(self.send(vec![stmt], false).await?.remove(0))
    }

    async fn batch(&self, stmts: &[Stmt], atomic: bool) -> Result<Vec<Rows>, DbError> {
        if atomic {
            // One transaction sees one state: never mixed with rows read earlier.
            return self.send(stmts.to_vec(), true).await;
        }
        let mut served: Vec<Option<Rows>> = stmts
            .iter()
            .map(|s| self.take_ready(&s.sql, &s.params))
            .collect();
        let missing: Vec<Stmt> = stmts
            .iter()
            .zip(&served)
            .filter(|(_, r)| r.is_none())
            .map(|(s, _)| s.clone())
            .collect();
        let mut sent = if missing.is_empty() {
            Vec::new()
        } else {
            self.send(missing, false).await?
        }
        .into_iter();
        for slot in served.iter_mut().filter(|r| r.is_none()) {
            *slot = sent.next();
        }
        Ok(served.into_iter().map(Option::unwrap_or_default).collect())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data is a plain list; a panic elsewhere cannot leave it half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
