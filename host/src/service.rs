//! The host's HTTP API (`/v1/executions`, `/v1/artifacts/…`, `/v1/components/load`), and
//! `cyfr up`: the router served by [`SpinRunner`] with that API answered in-process.

use crate::core_db::CoreDb;
use crate::db::LocalDb;
use crate::egress::Refusal;
use crate::executor::{CatalystCtx, ExecError, Executor, Leftovers, Limits};
use crate::formula::{LocalRouter, RouterLink};
use crate::spin_runner::{InternalService, RouterConfig, SpinRunner};
use base64::Engine;
use bytes::Bytes;
use cyfr_core::host_api::{self, HostError, LoadRequest, LoadedComponent, RunRequest, RunResponse};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// The authority the embedded router uses to reach this process's host API.
pub const INTERNAL_AUTHORITY: &str = "host.cyfr.internal";

/// The host API: runs components, takes artifacts, reads component directories.
#[derive(Clone)]
pub struct HostApi {
    executor: Arc<Executor>,
    components_root: PathBuf,
    /// The router of this process (`cyfr up`), for formulas' in-process callbacks.
    local_router: Arc<OnceLock<Arc<dyn LocalRouter>>>,
}

impl HostApi {
    /// A host API over an executor, reading component directories under `components_root`.
    pub fn new(executor: Arc<Executor>, components_root: PathBuf) -> HostApi {
        HostApi { executor, components_root, local_router: Arc::new(OnceLock::new()) }
    }

    /// Answers one host API request.
    pub async fn respond(&self, req: http::Request<Bytes>) -> http::Response<Bytes> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let body = req.into_body();
        if method == http::Method::POST && path == host_api::RUN_PATH {
            match serde_json::from_slice::<RunRequest>(&body) {
                Ok(run) => self.run(run).await,
                Err(e) => error(400, "invalid_request", format!("bad run request: {e}")),
            }
        } else if method == http::Method::POST && path.starts_with(host_api::RUN_PATH) && path.ends_with("/cancel") {
            let id = path[host_api::RUN_PATH.len()..].trim_start_matches('/').trim_end_matches("/cancel");
            json(200, &serde_json::json!({ "cancelled": self.executor.cancel(id) }))
        } else if method == http::Method::PUT && path.starts_with(host_api::ARTIFACT_PATH) {
            let digest = &path[host_api::ARTIFACT_PATH.len()..];
            match self.executor.put_artifact(digest, &body) {
                Ok(()) => http::Response::builder().status(204).body(Bytes::new()).unwrap(),
                Err(e @ ExecError::Internal(_)) => error(500, e.code(), e.to_string()),
                Err(e) => error(400, e.code(), e.to_string()),
            }
        } else if method == http::Method::POST && path == host_api::LOAD_PATH {
            match serde_json::from_slice::<LoadRequest>(&body) {
                Ok(load) => match load_directory(&self.components_root, &load.directory) {
                    Ok(c) => json(200, &c),
                    Err(msg) => error(400, "invalid_directory", msg),
                },
                Err(e) => error(400, "invalid_request", format!("bad load request: {e}")),
            }
        } else {
            error(404, "not_found", format!("no host endpoint {method} {path}"))
        }
    }

    /// Runs a reagent, a catalyst under the egress policy that came with the request, or a
    /// formula whose calls go back to the router named in its callback. Output and logs are redacted of the run's
    /// secrets here as well as by the router; refused outbound requests are appended to
    /// stderr as `cyfr egress: refused …` lines.
    pub(crate) async fn run(&self, run: RunRequest) -> http::Response<Bytes> {
        let mut catalyst = None;
        let mut formula = None;
        match run.component_type.as_str() {
            "reagent" => {}
            "catalyst" => match &run.egress {
                Some(egress) => catalyst = Some(CatalystCtx::new(run.reference.clone(), run.secrets.clone(), egress.clone())),
                None => return error(400, "policy_required", format!("catalyst {} came without an egress policy; it is not run", run.reference)),
            },
            "formula" => match run.callback.clone() {
                Some(callback) => formula = Some(RouterLink::new(callback, self.local_router.get().cloned())),
                None => return error(400, "invalid_request", format!("formula {} came without a callback to its router; it is not run", run.reference)),
            },
            other => return error(400, "unsupported_type", format!("this host runs reagents, catalysts and formulas, not {other}")),
        }
        if !self.executor.has_artifact(&run.digest) {
            return error(404, "artifact_missing", format!("no artifact {}", run.digest));
        }
        let limits = Limits {
            timeout: Duration::from_millis(run.limits.timeout_ms),
            max_memory_bytes: run.limits.max_memory_bytes,
            fuel: None,
            max_input_bytes: run.limits.max_input_bytes as usize,
            max_output_bytes: run.limits.max_output_bytes as usize,
        };
        let executor = self.executor.clone();
        let digest = run.digest.clone();
        let input = run.input;
        let started = std::time::Instant::now();
        let execution_id = run.execution_id.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut left = Leftovers::default();
            let result = match &formula {
                Some(link) => executor.run_formula(&execution_id, &digest, &input, &limits, link, &mut left),
                None => executor.run_execution(&execution_id, &digest, &input, &limits, catalyst.as_ref(), &mut left),
            };
            (result, left)
        })
        .await;
        let scrub = |t: &str| cyfr_core::secrets::mask::redact(t, run.secrets.values().map(|v| v.as_bytes()));
        // Refused requests are logged as `cyfr egress: refused …` lines after the guest's stderr.
        let logs = |stdout: &str, stderr: &str, refusals: &[Refusal]| {
            let mut stderr = stderr.to_string();
            for r in refusals {
                if !stderr.is_empty() && !stderr.ends_with('\n') {
                    stderr.push('\n');
                }
                stderr.push_str(&r.log_line());
                stderr.push('\n');
            }
            // The egress session recorded them already redacted.
            (scrub(stdout), scrub(&stderr), refusals.to_vec())
        };
        let resp = match outcome {
            Ok((Ok(o), _)) => {
                let (stdout, stderr, egress_refusals) = logs(&o.stdout, &o.stderr, &o.refusals);
                RunResponse { status: "completed".into(), output: Some(scrub(&o.output)), error: None, stdout, stderr, duration_ms: o.duration_ms, egress_refusals }
            }
            Ok((Err(ExecError::ArtifactMissing { digest }), _)) => return error(404, "artifact_missing", format!("no artifact {digest}")),
            Ok((Err(e), left)) => {
                // A failed run keeps what its guest wrote and what it was refused.
                let (stdout, stderr, egress_refusals) = logs(&left.stdout, &left.stderr, &left.refusals);
                RunResponse {
                    status: "failed".into(),
                    output: None,
                    error: Some(HostError { code: e.code().into(), message: scrub(&e.to_string()) }),
                    stdout,
                    stderr,
                    duration_ms: started.elapsed().as_millis() as u64,
                    egress_refusals,
                }
            }
            Err(join) => return error(500, "host_panic", format!("execution task failed: {join}")),
        };
        json(200, &resp)
    }
}

