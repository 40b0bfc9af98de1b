//! `--soak`: a bounded load at a fixed request rate for N minutes, mixed (tools/list,
//! key.list, secret.list, execution.run of json-transform), every answer checked. Every 30 s
//! it prints elapsed, requests, errors, p50/p99 and the RSS of the process serving cyfr (this
//! one: the server runs in-process); at the end the RSS trend, first third against last
//! third. Fails on any error.

use crate::load::{Client, HttpClient, HttpTarget};
use crate::Bench;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests in flight at most; the schedule is open-loop up to this many. Each worker keeps
/// one connection per kind of request, so 8 workers hold 32: well inside the server's 64
/// connections per peer (16 workers held exactly 64, and every reconnect was refused).
const WORKERS: usize = 8;
/// How often a progress line is printed.
const REPORT_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Window {
    requests: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

/// Runs the soak; `Err` if any request failed.
pub fn run(b: &Bench, minutes: f64, rate: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        minutes > 0.0 && rate > 0.0,
        "--minutes and --rate must be positive"
    );
    let c = &b.cyfr;
    let mcp = |key: &str, body: serde_json::Value, verify| {
        Arc::new(HttpTarget {
            addr: c.addr,
            method: Method::POST,
            path: "/mcp".into(),
            headers: Bench::mcp_headers(Some(key)),
            body: Bytes::from(body.to_string()),
            verify,
            verify_errors: false,
        })
    };
    let call = |tool: &str, args: serde_json::Value| json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "arguments": args } });
    // One secret so secret.list has something to list.
    b.tool(&c.admin, "secret", json!({ "action": "set", "name": "SOAK_SECRET", "value": "soak-value-0123456789abcdef", "scope": "org" }))?;
    let targets: Vec<(&str, Arc<HttpTarget>)> = vec![
        (
            "tools/list",
            mcp(
                &c.key,
                json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }),
                verify_tools,
            ),
        ),
        (
            "key.list",
            mcp(
                &c.admin,
                call("key", json!({ "action": "list" })),
                verify_tool_ok,
            ),
        ),
        (
            "secret.list",
            mcp(
                &c.admin,
                call("secret", json!({ "action": "list" })),
                verify_tool_ok,
            ),
        ),
        (
            "execution.run",
            b.run_target(
                &c.reference,
                "reagent",
                json!({ "data": [1, 2, 3] }),
                verify_run,
            ),
        ),
    ];
    let total = Duration::from_secs_f64(minutes * 60.0);
    let interval = Duration::from_secs_f64(1.0 / rate);
    say!(
        "soak: {minutes} min at {rate} req/s, mixed {:?}, up to {WORKERS} in flight",
        targets.iter().map(|t| t.0).collect::<Vec<_>>()
    );
    println!(
        "{:>8} {:>10} {:>7} {:>9} {:>9} {:>10}",
        "elapsed", "requests", "errors", "p50 ms", "p99 ms", "RSS MiB"
    );

    let window = Rc::new(RefCell::new(Window::default()));
    let first_error: Rc<RefCell<Option<String>>> = Rc::default();
    let (mut requests, mut errors, mut all_ms, mut rss) = (0u64, 0u64, Vec::new(), Vec::new());
    let local = tokio::task::LocalSet::new();
    b.client_rt.block_on(local.run_until(async {
        let start = tokio::time::Instant::now();
        let next = Rc::new(RefCell::new(0u64));
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            let (window, first_error, next) = (window.clone(), first_error.clone(), next.clone());
            let mut clients: Vec<(&'static str, HttpClient)> = targets
                .iter()
                .map(|(n, t)| (*n, HttpClient::new(t.clone())))
                .collect();
            workers.push(tokio::task::spawn_local(async move {
                loop {
                    // The next slot of the fixed schedule, shared by all workers.
                    let slot = {
                        let mut n = next.borrow_mut();
                        *n += 1;
                        *n - 1
                    };
                    let at = start + interval * slot as u32;
                    if at.duration_since(start) >= total {
                        return;
                    }
                    tokio::time::sleep_until(at).await;
                    let i = slot as usize % clients.len();
                    let (name, client) = &mut clients[i];
                    let t0 = Instant::now();
                    let r = client.call().await;
                    let ms = t0.elapsed().as_secs_f64() * 1000.0;
                    let mut w = window.borrow_mut();
                    w.requests += 1;
                    w.latencies_ms.push(ms);
                    if let Err(e) = r {
                        w.errors += 1;
                        first_error
                            .borrow_mut()
                            .get_or_insert_with(|| format!("{name}: {e}"));
                    }
                }
            }));
        }
        let mut ticks = tokio::time::interval_at(start + REPORT_EVERY, REPORT_EVERY);
        loop {
            let finished = workers.iter().all(|w| w.is_finished());
            if !finished {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
            let mut w = std::mem::take(&mut *window.borrow_mut());
            // The last window can be empty when the end falls on a report.
            if finished && w.requests == 0 && !rss.is_empty() {
                break;
            }
            requests += w.requests;
            errors += w.errors;
            let now_rss = rss_mib();
            rss.push(now_rss);
            let (p50, p99) = (
                percentile(&mut w.latencies_ms, 0.50),
                percentile(&mut w.latencies_ms, 0.99),
            );
            all_ms.extend(w.latencies_ms);
            println!(
                "{:>7.0}s {:>10} {:>7} {:>9.3} {:>9.3} {:>10.1}",
                start.elapsed().as_secs_f64(),
                requests,
                errors,
                p50,
                p99,
                now_rss
            );
            if finished {
                break;
            }
        }
    }));
    let third = (rss.len() / 3).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let (early, late) = (
        mean(&rss[..third.min(rss.len())]),
        mean(&rss[rss.len().saturating_sub(third)..]),
    );
    println!(
        "soak summary: {requests} requests in {minutes} min ({:.1} req/s), {errors} errors, p50 {:.3} ms, p99 {:.3} ms, RSS first third {early:.1} MiB, last third {late:.1} MiB ({:+.1}%)",
        requests as f64 / (minutes * 60.0),
        percentile(&mut all_ms, 0.50),
        percentile(&mut all_ms, 0.99),
        (late - early) / early.max(1e-9) * 100.0
    );
    if errors > 0 {
        anyhow::bail!(
            "{errors} requests failed; first: {}",
            first_error.borrow().clone().unwrap_or_default()
        );
    }
    Ok(())
}

/// VmRSS of this process (which serves cyfr), in MiB.
fn rss_mib() -> f64 {
    proc_status_mib("VmRSS:")
}

/// A `kB` line of this process's `/proc/self/status` (`VmRSS:`, `VmHWM:`), in MiB; 0 if absent.
pub(crate) fn proc_status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn answer(body: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))
}

fn verify_tools(body: &[u8]) -> Result<(), String> {
    let v = answer(body)?;
    v["result"]["tools"]
        .as_array()
        .filter(|t| !t.is_empty())
        .map(|_| ())
        .ok_or_else(|| format!("unexpected: {v}"))
}

fn verify_tool_ok(body: &[u8]) -> Result<(), String> {
    let v = answer(body)?;
    (v.get("error").is_none() && v["result"]["isError"] == json!(false))
        .then_some(())
        .ok_or_else(|| format!("unexpected: {v}"))
}

fn verify_run(body: &[u8]) -> Result<(), String> {
    let v = answer(body)?;
    let sc = &v["result"]["structuredContent"];
    (sc["status"] == "completed" && sc["result"]["sum"] == 6)
        .then_some(())
        .ok_or_else(|| format!("unexpected: {v}"))
}
