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
use cyfr_core::host_api::{
    self, HostClaims, HostTarget, LoadRequest, LoadedComponent, RunRequest, RunResponse,
};
use cyfr_core::http::HttpRequest;
use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::sqlite3::{self, Connection};
use std::cell::Cell;

/// The variables the router reads (declared in spin.toml).
const VARIABLES: &[&str] = &[
    "host_url",
    "trusted_proxies",
    "allowed_origins",
    "session_ttl_hours",
    "session_encryption",
    "dev_mode",
    "master_keys",
    "hosts",
    "host_token_key",
    "router_url",
    "execution_retention_days",
];

#[spin_sdk::http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let config = match Config::from_lookup(|name| {
        VARIABLES
            .contains(&name)
            .then(|| spin_sdk::variables::get(name).ok())
            .flatten()
    }) {
        Ok(c) => c,
        Err(e) => return Ok(text(500, &format!("cyfr router misconfigured: {e}"))),
    };
    let db = match Connection::open_default() {
        Ok(c) => SpinDb(c),
        Err(e) => {
            return Ok(text(
                500,
                &format!("cyfr router cannot open its database: {e:?}"),
            ))
        }
    };
    let dispatch = HttpDispatch::new(&config);
    let app = App {
        db,
        dispatch,
        env: WasiEnv,
        config,
    };
    let resp = app.handle(to_core(req)).await;
    let mut b = Response::builder();
    b.status(resp.status);
    for (k, v) in resp.headers {
        b.header(k, v);
    }
    Ok(b.body(resp.body).build())
}

fn text(status: u16, msg: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(msg.to_string())
        .build()
}

/// The method as the wire spells it.
fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        _ => "OTHER",
    }
}

fn to_core(req: Request) -> HttpRequest {
    let method = method_name(req.method()).to_string();
    // Spin sets spin-client-addr from the TCP peer; a client cannot supply it.
    let peer = req
        .header("spin-client-addr")
        .and_then(|v| v.as_str())
        .and_then(|s| {
            s.parse::<std::net::SocketAddr>()
                .map(|a| a.ip())
                .ok()
                .or_else(|| s.parse().ok())
        });
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
    HttpRequest {
        method,
        path: req.path().to_string(),
        headers,
        body: req.into_body(),
        peer,
        scheme,
    }
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
        let result = self
            .0
            .execute(sql, &params)
            .map_err(|e| DbError(format!("{e:?}")))?;
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
        Ok(Rows {
            columns: result.columns,
            rows,
        })
    }
}

/// WASI clocks and randomness.
struct WasiEnv;

impl Env for WasiEnv {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("WASI random is always available");
    }
}

/// A host runs can go to.
struct Target {
    url: String,
    /// Remote hosts get sealed secrets and a signed token; the in-process host neither.
    remote: Option<HostTarget>,
}

/// Runs go to the hosts' HTTP API: spread over the configured hosts, with another host
/// tried when one cannot be reached. A run that reached a host is never sent again.
struct HttpDispatch {
    targets: Vec<Target>,
    token_key: Option<String>,
    /// The host the current run went to, so its artifact upload goes there too.
    last: Cell<usize>,
}

impl HttpDispatch {
    fn new(config: &Config) -> HttpDispatch {
        let targets = if config.hosts.is_empty() {
            vec![Target {
                url: config.host_url.clone(),
                remote: None,
            }]
        } else {
            config
                .hosts
                .iter()
                .map(|h| Target {
                    url: h.url.clone(),
                    remote: Some(h.clone()),
                })
                .collect()
        };
        let mut start = [0u8; 1];
        let _ = getrandom::fill(&mut start);
        HttpDispatch {
            last: Cell::new(start[0] as usize % targets.len()),
            targets,
            token_key: config.host_token_key.clone(),
        }
    }

