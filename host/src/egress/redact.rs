//! The upstream → guest redactor of one execution: core's [`Forms`] for text, plus the raw
//! values and every form as bytes for binary bodies. Everything a guest is handed from an
//! upstream (headers, bodies, stream chunks, error messages) and everything recorded of a
//! request passes through it once.

use cyfr_core::secrets::mask::{Forms, REDACTED};
use zeroize::Zeroizing;

use super::Denied;

/// Replaces granted secrets (every one of their [`Forms`]) in what the guest is handed.
pub(crate) struct Redactor {
    /// The text forms redaction looks for (also held back at the end of a stream chunk).
    forms: Forms,
    /// Every form as bytes, and the raw values that are not UTF-8, longest first: what is
    /// looked for in binary data.
    needles: Vec<Zeroizing<Vec<u8>>>,
}

impl Redactor {
    /// A redactor of `values` (those shorter than 4 bytes are left out, as [`Forms`] does).
    pub(crate) fn new(values: impl Iterator<Item = Vec<u8>>) -> Redactor {
        let secrets: Vec<Zeroizing<Vec<u8>>> = values
            .filter(|v| v.len() >= 4)
            .map(Zeroizing::new)
            .collect();
        let forms = Forms::new(secrets.iter().map(|s| s.as_slice()));
        // The forms hold every UTF-8 value as plaintext already.
        let mut needles: Vec<Zeroizing<Vec<u8>>> = forms
            .iter()
            .map(|f| Zeroizing::new(f.as_bytes().to_vec()))
            .chain(
                secrets
                    .into_iter()
                    .filter(|s| std::str::from_utf8(s).is_err()),
            )
            .collect();
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Redactor { forms, needles }
    }

    /// `text` with every form replaced.
    pub(crate) fn text(&self, text: &str) -> String {
        self.forms.redact(text)
    }

    /// `d` with its message redacted: the one pass a refusal's message gets before it is both
    /// recorded and answered.
    pub(crate) fn denied(&self, d: Denied) -> Denied {
        Denied::new(d.kind, self.text(&d.message))
    }

    /// Text is redacted as text; other bytes have every form and raw value replaced.
    pub(crate) fn bytes(&self, data: &[u8]) -> Vec<u8> {
        if let Ok(text) = std::str::from_utf8(data) {
            return self.text(text).into_bytes();
        }
        let mut out = data.to_vec();
        for n in &self.needles {
            out = replace_bytes(&out, n, REDACTED.as_bytes());
        }
        out
    }

    /// Whether `data` holds a granted secret in any form.
    pub(crate) fn contains(&self, data: &[u8]) -> bool {
        self.needles.iter().any(|n| find_bytes(data, n).is_some())
    }

    /// Where a chunk of `text` may be cut without splitting a possible secret: not inside the
    /// last bytes where a form (in any spelling) could still be arriving, and not inside a form.
    pub(crate) fn safe_cut(&self, text: &str) -> usize {
        // A form may still be arriving in any spelling redaction reads (`\u00XX` …).
        let mut cut = text
            .len()
            .saturating_sub(self.forms.window().saturating_sub(1));
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.forms.safe_cut(text, cut)
    }

    /// Like [`Redactor::safe_cut`] for binary data: every form (a hex or base64 form split
    /// over two chunks would pass both) and every raw value.
    pub(crate) fn safe_cut_bytes(&self, data: &[u8]) -> usize {
        let longest = self.needles.first().map_or(0, |n| n.len());
        let cut = data.len().saturating_sub(longest.saturating_sub(1));
        cut_outside(data, self.needles.iter().map(|n| n.as_slice()), cut)
    }
}

/// `cut`, moved back to the start of any occurrence of a needle it falls inside, until it
/// falls inside none.
fn cut_outside<'a>(
    data: &[u8],
    needles: impl Iterator<Item = &'a [u8]> + Clone,
    mut cut: usize,
) -> usize {
    loop {
        let mut moved = false;
        for n in needles.clone() {
            let mut i = 0;
            while let Some(pos) = find_bytes(&data[i..], n) {
                let at = i + pos;
                if at < cut && at + n.len() > cut {
                    cut = at;
                    moved = true;
                }
                i = at + 1;
            }
        }
        if !moved {
            return cut;
        }
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_bytes(data: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while let Some(pos) = find_bytes(&data[i..], needle) {
        out.extend_from_slice(&data[i..i + pos]);
        out.extend_from_slice(with);
        i += pos + needle.len();
    }
    out.extend_from_slice(&data[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_held_back_across_stream_chunks() {
        let r = Redactor::new([b"sk-very-secret".to_vec()].into_iter());
        let text = "hello sk-very-sec";
        let cut = r.safe_cut(text);
        assert!(cut <= text.find("sk-").unwrap(), "{cut}");
        let text = "hello sk-very-secret and more text that goes on for a while";
        let cut = r.safe_cut(text);
        assert!(!r.text(&text[..cut]).contains("sk-very"));
        let none = Redactor::new(std::iter::empty());
        assert_eq!(none.safe_cut("abc"), 3);
        assert_eq!(
            r.bytes(b"\xff sk-very-secret \xfe"),
            b"\xff [REDACTED] \xfe".to_vec()
        );
        // Binary data: the hex form too, and a chunk never ends inside one.
        let hex: String = b"sk-very-secret"
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let data = [b"\xff ".as_slice(), hex.as_bytes(), b" \xfe"].concat();
        assert_eq!(r.bytes(&data), b"\xff [REDACTED] \xfe".to_vec());
        let data = [b"\xffxxxxxxxxxx".as_slice(), &hex.as_bytes()[..20]].concat();
        assert!(r.safe_cut_bytes(&data) <= 11, "{}", r.safe_cut_bytes(&data));
        assert!(r.contains(hex.as_bytes()) && !r.contains(b"sk-very"));
    }
}
