//! The wire format between router and host (`POST /v1/executions` and friends). One
//! schema, used by the router's dispatcher and by the host's server.

use serde::{Deserialize, Serialize};

/// Path of the run endpoint.
pub const RUN_PATH: &str = "/v1/executions";
/// Path prefix of the artifact upload endpoint (`PUT /v1/artifacts/sha256:…`).
pub const ARTIFACT_PATH: &str = "/v1/artifacts/";
/// Path of the endpoint that reads a component directory on the host.
pub const LOAD_PATH: &str = "/v1/components/load";

/// Path on the router where a formula's host runs a child (`cyfr:formula/invoke`).
pub const INVOKE_PATH: &str = "/v1/formula/invoke";
/// Path on the router where a formula's host calls an MCP tool (`cyfr:mcp/tools`).
pub const TOOLS_PATH: &str = "/v1/formula/tools";
/// The router as the in-process host reaches it (`cyfr up`): no socket, no DNS.
pub const ROUTER_INTERNAL_URL: &str = "http://router.cyfr.internal";

/// How a formula's host reaches back into the router for children and tools.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Callback {
    /// The router's base URL ([`ROUTER_INTERNAL_URL`] in-process).
    pub url: String,
    /// Bearer token naming the formula's run; the router keeps only its hash, and it stops
    /// working when the run ends. The guest never sees it.
    pub token: String,
    /// When the formula's input holds opened `encrypted_secrets`: a 32-byte AES-GCM key
    /// (base64) that seals every callback body both ways ([`seal_body`]), so a child's input
    /// never crosses a network in clear. The router keeps it wrapped by its master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `plain` sealed under a callback `key` for `path` (the request, or `path` + `|reply` for
/// the answer) as the JSON body `{"sealed": "<base64 nonce‖ciphertext>"}`.
pub fn seal_body(
    env: &impl crate::env::Env,
    key: &[u8; 32],
    path: &str,
    plain: &[u8],
) -> crate::errors::Result<Vec<u8>> {
    use base64::Engine;
    let sealed = crate::kms::seal(env, key, plain, format!("cyfr-callback|{path}").as_bytes())?;
    Ok(
        serde_json::json!({ "sealed": base64::engine::general_purpose::STANDARD.encode(sealed) })
            .to_string()
            .into_bytes(),
    )
}

/// Opens a body made by [`seal_body`] with the same key and path.
pub fn open_body(
    key: &[u8; 32],
    path: &str,
    body: &[u8],
) -> crate::errors::Result<zeroize::Zeroizing<Vec<u8>>> {
    use base64::Engine;
    let bad = || {
        crate::errors::Error::invalid_params(
            "this formula's callbacks must be sealed: {\"sealed\": \"<base64>\"}",
        )
    };
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let b64 = v
        .get("sealed")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(bad)?;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    crate::kms::open(key, &sealed, format!("cyfr-callback|{path}").as_bytes())
}

/// Decodes a callback's base64 `key`.
pub fn callback_key(b64: &str) -> Option<zeroize::Zeroizing<[u8; 32]>> {
    use base64::Engine;
    let bytes =
        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(b64).ok()?);
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    (bytes.len() == 32).then(|| key.copy_from_slice(&bytes))?;
    Some(key)
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("url", &self.url)
            .field("token", &"[REDACTED]")
            .field("key", &self.key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// Limits a run is held to; the host enforces every one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Wall-clock limit.
    pub timeout_ms: u64,
    /// Linear memory cap.
    pub max_memory_bytes: u64,
    /// Input size cap.
    pub max_input_bytes: u64,
    /// Output size cap.
    pub max_output_bytes: u64,
}

/// Egress policy a catalyst's outbound HTTP is held to, checked by the host on every
/// request and every redirect hop.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct Egress {
    /// Exact hosts and `*.example.com` wildcards (never the apex); empty denies all.
    pub allowed_domains: Vec<String>,
    /// Upper-case HTTP methods.
    pub allowed_methods: Vec<String>,
    /// Optional finer rules `METHOD host/path-prefix` (e.g. `POST api.anthropic.com/v1/messages`);
    /// when non-empty, a request must match one.
    #[serde(default)]
    pub rules: Vec<String>,
    /// CIDRs of private/loopback/link-local addresses that may be reached anyway.
    #[serde(default)]
    pub allowed_private_ips: Vec<String>,
    /// Largest outbound request body.
    pub max_request_bytes: u64,
    /// Largest response body (cumulative across streams).
    pub max_response_bytes: u64,
    /// Most outbound requests one execution may make.
    pub max_requests: u64,
}

