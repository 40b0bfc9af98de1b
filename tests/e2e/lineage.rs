//! Key lineage and the other findings of the core review: rotation keeps a key's budget,
//! secrets and runs; derived keys get nothing wider than their creator; forwarded-for hops
//! fail closed; versions are semver 2.0.0 with semver precedence; component files are not
//! symlinks.

use crate::support::*;
use serde_json::{json, Value as Json};

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execution","arguments":{"action":"list"}}}"#;

/// The error code of a response: a JSON-RPC error, or a tool error (bad arguments).
fn err_code(r: &Json) -> i64 {
    r["error"]["code"]
        .as_i64()
        .or_else(|| r["result"]["structuredContent"]["error"]["code"].as_i64())
        .unwrap_or_else(|| panic!("expected an error, got {r}"))
}

/// `execution.list` with `key` and an `X-Forwarded-For` header; (status, response).
fn list_from(s: &Server, key: &str, xff: &str) -> (u16, Json) {
    let auth = format!("Bearer {key}");
    let (status, _, r) = s.post(&[("authorization", &auth), ("x-forwarded-for", xff)], LIST);
    (status, r)
}

#[test]
fn a_rate_limited_key_rotating_itself_makes_at_most_its_limit() {
    let s = Server::start();
    let mut key = s.key(
        "spender",
        "secret",
        &["execution", "key.create", "key.revoke"],
        json!({"rate_limit": "2/1h"}),
    );
    // The attack: rotate, use the new key to rotate again, and so on, hoping for fresh buckets.
    let mut allowed = 0;
    for _ in 0..8 {
        let r = s.call(&key, "key", json!({"action": "rotate", "name": "spender"}));
        if r.get("error").is_some() {
            assert_eq!(code(&r), -33005, "{r}");
            continue;
        }
        allowed += 1;
        key = r["result"]["structuredContent"]["key"]
            .as_str()
            .unwrap()
            .to_string();
    }
    assert_eq!(
        allowed, 2,
        "a 2/1h key got {allowed} requests by rotating itself"
    );
    assert_eq!(
        code(&s.call(&key, "execution", json!({"action": "list"}))),
        -33005
    );
    // An admin's rotation gives a new raw key, not a new budget.
    let r = s.ok(
        &s.admin,
        "key",
        json!({"action": "rotate", "name": "spender"}),
    );
    assert_eq!(
        code(&s.call(
            r["key"].as_str().unwrap(),
            "execution",
            json!({"action": "list"})
        )),
        -33005
    );
}

#[test]
fn a_derived_key_gets_its_creators_rate_limit_and_shares_its_budget() {
    let s = Server::start();
    let creator = s.key(
        "creator",
        "secret",
        &["execution", "key.create"],
        json!({"rate_limit": "2/1h"}),
    );
    // Request 1 of the creator's budget: minting a key without a limit.
    let child = s.ok(
        &creator,
        "key",
        json!({"action": "create", "name": "child", "scope": ["execution"]}),
    );
    assert_eq!(child["rate_limit"], "2/1h", "{child}");
    let child = child["key"].as_str().unwrap().to_string();
    // Request 2, by the child; the budget is now spent for both.
    s.ok(&child, "execution", json!({"action": "list"}));
    let (status, r) = s.rpc(
        Some(&child),
        "tools/call",
        json!({"name": "execution", "arguments": {"action": "list"}}),
    );
    assert_eq!((status, code(&r)), (429, -33005), "{r}");
    assert_eq!(
        code(&s.call(&creator, "execution", json!({"action": "list"}))),
        -33005
    );
}

#[test]
fn a_derived_key_asking_for_a_looser_rate_gets_the_creators() {
    let s = Server::start();
    let creator = s.key(
        "creator",
        "secret",
        &["execution", "key.create"],
        json!({"rate_limit": "5/1h"}),
    );
    let looser = s.ok(&creator, "key", json!({"action": "create", "name": "looser", "scope": ["execution"], "rate_limit": "1000/1m"}));
    assert_eq!(looser["rate_limit"], "5/1h");
    let stricter = s.ok(&creator, "key", json!({"action": "create", "name": "stricter", "scope": ["execution"], "rate_limit": "1/1h"}));
    assert_eq!(stricter["rate_limit"], "1/1h");
    // An admin hands out budgets of its own: its keys are not narrowed.
    let free = s.key(
        "free",
        "secret",
        &["execution"],
        json!({"rate_limit": "1000/1m"}),
    );
    let got = s.ok(&s.admin, "key", json!({"action": "get", "name": "free"}));
    assert_eq!(got["rate_limit"], "1000/1m");
    s.ok(&free, "execution", json!({"action": "list"}));
}

