//! `subscriptions/listen` (2026-07-28) over `Harness::streaming`: the acknowledgement first,
//! a `list_changed` of each kind the filter asked for when another request registers a
//! component while the stream waits, every event tagged with the listen request's id, the
//! filter honoured, a closed stream or the lifetime ending it; refusals.

use crate::modern::{meta, modern_request, send};
use crate::support::*;
use cyfr_core::http::HttpRequest;
use serde_json::{json, Value as Json};

const SUB: &str = "io.modelcontextprotocol/subscriptionId";

/// A listen request (id 7) with `filter`, accepting an event stream.
fn listen(filter: Json) -> HttpRequest {
    let mut req = modern_request(
        Some(ADMIN),
        "subscriptions/listen",
        json!({ "_meta": meta(), "notifications": filter }),
    );
    req.headers.push((
        "accept".into(),
        "application/json, text/event-stream".into(),
    ));
    req
}

/// A sink whose first wait plays a registration by another request, and which the client
/// closes once `open_for` writes went out.
fn sink_registering(h: &Harness, open_for: usize) -> RecSink {
    let sink = RecSink::default();
    sink.open_for.set(Some(open_for));
    let other = Harness { app: h.app.clone() };
    sink.on_nap.replace(Some(Box::pin(async move {
        other.register("reagent", "local.fresh", "0.1.0").await;
    })));
    sink
}

/// Handles `req` on `app`: the events written, then the final answer (from the stream's
/// last event, or the whole body when nothing was streamed).
async fn run(app: &StreamApp, req: HttpRequest) -> (Vec<Json>, Json) {
    let resp = app.handle(req).await;
    match app.dispatch.tail(&resp) {
        Some(tail) => {
            let text = String::from_utf8(tail).unwrap();
            let last = text
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).unwrap())
                .unwrap_or(Json::Null);
            (app.dispatch.sink().events(), last)
        }
        None => (Vec::new(), serde_json::from_slice(&resp.body).unwrap()),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_listener_is_acknowledged_then_told_the_tool_list_changed_by_a_registration() {
    let h = Harness::new().await;
    // A runtime that answers whole (the Worker) promises no list changes and no logging...
    let (_, d, _) = send(&h, modern_request(None, "server/discover", json!({}))).await;
    let caps = &d["result"]["capabilities"];
    assert_eq!(caps["tools"]["listChanged"], json!(false), "{d}");
    assert!(caps.get("logging").is_none(), "{d}");
    // ...one that streams (Spin, our runner) promises both.
    let discover = modern_request(None, "server/discover", json!({}));
    let app = h.streaming(&discover, FakeHost::default(), sink_registering(&h, 0));
    let (_, d) = run(&app, discover).await;
    let caps = &d["result"]["capabilities"];
    assert_eq!(caps["tools"]["listChanged"], json!(true), "{d}");
    assert_eq!(caps["prompts"]["listChanged"], json!(true), "{d}");
    assert_eq!(caps["logging"], json!({}), "{d}");

    let req = listen(json!({ "toolsListChanged": true, "resourcesListChanged": true }));
    // Open for: the ack, the two notifications, one keep-alive; the next write fails.
    let app = h.streaming(&req, FakeHost::default(), sink_registering(&h, 4));
    let (events, last) = run(&app, req).await;
    let methods: Vec<&str> = events
        .iter()
        .map(|e| e["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        vec![
            "notifications/subscriptions/acknowledged",
            "notifications/tools/list_changed",
            "notifications/resources/list_changed",
        ],
        "{events:?}"
    );
    for e in &events {
        assert_eq!(e["params"]["_meta"][SUB], json!(7), "{e}");
    }
    // A keep-alive comment went out after the change, and its successor failed: over.
    let writes = app.dispatch.sink().writes.borrow().clone();
    assert_eq!(writes.len(), 4, "{writes:?}");
    assert!(writes[3].starts_with(':'), "{writes:?}");
    assert_eq!(
        *app.dispatch.sink().naps.borrow(),
        vec![1_000, 1_000, 1_000]
    );
    // The client had gone: nothing more is written.
    assert_eq!(last, Json::Null);
    // The tool list did change.
    let tools = h.rpc(Some(ADMIN), "tools/list", json!({})).await;
    assert!(tools.to_string().contains("fresh"), "{tools}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_filter_is_honoured_and_the_stream_ends_after_its_lifetime_with_a_result() {
    let h = Harness::new().await;
    // Prompts only: the registration changes the tools, which this listener did not ask for.
    let req = listen(json!({ "promptsListChanged": true }));
    let sink = sink_registering(&h, usize::MAX);
    let app = h.streaming(&req, FakeHost::default(), sink);
    let (events, last) = run(&app, req).await;
    assert!(
        !events
            .iter()
            .any(|e| e["method"] == "notifications/tools/list_changed"),
        "{events:?}"
    );
    assert_eq!(
        events[0]["method"],
        "notifications/subscriptions/acknowledged"
    );
    assert!(events
        .iter()
        .any(|e| e["method"] == "notifications/prompts/list_changed"));
    // Bounded: about five minutes of one-second polls, then the answer ends the stream.
    assert_eq!(app.dispatch.sink().naps.borrow().len(), 300);
    assert_eq!(last["id"], json!(7), "{last}");
    assert_eq!(last["result"]["resultType"], json!("complete"), "{last}");

    // No change, no filter: only the acknowledgement and keep-alives.
    let req = listen(json!({}));
    let sink = RecSink::default();
    sink.open_for.set(Some(3));
    let app = h.streaming(&req, FakeHost::default(), sink);
    let (events, _) = run(&app, req).await;
    assert_eq!(events.len(), 1, "{events:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn listening_needs_a_caller_an_event_stream_and_2026_07_28() {
    let h = Harness::new().await;
    // No key.
    let mut req = listen(json!({ "toolsListChanged": true }));
    req.headers.retain(|(k, _)| k != "authorization");
    let app = h.streaming(&req, FakeHost::default(), RecSink::default());
    let (events, last) = run(&app, req).await;
    assert!(events.is_empty());
    assert!(last.get("error").is_some(), "{last}");
    // Not accepting an event stream: told how to ask.
    let req = modern_request(
        Some(ADMIN),
        "subscriptions/listen",
        json!({ "_meta": meta(), "notifications": { "toolsListChanged": true } }),
    );
    let (status, r, _) = send(&h, req).await;
    assert_eq!((status, code(&r)), (400, -32600), "{r}");
    // A bad filter.
    let req = listen(json!(["toolsListChanged"]));
    let app = h.streaming(&req, FakeHost::default(), RecSink::default());
    let (_, last) = run(&app, req).await;
    assert_eq!(code(&last), -32602, "{last}");
    // 2025-11-25 has no such method.
    let sid = h.initialize(ADMIN).await;
    let body = json!({ "jsonrpc": "2.0", "id": 2, "method": "subscriptions/listen", "params": {} });
    let mut req = mcp_request(None, &body);
    req.headers.push(("mcp-session-id".into(), sid));
    let r: Json = serde_json::from_slice(&h.app.handle(req).await.body).unwrap();
    assert_eq!(code(&r), -32601, "{r}");
}
