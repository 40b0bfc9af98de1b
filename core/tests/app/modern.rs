//! MCP 2026-07-28 beside 2025-11-25 on one endpoint: each rule of DESIGN.md's table, as a
//! client speaking the stateless revision sees it (status, code, shape), and the old
//! revision left as it was.

use crate::support::*;
use cyfr_core::http::HttpRequest;
use serde_json::{json, Value as Json};

const V: &str = "2026-07-28";

pub(crate) fn meta() -> Json {
    json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "t", "version": "1" },
    })
}

/// A stateless request as a 2026-07-28 client sends it: `_meta`, the version header and
/// `Mcp-Method` (and `Mcp-Name` where the method names something).
pub(crate) fn modern_request(key: Option<&str>, method: &str, mut params: Json) -> HttpRequest {
    if params.get("_meta").is_none() {
        params["_meta"] = meta();
    }
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params });
    let mut req = mcp_request(key, &body);
    req.headers.retain(|(k, _)| k != "mcp-protocol-version");
    req.headers.push(("mcp-protocol-version".into(), V.into()));
    req.headers.push(("mcp-method".into(), method.into()));
    let name = match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        _ => None,
    };
    if let Some(Json::String(n)) = name {
        req.headers.push(("mcp-name".into(), n.clone()));
    }
    req
}

pub(crate) async fn send(h: &Harness, req: HttpRequest) -> (u16, Json, Vec<(String, String)>) {
    let resp = h.app.handle(req).await;
    let body = serde_json::from_slice(&resp.body).unwrap_or(Json::Null);
    (resp.status, body, resp.headers)
}