#[test]
fn a_derived_key_cannot_reach_wider_than_its_creators_ip_allowlist() {
    let s = Server::start_with(&["--trusted-proxies", "127.0.0.1"]);
    let creator = s.key(
        "creator",
        "secret",
        &["execution", "key.create"],
        json!({"ip_allowlist": "203.0.113.0/24"}),
    );
    let auth = format!("Bearer {creator}");
    let create = |args: Json| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "key", "arguments": args}}).to_string();
        s.post(
            &[("authorization", &auth), ("x-forwarded-for", "203.0.113.5")],
            &body,
        )
        .2
    };
    for wider in [
        json!(["0.0.0.0/0"]),
        json!(["198.51.100.0/24"]),
        json!(["203.0.0.0/16"]),
        json!(["203.0.113.7", "10.0.0.1"]),
    ] {
        let r = create(
            json!({"action": "create", "name": "wide", "scope": ["execution"], "ip_allowlist": wider}),
        );
        assert_eq!(err_code(&r), -32602, "{wider}: {r}");
        assert!(
            r.to_string()
                .contains("is not inside this key's own allowlist"),
            "{r}"
        );
    }
    let r = create(
        json!({"action": "create", "name": "narrow", "scope": ["execution"], "ip_allowlist": ["203.0.113.7"]}),
    );
    assert_eq!(
        r["result"]["structuredContent"]["ip_allowlist_text"], "203.0.113.7/32",
        "{r}"
    );
    // No allowlist asked: the creator's.
    let r = create(json!({"action": "create", "name": "inherits", "scope": ["execution"]}));
    let inherits = &r["result"]["structuredContent"];
    assert_eq!(inherits["ip_allowlist_text"], "203.0.113.0/24", "{r}");
    let inherits = inherits["key"].as_str().unwrap();
    assert_eq!(list_from(&s, inherits, "203.0.113.9").0, 200);
    let (status, r) = list_from(&s, inherits, "198.51.100.1");
    assert_eq!((status, code(&r)), (403, -33004));
}

#[test]
fn a_malformed_forwarded_hop_leaves_the_client_unknown_and_refused() {
    let s = Server::start_with(&["--trusted-proxies", "127.0.0.1"]);
    // A key allowed only from the proxy's own address: the attack makes the client "be" it.
    let local = s.key(
        "local",
        "secret",
        &["execution"],
        json!({"ip_allowlist": "127.0.0.1"}),
    );
    for xff in [
        "garbage",
        "203.0.113.9, garbage",
        "1.2.3.4:99999",
        "<script>",
    ] {
        let (status, r) = list_from(&s, &local, xff);
        assert_eq!(
            (status, code(&r)),
            (403, -33004),
            "XFF {xff:?} was attributed to the proxy: {r}"
        );
    }
    // Forms with ports are addresses, not garbage.
    let remote = s.key(
        "remote",
        "secret",
        &["execution"],
        json!({"ip_allowlist": "1.2.3.4,2001:db8::/32"}),
    );
    assert_eq!(list_from(&s, &remote, "1.2.3.4:5678").0, 200);
    assert_eq!(list_from(&s, &remote, "[2001:db8::1]:443").0, 200);
    assert_eq!(list_from(&s, &remote, "1.2.3.5:5678").0, 403);
    // Keys without an allowlist do not need to know the client.
    let open = s.key("open", "secret", &["execution"], json!({}));
    assert_eq!(list_from(&s, &open, "garbage").0, 200);
}