/// Run a component.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRequest {
    /// `exec_<uuid7>`.
    pub execution_id: String,
    /// `sha256:…` of the artifact.
    pub digest: String,
    /// `reagent`, `catalyst` or `formula`.
    pub component_type: String,
    /// JSON text handed to the component.
    pub input: String,
    /// The limits to enforce.
    pub limits: Limits,
    /// Who the run is for (the key's budget id, shared by its rotations and derived keys; a formula's children carry their formula's caller):
    /// the host gives each caller only a share of its slots. Empty from an older router, and
    /// then all such runs share one caller's share.
    #[serde(default)]
    pub caller: String,
    /// Canonical reference (for messages such as `NAME not granted to REF`).
    #[serde(default)]
    pub reference: String,
    /// Secrets granted to this component for this caller, by name. Only the host sees them;
    /// the guest reads them through `cyfr:secrets/read` or has them injected as
    /// `{{secret:NAME}}` into requests that passed egress policy.
    #[serde(default)]
    pub secrets: std::collections::BTreeMap<String, String>,
    /// Egress policy for catalysts (`None`: no outbound HTTP at all).
    #[serde(default)]
    pub egress: Option<Egress>,
    /// `secrets` sealed to the host's X25519 public key (libsodium sealed box of the JSON
    /// map, base64), used instead of `secrets` whenever the host is across a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_secrets: Option<String>,
    /// For formulas: where and how the host calls back for `invoke` and `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Callback>,
    /// `callback` sealed to the host's key (like `sealed_secrets`), used instead of it
    /// whenever the host is across a network: its token acts for the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_callback: Option<String>,
    /// The router's note that `input` holds values opened from `encrypted_secrets`: a
    /// dispatcher sends it only sealed (as `sealed_input`). Never on the wire.
    #[serde(skip)]
    pub input_holds_secrets: bool,
    /// `input` sealed to the host's key (like `sealed_secrets`), used instead of it when it
    /// holds secrets and the host is across a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_input: Option<String>,
    /// Values opened from `encrypted_secrets` that `input` holds (base64): the host redacts
    /// them from the output, logs and refusals it answers with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    /// `redact` sealed to the host's key, used instead of it across a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_redact: Option<String>,
}

/// Claims of the short-lived token the router sends a remote host (HS256).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostClaims {
    /// The host it is for: the id of the host's public key.
    pub aud: String,
    /// Expiry, Unix seconds (a few seconds ahead).
    pub exp: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Unique per request (the execution id for runs); a host refuses a replay.
    pub jti: String,
    /// The one request the token is good for ([`HostClaims::binding`]): a token lifted off
    /// the wire cannot carry another body (another digest, egress policy or input).
    pub req: String,
}

impl HostClaims {
    /// `METHOD /path?query sha256-hex-of-body`.
    pub fn binding(method: &str, path: &str, body: &[u8]) -> String {
        format!(
            "{} {path} {}",
            method.to_ascii_uppercase(),
            crate::crypto::sha256_hex(body)
        )
    }
}

/// A remote host: where it listens and the X25519 key secrets are sealed to.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTarget {
    /// Base URL, e.g. `http://10.0.0.5:4100`.
    pub url: String,
    /// The host's public key.
    pub public_key: [u8; 32],
}

