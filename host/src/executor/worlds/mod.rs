//! The component worlds the executor runs, one module each: its bindings, its host functions
//! and the state they hold. A run's store type names its world (`RunState<()>` for a reagent,
//! `RunState<egress::Session>` for a catalyst, `RunState<FormulaSession>` for a formula), so a
//! host function can only ever be called with the state it needs.

use std::future::Future;

use tokio::time::Instant;
use wasmtime::component::{InstancePre, Linker, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::Limiter;
use crate::egress::Refusal;

pub(crate) mod catalyst;
pub(crate) mod formula;
pub(crate) mod reagent;

pub(crate) use catalyst::Catalyst;
pub(crate) use formula::Formula;
pub(crate) use reagent::Reagent;

/// Per-execution store data: WASI (no files, env or network), the memory limiter, and what
/// the world's own host functions hold (`host`).
pub(crate) struct RunState<H> {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The run's memory limiter.
    pub(crate) limiter: Limiter,
    /// The world's host-function state.
    pub(crate) host: H,
}

impl<H> RunState<H> {
    /// A fresh run's state.
    pub(crate) fn new(wasi: WasiCtx, limiter: Limiter, host: H) -> RunState<H> {
        RunState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            host,
        }
    }
}

impl<H: Send> WasiView for RunState<H> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// One component world: how it is linked, what its runs are given, how it is called.
pub(crate) trait World: Sized + 'static {
    /// The world's WIT name, e.g. `cyfr:reagent/reagent` (for messages).
    const NAME: &'static str;
    /// Instance slots a run of this world must leave free for others.
    const KEEP_FREE: u32 = 0;
    /// What this world's host functions hold during a run.
    type Host: Send + 'static;
    /// What a caller hands a run of this world.
    type Given<'a>;
    /// A pre-linked instance template of this world.
    type Pre: Clone + Send + Sync + 'static;

    /// Adds the world's own imports (beyond WASI) to `linker`.
    fn add_to_linker(linker: &mut Linker<RunState<Self::Host>>) -> wasmtime::Result<()>;

    /// Checks that a linked component is of this world (its exports).
    fn pre(pre: InstancePre<RunState<Self::Host>>) -> wasmtime::Result<Self::Pre>;

    /// The host-function state of one run, whose host calls end by `deadline`.
    fn host(given: Self::Given<'_>, deadline: Instant) -> Self::Host;

    /// Instantiates the template in `store` and calls its export with `input`.
    fn call(
        pre: &Self::Pre,
        store: &mut Store<RunState<Self::Host>>,
        input: &str,
    ) -> impl Future<Output = wasmtime::Result<String>>;

    /// `text` without anything the run must not hand back (a catalyst's secrets).
    fn redact(_host: &Self::Host, text: String) -> String {
        text
    }

    /// The outbound requests the run was refused, in order.
    fn refusals(_host: &Self::Host) -> Vec<Refusal> {
        Vec::new()
    }
}

/// A linker for `W`: WASI 0.2 and the world's own imports, nothing else.
pub(crate) fn linker<W: World>(
    engine: &wasmtime::Engine,
) -> wasmtime::Result<Linker<RunState<W::Host>>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    W::add_to_linker(&mut linker)?;
    Ok(linker)
}
