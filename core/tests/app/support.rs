//! What every test here runs against: the real `App::handle` over a real in-memory libsql,
//! a recording fake `Dispatch` (the host), and a fixed `Env`. Only the public surface of
//! `cyfr_core` (`app`, `http`, `db`, `dispatch`, `env`, `config`, `host_api`, `migrate`,
//! `scopes`, `errors`) is used.

use cyfr_core::app::App;
use cyfr_core::config::Config;
use cyfr_core::db::{Db, DbError, Rows, Stmt, Value};
use cyfr_core::dispatch::{Answer, Dispatch, DispatchError, OutboundRequest, RunEvents, SendError};
use cyfr_core::env::Env;
use cyfr_core::host_api::{LoadedComponent, RunRequest, RunResponse, RunStatus};
use cyfr_core::http::{HttpRequest, HttpResponse};
use cyfr_core::stream::{Closed, Sink, Streaming};
use cyfr_libsql::core_db::CoreDb;
use serde_json::{json, Value as Json};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};

/// The app under test.
pub type TestApp = App<Counting<CoreDb>, FakeHost, FixedEnv>;

/// A `Db` that counts round trips (each `query` or `batch` call) and statements, and keeps
/// the SQL of each round trip: what pins the round-trip budget of every action.
pub struct Counting<D> {
    inner: D,
    trips: RefCell<Vec<Vec<String>>>,
    /// A concurrent writer, played once: SQL run just before the first round trip holding
    /// a statement that starts with the given prefix.
    meddle: RefCell<Option<(&'static str, &'static str)>>,
}

impl<D> Counting<D> {
    /// Forgets what was counted so far.
    pub fn reset(&self) {
        self.trips.borrow_mut().clear();
    }
    /// Runs `sql` once, just before the first round trip with a statement starting with
    /// `prefix`: what another request writing in between would have done.
    pub fn meddle(&self, prefix: &'static str, sql: &'static str) {
        self.meddle.replace(Some((prefix, sql)));
    }
    /// The SQL of each round trip since the last reset.
    pub fn trips(&self) -> Vec<Vec<String>> {
        self.trips.borrow().clone()
    }
}

impl<D: Db> Db for Counting<D> {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let due = self
            .meddle
            .borrow()
            .is_some_and(|(p, _)| sql.starts_with(p));
        if let Some((_, other)) = due.then(|| self.meddle.take()).flatten() {
            self.inner.query(other, &[]).await?;
        }
        self.trips.borrow_mut().push(vec![sql.to_string()]);
        self.inner.query(sql, params).await
    }
    async fn batch(&self, stmts: &[Stmt], atomic: bool) -> Result<Vec<Rows>, DbError> {
        let due = self
            .meddle
            .borrow()
            .is_some_and(|(p, _)| stmts.iter().any(|s| s.sql.starts_with(p)));
        if let Some((_, sql)) = due.then(|| self.meddle.take()).flatten() {
            self.inner.query(sql, &[]).await?;
        }
        self.trips
            .borrow_mut()
            .push(stmts.iter().map(|s| s.sql.to_string()).collect());
        self.inner.batch(stmts, atomic).await
    }
}

/// An app whose runs stream ([`Harness::streaming`]).
pub type StreamApp = App<Counting<CoreDb>, Streaming<FakeHost, RecSink>, FixedEnv>;

/// A streaming body that records what is written; closed (every write refused) once it
/// holds `open_for` writes, when set.
#[derive(Default)]
pub struct RecSink {
    /// Each write, in order.
    pub writes: RefCell<Vec<String>>,
    /// How many writes succeed before the client "closes" the stream.
    pub open_for: Cell<Option<usize>>,
    /// Each wait asked for (`Sink::sleep`), in milliseconds.
    pub naps: RefCell<Vec<u64>>,
    /// Played during the first wait: another request's work (a registration).
    #[allow(clippy::type_complexity)]
    pub on_nap: RefCell<Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>>,
}

