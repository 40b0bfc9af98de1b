//! JWT bearers (seed 000's claims): verified under `jwt_signing_key`, HS256/384/512 only,
//! and then the same gate as API keys — scopes, rate limit per `sub`, session binding.

use crate::support::{code, Harness, ADMIN, START_MS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use cyfr_core::config::Config;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value as Json};

const KEY: &str = "a-shared-jwt-signing-key-of-32-bytes-or-more";
const NOW_S: u64 = START_MS / 1000;

async fn harness(rate: Option<&str>) -> Harness {
    Harness::with(|c| {
        let vars = Config::from_lookup(|n| match n {
            "jwt_signing_key" => Some(KEY.to_string()),
            "user_rate_limit" => rate.map(String::from),
            _ => None,
        })
        .unwrap();
        c.jwt_key = vars.jwt_key;
        c.user_rate_limit = vars.user_rate_limit;
    })
    .await
}

fn token_with(alg: Algorithm, claims: Json, key: &str) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn token(claims: Json) -> String {
    token_with(Algorithm::HS256, claims, KEY)
}

/// A token with a header of our own making, signed (HS256) with the right key anyway.
fn forged(header: Json, claims: Json, signature: Option<&[u8]>) -> String {
    use hmac::{Hmac, Mac};
    let msg = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = match signature {
        Some(s) => s.to_vec(),
        None => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
            m.update(msg.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
    };
    format!("{msg}.{}", B64.encode(sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_jwt_acts_with_its_permissions_and_nothing_more() {
    let h = harness(None).await;
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let t = token_with(
            alg,
            json!({ "sub": "alice", "permissions": ["component.search"], "exp": NOW_S + 600 }),
            KEY,
        );
        h.ok(&t, "component", json!({ "action": "search" })).await;
        // Not granted: refused like a key without the scope.
        let r = h
            .call(
                &t,
                "key",
                json!({ "action": "create", "name": "x", "scope": ["execution"] }),
            )
            .await;
        assert_eq!(code(&r), -33004, "{alg:?}: {r}");
        let r = h.call(&t, "secret", json!({ "action": "list" })).await;
        assert_eq!(code(&r), -33004, "{alg:?}: {r}");
    }
    // Unknown permission strings give nothing; a wildcard covers its tool.
    let t = token(json!({ "sub": "bob", "permissions": ["users_manage", "component.*"] }));
    h.ok(&t, "component", json!({ "action": "search" })).await;
    let r = h.call(&t, "key", json!({ "action": "list" })).await;
    assert_eq!(code(&r), -33004, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_refusal_of_the_guide_has_its_code() {
    let h = harness(None).await;
    let good = json!({ "sub": "alice", "permissions": ["component.search"] });
    let search = json!({ "action": "search" });
    let cases: Vec<(&str, String, i64)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
                B64.encode(good.to_string())
            ),
            -33002,
        ),
        (
            "RS256 header, HMAC under the shared key",
            forged(json!({ "alg": "RS256", "typ": "JWT" }), good.clone(), None),
            -33002,
        ),
        (
            "ES256 header",
            forged(json!({ "alg": "ES256", "typ": "JWT" }), good.clone(), None),
            -33002,
        ),
        (
            "wrong key",
            token_with(
                Algorithm::HS256,
                good.clone(),
                "another-key-another-key-another-key!!",
            ),
            -33002,
        ),
        (
            "tampered claims",
            {
                let t = token(good.clone());
                let mut parts: Vec<String> = t.split('.').map(String::from).collect();
                parts[1] = B64.encode(json!({ "sub": "alice", "permissions": ["*"] }).to_string());
                parts.join(".")
            },
            -33002,
        ),
        (
            "missing sub",
            token(json!({ "permissions": ["component.search"] })),
            -33002,
        ),
        ("empty sub", token(json!({ "sub": "" })), -33002),
        (
            "future nbf",
            token(json!({ "sub": "alice", "nbf": NOW_S + 3600 })),
            -33002,
        ),
        (
            "bad scope claim",
            token(json!({ "sub": "alice", "scope": "everything" })),
            -33002,
        ),
        (
            "expired beyond the skew",
            token(json!({ "sub": "alice", "exp": NOW_S - 61 })),
            -33003,
        ),
    ];
    for (what, t, want) in cases {
        let r = h.call(&t, "component", search.clone()).await;
        assert_eq!(code(&r), want, "{what}: {r}");
    }
    // Within the default skew of 60 s, an expired or not-yet-valid token still passes.
    for claims in [
        json!({ "sub": "alice", "permissions": ["component.search"], "exp": NOW_S - 30 }),
        json!({ "sub": "alice", "permissions": ["component.search"], "nbf": NOW_S + 30 }),
    ] {
        h.ok(&token(claims), "component", search.clone()).await;
    }
    // The clock moves: a token good a moment ago expires (-33003) on the next request.
    let t =
        token(json!({ "sub": "alice", "permissions": ["component.search"], "exp": NOW_S + 10 }));
    h.ok(&t, "component", search.clone()).await;
    h.env().advance(71_000);
    assert_eq!(code(&h.call(&t, "component", search).await), -33003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn without_a_signing_key_jwts_are_refused() {
    let h = Harness::new().await;
    let t = token(json!({ "sub": "alice", "permissions": ["*"] }));
    let r = h.call(&t, "component", json!({ "action": "search" })).await;
    assert_eq!(code(&r), -33002, "{r}");
}

#[test]
fn the_signing_key_and_skew_are_checked_at_start() {
    let with = |k: &'static str, v: &'static str| {
        Config::from_lookup(move |n| (n == k).then(|| v.to_string()))
    };
    assert!(with("jwt_signing_key", "too-short").is_err());
    assert!(with("jwt_signing_key", KEY).is_ok());
    assert!(with("jwt_clock_skew_seconds", "301").is_err());
    assert_eq!(
        with("jwt_clock_skew_seconds", "300")
            .unwrap()
            .jwt_clock_skew_s,
        300
    );
    assert_eq!(Config::default().jwt_clock_skew_s, 60);
    // The key never shows in the config's debug output (logs).
    let c = with("jwt_signing_key", KEY).unwrap();
    assert!(!format!("{c:?}").contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_rate_limit_is_per_sub() {
    let h = harness(Some("2/1m")).await;
    let alice = token(json!({ "sub": "alice", "permissions": ["component.search"] }));
    // Another token of the same user draws from the same budget.
    let alice2 =
        token(json!({ "sub": "alice", "permissions": ["component.search"], "org": "acme" }));
    let bob = token(json!({ "sub": "bob", "permissions": ["component.search"] }));
    let search = json!({ "action": "search" });
    h.ok(&alice, "component", search.clone()).await;
    h.ok(&alice2, "component", search.clone()).await;
    let r = h.call(&alice, "component", search.clone()).await;
    assert_eq!(code(&r), -33005, "{r}");
    assert!(r["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 0);
    h.ok(&bob, "component", search).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_session_opened_with_a_jwt_belongs_to_its_user() {
    let h = harness(None).await;
    let alice = token(json!({ "sub": "alice", "permissions": ["component.search"] }));
    let bob = token(json!({ "sub": "bob", "permissions": ["component.search"] }));
    let sid = h.initialize(&alice).await;
    let call = |key: &str| {
        let mut req = crate::support::mcp_request(
            Some(key),
            &json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "component", "arguments": { "action": "search" } } }),
        );
        req.headers.push(("mcp-session-id".into(), sid.clone()));
        req
    };
    let resp = h.app.handle(call(&alice)).await;
    assert_eq!(resp.status, 200);
    // Another user, or an admin key, naming alice's session is told it does not exist.
    assert_eq!(h.app.handle(call(&bob)).await.status, 404);
    assert_eq!(h.app.handle(call(ADMIN)).await.status, 404);
}
