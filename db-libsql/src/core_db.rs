//! The core's `Db` over embedded libsql, for work done natively (`cyfr init`, start-up migrations).

use crate::db::{LocalDb, SqlValue};
use cyfr_core::db::{Db, DbError, Rows, Stmt, Value};
use std::sync::Arc;

/// `cyfr_core::db::Db` backed by a [`LocalDb`].
pub struct CoreDb(pub Arc<LocalDb>);

impl CoreDb {
    /// A fresh, empty database in memory ([`LocalDb::open_in_memory`]), for tests.
    pub async fn open_in_memory() -> anyhow::Result<CoreDb> {
        Ok(CoreDb(Arc::new(LocalDb::open_in_memory().await?)))
    }
}

impl Db for CoreDb {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let r = self
            .0
            .execute(sql, to_sql(params))
            .await
            .map_err(|e| DbError(e.to_string()))?;
        Ok(from_sql(r))
    }

    async fn batch(&self, stmts: &[Stmt], atomic: bool) -> Result<Vec<Rows>, DbError> {
        let stmts = stmts
            .iter()
            .map(|s| (s.sql.to_string(), to_sql(&s.params)))
            .collect();
        let results = self
            .0
            .batch(stmts, atomic)
            .await
            .map_err(|e| DbError(e.to_string()))?;
        Ok(results.into_iter().map(from_sql).collect())
    }
}

/// Core's parameter values as libsql's.
pub fn to_sql(params: &[Value]) -> Vec<SqlValue> {
    params
        .iter()
        .map(|p| match p {
            Value::Null => SqlValue::Null,
            Value::Integer(n) => SqlValue::Integer(*n),
            Value::Real(f) => SqlValue::Real(*f),
            Value::Text(s) => SqlValue::Text(s.clone()),
            Value::Blob(b) => SqlValue::Blob(b.clone()),
        })
        .collect()
}

/// A libsql result as core's rows.
pub fn from_sql(r: crate::db::QueryResult) -> Rows {
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
    Rows {
        columns: r.columns,
        rows,
    }
}

/// Native clock and OS randomness.
pub struct NativeEnv;

impl cyfr_core::env::Env for NativeEnv {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the OS random source is available");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyfr_core::db::Db;

