//! `--formula`: what each child a formula starts costs, against one top-level
//! `execution.run` of the same reagent.
//!
//! The formula is the `formula-probe` test fixture (`tests/fixtures/formula-probe`),
//! registered inline as `formula:bench.probe:0.1.0`; its input is a list of steps, and each
//! child is json-transform with `{"data":[1,2,3]}`:
//!
//! - sequential: N steps `{"fn":"call","req":{"reference":"reagent:cyfr.json-transform:0.1.0",
//!   "input":{"data":[1,2,3]}}}` (`invoke.call`, one child after the other);
//! - batch: `{"fn":"batch","req":{"invocations":[…N…]}}` then `{"fn":"wait_all","of":0}`
//!   (`invoke.call-batch`: the N children start at once; the probe then calls `poll-all`
//!   right away and every 20 ms until all are done, so a batch's time is rounded up to the
//!   probe's 20 ms polling and its wall-clock figure is only an upper bound).
//!
//! Rows, all through `POST /mcp` `execution.run` with the bench key: json-transform
//! top-level, the probe with 0 steps, the probe with N = 1, 4, 16 sequential children, with
//! one batch of N = 4, 16, and then json-transform and the 0-step probe again (to show drift
//! as the database fills with records). Concurrency is 1 unless `--concurrency` says
//! otherwise: these are latencies.
//!
//! Per child: `(t(N) − t(0)) / N`, where t(0) is the mean of the two 0-step rows, compared
//! with one top-level json-transform run (the mean of its two rows). Wall-clock uses the
//! p50 latency; CPU uses the process's CPU per request (cores used × window / completed),
//! which the batch's 20 ms polling does not inflate, since the probe sleeps through it.
//!
//! The probe's and json-transform's policy `rate_limit` is `--policy-rate-limit`: children
//! count against the caller's per-component limit too, and the default of 100/1m would
//! refuse them. Every answer is checked: each child `completed` with `sum == 6`.

use std::sync::Arc;

use anyhow::bail;
use serde_json::{json, Value as Json};

use crate::load::{self, HttpTarget, Stats};
use crate::{Args, Bench};

/// A row: its name, the number of children, whether they run as one batch, its target.
struct Case {
    name: String,
    children: usize,
    target: Arc<HttpTarget>,
}

