//! The `secret` tool: set, get (masked), list, delete, clear, grant, revoke, can_access.
//! Values go in; only masks and fingerprints come out.

use super::decl::actions;
use super::{opener, Call};
use crate::access::Need;
use crate::args::{fields, loose_bool, opt_str, raw, req_str, required};
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::reference::Reference;
use crate::secrets::sealed::is_sealed;
use crate::secrets::store::{self, Scope};
use crate::units::parse_duration_ms;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use zeroize::Zeroizing;

pub(super) const DESCRIPTION: &str = "Store secrets for components (encrypted at rest), grant them to components, and see them masked (never their values). `scope`: \"org\" (shared) or \"user\" (your own key, preferred over the shared one when the grant allows).";

const DELETE: Need = Need::Scopes(&["secret.delete"]);
const PERMIT: Need = Need::Scopes(&["permission.set"]);

actions! {
    /// The `secret` tool's actions. Those that read or take values need a secure transport.
    tool "secret": Action, Calls {
        Set = "set", SetArgs, Need::Scopes(&["secret.set"]), true;
        Get = "get", Named, Need::Scopes(&["secret.get"]), true;
        List = "list", Scoped, Need::Scopes(&["secret.get"]), true;
        Delete = "delete", Named, DELETE, false;
        Clear = "clear", Scoped, DELETE, false;
        Grant = "grant", GrantArgs, PERMIT, false;
        Revoke = "revoke", Granted, PERMIT, false;
        CanAccess = "can_access", Granted, Need::Scopes(&["permission.get"]), false;
    }
}

fields!(
    Name = "name",
    ScopeArg = "scope",
    Ttl = "ttl",
    Ref = "reference"
);

/// Whose secrets: `org` (shared, the default) or `user` (the caller's own).
#[derive(Deserialize, JsonSchema)]
pub(crate) struct Scoped {
    /// Whose secret (default org)
    #[serde(default, deserialize_with = "opt_str::<ScopeArg, _>")]
    #[schemars(schema_with = "scope_schema")]
    scope: Option<String>,
}

/// One secret, by scope and name.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct Named {
    #[serde(flatten)]
    scope: Scoped,
    /// Secret name, e.g. ANTHROPIC_API_KEY
    #[serde(default, deserialize_with = "req_str::<Name, _>")]
    name: Option<String>,
}

/// `secret.set`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct SetArgs {
    #[serde(flatten)]
    secret: Named,
    /// set: the value, or a sealed {"ciphertext", "kid"} object (see get_encryption_instructions)
    #[serde(default, deserialize_with = "raw")]
    value: Option<Json>,
    /// set: expire after this long, e.g. "30d" or "12h"
    #[serde(default, deserialize_with = "opt_str::<Ttl, _>")]
    ttl: Option<String>,
}

/// A secret's grant to a component.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct Granted {
    /// grant/revoke/can_access: the component, e.g. c:local.claude:0.1.0 (CYFR: `component_ref`)
    #[serde(
        default,
        alias = "component_ref",
        deserialize_with = "req_str::<Ref, _>"
    )]
    reference: Option<String>,
    /// Secret name, e.g. ANTHROPIC_API_KEY
    #[serde(default, deserialize_with = "req_str::<Name, _>")]
    name: Option<String>,
}

/// `secret.grant`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct GrantArgs {
    #[serde(flatten)]
    grant: Granted,
    /// grant: let a caller's own (user-scope) key win over the shared one (default true)
    #[serde(default, deserialize_with = "loose_bool")]
    allow_user_keys: Option<bool>,
}

fn scope_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["org", "user"] })
}

/// The refusal for secrets over plain HTTP from a non-loopback client.
pub(super) fn insecure() -> Error {
    Error::new(
        Code::InsufficientPermissions,
        "secrets are accepted and shown only over HTTPS (or from this machine); use https://, or start cyfr in development mode",
    )
}

fn scope_of(call: &Call<'_>, scope: &Scoped) -> Result<Scope> {
    match scope.scope.as_deref().unwrap_or("org") {
        "org" | "app" => Ok(Scope::Org),
        "user" => Ok(Scope::User(call.who.id().to_string())),
        other => Err(Error::invalid_params(format!(
            "`scope` must be org or user (got `{other}`)"
        ))),
    }
}

/// Whether `value` is one of the values opened from this call's `encrypted_secrets`.
fn opened_here(opened: &[Zeroizing<Vec<u8>>], value: &[u8]) -> bool {
    opened.iter().any(|o| crate::crypto::ct_eq(o, value))
}

