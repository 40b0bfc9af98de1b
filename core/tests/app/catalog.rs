//! The catalogue's cheaper tools (issue 11, item 4): component categories, blobs, publish
//! and pull; policy.check_rate_limit; the guide and config tools. Each: what a user gets,
//! and what is refused.

use crate::support::{fake_wasm, manifest, Harness, ADMIN};
use base64::Engine;
use serde_json::{json, Value as Json};

/// The code of a failed call, whether a JSON-RPC error or a tool error result.
fn failure(r: &Json) -> i64 {
    r["error"]["code"]
        .as_i64()
        .or_else(|| r["result"]["structuredContent"]["error"]["code"].as_i64())
        .unwrap_or_else(|| panic!("expected a failure, got {r}"))
}

/// The message of a failed call.
fn message(r: &Json) -> String {
    r["error"]["message"]
        .as_str()
        .or_else(|| r["result"]["structuredContent"]["error"]["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Registers `ns_name` 0.1.0 (a catalyst) with a README and config defaults.
async fn with_files(h: &Harness, ns_name: &str) -> String {
    let r = h
        .ok(
            ADMIN,
            "component",
            json!({
                "action": "register",
                "manifest": manifest("catalyst", ns_name, "0.1.0"),
                "wasm": b64(&fake_wasm(ns_name)),
                "readme": "# Claude\n\nCalls the Anthropic API.",
                "config": "{\"model\": \"claude-small\", \"max_tokens\": 256}",
            }),
        )
        .await;
    r["reference"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn categories_count_components_per_type_and_blobs_come_back_by_digest() {
    let h = Harness::new().await;
    let reader = h
        .key("reader", &["component.search", "component.info"], json!({}))
        .await;
    h.register("reagent", "local.a", "0.1.0").await;
    h.register("reagent", "local.a", "0.2.0").await;
    let b = h.register("reagent", "local.b", "0.1.0").await;
    h.register("formula", "local.f", "0.1.0").await;
    let cats = h
        .ok(&reader, "component", json!({ "action": "categories" }))
        .await;
    let count = |name: &str| {
        cats["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["count"].clone())
    };
    assert_eq!(
        count("reagent"),
        Some(json!(2)),
        "two components, three versions: {cats}"
    );
    assert_eq!(count("catalyst"), Some(json!(0)), "{cats}");
    assert_eq!(count("formula"), Some(json!(1)), "{cats}");
    assert!(cats["categories"][0]["description"].as_str().unwrap().len() > 10);

    let digest = h
        .ok(
            &reader,
            "component",
            json!({ "action": "resolve", "reference": b }),
        )
        .await["digest"]
        .clone();
    let blob = h
        .ok(
            &reader,
            "component",
            json!({ "action": "get_blob", "digest": digest }),
        )
        .await;
    assert_eq!(blob["bytes"], b64(&fake_wasm("local.b")), "{blob}");
    assert_eq!(blob["size"], fake_wasm("local.b").len());

    // An unknown digest, a malformed one, and a caller without component.info.
    let unknown = format!("sha256:{}", "0".repeat(64));
    let r = h
        .call(
            &reader,
            "component",
            json!({ "action": "get_blob", "digest": unknown }),
        )
        .await;
    assert_eq!(failure(&r), -33200, "{r}");
    let r = h
        .call(
            &reader,
            "component",
            json!({ "action": "get_blob", "digest": "../../etc/passwd" }),
        )
        .await;
    assert_eq!(failure(&r), -32602, "{r}");
    let searcher = h.key("searcher", &["component.search"], json!({})).await;
    let r = h
        .call(
            &searcher,
            "component",
            json!({ "action": "get_blob", "digest": digest }),
        )
        .await;
    assert_eq!(failure(&r), -33004, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn publish_registers_an_inline_artifact_for_admins_only_and_pull_says_why_not() {
    let h = Harness::new().await;
    let wasm = b64(&fake_wasm("pub"));
    let p = h
        .ok(
            ADMIN,
            "component",
            json!({
                "action": "publish",
                "component_ref": "reagent:local.published:1.0.0",
                "artifact": { "base64": wasm },
                "description": "made by publish",
            }),
        )
        .await;
    assert_eq!(p["status"], "published", "{p}");
    assert_eq!(p["reference"], "reagent:local.published:1.0.0");
    let found = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "search", "query": "published" }),
        )
        .await;
    assert_eq!(found["count"], 1, "{found}");
    assert_eq!(found["components"][0]["description"], "made by publish");

    // Other bytes under the same version, no version, a path artifact, a non-admin.
    let r = h
        .call(ADMIN, "component", json!({ "action": "publish", "reference": "r:local.published:1.0.0", "artifact": { "base64": b64(&fake_wasm("other")) } }))
        .await;
    assert_eq!(failure(&r), -33201, "{r}");
    let r = h
        .call(ADMIN, "component", json!({ "action": "publish", "reference": "r:local.published", "artifact": { "base64": wasm } }))
        .await;
    assert!(message(&r).contains("version"), "{r}");
    let r = h
        .call(ADMIN, "component", json!({ "action": "publish", "reference": "r:local.x:0.1.0", "artifact": { "path": "/etc/passwd" } }))
        .await;
    assert_eq!(failure(&r), -32602, "{r}");
    let r = h
        .call(ADMIN, "component", json!({ "action": "publish", "reference": "r:local.x:0.1.0", "manifest": manifest("reagent", "local.y", "0.1.0"), "artifact": { "base64": wasm } }))
        .await;
    assert_eq!(failure(&r), -32602, "a manifest for another component: {r}");
    let all = h.key("all", cyfr_core::scopes::SCOPES, json!({})).await;
    let r = h
        .call(&all, "component", json!({ "action": "publish", "reference": "r:local.z:0.1.0", "artifact": { "base64": wasm } }))
        .await;
    assert_eq!(failure(&r), -33004, "{r}");

    let r = h
        .call(
            &all,
            "component",
            json!({ "action": "pull", "reference": "r:local.published:1.0.0" }),
        )
        .await;
    assert_eq!(failure(&r), -33202, "{r}");
    assert!(message(&r).contains("no remote registry"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn check_rate_limit_counts_down_with_runs_without_taking_any() {
    let h = Harness::new().await;
    let key = h
        .key("runner", &["execution", "policy.get"], json!({}))
        .await;
    let r = h.register("reagent", "local.limited", "0.1.0").await;
    h.ok(ADMIN, "policy", json!({ "action": "set", "reference": r, "field": "rate_limit", "value": { "requests": 2, "window": "1m" } }))
        .await;
    let check = || {
        h.ok(
            &key,
            "policy",
            json!({ "action": "check_rate_limit", "reference": r }),
        )
    };
    let first = check().await;
    assert_eq!(first["allowed"], true, "{first}");
    assert_eq!(first["remaining"], 2, "{first}");
    assert_eq!(check().await["remaining"], 2, "checking takes nothing");
    for left in [1, 0] {
        h.host().answer(Ok(crate::support::completed(json!({}))));
        h.ok(
            &key,
            "execution",
            json!({ "action": "run", "reference": r }),
        )
        .await;
        let c = check().await;
        if left > 0 {
            assert_eq!(c["remaining"], left, "{c}");
        } else {
            assert_eq!(c["allowed"], false, "{c}");
            assert!(c["retry_after_ms"].as_u64().unwrap() > 0, "{c}");
        }
    }
    // The run itself is refused, as the check said.
    let run = h
        .call(
            &key,
            "execution",
            json!({ "action": "run", "reference": r }),
        )
        .await;
    assert_eq!(failure(&run), -33005, "{run}");

    let stranger = h.key("stranger", &["execution"], json!({})).await;
    let r2 = h
        .call(
            &stranger,
            "policy",
            json!({ "action": "check_rate_limit", "reference": r }),
        )
        .await;
    assert_eq!(failure(&r2), -33004, "{r2}");
    let r3 = h
        .call(
            &key,
            "policy",
            json!({ "action": "check_rate_limit", "reference": "r:local.nothing:0.1.0" }),
        )
        .await;
    assert_eq!(failure(&r3), -33200, "{r3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn guides_are_cyfrs_own_docs_and_a_readme_is_the_registered_one() {
    let h = Harness::new().await;
    let key = h.key("reader", &["execution"], json!({})).await;
    let list = h.ok(&key, "guide", json!({ "action": "list" })).await;
    let names: Vec<&str> = list["guides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["integration-guide", "component-guide"], "{list}");
    let g = h
        .ok(
            &key,
            "guide",
            json!({ "action": "get", "name": "integration-guide" }),
        )
        .await;
    assert_eq!(g["format"], "markdown");
    let text = g["content"].as_str().unwrap();
    assert!(
        text.contains("/mcp") && text.contains("cyfr key create"),
        "the integration guide is cyfr's"
    );
    let c = h
        .ok(
            &key,
            "guide",
            json!({ "action": "get", "name": "component-guide" }),
        )
        .await;
    assert!(c["content"]
        .as_str()
        .unwrap()
        .contains("cyfr-manifest.json"));
    let r = h
        .call(
            &key,
            "guide",
            json!({ "action": "get", "name": "../../etc/passwd" }),
        )
        .await;
    assert_eq!(failure(&r), -32602, "{r}");

    let reference = with_files(&h, "local.claude").await;
    let info = h.key("info", &["component.info"], json!({})).await;
    let readme = h
        .ok(
            &info,
            "guide",
            json!({ "action": "readme", "component_ref": "c:local.claude" }),
        )
        .await;
    assert_eq!(readme["reference"], reference);
    assert!(
        readme["content"].as_str().unwrap().starts_with("# Claude"),
        "{readme}"
    );
    // Without component.info; for a component registered without a README.
    let r = h
        .call(
            &key,
            "guide",
            json!({ "action": "readme", "reference": reference }),
        )
        .await;
    assert_eq!(failure(&r), -33004, "{r}");
    let bare = h.register("reagent", "local.bare", "0.1.0").await;
    let r = h
        .call(
            &info,
            "guide",
            json!({ "action": "readme", "reference": bare }),
        )
        .await;
    assert!(message(&r).contains("without a README.md"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn config_overrides_lie_over_the_registered_defaults_for_every_version() {
    let h = Harness::new().await;
    let reference = with_files(&h, "local.claude").await;
    let op = h.key("op", &["policy.get", "policy.set"], json!({})).await;
    let all = h
        .ok(
            &op,
            "config",
            json!({ "action": "get_all", "component_ref": reference }),
        )
        .await;
    assert_eq!(
        all["config"],
        json!({ "model": "claude-small", "max_tokens": 256 }),
        "{all}"
    );

    let set = h
        .ok(&op, "config", json!({ "action": "set", "component_ref": "c:local.claude", "key": "model", "value": "claude-large" }))
        .await;
    assert_eq!(set["stored"], true, "{set}");
    let got = h
        .ok(
            &op,
            "config",
            json!({ "action": "get", "reference": reference, "key": "model" }),
        )
        .await;
    assert_eq!(
        (got["value"].clone(), got["source"].clone()),
        (json!("claude-large"), json!("override"))
    );
    let got = h
        .ok(
            &op,
            "config",
            json!({ "action": "get", "reference": reference, "key": "max_tokens" }),
        )
        .await;
    assert_eq!(
        (got["value"].clone(), got["source"].clone()),
        (json!(256), json!("default"))
    );

    // A new version keeps the overrides over its own defaults.
    h.ok(
        ADMIN,
        "component",
        json!({
            "action": "register",
            "manifest": manifest("catalyst", "local.claude", "0.2.0"),
            "wasm": b64(&fake_wasm("claude-2")),
            "config": { "model": "claude-medium", "temperature": 0.5 },
        }),
    )
    .await;
    let all = h
        .ok(
            &op,
            "config",
            json!({ "action": "get_all", "reference": "c:local.claude" }),
        )
        .await;
    assert_eq!(all["component_ref"], "catalyst:local.claude:0.2.0");
    assert_eq!(
        all["config"],
        json!({ "model": "claude-large", "temperature": 0.5 }),
        "{all}"
    );
    let listed = h.ok(&op, "config", json!({ "action": "list" })).await;
    assert_eq!(
        listed["components"],
        json!([{ "component_ref": "catalyst:local.claude", "keys": 1 }])
    );

    let del = h
        .ok(
            &op,
            "config",
            json!({ "action": "delete", "reference": reference, "key": "model" }),
        )
        .await;
    assert_eq!(del["deleted"], true);
    let got = h
        .ok(
            &op,
            "config",
            json!({ "action": "get", "reference": reference, "key": "model" }),
        )
        .await;
    assert_eq!(got["value"], "claude-small", "back to the default: {got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn config_refuses_readers_writing_unregistered_components_and_bad_keys() {
    let h = Harness::new().await;
    let reference = with_files(&h, "local.claude").await;
    let reader = h.key("reader", &["policy.get"], json!({})).await;
    let r = h
        .call(
            &reader,
            "config",
            json!({ "action": "set", "reference": reference, "key": "model", "value": "x" }),
        )
        .await;
    assert_eq!(failure(&r), -33004, "{r}");
    let none = h.key("none", &["execution"], json!({})).await;
    let r = h
        .call(
            &none,
            "config",
            json!({ "action": "get_all", "reference": reference }),
        )
        .await;
    assert_eq!(failure(&r), -33004, "{r}");

    let op = h.key("op", &["policy.get", "policy.set"], json!({})).await;
    let r = h
        .call(&op, "config", json!({ "action": "set", "reference": "c:local.ghost:0.1.0", "key": "model", "value": "x" }))
        .await;
    assert_eq!(failure(&r), -33200, "{r}");
    assert_eq!(
        h.ok(&op, "config", json!({ "action": "list" })).await["count"],
        0,
        "nothing stored for a ghost"
    );
    for key in ["", "a b", "../x", &"k".repeat(65)] {
        let r = h
            .call(
                &op,
                "config",
                json!({ "action": "set", "reference": reference, "key": key, "value": 1 }),
            )
            .await;
        assert_eq!(failure(&r), -32602, "{key:?}: {r}");
    }
    let big = "x".repeat(5000);
    let r = h
        .call(
            &op,
            "config",
            json!({ "action": "set", "reference": reference, "key": "big", "value": big }),
        )
        .await;
    assert_eq!(failure(&r), -32602, "{r}");
    // At most 64 keys per component: the 65th is refused, an existing one still updates.
    for i in 0..64 {
        h.ok(
            &op,
            "config",
            json!({ "action": "set", "reference": reference, "key": format!("k{i}"), "value": i }),
        )
        .await;
    }
    let r = h
        .call(
            &op,
            "config",
            json!({ "action": "set", "reference": reference, "key": "k64", "value": 1 }),
        )
        .await;
    assert!(message(&r).contains("64 config keys"), "{r}");
    h.ok(
        &op,
        "config",
        json!({ "action": "set", "reference": reference, "key": "k0", "value": "again" }),
    )
    .await;

    // config.json that is not an object is refused at registration.
    let r = h
        .call(ADMIN, "component", json!({ "action": "register", "manifest": manifest("reagent", "local.badcfg", "0.1.0"), "wasm": b64(&fake_wasm("badcfg")), "config": "[1, 2]" }))
        .await;
    assert_eq!(failure(&r), -33201, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_formula_reads_its_config_through_the_tools_when_allowed() {
    use crate::support::Step;
    let h = Harness::new().await;
    let formula = h
        .ok(
            ADMIN,
            "component",
            json!({
                "action": "register",
                "manifest": manifest("formula", "local.flow", "0.1.0"),
                "wasm": b64(&fake_wasm("flow")),
                "config": { "model": "claude-small" },
            }),
        )
        .await["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let read = Step::Tool(
        json!({ "tool": "config", "action": "get_all", "args": { "reference": formula } }),
    );
    h.host().guest.replace(vec![read.clone()]);
    let key = h
        .key("caller", &["execution", "policy.get"], json!({}))
        .await;
    async fn run(h: &Harness, key: &str, formula: &str) -> Json {
        let r = h
            .ok(
                key,
                "execution",
                json!({ "action": "run", "reference": formula }),
            )
            .await;
        r["result"][0]["body"].clone()
    }
    // Denied by default: config.get_all is not in the formula's allowed_tools.
    assert_eq!(
        run(&h, &key, &formula).await["error"]["type"],
        "tool_denied"
    );
    h.ok(ADMIN, "policy", json!({ "action": "set", "reference": formula, "field": "allowed_tools", "value": ["config.get_all"] }))
        .await;
    h.host().guest.replace(vec![read.clone()]);
    let body = run(&h, &key, &formula).await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(
        body["result"]["config"],
        json!({ "model": "claude-small" }),
        "{body}"
    );
    // A caller without policy.get gets nothing through its formula either.
    let weak = h.key("weak", &["execution"], json!({})).await;
    h.host().guest.replace(vec![read]);
    assert_eq!(
        run(&h, &weak, &formula).await["error"]["type"],
        "tool_denied"
    );
}
