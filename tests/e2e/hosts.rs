//! Routers dispatching to separate `cyfr host` processes.

use crate::support::*;
use serde_json::json;

#[test]
fn runs_spread_over_two_hosts_and_survive_one_dying() {
    let h1 = Host::start();
    let mut h2 = Host::start();
    let s = Server::start_with(&["--host", &h1.spec, "--host", &h2.spec]);
    let jt = register_json_transform(&s);
    for i in 0..20 {
        let r = s.ok(
            &s.admin,
            "execution",
            json!({"action": "run", "reference": jt, "input": {"data": [i]}}),
        );
        assert_eq!(r["result"]["sum"], i);
    }
    assert_eq!(
        (h1.artifacts(), h2.artifacts()),
        (1, 1),
        "both hosts should have run something"
    );
    h2.kill();
    // Enough runs that some land on the dead host's turn: each must go on to the live one,
    // however the refused connect is reported (a refusal or a closed body stream).
    for i in 0..30 {
        let r = s.ok(
            &s.admin,
            "execution",
            json!({"action": "run", "reference": jt, "input": {"data": [i, 1]}}),
        );
        assert_eq!(r["result"]["sum"], i + 1);
    }
}

#[test]
fn a_host_refuses_requests_without_a_valid_token() {
    let h = Host::start();
    let http = reqwest::blocking::Client::new();
    let run = json!({"execution_id": "exec_x", "digest": "sha256:00", "component_type": "reagent", "input": "{}",
                     "limits": {"timeout_ms": 1000, "max_memory_bytes": 1048576, "max_input_bytes": 100, "max_output_bytes": 100}});
    let r = http
        .post(format!("{}/v1/executions", h.url))
        .json(&run)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(format!("{}/v1/executions", h.url))
        .bearer_auth("eyJhbGciOiJub25lIn0.e30.")
        .json(&run)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .put(format!("{}/v1/artifacts/sha256:00", h.url))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn all_hosts_down_is_registry_unavailable_not_a_hang() {
    let mut h = Host::start();
    let s = Server::start_with(&["--host", &h.spec]);
    let jt = register_json_transform(&s);
    h.kill();
    let r = s.call(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {}}),
    );
    assert_eq!(code(&r), -33202, "{r}");
}
