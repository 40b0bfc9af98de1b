//! `cyfr-bench`: `execution.run` of a trivial reagent through cyfr's real `/mcp` endpoint
//! (API key, router, database, executor), against the same component behind a bare hyper +
//! wasmtime server, in one process, one run, one machine.
//!
//! Both servers run on one multi-threaded tokio runtime (one worker per core); the load
//! generator runs on the main thread on a current-thread runtime, with the same client code
//! for both sides. See BENCHMARKS.md for what the numbers mean.
//!
//! ```text
//! cargo run --release -p cyfr-bench -- [--concurrency 8] [--seconds 10] [--warmup 2] [--json]
//!     [--breakdown] [--rate-limit 1000000/1s|none] [--policy-rate-limit 1000000/1s] [--no-build]
//! ```

mod baseline;
mod load;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use cyfr_core::keys::{self, KeyType, NewKey};
use cyfr_host::core_db::{CoreDb, NativeEnv};
use cyfr_host::db::LocalDb;
use cyfr_host::service::{db_path, Server, UpOptions};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};

use baseline::Baseline;
use load::{HttpClient, HttpTarget, InProcClient, Stats};

/// The reagent's input; json-transform answers with count/sum/min/max/mean.
const INPUT: &str = r#"{"data":[1,2,3]}"#;
const PROTOCOL_VERSION: &str = "2025-11-25";

#[derive(Parser, Debug)]
#[command(about = "cyfr /mcp execution.run vs a bare hyper + wasmtime server running the same reagent")]
struct Args {
    /// Concurrent connections (one request in flight on each).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
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
    /// Also measure the steps in between (cyfr /health, ping, tools/list; the executor and
    /// the baseline called in-process, without HTTP).
    #[arg(long)]
    breakdown: bool,
    /// Do not build router.wasm and json-transform; use what is in target/wasm.
    #[arg(long)]
    no_build: bool,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

macro_rules! say {
    ($($t:tt)*) => { eprintln!("cyfr-bench: {}", format!($($t)*)) };
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.concurrency > 0 && args.seconds > 0, "--concurrency and --seconds must be positive");
    let ws = workspace();
    if !args.no_build {
        build_wasm(&ws)?;
    }
    let release = ws.join("target/wasm/wasm32-wasip2/release");
    let router_wasm = std::fs::read(release.join("cyfr_router.wasm")).context("reading cyfr_router.wasm")?;
    let reagent_wasm = std::fs::read(release.join("json_transform.wasm")).context("reading json_transform.wasm")?;
    let manifest: Json = serde_json::from_str(&std::fs::read_to_string(ws.join("components/reagents/cyfr/json-transform/0.1.0/cyfr-manifest.json"))?)?;

