//! MCP sessions (`MCP-Session-Id`): random ids, stored hashed, with a sliding expiry.

use crate::crypto::sha256_hex;
use crate::db::{Db, Rows, Stmt, Value};
use crate::env::{random_token, Env};
use crate::errors::Result;

/// A live session.
#[derive(Clone, Debug)]
pub struct Session {
    /// SHA-256 of the session id (the id itself is never stored).
    pub id_hash: String,
    /// The key the session was initialized with, if any.
    pub key_id: Option<String>,
    /// The negotiated protocol version.
    pub protocol_version: String,
    /// The log level it asked for (`logging/setLevel`), if any.
    pub log_level: Option<String>,
}

/// Starts a session and returns its id (shown only in the `initialize` response header).
pub async fn create(
    db: &impl Db,
    env: &impl Env,
    key_id: Option<&str>,
    protocol_version: &str,
    ttl_ms: u64,
) -> Result<String> {
    let id = random_token(env, 32);
    let now = env.now_ms() as i64;
    db.query(
        "INSERT INTO sessions (id_hash, key_id, protocol_version, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        &[
            sha256_hex(id.as_bytes()).into(),
            key_id.map(String::from).into(),
            protocol_version.into(),
            Value::Integer(now),
            Value::Integer(now + ttl_ms as i64),
        ],
    )
    .await?;
    Ok(id)
}

/// The live session with this id, its expiry pushed forward; `None` if unknown or expired.
pub async fn touch(db: &impl Db, id: &str, now_ms: u64, ttl_ms: u64) -> Result<Option<Session>> {
    let s = touch_stmt(id, now_ms, ttl_ms);
    let rows = db.query(&s.sql, &s.params).await?;
    Ok(touched(id, &rows))
}

/// The statement of [`touch`], to send in a batch; [`touched`] reads its rows.
pub fn touch_stmt(id: &str, now_ms: u64, ttl_ms: u64) -> Stmt {
    Stmt::new(
        "UPDATE sessions SET expires_at = ?1 + ?2 WHERE id_hash = ?3 AND expires_at > ?1 RETURNING key_id, protocol_version, log_level",
        vec![
            Value::Integer(now_ms as i64),
            Value::Integer(ttl_ms as i64),
            id_hash(id).into(),
        ],
    )
}

/// The session [`touch_stmt`] found, if it was live.
pub fn touched(id: &str, rows: &Rows) -> Option<Session> {
    rows.first().map(|r| Session {
        id_hash: id_hash(id),
        key_id: r.opt_text("key_id"),
        protocol_version: r.text("protocol_version"),
        log_level: r.opt_text("log_level"),
    })
}

/// Keeps the log level session `id_hash` asked for (`logging/setLevel`), one statement.
pub async fn set_log_level(db: &impl Db, id_hash: &str, level: &str) -> Result<()> {
    db.query(
        "UPDATE sessions SET log_level = ?1 WHERE id_hash = ?2",
        &[level.into(), id_hash.into()],
    )
    .await?;
    Ok(())
}

/// MCP's log levels (RFC 5424's), least severe first.
pub const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// How severe `level` is (its index in [`LEVELS`]), if it is one.
pub fn severity(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// How a session id is stored (the id itself never is).
pub fn id_hash(id: &str) -> String {
    sha256_hex(id.as_bytes())
}

/// Ends a session (DELETE /mcp).
pub async fn delete(db: &impl Db, id: &str) -> Result<bool> {
    let hash = sha256_hex(id.as_bytes());
    db.query(
        "DELETE FROM session_keys WHERE session_hash = ?",
        &[hash.clone().into()],
    )
    .await?;
    db.query(
        "DELETE FROM resource_subscriptions WHERE session_hash = ?",
        &[hash.clone().into()],
    )
    .await?;
    let rows = db
        .query(
            "DELETE FROM sessions WHERE id_hash = ? RETURNING id_hash",
            &[hash.into()],
        )
        .await?;
    Ok(!rows.rows.is_empty())
}

/// Most expired sessions one [`purge_expired`] call deletes.
pub const PURGE_BATCH: usize = 100;

/// Deletes up to [`PURGE_BATCH`] sessions that expired before `now_ms`, with their
/// encryption keys and resource subscriptions; how many sessions went. Bounded and indexed (`sessions_expires_at`), so
/// it can run often without growing with the table.
pub async fn purge_expired(db: &impl Db, now_ms: u64) -> Result<usize> {
    let now = Value::Integer(now_ms as i64);
    // Keys first: the same subquery then still finds their sessions.
    db.query(
        "DELETE FROM session_keys WHERE session_hash IN (SELECT id_hash FROM sessions WHERE expires_at <= ?1 ORDER BY expires_at LIMIT 100)",
        std::slice::from_ref(&now),
    )
    .await?;
    db.query(
        "DELETE FROM resource_subscriptions WHERE session_hash IN (SELECT id_hash FROM sessions WHERE expires_at <= ?1 ORDER BY expires_at LIMIT 100)",
        std::slice::from_ref(&now),
    )
    .await?;
    let rows = db
        .query(
            "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions WHERE expires_at <= ?1 ORDER BY expires_at LIMIT 100) RETURNING id_hash",
            &[now],
        )
        .await?;
    Ok(rows.rows.len())
}
