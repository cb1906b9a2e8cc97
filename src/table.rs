//! Compact multimap from 32-bit keys to 32-bit values: an ordered linear-probing
//! hash table, i.e. a sorted array with gaps.
//!
//! Keys are already uniform hashes, so the home slot is `key * cap >> 32` (no
//! re-hashing) and that map is monotone: the table stays sorted by `(key, value)`,
//! a lookup stops as soon as it passes the key (misses cost what hits cost), and
//! growing is one linear pass. Each entry is one `u64`, so memory is
//! `8 / load` bytes per entry; the load stays between 0.72 and 0.9.

/// Highest load before growing, as a fraction `num / den`.
const MAX_LOAD_NUM: usize = 9;
const MAX_LOAD_DEN: usize = 10;
const MIN_CAP: usize = 16;

#[derive(Clone, Debug, Default)]
pub struct KeyTable {
    /// `0` is empty; otherwise `(key << 32) | (value + 1)`.
    slots: Vec<u64>,
    cap: usize,
    len: usize,
}

#[inline(always)]
fn pack(key: u32, value: u32) -> u64 {
    (u64::from(key) << 32) | (u64::from(value) + 1)
}

#[inline(always)]
fn key_of(e: u64) -> u32 {
    (e >> 32) as u32
}

#[inline(always)]
fn value_of(e: u64) -> u32 {
    (e as u32).wrapping_sub(1)
}

impl KeyTable {
    /// Largest value that can be stored (one code is reserved for "empty").
    pub const MAX_VALUE: u32 = u32::MAX - 1;

    pub fn new() -> Self {
        Self::with_cap(MIN_CAP)
    }

    fn with_cap(cap: usize) -> Self {
        let cap = cap.max(MIN_CAP);
        let mut slots = Vec::with_capacity(cap + cap / 64 + 8);
        slots.resize(cap, 0);
        Self { slots, cap, len: 0 }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the slot array.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u64>()
    }

    #[inline(always)]
    fn home(&self, key: u32) -> usize {
        ((u64::from(key) * self.cap as u64) >> 32) as usize
    }

