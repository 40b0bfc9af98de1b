//! A streamed `tools/call` answer: when the client accepts `text/event-stream`, a run that
//! lasts more than a moment answers as Server-Sent Events — the request's
//! `notifications/progress` (with its `progressToken`) and `notifications/message` (only at
//! or above the log level it asked for), then the JSON-RPC response. A write that fails
//! means the client closed the stream: the run is cancelled on its host and recorded so.
//!
//! No runtime here: the adapter gives a [`Sink`] over its streaming body and wraps its
//! dispatcher in [`Streaming`]; the host's ticks (about every second) are what make a
//! closed stream noticed while the guest is silent. Nothing is kept between requests.

use crate::dispatch::{Answer, Dispatch, DispatchError, OutboundRequest, RunEvents, SendError};
use crate::host_api::{LoadedComponent, RunRequest, RunResponse};
use crate::http::{HttpRequest, HttpResponse};
use crate::secrets::mask::Forms;
use serde_json::{json, Value as Json};
use std::cell::Cell;

/// The client closed the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed;

/// The streaming body of one response, as the adapter writes it.
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// Writes `bytes` of the event stream and flushes them. The first write sends the head
    /// first ([`head`]: status 200 and its headers). `Err` once the client has gone.
    async fn send(&self, bytes: &[u8]) -> Result<(), Closed>;
    /// Waits about `ms` milliseconds (between two polls of a `subscriptions/listen` stream).
    async fn sleep(&self, ms: u64);
}

/// The response head of a streamed answer: `200` with these headers (`x-accel-buffering:
/// no` keeps a proxy from holding the events back), CORS as every answer's.
pub fn head(config: &crate::config::Config, req: &HttpRequest) -> Vec<(String, String)> {
    let mut h = vec![
        ("content-type".to_string(), "text/event-stream".to_string()),
        ("cache-control".to_string(), "no-cache".to_string()),
        ("x-accel-buffering".to_string(), "no".to_string()),
    ];
    if let Some(rid) = req
        .header("x-request-id")
        .filter(|v| crate::http::sane_request_id(v))
    {
        h.push(("x-request-id".to_string(), rid.to_string()));
    }
    h.extend(crate::app::cors(config, req));
    h
}

/// The `_meta` key of a 2026-07-28 request's log level.
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// The line prefix by which a component reports progress on stderr
/// (`cyfr:progress {"progress":3,"total":10,"message":"..."}`; docs/components.md).
pub const PROGRESS_PREFIX: &str = "cyfr:progress ";

/// The line prefix by which a component logs at a level of its choosing
/// (`cyfr:log {"level":"warning","data":...}`); any other stderr line is `info`.
pub const LOG_PREFIX: &str = "cyfr:log ";

pub use crate::sessions::{severity, LEVELS};

/// What a request asked to be streamed: taken from its `Accept` and body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wanted {
    /// The request's `_meta.progressToken`: progress is sent only with one.
    pub progress_token: Option<Json>,
    /// The least severe log level sent (none: no `notifications/message`).
    pub min_level: Option<usize>,
}

/// Whether `req` is a `tools/call` (or a `subscriptions/listen`: `Wanted::default()`) whose
/// client accepts an event stream, and what it wants streamed (a 2026-07-28 request's own `_meta` level; a 2025-11-25 session's level, which
/// only SQL knows, arrives later through `Dispatch::session_log_level`).
pub fn wanted(req: &HttpRequest) -> Option<Wanted> {
    if req.method != "POST"
        || !matches!(req.path.as_str(), "/mcp" | "/mcp/" | crate::app::AGENT_PATH)
    {
        return None;
    }
    let accepts = req.header("accept").is_some_and(|a| {
        a.split(',')
            .any(|t| t.split(';').next().unwrap_or("").trim() == "text/event-stream")
    });
    if !accepts {
        return None;
    }
    let msg: Json = serde_json::from_slice(&req.body).ok()?;
    let method = msg.get("method").and_then(Json::as_str);
    // A notification has no answer to stream.
    msg.get("id")?;
    // A listen stream carries only its own notifications (`listen`).
    if method == Some("subscriptions/listen") {
        return Some(Wanted::default());
    }
    if method != Some("tools/call") {
        return None;
    }
    let meta = &msg["params"]["_meta"];
    let level = meta[META_LOG_LEVEL].as_str();
    Some(Wanted {
        progress_token: meta
            .get("progressToken")
            .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
            .cloned(),
        min_level: level.and_then(severity),
    })
}

