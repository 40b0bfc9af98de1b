//! The round-trip budget (ARCHITECTURE.md, "Invariants"): at the edge every database call
//! is a network round trip, so `execution.run` costs at most 3, `tools/list` 1, and every
//! other tool action 2 — counted by the harness's `Counting` database, for every action of
//! the scope table.

use crate::support::{completed, manifest, Harness, ADMIN};
use base64::Engine;
use cyfr_core::scopes::TABLE;
use serde_json::{json, Value as Json};

/// The most round trips `tool.action` may cost.
fn budget(tool: &str, action: &str) -> usize {
    match (tool, action) {
        ("execution", "run") => 3,
        // Chains the ripe rows first (a read, then their hashes written), then reads the
        // chain: an admin's check, not a request path.
        ("audit", "verify") => 4,
        _ => 2,
    }
}

/// A key holding every scope, with a rate limit, so each call also pays for its key's
/// rate-limit take; its raw value.
async fn scoped_key(h: &Harness) -> String {
    let scopes: Vec<&str> = cyfr_core::scopes::SCOPES.to_vec();
    h.key("budget", &scopes, json!({ "rate_limit": "100000/1m" }))
        .await
}

/// The arguments of one ordinary, successful call of each action.
fn args_of(
    tool: &str,
    action: &str,
    reagent: &str,
    run_id: &str,
    digest: &str,
    codes: &(String, String),
) -> Option<Json> {
    let wasm = base64::engine::general_purpose::STANDARD.encode(crate::support::fake_wasm("b2"));
    Some(match (tool, action) {
        ("execution", "run") => json!({ "reference": reagent, "input": { "data": [1, 2, 3] } }),
        ("execution", "list") => json!({}),
        ("execution", "logs" | "cancel") => json!({ "execution_id": run_id }),
        ("component", "search") => json!({ "query": "budget" }),
        ("component", "resolve" | "inspect") => json!({ "reference": reagent }),
        ("component", "register") => {
            json!({ "manifest": manifest("reagent", "local.budget", "0.2.0"), "wasm": wasm })
        }
        ("get_encryption_instructions", "get") => json!({}),
        ("key", "create") => json!({ "name": "made", "type": "secret", "scope": ["execution"] }),
        ("key", "get" | "revoke") => json!({ "name": "spare" }),
        ("key", "rotate") => json!({ "name": "spare2" }),
        ("key", "list") => json!({}),
        ("policy", "get" | "get_effective" | "delete") => json!({ "reference": reagent }),
        ("policy", "list") => json!({}),
        ("policy", "set" | "update_field") => {
            json!({ "reference": reagent, "field": "timeout", "value": "10s" })
        }
        ("secret", "set") => json!({ "name": "TOKEN", "value": "s3cr3t-value" }),
        ("secret", "get" | "delete") => json!({ "name": "TOKEN" }),
        ("secret", "list" | "clear") => json!({}),
        ("secret", "grant" | "revoke" | "can_access") => {
            json!({ "name": "TOKEN", "reference": reagent })
        }
        ("system", "status") => json!({}),
        ("component", "categories") => json!({}),
        ("component", "get_blob") => json!({ "digest": digest }),
        ("component", "publish") => {
            json!({ "reference": "r:local.budget-pub:0.1.0", "artifact": { "base64": wasm } })
        }
        ("component", "pull") => json!({ "reference": reagent }),
        ("policy", "check_rate_limit") => json!({ "reference": reagent }),
        ("guide", "list") => json!({}),
        ("guide", "get") => json!({ "name": "integration-guide" }),
        ("guide", "readme") => json!({ "reference": reagent }),
        ("config", "get" | "delete") => json!({ "reference": reagent, "key": "model" }),
        ("config", "get_all") => json!({ "reference": reagent }),
        ("config", "set") => json!({ "reference": reagent, "key": "model", "value": "small" }),
        ("config", "list") => json!({}),
        ("permission", "get") => json!({ "subject": "alice" }),
        ("permission", "set") => json!({ "subject": "alice", "permissions": ["execution"] }),
        ("permission", "list") => json!({}),
        ("audit", "list") => json!({ "filters": { "tool": "execution" } }),
        ("audit", "export") => json!({ "format": "csv" }),
        ("audit", "show") => json!({ "execution_id": run_id }),
        ("audit", "executions") => json!({}),
        ("audit", "verify") => json!({}),
        ("session", "device-init") => json!({}),
        ("session", "device-poll") => json!({ "device_code": codes.0 }),
        ("session", "login" | "whoami" | "logout") => json!({}),
        ("session", "approve") => json!({ "user_code": codes.1, "user": "budget-user" }),
        _ => return None,
    })
}

