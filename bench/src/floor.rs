//! The runner's floor: `tests/fixtures/http-floor` (a `wasi:http` component that answers
//! without reading its request) served by a [`SpinRunner`] of its own, configured as the
//! router's (engine settings, instance pool, per-request set-up, HTTP server), over an empty
//! database.
//! No router can answer faster on this runner, so its row bounds what `/health` can reach.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use cyfr_host::db::LocalDb;
use cyfr_host::spin_runner::{InternalService, RouterConfig, SpinRunner};

/// Answers nothing in-process: the floor component makes no outbound request.
struct Nothing;

impl InternalService for Nothing {
    fn handle(
        &self,
        _req: hyper::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = hyper::Response<Bytes>> + Send>> {
        Box::pin(async {
            let mut r = hyper::Response::new(Bytes::new());
            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            r
        })
    }
}

/// Serves `wasm` on 127.0.0.1 (a free port) until the runtime stops; its address.
pub(crate) async fn start(wasm: Vec<u8>) -> anyhow::Result<SocketAddr> {
    let config = RouterConfig {
        wasm,
        db: Arc::new(LocalDb::open_in_memory().await?),
        variables: HashMap::new(),
        internal_authority: "host.cyfr.internal".into(),
        compiled_cache: None,
        dynamic_variables: None,
        allowed_outbound: Vec::new(),
        host_tls: None,
    };
    let runner = Arc::new(SpinRunner::new(config, Arc::new(Nothing))?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(runner.serve(listener, std::future::pending()));
    Ok(addr)
}

/// The floor component's answer: `ok`.
pub(crate) fn verify(body: &[u8]) -> Result<(), String> {
    match body {
        b"ok" => Ok(()),
        other => Err(format!(
            "unexpected response: {}",
            String::from_utf8_lossy(other)
        )),
    }
}
