//! MCP resources over what the tools already serve: a run's record and logs
//! (`cyfr://executions/{execution_id}`), a component version's manifest and README
//! (`cyfr://components/{reference}/manifest`, `…/readme`, `reference` typed, e.g.
//! `reagent:cyfr.json-transform:0.1.0`), and `completion/complete` of those templates'
//! arguments. Each read is the tool action it stands for (`execution.logs`,
//! `component.inspect`, `guide.readme`; completion `component.search`, `execution.list`):
//! the same scopes, ownership, redaction and round trips (≤ 2, its reads sent ahead).

use super::Call;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Error, Result};
use serde_json::{json, Value as Json};

const EXECUTIONS: &str = "cyfr://executions/";
const COMPONENTS: &str = "cyfr://components/";
/// How many values a completion offers.
const COMPLETIONS: usize = 20;

/// `resources/templates/list`'s templates.
pub fn templates() -> Json {
    json!([
        {
            "uriTemplate": "cyfr://executions/{execution_id}",
            "name": "execution",
            "title": "A run: its record and logs",
            "description": "One of your runs (an admin: any): status, error, stdout, stderr, timing, egress refusals — execution.logs.",
            "mimeType": "application/json",
        },
        {
            "uriTemplate": "cyfr://components/{reference}/manifest",
            "name": "component-manifest",
            "title": "A component's manifest",
            "description": "The cyfr-manifest.json a component version was registered with (reference like reagent:cyfr.json-transform:0.1.0; no version: the highest).",
            "mimeType": "application/json",
        },
        {
            "uriTemplate": "cyfr://components/{reference}/readme",
            "name": "component-readme",
            "title": "A component's README",
            "description": "The README.md a component version was registered with.",
            "mimeType": "text/markdown",
        },
    ])
}

/// What a resource is, read: the tool action and its arguments (none: not one of these).
pub(crate) fn action_of(uri: &str) -> Option<(&'static str, Json)> {
    if let Some(id) = uri.strip_prefix(EXECUTIONS) {
        return Some(("execution", json!({ "action": "logs", "execution_id": id })));
    }
    let rest = uri.strip_prefix(COMPONENTS)?;
    if let Some(r) = rest.strip_suffix("/manifest") {
        return Some(("component", json!({ "action": "inspect", "reference": r })));
    }
    let r = rest.strip_suffix("/readme")?;
    Some(("guide", json!({ "action": "readme", "reference": r })))
}

/// The reads of `resources/read` of `uri`, to send ahead with the caller check.
pub(crate) fn read_ahead(uri: &str) -> Vec<crate::db::Stmt> {
    action_of(uri)
        .map(|(tool, args)| super::read_ahead(&json!({ "name": tool, "arguments": args })))
        .unwrap_or_default()
}

/// `resources/read` of one of these resources (`None`: `uri` is not one of them).
pub async fn read<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    call: &Call<'_>,
    uri: &str,
) -> Result<Option<Json>> {
    let Some((tool, args)) = action_of(uri) else {
        return Ok(None);
    };
    let v = super::call(cx, call, tool, &args).await?;
    let (mime, text) = match tool {
        "component" => ("application/json", v["manifest"].to_string()),
        "guide" => (
            "text/markdown",
            v["content"].as_str().unwrap_or_default().to_string(),
        ),
        _ => ("application/json", v.to_string()),
    };
    Ok(Some(
        json!({ "contents": [{ "uri": uri, "mimeType": mime, "text": text }] }),
    ))
}

/// `completion/complete` for a template's argument: component references (from
/// `component.search`) or the caller's run ids (from `execution.list`) that start with
/// what was typed; nothing for anything else.
pub async fn complete<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    call: &Call<'_>,
    params: &Json,
) -> Result<Json> {
    let uri = params
        .pointer("/ref/uri")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let name = params
        .pointer("/argument/name")
        .and_then(Json::as_str)
        .ok_or_else(|| Error::invalid_params("completion/complete needs `argument.name`"))?;
    let typed = params
        .pointer("/argument/value")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let values: Vec<String> = match (uri.starts_with(COMPONENTS), name) {
        (true, "reference") => {
            // Search matches `namespace.name`: what was typed without `type:` and `:version`.
            let bare = match typed.split_once(':') {
                Some((t, rest)) if crate::reference::ComponentType::parse(t).is_some() => rest,
                _ => typed,
            };
            let query = bare.split(':').next().unwrap_or_default();
            let found = super::call(
                cx,
                call,
                "component",
                &json!({ "action": "search", "query": query, "limit": 200 }),
            )
            .await?;
            strings(&found["components"], "reference", typed, true)
        }
        (false, "execution_id") if uri.starts_with(EXECUTIONS) => {
            let runs = super::call(
                cx,
                call,
                "execution",
                &json!({ "action": "list", "limit": 100 }),
            )
            .await?;
            strings(&runs["executions"], "execution_id", typed, false)
        }
        _ => Vec::new(),
    };
    let total = values.len();
    let shown: Vec<String> = values.into_iter().take(COMPLETIONS).collect();
    Ok(json!({ "completion": { "values": shown, "total": total, "hasMore": total > COMPLETIONS } }))
}

/// The `field` of each item that starts with `prefix` (a reference also when its part
/// after `type:` does), in order.
fn strings(items: &Json, field: &str, prefix: &str, reference: bool) -> Vec<String> {
    let fits = |s: &str| {
        s.starts_with(prefix)
            || (reference
                && s.split_once(':')
                    .is_some_and(|(_, r)| r.starts_with(prefix)))
    };
    items
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i[field].as_str())
                .filter(|s| fits(s))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}
