//! Where runs go: the host, over HTTP or in-process; and the one outbound HTTP seam
//! (`Transport`, `OutboundRequest`) that host calls and identity-provider calls share.

use crate::host_api::{LoadedComponent, RunRequest, RunResponse};

/// Why the host could not do what was asked.
#[derive(Clone, Debug)]
pub enum DispatchError {
    /// The host has no artifact with this digest: upload it and ask again.
    ArtifactMissing,
    /// The host refused the request (bad directory, digest mismatch, ...).
    Refused {
        /// Stable reason.
        code: crate::host_api::HostErrorKind,
        /// Human message.
        message: String,
    },
    /// The host could not be reached or answered nonsense.
    Unreachable(String),
}

/// Runs components and reads component directories on a host.
#[allow(async_fn_in_trait)]
pub trait Dispatch {
    /// Runs a component; a failed run is `Ok` with `status: "failed"`.
    async fn run(&self, req: &RunRequest) -> Result<RunResponse, DispatchError>;
    /// Runs a component as [`Dispatch::run`] does, telling `events` each line its guest
    /// writes to stderr while it runs, and that it still runs (a tick about every second),
    /// so a streamed answer can pass progress on and notice a client that left. By default
    /// the same as `run`, with no events.
    async fn run_streamed(
        &self,
        req: &RunRequest,
        events: &impl RunEvents,
    ) -> Result<RunResponse, DispatchError> {
        let _ = events;
        self.run(req).await
    }
    /// [`Dispatch::run_again`], streamed as [`Dispatch::run_streamed`] is; by default the
    /// same as `run_again`, with no events.
    async fn run_again_streamed(
        &self,
        req: &RunRequest,
        events: &impl RunEvents,
    ) -> Result<RunResponse, DispatchError> {
        let _ = events;
        self.run_again(req).await
    }
    /// Runs again on the host the last `run` went to (after `put_artifact` there). By
    /// default the same as `run`.
    async fn run_again(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        self.run(req).await
    }
    /// Gives the host the last `run` went to an artifact's bytes (it verifies the digest).
    async fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), DispatchError>;
    /// Stops a run under way on whichever host has it; whether one did.
    async fn cancel(&self, execution_id: &str) -> Result<bool, DispatchError>;
    /// The log level the caller's session asked for (`logging/setLevel`), for a dispatcher
    /// that streams run logs (`stream::Streaming`); by default nothing to do with it.
    fn session_log_level(&self, level: &str) {
        let _ = level;
    }
    /// Reads `cyfr-manifest.json` and `{type}.wasm` from a directory on the host.
    async fn load_directory(&self, directory: &str) -> Result<LoadedComponent, DispatchError>;
    /// Sends one request to an identity provider (`cyfr login`'s device flow). The platform
    /// lets it reach only the configured providers' origins; by default nothing is sent.
    async fn fetch(&self, req: OutboundRequest) -> Result<Answer, SendError> {
        Err(SendError::NotSent(format!(
            "no outbound HTTP here to reach {}",
            req.url
        )))
    }
    /// Whether this runtime can answer with an event stream at all (its adapter wraps the
    /// dispatcher in `stream::Streaming`): what `server/discover` may promise.
    fn streams(&self) -> bool {
        false
    }
    /// Whether this request's answer is an open event stream that [`Dispatch::push`] writes
    /// to (`stream::Streaming` of a `subscriptions/listen`); by default it is not.
    fn can_push(&self) -> bool {
        false
    }
    /// Writes `msg` (a JSON-RPC notification; `None`: a keep-alive comment) to the open
    /// event stream; `false` once the client has gone, or when there is no stream.
    async fn push(&self, msg: Option<&serde_json::Value>) -> bool {
        let _ = msg;
        false
    }
    /// Waits about `ms` milliseconds (the platform's timer; core has none) between two polls
    /// of an open stream. By default it returns at once.
    async fn pause(&self, ms: u64) {
        let _ = ms;
    }
}

/// What a running component reports while it runs ([`Dispatch::run_streamed`]).
#[allow(async_fn_in_trait)]
pub trait RunEvents {
    /// One line the guest wrote to stderr (not yet redacted by the router), as it came.
    async fn line(&self, line: &str);
    /// The run is still going: sent about every second, so a closed stream is noticed.
    async fn tick(&self);
}

/// Takes bytes of a host's answer as they arrive ([`Transport::send_streamed`]).
#[allow(async_fn_in_trait)]
pub trait Chunks {
    /// The next bytes of a `200` answer's body.
    async fn chunk(&self, bytes: &[u8]);
}

/// The HTTP methods the router sends (to hosts, and to identity providers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`: an identity provider's discovery document and userinfo.
    Get,
    /// `POST`: runs, cancels, directory loads; device authorization and token requests.
    Post,
    /// `PUT`: artifact uploads.
    Put,
}

impl Method {
    /// The method as the wire spells it (and as the token's `req` binds it).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// One outbound request (to a host or an identity provider), complete: the transport adds nothing and reads nothing into it.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboundRequest {
    /// The method.
    pub method: Method,
    /// The full URL (`{host url}{path}`).
    pub url: String,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body bytes, exactly as they go on the wire.
    pub body: Vec<u8>,
}

impl OutboundRequest {
    /// The value of header `name`, if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The answer: its status and body.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why a send failed, as far as delivery goes: the one thing failover decides on.
#[derive(Clone, Debug, PartialEq)]
pub enum SendError {
    /// Nothing reached the host (connection refused, name not resolved, connect timed out,
    /// the platform denied the request): another host may take it.
    NotSent(String),
    /// The request may have reached the host (it failed while sending or answering): it
    /// may have started, so it is never sent again.
    Failed(String),
}

/// Sends one request to a host and waits for its answer.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Sends `req`; a host's error status is an `Ok` answer, only a failed exchange is `Err`.
    async fn send(&self, req: OutboundRequest) -> Result<Answer, SendError>;
    /// Sends `req`, handing a `200` answer's body to `chunks` as it arrives (the returned
    /// answer's body is then empty); any other status comes back whole. By default the
    /// body arrives in one piece once the exchange is over.
    async fn send_streamed(
        &self,
        req: OutboundRequest,
        chunks: &impl Chunks,
    ) -> Result<Answer, SendError> {
        let mut answer = self.send(req).await?;
        if answer.status == 200 {
            chunks.chunk(&std::mem::take(&mut answer.body)).await;
        }
        Ok(answer)
    }
}
