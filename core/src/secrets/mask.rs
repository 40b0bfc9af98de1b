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

/// A masked view of a value that arrived sealed (`{ciphertext, kid}`): its sender hid it
/// from whatever sat between, so none of its characters are shown.
pub fn mask_sealed() -> String {
    "********".to_string()
}

/// `hmac-sha256:` and the first 16 hex digits of HMAC-SHA256 of the value under `key` (a key
/// derived from the owner's data key, so it never leaves the server): the same value under
/// the same owner always gives the same fingerprint, yet a fingerprint cannot be checked
/// against guesses offline.
pub fn fingerprint(key: &[u8], value: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(value);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("hmac-sha256:{hex}")
}

/// The fingerprint key of an owner, derived from the owner's data key.
pub fn fingerprint_key(dek: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    use hmac::Mac;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(dek).expect("HMAC takes any key length");
    mac.update(b"cyfr-fingerprint-key-v1");
    zeroize::Zeroizing::new(mac.finalize().into_bytes().to_vec())
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
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE,
            ] {
                let b = zeroize::Zeroizing::new(engine.encode(s));
                forms.push(b.trim_end_matches('=').to_string().into());
                forms.push(b);
                if s.len() >= MIN_EMBEDDED {
                    for offset in 0..3 {
                        forms.push(embedded_base64(engine, s, offset));
                    }
                }
            }
            let hex =
                zeroize::Zeroizing::new(s.iter().map(|b| format!("{b:02x}")).collect::<String>());
            forms.push(hex.to_uppercase().into());
            forms.push(hex);
        }
        // Longest first; equal forms side by side so one copy of each is kept.
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        Forms(forms)
    }

    /// `text` with every form replaced by `[REDACTED]`: first as written, then as it reads
    /// once escapes are undone (lower-case `%xx`, `\/`, `\u00XX`, HTML references,
    /// line-wrapped base64), so an echo in any of those spellings is cut out too.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for f in &self.0 {
            if out.contains(f.as_str()) {
                out = out.replace(f.as_str(), REDACTED);
            }
        }
        if self.0.is_empty() || !super::unescape::needs_view(&out) {
            return out;
        }
        let spans = self.escaped_spans(&out);
        if spans.is_empty() {
            return out;
        }
        let mut redacted = String::with_capacity(out.len());
        let mut at = 0;
        for (start, end) in spans {
            redacted.push_str(&out[at..start]);
            redacted.push_str(REDACTED);
            at = end;
        }
        redacted.push_str(&out[at..]);
        redacted
    }

    /// The spans of `text` (merged, in order, on character boundaries) that spell a form once
    /// escapes are undone.
    fn escaped_spans(&self, text: &str) -> Vec<(usize, usize)> {
        let view = super::unescape::view(text);
        let mut found: Vec<(usize, usize)> = Vec::new();
        for f in &self.0 {
            let needle = f.as_bytes();
            for at in memchr::memmem::find_iter(&view.bytes, needle) {
                found.push((view.spans[at].0, view.spans[at + needle.len() - 1].1));
            }
        }
        found.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (s, e) in found {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        // Spans start and end on escape or byte boundaries of ASCII escapes; a multi-byte
        // character is one span, so they are character boundaries already. Widen if not.
        for m in &mut merged {
            while !text.is_char_boundary(m.0) {
                m.0 -= 1;
            }
            while !text.is_char_boundary(m.1) {
                m.1 += 1;
            }
        }
        merged
    }

    /// `cut` moved back to the start of any form it would split, as written or escaped, so
    /// a stream can release `text[..cut]` redacted and keep the rest for the next chunk.
    pub fn safe_cut(&self, text: &str, mut cut: usize) -> usize {
        loop {
            let mut moved = false;
            let mut spans: Vec<(usize, usize)> = Vec::new();
            for f in &self.0 {
                spans.extend(
                    text.match_indices(f.as_str())
                        .map(|(i, m)| (i, i + m.len())),
                );
            }
            if super::unescape::needs_view(text) {
                spans.extend(self.escaped_spans(text));
            }
            for (s, e) in spans {
                if s < cut && e > cut {
                    cut = s;
                    moved = true;
                }
            }
            if !moved {
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                return cut;
            }
        }
    }

    /// How many trailing bytes of a stream may still be the start of a form: the longest
    /// form with every byte escaped, plus line breaks.
    pub fn window(&self) -> usize {
        match self.longest() {
            0 => 0,
            longest => longest * super::unescape::MAX_EXPANSION + 2 * (longest / 48 + 1),
        }
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
fn embedded_base64(
    engine: &base64::engine::GeneralPurpose,
    secret: &[u8],
    offset: usize,
) -> zeroize::Zeroizing<String> {
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
        let text = format!(
            "a {} b {b64} c {hex} d {}",
            std::str::from_utf8(secret).unwrap(),
            hex.to_uppercase()
        );
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
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE,
        ] {
            for prefix in ["", "u:", "user:", "alice:", "ab"] {
                for suffix in ["", ";", ";exp=1", "xy"] {
                    let wrapped = [prefix.as_bytes(), secret, suffix.as_bytes()].concat();
                    let token = engine.encode(&wrapped);
                    let out = super::redact(&format!("Basic {token}"), [&secret[..]]);
                    assert!(out.contains("[REDACTED]"), "{prefix:?}+{suffix:?}: {out}");
                    // No 8 characters of the part that encodes the secret are left.
                    let (first, last) = (
                        (8 * prefix.len()).div_ceil(6),
                        8 * (prefix.len() + secret.len()) / 6,
                    );
                    for i in first..=last - 8 {
                        assert!(
                            !out.contains(&token[i..i + 8]),
                            "{prefix:?}+{suffix:?}: {out}"
                        );
                    }
                }
            }
        }
        // As a URL or a JSON string carries a value with reserved characters.
        let aws = "wJalrXUtnFEMI/K7MDENG+bPxRfi\"CYEXAMPLEKEY";
        let echoed = format!(
            "?key=wJalrXUtnFEMI%2FK7MDENG%2BbPxRfi%22CYEXAMPLEKEY {}",
            serde_json::to_string(aws).unwrap()
        );
        assert_eq!(
            super::redact(&echoed, [aws.as_bytes()]),
            "?key=[REDACTED] \"[REDACTED]\""
        );
        // Short secrets are matched only whole, so ordinary text survives.
        assert_eq!(
            super::redact("Basic dXNlcjpwdw==", [&b"pw12"[..]]),
            "Basic dXNlcjpwdw=="
        );
    }

    #[test]
    fn masks_show_at_most_eight_characters_of_long_values() {
        assert_eq!(super::mask("sk-1234567890abcdef"), "sk-1...cdef");
        assert_eq!(super::mask("short-secret"), "********");
        // Keyed: the same value under another key gives another fingerprint, and the bare
        // SHA-256 of the value appears nowhere in it.
        let (a, b) = (
            super::fingerprint(b"k1", b"abc"),
            super::fingerprint(b"k2", b"abc"),
        );
        assert!(a.starts_with("hmac-sha256:") && a.len() == 12 + 16, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, super::fingerprint(b"k1", b"abc"));
        assert!(!a.contains("ba7816bf8f01cfea"));
        assert_eq!(super::mask_sealed(), "********");
    }
}

