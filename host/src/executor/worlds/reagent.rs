//! `cyfr:reagent/reagent`: pure compute, `compute(input) -> string`, WASI only.

use tokio::time::Instant;
use wasmtime::component::{InstancePre, Linker};
use wasmtime::Store;

use super::{RunState, World};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../guest-wit",
        world: "cyfr:reagent/reagent",
        imports: { default: async },
        exports: { default: async },
    });
}

/// The reagent world.
pub(crate) struct Reagent;

impl World for Reagent {
    const NAME: &'static str = "cyfr:reagent/reagent";
    type Host = ();
    type Given<'a> = ();
    type Pre = bindings::ReagentPre<RunState<()>>;

    fn add_to_linker(_linker: &mut Linker<RunState<()>>) -> wasmtime::Result<()> {
        Ok(()) // WASI only
    }

    fn pre(pre: InstancePre<RunState<()>>) -> wasmtime::Result<Self::Pre> {
        bindings::ReagentPre::new(pre)
    }

    fn host(_given: (), _deadline: Instant) {}

    async fn call(
        pre: &Self::Pre,
        store: &mut Store<RunState<()>>,
        input: &str,
    ) -> wasmtime::Result<String> {
        let instance = pre.instantiate_async(&mut *store).await?;
        instance
            .cyfr_reagent_compute()
            .call_compute(&mut *store, input)
            .await
    }
}
