//! The router as a Cloudflare Worker (`worker/`) under workerd: `wrangler dev --local` on
//! loopback over a local D1 with `migrations/` applied, dispatching to a real `cyfr host`.
//!
//! The scenario needs the Workers toolchain, which `scripts/worker-check.sh` installs (cached)
//! and builds the worker with; it runs this test with `--ignored` and `CYFR_WRANGLER` set, so
//! there it fails, never skips. `./test.sh` runs only the wrangler.toml checks.

use crate::catalysts::{policy, register, Upstream};
use crate::formulas::{register_probe, PROBE};
use crate::support::*;
use serde_json::{json, Value as Json};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ANTHROPIC_KEY: &str = "sk-ant-worker-SECRET-KEY-0a1b2c3d4e5f6789";

/// `wrangler.toml`'s `[vars]`: every name one core reads, none of them a secret, and the
/// schema version the migrations it applies end at.
#[test]
fn wrangler_toml_declares_only_core_variables_and_no_secret() {
    let toml = std::fs::read_to_string(workspace().join("wrangler.toml")).unwrap();
    let vars: Vec<(&str, &str)> = toml
        .split_once("\n[vars]\n")
        .unwrap()
        .1
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
        .collect();
    for (name, _) in &vars {
        assert!(
            cyfr_core::config::VARIABLES.contains(name),
            "{name} is not a variable core reads"
        );
    }
    for secret in [
        "master_keys",
        "host_token_key",
        "jwt_signing_key",
        "github_client_secret",
        "google_client_secret",
        "oidc_client_secret",
    ] {
        assert!(
            !vars.iter().any(|(k, _)| *k == secret),
            "{secret} belongs in `wrangler secret`, not wrangler.toml"
        );
    }
    let schema = vars.iter().find(|(k, _)| *k == "schema_version").unwrap().1;
    assert_eq!(
        schema.parse::<i64>().unwrap(),
        cyfr_core::migrate::latest_version()
    );
    assert!(toml.contains("migrations_dir = \"migrations\""));
    // `wrangler d1 migrations apply` appends its own INSERT to each file's SQL: a last
    // statement without its `;` becomes a syntax error there.
    for e in std::fs::read_dir(workspace().join("migrations")).unwrap() {
        let path = e.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap();
        let last = sql
            .lines()
            .rfind(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
            .unwrap();
        assert!(
            last.trim_end().ends_with(';'),
            "{}: ends without `;`",
            path.display()
        );
    }
}

/// The whole scenario against the worker's `/mcp`.
#[test]
#[ignore = "needs the Workers toolchain: run scripts/worker-check.sh"]
fn the_worker_serves_mcp_over_d1_and_dispatches_to_a_cyfr_host() {
    let up = Upstream::start();
    let host = Host::start();
    let w = Worker::start(&host);
    let s = &w.server;

    // Key create, and the components registered inline (manifest + wasm).
    let app = s.key("app", "secret", &["execution"], json!({}));
    let jt = register_json_transform(s);
    let run = json!({"action": "run", "reference": jt, "input": {"data": [1, 2, 39]}});
    let r = s.ok(&app, "execution", run.clone());
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["result"]["sum"], 42, "{r}");
    assert_eq!(host.artifacts(), 1, "the run went to the cyfr host");
    // The record is in D1: listed by the key that ran it.
    let listed = s.ok(&app, "execution", json!({"action": "list"}));
    assert_eq!(listed["executions"][0]["execution_id"], r["execution_id"]);

    // A catalyst reaching a loopback API under policy, its key sealed to the host: seed
    // 000's Python backend example, run by python3 with the secret key.
    let claude = register(
        s,
        "components/catalysts/local/claude/0.1.0",
        "claude-catalyst",
    );
    s.ok(
        &s.admin,
        "secret",
        json!({"action": "set", "name": "ANTHROPIC_API_KEY", "value": ANTHROPIC_KEY, "scope": "org"}),
    );
    s.ok(
        &s.admin,
        "secret",
        json!({"action": "grant", "reference": claude, "name": "ANTHROPIC_API_KEY"}),
    );
    let (ok, out) = seed_python(s, &app, up.port);
    assert!(!ok, "no policy yet: the example must fail: {out}");
    assert!(out.contains("-33102"), "policy required: {out}");
    assert!(
        up.seen().is_empty(),
        "nothing reached the API without a policy"
    );
    policy(s, &claude, "allowed_domains", json!(["localhost"]));
    policy(s, &claude, "allowed_private_ips", json!(["127.0.0.1/32"]));
    policy(
        s,
        &claude,
        "allowed_requests",
        json!(["POST localhost/v1/messages"]),
    );
    let (ok, out) = seed_python(s, &app, up.port);
    assert!(ok, "{out}");
    let result: Json = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let data = &result["structuredContent"]["result"]["data"];
    assert_eq!(
        data["content"][0]["text"], "echo: hello from the worker",
        "{result}"
    );
    assert_eq!(data["debug_key_seen"], "[REDACTED]");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("x-api-key").map(String::as_str),
        Some(ANTHROPIC_KEY)
    );
    assert!(!out.contains(ANTHROPIC_KEY), "the key came back: {out}");

    // A formula: its child runs through the worker again and both records link up.
    register_probe(s);
    let r = s.ok(
        &s.admin,
        "execution",
        json!({"action": "run", "reference": PROBE, "input": {"steps": [
            {"fn": "call", "req": {"reference": jt, "input": {"data": [4, 5]}}}]}}),
    );
    let step = &r["result"]["results"][0];
    assert_eq!(step["status"], "completed", "{r}");
    assert_eq!(step["output"]["sum"], 9, "{r}");
    let all = s.ok(
        &s.admin,
        "execution",
        json!({"action": "list", "limit": 100}),
    );
    let children: Vec<&Json> = all["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["parent_execution_id"] == r["execution_id"])
        .collect();
    assert_eq!(children.len(), 1, "{all}");
    assert_eq!(children[0]["status"], "completed");

    // A key's rate limit: its state is in D1, the worker keeps nothing between requests.
    let limited = s.key(
        "limited",
        "secret",
        &["execution"],
        json!({"rate_limit": "2/1m"}),
    );
    for _ in 0..2 {
        s.ok(&limited, "execution", json!({"action": "list"}));
    }
    let (status, r) = s.rpc(
        Some(&limited),
        "tools/call",
        json!({"name": "execution", "arguments": {"action": "list"}}),
    );
    assert_eq!((status, code(&r)), (429, -33005), "{r}");

    // Revoke: refused on the very next request.
    s.ok(&app, "execution", json!({"action": "list"}));
    s.ok(&s.admin, "key", json!({"action": "revoke", "name": "app"}));
    assert_eq!(
        code(&s.call(&app, "execution", json!({"action": "list"}))),
        -33002
    );
    assert_eq!(code(&s.call(&app, "execution", run)), -33002);

    // The catalyst's key is in no answer and nowhere in the local D1 in plaintext.
    s.assert_nowhere_on_disk(ANTHROPIC_KEY);
}

