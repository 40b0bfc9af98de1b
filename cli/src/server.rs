//! `cyfr init` and `cyfr up`: the self-hosted, all-in-one server.

use crate::Output;
use anyhow::{bail, Context, Result};
use clap::Args;
use cyfr_host::core_db::CoreDb;
use cyfr_host::db::LocalDb;
use cyfr_host::service::{db_path, Server, UpOptions};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The router this binary was built with (see build.rs).
const ROUTER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/router.wasm"));

/// Options of `cyfr up`.
#[derive(Args)]
pub struct UpArgs {
    /// Data directory made by `cyfr init`.
    #[arg(long, env = "CYFR_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Address to listen on (default: CYFR_HOST:CYFR_PORT, else 127.0.0.1:4000).
    #[arg(long)]
    listen: Option<String>,
    /// Serve this router component instead of the embedded one.
    #[arg(long)]
    router: Option<PathBuf>,
    /// Where `component.register {directory}` paths are resolved.
    #[arg(long, default_value = ".")]
    components: PathBuf,
    /// Proxies (IPs/CIDRs) whose X-Forwarded-For is believed.
    #[arg(long, env = "CYFR_TRUSTED_PROXIES")]
    trusted_proxies: Option<String>,
    /// Compiled-code cache (default: DATA_DIR/cache); may be shared between servers.
    #[arg(long, env = "CYFR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Run components on these remote hosts (`URL#PUBLIC_KEY`, as `cyfr host` prints) instead
    /// of in this process; repeat for several. Needs CYFR_HOST_TOKEN_KEY.
    #[arg(long = "host", env = "CYFR_HOSTS", value_delimiter = ',')]
    hosts: Vec<String>,
    /// The URL remote hosts reach this server at, for formulas' callbacks (default with
    /// --host: http://LISTEN_ADDRESS, loopback when listening on all interfaces).
    #[arg(long, env = "CYFR_ROUTER_URL")]
    router_url: Option<String>,
    /// Per-session sealed-box secrets (mcp+session://encryption/pubkey).
    #[arg(long, env = "CYFR_ENABLE_SESSION_ENCRYPTION")]
    session_encryption: bool,
    /// Development mode: accept and show secrets over plain HTTP from other machines.
    #[arg(long, env = "CYFR_DEV")]
    dev: bool,
    /// Browser origins allowed besides loopback ones (comma-separated, or *).
    #[arg(long, env = "CYFR_ALLOWED_ORIGINS")]
    allowed_origins: Option<String>,
    /// Days finished runs and their logs are kept (default 30; 0 keeps them forever).
    #[arg(long, env = "CYFR_EXECUTION_RETENTION_DAYS")]
    execution_retention_days: Option<u64>,
    /// Log format on stderr: `human` or `json` (one JSON object a line); filter with RUST_LOG.
    #[arg(long, env = "CYFR_LOG_FORMAT", default_value = "human")]
    log_format: LogFormat,
}

/// How the server logs to stderr.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, with the request's span (request id, peer) on each.
    Json,
}

