//! `cyfr host`: the host API served alone over HTTP, for routers elsewhere. Every request
//! carries a short-lived HS256 token for this host (audience = the id of its public key,
//! expiry in seconds, unique `jti`, replays refused, signed for that request's method, path and
//! body); secrets arrive sealed to its key.

// The refusals here are the HTTP answer itself, made once per refused request: boxing it
// would buy nothing.
#![allow(clippy::result_large_err)]

use crate::service::HostApi;
use crate::spin_runner::limits::{request_id, ConnGate, ServeLimits};
use crate::spin_runner::StreamedBody;
use anyhow::{Context, Result};
use base64::Engine;
use bytes::Bytes;
use cyfr_core::host_api::{HostClaims, HostError, HostErrorKind, RunRequest};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::Instrument as _;
use zeroize::Zeroizing;

/// Largest request body (artifacts are the big ones).
const MAX_BODY: usize = 40 << 20;
/// Token lifetimes longer than this are refused, whatever `exp` says.
const MAX_TOKEN_LIFETIME_SECS: u64 = 300;

/// The host's X25519 key pair, kept in `DATA_DIR/host.key` (mode 0600).
pub struct HostKey {
    secret: crypto_box::SecretKey,
}

impl HostKey {
    /// Loads the key, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<HostKey> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("host.key");
        let bytes: Zeroizing<Vec<u8>> = match std::fs::read(&path) {
            Ok(b) => Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim_ascii())
                    .context("host.key is not base64")?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = Zeroizing::new(vec![0u8; 32]);
                getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*k));
                std::io::Write::write_all(&mut opts.open(&path)?, text.as_bytes())?;
                k
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("host.key must hold 32 bytes"))?;
        Ok(HostKey {
            secret: crypto_box::SecretKey::from(arr),
        })
    }

    /// The public key, base64: what routers are configured with (`URL#KEY`).
    pub fn public_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.secret.public_key().as_bytes())
    }

    /// The audience tokens for this host carry.
    pub fn audience(&self) -> String {
        cyfr_core::secrets::sealed::kid_of(self.secret.public_key().as_bytes())
    }
}

/// The host API behind token checks.
pub struct HostServer {
    api: HostApi,
    key: HostKey,
    /// The shared HS256 key, and the checks every token must pass (audience = this host's key id).
    decoding_key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    /// Token ids seen, with their expiry: a token works once.
    seen: Mutex<HashMap<String, u64>>,
    /// TLS (and mutual TLS) on the listener; `None`: plain HTTP.
    tls: Option<crate::tls::ServerTls>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A refusal of the host server; its kind decides the status.
fn error(kind: HostErrorKind, message: impl Into<String>) -> http::Response<Bytes> {
    let status = kind.http_status();
    let body = serde_json::to_vec(&HostError {
        code: kind,
        message: message.into(),
    })
    .unwrap_or_default();
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .unwrap()
}

impl HostServer {
    /// A host server; `token_key` is the HS256 key shared with the routers (≥ 32 bytes).
    pub fn new(api: HostApi, key: HostKey, token_key: String) -> Result<HostServer> {
        if token_key.len() < 32 {
            anyhow::bail!("the host token key must be at least 32 characters");
        }
        let decoding_key =
            jsonwebtoken::DecodingKey::from_secret(Zeroizing::new(token_key).as_bytes());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&[key.audience()]);
        validation.set_required_spec_claims(&["exp", "aud", "iat", "jti"]);
        validation.leeway = 5;
        Ok(HostServer {
            api,
            key,
            decoding_key,
            validation,
            seen: Mutex::new(HashMap::new()),
            tls: None,
        })
    }

    /// Serves over TLS: with a client CA, a connection without a certificate it signed (or,
    /// with allowed router names, without one of them) is closed before any request is read.
    pub fn with_tls(mut self, tls: crate::tls::ServerTls) -> HostServer {
        self.tls = Some(tls);
        self
    }

