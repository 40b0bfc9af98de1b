//! `catalyst:cyfr.http` — a generic HTTP catalyst.
//!
//! Input (the catalyst I/O convention):
//! `{"operation": "request", "params": {"method", "url", "headers", "body", ...}}` — the
//! params are the `cyfr:http/fetch` request as is (`body_encoding`, `response_encoding` and
//! `multipart` included), so `{{secret:NAME}}` in a header value or the body reaches the host
//! untouched and is replaced there, after the request passed the egress policy.
//! `{"operation": "stream", "params": {...}}` sends the same request through
//! `cyfr:http/streaming` and returns the whole streamed body plus the number of reads.
//!
//! Output: `{"status": N, "data": {"status", "headers", "body"}}` with N the upstream status,
//! or `{"status": N, "error": {"type", "message"}}` when the host refused or failed the call
//! (N: 400 bad input, 403 blocked by policy, 405 method, 413/502 sizes, 429 budget, 504
//! timeout, 502 otherwise).

wit_bindgen::generate!({
    path: "../../../../../../guest-wit/catalyst",
    world: "cyfr:catalyst/catalyst",
    generate_all,
});

use cyfr::http::{fetch, streaming};
use serde_json::{json, Value};

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
    let params = match input.get("params") {
        Some(p) if p.is_object() => p.clone(),
        _ => {
            return error(
                400,
                "invalid_input",
                "`params` must be an object with at least `url`",
            )
        }
    };
    if !params.get("url").is_some_and(Value::is_string) {
        return error(400, "invalid_input", "`params.url` must be a string");
    }
    match input.get("operation").and_then(Value::as_str) {
        Some("request") => request(params),
        Some("stream") => stream(params),
        Some(other) => error(
            400,
            "invalid_input",
            &format!("unknown operation `{other}`; use `request` or `stream`"),
        ),
        None => error(
            400,
            "invalid_input",
            "`operation` is required (`request` or `stream`)",
        ),
    }
}

fn request(mut params: Value) -> Value {
    if params.get("method").is_none() {
        params["method"] = json!("GET");
    }
    let answer: Value = match serde_json::from_str(&fetch::request(&params.to_string())) {
        Ok(v) => v,
        Err(e) => {
            return error(
                502,
                "http_error",
                &format!("the host answered something that is not JSON: {e}"),
            )
        }
    };
    if let Some(err) = answer.get("error") {
        return host_error(err);
    }
    let status = answer["status"].as_u64().unwrap_or(0);
    let mut data = json!({
        "status": status,
        "headers": answer.get("headers").cloned().unwrap_or(json!({})),
        "body": answer.get("body").cloned().unwrap_or(json!("")),
    });
    if let Some(enc) = answer.get("body_encoding") {
        data["body_encoding"] = enc.clone();
    }
    json!({ "status": status, "data": data })
}

fn stream(mut params: Value) -> Value {
    if params.get("method").is_none() {
        params["method"] = json!("GET");
    }
    let opened: Value =
        serde_json::from_str(&streaming::request(&params.to_string())).unwrap_or(Value::Null);
    if let Some(err) = opened.get("error") {
        return host_error(err);
    }
    let Some(handle) = opened
        .get("handle")
        .and_then(Value::as_str)
        .map(String::from)
    else {
        return error(502, "http_error", "the host returned no stream handle");
    };
    let status = opened["status"].as_u64().unwrap_or(200);
    let mut body = String::new();
    let mut reads = 0u64;
    let result = loop {
        let chunk: Value = serde_json::from_str(&streaming::read(&handle)).unwrap_or(Value::Null);
        reads += 1;
        if let Some(err) = chunk.get("error") {
            break host_error(err);
        }
        body.push_str(chunk["data"].as_str().unwrap_or(""));
        if chunk["done"] == json!(true) || chunk.is_null() {
            break json!({
                "status": status,
                "data": {"status": status, "headers": opened.get("headers").cloned().unwrap_or(json!({})), "body": body, "reads": reads},
            });
        }
    };
    let _ = streaming::close(&handle);
    result
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
