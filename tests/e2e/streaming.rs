//! A `tools/call` answered as an event stream by a real `cyfr up` running a real
//! long-running component (`slow-progress`): its progress arrives while it still runs,
//! before its result; a client that closes the stream cancels the run for real.

use crate::support::{manifest, wasm, Host, Server};
use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader};

const REFERENCE: &str = "r:test.slow-progress:0.1.0";

/// Registers the fixture with room for a long run.
fn with_slow_progress() -> Server {
    slow_progress_on(Server::start())
}

/// Registers the fixture on `s`.
fn slow_progress_on(s: Server) -> Server {
    s.register(
        manifest("test.slow-progress", "0.1.0"),
        &wasm("slow-progress"),
    );
    s.ok(
        &s.admin,
        "policy",
        json!({"action": "set", "reference": REFERENCE, "field": "timeout", "value": "5m"}),
    );
    s
}

/// Starts a streamed `execution.run` of the fixture with `input`; the open response.
fn start_streamed(s: &Server, input: Json) -> reqwest::blocking::Response {
    let body = json!({ "jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {
        "name": "execution", "arguments": { "action": "run", "reference": REFERENCE, "input": input },
        "_meta": { "progressToken": "p-1" } } });
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
        .post(&s.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("authorization", format!("Bearer {}", s.admin))
        .body(body.to_string())
        .send()
        .unwrap()
}

/// The next `data:` event of an SSE stream (comments and blank lines skipped).
fn next_event(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> Option<Json> {
    for line in lines {
        let line = line.ok()?;
        if let Some(data) = line.strip_prefix("data: ") {
            return Some(serde_json::from_str(data).unwrap());
        }
    }
    None
}

/// The newest run record's status.
fn newest_status(s: &Server) -> String {
    let listed = s.ok(
        &s.admin,
        "execution",
        json!({ "action": "list", "limit": 1 }),
    );
    listed["executions"][0]["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn progress_arrives_while_the_run_goes_and_before_its_result() {
    let s = with_slow_progress();
    let resp = start_streamed(&s, json!({ "steps": 4, "step_ms": 400 }));
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["x-accel-buffering"], "no");
    let mut lines = BufReader::new(resp).lines();
    let first = next_event(&mut lines).expect("a first event");
    assert_eq!(first["method"], "notifications/progress", "{first}");
    assert_eq!(
        first["params"],
        json!({ "progressToken": "p-1", "progress": 1.0, "total": 4.0, "message": "step 1" })
    );
    // Streamed, not buffered: the run is still going when its first progress is read.
    assert_eq!(newest_status(&s), "running");
    let mut progress = vec![first["params"]["progress"].as_f64().unwrap()];
    let last = loop {
        let e = next_event(&mut lines).expect("the stream ends with the response");
        if e.get("id").is_some() {
            break e;
        }
        assert_eq!(e["method"], "notifications/progress", "{e}");
        progress.push(e["params"]["progress"].as_f64().unwrap());
    };
    assert_eq!(progress, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(last["id"], 42);
    assert_eq!(last["result"]["isError"], false, "{last}");
    assert_eq!(
        last["result"]["structuredContent"]["result"],
        json!({ "steps": 4 }),
        "{last}"
    );
    assert!(
        next_event(&mut lines).is_none(),
        "nothing after the response"
    );
    assert_eq!(newest_status(&s), "completed");
}

/// Reads the first event of a long run, checks it still runs, closes the stream; the
/// record's status once it left `running`.
fn close_after_first_event(s: &Server) -> String {
    // 100 steps of 300 ms: half a minute unless it is stopped.
    let resp = start_streamed(s, json!({ "steps": 100, "step_ms": 300 }));
    let mut lines = BufReader::new(resp).lines();
    let first = next_event(&mut lines).expect("a first event");
    assert_eq!(first["method"], "notifications/progress", "{first}");
    assert_eq!(newest_status(s), "running");
    drop(lines); // the client goes away
    let mut status = newest_status(s);
    for _ in 0..200 {
        if status != "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        status = newest_status(s);
    }
    status
}

#[test]
fn a_remote_host_streams_the_run_and_a_closed_stream_cancels_it_there() {
    let h = Host::start();
    let s = slow_progress_on(Server::start_with(&["--host", &h.spec]));
    assert_eq!(close_after_first_event(&s), "cancelled");
}

#[test]
fn closing_the_stream_cancels_the_run_and_its_record_says_cancelled() {
    let s = with_slow_progress();
    assert_eq!(close_after_first_event(&s), "cancelled");
    let listed = s.ok(
        &s.admin,
        "execution",
        json!({ "action": "list", "limit": 1 }),
    );
    let id = listed["executions"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let logs = s.ok(
        &s.admin,
        "execution",
        json!({ "action": "logs", "execution_id": id }),
    );
    // It stopped long before its 100th step.
    assert!(!logs.to_string().contains("step 100 of 100"), "{logs}");
}

/// A `subscriptions/listen` (2026-07-28, id `listen-1`) asking for tool list changes; the
/// open event stream.
fn start_listening(s: &Server) -> reqwest::blocking::Response {
    let body = json!({ "jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen", "params": {
        "notifications": { "toolsListChanged": true },
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        } } });
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
        .post(&s.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .header("authorization", format!("Bearer {}", s.admin))
        .body(body.to_string())
        .send()
        .unwrap()
}

#[test]
fn a_listener_hears_that_the_tool_list_changed_when_another_request_registers() {
    let s = Server::start();
    let resp = start_listening(&s);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut lines = BufReader::new(resp).lines();
    let ack = next_event(&mut lines).expect("the acknowledgement");
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
    // Another request (another router instance: nothing shared but SQL) registers.
    s.register(
        manifest("test.newly-listed", "0.1.0"),
        &wasm("slow-progress"),
    );
    let changed = next_event(&mut lines).expect("a list_changed");
    assert_eq!(
        changed["method"], "notifications/tools/list_changed",
        "{changed}"
    );
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
    // The listener goes; the server stays healthy for the next request.
    drop(lines);
    let (status, listed) = s.rpc(Some(&s.admin), "tools/list", json!({}));
    assert_eq!(status, 200);
    assert!(listed.to_string().contains("newly-listed"), "{listed}");
}
