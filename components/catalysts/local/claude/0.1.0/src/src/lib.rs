//! `catalyst:local.claude` — Anthropic's Messages API as a catalyst.
//!
//! Operations (input `{"operation", "params"}`):
//! - `messages.create`: `params` is the Messages API request (`model`, `messages`,
//!   `max_tokens`, `system`, `temperature`, ...) and is sent as the JSON body of
//!   `POST {base_url}/v1/messages`. With `"stream": true` the response is read through
//!   `cyfr:http/streaming` and returned as the list of server-sent events.
//! - `models.list`: `GET {base_url}/v1/models`.
//!
//! `params.base_url` (not sent) overrides `https://api.anthropic.com`, e.g. for a proxy or a
//! test server. The API key is never seen by this component: the request carries
//! `x-api-key: {{secret:ANTHROPIC_API_KEY}}` and the host substitutes the granted secret after
//! the request passed the egress policy.
//!
//! Output: `{"status": 200, "data": <the API's JSON response>}` (streaming:
//! `{"status": 200, "data": {"events": [...]}}`), or `{"status": N, "error": {"type",
//! "message"}}` with the API's error type or the host's refusal.

wit_bindgen::generate!({
    path: "../../../../../../guest-wit/catalyst",
    world: "cyfr:catalyst/catalyst",
    generate_all,
});

use cyfr::http::{fetch, streaming};
use serde_json::{json, Map, Value};

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
const API_KEY_HEADER_VALUE: &str = "{{secret:ANTHROPIC_API_KEY}}";

struct Component;

impl exports::cyfr::catalyst::run::Guest for Component {
    fn run(input: String) -> String {
        run(&input).to_string()
    }
}

fn run(input: &str) -> Value {
    let input: Value = match serde_json::from_str(input) {
        Ok(v) => v,
        Err(e) => return error(400, "invalid_input", &format!("input is not JSON: {e}")),
    };
    let mut params = match input.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return error(400, "invalid_input", "`params` must be an object"),
    };
    let base_url = match params.remove("base_url") {
        None | Some(Value::Null) => DEFAULT_BASE_URL.to_string(),
        Some(Value::String(u)) if u.starts_with("https://") || u.starts_with("http://") => {
            u.trim_end_matches('/').to_string()
        }
        Some(_) => {
            return error(
                400,
                "invalid_input",
                "`params.base_url` must be an http(s) URL",
            )
        }
    };
    match input.get("operation").and_then(Value::as_str) {
        Some("messages.create") => messages_create(&base_url, params),
        Some("models.list") => call("GET", &format!("{base_url}/v1/models"), None),
        Some(other) => error(
            400,
            "invalid_input",
            &format!("unknown operation `{other}`; use `messages.create` or `models.list`"),
        ),
        None => error(
            400,
            "invalid_input",
            "`operation` is required, e.g. \"messages.create\"",
        ),
    }
}

fn messages_create(base_url: &str, params: Map<String, Value>) -> Value {
    for field in ["model", "messages", "max_tokens"] {
        if !params.contains_key(field) {
            return error(
                400,
                "invalid_input",
                &format!("`params.{field}` is required for messages.create"),
            );
        }
    }
    let url = format!("{base_url}/v1/messages");
    let streaming = params.get("stream") == Some(&Value::Bool(true));
    let body = Value::Object(params).to_string();
    if streaming {
        stream("POST", &url, body)
    } else {
        call("POST", &url, Some(body))
    }
}

fn headers() -> Value {
    json!({
        "x-api-key": API_KEY_HEADER_VALUE,
        "anthropic-version": API_VERSION,
        "content-type": "application/json",
        "accept": "application/json",
    })
}

fn call(method: &str, url: &str, body: Option<String>) -> Value {
    let mut req = json!({ "method": method, "url": url, "headers": headers() });
    if let Some(b) = body {
        req["body"] = json!(b);
    }
    let answer: Value =
        serde_json::from_str(&fetch::request(&req.to_string())).unwrap_or(Value::Null);
    if let Some(err) = answer.get("error") {
        return host_error(err);
    }
    let status = answer["status"].as_u64().unwrap_or(502);
    let text = answer["body"].as_str().unwrap_or("");
    let parsed: Value = serde_json::from_str(text).unwrap_or_else(|_| json!({ "raw": text }));
    if (200..300).contains(&status) {
        json!({ "status": 200, "data": parsed })
    } else {
        let kind = parsed["error"]["type"].as_str().unwrap_or("api_error");
        let message = parsed["error"]["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("the API answered {status}"));
        json!({ "status": status, "error": { "type": kind, "message": message } })
    }
}

fn stream(method: &str, url: &str, body: String) -> Value {
    let req = json!({ "method": method, "url": url, "headers": headers(), "body": body });
    let opened: Value =
        serde_json::from_str(&streaming::request(&req.to_string())).unwrap_or(Value::Null);
    if let Some(err) = opened.get("error") {
        return host_error(err);
    }
    let Some(handle) = opened["handle"].as_str().map(String::from) else {
        return error(502, "http_error", "the host returned no stream handle");
    };
    let status = opened["status"].as_u64().unwrap_or(200);
    let mut text = String::new();
    let outcome = loop {
        let chunk: Value = serde_json::from_str(&streaming::read(&handle)).unwrap_or(Value::Null);
        if let Some(err) = chunk.get("error") {
            break Err(host_error(err));
        }
        text.push_str(chunk["data"].as_str().unwrap_or(""));
        if chunk["done"] != json!(false) {
            break Ok(());
        }
    };
    let _ = streaming::close(&handle);
    if let Err(e) = outcome {
        return e;
    }
    if !(200..300).contains(&status) {
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let kind = parsed["error"]["type"].as_str().unwrap_or("api_error");
        return json!({ "status": status, "error": { "type": kind, "message": parsed["error"]["message"].as_str().unwrap_or("the API refused the request") } });
    }
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap_or_else(|_| json!({ "raw": d.trim() })))
        .collect();
    json!({ "status": 200, "data": { "events": events } })
}

fn host_error(err: &Value) -> Value {
    let kind = err["type"].as_str().unwrap_or("http_error");
    let status = match kind {
        "domain_blocked" | "private_ip_blocked" => 403,
        "method_blocked" => 405,
        "request_too_large" => 413,
        "rate_limited" | "stream_limit" => 429,
        "timeout" => 504,
        _ => 502,
    };
    error(status, kind, err["message"].as_str().unwrap_or(""))
}

fn error(status: u16, kind: &str, message: &str) -> Value {
    json!({ "status": status, "error": { "type": kind, "message": message } })
}

export!(Component);
