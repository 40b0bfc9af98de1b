//! Registering and running components in the host's sandbox, limits included.

use crate::support::*;
use serde_json::json;

#[test]
fn register_by_directory_then_run_returns_a_completed_execution() {
    let s = Server::start();
    // The directory form reads cyfr-manifest.json and reagent.wasm on the server.
    let dir = workspace().join("components/reagents/cyfr/json-transform/0.1.0");
    let out = cyfr().arg("build").arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "cyfr build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reg = s.ok(&s.admin, "component", json!({"action": "register", "directory": "components/reagents/cyfr/json-transform/0.1.0/"}));
    assert_eq!(reg["reference"], "reagent:cyfr.json-transform:0.1.0");
    // The directory's README.md was kept with the version, for guide.readme.
    let readme = s.ok(
        &s.admin,
        "guide",
        json!({"action": "readme", "reference": "reagent:cyfr.json-transform:0.1.0"}),
    );
    let want = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert_eq!(readme["content"], want.as_str());
    let key = s.key("backend", "secret", &["execution"], json!({}));
    let r = s.ok(
        &key,
        "execution",
        json!({
            "action": "run",
            "reference": {"registry": "reagent:cyfr.json-transform:0.1.0"},
            "input": {"data": [1, 2, 3]},
            "type": "reagent",
        }),
    );
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"]["sum"], 6);
    assert_eq!(r["result"]["count"], 3);
    assert!(r["execution_id"].as_str().unwrap().starts_with("exec_"));
    assert_eq!(r["component_type"], "reagent");
    // CYFR echoes the reference object; the canonical reference is `component_ref`.
    assert_eq!(
        r["reference"],
        json!({"registry": "reagent:cyfr.json-transform:0.1.0"})
    );
    assert_eq!(r["component_ref"], "reagent:cyfr.json-transform:0.1.0");
    assert_eq!(r["component_digest"], reg["digest"]);
    assert!(r["component_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(r["policy_applied"]["timeout"], "30s");
    // Short forms and a missing version resolve to the same component.
    for reference in [
        json!("r:cyfr.json-transform:0.1.0"),
        json!("reagent:cyfr.json-transform"),
        json!("cyfr.json-transform:0.1.0"),
    ] {
        let r = s.ok(&key, "execution", json!({"action": "run", "reference": reference, "input": {"data": [5]}, "type": "reagent"}));
        assert_eq!(r["result"]["sum"], 5);
    }
    let listed = s.ok(&key, "execution", json!({"action": "list"}));
    assert_eq!(listed["count"], 4);
}

#[test]
fn directories_outside_the_components_root_are_refused() {
    let s = Server::start();
    for dir in ["../../../etc", "/etc", "components/../../"] {
        let r = s.call(
            &s.admin,
            "component",
            json!({"action": "register", "directory": dir}),
        );
        assert_eq!(code(&r), -33201, "{dir}: {r}");
    }
}

#[test]
fn missing_version_means_the_highest_semver_not_the_newest_row() {
    let s = Server::start();
    let bytes = wasm("json-transform");
    s.register(manifest("acme.calc", "0.10.0"), &bytes);
    s.register(manifest("acme.calc", "0.9.0"), &bytes);
    let r = s.ok(
        &s.admin,
        "component",
        json!({"action": "resolve", "reference": "r:acme.calc"}),
    );
    assert_eq!(r["reference"], "reagent:acme.calc:0.10.0");
    let found = s.ok(
        &s.admin,
        "component",
        json!({"action": "search", "query": "calc"}),
    );
    assert_eq!(found["count"], 1);
    let inspected = s.ok(
        &s.admin,
        "component",
        json!({"action": "inspect", "reference": "r:acme.calc"}),
    );
    assert_eq!(inspected["versions"], json!(["0.10.0", "0.9.0"]));
}

#[test]
fn unknown_component_is_component_not_found() {
    let s = Server::start();
    let r = s.call(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": "reagent:nobody.nothing:1.0.0", "input": {}}),
    );
    assert_eq!(code(&r), -33200);
    let r = s.call(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": "gizmo:x.y:1.0.0"}),
    );
    assert_eq!(code(&r), -33200);
}

#[test]
fn invalid_manifest_or_wasm_is_component_invalid_and_registers_nothing() {
    let s = Server::start();
    let bytes = wasm("json-transform");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let mut bad = manifest("acme.bad", "0.1.0");
    bad["type"] = json!("gizmo");
    let r = s.call(
        &s.admin,
        "component",
        json!({"action": "register", "manifest": bad, "wasm": b64}),
    );
    assert_eq!(code(&r), -33201, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("`type`"));
    let not_wasm = base64::engine::general_purpose::STANDARD.encode(b"hello");
    let r = s.call(
        &s.admin,
        "component",
        json!({"action": "register", "manifest": manifest("acme.bad", "0.1.0"), "wasm": not_wasm}),
    );
    assert_eq!(code(&r), -33201);
    let found = s.ok(
        &s.admin,
        "component",
        json!({"action": "search", "query": "acme"}),
    );
    assert_eq!(found["count"], 0);
    // Same version, other bytes: refused unless replaced on purpose.
    s.register(manifest("acme.fixed", "1.0.0"), &bytes);
    let other = base64::engine::general_purpose::STANDARD.encode(wasm("text-stats"));
    let r = s.call(
        &s.admin,
        "component",
        json!({"action": "register", "manifest": manifest("acme.fixed", "1.0.0"), "wasm": other}),
    );
    assert_eq!(code(&r), -33201);
}

#[test]
fn memory_bomb_fails_cleanly_and_the_host_keeps_serving() {
    let s = Server::start();
    s.register(manifest("test.memory-bomb", "0.1.0"), &wasm("memory-bomb"));
    let jt = register_json_transform(&s);
    let r = s.call(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": "r:test.memory-bomb:0.1.0", "input": {}}),
    );
    assert_eq!(code(&r), -33100, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "memory_limit", "{r}");
    let id = r["error"]["data"]["execution_id"].as_str().unwrap();
    let ok = s.ok(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [1]}}),
    );
    assert_eq!(ok["status"], "completed");
    let listed = s.ok(&s.admin, "execution", json!({"action": "list"}));
    let rec = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["execution_id"] == id)
        .unwrap()
        .clone();
    assert_eq!(rec["status"], "failed");
}

