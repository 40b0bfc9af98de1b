//! Components as MCP tools: every registered component a caller may run (it holds
//! `execution.run`'s scope) is listed in `tools/list` as a tool of its own, and
//! `tools/call` on that tool is `execution.run` of it — the same one path
//! (`executions::run_found`): policy, rate limits, secrets, record, redaction.
//!
//! **Names** (docs/components.md, "Components as MCP tools"). A component (type, namespace,
//! name) is listed under its highest version's manifest `tool_name` when it declares one
//! and no component before it in (type, namespace, name) order declares the same; else
//! under its derived name `namespace.name`, or `namespace.name_TYPE` when another type has
//! the same namespace and name. Derived names are always callable, whatever is listed:
//! `namespace.name` (refused as ambiguous when two types share it), `namespace.name_TYPE`,
//! and either with `_vVERSION` for that version (`+` of a build written `_`). A declared
//! name has no `.`, so it never equals a derived one; it may not be an administrative tool's
//! nor another component's (`registry::register_with` refuses it in its batch).
//! A component whose derived name would pass 128 characters is not listed (run it with
//! `execution.run`).

use super::{input_required, Call};
use crate::auth::Identity;
use crate::config::ToolFamilies;
use crate::context::Context;
use crate::db::{Db, Row, Stmt, Value};
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::executions::{self, Origin};
use crate::manifest::{valid_tool_name, Manifest};
use crate::reference::{valid_name, ComponentType, Semver, Target};
use crate::registry::{self, Component};
use base64::Engine;
use serde_json::{json, Value as Json};

/// Component tools per `tools/list` page: a page stays one cheap read.
pub const PAGE: usize = 100;

/// The types in the order ties between declared names are broken (their SQL order).
const TYPES: [ComponentType; 3] = [
    ComponentType::Catalyst,
    ComponentType::Formula,
    ComponentType::Reagent,
];

/// The highest version of each component, from the cursor on, with the parts of its
/// manifest a listing shows (not the whole manifest: examples can be large) and what naming needs:
/// its declared `tool_name`, whether another type shares its namespace and name
/// (`shared`), and whether a component before it declares the same name (`beaten`). The
/// subqueries look up the primary key (type, namespace, name, version) by its prefix (the
/// `IN` of the three types for `shared`); `beaten` runs only for a row declaring a name.
const PAGE_SQL: &str = "SELECT c.component_type, c.namespace, c.name, c.version, c.description, \
     json_quote(json_extract(c.manifest, '$.schema.input')) AS input, json_quote(json_extract(c.manifest, '$.schema.output')) AS output, \
     json_extract(c.manifest, '$.title') AS title, json_extract(c.manifest, '$.tool_name') AS tool_name, \
     EXISTS (SELECT 1 FROM components d WHERE d.component_type IN ('catalyst', 'formula', 'reagent') AND d.component_type != c.component_type \
       AND d.namespace = c.namespace AND d.name = c.name AND d.version_key != '') AS shared, \
     json_extract(c.manifest, '$.tool_name') IS NOT NULL AND EXISTS (SELECT 1 FROM components d WHERE d.version_key != '' AND json_extract(d.manifest, '$.tool_name') = json_extract(c.manifest, '$.tool_name') \
       AND (d.component_type, d.namespace, d.name) < (c.component_type, c.namespace, c.name) \
       AND d.version_key = (SELECT max(e.version_key) FROM components e WHERE e.component_type = d.component_type AND e.namespace = d.namespace AND e.name = d.name)) AS beaten \
     FROM components c WHERE c.version_key != '' \
     AND c.version_key = (SELECT max(d.version_key) FROM components d WHERE d.component_type = c.component_type AND d.namespace = c.namespace AND d.name = c.name) \
     AND (c.namespace, c.name, c.component_type) > (?1, ?2, ?3) \
     ORDER BY c.namespace, c.name, c.component_type LIMIT ?4";

