//! `cyfr-manifest.json`: read and checked before anything is registered.

use crate::errors::{Code, Error, Result};
use crate::reference::{valid_name, ComponentType, Semver};
use serde_json::Value as Json;

/// A checked manifest: the fields the registry relies on, plus the original JSON.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Component type.
    pub ctype: ComponentType,
    /// Namespace from `id`.
    pub namespace: String,
    /// Name from `id`.
    pub name: String,
    /// Semver version.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// The manifest as given.
    pub raw: Json,
}

/// Whether `s` may be declared as a component's MCP tool name (`tool_name`): 1-64 of
/// `[A-Za-z0-9_-]`. No `.`, so it never equals a derived name (`namespace.name`).
pub fn valid_tool_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The optional fields: `secrets`, `schema`, `defaults`, `examples`, `wasi`, and the MCP
/// ones `tool_name`, `title`, `mcp_content` and `mcp_input` (it asks for input:
/// `tools::input_required`).
fn check_extras(o: &serde_json::Map<String, Json>, ctype: ComponentType) -> Result<()> {
    if let Some(secrets) = o.get("secrets") {
        let ok = secrets
            .as_array()
            .is_some_and(|a| a.iter().all(Json::is_string));
        if !ok {
            return Err(invalid("secrets", "must be an array of secret names"));
        }
    }
    for f in ["schema", "defaults", "wasi"] {
        if o.get(f).is_some_and(|v| !v.is_object()) {
            return Err(invalid(f, "must be an object"));
        }
    }
    if let Some(t) = o.get("tool_name") {
        let ok = t.as_str().is_some_and(valid_tool_name);
        if !ok {
            return Err(invalid("tool_name", "must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-' (no '.': dotted names are the ones cyfr derives, namespace.name)"));
        }
    }
    if o.get("title").is_some_and(|v| !v.is_string()) {
        return Err(invalid("title", "must be a string"));
    }
    for f in ["mcp_content", "mcp_input"] {
        if o.get(f).is_some_and(|v| !v.is_boolean()) {
            return Err(invalid(f, "must be true or false"));
        }
    }
    if o.get("examples").is_some_and(|v| !v.is_array()) {
        return Err(invalid("examples", "must be an array"));
    }
    check_mcp_declarations(o)?;
    if let Some(wasi) = o.get("wasi").and_then(Json::as_object) {
        for (k, v) in wasi {
            if !v.is_boolean() {
                return Err(invalid(&format!("wasi.{k}"), "must be true or false"));
            }
        }
        let wants = |k: &str| wasi.get(k).and_then(Json::as_bool).unwrap_or(false);
        if ctype == ComponentType::Reagent
            && (wants("http") || wants("streaming") || wants("secrets"))
        {
            return Err(invalid("wasi", "a reagent is pure compute: http, streaming and secrets must be false (make it a catalyst)"));
        }
    }
    Ok(())
}

