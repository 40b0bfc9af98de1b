//! The host's HTTP API (`/v1/executions`, `/v1/artifacts/…`, `/v1/components/load`), and
//! `cyfr up`: the router served by [`SpinRunner`] with that API answered in-process.

use crate::core_db::CoreDb;
use crate::db::LocalDb;
use crate::egress::Refusal;
use crate::executor::{CatalystCtx, ExecError, Executor, Guest, Leftovers, Limits, RunSpec};
use crate::formula::{LocalRouter, RouterLink};
use crate::spin_runner::{InternalService, RouterConfig, SpinRunner};
use base64::Engine;
use bytes::Bytes;
use cyfr_core::host_api::{
    self, HostError, HostErrorKind, LoadRequest, LoadedComponent, RunRequest, RunResponse,
    RunStatus,
};
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
        HostApi {
            executor,
            components_root,
            local_router: Arc::new(OnceLock::new()),
        }
    }

    /// The executor runs go to.
    pub(crate) fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// Answers one host API request.
    pub async fn respond(&self, req: http::Request<Bytes>) -> http::Response<Bytes> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let body = req.into_body();
        if method == http::Method::POST && path == host_api::RUN_PATH {
            match serde_json::from_slice::<RunRequest>(&body) {
                Ok(run) => self.run(run).await,
                Err(e) => error(
                    HostErrorKind::InvalidRequest,
                    format!("bad run request: {e}"),
                ),
            }
        } else if method == http::Method::POST
            && path.starts_with(host_api::RUN_PATH)
            && path.ends_with("/cancel")
        {
            let id = path[host_api::RUN_PATH.len()..]
                .trim_start_matches('/')
                .trim_end_matches("/cancel");
            json(
                200,
                &serde_json::json!({ "cancelled": self.executor.cancel(id) }),
            )
        } else if method == http::Method::PUT && path.starts_with(host_api::ARTIFACT_PATH) {
            let digest = &path[host_api::ARTIFACT_PATH.len()..];
            match self.executor.put_artifact(digest, &body) {
                Ok(()) => http::Response::builder()
                    .status(204)
                    .body(Bytes::new())
                    .unwrap(),
                Err(e) => {
                    let e = host_error(&e);
                    json(e.code.http_status(), &e)
                }
            }
        } else if method == http::Method::POST && path == host_api::LOAD_PATH {
            match serde_json::from_slice::<LoadRequest>(&body) {
                Ok(load) => match load_directory(&self.components_root, &load.directory) {
                    Ok(c) => json(200, &c),
                    Err(msg) => error(HostErrorKind::InvalidDirectory, msg),
                },
                Err(e) => error(
                    HostErrorKind::InvalidRequest,
                    format!("bad load request: {e}"),
                ),
            }
        } else {
            error(
                HostErrorKind::NotFound,
                format!("no host endpoint {method} {path}"),
            )
        }
    }

    /// Runs a reagent, a catalyst under the egress policy that came with the request, or a
    /// formula whose calls go back to the router named in its callback. What goes back is
    /// redacted of the run's secrets and opened values once on this side of the boundary
    /// (the router redacts its own answer again); refused outbound requests are appended to
    /// stderr as `cyfr egress: refused …` lines.
    pub(crate) async fn run(&self, run: RunRequest) -> http::Response<Bytes> {
        match self.execute(run, None).await {
            Ok(resp) => json(200, &resp),
            Err(e) => error(e.code, e.message),
        }
    }

    /// [`HostApi::run`]'s run: its answer, or the error its answer's status carries. With
    /// `tap`, every byte the guest writes to stderr is also sent there as it is written.
    pub(crate) async fn execute(
        &self,
        run: RunRequest,
        tap: Option<crate::executor::StderrTap>,
    ) -> Result<RunResponse, HostError> {
        let guest = self
            .guest_of(&run)
            .map_err(|(code, message)| HostError { code, message })?;
        if !self.executor.has_artifact(&run.digest) {
            let message = format!("no artifact {}", run.digest);
            return Err(HostError {
                code: HostErrorKind::ArtifactMissing,
                message,
            });
        }
        let scrub = Scrub::new(&run, &guest);
        let limits = limits_of(&run.limits);
        let executor = self.executor.clone();
        let started = std::time::Instant::now();
        // Its own task, not a blocking hop: the guest yields at every epoch tick, and a panic
        // ends only this task (its JoinError becomes `HostPanic`) rather than the connection.
        let outcome = tokio::spawn(async move {
            let mut left = Leftovers::default();
            let spec = RunSpec {
                execution_id: Some(&run.execution_id),
                caller: Some(&run.caller),
                digest: &run.digest,
                input: &run.input,
                limits: &limits,
                guest: guest.as_guest(),
                stderr_tap: tap.as_ref(),
            };
            let result = executor.run_async(spec, &mut left).await;
            (result, left)
        })
        .await;
        let resp = match outcome {
            Ok((Ok(o), _)) => {
                let (stdout, stderr, egress_refusals) =
                    scrub.logs(&o.stdout, &o.stderr, &o.refusals);
                RunResponse {
                    status: RunStatus::Completed,
                    output: Some(scrub.text(&o.output)),
                    error: None,
                    stdout,
                    stderr,
                    duration_ms: o.duration_ms,
                    egress_refusals,
                }
            }
            Ok((Err(ExecError::ArtifactMissing { digest }), _)) => {
                return Err(HostError {
                    code: HostErrorKind::ArtifactMissing,
                    message: format!("no artifact {digest}"),
                })
            }
            Ok((Err(e), left)) => {
                // A failed run keeps what its guest wrote and what it was refused.
                let (stdout, stderr, egress_refusals) =
                    scrub.logs(&left.stdout, &left.stderr, &left.refusals);
                RunResponse {
                    status: RunStatus::Failed,
                    output: None,
                    error: Some(HostError {
                        message: scrub.text(&e.to_string()),
                        ..host_error(&e)
                    }),
                    stdout,
                    stderr,
                    duration_ms: started.elapsed().as_millis() as u64,
                    egress_refusals,
                }
            }
            Err(join) => {
                return Err(HostError {
                    code: HostErrorKind::HostPanic,
                    message: format!("execution task failed: {join}"),
                })
            }
        };
        Ok(resp)
    }

    /// The world a run asks for, with what it is given: a catalyst needs its egress policy
    /// and a formula its callback, or the run is refused before anything is loaded.
    fn guest_of(&self, run: &RunRequest) -> Result<Prepared, (HostErrorKind, String)> {
        match run.component_type.as_str() {
            "reagent" => Ok(Prepared::Reagent),
            "catalyst" => match &run.egress {
                Some(egress) => {
                    let mut ctx = CatalystCtx::new(
                        run.reference.clone(),
                        run.secrets.clone(),
                        egress.clone(),
                    );
                    ctx.redact = opened_values(&run.redact);
                    Ok(Prepared::Catalyst(ctx))
                }
                None => Err((
                    HostErrorKind::PolicyRequired,
                    format!(
                        "catalyst {} came without an egress policy; it is not run",
                        run.reference
                    ),
                )),
            },
            "formula" => match run.callback.clone() {
                Some(callback) => Ok(Prepared::Formula(RouterLink::new(
                    callback,
                    self.local_router.get().cloned(),
                ))),
                None => Err((
                    HostErrorKind::InvalidRequest,
                    format!(
                        "formula {} came without a callback to its router; it is not run",
                        run.reference
                    ),
                )),
            },
            other => Err((
                HostErrorKind::UnsupportedType,
                format!("this host runs reagents, catalysts and formulas, not {other}"),
            )),
        }
    }
}

