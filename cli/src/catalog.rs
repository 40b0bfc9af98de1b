//! The registry from the command line: `register`, `search`, `inspect`, `component …`,
//! and `guide …` (cyfr's guides and a component's README).

use crate::{compile, joined, s, Output, Remote};
use anyhow::{Context, Result};
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};

/// `cyfr register` arguments.
#[derive(Args)]
pub struct RegisterArgs {
    /// e.g. components/reagents/cyfr/json-transform/0.1.0/
    dir: PathBuf,
    /// Replace an already registered version that has different bytes.
    #[arg(long)]
    replace: bool,
}

/// `cyfr search` (and `cyfr component search`) arguments.
#[derive(Args)]
pub struct SearchArgs {
    /// Text to find in names and descriptions.
    query: Option<String>,
    #[arg(long = "type")]
    ctype: Option<String>,
}

/// `cyfr inspect [type] REF` arguments.
#[derive(Args)]
pub struct InspectArgs {
    /// `[type] REF`, e.g. `c:local.claude:0.1.0` or `catalyst local.claude`.
    #[arg(num_args = 1..=2, value_name = "[TYPE] REF", required = true)]
    target: Vec<String>,
}

/// `cyfr component` subcommands.
#[derive(Subcommand)]
pub enum ComponentAction {
    /// Find components by name or description.
    Search(SearchArgs),
    /// Show a component's manifest, versions, digest and policy.
    Inspect(InspectArgs),
    /// The component types and how many components each holds.
    Categories,
}

/// `cyfr guide` subcommands.
#[derive(Subcommand)]
pub enum GuideAction {
    /// The guides there are.
    List,
    /// Print a guide: integration-guide or component-guide.
    Get { name: String },
    /// Print a registered component's README.
    Readme(InspectArgs),
}

/// `[type] REF` as the `reference` and `type` arguments (`@` taken as `:`).
pub fn typed(target: &[String]) -> (String, Option<String>) {
    let at = |r: &str| match r.rsplit_once('@') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => format!("{n}:{v}"),
        _ => r.to_string(),
    };
    match target {
        [t, r] => (at(r), Some(t.clone())),
        [r, ..] => (at(r), None),
        [] => (String::new(), None),
    }
}

/// `[TYPE] REF NAME` as one typed reference and the name (tools without a `type`
/// argument get the type written into the reference, as CYFR's CLI does).
pub fn ref_and_name(args: &[String]) -> Result<(String, String)> {
    let Some((name, target)) = args.split_last() else {
        anyhow::bail!("expected [TYPE] REF NAME");
    };
    let (reference, ctype) = typed(target);
    let typed_already = reference
        .split_once(':')
        .is_some_and(|(t, _)| ["reagent", "catalyst", "formula", "r", "c", "f"].contains(&t));
    let reference = match ctype {
        Some(t) if !typed_already => format!("{t}:{reference}"),
        _ => reference,
    };
    Ok((reference, name.clone()))
}

/// An optional regular file of the component directory, as text (a symlink is not followed).
fn optional_file(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => Ok(Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )),
        Ok(_) => anyhow::bail!("{} is not a regular file", path.display()),
        Err(_) => Ok(None),
    }
}

/// `cyfr register DIR`: builds when stale, then sends the manifest, the wasm, and the
/// directory's README.md and config.json when present.
pub fn register(a: RegisterArgs, remote: &Remote, out: &Output) -> Result<()> {
    let dir = &a.dir;
    if compile::needs_build(dir)? {
        compile::build(dir)?;
    }
    let ctype = compile::manifest_type(dir)?;
    let manifest = std::fs::read_to_string(dir.join("cyfr-manifest.json"))?;
    let wasm =
        std::fs::read(dir.join(format!("{ctype}.wasm"))).context("reading the component's wasm")?;
    let r = remote.client()?.call(
        "component",
        json!({
            "action": "register",
            "manifest": manifest,
            "wasm": base64::engine::general_purpose::STANDARD.encode(wasm),
            "replace": a.replace,
            "readme": optional_file(dir, "README.md")?,
            "config": optional_file(dir, "config.json")?,
        }),
    )?;
    out.show(&r, || {
        format!("Registered {} ({})", s(&r, "reference"), s(&r, "digest"))
    });
    Ok(())
}

/// `cyfr search`.
pub fn search(a: SearchArgs, remote: &Remote, out: &Output) -> Result<()> {
    let r = remote.client()?.call(
        "component",
        json!({ "action": "search", "query": a.query.unwrap_or_default(), "type": a.ctype }),
    )?;
    out.show(&r, || {
        let list = r["components"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            return "No components found.".into();
        }
        list.iter()
            .map(|c| format!("{:<45} {}", s(c, "reference"), s(c, "description")))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// `cyfr inspect`.
pub fn inspect(a: InspectArgs, remote: &Remote, out: &Output) -> Result<()> {
    let (reference, ctype) = typed(&a.target);
    let r = remote.client()?.call(
        "component",
        json!({ "action": "inspect", "reference": reference, "type": ctype }),
    )?;
    out.show(&r, || {
        let p = &r["policy"];
        format!(
            "{}\n  {}\n  type:        {}\n  digest:      {}\n  registered:  {}\n  versions:    {}\n  domains:     {}\n  timeout:     {}\n  rate limit:  {}/{}",
            s(&r, "reference"),
            s(&r, "description"),
            s(&r, "type"),
            s(&r, "digest"),
            s(&r, "registered_at"),
            joined(&r["versions"]),
            joined(&p["allowed_domains"]),
            s(p, "timeout"),
            p["rate_limit"]["requests"],
            s(&p["rate_limit"], "window"),
        )
    });
    Ok(())
}

/// `cyfr component …`.
pub fn component(action: ComponentAction, remote: &Remote, out: &Output) -> Result<()> {
    match action {
        ComponentAction::Search(a) => search(a, remote, out),
        ComponentAction::Inspect(a) => inspect(a, remote, out),
        ComponentAction::Categories => {
            let r = remote
                .client()?
                .call("component", json!({ "action": "categories" }))?;
            out.show(&r, || {
                lines(&r["categories"], |c| {
                    format!(
                        "{:<10} {:>4}  {}",
                        s(c, "name"),
                        c["count"],
                        s(c, "description")
                    )
                })
            });
            Ok(())
        }
    }
}

/// `cyfr guide …`: markdown printed as is.
pub fn guide(action: GuideAction, remote: &Remote, out: &Output) -> Result<()> {
    let c = remote.client()?;
    let r = match action {
        GuideAction::List => {
            let r = c.call("guide", json!({ "action": "list" }))?;
            out.show(&r, || {
                lines(&r["guides"], |g| {
                    format!("{:<20} {}", s(g, "name"), s(g, "description"))
                })
            });
            return Ok(());
        }
        GuideAction::Get { name } => c.call("guide", json!({ "action": "get", "name": name }))?,
        GuideAction::Readme(a) => {
            let (reference, ctype) = typed(&a.target);
            c.call(
                "guide",
                json!({ "action": "readme", "reference": reference, "type": ctype }),
            )?
        }
    };
    out.show(&r, || s(&r, "content").to_string());
    Ok(())
}

/// One line per element of a JSON list.
pub fn lines(list: &Json, line: impl Fn(&Json) -> String) -> String {
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "None.".into();
    }
    list.iter().map(line).collect::<Vec<_>>().join("\n")
}
