//! The HTTP endpoint of formula callbacks (`POST /v1/formula/invoke`, `/v1/formula/tools`):
//! the token names the running formula ([`crate::formulas`]); `invoke` runs a child
//! through `execution.run`'s own path, `tools` runs a tool as the formula's caller.
//! Everything after the token check is a 200 whose body is the guest's answer.

use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::CallbackError;
use crate::executions::RunArgs;
use crate::formulas::{self, Parent};
use crate::host_api::TOOLS_PATH;
use crate::http::{HttpRequest, HttpResponse};
use crate::reference::ComponentType;
use crate::tools;
use serde_json::{json, Value as Json};

/// Answers a formula host's callback. Bad or stale tokens get 401; everything after that
/// is a 200 whose body is the guest's answer (`{"error": {"type", "message"}}` on failure).
pub async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
) -> HttpResponse {
    if req.method != "POST" {
        return refused(&CallbackError::NotPost);
    }
    let parent = match formulas::authenticate(cx, req).await {
        Ok(p) => p,
        Err(e) => return refused(&e),
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
            Err(e) => return refused(&CallbackError::Unsealed(e.message)),
        },
        None => &req.body,
    };
    let reply = match request_body(plain) {
        // The router sends only these two paths here.
        Ok(body) if req.path == TOOLS_PATH => tool(cx, &parent, &body).await,
        Ok(body) => invoke(cx, &parent, &body).await,
        Err(e) => Err(e),
    };
    let reply = reply.unwrap_or_else(|e| e.to_guest());
    answer(cx, key.as_deref(), &req.path, &reply)
}

/// A refusal before the callback is answered by a result: its own status, never sealed.
fn refused(e: &CallbackError) -> HttpResponse {
    HttpResponse::json(e.status(), &e.to_guest())
}

/// The callback's request: a JSON object.
fn request_body(plain: &[u8]) -> Result<Json, CallbackError> {
    match serde_json::from_slice(plain) {
        Ok(v @ Json::Object(_)) => Ok(v),
        Ok(_) => Err(CallbackError::InvalidRequest(
            "the request must be a JSON object".into(),
        )),
        Err(e) => Err(CallbackError::InvalidJson(format!(
            "the request is not JSON: {e}"
        ))),
    }
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
        Err(e) => refused(&CallbackError::Internal(e.message)),
    }
}

/// `invoke.call`: runs the child through `execution.run`'s own path, as the caller, one
/// level deeper, within the parent's remaining time.
async fn invoke<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    parent: &Parent,
    body: &Json,
) -> Result<Json, CallbackError> {
    // `component_ref` is CYFR's name for it elsewhere; either is read.
    let Some(reference) = body.get("reference").or_else(|| body.get("component_ref")) else {
        return Err(CallbackError::InvalidRequest("`reference` is required, e.g. \"reagent:cyfr.text-stats:0.1.0\", {\"registry\": \"…\"} or {\"local\": \"components/reagents/cyfr/text-stats/0.1.0/reagent.wasm\"}".into()));
    };
    let mut args = RunArgs {
        reference: Some(reference.clone()),
        input: Some(body.get("input").cloned().unwrap_or(json!({}))),
        type_hint: None,
    };
    match body.get("type") {
        None | Some(Json::Null) => {}
        Some(Json::String(t)) if ComponentType::parse(t).is_some() => {
            args.type_hint = Some(t.clone())
        }
        Some(t) => {
            return Err(CallbackError::InvalidType(format!(
                "`type` must be reagent, catalyst or formula (got {t})"
            )))
        }
    }
    // Without `type`, a reference that names no type is looked up in the registry (CYFR
    // takes an untyped registry reference's type from inspect), and a `{"local": …}` path
    // names its type itself.
    let v = tools::formula::invoke(cx, parent, &args).await?;
    Ok(json!({ "status": "completed", "output": v["result"], "execution_id": v["execution_id"] }))
}

/// `tools.call`: reads `tool`, `action` and `args`; [`tools::formula::call_tool`] holds the rules.
async fn tool<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    parent: &Parent,
    body: &Json,
) -> Result<Json, CallbackError> {
    let (Some(name), Some(action)) = (
        body.get("tool").and_then(Json::as_str),
        body.get("action").and_then(Json::as_str),
    ) else {
        return Err(CallbackError::InvalidRequest("`tool` and `action` are required strings, e.g. {\"tool\": \"component\", \"action\": \"search\", \"args\": {}}".into()));
    };
    let args = match body.get("args").or_else(|| body.get("params")) {
        None | Some(Json::Null) => json!({}),
        Some(v @ Json::Object(_)) => v.clone(),
        Some(_) => {
            return Err(CallbackError::InvalidRequest(
                "`args` (or `params`) must be an object".into(),
            ))
        }
    };
    let result = tools::formula::call_tool(cx, parent, name, action, args).await?;
    Ok(json!({ "status": "ok", "result": result }))
}
