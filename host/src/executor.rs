//! Runs *reagent* and *catalyst* components under hard limits.
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
//! [`crate::egress::Session`] under the run's egress policy ([`CatalystCtx`]). Reagents are
//! linked without those imports, so a reagent that imports them does not instantiate.
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
//! Limits ([`Limits`]) per execution: wall-clock timeout (epoch interruption, plus an async
//! timeout for a guest parked in a host call such as a sleep), linear-memory cap over the sum
//! of all the run's memories (a store limiter that traps on a refused grow; memories, tables
//! and core instances per component are capped too), optional fuel, and input/output size
//! caps. Each caller gets at most [`CALLER_SHARE`] of the instance slots.
//!
//! [`Executor::run_reagent`] is synchronous. Call it from `tokio::task::spawn_blocking` (or
//! from a thread outside any tokio runtime); it must not be called directly on an async task.
//! Internally it drives wasmtime's async API to completion (`wasmtime_wasi::runtime::in_tokio`)
//! so that a guest blocked in a WASI call can be cut off by a timer; instance slots are
//! limited (64 per executor) and runs beyond that queue for a free slot.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../guest-wit",
        world: "cyfr:reagent/reagent",
        imports: { default: async },
        exports: { default: async },
    });
}

mod catalyst_bindings {
    wasmtime::component::bindgen!({
        path: "../guest-wit/catalyst",
        world: "cyfr:catalyst/catalyst",
        imports: { default: async },
        exports: { default: async },
    });
}

mod formula_bindings {
    wasmtime::component::bindgen!({
        path: "../guest-wit/formula",
        world: "cyfr:formula/formula",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::ReagentPre;
use catalyst_bindings::CatalystPre;
use formula_bindings::FormulaPre;

use crate::code_cache::{CacheKey, CodeCache};
use crate::egress::{self, Refusal};
use crate::formula::{FormulaSession, RouterLink};
use crate::slots::{SlotGuard, SlotWait, Slots};

/// The component worlds the executor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum World {
    Reagent,
    Catalyst,
    Formula,
}

impl World {
    fn name(self) -> &'static str {
        match self {
            World::Reagent => "cyfr:reagent/reagent",
            World::Catalyst => "cyfr:catalyst/catalyst",
            World::Formula => "cyfr:formula/formula",
        }
    }
}

/// A pre-linked instance template of either world.
#[derive(Clone)]
enum Pre {
    Reagent(ReagentPre<State>),
    Catalyst(CatalystPre<State>),
    Formula(FormulaPre<State>),
}

/// What a catalyst run may reach: its reference (for messages), the secrets granted to it
/// for this caller, and its egress policy. Its `Debug` shows secret names, never values.
#[derive(Clone)]
pub struct CatalystCtx {
    /// Canonical reference, e.g. `catalyst:local.claude:0.1.0`.
    pub reference: String,
    /// Granted secrets by name (plaintext; never logged, redacted from everything returned).
    pub secrets: std::collections::BTreeMap<String, String>,
    /// The egress policy every outbound request is checked against.
    pub egress: cyfr_core::host_api::Egress,
    /// Time limits and resolver for outbound HTTP (defaults: 30 s, 60 s, the system resolver).
    pub options: egress::Options,
    /// Values the guest holds but that are secret all the same (opened `encrypted_secrets`):
    /// redacted from refusals and logs like granted secrets, never handed out by name.
    pub redact: Vec<zeroize::Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for CatalystCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalystCtx")
            .field("reference", &self.reference)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("egress", &self.egress)
            .field("options", &self.options)
            .finish()
    }
}

impl CatalystCtx {
    /// A context with the default [`egress::Options`].
    pub fn new(
        reference: impl Into<String>,
        secrets: std::collections::BTreeMap<String, String>,
        egress: cyfr_core::host_api::Egress,
    ) -> CatalystCtx {
        CatalystCtx {
            reference: reference.into(),
            secrets,
            egress,
            options: egress::Options::default(),
            redact: Vec::new(),
        }
    }
}

/// How often the background thread advances the engine's epoch.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Largest linear memory a single instance may ever have: the pooling allocator's slot size.
/// It is the policy's own cap, so no policy is cut short; a [`Limits::max_memory_bytes`]
/// above it (from a router that allows more) is clamped to it.
pub const MAX_MEMORY_CEILING: u64 = cyfr_core::policy::MAX_MEMORY_BYTES;
/// Concurrent component instances the pooling allocator has room for (per executor). Runs
/// beyond this wait for a free slot rather than fail; the wait counts against their timeout.
const POOL_INSTANCES: u32 = 64;
/// Slots formulas may not take, kept for reagents and catalysts: formulas waiting on their
/// children can then never hold every slot those children need.
const LEAF_RESERVE: u32 = 16;
/// Runs one caller (one key, its formulas' children included) may have in flight or queued;
/// past it a run is refused at once ([`ExecError::Busy`]). Four callers can fill the pool,
/// no one caller can.
pub const CALLER_SHARE: u32 = POOL_INSTANCES / 4;
/// Linear memories one component may define, all of its core modules together (a Rust
/// wasip2 component, ours all, has one). With [`Limits::max_memory_bytes`] counted over their sum.
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
/// Tables one component may define (each of ours has two).
pub const MAX_TABLES_PER_COMPONENT: u32 = 16;
/// Core module instances one component may create (each of ours has three).
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Cap on each of the captured stdout and stderr buffers; the excess is dropped.
const LOG_CAP: usize = 1024 * 1024;
/// How much of the guest's stderr is quoted in a [`ExecError::Trap`] message.
const TRAP_STDERR_TAIL: usize = 512;

