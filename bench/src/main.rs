//! `cyfr-bench`: `execution.run` of a trivial reagent through cyfr's real `/mcp` endpoint
//! (API key, router, database, executor), against the same component behind a bare hyper +
//! wasmtime server, in one process, one run, one machine.
//!
//! Both servers run on one multi-threaded tokio runtime (one worker per core); the load
//! generator runs on the main thread on a current-thread runtime, with the same client code
//! for both sides. See BENCHMARKS.md for what the numbers mean.
//!
//! Two more benchmarks are modes of the same binary, on the same cyfr set-up:
//!
//! - `--catalyst` ([`catalyst`]): one HTTP GET to a small upstream server in this process,
//!   made by the http catalyst (`catalyst:cyfr.http:0.1.0`) through `/mcp` `execution.run`
//!   and through the executor alone, against the same GET made natively with hyper (a new
//!   connection per request, as cyfr's egress opens one per request).
//! - `--formula` ([`formula`]): the cost of each child a formula starts (`invoke.call` in
//!   sequence, or one `invoke.call-batch`), measured with the formula-probe test fixture
//!   against one top-level `execution.run` of json-transform; at concurrency 1 by default.
//!
//! ```text
//! cargo run --release -p cyfr-bench -- [--concurrency 8] [--seconds 10] [--warmup 2] [--json]
//!     [--breakdown] [--rate-limit 1000000/1s|none] [--policy-rate-limit 1000000/1s] [--no-build]
//! cargo run --release -p cyfr-bench -- --catalyst [--concurrency 8] [...]
//! cargo run --release -p cyfr-bench -- --formula [--concurrency 1] [...]
//! cargo run --release -p cyfr-bench -- --soak [--minutes 10] [--rate 50]
//! cargo run --release -p cyfr-bench -- --memory --concurrency 1000 [--mib 48] [--keys 1]
//! ```

/// A progress line on stderr.
macro_rules! say {
    ($($t:tt)*) => { eprintln!("cyfr-bench: {}", format!($($t)*)) };
}

mod baseline;
mod catalyst;
mod floor;
mod formula;
mod load;
mod memory;
mod server;
mod soak;
mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use hyper::Method;
use serde_json::{json, Value as Json};

use baseline::Baseline;
use load::{HttpClient, HttpTarget, InProcClient, Stats};
use server::{start_cyfr, tool, Cyfr, RemoveOnDrop};
use verify::*;

/// The reagent's input; json-transform answers with count/sum/min/max/mean.
const INPUT: &str = r#"{"data":[1,2,3]}"#;
const PROTOCOL_VERSION: &str = "2025-11-25";

#[derive(Parser, Debug)]
#[command(
    about = "cyfr /mcp execution.run vs a bare hyper + wasmtime server running the same reagent"
)]
struct Args {
    /// Concurrent connections (one request in flight on each). Default 8, or 1 with
    /// `--formula`.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Measured seconds per side.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Warm-up seconds per side (not measured).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Rate limit of the benchmark's API key (`none` for no limit). The default never
    /// refuses, but makes every request run the rate-limit statement.
    #[arg(long, default_value = "1000000/1s")]
    rate_limit: String,
    /// The reagent's policy `rate_limit` (per caller per component; cyfr's default, 100/1m,
    /// would refuse this load). The default never refuses.
    #[arg(long, default_value = "1000000/1s")]
    policy_rate_limit: String,
    /// Also measure the steps in between (cyfr /health, the runner floor, ping, tools/list;
    /// the executor and the baseline called in-process, without HTTP).
    #[arg(long, conflicts_with_all = ["catalyst", "formula"])]
    breakdown: bool,
    /// Instead: the http catalyst's GET through cyfr vs the same GET made natively.
    #[arg(long, conflicts_with = "formula")]
    catalyst: bool,
    /// Instead: the cost per child of a formula's `invoke.call` / `invoke.call-batch`.
    #[arg(long)]
    formula: bool,
    /// Instead: a soak ([`soak`]): `--minutes` at `--rate` requests/s, mixed tools and runs,
    /// with latency and RSS every 30 s; fails on any error.
    #[arg(long, conflicts_with_all = ["catalyst", "formula", "breakdown"])]
    soak: bool,
    /// Instead: `--concurrency` runs at once of a reagent that touches `--mib` MiB under the
    /// default 64 MiB cap ([`memory`]); reports answers by kind and the peak RSS, and fails on
    /// any answer but completed, busy or timeout. Raises the server's connection caps to fit.
    #[arg(long, conflicts_with_all = ["catalyst", "formula", "breakdown", "soak"])]
    memory: bool,
    /// MiB each `--memory` run allocates and touches.
    #[arg(long, default_value_t = 48)]
    mib: u64,
    /// Keys (callers) the `--memory` connections are spread over: one caller's share of the
    /// host's slots is 16 runs, so more keys fill more of them.
    #[arg(long, default_value_t = 1)]
    keys: usize,
    /// Soak length in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Soak request rate (requests per second, all kinds together).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Do not build the wasm components; use what is in target/wasm.
    #[arg(long)]
    no_build: bool,
}

