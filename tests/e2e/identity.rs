//! Identity over real HTTP: the JWT key checked when `cyfr up` starts, JWT bearers, and
//! `cyfr login`'s device flow with cyfr's own verification page, then the session id sent
//! alone as `MCP-Session-Id` (as CYFR's CLI does) until logout.

use crate::support::*;
use cyfr_core::jwt::{self, Alg};
use serde_json::{json, Value as Json};

const JWT_KEY: &str = "e2e-jwt-signing-key-at-least-32-bytes-long";

fn token(alg: Alg, claims: Json) -> String {
    let header = match alg {
        Alg::HS256 => br#"{"typ":"JWT","alg":"HS256"}"#.as_slice(),
        Alg::HS384 => br#"{"typ":"JWT","alg":"HS384"}"#.as_slice(),
        Alg::HS512 => br#"{"typ":"JWT","alg":"HS512"}"#.as_slice(),
    };
    jwt::sign(
        alg,
        header,
        claims.to_string().as_bytes(),
        JWT_KEY.as_bytes(),
    )
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn cyfr_up_refuses_a_short_jwt_key_or_a_skew_over_300() {
    for (var, value) in [
        ("CYFR_JWT_SIGNING_KEY", "too-short"),
        ("CYFR_JWT_CLOCK_SKEW_SECONDS", "301"),
    ] {
        let data = TempDir::new("jwt-refused");
        let init = cyfr()
            .args(["init", "--json", "--data-dir"])
            .arg(&data.0)
            .output()
            .unwrap();
        assert!(init.status.success());
        let out = cyfr()
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data.0)
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let name = var.trim_start_matches("CYFR_").to_ascii_lowercase();
        assert!(err.contains(&name), "{var}: {err}");
        assert!(
            !err.contains(value) || value == "301",
            "the key is not echoed: {err}"
        );
    }
}

#[test]
fn jwt_bearers_act_with_their_permissions() {
    let s = Server::start_env(&[], &[("CYFR_JWT_SIGNING_KEY", JWT_KEY)]);
    let t = token(
        Alg::HS512,
        json!({ "sub": "alice", "permissions": ["component.search"], "exp": now_s() + 600 }),
    );
    s.ok(&t, "component", json!({ "action": "search" }));
    assert_eq!(
        code(&s.call(&t, "key", json!({ "action": "list" }))),
        -33004
    );
    let old = token(Alg::HS256, json!({ "sub": "alice", "exp": now_s() - 3600 }));
    let (status, r) = s.rpc(
        Some(&old),
        "tools/call",
        json!({ "name": "system", "arguments": {} }),
    );
    assert_eq!((status, code(&r)), (401, -33003), "{r}");
    let none = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJzdWIiOiJhbGljZSIsInBlcm1pc3Npb25zIjpbIioiXX0"
    );
    let (status, r) = s.rpc(
        Some(&none),
        "tools/call",
        json!({ "name": "system", "arguments": {} }),
    );
    assert_eq!((status, code(&r)), (401, -33002), "{r}");
}

#[test]
fn login_with_the_device_flow_then_the_session_id_alone() {
    let s = Server::start();
    let http = reqwest::blocking::Client::new();
    let call = |sid: Option<&str>, args: Json| -> (u16, Json) {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "session", "arguments": args } }).to_string();
        let mut headers = vec![("mcp-protocol-version", "2025-11-25")];
        if let Some(sid) = sid {
            headers.push(("mcp-session-id", sid));
        }
        let (status, _, r) = s.post(&headers, &body);
        (status, r)
    };
    // No credentials at all: the CLI's first steps.
    let (status, r) = call(None, json!({ "action": "device-init" }));
    assert_eq!(status, 200, "{r}");
    let init = r["result"]["structuredContent"].clone();
    let user_code = init["user_code"].as_str().unwrap().to_string();
    let device_code = init["device_code"].as_str().unwrap().to_string();
    let (_, r) = call(
        None,
        json!({ "action": "device-poll", "device_code": device_code }),
    );
    assert_eq!(r["result"]["structuredContent"]["status"], "pending", "{r}");
    // The verification page, signed in with the admin key.
    let page = s.url.replace("/mcp", "/auth/device");
    let resp = http.get(&page).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = http
        .post(&page)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "user_code={user_code}&user=dev%40example.com&email=dev%40example.com&admin_key={}&decision=approve",
            s.admin
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap());
    // The poll interval is 5 s: wait it out rather than be told to slow down.
    std::thread::sleep(std::time::Duration::from_millis(5_100));
    let (_, r) = call(
        None,
        json!({ "action": "device-poll", "device_code": device_code }),
    );
    let done = r["result"]["structuredContent"].clone();
    assert_eq!(done["status"], "complete", "{r}");
    assert_eq!(done["user"]["id"], "dev@example.com");
    let sid = done["session_id"].as_str().unwrap().to_string();
    let (status, r) = call(Some(&sid), json!({ "action": "whoami" }));
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["result"]["structuredContent"]["user_id"],
        "dev@example.com"
    );
    assert_eq!(r["result"]["structuredContent"]["permissions"], json!([]));
    // Nothing granted: no keys, no secrets.
    let (status, _, r) = s.post(
        &[("mcp-session-id", &sid)],
        &json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "key", "arguments": { "action": "create", "name": "x", "scope": ["execution"] } } }).to_string(),
    );
    assert_eq!((status, code(&r)), (403, -33004), "{r}");
    let (status, _) = call(Some(&sid), json!({ "action": "logout" }));
    assert_eq!(status, 200);
    let (status, r) = call(Some(&sid), json!({ "action": "whoami" }));
    assert_eq!((status, code(&r)), (404, -33302), "{r}");
}
