//! `cyfr key …`: API keys, by name (`cyfr key revoke my-app` or `--name my-app`).

use crate::{joined, s, Output, Remote};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

/// `cyfr key` subcommands.
#[derive(Subcommand)]
pub enum KeyAction {
    /// Create a key; the raw key is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// public, secret or admin.
        #[arg(long = "type", default_value = "secret")]
        key_type: String,
        /// Scopes, e.g. execution,component.search (repeatable; commas also separate).
        #[arg(long)]
        scope: Vec<String>,
        /// e.g. 100/1m
        #[arg(long)]
        rate_limit: Option<String>,
        /// IPs and CIDRs (repeatable; commas also separate).
        #[arg(long)]
        ip_allowlist: Vec<String>,
    },
    /// Show one key (never its raw value).
    Get(KeyName),
    /// List keys by name, type, scope and prefix.
    List {
        #[arg(long)]
        include_revoked: bool,
    },
    /// Replace a key with a new one; the old one stops working at once.
    Rotate(KeyName),
    /// Revoke a key; effective on the next request.
    Revoke(KeyName),
}

/// A key's name, as CYFR's CLI takes it (positional) or as the guide writes it (`--name`).
#[derive(Args)]
pub struct KeyName {
    /// The key's name.
    #[arg(value_name = "NAME")]
    positional: Option<String>,
    /// The key's name (the same as NAME).
    #[arg(long = "name", conflicts_with = "positional")]
    flag: Option<String>,
}

impl KeyName {
    fn name(self) -> Result<String> {
        match self.positional.or(self.flag) {
            Some(n) => Ok(n),
            None => bail!("name the key: `cyfr key ACTION NAME` (or --name NAME)"),
        }
    }
}

/// Repeated flags, each of which may also hold a comma-separated list.
fn split(values: &[String]) -> Option<Vec<String>> {
    let all: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect();
    (!all.is_empty()).then_some(all)
}

/// Runs a `cyfr key` subcommand.
pub fn run(action: KeyAction, remote: &Remote, out: &Output) -> Result<()> {
    let c = &remote.client()?;
    match action {
        KeyAction::Create {
            name,
            key_type,
            scope,
            rate_limit,
            ip_allowlist,
        } => {
            let r = c.call(
                "key",
                json!({ "action": "create", "name": name, "type": key_type, "scope": split(&scope), "rate_limit": rate_limit, "ip_allowlist": split(&ip_allowlist) }),
            )?;
            out.show(&r, || created(&r));
        }
        KeyAction::Rotate(n) => {
            let r = c.call("key", json!({ "action": "rotate", "name": n.name()? }))?;
            out.show(&r, || created(&r));
        }
        KeyAction::Get(n) => {
            let r = c.call("key", json!({ "action": "get", "name": n.name()? }))?;
            out.show(&r, || key_line(&r));
        }
        KeyAction::List { include_revoked } => {
            let r = c.call(
                "key",
                json!({ "action": "list", "include_revoked": include_revoked }),
            )?;
            out.show(&r, || {
                let keys = r["keys"].as_array().cloned().unwrap_or_default();
                if keys.is_empty() {
                    return "No keys.".into();
                }
                keys.iter().map(key_line).collect::<Vec<_>>().join("\n")
            });
        }
        KeyAction::Revoke(n) => {
            let r = c.call("key", json!({ "action": "revoke", "name": n.name()? }))?;
            out.show(&r, || {
                format!("Revoked key \"{}\" ({})", s(&r, "name"), s(&r, "prefix"))
            });
        }
    }
    Ok(())
}

fn created(r: &Json) -> String {
    format!(
        "Created {} key \"{}\" (scope: {})\n\n    {}\n\nStore it now: it is shown only this once.",
        s(r, "type"),
        s(r, "name"),
        joined(&r["scope"]),
        s(r, "key")
    )
}

fn key_line(k: &Json) -> String {
    let revoked = if k["revoked"].as_bool() == Some(true) {
        "  (revoked)"
    } else {
        ""
    };
    format!(
        "{:<20} {:<7} {:<16} {:<30} {}{}",
        s(k, "name"),
        s(k, "type"),
        s(k, "prefix"),
        joined(&k["scope"]),
        s(k, "created_at"),
        revoked
    )
}
