//! JSON-RPC framing: whole HTTP requests through the router (`App::handle`), over a stub
//! database that knows every bearer key (so tool calls get past authentication and into
//! their argument parsing) and a dispatcher that cannot be reached.

use crate::gen;
use cyfr_core::app::App;
use cyfr_core::config::Config;
use cyfr_core::db::{Db, DbError, Rows, Value as SqlValue};
use cyfr_core::dispatch::{Dispatch, DispatchError};
use cyfr_core::env::Env;
use cyfr_core::host_api::{LoadedComponent, RunRequest, RunResponse, INVOKE_PATH, TOOLS_PATH};
use cyfr_core::http::HttpRequest;
use serde_json::{json, Value};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

/// The bearer key the requests carry: it must never come back in an answer.
const KEY: &str = "cyfr_sk_FuzzKeyNeverEchoed0123456789abcdef";

/// Answers the few reads that let a request go deep; every other statement succeeds empty.
struct StubDb;

impl Db for StubDb {
    async fn query(&self, sql: &str, _params: &[SqlValue]) -> Result<Rows, DbError> {
        let rows = |cols: &[&str], vals: Vec<SqlValue>| Rows {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows: vec![vals],
        };
        if sql.starts_with("SELECT") && sql.contains("schema_migrations") {
            return Ok(rows(
                &["v"],
                vec![SqlValue::Integer(cyfr_core::migrate::latest_version())],
            ));
        }
        if sql.starts_with("SELECT") && sql.contains("FROM api_keys") {
            return Ok(rows(
                &[
                    "id",
                    "name",
                    "key_type",
                    "key_hash",
                    "prefix",
                    "scopes",
                    "rate_limit",
                    "ip_allowlist",
                    "created_at",
                ],
                vec![
                    "key_fuzz".into(),
                    "fuzz".into(),
                    "admin".into(),
                    "".into(),
                    "cyfr_sk_".into(),
                    "*".into(),
                    SqlValue::Null,
                    "".into(),
                    SqlValue::Integer(0),
                ],
            ));
        }
        if sql.starts_with("SELECT") && sql.contains("callback_hash") {
            return Ok(rows(
                &[
                    "id",
                    "reference",
                    "caller",
                    "status",
                    "depth",
                    "deadline_at",
                    "policy",
                ],
                vec![
                    "exec_fuzz".into(),
                    "formula:local.fuzz:1.0.0".into(),
                    "key_fuzz".into(),
                    "started".into(),
                    SqlValue::Integer(0),
                    SqlValue::Integer(i64::MAX / 2),
                    r#"{"allowed_tools":["*"]}"#.into(),
                ],
            ));
        }
        Ok(Rows::default())
    }
}

/// A host that is never there.
struct NoHost;

impl Dispatch for NoHost {
    async fn run(&self, _req: &RunRequest) -> Result<RunResponse, DispatchError> {
        Err(DispatchError::Unreachable("fuzz: no host".into()))
    }
    async fn put_artifact(&self, _digest: &str, _bytes: &[u8]) -> Result<(), DispatchError> {
        Err(DispatchError::Unreachable("fuzz: no host".into()))
    }
    async fn cancel(&self, _execution_id: &str) -> Result<bool, DispatchError> {
        Ok(false)
    }
    async fn load_directory(&self, _directory: &str) -> Result<LoadedComponent, DispatchError> {
        Err(DispatchError::Unreachable("fuzz: no host".into()))
    }
}

struct FixedEnv;

impl Env for FixedEnv {
    fn now_ms(&self) -> u64 {
        1_764_000_000_000
    }
    fn fill_random(&self, buf: &mut [u8]) {
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
}

fn app() -> &'static App<StubDb, NoHost, FixedEnv> {
    static APP: OnceLock<App<StubDb, NoHost, FixedEnv>> = OnceLock::new();
    APP.get_or_init(|| App::new(StubDb, NoHost, FixedEnv, Config::default()))
}

/// Polls a future that never waits (the stubs answer at once) to its end.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..10_000 {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the router waited on a stub that never waits");
}

const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "notifications/initialized",
    "resources/list",
    "resources/read",
    "x/unknown",
];
const TOOLS: &[&str] = &[
    "execution",
    "component",
    "key",
    "secret",
    "policy",
    "encryption",
    "session",
    "audit",
];
const ARGS: &[&str] = &[
    "action",
    "reference",
    "input",
    "type",
    "name",
    "value",
    "scopes",
    "key_type",
    "rate_limit",
    "ip_allowlist",
    "execution_id",
    "id",
    "limit",
    "status",
    "field",
    "policy",
    "directory",
    "query",
    "grant",
    "secret",
    "component",
    "uri",
    "protocolVersion",
    "run",
    "list",
    "get",
    "set",
    "create",
    "revoke",
    "rotate",
    "cancel",
    "register",
    "search",
    "inspect",
    "update_field",
    "get_effective",
    "delete",
    "wait",
    "timeout",
];

