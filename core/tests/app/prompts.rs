//! Prompts and resources that component manifests declare (docs/components.md, "Prompts
//! and resources"): listed and served to callers who may run components, arguments
//! substituted, templates matched, input asked first on 2026-07-28, bad declarations
//! refused at registration, and each method in one round trip.

use crate::modern::{meta, modern_request, send};
use crate::support::{code, fake_wasm, manifest, Harness, ADMIN};
use base64::Engine;
use serde_json::{json, Value as Json};

const PNG: &str = "iVBORw0KGgo=";

fn declaring() -> Json {
    let mut m = manifest("reagent", "acme.docs", "0.1.0");
    m["prompts"] = json!([
        { "name": "greet", "description": "Greets someone",
          "arguments": [{ "name": "who", "description": "Whom", "required": true }, { "name": "mood", "description": "optional" }],
          "messages": [{ "role": "user", "content": { "type": "text", "text": "Say hello to {{who}}{{mood}}; keep {{unknown}}" } }] },
        { "name": "ask_first", "description": "Asks for context first",
          "inputRequests": { "ctx": { "method": "elicitation/create", "params": { "message": "Context?", "requestedSchema": { "type": "object" } } } },
          "messages": [{ "role": "user", "content": { "type": "text", "text": "Context: {{input.ctx.context}}" } }] },
    ]);
    m["resources"] = json!([
        { "uri": "acme://readme", "name": "readme", "description": "Text", "mimeType": "text/plain", "text": "hello" },
        { "uri": "acme://logo", "name": "logo", "mimeType": "image/png", "blob": PNG },
    ]);
    m["resource_templates"] = json!([
        { "uriTemplate": "acme://items/{id}/data", "name": "item", "mimeType": "application/json", "text": "{\"id\":\"{{id}}\"}" },
    ]);
    m
}

