//! Who is calling, and may they: the one place that turns credentials into an
//! [`Identity`] and checks the key's IP allowlist and rate limit.

use crate::access::{self, Need};
use crate::config::Config;
use crate::db::Db;
use crate::errors::{Code, Error, Result};
use crate::http::HttpRequest;
use crate::ipallow::client_ip;
use crate::keys::{self, ApiKey, KeyType};
use crate::ratelimit;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The key the request was made with.
    pub key: ApiKey,
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
            Need::Authenticated => "authentication".to_string(),
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

/// Authenticates a raw API key for a request: known, not revoked, client IP allowed,
/// rate limit not exceeded. Every failure is a JSON-RPC error with the guide's code.
pub async fn authenticate_key(
    db: &impl Db,
    cfg: &Config,
    req: &HttpRequest,
    raw: &str,
    now_ms: u64,
) -> Result<Identity> {
    let invalid = || Error::new(Code::AuthInvalid, "Invalid API key");
    if KeyType::of_raw(raw).is_none() {
        return Err(Error::new(Code::AuthInvalid, "Invalid API key or token"));
    }
    let key = keys::find_by_raw(db, raw).await?.ok_or_else(invalid)?;
    if key.revoked_at.is_some() {
        return Err(invalid());
    }
    check_key_use(db, cfg, req, &key, now_ms).await?;
    Ok(Identity { key })
}

/// Re-checks a stored key (e.g. the one an MCP session is bound to) for this request.
pub async fn check_key_use(
    db: &impl Db,
    cfg: &Config,
    req: &HttpRequest,
    key: &ApiKey,
    now_ms: u64,
) -> Result<()> {
    if !key.ip_allowlist.is_empty() {
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
        if !allowed {
            return Err(Error::new(
                Code::InsufficientPermissions,
                "client IP address is not in this key's allowlist",
            ));
        }
    }
    take_key_rate(db, key, now_ms).await?;
    keys::touch(db, &key.id, now_ms).await?;
    Ok(())
}

/// Counts one request against the key's rate limit, if it has one, in its budget's bucket:
/// shared by every rotation of the key and every key a non-admin derived from it.
pub async fn take_key_rate(db: &impl Db, key: &ApiKey, now_ms: u64) -> Result<()> {
    match key.rate_limit {
        Some(rate) => ratelimit::take(db, &format!("key:{}", key.budget_id), rate, now_ms).await,
        None => Ok(()),
    }
}