impl InternalService for HostApi {
    fn handle(
        &self,
        req: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = http::Response<Bytes>> + Send>> {
        let api = self.clone();
        Box::pin(async move { api.respond(req).await })
    }

    fn handle_streaming(
        &self,
        req: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = http::Response<crate::spin_runner::StreamedBody>> + Send>>
    {
        let api = self.clone();
        Box::pin(async move { api.respond_streaming(req).await })
    }
}

/// The runner as formulas' in-process router; weak, as the runner owns the host API.
struct RunnerRouter(Weak<SpinRunner>);

impl LocalRouter for RunnerRouter {
    fn handle(
        &self,
        req: http::Request<Bytes>,
    ) -> crate::formula::BoxFuture<anyhow::Result<http::Response<Bytes>>> {
        let runner = self.0.upgrade();
        Box::pin(async move {
            let runner = runner.ok_or_else(|| anyhow::anyhow!("the server is shutting down"))?;
            runner
                .handle(req, SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
        })
    }
}

/// A run's world and what it owns for the run (the executor borrows it as a [`Guest`]).
enum Prepared {
    Reagent,
    Catalyst(CatalystCtx),
    Formula(RouterLink),
}

impl Prepared {
    fn as_guest(&self) -> Guest<'_> {
        match self {
            Prepared::Reagent => Guest::Reagent,
            Prepared::Catalyst(ctx) => Guest::Catalyst(ctx),
            Prepared::Formula(link) => Guest::Formula(link),
        }
    }
}

/// The limits of the wire schema as the executor takes them.
fn limits_of(l: &host_api::Limits) -> Limits {
    Limits {
        timeout: Duration::from_millis(l.timeout_ms),
        max_memory_bytes: l.max_memory_bytes,
        fuel: None,
        max_input_bytes: l.max_input_bytes as usize,
        max_output_bytes: l.max_output_bytes as usize,
    }
}

/// The host → router redaction of one run: the run's granted secrets and the opened values
/// its input holds leave in nothing it answers (output, logs, refused URLs). A catalyst's
/// egress session already redacted all of that of the very same values, so it is not
/// scrubbed twice.
enum Scrub {
    /// The executor's world redacted it (catalysts).
    Done,
    /// Redact here (reagents, formulas).
    Here(cyfr_core::secrets::mask::Forms),
}

impl Scrub {
    fn new(run: &RunRequest, guest: &Prepared) -> Scrub {
        if matches!(guest, Prepared::Catalyst(_)) {
            return Scrub::Done;
        }
        let opened = opened_values(&run.redact);
        Scrub::Here(cyfr_core::secrets::mask::Forms::new(
            run.secrets
                .values()
                .map(|v| v.as_bytes())
                .chain(opened.iter().map(|v| v.as_slice())),
        ))
    }

    fn text(&self, t: &str) -> String {
        match self {
            Scrub::Done => t.to_string(),
            Scrub::Here(forms) => forms.redact(t),
        }
    }

    /// stdout, stderr with the refused requests appended as `cyfr egress: refused …` lines,
    /// and the refusals, all redacted.
    fn logs(
        &self,
        stdout: &str,
        stderr: &str,
        refusals: &[Refusal],
    ) -> (String, String, Vec<Refusal>) {
        let mut stderr = stderr.to_string();
        for r in refusals {
            if !stderr.is_empty() && !stderr.ends_with('\n') {
                stderr.push('\n');
            }
            stderr.push_str(&r.log_line());
            stderr.push('\n');
        }
        let refusals = refusals
            .iter()
            .map(|r| Refusal {
                url: self.text(&r.url),
                message: self.text(&r.message),
                ..r.clone()
            })
            .collect();
        (self.text(stdout), self.text(&stderr), refusals)
    }
}

/// The opened values a run's input holds (base64 on the wire).
pub(crate) fn opened_values(redact: &[String]) -> Vec<zeroize::Zeroizing<Vec<u8>>> {
    redact
        .iter()
        .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(zeroize::Zeroizing::new)
        .collect()
}

/// Reads `cyfr-manifest.json` and `{type}.wasm` from `dir`, which must lie under `root`.
/// Both must be regular files, not symlinks: a symlinked file could name anything the
/// server can read (`/etc/passwd`, a key file), so it is refused rather than followed.
pub fn load_directory(root: &Path, dir: &str) -> Result<LoadedComponent, String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("components root {}: {e}", root.display()))?;
    let full = root.join(dir);
    let full = full.canonicalize().map_err(|_| {
        format!("component directory `{dir}` does not exist under the server's components root")
    })?;
    // `..` or a directory symlink must not lead out of the root.
    if !full.starts_with(&root) {
        return Err(format!(
            "component directory `{dir}` is outside the server's components root"
        ));
    }
    let manifest = read_regular(&full, "cyfr-manifest.json", dir)
        .map_err(|e| e.unwrap_or_else(|| format!("`{dir}` has no readable cyfr-manifest.json")))?;
    let manifest = String::from_utf8(manifest)
        .map_err(|_| format!("cyfr-manifest.json in `{dir}` is not UTF-8"))?;
    let ctype = serde_json::from_str::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|m| m.get("type").and_then(|t| t.as_str()).map(String::from))
        .filter(|t| ["reagent", "catalyst", "formula"].contains(&t.as_str()))
        .ok_or_else(|| format!("cyfr-manifest.json in `{dir}`: field `type` must be one of reagent, catalyst, formula"))?;
    let wasm_name = format!("{ctype}.wasm");
    let wasm = read_regular(&full, &wasm_name, dir).map_err(|e| {
        e.unwrap_or_else(|| {
            format!("`{dir}` has no {ctype}.wasm; build it with `cyfr build {dir}`")
        })
    })?;
    Ok(LoadedComponent {
        manifest,
        wasm_base64: base64::engine::general_purpose::STANDARD.encode(wasm),
        readme: optional_text(&full, "README.md", dir)?,
        config: optional_text(&full, "config.json", dir)?,
    })
}

