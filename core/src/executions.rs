//! `execution.run` and the execution records.

use crate::app::App;
use crate::auth::Identity;
use crate::db::{Db, Value};
use crate::dispatch::{Dispatch, DispatchError};
use crate::env::{execution_id, random_token, rfc3339, Env};
use crate::errors::{Code, Error, Result};
use crate::host_api::{Limits, RunRequest, RunResponse};
use crate::reference::{ComponentType, Reference};
use crate::{policy, registry};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value as Json};
use zeroize::Zeroizing;

/// How deep formulas may nest: a top-level run is depth 0, its children 1, and so on.
pub const MAX_DEPTH: i64 = 4;

/// A child run's place under a formula: its parent, its depth and the parent's deadline,
/// which the child never outlives.
#[derive(Clone, Debug)]
pub struct Lineage {
    /// The formula's execution id.
    pub parent_id: String,
    /// The child's depth (the parent's plus one).
    pub depth: i64,
    /// When the parent's time is up, Unix ms.
    pub deadline_ms: u64,
}

/// What a run carries from the request that asked for it, besides its caller.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    /// Values opened from `encrypted_secrets` that the input holds (a formula's children
    /// inherit its own): kept out of every record and answer, and sealed on their way to a
    /// remote host.
    pub opened: &'a [Zeroizing<Vec<u8>>],
    /// Whether the request came over a secure transport (HTTPS, loopback, development mode).
    /// A formula's callbacks act with its top-level request's, never their own loopback one.
    pub secure: bool,
}

/// Runs a component for `who` and records the run.
pub async fn run<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    who: &Identity,
    args: &Json,
    origin: Origin<'_>,
) -> Result<Json> {
    run_in(app, who, args, None, origin).await
}

