//! The dispatch policy against a recording transport: no network, no runtime.

use super::*;
use crate::host_api::{Callback, HostClaims, Limits};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

const TOKEN_KEY: &str = "0123456789abcdef0123456789abcdef";
const NOW_MS: u64 = 1_700_000_000_000;

/// A fixed clock; "random" bytes all equal to `start` (it picks the round robin's start).
struct FixedEnv {
    start: u8,
}

impl Env for FixedEnv {
    fn now_ms(&self) -> u64 {
        NOW_MS
    }
    fn fill_random(&self, buf: &mut [u8]) {
        buf.fill(self.start);
    }
}

/// Scripted answers, per host URL prefix.
type Script = Vec<(String, VecDeque<Result<Answer, SendError>>)>;

/// Records every request; answers from a per-host script (by URL prefix), then 200 with a
/// completed run.
#[derive(Default)]
struct Recorder {
    sent: RefCell<Vec<OutboundRequest>>,
    script: RefCell<Script>,
}

impl Recorder {
    fn answer(&self, host: &str, a: Result<Answer, SendError>) {
        let mut script = self.script.borrow_mut();
        match script.iter_mut().find(|(h, _)| h == host) {
            Some((_, q)) => q.push_back(a),
            None => script.push((host.to_string(), VecDeque::from([a]))),
        }
    }
    fn urls(&self) -> Vec<String> {
        self.sent.borrow().iter().map(|r| r.url.clone()).collect()
    }
}

impl Transport for Recorder {
    async fn send(&self, req: OutboundRequest) -> Result<Answer, SendError> {
        let scripted = self
            .script
            .borrow_mut()
            .iter_mut()
            .find(|(h, _)| req.url.starts_with(h.as_str()))
            .and_then(|(_, q)| q.pop_front());
        self.sent.borrow_mut().push(req);
        scripted.unwrap_or_else(|| Ok(completed()))
    }
    /// The body in 7-byte pieces: lines arrive cut anywhere.
    async fn send_streamed(
        &self,
        req: OutboundRequest,
        chunks: &impl crate::dispatch::Chunks,
    ) -> Result<Answer, SendError> {
        let mut answer = self.send(req).await?;
        if answer.status == 200 {
            for piece in std::mem::take(&mut answer.body).chunks(7) {
                chunks.chunk(piece).await;
            }
        }
        Ok(answer)
    }
}

/// What a streamed run reported.
#[derive(Default)]
struct Heard(RefCell<Vec<String>>);

impl crate::dispatch::RunEvents for Heard {
    async fn line(&self, line: &str) {
        self.0.borrow_mut().push(line.to_string());
    }
    async fn tick(&self) {
        self.0.borrow_mut().push("<tick>".into());
    }
}

fn completed() -> Answer {
    json_answer(
        200,
        serde_json::json!({ "status": "completed", "output": "{}", "duration_ms": 1 }),
    )
}

fn json_answer(status: u16, v: serde_json::Value) -> Answer {
    Answer {
        status,
        body: v.to_string().into_bytes(),
    }
}

fn secret_key(i: u8) -> crypto_box::SecretKey {
    crypto_box::SecretKey::from([i + 1; 32])
}

fn target(i: u8) -> HostTarget {
    HostTarget {
        url: format!("http://h{i}:4100"),
        public_key: *secret_key(i).public_key().as_bytes(),
    }
}

fn remote_pool(n: u8, start: u8) -> HostPool<Recorder, FixedEnv> {
    let config = Config {
        hosts: (0..n).map(target).collect(),
        host_token_key: Some(TOKEN_KEY.into()),
        ..Config::default()
    };
    HostPool::new(&config, Recorder::default(), FixedEnv { start })
}

fn local_pool() -> HostPool<Recorder, FixedEnv> {
    HostPool::new(
        &Config::default(),
        Recorder::default(),
        FixedEnv { start: 7 },
    )
}

fn run_request(id: &str) -> RunRequest {
    RunRequest {
        execution_id: id.into(),
        digest: "sha256:abc".into(),
        component_type: "catalyst".into(),
        input: r#"{"q":"opened-value"}"#.into(),
        limits: Limits {
            timeout_ms: 1000,
            max_memory_bytes: 1 << 20,
            max_input_bytes: 1 << 10,
            max_output_bytes: 1 << 10,
        },
        caller: "key_a".into(),
        reference: "catalyst:a.b:1.0.0".into(),
        secrets: BTreeMap::from([("API_KEY".to_string(), "s3cr3t".to_string())]),
        egress: None,
        sealed_secrets: None,
        callback: Some(Callback {
            url: "http://router".into(),
            token: "cb-token".into(),
            key: None,
        }),
        sealed_callback: None,
        input_holds_secrets: true,
        sealed_input: None,
        redact: vec!["b3BlbmVk".into()],
        sealed_redact: None,
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // The pool's futures never wait on anything: one poll finishes them.
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the pool waited on something"),
    }
}

