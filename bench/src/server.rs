//! The cyfr under test: `cyfr init` and `cyfr up` in-process on loopback, set up over MCP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use cyfr_host::service::{Server, UpOptions};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};

use crate::{INPUT, PROTOCOL_VERSION};

/// Removes a scratch directory when the run ends, however it ends.
pub(crate) struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) struct Cyfr {
    pub addr: SocketAddr,
    /// The admin key (`cyfr init`'s), for registering components and setting policies.
    pub admin: String,
    /// The secret `execution` key the load uses.
    pub key: String,
    /// json-transform's reference.
    pub reference: String,
    /// Stops the in-process server.
    pub shutdown: tokio::sync::oneshot::Sender<()>,
}

/// `cyfr init` (data dir, server key, admin key), then `cyfr up` in-process on 127.0.0.1:0,
/// then, over MCP with the admin key: register json-transform inline, set its policy's
/// `rate_limit`, create a secret key with the `execution` scope, and run the reagent once
/// (the host compiles it here).
#[allow(clippy::too_many_arguments)] // one call site per benchmark; each argument is a knob it sets
pub(crate) async fn start_cyfr(
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
    cyfr_host::keyring::init(data_dir)?;
    let admin = cyfr_host::service::create_admin_key(data_dir).await?;

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
    say!(
        "cyfr server ready in {:.1} s (router compiled or loaded from cache)",
        started.elapsed().as_secs_f64()
    );
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
    let reg = tool(
        addr,
        &admin,
        "component",
        json!({ "action": "register", "manifest": manifest, "wasm": wasm_b64 }),
    )
    .await?;
    let reference = reg["reference"]
        .as_str()
        .context("register returned no reference")?
        .to_string();
    tool(addr, &admin, "policy", json!({ "action": "set", "reference": reference, "field": "rate_limit", "value": policy_rate_limit })).await?;
    let mut key_args =
        json!({ "action": "create", "name": "bench", "type": "secret", "scope": ["execution"] });
    if let Some(r) = rate_limit {
        key_args["rate_limit"] = json!(r);
    }
    let key = tool(addr, &admin, "key", key_args).await?["key"]
        .as_str()
        .context("key create returned no key")?
        .to_string();
    let t = std::time::Instant::now();
    let first = tool(addr, &key, "execution", json!({ "action": "run", "reference": reference, "type": "reagent", "input": serde_json::from_str::<Json>(INPUT)? })).await?;
    if first["status"] != "completed" || first["result"]["sum"] != 6 {
        bail!("first execution.run returned {first}");
    }
    say!(
        "first execution.run (artifact upload + compile) took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(Cyfr {
        addr,
        admin,
        key,
        reference,
        shutdown: tx,
    })
}

/// One MCP `tools/call` on a fresh connection; returns `structuredContent` or fails.
pub(crate) async fn tool(
    addr: SocketAddr,
    key: &str,
    name: &str,
    arguments: Json,
) -> anyhow::Result<Json> {
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
    let v: Json = serde_json::from_slice(&bytes)
        .with_context(|| format!("{name}: HTTP {status}: {}", String::from_utf8_lossy(&bytes)))?;
    if v.get("error").is_some() || v["result"]["isError"] != json!(false) {
        bail!("{name} failed: {v}");
    }
    Ok(v["result"]["structuredContent"].clone())
}
