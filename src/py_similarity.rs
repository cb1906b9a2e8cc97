//! Python bindings of the similarity core. Thin by design: argument parsing,
//! GIL handling and conversions only; the logic lives in the plain-Rust modules.
//!
//! Texts are read as borrowed UTF-8 (no copy for ordinary `str`); strings with
//! lone surrogates, which have no UTF-8 form, are read with U+FFFD in their place
//! rather than raising. Batch calls and very long single texts run without the GIL.

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard, TryLockError};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use rayon::prelude::*;

use crate::config::{Config, Method, Verify};
use crate::exact_index::ExactStore;
use crate::index::{peek_config, Hit, Index};
use crate::lsh;
use crate::minhash::{estimate, fold32, Permutations};
use crate::minhash_index::MinHashStore;
use crate::normalize::normalize;
use crate::shingle::{jaccard_sorted, to_set, Scratch, Shingling};
use crate::simhash::{hamming as hamming_distance, simhash as simhash_of};
use crate::simhash_index::SimHashStore;

/// Single texts longer than this (bytes) are processed without the GIL.
const DETACH_BYTES: usize = 1 << 18;

pub const DEFAULT_SEED: u64 = 1;

fn value_error(e: String) -> PyErr {
    PyValueError::new_err(e)
}

/// Borrow the UTF-8 of a `str`, replacing lone surrogates if there are any.
fn text_of<'a>(s: &'a Bound<'_, PyString>) -> Cow<'a, str> {
    match s.to_str() {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => s.to_string_lossy(),
    }
}

/// Collect an iterable of `str` (a bare `str` is refused: iterating it would
/// silently treat every character as a text).
fn collect_strings<'py>(texts: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyString>>> {
    if texts.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "expected an iterable of str, got a single str",
        ));
    }
    let as_str = |item: Bound<'py, PyAny>| {
        item.cast_into::<PyString>().map_err(|e| {
            PyTypeError::new_err(format!(
                "expected str items, got {}",
                e.into_inner().get_type()
            ))
        })
    };
    if let Ok(list) = texts.cast::<PyList>() {
        list.iter().map(as_str).collect()
    } else {
        texts.try_iter()?.map(|item| as_str(item?)).collect()
    }
}

fn shingling(ngram: u32, shingle: &str) -> PyResult<Shingling> {
    Shingling::parse(shingle, ngram).map_err(value_error)
}

/// Run `f` without the GIL when `big`, else directly (saving the release cost).
fn maybe_detach<T: Send>(py: Python<'_>, big: bool, f: impl FnOnce() -> T + Send) -> T {
    if big {
        py.detach(f)
    } else {
        f()
    }
}

/// Unicode NFKC + case folding + whitespace collapse, as applied before shingling.
#[pyfunction(name = "normalize")]
pub fn normalize_text(py: Python<'_>, text: &Bound<'_, PyString>) -> String {
    let t = text_of(text);
    maybe_detach(py, t.len() > DETACH_BYTES, || normalize(&t))
}

/// The shingles of `text` after normalisation, in order (for inspection).
#[pyfunction]
#[pyo3(signature = (text, ngram = 3, shingle = "word"))]
pub fn shingles(
    py: Python<'_>,
    text: &Bound<'_, PyString>,
    ngram: u32,
    shingle: &str,
) -> PyResult<Vec<String>> {
    let s = shingling(ngram, shingle)?;
    let t = text_of(text);
    Ok(maybe_detach(py, t.len() > DETACH_BYTES, || {
        s.strings(&normalize(&t))
    }))
}

fn shingle_set(s: Shingling, text: &str) -> Vec<u64> {
    let mut scratch = Scratch::default();
    s.hash_text(text, &mut scratch);
    to_set(&scratch.hashes)
}

/// Exact Jaccard similarity of the shingle sets of two texts (1.0 for two empty texts).
#[pyfunction]
#[pyo3(signature = (a, b, ngram = 3, shingle = "word"))]
pub fn jaccard(
    py: Python<'_>,
    a: &Bound<'_, PyString>,
    b: &Bound<'_, PyString>,
    ngram: u32,
    shingle: &str,
) -> PyResult<f64> {
    let s = shingling(ngram, shingle)?;
    let (a, b) = (text_of(a), text_of(b));
    Ok(maybe_detach(py, a.len() + b.len() > DETACH_BYTES, || {
        jaccard_sorted(&shingle_set(s, &a), &shingle_set(s, &b))
    }))
}

