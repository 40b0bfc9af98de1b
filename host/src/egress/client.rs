//! The host's one outbound HTTP client: catalysts' egress and formulas' callbacks to a remote
//! router both send through [`send`]. HTTP/1.1 is hyper's, TLS is rustls (webpki roots, SNI =
//! the host name, ALPN `http/1.1`).
//!
//! Why hyper's connection layer (`hyper::client::conn::http1`) and not hyper-util's pooled
//! `Client`: egress must connect to exactly the address [`super::decide`] checked for this hop
//! and this execution's policy. A pool keys connections by scheme and authority, so it would
//! resolve names itself (a second lookup: DNS rebinding) and hand one execution a connection
//! opened — and checked — under another execution's `allowed_private_ips`. One connection per
//! exchange, owned by it and closed when it is dropped, also lets a run that times out or is
//! cancelled cut its connection at once. Formula callbacks are few and long (each waits for a
//! child run), so they gain nothing from a pool either.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio_rustls::rustls;

/// Where to connect.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dial<'a> {
    /// Exactly this address (egress: the one the policy checked).
    Pinned(SocketAddr),
    /// The addresses of a name, tried in order (a router's URL, which no policy restricts).
    Lookup(&'a str, u16),
}

/// What failed, at which step; each caller words its own message.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// The TCP connection.
    Connect(std::io::Error),
    /// The host is not a TLS server name.
    ServerName(rustls::pki_types::InvalidDnsNameError),
    /// The TLS handshake.
    Tls(std::io::Error),
    /// The HTTP/1.1 handshake.
    Handshake(hyper::Error),
    /// Sending the request or reading the response head.
    Send(hyper::Error),
}

/// A response whose head has arrived; the body is read from `response`. Dropping it closes
/// the connection.
pub(crate) struct Exchange {
    /// The response; its body streams from the connection.
    pub(crate) response: http::Response<Incoming>,
    _sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    _conn: AbortOnDrop,
}

impl Exchange {
    /// The whole response, its body read up to `limit` bytes (an error past it).
    pub(crate) async fn collect(
        self,
        limit: usize,
    ) -> Result<http::Response<Bytes>, Box<dyn std::error::Error + Send + Sync>> {
        let (parts, body) = self.response.into_parts();
        let body = http_body_util::Limited::new(body, limit)
            .collect()
            .await?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }
}

/// Aborts the connection task when the exchange (or a stream) is dropped, e.g. when the
/// execution times out in the middle of a request.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// Connects (TLS when `tls`, with `host` as the server name), sends `request` — whose URI is
/// in origin form and whose `Host` the caller set — and waits for the response head. No time
/// limit of its own: callers bound it.
pub(crate) async fn send(
    dial: Dial<'_>,
    host: &str,
    tls: bool,
    request: http::Request<Full<Bytes>>,
) -> Result<Exchange, ClientError> {
    send_with(dial, host, tls.then(tls_config), request).await
}

/// [`send`] with a TLS configuration of the caller's (a router's client certificate and
/// the CA of its hosts); `None`: plain TCP.
pub(crate) async fn send_with(
    dial: Dial<'_>,
    host: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    request: http::Request<Full<Bytes>>,
) -> Result<Exchange, ClientError> {
    let tcp = match dial {
        Dial::Pinned(addr) => tokio::net::TcpStream::connect(addr).await,
        Dial::Lookup(name, port) => tokio::net::TcpStream::connect((name, port)).await,
    }
    .map_err(ClientError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if let Some(config) = tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(ClientError::ServerName)?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(ClientError::Tls)?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(ClientError::Handshake)?;
    let conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(ClientError::Send)?;
    Ok(Exchange {
        response,
        _sender: sender,
        _conn: conn,
    })
}

/// The TLS client configuration: ring, the default protocol versions, webpki roots, ALPN
/// `http/1.1` only (the connection speaks nothing else).
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}
