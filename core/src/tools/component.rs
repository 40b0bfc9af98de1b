//! The `component` tool: register, inspect, search, resolve.

use super::decl::actions;
use crate::access::Need;
use crate::args::{fields, loose_bool, loose_u64, opt_str, raw, req_str, required};
use crate::auth::Identity;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::{Dispatch, DispatchError};
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::manifest::Manifest;
use crate::reference::{ComponentType, Reference, Target};
use crate::registry;
use base64::Engine;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str =
    "Search, inspect, resolve and register components in the registry.";

actions! {
    /// The `component` tool's actions.
    tool "component": Action, Calls {
        Search = "search", SearchArgs, Need::Scopes(&["component.search"]), false;
        Resolve = "resolve", RefArgs, Need::Scopes(&["component.search"]), false;
        Inspect = "inspect", RefArgs, Need::Scopes(&["component.info"]), false;
        Register = "register", RegisterArgs, Need::Admin, false;
    }
}

fields!(
    Type = "type",
    Query = "query",
    Ref = "reference",
    Directory = "directory",
    Wasm = "wasm"
);

/// `component.search`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct SearchArgs {
    /// search: text to find in ids and descriptions
    #[serde(default, deserialize_with = "opt_str::<Query, _>")]
    query: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "opt_str::<Type, _>")]
    #[schemars(schema_with = "crate::reference::type_schema")]
    type_hint: Option<String>,
    #[serde(default, deserialize_with = "loose_u64")]
    #[schemars(range(min = 1, max = 200))]
    limit: Option<u64>,
}

/// `component.inspect` and `component.resolve`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct RefArgs {
    /// inspect/resolve: component reference (CYFR: `component_ref`)
    #[serde(
        default,
        alias = "component_ref",
        deserialize_with = "req_str::<Ref, _>"
    )]
    reference: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "opt_str::<Type, _>")]
    #[schemars(schema_with = "crate::reference::type_schema")]
    type_hint: Option<String>,
}

/// `component.register`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct RegisterArgs {
    #[serde(rename = "type", default, deserialize_with = "opt_str::<Type, _>")]
    #[schemars(schema_with = "crate::reference::type_schema")]
    type_hint: Option<String>,
    /// register: component directory on the server, e.g. components/reagents/local/my-tool/0.1.0/
    #[serde(default, deserialize_with = "opt_str::<Directory, _>")]
    directory: Option<String>,
    /// register: cyfr-manifest.json content (object or text), instead of `directory`
    #[serde(default, deserialize_with = "raw")]
    manifest: Option<Json>,
    /// register: the component's wasm, base64, with `manifest`
    #[serde(default, deserialize_with = "req_str::<Wasm, _>")]
    wasm: Option<String>,
    /// register: replace an existing version with different bytes
    #[serde(default, deserialize_with = "loose_bool")]
    replace: Option<bool>,
}

/// A `type` argument, when given, must name one of the three kinds.
fn type_hint(t: Option<&str>) -> Result<Option<ComponentType>> {
    match t {
        None => Ok(None),
        Some(t) => Ok(Some(ComponentType::parse(t).ok_or_else(|| {
            Error::invalid_params(format!(
                "`type` must be reagent, catalyst or formula (got `{t}`)"
            ))
        })?)),
    }
}