impl HostTarget {
    /// Parses `URL#BASE64_PUBLIC_KEY` entries separated by commas.
    pub fn parse_list(v: &str) -> Result<Vec<HostTarget>, String> {
        use base64::Engine;
        let mut out = Vec::new();
        for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (url, pk) = entry.split_once('#').ok_or_else(|| {
                format!("host `{entry}` must be URL#PUBLIC_KEY (the key `cyfr host` prints)")
            })?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "host URL `{url}` must start with http:// or https://"
                ));
            }
            let key = base64::engine::general_purpose::STANDARD
                .decode(pk)
                .map_err(|_| format!("host key of `{url}` is not base64"))?;
            let public_key: [u8; 32] = key
                .as_slice()
                .try_into()
                .map_err(|_| format!("host key of `{url}` must be 32 bytes"))?;
            out.push(HostTarget {
                url: url.trim_end_matches('/').to_string(),
                public_key,
            });
        }
        Ok(out)
    }

    /// The audience its tokens carry: the id of its public key.
    pub fn audience(&self) -> String {
        crate::crypto::kid_of(&self.public_key)
    }
}

/// A failure reported by the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostError {
    /// Stable snake_case reason: `timeout`, `memory_limit`, `trap`, `artifact_missing`, ...
    pub code: HostErrorKind,
    /// Human message.
    pub message: String,
}

/// Declares [`HostErrorKind`] with its snake_case wire names, once.
macro_rules! host_error_kinds {
    ($($(#[$doc:meta])* $Var:ident = $name:literal,)+) => {
        /// Why the host did not run a component to completion, as it says on the wire (a
        /// snake_case string). A reason this router does not know arrives as `Other`.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum HostErrorKind {
            $($(#[$doc])* $Var,)+
            /// A reason this side does not know (from a newer or older peer), kept as sent.
            Other(String),
        }

        impl HostErrorKind {
            /// The wire name.
            pub fn as_str(&self) -> &str {
                match self {
                    $(HostErrorKind::$Var => $name,)+
                    HostErrorKind::Other(s) => s,
                }
            }
        }

        impl From<&str> for HostErrorKind {
            fn from(s: &str) -> Self {
                match s {
                    $($name => HostErrorKind::$Var,)+
                    other => HostErrorKind::Other(other.to_string()),
                }
            }
        }
    };
}

host_error_kinds! {
    /// The run used up its time.
    Timeout = "timeout",
    /// The run's memories grew past its cap.
    MemoryLimit = "memory_limit",
    /// The run used up its fuel.
    FuelExhausted = "fuel_exhausted",
    /// The run was cancelled (`execution.cancel`, or its formula ended).
    Cancelled = "cancelled",
    /// The caller's share of the host's instance slots is taken.
    Busy = "busy",
    /// The guest trapped.
    Trap = "trap",
    /// The host has no artifact with that digest.
    ArtifactMissing = "artifact_missing",
    /// The artifact's bytes do not hash to its digest.
    DigestMismatch = "digest_mismatch",
    /// The bytes are not a component of a world the host runs.
    InvalidComponent = "invalid_component",
    /// A fault of the host's own.
    Internal = "internal",
    /// The input is over the run's cap.
    InputTooLarge = "input_too_large",
    /// The output is over the run's cap.
    OutputTooLarge = "output_too_large",
    /// A run the host said failed without saying why.
    Failed = "failed",
    /// The request to the host was malformed.
    InvalidRequest = "invalid_request",
    /// A catalyst came without an egress policy.
    PolicyRequired = "policy_required",
    /// A component type the host does not run.
    UnsupportedType = "unsupported_type",
    /// A component directory that cannot be read.
    InvalidDirectory = "invalid_directory",
    /// No such host endpoint.
    NotFound = "not_found",
    /// The host's run task panicked.
    HostPanic = "host_panic",
    /// A remote host refused the request's token.
    Unauthorized = "unauthorized",
    /// A request body over the host server's limit.
    TooLarge = "too_large",
    /// A request the host server could not read.
    BadRequest = "bad_request",
}

impl HostErrorKind {
    /// The one map from a host's reason to what the caller sees: the JSON-RPC code of a
    /// failed run.
    pub fn code(&self) -> crate::errors::Code {
        use crate::errors::Code;
        match self {
            HostErrorKind::Timeout => Code::ExecutionTimeout,
            // The host refused it at once: this caller already has its share of runs there.
            HostErrorKind::Busy => Code::RateLimited,
            _ => Code::ExecutionFailed,
        }
    }

    /// The HTTP status of a host API answer that is this error (a failed run is a 200 whose
    /// body says why).
    pub fn http_status(&self) -> u16 {
        match self {
            HostErrorKind::Unauthorized => 401,
            HostErrorKind::NotFound | HostErrorKind::ArtifactMissing => 404,
            // The request body did not arrive in time.
            HostErrorKind::Timeout => 408,
            HostErrorKind::TooLarge => 413,
            HostErrorKind::Internal | HostErrorKind::HostPanic => 500,
            _ => 400,
        }
    }

    /// ... and the status its execution record ends with.
    pub fn record_status(&self) -> RecordStatus {
        match self {
            HostErrorKind::Timeout => RecordStatus::TimedOut,
            HostErrorKind::Cancelled => RecordStatus::Cancelled,
            _ => RecordStatus::Failed,
        }
    }
}

/// The status of a run's record in the router's `executions` table (SQL keeps the strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordStatus {
    /// Under way.
    Started,
    /// The component returned its output.
    Completed,
    /// Refused, or the component failed.
    Failed,
    /// It used up its time.
    TimedOut,
    /// `execution.cancel`, or its formula ended.
    Cancelled,
}

impl RecordStatus {
    /// The string stored in `executions.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Started => "started",
            RecordStatus::Completed => "completed",
            RecordStatus::Failed => "failed",
            RecordStatus::TimedOut => "timed_out",
            RecordStatus::Cancelled => "cancelled",
        }
    }
}

