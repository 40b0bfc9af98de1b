use super::*;

#[test]
fn spin_headers_replace_spoofed_ones() {
    let req = http::Request::builder()
        .uri("/api/v1/x?y=1")
        .header("host", "cyfr.example:8080")
        .header("spin-client-addr", "10.0.0.1:1")
        .header("spin-client-addr", "10.0.0.2:2")
        .header("spin-path-match-id", "evil")
        .header("spin-full-url", "http://evil/")
        .header("x-other", "kept")
        .body(Bytes::new())
        .unwrap();
    let peer: SocketAddr = "127.0.0.1:5555".parse().unwrap();
    let req = prepare_request(req, peer).unwrap();
    let h = req.headers();
    let all = |n: &str| -> Vec<&str> { h.get_all(n).iter().map(|v| v.to_str().unwrap()).collect() };
    assert_eq!(all("spin-client-addr"), vec!["127.0.0.1:5555"]);
    assert_eq!(
        all("spin-full-url"),
        vec!["http://cyfr.example:8080/api/v1/x?y=1"]
    );
    assert_eq!(all("spin-path-info"), vec!["/api/v1/x"]);
    assert_eq!(all("spin-matched-route"), vec!["/..."]);
    assert_eq!(all("spin-base-path"), vec!["/"]);
    assert!(all("spin-path-match-id").is_empty());
    assert_eq!(all("x-other"), vec!["kept"]);
    assert_eq!(req.uri().authority().unwrap().as_str(), "cyfr.example:8080");
    assert_eq!(
        req.uri().path_and_query().unwrap().as_str(),
        "/api/v1/x?y=1"
    );
}

#[tokio::test]
async fn purge_removes_expired_sessions_and_their_keys() {
    use cyfr_core::db::Db as _;
    let dir = std::env::temp_dir().join(format!("cyfr-purge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = crate::core_db::CoreDb(Arc::new(LocalDb::open(dir.join("t.db")).await.unwrap()));
    cyfr_core::migrate::migrate(&db).await.unwrap();
    let env = crate::core_db::NativeEnv;
    let kms =
        cyfr_core::secrets::kms::LocalKms::new(vec![zeroize::Zeroizing::new([7u8; 32])]).unwrap();
    let now = cyfr_core::env::Env::now_ms(&env);
    // 150 sessions that expire at once (more than one batch), one that lives on.
    let mut expired = Vec::new();
    for _ in 0..150 {
        expired.push(
            cyfr_core::sessions::create(&db, &env, None, "2025-11-25", 1)
                .await
                .unwrap(),
        );
    }
    let live = cyfr_core::sessions::create(&db, &env, None, "2025-11-25", 3_600_000)
        .await
        .unwrap();
    for sid in [&expired[0], &expired[149], &live] {
        let hash = cyfr_core::crypto::sha256_hex(sid.as_bytes());
        cyfr_core::secrets::sealed::public_info(&db, &kms, &env, &hash, now + 1)
            .await
            .unwrap();
    }
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query(sql, &[]).await.unwrap().first().unwrap().int("n") }
    };
    assert_eq!(count("SELECT count(*) AS n FROM session_keys").await, 3);
    let later = now + 10_000;
    assert_eq!(
        cyfr_core::sessions::purge_expired(&db, later)
            .await
            .unwrap(),
        100
    );
    assert_eq!(
        cyfr_core::sessions::purge_expired(&db, later)
            .await
            .unwrap(),
        50
    );
    assert_eq!(
        cyfr_core::sessions::purge_expired(&db, later)
            .await
            .unwrap(),
        0
    );
    assert_eq!(count("SELECT count(*) AS n FROM sessions").await, 1);
    assert_eq!(count("SELECT count(*) AS n FROM session_keys").await, 1);
    let live_hash = cyfr_core::crypto::sha256_hex(live.as_bytes());
    let rows = db
        .query("SELECT session_hash FROM session_keys", &[])
        .await
        .unwrap();
    assert_eq!(rows.first().unwrap().text("session_hash"), live_hash);
    // The purge is found by the index, not a scan.
    let plan = db.query("EXPLAIN QUERY PLAN SELECT id_hash FROM sessions WHERE expires_at <= 1 ORDER BY expires_at LIMIT 100", &[]).await.unwrap();
    assert!(
        format!("{:?}", plan.rows).contains("sessions_expires_at"),
        "{:?}",
        plan.rows
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ipv6_peer_and_missing_host() {
    let req = http::Request::builder()
        .uri("/")
        .body(Bytes::new())
        .unwrap();
    let peer: SocketAddr = "[::1]:4000".parse().unwrap();
    let req = prepare_request(req, peer).unwrap();
    assert_eq!(req.headers()["spin-client-addr"], "[::1]:4000");
    assert_eq!(req.headers()["spin-full-url"], "http://localhost/");
    assert_eq!(req.uri().authority().unwrap().as_str(), "localhost");
}
