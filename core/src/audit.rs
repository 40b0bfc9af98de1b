//! The audit log: a row for every tool call, authentication failure and refusal, chained so
//! that an edited, deleted or reordered row — or a cut tail — is found by [`verify`].
//!
//! A row is written in the request's own round trip (the caller check's batch) without its
//! hash: SQLite has no SHA-256, and reading the previous hash first would cost a round trip
//! and race with concurrent writers. [`seal`] chains rows later, in `seq` order:
//! `hash = sha256(previous hash || canonical row)`, and stores a checkpoint (the last sealed
//! row's seq and hash) each time. A row is sealed only once it is [`SEAL_AFTER_MS`] old, so
//! the outcome of its request (written after the call, on a failure) is in it first.
//! Retention deletes the oldest sealed rows and keeps the last deleted row's seq and hash as
//! the chain's anchor. No argument value is ever written: names, references and codes only.

use crate::crypto::sha256_hex;
use crate::db::{Db, Row, Rows, Stmt, Value};
use crate::env::rfc3339;
use crate::errors::{Code, Error, Result};
use serde_json::{json, Value as Json};

/// How old a row must be before [`seal`] chains it: longer than a request takes to record
/// its outcome.
pub const SEAL_AFTER_MS: u64 = 10 * 60_000;
/// Most rows one [`seal`] chains (or prunes); the next takes the rest.
pub const SEAL_BATCH: i64 = 500;
/// Rows one [`verify`] round trip reads.
const VERIFY_PAGE: i64 = 1000;

/// What happened, as the log calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// Failed (bad arguments, a component failure, ...).
    Error,
    /// Refused by policy: scope, IP allowlist, rate limit, egress.
    Denied,
    /// The credentials did not authenticate.
    AuthFailure,
}

impl Outcome {
    /// The name stored and filtered on.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
            Outcome::AuthFailure => "auth_failure",
        }
    }
    /// The outcome of a request that failed with `code`.
    pub fn of(code: Code) -> Outcome {
        match code {
            Code::AuthRequired
            | Code::AuthInvalid
            | Code::AuthExpired
            | Code::SessionExpired
            | Code::SessionRequired => Outcome::AuthFailure,
            Code::InsufficientPermissions | Code::RateLimited | Code::CapabilityDenied => {
                Outcome::Denied
            }
            _ => Outcome::Error,
        }
    }
}

/// Actions that change nothing: every other action is logged as a `change`.
const READS: &[&str] = &[
    "get",
    "list",
    "search",
    "resolve",
    "inspect",
    "logs",
    "status",
    "can_access",
    "get_effective",
    "show",
    "export",
    "executions",
    "whoami",
];

/// A row to write.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// Unix ms.
    pub at: u64,
    /// The request's id (also its `x-request-id`).
    pub request_id: String,
    /// `call`, `change`, `auth`, `secret_read`, ...
    pub event: String,
    /// Who: a key's prefix, a user's `sub`; `None`: the key behind `session_hash`, if any.
    pub actor: Option<String>,
    /// The login session (its hash) or MCP session the request named, to name its user or
    /// key when `actor` is `None`.
    pub session_hash: Option<String>,
    /// Who, when neither names anyone (default `anonymous`).
    pub actor_fallback: Option<String>,
    /// Whose row it is (`Identity::id`), when known before the insert.
    pub actor_id: Option<String>,
    /// The SHA-256 of the bearer API key, to find its lineage in SQL.
    pub key_hash: Option<String>,
    /// Tool and action.
    pub tool: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// The component reference, when the call named one.
    pub reference: Option<String>,
    /// What happened.
    pub outcome: Option<Outcome>,
    /// The JSON-RPC error code of a failure.
    pub error_code: Option<i64>,
    /// The client's address.
    pub client_ip: Option<String>,
    /// How long the request took, when known.
    pub duration_ms: Option<u64>,
    /// Names only (a secret's name, a permission's subject): never a value.
    pub detail: Option<Json>,
}

/// The event of a call to `tool.action`.
pub fn event_of(action: &str) -> &'static str {
    if READS.contains(&action) {
        "call"
    } else {
        "change"
    }
}

fn opt(v: &Option<String>) -> Value {
    v.clone().into()
}

/// Free text from a caller (a tool name, a reference) is kept to 256 characters.
fn cut(s: &str) -> String {
    s.chars().take(256).collect()
}

