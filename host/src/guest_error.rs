//! The one map from what went wrong in a host call to the `type` a guest reads in
//! `{"error": {"type", "message"}}`: catalysts' `cyfr:http/*` calls and formulas'
//! `cyfr:formula/invoke` / `cyfr:mcp/tools` calls alike. The JSON shape is the router's
//! ([`cyfr_core::formulas::guest_error`]), so a formula cannot tell whether the host or the
//! router answered.
//!
//! The two worlds name some alike conditions differently, and guests (and tests) rely on the
//! names, so both are kept: a request that is not JSON is `http_error` for `fetch` but
//! `invalid_json` for `invoke`; an unreachable upstream is `http_error`, an unreachable router
//! `dispatch_error`. `timeout`, `rate_limited` and `invalid_handle` mean the same in both.

/// The `type` of a guest-visible error from a host call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Egress: the host (or scheme, port, user info, IP literal, rule) is not allowed.
    DomainBlocked,
    /// Egress: the method is not allowed.
    MethodBlocked,
    /// Egress: the name resolved only to addresses the policy refuses.
    PrivateIpBlocked,
    /// Egress: the execution used up its outbound request budget.
    RateLimited,
    /// Egress: the request body (or headers) is over the policy's limit.
    RequestTooLarge,
    /// Egress: the response body is over the policy's limit.
    ResponseTooLarge,
    /// Egress: the name did not resolve.
    DnsError,
    /// Either world: the request, stream or callback ran out of time.
    Timeout,
    /// Egress: anything else: a malformed request, a refused connection, a protocol error.
    HttpError,
    /// Egress: a fourth concurrent stream.
    StreamLimit,
    /// Either world: an unknown or closed stream or batch handle.
    InvalidHandle,
    /// Formula: the router could not be reached or answered with an error.
    DispatchError,
    /// Formula: the request is JSON but not what the call takes.
    InvalidRequest,
    /// Formula: the request is not JSON.
    InvalidJson,
    /// Formula: a batch index out of range.
    InvalidIndex,
}

impl Kind {
    /// Every kind, for tests and documentation.
    pub const ALL: [Kind; 15] = [
        Kind::DomainBlocked,
        Kind::MethodBlocked,
        Kind::PrivateIpBlocked,
        Kind::RateLimited,
        Kind::RequestTooLarge,
        Kind::ResponseTooLarge,
        Kind::DnsError,
        Kind::Timeout,
        Kind::HttpError,
        Kind::StreamLimit,
        Kind::InvalidHandle,
        Kind::DispatchError,
        Kind::InvalidRequest,
        Kind::InvalidJson,
        Kind::InvalidIndex,
    ];

    /// The wire name (also the `type` of an [`cyfr_core::host_api::EgressRefusal`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DomainBlocked => "domain_blocked",
            Kind::MethodBlocked => "method_blocked",
            Kind::PrivateIpBlocked => "private_ip_blocked",
            Kind::RateLimited => "rate_limited",
            Kind::RequestTooLarge => "request_too_large",
            Kind::ResponseTooLarge => "response_too_large",
            Kind::DnsError => "dns_error",
            Kind::Timeout => "timeout",
            Kind::HttpError => "http_error",
            Kind::StreamLimit => "stream_limit",
            Kind::InvalidHandle => "invalid_handle",
            Kind::DispatchError => "dispatch_error",
            Kind::InvalidRequest => "invalid_request",
            Kind::InvalidJson => "invalid_json",
            Kind::InvalidIndex => "invalid_index",
        }
    }
}

/// A refusal or failure of a host call: its kind and a message for the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestError {
    /// The error type.
    pub kind: Kind,
    /// A human message; never contains a secret.
    pub message: String,
}

impl GuestError {
    /// An error of `kind`.
    pub fn new(kind: Kind, message: impl Into<String>) -> GuestError {
        GuestError {
            kind,
            message: message.into(),
        }
    }

    /// The answer JSON a guest gets.
    pub fn to_json(&self) -> String {
        answer(self.kind, &self.message)
    }
}

/// The answer JSON for an error of `kind`: `{"error": {"type", "message"}}`.
pub fn answer(kind: Kind, message: &str) -> String {
    cyfr_core::formulas::guest_error(kind.as_str(), message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_wire_name_and_the_routers_shape() {
        let names: std::collections::BTreeSet<&str> =
            Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), Kind::ALL.len());
        let v: serde_json::Value =
            serde_json::from_str(&answer(Kind::DispatchError, "no \"router\"")).unwrap();
        assert_eq!(v["error"]["type"], "dispatch_error");
        assert_eq!(v["error"]["message"], "no \"router\"");
        assert_eq!(
            GuestError::new(Kind::Timeout, "late").to_json(),
            answer(Kind::Timeout, "late")
        );
    }
}
