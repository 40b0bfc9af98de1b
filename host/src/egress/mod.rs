//! Outbound HTTP for catalysts: the host side of `cyfr:http/fetch`, `cyfr:http/streaming` and
//! `cyfr:secrets/read`, held to the component's egress policy.
//!
//! One [`Session`] per execution. Every request, and every redirect hop (at most
//! [`MAX_REDIRECTS`], each checked like a first request), goes through the same steps:
//!
//! 1. [`Policy::check`]: scheme, user info, IP literals, domain, port, method, rules
//!    (see [`policy`] for the rules in detail);
//! 2. the per-execution request budget (`max_requests`, each hop counts): `rate_limited`;
//! 3. DNS through a [`Resolve`] (the system resolver unless a test gives another), and
//!    [`Policy::check_addr`] on every answer: the first allowed address is used, and if none
//!    is, `private_ip_blocked`;
//! 4. only then `{{secret:NAME}}` in header values and in a text body (or multipart `value`)
//!    is replaced by the granted secret (`http_error` with `access-denied: NAME not granted to
//!    REF` for a name that was not granted); the body size, after substitution, is checked
//!    against `max_request_bytes` (`request_too_large`);
//! 5. a TCP connection to exactly the address that was checked — no second lookup, so no
//!    DNS-rebinding window — with TLS (rustls, webpki roots, SNI = the host name) for https,
//!    and HTTP/1.1 with `Host` set by the host (a guest's own `Host`, `Content-Length`,
//!    `Transfer-Encoding` or hop-by-hop headers are dropped);
//! 6. a deadline of min(30 s, what is left of the execution's time less a small grace) for
//!    the whole exchange including the body (`timeout`); streams get 60 s instead of 30 s.
//!
//! On a redirect to another origin, `Authorization`, `Cookie`, `Proxy-Authorization` and every
//! header that carried a `{{secret:…}}` are not sent again, and a 307/308 that would resend a
//! body carrying a secret to another origin is refused.
//!
//! Responses are capped at `max_response_bytes` (reading stops at the cap:
//! `response_too_large`; streams count all their bytes together against it). Everything
//! handed back to the guest — headers, bodies, stream chunks, error messages — is passed
//! through [`cyfr_core::secrets::mask::redact`] with the execution's granted secrets, so an
//! injected secret that an upstream echoes back never reaches the guest.
//!
//! Each refusal or failure is recorded as a [`Refusal`] (type, method, URL without query,
//! message — never a secret) and logged with `tracing`.

pub mod policy;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use url::Url;
use zeroize::Zeroizing;

pub use policy::{special_range, Denied, ErrorKind, Policy, Target};

/// Redirects followed per request; the next one is an `http_error`.
pub const MAX_REDIRECTS: usize = 3;
/// Streams one execution may have open at once; one more is a `stream_limit`.
pub const MAX_STREAMS: usize = 3;
/// Default per-request time limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default per-stream time limit.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A boxed future, as [`Resolve::resolve`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Name resolution, a seam for tests: the executor uses [`SystemResolver`] unless told
/// otherwise. Whatever it answers is checked by [`Policy::check_addr`] and the connection goes
/// to the checked address.
pub trait Resolve: Send + Sync {
    /// The addresses of `host`.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver (`getaddrinfo`, on a blocking thread).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, port)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

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

/// Replaces granted secrets (every one of their [`cyfr_core::secrets::mask::Forms`]) in what the
/// guest is handed.
struct Redactor {
    /// The text forms redaction looks for (also held back at the end of a stream chunk).
    forms: cyfr_core::secrets::mask::Forms,
    /// Every form as bytes, and the raw values that are not UTF-8, longest first: what is
    /// looked for in binary data.
    needles: Vec<Zeroizing<Vec<u8>>>,
}

impl Redactor {
    fn new(values: impl Iterator<Item = Vec<u8>>) -> Redactor {
        let secrets: Vec<Zeroizing<Vec<u8>>> = values
            .filter(|v| v.len() >= 4)
            .map(Zeroizing::new)
            .collect();
        let forms = cyfr_core::secrets::mask::Forms::new(secrets.iter().map(|s| s.as_slice()));
        // The forms hold every UTF-8 value as plaintext already.
        let mut needles: Vec<Zeroizing<Vec<u8>>> = forms
            .iter()
            .map(|f| Zeroizing::new(f.as_bytes().to_vec()))
            .chain(
                secrets
                    .into_iter()
                    .filter(|s| std::str::from_utf8(s).is_err()),
            )
            .collect();
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Redactor { forms, needles }
    }

    fn text(&self, text: &str) -> String {
        self.forms.redact(text)
    }

