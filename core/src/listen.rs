//! `subscriptions/listen` (MCP 2026-07-28): the request's answer is an event stream whose
//! first event is `notifications/subscriptions/acknowledged`, then a `list_changed`
//! notification of each kind the client's filter asked for whenever the registered
//! components change; every event carries `_meta["io.modelcontextprotocol/subscriptionId"]`
//! = the listen request's id. Nothing is kept between requests, so a change made by
//! another request is seen by polling SQL (one cheap read of the components table every
//! [`POLL_MS`]) while the stream is open; the stream ends after [`MAX_POLLS`] polls (the
//! client listens again) or as soon as a write fails (the client left).

use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use serde_json::{json, Value as Json};

/// The `_meta` key naming the subscription an event belongs to.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// How long between two polls of the components table.
pub const POLL_MS: u64 = 1_000;

/// Polls before the stream ends (about five minutes): a listener holds a router instance,
/// so its stream is bounded; the client reconnects.
pub const MAX_POLLS: u32 = 300;

/// The notifications a client may ask for, by its filter key; components as tools, as
/// resources and their manifests' prompts all change with a registration or a removal.
const KINDS: [(&str, &str); 3] = [
    ("toolsListChanged", "notifications/tools/list_changed"),
    (
        "resourcesListChanged",
        "notifications/resources/list_changed",
    ),
    ("promptsListChanged", "notifications/prompts/list_changed"),
];

/// What identifies the registered components' state: it changes with every registration
/// (a new row, a later `created_at`) and every removal (fewer rows, another rowid sum).
const REVISION: &str = "SELECT count(*) AS n, coalesce(max(created_at), 0) AS t, \
     coalesce(sum(rowid), 0) AS s FROM components";

async fn revision(db: &impl Db) -> Result<(i64, i64, i64)> {
    let rows = db.query(REVISION, &[]).await?;
    let r = rows
        .first()
        .ok_or_else(|| Error::internal("the components revision read no row"))?;
    Ok((r.int("n"), r.int("t"), r.int("s")))
}

/// The methods the filter `params.notifications` asks for (`{toolsListChanged: true, …}`;
/// unknown keys and kinds we never send are ignored).
fn asked(params: &Json) -> Result<Vec<&'static str>> {
    let filter = params.get("notifications").unwrap_or(&Json::Null);
    if !filter.is_object() && !filter.is_null() {
        return Err(Error::invalid_params(
            "`notifications` must be an object such as {\"toolsListChanged\": true}",
        ));
    }
    Ok(KINDS
        .iter()
        .filter(|(key, _)| filter.get(key).and_then(Json::as_bool) == Some(true))
        .map(|(_, method)| *method)
        .collect())
}

fn notification(method: &str, id: &Json) -> Json {
    json!({ "jsonrpc": "2.0", "method": method, "params": { "_meta": { SUBSCRIPTION_ID: id } } })
}

/// Serves one `subscriptions/listen` of an identified caller on the open event stream
/// (`Dispatch::push`); its result, `{}`, ends the stream when it is over.
pub async fn listen<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    id: &Json,
    params: &Json,
) -> Result<Json> {
    let kinds = asked(params)?;
    if !cx.dispatch.can_push() {
        return Err(Error::new(
            Code::InvalidRequest,
            "subscriptions/listen answers as an event stream: send `Accept: text/event-stream` (a deployment whose adapter streams no answer, such as Workers, cannot listen)",
        ));
    }
    // Read before the acknowledgement: a change made once it was sent is always noticed.
    let mut seen = revision(&cx.db).await?;
    if !cx
        .dispatch
        .push(Some(&notification(
            "notifications/subscriptions/acknowledged",
            id,
        )))
        .await
    {
        return Ok(json!({}));
    }
    for _ in 0..MAX_POLLS {
        cx.dispatch.pause(POLL_MS).await;
        let now = revision(&cx.db).await?;
        let sent = if now != seen && !kinds.is_empty() {
            seen = now;
            let mut all = true;
            for method in &kinds {
                all &= cx.dispatch.push(Some(&notification(method, id))).await;
            }
            all
        } else {
            seen = now;
            // Nothing to say: a comment, whose failed write tells us the client left.
            cx.dispatch.push(None).await
        };
        if !sent {
            break;
        }
    }
    Ok(json!({}))
}
