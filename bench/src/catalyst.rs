//! `--catalyst`: one HTTP GET made by the http catalyst through cyfr, against the same GET
//! made natively.
//!
//! An upstream HTTP/1.1 server (hyper) runs in this process on the server runtime, on
//! 127.0.0.1:0; `GET /ok` answers 200 with the body `hello`. The rows, in this order:
//!
//! 1. **native**: a hyper client (the load generator's own) sends `GET /ok` to 127.0.0.1 on a
//!    new TCP connection for every request and closes it after the body, because cyfr's egress
//!    opens a new connection for every request a catalyst makes (no pooling, no keep-alive).
//!    This is the baseline the ratios use.
//! 2. **native + getaddrinfo**: the same, with `localhost` resolved before every connection
//!    (`tokio::net::lookup_host`, i.e. `getaddrinfo` on the blocking pool), as the egress's
//!    `SystemResolver` does for every request.
//! 3. **executor in-process**: `Executor::run_catalyst` of the http catalyst on the blocking
//!    pool (much as the host API runs it), with a `CatalystCtx` built from the same policy; no
//!    router, no database, no HTTP in front.
//!    **executor, 1 injected secret**: the same with one granted secret (97 bytes) put into
//!    an `x-api-key` header as `{{secret:API_KEY}}`: substitution, and redaction of every
//!    form of it from the response, output and logs.
//! 4. **executor json-transform**: the same executor running the reagent (the default mode's
//!    `--breakdown` row), for reference: what the catalyst's run adds over a reagent's.
//! 5. **cyfr**: `POST /mcp` `execution.run` of `catalyst:cyfr.http:0.1.0` with the bench key.
//! 6. **cyfr json-transform**: the default mode's `execution.run` of the reagent, for
//!    reference: what the catalyst adds over a run that makes no request.
//!
//! The catalyst's input is `{"operation":"request","params":{"method":"GET","url":
//! "http://localhost:PORT/ok"}}` and its policy `allowed_domains: ["localhost"]`,
//! `allowed_private_ips: ["127.0.0.1/32"]`, `rate_limit` = `--policy-rate-limit`; the default
//! `max_outbound_requests` (100 per execution) is enough for the one request each run makes.
//! Every answer is checked: upstream status 200 and body `hello`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use anyhow::bail;
use bytes::Bytes;
use cyfr_host::executor::{CatalystCtx, Executor, Limits};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};

use crate::load::{self, HttpClient, HttpTarget, Stats};
use crate::{Args, Bench};

/// What the upstream answers to `GET /ok`.
const BODY: &str = "hello";

pub(crate) fn run(b: &Bench, args: &Args, rate_limit: Option<&str>) -> anyhow::Result<()> {
    let upstream = b.server_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(serve_upstream(listener));
        anyhow::Ok(addr)
    })?;
    let url = format!("http://localhost:{}/ok", upstream.port());
    say!("upstream listening on {url} (127.0.0.1)");

    let dir = "components/catalysts/cyfr/http/0.1.0";
    let manifest: Json = serde_json::from_str(&std::fs::read_to_string(
        b.ws.join(dir).join("cyfr-manifest.json"),
    )?)?;
    let wasm = b.wasm("http_catalyst.wasm")?;
    let domains = json!(["localhost"]);
    let private = json!(["127.0.0.1/32"]);
    let reference = b.register(
        manifest,
        &wasm,
        &[
            ("allowed_domains", domains),
            ("allowed_private_ips", private),
        ],
    )?;
    let input = json!({ "operation": "request", "params": { "method": "GET", "url": url } });
    let t = std::time::Instant::now();
    let first = b.tool(
        &b.cyfr.key,
        "execution",
        json!({ "action": "run", "reference": reference, "type": "catalyst", "input": input }),
    )?;
    if first["status"] != "completed" {
        bail!("first execution.run of {reference} returned {first}");
    }
    check_output(&first["result"])
        .map_err(|e| anyhow::anyhow!("first execution.run of {reference}: {e}"))?;
    say!(
        "{reference} registered; first execution.run (artifact upload + compile) took {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut results: Vec<Stats> = Vec::new();

    // 1, 2: native.
    let native = Arc::new(HttpTarget {
        addr: upstream,
        method: Method::GET,
        path: "/ok".into(),
        headers: vec![],
        body: Bytes::new(),
        verify: verify_native,
        verify_errors: false,
    });
    results.push(b.row("native (new connection)", || {
        HttpClient::fresh(native.clone(), None)
    }));
    results.push(b.row("native + getaddrinfo", || {
        HttpClient::fresh(native.clone(), Some("localhost".into()))
    }));

    // 3: the executor alone (spawn_blocking + run_catalyst; the host API's run_execution
    // also registers a cancel switch).
    let executor = Arc::new(Executor::new(&b.cache_dir)?);
    let digest = Executor::digest_of(&wasm);
    executor
        .put_artifact(&digest, &wasm)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = cyfr_core::policy::Policy {
        allowed_domains: vec!["localhost".into()],
        allowed_private_ips: vec!["127.0.0.1/32".into()],
        ..Default::default()
    };
    let ctx = Arc::new(CatalystCtx::new(
        reference.clone(),
        BTreeMap::new(),
        policy.egress(),
    ));
    let call = executor_call(b, &executor, &digest, ctx, &input);
    b.client_rt
        .block_on(call())
        .map_err(|e| anyhow::anyhow!("executor run: {e}"))?; // compile (or load) before measuring
    results.push(b.call_row("executor in-process (no HTTP)", &call));
    // 3b: the same with one granted secret injected into a header: substitution after the
    // checks, and the response and logs redacted of every form of it.
    let secrets = BTreeMap::from([("API_KEY".to_string(), SECRET.to_string())]);
    let with_secret = Arc::new(CatalystCtx::new(
        reference.clone(),
        secrets,
        policy.egress(),
    ));
    let secret_input = json!({ "operation": "request", "params": { "method": "GET", "url": url, "headers": { "x-api-key": "{{secret:API_KEY}}" } } });
    let call_secret = executor_call(b, &executor, &digest, with_secret, &secret_input);
    b.client_rt
        .block_on(call_secret())
        .map_err(|e| anyhow::anyhow!("executor run with a secret: {e}"))?;
    results.push(b.call_row("executor, 1 injected secret", &call_secret));
    let reagent = crate::reagent_executor_call(b, &executor)?;
    results.push(b.call_row("executor json-transform (ref.)", &reagent));

    // 4: cyfr; 5: cyfr's reagent run, for reference.
    results.push(b.http_row(
        "cyfr",
        &b.run_target(&reference, "catalyst", input.clone(), verify_cyfr),
    ));
    let reagent_input = serde_json::from_str::<Json>(crate::INPUT)?;
    results.push(b.http_row(
        "cyfr json-transform (reference)",
        &b.run_target(
            &b.cyfr.reference,
            "reagent",
            reagent_input,
            crate::verify_cyfr_run,
        ),
    ));

    report(b, args, &results, rate_limit, &url);
    Ok(())
}

