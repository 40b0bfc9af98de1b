//! `formula:cyfr.fetch-stats` — fetches a page through the http catalyst and runs text-stats
//! on its body: an example of a formula that composes two components with `cyfr:formula/invoke`.
//!
//! Input: `{"url": "...", "top": 10}` (`top` optional, 0..=100, default 10), with optional
//! `"catalyst"` (default `catalyst:cyfr.http:0.1.0`) and `"reagent"` (default
//! `reagent:cyfr.text-stats:0.1.0`) to use other versions; each is a reference string or
//! `{"registry": "..."}`.
//!
//! Output: `{"url", "status": <upstream HTTP status>, "stats": <text-stats output>,
//! "executions": {"fetch": "exec_...", "stats": "exec_..."}}`, or
//! `{"error": {"type", "message", "step": "fetch"|"stats"}}` when a step failed (the child's
//! error type, e.g. `domain_blocked` from the catalyst or `policy_required` from the router), or
//! `{"error": {"type": "invalid_input", "message"}}` for bad input.

wit_bindgen::generate!({
    path: "../../../../../../guest-wit/formula",
    world: "cyfr:formula/formula",
    generate_all,
});

use cyfr::formula::invoke;
use serde_json::{json, Value};

const DEFAULT_CATALYST: &str = "catalyst:cyfr.http:0.1.0";
const DEFAULT_REAGENT: &str = "reagent:cyfr.text-stats:0.1.0";
const DEFAULT_TOP: u64 = 10;
const MAX_TOP: u64 = 100;

struct Component;

impl exports::cyfr::formula::run::Guest for Component {
    fn run(input: String) -> String {
        run(&input).unwrap_or_else(|e| e).to_string()
    }
}

export!(Component);

fn run(input: &str) -> Result<Value, Value> {
    let input: Value = serde_json::from_str(input)
        .map_err(|e| invalid_input(&format!("input is not JSON: {e}")))?;
    if !input.is_object() {
        return Err(invalid_input("input must be an object with `url`"));
    }
    let url = match input.get("url").and_then(Value::as_str) {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => return Err(invalid_input("`url` must be a non-empty string")),
    };
    let top = match input.get("top") {
        None | Some(Value::Null) => DEFAULT_TOP,
        Some(t) => match t.as_u64() {
            Some(n) if n <= MAX_TOP => n,
            _ => return Err(invalid_input("`top` must be an integer from 0 to 100")),
        },
    };
    let catalyst = reference(&input, "catalyst", DEFAULT_CATALYST)?;
    let reagent = reference(&input, "reagent", DEFAULT_REAGENT)?;

    // Step 1: the page, through the http catalyst (and its own egress policy).
    let (fetched, fetch_id) = invoke_one(
        "fetch",
        &json!({
            "reference": catalyst,
            "type": "catalyst",
            "input": {"operation": "request", "params": {"method": "GET", "url": url}},
        }),
    )?;
    if let Some(err) = fetched.get("error") {
        return Err(step_error(
            "fetch",
            err["type"].as_str().unwrap_or("catalyst_error"),
            err["message"].as_str().unwrap_or("the catalyst failed"),
        ));
    }
    let upstream_status = fetched
        .get("status")
        .or_else(|| fetched.pointer("/data/status"))
        .cloned()
        .unwrap_or(Value::Null);
    let body = match fetched.pointer("/data/body").and_then(Value::as_str) {
        Some(b) => b.to_string(),
        None => {
            return Err(step_error(
                "fetch",
                "invalid_output",
                "the catalyst's output has no `data.body` string",
            ))
        }
    };

    // Step 2: the statistics of the body.
    let (stats, stats_id) = invoke_one(
        "stats",
        &json!({
            "reference": reagent,
            "type": "reagent",
            "input": {"text": body, "top": top},
        }),
    )?;
    if let Some(err) = stats.get("error") {
        return Err(step_error(
            "stats",
            err["type"].as_str().unwrap_or("reagent_error"),
            err["message"].as_str().unwrap_or("the reagent failed"),
        ));
    }

    Ok(json!({
        "url": url,
        "status": upstream_status,
        "stats": stats,
        "executions": {"fetch": fetch_id, "stats": stats_id},
    }))
}

/// An optional reference override: a string or `{"registry": "..."}`.
fn reference(input: &Value, key: &str, default: &str) -> Result<Value, Value> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(json!(default)),
        Some(Value::String(s)) if !s.is_empty() => Ok(json!(s)),
        Some(v @ Value::Object(o)) if o.get("registry").is_some_and(Value::is_string) => {
            Ok(v.clone())
        }
        Some(_) => Err(invalid_input(&format!(
            "`{key}` must be a reference string or {{\"registry\": \"...\"}}"
        ))),
    }
}

/// Runs one sub-component; answers its output and execution id, or the step's error.
fn invoke_one(step: &str, request: &Value) -> Result<(Value, Value), Value> {
    let text = invoke::call(&request.to_string());
    let answer: Value = serde_json::from_str(&text).map_err(|e| {
        step_error(
            step,
            "invoke_error",
            &format!("the host answered something that is not JSON: {e}"),
        )
    })?;
    if let Some(err) = answer.get("error") {
        return Err(step_error(
            step,
            err["type"].as_str().unwrap_or("invoke_error"),
            err["message"].as_str().unwrap_or(""),
        ));
    }
    if answer.get("status").and_then(Value::as_str) != Some("completed") {
        return Err(step_error(
            step,
            "invoke_error",
            &format!("unexpected answer from invoke: {answer}"),
        ));
    }
    let output = answer.get("output").cloned().unwrap_or(Value::Null);
    let id = answer.get("execution_id").cloned().unwrap_or(Value::Null);
    Ok((output, id))
}

fn step_error(step: &str, kind: &str, message: &str) -> Value {
    json!({"error": {"type": kind, "message": message, "step": step}})
}

fn invalid_input(message: &str) -> Value {
    json!({"error": {"type": "invalid_input", "message": message}})
}
