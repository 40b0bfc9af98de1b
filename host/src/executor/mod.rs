//! Runs *reagent*, *catalyst* and *formula* components under hard limits.
//!
//! A reagent is a `wasm32-wasip2` component of the world `cyfr:reagent/reagent`
//! (`guest-wit/reagent.wit`): it exports `compute(input: string) -> string` and imports only
//! the ordinary WASI 0.2 interfaces a Rust `std` binary pulls in. Those are provided by
//! `wasmtime-wasi` with nothing granted: no preopened directories, no environment, no
//! arguments, no network, empty stdin. The guest's stdout and stderr are captured into
//! bounded in-memory buffers and returned with the result.
//!
//! A catalyst is a component of the world `cyfr:catalyst/catalyst` (`guest-wit/catalyst/`):
//! it exports `run(input: string) -> string` and may import, besides the same WASI
//! interfaces (still without files, environment or sockets, and without `wasi:http`),
//! `cyfr:http/fetch`, `cyfr:http/streaming` and `cyfr:secrets/read`, implemented by
//! [`crate::egress::Session`] under the run's egress policy ([`CatalystCtx`]). A formula
//! (`cyfr:formula/formula`) may import `cyfr:formula/invoke` and `cyfr:mcp/tools`, forwarded
//! to its router by [`crate::formula::FormulaSession`]. Each world is linked with its own
//! imports only, so a reagent that imports a catalyst's or a formula's does not instantiate.
//! [`Executor::run_catalyst`] redacts the granted secrets from the output, stdout and stderr
//! before returning them, and reports each refused outbound request in
//! [`ExecOutcome::refusals`].
//!
//! Artifacts are content-addressed (`sha256:<hex>`): [`Executor::put_artifact`] verifies the
//! digest before anything is stored, and the bytes are hashed again before they are compiled.
//! Compiled code is cached twice: in memory (one pre-linked instance template per digest) and
//! on disk (`<cache_dir>/compiled/<hex>.cwasm`, sealed with an HMAC under a key kept outside
//! the cache: [`crate::code_cache`]), so a restarted executor does not recompile.
//!
//! Layout, one capability per module: `artifacts` (the content-addressed store), `compile`
//! (compiled code and each world's instance templates), `worlds` (one module per world: its
//! bindings, host functions and store state), `limits` (limits, the pool's caps, the memory
//! limiter, epochs, fuel), `slots` (instance slots and callers' shares), `cancel`, `pipes`
//! (captured stdout/stderr), `run` (one run from input check to outcome).
//!
//! Limits ([`Limits`]) per execution: wall-clock timeout (epoch interruption, plus an async
//! timeout for a guest parked in a host call such as a sleep), linear-memory cap over the sum
//! of all the run's memories (a store limiter that traps on a refused grow; memories, tables
//! and core instances per component are capped too), optional fuel, and input/output size
//! caps. Each caller gets at most [`CALLER_SHARE`] of the instance slots.
//!
//! [`Executor::run_async`] is the host API's entry: it runs on the request's tokio task, and
//! a guest in wasm yields to the runtime at every epoch tick (10 ms), so a CPU-bound guest
//! does not hold a worker; a timer cuts off a guest blocked in a WASI call. Concurrency is
//! bounded by the instance slots (64 per executor, 16 per caller); runs beyond that queue
//! for a free slot. [`Executor::run`] (and its wrappers such as [`Executor::run_reagent`])
//! drive the same future to completion on the calling thread, for trusted callers and
//! tests; they must not be called directly on an async task.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::code_cache::{CacheKey, CodeCache};
use crate::formula::RouterLink;

mod artifacts;
mod cancel;
mod compile;
mod limits;
mod outcome;
mod pipes;
mod run;
mod slots;
mod worlds;

pub use cancel::Cancel;
pub use limits::{
    Limits, CALLER_SHARE, KEEP_RESIDENT, MAX_CORE_INSTANCES_PER_COMPONENT,
    MAX_MEMORIES_PER_COMPONENT, MAX_MEMORY_CEILING, MAX_TABLES_PER_COMPONENT, TABLE_KEEP_RESIDENT,
};
pub use outcome::{ExecError, ExecOutcome, Leftovers};
pub use worlds::catalyst::CatalystCtx;

use artifacts::Artifacts;
use cancel::Running;
use compile::{Compiler, Templates};
use limits::{Ticker, POOL_INSTANCES};
use slots::Slots;
use worlds::{Catalyst, Formula, Reagent};