/// Sends one request to the router; its answer must be well formed and hold no key.
pub fn target(data: &[u8]) {
    let mut req = HttpRequest {
        method: "POST".into(),
        path: "/mcp".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Vec::new(),
        peer: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        scheme: Some("http".into()),
    };
    if let Some(mut u) = gen::structured(data) {
        if build(&mut u, &mut req).is_err() {
            return;
        }
    } else {
        // Raw bodies: as an app posts them, with a key, and as a formula's callback.
        req.body = data.to_vec();
        match data.len() % 4 {
            0 => {}
            1 => req.path = INVOKE_PATH.into(),
            2 => req.path = TOOLS_PATH.into(),
            _ => req.headers.push(("mcp-session-id".into(), "s".into())),
        }
        req.headers
            .push(("authorization".into(), format!("Bearer {KEY}")));
    }
    let echoed = req.body.windows(KEY.len()).any(|w| w == KEY.as_bytes());
    let resp = block_on(app().handle(req));
    assert!((100..600).contains(&resp.status), "status {}", resp.status);
    if !resp.body.is_empty() {
        serde_json::from_slice::<Value>(&resp.body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&resp.body)
            )
        });
    }
    if !echoed {
        assert!(
            !resp.body.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the answer holds the bearer key"
        );
        assert!(
            !resp.headers.iter().any(|(_, v)| v.contains(KEY)),
            "a header holds the bearer key"
        );
    }
}

/// A structured request: transport fields, then a JSON-RPC message (mostly a tool call).
fn build(u: &mut arbitrary::Unstructured<'_>, req: &mut HttpRequest) -> arbitrary::Result<()> {
    if u.ratio(1u8, 8)? {
        req.method = gen::string(u, &["GET", "DELETE", "OPTIONS", "PUT", "post"])?;
    }
    if u.ratio(1u8, 6)? {
        req.path = gen::string(
            u,
            &["/mcp/", "/health", INVOKE_PATH, TOOLS_PATH, "/", "/mcp?x=1"],
        )?;
    }
    for _ in 0..u.int_in_range(0u8..=3)? {
        let name = gen::string(
            u,
            &[
                "mcp-session-id",
                "mcp-protocol-version",
                "origin",
                "authorization",
                "x-forwarded-proto",
                "x-forwarded-for",
            ],
        )?;
        let value = gen::string(
            u,
            &[
                "2025-06-18",
                "http://localhost:3000",
                "https://evil.example",
                "Bearer",
                "Basic x",
                "https",
                "1.2.3.4",
            ],
        )?;
        req.headers.push((name, value));
    }
    if u.ratio(7u8, 8)? {
        req.headers
            .push(("authorization".into(), format!("Bearer {KEY}")));
    }
    if u.ratio(1u8, 8)? {
        req.peer = Some(IpAddr::from(u.arbitrary::<[u8; 4]>()?));
    }
    let method = gen::string(u, METHODS)?;
    let mut msg = json!({ "jsonrpc": "2.0", "id": u.int_in_range(0u32..=1000)?, "method": method });
    if method == "tools/call" || u.ratio(1u8, 4)? {
        let mut args = gen::object(u, ARGS, 1)?;
        args.insert("action".into(), Value::String(gen::string(u, ARGS)?));
        msg["params"] = json!({ "name": gen::string(u, TOOLS)?, "arguments": args });
    } else if u.ratio(1u8, 2)? {
        msg["params"] = gen::value(u, ARGS, 1)?;
    }
    if u.ratio(1u8, 10)? {
        let Value::Object(m) = &mut msg else {
            unreachable!()
        };
        let k = gen::string(u, &["jsonrpc", "id", "method", "params"])?;
        m.insert(k, gen::value(u, ARGS, 2)?);
    }
    req.body = serde_json::to_vec(&msg).expect("a Value serialises");
    Ok(())
}

/// Valid JSON-RPC messages.
pub fn corpus() -> Vec<Vec<u8>> {
    super::lines(&[
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"execution","arguments":{"action":"run","reference":"reagent:cyfr.json-transform:0.1.0","input":{"data":[1,2,3]}}}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"key","arguments":{"action":"create","name":"k1","key_type":"secret","scopes":["execution.run"],"rate_limit":"10/1m","ip_allowlist":["127.0.0.1/32"]}}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"secret","arguments":{"action":"set","name":"API_KEY","value":"sk-123"}}}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"policy","arguments":{"action":"update_field","reference":"catalyst:cyfr.http:0.1.0","field":"allowed_domains","value":["api.example.com"]}}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"component","arguments":{"action":"search","query":"json"}}}"#,
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"execution","arguments":{"action":"list","limit":5}}}"#,
        r#"{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"uri":"cyfr://secrets/API_KEY"}}"#,
        r#"{"reference":"reagent:cyfr.json-transform:0.1.0","input":{"data":[1]},"type":"reagent"}"#,
        r#"{"tool":"execution","action":"list","args":{"limit":1}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    ])
}