/// A running execution's cancel switch.
#[derive(Default)]
pub struct Cancel {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

/// Resource limits for one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit for instantiation plus the `compute` call.
    pub timeout: Duration,
    /// Cap on the guest's linear memory, in bytes (clamped to [`MAX_MEMORY_CEILING`]).
    pub max_memory_bytes: u64,
    /// Optional fuel budget (roughly: wasm instructions); `None` means unmetered.
    pub fuel: Option<u64>,
    /// Largest accepted input, in bytes; checked before the guest is instantiated.
    pub max_input_bytes: usize,
    /// Largest accepted output, in bytes; checked after the guest returns.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    /// 30 s, 64 MiB, no fuel limit, 1 MiB input, 5 MiB output.
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            max_memory_bytes: 64 * 1024 * 1024,
            fuel: None,
            max_input_bytes: 1024 * 1024,
            max_output_bytes: 5 * 1024 * 1024,
        }
    }
}

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
    /// The input exceeded [`Limits::max_input_bytes`]; the guest was not run.
    InputTooLarge {
        /// Input size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The guest's output exceeded [`Limits::max_output_bytes`].
    OutputTooLarge {
        /// Output size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The execution ran past [`Limits::timeout`].
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
    /// Its caller already has [`CALLER_SHARE`] runs in flight or queued here; refused at once,
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
    pub fn code(&self) -> &'static str {
        match self {
            ExecError::InputTooLarge { .. } => "input_too_large",
            ExecError::OutputTooLarge { .. } => "output_too_large",
            ExecError::Timeout { .. } => "timeout",
            ExecError::MemoryLimit { .. } => "memory_limit",
            ExecError::FuelExhausted => "fuel_exhausted",
            ExecError::Cancelled => "cancelled",
            ExecError::Busy { .. } => "busy",
            ExecError::Trap(_) => "trap",
            ExecError::ArtifactMissing { .. } => "artifact_missing",
            ExecError::DigestMismatch { .. } => "digest_mismatch",
            ExecError::InvalidComponent(_) => "invalid_component",
            ExecError::Internal(_) => "internal",
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

/// Runs reagent and catalyst components; shared as `Arc<Executor>` (it is `Send + Sync`).
///
/// Owns a wasmtime engine (epoch interruption, fuel metering, pooling allocator), the on-disk
/// artifact and compiled-code caches under `cache_dir`, and a ticker thread that advances the
/// engine's epoch every 10 ms; the thread stops when the executor is dropped.
pub struct Executor {
    engine: Engine,
    /// WASI only.
    reagent_linker: Linker<State>,
    /// WASI plus `cyfr:http` and `cyfr:secrets`.
    catalyst_linker: Linker<State>,
    /// WASI plus `cyfr:formula/invoke` and `cyfr:mcp/tools`.
    formula_linker: Linker<State>,
    artifacts_dir: PathBuf,
    /// `<cache_dir>/compiled`: sealed compiled code by digest.
    compiled: CodeCache,
    /// Pre-linked instance templates by digest hex and world. The lock is held only for
    /// lookups and inserts, never while compiling or running a guest.
    ready: Mutex<HashMap<(String, World), Pre>>,
    /// Digests known not to be valid components of a world (deterministic for a given
    /// engine), so a bad artifact is not recompiled on every request.
    invalid: Mutex<HashMap<(String, World), String>>,
    /// One lock per digest being compiled or loaded, so concurrent first runs of the same
    /// digest compile it once (the others wait, then take the result from `ready`).
    preparing: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Components compiled from wasm (for tests and diagnostics).
    compiles: AtomicU64,
    /// Components loaded from the on-disk compiled cache.
    disk_loads: AtomicU64,
    /// Unique suffix for temporary files.
    tmp_seq: AtomicU64,
    /// Instance slots (POOL_INSTANCES), so a burst of runs queues instead of failing with the
    /// pool's "maximum concurrent limit reached", and each caller's share of them.
    slots: Slots,
    /// Cancel flags of the runs under way, by execution id.
    running: Mutex<HashMap<String, Arc<Cancel>>>,
    ticker_stop: Option<mpsc::Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("artifacts_dir", &self.artifacts_dir)
            .field("compiled_dir", &self.compiled.dir())
            .finish_non_exhaustive()
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        drop(self.ticker_stop.take()); // disconnects the channel: the ticker exits
        if let Some(handle) = self.ticker.take() {
            let _ = handle.join();
        }
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

        // Pooling: every memory slot admits MAX_MEMORY_CEILING, so any per-execution cap up to
        // 1 GiB fits. Slots are reserved virtual address space (wasmtime's default 4 GiB
        // reservation plus guard per slot, ~0.5 TiB for 128 slots), committed only on use; the
        // large reservation lets compiled code skip bounds checks. Works fine on this machine;
        // under a tight `ulimit -v` this would need `Config::memory_reservation` lowered.
        // Per-component caps (checked when a component is compiled or loaded), and pool
        // totals of cap × slots: whatever components run, the slots run out first, never
        // the memories, tables or core instances another caller's run needs.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .total_core_instances(POOL_INSTANCES * MAX_CORE_INSTANCES_PER_COMPONENT)
            .total_memories(POOL_INSTANCES * MAX_MEMORIES_PER_COMPONENT)
            .total_tables(POOL_INSTANCES * MAX_TABLES_PER_COMPONENT)
            .total_stacks(POOL_INSTANCES)
            .total_gc_heaps(POOL_INSTANCES)
            .max_memory_size(MAX_MEMORY_CEILING as usize);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let mut reagent_linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut reagent_linker)?;
        let mut catalyst_linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut catalyst_linker)?;
        catalyst_bindings::Catalyst::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut catalyst_linker,
            |state| state,
        )?;
        let mut formula_linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut formula_linker)?;
        formula_bindings::Formula::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut formula_linker,
            |state| state,
        )?;

        let (ticker_stop, stop_rx) = mpsc::channel::<()>();
        let ticking = engine.clone();
        let ticker = std::thread::Builder::new()
            .name("cyfr-epoch-ticker".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(EPOCH_TICK) {
                    ticking.increment_epoch();
                }
            })
            .context("starting the epoch ticker thread")?;

        Ok(Executor {
            engine,
            reagent_linker,
            catalyst_linker,
            formula_linker,
            artifacts_dir,
            compiled,
            ready: Mutex::new(HashMap::new()),
            invalid: Mutex::new(HashMap::new()),
            preparing: Mutex::new(HashMap::new()),
            compiles: AtomicU64::new(0),
            disk_loads: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
            slots: Slots::new(POOL_INSTANCES, CALLER_SHARE),
            running: Mutex::new(HashMap::new()),
            ticker_stop: Some(ticker_stop),
            ticker: Some(ticker),
        })
    }

    /// The content address of `bytes`: `"sha256:<lowercase hex>"`.
    pub fn digest_of(bytes: &[u8]) -> String {
        format!("sha256:{}", hex_sha256(bytes))
    }

    /// Stores `bytes` under `digest` after checking that they hash to it
    /// ([`ExecError::DigestMismatch`] otherwise). Storing an artifact that is already present
    /// is a no-op. The bytes are not compiled here; that happens on first run.
    pub fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), ExecError> {
        let actual = Executor::digest_of(bytes);
        if digest != actual {
            return Err(ExecError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        let hex = &actual["sha256:".len()..];
        let path = self.artifact_path(hex);
        if path.is_file() {
            return Ok(());
        }
        self.write_atomic(&path, bytes)
            .map_err(|e| ExecError::Internal(format!("storing artifact {digest}: {e}")))
    }

    /// Whether the executor holds the bytes for `digest`.
    pub fn has_artifact(&self, digest: &str) -> bool {
        parse_digest(digest).is_some_and(|hex| self.artifact_path(hex).is_file())
    }

    /// Runs the reagent stored under `digest` with `input`, under `limits`.
    ///
    /// Synchronous and blocking: call it from `tokio::task::spawn_blocking`. Compiles the
    /// artifact on first use (or loads it from the on-disk compiled cache). The executor stays
    /// usable after any error, including a guest that hit a limit.
    pub fn run_reagent(
        &self,
        digest: &str,
        input: &str,
        limits: &Limits,
    ) -> Result<ExecOutcome, ExecError> {
        self.run(World::Reagent, digest, input, limits, None)
    }

    /// Runs the catalyst stored under `digest` with `input`, under `limits`, its outbound HTTP
    /// held to `ctx.egress` and its secret reads to `ctx.secrets`.
    ///
    /// Same contract as [`Executor::run_reagent`] (synchronous; call it from
    /// `spawn_blocking`). Host calls (HTTP requests, stream reads) end before the execution's
    /// timeout; the output, stdout and stderr come back with every granted secret redacted.
    pub fn run_catalyst(
        &self,
        digest: &str,
        input: &str,
        limits: &Limits,
        ctx: &CatalystCtx,
    ) -> Result<ExecOutcome, ExecError> {
        self.run(World::Catalyst, digest, input, limits, Some(ctx))
    }

    /// Runs a reagent (`catalyst: None`) or a catalyst as execution `execution_id` for
    /// `caller` (the key it runs for; at most [`CALLER_SHARE`] runs per caller at once, more
    /// are refused [`ExecError::Busy`]), which [`Executor::cancel`] can stop from another
    /// thread while it runs. When it fails after the guest started, `left` receives what the
    /// guest wrote and the requests refused, so a failed run keeps its logs.
    /// ([`Executor::run_reagent`] and [`Executor::run_catalyst`], for trusted in-process
    /// callers, take no caller's share.)
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
        let world = if catalyst.is_some() {
            World::Catalyst
        } else {
            World::Reagent
        };
        self.tracked(execution_id, |cancel| {
            self.run_inner(
                world,
                Some(caller),
                digest,
                input,
                limits,
                catalyst,
                None,
                cancel,
                left,
            )
        })
    }

    /// Runs a formula as execution `execution_id`: its `invoke` and `tools` calls go to the
    /// router through `link`. Same contract as [`Executor::run_execution`].
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
        self.tracked(execution_id, |cancel| {
            self.run_inner(
                World::Formula,
                Some(caller),
                digest,
                input,
                limits,
                None,
                Some(link),
                cancel,
                left,
            )
        })
    }

    /// Runs `f` with a cancel switch registered under `execution_id` for its duration.
    fn tracked<T>(&self, execution_id: &str, f: impl FnOnce(&Arc<Cancel>) -> T) -> T {
        let cancel = Arc::new(Cancel::default());
        lock(&self.running).insert(execution_id.to_string(), cancel.clone());
        let result = f(&cancel);
        lock(&self.running).remove(execution_id);
        result
    }

    /// Stops a running execution: its wasm traps at the next epoch tick (≈10 ms), and a
    /// host call it is parked in is abandoned. Returns whether it was running here.
    pub fn cancel(&self, execution_id: &str) -> bool {
        match lock(&self.running).get(execution_id) {
            Some(c) => {
                c.flag.store(true, Ordering::SeqCst);
                c.notify.notify_one();
                // It may still be queued for a slot.
                self.slots.wake();
                true
            }
            None => false,
        }
    }

    fn run(
        &self,
        world: World,
        digest: &str,
        input: &str,
        limits: &Limits,
        catalyst: Option<&CatalystCtx>,
    ) -> Result<ExecOutcome, ExecError> {
        let mut left = Leftovers::default();
        self.run_inner(
            world,
            None,
            digest,
            input,
            limits,
            catalyst,
            None,
            &Arc::new(Cancel::default()),
            &mut left,
        )
    }

    fn run_inner(
        &self,
        world: World,
        caller: Option<&str>,
        digest: &str,
        input: &str,
        limits: &Limits,
        catalyst: Option<&CatalystCtx>,
        formula: Option<&RouterLink>,
        cancel: &Arc<Cancel>,
        left: &mut Leftovers,
    ) -> Result<ExecOutcome, ExecError> {
        if input.len() > limits.max_input_bytes {
            return Err(ExecError::InputTooLarge {
                size: input.len(),
                limit: limits.max_input_bytes,
            });
        }
        let Some(hex) = parse_digest(digest) else {
            return Err(ExecError::ArtifactMissing {
                digest: digest.to_string(),
            });
        };
        let pre = self.prepare(hex, digest, world)?;
        // The timeout covers the wait for a slot: a run never outlives the deadline its
        // caller (or its parent formula) was promised.
        let queued_at = Instant::now();
        let deadline = queued_at + limits.timeout;
        let limit_ms = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX);
        let _slot = self
            .acquire_slot(world, caller, deadline, cancel)
            .map_err(|e| match e {
                SlotWait::Cancelled => ExecError::Cancelled,
                SlotWait::TimedOut => ExecError::Timeout { limit_ms },
                SlotWait::Busy { share } => ExecError::Busy { share },
            })?;
        let timeout = limits.timeout.saturating_sub(queued_at.elapsed());

        let memory_cap = limits.max_memory_bytes.min(MAX_MEMORY_CEILING);
        let stdout = CappedPipe::new(LOG_CAP);
        let stderr = CappedPipe::new(LOG_CAP);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        // Host calls must end a little before the execution does, so the guest gets their
        // answer (e.g. a `timeout` error) in time to return it.
        let grace = (timeout / 10).min(Duration::from_millis(500));
        let host_deadline = tokio::time::Instant::now() + timeout.saturating_sub(grace);
        let session = catalyst.map(|ctx| {
            egress::Session::new(
                &ctx.reference,
                &ctx.secrets,
                &ctx.egress,
                ctx.options.clone(),
                host_deadline,
            )
            .also_redacting(&ctx.redact)
        });
        let formula = formula.map(|link| FormulaSession::new(link.clone(), host_deadline));
        let state = State {
            wasi,
            table: ResourceTable::new(),
            egress: session,
            formula,
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(memory_cap as usize)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_cap: memory_cap as usize,
                memory_used: 0,
                memory_refused: false,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(limits.fuel.unwrap_or(u64::MAX))
            .map_err(|e| ExecError::Internal(format!("setting fuel: {e}")))?;
        let tick_ms = EPOCH_TICK.as_millis().max(1) as u64;
        // Checked at every tick: a cancel stops the guest within one tick, the deadline
        // ends it as a timeout (Trap::Interrupt).
        let ticks_allowed = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .div_ceil(tick_ms)
            .max(1);
        let mut ticks = 0u64;
        let flag = cancel.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            ticks += 1;
            if flag.flag.load(Ordering::SeqCst) {
                return Err(wasmtime::Error::msg("cancelled"));
            }
            if ticks >= ticks_allowed {
                return Err(Trap::Interrupt.into());
            }
            Ok(wasmtime::UpdateDeadline::Continue(1))
        });

        let started = Instant::now();
        // Epoch interruption stops wasm code; the async timeout also stops a guest that is
        // parked inside a host call (e.g. a WASI sleep), which epochs cannot interrupt.
        let result = wasmtime_wasi::runtime::in_tokio(async {
            let cancelled = async {
                if !cancel.flag.load(Ordering::SeqCst) {
                    cancel.notify.notified().await;
                }
            };
            let run = tokio::time::timeout(timeout, async {
                match &pre {
                    Pre::Reagent(pre) => {
                        let instance = pre.instantiate_async(&mut store).await?;
                        instance
                            .cyfr_reagent_compute()
                            .call_compute(&mut store, input)
                            .await
                    }
                    Pre::Catalyst(pre) => {
                        let instance = pre.instantiate_async(&mut store).await?;
                        instance
                            .cyfr_catalyst_run()
                            .call_run(&mut store, input)
                            .await
                    }
                    Pre::Formula(pre) => {
                        let instance = pre.instantiate_async(&mut store).await?;
                        instance
                            .cyfr_formula_run()
                            .call_run(&mut store, input)
                            .await
                    }
                }
            });
            tokio::select! {
                r = run => r,
                () = cancelled => Ok(Err(wasmtime::Error::msg("cancelled"))),
            }
        });
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let memory_refused = store.data().limiter.memory_refused;
        let session = store.data_mut().egress.take();
        drop(store); // returns the instance's slot to the pool before we format anything

        // A catalyst's output and logs never carry a granted secret, whatever the guest did.
        let redact = |text: String| match &session {
            Some(s) => s.redact(&text),
            None => text,
        };
        let refusals = session
            .as_ref()
            .map(|s| s.refusals().to_vec())
            .unwrap_or_default();
        // Kept for a failure; a success moves them into its outcome.
        *left = Leftovers {
            stdout: redact(stdout.text()),
            stderr: redact(stderr.text()),
            refusals,
        };

        if cancel.flag.load(Ordering::SeqCst) {
            return Err(ExecError::Cancelled);
        }
        let output = match result {
            Err(_elapsed) => return Err(ExecError::Timeout { limit_ms }),
            Ok(Err(err)) => {
                let err = classify(&err, memory_refused, memory_cap, limit_ms, &stderr.text());
                return Err(match err {
                    ExecError::Trap(msg) => ExecError::Trap(redact(msg)),
                    other => other,
                });
            }
            Ok(Ok(output)) => output,
        };
        if output.len() > limits.max_output_bytes {
            return Err(ExecError::OutputTooLarge {
                size: output.len(),
                limit: limits.max_output_bytes,
            });
        }
        Ok(ExecOutcome {
            output: redact(json_or_raw(output)),
            stdout: std::mem::take(&mut left.stdout),
            stderr: std::mem::take(&mut left.stderr),
            duration_ms,
            refusals: std::mem::take(&mut left.refusals),
        })
    }

    /// Waits for one of the pool's instance slots, until `deadline` or a cancel; the guard
    /// gives it back when dropped. A formula leaves [`LEAF_RESERVE`] slots to other runs; a
    /// caller past its share is refused at once.
    fn acquire_slot(
        &self,
        world: World,
        caller: Option<&str>,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<SlotGuard<'_>, SlotWait> {
        let keep_free = if world == World::Formula {
            LEAF_RESERVE
        } else {
            0
        };
        self.slots.acquire(caller, keep_free, deadline, || {
            cancel.flag.load(Ordering::SeqCst)
        })
    }

    /// Returns the pre-linked instance template for `hex` in `world`, compiling or loading it
    /// if needed.
    fn prepare(&self, hex: &str, digest: &str, world: World) -> Result<Pre, ExecError> {
        if let Some(pre) = self.cached(hex, world)? {
            return Ok(pre);
        }
        let gate = Arc::clone(lock(&self.preparing).entry(hex.to_string()).or_default());
        let result = {
            let _one_at_a_time = lock(&gate);
            match self.cached(hex, world) {
                Ok(Some(pre)) => Ok(pre),
                Err(e) => Err(e),
                Ok(None) => self.load_or_compile(hex, digest, world),
            }
        };
        lock(&self.preparing).remove(hex);
        if let Err(ExecError::InvalidComponent(msg)) = &result {
            lock(&self.invalid).insert((hex.to_string(), world), msg.clone());
        }
        result
    }

    /// The in-memory verdict for `hex` in `world`: ready to instantiate, known invalid, or
    /// unknown.
    fn cached(&self, hex: &str, world: World) -> Result<Option<Pre>, ExecError> {
        let key = (hex.to_string(), world);
        if let Some(pre) = lock(&self.ready).get(&key) {
            return Ok(Some(pre.clone()));
        }
        match lock(&self.invalid).get(&key) {
            Some(msg) => Err(ExecError::InvalidComponent(msg.clone())),
            None => Ok(None),
        }
    }

    fn load_or_compile(&self, hex: &str, digest: &str, world: World) -> Result<Pre, ExecError> {
        if !self.artifact_path(hex).is_file() {
            return Err(ExecError::ArtifactMissing {
                digest: digest.to_string(),
            });
        }
        let component = match self.load_compiled(hex) {
            Some(component) => component,
            None => self.compile(hex, digest)?,
        };
        let linker = match world {
            World::Reagent => &self.reagent_linker,
            World::Catalyst => &self.catalyst_linker,
            World::Formula => &self.formula_linker,
        };
        let not_of_world = |e: wasmtime::Error| {
            ExecError::InvalidComponent(format!("not a {} component: {e}", world.name()))
        };
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            ExecError::InvalidComponent(format!("cannot link as {}: {e}", world.name()))
        })?;
        let pre = match world {
            World::Reagent => Pre::Reagent(ReagentPre::new(pre).map_err(not_of_world)?),
            World::Catalyst => Pre::Catalyst(CatalystPre::new(pre).map_err(not_of_world)?),
            World::Formula => Pre::Formula(FormulaPre::new(pre).map_err(not_of_world)?),
        };
        lock(&self.ready).insert((hex.to_string(), world), pre.clone());
        Ok(pre)
    }

    /// Loads `compiled/<hex>.cwasm` if present, sealed for this digest with our key, and
    /// compatible with this engine (see [`crate::code_cache`]).
    fn load_compiled(&self, hex: &str) -> Option<Component> {
        let component = self
            .compiled
            .load(&self.engine, &format!("{hex}.cwasm"), hex)?;
        self.disk_loads.fetch_add(1, Ordering::Relaxed);
        Some(component)
    }

    /// Reads the artifact, re-verifies its digest, compiles it, and writes the compiled cache.
    fn compile(&self, hex: &str, digest: &str) -> Result<Component, ExecError> {
        let bytes = match std::fs::read(self.artifact_path(hex)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ExecError::ArtifactMissing {
                    digest: digest.to_string(),
                });
            }
            Err(e) => {
                return Err(ExecError::Internal(format!(
                    "reading artifact {digest}: {e}"
                )))
            }
        };
        let actual = hex_sha256(&bytes);
        if actual != hex {
            return Err(ExecError::DigestMismatch {
                expected: digest.to_string(),
                actual: format!("sha256:{actual}"),
            });
        }
        // `from_binary`, not `new`: never interpret stored bytes as WAT text.
        let component = Component::from_binary(&self.engine, &bytes)
            .map_err(|e| ExecError::InvalidComponent(format!("{e:#}")))?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self
            .compiled
            .store(&format!("{hex}.cwasm"), hex, &component)
        {
            tracing::warn!(digest, error = %e, "could not write the compiled cache");
        }
        Ok(component)
    }

    fn artifact_path(&self, hex: &str) -> PathBuf {
        self.artifacts_dir.join(format!("{hex}.wasm"))
    }

    /// Writes via a unique temporary file and a rename, so readers never see a partial file.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp-{}-{seq}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// Locks a mutex, ignoring poisoning (every critical section here leaves the data consistent).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Maps a failed instantiation or call to an [`ExecError`].
