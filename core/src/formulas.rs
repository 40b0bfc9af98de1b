//! The router's side of `cyfr:formula/invoke` and `cyfr:mcp/tools`. A formula's host calls
//! back (`POST /v1/formula/invoke` or `/v1/formula/tools`) with the token the router gave
//! that run; the router finds the run by the token's hash, acts as the run's caller — that
//! key, its scopes, never more — and answers the JSON the guest gets.

use crate::app::App;
use crate::auth::{bearer, Identity};
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error};
use crate::executions::{self, Lineage};
use crate::host_api::TOOLS_PATH;
use crate::http::{HttpRequest, HttpResponse};
use crate::reference::ComponentType;
use crate::{keys, scopes, tools};
use serde_json::{json, Value as Json};

/// The formula run a callback speaks for.
struct Parent {
    id: String,
    reference: String,
    who: Identity,
    depth: i64,
    deadline_ms: u64,
    allowed_tools: Vec<String>,
    /// Whether the request that started the formula came over a secure transport.
    secure: bool,
    /// Opened values its input held and its callback key, when it had any.
    carried: Option<executions::Carried>,
}

/// Answers a formula host's callback. Bad or stale tokens get 401; everything after that
/// is a 200 whose body is the guest's answer (`{"error": {"type", "message"}}` on failure).
pub async fn handle<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    req: &HttpRequest,
) -> HttpResponse {
    if req.method != "POST" {
        return HttpResponse::json(
            405,
            &guest_error("invalid_request", "formula callbacks are POST"),
        );
    }
    let parent = match authenticate(app, req).await {
        Ok(p) => p,
        Err((status, e)) => return HttpResponse::json(status, &e),
    };
    // A formula holding opened values has every callback sealed under its own key, both ways.
    let key = parent.carried.as_ref().map(|c| c.key.clone());
    let opened;
    let plain: &[u8] = match &key {
        Some(k) => match crate::host_api::open_body(k, &req.path, &req.body) {
            Ok(p) => {
                opened = p;
                &opened
            }
            Err(e) => return HttpResponse::json(400, &guest_error("invalid_request", &e.message)),
        },
        None => &req.body,
    };
    let body: Json = match serde_json::from_slice(plain) {
        Ok(v @ Json::Object(_)) => v,
        Ok(_) => {
            return answer(
                app,
                key.as_deref(),
                &req.path,
                &guest_error("invalid_request", "the request must be a JSON object"),
            )
        }
        Err(e) => {
            return answer(
                app,
                key.as_deref(),
                &req.path,
                &guest_error("invalid_json", &format!("the request is not JSON: {e}")),
            )
        }
    };
    // The router sends only these two paths here.
    let reply = if req.path == TOOLS_PATH {
        tool(app, &parent, &body).await
    } else {
        invoke(app, &parent, &body).await
    };
    answer(app, key.as_deref(), &req.path, &reply)
}

/// The guest's answer, sealed under the callback key when the formula has one.
fn answer<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    key: Option<&[u8; 32]>,
    path: &str,
    reply: &Json,
) -> HttpResponse {
    let Some(key) = key else {
        return HttpResponse::json(200, reply);
    };
    let plain = zeroize::Zeroizing::new(reply.to_string().into_bytes());
    match crate::host_api::seal_body(&app.env, key, &format!("{path}|reply"), &plain) {
        Ok(body) => HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        },
        Err(e) => HttpResponse::json(500, &guest_error("dispatch_error", &e.message)),
    }
}