/// The component a declared name stands for: the first in (type, namespace, name) order
/// whose highest version declares it (the listing's tie-break).
const DECLARED_SQL: &str = "SELECT c.* FROM components c WHERE c.version_key != '' AND json_extract(c.manifest, '$.tool_name') = ?1 \
     AND c.version_key = (SELECT max(d.version_key) FROM components d WHERE d.component_type = c.component_type AND d.namespace = c.namespace AND d.name = c.name) \
     ORDER BY c.component_type, c.namespace, c.name LIMIT 1";

/// The stored policies (version-less and per version) of every component declaring a name:
/// read with [`DECLARED_SQL`], so a call by declared name costs no round trip more.
const DECLARED_POLICY_SQL: &str = "SELECT p.reference, p.fields FROM policies p JOIN components c ON json_extract(c.manifest, '$.tool_name') = ?1 \
     AND (p.reference = c.component_type || ':' || c.namespace || '.' || c.name \
       OR p.reference = c.component_type || ':' || c.namespace || '.' || c.name || ':' || c.version)";

/// Whether `t` is an administrative tool's name (ignoring case).
fn admin_name(t: &str) -> bool {
    super::TOOLS.iter().any(|a| a.name.eq_ignore_ascii_case(t))
}

/// Refuses a manifest whose declared `tool_name` is an administrative tool's (-33201).
pub(crate) fn check_declared(m: &Manifest) -> Result<()> {
    match m.raw.get("tool_name").and_then(Json::as_str) {
        Some(t) if admin_name(t) => {
            Err(Error::new(
                Code::ComponentInvalid,
                format!("cyfr-manifest.json: field `tool_name` `{t}` is the name of one of cyfr's own tools; choose another"),
            ))
        }
        _ => Ok(()),
    }
}

/// Whether `who` may see and call component tools: it holds what `execution.run` needs.
pub(crate) fn may_run(who: &Identity) -> bool {
    super::resolve_action("execution", "run")
        .is_some_and(|r| crate::access::satisfied(&who.key.scopes, r.need))
}

/// Where a page starts: after the component the opaque cursor names (`None`: the first).
fn cursor_of(params: &Json) -> Result<Option<(String, String, String)>> {
    let Some(c) = params.get("cursor").filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    let bad = || {
        Error::invalid_params("`cursor` is not one this server gave (use `nextCursor` as given)")
    };
    let bytes = c
        .as_str()
        .and_then(|s| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()
        })
        .ok_or_else(bad)?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(n), Some(t)) if valid_name(ns) && valid_name(n) => {
            Ok(Some((ns.into(), n.into(), t.into())))
        }
        _ => Err(bad()),
    }
}

fn page_stmt(after: &Option<(String, String, String)>) -> Stmt {
    let (ns, n, t) = after.clone().unwrap_or_default();
    Stmt::new(
        PAGE_SQL,
        vec![
            ns.into(),
            n.into(),
            t.into(),
            Value::Integer(PAGE as i64 + 1),
        ],
    )
}

/// The read of a `tools/list` page (its JSON-RPC `params`), sent ahead with the caller check.
pub(crate) fn list_reads(params: &Json) -> Vec<Stmt> {
    cursor_of(params)
        .map(|after| vec![page_stmt(&after)])
        .unwrap_or_default()
}

/// The `result` of `tools/list` as JSON text: on the first page the administrative tools
/// (the checked-in snapshot, spliced as text) when the endpoint shows them, then a page of
/// the component tools the caller may run, with `nextCursor` when more follow.
pub async fn list<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    params: &Json,
    families: ToolFamilies,
) -> Result<String> {
    let after = cursor_of(params)?;
    let mut items: Vec<String> = Vec::new();
    if after.is_none() && families.admin() {
        let admin = super::DEFINITIONS_JSON.trim();
        let inner = admin
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or_default()
            .trim();
        if !inner.is_empty() {
            items.push(inner.to_string());
        }
    }
    let mut next = None;
    if families.components() && may_run(who) {
        let s = page_stmt(&after);
        let rows = cx.db.query(&s.sql, &s.params).await?;
        for (i, r) in rows.iter().enumerate() {
            if i == PAGE {
                next = last_key(&rows);
                break;
            }
            if let Some(t) = entry(&r) {
                items.push(t.to_string());
            }
        }
    }
    let mut out = String::from("{\"tools\":[");
    out.push_str(&items.join(","));
    out.push(']');
    if let Some(c) = next {
        out.push_str(",\"nextCursor\":");
        out.push_str(&Json::String(c).to_string());
    }
    out.push('}');
    Ok(out)
}

