//! API keys, scopes, rate limits and IP allowlists, over real HTTP.

use crate::support::*;
use serde_json::json;

#[test]
fn missing_and_invalid_credentials_are_refused_with_their_codes() {
    let s = Server::start();
    let args = json!({ "name": "system", "arguments": { "action": "status" } });
    let (status, r) = s.rpc(None, "tools/call", args.clone());
    assert_eq!((status, code(&r)), (401, -33001));
    let (status, r) = s.rpc(
        Some("cyfr_sk_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"),
        "tools/call",
        args.clone(),
    );
    assert_eq!((status, code(&r)), (401, -33002));
    assert_eq!(r["error"]["message"], "Invalid API key");
    let (status, r) = s.rpc(Some("not-a-key"), "tools/call", args);
    assert_eq!((status, code(&r)), (401, -33002));
}

#[test]
fn every_tool_action_refuses_a_key_without_its_scope() {
    let s = Server::start();
    let exec_only = s.key("exec-only", "secret", &["execution"], json!({}));
    let search_only = s.key("search-only", "secret", &["component.search"], json!({}));
    let refused = |key: &str, tool: &str, args: serde_json::Value| {
        let r = s.call(key, tool, args.clone());
        assert_eq!(code(&r), -33004, "{tool} {args} should be refused: {r}");
    };
    refused(
        &exec_only,
        "component",
        json!({"action": "search", "query": ""}),
    );
    refused(
        &exec_only,
        "component",
        json!({"action": "inspect", "reference": "r:cyfr.json-transform"}),
    );
    refused(
        &exec_only,
        "component",
        json!({"action": "resolve", "reference": "r:cyfr.json-transform"}),
    );
    refused(
        &search_only,
        "component",
        json!({"action": "register", "directory": "components/reagents/cyfr/json-transform/0.1.0"}),
    );
    refused(
        &exec_only,
        "key",
        json!({"action": "create", "name": "x", "type": "secret", "scope": ["execution"]}),
    );
    refused(&exec_only, "key", json!({"action": "list"}));
    refused(
        &exec_only,
        "key",
        json!({"action": "get", "name": "exec-only"}),
    );
    refused(
        &exec_only,
        "key",
        json!({"action": "revoke", "name": "search-only"}),
    );
    refused(
        &exec_only,
        "key",
        json!({"action": "rotate", "name": "exec-only"}),
    );
    refused(
        &exec_only,
        "policy",
        json!({"action": "get", "reference": "r:cyfr.json-transform"}),
    );
    refused(
        &exec_only,
        "policy",
        json!({"action": "set", "reference": "r:cyfr.json-transform", "field": "timeout", "value": "1s"}),
    );
    refused(&exec_only, "policy", json!({"action": "list"}));
    refused(
        &search_only,
        "execution",
        json!({"action": "run", "reference": "r:cyfr.json-transform"}),
    );
    refused(&search_only, "execution", json!({"action": "list"}));
    // ...and the scope that is held works.
    s.ok(
        &search_only,
        "component",
        json!({"action": "search", "query": ""}),
    );
    s.ok(&exec_only, "execution", json!({"action": "list"}));
    s.ok(&exec_only, "system", json!({"action": "status"}));
}

#[test]
fn public_keys_hold_only_execution() {
    let s = Server::start();
    let r = s.call(&s.admin, "key", json!({"action": "create", "name": "web", "type": "public", "scope": ["execution", "secret.get"]}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    let k = s.ok(
        &s.admin,
        "key",
        json!({"action": "create", "name": "web", "type": "public", "scope": ["execution"]}),
    );
    let raw = k["key"].as_str().unwrap();
    assert!(raw.starts_with("cyfr_pk_") && raw.len() == 8 + 32, "{raw}");
    assert_eq!(k["prefix"], format!("{}...", &raw[..12]));
}

#[test]
fn a_key_cannot_mint_more_power_than_it_holds() {
    let s = Server::start();
    let minter = s.key("minter", "secret", &["key.create", "execution"], json!({}));
    let r = s.call(
        &minter,
        "key",
        json!({"action": "create", "name": "boss", "type": "admin"}),
    );
    assert_eq!(code(&r), -33004, "{r}");
    let r = s.call(
        &minter,
        "key",
        json!({"action": "create", "name": "sneaky", "type": "secret", "scope": ["secret.get"]}),
    );
    assert_eq!(code(&r), -33004, "{r}");
    s.ok(
        &minter,
        "key",
        json!({"action": "create", "name": "child", "type": "secret", "scope": ["execution"]}),
    );
    // It sees only what it made (and itself), never the admin key.
    let listed = s.ok(&minter, "key", json!({"action": "list"}));
    let names: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"child") && names.contains(&"minter") && !names.contains(&"admin"),
        "{names:?}"
    );
}

