//! The wire format between router and host (`POST /v1/executions` and friends). One
//! schema, used by the router's dispatcher and by the host's server.

use serde::{Deserialize, Serialize};

/// Path of the run endpoint.
pub const RUN_PATH: &str = "/v1/executions";
/// Path prefix of the artifact upload endpoint (`PUT /v1/artifacts/sha256:…`).
pub const ARTIFACT_PATH: &str = "/v1/artifacts/";
/// Path of the endpoint that reads a component directory on the host.
pub const LOAD_PATH: &str = "/v1/components/load";

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
}

/// A failure reported by the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostError {
    /// Stable snake_case reason: `timeout`, `memory_limit`, `trap`, `artifact_missing`, ...
    pub code: String,
    /// Human message.
    pub message: String,
}

/// What a run produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResponse {
    /// `completed` or `failed`.
    pub status: String,
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
}
