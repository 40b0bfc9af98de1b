//! Each tool doing its job, as a user sees it: answers, and the records listed afterwards.

use crate::support::{code, completed, fake_wasm, Harness, ADMIN};
use cyfr_core::db::Db;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn keys_are_created_listed_rotated_and_revoked() {
    let h = Harness::new().await;
    let created = h
        .ok(ADMIN, "key", json!({ "action": "create", "name": "ci", "scope": ["execution", "component.search"], "rate_limit": "10/1m" }))
        .await;
    let raw = created["key"].as_str().unwrap().to_string();
    assert!(raw.starts_with("cyfr_sk_"), "{created}");
    assert_eq!(created["scope"], json!(["execution", "component.search"]));
    assert_eq!(created["rate_limit"], "10/1m");
    // The new key works.
    h.ok(&raw, "component", json!({ "action": "search" })).await;

    let got = h
        .ok(ADMIN, "key", json!({ "action": "get", "name": "ci" }))
        .await;
    assert_eq!(got["name"], "ci", "{got}");
    assert!(
        !got.to_string().contains(&raw),
        "the raw key is shown only once: {got}"
    );
    let listed = h.ok(ADMIN, "key", json!({ "action": "list" })).await;
    let names: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert!(
        names.contains(&"ci") && names.contains(&"admin"),
        "{listed}"
    );

    let rotated = h
        .ok(ADMIN, "key", json!({ "action": "rotate", "name": "ci" }))
        .await;
    let new_raw = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_raw, raw);
    assert_eq!(rotated["replaces"], created["id"]);
    assert_eq!(
        code(&h.call(&raw, "system", json!({})).await),
        -33002,
        "the old key is dead"
    );
    h.ok(&new_raw, "system", json!({})).await;

    let revoked = h
        .ok(ADMIN, "key", json!({ "action": "revoke", "name": "ci" }))
        .await;
    assert_eq!(revoked["revoked"], true);
    assert_eq!(code(&h.call(&new_raw, "system", json!({})).await), -33002);
    let listed = h.ok(ADMIN, "key", json!({ "action": "list" })).await;
    assert!(!listed.to_string().contains("\"ci\""), "{listed}");
    let all = h
        .ok(
            ADMIN,
            "key",
            json!({ "action": "list", "include_revoked": true }),
        )
        .await;
    assert!(all.to_string().contains("\"ci\""), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_non_admin_key_makes_keys_only_within_its_own_scopes() {
    let h = Harness::new().await;
    let maker = h
        .key("maker", &["key.create", "execution"], json!({}))
        .await;
    let child = h
        .ok(
            &maker,
            "key",
            json!({ "action": "create", "name": "child", "scope": ["execution"] }),
        )
        .await;
    assert!(child["key"].as_str().unwrap().starts_with("cyfr_sk_"));
    let r = h
        .call(
            &maker,
            "key",
            json!({ "action": "create", "name": "wider", "scope": ["secret.get"] }),
        )
        .await;
    assert_eq!(code(&r), -33004, "{r}");
    let r = h
        .call(
            &maker,
            "key",
            json!({ "action": "create", "name": "boss", "type": "admin" }),
        )
        .await;
    assert_eq!(code(&r), -33004, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn secrets_are_stored_masked_granted_and_deleted() {
    let h = Harness::new().await;
    let value = "sk-live-0123456789abcdef";
    let stored = h
        .ok(
            ADMIN,
            "secret",
            json!({ "action": "set", "name": "API_TOKEN", "value": value }),
        )
        .await;
    assert_eq!(stored["status"], "stored", "{stored}");
    assert!(!stored.to_string().contains(value), "{stored}");
    let got = h
        .ok(
            ADMIN,
            "secret",
            json!({ "action": "get", "name": "API_TOKEN" }),
        )
        .await;
    assert_eq!(got["name"], "API_TOKEN");
    assert!(
        !got.to_string().contains(value),
        "a mask, never the value: {got}"
    );
    let listed = h.ok(ADMIN, "secret", json!({ "action": "list" })).await;
    assert_eq!(listed["count"], 1, "{listed}");
    assert!(!listed.to_string().contains(value));

    let reference = "catalyst:local.fetcher:0.1.0";
    let g = h
        .ok(
            ADMIN,
            "secret",
            json!({ "action": "grant", "name": "API_TOKEN", "reference": reference }),
        )
        .await;
    assert_eq!(g["granted"], true, "{g}");
    let can = h
        .ok(
            ADMIN,
            "secret",
            json!({ "action": "can_access", "name": "API_TOKEN", "reference": reference }),
        )
        .await;
    assert_eq!(can["allowed"], true, "{can}");
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "revoke", "name": "API_TOKEN", "reference": reference }),
    )
    .await;
    let can = h
        .ok(
            ADMIN,
            "secret",
            json!({ "action": "can_access", "name": "API_TOKEN", "reference": reference }),
        )
        .await;
    assert_eq!(can["allowed"], false, "{can}");

    let d = h
        .ok(
            ADMIN,
            "secret",
            json!({ "action": "delete", "name": "API_TOKEN" }),
        )
        .await;
    assert_eq!(d["deleted"], true, "{d}");
    let listed = h.ok(ADMIN, "secret", json!({ "action": "list" })).await;
    assert_eq!(listed["count"], 0, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_granted_secret_reaches_the_catalyst_and_never_its_answer() {
    let h = Harness::new().await;
    let value = "sk-live-0123456789abcdef";
    let reference = h.register("catalyst", "local.fetcher", "0.1.0").await;
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "set", "name": "API_TOKEN", "value": value }),
    )
    .await;
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "grant", "name": "API_TOKEN", "reference": reference }),
    )
    .await;
    h.ok(ADMIN, "policy", json!({ "action": "set", "reference": reference, "field": "allowed_domains", "value": ["api.example.com"] })).await;
    h.host().answer(Ok(completed(json!({ "echo": value }))));
    let r = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "run", "reference": reference }),
        )
        .await;
    assert!(!r.to_string().contains(value), "redacted: {r}");
    let runs = h.host().runs.borrow();
    assert_eq!(
        runs[0].secrets.get("API_TOKEN").map(String::as_str),
        Some(value)
    );
    let egress = runs[0]
        .egress
        .as_ref()
        .expect("a catalyst gets its egress policy");
    assert_eq!(egress.allowed_domains, ["api.example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn policies_are_set_read_and_deleted() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "test.policy", "0.1.0").await;
    h.ok(
        ADMIN,
        "policy",
        json!({ "action": "set", "reference": reference, "field": "timeout", "value": "5s" }),
    )
    .await;
    h.ok(ADMIN, "policy", json!({ "action": "update_field", "reference": reference, "field": "max_request_size", "value": "1KB" })).await;
    let got = h
        .ok(
            ADMIN,
            "policy",
            json!({ "action": "get", "reference": reference }),
        )
        .await;
    let set: Vec<&str> = got["fields_set"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        set.contains(&"timeout") && set.contains(&"max_request_size"),
        "{got}"
    );
    let effective = h
        .ok(
            ADMIN,
            "policy",
            json!({ "action": "get_effective", "reference": reference }),
        )
        .await;
    assert_eq!(effective["policy"], got["policy"], "{effective}");
    let listed = h.ok(ADMIN, "policy", json!({ "action": "list" })).await;
    assert_eq!(listed["count"], 1, "{listed}");
    // The run is held to it.
    h.ok(
        ADMIN,
        "execution",
        json!({ "action": "run", "reference": reference }),
    )
    .await;
    assert_eq!(h.host().runs.borrow()[0].limits.timeout_ms, 5000);
    assert_eq!(h.host().runs.borrow()[0].limits.max_input_bytes, 1024);
    h.ok(
        ADMIN,
        "policy",
        json!({ "action": "delete", "reference": reference }),
    )
    .await;
    let listed = h.ok(ADMIN, "policy", json!({ "action": "list" })).await;
    assert_eq!(listed["count"], 0, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn components_are_registered_found_inspected_and_resolved() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "test.finder", "0.1.0").await;
    assert_eq!(reference, "reagent:test.finder:0.1.0");
    h.register("reagent", "test.finder", "0.2.0").await;
    let found = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "search", "query": "finder" }),
        )
        .await;
    assert!(found["count"].as_u64().unwrap() >= 1, "{found}");
    let inspected = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "inspect", "reference": "r:test.finder" }),
        )
        .await;
    assert_eq!(
        inspected["versions"],
        json!(["0.2.0", "0.1.0"]),
        "{inspected}"
    );
    assert_eq!(
        inspected["manifest"]["id"], "reagent:test.finder",
        "{inspected}"
    );
    let resolved = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "resolve", "reference": "r:test.finder" }),
        )
        .await;
    assert_eq!(resolved["version"], "0.2.0", "{resolved}");
    let digest = format!("sha256:{}", {
        use sha2::Digest;
        sha2::Sha256::digest(fake_wasm("test.finder"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    assert_eq!(resolved["digest"], digest);
    let status = h.ok(ADMIN, "system", json!({})).await;
    assert_eq!(status["components"], 2, "{status}");
    // Not a component: refused with -33201.
    use base64::Engine;
    let r = h
        .call(ADMIN, "component", json!({ "action": "register", "manifest": crate::support::manifest("reagent", "test.bad", "0.1.0"), "wasm": base64::engine::general_purpose::STANDARD.encode(b"not wasm at all") }))
        .await;
    assert_eq!(code(&r), -33201, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn runs_are_recorded_listed_and_their_logs_read() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "test.runner", "0.1.0").await;
    let mut answer = completed(json!({ "sum": 3 }));
    answer.stdout = "hello".into();
    h.host().answer(Ok(answer));
    let r = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "run", "reference": reference, "input": { "a": 1, "b": 2 } }),
        )
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["result"], json!({ "sum": 3 }));
    let id = r["execution_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("exec_"));
    {
        let runs = h.host().runs.borrow();
        assert_eq!(runs[0].execution_id, id);
        assert_eq!(runs[0].input, r#"{"a":1,"b":2}"#);
        assert_eq!(runs[0].reference, reference);
        assert!(runs[0].callback.is_none(), "only formulas call back");
    }
    let listed = h.ok(ADMIN, "execution", json!({ "action": "list" })).await;
    assert_eq!(
        listed["executions"][0]["execution_id"],
        id.as_str(),
        "{listed}"
    );
    assert_eq!(listed["executions"][0]["status"], "completed");
    let logs = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "logs", "execution_id": id }),
        )
        .await;
    assert_eq!(logs["stdout"], "hello", "{logs}");
    // A finished run is not cancelled.
    let c = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "cancel", "execution_id": id }),
        )
        .await;
    assert_eq!(
        (c["cancelled"].as_bool(), c["status"].as_str()),
        (Some(false), Some("completed")),
        "{c}"
    );
    // Someone else's runs look missing.
    let other = h.key("other", &["execution"], json!({})).await;
    let listed = h.ok(&other, "execution", json!({ "action": "list" })).await;
    assert_eq!(listed["count"], 0, "{listed}");
    let r = h
        .call(
            &other,
            "execution",
            json!({ "action": "logs", "execution_id": id }),
        )
        .await;
    assert_eq!(crate::support::tool_error_code(&r), -32602, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn encryption_instructions_are_given_in_a_session() {
    let h = Harness::with(|c| c.session_encryption = true).await;
    let sid = h.initialize(ADMIN).await;
    let r = h
        .call_in(&sid, "get_encryption_instructions", json!({}))
        .await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(r["result"]["isError"], false, "{r}");
    // Outside a session there is no key to seal to.
    let r = h
        .call(ADMIN, "get_encryption_instructions", json!({}))
        .await;
    assert_eq!(code(&r), -33301, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn system_status_and_the_tool_list_need_only_a_key() {
    let h = Harness::new().await;
    let key = h.key("reader", &["audit.list"], json!({})).await;
    let status = h.ok(&key, "system", json!({})).await;
    assert_eq!(status["status"], "ok", "{status}");
    let tools = h.rpc(Some(&key), "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for (tool, _, _) in cyfr_core::scopes::TABLE {
        assert!(names.contains(tool), "{tool} missing from tools/list");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn clear_removes_the_callers_own_secrets_and_leaves_shared_ones() {
    let h = Harness::new().await;
    for name in ["MINE_A", "MINE_B"] {
        h.ok(
            ADMIN,
            "secret",
            json!({ "action": "set", "name": name, "value": "v-123456789", "scope": "user" }),
        )
        .await;
    }
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "set", "name": "SHARED", "value": "v-123456789" }),
    )
    .await;
    let cleared = h.ok(ADMIN, "secret", json!({ "action": "clear" })).await;
    assert_eq!(cleared["deleted"], 2, "{cleared}");
    let mine = h
        .ok(
            ADMIN,
            "secret",
            json!({ "action": "list", "scope": "user" }),
        )
        .await;
    assert_eq!(mine["count"], 0, "{mine}");
    let shared = h.ok(ADMIN, "secret", json!({ "action": "list" })).await;
    assert_eq!(shared["count"], 1, "{shared}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_set_racing_another_writer_starts_over_and_stays_readable() {
    let h = Harness::new().await;
    let set = |v: &'static str| json!({ "action": "set", "name": "TOKEN", "value": v });
    h.ok(ADMIN, "secret", set("first-value")).await;
    // Another `set` lands between this one's read and its write: the version this one
    // encrypted for is taken, so it must read again rather than overwrite.
    h.app.db.inner().meddle(
        "INSERT INTO secrets",
        "UPDATE secrets SET version = version + 1 WHERE name = 'TOKEN'",
    );
    let stored = h.ok(ADMIN, "secret", set("second-value-xyz")).await;
    assert_eq!(stored["version"], 3, "{stored}");
    let got = h
        .ok(ADMIN, "secret", json!({ "action": "get", "name": "TOKEN" }))
        .await;
    assert_eq!(got["length"], 16, "the second value, decrypted: {got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_first_set_never_stores_a_value_under_a_data_key_that_lost_the_race() {
    let h = Harness::new().await;
    // Another first writer's data key wins the insert; this one's value was encrypted
    // under a key that was never stored, so it must not be written.
    h.app.db.inner().meddle(
        "INSERT OR IGNORE INTO data_keys",
        "INSERT INTO data_keys (owner, version, kek_id, wrapped, created_at) VALUES ('org', 1, 'other', X'00', 0)",
    );
    let r = h
        .call(
            ADMIN,
            "secret",
            json!({ "action": "set", "name": "TOKEN", "value": "lost-value" }),
        )
        .await;
    assert!(
        r.get("error").is_some() || r["result"]["isError"] == true,
        "the retry reads the other key (unusable here) and fails: {r}"
    );
    let listed = h
        .ok(ADMIN, "secret", json!({ "action": "list", "scope": "org" }))
        .await;
    assert_eq!(
        listed["count"], 0,
        "nothing stored that cannot be read: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_taken_version_is_kept_unless_replace_is_asked_and_a_refusal_stores_nothing() {
    use base64::Engine;
    let h = Harness::new().await;
    let b64 = |tag: &str| base64::engine::general_purpose::STANDARD.encode(fake_wasm(tag));
    let register = |tag: &str, replace: bool| json!({ "action": "register", "manifest": crate::support::manifest("reagent", "test.same", "1.0.0"), "wasm": b64(tag), "replace": replace });
    let first = h.ok(ADMIN, "component", register("one", false)).await;
    // The same bytes again: the registration as it was.
    let again = h.ok(ADMIN, "component", register("one", false)).await;
    assert_eq!(again["digest"], first["digest"], "{again}");
    // Other bytes under the same version: refused, and their artifact is not kept.
    let r = h.call(ADMIN, "component", register("two", false)).await;
    assert!(
        r.to_string().contains("bump the version"),
        "refused with the way out: {r}"
    );
    let artifacts = h
        .app
        .db
        .inner()
        .query("SELECT count(*) AS n FROM artifacts", &[])
        .await
        .unwrap();
    assert_eq!(artifacts.first().unwrap().int("n"), 1, "no orphan artifact");
    let replaced = h.ok(ADMIN, "component", register("two", true)).await;
    assert_ne!(replaced["digest"], first["digest"], "{replaced}");
    let inspected = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "inspect", "reference": "reagent:test.same:1.0.0" }),
        )
        .await;
    assert_eq!(inspected["digest"], replaced["digest"], "{inspected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_rotation_racing_a_revoke_makes_no_successor() {
    let h = Harness::new().await;
    h.key("spare", &["execution"], json!({})).await;
    // Another request revokes the key between this rotation's read and its write: the
    // rotation must not hand out a successor of a key that is no longer active.
    h.app.db.inner().meddle(
        "UPDATE api_keys SET revoked_at",
        "UPDATE api_keys SET revoked_at = 1 WHERE name = 'spare'",
    );
    let r = h
        .call(ADMIN, "key", json!({ "action": "rotate", "name": "spare" }))
        .await;
    assert!(
        r.get("error").is_some() || r["result"]["isError"] == true,
        "refused: {r}"
    );
    let listed = h.ok(ADMIN, "key", json!({ "action": "list" })).await;
    assert!(
        !listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "spare"),
        "no active key named spare: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_rotated_key_is_refused_and_its_successor_works_and_rotating_it_again_fails() {
    let h = Harness::new().await;
    let old = h.key("spare", &["component.search"], json!({})).await;
    let first = h
        .ok(ADMIN, "key", json!({ "action": "rotate", "name": "spare" }))
        .await;
    let new = first["key"].as_str().unwrap().to_string();
    let id_of_old = first["replaces"]
        .as_str()
        .expect("rotate names the key it replaces");
    let status = json!({ "action": "status" });
    assert!(h
        .call(&old, "system", status.clone())
        .await
        .get("error")
        .is_some());
    h.ok(&new, "system", status).await;
    let again = h
        .call(ADMIN, "key", json!({ "action": "rotate", "id": id_of_old }))
        .await;
    assert!(
        again.get("error").is_some() || again["result"]["isError"] == true,
        "a revoked key has no successor to make: {again}"
    );
}
