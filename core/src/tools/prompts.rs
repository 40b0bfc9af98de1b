//! MCP prompts and resources that component manifests declare (docs/components.md,
//! "Prompts and resources"): `prompts` (messages with `{{argument}}` substitution, and
//! optionally `inputRequests` asked first on 2026-07-28), `resources` (static text or
//! base64 blob) and `resource_templates` (`{var}` in the URI, substituted as `{{var}}` in
//! its text). Shown to callers who may run components (`execution.run`'s scope), from the
//! highest version of each component; a name or URI two components declare is the first's
//! in (namespace, name, type) order. The one read is sent ahead with the caller check.

use super::input_required;
use crate::auth::Identity;
use crate::context::Context;
use crate::db::{Db, Stmt};
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use serde_json::{json, Map, Value as Json};

/// The highest version of every component that declares prompts or resources.
const DECLARED_SQL: &str = "SELECT c.component_type, c.namespace, c.name, c.version, \
     json_quote(json_extract(c.manifest, '$.prompts')) AS prompts, \
     json_quote(json_extract(c.manifest, '$.resources')) AS resources, \
     json_quote(json_extract(c.manifest, '$.resource_templates')) AS templates \
     FROM components c WHERE c.version_key != '' \
     AND (json_extract(c.manifest, '$.prompts') IS NOT NULL OR json_extract(c.manifest, '$.resources') IS NOT NULL \
       OR json_extract(c.manifest, '$.resource_templates') IS NOT NULL) \
     AND c.version_key = (SELECT max(d.version_key) FROM components d WHERE d.component_type = c.component_type AND d.namespace = c.namespace AND d.name = c.name) \
     ORDER BY c.namespace, c.name, c.component_type";

/// The read of every method here, to send ahead with the caller check.
pub(crate) fn reads() -> Vec<Stmt> {
    vec![Stmt::new(DECLARED_SQL, Vec::new())]
}

/// The declarations (`prompts`, `resources`, `templates`, in that order) of every
/// component the caller may run, each with the reference of the component declaring it.
/// One query (sent ahead), whatever a method reads of it.
async fn declared<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
) -> Result<[Vec<(Json, String)>; 3]> {
    let mut out: [Vec<(Json, String)>; 3] = Default::default();
    if !super::component_tools::may_run(who) {
        return Ok(out);
    }
    let rows = cx.db.query(DECLARED_SQL, &[]).await?;
    for r in rows.iter() {
        let reference = format!(
            "{}:{}.{}:{}",
            r.text("component_type"),
            r.text("namespace"),
            r.text("name"),
            r.text("version")
        );
        for (i, kind) in ["prompts", "resources", "templates"].iter().enumerate() {
            if let Ok(Json::Array(items)) = serde_json::from_str::<Json>(&r.text(kind)) {
                out[i].extend(items.into_iter().map(|x| (x, reference.clone())));
            }
        }
    }
    Ok(out)
}

/// The first declaration whose `key` equals `value`, and those after it dropped.
fn first_by<'a>(items: &'a [(Json, String)], key: &str) -> Vec<&'a (Json, String)> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .filter(|(i, _)| seen.insert(i.get(key).and_then(Json::as_str).unwrap_or("").to_string()))
        .collect()
}

/// Keeps only the listed fields of a declaration.
fn pick(item: &Json, fields: &[&str]) -> Json {
    let mut m = Map::new();
    for f in fields {
        if let Some(v) = item.get(*f) {
            m.insert((*f).into(), v.clone());
        }
    }
    Json::Object(m)
}

fn meta(reference: &str) -> Json {
    json!({ "cyfr.dev/reference": reference })
}

/// `prompts/list`.
pub async fn list_prompts<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
) -> Result<Json> {
    let [all, _, _] = declared(cx, who).await?;
    let prompts: Vec<Json> = first_by(&all, "name")
        .into_iter()
        .map(|(p, r)| {
            let mut e = pick(p, &["name", "title", "description", "arguments"]);
            e["_meta"] = meta(r);
            e
        })
        .collect();
    Ok(json!({ "prompts": prompts }))
}

