//! The `key` tool. A caller can never mint more power than it holds: only admins create
//! admin keys, other callers only grant scopes they have and manage keys they created.

use super::decl::actions;
use crate::access::Need;
use crate::args::{fields, list, loose_bool, opt_str, raw};
use crate::auth::Identity;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::{rfc3339, Env};
use crate::errors::{Code, Error, Result};
use crate::ipallow::NetList;
use crate::keys::{self, ApiKey, KeyType, NewKey};
use crate::units::Rate;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str =
    "Manage API keys: create (the raw key is shown once), get, list, revoke, rotate.";

const CREATE: Need = Need::Scopes(&["key.create"]);

actions! {
    /// The `key` tool's actions.
    tool "key": Action, Calls {
        Create = "create", CreateArgs, CREATE, false;
        Get = "get", Target, CREATE, false;
        List = "list", ListArgs, CREATE, false;
        Revoke = "revoke", Target, Need::Scopes(&["key.revoke"]), false;
        Rotate = "rotate", Target, Need::Scopes(&["key.create", "key.revoke"]), false;
    }
}

fields!(
    Name = "name",
    Id = "id",
    Type = "type",
    Scope = "scope",
    IpAllowlist = "ip_allowlist"
);

/// `key.create`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct CreateArgs {
    /// Key name (unique among active keys)
    #[serde(default, deserialize_with = "opt_str::<Name, _>")]
    name: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "opt_str::<Type, _>")]
    #[schemars(schema_with = "key_type_schema")]
    key_type: Option<String>,
    /// Scopes, as an array or a comma-separated string
    #[serde(default, deserialize_with = "list::<Scope, _>")]
    #[schemars(schema_with = "scope_schema")]
    scope: Vec<String>,
    /// e.g. "100/1m" or {"requests": 100, "window": "1m"}; a non-admin's new key gets the stricter of this and its own, and shares its budget
    #[serde(default, deserialize_with = "raw")]
    rate_limit: Option<Json>,
    /// IPs and CIDRs, comma-separated or an array; a non-admin's new key must stay inside its own (and gets it when none is given)
    #[serde(default, deserialize_with = "list::<IpAllowlist, _>")]
    #[schemars(schema_with = "list_schema")]
    ip_allowlist: Vec<String>,
}

/// The key an action is about: by `id`, or by `name`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct Target {
    /// Key id, instead of name
    #[serde(default, deserialize_with = "opt_str::<Id, _>")]
    id: Option<String>,
    /// Key name (unique among active keys)
    #[serde(default, deserialize_with = "opt_str::<Name, _>")]
    name: Option<String>,
}

/// `key.list`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct ListArgs {
    /// list: include revoked keys
    #[serde(default, deserialize_with = "loose_bool")]
    include_revoked: Option<bool>,
}

fn key_type_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["public", "secret", "admin"] })
}

fn scope_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "anyOf": [{ "type": "array", "items": { "type": "string", "enum": crate::access::SCOPES } }, { "type": "string" }] })
}

fn list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "anyOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }] })
}

