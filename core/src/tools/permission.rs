//! The `permission` tool: what each user (a JWT's or login session's `sub`) is granted. A
//! caller can never hand out more than it holds: only an admin grants `*`, others only
//! permissions their own scopes cover.

use super::decl::actions;
use crate::access::{self, Need};
use crate::args::{fields, opt_str, raw, required};
use crate::auth::Identity;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::permissions;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str =
    "Users' permissions (a JWT's or login session's `sub`): get, set (replaces), list.";

const GET: Need = Need::Scopes(&["permission.get"]);

actions! {
    /// The `permission` tool's actions.
    tool "permission": Action, Calls {
        Get = "get", Subject, GET, false;
        Set = "set", SetArgs, Need::Scopes(&["permission.set"]), false;
        List = "list", super::decl::NoArgs, GET, false;
    }
}

fields!(SubjectF = "subject");

/// The user an action is about.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct Subject {
    /// The user id (`sub`)
    #[serde(default, deserialize_with = "opt_str::<SubjectF, _>")]
    subject: Option<String>,
}

/// `permission.set`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct SetArgs {
    /// The user id (`sub`)
    #[serde(default, deserialize_with = "opt_str::<SubjectF, _>")]
    subject: Option<String>,
    /// The permissions, replacing the user's: scopes, `tool.*` or `*`; [] removes them all
    #[serde(default, deserialize_with = "raw")]
    #[schemars(schema_with = "perms_schema")]
    permissions: Option<Json>,
}

fn perms_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "anyOf": [{ "type": "array", "items": { "type": "string" } }, { "type": "string" }] })
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: Calls,
) -> Result<Json> {
    match args {
        Calls::Get(s) => {
            let subject = required::<SubjectF>(&s.subject)?;
            let perms = permissions::get(&cx.db, subject).await?;
            Ok(json!({ "subject": subject, "permissions": perms }))
        }
        Calls::Set(a) => {
            let subject = required::<SubjectF>(&a.subject)?;
            // Required, even empty: a set that forgot the list must not wipe the grant.
            let given: Vec<String> = match a.permissions {
                Some(Json::Array(v)) if v.iter().all(Json::is_string) => v
                    .iter()
                    .filter_map(Json::as_str)
                    .map(|s| s.trim().to_string())
                    .collect(),
                Some(Json::String(s)) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                None => {
                    return Err(Error::invalid_params(
                        "`permissions` is required (an array; [] removes every grant)",
                    ))
                }
                Some(_) => {
                    return Err(Error::invalid_params(
                        "`permissions` must be an array of strings or a comma-separated string",
                    ))
                }
            };
            let perms = permissions::validated(&given)?;
            if let Some(p) = perms
                .iter()
                .find(|p| !who.is_admin() && !access::holds(&who.key.scopes, p))
            {
                return Err(Error::new(
                    Code::InsufficientPermissions,
                    format!("cannot grant `{p}`: this caller does not hold it"),
                ));
            }
            permissions::set(&cx.db, subject, &perms, &who.actor(), cx.env.now_ms()).await?;
            Ok(json!({ "updated": true, "subject": subject, "permissions": perms }))
        }
        Calls::List(super::decl::NoArgs {}) => {
            let all: Vec<Json> = permissions::list(&cx.db)
                .await?
                .into_iter()
                .map(|(subject, perms)| json!({ "subject": subject, "permissions": perms }))
                .collect();
            Ok(json!({ "count": all.len(), "permissions": all }))
        }
    }
}
