//! The Spin entry point: a `wasi:http` component that adapts `cyfr-core` to Spin.
//!
//! `Db` is Spin SQLite (`spin:sqlite@3.0.0`, the `default` database), configuration comes
//! from Spin variables, and runs are dispatched to the host over outbound HTTP. Nothing
//! here outlives a request: Spin gives every request a fresh instance.

use cyfr_core::app::App;
use cyfr_core::config::Config;
use cyfr_core::db::{Db, DbError, Rows, Value};
use cyfr_core::dispatch::{Dispatch, DispatchError};
use cyfr_core::env::Env;
use cyfr_core::host_api::{self, LoadRequest, LoadedComponent, RunRequest, RunResponse};
use cyfr_core::http::HttpRequest;
use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::sqlite3::{self, Connection};

/// The variables the router reads (declared in spin.toml).
const VARIABLES: &[&str] = &[
    "host_url",
    "trusted_proxies",
    "allowed_origins",
    "session_ttl_hours",
    "session_encryption",
    "dev_mode",
    "master_keys",
];

#[spin_sdk::http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let config = match Config::from_lookup(|name| VARIABLES.contains(&name).then(|| spin_sdk::variables::get(name).ok()).flatten()) {
        Ok(c) => c,
        Err(e) => return Ok(text(500, &format!("cyfr router misconfigured: {e}"))),
    };
    let db = match Connection::open_default() {
        Ok(c) => SpinDb(c),
        Err(e) => return Ok(text(500, &format!("cyfr router cannot open its database: {e:?}"))),
    };
    let app = App { db, dispatch: HttpDispatch { base: config.host_url.clone() }, env: WasiEnv, config };
    let resp = app.handle(to_core(req)).await;
    let mut b = Response::builder();
    b.status(resp.status);
    for (k, v) in resp.headers {
        b.header(k, v);
    }
    Ok(b.body(resp.body).build())
}

fn text(status: u16, msg: &str) -> Response {
    Response::builder().status(status).header("content-type", "text/plain").body(msg.to_string()).build()
}

fn to_core(req: Request) -> HttpRequest {
    let method = match req.method() {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        _ => "OTHER",
    }
    .to_string();
    // Spin sets spin-client-addr from the TCP peer; a client cannot supply it.
    let peer = req
        .header("spin-client-addr")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<std::net::SocketAddr>().map(|a| a.ip()).ok().or_else(|| s.parse().ok()));
    // Spin records the URL it received, scheme included; clients cannot set it.
    let scheme = req
        .header("spin-full-url")
        .and_then(|v| v.as_str())
        .and_then(|u| u.split_once("://").map(|(s, _)| s.to_ascii_lowercase()));
    let headers = req
        .headers()
        .filter(|(k, _)| !k.starts_with("spin-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_string()))
        .collect();
    HttpRequest { method, path: req.path().to_string(), headers, body: req.into_body(), peer, scheme }
}

/// Spin SQLite behind the core's `Db`.
struct SpinDb(Connection);

impl Db for SpinDb {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let params: Vec<sqlite3::Value> = params
            .iter()
            .map(|p| match p {
                Value::Null => sqlite3::Value::Null,
                Value::Integer(n) => sqlite3::Value::Integer(*n),
                Value::Real(f) => sqlite3::Value::Real(*f),
                Value::Text(s) => sqlite3::Value::Text(s.clone()),
                Value::Blob(b) => sqlite3::Value::Blob(b.clone()),
            })
            .collect();
        let result = self.0.execute(sql, &params).map_err(|e| DbError(format!("{e:?}")))?;
        let rows = result
            .rows
            .into_iter()
            .map(|r| {
                r.values
                    .into_iter()
                    .map(|v| match v {
                        sqlite3::Value::Null => Value::Null,
                        sqlite3::Value::Integer(n) => Value::Integer(n),
                        sqlite3::Value::Real(f) => Value::Real(f),
                        sqlite3::Value::Text(s) => Value::Text(s),
                        sqlite3::Value::Blob(b) => Value::Blob(b),
                    })
                    .collect()
            })
            .collect();
        Ok(Rows { columns: result.columns, rows })
    }
}

/// WASI clocks and randomness.
struct WasiEnv;

impl Env for WasiEnv {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("WASI random is always available");
    }
}

/// Runs go to the host's HTTP API.
struct HttpDispatch {
    base: String,
}

impl HttpDispatch {
    async fn call(&self, method: Method, path: &str, body: Vec<u8>, content_type: &str) -> Result<(u16, Vec<u8>), DispatchError> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("content-type", content_type)
            .body(body)
            .build();
        let resp: Response = spin_sdk::http::send(req).await.map_err(|e| DispatchError::Unreachable(e.to_string()))?;
        Ok((*resp.status(), resp.into_body()))
    }
}

fn host_error(status: u16, body: &[u8]) -> DispatchError {
    match serde_json::from_slice::<host_api::HostError>(body) {
        Ok(e) if e.code == "artifact_missing" => DispatchError::ArtifactMissing,
        Ok(e) => DispatchError::Refused { code: e.code, message: e.message },
        Err(_) => DispatchError::Unreachable(format!("host answered HTTP {status}")),
    }
}

impl Dispatch for HttpDispatch {
    async fn run(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        let body = serde_json::to_vec(req).map_err(|e| DispatchError::Unreachable(e.to_string()))?;
        let (status, body) = self.call(Method::Post, host_api::RUN_PATH, body, "application/json").await?;
        if status != 200 {
            return Err(host_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| DispatchError::Unreachable(format!("bad run response from host: {e}")))
    }

    async fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), DispatchError> {
        let path = format!("{}{}", host_api::ARTIFACT_PATH, digest);
        let (status, body) = self.call(Method::Put, &path, bytes.to_vec(), "application/wasm").await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(host_error(status, &body))
        }
    }

    async fn load_directory(&self, directory: &str) -> Result<LoadedComponent, DispatchError> {
        let body = serde_json::to_vec(&LoadRequest { directory: directory.to_string() }).map_err(|e| DispatchError::Unreachable(e.to_string()))?;
        let (status, body) = self.call(Method::Post, host_api::LOAD_PATH, body, "application/json").await?;
        if status != 200 {
            return Err(host_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| DispatchError::Unreachable(format!("bad load response from host: {e}")))
    }
}

