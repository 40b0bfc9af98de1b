//! A formula's callbacks (`/v1/formula/invoke`, `/v1/formula/tools`): who they act as and
//! what they are refused. The fake host plays the formula's guest against the router.

use crate::support::{Harness, Step, ADMIN};
use cyfr_core::http::HttpRequest;
use serde_json::{json, Value as Json};

/// Runs `formula` for `key`; the replies its guest got, in order.
async fn replies(h: &Harness, key: &str, formula: &str) -> Vec<Json> {
    let r = h
        .ok(
            key,
            "execution",
            json!({ "action": "run", "reference": formula }),
        )
        .await;
    r["result"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{r}"))
}

async fn setup(guest: Vec<Step>) -> (Harness, String, String) {
    let h = Harness::new().await;
    let formula = h.register("formula", "test.flow", "0.1.0").await;
    let child = h.register("reagent", "test.child", "0.1.0").await;
    h.host().guest.replace(guest);
    (h, formula, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_child_runs_as_the_caller_under_its_formula() {
    let (h, formula, child) = setup(vec![]).await;
    h.host().guest.replace(vec![Step::Invoke(
        json!({ "reference": child, "input": { "n": 1 } }),
    )]);
    let key = h.key("runner", &["execution"], json!({})).await;
    let got = replies(&h, &key, &formula).await;
    assert_eq!(got[0]["status"], 200, "{got:?}");
    assert_eq!(got[0]["body"]["status"], "completed", "{got:?}");
    assert_eq!(got[0]["body"]["output"], json!({ "ok": true }));
    let listed = h.ok(&key, "execution", json!({ "action": "list" })).await;
    let runs = listed["executions"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{listed}");
    let parent = runs
        .iter()
        .find(|r| r["reference"] == formula.as_str())
        .unwrap();
    let kid = runs
        .iter()
        .find(|r| r["reference"] == child.as_str())
        .unwrap();
    assert_eq!(
        kid["parent_execution_id"], parent["execution_id"],
        "{listed}"
    );
    // The child never outlives the formula's deadline.
    let host_runs = h.host().runs.borrow();
    assert!(host_runs[1].limits.timeout_ms <= host_runs[0].limits.timeout_ms);
    assert!(host_runs[0].callback.is_some() && host_runs[1].callback.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn bad_missing_and_stale_tokens_are_refused() {
    let (h, formula, _) = setup(vec![
        Step::Forged {
            path: "/v1/formula/invoke",
            token: None,
        },
        Step::Forged {
            path: "/v1/formula/tools",
            token: Some("not-a-token".into()),
        },
    ])
    .await;
    let got = replies(&h, ADMIN, &formula).await;
    for reply in &got {
        assert_eq!(reply["status"], 401, "{got:?}");
        assert_eq!(reply["body"]["error"]["type"], "auth_invalid", "{got:?}");
    }
    // The token stops working when its run has ended.
    let token = h.host().runs.borrow()[0].callback.clone().unwrap().token;
    let resp = h
        .app
        .handle(HttpRequest {
            method: "POST".into(),
            path: "/v1/formula/invoke".into(),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            body: br#"{"reference": "r:test.child"}"#.to_vec(),
            peer: Some([127, 0, 0, 1].into()),
            scheme: Some("http".into()),
        })
        .await;
    assert_eq!(resp.status, 401);
    let body: Json = serde_json::from_slice(&resp.body).unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has ended"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_token_past_its_formulas_deadline_is_refused() {
    let (h, formula, child) = setup(vec![]).await;
    h.ok(
        ADMIN,
        "policy",
        json!({ "action": "set", "reference": formula, "field": "timeout", "value": "2s" }),
    )
    .await;
    h.host().guest.replace(vec![
        Step::Wait(2_500),
        Step::Invoke(json!({ "reference": child })),
    ]);
    let got = replies(&h, ADMIN, &formula).await;
    assert_eq!(got[0]["status"], 401, "{got:?}");
    assert_eq!(h.host().runs.borrow().len(), 1, "no child started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn tools_need_the_formulas_allowed_tools_and_the_callers_scopes() {
    let (h, formula, _) = setup(vec![
        Step::Tool(json!({ "tool": "component", "action": "search", "args": {} })),
        Step::Tool(json!({ "tool": "key", "action": "create", "args": { "name": "sneaky", "scope": ["execution"] } })),
        Step::Tool(json!({ "tool": "secret", "action": "list" })),
        Step::Tool(json!({ "tool": "teleport", "action": "now" })),
        Step::Tool(json!({ "action": "search" })),
    ])
    .await;
    h.ok(ADMIN, "policy", json!({ "action": "set", "reference": formula, "field": "allowed_tools", "value": ["component.*", "key.create"] })).await;
    // The caller may search components but not create keys.
    let key = h
        .key("caller", &["execution", "component.search"], json!({}))
        .await;
    let got = replies(&h, &key, &formula).await;
    let kinds: Vec<&str> = got
        .iter()
        .map(|r| {
            r["body"]["error"]["type"]
                .as_str()
                .unwrap_or(r["body"]["status"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ok",
            "tool_denied",
            "tool_denied",
            "tool_not_found",
            "invalid_request"
        ],
        "{got:?}"
    );
    let keys = h.ok(ADMIN, "key", json!({ "action": "list" })).await;
    assert!(!keys.to_string().contains("sneaky"), "{keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn formulas_nest_at_most_four_levels() {
    let (h, formula, _) = setup(vec![]).await;
    h.host().guest.replace(vec![Step::Invoke(
        json!({ "reference": formula, "type": "formula" }),
    )]);
    let r = h
        .ok(
            ADMIN,
            "execution",
            json!({ "action": "run", "reference": formula }),
        )
        .await;
    // Depths 0..=4 reached the host; the fifth level was refused before it.
    assert_eq!(h.host().runs.borrow().len(), 5);
    let mut reply = &r["result"][0]["body"];
    for _ in 0..4 {
        assert_eq!(reply["status"], "completed", "{r}");
        reply = &reply["output"][0]["body"];
    }
    assert_eq!(reply["error"]["type"], "depth_exceeded", "{r}");
    let listed = h.ok(ADMIN, "execution", json!({ "action": "list" })).await;
    let failed = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "failed")
        .count();
    assert_eq!(failed, 1, "the refused level is recorded: {listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn callbacks_count_against_the_callers_key() {
    let (h, formula, child) = setup(vec![]).await;
    let invoke = Step::Invoke(json!({ "reference": child }));
    h.host()
        .guest
        .replace(vec![invoke.clone(), invoke.clone(), invoke]);
    // The run itself takes one request; each invoke another.
    let key = h
        .key("budget", &["execution"], json!({ "rate_limit": "3/1m" }))
        .await;
    let got = replies(&h, &key, &formula).await;
    let kinds: Vec<&str> = got
        .iter()
        .map(|r| {
            r["body"]["error"]["type"]
                .as_str()
                .unwrap_or(r["body"]["status"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(kinds, ["completed", "completed", "rate_limited"], "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_formula_cancelled_mid_run_stops_on_its_host() {
    let (h, formula, child) = setup(vec![]).await;
    h.ok(ADMIN, "policy", json!({ "action": "set", "reference": formula, "field": "allowed_tools", "value": ["execution.cancel"] })).await;
    h.host().cancel_finds.set(true);
    h.host().guest.replace(vec![
        Step::Tool(json!({ "tool": "execution", "action": "cancel", "args": { "execution_id": "$EXEC_ID" } })),
        // Its token died with the cancel: no child starts.
        Step::Invoke(json!({ "reference": child })),
    ]);
    let got = replies(&h, ADMIN, &formula).await;
    assert_eq!(got[0]["body"]["result"]["cancelled"], true, "{got:?}");
    assert_eq!(got[1]["status"], 401, "{got:?}");
    let id = h.host().runs.borrow()[0].execution_id.clone();
    assert_eq!(*h.host().cancels.borrow(), [id]);
    assert_eq!(h.host().runs.borrow().len(), 1);
    // A run of another caller cannot be cancelled by a key that does not own it.
    let other = h.key("other", &["execution"], json!({})).await;
    let r = h
        .call(
            &other,
            "execution",
            json!({ "action": "cancel", "execution_id": "exec_nope" }),
        )
        .await;
    assert_eq!(crate::support::tool_error_code(&r), -32602, "{r}");
}

const CLAUDE: &str = "catalyst:local.claude:0.1.0";

/// A formula allowed to search, and the catalyst `local.claude` it looks for.
async fn agent_setup(guest: Vec<Step>) -> (Harness, String) {
    let h = Harness::new().await;
    let formula = h.register("formula", "local.agent", "0.1.0").await;
    h.register("catalyst", "local.claude", "0.1.0").await;
    h.register("reagent", "local.other", "0.1.0").await;
    h.ok(ADMIN, "policy", json!({ "action": "update_field", "component_ref": formula, "field": "allowed_tools", "value": "[\"component.search\"]" })).await;
    h.ok(ADMIN, "policy", json!({ "action": "update_field", "component_ref": CLAUDE, "field": "allowed_domains", "value": "api.anthropic.com" })).await;
    h.host().guest.replace(guest);
    (h, formula)
}

/// What CYFR's `agent` formula does with a search answer: the row whose `name` is the
/// provider, made into `catalyst:{publisher}.{name}:{version}` and invoked.
fn invoke_found_claude(replies: &[Json]) -> Option<Json> {
    let rows = replies.last()?["body"]["result"]["components"].as_array()?;
    let c = rows.iter().find(|c| c["name"] == "claude")?;
    let r = format!(
        "catalyst:{}.{}:{}",
        c["publisher"].as_str()?,
        c["name"].as_str()?,
        c["version"].as_str()?
    );
    Some(json!({ "reference": r, "input": { "prompt": "hi" }, "type": "catalyst" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_formula_finds_its_catalyst_by_search_name_and_invokes_it() {
    let (h, formula) = agent_setup(vec![
        Step::Tool(json!({ "tool": "component", "action": "search", "args": { "query": "claude", "type": "catalyst" } })),
        Step::InvokeFrom(invoke_found_claude),
    ])
    .await;
    let got = replies(&h, ADMIN, &formula).await;
    assert_eq!(got.len(), 2, "the guest found its catalyst: {got:?}");
    assert_eq!(got[1]["status"], 200, "{got:?}");
    assert_eq!(got[1]["body"]["status"], "completed", "{got:?}");
    let runs = h.host().runs.borrow();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].reference, CLAUDE);
    assert_eq!(runs[1].input, r#"{"prompt":"hi"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_formula_invokes_a_sibling_by_its_local_path_and_nothing_outside_the_layout() {
    let (h, formula) = agent_setup(vec![
        Step::Invoke(json!({ "reference": { "local": "components/catalysts/local/claude/0.1.0/catalyst.wasm" }, "input": {} })),
        Step::Invoke(json!({ "reference": { "local": "components/catalysts/local/claude/0.1.0/../../../../../../../etc/passwd" }, "input": {} })),
        Step::Invoke(json!({ "reference": { "local": "/etc/shadow" }, "input": {} })),
    ])
    .await;
    let got = replies(&h, ADMIN, &formula).await;
    assert_eq!(got[0]["body"]["status"], "completed", "{got:?}");
    for refused in &got[1..] {
        assert_eq!(
            refused["body"]["error"]["type"], "component_not_found",
            "{got:?}"
        );
        assert!(
            refused["body"]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("components/{type}s")
                || refused["body"]["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("`..`"),
            "{got:?}"
        );
    }
    let runs = h.host().runs.borrow();
    assert_eq!(runs.len(), 2, "only the formula and its sibling ran");
    assert_eq!(runs[1].reference, CLAUDE);
}