/// Round trips and statements of one request; the SQL of its round trips, for the message.
async fn count(h: &Harness, key: &str, method: &str, params: Json) -> (usize, usize, Json) {
    h.app.db.inner().reset();
    let r = h.rpc(Some(key), method, params).await;
    let trips = h.app.db.inner().trips();
    let statements = trips.iter().map(Vec::len).sum();
    (
        trips.len(),
        statements,
        json!({ "answer": r, "trips": trips }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_tool_action_stays_within_its_round_trip_budget() {
    let h = Harness::new().await;
    let key = scoped_key(&h).await;
    let reagent = h.register("reagent", "local.budget", "0.1.0").await;
    // The same bytes again with a README, so `guide.readme` has one to show.
    let wasm =
        base64::engine::general_purpose::STANDARD.encode(crate::support::fake_wasm("local.budget"));
    h.ok(
        ADMIN,
        "component",
        json!({ "action": "register", "manifest": manifest("reagent", "local.budget", "0.1.0"), "wasm": wasm, "readme": "# budget\n" }),
    )
    .await;
    // Made by the budget key itself, so that managing them succeeds (a non-admin manages
    // only the keys it created): the budget is that of a successful call.
    for name in ["spare", "spare2"] {
        h.ok(
            &key,
            "key",
            json!({ "action": "create", "name": name, "scope": ["execution"] }),
        )
        .await;
    }
    h.host().answer(Ok(completed(json!({ "sum": 6 }))));
    let first = h
        .ok(
            &key,
            "execution",
            json!({ "action": "run", "reference": reagent }),
        )
        .await;
    let run_id = first["execution_id"].as_str().unwrap().to_string();
    let digest = h
        .ok(
            ADMIN,
            "component",
            json!({ "action": "resolve", "reference": reagent }),
        )
        .await["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // An approved device code (its poll completes) and a pending one (to approve).
    let mut made = Vec::new();
    for _ in 0..2 {
        made.push(
            h.ok(&key, "session", json!({ "action": "device-init" }))
                .await,
        );
    }
    h.ok(
        ADMIN,
        "session",
        json!({ "action": "approve", "user_code": made[0]["user_code"], "user": "budget-user" }),
    )
    .await;
    let codes = (
        made[0]["device_code"].as_str().unwrap().to_string(),
        made[1]["user_code"].as_str().unwrap().to_string(),
    );
    let mut table = Vec::new();
    let mut over = Vec::new();
    for (tool, action, need) in TABLE {
        let mut args = args_of(tool, action, &reagent, &run_id, &digest, &codes)
            .unwrap_or_else(|| panic!("{tool}.{action} has no budget case: add one here"));
        args["action"] = json!(action);
        let who = match need {
            cyfr_core::scopes::Need::Admin => ADMIN,
            _ => key.as_str(),
        };
        if (*tool, *action) == ("execution", "run") {
            h.host().answer(Ok(completed(json!({ "sum": 6 }))));
        }
        let (trips, statements, detail) = count(
            &h,
            who,
            "tools/call",
            json!({ "name": tool, "arguments": args }),
        )
        .await;
        table.push(format!(
            "{tool}.{action}: {trips} round trips, {statements} statements"
        ));
        if trips > budget(tool, action) {
            over.push(format!(
                "{tool}.{action} ({trips} > {}): {detail}",
                budget(tool, action)
            ));
        }
    }
    let (trips, statements, detail) = count(&h, &key, "tools/list", json!({})).await;
    table.push(format!(
        "tools/list: {trips} round trips, {statements} statements"
    ));
    if trips > 1 {
        over.push(format!("tools/list ({trips} > 1): {detail}"));
    }
    // The component tools it lists are read in that one round trip.
    assert!(
        detail["answer"].to_string().contains("\"local.budget\""),
        "{detail}"
    );
    // A component tool is execution.run: the same 3, by derived name and by declared one.
    for (tool, m) in [
        // Registered above.
        ("local.budget", None),
        ("budget-tool", {
            let mut m = manifest("reagent", "local.declared", "0.1.0");
            m["tool_name"] = json!("budget-tool");
            Some(m)
        }),
    ] {
        if let Some(m) = m {
            let wasm = base64::engine::general_purpose::STANDARD
                .encode(crate::support::fake_wasm(m["id"].as_str().unwrap()));
            h.ok(
                ADMIN,
                "component",
                json!({ "action": "register", "manifest": m, "wasm": wasm }),
            )
            .await;
        }
        h.host().answer(Ok(completed(json!({ "sum": 6 }))));
        let params = json!({ "name": tool, "arguments": { "data": [1] } });
        let (trips, statements, detail) = count(&h, &key, "tools/call", params).await;
        table.push(format!(
            "component tool {tool}: {trips} round trips, {statements} statements"
        ));
        assert_eq!(detail["answer"]["result"]["isError"], false, "{detail}");
        if trips > 3 {
            over.push(format!("component tool {tool} ({trips} > 3): {detail}"));
        }
    }
    println!("{}", table.join("\n"));
    assert!(over.is_empty(), "over budget:\n{}", over.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_run_is_three_round_trips_by_key_and_by_session_and_the_record_is_kept() {
    let h = Harness::new().await;
    let key = scoped_key(&h).await;
    let reagent = h.register("reagent", "local.budget", "0.1.0").await;
    let call = json!({ "name": "execution", "arguments": { "action": "run", "reference": reagent, "input": {} } });

    h.host().answer(Ok(completed(json!({ "sum": 6 }))));
    let (trips, _, detail) = count(&h, &key, "tools/call", call.clone()).await;
    assert_eq!(trips, 3, "{detail}");
    let answer = &detail["answer"]["result"]["structuredContent"];
    assert_eq!(answer["status"], "completed", "{detail}");

    // The same run in a session opened with the key, without Authorization.
    let sid = h.initialize(&key).await;
    h.app.db.inner().reset();
    h.host().answer(Ok(completed(json!({ "sum": 6 }))));
    let r = h
        .call_in(&sid, "execution", call["arguments"].clone())
        .await;
    assert_eq!(
        r["result"]["structuredContent"]["status"], "completed",
        "{r}"
    );
    let trips = h.app.db.inner().trips();
    assert_eq!(trips.len(), 3, "{trips:?}");

    // Both runs are on record as completed: the batches wrote what one statement each did.
    let listed = h.ok(&key, "execution", json!({ "action": "list" })).await;
    let text = listed.to_string();
    assert_eq!(text.matches("\"completed\"").count(), 2, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_key_over_its_rate_is_refused_from_its_one_round_trip_and_a_wrong_ip_costs_no_budget() {
    let h = Harness::new().await;
    let limited = h
        .key("limited", &["execution"], json!({ "rate_limit": "2/1m" }))
        .await;
    for _ in 0..2 {
        h.ok(&limited, "execution", json!({ "action": "list" }))
            .await;
    }
    let r = h
        .call(&limited, "execution", json!({ "action": "list" }))
        .await;
    assert_eq!(r["error"]["code"], -33005, "{r}");
    assert!(
        r["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 0,
        "{r}"
    );

    // A key only usable from 10.0.0.0/8, tried from loopback: refused, and its budget is
    // left whole (a stolen key used from elsewhere cannot drain the owner's allowance).
    let fenced = h
        .key(
            "fenced",
            &["execution"],
            json!({ "rate_limit": "1/1h", "ip_allowlist": ["10.0.0.0/8"] }),
        )
        .await;
    for _ in 0..3 {
        let r = h
            .call(&fenced, "execution", json!({ "action": "list" }))
            .await;
        assert_eq!(r["error"]["code"], -33004, "{r}");
    }
    use cyfr_core::db::Db;
    let now_us = crate::support::START_MS as i64 * 1000;
    let rows = h
        .app
        .db
        .query(
            "SELECT count(*) AS n FROM rate_limits WHERE bucket LIKE 'key:%' AND tat > ?",
            &[cyfr_core::db::Value::Integer(now_us)],
        )
        .await
        .unwrap();
    // Only `limited`'s bucket runs ahead of now; the fenced key's refused requests took
    // nothing (their take was given back).
    assert_eq!(rows.first().unwrap().int("n"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_catalyst_gets_its_secrets_within_the_same_three_round_trips() {
    let h = Harness::new().await;
    let key = scoped_key(&h).await;
    let catalyst = h.register("catalyst", "local.budget", "0.1.0").await;
    let set = |name: &str, value: &str, scope: &str| json!({ "action": "set", "name": name, "value": value, "scope": scope });
    let grant = |name: &str, reference: &str, user: bool| json!({ "action": "grant", "name": name, "reference": reference, "allow_user_keys": user });
    // SHARED: org only. OWN: the caller's own key wins where the grant allows it.
    // PINNED: the exact version's grant (no user keys) wins over the version-less one.
    // GONE: expired, never handed out.
    h.ok(&key, "secret", set("SHARED", "shared-value-1", "org"))
        .await;
    h.ok(&key, "secret", set("OWN", "org-own-value", "org"))
        .await;
    h.ok(&key, "secret", set("OWN", "users-own-value", "user"))
        .await;
    h.ok(&key, "secret", set("PINNED", "org-pinned-value", "org"))
        .await;
    h.ok(&key, "secret", set("PINNED", "users-pinned-value", "user"))
        .await;
    h.ok(
        &key,
        "secret",
        json!({ "action": "set", "name": "GONE", "value": "expired-value", "ttl": "1s" }),
    )
    .await;
    let unversioned = "catalyst:local.budget";
    for (name, reference, user) in [
        ("SHARED", unversioned, true),
        ("OWN", unversioned, true),
        ("PINNED", unversioned, true),
        ("PINNED", catalyst.as_str(), false),
        ("GONE", unversioned, true),
    ] {
        h.ok(ADMIN, "secret", grant(name, reference, user)).await;
    }
    h.ok(ADMIN, "policy", json!({ "action": "set", "reference": catalyst, "field": "allowed_domains", "value": ["api.example.com"] })).await;
    h.env().advance(2_000);

    h.host().answer(Ok(completed(json!({ "ok": true }))));
    let call =
        json!({ "name": "execution", "arguments": { "action": "run", "reference": catalyst } });
    let (trips, _, detail) = count(&h, &key, "tools/call", call).await;
    assert_eq!(trips, 3, "{detail}");
    let given = h.host().runs.borrow()[0].secrets.clone();
    let given: Vec<(&str, &str)> = given
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        given,
        [
            ("OWN", "users-own-value"),
            ("PINNED", "org-pinned-value"),
            ("SHARED", "shared-value-1")
        ],
        "{detail}"
    );
    // What it was given is marked used; what it was not, is not.
    let used = |name: &str, scope: &str| {
        let (h, key) = (&h, &key);
        let name = name.to_string();
        let scope = scope.to_string();
        async move {
            h.ok(
                key,
                "secret",
                json!({ "action": "get", "name": name, "scope": scope }),
            )
            .await["last_used_at"]
                .is_string()
        }
    };
    assert!(used("OWN", "user").await);
    assert!(!used("OWN", "org").await);
    assert!(used("PINNED", "org").await);
    assert!(!used("GONE", "org").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn untyped_and_local_references_cost_no_round_trip_of_their_own() {
    let h = Harness::new().await;
    let key = scoped_key(&h).await;
    h.register("reagent", "local.budget", "0.1.0").await;
    // A `{"local": …}` path names its type and version: read ahead like any typed reference.
    let local = json!({ "name": "execution", "arguments": { "action": "run", "reference": { "local": "components/reagents/local/budget/0.1.0/reagent.wasm" } } });
    let (trips, _, detail) = count(&h, &key, "tools/call", local).await;
    assert_eq!(trips, 3, "{detail}");
    // An untyped one is looked up, and its policy read as each type it could be, ahead too.
    let untyped = json!({ "name": "execution", "arguments": { "action": "run", "reference": "budget@0.1.0" } });
    let (trips, _, detail) = count(&h, &key, "tools/call", untyped).await;
    assert_eq!(trips, 3, "{detail}");
    assert_eq!(
        detail["answer"]["result"]["structuredContent"]["component_ref"],
        "reagent:local.budget:0.1.0",
        "{detail}"
    );
    // Inspecting or reading the policy of an untyped reference stays within 2.
    for (tool, args) in [
        (
            "component",
            json!({ "action": "inspect", "reference": "budget" }),
        ),
        (
            "policy",
            json!({ "action": "get_effective", "component_ref": "local.budget" }),
        ),
    ] {
        let call = json!({ "name": tool, "arguments": args });
        let (trips, _, detail) = count(&h, &key, "tools/call", call).await;
        assert!(trips <= 2, "{tool}: {detail}");
        let answer = &detail["answer"]["result"]["structuredContent"];
        assert_eq!(
            answer["component_ref"], "reagent:local.budget:0.1.0",
            "{detail}"
        );
    }
}