    /// Text is redacted as text; other bytes have every form and raw value replaced.
    fn bytes(&self, data: &[u8]) -> Vec<u8> {
        if let Ok(text) = std::str::from_utf8(data) {
            return self.text(text).into_bytes();
        }
        let mut out = data.to_vec();
        for n in &self.needles {
            out = replace_bytes(&out, n, cyfr_core::secrets::mask::REDACTED.as_bytes());
        }
        out
    }

    /// Whether `data` holds a granted secret in any form.
    fn contains(&self, data: &[u8]) -> bool {
        self.needles.iter().any(|n| find_bytes(data, n).is_some())
    }

    /// Where a chunk of `text` may be cut without splitting a possible secret: not inside the
    /// last bytes where a form (in any spelling) could still be arriving, and not inside a form.
    fn safe_cut(&self, text: &str) -> usize {
        // A form may still be arriving in any spelling redaction reads (`\u00XX` …).
        let mut cut = text
            .len()
            .saturating_sub(self.forms.window().saturating_sub(1));
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.forms.safe_cut(text, cut)
    }

    /// Like [`Redactor::safe_cut`] for binary data: every form (a hex or base64 form split
    /// over two chunks would pass both) and every raw value.
    fn safe_cut_bytes(&self, data: &[u8]) -> usize {
        let longest = self.needles.first().map_or(0, |n| n.len());
        let cut = data.len().saturating_sub(longest.saturating_sub(1));
        cut_outside(data, self.needles.iter().map(|n| n.as_slice()), cut)
    }
}

/// `cut`, moved back to the start of any occurrence of a needle it falls inside, until it
/// falls inside none.
fn cut_outside<'a>(
    data: &[u8],
    needles: impl Iterator<Item = &'a [u8]> + Clone,
    mut cut: usize,
) -> usize {
    loop {
        let mut moved = false;
        for n in needles.clone() {
            let mut i = 0;
            while let Some(pos) = find_bytes(&data[i..], n) {
                let at = i + pos;
                if at < cut && at + n.len() > cut {
                    cut = at;
                    moved = true;
                }
                i = at + 1;
            }
        }
        if !moved {
            return cut;
        }
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_bytes(data: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while let Some(pos) = find_bytes(&data[i..], needle) {
        out.extend_from_slice(&data[i..i + pos]);
        out.extend_from_slice(with);
        i += pos + needle.len();
    }
    out.extend_from_slice(&data[i..]);
    out
}

/// A part of a multipart body.
#[derive(Clone, Debug)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    /// `value` (text, may carry `{{secret:…}}`) or decoded `data`.
    content: PartContent,
}

#[derive(Clone, Debug)]
enum PartContent {
    Value(String),
    Data(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Body {
    Empty,
    /// A text body: `{{secret:…}}` is substituted.
    Text(String),
    /// A base64-decoded body: sent as is.
    Binary(Vec<u8>),
    Multipart(Vec<Part>),
}

impl Body {
    /// Whether the body injects a secret or holds one the guest read (`secrets/read`).
    fn carries_secret(&self, redactor: &Redactor) -> bool {
        let text = |t: &str| t.contains(SECRET_OPEN) || redactor.contains(t.as_bytes());
        match self {
            Body::Empty => false,
            Body::Text(t) => text(t),
            Body::Binary(b) => redactor.contains(b),
            Body::Multipart(parts) => parts.iter().any(|p| match &p.content {
                PartContent::Value(v) => text(v),
                PartContent::Data(d) => redactor.contains(d),
            }),
        }
    }
}

/// A request as the guest sent it (before any policy check or substitution).
#[derive(Clone, Debug)]
struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Body,
    response_base64: bool,
}

const SECRET_OPEN: &str = "{{secret:";

fn parse_request(text: &str) -> Result<Request, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("the request is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the request must be a JSON object")?;
    let method = match obj.get("method") {
        None | Some(Value::Null) => "GET".to_string(),
        Some(Value::String(m)) => m.trim().to_ascii_uppercase(),
        Some(_) => return Err("`method` must be a string".into()),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!("`{method}` is not an HTTP method"));
    }
    let url = obj
        .get("url")
        .and_then(Value::as_str)
        .ok_or("`url` is required and must be a string")?
        .to_string();
    let mut headers = Vec::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(format!("header `{k}` must have a string value")),
                };
                headers.push((k.clone(), value));
            }
        }
        Some(_) => return Err("`headers` must be an object of strings".into()),
    }
    let base64_body = match obj.get("body_encoding").and_then(Value::as_str) {
        None => false,
        Some("base64") => true,
        Some("utf8" | "utf-8" | "text") => false,
        Some(other) => {
            return Err(format!(
                "`body_encoding` `{other}` is not supported (use \"base64\")"
            ))
        }
    };
    let response_base64 = match obj.get("response_encoding").and_then(Value::as_str) {
        None => false,
        Some("base64") => true,
        Some("utf8" | "utf-8" | "text") => false,
        Some(other) => {
            return Err(format!(
                "`response_encoding` `{other}` is not supported (use \"base64\")"
            ))
        }
    };
    let body_value = obj.get("body").filter(|b| !b.is_null());
    let multipart = obj.get("multipart").filter(|m| !m.is_null());
    let body = match (body_value, multipart) {
        (Some(_), Some(_)) => return Err("`body` and `multipart` cannot both be given".into()),
        (None, None) => Body::Empty,
        (Some(Value::String(s)), None) if base64_body => Body::Binary(
            B64.decode(s.trim())
                .map_err(|e| format!("`body` is not valid base64: {e}"))?,
        ),
        (Some(Value::String(s)), None) => {
            if s.is_empty() {
                Body::Empty
            } else {
                Body::Text(s.clone())
            }
        }
        (Some(other), None) => Body::Text(other.to_string()),
        (None, Some(Value::Array(parts))) => Body::Multipart(
            parts
                .iter()
                .map(parse_part)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        (None, Some(_)) => return Err("`multipart` must be an array of parts".into()),
    };
    Ok(Request {
        method,
        url,
        headers,
        body,
        response_base64,
    })
}