/// The MCP prompts and resources a manifest may declare (docs/components.md, "Prompts and
/// resources"): `prompts`, `resources` and `resource_templates`, each an array of objects.
fn check_mcp_declarations(o: &serde_json::Map<String, Json>) -> Result<()> {
    let list = |f: &str| -> Result<Vec<&serde_json::Map<String, Json>>> {
        match o.get(f) {
            None => Ok(Vec::new()),
            Some(Json::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_object()
                        .ok_or_else(|| invalid(f, "must be an array of objects"))
                })
                .collect(),
            Some(_) => Err(invalid(f, "must be an array of objects")),
        }
    };
    let text = |x: &serde_json::Map<String, Json>, f: &str, k: &str| -> Result<()> {
        match x.get(k) {
            Some(Json::String(s)) if !s.is_empty() => Ok(()),
            _ => Err(invalid(
                f,
                format!("needs `{k}`, a non-empty string, in each entry"),
            )),
        }
    };
    for p in list("prompts")? {
        text(p, "prompts", "description")?;
        if !p
            .get("name")
            .and_then(Json::as_str)
            .is_some_and(valid_tool_name)
        {
            return Err(invalid(
                "prompts",
                "needs `name` of 1-64 characters of A-Z, a-z, 0-9, '_' and '-' in each entry",
            ));
        }
        let args = p.get("arguments").map(|a| {
            a.as_array()
                .filter(|a| a.iter().all(|x| x.get("name").is_some_and(Json::is_string)))
        });
        if args.is_some_and(|a| a.is_none()) {
            return Err(invalid(
                "prompts",
                "`arguments` must be an array of {name, description, required}",
            ));
        }
        let messages = p
            .get("messages")
            .and_then(Json::as_array)
            .filter(|m| !m.is_empty());
        let good = messages.is_some_and(|m| {
            m.iter().all(|x| {
                matches!(
                    x.get("role").and_then(Json::as_str),
                    Some("user" | "assistant")
                ) && x
                    .get("content")
                    .and_then(|c| c.get("type"))
                    .is_some_and(Json::is_string)
            })
        });
        if !good {
            return Err(invalid("prompts", "`messages` must be a non-empty array of {role: user|assistant, content: {type, …}}"));
        }
        if p.get("inputRequests").is_some_and(|r| !r.is_object()) {
            return Err(invalid("prompts", "`inputRequests` must be an object"));
        }
    }
    for r in list("resources")? {
        text(r, "resources", "uri")?;
        text(r, "resources", "name")?;
        let blob = r.get("blob").and_then(Json::as_str);
        use base64::Engine;
        let ok = match (r.get("text"), blob) {
            (Some(Json::String(_)), None) => true,
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).is_ok(),
            _ => false,
        };
        if !ok {
            return Err(invalid(
                "resources",
                "needs either `text` (a string) or `blob` (base64) in each entry",
            ));
        }
    }
    let cyfrs = |x: &serde_json::Map<String, Json>, k: &str| {
        x.get(k)
            .and_then(Json::as_str)
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("cyfr:"))
    };
    if list("resources")?.iter().any(|r| cyfrs(r, "uri"))
        || list("resource_templates")?
            .iter()
            .any(|t| cyfrs(t, "uriTemplate"))
    {
        return Err(invalid(
            "resources",
            "may not use the `cyfr:` scheme, which is cyfr's own",
        ));
    }
    for t in list("resource_templates")? {
        text(t, "resource_templates", "uriTemplate")?;
        text(t, "resource_templates", "name")?;
        text(t, "resource_templates", "text")?;
    }
    Ok(())
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        Code::ComponentInvalid,
        format!("cyfr-manifest.json: field `{field}` {why}"),
    )
}

impl Manifest {
    /// Parses and checks manifest text.
    pub fn parse(text: &str) -> Result<Manifest> {
        let raw: Json = serde_json::from_str(text).map_err(|e| {
            Error::new(
                Code::ComponentInvalid,
                format!("cyfr-manifest.json is not valid JSON: {e}"),
            )
        })?;
        Manifest::check(raw)
    }

