//! What may be shown of a secret: a mask and a fingerprint, never the value.

/// `sk-1...cdef` for long values; short values show nothing of themselves.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() >= 16 {
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}...{tail}")
    } else {
        "********".to_string()
    }
}

/// `sha256:` and the first 16 hex digits of the value's SHA-256: enough to tell two keys
/// apart, too little to help guess one.
pub fn fingerprint(value: &[u8]) -> String {
    format!("sha256:{}", &crate::crypto::sha256_hex(value)[..16])
}

/// What replaces a secret in output, records and logs.
pub const REDACTED: &str = "[REDACTED]";

/// The text forms of some secrets that redaction looks for — plaintext, percent-encoded,
/// JSON-escaped, standard and URL-safe base64 (with and without padding, and inside a longer
/// encoding at any of the three byte offsets), and hex in either case — longest first, so a
/// form that contains another is replaced whole. Built once, used on many texts; zeroized when dropped. Values
/// shorter than 4 bytes are left out: they would redact ordinary text.
#[derive(Default)]
pub struct Forms(Vec<zeroize::Zeroizing<String>>);

impl Forms {
    /// The forms of every secret in `secrets`.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a [u8]>) -> Forms {
        use base64::Engine;
        let mut forms: Vec<zeroize::Zeroizing<String>> = Vec::new();
        for s in secrets {
            if s.len() < 4 {
                continue;
            }
            if let Ok(t) = std::str::from_utf8(s) {
                forms.push(t.to_string().into());
                // As a JSON string or a URL would carry it, where that differs (`"`, `\`,
                // `/`, `+`, `=` ... in the value).
                let json = zeroize::Zeroizing::new(serde_json::to_string(t).unwrap_or_default());
                forms.push(json[1..json.len() - 1].to_string().into());
            }
            forms.push(percent_encoded(s));
            for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
                let b = zeroize::Zeroizing::new(engine.encode(s));
                forms.push(b.trim_end_matches('=').to_string().into());
                forms.push(b);
                if s.len() >= MIN_EMBEDDED {
                    for offset in 0..3 {
                        forms.push(embedded_base64(engine, s, offset));
                    }
                }
            }
            let hex = zeroize::Zeroizing::new(s.iter().map(|b| format!("{b:02x}")).collect::<String>());
            forms.push(hex.to_uppercase().into());
            forms.push(hex);
        }
        // Longest first; equal forms side by side so one copy of each is kept.
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        Forms(forms)
    }

    /// `text` with every form replaced by `[REDACTED]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for f in &self.0 {
            if out.contains(f.as_str()) {
                out = out.replace(f.as_str(), REDACTED);
            }
        }
        out
    }

    /// Every string in `value` (keys included) with every form replaced.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.0.is_empty() {
            return;
        }
        match value {
            Value::String(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&k), v);
                }
            }
            _ => {}
        }
    }

    /// The forms, longest first.
    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone {
        self.0.iter().map(|f| f.as_str())
    }

    /// Length of the longest form (0 when there is none).
    pub fn longest(&self) -> usize {
        self.0.first().map_or(0, |f| f.len())
    }
}

/// `value` percent-encoded as in a URL (RFC 3986 unreserved characters kept, upper-case hex).
fn percent_encoded(value: &[u8]) -> zeroize::Zeroizing<String> {
    let mut out = zeroize::Zeroizing::new(String::with_capacity(value.len() * 3));
    for &b in value {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Secrets at least this long are also looked for inside longer base64 (`user:KEY` in a
/// Basic credential, a token wrapping the key); for shorter ones the few characters that
/// stay fixed would match ordinary text.
const MIN_EMBEDDED: usize = 8;

/// The characters of the base64 encoding of `secret` that do not depend on its neighbours
/// when it starts `offset` bytes (0–2) past a 3-byte boundary of a longer encoded value:
/// the characters that mix in bits of the bytes before or after are dropped.
fn embedded_base64(engine: &base64::engine::GeneralPurpose, secret: &[u8], offset: usize) -> zeroize::Zeroizing<String> {
    use base64::Engine;
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; offset]);
    bytes.extend_from_slice(secret);
    let encoded = zeroize::Zeroizing::new(engine.encode(&bytes[..]));
    // Each character holds 6 bits: skip those holding any of the `offset` leading bytes'
    // bits, stop before the one that would hold the next byte's.
    let start = (8 * offset).div_ceil(6);
    let end = 8 * bytes.len() / 6;
    encoded[start..end].to_string().into()
}

/// Replaces every secret in `text` (in any of its [`Forms`]) with `[REDACTED]`.
pub fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a [u8]>) -> String {
    Forms::new(secrets).redact(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_catches_plain_base64_and_hex_forms() {
        use base64::Engine;
        let secret = b"sk-ant-api03-secret-value";
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"\xfb\xffsecret??>>");
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let text = format!("a {} b {b64} c {hex} d {}", std::str::from_utf8(secret).unwrap(), hex.to_uppercase());
        let out = super::redact(&text, [&secret[..]]);
        assert_eq!(out, "a [REDACTED] b [REDACTED] c [REDACTED] d [REDACTED]");
        let out = super::redact(&format!("x{url}y"), [&b"\xfb\xffsecret??>>"[..]]);
        assert_eq!(out, "x[REDACTED]y");
        assert_eq!(super::redact("abc", [&b"ab"[..]]), "abc");
    }

    #[test]
    fn base64_of_a_secret_inside_a_longer_value_is_caught_at_every_offset() {
        use base64::Engine;
        let secret = b"sk-ant-api03-secret-value";
        for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
            for prefix in ["", "u:", "user:", "alice:", "ab"] {
                for suffix in ["", ";", ";exp=1", "xy"] {
                    let wrapped = [prefix.as_bytes(), secret, suffix.as_bytes()].concat();
                    let token = engine.encode(&wrapped);
                    let out = super::redact(&format!("Basic {token}"), [&secret[..]]);
                    assert!(out.contains("[REDACTED]"), "{prefix:?}+{suffix:?}: {out}");
                    // No 8 characters of the part that encodes the secret are left.
                    let (first, last) = ((8 * prefix.len()).div_ceil(6), 8 * (prefix.len() + secret.len()) / 6);
                    for i in first..=last - 8 {
                        assert!(!out.contains(&token[i..i + 8]), "{prefix:?}+{suffix:?}: {out}");
                    }
                }
            }
        }
        // As a URL or a JSON string carries a value with reserved characters.
        let aws = "wJalrXUtnFEMI/K7MDENG+bPxRfi\"CYEXAMPLEKEY";
        let echoed = format!("?key=wJalrXUtnFEMI%2FK7MDENG%2BbPxRfi%22CYEXAMPLEKEY {}", serde_json::to_string(aws).unwrap());
        assert_eq!(super::redact(&echoed, [aws.as_bytes()]), "?key=[REDACTED] \"[REDACTED]\"");
        // Short secrets are matched only whole, so ordinary text survives.
        assert_eq!(super::redact("Basic dXNlcjpwdw==", [&b"pw12"[..]]), "Basic dXNlcjpwdw==");
    }

    #[test]
    fn masks_show_at_most_eight_characters_of_long_values() {
        assert_eq!(super::mask("sk-1234567890abcdef"), "sk-1...cdef");
        assert_eq!(super::mask("short-secret"), "********");
        assert_eq!(super::fingerprint(b"abc"), "sha256:ba7816bf8f01cfea");
    }
}
