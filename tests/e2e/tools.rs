//! Components as MCP tools against the real binary: the example reagent is listed under its
//! derived name with its manifest's schemas and runs when called by that name.

use crate::support::*;
use serde_json::{json, Value as Json};

#[test]
fn the_json_transform_reagent_is_a_tool_of_its_own() {
    let s = Server::start();
    register_json_transform(&s);
    let (status, listed) = s.rpc(Some(&s.admin), "tools/list", json!({}));
    assert_eq!(status, 200, "{listed}");
    let tools = listed["result"]["tools"].as_array().unwrap();
    assert!(tools.iter().any(|t| t["name"] == "execution"), "{listed}");
    let tool = tools
        .iter()
        .find(|t| t["name"] == "cyfr.json-transform")
        .unwrap_or_else(|| panic!("not listed: {listed}"));
    assert_eq!(tool["inputSchema"]["required"], json!(["data"]));
    assert_eq!(tool["outputSchema"]["type"], "object");
    assert_eq!(tool["annotations"]["readOnlyHint"], true);

    let r = s.call(
        &s.admin,
        "cyfr.json-transform",
        json!({ "data": [3, 1, 2], "ops": [{ "op": "sort" }] }),
    );
    let result = &r["result"];
    assert_eq!(result["isError"], false, "{r}");
    assert_eq!(result["structuredContent"]["data"], json!([1, 2, 3]), "{r}");
    let text: Json = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, result["structuredContent"]);
    // The call is a run on record.
    let id = result["_meta"]["cyfr.dev/execution_id"].as_str().unwrap();
    let runs = s.ok(&s.admin, "execution", json!({ "action": "list" }));
    assert!(runs.to_string().contains(id), "{runs}");

    // A key without the execution scope sees none of it.
    let reader = s.key("reader", "secret", &["component.search"], json!({}));
    let (_, listed) = s.rpc(Some(&reader), "tools/list", json!({}));
    let names: Vec<&Json> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    assert!(names.contains(&&json!("execution")), "{listed}");
    assert!(!names.contains(&&json!("cyfr.json-transform")), "{listed}");
}

#[test]
fn cyfr_mcp_tools_chooses_the_families_mcp_serves() {
    let s = Server::start_env(&[], &[("CYFR_MCP_TOOLS", "admin")]);
    register_json_transform(&s);
    let (_, listed) = s.rpc(Some(&s.admin), "tools/list", json!({}));
    let names: Vec<&Json> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    assert!(names.contains(&&json!("execution")), "{listed}");
    assert!(!names.contains(&&json!("cyfr.json-transform")), "{listed}");
    let r = s.call(&s.admin, "cyfr.json-transform", json!({ "data": [1] }));
    assert_eq!(code(&r), -32602, "{r}");
}

#[test]
fn the_agent_endpoint_lists_and_runs_components_only() {
    let s = Server::start();
    register_json_transform(&s);
    let agent = format!("{}/agent", s.url);
    let post = |method: &str, params: Json| -> Json {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let resp = reqwest::blocking::Client::new()
            .post(&agent)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .header("authorization", format!("Bearer {}", s.admin))
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        serde_json::from_str(&resp.text().unwrap()).unwrap()
    };
    let listed = post("tools/list", json!({}));
    let names: Vec<&Json> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    assert_eq!(names, vec![&json!("cyfr.json-transform")], "{listed}");
    let r = post(
        "tools/call",
        json!({ "name": "cyfr.json-transform", "arguments": { "data": [2, 1], "ops": [{ "op": "sort" }] } }),
    );
    assert_eq!(
        r["result"]["structuredContent"]["data"],
        json!([1, 2]),
        "{r}"
    );
    let r = post(
        "tools/call",
        json!({ "name": "key", "arguments": { "action": "list" } }),
    );
    assert_eq!(
        code(&r),
        -32602,
        "an admin tool is unknown at /mcp/agent: {r}"
    );
}

/// A stateless (2026-07-28) `tools/call` with the client capabilities `caps` and `extra`
/// params; (HTTP status, whole response).
fn modern_call(s: &Server, tool: &str, caps: Json, extra: Json) -> (u16, Json) {
    let mut params = json!({ "name": tool, "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
    } });
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let body = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params });
    let auth = format!("Bearer {}", s.admin);
    let headers = [
        ("authorization", auth.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ];
    let (status, _, r) = s.post(&headers, &body.to_string());
    (status, r)
}

#[test]
fn a_real_component_asks_for_input_over_several_rounds() {
    let s = Server::start();
    let dir = workspace().join("tests/fixtures/conformance-input/manifests");
    let m: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("multi-round.json")).unwrap())
            .unwrap();
    s.register(m, &wasm("conformance-input"));
    let tool = "test_input_required_result_multi_round";
    let caps = json!({ "elicitation": {} });
    let (status, r) = modern_call(&s, tool, caps.clone(), json!({}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    assert!(r["result"]["inputRequests"]["step1"].is_object(), "{r}");
    let first = r["result"]["requestState"].as_str().unwrap().to_string();
    let answer =
        |k: &str, f: &str, v: &str| json!({ k: { "action": "accept", "content": { f: v } } });
    let retry = json!({ "inputResponses": answer("step1", "name", "Ada"), "requestState": first });
    let (_, r) = modern_call(&s, tool, caps.clone(), retry.clone());
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    assert!(r["result"]["inputRequests"]["step2"].is_object(), "{r}");
    let second = r["result"]["requestState"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    // The component kept the name in its state, sealed: the client never sees it.
    assert!(!second.contains("Ada"));
    let done =
        json!({ "inputResponses": answer("step2", "color", "green"), "requestState": second });
    let (_, r) = modern_call(&s, tool, caps.clone(), done);
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "Ada likes green", "{r}");
    // The first state was spent: replaying it is refused, and nothing runs.
    let (_, r) = modern_call(&s, tool, caps, retry);
    assert_eq!(code(&r), -32602, "{r}");
    // A client that cannot elicit is told so: -32021 at 400.
    let (status, r) = modern_call(&s, tool, json!({}), json!({}));
    assert_eq!((status, code(&r)), (400, -32021), "{r}");
    assert_eq!(
        r["error"]["data"]["requiredCapabilities"],
        json!({ "elicitation": {} })
    );
}