fn parse_part(v: &Value) -> Result<Part, String> {
    let text = |k: &str| -> Result<Option<String>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                if s.contains(['\r', '\n']) {
                    Err(format!("multipart `{k}` may not contain line breaks"))
                } else {
                    Ok(Some(s.clone()))
                }
            }
            Some(_) => Err(format!("multipart `{k}` must be a string")),
        }
    };
    let name = text("name")?.ok_or("every multipart part needs a `name`")?;
    let content = match (v.get("data").and_then(Value::as_str), v.get("value")) {
        (Some(_), Some(val)) if !val.is_null() => {
            return Err(format!(
                "multipart part `{name}` has both `data` and `value`"
            ))
        }
        (Some(d), _) => PartContent::Data(
            B64.decode(d.trim())
                .map_err(|e| format!("multipart part `{name}`: `data` is not valid base64: {e}"))?,
        ),
        (None, Some(Value::String(s))) => PartContent::Value(s.clone()),
        (None, Some(Value::Null) | None) => PartContent::Value(String::new()),
        (None, Some(other)) => PartContent::Value(other.to_string()),
    };
    Ok(Part {
        name,
        filename: text("filename")?,
        content_type: text("content_type")?,
        content,
    })
}

/// Headers the host sets or that make no sense from a guest: never forwarded.
const DROPPED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    // The host asks for `identity`: a compressed body would carry a secret past redaction.
    "accept-encoding",
];

/// The most header bytes (names and values, after substitution) one request may carry.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Headers not resent when a redirect leaves the original origin.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// A response whose head has arrived; the body is read from `response`.
struct Exchange {
    response: http::Response<Incoming>,
    _sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    _conn: AbortOnDrop,
}

/// Aborts the connection task when the exchange (or a stream) is dropped, e.g. when the
/// execution times out in the middle of a request.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

struct OpenStream {
    exchange: Exchange,
    deadline: Instant,
    base64: bool,
    /// Received but not yet handed out (held back so a secret split across chunks is still
    /// caught, or an incomplete UTF-8 sequence).
    pending: Vec<u8>,
    /// The body has ended.
    finished: bool,
}

