//! One outbound request, hop by hop: [`Gate::decide`](super::decide::Gate::decide), then the
//! request built with its secrets ([`super::outgoing`]), sent by [`super::client`] to the
//! pinned address before the deadline, and redirects followed (each a new hop, decided
//! again). And the rules every upstream answer is held to: compressed bodies refused, bodies
//! capped at `max_response_size`.

use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use url::Url;

use super::abi::{Body, Request};
use super::client::{self, ClientError, Dial, Exchange};
use super::decide::{Decision, Hop, Origin, Pinned};
use super::outgoing::Builder;
use super::{inject, loggable_url, Denied, ErrorKind, Session, Target, MAX_REDIRECTS};

/// Method and URL of the request a response answers (for the record of a failed stream).
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestLine {
    pub(crate) method: String,
    pub(crate) url: String,
}

impl Session {
    /// Decides, sends and follows redirects; returns the final response head.
    pub(super) async fn perform(
        &mut self,
        req: &Request,
        deadline: Instant,
    ) -> Result<Exchange, Denied> {
        let mut url = Url::parse(&req.url).map_err(|e| {
            Denied::new(
                ErrorKind::HttpError,
                format!("`{}` is not a valid URL: {e}", req.url),
            )
        })?;
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let mut first_origin: Option<Origin> = None;
        let mut crossed = false;
        let mut hops = 0usize;
        loop {
            let hop = Hop {
                method: &method,
                url: &url,
                first_origin: first_origin.as_ref(),
                crossed,
                // Only a redirect can leave the first origin.
                body_carries_secret: hops > 0 && inject::carries_secret(&body, &self.redactor),
                deadline,
            };
            let pinned = match self.gate.decide(&hop).await {
                Decision::Allow(pinned) => pinned,
                Decision::Refuse(d) => return Err(hop_note(hops, &url, d)),
            };
            first_origin.get_or_insert_with(|| pinned.target.origin());
            crossed = pinned.cross_origin;
            let ex = self
                .send_hop(req, &pinned, &method, &url, &body, deadline)
                .await
                .map_err(|d| hop_note(hops, &url, d))?;
            let status = ex.response.status().as_u16();
            let location = ex
                .response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(String::from);
            match (status, location) {
                (301 | 302 | 303 | 307 | 308, Some(location)) => {
                    if hops == MAX_REDIRECTS {
                        return Err(Denied::new(
                            ErrorKind::HttpError,
                            format!("more than {MAX_REDIRECTS} redirects"),
                        ));
                    }
                    hops += 1;
                    url = url.join(&location).map_err(|e| {
                        Denied::new(
                            ErrorKind::HttpError,
                            format!("redirect {hops} has an invalid Location: {e}"),
                        )
                    })?;
                    let to_get = status == 303 || (matches!(status, 301 | 302) && method == "POST");
                    if to_get && method != "HEAD" {
                        method = "GET".into();
                        body = Body::Empty;
                    }
                }
                _ => {
                    refuse_compressed(&ex).map_err(|d| hop_note(hops, &url, d))?;
                    return Ok(ex);
                }
            }
        }
    }

    /// Builds the allowed hop's request (secrets substituted only now) and sends it.
    async fn send_hop(
        &self,
        req: &Request,
        pinned: &Pinned,
        method: &str,
        url: &Url,
        body: &Body,
        deadline: Instant,
    ) -> Result<Exchange, Denied> {
        let builder = Builder {
            secrets: &self.secrets,
            redactor: &self.redactor,
            max_request_bytes: self.gate.policy.max_request_bytes,
        };
        let request = builder.build(&pinned.target, &req.headers, body, pinned.cross_origin)?;
        tracing::debug!(reference = %self.secrets.reference(), method = %method, url = %self.redactor.text(&loggable_url(url.as_str())), addr = %pinned.addr, "catalyst egress");
        let mut ex = send(&pinned.target, pinned.addr, request, deadline).await?;
        ex.response.extensions_mut().insert(RequestLine {
            method: method.to_string(),
            url: loggable_url(url.as_str()),
        });
        Ok(ex)
    }
}

