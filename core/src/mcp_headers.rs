//! The `Mcp-*` request headers of MCP 2026-07-28 that mirror the body: how a value is
//! decoded (`=?base64?…?=` for one that is not plain ASCII), and the `Mcp-Param-*`
//! headers of a tool's parameters marked `x-mcp-header` in its `inputSchema`, which must
//! equal the call's arguments. Kept below the tools so a tool family that knows its
//! schemas (component tools) can check them where it reads them.

use crate::errors::{Code, Error};
use crate::http::HttpRequest;
use serde_json::Value as Json;

/// A header value as text, surrounding whitespace ignored: plain, or `=?base64?…?=`
/// (standard alphabet, padded). `None` when that encoding is broken or not UTF-8, or a
/// plain value holds a character a header may not carry unencoded.
pub fn decode(v: &str) -> Option<String> {
    use base64::Engine;
    let v = v.trim();
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => v
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            .then(|| v.to_string()),
    }
}

/// Checks the `Mcp-Param-{name}` header of every parameter `inputSchema` marks
/// `"x-mcp-header": "{name}"`: present exactly when the argument is, and equal to it
/// (a string as is, a number or boolean as JSON writes it). Any difference is -32020.
/// Only for a stateless request: a 2025-11-25 client sends no such headers.
pub fn check_params(req: &HttpRequest, input_schema: &Json, args: &Json) -> Result<(), Error> {
    let Some(props) = input_schema.get("properties").and_then(Json::as_object) else {
        return Ok(());
    };
    for (param, schema) in props {
        let Some(name) = schema.get("x-mcp-header").and_then(Json::as_str) else {
            continue;
        };
        let header = req.header(&format!("mcp-param-{name}"));
        let body = match args.get(param) {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(v @ (Json::Number(_) | Json::Bool(_))) => Some(v.to_string()),
            Some(_) => {
                return Err(mismatch(format!(
                    "`{param}` is sent as Mcp-Param-{name}: it must be a string, number or boolean"
                )))
            }
        };
        match (header, body) {
            (None, None) => {}
            (Some(h), Some(b)) if decode(h).as_deref() == Some(b.as_str()) => {}
            (Some(_), Some(_)) => {
                return Err(mismatch(format!(
                    "Mcp-Param-{name} differs from the argument `{param}` (or is badly encoded)"
                )))
            }
            (None, Some(_)) => {
                return Err(mismatch(format!(
                    "the argument `{param}` needs its Mcp-Param-{name} header"
                )))
            }
            (Some(_), None) => {
                return Err(mismatch(format!(
                    "Mcp-Param-{name} is sent but the argument `{param}` is not"
                )))
            }
        }
    }
    Ok(())
}

fn mismatch(message: String) -> Error {
    Error::new(Code::HeaderMismatch, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_plain_and_base64_values_and_refuses_broken_ones() {
        assert_eq!(decode("  us-west1 ").as_deref(), Some("us-west1"));
        assert_eq!(decode("=?base64?SGVsbG8=?=").as_deref(), Some("Hello"));
        assert_eq!(decode("=?base64?5pel5pys?=").as_deref(), Some("日本"));
        // Unpadded, or outside the alphabet: refused, never guessed.
        assert_eq!(decode("=?base64?SGVsbG8?="), None);
        assert_eq!(decode("=?base64?SGVs!!!bG8=?="), None);
        // Without both ends of the wrapper the value is literal.
        assert_eq!(
            decode("=?base64?SGVsbG8=").as_deref(),
            Some("=?base64?SGVsbG8=")
        );
        assert_eq!(decode("SGVsbG8=").as_deref(), Some("SGVsbG8="));
        // A raw non-ASCII or control character must have been encoded.
        assert_eq!(decode("日本"), None);
        assert_eq!(decode("a\u{1}b"), None);
    }

    #[test]
    fn mcp_param_headers_must_mirror_the_marked_arguments() {
        let schema = json!({ "type": "object", "properties": {
            "region": { "type": "string", "x-mcp-header": "Region" },
            "count": { "type": "integer", "x-mcp-header": "Count" },
            "note": { "type": "string" },
        }});
        let ok = [
            (vec![], json!({ "note": "x" })),
            (
                vec![("mcp-param-region", "eu"), ("Mcp-Param-Count", "3")],
                json!({ "region": "eu", "count": 3 }),
            ),
            (
                vec![("mcp-param-region", "=?base64?SGVsbG8=?=")],
                json!({ "region": "Hello" }),
            ),
        ];
        for (h, args) in ok {
            assert!(
                check_params(&req(&h), &schema, &args).is_ok(),
                "{h:?} {args}"
            );
        }
        let bad = [
            (vec![], json!({ "region": "eu" })),
            (vec![("mcp-param-region", "us")], json!({ "region": "eu" })),
            (vec![("mcp-param-region", "eu")], json!({})),
            (
                vec![("mcp-param-region", "=?base64?SGVsbG8?=")],
                json!({ "region": "Hello" }),
            ),
            (vec![("mcp-param-count", "4")], json!({ "count": 3 })),
        ];
        for (h, args) in bad {
            let e = check_params(&req(&h), &schema, &args).unwrap_err();
            assert_eq!(e.code.number(), -32020, "{h:?} {args}");
        }
        // A schema without marked parameters asks for nothing.
        let plain = json!({ "type": "object", "properties": { "x": { "type": "string" } } });
        assert!(check_params(&req(&[]), &plain, &json!({ "x": "y" })).is_ok());
    }
}
