//! Components as MCP tools: listed per caller, named by the documented rule, and called
//! as exactly `execution.run` (record, policy, redaction, rate limits, round trips).

use crate::support::{code, completed, fake_wasm, manifest, Harness, ADMIN};
use base64::Engine;
use cyfr_core::db::Db;
use serde_json::{json, Value as Json};

/// Registers `m` (a manifest) with fake bytes; the JSON-RPC response.
async fn register(h: &Harness, m: Json) -> Json {
    let tag = m["id"].as_str().unwrap().to_string() + m["version"].as_str().unwrap();
    let wasm = base64::engine::general_purpose::STANDARD.encode(fake_wasm(&tag));
    h.call(
        ADMIN,
        "component",
        json!({ "action": "register", "manifest": m, "wasm": wasm }),
    )
    .await
}

/// A manifest with `extra` fields set.
fn with(ctype: &str, ns_name: &str, version: &str, extra: Json) -> Json {
    let mut m = manifest(ctype, ns_name, version);
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    m
}

fn input_schema() -> Json {
    json!({ "type": "object", "required": ["data"], "properties": { "data": { "type": "array" } } })
}

/// Every tool `tools/list` shows `key` (all pages), by name.
async fn listed(h: &Harness, key: &str) -> Vec<Json> {
    let mut out = Vec::new();
    let mut params = json!({});
    loop {
        let r = h.rpc(Some(key), "tools/list", params).await;
        let result = &r["result"];
        out.extend(
            result["tools"]
                .as_array()
                .unwrap_or_else(|| panic!("{r}"))
                .clone(),
        );
        match result.get("nextCursor") {
            Some(Json::String(c)) => params = json!({ "cursor": c }),
            _ => return out,
        }
    }
}

