//! A `tools/call` answered as an event stream (`cyfr_core::stream`): progress and log lines
//! before the result, only what the request asked for, no secret in any event, and a
//! closed stream cancelling the run, recorded as cancelled.

use crate::support::{completed, mcp_request, FakeHost, Harness, RecSink, StreamApp, ADMIN};
use cyfr_core::http::HttpRequest;
use serde_json::{json, Value as Json};

/// A `tools/call` of `execution.run` for `reference` that accepts an event stream, with `meta`.
fn sse_run(reference: &str, meta: Json) -> HttpRequest {
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "execution", "arguments": { "action": "run", "reference": reference }, "_meta": meta } });
    let mut req = mcp_request(Some(ADMIN), &body);
    req.headers.push((
        "accept".into(),
        "application/json, text/event-stream".into(),
    ));
    req
}

/// A host that reports `lines` while it runs, then completes with `{"ok": true}`.
fn host_saying(lines: &[&str]) -> FakeHost {
    let host = FakeHost::default();
    host.lines
        .replace(lines.iter().map(|l| l.to_string()).collect());
    host.answer(Ok(completed(json!({ "ok": true }))));
    host
}

/// Handles `req` on `app`; the JSON-RPC answer, from the stream's last event when one
/// was opened (then also every event written before it).
async fn answer(app: &StreamApp, req: HttpRequest) -> (Json, Vec<Json>, bool) {
    let resp = app.handle(req).await;
    match app.dispatch.tail(&resp) {
        Some(tail) => {
            let before = app.dispatch.sink().events();
            let text = String::from_utf8(tail).unwrap();
            let last = text
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).unwrap())
                .unwrap_or(Json::Null);
            (last, before, true)
        }
        None => (
            serde_json::from_slice(&resp.body).unwrap(),
            Vec::new(),
            false,
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn progress_arrives_before_the_result_with_the_requests_token() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "local.slow", "0.1.0").await;
    let req = sse_run(&reference, json!({ "progressToken": "tok-1" }));
    let host = host_saying(&[
        r#"cyfr:progress {"progress":1,"total":3,"message":"one"}"#,
        "a plain log line",
        r#"cyfr:progress {"progress":3,"total":3}"#,
    ]);
    let app = h.streaming(&req, host, RecSink::default());
    let (last, events, streamed) = answer(&app, req).await;
    assert!(streamed, "a run that reported progress answers as a stream");
    // No log level asked for: only the progress, in order, then the response.
    assert_eq!(
        events,
        vec![
            json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": { "progressToken": "tok-1", "progress": 1.0, "total": 3.0, "message": "one" } }),
            json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": { "progressToken": "tok-1", "progress": 3.0, "total": 3.0 } }),
        ]
    );
    assert_eq!(last["id"], json!(7));
    assert_eq!(last["result"]["isError"], json!(false), "{last}");
    let head = app.dispatch.sink().writes.borrow()[0].clone();
    assert!(head.starts_with("event: message\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn log_lines_are_sent_at_and_above_the_requests_level_only() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "local.chatty", "0.1.0").await;
    let req = sse_run(
        &reference,
        json!({ "io.modelcontextprotocol/logLevel": "info" }),
    );
    let host = host_saying(&[
        r#"cyfr:log {"level":"debug","data":"too quiet"}"#,
        "starting",
        r#"cyfr:log {"level":"error","data":{"disk":"full"}}"#,
        r#"cyfr:progress {"progress":1}"#,
    ]);
    let app = h.streaming(&req, host, RecSink::default());
    let (last, events, _) = answer(&app, req).await;
    // No progress token: no progress; debug is below info.
    assert_eq!(
        events,
        vec![
            json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "logger": "cyfr", "data": "starting" } }),
            json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "error", "logger": "cyfr", "data": { "disk": "full" } } }),
        ]
    );
    assert_eq!(last["result"]["isError"], json!(false), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn no_event_carries_a_secret_the_run_was_given() {
    let h = Harness::new().await;
    let catalyst = h.register("catalyst", "local.leaky", "0.1.0").await;
    let secret = "sk-live-0123456789abcdef";
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "set", "name": "TOKEN", "value": secret, "scope": "org" }),
    )
    .await;
    h.ok(ADMIN, "secret", json!({ "action": "grant", "name": "TOKEN", "reference": catalyst, "allow_user_keys": true })).await;
    h.ok(ADMIN, "policy", json!({ "action": "set", "reference": catalyst, "field": "allowed_domains", "value": ["api.example.com"] })).await;
    let req = sse_run(
        &catalyst,
        json!({ "progressToken": 9, "io.modelcontextprotocol/logLevel": "debug" }),
    );
    // The attack: a guest prints the secret, raw and base64, in a log line and in progress.
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(secret)
    };
    let log = format!("token is {secret} / {b64}");
    let progress = format!(r#"cyfr:progress {{"progress":1,"message":"using {secret}"}}"#);
    let host = host_saying(&[&log, &progress]);
    let app = h.streaming(&req, host, RecSink::default());
    let (_, events, _) = answer(&app, req).await;
    assert_eq!(
        app.dispatch.inner().runs.borrow()[0]
            .secrets
            .get("TOKEN")
            .map(String::as_str),
        Some(secret),
        "the run was given the secret"
    );
    assert_eq!(events.len(), 2, "{events:?}");
    let all = app.dispatch.sink().writes.borrow().concat();
    assert!(!all.contains(secret), "{all}");
    assert!(!all.contains(&b64), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_closed_stream_cancels_the_run_and_its_record_says_cancelled() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "local.long", "0.1.0").await;
    let req = sse_run(&reference, json!({ "progressToken": "t" }));
    let host = host_saying(&[
        r#"cyfr:progress {"progress":1,"total":10}"#,
        r#"cyfr:progress {"progress":2,"total":10}"#,
        r#"cyfr:progress {"progress":3,"total":10}"#,
    ]);
    // The client reads the first event, then goes away.
    let sink = RecSink::default();
    sink.open_for.set(Some(1));
    let app = h.streaming(&req, host, sink);
    let resp = app.handle(req).await;
    assert_eq!(
        app.dispatch.tail(&resp),
        Some(Vec::new()),
        "nothing more is written"
    );
    assert!(app.dispatch.closed());
    let host = app.dispatch.inner();
    let id = host.runs.borrow()[0].execution_id.clone();
    assert_eq!(*host.cancels.borrow(), vec![id.clone()], "cancelled once");
    let listed = h
        .ok(ADMIN, "execution", json!({ "action": "list", "limit": 1 }))
        .await;
    assert_eq!(
        listed["executions"][0]["execution_id"],
        json!(id),
        "{listed}"
    );
    assert_eq!(
        listed["executions"][0]["status"],
        json!("cancelled"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn without_an_event_stream_in_accept_the_answer_is_whole_and_costs_three_round_trips() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "local.plain", "0.1.0").await;
    let mut req = sse_run(&reference, json!({ "progressToken": "t" }));
    req.headers.retain(|(k, _)| k != "accept");
    let app = h.streaming(
        &req,
        host_saying(&[r#"cyfr:progress {"progress":1}"#]),
        RecSink::default(),
    );
    let (last, events, streamed) = answer(&app, req.clone()).await;
    assert!(!streamed && events.is_empty());
    assert_eq!(last["result"]["isError"], json!(false), "{last}");
    assert_eq!(
        app.db.inner().trips().len(),
        3,
        "{:?}",
        app.db.inner().trips()
    );
    // Streamed, the same run costs the same three.
    let sse = sse_run(&reference, json!({ "progressToken": "t" }));
    let app = h.streaming(
        &sse,
        host_saying(&[r#"cyfr:progress {"progress":1}"#]),
        RecSink::default(),
    );
    let (_, events, streamed) = answer(&app, sse).await;
    assert!(streamed && events.len() == 1, "{events:?}");
    assert_eq!(
        app.db.inner().trips().len(),
        3,
        "{:?}",
        app.db.inner().trips()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_sessions_log_level_filters_its_streamed_runs_and_is_kept_in_sql() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "local.session", "0.1.0").await;
    let sid = h.initialize(ADMIN).await;
    let set = |level: &str| {
        let body = json!({ "jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": { "level": level } });
        let mut req = mcp_request(None, &body);
        req.headers.push(("mcp-session-id".into(), sid.clone()));
        req
    };
    let bad = h.app.handle(set("loud")).await;
    let bad: Json = serde_json::from_slice(&bad.body).unwrap();
    assert_eq!(bad["error"]["code"], json!(-32602), "{bad}");
    let (status, none) = h
        .post(Some(ADMIN), json!({ "jsonrpc": "2.0", "id": 4, "method": "logging/setLevel", "params": { "level": "info" } }))
        .await;
    assert_eq!(
        (status, none["error"]["code"].clone()),
        (200, json!(-32602)),
        "{none}"
    );
    let ok = h.app.handle(set("warning")).await;
    let ok: Json = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(ok["result"], json!({}), "{ok}");

    // Another request (another app: nothing kept in memory) of the same session.
    let mut req = sse_run(&reference, json!({}));
    req.headers.retain(|(k, _)| k != "authorization");
    req.headers.push(("mcp-session-id".into(), sid.clone()));
    let host = host_saying(&[
        "an info line",
        r#"cyfr:log {"level":"warning","data":"careful"}"#,
    ]);
    let app = h.streaming(&req, host, RecSink::default());
    let (last, events, _) = answer(&app, req).await;
    assert_eq!(
        events,
        vec![
            json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "warning", "logger": "cyfr", "data": "careful" } })
        ]
    );
    assert_eq!(last["result"]["isError"], json!(false), "{last}");
}

/// `notifications/cancelled` for request `request_id`, in session `sid`.
fn cancelled(sid: &str, request_id: Json) -> HttpRequest {
    let body = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": request_id, "reason": "user" } });
    let mut req = mcp_request(None, &body);
    req.headers.push(("mcp-session-id".into(), sid.into()));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn notifications_cancelled_stops_the_run_its_sessions_request_started_and_no_other() {
    use cyfr_core::db::Db;
    let h = Harness::new().await;
    let reference = h.register("reagent", "local.cancellable", "0.1.0").await;
    let sid = h.initialize(ADMIN).await;
    let other = h.initialize(ADMIN).await;
    // A session's tools/call keeps `<session hash>:<JSON-RPC id>` with its run's record.
    let r = h
        .call_in(
            &sid,
            "execution",
            json!({ "action": "run", "reference": reference }),
        )
        .await;
    assert_eq!(r["result"]["isError"], json!(false), "{r}");
    let hash = cyfr_core::crypto::sha256_hex(sid.as_bytes());
    let rows = h
        .app
        .db
        .query("SELECT rpc_id FROM executions", &[])
        .await
        .unwrap();
    assert_eq!(rows.first().unwrap().text("rpc_id"), format!("{hash}:1"));
    // A run of that session still going (as another request, mid-run, would see it).
    h.app.db.query(
        "INSERT INTO executions (id, reference, component_type, digest, status, caller, policy, started_at, depth, deadline_at, rpc_id) \
         VALUES ('exec_going', ?1, 'reagent', 'sha256:00', 'started', 'key_admin', '{}', 1, 0, 99999999999999, ?2)",
        &[reference.clone().into(), format!("{hash}:\"call-9\"").into()],
    ).await.unwrap();
    // The attack: another session names the same request id. Nothing is stopped.
    let resp = h.app.handle(cancelled(&other, json!("call-9"))).await;
    assert_eq!(resp.status, 202);
    assert!(h.host().cancels.borrow().is_empty());
    // Its own session's cancellation stops it on the host.
    let resp = h.app.handle(cancelled(&sid, json!("call-9"))).await;
    assert_eq!(resp.status, 202);
    assert_eq!(*h.host().cancels.borrow(), vec!["exec_going".to_string()]);
    // A finished run is not asked again.
    let resp = h.app.handle(cancelled(&sid, json!(1))).await;
    assert_eq!(resp.status, 202);
    assert_eq!(h.host().cancels.borrow().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn lines_nobody_asked_for_open_no_stream() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "local.quiet", "0.1.0").await;
    // Accepts a stream, but asks for neither progress nor logs: a quick run answers whole.
    let req = sse_run(&reference, json!({}));
    let host = FakeHost::default();
    host.lines.replace(vec![
        r#"cyfr:progress {"progress":1}"#.into(),
        "a log line".into(),
    ]);
    host.quick.set(true);
    let app = h.streaming(&req, host, RecSink::default());
    let resp = app.handle(req).await;
    assert_eq!(app.dispatch.tail(&resp), None, "answered whole");
    assert!(app.dispatch.sink().writes.borrow().is_empty());
    let whole: Json = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(whole["result"]["isError"], json!(false), "{whole}");
}