/// `prompts/get`: the prompt's messages with its arguments substituted; when it declares
/// `inputRequests`, first an `InputRequiredResult` until every one is answered
/// (2026-07-28 only: `capabilities` are its client's, `None` on 2025-11-25; -32021 for a
/// capability the request did not declare).
pub async fn get_prompt<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    params: &Json,
    capabilities: Option<&Json>,
) -> Result<Json> {
    let name = params.get("name").and_then(Json::as_str).unwrap_or("");
    let [all, _, _] = declared(cx, who).await?;
    let Some((prompt, reference)) = first_by(&all, "name")
        .into_iter()
        .find(|(p, _)| p.get("name").and_then(Json::as_str) == Some(name))
    else {
        return Err(Error::invalid_params(format!("no prompt `{name}`")));
    };
    let given = match params.get("arguments") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(m)) => m.clone(),
        Some(_) => {
            return Err(Error::invalid_params(
                "`arguments` must be an object of strings",
            ))
        }
    };
    let mut values: Vec<(String, String)> = Vec::new();
    for a in prompt
        .get("arguments")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let n = a.get("name").and_then(Json::as_str).unwrap_or("");
        match given.get(n) {
            Some(Json::String(v)) => values.push((n.into(), v.clone())),
            Some(_) => {
                return Err(Error::invalid_params(format!(
                    "argument `{n}` must be a string"
                )))
            }
            None if a.get("required").and_then(Json::as_bool) == Some(true) => {
                return Err(Error::invalid_params(format!(
                    "prompt `{name}` needs argument `{n}`"
                )))
            }
            None => values.push((n.into(), String::new())),
        }
    }
    if let Some(requests) = prompt.get("inputRequests").and_then(Json::as_object) {
        let Some(caps) = capabilities else {
            return Err(Error::new(
                Code::MissingClientCapability,
                format!("prompt `{name}` needs input from the user, which cyfr asks for only on MCP 2026-07-28 (InputRequiredResult)"),
            ));
        };
        input_required::require_capabilities(&format!("prompt `{name}`"), requests, caps)?;
        let responses = params.get("inputResponses").and_then(Json::as_object);
        let answered = |k: &String| responses.is_some_and(|r| r.contains_key(k));
        if !requests.keys().all(answered) {
            return Ok(json!({ "resultType": "input_required", "inputRequests": requests }));
        }
        for (k, r) in responses.into_iter().flatten() {
            if !requests.contains_key(k) {
                continue;
            }
            for (f, v) in r
                .get("content")
                .and_then(Json::as_object)
                .into_iter()
                .flatten()
            {
                let v = v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string());
                values.push((format!("input.{k}.{f}"), v));
            }
        }
    }
    let messages = substitute(prompt.get("messages").unwrap_or(&Json::Null), &values);
    let mut out = json!({ "messages": messages, "_meta": meta(reference) });
    if let Some(d) = prompt.get("description") {
        out["description"] = d.clone();
    }
    Ok(out)
}