/// A granted secret the size of an Anthropic API key.
const SECRET: &str = "sk-ant-api03-BENCH0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789abcdef";

/// `Executor::run_catalyst` with `ctx` and `input` on the blocking pool, its output checked.
fn executor_call(
    b: &Bench,
    executor: &Arc<Executor>,
    digest: &str,
    ctx: Arc<CatalystCtx>,
    input: &Json,
) -> load::CallFn {
    let handle = b.server_rt.handle().clone();
    let input_text: Arc<str> = input.to_string().into();
    let digest = digest.to_string();
    {
        let executor = executor.clone();
        Arc::new(move || {
            let (executor, digest, ctx, input) = (
                executor.clone(),
                digest.clone(),
                ctx.clone(),
                input_text.clone(),
            );
            let job = handle.spawn_blocking(move || {
                executor.run_catalyst(&digest, &input, &Limits::default(), &ctx)
            });
            Box::pin(async move {
                let out = job
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                if !out.refusals.is_empty() {
                    return Err(format!("egress refused: {:?}", out.refusals));
                }
                check_output(&crate::parse(out.output.as_bytes())?)
            })
        })
    }
}

/// `GET /ok` → 200 `hello`; anything else → 404. Keep-alive as hyper does by default (the
/// clients here close after one request).
async fn serve_upstream(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let mut r = if req.method() == Method::GET && req.uri().path() == "/ok" {
                        Response::new(Full::new(Bytes::from_static(BODY.as_bytes())))
                    } else {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain"),
                    );
                    Ok::<_, Infallible>(r)
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn verify_native(body: &[u8]) -> Result<(), String> {
    if body != BODY.as_bytes() {
        return Err(format!(
            "unexpected body: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    Ok(())
}

/// The catalyst's output: `{"status": 200, "data": {"status": 200, "headers": …, "body": "hello"}}`.
fn check_output(out: &Json) -> Result<(), String> {
    if out["status"] != 200 || out["data"]["status"] != 200 || out["data"]["body"] != BODY {
        return Err(format!(
            "unexpected catalyst output: {}",
            crate::excerpt(out, 400)
        ));
    }
    Ok(())
}

fn verify_cyfr(body: &[u8]) -> Result<(), String> {
    let v = crate::parse(body)?;
    let sc = &v["result"]["structuredContent"];
    if sc["status"] != "completed" {
        return Err(format!("unexpected response: {}", crate::excerpt(&v, 400)));
    }
    check_output(&sc["result"])
}

fn report(b: &Bench, args: &Args, results: &[Stats], rate_limit: Option<&str>, url: &str) {
    let (cores, cpu) = crate::machine();
    let base = &results[0];
    let ratio = |s: &Stats| s.rps / base.rps;
    if args.json {
        let rows: Vec<Json> = results
            .iter()
            .map(|s| {
                let mut v = s.to_json();
                v["throughput_ratio_over_native"] = json!(load::round(ratio(s), 4));
                v["p50_ratio_over_native"] = json!(load::round(s.p50_ms / base.p50_ms, 2));
                v
            })
            .collect();
        let out = json!({
            "benchmark": "http catalyst GET through cyfr vs the same GET made natively (new connection per request)",
            "url": url,
            "machine": { "cores": cores, "cpu": cpu },
            "config": { "concurrency": b.concurrency, "warmup_seconds": args.warmup, "seconds": args.seconds, "key_rate_limit": rate_limit, "policy_rate_limit": args.policy_rate_limit },
            "results": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
        return;
    }
    println!("GET {url} (body \"{BODY}\"): the http catalyst through cyfr vs natively; a new connection per request on every row");
    println!(
        "{cores} cores ({cpu}); {} connections; {} s warm-up + {} s measured per row; key rate limit: {}; policy rate limit: {}",
        b.concurrency,
        args.warmup,
        args.seconds,
        rate_limit.unwrap_or("none"),
        args.policy_rate_limit
    );
    println!();
    crate::print_table(results);
    println!(
        "{:<32} {:>16} {:>16}",
        "ratio to native", "throughput", "p50 latency"
    );
    for s in &results[1..] {
        println!(
            "{:<32} {:>16.4} {:>15.1}x",
            s.name,
            ratio(s),
            s.p50_ms / base.p50_ms
        );
    }
    crate::print_first_errors(results);
}
