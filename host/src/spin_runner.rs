//! Serves `router.wasm` as Spin would.
//!
//! `router.wasm` is a Spin (spin-sdk 5.2) WASI HTTP component: it exports
//! `wasi:http/incoming-handler@0.2.0` and imports WASI 0.2 (cli/io/clocks/random, http types and
//! outgoing-handler), `spin:sqlite/sqlite@3.0.0` and `fermyon:spin/variables@2.0.0`.
//! [`SpinRunner`] compiles it once, links those imports natively (SQLite over an embedded
//! [`LocalDb`], variables from a map, outbound HTTP to the internal authority answered
//! in-process by an [`InternalService`], every other outbound request denied), and runs a fresh
//! instance (a new `Store`, from the pooling allocator) for every request.
//!
//! Like Spin, each request gets `spin-client-addr` (the real peer `ip:port`), `spin-full-url`,
//! `spin-path-info`, `spin-matched-route`, `spin-base-path`, `spin-raw-component-route` and
//! `spin-component-route` headers, as for a component mounted at route `/...`; any
//! client-sent headers of those names are removed first, so they cannot be spoofed.

pub mod limits;
mod outbound;
mod spin_host;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::db::LocalDb;
use limits::{AnonLimiter, ConnGate, ServeLimits};
use outbound::OutboundHooks;
use spin_host::{SpinCtxView, SpinState, SpinView};
use tracing::Instrument as _;

/// Largest request body accepted; larger requests get `413 Payload Too Large`.
pub const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;

/// Most router instances at once: as many as connections may be open (each serves one
/// request at a time), so open connections alone never exhaust the pool.
pub const MAX_CONCURRENT_INSTANCES: u32 = 1024;

/// How long a request waits for a free router instance before it gets `503`.
const INSTANCE_WAIT: Duration = Duration::from_secs(5);

/// How often expired sessions are purged while serving.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Largest linear memory a router instance may grow to.
pub const MAX_INSTANCE_MEMORY: usize = 1 << 30;

/// How much of a router instance's memory stays resident between requests (reset in place).
pub const KEEP_RESIDENT: usize = 16 << 20;

