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