/// The cursor after the page's last listed row (the one before the extra row read).
fn last_key(rows: &crate::db::Rows) -> Option<String> {
    let r = rows.iter().nth(PAGE - 1)?;
    let key = format!(
        "{}.{}.{}",
        r.text("namespace"),
        r.text("name"),
        r.text("component_type")
    );
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key))
}

/// The name a component's tool is called by when it declares none.
fn derived(ctype: ComponentType, ns: &str, name: &str, shared: bool) -> String {
    if shared {
        format!("{ns}.{name}_{}", ctype.as_str())
    } else {
        format!("{ns}.{name}")
    }
}

/// A `schema` entry usable as an MCP tool schema (whose root must be an object): itself
/// when it is `type: object`, with `type: object` added when every `oneOf`/`anyOf`
/// alternative is one; else none.
fn object_schema(s: Option<&Json>) -> Option<Json> {
    let o = s?.as_object()?;
    let is_object = |v: &Json| v.get("type").and_then(Json::as_str) == Some("object");
    if is_object(s?) {
        return s.cloned();
    }
    for k in ["oneOf", "anyOf"] {
        if let Some(Json::Array(alts)) = o.get(k) {
            if !alts.is_empty() && alts.iter().all(is_object) {
                let mut c = o.clone();
                c.insert("type".into(), json!("object"));
                return Some(Json::Object(c));
            }
        }
    }
    None
}

/// What a client may assume of a component: a reagent is pure compute (read-only, closed
/// world); a catalyst reaches the network; a formula may run catalysts and tools as its
/// caller, so it is treated like one.
fn annotations(ctype: ComponentType) -> Json {
    match ctype {
        ComponentType::Reagent => json!({
            "readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false,
        }),
        ComponentType::Catalyst | ComponentType::Formula => json!({
            "readOnlyHint": false, "openWorldHint": true,
        }),
    }
}

/// One component's `tools/list` entry, or none when its name would not be valid.
fn entry(r: &Row<'_>) -> Option<Json> {
    let ctype = ComponentType::parse(&r.text("component_type"))?;
    let (ns, name) = (r.text("namespace"), r.text("name"));
    // A name an administrative tool took after the component declared it stays the tool's.
    let declared = r
        .opt_text("tool_name")
        .filter(|d| r.int("beaten") == 0 && !admin_name(d));
    let tool = declared.unwrap_or_else(|| derived(ctype, &ns, &name, r.int("shared") != 0));
    if tool.len() > 128 {
        return None;
    }
    let part = |k: &str| serde_json::from_str::<Json>(&r.text(k)).ok();
    let input =
        object_schema(part("input").as_ref()).unwrap_or_else(|| json!({ "type": "object" }));
    let reference = format!("{}:{ns}.{name}:{}", ctype.as_str(), r.text("version"));
    let mut t = json!({
        "name": tool,
        "description": r.text("description"),
        "inputSchema": input,
        "annotations": annotations(ctype),
        "_meta": { "cyfr.dev/reference": reference },
    });
    if let Some(out) = object_schema(part("output").as_ref()) {
        t["outputSchema"] = out;
    }
    if let Some(title) = r.opt_text("title") {
        t["title"] = json!(title);
        t["annotations"]["title"] = json!(title);
    }
    Some(t)
}

