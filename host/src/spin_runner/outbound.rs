//! Outbound wasi:http for the router: deny by default; the internal authority is answered
//! in-process by an [`InternalService`].

use std::future::Future;
use std::sync::Arc;

use http_body_util::BodyExt;
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
