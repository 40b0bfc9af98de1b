//! `bootstrap_admin_key`: an edge deployment's first admin key, made by its first request
//! on a database nobody prepared (the router migrates it), and never again.

use crate::support::{code, Harness, ADMIN};
use cyfr_core::config::Config;
use cyfr_core::db::Db;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The raw admin key `cyfr init --edge` would print.
const BOOT: &str = "cyfr_ak_bootbootbootbootbootbootboot0001";
/// Another admin key, as if the variable were later pointed at it.
const OTHER: &str = "cyfr_ak_otherotherotherotherotherother02";

fn hash(raw: &str) -> String {
    Sha256::digest(raw.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn with_hash(raw: &str) -> impl FnOnce(&mut Config) {
    let h = hash(raw);
    move |c| c.bootstrap_admin_key = Some(h)
}

async fn key_count(h: &Harness, admin: &str) -> usize {
    let keys = h
        .ok(
            admin,
            "key",
            json!({ "action": "list", "include_revoked": true }),
        )
        .await;
    keys["keys"].as_array().unwrap().len()
}

#[tokio::test(flavor = "current_thread")]
async fn the_bootstrap_key_becomes_the_first_admin_on_an_empty_database() {
    let h = Harness::empty(with_hash(BOOT)).await;
    // Its first request migrates the database, creates the key and acts as it.
    let made = h
        .ok(
            BOOT,
            "key",
            json!({ "action": "create", "name": "ci", "type": "secret", "scope": ["execution"] }),
        )
        .await;
    assert!(made["key"].as_str().unwrap().starts_with("cyfr_sk_"));
    let keys = h.ok(BOOT, "key", json!({ "action": "list" })).await;
    let admin = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["type"] == "admin")
        .unwrap_or_else(|| panic!("no admin key in {keys}"));
    assert_eq!(admin["name"], "admin");
    // The database holds its hash like any key's, never the raw key.
    let raw_in_db = h
        .app
        .db
        .inner()
        .query(
            "SELECT count(*) AS n FROM api_keys WHERE key_hash = ?",
            &[hash(BOOT).into()],
        )
        .await
        .unwrap();
    assert_eq!(raw_in_db.first().unwrap().int("n"), 1);
    assert_eq!(
        keys.to_string().find(BOOT),
        None,
        "the raw key is never listed"
    );
    // And it keeps working as an ordinary key.
    assert_eq!(key_count(&h, BOOT).await, 2);
}

#[tokio::test(flavor = "current_thread")]
async fn once_any_key_exists_the_variable_does_nothing() {
    // A database `cyfr init` prepared (its admin key exists), the variable pointing at a
    // different admin key: that key is refused with the usual code and not created.
    let h = Harness::with(with_hash(OTHER)).await;
    let r = h.call(OTHER, "key", json!({ "action": "list" })).await;
    assert_eq!(code(&r), -33002, "{r}");
    assert_eq!(key_count(&h, ADMIN).await, 1);

    // Even when every key was revoked: the database once had a key, so no new admin.
    let h = Harness::empty(with_hash(BOOT)).await;
    h.ok(BOOT, "key", json!({ "action": "list" })).await;
    h.ok(BOOT, "key", json!({ "action": "revoke", "name": "admin" }))
        .await;
    let r = h.call(BOOT, "key", json!({ "action": "list" })).await;
    assert_eq!(
        code(&r),
        -33002,
        "a revoked bootstrap key is not made again: {r}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_key_is_refused_and_creates_nothing() {
    let h = Harness::empty(with_hash(BOOT)).await;
    for wrong in [
        OTHER,
        // Same hash target, but not an admin key's prefix: never an admin.
        "cyfr_sk_bootbootbootbootbootbootboot0001",
        // The hash itself sent as the key.
        &hash(BOOT),
    ] {
        let r = h.call(wrong, "key", json!({ "action": "list" })).await;
        assert_eq!(code(&r), -33002, "{wrong}: {r}");
    }
    // Nothing was created by the refusals: the right key still bootstraps.
    assert_eq!(key_count(&h, BOOT).await, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn without_the_variable_an_empty_database_admits_nobody() {
    let h = Harness::empty(|_| {}).await;
    let r = h.call(BOOT, "key", json!({ "action": "list" })).await;
    assert_eq!(code(&r), -33002, "{r}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_variable_must_be_a_hash_not_a_key() {
    for bad in [BOOT, "abc", &"g".repeat(64)] {
        let e = Config::from_lookup(|n| (n == "bootstrap_admin_key").then(|| bad.to_string()))
            .unwrap_err();
        assert!(e.contains("bootstrap_admin_key"), "{e}");
        assert!(!e.contains(BOOT), "the error never echoes the value: {e}");
    }
    let upper = hash(BOOT).to_ascii_uppercase();
    let c = Config::from_lookup(|n| (n == "bootstrap_admin_key").then(|| upper.clone())).unwrap();
    assert_eq!(c.bootstrap_admin_key, Some(hash(BOOT)));
}

#[tokio::test(flavor = "current_thread")]
async fn a_known_key_costs_the_same_round_trips_with_the_variable_set() {
    let plain = Harness::new().await;
    let boot = Harness::with(with_hash(BOOT)).await;
    let mut trips = Vec::new();
    for h in [&plain, &boot] {
        h.app.db.inner().reset();
        h.ok(ADMIN, "key", json!({ "action": "list" })).await;
        trips.push(h.app.db.inner().trips().len());
    }
    assert_eq!(trips[0], trips[1]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_key_costs_no_extra_round_trip_with_the_variable_set() {
    // Guessing at the bootstrap key is a hash and a constant-time compare, not a write.
    let plain = Harness::new().await;
    let boot = Harness::with(with_hash(BOOT)).await;
    let mut trips = Vec::new();
    for h in [&plain, &boot] {
        h.app.db.inner().reset();
        let r = h.call(OTHER, "key", json!({ "action": "list" })).await;
        assert_eq!(code(&r), -33002, "{r}");
        trips.push(h.app.db.inner().trips());
    }
    assert_eq!(trips[0], trips[1]);
}

#[tokio::test(flavor = "current_thread")]
async fn two_first_requests_racing_both_act_as_the_one_admin() {
    let h = Harness::empty(with_hash(BOOT)).await;
    h.rpc(None, "ping", json!({})).await; // migrates
                                          // Another request with the same key creates it between this one's lookup and its insert.
    h.app.db.inner().meddle(
        "INSERT INTO api_keys (id, name, key_type, key_hash",
        "INSERT INTO api_keys (id, name, key_type, key_hash, prefix, scopes, created_at, lineage_id, budget_id) \
         SELECT 'key_bootstrap', 'admin', 'admin', '44f59b1cb4962a489405bd96d907f75eb3212a3a488a78f055ffbb115e630c40', 'cyfr_ak_boot', '*', 0, 'key_bootstrap', 'key_bootstrap'",
    );
    let r = h.call(BOOT, "key", json!({ "action": "list" })).await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(r["result"]["structuredContent"]["count"], 1, "{r}");
}
