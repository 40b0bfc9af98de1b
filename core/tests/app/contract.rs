//! CYFR's wire contract (`CYFR-CONTRACT.md` §3-§5), one test per action: the request as a
//! CYFR client sends it is accepted, and the fields CYFR answers are there with CYFR's types.
//! cyfr's own fields are pinned by `happy`; these pin only what CYFR's clients read.

use crate::support::{code, mcp_request, tool_error_code, Harness, ADMIN};
use cyfr_core::http::HttpRequest;
use serde_json::{json, Value as Json};

const CLAUDE: &str = "catalyst:local.claude:0.1.0";

/// A harness with `catalyst:local.claude:0.1.0` registered and allowed to reach one domain.
async fn with_claude() -> Harness {
    let h = Harness::new().await;
    h.register("catalyst", "local.claude", "0.1.0").await;
    h.ok(ADMIN, "policy", json!({ "action": "update_field", "component_ref": CLAUDE, "field": "allowed_domains", "value": "[\"api.anthropic.com\"]" })).await;
    h
}

/// Runs the catalyst as the admin; the run's answer.
async fn run_claude(h: &Harness) -> Json {
    h.ok(
        ADMIN,
        "execution",
        json!({ "action": "run", "reference": CLAUDE }),
    )
    .await
}

/// `policy.<action>` of the catalyst, named by CYFR's `component_ref` as `r`.
async fn on_claude(h: &Harness, action: &str, r: &str) -> Json {
    h.ok(
        ADMIN,
        "policy",
        json!({ "action": action, "component_ref": r }),
    )
    .await
}

/// `tool.action` of the key or secret `name`, as the admin.
async fn named(h: &Harness, tool: &str, action: &str, name: &str) -> Json {
    h.ok(ADMIN, tool, json!({ "action": action, "name": name }))
        .await
}

fn is_str(v: &Json) -> bool {
    v.is_string()
}

// ---- execution ----

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn execution_run_takes_component_ref_and_answers_cyfrs_fields() {
    let h = with_claude().await;
    let r = h
        .ok(ADMIN, "execution", json!({ "action": "run", "component_ref": { "registry": CLAUDE }, "input": { "q": 1 } }))
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    for f in [
        "execution_id",
        "component_type",
        "component_digest",
        "user_id",
    ] {
        assert!(is_str(&r[f]), "{f}: {r}");
    }
    assert!(r["duration_ms"].is_u64(), "{r}");
    assert_eq!(r["result"], json!({ "ok": true }));
    // CYFR echoes the reference object it was given; the canonical string is `component_ref`.
    assert_eq!(r["reference"], json!({ "registry": CLAUDE }), "{r}");
    assert_eq!(r["component_ref"], CLAUDE);
    let applied = &r["policy_applied"];
    for f in [
        "allowed_domains",
        "rate_limit",
        "max_memory_bytes",
        "timeout",
        "allowed_tools",
        "allowed_storage_paths",
    ] {
        assert!(!applied[f].is_null(), "policy_applied.{f}: {r}");
    }
    assert_eq!(applied["allowed_domains"], json!(["api.anthropic.com"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn execution_list_answers_completed_at_user_id_and_filters_by_cyfrs_status_words() {
    let h = with_claude().await;
    run_claude(&h).await;
    let l = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "list", "limit": 20, "status": "completed" }),
        )
        .await;
    assert_eq!(l["count"], 1, "{l}");
    assert!(is_str(&l["user_id"]), "{l}");
    let row = &l["executions"][0];
    for f in ["execution_id", "status", "started_at", "completed_at"] {
        assert!(is_str(&row[f]), "{f}: {l}");
    }
    assert!(row["duration_ms"].is_i64(), "{l}");
    assert!(row.get("error").is_some(), "{l}");
    assert_eq!(row["component_ref"], CLAUDE);
    let none = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "list", "status": "running" }),
        )
        .await;
    assert_eq!(none["count"], 0, "{none}");
    let bad = h
        .call(
            ADMIN,
            "execution",
            json!({ "action": "list", "status": "sleeping" }),
        )
        .await;
    assert_eq!(tool_error_code(&bad), -32602, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn execution_logs_answers_cyfrs_record_fields() {
    let h = with_claude().await;
    let run = run_claude(&h).await;
    let l = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "logs", "execution_id": run["execution_id"] }),
        )
        .await;
    for f in [
        "execution_id",
        "status",
        "started_at",
        "completed_at",
        "component_type",
        "component_digest",
        "reference",
        "logs",
    ] {
        assert!(is_str(&l[f]), "{f}: {l}");
    }
    assert_eq!(l["status"], "completed");
    assert!(l["duration_ms"].is_i64() && l.get("error").is_some(), "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn execution_cancel_answers_cancelled_and_execution_id() {
    let h = with_claude().await;
    let run = run_claude(&h).await;
    let c = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "cancel", "execution_id": run["execution_id"] }),
        )
        .await;
    assert_eq!(c["execution_id"], run["execution_id"]);
    assert_eq!(
        c["cancelled"], false,
        "a finished run is not cancelled: {c}"
    );
    assert_eq!(c["status"], "completed");
    assert!(
        c["message"].as_str().unwrap().contains("already completed"),
        "{c}"
    );
}

