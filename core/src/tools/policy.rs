//! The `policy` tool: get, set, update_field, delete, list, get_effective.

use super::{opt_str, str_arg};
use crate::app::App;
use crate::auth::Identity;
use crate::db::{Db, Value};
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Error, Result};
use crate::policy::{stored_fields, Policy};
use crate::reference::{ComponentType, Reference};
use crate::registry;
use serde_json::{json, Map, Value as Json};

pub(super) async fn call<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    who: &Identity,
    action: &str,
    args: &Json,
) -> Result<Json> {
    if action == "list" {
        let rows = app
            .db
            .query(
                "SELECT reference, fields FROM policies ORDER BY reference",
                &[],
            )
            .await?;
        let list: Vec<Json> = rows
            .iter()
            .map(|r| json!({ "reference": r.text("reference"), "policy": serde_json::from_str::<Json>(&r.text("fields")).unwrap_or(Json::Null) }))
            .collect();
        return Ok(json!({ "policies": list, "count": list.len() }));
    }
    let type_hint = opt_str(args, "type")?.and_then(ComponentType::parse);
    let reference = Reference::parse(str_arg(args, "reference")?, type_hint)?;
    let key = reference.canonical();
    match action {
        "get" => {
            let fields = stored_fields(&app.db, &key).await?;
            let effective = Policy::from_fields(&fields.clone().unwrap_or_default())
                .map_err(Error::internal)?;
            Ok(
                json!({ "reference": key, "policy": effective.to_json(), "fields_set": fields.map(|f| f.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() }),
            )
        }
        "get_effective" => {
            let c = registry::resolve(&app.db, &reference).await?;
            Ok(
                json!({ "reference": c.reference, "policy": crate::policy::effective(&app.db, &c).await?.to_json() }),
            )
        }
        "set" | "update_field" => {
            let mut fields = stored_fields(&app.db, &key).await?.unwrap_or_default();
            let updates: Map<String, Json> = match (args.get("field"), args.get("policy")) {
                (Some(_), _) => {
                    let field = str_arg(args, "field")?;
                    let value = args
                        .get("value")
                        .ok_or_else(|| Error::invalid_params("`value` is required with `field`"))?;
                    Map::from_iter([(field.to_string(), value.clone())])
                }
                (None, Some(Json::Object(p))) => p.clone(),
                _ => {
                    return Err(Error::invalid_params(
                        "set needs `field` and `value`, or a `policy` object",
                    ))
                }
            };
            fields.extend(updates);
            // Checked whole before anything is stored, so a bad value loses nothing.
            let policy = Policy::from_fields(&fields).map_err(Error::invalid_params)?;
            app.db
                .query(
                    "INSERT INTO policies (reference, fields, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT(reference) DO UPDATE SET fields = ?2, updated_at = ?3, updated_by = ?4",
                    &[key.clone().into(), Json::Object(fields).to_string().into(), Value::Integer(app.env.now_ms() as i64), who.id().into()],
                )
                .await?;
            Ok(json!({ "reference": key, "policy": policy.to_json() }))
        }
        "delete" => {
            let rows = app
                .db
                .query(
                    "DELETE FROM policies WHERE reference = ? RETURNING reference",
                    &[key.clone().into()],
                )
                .await?;
            Ok(json!({ "reference": key, "deleted": !rows.rows.is_empty() }))
        }
        _ => Err(Error::internal(format!("policy.{action} has no handler"))),
    }
}
