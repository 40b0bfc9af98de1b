//! The audit log: a row for every tool call and refusal, chained so that `audit.verify`
//! finds a row edited, deleted or reordered directly in the database, or a cut tail; and no
//! secret's value in any row or export.

use crate::support::{code, Harness, ADMIN};
use cyfr_core::db::Db;
use serde_json::{json, Value as Json};

/// Past the age at which rows are chained.
const RIPE_MS: u64 = 11 * 60_000;

async fn sql(h: &Harness, q: &str) {
    h.app.db.inner().query(q, &[]).await.unwrap();
}

async fn events(h: &Harness, filters: Json) -> Vec<Json> {
    h.ok(
        ADMIN,
        "audit",
        json!({ "action": "list", "filters": filters }),
    )
    .await["events"]
        .as_array()
        .unwrap()
        .clone()
}

async fn verify(h: &Harness) -> Json {
    h.ok(ADMIN, "audit", json!({ "action": "verify" })).await
}

/// A log of a dozen rows, all sealed.
async fn sealed_log(h: &Harness) {
    for i in 0..12 {
        h.ok(
            ADMIN,
            "component",
            json!({ "action": "search", "query": format!("q{i}") }),
        )
        .await;
    }
    h.env().advance(RIPE_MS);
    let v = verify(h).await;
    assert_eq!(v["valid"], true, "{v}");
    assert!(v["sealed"].as_u64().unwrap() >= 12, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_call_and_refusal_has_a_row() {
    let h = Harness::new().await;
    let key = h
        .key(
            "searcher",
            &["component.search"],
            json!({ "rate_limit": "3/1m" }),
        )
        .await;
    h.ok(&key, "component", json!({ "action": "search" })).await;
    // Scope refusal, rate-limit refusal, bad arguments, bad key.
    assert_eq!(
        code(&h.call(&key, "key", json!({ "action": "list" })).await),
        -33004
    );
    h.ok(&key, "component", json!({ "action": "search" })).await;
    assert_eq!(
        code(
            &h.call(&key, "component", json!({ "action": "search" }))
                .await
        ),
        -33005
    );
    h.call(ADMIN, "key", json!({ "action": "create" })).await;
    let bad = "cyfr_sk_notarealkeynotarealkeynotareal";
    assert_eq!(code(&h.call(bad, "system", json!({})).await), -33002);
    assert_eq!(
        code(&h.rpc(Some(bad), "tools/list", json!({})).await),
        -33002
    );

    let prefix = format!("{}...", &key[..12]);
    let mine = events(&h, json!({ "actor": prefix })).await;
    let got: Vec<(String, String, String, Json)> = mine
        .iter()
        .map(|e| {
            (
                e["tool"].as_str().unwrap_or("").to_string(),
                e["action"].as_str().unwrap_or("").to_string(),
                e["outcome"].as_str().unwrap().to_string(),
                e["error_code"].clone(),
            )
        })
        .collect();
    let want = [
        ("component", "search", "ok", Json::Null),
        ("key", "list", "denied", json!(-33004)),
        ("component", "search", "ok", Json::Null),
        ("component", "search", "denied", json!(-33005)),
    ];
    assert_eq!(got.len(), want.len(), "{mine:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (g.0.as_str(), g.1.as_str(), g.2.as_str(), &g.3),
            (w.0, w.1, w.2, &w.3),
            "{mine:?}"
        );
    }
    assert_eq!(mine[0]["client_ip"], "127.0.0.1");
    assert!(mine[0]["request_id"].as_str().unwrap().len() >= 16);
    assert_eq!(mine[1]["event"], "call");
    let failed = events(&h, json!({ "outcome": "error" })).await;
    assert!(
        failed
            .iter()
            .any(|e| e["tool"] == "key" && e["action"] == "create" && e["error_code"] == -32602),
        "{failed:?}"
    );
    let auth = events(&h, json!({ "outcome": "auth_failure" })).await;
    assert_eq!(auth.len(), 2, "{auth:?}");
    assert!(auth
        .iter()
        .all(|e| e["actor"] == "cyfr_sk_nota..." && e["error_code"] == -33002));
    // A key that is not an admin sees only its own rows.
    let reader = h.key("reader", &["audit.list"], json!({})).await;
    let seen = h.ok(&reader, "audit", json!({ "action": "list" })).await;
    assert_eq!(seen["count"], 1, "only its own call: {seen}");
    assert_eq!(
        code(
            &h.call(&reader, "audit", json!({ "action": "verify" }))
                .await
        ),
        -33004
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn verify_finds_an_edited_row() {
    let h = Harness::new().await;
    sealed_log(&h).await;
    sql(&h, "UPDATE audit SET outcome = 'denied' WHERE seq = 5").await;
    let v = verify(&h).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["problem"]["kind"], "edited", "{v}");
    assert_eq!(v["problem"]["seq"], 5, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn verify_finds_a_deleted_row() {
    let h = Harness::new().await;
    sealed_log(&h).await;
    sql(&h, "DELETE FROM audit WHERE seq = 7").await;
    let v = verify(&h).await;
    assert_eq!(v["problem"]["kind"], "deleted", "{v}");
    assert_eq!(v["problem"]["seq"], 7, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn verify_finds_a_reordered_pair() {
    let h = Harness::new().await;
    sealed_log(&h).await;
    sql(&h, "UPDATE audit SET seq = -1 WHERE seq = 3").await;
    sql(&h, "UPDATE audit SET seq = 3 WHERE seq = 4").await;
    sql(&h, "UPDATE audit SET seq = 4 WHERE seq = -1").await;
    let v = verify(&h).await;
    assert_eq!(v["problem"]["kind"], "reordered", "{v}");
    assert_eq!(v["problem"]["seq"], 3, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn verify_finds_a_cut_tail_and_a_removed_hash() {
    let h = Harness::new().await;
    sealed_log(&h).await;
    // The newest sealed rows, and everything after them, gone.
    sql(&h, "DELETE FROM audit WHERE seq >= 10").await;
    let v = verify(&h).await;
    assert_eq!(v["problem"]["kind"], "truncated", "{v}");

    let h = Harness::new().await;
    sealed_log(&h).await;
    sql(
        &h,
        "UPDATE audit SET hash = NULL, actor = 'someone-else' WHERE seq = 4",
    )
    .await;
    let v = verify(&h).await;
    assert_eq!(v["valid"], false, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn retention_prunes_old_rows_and_the_chain_still_verifies() {
    let h = Harness::with(|c| c.audit_retention_ms = 86_400_000).await;
    sealed_log(&h).await;
    h.env().advance(2 * 86_400_000);
    h.ok(ADMIN, "component", json!({ "action": "search" }))
        .await;
    let v = verify(&h).await;
    assert_eq!(v["valid"], true, "{v}");
    assert!(
        v["anchor_seq"].as_i64().unwrap() >= 12,
        "old rows pruned: {v}"
    );
    // A row edited after pruning is still found.
    h.env().advance(RIPE_MS);
    let v = verify(&h).await;
    assert_eq!(v["valid"], true, "{v}");
    let first = v["anchor_seq"].as_i64().unwrap() + 1;
    sql(
        &h,
        &format!("UPDATE audit SET actor = 'x' WHERE seq = {first}"),
    )
    .await;
    assert_eq!(verify(&h).await["problem"]["kind"], "edited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn no_secret_value_reaches_a_row_or_an_export() {
    let h = Harness::new().await;
    let values = [
        "sk-live-Plaintext-0001",
        "hunter2-Plaintext-0002",
        "p4ss-Plaintext-0003",
    ];
    for (i, v) in values.iter().enumerate() {
        h.ok(
            ADMIN,
            "secret",
            json!({ "action": "set", "name": format!("S{i}"), "value": v }),
        )
        .await;
    }
    // Values sent where they do not belong are not copied either.
    h.call(
        ADMIN,
        "secret",
        json!({ "action": "set", "name": "S0", "value": values[0], "scope": values[1] }),
    )
    .await;
    h.call(
        ADMIN,
        "key",
        json!({ "action": "create", "name": "k", "scope": [values[2]] }),
    )
    .await;
    h.ok(ADMIN, "secret", json!({ "action": "get", "name": "S0" }))
        .await;
    h.env().advance(RIPE_MS);
    verify(&h).await;
    let rows = h
        .app
        .db
        .inner()
        .query("SELECT * FROM audit", &[])
        .await
        .unwrap();
    let dump = format!("{:?}", rows);
    let mut exports = Vec::new();
    for format in ["json", "csv"] {
        let e = h
            .ok(
                ADMIN,
                "audit",
                json!({ "action": "export", "format": format }),
            )
            .await;
        assert!(e["count"].as_u64().unwrap() >= 6, "{e}");
        exports.push(e["data"].as_str().unwrap().to_string());
    }
    assert!(exports[1].starts_with("seq,timestamp,"), "{}", exports[1]);
    assert!(
        dump.contains("S0") && dump.contains("secret"),
        "names are kept: {dump}"
    );
    for v in values {
        assert!(!dump.contains(v), "{v} in an audit row");
        for e in &exports {
            assert!(!e.contains(v), "{v} in an export");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_secret_a_component_reads_is_logged_by_name_and_changes_are_changes() {
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
    h.host()
        .answer(Ok(crate::support::completed(json!({ "echo": value }))));
    let run = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "run", "reference": reference }),
        )
        .await;
    let all = events(&h, json!({})).await;
    let read: Vec<&Json> = all.iter().filter(|e| e["event"] == "secret_read").collect();
    assert_eq!(read.len(), 1, "{all:?}");
    assert_eq!(read[0]["detail"]["name"], "API_TOKEN");
    assert_eq!(read[0]["detail"]["execution_id"], run["execution_id"]);
    assert_eq!(read[0]["reference"], json!(reference));
    // Changes to secrets, grants and policies are logged as changes; a run's row names its
    // component.
    for (tool, action) in [("secret", "set"), ("secret", "grant"), ("policy", "set")] {
        assert!(
            all.iter()
                .any(|e| e["tool"] == tool && e["action"] == action && e["event"] == "change"),
            "{tool}.{action}: {all:?}"
        );
    }
    assert!(all.iter().any(|e| e["tool"] == "execution"
        && e["reference"] == json!(reference)
        && e["outcome"] == "ok"));
    assert!(!format!("{all:?}").contains(value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_key_sees_its_lineages_rows_after_rotation_and_no_one_elses() {
    let h = Harness::new().await;
    let key = h
        .key("reader", &["audit.list", "component.search"], json!({}))
        .await;
    let other = h
        .key("other", &["audit.list", "component.search"], json!({}))
        .await;
    h.ok(
        &key,
        "component",
        json!({ "action": "search", "query": "mine" }),
    )
    .await;
    h.ok(
        &other,
        "component",
        json!({ "action": "search", "query": "theirs" }),
    )
    .await;
    let rotated = h
        .ok(
            ADMIN,
            "key",
            json!({ "action": "rotate", "name": "reader" }),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = h.ok(&rotated, "audit", json!({ "action": "list" })).await;
    let events = seen["events"].as_array().unwrap();
    // Its search before the rotation, and this list; nothing of `other`'s.
    assert_eq!(events.len(), 2, "{seen}");
    assert_eq!(events[0]["tool"], "component");
    assert_eq!(events[0]["actor"], format!("{}...", &key[..12]));
    assert!(
        events
            .iter()
            .all(|e| e["actor_id"] == events[0]["actor_id"]),
        "{seen}"
    );
    // Asking for another actor's rows finds none.
    let prefix = format!("{}...", &other[..12]);
    let seen = h
        .ok(
            &rotated,
            "audit",
            json!({ "action": "list", "filters": { "actor": prefix } }),
        )
        .await;
    assert_eq!(seen["count"], 0, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_calls_row_carries_the_request_id_its_answer_carried() {
    let h = Harness::new().await;
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "key", "arguments": { "action": "list" } } });
    let resp = h
        .app
        .handle(crate::support::mcp_request(Some(ADMIN), &body))
        .await;
    let header: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(k, _)| k == "x-request-id")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(header.len(), 1, "one id on the answer: {:?}", resp.headers);
    let rows = h
        .app
        .db
        .inner()
        .query(
            "SELECT request_id FROM audit WHERE tool = 'key' AND action = 'list'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.first().unwrap().text("request_id"), header[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_runs_row_carries_its_duration_within_the_runs_three_round_trips() {
    let h = Harness::new().await;
    let r = h.register("reagent", "cyfr.timed", "0.1.0").await;
    h.host().run_ms.set(1_234);
    h.app.db.inner().reset();
    h.ok(
        ADMIN,
        "execution",
        json!({ "action": "run", "reference": r, "input": {} }),
    )
    .await;
    assert_eq!(
        h.app.db.inner().trips().len(),
        3,
        "the end batch carries it"
    );
    h.ok(ADMIN, "key", json!({ "action": "list" })).await;
    let rows = events(&h, json!({ "tool": "execution" })).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["duration_ms"], 1_234, "{:?}", rows[0]);
    // Other successful calls leave it null: their row is written before they run.
    let rows = events(&h, json!({ "tool": "key" })).await;
    assert_eq!(rows[0]["duration_ms"], Json::Null, "{:?}", rows[0]);
}
