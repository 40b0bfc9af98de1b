//! `cyfr policy …` and `cyfr config …`: a component's host policy and its config overrides.

use crate::catalog::{lines, typed};
use crate::{s, Output, Remote};
use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Value as Json};

/// `cyfr policy` subcommands.
#[derive(Subcommand)]
pub enum PolicyAction {
    /// Set one field, keeping the others: `cyfr policy set c:local.claude:0.1.0 timeout '"60s"'`.
    Set {
        /// `[type] REF FIELD VALUE`; VALUE is JSON, or a bare word taken as a string.
        #[arg(num_args = 3..=4, value_name = "[TYPE] REF FIELD VALUE", required = true)]
        args: Vec<String>,
    },
    /// Show a component's policy.
    #[command(alias = "show")]
    Get {
        #[arg(num_args = 1..=2, value_name = "[TYPE] REF", required = true)]
        target: Vec<String>,
    },
    /// List stored policies.
    List,
    /// Remove a stored policy (back to defaults).
    #[command(alias = "reset")]
    Delete {
        #[arg(num_args = 1..=2, value_name = "[TYPE] REF", required = true)]
        target: Vec<String>,
    },
}

/// `cyfr config` subcommands.
#[derive(Subcommand)]
pub enum ConfigAction {
    /// Override one key for every version: `cyfr config set c:local.claude model '"large"'`.
    Set {
        /// `[type] REF KEY VALUE`; VALUE is JSON, or a bare word taken as a string.
        #[arg(num_args = 3..=4, value_name = "[TYPE] REF KEY VALUE", required = true)]
        args: Vec<String>,
    },
    /// Show the effective config: the registered defaults with the overrides over them.
    #[command(alias = "get")]
    Show {
        #[arg(num_args = 1..=2, value_name = "[TYPE] REF", required = true)]
        target: Vec<String>,
    },
    /// Remove an override (back to the default).
    Delete {
        #[arg(num_args = 2..=3, value_name = "[TYPE] REF KEY", required = true)]
        args: Vec<String>,
    },
    /// Components that have overrides.
    List,
}

/// The guide passes JSON ('"60s"', '["a.com"]'); a bare word is taken as a string.
fn value(v: &str) -> Json {
    serde_json::from_str(v).unwrap_or_else(|_| Json::String(v.to_string()))
}

/// `[type] REF` followed by `n` more arguments.
fn split(args: &[String], n: usize) -> Result<(String, Option<String>, Vec<String>)> {
    if args.len() < n + 1 {
        bail!("expected [TYPE] REF and {n} more arguments");
    }
    let (target, rest) = args.split_at(args.len() - n);
    let (reference, ctype) = typed(target);
    Ok((reference, ctype, rest.to_vec()))
}

/// A policy field's value in one line.
fn field(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Array(a) if a.is_empty() => "(none)".into(),
        Json::Array(_) => crate::joined(v),
        Json::Object(o) if o.contains_key("requests") => {
            format!(
                "{}/{}",
                o["requests"],
                o.get("window").and_then(Json::as_str).unwrap_or("")
            )
        }
        other => other.to_string(),
    }
}

/// A policy map as `field: value` lines, `*` marking the fields stored.
fn policy_lines(reference: &str, policy: &Json, set: &Json) -> String {
    let set: Vec<&str> = set
        .as_array()
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let mut out = vec![reference.to_string()];
    if let Some(o) = policy.as_object() {
        for (k, v) in o {
            let mark = if set.contains(&k.as_str()) { "*" } else { " " };
            out.push(format!("{mark} {k:<22} {}", field(v)));
        }
    }
    out.join("\n")
}

/// Runs a `cyfr policy` subcommand.
pub fn policy(action: PolicyAction, remote: &Remote, out: &Output) -> Result<()> {
    let c = remote.client()?;
    match action {
        PolicyAction::Set { args } => {
            let (reference, ctype, rest) = split(&args, 2)?;
            // One field, merged with the stored ones, as CYFR's CLI does: the guide's
            // successive `policy set` lines add up.
            let r = c.call(
                "policy",
                json!({ "action": "update_field", "reference": reference, "type": ctype, "field": rest[0], "value": value(&rest[1]) }),
            )?;
            out.show(&r, || {
                let shown = r["policy"].get(&rest[0]).map(field).unwrap_or_default();
                format!("{}: {} = {}", s(&r, "reference"), rest[0], shown)
            });
        }
        PolicyAction::Get { target } => {
            let (reference, ctype) = typed(&target);
            let r = c.call(
                "policy",
                json!({ "action": "get", "reference": reference, "type": ctype }),
            )?;
            out.show(&r, || {
                policy_lines(s(&r, "reference"), &r["policy"], &r["fields_set"])
            });
        }
        PolicyAction::List => {
            let r = c.call("policy", json!({ "action": "list" }))?;
            out.show(&r, || {
                lines(&r["policies"], |p| {
                    let fields: Vec<String> = p["policy"]
                        .as_object()
                        .map(|o| o.iter().map(|(k, v)| format!("{k}={}", field(v))).collect())
                        .unwrap_or_default();
                    format!("{:<40} {}", s(p, "reference"), fields.join(" "))
                })
            });
        }
        PolicyAction::Delete { target } => {
            let (reference, ctype) = typed(&target);
            let r = c.call(
                "policy",
                json!({ "action": "delete", "reference": reference, "type": ctype }),
            )?;
            out.show(&r, || {
                if r["deleted"] == true {
                    format!("{}: back to the default policy", s(&r, "reference"))
                } else {
                    format!("{}: no policy was stored", s(&r, "reference"))
                }
            });
        }
    }
    Ok(())
}

/// Runs a `cyfr config` subcommand.
pub fn config(action: ConfigAction, remote: &Remote, out: &Output) -> Result<()> {
    let c = remote.client()?;
    match action {
        ConfigAction::Set { args } => {
            let (reference, ctype, rest) = split(&args, 2)?;
            let r = c.call(
                "config",
                json!({ "action": "set", "reference": reference, "type": ctype, "key": rest[0], "value": value(&rest[1]) }),
            )?;
            out.show(&r, || {
                format!(
                    "{}: {} = {}",
                    s(&r, "component_ref"),
                    s(&r, "key"),
                    r["value"]
                )
            });
        }
        ConfigAction::Show { target } => {
            let (reference, ctype) = typed(&target);
            let r = c.call(
                "config",
                json!({ "action": "get_all", "reference": reference, "type": ctype }),
            )?;
            out.show(&r, || {
                let mut text = vec![s(&r, "component_ref").to_string()];
                if let Some(o) = r["config"].as_object() {
                    for (k, v) in o {
                        let mark = if r["overrides"].get(k).is_some() {
                            "*"
                        } else {
                            " "
                        };
                        text.push(format!("{mark} {k:<22} {v}"));
                    }
                }
                text.join("\n")
            });
        }
        ConfigAction::Delete { args } => {
            let (reference, ctype, rest) = split(&args, 1)?;
            let r = c.call(
                "config",
                json!({ "action": "delete", "reference": reference, "type": ctype, "key": rest[0] }),
            )?;
            out.show(&r, || {
                let what = if r["deleted"] == true {
                    "removed"
                } else {
                    "was not set"
                };
                format!("{}: {} {what}", s(&r, "component_ref"), s(&r, "key"))
            });
        }
        ConfigAction::List => {
            let r = c.call("config", json!({ "action": "list" }))?;
            out.show(&r, || {
                lines(&r["components"], |c| {
                    format!("{:<40} {} keys", s(c, "component_ref"), c["keys"])
                })
            });
        }
    }
    Ok(())
}