/// The INSERT of `e`, to ride in a batch the request sends anyway.
pub fn insert_stmt(e: &Entry) -> Stmt {
    Stmt::new(
        "INSERT INTO audit (at, request_id, event, actor, tool, action, reference, outcome, error_code, client_ip, duration_ms, detail, actor_id) \
         VALUES (?1, ?2, ?3, COALESCE(?4, (SELECT sub FROM login_sessions WHERE id_hash = ?12), (SELECT prefix || '...' FROM api_keys WHERE id = (SELECT key_id FROM sessions WHERE id_hash = ?12)), ?14), ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?13, \
         COALESCE(?15, (SELECT COALESCE(NULLIF(lineage_id, ''), id) FROM api_keys WHERE key_hash = ?16), (SELECT 'user:' || sub FROM login_sessions WHERE id_hash = ?12), \
         (SELECT COALESCE(NULLIF(lineage_id, ''), id) FROM api_keys WHERE id = (SELECT key_id FROM sessions WHERE id_hash = ?12))))",
        vec![
            Value::Integer(e.at as i64),
            e.request_id.as_str().into(),
            e.event.as_str().into(),
            opt(&e.actor.as_deref().map(cut)),
            opt(&e.tool.as_deref().map(cut)),
            opt(&e.action.as_deref().map(cut)),
            opt(&e.reference.as_deref().map(cut)),
            e.outcome.unwrap_or(Outcome::Ok).as_str().into(),
            e.error_code.map(Value::Integer).unwrap_or(Value::Null),
            opt(&e.client_ip),
            e.duration_ms
                .map(|d| Value::Integer(d as i64))
                .unwrap_or(Value::Null),
            opt(&e.session_hash),
            opt(&e.detail.as_ref().map(Json::to_string)),
            e.actor_fallback.as_deref().unwrap_or("anonymous").into(),
            opt(&e.actor_id),
            opt(&e.key_hash),
        ],
    )
}

/// Writes `e` now (for a refusal with no batch of its own to ride in).
pub async fn insert(db: &impl Db, e: &Entry) -> Result<()> {
    let s = insert_stmt(e);
    db.query(&s.sql, &s.params).await?;
    Ok(())
}

/// Records how request `request_id` ended, on its row if that is not sealed yet (else as a
/// row of its own, so a sealed row never changes).
pub async fn finish(
    db: &impl Db,
    request_id: &str,
    outcome: Outcome,
    code: Option<i64>,
    duration_ms: u64,
    fallback: &Entry,
) -> Result<()> {
    let rows = db
        .query(
            "UPDATE audit SET outcome = ?2, error_code = ?3, duration_ms = ?4 WHERE request_id = ?1 AND hash IS NULL RETURNING seq",
            &[
                request_id.into(),
                outcome.as_str().into(),
                code.map(Value::Integer).unwrap_or(Value::Null),
                Value::Integer(duration_ms as i64),
            ],
        )
        .await?;
    if rows.rows.is_empty() {
        let mut e = fallback.clone();
        e.outcome = Some(outcome);
        e.error_code = code;
        e.duration_ms = Some(duration_ms);
        insert(db, &e).await?;
    }
    Ok(())
}

/// Writes the duration of the `execution.run` row of request `request_id` (not yet sealed),
/// from its start to `now_ms`: rides in the run's end batch.
pub fn duration_stmt(request_id: &str, now_ms: u64) -> Stmt {
    Stmt::new(
        "UPDATE audit SET duration_ms = max(?2 - at, 0) WHERE request_id = ?1 AND tool = 'execution' AND action = 'run' AND hash IS NULL",
        vec![request_id.into(), Value::Integer(now_ms as i64)],
    )
}

const COLUMNS: &str = "seq, at, request_id, event, actor, actor_id, tool, action, reference, outcome, error_code, client_ip, duration_ms, detail, hash";

/// The canonical encoding of a row (every field but its hash, `seq` included, in a fixed
/// order), as chained.
fn canonical(r: &Row<'_>, seq: i64) -> String {
    json!([
        seq,
        r.int("at"),
        r.text("request_id"),
        r.text("event"),
        r.text("actor"),
        r.opt_text("actor_id"),
        r.opt_text("tool"),
        r.opt_text("action"),
        r.opt_text("reference"),
        r.text("outcome"),
        r.opt_int("error_code"),
        r.opt_text("client_ip"),
        r.opt_int("duration_ms"),
        r.opt_text("detail"),
    ])
    .to_string()
}