/// Hosts that refuse connections are passed over: with three closed loopback ports before
/// the live host in `hosts`, every run completes there. Each request starts at a random
/// host, so without failover five runs would all succeed only once in 1024.
#[test]
#[ignore = "needs the Workers toolchain: run scripts/worker-check.sh"]
fn the_worker_fails_over_from_unreachable_hosts_to_a_live_one() {
    let host = Host::start();
    let (_, key) = host.spec.split_once('#').unwrap();
    let mut hosts: Vec<String> = (0..3)
        .map(|_| format!("http://127.0.0.1:{}#{key}", free_port()))
        .collect();
    hosts.push(host.spec.clone());
    let w = Worker::start_with(&hosts.join(","), &workspace().join("wrangler.toml"));
    let s = &w.server;
    let app = s.key("app", "secret", &["execution"], json!({}));
    let jt = register_json_transform(s);
    for i in 0..5 {
        let r = s.ok(
            &app,
            "execution",
            json!({"action": "run", "reference": jt, "input": {"data": [i, 1]}}),
        );
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["result"]["sum"], i + 1, "{r}");
    }
    assert_eq!(host.artifacts(), 1, "every run went to the live host");
}

/// With an `mtls_certificates` binding `HOST_MTLS`, host requests go through it and through
/// nothing else. `wrangler dev --local` cannot present a certificate (such a binding's
/// fetch only says it "needs to be run remotely"), so what is proven here is the routing:
/// the run fails on the binding and nothing reaches the host without it, while requests
/// that need no host still work.
#[test]
#[ignore = "needs the Workers toolchain: run scripts/worker-check.sh"]
fn the_worker_sends_host_requests_through_its_mtls_binding() {
    let host = Host::start();
    let dir = TempDir::new("worker-mtls");
    let toml = std::fs::read_to_string(workspace().join("wrangler.toml")).unwrap();
    let abs = |rel: &str| workspace().join(rel).display().to_string();
    let toml = toml
        .replacen(
            "main = \"worker/build/index.js\"",
            &format!("main = \"{}\"", abs("worker/build/index.js")),
            1,
        )
        .replacen(
            "migrations_dir = \"migrations\"",
            &format!("migrations_dir = \"{}\"", abs("migrations")),
            1,
        );
    assert!(
        toml.contains(&abs("migrations")),
        "wrangler.toml changed shape"
    );
    let config = dir.0.join("wrangler.toml");
    std::fs::write(
        &config,
        format!(
            "{toml}\n[[mtls_certificates]]\nbinding = \"HOST_MTLS\"\ncertificate_id = \"00000000-0000-0000-0000-000000000000\"\n"
        ),
    )
    .unwrap();
    let w = Worker::start_with(&host.spec, &config);
    let s = &w.server;
    let app = s.key("app", "secret", &["execution"], json!({}));
    let jt = register_json_transform(s);
    let r = s.call(
        &app,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [1, 2]}}),
    );
    assert!(r.to_string().contains("run remotely"), "{r}");
    assert_eq!(host.artifacts(), 0, "nothing reached the host: {r}");
    s.ok(&app, "execution", json!({"action": "list"}));
}

