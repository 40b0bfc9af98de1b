//! Dispatch to hosts over a network: which host takes a run (round robin from a random
//! start), failover only when a request is known not to have been delivered, secrets sealed
//! to a remote host's key, the token a remote host checks, and what a host's error answer
//! means. The platform supplies only a [`Transport`] ("send these bytes to that URL").

mod seal;
mod token;

#[cfg(test)]
mod tests;

pub use crate::dispatch::{Answer, Method, OutboundRequest, SendError, Transport};
pub use seal::{run_body, seal, EnvRng};
pub use token::{claims, sign, TOKEN_TTL_S};

use crate::config::Config;
use crate::dispatch::{Chunks, Dispatch, DispatchError, RunEvents};
use crate::env::{random_token, Env};
use crate::host_api::{self, HostTarget, LoadRequest, LoadedComponent, RunRequest, RunResponse};
use std::cell::{Cell, RefCell};

/// A host runs can go to.
#[derive(Clone, Debug)]
struct Host {
    url: String,
    /// Remote hosts get sealed secrets and a signed token; the in-process host neither.
    remote: Option<HostTarget>,
}

/// Runs go to the hosts' HTTP API: spread over the configured hosts, with another host
/// tried when one could not be reached. A run that may have reached a host is never sent
/// again (one refused for a missing artifact goes to that same host after the upload).
pub struct HostPool<T, E> {
    hosts: Vec<Host>,
    token_key: Option<String>,
    /// The host the current run went to, so its artifact upload and retry go there too.
    last: Cell<usize>,
    transport: T,
    env: E,
}

impl<T: Transport, E: Env> HostPool<T, E> {
    /// The configured remote hosts, or the in-process `host_url` when there are none; the
    /// first run goes to a random one of them.
    pub fn new(config: &Config, transport: T, env: E) -> Self {
        let hosts: Vec<Host> = if config.hosts.is_empty() {
            vec![Host {
                url: config.host_url.clone(),
                remote: None,
            }]
        } else {
            config
                .hosts
                .iter()
                .map(|h| Host {
                    url: h.url.clone(),
                    remote: Some(h.clone()),
                })
                .collect()
        };
        let mut start = [0u8; 1];
        env.fill_random(&mut start);
        HostPool {
            last: Cell::new(start[0] as usize % hosts.len()),
            hosts,
            token_key: config.host_token_key.clone(),
            transport,
            env,
        }
    }

    /// The transport, for inspection.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The complete request for host `idx`: a signed token when it is remote.
    fn request(
        &self,
        idx: usize,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        jti: &str,
    ) -> OutboundRequest {
        let host = &self.hosts[idx];
        let mut headers = vec![("content-type", content_type.to_string())];
        if let (Some(target), Some(key)) = (&host.remote, &self.token_key) {
            let now_s = self.env.now_ms() / 1000;
            let claims = claims(target, jti, method.as_str(), path, &body, now_s);
            headers.push((
                "authorization",
                format!("Bearer {}", sign(&claims, key.as_bytes())),
            ));
        }
        OutboundRequest {
            method,
            url: format!("{}{}", host.url, path),
            headers,
            body,
        }
    }

    /// Sends to one host.
    async fn send(
        &self,
        idx: usize,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        jti: &str,
    ) -> Result<Answer, SendError> {
        self.send_with(
            idx,
            method,
            path,
            body,
            content_type,
            jti,
            None::<&NoChunks>,
        )
        .await
    }

    /// Sends to one host; with `chunks`, asks for a streamed run answer and hands it over
    /// as it arrives.
    #[allow(clippy::too_many_arguments)]
    async fn send_with(
        &self,
        idx: usize,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        jti: &str,
        chunks: Option<&impl Chunks>,
    ) -> Result<Answer, SendError> {
        let mut req = self.request(idx, method, path, body, content_type, jti);
        match chunks {
            Some(c) => {
                req.headers.push(("accept", host_api::RUN_STREAM.into()));
                self.transport.send_streamed(req, c).await
            }
            None => self.transport.send(req).await,
        }
    }

