//! Exact-duplicate store: xxh3-128 of the normalised text, so texts that differ
//! only in case, Unicode form or spacing count as the same.

use crate::config::{Config, Method};
use crate::normalize::normalize_into;
use crate::serial::{ReadResult, Reader, Writer};
use crate::shingle::Scratch;
use crate::store::{reserve_slack, Sketcher, Store};
use crate::table::KeyTable;
use xxhash_rust::xxh3::xxh3_128;

pub struct ExactSketcher;

impl Sketcher for ExactSketcher {
    type Sketch = u128;

    fn sketch(&self, text: &str, scratch: &mut Scratch) -> u128 {
        normalize_into(text, &mut scratch.norm);
        xxh3_128(scratch.norm.as_bytes())
    }
}

pub struct ExactStore {
    table: KeyTable,
    fps: Vec<u128>,
}

#[inline]
fn key(fp: u128) -> u32 {
    (fp >> 96) as u32
}

impl Store for ExactStore {
    type Sketcher = ExactSketcher;
    const METHOD: Method = Method::Exact;

    fn new(_cfg: &Config) -> (ExactSketcher, Self) {
        (
            ExactSketcher,
            Self {
                table: KeyTable::new(),
                fps: Vec::new(),
            },
        )
    }

    fn tables(&self) -> &[KeyTable] {
        std::slice::from_ref(&self.table)
    }

    fn tables_mut(&mut self) -> &mut [KeyTable] {
        std::slice::from_mut(&mut self.table)
    }

    #[inline]
    fn key(&self, &fp: &u128, _table: usize) -> u32 {
        key(fp)
    }

    fn verify_stored(&self, fp: &u128, slot: u32, _collisions: usize) -> Option<f64> {
        (self.fps.get(slot as usize) == Some(fp)).then_some(1.0)
    }

    fn verify_pair(&self, a: &u128, b: &u128, _collisions: usize) -> Option<f64> {
        (a == b).then_some(1.0)
    }

    fn push_payload(&mut self, &fp: &u128) {
        reserve_slack(&mut self.fps, 1);
        self.fps.push(fp);
    }

    fn remove(&mut self, slot: u32) {
        if let Some(&fp) = self.fps.get(slot as usize) {
            self.table.remove(key(fp), slot);
        }
    }

    fn write(&self, w: &mut Writer, _live: impl Fn(u32) -> bool) {
        let flat: Vec<u64> = self
            .fps
            .iter()
            .flat_map(|&f| [(f >> 64) as u64, f as u64])
            .collect();
        w.u64s(&flat);
    }

    fn read(
        cfg: &Config,
        r: &mut Reader,
        slots: usize,
        live: impl Fn(u32) -> bool,
    ) -> ReadResult<(ExactSketcher, Self)> {
        let (sketcher, mut store) = Self::new(cfg);
        let flat = r.u64s()?;
        if flat.len() != slots * 2 {
            return Err("corrupt fingerprint data".into());
        }
        store.fps = flat
            .chunks_exact(2)
            .map(|c| (u128::from(c[0]) << 64) | u128::from(c[1]))
            .collect();
        for (slot, &fp) in store.fps.iter().enumerate() {
            if live(slot as u32) {
                store.table.insert(key(fp), slot as u32);
            }
        }
        Ok((sketcher, store))
    }

    fn payload_bytes(&self) -> usize {
        self.fps.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Verify;
    use crate::index::Index;
    use crate::shingle::Shingling;

    fn cfg() -> Config {
        Config::new(
            Method::Exact,
            1.0,
            Shingling::Words(3),
            128,
            None,
            None,
            Verify::Exact,
            0,
            0,
        )
        .unwrap()
    }

    #[test]
    fn normalised_equal_texts_are_duplicates() {
        let mut idx: Index<ExactStore> = Index::new(cfg());
        assert_eq!(idx.insert_if_new("Hello  World").unwrap(), None);
        assert_eq!(idx.insert_if_new("hello world").unwrap(), Some((0, 1.0)));
        assert_eq!(idx.insert_if_new("hello world!").unwrap(), None);
        assert!(idx.remove(0));
        assert_eq!(idx.insert_if_new("HELLO WORLD").unwrap(), None);
        let back: Index<ExactStore> = Index::from_bytes(&idx.to_bytes()).unwrap();
        assert_eq!(back.query("hello world"), vec![(3, 1.0)]);
        assert_eq!(back.len(), 2);
    }
}