impl RecSink {
    /// The JSON of each `data:` event written (comments left out).
    pub fn events(&self) -> Vec<Json> {
        self.writes
            .borrow()
            .iter()
            .filter_map(|w| w.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }
}

impl Sink for RecSink {
    async fn send(&self, bytes: &[u8]) -> Result<(), Closed> {
        if self
            .open_for
            .get()
            .is_some_and(|n| self.writes.borrow().len() >= n)
        {
            return Err(Closed);
        }
        self.writes
            .borrow_mut()
            .push(String::from_utf8(bytes.to_vec()).unwrap());
        Ok(())
    }

    async fn sleep(&self, ms: u64) {
        self.naps.borrow_mut().push(ms);
        // What another request does while this stream waits (once).
        let due = self.on_nap.borrow_mut().take();
        if let Some(f) = due {
            f.await;
        }
    }
}

/// A clock that moves only when told to, and deterministic "randomness" (splitmix64).
pub struct FixedEnv {
    now: Cell<u64>,
    seed: Cell<u64>,
}

/// 2025-01-01T00:00:00Z.
pub const START_MS: u64 = 1_735_689_600_000;

impl FixedEnv {
    fn new() -> FixedEnv {
        FixedEnv {
            now: Cell::new(START_MS),
            seed: Cell::new(0x5eed),
        }
    }
    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }
}

