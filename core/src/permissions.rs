//! Permissions granted to users (the `sub` of a JWT or a login session): what they may do
//! beyond what a token itself carries. A user holds nothing until granted — never admin by
//! default.

use crate::access;
use crate::db::{Db, Rows, Stmt, Value};
use crate::errors::{Error, Result};

/// The statement reading the permissions granted to `subject` (sent in the caller check's
/// round trip; [`granted`] reads its rows).
pub fn grants_stmt(subject: &str) -> Stmt {
    Stmt::new(
        "SELECT permissions FROM user_permissions WHERE subject = ?1",
        vec![subject.into()],
    )
}

/// The permissions in the rows of [`grants_stmt`].
pub fn granted(rows: &Rows) -> Vec<String> {
    rows.first()
        .map(|r| split(&r.text("permissions")))
        .unwrap_or_default()
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Checks a permission list: every entry a scope of the guide, `*` or `tool.*`; duplicates
/// dropped, order kept.
pub fn validated(perms: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for p in perms {
        if !access::grantable(p) {
            return Err(Error::invalid_params(format!(
                "unknown permission `{p}`; permissions are `*`, a scope ({}) or `tool.*`",
                access::SCOPES.join(", ")
            )));
        }
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The permissions granted to `subject` (empty if none).
pub async fn get(db: &impl Db, subject: &str) -> Result<Vec<String>> {
    let s = grants_stmt(subject);
    Ok(granted(&db.query(&s.sql, &s.params).await?))
}

/// Replaces what `subject` is granted (an empty list removes the grant), in one statement.
pub async fn set(
    db: &impl Db,
    subject: &str,
    perms: &[String],
    by: &str,
    now_ms: u64,
) -> Result<()> {
    if perms.is_empty() {
        db.query(
            "DELETE FROM user_permissions WHERE subject = ?1",
            &[subject.into()],
        )
        .await?;
        return Ok(());
    }
    db.query(
        "INSERT INTO user_permissions (subject, permissions, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(subject) DO UPDATE SET permissions = ?2, updated_at = ?3, updated_by = ?4",
        &[
            subject.into(),
            perms.join(",").into(),
            Value::Integer(now_ms as i64),
            by.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Every subject with a grant, by subject.
pub async fn list(db: &impl Db) -> Result<Vec<(String, Vec<String>)>> {
    let rows = db
        .query(
            "SELECT subject, permissions FROM user_permissions ORDER BY subject LIMIT 1000",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.text("subject"), split(&r.text("permissions"))))
        .collect())
}
