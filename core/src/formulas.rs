//! The router's side of `cyfr:formula/invoke` and `cyfr:mcp/tools`: a formula's host calls
//! back with the token the router gave that run; the router finds the run by the token's
//! hash and acts as the run's caller — that key, its scopes, never more. The HTTP endpoint
//! that answers the callbacks is `crate::callbacks`.

use crate::auth::{bearer, Identity};
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::CallbackError;
use crate::executions::{self, Lineage, RunArgs};
use crate::host_api::RecordStatus;
use crate::http::HttpRequest;
use crate::keys;
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
        who: Identity { key, user: None },
        depth: row.int("depth"),
        deadline_ms: row.opt_int("deadline_at").unwrap_or(0) as u64,
        allowed_tools,
    })
}

/// Runs a child of `parent` (its caller already checked for `execution.run`): one level
/// deeper, within the parent's remaining time, with the values it carries.
pub(crate) async fn run_child<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    parent: &Parent,
    args: &RunArgs,
) -> crate::errors::Result<Json> {
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
            request_id: None,
            rpc_id: None,
        },
    )
    .await
}

/// The error a formula's guest gets: `{"error": {"type", "message"}}` (host and router alike).
pub fn guest_error(kind: &str, message: &str) -> Json {
    json!({ "error": { "type": kind, "message": message } })
}
