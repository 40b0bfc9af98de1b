//! Crash safety: `kill -9` of `cyfr up` in the middle of a write burst loses no acknowledged
//! write, leaves no half-written record, and the restarted server serves.

use crate::support::*;
use serde_json::{json, Value as Json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the clients were told was done before the server died.
#[derive(Default)]
struct Acked {
    keys: Vec<(String, String)>,
    secrets: Vec<String>,
    executions: Vec<String>,
}

/// One tool call that never panics: `Some(structuredContent)` only for a success.
fn try_call(
    http: &reqwest::blocking::Client,
    url: &str,
    key: &str,
    tool: &str,
    args: Json,
) -> Option<Json> {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "arguments": args } });
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(body.to_string())
        .send()
        .ok()?;
    let v: Json = serde_json::from_str(&resp.text().ok()?).ok()?;
    (v.get("error").is_none() && v["result"]["isError"] == json!(false))
        .then(|| v["result"]["structuredContent"].clone())
}

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_write_and_the_server_serves_again() {
    let s = Server::start();
    let jt = register_json_transform(&s);
    s.ok(
        &s.admin,
        "policy",
        json!({"action": "set", "reference": jt, "field": "rate_limit", "value": "100000/1m"}),
    );
    s.register(
        manifest("test.endless-loop", "0.1.0"),
        &wasm("endless-loop"),
    );
    s.ok(&s.admin, "policy", json!({"action": "set", "reference": "r:test.endless-loop:0.1.0", "field": "timeout", "value": "10m"}));
    let (url, admin, data) = (s.url.clone(), s.admin.clone(), s.data.clone());

    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut clients = Vec::new();
    for (t, kind) in ["key", "secret", "execution", "key", "secret", "execution"]
        .into_iter()
        .enumerate()
    {
        let (url, admin, jt, acked) = (url.clone(), admin.clone(), jt.clone(), acked.clone());
        clients.push(std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
            // Bounded: the server is killed long before, and each client stops at its first failure.
            for i in 0..5_000 {
                let ok = match kind {
                    "key" => {
                        let name = format!("burst-{t}-{i}");
                        try_call(&http, &url, &admin, "key", json!({"action": "create", "name": name, "type": "secret", "scope": ["execution"]}))
                            .and_then(|r| r["key"].as_str().map(String::from))
                            .map(|k| acked.lock().unwrap().keys.push((name, k)))
                    }
                    "secret" => {
                        let name = format!("BURST_{t}_{i}");
                        try_call(&http, &url, &admin, "secret", json!({"action": "set", "name": name, "value": format!("value-{t}-{i}-0123456789"), "scope": "org"}))
                            .map(|_| acked.lock().unwrap().secrets.push(name))
                    }
                    _ => try_call(&http, &url, &admin, "execution", json!({"action": "run", "reference": jt, "input": {"data": [i, t]}}))
                        .and_then(|r| (r["status"] == "completed").then(|| r["execution_id"].as_str().map(String::from)).flatten())
                        .map(|id| acked.lock().unwrap().executions.push(id)),
                };
                if ok.is_none() {
                    break;
                }
            }
        }));
    }
    // A run that will still be under way when the server dies.
    let endless = {
        let (url, admin) = (url.clone(), admin.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()
                .unwrap();
            try_call(
                &http,
                &url,
                &admin,
                "execution",
                json!({"action": "run", "reference": "r:test.endless-loop:0.1.0", "input": {}}),
            )
        })
    };
    let mut running = None;
    for _ in 0..400 {
        let listed = s.ok(
            &s.admin,
            "execution",
            json!({"action": "list", "limit": 500}),
        );
        running = listed["executions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["status"] == "running"
                    && e["reference"]
                        .as_str()
                        .is_some_and(|r| r.contains("endless"))
            })
            .and_then(|e| e["execution_id"].as_str().map(String::from));
        if running.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = running.expect("the endless run never showed up as started");
    // Mid-burst: wait for some acknowledged writes of every kind, then SIGKILL.
    let enough =
        |a: &Acked| a.keys.len() >= 10 && a.secrets.len() >= 10 && a.executions.len() >= 10;
    while !enough(&acked.lock().unwrap()) {
        assert!(
            clients.iter().all(|c| !c.is_finished()),
            "a client stopped before the kill: its writes failed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = s.pid();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        endless.join().unwrap().is_none(),
        "the endless run cannot have succeeded"
    );
    drop(s);

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        !acked.keys.is_empty() && !acked.secrets.is_empty() && !acked.executions.is_empty(),
        "the burst acknowledged nothing of some kind"
    );

    let s = Server::up(data, admin, &[]);
    for (name, key) in &acked.keys {
        assert!(
            try_call(
                &reqwest::blocking::Client::new(),
                &s.url,
                key,
                "execution",
                json!({"action": "list"})
            )
            .is_some(),
            "acknowledged key {name} does not work"
        );
    }
    let listed = s.ok(&s.admin, "secret", json!({"action": "list"}));
    let names: Vec<&str> = listed["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    for n in &acked.secrets {
        assert!(
            names.contains(&n.as_str()),
            "acknowledged secret {n} is gone"
        );
    }
    let runs = s.ok(
        &s.admin,
        "execution",
        json!({"action": "list", "limit": 500}),
    );
    let runs = runs["executions"].as_array().unwrap();
    for id in &acked.executions {
        let r = runs
            .iter()
            .find(|r| r["execution_id"] == json!(id))
            .unwrap_or_else(|| panic!("acknowledged execution {id} is gone"));
        assert_eq!(r["status"], "completed", "{r}");
    }
    // The run the dead server left `started` is ended, with a reason.
    assert!(
        runs.iter().all(|r| r["status"] != "running"),
        "a run is still `started` after the restart"
    );
    let logs = s.ok(
        &s.admin,
        "execution",
        json!({"action": "logs", "execution_id": running}),
    );
    assert_eq!(logs["status"], "failed", "{logs}");
    assert!(
        logs.to_string()
            .contains("server stopped before this run finished"),
        "{logs}"
    );
    // It serves: a read, a write and a run.
    s.key("after-crash", "secret", &["execution"], json!({}));
    let r = s.ok(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [2, 3]}}),
    );
    assert_eq!(r["result"]["sum"], 5);

    let (data, _) = s.stop();
    let db = data.0.join("cyfr.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = cyfr_host::db::LocalDb::open(&db).await.unwrap();
        let ok = db
            .execute("PRAGMA integrity_check", Vec::new())
            .await
            .unwrap();
        assert_eq!(
            format!("{:?}", ok.rows),
            format!(
                "{:?}",
                vec![vec![cyfr_host::db::SqlValue::Text("ok".into())]]
            )
        );
        // No half-written record: every run has ended, with its end time.
        let open = db
            .execute(
                "SELECT COUNT(*) FROM executions WHERE status = 'started' OR finished_at IS NULL",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            format!("{:?}", open.rows),
            format!("{:?}", vec![vec![cyfr_host::db::SqlValue::Integer(0)]])
        );
    });
}

#[test]
fn a_second_cyfr_up_on_the_same_data_dir_is_refused() {
    let s = Server::start();
    let out = cyfr()
        .args(["up", "--json", "--listen", "127.0.0.1:0", "--components"])
        .arg(workspace())
        .arg("--data-dir")
        .arg(&s.data.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("another `cyfr up` is serving"), "{said}");
    // The first one is untouched.
    s.ok(&s.admin, "execution", json!({"action": "list"}));
}
