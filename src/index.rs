//! The incremental near-duplicate index shared by the three methods.
//!
//! An index is a `Sketcher` (pure: text -> sketch) and a `Store` (tables and
//! payload). Every text handed to `insert`/`insert_if_new` takes the next
//! *position* (0, 1, 2, ...), whether it is stored or rejected as a duplicate, so
//! positions line up with the caller's stream of texts. Stored texts live in
//! dense *slots*; `Slots` maps each back to its position.
//!
//! Batch calls work chunk by chunk and give exactly the results of one call per
//! text: sketches are computed in parallel, every table is probed with the whole
//! chunk in key order (in parallel), then one ordered pass decides each text
//! against the stored texts and the texts kept earlier in the chunk, and the kept
//! ones are inserted table by table.

use crate::config::Config;
use crate::seq::Slots;
use crate::serial::{ReadResult, Reader, Writer};
use crate::shingle::Scratch;
use crate::store::{self, SketchOf, Sketcher, Store, ALONE};
use crate::table::KeyTable;
use rayon::prelude::*;

/// Texts per step of the batch calls (small under test so chunk seams get exercised).
#[cfg(not(test))]
const CHUNK: usize = 16384;
#[cfg(test)]
const CHUNK: usize = 50;
/// Below this many texts a batch is sketched on the calling thread.
const PARALLEL_MIN: usize = 64;
/// High bit of a position marks a removed slot.
const REMOVED: u64 = 1 << 63;

/// A reported near-duplicate: its position and similarity.
pub type Hit = (u64, f64);

