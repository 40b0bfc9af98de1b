//! `cyfr secret …` and `cyfr encrypt`. Values travel to the server once and never back.

use crate::{s, Output, Remote, SecretAction};
use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value as Json};
use std::io::{BufRead, IsTerminal, Write};
use zeroize::Zeroizing;

/// Reads one line from stdin (prompting on a terminal), without the newline.
pub fn read_stdin(prompt: &str) -> Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
    }
    let mut line = Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the secret from stdin")?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string());
    if trimmed.is_empty() {
        bail!("no secret given on stdin");
    }
    Ok(trimmed)
}

/// Seals `value` to a base64 X25519 public key (libsodium `crypto_box_seal`); base64 out.
pub fn seal(public_key_b64: &str, value: &[u8]) -> Result<String> {
    let pk = base64::engine::general_purpose::STANDARD
        .decode(public_key_b64.trim())
        .context("--public-key must be base64")?;
    let pk: [u8; 32] = pk
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("--public-key must be 32 bytes"))?;
    let sealed = crypto_box::PublicKey::from(pk)
        .seal(&mut crypto_box::aead::OsRng, value)
        .map_err(|_| anyhow::anyhow!("sealing failed"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
}

fn line(v: &Json) -> String {
    let expires = v["expires_at"]
        .as_str()
        .map(|e| format!("  expires {e}"))
        .unwrap_or_default();
    let expired = if v["expired"].as_bool() == Some(true) {
        "  (expired)"
    } else {
        ""
    };
    format!(
        "{:<28} {:<5} {:<14} {:>5} chars  {}{}{}",
        s(v, "name"),
        s(v, "scope"),
        s(v, "masked"),
        v["length"],
        s(v, "fingerprint"),
        expires,
        expired
    )
}

/// Runs a `cyfr secret` subcommand.
pub fn run(action: SecretAction, remote: &Remote, out: &Output) -> Result<()> {
    if let SecretAction::RotateMaster { data_dir } = &action {
        return crate::server::rotate_master(data_dir, out);
    }
    let c = remote.client()?;
    match action {
        SecretAction::Set {
            assignment,
            scope,
            ttl,
        } => {
            let (name, value) = match assignment.split_once('=') {
                Some((n, v)) => (n.to_string(), Zeroizing::new(v.to_string())),
                None => (
                    assignment.clone(),
                    read_stdin(&format!("Value for {assignment}: "))?,
                ),
            };
            let r = c.call("secret", json!({ "action": "set", "name": name, "value": &*value, "scope": scope, "ttl": ttl }))?;
            out.show(&r, || {
                format!(
                    "Stored {} secret {} ({}, {})",
                    s(&r, "scope"),
                    s(&r, "name"),
                    s(&r, "masked"),
                    s(&r, "fingerprint")
                )
            });
        }
        SecretAction::Get { name, scope } => {
            let r = c.call(
                "secret",
                json!({ "action": "get", "name": name, "scope": scope }),
            )?;
            out.show(&r, || line(&r));
        }
        SecretAction::List { scope } => {
            let r = c.call("secret", json!({ "action": "list", "scope": scope }))?;
            out.show(&r, || {
                // `secrets` holds CYFR's names; each one's details are under `details`.
                let list = r["details"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    return "No secrets.".into();
                }
                list.iter().map(line).collect::<Vec<_>>().join("\n")
            });
        }
        SecretAction::Delete { name, scope } => {
            let r = c.call(
                "secret",
                json!({ "action": "delete", "name": name, "scope": scope }),
            )?;
            out.show(&r, || {
                if r["deleted"] == json!(true) {
                    format!("Deleted {}", s(&r, "name"))
                } else {
                    format!("No secret {}", s(&r, "name"))
                }
            });
        }
        SecretAction::Clear => {
            let r = c.call("secret", json!({ "action": "clear", "scope": "user" }))?;
            out.show(&r, || {
                format!("Deleted {} of your own secrets", r["deleted"])
            });
        }
        SecretAction::Grant { args, no_user_keys } => {
            let (reference, name) = crate::catalog::ref_and_name(&args)?;
            let r = c.call("secret", json!({ "action": "grant", "reference": reference, "name": name, "allow_user_keys": !no_user_keys }))?;
            out.show(&r, || {
                format!("Granted {} to {}", s(&r, "name"), s(&r, "reference"))
            });
        }
        SecretAction::Revoke { args } => {
            let (reference, name) = crate::catalog::ref_and_name(&args)?;
            let r = c.call(
                "secret",
                json!({ "action": "revoke", "reference": reference, "name": name }),
            )?;
            out.show(&r, || {
                format!("Revoked {} from {}", s(&r, "name"), s(&r, "reference"))
            });
        }
        SecretAction::CanAccess { args } => {
            let (reference, name) = crate::catalog::ref_and_name(&args)?;
            let r = c.call(
                "secret",
                json!({ "action": "can_access", "reference": reference, "name": name }),
            )?;
            out.show(&r, || {
                format!(
                    "{} {} read {}",
                    s(&r, "reference"),
                    if r["allowed"] == json!(true) {
                        "may"
                    } else {
                        "may not"
                    },
                    s(&r, "name")
                )
            });
        }
        SecretAction::Import { prefix, scope } => {
            let mut imported = Vec::new();
            for (k, v) in std::env::vars() {
                let Some(provider) = k.strip_prefix(&prefix).filter(|p| !p.is_empty()) else {
                    continue;
                };
                let v = Zeroizing::new(v);
                let name = provider.to_ascii_lowercase();
                c.call(
                    "secret",
                    json!({ "action": "set", "name": name, "value": &*v, "scope": scope }),
                )?;
                imported.push(name);
            }
            imported.sort();
            let r = json!({ "imported": imported, "scope": scope });
            out.show(&r, || {
                if imported.is_empty() {
                    format!("No {prefix}* variables found")
                } else {
                    format!("Imported {}", imported.join(", "))
                }
            });
        }
        SecretAction::RotateMaster { .. } => unreachable!("handled above"),
    }
    Ok(())
}
