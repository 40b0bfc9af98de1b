//! JSON-RPC over `/mcp`: initialize, ping, tools/list, tools/call, notifications; the
//! stateless (2026-07-28) requests through `crate::modern`'s checks and shape. Which
//! tools are listed and how a component tool is called is `tools::component_tools`'.

use crate::auth::{self, Identity};
use crate::config::{ToolFamilies, PROTOCOL_VERSIONS};
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::secrets::sealed;
use crate::{audit, modern, sessions, subscriptions, tools};
use serde_json::{json, Value as Json};

/// A JSON-RPC request taken apart: its id (none for a notification), method and params.
struct Message<'a> {
    id: Option<Json>,
    method: &'a str,
    params: Json,
}

/// Takes a message apart, or answers it at once (malformed, or a response to us).
fn frame(msg: &Json) -> std::result::Result<Message<'_>, HttpResponse> {
    let Some(obj) = msg.as_object() else {
        return Err(rpc_error(
            None,
            &Error::new(Code::InvalidRequest, "a JSON-RPC message must be an object"),
        ));
    };
    if obj.get("jsonrpc").and_then(Json::as_str) != Some("2.0") {
        return Err(rpc_error(
            obj.get("id").cloned(),
            &Error::new(Code::InvalidRequest, "`jsonrpc` must be \"2.0\""),
        ));
    }
    let id = obj.get("id").cloned();
    if let Some(id) = &id {
        if !(id.is_string() || id.is_i64() || id.is_u64()) {
            return Err(rpc_error(
                None,
                &Error::new(Code::InvalidRequest, "`id` must be a string or an integer"),
            ));
        }
    }
    let Some(method) = obj.get("method").and_then(Json::as_str) else {
        // A response to something we asked (we ask nothing yet): accepted, no body.
        return Err(HttpResponse::empty(202));
    };
    let params = obj.get("params").cloned().unwrap_or(Json::Null);
    Ok(Message { id, method, params })
}

/// Handles one JSON-RPC message (already known to be JSON and not a batch) for an
/// endpoint that serves the tool `families` (which the transport chose).
pub async fn handle_message<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
    msg: Json,
    families: ToolFamilies,
) -> HttpResponse {
    let Message { id, method, params } = match frame(&msg) {
        Ok(m) => m,
        Err(answer) => return answer,
    };
    if modern::is_modern(&msg) {
        // Stateless: no handshake, no session (a session id sent along is ignored).
        let resp = match modern::check(req, id.as_ref(), method, &params) {
            Err(e) => rpc_error(id, &e),
            Ok(()) if method == "server/discover" && id.is_some() => {
                ok(id, modern::discover(&cx.config, cx.dispatch.streams()))
            }
            Ok(()) => answer(cx, req, id, method, &params, None, true, families).await,
        };
        return modern::finish(resp, method);
    }
    let sid = req.header("mcp-session-id");
    answer(cx, req, id, method, &params, sid, false, families).await
}

