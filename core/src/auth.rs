//! Who is calling, and may they: the one place that turns credentials (an API key, the key
//! behind a session, or a JWT) into an [`Identity`] and checks the key's IP allowlist and
//! the caller's rate limit.

use crate::access::{self, Need};
use crate::config::Config;
use crate::db::Db;
use crate::errors::{Code, Error, Result};
use crate::http::HttpRequest;
use crate::ipallow::client_ip;
use crate::jwt::{self, Claims};
use crate::keys::{self, ApiKey, KeyRef, KeyType};
use crate::logins::{self, LoginUser};
use crate::permissions;
use crate::ratelimit;
use crate::sessions::{self, Session};

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The key the request was made with; for a user (a JWT), a key made up for the request
    /// (`user:<sub>`, never stored) holding the user's scopes and rate limit, so that every
    /// check downstream is the one API keys go through.
    pub key: ApiKey,
    /// The user behind the request, when it came with a JWT.
    pub user: Option<User>,
}

/// A user: who a JWT names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user id (`sub`).
    pub sub: String,
    /// The organisation, if the token named one.
    pub org: Option<String>,
    /// `personal` or `org`.
    pub scope: String,
    /// The login session the caller came with (its hash): what `session.logout` ends.
    pub session_hash: Option<String>,
    /// Email, when the sign-in gave one.
    pub email: Option<String>,
}

/// The id a user is known by in records and ownership: `user:<sub>`.
pub fn user_id(sub: &str) -> String {
    format!("user:{sub}")
}

impl Identity {
    /// A stable id for records and ownership: the key's lineage (`key_…`, kept across
    /// rotation), so a rotated key keeps its user secrets and run history.
    // Not the key's own id, on purpose: records belong to the lineage.
    #[allow(clippy::misnamed_getters)]
    pub fn id(&self) -> &str {
        &self.key.lineage_id
    }
    /// The id of the rate-limit budget this caller draws from (see `ApiKey::budget_id`).
    pub fn budget_id(&self) -> &str {
        &self.key.budget_id
    }
    /// Who acted, for the audit log: the key's prefix, or the user's `sub`.
    pub fn actor(&self) -> String {
        match &self.user {
            Some(u) => u.sub.clone(),
            None => format!("{}...", self.key.prefix),
        }
    }
    /// Whether the caller holds every scope.
    pub fn is_admin(&self) -> bool {
        self.key.key_type == KeyType::Admin || self.key.scopes.iter().any(|s| s == "*")
    }
    /// Refuses with -33004 unless the caller satisfies `need` for `tool.action`.
    pub fn require(&self, tool: &str, action: &str, need: Need) -> Result<()> {
        if access::satisfied(&self.key.scopes, need) {
            return Ok(());
        }
        let wanted = match need {
            Need::Admin => "an admin key".to_string(),
            Need::Scopes(s) => format!("scope {}", s.join(" and ")),
            Need::Anyone | Need::Authenticated => "authentication".to_string(),
        };
        Err(Error::new(
            Code::InsufficientPermissions,
            format!(
                "{tool}.{action} needs {wanted}; this key holds: {}",
                self.key.scopes.join(", ")
            ),
        )
        .with_data(serde_json::json!({ "tool": tool, "action": action })))
    }
}

/// The bearer token of the request, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let h = req.header("authorization")?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Who is calling, with the session the request named (if any): what [`check`] found.
#[derive(Debug)]
pub struct Caller {
    /// The live session of `MCP-Session-Id`, its expiry pushed forward.
    pub session: Option<Session>,
    /// The authenticated key: the bearer key, else the key the session was opened with.
    pub identity: Option<Identity>,
    /// The rows of the `also` statements of [`check_with`], in order.
    pub also: Vec<crate::db::Rows>,
}

/// The caller check of a `/mcp` request, in ONE round trip: the session named by
/// `session_id` (touched), and when `identify`, the key — the bearer key, else the session's —
/// with its rate-limit take and last-use mark (plus whatever the request reads ahead).
///
/// Refusals come in the order a caller can act on them: an unknown or expired session
/// (-33302) first, then the key's (-33001 invalid, IP allowlist, -33005 rate limit).
pub async fn check(
    db: &impl Db,
    cfg: &Config,
    req: &HttpRequest,
    session_id: Option<&str>,
    identify: bool,
    now_ms: u64,
) -> Result<Caller> {
    check_with(db, cfg, req, session_id, identify, now_ms, Vec::new()).await
}

