//! What bounds a run: its [`Limits`], the pool's per-component caps, the memory limiter over
//! the sum of a run's memories, the epoch ticker and deadline, fuel, and the mapping of a
//! stopped guest to the limit it hit.

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    StoreLimits, StoreLimitsBuilder, Trap,
};

use super::{Cancel, ExecError};

/// How much of each guest memory stays resident between runs (the bench's baseline uses the same).
pub const KEEP_RESIDENT: usize = 2 << 20;

/// Bytes of each table slot kept resident between runs and reset in place.
pub const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// How often the background thread advances the engine's epoch.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Largest linear memory a single instance may ever have: the pooling allocator's slot size.
/// It is the policy's own cap, so no policy is cut short; a [`Limits::max_memory_bytes`]
/// above it (from a router that allows more) is clamped to it.
pub const MAX_MEMORY_CEILING: u64 = cyfr_core::policy::MAX_MEMORY_BYTES;
/// Concurrent component instances the pooling allocator has room for (per executor). Runs
/// beyond this wait for a free slot rather than fail; the wait counts against their timeout.
pub(crate) const POOL_INSTANCES: u32 = 64;
/// Slots formulas may not take, kept for reagents and catalysts: formulas waiting on their
/// children can then never hold every slot those children need.
pub(crate) const LEAF_RESERVE: u32 = 16;
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
/// How much of the guest's stderr is quoted in a [`ExecError::Trap`] message.
const TRAP_STDERR_TAIL: usize = 512;

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

/// The engine every run shares: components, epoch interruption, fuel metering, and a pooling
/// allocator sized by the caps above.
pub(crate) fn engine() -> anyhow::Result<Engine> {
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
        .max_memory_size(MAX_MEMORY_CEILING as usize)
        // A run's first pages stay resident and only those it touched are reset (memset, with
        // PAGEMAP_SCAN on Linux ≥ 6.7): no madvise, TLB shootdown or page faults per run.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        // Tables too: without this each run's tables are decommitted with `madvise`, a TLB
        // shootdown on every core (the baseline and the router's pool keep 64 KiB as well).
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);

    let mut config = Config::new();
    crate::perf_map(&mut config);
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // The component ABI (guest-wit) is synchronous: without the async component model a
        // host call skips the concurrent-task bookkeeping wasmtime otherwise does on every
        // entry and exit, and a component built for the async ABI is refused as invalid.
        .concurrency_support(false)
        .consume_fuel(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`]; dropping it stops and
/// joins the thread.
pub(crate) struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts ticking `engine`.
    pub(crate) fn start(engine: &Engine) -> anyhow::Result<Ticker> {
        let (stop, stop_rx) = mpsc::channel::<()>();
        let ticking = engine.clone();
        let thread = std::thread::Builder::new()
            .name("cyfr-epoch-ticker".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(EPOCH_TICK) {
                    ticking.increment_epoch();
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take()); // disconnects the channel: the ticker exits
        if let Some(handle) = self.thread.take() {
            let _ = handle.join();
        }
    }
}

/// Bounds `store`'s run: fuel (`None`: unmetered), and an epoch check at every tick that
/// stops the guest within one tick of a cancel and ends it as a timeout (`Trap::Interrupt`)
/// once `timeout` has passed.
pub(crate) fn arm<T>(
    store: &mut Store<T>,
    fuel: Option<u64>,
    timeout: Duration,
    cancel: &Arc<Cancel>,
) -> Result<(), ExecError> {
    store
        .set_fuel(fuel.unwrap_or(u64::MAX))
        .map_err(|e| ExecError::Internal(format!("setting fuel: {e}")))?;
    let tick_ms = EPOCH_TICK.as_millis().max(1) as u64;
    let ticks_allowed = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .div_ceil(tick_ms)
        .max(1);
    let mut ticks = 0u64;
    let flag = cancel.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        ticks += 1;
        if flag.is_set() {
            return Err(wasmtime::Error::msg("cancelled"));
        }
        if ticks >= ticks_allowed {
            return Err(Trap::Interrupt.into());
        }
        // Yield: a CPU-bound guest hands its worker thread back to tokio every tick.
        Ok(wasmtime::UpdateDeadline::Yield(1))
    });
    Ok(())
}

/// [`StoreLimits`], a cap on the sum of all the store's memories (a component may define
/// several: the cap is per run, not per memory), and whether a grow was ever refused.
pub(crate) struct Limiter {
    inner: StoreLimits,
    /// The run's memory cap in bytes, over all its memories together.
    memory_cap: usize,
    /// Bytes of all its memories so far (each creation and grow adds its delta; memories
    /// never shrink, and the store lives for one run).
    memory_used: usize,
    /// Whether a grow (or a memory's creation) was ever refused.
    pub(crate) memory_refused: bool,
}

impl Limiter {
    /// A limiter holding all of a run's memories together to `memory_cap` bytes.
    pub(crate) fn new(memory_cap: usize) -> Limiter {
        Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_cap)
                .trap_on_grow_failure(true)
                .build(),
            memory_cap,
            memory_used: 0,
            memory_refused: false,
        }
    }
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

/// Maps a failed instantiation or call to an [`ExecError`].
pub(crate) fn classify(
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