/// Answers a message of either revision (`stateless`: 2026-07-28), within session `sid`
/// if it names one.
#[allow(clippy::too_many_arguments)]
async fn answer<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
    id: Option<Json>,
    method: &str,
    params: &Json,
    sid: Option<&str>,
    stateless: bool,
    families: ToolFamilies,
) -> HttpResponse {
    let now = cx.env.now_ms();
    if method == "initialize" {
        return match initialize(cx, req, params).await {
            Ok((result, session_id)) => {
                let mut r = ok(id, result);
                r.headers.push(("mcp-session-id".into(), session_id));
                r
            }
            Err(e) => {
                audit_failure(cx, req, None, method, None, &e).await;
                rpc_error(id, &e)
            }
        };
    }
    // A session id must name a live session, whatever else the request carries; a request
    // (not a notification, not a session-less ping) also needs its caller. One round trip,
    // which also carries the reads the call will make (`tools::read_ahead`).
    let identify = id.is_some() && !(method == "ping" && sid.is_none());
    if identify && method == "tools/call" {
        cx.db.read_ahead(tools::read_ahead(params));
    }
    if identify && method == "resources/read" {
        if let Some(uri) = params.get("uri").and_then(Json::as_str) {
            cx.db.read_ahead(tools::resources::read_ahead(uri));
        }
    }
    if identify
        && (method.starts_with("prompts/") || method.starts_with("resources/"))
        && !method.ends_with("subscribe")
    {
        cx.db.read_ahead(tools::prompts::reads());
    }
    if identify && method == "tools/list" && families.components() {
        cx.db.read_ahead(tools::component_tools::list_reads(params));
    }
    // Every tool call is audited: its row rides in the caller check's round trip, written
    // as `ok`; a failure rewrites its outcome afterwards (a refusal may cost a round trip).
    let entry = (identify && method == "tools/call").then(|| audit_entry(cx, req, params, sid));
    let mut also: Vec<_> = entry.iter().map(audit::insert_stmt).collect();
    // A `requestState` is opened now and spent in the same round trip (single use).
    let mut asked = (identify && method == "tools/call").then(|| {
        let caps = stateless.then(|| modern::client_capabilities(params));
        tools::input_required::Asked::of(&cx.config, params, caps)
    });
    also.extend(asked.iter().flat_map(|a| a.stmts(now)));
    let caller = match auth::check_with(&cx.db, &cx.config, req, sid, identify, now, also).await {
        Ok(c) => c,
        Err(e) => {
            audit_failure(cx, req, entry.as_ref(), method, sid, &e).await;
            return rpc_error(id, &e);
        }
    };
    if let Some(a) = &mut asked {
        a.took(&caller.also);
    }
    let Some(id) = id else {
        // A session's `notifications/cancelled` stops the run its request started (found
        // in SQL: it came on another HTTP request). Other notifications need nothing.
        if let (Some(s), "notifications/cancelled") = (&caller.session, method) {
            if let Some(rid) = params
                .get("requestId")
                .filter(|r| r.is_string() || r.is_number())
            {
                let _ = crate::executions::cancel_request(cx, &rpc_id(&s.id_hash, rid)).await;
            }
        }
        return HttpResponse::empty(202);
    };
    if method == "ping" && caller.session.is_none() {
        return ok(Some(id), json!({}));
    }
    let (session, identity) = (caller.session, caller.identity);
    // A session belongs to the key that opened it (or to no key, if opened anonymously): any
    // other caller is told it does not exist (404, as for an unknown id), so it can neither
    // use the session nor learn that it is live.
    if let Some(s) = &session {
        if s.key_id.as_deref() != identity.as_ref().map(|i| i.key.id.as_str()) {
            let e = auth::session_gone();
            audit_failure(cx, req, entry.as_ref(), method, sid, &e).await;
            return rpc_error(Some(id), &e);
        }
        // A streamed run of this session sends its logs at the level the session asked for.
        if let Some(level) = s.log_level.as_deref() {
            cx.dispatch.session_log_level(level);
        }
    }
    let (resp, failed) = method_call(
        cx,
        req,
        id,
        method,
        params,
        session.as_ref(),
        identity,
        stateless,
        families,
        asked.as_ref(),
    )
    .await;
    if let Some(e) = failed {
        audit_failure(cx, req, entry.as_ref(), method, sid, &e).await;
    }
    resp
}

/// The audit row of a `tools/call`, before its caller is known: who the credentials name,
/// the tool, action and reference the arguments name, and names only (never a value).
fn audit_entry<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
    params: &Json,
    sid: Option<&str>,
) -> audit::Entry {
    let now = cx.env.now_ms();
    let hint = auth::actor_hint(&cx.config, req, now);
    let args = params.get("arguments");
    let text = |v: Option<&Json>| match v {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let arg = |k: &str| args.and_then(|a| a.get(k));
    // A component tool's call is `execution.run` of the component its name stands for.
    let component_tool = params
        .get("name")
        .and_then(Json::as_str)
        .is_some_and(|n| !tools::exists(n));
    let action = if component_tool {
        Some("run".to_string())
    } else {
        text(arg("action"))
    };
    let mut detail = serde_json::Map::new();
    for k in ["name", "subject", "execution_id"] {
        if let Some(Json::String(v)) = arg(k) {
            detail.insert(k.into(), json!(v.chars().take(128).collect::<String>()));
        }
    }
    audit::Entry {
        at: now,
        request_id: request_id_of(cx, req),
        event: audit::event_of(action.as_deref().unwrap_or("")).into(),
        actor: hint.actor,
        actor_id: hint.actor_id,
        key_hash: hint.key_hash,
        session_hash: auth::actor_session(req, sid),
        actor_fallback: auth::bearer(req).map(|_| "invalid-token".to_string()),
        tool: if component_tool {
            Some("execution".into())
        } else {
            text(params.get("name"))
        },
        action,
        reference: if component_tool {
            text(params.get("name"))
        } else {
            text(arg("reference"))
        },
        client_ip: client_ip(cx, req),
        detail: (!detail.is_empty()).then_some(Json::Object(detail)),
        ..Default::default()
    }
}

fn client_ip<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
) -> Option<String> {
    req.peer
        .and_then(|peer| {
            crate::ipallow::client_ip(
                peer,
                req.header_all("x-forwarded-for"),
                &cx.config.trusted_proxies,
            )
        })
        .map(|ip| ip.to_string())
}

