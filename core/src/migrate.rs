//! The schema: `migrations/*.sql`, applied in order, each once.

use crate::db::{Db, Value};
use crate::errors::Result;

/// Every migration, in order: (version, SQL). Files live in the repository's `migrations/`.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_secrets.sql")),
    (3, include_str!("../../migrations/0003_refusals.sql")),
    (4, include_str!("../../migrations/0004_formulas.sql")),
    (5, include_str!("../../migrations/0005_lineage.sql")),
    (6, include_str!("../../migrations/0006_sessions.sql")),
    (7, include_str!("../../migrations/0007_sealed_values.sql")),
    (8, include_str!("../../migrations/0008_key_rates.sql")),
    (9, include_str!("../../migrations/0009_component_files.sql")),
    (10, include_str!("../../migrations/0010_users.sql")),
    (11, include_str!("../../migrations/0011_audit.sql")),
    (12, include_str!("../../migrations/0012_logins.sql")),
    (
        13,
        include_str!("../../migrations/0013_provider_logins.sql"),
    ),
    (15, include_str!("../../migrations/0015_request_states.sql")),
    (
        16,
        include_str!("../../migrations/0016_fewer_pages_per_run.sql"),
    ),
    (17, include_str!("../../migrations/0017_streaming.sql")),
    (18, include_str!("../../migrations/0018_subscriptions.sql")),
];

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Brings the database up to [`latest_version`]. Safe to call on every request: one query
/// when nothing is to do, and each migration is applied once.
pub async fn migrate(db: &impl Db) -> Result<()> {
    // The common case, on every request at the edge: one read says the schema is current.
    if let Ok(rows) = db
        .query(
            "SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations",
            &[],
        )
        .await
    {
        if rows.first().map(|r| r.int("v")) == Some(latest_version()) {
            return Ok(());
        }
    }
    db.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        &[],
    )
    .await?;
    let rows = db
        .query(
            "SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations",
            &[],
        )
        .await?;
    let current = rows.first().map(|r| r.int("v")).unwrap_or(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        for statement in statements(sql) {
            db.query(&statement, &[]).await?;
        }
        // Version 5 changed how versions sort (semver precedence): old rows are re-keyed.
        if *version == 5 {
            crate::registry::rekey_versions(db).await?;
        }
        db.query(
            "INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (?, 0)",
            &[Value::Integer(*version)],
        )
        .await?;
    }
    Ok(())
}

/// Splits a migration into statements (the drivers run one statement per call). Our
/// migrations have no triggers or string literals containing `;`.
fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_split_into_statements_without_comments() {
        let s = super::statements("-- c\nCREATE TABLE a (x INT);\n\nCREATE INDEX i ON a(x);\n");
        assert_eq!(s, vec!["CREATE TABLE a (x INT)", "CREATE INDEX i ON a(x)"]);
    }
}
