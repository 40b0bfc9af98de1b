//! The Streamable HTTP transport of `/mcp`: methods, headers, sessions, origins. JSON-RPC
//! itself is in [`crate::mcp`].

use crate::config::Config;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error};
use crate::http::{HttpRequest, HttpResponse};
use crate::{mcp, migrate, sessions};
use serde_json::{json, Value as Json};

/// Protocol versions we speak; the first is the one we prefer.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// The router: everything behind `/mcp`, over a database, a dispatcher and an environment.
pub struct App<D, X, E> {
    /// SQL storage.
    pub db: D,
    /// Where component runs go.
    pub dispatch: X,
    /// Clock and randomness.
    pub env: E,
    /// Deployment settings.
    pub config: Config,
}

impl<D: Db, X: Dispatch, E: Env> App<D, X, E> {
    /// Handles one HTTP request. Never panics on bad input; every failure is an answer.
    pub async fn handle(&self, req: HttpRequest) -> HttpResponse {
        let mut resp = self.route(&req).await;
        if let Some(origin) = req.header("origin") {
            if self.config.origin_allowed(origin) {
                resp.headers
                    .push(("access-control-allow-origin".into(), origin.to_string()));
                resp.headers.push((
                    "access-control-expose-headers".into(),
                    "mcp-session-id".into(),
                ));
                resp.headers.push(("vary".into(), "origin".into()));
            }
        }
        resp
    }

    /// Whether this request's transport may carry secrets (HTTPS, loopback, or development mode).
    pub fn secure(&self, req: &HttpRequest) -> bool {
        self.config.dev_mode
            || crate::ipallow::transport_secure(
                req.scheme.as_deref(),
                req.peer,
                req.header("x-forwarded-proto"),
                &self.config.trusted_proxies,
            )
    }

    async fn route(&self, req: &HttpRequest) -> HttpResponse {
        match req.path.as_str() {
            "/mcp" | "/mcp/" => {}
            "/health" => return HttpResponse::json(200, &json!({ "status": "ok" })),
            crate::host_api::INVOKE_PATH | crate::host_api::TOOLS_PATH => {
                return crate::formulas::handle(self, req).await
            }
            _ => {
                return HttpResponse::json(
                    404,
                    &json!({ "error": "not found; POST JSON-RPC to /mcp" }),
                )
            }
        }
        // A browser sends Origin; a page we do not know must not drive /mcp (DNS rebinding, CSRF).
        if let Some(origin) = req.header("origin") {
            if !self.config.origin_allowed(origin) {
                return rpc_error(
                    None,
                    &Error::new(
                        Code::InsufficientPermissions,
                        format!("origin `{origin}` is not allowed"),
                    ),
                    403,
                );
            }
        }
        match req.method.as_str() {
            "POST" => {}
            "OPTIONS" => return preflight(),
            "DELETE" => return self.delete_session(req).await,
            // No server-initiated stream yet: say so, as the transport allows.
            "GET" => {
                let mut r = HttpResponse::json(
                    405,
                    &json!({ "error": "GET /mcp (server-sent stream) is not offered; POST JSON-RPC messages" }),
                );
                r.headers
                    .push(("allow".into(), "POST, DELETE, OPTIONS".into()));
                return r;
            }
            _ => {
                let mut r = HttpResponse::empty(405);
                r.headers
                    .push(("allow".into(), "POST, DELETE, OPTIONS".into()));
                return r;
            }
        }
        if let Some(v) = req.header("mcp-protocol-version") {
            if !PROTOCOL_VERSIONS.contains(&v.trim()) {
                let e = Error::new(
                    Code::InvalidProtocol,
                    format!(
                        "unsupported MCP-Protocol-Version `{v}`; supported: {}",
                        PROTOCOL_VERSIONS.join(", ")
                    ),
                )
                .with_data(json!({ "supported": PROTOCOL_VERSIONS }));
                return rpc_error(None, &e, 400);
            }
        }
        if req.body.len() > MAX_BODY_BYTES {
            return rpc_error(
                None,
                &Error::new(
                    Code::InvalidRequest,
                    format!("request body over {MAX_BODY_BYTES} bytes"),
                ),
                413,
            );
        }
        let msg: Json = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => {
                return rpc_error(
                    None,
                    &Error::new(Code::ParseError, format!("body is not JSON: {e}")),
                    400,
                )
            }
        };
        if msg.is_array() {
            return rpc_error(
                None,
                &Error::new(
                    Code::InvalidRequest,
                    "JSON-RPC batches are not supported; send one message per request",
                ),
                400,
            );
        }
        if let Err(e) = migrate::migrate(&self.db).await {
            return rpc_error(msg.get("id").cloned(), &e, 500);
        }
        mcp::handle_message(self, req, msg).await
    }

    async fn delete_session(&self, req: &HttpRequest) -> HttpResponse {
        let Some(id) = req.header("mcp-session-id") else {
            return rpc_error(
                None,
                &Error::new(
                    Code::SessionRequired,
                    "DELETE /mcp needs an MCP-Session-Id header",
                ),
                400,
            );
        };
        // Only the session's own key ends it (the session id alone acts for that key, as on
        // POST); any other key is told the session does not exist.
        if let Some(raw) = crate::auth::bearer(req) {
            let now = self.env.now_ms();
            let who =
                match crate::auth::authenticate_key(&self.db, &self.config, req, raw, now).await {
                    Ok(who) => who,
                    Err(e) => return rpc_error(None, &e, 0),
                };
            match sessions::touch(&self.db, id, now, self.config.session_ttl_ms).await {
                Ok(Some(s)) if s.key_id.as_deref() == Some(who.key.id.as_str()) => {}
                Ok(_) => {
                    return rpc_error(
                        None,
                        &Error::new(Code::SessionExpired, "session not found or expired"),
                        404,
                    )
                }
                Err(e) => return rpc_error(None, &e, 500),
            }
        }
        match sessions::delete(&self.db, id).await {
            Ok(true) => HttpResponse::empty(204),
            Ok(false) => rpc_error(
                None,
                &Error::new(Code::SessionExpired, "session not found or expired"),
                404,
            ),
            Err(e) => rpc_error(None, &e, 500),
        }
    }
}

fn preflight() -> HttpResponse {
    let mut r = HttpResponse::empty(204);
    r.headers.extend([
        (
            "access-control-allow-methods".to_string(),
            "POST, DELETE, OPTIONS".to_string(),
        ),
        (
            "access-control-allow-headers".to_string(),
            "authorization, content-type, mcp-protocol-version, mcp-session-id, last-event-id"
                .to_string(),
        ),
        ("access-control-max-age".to_string(), "600".to_string()),
    ]);
    r
}

/// A JSON-RPC error response; `status` 0 means "use the code's own HTTP status".
pub fn rpc_error(id: Option<Json>, e: &Error, status: u16) -> HttpResponse {
    let status = if status == 0 {
        e.code.http_status()
    } else {
        status
    };
    let mut r = HttpResponse::json(
        status,
        &json!({ "jsonrpc": "2.0", "id": id.unwrap_or(Json::Null), "error": e.to_json() }),
    );
    if status == 401 {
        r.headers
            .push(("www-authenticate".into(), "Bearer realm=\"cyfr\"".into()));
    }
    if let Some(ms) = e
        .data
        .as_ref()
        .and_then(|d| d.get("retry_after_ms"))
        .and_then(Json::as_u64)
    {
        r.headers
            .push(("retry-after".into(), ms.div_ceil(1000).max(1).to_string()));
    }
    r
}
