//! Outbound HTTP for catalysts: the host side of `cyfr:http/fetch`, `cyfr:http/streaming` and
//! `cyfr:secrets/read`, held to the component's egress policy.
//!
//! One [`Session`] per execution. Every request, and every redirect hop (at most
//! [`MAX_REDIRECTS`], each checked like a first request), goes through the same steps:
//!
//! 1. `abi`: the guest's JSON request is parsed (`http_error` if it does not parse);
//! 2. `decide`, the egress hook: [`Policy::check`] (scheme, user info, IP literals, domain,
//!    port, method, rules; see [`policy`]), a body carrying a secret never leaves the first
//!    origin, the per-execution request budget (`max_requests`, each hop counts:
//!    `rate_limited`), then DNS through a [`Resolve`] (the system resolver unless a test
//!    gives another) and [`Policy::check_addr`] on every answer: the first allowed address is
//!    pinned, and if none is, `private_ip_blocked`;
//! 3. `inject` / `outgoing`: only then `{{secret:NAME}}` in header values and in a text body
//!    (or multipart `value`) is replaced by the granted secret (`http_error` with
//!    `access-denied: NAME not granted to REF` for a name that was not granted); the body
//!    size, after substitution, is checked against `max_request_bytes` (`request_too_large`);
//!    `Host` is set by the host (a guest's own `Host`, `Content-Length`, `Transfer-Encoding`
//!    or hop-by-hop headers are dropped);
//! 4. `client`: a TCP connection to exactly the pinned address — no second lookup, so no
//!    DNS-rebinding window — with TLS (rustls, webpki roots, SNI = the host name) for https,
//!    HTTP/1.1 by hyper;
//! 5. `upstream`: a deadline of min(30 s, what is left of the execution's time less a small
//!    grace) for the whole exchange including the body (`timeout`); streams (`stream`) get
//!    60 s instead of 30 s.
//!
//! On a redirect to another origin, `Authorization`, `Cookie`, `Proxy-Authorization` and every
//! header that carried a `{{secret:…}}` are not sent again, and a 307/308 that would resend a
//! body carrying a secret to another origin is refused.
//!
//! Responses are capped at `max_response_bytes` (reading stops at the cap:
//! `response_too_large`; streams count all their bytes together against it). Everything
//! handed back to the guest — headers, bodies, stream chunks, error messages — passes once
//! through the execution's `redact::Redactor` (core's [`cyfr_core::secrets::mask::Forms`] of
//! its granted secrets), so an injected secret that an upstream echoes back never reaches the
//! guest.
//!
//! Each refusal or failure is recorded as a [`Refusal`] (type, method, URL without query,
//! message — never a secret) and logged with `tracing`. The error types are the host's one
//! table, [`crate::guest_error::Kind`].

mod abi;
pub(crate) mod client;
mod decide;
mod inject;
mod outgoing;
pub mod policy;
mod redact;
mod stream;
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use url::Url;
use zeroize::Zeroizing;

pub use decide::{BoxFuture, Resolve, SystemResolver};
pub use policy::{special_range, Denied, ErrorKind, Policy, Target};

use decide::Gate;
use inject::Secrets;
use redact::Redactor;
use stream::Streams;

/// Redirects followed per request; the next one is an `http_error`.
pub const MAX_REDIRECTS: usize = 3;
/// Streams one execution may have open at once; one more is a `stream_limit`.
pub const MAX_STREAMS: usize = 3;
/// Default per-request time limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default per-stream time limit.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Time limits and the resolver a [`Session`] uses.
#[derive(Clone)]
pub struct Options {
    /// Per-request limit (default 30 s), further capped by the execution's remaining time.
    pub request_timeout: Duration,
    /// Per-stream limit (default 60 s), likewise capped.
    pub stream_timeout: Duration,
    /// Name resolution.
    pub resolver: Arc<dyn Resolve>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            request_timeout: REQUEST_TIMEOUT,
            stream_timeout: STREAM_TIMEOUT,
            resolver: Arc::new(SystemResolver),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("request_timeout", &self.request_timeout)
            .field("stream_timeout", &self.stream_timeout)
            .finish_non_exhaustive()
    }
}

/// One refused or failed outbound request, for the execution's record: the wire type the
/// router records, so the host hands it on as is.
pub use cyfr_core::host_api::EgressRefusal as Refusal;

/// The URL as it may be recorded: no user info, query or fragment.
fn loggable_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(not a valid URL)".to_string(),
    }
}

/// The outbound-HTTP and secrets state of one catalyst execution.
pub struct Session {
    gate: Gate,
    secrets: Secrets,
    redactor: Redactor,
    opts: Options,
    /// After this no host call may start or go on (the execution's deadline less a grace, so
    /// the guest still gets an answer in time to return).
    deadline: Instant,
    streams: Streams,
    refusals: Vec<Refusal>,
}

