//! The small SQL interface the repositories are written against.

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

/// SQL over whatever the platform offers: Spin SQLite, embedded libsql, D1, Hrana.
///
/// One statement per call; the entry point decides how connections are made.
#[allow(async_fn_in_trait)]
pub trait Db {
    /// Runs one statement with positional `?` parameters and returns its rows.
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError>;
}
