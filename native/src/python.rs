//! PyO3 bindings: batch entry points that release the GIL while they work.

use crate::hashing;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use std::path::PathBuf;

/// 128-bit xxh3 of `data` as 32 hex characters.
#[pyfunction]
fn hash_bytes(py: Python<'_>, data: &[u8]) -> String {
    py.detach(|| hashing::hex128(hashing::hash_bytes(data)))
}

/// 64-bit xxh3 of each text's UTF-8 bytes, in parallel.
#[pyfunction]
fn hash_texts(py: Python<'_>, texts: Vec<String>) -> Vec<u64> {
    py.detach(|| hashing::hash_texts(&texts))
}

/// (hex digest, size in bytes) for each file, hashed in parallel.
#[pyfunction]
fn hash_files(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Vec<(String, u64)>> {
    let result = py.detach(|| hashing::hash_files(&paths));
    match result {
        Ok(items) => Ok(items.into_iter().map(|(d, s)| (hashing::hex128(d), s)).collect()),
        Err((path, err)) => Err(PyOSError::new_err(format!("cannot hash {}: {err}", path.display()))),
    }
}

#[pymodule]
fn _lmfast_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(hash_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(hash_texts, m)?)?;
    m.add_function(wrap_pyfunction!(hash_files, m)?)?;
    Ok(())
}