/// How often running guests yield to the async runtime (wasmtime epoch tick).
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How long `serve` waits for in-flight connections after shutdown is signalled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A variable source consulted before the fixed map, on every lookup.
pub type DynamicVariables = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The router component and what its imports are served from.
pub struct RouterConfig {
    /// The `router.wasm` component bytes.
    pub wasm: Vec<u8>,
    /// The database behind Spin's `default` SQLite database.
    pub db: Arc<LocalDb>,
    /// Spin variables (`fermyon:spin/variables.get`). Names are matched case-insensitively
    /// (looked up lower-cased, as Spin does).
    pub variables: HashMap<String, String>,
    /// The authority (e.g. `host.cyfr.internal`) whose outbound requests are answered by the
    /// [`InternalService`]. Every other outbound request is denied.
    pub internal_authority: String,
    /// Where the compiled router is cached (`router-<sha256>.cwasm`), so a restart or a
    /// second server skips compilation. `None` compiles every time.
    pub compiled_cache: Option<crate::code_cache::CodeCache>,
    /// Variables computed at each lookup (names lower-case), before `variables`.
    pub dynamic_variables: Option<DynamicVariables>,
    /// Authorities (`host:port`) the router may call over the network (remote cyfr hosts).
    pub allowed_outbound: Vec<String>,
    /// The TLS client (client certificate, hosts' CA) for those hosts, if configured.
    pub host_tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

/// What the router's outbound requests to `internal_authority` are answered by (in-process;
/// nothing goes over the network).
pub trait InternalService: Send + Sync + 'static {
    /// Answers one request. The request keeps the guest's method, URI (scheme, authority,
    /// path and query) and headers (plus `host`); its body is collected.
    fn handle(
        &self,
        req: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = http::Response<Bytes>> + Send>>;

    /// Answers one request whose answer may stream (a run the router asked to have
    /// streamed); by default [`InternalService::handle`]'s answer, whole.
    fn handle_streaming(
        &self,
        req: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = http::Response<StreamedBody>> + Send>> {
        let whole = self.handle(req);
        Box::pin(async move {
            whole
                .await
                .map(|b| Full::new(b).map_err(|never| match never {}).boxed_unsync())
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of an answer to a client: whole, or the router's event stream as it is written.
pub type RouterBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The router's answer: buffered, or an event stream going out as it is written.
enum RouterAnswer {
    Whole(http::Response<Bytes>),
    Stream(http::Response<RouterBody>),
}

/// A response body that may arrive in pieces (a streamed run, a streamed router answer).
pub type StreamedBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// Runs `router.wasm` as Spin would: one compiled component, a fresh instance per request.
///
/// `Send + Sync`; share it in an `Arc`.
pub struct SpinRunner {
    engine: Engine,
    pre: ProxyPre<RequestState>,
    db: Arc<LocalDb>,
    variables: Arc<HashMap<String, String>>,
    dynamic_variables: Option<DynamicVariables>,
    allowed_outbound: Arc<[String]>,
    host_tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    internal_authority: Arc<str>,
    internal: Arc<dyn InternalService>,
    stop_ticker: Arc<AtomicBool>,
    /// Free router instance slots: a request waits here (briefly) instead of failing at once.
    instance_slots: Arc<tokio::sync::Semaphore>,
    limits: ServeLimits,
    anon: AnonLimiter,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SpinRunner>();
};

impl std::fmt::Debug for SpinRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpinRunner")
            .field("db", &self.db)
            .field("internal_authority", &self.internal_authority)
            .finish_non_exhaustive()
    }
}

/// Per-request store data.
struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    spin: SpinState,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl SpinView for RequestState {
    fn spin(&mut self) -> SpinCtxView<'_> {
        SpinCtxView {
            state: &mut self.spin,
            table: &mut self.table,
        }
    }
}

impl SpinRunner {
    /// The same runner held to `limits` instead of the defaults and `CYFR_*` overrides (an
    /// embedding or a test that sends many anonymous requests from one address).
    pub fn with_limits(mut self, limits: ServeLimits) -> SpinRunner {
        self.anon = AnonLimiter::new(&limits);
        self.limits = limits;
        self
    }

    /// Compiles the router once and links it with WASI 0.2, wasi:http, Spin SQLite and Spin
    /// variables, on the pooling instance allocator. Fails if the component imports anything
    /// else or does not export `wasi:http/incoming-handler@0.2.x`.
    pub fn new(
        config: RouterConfig,
        internal: Arc<dyn InternalService>,
    ) -> anyhow::Result<SpinRunner> {
        let limits = ServeLimits::from_env();
        // `CYFR_ROUTER_INSTANCES` lowers the pool (tests exhaust it without 1024 requests).
        let instances = std::env::var("CYFR_ROUTER_INSTANCES")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(MAX_CONCURRENT_INSTANCES);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_memory_size(MAX_INSTANCE_MEMORY)
            // With PAGEMAP_SCAN (Linux ≥ 6.7) only the pages a request touched are reset, by
            // memset, and stay resident: no madvise and no page faults for the next request.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm_config = Config::new();
        wasm_config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            // The router uses no async component model: every host call (a `/health` makes
            // dozens) then skips wasmtime's concurrent-task bookkeeping (+16 % /health).
            .concurrency_support(false);
        crate::perf_map(&mut wasm_config);
        let engine = Engine::new(&wasm_config)
            .map_err(anyhow::Error::from)
            .context("creating wasmtime engine")?;

        let component = load_or_compile(&engine, &config.wasm, config.compiled_cache.as_ref())?;

        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        spin_host::add_to_linker(&mut linker).context("linking Spin interfaces")?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the router imports something the host does not provide")?;
        let pre = ProxyPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the router does not export wasi:http/incoming-handler@0.2")?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("cyfr-epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .context("spawning the epoch ticker thread")?;
        }

        let variables = config
            .variables
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();

        Ok(SpinRunner {
            engine,
            pre,
            db: config.db,
            variables: Arc::new(variables),
            dynamic_variables: config.dynamic_variables,
            allowed_outbound: config.allowed_outbound.into(),
            host_tls: config.host_tls,
            internal_authority: config.internal_authority.into(),
            internal,
            stop_ticker,
            instance_slots: Arc::new(tokio::sync::Semaphore::new(instances as usize)),
            anon: AnonLimiter::new(&limits),
            limits,
        })
    }

    fn new_store(&self) -> Store<RequestState> {
        // No preopens, no env, no args, no network; stdout/stderr go to the host's.
        let wasi = WasiCtx::builder()
            .inherit_stdout()
            .inherit_stderr()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = RequestState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                internal_authority: self.internal_authority.clone(),
                internal: self.internal.clone(),
                allowed: self.allowed_outbound.clone(),
                tls: self.host_tls.clone(),
            },
            spin: SpinState {
                db: self.db.clone(),
                variables: self.variables.clone(),
                dynamic: self.dynamic_variables.clone(),
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }

    /// Handles one request in a fresh router instance. `peer` is the client's real address.
    ///
    /// A body over [`MAX_REQUEST_BODY`] gets `413` without running the guest, a bad `Host`
    /// `400`, and `503` is returned when all [`MAX_CONCURRENT_INSTANCES`] instance slots stay
    /// busy for 5 s (`INSTANCE_WAIT`). Fails if the guest traps or produces no (or an error)
    /// response (`serve` turns that into a `500`).
    /// The response body is buffered, and returned once the guest invocation has completed.
    pub async fn handle(
        &self,
        req: http::Request<Bytes>,
        peer: SocketAddr,
    ) -> anyhow::Result<http::Response<Bytes>> {
        match self.answer(req, peer, false).await? {
            RouterAnswer::Whole(r) => Ok(r),
            RouterAnswer::Stream(_) => anyhow::bail!("a buffered answer streamed"),
        }
    }

    /// [`SpinRunner::handle`], except that with `may_stream` an event stream
    /// (`text/event-stream`) the router sets goes out as the router writes it.
    async fn answer(
        &self,
        req: http::Request<Bytes>,
        peer: SocketAddr,
        may_stream: bool,
    ) -> anyhow::Result<RouterAnswer> {
        if req.body().len() > MAX_REQUEST_BODY {
            return Ok(RouterAnswer::Whole(simple_response(
                StatusCode::PAYLOAD_TOO_LARGE,
            )));
        }
        let req = match prepare_request(req, peer) {
            Ok(r) => r,
            // The client's Host (or path) cannot form a URL: its fault, not ours.
            Err(e) => {
                tracing::debug!(peer = %peer.ip(), "bad request: {e}");
                return Ok(RouterAnswer::Whole(simple_response(
                    StatusCode::BAD_REQUEST,
                )));
            }
        };

        // Wait briefly for a slot rather than refusing at once; the permit lives as long as
        // the instance (it moves into the guest task).
        let permit =
            match tokio::time::timeout(INSTANCE_WAIT, self.instance_slots.clone().acquire_owned())
                .await
            {
                Ok(Ok(p)) => p,
                _ => {
                    tracing::warn!(peer = %peer.ip(), "router instance pool exhausted");
                    return Ok(RouterAnswer::Whole(simple_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                    )));
                }
            };
        let mut store = self.new_store();
        let proxy = match self.pre.instantiate_async(&mut store).await {
            Ok(proxy) => proxy,
            Err(e) if e.is::<wasmtime::PoolConcurrencyLimitError>() => {
                tracing::warn!(peer = %peer.ip(), "router instance pool exhausted: {e}");
                return Ok(RouterAnswer::Whole(simple_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                )));
            }
            Err(e) => return Err(anyhow::Error::from(e).context("instantiating the router")),
        };

        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = req.map(Full::new);
        let mut http = store.data_mut().http();
        let incoming = http.new_incoming_request(Scheme::Http, req)?;
        let outparam = http.new_response_outparam(tx)?;

        let guest = tokio::spawn(
            async move {
                let r = proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await;
                // The slot is free once the instance is gone.
                drop(store);
                drop(permit);
                r
            }
            .in_current_span(),
        );

        buffered_response(rx, guest, may_stream).await
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves, one task per connection.
    ///
    /// On shutdown it stops accepting, lets in-flight requests finish (up to 30 s) and
    /// returns. Guest failures become `500`s; the server keeps serving.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        let gate = ConnGate::new(&self.limits);
        let purge = tokio::spawn(purge_loop(self.db.clone(), Arc::downgrade(&self)));
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // E.g. out of file descriptors: back off rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Over a cap the connection is closed unread: it holds nothing.
            let permit = match gate.admit(peer.ip()) {
                Ok(p) => p,
                Err(why) => {
                    tracing::warn!(peer = %peer.ip(), "connection refused: {}", match why {
                        limits::ConnRefused::Total => "server connection cap reached",
                        limits::ConnRefused::PerPeer => "per-peer connection cap reached",
                    });
                    drop(stream);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let mut stop_rx = stop_rx.clone();
            let header_timeout = self.limits.header_timeout;
            connections.spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.serve_one(req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                let stopped = async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                };
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    () = stopped => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection error: {e}");
                }
            });
        }
        drop(listener);
        purge.abort();
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown: abandoning {} connection(s)", connections.len());
            connections.abort_all();
        }
        Ok(())
    }

    async fn serve_one(
        &self,
        req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> http::Response<RouterBody> {
        let rid = limits::request_id(req.headers().get("x-request-id"));
        let span = tracing::info_span!("request", request_id = %rid, peer = %peer.ip());
        let mut resp = match self.serve_one_inner(req, peer, &rid).instrument(span).await {
            RouterAnswer::Whole(r) => {
                r.map(|b| Full::new(b).map_err(|never| match never {}).boxed_unsync())
            }
            RouterAnswer::Stream(r) => r,
        };
        if let Ok(v) = HeaderValue::from_str(&rid) {
            resp.headers_mut()
                .insert(HeaderName::from_static("x-request-id"), v);
        }
        resp
    }

    async fn serve_one_inner(
        &self,
        mut req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
        rid: &str,
    ) -> RouterAnswer {
        // Requests without credentials are rate-limited per peer before anything else runs
        // (SQL, a router instance): anonymous floods cost a map lookup.
        if !req.headers().contains_key(http::header::AUTHORIZATION) {
            if let Err(wait) = self.anon.check(peer.ip()) {
                tracing::warn!("refused 429: anonymous request rate exceeded");
                let mut r = simple_response(StatusCode::TOO_MANY_REQUESTS);
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                return RouterAnswer::Whole(r);
            }
        }
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_REQUEST_BODY as u64) {
            return RouterAnswer::Whole(close(simple_response(StatusCode::PAYLOAD_TOO_LARGE)));
        }
        // The router sees the id this request is logged under.
        if let Ok(v) = HeaderValue::from_str(rid) {
            req.headers_mut()
                .insert(HeaderName::from_static("x-request-id"), v);
        }
        let (parts, body) = req.into_parts();
        // One deadline for the whole body: a client that stalls mid-body holds nothing long.
        let read = tokio::time::timeout(
            self.limits.body_timeout,
            Limited::new(body, MAX_REQUEST_BODY).collect(),
        )
        .await;
        let body = match read {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return RouterAnswer::Whole(close(simple_response(StatusCode::PAYLOAD_TOO_LARGE)));
            }
            Ok(Err(e)) => {
                tracing::debug!("reading request body: {e}");
                return RouterAnswer::Whole(close(simple_response(StatusCode::BAD_REQUEST)));
            }
            Err(_) => {
                tracing::warn!("refused 408: request body not received in time");
                return RouterAnswer::Whole(close(simple_response(StatusCode::REQUEST_TIMEOUT)));
            }
        };
        match self
            .answer(http::Request::from_parts(parts, body), peer, true)
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!("router request failed: {e:?}");
                RouterAnswer::Whole(simple_response(StatusCode::INTERNAL_SERVER_ERROR))
            }
        }
    }
}