    /// Hint the CPU to load the cache line where `key` would live.
    #[inline(always)]
    pub fn prefetch(&self, key: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            let i = self.home(key).min(self.slots.len().saturating_sub(1));
            if let Some(p) = self.slots.get(i) {
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

    /// Call `f` with every value stored under `key`, in increasing order.
    #[inline]
    pub fn get(&self, key: u32, mut f: impl FnMut(u32)) {
        let mut i = self.home(key);
        while let Some(&e) = self.slots.get(i) {
            if e == 0 {
                break;
            }
            let k = key_of(e);
            if k > key {
                break;
            }
            if k == key {
                f(value_of(e));
            }
            i += 1;
        }
    }

    fn push_slot(&mut self, e: u64) {
        if self.slots.len() == self.slots.capacity() {
            self.slots.reserve_exact(64);
        }
        self.slots.push(e);
    }

    /// Insert `(key, value)`; returns false if that exact pair was already present.
    /// `value` must be at most `MAX_VALUE` (callers enforce this).
    pub fn insert(&mut self, key: u32, value: u32) -> bool {
        if (self.len + 1) * MAX_LOAD_DEN > self.cap * MAX_LOAD_NUM {
            self.grow(self.cap + self.cap / 4);
        }
        let e = pack(key, value);
        let mut i = self.home(key);
        while i < self.slots.len() && self.slots[i] != 0 && self.slots[i] < e {
            i += 1;
        }
        if i == self.slots.len() {
            self.push_slot(e);
        } else if self.slots[i] == 0 {
            self.slots[i] = e;
        } else if self.slots[i] == e {
            return false;
        } else {
            let mut j = i;
            while j < self.slots.len() && self.slots[j] != 0 {
                j += 1;
            }
            if j == self.slots.len() {
                self.push_slot(0);
            }
            self.slots.copy_within(i..j, i + 1);
            self.slots[i] = e;
        }
        self.len += 1;
        true
    }

    /// Remove `(key, value)`; returns whether it was present.
    pub fn remove(&mut self, key: u32, value: u32) -> bool {
        let e = pack(key, value);
        let mut i = self.home(key);
        loop {
            match self.slots.get(i) {
                Some(&s) if s != 0 && s < e => i += 1,
                Some(&s) if s == e => break,
                _ => return false,
            }
        }
        // Backward-shift: pull displaced successors one slot left.
        let mut j = i;
        while let Some(&next) = self.slots.get(j + 1) {
            if next == 0 || self.home(key_of(next)) > j {
                break;
            }
            self.slots[j] = next;
            j += 1;
        }
        self.slots[j] = 0;
        self.len -= 1;
        true
    }

    /// All `(key, value)` pairs in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.slots
            .iter()
            .filter(|&&e| e != 0)
            .map(|&e| (key_of(e), value_of(e)))
    }

    fn place_sorted(&mut self, entries: impl Iterator<Item = u64>) {
        let mut next = 0usize;
        for e in entries {
            let i = self.home(key_of(e)).max(next);
            while self.slots.len() <= i {
                self.push_slot(0);
            }
            self.slots[i] = e;
            next = i + 1;
            self.len += 1;
        }
    }

    fn grow(&mut self, new_cap: usize) {
        let old = std::mem::take(&mut self.slots);
        *self = Self::with_cap(new_cap);
        self.place_sorted(old.into_iter().filter(|&e| e != 0));
    }

    /// Build from pairs that are strictly increasing by `(key, value)`; returns
    /// `None` if they are not (e.g. corrupt saved data) or a value is out of range.
    pub fn from_sorted(pairs: &[(u32, u32)]) -> Option<Self> {
        let mut prev: Option<u64> = None;
        for &(k, v) in pairs {
            if v > Self::MAX_VALUE {
                return None;
            }
            let e = pack(k, v);
            if prev.is_some_and(|p| p >= e) {
                return None;
            }
            prev = Some(e);
        }
        let mut t = Self::with_cap(pairs.len() * 10 / 8);
        t.place_sorted(pairs.iter().map(|&(k, v)| pack(k, v)));
        Some(t)
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
        v
    }

    #[test]
    fn insert_get_remove_against_model() {
        let mut t = KeyTable::new();
        let mut model = BTreeSet::new();
        let mut rng = SplitMix64::new(5);
        for step in 0..20_000u32 {
            let r = rng.next_u64();
            // Few distinct keys in a narrow range force long runs and multi-values.
            let key = if r.is_multiple_of(3) {
                (r >> 40) as u32 % 50
            } else {
                (r >> 32) as u32
            };
            let value = (r as u32) % 1000;
            if r.is_multiple_of(7) && !model.is_empty() {
                let &(k, v) = model.iter().nth((r >> 8) as usize % model.len()).unwrap();
                assert!(t.remove(k, v));
                model.remove(&(k, v));
                assert!(!t.remove(k, v));
            } else {
                assert_eq!(
                    t.insert(key, value),
                    model.insert((key, value)),
                    "step {step}"
                );
            }
            assert_eq!(t.len(), model.len());
        }
        for key in (0..50).chain(model.iter().map(|&(k, _)| k).take(500).collect::<Vec<_>>()) {
            let expect: Vec<u32> = model
                .range((key, 0)..=(key, u32::MAX))
                .map(|&(_, v)| v)
                .collect();
            assert_eq!(values(&t, key), expect);
        }
        let all: Vec<(u32, u32)> = t.iter().collect();
        assert_eq!(all, model.iter().copied().collect::<Vec<_>>());
        let rebuilt = KeyTable::from_sorted(&all).unwrap();
        assert_eq!(rebuilt.iter().collect::<Vec<_>>(), all);
        assert_eq!(values(&rebuilt, all[0].0), values(&t, all[0].0));
    }

    #[test]
    fn extreme_keys_and_values() {
        let mut t = KeyTable::new();
        for v in 0..100 {
            assert!(t.insert(u32::MAX, v));
            assert!(t.insert(0, KeyTable::MAX_VALUE - v));
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
        assert!(bytes_per_entry < 8.0 / 0.7, "{bytes_per_entry}");
    }

    #[test]
    fn from_sorted_rejects_bad_input() {
        assert!(KeyTable::from_sorted(&[(2, 1), (1, 1)]).is_none());
        assert!(KeyTable::from_sorted(&[(1, 1), (1, 1)]).is_none());
        assert!(KeyTable::from_sorted(&[(1, u32::MAX)]).is_none());
        assert!(KeyTable::from_sorted(&[]).is_some());
    }
}
