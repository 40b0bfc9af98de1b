//! Login sessions and the device flow that makes them (`cyfr login`): a device code asked
//! for without credentials, approved by an admin (cyfr's own verification), polled until it
//! yields a session id — the bearer or `MCP-Session-Id` the CLI then sends. State lives in
//! SQL only; ids and device codes are stored as SHA-256.

use crate::crypto::sha256_hex;
use crate::db::{Db, Rows, Stmt, Value};
use crate::env::{random_token, Env};
use crate::errors::{Error, Result};
use serde_json::{json, Value as Json};

/// Where a person approves a user code: cyfr's own verification page.
pub const VERIFICATION_PATH: &str = "/auth/device";

/// How long a device code may be polled, in seconds (GitHub's default).
pub const DEVICE_CODE_TTL_S: u64 = 900;
/// The least time between polls, in seconds.
pub const POLL_INTERVAL_S: u64 = 5;

/// A signed-in user, as a login session names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginUser {
    /// The user id.
    pub sub: String,
    /// Email, if known.
    pub email: Option<String>,
    /// Display name, if known.
    pub name: Option<String>,
}

/// How a session or device id is stored.
pub fn id_hash(id: &str) -> String {
    sha256_hex(id.as_bytes())
}

/// The caller check's statements for a login session `id`: its touch (a row when live,
/// expiry pushed forward), whether it exists at all, the user's grants, and with a `rate`,
/// the user's rate-limit take (a row when allowed; the GCRA of `ratelimit::take_stmt`, in a
/// bucket named from the session's `sub`, `key:user:<sub>` as a JWT's).
pub fn use_stmts(
    id: &str,
    now_ms: u64,
    ttl_ms: u64,
    rate: Option<crate::units::Rate>,
) -> Vec<Stmt> {
    let h = id_hash(id);
    let mut stmts = vec![
        Stmt::new(
            "UPDATE login_sessions SET expires_at = ?1 + ?2 WHERE id_hash = ?3 AND expires_at > ?1 RETURNING sub, email, name",
            vec![
                Value::Integer(now_ms as i64),
                Value::Integer(ttl_ms as i64),
                h.clone().into(),
            ],
        ),
        Stmt::new(
            "SELECT 1 AS known FROM login_sessions WHERE id_hash = ?1",
            vec![h.clone().into()],
        ),
        Stmt::new(
            "SELECT permissions FROM user_permissions WHERE subject = (SELECT sub FROM login_sessions WHERE id_hash = ?1)",
            vec![h.clone().into()],
        ),
    ];
    if let Some(rate) = rate {
        let g = crate::ratelimit::Gcra::from(rate);
        let now_us = (now_ms as i64).saturating_mul(1000);
        stmts.push(Stmt::new(
            "INSERT INTO rate_limits (bucket, tat) SELECT 'key:user:' || sub, ?2 + ?3 FROM login_sessions              WHERE id_hash = ?1 AND expires_at > ?5              ON CONFLICT(bucket) DO UPDATE SET tat = max(rate_limits.tat, ?2) + ?3              WHERE max(rate_limits.tat, ?2) + ?3 - ?2 <= ?4 RETURNING tat",
            vec![
                h.into(),
                Value::Integer(now_us),
                Value::Integer(g.interval_us),
                Value::Integer(g.window_us),
                Value::Integer(now_ms as i64),
            ],
        ));
    }
    stmts
}

/// The user of a live session from the first rows of [`use_stmts`].
pub fn user_of(rows: &Rows) -> Option<LoginUser> {
    rows.first().map(|r| LoginUser {
        sub: r.text("sub"),
        email: r.opt_text("email"),
        name: r.opt_text("name"),
    })
}

/// Ends a login session: expired at once (so its id answers -33003), and listed as revoked,
/// so a JWT naming it as `session_id` is refused too.
pub async fn logout(db: &impl Db, session_hash: &str, now_ms: u64) -> Result<()> {
    db.batch(
        &[
            Stmt::new(
                "UPDATE login_sessions SET expires_at = 0 WHERE id_hash = ?1",
                vec![session_hash.into()],
            ),
            Stmt::new(
                "INSERT OR IGNORE INTO revoked_sessions (id_hash, revoked_at) VALUES (?1, ?2)",
                vec![session_hash.into(), Value::Integer(now_ms as i64)],
            ),
        ],
        true,
    )
    .await?;
    Ok(())
}

/// A user code: 8 letters a person can read out (no vowels-lookalikes), as `ABCD-EFGH`.
fn user_code(env: &impl Env) -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut b = [0u8; 8];
    env.fill_random(&mut b);
    let s: String = b
        .iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &s[..4], &s[4..])
}

