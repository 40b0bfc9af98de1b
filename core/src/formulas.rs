//! The router's side of `cyfr:formula/invoke` and `cyfr:mcp/tools`: a formula's host calls
//! back with the token the router gave that run; the router finds the run by the token's
//! hash and acts as the run's caller — that key, its scopes, never more. The HTTP endpoint
//! that answers the callbacks is [`crate::callbacks`].

use crate::auth::{bearer, Identity};
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::CallbackError;
use crate::executions::{self, Lineage, RunArgs};
use crate::host_api::RecordStatus;
use crate::http::HttpRequest;
use crate::{keys, tools};
use serde_json::{json, Value as Json};

/// The formula run a callback speaks for.
pub(crate) struct Parent {
    pub(crate) id: String,
    pub(crate) reference: String,
    pub(crate) who: Identity,
    pub(crate) depth: i64,
    pub(crate) deadline_ms: u64,
    pub(crate) allowed_tools: Vec<String>,
    /// Whether the request that started the formula came over a secure transport.
    pub(crate) secure: bool,
    /// Opened values its input held and its callback key, when it had any.
    pub(crate) carried: Option<executions::Carried>,
}

/// Finds the running formula the bearer token belongs to, and its caller's key as it is now
/// (a key revoked since the formula started is refused).
pub(crate) async fn authenticate<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
) -> Result<Parent, CallbackError> {
    let denied = |m: &str| CallbackError::AuthInvalid(m.to_string());
    let token =
        bearer(req).ok_or_else(|| denied("a formula callback needs its run's bearer token"))?;
    let hash = crate::crypto::sha256_hex(token.as_bytes());
    let rows = cx
        .db
        .query(
            "SELECT id, reference, caller, status, depth, deadline_at, policy, transport_secure, carried_kek, carried FROM executions WHERE callback_hash = ?",
            &[hash.into()],
        )
        .await
        .map_err(|e| CallbackError::Internal(e.0))?;
    let row = rows
        .first()
        .ok_or_else(|| denied("unknown callback token"))?;
    if row.text("status") != RecordStatus::Started.as_str()
        || row
            .opt_int("deadline_at")
            .is_some_and(|d| cx.env.now_ms() >= d as u64)
    {
        return Err(denied("the formula run this token belongs to has ended"));
    }
    // `caller` is the key's lineage: the key as it is now is the lineage's active one.
    let key_id = row.opt_text("caller").unwrap_or_default();
    let key = keys::find_active_by_lineage(&cx.db, &key_id)
        .await
        .map_err(|e| CallbackError::Internal(e.message))?
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
            let kms = cx
                .config
                .kms
                .as_deref()
                .ok_or_else(|| CallbackError::Internal("no master key is configured".into()))?;
            Some(
                executions::uncarry(kms, &row.text("id"), &kek, &wrapped)
                    .await
                    .map_err(|e| CallbackError::Internal(e.message))?,
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

/// `invoke.call`: a child started for the caller is a request made with the caller's key,
/// as a tool call is; then it runs as [`run_child`].
pub(crate) async fn invoke<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    parent: &Parent,
    args: &RunArgs,
) -> Result<Json, CallbackError> {
    crate::auth::take_key_rate(&cx.db, &parent.who.key, cx.env.now_ms())
        .await
        .map_err(CallbackError::Run)?;
    run_child(cx, parent, args)
        .await
        .map_err(CallbackError::Run)
}

/// `tools.call`: `name.action` must be a declared action, in the formula's `allowed_tools`
/// and within the caller's scopes, and counts against the caller's rate limit; then the
/// real handler runs, as the caller. `execution.run` starts a child, with the same depth
/// bound and deadline as `invoke`.
pub(crate) async fn call_tool<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    parent: &Parent,
    name: &str,
    action: &str,
    mut args: Json,
) -> Result<Json, CallbackError> {
    let Some(resolved) = tools::resolve_action(name, action) else {
        return Err(CallbackError::ToolNotFound(format!(
            "no MCP tool {name}.{action}"
        )));
    };
    if !crate::policy::tool_allowed(&parent.allowed_tools, name, action) {
        return Err(CallbackError::ToolDenied(format!(
            "{name}.{action} is not in the allowed_tools of {}'s policy",
            parent.reference
        )));
    }
    parent
        .who
        .require(name, action, resolved.need)
        .map_err(|e| CallbackError::ToolDenied(e.message))?;
    // Tool calls are requests made with the caller's key: they count against its rate limit.
    crate::auth::take_key_rate(&cx.db, &parent.who.key, cx.env.now_ms())
        .await
        .map_err(CallbackError::Run)?;
    if resolved.is_execution_run() {
        // Its arguments are read loosely (any JSON `reference` and `input`): this cannot fail.
        let run = crate::args::parse::<RunArgs>(&args).unwrap_or_default();
        return run_child(cx, parent, &run)
            .await
            .map_err(CallbackError::Run);
    }
    args["action"] = json!(action);
    // Not an MCP session: session-bound actions (sealed secrets) are refused by their
    // handlers. The transport is the one the formula's own request came over: the
    // callback's loopback peer says nothing about how the caller reached cyfr.
    let call = tools::Call {
        who: &parent.who,
        session_hash: None,
        secure: parent.secure,
    };
    tools::call(cx, &call, name, &args)
        .await
        .map_err(CallbackError::Tool)
}

/// Runs a child of `parent`, after checking its caller may run components at all: one
/// level deeper, within the parent's remaining time, with the values it carries.
async fn run_child<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    parent: &Parent,
    args: &RunArgs,
) -> crate::errors::Result<Json> {
    if let Some(need) = tools::resolve_action("execution", "run").map(|r| r.need) {
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
        cx,
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

/// The error a formula's guest gets: `{"error": {"type", "message"}}` (host and router alike).
pub fn guest_error(kind: &str, message: &str) -> Json {
    json!({ "error": { "type": kind, "message": message } })
}
