//! Every action in the scope table refuses a key without its scope, and admits one with it.

use crate::support::{code, Harness, ADMIN};
use cyfr_core::scopes::{Need, SCOPES, TABLE};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_action_refuses_a_key_missing_a_scope_it_needs() {
    let h = Harness::new().await;
    let mut checked = 0;
    for (tool, action, need) in TABLE {
        // For each scope the action needs, a key holding every other scope there is.
        let missing: Vec<Option<&str>> = match need {
            Need::Anyone | Need::Authenticated => continue,
            // A non-admin key holding every scope is still not an admin.
            Need::Admin => vec![None],
            Need::Scopes(req) => req.iter().copied().map(Some).collect(),
        };
        for m in missing {
            let held: Vec<&str> = SCOPES.iter().copied().filter(|s| Some(*s) != m).collect();
            let key = h.key(&format!("all-but-{checked}"), &held, json!({})).await;
            let r = h.call(&key, tool, json!({ "action": action })).await;
            assert_eq!(code(&r), -33004, "{tool}.{action} without {m:?}: {r}");
            let message = r["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.starts_with(&format!("{tool}.{action} needs")),
                "{r}"
            );
            checked += 1;
        }
    }
    let scoped = TABLE
        .iter()
        .filter(|(_, _, n)| !matches!(n, Need::Anyone | Need::Authenticated))
        .count();
    assert!(checked >= scoped, "checked {checked} of {scoped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_action_admits_a_key_holding_just_what_it_needs() {
    let h = Harness::new().await;
    for (i, (tool, action, need)) in TABLE.iter().enumerate() {
        let key = match need {
            Need::Admin => ADMIN.to_string(),
            // Any scope at all will do.
            Need::Anyone | Need::Authenticated => {
                h.key(&format!("any-{i}"), &["audit.list"], json!({})).await
            }
            Need::Scopes(req) => h.key(&format!("just-{i}"), req, json!({})).await,
        };
        let r = h.call(&key, tool, json!({ "action": action })).await;
        let refused_for_scope = r["error"]["code"] == json!(-33004)
            && r["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("{tool}.{action} needs")));
        assert!(!refused_for_scope, "{tool}.{action} with {need:?}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn calls_without_a_valid_key_are_refused_before_any_tool() {
    let h = Harness::new().await;
    let (status, r) = h
        .post(
            None,
            json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "system", "arguments": {} } }),
        )
        .await;
    assert_eq!((status, code(&r)), (401, -33001), "{r}");
    let r = h
        .call(
            "cyfr_sk_notakeynotakeynotakeynotakey00",
            "system",
            json!({}),
        )
        .await;
    assert_eq!(code(&r), -33002, "{r}");
    let r = h.call("not-a-key", "system", json!({})).await;
    assert_eq!(code(&r), -33002, "{r}");
}
