//! Small integer mixers shared by the similarity modules.
//!
//! Everything here is deterministic and platform-independent, because band keys
//! and fingerprints are persisted by `to_bytes` and must mean the same after a
//! restart or on another machine.

/// Odd 64-bit constant (2^64 / golden ratio), the usual Fibonacci-hashing multiplier.
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// MurmurHash3's 64-bit finaliser: a bijection with full avalanche.
#[inline(always)]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h
}

/// SplitMix64 generator: turns one seed into a stream of well-spread constants.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Order-dependent combination of a run of 64-bit values into one well-mixed value.
#[inline(always)]
pub fn combine(seed: u64, values: impl IntoIterator<Item = u64>) -> u64 {
    let mut acc = seed;
    for v in values {
        acc = (acc.rotate_left(27) ^ v).wrapping_mul(GOLDEN);
    }
    fmix64(acc)
}

/// 64x64 -> 128-bit multiply folded to 64 bits (the wyhash mixing step).
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

const W0: u64 = 0xA076_1D64_78BD_642F;
const W1: u64 = 0xE703_7ED1_A0B4_28DB;

#[inline(always)]
fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[inline(always)]
fn read_u32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(a))
}

/// Fast 64-bit hash of a word. Words are short, so up to 16 bytes are read as
/// two (possibly overlapping) little-endian words that together cover every byte
/// and mixed with two wide multiplies (wyhash's short-input scheme); longer
/// words fall back to xxh3.
#[inline]
pub fn hash_word(w: &[u8]) -> u64 {
    let len = w.len();
    let (a, b) = if len > 16 {
        return xxhash_rust::xxh3::xxh3_64(w);
    } else if len >= 8 {
        (read_u64(w), read_u64(&w[len - 8..]))
    } else if len >= 4 {
        (read_u32(w), read_u32(&w[len - 4..]))
    } else if len > 0 {
        (
            (u64::from(w[0]) << 16) | (u64::from(w[len / 2]) << 8) | u64::from(w[len - 1]),
            0,
        )
    } else {
        (0, 0)
    };
    mum(mum(a ^ W0, b ^ W1) ^ len as u64, W1 ^ GOLDEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmix_is_injective_on_a_sample() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u64 {
            assert!(seen.insert(fmix64(i)));
        }
    }

    #[test]
    fn splitmix_is_deterministic_and_varied() {
        let a: Vec<u64> = {
            let mut g = SplitMix64::new(7);
            (0..4).map(|_| g.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut g = SplitMix64::new(7);
            (0..4).map(|_| g.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
        assert_ne!(SplitMix64::new(8).next_u64(), a[0]);
    }

    #[test]
    fn word_hash_separates_lengths_and_contents() {
        let mut seen = std::collections::HashSet::new();
        let words: Vec<Vec<u8>> = (0..20usize)
            .flat_map(|len| {
                (0..200u32)
                    .map(move |i| (0..len).map(|k| (i as usize * 31 + k * 7) as u8).collect())
            })
            .collect();
        let distinct: std::collections::HashSet<&Vec<u8>> = words.iter().collect();
        for w in &distinct {
            assert!(seen.insert(hash_word(w)), "{w:?}");
        }
        assert_ne!(hash_word(b""), hash_word(b"\0"));
        assert_ne!(hash_word(b"ab"), hash_word(b"ba"));
        assert_eq!(hash_word(b"hello"), hash_word(b"hello"));
        // Long words take the xxh3 path.
        assert_ne!(hash_word(&[b'x'; 40]), hash_word(&[b'x'; 41]));
    }

    #[test]
    fn combine_depends_on_order_and_seed() {
        assert_ne!(combine(1, [1, 2]), combine(1, [2, 1]));
        assert_ne!(combine(1, [1, 2]), combine(2, [1, 2]));
        assert_eq!(combine(1, [1, 2]), combine(1, [1, 2]));
        assert_ne!(combine(1, []), combine(1, [0]));
    }
}
