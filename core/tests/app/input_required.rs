//! A component asking the user for input on MCP 2026-07-28 (docs/components.md, "Asking
//! the user for input"): `InputRequiredResult`, the retry with `inputResponses` and the
//! sealed `requestState`, and each attack on that state (altered, replayed, another
//! caller's, other arguments or tool, expired), -32021 for an undeclared capability, and
//! the 2025-11-25 answer.

use crate::modern::{meta, modern_request, send};
use crate::support::{code, completed, fake_wasm, manifest, Harness, ADMIN};
use base64::Engine;
use serde_json::{json, Value as Json};

/// Registers a reagent `acme.<name>` that asks for input (`mcp_input`) under `tool`.
async fn register_asking(h: &Harness, name: &str, tool: &str, asking: bool) {
    let mut m = manifest("reagent", &format!("acme.{name}"), "0.1.0");
    m["tool_name"] = json!(tool);
    m["mcp_content"] = json!(true);
    m["mcp_input"] = json!(asking);
    let wasm = base64::engine::general_purpose::STANDARD.encode(fake_wasm(name));
    let r = h
        .call(
            ADMIN,
            "component",
            json!({ "action": "register", "manifest": m, "wasm": wasm }),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
}

fn elicit() -> Json {
    json!({ "user_name": { "method": "elicitation/create", "params": {
        "message": "What is your name?",
        "requestedSchema": { "type": "object", "properties": { "name": { "type": "string" } } },
    } } })
}

/// The output by which the component asks (with a state it keeps).
fn ask(requests: Json) -> Json {
    json!({ "cyfr_input_required": { "inputRequests": requests, "state": { "step": 1, "kept": "only-the-component-sees-this" } } })
}

fn hello() -> Json {
    json!({ "content": [{ "type": "text", "text": "Hello, Alice!" }] })
}

/// `_meta` declaring `caps` as the client's capabilities.
fn meta_with(caps: Json) -> Json {
    let mut m = meta();
    m["io.modelcontextprotocol/clientCapabilities"] = caps;
    m
}

/// A stateless `tools/call` of `tool` by `key`, with `extra` params merged in.
async fn call(h: &Harness, key: &str, tool: &str, args: Json, extra: Json) -> (u16, Json) {
    let mut params = json!({ "name": tool, "arguments": args, "_meta": meta_with(json!({ "elicitation": {} })) });
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let (status, body, _) = send(h, modern_request(Some(key), "tools/call", params)).await;
    (status, body)
}

fn run_inputs(h: &Harness) -> Vec<Json> {
    h.host()
        .runs
        .borrow()
        .iter()
        .map(|r| serde_json::from_str(&r.input).unwrap())
        .collect()
}

/// Round 1: the state of an `InputRequiredResult` for `acme.greet` called with `args`.
async fn first_round(h: &Harness, key: &str, args: Json) -> String {
    h.host().answer(Ok(completed(ask(elicit()))));
    let (status, r) = call(h, key, "greet", args, json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    r["result"]["requestState"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_component_asks_and_the_retry_runs_it_with_the_responses_and_its_state() {
    let h = Harness::new().await;
    register_asking(&h, "greet", "greet", true).await;
    h.host().answer(Ok(completed(ask(elicit()))));
    let (status, r) = call(&h, ADMIN, "greet", json!({ "lang": "en" }), json!({})).await;
    assert_eq!(status, 200, "{r}");
    let result = &r["result"];
    assert_eq!(result["resultType"], "input_required", "{r}");
    assert_eq!(result["inputRequests"], elicit());
    let state = result["requestState"].as_str().unwrap();
    // The component's state travels sealed: nothing of it is readable in the token.
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(state)
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("only-the-component"));
    assert!(!r.to_string().contains("only-the-component"), "{r}");
    // The first run saw its arguments, the tool it was called as and the capabilities.
    assert_eq!(
        run_inputs(&h)[0],
        json!({ "lang": "en", "cyfr_input": { "tool": "greet", "clientCapabilities": { "elicitation": {} } } })
    );
    // The retry runs it again with the responses and the state it kept.
    h.host().answer(Ok(completed(hello())));
    let responses = json!({ "user_name": { "action": "accept", "content": { "name": "Alice" } } });
    let (status, r) = call(
        &h,
        ADMIN,
        "greet",
        json!({ "lang": "en" }),
        json!({ "inputResponses": responses, "requestState": state }),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(r["result"]["content"], hello()["content"]);
    let second = &run_inputs(&h)[1];
    assert_eq!(second["cyfr_input"]["responses"], responses);
    assert_eq!(
        second["cyfr_input"]["state"],
        json!({ "step": 1, "kept": "only-the-component-sees-this" })
    );
    assert_eq!(second["lang"], "en");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_altered_state_is_refused_before_anything_runs() {
    let h = Harness::new().await;
    register_asking(&h, "greet", "greet", true).await;
    let state = first_round(&h, ADMIN, json!({})).await;
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&state)
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let flipped = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    for bad in [
        json!(flipped),
        json!(format!("{state}-TAMPERED")),
        json!("not base64 !"),
        json!(42),
    ] {
        let (_, r) = call(
            &h,
            ADMIN,
            "greet",
            json!({}),
            json!({ "requestState": bad }),
        )
        .await;
        assert_eq!(code(&r), -32602, "{bad}: {r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("requestState"),
            "{r}"
        );
    }
    assert_eq!(h.host().runs.borrow().len(), 1, "only the first round ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_state_answers_once() {
    let h = Harness::new().await;
    register_asking(&h, "greet", "greet", true).await;
    let state = first_round(&h, ADMIN, json!({})).await;
    h.host().answer(Ok(completed(hello())));
    let retry = json!({ "requestState": state });
    let (_, r) = call(&h, ADMIN, "greet", json!({}), retry.clone()).await;
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    let (_, r) = call(&h, ADMIN, "greet", json!({}), retry).await;
    assert_eq!(code(&r), -32602, "{r}");
    assert!(r.to_string().contains("already used"), "{r}");
    assert_eq!(h.host().runs.borrow().len(), 2, "the replay did not run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_state_is_bound_to_its_caller_tool_and_arguments() {
    let h = Harness::new().await;
    register_asking(&h, "greet", "greet", true).await;
    register_asking(&h, "other", "other", true).await;
    let thief = h.key("thief", &["execution"], json!({})).await;
    let cases: [(&str, &str, Json, &str); 3] = [
        (&thief, "greet", json!({ "lang": "en" }), "another caller"),
        (ADMIN, "other", json!({ "lang": "en" }), "another tool"),
        (ADMIN, "greet", json!({ "lang": "fr" }), "other arguments"),
    ];
    for (key, tool, args, why) in cases {
        let state = first_round(&h, ADMIN, json!({ "lang": "en" })).await;
        let runs = h.host().runs.borrow().len();
        let (_, r) = call(&h, key, tool, args, json!({ "requestState": state })).await;
        assert_eq!(code(&r), -32602, "{why}: {r}");
        assert!(r.to_string().contains(why), "{why}: {r}");
        assert_eq!(h.host().runs.borrow().len(), runs, "{why}: nothing ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_state_expires_after_five_minutes() {
    let h = Harness::new().await;
    register_asking(&h, "greet", "greet", true).await;
    let state = first_round(&h, ADMIN, json!({})).await;
    h.env().advance(5 * 60_000);
    let (_, r) = call(
        &h,
        ADMIN,
        "greet",
        json!({}),
        json!({ "requestState": state }),
    )
    .await;
    assert_eq!(code(&r), -32602, "{r}");
    assert!(r.to_string().contains("expired"), "{r}");
    assert_eq!(h.host().runs.borrow().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_caller_cannot_forge_the_input_field() {
    let h = Harness::new().await;
    register_asking(&h, "greet", "greet", true).await;
    let forged = json!({ "cyfr_input": { "state": { "admin": true } } });
    let (_, r) = call(&h, ADMIN, "greet", forged, json!({})).await;
    assert_eq!(code(&r), -32602, "{r}");
    assert!(r.to_string().contains("reserved"), "{r}");
    assert!(h.host().runs.borrow().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn asking_for_an_undeclared_capability_is_32021_at_400() {
    let h = Harness::new().await;
    register_asking(&h, "greet", "greet", true).await;
    let sampling = json!({ "q": { "method": "sampling/createMessage", "params": { "messages": [], "maxTokens": 5 } } });
    h.host().answer(Ok(completed(ask(sampling))));
    let (status, r) = call(&h, ADMIN, "greet", json!({}), json!({})).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(code(&r), -32021, "{r}");
    assert_eq!(
        r["error"]["data"]["requiredCapabilities"],
        json!({ "sampling": {} })
    );
    // A malformed ask is the component's failure, as a tool error.
    h.host().answer(Ok(completed(ask(
        json!({ "q": { "method": "tools/call" } }),
    ))));
    let (_, r) = call(&h, ADMIN, "greet", json!({}), json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(r.to_string().contains("tools/call"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn on_2025_11_25_an_ask_is_a_tool_error_and_other_components_are_unchanged() {
    let h = Harness::new().await;
    register_asking(&h, "greet", "greet", true).await;
    register_asking(&h, "plain", "plain", false).await;
    h.host().answer(Ok(completed(ask(elicit()))));
    let r = h.call(ADMIN, "greet", json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(r.to_string().contains("2026-07-28"), "{r}");
    assert_eq!(
        run_inputs(&h)[0]["cyfr_input"]["clientCapabilities"],
        json!({})
    );
    // A component that did not opt in gets its arguments only; an output that looks like
    // an ask is just its output (here, not valid mcp_content).
    h.host().answer(Ok(completed(ask(elicit()))));
    let (_, r) = call(&h, ADMIN, "plain", json!({ "a": 1 }), json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(r["result"].get("requestState").is_none(), "{r}");
    assert_eq!(run_inputs(&h)[1], json!({ "a": 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_retry_costs_the_round_trips_of_a_call() {
    let h = Harness::new().await;
    register_asking(&h, "greet", "greet", true).await;
    let trips = |h: &Harness| h.app.db.inner().trips().len();
    h.app.db.inner().reset();
    let state = first_round(&h, ADMIN, json!({})).await;
    let first = trips(&h);
    h.host().answer(Ok(completed(hello())));
    h.app.db.inner().reset();
    let (_, r) = call(
        &h,
        ADMIN,
        "greet",
        json!({}),
        json!({ "requestState": state }),
    )
    .await;
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(trips(&h), first, "{:?}", h.app.db.inner().trips());
    assert!(first <= 3, "{:?}", h.app.db.inner().trips());
}