fn names(tools: &[Json]) -> Vec<String> {
    tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn find<'a>(tools: &'a [Json], name: &str) -> &'a Json {
    tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {:?}", names(tools)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_registered_reagent_is_listed_with_its_schemas_and_annotations() {
    let h = Harness::new().await;
    let m = with(
        "reagent",
        "acme.sum",
        "0.1.0",
        json!({ "title": "Sum", "schema": { "input": input_schema(), "output": { "type": "object", "properties": { "sum": { "type": "number" } } } } }),
    );
    assert!(register(&h, m).await.get("error").is_none());
    h.register("catalyst", "acme.fetch", "0.1.0").await;
    let tools = listed(&h, ADMIN).await;
    // The administrative tools first, then the components.
    assert_eq!(tools[0]["name"], "execution");
    let sum = find(&tools, "acme.sum");
    assert_eq!(sum["description"], "test reagent acme.sum");
    assert_eq!(sum["title"], "Sum");
    assert_eq!(sum["inputSchema"], input_schema());
    assert_eq!(sum["outputSchema"]["properties"]["sum"]["type"], "number");
    assert_eq!(sum["annotations"]["readOnlyHint"], true);
    assert_eq!(sum["annotations"]["openWorldHint"], false);
    assert_eq!(sum["_meta"]["cyfr.dev/reference"], "reagent:acme.sum:0.1.0");
    let fetch = find(&tools, "acme.fetch");
    assert_eq!(fetch["inputSchema"], json!({ "type": "object" }));
    assert!(fetch.get("outputSchema").is_none());
    assert_eq!(fetch["annotations"]["openWorldHint"], true);
    assert_eq!(fetch["annotations"]["readOnlyHint"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_key_without_the_execution_scope_sees_and_calls_no_component() {
    let h = Harness::new().await;
    h.register("reagent", "acme.sum", "0.1.0").await;
    let reader = h.key("reader", &["component.search"], json!({})).await;
    let tools = listed(&h, &reader).await;
    assert!(
        !names(&tools).iter().any(|n| n.contains('.')),
        "{:?}",
        names(&tools)
    );
    let r = h.call(&reader, "acme.sum", json!({})).await;
    assert_eq!(code(&r), -33004, "{r}");
    assert!(h.host().runs.borrow().is_empty());
    let runner = h.key("runner", &["execution"], json!({})).await;
    assert!(names(&listed(&h, &runner).await).contains(&"acme.sum".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn calling_a_component_tool_is_a_recorded_run_with_its_output() {
    let h = Harness::new().await;
    let m = with(
        "reagent",
        "acme.sum",
        "0.1.0",
        json!({ "schema": { "input": input_schema(), "output": { "type": "object" } } }),
    );
    register(&h, m).await;
    h.register("reagent", "acme.plain", "0.1.0").await;
    let key = h.key("runner", &["execution"], json!({})).await;
    h.host().answer(Ok(completed(json!({ "sum": 6 }))));
    let r = h.call(&key, "acme.sum", json!({ "data": [1, 2, 3] })).await;
    let result = &r["result"];
    assert_eq!(result["isError"], false, "{r}");
    assert_eq!(result["content"][0]["type"], "text");
    assert_eq!(
        result["content"][0]["text"],
        json!({ "sum": 6 }).to_string()
    );
    assert_eq!(result["structuredContent"], json!({ "sum": 6 }));
    let id = result["_meta"]["cyfr.dev/execution_id"].as_str().unwrap();
    {
        let runs = h.host().runs.borrow();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].execution_id, id);
        assert_eq!(
            serde_json::from_str::<Json>(&runs[0].input).unwrap(),
            json!({ "data": [1, 2, 3] })
        );
    }
    let list = h.ok(&key, "execution", json!({ "action": "list" })).await;
    assert!(list.to_string().contains(id), "{list}");
    assert!(
        list.to_string().contains("reagent:acme.sum:0.1.0"),
        "{list}"
    );
    // No output schema: text only.
    h.host().answer(Ok(completed(json!({ "n": 1 }))));
    let r = h.call(&key, "acme.plain", json!({})).await;
    assert_eq!(r["result"]["content"][0]["text"], "{\"n\":1}", "{r}");
    assert!(r["result"].get("structuredContent").is_none(), "{r}");
    // An unknown tool is a JSON-RPC error, as for any tool.
    assert_eq!(code(&h.call(&key, "acme.nothing", json!({})).await), -32602);
    assert_eq!(code(&h.call(&key, "nothing", json!({})).await), -32602);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_component_tool_keeps_the_policy_the_rate_limit_and_the_redaction_of_a_run() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "acme.rate", "0.1.0").await;
    h.ok(
        ADMIN,
        "policy",
        json!({ "action": "set", "reference": reference, "field": "rate_limit", "value": "1/1m" }),
    )
    .await;
    let first = h.call(ADMIN, "acme.rate", json!({})).await;
    assert_eq!(first["result"]["isError"], false, "{first}");
    // A failed run is a tool result with isError, not a JSON-RPC error.
    let second = h.call(ADMIN, "acme.rate", json!({})).await;
    assert_eq!(second["result"]["isError"], true, "{second}");
    assert_eq!(
        second["result"]["structuredContent"]["error"]["code"],
        -33005
    );
    assert_eq!(h.host().runs.borrow().len(), 1);

    let value = "sk-live-0123456789abcdef";
    let catalyst = h.register("catalyst", "acme.fetch", "0.1.0").await;
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "set", "name": "API_TOKEN", "value": value }),
    )
    .await;
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "grant", "name": "API_TOKEN", "reference": catalyst }),
    )
    .await;
    // Without allowed_domains the catalyst's policy refuses it before the host.
    let r = h.call(ADMIN, "acme.fetch", json!({})).await;
    assert_eq!(
        r["result"]["structuredContent"]["error"]["code"], -33102,
        "{r}"
    );
    h.ok(ADMIN, "policy", json!({ "action": "set", "reference": catalyst, "field": "allowed_domains", "value": ["api.example.com"] })).await;
    h.host().answer(Ok(completed(json!({ "echo": value }))));
    let r = h.call(ADMIN, "acme.fetch", json!({})).await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    assert!(!r.to_string().contains(value), "redacted: {r}");
    assert_eq!(
        h.host().runs.borrow()[1]
            .secrets
            .get("API_TOKEN")
            .map(String::as_str),
        Some(value)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_highest_version_is_the_default_and_older_ones_stay_reachable() {
    let h = Harness::new().await;
    h.register("reagent", "acme.v", "0.1.0").await;
    h.register("reagent", "acme.v", "0.10.0").await;
    h.register("reagent", "acme.v", "0.2.0").await;
    let tools = listed(&h, ADMIN).await;
    assert_eq!(
        find(&tools, "acme.v")["_meta"]["cyfr.dev/reference"],
        "reagent:acme.v:0.10.0"
    );
    assert_eq!(
        names(&tools)
            .iter()
            .filter(|n| n.starts_with("acme.v"))
            .count(),
        1
    );
    for (tool, version) in [
        ("acme.v", "0.10.0"),
        ("acme.v_v0.1.0", "0.1.0"),
        ("acme.v_reagent_v0.2.0", "0.2.0"),
    ] {
        let r = h.call(ADMIN, tool, json!({})).await;
        assert_eq!(
            r["result"]["_meta"]["cyfr.dev/reference"],
            format!("reagent:acme.v:{version}"),
            "{tool}: {r}"
        );
    }
    assert_eq!(
        code(&h.call(ADMIN, "acme.v_v9.9.9", json!({})).await),
        -32602
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn name_collisions_resolve_by_the_documented_rule() {
    let h = Harness::new().await;
    // Two types share acme.twin: each is listed with its type; the bare name is ambiguous.
    h.register("reagent", "acme.twin", "0.1.0").await;
    h.register("catalyst", "acme.twin", "0.1.0").await;
    // A declared name belongs to one component: another is refused at registration (its
    // own later versions may keep it).
    for (ns_name, version) in [("zed.search", "0.1.0"), ("zed.search", "0.2.0")] {
        let m = with(
            "reagent",
            ns_name,
            version,
            json!({ "tool_name": "search" }),
        );
        assert!(register(&h, m).await.get("error").is_none());
    }
    let taken = with(
        "reagent",
        "acme.search",
        "0.1.0",
        json!({ "tool_name": "search" }),
    );
    let r = register(&h, taken.clone()).await;
    assert_eq!(code(&r), -33201, "{r}");
    assert!(r.to_string().contains("reagent:zed.search"), "{r}");
    assert_eq!(
        code(&h.call(ADMIN, "acme.search", json!({})).await),
        -32602,
        "not registered"
    );
    // Two declaring it anyway (registered concurrently, or before the check): the first in
    // (type, namespace, name) order has it, the other keeps its derived name.
    h.app
        .db
        .query(
            "INSERT INTO components (component_type, namespace, name, version, version_key, digest, description, manifest, created_at) \
             SELECT 'reagent', 'acme', 'search', '0.1.0', version_key, digest, 'd', ?, 0 FROM components WHERE namespace = 'zed' AND version = '0.1.0'",
            &[taken.to_string().into()],
        )
        .await
        .unwrap();
    let tools = listed(&h, ADMIN).await;
    let n = names(&tools);
    for want in [
        "acme.twin_reagent",
        "acme.twin_catalyst",
        "search",
        "zed.search",
    ] {
        assert!(n.contains(&want.to_string()), "{want} in {n:?}");
    }
    assert!(!n.contains(&"acme.twin".to_string()), "{n:?}");
    assert_eq!(
        find(&tools, "search")["_meta"]["cyfr.dev/reference"],
        "reagent:acme.search:0.1.0"
    );
    let r = h.call(ADMIN, "search", json!({})).await;
    assert_eq!(
        r["result"]["_meta"]["cyfr.dev/reference"], "reagent:acme.search:0.1.0",
        "{r}"
    );
    let r = h.call(ADMIN, "zed.search", json!({})).await;
    assert_eq!(
        r["result"]["_meta"]["cyfr.dev/reference"],
        "reagent:zed.search:0.2.0"
    );
    let r = h.call(ADMIN, "acme.twin_catalyst", json!({})).await;
    assert_eq!(
        r["result"]["structuredContent"]["error"]["code"], -33102,
        "the catalyst, refused by its policy: {r}"
    );
    // The bare name is no tool of its own: refused like an unknown one, naming both.
    let r = h.call(ADMIN, "acme.twin", json!({})).await;
    assert_eq!(code(&r), -32602, "{r}");
    assert_eq!(
        r["error"]["data"]["candidates"].as_array().map(Vec::len),
        Some(2),
        "{r}"
    );
    // The order is deterministic: the same list twice.
    assert_eq!(names(&listed(&h, ADMIN).await), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_bad_or_taken_tool_name_is_refused_at_registration() {
    let h = Harness::new().await;
    for (name, needle) in [
        (json!("execution"), "cyfr's own tools"),
        (json!("Component"), "cyfr's own tools"),
        (json!("has.dot"), "`tool_name`"),
        (json!("sp ace"), "`tool_name`"),
        (json!(""), "`tool_name`"),
        (json!(7), "`tool_name`"),
    ] {
        let r = register(
            &h,
            with("reagent", "acme.bad", "0.1.0", json!({ "tool_name": name })),
        )
        .await;
        assert_eq!(code(&r), -33201, "{name}: {r}");
        assert!(r.to_string().contains(needle), "{name}: {r}");
    }
    let r = register(
        &h,
        with(
            "reagent",
            "acme.bad",
            "0.1.0",
            json!({ "mcp_content": "yes" }),
        ),
    )
    .await;
    assert_eq!(code(&r), -33201, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_list_is_paginated_with_an_opaque_cursor() {
    let h = Harness::new().await;
    for i in 0..105 {
        h.register("reagent", &format!("page.c{i:03}"), "0.1.0")
            .await;
    }
    let first = h.rpc(Some(ADMIN), "tools/list", json!({})).await;
    let cursor = first["result"]["nextCursor"].as_str().unwrap().to_string();
    let page: Vec<Json> = first["result"]["tools"].as_array().unwrap().clone();
    assert_eq!(
        names(&page)
            .iter()
            .filter(|n| n.starts_with("page."))
            .count(),
        100
    );
    let second = h
        .rpc(Some(ADMIN), "tools/list", json!({ "cursor": cursor }))
        .await;
    let rest = names(second["result"]["tools"].as_array().unwrap());
    assert_eq!(
        rest,
        (100..105)
            .map(|i| format!("page.c{i:03}"))
            .collect::<Vec<_>>()
    );
    assert!(second["result"].get("nextCursor").is_none(), "{second}");
    let all = listed(&h, ADMIN).await;
    let components: Vec<String> = names(&all)
        .into_iter()
        .filter(|n| n.contains('.'))
        .collect();
    assert_eq!(components.len(), 105);
    let mut sorted = components.clone();
    sorted.sort();
    assert_eq!(components, sorted);
    let r = h
        .rpc(Some(ADMIN), "tools/list", json!({ "cursor": "not-ours" }))
        .await;
    assert_eq!(code(&r), -32602, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_endpoint_serves_only_the_families_it_is_set_to() {
    use cyfr_core::config::ToolFamilies;
    let admin_only = Harness::with(|c| c.mcp_tools = ToolFamilies::Admin).await;
    admin_only.register("reagent", "acme.sum", "0.1.0").await;
    let n = names(&listed(&admin_only, ADMIN).await);
    assert!(
        n.contains(&"execution".to_string()) && !n.contains(&"acme.sum".to_string()),
        "{n:?}"
    );
    assert_eq!(
        code(&admin_only.call(ADMIN, "acme.sum", json!({})).await),
        -32602
    );

    let agents = Harness::with(|c| c.mcp_tools = ToolFamilies::Components).await;
    // Registered beside the MCP surface (as `cyfr register` does natively): the row a
    // registration of 0.1.0 writes, its version key in the registry's encoding.
    let key = format!("{:020}.{:020}.{:020}.~", 0, 1, 0);
    let m = manifest("reagent", "acme.sum", "0.1.0");
    agents
        .app
        .db
        .query(
            "INSERT INTO components (component_type, namespace, name, version, version_key, digest, description, manifest, created_at) VALUES ('reagent', 'acme', 'sum', '0.1.0', ?, 'sha256:00', 'd', ?, 0)",
            &[key.into(), m.to_string().into()],
        )
        .await
        .unwrap();
    let n = names(&listed(&agents, ADMIN).await);
    assert_eq!(n, vec!["acme.sum".to_string()]);
    let r = agents
        .call(ADMIN, "execution", json!({ "action": "list" }))
        .await;
    assert_eq!(code(&r), -32602, "{r}");
    let r = agents.call(ADMIN, "acme.sum", json!({})).await;
    assert_eq!(r["result"]["isError"], false, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_mcp_content_component_returns_its_own_checked_blocks() {
    let h = Harness::new().await;
    register(
        &h,
        with(
            "reagent",
            "acme.pic",
            "0.1.0",
            json!({ "mcp_content": true }),
        ),
    )
    .await;
    let blocks = json!([
        { "type": "text", "text": "a picture" },
        { "type": "image", "data": "aGk=", "mimeType": "image/png" },
    ]);
    h.host().answer(Ok(completed(
        json!({ "content": blocks, "structuredContent": { "w": 1 } }),
    )));
    let r = h.call(ADMIN, "acme.pic", json!({})).await;
    assert_eq!(r["result"]["content"], blocks, "{r}");
    assert_eq!(r["result"]["structuredContent"], json!({ "w": 1 }));
    assert_eq!(r["result"]["isError"], false);
    h.host().answer(Ok(completed(
        json!({ "content": [{ "type": "image", "data": "%%" }] }),
    )));
    let r = h.call(ADMIN, "acme.pic", json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(r.to_string().contains("content[0]"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_component_tool_call_is_audited_as_execution_run_of_its_tool_name() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "acme.rate", "0.1.0").await;
    h.ok(
        ADMIN,
        "policy",
        json!({ "action": "set", "reference": reference, "field": "rate_limit", "value": "1/1m" }),
    )
    .await;
    h.call(ADMIN, "acme.rate", json!({})).await;
    h.call(ADMIN, "acme.rate", json!({})).await;
    let rows = h
        .ok(
            ADMIN,
            "audit",
            json!({ "action": "list", "filters": { "reference": "acme.rate" } }),
        )
        .await["events"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["tool"], "execution", "{r}");
        assert_eq!(r["action"], "run", "{r}");
    }
    let outcomes: Vec<&Json> = rows.iter().map(|r| &r["outcome"]).collect();
    assert!(outcomes.contains(&&json!("ok")), "{outcomes:?}");
    assert!(
        outcomes.iter().any(|o| *o != &json!("ok")),
        "the refused run is recorded as refused: {outcomes:?}"
    );
}

/// A JSON-RPC call to the agents' endpoint, `/mcp/agent`; status and body.
async fn at_agent_path(h: &Harness, key: &str, method: &str, params: Json) -> (u16, Json) {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let mut req = crate::support::mcp_request(Some(key), &body);
    req.path = cyfr_core::app::AGENT_PATH.into();
    let resp = h.app.handle(req).await;
    (
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Json::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_agent_endpoint_serves_components_only_beside_a_full_mcp() {
    let h = Harness::new().await;
    h.register("reagent", "acme.sum", "0.1.0").await;
    // `/mcp` shows both families...
    let n = names(&listed(&h, ADMIN).await);
    assert!(n.contains(&"key".to_string()) && n.contains(&"acme.sum".to_string()));
    // ...`/mcp/agent`, on the same server, the component alone, even to an admin key.
    let (status, r) = at_agent_path(&h, ADMIN, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        names(r["result"]["tools"].as_array().unwrap()),
        vec!["acme.sum".to_string()]
    );
    let (_, r) = at_agent_path(
        &h,
        ADMIN,
        "tools/call",
        json!({ "name": "key", "arguments": { "action": "list" } }),
    )
    .await;
    assert_eq!(code(&r), -32602, "an admin tool is unknown there: {r}");
    let (_, r) = at_agent_path(
        &h,
        ADMIN,
        "tools/call",
        json!({ "name": "acme.sum", "arguments": {} }),
    )
    .await;
    assert_eq!(r["result"]["isError"], false, "{r}");

    // A server that hides components has no agents' endpoint.
    let admin_only = Harness::with(|c| c.mcp_tools = cyfr_core::config::ToolFamilies::Admin).await;
    let (status, _) = at_agent_path(&admin_only, ADMIN, "tools/list", json!({})).await;
    assert_eq!(status, 404);
}
