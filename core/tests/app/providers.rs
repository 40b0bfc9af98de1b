//! `cyfr login` through an identity provider's device flow (RFC 8628 + OIDC discovery),
//! against the fake issuer `FakeHost::fetch` plays: the provider's user code goes to the
//! client, its device code and tokens never do; polls map the provider's answers; the user
//! is the provider-qualified `sub` with only its grants; CYFR_ALLOWED_USER refuses others.

use crate::support::{
    code, tool_error_code, FakeHost, Harness, ADMIN, ISSUER, PROVIDER_DEVICE_CODE, PROVIDER_TOKEN,
};
use cyfr_core::config::{Config, LoginProvider};
use cyfr_core::db::Db;
use serde_json::{json, Value as Json};

const CLIENT_SECRET: &str = "oidc-client-secret-0123456789";

fn oidc(c: &mut Config) {
    c.login_providers.push(LoginProvider {
        name: "oidc",
        client_id: "cyfr-cli".into(),
        client_secret: Some(zeroize::Zeroizing::new(CLIENT_SECRET.into())),
        issuer: Some(ISSUER.into()),
    });
}

/// An unauthenticated `session` call; the whole JSON-RPC answer.
async fn anon(h: &Harness, args: Json) -> Json {
    h.rpc(
        None,
        "tools/call",
        json!({ "name": "session", "arguments": args }),
    )
    .await
}

fn ok(r: &Json) -> Json {
    assert_eq!(r["result"]["isError"], false, "{r}");
    r["result"]["structuredContent"].clone()
}