/// A refusal of a redirect hop names the hop.
fn hop_note(hops: usize, url: &Url, d: Denied) -> Denied {
    if hops == 0 {
        d
    } else {
        Denied::new(
            d.kind,
            format!(
                "redirect {hops} to {}: {}",
                loggable_url(url.as_str()),
                d.message
            ),
        )
    }
}

/// Sends to exactly `addr` (the checked address) and waits for the response head, all
/// before `deadline`.
async fn send(
    target: &Target,
    addr: std::net::SocketAddr,
    request: http::Request<Full<bytes::Bytes>>,
    deadline: Instant,
) -> Result<Exchange, Denied> {
    let host = &target.host;
    let sent = client::send(Dial::Pinned(addr), host, target.tls, request);
    let message = match tokio::time::timeout_at(deadline, sent).await {
        Ok(Ok(ex)) => return Ok(ex),
        Err(_) => {
            return Err(Denied::new(
                ErrorKind::Timeout,
                format!("{host} did not answer in time"),
            ))
        }
        Ok(Err(ClientError::Connect(e))) => format!("connecting to {host} ({addr}): {e}"),
        Ok(Err(ClientError::ServerName(e))) => format!("{host} is not a TLS server name: {e}"),
        Ok(Err(ClientError::Tls(e))) => format!("TLS with {host}: {e}"),
        Ok(Err(ClientError::Handshake(e))) => format!("HTTP with {host}: {e}"),
        Ok(Err(ClientError::Send(e))) => format!("request to {host} failed: {e}"),
    };
    Err(Denied::new(ErrorKind::HttpError, message))
}

/// The host asks every upstream for `identity`; a body compressed anyway would carry a
/// secret past redaction, so it is refused rather than handed to the guest.
fn refuse_compressed(ex: &Exchange) -> Result<(), Denied> {
    let encodings = ex
        .response
        .headers()
        .get_all(http::header::CONTENT_ENCODING);
    for value in encodings {
        let value = value.to_str().unwrap_or("?");
        if value
            .split(',')
            .map(str::trim)
            .any(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
        {
            return Err(Denied::new(
                ErrorKind::HttpError,
                format!("the upstream answered with Content-Encoding `{value}` although the host asked for identity; compressed bodies are refused"),
            ));
        }
    }
    Ok(())
}

/// The declared length of a response's body; `None` for responses that carry none whatever
/// they declare (to HEAD, 1xx, 204, 304).
pub(crate) fn content_length(ex: &Exchange) -> Option<u64> {
    let status = ex.response.status();
    let head = ex
        .response
        .extensions()
        .get::<RequestLine>()
        .is_some_and(|r| r.method == "HEAD");
    if head || status.is_informational() || status == 204 || status == 304 {
        return None;
    }
    ex.response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads a whole body, stopping at `cap` bytes.
pub(crate) async fn read_body(
    ex: &mut Exchange,
    cap: u64,
    deadline: Instant,
) -> Result<Vec<u8>, Denied> {
    let too_large = || {
        Denied::new(
            ErrorKind::ResponseTooLarge,
            format!("the response body is over the {cap}-byte limit (max_response_size)"),
        )
    };
    if content_length(ex).is_some_and(|len| len > cap) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ex.response.body_mut().frame()).await {
            Err(_) => {
                return Err(Denied::new(
                    ErrorKind::Timeout,
                    "the response body did not arrive in time",
                ))
            }
            Ok(None) => return Ok(buf),
            Ok(Some(Err(e))) => {
                return Err(Denied::new(
                    ErrorKind::HttpError,
                    format!("reading the response body: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if (buf.len() + data.len()) as u64 > cap {
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}
