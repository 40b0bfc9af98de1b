//! The JSON guests hand to host functions: `fetch` / `stream-open` requests, and the
//! formula host's `invoke` batch calls (`poll`, `poll-all`, `close`).

use crate::gen;
use cyfr_core::host_api::Callback;
use cyfr_host::egress::fuzzing;
use cyfr_host::formula::{FormulaSession, RouterLink};
use serde_json::Value;

const KEYS: &[&str] = &[
    "method",
    "url",
    "headers",
    "body",
    "body_encoding",
    "response_encoding",
    "multipart",
    "name",
    "filename",
    "content_type",
    "data",
    "value",
    "batch",
    "index",
    "invocations",
    "reference",
    "input",
    "type",
    "base64",
    "utf8",
    "text",
    "https://api.example.com/v1",
    "http://127.0.0.1:1/",
    "batch-1",
    "authorization",
    "{{secret:API_KEY}}",
];

/// Parses the input as each host function would.
pub fn target(data: &[u8]) {
    let text = match gen::structured(data) {
        Some(mut u) => match gen::value(&mut u, KEYS, 0) {
            Ok(v) => v.to_string(),
            Err(_) => return,
        },
        None => gen::text(data).into_owned(),
    };
    if let Ok((method, url)) = fuzzing::parse_request(&text) {
        assert!(
            !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()),
            "accepted method `{method}`"
        );
        let v: Value = serde_json::from_str(&text).expect("an accepted request is JSON");
        assert_eq!(v.get("url").and_then(Value::as_str), Some(url.as_str()));
    }
    // No batch is open, so these never reach the network; they must answer JSON.
    let mut session = FormulaSession::new(
        RouterLink::new(
            Callback {
                url: "http://127.0.0.1:9".into(),
                token: "fuzz".into(),
                key: None,
            },
            None,
        ),
        tokio::time::Instant::now(),
    );
    for answer in [
        session.poll(&text),
        session.poll_all(&text),
        session.close(&text),
    ] {
        serde_json::from_str::<Value>(&answer)
            .unwrap_or_else(|e| panic!("answer `{answer}` is not JSON: {e}"));
    }
}

/// Valid requests.
pub fn corpus() -> Vec<Vec<u8>> {
    super::lines(&[
        r#"{"method":"GET","url":"https://api.example.com/v1/items?q=1","headers":{"accept":"application/json"}}"#,
        r#"{"method":"post","url":"https://api.example.com/v1","headers":{"authorization":"Bearer {{secret:API_KEY}}"},"body":"{\"a\":1}"}"#,
        r#"{"method":"PUT","url":"https://x.example.com/u","body":"aGVsbG8=","body_encoding":"base64","response_encoding":"base64"}"#,
        r#"{"method":"POST","url":"https://x.example.com/u","multipart":[{"name":"f","filename":"a.txt","content_type":"text/plain","data":"aGk="},{"name":"v","value":"x"}]}"#,
        r#"{"batch":"batch-1","index":0}"#,
        r#"{"batch":"batch-1"}"#,
        r#"{"invocations":[{"reference":"reagent:local.x:1.0.0","input":{},"type":"reagent"}]}"#,
    ])
}