impl InternalService for HostApi {
    fn handle(&self, req: http::Request<Bytes>) -> Pin<Box<dyn Future<Output = http::Response<Bytes>> + Send>> {
        let api = self.clone();
        Box::pin(async move { api.respond(req).await })
    }
}

/// The runner as formulas' in-process router; weak, as the runner owns the host API.
struct RunnerRouter(Weak<SpinRunner>);

impl LocalRouter for RunnerRouter {
    fn handle(&self, req: http::Request<Bytes>) -> crate::formula::BoxFuture<anyhow::Result<http::Response<Bytes>>> {
        let runner = self.0.upgrade();
        Box::pin(async move {
            let runner = runner.ok_or_else(|| anyhow::anyhow!("the server is shutting down"))?;
            runner.handle(req, SocketAddr::from(([127, 0, 0, 1], 0))).await
        })
    }
}

/// Reads `cyfr-manifest.json` and `{type}.wasm` from `dir`, which must lie under `root`.
pub fn load_directory(root: &Path, dir: &str) -> Result<LoadedComponent, String> {
    let root = root.canonicalize().map_err(|e| format!("components root {}: {e}", root.display()))?;
    let full = root.join(dir);
    let full = full.canonicalize().map_err(|_| format!("component directory `{dir}` does not exist under the server's components root"))?;
    // `..` or a symlink must not lead out of the root.
    if !full.starts_with(&root) {
        return Err(format!("component directory `{dir}` is outside the server's components root"));
    }
    let manifest = std::fs::read_to_string(full.join("cyfr-manifest.json")).map_err(|_| format!("`{dir}` has no readable cyfr-manifest.json"))?;
    let ctype = serde_json::from_str::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|m| m.get("type").and_then(|t| t.as_str()).map(String::from))
        .filter(|t| ["reagent", "catalyst", "formula"].contains(&t.as_str()))
        .ok_or_else(|| format!("cyfr-manifest.json in `{dir}`: field `type` must be one of reagent, catalyst, formula"))?;
    let wasm_path = full.join(format!("{ctype}.wasm"));
    let wasm = std::fs::read(&wasm_path).map_err(|_| format!("`{dir}` has no {ctype}.wasm; build it with `cyfr build {dir}`"))?;
    Ok(LoadedComponent { manifest, wasm_base64: base64::engine::general_purpose::STANDARD.encode(wasm) })
}

