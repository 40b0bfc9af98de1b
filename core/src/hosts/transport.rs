//! What the router adapter supplies: "send these bytes to that URL", and whether a failed
//! send could have reached the host.

/// The HTTP methods the router sends hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `POST`: runs, cancels, directory loads.
    Post,
    /// `PUT`: artifact uploads.
    Put,
}

impl Method {
    /// The method as the wire spells it (and as the token's `req` binds it).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// One request to a host, complete: the transport adds nothing and reads nothing into it.
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

/// The host's answer: its status and body.
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
}
