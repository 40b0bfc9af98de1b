//! The `system` tool: the server's status.

use super::decl::actions;
use crate::access::Need;
use crate::args::{fields, opt_str};
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Error, Result};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str = "Server status: version and registry size.";

actions! {
    /// The `system` tool's one action.
    tool "system": Action, Calls {
        Status = "status", StatusArgs, Need::Authenticated, false;
    }
}

fields!(ScopeArg = "scope");

/// CYFR's services, each answered by the one cyfr router.
const SERVICES: &[&str] = &["emissary", "sanctum", "arca", "opus", "compendium"];

/// `system.status`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct StatusArgs {
    /// status: all, or one of CYFR's services (opus, sanctum, compendium, emissary, arca)
    #[serde(default, deserialize_with = "opt_str::<ScopeArg, _>")]
    scope: Option<String>,
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    Calls::Status(a): Calls,
) -> Result<Json> {
    let scope = a.scope.as_deref().unwrap_or("all");
    if scope != "all" && !SERVICES.contains(&scope) {
        return Err(Error::invalid_params(format!(
            "`scope` must be all, {} (got `{scope}`)",
            SERVICES.join(", ")
        )));
    }
    let rows = cx
        .db
        .query("SELECT count(*) AS n FROM components", &[])
        .await?;
    let services: serde_json::Map<String, Json> = SERVICES
        .iter()
        .filter(|s| scope == "all" || **s == scope)
        .map(|s| (s.to_string(), json!({ "status": "ok" })))
        .collect();
    let resources = if cx.config.session_encryption { 1 } else { 0 };
    // CYFR's shape (`uptime_seconds` is null: the router keeps no memory between requests),
    // with cyfr's `protocol_version` and `components` beside it.
    Ok(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": Json::Null,
        "services": services,
        "mcp": {
            "protocol_version": crate::config::PROTOCOL_VERSIONS[0],
            "tools_count": super::ADMIN_TOOLS,
            "resources_count": resources,
        },
        "protocol_version": crate::config::PROTOCOL_VERSIONS[0],
        "components": rows.first().map(|r| r.int("n")).unwrap_or(0),
    }))
}
