//! The HTTP endpoint of formula callbacks (`POST /v1/formula/invoke`, `/v1/formula/tools`):
//! the token names the running formula ([`crate::formulas`]); `invoke` runs a child
//! through `execution.run`'s own path, `tools` runs a tool as the formula's caller.
//! Everything after the token check is a 200 whose body is the guest's answer.

use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::executions::RunArgs;
use crate::formulas::{self, error_answer, guest_error, Parent};
use crate::host_api::TOOLS_PATH;
use crate::http::{HttpRequest, HttpResponse};
use crate::reference::ComponentType;
use crate::{scopes, tools};
use serde_json::{json, Value as Json};

/// Answers a formula host's callback. Bad or stale tokens get 401; everything after that
/// is a 200 whose body is the guest's answer (`{"error": {"type", "message"}}` on failure).
pub async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
) -> HttpResponse {
    if req.method != "POST" {
        return HttpResponse::json(
            405,
            &guest_error("invalid_request", "formula callbacks are POST"),
        );
    }
    let parent = match formulas::authenticate(cx, req).await {
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
                cx,
                key.as_deref(),
                &req.path,
                &guest_error("invalid_request", "the request must be a JSON object"),
            )
        }
        Err(e) => {
            return answer(
                cx,
                key.as_deref(),
                &req.path,
                &guest_error("invalid_json", &format!("the request is not JSON: {e}")),
            )
        }
    };
    // The router sends only these two paths here.
    let reply = if req.path == TOOLS_PATH {
        tool(cx, &parent, &body).await
    } else {
        invoke(cx, &parent, &body).await
    };
    answer(cx, key.as_deref(), &req.path, &reply)
}

/// The guest's answer, sealed under the callback key when the formula has one.
fn answer<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    key: Option<&[u8; 32]>,
    path: &str,
    reply: &Json,
) -> HttpResponse {
    let Some(key) = key else {
        return HttpResponse::json(200, reply);
    };
    let plain = zeroize::Zeroizing::new(reply.to_string().into_bytes());
    match crate::host_api::seal_body(&cx.env, key, &format!("{path}|reply"), &plain) {
        Ok(body) => HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        },
        Err(e) => HttpResponse::json(500, &guest_error("dispatch_error", &e.message)),
    }
}

/// `invoke.call`: runs the child through `execution.run`'s own path, as the caller, one
/// level deeper, within the parent's remaining time.
async fn invoke<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    parent: &Parent,
    body: &Json,
) -> Json {
    if body.get("reference").is_none() {
        return guest_error("invalid_request", "`reference` is required, e.g. \"reagent:cyfr.text-stats:0.1.0\" or {\"registry\": \"…\"}");
    }
    let mut args = RunArgs {
        reference: Some(body["reference"].clone()),
        input: Some(body.get("input").cloned().unwrap_or(json!({}))),
        type_hint: None,
    };
    match body.get("type") {
        None | Some(Json::Null) => {}
        Some(Json::String(t)) if ComponentType::parse(t).is_some() => {
            args.type_hint = Some(t.clone())
        }
        Some(t) => {
            return guest_error(
                "invalid_type",
                &format!("`type` must be reagent, catalyst or formula (got {t})"),
            )
        }
    }
    // Without `type`, a reference that names no type is a reagent, as CYFR's formulas assume.
    if args.type_hint.is_none() {
        let text = body["reference"]
            .as_str()
            .or_else(|| body["reference"]["registry"].as_str())
            .unwrap_or("");
        let prefix = text.split_once(':').map(|(p, _)| p).unwrap_or("");
        if ComponentType::parse(prefix).is_none() {
            args.type_hint = Some("reagent".into());
        }
    }
    // A child started for the caller is a request made with the caller's key, as a tool call is.
    if let Err(e) = crate::auth::take_key_rate(&cx.db, &parent.who.key, cx.env.now_ms()).await {
        return error_answer(&e);
    }
    match run_child(cx, parent, &args).await {
        Ok(v) => {
            json!({ "status": "completed", "output": v["result"], "execution_id": v["execution_id"] })
        }
        Err(e) => error_answer(&e),
    }
}

/// `tools.call`: `tool.action` must be in the formula's `allowed_tools` and within the
/// caller's scopes; then the real handler runs, as the caller.
async fn tool<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
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
    if let Err(e) = crate::auth::take_key_rate(&cx.db, &parent.who.key, cx.env.now_ms()).await {
        return error_answer(&e);
    }
    // A run started through the tools is still a child: same depth bound, same deadline.
    let result = if (name, action) == ("execution", "run") {
        // Its arguments are read loosely (any JSON `reference` and `input`): this cannot fail.
        let run = crate::args::parse::<RunArgs>(&args).unwrap_or_default();
        match run_child(cx, parent, &run).await {
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
        tools::call(cx, &call, name, &args).await
    };
    match result {
        Ok(v) => json!({ "status": "ok", "result": v }),
        Err(e) => {
            json!({ "error": { "type": e.code.guest_tool_type(), "message": e.message, "code": e.code.number() } })
        }
    }
}

/// Runs a child of `parent` after checking the caller may run components at all.
async fn run_child<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    parent: &Parent,
    args: &RunArgs,
) -> crate::errors::Result<Json> {
    if let Some(need) = scopes::need("execution", "run") {
        parent.who.require("execution", "run", need)?;
    }
    formulas::run_child(cx, parent, args).await
}
