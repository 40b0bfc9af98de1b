//! The `config` tool: a component's effective config — the `config.json` defaults its
//! version was registered with, and per-component overrides over them (for every version).

use super::component::RefArgs;
use super::decl::{actions, NoArgs};
use crate::access::Need;
use crate::args::{fields, raw, req_str, required};
use crate::auth::Identity;
use crate::component_config as config;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Error, Result};
use crate::reference::Reference;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str = "A component's config: the config.json defaults it was registered with, and overrides set here (get, get_all, set, delete, list).";

// Config is the operator's, like policy: read and written under the policy scopes.
const GET: Need = Need::Scopes(&["policy.get"]);
const SET: Need = Need::Scopes(&["policy.set"]);

actions! {
    /// The `config` tool's actions.
    tool "config": Action, Calls {
        Get = "get", KeyArgs, GET, false;
        GetAll = "get_all", RefArgs, GET, false;
        Set = "set", SetArgs, SET, false;
        Delete = "delete", KeyArgs, SET, false;
        List = "list", NoArgs, GET, false;
    }
}

fields!(Key = "key");

/// `config.get` and `config.delete`: one key.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct KeyArgs {
    #[serde(flatten)]
    target: RefArgs,
    /// The config key
    #[serde(default, deserialize_with = "req_str::<Key, _>")]
    key: Option<String>,
}

/// `config.set`: one key and its JSON value.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct SetArgs {
    #[serde(flatten)]
    target: KeyArgs,
    /// set: the key's value (any JSON)
    #[serde(default, deserialize_with = "raw")]
    value: Option<Json>,
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: Calls,
) -> Result<Json> {
    match args {
        Calls::Get(a) => {
            let r = a.target.reference()?;
            let key = required::<Key>(&a.key)?;
            config::check_key(key)?;
            let c = config::read(&cx.db, &r).await?;
            let (value, source) = match (c.overrides.get(key), c.defaults.get(key)) {
                (Some(v), _) => (v.clone(), "override"),
                (None, Some(v)) => (v.clone(), "default"),
                (None, None) => (Json::Null, "unset"),
            };
            Ok(
                json!({ "component_ref": c.component.reference, "key": key, "value": value, "source": source }),
            )
        }
        Calls::GetAll(a) => {
            let c = config::read(&cx.db, &a.reference()?).await?;
            Ok(json!({
                "component_ref": c.component.reference,
                "config": c.effective(),
                "defaults": c.defaults,
                "overrides": c.overrides,
            }))
        }
        Calls::Set(a) => {
            let r = a.target.target.reference()?;
            let key = required::<Key>(&a.target.key)?;
            let value = a
                .value
                .ok_or_else(|| Error::invalid_params("`value` is required (any JSON)"))?;
            config::set(&cx.db, &r, key, &value, who.id(), cx.env.now_ms()).await?;
            Ok(
                json!({ "stored": true, "component_ref": unversioned(&r), "key": key, "value": value }),
            )
        }
        Calls::Delete(a) => {
            let r = a.target.reference()?;
            let key = required::<Key>(&a.key)?;
            let deleted = config::delete(&cx.db, &r, key).await?;
            Ok(json!({ "deleted": deleted, "component_ref": unversioned(&r), "key": key }))
        }
        Calls::List(NoArgs {}) => {
            let list: Vec<Json> = config::list(&cx.db)
                .await?
                .into_iter()
                .map(|(r, n)| json!({ "component_ref": r, "keys": n }))
                .collect();
            Ok(json!({ "components": list, "count": list.len() }))
        }
    }
}

/// Overrides hold for every version: `type:namespace.name`.
fn unversioned(r: &Reference) -> String {
    format!("{}:{}.{}", r.ctype.as_str(), r.namespace, r.name)
}