/// Starts a device authorization with cyfr's own verification: a device code (returned
/// once) and a user code an admin approves. One statement.
pub async fn device_init(
    db: &impl Db,
    env: &impl Env,
    provider: &str,
    verification_uri: &str,
) -> Result<Json> {
    let device_code = random_token(env, 32);
    let code = user_code(env);
    let now = env.now_ms();
    db.query(
        "INSERT INTO device_codes (code_hash, user_code, provider, status, interval_s, created_at, expires_at) VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6)",
        &[
            id_hash(&device_code).into(),
            code.as_str().into(),
            provider.into(),
            Value::Integer(POLL_INTERVAL_S as i64),
            Value::Integer(now as i64),
            Value::Integer((now + DEVICE_CODE_TTL_S * 1000) as i64),
        ],
    )
    .await?;
    Ok(json!({
        "device_code": device_code,
        "user_code": code,
        "verification_uri": verification_uri,
        "expires_in": DEVICE_CODE_TTL_S,
        "interval": POLL_INTERVAL_S,
    }))
}

/// Whether `user` may sign in under `allowed_users` (CYFR_ALLOWED_USER): its id, or its
/// email (any case), is listed; an empty list allows anyone.
pub fn allowed(allowed_users: &[String], user: &LoginUser) -> bool {
    allowed_users.is_empty()
        || allowed_users.iter().any(|a| {
            *a == user.sub
                || user
                    .email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(a))
        })
}

/// The key a provider's device code is sealed under: derived from cyfr's own device code,
/// which only the client holds (the row keeps its SHA-256, a different hash).
fn code_key(device_code: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"cyfr provider device code\0");
    h.update(device_code.as_bytes());
    h.finalize().into()
}

/// Starts a device authorization that `provider` runs: cyfr's own opaque device code (the
/// provider's is stored sealed under it and never leaves the server), the provider's user
/// code, lifetime and interval. One statement.
pub async fn device_init_provider(
    db: &impl Db,
    env: &impl Env,
    provider: &str,
    provider_code: &str,
    user_code: &str,
    expires_in: u64,
    interval: u64,
) -> Result<Json> {
    use base64::Engine;
    let device_code = random_token(env, 32);
    let hash = id_hash(&device_code);
    let sealed = crate::kms::seal(
        env,
        &code_key(&device_code),
        provider_code.as_bytes(),
        hash.as_bytes(),
    )?;
    let now = env.now_ms();
    let interval = interval.max(POLL_INTERVAL_S);
    db.query(
        "INSERT INTO device_codes (code_hash, user_code, provider, status, interval_s, created_at, expires_at, provider_code) VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7)",
        &[
            hash.clone().into(),
            // Not the provider's user code, which it may hand out again: this column is
            // what cyfr's own page decides by, and a provider's codes are not its to decide.
            format!("{provider}:{hash}").into(),
            provider.into(),
            Value::Integer(interval as i64),
            Value::Integer(now as i64),
            Value::Integer((now + expires_in * 1000) as i64),
            base64::engine::general_purpose::STANDARD.encode(sealed).into(),
        ],
    )
    .await?;
    Ok(json!({
        "device_code": device_code,
        "user_code": user_code,
        "expires_in": expires_in,
        "interval": interval,
    }))
}

/// Approves (or denies) the pending code `user_code` for `user`. One statement; an unknown,
/// expired or already decided code is -32602. Only codes of cyfr's own verification are
/// decided here: a provider's codes are the provider's to approve.
pub async fn decide(
    db: &impl Db,
    user_code: &str,
    user: Option<&LoginUser>,
    now_ms: u64,
) -> Result<()> {
    let code = user_code.trim().to_ascii_uppercase();
    let (status, sub, email, name) = match user {
        Some(u) => (
            "approved",
            Some(u.sub.clone()),
            u.email.clone(),
            u.name.clone(),
        ),
        None => ("denied", None, None, None),
    };
    let rows = db
        .query(
            "UPDATE device_codes SET status = ?2, sub = ?3, email = ?4, name = ?5 WHERE user_code = ?1 AND status = 'pending' AND provider = 'cyfr' AND expires_at > ?6 RETURNING code_hash",
            &[
                code.as_str().into(),
                status.into(),
                sub.into(),
                email.into(),
                name.into(),
                Value::Integer(now_ms as i64),
            ],
        )
        .await?;
    if rows.rows.is_empty() {
        return Err(Error::invalid_params(format!(
            "no pending device code `{code}` (unknown, expired or already decided)"
        )));
    }
    Ok(())
}

