//! The network edge: read deadlines, connection caps, the anonymous rate, session binding,
//! request ids and logs. Each test performs the attack over real loopback sockets.

use crate::support::*;
use serde_json::{json, Value as Json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `127.0.0.1:PORT` of a `http://127.0.0.1:PORT/...` URL.
fn addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// A raw connection; the read timeout only keeps a broken server from hanging the test.
fn connect(url: &str) -> TcpStream {
    let c = TcpStream::connect(addr(url)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c
}

/// Reads until the server closes the connection. `Err` if it did not close it (the read
/// timed out); what it sent before closing otherwise (a reset counts as closed).
fn read_until_closed(c: &mut TcpStream) -> Result<String, std::io::Error> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(e)
            }
            Err(_) => return Ok(String::from_utf8_lossy(&out).into_owned()),
        }
    }
}

/// Reads one response whose body has a Content-Length; returns its head and body.
fn read_response(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed mid-response: {text:?}");
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn slow_headers_and_stalled_bodies_are_cut_off_by_the_deadline() {
    let s = Server::start_env(
        &[],
        &[
            ("CYFR_HEADER_TIMEOUT_MS", "500"),
            ("CYFR_BODY_TIMEOUT_MS", "500"),
        ],
    );
    // Headers that never end: the server closes the connection.
    let mut slow = connect(&s.url);
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        .unwrap();
    let got = read_until_closed(&mut slow)
        .expect("the server must close a connection whose headers never end");
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got:?}");

    // A body that stops halfway: 408 and the connection closed.
    let mut stalled = connect(&s.url);
    let auth = format!("Bearer {}", s.admin);
    write!(stalled, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"jsonrpc\":").unwrap();
    let got = read_until_closed(&mut stalled)
        .expect("the server must close a connection whose body stalls");
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");

    // Meanwhile and afterwards, complete requests are served.
    let (status, r) = s.rpc(Some(&s.admin), "ping", json!({}));
    assert_eq!(status, 200, "{r}");
}

#[test]
fn connections_over_the_per_peer_cap_are_closed_while_other_peers_are_served() {
    let s = Server::start_env(
        &[],
        &[
            ("CYFR_MAX_CONNECTIONS_PER_PEER", "2"),
            ("CYFR_HEADER_TIMEOUT_MS", "300000"),
        ],
    );
    let health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    // Two kept-alive connections from 127.0.0.1, each served once: the peer's whole share.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = connect(&s.url);
            c.write_all(health.as_bytes()).unwrap();
            let r = read_response(&mut c);
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            c
        })
        .collect();
    // A third from the same IP is closed unanswered.
    let mut third = connect(&s.url);
    let _ = third.write_all(health.as_bytes());
    let got = read_until_closed(&mut third)
        .expect("the server must close a connection over the per-peer cap");
    assert!(!got.contains("200"), "{got:?}");

    // Another peer (127.0.0.2, still loopback) is served.
    let other = reqwest::blocking::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = other.get(s.url.replace("/mcp", "/health")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // The held connections still work, and when one closes its place is free again.
    held[0].write_all(health.as_bytes()).unwrap();
    assert!(read_response(&mut held[0]).starts_with("HTTP/1.1 200"));
    drop(held.pop());
    let served = (0..200).any(|_| {
        let mut c = connect(&s.url);
        if c.write_all(health.as_bytes()).is_ok() && read_until_closed_or_response(&mut c) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    assert!(served, "a freed place must be usable by the same peer");
}

/// Whether the connection answered 200 (rather than being closed unanswered).
fn read_until_closed_or_response(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(c.read(&mut buf), Ok(n) if n > 0 && buf[..n].starts_with(b"HTTP/1.1 200"))
}

#[test]
fn an_anonymous_initialize_flood_gets_429_while_a_keyed_client_is_served_and_logs_say_so() {
    // A small burst and a slow refill, so the flood outpaces it however slow this machine is.
    let s = Server::start_env(
        &[],
        &[
            ("CYFR_LOG_FORMAT", "json"),
            ("CYFR_ANON_BURST", "10"),
            ("CYFR_ANON_PER_SEC", "1"),
        ],
    );
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}).to_string();
    let mut refused = None;
    for i in 0..200 {
        let rid = format!("flood-{i}");
        let (status, headers, _) = s.post(&[("x-request-id", &rid)], &init);
        assert_eq!(
            headers["x-request-id"],
            rid.as_str(),
            "a sane request id comes back"
        );
        if status == 429 {
            let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1);
            refused = Some(rid);
            break;
        }
        assert_eq!(status, 200);
    }
    let refused = refused.expect("an anonymous flood from one peer must be refused");
    // A client with a key is still served, from the same peer.
    let auth = format!("Bearer {}", s.admin);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let (status, headers, r) = s.post(
        &[
            ("authorization", &auth),
            ("x-request-id", "bad id with spaces"),
        ],
        &list,
    );
    assert_eq!(status, 200, "{r}");
    let rid = headers["x-request-id"].to_str().unwrap();
    assert!(
        rid != "bad id with spaces"
            && !rid.is_empty()
            && rid.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{rid}"
    );
    // Once more with a key of the client's own, to find it (or not) in the log.
    let (status, _, _) = s.post(
        &[("authorization", &auth), ("x-request-id", "keyed-1")],
        &list,
    );
    assert_eq!(status, 200);

    // stderr is written per event, unbuffered: the log is complete once the answers came.
    let log = std::fs::read_to_string(s.data.0.join("server.log")).unwrap();
    let lines: Vec<Json> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !lines.is_empty(),
        "CYFR_LOG_FORMAT=json logs JSON lines: {log}"
    );
    let line = lines
        .iter()
        .find(|l| l.to_string().contains(&refused))
        .unwrap_or_else(|| panic!("no log line for refused request {refused}: {log}"));
    assert_eq!(line["level"], "WARN", "{line}");
    assert!(
        line.to_string().contains("127.0.0.1"),
        "the peer is logged: {line}"
    );
    assert!(!log.contains(&s.admin), "the API key must not be logged");
    assert!(
        !log.contains(&s.admin[..16]) && !log.to_ascii_lowercase().contains("bearer"),
        "no Authorization value in the log"
    );
}

