//! Missing or mistyped arguments are -32602, per tool, answered as a tool error the caller
//! can read and fix (or as a JSON-RPC error when the tool itself does not exist).

use crate::support::{Harness, ADMIN};
use serde_json::{json, Value as Json};

/// The -32602 of either form, or the response when it is not one.
fn invalid_params(r: &Json) -> Result<(), String> {
    let tool_error = r["result"]["isError"] == json!(true)
        && r["result"]["structuredContent"]["error"]["code"] == json!(-32602);
    let rpc_error = r["error"]["code"] == json!(-32602);
    if tool_error || rpc_error {
        Ok(())
    } else {
        Err(r.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn bad_arguments_are_invalid_params_for_every_tool() {
    let h = Harness::new().await;
    let reagent = h.register("reagent", "test.args", "0.1.0").await;
    let cases: Vec<(&str, Json)> = vec![
        // The tool layer: unknown tool, missing or unknown action, arguments not an object.
        ("nope", json!({})),
        ("execution", json!({})),
        ("execution", json!({ "action": "explode" })),
        // execution
        ("execution", json!({ "action": "run" })),
        ("execution", json!({ "action": "run", "reference": 5 })),
        (
            "execution",
            json!({ "action": "run", "reference": reagent, "type": "gadget" }),
        ),
        ("execution", json!({ "action": "logs" })),
        ("execution", json!({ "action": "logs", "execution_id": 7 })),
        (
            "execution",
            json!({ "action": "logs", "execution_id": "exec_missing" }),
        ),
        ("execution", json!({ "action": "cancel" })),
        (
            "execution",
            json!({ "action": "cancel", "execution_id": ["x"] }),
        ),
        // component
        ("component", json!({ "action": "search", "query": 5 })),
        ("component", json!({ "action": "search", "type": "gadget" })),
        ("component", json!({ "action": "inspect" })),
        ("component", json!({ "action": "inspect", "reference": 1 })),
        ("component", json!({ "action": "resolve" })),
        ("component", json!({ "action": "register" })),
        (
            "component",
            json!({ "action": "register", "manifest": {"id": "reagent:a.b", "type": "reagent", "version": "1.0.0"} }),
        ),
        // key
        ("key", json!({ "action": "create" })),
        (
            "key",
            json!({ "action": "create", "name": "k", "type": "root", "scope": ["execution"] }),
        ),
        (
            "key",
            json!({ "action": "create", "name": "k", "scope": ["everything"] }),
        ),
        (
            "key",
            json!({ "action": "create", "name": "k", "scope": 5 }),
        ),
        (
            "key",
            json!({ "action": "create", "name": "k", "scope": ["execution"], "rate_limit": "lots" }),
        ),
        ("key", json!({ "action": "get" })),
        ("key", json!({ "action": "revoke" })),
        ("key", json!({ "action": "revoke", "name": "nobody" })),
        ("key", json!({ "action": "rotate", "id": 5 })),
        // policy
        ("policy", json!({ "action": "get" })),
        ("policy", json!({ "action": "set", "reference": reagent })),
        (
            "policy",
            json!({ "action": "set", "reference": reagent, "field": "colour", "value": "red" }),
        ),
        (
            "policy",
            json!({ "action": "set", "reference": reagent, "field": "timeout", "value": "soon" }),
        ),
        ("policy", json!({ "action": "delete" })),
        ("policy", json!({ "action": "get_effective" })),
        (
            "policy",
            json!({ "action": "update_field", "reference": reagent }),
        ),
        (
            "policy",
            json!({ "action": "update_field", "reference": reagent, "field": "timeout", "value": 5 }),
        ),
        // secret
        ("secret", json!({ "action": "set" })),
        ("secret", json!({ "action": "set", "name": "A" })),
        (
            "secret",
            json!({ "action": "set", "name": "A", "value": 5 }),
        ),
        (
            "secret",
            json!({ "action": "set", "name": "A", "value": "v", "scope": "team" }),
        ),
        (
            "secret",
            json!({ "action": "set", "name": "A", "value": "v", "ttl": "forever" }),
        ),
        ("secret", json!({ "action": "get" })),
        ("secret", json!({ "action": "get", "name": "MISSING" })),
        ("secret", json!({ "action": "grant", "name": "A" })),
        ("secret", json!({ "action": "can_access" })),
        ("secret", json!({ "action": "delete" })),
        ("secret", json!({ "action": "list", "scope": "team" })),
        ("secret", json!({ "action": "revoke", "name": "A" })),
        ("secret", json!({ "action": "clear", "scope": "team" })),
        // get_encryption_instructions: not offered without session encryption
        ("get_encryption_instructions", json!({})),
    ];
    let mut wrong = Vec::new();
    for (tool, args) in &cases {
        let r = h.call(ADMIN, tool, args.clone()).await;
        if let Err(r) = invalid_params(&r) {
            wrong.push(format!("{tool} {args} -> {r}"));
        }
    }
    assert!(wrong.is_empty(), "not -32602:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn malformed_json_rpc_is_refused_before_any_tool() {
    let h = Harness::new().await;
    let (status, r) = h.post(Some(ADMIN), json!([{ "jsonrpc": "2.0" }])).await;
    assert_eq!(
        (status, r["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{r}"
    );
    let (status, r) = h
        .post(
            Some(ADMIN),
            json!({ "jsonrpc": "1.0", "id": 1, "method": "ping" }),
        )
        .await;
    assert_eq!(
        (status, r["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{r}"
    );
    let r = h.rpc(Some(ADMIN), "tools/explode", json!({})).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let r = h
        .rpc(
            Some(ADMIN),
            "tools/call",
            json!({ "name": "system", "arguments": [1] }),
        )
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
}