fn set_header(req: &mut HttpRequest, name: &str, value: Option<&str>) {
    req.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    if let Some(v) = value {
        req.headers.push((name.to_string(), v.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn server_discover_answers_without_credentials_or_database() {
    let h = Harness::new().await;
    h.app.db.inner().reset();
    let (status, r, headers) = send(&h, modern_request(None, "server/discover", json!({}))).await;
    assert_eq!(status, 200, "{r}");
    let res = &r["result"];
    assert_eq!(res["resultType"], "complete");
    let versions: Vec<&str> = res["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(versions[0], V);
    assert!(versions.contains(&"2025-11-25"), "{versions:?}");
    assert!(res["capabilities"]["tools"].is_object());
    assert_eq!(res["cacheScope"], "public");
    assert!(res["ttlMs"].as_u64().is_some());
    assert_eq!(
        res["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "cyfr"
    );
    assert_eq!(r["id"], 7);
    assert!(
        h.app.db.inner().trips().is_empty(),
        "discover touched the database"
    );
    assert!(!headers.iter().any(|(k, _)| k == "mcp-session-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_request_without_complete_meta_is_invalid_params_at_400() {
    let h = Harness::new().await;
    let cases = [
        json!({ "_meta": { "io.modelcontextprotocol/clientCapabilities": {} } }),
        json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": V } }),
        json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": "all" } }),
    ];
    for params in cases {
        let (status, r, _) = send(
            &h,
            modern_request(Some(ADMIN), "tools/list", params.clone()),
        )
        .await;
        assert_eq!((status, code(&r)), (400, -32602), "{params}: {r}");
        assert_eq!(r["id"], 7, "the error carries the request's id: {r}");
    }
    // server/discover is stateless even with no `_meta` at all.
    let body = json!({ "jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": {} });
    let mut req = mcp_request(None, &body);
    set_header(&mut req, "mcp-protocol-version", Some(V));
    set_header(&mut req, "mcp-method", Some("server/discover"));
    let (status, r, _) = send(&h, req).await;
    assert_eq!(
        (status, code(&r), r["id"].clone()),
        (400, -32602, json!(3)),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_version_header_must_equal_meta_and_name_a_version_we_speak() {
    let h = Harness::new().await;
    // Header differs from `_meta`, or is missing: -32020.
    for header in [Some("2025-11-25"), None] {
        let mut req = modern_request(Some(ADMIN), "tools/list", json!({}));
        set_header(&mut req, "mcp-protocol-version", header);
        let (status, r, _) = send(&h, req).await;
        assert_eq!((status, code(&r)), (400, -32020), "{header:?}: {r}");
    }
    // Both name a version we do not speak: -32022 with the list and what was asked.
    let mut m = meta();
    m["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
    let mut req = modern_request(Some(ADMIN), "server/discover", json!({ "_meta": m }));
    set_header(&mut req, "mcp-protocol-version", Some("v999.0.0"));
    let (status, r, _) = send(&h, req).await;
    assert_eq!((status, code(&r)), (400, -32022), "{r}");
    assert_eq!(r["error"]["data"]["requested"], "v999.0.0");
    assert_eq!(r["error"]["data"]["supported"][0], V);
    assert_eq!(r["id"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn mcp_method_and_mcp_name_must_match_the_body() {
    let h = Harness::new().await;
    let call = json!({ "name": "system", "arguments": { "action": "status" } });
    // Right headers (with spaces around, and a lower-case name): answered.
    let mut req = modern_request(Some(ADMIN), "tools/call", call.clone());
    set_header(&mut req, "mcp-name", Some("  system "));
    let (status, r, _) = send(&h, req).await;
    assert_eq!(status, 200, "{r}");
    assert!(r.get("error").is_none(), "{r}");
    // The name in base64, as a client encodes a non-ASCII value.
    let mut req = modern_request(Some(ADMIN), "tools/call", call.clone());
    set_header(&mut req, "mcp-name", Some("=?base64?c3lzdGVt?="));
    let (status, r, _) = send(&h, req).await;
    assert_eq!(status, 200, "{r}");
    let wrong: [(&str, Option<&str>); 6] = [
        ("mcp-method", Some("tools/list")),
        ("mcp-method", Some("TOOLS/CALL")),
        ("mcp-method", None),
        ("mcp-name", Some("execution")),
        ("mcp-name", Some("=?base64?!!!?=")),
        ("mcp-name", None),
    ];
    for (header, value) in wrong {
        let mut req = modern_request(Some(ADMIN), "tools/call", call.clone());
        set_header(&mut req, header, value);
        let (status, r, _) = send(&h, req).await;
        assert_eq!((status, code(&r)), (400, -32020), "{header}={value:?}: {r}");
        assert_eq!(r["id"], 7);
    }
    // A resource is named by its URI.
    let mut req = modern_request(Some(ADMIN), "resources/read", json!({ "uri": "cyfr://x" }));
    set_header(&mut req, "mcp-name", Some("cyfr://y"));
    let (status, r, _) = send(&h, req).await;
    assert_eq!((status, code(&r)), (400, -32020), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_result_has_a_result_type_and_lists_carry_caching_hints() {
    let h = Harness::new().await;
    let (status, r, headers) = send(&h, modern_request(Some(ADMIN), "tools/list", json!({}))).await;
    assert_eq!(status, 200, "{r}");
    let res = &r["result"];
    assert_eq!(res["resultType"], "complete");
    // The list depends on the caller's scopes: never shared between callers.
    assert_eq!(res["cacheScope"], "private");
    assert!(res["ttlMs"].as_u64().is_some(), "{r}");
    assert!(!res["tools"].as_array().unwrap().is_empty());
    assert!(!headers.iter().any(|(k, _)| k == "mcp-session-id"));
    for method in ["resources/list", "resources/templates/list", "prompts/list"] {
        let (status, r, _) = send(&h, modern_request(Some(ADMIN), method, json!({}))).await;
        assert_eq!(status, 200, "{method}: {r}");
        let res = &r["result"];
        assert_eq!(res["resultType"], "complete", "{method}: {r}");
        assert!(res["ttlMs"].as_u64().is_some(), "{method}: {r}");
        assert!(
            matches!(res["cacheScope"].as_str(), Some("public" | "private")),
            "{method}: {r}"
        );
    }
    // A tool call's result says so too.
    let call = json!({ "name": "system", "arguments": { "action": "status" } });
    let (_, r, _) = send(&h, modern_request(Some(ADMIN), "tools/call", call)).await;
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert!(
        r["result"].get("ttlMs").is_none(),
        "a call is not cacheable: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn unknown_and_removed_methods_are_404_method_not_found() {
    let h = Harness::new().await;
    for method in [
        "unknown/method",
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
    ] {
        let (status, r, headers) = send(&h, modern_request(Some(ADMIN), method, json!({}))).await;
        assert_eq!((status, code(&r)), (404, -32601), "{method}: {r}");
        assert_eq!(r["id"], 7, "{method}: {r}");
        assert!(
            !headers.iter().any(|(k, _)| k == "mcp-session-id"),
            "{method}"
        );
    }
    // The same methods on 2025-11-25 are still served.
    let r = h.rpc(Some(ADMIN), "ping", json!({})).await;
    assert_eq!(r["result"], json!({}), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_stateless_request_needs_no_initialize_but_its_credentials() {
    let h = Harness::new().await;
    let key = h.key("reader", &["component.search"], json!({})).await;
    let (status, r, _) = send(&h, modern_request(Some(&key), "tools/list", json!({}))).await;
    assert_eq!(status, 200, "{r}");
    // No credentials: refused as on 2025-11-25.
    let (status, r, _) = send(&h, modern_request(None, "tools/list", json!({}))).await;
    assert_eq!((status, code(&r)), (401, -33001), "{r}");
    let (status, r, _) = send(
        &h,
        modern_request(Some("cyfr_sk_wrong"), "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, 401, "{r}");
    // A scope still decides what a call may do.
    let call = json!({ "name": "key", "arguments": { "action": "list" } });
    let (_, r, _) = send(&h, modern_request(Some(&key), "tools/call", call)).await;
    assert_eq!(code(&r), -33004, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_session_id_on_a_stateless_request_lends_it_no_identity() {
    let h = Harness::new().await;
    let sid = h.initialize(ADMIN).await;
    // The admin's live session, sent without credentials: the stateless request is
    // anonymous (a stolen session id is worth nothing on 2026-07-28).
    let mut req = modern_request(None, "tools/list", json!({}));
    req.headers.push(("mcp-session-id".into(), sid.clone()));
    let (status, r, headers) = send(&h, req).await;
    assert_eq!((status, code(&r)), (401, -33001), "{r}");
    assert!(!headers.iter().any(|(k, _)| k == "mcp-session-id"));
    // On 2025-11-25 the session still works.
    let r = h
        .call_in(&sid, "system", json!({ "action": "status" }))
        .await;
    assert!(r.get("error").is_none(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_session_pubkey_is_not_offered_to_a_stateless_request() {
    let h = Harness::with(|c| c.session_encryption = true).await;
    let (_, r, _) = send(&h, modern_request(Some(ADMIN), "resources/list", json!({}))).await;
    assert_eq!(r["result"]["resources"], json!([]), "{r}");
    // A 2025-11-25 client in a session still sees it.
    let sid = h.initialize(ADMIN).await;
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "resources/list", "params": {} });
    let mut req = mcp_request(None, &body);
    req.headers.push(("mcp-session-id".into(), sid));
    let (_, r, _) = send(&h, req).await;
    assert_eq!(r["result"]["resources"].as_array().unwrap().len(), 1, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn get_and_delete_on_a_stateless_request_are_405() {
    let h = Harness::new().await;
    for method in ["GET", "DELETE"] {
        let mut req = modern_request(Some(ADMIN), "tools/list", json!({}));
        req.method = method.into();
        req.body.clear();
        let resp = h.app.handle(req).await;
        assert_eq!(resp.status, 405, "{method}");
        assert!(resp.header("allow").is_some_and(|a| !a.contains(method)));
    }
    // DELETE of a 2025-11-25 session still ends it.
    let sid = h.initialize(ADMIN).await;
    let mut req = mcp_request(Some(ADMIN), &json!({}));
    req.method = "DELETE".into();
    req.body.clear();
    req.headers.push(("mcp-session-id".into(), sid));
    assert_eq!(h.app.handle(req).await.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_stateless_notification_is_accepted_without_a_body() {
    let h = Harness::new().await;
    let body = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "_meta": meta(), "requestId": 1 } });
    let mut req = mcp_request(Some(ADMIN), &body);
    set_header(&mut req, "mcp-protocol-version", Some(V));
    set_header(&mut req, "mcp-method", Some("notifications/cancelled"));
    let resp = h.app.handle(req).await;
    assert_eq!(resp.status, 202);
    assert!(resp.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_2025_revision_is_unchanged_beside_it() {
    let h = Harness::new().await;
    // initialize still mints a session; a 2025 answer has no resultType.
    let sid = h.initialize(ADMIN).await;
    assert!(!sid.is_empty());
    let r = h.rpc(Some(ADMIN), "tools/list", json!({})).await;
    assert!(r["result"].get("resultType").is_none(), "{r}");
    assert!(r["result"].get("ttlMs").is_none(), "{r}");
    // An unknown method is -32601 in a 200, as before.
    let (status, r) = h
        .post(
            Some(ADMIN),
            json!({ "jsonrpc": "2.0", "id": 1, "method": "nope", "params": {} }),
        )
        .await;
    assert_eq!((status, code(&r)), (200, -32601), "{r}");
    // An unknown header version without a stateless body: refused as before, with the id.
    let mut req = mcp_request(
        Some(ADMIN),
        &json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/list" }),
    );
    set_header(&mut req, "mcp-protocol-version", Some("1999-01-01"));
    let (status, r, _) = send(&h, req).await;
    assert_eq!(
        (status, code(&r), r["id"].clone()),
        (400, -33303, json!(5)),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn stateless_requests_keep_the_round_trip_budget() {
    let h = Harness::new().await;
    let trips = |h: &Harness| h.app.db.inner().trips().len();
    h.app.db.inner().reset();
    send(&h, modern_request(None, "server/discover", json!({}))).await;
    assert_eq!(trips(&h), 0, "server/discover");
    h.app.db.inner().reset();
    let (_, r, _) = send(&h, modern_request(Some(ADMIN), "tools/list", json!({}))).await;
    assert!(r.get("result").is_some(), "{r}");
    assert!(trips(&h) <= 1, "tools/list: {:?}", h.app.db.inner().trips());
    h.app.db.inner().reset();
    let call = json!({ "name": "key", "arguments": { "action": "list" } });
    let (_, r, _) = send(&h, modern_request(Some(ADMIN), "tools/call", call)).await;
    assert!(r.get("error").is_none(), "{r}");
    assert!(trips(&h) <= 2, "key.list: {:?}", h.app.db.inner().trips());
    // A refusal of the checks costs nothing.
    h.app.db.inner().reset();
    let mut req = modern_request(Some(ADMIN), "tools/list", json!({}));
    set_header(&mut req, "mcp-method", Some("prompts/list"));
    send(&h, req).await;
    assert_eq!(trips(&h), 0, "a header mismatch");
}