/// The outbound-HTTP and secrets state of one catalyst execution.
pub struct Session {
    policy: Policy,
    reference: String,
    secrets: BTreeMap<String, Zeroizing<String>>,
    redactor: Redactor,
    opts: Options,
    /// After this no host call may start or go on (the execution's deadline less a grace, so
    /// the guest still gets an answer in time to return).
    deadline: Instant,
    requests: u64,
    streams: HashMap<String, OpenStream>,
    streamed: u64,
    seq: u64,
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
        let redactor = Redactor::new(secrets.values().map(|v| v.as_bytes().to_vec()));
        Session {
            policy: Policy::from_wire(egress),
            reference: reference.to_string(),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.clone(), Zeroizing::new(v.clone())))
                .collect(),
            redactor,
            opts,
            deadline,
            requests: 0,
            streams: HashMap::new(),
            streamed: 0,
            seq: 0,
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
        match self.secrets.get(name) {
            Some(v) => Ok(v.to_string()),
            None => Err(format!(
                "access-denied: {name} not granted to {}",
                self.reference
            )),
        }
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
        self.requests
    }

    /// `cyfr:http/fetch.request`.
    pub async fn fetch(&mut self, json_request: &str) -> String {
        let req = match parse_request(json_request) {
            Ok(r) => r,
            Err(msg) => return self.fail_unparsed(Denied::new(ErrorKind::HttpError, msg)),
        };
        let deadline = self.request_deadline(self.opts.request_timeout);
        let result = match self.perform(&req, deadline).await {
            Ok(mut ex) => {
                let cap = self.policy.max_response_bytes;
                read_body(&mut ex, cap, deadline)
                    .await
                    .map(|body| (ex.response.status().as_u16(), self.headers_json(&ex), body))
            }
            Err(d) => Err(d),
        };
        match result {
            Ok((status, headers, body)) => {
                let mut out = json!({ "status": status, "headers": headers });
                let redacted = self.redactor.bytes(&body);
                if req.response_base64 {
                    out["body"] = json!(B64.encode(&redacted));
                    out["body_encoding"] = json!("base64");
                } else {
                    match String::from_utf8(redacted) {
                        Ok(text) => out["body"] = json!(text),
                        Err(e) => {
                            out["body"] = json!(B64.encode(e.as_bytes()));
                            out["body_encoding"] = json!("base64");
                        }
                    }
                }
                out.to_string()
            }
            Err(d) => self.fail(&req, d),
        }
    }

    /// `cyfr:http/streaming.request`.
    pub async fn stream_open(&mut self, json_request: &str) -> String {
        let req = match parse_request(json_request) {
            Ok(r) => r,
            Err(msg) => return self.fail_unparsed(Denied::new(ErrorKind::HttpError, msg)),
        };
        if self.streams.len() >= MAX_STREAMS {
            let d = Denied::new(
                ErrorKind::StreamLimit,
                format!("at most {MAX_STREAMS} streams may be open at once; close one first"),
            );
            return self.fail(&req, d);
        }
        let deadline = self.request_deadline(self.opts.stream_timeout);
        let ex = match self.perform(&req, deadline).await {
            Ok(ex) => ex,
            Err(d) => return self.fail(&req, d),
        };
        let left = self.policy.max_response_bytes.saturating_sub(self.streamed);
        if let Some(len) = content_length(&ex) {
            if len > left {
                let d = Denied::new(
                    ErrorKind::ResponseTooLarge,
                    format!("the response is {len} bytes; {left} of the {}-byte response budget are left", self.policy.max_response_bytes),
                );
                return self.fail(&req, d);
            }
        }
        self.seq += 1;
        let mut random = [0u8; 6];
        let _ = getrandom::fill(&mut random);
        let handle = format!(
            "stream-{}-{}",
            self.seq,
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let status = ex.response.status().as_u16();
        let headers = self.headers_json(&ex);
        self.streams.insert(
            handle.clone(),
            OpenStream {
                exchange: ex,
                deadline,
                base64: req.response_base64,
                pending: Vec::new(),
                finished: false,
            },
        );
        json!({ "handle": handle, "status": status, "headers": headers }).to_string()
    }

    /// `cyfr:http/streaming.read`.
    pub async fn stream_read(&mut self, handle: &str) -> String {
        let Some(stream) = self.streams.get_mut(handle) else {
            return error_json(&Denied::new(
                ErrorKind::InvalidHandle,
                format!("no open stream `{handle}`"),
            ));
        };
        if stream.finished {
            let data = emit(&self.redactor, stream, true);
            return json!({ "data": data, "done": data.is_empty() }).to_string();
        }
        loop {
            let frame = tokio::time::timeout_at(
                stream.deadline,
                stream.exchange.response.body_mut().frame(),
            )
            .await;
            let failure = match frame {
                Err(_) => Denied::new(
                    ErrorKind::Timeout,
                    format!("stream `{handle}` ran past its time limit and was closed"),
                ),
                Ok(None) => {
                    stream.finished = true;
                    let data = emit(&self.redactor, stream, true);
                    return json!({ "data": data, "done": data.is_empty() }).to_string();
                }
                Ok(Some(Err(e))) => Denied::new(
                    ErrorKind::HttpError,
                    format!("reading stream `{handle}`: {e}"),
                ),
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    self.streamed += data.len() as u64;
                    if self.streamed > self.policy.max_response_bytes {
                        Denied::new(
                            ErrorKind::ResponseTooLarge,
                            format!(
                                "streamed responses passed the {}-byte limit (max_response_size); the stream was closed",
                                self.policy.max_response_bytes
                            ),
                        )
                    } else {
                        stream.pending.extend_from_slice(&data);
                        let out = emit(&self.redactor, stream, false);
                        if out.is_empty() {
                            continue;
                        }
                        return json!({ "data": out, "done": false }).to_string();
                    }
                }
            };
            let url = stream
                .exchange
                .response
                .extensions()
                .get::<RequestLine>()
                .cloned();
            self.streams.remove(handle);
            let (method, url) = url.map(|l| (l.method, l.url)).unwrap_or_default();
            self.record(&method, &url, &failure);
            return error_json(&Denied::new(
                failure.kind,
                self.redactor.text(&failure.message),
            ));
        }
    }

    /// `cyfr:http/streaming.close`.
    pub fn stream_close(&mut self, handle: &str) -> String {
        match self.streams.remove(handle) {
            Some(_) => json!({ "ok": true }).to_string(),
            None => error_json(&Denied::new(
                ErrorKind::InvalidHandle,
                format!("no open stream `{handle}`"),
            )),
        }
    }

    /// The deadline of a request or stream starting now.
    fn request_deadline(&self, limit: Duration) -> Instant {
        (Instant::now() + limit).min(self.deadline)
    }

    fn fail_unparsed(&mut self, d: Denied) -> String {
        error_json(&Denied::new(d.kind, self.redactor.text(&d.message)))
    }

    fn fail(&mut self, req: &Request, d: Denied) -> String {
        self.record(&req.method, &loggable_url(&req.url), &d);
        error_json(&Denied::new(d.kind, self.redactor.text(&d.message)))
    }

    fn record(&mut self, method: &str, url: &str, d: &Denied) {
        let refusal = Refusal {
            kind: d.kind.as_str().to_string(),
            method: method.to_string(),
            url: self.redactor.text(url),
            message: self.redactor.text(&d.message),
        };
        tracing::info!(
            reference = %self.reference,
            kind = %refusal.kind,
            method = %refusal.method,
            url = %refusal.url,
            message = %refusal.message,
            "catalyst egress refused"
        );
        self.refusals.push(refusal);
    }

    fn headers_json(&self, ex: &Exchange) -> Value {
        let mut map = Map::new();
        for (name, value) in ex.response.headers() {
            let value = self
                .redactor
                .text(&String::from_utf8_lossy(value.as_bytes()));
            match map.get_mut(name.as_str()) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    map.insert(name.as_str().to_string(), Value::String(value));
                }
            }
        }
        Value::Object(map)
    }

    /// Replaces `{{secret:NAME}}` with granted values. Called only for a request that passed
    /// the policy. `budget` is what the result may still add to the request (of `limit`, named
    /// by `what`): many references to a long secret are refused before they fill memory.
    fn substitute(
        &self,
        text: &str,
        budget: &mut u64,
        limit: u64,
        what: &str,
    ) -> Result<String, Denied> {
        let mut out = String::with_capacity(text.len().min(*budget as usize));
        let mut rest = text;
        let over = |size: usize| {
            Denied::new(
                ErrorKind::RequestTooLarge,
                format!("{what} over the {limit}-byte limit ({size} bytes so far)"),
            )
        };
        while let Some(start) = rest.find(SECRET_OPEN) {
            if (out.len() + start) as u64 > *budget {
                return Err(over(out.len() + start));
            }
            out.push_str(&rest[..start]);
            let after = &rest[start + SECRET_OPEN.len()..];
            let Some(end) = after.find("}}") else {
                rest = &rest[start..];
                break;
            };
            let name = after[..end].trim();
            match self.secrets.get(name) {
                Some(v) if (out.len() + v.len()) as u64 > *budget => {
                    return Err(over(out.len() + v.len()))
                }
                Some(v) => out.push_str(v),
                None => {
                    return Err(Denied::new(
                        ErrorKind::HttpError,
                        format!("access-denied: {name} not granted to {}", self.reference),
                    ))
                }
            }
            rest = &after[end + 2..];
        }
        if (out.len() + rest.len()) as u64 > *budget {
            return Err(over(out.len() + rest.len()));
        }
        out.push_str(rest);
        *budget -= out.len() as u64;
        Ok(out)
    }

    /// Builds the headers and body for one hop of `req` to `target`.
    fn build(
        &self,
        target: &Target,
        req: &Request,
        body: &Body,
        cross_origin: bool,
    ) -> Result<http::Request<Full<Bytes>>, Denied> {
        let bad = |m: String| Denied::new(ErrorKind::HttpError, m);
        const BODY: &str = "the request body is";
        let limit = self.policy.max_request_bytes;
        let mut body_budget = limit;
        let mut header_budget = MAX_HEADER_BYTES;
        let (body_bytes, multipart_type) = match body {
            Body::Empty => (Vec::new(), None),
            Body::Text(t) => (
                self.substitute(t, &mut body_budget, limit, BODY)?
                    .into_bytes(),
                None,
            ),
            Body::Binary(b) => (b.clone(), None),
            Body::Multipart(parts) => {
                let mut random = [0u8; 12];
                let _ = getrandom::fill(&mut random);
                let boundary = format!(
                    "cyfr-{}",
                    random
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                );
                let mut out = Vec::new();
                for p in parts {
                    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                    let mut disposition = format!(
                        "Content-Disposition: form-data; name=\"{}\"",
                        p.name.replace('"', "%22")
                    );
                    if let Some(f) = &p.filename {
                        disposition.push_str(&format!("; filename=\"{}\"", f.replace('"', "%22")));
                    }
                    out.extend_from_slice(disposition.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    if let Some(ct) = &p.content_type {
                        out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                    match &p.content {
                        PartContent::Value(v) => out.extend_from_slice(
                            self.substitute(v, &mut body_budget, limit, BODY)?
                                .as_bytes(),
                        ),
                        PartContent::Data(d) => out.extend_from_slice(d),
                    }
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                (
                    out,
                    Some(format!("multipart/form-data; boundary={boundary}")),
                )
            }
        };
        if body_bytes.len() as u64 > self.policy.max_request_bytes {
            return Err(Denied::new(
                ErrorKind::RequestTooLarge,
                format!(
                    "the request body is {} bytes, over the {}-byte limit (max_request_size)",
                    body_bytes.len(),
                    self.policy.max_request_bytes
                ),
            ));
        }
        let method = http::Method::from_bytes(target.method.as_bytes())
            .map_err(|_| bad(format!("`{}` is not an HTTP method", target.method)))?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(target.path_and_query())
            .header(http::header::HOST, target.host_header());
        let mut has_user_agent = false;
        for (name, template) in &req.headers {
            let lower = name.to_ascii_lowercase();
            if DROPPED_HEADERS.contains(&lower.as_str()) {
                continue;
            }
            if multipart_type.is_some() && lower == "content-type" {
                continue;
            }
            if cross_origin
                && (CREDENTIAL_HEADERS.contains(&lower.as_str()) || template.contains(SECRET_OPEN))
            {
                continue;
            }
            let header_name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("`{name}` is not a valid header name")))?;
            let value = self.substitute(
                template,
                &mut header_budget,
                MAX_HEADER_BYTES,
                "the request headers are",
            )?;
            // A value the guest read (`secrets/read`) and put in a header is not resent
            // across origins either.
            if cross_origin && self.redactor.contains(value.as_bytes()) {
                continue;
            }
            header_budget = header_budget.saturating_sub(name.len() as u64);
            let header_value = http::HeaderValue::from_str(&value).map_err(|_| {
                bad(format!(
                    "the value of header `{name}` is not a valid header value"
                ))
            })?;
            has_user_agent |= lower == "user-agent";
            builder = builder.header(header_name, header_value);
        }
        if let Some(ct) = multipart_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        if !has_user_agent {
            builder = builder.header(http::header::USER_AGENT, "cyfr-catalyst/0.1");
        }
        builder = builder.header(http::header::ACCEPT_ENCODING, "identity");
        builder
            .body(Full::new(Bytes::from(body_bytes)))
            .map_err(|e| bad(format!("cannot build the request: {e}")))
    }

    /// Checks, resolves, sends and follows redirects; returns the final response head.
    async fn perform(&mut self, req: &Request, deadline: Instant) -> Result<Exchange, Denied> {
        let mut url = Url::parse(&req.url).map_err(|e| {
            Denied::new(
                ErrorKind::HttpError,
                format!("`{}` is not a valid URL: {e}", req.url),
            )
        })?;
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let mut first_origin = None;
        let mut cross_origin = false;
        let mut hops = 0usize;
        loop {
            let hop_note = |d: Denied| {
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
            };
            let target = self.policy.check(&method, &url).map_err(hop_note)?;
            let origin = target.origin();
            let first = first_origin.get_or_insert_with(|| origin.clone());
            cross_origin |= *first != origin;
            if cross_origin && body.carries_secret(&self.redactor) {
                return Err(hop_note(Denied::new(
                    ErrorKind::HttpError,
                    "refusing to resend a request body that carries a secret to another origin",
                )));
            }
            if self.requests >= self.policy.max_requests {
                return Err(hop_note(Denied::new(
                    ErrorKind::RateLimited,
                    format!(
                        "this execution already sent its {} outbound requests (max_outbound_requests)",
                        self.policy.max_requests
                    ),
                )));
            }
            if Instant::now() >= deadline {
                return Err(Denied::new(
                    ErrorKind::Timeout,
                    "no time is left for this request",
                ));
            }
            // Counted before the lookup: a name lookup is itself traffic (a guest could spell
            // data into names under a wildcard domain it controls).
            self.requests += 1;
            let addr = self.resolve(&target, deadline).await.map_err(hop_note)?;
            // The request passed the policy: only now are secrets substituted.
            let request = self
                .build(&target, req, &body, cross_origin)
                .map_err(hop_note)?;
            tracing::debug!(reference = %self.reference, method = %method, url = %self.redactor.text(&loggable_url(url.as_str())), %addr, "catalyst egress");
            let mut ex = send(&target, addr, request, deadline)
                .await
                .map_err(hop_note)?;
            ex.response.extensions_mut().insert(RequestLine {
                method: method.clone(),
                url: loggable_url(url.as_str()),
            });
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
                    drop(ex);
                }
                _ => {
                    refuse_compressed(&ex).map_err(hop_note)?;
                    return Ok(ex);
                }
            }
        }
    }

    /// Resolves the target's host and picks the first address the policy allows.
    async fn resolve(&self, target: &Target, deadline: Instant) -> Result<SocketAddr, Denied> {
        let ips = tokio::time::timeout_at(
            deadline,
            self.opts.resolver.resolve(&target.host, target.port),
        )
        .await
        .map_err(|_| {
            Denied::new(
                ErrorKind::Timeout,
                format!("resolving {} took too long", target.host),
            )
        })?
        .map_err(|e| {
            Denied::new(
                ErrorKind::DnsError,
                format!("could not resolve {}: {e}", target.host),
            )
        })?;
        if ips.is_empty() {
            return Err(Denied::new(
                ErrorKind::DnsError,
                format!("{} has no addresses", target.host),
            ));
        }
        let mut refused = None;
        for ip in ips {
            match self.policy.check_addr(target, ip) {
                Ok(()) => return Ok(SocketAddr::new(ip, target.port)),
                Err(d) => {
                    refused.get_or_insert(d);
                }
            }
        }
        Err(refused.expect("at least one address was checked"))
    }
}