/// The chain hash of a row at `seq` after `prev`.
fn link(prev: &str, r: &Row<'_>, seq: i64) -> String {
    let mut bytes = prev.as_bytes().to_vec();
    bytes.extend_from_slice(canonical(r, seq).as_bytes());
    sha256_hex(&bytes)
}

fn anchor_stmt() -> Stmt {
    Stmt::new("SELECT seq, hash FROM audit_anchor WHERE id = 1", vec![])
}

fn anchor(rows: &Rows) -> (i64, String) {
    rows.first()
        .map(|r| (r.int("seq"), r.text("hash")))
        .unwrap_or((0, "0".repeat(64)))
}

/// Chains the rows not sealed yet that are [`SEAL_AFTER_MS`] old (at most [`SEAL_BATCH`]),
/// stores a checkpoint, and prunes sealed rows older than `retention_ms` (0 keeps them),
/// moving the anchor to the last pruned row. Two round trips; safe to run concurrently
/// (the hashes are deterministic, and a sealed row is never written again). How many
/// rows were sealed.
pub async fn seal(db: &impl Db, now_ms: u64, retention_ms: u64) -> Result<usize> {
    let ripe = now_ms.saturating_sub(SEAL_AFTER_MS) as i64;
    let cutoff = if retention_ms == 0 {
        i64::MIN
    } else {
        now_ms.saturating_sub(retention_ms) as i64
    };
    let read = db
        .batch(
            &[
                anchor_stmt(),
                Stmt::new(
                    "SELECT seq, hash FROM audit WHERE hash IS NOT NULL ORDER BY seq DESC LIMIT 1",
                    vec![],
                ),
                Stmt::new(
                    format!("SELECT {COLUMNS} FROM audit WHERE hash IS NULL ORDER BY seq LIMIT ?1"),
                    vec![Value::Integer(SEAL_BATCH)],
                ),
                Stmt::new(
                    "SELECT seq, hash FROM audit WHERE hash IS NOT NULL AND at < ?1 \
                     AND seq < (SELECT MIN(seq) FROM audit) + ?2 ORDER BY seq DESC LIMIT 1",
                    vec![Value::Integer(cutoff), Value::Integer(SEAL_BATCH)],
                ),
            ],
            false,
        )
        .await?;
    let (anchor_seq, anchor_hash) = anchor(&read[0]);
    let (mut prev_seq, mut prev) = read[1]
        .first()
        .map(|r| (r.int("seq"), r.text("hash")))
        .unwrap_or((anchor_seq, anchor_hash));
    let mut writes = Vec::new();
    for r in read[2].iter() {
        let seq = r.int("seq");
        // In order only: a row still young (or a gap) stops the chain here for now.
        if r.int("at") > ripe || seq != prev_seq + 1 {
            break;
        }
        prev = link(&prev, &r, seq);
        prev_seq = seq;
        writes.push(Stmt::new(
            "UPDATE audit SET hash = ?2 WHERE seq = ?1 AND hash IS NULL",
            vec![Value::Integer(seq), prev.clone().into()],
        ));
    }
    let sealed = writes.len();
    if sealed > 0 {
        writes.push(Stmt::new(
            "INSERT OR REPLACE INTO audit_checkpoints (seq, hash, at) VALUES (?1, ?2, ?3)",
            vec![
                Value::Integer(prev_seq),
                prev.into(),
                Value::Integer(now_ms as i64),
            ],
        ));
    }
    if let Some(p) = read[3].first() {
        let (seq, hash) = (Value::Integer(p.int("seq")), Value::Text(p.text("hash")));
        writes.push(Stmt::new(
            "DELETE FROM audit WHERE seq <= ?1 AND hash IS NOT NULL",
            vec![seq.clone()],
        ));
        writes.push(Stmt::new(
            "DELETE FROM audit_checkpoints WHERE seq <= ?1",
            vec![seq.clone()],
        ));
        writes.push(Stmt::new(
            "UPDATE audit_anchor SET seq = ?1, hash = ?2 WHERE id = 1",
            vec![seq, hash],
        ));
    }
    if !writes.is_empty() {
        db.batch(&writes, true).await?;
    }
    Ok(sealed)
}

/// A problem [`verify`] found: the first one in chain order.
fn problem(seq: i64, kind: &str, message: String) -> Json {
    json!({ "seq": seq, "kind": kind, "message": message })
}

