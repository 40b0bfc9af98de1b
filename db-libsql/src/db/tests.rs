//! `LocalDb`'s tests: real files (and memory), real SQLite.

use super::*;
use std::path::PathBuf;

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cyfr-db-test-{}-{}-{}",
        name,
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("test.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_outlives_statements_and_goes_when_the_database_closes() {
    let path = temp_path("keep-wal");
    let wal = path.with_extension("db-wal");
    let db = LocalDb::open(&path).await.unwrap();
    db.execute("CREATE TABLE t (x)", vec![]).await.unwrap();
    db.execute("INSERT INTO t VALUES (1)", vec![])
        .await
        .unwrap();
    // The shared connection keeps the WAL between statements.
    assert!(wal.exists(), "{} was deleted", wal.display());
    drop(db);
    assert!(!wal.exists(), "closing the database checkpoints the WAL");
    let db = LocalDb::open(&path).await.unwrap();
    let rows = db.execute("SELECT x FROM t", vec![]).await.unwrap();
    assert_eq!(rows.rows, vec![vec![SqlValue::Integer(1)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_in_wal_mode_and_round_trips_values() {
    let path = temp_path("wal");
    let db = LocalDb::open(&path).await.unwrap();
    assert!(path.exists());
    let mode = db.execute("PRAGMA journal_mode", vec![]).await.unwrap();
    assert_eq!(mode.rows, vec![vec![SqlValue::Text("wal".into())]]);
    let bt = db.execute("PRAGMA busy_timeout", vec![]).await.unwrap();
    assert_eq!(bt.rows, vec![vec![SqlValue::Integer(5000)]]);

    db.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, n)",
        vec![],
    )
    .await
    .unwrap();
    let mut conn = db.session();
    assert_eq!(conn.last_insert_rowid(), 0);
    let ins = conn
        .execute(
            "INSERT INTO t (i, r, s, b, n) VALUES (?, ?, ?, ?, ?)",
            vec![
                SqlValue::Integer(-7),
                SqlValue::Real(1.5),
                SqlValue::Text("héllo".into()),
                SqlValue::Blob(vec![0, 1, 255]),
                SqlValue::Null,
            ],
        )
        .await
        .unwrap();
    assert!(ins.columns.is_empty() && ins.rows.is_empty());
    assert_eq!((ins.last_insert_rowid, ins.changes), (1, 1));
    assert_eq!((conn.last_insert_rowid(), conn.changes()), (1, 1));

    let sel = db
        .execute(
            "SELECT i, r, s, b, n FROM t WHERE id = ?",
            vec![SqlValue::Integer(1)],
        )
        .await
        .unwrap();
    assert_eq!(sel.columns, vec!["i", "r", "s", "b", "n"]);
    assert_eq!(
        sel.rows,
        vec![vec![
            SqlValue::Integer(-7),
            SqlValue::Real(1.5),
            SqlValue::Text("héllo".into()),
            SqlValue::Blob(vec![0, 1, 255]),
            SqlValue::Null,
        ]]
    );

    // Errors surface as errors.
    assert!(db.execute("SELECT * FROM missing", vec![]).await.is_err());
    assert!(conn
        .execute("INSERT INTO t (id) VALUES (1)", vec![])
        .await
        .is_err());

    // Persisted: a second LocalDb on the same file sees the row.
    drop(db);
    let db2 = LocalDb::open(&path).await.unwrap();
    let count = db2
        .execute("SELECT count(*) AS c FROM t", vec![])
        .await
        .unwrap();
    assert_eq!(count.rows, vec![vec![SqlValue::Integer(1)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_statements_share_one_database() {
    let db = LocalDb::open_in_memory().await.unwrap();
    assert_eq!(db.path(), Path::new(":memory:"));
    db.execute("CREATE TABLE t (x)", vec![]).await.unwrap();
    db.execute("INSERT INTO t VALUES (?)", vec![SqlValue::Integer(7)])
        .await
        .unwrap();
    let rows = db.execute("SELECT x FROM t", vec![]).await.unwrap();
    assert_eq!(rows.rows, vec![vec![SqlValue::Integer(7)]]);
    let other = LocalDb::open_in_memory().await.unwrap();
    assert!(other.execute("SELECT x FROM t", vec![]).await.is_err());
}

/// The rate limiter's statement: an upsert whose DO UPDATE has a WHERE. When the WHERE is
/// false nothing is updated and RETURNING yields no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_with_where_returning_yields_no_row_when_where_is_false() {
    let db = LocalDb::open(temp_path("upsert")).await.unwrap();
    db.execute(
        "CREATE TABLE rate (key TEXT PRIMARY KEY, count INTEGER NOT NULL)",
        vec![],
    )
    .await
    .unwrap();
    let upsert = "INSERT INTO rate (key, count) VALUES (?1, 1) \
                  ON CONFLICT(key) DO UPDATE SET count = count + 1 \
                  WHERE rate.count < ?2 \
                  RETURNING count";
    let limit = 3;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let r = db
            .execute(
                upsert,
                vec![SqlValue::Text("k".into()), SqlValue::Integer(limit)],
            )
            .await
            .unwrap();
        assert_eq!(r.columns, vec!["count"]);
        seen.push((r.rows.clone(), r.changes));
    }
    let one = |n| (vec![vec![SqlValue::Integer(n)]], 1);
    assert_eq!(
        seen,
        vec![one(1), one(2), one(3), (vec![], 0), (vec![], 0)],
        "insert, two updates, then the WHERE is false: no row, no change"
    );
    let r = db
        .execute("SELECT count FROM rate WHERE key = 'k'", vec![])
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![SqlValue::Integer(3)]]);
}

fn int(n: i64) -> SqlValue {
    SqlValue::Integer(n)
}

/// The single-column rows of `sql`, as integers.
async fn ints(db: &LocalDb, sql: &str) -> Vec<i64> {
    db.execute(sql, vec![])
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|r| match r[..] {
            [SqlValue::Integer(n)] => n,
            ref other => panic!("not one integer: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_statements_see_fresh_data_and_follow_schema_changes() {
    let path = temp_path("cache");
    let db = LocalDb::open(&path).await.unwrap();
    db.execute("CREATE TABLE t (x)", vec![]).await.unwrap();
    let count = "SELECT count(*) FROM t";
    assert_eq!(ints(&db, count).await, vec![0]);
    db.execute("INSERT INTO t VALUES (?)", vec![int(1)])
        .await
        .unwrap();
    assert_eq!(ints(&db, count).await, vec![1]);
    // A commit by another connection (another process's, as far as SQLite knows) is seen
    // by the cached statement: it was reset, so it holds no old snapshot.
    let other = LocalDb::open(&path).await.unwrap();
    other
        .execute("INSERT INTO t VALUES (?)", vec![int(2)])
        .await
        .unwrap();
    assert_eq!(ints(&db, count).await, vec![2]);
    // A statement left after its first row of several is reset too: the other connection
    // can still write, and the next run starts from the first row again.
    let first = "SELECT x FROM t ORDER BY x";
    assert_eq!(ints(&db, first).await, vec![1, 2]);
    other
        .execute("DELETE FROM t WHERE x = 2", vec![])
        .await
        .unwrap();
    assert_eq!(ints(&db, first).await, vec![1]);
    drop(other);

    // Schema changes: the cached `SELECT *` picks up the new column.
    let star = "SELECT * FROM t";
    assert_eq!(db.execute(star, vec![]).await.unwrap().columns, vec!["x"]);
    db.execute("ALTER TABLE t ADD COLUMN y", vec![])
        .await
        .unwrap();
    let r = db.execute(star, vec![]).await.unwrap();
    assert_eq!(r.columns, vec!["x", "y"]);
    assert_eq!(r.rows, vec![vec![int(1), SqlValue::Null]]);
    // Parameters not given are NULL, as on a freshly prepared statement, not the previous
    // call's values.
    let ins = "INSERT INTO t (x, y) VALUES (?, ?)";
    db.execute(ins, vec![int(5), int(6)]).await.unwrap();
    db.execute(ins, vec![int(7)]).await.unwrap();
    let r = db
        .execute("SELECT y FROM t WHERE x = 7", vec![])
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![SqlValue::Null]]);
    // A table dropped and made again with other columns: the cached statement follows.
    db.execute("DROP TABLE t", vec![]).await.unwrap();
    assert!(db.execute(star, vec![]).await.is_err());
    db.execute("CREATE TABLE t (a, b, c)", vec![])
        .await
        .unwrap();
    assert_eq!(
        db.execute(star, vec![]).await.unwrap().columns,
        vec!["a", "b", "c"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statement_cache_is_bounded_and_still_answers_past_it() {
    let db = LocalDb::open_in_memory().await.unwrap();
    for i in 0..(STATEMENT_CACHE as i64 * 2 + 3) {
        let r = db.execute(&format!("SELECT {i}"), vec![]).await.unwrap();
        assert_eq!(r.rows, vec![vec![int(i)]]);
        assert!(db.conn.lock_now().stmts.len() <= STATEMENT_CACHE);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_batch_that_fails_leaves_nothing_and_one_that_succeeds_answers_each_statement() {
    let db = LocalDb::open(temp_path("batch")).await.unwrap();
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x)", vec![])
        .await
        .unwrap();
    let ins = |x| ("INSERT INTO t (x) VALUES (?)".to_owned(), vec![int(x)]);
    let err = db
        .batch(
            vec![
                ins(1),
                ("INSERT INTO missing VALUES (1)".into(), vec![]),
                ins(3),
            ],
            true,
        )
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("missing"), "{err:#}");
    assert_eq!(ints(&db, "SELECT count(*) FROM t").await, vec![0]);
    assert!(!db.conn.lock_now().in_transaction());

    let r = db
        .batch(
            vec![
                ins(10),
                (
                    "INSERT INTO t (x) VALUES (?), (?) RETURNING id".into(),
                    vec![int(11), int(12)],
                ),
                ("SELECT x FROM t ORDER BY id".into(), vec![]),
            ],
            true,
        )
        .await
        .unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!((r[0].last_insert_rowid, r[0].changes), (1, 1));
    assert!(r[0].rows.is_empty());
    assert_eq!(r[1].rows, vec![vec![int(2)], vec![int(3)]]);
    assert_eq!((r[1].last_insert_rowid, r[1].changes), (3, 2));
    assert_eq!(r[2].rows, vec![vec![int(10)], vec![int(11)], vec![int(12)]]);

    // Without `atomic` the statements before the failing one stay.
    assert!(db
        .batch(
            vec![ins(20), ("INSERT INTO missing VALUES (1)".into(), vec![])],
            false
        )
        .await
        .is_err());
    assert_eq!(
        ints(&db, "SELECT x FROM t ORDER BY id").await,
        vec![10, 11, 12, 20]
    );
    // A batch may not end its own transaction (what came before would be committed alone).
    assert!(db
        .batch(vec![ins(30), ("COMMIT".into(), vec![])], true)
        .await
        .is_err());
    assert!(!db.conn.lock_now().in_transaction());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_outside_a_session_is_rolled_back_and_refused() {
    let db = LocalDb::open(temp_path("stray")).await.unwrap();
    db.execute("CREATE TABLE t (x)", vec![]).await.unwrap();
    assert!(db.execute("BEGIN", vec![]).await.is_err());
    // Not inside a leftover transaction: this commits on its own and another session sees it.
    db.execute("INSERT INTO t VALUES (1)", vec![])
        .await
        .unwrap();
    let mut s = db.session();
    assert!(!s.in_transaction());
    let r = s.execute("SELECT x FROM t", vec![]).await.unwrap();
    assert_eq!(r.rows, vec![vec![int(1)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_transaction_makes_other_writers_wait_until_it_commits() {
    let db = Arc::new(LocalDb::open(temp_path("session-wait")).await.unwrap());
    db.execute("CREATE TABLE t (x)", vec![]).await.unwrap();
    let mut a = db.session();
    a.execute("BEGIN IMMEDIATE", vec![]).await.unwrap();
    assert!(a.in_transaction());
    a.execute("INSERT INTO t VALUES (1)", vec![]).await.unwrap();

    let (about_to, started) = tokio::sync::oneshot::channel();
    let other = db.clone();
    let b = tokio::spawn(async move {
        let mut b = other.session();
        about_to.send(()).unwrap();
        b.execute("INSERT INTO t VALUES (2)", vec![]).await.unwrap();
        b.last_insert_rowid()
    });
    started.await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // Still inside A's transaction: B's insert has not happened in between.
    a.execute("INSERT INTO t VALUES (3)", vec![]).await.unwrap();
    let r = a
        .execute("SELECT x FROM t ORDER BY rowid", vec![])
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![int(1)], vec![int(3)]]);
    assert_eq!(a.last_insert_rowid(), 2);
    a.execute("COMMIT", vec![]).await.unwrap();
    assert!(!a.in_transaction());
    assert_eq!(b.await.unwrap(), 3, "B's row comes after A's commit");
    assert_eq!(
        ints(&db, "SELECT x FROM t ORDER BY rowid").await,
        vec![1, 3, 2]
    );
    // Each session keeps its own last_insert_rowid, whatever the connection saw last.
    a.execute("SELECT 1", vec![]).await.unwrap();
    assert_eq!(a.last_insert_rowid(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_dropped_inside_a_transaction_rolls_it_back_and_frees_the_database() {
    let db = Arc::new(LocalDb::open(temp_path("session-drop")).await.unwrap());
    db.execute("CREATE TABLE t (x)", vec![]).await.unwrap();
    let mut a = db.session();
    a.execute("BEGIN IMMEDIATE", vec![]).await.unwrap();
    a.execute("INSERT INTO t VALUES (9)", vec![]).await.unwrap();
    let other = db.clone();
    let b = tokio::spawn(async move {
        other
            .execute("INSERT INTO t VALUES (10)", vec![])
            .await
            .unwrap();
    });
    drop(a);
    b.await.unwrap();
    assert_eq!(ints(&db, "SELECT x FROM t").await, vec![10]);
    assert!(!db.conn.lock_now().in_transaction());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_never_commits_makes_others_fail_as_locked_after_the_bound() {
    let db = LocalDb::open(temp_path("session-locked"))
        .await
        .unwrap()
        .with_lock_timeout(Duration::from_millis(50));
    db.execute("CREATE TABLE t (x)", vec![]).await.unwrap();
    let mut a = db.session();
    a.execute("BEGIN IMMEDIATE", vec![]).await.unwrap();
    a.execute("INSERT INTO t VALUES (1)", vec![]).await.unwrap();
    let mut b = db.session();
    let err = b
        .execute("INSERT INTO t VALUES (2)", vec![])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("database is locked"), "{err:#}");
    let err = db.execute("SELECT x FROM t", vec![]).await.unwrap_err();
    assert!(format!("{err:#}").contains("database is locked"), "{err:#}");
    let err = db.batch(vec![], true).await.unwrap_err();
    assert!(format!("{err:#}").contains("database is locked"), "{err:#}");
    // A failed statement inside the transaction keeps it (and the database) held.
    assert!(a
        .execute("INSERT INTO missing VALUES (1)", vec![])
        .await
        .is_err());
    assert!(a.in_transaction());
    a.execute("COMMIT", vec![]).await.unwrap();
    b.execute("INSERT INTO t VALUES (2)", vec![]).await.unwrap();
    assert_eq!(
        ints(&db, "SELECT x FROM t ORDER BY rowid").await,
        vec![1, 2]
    );
}

/// A fresh file database with a table `t (id, body)`, its WAL's path and its page size.
async fn wal_db(name: &str) -> (LocalDb, PathBuf, u64) {
    let path = temp_path(name);
    let db = LocalDb::open(&path).await.unwrap();
    db.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
        vec![],
    )
    .await
    .unwrap();
    let page = ints(&db, "PRAGMA page_size").await[0] as u64;
    (db, path.with_extension("db-wal"), page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_keeps_the_wal_bounded_over_many_inserts() {
    let (db, wal, page) = wal_db("checkpoint").await;
    let signal = db.conn.lock_now().writes.clone().unwrap();
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 500;
    let mut max_wal = 0;
    for round in 0..ROUNDS {
        for i in 0..PER_ROUND {
            db.execute(
                "INSERT INTO t (body) VALUES (?)",
                vec![SqlValue::Text(format!("row {round}-{i}"))],
            )
            .await
            .unwrap();
        }
        max_wal = max_wal.max(std::fs::metadata(&wal).unwrap().len());
        // Wait (polling; the 60 s are a guard against hanging, not an expectation) until a
        // complete checkpoint has covered every write so far.
        let written = signal.writes();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while db.checkpoints().unwrap().writes_covered < written {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint: {:?}",
                db.checkpoints()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Each round's ~500 one-page commits start the WAL over after the last checkpoint; without
    // checkpoints it would hold all 5,000 (about 20 MB).
    let frame = page + 24;
    assert!(
        max_wal < 1500 * frame,
        "the WAL grew to {max_wal} bytes ({} frames)",
        max_wal / frame
    );
    let stats = db.checkpoints().unwrap();
    assert!(stats.runs >= ROUNDS as u64, "{stats:?}");
    assert_eq!(
        ints(&db, "SELECT count(*) FROM t").await,
        vec![(ROUNDS * PER_ROUND) as i64]
    );
    // In memory there is no WAL and no checkpointer.
    assert!(LocalDb::open_in_memory()
        .await
        .unwrap()
        .checkpoints()
        .is_none());
}

#[tokio::test]
async fn a_one_commit_batch_keeps_what_ran_before_its_error_and_nothing_after() {
    let db = LocalDb::open(temp_path("one-commit")).await.unwrap();
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x)", vec![])
        .await
        .unwrap();
    let ins = |x| ("INSERT INTO t (x) VALUES (?)".to_owned(), vec![int(x)]);
    let err = db
        .batch_one_commit(vec![
            ins(1),
            ins(2),
            ("INSERT INTO missing VALUES (1)".into(), vec![]),
            ins(4),
        ])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("missing"), "{err:#}");
    // A loose batch's meaning: the two before the error stay, the one after never ran.
    assert_eq!(ints(&db, "SELECT x FROM t ORDER BY x").await, vec![1, 2]);
    assert!(!db.conn.lock_now().in_transaction());
    let r = db
        .batch_one_commit(vec![ins(5), ("SELECT count(*) FROM t".into(), vec![])])
        .await
        .unwrap();
    assert_eq!(
        r[1].rows,
        vec![vec![int(3)]],
        "reads see the batch's own writes"
    );
}

/// Writers that never pause leave no moment at which a checkpoint that runs beside them has
/// copied every frame, so without holding them off the WAL is never started over and grows
/// for as long as the load lasts (a busy `cyfr up` once grew it to 900 MB in 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_while_writers_never_pause() {
    let (db, wal, page) = wal_db("checkpoint-busy").await;
    let db = Arc::new(db);
    const WRITERS: usize = 4;
    const EACH: usize = 3000;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let db = db.clone();
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            let mut max_wal = 0;
            for i in 0..EACH {
                db.execute(
                    "INSERT INTO t (body) VALUES (?)",
                    vec![SqlValue::Text(format!("row {w}-{i}"))],
                )
                .await
                .unwrap();
                if i % 50 == 0 {
                    max_wal = max_wal.max(std::fs::metadata(&wal).unwrap().len());
                }
            }
            max_wal
        }));
    }
    let mut max_wal = 0;
    for t in tasks {
        max_wal = max_wal.max(t.await.unwrap());
    }
    // 12,000 commits of a page or two each: without complete checkpoints the WAL would
    // hold them all (12,000 frames or more, ~50 MB); with them it starts over about every thousand
    // writes (1,300–1,800 frames seen at most; the bound leaves room for a loaded machine).
    let frame = page + 24;
    assert!(
        max_wal < 5000 * frame,
        "the WAL grew to {max_wal} bytes ({} frames)",
        max_wal / frame
    );
    assert_eq!(
        ints(&db, "SELECT count(*) FROM t").await,
        vec![(WRITERS * EACH) as i64]
    );
}

/// Many tasks using the database while the runtime's threads are busy (as when reagent runs
/// fill them): a waiter must never hold the connection while it sits in the run queue, or the
/// waits add up past the lock bound and plain statements fail as "database is locked" (1,000
/// concurrent `execution.run`s of a memory-heavy reagent did, with a fair async mutex).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_never_fail_as_locked_while_the_runtime_is_busy() {
    let db = Arc::new(
        LocalDb::open(temp_path("busy-runtime"))
            .await
            .unwrap()
            .with_lock_timeout(Duration::from_millis(100)),
    );
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x)", vec![])
        .await
        .unwrap();
    const TASKS: usize = 200;
    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for n in 0..TASKS {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                db.execute(
                    "INSERT INTO t (x) VALUES (?)",
                    vec![int((n * EACH + i) as i64)],
                )
                .await?;
                // A slice of CPU-bound work that does not yield, then a yield.
                let until = std::time::Instant::now() + Duration::from_millis(1);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        ints(&db, "SELECT count(*) FROM t").await,
        vec![(TASKS * EACH) as i64]
    );
}
