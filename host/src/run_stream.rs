//! `POST /v1/executions` answered as a stream (`accept: application/x-ndjson`): the run's
//! stderr lines as they are written, a tick every second, then its answer — one
//! [`RunEvent`] per line. The router turns them into a streamed `tools/call` answer
//! (`cyfr_core::stream`) and notices a client that left at the next line or tick.

use crate::service::HostApi;
use crate::spin_runner::StreamedBody;
use bytes::Bytes;
use cyfr_core::host_api::{self, HostError, HostErrorKind, RunEvent, RunRequest};
use cyfr_core::secrets::mask::Forms;
use http_body_util::BodyExt;
use std::time::Duration;

/// How often a streamed run says it still runs.
const TICK: Duration = Duration::from_secs(1);

/// Longest stderr line streamed whole; a longer one is cut there.
const MAX_LINE: usize = 8 * 1024;

impl HostApi {
    /// Answers one host API request, streaming a run when the router asked for it (every
    /// other request as [`HostApi::respond`] does).
    pub async fn respond_streaming(
        &self,
        req: http::Request<Bytes>,
    ) -> http::Response<StreamedBody> {
        let streamed = req.method() == http::Method::POST
            && req.uri().path() == host_api::RUN_PATH
            && req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(host_api::RUN_STREAM));
        let run = streamed
            .then(|| serde_json::from_slice::<RunRequest>(req.body()).ok())
            .flatten();
        match run {
            Some(run) => self.run_streamed(run).await,
            None => {
                let resp = self.respond(req).await;
                resp.map(|b| {
                    http_body_util::Full::new(b)
                        .map_err(|never| match never {})
                        .boxed_unsync()
                })
            }
        }
    }

    /// The run, streamed. A run refused before it starts (no artifact, wrong world) gets
    /// its plain error answer, so the router uploads and retries as it would.
    pub(crate) async fn run_streamed(&self, run: RunRequest) -> http::Response<StreamedBody> {
        if !self.executor().has_artifact(&run.digest) {
            let e = HostError {
                code: HostErrorKind::ArtifactMissing,
                message: format!("no artifact {}", run.digest),
            };
            return plain(e.code.http_status(), &e);
        }
        // Each line is redacted of the run's secrets and opened values here, as its logs are.
        let opened = crate::service::opened_values(&run.redact);
        let forms = Forms::new(
            run.secrets
                .values()
                .map(|v| v.as_bytes())
                .chain(opened.iter().map(|v| v.as_slice())),
        );
        let (tap, mut stderr) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let (mut body, rx) = lines(16);
        let api = self.clone();
        tokio::spawn(async move {
            let run_id = run.execution_id.clone();
            let done = api.execute(run, Some(tap));
            let mut done = std::pin::pin!(done);
            let mut partial: Vec<u8> = Vec::new();
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
            let mut seconds = 0u64;
            let mut gone = false;
            let mut cancelled = false;
            let end = loop {
                tokio::select! {
                    r = &mut done => break r,
                    Some(bytes) = stderr.recv() => {
                        partial.extend_from_slice(&bytes);
                        while let Some(at) = partial.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = partial.drain(..=at).collect();
                            gone |= !send(&mut body, &forms, RunEvent::Log(text(&line[..at]))).await;
                        }
                        if partial.len() > MAX_LINE {
                            let line = std::mem::take(&mut partial);
                            gone |= !send(&mut body, &forms, RunEvent::Log(text(&line))).await;
                        }
                    }
                    _ = ticks.tick() => {
                        seconds += 1;
                        gone |= !send(&mut body, &forms, RunEvent::Tick(seconds)).await;
                    }
                }
                if gone && !cancelled {
                    cancelled = true;
                    // The router went away: nobody will record an answer. Stop the run.
                    api.executor().cancel(&run_id);
                }
            };
            // What the guest wrote last, then the answer.
            while let Ok(bytes) = stderr.try_recv() {
                partial.extend_from_slice(&bytes);
            }
            for line in partial.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                send(&mut body, &forms, RunEvent::Log(text(line))).await;
            }
            let last = match end {
                Ok(resp) => RunEvent::Done(resp),
                Err(e) => RunEvent::Error(e),
            };
            send(&mut body, &forms, last).await;
        });
        http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, host_api::RUN_STREAM)
            .body(rx.boxed_unsync())
            .expect("a valid response")
    }
}

/// A line's text (lossy UTF-8, without a trailing `\r`).
fn text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]).into_owned()
}

/// Writes one event line (a log line redacted); whether the router still reads.
async fn send(body: &mut tokio::sync::mpsc::Sender<Bytes>, forms: &Forms, event: RunEvent) -> bool {
    let event = match event {
        RunEvent::Log(line) => RunEvent::Log(forms.redact(&line)),
        other => other,
    };
    let mut line = serde_json::to_vec(&event).unwrap_or_default();
    line.push(b'\n');
    body.send(Bytes::from(line)).await.is_ok()
}

/// The lines of a streamed answer, as they are sent. Its end comes only after every line
/// sent before the writer went: tokio's channel queues its close behind them.
/// (http-body-util's `Channel` does not: it looks for a frame, then for the writer's end, and
/// a writer that sent its last line and ended between those two looks lost that line.)
struct Lines(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Lines {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A writer of at most `capacity` unread lines, and the body that reads them.
fn lines(capacity: usize) -> (tokio::sync::mpsc::Sender<Bytes>, Lines) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (tx, Lines(rx))
}

/// A whole JSON answer as a streamed body.
fn plain<T: serde::Serialize>(status: u16, v: &T) -> http::Response<StreamedBody> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(
            http_body_util::Full::new(Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body as _;

    /// The answer is the last line, sent just before the writer ends: a reader on another
    /// thread must get it every time. (http-body-util's channel could report the end first
    /// when the writer sent and ended between its two polls: about 1 run in 10,000 lost its
    /// answer, -33202 "ended without its result".) The reader spins on `poll_frame` to pass
    /// through that window as often as it can.
    #[test]
    fn the_last_line_is_never_lost_when_the_writer_ends() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for i in 0..20_000 {
            let (body, mut rx) = lines(16);
            rt.spawn(async move {
                let _ = body.send(Bytes::from_static(b"done\n")).await;
            });
            let got = loop {
                match std::pin::Pin::new(&mut rx).poll_frame(&mut cx) {
                    std::task::Poll::Pending => std::hint::spin_loop(),
                    std::task::Poll::Ready(f) => break f,
                }
            };
            let data = got.map(|f| f.unwrap().into_data().unwrap());
            assert_eq!(
                data.as_deref(),
                Some(&b"done\n"[..]),
                "lost at iteration {i}"
            );
        }
    }
}
