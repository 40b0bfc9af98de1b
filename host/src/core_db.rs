//! The core's `Db` over embedded libsql, for work done natively (`cyfr init`, start-up migrations).

use crate::db::{LocalDb, SqlValue};
use cyfr_core::db::{Db, DbError, Rows, Value};
use std::sync::Arc;

/// `cyfr_core::db::Db` backed by a [`LocalDb`].
pub struct CoreDb(pub Arc<LocalDb>);

impl Db for CoreDb {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let params = params
            .iter()
            .map(|p| match p {
                Value::Null => SqlValue::Null,
                Value::Integer(n) => SqlValue::Integer(*n),
                Value::Real(f) => SqlValue::Real(*f),
                Value::Text(s) => SqlValue::Text(s.clone()),
                Value::Blob(b) => SqlValue::Blob(b.clone()),
            })
            .collect();
        let r = self.0.execute(sql, params).await.map_err(|e| DbError(e.to_string()))?;
        let rows = r
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| match v {
                        SqlValue::Null => Value::Null,
                        SqlValue::Integer(n) => Value::Integer(n),
                        SqlValue::Real(f) => Value::Real(f),
                        SqlValue::Text(s) => Value::Text(s),
                        SqlValue::Blob(b) => Value::Blob(b),
                    })
                    .collect()
            })
            .collect();
        Ok(Rows { columns: r.columns, rows })
    }
}

/// Native clock and OS randomness.
pub struct NativeEnv;

impl cyfr_core::env::Env for NativeEnv {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the OS random source is available");
    }
}
