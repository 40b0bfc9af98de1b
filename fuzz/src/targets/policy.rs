//! Policy fields and the units they use (durations, sizes, rates).

use crate::gen;
use cyfr_core::policy::{tool_allowed, Policy};
use cyfr_core::units::{format_duration_ms, parse_duration_ms, parse_size, Rate};
use serde_json::Value;

const FIELDS: &[&str] = &[
    "allowed_domains",
    "allowed_methods",
    "rate_limit",
    "timeout",
    "timeout_ms",
    "max_memory",
    "max_memory_bytes",
    "max_request_size",
    "max_response_size",
    "allowed_tools",
    "allowed_requests",
    "allowed_private_ips",
    "max_outbound_requests",
    "requests",
    "window",
];

/// Parses the input as policy fields, and each value as a duration, size and rate.
pub fn target(data: &[u8]) {
    let fields = if let Some(mut u) = gen::structured(data) {
        match gen::object(&mut u, FIELDS, 0) {
            Ok(m) => m,
            Err(_) => return,
        }
    } else {
        match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(m)) => m,
            Ok(other) => {
                units(&other);
                return;
            }
            Err(_) => {
                units(&Value::String(gen::text(data).into_owned()));
                return;
            }
        }
    };
    for v in fields.values() {
        units(v);
    }
    if let Ok(p) = Policy::from_fields(&fields) {
        // What a policy shows is what it enforces: its JSON form reads back the same.
        let shown = p.to_json();
        if let Value::Object(m) = &shown {
            let again = Policy::from_fields(m)
                .unwrap_or_else(|e| panic!("policy's own JSON {shown} is refused: {e}"));
            assert_eq!(again.to_json(), shown);
        }
        let _ = p.egress();
        for t in &p.allowed_tools {
            let _ = tool_allowed(&p.allowed_tools, t, "run");
        }
    }
}

fn units(v: &Value) {
    if let Some(s) = v.as_str() {
        if let Ok(ms) = parse_duration_ms(s) {
            let shown = format_duration_ms(ms);
            assert_eq!(
                parse_duration_ms(&shown),
                Ok(ms),
                "duration `{s}` shows as `{shown}`"
            );
        }
        let _ = tool_allowed(&[s.to_string()], "execution", "run");
    }
    let _ = parse_size(v);
    if let Ok(r) = Rate::parse(v) {
        let shown = r.to_text();
        let again = Rate::parse(&Value::String(shown.clone()))
            .unwrap_or_else(|e| panic!("rate shows as `{shown}`, which is refused: {e}"));
        assert_eq!(again.to_text(), shown);
    }
}

/// Valid policies.
pub fn corpus() -> Vec<Vec<u8>> {
    super::lines(&[
        r#"{"allowed_domains":["api.example.com","*.example.org"],"allowed_methods":["GET","POST"],"rate_limit":"10/1m","timeout":"30s"}"#,
        r#"{"max_memory":"64MB","max_request_size":"1MiB","max_response_size":1048576,"max_outbound_requests":10}"#,
        r#"{"allowed_tools":["execution.run","component.*"],"allowed_private_ips":["10.0.0.0/8","127.0.0.1"]}"#,
        r#"{"rate_limit":{"requests":5,"window":"1s"},"allowed_requests":["GET https://api.example.com/v1/*"]}"#,
        r#""250ms""#,
        r#""2h""#,
        r#""100/1h""#,
    ])
}