/// What a `secret.set` of a shared secret will read, sent ahead with the caller check (a
/// user-scope set needs the caller's id first, so it reads on its own round trip).
pub(super) fn read_ahead(a: Action, args: &Json) -> Vec<crate::db::Stmt> {
    match a.call(args) {
        Ok(Calls::Set(SetArgs {
            secret: Named {
                scope,
                name: Some(name),
            },
            ..
        })) if scope
            .scope
            .as_deref()
            .is_none_or(|s| s == "org" || s == "app") =>
        {
            store::set_reads(&Scope::Org, &name).into()
        }
        _ => Vec::new(),
    }
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    call: &Call<'_>,
    args: Calls,
    opened: &[Zeroizing<Vec<u8>>],
) -> Result<Json> {
    let now = cx.env.now_ms();
    match args {
        Calls::Set(a) => set(cx, call, a, opened).await,
        Calls::Get(a) => {
            let scope = scope_of(call, &a.scope)?;
            let name = required::<Name>(&a.name)?;
            let (meta, value) = store::read(&cx.db, cx.kms()?, &scope, name)
                .await?
                .ok_or_else(|| {
                    Error::invalid_params(format!("no {} secret named `{name}`", scope.as_str()))
                })?;
            let mut v = meta.to_json(&value, now);
            // CYFR's `value` is the mask (never the value itself).
            v["value"] = v["masked"].clone();
            Ok(v)
        }
        Calls::List(a) => {
            let scopes = match a.scope {
                None => vec![Scope::Org, Scope::User(call.who.id().to_string())],
                Some(_) => vec![scope_of(call, &a)?],
            };
            let list: Vec<Json> = store::read_all(&cx.db, cx.kms()?, &scopes)
                .await?
                .iter()
                .map(|(meta, value)| meta.to_json(value, now))
                .collect();
            // CYFR lists names; each one's scope, mask and fingerprint are under `details`.
            let names: Vec<&Json> = list.iter().map(|m| &m["name"]).collect();
            Ok(json!({ "secrets": names, "details": list, "count": list.len() }))
        }
        Calls::Delete(a) => {
            let scope = scope_of(call, &a.scope)?;
            let name = required::<Name>(&a.name)?;
            let deleted = store::delete(&cx.db, &scope, name).await?;
            Ok(json!({ "name": name, "scope": scope.as_str(), "deleted": deleted }))
        }
        Calls::Clear(a) => {
            // Clearing is for one's own keys; shared secrets are deleted one by one.
            if a.scope.as_deref().unwrap_or("user") != "user" {
                return Err(Error::invalid_params(
                    "clear removes your own (user-scope) secrets only; delete shared ones by name",
                ));
            }
            let n = store::clear(&cx.db, &Scope::User(call.who.id().to_string())).await?;
            Ok(json!({ "scope": "user", "deleted": n }))
        }
        Calls::Grant(a) => {
            let (reference, name) = a.grant.checked()?;
            let allow_user = a.allow_user_keys.unwrap_or(true);
            store::grant(&cx.db, &reference, name, allow_user, call.who.id(), now).await?;
            Ok(
                json!({ "reference": reference, "name": name, "granted": true, "allow_user_keys": allow_user, "secret": name, "component": reference }),
            )
        }
        Calls::Revoke(a) => {
            let (reference, name) = a.checked()?;
            let revoked = store::revoke(&cx.db, &reference, name).await?;
            let status = if revoked { "revoked" } else { "not_granted" };
            Ok(
                json!({ "reference": reference, "name": name, "revoked": revoked, "status": status, "secret": name, "component": reference }),
            )
        }
        Calls::CanAccess(a) => {
            let (reference, name) = a.checked()?;
            let grant = store::grant_for(&cx.db, &reference, name).await?;
            Ok(
                json!({ "reference": reference, "name": name, "allowed": grant.is_some(), "allow_user_keys": grant.unwrap_or(false) }),
            )
        }
    }
}

impl Granted {
    /// The canonical reference and the checked name.
    fn checked(&self) -> Result<(String, &str)> {
        let reference = Reference::parse(required::<Ref>(&self.reference)?, None)?.canonical();
        let name = required::<Name>(&self.name)?;
        store::check_name(name)?;
        Ok((reference, name))
    }
}

/// `secret.set`: a value sent in clear, sealed to the session, or opened from
/// `encrypted_secrets`.
async fn set<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    call: &Call<'_>,
    a: SetArgs,
    opened: &[Zeroizing<Vec<u8>>],
) -> Result<Json> {
    let now = cx.env.now_ms();
    let scope = scope_of(call, &a.secret.scope)?;
    let name = required::<Name>(&a.secret.name)?;
    let (value, sealed): (Zeroizing<Vec<u8>>, bool) = match &a.value {
        // A value opened from `encrypted_secrets` was sealed as much as one sent sealed.
        Some(Json::String(s)) => (
            Zeroizing::new(s.as_bytes().to_vec()),
            opened_here(opened, s.as_bytes()),
        ),
        Some(v) if is_sealed(v) => (opener(cx, call)?.open(v).await?, true),
        _ => {
            return Err(Error::invalid_params(
                "`value` must be a string, or a sealed {\"ciphertext\", \"kid\"} object",
            ))
        }
    };
    let ttl = match a.ttl.as_deref() {
        Some(t) => Some(parse_duration_ms(t).map_err(Error::invalid_params)?),
        None => None,
    };
    let meta = store::set(
        &cx.db,
        cx.kms()?,
        &cx.env,
        &scope,
        name,
        &value,
        sealed,
        ttl,
        call.who.id(),
    )
    .await?;
    let mut v = meta.to_json(&value, now);
    v["status"] = json!("stored");
    v["stored"] = json!(true);
    Ok(v)
}