/// [`check`], with `also` (writes of the request's own, e.g. its audit row) sent last in the
/// same round trip, so they cost none of their own.
pub async fn check_with(
    db: &impl Db,
    cfg: &Config,
    req: &HttpRequest,
    session_id: Option<&str>,
    identify: bool,
    now_ms: u64,
    also: Vec<crate::db::Stmt>,
) -> Result<Caller> {
    let raw = bearer(req);
    let other_scheme = raw.is_none() && req.header("authorization").is_some();
    let key_ref = match (identify, raw) {
        (false, _) => None,
        (true, Some(raw)) => KeyType::of_raw(raw).map(|_| KeyRef::raw(raw)),
        (true, None) if other_scheme => None,
        (true, None) => session_id.map(|sid| KeyRef::Session(sessions::id_hash(sid))),
    };
    // A bearer that is not an API key may be a JWT: verified here, without the database; its
    // refusal waits until the session (if any) has been checked, like a key's.
    let token = match (identify, raw) {
        (true, Some(raw)) if key_ref.is_none() && jwt::looks_like(raw) => {
            Some(verify_jwt(cfg, raw, now_ms))
        }
        _ => None,
    };
    // Any other bearer, or an `MCP-Session-Id` sent alone, may be a login session's id
    // (`cyfr login`): looked up in the same round trip.
    let login = match (identify, raw) {
        (true, Some(raw)) if key_ref.is_none() && token.is_none() => Some(raw),
        (true, None) if !other_scheme => session_id,
        _ => None,
    };
    let mut stmts = Vec::with_capacity(4);
    if let Some(sid) = session_id {
        stmts.push(sessions::touch_stmt(sid, now_ms, cfg.session_ttl_ms));
    }
    if let Some(id) = login {
        stmts.extend(logins::use_stmts(
            id,
            now_ms,
            cfg.session_ttl_ms,
            cfg.user_rate_limit,
        ));
    }
    if let Some(k) = &key_ref {
        stmts.extend(k.use_stmts(now_ms));
    }
    if let Some(Ok(claims)) = &token {
        stmts.extend(user_stmts(cfg, claims, now_ms));
    }
    // Last, so the rows above are read by position as before.
    let also_len = also.len();
    stmts.extend(also);
    // Not atomic: each statement stands alone (as before batches), and over `spin:sqlite` an
    // atomic batch is BEGIN … COMMIT across host calls, holding the one connection for the
    // whole span; measured, that serialised concurrent requests (keyed tools/list 1.4k →
    // 2.2k req/s without it).
    let also_len = also_len.min(stmts.len());
    let mut rows = if stmts.is_empty() {
        Vec::new()
    } else {
        db.batch(&stmts, false)
            .await
            .map_err(|e| Error::from(e).before_any_method())?
    };
    let also = rows.split_off(rows.len().saturating_sub(also_len));
    let mut rows = rows.into_iter();
    let mcp = session_id.map(|sid| rows.next().and_then(|r| sessions::touched(sid, &r)));
    let login_rows = login.map(|_| {
        let live = rows.next().unwrap_or_default();
        let known = rows.next().unwrap_or_default();
        let grants = rows.next().unwrap_or_default();
        let took = cfg
            .user_rate_limit
            .map(|_| !rows.next().unwrap_or_default().rows.is_empty());
        (live, known, grants, took)
    });
    let login_user = login_rows
        .as_ref()
        .and_then(|(live, _, _, _)| logins::user_of(live));
    let session = match mcp {
        None => None,
        Some(Some(s)) => Some(s),
        // Not an MCP session: a login session's id sent as MCP-Session-Id (the CLI's way).
        Some(None) if raw.is_none() && login_user.is_some() => None,
        Some(None) => return Err(session_gone()),
    };
    if let (Some(id), Some((_, known, grants, took))) = (login, &login_rows) {
        // A bearer is always the credential; an id sent as MCP-Session-Id only when it
        // named no MCP session.
        if raw.is_some() || session.is_none() {
            let Some(user) = login_user else {
                return Err(match known.rows.is_empty() {
                    true => Error::new(Code::AuthInvalid, "Invalid API key or token"),
                    false => Error::new(
                        Code::AuthExpired,
                        "session expired or logged out; run `cyfr login` again",
                    ),
                });
            };
            let identity = login_identity(cfg, user, grants, id);
            if let (Some(rate), Some(false)) = (cfg.user_rate_limit, took) {
                return Err(ratelimit::refusal(db, &key_bucket(&identity.key), rate, now_ms).await);
            }
            return Ok(Caller {
                session: None,
                identity: Some(identity),
                also,
            });
        }
    }
    if !identify {
        return Ok(Caller {
            session,
            identity: None,
            also,
        });
    }
    if let Some(claims) = token {
        let identity = user_identity(db, cfg, claims?, &mut rows, now_ms).await?;
        return Ok(Caller {
            session,
            identity: Some(identity),
            also,
        });
    }
    let identity = match (raw, key_ref) {
        (Some(_), None) => return Err(Error::new(Code::AuthInvalid, "Invalid API key or token")),
        (None, _) if other_scheme => {
            return Err(Error::new(
                Code::AuthInvalid,
                "Authorization header must be `Bearer <key>`",
            ))
        }
        (_, None) => None,
        // An anonymous session (opened without a key) identifies nobody.
        (None, Some(_)) if session.as_ref().is_some_and(|s| s.key_id.is_none()) => None,
        (_, Some(k)) => {
            let found = rows.next().unwrap_or_default();
            let took = rows.next().unwrap_or_default();
            let key = k.key_of(&found)?.filter(|key| key.revoked_at.is_none());
            let key = match (key, raw) {
                (Some(key), _) => key,
                // Unknown: only here, off the hot path, may it be the bootstrap admin key.
                (None, Some(raw)) => match bootstrap(db, cfg, raw, now_ms).await? {
                    Some(key) => key,
                    None => return Err(Error::new(Code::AuthInvalid, "Invalid API key")),
                },
                // The key behind the session was revoked or rotated: its authority ends with it.
                (None, None) => {
                    return Err(Error::new(
                        Code::AuthInvalid,
                        "the API key this session was opened with is no longer valid",
                    ))
                }
            };
            admit(db, cfg, req, &key, !took.rows.is_empty(), now_ms).await?;
            Some(Identity { key, user: None })
        }
    };
    Ok(Caller {
        session,
        identity,
        also,
    })
}