/// Records a failed request: on its tool call's row, or (an authentication failure of any
/// other method) as a row of its own. The log failing does not change the answer.
async fn audit_failure<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
    entry: Option<&audit::Entry>,
    method: &str,
    sid: Option<&str>,
    e: &Error,
) {
    let outcome = audit::Outcome::of(e.code);
    let now = cx.env.now_ms();
    let done = match entry {
        Some(en) => {
            audit::finish(
                &cx.db,
                &en.request_id,
                outcome,
                Some(e.code.number()),
                now.saturating_sub(en.at),
                en,
            )
            .await
        }
        None if outcome == audit::Outcome::AuthFailure => {
            let hint = auth::actor_hint(&cx.config, req, now);
            let en = audit::Entry {
                at: now,
                request_id: request_id_of(cx, req),
                event: "auth".into(),
                actor: hint.actor,
                actor_id: hint.actor_id,
                key_hash: hint.key_hash,
                session_hash: auth::actor_session(req, sid),
                actor_fallback: auth::bearer(req).map(|_| "invalid-token".to_string()),
                tool: None,
                action: Some(method.chars().take(64).collect()),
                outcome: Some(outcome),
                error_code: Some(e.code.number()),
                client_ip: client_ip(cx, req),
                ..Default::default()
            };
            audit::insert(&cx.db, &en).await
        }
        None => Ok(()),
    };
    // The answer stands whether or not its row could be written.
    drop(done);
}

/// The request's id as `app` set it (the one its answer carries), so an audit row and the
/// response a client logged can be matched; a fresh one where no transport set it.
fn request_id_of<D: Db, X: Dispatch, E: Env>(cx: &Context<D, X, E>, req: &HttpRequest) -> String {
    req.header("x-request-id")
        .filter(|v| crate::http::sane_request_id(v))
        .map(String::from)
        .unwrap_or_else(|| crate::env::random_token(&cx.env, 12))
}