    let server_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    // Baseline.
    say!("compiling the reagent for the baseline");
    let base = Baseline::new(&reagent_wasm)?;
    let base_addr = server_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(base.clone().serve(listener));
        anyhow::Ok(addr)
    })?;
    say!("baseline listening on http://{base_addr}/");

    // cyfr.
    let scratch = ws.join("target/bench-tmp").join(format!("run-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(scratch.clone());
    let cache_dir = ws.join("target/bench-cache");
    let rate_limit = (args.rate_limit != "none").then(|| args.rate_limit.clone());
    say!("starting cyfr in {} (compiled-code cache {})", scratch.display(), cache_dir.display());
    let cyfr = server_rt.block_on(start_cyfr(&ws, &scratch.join("data"), &cache_dir, router_wasm, &reagent_wasm, manifest, rate_limit.as_deref(), &args.policy_rate_limit))?;
    say!("cyfr listening on http://{}/mcp; {} registered", cyfr.addr, cyfr.reference);

    let warmup = Duration::from_secs(args.warmup);
    let measure = Duration::from_secs(args.seconds);
    let c = args.concurrency;
    let mut results: Vec<Stats> = Vec::new();

    let base_target = Arc::new(HttpTarget {
        addr: base_addr,
        method: Method::POST,
        path: "/".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(INPUT.as_bytes()),
        verify: verify_baseline,
    });
    let run_body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "execution", "arguments": {
            "action": "run", "reference": cyfr.reference, "type": "reagent",
            "input": serde_json::from_str::<Json>(INPUT)?,
        }},
    });
    let mcp_headers = |key: Option<&str>| {
        let mut h = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), "application/json, text/event-stream".to_string()),
            ("mcp-protocol-version".to_string(), PROTOCOL_VERSION.to_string()),
        ];
        if let Some(k) = key {
            h.push(("authorization".to_string(), format!("Bearer {k}")));
        }
        h
    };
    let cyfr_target = Arc::new(HttpTarget {
        addr: cyfr.addr,
        method: Method::POST,
        path: "/mcp".into(),
        headers: mcp_headers(Some(&cyfr.key)),
        body: Bytes::from(run_body.to_string()),
        verify: verify_cyfr_run,
    });

    let http_row = |name: &str, target: &Arc<HttpTarget>| {
        say!("measuring {name}: {}s warm-up + {}s, {c} connections", args.warmup, args.seconds);
        let t = target.clone();
        let s = client_rt.block_on(load::run(name, c, warmup, measure, move || HttpClient::new(t.clone())));
        say!("  {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors", s.rps, s.p50_ms, s.p99_ms, s.errors);
        s
    };
    results.push(http_row("baseline", &base_target));
    results.push(http_row("cyfr", &cyfr_target));

    if args.breakdown {
        let health = Arc::new(HttpTarget {
            addr: cyfr.addr,
            method: Method::GET,
            path: "/health".into(),
            headers: vec![],
            body: Bytes::new(),
            verify: verify_health,
        });
        results.push(http_row("cyfr GET /health", &health));
        let ping = Arc::new(HttpTarget {
            addr: cyfr.addr,
            method: Method::POST,
            path: "/mcp".into(),
            headers: mcp_headers(None),
            body: Bytes::from(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string()),
            verify: verify_ping,
        });
        results.push(http_row("cyfr ping (no key)", &ping));
        let list = Arc::new(HttpTarget {
            addr: cyfr.addr,
            method: Method::POST,
            path: "/mcp".into(),
            headers: mcp_headers(Some(&cyfr.key)),
            body: Bytes::from(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string()),
            verify: verify_tools_list,
        });
        results.push(http_row("cyfr tools/list (key)", &list));

        // The executor alone, as the host API calls it (spawn_blocking + run_reagent).
        let executor = Arc::new(cyfr_host::executor::Executor::new(&cache_dir)?);
        let digest = cyfr_host::executor::Executor::digest_of(&reagent_wasm);
        executor.put_artifact(&digest, &reagent_wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
        let handle = server_rt.handle().clone();
        let call: load::CallFn = {
            let (executor, digest, handle) = (executor.clone(), digest.clone(), handle.clone());
            Arc::new(move || {
                let (executor, digest) = (executor.clone(), digest.clone());
                let job = handle.spawn_blocking(move || executor.run_reagent(&digest, INPUT, &cyfr_host::executor::Limits::default()));
                Box::pin(async move {
                    let out = job.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
                    verify_baseline(out.output.as_bytes())
                })
            })
        };
        client_rt.block_on(call()).map_err(|e| anyhow::anyhow!("executor run: {e}"))?; // compile (or load) before measuring
        say!("measuring executor in-process");
        let s = client_rt.block_on(load::run("executor in-process (no HTTP)", c, warmup, measure, || InProcClient(call.clone())));
        say!("  {:.0} req/s, p50 {:.3} ms", s.rps, s.p50_ms);
        results.push(s);

        let call: load::CallFn = {
            let (base, handle) = (base.clone(), handle.clone());
            Arc::new(move || {
                let base = base.clone();
                let job = handle.spawn(async move { base.run(INPUT).await });
                Box::pin(async move {
                    let out = job.await.map_err(|e| e.to_string())?.map_err(|e| format!("{e:#}"))?;
                    verify_baseline(out.as_bytes())
                })
            })
        };
        say!("measuring baseline in-process");
        let s = client_rt.block_on(load::run("baseline in-process (no HTTP)", c, warmup, measure, || InProcClient(call.clone())));
        say!("  {:.0} req/s, p50 {:.3} ms", s.rps, s.p50_ms);
        results.push(s);
    }

    let _ = cyfr.shutdown.send(());
    report(&args, &results, rate_limit.as_deref());
    // Leave the servers' tasks and threads to process exit.
    server_rt.shutdown_timeout(Duration::from_millis(500));
    Ok(())
}