/// An optional UTF-8 file of a component directory: `None` when absent; a symlink, a
/// non-file or non-UTF-8 text is refused like the required files (the registry bounds its size).
fn optional_text(dir: &Path, name: &str, shown: &str) -> Result<Option<String>, String> {
    match read_regular(dir, name, shown) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{name} in `{shown}` is not UTF-8")),
        Err(None) => Ok(None),
        Err(Some(why)) => Err(why),
    }
}

/// Reads `dir/name` if it is a regular file; `Err(Some(_))` says why a present file is
/// refused (a symlink, not a file), `Err(None)` that it cannot be read. The open itself
/// refuses a symlink (`O_NOFOLLOW`), so swapping one in after the check does not help.
fn read_regular(dir: &Path, name: &str, shown: &str) -> Result<Vec<u8>, Option<String>> {
    use std::io::Read;
    let path = dir.join(name);
    let meta = std::fs::symlink_metadata(&path).map_err(|_| None)?;
    if meta.file_type().is_symlink() {
        return Err(Some(format!("`{shown}/{name}` is a symlink; component files must be regular files inside the components root")));
    }
    if !meta.is_file() {
        return Err(Some(format!("`{shown}/{name}` is not a regular file")));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW);
    }
    let mut f = opts.open(&path).map_err(|_| {
        Some(format!(
            "`{shown}/{name}` could not be opened as a regular file"
        ))
    })?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|_| None)?;
    Ok(bytes)
}