    async fn temp_db(name: &str) -> CoreDb {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir()
            .join(format!("cyfr-coredb-{name}-{}-{nanos}", std::process::id()))
            .join("t.db");
        let db = CoreDb(Arc::new(LocalDb::open(&path).await.unwrap()));
        cyfr_core::migrate::migrate(&db).await.unwrap();
        db
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_purges_old_finished_runs_and_keeps_recent_and_running_ones() {
        let db = temp_db("retention").await;
        let day = 86_400_000i64;
        let now = 100 * day;
        for (id, started, finished) in [
            ("old", now - 40 * day, Some(now - 40 * day)),
            ("recent", now - day, Some(now - day)),
            ("running", now - 40 * day, None),
        ] {
            db.query(
                "INSERT INTO executions (id, reference, component_type, digest, status, caller, policy, started_at, finished_at) VALUES (?, 'r:a.b:1.0.0', 'reagent', 'd', 's', 'key_x', '{}', ?, ?)",
                &[id.into(), Value::Integer(started), finished.map(Value::Integer).unwrap_or(Value::Null)],
            )
            .await
            .unwrap();
        }
        let n = cyfr_core::retention::purge(&db, now as u64, 30 * day as u64)
            .await
            .unwrap();
        assert_eq!(n, 1);
        let rows = db
            .query("SELECT id FROM executions ORDER BY id", &[])
            .await
            .unwrap();
        let ids: Vec<String> = rows.iter().map(|r| r.text("id")).collect();
        assert_eq!(ids, vec!["recent", "running"]);
        // The purge is a range scan of the finished_at index, not a table scan.
        let plan = db.query("EXPLAIN QUERY PLAN SELECT id FROM executions WHERE finished_at IS NOT NULL AND finished_at < 1 ORDER BY finished_at LIMIT 100", &[]).await.unwrap();
        let detail: Vec<String> = plan.iter().map(|r| r.text("detail")).collect();
        assert!(
            detail.iter().any(|d| d.contains("executions_finished")),
            "{detail:?}"
        );
    }

    /// A clock and a fixed "random" byte, to decide `purge_now` both ways.
    struct FixedEnv(u64, u8);
    impl cyfr_core::env::Env for FixedEnv {
        fn now_ms(&self) -> u64 {
            self.0
        }
        fn fill_random(&self, buf: &mut [u8]) {
            buf.fill(self.1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_purge_rides_on_its_share_of_runs_and_never_with_retention_zero() {
        let db = temp_db("maybe").await;
        let day = 86_400_000u64;
        let insert = |id: &'static str| {
            let db = &db;
            async move {
                db.query(
                    "INSERT INTO executions (id, reference, component_type, digest, status, caller, policy, started_at, finished_at) VALUES (?, 'r:a.b:1.0.0', 'reagent', 'd', 's', 'k', '{}', 0, 1)",
                    &[id.into()],
                )
                .await
                .unwrap();
            }
        };
        insert("old").await;
        let count = || async {
            db.query("SELECT count(*) AS n FROM executions", &[])
                .await
                .unwrap()
                .first()
                .unwrap()
                .int("n")
        };
        // Not this call's turn (1 % PURGE_ONE_IN != 0), then retention 0 (keep forever).
        let purge = |env: &FixedEnv, retention| cyfr_core::retention::purge_now(env, retention);
        assert!(purge(&FixedEnv(100 * day, 1), 30 * day).is_none());
        assert!(purge(&FixedEnv(100 * day, 0), 0).is_none());
        assert_eq!(count().await, 1);
        let s = purge(&FixedEnv(100 * day, 0), 30 * day).expect("this call's turn");
        db.query(&s.sql, &s.params).await.unwrap();
        assert_eq!(count().await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migration_5_upgrades_a_version_4_database_in_place() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir()
            .join(format!(
                "cyfr-coredb-upgrade-{}-{nanos}",
                std::process::id()
            ))
            .join("t.db");
        let db = CoreDb(Arc::new(LocalDb::open(&path).await.unwrap()));
        // A database as version 4 left it (our migrations have no `;` inside statements).
        db.query("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)", &[]).await.unwrap();
        for (v, sql) in &cyfr_core::migrate::MIGRATIONS[..4] {
            let text: String = sql
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            for st in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                db.query(st, &[]).await.unwrap();
            }
            db.query(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)",
                &[Value::Integer(*v)],
            )
            .await
            .unwrap();
        }
        db.query(
            "INSERT INTO api_keys (id, name, key_type, key_hash, prefix, scopes, created_at) VALUES ('key_old', 'old', 'secret', 'h', 'cyfr_sk_abcd', 'execution', 0)",
            &[],
        )
        .await
        .unwrap();
        // Versions keyed the old, textual way: rc.9 above rc.10.
        for (v, old_key) in [
            ("1.0.0-rc.9", "0000000001.0000000000.0000000000.rc.9"),
            ("1.0.0-rc.10", "0000000001.0000000000.0000000000.rc.10"),
        ] {
            db.query(
                "INSERT INTO components (component_type, namespace, name, version, version_key, digest, description, manifest, created_at) VALUES ('reagent', 'a', 'b', ?, ?, 'd', '', '{}', 0)",
                &[v.into(), old_key.into()],
            )
            .await
            .unwrap();
        }
        cyfr_core::migrate::migrate(&db).await.unwrap();
        // The old key is its own lineage and budget: its secrets, runs and buckets keep their owner.
        let k = cyfr_core::keys::find_by_id(&db, "key_old")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (k.lineage_id.as_str(), k.budget_id.as_str()),
            ("key_old", "key_old")
        );
        assert_eq!(
            cyfr_core::keys::find_active_by_lineage(&db, "key_old")
                .await
                .unwrap()
                .unwrap()
                .id,
            "key_old"
        );
        let r = cyfr_core::reference::Reference::parse("r:a.b", None).unwrap();
        assert_eq!(
            cyfr_core::registry::versions(&db, &r).await.unwrap(),
            vec!["1.0.0-rc.10", "1.0.0-rc.9"]
        );
        assert_eq!(
            cyfr_core::registry::resolve(&db, &r).await.unwrap().version,
            "1.0.0-rc.10"
        );
    }
}
