//! SimHash store: 64-bit SimHashes searched within Hamming distance `k <= 3`
//! through `C(k + 2, 2)` tables keyed on pairs of bit blocks.
//!
//! Cheaper than MinHash (one 64-lane counter pass per shingle instead of one min
//! per permutation) but it measures a cosine-like similarity, so a Hamming radius
//! rather than a Jaccard threshold decides.

use crate::config::{Config, Method};
use crate::hashing::fmix64;
use crate::serial::{ReadResult, Reader, Writer};
use crate::shingle::{Scratch, Shingling};
use crate::simhash::{hamming, simhash, table_masks};
use crate::store::{reserve_slack, Sketcher, Store};
use crate::table::KeyTable;

pub struct SimHashSketcher {
    shingling: Shingling,
}

impl Sketcher for SimHashSketcher {
    type Sketch = u64;

    fn sketch(&self, text: &str, scratch: &mut Scratch) -> u64 {
        self.shingling.hash_text(text, scratch);
        simhash(&scratch.hashes)
    }
}

pub struct SimHashStore {
    max_distance: u32,
    seed: u64,
    masks: Vec<u64>,
    tables: Vec<KeyTable>,
    hashes: Vec<u64>,
}

impl SimHashStore {
    #[inline]
    fn table_key(&self, table: usize, h: u64) -> u32 {
        let mask = self.masks.get(table).copied().unwrap_or(u64::MAX);
        (fmix64((h & mask) ^ self.seed ^ table as u64) >> 32) as u32
    }

    fn check(&self, a: u64, b: u64) -> Option<f64> {
        let d = hamming(a, b);
        (d <= self.max_distance).then(|| 1.0 - f64::from(d) / 64.0)
    }
}

impl Store for SimHashStore {
    type Sketcher = SimHashSketcher;
    const METHOD: Method = Method::SimHash;

    fn new(cfg: &Config) -> (SimHashSketcher, Self) {
        let masks = table_masks(cfg.max_distance);
        let store = Self {
            max_distance: cfg.max_distance,
            seed: fmix64(cfg.seed),
            tables: masks.iter().map(|_| KeyTable::new()).collect(),
            masks,
            hashes: Vec::new(),
        };
        (
            SimHashSketcher {
                shingling: cfg.shingling,
            },
            store,
        )
    }

    fn tables(&self) -> &[KeyTable] {
        &self.tables
    }

    fn tables_mut(&mut self) -> &mut [KeyTable] {
        &mut self.tables
    }

    #[inline]
    fn key(&self, &h: &u64, table: usize) -> u32 {
        self.table_key(table, h)
    }

    fn verify_stored(&self, &h: &u64, slot: u32, _collisions: usize) -> Option<f64> {
        self.hashes
            .get(slot as usize)
            .and_then(|&stored| self.check(stored, h))
    }

    fn verify_pair(&self, &a: &u64, &b: &u64, _collisions: usize) -> Option<f64> {
        self.check(a, b)
    }

    fn push_payload(&mut self, &h: &u64) {
        reserve_slack(&mut self.hashes, 1);
        self.hashes.push(h);
    }

    fn remove(&mut self, slot: u32) {
        if let Some(&h) = self.hashes.get(slot as usize) {
            for i in 0..self.tables.len() {
                let k = self.table_key(i, h);
                self.tables[i].remove(k, slot);
            }
        }
    }

    fn write(&self, w: &mut Writer, _live: impl Fn(u32) -> bool) {
        // Tables hold only live slots (removal is physical), so the hashes suffice.
        w.u64s(&self.hashes);
    }

    fn read(
        cfg: &Config,
        r: &mut Reader,
        slots: usize,
        live: impl Fn(u32) -> bool,
    ) -> ReadResult<(SimHashSketcher, Self)> {
        let (sketcher, mut store) = Self::new(cfg);
        let hashes = r.u64s()?;
        if hashes.len() != slots {
            return Err("corrupt simhash data".into());
        }
        for (slot, &h) in hashes.iter().enumerate() {
            if live(slot as u32) {
                for i in 0..store.tables.len() {
                    let k = store.table_key(i, h);
                    store.tables[i].insert(k, slot as u32);
                }
            }
        }
        store.hashes = hashes;
        Ok((sketcher, store))
    }

    fn payload_bytes(&self) -> usize {
        self.hashes.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Verify;
    use crate::index::Index;

    fn cfg(k: u32) -> Config {
        Config::new(
            Method::SimHash,
            0.8,
            Shingling::Words(1),
            128,
            None,
            None,
            Verify::Exact,
            k,
            1,
        )
        .unwrap()
    }

    #[test]
    fn finds_exactly_the_hashes_within_radius() {
        let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
        let base = words.join(" ");
        for k in 0..=3 {
            let mut idx: Index<SimHashStore> = Index::new(cfg(k));
            idx.insert(&base).unwrap();
            assert_eq!(idx.query(&base), vec![(0, 1.0)]);
            let sketcher = SimHashSketcher {
                shingling: Shingling::Words(1),
            };
            let mut scratch = Scratch::default();
            let h0 = sketcher.sketch(&base, &mut scratch);
            let mut found = 0;
            for i in 0..60 {
                for j in 0..4 {
                    let mut v = words.clone();
                    v[i] = format!("x{j}");
                    if j % 2 == 1 {
                        v[(i + 7) % 60] = format!("y{j}");
                    }
                    let text = v.join(" ");
                    let d = hamming(h0, sketcher.sketch(&text, &mut scratch));
                    let hits = idx.query(&text);
                    assert_eq!(!hits.is_empty(), d <= k, "k={k} d={d}");
                    found += hits.len();
                }
            }
            assert!(k < 3 || found > 0);
        }
    }

    #[test]
    fn remove_and_round_trip() {
        let mut idx: Index<SimHashStore> = Index::new(cfg(2));
        idx.insert("alpha beta gamma").unwrap();
        idx.insert("delta epsilon zeta").unwrap();
        assert!(idx.remove(0));
        assert!(idx.query("alpha beta gamma").is_empty());
        let back: Index<SimHashStore> = Index::from_bytes(&idx.to_bytes()).unwrap();
        assert!(back.query("alpha beta gamma").is_empty());
        assert_eq!(back.query("delta epsilon zeta"), vec![(1, 1.0)]);
        assert_eq!(back.len(), 1);
    }
}
