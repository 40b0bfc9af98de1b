//! The guest-facing JSON ABI of `cyfr:http/fetch` and `cyfr:http/streaming`: the request a
//! guest hands over (parsed here, before any policy check or substitution) and the answers it
//! gets back (encoded here from values the [`Redactor`] has already passed).

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::redact::Redactor;
use super::Denied;

pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A part of a multipart body.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub(crate) name: String,
    pub(crate) filename: Option<String>,
    pub(crate) content_type: Option<String>,
    /// `value` (text, may carry `{{secret:…}}`) or decoded `data`.
    pub(crate) content: PartContent,
}

/// What a multipart part holds.
#[derive(Clone, Debug)]
pub(crate) enum PartContent {
    /// Text: `{{secret:…}}` is substituted.
    Value(String),
    /// Base64-decoded bytes: sent as is.
    Data(Vec<u8>),
}

/// A request body as the guest gave it.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// No body.
    Empty,
    /// A text body: `{{secret:…}}` is substituted.
    Text(String),
    /// A base64-decoded body: sent as is.
    Binary(Vec<u8>),
    /// `multipart/form-data` parts.
    Multipart(Vec<Part>),
}

/// A request as the guest sent it (before any policy check or substitution).
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Body,
    pub(crate) response_base64: bool,
}

/// Parses a `fetch` / `stream-open` request; the error is the message of an `http_error`.
pub(crate) fn parse_request(text: &str) -> Result<Request, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("the request is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the request must be a JSON object")?;
    let method = match obj.get("method") {
        None | Some(Value::Null) => "GET".to_string(),
        Some(Value::String(m)) => m.trim().to_ascii_uppercase(),
        Some(_) => return Err("`method` must be a string".into()),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!("`{method}` is not an HTTP method"));
    }
    let url = obj
        .get("url")
        .and_then(Value::as_str)
        .ok_or("`url` is required and must be a string")?
        .to_string();
    let headers = parse_headers(obj.get("headers"))?;
    let base64_body = base64_encoding(obj, "body_encoding")?;
    let response_base64 = base64_encoding(obj, "response_encoding")?;
    Ok(Request {
        method,
        url,
        headers,
        body: parse_body(obj, base64_body)?,
        response_base64,
    })
}

fn parse_headers(headers: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    match headers {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(format!("header `{k}` must have a string value")),
                };
                out.push((k.clone(), value));
            }
        }
        Some(_) => return Err("`headers` must be an object of strings".into()),
    }
    Ok(out)
}

/// Whether `field` (`body_encoding` / `response_encoding`) asks for base64.
fn base64_encoding(obj: &Map<String, Value>, field: &str) -> Result<bool, String> {
    match obj.get(field).and_then(Value::as_str) {
        None => Ok(false),
        Some("base64") => Ok(true),
        Some("utf8" | "utf-8" | "text") => Ok(false),
        Some(other) => Err(format!(
            "`{field}` `{other}` is not supported (use \"base64\")"
        )),
    }
}