/// Builds router.wasm and json-transform for wasm32-wasip2 (release) into target/wasm, as
/// cli/build.rs and the e2e tests do. A separate target dir, so it never waits on the lock
/// of the cargo that runs this binary.
fn build_wasm(ws: &Path) -> anyhow::Result<()> {
    say!("building cyfr-router and json-transform (wasm32-wasip2, release) into target/wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(ws)
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "-p", "cyfr-router", "-p", "json-transform"])
        .env("CARGO_TARGET_DIR", ws.join("target/wasm"));
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER", "CARGO_PRIMARY_PACKAGE"] {
        cmd.env_remove(var);
    }
    let status = cmd.stdout(std::process::Stdio::null()).status().context("running cargo to build the wasm components")?;
    if !status.success() {
        bail!("building the wasm components failed (is the wasm32-wasip2 target installed?)");
    }
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Cyfr {
    addr: SocketAddr,
    /// The secret `execution` key the load uses.
    key: String,
    reference: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
}

/// `cyfr init` (data dir, server key, admin key), then `cyfr up` in-process on 127.0.0.1:0,
/// then, over MCP with the admin key: register json-transform inline, set its policy's
/// `rate_limit`, create a secret key with the `execution` scope, and run the reagent once
/// (the host compiles it here).
async fn start_cyfr(
    ws: &Path,
    data_dir: &Path,
    cache_dir: &Path,
    router_wasm: Vec<u8>,
    reagent_wasm: &[u8],
    manifest: Json,
    rate_limit: Option<&str>,
    policy_rate_limit: &str,
) -> anyhow::Result<Cyfr> {
    // As `cyfr init` does: the data directory, the master key file (unless CYFR_MASTER_KEY
    // is set; a server that reads no master key ignores it), the schema and the admin key.
    std::fs::create_dir_all(data_dir)?;
    if std::env::var("CYFR_MASTER_KEY").map_or(true, |v| v.trim().is_empty()) {
        let mut secret = [0u8; 32];
        cyfr_core::env::Env::fill_random(&NativeEnv, &mut secret);
        write_private(&data_dir.join("master.key"), base64::engine::general_purpose::STANDARD.encode(secret).as_bytes())?;
    }
    let admin = {
        let db = CoreDb(Arc::new(LocalDb::open(db_path(data_dir)).await?));
        cyfr_core::migrate::migrate(&db).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let new = NewKey { name: "admin".into(), key_type: KeyType::Admin, scopes: vec![], rate_limit: None, ip_allowlist: Default::default() };
        keys::create(&db, &NativeEnv, &new, None).await.map_err(|e| anyhow::anyhow!("{e}"))?.1
    };

    // As `cyfr up` does.
    let started = std::time::Instant::now();
    let server = Server::start(UpOptions {
        data_dir: data_dir.to_path_buf(),
        router_wasm,
        components_root: ws.to_path_buf(),
        variables: HashMap::new(),
        cache_dir: Some(cache_dir.to_path_buf()),
        hosts: Vec::new(),
    })
    .await?;
    say!("cyfr server ready in {:.1} s (router compiled or loaded from cache)", started.elapsed().as_secs_f64());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(e) = server
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await
        {
            eprintln!("cyfr-bench: cyfr server failed: {e:#}");
        }
    });

    let wasm_b64 = base64::engine::general_purpose::STANDARD.encode(reagent_wasm);
    let reg = tool(addr, &admin, "component", json!({ "action": "register", "manifest": manifest, "wasm": wasm_b64 })).await?;
    let reference = reg["reference"].as_str().context("register returned no reference")?.to_string();
    tool(addr, &admin, "policy", json!({ "action": "set", "reference": reference, "field": "rate_limit", "value": policy_rate_limit })).await?;
    let mut key_args = json!({ "action": "create", "name": "bench", "type": "secret", "scope": ["execution"] });
    if let Some(r) = rate_limit {
        key_args["rate_limit"] = json!(r);
    }
    let key = tool(addr, &admin, "key", key_args).await?["key"].as_str().context("key create returned no key")?.to_string();
    let t = std::time::Instant::now();
    let first = tool(addr, &key, "execution", json!({ "action": "run", "reference": reference, "type": "reagent", "input": serde_json::from_str::<Json>(INPUT)? })).await?;
    if first["status"] != "completed" || first["result"]["sum"] != 6 {
        bail!("first execution.run returned {first}");
    }
    say!("first execution.run (artifact upload + compile) took {:.1} s", t.elapsed().as_secs_f64());
    Ok(Cyfr { addr, key, reference, shutdown: tx })
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    std::io::Write::write_all(&mut opts.open(path).with_context(|| format!("creating {}", path.display()))?, data)?;
    Ok(())
}

