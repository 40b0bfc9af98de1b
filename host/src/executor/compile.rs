//! Compiled code: components compiled from verified artifacts or loaded from the sealed disk
//! cache ([`crate::code_cache`]), and per world the pre-linked instance templates by digest.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use super::artifacts::Artifacts;
use super::worlds::{self, RunState, World};
use super::{lock, ExecError};
use crate::code_cache::CodeCache;

/// What every world's templates share: the engine, the artifacts, the disk cache, and one
/// lock per digest being compiled.
pub(crate) struct Compiler {
    pub(crate) engine: Engine,
    pub(crate) artifacts: Artifacts,
    /// `<cache_dir>/compiled`: sealed compiled code by digest.
    pub(crate) compiled: CodeCache,
    /// One lock per digest being compiled or loaded, so concurrent first runs of the same
    /// digest compile it once (the others wait, then take the result from the templates).
    preparing: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Components compiled from wasm (for tests and diagnostics).
    pub(crate) compiles: AtomicU64,
    /// Components loaded from the on-disk compiled cache.
    pub(crate) disk_loads: AtomicU64,
}

impl Compiler {
    /// A compiler for `engine` over these stores.
    pub(crate) fn new(engine: Engine, artifacts: Artifacts, compiled: CodeCache) -> Compiler {
        Compiler {
            engine,
            artifacts,
            compiled,
            preparing: Mutex::new(HashMap::new()),
            compiles: AtomicU64::new(0),
            disk_loads: AtomicU64::new(0),
        }
    }

    /// The component of `hex`: from the disk cache, else compiled from the artifact.
    fn component(&self, hex: &str, digest: &str) -> Result<Component, ExecError> {
        if !self.artifacts.has_hex(hex) {
            return Err(ExecError::ArtifactMissing {
                digest: digest.to_string(),
            });
        }
        match self.load_compiled(hex) {
            Some(component) => Ok(component),
            None => self.compile(hex, digest),
        }
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
        let bytes = self.artifacts.read_verified(hex, digest)?;
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
}

/// One world's linker and its instance templates by digest hex. The locks are held only for
/// lookups and inserts, never while compiling or running a guest.
pub(crate) struct Templates<W: World> {
    linker: Linker<RunState<W::Host>>,
    ready: Mutex<HashMap<String, W::Pre>>,
    /// Digests known not to be valid components of this world (deterministic for a given
    /// engine), so a bad artifact is not recompiled on every request.
    invalid: Mutex<HashMap<String, String>>,
    world: PhantomData<W>,
}

impl<W: World> Templates<W> {
    /// No templates yet; imports linked for `W`.
    pub(crate) fn new(engine: &Engine) -> wasmtime::Result<Templates<W>> {
        Ok(Templates {
            linker: worlds::linker::<W>(engine)?,
            ready: Mutex::new(HashMap::new()),
            invalid: Mutex::new(HashMap::new()),
            world: PhantomData,
        })
    }

    /// Returns the pre-linked instance template for `hex`, compiling or loading it if needed.
    pub(crate) fn prepare(
        &self,
        compiler: &Compiler,
        hex: &str,
        digest: &str,
    ) -> Result<W::Pre, ExecError> {
        if let Some(pre) = self.cached(hex)? {
            return Ok(pre);
        }
        let gate = Arc::clone(
            lock(&compiler.preparing)
                .entry(hex.to_string())
                .or_default(),
        );
        let result = {
            let _one_at_a_time = lock(&gate);
            match self.cached(hex) {
                Ok(Some(pre)) => Ok(pre),
                Err(e) => Err(e),
                Ok(None) => self.link(compiler, hex, digest),
            }
        };
        lock(&compiler.preparing).remove(hex);
        if let Err(ExecError::InvalidComponent(msg)) = &result {
            lock(&self.invalid).insert(hex.to_string(), msg.clone());
        }
        result
    }

    /// The in-memory verdict for `hex`: ready to instantiate, known invalid, or unknown.
    fn cached(&self, hex: &str) -> Result<Option<W::Pre>, ExecError> {
        if let Some(pre) = lock(&self.ready).get(hex) {
            return Ok(Some(pre.clone()));
        }
        match lock(&self.invalid).get(hex) {
            Some(msg) => Err(ExecError::InvalidComponent(msg.clone())),
            None => Ok(None),
        }
    }

    /// Links the component of `hex` as `W` and keeps the template.
    fn link(&self, compiler: &Compiler, hex: &str, digest: &str) -> Result<W::Pre, ExecError> {
        let component = compiler.component(hex, digest)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| ExecError::InvalidComponent(format!("cannot link as {}: {e}", W::NAME)))?;
        let pre = W::pre(pre).map_err(|e| {
            ExecError::InvalidComponent(format!("not a {} component: {e}", W::NAME))
        })?;
        lock(&self.ready).insert(hex.to_string(), pre.clone());
        Ok(pre)
    }
}
