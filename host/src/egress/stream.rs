//! `cyfr:http/streaming`: responses handed out chunk by chunk under a handle. At most
//! [`MAX_STREAMS`] are open at once; all of an execution's streamed bytes count together
//! against `max_response_size`; each chunk is held back where a secret (in any spelling
//! redaction reads) or a UTF-8 sequence may still be arriving, so a secret split across
//! chunks is still cut out.

use std::collections::HashMap;

use base64::Engine as _;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::abi::{self, B64};
use super::client::Exchange;
use super::redact::Redactor;
use super::upstream::{content_length, RequestLine};
use super::{Denied, ErrorKind, Session, MAX_STREAMS};

/// One open stream.
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

/// The open streams of one execution and what they have read.
#[derive(Default)]
pub(crate) struct Streams {
    open: HashMap<String, OpenStream>,
    /// Bytes read by all streams together.
    streamed: u64,
    seq: u64,
}

impl Streams {
    /// A fresh handle: a sequence number and random bits, so a guest cannot guess another's.
    fn next_handle(&mut self) -> String {
        self.seq += 1;
        let mut random = [0u8; 6];
        let _ = getrandom::fill(&mut random);
        format!(
            "stream-{}-{}",
            self.seq,
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    }
}

fn no_stream(handle: &str) -> String {
    abi::error(&Denied::new(
        ErrorKind::InvalidHandle,
        format!("no open stream `{handle}`"),
    ))
}

impl Session {
    /// `cyfr:http/streaming.request`.
    pub async fn stream_open(&mut self, json_request: &str) -> String {
        let req = match abi::parse_request(json_request) {
            Ok(r) => r,
            Err(msg) => return self.fail_unparsed(Denied::new(ErrorKind::HttpError, msg)),
        };
        if self.streams.open.len() >= MAX_STREAMS {
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
        let max = self.gate.policy.max_response_bytes;
        let left = max.saturating_sub(self.streams.streamed);
        if let Some(len) = content_length(&ex) {
            if len > left {
                let d = Denied::new(
                    ErrorKind::ResponseTooLarge,
                    format!("the response is {len} bytes; {left} of the {max}-byte response budget are left"),
                );
                return self.fail(&req, d);
            }
        }
        let handle = self.streams.next_handle();
        let status = ex.response.status().as_u16();
        let headers = abi::headers(&self.redactor, ex.response.headers());
        self.streams.open.insert(
            handle.clone(),
            OpenStream {
                exchange: ex,
                deadline,
                base64: req.response_base64,
                pending: Vec::new(),
                finished: false,
            },
        );
        abi::stream_opened(&handle, status, headers)
    }

    /// `cyfr:http/streaming.read`.
    pub async fn stream_read(&mut self, handle: &str) -> String {
        let Some(stream) = self.streams.open.get_mut(handle) else {
            return no_stream(handle);
        };
        if stream.finished {
            let data = emit(&self.redactor, stream, true);
            return abi::stream_data(&data, data.is_empty());
        }
        match self.next_chunk(handle).await {
            Ok(answer) => answer,
            Err(failure) => {
                // A failed stream is closed and recorded like a refused request.
                let line = self.streams.open.remove(handle).and_then(|s| {
                    s.exchange
                        .response
                        .extensions()
                        .get::<RequestLine>()
                        .cloned()
                });
                let line = line.unwrap_or_default();
                self.fail_at(&line.method, &line.url, failure)
            }
        }
    }

    /// `cyfr:http/streaming.close`.
    pub fn stream_close(&mut self, handle: &str) -> String {
        match self.streams.open.remove(handle) {
            Some(_) => abi::stream_closed(),
            None => no_stream(handle),
        }
    }

    /// Reads frames of an open, unfinished stream until there is something to hand out or
    /// the body ends; a failure closes nothing yet (the caller does).
    async fn next_chunk(&mut self, handle: &str) -> Result<String, Denied> {
        let max = self.gate.policy.max_response_bytes;
        let stream = self
            .streams
            .open
            .get_mut(handle)
            .expect("the caller found the stream");
        loop {
            let frame = tokio::time::timeout_at(
                stream.deadline,
                stream.exchange.response.body_mut().frame(),
            )
            .await;
            match frame {
                Err(_) => {
                    return Err(Denied::new(
                        ErrorKind::Timeout,
                        format!("stream `{handle}` ran past its time limit and was closed"),
                    ))
                }
                Ok(None) => {
                    stream.finished = true;
                    let data = emit(&self.redactor, stream, true);
                    return Ok(abi::stream_data(&data, data.is_empty()));
                }
                Ok(Some(Err(e))) => {
                    return Err(Denied::new(
                        ErrorKind::HttpError,
                        format!("reading stream `{handle}`: {e}"),
                    ))
                }
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    self.streams.streamed += data.len() as u64;
                    if self.streams.streamed > max {
                        return Err(Denied::new(
                            ErrorKind::ResponseTooLarge,
                            format!(
                                "streamed responses passed the {max}-byte limit (max_response_size); the stream was closed"
                            ),
                        ));
                    }
                    stream.pending.extend_from_slice(&data);
                    let out = emit(&self.redactor, stream, false);
                    if !out.is_empty() {
                        return Ok(abi::stream_data(&out, false));
                    }
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
pub(crate) fn emit_pending(
    redactor: &Redactor,
    pending: &mut Vec<u8>,
    base64: bool,
    all: bool,
) -> String {
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
