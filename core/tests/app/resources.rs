//! Runs and components as MCP resources, and completion of their references: each read is
//! the tool action it stands for, within the caller's scopes and 2 round trips.

use crate::support::{code, completed, fake_wasm, manifest, Harness, ADMIN};
use base64::Engine;
use serde_json::{json, Value as Json};

/// `resources/read` of `uri` by `key`, and the round trips it cost.
async fn read(h: &Harness, key: Option<&str>, uri: &str) -> (Json, usize) {
    h.app.db.inner().reset();
    let r = h.rpc(key, "resources/read", json!({ "uri": uri })).await;
    (r, h.app.db.inner().trips().len())
}

fn text(r: &Json) -> &str {
    r["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no contents: {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_run_is_a_resource_of_its_caller_only() {
    let h = Harness::new().await;
    let templates = h
        .rpc(Some(ADMIN), "resources/templates/list", json!({}))
        .await;
    let uris: Vec<&str> = templates["result"]["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uriTemplate"].as_str().unwrap())
        .collect();
    assert!(
        uris.contains(&"cyfr://executions/{execution_id}"),
        "{templates}"
    );
    let reference = h.register("reagent", "acme.sum", "0.1.0").await;
    let alice = h.key("alice", &["execution"], json!({})).await;
    let bob = h.key("bob", &["execution"], json!({})).await;
    h.host().answer(Ok(completed(json!({ "sum": 6 }))));
    let run = h
        .ok(
            &alice,
            "execution",
            json!({ "action": "run", "reference": reference }),
        )
        .await;
    let uri = format!(
        "cyfr://executions/{}",
        run["execution_id"].as_str().unwrap()
    );
    let (r, trips) = read(&h, Some(&alice), &uri).await;
    assert!(trips <= 2, "{trips} round trips");
    let record: Json = serde_json::from_str(text(&r)).unwrap();
    assert_eq!(record["status"], "completed", "{r}");
    assert_eq!(record["reference"], reference);
    assert_eq!(r["result"]["contents"][0]["uri"], uri);
    // Another key's run does not exist for it; no credentials, no resource.
    let (r, _) = read(&h, Some(&bob), &uri).await;
    assert_eq!(code(&r), -32602, "{r}");
    let (r, _) = read(&h, None, &uri).await;
    assert_eq!(code(&r), -33001, "{r}");
    // Completion offers the caller's own runs.
    let c = h
        .rpc(
            Some(&alice),
            "completion/complete",
            json!({ "ref": { "type": "ref/resource", "uri": "cyfr://executions/{execution_id}" }, "argument": { "name": "execution_id", "value": "exec" } }),
        )
        .await;
    assert_eq!(
        c["result"]["completion"]["values"],
        json!([run["execution_id"]]),
        "{c}"
    );
    let c = h
        .rpc(
            Some(&bob),
            "completion/complete",
            json!({ "ref": { "type": "ref/resource", "uri": "cyfr://executions/{execution_id}" }, "argument": { "name": "execution_id", "value": "" } }),
        )
        .await;
    assert_eq!(c["result"]["completion"]["values"], json!([]), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_components_manifest_and_readme_are_resources_within_the_callers_scopes() {
    let h = Harness::new().await;
    let m = manifest("reagent", "acme.doc", "0.1.0");
    let wasm = base64::engine::general_purpose::STANDARD.encode(fake_wasm("acme.doc"));
    h.ok(
        ADMIN,
        "component",
        json!({ "action": "register", "manifest": m, "wasm": wasm, "readme": "# acme.doc\nHow to use it.\n" }),
    )
    .await;
    let base = "cyfr://components/reagent:acme.doc:0.1.0";
    let (r, trips) = read(&h, Some(ADMIN), &format!("{base}/manifest")).await;
    assert!(trips <= 2, "{trips} round trips");
    assert_eq!(serde_json::from_str::<Json>(text(&r)).unwrap(), m, "{r}");
    let (r, trips) = read(&h, Some(ADMIN), &format!("{base}/readme")).await;
    assert!(trips <= 2, "{trips} round trips");
    assert_eq!(text(&r), "# acme.doc\nHow to use it.\n");
    assert_eq!(r["result"]["contents"][0]["mimeType"], "text/markdown");
    // component.info is what inspect and readme need.
    let runner = h.key("runner", &["execution"], json!({})).await;
    let (r, _) = read(&h, Some(&runner), &format!("{base}/manifest")).await;
    assert_eq!(code(&r), -33004, "{r}");
    let (r, _) = read(
        &h,
        Some(ADMIN),
        "cyfr://components/reagent:acme.none:0.1.0/manifest",
    )
    .await;
    assert_eq!(code(&r), -33200, "{r}");
    // References complete from what is registered, typed or not.
    for typed in ["acme.d", "reagent:acme.d", "reagent:acme.doc:0"] {
        let c = h
            .rpc(
                Some(ADMIN),
                "completion/complete",
                json!({ "ref": { "type": "ref/resource", "uri": "cyfr://components/{reference}/manifest" }, "argument": { "name": "reference", "value": typed } }),
            )
            .await;
        assert_eq!(
            c["result"]["completion"]["values"],
            json!(["reagent:acme.doc:0.1.0"]),
            "{typed}: {c}"
        );
    }
    let searcher = h.key("s", &["execution"], json!({})).await;
    let c = h
        .rpc(
            Some(&searcher),
            "completion/complete",
            json!({ "ref": { "type": "ref/resource", "uri": "cyfr://components/{reference}/manifest" }, "argument": { "name": "reference", "value": "acme" } }),
        )
        .await;
    assert_eq!(code(&c), -33004, "component.search is needed: {c}");
}
