//! Compiled core of agentic-synth.
//!
//! Kept small and free of Python types where it can be: each module holds plain
//! Rust logic with its own unit tests, and this file only binds it to Python.

mod config;
mod digest;
mod exact_index;
mod fpset;
mod hashing;
mod index;
mod lsh;
mod minhash;
mod minhash_index;
mod normalize;
mod py_similarity;
mod samples;
mod seq;
mod serial;
mod shingle;
mod simhash;
mod simhash_index;
mod store;
mod table;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// 128-bit xxh3 fingerprint of `data`, as 16 big-endian bytes.
#[pyfunction]
fn fingerprint<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &digest::fingerprint128(data).to_be_bytes())
}

/// 128-bit xxh3 fingerprint of `data`, as 32 lowercase hex digits.
#[pyfunction]
fn fingerprint_hex(data: &[u8]) -> String {
    digest::to_hex(digest::fingerprint128(data))
}

/// Fingerprints of many byte strings at once; the hashing runs without the GIL.
#[pyfunction]
fn fingerprint_many<'py>(py: Python<'py>, items: Vec<Vec<u8>>) -> Vec<Bound<'py, PyBytes>> {
    let digests: Vec<u128> =
        py.detach(|| items.iter().map(|b| digest::fingerprint128(b)).collect());
    digests
        .into_iter()
        .map(|d| PyBytes::new(py, &d.to_be_bytes()))
        .collect()
}

/// Sample identities for the response cache: `next(fingerprint)` is how many times
/// that exact request was seen before in this job (see `samples.rs`).
#[pyclass(module = "agentic_synth._core")]
struct SampleCounter {
    inner: samples::SampleCounter,
}

#[pymethods]
impl SampleCounter {
    #[new]
    fn new() -> Self {
        Self {
            inner: samples::SampleCounter::default(),
        }
    }

    /// Earlier occurrences of the request whose 16-byte fingerprint is `fp`; counts this one.
    fn next(&mut self, fp: &[u8]) -> PyResult<u32> {
        let head: [u8; 8] = fp
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("fingerprint too short"))?;
        Ok(self.inner.next(u64::from_be_bytes(head)))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_hex, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_many, m)?)?;
    m.add_class::<SampleCounter>()?;
    py_similarity::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