/// A dispatcher whose runs stream their progress and logs to a [`Sink`] when the request
/// [`wanted`] it; everything else goes to the inner dispatcher unchanged.
pub struct Streaming<X, S> {
    inner: X,
    sink: S,
    wanted: Option<Wanted>,
    /// Something was written (the head went out): the answer must end the stream.
    started: Cell<bool>,
    /// A write failed: the client is gone.
    closed: Cell<bool>,
    /// The level the caller's session asked for (when the request's `_meta` names none).
    session_level: Cell<Option<usize>>,
}

impl<X: Dispatch, S: Sink> Streaming<X, S> {
    /// `inner`, streaming to `sink` what `wanted` says (nothing when `None`).
    pub fn new(inner: X, sink: S, wanted: Option<Wanted>) -> Self {
        Streaming {
            inner,
            sink,
            wanted,
            started: Cell::new(false),
            closed: Cell::new(false),
            session_level: Cell::new(None),
        }
    }

    /// The inner dispatcher.
    pub fn inner(&self) -> &X {
        &self.inner
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Whether the client closed the stream.
    pub fn closed(&self) -> bool {
        self.closed.get()
    }

    /// How `resp` (the request's answer) goes out: `None` — nothing was streamed, send it
    /// as it is; `Some(bytes)` — the last event of the stream already open (empty when the
    /// client has gone).
    pub fn tail(&self, resp: &HttpResponse) -> Option<Vec<u8>> {
        if !self.started.get() {
            return None;
        }
        if self.closed.get() || resp.body.is_empty() {
            return Some(Vec::new());
        }
        let body = String::from_utf8_lossy(&resp.body);
        Some(event(&body))
    }

    async fn write(&self, bytes: &[u8]) -> Result<(), Closed> {
        if self.closed.get() {
            return Err(Closed);
        }
        self.started.set(true);
        let r = self.sink.send(bytes).await;
        if r.is_err() {
            self.closed.set(true);
        }
        r
    }
}

/// One SSE `message` event carrying `json` (one `data:` line per line of it).
fn event(json: &str) -> Vec<u8> {
    let mut out = String::from("event: message\n");
    for line in json.lines() {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out.into_bytes()
}

/// The events of one run, written to the stream.
struct Forward<'a, X, S> {
    s: &'a Streaming<X, S>,
    wanted: &'a Wanted,
    execution_id: &'a str,
    /// The run's secrets and opened values: no event carries one.
    forms: Forms,
    /// The run was asked to stop (once).
    cancelled: Cell<bool>,
}

impl<X: Dispatch, S: Sink> Forward<'_, X, S> {
    async fn write(&self, bytes: &[u8]) {
        if self.s.write(bytes).await.is_err() && !self.cancelled.replace(true) {
            // The client left: stop the run for real; its answer (cancelled) is recorded.
            let _ = self.s.inner.cancel(self.execution_id).await;
        }
    }

    fn notification(&self, method: &str, params: Json) -> Vec<u8> {
        event(&json!({ "jsonrpc": "2.0", "method": method, "params": params }).to_string())
    }
}

impl<X: Dispatch, S: Sink> RunEvents for Forward<'_, X, S> {
    async fn line(&self, line: &str) {
        if self.s.closed.get() {
            return;
        }
        let line = self.forms.redact(line);
        if let Some(p) = line.strip_prefix(PROGRESS_PREFIX) {
            // Not asked for: nothing is written (the host's ticks notice a closed stream).
            let Some(token) = &self.wanted.progress_token else {
                return;
            };
            let Ok(p) = serde_json::from_str::<Json>(p) else {
                return;
            };
            let Some(progress) = p["progress"].as_f64() else {
                return;
            };
            let mut params = json!({ "progressToken": token, "progress": progress });
            if let Some(t) = p["total"].as_f64() {
                params["total"] = json!(t);
            }
            if let Some(m) = p["message"].as_str() {
                params["message"] = json!(m);
            }
            let bytes = self.notification("notifications/progress", params);
            return self.write(&bytes).await;
        }
        let (level, data) = match line.strip_prefix(LOG_PREFIX) {
            Some(rest) => match serde_json::from_str::<Json>(rest) {
                Ok(v) => (
                    v["level"].as_str().unwrap_or("info").to_string(),
                    v.get("data").cloned().unwrap_or(Json::Null),
                ),
                Err(_) => ("info".to_string(), json!(rest)),
            },
            None => ("info".to_string(), json!(line)),
        };
        let min = self.wanted.min_level.or(self.s.session_level.get());
        let shown = match (min, severity(&level)) {
            (Some(min), Some(sev)) => sev >= min,
            _ => false,
        };
        if !shown {
            return;
        }
        let bytes = self.notification(
            "notifications/message",
            json!({ "level": level, "logger": "cyfr", "data": data }),
        );
        self.write(&bytes).await
    }

    async fn tick(&self) {
        if !self.s.closed.get() {
            // An SSE comment: nothing for the client, but a write that fails once it left.
            self.write(b": running\n\n").await;
        }
    }
}

