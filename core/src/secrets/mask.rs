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

#[cfg(test)]
mod tests {
    #[test]
    fn masks_show_at_most_eight_characters_of_long_values() {
        assert_eq!(super::mask("sk-1234567890abcdef"), "sk-1...cdef");
        assert_eq!(super::mask("short-secret"), "********");
        assert_eq!(super::fingerprint(b"abc"), "sha256:ba7816bf8f01cfea");
    }
}
