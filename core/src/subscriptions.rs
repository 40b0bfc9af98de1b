//! A 2025-11-25 session's resource subscriptions (`resources/subscribe`, `unsubscribe`):
//! the URIs it watches, per session in SQL (`resource_subscriptions`, migration 0018),
//! since nothing survives between requests. 2026-07-28 has no such method (`modern`).

use crate::db::{Db, Stmt, Value};
use crate::errors::{Error, Result};

/// Most URIs one session may watch: a session cannot grow the table without bound.
pub const MAX_PER_SESSION: i64 = 100;

/// Longest URI accepted.
pub const MAX_URI_BYTES: usize = 2048;

/// The `uri` of a subscribe/unsubscribe, checked: a non-empty string of at most
/// [`MAX_URI_BYTES`] without control characters.
pub fn uri(params: &serde_json::Value) -> Result<&str> {
    let uri = params
        .get("uri")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| Error::invalid_params("`uri` (a string) is required"))?;
    if uri.is_empty() || uri.len() > MAX_URI_BYTES || uri.chars().any(char::is_control) {
        return Err(Error::invalid_params(format!(
            "`uri` must be 1 to {MAX_URI_BYTES} bytes without control characters"
        )));
    }
    Ok(uri)
}

/// Session `session_hash` watches `uri` (again: no change). One round trip; refused when the
/// session already watches [`MAX_PER_SESSION`] other URIs.
pub async fn subscribe(db: &impl Db, session_hash: &str, uri: &str, now_ms: u64) -> Result<()> {
    let (s, u) = (Value::from(session_hash), Value::from(uri));
    let rows = db
        .batch(
            &[
                Stmt::new(
                    "INSERT OR IGNORE INTO resource_subscriptions (session_hash, uri, created_at) \
                     SELECT ?1, ?2, ?3 WHERE (SELECT count(*) FROM resource_subscriptions \
                     WHERE session_hash = ?1) < ?4",
                    vec![
                        s.clone(),
                        u.clone(),
                        Value::Integer(now_ms as i64),
                        Value::Integer(MAX_PER_SESSION),
                    ],
                ),
                Stmt::new(
                    "SELECT count(*) AS n FROM resource_subscriptions WHERE session_hash = ?1 AND uri = ?2",
                    vec![s, u],
                ),
            ],
            true,
        )
        .await?;
    if rows.get(1).and_then(|r| r.first()).map(|r| r.int("n")) != Some(1) {
        return Err(Error::invalid_params(format!(
            "this session already watches {MAX_PER_SESSION} resources: unsubscribe from one first"
        )));
    }
    Ok(())
}

/// Session `session_hash` stops watching `uri` (not watched: no change). One round trip.
pub async fn unsubscribe(db: &impl Db, session_hash: &str, uri: &str) -> Result<()> {
    db.query(
        "DELETE FROM resource_subscriptions WHERE session_hash = ?1 AND uri = ?2",
        &[session_hash.into(), uri.into()],
    )
    .await?;
    Ok(())
}