/// A request of an identified caller (or of none), within its session if it has one.
#[allow(clippy::too_many_arguments)]
async fn method_call<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
    id: Json,
    method: &str,
    params: &Json,
    session: Option<&sessions::Session>,
    identity: Option<Identity>,
    stateless: bool,
    families: ToolFamilies,
    asked: Option<&tools::input_required::Asked>,
) -> (HttpResponse, Option<Error>) {
    if method == "ping" {
        return (ok(Some(id), json!({})), None);
    }
    if method.starts_with("resources/") {
        return match resources(
            cx,
            req,
            method,
            params,
            session,
            identity.as_ref(),
            stateless,
        )
        .await
        {
            Ok(v) => (ok(Some(id), v), None),
            Err(e) => (rpc_error(Some(id), &e), Some(e)),
        };
    }
    let result = match method {
        "tools/list" => match require(identity) {
            Ok(who) => {
                return match tools::component_tools::list(cx, &who, params, families).await {
                    Ok(text) => (ok_raw(id, &text), None),
                    Err(e) => (rpc_error(Some(id), &e), Some(e)),
                }
            }
            Err(e) => Err(e),
        },
        // The prompts component manifests declare (`tools::prompts`).
        "prompts/list" => match require(identity) {
            Ok(who) => tools::prompts::list_prompts(cx, &who).await,
            Err(e) => Err(e),
        },
        "prompts/get" => match require(identity) {
            Ok(who) => {
                let caps = stateless.then(|| modern::client_capabilities(params));
                tools::prompts::get_prompt(cx, &who, params, caps.as_ref()).await
            }
            Err(e) => Err(e),
        },
        "tools/call" => match require(identity) {
            Ok(who) => {
                let rpc_id = session.map(|s| rpc_id(&s.id_hash, &id));
                let call = tools::Call {
                    who: &who,
                    session_hash: session.map(|s| s.id_hash.as_str()),
                    secure: cx.secure(req),
                    stateless_req: stateless.then_some(req),
                    request_id: req.header("x-request-id"),
                    input: asked,
                    rpc_id: rpc_id.as_deref(),
                };
                return call_tool(cx, Ok(&call), id, params, families).await;
            }
            // Signing in needs no credentials (`Need::Anyone`); anything else does.
            Err(e) => return call_tool(cx, Err(e), id, params, families).await,
        },
        "logging/setLevel" => match (require(identity), session) {
            (Ok(_), Some(s)) => set_log_level(cx, s, params).await,
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(Error::invalid_params(
                "logging/setLevel needs a session (MCP-Session-Id): the level is the session's",
            )),
        },
        // 2026-07-28's change notifications (`listen`); not a 2025-11-25 method.
        "subscriptions/listen" if stateless => match require(identity) {
            Ok(_) => crate::listen::listen(cx, &id, params).await,
            Err(e) => Err(e),
        },
        "completion/complete" => match require(identity) {
            Ok(who) => {
                let call = tools::Call {
                    who: &who,
                    session_hash: session.map(|s| s.id_hash.as_str()),
                    secure: cx.secure(req),
                    stateless_req: None,
                    request_id: req.header("x-request-id"),
                    input: None,
                    rpc_id: None,
                };
                tools::resources::complete(cx, &call, params).await
            }
            Err(e) => Err(e),
        },
        other => Err(Error::new(
            Code::MethodNotFound,
            format!("method `{other}` is not supported"),
        )),
    };
    match result {
        Ok(v) => (ok(Some(id), v), None),
        Err(e) => (rpc_error(Some(id), &e), Some(e)),
    }
}

/// How a session's request is named in its runs' records: `<session hash>:<JSON-RPC id>`.
fn rpc_id(session_hash: &str, id: &Json) -> String {
    format!("{session_hash}:{id}")
}

/// `logging/setLevel`: the session keeps the level (in SQL); `{}`.
async fn set_log_level<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    session: &sessions::Session,
    params: &Json,
) -> Result<Json> {
    let level = params.get("level").and_then(Json::as_str).unwrap_or("");
    if sessions::severity(level).is_none() {
        return Err(Error::invalid_params(format!(
            "`level` must be one of {}",
            sessions::LEVELS.join(", ")
        )));
    }
    sessions::set_log_level(&cx.db, &session.id_hash, level).await?;
    Ok(json!({}))
}

async fn initialize<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
    params: &Json,
) -> Result<(Json, String)> {
    let asked = params
        .get("protocolVersion")
        .and_then(Json::as_str)
        .unwrap_or(PROTOCOL_VERSIONS[0]);
    let version = if PROTOCOL_VERSIONS.contains(&asked) {
        asked
    } else {
        PROTOCOL_VERSIONS[0]
    };
    // A key given at initialize binds the session to it; without one the session is
    // anonymous and can only ping until the caller authenticates per request.
    let key_id = match auth::bearer(req) {
        // Not an API key: a JWT, through the caller check (bound to its user, `user:<sub>`).
        Some(raw) if crate::keys::KeyType::of_raw(raw).is_none() => {
            auth::check(&cx.db, &cx.config, req, None, true, cx.env.now_ms())
                .await?
                .identity
                .map(|i| i.key.id)
        }
        Some(raw) => Some(
            auth::authenticate_key(&cx.db, &cx.config, req, raw, cx.env.now_ms())
                .await?
                .key
                .id,
        ),
        None => None,
    };
    let sid = sessions::create(
        &cx.db,
        &cx.env,
        key_id.as_deref(),
        version,
        cx.config.session_ttl_ms,
    )
    .await?;
    // The session's key pair is made when first read (`resources/read`), not here; runs
    // and components are resources through templates (`tools::resources`).
    let capabilities = json!({
        "tools": { "listChanged": false },
        "prompts": { "listChanged": false },
        "resources": { "subscribe": true, "listChanged": false },
        "completions": {},
        // A streamed tools/call sends its run's log lines at the level set here.
        "logging": {},
    });
    let result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": { "name": "cyfr", "version": env!("CARGO_PKG_VERSION") },
        "instructions": crate::config::INSTRUCTIONS,
    });
    Ok((result, sid))
}

