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

/// The text forms of some secrets that redaction looks for — plaintext, standard and
/// URL-safe base64 (with and without padding), and hex in either case — longest first, so a
/// form that contains another is replaced whole. Built once, used on many texts; zeroized
/// when dropped. Values shorter than 4 bytes are left out: they would redact ordinary text.
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
            }
            for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
                let b = zeroize::Zeroizing::new(engine.encode(s));
                forms.push(b.trim_end_matches('=').to_string().into());
                forms.push(b);
            }
            let hex = zeroize::Zeroizing::new(s.iter().map(|b| format!("{b:02x}")).collect::<String>());
            forms.push(hex.to_uppercase().into());
            forms.push(hex);
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
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

    /// The forms, longest first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|f| f.as_str())
    }

    /// Length of the longest form (0 when there is none).
    pub fn longest(&self) -> usize {
        self.0.first().map_or(0, |f| f.len())
    }
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
    fn masks_show_at_most_eight_characters_of_long_values() {
        assert_eq!(super::mask("sk-1234567890abcdef"), "sk-1...cdef");
        assert_eq!(super::mask("short-secret"), "********");
        assert_eq!(super::fingerprint(b"abc"), "sha256:ba7816bf8f01cfea");
    }
}
