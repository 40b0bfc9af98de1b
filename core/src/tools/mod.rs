//! The MCP tools. Each tool declares its actions once (`decl::actions!`: name, typed
//! arguments, scope); this module lists the tools, checks the caller's scope for
//! `tool.action` before any handler runs, and builds `tools/list` from the declarations.

mod audit;
mod component;
pub mod component_tools;
mod config;
mod decl;
mod encryption;
mod execution;
pub(crate) mod formula;
mod guide;
pub mod input_required;
mod key;
mod permission;
mod policy;
pub mod prompts;
pub mod resources;
mod secret;
mod session;
mod system;

use crate::access::Need;
use crate::auth::Identity;
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Error, Result};
use decl::ActionSet;
use serde_json::Value as Json;
use zeroize::Zeroizing;

/// Who is calling a tool, and over what.
pub struct Call<'a> {
    /// The authenticated caller.
    pub who: &'a Identity,
    /// The MCP session the request came in, if any (hash of its id).
    pub session_hash: Option<&'a str>,
    /// Whether the transport may carry secrets (HTTPS, loopback, or development mode).
    pub secure: bool,
    /// The HTTP request of a stateless (2026-07-28) `tools/call`, whose `Mcp-Param-*`
    /// headers a component tool checks against its arguments; `None` otherwise.
    pub stateless_req: Option<&'a crate::http::HttpRequest>,
    /// The request id its audit row carries (`x-request-id`); `None` for a formula's calls.
    pub request_id: Option<&'a str>,
    /// What a component tool call brings for input (`inputResponses`, `requestState`,
    /// client capabilities); `None` outside `tools/call`.
    pub input: Option<&'a input_required::Asked>,
    /// `<session hash>:<JSON-RPC id>` of a session's `tools/call` (its runs' records keep it
    /// for `notifications/cancelled`); `None` otherwise.
    pub rpc_id: Option<&'a str>,
}

/// One action of one tool, named: what [`call`] dispatches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Execution(execution::Action),
    Component(component::Action),
    Key(key::Action),
    Policy(policy::Action),
    Permission(permission::Action),
    Audit(audit::Action),
    Session(session::Action),
    Secret(secret::Action),
    Encryption(encryption::Action),
    System(system::Action),
    Guide(guide::Action),
    Config(config::Action),
}

/// A tool: its name and description, and its actions. (Description and properties are
/// read by `definitions()`, which makes the checked-in `definitions.json`, in tests only.)
#[cfg_attr(not(test), allow(dead_code))]
struct Tool {
    name: &'static str,
    description: &'static str,
    /// Its rows of the scope table.
    table: &'static [(&'static str, &'static str, Need)],
    /// The action of this name, if the tool has it.
    parse: fn(&str) -> Option<Action>,
    /// The argument properties of each action, in declaration order.
    properties: fn() -> Vec<serde_json::Map<String, Json>>,
}

/// A [`Tool`] from an action set.
macro_rules! tool {
    ($module:ident, $Variant:ident, $description:expr) => {
        Tool {
            name: $module::Action::TOOL,
            description: $description,
            table: $module::Action::TABLE,
            parse: |a| $module::Action::parse(a).map(Action::$Variant),
            properties: || {
                $module::Action::ALL
                    .iter()
                    .map(|a| a.properties())
                    .collect()
            },
        }
    };
}

/// Every tool, in `tools/list` order.
const TOOLS: &[Tool] = &[
    tool!(execution, Execution, execution::DESCRIPTION),
    tool!(component, Component, component::DESCRIPTION),
    tool!(key, Key, key::DESCRIPTION),
    tool!(policy, Policy, policy::DESCRIPTION),
    tool!(secret, Secret, secret::DESCRIPTION),
    tool!(permission, Permission, permission::DESCRIPTION),
    tool!(audit, Audit, audit::DESCRIPTION),
    tool!(session, Session, session::DESCRIPTION),
    tool!(encryption, Encryption, encryption::DESCRIPTION),
    tool!(system, System, system::DESCRIPTION),
    tool!(guide, Guide, guide::DESCRIPTION),
    tool!(config, Config, config::DESCRIPTION),
];

/// Every `(tool, action, need)`, assembled at compile time from the tools' declarations.
pub(crate) const TABLE: &[(&str, &str, Need)] = &concat::<{ rows(TOOLS) }>(TOOLS);

const fn rows(tools: &[Tool]) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < tools.len() {
        n += tools[i].table.len();
        i += 1;
    }
    n
}