impl Session {
    /// A session for one execution of `reference`, whose host calls must end by `deadline`.
    pub fn new(
        reference: &str,
        secrets: &BTreeMap<String, String>,
        egress: &cyfr_core::host_api::Egress,
        opts: Options,
        deadline: Instant,
    ) -> Session {
        let secrets = Secrets::new(reference, secrets);
        let redactor = Redactor::new(secrets.values().map(|v| v.as_bytes().to_vec()));
        Session {
            gate: Gate::new(Policy::from_wire(egress), opts.resolver.clone()),
            secrets,
            redactor,
            opts,
            deadline,
            streams: Streams::default(),
            refusals: Vec::new(),
        }
    }

    /// The same session, redacting `values` too (secret, though not granted by name).
    pub fn also_redacting(mut self, values: &[Zeroizing<Vec<u8>>]) -> Session {
        if !values.is_empty() {
            let all = self
                .secrets
                .values()
                .map(|v| v.as_bytes().to_vec())
                .chain(values.iter().map(|v| v.to_vec()));
            self.redactor = Redactor::new(all);
        }
        self
    }

    /// `cyfr:secrets/read.get`.
    pub fn secret(&self, name: &str) -> Result<String, String> {
        self.secrets.get(name)
    }

    /// Replaces every granted secret in `text` with `[REDACTED]`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.text(text)
    }

    /// The refusals recorded so far.
    pub fn refusals(&self) -> &[Refusal] {
        &self.refusals
    }

    /// Outbound requests sent so far (each redirect hop counts).
    pub fn requests_sent(&self) -> u64 {
        self.gate.sent()
    }

    /// `cyfr:http/fetch.request`.
    pub async fn fetch(&mut self, json_request: &str) -> String {
        let req = match abi::parse_request(json_request) {
            Ok(r) => r,
            Err(msg) => return self.fail_unparsed(Denied::new(ErrorKind::HttpError, msg)),
        };
        let deadline = self.request_deadline(self.opts.request_timeout);
        let result = match self.perform(&req, deadline).await {
            Ok(mut ex) => {
                let cap = self.gate.policy.max_response_bytes;
                upstream::read_body(&mut ex, cap, deadline)
                    .await
                    .map(|body| (ex, body))
            }
            Err(d) => Err(d),
        };
        match result {
            Ok((ex, body)) => {
                let status = ex.response.status().as_u16();
                let headers = abi::headers(&self.redactor, ex.response.headers());
                abi::fetched(&self.redactor, status, headers, &body, req.response_base64)
            }
            Err(d) => self.fail(&req, d),
        }
    }

    /// The deadline of a request or stream starting now.
    fn request_deadline(&self, limit: Duration) -> Instant {
        (Instant::now() + limit).min(self.deadline)
    }

    /// The answer to a request that did not parse (nothing to record: no URL is known).
    fn fail_unparsed(&mut self, d: Denied) -> String {
        abi::error(&self.redactor.denied(d))
    }

    /// Records and answers the refusal of `req`.
    fn fail(&mut self, req: &abi::Request, d: Denied) -> String {
        self.fail_at(&req.method, &loggable_url(&req.url), d)
    }

    /// Records and answers a refusal of `method url`: its message redacted once, for both.
    fn fail_at(&mut self, method: &str, url: &str, d: Denied) -> String {
        let d = self.redactor.denied(d);
        self.record(method, url, &d);
        abi::error(&d)
    }

    /// Records `d` (whose message is redacted already) for `method url`.
    fn record(&mut self, method: &str, url: &str, d: &Denied) {
        let refusal = Refusal {
            kind: d.kind.as_str().to_string(),
            method: method.to_string(),
            url: self.redactor.text(url),
            message: d.message.clone(),
        };
        tracing::info!(
            reference = %self.secrets.reference(),
            kind = %refusal.kind,
            method = %refusal.method,
            url = %refusal.url,
            message = %refusal.message,
            "catalyst egress refused"
        );
        self.refusals.push(refusal);
    }
}

/// Fuzzing entry points: the real parsing and stream redaction, without a connection.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a guest's `fetch` / `stream-open` request JSON: (method, url) or the guest's error.
    pub fn parse_request(text: &str) -> Result<(String, String), String> {
        super::abi::parse_request(text).map(|r| (r.method, r.url))
    }

    /// Feeds `chunks` through a stream's hold-back and redaction as `stream-read` does
    /// (text or base64 mode), then the final read; every piece handed out, in order.
    pub fn stream(secrets: &[Vec<u8>], chunks: &[&[u8]], base64: bool) -> Vec<String> {
        let redactor = super::Redactor::new(secrets.iter().cloned());
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            pending.extend_from_slice(c);
            out.push(super::stream::emit_pending(
                &redactor,
                &mut pending,
                base64,
                false,
            ));
        }
        out.push(super::stream::emit_pending(
            &redactor,
            &mut pending,
            base64,
            true,
        ));
        out
    }
}