/// The reference a derived tool name stands for: `ns.name`, `ns.name_TYPE`, either with
/// `_vVERSION`; none for anything else (a declared name has no `.`).
fn derived_target(tool: &str) -> Option<Target> {
    let (base, rest) = match tool.split_once('_') {
        Some((b, r)) => (b, Some(r)),
        None => (tool, None),
    };
    let (ns, name) = base.split_once('.')?;
    if !valid_name(ns) || !valid_name(name) {
        return None;
    }
    let (ctype, version) = match rest {
        None => (None, None),
        // No type word starts with `v`.
        Some(r) if r.starts_with('v') => (None, Some(&r[1..])),
        Some(r) => match r.split_once("_v") {
            Some((t, v)) => (Some(t), Some(v)),
            None => (Some(r), None),
        },
    };
    let ctype = match ctype {
        Some(t) => Some(*TYPES.iter().find(|c| c.as_str() == t)?),
        None => None,
    };
    let version = match version {
        Some(v) => {
            let v = v.replace('_', "+");
            Semver::parse(&v)?;
            Some(v)
        }
        None => None,
    };
    Some(Target::of(ctype, ns, name, version))
}

/// What a call of tool `tool` will read, to send ahead with its caller check: the reads
/// of `execution.run` of the component its name stands for.
pub(crate) fn read_ahead(tool: &str) -> Vec<Stmt> {
    match derived_target(tool) {
        Some(t) => executions::read_ahead_target(&t),
        None if valid_tool_name(tool) => vec![
            Stmt::new(DECLARED_SQL, vec![tool.into()]),
            Stmt::new(DECLARED_POLICY_SQL, vec![tool.into()]),
        ],
        None => Vec::new(),
    }
}

/// The refusal of a name no component answers to (as for any unknown tool).
fn unknown(tool: &str) -> Error {
    Error::invalid_params(format!("unknown tool `{tool}`"))
}

/// The component tool `tool` stands for, with its effective policy.
async fn locate<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    tool: &str,
) -> Result<(Component, crate::policy::Policy)> {
    if let Some(target) = derived_target(tool) {
        cx.db.read_ahead(executions::read_ahead_target(&target));
        let c = match registry::find(&cx.db, &target).await {
            Err(e) if e.code == Code::ComponentNotFound => return Err(unknown(tool)),
            other => other?,
        };
        let p = crate::policy::effective(&cx.db, &c).await?;
        return Ok((c, p));
    }
    if !valid_tool_name(tool) {
        return Err(unknown(tool));
    }
    let rows = cx.db.query(DECLARED_SQL, &[tool.into()]).await?;
    let c = rows
        .first()
        .map(|r| Component::from_row(&r))
        .ok_or_else(|| unknown(tool))?;
    let policies = cx.db.query(DECLARED_POLICY_SQL, &[tool.into()]).await?;
    let p = crate::policy::effective_of(&policies, &c)?;
    Ok((c, p))
}

/// Whether a refusal goes back as a JSON-RPC error (who is calling, or what it may do;
/// an unknown tool) rather than as a tool result with `isError`.
fn protocol_level(e: &Error) -> bool {
    matches!(
        e.code,
        Code::AuthRequired | Code::InsufficientPermissions | Code::InvalidParams
    ) && e
        .data
        .as_ref()
        .and_then(|d| d.get("execution_id"))
        .is_none()
}