pub(crate) fn run(b: &Bench, args: &Args, rate_limit: Option<&str>) -> anyhow::Result<()> {
    let manifest = json!({
        "id": "formula:bench.probe", "type": "formula", "version": "0.1.0",
        "description": "cyfr-bench: the formula-probe test fixture", "secrets": [],
        "wasi": { "http": false, "streaming": false, "secrets": false },
    });
    let probe = b.register(manifest, &b.wasm("formula_probe.wasm")?, &[])?;
    let child = json!({ "reference": b.cyfr.reference, "input": serde_json::from_str::<Json>(crate::INPUT)? });
    let call = json!({ "fn": "call", "req": child });
    let sequential = |n: usize| json!({ "steps": vec![call.clone(); n] });
    let batch = |n: usize| json!({ "steps": [{ "fn": "batch", "req": { "invocations": vec![child.clone(); n] } }, { "fn": "wait_all", "of": 0 }] });

    let t = std::time::Instant::now();
    let first = b.tool(
        &b.cyfr.key,
        "execution",
        json!({ "action": "run", "reference": probe, "type": "formula", "input": sequential(1) }),
    )?;
    let check = json!({ "result": { "structuredContent": first } }).to_string();
    if let Err(e) = verify_probe(check.as_bytes()) {
        bail!("first execution.run of {probe}: {e}");
    }
    say!(
        "{probe} registered; first execution.run (artifact upload + compile) took {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let jt_input = serde_json::from_str::<Json>(crate::INPUT)?;
    let jt = b.run_target(
        &b.cyfr.reference,
        "reagent",
        jt_input,
        crate::verify_cyfr_run,
    );
    let case = |name: &str, children: usize, input: Json| Case {
        name: name.to_string(),
        children,
        target: b.run_target(&probe, "formula", input, verify_probe),
    };
    let cases = [
        case("probe, 1 call", 1, sequential(1)),
        case("probe, 4 calls", 4, sequential(4)),
        case("probe, 16 calls", 16, sequential(16)),
        case("probe, batch of 4", 4, batch(4)),
        case("probe, batch of 16", 16, batch(16)),
    ];
    let empty = b.run_target(&probe, "formula", json!({ "steps": [] }), verify_probe);

    let mut results: Vec<Stats> = Vec::new();
    results.push(b.http_row("json-transform (top-level)", &jt));
    results.push(b.http_row("probe, 0 steps", &empty));
    for c in &cases {
        results.push(b.http_row(&c.name, &c.target));
    }
    results.push(b.http_row("json-transform (again)", &jt));
    results.push(b.http_row("probe, 0 steps (again)", &empty));

    report(b, args, &results, &cases, rate_limit);
    Ok(())
}

/// CPU time the whole process spent per completed request, in ms.
fn cpu_ms(s: &Stats) -> f64 {
    s.self_cpu_cores * s.seconds * 1e3 / s.completed as f64
}

/// Per-child figures of one case.
struct PerChild {
    p50_ms: f64,
    mean_ms: f64,
    cpu_ms: f64,
}

fn report(b: &Bench, args: &Args, results: &[Stats], cases: &[Case], rate_limit: Option<&str>) {
    let (cores, cpu) = crate::machine();
    let n = results.len();
    let avg = |a: &Stats, b: &Stats, f: fn(&Stats) -> f64| (f(a) + f(b)) / 2.0;
    let (jt, jt2, zero, zero2) = (&results[0], &results[n - 2], &results[1], &results[n - 1]);
    let jt_p50 = avg(jt, jt2, |s| s.p50_ms);
    let jt_cpu = avg(jt, jt2, cpu_ms);
    let zero_p50 = avg(zero, zero2, |s| s.p50_ms);
    let zero_mean = avg(zero, zero2, |s| s.mean_ms);
    let zero_cpu = avg(zero, zero2, cpu_ms);
    let per_child: Vec<PerChild> = cases
        .iter()
        .zip(&results[2..n - 2])
        .map(|(c, s)| {
            let k = c.children as f64;
            PerChild {
                p50_ms: (s.p50_ms - zero_p50) / k,
                mean_ms: (s.mean_ms - zero_mean) / k,
                cpu_ms: (cpu_ms(s) - zero_cpu) / k,
            }
        })
        .collect();
    if args.json {
        let rows: Vec<Json> = results
            .iter()
            .map(|s| {
                let mut v = s.to_json();
                v["cpu_ms_per_request"] = json!(load::round(cpu_ms(s), 3));
                v
            })
            .collect();
        let children: Vec<Json> = cases
            .iter()
            .zip(&per_child)
            .map(|(c, p)| {
                json!({
                    "name": c.name, "children": c.children,
                    "per_child_p50_ms": load::round(p.p50_ms, 3),
                    "per_child_mean_ms": load::round(p.mean_ms, 3),
                    "per_child_cpu_ms": load::round(p.cpu_ms, 3),
                    "per_child_p50_over_top_level_p50": load::round(p.p50_ms / jt_p50, 3),
                    "per_child_cpu_over_top_level_cpu": load::round(p.cpu_ms / jt_cpu, 3),
                })
            })
            .collect();
        let out = json!({
            "benchmark": "formula fan-out: cost per child (formula-probe, json-transform children) vs one top-level execution.run",
            "machine": { "cores": cores, "cpu": cpu },
            "config": { "concurrency": b.concurrency, "warmup_seconds": args.warmup, "seconds": args.seconds, "key_rate_limit": rate_limit, "policy_rate_limit": args.policy_rate_limit },
            "results": rows,
            "top_level": { "p50_ms": load::round(jt_p50, 3), "cpu_ms": load::round(jt_cpu, 3) },
            "zero_steps": { "p50_ms": load::round(zero_p50, 3), "mean_ms": load::round(zero_mean, 3), "cpu_ms": load::round(zero_cpu, 3) },
            "per_child": children,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
        return;
    }
    println!(
        "formula fan-out: formula-probe children = execution.run of json-transform {}",
        crate::INPUT
    );
    println!(
        "{cores} cores ({cpu}); {} connection(s); {} s warm-up + {} s measured per row; key rate limit: {}; policy rate limit: {}",
        b.concurrency,
        args.warmup,
        args.seconds,
        rate_limit.unwrap_or("none"),
        args.policy_rate_limit
    );
    println!();
    crate::print_table(results);
    println!(
        "top-level json-transform: p50 {jt_p50:.3} ms, CPU {jt_cpu:.3} ms per run; probe with 0 steps: p50 {zero_p50:.3} ms, mean {zero_mean:.3} ms, CPU {zero_cpu:.3} ms (each the mean of its two rows)"
    );
    println!("CPU per request = cores used by the process (servers + client) x window / completed requests.");
    println!();
    println!(
        "{:<24} {:>4} {:>13} {:>14} {:>13} {:>13} {:>13}",
        "per child",
        "N",
        "p50 ms/child",
        "mean ms/child",
        "x top-level",
        "CPU ms/child",
        "x top-level"
    );
    for (c, p) in cases.iter().zip(&per_child) {
        println!(
            "{:<24} {:>4} {:>13.3} {:>14.3} {:>13.2} {:>13.3} {:>13.2}",
            c.name,
            c.children,
            p.p50_ms,
            p.mean_ms,
            p.p50_ms / jt_p50,
            p.cpu_ms,
            p.cpu_ms / jt_cpu
        );
    }
    println!();
    println!("per child = (row - probe with 0 steps) / N; x top-level = that / one top-level json-transform run (p50, CPU).");
    println!("A batch's wall clock is rounded up to the probe's 20 ms poll-all interval; its CPU figure is not.");
    crate::print_first_errors(results);
}

/// The probe's answer: completed, and every child it reports completed with `sum == 6`
/// (a batch's `wait_all` answer must hold as many children as the batch started).
fn verify_probe(body: &[u8]) -> Result<(), String> {
    let v = crate::parse(body)?;
    let sc = &v["result"]["structuredContent"];
    let fail = |what: &str| Err(format!("{what}: {}", crate::excerpt(&v, 600)));
    if sc["status"] != "completed" {
        return fail("the probe did not complete");
    }
    let Some(results) = sc["result"]["results"].as_array() else {
        return fail("no results");
    };
    let child_ok = |c: &Json| c["status"] == "completed" && c["output"]["sum"] == 6;
    let mut started: Option<u64> = None;
    for r in results {
        if let Some(count) = r.get("count") {
            started = count.as_u64();
        } else if let Some(done) = r.get("all_done") {
            let list = r["results"].as_array();
            if done != true
                || list.map(|l| l.len() as u64) != started
                || !list.is_some_and(|l| l.iter().all(child_ok))
            {
                return fail("a batch child did not complete");
            }
        } else if !child_ok(r) {
            return fail("a child did not complete");
        }
    }
    Ok(())
}
