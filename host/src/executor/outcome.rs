//! What a run returns: its outcome, what a failed run leaves behind, and why it failed.

use cyfr_core::host_api::HostErrorKind;
use std::fmt;

use crate::egress::Refusal;

/// What a run that failed after its guest started leaves behind (redacted like an outcome).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// What the guest wrote to stdout.
    pub stdout: String,
    /// What the guest wrote to stderr.
    pub stderr: String,
    /// Outbound requests refused before it failed.
    pub refusals: Vec<Refusal>,
}

/// The result of a successful execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// JSON text: the guest's output verbatim if it parses as JSON, else `{"raw": "<text>"}`.
    pub output: String,
    /// Everything the guest wrote to stdout (lossy UTF-8, capped at 1 MiB).
    pub stdout: String,
    /// Everything the guest wrote to stderr (lossy UTF-8, capped at 1 MiB).
    pub stderr: String,
    /// Wall-clock time of instantiation plus the `compute` call, in milliseconds
    /// (compilation and cache loading are not included).
    pub duration_ms: u64,
    /// Outbound requests of a catalyst that were refused or failed, in order (empty for
    /// reagents).
    pub refusals: Vec<Refusal>,
}

/// Why an execution (or an artifact upload) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// The input exceeded [`Limits::max_input_bytes`](super::Limits::max_input_bytes); the guest was not run.
    InputTooLarge {
        /// Input size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The guest's output exceeded [`Limits::max_output_bytes`](super::Limits::max_output_bytes).
    OutputTooLarge {
        /// Output size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The execution ran past [`Limits::timeout`](super::Limits::timeout).
    Timeout {
        /// The limit in milliseconds.
        limit_ms: u64,
    },
    /// The guest tried to grow its memory past the cap.
    MemoryLimit {
        /// The effective cap in bytes.
        limit_bytes: u64,
    },
    /// The guest used up its fuel budget.
    FuelExhausted,
    /// The run was cancelled (`Executor::cancel`) while it ran.
    Cancelled,
    /// Its caller already has [`CALLER_SHARE`](super::CALLER_SHARE) runs in flight or queued here; refused at once,
    /// before it waited or held anything.
    Busy {
        /// The per-caller share.
        share: u32,
    },
    /// Any other guest trap or panic (short message, with the tail of the guest's stderr).
    Trap(String),
    /// The executor holds no bytes for this digest.
    ArtifactMissing {
        /// The requested digest.
        digest: String,
    },
    /// The bytes do not hash to the claimed digest.
    DigestMismatch {
        /// The digest that was claimed.
        expected: String,
        /// The digest of the bytes actually given (or found on disk).
        actual: String,
    },
    /// Not a component, not of the expected world, or failed to compile.
    InvalidComponent(String),
    /// A host-side failure unrelated to the guest: disk I/O, or the instance pool being full.
    /// (Not in the original design: `put_artifact` writes to disk and that can fail.)
    Internal(String),
}

impl ExecError {
    /// A stable snake_case name for the error, suitable for API responses and metrics.
    pub fn code(&self) -> String {
        HostErrorKind::from(self).as_str().to_string()
    }
}

/// The one map from an executor error to the host API's reason.
impl From<&ExecError> for HostErrorKind {
    fn from(e: &ExecError) -> Self {
        match e {
            ExecError::InputTooLarge { .. } => HostErrorKind::InputTooLarge,
            ExecError::OutputTooLarge { .. } => HostErrorKind::OutputTooLarge,
            ExecError::Timeout { .. } => HostErrorKind::Timeout,
            ExecError::MemoryLimit { .. } => HostErrorKind::MemoryLimit,
            ExecError::FuelExhausted => HostErrorKind::FuelExhausted,
            ExecError::Cancelled => HostErrorKind::Cancelled,
            ExecError::Busy { .. } => HostErrorKind::Busy,
            ExecError::Trap(_) => HostErrorKind::Trap,
            ExecError::ArtifactMissing { .. } => HostErrorKind::ArtifactMissing,
            ExecError::DigestMismatch { .. } => HostErrorKind::DigestMismatch,
            ExecError::InvalidComponent(_) => HostErrorKind::InvalidComponent,
            ExecError::Internal(_) => HostErrorKind::Internal,
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::InputTooLarge { size, limit } => {
                write!(f, "input is {size} bytes, over the {limit}-byte limit")
            }
            ExecError::OutputTooLarge { size, limit } => {
                write!(f, "output is {size} bytes, over the {limit}-byte limit")
            }
            ExecError::Timeout { limit_ms } => {
                write!(f, "execution exceeded the {limit_ms} ms time limit")
            }
            ExecError::MemoryLimit { limit_bytes } => {
                write!(f, "guest exceeded the {limit_bytes}-byte memory limit")
            }
            ExecError::FuelExhausted => f.write_str("guest ran out of fuel"),
            ExecError::Cancelled => f.write_str("the execution was cancelled"),
            ExecError::Busy { share } => write!(
                f,
                "this caller already has {share} runs in flight or queued on this host (its share); retry when one ends"
            ),
            ExecError::Trap(msg) => write!(f, "guest trapped: {msg}"),
            ExecError::ArtifactMissing { digest } => write!(f, "no artifact stored for {digest}"),
            ExecError::DigestMismatch { expected, actual } => {
                write!(f, "digest mismatch: expected {expected}, got {actual}")
            }
            ExecError::InvalidComponent(msg) => write!(f, "invalid component: {msg}"),
            ExecError::Internal(msg) => write!(f, "internal executor error: {msg}"),
        }
    }
}

impl std::error::Error for ExecError {}