/// Marks a response as the connection's last: its request body was not (fully) read.
fn close(mut resp: http::Response<Bytes>) -> http::Response<Bytes> {
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Deletes expired sessions (and their keys) in bounded batches, off the request path, and
/// forgets idle peers of the anonymous limiter; ends when the runner is gone.
async fn purge_loop(db: Arc<LocalDb>, runner: std::sync::Weak<SpinRunner>) {
    let core = crate::core_db::CoreDb(db);
    loop {
        tokio::time::sleep(PURGE_EVERY).await;
        let Some(runner) = runner.upgrade() else {
            return;
        };
        runner.anon.forget_idle();
        // The router's own reading of its variables: the same default and bounds.
        let audit_retention_ms =
            cyfr_core::config::Config::from_lookup(|n| runner.variables.get(n).cloned())
                .map_or(0, |c| c.audit_retention_ms);
        drop(runner);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Batches of 100 with a yield between: a backlog never holds the database long.
        for _ in 0..1000 {
            match cyfr_core::sessions::purge_expired(&core, now).await {
                Ok(n) if n >= cyfr_core::sessions::PURGE_BATCH => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("purging expired sessions: {e}");
                    break;
                }
            }
        }
        if let Err(e) = cyfr_core::logins::purge_expired(&core, now).await {
            tracing::warn!("purging ended login sessions: {e}");
        }
        // Chains the audit rows old enough to be final, and prunes past retention.
        for _ in 0..1000 {
            match cyfr_core::audit::seal(&core, now, audit_retention_ms).await {
                Ok(n) if n >= cyfr_core::audit::SEAL_BATCH as usize => {
                    tokio::task::yield_now().await
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("sealing the audit log: {e}");
                    break;
                }
            }
        }
    }
}

