//! Compact multimap from 32-bit keys to 32-bit values: bucketed linear probing.
//!
//! Keys are already uniform hashes, so the home bucket is `key * buckets >> 32`
//! (no re-hashing). A bucket is one 64-byte cache line of eight `u64` entries
//! plus one metadata byte: the number of entries in use (kept packed at the
//! front) and an overflow bit, set once an insert had to pass the bucket because
//! it was full. An insert appends to the first bucket with room from the home
//! bucket on; a lookup reads the next bucket only when the overflow bit says so.
//! At the 92% maximum load most lookups touch one cache line and inserts never
//! shift entries. Memory is `8 / load` bytes per entry (plus 1/8 byte), the load
//! staying between 0.73 and 0.92.

const BUCKET: usize = 8;
const COUNT_MASK: u8 = 0x0F;
const OVERFLOW: u8 = 0x80;
/// Highest load before growing, as a fraction `num / den`.
const MAX_LOAD_NUM: usize = 23;
const MAX_LOAD_DEN: usize = 25;
const MIN_BUCKETS: usize = 2;

#[derive(Clone, Debug)]
pub struct KeyTable {
    /// `(key << 32) | value`, packed at the front of each bucket.
    slots: Vec<u64>,
    /// Per bucket: entries in use (low bits) and the overflow bit.
    meta: Vec<u8>,
    buckets: usize,
    len: usize,
}

impl Default for KeyTable {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(always)]
fn pack(key: u32, value: u32) -> u64 {
    (u64::from(key) << 32) | u64::from(value)
}

#[inline(always)]
fn key_of(e: u64) -> u32 {
    (e >> 32) as u32
}

#[inline(always)]
fn value_of(e: u64) -> u32 {
    e as u32
}

impl KeyTable {
    /// Largest value that can be stored (kept below `u32::MAX` so callers can use
    /// that as a marker).
    pub const MAX_VALUE: u32 = u32::MAX - 1;

    pub fn new() -> Self {
        Self::with_buckets(MIN_BUCKETS)
    }

    fn with_buckets(buckets: usize) -> Self {
        let buckets = buckets.max(MIN_BUCKETS);
        Self {
            slots: vec![0; buckets * BUCKET],
            meta: vec![0; buckets],
            buckets,
            len: 0,
        }
    }

    /// A table that holds `n` entries without growing.
    pub fn with_capacity(n: usize) -> Self {
        Self::with_buckets((n * MAX_LOAD_DEN).div_ceil(MAX_LOAD_NUM * BUCKET))
    }