impl Env for FixedEnv {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn fill_random(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut z = self.seed.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.seed.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// One thing a formula's guest does through its callback (the in-process router).
#[derive(Clone, Debug)]
pub enum Step {
    /// `POST /v1/formula/invoke` with this body.
    Invoke(Json),
    /// `POST /v1/formula/tools` with this body.
    Tool(Json),
    /// `POST path` with this bearer token (`None`: no Authorization) instead of the run's.
    Forged {
        /// Callback path.
        path: &'static str,
        /// The token sent, if any.
        token: Option<String>,
    },
    /// The clock moves on (the formula takes this long).
    Wait(u64),
    /// `POST /v1/formula/invoke` with the body this builds from the replies so far, as a
    /// guest that reads an answer before its next call does (`None`: the guest gives up).
    InvokeFrom(fn(&[Json]) -> Option<Json>),
}

impl Step {
    /// `$EXEC_ID` in a body becomes the running formula's execution id.
    fn with_id(self, id: &str) -> Step {
        let sub = |b: Json| serde_json::from_str(&b.to_string().replace("$EXEC_ID", id)).unwrap();
        match self {
            Step::Invoke(b) => Step::Invoke(sub(b)),
            Step::Tool(b) => Step::Tool(sub(b)),
            other => other,
        }
    }
}

/// The host, faked: records what it is asked and answers from a script; a formula run plays
/// [`FakeHost::guest`] against the router, as a formula's host would, and answers the
/// callbacks' replies as its output (a JSON array).
#[derive(Default)]
pub struct FakeHost {
    app: RefCell<Weak<TestApp>>,
    /// Every run asked for, in order (including retries after an upload).
    pub runs: RefCell<Vec<RunRequest>>,
    /// Answers for the next runs (formulas playing the guest excepted); then "completed".
    pub answers: RefCell<VecDeque<Result<RunResponse, DispatchError>>>,
    /// What a formula does when it runs.
    pub guest: RefCell<Vec<Step>>,
    /// Artifact uploads: (digest, bytes).
    pub uploads: RefCell<Vec<(String, Vec<u8>)>>,
    /// How many runs were sent again after an upload.
    pub reruns: Cell<usize>,
    /// Cancels asked for.
    pub cancels: RefCell<Vec<String>>,
    /// What `cancel` answers.
    pub cancel_finds: Cell<bool>,
    /// Every request sent to an identity provider (`Dispatch::fetch`), in order.
    pub fetches: RefCell<Vec<OutboundRequest>>,
    /// The fake provider's next token answers (status, body); then `authorization_pending`.
    pub tokens: RefCell<VecDeque<(u16, Json)>>,
    /// The fake provider's discovery document, when a test wants another.
    pub discovery: RefCell<Option<Json>>,
    /// How long (on the fixed clock) each run takes.
    pub run_ms: Cell<u64>,
    /// The stderr lines a streamed run reports (each followed by a tick) before it answers.
    pub lines: RefCell<Vec<String>>,
    /// A quick run: its lines come without ticks.
    pub quick: Cell<bool>,
}

/// The fake OIDC issuer [`FakeHost::fetch`] plays.
pub const ISSUER: &str = "http://127.0.0.1:9";
/// The device code the fake provider hands out: it must never reach a client.
pub const PROVIDER_DEVICE_CODE: &str = "prov-device-code-0123456789";
/// The access token the fake provider grants.
pub const PROVIDER_TOKEN: &str = "prov-access-token-0123456789";

impl FakeHost {
    /// The fake provider's discovery document.
    pub fn default_discovery() -> Json {
        json!({
            "issuer": ISSUER,
            "device_authorization_endpoint": format!("{ISSUER}/device"),
            "token_endpoint": format!("{ISSUER}/token"),
            "userinfo_endpoint": format!("{ISSUER}/userinfo"),
        })
    }
}

/// A completed run answering `output`.
pub fn completed(output: Json) -> RunResponse {
    RunResponse {
        status: RunStatus::Completed,
        output: Some(output.to_string()),
        error: None,
        stdout: String::new(),
        stderr: String::new(),
        duration_ms: 3,
        egress_refusals: Vec::new(),
    }
}

/// A run the host ended with `code`.
pub fn failed(code: &str, message: &str) -> RunResponse {
    RunResponse {
        status: RunStatus::Failed,
        output: None,
        error: Some(cyfr_core::host_api::HostError {
            code: code.into(),
            message: message.into(),
        }),
        ..completed(json!(null))
    }
}

impl FakeHost {
    /// Queues the answer to a coming run.
    pub fn answer(&self, a: Result<RunResponse, DispatchError>) {
        self.answers.borrow_mut().push_back(a);
    }

    async fn play(&self, req: &RunRequest) -> Option<RunResponse> {
        let callback = req.callback.clone()?;
        let steps = self.guest.borrow().clone();
        if steps.is_empty() {
            return None;
        }
        let app = self.app.borrow().upgrade().expect("the app is alive");
        let mut replies = Vec::new();
        for step in steps {
            let (path, token, body) = match step.with_id(&req.execution_id) {
                Step::InvokeFrom(build) => match build(&replies) {
                    Some(b) => (
                        "/v1/formula/invoke",
                        Some(callback.token.clone()),
                        b.to_string(),
                    ),
                    None => break,
                },
                Step::Invoke(b) => (
                    "/v1/formula/invoke",
                    Some(callback.token.clone()),
                    b.to_string(),
                ),
                Step::Tool(b) => (
                    "/v1/formula/tools",
                    Some(callback.token.clone()),
                    b.to_string(),
                ),
                Step::Forged { path, token } => (path, token, "{}".to_string()),
                Step::Wait(ms) => {
                    app.env.advance(ms);
                    continue;
                }
            };
            let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
            if let Some(t) = token {
                headers.push(("authorization".into(), format!("Bearer {t}")));
            }
            let http = HttpRequest {
                method: "POST".into(),
                path: path.into(),
                headers,
                body: body.into_bytes(),
                peer: Some([127, 0, 0, 1].into()),
                scheme: Some("http".into()),
            };
            // The callback runs the router again, inside this run: box the recursion.
            let fut: Pin<Box<dyn Future<Output = HttpResponse> + '_>> = Box::pin(app.handle(http));
            let resp = fut.await;
            let body: Json = serde_json::from_slice(&resp.body).unwrap_or(Json::Null);
            replies.push(json!({ "status": resp.status, "body": body }));
        }
        Some(completed(Json::Array(replies)))
    }
}

impl Dispatch for FakeHost {
    async fn run(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        self.runs.borrow_mut().push(req.clone());
        if self.run_ms.get() > 0 {
            if let Some(app) = self.app.borrow().upgrade() {
                app.env.advance(self.run_ms.get());
            }
        }
        if let Some(resp) = self.play(req).await {
            return Ok(resp);
        }
        let next = self.answers.borrow_mut().pop_front();
        next.unwrap_or_else(|| Ok(completed(json!({ "ok": true }))))
    }
    /// Reports the scripted lines, then answers as `run` does, or `cancelled` when the
    /// run was cancelled meanwhile (as a real host's cancelled run ends).
    async fn run_streamed(
        &self,
        req: &RunRequest,
        events: &impl RunEvents,
    ) -> Result<RunResponse, DispatchError> {
        let lines = self.lines.take();
        for line in &lines {
            events.line(line).await;
            if !self.quick.get() {
                events.tick().await;
            }
        }
        if self.cancels.borrow().contains(&req.execution_id) {
            self.runs.borrow_mut().push(req.clone());
            return Ok(failed("cancelled", "the run was cancelled"));
        }
        self.run(req).await
    }
    async fn run_again(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        self.reruns.set(self.reruns.get() + 1);
        self.run(req).await
    }
    async fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), DispatchError> {
        self.uploads
            .borrow_mut()
            .push((digest.to_string(), bytes.to_vec()));
        Ok(())
    }
    async fn cancel(&self, execution_id: &str) -> Result<bool, DispatchError> {
        self.cancels.borrow_mut().push(execution_id.to_string());
        Ok(self.cancel_finds.get())
    }
    async fn load_directory(&self, directory: &str) -> Result<LoadedComponent, DispatchError> {
        Err(DispatchError::Refused {
            code: "not_found".into(),
            message: format!("no component directory {directory}"),
        })
    }
    /// A fake RFC 8628 + OIDC provider at [`ISSUER`], answering by path.
    async fn fetch(&self, req: OutboundRequest) -> Result<Answer, SendError> {
        self.fetches.borrow_mut().push(req.clone());
        // GitHub's fixed endpoints, played here too (GitHub answers its errors with 200).
        let github = match req.url.as_str() {
            "https://github.com/login/device/code" => Some("/device"),
            "https://github.com/login/oauth/access_token" => Some("/token"),
            "https://api.github.com/user" => Some("/github-user"),
            _ => None,
        };
        let path = github
            .or_else(|| req.url.strip_prefix(ISSUER))
            .ok_or_else(|| SendError::NotSent(format!("no such provider: {}", req.url)))?;
        let (status, body) = match path {
            "/github-user"
                if req.header("authorization") == Some(&format!("Bearer {PROVIDER_TOKEN}")) =>
            {
                (
                    200,
                    json!({ "id": 12345, "login": "octocat", "name": null, "email": "octo@example.com" }),
                )
            }
            "/.well-known/openid-configuration" => (
                200,
                self.discovery
                    .borrow()
                    .clone()
                    .unwrap_or_else(FakeHost::default_discovery),
            ),
            "/device" => (
                200,
                json!({ "device_code": PROVIDER_DEVICE_CODE, "user_code": "WDJB-MJHT", "verification_uri": format!("{ISSUER}/activate"), "expires_in": 900, "interval": 5 }),
            ),
            "/token" => self
                .tokens
                .borrow_mut()
                .pop_front()
                .unwrap_or((400, json!({ "error": "authorization_pending" }))),
            "/userinfo"
                if req.header("authorization") == Some(&format!("Bearer {PROVIDER_TOKEN}")) =>
            {
                (
                    200,
                    json!({ "sub": "alice-1", "email": "alice@example.com", "email_verified": true, "name": "Alice" }),
                )
            }
            _ => (401, json!({ "error": "invalid_token" })),
        };
        Ok(Answer {
            status,
            body: body.to_string().into_bytes(),
        })
    }
}

/// The raw admin key every harness starts with (as `cyfr init` would print one).
pub const ADMIN: &str = "cyfr_ak_testadmintestadmintestadmin00";

/// A fresh router: empty migrated database, master keys, the admin key.
pub struct Harness {
    /// The app (shared with its fake host, whose formulas call back into it).
    pub app: Rc<TestApp>,
}

impl Harness {
    /// A router with default settings.
    pub async fn new() -> Harness {
        Harness::with(|_| {}).await
    }