impl Args {
    fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(if self.formula { 1 } else { 8 })
    }
}

/// What every mode shares: the runtimes, the cyfr server and the measuring window.
pub(crate) struct Bench {
    pub ws: PathBuf,
    pub server_rt: tokio::runtime::Runtime,
    pub client_rt: tokio::runtime::Runtime,
    pub cache_dir: PathBuf,
    pub cyfr: Cyfr,
    pub concurrency: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// The policy `rate_limit` given to every registered component.
    pub policy_rate_limit: String,
    /// `json-transform.wasm`.
    pub reagent_wasm: Vec<u8>,
}

impl Bench {
    /// The wasm32-wasip2 release build of `file`, e.g. `json_transform.wasm`.
    pub fn wasm(&self, file: &str) -> anyhow::Result<Vec<u8>> {
        std::fs::read(self.ws.join("target/wasm/wasm32-wasip2/release").join(file))
            .with_context(|| format!("reading {file}"))
    }

    /// One HTTP row: `concurrency` workers with keep-alive connections to `target`.
    pub fn http_row(&self, name: &str, target: &Arc<HttpTarget>) -> Stats {
        let t = target.clone();
        self.row(name, move || HttpClient::new(t.clone()))
    }

    /// One in-process row: `concurrency` workers calling `call`.
    pub fn call_row(&self, name: &str, call: &load::CallFn) -> Stats {
        let call = call.clone();
        self.row(name, move || InProcClient(call.clone()))
    }