impl Drop for SpinRunner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

fn simple_response(status: StatusCode) -> http::Response<Bytes> {
    let mut resp = http::Response::new(Bytes::from(format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Spin's per-request headers (`crates/trigger-http/src/headers.rs`), for a component at
/// route `/...` (so `spin-path-info` is the whole path).
const SPIN_FULL_URL: &str = "spin-full-url";
const SPIN_PATH_INFO: &str = "spin-path-info";
const SPIN_MATCHED_ROUTE: &str = "spin-matched-route";
const SPIN_BASE_PATH: &str = "spin-base-path";
const SPIN_RAW_COMPONENT_ROUTE: &str = "spin-raw-component-route";
const SPIN_COMPONENT_ROUTE: &str = "spin-component-route";
const SPIN_CLIENT_ADDR: &str = "spin-client-addr";

/// Replaces any client-sent Spin headers with the real values, as Spin does before handing
/// the request to the component, and makes sure the request has an authority.
fn prepare_request(
    mut req: http::Request<Bytes>,
    peer: SocketAddr,
) -> anyhow::Result<http::Request<Bytes>> {
    let host = match req.uri().authority() {
        Some(a) => a.as_str().to_owned(),
        None => req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
            .to_owned(),
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .to_owned();
    let path = req.uri().path().to_owned();
    let full_url = format!("http://{host}{path_and_query}");

    // wasi:http needs an authority: hyper gives origin-form URIs, so use the Host.
    if req.uri().authority().is_none() {
        *req.uri_mut() = http::Uri::builder()
            .scheme("http")
            .authority(host.as_str())
            .path_and_query(path_and_query.as_str())
            .build()
            .context("invalid Host header")?;
    }

    let headers = req.headers_mut();
    // `spin-path-match-*` would be set for named wildcards; the router has none, so a client
    // must not be able to supply them either.
    let spoofable: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("spin-path-match-"))
        .cloned()
        .collect();
    for name in spoofable {
        headers.remove(name);
    }
    let mut set = |name: &'static str, value: &str| -> anyhow::Result<()> {
        // `insert` replaces every client-sent value of that name.
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).with_context(|| format!("invalid {name} value"))?,
        );
        Ok(())
    };
    set(SPIN_PATH_INFO, &path)?;
    set(SPIN_FULL_URL, &full_url)?;
    set(SPIN_MATCHED_ROUTE, "/...")?;
    set(SPIN_BASE_PATH, "/")?;
    set(SPIN_RAW_COMPONENT_ROUTE, "/...")?;
    set(SPIN_COMPONENT_ROUTE, "")?;
    set(SPIN_CLIENT_ADDR, &peer.to_string())?;
    Ok(req)
}