fn require(identity: Option<Identity>) -> Result<Identity> {
    identity.ok_or_else(auth_required)
}

fn auth_required() -> Error {
    Error::new(
        Code::AuthRequired,
        "Authentication required: send `Authorization: Bearer cyfr_sk_…`",
    )
}

/// `resources/list` and `resources/read`: the session's encryption public key (which a
/// `stateless` request, having no session, is not offered); runs and components through
/// the templates of `tools::resources`.
async fn resources<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    req: &HttpRequest,
    method: &str,
    params: &Json,
    session: Option<&sessions::Session>,
    identity: Option<&Identity>,
    stateless: bool,
) -> Result<Json> {
    match method {
        "resources/list" => {
            let list = if cx.config.session_encryption && !stateless {
                vec![json!({
                    "uri": sealed::PUBKEY_URI,
                    "name": "encryption-pubkey",
                    "title": "Session encryption public key",
                    "description": "X25519 public key of this MCP session: seal secrets to it (libsodium crypto_box_seal) and send {\"ciphertext\", \"kid\"}.",
                    "mimeType": "application/json",
                })]
            } else {
                Vec::new()
            };
            let mut list = list;
            if let Some(who) = identity {
                list.extend(tools::prompts::list_resources(cx, who).await?);
            }
            Ok(json!({ "resources": list }))
        }
        // A session's subscriptions are kept in SQL; 2026-07-28 never gets here (`modern`).
        "resources/subscribe" | "resources/unsubscribe" => {
            identity.ok_or_else(auth_required)?;
            let session = session.ok_or_else(|| {
                Error::invalid_params(format!(
                    "{method} needs a session (MCP-Session-Id): subscriptions are the session's"
                ))
            })?;
            let uri = subscriptions::uri(params)?;
            if method == "resources/subscribe" {
                subscriptions::subscribe(&cx.db, &session.id_hash, uri, cx.env.now_ms()).await?;
            } else {
                subscriptions::unsubscribe(&cx.db, &session.id_hash, uri).await?;
            }
            Ok(json!({}))
        }
        "resources/templates/list" => {
            let mut list = tools::resources::templates();
            if let (Some(who), Json::Array(l)) = (identity, &mut list) {
                l.extend(tools::prompts::list_templates(cx, who).await?);
            }
            Ok(json!({ "resourceTemplates": list }))
        }
        "resources/read" => {
            let uri = params
                .get("uri")
                .and_then(Json::as_str)
                .ok_or_else(|| Error::invalid_params("resources/read needs `uri`"))?;
            if uri != sealed::PUBKEY_URI {
                if let Some(who) = identity {
                    let call = tools::Call {
                        who,
                        session_hash: session.map(|s| s.id_hash.as_str()),
                        secure: cx.secure(req),
                        stateless_req: None,
                        request_id: req.header("x-request-id"),
                        input: None,
                        rpc_id: None,
                    };
                    if let Some(v) = tools::resources::read(cx, &call, uri).await? {
                        return Ok(v);
                    }
                    if let Some(v) = tools::prompts::read_resource(cx, who, uri).await? {
                        return Ok(v);
                    }
                } else if tools::resources::action_of(uri).is_some() {
                    return Err(auth_required());
                }
                return Err(
                    Error::new(Code::InvalidParams, format!("no resource `{uri}`"))
                        .with_data(json!({ "uri": uri })),
                );
            }
            if !cx.config.session_encryption {
                return Err(Error::invalid_params("Session encryption is not enabled"));
            }
            // Only the session's own key may read (and so create) its encryption key; the
            // caller was already checked against the session's key.
            if identity.is_none() {
                return Err(Error::new(Code::AuthRequired, "Authentication required: the encryption key belongs to an authenticated MCP session"));
            }
            let session = session.ok_or_else(|| {
                Error::new(
                    Code::SessionRequired,
                    "the encryption key belongs to an MCP session: send MCP-Session-Id",
                )
            })?;
            let kms = cx.config.kms.as_deref().ok_or_else(|| {
                Error::internal("session encryption needs master keys (master_keys)")
            })?;
            let info = sealed::public_info(
                &cx.db,
                kms,
                &cx.env,
                &session.id_hash,
                cx.env.now_ms() + cx.config.session_ttl_ms,
            )
            .await?;
            Ok(
                json!({ "contents": [{ "uri": uri, "mimeType": "application/json", "text": info.to_string() }] }),
            )
        }
        other => Err(Error::new(
            Code::MethodNotFound,
            format!("method `{other}` is not supported"),
        )),
    }
}