fn json<T: serde::Serialize>(status: u16, v: &T) -> http::Response<Bytes> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap()
}

/// A host API error answer; its kind decides the status.
fn error(kind: HostErrorKind, message: String) -> http::Response<Bytes> {
    json(
        kind.http_status(),
        &HostError {
            code: kind,
            message,
        },
    )
}

/// The one map from an executor error to the host API's error: its kind and message.
fn host_error(e: &ExecError) -> HostError {
    HostError {
        code: HostErrorKind::from(e),
        message: e.to_string(),
    }
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

/// Migrates a new data directory's database and creates its admin key, as `cyfr init`
/// does; returns the raw key (shown once, never stored).
pub async fn create_admin_key(data_dir: &Path) -> anyhow::Result<String> {
    use cyfr_core::keys::{self, KeyType, NewKey};
    let db = CoreDb(Arc::new(LocalDb::open(db_path(data_dir)).await?));
    cyfr_core::migrate::migrate(&db)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let new = NewKey {
        name: "admin".into(),
        key_type: KeyType::Admin,
        scopes: vec![],
        rate_limit: None,
        ip_allowlist: Default::default(),
    };
    let (_, raw) = keys::create(&db, &crate::core_db::NativeEnv, &new, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(raw)
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
        cyfr_core::migrate::migrate(&CoreDb(db.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let abandoned = crate::recovery::fail_abandoned_runs(&db, now).await?;
        if abandoned > 0 {
            tracing::warn!(
                abandoned,
                "runs left `started` by a previous process marked failed"
            );
        }
        let cache_dir = opts
            .cache_dir
            .clone()
            .unwrap_or_else(|| opts.data_dir.join("cache"));
        // The cache's key lives in the data directory, outside the cache (which may be elsewhere).
        let code_key = Arc::new(crate::code_cache::CacheKey::load_or_create(
            &crate::code_cache::key_file(&opts.data_dir),
        )?);
        let executor = Arc::new(Executor::with_cache_key(&cache_dir, code_key.clone())?);
        let api = Arc::new(HostApi::new(executor, opts.components_root.clone()));
        let local_router = api.local_router.clone();
        let mut variables = opts.variables.clone();
        variables.insert("host_url".into(), format!("http://{INTERNAL_AUTHORITY}"));
        // Migrated above, before anything is served: the router need not check per request.
        variables.insert(
            "schema_version".into(),
            cyfr_core::migrate::latest_version().to_string(),
        );
        // This runner takes a whole batch in one `execute` (`cyfr_core::sql_batch`).
        variables.insert("sqlite_batch".into(), "1".into());
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
                "master_keys" => files
                    .get()
                    .map_err(|e| tracing::error!("master keys unreadable: {e:#}"))
                    .ok(),
                _ => None,
            }))
        };
        let mut allowed_outbound = Vec::new();
        // The identity providers `cyfr login` signs in with: their origins only.
        let providers = cyfr_core::config::Config::from_lookup(|n| opts.variables.get(n).cloned())
            .map(|c| c.login_providers)
            .unwrap_or_default();
        for p in &providers {
            allowed_outbound.extend(p.authorities());
        }
        if !opts.hosts.is_empty() {
            let targets = cyfr_core::host_api::HostTarget::parse_list(&opts.hosts.join(","))
                .map_err(|e| anyhow::anyhow!("--host: {e}"))?;
            for t in &targets {
                let uri: http::Uri = t
                    .url
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--host {}: {e}", t.url))?;
                allowed_outbound.extend(uri.authority().map(|a| a.to_string()));
            }
            variables.insert("hosts".into(), opts.hosts.join(","));
            let key = std::env::var("CYFR_HOST_TOKEN_KEY").map_err(|_| {
                anyhow::anyhow!(
                    "remote hosts need CYFR_HOST_TOKEN_KEY (the key `cyfr host` was started with)"
                )
            })?;
            variables.insert("host_token_key".into(), key);
        }
        // Remote hosts over mutual TLS: the client certificate and CA from the environment.
        let host_tls = match opts.hosts.is_empty() {
            true => None,
            false => crate::tls::client_from_env()?,
        };
        let config = RouterConfig {
            host_tls,
            allowed_outbound,
            wasm: opts.router_wasm,
            db,
            variables,
            internal_authority: INTERNAL_AUTHORITY.into(),
            compiled_cache: Some(crate::code_cache::CodeCache::new(cache_dir, code_key)?),
            dynamic_variables: dynamic,
        };
        let runner = Arc::new(SpinRunner::new(config, api)?);
        let _ = local_router.set(Arc::new(RunnerRouter(Arc::downgrade(&runner))));
        Ok(Server {
            runner,
            _lock: lock,
        })
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.runner.serve(listener, shutdown).await
    }

    /// Handles one request without a socket (benchmarks, tests).
    pub async fn handle(
        &self,
        req: http::Request<Bytes>,
        peer: SocketAddr,
    ) -> anyhow::Result<http::Response<Bytes>> {
        self.runner.handle(req, peer).await
    }
}

