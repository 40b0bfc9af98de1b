//! The `key` tool. A caller can never mint more power than it holds: only admins create
//! admin keys, other callers only grant scopes they have and manage keys they created.

use super::{list_arg, opt_str};
use crate::app::App;
use crate::auth::Identity;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::{rfc3339, Env};
use crate::errors::{Code, Error, Result};
use crate::ipallow::NetList;
use crate::keys::{self, ApiKey, KeyType, NewKey};
use crate::units::Rate;
use serde_json::{json, Value as Json};

pub(super) async fn call<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    who: &Identity,
    action: &str,
    args: &Json,
) -> Result<Json> {
    match action {
        "create" => create(app, who, args).await,
        "get" => Ok(target(&app.db, who, args).await?.to_json()),
        "list" => {
            let all = keys::list(
                &app.db,
                args.get("include_revoked")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
            )
            .await?;
            let visible: Vec<Json> = all
                .iter()
                .filter(|k| may_manage(who, k))
                .map(ApiKey::to_json)
                .collect();
            Ok(json!({ "keys": visible, "count": visible.len() }))
        }
        "revoke" => {
            let k = target(&app.db, who, args).await?;
            keys::revoke(&app.db, &k.id, app.env.now_ms()).await?;
            Ok(
                json!({ "revoked": true, "name": k.name, "id": k.id, "prefix": format!("{}...", k.prefix) }),
            )
        }
        "rotate" => {
            let old = target(&app.db, who, args).await?;
            let (new, raw) = keys::rotate(&app.db, &app.env, &old).await?;
            Ok(created_json(&new, &raw, Some(&old.id)))
        }
        _ => Err(Error::internal(format!("key.{action} has no handler"))),
    }
}

/// Admins manage every key; anyone else only the keys they created, and their own
/// (by lineage, so rotating either key keeps the relation).
fn may_manage(who: &Identity, k: &ApiKey) -> bool {
    who.is_admin() || k.lineage_id == who.id() || k.created_by.as_deref() == Some(who.id())
}

async fn target(db: &impl Db, who: &Identity, args: &Json) -> Result<ApiKey> {
    let key = match (opt_str(args, "id")?, opt_str(args, "name")?) {
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
    app: &App<D, X, E>,
    who: &Identity,
    args: &Json,
) -> Result<Json> {
    let key_type = KeyType::parse(opt_str(args, "type")?.unwrap_or("secret"))?;
    let rate_limit = match args.get("rate_limit") {
        None | Some(Json::Null) => None,
        Some(v) => Some(Rate::parse(v).map_err(Error::invalid_params)?),
    };
    let ip_allowlist = NetList::parse(&list_arg(args, "ip_allowlist")?.join(","))
        .map_err(|e| Error::invalid_params(format!("ip_allowlist: {e}")))?;
    let mut new = NewKey {
        name: opt_str(args, "name")?.unwrap_or_default().to_string(),
        key_type,
        scopes: list_arg(args, "scope")?,
        rate_limit,
        ip_allowlist,
    };
    let scopes = new.validated_scopes()?;
    if who.is_admin() {
        let (key, raw) = keys::create(&app.db, &app.env, &new, Some(who.id())).await?;
        return Ok(created_json(&key, &raw, None));
    }
    if key_type == KeyType::Admin {
        return Err(Error::new(
            Code::InsufficientPermissions,
            "only an admin key can create admin keys",
        ));
    }
    if let Some(s) = scopes.iter().find(|s| !who.key.scopes.contains(s)) {
        return Err(Error::new(
            Code::InsufficientPermissions,
            format!("cannot grant scope `{s}`: this key does not hold it"),
        ));
    }
    new.rate_limit = narrower_rate(new.rate_limit, who.key.rate_limit);
    new.ip_allowlist = narrower_allowlist(new.ip_allowlist, &who.key.ip_allowlist)?;
    // The derived key draws from its creator's budget: minting keys never adds requests.
    let (key, raw) = keys::create_derived(&app.db, &app.env, &new, &who.key).await?;
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
        "prefix": format!("{}...", k.prefix),
        "rate_limit": k.rate_limit.map(|r| r.to_text()),
        "ip_allowlist": if k.ip_allowlist.is_empty() { Json::Null } else { json!(k.ip_allowlist.to_text()) },
        "created_at": rfc3339(k.created_at),
        "note": "This is the only time the raw key is shown. Store it now.",
    });
    if let Some(old) = replaces {
        v["replaces"] = json!(old);
    }
    v
}
