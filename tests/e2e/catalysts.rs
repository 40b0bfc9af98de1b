//! Catalysts through the real server: registered, granted a secret, given a policy, run
//! against a stand-in API on 127.0.0.1; every escape refused and recorded; the injected key
//! nowhere in answers, logs, the database or the server log.

use crate::support::*;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "sk-ant-e2e-SECRET-KEY-9f8e7d6c5b4a3210";

/// One request the stand-in API received.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: String,
}

/// A minimal HTTP/1.1 server on 127.0.0.1 standing in for the remote API (one thread per
/// connection, `Connection: close`). Routes: `/ok`, `/echo`, `/redirect?to=URL`, `/slow?ms=N`,
/// `/v1/messages`.
pub(crate) struct Upstream {
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    pub(crate) fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let seen = seen2.clone();
                std::thread::spawn(move || serve(conn, seen, port));
            }
        });
        Upstream {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, port: u16) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let body = String::from_utf8_lossy(&body).into_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.to_string(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let (status, extra, ctype, out) = match path {
        "/ok" => (200, String::new(), "text/plain", "hello".to_string()),
        "/echo" => (
            200,
            String::new(),
            "application/json",
            json!({"method": method, "headers": headers, "body": body}).to_string(),
        ),
        "/redirect" => (
            302,
            format!(
                "Location: {}\r\n",
                query
                    .get("to")
                    .cloned()
                    .unwrap_or_else(|| format!("http://localhost:{port}/ok"))
            ),
            "text/plain",
            String::new(),
        ),
        "/slow" => {
            std::thread::sleep(Duration::from_millis(
                query.get("ms").and_then(|m| m.parse().ok()).unwrap_or(1000),
            ));
            (200, String::new(), "text/plain", "slow".to_string())
        }
        "/v1/messages" => {
            let req: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
            let text = format!(
                "echo: {}",
                req["messages"][0]["content"].as_str().unwrap_or("")
            );
            let resp = json!({"id": "msg_e2e", "type": "message", "role": "assistant", "model": req["model"],
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                // An upstream that reflects the key it was sent: the host must scrub it.
                "debug_key_seen": headers.get("x-api-key")});
            (200, String::new(), "application/json", resp.to_string())
        }
        _ => (404, String::new(), "text/plain", "not found".to_string()),
    };
    let mut conn = conn;
    let _ = write!(conn, "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{out}", out.len());
    let _ = conn.flush();
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Registers a catalyst from its directory's manifest with freshly built bytes.
pub(crate) fn register(s: &Server, dir: &str, package: &str) -> String {
    let m: Json = serde_json::from_str(
        &std::fs::read_to_string(workspace().join(dir).join("cyfr-manifest.json")).unwrap(),
    )
    .unwrap();
    s.register(m, &wasm(package))["reference"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs a `cyfr` CLI command against the server with the admin key; `stdin` is piped in.
fn cli(s: &Server, args: &[&str], stdin: Option<&str>) -> Json {
    let mut child = cyfr()
        .args(args)
        .arg("--json")
        .env("CYFR_URL", &s.url)
        .env("CYFR_API_KEY", &s.admin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(v) = stdin {
            writeln!(input, "{v}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cyfr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Json::Null)
}

pub(crate) fn policy(s: &Server, reference: &str, field: &str, value: Json) {
    s.ok(
        &s.admin,
        "policy",
        json!({"action": "set", "reference": reference, "field": field, "value": value}),
    );
}

/// Runs the http catalyst with `params`; returns the execution's answer.
fn http_run(s: &Server, key: &str, params: Json) -> Json {
    s.ok(key, "execution", json!({"action": "run", "reference": "c:cyfr.http:0.1.0", "input": {"operation": "request", "params": params}}))
}

fn logs(s: &Server, answer: &Json) -> Json {
    s.ok(
        &s.admin,
        "execution",
        json!({"action": "logs", "execution_id": answer["execution_id"]}),
    )
}

#[test]
fn claude_catalyst_runs_with_a_key_the_host_injects_and_that_appears_nowhere() {
    let up = Upstream::start();
    let s = Server::start();
    let reference = register(
        &s,
        "components/catalysts/local/claude/0.1.0",
        "claude-catalyst",
    );
    assert_eq!(reference, "catalyst:local.claude:0.1.0");
    cli(&s, &["secret", "set", "ANTHROPIC_API_KEY"], Some(KEY));
    cli(
        &s,
        &[
            "secret",
            "grant",
            "c:local.claude:0.1.0",
            "ANTHROPIC_API_KEY",
        ],
        None,
    );
    let app = s.key("app", "secret", &["execution"], json!({}));
    let input = json!({"operation": "messages.create", "params": {
        "base_url": format!("http://localhost:{}", up.port), "model": "claude-test", "max_tokens": 32,
        "messages": [{"role": "user", "content": "hello from e2e"}]}});
    let run = json!({"action": "run", "reference": "c:local.claude:0.1.0", "input": input});

    // No policy yet: the router refuses to start a catalyst at all.
    let r = s.call(&app, "execution", run.clone());
    assert_eq!(code(&r), -33102, "{r}");
    cli(
        &s,
        &[
            "policy",
            "set",
            "c:local.claude:0.1.0",
            "allowed_domains",
            r#"["localhost"]"#,
        ],
        None,
    );
    // Allowed domain, but localhost is loopback: refused by the host after DNS.
    let r = s.ok(&app, "execution", run.clone());
    assert_eq!(
        r["result"]["error"]["type"], "domain_blocked",
        "odd port, no private network opened: {r}"
    );
    cli(
        &s,
        &[
            "policy",
            "set",
            "c:local.claude:0.1.0",
            "allowed_private_ips",
            r#"["127.0.0.1/32"]"#,
        ],
        None,
    );
    cli(
        &s,
        &[
            "policy",
            "set",
            "c:local.claude:0.1.0",
            "allowed_requests",
            r#"["POST localhost/v1/messages"]"#,
        ],
        None,
    );
    assert!(
        up.seen().is_empty(),
        "nothing may reach the API before the policy allows it"
    );

    let r = s.ok(&app, "execution", run);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["component_type"], "catalyst");
    assert_eq!(r["result"]["status"], 200, "{r}");
    assert_eq!(
        r["result"]["data"]["content"][0]["text"],
        "echo: hello from e2e"
    );
    // The reflected key was scrubbed before the guest saw it.
    assert_eq!(r["result"]["data"]["debug_key_seen"], "[REDACTED]");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(
        seen[0].headers.get("x-api-key").map(String::as_str),
        Some(KEY)
    );
    assert_eq!(
        seen[0].headers.get("anthropic-version").map(String::as_str),
        Some("2023-06-01")
    );
    assert_eq!(
        seen[0].headers.get("host").map(String::as_str),
        Some(format!("localhost:{}", up.port).as_str())
    );
    let sent: Json = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(sent["max_tokens"], 32);
    assert!(
        sent.get("base_url").is_none(),
        "base_url is not part of the API request: {sent}"
    );

    let logs = logs(&s, &r);
    for answer in [&r, &logs] {
        assert!(
            !answer.to_string().contains(KEY),
            "the key leaked: {answer}"
        );
    }
    s.assert_nowhere_on_disk(KEY);
}

#[test]
fn egress_escapes_are_refused_recorded_and_the_allowed_call_still_works() {
    let up = Upstream::start();
    let s = Server::start();
    assert_eq!(
        register(&s, "components/catalysts/cyfr/http/0.1.0", "http-catalyst"),
        "catalyst:cyfr.http:0.1.0"
    );
    let r = "c:cyfr.http:0.1.0";
    policy(&s, r, "allowed_domains", json!(["localhost"]));
    policy(&s, r, "allowed_private_ips", json!(["127.0.0.1/32"]));
    policy(&s, r, "allowed_methods", json!(["GET"]));
    let app = s.key("app", "secret", &["execution"], json!({}));
    let p = up.port;

    let cases = [
        (
            json!({"url": format!("http://127.0.0.1:{p}/ok")}),
            "domain_blocked",
            403,
        ),
        (
            json!({"url": format!("http://2130706433:{p}/ok")}),
            "domain_blocked",
            403,
        ),
        (
            json!({"url": format!("http://0x7f.1:{p}/ok")}),
            "domain_blocked",
            403,
        ),
        (
            json!({"url": format!("http://localhost:{p}@evil.test/ok")}),
            "domain_blocked",
            403,
        ),
        (
            json!({"url": format!("http://evil.test:{p}/ok")}),
            "domain_blocked",
            403,
        ),
        (
            json!({"url": up.url(&format!("/redirect?to={}", percent_encode("http://evil.test/steal")))}),
            "domain_blocked",
            403,
        ),
        (
            json!({"url": up.url(&format!("/redirect?to={}", percent_encode("http://169.254.169.254/latest/meta-data/")))}),
            "domain_blocked",
            403,
        ),
        (
            json!({"method": "POST", "url": up.url("/ok"), "body": "x"}),
            "method_blocked",
            405,
        ),
    ];
    for (params, kind, status) in &cases {
        let out = http_run(&s, &app, params.clone());
        assert_eq!(out["status"], "completed", "{out}");
        assert_eq!(out["result"]["error"]["type"], *kind, "{params}: {out}");
        assert_eq!(out["result"]["status"], *status, "{params}: {out}");
    }
    // Each refusal is in the execution's log.
    let out = http_run(
        &s,
        &app,
        json!({"url": format!("http://2130706433:{p}/ok")}),
    );
    let stderr = logs(&s, &out)["stderr"].as_str().unwrap().to_string();
    assert!(
        stderr.contains("cyfr egress: refused domain_blocked GET http://127.0.0.1:"),
        "{stderr}"
    );
    // ...and in the record, typed, and in the run's answer.
    assert_eq!(
        logs(&s, &out)["egress_refusals"][0]["type"],
        "domain_blocked"
    );
    assert_eq!(out["egress_refusals"][0]["type"], "domain_blocked", "{out}");

    let ok = http_run(&s, &app, json!({"url": up.url("/ok")}));
    assert_eq!(ok["result"]["status"], 200, "{ok}");
    assert_eq!(ok["result"]["data"]["body"], "hello");
    // The stand-in API saw only the two redirects and the allowed call.
    let paths: Vec<String> = up.seen().iter().map(|x| x.path.clone()).collect();
    assert_eq!(paths, ["/redirect", "/redirect", "/ok"]);
}

#[test]
fn loopback_needs_allowed_private_ips_and_ungranted_secrets_are_denied() {
    let up = Upstream::start();
    let s = Server::start();
    register(&s, "components/catalysts/cyfr/http/0.1.0", "http-catalyst");
    let r = "c:cyfr.http:0.1.0";
    policy(&s, r, "allowed_domains", json!(["localhost"]));
    let app = s.key("app", "secret", &["execution"], json!({}));
    // `localhost` resolves to 127.0.0.1: refused after DNS without an explicit opening.
    let out = http_run(&s, &app, json!({"url": "http://localhost/ok"}));
    assert_eq!(
        out["result"]["error"]["type"], "private_ip_blocked",
        "{out}"
    );
    policy(&s, r, "allowed_private_ips", json!(["10.0.0.0/8"]));
    let out = http_run(&s, &app, json!({"url": up.url("/ok")}));
    assert_eq!(
        out["result"]["error"]["type"], "private_ip_blocked",
        "{out}"
    );
    assert!(up.seen().is_empty());

    policy(&s, r, "allowed_private_ips", json!(["127.0.0.1/32"]));
    // A secret that exists but is not granted to this component.
    s.ok(
        &s.admin,
        "secret",
        json!({"action": "set", "name": "NOT_GRANTED", "value": KEY, "scope": "org"}),
    );
    let out = http_run(
        &s,
        &app,
        json!({"url": up.url("/echo"), "headers": {"x-api-key": "{{secret:NOT_GRANTED}}"}}),
    );
    assert_eq!(out["result"]["error"]["type"], "http_error", "{out}");
    assert_eq!(
        out["result"]["error"]["message"],
        "access-denied: NOT_GRANTED not granted to catalyst:cyfr.http:0.1.0"
    );
    assert!(up.seen().is_empty());
    // Granted, it is injected; the echo comes back scrubbed.
    s.ok(
        &s.admin,
        "secret",
        json!({"action": "grant", "reference": r, "name": "NOT_GRANTED"}),
    );
    let out = http_run(
        &s,
        &app,
        json!({"url": up.url("/echo"), "headers": {"x-api-key": "{{secret:NOT_GRANTED}}"}}),
    );
    assert_eq!(out["result"]["status"], 200, "{out}");
    let echo: Json = serde_json::from_str(out["result"]["data"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["headers"]["x-api-key"], "[REDACTED]");
    assert_eq!(
        up.seen()[0].headers.get("x-api-key").map(String::as_str),
        Some(KEY)
    );
    assert!(!out.to_string().contains(KEY));
    s.assert_nowhere_on_disk(KEY);
}

#[test]
fn a_slow_upstream_times_out_inside_the_policy_timeout() {
    let up = Upstream::start();
    let s = Server::start();
    register(&s, "components/catalysts/cyfr/http/0.1.0", "http-catalyst");
    let r = "c:cyfr.http:0.1.0";
    policy(&s, r, "allowed_domains", json!(["localhost"]));
    policy(&s, r, "allowed_private_ips", json!(["127.0.0.1/32"]));
    policy(&s, r, "timeout", json!("2s"));
    let started = Instant::now();
    let out = http_run(&s, &s.admin, json!({"url": up.url("/slow?ms=15000")}));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        out["status"], "completed",
        "the guest gets the timeout in time to answer: {out}"
    );
    assert_eq!(out["result"]["error"]["type"], "timeout", "{out}");
    assert_eq!(out["result"]["status"], 504);
    let ok = http_run(&s, &s.admin, json!({"url": up.url("/ok")}));
    assert_eq!(ok["result"]["status"], 200);
}

/// A session opened with `key`; returns its id.
fn session_for(s: &Server, key: &str) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}).to_string();
    let auth = format!("Bearer {key}");
    let (status, headers, r) = s.post(&[("authorization", &auth)], &body);
    assert_eq!(status, 200, "{r}");
    headers["mcp-session-id"].to_str().unwrap().to_string()
}

fn call_in(s: &Server, key: &str, sid: &str, tool: &str, args: Json) -> Json {
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string();
    let auth = format!("Bearer {key}");
    s.post(&[("authorization", &auth), ("mcp-session-id", sid)], &body)
        .2
}

#[test]
fn a_pynacl_sealed_user_key_reaches_the_api_ahead_of_the_org_key() {
    const ORG: &str = "sk-ant-ORG-shared-key-000000000000";
    const ALICE: &str = "sk-ant-ALICE-own-key-111111111111";
    let up = Upstream::start();
    let s = Server::start_with(&["--session-encryption"]);
    register(
        &s,
        "components/catalysts/local/claude/0.1.0",
        "claude-catalyst",
    );
    cli(&s, &["secret", "set", "ANTHROPIC_API_KEY"], Some(ORG));
    cli(
        &s,
        &[
            "secret",
            "grant",
            "c:local.claude:0.1.0",
            "ANTHROPIC_API_KEY",
        ],
        None,
    );
    policy(
        &s,
        "c:local.claude:0.1.0",
        "allowed_domains",
        json!(["localhost"]),
    );
    policy(
        &s,
        "c:local.claude:0.1.0",
        "allowed_private_ips",
        json!(["127.0.0.1/32"]),
    );
    let alice = s.key("alice", "secret", &["execution", "secret.set"], json!({}));
    let bob = s.key("bob", "secret", &["execution"], json!({}));

    // Alice seals her own key to her session with real libsodium and stores it as hers.
    let sid = session_for(&s, &alice);
    // Read with Alice's own key: a session answers only the key that opened it.
    let read = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "mcp+session://encryption/pubkey"}}).to_string();
    let r = s
        .post(
            &[
                ("authorization", &format!("Bearer {alice}")),
                ("mcp-session-id", &sid),
            ],
            &read,
        )
        .2;
    let key: Json =
        serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    let sealed = crate::secrets::nacl_seal(key["public_key"].as_str().unwrap(), ALICE);
    let r = call_in(
        &s,
        &alice,
        &sid,
        "secret",
        json!({"action": "set", "name": "ANTHROPIC_API_KEY", "scope": "user", "value": {"ciphertext": sealed, "kid": key["kid"]}}),
    );
    assert_eq!(r["result"]["isError"], false, "{r}");

    let run = json!({"action": "run", "reference": "c:local.claude:0.1.0", "input": {"operation": "messages.create", "params": {
        "base_url": format!("http://localhost:{}", up.port), "model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}}});
    let a = s.ok(&alice, "execution", run.clone());
    let b = s.ok(&bob, "execution", run);
    assert_eq!(
        (a["result"]["status"].clone(), b["result"]["status"].clone()),
        (json!(200), json!(200)),
        "{a} {b}"
    );
    let keys: Vec<String> = up
        .seen()
        .iter()
        .map(|x| x.headers.get("x-api-key").cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [ALICE, ORG],
        "alice's own key first, the shared one for bob"
    );
    for plain in [ORG, ALICE] {
        s.assert_nowhere_on_disk(plain);
        assert!(!a.to_string().contains(plain) && !b.to_string().contains(plain));
    }
}
