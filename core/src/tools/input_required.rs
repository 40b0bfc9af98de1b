//! Input from the user on MCP 2026-07-28: a component tool asks by its output, the router
//! answers `InputRequiredResult {resultType: "input_required", inputRequests, requestState}`
//! and the client's retry of the same call (with `inputResponses` and that `requestState`)
//! runs the component again with the responses and the state it kept (docs/components.md,
//! "Asking the user for input").
//!
//! Only a component whose manifest says `"mcp_input": true` takes part: it gets
//! `cyfr_input` in its input and may answer `{"cyfr_input_required": {"inputRequests",
//! "state"}}`. `requestState` is attacker-controlled, so it is AES-256-GCM sealed under a key
//! derived from the master key and binds the caller's key id, the tool name, a digest of the
//! arguments, an expiry ([`STATE_TTL_MS`]) and a random id that is spent once (a row of
//! `spent_request_states`, inserted in the caller check's round trip). A request needing a
//! client capability the request did not declare is refused with -32021.

use crate::auth::Identity;
use crate::config::Config;
use crate::db::{Rows, Stmt, Value};
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

/// How long a `requestState` may be answered.
pub const STATE_TTL_MS: u64 = 5 * 60_000;
/// The largest `state` a component may keep across a round (JSON text, bytes).
pub const MAX_STATE_BYTES: usize = 16 * 1024;
/// The input field a taking-part component reads (reserved: callers may not send it).
pub const INPUT_FIELD: &str = "cyfr_input";
/// The output field by which a component asks for input.
pub const OUTPUT_FIELD: &str = "cyfr_input_required";
const KEY_LABEL: &[u8] = b"cyfr mcp requestState key v1";
const AAD: &[u8] = b"cyfr mcp requestState v1";

/// The methods a component may ask the client, and the client capability each needs.
const METHODS: &[(&str, &str)] = &[
    ("elicitation/create", "elicitation"),
    ("sampling/createMessage", "sampling"),
    ("roots/list", "roots"),
];

/// What a sealed `requestState` holds.
#[derive(Serialize, Deserialize)]
pub struct Claims {
    /// Random id, spent once.
    jti: String,
    /// Expiry, ms since the epoch.
    exp: u64,
    /// The caller's key id.
    key: String,
    /// The tool called.
    tool: String,
    /// SHA-256 of the arguments (canonical JSON).
    args: String,
    /// The component's own state.
    state: Json,
}

/// What a `tools/call` brings for a component that asks for input: read from its params
/// before the caller check (the state is opened without the database; its spend rides in
/// the caller check's round trip).
pub struct Asked {
    /// A 2026-07-28 request (which alone can answer input requests).
    pub stateless: bool,
    /// The client's declared capabilities (`_meta`); `{}` for 2025-11-25.
    capabilities: Json,
    /// `inputResponses`, when sent.
    responses: Option<Json>,
    /// The opened `requestState`, when sent (`Err`: not one we sealed, or altered).
    opened: Option<Result<Claims>>,
    /// Whether the spend inserted a fresh row (`None`: not yet known).
    fresh: Option<bool>,
}

impl Asked {
    /// Reads `params` of a `tools/call`; `capabilities` are the client's of a 2026-07-28
    /// request, `None` for 2025-11-25.
    pub fn of(cfg: &Config, params: &Json, capabilities: Option<Json>) -> Asked {
        let stateless = capabilities.is_some();
        let capabilities = capabilities.unwrap_or_else(|| json!({}));
        let responses = params
            .get("inputResponses")
            .filter(|r| stateless && !r.is_null())
            .cloned();
        let opened = params
            .get("requestState")
            .filter(|s| stateless && !s.is_null())
            .map(|s| open(cfg, s));
        Asked {
            stateless,
            capabilities,
            responses,
            opened,
            fresh: None,
        }
    }

    /// The statements to send with the caller check: the purge of long-expired spends and
    /// the spend of this state's id (last, so [`Asked::took`] finds its rows last).
    pub fn stmts(&self, now_ms: u64) -> Vec<Stmt> {
        let Some(Ok(c)) = &self.opened else {
            return Vec::new();
        };
        vec![
            Stmt::new(
                "DELETE FROM spent_request_states WHERE id IN (SELECT id FROM spent_request_states WHERE expires_at < ?1 LIMIT 100)",
                vec![Value::Integer(now_ms as i64)],
            ),
            Stmt::new(
                "INSERT INTO spent_request_states (id, expires_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING RETURNING id",
                vec![c.jti.clone().into(), Value::Integer(c.exp as i64)],
            ),
        ]
    }

