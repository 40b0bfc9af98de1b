//! The Cloudflare Workers entry point: a `fetch` handler that adapts `cyfr-core` to Workers.
//!
//! `Db` is the D1 binding `DB` (a core batch is one D1 `batch()`), configuration comes from
//! the Worker's `[vars]` and secrets, and runs are dispatched to `cyfr host`s over `fetch`
//! (the policy is core's `hosts::HostPool`; this adapter only sends), through the
//! `mtls_certificates` binding `HOST_MTLS` when the deployment has one. Nothing is kept
//! between requests: every value here is built for one request and dropped with it.

use cyfr_core::app::App;
use cyfr_core::config::{Config, VARIABLES};
use cyfr_core::db::{Db, DbError, Rows, Stmt, Value};
use cyfr_core::hosts::{self, Answer, HostPool, OutboundRequest, SendError, Transport};
use cyfr_core::http::HttpRequest;
use js_sys::{Array, Object, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::types as sys;
use worker::{Fetch, Fetcher, Headers, Method, RequestInit, Socket, Url};

#[worker::event(fetch)]
async fn fetch(
    req: worker::Request,
    env: worker::Env,
    _ctx: worker::Context,
) -> worker::Result<worker::Response> {
    let config = match Config::from_lookup(|name| lookup(&env, name)) {
        Ok(c) => c,
        Err(e) => return text(500, &format!("cyfr worker misconfigured: {e}")),
    };
    let db = match env.d1("DB") {
        Ok(db) => D1(JsValue::from(db).unchecked_into()),
        Err(e) => {
            return text(
                500,
                &format!("cyfr worker misconfigured: no D1 binding DB: {e}"),
            )
        }
    };
    let mtls = match host_mtls(&env) {
        Ok(m) => m,
        Err(e) => return text(500, &format!("cyfr worker misconfigured: {e}")),
    };
    let transport = FetchTransport::new(&config, mtls);
    let dispatch = HostPool::new(&config, transport, WorkerEnv);
    let app = App::new(db, dispatch, WorkerEnv, config);
    let resp = app.handle(to_core(req).await?).await;
    let headers = Headers::new();
    for (k, v) in &resp.headers {
        headers.append(k, v)?;
    }
    Ok(worker::Response::from_bytes(resp.body)?
        .with_status(resp.status)
        .with_headers(headers))
}

/// A variable from `[vars]`, or a secret (`wrangler secret put`, `.dev.vars`); only the
/// names core knows, so no other binding is ever read as configuration.
fn lookup(env: &worker::Env, name: &str) -> Option<String> {
    if !VARIABLES.contains(&name) {
        return None;
    }
    env.var(name)
        .or_else(|_| env.secret(name))
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty())
}

fn text(status: u16, msg: &str) -> worker::Result<worker::Response> {
    Ok(worker::Response::ok(msg)?.with_status(status))
}

async fn to_core(mut req: worker::Request) -> worker::Result<HttpRequest> {
    let method = req.method().to_string();
    // Cloudflare sets CF-Connecting-IP from the TCP peer and overwrites any a client sent.
    let peer = req
        .headers()
        .get("cf-connecting-ip")?
        .and_then(|s| s.parse().ok());
    // The URL as the platform received it, scheme included; clients cannot set it.
    let scheme = req.url().ok().map(|u| u.scheme().to_ascii_lowercase());
    let headers = req
        .headers()
        .entries()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    Ok(HttpRequest {
        method,
        path: req.path(),
        headers,
        body: req.bytes().await?,
        peer,
        scheme,
    })
}

/// D1 behind the core's `Db`, spoken to through its JS API (`prepare`, `bind`, `all`,
/// `batch`) so rows arrive as the objects D1 returns, blobs included.
///
/// A D1 `batch()` is always a transaction. For an atomic core batch that is the promise; for
/// a loose one (`atomic: false`: the first error stops it, what ran before stays) it is
/// stricter, since a failing statement also undoes those before it. Every loose batch in core
/// answers its request with the error, so none depends on the earlier statements staying.
struct D1(sys::D1Database);

impl D1 {
    fn prepare(&self, sql: &str, params: &[Value]) -> Result<sys::D1PreparedStatement, DbError> {
        let params: Array = params.iter().map(to_js).collect();
        self.0
            .prepare(sql)
            .and_then(|s| s.bind(params))
            .map_err(js_error)
    }
}