fn signature(perms: &Permutations, s: Shingling, text: &str, scratch: &mut Scratch) -> Vec<u32> {
    s.hash_text(text, scratch);
    let folded: Vec<u32> = scratch.hashes.iter().map(|&h| fold32(h)).collect();
    let mut sig = Vec::new();
    perms.signature(&folded, &mut sig);
    sig
}

fn check_perm(num_perm: u32) -> PyResult<()> {
    if num_perm == 0 || num_perm > crate::config::MAX_PERM {
        return Err(PyValueError::new_err(format!(
            "num_perm must be between 1 and {}, got {num_perm}",
            crate::config::MAX_PERM
        )));
    }
    Ok(())
}

/// MinHash signature (`num_perm` unsigned 32-bit values) of a text.
#[pyfunction]
#[pyo3(signature = (text, num_perm = 128, ngram = 3, shingle = "word", seed = DEFAULT_SEED))]
pub fn minhash(
    py: Python<'_>,
    text: &Bound<'_, PyString>,
    num_perm: u32,
    ngram: u32,
    shingle: &str,
    seed: u64,
) -> PyResult<Vec<u32>> {
    check_perm(num_perm)?;
    let s = shingling(ngram, shingle)?;
    let t = text_of(text);
    Ok(maybe_detach(py, t.len() > DETACH_BYTES, || {
        signature(
            &Permutations::new(num_perm as usize, seed),
            s,
            &t,
            &mut Scratch::default(),
        )
    }))
}

/// MinHash signatures of many texts, computed in parallel without the GIL.
#[pyfunction]
#[pyo3(signature = (texts, num_perm = 128, ngram = 3, shingle = "word", seed = DEFAULT_SEED))]
pub fn minhash_many(
    py: Python<'_>,
    texts: &Bound<'_, PyAny>,
    num_perm: u32,
    ngram: u32,
    shingle: &str,
    seed: u64,
) -> PyResult<Vec<Vec<u32>>> {
    check_perm(num_perm)?;
    let s = shingling(ngram, shingle)?;
    let strings = collect_strings(texts)?;
    let texts: Vec<Cow<str>> = strings.iter().map(text_of).collect();
    Ok(py.detach(|| {
        let perms = Permutations::new(num_perm as usize, seed);
        texts
            .par_iter()
            .map_init(Scratch::default, |scratch, t| {
                signature(&perms, s, t, scratch)
            })
            .collect()
    }))
}

/// Fraction of equal slots of two MinHash signatures (the Jaccard estimate).
#[pyfunction]
pub fn estimate_jaccard(a: Vec<u32>, b: Vec<u32>) -> PyResult<f64> {
    if a.len() != b.len() || a.is_empty() {
        return Err(PyValueError::new_err(
            "signatures must be non-empty and of equal length",
        ));
    }
    Ok(estimate(&a, &b))
}

/// 64-bit SimHash of a text's shingles.
#[pyfunction]
#[pyo3(signature = (text, ngram = 3, shingle = "word"))]
pub fn simhash(
    py: Python<'_>,
    text: &Bound<'_, PyString>,
    ngram: u32,
    shingle: &str,
) -> PyResult<u64> {
    let s = shingling(ngram, shingle)?;
    let t = text_of(text);
    Ok(maybe_detach(py, t.len() > DETACH_BYTES, || {
        let mut scratch = Scratch::default();
        s.hash_text(&t, &mut scratch);
        simhash_of(&scratch.hashes)
    }))
}

/// SimHashes of many texts, computed in parallel without the GIL.
#[pyfunction]
#[pyo3(signature = (texts, ngram = 3, shingle = "word"))]
pub fn simhash_many(
    py: Python<'_>,
    texts: &Bound<'_, PyAny>,
    ngram: u32,
    shingle: &str,
) -> PyResult<Vec<u64>> {
    let s = shingling(ngram, shingle)?;
    let strings = collect_strings(texts)?;
    let texts: Vec<Cow<str>> = strings.iter().map(text_of).collect();
    Ok(py.detach(|| {
        texts
            .par_iter()
            .map_init(Scratch::default, |scratch, t| {
                s.hash_text(t, scratch);
                simhash_of(&scratch.hashes)
            })
            .collect()
    }))
}

/// Number of differing bits between two 64-bit hashes.
#[pyfunction]
pub fn hamming(a: u64, b: u64) -> u32 {
    hamming_distance(a, b)
}

