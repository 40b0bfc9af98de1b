//! The `component` tool: register, inspect, search, resolve.

use super::{opt_str, str_arg};
use crate::app::App;
use crate::auth::Identity;
use crate::db::Db;
use crate::dispatch::{Dispatch, DispatchError};
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::manifest::Manifest;
use crate::reference::{ComponentType, Reference};
use crate::registry;
use base64::Engine;
use serde_json::{json, Value as Json};

pub(super) async fn call<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    who: &Identity,
    action: &str,
    args: &Json,
) -> Result<Json> {
    let type_hint = match opt_str(args, "type")? {
        None => None,
        Some(t) => Some(ComponentType::parse(t).ok_or_else(|| {
            Error::invalid_params(format!(
                "`type` must be reagent, catalyst or formula (got `{t}`)"
            ))
        })?),
    };
    match action {
        "register" => register(app, who, args).await,
        "search" => {
            let query = opt_str(args, "query")?.unwrap_or("");
            let limit = args
                .get("limit")
                .and_then(Json::as_u64)
                .unwrap_or(50)
                .clamp(1, 200) as u32;
            let found = registry::search(&app.db, query, type_hint, limit).await?;
            let list: Vec<Json> = found.iter().map(registry::Component::summary).collect();
            Ok(json!({ "components": list, "count": list.len() }))
        }
        "inspect" => {
            let r = Reference::parse(str_arg(args, "reference")?, type_hint)?;
            let c = registry::resolve(&app.db, &r).await?;
            let mut v = c.summary();
            v["manifest"] = c.manifest.clone();
            v["versions"] = json!(registry::versions(&app.db, &r).await?);
            v["policy"] = crate::policy::effective(&app.db, &c).await?.to_json();
            Ok(v)
        }
        "resolve" => {
            let r = Reference::parse(str_arg(args, "reference")?, type_hint)?;
            let c = registry::resolve(&app.db, &r).await?;
            Ok(
                json!({ "reference": c.reference, "digest": c.digest, "type": c.ctype.as_str(), "version": c.version }),
            )
        }
        _ => Err(Error::internal(format!(
            "component.{action} has no handler"
        ))),
    }
}

async fn register<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    who: &Identity,
    args: &Json,
) -> Result<Json> {
    let replace = args.get("replace").and_then(Json::as_bool).unwrap_or(false);
    let (manifest, wasm) = match (opt_str(args, "directory")?, args.get("manifest")) {
        (Some(dir), None) => {
            let loaded = app
                .dispatch
                .load_directory(dir)
                .await
                .map_err(|e| match e {
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
            (manifest, decode_wasm(str_arg(args, "wasm")?)?)
        }
        _ => {
            return Err(Error::invalid_params(
                "register needs either `directory`, or `manifest` with `wasm` (base64)",
            ))
        }
    };
    let c = registry::register(
        &app.db,
        &manifest,
        &wasm,
        Some(who.id()),
        replace,
        app.env.now_ms(),
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