/// Decodes a request's bearer token the way `cyfr host` checks it.
fn host_claims(req: &OutboundRequest, host: &HostTarget) -> HostClaims {
    let token = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("a bearer token");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&[host.audience()]);
    validation.set_required_spec_claims(&["exp", "aud", "iat", "jti"]);
    // The fixed clock is in the past; expiry is checked below against it.
    validation.validate_exp = false;
    jsonwebtoken::decode::<HostClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(TOKEN_KEY.as_bytes()),
        &validation,
    )
    .expect("the host accepts the token")
    .claims
}

fn open<T: serde::de::DeserializeOwned>(host: u8, sealed: &Option<String>) -> T {
    use base64::Engine;
    let ct = base64::engine::general_purpose::STANDARD
        .decode(sealed.as_deref().expect("sealed"))
        .unwrap();
    serde_json::from_slice(&secret_key(host).unseal(&ct).expect("sealed to this host")).unwrap()
}

#[test]
fn runs_go_round_robin_from_the_random_start() {
    let pool = remote_pool(3, 4); // 4 % 3 = 1: the first run goes to host 2
    for i in 0..4 {
        block_on(pool.run(&run_request(&format!("exec_{i}")))).unwrap();
    }
    assert_eq!(
        pool.transport().urls(),
        [2, 0, 1, 2].map(|h| format!("http://h{h}:4100/v1/executions"))
    );
}

#[test]
fn a_host_that_was_not_reached_passes_the_run_to_the_next() {
    let pool = remote_pool(3, 0);
    let t = pool.transport();
    t.answer("http://h1", Err(SendError::NotSent("refused".into())));
    block_on(pool.run(&run_request("exec_1"))).unwrap();
    assert_eq!(
        t.urls(),
        [
            "http://h1:4100/v1/executions",
            "http://h2:4100/v1/executions"
        ]
    );
    // The host that took it is the one the next run starts after.
    block_on(pool.run(&run_request("exec_2"))).unwrap();
    assert_eq!(t.urls()[2], "http://h0:4100/v1/executions");
    // Each host got a token for itself, with the same id.
    let sent = t.sent.borrow();
    assert_eq!(host_claims(&sent[0], &target(1)).jti, "exec_1");
    assert_eq!(host_claims(&sent[1], &target(2)).jti, "exec_1");
}