/// The router's response once its guest task is done, with the body buffered. A guest that
/// failed after setting its response fails the request (its body may be cut short).
async fn buffered_response<B, E>(
    rx: tokio::sync::oneshot::Receiver<Result<http::Response<B>, E>>,
    guest: tokio::task::JoinHandle<wasmtime::Result<()>>,
    may_stream: bool,
) -> anyhow::Result<RouterAnswer>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
    E: std::fmt::Debug,
{
    match rx.await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            let events = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            if may_stream && events {
                // Goes out as the router writes it; the guest task runs on. A client that
                // leaves drops the body, so the router's next write fails (and it cancels
                // the run it streams). A guest that fails mid-stream cuts the stream short.
                let body = body
                    .map_err(|e| -> BoxError { e.to_string().into() })
                    .boxed_unsync();
                drop(guest);
                return Ok(RouterAnswer::Stream(http::Response::from_parts(
                    parts, body,
                )));
            }
            let body = body
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the router's response body: {e}"))?
                .to_bytes();
            // A body cut short by a trap looks complete here (the store is dropped before
            // `finish`), and nothing has been sent yet, so wait for the guest and fail
            // the request if it failed. (Spin, which streams, would already have sent a
            // truncated body.)
            guest
                .await
                .context("router task panicked")?
                .map_err(anyhow::Error::from)
                .context("router invocation failed after setting its response")?;
            // The body is buffered: hyper sets the length.
            parts.headers.remove(http::header::CONTENT_LENGTH);
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            Ok(RouterAnswer::Whole(http::Response::from_parts(parts, body)))
        }
        Ok(Err(code)) => {
            // Let the guest task finish (it normally already has).
            let _ = guest.await;
            anyhow::bail!("the router responded with an error: {code:?}")
        }
        Err(_) => {
            guest
                .await
                .context("router task panicked")?
                .map_err(anyhow::Error::from)
                .context("router invocation failed")?;
            anyhow::bail!("the router returned without producing a response")
        }
    }
}

/// Compiles the router, or loads it from `cache/router-<sha256>.cwasm` when present and
/// sealed with the cache's key (see [`crate::code_cache`]).
fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&crate::code_cache::CodeCache>,
) -> anyhow::Result<Component> {
    let hex = cyfr_core::crypto::sha256_hex(wasm);
    let name = format!("router-{hex}.cwasm");
    if let Some(c) = cache.and_then(|cache| cache.load(engine, &name, &hex)) {
        return Ok(c);
    }
    let component = Component::from_binary(engine, wasm)
        .map_err(anyhow::Error::from)
        .context("compiling the router component")?;
    if let Some(cache) = cache {
        if let Err(e) = cache.store(&name, &hex, &component) {
            tracing::warn!(error = %e, "could not cache the compiled router");
        }
    }
    Ok(component)
}

#[cfg(test)]
mod tests;