/// Finds the running formula the bearer token belongs to, and its caller's key as it is now
/// (a key revoked since the formula started is refused).
async fn authenticate<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    req: &HttpRequest,
) -> Result<Parent, (u16, Json)> {
    let denied = |m: &str| (401, guest_error("auth_invalid", m));
    let token =
        bearer(req).ok_or_else(|| denied("a formula callback needs its run's bearer token"))?;
    let hash = crate::crypto::sha256_hex(token.as_bytes());
    let rows = app
        .db
        .query(
            "SELECT id, reference, caller, status, depth, deadline_at, policy, transport_secure, carried_kek, carried FROM executions WHERE callback_hash = ?",
            &[hash.into()],
        )
        .await
        .map_err(|e| (500, guest_error("dispatch_error", &e.0)))?;
    let row = rows
        .first()
        .ok_or_else(|| denied("unknown callback token"))?;
    if row.text("status") != "started"
        || row
            .opt_int("deadline_at")
            .is_some_and(|d| app.env.now_ms() >= d as u64)
    {
        return Err(denied("the formula run this token belongs to has ended"));
    }
    // `caller` is the key's lineage: the key as it is now is the lineage's active one.
    let key_id = row.opt_text("caller").unwrap_or_default();
    let key = keys::find_active_by_lineage(&app.db, &key_id)
        .await
        .map_err(|e| (500, guest_error("dispatch_error", &e.message)))?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| denied("the key this formula runs for is no longer valid"))?;
    let policy: Json = serde_json::from_str(&row.text("policy")).unwrap_or(Json::Null);
    let allowed_tools = policy["allowed_tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let carried = match (row.opt_text("carried_kek"), row.opt_blob("carried")) {
        (Some(kek), Some(wrapped)) => {
            let kms = app.config.kms.as_deref().ok_or_else(|| {
                (
                    500,
                    guest_error("dispatch_error", "no master key is configured"),
                )
            })?;
            Some(
                executions::uncarry(kms, &row.text("id"), &kek, &wrapped)
                    .await
                    .map_err(|e| (500, guest_error("dispatch_error", &e.message)))?,
            )
        }
        _ => None,
    };
    Ok(Parent {
        secure: row.opt_int("transport_secure").unwrap_or(0) != 0,
        carried,
        id: row.text("id"),
        reference: row.text("reference"),
        who: Identity { key },
        depth: row.int("depth"),
        deadline_ms: row.opt_int("deadline_at").unwrap_or(0) as u64,
        allowed_tools,
    })
}

/// `invoke.call`: runs the child through `execution.run`'s own path, as the caller, one
/// level deeper, within the parent's remaining time.
async fn invoke<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    parent: &Parent,
    body: &Json,
) -> Json {
    if body.get("reference").is_none() {
        return guest_error("invalid_request", "`reference` is required, e.g. \"reagent:cyfr.text-stats:0.1.0\" or {\"registry\": \"…\"}");
    }
    let mut args = json!({ "reference": body["reference"], "input": body.get("input").cloned().unwrap_or(json!({})) });
    match body.get("type") {
        None | Some(Json::Null) => {}
        Some(Json::String(t)) if ComponentType::parse(t).is_some() => args["type"] = json!(t),
        Some(t) => {
            return guest_error(
                "invalid_type",
                &format!("`type` must be reagent, catalyst or formula (got {t})"),
            )
        }
    }
    // Without `type`, a reference that names no type is a reagent, as CYFR's formulas assume.
    if args.get("type").is_none() {
        let text = args["reference"]
            .as_str()
            .or_else(|| args["reference"]["registry"].as_str())
            .unwrap_or("");
        let prefix = text.split_once(':').map(|(p, _)| p).unwrap_or("");
        if ComponentType::parse(prefix).is_none() {
            args["type"] = json!("reagent");
        }
    }
    // A child started for the caller is a request made with the caller's key, as a tool call is.
    if let Err(e) = crate::auth::take_key_rate(&app.db, &parent.who.key, app.env.now_ms()).await {
        return error_answer(&e);
    }
    match run_child(app, parent, &args).await {
        Ok(v) => {
            json!({ "status": "completed", "output": v["result"], "execution_id": v["execution_id"] })
        }
        Err(e) => error_answer(&e),
    }
}

