//! The `component` tool: register, inspect, search, resolve.

use super::decl::{actions, NoArgs};
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
        Categories = "categories", NoArgs, Need::Scopes(&["component.search"]), false;
        GetBlob = "get_blob", BlobArgs, Need::Scopes(&["component.info"]), false;
        Publish = "publish", PublishArgs, Need::Admin, false;
        Pull = "pull", RefArgs, Need::Scopes(&["component.info"]), false;
    }
}

fields!(
    Type = "type",
    Query = "query",
    Ref = "reference",
    Directory = "directory",
    Wasm = "wasm",
    Readme = "readme",
    Digest = "digest",
    Description = "description"
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

/// The component meant: by `component.inspect`/`resolve`/`pull`, `config` and `guide.readme`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct RefArgs {
    /// Component reference, with or without version (CYFR: `component_ref`)
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
    /// register: the directory's README.md, with `manifest` (shown by guide.readme)
    #[serde(default, deserialize_with = "opt_str::<Readme, _>")]
    readme: Option<String>,
    /// register: the directory's config.json (object or text), with `manifest`: config defaults
    #[serde(default, deserialize_with = "raw")]
    #[schemars(schema_with = "object_or_text")]
    config: Option<Json>,
}

fn object_or_text(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["object", "string"] })
}

impl RefArgs {
    /// The reference, typed by `type` when it has no type of its own.
    pub(super) fn reference(&self) -> Result<Reference> {
        let kind = crate::reference::type_hint(self.type_hint.as_deref())?;
        Reference::parse(required::<Ref>(&self.reference)?, kind)
    }
}

/// What `inspect` with `args` will read first: the component, its policy, its versions.
/// (Register and publish read inside their own atomic batch: nothing to send ahead.)
pub(super) fn read_ahead(a: Action, args: &Json) -> Vec<crate::db::Stmt> {
    match a {
        Action::Inspect => {}
        _ => return Vec::new(),
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
            crate::reference::type_hint(a.type_hint.as_deref())?;
            register(cx, who, a).await
        }
        Calls::Search(a) => {
            let kind = crate::reference::type_hint(a.type_hint.as_deref())?;
            let query = a.query.as_deref().unwrap_or("");
            let limit = a.limit.unwrap_or(50).clamp(1, 200) as u32;
            let found = registry::search(&cx.db, query, kind, limit).await?;
            let list: Vec<Json> = found.iter().map(registry::Component::summary).collect();
            // `total` is CYFR's name for the count (of rows returned; no paging here).
            Ok(json!({ "components": list, "count": list.len(), "total": list.len() }))
        }
        Calls::Inspect(a) => {
            let kind = crate::reference::type_hint(a.type_hint.as_deref())?;
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
            let kind = crate::reference::type_hint(a.type_hint.as_deref())?;
            let t = Target::parse(required::<Ref>(&a.reference)?, kind)?;
            let c = registry::find(&cx.db, &t).await?;
            // cyfr's four fields, and CYFR's `component` row and `dependencies`.
            Ok(
                json!({ "reference": c.reference, "digest": c.digest, "type": c.ctype.as_str(), "version": c.version, "component_ref": c.reference, "component": c.summary(), "dependencies": [] }),
            )
        }
        Calls::Categories(NoArgs {}) => categories(&cx.db).await,
        Calls::GetBlob(a) => get_blob(&cx.db, a).await,
        Calls::Publish(a) => {
            let kind = crate::reference::type_hint(a.type_hint.as_deref())?;
            publish(cx, who, a, kind).await
        }
        Calls::Pull(a) => {
            let r = a.reference()?;
            Err(Error::new(
                Code::RegistryUnavailable,
                format!(
                    "cannot pull {}: this server has no remote registry; register the component from its directory (component.register, `cyfr register DIR`) or publish its wasm (component.publish)",
                    r.canonical()
                ),
            ))
        }
    }
}

async fn register<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: RegisterArgs,
) -> Result<Json> {
    let replace = args.replace.unwrap_or(false);
    let (manifest, wasm, files) = match (args.directory.as_deref(), args.manifest.as_ref()) {
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
            let files = registry::Files::check(loaded.readme, loaded.config.map(Json::String))?;
            (manifest, decode_wasm(&loaded.wasm_base64)?, files)
        }
        (None, Some(m)) => {
            let manifest = match m {
                Json::String(text) => Manifest::parse(text)?,
                other => Manifest::check(other.clone())?,
            };
            let files = registry::Files::check(args.readme.clone(), args.config.clone())?;
            (manifest, decode_wasm(required::<Wasm>(&args.wasm)?)?, files)
        }
        _ => {
            return Err(Error::invalid_params(
                "register needs either `directory`, or `manifest` with `wasm` (base64)",
            ))
        }
    };
    super::component_tools::check_declared(&manifest)?;
    let c = registry::register_with(
        &cx.db,
        &manifest,
        &wasm,
        &files,
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

/// `component.get_blob`: an artifact's bytes by digest.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct BlobArgs {
    /// get_blob: the artifact's digest, sha256: and 64 hex digits
    #[serde(default, deserialize_with = "req_str::<Digest, _>")]
    digest: Option<String>,
}

