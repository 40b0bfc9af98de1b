//! MCP 2026-07-28 beside 2025-11-25: which requests are stateless (classified by their
//! body), the checks they must pass before any method runs (`_meta`, `Mcp-*` headers,
//! version), `server/discover`, and the shape of their answers (`resultType`, caching
//! hints, 404 for unknown methods, no session header). The methods themselves are `mcp`'s.

use crate::config::{Config, PROTOCOL_VERSIONS};
use crate::errors::{Code, Error};
use crate::http::{HttpRequest, HttpResponse};
use serde_json::{json, Value as Json};

/// The stateless revisions we speak; the first is the one we prefer.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];

/// The `_meta` key naming the request's protocol version.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key carrying the client's capabilities.
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The `_meta` keys only a stateless request carries: any of them makes it one. (Not any
/// `io.modelcontextprotocol/` key: 2025-11-25 has some of its own, `related-task`.)
const META_MODERN: &[&str] = &[
    META_VERSION,
    META_CAPABILITIES,
    "io.modelcontextprotocol/clientInfo",
];

/// Methods 2026-07-28 removed (a session handshake, or state kept between requests): on a
/// stateless request they are unknown, as the revision says.
const REMOVED: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// How long a client may keep a list, and whether it may share it across callers: the
/// answers that depend on the caller (its scopes decide the tools) are `private`.
const CACHEABLE: &[(&str, u64, &str)] = &[
    ("tools/list", 60_000, "private"),
    ("resources/list", 60_000, "private"),
    ("resources/templates/list", 60_000, "private"),
    ("resources/read", 0, "private"),
    ("prompts/list", 60_000, "private"),
];

/// Every version we serve, stateless first: what `server/discover` and -32022 list.
pub fn supported_versions() -> Vec<&'static str> {
    MODERN_VERSIONS
        .iter()
        .chain(PROTOCOL_VERSIONS)
        .copied()
        .collect()
}

/// Whether a header value names a stateless revision (a GET or DELETE carrying it is
/// refused with 405: that revision has no stream to open and no session to end).
pub fn is_modern_version(v: &str) -> bool {
    MODERN_VERSIONS.contains(&v.trim())
}

/// Whether a message is a stateless (2026-07-28) request: its `_meta` carries one of the
/// per-request keys of that revision, or it is `server/discover`, which only it has.
pub fn is_modern(msg: &Json) -> bool {
    if msg.get("method").and_then(Json::as_str) == Some("server/discover") {
        return true;
    }
    msg.get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(Json::as_object)
        .is_some_and(|m| META_MODERN.iter().any(|k| m.contains_key(*k)))
}

/// The checks a stateless request passes before any method runs, in the order the
/// revision gives: `_meta` complete, its version equal to the `MCP-Protocol-Version`
/// header and one we speak, `Mcp-Method`/`Mcp-Name` equal to the body (`Mcp-Param-*` are checked where the
/// called tool's schema is read: `crate::mcp_headers::check_params`). A removed method
/// is unknown. A notification needs only the headers.
pub fn check(
    req: &HttpRequest,
    id: Option<&Json>,
    method: &str,
    params: &Json,
) -> Result<(), Error> {
    let meta = params.get("_meta").and_then(Json::as_object);
    if id.is_some() {
        let meta = meta.ok_or_else(|| {
            Error::new(
                Code::MetaInvalid,
                format!("a {} request needs `params._meta`", MODERN_VERSIONS[0]),
            )
        })?;
        let version = meta
            .get(META_VERSION)
            .and_then(Json::as_str)
            .ok_or_else(|| {
                Error::new(Code::MetaInvalid, format!("`_meta` needs `{META_VERSION}`"))
            })?;
        if !meta.get(META_CAPABILITIES).is_some_and(Json::is_object) {
            return Err(Error::new(
                Code::MetaInvalid,
                format!("`_meta` needs `{META_CAPABILITIES}` (an object)"),
            ));
        }
        match req.header("mcp-protocol-version").map(str::trim) {
            Some(h) if h == version => {}
            Some(h) => {
                return Err(mismatch(format!(
                    "MCP-Protocol-Version `{h}` differs from `_meta` `{version}`"
                )))
            }
            None => return Err(mismatch("MCP-Protocol-Version header is missing".into())),
        }
        if !is_modern_version(version) {
            return Err(Error::new(
                Code::UnsupportedVersion,
                format!(
                    "protocol version `{version}` is not served per request; supported: {} (2025 revisions through `initialize`)",
                    MODERN_VERSIONS.join(", ")
                ),
            )
            .with_data(json!({ "supported": supported_versions(), "requested": version })));
        }
    }
    match req.header("mcp-method").map(str::trim) {
        Some(h) if h == method => {}
        Some(h) => {
            return Err(mismatch(format!(
                "Mcp-Method `{h}` differs from the body's `{method}`"
            )))
        }
        None => return Err(mismatch("Mcp-Method header is missing".into())),
    }
    if let Some(name) = named(method, params) {
        match req.header("mcp-name").map(crate::mcp_headers::decode) {
            Some(Some(h)) if h == name => {}
            Some(_) => return Err(mismatch("Mcp-Name differs from the body".into())),
            None => return Err(mismatch(format!("{method} needs an Mcp-Name header"))),
        }
    }
    if REMOVED.contains(&method) {
        return Err(unknown_method(method));
    }
    Ok(())
}

