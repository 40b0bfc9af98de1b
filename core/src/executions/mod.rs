//! `execution.run` and the execution records (`records`: listing, reading and cancelling them).

mod records;
pub use records::{cancel, cancel_request, list, logs, show};

use crate::auth::Identity;
use crate::context::Context;
use crate::db::{Db, Stmt, Value};
use crate::dispatch::{Dispatch, DispatchError};
use crate::env::{execution_id, random_token, rfc3339, Env};
use crate::errors::{Code, Error, Reason, Result};
use crate::host_api::{HostErrorKind, Limits, RecordStatus, RunRequest, RunResponse, RunStatus};
use crate::reference::{ComponentType, Reference, Target};
use crate::{policy, registry};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use schemars::JsonSchema;
use serde::Deserialize;
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
    /// The request id its `tools/call` audit row carries (a top-level run only): the run's
    /// end batch writes that row's duration, so it costs no round trip of its own.
    pub request_id: Option<&'a str>,
    /// `<session hash>:<JSON-RPC id>` of a session's `tools/call`: what its
    /// `notifications/cancelled` names the run by ([`cancel_request`]).
    pub rpc_id: Option<&'a str>,
}

/// The arguments of `execution.run` (and of a formula's `invoke`).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
pub struct RunArgs {
    /// Component reference: "type:namespace.name:version", the c:/r:/f: short form, an untyped "namespace.name" or bare "name" (namespace local), `@` before the version, {"registry": "…"} or {"local": "components/{type}s/{ns}/{name}/{version}/{type}.wasm"} (CYFR: `component_ref`)
    #[serde(
        default,
        alias = "component_ref",
        deserialize_with = "crate::args::raw"
    )]
    #[schemars(schema_with = "reference_schema")]
    pub reference: Option<Json>,
    /// JSON input handed to the component
    #[serde(default, deserialize_with = "crate::args::raw")]
    pub input: Option<Json>,
    /// Component type, when the reference omits it
    #[serde(rename = "type", default, deserialize_with = "crate::args::loose_str")]
    #[schemars(schema_with = "crate::reference::type_schema")]
    pub type_hint: Option<String>,
}

fn reference_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "anyOf": [{ "type": "string" }, { "type": "object", "properties": { "registry": { "type": "string" } }, "required": ["registry"] }, { "type": "object", "properties": { "local": { "type": "string" } }, "required": ["local"] }] })
}

/// Runs a component for `who` and records the run.
pub async fn run<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: &RunArgs,
    origin: Origin<'_>,
) -> Result<Json> {
    run_in(cx, who, args, None, origin).await
}

/// Runs a component for `who`, as a child of a formula when `lineage` says so, and records
/// the run (with its parent). Every run, nested or not, takes this one path.
pub async fn run_in<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: &RunArgs,
    lineage: Option<&Lineage>,
    origin: Origin<'_>,
) -> Result<Json> {
    let type_hint = crate::reference::type_hint(args.type_hint.as_deref())?;
    let reference = args.reference.as_ref().ok_or_else(|| {
        Error::invalid_params(
            "execution.run needs `reference`, e.g. \"reagent:cyfr.json-transform:0.1.0\"",
        )
    })?;
    let target = Target::from_json(reference, type_hint)?;
    // The component and its policy in one round trip (none, when the request's caller
    // check already read them ahead); an untyped reference is looked up first.
    cx.db.read_ahead(read_ahead_target(&target));
    let component = registry::find(&cx.db, &target).await?;
    let policy = policy::effective(&cx.db, &component).await?;
    let mut v = run_found(
        cx,
        who,
        component,
        policy,
        args.input.as_ref(),
        lineage,
        origin,
    )
    .await?;
    // CYFR echoes the reference object the caller sent; cyfr's canonical string stays in
    // `component_ref` (and in `reference` when a string was sent).
    if reference.is_object() {
        v["reference"] = reference.clone();
    }
    Ok(v)
}

/// Runs a component already found, under its effective policy: the rest of [`run_in`]'s
/// one path (a component tool finds its component by its tool name, `tools::component_tools`).
pub(crate) async fn run_found<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    component: registry::Component,
    policy: policy::Policy,
    input: Option<&Json>,
    lineage: Option<&Lineage>,
    origin: Origin<'_>,
) -> Result<Json> {
    let input = serde_json::to_string(input.unwrap_or(&json!({}))).unwrap_or_default();
    let mut run = Run::start(cx, component, policy, lineage, origin).await?;
    run.admit(cx, who, lineage, input.len() as u64).await?;
    let secrets = run.secrets(cx, who).await?;
    let req = run.request(who, input, &secrets);
    let resp = run.dispatch(cx, &req, &secrets).await?;
    let mut v = run.answer(cx, resp).await?;
    v["user_id"] = json!(who.id());
    Ok(v)
}