    /// Takes the spend's answer from the rows of the statements sent along (the last one).
    pub fn took(&mut self, also: &[Rows]) {
        if matches!(self.opened, Some(Ok(_))) {
            self.fresh = Some(also.last().is_some_and(|r| !r.rows.is_empty()));
        }
    }

    /// The input a taking-part component runs with: the arguments and `cyfr_input`
    /// (`tool`, `clientCapabilities`, `responses`, `state`), once the `requestState`, if
    /// any, is checked against this caller, tool and arguments. Refusals are -32602.
    pub fn input(&self, who: &Identity, tool: &str, args: &Json, now_ms: u64) -> Result<Json> {
        let state = self.check(who, tool, args, now_ms)?;
        let mut input = args.as_object().cloned().unwrap_or_default();
        if input.contains_key(INPUT_FIELD) {
            return Err(Error::invalid_params(format!(
                "argument `{INPUT_FIELD}` is reserved: cyfr fills it in (input responses go in `inputResponses`)"
            )));
        }
        let mut given = Map::new();
        given.insert("tool".into(), json!(tool));
        given.insert("clientCapabilities".into(), self.capabilities.clone());
        if let Some(r) = &self.responses {
            given.insert("responses".into(), r.clone());
        }
        if let Some(s) = state {
            given.insert("state".into(), s);
        }
        input.insert(INPUT_FIELD.into(), Json::Object(given));
        Ok(Json::Object(input))
    }

    /// The component's state from a checked `requestState` (none sent: `None`).
    fn check(&self, who: &Identity, tool: &str, args: &Json, now_ms: u64) -> Result<Option<Json>> {
        let claims = match &self.opened {
            None => return Ok(None),
            Some(Err(e)) => return Err(e.clone()),
            Some(Ok(c)) => c,
        };
        let refuse = |why: &str| {
            Err(Error::invalid_params(format!(
                "`requestState` {why}: call the tool again without it"
            )))
        };
        if claims.exp <= now_ms {
            return refuse("has expired");
        }
        if !crate::crypto::ct_eq(claims.key.as_bytes(), who.key.id.as_bytes()) {
            return refuse("was issued to another caller");
        }
        if claims.tool != tool {
            return refuse("was issued for another tool");
        }
        if claims.args != args_digest(args) {
            return refuse("was issued for other arguments");
        }
        if self.fresh != Some(true) {
            return refuse("was already used (each one answers once)");
        }
        Ok(Some(claims.state.clone()))
    }
}

