//! The baseline: the same reagent behind a bare hyper + wasmtime server.
//!
//! What a careful hand-rolled server does and nothing more: one engine on the pooling
//! allocator, the component compiled once and pre-linked once (`ReagentPre`), a fresh `Store`
//! with an empty WASI p2 context (no preopens, no env, no args) per request, the request body
//! passed to `compute` and its result sent back. No auth, no router, no database, no limits
//! (no fuel, no epochs), no records.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../guest-wit",
        world: "cyfr:reagent/reagent",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::ReagentPre;

/// Per-request store data: WASI and its resource table, nothing else.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The compiled, pre-linked reagent, ready to instantiate per request.
#[derive(Clone)]
pub struct Baseline {
    engine: Engine,
    pre: ReagentPre<State>,
}

impl Baseline {
    /// Compiles `wasm` once on a pooling-allocator engine and links it with WASI p2.
    pub fn new(wasm: &[u8]) -> anyhow::Result<Baseline> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(256 * 8)
            .total_memories(256 * 2)
            .total_tables(256 * 8)
            .total_stacks(256)
            .max_memory_size(64 << 20)
            // The same reset as the executor's pool: like is compared with like.
            .linear_memory_keep_resident(cyfr_host::executor::KEEP_RESIDENT)
            .table_keep_resident(cyfr_host::executor::TABLE_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        // As the executor and the router: no async component model machinery.
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .concurrency_support(false);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("baseline engine")?;
        let component = Component::from_binary(&engine, wasm)
            .map_err(anyhow::Error::from)
            .context("compiling the reagent")?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("linking the reagent")?;
        let pre = ReagentPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("not a cyfr:reagent/reagent component")?;
        Ok(Baseline { engine, pre })
    }

    /// One run: a fresh store and instance, `compute(input)`.
    pub async fn run(&self, input: &str) -> anyhow::Result<String> {
        let state = State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        let out = instance
            .cyfr_reagent_compute()
            .call_compute(&mut store, input)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(out)
    }

    /// Serves `POST <any path>` (body = the reagent's input, response = its output) forever.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let this = Arc::new(self);
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let this = this.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let this = this.clone();
                        async move { Ok::<_, Infallible>(this.respond(req).await) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn respond(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading body: {e}")),
        };
        let Ok(input) = std::str::from_utf8(&body) else {
            return text(StatusCode::BAD_REQUEST, "body is not UTF-8".into());
        };
        match self.run(input).await {
            Ok(out) => {
                let mut r = Response::new(Full::new(Bytes::from(out)));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        }
    }
}

fn text(status: StatusCode, msg: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(msg)));
    *r.status_mut() = status;
    r
}