const fn concat<const N: usize>(tools: &[Tool]) -> [(&'static str, &'static str, Need); N] {
    let mut out = [("", "", Need::Admin); N];
    let (mut i, mut k) = (0, 0);
    while i < tools.len() {
        let mut j = 0;
        while j < tools[i].table.len() {
            out[k] = tools[i].table[j];
            k += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

fn tool(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}

fn action_names(t: &Tool) -> Vec<&'static str> {
    t.table.iter().map(|(_, a, _)| *a).collect()
}

/// The `tools` array of `tools/list`: each tool's `action` enum and the properties of its
/// actions' argument types. Requests serve its snapshot, [`DEFINITIONS_JSON`].
#[cfg(test)]
pub fn definitions() -> Vec<Json> {
    TOOLS
        .iter()
        .map(|t| {
            let actions = action_names(t);
            let mut properties = serde_json::Map::new();
            properties.insert(
                "action".into(),
                serde_json::json!({ "type": "string", "enum": actions, "description": "What to do" }),
            );
            for props in (t.properties)() {
                for (k, v) in props {
                    properties.entry(k).or_insert(v);
                }
            }
            // Single-action tools do not need `action` spelled out.
            let required: Vec<&str> = if actions.len() > 1 {
                vec!["action"]
            } else {
                vec![]
            };
            serde_json::json!({
                "name": t.name,
                "description": t.description,
                "inputSchema": { "type": "object", "properties": properties, "required": required },
            })
        })
        .collect()
}

/// The administrative tools' `tools/list` entries as JSON text: a snapshot of
/// `definitions()` checked in beside this file, so a request splices text instead of
/// building schemas (a `tools/list` used to spend a third of its time there). The test
/// `the_definitions_snapshot_is_current` keeps it equal to `definitions()`.
pub const DEFINITIONS_JSON: &str = include_str!("definitions.json");

/// How many administrative tools there are.
pub const ADMIN_TOOLS: usize = TOOLS.len();

/// Whether a tool of this name exists.
pub fn exists(name: &str) -> bool {
    tool(name).is_some()
}

/// A `tool.action` resolved against the tools' declarations.
pub(crate) struct Resolved {
    action: Action,
    /// What the caller's scopes must cover.
    pub(crate) need: Need,
}

impl Resolved {
    /// Whether it is `execution.run`: a run a formula starts through the tools is its child.
    pub(crate) fn is_execution_run(&self) -> bool {
        self.action == Action::Execution(execution::Action::Run)
    }
}

/// The declared action `action` of tool `name`, if there is one.
pub(crate) fn resolve_action(name: &str, action: &str) -> Option<Resolved> {
    let t = tool(name)?;
    let parsed = (t.parse)(action)?;
    let (_, _, need) = t.table.iter().find(|(_, a, _)| *a == action)?;
    Some(Resolved {
        action: parsed,
        need: *need,
    })
}

/// The reads a `tools/call` (its JSON-RPC `params`) will make that its arguments alone
/// decide, to send ahead with the request's caller check: `execution.run`'s component and
/// policy, `component.inspect`'s component, versions and policy, a policy's stored fields,
/// `key.create`'s name check. Nothing is read for a call that fails to parse; its handler
/// reports that.
pub(crate) fn read_ahead(params: &Json) -> Vec<crate::db::Stmt> {
    let Some(name) = params.get("name").and_then(Json::as_str) else {
        return Vec::new();
    };
    if tool(name).is_none() {
        return component_tools::read_ahead(name);
    }
    let Some(args) = params.get("arguments") else {
        return Vec::new();
    };
    match resolve(name, args) {
        Ok((Action::Execution(execution::Action::Run), ..)) => execution::read_ahead(args),
        Ok((Action::Component(a), ..)) => component::read_ahead(a, args),
        Ok((Action::Policy(a), ..)) => policy::read_ahead(a, args),
        Ok((Action::Key(a), ..)) => key::read_ahead(a, args),
        Ok((Action::Secret(a), ..)) => secret::read_ahead(a, args),
        Ok((Action::Session(a), ..)) => session::read_ahead(a, args),
        _ => Vec::new(),
    }
}

/// Runs `name` with `args`, after checking the caller's scope for the action and opening
/// any sealed secrets (`encrypted_secrets`) into the arguments.
pub async fn call<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    call: &Call<'_>,
    name: &str,
    args: &Json,
) -> Result<Json> {
    let (action, need, action_name) = resolve(name, args)?;
    call.who.require(name, action_name, need)?;
    // A copy of the arguments only when sealed secrets are opened into them.
    let hydrated;
    let mut opened = Vec::new();
    let args = if args.get("encrypted_secrets").is_some() {
        if !call.secure {
            return Err(secret::insecure());
        }
        let mut copy = args.clone();
        opened = opener(cx, call)?.hydrate(&mut copy).await?;
        hydrated = copy;
        &hydrated
    } else {
        args
    };
    let result = handle(cx, call, action, args, &opened).await;
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

/// Runs `name` with `args` for a caller without credentials, when the action is open to
/// anyone (`Need::Anyone`: signing in); `None` when it is not, so the caller is asked to
/// authenticate.
pub async fn call_anonymous<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    name: &str,
    args: &Json,
) -> Option<Result<Json>> {
    match resolve(name, args) {
        Ok((Action::Session(a), Need::Anyone, _)) => Some(match a.call(args) {
            Ok(c) => session::handle(cx, None, c).await,
            Err(e) => Err(e),
        }),
        _ => None,
    }
}

/// The action `args` name for tool `name`, and what it needs.
fn resolve(name: &str, args: &Json) -> Result<(Action, Need, &'static str)> {
    let t = tool(name).ok_or_else(|| Error::invalid_params(format!("unknown tool `{name}`")))?;
    let actions = action_names(t);
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
    let unknown = || {
        Error::invalid_params(format!(
            "unknown action `{action}` for {name}; actions: {}",
            actions.join(", ")
        ))
    };
    let parsed = (t.parse)(action).ok_or_else(unknown)?;
    let (_, declared, need) = t
        .table
        .iter()
        .find(|(_, a, _)| *a == action)
        .ok_or_else(unknown)?;
    Ok((parsed, *need, declared))
}

/// Reads the action's arguments and runs its handler (its scope already checked). An
/// action that handles secrets is refused over an insecure transport before its
/// arguments are read.
async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    call: &Call<'_>,
    action: Action,
    args: &Json,
    opened: &[Zeroizing<Vec<u8>>],
) -> Result<Json> {
    let secure = match action {
        Action::Execution(a) => a.secure(),
        Action::Component(a) => a.secure(),
        Action::Key(a) => a.secure(),
        Action::Policy(a) => a.secure(),
        Action::Permission(a) => a.secure(),
        Action::Audit(a) => a.secure(),
        Action::Session(a) => a.secure(),
        Action::Secret(a) => a.secure(),
        Action::Encryption(a) => a.secure(),
        Action::System(a) => a.secure(),
        Action::Guide(a) => a.secure(),
        Action::Config(a) => a.secure(),
    };
    if secure && !call.secure {
        return Err(secret::insecure());
    }
    match action {
        Action::Execution(a) => execution::handle(cx, call, a.call(args)?, opened).await,
        Action::Component(a) => component::handle(cx, call.who, a.call(args)?).await,
        Action::Key(a) => key::handle(cx, call.who, a.call(args)?).await,
        Action::Policy(a) => policy::handle(cx, call.who, a.call(args)?).await,
        Action::Permission(a) => permission::handle(cx, call.who, a.call(args)?).await,
        Action::Audit(a) => audit::handle(cx, call.who, a.call(args)?).await,
        Action::Session(a) => session::handle(cx, Some(call.who), a.call(args)?).await,
        Action::Secret(a) => secret::handle(cx, call, a.call(args)?, opened).await,
        Action::Encryption(a) => encryption::handle(cx, call, a.call(args)?).await,
        Action::System(a) => system::handle(cx, a.call(args)?).await,
        Action::Guide(a) => guide::handle(cx, a.call(args)?).await,
        Action::Config(a) => config::handle(cx, call.who, a.call(args)?).await,
    }
}

/// What opens sealed secrets for this call.
pub(crate) fn opener<'a, D: Db, X: Dispatch, E: Env>(
    cx: &'a Context<D, X, E>,
    call: &Call<'a>,
) -> Result<crate::secrets::sealed::Opener<'a, crate::db::Ahead<D>, crate::kms::LocalKms>> {
    if !cx.config.session_encryption {
        return Err(Error::invalid_params("Session encryption is not enabled"));
    }
    Ok(crate::secrets::sealed::Opener {
        db: &cx.db,
        kms: cx.kms()?,
        session_hash: call.session_hash,
    })
}

#[cfg(test)]
mod tests;