fn no_provider_secret(text: &str) {
    for s in [PROVIDER_DEVICE_CODE, PROVIDER_TOKEN, CLIENT_SECRET] {
        assert!(!text.contains(s), "{s} leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_oidc_device_flow_signs_in_the_providers_user_with_only_its_grants() {
    let h = Harness::with(oidc).await;
    let r = anon(&h, json!({ "action": "device-init" })).await;
    no_provider_secret(&r.to_string());
    let init = ok(&r);
    assert_eq!(init["user_code"], "WDJB-MJHT", "{init}");
    assert_eq!(init["verification_uri"], format!("{ISSUER}/activate"));
    assert_eq!(init["interval"], 5);
    let device_code = init["device_code"].as_str().unwrap().to_string();
    // The stored row holds neither the provider's code nor cyfr's.
    let rows = h
        .app
        .db
        .inner()
        .query("SELECT * FROM device_codes", &[])
        .await
        .unwrap();
    let dump = format!("{rows:?}");
    assert!(
        !dump.contains(PROVIDER_DEVICE_CODE) && !dump.contains(&device_code),
        "{dump}"
    );
    {
        let sent = h.host().fetches.borrow();
        assert_eq!(sent.len(), 2, "discovery, then device authorization");
        let body = String::from_utf8_lossy(&sent[1].body).to_string();
        assert!(body.contains("client_id=cyfr-cli"), "{body}");
    }

    let poll = json!({ "action": "device-poll", "device_code": device_code });
    h.host().tokens.borrow_mut().extend([
        (400, json!({ "error": "authorization_pending" })),
        (400, json!({ "error": "slow_down" })),
        (
            200,
            json!({ "access_token": PROVIDER_TOKEN, "token_type": "Bearer" }),
        ),
    ]);
    assert_eq!(
        ok(&anon(&h, poll.clone()).await),
        json!({ "status": "pending" })
    );
    // Polled again at once: slow_down, and the provider is not asked.
    let asked = h.host().fetches.borrow().len();
    assert_eq!(
        ok(&anon(&h, poll.clone()).await),
        json!({ "status": "pending", "slow_down": true })
    );
    assert_eq!(h.host().fetches.borrow().len(), asked);
    h.env().advance(5_000);
    assert_eq!(
        ok(&anon(&h, poll.clone()).await),
        json!({ "status": "pending", "slow_down": true }),
        "the provider's slow_down"
    );
    // The interval grew to 10 s: 5 s later is still too soon.
    h.env().advance(5_000);
    let asked = h.host().fetches.borrow().len();
    ok(&anon(&h, poll.clone()).await);
    assert_eq!(h.host().fetches.borrow().len(), asked);
    h.env().advance(5_000);
    h.app.db.inner().reset();
    let r = anon(&h, poll.clone()).await;
    assert!(
        h.app.db.inner().trips().len() <= 2,
        "device-poll within 2 round trips: {:?}",
        h.app.db.inner().trips()
    );
    no_provider_secret(&r.to_string());
    let done = ok(&r);
    let sub = format!("oidc:{ISSUER}#alice-1");
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["user"]["id"], sub);
    assert_eq!(done["user"]["email"], "alice@example.com");
    {
        let sent = h.host().fetches.borrow();
        let token_req = sent
            .iter()
            .rev()
            .find(|r| r.url.ends_with("/token"))
            .unwrap();
        let body = String::from_utf8_lossy(&token_req.body).to_string();
        assert!(
            body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code")
                && body.contains(&format!("device_code={PROVIDER_DEVICE_CODE}"))
                && body.contains(&format!("client_secret={CLIENT_SECRET}")),
            "{body}"
        );
    }
    // Spent: no second session.
    assert_eq!(ok(&anon(&h, poll).await), json!({ "status": "expired" }));

    let sid = done["session_id"].as_str().unwrap().to_string();
    let who = h.ok(&sid, "session", json!({ "action": "whoami" })).await;
    assert_eq!(who["user_id"], sub);
    assert_eq!(who["permissions"], json!([]), "never admin by default");
    let r = h
        .call(
            &sid,
            "key",
            json!({ "action": "create", "name": "mine", "type": "secret" }),
        )
        .await;
    assert_eq!(code(&r), -33004, "{r}");
    h.ok(
        ADMIN,
        "permission",
        json!({ "action": "set", "subject": sub, "permissions": ["component.search"] }),
    )
    .await;
    let who = h.ok(&sid, "session", json!({ "action": "whoami" })).await;
    assert_eq!(who["permissions"], json!(["component.search"]), "{who}");
}

async fn init_code(h: &Harness) -> Json {
    let init = ok(&anon(h, json!({ "action": "device-init", "provider": "oidc" })).await);
    json!({ "action": "device-poll", "device_code": init["device_code"] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn denied_expired_and_not_allowed_users_get_no_session() {
    let h = Harness::with(|c| {
        oidc(c);
        c.allowed_users = vec!["bob@example.com".into()];
    })
    .await;
    let poll = init_code(&h).await;
    h.host()
        .tokens
        .borrow_mut()
        .push_back((400, json!({ "error": "access_denied" })));
    assert_eq!(
        ok(&anon(&h, poll.clone()).await),
        json!({ "status": "denied" })
    );
    assert_eq!(ok(&anon(&h, poll).await), json!({ "status": "denied" }));

    let poll = init_code(&h).await;
    h.host()
        .tokens
        .borrow_mut()
        .push_back((400, json!({ "error": "expired_token" })));
    assert_eq!(ok(&anon(&h, poll).await), json!({ "status": "expired" }));

    // Alice is signed in by the provider, but only bob may log in.
    let poll = init_code(&h).await;
    h.host()
        .tokens
        .borrow_mut()
        .push_back((200, json!({ "access_token": PROVIDER_TOKEN })));
    let r = anon(&h, poll.clone()).await;
    assert_eq!(code(&r), -33004, "{r}");
    assert!(r.to_string().contains("not an allowed user"), "{r}");
    no_provider_secret(&r.to_string());
    h.env().advance(10_000);
    assert_eq!(ok(&anon(&h, poll).await), json!({ "status": "denied" }));

    // cyfr's own page cannot approve a provider's code.
    let r = h
        .call(ADMIN, "session", json!({ "action": "approve", "user_code": "WDJB-MJHT", "user": "bob", "email": "bob@example.com" }))
        .await;
    assert_eq!(tool_error_code(&r), -32602, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_discovery_document_pointing_elsewhere_is_refused() {
    let h = Harness::with(oidc).await;
    let mut doc = FakeHost::default_discovery();
    doc["token_endpoint"] = json!("https://evil.example/token");
    h.host().discovery.replace(Some(doc));
    let r = anon(&h, json!({ "action": "device-init" })).await;
    assert_eq!(code(&r), -32603, "{r}");
    assert!(r.to_string().contains("issuer's origin"), "{r}");
    let mut doc = FakeHost::default_discovery();
    doc["issuer"] = json!("https://other.example");
    h.host().discovery.replace(Some(doc));
    let r = anon(&h, json!({ "action": "device-init" })).await;
    assert!(r.to_string().contains("another issuer"), "{r}");
    // Nothing was sent past the discovery documents.
    assert!(h
        .host()
        .fetches
        .borrow()
        .iter()
        .all(|r| r.url.ends_with("/.well-known/openid-configuration")));
    // An unconfigured provider is named.
    let r = anon(&h, json!({ "action": "device-init", "provider": "github" })).await;
    assert!(r.to_string().contains("Set CYFR_GITHUB_CLIENT_ID"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn github_signs_in_github_id_through_its_fixed_endpoints() {
    let h = Harness::with(|c| {
        c.login_providers.push(LoginProvider {
            name: "github",
            client_id: "gh-client".into(),
            client_secret: None,
            issuer: None,
        });
        c.allowed_users = vec!["octo@example.com".into()];
    })
    .await;
    let init = ok(&anon(&h, json!({ "action": "device-init", "provider": "github" })).await);
    assert_eq!(init["provider"], "github");
    let poll = json!({ "action": "device-poll", "device_code": init["device_code"] });
    h.host().tokens.borrow_mut().extend([
        (200, json!({ "error": "authorization_pending" })),
        (
            200,
            json!({ "access_token": PROVIDER_TOKEN, "token_type": "bearer" }),
        ),
    ]);
    assert_eq!(
        ok(&anon(&h, poll.clone()).await),
        json!({ "status": "pending" })
    );
    h.env().advance(5_000);
    let done = ok(&anon(&h, poll).await);
    assert_eq!(done["user"]["id"], "github:12345", "{done}");
    assert_eq!(done["user"]["name"], "octocat");
    let sent = h.host().fetches.borrow();
    let urls: Vec<&str> = sent.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://github.com/login/device/code",
            "https://github.com/login/oauth/access_token",
            "https://github.com/login/oauth/access_token",
            "https://api.github.com/user",
        ]
    );
    // GitHub answers form-encoded unless asked for JSON, and refuses requests without a UA.
    assert!(sent.iter().all(|r| r.header("accept").is_some()));
    assert_eq!(sent[3].header("user-agent"), Some("cyfr"));
    assert!(!String::from_utf8_lossy(&sent[1].body).contains("client_secret"));
}