impl Db for D1 {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let promise = self.prepare(sql, params)?.all().map_err(js_error)?;
        rows(JsFuture::from(promise).await.map_err(js_error)?)
    }

    async fn batch(&self, stmts: &[Stmt], _atomic: bool) -> Result<Vec<Rows>, DbError> {
        if stmts.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = stmts
            .iter()
            .map(|s| self.prepare(&s.sql, &s.params).map(JsValue::from))
            .collect::<Result<Array, _>>()?;
        let promise = self.0.batch(prepared).map_err(js_error)?;
        let results: Array = JsFuture::from(promise)
            .await
            .map_err(js_error)?
            .dyn_into()
            .map_err(js_error)?;
        results.iter().map(rows).collect()
    }
}

/// D1's message (an `Error`'s, with its cause when it has one): never the parameters.
fn js_error(e: JsValue) -> DbError {
    match e.dyn_ref::<js_sys::Error>() {
        Some(err) => {
            let cause = err.cause();
            let mut msg = String::from(err.message());
            if let Some(c) = cause.dyn_ref::<js_sys::Error>() {
                msg = format!("{msg}: {}", String::from(c.message()));
            }
            DbError(msg)
        }
        None => DbError(e.as_string().unwrap_or_else(|| "D1 error".into())),
    }
}

/// A parameter as D1 binds it: integers go as numbers (exact up to 2^53, which covers the
/// core's millisecond times and counters), blobs as bytes.
fn to_js(v: &Value) -> JsValue {
    match v {
        Value::Null => JsValue::NULL,
        Value::Integer(n) => JsValue::from_f64(*n as f64),
        Value::Real(f) => JsValue::from_f64(*f),
        Value::Text(s) => JsValue::from_str(s),
        Value::Blob(b) => Uint8Array::from(b.as_slice()).buffer().into(),
    }
}

/// A D1 result (`{ results: [row objects], ... }`) as core rows, columns in the objects'
/// key order (the statement's).
fn rows(result: JsValue) -> Result<Rows, DbError> {
    let objects = js_sys::Reflect::get(&result, &JsValue::from_str("results")).map_err(js_error)?;
    let mut out = Rows::default();
    let Some(objects) = objects.dyn_ref::<Array>() else {
        return Ok(out);
    };
    for (i, row) in objects.iter().enumerate() {
        let entries = Object::entries(row.unchecked_ref::<Object>());
        let mut values = Vec::with_capacity(entries.length() as usize);
        for entry in entries.iter() {
            let pair: Array = entry.unchecked_into();
            if i == 0 {
                out.columns
                    .push(pair.get(0).as_string().unwrap_or_default());
            }
            values.push(from_js(pair.get(1)));
        }
        out.rows.push(values);
    }
    Ok(out)
}

fn from_js(v: JsValue) -> Value {
    if v.is_null() || v.is_undefined() {
        Value::Null
    } else if let Some(f) = v.as_f64() {
        // SQLite integers come back as whole numbers; a REAL that happens to be whole reads
        // the same through Row's accessors either way.
        if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
            Value::Integer(f as i64)
        } else {
            Value::Real(f)
        }
    } else if let Some(s) = v.as_string() {
        Value::Text(s)
    } else if v.is_instance_of::<js_sys::ArrayBuffer>() || v.is_instance_of::<Uint8Array>() {
        Value::Blob(Uint8Array::new(&v).to_vec())
    } else if let Some(a) = v.dyn_ref::<Array>() {
        // D1 returns BLOB columns as arrays of byte values.
        Value::Blob(a.iter().map(|b| b.as_f64().unwrap_or(0.0) as u8).collect())
    } else {
        Value::Null
    }
}

/// The Workers clock and `crypto.getRandomValues`.
struct WorkerEnv;

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

impl cyfr_core::env::Env for WorkerEnv {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }
    fn fill_random(&self, buf: &mut [u8]) {
        // getRandomValues fills at most 65,536 bytes per call.
        for chunk in buf.chunks_mut(65_536) {
            get_random_values(chunk);
        }
    }
}

/// The binding that presents the router's client certificate to `cyfr host --client-ca`.
const HOST_MTLS: &str = "HOST_MTLS";

