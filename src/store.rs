//! What the three methods have in common: a sketch per text, one 32-bit key per
//! table per sketch, tables mapping keys to slots, and a per-slot payload used to
//! verify candidates. The search and insert algorithms live here once.
//!
//! Batch work is organised per table, in key order: keys of a chunk are sorted,
//! so lookups and inserts sweep each table (home buckets are monotone in the key)
//! instead of jumping around it, and tables are processed in parallel.

use crate::config::{Config, Method};
use crate::serial::{ReadResult, Reader, Writer};
use crate::shingle::Scratch;
use crate::table::KeyTable;
use rayon::prelude::*;

/// Pure text -> sketch step; shared by reference across rayon workers.
pub trait Sketcher: Sync {
    type Sketch: Send + Sync;
    fn sketch(&self, text: &str, scratch: &mut Scratch) -> Self::Sketch;
}

pub type SketchOf<S> = <<S as Store>::Sketcher as Sketcher>::Sketch;

/// The mutable, searchable part of an index.
pub trait Store: Send + Sync + Sized {
    type Sketcher: Sketcher;
    const METHOD: Method;

    fn new(cfg: &Config) -> (Self::Sketcher, Self);

    fn tables(&self) -> &[KeyTable];

    fn tables_mut(&mut self) -> &mut [KeyTable];

    /// Key of `sketch` in table `table`.
    fn key(&self, sketch: &SketchOf<Self>, table: usize) -> u32;

    /// Similarity of `sketch` to the text stored in `slot`, if it passes
    /// verification; `collisions` is the number of tables where their keys met.
    fn verify_stored(&self, sketch: &SketchOf<Self>, slot: u32, collisions: usize) -> Option<f64>;

    /// Same check between two sketches (texts of one batch chunk).
    fn verify_pair(&self, a: &SketchOf<Self>, b: &SketchOf<Self>, collisions: usize)
        -> Option<f64>;

    /// Append the payload of the next slot.
    fn push_payload(&mut self, sketch: &SketchOf<Self>);

    /// Forget `slot` as far as the store can (it is also masked out as not live).
    fn remove(&mut self, slot: u32);

    fn write(&self, w: &mut Writer, live: impl Fn(u32) -> bool);

    fn read(
        cfg: &Config,
        r: &mut Reader,
        slots: usize,
        live: impl Fn(u32) -> bool,
    ) -> ReadResult<(Self::Sketcher, Self)>;

    /// Bytes held by the payload (tables are counted by `memory_bytes`).
    fn payload_bytes(&self) -> usize;
}

/// Bytes held by a store: tables plus payload.
pub fn memory_bytes<S: Store>(store: &S) -> usize {
    store
        .tables()
        .iter()
        .map(KeyTable::memory_bytes)
        .sum::<usize>()
        + store.payload_bytes()
}

/// Grow `v` so `additional` more items fit, plus 1/32 of its length: spare
/// capacity (and reported memory) stays within ~3%, and growth stays geometric
/// (amortised O(1) pushes; large buffers are grown by `mremap`, not copied).
pub fn reserve_slack<T>(v: &mut Vec<T>, additional: usize) {
    if v.capacity() - v.len() < additional {
        v.reserve_exact(additional.max(v.len() / 32).max(16));
    }
}

/// Call `found(slot, similarity)` for every live stored text that passes
/// verification against `sketch`.
pub fn find<S: Store>(
    store: &S,
    sketch: &SketchOf<S>,
    live: impl Fn(u32) -> bool,
    mut found: impl FnMut(u32, f64),
) {
    let tables = store.tables();
    for (t, table) in tables.iter().enumerate() {
        table.prefetch(store.key(sketch, t));
    }
    let mut cands: Vec<u32> = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        table.get(store.key(sketch, t), |slot| {
            if live(slot) {
                cands.push(slot)
            }
        });
    }
    cands.sort_unstable();
    for run in cands.chunk_by(|a, b| a == b) {
        if let Some(sim) = store.verify_stored(sketch, run[0], run.len()) {
            found(run[0], sim);
        }
    }
}

/// Store one sketch under `slot` (the next free slot).
pub fn insert<S: Store>(store: &mut S, slot: u32, sketch: &SketchOf<S>) {
    let keys: Vec<u32> = (0..store.tables().len())
        .map(|t| store.key(sketch, t))
        .collect();
    for (table, k) in store.tables_mut().iter_mut().zip(keys) {
        table.insert(k, slot);
    }
    store.push_payload(sketch);
}