/// `tools.call`: `tool.action` must be in the formula's `allowed_tools` and within the
/// caller's scopes; then the real handler runs, as the caller.
async fn tool<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    parent: &Parent,
    body: &Json,
) -> Json {
    let (Some(name), Some(action)) = (
        body.get("tool").and_then(Json::as_str),
        body.get("action").and_then(Json::as_str),
    ) else {
        return guest_error("invalid_request", "`tool` and `action` are required strings, e.g. {\"tool\": \"component\", \"action\": \"search\", \"args\": {}}");
    };
    let mut args = match body.get("args").or_else(|| body.get("params")) {
        None | Some(Json::Null) => json!({}),
        Some(v @ Json::Object(_)) => v.clone(),
        Some(_) => return guest_error("invalid_request", "`args` (or `params`) must be an object"),
    };
    let Some(need) = scopes::need(name, action) else {
        return guest_error("tool_not_found", &format!("no MCP tool {name}.{action}"));
    };
    if !crate::policy::tool_allowed(&parent.allowed_tools, name, action) {
        return guest_error(
            "tool_denied",
            &format!(
                "{name}.{action} is not in the allowed_tools of {}'s policy",
                parent.reference
            ),
        );
    }
    if let Err(e) = parent.who.require(name, action, need) {
        return guest_error("tool_denied", &e.message);
    }
    // Tool calls are requests made with the caller's key: they count against its rate limit.
    if let Err(e) = crate::auth::take_key_rate(&app.db, &parent.who.key, app.env.now_ms()).await {
        return error_answer(&e);
    }
    // A run started through the tools is still a child: same depth bound, same deadline.
    let result = if (name, action) == ("execution", "run") {
        match run_child(app, parent, &args).await {
            Ok(v) => Ok(v),
            Err(e) => return error_answer(&e),
        }
    } else {
        args["action"] = json!(action);
        // Not an MCP session: session-bound actions (sealed secrets) are refused by their
        // handlers. The transport is the one the formula's own request came over: the
        // callback's loopback peer says nothing about how the caller reached cyfr.
        let call = tools::Call {
            who: &parent.who,
            session_hash: None,
            secure: parent.secure,
        };
        tools::call(app, &call, name, &args).await
    };
    match result {
        Ok(v) => json!({ "status": "ok", "result": v }),
        Err(e) => {
            let kind = match e.code {
                Code::InsufficientPermissions => "tool_denied",
                Code::InvalidParams => "invalid_request",
                _ => "dispatch_error",
            };
            json!({ "error": { "type": kind, "message": e.message, "code": e.code.number() } })
        }
    }
}

/// Runs a child of `parent` after checking the caller may run components at all.
async fn run_child<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    parent: &Parent,
    args: &Json,
) -> crate::errors::Result<Json> {
    if let Some(need) = scopes::need("execution", "run") {
        parent.who.require("execution", "run", need)?;
    }
    let lineage = Lineage {
        parent_id: parent.id.clone(),
        depth: parent.depth + 1,
        deadline_ms: parent.deadline_ms,
    };
    let opened = parent
        .carried
        .as_ref()
        .map_or(&[][..], |c| c.values.as_slice());
    executions::run_in(
        app,
        &parent.who,
        args,
        Some(&lineage),
        executions::Origin {
            opened,
            secure: parent.secure,
        },
    )
    .await
}

/// A failed child as the guest sees it: a stable `type`, the message, and the run's id when
/// one was recorded.
fn error_answer(e: &Error) -> Json {
    let reason = e
        .data
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(Json::as_str);
    let kind = match (e.code, reason) {
        (_, Some("depth_exceeded")) => "depth_exceeded",
        (_, Some("POLICY_REQUIRED")) => "policy_required",
        (Code::ExecutionTimeout, _) => "timeout",
        (Code::InvalidParams, _) => "invalid_request",
        (Code::InsufficientPermissions, _) => "access_denied",
        (Code::RateLimited, _) => "rate_limited",
        (Code::ComponentNotFound, _) => "component_not_found",
        (Code::ComponentInvalid, _) => "component_invalid",
        (Code::CapabilityDenied, _) => "capability_denied",
        _ => "execution_failed",
    };
    let mut err = json!({ "type": kind, "message": e.message });
    if let Some(id) = e.data.as_ref().and_then(|d| d.get("execution_id")) {
        err["execution_id"] = id.clone();
    }
    if let Some(r) = reason {
        err["reason"] = json!(r);
    }
    json!({ "error": err })
}

/// The error a formula's guest gets: `{"error": {"type", "message"}}` (host and router alike).
pub fn guest_error(kind: &str, message: &str) -> Json {
    json!({ "error": { "type": kind, "message": message } })
}
