//! `cyfr host`'s token checks, over real HTTP on loopback.

use cyfr_core::host_api::HostClaims;
use cyfr_host::executor::Executor;
use cyfr_host::host_server::{HostKey, HostServer};
use cyfr_host::service::HostApi;
use std::sync::Arc;

const KEY: &str = "a-host-token-key-for-tests-0123456789";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const BODY: &str = "not the right bytes";

fn artifact_path() -> String {
    format!("/v1/artifacts/sha256:{}", "0".repeat(64))
}

/// A token for `put`'s request.
fn token(aud: &str, jti: &str, iat: u64, exp: u64, key: &str) -> String {
    signed(
        aud,
        jti,
        iat,
        exp,
        key,
        &HostClaims::binding("PUT", &artifact_path(), BODY.as_bytes()),
    )
}

fn signed(aud: &str, jti: &str, iat: u64, exp: u64, key: &str, req: &str) -> String {
    let claims = HostClaims {
        aud: aud.into(),
        exp,
        iat,
        jti: jti.into(),
        req: req.into(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

async fn start(tag: &str) -> (String, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("cyfr-host-server-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = HostKey::load_or_create(&dir).unwrap();
    let aud = key.audience();
    let api = HostApi::new(
        Arc::new(Executor::new(&dir.join("cache")).unwrap()),
        dir.clone(),
    );
    let server = Arc::new(HostServer::new(api, key, KEY.into()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, std::future::pending()));
    (url, aud, dir)
}

async fn put(url: &str, token: Option<&str>) -> u16 {
    put_body(url, token, BODY).await
}

async fn put_body(url: &str, token: Option<&str>, body: &str) -> u16 {
    let client = reqwest::Client::new();
    let mut req = client
        .put(format!("{url}{}", artifact_path()))
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn tokens_must_be_fresh_for_this_host_signed_with_the_shared_key_and_used_once() {
    let (url, aud, dir) = start("tokens").await;
    let t = now();
    // Past the token check, the wrong digest is refused: 400 means the token was accepted.
    let good = token(&aud, "jti-1", t, t + 30, KEY);
    assert_eq!(put(&url, Some(&good)).await, 400);
    assert_eq!(
        put(&url, Some(&good)).await,
        401,
        "a replayed token was accepted"
    );
    assert_eq!(put(&url, None).await, 401);
    assert_eq!(
        put(&url, Some(&token("another-host", "jti-2", t, t + 30, KEY))).await,
        401,
        "wrong audience"
    );
    assert_eq!(
        put(&url, Some(&token(&aud, "jti-3", t - 120, t - 60, KEY))).await,
        401,
        "expired"
    );
    assert_eq!(
        put(&url, Some(&token(&aud, "jti-4", t, t + 3600, KEY))).await,
        401,
        "lifetime too long"
    );
    assert_eq!(
        put(
            &url,
            Some(&token(
                &aud,
                "jti-5",
                t,
                t + 30,
                "some-other-key-0123456789abcdefghij"
            ))
        )
        .await,
        401,
        "wrong key"
    );
    assert_eq!(
        put(&url, Some(&token(&aud, "jti-6", t, t + 30, KEY))).await,
        400
    );
    // A token is good for the one request it was signed for: not another body, path or method.
    assert_eq!(
        put_body(
            &url,
            Some(&token(&aud, "jti-7", t, t + 30, KEY)),
            "other bytes"
        )
        .await,
        401,
        "body swapped"
    );
    let for_run = signed(
        &aud,
        "jti-8",
        t,
        t + 30,
        KEY,
        &HostClaims::binding("POST", "/v1/executions", BODY.as_bytes()),
    );
    assert_eq!(
        put(&url, Some(&for_run)).await,
        401,
        "a run's token used for an upload"
    );
    let lower = signed(
        &aud,
        "jti-9",
        t,
        t + 30,
        KEY,
        &HostClaims::binding("put", &artifact_path(), BODY.as_bytes()),
    );
    assert_eq!(
        put(&url, Some(&lower)).await,
        400,
        "the method is compared upper-cased"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn secrets_sealed_to_another_host_are_refused() {
    let (url, aud, dir) = start("sealed").await;
    let other = crypto_box::SecretKey::from([9u8; 32]).public_key();
    let sealed = other
        .seal(&mut crypto_box::aead::OsRng, br#"{"A":"b"}"#)
        .unwrap();
    use base64::Engine;
    let run = serde_json::json!({
        "execution_id": "exec_1", "digest": format!("sha256:{}", "0".repeat(64)), "component_type": "reagent", "input": "{}",
        "limits": {"timeout_ms": 1000, "max_memory_bytes": 1048576, "max_input_bytes": 100, "max_output_bytes": 100},
        "sealed_secrets": base64::engine::general_purpose::STANDARD.encode(sealed),
    });
    let t = now();
    let body = run.to_string();
    let auth = signed(
        &aud,
        "exec_1",
        t,
        t + 30,
        KEY,
        &HostClaims::binding("POST", "/v1/executions", body.as_bytes()),
    );
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/executions"))
        .bearer_auth(auth)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("not sealed to this host"));
    let _ = std::fs::remove_dir_all(dir);
}