/// Refuses (-32021, `data.requiredCapabilities`) input requests the client's declared
/// `capabilities` cannot answer; `what` names the asker in the message.
pub fn require_capabilities(
    what: &str,
    requests: &Map<String, Json>,
    capabilities: &Json,
) -> Result<()> {
    let mut missing = Map::new();
    for r in requests.values() {
        let method = r.get("method").and_then(Json::as_str).unwrap_or("");
        let cap = METHODS.iter().find(|(m, _)| *m == method).map(|(_, c)| *c);
        if let Some(cap) = cap.filter(|c| capabilities.get(*c).is_none_or(|v| !v.is_object())) {
            missing.insert(cap.into(), json!({}));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&String> = missing.keys().collect();
    Err(Error::new(
        Code::MissingClientCapability,
        format!("{what} needs the client capabilities {names:?}, which this request did not declare in `_meta`"),
    )
    .with_data(json!({ "requiredCapabilities": missing })))
}

/// A component's ask, when its output is one: `{"cyfr_input_required": {...}}` alone.
pub fn asks(output: &Json) -> Option<&Json> {
    let o = output.as_object()?;
    (o.len() == 1).then(|| o.get(OUTPUT_FIELD)).flatten()
}

/// The answer to a component's ask: `InputRequiredResult` with a fresh sealed
/// `requestState` (2026-07-28); -32021 when it needs a capability the client did not
/// declare; an `Err` of `ExecutionFailed` when the ask is malformed; on 2025-11-25 (no way
/// to ask the client) `Ok(None)`, which the caller turns into a tool error.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    cfg: &Config,
    env: &impl Env,
    asked: &Asked,
    who: &Identity,
    tool: &str,
    args: &Json,
    ask: &Json,
    reference: &str,
) -> Result<Option<Json>> {
    let bad = |why: String| {
        Error::new(
            Code::ExecutionFailed,
            format!("{reference} asks for input but its `{OUTPUT_FIELD}` {why}"),
        )
    };
    let requests = ask
        .get("inputRequests")
        .and_then(Json::as_object)
        .ok_or_else(|| bad("has no `inputRequests` object".into()))?;
    for (k, r) in requests {
        let method = r.get("method").and_then(Json::as_str).unwrap_or("");
        if !METHODS.iter().any(|(m, _)| *m == method) {
            return Err(bad(format!(
                "asks `{k}` by method `{method}`, not elicitation/create, sampling/createMessage or roots/list"
            )));
        }
        if !r.get("params").is_none_or(Json::is_object) {
            return Err(bad(format!("has `{k}.params` that is not an object")));
        }
    }
    if !asked.stateless {
        return Ok(None);
    }
    require_capabilities(&format!("tool `{tool}`"), requests, &asked.capabilities)?;
    let state = ask.get("state").cloned().unwrap_or(Json::Null);
    if state.to_string().len() > MAX_STATE_BYTES {
        return Err(bad(format!("`state` is over {MAX_STATE_BYTES} bytes")));
    }
    let claims = Claims {
        jti: crate::env::random_token(env, 16),
        exp: env.now_ms() + STATE_TTL_MS,
        key: who.key.id.clone(),
        tool: tool.into(),
        args: args_digest(args),
        state,
    };
    Ok(Some(json!({
        "resultType": "input_required",
        "inputRequests": requests,
        "requestState": seal(cfg, env, &claims)?,
    })))
}

/// Hex SHA-256 of `args` as canonical JSON (object keys sorted), so a retry with the same
/// arguments matches whatever order its client writes keys in.
fn args_digest(args: &Json) -> String {
    fn canon(v: &Json, out: &mut String) {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Json::String(k.clone()).to_string());
                    out.push(':');
                    canon(&m[k], out);
                }
                out.push('}');
            }
            Json::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canon(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    canon(args, &mut s);
    crate::crypto::sha256_hex(s.as_bytes())
}

fn keys(cfg: &Config) -> Result<Vec<zeroize::Zeroizing<[u8; 32]>>> {
    let kms = cfg
        .kms
        .as_deref()
        .ok_or_else(|| Error::internal("input requests need master keys (master_keys)"))?;
    Ok(kms.derived(KEY_LABEL))
}

fn seal(cfg: &Config, env: &impl Env, claims: &Claims) -> Result<String> {
    let keys = keys(cfg)?;
    let plain = serde_json::to_vec(claims).map_err(|e| Error::internal(e.to_string()))?;
    let sealed = crate::kms::seal(env, &keys[0], &plain, AAD)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
}

fn open(cfg: &Config, token: &Json) -> Result<Claims> {
    let refused = || {
        Error::invalid_params(
            "`requestState` is not one this server issued, or it was altered: call the tool again without it",
        )
    };
    let bytes = token
        .as_str()
        .and_then(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
        })
        .ok_or_else(refused)?;
    let plain = keys(cfg)?
        .iter()
        .find_map(|k| crate::kms::open(k, &bytes, AAD).ok())
        .ok_or_else(refused)?;
    serde_json::from_slice(&plain).map_err(|_| refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_key_order_but_not_values() {
        let a = json!({ "a": 1, "b": [1, { "y": 2, "x": 1 }] });
        let b: Json = serde_json::from_str(r#"{"b":[1,{"x":1,"y":2}],"a":1}"#).unwrap();
        assert_eq!(args_digest(&a), args_digest(&b));
        assert_ne!(
            args_digest(&a),
            args_digest(&json!({ "a": 2, "b": [1, { "y": 2, "x": 1 }] }))
        );
    }

    #[test]
    fn an_ask_is_an_output_of_the_one_field() {
        assert!(asks(&json!({ OUTPUT_FIELD: {} })).is_some());
        assert!(asks(&json!({ OUTPUT_FIELD: {}, "other": 1 })).is_none());
        assert!(asks(&json!("text")).is_none());
    }
}