/// What one poll found: the answer, or a pending code whose provider must be asked.
pub enum Poll {
    /// The answer to give.
    Answer(Json),
    /// A provider's pending code, polled no sooner than its interval: ask its token endpoint.
    Provider(ProviderPoll),
}

/// A provider's pending device code, opened for one token request.
pub struct ProviderPoll {
    /// Which provider runs it.
    pub provider: String,
    /// The provider's device code.
    pub device_code: zeroize::Zeroizing<String>,
    code_hash: String,
}

/// One poll of `device_code`, in one atomic round trip: an approved code becomes a login
/// session (its id returned this once) and is spent; otherwise `pending` (with `slow_down`
/// when polled faster than its interval), `denied` or `expired` — or, for a provider's
/// pending code, [`Poll::Provider`].
pub async fn device_poll(
    db: &impl Db,
    env: &impl Env,
    device_code: &str,
    ttl_ms: u64,
) -> Result<Poll> {
    // A provider's code is decided from this read (sent ahead with the caller check, so it
    // costs no round trip of its own); the write comes after the provider answered.
    let peek = poll_peek_stmt(device_code);
    let peeked = db.query(&peek.sql, &peek.params).await?;
    if let Some(r) = peeked.first() {
        let now = env.now_ms() as i64;
        if let (Some(sealed), "pending", true) = (
            r.opt_text("provider_code"),
            r.text("status").as_str(),
            r.int("expires_at") > now,
        ) {
            if r.opt_int("last_poll_at")
                .is_some_and(|p| p + r.int("interval_s") * 1000 > now)
            {
                return Ok(Poll::Answer(
                    json!({ "status": "pending", "slow_down": true }),
                ));
            }
            return Ok(Poll::Provider(open_code(
                device_code,
                r.text("provider"),
                &sealed,
            )?));
        }
    }
    let now = Value::Integer(env.now_ms() as i64);
    let session_id = random_token(env, 32);
    let code = id_hash(device_code);
    let rows = db
        .batch(
            &[
                Stmt::new(
                    "INSERT INTO login_sessions (id_hash, sub, email, name, provider, created_at, expires_at) \
                     SELECT ?1, sub, email, name, provider, ?2, ?2 + ?3 FROM device_codes \
                     WHERE code_hash = ?4 AND status = 'approved' AND expires_at > ?2 RETURNING sub, email, name",
                    vec![
                        id_hash(&session_id).into(),
                        now.clone(),
                        Value::Integer(ttl_ms as i64),
                        code.clone().into(),
                    ],
                ),
                Stmt::new(
                    "UPDATE device_codes SET status = CASE WHEN status = 'approved' AND expires_at > ?2 THEN 'complete' ELSE status END, \
                     prev_poll_at = last_poll_at, last_poll_at = ?2 WHERE code_hash = ?1 \
                     RETURNING status, expires_at, interval_s, prev_poll_at",
                    vec![code.into(), now.clone()],
                ),
            ],
            true,
        )
        .await?;
    if let Some(u) = user_of(&rows[0]) {
        return Ok(Poll::Answer(json!({
            "status": "complete",
            "session_id": session_id,
            "user": { "id": u.sub, "email": u.email, "name": u.name },
        })));
    }
    let Some(r) = rows[1].first() else {
        return Err(Error::invalid_params("unknown `device_code`"));
    };
    let now = env.now_ms() as i64;
    Ok(Poll::Answer(match r.text("status").as_str() {
        "denied" => json!({ "status": "denied" }),
        "pending" if r.int("expires_at") > now => {
            let too_soon = r
                .opt_int("prev_poll_at")
                .is_some_and(|p| p + r.int("interval_s") * 1000 > now);
            if too_soon {
                json!({ "status": "pending", "slow_down": true })
            } else if let Some(sealed) = r.opt_text("provider_code") {
                return Ok(Poll::Provider(open_code(
                    device_code,
                    r.text("provider"),
                    &sealed,
                )?));
            } else {
                json!({ "status": "pending" })
            }
        }
        // Expired, or already spent by an earlier poll: the code yields nothing more.
        _ => json!({ "status": "expired" }),
    }))
}

/// The read [`device_poll`] starts with: tools read it ahead with the caller check.
pub fn poll_peek_stmt(device_code: &str) -> Stmt {
    Stmt::new(
        "SELECT provider, provider_code, status, expires_at, interval_s, last_poll_at FROM device_codes WHERE code_hash = ?1",
        vec![id_hash(device_code).into()],
    )
}