#[test]
fn keys_are_listed_by_prefix_and_never_by_value_or_hash() {
    let s = Server::start();
    let raw = s.key("backend", "secret", &["execution"], json!({}));
    let listed = s.ok(&s.admin, "key", json!({"action": "list"}));
    let text = listed.to_string();
    assert!(!text.contains(&raw[12..]), "raw key leaked in list: {text}");
    assert!(text.contains(&format!("{}...", &raw[..12])));
    let db = std::fs::read(s.data.0.join("cyfr.db")).unwrap();
    assert!(
        !db.windows(raw.len()).any(|w| w == raw.as_bytes()),
        "raw key stored in the database"
    );
}

#[test]
fn revoked_key_is_refused_on_next_request() {
    let s = Server::start();
    let k = s.key("temp", "secret", &["execution"], json!({}));
    s.ok(&k, "execution", json!({"action": "list"}));
    s.ok(&s.admin, "key", json!({"action": "revoke", "name": "temp"}));
    assert_eq!(
        code(&s.call(&k, "execution", json!({"action": "list"}))),
        -33002
    );
}

#[test]
fn rotated_key_replaces_the_old_one_at_once() {
    let s = Server::start();
    let old = s.key(
        "rotating",
        "secret",
        &["execution"],
        json!({"rate_limit": "50/1m"}),
    );
    let r = s.ok(
        &s.admin,
        "key",
        json!({"action": "rotate", "name": "rotating"}),
    );
    let new = r["key"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(r["scope"], json!(["execution"]));
    assert_eq!(r["rate_limit"], "50/1m");
    assert_eq!(
        code(&s.call(&old, "execution", json!({"action": "list"}))),
        -33002
    );
    s.ok(new, "execution", json!({"action": "list"}));
}

#[test]
fn per_key_rate_limit_refuses_past_the_limit_and_survives_restart() {
    let s = Server::start();
    let limited = s.key(
        "limited",
        "secret",
        &["execution"],
        json!({"rate_limit": "3/1m"}),
    );
    let other = s.key("other", "secret", &["execution"], json!({}));
    for _ in 0..3 {
        s.ok(&limited, "execution", json!({"action": "list"}));
    }
    let (status, r) = s.rpc(
        Some(&limited),
        "tools/call",
        json!({"name": "execution", "arguments": {"action": "list"}}),
    );
    assert_eq!((status, code(&r)), (429, -33005), "{r}");
    assert!(r["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 0);
    s.ok(&other, "execution", json!({"action": "list"}));
    // The limiter's state is in the database, not in any instance's memory.
    let (data, admin) = s.stop();
    let s = Server::up(data, admin, &[]);
    assert_eq!(
        code(&s.call(&limited, "execution", json!({"action": "list"}))),
        -33005
    );
}

#[test]
fn ip_allowlist_is_checked_against_the_peer_and_spoofing_fails() {
    let s = Server::start();
    let elsewhere = s.key(
        "elsewhere",
        "secret",
        &["execution"],
        json!({"ip_allowlist": "10.0.0.0/8,2001:db8::/32"}),
    );
    let local = s.key(
        "local",
        "secret",
        &["execution"],
        json!({"ip_allowlist": ["127.0.0.1"]}),
    );
    s.ok(&local, "execution", json!({"action": "list"}));
    assert_eq!(
        code(&s.call(&elsewhere, "execution", json!({"action": "list"}))),
        -33004
    );
    // Headers claiming another address change nothing: no proxy is trusted.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execution", "arguments": {"action": "list"}}}).to_string();
    let auth = format!("Bearer {elsewhere}");
    for (h, v) in [
        ("x-forwarded-for", "10.1.2.3"),
        ("spin-client-addr", "10.1.2.3:5555"),
        ("x-real-ip", "10.1.2.3"),
    ] {
        let (status, _, r) = s.post(&[("authorization", &auth), (h, v)], &body);
        assert_eq!(
            (status, code(&r)),
            (403, -33004),
            "spoofed {h} was believed: {r}"
        );
    }
}

#[test]
fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let s = Server::start_with(&["--trusted-proxies", "127.0.0.1"]);
    let k = s.key(
        "behind-proxy",
        "secret",
        &["execution"],
        json!({"ip_allowlist": "203.0.113.0/24"}),
    );
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execution", "arguments": {"action": "list"}}}).to_string();
    let auth = format!("Bearer {k}");
    let (status, _, r) = s.post(
        &[("authorization", &auth), ("x-forwarded-for", "203.0.113.9")],
        &body,
    );
    assert_eq!(status, 200, "{r}");
    // A client-supplied first hop does not help when the proxy appended the real address.
    let (status, _, r) = s.post(
        &[
            ("authorization", &auth),
            ("x-forwarded-for", "203.0.113.9, 198.51.100.1"),
        ],
        &body,
    );
    assert_eq!((status, code(&r)), (403, -33004));
}