/// `component.publish`: a component from an inline artifact.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct PublishArgs {
    /// publish: the reference to publish under, with its version, e.g. r:local.my-tool:0.1.0
    #[serde(
        default,
        alias = "component_ref",
        deserialize_with = "req_str::<Ref, _>"
    )]
    reference: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "opt_str::<Type, _>")]
    #[schemars(schema_with = "crate::reference::type_schema")]
    type_hint: Option<String>,
    /// publish: the wasm, as {"base64": "…"} (no paths or URLs: the server fetches nothing)
    #[serde(default, deserialize_with = "raw")]
    #[schemars(schema_with = "artifact_schema")]
    artifact: Option<Json>,
    /// publish: the description, when no `manifest` is given
    #[serde(default, deserialize_with = "opt_str::<Description, _>")]
    description: Option<String>,
    /// publish: a cyfr-manifest.json (object or text); made from `reference` when omitted
    #[serde(default, deserialize_with = "raw")]
    manifest: Option<Json>,
}

fn artifact_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "properties": { "base64": { "type": "string" } } })
}

/// What each component type is for: the registry's categories.
const CATEGORIES: [(ComponentType, &str); 3] = [
    (
        ComponentType::Reagent,
        "Pure compute: JSON in, JSON out; no network, no secrets",
    ),
    (
        ComponentType::Catalyst,
        "Calls outside APIs through the host's egress policy, with granted secrets",
    ),
    (
        ComponentType::Formula,
        "Composes other components and tools through its caller's permissions",
    ),
];

/// `component.categories`: the component types, with how many components each holds.
async fn categories(db: &impl Db) -> Result<Json> {
    let rows = db
        .query(
            "SELECT component_type, count(DISTINCT namespace || '.' || name) AS n FROM components GROUP BY component_type",
            &[],
        )
        .await?;
    let list: Vec<Json> = CATEGORIES
        .iter()
        .map(|(t, description)| {
            let count = rows
                .iter()
                .find(|r| r.text("component_type") == t.as_str())
                .map(|r| r.int("n"))
                .unwrap_or(0);
            json!({ "name": t.as_str(), "description": description, "count": count })
        })
        .collect();
    Ok(json!({ "categories": list, "count": list.len() }))
}

/// `component.get_blob`: only artifacts of registered components are stored, so any
/// digest found is one a `component.info` holder could inspect.
async fn get_blob(db: &impl Db, a: BlobArgs) -> Result<Json> {
    let digest = required::<Digest>(&a.digest)?;
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Error::invalid_params(
            "`digest` must be sha256: followed by 64 lower-case hex digits",
        ));
    }
    let rows = db
        .query(
            "SELECT bytes FROM artifacts WHERE digest = ?",
            &[digest.into()],
        )
        .await?;
    let bytes = rows.first().map(|r| r.blob("bytes")).ok_or_else(|| {
        Error::new(
            Code::ComponentNotFound,
            format!("no artifact {digest} is registered; component.search or component.inspect show the digests there are"),
        )
    })?;
    Ok(json!({
        "digest": digest,
        "size": bytes.len(),
        "bytes": base64::engine::general_purpose::STANDARD.encode(&bytes),
    }))
}

/// The manifest `publish` registers: the one given, which must be for `r`, else one made
/// from `r` (whose version the caller checks).
fn publish_manifest(
    r: &Reference,
    given: Option<&Json>,
    description: Option<&str>,
) -> Result<Manifest> {
    let m = match given {
        Some(Json::String(text)) => Manifest::parse(text)?,
        Some(m) => Manifest::check(m.clone())?,
        None => Manifest::check(json!({
            "id": format!("{}:{}.{}", r.ctype.as_str(), r.namespace, r.name),
            "type": r.ctype.as_str(),
            "version": r.version.clone().unwrap_or_else(|| "0.0.0".into()),
            "description": description.unwrap_or_default(),
        }))?,
    };
    if (m.ctype, m.namespace.as_str(), m.name.as_str())
        != (r.ctype, r.namespace.as_str(), r.name.as_str())
    {
        return Err(Error::invalid_params(format!(
            "the manifest registers {}, not {}",
            m.reference(),
            r.canonical()
        )));
    }
    Ok(m)
}

/// `component.publish`: registers an inline artifact under `reference` (the manifest made
/// from it unless given). Same rules as register: the same bytes again change nothing,
/// other bytes under a version are refused.
async fn publish<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    a: PublishArgs,
    kind: Option<ComponentType>,
) -> Result<Json> {
    let r = Reference::parse(required::<Ref>(&a.reference)?, kind)?;
    let version = r.version.clone().ok_or_else(|| {
        Error::invalid_params(format!(
            "publish needs a version in `reference` (e.g. {}:0.1.0)",
            r.canonical()
        ))
    })?;
    let b64 = match &a.artifact {
        Some(Json::Object(o)) if o.contains_key("base64") => o
            .get("base64")
            .and_then(Json::as_str)
            .ok_or_else(|| Error::invalid_params("`artifact.base64` must be a string"))?,
        Some(Json::Object(o)) if o.contains_key("path") || o.contains_key("url") => {
            return Err(Error::invalid_params(
                "publish takes the wasm inline as `artifact: {\"base64\": …}`; this server reads no paths or URLs for it",
            ))
        }
        _ => {
            return Err(Error::invalid_params(
                "`artifact` is required: {\"base64\": \"<the component's wasm>\"}",
            ))
        }
    };
    let wasm = decode_wasm(b64)?;
    let manifest = publish_manifest(&r, a.manifest.as_ref(), a.description.as_deref())?;
    if manifest.version != version {
        return Err(Error::invalid_params(format!(
            "the manifest registers {}, not {}",
            manifest.reference(),
            r.canonical()
        )));
    }
    super::component_tools::check_declared(&manifest)?;
    let c = registry::register(
        &cx.db,
        &manifest,
        &wasm,
        Some(who.id()),
        false,
        cx.env.now_ms(),
    )
    .await?;
    let mut v = c.summary();
    v["status"] = json!("published");
    v["size"] = json!(wasm.len());
    v["source"] = json!("inline");
    Ok(v)
}
