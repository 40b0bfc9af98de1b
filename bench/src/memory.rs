//! `--memory`: many concurrent runs of a reagent that really fills its memory cap.
//!
//! The memory-bomb test fixture with `{"mib": N}` allocates and touches N MiB and answers
//! `{"mib": N}`; its policy keeps the default 64 MiB cap. `--concurrency` connections (1,000
//! in BENCHMARKS.md) run it over and over through `/mcp`. Every answer is sorted: completed
//! (and said `mib: N`), refused busy (the caller's share of the host's slots is taken: a
//! documented answer, `-33005` with `reason: "busy"`), timed out (`-33101`, documented), or
//! anything else — which fails the mode. The process's peak RSS (`VmHWM`: cyfr, its host
//! and the client are this one process) is read at the end.

use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

use anyhow::{bail, Context as _};
use serde_json::{json, Value as Json};

use crate::load::HttpClient;
use crate::verify::parse;
use crate::Bench;

/// Answers by kind, counted by [`verify_memory_run`] (a plain `fn`, so the counters are
/// statics).
static COMPLETED: AtomicU64 = AtomicU64::new(0);
static BUSY: AtomicU64 = AtomicU64::new(0);
static TIMEOUT: AtomicU64 = AtomicU64::new(0);
static OTHER: AtomicU64 = AtomicU64::new(0);
/// The MiB each run asks for (set once before the row).
static MIB: AtomicU64 = AtomicU64::new(0);
/// The first answer of the "other" kind.
static FIRST_OTHER: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

pub(crate) fn run(b: &Bench, mib: u64, keys: usize, json_out: bool) -> anyhow::Result<()> {
    let manifest = json!({
        "id": "reagent:bench.memory", "type": "reagent", "version": "0.1.0",
        "description": "cyfr-bench: the memory-bomb test fixture", "secrets": [],
    });
    let reference = b.register(manifest, &b.wasm("memory_bomb.wasm")?, &[])?;
    MIB.store(mib, Ordering::Relaxed);
    let input = json!({ "mib": mib });
    let first = b.tool(
        &b.cyfr.key,
        "execution",
        json!({ "action": "run", "reference": reference, "type": "reagent", "input": input }),
    )?;
    if first["status"] != "completed" || first["result"]["mib"] != json!(mib) {
        bail!("first execution.run of {reference} answered {first}");
    }
    say!("{reference} registered and run once ({mib} MiB)");

    // One caller's share of the host's slots is 16 runs: with several keys (callers) the
    // host's slots all fill, and with them its memory.
    let mut targets = Vec::new();
    for k in 0..keys.max(1) {
        let key = match k {
            0 => b.cyfr.key.clone(),
            _ => b.tool(&b.cyfr.admin, "key", json!({ "action": "create", "name": format!("memory-{k}"), "type": "secret", "scope": ["execution"] }))?["key"]
                .as_str()
                .context("key create returned no key")?
                .to_string(),
        };
        let mut target = crate::load::HttpTarget {
            headers: Bench::mcp_headers(Some(&key)),
            ..Arc::into_inner(b.run_target(&reference, "reagent", input.clone(), verify_memory_run))
                .expect("not shared")
        };
        // The busy refusal comes as HTTP 429: sorted, not counted unread.
        target.verify_errors = true;
        targets.push(Arc::new(target));
    }
    let next = AtomicU64::new(0);
    let stats = b.row(&format!("cyfr {mib} MiB runs"), || {
        let i = next.fetch_add(1, Ordering::Relaxed) as usize % targets.len();
        HttpClient::new(targets[i].clone())
    });
    let counts = [&COMPLETED, &BUSY, &TIMEOUT, &OTHER].map(|c| c.load(Ordering::Relaxed));
    // The process's peak resident set.
    let hwm = crate::soak::proc_status_mib("VmHWM:");
    if json_out {
        println!(
            "{}",
            json!({
                "benchmark": "concurrent execution.run of a reagent filling its 64 MiB cap",
                "mib_per_run": mib, "concurrency": b.concurrency, "keys": targets.len(),
                "row": stats.to_json(),
                "answers": { "completed": counts[0], "busy": counts[1], "timeout": counts[2], "other": counts[3] },
                "peak_rss_mib": hwm,
            })
        );
    } else {
        println!(
            "execution.run of the memory-bomb fixture touching {mib} MiB (64 MiB cap), {} connections over {} keys",
            b.concurrency,
            targets.len()
        );
        println!(
            "req/s {:.1}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (completed answers only)",
            stats.rps, stats.p50_ms, stats.p99_ms, stats.max_ms
        );
        println!(
            "answers (warm-up included): completed {}, refused busy {}, timed out {}, other {}",
            counts[0], counts[1], counts[2], counts[3]
        );
        println!("peak RSS (VmHWM, the whole process) {hwm:.0} MiB");
    }
    if counts[3] > 0 {
        bail!(
            "{} answers were neither completed nor a documented busy/timeout refusal; first: {}",
            counts[3],
            FIRST_OTHER.lock().unwrap().clone().unwrap_or_default()
        );
    }
    Ok(())
}

/// Counts the answer by kind; only a completed run that touched what it was asked to is `Ok`.
fn verify_memory_run(body: &[u8]) -> Result<(), String> {
    let v: Json = parse(body).inspect_err(|e| other(e.clone()))?;
    let sc = &v["result"]["structuredContent"];
    if sc["status"] == "completed" && sc["result"]["mib"] == json!(MIB.load(Ordering::Relaxed)) {
        COMPLETED.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let code = v["error"]["code"].as_i64();
    let why = format!("not completed: {}", crate::verify::excerpt(&v, 300));
    match (code, v["error"]["data"]["reason"].as_str()) {
        (Some(-33005), Some("busy")) => {
            BUSY.fetch_add(1, Ordering::Relaxed);
        }
        (Some(-33101), _) => {
            TIMEOUT.fetch_add(1, Ordering::Relaxed);
        }
        _ => other(why.clone()),
    }
    Err(why)
}

/// Counts an answer of the "other" kind and keeps the first.
fn other(why: String) {
    OTHER.fetch_add(1, Ordering::Relaxed);
    FIRST_OTHER.lock().unwrap().get_or_insert(why);
}
