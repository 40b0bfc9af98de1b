//! Where runs go: the host, over HTTP or in-process.

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
    /// Runs again on the host the last `run` went to (after `put_artifact` there). By
    /// default the same as `run`.
    async fn run_again(&self, req: &RunRequest) -> Result<RunResponse, DispatchError> {
        self.run(req).await
    }
    /// Gives the host the last `run` went to an artifact's bytes (it verifies the digest).
    async fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), DispatchError>;
    /// Stops a run under way on whichever host has it; whether one did.
    async fn cancel(&self, execution_id: &str) -> Result<bool, DispatchError>;
    /// Reads `cyfr-manifest.json` and `{type}.wasm` from a directory on the host.
    async fn load_directory(&self, directory: &str) -> Result<LoadedComponent, DispatchError>;
}
