//! Sample identities: which occurrence of an exact request an input is, within a job.
//!
//! The response cache keys each answer by the request *and* its sample identity,
//! so N identical inputs are N samples and never collapse into one answer. Counting
//! occurrences needs one entry per distinct request; here that is a u64 key and a
//! u32 count in an open-addressing table (about 16 bytes an entry at 75% load),
//! instead of a Python dict of 16-byte keys (over 100 bytes an entry).
//!
//! Keys are the first 8 bytes of a 128-bit request fingerprint. Two different
//! requests sharing them would share a counter: their sample numbers then skip
//! values, which still gives each input its own key, deterministically for a given
//! input order, so caching and resume stay correct.

/// Occurrence counts keyed by a 64-bit fingerprint.
#[derive(Default)]
pub struct SampleCounter {
    keys: Vec<u64>,
    counts: Vec<u32>,
    len: usize,
}

/// Marks an empty slot; a real key equal to it is stored as `EMPTY_STANDIN`.
const EMPTY: u64 = 0;
const EMPTY_STANDIN: u64 = 1;

impl SampleCounter {
    /// The number of earlier occurrences of `key`, and count this one.
    pub fn next(&mut self, key: u64) -> u32 {
        let key = if key == EMPTY { EMPTY_STANDIN } else { key };
        if (self.len + 1) * 4 > self.keys.len() * 3 {
            self.grow();
        }
        let mask = self.keys.len() - 1;
        let mut i = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) as usize & mask;
        loop {
            let k = self.keys[i];
            if k == key {
                let seen = self.counts[i];
                self.counts[i] = seen.saturating_add(1);
                return seen;
            }
            if k == EMPTY {
                self.keys[i] = key;
                self.counts[i] = 1;
                self.len += 1;
                return 0;
            }
            i = (i + 1) & mask;
        }
    }

    /// Distinct keys seen.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the table.
    pub fn memory_bytes(&self) -> usize {
        self.keys.capacity() * 8 + self.counts.capacity() * 4
    }

    fn grow(&mut self) {
        let size = (self.keys.len() * 2).max(1024);
        let keys = std::mem::replace(&mut self.keys, vec![EMPTY; size]);
        let counts = std::mem::replace(&mut self.counts, vec![0; size]);
        let mask = size - 1;
        for (k, c) in keys.into_iter().zip(counts) {
            if k == EMPTY {
                continue;
            }
            let mut i = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) as usize & mask;
            while self.keys[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.keys[i] = k;
            self.counts[i] = c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn counts_occurrences_like_a_hash_map() {
        let mut counter = SampleCounter::default();
        let mut reference: HashMap<u64, u32> = HashMap::new();
        let mut x: u64 = 0x1234_5678;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 50_000 + 2; // many repeats (0 and 1 are tested apart)
            let want = reference.entry(key).or_insert(0);
            assert_eq!(counter.next(key), *want);
            *want += 1;
        }
        assert_eq!(counter.len(), reference.len());
        assert!(counter.memory_bytes() <= 16 * counter.len() * 2);
    }

    #[test]
    fn zero_and_its_standin_share_a_counter_but_still_count() {
        let mut counter = SampleCounter::default();
        assert_eq!(counter.next(0), 0);
        assert_eq!(counter.next(0), 1);
        assert_eq!(counter.next(1), 2);
    }
}