    /// One row with workers made by `make`.
    pub fn row<C: load::Client + 'static>(&self, name: &str, make: impl Fn() -> C) -> Stats {
        say!(
            "measuring {name}: {}s warm-up + {}s, {} connections",
            self.warmup.as_secs(),
            self.measure.as_secs(),
            self.concurrency
        );
        let s = self.client_rt.block_on(load::run(
            name,
            self.concurrency,
            self.warmup,
            self.measure,
            make,
        ));
        say!(
            "  {name}: {:.1} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.errors
        );
        if let Some(e) = &s.first_error {
            say!("  first error: {e}");
        }
        s
    }

    /// An MCP `tools/call` as `key` (admin or the bench key) on a fresh connection.
    pub fn tool(&self, key: &str, name: &str, arguments: Json) -> anyhow::Result<Json> {
        self.server_rt
            .block_on(tool(self.cyfr.addr, key, name, arguments))
    }

    /// Registers a component inline with the admin key, sets its policy `rate_limit` and
    /// then every `(field, value)` in `policy`; returns its reference.
    pub fn register(
        &self,
        manifest: Json,
        wasm: &[u8],
        policy: &[(&str, Json)],
    ) -> anyhow::Result<String> {
        let admin = &self.cyfr.admin;
        let wasm_b64 = base64::engine::general_purpose::STANDARD.encode(wasm);
        let reg = self.tool(
            admin,
            "component",
            json!({ "action": "register", "manifest": manifest, "wasm": wasm_b64 }),
        )?;
        let reference = reg["reference"]
            .as_str()
            .context("register returned no reference")?
            .to_string();
        let rate = json!(self.policy_rate_limit);
        for (field, value) in std::iter::once(&("rate_limit", rate)).chain(policy) {
            self.tool(
                admin,
                "policy",
                json!({ "action": "set", "reference": reference, "field": field, "value": value }),
            )?;
        }
        Ok(reference)
    }

    /// The body of an MCP `tools/call` → `execution` / `run` of `reference` with `input`.
    pub fn run_body(reference: &str, component_type: &str, input: Json) -> Bytes {
        Bytes::from(
            json!({
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": { "name": "execution", "arguments": {
                    "action": "run", "reference": reference, "type": component_type, "input": input,
                }},
            })
            .to_string(),
        )
    }

    /// The headers of an MCP request, with the bench key unless `key` is `None`.
    pub fn mcp_headers(key: Option<&str>) -> Vec<(String, String)> {
        let mut h = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "accept".to_string(),
                "application/json, text/event-stream".to_string(),
            ),
            (
                "mcp-protocol-version".to_string(),
                PROTOCOL_VERSION.to_string(),
            ),
        ];
        if let Some(k) = key {
            h.push(("authorization".to_string(), format!("Bearer {k}")));
        }
        h
    }

    /// `POST /mcp` `execution.run` with the bench key.
    pub fn run_target(
        &self,
        reference: &str,
        component_type: &str,
        input: Json,
        verify: load::Verify,
    ) -> Arc<HttpTarget> {
        Arc::new(HttpTarget {
            addr: self.cyfr.addr,
            method: Method::POST,
            path: "/mcp".into(),
            headers: Bench::mcp_headers(Some(&self.cyfr.key)),
            body: Bench::run_body(reference, component_type, input),
            verify,
            verify_errors: false,
        })
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// mimalloc rather than glibc malloc: the server allocates on every request from two runtime
/// threads at once, where glibc's arena locks and consolidation showed as ~8 % of a run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Both sides alike: the baseline's wasmtime errors would capture backtraces too.
    cyfr_host::quiet_error_backtraces();
    let args = Args::parse();
    let concurrency = args.concurrency();
    anyhow::ensure!(
        concurrency > 0 && args.seconds > 0,
        "--concurrency and --seconds must be positive"
    );
    if args.memory {
        // One loopback peer opens them all: let the server accept them (before any thread
        // that could read the environment starts).
        let cap = (concurrency * 2).max(64).to_string();
        for var in ["CYFR_MAX_CONNECTIONS", "CYFR_MAX_CONNECTIONS_PER_PEER"] {
            if std::env::var_os(var).is_none() {
                std::env::set_var(var, &cap);
            }
        }
    }
    let ws = workspace();
    if !args.no_build {
        build_wasm()?;
    }
    let release = ws.join("target/wasm/wasm32-wasip2/release");
    let router_wasm =
        std::fs::read(release.join("cyfr_router.wasm")).context("reading cyfr_router.wasm")?;
    let reagent_wasm = std::fs::read(release.join("json_transform.wasm"))
        .context("reading json_transform.wasm")?;
    let manifest: Json = serde_json::from_str(&std::fs::read_to_string(
        ws.join("components/reagents/cyfr/json-transform/0.1.0/cyfr-manifest.json"),
    )?)?;

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // Baseline (the default mode only).
    let baseline = if args.catalyst || args.formula || args.soak || args.memory {
        None
    } else {
        say!("compiling the reagent for the baseline");
        let base = Baseline::new(&reagent_wasm)?;
        let base_addr = server_rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(base.clone().serve(listener));
            anyhow::Ok(addr)
        })?;
        say!("baseline listening on http://{base_addr}/");
        Some((base, base_addr))
    };

    // cyfr.
    let scratch = ws
        .join("target/bench-tmp")
        .join(format!("run-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(scratch.clone());
    let cache_dir = ws.join("target/bench-cache");
    let rate_limit = (args.rate_limit != "none").then(|| args.rate_limit.clone());
    say!(
        "starting cyfr in {} (compiled-code cache {})",
        scratch.display(),
        cache_dir.display()
    );
    let cyfr = server_rt.block_on(start_cyfr(
        &ws,
        &scratch.join("data"),
        &cache_dir,
        router_wasm,
        &reagent_wasm,
        manifest,
        rate_limit.as_deref(),
        &args.policy_rate_limit,
    ))?;
    say!(
        "cyfr listening on http://{}/mcp; {} registered",
        cyfr.addr,
        cyfr.reference
    );

    let bench = Bench {
        ws,
        server_rt,
        client_rt,
        cache_dir,
        cyfr,
        concurrency,
        warmup: Duration::from_secs(args.warmup),
        measure: Duration::from_secs(args.seconds),
        policy_rate_limit: args.policy_rate_limit.clone(),
        reagent_wasm,
    };

    let outcome = match baseline {
        _ if args.catalyst => catalyst::run(&bench, &args, rate_limit.as_deref()),
        _ if args.formula => formula::run(&bench, &args, rate_limit.as_deref()),
        _ if args.soak => soak::run(&bench, args.minutes, args.rate),
        _ if args.memory => memory::run(&bench, args.mib, args.keys, args.json),
        Some((base, base_addr)) => {
            execution_run(&bench, &args, base, base_addr, rate_limit.as_deref())
        }
        None => unreachable!("the default mode has a baseline"),
    };

    let Bench {
        server_rt, cyfr, ..
    } = bench;
    let _ = cyfr.shutdown.send(());
    // Leave the servers' tasks and threads to process exit.
    server_rt.shutdown_timeout(Duration::from_millis(500));
    outcome
}

/// The default mode: `execution.run` of json-transform through `/mcp` vs the baseline server
/// (and, with `--breakdown`, the steps in between).
fn execution_run(
    b: &Bench,
    args: &Args,
    base: Baseline,
    base_addr: SocketAddr,
    rate_limit: Option<&str>,
) -> anyhow::Result<()> {
    let cyfr = &b.cyfr;
    let mut results: Vec<Stats> = Vec::new();

    let base_target = Arc::new(HttpTarget {
        addr: base_addr,
        method: Method::POST,
        path: "/".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(INPUT.as_bytes()),
        verify: verify_baseline,
        verify_errors: false,
    });
    let cyfr_target = b.run_target(
        &cyfr.reference,
        "reagent",
        serde_json::from_str::<Json>(INPUT)?,
        verify_cyfr_run,
    );

    results.push(b.http_row("baseline", &base_target));
    results.push(b.http_row("cyfr", &cyfr_target));

    if args.breakdown {
        let health = Arc::new(HttpTarget {
            addr: cyfr.addr,
            method: Method::GET,
            path: "/health".into(),
            headers: vec![],
            body: Bytes::new(),
            verify: verify_health,
            verify_errors: false,
        });
        results.push(b.http_row("cyfr GET /health", &health));
        let floor_addr = b
            .server_rt
            .block_on(floor::start(b.wasm("http_floor.wasm")?))?;
        let floor = Arc::new(HttpTarget {
            addr: floor_addr,
            method: Method::GET,
            path: "/health".into(),
            headers: vec![],
            body: Bytes::new(),
            verify: floor::verify,
            verify_errors: false,
        });
        results.push(b.http_row("runner floor (no router)", &floor));
        let ping = Arc::new(HttpTarget {
            addr: cyfr.addr,
            method: Method::POST,
            path: "/mcp".into(),
            headers: Bench::mcp_headers(None),
            body: Bytes::from(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string()),
            verify: verify_ping,
            verify_errors: false,
        });
        results.push(b.http_row("cyfr ping (no key)", &ping));
        let list = Arc::new(HttpTarget {
            addr: cyfr.addr,
            method: Method::POST,
            path: "/mcp".into(),
            headers: Bench::mcp_headers(Some(&cyfr.key)),
            body: Bytes::from(
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
            ),
            verify: verify_tools_list,
            verify_errors: false,
        });
        results.push(b.http_row("cyfr tools/list (key)", &list));

        // The executor alone (spawn_blocking + run_reagent; the host API's run_execution
        // also registers a cancel switch).
        let executor = Arc::new(cyfr_host::executor::Executor::new(&b.cache_dir)?);
        let call = reagent_executor_call(b, &executor)?;
        let handle = b.server_rt.handle().clone();
        results.push(b.call_row("executor in-process (no HTTP)", &call));

        let call: load::CallFn = {
            let (base, handle) = (base.clone(), handle.clone());
            Arc::new(move || {
                let base = base.clone();
                let job = handle.spawn(async move { base.run(INPUT).await });
                Box::pin(async move {
                    let out = job
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("{e:#}"))?;
                    verify_baseline(out.as_bytes())
                })
            })
        };
        results.push(b.call_row("baseline in-process (no HTTP)", &call));
    }

    report(args, b.concurrency, &results, rate_limit);
    Ok(())
}