/// `(bands, rows)` minimising the weighted false-positive and false-negative
/// areas of the LSH S-curve around `threshold`.
#[pyfunction]
#[pyo3(signature = (threshold, num_perm = 128, false_positive_weight = 0.5, false_negative_weight = 0.5))]
pub fn lsh_params(
    py: Python<'_>,
    threshold: f64,
    num_perm: u32,
    false_positive_weight: f64,
    false_negative_weight: f64,
) -> PyResult<(u32, u32)> {
    check_perm(num_perm)?;
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(PyValueError::new_err(format!(
            "threshold must be in (0, 1], got {threshold}"
        )));
    }
    let weights_ok = |w: f64| w.is_finite() && w >= 0.0;
    if !weights_ok(false_positive_weight) || !weights_ok(false_negative_weight) {
        return Err(PyValueError::new_err(
            "weights must be finite and non-negative",
        ));
    }
    Ok(py.detach(|| {
        lsh::optimal_params(
            threshold,
            num_perm,
            false_positive_weight,
            false_negative_weight,
        )
    }))
}

/// Probability that a pair with Jaccard `similarity` shares at least one band.
#[pyfunction]
pub fn lsh_probability(similarity: f64, bands: u32, rows: u32) -> PyResult<f64> {
    if !(0.0..=1.0).contains(&similarity) || bands == 0 || rows == 0 {
        return Err(PyValueError::new_err(
            "need 0 <= similarity <= 1 and bands, rows >= 1",
        ));
    }
    Ok(lsh::candidate_probability(similarity, bands, rows))
}

enum AnyIndex {
    MinHash(Index<MinHashStore>),
    SimHash(Index<SimHashStore>),
    Exact(Index<ExactStore>),
}

macro_rules! with_index {
    ($any:expr, $i:ident => $body:expr) => {
        match $any {
            AnyIndex::MinHash($i) => $body,
            AnyIndex::SimHash($i) => $body,
            AnyIndex::Exact($i) => $body,
        }
    };
}

impl AnyIndex {
    fn config(&self) -> &Config {
        with_index!(self, i => i.config())
    }
}

/// Incremental near-duplicate index over raw strings (MinHash LSH, SimHash or
/// exact fingerprints). Every inserted or checked text takes the next position.
#[pyclass(frozen, module = "agentic_synth._core")]
pub struct SimilarityIndex {
    inner: Mutex<AnyIndex>,
}

impl SimilarityIndex {
    /// Take the lock; if another thread holds it (e.g. a batch running without the
    /// GIL), wait with the GIL released so that thread is never blocked by us.
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, AnyIndex> {
        loop {
            match self.inner.try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => py.detach(|| drop(self.inner.lock())),
            }
        }
    }

    fn with_config<T>(&self, py: Python<'_>, f: impl FnOnce(&Config) -> T) -> T {
        f(self.lock(py).config())
    }
}