fn classify(
    err: &wasmtime::Error,
    memory_refused: bool,
    memory_cap: u64,
    limit_ms: u64,
    stderr: &str,
) -> ExecError {
    // A refused grow comes first: with trap_on_grow_failure the refusal itself is the error,
    // and if a guest's allocator saw the failure instead, it aborts with `unreachable`.
    if memory_refused {
        return ExecError::MemoryLimit {
            limit_bytes: memory_cap,
        };
    }
    let message = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return ExecError::Timeout { limit_ms },
        Some(Trap::OutOfFuel) => return ExecError::FuelExhausted,
        Some(trap) => trap.to_string(),
        None if err.is::<wasmtime::PoolConcurrencyLimitError>() => {
            return ExecError::Internal(format!("executor at capacity: {err}"));
        }
        None => err.to_string(),
    };
    let tail = stderr
        .lines()
        .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect::<Vec<_>>()
        .join("\n");
    let tail = tail.trim();
    if tail.is_empty() {
        ExecError::Trap(message)
    } else {
        let start = tail
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| tail.len() - i <= TRAP_STDERR_TAIL)
            .unwrap_or(tail.len());
        ExecError::Trap(format!("{message}; stderr: {}", &tail[start..]))
    }
}

/// The guest's output verbatim if it is JSON, else wrapped as `{"raw": "<text>"}`.
fn json_or_raw(output: String) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(&output).is_ok() {
        output
    } else {
        serde_json::json!({ "raw": output }).to_string()
    }
}