/// json-transform run by `executor` much as the host API runs it (`spawn_blocking` +
/// `run_reagent`), checked; run once here so the compile (or cache load) is not measured.
pub(crate) fn reagent_executor_call(
    b: &Bench,
    executor: &Arc<cyfr_host::executor::Executor>,
) -> anyhow::Result<load::CallFn> {
    let digest = cyfr_host::executor::Executor::digest_of(&b.reagent_wasm);
    executor
        .put_artifact(&digest, &b.reagent_wasm)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let handle = b.server_rt.handle().clone();
    let executor = executor.clone();
    let call: load::CallFn = Arc::new(move || {
        let (executor, digest) = (executor.clone(), digest.clone());
        let job = handle.spawn_blocking(move || {
            executor.run_reagent(&digest, INPUT, &cyfr_host::executor::Limits::default())
        });
        Box::pin(async move {
            let out = job
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            verify_baseline(out.output.as_bytes())
        })
    });
    b.client_rt
        .block_on(call())
        .map_err(|e| anyhow::anyhow!("executor run: {e}"))?;
    Ok(call)
}

/// Builds router.wasm and every test guest (json-transform, the http catalyst, the
/// formula-probe fixture among them) for wasm32-wasip2 (release) into target/wasm, in one
/// cargo run by `cyfr-test-guests`, as the tests do.
fn build_wasm() -> anyhow::Result<()> {
    say!("building cyfr-router and the test guests (wasm32-wasip2, release) into target/wasm");
    cyfr_test_guests::build_with_router().map_err(|e| anyhow::anyhow!(e))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn report(args: &Args, concurrency: usize, results: &[Stats], rate_limit: Option<&str>) {
    let (cores, cpu) = machine();
    let base = &results[0];
    let cyfr = &results[1];
    let ratio = cyfr.rps / base.rps;
    if args.json {
        let out = json!({
            "benchmark": "execution.run of json-transform: cyfr /mcp vs bare hyper + wasmtime",
            "input": serde_json::from_str::<Json>(INPUT).unwrap(),
            "machine": { "cores": cores, "cpu": cpu },
            "config": { "concurrency": concurrency, "warmup_seconds": args.warmup, "seconds": args.seconds, "key_rate_limit": rate_limit, "policy_rate_limit": args.policy_rate_limit },
            "results": results.iter().map(Stats::to_json).collect::<Vec<_>>(),
            "throughput_ratio_cyfr_over_baseline": load::round(ratio, 4),
            "p50_ratio_cyfr_over_baseline": load::round(cyfr.p50_ms / base.p50_ms, 2),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
        return;
    }
    println!("execution.run of json-transform, input {INPUT}");
    println!(
        "{cores} cores ({cpu}); {} connections; {} s warm-up + {} s measured per row; key rate limit: {}; policy rate limit: {}",
        concurrency,
        args.warmup,
        args.seconds,
        rate_limit.unwrap_or("none"),
        args.policy_rate_limit
    );
    println!();
    print_table(results);
    println!(
        "throughput ratio cyfr/baseline: {ratio:.4} (baseline is {:.1}x cyfr)",
        1.0 / ratio
    );
    println!(
        "p50 latency ratio cyfr/baseline: {:.1}x",
        cyfr.p50_ms / base.p50_ms
    );
    print_first_errors(results);
}

/// The rows as a table, then what cpu(self)/cpu(other) mean.
pub(crate) fn print_table(results: &[Stats]) {
    println!(
        "{:<32} {:>10} {:>7} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "side",
        "completed",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "cpu(self)",
        "cpu(other)"
    );
    for s in results {
        println!(
            "{:<32} {:>10} {:>7} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>10.2} {:>10.2}",
            s.name,
            s.completed,
            s.errors,
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.mean_ms,
            s.self_cpu_cores,
            s.other_cpu_cores
        );
    }
    println!();
    println!("cpu(self)/cpu(other): cores used during the measured window by this process / by everything else.");
    println!();
}

pub(crate) fn print_first_errors(results: &[Stats]) {
    for s in results {
        if let Some(e) = &s.first_error {
            println!("first error in {}: {e}", s.name);
        }
    }
}

/// `N cores (model)`.
pub(crate) fn machine() -> (usize, String) {
    (
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model(),
    )
}
