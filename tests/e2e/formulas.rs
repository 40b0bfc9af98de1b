//! Formulas through the real server: children run through the full pipeline with linked
//! records, tools are deny-by-default and never exceed the caller's scopes, nesting is
//! bounded, a child never outlives its parent, batches run in parallel, and cancelling a
//! formula stops its children.

use crate::catalysts::{policy, register, Upstream};
use crate::support::*;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const PROBE: &str = "formula:test.probe:0.1.0";

/// Registers the formula probe fixture.
pub(crate) fn register_probe(s: &Server) {
    let m = json!({ "id": "formula:test.probe", "type": "formula", "version": "0.1.0", "description": "test formula probe", "secrets": [],
                    "wasi": { "http": false, "streaming": false, "secrets": false } });
    s.register(m, &wasm("formula-probe"));
}

/// Runs the probe with `steps` as `key`; returns the whole JSON-RPC answer.
fn probe(s: &Server, key: &str, steps: Json) -> Json {
    s.call(
        key,
        "execution",
        json!({ "action": "run", "reference": PROBE, "input": { "steps": steps } }),
    )
}

/// The probe's per-step answers from a successful run.
fn results(answer: &Json) -> Vec<Json> {
    assert!(
        answer.get("error").is_none() && answer["result"]["isError"] == json!(false),
        "probe failed: {answer}"
    );
    answer["result"]["structuredContent"]["result"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn runs(s: &Server, key: &str) -> Vec<Json> {
    s.ok(key, "execution", json!({ "action": "list", "limit": 100 }))["executions"]
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn a_formula_runs_a_catalyst_then_a_reagent_and_three_records_link_up() {
    let up = Upstream::start();
    let s = Server::start();
    let http = register(&s, "components/catalysts/cyfr/http/0.1.0", "http-catalyst");
    register(
        &s,
        "components/reagents/cyfr/text-stats/0.1.0",
        "text-stats",
    );
    let formula = register(
        &s,
        "components/formulas/cyfr/fetch-stats/0.1.0",
        "fetch-stats-formula",
    );
    assert_eq!(formula, "formula:cyfr.fetch-stats:0.1.0");
    policy(&s, &http, "allowed_domains", json!(["localhost"]));
    policy(&s, &http, "allowed_private_ips", json!(["127.0.0.1/32"]));
    let key = s.key("runner", "secret", &["execution"], json!({}));

    let r = s.ok(&key, "execution", json!({ "action": "run", "reference": formula, "input": { "url": up.url("/ok"), "top": 3 } }));
    assert_eq!(r["status"], "completed", "{r}");
    let out = &r["result"];
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(
        out["stats"]["words"], 1,
        "the reagent counted the catalyst's body `hello`: {out}"
    );

    let parent = r["execution_id"].as_str().unwrap();
    let listed = runs(&s, &key);
    assert_eq!(listed.len(), 3, "{listed:?}");
    let child = |id: &Json| {
        listed
            .iter()
            .find(|e| &e["execution_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no record {id}"))
    };
    let (fetch, stats) = (
        child(&out["executions"]["fetch"]),
        child(&out["executions"]["stats"]),
    );
    assert_eq!(
        (
            fetch["component_type"].as_str(),
            stats["component_type"].as_str()
        ),
        (Some("catalyst"), Some("reagent"))
    );
    for c in [&fetch, &stats] {
        assert_eq!(c["parent_execution_id"], parent, "{c}");
        assert_eq!(c["status"], "completed", "{c}");
    }
    let top = child(&json!(parent));
    assert_eq!(
        (
            top["component_type"].as_str(),
            top["parent_execution_id"].is_null()
        ),
        (Some("formula"), true),
        "{top}"
    );

    // The child's own policy still holds: without allowed_domains the catalyst never starts.
    s.ok(
        &s.admin,
        "policy",
        json!({ "action": "delete", "reference": http }),
    );
    let r = s.ok(
        &key,
        "execution",
        json!({ "action": "run", "reference": formula, "input": { "url": up.url("/ok") } }),
    );
    assert_eq!(r["result"]["error"]["type"], "policy_required", "{r}");
    assert_eq!(r["result"]["error"]["step"], "fetch");
}

#[test]
fn tools_are_denied_by_default_and_never_exceed_the_callers_scopes() {
    let s = Server::start();
    register_probe(&s);
    let key = s.key(
        "runner",
        "secret",
        &["execution", "component.search"],
        json!({}),
    );
    let search = json!({ "fn": "tool", "req": { "tool": "component", "action": "search", "args": { "query": "probe" } } });
    let create_key = json!({ "fn": "tool", "req": { "tool": "key", "action": "create", "params": { "name": "made-by-formula", "type": "secret", "scope": ["execution"] } } });

    let r = results(&probe(&s, &key, json!([search])));
    assert_eq!(
        r[0]["error"]["type"], "tool_denied",
        "no allowed_tools, no tools: {r:?}"
    );

    s.ok(&s.admin, "policy", json!({ "action": "set", "reference": PROBE, "field": "allowed_tools", "value": ["component.*", "key.create"] }));
    let unknown = json!({ "fn": "tool", "req": { "tool": "nope", "action": "x" } });
    let run_tool = json!({ "fn": "tool", "req": { "tool": "execution", "action": "run", "args": { "reference": PROBE } } });
    let garbage = json!({ "fn": "tool", "raw": "not json" });
    let r = results(&probe(
        &s,
        &key,
        json!([search, create_key, unknown, run_tool, garbage]),
    ));
    assert_eq!(r[0]["status"], "ok", "{r:?}");
    assert_eq!(r[0]["result"]["components"][0]["reference"], PROBE, "{r:?}");
    assert_eq!(
        r[1]["error"]["type"], "tool_denied",
        "a non-admin caller cannot create keys through a formula: {r:?}"
    );
    assert_eq!(r[2]["error"]["type"], "tool_not_found", "{r:?}");
    assert_eq!(
        r[3]["error"]["type"], "tool_denied",
        "execution.run is not in allowed_tools: {r:?}"
    );
    assert_eq!(r[4]["error"]["type"], "invalid_json", "{r:?}");
    let names: Vec<Json> = s.ok(&s.admin, "key", json!({ "action": "list" }))["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].clone())
        .collect();
    assert!(!names.contains(&json!("made-by-formula")), "{names:?}");

    // The same formula run by an admin reaches the real handler.
    let r = results(&probe(&s, &s.admin, json!([create_key])));
    assert_eq!(r[0]["status"], "ok", "{r:?}");
    assert!(r[0]["result"]["key"]
        .as_str()
        .unwrap()
        .starts_with("cyfr_sk_"));
}

#[test]
fn formulas_nest_at_most_four_levels_deep() {
    let s = Server::start();
    register_probe(&s);
    let r = results(&probe(
        &s,
        &s.admin,
        json!([{ "fn": "self", "reference": PROBE }]),
    ));
    // Each level's answer holds the next level's results, until the router refuses.
    let mut level = r[0].clone();
    let mut depth = 1;
    while level["status"] == "completed" {
        level = level["output"]["results"][0].clone();
        depth += 1;
    }
    assert_eq!(level["error"]["type"], "depth_exceeded", "{level}");
    assert_eq!(
        depth, 5,
        "levels 1..4 ran under the top-level run; the fifth was refused"
    );
    let listed = runs(&s, &s.admin);
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert_eq!(
        listed.iter().filter(|e| e["status"] == "failed").count(),
        1,
        "{listed:?}"
    );
}

#[test]
fn a_child_never_outlives_its_parent_and_batches_run_in_parallel() {
    let s = Server::start();
    register_probe(&s);
    let jt = register_json_transform(&s);
    s.register(
        manifest("test.endless-loop", "0.1.0"),
        &wasm("endless-loop"),
    );
    s.ok(
        &s.admin,
        "policy",
        json!({ "action": "set", "reference": PROBE, "field": "timeout", "value": "2s" }),
    );

    let started = Instant::now();
    let r = results(&probe(
        &s,
        &s.admin,
        json!([{ "fn": "call", "req": { "reference": "r:test.endless-loop:0.1.0", "input": {} } }]),
    ));
    assert_eq!(r[0]["error"]["type"], "timeout", "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the child ran past its parent: {:?}",
        started.elapsed()
    );
    let child = runs(&s, &s.admin)
        .into_iter()
        .find(|e| e["reference"] == "reagent:test.endless-loop:0.1.0")
        .unwrap();
    assert!(
        child["status"] == "timed_out" || child["status"] == "cancelled",
        "{child}"
    );
    assert!(
        child["duration_ms"].as_u64().unwrap() < 3_000,
        "the child's 30 s default was cut to the parent's 2 s: {child}"
    );

    let inv = |n: i64| json!({ "reference": jt, "input": { "data": [n, 1] } });
    let r = results(&probe(
        &s,
        &s.admin,
        json!([
            { "fn": "batch", "req": { "invocations": [inv(1), inv(2), inv(3)] } },
            { "fn": "wait_all", "of": 0 },
            { "fn": "poll", "of": 0, "index": 7 },
            { "fn": "close", "of": 0 },
            { "fn": "poll_all", "of": 0 },
            { "fn": "batch", "req": { "invocations": [] } },
            { "fn": "call", "req": { "reference": { "registry": "cyfr.json-transform:0.1.0" }, "input": { "data": [5] } } },
        ]),
    ));
    assert_eq!(r[0]["count"], 3, "{r:?}");
    let done = r[1]["results"].as_array().unwrap();
    assert_eq!(r[1]["all_done"], true);
    let sums: Vec<i64> = done
        .iter()
        .map(|d| d["output"]["sum"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(sums, vec![2, 3, 4], "{done:?}");
    assert_eq!(r[2]["error"]["type"], "invalid_index", "{r:?}");
    assert_eq!(r[3]["ok"], true);
    assert_eq!(
        r[4]["error"]["type"], "invalid_handle",
        "a closed batch is gone: {r:?}"
    );
    assert_eq!(r[5]["error"]["type"], "invalid_request", "{r:?}");
    assert_eq!(
        r[6]["output"]["sum"], 5,
        "a reference without a type is a reagent: {r:?}"
    );
}

#[test]
fn cancelling_a_formula_stops_its_running_child_too() {
    let s = Arc::new(Server::start());
    register_probe(&s);
    s.register(
        manifest("test.endless-loop", "0.1.0"),
        &wasm("endless-loop"),
    );
    let bg = s.clone();
    let run = std::thread::spawn(move || {
        probe(
            &bg,
            &bg.admin,
            json!([{ "fn": "call", "req": { "reference": "r:test.endless-loop:0.1.0" } }]),
        )
    });
    let (parent, child) = (0..200)
        .find_map(|_| {
            let listed = runs(&s, &s.admin);
            let found = listed
                .iter()
                .find(|e| e["status"] == "running" && !e["parent_execution_id"].is_null())
                .map(|c| {
                    (
                        c["parent_execution_id"].as_str().unwrap().to_string(),
                        c["execution_id"].as_str().unwrap().to_string(),
                    )
                });
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            found
        })
        .expect("the formula's child never showed up as started");
    let asked = Instant::now();
    let r = s.ok(
        &s.admin,
        "execution",
        json!({ "action": "cancel", "execution_id": parent }),
    );
    assert_eq!(r["cancelled"], true, "{r}");
    let answer = run.join().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "cancel took {:?}",
        asked.elapsed()
    );
    assert_eq!(answer["error"]["data"]["reason"], "cancelled", "{answer}");
    let status = |id: &str| {
        s.ok(
            &s.admin,
            "execution",
            json!({ "action": "logs", "execution_id": id }),
        )["status"]
            .clone()
    };
    assert_eq!(status(&parent), "cancelled");
    // Recorded as cancelled before the formula's answer came back.
    assert_eq!(status(&child), "cancelled");
}

/// The formula's children in the run list: (execution id, status).
fn children(s: &Server, parent: &str) -> Vec<(String, String)> {
    runs(s, &s.admin)
        .iter()
        .filter(|e| e["parent_execution_id"] == parent)
        .map(|e| {
            (
                e["execution_id"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_formula_that_ends_takes_its_batch_with_it_and_no_child_starts_after() {
    let s = Arc::new(Server::start());
    register_probe(&s);
    s.register(
        manifest("test.endless-loop", "0.1.0"),
        &wasm("endless-loop"),
    );
    let endless = json!({ "reference": "r:test.endless-loop:0.1.0", "input": {} });
    // Ends (its 1 s is up) with its batch running: no child is left started when it answers.
    s.ok(
        &s.admin,
        "policy",
        json!({ "action": "set", "reference": PROBE, "field": "timeout", "value": "1s" }),
    );
    let r = probe(
        &s,
        &s.admin,
        json!([{ "fn": "batch", "req": { "invocations": [endless, endless, endless] } }, { "fn": "spin" }]),
    );
    assert_eq!(code(&r), -33101, "{r}");
    let parent = r["error"]["data"]["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let kids = children(&s, &parent);
    assert_eq!(kids.len(), 3, "{kids:?}");
    assert!(
        kids.iter()
            .all(|(_, st)| st == "cancelled" || st == "timed_out"),
        "{kids:?}"
    );
    s.ok(
        &s.admin,
        "policy",
        json!({ "action": "delete", "reference": PROBE }),
    );

    // Cancelled while a large batch is still being started: nothing is left running, and no
    // child starts once the cancel has answered.
    let many: Vec<Json> = (0..24).map(|_| endless.clone()).collect();
    let bg = s.clone();
    let run = std::thread::spawn(move || {
        probe(
            &bg,
            &bg.admin,
            json!([{ "fn": "batch", "req": { "invocations": many } }, { "fn": "spin" }]),
        )
    });
    let parent = (0..200)
        .find_map(|_| {
            let found = runs(&s, &s.admin)
                .iter()
                .find(|e| e["reference"] == PROBE && e["status"] == "running")
                .map(|e| e["execution_id"].as_str().unwrap().to_string());
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            found
        })
        .expect("the formula never showed up as started");
    let r = s.ok(
        &s.admin,
        "execution",
        json!({ "action": "cancel", "execution_id": parent }),
    );
    assert_eq!(r["cancelled"], true, "{r}");
    run.join().unwrap();
    let after_cancel = children(&s, &parent);
    assert!(
        after_cancel.iter().all(|(_, st)| st != "running"),
        "{after_cancel:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let later = children(&s, &parent);
    assert_eq!(
        later.len(),
        after_cancel.len(),
        "children started after the cancel: {later:?}"
    );
    assert!(later.iter().all(|(_, st)| st != "running"), "{later:?}");
}

#[test]
fn children_count_against_the_callers_key_rate_limit() {
    let s = Server::start();
    register_probe(&s);
    let jt = register_json_transform(&s);
    let key = s.key(
        "limited",
        "secret",
        &["execution"],
        json!({ "rate_limit": "3/1m" }),
    );
    let call = json!({ "fn": "call", "req": { "reference": jt, "input": { "data": [1] } } });
    // The formula's own run is the first request; two children fit, the third does not.
    let r = results(&probe(&s, &key, json!([call, call, call])));
    assert_eq!(r[0]["status"], "completed", "{r:?}");
    assert_eq!(r[1]["status"], "completed", "{r:?}");
    assert_eq!(r[2]["error"]["type"], "rate_limited", "{r:?}");
}

#[test]
fn callback_paths_refuse_anyone_without_a_running_formulas_token() {
    let s = Server::start();
    let base = s.url.trim_end_matches("/mcp").to_string();
    let http = reqwest::blocking::Client::new();
    let body = json!({ "reference": "r:cyfr.json-transform:0.1.0", "input": {} });
    for path in ["/v1/formula/invoke", "/v1/formula/tools"] {
        let r = http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without a token");
        let r = http
            .post(format!("{base}{path}"))
            .bearer_auth(&s.admin)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            401,
            "{path}: an API key is not a callback token"
        );
        let r = http
            .post(format!("{base}{path}"))
            .bearer_auth("x".repeat(43))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a made-up token");
    }
}

#[test]
fn formulas_on_remote_hosts_call_back_to_the_router() {
    let h = Host::start();
    let s = Server::start_with(&["--host", &h.spec]);
    register_probe(&s);
    let jt = register_json_transform(&s);
    let r = results(&probe(
        &s,
        &s.admin,
        json!([{ "fn": "call", "req": { "reference": jt, "input": { "data": [4, 5] } } }]),
    ));
    assert_eq!(r[0]["status"], "completed", "{r:?}");
    assert_eq!(r[0]["output"]["sum"], 9);
}

#[test]
fn a_run_that_times_out_keeps_what_it_wrote() {
    let s = Server::start();
    register_probe(&s);
    s.ok(
        &s.admin,
        "policy",
        json!({ "action": "set", "reference": PROBE, "field": "timeout", "value": "1s" }),
    );
    let r = probe(
        &s,
        &s.admin,
        json!([{ "fn": "print", "text": "got this far" }, { "fn": "spin" }]),
    );
    assert_eq!(code(&r), -33101, "{r}");
    let id = r["error"]["data"]["execution_id"].clone();
    let logs = s.ok(
        &s.admin,
        "execution",
        json!({ "action": "logs", "execution_id": id }),
    );
    assert_eq!(logs["status"], "timed_out", "{logs}");
    assert_eq!(logs["stdout"], "got this far\n", "{logs}");
}

#[test]
fn a_formulas_children_count_against_its_callers_share_of_slots() {
    let s = Arc::new(Server::start());
    register_probe(&s);
    let jt = register_json_transform(&s);
    s.register(
        manifest("test.endless-loop", "0.1.0"),
        &wasm("endless-loop"),
    );
    s.ok(
        &s.admin,
        "policy",
        json!({ "action": "set", "reference": PROBE, "field": "timeout", "value": "60s" }),
    );
    let a = s.key("a", "secret", &["execution"], json!({}));
    let b = s.key("b", "secret", &["execution"], json!({}));
    // One formula of A asks for 20 endless children at once: it holds one of A's 16 places,
    // 15 children take the rest, and the other 5 are refused at once.
    let sleeper = json!({ "reference": "r:test.endless-loop:0.1.0", "input": { "mode": "sleep" } });
    let batch = json!([{ "fn": "batch", "req": { "invocations": vec![sleeper; 20] } }, { "fn": "wait_all", "of": 0 }]);
    let (bg, key) = (s.clone(), a.clone());
    let formula = std::thread::spawn(move || probe(&bg, &key, batch));
    let children = || {
        runs(&s, &a)
            .into_iter()
            .filter(|e| e["reference"] == "reagent:test.endless-loop:0.1.0")
            .collect::<Vec<_>>()
    };
    let settled = (0..400).find_map(|_| {
        let c = children();
        let started = c.iter().filter(|e| e["status"] == "running").count();
        let busy = c
            .iter()
            .filter(|e| {
                e["status"] == "failed"
                    && e["error"].as_str().is_some_and(|m| m.contains("its share"))
            })
            .count();
        // A child's record exists before its host answers: one still `started` may yet be
        // refused, so wait for the refusals too (fewer than 5 never settles, and fails).
        if started + busy == 20 && busy >= 5 {
            return Some((started, busy));
        }
        std::thread::sleep(Duration::from_millis(50));
        None
    });
    assert_eq!(settled, Some((15, 5)), "{:?}", children());
    // B is not held back meanwhile.
    let done = s.ok(
        &b,
        "execution",
        json!({ "action": "run", "reference": jt, "input": { "data": [1, 2] } }),
    );
    assert_eq!(done["result"]["sum"], 3, "{done}");
    assert_eq!(
        children()
            .iter()
            .filter(|e| e["status"] == "running")
            .count(),
        15,
        "A's children were still running"
    );
    let parent = runs(&s, &a)
        .into_iter()
        .find(|e| e["reference"] == PROBE)
        .unwrap();
    s.ok(
        &s.admin,
        "execution",
        json!({ "action": "cancel", "execution_id": parent["execution_id"] }),
    );
    formula.join().unwrap();
}

#[test]
fn a_real_formula_finds_a_reagent_by_search_name_and_invokes_it_by_local_path() {
    let s = Server::start();
    register_probe(&s);
    let jt = register_json_transform(&s);
    // CYFR's own forms: `component_ref`, and a list field as a JSON string.
    s.ok(&s.admin, "policy", json!({ "action": "update_field", "component_ref": PROBE, "field": "allowed_tools", "value": "[\"component.search\"]" }));
    let local = "components/reagents/cyfr/json-transform/0.1.0/reagent.wasm";
    let r = results(&probe(
        &s,
        &s.admin,
        json!([
            { "fn": "tool", "req": { "tool": "component", "action": "search", "args": { "query": "json-transform" } } },
            { "fn": "call", "req": { "reference": { "local": local }, "input": { "data": [2, 3] } } },
            { "fn": "call", "req": { "reference": "cyfr.json-transform@0.1.0", "input": { "data": [4] } } },
            { "fn": "call", "req": { "reference": { "local": "components/reagents/cyfr/json-transform/0.1.0/../../../../../../etc/passwd" } } },
            { "fn": "call", "req": { "reference": { "local": "/etc/passwd" } } },
        ]),
    ));
    let rows = r[0]["result"]["components"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|c| c["name"] == "json-transform")
        .unwrap_or_else(|| panic!("no row named json-transform: {r:?}"));
    assert_eq!(row["publisher"], "cyfr", "{row}");
    assert_eq!(row["component_ref"], jt.as_str());
    assert_eq!(row["component_type"], "reagent");
    assert_eq!(r[1]["status"], "completed", "{r:?}");
    assert_eq!(r[1]["output"]["sum"], 5, "{r:?}");
    assert_eq!(r[2]["output"]["sum"], 4, "{r:?}");
    for refused in &r[3..] {
        assert_eq!(refused["error"]["type"], "component_not_found", "{r:?}");
    }
    // The probe and its two children ran; the refused paths ran nothing.
    let children: Vec<Json> = runs(&s, &s.admin)
        .into_iter()
        .filter(|e| !e["parent_execution_id"].is_null())
        .collect();
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(children.iter().all(|c| c["component_ref"] == jt.as_str()));
}
