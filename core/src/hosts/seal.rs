//! A run's secret-bearing fields sealed to a remote host's X25519 key (libsodium sealed
//! boxes), so they cross the network only that way.

use crate::dispatch::DispatchError;
use crate::env::Env;
use crate::host_api::{HostTarget, RunRequest};
use zeroize::Zeroizing;

/// The platform's randomness ([`Env::fill_random`]) as the RNG `crypto_box` wants.
pub struct EnvRng<'a, E: Env>(pub &'a E);

impl<E: Env> rand_core::RngCore for EnvRng<'_, E> {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_random(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill_random(dest);
        Ok(())
    }
}

impl<E: Env> rand_core::CryptoRng for EnvRng<'_, E> {}

/// `plain` sealed to `host`'s key, base64.
pub fn seal(env: &impl Env, host: &HostTarget, plain: &[u8]) -> Result<String, DispatchError> {
    let sealed = crypto_box::PublicKey::from(host.public_key)
        .seal(&mut EnvRng(env), plain)
        .map_err(|_| DispatchError::Unreachable("sealing for the host failed".into()))?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        sealed,
    ))
}

/// `value` as JSON, sealed to `host`.
fn seal_json(
    env: &impl Env,
    host: &HostTarget,
    value: &impl serde::Serialize,
) -> Result<String, DispatchError> {
    let plain = Zeroizing::new(
        serde_json::to_vec(value).map_err(|e| DispatchError::Unreachable(e.to_string()))?,
    );
    seal(env, host, &plain)
}

/// The JSON body of `req` for a host: as is for the in-process host (`None`); for a remote
/// one, secrets, callback, redactions and an input holding opened secrets are sealed to its
/// key and cleared in clear.
pub fn run_body(
    env: &impl Env,
    host: Option<&HostTarget>,
    req: &RunRequest,
) -> Result<Vec<u8>, DispatchError> {
    let json = |v: &RunRequest| {
        serde_json::to_vec(v).map_err(|e| DispatchError::Unreachable(e.to_string()))
    };
    let Some(host) = host else {
        return json(req);
    };
    let mut req = req.clone();
    if !req.secrets.is_empty() {
        req.sealed_secrets = Some(seal_json(env, host, &req.secrets)?);
    }
    req.secrets.clear();
    if req.input_holds_secrets {
        req.sealed_input = Some(seal_json(env, host, &req.input)?);
        req.input.clear();
    }
    if !req.redact.is_empty() {
        req.sealed_redact = Some(seal_json(env, host, &req.redact)?);
        req.redact.clear();
    }
    if let Some(callback) = req.callback.take() {
        req.sealed_callback = Some(seal_json(env, host, &callback)?);
    }
    json(&req)
}