    /// A router whose config `tweak` adjusts.
    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::build(tweak, true).await
    }

    /// A router on a database nobody prepared: not migrated (the router migrates it on its
    /// first request, as on a database Spin created) and holding no key.
    pub async fn empty(tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::build(
            |c| {
                c.schema_version = None;
                tweak(c)
            },
            false,
        )
        .await
    }

    async fn build(tweak: impl FnOnce(&mut Config), prepared: bool) -> Harness {
        use base64::Engine;
        let master = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let mut config =
            Config::from_lookup(|n| (n == "master_keys").then(|| master.clone())).unwrap();
        // Migrated below, as `cyfr up` does before it serves: the runner vouches for it.
        config.schema_version = Some(cyfr_core::migrate::latest_version());
        tweak(&mut config);
        let db = CoreDb::open_in_memory().await.unwrap();
        if prepared {
            cyfr_core::migrate::migrate(&db).await.unwrap();
            // The first admin key, as `cyfr init` leaves it: the database holds its SHA-256.
            db.query(
            "INSERT INTO api_keys (id, name, key_type, key_hash, prefix, scopes, created_at, lineage_id, budget_id) \
             VALUES ('key_admin', 'admin', 'admin', ?, ?, '*', ?, 'key_admin', 'key_admin')",
            &[
                sha256_hex(ADMIN.as_bytes()).into(),
                ADMIN[..12].into(),
                Value::Integer(START_MS as i64),
            ],
        )
        .await
        .unwrap();
        }
        let db = Counting {
            inner: db,
            trips: RefCell::new(Vec::new()),
            meddle: RefCell::new(None),
        };
        let app = Rc::new(App::new(db, FakeHost::default(), FixedEnv::new(), config));
        app.dispatch.app.replace(Rc::downgrade(&app));
        Harness { app }
    }

