//! `resources/subscribe` and `resources/unsubscribe` of a 2025-11-25 session: offered in
//! `initialize`'s capabilities, kept in SQL per session (the next request, another app
//! instance, sees them), bounded, gone with the session; refused without a session or a
//! caller; one round trip beyond the caller check.

use crate::support::{code, mcp_request, Harness, ADMIN};
use cyfr_core::db::Db;
use serde_json::{json, Value as Json};

/// `method` with `params` in session `sid` (no Authorization: the session's key acts).
async fn in_session(
    h: &Harness,
    sid: Option<&str>,
    key: Option<&str>,
    method: &str,
    params: Json,
) -> Json {
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params });
    let mut req = mcp_request(key, &body);
    if let Some(s) = sid {
        req.headers.push(("mcp-session-id".into(), s.into()));
    }
    let resp = h.app.handle(req).await;
    serde_json::from_slice(&resp.body).unwrap_or(Json::Null)
}

/// The URIs the database holds for any session, in order.
async fn rows(h: &Harness) -> Vec<String> {
    let r = h
        .app
        .db
        .query("SELECT uri FROM resource_subscriptions ORDER BY uri", &[])
        .await
        .unwrap();
    r.iter().map(|r| r.text("uri")).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn initialize_offers_subscribe_and_a_session_subscribes_and_unsubscribes_in_sql() {
    let h = Harness::new().await;
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {} });
    let init = h.app.handle(mcp_request(Some(ADMIN), &body)).await;
    let init: Json = serde_json::from_slice(&init.body).unwrap();
    assert_eq!(
        init["result"]["capabilities"]["resources"]["subscribe"],
        json!(true),
        "{init}"
    );

    let sid = h.initialize(ADMIN).await;
    let watch = json!({ "uri": "test://watched-resource" });
    let r = in_session(&h, Some(&sid), None, "resources/subscribe", watch.clone()).await;
    assert_eq!(r["result"], json!({}), "{r}");
    // Again: still one subscription.
    let r = in_session(&h, Some(&sid), None, "resources/subscribe", watch.clone()).await;
    assert_eq!(r["result"], json!({}), "{r}");
    let r = in_session(
        &h,
        Some(&sid),
        None,
        "resources/subscribe",
        json!({ "uri": "cyfr://executions/exec_1" }),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    assert_eq!(
        rows(&h).await,
        vec!["cyfr://executions/exec_1", "test://watched-resource"]
    );

    let r = in_session(&h, Some(&sid), None, "resources/unsubscribe", watch.clone()).await;
    assert_eq!(r["result"], json!({}), "{r}");
    // Not watched (any more): still `{}`.
    let r = in_session(&h, Some(&sid), None, "resources/unsubscribe", watch).await;
    assert_eq!(r["result"], json!({}), "{r}");
    assert_eq!(rows(&h).await, vec!["cyfr://executions/exec_1"]);

    // Ending the session drops its subscriptions.
    let mut del = mcp_request(None, &json!({}));
    del.method = "DELETE".into();
    del.headers.push(("mcp-session-id".into(), sid.clone()));
    assert_eq!(h.app.handle(del).await.status, 204);
    assert!(rows(&h).await.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn subscribing_needs_a_session_a_caller_and_a_sane_uri_and_is_bounded() {
    let h = Harness::new().await;
    let watch = json!({ "uri": "test://watched-resource" });
    // A key but no session: nothing to keep the subscription in.
    let r = in_session(&h, None, Some(ADMIN), "resources/subscribe", watch.clone()).await;
    assert_eq!(code(&r), -32602, "{r}");
    // Neither key nor session.
    let r = in_session(&h, None, None, "resources/subscribe", watch.clone()).await;
    assert!(r.get("error").is_some(), "{r}");
    // A session that does not exist lends nothing.
    let r = in_session(
        &h,
        Some("no-such-session"),
        None,
        "resources/subscribe",
        watch,
    )
    .await;
    assert!(r.get("error").is_some(), "{r}");

    let sid = h.initialize(ADMIN).await;
    for bad in [
        json!({}),
        json!({ "uri": 3 }),
        json!({ "uri": "" }),
        json!({ "uri": "a\nb" }),
        json!({ "uri": "x".repeat(2049) }),
    ] {
        let r = in_session(&h, Some(&sid), None, "resources/subscribe", bad.clone()).await;
        assert_eq!(code(&r), -32602, "{bad}: {r}");
    }
    assert!(rows(&h).await.is_empty());

    for i in 0..100 {
        let r = in_session(
            &h,
            Some(&sid),
            None,
            "resources/subscribe",
            json!({ "uri": format!("test://r/{i}") }),
        )
        .await;
        assert_eq!(r["result"], json!({}), "{r}");
    }
    let r = in_session(
        &h,
        Some(&sid),
        None,
        "resources/subscribe",
        json!({ "uri": "test://r/one-too-many" }),
    )
    .await;
    assert_eq!(code(&r), -32602, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("100"),
        "{r}"
    );
    // One already watched is still fine at the cap.
    let r = in_session(
        &h,
        Some(&sid),
        None,
        "resources/subscribe",
        json!({ "uri": "test://r/5" }),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    assert_eq!(rows(&h).await.len(), 100);
    // Another session has its own allowance.
    let other = h.initialize(ADMIN).await;
    let r = in_session(
        &h,
        Some(&other),
        None,
        "resources/subscribe",
        json!({ "uri": "test://r/one-too-many" }),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
}

#[tokio::test(flavor = "current_thread")]
async fn subscribe_and_unsubscribe_cost_one_round_trip_beyond_the_caller_check() {
    let h = Harness::new().await;
    let sid = h.initialize(ADMIN).await;
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        h.app.db.inner().reset();
        let r = in_session(&h, Some(&sid), None, method, json!({ "uri": "test://w" })).await;
        assert_eq!(r["result"], json!({}), "{method}: {r}");
        let trips = h.app.db.inner().trips();
        assert_eq!(trips.len(), 2, "{method}: {trips:?}");
    }
}
