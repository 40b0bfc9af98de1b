//! The `secret` tool: set, get (masked), list, delete, clear, grant, revoke, can_access.
//! Values go in; only masks and fingerprints come out.

use super::{kms, opener, opt_str, str_arg, Call};
use crate::app::App;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::reference::Reference;
use crate::secrets::sealed::is_sealed;
use crate::secrets::store::{self, Scope};
use crate::units::parse_duration_ms;
use serde_json::{json, Value as Json};
use zeroize::Zeroizing;

/// The refusal for secrets over plain HTTP from a non-loopback client.
pub(super) fn insecure() -> Error {
    Error::new(
        Code::InsufficientPermissions,
        "secrets are accepted and shown only over HTTPS (or from this machine); use https://, or start cyfr in development mode",
    )
}

fn scope_of(call: &Call<'_>, args: &Json) -> Result<Scope> {
    match opt_str(args, "scope")?.unwrap_or("org") {
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

pub(super) async fn call<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    call: &Call<'_>,
    action: &str,
    args: &Json,
    opened: &[Zeroizing<Vec<u8>>],
) -> Result<Json> {
    let now = app.env.now_ms();
    match action {
        "set" => {
            if !call.secure {
                return Err(insecure());
            }
            let scope = scope_of(call, args)?;
            let name = str_arg(args, "name")?;
            let (value, sealed): (Zeroizing<Vec<u8>>, bool) =
                match args.get("value") {
                    // A value opened from `encrypted_secrets` was sealed as much as one sent sealed.
                    Some(Json::String(s)) => (
                        Zeroizing::new(s.as_bytes().to_vec()),
                        opened_here(opened, s.as_bytes()),
                    ),
                    Some(v) if is_sealed(v) => (opener(app, call)?.open(v).await?, true),
                    _ => return Err(Error::invalid_params(
                        "`value` must be a string, or a sealed {\"ciphertext\", \"kid\"} object",
                    )),
                };
            let ttl = match opt_str(args, "ttl")? {
                Some(t) => Some(parse_duration_ms(t).map_err(Error::invalid_params)?),
                None => None,
            };
            let meta = store::set(
                &app.db,
                kms(app)?,
                &app.env,
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
            Ok(v)
        }
        "get" => {
            if !call.secure {
                return Err(insecure());
            }
            let scope = scope_of(call, args)?;
            let name = str_arg(args, "name")?;
            let (meta, value) = store::read(&app.db, kms(app)?, &scope, name)
                .await?
                .ok_or_else(|| {
                    Error::invalid_params(format!("no {} secret named `{name}`", scope.as_str()))
                })?;
            Ok(meta.to_json(&value, now))
        }
        "list" => {
            if !call.secure {
                return Err(insecure());
            }
            let scopes = match opt_str(args, "scope")? {
                None => vec![Scope::Org, Scope::User(call.who.id().to_string())],
                Some(_) => vec![scope_of(call, args)?],
            };
            let mut list = Vec::new();
            for scope in scopes {
                for name in store::names(&app.db, &scope).await? {
                    if let Some((meta, value)) =
                        store::read(&app.db, kms(app)?, &scope, &name).await?
                    {
                        list.push(meta.to_json(&value, now));
                    }
                }
            }
            Ok(json!({ "secrets": list, "count": list.len() }))
        }
        "delete" => {
            let scope = scope_of(call, args)?;
            let name = str_arg(args, "name")?;
            let deleted = store::delete(&app.db, &scope, name).await?;
            Ok(json!({ "name": name, "scope": scope.as_str(), "deleted": deleted }))
        }
        "clear" => {
            // Clearing is for one's own keys; shared secrets are deleted one by one.
            if opt_str(args, "scope")?.unwrap_or("user") != "user" {
                return Err(Error::invalid_params(
                    "clear removes your own (user-scope) secrets only; delete shared ones by name",
                ));
            }
            let n = store::clear(&app.db, &Scope::User(call.who.id().to_string())).await?;
            Ok(json!({ "scope": "user", "deleted": n }))
        }
        "grant" | "revoke" | "can_access" => {
            let reference = Reference::parse(str_arg(args, "reference")?, None)?.canonical();
            let name = str_arg(args, "name")?;
            store::check_name(name)?;
            match action {
                "grant" => {
                    let allow_user = args
                        .get("allow_user_keys")
                        .and_then(Json::as_bool)
                        .unwrap_or(true);
                    store::grant(&app.db, &reference, name, allow_user, call.who.id(), now).await?;
                    Ok(
                        json!({ "reference": reference, "name": name, "granted": true, "allow_user_keys": allow_user }),
                    )
                }
                "revoke" => Ok(
                    json!({ "reference": reference, "name": name, "revoked": store::revoke(&app.db, &reference, name).await? }),
                ),
                _ => {
                    let grant = store::grant_for(&app.db, &reference, name).await?;
                    Ok(
                        json!({ "reference": reference, "name": name, "allowed": grant.is_some(), "allow_user_keys": grant.unwrap_or(false) }),
                    )
                }
            }
        }
        _ => Err(Error::internal(format!("secret.{action} has no handler"))),
    }
}