// ---- component ----

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn component_search_rows_carry_name_publisher_type_ref_and_total() {
    let h = with_claude().await;
    h.register("reagent", "cyfr.text-stats", "1.2.0").await;
    let s = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "search", "query": "claude", "limit": 20 }),
        )
        .await;
    assert_eq!(s["total"], 1, "{s}");
    let row = &s["components"][0];
    assert_eq!(row["name"], "claude", "{s}");
    assert_eq!(row["publisher"], "local");
    assert_eq!(row["component_type"], "catalyst");
    assert_eq!(row["component_ref"], CLAUDE);
    assert_eq!(row["version"], "0.1.0");
    assert_eq!(row["id"], "catalyst:local.claude");
    for f in [
        "description",
        "digest",
        "inserted_at",
        "updated_at",
        "source",
    ] {
        assert!(is_str(&row[f]), "{f}: {s}");
    }
    assert!(row["tags"].is_array(), "{s}");
    // The reference CYFR's `agent` formula builds from a row names the component.
    let built = format!(
        "catalyst:{}.{}:{}",
        row["publisher"].as_str().unwrap(),
        row["name"].as_str().unwrap(),
        row["version"].as_str().unwrap()
    );
    assert_eq!(built, CLAUDE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn component_inspect_takes_untyped_bare_and_at_references() {
    let h = with_claude().await;
    h.register("catalyst", "local.claude", "0.2.0").await;
    for r in [
        "local.claude:0.1.0",
        "claude:0.1.0",
        "claude@0.1.0",
        "c:local.claude@0.1.0",
        "local:claude:0.1.0",
    ] {
        let got = h
            .ok(
                ADMIN,
                "component",
                json!({ "action": "inspect", "reference": r }),
            )
            .await;
        assert_eq!(got["component_ref"], CLAUDE, "{r}: {got}");
        assert_eq!(got["name"], "claude");
    }
    // A bare name is namespace `local`, highest version.
    let latest = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "inspect", "component_ref": "claude" }),
        )
        .await;
    assert_eq!(latest["component_ref"], "catalyst:local.claude:0.2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_untyped_reference_two_types_share_is_refused_naming_both() {
    let h = with_claude().await;
    h.register("reagent", "local.claude", "0.1.0").await;
    let r = h
        .call(
            ADMIN,
            "component",
            json!({ "action": "inspect", "reference": "claude" }),
        )
        .await;
    assert_eq!(tool_error_code(&r), -32602, "{r}");
    let text = r.to_string();
    assert!(
        text.contains("ambiguous")
            && text.contains(CLAUDE)
            && text.contains("reagent:local.claude:0.1.0"),
        "{r}"
    );
    // Its type settles it.
    let typed = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "inspect", "reference": "claude", "type": "reagent" }),
        )
        .await;
    assert_eq!(typed["component_type"], "reagent");
    let missing = h
        .call(
            ADMIN,
            "execution",
            json!({ "action": "run", "reference": "nobody" }),
        )
        .await;
    assert_eq!(code(&missing), -33200, "{missing}");
    assert!(missing.to_string().contains("local.nobody"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn component_resolve_answers_the_row_and_dependencies() {
    let h = with_claude().await;
    let r = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "resolve", "reference": "claude" }),
        )
        .await;
    assert_eq!(r["component"]["component_ref"], CLAUDE, "{r}");
    assert_eq!(r["component"]["name"], "claude");
    assert_eq!(r["dependencies"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn component_register_answers_status_name_version_type_digest() {
    let h = Harness::new().await;
    use base64::Engine;
    let wasm = base64::engine::general_purpose::STANDARD.encode(crate::support::fake_wasm("x"));
    let r = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "register", "manifest": crate::support::manifest("reagent", "local.x", "0.1.0"), "wasm": wasm }),
        )
        .await;
    assert_eq!(r["status"], "registered");
    assert_eq!(r["name"], "x");
    assert_eq!(r["version"], "0.1.0");
    assert_eq!(r["type"], "reagent");
    assert!(r["digest"].as_str().unwrap().starts_with("sha256:"), "{r}");
}