#[test]
fn a_bad_host_header_is_400() {
    let s = Server::start();
    let mut c = connect(&s.url);
    let auth = format!("Bearer {}", s.admin);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    write!(c, "POST /mcp HTTP/1.1\r\nHost: bad host\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let r = read_response(&mut c);
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
}

#[test]
fn cyfr_host_answers_401_to_a_tokenless_40_mib_request_before_its_body_is_sent() {
    let h = Host::start();
    let mut c = connect(&h.url);
    // Headers only: a server that read the body first would wait here for 40 MiB.
    c.write_all(b"POST /v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 41943040\r\n\r\n").unwrap();
    let r = read_until_closed(&mut c).expect("cyfr host must answer without the body");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    // A bad token is refused the same way, and its value is not echoed.
    let mut c = connect(&h.url);
    c.write_all(b"POST /v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer not.a.token\r\nContent-Length: 41943040\r\n\r\n").unwrap();
    let r = read_until_closed(&mut c).expect("cyfr host must answer without the body");
    assert!(
        r.starts_with("HTTP/1.1 401") && !r.contains("not.a.token"),
        "{r}"
    );
}

/// A session opened with `key` (or anonymously); returns its id.
fn open_session(s: &Server, key: Option<&str>) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}).to_string();
    let auth = key.map(|k| format!("Bearer {k}"));
    let h: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let (status, headers, r) = s.post(&h, &body);
    assert_eq!(status, 200, "{r}");
    headers["mcp-session-id"].to_str().unwrap().to_string()
}

/// A JSON-RPC request with an optional key inside a session: (status, response).
fn in_session(s: &Server, key: Option<&str>, sid: &str, method: &str, params: Json) -> (u16, Json) {
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params}).to_string();
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut h = vec![("mcp-session-id", sid)];
    if let Some(a) = &auth {
        h.push(("authorization", a.as_str()));
    }
    let (status, _, r) = s.post(&h, &body);
    (status, r)
}