    /// Tries the hosts in turn from the one after the last, until one takes the request;
    /// the next is tried only when nothing reached the previous one.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: impl Fn(usize) -> Result<Vec<u8>, DispatchError>,
        content_type: &str,
        jti: &str,
    ) -> Result<Answer, DispatchError> {
        self.call_with(method, path, body, content_type, jti, None::<&NoChunks>)
            .await
    }

    /// [`HostPool::call`], the answer handed to `chunks` as it arrives when given.
    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: impl Fn(usize) -> Result<Vec<u8>, DispatchError>,
        content_type: &str,
        jti: &str,
        chunks: Option<&impl Chunks>,
    ) -> Result<Answer, DispatchError> {
        let n = self.hosts.len();
        let first = (self.last.get() + 1) % n;
        for i in 0..n {
            let idx = (first + i) % n;
            match self
                .send_with(idx, method, path, body(idx)?, content_type, jti, chunks)
                .await
            {
                Ok(answer) => {
                    self.last.set(idx);
                    return Ok(answer);
                }
                Err(SendError::Failed(text)) => return Err(DispatchError::Unreachable(text)),
                Err(SendError::NotSent(_)) => continue,
            }
        }
        Err(DispatchError::Unreachable(format!(
            "none of the {n} host(s) could be reached"
        )))
    }

    /// Sends to the host the last run went to; `gone` describes a send that reached nothing.
    async fn send_to_last(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        jti: &str,
        gone: &str,
    ) -> Result<Answer, DispatchError> {
        self.send(self.last.get(), method, path, body, content_type, jti)
            .await
            .map_err(|e| match e {
                SendError::Failed(text) => DispatchError::Unreachable(text),
                SendError::NotSent(_) => DispatchError::Unreachable(gone.into()),
            })
    }

    /// The run sent again to the host the last run went to; with `lines`, a `200`
    /// answer streamed into them.
    async fn again<R: RunEvents>(
        &self,
        req: &RunRequest,
        lines: Option<&RunLines<'_, R>>,
    ) -> Result<Answer, DispatchError> {
        let body = self.run_body(self.last.get(), req)?;
        // A fresh token id: the first attempt's was used, and this run never started.
        let jti = format!("{}-retry", req.execution_id);
        self.send_with(
            self.last.get(),
            Method::Post,
            host_api::RUN_PATH,
            body,
            "application/json",
            &jti,
            lines,
        )
        .await
        .map_err(|e| match e {
            SendError::Failed(text) => DispatchError::Unreachable(text),
            SendError::NotSent(_) => DispatchError::Unreachable("the host went away".into()),
        })
    }

    fn nonce(&self) -> String {
        random_token(&self.env, 16)
    }

    fn run_body(&self, idx: usize, req: &RunRequest) -> Result<Vec<u8>, DispatchError> {
        run_body(&self.env, self.hosts[idx].remote.as_ref(), req)
    }
}

/// The chunks of nothing: the unstreamed sends.
struct NoChunks;

impl Chunks for NoChunks {
    async fn chunk(&self, _: &[u8]) {}
}

/// A streamed run answer read line by line: logs and ticks go to the run's events as they
/// arrive; the last `done` (or `error`) line is the answer.
struct RunLines<'a, R> {
    events: &'a R,
    /// The bytes of a line not yet ended.
    partial: RefCell<Vec<u8>>,
    end: RefCell<Option<Result<RunResponse, DispatchError>>>,
}

/// Longest line of a streamed answer kept whole (a `done` line carries the logs).
const MAX_STREAM_LINE: usize = 16 << 20;

/// The events of an unstreamed send: none.
struct NoEvents;

impl RunEvents for NoEvents {
    async fn line(&self, _: &str) {}
    async fn tick(&self) {}
}

impl<'a, R: RunEvents> RunLines<'a, R> {
    fn new(events: &'a R) -> Self {
        RunLines {
            events,
            partial: RefCell::new(Vec::new()),
            end: RefCell::new(None),
        }
    }
}

impl<R: RunEvents> RunLines<'_, R> {
    async fn line(&self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return;
        }
        match serde_json::from_slice::<host_api::RunEvent>(line) {
            Ok(host_api::RunEvent::Log(text)) => self.events.line(&text).await,
            Ok(host_api::RunEvent::Tick(_)) => self.events.tick().await,
            Ok(host_api::RunEvent::Done(resp)) => *self.end.borrow_mut() = Some(Ok(resp)),
            Ok(host_api::RunEvent::Error(e)) => {
                *self.end.borrow_mut() = Some(Err(host_error(
                    500,
                    &serde_json::to_vec(&e).unwrap_or_default(),
                )))
            }
            Err(e) => {
                // A host that does not stream answers one `RunResponse`, as before.
                *self.end.borrow_mut() =
                    Some(serde_json::from_slice::<RunResponse>(line).map_err(|_| {
                        DispatchError::Unreachable(format!(
                            "bad streamed run response from host: {e}"
                        ))
                    }))
            }
        }
    }

    /// The answer, once the stream has ended.
    async fn finish(self) -> Result<RunResponse, DispatchError> {
        let rest = std::mem::take(&mut *self.partial.borrow_mut());
        self.line(&rest).await;
        self.end.into_inner().unwrap_or_else(|| {
            Err(DispatchError::Unreachable(
                "the host's streamed run response ended without its result".into(),
            ))
        })
    }
}