/// Walks the chain from its anchor: every sealed row must follow the one before it
/// (`deleted` if a seq is missing), hash as stored (`edited`, or `reordered` when a later
/// row's content belongs at this seq), and the latest checkpoint's row must still be there
/// (`truncated`). Reports the first problem.
pub async fn verify(db: &impl Db) -> Result<Json> {
    let first = db
        .batch(
            &[
                anchor_stmt(),
                Stmt::new(
                    "SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
                    vec![],
                ),
                page_stmt(-1),
            ],
            false,
        )
        .await?;
    let (anchor_seq, anchor_hash) = anchor(&first[0]);
    let checkpoint = first[1].first().map(|r| (r.int("seq"), r.text("hash")));
    let mut page = first[2].clone();
    let (mut expected, mut prev) = (anchor_seq + 1, anchor_hash);
    let (mut total, mut sealed, mut unsealed) = (0usize, 0usize, 0usize);
    let mut last_sealed = anchor_seq;
    let mut found: Option<Json> = None;
    let mut checkpoint_seen = checkpoint.as_ref().is_none_or(|(s, _)| *s <= anchor_seq);
    'walk: loop {
        let n = page.rows.len();
        let mut last = None;
        for (i, r) in page.iter().enumerate() {
            let seq = r.int("seq");
            last = Some(seq);
            total += 1;
            let Some(hash) = r.opt_text("hash") else {
                unsealed += 1;
                expected = seq + 1;
                continue;
            };
            if unsealed > 0 {
                found = Some(problem(
                    seq,
                    "edited",
                    format!("row {seq} is sealed after an unsealed row: a hash was removed"),
                ));
                break 'walk;
            }
            if seq != expected {
                found = Some(problem(
                    expected,
                    "deleted",
                    format!("rows {expected}..{} are missing", seq - 1),
                ));
                break 'walk;
            }
            if link(&prev, &r, seq) != hash {
                // Another row of this page whose content chains at this seq was moved here.
                let moved = page
                    .iter()
                    .skip(i + 1)
                    .find(|o| o.opt_text("hash").as_deref() == Some(link(&prev, o, seq).as_str()));
                found = Some(match moved {
                    Some(o) => problem(
                        seq,
                        "reordered",
                        format!("rows {seq} and {} were swapped", o.int("seq")),
                    ),
                    None => problem(seq, "edited", format!("row {seq} was changed")),
                });
                break 'walk;
            }
            if let Some((cs, ch)) = &checkpoint {
                if *cs == seq {
                    checkpoint_seen = true;
                    if *ch != hash {
                        found = Some(problem(
                            seq,
                            "edited",
                            format!("row {seq} does not match its checkpoint"),
                        ));
                        break 'walk;
                    }
                }
            }
            sealed += 1;
            last_sealed = seq;
            prev = hash;
            expected = seq + 1;
        }
        match last {
            Some(after) if n as i64 == VERIFY_PAGE => {
                let s = page_stmt(after);
                page = db.query(&s.sql, &s.params).await?;
            }
            _ => break,
        }
    }
    if found.is_none() && !checkpoint_seen {
        let (cs, _) = checkpoint.clone().unwrap_or_default();
        found = Some(problem(
            last_sealed + 1,
            "truncated",
            format!("rows after {last_sealed} are missing: a checkpoint names row {cs}"),
        ));
    }
    Ok(json!({
        "valid": found.is_none(),
        "rows": total,
        "sealed": sealed,
        "unsealed": unsealed,
        "anchor_seq": anchor_seq,
        "problem": found,
    }))
}

fn page_stmt(after: i64) -> Stmt {
    Stmt::new(
        format!("SELECT {COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
        vec![Value::Integer(after), Value::Integer(VERIFY_PAGE)],
    )
}

/// Filters of [`list`]; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Whose rows (`Identity::id`): how a non-admin is held to its own.
    pub actor_id: Option<String>,
    /// Tool.
    pub tool: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// `ok`, `error`, `denied`, `auth_failure`.
    pub outcome: Option<String>,
    /// Component reference.
    pub reference: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<u64>,
    /// Unix ms, exclusive.
    pub until: Option<u64>,
    /// Page size.
    pub limit: u64,
    /// Rows skipped.
    pub offset: u64,
}

