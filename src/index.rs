//! The incremental near-duplicate index shared by the three methods.
//!
//! An index is a `Sketcher` (pure, immutable: text -> sketch, run in parallel) and
//! a `Store` (the mutable tables). Every text handed to `insert`/`insert_if_new`
//! takes the next *position* (0, 1, 2, ...), whether it is stored or rejected as a
//! duplicate, so positions line up with the caller's stream of texts. Stored texts
//! live in dense *slots*; `positions[slot]` maps back.
//!
//! Batch calls sketch chunk `k + 1` on the rayon pool while chunk `k` is applied
//! to the tables in order, so results equal those of the one-by-one calls.

use crate::lsh;
use crate::serial::{ReadResult, Reader, Writer};
use crate::shingle::{Scratch, Shingling};
use crate::table::KeyTable;
use rayon::prelude::*;

/// Texts sketched per pipeline step in batch calls.
const CHUNK: usize = 4096;
/// Below this many texts a batch is sketched on the calling thread.
const PARALLEL_MIN: usize = 64;
/// High bit of a position marks a removed slot.
const REMOVED: u64 = 1 << 63;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    MinHash,
    SimHash,
    Exact,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "minhash" => Ok(Self::MinHash),
            "simhash" => Ok(Self::SimHash),
            "exact" => Ok(Self::Exact),
            other => Err(format!(
                "method must be 'minhash', 'simhash' or 'exact', got {other:?}"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::MinHash => "minhash",
            Self::SimHash => "simhash",
            Self::Exact => "exact",
        }
    }
}

/// How MinHash LSH candidates are checked before being reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Exact Jaccard of the stored shingle sets (16-bit shingle fingerprints).
    Exact,
    /// Jaccard estimated from a stored 8-bit-per-permutation signature.
    Signature,
    /// Report every LSH candidate unchecked.
    None,
}

impl Verify {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Self::Exact),
            "signature" => Ok(Self::Signature),
            "none" => Ok(Self::None),
            other => Err(format!(
                "verify must be 'exact', 'signature' or 'none', got {other:?}"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Signature => "signature",
            Self::None => "none",
        }
    }
}

/// LSH weights `(false positive, false negative)` used when bands/rows are not given.
/// With verification a false positive only costs one check, so misses weigh more.
pub fn default_weights(verify: Verify) -> (f64, f64) {
    match verify {
        Verify::None => (0.5, 0.5),
        Verify::Exact | Verify::Signature => (0.05, 0.95),
    }
}

/// Validated, fully resolved settings of an index.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub method: Method,
    pub threshold: f64,
    pub shingling: Shingling,
    pub num_perm: u32,
    pub bands: u32,
    pub rows: u32,
    pub verify: Verify,
    pub max_distance: u32,
    pub seed: u64,
}

pub const MAX_PERM: u32 = 4096;
pub const MAX_DISTANCE: u32 = 3;

