//! The `audit` tool: the audit log (`list`, `export`), runs (`show`, `executions`) and the
//! chain's check (`verify`). A caller that is not an admin sees only its own rows and runs.

use super::decl::{actions, NoArgs};
use crate::access::Need;
use crate::args::{fields, loose_u64, opt_str, raw, required};
use crate::audit::{self, Filter};
use crate::auth::Identity;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Error, Result};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str = "The audit log: list and export (json, csv) its rows, show a run, list recent runs, verify the hash chain.";

const LIST: Need = Need::Scopes(&["audit.list"]);

actions! {
    /// The `audit` tool's actions.
    tool "audit": Action, Calls {
        List = "list", ListArgs, LIST, false;
        Export = "export", ExportArgs, LIST, false;
        Show = "show", ShowArgs, LIST, false;
        Executions = "executions", ExecutionsArgs, LIST, false;
        Verify = "verify", NoArgs, Need::Admin, false;
    }
}

fields!(Format = "format", ExecutionId = "execution_id");

/// `audit.list`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct ListArgs {
    /// list/export: {actor, tool, action, outcome, reference, since, until, limit, offset}; times are dates, RFC 3339 or Unix ms
    #[serde(default, deserialize_with = "raw")]
    #[schemars(schema_with = "filters_schema")]
    filters: Option<Json>,
}

/// `audit.export`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct ExportArgs {
    /// export: json (default) or csv
    #[serde(default, deserialize_with = "opt_str::<Format, _>")]
    format: Option<String>,
    /// list/export: {actor, tool, action, outcome, reference, since, until, limit, offset}; times are dates, RFC 3339 or Unix ms
    #[serde(default, deserialize_with = "raw")]
    #[schemars(schema_with = "filters_schema")]
    filters: Option<Json>,
}

/// `audit.show`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct ShowArgs {
    /// show: the run (exec_…)
    #[serde(default, deserialize_with = "opt_str::<ExecutionId, _>")]
    execution_id: Option<String>,
}

/// `audit.executions`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct ExecutionsArgs {
    /// executions: how many runs (default 10)
    #[serde(default, deserialize_with = "loose_u64")]
    #[schemars(range(min = 1, max = 500))]
    limit: Option<u64>,
}

fn filters_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object" })
}

/// The filters of `list`/`export`; a non-admin is held to its own rows.
fn filter(who: &Identity, v: Option<&Json>, max: u64) -> Result<Filter> {
    let empty = json!({});
    let v = match v {
        None | Some(Json::Null) => &empty,
        Some(o @ Json::Object(_)) => o,
        Some(_) => return Err(Error::invalid_params("`filters` must be an object")),
    };
    let text = |k: &str| -> Result<Option<String>> {
        match v.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::invalid_params(format!(
                "`filters.{k}` must be a string"
            ))),
        }
    };
    let num = |k: &str| -> Result<Option<u64>> {
        match v.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(n) => n.as_u64().map(Some).ok_or_else(|| {
                Error::invalid_params(format!("`filters.{k}` must be a whole number"))
            }),
        }
    };
    let time = |a: &str, b: &str| -> Result<Option<u64>> {
        let x = audit::parse_time(&format!("filters.{a}"), v.get(a).unwrap_or(&Json::Null))?;
        Ok(match x {
            Some(t) => Some(t),
            None => audit::parse_time(&format!("filters.{b}"), v.get(b).unwrap_or(&Json::Null))?,
        })
    };
    let mut f = Filter {
        actor: text("actor")?,
        actor_id: None,
        tool: text("tool")?,
        action: text("action")?,
        outcome: text("outcome")?,
        reference: text("reference")?,
        since: time("since", "start_date")?,
        until: time("until", "end_date")?,
        limit: num("limit")?.unwrap_or(100).clamp(1, max),
        offset: num("offset")?.unwrap_or(0),
    };
    if !who.is_admin() {
        f.actor_id = Some(who.id().to_string());
    }
    Ok(f)
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: Calls,
) -> Result<Json> {
    match args {
        Calls::List(a) => {
            let f = filter(who, a.filters.as_ref(), 1000)?;
            let events = audit::list(&cx.db, &f).await?;
            let next = (events.len() as u64 == f.limit).then(|| f.offset + f.limit);
            Ok(json!({ "count": events.len(), "events": events, "next_offset": next }))
        }
        Calls::Export(a) => {
            let format = a.format.unwrap_or_else(|| "json".into());
            let f = filter(who, a.filters.as_ref(), 10_000)?;
            let f = Filter {
                limit: a
                    .filters
                    .as_ref()
                    .and_then(|v| v.get("limit"))
                    .map_or(10_000, |_| f.limit),
                ..f
            };
            let events = audit::list(&cx.db, &f).await?;
            let data = match format.as_str() {
                "json" => serde_json::to_string_pretty(&events).unwrap_or_default(),
                "csv" => audit::to_csv(&events),
                other => {
                    return Err(Error::invalid_params(format!(
                        "format `{other}` must be json or csv"
                    )))
                }
            };
            Ok(json!({ "format": format, "count": events.len(), "data": data }))
        }
        Calls::Show(a) => {
            let id = required::<ExecutionId>(&a.execution_id)?;
            crate::executions::show(&cx.db, who, id).await
        }
        Calls::Executions(a) => {
            crate::executions::list(&cx.db, who, Some(a.limit.unwrap_or(10)), None).await
        }
        Calls::Verify(NoArgs {}) => {
            let now = cx.env.now_ms();
            // Chain what is ripe first, so the answer covers every row old enough.
            while audit::seal(&cx.db, now, cx.config.audit_retention_ms).await?
                >= audit::SEAL_BATCH as usize
            {}
            audit::verify(&cx.db).await
        }
    }
}
