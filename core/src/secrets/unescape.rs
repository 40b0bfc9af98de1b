//! A decoded view of text for redaction: percent-escapes (either case), JSON escapes
//! (`\/`, `\"`, `\uXXXX` with surrogate pairs …), HTML character references and line
//! breaks (so line-wrapped base64 reads as one run) are undone once, and every decoded byte
//! remembers the span of the original text it came from. A secret found in the view is then
//! cut out of the original at the right place, however it was spelled.

/// The decoded bytes and, for each, the `[start, end)` byte span of the original it stands for.
pub struct View {
    /// The text with one level of escaping undone and line breaks dropped.
    pub bytes: Vec<u8>,
    /// Original span of each byte of `bytes`.
    pub spans: Vec<(usize, usize)>,
}

/// Whether `text` holds anything the view would change (else the view is the text itself).
pub fn needs_view(text: &str) -> bool {
    text.bytes()
        .any(|b| matches!(b, b'%' | b'\\' | b'&' | b'\n' | b'\r'))
}

/// The decoded view of `text`.
pub fn view(text: &str) -> View {
    let s = text.as_bytes();
    let mut out = View {
        bytes: Vec::with_capacity(s.len()),
        spans: Vec::with_capacity(s.len()),
    };
    let mut i = 0;
    while i < s.len() {
        let (decoded, used) = match s[i] {
            // Dropped: base64 wrapped at 64 or 76 columns reads as one run.
            b'\n' | b'\r' => (Decoded::None, 1),
            b'%' => percent(&s[i..]),
            b'\\' => json_escape(&s[i..]),
            b'&' => entity(&s[i..]),
            b => (Decoded::Byte(b), 1),
        };
        let span = (i, i + used);
        match decoded {
            Decoded::None => {}
            Decoded::Byte(b) => {
                out.bytes.push(b);
                out.spans.push(span);
            }
            Decoded::Char(c) => {
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    out.bytes.push(b);
                    out.spans.push(span);
                }
            }
        }
        i += used;
    }
    out
}

enum Decoded {
    None,
    Byte(u8),
    Char(char),
}

fn hex(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

/// `%XX` in either case; a lone `%` is itself.
fn percent(s: &[u8]) -> (Decoded, usize) {
    match (
        s.get(1).copied().and_then(hex),
        s.get(2).copied().and_then(hex),
    ) {
        (Some(h), Some(l)) => (Decoded::Byte((h * 16 + l) as u8), 3),
        _ => (Decoded::Byte(b'%'), 1),
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    if s.len() < 4 {
        return None;
    }
    s[..4]
        .iter()
        .try_fold(0u32, |acc, &b| Some(acc * 16 + hex(b)?))
}

/// A JSON escape; an unknown one is the backslash itself.
fn json_escape(s: &[u8]) -> (Decoded, usize) {
    let simple = |b| (Decoded::Byte(b), 2);
    match s.get(1) {
        Some(b'"') => simple(b'"'),
        Some(b'\\') => simple(b'\\'),
        Some(b'/') => simple(b'/'),
        Some(b'b') => simple(8),
        Some(b'f') => simple(12),
        Some(b't') => simple(b'\t'),
        // Escaped line breaks inside a JSON string wrap base64 just like real ones.
        Some(b'n') | Some(b'r') => (Decoded::None, 2),
        Some(b'u') => match hex4(&s[2..]) {
            Some(hi @ 0xD800..=0xDBFF) => {
                let lo = (s.get(6) == Some(&b'\\') && s.get(7) == Some(&b'u'))
                    .then(|| hex4(&s[8..]))
                    .flatten();
                match lo {
                    Some(lo @ 0xDC00..=0xDFFF) => {
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        char::from_u32(c)
                            .map_or((Decoded::Byte(b'\\'), 1), |c| (Decoded::Char(c), 12))
                    }
                    _ => (Decoded::Byte(b'\\'), 1),
                }
            }
            Some(0x0A) | Some(0x0D) => (Decoded::None, 6),
            Some(c) => {
                char::from_u32(c).map_or((Decoded::Byte(b'\\'), 1), |c| (Decoded::Char(c), 6))
            }
            None => (Decoded::Byte(b'\\'), 1),
        },
        _ => (Decoded::Byte(b'\\'), 1),
    }
}

/// An HTML character reference: the five named ones XML knows, and numeric ones.
fn entity(s: &[u8]) -> (Decoded, usize) {
    // The longest reference decoded here is `&#x10FFFF;` (10 bytes).
    let Some(end) = s.iter().take(12).position(|&b| b == b';') else {
        return (Decoded::Byte(b'&'), 1);
    };
    let name = &s[1..end];
    let c = match name {
        b"amp" => Some('&'),
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"quot" => Some('"'),
        b"apos" => Some('\''),
        b"sol" => Some('/'),
        b"plus" => Some('+'),
        b"equals" => Some('='),
        [b'#', b'x' | b'X', digits @ ..] if !digits.is_empty() => std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .and_then(char::from_u32),
        [b'#', digits @ ..] if !digits.is_empty() => std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u32>().ok())
            .and_then(char::from_u32),
        _ => None,
    };
    match c {
        Some(c) => (Decoded::Char(c), end + 1),
        None => (Decoded::Byte(b'&'), 1),
    }
}

/// The most bytes one original byte of a secret can take in the text the view decodes
/// (`\u00XX` or `&#x2F;`: 6), so a stream can hold back enough to see a whole form.
pub const MAX_EXPANSION: usize = 6;

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(t: &str) -> String {
        String::from_utf8(view(t).bytes).unwrap()
    }

    #[test]
    fn escapes_are_undone_once_and_line_breaks_dropped() {
        assert_eq!(decoded("a%2fb%2Fc"), "a/b/c");
        assert_eq!(decoded(r#"x\/y\u0041\"\\"#), "x/yA\"\\");
        assert_eq!(decoded(r"\ud83d\ude00"), "😀");
        assert_eq!(decoded("&amp;&lt;&#47;&#x2F;&quot;"), "&<//\"");
        assert_eq!(decoded("QUJD\nREVG\r\nR0g="), "QUJDREVGR0g=");
        assert_eq!(decoded(r"QUJD\nREVG"), "QUJDREVG");
        // What is not an escape stays as it is.
        assert_eq!(decoded("100% & \\q %zz &bogus;"), "100% & \\q %zz &bogus;");
    }

    #[test]
    fn spans_point_back_at_the_original() {
        let v = view("a%41\\u0042&#67;");
        assert_eq!(v.bytes, b"aABC");
        assert_eq!(v.spans, vec![(0, 1), (1, 4), (4, 10), (10, 15)]);
    }
}