#[test]
fn rotation_keeps_user_secrets_run_history_and_the_keys_it_created() {
    let s = Server::start();
    let jt = register_json_transform(&s);
    let scopes = [
        "execution",
        "secret.set",
        "secret.get",
        "key.create",
        "key.revoke",
    ];
    let old = s.key("owner", "secret", &scopes, json!({}));
    s.ok(&old, "secret", json!({"action": "set", "name": "MY_TOKEN", "value": "tok-0123456789abcdef", "scope": "user"}));
    let run = s.ok(
        &old,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [1, 2]}}),
    );
    let run_id = run["execution_id"].as_str().unwrap().to_string();
    s.ok(
        &old,
        "key",
        json!({"action": "create", "name": "owned-child", "scope": ["execution"]}),
    );

    let rotated = s.ok(&old, "key", json!({"action": "rotate", "name": "owner"}));
    let new = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(
        code(&s.call(&old, "execution", json!({"action": "list"}))),
        -33002
    );
    // Same user secrets, same history, same children.
    let got = s.ok(
        &new,
        "secret",
        json!({"action": "get", "name": "MY_TOKEN", "scope": "user"}),
    );
    assert_eq!(got["name"], "MY_TOKEN", "{got}");
    let listed = s.ok(&new, "execution", json!({"action": "list"}));
    assert_eq!(listed["count"], 1, "{listed}");
    s.ok(
        &new,
        "execution",
        json!({"action": "logs", "execution_id": run_id}),
    );
    let keys = s.ok(&new, "key", json!({"action": "list"}));
    let names: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"owned-child") && names.contains(&"owner"),
        "{names:?}"
    );
    s.ok(
        &new,
        "key",
        json!({"action": "revoke", "name": "owned-child"}),
    );
    // Another key still sees none of it.
    let other = s.key("other", "secret", &scopes, json!({}));
    assert_eq!(
        s.ok(&other, "execution", json!({"action": "list"}))["count"],
        0
    );
    let r = s.call(
        &other,
        "execution",
        json!({"action": "logs", "execution_id": run_id}),
    );
    assert_eq!(r["result"]["isError"], true, "{r}");
    let r = s.call(
        &other,
        "secret",
        json!({"action": "get", "name": "MY_TOKEN", "scope": "user"}),
    );
    assert_eq!(err_code(&r), -32602, "{r}");
}

#[test]
fn versions_outside_semver_are_refused_at_register_and_in_references() {
    let s = Server::start();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(wasm("json-transform"));
    for v in [
        "1.0.0-x:y",
        "1.0.0-<b>",
        "1.0.0-a\u{202e}b",
        "1.0.0-01",
        "v1.0.0",
    ] {
        let r = s.call(
            &s.admin,
            "component",
            json!({"action": "register", "manifest": manifest("acme.v", v), "wasm": b64}),
        );
        assert_eq!(code(&r), -33201, "{v:?}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("semver"),
            "{r}"
        );
    }
    let r = s.call(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": "r:acme.v:1.0.0-x:y", "input": {}}),
    );
    assert_eq!(code(&r), -33200, "{r}");
    assert_eq!(
        s.ok(
            &s.admin,
            "component",
            json!({"action": "search", "query": "acme"})
        )["count"],
        0
    );
}

#[test]
fn the_highest_version_follows_semver_precedence_for_pre_releases() {
    let s = Server::start();
    let bytes = wasm("json-transform");
    for v in ["1.0.0-rc.9", "1.0.0-rc.10", "1.0.0-rc.2", "1.0.0-beta.11"] {
        s.register(manifest("acme.pre", v), &bytes);
    }
    let r = s.ok(
        &s.admin,
        "component",
        json!({"action": "resolve", "reference": "r:acme.pre"}),
    );
    assert_eq!(r["reference"], "reagent:acme.pre:1.0.0-rc.10");
    let inspected = s.ok(
        &s.admin,
        "component",
        json!({"action": "inspect", "reference": "r:acme.pre"}),
    );
    assert_eq!(
        inspected["versions"],
        json!(["1.0.0-rc.10", "1.0.0-rc.9", "1.0.0-rc.2", "1.0.0-beta.11"])
    );
    s.register(manifest("acme.pre", "1.0.0"), &bytes);
    let r = s.ok(
        &s.admin,
        "component",
        json!({"action": "resolve", "reference": "r:acme.pre"}),
    );
    assert_eq!(
        r["reference"], "reagent:acme.pre:1.0.0",
        "a release is above its pre-releases"
    );
}

#[cfg(unix)]
#[test]
fn a_component_directory_with_a_symlink_out_of_the_root_is_refused() {
    let s = Server::start();
    // The server's components root is the workspace; the directory lives in target/.
    let rel = format!("target/e2e-symlink-{}", std::process::id());
    let dir = workspace().join(&rel);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let outside = TempDir::new("outside");
    let secret = outside.0.join("secret.wasm");
    std::fs::write(&secret, b"\0asm\x0d\0\x01\0 not for you").unwrap();
    let m = manifest("acme.leak", "0.1.0");
    std::fs::write(dir.join("cyfr-manifest.json"), m.to_string()).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("reagent.wasm")).unwrap();
    let r = s.call(
        &s.admin,
        "component",
        json!({"action": "register", "directory": rel}),
    );
    let text = r.to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code(&r), -33201, "{r}");
    assert!(text.contains("symlink"), "{r}");
    assert!(!text.contains("not for you"));
    assert_eq!(
        s.ok(
            &s.admin,
            "component",
            json!({"action": "search", "query": "leak"})
        )["count"],
        0
    );
}