/// What `create` with `args` will read first (whether the name is taken), and the key
/// `revoke` and `rotate` act on: read with the caller check, so each costs 2 round trips.
pub(super) fn read_ahead(a: Action, args: &Json) -> Vec<crate::db::Stmt> {
    match a.call(args) {
        Ok(Calls::Create(c)) => c
            .name
            .as_deref()
            .map(|n| vec![crate::keys::find_by_name_stmt(n)])
            .unwrap_or_default(),
        Ok(Calls::Revoke(t) | Calls::Rotate(t)) => match (t.id.as_deref(), t.name.as_deref()) {
            (Some(id), _) => vec![crate::keys::find_by_id_stmt(id)],
            (None, Some(name)) => vec![crate::keys::find_by_name_stmt(name)],
            (None, None) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: Calls,
) -> Result<Json> {
    match args {
        Calls::Create(a) => create(cx, who, a).await,
        Calls::Get(t) => Ok(target(&cx.db, who, &t).await?.to_json()),
        Calls::List(a) => {
            let all = keys::list(&cx.db, a.include_revoked.unwrap_or(false)).await?;
            let visible: Vec<Json> = all
                .iter()
                .filter(|k| may_manage(who, k))
                .map(ApiKey::to_json)
                .collect();
            Ok(json!({ "keys": visible, "count": visible.len() }))
        }
        Calls::Revoke(t) => {
            let k = target(&cx.db, who, &t).await?;
            keys::revoke(&cx.db, &k.id, cx.env.now_ms()).await?;
            Ok(
                json!({ "revoked": true, "name": k.name, "id": k.id, "prefix": format!("{}...", k.prefix), "key_prefix": format!("{}...", k.prefix) }),
            )
        }
        Calls::Rotate(t) => {
            let old = target(&cx.db, who, &t).await?;
            let (new, raw) = keys::rotate(&cx.db, &cx.env, &old).await?;
            Ok(created_json(&new, &raw, Some(&old.id)))
        }
    }
}

/// Admins manage every key; anyone else only the keys they created, and their own
/// (by lineage, so rotating either key keeps the relation).
fn may_manage(who: &Identity, k: &ApiKey) -> bool {
    who.is_admin() || k.lineage_id == who.id() || k.created_by.as_deref() == Some(who.id())
}

async fn target(db: &impl Db, who: &Identity, t: &Target) -> Result<ApiKey> {
    let key = match (t.id.as_deref(), t.name.as_deref()) {
        (Some(id), _) => keys::find_by_id(db, id)
            .await?
            .filter(|k| k.revoked_at.is_none()),
        (None, Some(name)) => keys::find_by_name(db, name).await?,
        (None, None) => return Err(Error::invalid_params("give the key's `name` or `id`")),
    };
    // A key the caller may not manage looks exactly like a missing one.
    key.filter(|k| may_manage(who, k))
        .ok_or_else(|| Error::invalid_params("no active key with that name or id"))
}

async fn create<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: CreateArgs,
) -> Result<Json> {
    let key_type = KeyType::parse(args.key_type.as_deref().unwrap_or("secret"))?;
    let rate_limit = match &args.rate_limit {
        None | Some(Json::Null) => None,
        Some(v) => Some(Rate::parse(v).map_err(Error::invalid_params)?),
    };
    let ip_allowlist = NetList::parse(&args.ip_allowlist.join(","))
        .map_err(|e| Error::invalid_params(format!("ip_allowlist: {e}")))?;
    let mut new = NewKey {
        name: args.name.unwrap_or_default(),
        key_type,
        scopes: args.scope,
        rate_limit,
        ip_allowlist,
    };
    let scopes = new.validated_scopes()?;
    if who.is_admin() {
        let (key, raw) = keys::create(&cx.db, &cx.env, &new, Some(who.id())).await?;
        return Ok(created_json(&key, &raw, None));
    }
    if key_type == KeyType::Admin {
        return Err(Error::new(
            Code::InsufficientPermissions,
            "only an admin key can create admin keys",
        ));
    }
    if let Some(s) = scopes
        .iter()
        .find(|s| !crate::access::holds(&who.key.scopes, s))
    {
        return Err(Error::new(
            Code::InsufficientPermissions,
            format!("cannot grant scope `{s}`: this key does not hold it"),
        ));
    }
    new.rate_limit = narrower_rate(new.rate_limit, who.key.rate_limit);
    new.ip_allowlist = narrower_allowlist(new.ip_allowlist, &who.key.ip_allowlist)?;
    // The derived key draws from its creator's budget: minting keys never adds requests.
    let (key, raw) = keys::create_derived(&cx.db, &cx.env, &new, &who.key).await?;
    Ok(created_json(&key, &raw, None))
}

/// The stricter of a requested rate and the creator's (the creator's when none is asked).
fn narrower_rate(requested: Option<Rate>, creator: Option<Rate>) -> Option<Rate> {
    match (requested, creator) {
        (Some(r), Some(c)) => Some(r.narrowest(c)),
        (r, c) => r.or(c),
    }
}

/// A derived key's allowlist: the creator's when none is asked; otherwise every requested
/// network must lie inside one of the creator's (an empty creator list allows all).
fn narrower_allowlist(requested: NetList, creator: &NetList) -> Result<NetList> {
    if requested.is_empty() {
        return Ok(creator.clone());
    }
    if let Some(n) = requested.0.iter().find(|n| !creator.covers(n)) {
        return Err(Error::invalid_params(format!(
            "ip_allowlist: `{n}` is not inside this key's own allowlist ({}); a derived key cannot reach wider",
            creator.to_text()
        )));
    }
    Ok(requested)
}

fn created_json(k: &ApiKey, raw: &str, replaces: Option<&str>) -> Json {
    let mut v = json!({
        "key": raw,
        "id": k.id,
        "name": k.name,
        "type": k.key_type.as_str(),
        "scope": k.scopes,
        "created_at": rfc3339(k.created_at),
        "note": "This is the only time the raw key is shown. Store it now.",
    });
    k.shared_fields(&mut v);
    if let Some(old) = replaces {
        v["replaces"] = json!(old);
    }
    v
}
