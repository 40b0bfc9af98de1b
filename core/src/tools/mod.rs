//! The MCP tools: their schemas for `tools/list`, and the one entry that checks the
//! caller's scope for `tool.action` before any handler runs.

mod component;
mod encryption;
mod key;
mod policy;
mod secret;

use crate::app::App;
use crate::auth::Identity;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Error, Result};
use crate::scopes;
use serde_json::{json, Value as Json};

/// `(name, description, extra argument properties)` of every tool.
fn catalog() -> Vec<(&'static str, &'static str, Json)> {
    vec![
        (
            "execution",
            "Run a sandboxed WebAssembly component and list your runs. `run` takes a reference such as \"reagent:cyfr.json-transform:0.1.0\" (or {\"registry\": …}) and a JSON `input`.",
            json!({
                "reference": { "description": "Component reference: \"type:namespace.name:version\", the c:/r:/f: short form, or {\"registry\": \"…\"}", "anyOf": [{ "type": "string" }, { "type": "object", "properties": { "registry": { "type": "string" } }, "required": ["registry"] }] },
                "input": { "description": "JSON input handed to the component" },
                "type": { "type": "string", "enum": ["reagent", "catalyst", "formula"], "description": "Component type, when the reference omits it" },
                "limit": { "type": "integer", "minimum": 1, "maximum": 500, "description": "list: how many runs" },
                "execution_id": { "type": "string", "description": "logs/cancel: the run (exec_…)" }
            }),
        ),
        (
            "component",
            "Search, inspect, resolve and register components in the registry.",
            json!({
                "query": { "type": "string", "description": "search: text to find in ids and descriptions" },
                "type": { "type": "string", "enum": ["reagent", "catalyst", "formula"] },
                "limit": { "type": "integer", "minimum": 1, "maximum": 200 },
                "reference": { "type": "string", "description": "inspect/resolve: component reference" },
                "directory": { "type": "string", "description": "register: component directory on the server, e.g. components/reagents/local/my-tool/0.1.0/" },
                "manifest": { "description": "register: cyfr-manifest.json content (object or text), instead of `directory`" },
                "wasm": { "type": "string", "description": "register: the component's wasm, base64, with `manifest`" },
                "replace": { "type": "boolean", "description": "register: replace an existing version with different bytes" }
            }),
        ),
        (
            "key",
            "Manage API keys: create (the raw key is shown once), get, list, revoke, rotate.",
            json!({
                "name": { "type": "string", "description": "Key name (unique among active keys)" },
                "id": { "type": "string", "description": "Key id, instead of name" },
                "type": { "type": "string", "enum": ["public", "secret", "admin"] },
                "scope": { "description": "Scopes, as an array or a comma-separated string", "anyOf": [{ "type": "array", "items": { "type": "string", "enum": scopes::SCOPES } }, { "type": "string" }] },
                "rate_limit": { "description": "e.g. \"100/1m\" or {\"requests\": 100, \"window\": \"1m\"}; a non-admin's new key gets the stricter of this and its own, and shares its budget" },
                "ip_allowlist": { "description": "IPs and CIDRs, comma-separated or an array; a non-admin's new key must stay inside its own (and gets it when none is given)", "anyOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }] },
                "include_revoked": { "type": "boolean", "description": "list: include revoked keys" }
            }),
        ),
        (
            "policy",
            "Read and set the host policy a component runs under (domains, methods, rate limit, timeout, memory and size caps, allowed tools).",
            json!({
                "reference": { "type": "string", "description": "Component reference, with or without version" },
                "field": { "type": "string", "enum": crate::policy::FIELDS },
                "value": { "description": "The field's JSON value, e.g. \"60s\" or [\"api.example.com\"]" },
                "policy": { "type": "object", "description": "set: several fields at once" }
            }),
        ),
        (
            "secret",
            "Store secrets for components (encrypted at rest), grant them to components, and see them masked (never their values). `scope`: \"org\" (shared) or \"user\" (your own key, preferred over the shared one when the grant allows).",
            json!({
                "name": { "type": "string", "description": "Secret name, e.g. ANTHROPIC_API_KEY" },
                "value": { "description": "set: the value, or a sealed {\"ciphertext\", \"kid\"} object (see get_encryption_instructions)" },
                "scope": { "type": "string", "enum": ["org", "user"], "description": "Whose secret (default org)" },
                "ttl": { "type": "string", "description": "set: expire after this long, e.g. \"30d\" or \"12h\"" },
                "reference": { "type": "string", "description": "grant/revoke/can_access: the component, e.g. c:local.claude:0.1.0" },
                "allow_user_keys": { "type": "boolean", "description": "grant: let a caller's own (user-scope) key win over the shared one (default true)" }
            }),
        ),
        (
            "get_encryption_instructions",
            "How to send a secret without the plaintext passing through this conversation: this session's public key and the steps to seal a value to it.",
            json!({}),
        ),
        ("system", "Server status: version and registry size.", json!({})),
    ]
}

/// The `tools` array of `tools/list`: each tool's actions come from the scope table.
pub fn definitions() -> Vec<Json> {
    catalog()
        .into_iter()
        .map(|(name, description, props)| {
            let mut properties = json!({ "action": { "type": "string", "enum": scopes::actions(name), "description": "What to do" } });
            if let (Json::Object(p), Json::Object(extra)) = (&mut properties, props) {
                p.extend(extra);
            }
            // Single-action tools do not need `action` spelled out.
            let required: Vec<&str> = if scopes::actions(name).len() > 1 { vec!["action"] } else { vec![] };
            json!({
                "name": name,
                "description": description,
                "inputSchema": { "type": "object", "properties": properties, "required": required },
            })
        })
        .collect()
}

/// Whether a tool of this name exists.
pub fn exists(name: &str) -> bool {
    !scopes::actions(name).is_empty()
}

/// Who is calling a tool, and over what.
pub struct Call<'a> {
    /// The authenticated caller.
    pub who: &'a Identity,
    /// The MCP session the request came in, if any (hash of its id).
    pub session_hash: Option<&'a str>,
    /// Whether the transport may carry secrets (HTTPS, loopback, or development mode).
    pub secure: bool,
}