#[test]
fn endless_loop_times_out_with_33101_and_the_host_keeps_serving() {
    let s = Server::start();
    s.register(
        manifest("test.endless-loop", "0.1.0"),
        &wasm("endless-loop"),
    );
    let jt = register_json_transform(&s);
    s.ok(&s.admin, "policy", json!({"action": "set", "reference": "r:test.endless-loop:0.1.0", "field": "timeout", "value": "1s"}));
    let started = std::time::Instant::now();
    let r = s.call(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": "r:test.endless-loop:0.1.0", "input": {}}),
    );
    assert_eq!(code(&r), -33101, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the timeout was not enforced"
    );
    let ok = s.ok(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [2]}}),
    );
    assert_eq!(ok["result"]["sum"], 2);
    let listed = s.ok(&s.admin, "execution", json!({"action": "list"}));
    assert_eq!(listed["executions"][1]["status"], "timed_out", "{listed}");
}

#[test]
fn oversize_input_is_refused_before_running_and_the_host_keeps_serving() {
    let s = Server::start();
    let jt = register_json_transform(&s);
    s.ok(
        &s.admin,
        "policy",
        json!({"action": "set", "reference": jt, "field": "max_request_size", "value": "1KB"}),
    );
    let big = "x".repeat(4096);
    let r = s.call(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": big}}),
    );
    assert_eq!(code(&r), -33100, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "input_too_large");
    let ok = s.ok(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [3]}}),
    );
    assert_eq!(ok["result"]["sum"], 3);
}