#[pymethods]
impl SimilarityIndex {
    #[new]
    #[pyo3(signature = (
        method = "minhash", threshold = 0.8, *, ngram = 3, shingle = "word", num_perm = 128,
        bands = None, rows = None, verify = "exact", max_distance = 3, seed = DEFAULT_SEED
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        method: &str,
        threshold: f64,
        ngram: u32,
        shingle: &str,
        num_perm: u32,
        bands: Option<u32>,
        rows: Option<u32>,
        verify: &str,
        max_distance: u32,
        seed: u64,
    ) -> PyResult<Self> {
        let method = Method::parse(method).map_err(value_error)?;
        let verify = Verify::parse(verify).map_err(value_error)?;
        let s = shingling(ngram, shingle)?;
        let cfg = py
            .detach(|| {
                Config::new(
                    method,
                    threshold,
                    s,
                    num_perm,
                    bands,
                    rows,
                    verify,
                    max_distance,
                    seed,
                )
            })
            .map_err(value_error)?;
        let inner = match method {
            Method::MinHash => AnyIndex::MinHash(Index::new(cfg)),
            Method::SimHash => AnyIndex::SimHash(Index::new(cfg)),
            Method::Exact => AnyIndex::Exact(Index::new(cfg)),
        };
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    /// Store `text` unconditionally; returns its position.
    fn insert(&self, py: Python<'_>, text: &Bound<'_, PyString>) -> PyResult<u64> {
        let t = text_of(text);
        let mut g = self.lock(py);
        let idx = &mut *g;
        maybe_detach(
            py,
            t.len() > DETACH_BYTES,
            || with_index!(idx, i => i.insert(&t)),
        )
        .map_err(value_error)
    }

    /// Store many texts; returns their positions.
    fn insert_many(&self, py: Python<'_>, texts: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
        let strings = collect_strings(texts)?;
        let texts: Vec<Cow<str>> = strings.iter().map(text_of).collect();
        let mut g = self.lock(py);
        let idx = &mut *g;
        py.detach(|| with_index!(idx, i => i.insert_many(&texts)))
            .map_err(value_error)
    }

    /// Stored near-duplicates of `text` as `(position, similarity)`, most similar first.
    fn query(&self, py: Python<'_>, text: &Bound<'_, PyString>) -> Vec<Hit> {
        let t = text_of(text);
        let g = self.lock(py);
        let idx = &*g;
        maybe_detach(
            py,
            t.len() > DETACH_BYTES,
            || with_index!(idx, i => i.query(&t)),
        )
    }

    /// `query` for many texts, in parallel (the index is not modified).
    fn query_many(&self, py: Python<'_>, texts: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<Hit>>> {
        let strings = collect_strings(texts)?;
        let texts: Vec<Cow<str>> = strings.iter().map(text_of).collect();
        let g = self.lock(py);
        let idx = &*g;
        Ok(py.detach(|| with_index!(idx, i => i.query_many(&texts))))
    }

    /// If a stored text is a near-duplicate of `text`, return its position (and store
    /// nothing); otherwise store `text` and return None.
    fn insert_if_new(&self, py: Python<'_>, text: &Bound<'_, PyString>) -> PyResult<Option<u64>> {
        let t = text_of(text);
        let mut g = self.lock(py);
        let idx = &mut *g;
        let hit = maybe_detach(
            py,
            t.len() > DETACH_BYTES,
            || with_index!(idx, i => i.insert_if_new(&t)),
        )
        .map_err(value_error)?;
        Ok(hit.map(|h| h.0))
    }

    /// Claim-or-match in one atomic step: `(position, None)` when `text` was new and
    /// is now stored at `position`; `(position, Some(earlier))` when it near-duplicates
    /// the stored text at `earlier` (it still takes `position`, and nothing is stored).
    /// The position is read under the same lock as the insert, so two callers (threads
    /// sharing the index) can never see each other's position.
    fn claim(&self, py: Python<'_>, text: &Bound<'_, PyString>) -> PyResult<(u64, Option<u64>)> {
        let t = text_of(text);
        let mut g = self.lock(py);
        let idx = &mut *g;
        let position = with_index!(&*idx, i => i.next_position());
        let hit = maybe_detach(
            py,
            t.len() > DETACH_BYTES,
            || with_index!(idx, i => i.insert_if_new(&t)),
        )
        .map_err(value_error)?;
        Ok((position, hit.map(|h| h.0)))
    }

    /// `insert_if_new` for each text in order (later texts see earlier ones).
    fn insert_if_new_many(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Option<u64>>> {
        let strings = collect_strings(texts)?;
        let texts: Vec<Cow<str>> = strings.iter().map(text_of).collect();
        let mut g = self.lock(py);
        let idx = &mut *g;
        let hits = py
            .detach(|| with_index!(idx, i => i.insert_if_new_many(&texts)))
            .map_err(value_error)?;
        Ok(hits.into_iter().map(|h| h.map(|h| h.0)).collect())
    }

    /// Forget the text stored at `position`; False if there is none.
    fn remove(&self, py: Python<'_>, position: u64) -> bool {
        let mut g = self.lock(py);
        with_index!(&mut *g, i => i.remove(position))
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        let g = self.lock(py);
        with_index!(&*g, i => i.len())
    }

    /// Position the next inserted or checked text will take.
    #[getter]
    fn next_position(&self, py: Python<'_>) -> u64 {
        let g = self.lock(py);
        with_index!(&*g, i => i.next_position())
    }

    /// `(rejected position, position it duplicated)` for every text refused by
    /// `insert_if_new` / `insert_if_new_many`, in order.
    fn duplicates(&self, py: Python<'_>) -> Vec<(u64, u64)> {
        let g = self.lock(py);
        with_index!(&*g, i => i.duplicates().to_vec())
    }

    /// Bytes allocated by the index structures (not counting Python objects).
    fn memory_bytes(&self, py: Python<'_>) -> usize {
        let g = self.lock(py);
        with_index!(&*g, i => i.memory_bytes())
    }

    #[getter]
    fn method(&self, py: Python<'_>) -> &'static str {
        self.with_config(py, |c| c.method.name())
    }

    #[getter]
    fn threshold(&self, py: Python<'_>) -> f64 {
        self.with_config(py, |c| c.threshold)
    }

    #[getter]
    fn ngram(&self, py: Python<'_>) -> u32 {
        self.with_config(py, |c| c.shingling.n())
    }

    #[getter]
    fn shingle(&self, py: Python<'_>) -> &'static str {
        self.with_config(py, |c| c.shingling.kind_name())
    }

    #[getter]
    fn num_perm(&self, py: Python<'_>) -> u32 {
        self.with_config(py, |c| c.num_perm)
    }

    /// LSH bands (None unless the method is MinHash).
    #[getter]
    fn bands(&self, py: Python<'_>) -> Option<u32> {
        self.with_config(py, |c| (c.method == Method::MinHash).then_some(c.bands))
    }

    /// Rows per LSH band (None unless the method is MinHash).
    #[getter]
    fn rows(&self, py: Python<'_>) -> Option<u32> {
        self.with_config(py, |c| (c.method == Method::MinHash).then_some(c.rows))
    }

    #[getter]
    fn verify(&self, py: Python<'_>) -> &'static str {
        self.with_config(py, |c| c.verify.name())
    }

    #[getter]
    fn max_distance(&self, py: Python<'_>) -> u32 {
        self.with_config(py, |c| c.max_distance)
    }

    #[getter]
    fn seed(&self, py: Python<'_>) -> u64 {
        self.with_config(py, |c| c.seed)
    }

    /// Serialise (settings, positions, tables, stored sketches) for resuming later.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let g = self.lock(py);
        let idx = &*g;
        let data = py.detach(|| with_index!(idx, i => i.to_bytes()));
        PyBytes::new(py, &data)
    }

    /// Rebuild an index from `to_bytes` output; ValueError if the data is invalid.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let inner = py
            .detach(|| -> Result<AnyIndex, String> {
                Ok(match peek_config(data)?.method {
                    Method::MinHash => AnyIndex::MinHash(Index::from_bytes(data)?),
                    Method::SimHash => AnyIndex::SimHash(Index::from_bytes(data)?),
                    Method::Exact => AnyIndex::Exact(Index::from_bytes(data)?),
                })
            })
            .map_err(|e| PyValueError::new_err(format!("cannot load similarity index: {e}")))?;
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let ctor = py.get_type::<Self>().getattr("from_bytes")?;
        let data = slf.get().to_bytes(py);
        PyTuple::new(py, [ctor.into_any(), PyTuple::new(py, [data])?.into_any()])
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let g = self.lock(py);
        let c = g.config();
        let len = with_index!(&*g, i => i.len());
        match c.method {
            Method::MinHash => format!(
                "SimilarityIndex(method='minhash', threshold={}, ngram={}, shingle='{}', num_perm={}, \
                 bands={}, rows={}, verify='{}', len={len})",
                c.threshold,
                c.shingling.n(),
                c.shingling.kind_name(),
                c.num_perm,
                c.bands,
                c.rows,
                c.verify.name()
            ),
            Method::SimHash => format!(
                "SimilarityIndex(method='simhash', ngram={}, shingle='{}', max_distance={}, len={len})",
                c.shingling.n(),
                c.shingling.kind_name(),
                c.max_distance
            ),
            Method::Exact => format!("SimilarityIndex(method='exact', len={len})"),
        }
    }
}

/// Register the similarity functions and class on the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(normalize_text, m)?)?;
    m.add_function(wrap_pyfunction!(shingles, m)?)?;
    m.add_function(wrap_pyfunction!(jaccard, m)?)?;
    m.add_function(wrap_pyfunction!(minhash, m)?)?;
    m.add_function(wrap_pyfunction!(minhash_many, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_jaccard, m)?)?;
    m.add_function(wrap_pyfunction!(simhash, m)?)?;
    m.add_function(wrap_pyfunction!(simhash_many, m)?)?;
    m.add_function(wrap_pyfunction!(hamming, m)?)?;
    m.add_function(wrap_pyfunction!(lsh_params, m)?)?;
    m.add_function(wrap_pyfunction!(lsh_probability, m)?)?;
    m.add_class::<SimilarityIndex>()?;
    m.add("DEFAULT_SEED", DEFAULT_SEED)?;
    Ok(())
}