/// Who the request's credentials say is calling, for its audit row before they are checked:
/// an API key's prefix, a JWT's `sub` once verified (`invalid-token` if not); `None` for
/// any other bearer or none (a login session's user, or a session's key, is looked up in
/// SQL by [`actor_session`]).
pub fn actor_hint(cfg: &Config, req: &HttpRequest, now_ms: u64) -> ActorHint {
    let Some(raw) = bearer(req) else {
        return ActorHint::default();
    };
    match KeyType::of_raw(raw) {
        Some(_) => ActorHint {
            actor: Some(format!("{}...", raw.chars().take(12).collect::<String>())),
            actor_id: None,
            key_hash: Some(keys::hash_raw(raw)),
        },
        None if jwt::looks_like(raw) => match verify_jwt(cfg, raw, now_ms) {
            Ok(c) => ActorHint {
                actor_id: Some(user_id(&c.sub)),
                actor: Some(c.sub),
                key_hash: None,
            },
            Err(_) => ActorHint {
                actor: Some("invalid-token".into()),
                ..ActorHint::default()
            },
        },
        None => ActorHint::default(),
    }
}

/// What [`actor_hint`] can tell from the credentials alone.
#[derive(Debug, Default)]
pub struct ActorHint {
    /// The actor shown: a key's prefix, a JWT's `sub`.
    pub actor: Option<String>,
    /// Whose row it is, when known without SQL (a JWT's `user:<sub>`).
    pub actor_id: Option<String>,
    /// A bearer key's SHA-256, for SQL to find its lineage.
    pub key_hash: Option<String>,
}

/// The session whose user or key the audit row names when [`actor_hint`] does not: a
/// bearer that may be a login session's id, else `MCP-Session-Id`.
pub fn actor_session(req: &HttpRequest, session_id: Option<&str>) -> Option<String> {
    match bearer(req) {
        Some(raw) if KeyType::of_raw(raw).is_none() && !jwt::looks_like(raw) => {
            Some(logins::id_hash(raw))
        }
        Some(_) => None,
        None => session_id.map(logins::id_hash),
    }
}