/// What to run: a component of one world, with what that world is given.
#[derive(Clone, Copy)]
pub enum Guest<'a> {
    /// A reagent (`cyfr:reagent/reagent`): WASI only.
    Reagent,
    /// A catalyst (`cyfr:catalyst/catalyst`): outbound HTTP and secrets under `ctx`.
    Catalyst(&'a CatalystCtx),
    /// A formula (`cyfr:formula/formula`): its calls go to the router through the link.
    Formula(&'a RouterLink),
}

/// One run: which component, as what, with which input, for whom, under which limits.
#[derive(Clone, Copy)]
pub struct RunSpec<'a> {
    /// The execution id [`Executor::cancel`] stops it by (`None`: it cannot be cancelled).
    pub execution_id: Option<&'a str>,
    /// The caller whose share it takes (`None`: a trusted in-process caller, outside any
    /// share; at most [`CALLER_SHARE`] runs per caller at once, more are refused
    /// [`ExecError::Busy`]).
    pub caller: Option<&'a str>,
    /// The artifact's digest, `sha256:<hex>`.
    pub digest: &'a str,
    /// The input handed to the component's export.
    pub input: &'a str,
    /// The run's limits.
    pub limits: &'a Limits,
    /// The component's world and what it is given.
    pub guest: Guest<'a>,
    /// Where the guest's stderr also goes as it is written (a streamed run), if anywhere.
    pub stderr_tap: Option<&'a StderrTap>,
}

/// A receiver of a running guest's stderr bytes as they are written (at most the log cap).
pub type StderrTap = tokio::sync::mpsc::UnboundedSender<bytes::Bytes>;

/// Runs reagent, catalyst and formula components; shared as `Arc<Executor>` (it is
/// `Send + Sync`).
///
/// Owns a wasmtime engine (epoch interruption, fuel metering, pooling allocator), the on-disk
/// artifact and compiled-code caches under `cache_dir`, and a ticker thread that advances the
/// engine's epoch every 10 ms; the thread stops when the executor is dropped.
pub struct Executor {
    /// The engine, the artifacts and the compiled code.
    compiler: Compiler,
    /// Templates linked with WASI only.
    reagents: Templates<Reagent>,
    /// Templates linked with WASI plus `cyfr:http` and `cyfr:secrets`.
    catalysts: Templates<Catalyst>,
    /// Templates linked with WASI plus `cyfr:formula/invoke` and `cyfr:mcp/tools`.
    formulas: Templates<Formula>,
    /// Instance slots (POOL_INSTANCES), so a burst of runs queues instead of failing with the
    /// pool's "maximum concurrent limit reached", and each caller's share of them.
    slots: Slots,
    /// Cancel switches of the runs under way, by execution id.
    running: Running,
    /// Stops (and joins) the epoch thread when the executor is dropped.
    _ticker: Ticker,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("artifacts_dir", &self.compiler.artifacts.dir())
            .field("compiled_dir", &self.compiler.compiled.dir())
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// Creates an executor caching under `cache_dir` (`artifacts/` and `compiled/` are created)
    /// whose compiled code is sealed with a key of this process only ([`CacheKey::process`]):
    /// the disk cache then serves only this process. Servers use [`Executor::with_cache_key`].
    pub fn new(cache_dir: &Path) -> anyhow::Result<Executor> {
        Executor::with_cache_key(cache_dir, CacheKey::process())
    }

    /// Creates an executor caching under `cache_dir`, its compiled code sealed with `key`
    /// (kept outside `cache_dir`); the directories are made private (0700).
    pub fn with_cache_key(cache_dir: &Path, key: Arc<CacheKey>) -> anyhow::Result<Executor> {
        let artifacts_dir = cache_dir.join("artifacts");
        crate::code_cache::private_dir(cache_dir)?;
        crate::code_cache::private_dir(&artifacts_dir)?;
        let compiled = CodeCache::new(cache_dir.join("compiled"), key)?;
        let engine = limits::engine()?;
        Ok(Executor {
            reagents: Templates::new(&engine)?,
            catalysts: Templates::new(&engine)?,
            formulas: Templates::new(&engine)?,
            _ticker: Ticker::start(&engine)?,
            compiler: Compiler::new(engine, Artifacts::new(artifacts_dir), compiled),
            slots: Slots::new(POOL_INSTANCES, CALLER_SHARE),
            running: Running::default(),
        })
    }

    /// The content address of `bytes`: `"sha256:<lowercase hex>"`.
    pub fn digest_of(bytes: &[u8]) -> String {
        artifacts::digest_of(bytes)
    }