// ---- references ----

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn local_path_references_resolve_to_the_registered_component_and_no_further() {
    let h = with_claude().await;
    let run = h
        .ok(ADMIN, "execution", json!({ "action": "run", "reference": { "local": "components/catalysts/local/claude/0.1.0/catalyst.wasm" } }))
        .await;
    assert_eq!(run["component_ref"], CLAUDE, "{run}");
    for (path, want) in [
        (
            "components/catalysts/local/claude/0.1.0/../../../../../../etc/passwd",
            -33200,
        ),
        ("/etc/passwd", -33200),
        // In the layout, but not registered.
        (
            "components/catalysts/local/claude/9.9.9/catalyst.wasm",
            -33200,
        ),
    ] {
        let r = h
            .call(
                ADMIN,
                "execution",
                json!({ "action": "run", "reference": { "local": path } }),
            )
            .await;
        assert_eq!(code(&r), want, "{path}: {r}");
    }
    for store in ["arca", "oci"] {
        let r = h
            .call(
                ADMIN,
                "execution",
                json!({ "action": "run", "reference": { store: "x" } }),
            )
            .await;
        assert_eq!(tool_error_code(&r), -32602, "{r}");
        assert!(r.to_string().contains("not supported"), "{r}");
    }
    // Nothing refused ran.
    assert_eq!(h.host().runs.borrow().len(), 1);
}

// ---- secret ----

/// Grants the secret to the catalyst, with CYFR's argument names.
async fn grant(h: &Harness) -> Json {
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "grant", "name": "ANTHROPIC_API_KEY", "component_ref": CLAUDE }),
    )
    .await
}

