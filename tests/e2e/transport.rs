//! The Streamable HTTP rules of /mcp.

use crate::support::*;
use serde_json::json;

#[test]
fn initialize_answers_with_protocol_version_and_session_id() {
    let s = Server::start();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}).to_string();
    let (status, headers, r) = s.post(&[], &body);
    assert_eq!(status, 200);
    assert_eq!(r["result"]["protocolVersion"], "2025-11-25");
    assert!(r["result"]["capabilities"]["tools"].is_object());
    assert_eq!(r["result"]["serverInfo"]["name"], "cyfr");
    let sid = headers
        .get("mcp-session-id")
        .expect("MCP-Session-Id header")
        .to_str()
        .unwrap();
    assert!(sid.len() >= 32);
    // The session works for ping and, unauthenticated, refuses tools.
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string();
    let (status, _, r) = s.post(&[("mcp-session-id", sid)], &ping);
    assert_eq!((status, r["result"].clone()), (200, json!({})));
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string();
    let (status, _, r) = s.post(&[("mcp-session-id", sid)], &list);
    assert_eq!((status, code(&r)), (401, -33001));
}

#[test]
fn session_opened_with_a_key_carries_it_until_deleted() {
    let s = Server::start();
    let auth = format!("Bearer {}", s.admin);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}).to_string();
    let (_, headers, r) = s.post(&[("authorization", &auth)], &init);
    assert_eq!(r["result"]["protocolVersion"], "2025-06-18");
    let sid = headers["mcp-session-id"].to_str().unwrap().to_string();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let (status, _, r) = s.post(&[("mcp-session-id", &sid)], &list);
    assert_eq!(status, 200, "{r}");
    assert!(r["result"]["tools"].as_array().unwrap().len() >= 4);
    assert_eq!(
        s.request(reqwest::Method::DELETE, &[("mcp-session-id", &sid)]),
        204
    );
    let (status, _, r) = s.post(&[("mcp-session-id", &sid)], &list);
    assert_eq!((status, code(&r)), (404, -33302));
}

#[test]
fn unknown_session_is_404_with_session_expired() {
    let s = Server::start();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    let auth = format!("Bearer {}", s.admin);
    let (status, _, r) = s.post(
        &[
            ("authorization", &auth),
            ("mcp-session-id", "no-such-session"),
        ],
        &list,
    );
    assert_eq!((status, code(&r)), (404, -33302));
}

#[test]
fn notifications_and_client_responses_get_202() {
    let s = Server::start();
    let (status, _, _) = s.post(
        &[],
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
    );
    assert_eq!(status, 202);
    let (status, _, _) = s.post(
        &[],
        &json!({"jsonrpc": "2.0", "id": 9, "result": {}}).to_string(),
    );
    assert_eq!(status, 202);
}

#[test]
fn malformed_messages_get_json_rpc_errors() {
    let s = Server::start();
    let auth = format!("Bearer {}", s.admin);
    let h = [("authorization", auth.as_str())];
    let (status, _, r) = s.post(&h, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]");
    assert_eq!((status, code(&r)), (400, -32600));
    let (status, _, r) = s.post(&h, "{not json");
    assert_eq!((status, code(&r)), (400, -32700));
    let (status, _, r) = s.post(
        &h,
        &json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}).to_string(),
    );
    assert_eq!((status, code(&r)), (400, -32600));
    let (_, r) = s.rpc(Some(&s.admin), "resources/teleport", json!({}));
    assert_eq!(code(&r), -32601);
}

#[test]
fn unsupported_protocol_version_is_400() {
    let s = Server::start();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let (status, _, r) = s.post(&[("mcp-protocol-version", "1999-01-01")], &body);
    assert_eq!((status, code(&r)), (400, -33303));
    let (status, _, _) = s.post(&[("mcp-protocol-version", "2025-11-25")], &body);
    assert_eq!(status, 200);
}