    /// Checks the token from the headers alone (signature, audience, expiry, lifetime, `jti`
    /// once), before any body is read; returns the `req` binding to check against the body.
    fn check_token(
        &self,
        req: &http::request::Parts,
    ) -> std::result::Result<String, http::Response<Bytes>> {
        let token = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| error(HostErrorKind::Unauthorized, "a host token is required"))?;
        let data = jsonwebtoken::decode::<HostClaims>(token, &self.decoding_key, &self.validation)
            .map_err(|e| {
                error(
                    HostErrorKind::Unauthorized,
                    format!("host token refused: {e}"),
                )
            })?;
        let c = data.claims;
        if c.exp.saturating_sub(c.iat) > MAX_TOKEN_LIFETIME_SECS {
            return Err(error(
                HostErrorKind::Unauthorized,
                "host token lives too long",
            ));
        }
        let now = now_secs();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, exp| *exp + 10 >= now);
        if seen.insert(c.jti.clone(), c.exp).is_some() {
            return Err(error(HostErrorKind::Unauthorized, "host token replayed"));
        }
        Ok(c.req)
    }

    /// The token's `req` claim must be this very request: method, path and body hash.
    fn check_binding(
        claimed: &str,
        req: &http::Request<Bytes>,
    ) -> std::result::Result<(), http::Response<Bytes>> {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let binding = HostClaims::binding(req.method().as_str(), path, req.body());
        if !cyfr_core::crypto::ct_eq(claimed.as_bytes(), binding.as_bytes()) {
            return Err(error(
                HostErrorKind::Unauthorized,
                "host token was signed for another request",
            ));
        }
        Ok(())
    }

    /// Parses a run request and opens its sealed secrets and sealed formula callback.
    fn unseal(&self, body: &Bytes) -> std::result::Result<RunRequest, http::Response<Bytes>> {
        let mut run: RunRequest = serde_json::from_slice(body).map_err(|e| {
            error(
                HostErrorKind::InvalidRequest,
                format!("bad run request: {e}"),
            )
        })?;
        if let Some(sealed) = run.sealed_secrets.take() {
            run.secrets = self.open(&sealed, "sealed_secrets")?;
        }
        if let Some(sealed) = run.sealed_callback.take() {
            run.callback = Some(self.open(&sealed, "sealed_callback")?);
        }
        if let Some(sealed) = run.sealed_redact.take() {
            run.redact = self.open(&sealed, "sealed_redact")?;
        }
        if let Some(sealed) = run.sealed_input.take() {
            run.input = self.open(&sealed, "sealed_input")?;
        }
        Ok(run)
    }

    /// Opens a base64 sealed box addressed to this host and parses the JSON inside.
    fn open<T: serde::de::DeserializeOwned>(
        &self,
        sealed: &str,
        field: &str,
    ) -> std::result::Result<T, http::Response<Bytes>> {
        let ct = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| {
                error(
                    HostErrorKind::InvalidRequest,
                    format!("{field} is not base64"),
                )
            })?;
        let plain = Zeroizing::new(self.key.secret.unseal(&ct).map_err(|_| {
            error(
                HostErrorKind::InvalidRequest,
                format!("{field} is not sealed to this host"),
            )
        })?);
        serde_json::from_slice(&plain).map_err(|_| {
            error(
                HostErrorKind::InvalidRequest,
                format!("{field} does not hold what a run request needs there"),
            )
        })
    }

    /// Token first (headers only), then the body under a size cap and a deadline, then the
    /// token's binding to that body: a request without a valid token costs no body read.
    async fn serve_request(
        &self,
        req: http::Request<hyper::body::Incoming>,
        body_timeout: Duration,
    ) -> http::Response<StreamedBody> {
        let (parts, body) = req.into_parts();
        let claimed = match self.check_token(&parts) {
            Ok(c) => c,
            Err(r) => return whole(close(r)),
        };
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return whole(close(error(
                HostErrorKind::TooLarge,
                format!("request body over {MAX_BODY} bytes"),
            )));
        }
        let body = match tokio::time::timeout(body_timeout, Limited::new(body, MAX_BODY).collect())
            .await
        {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return whole(close(error(
                    HostErrorKind::TooLarge,
                    format!("request body over {MAX_BODY} bytes"),
                )));
            }
            Ok(Err(e)) => {
                tracing::debug!("reading request body: {e}");
                return whole(close(error(
                    HostErrorKind::BadRequest,
                    "the request body could not be read",
                )));
            }
            Err(_) => {
                tracing::warn!("refused 408: request body not received in time");
                return whole(close(error(
                    HostErrorKind::Timeout,
                    "the request body was not received in time",
                )));
            }
        };
        let req = http::Request::from_parts(parts, body);
        if let Err(r) = Self::check_binding(&claimed, &req) {
            return whole(r);
        }
        self.respond(req).await
    }

    async fn respond(&self, req: http::Request<Bytes>) -> http::Response<StreamedBody> {
        // A run is handed over opened, not written back to JSON with its secrets in clear;
        // streamed (its stderr lines as they come, then its answer) when the router asks.
        if req.method() == http::Method::POST && req.uri().path() == cyfr_core::host_api::RUN_PATH {
            let streamed = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(cyfr_core::host_api::RUN_STREAM));
            return match self.unseal(req.body()) {
                Ok(run) if streamed => self.api.run_streamed(run).await,
                Ok(run) => whole(self.api.run(run).await),
                Err(r) => whole(r),
            };
        }
        whole(self.api.respond(req).await)
    }

    /// Serves until `shutdown` resolves, under the connection caps and read deadlines of
    /// [`ServeLimits::from_env`].
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let limits = ServeLimits::from_env();
        let gate = ConnGate::new(&limits);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                a = listener.accept() => match a {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Over a cap the connection is closed unread.
            let permit = match gate.admit(peer.ip()) {
                Ok(p) => p,
                Err(why) => {
                    tracing::warn!(peer = %peer.ip(), "connection refused: {why:?} connection cap reached");
                    drop(stream);
                    continue;
                }
            };
            let this = self.clone();
            let limits = limits.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let Some(tls) = &this.tls else {
                    return this.serve_connection(stream, peer, &limits).await;
                };
                // The handshake is bounded like a request head: a client that stalls in it
                // holds its connection slot no longer.
                let stream =
                    match tokio::time::timeout(limits.header_timeout, tls.acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::warn!(peer = %peer.ip(), "TLS handshake refused: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(peer = %peer.ip(), "TLS handshake timed out");
                            return;
                        }
                    };
                match tls.router_of(stream.get_ref().1) {
                    Some(router) => {
                        let span = tracing::info_span!("router", name = %router);
                        this.serve_connection(stream, peer, &limits)
                            .instrument(span)
                            .await
                    }
                    None => tracing::warn!(
                        peer = %peer.ip(),
                        "connection refused: the client certificate names no allowed router"
                    ),
                }
            });
        }
    }

    /// Serves one connection's requests (HTTP/1.1).
    async fn serve_connection<I>(
        self: Arc<Self>,
        io: I,
        peer: std::net::SocketAddr,
        limits: &ServeLimits,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let body_timeout = limits.body_timeout;
        let this = self;
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let this = this.clone();
                async move {
                    let rid = request_id(req.headers().get("x-request-id"));
                    let span = tracing::info_span!("request", request_id = %rid, peer = %peer.ip());
                    let mut resp = this.serve_request(req, body_timeout).instrument(span).await;
                    if let Ok(v) = http::HeaderValue::from_str(&rid) {
                        resp.headers_mut().insert("x-request-id", v);
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(io), service)
            .await;
    }
}

/// A whole answer as the (possibly streamed) body type every answer here has.
fn whole(resp: http::Response<Bytes>) -> http::Response<StreamedBody> {
    resp.map(|b| Full::new(b).map_err(|never| match never {}).boxed_unsync())
}

/// Marks a response as the connection's last: its request body was not (fully) read.
fn close(mut resp: http::Response<Bytes>) -> http::Response<Bytes> {
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}