#[test]
fn oversize_output_is_refused() {
    let s = Server::start();
    let jt = register_json_transform(&s);
    s.ok(
        &s.admin,
        "policy",
        json!({"action": "set", "reference": jt, "field": "max_response_size", "value": 64}),
    );
    let r = s.call(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": vec![1; 50]}}),
    );
    assert_eq!(code(&r), -33100, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "output_too_large");
}

#[test]
fn policy_values_are_checked_and_a_bad_one_loses_nothing() {
    let s = Server::start();
    let jt = register_json_transform(&s);
    s.ok(
        &s.admin,
        "policy",
        json!({"action": "set", "reference": jt, "field": "timeout", "value": "5s"}),
    );
    for (field, value) in [
        ("timeout", json!(5)),
        ("colour", json!("red")),
        ("max_memory_bytes", json!("10GB")),
    ] {
        let r = s.call(
            &s.admin,
            "policy",
            json!({"action": "set", "reference": jt, "field": field, "value": value}),
        );
        assert_eq!(r["result"]["isError"], true, "{field}: {r}");
    }
    let p = s.ok(
        &s.admin,
        "policy",
        json!({"action": "get_effective", "reference": jt}),
    );
    assert_eq!(p["policy"]["timeout"], "5s");
}

#[test]
fn a_components_rate_limit_counts_each_caller_apart() {
    let s = Server::start();
    let bytes = wasm("json-transform");
    s.register(manifest("acme.limited", "0.1.0"), &bytes);
    s.register(manifest("acme.free", "0.1.0"), &bytes);
    s.ok(&s.admin, "policy", json!({"action": "set", "reference": "r:acme.limited:0.1.0", "field": "rate_limit", "value": "2/1m"}));
    let alice = s.key("alice", "secret", &["execution"], json!({}));
    let bob = s.key("bob", "secret", &["execution"], json!({}));
    let run = |key: &str, reference: &str| {
        s.call(
            key,
            "execution",
            json!({"action": "run", "reference": reference, "input": {"data": [1]}}),
        )
    };
    for _ in 0..2 {
        assert_eq!(
            run(&alice, "r:acme.limited:0.1.0")["result"]["structuredContent"]["status"],
            "completed"
        );
    }
    let r = run(&alice, "r:acme.limited:0.1.0");
    assert_eq!(code(&r), -33005, "the third run in a minute: {r}");
    // Bob has his own budget, and Alice's other components are not held back.
    assert_eq!(
        run(&bob, "r:acme.limited:0.1.0")["result"]["structuredContent"]["status"],
        "completed"
    );
    assert_eq!(
        run(&alice, "r:acme.free:0.1.0")["result"]["structuredContent"]["status"],
        "completed"
    );
    // The refusal is recorded: Alice's list has her three runs and the refused one, failed.
    let listed = s.ok(&alice, "execution", json!({"action": "list"}));
    assert_eq!(listed["count"], 4, "{listed}");
    let refused: Vec<&serde_json::Value> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "failed")
        .collect();
    assert_eq!(refused.len(), 1, "{listed}");
    assert!(
        refused[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("rate limit of 2/1m exceeded"),
        "{listed}"
    );
}

#[test]
fn catalysts_without_allowed_domains_are_refused_with_policy_required() {
    let s = Server::start();
    let mut m = manifest("acme.fetcher", "0.1.0");
    m["id"] = json!("catalyst:acme.fetcher");
    m["type"] = json!("catalyst");
    s.register(m, &wasm("json-transform"));
    let r = s.call(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": "c:acme.fetcher:0.1.0", "input": {}}),
    );
    assert_eq!(code(&r), -33102, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "POLICY_REQUIRED");
}

