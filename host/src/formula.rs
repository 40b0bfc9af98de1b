//! A formula's host functions (`cyfr:formula/invoke`, `cyfr:mcp/tools`): each call goes back
//! to the router that started the run ([`Callback`]), which runs the child or the tool
//! through its full pipeline as the run's caller. The host only forwards, bounds the time
//! and keeps the parallel batches; it decides nothing about what a formula may do.

use bytes::Bytes;
use cyfr_core::host_api::{self, Callback};
use http_body_util::Full;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::egress::client::{self, ClientError, Dial};
use crate::guest_error::{answer, Kind};

/// Most invocations in one `call-batch`.
pub const MAX_BATCH: usize = 64;
/// Most batches one run may have open at once.
pub const MAX_OPEN_BATCHES: usize = 16;
/// How long past the run's deadline a callback task may still wait for the router to
/// record a child before it is dropped.
const CALLBACK_SLACK: Duration = Duration::from_secs(30);

/// A boxed future that can cross threads.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The router in this process (`cyfr up`): callbacks to [`host_api::ROUTER_INTERNAL_URL`]
/// are handed to it directly.
pub trait LocalRouter: Send + Sync {
    /// Handles one request as the router would from the network (peer: loopback).
    fn handle(&self, req: http::Request<Bytes>)
        -> BoxFuture<anyhow::Result<http::Response<Bytes>>>;
}

/// How a run reaches its router: the callback it came with, and the in-process router if any.
#[derive(Clone)]
pub struct RouterLink {
    callback: Callback,
    local: Option<Arc<dyn LocalRouter>>,
}

impl RouterLink {
    /// A link for `callback`; `local` answers [`host_api::ROUTER_INTERNAL_URL`].
    pub fn new(callback: Callback, local: Option<Arc<dyn LocalRouter>>) -> RouterLink {
        RouterLink { callback, local }
    }

    /// POSTs `body` to `path` on the router with the run's token, before `deadline`; the
    /// answer's body, or the guest-facing error JSON.
    async fn post(&self, path: &str, body: String, deadline: Instant) -> String {
        // A formula whose input holds opened secrets has its callbacks sealed both ways: a
        // child's input never crosses the network in clear.
        let key = match self.callback.key.as_deref().map(host_api::callback_key) {
            None => None,
            Some(Some(k)) => Some(k),
            Some(None) => {
                return answer(Kind::DispatchError, "the run's callback key is malformed")
            }
        };
        let req = match self.request(path, body, key.as_deref()) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let this = self.clone();
        // Its own task: a child that started always finishes and is recorded, even if this
        // run is cancelled or times out while waiting. The router ends a child by the
        // parent's deadline, so a task still waiting well past it talks to a stuck router.
        let task = tokio::spawn(tokio::time::timeout_at(
            deadline + CALLBACK_SLACK,
            async move { this.send(req).await },
        ));
        match tokio::time::timeout_at(deadline, task).await {
            Err(_) => answer(
                Kind::Timeout,
                "the formula's time ran out while waiting for the router",
            ),
            Ok(Err(join)) => answer(
                Kind::DispatchError,
                &format!("callback task failed: {join}"),
            ),
            // Unreachable: the task's own limit is later than ours.
            Ok(Ok(Err(_))) => answer(Kind::Timeout, "the router did not answer in time"),
            Ok(Ok(Ok(Err(e)))) => answer(
                Kind::DispatchError,
                &format!("the router could not be reached: {e}"),
            ),
            Ok(Ok(Ok(Ok(resp)))) => read_answer(path, key.as_deref(), &resp),
        }
    }

    /// The callback request: the body (sealed under `key` when the run has one) with the
    /// run's token; or the guest-facing error JSON.
    fn request(
        &self,
        path: &str,
        body: String,
        key: Option<&[u8; 32]>,
    ) -> Result<http::Request<Bytes>, String> {
        let url = format!("{}{}", self.callback.url, path);
        let body = match key {
            Some(k) => host_api::seal_body(&crate::core_db::NativeEnv, k, path, body.as_bytes())
                .map_err(|e| answer(Kind::DispatchError, &e.message))?,
            None => body.into_bytes(),
        };
        http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.callback.token))
            .body(Bytes::from(body))
            .map_err(|e| answer(Kind::DispatchError, &format!("bad router URL: {e}")))
    }

    /// Hands `req` to the in-process router or POSTs it to the remote one.
    async fn send(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, String> {
        if self.callback.url == host_api::ROUTER_INTERNAL_URL {
            match &self.local {
                Some(router) => router.handle(req).await.map_err(|e| e.to_string()),
                None => Err("no router runs in this process".to_string()),
            }
        } else {
            http_post(req).await
        }
    }
}

