//! Every error a caller can see, and the one place that maps it to a JSON-RPC code and an
//! HTTP status.

use serde_json::{json, Value as Json};

/// The error codes of the CYFR integration guide, plus JSON-RPC's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// -32700: the body is not JSON.
    ParseError,
    /// -32600: not a JSON-RPC 2.0 request (also: batches).
    InvalidRequest,
    /// -32600 as well, for a body over the size limit: answered with HTTP 413.
    BodyTooLarge,
    /// -32601: no such method.
    MethodNotFound,
    /// -32602: the arguments do not fit the tool's schema.
    InvalidParams,
    /// -32603: a fault of ours.
    Internal,
    /// -32603 as well, for a fault of ours before any method ran (the schema could not be
    /// migrated, the session store could not be read): answered with HTTP 500.
    Unavailable,
    /// -33001: no authentication provided.
    AuthRequired,
    /// -33002: invalid API key or token.
    AuthInvalid,
    /// -33003: session or JWT expired.
    AuthExpired,
    /// -33004: scope does not cover the action, or IP not allowed.
    InsufficientPermissions,
    /// -33005: the key's rate limit is used up.
    RateLimited,
    /// -33100: the component failed.
    ExecutionFailed,
    /// -33101: the component exceeded its time limit.
    ExecutionTimeout,
    /// -33102: the component asked for a capability its policy does not grant.
    CapabilityDenied,
    /// -33200: the reference does not resolve.
    ComponentNotFound,
    /// -33201: the component or its manifest is invalid.
    ComponentInvalid,
    /// -33202: the registry (or the host holding artifacts) cannot be reached.
    RegistryUnavailable,
    /// -33301: a stateful request came without a session id.
    SessionRequired,
    /// -33302: the session is unknown or expired.
    SessionExpired,
    /// -33303: unsupported protocol version.
    InvalidProtocol,
}

impl Code {
    /// The numeric JSON-RPC error code.
    pub fn number(self) -> i64 {
        match self {
            Code::ParseError => -32700,
            Code::InvalidRequest | Code::BodyTooLarge => -32600,
            Code::MethodNotFound => -32601,
            Code::InvalidParams => -32602,
            Code::Internal | Code::Unavailable => -32603,
            Code::AuthRequired => -33001,
            Code::AuthInvalid => -33002,
            Code::AuthExpired => -33003,
            Code::InsufficientPermissions => -33004,
            Code::RateLimited => -33005,
            Code::ExecutionFailed => -33100,
            Code::ExecutionTimeout => -33101,
            Code::CapabilityDenied => -33102,
            Code::ComponentNotFound => -33200,
            Code::ComponentInvalid => -33201,
            Code::RegistryUnavailable => -33202,
            Code::SessionRequired => -33301,
            Code::SessionExpired => -33302,
            Code::InvalidProtocol => -33303,
        }
    }

    /// The guide's snake_case name for the code.
    pub fn name(self) -> &'static str {
        match self {
            Code::ParseError => "parse_error",
            Code::InvalidRequest | Code::BodyTooLarge => "invalid_request",
            Code::MethodNotFound => "method_not_found",
            Code::InvalidParams => "invalid_params",
            Code::Internal | Code::Unavailable => "internal_error",
            Code::AuthRequired => "auth_required",
            Code::AuthInvalid => "auth_invalid",
            Code::AuthExpired => "auth_expired",
            Code::InsufficientPermissions => "insufficient_permissions",
            Code::RateLimited => "rate_limited",
            Code::ExecutionFailed => "execution_failed",
            Code::ExecutionTimeout => "execution_timeout",
            Code::CapabilityDenied => "capability_denied",
            Code::ComponentNotFound => "component_not_found",
            Code::ComponentInvalid => "component_invalid",
            Code::RegistryUnavailable => "registry_unavailable",
            Code::SessionRequired => "session_required",
            Code::SessionExpired => "session_expired",
            Code::InvalidProtocol => "invalid_protocol",
        }
    }

    /// The HTTP status that goes with the code when it ends the whole request.
    pub fn http_status(self) -> u16 {
        match self {
            Code::ParseError | Code::InvalidRequest | Code::InvalidProtocol => 400,
            Code::BodyTooLarge => 413,
            Code::Unavailable => 500,
            Code::AuthRequired | Code::AuthInvalid | Code::AuthExpired => 401,
            Code::InsufficientPermissions => 403,
            Code::RateLimited => 429,
            Code::SessionExpired => 404,
            Code::SessionRequired => 400,
            // Errors inside a well-formed call are JSON-RPC answers, not HTTP failures.
            _ => 200,
        }
    }
}

impl Code {
    /// The `type` a formula's guest reads when a child it asked for (`invoke`) fails.
    pub fn guest_run_type(self) -> &'static str {
        match self {
            Code::ExecutionTimeout => "timeout",
            Code::InvalidParams => "invalid_request",
            Code::InsufficientPermissions => "access_denied",
            Code::RateLimited => "rate_limited",
            Code::ComponentNotFound => "component_not_found",
            Code::ComponentInvalid => "component_invalid",
            Code::CapabilityDenied => "capability_denied",
            _ => "execution_failed",
        }
    }

    /// The `type` a formula's guest reads when a tool it called (`tools`) fails.
    pub fn guest_tool_type(self) -> &'static str {
        match self {
            Code::InsufficientPermissions => "tool_denied",
            Code::InvalidParams => "invalid_request",
            _ => "dispatch_error",
        }
    }
}

/// An error with its code, a message for humans and optional structured data.
#[derive(Clone, Debug)]
pub struct Error {
    /// What kind of failure.
    pub code: Code,
    /// A message that says what to do; never contains a secret.
    pub message: String,
    /// Extra fields for the `data` member (merged with `{"name": code name}`).
    pub data: Option<Json>,
}

/// Result alias for the router's logic.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            data: None,
        }
    }
    /// Adds structured data.
    pub fn with_data(mut self, data: Json) -> Self {
        self.data = Some(data);
        self
    }
    /// The JSON-RPC `error` object.
    pub fn to_json(&self) -> Json {
        let mut data = json!({ "name": self.code.name() });
        if let (Some(Json::Object(extra)), Json::Object(d)) = (&self.data, &mut data) {
            for (k, v) in extra {
                d.insert(k.clone(), v.clone());
            }
        }
        json!({ "code": self.code.number(), "message": self.message, "data": data })
    }
    /// Shorthand for -32602.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Error::new(Code::InvalidParams, message)
    }
    /// Shorthand for -32603; the detail is logged by the caller, not returned.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(Code::Internal, message)
    }
    /// The same error as the end of the whole request before any method ran: a fault of
    /// ours ([`Code::Internal`]) becomes [`Code::Unavailable`] (HTTP 500).
    pub fn before_any_method(mut self) -> Self {
        if self.code == Code::Internal {
            self.code = Code::Unavailable;
        }
        self
    }
}

impl From<crate::db::DbError> for Error {
    fn from(e: crate::db::DbError) -> Self {
        Error::internal(e.to_string())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.name(),
            self.code.number(),
            self.message
        )
    }
}
