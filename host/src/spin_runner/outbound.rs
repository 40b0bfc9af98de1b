//! Outbound wasi:http for the router: deny by default; the internal authority is answered
//! in-process by an [`InternalService`].

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::InternalService;

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The router's outbound HTTP policy (one per store).
pub(crate) struct OutboundHooks {
    /// Requests whose URI authority equals this (ASCII case-insensitively) go to `internal`.
    pub internal_authority: Arc<str>,
    /// Answers requests to `internal_authority`.
    pub internal: Arc<dyn InternalService>,
    /// Authorities (`host:port`) the router may reach over the network: its remote hosts.
    pub allowed: Arc<[String]>,
    /// The TLS client for those hosts (a client certificate, their CA), when configured;
    /// `None`: wasi-http's default client.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl OutboundHooks {
    fn is_internal(&self, uri: &http::Uri) -> bool {
        uri.authority()
            .is_some_and(|a| a.as_str().eq_ignore_ascii_case(&self.internal_authority))
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let allowed = request.uri().authority().is_some_and(|a| {
            self.allowed
                .iter()
                .any(|x| x.eq_ignore_ascii_case(a.as_str()))
        });
        if let (true, Some(tls)) = (allowed, &self.tls) {
            return Box::new(send_mtls(request, tls.clone()));
        }
        if allowed {
            return Box::new(async move {
                let (resp, io) =
                    wasmtime_wasi_http::default_send_request(request, _options).await?;
                let resp = resp.map(|b| b.boxed_unsync());
                Ok((resp, Box::new(io) as IoFuture))
            });
        }
        if !self.is_internal(request.uri()) {
            tracing::warn!(
                method = %request.method(),
                uri = %request.uri(),
                "router outbound HTTP request denied (only the internal authority and the configured hosts are allowed)"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let internal = self.internal.clone();
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            // Streamed as the service answers it (a run's events as they happen).
            let response = internal
                .handle_streaming(http::Request::from_parts(parts, body))
                .await;
            let response = response.map(|b| b.map_err(|never| match never {}).boxed_unsync());
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

/// The most a host's answer may hold (a run's output is capped far below this).
const MAX_HOST_ANSWER: usize = 64 << 20;

/// One request to a remote host through the host's own client, presenting the router's
/// client certificate: what Spin does with a runtime config's client TLS.
async fn send_mtls(
    request: http::Request<WasiBody>,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    use crate::egress::client::{self, ClientError, Dial};
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let uri = parts.uri.clone();
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?.clone();
    let https = uri.scheme_str() == Some("https");
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    parts.uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    if let Ok(v) = http::HeaderValue::from_str(authority.as_str()) {
        parts.headers.insert(http::header::HOST, v);
    }
    let exchange = client::send_with(
        Dial::Lookup(&host, port),
        &host,
        https.then_some(tls),
        http::Request::from_parts(parts, Full::new(body)),
    )
    .await
    .map_err(|e| match e {
        ClientError::Connect(_) => Error::ConnectionRefused,
        ClientError::ServerName(_) => Error::HttpRequestUriInvalid,
        ClientError::Tls(e) => {
            tracing::warn!("TLS to host {host}:{port} failed: {e}");
            Error::TlsProtocolError
        }
        ClientError::Handshake(_) | ClientError::Send(_) => Error::HttpProtocolError,
    })?;
    let response = exchange
        .collect(MAX_HOST_ANSWER)
        .await
        .map_err(|_| Error::HttpResponseIncomplete)?;
    let response =
        response.map(|b: Bytes| Full::new(b).map_err(|never| match never {}).boxed_unsync());
    Ok((response, Box::new(async { Ok(()) }) as IoFuture))
}