/// A record's status as CYFR words it: `running` for cyfr's `started` (cyfr's `timed_out`
/// stays: CYFR has no word for it).
pub fn status_word(stored: &str) -> &str {
    if stored == RecordStatus::Started.as_str() {
        "running"
    } else {
        stored
    }
}

/// The stored statuses an `execution.list` `status` filter selects (`None`: all).
fn status_filter(s: Option<&str>) -> Result<Option<&'static [&'static str]>> {
    Ok(match s {
        None | Some("all") => None,
        Some("running" | "started") => Some(&["started"]),
        Some("completed") => Some(&["completed"]),
        Some("failed") => Some(&["failed", "timed_out"]),
        Some("timed_out") => Some(&["timed_out"]),
        Some("cancelled") => Some(&["cancelled"]),
        Some(other) => {
            return Err(Error::invalid_params(format!(
                "`status` must be running, completed, failed, cancelled, timed_out or all (got `{other}`)"
            )))
        }
    })
}

/// The reads of a run of `t` known before it starts: its component and its policy — for an
/// untyped reference, its lookup and the policy it would have as each of the three types
/// (so that it, too, costs no round trip of its own).
pub fn read_ahead_target(t: &Target) -> Vec<Stmt> {
    match t {
        Target::Typed(r) => read_ahead(r).to_vec(),
        Target::Untyped(u) => {
            let mut reads = vec![registry::untyped_stmt(u)];
            for ctype in [
                ComponentType::Reagent,
                ComponentType::Catalyst,
                ComponentType::Formula,
            ] {
                let unversioned = Reference {
                    ctype,
                    namespace: u.namespace.clone(),
                    name: u.name.clone(),
                    version: None,
                };
                reads.push(policy::effective_stmt(&unversioned.canonical()));
            }
            reads
        }
    }
}

/// The reads of a run of `r` known before it starts: its component and its policy.
pub fn read_ahead(r: &Reference) -> [Stmt; 2] {
    let unversioned = Reference {
        version: None,
        ..r.clone()
    };
    [
        registry::resolve_stmt(r),
        policy::effective_stmt(&unversioned.canonical()),
    ]
}

/// A run recorded as `started`, on its way to a host.
struct Run<'a> {
    id: String,
    component: registry::Component,
    policy: policy::Policy,
    origin: Origin<'a>,
    started: u64,
    depth: i64,
    /// The parent's remaining time, for a child.
    remaining: Option<u64>,
    timeout_ms: u64,
    callback: Option<crate::host_api::Callback>,
    /// What a formula carries for its children, until its record holds it.
    carried: Option<(String, Vec<u8>)>,
    /// A catalyst's grants and their secrets, as read with its admission.
    granted: crate::db::Rows,
    /// The `(owner, name)` of each secret the run was given: marked used when it ends.
    used: Vec<(String, String)>,
    /// What its end writes besides the record (the audit rows of the secrets it read).
    after: Vec<Stmt>,
}