/// A JWT bearer's claims, verified under `jwt_signing_key`: without a key configured, a
/// bearer that is not an API key is refused as one would be.
fn verify_jwt(cfg: &Config, raw: &str, now_ms: u64) -> Result<Claims> {
    match &cfg.jwt_key {
        Some(key) if jwt::looks_like(raw) => {
            jwt::verify(raw, key, now_ms / 1000, cfg.jwt_clock_skew_s)
        }
        _ => Err(Error::new(Code::AuthInvalid, "Invalid API key or token")),
    }
}

/// What a verified JWT's caller check reads and takes, in the request's one round trip:
/// the user's grants, whether its `session_id` was revoked, and its rate-limit take.
fn user_stmts(cfg: &Config, claims: &Claims, now_ms: u64) -> Vec<crate::db::Stmt> {
    let mut stmts = vec![permissions::grants_stmt(&claims.sub)];
    if let Some(sid) = &claims.session_id {
        stmts.push(crate::db::Stmt::new(
            "SELECT 1 AS revoked FROM revoked_sessions WHERE id_hash = ?1",
            vec![sessions::id_hash(sid).into()],
        ));
    }
    if let Some(rate) = cfg.user_rate_limit {
        stmts.push(ratelimit::take_stmt(
            &format!("key:{}", user_id(&claims.sub)),
            rate,
            now_ms,
        ));
    }
    stmts
}

/// The identity of a verified JWT, from the rows of [`user_stmts`]: the token's permissions
/// and the user's grants (only scope strings the guide knows, wildcards included), refused
/// when its session was revoked or its rate limit is used up.
async fn user_identity(
    db: &impl Db,
    cfg: &Config,
    claims: Claims,
    rows: &mut impl Iterator<Item = crate::db::Rows>,
    now_ms: u64,
) -> Result<Identity> {
    let grants = permissions::granted(&rows.next().unwrap_or_default());
    if claims.session_id.is_some() && !rows.next().unwrap_or_default().rows.is_empty() {
        return Err(Error::new(
            Code::AuthExpired,
            "the session this token names has ended (logged out)",
        ));
    }
    let mut scopes: Vec<String> = Vec::new();
    for p in claims.permissions.into_iter().chain(grants) {
        if access::grantable(&p) && !scopes.contains(&p) {
            scopes.push(p);
        }
    }
    let key = user_key(&claims.sub, scopes, cfg.user_rate_limit);
    if let Some(rate) = key.rate_limit {
        if rows.next().unwrap_or_default().rows.is_empty() {
            return Err(ratelimit::refusal(db, &key_bucket(&key), rate, now_ms).await);
        }
    }
    Ok(Identity {
        key,
        user: Some(User {
            sub: claims.sub,
            org: claims.org,
            scope: claims.scope,
            session_hash: claims.session_id.as_deref().map(logins::id_hash),
            email: None,
        }),
    })
}

/// The key made up for user `sub` for one request (never stored): its scopes and rate.
fn user_key(sub: &str, scopes: Vec<String>, rate: Option<crate::units::Rate>) -> ApiKey {
    let id = user_id(sub);
    ApiKey {
        id: id.clone(),
        name: sub.to_string(),
        key_type: KeyType::Secret,
        prefix: String::new(),
        scopes,
        rate_limit: rate,
        ip_allowlist: Default::default(),
        created_by: None,
        lineage_id: id.clone(),
        budget_id: id,
        created_at: 0,
        last_used_at: None,
        revoked_at: None,
        rate_in_sql: true,
    }
}

/// The identity of a live login session: what the user was granted, nothing more (never
/// admin by default), with the users' rate limit (taken in the caller check's batch).
fn login_identity(
    cfg: &Config,
    user: LoginUser,
    grants: &crate::db::Rows,
    session_id: &str,
) -> Identity {
    let scopes: Vec<String> = permissions::granted(grants)
        .into_iter()
        .filter(|p| access::grantable(p))
        .collect();
    Identity {
        key: user_key(&user.sub, scopes, cfg.user_rate_limit),
        user: Some(User {
            sub: user.sub,
            org: None,
            scope: "personal".into(),
            session_hash: Some(logins::id_hash(session_id)),
            email: user.email,
        }),
    }
}

