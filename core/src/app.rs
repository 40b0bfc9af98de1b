//! The Streamable HTTP transport of `/mcp`: methods, headers, sessions, origins; and the
//! routes beside it (`/health`, formula callbacks). JSON-RPC itself is in `crate::mcp`.

use crate::config::ToolFamilies;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error};
use crate::http::{HttpRequest, HttpResponse};
pub use crate::mcp::rpc_error;
use crate::{mcp, migrate, sessions};
use serde_json::{json, Value as Json};

pub use crate::config::PROTOCOL_VERSIONS;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// The agents' MCP endpoint: the same JSON-RPC as `/mcp`, listing and calling only the
/// registered components (each as a tool of its own), never the administrative tools.
pub const AGENT_PATH: &str = "/mcp/agent";

/// The router: everything behind `/mcp`, over a database, a dispatcher and an environment.
/// It is the services' [`Context`]; this module adds the HTTP rules on top.
pub type App<D, X, E> = Context<D, X, E>;

impl<D: Db, X: Dispatch, E: Env> Context<D, X, E> {
    /// Handles one HTTP request. Never panics on bad input; every failure is an answer.
    pub async fn handle(&self, mut req: HttpRequest) -> HttpResponse {
        // An instance serves one request on the edge; where a context is kept (tests), the
        // next request must not see this one's reads.
        self.db.forget();
        let rid = request_id(&req, &self.env);
        // What the layers below record (the audit row) is the id the answer carries.
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("x-request-id"));
        req.headers.push(("x-request-id".into(), rid.clone()));
        let mut resp = self.route(&req).await;
        // Every answer carries the request's id (the client's own when sane), as CYFR's did:
        // a client correlates its logs with the server's by it.
        resp.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("x-request-id"));
        resp.headers.push(("x-request-id".into(), rid));
        resp.headers.extend(cors(&self.config, &req));
        resp
    }

    async fn route(&self, req: &HttpRequest) -> HttpResponse {
        // `/mcp` serves the families `mcp_tools` names; `/mcp/agent`, for agents that only
        // use components, the components alone (absent when the server hides them).
        let families = match req.path.as_str() {
            "/mcp" | "/mcp/" => self.config.mcp_tools,
            AGENT_PATH => match self.config.mcp_tools.for_agents() {
                Some(f) => f,
                None => {
                    return HttpResponse::json(
                        404,
                        &json!({ "error": "this server does not serve components as tools (mcp_tools = admin)" }),
                    )
                }
            },
            "/health" => return HttpResponse::json(200, &json!({ "status": "ok" })),
            // CYFR's path (its `cyfr up` polls it), in CYFR's shape.
            "/api/health" => {
                return HttpResponse::json(200, &json!({ "status": "ok", "service": "cyfr" }))
            }
            crate::host_api::INVOKE_PATH | crate::host_api::TOOLS_PATH => {
                return crate::callbacks::handle(self, req).await
            }
            crate::device_page::PATH => return crate::device_page::handle(self, req).await,
            _ => {
                return HttpResponse::json(
                    404,
                    &json!({ "error": "not found; POST JSON-RPC to /mcp" }),
                )
            }
        };
        // A browser sends Origin; a page we do not know must not drive /mcp (DNS rebinding, CSRF).
        if let Some(origin) = req.header("origin") {
            if !self.config.origin_allowed(origin) {
                return rpc_error(
                    None,
                    &Error::new(
                        Code::InsufficientPermissions,
                        format!("origin `{origin}` is not allowed"),
                    ),
                );
            }
        }
        // 2026-07-28 has no stream to open and no session to end.
        let stateless = req
            .header("mcp-protocol-version")
            .is_some_and(crate::modern::is_modern_version);
        match req.method.as_str() {
            "POST" => self.post(req, families).await,
            "GET" | "DELETE" if stateless => {
                let mut r = HttpResponse::json(
                    405,
                    &json!({ "error": "MCP 2026-07-28 is stateless: POST JSON-RPC requests; there is no stream or session" }),
                );
                r.headers.push(("allow".into(), "POST, OPTIONS".into()));
                r
            }
            "OPTIONS" => preflight(),
            "DELETE" => self.delete_session(req).await,
            // No server-initiated stream yet: say so, as the transport allows.
            "GET" => {
                let mut r = HttpResponse::json(
                    405,
                    &json!({ "error": "GET /mcp (server-sent stream) is not offered; POST JSON-RPC messages" }),
                );
                r.headers
                    .push(("allow".into(), "POST, DELETE, OPTIONS".into()));
                r
            }
            _ => {
                let mut r = HttpResponse::empty(405);
                r.headers
                    .push(("allow".into(), "POST, DELETE, OPTIONS".into()));
                r
            }
        }
    }

    /// `POST /mcp`: one JSON-RPC message, after the transport's own checks.
    async fn post(&self, req: &HttpRequest, families: ToolFamilies) -> HttpResponse {
        if req.body.len() > MAX_BODY_BYTES {
            return rpc_error(
                None,
                &Error::new(
                    Code::BodyTooLarge,
                    format!("request body over {MAX_BODY_BYTES} bytes"),
                ),
            );
        }
        let msg: Json = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => {
                return rpc_error(
                    None,
                    &Error::new(Code::ParseError, format!("body is not JSON: {e}")),
                )
            }
        };
        // A stateless (2026-07-28) request's version is checked against its `_meta` in
        // `modern`; a 2025 one's header must name a version we speak.
        if let Some(v) = req.header("mcp-protocol-version") {
            if !PROTOCOL_VERSIONS.contains(&v.trim()) && !crate::modern::is_modern(&msg) {
                let e = Error::new(
                    Code::InvalidProtocol,
                    format!(
                        "unsupported MCP-Protocol-Version `{v}`; supported: {}",
                        PROTOCOL_VERSIONS.join(", ")
                    ),
                )
                .with_data(json!({ "supported": PROTOCOL_VERSIONS }));
                return rpc_error(msg.get("id").cloned(), &e);
            }
        }
        if msg.is_array() {
            return rpc_error(
                None,
                &Error::new(
                    Code::InvalidRequest,
                    "JSON-RPC batches are not supported; send one message per request",
                ),
            );
        }
        // Skipped when the runtime vouches for the schema: one round trip less per request.
        let current = self
            .config
            .schema_version
            .is_some_and(|v| v >= migrate::latest_version());
        if !current {
            if let Err(e) = migrate::migrate(&self.db).await {
                return rpc_error(msg.get("id").cloned(), &e.before_any_method());
            }
        }
        mcp::handle_message(self, req, msg, families).await
    }

    async fn delete_session(&self, req: &HttpRequest) -> HttpResponse {
        let Some(id) = req.header("mcp-session-id") else {
            return rpc_error(
                None,
                &Error::new(
                    Code::SessionRequired,
                    "DELETE /mcp needs an MCP-Session-Id header",
                ),
            );
        };
        // Only the session's own key ends it (the session id alone acts for that key, as on
        // POST); any other key is told the session does not exist.
        if let Some(raw) = crate::auth::bearer(req) {
            let now = self.env.now_ms();
            let who =
                match crate::auth::authenticate_key(&self.db, &self.config, req, raw, now).await {
                    Ok(who) => who,
                    Err(e) => return rpc_error(None, &e),
                };
            match sessions::touch(&self.db, id, now, self.config.session_ttl_ms).await {
                Ok(Some(s)) if s.key_id.as_deref() == Some(who.key.id.as_str()) => {}
                Ok(_) => {
                    return rpc_error(
                        None,
                        &Error::new(Code::SessionExpired, "session not found or expired"),
                    )
                }
                Err(e) => return rpc_error(None, &e.before_any_method()),
            }
        }
        match sessions::delete(&self.db, id).await {
            Ok(true) => HttpResponse::empty(204),
            Ok(false) => rpc_error(
                None,
                &Error::new(Code::SessionExpired, "session not found or expired"),
            ),
            Err(e) => rpc_error(None, &e.before_any_method()),
        }
    }
}

/// The CORS headers of an answer to `req` (none unless its `Origin` is allowed): every
/// answer's, and a streamed answer's head (`stream::head`).
pub fn cors(config: &crate::config::Config, req: &HttpRequest) -> Vec<(String, String)> {
    match req.header("origin") {
        Some(origin) if config.origin_allowed(origin) => vec![
            ("access-control-allow-origin".into(), origin.to_string()),
            (
                "access-control-expose-headers".into(),
                "mcp-session-id, x-request-id".into(),
            ),
            ("vary".into(), "origin".into()),
        ],
        _ => Vec::new(),
    }
}

/// The request's id: the client's `x-request-id` when [`crate::http::sane_request_id`],
/// else 12 random bytes in hex from the environment.
fn request_id(req: &HttpRequest, env: &impl Env) -> String {
    if let Some(v) = req
        .header("x-request-id")
        .filter(|v| crate::http::sane_request_id(v))
    {
        return v.to_string();
    }
    let mut b = [0u8; 12];
    env.fill_random(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
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
            "authorization, content-type, mcp-protocol-version, mcp-session-id, mcp-method, mcp-name, last-event-id, x-request-id"
                .to_string(),
        ),
        ("access-control-max-age".to_string(), "600".to_string()),
    ]);
    r
}