fn parse_body(obj: &Map<String, Value>, base64_body: bool) -> Result<Body, String> {
    let body_value = obj.get("body").filter(|b| !b.is_null());
    let multipart = obj.get("multipart").filter(|m| !m.is_null());
    Ok(match (body_value, multipart) {
        (Some(_), Some(_)) => return Err("`body` and `multipart` cannot both be given".into()),
        (None, None) => Body::Empty,
        (Some(Value::String(s)), None) if base64_body => Body::Binary(
            B64.decode(s.trim())
                .map_err(|e| format!("`body` is not valid base64: {e}"))?,
        ),
        (Some(Value::String(s)), None) => {
            if s.is_empty() {
                Body::Empty
            } else {
                Body::Text(s.clone())
            }
        }
        (Some(other), None) => Body::Text(other.to_string()),
        (None, Some(Value::Array(parts))) => Body::Multipart(
            parts
                .iter()
                .map(parse_part)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        (None, Some(_)) => return Err("`multipart` must be an array of parts".into()),
    })
}

fn parse_part(v: &Value) -> Result<Part, String> {
    let text = |k: &str| -> Result<Option<String>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                if s.contains(['\r', '\n']) {
                    Err(format!("multipart `{k}` may not contain line breaks"))
                } else {
                    Ok(Some(s.clone()))
                }
            }
            Some(_) => Err(format!("multipart `{k}` must be a string")),
        }
    };
    let name = text("name")?.ok_or("every multipart part needs a `name`")?;
    let content = match (v.get("data").and_then(Value::as_str), v.get("value")) {
        (Some(_), Some(val)) if !val.is_null() => {
            return Err(format!(
                "multipart part `{name}` has both `data` and `value`"
            ))
        }
        (Some(d), _) => PartContent::Data(
            B64.decode(d.trim())
                .map_err(|e| format!("multipart part `{name}`: `data` is not valid base64: {e}"))?,
        ),
        (None, Some(Value::String(s))) => PartContent::Value(s.clone()),
        (None, Some(Value::Null) | None) => PartContent::Value(String::new()),
        (None, Some(other)) => PartContent::Value(other.to_string()),
    };
    Ok(Part {
        name,
        filename: text("filename")?,
        content_type: text("content_type")?,
        content,
    })
}

/// The error answer: `{"error": {"type", "message"}}` (the message as given: redact first).
pub(crate) fn error(d: &Denied) -> String {
    d.to_json()
}

/// A response's headers as the guest sees them: redacted, repeated names joined by `, `.
pub(crate) fn headers(redactor: &Redactor, headers: &http::HeaderMap) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let value = redactor.text(&String::from_utf8_lossy(value.as_bytes()));
        match map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                map.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    Value::Object(map)
}

/// A `fetch` answer; `body` is redacted here, and sent as base64 when asked for or not UTF-8.
pub(crate) fn fetched(
    redactor: &Redactor,
    status: u16,
    headers: Value,
    body: &[u8],
    base64: bool,
) -> String {
    let mut out = json!({ "status": status, "headers": headers });
    let redacted = redactor.bytes(body);
    if base64 {
        out["body"] = json!(B64.encode(&redacted));
        out["body_encoding"] = json!("base64");
    } else {
        match String::from_utf8(redacted) {
            Ok(text) => out["body"] = json!(text),
            Err(e) => {
                out["body"] = json!(B64.encode(e.as_bytes()));
                out["body_encoding"] = json!("base64");
            }
        }
    }
    out.to_string()
}

/// A `stream-open` answer.
pub(crate) fn stream_opened(handle: &str, status: u16, headers: Value) -> String {
    json!({ "handle": handle, "status": status, "headers": headers }).to_string()
}

/// A `stream-read` answer (`data` already redacted).
pub(crate) fn stream_data(data: &str, done: bool) -> String {
    json!({ "data": data, "done": done }).to_string()
}

/// A `stream-close` answer.
pub(crate) fn stream_closed() -> String {
    json!({ "ok": true }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_defaults_and_refuse_body_with_multipart() {
        let r = parse_request(r#"{"url":"https://a.example/x"}"#).unwrap();
        assert_eq!(r.method, "GET");
        assert!(matches!(r.body, Body::Empty));
        let r = parse_request(r#"{"method":"post","url":"u","body":"aGk=","body_encoding":"base64","response_encoding":"base64"}"#).unwrap();
        assert_eq!(r.method, "POST");
        assert!(matches!(&r.body, Body::Binary(b) if b == b"hi"));
        assert!(r.response_base64);
        assert!(parse_request(r#"{"url":"u","body":"x","multipart":[]}"#).is_err());
        assert!(parse_request(
            r#"{"url":"u","multipart":[{"name":"f","data":"aGk=","value":"x"}]}"#
        )
        .is_err());
        assert!(parse_request(r#"{"method":"GE T","url":"u"}"#).is_err());
        assert!(parse_request("not json").is_err());
    }
}
