//! `cyfr run`: run a component (`run [type] REF`, `@` as the version separator, a local
//! `.wasm` path), or look at runs (`--list`, `--logs ID`, `--cancel ID`).

use crate::{pretty, s, Output, Remote};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value as Json};

/// `cyfr run` arguments.
#[derive(Args)]
pub struct RunArgs {
    /// `[type] REF`: e.g. `c:local.claude:0.1.0`, `catalyst local.claude@0.1.0`, or a path
    /// to a .wasm file in the components directory.
    #[arg(num_args = 0..=2, value_name = "[TYPE] REF")]
    target: Vec<String>,
    /// JSON input.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Component type, when the reference omits it.
    #[arg(long = "type")]
    ctype: Option<String>,
    /// List recent runs instead.
    #[arg(long, conflicts_with_all = ["logs", "cancel"])]
    list: bool,
    /// With --list: how many.
    #[arg(long, requires = "list")]
    limit: Option<u64>,
    /// Show a run's status, output streams and refusals.
    #[arg(long, value_name = "EXECUTION_ID", conflicts_with = "cancel")]
    logs: Option<String>,
    /// Cancel a running execution.
    #[arg(long, value_name = "EXECUTION_ID")]
    cancel: Option<String>,
}

/// What `run`'s positional arguments name: the reference (a string, or `{"local": path}`)
/// and the type if one was given in front.
fn target(args: &[String], flag_type: Option<String>) -> Result<(Json, Option<String>)> {
    let (ctype, reference) = match args {
        [r] => (flag_type, r.clone()),
        [t, r] => {
            if flag_type.is_some() {
                bail!("give the type once: `cyfr run TYPE REF` or `--type`");
            }
            (Some(t.clone()), r.clone())
        }
        _ => bail!("name a component: `cyfr run [type] REF` (or --list, --logs ID, --cancel ID)"),
    };
    let is_path = reference.ends_with(".wasm")
        || reference.starts_with("./")
        || reference.starts_with('/')
        || reference.starts_with("../");
    if is_path {
        return Ok((json!({ "local": reference }), ctype));
    }
    Ok((json!(version_at(&reference)), ctype))
}

/// `name@1.0.0` as `name:1.0.0` (CYFR's CLI takes both).
fn version_at(reference: &str) -> String {
    match reference.rsplit_once('@') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => {
            format!("{name}:{version}")
        }
        _ => reference.to_string(),
    }
}

/// Runs `cyfr run`.
pub fn run(a: RunArgs, remote: &Remote, out: &Output) -> Result<()> {
    let c = remote.client()?;
    if a.list {
        let r = c.call("execution", json!({ "action": "list", "limit": a.limit }))?;
        out.show(&r, || {
            let list = r["executions"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                return "No executions.".into();
            }
            list.iter()
                .map(|e| {
                    format!(
                        "{:<38} {:<10} {:<40} {}",
                        s(e, "execution_id"),
                        s(e, "status"),
                        s(e, "reference"),
                        s(e, "started_at")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
        return Ok(());
    }
    if let Some(id) = a.logs {
        let r = c.call("execution", json!({ "action": "logs", "execution_id": id }))?;
        out.show(&r, || {
            let mut text = format!("{} {}", s(&r, "execution_id"), s(&r, "status"));
            if let Some(e) = r.get("error").filter(|e| !e.is_null()) {
                text.push_str(&format!(
                    "\nerror: {}",
                    e.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| e.to_string())
                ));
            }
            for stream in ["stdout", "stderr"] {
                let t = s(&r, stream);
                if !t.is_empty() {
                    text.push_str(&format!("\n--- {stream}\n{}", t.trim_end()));
                }
            }
            text
        });
        return Ok(());
    }
    if let Some(id) = a.cancel {
        let r = c.call(
            "execution",
            json!({ "action": "cancel", "execution_id": id }),
        )?;
        out.show(&r, || {
            if r["cancelled"] == true {
                format!("Cancelled {}", s(&r, "execution_id"))
            } else {
                format!(
                    "{} was not running ({})",
                    s(&r, "execution_id"),
                    s(&r, "status")
                )
            }
        });
        return Ok(());
    }
    let (reference, ctype) = target(&a.target, a.ctype)?;
    let input: Json = serde_json::from_str(&a.input).context("--input must be JSON")?;
    let mut args = json!({ "action": "run", "reference": reference, "input": input });
    if let Some(t) = ctype {
        args["type"] = json!(t);
    }
    let r = c.call("execution", args)?;
    out.show(&r, || {
        format!(
            "{}\n{} {} in {} ms ({})",
            pretty(&r["result"]),
            s(&r, "reference"),
            s(&r, "status"),
            r["duration_ms"],
            s(&r, "execution_id")
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_targets_take_a_type_in_front_at_versions_and_local_paths() {
        let t = |args: &[&str], flag: Option<&str>| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            target(&args, flag.map(String::from)).map_err(|e| e.to_string())
        };
        assert_eq!(
            t(&["c:local.claude@0.1.0"], None),
            Ok((json!("c:local.claude:0.1.0"), None))
        );
        assert_eq!(
            t(&["catalyst", "local.claude"], None),
            Ok((json!("local.claude"), Some("catalyst".into())))
        );
        assert_eq!(
            t(&["components/reagents/local/x/0.1.0/reagent.wasm"], None),
            Ok((
                json!({ "local": "components/reagents/local/x/0.1.0/reagent.wasm" }),
                None
            ))
        );
        assert!(t(&["c", "local.x"], Some("reagent")).is_err());
        assert!(t(&[], None).is_err());
    }
}