#[test]
fn a_send_that_may_have_been_delivered_is_never_retried() {
    let pool = remote_pool(3, 0);
    let t = pool.transport();
    t.answer(
        "http://h1",
        Err(SendError::Failed("connection reset".into())),
    );
    match block_on(pool.run(&run_request("exec_1"))) {
        Err(DispatchError::Unreachable(m)) => assert_eq!(m, "connection reset"),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.urls(), ["http://h1:4100/v1/executions"]);
    // A host's error answer is an answer, not a failed send: not retried either.
    let pool2 = remote_pool(2, 1);
    pool2.transport().answer(
        "http://h0",
        Ok(json_answer(
            500,
            serde_json::json!({ "code": "busy", "message": "full" }),
        )),
    );
    match block_on(pool2.run(&run_request("exec_2"))) {
        Err(DispatchError::Refused { code, message }) => {
            assert_eq!((code.as_str(), message.as_str()), ("busy", "full"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool2.transport().urls().len(), 1);
}

#[test]
fn no_host_reachable_is_unreachable() {
    let pool = remote_pool(2, 0);
    for h in ["http://h0", "http://h1"] {
        pool.transport()
            .answer(h, Err(SendError::NotSent("dns".into())));
    }
    match block_on(pool.run(&run_request("exec_1"))) {
        Err(DispatchError::Unreachable(m)) => {
            assert_eq!(m, "none of the 2 host(s) could be reached")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.transport().urls().len(), 2);
}

#[test]
fn a_missing_artifact_is_uploaded_to_and_run_again_on_the_same_host() {
    let pool = remote_pool(3, 0);
    let t = pool.transport();
    t.answer(
        "http://h1",
        Ok(json_answer(
            404,
            serde_json::json!({ "code": "artifact_missing", "message": "no" }),
        )),
    );
    let req = run_request("exec_1");
    assert!(matches!(
        block_on(pool.run(&req)),
        Err(DispatchError::ArtifactMissing)
    ));
    block_on(pool.put_artifact("sha256:abc", b"wasm")).unwrap();
    block_on(pool.run_again(&req)).unwrap();
    assert_eq!(
        t.urls(),
        [
            "http://h1:4100/v1/executions",
            "http://h1:4100/v1/artifacts/sha256:abc",
            "http://h1:4100/v1/executions",
        ]
    );
    let sent = t.sent.borrow();
    let upload = &sent[1];
    assert_eq!(upload.method, Method::Put);
    assert_eq!(upload.body, b"wasm");
    assert_eq!(upload.header("content-type"), Some("application/wasm"));
    let claims = host_claims(upload, &target(1));
    assert_eq!(
        claims.req,
        HostClaims::binding("PUT", "/v1/artifacts/sha256:abc", b"wasm")
    );
    // The retry is a new request: a fresh token id, the first one having been used.
    assert_eq!(host_claims(&sent[2], &target(1)).jti, "exec_1-retry");
}

#[test]
fn a_lost_upload_or_retry_is_not_sent_elsewhere() {
    let pool = remote_pool(2, 0); // no run yet: the last host is the random start, h0
    let t = pool.transport();
    t.answer("http://h0", Err(SendError::NotSent("gone".into())));
    t.answer("http://h0", Err(SendError::NotSent("gone".into())));
    match block_on(pool.put_artifact("sha256:abc", b"w")) {
        Err(DispatchError::Unreachable(m)) => {
            assert_eq!(m, "the host went away during the upload")
        }
        other => panic!("{other:?}"),
    }
    match block_on(pool.run_again(&run_request("exec_1"))) {
        Err(DispatchError::Unreachable(m)) => assert_eq!(m, "the host went away"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.urls(),
        [
            "http://h0:4100/v1/artifacts/sha256:abc",
            "http://h0:4100/v1/executions"
        ]
    );
}

#[test]
fn a_remote_host_gets_secret_fields_only_sealed_and_a_token_bound_to_the_request() {
    let pool = remote_pool(1, 0);
    let req = run_request("exec_1");
    block_on(pool.run(&req)).unwrap();
    let sent = pool.transport().sent.borrow();
    let out = &sent[0];
    assert_eq!(out.method, Method::Post);
    assert_eq!(out.header("content-type"), Some("application/json"));
    let wire: RunRequest = serde_json::from_slice(&out.body).unwrap();
    assert!(wire.secrets.is_empty());
    assert!(wire.input.is_empty());
    assert!(wire.redact.is_empty());
    assert!(wire.callback.is_none());
    let text = String::from_utf8_lossy(&out.body);
    for clear in ["s3cr3t", "opened-value", "b3BlbmVk", "cb-token"] {
        assert!(!text.contains(clear), "{clear} in clear: {text}");
    }
    let secrets: BTreeMap<String, String> = open(0, &wire.sealed_secrets);
    assert_eq!(secrets, req.secrets);
    assert_eq!(open::<String>(0, &wire.sealed_input), req.input);
    assert_eq!(open::<Vec<String>>(0, &wire.sealed_redact), req.redact);
    assert_eq!(
        open::<Callback>(0, &wire.sealed_callback),
        req.callback.clone().unwrap()
    );
    let claims = host_claims(out, &target(0));
    assert_eq!(
        claims.req,
        HostClaims::binding("POST", "/v1/executions", &out.body)
    );
    assert_eq!(claims.jti, "exec_1");
    assert_eq!(claims.iat, NOW_MS / 1000);
    assert_eq!(claims.exp, claims.iat + TOKEN_TTL_S);
}

#[test]
fn an_input_without_opened_values_stays_in_clear_for_a_remote_host() {
    let pool = remote_pool(1, 0);
    let mut req = run_request("exec_1");
    req.input_holds_secrets = false;
    block_on(pool.run(&req)).unwrap();
    let wire: RunRequest = serde_json::from_slice(&pool.transport().sent.borrow()[0].body).unwrap();
    assert_eq!(wire.input, req.input);
    assert!(wire.sealed_input.is_none());
}

#[test]
fn the_in_process_host_gets_the_request_as_is_and_no_token() {
    let pool = local_pool();
    let req = run_request("exec_1");
    block_on(pool.run(&req)).unwrap();
    let sent = pool.transport().sent.borrow();
    assert_eq!(sent[0].url, "http://host.cyfr.internal/v1/executions");
    assert_eq!(sent[0].header("authorization"), None);
    assert_eq!(sent[0].body, serde_json::to_vec(&req).unwrap());
}

#[test]
fn cancel_asks_every_host() {
    let pool = remote_pool(3, 0);
    let t = pool.transport();
    t.answer(
        "http://h1",
        Ok(json_answer(200, serde_json::json!({ "cancelled": true }))),
    );
    t.answer("http://h2", Err(SendError::Failed("reset".into())));
    assert!(block_on(pool.cancel("exec_9")).unwrap());
    assert_eq!(
        t.urls(),
        [0, 1, 2].map(|h| format!("http://h{h}:4100/v1/executions/exec_9/cancel"))
    );
    let pool = remote_pool(2, 0);
    assert!(!block_on(pool.cancel("exec_9")).unwrap(), "nobody had it");
}

#[test]
fn load_directory_fails_over_like_a_run() {
    let pool = remote_pool(2, 1);
    let t = pool.transport();
    t.answer("http://h0", Err(SendError::NotSent("refused".into())));
    t.answer(
        "http://h1",
        Ok(json_answer(
            200,
            serde_json::json!({ "manifest": "{}", "wasm_base64": "AA==" }),
        )),
    );
    let loaded = block_on(pool.load_directory("components/x")).unwrap();
    assert_eq!(loaded.wasm_base64, "AA==");
    assert_eq!(
        t.urls(),
        [
            "http://h0:4100/v1/components/load",
            "http://h1:4100/v1/components/load"
        ]
    );
    let sent = t.sent.borrow();
    assert_eq!(sent[0].body, sent[1].body);
    assert_eq!(sent[1].body, br#"{"directory":"components/x"}"#);
}

#[test]
fn host_errors_map_to_dispatch_errors() {
    let body = |code: &str| format!(r#"{{"code":"{code}","message":"m"}}"#).into_bytes();
    assert!(matches!(
        host_error(404, &body("artifact_missing")),
        DispatchError::ArtifactMissing
    ));
    match host_error(500, &body("timeout")) {
        DispatchError::Refused { code, message } => {
            assert_eq!((code, message), ("timeout".into(), "m".into()))
        }
        other => panic!("{other:?}"),
    }
    match host_error(502, b"<html>") {
        DispatchError::Unreachable(m) => assert_eq!(m, "host answered HTTP 502"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tokens_are_what_jsonwebtoken_signs() {
    let claims = claims(&target(0), "jti-1", "POST", "/v1/executions", b"{}", 42);
    let ours = sign(&claims, TOKEN_KEY.as_bytes());
    let theirs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_KEY.as_bytes()),
    )
    .unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn a_streamed_run_reports_its_lines_and_ticks_in_order_then_answers() {
    let pool = local_pool();
    let body = [
        r#"{"log":"step 1"}"#,
        r#"{"tick":1}"#,
        r#"{"log":"cyfr:progress {\"progress\":2}"}"#,
        r#"{"done":{"status":"completed","output":"{\"n\":2}","duration_ms":5}}"#,
    ]
    .join("\n");
    pool.transport().answer(
        "http://host.cyfr.internal",
        Ok(Answer {
            status: 200,
            body: body.into_bytes(),
        }),
    );
    let heard = Heard::default();
    let resp = block_on(pool.run_streamed(&run_request("e1"), &heard)).unwrap();
    assert_eq!(resp.output.as_deref(), Some(r#"{"n":2}"#));
    assert_eq!(
        *heard.0.borrow(),
        ["step 1", "<tick>", r#"cyfr:progress {"progress":2}"#]
    );
    let sent = &pool.transport().sent.borrow()[0];
    assert_eq!(sent.header("accept"), Some(host_api::RUN_STREAM));
}

#[test]
fn a_streamed_run_from_a_host_that_does_not_stream_is_its_one_answer() {
    let pool = local_pool();
    let heard = Heard::default();
    let resp = block_on(pool.run_streamed(&run_request("e2"), &heard)).unwrap();
    assert_eq!(resp.output.as_deref(), Some("{}"));
    assert!(heard.0.borrow().is_empty());
}

#[test]
fn a_stream_that_ends_without_its_answer_is_unreachable_and_an_error_line_is_the_hosts() {
    let pool = local_pool();
    let h = "http://host.cyfr.internal";
    let cut = Answer {
        status: 200,
        body: b"{\"log\":\"a\"}\n{\"tick\":1}\n".to_vec(),
    };
    pool.transport().answer(h, Ok(cut));
    let heard = Heard::default();
    let r = block_on(pool.run_streamed(&run_request("e3"), &heard));
    assert!(matches!(r, Err(DispatchError::Unreachable(_))), "{r:?}");
    let err = Answer {
        status: 200,
        body: br#"{"error":{"code":"busy","message":"full"}}"#.to_vec(),
    };
    pool.transport().answer(h, Ok(err));
    let r = block_on(pool.run_streamed(&run_request("e4"), &heard));
    assert!(
        matches!(&r, Err(DispatchError::Refused { code, .. }) if *code == host_api::HostErrorKind::Busy),
        "{r:?}"
    );
}
