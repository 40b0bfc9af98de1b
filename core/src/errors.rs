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
    /// -32601 on a 2026-07-28 request: no such method (or one that revision removed),
    /// answered with HTTP 404.
    UnknownMethod,
    /// -32602 on a 2026-07-28 request: its `_meta` lacks the protocol version or the
    /// client capabilities, answered with HTTP 400.
    MetaInvalid,
    /// -32020: an `Mcp-*` header is missing or differs from the body (HTTP 400).
    HeaderMismatch,
    /// -32021: the request needs a client capability the client did not declare (HTTP 400).
    MissingClientCapability,
    /// -32022: the request's protocol version is not one we speak (HTTP 400).
    UnsupportedVersion,
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
            Code::UnknownMethod => -32601,
            Code::MetaInvalid => -32602,
            Code::HeaderMismatch => -32020,
            Code::MissingClientCapability => -32021,
            Code::UnsupportedVersion => -32022,
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
            Code::UnknownMethod => "method_not_found",
            Code::MetaInvalid => "invalid_params",
            Code::HeaderMismatch => "header_mismatch",
            Code::MissingClientCapability => "missing_client_capability",
            Code::UnsupportedVersion => "unsupported_protocol_version",
        }
    }

    /// The HTTP status that goes with the code when it ends the whole request.
    pub fn http_status(self) -> u16 {
        match self {
            Code::ParseError
            | Code::InvalidRequest
            | Code::InvalidProtocol
            | Code::MetaInvalid
            | Code::HeaderMismatch
            | Code::MissingClientCapability
            | Code::UnsupportedVersion => 400,
            Code::UnknownMethod => 404,
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
    /// A refusal of the router's own, written as `data.reason`.
    pub reason: Option<Reason>,
}

/// Why the router itself refused a run before any host saw it (`data.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The formula that asked for the child has ended.
    ParentEnded,
    /// Formulas nest deeper than the router allows.
    DepthExceeded,
    /// A formula cannot call back: the router's own URL is not set.
    NoRouterUrl,
    /// A catalyst has no host policy with `allowed_domains`.
    PolicyRequired,
}

impl Reason {
    /// The wire name in `data.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ParentEnded => "parent_ended",
            Reason::DepthExceeded => "depth_exceeded",
            Reason::NoRouterUrl => "no_router_url",
            Reason::PolicyRequired => "POLICY_REQUIRED",
        }
    }

    /// The `type` a formula's guest reads for it, when it has one of its own.
    pub fn guest_type(self) -> Option<&'static str> {
        match self {
            Reason::DepthExceeded => Some("depth_exceeded"),
            Reason::PolicyRequired => Some("policy_required"),
            Reason::ParentEnded | Reason::NoRouterUrl => None,
        }
    }
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
            reason: None,
        }
    }
    /// Marks the error as a refusal of the router's own.
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }
    /// `data.reason`: the router's own refusal, or the host's reason a run failed for.
    pub fn reason_str(&self) -> Option<&str> {
        self.reason.map(Reason::as_str).or_else(|| {
            self.data
                .as_ref()
                .and_then(|d| d.get("reason"))
                .and_then(Json::as_str)
        })
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
        if let (Some(r), Json::Object(d)) = (self.reason, &mut data) {
            d.insert("reason".into(), json!(r.as_str()));
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

impl Error {
    /// A failed child as a formula's guest sees it: a stable `type`, the message, and the
    /// run's id when one was recorded.
    pub fn to_guest_run(&self) -> Json {
        let mut err = json!({ "type": self.guest_run_type(), "message": self.message });
        if let Some(id) = self.data.as_ref().and_then(|d| d.get("execution_id")) {
            err["execution_id"] = id.clone();
        }
        if let Some(r) = self.reason_str() {
            err["reason"] = json!(r);
        }
        json!({ "error": err })
    }

    /// The `type` a formula's guest reads for a failed child: a refusal with a type of its
    /// own, or the code's.
    fn guest_run_type(&self) -> &'static str {
        self.reason
            .and_then(Reason::guest_type)
            .unwrap_or_else(|| self.code.guest_run_type())
    }

    /// A failed tool call as a formula's guest sees it: its `type`, message and code.
    pub fn to_guest_tool(&self) -> Json {
        json!({ "error": { "type": self.code.guest_tool_type(), "message": self.message, "code": self.code.number() } })
    }
}

/// Why a formula callback (`/v1/formula/invoke`, `/v1/formula/tools`) was not answered
/// with a result: the one place that decides its HTTP status and the guest's `type`.
#[derive(Clone, Debug)]
pub enum CallbackError {
    /// Callbacks are POST (405).
    NotPost,
    /// No, unknown or stale token, or a key no longer valid (401).
    AuthInvalid(String),
    /// A fault of the router's own before an answer could be made (500).
    Internal(String),
    /// The body of a sealed formula's callback is not sealed under its key (400).
    Unsealed(String),
    /// The request is not what the callback takes.
    InvalidRequest(String),
    /// The request is not JSON.
    InvalidJson(String),
    /// `type` names no component type.
    InvalidType(String),
    /// No MCP tool of that name and action.
    ToolNotFound(String),
    /// The tool is outside the formula's `allowed_tools` or its caller's scopes.
    ToolDenied(String),
    /// The child run failed.
    Run(Error),
    /// The tool failed.
    Tool(Error),
}

impl CallbackError {
    /// The HTTP status of the answer; 200 once the token is checked, the failure is then
    /// in the body.
    pub fn status(&self) -> u16 {
        match self {
            CallbackError::NotPost => 405,
            CallbackError::AuthInvalid(_) => 401,
            CallbackError::Internal(_) => 500,
            CallbackError::Unsealed(_) => 400,
            _ => 200,
        }
    }

    /// The `type` the guest reads.
    pub fn guest_type(&self) -> &'static str {
        match self {
            CallbackError::NotPost
            | CallbackError::Unsealed(_)
            | CallbackError::InvalidRequest(_) => "invalid_request",
            CallbackError::AuthInvalid(_) => "auth_invalid",
            CallbackError::Internal(_) => "dispatch_error",
            CallbackError::InvalidJson(_) => "invalid_json",
            CallbackError::InvalidType(_) => "invalid_type",
            CallbackError::ToolNotFound(_) => "tool_not_found",
            CallbackError::ToolDenied(_) => "tool_denied",
            CallbackError::Run(e) => e.guest_run_type(),
            CallbackError::Tool(e) => e.code.guest_tool_type(),
        }
    }

    /// The guest's answer: `{"error": {"type", "message", …}}`.
    pub fn to_guest(&self) -> Json {
        let message = match self {
            CallbackError::NotPost => "formula callbacks are POST",
            CallbackError::AuthInvalid(m)
            | CallbackError::Internal(m)
            | CallbackError::Unsealed(m)
            | CallbackError::InvalidRequest(m)
            | CallbackError::InvalidJson(m)
            | CallbackError::InvalidType(m)
            | CallbackError::ToolNotFound(m)
            | CallbackError::ToolDenied(m) => m,
            CallbackError::Run(e) => return e.to_guest_run(),
            CallbackError::Tool(e) => return e.to_guest_tool(),
        };
        json!({ "error": { "type": self.guest_type(), "message": message } })
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
