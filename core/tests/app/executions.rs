//! `execution.run`'s refusals and the host's failures, as codes and records.

use crate::support::{code, completed, failed, fake_wasm, mcp_request, Harness, ADMIN};
use cyfr_core::dispatch::DispatchError;
use serde_json::{json, Value as Json};

/// Runs `reference` as the admin, a little after the previous run (records list newest first).
async fn run(h: &Harness, reference: &str) -> Json {
    h.env().advance(10);
    h.call(
        ADMIN,
        "execution",
        json!({ "action": "run", "reference": reference }),
    )
    .await
}

/// The status of the newest run record.
async fn last_status(h: &Harness) -> String {
    let listed = h
        .ok(ADMIN, "execution", json!({ "action": "list", "limit": 1 }))
        .await;
    listed["executions"][0]["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_unknown_reference_is_component_not_found() {
    let h = Harness::new().await;
    let r = run(&h, "reagent:nobody.nothing:1.0.0").await;
    assert_eq!(code(&r), -33200, "{r}");
    let r = run(&h, "not a reference").await;
    assert_eq!(code(&r), -33200, "{r}");
    assert!(h.host().runs.borrow().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn host_failures_map_to_their_codes_and_records() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "test.fails", "0.1.0").await;
    let cases: Vec<(Result<_, DispatchError>, i64, &str)> = vec![
        (Ok(failed("timeout", "took too long")), -33101, "timed_out"),
        (Ok(failed("trap", "unreachable executed")), -33100, "failed"),
        (Ok(failed("memory_limit", "too big")), -33100, "failed"),
        (Ok(failed("cancelled", "stopped")), -33100, "cancelled"),
        (
            Err(DispatchError::Unreachable("refused".into())),
            -33202,
            "failed",
        ),
        (
            Err(DispatchError::Refused {
                code: "bad_digest".into(),
                message: "mismatch".into(),
            }),
            -33202,
            "failed",
        ),
    ];
    for (answer, want, status) in cases {
        let label = format!("{answer:?}");
        h.host().answer(answer);
        let r = run(&h, &reference).await;
        assert_eq!(code(&r), want, "{label}: {r}");
        assert!(
            r["error"]["data"]["execution_id"].is_string(),
            "{label}: {r}"
        );
        assert_eq!(last_status(&h).await, status, "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_busy_host_is_rate_limited_with_a_retry_time() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "test.busy", "0.1.0").await;
    h.host()
        .answer(Ok(failed("busy", "your share of this host is in use")));
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "execution", "arguments": { "action": "run", "reference": reference } } });
    let resp = h.app.handle(mcp_request(Some(ADMIN), &body)).await;
    let r: Json = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(code(&r), -33005, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "busy", "{r}");
    assert_eq!(r["error"]["data"]["retry_after_ms"], 1000, "{r}");
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_missing_artifact_is_uploaded_and_the_run_sent_again() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "test.upload", "0.1.0").await;
    h.host().answer(Err(DispatchError::ArtifactMissing));
    h.host().answer(Ok(completed(json!({ "after": "upload" }))));
    let r = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "run", "reference": reference }),
        )
        .await;
    assert_eq!(r["result"], json!({ "after": "upload" }), "{r}");
    let uploads = h.host().uploads.borrow();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].1, fake_wasm("test.upload"));
    assert_eq!(uploads[0].0, r["component_digest"].as_str().unwrap());
    assert_eq!(h.host().reruns.get(), 1);
    let runs = h.host().runs.borrow();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[0].execution_id, runs[1].execution_id,
        "the same run, sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_component_over_its_rate_is_refused_without_reaching_the_host() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "test.rate", "0.1.0").await;
    h.ok(
        ADMIN,
        "policy",
        json!({ "action": "set", "reference": reference, "field": "rate_limit", "value": "1/1m" }),
    )
    .await;
    h.ok(
        ADMIN,
        "execution",
        json!({ "action": "run", "reference": reference }),
    )
    .await;
    let r = run(&h, &reference).await;
    assert_eq!(code(&r), -33005, "{r}");
    assert_eq!(h.host().runs.borrow().len(), 1);
    assert_eq!(last_status(&h).await, "failed");
    // The window passes.
    h.env().advance(61_000);
    h.ok(
        ADMIN,
        "execution",
        json!({ "action": "run", "reference": reference }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn policy_refusals_stop_a_run_before_the_host() {
    let h = Harness::new().await;
    // An input over max_request_size.
    let reagent = h.register("reagent", "test.small", "0.1.0").await;
    h.ok(
        ADMIN,
        "policy",
        json!({ "action": "set", "reference": reagent, "field": "max_request_size", "value": 16 }),
    )
    .await;
    let r = h
        .call(ADMIN, "execution", json!({ "action": "run", "reference": reagent, "input": { "text": "far more than sixteen bytes" } }))
        .await;
    assert_eq!(code(&r), -33100, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "input_too_large", "{r}");
    // A catalyst without allowed_domains.
    let catalyst = h.register("catalyst", "test.net", "0.1.0").await;
    let r = run(&h, &catalyst).await;
    assert_eq!(code(&r), -33102, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "POLICY_REQUIRED", "{r}");
    assert!(h.host().runs.borrow().is_empty());
    assert_eq!(last_status(&h).await, "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_formula_needs_a_router_url_when_hosts_are_remote() {
    let h = Harness::with(|c| {
        c.hosts = vec![cyfr_core::host_api::HostTarget {
            url: "http://10.0.0.5:4100".into(),
            public_key: [9; 32],
        }];
    })
    .await;
    let formula = h.register("formula", "test.flow", "0.1.0").await;
    let r = run(&h, &formula).await;
    assert_eq!(code(&r), -33102, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "no_router_url", "{r}");
    assert!(h.host().runs.borrow().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_run_needs_its_scope_and_a_key_within_its_rate() {
    let h = Harness::new().await;
    let reference = h.register("reagent", "test.keyrate", "0.1.0").await;
    let key = h
        .key("slow", &["execution"], json!({ "rate_limit": "2/1m" }))
        .await;
    for _ in 0..2 {
        h.ok(
            &key,
            "execution",
            json!({ "action": "run", "reference": reference }),
        )
        .await;
    }
    let r = h
        .call(
            &key,
            "execution",
            json!({ "action": "run", "reference": reference }),
        )
        .await;
    assert_eq!(code(&r), -33005, "{r}");
    assert_eq!(h.host().runs.borrow().len(), 2);
}