fn open_code(device_code: &str, provider: String, sealed: &str) -> Result<ProviderPoll> {
    use base64::Engine;
    let code_hash = id_hash(device_code);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(|_| Error::internal("a stored provider device code is not base64"))?;
    let plain = crate::kms::open(&code_key(device_code), &bytes, code_hash.as_bytes())?;
    let code = String::from_utf8(plain.to_vec())
        .map_err(|_| Error::internal("a stored provider device code is not text"))?;
    Ok(ProviderPoll {
        provider,
        device_code: zeroize::Zeroizing::new(code),
        code_hash,
    })
}

/// What the provider said of a polled code, written in one statement with the poll's time
/// (the next poll within the interval is answered `slow_down` without asking): `pending`,
/// `slow_down` (the interval widened by 5 s, RFC 8628 §3.5), or `denied` / `expired`,
/// which end it (its provider code dropped). The answer to give.
pub async fn provider_said(
    db: &impl Db,
    env: &impl Env,
    p: &ProviderPoll,
    status: &str,
) -> Result<Json> {
    let sql = match status {
        "pending" => "UPDATE device_codes SET last_poll_at = ?2 WHERE code_hash = ?1 AND status = 'pending'",
        "slow_down" => "UPDATE device_codes SET last_poll_at = ?2, interval_s = interval_s + 5 WHERE code_hash = ?1 AND status = 'pending'",
        "denied" => "UPDATE device_codes SET last_poll_at = ?2, status = 'denied', provider_code = NULL WHERE code_hash = ?1 AND status = 'pending'",
        _ => "UPDATE device_codes SET last_poll_at = ?2, status = 'expired', provider_code = NULL WHERE code_hash = ?1 AND status = 'pending'",
    };
    db.query(
        sql,
        &[
            p.code_hash.as_str().into(),
            Value::Integer(env.now_ms() as i64),
        ],
    )
    .await?;
    Ok(match status {
        "slow_down" => json!({ "status": "pending", "slow_down": true }),
        s => json!({ "status": s }),
    })
}

/// The provider signed `user` in: the code becomes a login session and is spent, in one
/// atomic round trip (a code another poll already spent yields nothing: `expired`).
pub async fn provider_complete(
    db: &impl Db,
    env: &impl Env,
    p: &ProviderPoll,
    user: &LoginUser,
    ttl_ms: u64,
) -> Result<Json> {
    let now = Value::Integer(env.now_ms() as i64);
    let session_id = random_token(env, 32);
    let rows = db
        .batch(
            &[
                Stmt::new(
                    "INSERT INTO login_sessions (id_hash, sub, email, name, provider, created_at, expires_at) \
                     SELECT ?1, ?2, ?3, ?4, provider, ?5, ?5 + ?6 FROM device_codes \
                     WHERE code_hash = ?7 AND status = 'pending' AND expires_at > ?5 RETURNING sub, email, name",
                    vec![
                        id_hash(&session_id).into(),
                        user.sub.as_str().into(),
                        user.email.clone().into(),
                        user.name.clone().into(),
                        now.clone(),
                        Value::Integer(ttl_ms as i64),
                        p.code_hash.as_str().into(),
                    ],
                ),
                Stmt::new(
                    "UPDATE device_codes SET status = 'complete', sub = ?2, provider_code = NULL WHERE code_hash = ?1 AND status = 'pending'",
                    vec![p.code_hash.as_str().into(), user.sub.as_str().into()],
                ),
            ],
            true,
        )
        .await?;
    Ok(match user_of(&rows[0]) {
        Some(u) => json!({
            "status": "complete",
            "session_id": session_id,
            "user": { "id": u.sub, "email": u.email, "name": u.name },
        }),
        None => json!({ "status": "expired" }),
    })
}

/// Most rows one [`purge_expired`] call deletes of each table.
pub const PURGE_BATCH: i64 = 100;

/// Deletes login sessions and device codes that ended more than a day before `now_ms`
/// (a day during which a logged-out id still answers "expired"), [`PURGE_BATCH`] of each at
/// most; how many went. Off the request path, like the MCP session purge.
pub async fn purge_expired(db: &impl Db, now_ms: u64) -> Result<usize> {
    let before = Value::Integer(now_ms.saturating_sub(86_400_000) as i64);
    let rows = db
        .batch(
            &[
                Stmt::new(
                    "DELETE FROM login_sessions WHERE id_hash IN (SELECT id_hash FROM login_sessions WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2) RETURNING id_hash",
                    vec![before.clone(), Value::Integer(PURGE_BATCH)],
                ),
                Stmt::new(
                    "DELETE FROM device_codes WHERE code_hash IN (SELECT code_hash FROM device_codes WHERE expires_at < ?1 LIMIT ?2) RETURNING code_hash",
                    vec![before, Value::Integer(PURGE_BATCH)],
                ),
            ],
            false,
        )
        .await?;
    Ok(rows.iter().map(|r| r.rows.len()).sum())
}