/// Method and URL of the request a response answers (for the record of a failed stream).
#[derive(Clone, Debug, Default)]
struct RequestLine {
    method: String,
    url: String,
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

fn error_json(d: &Denied) -> String {
    json!({ "error": { "type": d.kind.as_str(), "message": d.message } }).to_string()
}

/// The declared length of a response's body; `None` for responses that carry none whatever
/// they declare (to HEAD, 1xx, 204, 304).
fn content_length(ex: &Exchange) -> Option<u64> {
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
async fn read_body(ex: &mut Exchange, cap: u64, deadline: Instant) -> Result<Vec<u8>, Denied> {
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

/// What a stream read hands out now: everything when `all`, else what can be released
/// without splitting a UTF-8 sequence or a possible secret.
fn emit(redactor: &Redactor, stream: &mut OpenStream, all: bool) -> String {
    emit_pending(redactor, &mut stream.pending, stream.base64, all)
}

/// [`emit`] over a stream's held-back bytes alone (so the fuzzer can drive it without a connection).
fn emit_pending(redactor: &Redactor, pending: &mut Vec<u8>, base64: bool, all: bool) -> String {
    if pending.is_empty() {
        return String::new();
    }
    if base64 {
        let cut = if all {
            pending.len()
        } else {
            redactor.safe_cut_bytes(pending)
        };
        let out: Vec<u8> = pending.drain(..cut).collect();
        return if out.is_empty() {
            String::new()
        } else {
            B64.encode(redactor.bytes(&out))
        };
    }
    let valid = match std::str::from_utf8(pending) {
        Ok(s) => s.len(),
        // An incomplete sequence at the end waits for the next chunk; invalid bytes are
        // replaced.
        Err(e) if e.error_len().is_none() && !all => e.valid_up_to(),
        Err(_) => {
            let lossy = String::from_utf8_lossy(pending).into_owned();
            *pending = lossy.into_bytes();
            pending.len()
        }
    };
    let text = std::str::from_utf8(&pending[..valid]).expect("checked above");
    let cut = if all { valid } else { redactor.safe_cut(text) };
    let out = redactor.text(&text[..cut]);
    pending.drain(..cut);
    out
}

/// Fuzzing entry points: the real parsing and stream redaction, without a connection.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a guest's `fetch` / `stream-open` request JSON: (method, url) or the guest's error.
    pub fn parse_request(text: &str) -> Result<(String, String), String> {
        super::parse_request(text).map(|r| (r.method, r.url))
    }

    /// Feeds `chunks` through a stream's hold-back and redaction as `stream-read` does
    /// (text or base64 mode), then the final read; every piece handed out, in order.
    pub fn stream(secrets: &[Vec<u8>], chunks: &[&[u8]], base64: bool) -> Vec<String> {
        let redactor = super::Redactor::new(secrets.iter().cloned());
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            pending.extend_from_slice(c);
            out.push(super::emit_pending(&redactor, &mut pending, base64, false));
        }
        out.push(super::emit_pending(&redactor, &mut pending, base64, true));
        out
    }
}

pub(crate) fn tls_config() -> Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
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

/// Connects to exactly `addr` (TLS for https, SNI = the host name), sends, and waits for the
/// response head, all before `deadline`.
async fn send(
    target: &Target,
    addr: SocketAddr,
    request: http::Request<Full<Bytes>>,
    deadline: Instant,
) -> Result<Exchange, Denied> {
    let host = target.host.clone();
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
            Denied::new(
                ErrorKind::HttpError,
                format!("connecting to {host} ({addr}): {e}"),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if target.tls {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| {
                    Denied::new(
                        ErrorKind::HttpError,
                        format!("{host} is not a TLS server name: {e}"),
                    )
                })?;
            let tls = tokio_rustls::TlsConnector::from(tls_config())
                .connect(name, tcp)
                .await
                .map_err(|e| Denied::new(ErrorKind::HttpError, format!("TLS with {host}: {e}")))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| Denied::new(ErrorKind::HttpError, format!("HTTP with {host}: {e}")))?;
        let conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let response = sender.send_request(request).await.map_err(|e| {
            Denied::new(
                ErrorKind::HttpError,
                format!("request to {host} failed: {e}"),
            )
        })?;
        Ok(Exchange {
            response,
            _sender: sender,
            _conn: conn,
        })
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Ok(result) => result,
        Err(_) => Err(Denied::new(
            ErrorKind::Timeout,
            format!("{host} did not answer in time"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_defaults_and_refuse_body_with_multipart() {
        let r = parse_request(r#"{"url":"https://a.example/x"}"#).unwrap();
        assert_eq!(r.method, "GET");
        assert!(matches!(r.body, Body::Empty));
        let r = parse_request(r#"{"method":"post","url":"u","body":"aGk=","body_encoding":"base64","response_encoding":"base64"}"#).unwrap();
        assert_eq!(r.method, "POST");
        assert!(matches!(&r.body, Body::Binary(b) if b == b"hi"));
        assert!(r.response_base64);
        assert!(parse_request(r#"{"url":"u","body":"x","multipart":[]}"#).is_err());
        assert!(parse_request(
            r#"{"url":"u","multipart":[{"name":"f","data":"aGk=","value":"x"}]}"#
        )
        .is_err());
        assert!(parse_request(r#"{"method":"GE T","url":"u"}"#).is_err());
        assert!(parse_request("not json").is_err());
    }

    #[test]
    fn secrets_are_held_back_across_stream_chunks() {
        let r = Redactor::new([b"sk-very-secret".to_vec()].into_iter());
        let text = "hello sk-very-sec";
        let cut = r.safe_cut(text);
        assert!(cut <= text.find("sk-").unwrap(), "{cut}");
        let text = "hello sk-very-secret and more text that goes on for a while";
        let cut = r.safe_cut(text);
        assert!(!r.text(&text[..cut]).contains("sk-very"));
        let none = Redactor::new(std::iter::empty());
        assert_eq!(none.safe_cut("abc"), 3);
        assert_eq!(
            r.bytes(b"\xff sk-very-secret \xfe"),
            b"\xff [REDACTED] \xfe".to_vec()
        );
        // Binary data: the hex form too, and a chunk never ends inside one.
        let hex: String = b"sk-very-secret"
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let data = [b"\xff ".as_slice(), hex.as_bytes(), b" \xfe"].concat();
        assert_eq!(r.bytes(&data), b"\xff [REDACTED] \xfe".to_vec());
        let data = [b"\xffxxxxxxxxxx".as_slice(), &hex.as_bytes()[..20]].concat();
        assert!(r.safe_cut_bytes(&data) <= 11, "{}", r.safe_cut_bytes(&data));
        assert!(r.contains(hex.as_bytes()) && !r.contains(b"sk-very"));
    }
}