/// The client capabilities a stateless request declared (`{}` when none): what a method
/// may ask of the client (`tools::input_required`).
pub fn client_capabilities(params: &Json) -> Json {
    params
        .get("_meta")
        .and_then(|m| m.get(META_CAPABILITIES))
        .filter(|c| c.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// What `Mcp-Name` must carry for a method: the tool or prompt name, the resource URI.
fn named<'a>(method: &str, params: &'a Json) -> Option<&'a str> {
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    params.get(key).and_then(Json::as_str)
}

fn mismatch(message: String) -> Error {
    Error::new(Code::HeaderMismatch, message)
}

/// -32601 with HTTP 404, as a stateless request is told of a method it cannot use.
pub fn unknown_method(method: &str) -> Error {
    Error::new(
        Code::UnknownMethod,
        format!("method `{method}` is not supported"),
    )
}

/// The `server/discover` result: versions, capabilities and who we are. The same for
/// every caller, so it needs no credentials and no database.
pub fn discover(config: &Config, streams: bool) -> Json {
    // List changes are delivered on a `subscriptions/listen` stream (`listen`) and log
    // lines on a streamed `tools/call`: promised only where the runtime streams answers
    // (not on the Worker, which answers whole).
    let mut capabilities = json!({
        "tools": { "listChanged": streams },
        "prompts": { "listChanged": streams },
        "resources": { "subscribe": false, "listChanged": streams },
    });
    if !config.session_encryption {
        // Without session encryption the resource list is empty but still answered.
        capabilities["resources"] = json!({ "listChanged": streams });
    }
    if streams {
        capabilities["logging"] = json!({});
    }
    json!({
        "resultType": "complete",
        "supportedVersions": supported_versions(),
        "capabilities": capabilities,
        "instructions": crate::config::INSTRUCTIONS,
        "ttlMs": 300_000,
        "cacheScope": "public",
        "_meta": { "io.modelcontextprotocol/serverInfo": { "name": "cyfr", "version": env!("CARGO_PKG_VERSION") } },
    })
}

/// A stateless request's answer in its revision's shape: every result says
/// `resultType`, lists carry caching hints, an unknown method is HTTP 404, and no
/// session id goes out. (The methods are shared with 2025-11-25, which has none of this;
/// the answer is reshaped here rather than threading the revision through every method.)
pub fn finish(mut resp: HttpResponse, method: &str) -> HttpResponse {
    resp.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("mcp-session-id"));
    let Ok(mut body) = serde_json::from_slice::<Json>(&resp.body) else {
        return resp;
    };
    if let Some(result) = body.get_mut("result").and_then(Json::as_object_mut) {
        result
            .entry("resultType")
            .or_insert_with(|| json!("complete"));
        if let Some((_, ttl, scope)) = CACHEABLE.iter().find(|(m, _, _)| *m == method) {
            result.entry("ttlMs").or_insert_with(|| json!(ttl));
            result.entry("cacheScope").or_insert_with(|| json!(scope));
        }
    } else if body["error"]["code"].as_i64() == Some(Code::MethodNotFound.number()) {
        resp.status = Code::UnknownMethod.http_status();
    } else {
        return resp;
    }
    HttpResponse {
        body: body.to_string().into_bytes(),
        ..resp
    }
}