/// Sort `(key, index)` pairs whose keys are uniform hashes: one counting pass on
/// the top key bits (expected ~1 pair per bucket), then each bucket is finished
/// by insertion sort, or by a comparison sort if it is unexpectedly large, so the
/// worst case stays O(n log n).
pub fn sort_hashed_pairs(v: &mut Vec<(u32, u32)>) {
    let n = v.len();
    if n < 64 {
        v.sort_unstable();
        return;
    }
    let bits = (usize::BITS - n.leading_zeros()).clamp(4, 16);
    let shift = 32 - bits;
    let mut starts = vec![0u32; (1usize << bits) + 1];
    for &(k, _) in v.iter() {
        starts[(k >> shift) as usize + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    let mut out = vec![(0u32, 0u32); n];
    let mut next = starts.clone();
    for &pair in v.iter() {
        let b = (pair.0 >> shift) as usize;
        out[next[b] as usize] = pair;
        next[b] += 1;
    }
    for w in starts.windows(2) {
        let bucket = &mut out[w[0] as usize..w[1] as usize];
        if bucket.len() <= 16 {
            for i in 1..bucket.len() {
                let mut j = i;
                while j > 0 && bucket[j - 1] > bucket[j] {
                    bucket.swap(j - 1, j);
                    j -= 1;
                }
            }
        } else {
            bucket.sort_unstable();
        }
    }
    *v = out;
}

/// Per table, the `(key, chunk index)` of every sketch, sorted; tables in parallel.
pub fn chunk_keys<S: Store>(store: &S, sketches: &[&SketchOf<S>]) -> Vec<Vec<(u32, u32)>> {
    let tables = store.tables().len();
    if tables == 0 {
        return Vec::new();
    }
    // Gather every key once into a row-per-text matrix, so each table's pass below
    // reads memory in order instead of chasing one pointer per text.
    let mut matrix = vec![0u32; sketches.len() * tables];
    matrix
        .par_chunks_mut(tables)
        .zip(sketches)
        .with_min_len(256)
        .for_each(|(row, s)| {
            for (t, k) in row.iter_mut().enumerate() {
                *k = store.key(s, t);
            }
        });
    (0..tables)
        .into_par_iter()
        .map(|t| {
            let mut keyed: Vec<(u32, u32)> = matrix
                .iter()
                .skip(t)
                .step_by(tables)
                .enumerate()
                .map(|(i, &k)| (k, i as u32))
                .collect();
            sort_hashed_pairs(&mut keyed);
            keyed
        })
        .collect()
}

/// Insert the chunk texts that `slot_of` gives a slot (in key order, one table per
/// thread), then append their payloads in chunk order.
pub fn insert_keyed<S: Store>(
    store: &mut S,
    keyed: &[Vec<(u32, u32)>],
    slot_of: impl Fn(u32) -> Option<u32> + Sync,
    kept: &[&SketchOf<S>],
) {
    store
        .tables_mut()
        .par_iter_mut()
        .zip(keyed)
        .for_each(|(table, keyed)| {
            table.reserve(kept.len());
            for (at, &(k, i)) in keyed.iter().enumerate() {
                if let Some(&(ahead, _)) = keyed.get(at + PREFETCH_AHEAD) {
                    table.prefetch(ahead);
                }
                if let Some(slot) = slot_of(i) {
                    table.insert(k, slot);
                }
            }
        });
    for s in kept {
        store.push_payload(s);
    }
}

/// How many sorted keys ahead the table sweeps prefetch.
const PREFETCH_AHEAD: usize = 8;

/// Marker for a chunk text whose key is not shared with another text of the chunk.
pub const ALONE: u32 = u32::MAX;

/// Key collisions of a chunk of sketches, found table by table.
pub struct ChunkProbe {
    /// `(chunk index, slot)` once per table where the two keys met, sorted.
    pub stored: Vec<(u32, u32)>,
    /// `run_of[t][i]`: group id of the chunk texts sharing text `i`'s key in table
    /// `t` (ids are unique across tables), or `ALONE`.
    pub run_of: Vec<Vec<u32>>,
    pub groups: usize,
    /// Whether text `i` shares a key with another chunk text in any table.
    pub grouped: Vec<bool>,
}

/// Probe every table with the chunk's sorted keys, in parallel.
pub fn probe_chunk<S: Store>(
    store: &S,
    keyed: &[Vec<(u32, u32)>],
    n: usize,
    live: impl Fn(u32) -> bool + Sync,
) -> ChunkProbe {
    // Per table: stored collisions, group ids, number of groups.
    type TableProbe = (Vec<(u32, u32)>, Vec<u32>, u32);
    let per_table: Vec<TableProbe> = store
        .tables()
        .par_iter()
        .zip(keyed)
        .map(|(table, keyed)| {
            let mut stored = Vec::new();
            let mut run_of = vec![ALONE; n];
            let mut groups = 0u32;
            let mut at = 0;
            for run in keyed.chunk_by(|a, b| a.0 == b.0) {
                // Keys ascend, so the table is swept; fetch a few lookups ahead.
                if let Some(&(k, _)) = keyed.get(at + PREFETCH_AHEAD) {
                    table.prefetch(k);
                }
                at += run.len();
                table.get(run[0].0, |slot| {
                    if live(slot) {
                        stored.extend(run.iter().map(|&(_, i)| (i, slot)));
                    }
                });
                if run.len() > 1 {
                    for &(_, i) in run {
                        run_of[i as usize] = groups;
                    }
                    groups += 1;
                }
            }
            (stored, run_of, groups)
        })
        .collect();
    let mut stored = Vec::new();
    let mut run_of = Vec::with_capacity(per_table.len());
    let mut offset = 0u32;
    for (s, mut r, g) in per_table {
        stored.extend(s);
        if offset > 0 {
            for id in r.iter_mut().filter(|id| **id != ALONE) {
                *id += offset;
            }
        }
        run_of.push(r);
        offset += g;
    }
    stored.sort_unstable();
    let mut grouped = vec![false; n];
    for r in &run_of {
        for (g, &id) in grouped.iter_mut().zip(r) {
            *g |= id != ALONE;
        }
    }
    ChunkProbe {
        stored,
        run_of,
        groups: offset as usize,
        grouped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::SplitMix64;

    #[test]
    fn sort_hashed_pairs_sorts_any_input() {
        let mut rng = SplitMix64::new(2);
        for n in [0usize, 1, 5, 63, 64, 100, 1000, 5000] {
            for skew in [0u32, 20, 32] {
                // skew = 32 makes every key equal: one huge bucket.
                let mut v: Vec<(u32, u32)> = (0..n)
                    .map(|i| {
                        (
                            ((rng.next_u64() as u32) >> skew.min(31)) * u32::from(skew < 32),
                            i as u32,
                        )
                    })
                    .collect();
                let mut expect = v.clone();
                expect.sort_unstable();
                sort_hashed_pairs(&mut v);
                assert_eq!(v, expect, "n={n} skew={skew}");
            }
        }
    }
}