/// Seed 000's "Python Backend" block, run as written by python3 (with `requests`) against
/// the worker; only its example input gains the stand-in API's `base_url` and a message,
/// so the call stays on loopback. Returns (exit ok, stdout + stderr).
fn seed_python(s: &Server, key: &str, api_port: u16) -> (bool, String) {
    let seeds = Path::new("/work/shared/seeds");
    let seed = std::fs::read_dir(seeds)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("000_"))
        .unwrap()
        .path();
    let text = std::fs::read_to_string(seed).unwrap();
    let block = text
        .split_once("### Python Backend\n\n```python\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap()
        .0;
    let input = r#"{"model": "claude-sonnet-4-5-20250514"}"#;
    assert!(block.contains(input), "the seed's example changed: {block}");
    let code = block.replace(
        input,
        &format!(
            r#"{{"model": "claude-sonnet-4-5-20250514", "base_url": "http://localhost:{api_port}", "max_tokens": 16, "messages": [{{"role": "user", "content": "hello from the worker"}}]}}"#
        ),
    ) + "\nimport json\nprint(json.dumps(result))\n";
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .env("CYFR_URL", &s.url)
        .env("CYFR_SECRET_KEY", key)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The python3 that has `requests` (the script's cached venv, else the system one).
fn python() -> String {
    std::env::var("CYFR_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `wrangler dev` serving the worker, its process group stopped when dropped (after the
/// Server's own drop, which only kills wrangler's node).
struct Worker {
    server: Server,
    _group: ProcessGroup,
}

/// Stops every process of a group (wrangler's node and the workerd it starts).
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        for sig in ["TERM", "KILL"] {
            let _ = Command::new("kill")
                .args(["-s", sig, "--", &format!("-{}", self.0)])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Worker {
    /// Applies the migrations to a fresh local D1 (no key in it: the first admin key comes
    /// from `bootstrap_admin_key`, as on a real deployment) and starts `wrangler dev --local` on a free loopback port pointed at `host`.
    fn start(host: &Host) -> Worker {
        Worker::start_with(&host.spec, &workspace().join("wrangler.toml"))
    }

    /// [`Worker::start`] with `hosts` as given (`URL#KEY,…`) and the deployment `config`.
    fn start_with(hosts: &str, config: &Path) -> Worker {
        use std::os::unix::process::CommandExt;
        let wrangler = std::env::var("CYFR_WRANGLER")
            .expect("CYFR_WRANGLER: the wrangler scripts/worker-check.sh installed");
        let state = Arc::new(TempDir::new("worker"));
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        // The deployment's secrets as a user makes them (`cyfr init --edge`, which writes
        // nothing), kept only here, in the test's own directory: never in wrangler.toml. The
        // admin key is not stored anywhere: its first request creates it from
        // `bootstrap_admin_key` on the empty, freshly migrated D1.
        let edge = Command::new(env!("CARGO_BIN_EXE_cyfr"))
            .args(["--json", "init", "--edge"])
            .output()
            .unwrap();
        assert!(edge.status.success(), "cyfr init --edge: {edge:?}");
        let edge: Json = serde_json::from_slice(&edge.stdout).unwrap();
        let admin = edge["admin_key"].as_str().unwrap().to_string();
        let var = |n: &str| edge["variables"][n].as_str().unwrap().to_string();
        let vars = state.0.join("dev.vars");
        std::fs::write(
            &vars,
            format!(
                // Quoted: unquoted, the `#` of URL#KEY would start a comment.
                "master_keys=\"{}\"\nbootstrap_admin_key=\"{}\"\nhost_token_key=\"{HOST_TOKEN_KEY}\"\nhosts=\"{}\"\nrouter_url=\"{url}\"\n",
                var("master_keys"),
                var("bootstrap_admin_key"),
                hosts
            ),
        )
        .unwrap();
        let persist = state.0.join("state");
        let d1 = |args: &[&str]| {
            let out = Command::new(&wrangler)
                .args(["d1"])
                .args(args)
                .args(["--local", "--persist-to"])
                .arg(&persist)
                .arg("--config")
                .arg(config)
                .env("CI", "1")
                .env("WRANGLER_SEND_METRICS", "false")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "wrangler d1 {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        d1(&["migrations", "apply", "DB"]);
        let child = Command::new(&wrangler)
            .args(["dev", "--local", "--ip", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--inspector-port")
            .arg(free_port().to_string())
            .arg("--persist-to")
            .arg(&persist)
            .arg("--env-file")
            .arg(&vars)
            .arg("--config")
            .arg(config)
            .args([
                "--show-interactive-dev-session=false",
                "--log-level",
                "warn",
            ])
            .env("CI", "1")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            // Its own group (so every process of it is stopped), reading no terminal: a
            // background group that reads one is stopped by SIGTTIN.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(state.0.join("wrangler.log")).unwrap())
            .stderr(std::fs::File::create(state.0.join("wrangler.err")).unwrap())
            .spawn()
            .unwrap();
        let group = ProcessGroup(child.id());
        let server = Server::attach(child, format!("{url}/mcp"), admin, state.clone());
        // Ready when /health answers (workerd compiles the worker first).
        let http = reqwest::blocking::Client::new();
        let start = Instant::now();
        loop {
            let health = http.get(format!("{url}/health")).send();
            match health {
                Ok(r) if r.status().is_success() => break,
                Ok(r) if r.status().as_u16() == 500 => {
                    panic!("the worker answers /health with 500: {}", r.text().unwrap())
                }
                _ => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "wrangler dev did not come up: {}{}",
                std::fs::read_to_string(state.0.join("wrangler.log")).unwrap_or_default(),
                std::fs::read_to_string(state.0.join("wrangler.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        Worker {
            server,
            _group: group,
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The same `execution.run` (json-transform) through `wrangler dev` and through `cyfr up`,
/// both dispatching to one `cyfr host`: sequential, `CYFR_WORKER_BENCH` runs each (default
/// 100), p50/p99 printed (BENCHMARKS.md). Run by `scripts/worker-check.sh --bench`.
#[test]
#[ignore = "a measurement: run scripts/worker-check.sh --bench"]
fn bench_execution_run_worker_vs_cyfr_up() {
    let n: usize = std::env::var("CYFR_WORKER_BENCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let host = Host::start();
    let w = Worker::start(&host);
    let up = Server::start_with(&["--host", &host.spec]);
    for (name, s) in [("wrangler dev", &w.server), ("cyfr up", &up)] {
        let jt = register_json_transform(s);
        // The default per-caller limit (100/1m) would refuse a fast loop: lift it.
        policy(s, &jt, "rate_limit", json!("100000/1m"));
        let run = json!({"action": "run", "reference": jt, "input": {"data": [1, 2, 3]}});
        // Warm: compiled code, connections, the host's artifact.
        for _ in 0..5 {
            s.ok(&s.admin, "execution", run.clone());
        }
        let mut ms: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                let r = s.ok(&s.admin, "execution", run.clone());
                assert_eq!(r["result"]["sum"], 6, "{r}");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        println!(
            "bench {name}: {n} sequential execution.run, p50 {:.1} ms, p99 {:.1} ms",
            at(0.50),
            at(0.99)
        );
    }
}
