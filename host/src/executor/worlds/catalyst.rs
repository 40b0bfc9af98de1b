//! `cyfr:catalyst/catalyst`: `run(input) -> string` with outbound HTTP (`cyfr:http/fetch`,
//! `cyfr:http/streaming`) and granted secrets (`cyfr:secrets/read`), all through the run's
//! [`egress::Session`] under its egress policy. Output and logs come back redacted of the
//! granted secrets.

use std::collections::BTreeMap;
use std::fmt;

use cyfr_core::host_api::Egress;
use tokio::time::Instant;
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::Store;

use super::{RunState, World};
use crate::egress::{self, Refusal};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../guest-wit/catalyst",
        world: "cyfr:catalyst/catalyst",
        imports: { default: async },
        exports: { default: async },
    });
}

/// What a catalyst run may reach: its reference (for messages), the secrets granted to it
/// for this caller, and its egress policy. Its `Debug` shows secret names, never values.
#[derive(Clone)]
pub struct CatalystCtx {
    /// Canonical reference, e.g. `catalyst:local.claude:0.1.0`.
    pub reference: String,
    /// Granted secrets by name (plaintext; never logged, redacted from everything returned).
    pub secrets: BTreeMap<String, String>,
    /// The egress policy every outbound request is checked against.
    pub egress: Egress,
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
        secrets: BTreeMap<String, String>,
        egress: Egress,
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

/// The catalyst world.
pub(crate) struct Catalyst;

/// A catalyst run's store data: its egress session is always there.
type State = RunState<egress::Session>;

impl World for Catalyst {
    const NAME: &'static str = "cyfr:catalyst/catalyst";
    type Host = egress::Session;
    type Given<'a> = &'a CatalystCtx;
    type Pre = bindings::CatalystPre<State>;

    fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
        bindings::Catalyst::add_to_linker::<State, HasSelf<State>>(linker, |state| state)
    }

    fn pre(pre: InstancePre<State>) -> wasmtime::Result<Self::Pre> {
        bindings::CatalystPre::new(pre)
    }

    fn host(ctx: &CatalystCtx, deadline: Instant) -> egress::Session {
        egress::Session::new(
            &ctx.reference,
            &ctx.secrets,
            &ctx.egress,
            ctx.options.clone(),
            deadline,
        )
        .also_redacting(&ctx.redact)
    }

    async fn call(
        pre: &Self::Pre,
        store: &mut Store<State>,
        input: &str,
    ) -> wasmtime::Result<String> {
        let instance = pre.instantiate_async(&mut *store).await?;
        instance
            .cyfr_catalyst_run()
            .call_run(&mut *store, input)
            .await
    }

    // A catalyst's output and logs never carry a granted secret, whatever the guest did.
    fn redact(session: &egress::Session, text: String) -> String {
        session.redact(&text)
    }

    fn refusals(session: &egress::Session) -> Vec<Refusal> {
        session.refusals().to_vec()
    }
}

impl bindings::cyfr::http::fetch::Host for State {
    async fn request(&mut self, json_request: String) -> String {
        self.host.fetch(&json_request).await
    }
}

impl bindings::cyfr::http::streaming::Host for State {
    async fn request(&mut self, json_request: String) -> String {
        self.host.stream_open(&json_request).await
    }

    async fn read(&mut self, handle: String) -> String {
        self.host.stream_read(&handle).await
    }

    async fn close(&mut self, handle: String) -> String {
        self.host.stream_close(&handle)
    }
}

impl bindings::cyfr::secrets::read::Host for State {
    async fn get(&mut self, name: String) -> Result<String, String> {
        self.host.secret(&name)
    }
}
