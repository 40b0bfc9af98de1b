//! The `system` tool: the server's status.

use super::decl::{actions, NoArgs};
use crate::access::Need;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::Result;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str = "Server status: version and registry size.";

actions! {
    /// The `system` tool's one action.
    tool "system": Action, Calls {
        Status = "status", NoArgs, Need::Authenticated, false;
    }
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    Calls::Status(NoArgs {}): Calls,
) -> Result<Json> {
    let rows = cx
        .db
        .query("SELECT count(*) AS n FROM components", &[])
        .await?;
    Ok(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol_version": crate::config::PROTOCOL_VERSIONS[0],
        "components": rows.first().map(|r| r.int("n")).unwrap_or(0),
    }))
}
