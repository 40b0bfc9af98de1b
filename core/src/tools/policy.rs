//! The `policy` tool: get, set, update_field, delete, list, get_effective.

use super::decl::{actions, NoArgs};
use crate::access::Need;
use crate::args::{fields, opt_str, raw, req_str, required};
use crate::auth::Identity;
use crate::context::Context;
use crate::db::{Db, Value};
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Error, Result};
use crate::policy::{stored_fields, Policy};
use crate::reference::{ComponentType, Reference, Target};
use crate::registry;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

pub(super) const DESCRIPTION: &str = "Read and set the host policy a component runs under (domains, methods, rate limit, timeout, memory and size caps, allowed tools).";

const GET: Need = Need::Scopes(&["policy.get"]);
const SET: Need = Need::Scopes(&["policy.set"]);

actions! {
    /// The `policy` tool's actions.
    tool "policy": Action, Calls {
        Get = "get", RefArgs, GET, false;
        GetEffective = "get_effective", RefArgs, GET, false;
        List = "list", NoArgs, GET, false;
        Set = "set", SetArgs, SET, false;
        UpdateField = "update_field", SetArgs, SET, false;
        Delete = "delete", RefArgs, SET, false;
        CheckRateLimit = "check_rate_limit", RefArgs, GET, false;
    }
}

fields!(Ref = "reference", Type = "type", FieldArg = "field");

/// The component a policy is for.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct RefArgs {
    /// Component reference, with or without version (CYFR: `component_ref`)
    #[serde(
        default,
        alias = "component_ref",
        deserialize_with = "req_str::<Ref, _>"
    )]
    reference: Option<String>,
    /// A `type` that is not one of the three kinds is ignored.
    #[serde(rename = "type", default, deserialize_with = "opt_str::<Type, _>")]
    #[schemars(skip)]
    type_hint: Option<String>,
}

/// `policy.set` and `policy.update_field`: one field, or several at once.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct SetArgs {
    #[serde(flatten)]
    target: RefArgs,
    #[serde(default, deserialize_with = "raw")]
    #[schemars(schema_with = "field_schema")]
    field: Option<Json>,
    /// The field's value, e.g. "60s" or ["api.example.com"]; CYFR's string forms too ("[\"api.example.com\"]", "1048576")
    #[serde(default, deserialize_with = "raw")]
    value: Option<Json>,
    /// set: several fields at once
    #[serde(default, deserialize_with = "raw")]
    #[schemars(schema_with = "object_schema")]
    policy: Option<Json>,
}

fn field_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": crate::policy::FIELDS })
}

fn object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object" })
}

impl RefArgs {
    fn target(&self) -> Result<Target> {
        let type_hint = self.type_hint.as_deref().and_then(ComponentType::parse);
        Target::parse(required::<Ref>(&self.reference)?, type_hint)
    }
    /// Policies are keyed by typed references, so these need the type.
    fn reference(&self) -> Result<Reference> {
        self.target()?
            .typed(self.reference.as_deref().unwrap_or(""))
    }
}