    /// Checks a manifest value.
    pub fn check(raw: Json) -> Result<Manifest> {
        let o = raw.as_object().ok_or_else(|| {
            Error::new(
                Code::ComponentInvalid,
                "cyfr-manifest.json must be a JSON object",
            )
        })?;
        let s = |f: &str| -> Result<&str> {
            o.get(f)
                .and_then(Json::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid(f, "is required and must be a non-empty string"))
        };
        let type_str = s("type")?;
        let ctype = ComponentType::parse(type_str)
            .filter(|_| type_str.len() > 1)
            .ok_or_else(|| {
                invalid(
                    "type",
                    format!("must be one of reagent, catalyst, formula (got `{type_str}`)"),
                )
            })?;
        let id = s("id")?;
        let (id_type, id_rest) = id.split_once(':').ok_or_else(|| {
            invalid(
                "id",
                format!(
                    "must look like `{}:namespace.name` (got `{id}`)",
                    ctype.as_str()
                ),
            )
        })?;
        if ComponentType::parse(id_type) != Some(ctype) {
            return Err(invalid(
                "id",
                format!("says `{id_type}` but `type` is `{}`", ctype.as_str()),
            ));
        }
        let (namespace, name) = id_rest
            .split_once('.')
            .ok_or_else(|| invalid("id", "must be type:namespace.name"))?;
        if !valid_name(namespace) || !valid_name(name) {
            return Err(invalid(
                "id",
                "namespace and name must be lower-case letters, digits and '-', 1-64 characters",
            ));
        }
        let version = s("version")?;
        Semver::parse(version).ok_or_else(|| invalid("version", format!("must be semver 2.0.0 like 0.1.0 or 1.0.0-rc.1: MAJOR.MINOR.PATCH, optional -pre and +build of [0-9A-Za-z-] identifiers, no leading zeros (got `{}`)", version.escape_debug())))?;
        let description = o
            .get("description")
            .map(|d| {
                d.as_str()
                    .map(String::from)
                    .ok_or_else(|| invalid("description", "must be a string"))
            })
            .transpose()?;
        check_extras(o, ctype)?;
        Ok(Manifest {
            ctype,
            namespace: namespace.into(),
            name: name.into(),
            version: version.into(),
            description: description.unwrap_or_default(),
            raw,
        })
    }

    /// The canonical reference this manifest registers.
    pub fn reference(&self) -> String {
        format!(
            "{}:{}.{}:{}",
            self.ctype.as_str(),
            self.namespace,
            self.name,
            self.version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"reagent:cyfr.json-transform","type":"reagent","version":"0.1.0","description":"d","secrets":[],"wasi":{"http":false}}"#;

    #[test]
    fn a_good_manifest_gives_its_reference() {
        assert_eq!(
            Manifest::parse(GOOD).unwrap().reference(),
            "reagent:cyfr.json-transform:0.1.0"
        );
    }

    #[test]
    fn bad_manifests_name_the_field_and_use_component_invalid() {
        let cases = [
            ("not json", "valid JSON"),
            (
                r#"{"id":"reagent:cyfr.x","type":"gizmo","version":"0.1.0"}"#,
                "`type`",
            ),
            (
                r#"{"id":"catalyst:cyfr.x","type":"reagent","version":"0.1.0"}"#,
                "`id`",
            ),
            (
                r#"{"id":"reagent:cyfr.x","type":"reagent","version":"one"}"#,
                "`version`",
            ),
            (
                r#"{"id":"reagent:cyfr.x","type":"reagent","version":"0.1.0","secrets":"A"}"#,
                "`secrets`",
            ),
            (
                r#"{"id":"reagent:cyfr.x","type":"reagent","version":"0.1.0","wasi":{"http":true}}"#,
                "`wasi`",
            ),
            (r#"{"type":"reagent","version":"0.1.0"}"#, "`id`"),
            (
                r#"{"id":"reagent:cyfr.x","type":"reagent","version":"0.1.0","tool_name":"a.b"}"#,
                "`tool_name`",
            ),
            (
                r#"{"id":"reagent:cyfr.x","type":"reagent","version":"0.1.0","tool_name":""}"#,
                "`tool_name`",
            ),
            (
                r#"{"id":"reagent:cyfr.x","type":"reagent","version":"0.1.0","mcp_content":"yes"}"#,
                "`mcp_content`",
            ),
            (
                r#"{"id":"reagent:cyfr.x","type":"reagent","version":"1.0.0-x:y"}"#,
                "`version`",
            ),
            (
                r#"{"id":"reagent:cyfr.x","type":"reagent","version":"1.0.0-<script>"}"#,
                "`version`",
            ),
            (
                r#"{"id":"reagent:cyfr.x","type":"reagent","version":"1.0.0-a\u202eb"}"#,
                "`version`",
            ),
        ];
        for (text, needle) in cases {
            let e = Manifest::parse(text).unwrap_err();
            assert_eq!(e.code, Code::ComponentInvalid);
            assert!(
                e.message.contains(needle),
                "{} should mention {needle}",
                e.message
            );
        }
    }
}
