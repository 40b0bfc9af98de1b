//! The `execution` tool: run a component, list runs, read a run's logs, cancel a run.

use super::decl::actions;
use super::Call;
use crate::access::Need;
use crate::args::{fields, loose_u64, opt_str, req_str, required};
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::Result;
use crate::executions::{self, Origin, RunArgs};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;
use zeroize::Zeroizing;

pub(super) const DESCRIPTION: &str = "Run a sandboxed WebAssembly component and list your runs. `run` takes a reference (`reference` or `component_ref`) such as \"reagent:cyfr.json-transform:0.1.0\", \"cyfr.json-transform@0.1.0\" (no type: the registry finds it; a bare name is namespace local), {\"registry\": …} or {\"local\": \"components/reagents/cyfr/json-transform/0.1.0/reagent.wasm\"}, and a JSON `input`.";

const EXECUTION: Need = Need::Scopes(&["execution"]);

actions! {
    /// The `execution` tool's actions.
    tool "execution": Action, Calls {
        Run = "run", RunArgs, EXECUTION, false;
        List = "list", ListArgs, EXECUTION, false;
        Logs = "logs", RunId, EXECUTION, false;
        Cancel = "cancel", RunId, EXECUTION, false;
    }
}

fields!(ExecutionId = "execution_id", Status = "status");

/// `execution.list`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct ListArgs {
    /// list: how many runs
    #[serde(default, deserialize_with = "loose_u64")]
    #[schemars(range(min = 1, max = 500))]
    limit: Option<u64>,
    /// list: only runs with this status (running, completed, failed, cancelled, timed_out, all)
    #[serde(default, deserialize_with = "opt_str::<Status, _>")]
    status: Option<String>,
}

/// `execution.logs` and `execution.cancel`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct RunId {
    /// logs/cancel: the run (exec_…)
    #[serde(default, deserialize_with = "req_str::<ExecutionId, _>")]
    execution_id: Option<String>,
}

/// What `execution.run` with `args` will read first (see [`executions::read_ahead`]).
pub(super) fn read_ahead(args: &Json) -> Vec<crate::db::Stmt> {
    let Ok(Calls::Run(run)) = Action::Run.call(args) else {
        return Vec::new();
    };
    let hint = run
        .type_hint
        .as_deref()
        .and_then(crate::reference::ComponentType::parse);
    run.reference
        .as_ref()
        .and_then(|r| crate::reference::Target::from_json(r, hint).ok())
        .map(|t| executions::read_ahead_target(&t))
        .unwrap_or_default()
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    call: &Call<'_>,
    args: Calls,
    opened: &[Zeroizing<Vec<u8>>],
) -> Result<Json> {
    let who = call.who;
    match args {
        Calls::Run(args) => {
            let origin = Origin {
                opened,
                secure: call.secure,
                request_id: call.request_id,
                rpc_id: call.rpc_id,
            };
            executions::run(cx, who, &args, origin).await
        }
        Calls::List(a) => executions::list(&cx.db, who, a.limit, a.status.as_deref()).await,
        Calls::Logs(a) => {
            executions::logs(&cx.db, who, required::<ExecutionId>(&a.execution_id)?).await
        }
        Calls::Cancel(a) => {
            executions::cancel(cx, who, required::<ExecutionId>(&a.execution_id)?).await
        }
    }
}