/// What `get_effective`, `set` and `update_field` with `args` will read first.
pub(super) fn read_ahead(a: Action, args: &Json) -> Vec<crate::db::Stmt> {
    match a.call(args) {
        Ok(Calls::GetEffective(a) | Calls::CheckRateLimit(a)) => a
            .target()
            .map(|t| crate::executions::read_ahead_target(&t))
            .unwrap_or_default(),
        Ok(Calls::Set(a) | Calls::UpdateField(a)) => a
            .target
            .reference()
            .map(|r| vec![crate::policy::stored_fields_stmt(&r.canonical())])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    args: Calls,
) -> Result<Json> {
    match args {
        Calls::List(NoArgs {}) => list(&cx.db).await,
        Calls::Get(a) => {
            let key = a.reference()?.canonical();
            let fields = stored_fields(&cx.db, &key).await?;
            let effective = Policy::from_fields(&fields.clone().unwrap_or_default())
                .map_err(Error::internal)?;
            Ok(
                json!({ "reference": key, "component_ref": key, "policy": effective.to_json(), "fields_set": fields.map(|f| f.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() }),
            )
        }
        Calls::GetEffective(a) => {
            let c = registry::find(&cx.db, &a.target()?).await?;
            let policy = crate::policy::effective(&cx.db, &c).await?.to_json();
            // CYFR answers the bare policy map: its fields at the top, beside cyfr's.
            let mut v = policy.clone();
            v["reference"] = json!(c.reference);
            v["component_ref"] = json!(c.reference);
            v["policy"] = policy;
            Ok(v)
        }
        Calls::Set(a) => set(cx, who, a, false).await,
        Calls::UpdateField(a) => set(cx, who, a, true).await,
        Calls::CheckRateLimit(a) => check_rate_limit(cx, who, a).await,
        Calls::Delete(a) => {
            let key = a.reference()?.canonical();
            let rows = cx
                .db
                .query(
                    "DELETE FROM policies WHERE reference = ? RETURNING reference",
                    &[key.clone().into()],
                )
                .await?;
            Ok(json!({ "reference": key, "component_ref": key, "deleted": !rows.rows.is_empty() }))
        }
    }
}

async fn list(db: &impl Db) -> Result<Json> {
    let rows = db
        .query(
            "SELECT reference, fields FROM policies ORDER BY reference",
            &[],
        )
        .await?;
    let list: Vec<Json> = rows
        .iter()
        .map(|r| json!({ "reference": r.text("reference"), "component_ref": r.text("reference"), "policy": serde_json::from_str::<Json>(&r.text("fields")).unwrap_or(Json::Null) }))
        .collect();
    Ok(json!({ "policies": list, "count": list.len() }))
}

/// `set` with a `policy` object replaces the stored fields, as CYFR does; `update_field`
/// (and `set` with `field`/`value`, cyfr's older form) merges into them. String values are
/// read as CYFR sends them ([`crate::policy::coerce`]).
async fn set<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    a: SetArgs,
    merge: bool,
) -> Result<Json> {
    let key = a.target.reference()?.canonical();
    let (updates, field, merge) = match (&a.field, &a.policy) {
        (Some(field), _) => {
            let field = field.as_str().filter(|s| !s.is_empty()).map(String::from);
            let field = required::<FieldArg>(&field)?.to_string();
            let value = a
                .value
                .ok_or_else(|| Error::invalid_params("`value` is required with `field`"))?;
            let value = crate::policy::coerce(&field, value);
            (Map::from_iter([(field.clone(), value)]), Some(field), true)
        }
        (None, Some(Json::Object(p))) => {
            let p = p
                .iter()
                .map(|(k, v)| (k.clone(), crate::policy::coerce(k, v.clone())))
                .collect();
            (p, None, merge)
        }
        _ => {
            return Err(Error::invalid_params(
                "set needs a `policy` object (or `field` and `value`); update_field needs `field` and `value`",
            ))
        }
    };
    let mut fields = if merge {
        stored_fields(&cx.db, &key).await?.unwrap_or_default()
    } else {
        Map::new()
    };
    fields.extend(updates);
    // Checked whole before anything is stored, so a bad value loses nothing.
    let policy = Policy::from_fields(&fields).map_err(Error::invalid_params)?;
    cx.db
        .query(
            "INSERT INTO policies (reference, fields, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(reference) DO UPDATE SET fields = ?2, updated_at = ?3, updated_by = ?4",
            &[key.clone().into(), Json::Object(fields).to_string().into(), Value::Integer(cx.env.now_ms() as i64), who.id().into()],
        )
        .await?;
    let mut v = json!({ "reference": key, "component_ref": key, "policy": policy.to_json() });
    // CYFR's acknowledgements: `stored` for set, `updated` and `field` for update_field.
    match field {
        Some(f) => {
            v["updated"] = json!(true);
            v["field"] = json!(f);
        }
        None => v["stored"] = json!(true),
    }
    Ok(v)
}

/// `policy.check_rate_limit`: whether the caller's next run of the component fits its
/// policy's `rate_limit` now, without taking a request from it.
async fn check_rate_limit<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    a: RefArgs,
) -> Result<Json> {
    let c = registry::find(&cx.db, &a.target()?).await?;
    let rate = crate::policy::effective(&cx.db, &c).await?.rate_limit;
    let s =
        crate::ratelimit::tat_stmt(&crate::ratelimit::run_bucket(who.budget_id(), &c.reference));
    let rows = cx.db.query(&s.sql, &s.params).await?;
    let tat = rows.first().map(|r| r.int("tat"));
    let mut v =
        json!({ "component_ref": c.reference, "reference": c.reference, "limit": rate.to_text() });
    match crate::ratelimit::peek(tat, rate, cx.env.now_ms()) {
        Ok(remaining) => {
            v["allowed"] = json!(true);
            v["remaining"] = json!(remaining);
        }
        Err(ms) => {
            v["allowed"] = json!(false);
            v["retry_after"] = json!(ms.div_ceil(1000));
            v["retry_after_ms"] = json!(ms);
        }
    }
    Ok(v)
}