    fn token(
        &self,
        target: &Target,
        jti: &str,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Result<Option<String>, DispatchError> {
        let (Some(host), Some(key)) = (&target.remote, &self.token_key) else {
            return Ok(None);
        };
        let now = WasiEnv.now_ms() / 1000;
        let req = HostClaims::binding(method_name(method), path, body);
        let claims = HostClaims {
            aud: host.audience(),
            exp: now + 30,
            iat: now,
            jti: jti.to_string(),
            req,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .map(Some)
        .map_err(|e| DispatchError::Unreachable(format!("cannot sign the host token: {e}")))
    }

    /// Sends to one host. `Err(None)` means it could not be reached (safe to try another).
    async fn send(
        &self,
        idx: usize,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        jti: &str,
    ) -> Result<(u16, Vec<u8>), Option<DispatchError>> {
        let target = &self.targets[idx];
        let token = self
            .token(target, jti, &method, path, &body)
            .map_err(Some)?;
        let mut b = Request::builder();
        b.method(method)
            .uri(format!("{}{}", target.url, path))
            .header("content-type", content_type);
        if let Some(t) = token {
            b.header("authorization", format!("Bearer {t}"));
        }
        match spin_sdk::http::send::<_, Response>(b.body(body).build()).await {
            Ok(resp) => Ok((*resp.status(), resp.into_body())),
            Err(e) => {
                let text = e.to_string();
                // Refused or unresolvable before anything was sent: another host may take it.
                let unreachable = [
                    "connection refused",
                    "ConnectionRefused",
                    "DNS",
                    "Dns",
                    "connection-refused",
                    "destination-not-found",
                    "destination-unavailable",
                    "ConnectionTimeout",
                    "connection-timeout",
                    "HttpRequestDenied",
                ]
                .iter()
                .any(|m| text.contains(m));
                if unreachable {
                    Err(None)
                } else {
                    Err(Some(DispatchError::Unreachable(text)))
                }
            }
        }
    }

    /// Tries the hosts in turn from the next one, until one answers.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: impl Fn(usize) -> Result<Vec<u8>, DispatchError>,
        content_type: &str,
        jti: &str,
    ) -> Result<(u16, Vec<u8>), DispatchError> {
        let n = self.targets.len();
        let first = (self.last.get() + 1) % n;
        for i in 0..n {
            let idx = (first + i) % n;
            match self
                .send(idx, method.clone(), path, body(idx)?, content_type, jti)
                .await
            {
                Ok(r) => {
                    self.last.set(idx);
                    return Ok(r);
                }
                Err(Some(e)) => return Err(e),
                Err(None) => continue,
            }
        }
        Err(DispatchError::Unreachable(format!(
            "none of the {n} host(s) could be reached"
        )))
    }

    /// The body of a run for host `idx`: secrets, the formula callback and an input holding
    /// opened secrets sealed to that host's key when it is remote.
    fn run_body(&self, idx: usize, req: &RunRequest) -> Result<Vec<u8>, DispatchError> {
        let json = |v: &RunRequest| {
            serde_json::to_vec(v).map_err(|e| DispatchError::Unreachable(e.to_string()))
        };
        let Some(host) = &self.targets[idx].remote else {
            return json(req);
        };
        let mut req = req.clone();
        if !req.secrets.is_empty() {
            let plain = zeroize::Zeroizing::new(
                serde_json::to_vec(&req.secrets)
                    .map_err(|e| DispatchError::Unreachable(e.to_string()))?,
            );
            req.sealed_secrets = Some(seal(host, &plain)?);
        }
        req.secrets.clear();
        if req.input_holds_secrets {
            let plain = zeroize::Zeroizing::new(
                serde_json::to_vec(&req.input)
                    .map_err(|e| DispatchError::Unreachable(e.to_string()))?,
            );
            req.sealed_input = Some(seal(host, &plain)?);
            req.input.clear();
        }
        if !req.redact.is_empty() {
            let plain = zeroize::Zeroizing::new(
                serde_json::to_vec(&req.redact)
                    .map_err(|e| DispatchError::Unreachable(e.to_string()))?,
            );
            req.sealed_redact = Some(seal(host, &plain)?);
            req.redact.clear();
        }
        if let Some(callback) = req.callback.take() {
            let plain = zeroize::Zeroizing::new(
                serde_json::to_vec(&callback)
                    .map_err(|e| DispatchError::Unreachable(e.to_string()))?,
            );
            req.sealed_callback = Some(seal(host, &plain)?);
        }
        json(&req)
    }
}

/// `plain` sealed to a host's X25519 key (libsodium sealed box), base64.
fn seal(host: &HostTarget, plain: &[u8]) -> Result<String, DispatchError> {
    let sealed = crypto_box::PublicKey::from(host.public_key)
        .seal(&mut WasiRng, plain)
        .map_err(|_| DispatchError::Unreachable("sealing for the host failed".into()))?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        sealed,
    ))
}