/// The `mtls_certificates` binding `HOST_MTLS`, if the deployment declares one; a
/// `HOST_MTLS` that is not such a binding is an error, never a silent fallback to a
/// certificate-less fetch.
fn host_mtls(env: &worker::Env) -> Result<Option<Fetcher>, String> {
    let bound = js_sys::Reflect::get(env, &JsValue::from_str(HOST_MTLS))
        .map_err(|_| format!("cannot read binding {HOST_MTLS}"))?;
    if bound.is_undefined() {
        return Ok(None);
    }
    env.get_binding::<Fetcher>(HOST_MTLS)
        .map(Some)
        .map_err(|e| format!("{HOST_MTLS} is not an mtls_certificates binding: {e}"))
}

/// Outbound `fetch`: the core's [`HostPool`] decides where each request goes, with which
/// token and body; this only sends it and says whether it could have been delivered.
struct FetchTransport {
    /// The origins of the configured hosts: only requests to them go through `mtls` (an
    /// identity provider never sees the router's certificate) and are probed.
    hosts: Vec<String>,
    /// The `HOST_MTLS` binding, when configured.
    mtls: Option<Fetcher>,
    /// Whether a failed connection may send the request to another host (more than one
    /// host): only then is it worth proving that nothing was sent.
    probe: bool,
}

impl FetchTransport {
    fn new(config: &Config, mtls: Option<Fetcher>) -> Self {
        let hosts: Vec<String> = if config.hosts.is_empty() {
            vec![config.host_url.clone()]
        } else {
            config.hosts.iter().map(|h| h.url.clone()).collect()
        };
        let probe = hosts.len() > 1;
        let hosts = hosts.iter().filter_map(|h| origin(h)).collect();
        FetchTransport { hosts, mtls, probe }
    }

    /// Opens and closes a TCP connection to the host of `url`. workerd's fetch() answers a
    /// refused connection and a host that read the whole request then dropped it with the
    /// same error ("Network connection lost.", measured under wrangler dev), so no fetch
    /// error proves that nothing was sent; a failed connect before the fetch does, and it
    /// is the only `SendError::NotSent` of an exchange here.
    async fn reachable(url: &Url) -> Result<(), SendError> {
        let gone = |e: &dyn std::fmt::Display| SendError::NotSent(format!("{url}: {e}"));
        let host = url.host_str().ok_or_else(|| gone(&"no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| gone(&"no port"))?;
        let mut socket = Socket::builder()
            .connect(host, port)
            .map_err(|e| gone(&e))?;
        socket.opened().await.map_err(|e| gone(&e))?;
        // Reachable: whether this socket closes cleanly says nothing about the fetch.
        let _ = socket.close().await;
        Ok(())
    }
}

/// `scheme://host:port` of a URL, the form the hosts are compared in.
fn origin(url: &str) -> Option<String> {
    Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

impl Transport for FetchTransport {
    async fn send(&self, req: OutboundRequest) -> Result<Answer, SendError> {
        let to_host = origin(&req.url).is_some_and(|o| self.hosts.contains(&o));
        if to_host && self.probe {
            let url = Url::parse(&req.url).map_err(|e| SendError::NotSent(e.to_string()))?;
            Self::reachable(&url).await?;
        }
        let headers = Headers::new();
        for (name, value) in &req.headers {
            headers
                .append(name, value)
                .map_err(|e| SendError::NotSent(format!("header {name}: {e}")))?;
        }
        let mut init = RequestInit::new();
        init.with_method(match req.method {
            hosts::Method::Get => Method::Get,
            hosts::Method::Post => Method::Post,
            hosts::Method::Put => Method::Put,
        })
        .with_headers(headers);
        if !req.body.is_empty() {
            init.with_body(Some(Uint8Array::from(req.body.as_slice()).into()));
        }
        let request = worker::Request::new_with_init(&req.url, &init)
            .map_err(|e| SendError::NotSent(format!("{}: {e}", req.url)))?;
        // fetch() does not say how far a failed exchange got, so a failure counts as
        // possibly delivered: never sent again (the safe side of `SendError`).
        let sent = match (&self.mtls, to_host) {
            (Some(mtls), true) => mtls.fetch_request(request).await,
            _ => Fetch::Request(request).send().await,
        };
        let mut resp = sent.map_err(|e| SendError::Failed(e.to_string()))?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?;
        Ok(Answer {
            status: resp.status_code(),
            body,
        })
    }
}
