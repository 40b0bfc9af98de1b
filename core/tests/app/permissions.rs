//! The `permission` tool: what users (the `sub` of a JWT) are granted. A user holds only
//! what its token carries and what it was granted — never admin by default — and a caller
//! grants only what it holds.

use crate::support::{code, tool_error_code, Harness, ADMIN};
use cyfr_core::config::Config;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const KEY: &str = "a-shared-jwt-signing-key-of-32-bytes-or-more";

async fn harness() -> Harness {
    Harness::with(|c| {
        c.jwt_key = Config::from_lookup(|n| (n == "jwt_signing_key").then(|| KEY.to_string()))
            .unwrap()
            .jwt_key;
    })
    .await
}

fn token(sub: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": sub }),
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_user_without_grants_can_do_nothing_until_granted() {
    let h = harness().await;
    let alice = token("alice");
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "set", "name": "API_TOKEN", "value": "sk-live-123456" }),
    )
    .await;
    for (tool, args) in [
        (
            "key",
            json!({ "action": "create", "name": "mine", "scope": ["execution"] }),
        ),
        ("secret", json!({ "action": "get", "name": "API_TOKEN" })),
        ("secret", json!({ "action": "list" })),
        (
            "permission",
            json!({ "action": "set", "subject": "alice", "permissions": ["*"] }),
        ),
    ] {
        let r = h.call(&alice, tool, args.clone()).await;
        assert_eq!(code(&r), -33004, "{tool} {args}: {r}");
    }
    let set = h
        .ok(ADMIN, "permission", json!({ "action": "set", "subject": "alice", "permissions": ["component.*", "key.create", "execution"] }))
        .await;
    assert_eq!(
        set,
        json!({ "updated": true, "subject": "alice", "permissions": ["component.*", "key.create", "execution"] })
    );
    // The grant takes effect on the next request.
    h.ok(&alice, "component", json!({ "action": "search" }))
        .await;
    h.ok(
        &alice,
        "key",
        json!({ "action": "create", "name": "mine", "scope": ["execution"] }),
    )
    .await
    .get("key")
    .unwrap();
    // Still no secrets.
    let r = h
        .call(
            &alice,
            "secret",
            json!({ "action": "get", "name": "API_TOKEN" }),
        )
        .await;
    assert_eq!(code(&r), -33004, "{r}");
    let got = h
        .ok(
            ADMIN,
            "permission",
            json!({ "action": "get", "subject": "alice" }),
        )
        .await;
    assert_eq!(
        got["permissions"],
        json!(["component.*", "key.create", "execution"])
    );
    let listed = h.ok(ADMIN, "permission", json!({ "action": "list" })).await;
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["permissions"][0]["subject"], "alice");
    // An unknown subject holds nothing.
    let got = h
        .ok(
            ADMIN,
            "permission",
            json!({ "action": "get", "subject": "nobody" }),
        )
        .await;
    assert_eq!(got["permissions"], json!([]));
    // Revoking everything ends it.
    h.ok(
        ADMIN,
        "permission",
        json!({ "action": "set", "subject": "alice", "permissions": [] }),
    )
    .await;
    let r = h
        .call(&alice, "component", json!({ "action": "search" }))
        .await;
    assert_eq!(code(&r), -33004, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_granter_hands_out_only_what_it_holds_and_bad_input_changes_nothing() {
    let h = harness().await;
    let granter = h
        .key(
            "granter",
            &["permission.set", "permission.get", "execution"],
            json!({}),
        )
        .await;
    h.ok(
        &granter,
        "permission",
        json!({ "action": "set", "subject": "bob", "permissions": ["execution"] }),
    )
    .await;
    for perms in [json!(["*"]), json!(["secret.get"]), json!(["secret.*"])] {
        let r = h
            .call(
                &granter,
                "permission",
                json!({ "action": "set", "subject": "bob", "permissions": perms }),
            )
            .await;
        assert_eq!(code(&r), -33004, "{perms}: {r}");
    }
    for args in [
        json!({ "action": "set", "subject": "bob", "permissions": ["users_manage"] }),
        json!({ "action": "set", "subject": "bob" }),
        json!({ "action": "set", "permissions": ["execution"] }),
        json!({ "action": "get" }),
    ] {
        let r = h.call(ADMIN, "permission", args.clone()).await;
        assert_eq!(tool_error_code(&r), -32602, "{args}: {r}");
    }
    let got = h
        .ok(
            &granter,
            "permission",
            json!({ "action": "get", "subject": "bob" }),
        )
        .await;
    assert_eq!(got["permissions"], json!(["execution"]), "{got}");
}