/// Runs `name` with `args`, after checking the caller's scope for the action and opening
/// any sealed secrets (`encrypted_secrets`) into the arguments.
pub async fn call<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    call: &Call<'_>,
    name: &str,
    args: &Json,
) -> Result<Json> {
    let who = call.who;
    if !exists(name) {
        return Err(Error::invalid_params(format!("unknown tool `{name}`")));
    }
    let actions = scopes::actions(name);
    // A tool with a single action (get_encryption_instructions) needs no `action` argument.
    let action = match args.get("action").and_then(Json::as_str) {
        Some(a) => a,
        None if actions.len() == 1 => actions[0],
        None => {
            return Err(Error::invalid_params(format!(
                "`action` is required; {name} actions: {}",
                actions.join(", ")
            )))
        }
    };
    let need = scopes::need(name, action).ok_or_else(|| {
        Error::invalid_params(format!(
            "unknown action `{action}` for {name}; actions: {}",
            scopes::actions(name).join(", ")
        ))
    })?;
    who.require(name, action, need)?;
    // A copy of the arguments only when sealed secrets are opened into them.
    let hydrated;
    let mut opened = Vec::new();
    let args = if args.get("encrypted_secrets").is_some() {
        if !call.secure {
            return Err(secret::insecure());
        }
        let mut copy = args.clone();
        opened = opener(app, call)?.hydrate(&mut copy).await?;
        hydrated = copy;
        &hydrated
    } else {
        args
    };
    let result = handle(app, call, name, action, args, &opened).await;
    if opened.is_empty() {
        return result;
    }
    // The values were sealed so that the client (often an LLM) never reads them: whatever
    // the tool answers, echoes included, comes back without them.
    let forms = crate::secrets::mask::Forms::new(opened.iter().map(|v| v.as_slice()));
    match result {
        Ok(mut v) => {
            forms.redact_json(&mut v);
            Ok(v)
        }
        Err(mut e) => {
            e.message = forms.redact(&e.message);
            if let Some(d) = e.data.as_mut() {
                forms.redact_json(d);
            }
            Err(e)
        }
    }
}

