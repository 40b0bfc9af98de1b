//! A running formula's calls into cyfr (`invoke.call`, `tools.call`, answered by
//! [`crate::callbacks`]): the rules they are held to — the action must be declared, in the
//! formula's `allowed_tools` and within its caller's scopes, and counts against the
//! caller's rate limit — before the child or the tool runs as the caller.

use super::Call;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::CallbackError;
use crate::executions::RunArgs;
use crate::formulas::{self, Parent};
use serde_json::{json, Value as Json};

/// `invoke.call`: a child started for the caller is a request made with the caller's key,
/// as a tool call is; then it runs as [`formulas::run_child`].
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
    let Some(resolved) = super::resolve_action(name, action) else {
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
    let call = Call {
        who: &parent.who,
        session_hash: None,
        secure: parent.secure,
        stateless_req: None,
        input: None,
        request_id: None,
        rpc_id: None,
    };
    super::call(cx, &call, name, &args)
        .await
        .map_err(CallbackError::Tool)
}

/// Runs a child of `parent` after checking the caller may run components at all.
async fn run_child<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    parent: &Parent,
    args: &RunArgs,
) -> crate::errors::Result<Json> {
    if let Some(run) = super::resolve_action("execution", "run") {
        parent.who.require("execution", "run", run.need)?;
    }
    formulas::run_child(cx, parent, args).await
}
