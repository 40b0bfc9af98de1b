//! Signing in with the device flow and cyfr's own verification (an admin approves the user
//! code), then using the session id as a bearer and as `MCP-Session-Id`: only what the user
//! was granted, and logout and expiry take effect on the next request.

use crate::support::{code, mcp_request, tool_error_code, Harness, ADMIN};
use cyfr_core::config::Config;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value as Json};

/// A `tools/call` without credentials, or with `sid` as `MCP-Session-Id`.
async fn call_sid(h: &Harness, sid: Option<&str>, tool: &str, args: Json) -> (u16, Json) {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "arguments": args } });
    let mut req = mcp_request(None, &body);
    if let Some(s) = sid {
        req.headers.push(("mcp-session-id".into(), s.into()));
    }
    let resp = h.app.handle(req).await;
    (
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Json::Null),
    )
}

fn result(r: &Json) -> Json {
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(r["result"]["isError"], false, "{r}");
    r["result"]["structuredContent"].clone()
}

/// Runs the whole flow for `user`; the session id.
async fn login(h: &Harness, user: &str) -> String {
    let (_, r) = call_sid(h, None, "session", json!({ "action": "device-init" })).await;
    let init = result(&r);
    assert_eq!(init["interval"], 5);
    assert_eq!(init["expires_in"], 900);
    assert!(init["verification_uri"]
        .as_str()
        .unwrap()
        .ends_with("/auth/device"));
    let device_code = init["device_code"].as_str().unwrap().to_string();
    let poll = json!({ "action": "device-poll", "device_code": device_code });
    let (_, r) = call_sid(h, None, "session", poll.clone()).await;
    assert_eq!(result(&r), json!({ "status": "pending" }));
    let (_, r) = call_sid(h, None, "session", poll.clone()).await;
    assert_eq!(
        result(&r),
        json!({ "status": "pending", "slow_down": true })
    );
    h.ok(ADMIN, "session", json!({ "action": "approve", "user_code": init["user_code"], "user": user, "email": format!("{user}@example.com") }))
        .await;
    h.env().advance(5_000);
    let (_, r) = call_sid(h, None, "session", poll.clone()).await;
    let done = result(&r);
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["user"]["id"], user);
    assert_eq!(done["user"]["email"], format!("{user}@example.com"));
    // Spent: the code yields no second session.
    let (_, r) = call_sid(h, None, "session", poll).await;
    assert_eq!(result(&r), json!({ "status": "expired" }));
    done["session_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_device_flow_user_holds_only_what_it_was_granted() {
    let h = Harness::new().await;
    h.ok(
        ADMIN,
        "secret",
        json!({ "action": "set", "name": "API_TOKEN", "value": "sk-live-abcdef123456" }),
    )
    .await;
    let sid = login(&h, "alice").await;
    // As a bearer and as MCP-Session-Id, the same user.
    let who = h.ok(&sid, "session", json!({ "action": "whoami" })).await;
    assert_eq!(who["user_id"], "alice", "{who}");
    assert_eq!(
        who["permissions"],
        json!([]),
        "never admin by default: {who}"
    );
    let (status, r) = call_sid(&h, Some(&sid), "session", json!({ "action": "whoami" })).await;
    assert_eq!(
        (status, result(&r)["user_id"].clone()),
        (200, json!("alice"))
    );
    for (tool, args) in [
        (
            "key",
            json!({ "action": "create", "name": "mine", "scope": ["execution"] }),
        ),
        ("secret", json!({ "action": "get", "name": "API_TOKEN" })),
        ("secret", json!({ "action": "list" })),
        ("audit", json!({ "action": "list" })),
    ] {
        assert_eq!(
            code(&h.call(&sid, tool, args.clone()).await),
            -33004,
            "{tool} {args}"
        );
        let (_, r) = call_sid(&h, Some(&sid), tool, args.clone()).await;
        assert_eq!(code(&r), -33004, "{tool} {args} by MCP-Session-Id");
    }
    h.ok(ADMIN, "permission", json!({ "action": "set", "subject": "alice", "permissions": ["component.search", "audit.list"] }))
        .await;
    h.ok(&sid, "component", json!({ "action": "search" })).await;
    let who = h.ok(&sid, "session", json!({ "action": "whoami" })).await;
    assert_eq!(
        who["permissions"],
        json!(["audit.list", "component.search"])
    );
    // Its own rows only, by its user id.
    let mine = h.ok(&sid, "audit", json!({ "action": "list" })).await;
    assert!(mine["count"].as_u64().unwrap() >= 1, "{mine}");
    assert!(
        mine["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "alice"),
        "{mine}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn logout_and_expiry_take_effect_on_the_next_request() {
    let h = Harness::new().await;
    let sid = login(&h, "bob").await;
    h.ok(&sid, "session", json!({ "action": "logout" })).await;
    assert_eq!(
        code(&h.call(&sid, "session", json!({ "action": "whoami" })).await),
        -33003
    );
    let (status, r) = call_sid(&h, Some(&sid), "session", json!({ "action": "whoami" })).await;
    assert_eq!((status, code(&r)), (404, -33302), "{r}");

    let sid = login(&h, "carol").await;
    h.env().advance(23 * 3_600_000);
    // Use slides the expiry forward.
    h.ok(&sid, "session", json!({ "action": "whoami" })).await;
    h.env().advance(23 * 3_600_000);
    h.ok(&sid, "session", json!({ "action": "whoami" })).await;
    h.env().advance(24 * 3_600_000 + 1);
    assert_eq!(
        code(&h.call(&sid, "session", json!({ "action": "whoami" })).await),
        -33003
    );
    let (_, r) = call_sid(&h, Some(&sid), "session", json!({ "action": "whoami" })).await;
    assert_eq!(code(&r), -33302);
    // An id that never was: -33002 as a bearer, -33302 as a session.
    assert_eq!(
        code(
            &h.call("no-such-session", "session", json!({ "action": "whoami" }))
                .await
        ),
        -33002
    );
    let (_, r) = call_sid(
        &h,
        Some("no-such-session"),
        "session",
        json!({ "action": "whoami" }),
    )
    .await;
    assert_eq!(code(&r), -33302);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_jwt_naming_a_logged_out_session_is_refused() {
    const KEY: &str = "a-shared-jwt-signing-key-of-32-bytes-or-more";
    let h = Harness::with(|c| {
        c.jwt_key = Config::from_lookup(|n| (n == "jwt_signing_key").then(|| KEY.to_string()))
            .unwrap()
            .jwt_key;
    })
    .await;
    let sid = login(&h, "dave").await;
    let t = encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "dave", "session_id": sid, "permissions": ["component.search"] }),
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    h.ok(&t, "component", json!({ "action": "search" })).await;
    // Logging out with the token itself ends the session it names.
    h.ok(&t, "session", json!({ "action": "logout" })).await;
    assert_eq!(
        code(&h.call(&t, "component", json!({ "action": "search" })).await),
        -33003
    );
    assert_eq!(
        code(&h.call(&sid, "session", json!({ "action": "whoami" })).await),
        -33003
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn denied_expired_and_unconfigured_codes() {
    let h = Harness::with(|c| c.allowed_users = vec!["erin".into()]).await;
    let (_, r) = call_sid(&h, None, "session", json!({ "action": "device-init" })).await;
    let init = result(&r);
    // Not on the allowed list; then denied.
    let r = h
        .call(
            ADMIN,
            "session",
            json!({ "action": "approve", "user_code": init["user_code"], "user": "mallory" }),
        )
        .await;
    assert_eq!(code(&r), -33004, "{r}");
    h.ok(
        ADMIN,
        "session",
        json!({ "action": "approve", "user_code": init["user_code"], "deny": true }),
    )
    .await;
    let (_, r) = call_sid(
        &h,
        None,
        "session",
        json!({ "action": "device-poll", "device_code": init["device_code"] }),
    )
    .await;
    assert_eq!(result(&r), json!({ "status": "denied" }));
    // A code left too long expires, and can no longer be approved.
    let (_, r) = call_sid(&h, None, "session", json!({ "action": "device-init" })).await;
    let init = result(&r);
    h.env().advance(901_000);
    let (_, r) = call_sid(
        &h,
        None,
        "session",
        json!({ "action": "device-poll", "device_code": init["device_code"] }),
    )
    .await;
    assert_eq!(result(&r), json!({ "status": "expired" }));
    let r = h
        .call(
            ADMIN,
            "session",
            json!({ "action": "approve", "user_code": init["user_code"], "user": "erin" }),
        )
        .await;
    assert_eq!(tool_error_code(&r), -32602);
    // Approving needs an admin; a provider needs its client id.
    let key = h.key("k", &["execution"], json!({})).await;
    let r = h
        .call(
            &key,
            "session",
            json!({ "action": "approve", "user_code": "BCDF-GHJK", "user": "erin" }),
        )
        .await;
    assert_eq!(code(&r), -33004);
    let (_, r) = call_sid(
        &h,
        None,
        "session",
        json!({ "action": "device-init", "provider": "github" }),
    )
    .await;
    assert_eq!(tool_error_code(&r), -32602);
    assert!(r.to_string().contains("CYFR_GITHUB_CLIENT_ID"), "{r}");
    // Without credentials, nothing but signing in.
    let (status, r) = call_sid(&h, None, "component", json!({ "action": "search" })).await;
    assert_eq!((status, code(&r)), (401, -33001));
    let (status, r) = call_sid(&h, None, "session", json!({ "action": "logout" })).await;
    assert_eq!((status, code(&r)), (401, -33001));
}

fn page_request(method: &str, body: &str, origin: Option<&str>) -> cyfr_core::http::HttpRequest {
    let mut headers = vec![(
        "content-type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    if let Some(o) = origin {
        headers.push(("origin".into(), o.into()));
    }
    cyfr_core::http::HttpRequest {
        method: method.into(),
        path: "/auth/device".into(),
        headers,
        body: body.as_bytes().to_vec(),
        peer: Some([127, 0, 0, 1].into()),
        scheme: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_verification_page_approves_a_code_with_an_admin_key() {
    let h = Harness::new().await;
    let resp = h.app.handle(page_request("GET", "", None)).await;
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(String::from_utf8_lossy(&resp.body).contains("name=\"admin_key\""));

    let (_, r) = call_sid(&h, None, "session", json!({ "action": "device-init" })).await;
    let init = result(&r);
    let code = init["user_code"].as_str().unwrap();
    let key = h.key("not-admin", &["execution"], json!({})).await;
    for (body, origin, status) in [
        (
            format!("user_code={code}&user=frank&admin_key={key}"),
            None,
            401,
        ),
        (
            format!("user_code={code}&user=frank&admin_key=cyfr_ak_wrong"),
            None,
            401,
        ),
        (
            format!("user_code={code}&user=frank&admin_key={ADMIN}"),
            Some("https://evil.example"),
            403,
        ),
    ] {
        let resp = h.app.handle(page_request("POST", &body, origin)).await;
        assert_eq!(resp.status, status, "{body}");
    }
    let (_, r) = call_sid(
        &h,
        None,
        "session",
        json!({ "action": "device-poll", "device_code": init["device_code"] }),
    )
    .await;
    assert_eq!(result(&r)["status"], "pending");
    // An admin key sent from another machine over plain HTTP is refused before it is read.
    let mut far = page_request(
        "POST",
        &format!("user_code={code}&user=frank&admin_key={ADMIN}"),
        None,
    );
    far.peer = Some([203, 0, 113, 9].into());
    assert_eq!(h.app.handle(far).await.status, 403);
    let body = format!(
        "user_code={}&user=frank&email=frank%40example.com&admin_key={ADMIN}&decision=approve",
        code.to_lowercase()
    );
    let resp = h.app.handle(page_request("POST", &body, None)).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    h.env().advance(5_000);
    let (_, r) = call_sid(
        &h,
        None,
        "session",
        json!({ "action": "device-poll", "device_code": init["device_code"] }),
    )
    .await;
    let done = result(&r);
    assert_eq!(done["status"], "complete");
    assert_eq!(
        done["user"],
        json!({ "id": "frank", "email": "frank@example.com", "name": null })
    );
    // The page's failures and approval are in the audit log, without the key.
    let log = h
        .ok(
            ADMIN,
            "audit",
            json!({ "action": "export", "format": "json" }),
        )
        .await;
    let text = log["data"].as_str().unwrap();
    assert!(text.contains("\"approve\""), "{text}");
    assert!(!text.contains(&key) && !text.contains(ADMIN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_login_session_draws_from_its_users_rate_limit() {
    let h = Harness::with(|c| {
        c.user_rate_limit =
            Config::from_lookup(|n| (n == "user_rate_limit").then(|| "2/1m".to_string()))
                .unwrap()
                .user_rate_limit;
    })
    .await;
    let sid = login(&h, "gina").await;
    let whoami = json!({ "action": "whoami" });
    h.ok(&sid, "session", whoami.clone()).await;
    let (_, r) = call_sid(&h, Some(&sid), "session", whoami.clone()).await;
    result(&r);
    let r = h.call(&sid, "session", whoami.clone()).await;
    assert_eq!(code(&r), -33005, "{r}");
    // A second session of the same user shares the budget; another user has its own.
    let again = login(&h, "gina").await;
    assert_eq!(
        code(&h.call(&again, "session", whoami.clone()).await),
        -33005
    );
    let other = login(&h, "hal").await;
    h.ok(&other, "session", whoami).await;
}
