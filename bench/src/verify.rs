//! Checks that an answer is the one expected, so only successful answers are counted.

use serde_json::{json, Value as Json};

/// The start of `v`'s JSON text, for an error message (cut on a character boundary).
pub(crate) fn excerpt(v: &Json, n: usize) -> String {
    let s = v.to_string();
    s[..s.floor_char_boundary(n)].to_string()
}

/// The answer's JSON: the body, or, when the server streamed it as an event stream (a long
/// run gets `: running` keep-alives before its result), the last event's `data`.
pub(crate) fn parse(body: &[u8]) -> Result<Json, String> {
    let text = String::from_utf8_lossy(body);
    let streamed = text.starts_with(':') || text.starts_with("event:") || text.starts_with("data:");
    let json = match streamed {
        true => text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("data:"))
            .unwrap_or("")
            .trim()
            .as_bytes(),
        false => body,
    };
    serde_json::from_slice(json).map_err(|e| {
        format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )
    })
}

pub(crate) fn verify_baseline(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    if v["sum"] != 6 {
        return Err(format!("unexpected output: {v}"));
    }
    Ok(())
}

pub(crate) fn verify_cyfr_run(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    let sc = &v["result"]["structuredContent"];
    if sc["status"] != "completed" || sc["result"]["sum"] != 6 {
        return Err(format!("unexpected response: {}", excerpt(&v, 400)));
    }
    Ok(())
}

pub(crate) fn verify_health(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    if v["status"] != "ok" {
        return Err(format!("unexpected response: {v}"));
    }
    Ok(())
}

pub(crate) fn verify_ping(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    if v["result"] != json!({}) {
        return Err(format!("unexpected response: {v}"));
    }
    Ok(())
}

pub(crate) fn verify_tools_list(body: &[u8]) -> Result<(), String> {
    let v = parse(body)?;
    if v["result"]["tools"].as_array().is_none_or(|t| t.is_empty()) {
        return Err(format!("unexpected response: {}", excerpt(&v, 400)));
    }
    Ok(())
}