#[test]
fn logs_show_a_runs_stdout_and_stderr_to_its_caller_only() {
    let s = Server::start();
    let jt = register_json_transform(&s);
    let a = s.key("a", "secret", &["execution"], json!({}));
    let b = s.key("b", "secret", &["execution"], json!({}));
    let r = s.ok(
        &a,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [1], "debug": true}}),
    );
    let id = r["execution_id"].as_str().unwrap();
    let logs = s.ok(
        &a,
        "execution",
        json!({"action": "logs", "execution_id": id}),
    );
    assert_eq!(logs["status"], "completed");
    assert!(
        logs["stdout"]
            .as_str()
            .unwrap()
            .contains("json-transform: applying 0 op(s)"),
        "{logs}"
    );
    assert!(
        logs["stderr"].as_str().unwrap().contains("debug enabled"),
        "{logs}"
    );
    let r = s.call(
        &b,
        "execution",
        json!({"action": "logs", "execution_id": id}),
    );
    assert_eq!(
        r["result"]["isError"], true,
        "another caller read the logs: {r}"
    );
    s.ok(
        &s.admin,
        "execution",
        json!({"action": "logs", "execution_id": id}),
    );
}

/// Starts an endless loop in the background and returns its execution id once it runs.
fn start_endless(
    s: &std::sync::Arc<Server>,
) -> (String, std::thread::JoinHandle<serde_json::Value>) {
    s.register(
        manifest("test.endless-loop", "0.1.0"),
        &wasm("endless-loop"),
    );
    let bg = s.clone();
    let handle = std::thread::spawn(move || {
        bg.call(
            &bg.admin,
            "execution",
            json!({"action": "run", "reference": "r:test.endless-loop:0.1.0", "input": {}}),
        )
    });
    for _ in 0..200 {
        let listed = s.ok(&s.admin, "execution", json!({"action": "list"}));
        if let Some(e) = listed["executions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["status"] == "running")
        {
            return (e["execution_id"].as_str().unwrap().to_string(), handle);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the endless loop never showed up as started");
}

fn cancel_and_check(s: &std::sync::Arc<Server>) {
    let (id, handle) = start_endless(s);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let asked = std::time::Instant::now();
    let r = s.ok(
        &s.admin,
        "execution",
        json!({"action": "cancel", "execution_id": id}),
    );
    assert_eq!(r["cancelled"], true, "{r}");
    let run = handle.join().unwrap();
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(1),
        "cancel took {:?}",
        asked.elapsed()
    );
    assert_eq!(code(&run), -33100, "{run}");
    assert_eq!(run["error"]["data"]["reason"], "cancelled");
    let logs = s.ok(
        &s.admin,
        "execution",
        json!({"action": "logs", "execution_id": id}),
    );
    assert_eq!(logs["status"], "cancelled");
    // Cancelling again changes nothing; the server keeps serving.
    let again = s.ok(
        &s.admin,
        "execution",
        json!({"action": "cancel", "execution_id": id}),
    );
    assert_eq!(again["cancelled"], false);
    let jt = register_json_transform(s);
    assert_eq!(
        s.ok(
            &s.admin,
            "execution",
            json!({"action": "run", "reference": jt, "input": {"data": [4]}})
        )["result"]["sum"],
        4
    );
}

#[test]
fn cancel_from_a_second_request_stops_a_running_loop_within_a_second() {
    let s = std::sync::Arc::new(Server::start());
    cancel_and_check(&s);
}

#[test]
fn cancel_reaches_a_run_on_a_remote_host() {
    let h = Host::start();
    let s = std::sync::Arc::new(Server::start_with(&["--host", &h.spec]));
    cancel_and_check(&s);
}

#[test]
fn only_the_caller_or_an_admin_can_cancel() {
    let s = std::sync::Arc::new(Server::start());
    let other = s.key("other", "secret", &["execution"], json!({}));
    let (id, handle) = start_endless(&s);
    let r = s.call(
        &other,
        "execution",
        json!({"action": "cancel", "execution_id": id}),
    );
    assert_eq!(r["result"]["isError"], true, "{r}");
    s.ok(
        &s.admin,
        "execution",
        json!({"action": "cancel", "execution_id": id}),
    );
    handle.join().unwrap();
}

#[test]
fn one_key_holding_its_share_of_runs_is_refused_busy_and_another_keys_run_completes() {
    let s = std::sync::Arc::new(Server::start());
    s.register(
        manifest("test.endless-loop", "0.1.0"),
        &wasm("endless-loop"),
    );
    // Long enough that no loop ends by itself however slow the machine; each is cancelled.
    s.ok(&s.admin, "policy", json!({"action": "set", "reference": "r:test.endless-loop:0.1.0", "field": "timeout", "value": "10m"}));
    let jt = register_json_transform(&s);
    // A's probe loop below may run long on a loaded machine: only the slots may refuse it.
    s.ok(
        &s.admin,
        "policy",
        json!({"action": "set", "reference": jt, "field": "rate_limit", "value": "100000/1m"}),
    );
    let a = s.key(
        "a",
        "secret",
        &["execution"],
        json!({"rate_limit": "100000/1m"}),
    );
    let b = s.key("b", "secret", &["execution"], json!({}));
    // Both components compiled first (a quick panicking run): on a loaded debug build a
    // compile takes seconds, and A's share must fill from runs, not from compiles.
    let warm = s.call(
        &b,
        "execution",
        json!({"action": "run", "reference": "r:test.endless-loop:0.1.0", "input": {"mode": "panic"}}),
    );
    assert_eq!(warm["error"]["data"]["reason"], "trap", "{warm}");
    s.ok(
        &b,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [0]}}),
    );
    // A fills its share of the host's slots (16) with runs that never end by themselves.
    let share = 16;
    let loops: Vec<_> = (0..share)
        .map(|_| {
            let (s, a) = (s.clone(), a.clone());
            std::thread::spawn(move || s.call(&a, "execution", json!({"action": "run", "reference": "r:test.endless-loop:0.1.0", "input": {"mode": "sleep"}})))
        })
        .collect();
    // A's next run is refused at once with the rate-limit answer (until all 16 hold their
    // places, an extra quick run may still get through: it just completes).
    let mut busy = None;
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < give_up {
        if let Some(ended) = loops.iter().position(|l| l.is_finished()) {
            let r = loops.into_iter().nth(ended).unwrap().join().unwrap();
            panic!("one of A's endless runs ended before its share filled: {r}");
        }
        let r = s.call(
            &a,
            "execution",
            json!({"action": "run", "reference": jt, "input": {"data": [1]}}),
        );
        if r["error"]["code"] == -33005 {
            busy = Some(r);
            break;
        }
        assert_eq!(
            r["result"]["structuredContent"]["status"], "completed",
            "{r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let busy = busy.expect("A's run past its share was never refused");
    assert_eq!(busy["error"]["data"]["reason"], "busy", "{busy}");
    assert!(
        busy["error"]["data"]["retry_after_ms"].as_u64().is_some(),
        "{busy}"
    );
    // B's run completes while A's runs are all still going.
    let done = s.ok(
        &b,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [1, 2]}}),
    );
    assert_eq!(done["result"]["sum"], 3, "{done}");
    let listed = s.ok(&s.admin, "execution", json!({"action": "list"}));
    let started: Vec<String> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "running")
        .map(|e| e["execution_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        started.len(),
        share,
        "A's runs were still running: {listed}"
    );
    for id in &started {
        s.ok(
            &s.admin,
            "execution",
            json!({"action": "cancel", "execution_id": id}),
        );
    }
    for l in loops {
        let r = l.join().unwrap();
        assert_eq!(
            r["error"]["data"]["reason"], "cancelled",
            "none of A's share was refused: {r}"
        );
    }
}