impl<'a> Run<'a> {
    /// The run's id, time limit and callback; recorded by [`Run::admit`].
    async fn start<D: Db, X: Dispatch, E: Env>(
        cx: &Context<D, X, E>,
        component: registry::Component,
        policy: policy::Policy,
        lineage: Option<&Lineage>,
        origin: Origin<'a>,
    ) -> Result<Run<'a>> {
        let id = execution_id(&cx.env);
        let started = cx.env.now_ms();
        let depth = lineage.map(|l| l.depth).unwrap_or(0);
        // A child never outlives its parent: its timeout is cut to the parent's remaining time.
        let remaining = lineage.map(|l| l.deadline_ms.saturating_sub(started));
        let timeout_ms = remaining.map_or(policy.timeout_ms, |r| r.min(policy.timeout_ms));
        // A formula's host calls back with this token; the row keeps only its hash, and the
        // token stops working when the row leaves `started`.
        let mut callback = if component.ctype == ComponentType::Formula {
            callback_url(&cx.config).map(|url| crate::host_api::Callback {
                url,
                token: random_token(&cx.env, 32),
                key: None,
            })
        } else {
            None
        };
        // A formula holding opened values passes them to its children: its callbacks are
        // sealed under a key of their own, and the values (for redacting the children) and
        // that key are kept with its record, wrapped by the master key, for the callbacks.
        let carried = match callback.as_mut() {
            Some(cb) if !origin.opened.is_empty() => {
                let (kek, wrapped, key) = carry(cx, &id, origin.opened).await?;
                cb.key = Some(key);
                Some((kek, wrapped))
            }
            _ => None,
        };
        Ok(Run {
            id,
            component,
            policy,
            origin,
            started,
            depth,
            remaining,
            timeout_ms,
            callback,
            carried,
            granted: Default::default(),
            used: Vec::new(),
            after: Vec::new(),
        })
    }

    /// The `INSERT` of the `started` record, with what a formula carries for its children: a
    /// child only while its parent still runs with a live callback token, so one that passed
    /// the token check just before the parent ended does not start after it. A row back
    /// means recorded.
    fn insert_stmt(&mut self, who: &Identity, lineage: Option<&Lineage>) -> Stmt {
        let carried = self.carried.take();
        let (id, component, policy, callback) =
            (&self.id, &self.component, &self.policy, &self.callback);
        let deadline = self.started + self.timeout_ms;
        Stmt::new(
            "INSERT INTO executions (id, reference, component_type, digest, status, caller, policy, started_at, parent_execution_id, depth, deadline_at, callback_hash, transport_secure, carried_kek, carried, rpc_id) \
             SELECT ?1, ?2, ?3, ?4, 'started', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15 \
             WHERE ?8 IS NULL OR EXISTS (SELECT 1 FROM executions WHERE id = ?8 AND status = 'started' AND callback_hash IS NOT NULL) \
             RETURNING id",
            vec![
                id.clone().into(),
                component.reference.clone().into(),
                component.ctype.as_str().into(),
                component.digest.clone().into(),
                who.id().into(),
                policy.to_json().to_string().into(),
                Value::Integer(self.started as i64),
                lineage.map(|l| l.parent_id.clone()).into(),
                Value::Integer(self.depth),
                Value::Integer(deadline as i64),
                callback.as_ref().map(|c| crate::crypto::sha256_hex(c.token.as_bytes())).into(),
                Value::Integer(self.origin.secure as i64),
                carried.as_ref().map(|c| c.0.clone()).into(),
                carried.map_or(Value::Null, |c| Value::Blob(c.1)),
                self.origin.rpc_id.map(str::to_string).into(),
            ],
        )
    }

    /// The refusal when the `INSERT` found no running parent.
    fn parent_ended(&self) -> Error {
        let reference = &self.component.reference;
        Error::new(
            Code::ExecutionFailed,
            format!("the formula that asked for {reference} has ended"),
        )
        .with_data(json!({ "reference": reference }))
        .with_reason(Reason::ParentEnded)
    }

    /// A failed run as the caller sees it: the host's reason decides the code.
    fn failure(&self, kind: &HostErrorKind, message: String) -> Error {
        let mut data = json!({ "execution_id": self.id, "reason": kind.as_str(), "reference": self.component.reference });
        if *kind == HostErrorKind::Busy {
            data["retry_after_ms"] = json!(BUSY_RETRY_MS);
        }
        Error::new(kind.code(), message).with_data(data)
    }

    /// A refusal of the router's own, with its `reason`.
    fn refusal(&self, code: Code, reason: Reason, message: String) -> Error {
        Error::new(code, message)
            .with_data(json!({ "execution_id": self.id, "reference": self.component.reference }))
            .with_reason(reason)
    }

    /// Ends the record without a host's answer, and passes `e` on.
    async fn refuse<D: Db, X: Dispatch, E: Env>(
        &self,
        cx: &Context<D, X, E>,
        status: RecordStatus,
        e: Error,
    ) -> Result<Error> {
        let now = cx.env.now_ms();
        let also = self.end_stmts(now);
        finish(
            &cx.db,
            &self.id,
            status,
            Some(&e.message),
            None,
            (self.started, now),
            also,
        )
        .await?;
        Ok(e)
    }

    /// Everything the router checks before the run leaves it, and the `started` record: a
    /// run that passes is recorded and takes its request from the per-caller, per-component
    /// rate limit in ONE round trip (with, now and then, a retention purge); a refused one is
    /// recorded as refused.
    async fn admit<D: Db, X: Dispatch, E: Env>(
        &mut self,
        cx: &Context<D, X, E>,
        who: &Identity,
        lineage: Option<&Lineage>,
        input_len: u64,
    ) -> Result<()> {
        if let Some((status, e)) = self.check(input_len) {
            let s = self.insert_stmt(who, lineage);
            if cx.db.query(&s.sql, &s.params).await?.rows.is_empty() {
                return Err(self.parent_ended());
            }
            return Err(self.refuse(cx, status, e).await?);
        }
        // Per user per component; outbound calls have their own budget on the host.
        let bucket = crate::ratelimit::run_bucket(who.budget_id(), &self.component.reference);
        let rate = self.policy.rate_limit;
        let mut stmts = vec![
            self.insert_stmt(who, lineage),
            crate::ratelimit::take_stmt(&bucket, rate, self.started),
        ];
        let catalyst = self.component.ctype == ComponentType::Catalyst;
        if catalyst {
            stmts.push(crate::secrets::store::for_run_stmt(
                &self.component.reference,
                who.id(),
            ));
        }
        stmts.extend(crate::retention::purge_now(
            &cx.env,
            cx.config.execution_retention_ms,
        ));
        let mut rows = cx.db.batch(&stmts, true).await?;
        if rows[0].rows.is_empty() {
            return Err(self.parent_ended());
        }
        if catalyst {
            self.granted = std::mem::take(&mut rows[2]);
        }
        if rows[1].rows.is_empty() {
            let e = crate::ratelimit::refusal(&cx.db, &bucket, rate, self.started).await;
            return Err(self.refuse(cx, RecordStatus::Failed, e).await?);
        }
        Ok(())
    }

    /// The refusals decided from the component, its policy and the run's place alone.
    fn check(&self, input_len: u64) -> Option<(RecordStatus, Error)> {
        let reference = &self.component.reference;
        let ctype = self.component.ctype;
        // Checked here as well as on the host, so an oversize input never leaves the router.
        if input_len > self.policy.max_request_size {
            let msg = format!(
                "input is {input_len} bytes; the policy allows {} (max_request_size)",
                self.policy.max_request_size
            );
            Some((
                RecordStatus::Failed,
                self.failure(&HostErrorKind::InputTooLarge, msg),
            ))
        } else if self.depth > MAX_DEPTH {
            let msg = format!(
                "{reference} would run {} levels deep; formulas nest at most {MAX_DEPTH} levels",
                self.depth
            );
            Some((
                RecordStatus::Failed,
                self.refusal(Code::CapabilityDenied, Reason::DepthExceeded, msg),
            ))
        } else if self.remaining.is_some_and(|r| r < MIN_CHILD_MS) {
            let msg = format!(
                "the parent formula has {} ms left, too little to run {reference}",
                self.remaining.unwrap_or(0)
            );
            Some((
                HostErrorKind::Timeout.record_status(),
                self.failure(&HostErrorKind::Timeout, msg),
            ))
        } else if ctype == ComponentType::Formula && self.callback.is_none() {
            let msg = "formulas need the router's own URL for their host to call back: set the `router_url` variable (cyfr up sets it when it uses remote hosts)".to_string();
            Some((
                RecordStatus::Failed,
                self.refusal(Code::CapabilityDenied, Reason::NoRouterUrl, msg),
            ))
        } else if ctype == ComponentType::Catalyst && self.policy.allowed_domains.is_empty() {
            // A catalyst reaches the network: without an explicit allowlist it does not start.
            let msg = format!("POLICY_REQUIRED: {reference} is a catalyst and has no host policy with allowed_domains; set one with `cyfr policy set {reference} allowed_domains '[\"api.example.com\"]'`");
            Some((
                RecordStatus::Failed,
                self.refusal(Code::CapabilityDenied, Reason::PolicyRequired, msg),
            ))
        } else {
            None
        }
    }

    /// The secrets the run may read: only catalysts can (`cyfr:secrets`, `{{secret:NAME}}`);
    /// nothing else needs them looked up, decrypted or sent.
    async fn secrets<D: Db, X: Dispatch, E: Env>(
        &mut self,
        cx: &Context<D, X, E>,
        who: &Identity,
    ) -> Result<Secrets> {
        if self.granted.rows.is_empty() {
            return Ok(Secrets::new());
        }
        let opened = match cx.config.kms.as_deref() {
            Some(kms) => crate::secrets::store::for_run(kms, &self.granted, cx.env.now_ms()).await,
            None => Err(Error::internal(
                "no master key is configured, so granted secrets cannot be read",
            )),
        };
        let (given, used) = match opened {
            Ok(v) => v,
            Err(e) => return Err(self.refuse(cx, RecordStatus::Failed, e).await?),
        };
        // Each secret the component will read, by name, in the audit log; written with the
        // run's end (with the last-use marks), so it costs no round trip of its own.
        let now = cx.env.now_ms();
        self.after = given
            .keys()
            .map(|name| {
                crate::audit::insert_stmt(&crate::audit::Entry {
                    at: now,
                    request_id: self.id.clone(),
                    event: "secret_read".into(),
                    actor: Some(who.actor()),
                    actor_id: Some(who.id().to_string()),
                    tool: Some("execution".into()),
                    action: Some("run".into()),
                    reference: Some(self.component.reference.clone()),
                    detail: Some(json!({ "name": name, "execution_id": self.id })),
                    ..Default::default()
                })
            })
            .collect();
        self.used = used;
        Ok(given)
    }

    /// What the run's end writes besides its record: the given secrets' last-use marks and
    /// their audit rows.
    fn end_stmts(&self, now: u64) -> Vec<Stmt> {
        let mut out: Vec<Stmt> = crate::secrets::store::mark_used_stmt(&self.used, now)
            .into_iter()
            .collect();
        out.extend(self.after.iter().cloned());
        if let Some(rid) = self.origin.request_id {
            out.push(crate::audit::duration_stmt(rid, now));
        }
        out
    }

    /// What the host is asked to run.
    fn request(&mut self, who: &Identity, input: String, secrets: &Secrets) -> RunRequest {
        let c = &self.component;
        let catalyst = c.ctype == ComponentType::Catalyst;
        let opened = self.origin.opened;
        RunRequest {
            execution_id: self.id.clone(),
            digest: c.digest.clone(),
            component_type: c.ctype.as_str().into(),
            input,
            limits: Limits {
                timeout_ms: self.timeout_ms,
                max_memory_bytes: self.policy.max_memory_bytes,
                max_input_bytes: self.policy.max_request_size,
                max_output_bytes: self.policy.max_response_size,
            },
            // A child runs as its formula's caller, so it counts against the same share.
            caller: who.budget_id().to_string(),
            reference: c.reference.clone(),
            egress: catalyst.then(|| self.policy.egress()),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            // Sealed by the dispatcher for the host it picks, when that host is remote.
            sealed_secrets: None,
            callback: self.callback.take(),
            sealed_callback: None,
            input_holds_secrets: !opened.is_empty(),
            sealed_input: None,
            redact: opened.iter().map(|v| B64.encode(v.as_slice())).collect(),
            sealed_redact: None,
        }
    }

    /// Sends the run and scrubs whatever comes back of every secret the run could read, in
    /// every form. A host that could not run it ends the record.
    async fn dispatch<D: Db, X: Dispatch, E: Env>(
        &self,
        cx: &Context<D, X, E>,
        req: &RunRequest,
        secrets: &Secrets,
    ) -> Result<RunResponse> {
        let forms = crate::secrets::mask::Forms::new(
            secrets
                .values()
                .chain(self.origin.opened)
                .map(|v| v.as_slice()),
        );
        let scrub = |t: &str| forms.redact(t);
        match dispatch_run(cx, req).await {
            Ok(mut r) => {
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
                Ok(r)
            }
            Err(e) => {
                let msg = format!(
                    "the host could not run {}: {}",
                    self.component.reference,
                    describe(&e)
                );
                let e = Error::new(Code::RegistryUnavailable, msg)
                    .with_data(json!({ "execution_id": self.id }));
                Err(self.refuse(cx, RecordStatus::Failed, e).await?)
            }
        }
    }

    /// Records how the run ended and answers with its output or its failure.
    async fn answer<D: Db, X: Dispatch, E: Env>(
        self,
        cx: &Context<D, X, E>,
        resp: RunResponse,
    ) -> Result<Json> {
        let failed = (resp.status != RunStatus::Completed).then(|| {
            resp.error.clone().unwrap_or(crate::host_api::HostError {
                code: HostErrorKind::Failed,
                message: "the component failed".into(),
            })
        });
        let status = failed
            .as_ref()
            .map_or(RecordStatus::Completed, |e| e.code.record_status());
        let now = cx.env.now_ms();
        let also = self.end_stmts(now);
        finish(
            &cx.db,
            &self.id,
            status,
            failed.as_ref().map(|e| e.message.as_str()),
            Some(&resp),
            (self.started, now),
            also,
        )
        .await?;
        let c = &self.component;
        if c.ctype == ComponentType::Formula {
            // Its record has left `started`, so its token no longer works and no child
            // starts; children still running (a batch it never waited for) end with it,
            // before it answers.
            cancel_children(cx, &self.id).await;
        }
        if let Some(err) = failed {
            return Err(self.failure(&err.code, err.message));
        }
        let output = resp.output.unwrap_or_default();
        let result: Json =
            serde_json::from_str(&output).unwrap_or_else(|_| json!({ "raw": output }));
        Ok(json!({
            "status": "completed",
            "execution_id": self.id,
            "result": result,
            "duration_ms": resp.duration_ms,
            "component_type": c.ctype.as_str(),
            "component_digest": c.digest,
            "reference": c.reference,
            "component_ref": c.reference,
            "policy_applied": self.policy.to_json(),
            "egress_refusals": resp.egress_refusals,
        }))
    }
}