impl Config {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        method: Method,
        threshold: f64,
        shingling: Shingling,
        num_perm: u32,
        bands: Option<u32>,
        rows: Option<u32>,
        verify: Verify,
        max_distance: u32,
        seed: u64,
    ) -> Result<Self, String> {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(format!("threshold must be in (0, 1], got {threshold}"));
        }
        if num_perm == 0 || num_perm > MAX_PERM {
            return Err(format!(
                "num_perm must be between 1 and {MAX_PERM}, got {num_perm}"
            ));
        }
        if max_distance > MAX_DISTANCE {
            return Err(format!(
                "max_distance must be between 0 and {MAX_DISTANCE}, got {max_distance}"
            ));
        }
        if method != Method::MinHash {
            // Banding only applies to MinHash; the other methods record none.
            let (bands, rows) = (0, 0);
            return Ok(Self {
                method,
                threshold,
                shingling,
                num_perm,
                bands,
                rows,
                verify,
                max_distance,
                seed,
            });
        }
        let (bands, rows) = match (bands, rows) {
            (Some(b), Some(r)) => (b, r),
            (Some(b), None) if b > 0 => (b, num_perm / b),
            (None, Some(r)) if r > 0 => (num_perm / r, r),
            (None, None) => {
                let (fp, fn_) = default_weights(verify);
                lsh::optimal_params(threshold, num_perm, fp, fn_)
            }
            (b, r) => (b.unwrap_or(0), r.unwrap_or(0)),
        };
        if bands == 0 || rows == 0 || u64::from(bands) * u64::from(rows) > u64::from(num_perm) {
            return Err(format!(
                "need bands >= 1, rows >= 1 and bands * rows <= num_perm ({num_perm}), got {bands} x {rows}"
            ));
        }
        Ok(Self {
            method,
            threshold,
            shingling,
            num_perm,
            bands,
            rows,
            verify,
            max_distance,
            seed,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.u8(match self.method {
            Method::MinHash => 0,
            Method::SimHash => 1,
            Method::Exact => 2,
        });
        w.f64(self.threshold);
        w.u8(match self.shingling {
            Shingling::Words(_) => 0,
            Shingling::Chars(_) => 1,
        });
        w.u32(self.shingling.n());
        w.u32(self.num_perm);
        w.u32(self.bands);
        w.u32(self.rows);
        w.u8(match self.verify {
            Verify::Exact => 0,
            Verify::Signature => 1,
            Verify::None => 2,
        });
        w.u32(self.max_distance);
        w.u64(self.seed);
    }

    fn read(r: &mut Reader) -> ReadResult<Self> {
        let method = match r.u8()? {
            0 => Method::MinHash,
            1 => Method::SimHash,
            2 => Method::Exact,
            m => return Err(format!("unknown method code {m}")),
        };
        let threshold = r.f64()?;
        let kind = match r.u8()? {
            0 => "word",
            1 => "char",
            k => return Err(format!("unknown shingle code {k}")),
        };
        let shingling = Shingling::parse(kind, r.u32()?)?;
        let num_perm = r.u32()?;
        let bands = r.u32()?;
        let rows = r.u32()?;
        let verify = match r.u8()? {
            0 => Verify::Exact,
            1 => Verify::Signature,
            2 => Verify::None,
            v => return Err(format!("unknown verify code {v}")),
        };
        let max_distance = r.u32()?;
        let seed = r.u64()?;
        Self::new(
            method,
            threshold,
            shingling,
            num_perm,
            Some(bands),
            Some(rows),
            verify,
            max_distance,
            seed,
        )
    }
}

/// Pure text -> sketch step; shared by reference across rayon workers.
pub trait Sketcher: Sync {
    type Sketch: Send;
    fn sketch(&self, text: &str, scratch: &mut Scratch) -> Self::Sketch;
}

/// The mutable, searchable part of an index.
pub trait Store: Send + Sync + Sized {
    type Sketcher: Sketcher;
    const METHOD: Method;

    fn new(cfg: &Config) -> (Self::Sketcher, Self);

    /// Call `found(slot, similarity)` for every stored near-duplicate of `sketch`
    /// whose slot satisfies `live`.
    fn find(
        &self,
        sketch: &<Self::Sketcher as Sketcher>::Sketch,
        live: impl Fn(u32) -> bool,
        found: impl FnMut(u32, f64),
    );

    /// Store `sketch` under the next slot (`slot` equals the number stored so far).
    fn insert(&mut self, slot: u32, sketch: <Self::Sketcher as Sketcher>::Sketch);

    /// Forget `slot` as far as the store can (it is also masked out via `live`).
    fn remove(&mut self, slot: u32);

    fn write(&self, w: &mut Writer, live: impl Fn(u32) -> bool);

    fn read(
        cfg: &Config,
        r: &mut Reader,
        slots: usize,
        live: impl Fn(u32) -> bool,
    ) -> ReadResult<(Self::Sketcher, Self)>;

    fn memory_bytes(&self) -> usize;
}

/// Grow `v` so `additional` more items fit, by at most a quarter of its length
/// beyond that: keeps spare capacity (and reported memory) within 25%.
pub fn reserve_quarter<T>(v: &mut Vec<T>, additional: usize) {
    if v.capacity() - v.len() < additional {
        v.reserve_exact(additional.max(v.len() / 4).max(16));
    }
}