async fn secret_set(h: &Harness) {
    let r = h
        .ok(
            ADMIN,
            "secret",
            json!({ "action": "set", "name": "ANTHROPIC_API_KEY", "value": "sk-ant-0123456789abcdef" }),
        )
        .await;
    assert_eq!(r["stored"], true, "{r}");
    assert_eq!(r["name"], "ANTHROPIC_API_KEY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn secret_set_answers_stored_and_name() {
    secret_set(&Harness::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn secret_get_has_the_mask_in_value_and_a_length() {
    let h = Harness::new().await;
    secret_set(&h).await;
    let r = named(&h, "secret", "get", "ANTHROPIC_API_KEY").await;
    let v = r["value"].as_str().unwrap();
    assert!(
        v.contains("...") && !r.to_string().contains("0123456789abcdef"),
        "{r}"
    );
    assert_eq!(r["length"], 23);
    assert_eq!(r["name"], "ANTHROPIC_API_KEY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn secret_list_is_names_with_details_beside() {
    let h = Harness::new().await;
    secret_set(&h).await;
    let r = h.ok(ADMIN, "secret", json!({ "action": "list" })).await;
    assert_eq!(r["secrets"], json!(["ANTHROPIC_API_KEY"]), "{r}");
    assert_eq!(r["count"], 1);
    assert_eq!(r["details"][0]["name"], "ANTHROPIC_API_KEY");
    assert!(!r.to_string().contains("0123456789abcdef"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn secret_delete_answers_deleted_and_name() {
    let h = Harness::new().await;
    secret_set(&h).await;
    let r = named(&h, "secret", "delete", "ANTHROPIC_API_KEY").await;
    assert_eq!(r["deleted"], true);
    assert_eq!(r["name"], "ANTHROPIC_API_KEY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn secret_grant_takes_component_ref_and_answers_secret_and_component() {
    let h = with_claude().await;
    secret_set(&h).await;
    let r = grant(&h).await;
    assert_eq!(r["granted"], true);
    assert_eq!(r["secret"], "ANTHROPIC_API_KEY");
    assert_eq!(r["component"], CLAUDE);
    // The grant took: the run is handed the secret.
    run_claude(&h).await;
    let runs = h.host().runs.borrow();
    assert!(
        runs[0].secrets.contains_key("ANTHROPIC_API_KEY"),
        "{:?}",
        runs[0].secrets.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn secret_revoke_takes_component_ref_and_answers_cyfrs_status() {
    let h = with_claude().await;
    secret_set(&h).await;
    let args = json!({ "action": "revoke", "name": "ANTHROPIC_API_KEY", "component_ref": CLAUDE });
    let none = h.ok(ADMIN, "secret", args.clone()).await;
    assert_eq!(none["status"], "not_granted", "{none}");
    grant(&h).await;
    let r = h.ok(ADMIN, "secret", args).await;
    assert_eq!(r["status"], "revoked", "{r}");
    assert_eq!(r["secret"], "ANTHROPIC_API_KEY");
    assert_eq!(r["component"], CLAUDE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn secret_can_access_takes_component_ref_and_answers_allowed() {
    let h = with_claude().await;
    secret_set(&h).await;
    let ask =
        json!({ "action": "can_access", "name": "ANTHROPIC_API_KEY", "component_ref": CLAUDE });
    assert_eq!(h.ok(ADMIN, "secret", ask.clone()).await["allowed"], false);
    grant(&h).await;
    assert_eq!(h.ok(ADMIN, "secret", ask).await["allowed"], true);
}

// ---- key ----

fn key_shape(k: &Json) {
    for f in ["name", "type", "key_prefix", "created_at"] {
        assert!(is_str(&k[f]), "{f}: {k}");
    }
    assert!(
        k["key_prefix"].as_str().unwrap().starts_with("cyfr_"),
        "{k}"
    );
    assert!(k["scope"].is_array() && k["ip_allowlist"].is_array(), "{k}");
    assert!(
        k.get("rotated_at").is_some() && k.get("rate_limit").is_some(),
        "{k}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn key_create_answers_key_name_type_scope_created_at() {
    let h = Harness::new().await;
    let k = h
        .ok(ADMIN, "key", json!({ "action": "create", "name": "my-app", "type": "secret", "scope": ["execution"], "ip_allowlist": ["127.0.0.1"] }))
        .await;
    assert!(k["key"].as_str().unwrap().starts_with("cyfr_sk_"), "{k}");
    key_shape(&k);
    assert_eq!(k["ip_allowlist"], json!(["127.0.0.1/32"]), "{k}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn key_get_answers_key_prefix_and_rotated_at() {
    let h = Harness::new().await;
    h.key("my-app", &["execution"], json!({})).await;
    let k = named(&h, "key", "get", "my-app").await;
    key_shape(&k);
    assert_eq!(k["rotated_at"], Json::Null, "never rotated: {k}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn key_list_rows_have_the_get_shape() {
    let h = Harness::new().await;
    h.key("my-app", &["execution"], json!({})).await;
    let l = h.ok(ADMIN, "key", json!({ "action": "list" })).await;
    assert_eq!(l["count"], l["keys"].as_array().unwrap().len());
    for k in l["keys"].as_array().unwrap() {
        key_shape(k);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn key_revoke_answers_revoked_and_name() {
    let h = Harness::new().await;
    h.key("my-app", &["execution"], json!({})).await;
    let r = named(&h, "key", "revoke", "my-app").await;
    assert_eq!(r["revoked"], true);
    assert_eq!(r["name"], "my-app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn key_rotate_answers_rotated_at() {
    let h = Harness::new().await;
    h.key("my-app", &["execution"], json!({})).await;
    h.env().advance(5_000);
    let r = named(&h, "key", "rotate", "my-app").await;
    assert!(r["key"].as_str().unwrap().starts_with("cyfr_sk_"), "{r}");
    assert_eq!(r["name"], "my-app");
    assert!(is_str(&r["rotated_at"]), "{r}");
    assert_eq!(r["rotated_at"], r["created_at"]);
    let got = named(&h, "key", "get", "my-app").await;
    assert_eq!(got["rotated_at"], r["rotated_at"], "{got}");
}

// ---- policy ----

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn policy_set_takes_component_ref_and_replaces_the_stored_policy() {
    let h = with_claude().await;
    let r = h
        .ok(ADMIN, "policy", json!({ "action": "set", "component_ref": CLAUDE, "policy": { "allowed_domains": ["api.openai.com"], "timeout": "10s" } }))
        .await;
    assert_eq!(r["stored"], true, "{r}");
    assert_eq!(r["component_ref"], CLAUDE);
    let again = h
        .ok(
            ADMIN,
            "policy",
            json!({ "action": "set", "component_ref": CLAUDE, "policy": { "timeout": "20s" } }),
        )
        .await;
    // Replaced, not merged: the domains set before are gone.
    assert_eq!(again["policy"]["allowed_domains"], json!([]), "{again}");
    let got = on_claude(&h, "get", CLAUDE).await;
    assert_eq!(got["fields_set"], json!(["timeout"]), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn policy_update_field_reads_cyfrs_string_values_and_merges() {
    let h = with_claude().await;
    for (field, value, want) in [
        (
            "allowed_domains",
            "[\"api.anthropic.com\",\"api.openai.com\"]",
            json!(["api.anthropic.com", "api.openai.com"]),
        ),
        (
            "rate_limit",
            "{\"requests\":10,\"window\":\"1m\"}",
            json!({ "requests": 10, "window": "1m" }),
        ),
        ("max_memory_bytes", "134217728", json!(134217728)),
        ("max_outbound_requests", "7", json!(7)),
        ("timeout", "45s", json!("45s")),
        ("allowed_storage_paths", "[\"agent/\"]", json!(["agent/"])),
    ] {
        let r = h
            .ok(ADMIN, "policy", json!({ "action": "update_field", "component_ref": CLAUDE, "field": field, "value": value }))
            .await;
        assert_eq!(r["updated"], true, "{r}");
        assert_eq!(r["field"], field);
        assert_eq!(r["component_ref"], CLAUDE);
        assert_eq!(r["policy"][field], want, "{field}: {r}");
    }
    // Every update added up.
    let p = on_claude(&h, "get", CLAUDE).await;
    assert_eq!(p["policy"]["timeout"], "45s");
    assert_eq!(
        p["policy"]["allowed_domains"],
        json!(["api.anthropic.com", "api.openai.com"])
    );
    // A bad value is still refused, readably.
    let bad = h
        .call(ADMIN, "policy", json!({ "action": "update_field", "component_ref": CLAUDE, "field": "max_memory_bytes", "value": "lots" }))
        .await;
    assert_eq!(tool_error_code(&bad), -32602, "{bad}");
    assert!(bad.to_string().contains("max_memory_bytes"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn policy_get_answers_component_ref_and_policy() {
    let h = with_claude().await;
    let p = on_claude(&h, "get", CLAUDE).await;
    assert_eq!(p["component_ref"], CLAUDE);
    assert_eq!(p["policy"]["allowed_domains"], json!(["api.anthropic.com"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn policy_get_effective_answers_the_policy_map_at_the_top() {
    let h = with_claude().await;
    let p = on_claude(&h, "get_effective", "claude").await;
    assert_eq!(p["allowed_domains"], json!(["api.anthropic.com"]), "{p}");
    assert!(p["rate_limit"].is_object() && is_str(&p["timeout"]), "{p}");
    assert_eq!(p["component_ref"], CLAUDE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn policy_list_rows_have_component_ref_and_policy() {
    let h = with_claude().await;
    let l = h.ok(ADMIN, "policy", json!({ "action": "list" })).await;
    assert_eq!(l["count"], 1);
    assert_eq!(l["policies"][0]["component_ref"], CLAUDE, "{l}");
    assert!(l["policies"][0]["policy"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn policy_delete_answers_deleted_and_component_ref() {
    let h = with_claude().await;
    let d = on_claude(&h, "delete", CLAUDE).await;
    assert_eq!(d["deleted"], true);
    assert_eq!(d["component_ref"], CLAUDE);
}

// ---- system ----

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn system_status_answers_cyfrs_shape() {
    let h = Harness::new().await;
    let s = h
        .ok(
            ADMIN,
            "system",
            json!({ "action": "status", "scope": "all" }),
        )
        .await;
    assert_eq!(s["status"], "ok");
    assert!(is_str(&s["version"]), "{s}");
    assert!(s.get("uptime_seconds").is_some(), "{s}");
    for svc in ["emissary", "sanctum", "arca", "opus", "compendium"] {
        assert!(s["services"][svc].is_object(), "{svc}: {s}");
    }
    assert_eq!(s["mcp"]["protocol_version"], "2025-11-25");
    assert!(s["mcp"]["tools_count"].as_u64().unwrap() >= 7, "{s}");
    assert!(s["mcp"]["resources_count"].is_u64(), "{s}");
    let one = h
        .ok(
            ADMIN,
            "system",
            json!({ "action": "status", "scope": "opus" }),
        )
        .await;
    assert_eq!(one["services"].as_object().unwrap().len(), 1, "{one}");
    let bad = h
        .call(
            ADMIN,
            "system",
            json!({ "action": "status", "scope": "moon" }),
        )
        .await;
    assert_eq!(tool_error_code(&bad), -32602, "{bad}");
}

// ---- transport and errors (§1, §4) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_response_carries_an_x_request_id_and_keeps_a_sane_one() {
    let h = Harness::new().await;
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let mut req = mcp_request(Some(ADMIN), &body);
    req.headers
        .push(("x-request-id".into(), "client-req.42_a".into()));
    let resp = h.app.handle(req).await;
    assert_eq!(resp.header("x-request-id"), Some("client-req.42_a"));
    // An id that could smuggle anything into logs or headers is replaced by a fresh one.
    for bad in ["a b", "x\u{7f}", &"y".repeat(65), "<script>"] {
        let mut req = mcp_request(Some(ADMIN), &body);
        req.headers.push(("x-request-id".into(), bad.to_string()));
        let resp = h.app.handle(req).await;
        let id = resp.header("x-request-id").unwrap();
        assert!(
            id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{bad:?} -> {id}"
        );
    }
    // Refusals and other routes too, each with its own id.
    let a = h.app.handle(mcp_request(Some("cyfr_sk_nope"), &body)).await;
    let b = h.app.handle(get("/health")).await;
    let (a, b) = (a.header("x-request-id"), b.header("x-request-id"));
    assert!(a.is_some() && b.is_some() && a != b, "{a:?} {b:?}");
}

fn get(path: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: path.into(),
        headers: vec![],
        body: vec![],
        peer: Some([127, 0, 0, 1].into()),
        scheme: Some("http".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn api_health_answers_beside_health() {
    let h = Harness::new().await;
    for path in ["/health", "/api/health"] {
        let resp = h.app.handle(get(path)).await;
        assert_eq!(resp.status, 200, "{path}");
        let v: Json = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["status"], "ok", "{path}");
    }
    let v: Json = serde_json::from_slice(&h.app.handle(get("/api/health")).await.body).unwrap();
    assert_eq!(v["service"], "cyfr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn invalid_and_revoked_keys_get_their_code_never_null() {
    let h = Harness::new().await;
    let raw = h.key("gone", &["execution"], json!({})).await;
    named(&h, "key", "revoke", "gone").await;
    for (key, words) in [
        ("cyfr_sk_notarealkeynotarealkey00", "Invalid API key"),
        (raw.as_str(), "Invalid API key"),
        ("not-even-cyfr", "Invalid API key"),
    ] {
        let (status, r) = h
            .post(
                Some(key),
                json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }),
            )
            .await;
        assert_eq!(status, 401, "{r}");
        assert_eq!(code(&r), -33002, "{r}");
        assert_eq!(r["error"]["data"]["name"], "auth_invalid");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(words),
            "{key}: {r}"
        );
    }
}