/// WASI randomness for sealing.
struct WasiRng;

impl rand_core::RngCore for WasiRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("WASI random is always available");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for WasiRng {}

fn nonce() -> String {
    cyfr_core::env::random_token(&WasiEnv, 16)
}

fn host_error(status: u16, body: &[u8]) -> DispatchError {
    match serde_json::from_slice::<host_api::HostError>(body) {
        Ok(e) if e.code == "artifact_missing" => DispatchError::ArtifactMissing,
        Ok(e) => DispatchError::Refused {
            code: e.code,
            message: e.message,
        },
        Err(_) => DispatchError::Unreachable(format!("host answered HTTP {status}")),
    }
}

impl Dispatch for HttpDispatch {
    async fn run(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        let (status, body) = self
            .call(
                Method::Post,
                host_api::RUN_PATH,
                |idx| self.run_body(idx, req),
                "application/json",
                &req.execution_id,
            )
            .await?;
        if status != 200 {
            return Err(host_error(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| DispatchError::Unreachable(format!("bad run response from host: {e}")))
    }

    async fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), DispatchError> {
        // To the host that just said it lacks the artifact.
        let idx = self.last.get();
        let path = format!("{}{}", host_api::ARTIFACT_PATH, digest);
        let (status, body) = self
            .send(
                idx,
                Method::Put,
                &path,
                bytes.to_vec(),
                "application/wasm",
                &nonce(),
            )
            .await
            .map_err(|e| {
                e.unwrap_or_else(|| {
                    DispatchError::Unreachable("the host went away during the upload".into())
                })
            })?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(host_error(status, &body))
        }
    }

    async fn run_again(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        let idx = self.last.get();
        let body = self.run_body(idx, req)?;
        // A fresh token id: the first attempt's was used, and this run never started.
        let (status, body) = self
            .send(
                idx,
                Method::Post,
                host_api::RUN_PATH,
                body,
                "application/json",
                &format!("{}-retry", req.execution_id),
            )
            .await
            .map_err(|e| {
                e.unwrap_or_else(|| DispatchError::Unreachable("the host went away".into()))
            })?;
        if status != 200 {
            return Err(host_error(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| DispatchError::Unreachable(format!("bad run response from host: {e}")))
    }

    async fn cancel(&self, execution_id: &str) -> Result<bool, DispatchError> {
        // The router does not note which host took a run: ask each (there are few).
        let path = format!("{}/{}/cancel", host_api::RUN_PATH, execution_id);
        let mut found = false;
        for idx in 0..self.targets.len() {
            if let Ok((200, body)) = self
                .send(
                    idx,
                    Method::Post,
                    &path,
                    Vec::new(),
                    "application/json",
                    &nonce(),
                )
                .await
            {
                found |= serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["cancelled"].as_bool())
                    .unwrap_or(false);
            }
        }
        Ok(found)
    }

    async fn load_directory(&self, directory: &str) -> Result<LoadedComponent, DispatchError> {
        let body = serde_json::to_vec(&LoadRequest {
            directory: directory.to_string(),
        })
        .map_err(|e| DispatchError::Unreachable(e.to_string()))?;
        let (status, body) = self
            .call(
                Method::Post,
                host_api::LOAD_PATH,
                |_| Ok(body.clone()),
                "application/json",
                &nonce(),
            )
            .await?;
        if status != 200 {
            return Err(host_error(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| DispatchError::Unreachable(format!("bad load response from host: {e}")))
    }
}