async fn register(h: &Harness, m: Json) -> Json {
    let wasm = base64::engine::general_purpose::STANDARD.encode(fake_wasm("docs"));
    h.call(
        ADMIN,
        "component",
        json!({ "action": "register", "manifest": m, "wasm": wasm }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn declared_prompts_are_listed_and_rendered_with_their_arguments() {
    let h = Harness::new().await;
    let r = register(&h, declaring()).await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let r = h.rpc(Some(ADMIN), "prompts/list", json!({})).await;
    let prompts = r["result"]["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 2, "{r}");
    assert_eq!(prompts[0]["name"], "greet");
    assert_eq!(prompts[0]["arguments"][0]["required"], true);
    assert_eq!(
        prompts[0]["_meta"]["cyfr.dev/reference"],
        "reagent:acme.docs:0.1.0"
    );
    assert!(
        prompts[0].get("messages").is_none(),
        "the list shows no messages"
    );
    let r = h
        .rpc(
            Some(ADMIN),
            "prompts/get",
            json!({ "name": "greet", "arguments": { "who": "Ada" } }),
        )
        .await;
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"], "Say hello to Ada; keep {{unknown}}",
        "{r}"
    );
    assert_eq!(r["result"]["description"], "Greets someone");
    // A missing required argument, a non-string one and an unknown prompt are -32602.
    for params in [
        json!({ "name": "greet" }),
        json!({ "name": "greet", "arguments": { "who": 1 } }),
        json!({ "name": "nothing" }),
    ] {
        let r = h.rpc(Some(ADMIN), "prompts/get", params.clone()).await;
        assert_eq!(code(&r), -32602, "{params}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn only_callers_who_may_run_components_see_them() {
    let h = Harness::new().await;
    register(&h, declaring()).await;
    let reader = h.key("reader", &["component.info"], json!({})).await;
    let r = h.rpc(Some(&reader), "prompts/list", json!({})).await;
    assert_eq!(r["result"]["prompts"], json!([]), "{r}");
    let r = h
        .rpc(
            Some(&reader),
            "prompts/get",
            json!({ "name": "greet", "arguments": { "who": "x" } }),
        )
        .await;
    assert_eq!(code(&r), -32602, "{r}");
    let r = h
        .rpc(
            Some(&reader),
            "resources/read",
            json!({ "uri": "acme://readme" }),
        )
        .await;
    assert_eq!(code(&r), -32602, "{r}");
    let r = h.rpc(Some(&reader), "resources/list", json!({})).await;
    assert!(!r.to_string().contains("acme://"), "{r}");
    let r = h.rpc(None, "prompts/list", json!({})).await;
    assert!(r.get("error").is_some(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn declared_resources_and_templates_are_listed_and_read() {
    let h = Harness::new().await;
    register(&h, declaring()).await;
    let r = h.rpc(Some(ADMIN), "resources/list", json!({})).await;
    let uris: Vec<&str> = r["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["uri"].as_str())
        .collect();
    assert!(
        uris.contains(&"acme://readme") && uris.contains(&"acme://logo"),
        "{r}"
    );
    let r = h
        .rpc(Some(ADMIN), "resources/templates/list", json!({}))
        .await;
    assert!(r.to_string().contains("acme://items/{id}/data"), "{r}");
    assert!(
        r.to_string().contains("cyfr://executions/"),
        "cyfr's own stay: {r}"
    );
    let read = |uri: &str| h.rpc(Some(ADMIN), "resources/read", json!({ "uri": uri }));
    let r = read("acme://readme").await;
    assert_eq!(r["result"]["contents"][0]["text"], "hello", "{r}");
    assert_eq!(r["result"]["contents"][0]["mimeType"], "text/plain");
    let r = read("acme://logo").await;
    assert_eq!(r["result"]["contents"][0]["blob"], PNG, "{r}");
    let r = read("acme://items/42/data").await;
    assert_eq!(r["result"]["contents"][0]["text"], "{\"id\":\"42\"}", "{r}");
    assert_eq!(r["result"]["contents"][0]["uri"], "acme://items/42/data");
    // A value that is not one segment of unreserved characters matches nothing.
    for uri in [
        "acme://items/%22/data",
        "acme://items/a/b/data",
        "acme://items//data",
    ] {
        assert_eq!(code(&read(uri).await), -32602, "{uri}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_prompt_with_input_requests_asks_first_on_2026_07_28() {
    let h = Harness::new().await;
    register(&h, declaring()).await;
    let mut m = meta();
    m["io.modelcontextprotocol/clientCapabilities"] = json!({ "elicitation": {} });
    let get = |extra: Json| {
        let mut p = json!({ "name": "ask_first", "_meta": m.clone() });
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        modern_request(Some(ADMIN), "prompts/get", p)
    };
    let (_, r, _) = send(&h, get(json!({}))).await;
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    assert_eq!(
        r["result"]["inputRequests"]["ctx"]["method"],
        "elicitation/create"
    );
    let answer = json!({ "inputResponses": { "ctx": { "action": "accept", "content": { "context": "tests" } } } });
    let (_, r, _) = send(&h, get(answer)).await;
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"],
        "Context: tests"
    );
    // Without the capability: -32021 at 400; on 2025-11-25: -32021 too.
    let (status, r, _) = send(
        &h,
        modern_request(Some(ADMIN), "prompts/get", json!({ "name": "ask_first" })),
    )
    .await;
    assert_eq!((status, code(&r)), (400, -32021), "{r}");
    assert_eq!(
        r["error"]["data"]["requiredCapabilities"],
        json!({ "elicitation": {} })
    );
    let r = h
        .rpc(Some(ADMIN), "prompts/get", json!({ "name": "ask_first" }))
        .await;
    assert_eq!(code(&r), -32021, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn bad_declarations_are_refused_at_registration() {
    let h = Harness::new().await;
    let cases = [
        (
            "prompts",
            json!([{ "name": "no description", "messages": [] }]),
        ),
        (
            "prompts",
            json!([{ "name": "p", "description": "d", "messages": [] }]),
        ),
        (
            "prompts",
            json!([{ "name": "p", "description": "d", "messages": [{ "role": "system", "content": { "type": "text", "text": "x" } }] }]),
        ),
        ("resources", json!([{ "uri": "a://x", "name": "x" }])),
        (
            "resources",
            json!([{ "uri": "a://x", "name": "x", "blob": "not base64!" }]),
        ),
        (
            "resources",
            json!([{ "uri": "cyfr://session/pubkey", "name": "x", "text": "shadow" }]),
        ),
        (
            "resource_templates",
            json!([{ "uriTemplate": "CYFR://executions/{id}", "name": "x", "text": "t" }]),
        ),
        ("prompts", json!("not an array")),
    ];
    for (field, value) in cases {
        let mut m = manifest("reagent", "acme.bad", "0.1.0");
        m[field] = value.clone();
        let r = register(&h, m).await;
        let text = r.to_string();
        assert!(
            text.contains("-33201") || text.contains("component_invalid"),
            "{field} {value}: {r}"
        );
    }
    let r = h.rpc(Some(ADMIN), "prompts/list", json!({})).await;
    assert_eq!(r["result"]["prompts"], json!([]), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn each_method_costs_one_round_trip() {
    let h = Harness::new().await;
    register(&h, declaring()).await;
    for (method, params) in [
        ("prompts/list", json!({})),
        (
            "prompts/get",
            json!({ "name": "greet", "arguments": { "who": "x" } }),
        ),
        ("resources/list", json!({})),
        ("resources/templates/list", json!({})),
        ("resources/read", json!({ "uri": "acme://items/1/data" })),
    ] {
        h.app.db.inner().reset();
        let (_, r, _) = send(&h, modern_request(Some(ADMIN), method, params)).await;
        assert!(r.get("result").is_some(), "{method}: {r}");
        let trips = h.app.db.inner().trips();
        assert_eq!(trips.len(), 1, "{method}: {trips:?}");
    }
}
