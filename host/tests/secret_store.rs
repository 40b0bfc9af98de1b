//! The secret store over a real libsql file: which value a component run gets.

use cyfr_core::secrets::kms::LocalKms;
use cyfr_core::secrets::store::{self, Scope};
use cyfr_host::core_db::{CoreDb, NativeEnv};
use cyfr_host::db::LocalDb;
use std::sync::Arc;
use zeroize::Zeroizing;

async fn setup(tag: &str) -> (CoreDb, LocalKms, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("cyfr-secret-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = CoreDb(Arc::new(LocalDb::open(dir.join("cyfr.db")).await.unwrap()));
    cyfr_core::migrate::migrate(&db).await.unwrap();
    let kms = LocalKms::new(vec![Zeroizing::new([7u8; 32])]).unwrap();
    (db, kms, dir)
}

const REF: &str = "catalyst:local.claude:0.1.0";

/// The value of `name` a run of `reference` by `user` is given: the run's own read (one
/// statement with its admission) and choice.
async fn resolve_for_run(
    db: &CoreDb,
    kms: &LocalKms,
    reference: &str,
    name: &str,
    user: &str,
    now: u64,
) -> cyfr_core::errors::Result<Option<Zeroizing<Vec<u8>>>> {
    use cyfr_core::db::Db;
    let s = store::for_run_stmt(reference, user);
    let rows = db
        .query(&s.sql, &s.params)
        .await
        .map_err(|e| cyfr_core::errors::Error::internal(e.to_string()))?;
    let (mut given, _) = store::for_run(kms, &rows, now).await?;
    Ok(given.remove(name))
}

#[tokio::test]
async fn a_users_own_key_wins_over_the_shared_one_when_the_grant_allows() {
    let (db, kms, dir) = setup("user-wins").await;
    store::set(
        &db,
        &kms,
        &NativeEnv,
        &Scope::Org,
        "anthropic",
        b"org-key",
        false,
        None,
        "admin",
    )
    .await
    .unwrap();
    store::set(
        &db,
        &kms,
        &NativeEnv,
        &Scope::User("alice".into()),
        "anthropic",
        b"alice-key",
        false,
        None,
        "alice",
    )
    .await
    .unwrap();
    let now = cyfr_core::env::Env::now_ms(&NativeEnv);
    // Not granted: nothing, whoever asks.
    assert!(resolve_for_run(&db, &kms, REF, "anthropic", "alice", now)
        .await
        .unwrap()
        .is_none());
    store::grant(
        &db,
        "catalyst:local.claude",
        "anthropic",
        true,
        "admin",
        now,
    )
    .await
    .unwrap();
    let v = resolve_for_run(&db, &kms, REF, "anthropic", "alice", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&v[..], b"alice-key");
    let v = resolve_for_run(&db, &kms, REF, "anthropic", "bob", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&v[..], b"org-key");
    // A grant that says "shared only" ignores user keys.
    store::grant(&db, REF, "anthropic", false, "admin", now)
        .await
        .unwrap();
    let v = resolve_for_run(&db, &kms, REF, "anthropic", "alice", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&v[..], b"org-key");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_expired_key_is_never_handed_out() {
    let (db, kms, dir) = setup("expired").await;
    let now = cyfr_core::env::Env::now_ms(&NativeEnv);
    store::grant(&db, REF, "openai", true, "admin", now)
        .await
        .unwrap();
    store::set(
        &db,
        &kms,
        &NativeEnv,
        &Scope::User("alice".into()),
        "openai",
        b"alice-old",
        false,
        Some(1),
        "alice",
    )
    .await
    .unwrap();
    let later = now + 1000;
    assert!(resolve_for_run(&db, &kms, REF, "openai", "alice", later)
        .await
        .unwrap()
        .is_none());
    store::set(
        &db,
        &kms,
        &NativeEnv,
        &Scope::Org,
        "openai",
        b"org-key",
        false,
        None,
        "admin",
    )
    .await
    .unwrap();
    let v = resolve_for_run(&db, &kms, REF, "openai", "alice", later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&v[..], b"org-key");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_wrong_master_key_cannot_read_anything() {
    let (db, kms, dir) = setup("wrong-kek").await;
    store::set(
        &db,
        &kms,
        &NativeEnv,
        &Scope::Org,
        "x",
        b"value",
        false,
        None,
        "admin",
    )
    .await
    .unwrap();
    let other = LocalKms::new(vec![Zeroizing::new([8u8; 32])]).unwrap();
    assert!(store::read(&db, &other, &Scope::Org, "x").await.is_err());
    let _ = std::fs::remove_dir_all(dir);
}