/// What `inspect` with `args` will read first: the component, its policy, its versions.
pub(super) fn read_ahead(a: Action, args: &Json) -> Vec<crate::db::Stmt> {
    // Only inspect's arguments are read (register's may hold megabytes of wasm).
    if a != Action::Inspect {
        return Vec::new();
    }
    let Ok(Calls::Inspect(a)) = a.call(args) else {
        return Vec::new();
    };
    let kind = a.type_hint.as_deref().and_then(ComponentType::parse);
    let Some(t) = a
        .reference
        .as_deref()
        .and_then(|r| Target::parse(r, kind).ok())
    else {
        return Vec::new();
    };
    let mut reads = crate::executions::read_ahead_target(&t);
    match &t {
        Target::Typed(r) => reads.push(registry::versions_stmt(r)),
        // Its versions as each type it could be (the lookup decides which is read).
        Target::Untyped(u) => {
            for ctype in [
                ComponentType::Reagent,
                ComponentType::Catalyst,
                ComponentType::Formula,
            ] {
                reads.push(registry::versions_stmt(&Reference {
                    ctype,
                    namespace: u.namespace.clone(),
                    name: u.name.clone(),
                    version: None,
                }));
            }
        }
    }
    reads
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: Calls,
) -> Result<Json> {
    match args {
        Calls::Register(a) => {
            type_hint(a.type_hint.as_deref())?;
            register(cx, who, a).await
        }
        Calls::Search(a) => {
            let kind = type_hint(a.type_hint.as_deref())?;
            let query = a.query.as_deref().unwrap_or("");
            let limit = a.limit.unwrap_or(50).clamp(1, 200) as u32;
            let found = registry::search(&cx.db, query, kind, limit).await?;
            let list: Vec<Json> = found.iter().map(registry::Component::summary).collect();
            // `total` is CYFR's name for the count (of rows returned; no paging here).
            Ok(json!({ "components": list, "count": list.len(), "total": list.len() }))
        }
        Calls::Inspect(a) => {
            let kind = type_hint(a.type_hint.as_deref())?;
            let t = Target::parse(required::<Ref>(&a.reference)?, kind)?;
            let c = registry::find(&cx.db, &t).await?;
            let r = c.as_reference();
            let mut v = c.summary();
            v["manifest"] = c.manifest();
            v["versions"] = json!(registry::versions(&cx.db, &r).await?);
            v["policy"] = crate::policy::effective(&cx.db, &c).await?.to_json();
            Ok(v)
        }
        Calls::Resolve(a) => {
            let kind = type_hint(a.type_hint.as_deref())?;
            let t = Target::parse(required::<Ref>(&a.reference)?, kind)?;
            let c = registry::find(&cx.db, &t).await?;
            // cyfr's four fields, and CYFR's `component` row and `dependencies`.
            Ok(
                json!({ "reference": c.reference, "digest": c.digest, "type": c.ctype.as_str(), "version": c.version, "component_ref": c.reference, "component": c.summary(), "dependencies": [] }),
            )
        }
    }
}

async fn register<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: RegisterArgs,
) -> Result<Json> {
    let replace = args.replace.unwrap_or(false);
    let (manifest, wasm) = match (args.directory.as_deref(), args.manifest.as_ref()) {
        (Some(dir), None) => {
            let loaded = cx.dispatch.load_directory(dir).await.map_err(|e| match e {
                DispatchError::Refused { message, .. } => {
                    Error::new(Code::ComponentInvalid, message)
                }
                other => Error::new(
                    Code::RegistryUnavailable,
                    crate::executions::describe(&other),
                ),
            })?;
            let manifest = Manifest::parse(&loaded.manifest)?;
            (manifest, decode_wasm(&loaded.wasm_base64)?)
        }
        (None, Some(m)) => {
            let manifest = match m {
                Json::String(text) => Manifest::parse(text)?,
                other => Manifest::check(other.clone())?,
            };
            (manifest, decode_wasm(required::<Wasm>(&args.wasm)?)?)
        }
        _ => {
            return Err(Error::invalid_params(
                "register needs either `directory`, or `manifest` with `wasm` (base64)",
            ))
        }
    };
    let c = registry::register(
        &cx.db,
        &manifest,
        &wasm,
        Some(who.id()),
        replace,
        cx.env.now_ms(),
    )
    .await?;
    let mut v = c.summary();
    v["status"] = json!("registered");
    Ok(v)
}

fn decode_wasm(b64: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| {
            Error::new(
                Code::ComponentInvalid,
                "`wasm` must be the component's bytes in standard base64",
            )
        })
}