/// The guest's answer from the router's response: its JSON body (opened under `key` when
/// the run's callbacks are sealed), or a `dispatch_error` naming the status.
fn read_answer(path: &str, key: Option<&[u8; 32]>, resp: &http::Response<Bytes>) -> String {
    let status = resp.status();
    let opened = match key {
        Some(k) if status.is_success() => {
            match host_api::open_body(k, &format!("{path}|reply"), resp.body()) {
                Ok(p) => Some(p),
                Err(e) => {
                    return answer(
                        Kind::DispatchError,
                        &format!("the router's answer did not open: {}", e.message),
                    )
                }
            }
        }
        _ => None,
    };
    let text = String::from_utf8_lossy(
        opened
            .as_deref()
            .map_or(resp.body().as_ref(), |p| p.as_slice()),
    )
    .into_owned();
    if status.is_success() && serde_json::from_str::<Value>(&text).is_ok() {
        text
    } else {
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(String::from))
            .unwrap_or_default();
        answer(
            Kind::DispatchError,
            &format!("the router answered HTTP {status} {detail}"),
        )
    }
}

/// One run's formula state: its router link, its deadline for host calls, its batches.
pub struct FormulaSession {
    link: RouterLink,
    deadline: Instant,
    batches: HashMap<String, Vec<Slot>>,
    next_batch: u64,
}

/// One invocation of a batch.
enum Slot {
    Pending(JoinHandle<String>),
    Done(String),
}

impl FormulaSession {
    /// A session whose host calls all end by `deadline`.
    pub fn new(link: RouterLink, deadline: Instant) -> FormulaSession {
        FormulaSession {
            link,
            deadline,
            batches: HashMap::new(),
            next_batch: 0,
        }
    }

    /// `invoke.call`.
    pub async fn call(&mut self, request: &str) -> String {
        if let Err(e) = parse_object(request) {
            return e;
        }
        self.link
            .post(host_api::INVOKE_PATH, request.to_string(), self.deadline)
            .await
    }

    /// `tools.call`.
    pub async fn tool(&mut self, request: &str) -> String {
        if let Err(e) = parse_object(request) {
            return e;
        }
        self.link
            .post(host_api::TOOLS_PATH, request.to_string(), self.deadline)
            .await
    }

    /// `invoke.call-batch`: every invocation starts now, in parallel.
    pub fn call_batch(&mut self, request: &str) -> String {
        let req = match parse_object(request) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let Some(list) = req
            .get("invocations")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
        else {
            return answer(
                Kind::InvalidRequest,
                "`invocations` must be a non-empty array of {reference, input, type}",
            );
        };
        if list.len() > MAX_BATCH {
            return answer(
                Kind::InvalidRequest,
                &format!(
                    "a batch holds at most {MAX_BATCH} invocations (got {})",
                    list.len()
                ),
            );
        }
        if self.batches.len() >= MAX_OPEN_BATCHES {
            return answer(
                Kind::InvalidRequest,
                &format!("at most {MAX_OPEN_BATCHES} batches may be open; close one first"),
            );
        }
        if list.iter().any(|inv| !inv.is_object()) {
            return answer(
                Kind::InvalidRequest,
                "each invocation must be an object {reference, input, type}",
            );
        }
        let slots = list
            .iter()
            .map(|inv| {
                let link = self.link.clone();
                let deadline = self.deadline;
                let body = inv.to_string();
                Slot::Pending(tokio::spawn(async move {
                    link.post(host_api::INVOKE_PATH, body, deadline).await
                }))
            })
            .collect();
        self.next_batch += 1;
        let handle = format!("batch-{}", self.next_batch);
        self.batches.insert(handle.clone(), slots);
        json!({ "batch": handle, "count": list.len() }).to_string()
    }