    /// Bytes held by the table.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u64>() + self.meta.capacity()
    }

    #[inline(always)]
    fn home(&self, key: u32) -> usize {
        ((u64::from(key) * self.buckets as u64) >> 32) as usize
    }

    #[inline(always)]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets {
            0
        } else {
            b + 1
        }
    }

    /// Entries in use in bucket `b`, and whether it overflowed.
    #[inline(always)]
    fn bucket(&self, b: usize) -> (&[u64], bool) {
        let m = self.meta.get(b).copied().unwrap_or(0);
        let n = usize::from(m & COUNT_MASK).min(BUCKET);
        (
            self.slots.get(b * BUCKET..b * BUCKET + n).unwrap_or(&[]),
            m & OVERFLOW != 0,
        )
    }

    /// Hint the CPU to load the home bucket of `key`.
    #[inline(always)]
    pub fn prefetch(&self, key: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(p) = self.slots.get(self.home(key) * BUCKET) {
                // SAFETY: prefetching is a hint with no architectural effect and `p`
                // points into the live slot array.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        (p as *const u64).cast::<i8>(),
                    )
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// Call `f` with every value stored under `key` (in no particular order).
    #[inline]
    pub fn get(&self, key: u32, mut f: impl FnMut(u32)) {
        let mut b = self.home(key);
        for _ in 0..self.buckets {
            let (entries, overflowed) = self.bucket(b);
            for &e in entries {
                if key_of(e) == key {
                    f(value_of(e));
                }
            }
            if !overflowed {
                return;
            }
            b = self.next(b);
        }
    }

    /// Add `(key, value)`; `value` must be at most `MAX_VALUE` (callers enforce this).
    pub fn insert(&mut self, key: u32, value: u32) {
        if (self.len + 1) * MAX_LOAD_DEN > self.buckets * BUCKET * MAX_LOAD_NUM {
            self.grow(self.buckets + self.buckets / 4 + 1);
        }
        self.place(pack(key, value));
        self.len += 1;
    }

    /// Make room for `additional` more entries with at most one rebuild.
    pub fn reserve(&mut self, additional: usize) {
        let need = self.len + additional;
        if need * MAX_LOAD_DEN > self.buckets * BUCKET * MAX_LOAD_NUM {
            let by_need = (need * MAX_LOAD_DEN).div_ceil(MAX_LOAD_NUM * BUCKET);
            self.grow(by_need.max(self.buckets + self.buckets / 4 + 1));
        }
    }

    #[inline]
    fn place(&mut self, e: u64) {
        let mut b = self.home(key_of(e));
        // The load limit guarantees a bucket with room exists, so this always places `e`.
        for _ in 0..self.buckets {
            let m = self.meta[b];
            let n = usize::from(m & COUNT_MASK);
            if n < BUCKET {
                self.slots[b * BUCKET + n] = e;
                self.meta[b] = m + 1;
                return;
            }
            self.meta[b] = m | OVERFLOW;
            b = self.next(b);
        }
    }

    /// Remove one `(key, value)` entry; returns whether it was present.
    pub fn remove(&mut self, key: u32, value: u32) -> bool {
        let e = pack(key, value);
        let mut b = self.home(key);
        for _ in 0..self.buckets {
            let m = self.meta[b];
            let n = usize::from(m & COUNT_MASK);
            let base = b * BUCKET;
            if let Some(i) = self.slots[base..base + n].iter().position(|&s| s == e) {
                // Keep the bucket packed: the last entry fills the hole.
                self.slots[base + i] = self.slots[base + n - 1];
                self.meta[b] = m - 1;
                self.len -= 1;
                return true;
            }
            if m & OVERFLOW == 0 {
                return false;
            }
            b = self.next(b);
        }
        false
    }

    /// All `(key, value)` pairs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.buckets)
            .flat_map(move |b| self.bucket(b).0.iter().map(|&e| (key_of(e), value_of(e))))
    }

    fn grow(&mut self, buckets: usize) {
        let old = std::mem::replace(self, Self::with_buckets(buckets));
        // Home buckets are monotone in the key, so walking the old table in order
        // fills the new one almost sequentially.
        for b in 0..old.buckets {
            for &e in old.bucket(b).0 {
                self.place(e);
            }
        }
        self.len = old.len;
    }

    /// Build from pairs (e.g. saved data); `None` if a value is out of range.
    pub fn from_pairs(pairs: &[(u32, u32)]) -> Option<Self> {
        if pairs.iter().any(|&(_, v)| v > Self::MAX_VALUE) {
            return None;
        }
        let mut t = Self::with_capacity(pairs.len());
        for &(k, v) in pairs {
            t.insert(k, v);
        }
        Some(t)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::SplitMix64;
    use std::collections::BTreeSet;

    fn values(t: &KeyTable, key: u32) -> Vec<u32> {
        let mut v = Vec::new();
        t.get(key, |x| v.push(x));
        v.sort_unstable();
        v
    }

    #[test]
    fn insert_get_remove_against_model() {
        let mut t = KeyTable::new();
        let mut model = BTreeSet::new();
        let mut rng = SplitMix64::new(5);
        for step in 0..20_000u32 {
            let r = rng.next_u64();
            // Few distinct keys in a narrow range force long probe runs and multi-values.
            let key = if r.is_multiple_of(3) {
                (r >> 40) as u32 % 50
            } else {
                (r >> 32) as u32
            };
            let value = (r as u32) % 1000;
            if r.is_multiple_of(7) && !model.is_empty() {
                let &(k, v) = model.iter().nth((r >> 8) as usize % model.len()).unwrap();
                assert!(t.remove(k, v), "step {step}");
                model.remove(&(k, v));
                assert!(!t.remove(k, v));
            } else if model.insert((key, value)) {
                t.insert(key, value);
            }
            assert_eq!(t.len(), model.len());
        }
        let probe: Vec<u32> = (0..50)
            .chain(model.iter().map(|&(k, _)| k).take(500))
            .collect();
        for key in probe {
            let expect: Vec<u32> = model
                .range((key, 0)..=(key, u32::MAX))
                .map(|&(_, v)| v)
                .collect();
            assert_eq!(values(&t, key), expect);
        }
        let mut all: Vec<(u32, u32)> = t.iter().collect();
        all.sort_unstable();
        assert_eq!(all, model.iter().copied().collect::<Vec<_>>());
        let rebuilt = KeyTable::from_pairs(&all).unwrap();
        let mut again: Vec<(u32, u32)> = rebuilt.iter().collect();
        again.sort_unstable();
        assert_eq!(again, all);
    }

    #[test]
    fn extreme_keys_and_values() {
        let mut t = KeyTable::new();
        for v in 0..100 {
            t.insert(u32::MAX, v);
            t.insert(0, KeyTable::MAX_VALUE - v);
        }
        assert_eq!(values(&t, u32::MAX).len(), 100);
        assert_eq!(values(&t, 0).len(), 100);
        assert!(values(&t, 1).is_empty());
        for v in 0..100 {
            assert!(t.remove(u32::MAX, v));
        }
        assert!(values(&t, u32::MAX).is_empty());
        assert_eq!(t.len(), 100);
    }

    #[test]
    fn load_stays_bounded() {
        let mut t = KeyTable::new();
        let mut rng = SplitMix64::new(1);
        for i in 0..100_000 {
            t.insert(rng.next_u64() as u32, i);
        }
        let bytes_per_entry = t.memory_bytes() as f64 / t.len() as f64;
        assert!(bytes_per_entry < 8.2 / 0.73, "{bytes_per_entry}");
        let sized = KeyTable::with_capacity(100_000);
        assert!(sized.memory_bytes() as f64 / 100_000.0 < 8.2 / 0.91);
    }

    #[test]
    fn from_pairs_rejects_bad_values() {
        assert!(KeyTable::from_pairs(&[(1, u32::MAX)]).is_none());
        assert!(KeyTable::from_pairs(&[]).is_some());
    }

    #[test]
    fn lookups_terminate_when_every_bucket_overflowed() {
        // Fill, then empty a table: overflow bits stay set everywhere.
        let mut t = KeyTable::new();
        let n = 14;
        for v in 0..n {
            t.insert(7, v);
        }
        for v in 0..n {
            assert!(t.remove(7, v));
        }
        assert!(values(&t, 7).is_empty());
        assert!(!t.remove(7, 0));
    }
}