/// A `tools/call`, by an identified caller, or (`Err`: why not) by one without credentials,
/// which only the actions open to anyone accept.
async fn call_tool<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    who: std::result::Result<&tools::Call<'_>, Error>,
    id: Json,
    params: &Json,
    families: ToolFamilies,
) -> (HttpResponse, Option<Error>) {
    let Some(name) = params.get("name").and_then(Json::as_str) else {
        let e = Error::invalid_params("tools/call needs `params.name`");
        return (rpc_error(Some(id), &e), Some(e));
    };
    let args = match params.get("arguments") {
        None | Some(Json::Null) => Json::Object(Default::default()),
        Some(a @ Json::Object(_)) => a.clone(),
        Some(_) => {
            let e = Error::invalid_params("`params.arguments` must be an object");
            return (rpc_error(Some(id), &e), Some(e));
        }
    };
    // A family the endpoint hides is unknown here (`mcp_tools`, `/mcp/agent`).
    let admin = tools::exists(name);
    let shown = if admin {
        families.admin()
    } else {
        families.components()
    };
    if !shown {
        let e = Error::invalid_params(format!("unknown tool `{name}`"));
        return (rpc_error(Some(id), &e), Some(e));
    }
    if !admin {
        let who = match who {
            Ok(w) => w,
            Err(e) => return (rpc_error(Some(id), &e), Some(e)),
        };
        return match tools::component_tools::call(cx, who, name, &args).await {
            Ok((result, failed)) => (ok(Some(id), result), failed),
            Err(e) => (rpc_error(Some(id), &e), Some(e)),
        };
    }
    let result = match who {
        Ok(who) => tools::call(cx, who, name, &args).await,
        Err(unauthenticated) => match tools::call_anonymous(cx, name, &args).await {
            Some(r) => r,
            None => return (rpc_error(Some(id), &unauthenticated), Some(unauthenticated)),
        },
    };
    match result {
        Ok(value) => (ok(Some(id), tool_result(&value, false)), None),
        // Bad arguments go back as a tool error the caller (or model) can read and fix.
        Err(e) if e.code == Code::InvalidParams && tools::exists(name) => (
            ok(
                Some(id),
                tool_result(
                    &json!({ "error": { "code": e.code.number(), "name": e.code.name(), "message": e.message } }),
                    true,
                ),
            ),
            Some(e),
        ),
        Err(e) => (rpc_error(Some(id), &e), Some(e)),
    }
}

fn tool_result(value: &Json, is_error: bool) -> Json {
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut r = json!({ "content": [{ "type": "text", "text": text }], "isError": is_error });
    if value.is_object() {
        r["structuredContent"] = value.clone();
    }
    r
}

/// A success whose `result` is JSON text already (`tools/list`: spliced, not re-serialized).
fn ok_raw(id: Json, result: &str) -> HttpResponse {
    let body = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}");
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

fn ok(id: Option<Json>, result: Json) -> HttpResponse {
    HttpResponse::json(
        200,
        &json!({ "jsonrpc": "2.0", "id": id.unwrap_or(Json::Null), "result": result }),
    )
}

/// A JSON-RPC error response, with the HTTP status its code decides.
pub fn rpc_error(id: Option<Json>, e: &Error) -> HttpResponse {
    let status = e.code.http_status();
    let mut r = HttpResponse::json(
        status,
        &json!({ "jsonrpc": "2.0", "id": id.unwrap_or(Json::Null), "error": e.to_json() }),
    );
    if status == 401 {
        r.headers
            .push(("www-authenticate".into(), "Bearer realm=\"cyfr\"".into()));
    }
    if let Some(ms) = e
        .data
        .as_ref()
        .and_then(|d| d.get("retry_after_ms"))
        .and_then(Json::as_u64)
    {
        r.headers
            .push(("retry-after".into(), ms.div_ceil(1000).max(1).to_string()));
    }
    r
}
