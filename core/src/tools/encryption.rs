//! `get_encryption_instructions`: this session's public key and how to seal a secret to it.

use super::decl::{actions, NoArgs};
use super::Call;
use crate::access::Need;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::secrets::sealed;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str = "How to send a secret without the plaintext passing through this conversation: this session's public key and the steps to seal a value to it.";

actions! {
    /// The `get_encryption_instructions` tool's one action.
    tool "get_encryption_instructions": Action, Calls {
        Get = "get", NoArgs, Need::Authenticated, false;
    }
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    call: &Call<'_>,
    Calls::Get(NoArgs {}): Calls,
) -> Result<Json> {
    if !cx.config.session_encryption {
        return Err(Error::invalid_params("Session encryption is not enabled"));
    }
    let session = call.session_hash.ok_or_else(|| {
        Error::new(
            Code::SessionRequired,
            "session encryption keys belong to an MCP session: initialize and send MCP-Session-Id",
        )
    })?;
    let key = sealed::public_info(
        &cx.db,
        cx.kms()?,
        &cx.env,
        session,
        cx.env.now_ms() + cx.config.session_ttl_ms,
    )
    .await?;
    let pk = key["public_key"].as_str().unwrap_or_default().to_string();
    let kid = key["kid"].as_str().unwrap_or_default().to_string();
    Ok(json!({
        "enabled": true,
        "resource": sealed::PUBKEY_URI,
        "key": key,
        "steps": [
            "Seal the secret on your own machine to `public_key` with libsodium's sealed box (crypto_box_seal: X25519 + XSalsa20-Poly1305).",
            "Base64-encode the ciphertext (at most 65536 bytes before encoding).",
            "Send {\"ciphertext\": \"<base64>\", \"kid\": \"<kid>\"} as `value` of secret.set, or inside `encrypted_secrets` (dotted path → sealed object) of any tool call.",
            "The ciphertext only works in this session; re-seal after reconnecting."
        ],
        "examples": {
            "cyfr": format!("cyfr encrypt --kid={kid} --public-key={pk}   # reads the secret from stdin"),
            "python": format!("python3 -c \"import base64,nacl.public; pk=nacl.public.PublicKey(base64.b64decode('{pk}')); print(base64.b64encode(nacl.public.SealedBox(pk).encrypt(input('Secret: ').encode())).decode())\""),
        },
    }))
}