#[test]
fn a_session_is_usable_only_by_the_key_that_opened_it() {
    let s = Server::start_with(&["--session-encryption"]);
    let b = s.key("bee", "secret", &["secret.get", "secret.set"], json!({}));
    let a_sid = open_session(&s, Some(&s.admin));
    let pubkey = json!({"uri": "mcp+session://encryption/pubkey"});
    let (status, r) = in_session(&s, Some(&s.admin), &a_sid, "resources/read", pubkey.clone());
    assert_eq!(status, 200, "{r}");
    let key: Json =
        serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    let ct = crate::secrets::nacl_seal(
        key["public_key"].as_str().unwrap(),
        "A-only-secret-value-0123456789",
    );
    let sealed = json!({"ciphertext": ct, "kid": key["kid"]});

    // Key B presenting A's session id: as if the session did not exist, for every method.
    for (method, params) in [
        ("ping", json!({})),
        ("resources/read", pubkey.clone()),
        ("tools/list", json!({})),
        (
            "tools/call",
            json!({"name": "secret", "arguments": {"action": "set", "name": "stolen", "value": sealed}}),
        ),
    ] {
        let (status, r) = in_session(&s, Some(&b), &a_sid, method, params);
        assert_eq!((status, code(&r)), (404, -33302), "{method}: {r}");
    }
    // B's own session has another key, so A's ciphertext does not open there either.
    let b_sid = open_session(&s, Some(&b));
    let (_, r) = in_session(
        &s,
        Some(&b),
        &b_sid,
        "tools/call",
        json!({"name": "secret", "arguments": {"action": "set", "name": "stolen", "value": sealed}}),
    );
    assert!(r.to_string().contains("Key ID mismatch"), "{r}");
    let listed = s.ok(&b, "secret", json!({"action": "list"}));
    assert!(!listed.to_string().contains("stolen"), "{listed}");
    // A itself still uses its session, with its key or with the session alone.
    let (status, r) = in_session(
        &s,
        Some(&s.admin),
        &a_sid,
        "tools/call",
        json!({"name": "secret", "arguments": {"action": "set", "name": "mine", "value": sealed}}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["isError"], false, "{r}");
    assert_eq!(in_session(&s, None, &a_sid, "ping", json!({})).0, 200);
    // Nor can B end A's session.
    let auth_b = format!("Bearer {b}");
    assert_eq!(
        s.request(
            reqwest::Method::DELETE,
            &[("authorization", &auth_b), ("mcp-session-id", &a_sid)]
        ),
        404
    );
    assert_eq!(
        in_session(&s, Some(&s.admin), &a_sid, "ping", json!({})).0,
        200
    );

    // An anonymous session stays anonymous: no key may take it over, and it cannot read the
    // encryption key (nor can a request with no session).
    let anon = open_session(&s, None);
    let (status, r) = in_session(&s, Some(&s.admin), &anon, "tools/list", json!({}));
    assert_eq!((status, code(&r)), (404, -33302), "{r}");
    let (status, r) = in_session(&s, None, &anon, "resources/read", pubkey.clone());
    assert_eq!((status, code(&r)), (401, -33001), "{r}");
    let (status, r) = s.rpc(None, "resources/read", pubkey);
    assert_eq!((status, code(&r)), (401, -33001), "{r}");
}

#[test]
fn requests_queue_for_a_router_instance_instead_of_getting_503() {
    // Two router instances; a run that loops until its 3 s timeout holds one of them.
    let s = std::sync::Arc::new(Server::start_env(&[], &[("CYFR_ROUTER_INSTANCES", "2")]));
    s.register(
        manifest("test.endless-loop", "0.1.0"),
        &wasm("endless-loop"),
    );
    s.ok(&s.admin, "policy", json!({"action": "set", "reference": "r:test.endless-loop:0.1.0", "field": "timeout", "value": "3s"}));
    let bg = s.clone();
    let run = std::thread::spawn(move || {
        bg.call(
            &bg.admin,
            "execution",
            json!({"action": "run", "reference": "r:test.endless-loop:0.1.0", "input": {}}),
        )
    });
    let mut running = false;
    for _ in 0..200 {
        let listed = s.ok(&s.admin, "execution", json!({"action": "list"}));
        if listed["executions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["status"] == "running")
        {
            running = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(running, "the loop never started");
    // Eight requests at once for the one free instance: they wait their turn, none gets 503.
    let pings: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || s.rpc(Some(&s.admin), "ping", json!({})).0)
        })
        .collect();
    let statuses: Vec<u16> = pings.into_iter().map(|p| p.join().unwrap()).collect();
    assert!(statuses.iter().all(|&st| st == 200), "{statuses:?}");
    let r = run.join().unwrap();
    assert_eq!(code(&r), -33101, "{r}");
}