/// The handler of `name.action` (its scope already checked).
async fn handle<D: Db, X: Dispatch, E: Env>(
    app: &App<D, X, E>,
    call: &Call<'_>,
    name: &str,
    action: &str,
    args: &Json,
    opened: &[zeroize::Zeroizing<Vec<u8>>],
) -> Result<Json> {
    let who = call.who;
    match (name, action) {
        ("execution", "run") => {
            // Old run records go a batch at a time, on a fraction of runs.
            crate::retention::maybe_purge(&app.db, &app.env, app.config.execution_retention_ms)
                .await;
            crate::executions::run(
                app,
                who,
                args,
                crate::executions::Origin {
                    opened,
                    secure: call.secure,
                },
            )
            .await
        }
        ("execution", "list") => crate::executions::list(&app.db, who, args).await,
        ("execution", "logs") => crate::executions::logs(&app.db, who, args).await,
        ("execution", "cancel") => crate::executions::cancel(app, who, args).await,
        ("component", _) => component::call(app, who, action, args).await,
        ("key", _) => key::call(app, who, action, args).await,
        ("policy", _) => policy::call(app, who, action, args).await,
        ("secret", _) => secret::call(app, call, action, args, opened).await,
        ("get_encryption_instructions", _) => encryption::instructions(app, call).await,
        ("system", "status") => system_status(&app.db).await,
        _ => Err(Error::internal(format!(
            "{name}.{action} has a scope but no handler"
        ))),
    }
}

/// What opens sealed secrets for this call.
pub(crate) fn opener<'a, D: Db, X: Dispatch, E: Env>(
    app: &'a App<D, X, E>,
    call: &Call<'a>,
) -> Result<crate::secrets::sealed::Opener<'a, D, crate::secrets::kms::LocalKms>> {
    if !app.config.session_encryption {
        return Err(Error::invalid_params("Session encryption is not enabled"));
    }
    Ok(crate::secrets::sealed::Opener {
        db: &app.db,
        kms: kms(app)?,
        session_hash: call.session_hash,
    })
}

/// The key-encryption keys, or a clear error when none are configured.
pub(crate) fn kms<D, X, E>(app: &App<D, X, E>) -> Result<&crate::secrets::kms::LocalKms> {
    app.config
        .kms
        .as_deref()
        .ok_or_else(|| Error::internal("no master key is configured: set the `master_keys` variable (cyfr up does this from DATA_DIR/master.key or CYFR_MASTER_KEY)"))
}

async fn system_status(db: &impl Db) -> Result<Json> {
    let rows = db
        .query("SELECT count(*) AS n FROM components", &[])
        .await?;
    Ok(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol_version": crate::app::PROTOCOL_VERSIONS[0],
        "components": rows.first().map(|r| r.int("n")).unwrap_or(0),
    }))
}

/// A required string argument.
pub(crate) fn str_arg<'a>(args: &'a Json, name: &str) -> Result<&'a str> {
    args.get(name)
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid_params(format!("`{name}` is required and must be a string")))
}

/// An optional string argument.
pub(crate) fn opt_str<'a>(args: &'a Json, name: &str) -> Result<Option<&'a str>> {
    match args.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::invalid_params(format!("`{name}` must be a string"))),
    }
}

/// A list argument given as an array of strings or one comma-separated string.
pub(crate) fn list_arg(args: &Json, name: &str) -> Result<Vec<String>> {
    match args.get(name) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::String(s)) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        Some(Json::Array(a)) if a.iter().all(Json::is_string) => Ok(a
            .iter()
            .filter_map(Json::as_str)
            .map(|s| s.trim().to_string())
            .collect()),
        Some(_) => Err(Error::invalid_params(format!(
            "`{name}` must be an array of strings or a comma-separated string"
        ))),
    }
}