    /// Stores `bytes` under `digest` after checking that they hash to it
    /// ([`ExecError::DigestMismatch`] otherwise). Storing an artifact that is already present
    /// is a no-op. The bytes are not compiled here; that happens on first run.
    pub fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), ExecError> {
        self.compiler.artifacts.put(digest, bytes)
    }

    /// Whether the executor holds the bytes for `digest`.
    pub fn has_artifact(&self, digest: &str) -> bool {
        self.compiler.artifacts.has(digest)
    }

    /// Runs `spec`: the one entry of every run.
    ///
    /// Async, on the caller's tokio task: a guest in wasm yields at every epoch tick, so a
    /// CPU-bound run does not hold a worker thread. Compiles the artifact on first use (or
    /// loads it from the on-disk compiled cache). The executor stays usable after any error,
    /// including a guest that hit a limit. Host calls (HTTP requests, stream reads, a
    /// formula's callbacks) end before the run's timeout; a catalyst's output, stdout and
    /// stderr come back with every granted secret redacted. When it fails after the guest
    /// started, `left` receives what the guest wrote and the requests refused, so a failed
    /// run keeps its logs.
    pub async fn run_async(
        &self,
        spec: RunSpec<'_>,
        left: &mut Leftovers,
    ) -> Result<ExecOutcome, ExecError> {
        match spec.execution_id {
            Some(id) => {
                let tracked = self.running.track(id);
                self.run_as_world(&spec, &tracked.cancel, left).await
            }
            None => {
                self.run_as_world(&spec, &Arc::new(Cancel::default()), left)
                    .await
            }
        }
    }

    /// [`Executor::run_async`] driven to completion on this thread, for trusted in-process
    /// callers and tests: call it outside an async task (or from `spawn_blocking`).
    pub fn run(&self, spec: RunSpec<'_>, left: &mut Leftovers) -> Result<ExecOutcome, ExecError> {
        wasmtime_wasi::runtime::in_tokio(self.run_async(spec, left))
    }

    /// Runs the reagent stored under `digest` with `input`, under `limits`, for a trusted
    /// in-process caller (no caller's share, not cancellable). See [`Executor::run`].
    pub fn run_reagent(
        &self,
        digest: &str,
        input: &str,
        limits: &Limits,
    ) -> Result<ExecOutcome, ExecError> {
        self.run_trusted(digest, input, limits, Guest::Reagent)
    }

    /// Runs the catalyst stored under `digest` with `input`, under `limits`, its outbound HTTP
    /// held to `ctx.egress` and its secret reads to `ctx.secrets`; like
    /// [`Executor::run_reagent`] otherwise.
    pub fn run_catalyst(
        &self,
        digest: &str,
        input: &str,
        limits: &Limits,
        ctx: &CatalystCtx,
    ) -> Result<ExecOutcome, ExecError> {
        self.run_trusted(digest, input, limits, Guest::Catalyst(ctx))
    }

    /// Runs a reagent (`catalyst: None`) or a catalyst as execution `execution_id` for
    /// `caller`; see [`Executor::run`]. For the unit tests (the host API builds a
    /// [`RunSpec`] itself).
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)] // the tests' shorthand, field by field
    pub fn run_execution(
        &self,
        execution_id: &str,
        caller: &str,
        digest: &str,
        input: &str,
        limits: &Limits,
        catalyst: Option<&CatalystCtx>,
        left: &mut Leftovers,
    ) -> Result<ExecOutcome, ExecError> {
        let guest = catalyst.map_or(Guest::Reagent, Guest::Catalyst);
        let spec = RunSpec {
            execution_id: Some(execution_id),
            caller: Some(caller),
            digest,
            input,
            limits,
            guest,
            stderr_tap: None,
        };
        self.run(spec, left)
    }

    /// Runs a formula as execution `execution_id` for `caller`: its `invoke` and `tools`
    /// calls go to the router through `link`. See [`Executor::run`]. For the unit tests.
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)] // the tests' shorthand, field by field
    pub fn run_formula(
        &self,
        execution_id: &str,
        caller: &str,
        digest: &str,
        input: &str,
        limits: &Limits,
        link: &RouterLink,
        left: &mut Leftovers,
    ) -> Result<ExecOutcome, ExecError> {
        let spec = RunSpec {
            execution_id: Some(execution_id),
            caller: Some(caller),
            digest,
            input,
            limits,
            guest: Guest::Formula(link),
            stderr_tap: None,
        };
        self.run(spec, left)
    }

    /// Stops a running execution: its wasm traps at the next epoch tick (≈10 ms), and a
    /// host call it is parked in is abandoned. Returns whether it was running here.
    pub fn cancel(&self, execution_id: &str) -> bool {
        if !self.running.cancel(execution_id) {
            return false;
        }
        // It may still be queued for a slot.
        self.slots.wake();
        true
    }

    fn run_trusted(
        &self,
        digest: &str,
        input: &str,
        limits: &Limits,
        guest: Guest<'_>,
    ) -> Result<ExecOutcome, ExecError> {
        let spec = RunSpec {
            execution_id: None,
            caller: None,
            digest,
            input,
            limits,
            guest,
            stderr_tap: None,
        };
        self.run(spec, &mut Leftovers::default())
    }
}

/// Locks a mutex, ignoring poisoning (every critical section here leaves the data consistent).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