impl<R: RunEvents> Chunks for RunLines<'_, R> {
    async fn chunk(&self, bytes: &[u8]) {
        self.partial.borrow_mut().extend_from_slice(bytes);
        loop {
            // Take one whole line out before awaiting: no borrow is held across the await.
            let line = {
                let mut partial = self.partial.borrow_mut();
                match partial.iter().position(|b| *b == b'\n') {
                    Some(at) => {
                        let rest = partial.split_off(at + 1);
                        std::mem::replace(&mut *partial, rest)
                    }
                    None => {
                        if partial.len() > MAX_STREAM_LINE {
                            partial.clear();
                            *self.end.borrow_mut() = Some(Err(DispatchError::Unreachable(
                                "a streamed run response line is too long".into(),
                            )));
                        }
                        return;
                    }
                }
            };
            self.line(&line[..line.len() - 1]).await;
        }
    }
}

/// What a host's non-success answer means: its `HostError` code, or an unreachable host
/// when the body is not one.
pub fn host_error(status: u16, body: &[u8]) -> DispatchError {
    match serde_json::from_slice::<host_api::HostError>(body) {
        Ok(e) if e.code == host_api::HostErrorKind::ArtifactMissing => {
            DispatchError::ArtifactMissing
        }
        Ok(e) => DispatchError::Refused {
            code: e.code,
            message: e.message,
        },
        Err(_) => DispatchError::Unreachable(format!("host answered HTTP {status}")),
    }
}

/// A run's answer: the host's `RunResponse` on 200, its error otherwise.
fn run_response(answer: Answer) -> Result<RunResponse, DispatchError> {
    if answer.status != 200 {
        return Err(host_error(answer.status, &answer.body));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| DispatchError::Unreachable(format!("bad run response from host: {e}")))
}

impl<T: Transport, E: Env> Dispatch for HostPool<T, E> {
    /// Provider requests go out as they are, through the same transport (the platform
    /// decides which origins it may reach).
    async fn fetch(&self, req: OutboundRequest) -> Result<Answer, SendError> {
        self.transport.send(req).await
    }
    async fn run(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        let answer = self
            .call(
                Method::Post,
                host_api::RUN_PATH,
                |idx| self.run_body(idx, req),
                "application/json",
                &req.execution_id,
            )
            .await?;
        run_response(answer)
    }

    async fn run_streamed(
        &self,
        req: &RunRequest,
        events: &impl RunEvents,
    ) -> Result<RunResponse, DispatchError> {
        let lines = RunLines::new(events);
        let answer = self
            .call_with(
                Method::Post,
                host_api::RUN_PATH,
                |idx| self.run_body(idx, req),
                "application/json",
                &req.execution_id,
                Some(&lines),
            )
            .await?;
        if answer.status != 200 {
            return Err(host_error(answer.status, &answer.body));
        }
        lines.finish().await
    }

    async fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), DispatchError> {
        // To the host that just said it lacks the artifact.
        let path = format!("{}{}", host_api::ARTIFACT_PATH, digest);
        let answer = self
            .send_to_last(
                Method::Put,
                &path,
                bytes.to_vec(),
                "application/wasm",
                &self.nonce(),
                "the host went away during the upload",
            )
            .await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(host_error(answer.status, &answer.body))
        }
    }

    async fn run_again(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        run_response(self.again(req, None::<&RunLines<'_, NoEvents>>).await?)
    }

    async fn run_again_streamed(
        &self,
        req: &RunRequest,
        events: &impl RunEvents,
    ) -> Result<RunResponse, DispatchError> {
        let lines = RunLines::new(events);
        let answer = self.again(req, Some(&lines)).await?;
        if answer.status != 200 {
            return Err(host_error(answer.status, &answer.body));
        }
        lines.finish().await
    }

    async fn cancel(&self, execution_id: &str) -> Result<bool, DispatchError> {
        // The router does not note which host took a run: ask each (there are few).
        let path = format!("{}/{}/cancel", host_api::RUN_PATH, execution_id);
        let mut found = false;
        for idx in 0..self.hosts.len() {
            let sent = self
                .send(
                    idx,
                    Method::Post,
                    &path,
                    Vec::new(),
                    "application/json",
                    &self.nonce(),
                )
                .await;
            if let Ok(Answer { status: 200, body }) = sent {
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
        let answer = self
            .call(
                Method::Post,
                host_api::LOAD_PATH,
                |_| Ok(body.clone()),
                "application/json",
                &self.nonce(),
            )
            .await?;
        if answer.status != 200 {
            return Err(host_error(answer.status, &answer.body));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| DispatchError::Unreachable(format!("bad load response from host: {e}")))
    }
}
