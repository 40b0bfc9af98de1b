use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::artifacts::parse_digest;
use super::limits::{LEAF_RESERVE, POOL_INSTANCES};
use super::pipes::CappedPipe;
use super::run::json_or_raw;
use super::*;
use crate::code_cache::CacheKey;

impl Executor {
    /// Compiles (or loads) `digest` as a reagent, so a test times only its run.
    fn prepare_reagent(&self, digest: &str) -> Result<(), ExecError> {
        let hex = parse_digest(digest).unwrap();
        self.reagents.prepare(&self.compiler, hex, digest).map(drop)
    }

    /// Compiles (or loads) `digest` as a formula.
    fn prepare_formula(&self, digest: &str) -> Result<(), ExecError> {
        let hex = parse_digest(digest).unwrap();
        self.formulas.prepare(&self.compiler, hex, digest).map(drop)
    }

    fn compiles(&self) -> u64 {
        self.compiler.compiles.load(Ordering::Relaxed)
    }

    fn disk_loads(&self) -> u64 {
        self.compiler.disk_loads.load(Ordering::Relaxed)
    }
}

/// A test component's bytes (every test guest is built once per process by
/// `cyfr-test-guests`).
fn wasm(name: &str) -> &'static [u8] {
    cyfr_test_guests::guest(name)
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// One executor shared by the behaviour tests, holding all four components, so each is
/// compiled once per process (Cranelift is slow in a debug build). Its cache lives in
/// `target/wasm/executor-tests-cache` and is reused by later runs.
fn shared() -> (&'static Executor, impl Fn(&str) -> String) {
    static SHARED: OnceLock<Executor> = OnceLock::new();
    let exec = SHARED.get_or_init(|| {
        let exec =
            Executor::new(&workspace_root().join("target/wasm/executor-tests-cache")).unwrap();
        for name in [
            "json-transform",
            "text-stats",
            "memory-bomb",
            "endless-loop",
        ] {
            exec.put_artifact(&Executor::digest_of(wasm(name)), wasm(name))
                .unwrap();
        }
        exec
    });
    (exec, |name: &str| Executor::digest_of(wasm(name)))
}

/// A fresh cache directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cyfr-executor-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An executor holding the named component; returns its digest.
fn executor_with(tag: &str, component: &str) -> (TempDir, Executor, String) {
    let dir = TempDir::new(tag);
    let exec = Executor::new(&dir.0).unwrap();
    let bytes = wasm(component);
    let digest = Executor::digest_of(bytes);
    exec.put_artifact(&digest, bytes).unwrap();
    (dir, exec, digest)
}

fn run_json(exec: &Executor, digest: &str, input: Value) -> Value {
    let outcome = exec
        .run_reagent(digest, &input.to_string(), &Limits::default())
        .unwrap();
    serde_json::from_str(&outcome.output).unwrap()
}

#[test]
fn json_transform_round_trip() {
    let (exec, digest_of) = shared();
    let digest = digest_of("json-transform");

    let stats = run_json(exec, &digest, json!({"data": [1, 2, 3]}));
    assert_eq!(
        stats,
        json!({"data": [1, 2, 3], "count": 3, "sum": 6, "min": 1, "max": 3, "mean": 2})
    );

    let people = json!([
        {"name": "ada", "age": 36, "team": "x"},
        {"name": "bob", "age": 25, "team": "y"},
        {"name": "cy", "age": 41, "team": "x"},
    ]);
    let picked = run_json(
        exec,
        &digest,
        json!({"data": people, "ops": [
            {"op": "filter", "field": "team", "eq": "x"},
            {"op": "sort", "field": "age", "desc": true},
            {"op": "rename", "from": "name", "to": "who"},
            {"op": "pick", "fields": ["who", "age"]},
        ]}),
    );
    assert_eq!(
        picked,
        json!({"data": [{"who": "cy", "age": 41}, {"who": "ada", "age": 36}]})
    );

    let total = run_json(
        exec,
        &digest,
        json!({"data": people, "ops": [{"op": "sum", "field": "age"}]}),
    );
    assert_eq!(total, json!({"data": 102}));
    let count = run_json(
        exec,
        &digest,
        json!({"data": people, "ops": [{"op": "count"}]}),
    );
    assert_eq!(count, json!({"data": 3}));

    let bad = run_json(
        exec,
        &digest,
        json!({"data": 1, "ops": [{"op": "explode"}]}),
    );
    assert_eq!(bad["error"]["type"], "invalid_input");
    let not_json = exec
        .run_reagent(&digest, "this is not json", &Limits::default())
        .unwrap();
    let not_json: Value = serde_json::from_str(&not_json.output).unwrap();
    assert_eq!(not_json["error"]["type"], "invalid_input");
}

