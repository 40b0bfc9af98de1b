//! `cyfr:formula/formula`: `run(input) -> string` that may invoke other components
//! (`cyfr:formula/invoke`) and MCP tools (`cyfr:mcp/tools`), each call forwarded to the router
//! of its callback by the run's [`FormulaSession`].

use tokio::time::Instant;
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::Store;

use super::{RunState, World};
use crate::executor::limits::LEAF_RESERVE;
use crate::formula::{FormulaSession, RouterLink};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../guest-wit/formula",
        world: "cyfr:formula/formula",
        imports: { default: async },
        exports: { default: async },
    });
}

/// The formula world.
pub(crate) struct Formula;

/// A formula run's store data: its session back to the router is always there.
type State = RunState<FormulaSession>;

impl World for Formula {
    const NAME: &'static str = "cyfr:formula/formula";
    // Formulas waiting on their children can then never hold every slot those children need.
    const KEEP_FREE: u32 = LEAF_RESERVE;
    type Host = FormulaSession;
    type Given<'a> = &'a RouterLink;
    type Pre = bindings::FormulaPre<State>;

    fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
        bindings::Formula::add_to_linker::<State, HasSelf<State>>(linker, |state| state)
    }

    fn pre(pre: InstancePre<State>) -> wasmtime::Result<Self::Pre> {
        bindings::FormulaPre::new(pre)
    }

    fn host(link: &RouterLink, deadline: Instant) -> FormulaSession {
        FormulaSession::new(link.clone(), deadline)
    }

    async fn call(
        pre: &Self::Pre,
        store: &mut Store<State>,
        input: &str,
    ) -> wasmtime::Result<String> {
        let instance = pre.instantiate_async(&mut *store).await?;
        instance
            .cyfr_formula_run()
            .call_run(&mut *store, input)
            .await
    }
}

impl bindings::cyfr::formula::invoke::Host for State {
    async fn call(&mut self, json_request: String) -> String {
        self.host.call(&json_request).await
    }

    async fn call_batch(&mut self, json_request: String) -> String {
        self.host.call_batch(&json_request)
    }

    async fn poll(&mut self, json_request: String) -> String {
        self.host.poll(&json_request)
    }

    async fn poll_all(&mut self, json_request: String) -> String {
        self.host.poll_all(&json_request)
    }

    async fn close(&mut self, json_request: String) -> String {
        self.host.close(&json_request)
    }
}

impl bindings::cyfr::mcp::tools::Host for State {
    async fn call(&mut self, json_request: String) -> String {
        self.host.tool(&json_request).await
    }
}
