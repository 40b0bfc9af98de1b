//! One run, from the input check to its outcome: template, slot, store, call, and the
//! mapping of what happened to an [`ExecOutcome`] or [`ExecError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi::WasiCtxBuilder;

use super::artifacts::parse_digest;
use super::compile::Templates;
use super::limits::{self, Limiter, MAX_MEMORY_CEILING};
use super::pipes::{CappedPipe, LOG_CAP};
use super::slots::{SlotGuard, SlotWait};
use super::worlds::{RunState, World};
use super::{Cancel, ExecError, ExecOutcome, Executor, Guest, Leftovers, RunSpec};

/// How often a run queued for a slot looks again (a freed slot does not wake async waiters).
const SLOT_POLL: Duration = Duration::from_millis(5);

/// What a finished call left: its result (the outer `Err`: the async timeout fired), and
/// what its store knew.
struct Called<H> {
    result: Result<wasmtime::Result<String>, tokio::time::error::Elapsed>,
    duration_ms: u64,
    memory_refused: bool,
    host: H,
}

impl Executor {
    /// Runs `spec` as the world its [`Guest`] names.
    pub(super) async fn run_as_world(
        &self,
        spec: &RunSpec<'_>,
        cancel: &Arc<Cancel>,
        left: &mut Leftovers,
    ) -> Result<ExecOutcome, ExecError> {
        match spec.guest {
            Guest::Reagent => self.run_world(&self.reagents, (), spec, cancel, left).await,
            Guest::Catalyst(ctx) => {
                self.run_world(&self.catalysts, ctx, spec, cancel, left)
                    .await
            }
            Guest::Formula(link) => {
                self.run_world(&self.formulas, link, spec, cancel, left)
                    .await
            }
        }
    }

    /// Runs `spec` as a `W`: input and digest checks, template, slot, store, call, outcome.
    async fn run_world<W: World>(
        &self,
        templates: &Templates<W>,
        given: W::Given<'_>,
        spec: &RunSpec<'_>,
        cancel: &Arc<Cancel>,
        left: &mut Leftovers,
    ) -> Result<ExecOutcome, ExecError> {
        let limits = spec.limits;
        if spec.input.len() > limits.max_input_bytes {
            return Err(ExecError::InputTooLarge {
                size: spec.input.len(),
                limit: limits.max_input_bytes,
            });
        }
        let Some(hex) = parse_digest(spec.digest) else {
            return Err(ExecError::ArtifactMissing {
                digest: spec.digest.to_string(),
            });
        };
        let pre = templates.prepare(&self.compiler, hex, spec.digest)?;
        let limit_ms = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX);
        let (_slot, timeout) = self
            .slot(spec.caller, W::KEEP_FREE, limits.timeout, cancel)
            .await?;

        let memory_cap = limits.max_memory_bytes.min(MAX_MEMORY_CEILING);
        let stdout = CappedPipe::new(LOG_CAP);
        let stderr = CappedPipe::new(LOG_CAP).tapped(spec.stderr_tap.cloned());
        let mut store = self.store::<W>(given, &stdout, &stderr, memory_cap, timeout);
        limits::arm(&mut store, limits.fuel, timeout, cancel)?;
        let called = call::<W>(&pre, store, spec.input, timeout, cancel).await;

        // Kept for a failure; a success moves them into its outcome.
        *left = Leftovers {
            stdout: W::redact(&called.host, stdout.text()),
            stderr: W::redact(&called.host, stderr.text()),
            refusals: W::refusals(&called.host),
        };
        if cancel.is_set() {
            return Err(ExecError::Cancelled);
        }
        let output = match called.result {
            Err(_elapsed) => return Err(ExecError::Timeout { limit_ms }),
            Ok(Err(err)) => {
                let memory_refused = called.memory_refused;
                let err =
                    limits::classify(&err, memory_refused, memory_cap, limit_ms, &stderr.text());
                return Err(match err {
                    ExecError::Trap(msg) => ExecError::Trap(W::redact(&called.host, msg)),
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
            output: W::redact(&called.host, json_or_raw(output)),
            stdout: std::mem::take(&mut left.stdout),
            stderr: std::mem::take(&mut left.stderr),
            duration_ms: called.duration_ms,
            refusals: std::mem::take(&mut left.refusals),
        })
    }

    /// Waits for an instance slot for `caller`, leaving `keep_free` to others; the timeout
    /// covers the wait, so a run never outlives the deadline its caller (or its parent
    /// formula) was promised. Returns the slot and the time left to run. The wait polls
    /// (every [`SLOT_POLL`], or at once on a cancel) instead of blocking the worker thread; it
    /// only happens when all slots are taken.
    async fn slot(
        &self,
        caller: Option<&str>,
        keep_free: u32,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<(SlotGuard<'_>, Duration), ExecError> {
        let queued_at = Instant::now();
        let limit_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = queued_at + timeout;
        let slot = loop {
            // A deadline of now: take a free slot or fail at once, never block.
            match self
                .slots
                .acquire(caller, keep_free, Instant::now(), || cancel.is_set())
            {
                Ok(slot) => break slot,
                Err(SlotWait::TimedOut) if Instant::now() < deadline => {
                    let wait = SLOT_POLL.min(deadline.saturating_duration_since(Instant::now()));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled() => {}
                    }
                }
                Err(SlotWait::Cancelled) => return Err(ExecError::Cancelled),
                Err(SlotWait::TimedOut) => return Err(ExecError::Timeout { limit_ms }),
                Err(SlotWait::Busy { share }) => return Err(ExecError::Busy { share }),
            }
        };
        Ok((slot, timeout.saturating_sub(queued_at.elapsed())))
    }

    /// A store for one run of `W`: stdout and stderr into the pipes, no files, environment
    /// or network, memory capped at `memory_cap` over all its memories.
    fn store<W: World>(
        &self,
        given: W::Given<'_>,
        stdout: &CappedPipe,
        stderr: &CappedPipe,
        memory_cap: u64,
        timeout: Duration,
    ) -> Store<RunState<W::Host>> {
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
        let host = W::host(given, host_deadline);
        let state = RunState::new(wasi, Limiter::new(memory_cap as usize), host);
        let mut store = Store::new(&self.compiler.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
    }
}

/// Instantiates and calls the guest in `store` until it returns, traps, times out or is
/// cancelled; then drops the store, which gives the instance back to the pool.
async fn call<W: World>(
    pre: &W::Pre,
    mut store: Store<RunState<W::Host>>,
    input: &str,
    timeout: Duration,
    cancel: &Cancel,
) -> Called<W::Host> {
    let started = Instant::now();
    // Epoch interruption stops wasm code; the async timeout also stops a guest that is
    // parked inside a host call (e.g. a WASI sleep), which epochs cannot interrupt.
    let result = {
        let run = tokio::time::timeout(timeout, W::call(pre, &mut store, input));
        tokio::select! {
            r = run => r,
            () = cancel.cancelled() => Ok(Err(wasmtime::Error::msg("cancelled"))),
        }
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let memory_refused = store.data().limiter.memory_refused;
    Called {
        result,
        duration_ms,
        memory_refused,
        host: store.into_data().host,
    }
}

/// The guest's output verbatim if it is JSON, else wrapped as `{"raw": "<text>"}`.
pub(super) fn json_or_raw(output: String) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(&output).is_ok() {
        output
    } else {
        serde_json::json!({ "raw": output }).to_string()
    }
}