/// Runs a component for `who`, as a child of a formula when `lineage` says so, and records
/// the run (with its parent). Every run, nested or not, takes this one path.
pub async fn run_in<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    who: &Identity,
    args: &Json,
    lineage: Option<&Lineage>,
    origin: Origin<'_>,
) -> Result<Json> {
    let opened = origin.opened;
    let type_hint = match args.get("type").and_then(Json::as_str) {
        None => None,
        Some(t) => Some(ComponentType::parse(t).ok_or_else(|| {
            Error::invalid_params(format!(
                "`type` must be reagent, catalyst or formula (got `{t}`)"
            ))
        })?),
    };
    let reference = args.get("reference").ok_or_else(|| {
        Error::invalid_params(
            "execution.run needs `reference`, e.g. \"reagent:cyfr.json-transform:0.1.0\"",
        )
    })?;
    let reference = Reference::from_json(reference, type_hint)?;
    let component = registry::resolve(&app.db, &reference).await?;
    let policy = policy::effective(&app.db, &component).await?;
    let input = serde_json::to_string(args.get("input").unwrap_or(&json!({}))).unwrap_or_default();

    let id = execution_id(&app.env);
    let started = app.env.now_ms();
    let depth = lineage.map(|l| l.depth).unwrap_or(0);
    // A child never outlives its parent: its timeout is cut to the parent's remaining time.
    let remaining = lineage.map(|l| l.deadline_ms.saturating_sub(started));
    let timeout_ms = remaining.map_or(policy.timeout_ms, |r| r.min(policy.timeout_ms));
    let deadline = started + timeout_ms;
    // A formula's host calls back with this token; the row keeps only its hash, and the
    // token stops working when the row leaves `started`.
    let mut callback = if component.ctype == ComponentType::Formula {
        callback_url(&app.config).map(|url| crate::host_api::Callback {
            url,
            token: random_token(&app.env, 32),
            key: None,
        })
    } else {
        None
    };
    // A formula holding opened values passes them to its children: its callbacks are sealed
    // under a key of their own, and the values (for redacting the children) and that key are
    // kept with its record, wrapped by the master key, for the callbacks to find.
    let carried = match callback.as_mut() {
        Some(cb) if !opened.is_empty() => {
            let (kek, wrapped, key) = carry(app, &id, opened).await?;
            cb.key = Some(key);
            Some((kek, wrapped))
        }
        _ => None,
    };
    // A child is recorded only while its parent still runs with a live callback token: one
    // that passed the token check just before the parent ended does not start after it.
    let inserted = app
        .db
        .query(
            "INSERT INTO executions (id, reference, component_type, digest, status, caller, policy, started_at, parent_execution_id, depth, deadline_at, callback_hash, transport_secure, carried_kek, carried) \
             SELECT ?1, ?2, ?3, ?4, 'started', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14 \
             WHERE ?8 IS NULL OR EXISTS (SELECT 1 FROM executions WHERE id = ?8 AND status = 'started' AND callback_hash IS NOT NULL) \
             RETURNING id",
            &[
                id.clone().into(),
                component.reference.clone().into(),
                component.ctype.as_str().into(),
                component.digest.clone().into(),
                who.id().into(),
                policy.to_json().to_string().into(),
                Value::Integer(started as i64),
                lineage.map(|l| l.parent_id.clone()).into(),
                Value::Integer(depth),
                Value::Integer(deadline as i64),
                callback.as_ref().map(|c| crate::crypto::sha256_hex(c.token.as_bytes())).into(),
                Value::Integer(origin.secure as i64),
                carried.as_ref().map(|c| c.0.clone()).into(),
                carried.map_or(Value::Null, |c| Value::Blob(c.1)),
            ],
        )
        .await?;
    if inserted.rows.is_empty() {
        return Err(Error::new(
            Code::ExecutionFailed,
            format!(
                "the formula that asked for {} has ended",
                component.reference
            ),
        )
        .with_data(json!({ "reason": "parent_ended", "reference": component.reference })));
    }

    let failure = |reason: &str, message: String| {
        let code = match reason {
            "timeout" => Code::ExecutionTimeout,
            // The host refused it at once: this caller already has its share of runs there.
            "busy" => Code::RateLimited,
            _ => Code::ExecutionFailed,
        };
        let mut data =
            json!({ "execution_id": id, "reason": reason, "reference": component.reference });
        if reason == "busy" {
            data["retry_after_ms"] = json!(BUSY_RETRY_MS);
        }
        Error::new(code, message).with_data(data)
    };

    // Checked here as well as on the host, so an oversize input never leaves the router.
    if input.len() as u64 > policy.max_request_size {
        let msg = format!(
            "input is {} bytes; the policy allows {} (max_request_size)",
            input.len(),
            policy.max_request_size
        );
        finish(
            &app.db,
            &id,
            "failed",
            Some(&msg),
            None,
            started,
            app.env.now_ms(),
        )
        .await?;
        return Err(failure("input_too_large", msg));
    }
    if depth > MAX_DEPTH {
        let msg = format!(
            "{} would run {depth} levels deep; formulas nest at most {MAX_DEPTH} levels",
            component.reference
        );
        finish(
            &app.db,
            &id,
            "failed",
            Some(&msg),
            None,
            started,
            app.env.now_ms(),
        )
        .await?;
        return Err(Error::new(Code::CapabilityDenied, msg).with_data(json!({ "execution_id": id, "reason": "depth_exceeded", "reference": component.reference })));
    }
    if remaining.is_some_and(|r| r < MIN_CHILD_MS) {
        let msg = format!(
            "the parent formula has {} ms left, too little to run {}",
            remaining.unwrap_or(0),
            component.reference
        );
        finish(
            &app.db,
            &id,
            "timed_out",
            Some(&msg),
            None,
            started,
            app.env.now_ms(),
        )
        .await?;
        return Err(failure("timeout", msg));
    }
    if component.ctype == ComponentType::Formula && callback.is_none() {
        let msg = "formulas need the router's own URL for their host to call back: set the `router_url` variable (cyfr up sets it when it uses remote hosts)".to_string();
        finish(
            &app.db,
            &id,
            "failed",
            Some(&msg),
            None,
            started,
            app.env.now_ms(),
        )
        .await?;
        return Err(Error::new(Code::CapabilityDenied, msg).with_data(json!({ "execution_id": id, "reason": "no_router_url", "reference": component.reference })));
    }
    // A catalyst reaches the network: without an explicit allowlist it does not start.
    if component.ctype == ComponentType::Catalyst && policy.allowed_domains.is_empty() {
        let msg = format!(
            "POLICY_REQUIRED: {} is a catalyst and has no host policy with allowed_domains; set one with `cyfr policy set {} allowed_domains '[\"api.example.com\"]'`",
            component.reference, component.reference
        );
        finish(
            &app.db,
            &id,
            "failed",
            Some(&msg),
            None,
            started,
            app.env.now_ms(),
        )
        .await?;
        return Err(Error::new(Code::CapabilityDenied, msg).with_data(json!({ "execution_id": id, "reason": "POLICY_REQUIRED", "reference": component.reference })));
    }
    // Per user per component; outbound calls have their own budget on the host.
    if let Err(e) = crate::ratelimit::take(
        &app.db,
        &format!("exec:{}:{}", who.budget_id(), component.reference),
        policy.rate_limit,
        started,
    )
    .await
    {
        finish(
            &app.db,
            &id,
            "failed",
            Some(&e.message),
            None,
            started,
            app.env.now_ms(),
        )
        .await?;
        return Err(e);
    }
    // Only catalysts can read secrets (`cyfr:secrets`, `{{secret:NAME}}`); nothing else
    // needs them looked up, decrypted or sent.
    let secrets = if component.ctype == ComponentType::Catalyst {
        match granted_secrets(app, who, &component.reference).await {
            Ok(s) => s,
            Err(e) => {
                finish(
                    &app.db,
                    &id,
                    "failed",
                    Some(&e.message),
                    None,
                    started,
                    app.env.now_ms(),
                )
                .await?;
                return Err(e);
            }
        }
    } else {
        Default::default()
    };

    let req = RunRequest {
        execution_id: id.clone(),
        digest: component.digest.clone(),
        component_type: component.ctype.as_str().into(),
        input,
        limits: Limits {
            timeout_ms,
            max_memory_bytes: policy.max_memory_bytes,
            max_input_bytes: policy.max_request_size,
            max_output_bytes: policy.max_response_size,
        },
        // A child runs as its formula's caller, so it counts against the same share.
        caller: who.budget_id().to_string(),
        reference: component.reference.clone(),
        egress: (component.ctype == ComponentType::Catalyst).then(|| policy.egress()),
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect(),
        // Sealed by the dispatcher for the host it picks, when that host is remote.
        sealed_secrets: None,
        callback,
        sealed_callback: None,
        input_holds_secrets: !opened.is_empty(),
        sealed_input: None,
        redact: opened.iter().map(|v| B64.encode(v.as_slice())).collect(),
        sealed_redact: None,
    };
    // Whatever comes back is scrubbed of every secret the run could read, in every form.
    let forms =
        crate::secrets::mask::Forms::new(secrets.values().chain(opened).map(|v| v.as_slice()));
    let scrub = |t: &str| forms.redact(t);
    let resp = match dispatch_run(app, &req).await.map(|mut r| {
        r.stdout = scrub(&r.stdout);
        r.stderr = scrub(&r.stderr);
        r.output = r.output.as_deref().map(scrub);
        if let Some(e) = r.error.as_mut() {
            e.message = scrub(&e.message);
        }
        // A refused URL can carry a value the guest put in it.
        for refusal in &mut r.egress_refusals {
            refusal.url = scrub(&refusal.url);
            refusal.message = scrub(&refusal.message);
        }
        r
    }) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!(
                "the host could not run {}: {}",
                component.reference,
                describe(&e)
            );
            finish(
                &app.db,
                &id,
                "failed",
                Some(&msg),
                None,
                started,
                app.env.now_ms(),
            )
            .await?;
            return Err(
                Error::new(Code::RegistryUnavailable, msg).with_data(json!({ "execution_id": id }))
            );
        }
    };
    let failed = (resp.status != "completed").then(|| {
        resp.error.clone().unwrap_or(crate::host_api::HostError {
            code: "failed".into(),
            message: "the component failed".into(),
        })
    });
    let status = match failed.as_ref().map(|e| e.code.as_str()) {
        None => "completed",
        Some("timeout") => "timed_out",
        Some("cancelled") => "cancelled",
        Some(_) => "failed",
    };
    finish(
        &app.db,
        &id,
        status,
        failed.as_ref().map(|e| e.message.as_str()),
        Some(&resp),
        started,
        app.env.now_ms(),
    )
    .await?;
    if component.ctype == ComponentType::Formula {
        // Its record has left `started`, so its token no longer works and no child starts;
        // children still running (a batch it never waited for) end with it, before it answers.
        cancel_children(app, &id).await;
    }
    if let Some(err) = failed {
        return Err(failure(&err.code, err.message));
    }
    let output = resp.output.unwrap_or_default();
    let result: Json = serde_json::from_str(&output).unwrap_or_else(|_| json!({ "raw": output }));
    Ok(json!({
        "status": "completed",
        "execution_id": id,
        "result": result,
        "duration_ms": resp.duration_ms,
        "component_type": component.ctype.as_str(),
        "component_digest": component.digest,
        "reference": component.reference,
        "policy_applied": policy.to_json(),
        "egress_refusals": resp.egress_refusals,
    }))
}

