//! Spin's host interfaces for the router: `spin:sqlite/sqlite@3.0.0` over [`LocalDb`] and
//! `fermyon:spin/variables@2.0.0` over a fixed map.
//!
//! The WIT is vendored in `host/wit/` (copied from spin-sdk 5.2.0) so the build never reads the
//! cargo registry.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::db::{LocalDb, LocalSession, SqlValue};

#[allow(missing_docs, clippy::all)]
mod generated {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "cyfr:host/spin-router-host",
        imports: { default: async | trappable },
        with: {
            "spin:sqlite/sqlite.connection": super::SqliteConnection,
        },
    });
}

use generated::fermyon::spin::variables;
use generated::spin::sqlite::sqlite;

/// The host side of a guest's `spin:sqlite/sqlite.connection` resource: a session on the
/// shared connection (dropping it rolls back a transaction the guest left open).
pub struct SqliteConnection {
    session: LocalSession,
}

/// Per-store state for the Spin interfaces.
pub(crate) struct SpinState {
    /// The database behind `connection.open("default")`.
    pub db: Arc<LocalDb>,
    /// Variables, keys lower-cased.
    pub variables: Arc<HashMap<String, String>>,
    /// Variables read fresh on every lookup (e.g. key-encryption keys that may rotate).
    pub dynamic: Option<crate::spin_runner::DynamicVariables>,
}

impl SpinState {
    /// The variable `lower` (a lower-cased name): computed, else from the fixed map.
    fn lookup(&self, lower: &str) -> Option<String> {
        if let Some(v) = self.dynamic.as_ref().and_then(|d| d(lower)) {
            return Some(v);
        }
        self.variables.get(lower).cloned()
    }
}

/// What the Spin interfaces need from the store's data.
pub(crate) trait SpinView: Send + 'static {
    fn spin(&mut self) -> SpinCtxView<'_>;
}

/// A borrow of the Spin state and the store's resource table; the Spin host traits are
/// implemented on it.
pub(crate) struct SpinCtxView<'a> {
    pub state: &'a mut SpinState,
    pub table: &'a mut ResourceTable,
}

struct SpinData;

impl HasData for SpinData {
    type Data<'a> = SpinCtxView<'a>;
}

/// Adds `spin:sqlite/sqlite@3.0.0` and `fermyon:spin/variables@2.0.0` to `linker`.
pub(crate) fn add_to_linker<T: SpinView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    generated::SpinRouterHost::add_to_linker::<T, SpinData>(linker, T::spin)?;
    Ok(())
}

fn to_wit(v: SqlValue) -> sqlite::Value {
    match v {
        SqlValue::Null => sqlite::Value::Null,
        SqlValue::Integer(i) => sqlite::Value::Integer(i),
        SqlValue::Real(f) => sqlite::Value::Real(f),
        SqlValue::Text(s) => sqlite::Value::Text(s),
        SqlValue::Blob(b) => sqlite::Value::Blob(b),
    }
}

fn from_wit(v: sqlite::Value) -> SqlValue {
    match v {
        sqlite::Value::Null => SqlValue::Null,
        sqlite::Value::Integer(i) => SqlValue::Integer(i),
        sqlite::Value::Real(f) => SqlValue::Real(f),
        sqlite::Value::Text(s) => SqlValue::Text(s),
        sqlite::Value::Blob(b) => SqlValue::Blob(b),
    }
}

/// A whole batch in one call (`cyfr_core::sql_batch`: the router sends one when the
/// `sqlite_batch` variable says this runner takes it): one hold of the database, and a loose
/// batch as one commit. Not inside a transaction the guest opened itself.
async fn whole_batch(
    db: &LocalDb,
    session: &LocalSession,
    statement: &str,
    parameters: Vec<sqlite::Value>,
) -> Result<sqlite::QueryResult, sqlite::Error> {
    use cyfr_core::db::{Rows, Value};
    let to_core = |v: sqlite::Value| match v {
        sqlite::Value::Null => Value::Null,
        sqlite::Value::Integer(i) => Value::Integer(i),
        sqlite::Value::Real(f) => Value::Real(f),
        sqlite::Value::Text(s) => Value::Text(s),
        sqlite::Value::Blob(b) => Value::Blob(b),
    };
    let params = parameters.into_iter().map(to_core).collect();
    let (stmts, atomic) = match cyfr_core::sql_batch::decode(statement, params) {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(sqlite::Error::Io(e)),
        None => return Err(sqlite::Error::Io("not a batch".into())),
    };
    if session.in_transaction() {
        return Err(sqlite::Error::Io(
            "a batch cannot run inside a transaction the connection opened".into(),
        ));
    }
    let stmts = stmts
        .into_iter()
        .map(|(sql, ps)| (sql, crate::core_db::to_sql(&ps)))
        .collect();
    let done = if atomic {
        db.batch(stmts, true).await
    } else {
        db.batch_one_commit(stmts).await
    };
    let results = done.map_err(|e| sqlite::Error::Io(format!("{e:#}")))?;
    let rows: Vec<Rows> = results.into_iter().map(crate::core_db::from_sql).collect();
    let all = cyfr_core::sql_batch::encode_results(rows);
    Ok(sqlite::QueryResult {
        columns: all.columns,
        rows: all
            .rows
            .into_iter()
            .map(|row| sqlite::RowResult {
                values: row
                    .into_iter()
                    .map(|v| match v {
                        Value::Null => sqlite::Value::Null,
                        Value::Integer(i) => sqlite::Value::Integer(i),
                        Value::Real(f) => sqlite::Value::Real(f),
                        Value::Text(s) => sqlite::Value::Text(s),
                        Value::Blob(b) => sqlite::Value::Blob(b),
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// Spin's `default` database is the only one.
const DEFAULT_DATABASE: &str = "default";

impl sqlite::Host for SpinCtxView<'_> {}

impl sqlite::HostConnection for SpinCtxView<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, sqlite::Error>> {
        if database != DEFAULT_DATABASE {
            return Ok(Err(sqlite::Error::NoSuchDatabase));
        }
        let session = self.state.db.session();
        let resource = self.table.push(SqliteConnection { session })?;
        Ok(Ok(resource))
    }

    async fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let session = &mut self.table.get_mut(&connection)?.session;
        if statement.starts_with(cyfr_core::sql_batch::PREFIX) {
            let db = self.state.db.clone();
            return Ok(whole_batch(&db, session, &statement, parameters).await);
        }
        let params = parameters.into_iter().map(from_wit).collect();
        Ok(match session.execute(&statement, params).await {
            Ok(r) => Ok(sqlite::QueryResult {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| sqlite::RowResult {
                        values: row.into_iter().map(to_wit).collect(),
                    })
                    .collect(),
            }),
            Err(e) => Err(sqlite::Error::Io(format!("{e:#}"))),
        })
    }

    async fn last_insert_rowid(
        &mut self,
        connection: Resource<SqliteConnection>,
    ) -> wasmtime::Result<i64> {
        Ok(self.table.get(&connection)?.session.last_insert_rowid())
    }

    async fn changes(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&connection)?.session.changes())
    }

    async fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl variables::Host for SpinCtxView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        let lower = name.to_ascii_lowercase();
        if lower == cyfr_core::config::BUNDLE_VARIABLE {
            return Ok(Ok(cyfr_core::config::bundle(|n| self.state.lookup(n))));
        }
        Ok(self
            .state
            .lookup(&lower)
            .ok_or(variables::Error::Undefined(name)))
    }
}