impl<X: Dispatch, S: Sink> Streaming<X, S> {
    /// The run, streamed (sent again after an upload when `again`).
    async fn streamed(
        &self,
        wanted: &Wanted,
        req: &RunRequest,
        again: bool,
    ) -> Result<RunResponse, DispatchError> {
        let opened: Vec<Vec<u8>> = req
            .redact
            .iter()
            .filter_map(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
            .collect();
        let forms = Forms::new(
            req.secrets
                .values()
                .map(|v| v.as_bytes())
                .chain(opened.iter().map(|v| v.as_slice())),
        );
        let events = Forward {
            s: self,
            wanted,
            execution_id: &req.execution_id,
            forms,
            cancelled: Cell::new(false),
        };
        if again {
            self.inner.run_again_streamed(req, &events).await
        } else {
            self.inner.run_streamed(req, &events).await
        }
    }
}

impl<X: Dispatch, S: Sink> Dispatch for Streaming<X, S> {
    async fn run(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        match &self.wanted {
            Some(wanted) => self.streamed(wanted, req, false).await,
            None => self.inner.run(req).await,
        }
    }
    async fn run_again(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        match &self.wanted {
            Some(wanted) => self.streamed(wanted, req, true).await,
            None => self.inner.run_again(req).await,
        }
    }
    async fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), DispatchError> {
        self.inner.put_artifact(digest, bytes).await
    }
    async fn cancel(&self, execution_id: &str) -> Result<bool, DispatchError> {
        self.inner.cancel(execution_id).await
    }
    async fn load_directory(&self, directory: &str) -> Result<LoadedComponent, DispatchError> {
        self.inner.load_directory(directory).await
    }
    fn session_log_level(&self, level: &str) {
        self.session_level.set(severity(level));
    }
    async fn fetch(&self, req: OutboundRequest) -> Result<Answer, SendError> {
        self.inner.fetch(req).await
    }
    fn streams(&self) -> bool {
        true
    }
    fn can_push(&self) -> bool {
        self.wanted.is_some()
    }
    async fn push(&self, msg: Option<&Json>) -> bool {
        if self.wanted.is_none() {
            return false;
        }
        let bytes = match msg {
            Some(m) => event(&m.to_string()),
            None => b": listening\n\n".to_vec(),
        };
        self.write(&bytes).await.is_ok()
    }
    async fn pause(&self, ms: u64) {
        self.sink.sleep(ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str, accept: &str, body: Json) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: path.into(),
            headers: vec![
                ("accept".into(), accept.into()),
                ("origin".into(), "http://localhost:3000".into()),
            ],
            body: body.to_string().into_bytes(),
            peer: None,
            scheme: None,
        }
    }

    #[test]
    fn only_a_tools_call_to_mcp_that_accepts_an_event_stream_is_streamed() {
        let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "_meta": { "progressToken": 5, "io.modelcontextprotocol/logLevel": "notice" } } });
        let w = wanted(&post(
            "/mcp",
            "application/json, text/event-stream",
            call.clone(),
        ));
        assert_eq!(
            w,
            Some(Wanted {
                progress_token: Some(json!(5)),
                min_level: Some(2)
            })
        );
        assert!(wanted(&post("/mcp/agent", "text/event-stream;q=1", call.clone())).is_some());
        assert_eq!(
            wanted(&post("/mcp", "application/json", call.clone())),
            None
        );
        assert_eq!(
            wanted(&post("/v1/formula/invoke", "text/event-stream", call)),
            None
        );
        let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
        assert_eq!(wanted(&post("/mcp", "text/event-stream", list)), None);
        let note = json!({ "jsonrpc": "2.0", "method": "tools/call" });
        assert_eq!(wanted(&post("/mcp", "text/event-stream", note)), None);
    }

    #[test]
    fn the_head_says_event_stream_unbuffered_with_cors_for_an_allowed_origin() {
        let config = crate::config::Config::default();
        let req = post("/mcp", "text/event-stream", json!({}));
        let head = head(&config, &req);
        let get = |k: &str| head.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("content-type"), Some("text/event-stream"));
        assert_eq!(get("x-accel-buffering"), Some("no"));
        // A loopback page is allowed by default; another site is not.
        assert_eq!(
            get("access-control-allow-origin"),
            Some("http://localhost:3000")
        );
        let mut evil = req.clone();
        evil.headers[1].1 = "https://evil.example".into();
        let head = super::head(&config, &evil);
        assert!(!head.iter().any(|(n, _)| n.starts_with("access-control")));
    }
}