/// The better of two hits: higher similarity, then earlier position.
fn better(a: Option<Hit>, b: Option<Hit>) -> Option<Hit> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.1 > x.1 || (y.1 == x.1 && y.0 < x.0) {
            y
        } else {
            x
        }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn sort_hits(hits: &mut [Hit]) {
    hits.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

fn sketch_all<K: Sketcher, T: AsRef<str> + Sync>(sketcher: &K, texts: &[T]) -> Vec<K::Sketch> {
    if texts.len() < PARALLEL_MIN {
        let mut scratch = Scratch::default();
        texts
            .iter()
            .map(|t| sketcher.sketch(t.as_ref(), &mut scratch))
            .collect()
    } else {
        texts
            .par_iter()
            .with_min_len(16)
            .map_init(Scratch::default, |scratch, t| {
                sketcher.sketch(t.as_ref(), scratch)
            })
            .collect()
    }
}

pub struct Index<S: Store> {
    cfg: Config,
    sketcher: S::Sketcher,
    store: S,
    slots: Slots,
    live: usize,
    next_position: u64,
    /// `(position of a rejected text, position of the stored text it duplicated)`.
    duplicates: Vec<(u64, u64)>,
}

impl<S: Store> Index<S> {
    pub fn new(cfg: Config) -> Self {
        let (sketcher, store) = S::new(&cfg);
        Self {
            cfg,
            sketcher,
            store,
            slots: Slots::default(),
            live: 0,
            next_position: 0,
            duplicates: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Number of stored (not removed) texts.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Position the next text will take.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    pub fn duplicates(&self) -> &[(u64, u64)] {
        &self.duplicates
    }

    /// Bytes held by the index structures (tables, stored payloads, positions,
    /// duplicate log), from allocated capacities.
    pub fn memory_bytes(&self) -> usize {
        store::memory_bytes(&self.store)
            + self.slots.memory_bytes()
            + self.duplicates.capacity() * 16
    }

    fn sketch_one(&self, text: &str) -> SketchOf<S> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
        }
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut scratch) => self.sketcher.sketch(text, &mut scratch),
            Err(_) => self.sketcher.sketch(text, &mut Scratch::default()),
        })
    }

    fn hits(&self, sketch: &SketchOf<S>) -> Vec<Hit> {
        let slots = &self.slots;
        let mut hits = Vec::new();
        store::find(
            &self.store,
            sketch,
            |s| slots.is_live(s),
            |slot, sim| hits.push((slots.position(slot), sim)),
        );
        sort_hits(&mut hits);
        hits
    }

    fn take_positions(&mut self, n: usize) -> Result<u64, String> {
        let first = self.next_position;
        match first.checked_add(n as u64) {
            Some(end) if end < REMOVED => {
                self.next_position = end;
                Ok(first)
            }
            _ => Err("position counter exhausted".into()),
        }
    }

    fn check_room(&self, more: usize) -> Result<(), String> {
        if self.slots.len() + more > KeyTable::MAX_VALUE as usize {
            return Err("index is full (4,294,967,294 stored texts)".into());
        }
        Ok(())
    }

    fn record_duplicate(&mut self, position: u64, of: u64) {
        store::reserve_slack(&mut self.duplicates, 1);
        self.duplicates.push((position, of));
    }

    fn store_one(&mut self, sketch: &SketchOf<S>) -> Result<u64, String> {
        self.check_room(1)?;
        let p = self.take_positions(1)?;
        let slot = self.slots.len() as u32;
        self.slots.push(p);
        store::insert(&mut self.store, slot, sketch);
        self.live += 1;
        Ok(p)
    }

    /// Store `text` unconditionally; returns its position.
    pub fn insert(&mut self, text: &str) -> Result<u64, String> {
        let sketch = self.sketch_one(text);
        self.store_one(&sketch)
    }

    /// Stored near-duplicates of `text`, most similar first.
    pub fn query(&self, text: &str) -> Vec<Hit> {
        self.hits(&self.sketch_one(text))
    }

    /// The streaming dedup primitive: if a stored text is a near-duplicate of `text`,
    /// return the best one (and store nothing); otherwise store `text` and return None.
    pub fn insert_if_new(&mut self, text: &str) -> Result<Option<Hit>, String> {
        let sketch = self.sketch_one(text);
        match self.hits(&sketch).first().copied() {
            Some(hit) => {
                let p = self.take_positions(1)?;
                self.record_duplicate(p, hit.0);
                Ok(Some(hit))
            }
            None => self.store_one(&sketch).map(|_| None),
        }
    }

    /// Mark the text stored at `position` as removed; false if there is none.
    pub fn remove(&mut self, position: u64) -> bool {
        match self.slots.remove(position) {
            Some(slot) => {
                self.store.remove(slot);
                self.live -= 1;
                true
            }
            None => false,
        }
    }

    /// Store the chunk texts chosen by `kept_index` (chunk indices, increasing) under
    /// the next slots; `keyed` are the chunk's sorted keys from `store::chunk_keys`.
    fn store_chunk(
        &mut self,
        keyed: &[Vec<(u32, u32)>],
        sketches: &[SketchOf<S>],
        kept: &[(u32, u64)],
    ) {
        let first_slot = self.slots.len() as u32;
        let mut slot_of = vec![u32::MAX; sketches.len()];
        for (k, &(i, _)) in kept.iter().enumerate() {
            slot_of[i as usize] = first_slot + k as u32;
        }
        for &(_, p) in kept {
            self.slots.push(p);
        }
        let kept_sketches: Vec<&SketchOf<S>> =
            kept.iter().map(|&(i, _)| &sketches[i as usize]).collect();
        let slot_of = |i: u32| slot_of.get(i as usize).copied().filter(|&s| s != u32::MAX);
        store::insert_keyed(&mut self.store, keyed, slot_of, &kept_sketches);
        self.live += kept.len();
    }

    /// Store many texts unconditionally; returns their positions.
    pub fn insert_many<T: AsRef<str> + Sync>(&mut self, texts: &[T]) -> Result<Vec<u64>, String> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(CHUNK) {
            let sketches = sketch_all(&self.sketcher, chunk);
            self.check_room(sketches.len())?;
            let first = self.take_positions(sketches.len())?;
            let refs: Vec<&SketchOf<S>> = sketches.iter().collect();
            let keyed = store::chunk_keys(&self.store, &refs);
            let kept: Vec<(u32, u64)> = (0..sketches.len())
                .map(|i| (i as u32, first + i as u64))
                .collect();
            self.store_chunk(&keyed, &sketches, &kept);
            out.extend(kept.iter().map(|&(_, p)| p));
        }
        Ok(out)
    }

    /// `insert_if_new` for each text in order; results equal one call per text.
    pub fn insert_if_new_many<T: AsRef<str> + Sync>(
        &mut self,
        texts: &[T],
    ) -> Result<Vec<Option<Hit>>, String> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(CHUNK) {
            let sketches = sketch_all(&self.sketcher, chunk);
            out.extend(self.insert_if_new_chunk(&sketches)?);
        }
        Ok(out)
    }

    fn insert_if_new_chunk(
        &mut self,
        sketches: &[SketchOf<S>],
    ) -> Result<Vec<Option<Hit>>, String> {
        self.check_room(sketches.len())?;
        let first = self.take_positions(sketches.len())?;
        let refs: Vec<&SketchOf<S>> = sketches.iter().collect();
        let keyed = store::chunk_keys(&self.store, &refs);
        let slots = &self.slots;
        let probe = store::probe_chunk(&self.store, &keyed, sketches.len(), |s| slots.is_live(s));
        // Checks against stored texts do not depend on this chunk's decisions, so
        // they run in parallel; the ordered pass below only adds the chunk's own.
        let mut starts = vec![0usize; sketches.len() + 1];
        for &(i, _) in &probe.stored {
            starts[i as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let store = &self.store;
        let stored = &probe.stored;
        let best_stored = |i: usize| {
            let mut best: Option<Hit> = None;
            for run in stored[starts[i]..starts[i + 1]].chunk_by(|a, b| a.1 == b.1) {
                let slot = run[0].1;
                if let Some(sim) = store.verify_stored(&sketches[i], slot, run.len()) {
                    best = better(best, Some((slots.position(slot), sim)));
                }
            }
            best
        };
        let prior: Vec<Option<Hit>> = if stored.is_empty() {
            vec![None; sketches.len()]
        } else {
            (0..sketches.len())
                .into_par_iter()
                .with_min_len(64)
                .map(best_stored)
                .collect()
        };
        // Kept chunk members of each key group, in order; a text only ever sees the
        // members kept before it.
        let mut kept_in_group: Vec<Vec<u32>> = vec![Vec::new(); probe.groups];
        let mut kept: Vec<(u32, u64)> = Vec::new();
        let mut chunk_position = vec![0u64; sketches.len()];
        let mut out = Vec::with_capacity(sketches.len());
        let mut local: Vec<u32> = Vec::new();
        let mut dups: Vec<(u64, u64)> = Vec::new();
        for (i, sketch) in sketches.iter().enumerate() {
            let p = first + i as u64;
            let mut best = prior[i];
            local.clear();
            if probe.grouped[i] {
                for run_of in &probe.run_of {
                    let g = run_of[i];
                    if g != ALONE {
                        local.extend_from_slice(&kept_in_group[g as usize]);
                    }
                }
            }
            local.sort_unstable();
            for run in local.chunk_by(|a, b| a == b) {
                let j = run[0] as usize;
                if let Some(sim) = self.store.verify_pair(sketch, &sketches[j], run.len()) {
                    best = better(best, Some((chunk_position[j], sim)));
                }
            }
            match best {
                Some(hit) => {
                    dups.push((p, hit.0));
                    out.push(Some(hit));
                }
                None => {
                    if probe.grouped[i] {
                        for run_of in &probe.run_of {
                            let g = run_of[i];
                            if g != ALONE {
                                kept_in_group[g as usize].push(i as u32);
                            }
                        }
                    }
                    chunk_position[i] = p;
                    kept.push((i as u32, p));
                    out.push(None);
                }
            }
        }
        store::reserve_slack(&mut self.duplicates, dups.len());
        self.duplicates.extend(dups);
        self.store_chunk(&keyed, sketches, &kept);
        Ok(out)
    }

    /// `query` for many texts, in parallel (the index is not modified).
    pub fn query_many<T: AsRef<str> + Sync>(&self, texts: &[T]) -> Vec<Vec<Hit>> {
        let run =
            |scratch: &mut Scratch, t: &T| self.hits(&self.sketcher.sketch(t.as_ref(), scratch));
        if texts.len() < PARALLEL_MIN {
            let mut scratch = Scratch::default();
            texts.iter().map(|t| run(&mut scratch, t)).collect()
        } else {
            texts
                .par_iter()
                .with_min_len(16)
                .map_init(Scratch::default, run)
                .collect()
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(MAGIC);
        w.u32(FORMAT_VERSION);
        self.cfg.write(&mut w);
        w.u64(self.next_position);
        let flagged: Vec<u64> = self
            .slots
            .iter()
            .map(|(p, live)| if live { p } else { p | REMOVED })
            .collect();
        w.u64s(&flagged);
        let flat: Vec<u64> = self.duplicates.iter().flat_map(|&(a, b)| [a, b]).collect();
        w.u64s(&flat);
        let slots = &self.slots;
        self.store.write(&mut w, |s| slots.is_live(s));
        w.finish()
    }

    /// Rebuild from `to_bytes` output (which must hold an index of this method).
    pub fn from_bytes(data: &[u8]) -> ReadResult<Self> {
        let mut r = Reader::new(data)?;
        let cfg = read_header(&mut r)?;
        if cfg.method != S::METHOD {
            return Err(format!("saved index uses method {:?}", cfg.method.name()));
        }
        let next_position = r.u64()?;
        let positions = r.u64s()?;
        let flat = r.u64s()?;
        if flat.len() % 2 != 0 {
            return Err("corrupt duplicate log".into());
        }
        let masked = |p: &u64| p & !REMOVED;
        if positions.windows(2).any(|w| masked(&w[0]) >= masked(&w[1]))
            || positions.last().is_some_and(|p| masked(p) >= next_position)
            || next_position >= REMOVED
            || positions.len() > KeyTable::MAX_VALUE as usize + 1
        {
            return Err("corrupt position table".into());
        }
        let duplicates: Vec<(u64, u64)> = flat.chunks_exact(2).map(|c| (c[0], c[1])).collect();
        let slots: Slots = positions
            .iter()
            .map(|&p| (p & !REMOVED, p & REMOVED == 0))
            .collect();
        let (sketcher, store) = S::read(&cfg, &mut r, slots.len(), |s| slots.is_live(s))?;
        r.expect_end()?;
        let live = slots.live_count();
        Ok(Self {
            cfg,
            sketcher,
            store,
            slots,
            live,
            next_position,
            duplicates,
        })
    }
}

const MAGIC: &[u8] = b"agentic-synth similarity index";
const FORMAT_VERSION: u32 = 1;

/// Check magic/version and read the config of saved index bytes (so callers can
/// pick the right `Store` before decoding the rest).
pub fn read_header(r: &mut Reader) -> ReadResult<Config> {
    if r.bytes()? != MAGIC {
        return Err("not a saved similarity index".into());
    }
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!("unsupported index format version {version}"));
    }
    Config::read(r)
}

/// Peek at the config stored in saved index bytes.
pub fn peek_config(data: &[u8]) -> ReadResult<Config> {
    read_header(&mut Reader::new(data)?)
}