/// Every string of `v` with each `{{name}}` of `values` replaced (others left as written).
fn substitute(v: &Json, values: &[(String, String)]) -> Json {
    match v {
        Json::String(s) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(i) = rest.find("{{") {
                out.push_str(&rest[..i]);
                let after = &rest[i + 2..];
                match after.find("}}") {
                    Some(j) => {
                        let key = after[..j].trim();
                        match values.iter().find(|(k, _)| k == key) {
                            Some((_, val)) => out.push_str(val),
                            None => out.push_str(&rest[i..i + 2 + j + 2]),
                        }
                        rest = &after[j + 2..];
                    }
                    None => {
                        out.push_str(&rest[i..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            Json::String(out)
        }
        Json::Array(a) => Json::Array(a.iter().map(|x| substitute(x, values)).collect()),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), substitute(x, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The resources `resources/list` adds.
pub async fn list_resources<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
) -> Result<Vec<Json>> {
    let [_, all, _] = declared(cx, who).await?;
    Ok(first_by(&all, "uri")
        .into_iter()
        .map(|(r, reference)| {
            let mut e = pick(r, &["uri", "name", "title", "description", "mimeType"]);
            e["_meta"] = meta(reference);
            e
        })
        .collect())
}

/// The templates `resources/templates/list` adds.
pub async fn list_templates<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
) -> Result<Vec<Json>> {
    let [_, _, all] = declared(cx, who).await?;
    Ok(first_by(&all, "uriTemplate")
        .into_iter()
        .map(|(t, reference)| {
            let mut e = pick(
                t,
                &["uriTemplate", "name", "title", "description", "mimeType"],
            );
            e["_meta"] = meta(reference);
            e
        })
        .collect())
}

/// `resources/read` of a declared resource or template; `None` when none matches.
pub async fn read_resource<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: &Identity,
    uri: &str,
) -> Result<Option<Json>> {
    let [_, statics, templates] = declared(cx, who).await?;
    if let Some((r, _)) = first_by(&statics, "uri")
        .into_iter()
        .find(|(r, _)| r.get("uri").and_then(Json::as_str) == Some(uri))
    {
        let mut c = pick(r, &["uri", "mimeType", "text", "blob"]);
        c["uri"] = json!(uri);
        return Ok(Some(json!({ "contents": [c] })));
    }
    for (t, _) in first_by(&templates, "uriTemplate") {
        let template = t.get("uriTemplate").and_then(Json::as_str).unwrap_or("");
        if let Some(values) = match_template(template, uri) {
            let text = substitute(t.get("text").unwrap_or(&Json::Null), &values);
            let mut c = json!({ "uri": uri, "text": text });
            if let Some(m) = t.get("mimeType") {
                c["mimeType"] = m.clone();
            }
            return Ok(Some(json!({ "contents": [c] })));
        }
    }
    Ok(None)
}

/// The values of `template`'s `{var}`s in `uri`, when it matches: each value is up to the
/// literal that follows it, non-empty, of unreserved URI characters only
/// (`A-Z a-z 0-9 - . _ ~`), so it can go into any text unescaped.
fn match_template(template: &str, uri: &str) -> Option<Vec<(String, String)>> {
    let mut values = Vec::new();
    let mut t = template;
    let mut u = uri;
    while !t.is_empty() {
        match t.find('{') {
            Some(0) => {
                let end = t.find('}')?;
                let var = &t[1..end];
                t = &t[end + 1..];
                let next = t.find('{').map_or(t, |i| &t[..i]);
                let len = if next.is_empty() {
                    u.len()
                } else {
                    u.find(next)?
                };
                let value = &u[..len];
                let ok = !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
                if !ok {
                    return None;
                }
                values.push((var.to_string(), value.to_string()));
                u = &u[len..];
            }
            found => {
                let lit = &t[..found.unwrap_or(t.len())];
                u = u.strip_prefix(lit)?;
                t = &t[lit.len()..];
            }
        }
    }
    u.is_empty().then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_segments_of_unreserved_characters() {
        let t = "test://template/{id}/data";
        assert_eq!(
            match_template(t, "test://template/123/data"),
            Some(vec![("id".into(), "123".into())])
        );
        assert_eq!(match_template(t, "test://template//data"), None);
        assert_eq!(match_template(t, "test://template/1%2F2/data"), None);
        assert_eq!(match_template(t, "test://template/\"x/data"), None);
        assert_eq!(match_template(t, "test://template/123/data/more"), None);
        assert_eq!(
            match_template("x://{a}.{b}", "x://one.two"),
            Some(vec![("a".into(), "one".into()), ("b".into(), "two".into())])
        );
    }

    #[test]
    fn substitution_replaces_known_names_only() {
        let v = json!({ "t": "a={{a}}, b={{ b }}, c={{c}}, open {{", "n": 1 });
        let values = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        assert_eq!(
            substitute(&v, &values),
            json!({ "t": "a=1, b=2, c={{c}}, open {{", "n": 1 })
        );
    }
}
