//! The redactor: text or JSON holding a secret comes out with no copy of it.

use crate::gen;
use cyfr_core::secrets::mask::{Forms, REDACTED};
use serde_json::Value;

/// Whether the no-copy property can be asked of `secret`: at least 8 bytes, not made of
/// the placeholder's own characters (a secret like `ED]xx...` can be rebuilt from
/// `[REDACTED]` and its neighbours).
pub fn checkable(secret: &[u8]) -> bool {
    secret.len() >= 8
        && !secret.iter().any(|b| *b == b'[' || *b == b']')
        && !REDACTED
            .as_bytes()
            .windows(secret.len())
            .any(|w| w == secret)
}

/// The input is `secret \0 text`; the text gets the secret (and its encodings) spliced in.
pub fn target(data: &[u8]) {
    let (secret, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let forms = Forms::new([secret]);
    let around = gen::text(rest);
    let (head, tail) = around.split_at(
        around
            .char_indices()
            .nth(around.chars().count() / 2)
            .map_or(0, |(i, _)| i),
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let plain = std::str::from_utf8(secret).ok();
    let text = format!("{head}{}{tail} {b64} {hex}", plain.unwrap_or(""));
    let out = forms.redact(&text);
    let mut value = serde_json::json!({ "a": text, "list": [head, tail, plain], "nested": { "k": { "v": plain } } });
    if let Some(p) = plain {
        value[p] = Value::String(format!("x{p}y"));
    }
    forms.redact_json(&mut value);
    let _ = forms.redact(&gen::text(data));
    if !checkable(secret) {
        return;
    }
    let mut needles = vec![b64.clone(), hex.clone()];
    if let Some(p) = plain {
        needles.push(p.to_string());
    }
    for n in &needles {
        assert!(
            !out.contains(n.as_str()),
            "redacted text keeps a form of the secret"
        );
        walk(&value, &mut |s| {
            assert!(
                !s.contains(n.as_str()),
                "redacted JSON keeps a form of the secret"
            )
        });
    }
}

/// Every string in `v`, keys included.
fn walk(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            f(k);
            walk(x, f)
        }),
        _ => {}
    }
}

/// Secrets and texts around them.
pub fn corpus() -> Vec<Vec<u8>> {
    vec![
        b"sk-ant-api03-abcdefghijklmnop\0Authorization: Bearer  and more".to_vec(),
        b"p@ss/w+rd=42!\0{\"password\":\"\"}".to_vec(),
        b"\"quoted\\secret\"\0json: ".to_vec(),
        b"caf\xc3\xa9-secret-\xe2\x82\xac\0unicode around \xe2\x98\x83 here".to_vec(),
        b"\x01\x02\x03\xff\xfe\xfd\x80\x81\0binary secret".to_vec(),
        b"aaaaaaaabaaaaaaa\0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
    ]
}