/// `"sha256:<64 lowercase hex>"` → the hex part; anything else → `None` (so a digest can never
/// smuggle a path into the cache directory).
fn parse_digest(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

fn hex_sha256(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let hash = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in hash {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Per-execution store data.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    /// A catalyst's outbound HTTP and secrets (`None` for reagents, which cannot call them).
    egress: Option<egress::Session>,
    /// A formula's way back to the router (`None` for reagents and catalysts).
    formula: Option<FormulaSession>,
    limiter: Limiter,
}

/// The error a host call answers if a run has no egress session (cannot happen: only
/// catalysts are linked with these imports, and every catalyst run has a session).
const NO_SESSION: &str = r#"{"error":{"type":"http_error","message":"outbound HTTP is not available to this component"}}"#;

impl catalyst_bindings::cyfr::http::fetch::Host for State {
    async fn request(&mut self, json_request: String) -> String {
        match self.egress.as_mut() {
            Some(s) => s.fetch(&json_request).await,
            None => NO_SESSION.to_string(),
        }
    }
}

impl catalyst_bindings::cyfr::http::streaming::Host for State {
    async fn request(&mut self, json_request: String) -> String {
        match self.egress.as_mut() {
            Some(s) => s.stream_open(&json_request).await,
            None => NO_SESSION.to_string(),
        }
    }

    async fn read(&mut self, handle: String) -> String {
        match self.egress.as_mut() {
            Some(s) => s.stream_read(&handle).await,
            None => NO_SESSION.to_string(),
        }
    }

    async fn close(&mut self, handle: String) -> String {
        match self.egress.as_mut() {
            Some(s) => s.stream_close(&handle),
            None => NO_SESSION.to_string(),
        }
    }
}

impl catalyst_bindings::cyfr::secrets::read::Host for State {
    async fn get(&mut self, name: String) -> Result<String, String> {
        match self.egress.as_ref() {
            Some(s) => s.secret(&name),
            None => Err(format!("access-denied: {name} not granted")),
        }
    }
}

/// The answer of a formula host call if a run has no formula session (cannot happen: only
/// formulas are linked with these imports, and every formula run has one).
fn no_formula() -> String {
    crate::formula::error("dispatch_error", "this component cannot invoke others")
}

impl formula_bindings::cyfr::formula::invoke::Host for State {
    async fn call(&mut self, json_request: String) -> String {
        match self.formula.as_mut() {
            Some(f) => f.call(&json_request).await,
            None => no_formula(),
        }
    }

    async fn call_batch(&mut self, json_request: String) -> String {
        self.formula
            .as_mut()
            .map_or_else(no_formula, |f| f.call_batch(&json_request))
    }

    async fn poll(&mut self, json_request: String) -> String {
        self.formula
            .as_mut()
            .map_or_else(no_formula, |f| f.poll(&json_request))
    }

    async fn poll_all(&mut self, json_request: String) -> String {
        self.formula
            .as_mut()
            .map_or_else(no_formula, |f| f.poll_all(&json_request))
    }

    async fn close(&mut self, json_request: String) -> String {
        self.formula
            .as_mut()
            .map_or_else(no_formula, |f| f.close(&json_request))
    }
}

impl formula_bindings::cyfr::mcp::tools::Host for State {
    async fn call(&mut self, json_request: String) -> String {
        match self.formula.as_mut() {
            Some(f) => f.tool(&json_request).await,
            None => no_formula(),
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// [`StoreLimits`], a cap on the sum of all the store's memories (a component may define
/// several: the cap is per run, not per memory), and whether a grow was ever refused.
struct Limiter {
    inner: StoreLimits,
    /// The run's memory cap in bytes, over all its memories together.
    memory_cap: usize,
    /// Bytes of all its memories so far (each creation and grow adds its delta; memories
    /// never shrink, and the store lives for one run).
    memory_used: usize,
    memory_refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current);
        if self.memory_used.saturating_add(delta) > self.memory_cap {
            self.memory_refused = true;
            // As StoreLimits with trap_on_grow_failure: the refusal traps the guest.
            return Err(wasmtime::Error::msg(format!(
                "memory of the run would reach {} bytes, over its {}-byte limit",
                self.memory_used.saturating_add(delta),
                self.memory_cap
            )));
        }
        let verdict = self.inner.memory_growing(current, desired, maximum);
        if !matches!(verdict, Ok(true)) {
            self.memory_refused = true;
        } else {
            self.memory_used += delta;
        }
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// An in-memory stdout/stderr sink that keeps the first `cap` bytes and silently drops the
/// rest. (wasmtime-wasi's `MemoryOutputPipe` traps the guest once full, which would turn a
/// chatty but correct guest into a failure.)
#[derive(Clone)]
struct CappedPipe {
    buf: Arc<Mutex<CappedBuf>>,
}

struct CappedBuf {
    data: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl CappedPipe {
    fn new(cap: usize) -> Self {
        CappedPipe {
            buf: Arc::new(Mutex::new(CappedBuf {
                data: Vec::new(),
                cap,
                dropped: 0,
            })),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = lock(&self.buf);
        let room = buf.cap.saturating_sub(buf.data.len());
        let take = room.min(bytes.len());
        buf.data.extend_from_slice(&bytes[..take]);
        buf.dropped += bytes.len() - take;
    }

    fn text(&self) -> String {
        let buf = lock(&self.buf);
        let mut text = String::from_utf8_lossy(&buf.data).into_owned();
        if buf.dropped > 0 {
            text.push_str(&format!("\n[... {} more bytes dropped]", buf.dropped));
        }
        text
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024) // always writable; bytes past the cap are dropped, not refused
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::sync::OnceLock;

    /// The test components, built once per test process into `<workspace>/target/wasm`
    /// (a separate target dir, so the nested cargo never waits on the outer cargo's lock).
    fn wasm(name: &str) -> &'static [u8] {
        static BUILT: OnceLock<HashMap<&'static str, Vec<u8>>> = OnceLock::new();
        let built = BUILT.get_or_init(|| {
            let packages = [
                "json-transform",
                "text-stats",
                "memory-bomb",
                "endless-loop",
                "formula-probe",
            ];
            let root = workspace_root();
            let target_dir = root.join("target").join("wasm");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = std::process::Command::new(cargo);
            cmd.current_dir(root)
                .env("CARGO_TARGET_DIR", &target_dir)
                .args(["build", "--target", "wasm32-wasip2", "--release"]);
            for p in packages {
                cmd.args(["-p", p]);
            }
            let out = cmd
                .output()
                .expect("running cargo to build the test components");
            assert!(
                out.status.success(),
                "building test components failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            packages
                .into_iter()
                .map(|p| {
                    let file = target_dir
                        .join("wasm32-wasip2/release")
                        .join(format!("{}.wasm", p.replace('-', "_")));
                    let bytes =
                        std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    (p, bytes)
                })
                .collect()
        });
        built
            .get(name)
            .unwrap_or_else(|| panic!("no test component {name}"))
    }

    fn workspace_root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
    }

    /// One executor shared by the behaviour tests, holding all four components, so each is
    /// compiled once per process (Cranelift is slow in a debug build). Its cache lives in
    /// `target/wasm/executor-tests-cache` and is reused by later runs.
    fn shared() -> (&'static Executor, impl Fn(&str) -> String) {
        static SHARED: OnceLock<Executor> = OnceLock::new();
        let exec = SHARED.get_or_init(|| {
            let exec =
                Executor::new(&workspace_root().join("target/wasm/executor-tests-cache")).unwrap();
            for name in [
                "json-transform",
                "text-stats",
                "memory-bomb",
                "endless-loop",
            ] {
                exec.put_artifact(&Executor::digest_of(wasm(name)), wasm(name))
                    .unwrap();
            }
            exec
        });
        (exec, |name: &str| Executor::digest_of(wasm(name)))
    }

    /// A fresh cache directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "cyfr-executor-{tag}-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An executor holding the named component; returns its digest.
    fn executor_with(tag: &str, component: &str) -> (TempDir, Executor, String) {
        let dir = TempDir::new(tag);
        let exec = Executor::new(&dir.0).unwrap();
        let bytes = wasm(component);
        let digest = Executor::digest_of(bytes);
        exec.put_artifact(&digest, bytes).unwrap();
        (dir, exec, digest)
    }

    fn run_json(exec: &Executor, digest: &str, input: Value) -> Value {
        let outcome = exec
            .run_reagent(digest, &input.to_string(), &Limits::default())
            .unwrap();
        serde_json::from_str(&outcome.output).unwrap()
    }

    #[test]
    fn json_transform_round_trip() {
        let (exec, digest_of) = shared();
        let digest = digest_of("json-transform");

        let stats = run_json(exec, &digest, json!({"data": [1, 2, 3]}));
        assert_eq!(
            stats,
            json!({"data": [1, 2, 3], "count": 3, "sum": 6, "min": 1, "max": 3, "mean": 2})
        );

        let people = json!([
            {"name": "ada", "age": 36, "team": "x"},
            {"name": "bob", "age": 25, "team": "y"},
            {"name": "cy", "age": 41, "team": "x"},
        ]);
        let picked = run_json(
            exec,
            &digest,
            json!({"data": people, "ops": [
                {"op": "filter", "field": "team", "eq": "x"},
                {"op": "sort", "field": "age", "desc": true},
                {"op": "rename", "from": "name", "to": "who"},
                {"op": "pick", "fields": ["who", "age"]},
            ]}),
        );
        assert_eq!(
            picked,
            json!({"data": [{"who": "cy", "age": 41}, {"who": "ada", "age": 36}]})
        );

        let total = run_json(
            exec,
            &digest,
            json!({"data": people, "ops": [{"op": "sum", "field": "age"}]}),
        );
        assert_eq!(total, json!({"data": 102}));
        let count = run_json(
            exec,
            &digest,
            json!({"data": people, "ops": [{"op": "count"}]}),
        );
        assert_eq!(count, json!({"data": 3}));

        let bad = run_json(
            exec,
            &digest,
            json!({"data": 1, "ops": [{"op": "explode"}]}),
        );
        assert_eq!(bad["error"]["type"], "invalid_input");
        let not_json = exec
            .run_reagent(&digest, "this is not json", &Limits::default())
            .unwrap();
        let not_json: Value = serde_json::from_str(&not_json.output).unwrap();
        assert_eq!(not_json["error"]["type"], "invalid_input");
    }

    #[test]
    fn manifest_examples_match_component_output() {
        let (exec, digest_of) = shared();
        for name in ["json-transform", "text-stats"] {
            let path = workspace_root().join(format!(
                "components/reagents/cyfr/{name}/0.1.0/cyfr-manifest.json"
            ));
            let manifest: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(manifest["id"], format!("reagent:cyfr.{name}"));
            let examples = manifest["examples"].as_array().unwrap();
            assert!(!examples.is_empty());
            for example in examples {
                let got = run_json(exec, &digest_of(name), example["input"].clone());
                assert_eq!(got, example["output"], "{name} example {}", example["name"]);
            }
        }
    }

    #[test]
    fn text_stats_counts_words_and_sentences() {
        let (exec, digest_of) = shared();
        let digest = digest_of("text-stats");
        let out = run_json(
            exec,
            &digest,
            json!({"text": "The cat sat. The cat ran!\nDon't stop.", "top": 2}),
        );
        assert_eq!(out["words"], 8);
        assert_eq!(out["lines"], 2);
        assert_eq!(out["sentences"], 3);
        assert_eq!(
            out["top_words"],
            json!([{"word": "cat", "count": 2}, {"word": "the", "count": 2}])
        );
    }

    #[test]
    fn guest_stdout_and_stderr_are_captured() {
        let (exec, digest_of) = shared();
        let digest = digest_of("json-transform");
        let input = json!({"data": [1], "ops": [{"op": "count"}], "debug": true}).to_string();
        let outcome = exec
            .run_reagent(&digest, &input, &Limits::default())
            .unwrap();
        assert_eq!(outcome.output, r#"{"data":1}"#);
        assert_eq!(outcome.stdout, "json-transform: applying 1 op(s)\n");
        assert_eq!(outcome.stderr, "json-transform: debug enabled\n");

        let quiet = exec
            .run_reagent(&digest, r#"{"data":[1]}"#, &Limits::default())
            .unwrap();
        assert_eq!((quiet.stdout.as_str(), quiet.stderr.as_str()), ("", ""));
    }

    #[test]
    fn memory_bomb_hits_memory_limit_and_executor_recovers() {
        let (exec, digest_of) = shared();
        let (bomb_digest, ok_digest) = (digest_of("memory-bomb"), digest_of("json-transform"));

        let limits = Limits {
            max_memory_bytes: 32 * 1024 * 1024,
            ..Limits::default()
        };
        for _ in 0..2 {
            let err = exec.run_reagent(&bomb_digest, "{}", &limits).unwrap_err();
            assert_eq!(
                err,
                ExecError::MemoryLimit {
                    limit_bytes: 32 * 1024 * 1024
                }
            );
            assert_eq!(err.code(), "memory_limit");
        }
        // Above the pool's slot size the cap is clamped, and still enforced.
        let huge = Limits {
            max_memory_bytes: 4 << 30,
            ..Limits::default()
        };
        let err = exec.run_reagent(&bomb_digest, "{}", &huge).unwrap_err();
        assert_eq!(
            err,
            ExecError::MemoryLimit {
                limit_bytes: MAX_MEMORY_CEILING
            }
        );

        let outcome = exec
            .run_reagent(&ok_digest, r#"{"data":[2,4]}"#, &limits)
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&outcome.output).unwrap()["mean"],
            3
        );
    }

    #[test]
    fn endless_loop_times_out_and_executor_recovers() {
        let (exec, digest_of) = shared();
        let (spin_digest, ok_digest) = (digest_of("endless-loop"), digest_of("json-transform"));
        // Compile first, so the timing below measures only the execution.
        exec.prepare(
            parse_digest(&spin_digest).unwrap(),
            &spin_digest,
            World::Reagent,
        )
        .unwrap();
        exec.prepare(
            parse_digest(&ok_digest).unwrap(),
            &ok_digest,
            World::Reagent,
        )
        .unwrap();

        let limits = Limits {
            timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let started = Instant::now();
        let err = exec.run_reagent(&spin_digest, "{}", &limits).unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(err, ExecError::Timeout { limit_ms: 500 });
        assert_eq!(err.code(), "timeout");
        assert!(
            elapsed >= Duration::from_millis(450),
            "stopped too early: {elapsed:?}"
        );
        // Generous: only a hang fails it (other tests load both cores meanwhile).
        assert!(
            elapsed < Duration::from_secs(20),
            "the timeout was not enforced: {elapsed:?}"
        );

        let outcome = exec
            .run_reagent(&ok_digest, r#"{"data":[]}"#, &limits)
            .unwrap();
        assert_eq!(outcome.output, r#"{"count":0,"data":[]}"#);
    }

    #[test]
    fn guest_blocked_in_a_host_sleep_times_out() {
        let (exec, digest_of) = shared();
        let digest = digest_of("endless-loop");
        exec.prepare(parse_digest(&digest).unwrap(), &digest, World::Reagent)
            .unwrap();
        let limits = Limits {
            timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let started = Instant::now();
        let err = exec.run_reagent(&digest, "sleep", &limits).unwrap_err();
        assert_eq!(err, ExecError::Timeout { limit_ms: 300 });
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the timeout was not enforced: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn guest_panic_is_a_trap_quoting_the_panic_message() {
        let (exec, digest_of) = shared();
        let err = exec
            .run_reagent(&digest_of("endless-loop"), "panic", &Limits::default())
            .unwrap_err();
        let ExecError::Trap(msg) = &err else {
            panic!("expected a trap, got {err:?}")
        };
        assert!(msg.contains("endless-loop fixture asked to panic"), "{msg}");
        assert_eq!(err.code(), "trap");
    }

    #[test]
    fn more_runs_than_pool_slots_queue_instead_of_failing() {
        let (exec, digest_of) = shared();
        let digest = digest_of("endless-loop");
        exec.prepare(parse_digest(&digest).unwrap(), &digest, World::Reagent)
            .unwrap();
        let runs = POOL_INSTANCES as usize + 6;
        let handles: Vec<_> = (0..runs)
            .map(|_| {
                let digest = digest.clone();
                std::thread::spawn(move || {
                    let limits = Limits {
                        timeout: Duration::from_millis(300),
                        ..Limits::default()
                    };
                    // A sleep, not a spin: 70 spinning threads would starve other tests.
                    shared().0.run_reagent(&digest, "sleep", &limits)
                })
            })
            .collect();
        for h in handles {
            assert_eq!(
                h.join().unwrap().unwrap_err(),
                ExecError::Timeout { limit_ms: 300 }
            );
        }
    }

    /// Polls `done` every 10 ms until it holds (a minute at most).
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..6000 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("gave up waiting until {what}");
    }

    fn free_slots(exec: &Executor) -> u32 {
        exec.slots.free()
    }

    /// Runs `n` endless runs (`loop0`..) on `exec` inside `scope` and waits until they all
    /// hold a slot; they stop when cancelled. They sleep in a host call rather than spin, so
    /// they leave the CPU to the tests running beside them.
    fn hold_slots<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        exec: &'s Executor,
        digest: &'s str,
        n: u32,
    ) -> Vec<std::thread::ScopedJoinHandle<'s, Result<ExecOutcome, ExecError>>> {
        exec.prepare(parse_digest(digest).unwrap(), digest, World::Reagent)
            .unwrap();
        let before = free_slots(exec);
        let loops = (0..n)
            .map(|i| {
                scope.spawn(move || {
                    let long = Limits {
                        timeout: Duration::from_secs(30),
                        ..Limits::default()
                    };
                    // As many callers as it takes, each within its share.
                    let caller = format!("holder{}", i / CALLER_SHARE);
                    exec.run_execution(
                        &format!("loop{i}"),
                        &caller,
                        digest,
                        "sleep",
                        &long,
                        None,
                        &mut Leftovers::default(),
                    )
                })
            })
            .collect();
        wait_until("the loops hold their slots", || {
            free_slots(exec) == before - n
        });
        loops
    }

    fn stop_loops(
        exec: &Executor,
        loops: Vec<std::thread::ScopedJoinHandle<'_, Result<ExecOutcome, ExecError>>>,
    ) {
        for i in 0..loops.len() {
            exec.cancel(&format!("loop{i}"));
        }
        for l in loops {
            assert_eq!(l.join().unwrap().unwrap_err(), ExecError::Cancelled);
        }
    }

    #[test]
    fn a_queued_run_spends_its_timeout_waiting_and_can_be_cancelled_there() {
        let (_dir, exec, spin) = executor_with("queue", "endless-loop");
        let quick = Executor::digest_of(wasm("json-transform"));
        exec.put_artifact(&quick, wasm("json-transform")).unwrap();
        exec.prepare(parse_digest(&quick).unwrap(), &quick, World::Reagent)
            .unwrap();
        std::thread::scope(|s| {
            let loops = hold_slots(s, &exec, &spin, POOL_INSTANCES);
            // It would succeed if it ran at all: it is refused because its 200 ms passed in
            // the queue, not after the loops give their slots back half a minute later.
            let short = Limits {
                timeout: Duration::from_millis(200),
                ..Limits::default()
            };
            let err = exec
                .run_reagent(&quick, r#"{"data":[1]}"#, &short)
                .unwrap_err();
            assert_eq!(err, ExecError::Timeout { limit_ms: 200 });

            let queued = s.spawn(|| {
                let long = Limits {
                    timeout: Duration::from_secs(30),
                    ..Limits::default()
                };
                exec.run_execution(
                    "queued",
                    "someone",
                    &quick,
                    r#"{"data":[1]}"#,
                    &long,
                    None,
                    &mut Leftovers::default(),
                )
            });
            wait_until("the run is queued", || {
                lock(&exec.running).contains_key("queued")
            });
            assert!(exec.cancel("queued"));
            assert_eq!(queued.join().unwrap().unwrap_err(), ExecError::Cancelled);
            assert_eq!(
                free_slots(&exec),
                0,
                "the cancel ended the wait, not a freed slot"
            );
            stop_loops(&exec, loops);
        });
        assert_eq!(free_slots(&exec), POOL_INSTANCES);
    }

    #[test]
    fn formulas_leave_slots_for_the_runs_they_wait_on() {
        let (_dir, exec, spin) = executor_with("reserve", "endless-loop");
        let probe = Executor::digest_of(wasm("formula-probe"));
        exec.put_artifact(&probe, wasm("formula-probe")).unwrap();
        exec.prepare(parse_digest(&probe).unwrap(), &probe, World::Formula)
            .unwrap();
        let quick = Executor::digest_of(wasm("json-transform"));
        exec.put_artifact(&quick, wasm("json-transform")).unwrap();
        let link = RouterLink::new(
            cyfr_core::host_api::Callback {
                url: "http://127.0.0.1:9".into(),
                token: "unused".into(),
                key: None,
            },
            None,
        );
        let print = r#"{"steps":[{"fn":"print","text":"started"}]}"#;
        let short = Limits {
            timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        // With every slot free the formula runs at once.
        exec.run_formula(
            "f0",
            "someone",
            &probe,
            print,
            &short,
            &link,
            &mut Leftovers::default(),
        )
        .unwrap();
        std::thread::scope(|s| {
            let loops = hold_slots(s, &exec, &spin, POOL_INSTANCES - LEAF_RESERVE);
            let err = exec
                .run_formula(
                    "f1",
                    "someone",
                    &probe,
                    print,
                    &short,
                    &link,
                    &mut Leftovers::default(),
                )
                .unwrap_err();
            assert_eq!(
                err,
                ExecError::Timeout { limit_ms: 300 },
                "a formula may not take the reserved slots"
            );
            let out = exec
                .run_reagent(&quick, r#"{"data":[1,2]}"#, &short)
                .unwrap();
            assert!(
                out.output.contains("\"sum\":3"),
                "a reagent still runs: {}",
                out.output
            );
            stop_loops(&exec, loops);
        });
    }

    /// A reagent built from WAT: a main module (one 64 KiB memory) whose `compute` grows each
    /// of `memories` other modules' memories by `grow_pages` and answers `{}`; those start
    /// at `initial_pages`. `plain` more modules without memory are instantiated too.
    fn many_memories(
        memories: usize,
        initial_pages: u32,
        grow_pages: u32,
        plain: usize,
    ) -> Vec<u8> {
        let mut wat = String::from("(component\n");
        wat += &format!(
            "(core module $big (memory (export \"memory\") {initial_pages}) (func (export \"grow\") (param i32) (result i32) (memory.grow (local.get 0))))\n"
        );
        wat += "(core module $plain (func (export \"nop\")))\n";
        for i in 0..memories {
            wat += &format!("(core instance $b{i} (instantiate $big))\n");
        }
        for i in 0..plain {
            wat += &format!("(core instance $p{i} (instantiate $plain))\n");
        }
        wat += "(core module $main\n";
        for i in 0..memories {
            wat += &format!("(import \"b{i}\" \"grow\" (func $g{i} (param i32) (result i32)))\n");
        }
        wat += r#"(memory (export "memory") 1)
            (global $heap (mut i32) (i32.const 1024))
            (func (export "realloc") (param i32 i32 i32 i32) (result i32) (local $p i32)
              (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
              (global.set $heap (i32.add (local.get $p) (local.get 3)))
              (local.get $p))
            (func (export "compute") (param i32 i32) (result i32)
"#;
        for i in 0..memories {
            wat += &format!("(drop (call $g{i} (i32.const {grow_pages})))\n");
        }
        wat += r#"(i32.const 16))
            (data (i32.const 16) "\20\00\00\00\02\00\00\00")
            (data (i32.const 32) "{}"))
"#;
        wat += "(core instance $m (instantiate $main";
        for i in 0..memories {
            wat += &format!(" (with \"b{i}\" (instance $b{i}))");
        }
        wat += r#"))
          (alias core export $m "memory" (core memory $mem))
          (alias core export $m "compute" (core func $cc))
          (alias core export $m "realloc" (core func $re))
          (type $ft (func (param "input" string) (result string)))
          (func $compute (type $ft) (canon lift (core func $cc) (memory $mem) (realloc $re) string-encoding=utf8))
          (instance $api (export "compute" (func $compute)))
          (export "cyfr:reagent/compute@0.1.0" (instance $api)))"#;
        wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
    }

    fn put(exec: &Executor, bytes: &[u8]) -> String {
        let digest = Executor::digest_of(bytes);
        exec.put_artifact(&digest, bytes).unwrap();
        digest
    }

    #[test]
    fn memory_cap_counts_all_memories_of_a_run_together() {
        let (_dir, exec, _) = executor_with("memsum", "json-transform");
        const MIB: u64 = 1024 * 1024;
        let cap = Limits {
            max_memory_bytes: 32 * MIB,
            ..Limits::default()
        };
        // Three more memories grown to 12 MiB each: each under the cap, together over it.
        let growing = put(&exec, &many_memories(3, 1, 12 * 16, 0));
        let err = exec.run_reagent(&growing, "{}", &cap).unwrap_err();
        assert_eq!(
            err,
            ExecError::MemoryLimit {
                limit_bytes: 32 * MIB
            }
        );
        // Under a cap that holds them all, the same component completes: the refusal above
        // is the sum's.
        let roomy = Limits {
            max_memory_bytes: 64 * MIB,
            ..Limits::default()
        };
        assert_eq!(
            exec.run_reagent(&growing, "{}", &roomy).unwrap().output,
            "{}"
        );
        // Memories that start that large are refused as the instance is made.
        let large = put(&exec, &many_memories(3, 12 * 16, 0, 0));
        let err = exec.run_reagent(&large, "{}", &cap).unwrap_err();
        assert_eq!(
            err,
            ExecError::MemoryLimit {
                limit_bytes: 32 * MIB
            }
        );
        assert_eq!(exec.run_reagent(&large, "{}", &roomy).unwrap().output, "{}");
    }

    #[test]
    fn components_past_the_memory_or_instance_caps_are_refused_and_others_still_run() {
        let (_dir, exec, ok) = executor_with("percomp", "json-transform");
        // Within the caps: runs.
        let fits = put(
            &exec,
            &many_memories(MAX_MEMORIES_PER_COMPONENT as usize - 1, 1, 0, 8),
        );
        assert_eq!(
            exec.run_reagent(&fits, "{}", &Limits::default())
                .unwrap()
                .output,
            "{}"
        );
        // 127 memories once took every memory slot of the pool; now such a component is
        // refused before it is ever instantiated.
        let hoarder = put(&exec, &many_memories(126, 1, 0, 0));
        let err = exec
            .run_reagent(&hoarder, "{}", &Limits::default())
            .unwrap_err();
        assert!(matches!(err, ExecError::InvalidComponent(_)), "{err:?}");
        let memories = put(
            &exec,
            &many_memories(MAX_MEMORIES_PER_COMPONENT as usize, 1, 0, 0),
        );
        let err = exec
            .run_reagent(&memories, "{}", &Limits::default())
            .unwrap_err();
        let ExecError::InvalidComponent(msg) = &err else {
            panic!("expected invalid_component, got {err:?}")
        };
        assert!(
            msg.contains("5 Wasm linear memories") && msg.contains("maximum of 4"),
            "{msg}"
        );
        let instances = put(
            &exec,
            &many_memories(0, 1, 0, MAX_CORE_INSTANCES_PER_COMPONENT as usize),
        );
        let err = exec
            .run_reagent(&instances, "{}", &Limits::default())
            .unwrap_err();
        let ExecError::InvalidComponent(msg) = &err else {
            panic!("expected invalid_component, got {err:?}")
        };
        assert!(msg.contains("core module instances"), "{msg}");
        // Every other caller's run still gets its memory.
        let out = exec
            .run_execution(
                "other",
                "another-key",
                &ok,
                r#"{"data":[1,2]}"#,
                &Limits::default(),
                None,
                &mut Leftovers::default(),
            )
            .unwrap();
        assert!(out.output.contains("\"sum\":3"), "{}", out.output);
    }

    #[test]
    fn a_caller_past_its_share_is_refused_busy_while_others_run() {
        let (_dir, exec, spin) = executor_with("share", "endless-loop");
        let quick = put(&exec, wasm("json-transform"));
        exec.prepare(parse_digest(&quick).unwrap(), &quick, World::Reagent)
            .unwrap();
        let probe = put(&exec, wasm("formula-probe"));
        let link = RouterLink::new(
            cyfr_core::host_api::Callback {
                url: "http://127.0.0.1:9".into(),
                token: "unused".into(),
                key: None,
            },
            None,
        );
        let long = Limits {
            timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        std::thread::scope(|s| {
            // Caller A's endless runs: its whole share (`hold_slots` names them holder0).
            let loops = hold_slots(s, &exec, &spin, CALLER_SHARE);
            assert_eq!(exec.slots.held_by("holder0"), CALLER_SHARE);
            // A's next run, a quick one, is refused at once, not queued (it would otherwise
            // wait the 30 s for a slot of its own share).
            let err = exec
                .run_execution(
                    "a-extra",
                    "holder0",
                    &quick,
                    r#"{"data":[1]}"#,
                    &long,
                    None,
                    &mut Leftovers::default(),
                )
                .unwrap_err();
            assert_eq!(
                err,
                ExecError::Busy {
                    share: CALLER_SHARE
                }
            );
            assert_eq!(err.code(), "busy");
            // A formula of A (whose children would count against A too) likewise.
            let print = r#"{"steps":[{"fn":"print","text":"started"}]}"#;
            let err = exec
                .run_formula(
                    "a-formula",
                    "holder0",
                    &probe,
                    print,
                    &long,
                    &link,
                    &mut Leftovers::default(),
                )
                .unwrap_err();
            assert_eq!(
                err,
                ExecError::Busy {
                    share: CALLER_SHARE
                }
            );
            // Caller B completes while A's runs are all still going.
            let out = exec
                .run_execution(
                    "b-run",
                    "caller-b",
                    &quick,
                    r#"{"data":[1,2]}"#,
                    &long,
                    None,
                    &mut Leftovers::default(),
                )
                .unwrap();
            assert!(out.output.contains("\"sum\":3"), "{}", out.output);
            assert_eq!(
                exec.slots.held_by("holder0"),
                CALLER_SHARE,
                "A's runs were still running"
            );
            stop_loops(&exec, loops);
        });
        assert_eq!(exec.slots.held_by("holder0"), 0);
        let out = exec
            .run_execution(
                "a-again",
                "holder0",
                &quick,
                r#"{"data":[4]}"#,
                &long,
                None,
                &mut Leftovers::default(),
            )
            .unwrap();
        assert!(out.output.contains("\"sum\":4"), "{}", out.output);
    }

    #[test]
    fn swapped_or_forged_compiled_code_is_not_run() {
        let dir = TempDir::new("swap");
        let cache = dir.0.join("cache");
        // The key lives outside the cache directory.
        let key_file = dir.0.join(crate::code_cache::KEY_FILE);
        let key = || Arc::new(CacheKey::load_or_create(&key_file).unwrap());
        let (json, stats) = (
            Executor::digest_of(wasm("json-transform")),
            Executor::digest_of(wasm("text-stats")),
        );
        let cwasm = |d: &str| {
            cache
                .join("compiled")
                .join(format!("{}.cwasm", parse_digest(d).unwrap()))
        };
        {
            let exec = Executor::with_cache_key(&cache, key()).unwrap();
            put(&exec, wasm("json-transform"));
            put(&exec, wasm("text-stats"));
            run_json(&exec, &json, json!({"data": [1]}));
            run_json(&exec, &stats, json!({"text": "a"}));
        }
        // The attack: text-stats' compiled code (its tag with it) under json-transform's name.
        std::fs::copy(cwasm(&stats), cwasm(&json)).unwrap();
        {
            let exec = Executor::with_cache_key(&cache, key()).unwrap();
            assert_eq!(
                run_json(&exec, &json, json!({"data": [1, 2]}))["sum"],
                3,
                "json-transform ran"
            );
            assert_eq!(
                (
                    exec.compiles.load(Ordering::Relaxed),
                    exec.disk_loads.load(Ordering::Relaxed)
                ),
                (1, 0)
            );
        }
        // It was overwritten with a good entry, which the next executor loads.
        {
            let exec = Executor::with_cache_key(&cache, key()).unwrap();
            assert_eq!(run_json(&exec, &json, json!({"data": [5]}))["sum"], 5);
            assert_eq!(
                (
                    exec.compiles.load(Ordering::Relaxed),
                    exec.disk_loads.load(Ordering::Relaxed)
                ),
                (0, 1)
            );
        }
        // Forged: text-stats' code sealed for json-transform's digest with another key (as a
        // server sharing the cache directory would), and its code with json's tag.
        let other = CacheKey::load_or_create(&dir.0.join("other.key")).unwrap();
        let stats_file = std::fs::read(cwasm(&stats)).unwrap();
        let json_file = std::fs::read(cwasm(&json)).unwrap();
        let stats_code = &stats_file[48..];
        let json_hex = parse_digest(&json).unwrap();
        let copied_tag = [&json_file[..48], stats_code].concat();
        for forged in [
            other.seal(json_hex, stats_code),
            copied_tag,
            stats_code.to_vec(),
        ] {
            std::fs::write(cwasm(&json), forged).unwrap();
            let exec = Executor::with_cache_key(&cache, key()).unwrap();
            assert_eq!(
                run_json(&exec, &json, json!({"data": [2, 2]}))["sum"],
                4,
                "json-transform ran"
            );
            assert_eq!(
                (
                    exec.compiles.load(Ordering::Relaxed),
                    exec.disk_loads.load(Ordering::Relaxed)
                ),
                (1, 0)
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&cache), 0o700);
            assert_eq!(mode(&cache.join("compiled")), 0o700);
            assert_eq!(mode(&cache.join("artifacts")), 0o700);
            assert_eq!(mode(&key_file), 0o600);
        }
    }

    #[test]
    fn fuel_budget_stops_endless_loop() {
        let (exec, digest_of) = shared();
        let digest = digest_of("endless-loop");
        let limits = Limits {
            fuel: Some(5_000_000),
            ..Limits::default()
        };
        let err = exec.run_reagent(&digest, "{}", &limits).unwrap_err();
        assert_eq!(err, ExecError::FuelExhausted);
    }

    #[test]
    fn oversize_input_is_rejected_without_running() {
        let (_dir, exec, digest) = executor_with("big-input", "json-transform");
        let limits = Limits {
            max_input_bytes: 16,
            ..Limits::default()
        };
        let err = exec
            .run_reagent(&digest, r#"{"data":[1,2,3,4,5,6]}"#, &limits)
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::InputTooLarge {
                size: 22,
                limit: 16
            }
        );
        assert_eq!(
            exec.compiles.load(Ordering::Relaxed),
            0,
            "nothing should have been compiled"
        );
    }

    #[test]
    fn oversize_output_is_rejected() {
        let (exec, digest_of) = shared();
        let digest = digest_of("json-transform");
        let limits = Limits {
            max_output_bytes: 10,
            ..Limits::default()
        };
        let err = exec
            .run_reagent(&digest, r#"{"data":[1,2,3]}"#, &limits)
            .unwrap_err();
        assert!(
            matches!(err, ExecError::OutputTooLarge { limit: 10, size } if size > 10),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_digest_is_rejected() {
        let dir = TempDir::new("wrong-digest");
        let exec = Executor::new(&dir.0).unwrap();
        let bytes = wasm("json-transform");
        let claimed = Executor::digest_of(b"something else");
        let err = exec.put_artifact(&claimed, bytes).unwrap_err();
        assert_eq!(
            err,
            ExecError::DigestMismatch {
                expected: claimed.clone(),
                actual: Executor::digest_of(bytes)
            }
        );
        assert_eq!(err.code(), "digest_mismatch");
        assert!(!exec.has_artifact(&claimed));
        assert!(!exec.has_artifact(&Executor::digest_of(bytes)));
    }

    #[test]
    fn tampered_artifact_on_disk_is_not_compiled() {
        let (dir, exec, digest) = executor_with("tampered", "json-transform");
        let hex = parse_digest(&digest).unwrap();
        std::fs::write(
            dir.0.join("artifacts").join(format!("{hex}.wasm")),
            wasm("endless-loop"),
        )
        .unwrap();
        let err = exec
            .run_reagent(&digest, "{}", &Limits::default())
            .unwrap_err();
        assert_eq!(
            err,
            ExecError::DigestMismatch {
                expected: digest,
                actual: Executor::digest_of(wasm("endless-loop"))
            }
        );
        assert_eq!(exec.compiles.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn unknown_digest_is_artifact_missing() {
        let dir = TempDir::new("unknown");
        let exec = Executor::new(&dir.0).unwrap();
        for digest in [
            Executor::digest_of(b"never stored"),
            "sha256:../../etc/passwd".to_string(),
            "md5:abc".to_string(),
        ] {
            let err = exec
                .run_reagent(&digest, "{}", &Limits::default())
                .unwrap_err();
            assert_eq!(
                err,
                ExecError::ArtifactMissing {
                    digest: digest.clone()
                }
            );
            assert_eq!(err.code(), "artifact_missing");
            assert!(!exec.has_artifact(&digest));
        }
    }

    #[test]
    fn compiled_cache_survives_a_new_executor() {
        let dir = TempDir::new("disk-cache");
        let bytes = wasm("json-transform");
        let digest = Executor::digest_of(bytes);
        let cwasm = dir
            .0
            .join("compiled")
            .join(format!("{}.cwasm", parse_digest(&digest).unwrap()));
        {
            let exec = Executor::new(&dir.0).unwrap();
            exec.put_artifact(&digest, bytes).unwrap();
            assert!(exec.has_artifact(&digest));
            run_json(&exec, &digest, json!({"data": [1]}));
            run_json(&exec, &digest, json!({"data": [2]}));
            assert_eq!(
                exec.compiles.load(Ordering::Relaxed),
                1,
                "second run uses the in-memory cache"
            );
            assert!(cwasm.is_file());
        }
        let written = std::fs::metadata(&cwasm).unwrap().modified().unwrap();

        let exec = Executor::new(&dir.0).unwrap();
        assert!(exec.has_artifact(&digest));
        assert_eq!(run_json(&exec, &digest, json!({"data": [5]}))["sum"], 5);
        assert_eq!(
            exec.compiles.load(Ordering::Relaxed),
            0,
            "must not recompile"
        );
        assert_eq!(exec.disk_loads.load(Ordering::Relaxed), 1);
        assert_eq!(
            std::fs::metadata(&cwasm).unwrap().modified().unwrap(),
            written
        );
    }

    #[test]
    fn unusable_compiled_cache_is_recompiled_and_overwritten() {
        let (dir, exec, digest) = executor_with("stale-cache", "json-transform");
        drop(exec);
        let cwasm = dir
            .0
            .join("compiled")
            .join(format!("{}.cwasm", parse_digest(&digest).unwrap()));
        std::fs::write(&cwasm, b"compiled by some other engine").unwrap();

        let exec = Executor::new(&dir.0).unwrap();
        assert_eq!(run_json(&exec, &digest, json!({"data": [7]}))["max"], 7);
        assert_eq!(exec.compiles.load(Ordering::Relaxed), 1);
        assert_ne!(
            std::fs::read(&cwasm).unwrap(),
            b"compiled by some other engine"
        );
    }

    #[test]
    fn non_component_bytes_are_invalid_component() {
        let dir = TempDir::new("invalid");
        let exec = Executor::new(&dir.0).unwrap();
        let core_module: &[u8] = b"\0asm\x01\0\0\0"; // an empty core module, not a component
        let wat_text: &[u8] = b"(component)"; // WAT is text, never compiled from storage
        for bytes in [&b"definitely not wasm"[..], core_module, wat_text] {
            let digest = Executor::digest_of(bytes);
            exec.put_artifact(&digest, bytes).unwrap();
            let err = exec
                .run_reagent(&digest, "{}", &Limits::default())
                .unwrap_err();
            assert!(matches!(err, ExecError::InvalidComponent(_)), "{err:?}");
            assert_eq!(err.code(), "invalid_component");
            // The verdict is remembered rather than recomputed.
            assert_eq!(
                exec.run_reagent(&digest, "{}", &Limits::default())
                    .unwrap_err(),
                err
            );
        }
        // A valid component of the wrong world (no `compute` export).
        let empty_component: &[u8] = b"\0asm\x0d\0\x01\0";
        let digest = Executor::digest_of(empty_component);
        exec.put_artifact(&digest, empty_component).unwrap();
        let err = exec
            .run_reagent(&digest, "{}", &Limits::default())
            .unwrap_err();
        assert!(matches!(err, ExecError::InvalidComponent(_)), "{err:?}");
    }

    #[test]
    fn concurrent_runs_share_one_executor() {
        let (_dir, exec, digest) = executor_with("concurrent", "json-transform");
        let exec = Arc::new(exec);
        // Eight simultaneous first runs: the component must be compiled exactly once.
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (exec, digest) = (Arc::clone(&exec), digest.clone());
                std::thread::spawn(move || {
                    let out = exec.run_reagent(
                        &digest,
                        &json!({"data": [i, i]}).to_string(),
                        &Limits::default(),
                    );
                    serde_json::from_str::<Value>(&out.unwrap().output).unwrap()["sum"].clone()
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), json!(2 * i));
        }
        assert_eq!(exec.compiles.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn non_json_output_is_wrapped_as_raw() {
        assert_eq!(json_or_raw(r#"{"a":1}"#.into()), r#"{"a":1}"#);
        assert_eq!(json_or_raw("[1, 2]".into()), "[1, 2]");
        assert_eq!(
            json_or_raw("hello \"world\"".into()),
            r#"{"raw":"hello \"world\""}"#
        );
        assert_eq!(json_or_raw(String::new()), r#"{"raw":""}"#);
    }

    #[test]
    fn error_codes_are_stable() {
        let cases = [
            (
                ExecError::InputTooLarge { size: 2, limit: 1 },
                "input_too_large",
            ),
            (
                ExecError::OutputTooLarge { size: 2, limit: 1 },
                "output_too_large",
            ),
            (ExecError::Timeout { limit_ms: 1 }, "timeout"),
            (ExecError::MemoryLimit { limit_bytes: 1 }, "memory_limit"),
            (ExecError::FuelExhausted, "fuel_exhausted"),
            (ExecError::Cancelled, "cancelled"),
            (ExecError::Busy { share: 16 }, "busy"),
            (ExecError::Trap("x".into()), "trap"),
            (
                ExecError::ArtifactMissing { digest: "d".into() },
                "artifact_missing",
            ),
            (
                ExecError::DigestMismatch {
                    expected: "a".into(),
                    actual: "b".into(),
                },
                "digest_mismatch",
            ),
            (ExecError::InvalidComponent("x".into()), "invalid_component"),
            (ExecError::Internal("x".into()), "internal"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code);
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn capped_pipe_keeps_the_first_bytes() {
        let pipe = CappedPipe::new(4);
        pipe.push(b"abcdef");
        pipe.push(b"gh");
        assert_eq!(pipe.text(), "abcd\n[... 4 more bytes dropped]");
    }

    #[test]
    fn executor_is_send_and_sync_and_stops_its_ticker() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Executor>();
        let dir = TempDir::new("drop");
        let exec = Executor::new(&dir.0).unwrap();
        let started = Instant::now();
        drop(exec); // joins the ticker thread
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