/// The secrets granted to a run, by name.
type Secrets = std::collections::BTreeMap<String, Zeroizing<Vec<u8>>>;

/// The values a formula's children inherit and its callback key, wrapped by the master key
/// for its record: (key id, wrapped bytes, the callback key in base64).
async fn carry<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    id: &str,
    opened: &[Zeroizing<Vec<u8>>],
) -> Result<(String, Vec<u8>, String)> {
    use crate::kms::Kms;
    let kms = cx.config.kms.as_deref().ok_or_else(|| {
        Error::internal(
            "no master key is configured, so sealed values cannot be passed to a formula",
        )
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    cx.env.fill_random(&mut key[..]);
    let key_b64 = B64.encode(&key[..]);
    let plain = Zeroizing::new(
        json!({ "values": opened.iter().map(|v| B64.encode(v.as_slice())).collect::<Vec<_>>(), "key": key_b64 }).to_string().into_bytes(),
    );
    let (kek, wrapped) = kms.wrap(&cx.env, &plain, &carried_context(id)).await?;
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
    kms: &impl crate::kms::Kms,
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
async fn cancel_children<D: Db, X: Dispatch, E: Env>(cx: &Context<D, X, E>, parent_id: &str) {
    let mut level = vec![parent_id.to_string()];
    for _ in 0..=MAX_DEPTH {
        let mut next = Vec::new();
        for id in &level {
            let now = cx.env.now_ms() as i64;
            let Ok(rows) = cx
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
            let _ = cx.dispatch.cancel(child).await;
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
}

/// Sends the run; when the host lacks the artifact, uploads it from the registry once and retries.
async fn dispatch_run<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &RunRequest,
) -> std::result::Result<RunResponse, DispatchError> {
    match cx.dispatch.run(req).await {
        Err(DispatchError::ArtifactMissing) => {
            let bytes = registry::artifact(&cx.db, &req.digest)
                .await
                .map_err(|e| DispatchError::Unreachable(e.message))?;
            cx.dispatch.put_artifact(&req.digest, &bytes).await?;
            cx.dispatch.run_again(req).await
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

/// Ends a run's record in one round trip: status, error, and what the host sent back (its
/// logs and refused requests) when the run reached a host; with `also` (the secrets it was
/// given marked used, their audit rows) in the same batch.
async fn finish(
    db: &impl Db,
    id: &str,
    status: RecordStatus,
    error: Option<&str>,
    ran: Option<&RunResponse>,
    (started, now): (u64, u64),
    also: Vec<Stmt>,
) -> Result<()> {
    let refusals = ran
        .filter(|r| !r.egress_refusals.is_empty())
        .map(|r| serde_json::to_string(&r.egress_refusals).unwrap_or_default());
    let end = Stmt::new(
        "UPDATE executions SET status = ?, error = ?, stdout = ?, stderr = ?, refusals = ?, finished_at = ?, duration_ms = ?, carried = NULL, carried_kek = NULL WHERE id = ?",
        vec![
            status.as_str().into(),
            error.map(String::from).into(),
            ran.map_or("", |r| r.stdout.as_str()).into(),
            ran.map_or("", |r| r.stderr.as_str()).into(),
            refusals.into(),
            Value::Integer(now as i64),
            Value::Integer(now.saturating_sub(started) as i64),
            id.into(),
        ],
    );
    if also.is_empty() {
        db.query(&end.sql, &end.params).await?;
    } else {
        let mut all = vec![end];
        all.extend(also);
        db.batch(&all, false).await?;
    }
    Ok(())
}