#[cfg(test)]
mod tests {
    use super::load_directory;
    use std::path::PathBuf;

    fn temp_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d =
            std::env::temp_dir().join(format!("cyfr-load-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const MANIFEST: &str = r#"{"id":"reagent:local.x","type":"reagent","version":"0.1.0"}"#;

    #[cfg(unix)]
    #[test]
    fn a_symlinked_file_out_of_the_components_root_is_refused() {
        let root = temp_dir("root");
        let outside = temp_dir("outside");
        let secret = outside.join("secret.txt");
        std::fs::write(&secret, "top secret").unwrap();
        // The wasm is a symlink to a file outside the root.
        let comp = root.join("leak");
        std::fs::create_dir_all(&comp).unwrap();
        std::fs::write(comp.join("cyfr-manifest.json"), MANIFEST).unwrap();
        std::os::unix::fs::symlink(&secret, comp.join("reagent.wasm")).unwrap();
        let e = load_directory(&root, "leak").unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        assert!(!e.contains("top secret"));
        // Same for the manifest, even one pointing at /etc/passwd.
        let comp2 = root.join("leak2");
        std::fs::create_dir_all(&comp2).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", comp2.join("cyfr-manifest.json")).unwrap();
        assert!(load_directory(&root, "leak2")
            .unwrap_err()
            .contains("symlink"));
        // A symlink to a file inside the root is refused as well: no symlinks at all.
        let comp3 = root.join("inner");
        std::fs::create_dir_all(&comp3).unwrap();
        std::fs::write(comp3.join("real.json"), MANIFEST).unwrap();
        std::os::unix::fs::symlink(comp3.join("real.json"), comp3.join("cyfr-manifest.json"))
            .unwrap();
        assert!(load_directory(&root, "inner")
            .unwrap_err()
            .contains("symlink"));
        // A directory symlink out of the root is refused by the canonical-path check.
        std::os::unix::fs::symlink(&outside, root.join("away")).unwrap();
        assert!(load_directory(&root, "away")
            .unwrap_err()
            .contains("outside"));
        // Regular files still load.
        let ok = root.join("ok");
        std::fs::create_dir_all(&ok).unwrap();
        std::fs::write(ok.join("cyfr-manifest.json"), MANIFEST).unwrap();
        std::fs::write(ok.join("reagent.wasm"), b"\0asm").unwrap();
        assert_eq!(load_directory(&root, "ok").unwrap().manifest, MANIFEST);
    }

    #[cfg(unix)]
    #[test]
    fn readme_and_config_are_read_when_present_and_a_symlinked_one_is_refused() {
        let root = temp_dir("files");
        let comp = root.join("c");
        std::fs::create_dir_all(&comp).unwrap();
        std::fs::write(comp.join("cyfr-manifest.json"), MANIFEST).unwrap();
        std::fs::write(comp.join("reagent.wasm"), b"\0asm").unwrap();
        let bare = load_directory(&root, "c").unwrap();
        assert_eq!((bare.readme, bare.config), (None, None));
        std::fs::write(comp.join("README.md"), "# X").unwrap();
        std::fs::write(comp.join("config.json"), r#"{"a":1}"#).unwrap();
        let full = load_directory(&root, "c").unwrap();
        assert_eq!(full.readme.as_deref(), Some("# X"));
        assert_eq!(full.config.as_deref(), Some(r#"{"a":1}"#));
        // A README that is a symlink (to a key file, say) is refused, not followed.
        std::fs::remove_file(comp.join("README.md")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", comp.join("README.md")).unwrap();
        let e = load_directory(&root, "c").unwrap_err();
        assert!(e.contains("symlink") && !e.contains("root:"), "{e}");
    }
}