#[cfg(test)]
mod escaped_forms {
    const KEY: &str = "sk-live/4f+Q9a_Z=x&y<z>\"w'v";

    fn redact(text: &str) -> String {
        super::redact(text, [KEY.as_bytes()])
    }

    #[test]
    fn every_escaped_spelling_of_a_secret_is_cut_out() {
        let lower_pct: String = KEY
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect();
        let json_slash = KEY.replace('/', "\\/").replace('"', "\\\"");
        let json_u: String = KEY
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_string()
                } else {
                    format!("\\u{:04x}", c as u32)
                }
            })
            .collect();
        let html = KEY
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
            .replace('/', "&#x2F;");
        for (what, spelled) in [
            ("lower-case %xx", lower_pct),
            ("\\/", json_slash),
            ("\\u00XX", json_u),
            ("HTML", html),
        ] {
            let out = redact(&format!("before {spelled} after"));
            assert_eq!(out, "before [REDACTED] after", "{what}: {out}");
        }
    }

    #[test]
    fn line_wrapped_base64_is_cut_out() {
        use base64::Engine;
        let long = KEY.repeat(4);
        let b64 = base64::engine::general_purpose::STANDARD.encode(long.as_bytes());
        for (width, nl) in [(64, "\n"), (76, "\r\n"), (64, "\\n")] {
            let wrapped: Vec<String> = b64
                .as_bytes()
                .chunks(width)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect();
            let text = format!("-----BEGIN-----{nl}{}{nl}-----END-----", wrapped.join(nl));
            let out = super::redact(&text, [long.as_bytes()]);
            assert!(out.contains("[REDACTED]"), "{width}: {out}");
            for line in &wrapped {
                if line.len() >= 8 {
                    assert!(
                        !out.contains(line.as_str()),
                        "{width}: {line} left in {out}"
                    );
                }
            }
        }
    }

    #[test]
    fn ordinary_escaped_text_is_left_alone() {
        let text = "100% sure: a &amp; b \\u0041 \\/path%2Fx\nnext line";
        assert_eq!(redact(text), text);
    }

    #[test]
    fn a_stream_never_cuts_inside_an_escaped_secret() {
        let forms = super::Forms::new([KEY.as_bytes()]);
        let json_u: String = KEY
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let text = format!("xx{json_u}yy");
        for cut in 0..=text.len() {
            let c = forms.safe_cut(&text, cut);
            assert!(c <= cut && text.is_char_boundary(c));
            assert!(
                c <= 2 || c >= 2 + json_u.len(),
                "cut {cut} -> {c} splits the secret"
            );
        }
        assert!(forms.window() >= json_u.len());
    }
}