#[test]
fn manifest_examples_match_component_output() {
    let (exec, digest_of) = shared();
    for name in ["json-transform", "text-stats"] {
        let path = workspace_root().join(format!(
            "components/reagents/cyfr/{name}/0.1.0/cyfr-manifest.json"
        ));
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(manifest["id"], format!("reagent:cyfr.{name}"));
        let examples = manifest["examples"].as_array().unwrap();
        assert!(!examples.is_empty());
        for example in examples {
            let got = run_json(exec, &digest_of(name), example["input"].clone());
            assert_eq!(got, example["output"], "{name} example {}", example["name"]);
        }
    }
}

#[test]
fn text_stats_counts_words_and_sentences() {
    let (exec, digest_of) = shared();
    let digest = digest_of("text-stats");
    let out = run_json(
        exec,
        &digest,
        json!({"text": "The cat sat. The cat ran!\nDon't stop.", "top": 2}),
    );
    assert_eq!(out["words"], 8);
    assert_eq!(out["lines"], 2);
    assert_eq!(out["sentences"], 3);
    assert_eq!(
        out["top_words"],
        json!([{"word": "cat", "count": 2}, {"word": "the", "count": 2}])
    );
}

#[test]
fn guest_stdout_and_stderr_are_captured() {
    let (exec, digest_of) = shared();
    let digest = digest_of("json-transform");
    let input = json!({"data": [1], "ops": [{"op": "count"}], "debug": true}).to_string();
    let outcome = exec
        .run_reagent(&digest, &input, &Limits::default())
        .unwrap();
    assert_eq!(outcome.output, r#"{"data":1}"#);
    assert_eq!(outcome.stdout, "json-transform: applying 1 op(s)\n");
    assert_eq!(outcome.stderr, "json-transform: debug enabled\n");

    let quiet = exec
        .run_reagent(&digest, r#"{"data":[1]}"#, &Limits::default())
        .unwrap();
    assert_eq!((quiet.stdout.as_str(), quiet.stderr.as_str()), ("", ""));
}

#[test]
fn memory_bomb_hits_memory_limit_and_executor_recovers() {
    let (exec, digest_of) = shared();
    let (bomb_digest, ok_digest) = (digest_of("memory-bomb"), digest_of("json-transform"));

    let limits = Limits {
        max_memory_bytes: 32 * 1024 * 1024,
        ..Limits::default()
    };
    for _ in 0..2 {
        let err = exec.run_reagent(&bomb_digest, "{}", &limits).unwrap_err();
        assert_eq!(
            err,
            ExecError::MemoryLimit {
                limit_bytes: 32 * 1024 * 1024
            }
        );
        assert_eq!(err.code(), "memory_limit");
    }
    // Above the pool's slot size the cap is clamped, and still enforced.
    let huge = Limits {
        max_memory_bytes: 4 << 30,
        ..Limits::default()
    };
    let err = exec.run_reagent(&bomb_digest, "{}", &huge).unwrap_err();
    assert_eq!(
        err,
        ExecError::MemoryLimit {
            limit_bytes: MAX_MEMORY_CEILING
        }
    );

    let outcome = exec
        .run_reagent(&ok_digest, r#"{"data":[2,4]}"#, &limits)
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&outcome.output).unwrap()["mean"],
        3
    );
}

#[test]
fn endless_loop_times_out_and_executor_recovers() {
    let (exec, digest_of) = shared();
    let (spin_digest, ok_digest) = (digest_of("endless-loop"), digest_of("json-transform"));
    // Compile first, so the timing below measures only the execution.
    exec.prepare_reagent(&spin_digest).unwrap();
    exec.prepare_reagent(&ok_digest).unwrap();

    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let started = Instant::now();
    let err = exec.run_reagent(&spin_digest, "{}", &limits).unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err, ExecError::Timeout { limit_ms: 500 });
    assert_eq!(err.code(), "timeout");
    assert!(
        elapsed >= Duration::from_millis(450),
        "stopped too early: {elapsed:?}"
    );
    // Generous: only a hang fails it (other tests load both cores meanwhile).
    assert!(
        elapsed < Duration::from_secs(20),
        "the timeout was not enforced: {elapsed:?}"
    );

    let outcome = exec
        .run_reagent(&ok_digest, r#"{"data":[]}"#, &limits)
        .unwrap();
    assert_eq!(outcome.output, r#"{"count":0,"data":[]}"#);
}

#[test]
fn guest_blocked_in_a_host_sleep_times_out() {
    let (exec, digest_of) = shared();
    let digest = digest_of("endless-loop");
    exec.prepare_reagent(&digest).unwrap();
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let started = Instant::now();
    let err = exec.run_reagent(&digest, "sleep", &limits).unwrap_err();
    assert_eq!(err, ExecError::Timeout { limit_ms: 300 });
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout was not enforced: {:?}",
        started.elapsed()
    );
}

#[test]
fn guest_panic_is_a_trap_quoting_the_panic_message() {
    let (exec, digest_of) = shared();
    let err = exec
        .run_reagent(&digest_of("endless-loop"), "panic", &Limits::default())
        .unwrap_err();
    let ExecError::Trap(msg) = &err else {
        panic!("expected a trap, got {err:?}")
    };
    assert!(msg.contains("endless-loop fixture asked to panic"), "{msg}");
    assert_eq!(err.code(), "trap");
}

#[test]
fn more_runs_than_pool_slots_queue_instead_of_failing() {
    let (exec, digest_of) = shared();
    let digest = digest_of("endless-loop");
    exec.prepare_reagent(&digest).unwrap();
    let runs = POOL_INSTANCES as usize + 6;
    let handles: Vec<_> = (0..runs)
        .map(|_| {
            let digest = digest.clone();
            std::thread::spawn(move || {
                let limits = Limits {
                    timeout: Duration::from_millis(300),
                    ..Limits::default()
                };
                // A sleep, not a spin: 70 spinning threads would starve other tests.
                shared().0.run_reagent(&digest, "sleep", &limits)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(
            h.join().unwrap().unwrap_err(),
            ExecError::Timeout { limit_ms: 300 }
        );
    }
}

/// Polls `done` every 10 ms until it holds (a minute at most).
fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("gave up waiting until {what}");
}

fn free_slots(exec: &Executor) -> u32 {
    exec.slots.free()
}

/// Runs `n` endless runs (`loop0`..) on `exec` inside `scope` and waits until they all
/// hold a slot; they stop when cancelled. They sleep in a host call rather than spin, so
/// they leave the CPU to the tests running beside them.
fn hold_slots<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    exec: &'s Executor,
    digest: &'s str,
    n: u32,
) -> Vec<std::thread::ScopedJoinHandle<'s, Result<ExecOutcome, ExecError>>> {
    exec.prepare_reagent(digest).unwrap();
    let before = free_slots(exec);
    let loops = (0..n)
        .map(|i| {
            scope.spawn(move || {
                let long = Limits {
                    timeout: Duration::from_secs(30),
                    ..Limits::default()
                };
                // As many callers as it takes, each within its share.
                let caller = format!("holder{}", i / CALLER_SHARE);
                exec.run_execution(
                    &format!("loop{i}"),
                    &caller,
                    digest,
                    "sleep",
                    &long,
                    None,
                    &mut Leftovers::default(),
                )
            })
        })
        .collect();
    wait_until("the loops hold their slots", || {
        free_slots(exec) == before - n
    });
    loops
}

fn stop_loops(
    exec: &Executor,
    loops: Vec<std::thread::ScopedJoinHandle<'_, Result<ExecOutcome, ExecError>>>,
) {
    for i in 0..loops.len() {
        exec.cancel(&format!("loop{i}"));
    }
    for l in loops {
        assert_eq!(l.join().unwrap().unwrap_err(), ExecError::Cancelled);
    }
}

#[test]
fn a_queued_run_spends_its_timeout_waiting_and_can_be_cancelled_there() {
    let (_dir, exec, spin) = executor_with("queue", "endless-loop");
    let quick = Executor::digest_of(wasm("json-transform"));
    exec.put_artifact(&quick, wasm("json-transform")).unwrap();
    exec.prepare_reagent(&quick).unwrap();
    std::thread::scope(|s| {
        let loops = hold_slots(s, &exec, &spin, POOL_INSTANCES);
        // It would succeed if it ran at all: it is refused because its 200 ms passed in
        // the queue, not after the loops give their slots back half a minute later.
        let short = Limits {
            timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let err = exec
            .run_reagent(&quick, r#"{"data":[1]}"#, &short)
            .unwrap_err();
        assert_eq!(err, ExecError::Timeout { limit_ms: 200 });

        let queued = s.spawn(|| {
            let long = Limits {
                timeout: Duration::from_secs(30),
                ..Limits::default()
            };
            exec.run_execution(
                "queued",
                "someone",
                &quick,
                r#"{"data":[1]}"#,
                &long,
                None,
                &mut Leftovers::default(),
            )
        });
        wait_until("the run is queued", || exec.running.contains("queued"));
        assert!(exec.cancel("queued"));
        assert_eq!(queued.join().unwrap().unwrap_err(), ExecError::Cancelled);
        assert_eq!(
            free_slots(&exec),
            0,
            "the cancel ended the wait, not a freed slot"
        );
        stop_loops(&exec, loops);
    });
    assert_eq!(free_slots(&exec), POOL_INSTANCES);
}

#[test]
fn formulas_leave_slots_for_the_runs_they_wait_on() {
    let (_dir, exec, spin) = executor_with("reserve", "endless-loop");
    let probe = Executor::digest_of(wasm("formula-probe"));
    exec.put_artifact(&probe, wasm("formula-probe")).unwrap();
    exec.prepare_formula(&probe).unwrap();
    let quick = Executor::digest_of(wasm("json-transform"));
    exec.put_artifact(&quick, wasm("json-transform")).unwrap();
    let link = RouterLink::new(
        cyfr_core::host_api::Callback {
            url: "http://127.0.0.1:9".into(),
            token: "unused".into(),
            key: None,
        },
        None,
    );
    let print = r#"{"steps":[{"fn":"print","text":"started"}]}"#;
    let short = Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    // With every slot free the formula runs at once.
    exec.run_formula(
        "f0",
        "someone",
        &probe,
        print,
        &short,
        &link,
        &mut Leftovers::default(),
    )
    .unwrap();
    std::thread::scope(|s| {
        let loops = hold_slots(s, &exec, &spin, POOL_INSTANCES - LEAF_RESERVE);
        let err = exec
            .run_formula(
                "f1",
                "someone",
                &probe,
                print,
                &short,
                &link,
                &mut Leftovers::default(),
            )
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::Timeout { limit_ms: 300 },
            "a formula may not take the reserved slots"
        );
        let out = exec
            .run_reagent(&quick, r#"{"data":[1,2]}"#, &short)
            .unwrap();
        assert!(
            out.output.contains("\"sum\":3"),
            "a reagent still runs: {}",
            out.output
        );
        stop_loops(&exec, loops);
    });
}

/// A reagent built from WAT: a main module (one 64 KiB memory) whose `compute` grows each
/// of `memories` other modules' memories by `grow_pages` and answers `{}`; those start
/// at `initial_pages`. `plain` more modules without memory are instantiated too.
fn many_memories(memories: usize, initial_pages: u32, grow_pages: u32, plain: usize) -> Vec<u8> {
    let mut wat = String::from("(component\n");
    wat += &format!(
        "(core module $big (memory (export \"memory\") {initial_pages}) (func (export \"grow\") (param i32) (result i32) (memory.grow (local.get 0))))\n"
    );
    wat += "(core module $plain (func (export \"nop\")))\n";
    for i in 0..memories {
        wat += &format!("(core instance $b{i} (instantiate $big))\n");
    }
    for i in 0..plain {
        wat += &format!("(core instance $p{i} (instantiate $plain))\n");
    }
    wat += "(core module $main\n";
    for i in 0..memories {
        wat += &format!("(import \"b{i}\" \"grow\" (func $g{i} (param i32) (result i32)))\n");
    }
    wat += r#"(memory (export "memory") 1)
        (global $heap (mut i32) (i32.const 1024))
        (func (export "realloc") (param i32 i32 i32 i32) (result i32) (local $p i32)
          (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
          (global.set $heap (i32.add (local.get $p) (local.get 3)))
          (local.get $p))
        (func (export "compute") (param i32 i32) (result i32)
"#;
    for i in 0..memories {
        wat += &format!("(drop (call $g{i} (i32.const {grow_pages})))\n");
    }
    wat += r#"(i32.const 16))
        (data (i32.const 16) "\20\00\00\00\02\00\00\00")
        (data (i32.const 32) "{}"))
"#;
    wat += "(core instance $m (instantiate $main";
    for i in 0..memories {
        wat += &format!(" (with \"b{i}\" (instance $b{i}))");
    }
    wat += r#"))
      (alias core export $m "memory" (core memory $mem))
      (alias core export $m "compute" (core func $cc))
      (alias core export $m "realloc" (core func $re))
      (type $ft (func (param "input" string) (result string)))
      (func $compute (type $ft) (canon lift (core func $cc) (memory $mem) (realloc $re) string-encoding=utf8))
      (instance $api (export "compute" (func $compute)))
      (export "cyfr:reagent/compute@0.1.0" (instance $api)))"#;
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

fn put(exec: &Executor, bytes: &[u8]) -> String {
    let digest = Executor::digest_of(bytes);
    exec.put_artifact(&digest, bytes).unwrap();
    digest
}

#[test]
fn memory_cap_counts_all_memories_of_a_run_together() {
    let (_dir, exec, _) = executor_with("memsum", "json-transform");
    const MIB: u64 = 1024 * 1024;
    let cap = Limits {
        max_memory_bytes: 32 * MIB,
        ..Limits::default()
    };
    // Three more memories grown to 12 MiB each: each under the cap, together over it.
    let growing = put(&exec, &many_memories(3, 1, 12 * 16, 0));
    let err = exec.run_reagent(&growing, "{}", &cap).unwrap_err();
    assert_eq!(
        err,
        ExecError::MemoryLimit {
            limit_bytes: 32 * MIB
        }
    );
    // Under a cap that holds them all, the same component completes: the refusal above
    // is the sum's.
    let roomy = Limits {
        max_memory_bytes: 64 * MIB,
        ..Limits::default()
    };
    assert_eq!(
        exec.run_reagent(&growing, "{}", &roomy).unwrap().output,
        "{}"
    );
    // Memories that start that large are refused as the instance is made.
    let large = put(&exec, &many_memories(3, 12 * 16, 0, 0));
    let err = exec.run_reagent(&large, "{}", &cap).unwrap_err();
    assert_eq!(
        err,
        ExecError::MemoryLimit {
            limit_bytes: 32 * MIB
        }
    );
    assert_eq!(exec.run_reagent(&large, "{}", &roomy).unwrap().output, "{}");
}

#[test]
fn components_past_the_memory_or_instance_caps_are_refused_and_others_still_run() {
    let (_dir, exec, ok) = executor_with("percomp", "json-transform");
    // Within the caps: runs.
    let fits = put(
        &exec,
        &many_memories(MAX_MEMORIES_PER_COMPONENT as usize - 1, 1, 0, 8),
    );
    assert_eq!(
        exec.run_reagent(&fits, "{}", &Limits::default())
            .unwrap()
            .output,
        "{}"
    );
    // 127 memories once took every memory slot of the pool; now such a component is
    // refused before it is ever instantiated.
    let hoarder = put(&exec, &many_memories(126, 1, 0, 0));
    let err = exec
        .run_reagent(&hoarder, "{}", &Limits::default())
        .unwrap_err();
    assert!(matches!(err, ExecError::InvalidComponent(_)), "{err:?}");
    let memories = put(
        &exec,
        &many_memories(MAX_MEMORIES_PER_COMPONENT as usize, 1, 0, 0),
    );
    let err = exec
        .run_reagent(&memories, "{}", &Limits::default())
        .unwrap_err();
    let ExecError::InvalidComponent(msg) = &err else {
        panic!("expected invalid_component, got {err:?}")
    };
    assert!(
        msg.contains("5 Wasm linear memories") && msg.contains("maximum of 4"),
        "{msg}"
    );
    let instances = put(
        &exec,
        &many_memories(0, 1, 0, MAX_CORE_INSTANCES_PER_COMPONENT as usize),
    );
    let err = exec
        .run_reagent(&instances, "{}", &Limits::default())
        .unwrap_err();
    let ExecError::InvalidComponent(msg) = &err else {
        panic!("expected invalid_component, got {err:?}")
    };
    assert!(msg.contains("core module instances"), "{msg}");
    // Every other caller's run still gets its memory.
    let out = exec
        .run_execution(
            "other",
            "another-key",
            &ok,
            r#"{"data":[1,2]}"#,
            &Limits::default(),
            None,
            &mut Leftovers::default(),
        )
        .unwrap();
    assert!(out.output.contains("\"sum\":3"), "{}", out.output);
}

#[test]
fn a_caller_past_its_share_is_refused_busy_while_others_run() {
    let (_dir, exec, spin) = executor_with("share", "endless-loop");
    let quick = put(&exec, wasm("json-transform"));
    exec.prepare_reagent(&quick).unwrap();
    let probe = put(&exec, wasm("formula-probe"));
    let link = RouterLink::new(
        cyfr_core::host_api::Callback {
            url: "http://127.0.0.1:9".into(),
            token: "unused".into(),
            key: None,
        },
        None,
    );
    let long = Limits {
        timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    std::thread::scope(|s| {
        // Caller A's endless runs: its whole share (`hold_slots` names them holder0).
        let loops = hold_slots(s, &exec, &spin, CALLER_SHARE);
        assert_eq!(exec.slots.held_by("holder0"), CALLER_SHARE);
        // A's next run, a quick one, is refused at once, not queued (it would otherwise
        // wait the 30 s for a slot of its own share).
        let err = exec
            .run_execution(
                "a-extra",
                "holder0",
                &quick,
                r#"{"data":[1]}"#,
                &long,
                None,
                &mut Leftovers::default(),
            )
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::Busy {
                share: CALLER_SHARE
            }
        );
        assert_eq!(err.code(), "busy");
        // A formula of A (whose children would count against A too) likewise.
        let print = r#"{"steps":[{"fn":"print","text":"started"}]}"#;
        let err = exec
            .run_formula(
                "a-formula",
                "holder0",
                &probe,
                print,
                &long,
                &link,
                &mut Leftovers::default(),
            )
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::Busy {
                share: CALLER_SHARE
            }
        );
        // Caller B completes while A's runs are all still going.
        let out = exec
            .run_execution(
                "b-run",
                "caller-b",
                &quick,
                r#"{"data":[1,2]}"#,
                &long,
                None,
                &mut Leftovers::default(),
            )
            .unwrap();
        assert!(out.output.contains("\"sum\":3"), "{}", out.output);
        assert_eq!(
            exec.slots.held_by("holder0"),
            CALLER_SHARE,
            "A's runs were still running"
        );
        stop_loops(&exec, loops);
    });
    assert_eq!(exec.slots.held_by("holder0"), 0);
    let out = exec
        .run_execution(
            "a-again",
            "holder0",
            &quick,
            r#"{"data":[4]}"#,
            &long,
            None,
            &mut Leftovers::default(),
        )
        .unwrap();
    assert!(out.output.contains("\"sum\":4"), "{}", out.output);
}

#[test]
fn swapped_or_forged_compiled_code_is_not_run() {
    let dir = TempDir::new("swap");
    let cache = dir.0.join("cache");
    // The key lives outside the cache directory.
    let key_file = dir.0.join(crate::code_cache::KEY_FILE);
    let key = || Arc::new(CacheKey::load_or_create(&key_file).unwrap());
    let (json, stats) = (
        Executor::digest_of(wasm("json-transform")),
        Executor::digest_of(wasm("text-stats")),
    );
    let cwasm = |d: &str| {
        cache
            .join("compiled")
            .join(format!("{}.cwasm", parse_digest(d).unwrap()))
    };
    {
        let exec = Executor::with_cache_key(&cache, key()).unwrap();
        put(&exec, wasm("json-transform"));
        put(&exec, wasm("text-stats"));
        run_json(&exec, &json, json!({"data": [1]}));
        run_json(&exec, &stats, json!({"text": "a"}));
    }
    // The attack: text-stats' compiled code (its tag with it) under json-transform's name.
    std::fs::copy(cwasm(&stats), cwasm(&json)).unwrap();
    {
        let exec = Executor::with_cache_key(&cache, key()).unwrap();
        assert_eq!(
            run_json(&exec, &json, json!({"data": [1, 2]}))["sum"],
            3,
            "json-transform ran"
        );
        assert_eq!((exec.compiles(), exec.disk_loads()), (1, 0));
    }
    // It was overwritten with a good entry, which the next executor loads.
    {
        let exec = Executor::with_cache_key(&cache, key()).unwrap();
        assert_eq!(run_json(&exec, &json, json!({"data": [5]}))["sum"], 5);
        assert_eq!((exec.compiles(), exec.disk_loads()), (0, 1));
    }
    // Forged: text-stats' code sealed for json-transform's digest with another key (as a
    // server sharing the cache directory would), and its code with json's tag.
    let other = CacheKey::load_or_create(&dir.0.join("other.key")).unwrap();
    let stats_file = std::fs::read(cwasm(&stats)).unwrap();
    let json_file = std::fs::read(cwasm(&json)).unwrap();
    let stats_code = &stats_file[48..];
    let json_hex = parse_digest(&json).unwrap();
    let copied_tag = [&json_file[..48], stats_code].concat();
    for forged in [
        other.seal(json_hex, stats_code),
        copied_tag,
        stats_code.to_vec(),
    ] {
        std::fs::write(cwasm(&json), forged).unwrap();
        let exec = Executor::with_cache_key(&cache, key()).unwrap();
        assert_eq!(
            run_json(&exec, &json, json!({"data": [2, 2]}))["sum"],
            4,
            "json-transform ran"
        );
        assert_eq!((exec.compiles(), exec.disk_loads()), (1, 0));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache), 0o700);
        assert_eq!(mode(&cache.join("compiled")), 0o700);
        assert_eq!(mode(&cache.join("artifacts")), 0o700);
        assert_eq!(mode(&key_file), 0o600);
    }
}

#[test]
fn fuel_budget_stops_endless_loop() {
    let (exec, digest_of) = shared();
    let digest = digest_of("endless-loop");
    let limits = Limits {
        fuel: Some(5_000_000),
        ..Limits::default()
    };
    let err = exec.run_reagent(&digest, "{}", &limits).unwrap_err();
    assert_eq!(err, ExecError::FuelExhausted);
}

#[test]
fn oversize_input_is_rejected_without_running() {
    let (_dir, exec, digest) = executor_with("big-input", "json-transform");
    let limits = Limits {
        max_input_bytes: 16,
        ..Limits::default()
    };
    let err = exec
        .run_reagent(&digest, r#"{"data":[1,2,3,4,5,6]}"#, &limits)
        .unwrap_err();
    assert_eq!(
        err,
        ExecError::InputTooLarge {
            size: 22,
            limit: 16
        }
    );
    assert_eq!(exec.compiles(), 0, "nothing should have been compiled");
}

#[test]
fn oversize_output_is_rejected() {
    let (exec, digest_of) = shared();
    let digest = digest_of("json-transform");
    let limits = Limits {
        max_output_bytes: 10,
        ..Limits::default()
    };
    let err = exec
        .run_reagent(&digest, r#"{"data":[1,2,3]}"#, &limits)
        .unwrap_err();
    assert!(
        matches!(err, ExecError::OutputTooLarge { limit: 10, size } if size > 10),
        "{err:?}"
    );
}

#[test]
fn wrong_digest_is_rejected() {
    let dir = TempDir::new("wrong-digest");
    let exec = Executor::new(&dir.0).unwrap();
    let bytes = wasm("json-transform");
    let claimed = Executor::digest_of(b"something else");
    let err = exec.put_artifact(&claimed, bytes).unwrap_err();
    assert_eq!(
        err,
        ExecError::DigestMismatch {
            expected: claimed.clone(),
            actual: Executor::digest_of(bytes)
        }
    );
    assert_eq!(err.code(), "digest_mismatch");
    assert!(!exec.has_artifact(&claimed));
    assert!(!exec.has_artifact(&Executor::digest_of(bytes)));
}

#[test]
fn tampered_artifact_on_disk_is_not_compiled() {
    let (dir, exec, digest) = executor_with("tampered", "json-transform");
    let hex = parse_digest(&digest).unwrap();
    std::fs::write(
        dir.0.join("artifacts").join(format!("{hex}.wasm")),
        wasm("endless-loop"),
    )
    .unwrap();
    let err = exec
        .run_reagent(&digest, "{}", &Limits::default())
        .unwrap_err();
    assert_eq!(
        err,
        ExecError::DigestMismatch {
            expected: digest,
            actual: Executor::digest_of(wasm("endless-loop"))
        }
    );
    assert_eq!(exec.compiles(), 0);
}

#[test]
fn unknown_digest_is_artifact_missing() {
    let dir = TempDir::new("unknown");
    let exec = Executor::new(&dir.0).unwrap();
    for digest in [
        Executor::digest_of(b"never stored"),
        "sha256:../../etc/passwd".to_string(),
        "md5:abc".to_string(),
    ] {
        let err = exec
            .run_reagent(&digest, "{}", &Limits::default())
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::ArtifactMissing {
                digest: digest.clone()
            }
        );
        assert_eq!(err.code(), "artifact_missing");
        assert!(!exec.has_artifact(&digest));
    }
}

#[test]
fn compiled_cache_survives_a_new_executor() {
    let dir = TempDir::new("disk-cache");
    let bytes = wasm("json-transform");
    let digest = Executor::digest_of(bytes);
    let cwasm = dir
        .0
        .join("compiled")
        .join(format!("{}.cwasm", parse_digest(&digest).unwrap()));
    {
        let exec = Executor::new(&dir.0).unwrap();
        exec.put_artifact(&digest, bytes).unwrap();
        assert!(exec.has_artifact(&digest));
        run_json(&exec, &digest, json!({"data": [1]}));
        run_json(&exec, &digest, json!({"data": [2]}));
        assert_eq!(exec.compiles(), 1, "second run uses the in-memory cache");
        assert!(cwasm.is_file());
    }
    let written = std::fs::metadata(&cwasm).unwrap().modified().unwrap();

    let exec = Executor::new(&dir.0).unwrap();
    assert!(exec.has_artifact(&digest));
    assert_eq!(run_json(&exec, &digest, json!({"data": [5]}))["sum"], 5);
    assert_eq!(exec.compiles(), 0, "must not recompile");
    assert_eq!(exec.disk_loads(), 1);
    assert_eq!(
        std::fs::metadata(&cwasm).unwrap().modified().unwrap(),
        written
    );
}

#[test]
fn unusable_compiled_cache_is_recompiled_and_overwritten() {
    let (dir, exec, digest) = executor_with("stale-cache", "json-transform");
    drop(exec);
    let cwasm = dir
        .0
        .join("compiled")
        .join(format!("{}.cwasm", parse_digest(&digest).unwrap()));
    std::fs::write(&cwasm, b"compiled by some other engine").unwrap();

    let exec = Executor::new(&dir.0).unwrap();
    assert_eq!(run_json(&exec, &digest, json!({"data": [7]}))["max"], 7);
    assert_eq!(exec.compiles(), 1);
    assert_ne!(
        std::fs::read(&cwasm).unwrap(),
        b"compiled by some other engine"
    );
}

#[test]
fn non_component_bytes_are_invalid_component() {
    let dir = TempDir::new("invalid");
    let exec = Executor::new(&dir.0).unwrap();
    let core_module: &[u8] = b"\0asm\x01\0\0\0"; // an empty core module, not a component
    let wat_text: &[u8] = b"(component)"; // WAT is text, never compiled from storage
    for bytes in [&b"definitely not wasm"[..], core_module, wat_text] {
        let digest = Executor::digest_of(bytes);
        exec.put_artifact(&digest, bytes).unwrap();
        let err = exec
            .run_reagent(&digest, "{}", &Limits::default())
            .unwrap_err();
        assert!(matches!(err, ExecError::InvalidComponent(_)), "{err:?}");
        assert_eq!(err.code(), "invalid_component");
        // The verdict is remembered rather than recomputed.
        assert_eq!(
            exec.run_reagent(&digest, "{}", &Limits::default())
                .unwrap_err(),
            err
        );
    }
    // A valid component of the wrong world (no `compute` export).
    let empty_component: &[u8] = b"\0asm\x0d\0\x01\0";
    let digest = Executor::digest_of(empty_component);
    exec.put_artifact(&digest, empty_component).unwrap();
    let err = exec
        .run_reagent(&digest, "{}", &Limits::default())
        .unwrap_err();
    assert!(matches!(err, ExecError::InvalidComponent(_)), "{err:?}");
}

#[test]
fn concurrent_runs_share_one_executor() {
    let (_dir, exec, digest) = executor_with("concurrent", "json-transform");
    let exec = Arc::new(exec);
    // Eight simultaneous first runs: the component must be compiled exactly once.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (exec, digest) = (Arc::clone(&exec), digest.clone());
            std::thread::spawn(move || {
                let out = exec.run_reagent(
                    &digest,
                    &json!({"data": [i, i]}).to_string(),
                    &Limits::default(),
                );
                serde_json::from_str::<Value>(&out.unwrap().output).unwrap()["sum"].clone()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), json!(2 * i));
    }
    assert_eq!(exec.compiles(), 1);
}

#[test]
fn non_json_output_is_wrapped_as_raw() {
    assert_eq!(json_or_raw(r#"{"a":1}"#.into()), r#"{"a":1}"#);
    assert_eq!(json_or_raw("[1, 2]".into()), "[1, 2]");
    assert_eq!(
        json_or_raw("hello \"world\"".into()),
        r#"{"raw":"hello \"world\""}"#
    );
    assert_eq!(json_or_raw(String::new()), r#"{"raw":""}"#);
}

#[test]
fn error_codes_are_stable() {
    let cases = [
        (
            ExecError::InputTooLarge { size: 2, limit: 1 },
            "input_too_large",
        ),
        (
            ExecError::OutputTooLarge { size: 2, limit: 1 },
            "output_too_large",
        ),
        (ExecError::Timeout { limit_ms: 1 }, "timeout"),
        (ExecError::MemoryLimit { limit_bytes: 1 }, "memory_limit"),
        (ExecError::FuelExhausted, "fuel_exhausted"),
        (ExecError::Cancelled, "cancelled"),
        (ExecError::Busy { share: 16 }, "busy"),
        (ExecError::Trap("x".into()), "trap"),
        (
            ExecError::ArtifactMissing { digest: "d".into() },
            "artifact_missing",
        ),
        (
            ExecError::DigestMismatch {
                expected: "a".into(),
                actual: "b".into(),
            },
            "digest_mismatch",
        ),
        (ExecError::InvalidComponent("x".into()), "invalid_component"),
        (ExecError::Internal("x".into()), "internal"),
    ];
    for (err, code) in cases {
        assert_eq!(err.code(), code);
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn capped_pipe_keeps_the_first_bytes() {
    let pipe = CappedPipe::new(4);
    pipe.push(b"abcdef");
    pipe.push(b"gh");
    assert_eq!(pipe.text(), "abcd\n[... 4 more bytes dropped]");
}

#[test]
fn executor_is_send_and_sync_and_stops_its_ticker() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Executor>();
    let dir = TempDir::new("drop");
    let exec = Executor::new(&dir.0).unwrap();
    let started = Instant::now();
    drop(exec); // joins the ticker thread
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// What async yielding buys: on a runtime with one thread, a CPU-bound guest does not stop
/// another run on the same thread from starting and finishing.
#[tokio::test(flavor = "current_thread")]
async fn an_endless_guest_does_not_hold_the_only_worker() {
    let (exec, digest_of) = shared();
    let (spin_digest, ok_digest) = (digest_of("endless-loop"), digest_of("json-transform"));
    exec.prepare_reagent(&spin_digest).unwrap();
    exec.prepare_reagent(&ok_digest).unwrap();
    let spin = tokio::spawn(async move {
        let limits = Limits::default();
        let spec = RunSpec {
            execution_id: Some("yielding-spin"),
            caller: Some("yielding"),
            digest: &spin_digest,
            input: "{}",
            limits: &limits,
            guest: Guest::Reagent,
            stderr_tap: None,
        };
        exec.run_async(spec, &mut Leftovers::default()).await
    });
    // Let the spinning run start before the second one is asked for.
    while !exec.running.contains("yielding-spin") {
        tokio::task::yield_now().await;
    }
    let limits = Limits::default();
    let spec = RunSpec {
        execution_id: Some("yielding-ok"),
        caller: Some("yielding"),
        digest: &ok_digest,
        input: r#"{"data":[]}"#,
        limits: &limits,
        guest: Guest::Reagent,
        stderr_tap: None,
    };
    let out = exec
        .run_async(spec, &mut Leftovers::default())
        .await
        .unwrap();
    assert_eq!(out.output, r#"{"count":0,"data":[]}"#);
    // The other run finished while the endless one was still going.
    assert!(!spin.is_finished());
    assert!(exec.cancel("yielding-spin"));
    assert_eq!(spin.await.unwrap().unwrap_err(), ExecError::Cancelled);
}

/// A run without a fuel budget is not metered (an endless guest runs until its timeout);
/// one with a budget ends `fuel_exhausted`.
#[test]
fn only_a_run_with_a_fuel_budget_is_metered() {
    let (exec, digest_of) = shared();
    let digest = digest_of("endless-loop");
    let unmetered = Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let err = exec.run_reagent(&digest, "{}", &unmetered).unwrap_err();
    assert_eq!(err, ExecError::Timeout { limit_ms: 300 });
    let metered = Limits {
        fuel: Some(5_000_000),
        ..Limits::default()
    };
    let err = exec.run_reagent(&digest, "{}", &metered).unwrap_err();
    assert_eq!(err.code(), "fuel_exhausted");
}