#[test]
fn foreign_browser_origin_is_refused_and_loopback_allowed() {
    let s = Server::start();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let (status, _, r) = s.post(&[("origin", "https://evil.example")], &body);
    assert_eq!((status, code(&r)), (403, -33004));
    let (status, headers, _) = s.post(&[("origin", "http://localhost:5173")], &body);
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:5173"
    );
}

#[test]
fn get_is_405_until_streaming_lands() {
    let s = Server::start();
    assert_eq!(
        s.request(reqwest::Method::GET, &[("accept", "text/event-stream")]),
        405
    );
    assert_eq!(s.request(reqwest::Method::PUT, &[]), 405);
}

#[test]
fn tools_list_describes_every_tool_with_actions() {
    let s = Server::start();
    let (_, r) = s.rpc(Some(&s.admin), "tools/list", json!({}));
    let tools = r["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for want in ["execution", "component", "key", "policy", "system"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for t in tools {
        assert!(!t["description"].as_str().unwrap().is_empty());
        assert_eq!(t["inputSchema"]["type"], "object");
        assert!(
            !t["inputSchema"]["properties"]["action"]["enum"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{t}"
        );
    }
    let exec = tools.iter().find(|t| t["name"] == "execution").unwrap();
    assert!(exec["inputSchema"]["properties"]["action"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("run")));
}

#[test]
fn delete_without_a_session_id_is_session_required() {
    let s = Server::start();
    let (status, r) = s.request_json(reqwest::Method::DELETE, &[]);
    assert_eq!((status, code(&r)), (400, -33301));
}

#[test]
fn api_health_and_request_ids_as_cyfrs_clients_expect() {
    let s = Server::start();
    // CYFR's `cyfr up` polls /api/health.
    let r = reqwest::blocking::get(s.url.replace("/mcp", "/api/health")).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(
        (v["status"].clone(), v["service"].clone()),
        (json!("ok"), json!("cyfr"))
    );
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let auth = format!("Bearer {}", s.admin);
    let (_, headers, _) = s.post(
        &[("authorization", &auth), ("x-request-id", "trace-7.a_b")],
        &ping,
    );
    assert_eq!(headers["x-request-id"], "trace-7.a_b", "a sane id is kept");
    let (_, headers, _) = s.post(
        &[("authorization", &auth), ("x-request-id", "no spaces")],
        &ping,
    );
    let minted = headers["x-request-id"].to_str().unwrap();
    assert!(
        minted != "no spaces" && minted != rid && !minted.is_empty(),
        "{minted}"
    );
    assert_eq!(
        headers.get_all("x-request-id").iter().count(),
        1,
        "one id per response"
    );
}

#[test]
fn a_2026_07_28_client_discovers_and_lists_tools_without_a_session() {
    let s = Server::start();
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let discover =
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}})
            .to_string();
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "server/discover"),
    ];
    let (status, headers, r) = s.post(&modern, &discover);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["supportedVersions"][0], "2026-07-28");
    assert!(headers.get("mcp-session-id").is_none());
    let list =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}})
            .to_string();
    let auth = format!("Bearer {}", s.admin);
    let (status, headers, r) = s.post(
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("authorization", &auth),
        ],
        &list,
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["resultType"], "complete");
    assert_eq!(r["result"]["cacheScope"], "private");
    assert!(!r["result"]["tools"].as_array().unwrap().is_empty());
    assert!(headers.get("mcp-session-id").is_none());
    // The header that names the method must match the body.
    let (status, _, r) = s.post(
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "prompts/list"),
            ("authorization", &auth),
        ],
        &list,
    );
    assert_eq!((status, code(&r)), (400, -32020), "{r}");
    // A GET carrying the stateless version is refused: there is no stream to open.
    assert_eq!(
        s.request(
            reqwest::Method::GET,
            &[("mcp-protocol-version", "2026-07-28")]
        ),
        405
    );
}
