//! Exact-repeat fingerprints: xxh3-128 over a canonical byte encoding.
//!
//! The Python side builds the canonical bytes (it knows what a request is);
//! this side only has to be fast and stable across runs and platforms.

use xxhash_rust::xxh3::xxh3_128;

/// Stable 128-bit digest of `data` (seed 0, so values survive restarts).
pub fn fingerprint128(data: &[u8]) -> u128 {
    xxh3_128(data)
}

/// Lowercase, zero-padded hex form of a digest.
pub fn to_hex(digest: u128) -> String {
    format!("{digest:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_distinct() {
        assert_eq!(fingerprint128(b"abc"), fingerprint128(b"abc"));
        assert_ne!(fingerprint128(b"abc"), fingerprint128(b"abd"));
        assert_ne!(fingerprint128(b""), fingerprint128(b"\0"));
    }

    #[test]
    fn hex_is_32_digits() {
        assert_eq!(to_hex(0).len(), 32);
        assert_eq!(to_hex(u128::MAX), "f".repeat(32));
    }

    #[test]
    fn known_value_does_not_drift() {
        // xxh3-128 of the empty input with seed 0 (reference value of the algorithm).
        assert_eq!(
            to_hex(fingerprint128(b"")),
            "99aa06d3014798d86001c324468d497f"
        );
    }
}