type SketchOf<S> = <<S as Store>::Sketcher as Sketcher>::Sketch;

/// Everything the sequential apply phase mutates.
struct State<S: Store> {
    store: S,
    positions: Vec<u64>,
    live: usize,
    next_position: u64,
    /// `(position of a rejected text, position of the stored text it duplicated)`.
    duplicates: Vec<(u64, u64)>,
}

pub struct Index<S: Store> {
    cfg: Config,
    sketcher: S::Sketcher,
    state: State<S>,
}

/// A reported near-duplicate: its position and similarity.
pub type Hit = (u64, f64);

fn best(hits: &[Hit]) -> Option<Hit> {
    // Highest similarity; the earliest position among equals.
    hits.iter().copied().reduce(|a, b| {
        if b.1 > a.1 || (b.1 == a.1 && b.0 < a.0) {
            b
        } else {
            a
        }
    })
}

impl<S: Store> State<S> {
    fn is_live(positions: &[u64], slot: u32) -> bool {
        positions
            .get(slot as usize)
            .is_some_and(|p| p & REMOVED == 0)
    }

    fn hits(&self, sketch: &SketchOf<S>) -> Vec<Hit> {
        let positions = &self.positions;
        let mut hits = Vec::new();
        self.store.find(
            sketch,
            |s| Self::is_live(positions, s),
            |slot, sim| hits.push((positions[slot as usize], sim)),
        );
        hits
    }

    fn take_position(&mut self) -> Result<u64, String> {
        let p = self.next_position;
        if p >= REMOVED {
            return Err("position counter exhausted".into());
        }
        self.next_position += 1;
        Ok(p)
    }

    fn store(&mut self, position: u64, sketch: SketchOf<S>) -> Result<(), String> {
        let slot = self.positions.len();
        if slot > KeyTable::MAX_VALUE as usize {
            return Err("index is full (4,294,967,294 stored texts)".into());
        }
        reserve_quarter(&mut self.positions, 1);
        self.positions.push(position);
        self.store.insert(slot as u32, sketch);
        self.live += 1;
        Ok(())
    }

    fn insert(&mut self, sketch: SketchOf<S>) -> Result<u64, String> {
        let p = self.take_position()?;
        self.store(p, sketch)?;
        Ok(p)
    }

