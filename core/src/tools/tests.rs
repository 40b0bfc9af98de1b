//! The declarations agree with each other and with what clients were promised.

use super::decl::ActionSet;
use super::*;
use crate::access::SCOPES;
use serde_json::json;
use std::collections::BTreeSet;

fn schema_of(tool: &str) -> Json {
    definitions()
        .into_iter()
        .find(|t| t["name"] == tool)
        .unwrap_or_else(|| panic!("{tool} has no schema"))
}

#[test]
fn every_action_has_a_scope_a_schema_and_a_parser() {
    for t in TOOLS {
        let names = action_names(t);
        assert!(!names.is_empty(), "{} has no action", t.name);
        let schema = schema_of(t.name);
        let listed: Vec<&str> = schema["inputSchema"]["properties"]["action"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(listed, names, "{}: tools/list and the scope table", t.name);
        for (tool, action, need) in t.table {
            assert_eq!(*tool, t.name);
            assert!(
                (t.parse)(action).is_some(),
                "{tool}.{action} does not parse"
            );
            if let Need::Scopes(req) = need {
                assert!(req.iter().all(|r| SCOPES.contains(r)), "{tool}.{action}");
            }
            // Missing arguments are the handlers' to refuse, with their own messages.
            let (parsed, _, _) = resolve(tool, &json!({ "action": action })).unwrap();
            assert_eq!((t.parse)(action), Some(parsed));
        }
        assert_eq!((t.properties)().len(), names.len(), "{}", t.name);
    }
}

#[test]
fn action_and_tool_names_are_unique() {
    use super::{component, config, encryption, execution, guide, key, policy, secret, system};
    // A second action of the same name would be shadowed by the first (parse, the scope
    // table and resolve all take the first match) and never run.
    fn each_name_parses_to_itself<A: ActionSet + PartialEq + std::fmt::Debug>() {
        for a in A::ALL {
            assert_eq!(
                A::parse(a.name()),
                Some(*a),
                "{}.{} is declared twice",
                A::TOOL,
                a.name()
            );
        }
    }
    each_name_parses_to_itself::<execution::Action>();
    each_name_parses_to_itself::<component::Action>();
    each_name_parses_to_itself::<key::Action>();
    each_name_parses_to_itself::<policy::Action>();
    each_name_parses_to_itself::<secret::Action>();
    each_name_parses_to_itself::<encryption::Action>();
    each_name_parses_to_itself::<system::Action>();
    each_name_parses_to_itself::<guide::Action>();
    each_name_parses_to_itself::<config::Action>();
    let mut seen = BTreeSet::new();
    for t in TOOLS {
        assert!(seen.insert(t.name), "tool {} is declared twice", t.name);
    }
    let rows: BTreeSet<(&str, &str)> = TABLE.iter().map(|(t, a, _)| (*t, *a)).collect();
    assert_eq!(
        rows.len(),
        TABLE.len(),
        "the scope table has a duplicate row"
    );
}

#[test]
fn every_action_reads_empty_arguments() {
    use super::{component, config, encryption, execution, guide, key, policy, secret, system};
    fn all<A: ActionSet>(call: impl Fn(A) -> bool) {
        for a in A::ALL {
            assert!(call(*a), "{}.{} refuses empty arguments", A::TOOL, a.name());
        }
    }
    let empty = json!({});
    all(|a: execution::Action| a.call(&empty).is_ok());
    all(|a: component::Action| a.call(&empty).is_ok());
    all(|a: key::Action| a.call(&empty).is_ok());
    all(|a: policy::Action| a.call(&empty).is_ok());
    all(|a: secret::Action| a.call(&empty).is_ok());
    all(|a: encryption::Action| a.call(&empty).is_ok());
    all(|a: system::Action| a.call(&empty).is_ok());
    all(|a: guide::Action| a.call(&empty).is_ok());
    all(|a: config::Action| a.call(&empty).is_ok());
}

#[test]
fn every_schema_property_is_read_by_its_tool() {
    // A property of the wrong kind is refused naming it, or read loosely; either way the
    // argument type has the field (a property no type reads would parse silently).
    let loose = [
        "limit",
        "include_revoked",
        "replace",
        "allow_user_keys",
        "input",
        "manifest",
        "rate_limit",
        "value",
        "field",
        "policy",
        "config",
        "artifact",
        "permissions",
        "filters",
        "deny",
    ];
    for t in TOOLS {
        let schema = schema_of(t.name);
        for prop in schema["inputSchema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
        {
            if prop == "action"
                || loose.contains(&prop.as_str())
                || (t.name == "execution" && (prop == "type" || prop == "reference"))
            {
                continue;
            }
            let refused = t.table.iter().any(|(_, action, _)| {
                let args = json!({ "action": action, prop.as_str(): { "not": "a string" } });
                matches!(call_parse(t.name, &args), Err(e) if e.message.contains(&format!("`{prop}`")))
            });
            assert!(refused, "{}: no action reads `{prop}`", t.name);
        }
    }
}

fn call_parse(tool: &str, args: &Json) -> Result<()> {
    let (action, _, _) = resolve(tool, args)?;
    match action {
        Action::Execution(a) => a.call(args).map(drop),
        Action::Component(a) => a.call(args).map(drop),
        Action::Key(a) => a.call(args).map(drop),
        Action::Policy(a) => a.call(args).map(drop),
        Action::Permission(a) => a.call(args).map(drop),
        Action::Audit(a) => a.call(args).map(drop),
        Action::Session(a) => a.call(args).map(drop),
        Action::Secret(a) => a.call(args).map(drop),
        Action::Encryption(a) => a.call(args).map(drop),
        Action::System(a) => a.call(args).map(drop),
        Action::Guide(a) => a.call(args).map(drop),
        Action::Config(a) => a.call(args).map(drop),
    }
}

#[test]
fn tools_list_keeps_its_tools_and_properties() {
    let want: &[(&str, &[&str])] = &[
        (
            "execution",
            &[
                "action",
                "execution_id",
                "input",
                "limit",
                "status",
                "reference",
                "type",
            ],
        ),
        (
            "component",
            &[
                "action",
                "artifact",
                "config",
                "description",
                "digest",
                "directory",
                "limit",
                "manifest",
                "query",
                "readme",
                "reference",
                "replace",
                "type",
                "wasm",
            ],
        ),
        (
            "key",
            &[
                "action",
                "id",
                "include_revoked",
                "ip_allowlist",
                "name",
                "rate_limit",
                "scope",
                "type",
            ],
        ),
        (
            "policy",
            &["action", "field", "policy", "reference", "value"],
        ),
        (
            "secret",
            &[
                "action",
                "allow_user_keys",
                "name",
                "reference",
                "scope",
                "ttl",
                "value",
            ],
        ),
        ("permission", &["action", "permissions", "subject"]),
        (
            "audit",
            &["action", "execution_id", "filters", "format", "limit"],
        ),
        (
            "session",
            &[
                "action",
                "deny",
                "device_code",
                "display_name",
                "email",
                "provider",
                "user",
                "user_code",
            ],
        ),
        ("get_encryption_instructions", &["action"]),
        ("system", &["action", "scope"]),
        ("guide", &["action", "name", "reference", "type"]),
        ("config", &["action", "key", "reference", "type", "value"]),
    ];
    let names: Vec<Json> = definitions().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(
        names,
        want.iter().map(|(t, _)| json!(t)).collect::<Vec<_>>()
    );
    for (tool, props) in want {
        let schema = schema_of(tool);
        let got: BTreeSet<&str> = schema["inputSchema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(got, props.iter().copied().collect(), "{tool}");
        assert!(!schema.to_string().contains("$ref"), "{tool}: {schema}");
    }
    let exec = schema_of("execution");
    assert_eq!(exec["inputSchema"]["required"], json!(["action"]));
    assert_eq!(exec["inputSchema"]["properties"]["limit"]["maximum"], 500);
    assert_eq!(
        exec["inputSchema"]["properties"]["type"]["enum"],
        json!(["reagent", "catalyst", "formula"])
    );
    assert_eq!(schema_of("system")["inputSchema"]["required"], json!([]));
}

#[test]
fn argument_messages_name_the_field() {
    let e = key::Action::Create
        .call(&json!({ "name": 5 }))
        .err()
        .unwrap();
    assert_eq!(e.message, "`name` must be a string");
    assert_eq!(e.code, crate::errors::Code::InvalidParams);
    let e = execution::Action::Logs
        .call(&json!({ "execution_id": 5 }))
        .err()
        .unwrap();
    assert_eq!(e.message, "`execution_id` is required and must be a string");
    let e = key::Action::Create
        .call(&json!({ "scope": [1] }))
        .err()
        .unwrap();
    assert_eq!(
        e.message,
        "`scope` must be an array of strings or a comma-separated string"
    );
    // Read loosely, as before: a flag of the wrong kind is not given.
    assert!(key::Action::List
        .call(&json!({ "include_revoked": "yes" }))
        .is_ok());
}

#[test]
fn the_definitions_snapshot_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tools/definitions.json");
    let fresh = serde_json::to_string_pretty(&definitions()).unwrap() + "\n";
    if std::env::var_os("CYFR_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(path, &fresh).unwrap();
        return;
    }
    let stored: Json = serde_json::from_str(DEFINITIONS_JSON)
        .expect("core/src/tools/definitions.json is not JSON");
    assert!(
        stored == Json::Array(definitions()),
        "core/src/tools/definitions.json is out of date with the tools' declarations: \
         rewrite it with `CYFR_BLESS=1 cargo test -p cyfr-core --lib the_definitions_snapshot_is_current` \
         and commit it"
    );
    assert_eq!(ADMIN_TOOLS, definitions().len());
}