/// The values a formula's children inherit and its callback key, wrapped by the master key
/// for its record: (key id, wrapped bytes, the callback key in base64).
async fn carry<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    id: &str,
    opened: &[Zeroizing<Vec<u8>>],
) -> Result<(String, Vec<u8>, String)> {
    use crate::secrets::kms::Kms;
    let kms = app.config.kms.as_deref().ok_or_else(|| {
        Error::internal(
            "no master key is configured, so sealed values cannot be passed to a formula",
        )
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    app.env.fill_random(&mut key[..]);
    let key_b64 = B64.encode(&key[..]);
    let plain = Zeroizing::new(
        json!({ "values": opened.iter().map(|v| B64.encode(v.as_slice())).collect::<Vec<_>>(), "key": key_b64 }).to_string().into_bytes(),
    );
    let (kek, wrapped) = kms.wrap(&app.env, &plain, &carried_context(id)).await?;
    Ok((kek, wrapped, key_b64))
}

/// What a running formula carries for its callbacks: the values its children inherit and
/// the key its callback bodies are sealed with.
pub struct Carried {
    /// Opened values, redacted from every child.
    pub values: Vec<Zeroizing<Vec<u8>>>,
    /// The callback body key.
    pub key: Zeroizing<[u8; 32]>,
}

/// Unwraps what [`run_in`] kept with formula `id`'s record.
pub async fn uncarry(
    kms: &impl crate::secrets::kms::Kms,
    id: &str,
    kek: &str,
    wrapped: &[u8],
) -> Result<Carried> {
    let plain = kms.unwrap(kek, wrapped, &carried_context(id)).await?;
    let v: Json = serde_json::from_slice(&plain)
        .map_err(|_| Error::internal("a formula's carried values are unreadable"))?;
    let values = v["values"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .filter_map(|b| B64.decode(b).ok())
                .map(Zeroizing::new)
                .collect()
        })
        .unwrap_or_default();
    let key = v["key"]
        .as_str()
        .and_then(crate::host_api::callback_key)
        .ok_or_else(|| Error::internal("a formula's callback key is unreadable"))?;
    Ok(Carried { values, key })
}

fn carried_context(id: &str) -> String {
    format!("cyfr-carried|{id}")
}

/// When a run refused `busy` (its caller's share of the host's slots is taken) may be retried.
const BUSY_RETRY_MS: u64 = 1000;

/// Less time than this left in a parent, and a child is not started.
const MIN_CHILD_MS: u64 = 50;

/// Where a formula's host calls back: the configured `router_url`, or the in-process router
/// when runs stay in this process.
fn callback_url(config: &crate::config::Config) -> Option<String> {
    config.router_url.clone().or_else(|| {
        config
            .hosts
            .is_empty()
            .then(|| crate::host_api::ROUTER_INTERNAL_URL.to_string())
    })
}

/// Cancels the runs under `parent_id` that are still going, and theirs (depth-bounded). Each
/// is recorded as cancelled at once, in the statement that finds it (so its own token dies
/// with it), and stopped on its host; its own handler records how it really ended, logs
/// included, when the host answers.
async fn cancel_children<D: Db, X: Dispatch, E: Env>(app: &App<D, X, E>, parent_id: &str) {
    let mut level = vec![parent_id.to_string()];
    for _ in 0..=MAX_DEPTH {
        let mut next = Vec::new();
        for id in &level {
            let now = app.env.now_ms() as i64;
            let Ok(rows) = app
                .db
                .query(
                    "UPDATE executions SET status = 'cancelled', error = 'its parent formula ended', finished_at = ?1, duration_ms = ?1 - started_at \
                     WHERE parent_execution_id = ?2 AND status = 'started' RETURNING id",
                    &[Value::Integer(now), id.clone().into()],
                )
                .await
            else {
                continue;
            };
            next.extend(rows.iter().map(|r| r.text("id")));
        }
        for child in &next {
            let _ = app.dispatch.cancel(child).await;
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
}

/// The secrets granted to a component, as this caller gets them (their own key first
/// where the grant allows).
async fn granted_secrets<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    who: &Identity,
    reference: &str,
) -> Result<std::collections::BTreeMap<String, zeroize::Zeroizing<Vec<u8>>>> {
    let mut out = std::collections::BTreeMap::new();
    let names = crate::secrets::store::granted_names(&app.db, reference).await?;
    if names.is_empty() {
        return Ok(out);
    }
    let kms = app.config.kms.as_deref().ok_or_else(|| {
        Error::internal("no master key is configured, so granted secrets cannot be read")
    })?;
    for name in names {
        if let Some(v) = crate::secrets::store::resolve_for_run(
            &app.db,
            kms,
            reference,
            &name,
            who.id(),
            app.env.now_ms(),
        )
        .await?
        {
            out.insert(name, v);
        }
    }
    Ok(out)
}

/// Sends the run; when the host lacks the artifact, uploads it from the registry once and retries.
async fn dispatch_run<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    req: &RunRequest,
) -> std::result::Result<RunResponse, DispatchError> {
    match app.dispatch.run(req).await {
        Err(DispatchError::ArtifactMissing) => {
            let bytes = registry::artifact(&app.db, &req.digest)
                .await
                .map_err(|e| DispatchError::Unreachable(e.message))?;
            app.dispatch.put_artifact(&req.digest, &bytes).await?;
            app.dispatch.run_again(req).await
        }
        other => other,
    }
}

/// A human description of a dispatch failure.
pub fn describe(e: &DispatchError) -> String {
    match e {
        DispatchError::ArtifactMissing => "the host does not have the artifact".into(),
        DispatchError::Refused { code, message } => format!("{code}: {message}"),
        DispatchError::Unreachable(m) => format!("host unreachable: {m}"),
    }
}

/// Ends a run's record in one statement: status, error, and what the host sent back (its
/// logs and refused requests) when the run reached a host.
async fn finish(
    db: &impl Db,
    id: &str,
    status: &str,
    error: Option<&str>,
    ran: Option<&RunResponse>,
    started: u64,
    now: u64,
) -> Result<()> {
    let refusals = ran
        .filter(|r| !r.egress_refusals.is_empty())
        .map(|r| serde_json::to_string(&r.egress_refusals).unwrap_or_default());
    db.query(
        "UPDATE executions SET status = ?, error = ?, stdout = ?, stderr = ?, refusals = ?, finished_at = ?, duration_ms = ?, carried = NULL, carried_kek = NULL WHERE id = ?",
        &[
            status.into(),
            error.map(String::from).into(),
            ran.map_or("", |r| r.stdout.as_str()).into(),
            ran.map_or("", |r| r.stderr.as_str()).into(),
            refusals.into(),
            Value::Integer(now as i64),
            Value::Integer(now.saturating_sub(started) as i64),
            id.into(),
        ],
    )
    .await?;
    Ok(())
}

/// `execution.list`: the caller's own runs, newest first (an admin sees all).
pub async fn list(db: &impl Db, who: &Identity, args: &Json) -> Result<Json> {
    let limit = args
        .get("limit")
        .and_then(Json::as_u64)
        .unwrap_or(50)
        .clamp(1, 500) as i64;
    let caller: Value = if who.is_admin() {
        Value::Null
    } else {
        who.id().into()
    };
    let rows = db
        .query(
            "SELECT id, reference, component_type, digest, status, error, started_at, duration_ms, parent_execution_id FROM executions \
             WHERE (?1 IS NULL OR caller = ?1) ORDER BY started_at DESC, id DESC LIMIT ?2",
            &[caller, Value::Integer(limit)],
        )
        .await?;
    let list: Vec<Json> = rows
        .iter()
        .map(|r| {
            json!({
                "execution_id": r.text("id"),
                "reference": r.text("reference"),
                "component_type": r.text("component_type"),
                "component_digest": r.text("digest"),
                "status": r.text("status"),
                "error": r.opt_text("error"),
                "started_at": rfc3339(r.int("started_at") as u64),
                "duration_ms": r.opt_int("duration_ms"),
                "parent_execution_id": r.opt_text("parent_execution_id"),
            })
        })
        .collect();
    Ok(json!({ "executions": list, "count": list.len() }))
}

/// `execution.logs`: a run's captured stdout and stderr (already redacted), for its caller
/// or an admin; anyone else's run looks missing.
pub async fn logs(db: &impl Db, who: &Identity, args: &Json) -> Result<Json> {
    let id = crate::tools::str_arg(args, "execution_id")?;
    let rows = db.query("SELECT id, caller, status, error, stdout, stderr, refusals FROM executions WHERE id = ?", &[id.into()]).await?;
    let row = rows
        .first()
        .filter(|r| who.is_admin() || r.opt_text("caller").as_deref() == Some(who.id()))
        .ok_or_else(|| Error::invalid_params(format!("no execution `{id}` of yours")))?;
    Ok(json!({
        "execution_id": row.text("id"),
        "status": row.text("status"),
        "error": row.opt_text("error"),
        "stdout": row.text("stdout"),
        "stderr": row.text("stderr"),
        "egress_refusals": row.opt_text("refusals").and_then(|r| serde_json::from_str::<Json>(&r).ok()).unwrap_or(json!([])),
    }))
}

/// `execution.cancel`: stops a run under way (the caller's own, or any for an admin). The
/// running instance is really stopped on its host; its record ends as `cancelled`.
pub async fn cancel<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    who: &Identity,
    args: &Json,
) -> Result<Json> {
    let id = crate::tools::str_arg(args, "execution_id")?;
    let rows = app
        .db
        .query(
            "SELECT caller, status FROM executions WHERE id = ?",
            &[id.into()],
        )
        .await?;
    let row = rows
        .first()
        .filter(|r| who.is_admin() || r.opt_text("caller").as_deref() == Some(who.id()))
        .ok_or_else(|| Error::invalid_params(format!("no execution `{id}` of yours")))?;
    let status = row.text("status");
    if status != "started" {
        return Ok(json!({ "execution_id": id, "cancelled": false, "status": status }));
    }
    // A formula's token first (it is still `started`, and no child may start from now on),
    // then the formula itself (a child cancelled before it would hand it an error it could
    // still answer with), then its children, so none is left running when this returns.
    app.db
        .query(
            "UPDATE executions SET callback_hash = NULL WHERE id = ?",
            &[id.into()],
        )
        .await?;
    let stopped = app
        .dispatch
        .cancel(id)
        .await
        .map_err(|e| Error::new(Code::RegistryUnavailable, describe(&e)));
    cancel_children(app, id).await;
    let stopped = stopped?;
    Ok(
        json!({ "execution_id": id, "cancelled": stopped, "status": if stopped { "cancelled" } else { "started" } }),
    )
}