/// `tools/call` of component tool `tool` with `args` (the component's input): its MCP
/// result, and the failure to audit when the run failed. Refusals of the caller, unknown
/// tools and database errors are `Err`.
pub async fn call<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    call: &Call<'_>,
    tool: &str,
    args: &Json,
) -> Result<(Json, Option<Error>)> {
    let run = super::resolve_action("execution", "run")
        .ok_or_else(|| Error::internal("execution.run is not declared"))?;
    call.who.require("execution", "run", run.need)?;
    let located = locate(cx, tool).await;
    let outcome = match located {
        Ok((c, policy)) => {
            let manifest = c.manifest();
            if let Some(r) = call.stateless_req {
                let schema = manifest.get("schema").and_then(|s| s.get("input"));
                crate::mcp_headers::check_params(r, schema.unwrap_or(&Json::Null), args)?;
            }
            // A component that asks for input (`mcp_input`) runs with `cyfr_input`.
            let asking = call
                .input
                .filter(|_| manifest.get("mcp_input").and_then(Json::as_bool) == Some(true));
            let input = match asking {
                Some(a) => a.input(call.who, tool, args, cx.env.now_ms())?,
                None => args.clone(),
            };
            let origin = Origin {
                opened: &[],
                secure: call.secure,
                request_id: call.request_id,
                rpc_id: call.rpc_id,
            };
            let reference = c.reference.clone();
            executions::run_found(cx, call.who, c, policy, Some(&input), None, origin)
                .await
                .map(|v| (v, manifest, reference, asking))
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok((v, _, reference, Some(asked)))
            if v.get("result").and_then(input_required::asks).is_some() =>
        {
            let ask = v
                .get("result")
                .and_then(input_required::asks)
                .unwrap_or(&Json::Null);
            let asked_for = input_required::answer(
                &cx.config, &cx.env, asked, call.who, tool, args, ask, &reference,
            )
            .map_err(|e| match e.code {
                Code::ExecutionFailed => e.with_data(
                    json!({ "execution_id": v.get("execution_id"), "reference": reference }),
                ),
                _ => e,
            });
            match asked_for {
                Ok(Some(r)) => Ok((r, None)),
                Ok(None) => {
                    let e = Error::new(
                        Code::MissingClientCapability,
                        format!("tool `{tool}` needs input from the user, which cyfr asks for only on MCP 2026-07-28 (InputRequiredResult); this request is 2025-11-25"),
                    );
                    Ok((error_result(&e), Some(e)))
                }
                Err(e) if e.code == Code::ExecutionFailed => Ok((error_result(&e), Some(e))),
                Err(e) => Err(e),
            }
        }
        Ok((v, manifest, reference, _)) => match result(&v, &manifest, &reference) {
            Ok(r) => Ok((r, None)),
            Err(e) => Ok((error_result(&e), Some(e))),
        },
        Err(e) if protocol_level(&e) || e.code == Code::Internal => Err(e),
        Err(e) => Ok((error_result(&e), Some(e))),
    }
}

/// A failed run as a tool result: the error's code, name, message and data as text.
fn error_result(e: &Error) -> Json {
    let body = json!({ "error": { "code": e.code.number(), "name": e.code.name(), "message": e.message, "data": e.data } });
    json!({
        "content": [{ "type": "text", "text": body.to_string() }],
        "structuredContent": body,
        "isError": true,
    })
}

/// A completed run as a tool result: the output as text always, `structuredContent` when
/// the manifest declares an output schema; an `mcp_content` component's own blocks.
fn result(run: &Json, manifest: &Json, reference: &str) -> Result<Json> {
    let output = run.get("result").cloned().unwrap_or(Json::Null);
    let meta = json!({ "cyfr.dev/execution_id": run.get("execution_id"), "cyfr.dev/reference": reference });
    if manifest.get("mcp_content").and_then(Json::as_bool) == Some(true) {
        let (content, structured) = mcp_content(&output).map_err(|why| {
            Error::new(
                Code::ExecutionFailed,
                format!("{reference} declares mcp_content but its output {why}"),
            )
            .with_data(json!({ "execution_id": run.get("execution_id"), "reference": reference }))
        })?;
        let mut r = json!({ "content": content, "isError": false, "_meta": meta });
        if let Some(s) = structured {
            r["structuredContent"] = s;
        }
        return Ok(r);
    }
    let text = serde_json::to_string(&output).unwrap_or_default();
    let mut r =
        json!({ "content": [{ "type": "text", "text": text }], "isError": false, "_meta": meta });
    let declared = object_schema(manifest.get("schema").and_then(|s| s.get("output")));
    if declared.is_some() && output.is_object() {
        r["structuredContent"] = output;
    }
    Ok(r)
}

/// The blocks and structured content of an `mcp_content` output:
/// `{"content": [block, …], "structuredContent"?: {…}}`, each block checked for the fields
/// its type requires (text, image, audio, resource, resource_link).
fn mcp_content(output: &Json) -> std::result::Result<(Json, Option<Json>), String> {
    let o = output
        .as_object()
        .ok_or("is not an object {\"content\": [...]}")?;
    let blocks = o
        .get("content")
        .and_then(Json::as_array)
        .ok_or("has no `content` array")?;
    for (i, b) in blocks.iter().enumerate() {
        check_block(b).map_err(|why| format!("has a bad block content[{i}]: {why}"))?;
    }
    let structured = match o.get("structuredContent") {
        None | Some(Json::Null) => None,
        Some(s @ Json::Object(_)) => Some(s.clone()),
        Some(_) => return Err("has a `structuredContent` that is not an object".into()),
    };
    Ok((Json::Array(blocks.clone()), structured))
}

fn check_block(b: &Json) -> std::result::Result<(), String> {
    let s = |k: &str| b.get(k).and_then(Json::as_str);
    let need = |k: &str| s(k).map(|_| ()).ok_or(format!("`{k}` must be a string"));
    let base64 = |k: &str| {
        s(k).filter(|d| base64::engine::general_purpose::STANDARD.decode(d).is_ok())
            .map(|_| ())
            .ok_or(format!("`{k}` must be base64"))
    };
    match s("type") {
        Some("text") => need("text"),
        Some("image" | "audio") => base64("data").and_then(|_| need("mimeType")),
        Some("resource_link") => need("uri").and_then(|_| need("name")),
        Some("resource") => {
            let r = b.get("resource").ok_or("`resource` is required")?;
            let has = |k: &str| r.get(k).is_some_and(Json::is_string);
            if !has("uri") {
                return Err("`resource.uri` must be a string".into());
            }
            if !(has("text") || has("blob")) {
                return Err("`resource` needs `text` or `blob`".into());
            }
            Ok(())
        }
        _ => Err("`type` must be text, image, audio, resource or resource_link".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(t: Option<Target>) -> Option<String> {
        t.map(|t| match t {
            Target::Typed(r) => r.canonical(),
            Target::Untyped(u) => u.shown(),
        })
    }

    #[test]
    fn derived_names_stand_for_their_references() {
        let cases = [
            ("cyfr.json-transform", Some("cyfr.json-transform")),
            (
                "cyfr.json-transform_reagent",
                Some("reagent:cyfr.json-transform"),
            ),
            (
                "cyfr.json-transform_v0.1.0",
                Some("cyfr.json-transform:0.1.0"),
            ),
            (
                "cyfr.x_catalyst_v1.0.0-rc.1_b7",
                Some("catalyst:cyfr.x:1.0.0-rc.1+b7"),
            ),
            ("cyfr.x_gizmo", None),
            ("cyfr.x_v1", None),
            ("Cyfr.x", None),
            ("declared-name", None),
            ("execution", None),
        ];
        for (tool, want) in cases {
            assert_eq!(shown(derived_target(tool)).as_deref(), want, "{tool}");
        }
    }

    #[test]
    fn schemas_become_object_schemas_or_nothing() {
        let alt = json!({ "oneOf": [{ "type": "object" }, { "type": "object" }] });
        assert_eq!(object_schema(Some(&alt)).unwrap()["type"], "object");
        assert!(object_schema(Some(&json!({ "type": "array" }))).is_none());
        assert!(object_schema(Some(&json!({ "oneOf": [{ "type": "string" }] }))).is_none());
        assert!(object_schema(None).is_none());
    }

    #[test]
    fn content_blocks_are_checked_by_type() {
        let good = json!({ "content": [
            { "type": "text", "text": "hi" },
            { "type": "image", "data": "aGk=", "mimeType": "image/png" },
            { "type": "resource_link", "uri": "cyfr://x", "name": "x" },
            { "type": "resource", "resource": { "uri": "cyfr://x", "text": "x" } },
        ] });
        assert!(mcp_content(&good).is_ok());
        for bad in [
            json!({ "content": [{ "type": "image", "data": "not base64!", "mimeType": "image/png" }] }),
            json!({ "content": [{ "type": "video" }] }),
            json!({ "content": "text" }),
            json!({ "content": [], "structuredContent": [1] }),
        ] {
            assert!(mcp_content(&bad).is_err(), "{bad}");
        }
    }
}
