//! 64-bit SimHash and the block layout for Hamming-radius search.
//!
//! SimHash (Charikar) sets bit `i` when more shingle hashes have bit `i` set than
//! not, so texts sharing most shingles land a few bits apart. To find all stored
//! hashes within distance `k`, the 64 bits are cut into `k + 2` blocks: two hashes
//! within distance `k` differ in at most `k` blocks, so they agree exactly on at
//! least two, and one table per pair of blocks (keyed on those bits) finds them
//! (Manku, Jain & Das Sarma's permuted tables).

/// SimHash of a multiset of 64-bit shingle hashes (0 for an empty one).
pub fn simhash(hashes: &[u64]) -> u64 {
    let mut counts = [0u32; 64];
    for &h in hashes {
        for (i, c) in counts.iter_mut().enumerate() {
            *c += ((h >> i) & 1) as u32;
        }
    }
    let n = hashes.len() as u64;
    let mut out = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if 2 * u64::from(c) > n {
            out |= 1 << i;
        }
    }
    out
}

#[inline]
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Masks selecting each pair of the `k + 2` blocks: one search table per mask.
pub fn table_masks(max_distance: u32) -> Vec<u64> {
    let blocks = max_distance as usize + 2;
    let mut block_masks = Vec::with_capacity(blocks);
    let mut start = 0u32;
    for b in 0..blocks {
        // Spread 64 bits as evenly as possible.
        let width = (64 * (b as u32 + 1)) / blocks as u32 - start;
        let mask = if width >= 64 {
            u64::MAX
        } else {
            ((1u64 << width) - 1) << start
        };
        block_masks.push(mask);
        start += width;
    }
    let mut masks = Vec::new();
    for i in 0..blocks {
        for j in i + 1..blocks {
            masks.push(block_masks[i] | block_masks[j]);
        }
    }
    masks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::SplitMix64;

    #[test]
    fn masks_cover_all_bits_and_count() {
        for k in 0..=3 {
            let masks = table_masks(k);
            let b = k as usize + 2;
            assert_eq!(masks.len(), b * (b - 1) / 2);
            assert_eq!(masks.iter().fold(0, |a, m| a | m), u64::MAX);
        }
        assert_eq!(table_masks(0), vec![u64::MAX]);
    }

    #[test]
    fn pairs_within_k_share_a_table_key() {
        let mut rng = SplitMix64::new(3);
        for k in 0..=3u32 {
            let masks = table_masks(k);
            for _ in 0..2000 {
                let a = rng.next_u64();
                let mut b = a;
                for _ in 0..k {
                    b ^= 1 << (rng.next_u64() % 64);
                }
                assert!(hamming(a, b) <= k);
                assert!(masks.iter().any(|m| a & m == b & m));
            }
        }
    }

    #[test]
    fn simhash_is_majority_vote() {
        assert_eq!(simhash(&[]), 0);
        assert_eq!(simhash(&[0b1011]), 0b1011);
        assert_eq!(simhash(&[0b1, 0b1, 0b10]), 0b1);
        let mut rng = SplitMix64::new(9);
        let base: Vec<u64> = (0..200).map(|_| rng.next_u64()).collect();
        let mut near = base.clone();
        near[0] = rng.next_u64();
        let far: Vec<u64> = (0..200).map(|_| rng.next_u64()).collect();
        assert!(hamming(simhash(&base), simhash(&near)) < hamming(simhash(&base), simhash(&far)));
    }
}