/// Rows matching `f`, oldest first.
pub async fn list(db: &impl Db, f: &Filter) -> Result<Vec<Json>> {
    let ms = |v: Option<u64>| v.map(|v| Value::Integer(v as i64)).unwrap_or(Value::Null);
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS} FROM audit WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR tool = ?2) \
                 AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR outcome = ?4) AND (?5 IS NULL OR reference = ?5) \
                 AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7) AND (?10 IS NULL OR actor_id = ?10) ORDER BY seq LIMIT ?8 OFFSET ?9"
            ),
            &[
                opt(&f.actor),
                opt(&f.tool),
                opt(&f.action),
                opt(&f.outcome),
                opt(&f.reference),
                ms(f.since),
                ms(f.until),
                Value::Integer(f.limit as i64),
                Value::Integer(f.offset as i64),
                opt(&f.actor_id),
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| to_json(&r)).collect())
}

fn to_json(r: &Row<'_>) -> Json {
    json!({
        "seq": r.int("seq"),
        "timestamp": rfc3339(r.int("at") as u64),
        "request_id": r.text("request_id"),
        "event": r.text("event"),
        "actor": r.text("actor"),
        "actor_id": r.opt_text("actor_id"),
        "tool": r.opt_text("tool"),
        "action": r.opt_text("action"),
        "reference": r.opt_text("reference"),
        "outcome": r.text("outcome"),
        "error_code": r.opt_int("error_code"),
        "client_ip": r.opt_text("client_ip"),
        "duration_ms": r.opt_int("duration_ms"),
        "detail": r.opt_text("detail").and_then(|d| serde_json::from_str::<Json>(&d).ok()),
        "hash": r.opt_text("hash"),
    })
}

/// The columns of a CSV export, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "seq",
    "timestamp",
    "request_id",
    "event",
    "actor",
    "actor_id",
    "tool",
    "action",
    "reference",
    "outcome",
    "error_code",
    "client_ip",
    "duration_ms",
    "detail",
    "hash",
];

/// `events` (from [`list`]) as CSV with a header line.
pub fn to_csv(events: &[Json]) -> String {
    let field = |v: &Json| -> String {
        let s = match v {
            Json::Null => String::new(),
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for e in events {
        let line: Vec<String> = CSV_COLUMNS.iter().map(|c| field(&e[*c])).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// A time filter: Unix ms, or an RFC 3339 date (`2025-01-31`) or time
/// (`2025-01-31T12:00:00Z`).
pub fn parse_time(field: &str, v: &Json) -> Result<Option<u64>> {
    let bad = || {
        Error::invalid_params(format!(
            "`{field}` must be a date (2025-01-31), an RFC 3339 time (2025-01-31T12:00:00Z) or Unix milliseconds"
        ))
    };
    match v {
        Json::Null => Ok(None),
        Json::Number(n) => n.as_u64().map(Some).ok_or_else(bad),
        Json::String(s) => {
            let s = s.trim();
            let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00Z"));
            let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap_or(-1)).collect();
            let t: Vec<i64> = time
                .trim_end_matches('Z')
                .split('.')
                .next()
                .unwrap_or("")
                .split(':')
                .map(|p| p.parse().unwrap_or(-1))
                .collect();
            let ok = d.len() == 3
                && t.len() == 3
                && (1970..=9999).contains(&d[0])
                && (1..=12).contains(&d[1])
                && (1..=31).contains(&d[2])
                && (0..24).contains(&t[0])
                && (0..60).contains(&t[1])
                && (0..61).contains(&t[2]);
            if !ok {
                return Err(bad());
            }
            // Days from civil (Howard Hinnant).
            let (y, m) = if d[1] <= 2 {
                (d[0] - 1, d[1] + 9)
            } else {
                (d[0], d[1] - 3)
            };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let doy = (153 * m + 2) / 5 + d[2] - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146_097 + doe - 719_468;
            let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
            Ok(Some(secs as u64 * 1000))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_the_records_print_them() {
        let ms = 1_735_689_600_000;
        assert_eq!(parse_time("since", &json!("2025-01-01")).unwrap(), Some(ms));
        assert_eq!(
            parse_time("since", &json!(rfc3339(ms + 3_723_000))).unwrap(),
            Some(ms + 3_723_000)
        );
        assert_eq!(parse_time("since", &json!(5)).unwrap(), Some(5));
        assert!(parse_time("since", &json!("yesterday")).is_err());
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let csv = to_csv(&[json!({ "seq": 1, "actor": "a,b", "detail": { "name": "X" } })]);
        let line = csv.lines().nth(1).unwrap();
        assert!(line.starts_with("1,,,,\"a,b\","), "{line}");
        assert!(line.contains(r#""{""name"":""X""}""#), "{line}");
    }
}