/// Installs the log subscriber: stderr, `RUST_LOG` filter (default `info`).
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second install (tests in one process) is harmless: keep the first.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// `http://ADDR` of a listening socket, with an unspecified IP (all interfaces) as loopback.
fn callback_url(local: std::net::SocketAddr) -> String {
    let mut a = local;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{a}")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Creates the data directory, the master key (unless CYFR_MASTER_KEY is set) and the first admin key.
pub fn init(data_dir: &Path, out: &Output) -> Result<()> {
    if db_path(data_dir).exists() {
        bail!("{} is already initialized; use it with `cyfr up --data-dir {}`, or pick another --data-dir", data_dir.display(), data_dir.display());
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    restrict(data_dir, 0o700)?;
    // The key-encryption key, in a file of its own rather than in any config value.
    cyfr_host::keyring::init(data_dir)?;
    let raw = runtime()?.block_on(cyfr_host::service::create_admin_key(data_dir))?;
    out.show(&json!({ "data_dir": data_dir.display().to_string(), "admin_key": raw, "database": db_path(data_dir).display().to_string() }), || {
        format!(
            "Initialized cyfr in {dir}\n\nFirst admin key (shown only this once; store it now):\n\n    {raw}\n\nNext:\n    cyfr up --data-dir {dir}\n    export CYFR_API_KEY={raw}",
            dir = data_dir.display()
        )
    });
    Ok(())
}

fn restrict(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    let _ = mode;
    Ok(())
}

fn listen_addr(args: &UpArgs) -> String {
    if let Some(l) = &args.listen {
        return l.clone();
    }
    let host = std::env::var("CYFR_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("CYFR_PORT").unwrap_or_else(|_| "4000".into());
    format!("{host}:{port}")
}

/// Serves until interrupted.
pub fn up(args: UpArgs, out: &Output) -> Result<()> {
    init_tracing(args.log_format);
    // An empty database (one a platform would create) is served only to be bootstrapped:
    // the master key from the environment, the first admin key by `bootstrap_admin_key`.
    let bootstrap = std::env::var("CYFR_BOOTSTRAP_ADMIN_KEY").is_ok_and(|v| !v.trim().is_empty());
    if bootstrap && !db_path(&args.data_dir).exists() {
        if !cyfr_host::keyring::env_mode() {
            bail!("CYFR_BOOTSTRAP_ADMIN_KEY on a new data directory needs CYFR_MASTER_KEY too (`cyfr init --edge` prints both)");
        }
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        restrict(&args.data_dir, 0o700)?;
    } else if !db_path(&args.data_dir).exists() {
        bail!(
            "{} is not initialized: run `cyfr init --data-dir {}` first",
            args.data_dir.display(),
            args.data_dir.display()
        );
    }
    let router_wasm = match &args.router {
        Some(p) => std::fs::read(p).with_context(|| format!("reading router {}", p.display()))?,
        None => ROUTER_WASM.to_vec(),
    };
    let mut variables = HashMap::new();
    if let Some(p) = &args.trusted_proxies {
        variables.insert("trusted_proxies".to_string(), p.clone());
    }
    if let Some(o) = &args.allowed_origins {
        variables.insert("allowed_origins".to_string(), o.clone());
    }
    if args.session_encryption
        || std::env::var("ENABLE_SESSION_ENCRYPTION").is_ok_and(|v| v == "true")
    {
        variables.insert("session_encryption".to_string(), "true".to_string());
    }
    if args.dev {
        variables.insert("dev_mode".to_string(), "true".to_string());
    }
    if let Some(d) = args.execution_retention_days {
        variables.insert("execution_retention_days".to_string(), d.to_string());
    }
    if let Ok(h) = std::env::var("CYFR_SESSION_TTL_HOURS") {
        variables.insert("session_ttl_hours".to_string(), h);
    }
    // Only from the environment, never a config file: the JWT key and the providers'
    // client secrets are secrets.
    for (env, var) in [
        ("CYFR_JWT_SIGNING_KEY", "jwt_signing_key"),
        ("CYFR_JWT_CLOCK_SKEW_SECONDS", "jwt_clock_skew_seconds"),
        ("CYFR_USER_RATE_LIMIT", "user_rate_limit"),
        ("CYFR_AUDIT_RETENTION_DAYS", "audit_retention_days"),
        ("CYFR_ALLOWED_USER", "allowed_users"),
        ("CYFR_GITHUB_CLIENT_ID", "github_client_id"),
        ("CYFR_GOOGLE_CLIENT_ID", "google_client_id"),
        ("CYFR_OIDC_CLIENT_ID", "oidc_client_id"),
        ("CYFR_MCP_TOOLS", "mcp_tools"),
        ("CYFR_GITHUB_CLIENT_SECRET", "github_client_secret"),
        ("CYFR_GOOGLE_CLIENT_SECRET", "google_client_secret"),
        ("CYFR_OIDC_CLIENT_SECRET", "oidc_client_secret"),
        ("CYFR_OIDC_ISSUER", "oidc_issuer"),
        ("CYFR_BOOTSTRAP_ADMIN_KEY", "bootstrap_admin_key"),
    ] {
        if let Ok(v) = std::env::var(env) {
            variables.insert(var.to_string(), v);
        }
    }
    // Refused here, at start, rather than on every request (a short JWT key, a skew over
    // 300 s, ...): the router reads the same variables with the same function.
    cyfr_core::config::Config::from_lookup(|n| variables.get(n).cloned())
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let components_root = args
        .components
        .canonicalize()
        .with_context(|| format!("components root {}", args.components.display()))?;
    let digest = cyfr_core::crypto::digest(&router_wasm);
    let rt = runtime()?;
    rt.block_on(async {
        let addr = listen_addr(&args);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        // Formulas on remote hosts call back here: the address we listen on, unless told.
        if let Some(url) = args
            .router_url
            .clone()
            .or_else(|| (!args.hosts.is_empty()).then(|| callback_url(local)))
        {
            variables.insert("router_url".to_string(), url);
        }
        let server = Server::start(UpOptions {
            data_dir: args.data_dir.clone(),
            router_wasm,
            components_root,
            variables,
            cache_dir: args.cache_dir.clone(),
            hosts: args.hosts.clone(),
        })
        .await?;
        out.show(
            &json!({ "listening": format!("http://{local}/mcp"), "router_digest": digest }),
            || format!("cyfr listening on http://{local}/mcp (router {digest})"),
        );
        std::io::stdout().flush()?;
        server.serve(listener, shutdown_signal()).await
    })
}

/// Options of `cyfr host`.
#[derive(Args)]
pub struct HostArgs {
    /// Where the host keeps its key and caches.
    #[arg(long, env = "CYFR_DATA_DIR", default_value = "host-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4100")]
    listen: String,
    /// Where `component.register {directory}` paths are resolved.
    #[arg(long, default_value = ".")]
    components: PathBuf,
    /// Log format on stderr: `human` or `json`; filter with RUST_LOG.
    #[arg(long, env = "CYFR_LOG_FORMAT", default_value = "human")]
    log_format: LogFormat,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require mutual TLS: routers must present a client certificate this PEM CA signed.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Only routers whose client certificate names this DNS name (SAN); repeatable.
    #[arg(long = "allow-router", requires = "client_ca")]
    allow_router: Vec<String>,
}

/// `cyfr host`: runs components for remote routers.
pub fn host(args: HostArgs, out: &Output) -> Result<()> {
    init_tracing(args.log_format);
    let token_key = std::env::var("CYFR_HOST_TOKEN_KEY").map_err(|_| anyhow::anyhow!("set CYFR_HOST_TOKEN_KEY: the key (32+ characters) shared with the routers that dispatch here"))?;
    let key = cyfr_host::host_server::HostKey::load_or_create(&args.data_dir)?;
    let code_key = cyfr_host::code_cache::CacheKey::load_or_create(
        &cyfr_host::code_cache::key_file(&args.data_dir),
    )?;
    let executor = Arc::new(cyfr_host::executor::Executor::with_cache_key(
        &args.data_dir.join("cache"),
        Arc::new(code_key),
    )?);
    let components = args
        .components
        .canonicalize()
        .with_context(|| format!("components root {}", args.components.display()))?;
    let api = cyfr_host::service::HostApi::new(executor, components);
    let public = key.public_b64();
    let mut server = cyfr_host::host_server::HostServer::new(api, key, token_key)?;
    let scheme = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            server = server.with_tls(cyfr_host::tls::ServerTls::new(
                cert,
                key,
                args.client_ca.as_deref(),
                args.allow_router.clone(),
            )?);
            "https"
        }
        _ => "http",
    };
    let server = Arc::new(server);
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let url = format!("{scheme}://{}", listener.local_addr()?);
        out.show(
            &json!({ "listening": url, "public_key": public, "host": format!("{url}#{public}") }),
            || {
                let mtls = match args.client_ca.is_some() {
                    true => "\n(mutual TLS: routers present CYFR_HOST_CLIENT_CERT/KEY signed by the client CA)",
                    false => "",
                };
                format!(
                    "cyfr host listening on {url}
Routers dispatch here with:  cyfr up --host {url}#{public}{mtls}"
                )
            },
        );
        std::io::stdout().flush()?;
        server.serve(listener, shutdown_signal()).await
    })
}

/// `cyfr secret rotate-master`: a new key-encryption key rewraps every data key.
pub fn rotate_master(data_dir: &Path, out: &Output) -> Result<()> {
    if !db_path(data_dir).exists() {
        bail!("{} is not initialized", data_dir.display());
    }
    let r = runtime()?.block_on(async {
        let db = CoreDb(Arc::new(LocalDb::open(db_path(data_dir)).await?));
        cyfr_core::migrate::migrate(&db)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        cyfr_host::keyring::rotate(data_dir, &db).await
    })?;
    out.show(&json!({ "rotated": true, "kek_id": r.kek_id, "data_keys": r.data_keys, "session_keys": r.session_keys }), || {
        format!("Master key rotated (now {}): {} data keys and {} session keys rewrapped; secret ciphertexts unchanged.", r.kek_id, r.data_keys, r.session_keys)
    });
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
