//! The guest's stdout and stderr: in-memory sinks that keep the first bytes and drop the rest.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::lock;

/// Cap on each of the captured stdout and stderr buffers; the excess is dropped.
pub(crate) const LOG_CAP: usize = 1024 * 1024;

/// An in-memory stdout/stderr sink that keeps the first `cap` bytes and silently drops the
/// rest. (wasmtime-wasi's `MemoryOutputPipe` traps the guest once full, which would turn a
/// chatty but correct guest into a failure.)
#[derive(Clone)]
pub(crate) struct CappedPipe {
    buf: Arc<Mutex<CappedBuf>>,
    /// Where the kept bytes also go as they are written (a streamed run's stderr).
    tap: Option<super::StderrTap>,
}

struct CappedBuf {
    data: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize) -> Self {
        CappedPipe {
            buf: Arc::new(Mutex::new(CappedBuf {
                data: Vec::new(),
                cap,
                dropped: 0,
            })),
            tap: None,
        }
    }

    /// The same pipe, also sending what it keeps to `tap` as it is written.
    pub(crate) fn tapped(mut self, tap: Option<super::StderrTap>) -> Self {
        self.tap = tap;
        self
    }

    pub(crate) fn push(&self, bytes: &[u8]) {
        let mut buf = lock(&self.buf);
        let room = buf.cap.saturating_sub(buf.data.len());
        let take = room.min(bytes.len());
        buf.data.extend_from_slice(&bytes[..take]);
        buf.dropped += bytes.len() - take;
        // Only what is kept: a streamed run's logs are bounded by the same cap.
        if let (Some(tap), true) = (&self.tap, take > 0) {
            let _ = tap.send(bytes::Bytes::copy_from_slice(&bytes[..take]));
        }
    }

    pub(crate) fn text(&self) -> String {
        let buf = lock(&self.buf);
        let mut text = String::from_utf8_lossy(&buf.data).into_owned();
        if buf.dropped > 0 {
            text.push_str(&format!("\n[... {} more bytes dropped]", buf.dropped));
        }
        text
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024) // always writable; bytes past the cap are dropped, not refused
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