/// One MCP `tools/call` on a fresh connection; returns `structuredContent` or fails.
async fn tool(addr: SocketAddr, key: &str, name: &str, arguments: Json) -> anyhow::Result<Json> {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": name, "arguments": arguments } });
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/mcp")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("mcp-protocol-version", PROTOCOL_VERSION)
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from(body.to_string())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: Json = serde_json::from_slice(&bytes).with_context(|| format!("{name}: HTTP {status}: {}", String::from_utf8_lossy(&bytes)))?;
    if v.get("error").is_some() || v["result"]["isError"] != json!(false) {
        bail!("{name} failed: {v}");
    }
    Ok(v["result"]["structuredContent"].clone())
}

fn parse(body: &[u8]) -> Result<Json, String> {
    serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&body[..body.len().min(300)])))
}

fn verify_baseline(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    if v["sum"] != 6 {
        return Err(format!("unexpected output: {v}"));
    }
    Ok(())
}

fn verify_cyfr_run(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    let sc = &v["result"]["structuredContent"];
    if sc["status"] != "completed" || sc["result"]["sum"] != 6 {
        let mut s = v.to_string();
        s.truncate(400);
        return Err(format!("unexpected response: {s}"));
    }
    Ok(())
}

fn verify_health(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    if v["status"] != "ok" {
        return Err(format!("unexpected response: {v}"));
    }
    Ok(())
}

fn verify_ping(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    if v["result"] != json!({}) {
        return Err(format!("unexpected response: {v}"));
    }
    Ok(())
}

fn verify_tools_list(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    if !v["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()) {
        let mut s = v.to_string();
        s.truncate(400);
        return Err(format!("unexpected response: {s}"));
    }
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

fn report(args: &Args, results: &[Stats], rate_limit: Option<&str>) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = cpu_model();
    let base = &results[0];
    let cyfr = &results[1];
    let ratio = cyfr.rps / base.rps;
    if args.json {
        let out = json!({
            "benchmark": "execution.run of json-transform: cyfr /mcp vs bare hyper + wasmtime",
            "input": serde_json::from_str::<Json>(INPUT).unwrap(),
            "machine": { "cores": cores, "cpu": cpu },
            "config": { "concurrency": args.concurrency, "warmup_seconds": args.warmup, "seconds": args.seconds, "key_rate_limit": rate_limit, "policy_rate_limit": args.policy_rate_limit },
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
        args.concurrency,
        args.warmup,
        args.seconds,
        rate_limit.unwrap_or("none"),
        args.policy_rate_limit
    );
    println!();
    println!(
        "{:<32} {:>10} {:>7} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "side", "completed", "errors", "req/s", "p50 ms", "p99 ms", "mean ms", "cpu(self)", "cpu(other)"
    );
    for s in results {
        println!(
            "{:<32} {:>10} {:>7} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>10.2} {:>10.2}",
            s.name, s.completed, s.errors, s.rps, s.p50_ms, s.p99_ms, s.mean_ms, s.self_cpu_cores, s.other_cpu_cores
        );
    }
    println!();
    println!("cpu(self)/cpu(other): cores used during the measured window by this process / by everything else.");
    println!();
    println!("throughput ratio cyfr/baseline: {ratio:.4} (baseline is {:.1}x cyfr)", 1.0 / ratio);
    println!("p50 latency ratio cyfr/baseline: {:.1}x", cyfr.p50_ms / base.p50_ms);
    for s in results {
        if let Some(e) = &s.first_error {
            println!("first error in {}: {e}", s.name);
        }
    }
}