fn json<T: serde::Serialize>(status: u16, v: &T) -> http::Response<Bytes> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap()
}

fn error(status: u16, code: &str, message: String) -> http::Response<Bytes> {
    json(status, &HostError { code: code.into(), message })
}

/// Where `cyfr up` keeps its state and what it serves.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Data directory made by `cyfr init` (database, caches, master key file).
    pub data_dir: PathBuf,
    /// The router component to serve.
    pub router_wasm: Vec<u8>,
    /// Component directories given to `component.register {directory}` are resolved here.
    pub components_root: PathBuf,
    /// Extra router variables (`trusted_proxies`, `allowed_origins`, ...).
    pub variables: HashMap<String, String>,
    /// Compiled-code cache shared by the router and the executor (default: `data_dir/cache`).
    pub cache_dir: Option<PathBuf>,
    /// Remote hosts (`URL#PUBLIC_KEY`) to dispatch runs to instead of running them here.
    pub hosts: Vec<String>,
}

/// The database file inside a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cyfr.db")
}

/// Everything `cyfr up` runs, ready to serve.
pub struct Server {
    runner: Arc<SpinRunner>,
    /// Held while serving: one `cyfr up` per data directory.
    _lock: std::fs::File,
}

impl Server {
    /// Opens the database, applies migrations, compiles the router and starts the executor.
    pub async fn start(opts: UpOptions) -> anyhow::Result<Server> {
        let lock = crate::recovery::lock_data_dir(&opts.data_dir)?;
        let db = Arc::new(LocalDb::open(db_path(&opts.data_dir)).await?);
        cyfr_core::migrate::migrate(&CoreDb(db.clone())).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let abandoned = crate::recovery::fail_abandoned_runs(&db, now).await?;
        if abandoned > 0 {
            tracing::warn!(abandoned, "runs left `started` by a previous process marked failed");
        }
        let cache_dir = opts.cache_dir.clone().unwrap_or_else(|| opts.data_dir.join("cache"));
        let executor = Arc::new(Executor::new(&cache_dir)?);
        let api = Arc::new(HostApi::new(executor, opts.components_root.clone()));
        let local_router = api.local_router.clone();
        let mut variables = opts.variables.clone();
        variables.insert("host_url".into(), format!("http://{INTERNAL_AUTHORITY}"));
        // Failing to read the keys is fatal at start. The environment cannot change under a
        // running process; key files can (`cyfr secret rotate-master` next to a running
        // server takes effect without a restart), so those are looked up per request.
        let keys = crate::keyring::variable(&opts.data_dir)?;
        let dynamic: Option<crate::spin_runner::DynamicVariables> = if crate::keyring::env_mode() {
            variables.insert("master_keys".into(), keys);
            None
        } else {
            let files = crate::keyring::KeyVariable::new(&opts.data_dir);
            Some(Arc::new(move |name: &str| match name {
                "master_keys" => files.get().map_err(|e| tracing::error!("master keys unreadable: {e:#}")).ok(),
                _ => None,
            }))
        };
        let mut allowed_outbound = Vec::new();
        if !opts.hosts.is_empty() {
            let targets = cyfr_core::host_api::HostTarget::parse_list(&opts.hosts.join(",")).map_err(|e| anyhow::anyhow!("--host: {e}"))?;
            for t in &targets {
                let uri: http::Uri = t.url.parse().map_err(|e| anyhow::anyhow!("--host {}: {e}", t.url))?;
                allowed_outbound.extend(uri.authority().map(|a| a.to_string()));
            }
            variables.insert("hosts".into(), opts.hosts.join(","));
            let key = std::env::var("CYFR_HOST_TOKEN_KEY").map_err(|_| anyhow::anyhow!("remote hosts need CYFR_HOST_TOKEN_KEY (the key `cyfr host` was started with)"))?;
            variables.insert("host_token_key".into(), key);
        }
        let config = RouterConfig {
            allowed_outbound,
            wasm: opts.router_wasm,
            db,
            variables,
            internal_authority: INTERNAL_AUTHORITY.into(),
            compiled_cache: Some(cache_dir),
            dynamic_variables: dynamic,
        };
        let runner = Arc::new(SpinRunner::new(config, api)?);
        let _ = local_router.set(Arc::new(RunnerRouter(Arc::downgrade(&runner))));
        Ok(Server { runner, _lock: lock })
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        self.runner.serve(listener, shutdown).await
    }

    /// Handles one request without a socket (benchmarks, tests).
    pub async fn handle(&self, req: http::Request<Bytes>, peer: SocketAddr) -> anyhow::Result<http::Response<Bytes>> {
        self.runner.handle(req, peer).await
    }
}
