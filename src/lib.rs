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

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_hex, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_many, m)?)?;
    py_similarity::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