impl From<String> for HostErrorKind {
    fn from(s: String) -> Self {
        HostErrorKind::from(s.as_str())
    }
}

impl std::fmt::Display for HostErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for HostErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for HostErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(HostErrorKind::from)
    }
}

/// The `accept` value with which a router asks for `POST /v1/executions` as a stream: one
/// [`RunEvent`] per line (NDJSON), the last one `done` (or `error`). Without it the answer
/// is one [`RunResponse`], as before.
pub const RUN_STREAM: &str = "application/x-ndjson";

/// One line of a streamed run answer (`{"log": "..."}`, `{"tick": n}`, `{"done": {...}}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEvent {
    /// A line the guest wrote to stderr, redacted by the host, without its newline.
    Log(String),
    /// The run still goes (seconds since it started); lets the router notice a closed stream.
    Tick(u64),
    /// The run's answer, as the unstreamed one; the last line.
    Done(RunResponse),
    /// The host could not finish it (what the unstreamed answer's error status would say).
    Error(HostError),
}

/// How a run ended, as the host reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The component returned its output.
    Completed,
    /// It did not; [`RunResponse::error`] says why.
    Failed,
}

/// What a run produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResponse {
    /// `completed` or `failed`.
    pub status: RunStatus,
    /// The component's JSON output (when completed).
    #[serde(default)]
    pub output: Option<String>,
    /// Why it failed (when failed).
    #[serde(default)]
    pub error: Option<HostError>,
    /// Captured stdout.
    #[serde(default)]
    pub stdout: String,
    /// Captured stderr.
    #[serde(default)]
    pub stderr: String,
    /// Time spent in the component.
    pub duration_ms: u64,
    /// Outbound requests the host refused, in order.
    #[serde(default)]
    pub egress_refusals: Vec<EgressRefusal>,
}

/// One outbound request the host refused.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EgressRefusal {
    /// The documented error type (`domain_blocked`, `private_ip_blocked`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The request's method.
    pub method: String,
    /// The URL without user info, query or fragment.
    pub url: String,
    /// Why (never a secret).
    pub message: String,
}

impl EgressRefusal {
    /// One line for the execution's log: `cyfr egress: refused domain_blocked GET https://…: …`.
    pub fn log_line(&self) -> String {
        format!(
            "cyfr egress: refused {} {} {}: {}",
            self.kind, self.method, self.url, self.message
        )
    }
}

/// Read a component directory on the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadRequest {
    /// A path relative to the host's components root.
    pub directory: String,
}

/// A component directory's contents.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadedComponent {
    /// The text of `cyfr-manifest.json`.
    pub manifest: String,
    /// The `{type}.wasm` bytes, base64.
    pub wasm_base64: String,
    /// `README.md`, when the directory has one (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readme: Option<String>,
    /// `config.json` (the component's config defaults), when the directory has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}