    /// `invoke.poll`: one invocation's state.
    pub fn poll(&mut self, request: &str) -> String {
        let (req, slots) = match self.batch(request) {
            Ok(found) => found,
            Err(e) => return e,
        };
        let count = slots.len();
        let Some(slot) = req
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| slots.get_mut(i as usize))
        else {
            return answer(
                Kind::InvalidIndex,
                &format!("`index` must be from 0 to {}", count.saturating_sub(1)),
            );
        };
        settle(slot);
        state(slot, None).to_string()
    }

    /// `invoke.poll-all`: every invocation's state, and whether all are done.
    pub fn poll_all(&mut self, request: &str) -> String {
        let slots = match self.batch(request) {
            Ok((_, slots)) => slots,
            Err(e) => return e,
        };
        let mut all_done = true;
        let results: Vec<Value> = slots
            .iter_mut()
            .enumerate()
            .map(|(i, slot)| {
                settle(slot);
                all_done &= matches!(slot, Slot::Done(_));
                state(slot, Some(i))
            })
            .collect();
        json!({ "results": results, "all_done": all_done }).to_string()
    }

    /// The request and the open batch its `batch` handle names, or the guest's error.
    fn batch(&mut self, request: &str) -> Result<(Value, &mut Vec<Slot>), String> {
        let req = parse_object(request)?;
        let slots = req
            .get("batch")
            .and_then(Value::as_str)
            .and_then(|h| self.batches.get_mut(h));
        match slots {
            Some(slots) => Ok((req, slots)),
            None => Err(answer(
                Kind::InvalidHandle,
                "no open batch with that handle",
            )),
        }
    }

    /// `invoke.close`: forgets a batch (idempotent). Children still running finish on their
    /// own, and the router cancels any still going when this run ends.
    pub fn close(&mut self, request: &str) -> String {
        if let Some(h) = serde_json::from_str::<Value>(request)
            .ok()
            .and_then(|v| v.get("batch").and_then(Value::as_str).map(String::from))
        {
            self.batches.remove(&h);
        }
        json!({ "ok": true }).to_string()
    }
}

/// Moves a finished task's answer into the slot.
fn settle(slot: &mut Slot) {
    if let Slot::Pending(task) = slot {
        if task.is_finished() {
            let answer = futures_now(task)
                .unwrap_or_else(|| answer(Kind::DispatchError, "the invocation task failed"));
            *slot = Slot::Done(answer);
        }
    }
}

/// The result of a finished task, without blocking.
fn futures_now(task: &mut JoinHandle<String>) -> Option<String> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match Pin::new(task).poll(&mut cx) {
        std::task::Poll::Ready(Ok(s)) => Some(s),
        _ => None,
    }
}

/// A slot as `poll` reports it: pending, completed with output, or error.
fn state(slot: &Slot, index: Option<usize>) -> Value {
    let mut v = match slot {
        Slot::Pending(_) => json!({ "status": "pending" }),
        Slot::Done(answer) => match serde_json::from_str::<Value>(answer) {
            Ok(a) if a.get("error").is_some() => json!({ "status": "error", "error": a["error"] }),
            Ok(a) => {
                json!({ "status": "completed", "output": a["output"], "execution_id": a["execution_id"] })
            }
            Err(_) => {
                json!({ "status": "error", "error": { "type": Kind::DispatchError.as_str(), "message": "the router's answer is not JSON" } })
            }
        },
    };
    if let Some(i) = index {
        v["index"] = json!(i);
    }
    v
}

fn parse_object(request: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(request) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(answer(
            Kind::InvalidRequest,
            "the request must be a JSON object",
        )),
        Err(e) => Err(answer(
            Kind::InvalidJson,
            &format!("the request is not JSON: {e}"),
        )),
    }
}

/// Most bytes read from a router's answer.
const MAX_ANSWER: usize = 16 << 20;

/// POSTs to a remote router over HTTP/1.1 (TLS for https), through the host's one client.
async fn http_post(req: http::Request<Bytes>) -> Result<http::Response<Bytes>, String> {
    let uri = req.uri().clone();
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("router URL {uri} must be http or https")),
    };
    let host = uri
        .host()
        .ok_or("router URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let (mut parts, body) = req.into_parts();
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    parts.headers.insert(
        http::header::HOST,
        http::HeaderValue::from_str(&authority).map_err(|e| e.to_string())?,
    );
    parts.uri = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let request = http::Request::from_parts(parts, Full::new(body));
    // The router's URL is the operator's, not a guest's: its name is resolved as usual.
    let exchange = client::send(Dial::Lookup(&host, port), &host, tls, request)
        .await
        .map_err(|e| match e {
            ClientError::Connect(e) => format!("connecting to {host}:{port}: {e}"),
            ClientError::ServerName(e) => format!("{host}: {e}"),
            ClientError::Tls(e) => format!("TLS with {host}: {e}"),
            ClientError::Handshake(e) | ClientError::Send(e) => e.to_string(),
        })?;
    exchange
        .collect(MAX_ANSWER)
        .await
        .map_err(|e| e.to_string())
}