/// -33302: the session id names no live session.
pub fn session_gone() -> Error {
    Error::new(
        Code::SessionExpired,
        "session not found or expired; initialize a new one",
    )
}

/// Authenticates a raw API key for a request: known, not revoked, client IP allowed,
/// rate limit not exceeded — one round trip. Every failure is a JSON-RPC error with the
/// guide's code.
pub async fn authenticate_key(
    db: &impl Db,
    cfg: &Config,
    req: &HttpRequest,
    raw: &str,
    now_ms: u64,
) -> Result<Identity> {
    if KeyType::of_raw(raw).is_none() {
        return Err(Error::new(Code::AuthInvalid, "Invalid API key or token"));
    }
    let by = KeyRef::raw(raw);
    let rows = db.batch(&by.use_stmts(now_ms), true).await?;
    let key = match by.key_of(&rows[0])? {
        Some(k) if k.revoked_at.is_none() => k,
        Some(_) => return Err(Error::new(Code::AuthInvalid, "Invalid API key")),
        None => bootstrap(db, cfg, raw, now_ms)
            .await?
            .ok_or_else(|| Error::new(Code::AuthInvalid, "Invalid API key"))?,
    };
    admit(db, cfg, req, &key, !rows[1].rows.is_empty(), now_ms).await?;
    Ok(Identity { key, user: None })
}

/// An unknown key that may be `bootstrap_admin_key`'s (see `keys::bootstrap`).
async fn bootstrap(db: &impl Db, cfg: &Config, raw: &str, now_ms: u64) -> Result<Option<ApiKey>> {
    match &cfg.bootstrap_admin_key {
        Some(hash) => keys::bootstrap(db, hash, raw, now_ms).await,
        None => Ok(None),
    }
}

/// The checks of a key already read and charged in the caller check's round trip: the IP
/// allowlist (a refused request gets its rate-limit take back, so a stolen key used from
/// elsewhere cannot drain the owner's budget) and the rate limit's verdict. Only a refusal,
/// or a key stored before its rate was kept as numbers, costs another round trip.
async fn admit(
    db: &impl Db,
    cfg: &Config,
    req: &HttpRequest,
    key: &ApiKey,
    took: bool,
    now_ms: u64,
) -> Result<()> {
    let bucket = || key_bucket(key);
    if let Err(e) = ip_allowed(cfg, req, key) {
        if let (true, Some(rate)) = (took, key.rate_limit) {
            ratelimit::give_back(db, &bucket(), rate).await?;
        }
        return Err(e);
    }
    match key.rate_limit {
        None => Ok(()),
        Some(rate) if key.rate_in_sql => match took {
            true => Ok(()),
            false => Err(ratelimit::refusal(db, &bucket(), rate, now_ms).await),
        },
        Some(_) => {
            take_key_rate(db, key, now_ms).await?;
            keys::store_rate(db, key).await
        }
    }
}

/// Refuses a request from outside the key's IP allowlist.
fn ip_allowed(cfg: &Config, req: &HttpRequest, key: &ApiKey) -> Result<()> {
    if key.ip_allowlist.is_empty() {
        return Ok(());
    }
    let allowed = req
        .peer
        // An unknown client (no peer, or a malformed forwarded hop) is never allowed.
        .and_then(|peer| {
            client_ip(
                peer,
                req.header_all("x-forwarded-for"),
                &cfg.trusted_proxies,
            )
        })
        .is_some_and(|ip| key.ip_allowlist.contains(ip));
    if allowed {
        Ok(())
    } else {
        Err(Error::new(
            Code::InsufficientPermissions,
            "client IP address is not in this key's allowlist",
        ))
    }
}

/// Counts one request against the key's rate limit, if it has one, in its budget's bucket:
/// shared by every rotation of the key and every key a non-admin derived from it.
pub async fn take_key_rate(db: &impl Db, key: &ApiKey, now_ms: u64) -> Result<()> {
    match key.rate_limit {
        Some(rate) => ratelimit::take(db, &key_bucket(key), rate, now_ms).await,
        None => Ok(()),
    }
}

/// The bucket of a key's budget (the SQL of `KeyRef::use_stmts` spells the same name).
fn key_bucket(key: &ApiKey) -> String {
    format!("key:{}", key.budget_id)
}
