//! The execution records a caller reads and cancels: `execution.list`, `get`, `logs`,
//! `cancel`, and a 2025-11-25 session's `notifications/cancelled`.

use super::*;

/// `execution.list`: the caller's own runs, newest first (an admin sees all), optionally
/// only those with CYFR's `status` word.
pub async fn list(
    db: &impl Db,
    who: &Identity,
    limit: Option<u64>,
    status: Option<&str>,
) -> Result<Json> {
    let limit = limit.unwrap_or(50).clamp(1, 500) as i64;
    let caller: Value = if who.is_admin() {
        Value::Null
    } else {
        who.id().into()
    };
    let wanted = status_filter(status)?.map(|s| s.join(","));
    let rows = db
        .query(
            "SELECT id, reference, component_type, digest, status, error, started_at, finished_at, duration_ms, parent_execution_id FROM executions \
             WHERE (?1 IS NULL OR caller = ?1) AND (?3 IS NULL OR instr(',' || ?3 || ',', ',' || status || ',') > 0) \
             ORDER BY started_at DESC, id DESC LIMIT ?2",
            &[caller, Value::Integer(limit), wanted.into()],
        )
        .await?;
    let list: Vec<Json> = rows
        .iter()
        .map(|r| {
            json!({
                "execution_id": r.text("id"),
                "reference": r.text("reference"),
                "component_ref": r.text("reference"),
                "component_type": r.text("component_type"),
                "component_digest": r.text("digest"),
                "status": status_word(&r.text("status")),
                "error": r.opt_text("error"),
                "started_at": rfc3339(r.int("started_at") as u64),
                "completed_at": r.opt_int("finished_at").map(|t| rfc3339(t as u64)),
                "duration_ms": r.opt_int("duration_ms"),
                "parent_execution_id": r.opt_text("parent_execution_id"),
            })
        })
        .collect();
    Ok(json!({ "executions": list, "count": list.len(), "user_id": who.id() }))
}

/// `audit.show`: a run's record, for its caller or an admin; anyone else's run looks missing.
pub async fn show(db: &impl Db, who: &Identity, id: &str) -> Result<Json> {
    let rows = db
        .query(
            "SELECT id, caller, reference, component_type, status, error, started_at, finished_at, duration_ms FROM executions WHERE id = ?",
            &[id.into()],
        )
        .await?;
    let row = own(&rows, who, id)?;
    Ok(json!({
        "execution_id": row.text("id"),
        "reference": row.text("reference"),
        "user_id": row.opt_text("caller"),
        "component_type": row.text("component_type"),
        "started_at": rfc3339(row.int("started_at") as u64),
        "completed_at": row.opt_int("finished_at").map(|t| rfc3339(t as u64)),
        "duration_ms": row.opt_int("duration_ms"),
        "status": row.text("status"),
        "error_message": row.opt_text("error"),
        "http_requests": [],
    }))
}

/// `execution.logs`: a run's captured stdout and stderr (already redacted), for its caller
/// or an admin; anyone else's run looks missing.
pub async fn logs(db: &impl Db, who: &Identity, id: &str) -> Result<Json> {
    let rows = db.query("SELECT id, caller, reference, component_type, digest, status, error, started_at, finished_at, duration_ms, stdout, stderr, refusals FROM executions WHERE id = ?", &[id.into()]).await?;
    let row = own(&rows, who, id)?;
    let (stdout, stderr) = (row.text("stdout"), row.text("stderr"));
    // CYFR's `logs` is one text; cyfr keeps the two streams apart as well.
    let logs = match (stdout.is_empty(), stderr.is_empty()) {
        (_, true) => stdout.clone(),
        (true, false) => stderr.clone(),
        (false, false) => format!("{stdout}\n{stderr}"),
    };
    Ok(json!({
        "execution_id": row.text("id"),
        "status": status_word(&row.text("status")),
        "error": row.opt_text("error"),
        "stdout": stdout,
        "stderr": stderr,
        "logs": logs,
        "reference": row.text("reference"),
        "component_ref": row.text("reference"),
        "component_type": row.text("component_type"),
        "component_digest": row.text("digest"),
        "started_at": rfc3339(row.int("started_at") as u64),
        "completed_at": row.opt_int("finished_at").map(|t| rfc3339(t as u64)),
        "duration_ms": row.opt_int("duration_ms"),
        "egress_refusals": row.opt_text("refusals").and_then(|r| serde_json::from_str::<Json>(&r).ok()).unwrap_or(json!([])),
    }))
}

/// `execution.cancel`: stops a run under way (the caller's own, or any for an admin). The
/// running instance is really stopped on its host; its record ends as `cancelled`.
pub async fn cancel<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    id: &str,
) -> Result<Json> {
    let rows = cx
        .db
        .query(
            "SELECT caller, status FROM executions WHERE id = ?",
            &[id.into()],
        )
        .await?;
    let row = own(&rows, who, id)?;
    let status = row.text("status");
    if status != RecordStatus::Started.as_str() {
        return Ok(
            json!({ "execution_id": id, "cancelled": false, "status": status_word(&status), "message": "Execution already completed, failed, or cancelled" }),
        );
    }
    // A formula's token first (it is still `started`, and no child may start from now on),
    // then the formula itself (a child cancelled before it would hand it an error it could
    // still answer with), then its children, so none is left running when this returns.
    cx.db
        .query(
            "UPDATE executions SET callback_hash = NULL WHERE id = ?",
            &[id.into()],
        )
        .await?;
    stop(cx, id).await
}

/// `notifications/cancelled` of a 2025-11-25 session for its request `rpc_id` (the
/// session's hash and the JSON-RPC id, as the run's record keeps it): the run it started,
/// if still going, is stopped as [`cancel`] stops one. Whether one was.
pub async fn cancel_request<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    rpc_id: &str,
) -> Result<bool> {
    let rows = cx
        .db
        .query(
            "UPDATE executions SET callback_hash = NULL WHERE rpc_id = ?1 AND status = 'started' RETURNING id",
            &[rpc_id.into()],
        )
        .await?;
    let mut any = false;
    for row in rows.iter() {
        any |= stop(cx, &row.text("id")).await.is_ok();
    }
    Ok(any)
}

/// Stops run `id` on its host, then its children; its answer says whether it was stopped.
async fn stop<D: Db, X: Dispatch, E: Env>(cx: &Context<D, X, E>, id: &str) -> Result<Json> {
    let stopped = cx
        .dispatch
        .cancel(id)
        .await
        .map_err(|e| Error::new(Code::RegistryUnavailable, describe(&e)));
    cancel_children(cx, id).await;
    let stopped = stopped?;
    Ok(
        json!({ "execution_id": id, "cancelled": stopped, "status": status_word(if stopped { RecordStatus::Cancelled } else { RecordStatus::Started }.as_str()) }),
    )
}

/// The run record in `rows` if `who` may see it (its caller, or an admin); anyone else's
/// run looks missing.
fn own<'r>(rows: &'r crate::db::Rows, who: &Identity, id: &str) -> Result<crate::db::Row<'r>> {
    rows.first()
        .filter(|r| who.is_admin() || r.opt_text("caller").as_deref() == Some(who.id()))
        .ok_or_else(|| Error::invalid_params(format!("no execution `{id}` of yours")))
}
