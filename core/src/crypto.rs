//! Hashing and comparison primitives used wherever secrets are checked.

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `sha256:<hex>`, the form artifacts are addressed by.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// A short id for a public key: 8 bytes of its SHA-256, base64url (11 characters).
pub fn kid_of(public_key: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&Sha256::digest(public_key)[..8])
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn digest_has_the_sha256_prefix_and_known_value() {
        assert_eq!(
            super::digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(super::ct_eq(b"same", b"same"));
        assert!(!super::ct_eq(b"same", b"sane"));
        assert!(!super::ct_eq(b"short", b"longer"));
    }
}