    fn insert_if_new(&mut self, sketch: SketchOf<S>) -> Result<Option<Hit>, String> {
        let found = best(&self.hits(&sketch));
        let p = self.take_position()?;
        match found {
            Some(hit) => {
                reserve_quarter(&mut self.duplicates, 1);
                self.duplicates.push((p, hit.0));
                Ok(Some(hit))
            }
            None => {
                self.store(p, sketch)?;
                Ok(None)
            }
        }
    }
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

impl<S: Store> Index<S> {
    pub fn new(cfg: Config) -> Self {
        let (sketcher, store) = S::new(&cfg);
        let state = State {
            store,
            positions: Vec::new(),
            live: 0,
            next_position: 0,
            duplicates: Vec::new(),
        };
        Self {
            cfg,
            sketcher,
            state,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
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

    /// Number of stored (not removed) texts.
    pub fn len(&self) -> usize {
        self.state.live
    }

    /// Position the next text will take.
    pub fn next_position(&self) -> u64 {
        self.state.next_position
    }

    pub fn duplicates(&self) -> &[(u64, u64)] {
        &self.state.duplicates
    }

    /// Store `text` unconditionally; returns its position.
    pub fn insert(&mut self, text: &str) -> Result<u64, String> {
        let sketch = self.sketch_one(text);
        self.state.insert(sketch)
    }

    /// Stored near-duplicates of `text`, most similar first.
    pub fn query(&self, text: &str) -> Vec<Hit> {
        let mut hits = self.state.hits(&self.sketch_one(text));
        sort_hits(&mut hits);
        hits
    }

    /// The streaming dedup primitive: if a stored text is a near-duplicate of `text`,
    /// return the best one (and store nothing); otherwise store `text` and return None.
    pub fn insert_if_new(&mut self, text: &str) -> Result<Option<Hit>, String> {
        let sketch = self.sketch_one(text);
        self.state.insert_if_new(sketch)
    }

    /// Mark the text stored at `position` as removed; false if there is none.
    pub fn remove(&mut self, position: u64) -> bool {
        let positions = &mut self.state.positions;
        let Ok(slot) = positions.binary_search_by_key(&position, |p| p & !REMOVED) else {
            return false;
        };
        if positions[slot] & REMOVED != 0 {
            return false;
        }
        positions[slot] |= REMOVED;
        self.state.store.remove(slot as u32);
        self.state.live -= 1;
        true
    }

    pub fn insert_many<T: AsRef<str> + Sync>(&mut self, texts: &[T]) -> Result<Vec<u64>, String> {
        let mut out = Vec::with_capacity(texts.len());
        self.pipeline(texts, |state, sketch| {
            out.push(state.insert(sketch)?);
            Ok(())
        })?;
        Ok(out)
    }

    pub fn insert_if_new_many<T: AsRef<str> + Sync>(
        &mut self,
        texts: &[T],
    ) -> Result<Vec<Option<Hit>>, String> {
        let mut out = Vec::with_capacity(texts.len());
        self.pipeline(texts, |state, sketch| {
            out.push(state.insert_if_new(sketch)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Read-only, so fully parallel.
    pub fn query_many<T: AsRef<str> + Sync>(&self, texts: &[T]) -> Vec<Vec<Hit>> {
        let state = &self.state;
        let sketcher = &self.sketcher;
        let run = |scratch: &mut Scratch, t: &T| {
            let mut hits = state.hits(&sketcher.sketch(t.as_ref(), scratch));
            sort_hits(&mut hits);
            hits
        };
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

    /// Sketch in parallel, apply in order, overlapping the two across chunks.
    fn pipeline<T: AsRef<str> + Sync>(
        &mut self,
        texts: &[T],
        mut apply: impl FnMut(&mut State<S>, SketchOf<S>) -> Result<(), String> + Send,
    ) -> Result<(), String> {
        let sketcher = &self.sketcher;
        let state = &mut self.state;
        let mut chunks = texts.chunks(CHUNK);
        let mut current = chunks.next().map(|c| sketch_all(sketcher, c));
        while let Some(sketches) = current.take() {
            let next_chunk = chunks.next();
            let (next, applied) = rayon::join(
                || next_chunk.map(|c| sketch_all(sketcher, c)),
                || -> Result<(), String> {
                    for sketch in sketches {
                        apply(state, sketch)?;
                    }
                    Ok(())
                },
            );
            applied?;
            current = next;
        }
        Ok(())
    }

    /// Bytes held by the index structures (tables, stored sketches, positions,
    /// duplicate log), from allocated capacities.
    pub fn memory_bytes(&self) -> usize {
        self.state.store.memory_bytes()
            + self.state.positions.capacity() * 8
            + self.state.duplicates.capacity() * 16
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(MAGIC);
        w.u32(FORMAT_VERSION);
        self.cfg.write(&mut w);
        w.u64(self.state.next_position);
        w.u64s(&self.state.positions);
        let flat: Vec<u64> = self
            .state
            .duplicates
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .collect();
        w.u64s(&flat);
        let positions = &self.state.positions;
        self.state
            .store
            .write(&mut w, |s| State::<S>::is_live(positions, s));
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
        let (sketcher, store) = S::read(&cfg, &mut r, positions.len(), |s| {
            State::<S>::is_live(&positions, s)
        })?;
        r.expect_end()?;
        let live = positions.iter().filter(|p| *p & REMOVED == 0).count();
        let state = State {
            store,
            positions,
            live,
            next_position,
            duplicates,
        };
        Ok(Self {
            cfg,
            sketcher,
            state,
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

fn sort_hits(hits: &mut [Hit]) {
    hits.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}