    /// The app as an adapter that streams builds it for `req`: this harness's database and
    /// settings, a fresh clock, `host` behind [`Streaming`] writing to `sink`.
    pub fn streaming(&self, req: &HttpRequest, host: FakeHost, sink: RecSink) -> StreamApp {
        let db = Counting {
            inner: CoreDb(self.app.db.inner().inner.0.clone()),
            trips: RefCell::new(Vec::new()),
            meddle: RefCell::new(None),
        };
        let wanted = cyfr_core::stream::wanted(req);
        // Its own randomness (execution ids unlike every other app's), the harness's time.
        static APPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = APPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let env = FixedEnv {
            now: Cell::new(self.app.env.now.get()),
            seed: Cell::new(0x5eed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        };
        App::new(
            db,
            Streaming::new(host, sink, wanted),
            env,
            self.app.config.clone(),
        )
    }

    /// The fake host.
    pub fn host(&self) -> &FakeHost {
        &self.app.dispatch
    }

    /// The clock.
    pub fn env(&self) -> &FixedEnv {
        &self.app.env
    }

    /// A POST of `body` to `/mcp` from loopback with `key`; status and JSON body.
    pub async fn post(&self, key: Option<&str>, body: Json) -> (u16, Json) {
        let resp = self.app.handle(mcp_request(key, &body)).await;
        let json = serde_json::from_slice(&resp.body).unwrap_or(Json::Null);
        (resp.status, json)
    }

    /// A JSON-RPC `method` call; the whole response.
    pub async fn rpc(&self, key: Option<&str>, method: &str, params: Json) -> Json {
        self.post(
            key,
            json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }),
        )
        .await
        .1
    }

    /// `tools/call`; the whole JSON-RPC response.
    pub async fn call(&self, key: &str, tool: &str, args: Json) -> Json {
        self.rpc(
            Some(key),
            "tools/call",
            json!({ "name": tool, "arguments": args }),
        )
        .await
    }

    /// `initialize` with `key`; the session id.
    pub async fn initialize(&self, key: &str) -> String {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {} });
        let resp = self.app.handle(mcp_request(Some(key), &body)).await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        resp.header("mcp-session-id").unwrap().to_string()
    }

    /// `tools/call` in session `sid` (no Authorization: the session's key acts).
    pub async fn call_in(&self, sid: &str, tool: &str, args: Json) -> Json {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "arguments": args } });
        let mut req = mcp_request(None, &body);
        req.headers.push(("mcp-session-id".into(), sid.into()));
        let resp = self.app.handle(req).await;
        serde_json::from_slice(&resp.body).unwrap_or(Json::Null)
    }

    /// `tools/call` that must succeed; its structured result.
    pub async fn ok(&self, key: &str, tool: &str, args: Json) -> Json {
        let r = self.call(key, tool, args.clone()).await;
        assert!(r.get("error").is_none(), "{tool} {args} failed: {r}");
        assert_eq!(r["result"]["isError"], json!(false), "{tool} {args}: {r}");
        r["result"]["structuredContent"].clone()
    }

    /// A key made by the admin; its raw value.
    pub async fn key(&self, name: &str, scopes: &[&str], extra: Json) -> String {
        let mut args =
            json!({ "action": "create", "name": name, "type": "secret", "scope": scopes });
        if let Json::Object(e) = extra {
            args.as_object_mut().unwrap().extend(e);
        }
        self.ok(ADMIN, "key", args).await["key"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Registers a component of `ctype` named `ns_name` at `version` (fake wasm bytes);
    /// its canonical reference.
    pub async fn register(&self, ctype: &str, ns_name: &str, version: &str) -> String {
        use base64::Engine;
        let wasm = base64::engine::general_purpose::STANDARD.encode(fake_wasm(ns_name));
        let r = self
            .ok(
                ADMIN,
                "component",
                json!({ "action": "register", "manifest": manifest(ctype, ns_name, version), "wasm": wasm }),
            )
            .await;
        r["reference"].as_str().unwrap().to_string()
    }
}

/// Bytes that pass the registry's component check (magic, version, component layer).
pub fn fake_wasm(tag: &str) -> Vec<u8> {
    let mut w = b"\0asm\x0d\x00\x01\x00".to_vec();
    w.extend_from_slice(tag.as_bytes());
    w
}

/// A minimal valid manifest.
pub fn manifest(ctype: &str, ns_name: &str, version: &str) -> Json {
    json!({ "id": format!("{ctype}:{ns_name}"), "type": ctype, "version": version, "description": format!("test {ctype} {ns_name}"), "secrets": [], "wasi": { "http": false, "streaming": false, "secrets": false } })
}

/// `POST /mcp` as a client on this machine sends it.
pub fn mcp_request(key: Option<&str>, body: &Json) -> HttpRequest {
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("mcp-protocol-version".to_string(), "2025-11-25".to_string()),
    ];
    if let Some(k) = key {
        headers.push(("authorization".into(), format!("Bearer {k}")));
    }
    HttpRequest {
        method: "POST".into(),
        path: "/mcp".into(),
        headers,
        body: body.to_string().into_bytes(),
        peer: Some([127, 0, 0, 1].into()),
        scheme: Some("http".into()),
    }
}

/// The JSON-RPC error code of a response (panics when it is not an error).
pub fn code(r: &Json) -> i64 {
    r["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected a JSON-RPC error, got {r}"))
}

/// The code of a tool error answered as a result (`isError`: argument errors).
pub fn tool_error_code(r: &Json) -> i64 {
    assert_eq!(
        r["result"]["isError"],
        json!(true),
        "expected a tool error: {r}"
    );
    r["result"]["structuredContent"]["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error code in {r}"))
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
