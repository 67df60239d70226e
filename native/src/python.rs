//! PyO3 bindings: batch entry points that release the GIL while they work.

use crate::filters::{
    bad_word_keys, C4Quality, FilterConfig, FineWebQuality, GopherQuality, GopherRepetition,
    LengthFilter, Script,
};
use crate::hashing;
use crate::minhash::{self, MinHasher};
use crate::pipeline::{self, PipelineConfig};
use crate::text::Form;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
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
        Ok(items) => Ok(items
            .into_iter()
            .map(|(d, s)| (hashing::hex128(d), s))
            .collect()),
        Err((path, err)) => Err(PyOSError::new_err(format!(
            "cannot hash {}: {err}",
            path.display()
        ))),
    }
}

fn section<'py>(cfg: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
    match cfg.get_item(key)? {
        Some(v) if !v.is_none() => Ok(Some(v.cast_into::<PyDict>()?)),
        _ => Ok(None),
    }
}

fn get<'py, T>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py>,
    for<'a> <T as FromPyObject<'a, 'py>>::Error: Into<PyErr>,
{
    match d.get_item(key)? {
        Some(v) => v.extract::<T>().map_err(|e| {
            let err: PyErr = e.into();
            PyValueError::new_err(format!("{key}: {err}"))
        }),
        None => Err(PyValueError::new_err(format!("missing setting {key}"))),
    }
}

fn parse_config(cfg: &Bound<'_, PyDict>) -> PyResult<PipelineConfig> {
    let form = match get::<String>(cfg, "normalization")?.as_str() {
        "nfc" => Form::Nfc,
        "nfkc" => Form::Nfkc,
        "none" => Form::None,
        other => return Err(PyValueError::new_err(format!("normalization={other:?}"))),
    };
    let mut filters = FilterConfig::default();
    if let Some(d) = section(cfg, "length")? {
        filters.length = Some(LengthFilter {
            min_chars: get(&d, "min_chars")?,
            max_chars: get(&d, "max_chars")?,
            min_words: get(&d, "min_words")?,
            max_words: get(&d, "max_words")?,
        });
    }
    if let Some(d) = section(cfg, "gopher_quality")? {
        filters.gopher_quality = Some(GopherQuality {
            min_doc_words: get(&d, "min_doc_words")?,
            max_doc_words: get(&d, "max_doc_words")?,
            min_avg_word_length: get(&d, "min_avg_word_length")?,
            max_avg_word_length: get(&d, "max_avg_word_length")?,
            max_symbol_word_ratio: get(&d, "max_symbol_word_ratio")?,
            max_bullet_lines_ratio: get(&d, "max_bullet_lines_ratio")?,
            max_ellipsis_lines_ratio: get(&d, "max_ellipsis_lines_ratio")?,
            min_alpha_words_ratio: get(&d, "min_alpha_words_ratio")?,
            min_stop_words: get(&d, "min_stop_words")?,
        });
    }
    if let Some(d) = section(cfg, "gopher_repetition")? {
        filters.gopher_repetition = Some(GopherRepetition {
            dup_line_frac: get(&d, "dup_line_frac")?,
            dup_para_frac: get(&d, "dup_para_frac")?,
            dup_line_char_frac: get(&d, "dup_line_char_frac")?,
            dup_para_char_frac: get(&d, "dup_para_char_frac")?,
            top_n_grams: get(&d, "top_n_grams")?,
            dup_n_grams: get(&d, "dup_n_grams")?,
        });
    }
    if let Some(d) = section(cfg, "c4")? {
        filters.c4 = Some(C4Quality {
            min_sentences: get(&d, "min_sentences")?,
            min_words_per_line: get(&d, "min_words_per_line")?,
            max_word_length: get(&d, "max_word_length")?,
            filter_no_terminal_punct: get(&d, "filter_no_terminal_punct")?,
        });
    }
    if let Some(d) = section(cfg, "fineweb")? {
        filters.fineweb = Some(FineWebQuality {
            line_punct_thr: get(&d, "line_punct_thr")?,
            short_line_thr: get(&d, "short_line_thr")?,
            short_line_length: get(&d, "short_line_length")?,
            char_duplicates_ratio: get(&d, "char_duplicates_ratio")?,
            new_line_ratio: get(&d, "new_line_ratio")?,
        });
    }
    if let Some(words) = cfg.get_item("bad_words")? {
        if !words.is_none() {
            let list: Vec<String> = words.extract()?;
            filters.bad_words = Some(bad_word_keys(list.iter().map(String::as_str)));
        }
    }
    if let Some(d) = section(cfg, "script")? {
        let name: String = get(&d, "name")?;
        let script = match name.as_str() {
            "latin" => Script::Latin,
            "cyrillic" => Script::Cyrillic,
            "greek" => Script::Greek,
            "arabic" => Script::Arabic,
            "cjk" => Script::Cjk,
            other => return Err(PyValueError::new_err(format!("script={other:?}"))),
        };
        filters.script = Some((script, get(&d, "min_fraction")?));
    }
    let minhash = match section(cfg, "minhash")? {
        Some(d) => Some(MinHasher::new(
            get(&d, "num_perm")?,
            get(&d, "ngram")?,
            get(&d, "seed")?,
        )),
        None => None,
    };
    Ok(PipelineConfig {
        form,
        strip_markup: get(cfg, "strip_markup")?,
        filters,
        minhash,
    })
}

/// Normalize, filter, hash and MinHash-sign a batch of documents in parallel.
/// Returns (texts, reasons, exact hashes, signatures as little-endian u32 bytes).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn process_batch<'py>(
    py: Python<'py>,
    texts: Vec<String>,
    config: &Bound<'py, PyDict>,
) -> PyResult<(
    Vec<String>,
    Vec<Option<&'static str>>,
    Vec<u64>,
    Bound<'py, PyBytes>,
)> {
    let cfg = parse_config(config)?;
    let out = py.detach(|| pipeline::process(&texts, &cfg));
    let sig_bytes: Vec<u8> = out
        .signatures
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    Ok((
        out.texts,
        out.reasons,
        out.exact,
        PyBytes::new(py, &sig_bytes),
    ))
}

/// Process whole JSONL lines (`first_line` numbers the first) without a Python string per
/// document: returns a dict with the kept records (`records`, bytes, newline-terminated) and
/// per-document arrays for dedup and the audit tables.
#[pyfunction]
#[pyo3(signature = (buf, first_line, file, text_field, id_field, config))]
fn process_jsonl<'py>(
    py: Python<'py>,
    buf: &[u8],
    first_line: u64,
    file: &str,
    text_field: &str,
    id_field: &str,
    config: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    use crate::jsonl::{self, Outcome, ShardConfig};
    let cfg = parse_config(config)?;
    let shard = ShardConfig {
        pipeline: &cfg,
        text_field,
        id_field,
        file,
    };
    let results = py.detach(|| jsonl::process(buf, first_line, &shard));
    let (mut records, mut kept_ids, mut kept_lines) = (Vec::new(), Vec::new(), Vec::new());
    let (mut exact, mut chars, mut sigs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut drop_ids, mut drop_lines, mut drop_reasons) = (Vec::new(), Vec::new(), Vec::new());
    let mut issues: Vec<(&str, u64, String)> = Vec::new();
    let (mut documents, mut text_bytes, mut text_chars) = (0u64, 0u64, 0u64);
    for r in results {
        if r.invalid_utf8 {
            issues.push(("invalid_utf8", r.line, "bytes replaced with U+FFFD".into()));
        }
        text_bytes += r.text_bytes;
        text_chars += r.text_chars;
        match r.outcome {
            Outcome::Blank => {}
            Outcome::Malformed(msg) => issues.push(("malformed_json", r.line, msg)),
            Outcome::Dropped { id, reason } => {
                documents += 1;
                drop_ids.push(id);
                drop_lines.push(r.line);
                drop_reasons.push(reason);
            }
            Outcome::Kept {
                id,
                record,
                exact: h,
                chars: c,
                signature,
            } => {
                documents += 1;
                records.extend_from_slice(&record);
                kept_ids.push(id);
                kept_lines.push(r.line);
                exact.extend_from_slice(&h.to_le_bytes());
                chars.extend_from_slice(&c.to_le_bytes());
                sigs.extend(signature.iter().flat_map(|v| v.to_le_bytes()));
            }
        }
    }
    let d = PyDict::new(py);
    d.set_item("records", PyBytes::new(py, &records))?;
    d.set_item("kept_ids", kept_ids)?;
    d.set_item("kept_lines", kept_lines)?;
    d.set_item("exact", PyBytes::new(py, &exact))?;
    d.set_item("chars", PyBytes::new(py, &chars))?;
    d.set_item("signatures", PyBytes::new(py, &sigs))?;
    d.set_item("drop_ids", drop_ids)?;
    d.set_item("drop_lines", drop_lines)?;
    d.set_item("drop_reasons", drop_reasons)?;
    d.set_item("issues", issues)?;
    d.set_item("documents", documents)?;
    d.set_item("text_bytes", text_bytes)?;
    d.set_item("text_chars", text_chars)?;
    Ok(d)
}

/// Byte-level BPE encoder with the same ids as `tokenizers` for the tokenizers it accepts
/// (the constructor raises ValueError naming what it does not support).
#[pyclass(frozen, module = "lmfast_native")]
struct Bpe {
    inner: crate::bpe::Bpe,
}

#[pymethods]
impl Bpe {
    #[new]
    fn new(py: Python<'_>, tokenizer_json: &str) -> PyResult<Self> {
        py.detach(|| crate::bpe::Bpe::from_json(tokenizer_json))
            .map(|inner| Self { inner })
            .map_err(PyValueError::new_err)
    }

    /// Ids of each text, in parallel (as `encode_batch(..., add_special_tokens=False)`).
    fn encode_batch(&self, py: Python<'_>, texts: Vec<String>) -> Vec<Vec<u32>> {
        py.detach(|| self.inner.encode_batch(&texts))
    }

    /// Ids of the string field `field` of every line of a JSONL file, without a Python
    /// string per document: (ids as u32 LE bytes, per-document token counts as u32 LE).
    fn encode_jsonl<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        field: &str,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let (ids, lengths) = py
            .detach(|| crate::tokenize::encode_jsonl(&self.inner, &path, field))
            .map_err(|e| PyValueError::new_err(format!("{}: {e}", path.display())))?;
        let ids: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
        let lengths: Vec<u8> = lengths.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok((PyBytes::new(py, &ids), PyBytes::new(py, &lengths)))
    }
}

fn check_signatures(
    signatures: &[u8],
    num_perm: usize,
    bands: usize,
    rows: usize,
) -> PyResult<Vec<u32>> {
    if bands * rows > num_perm || num_perm == 0 || !signatures.len().is_multiple_of(4 * num_perm) {
        return Err(PyValueError::new_err(format!(
            "need bands x rows <= num_perm and whole signatures; got {bands} x {rows}, {num_perm} permutations, {} bytes",
            signatures.len()
        )));
    }
    Ok(signatures
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// LSH band keys of MinHash signatures (little-endian u32, row-major): `bands` u64 keys per
/// document, little-endian, row-major. The keys `lsh_clusters` buckets on, for engines that
/// group documents elsewhere.
#[pyfunction]
fn band_keys<'py>(
    py: Python<'py>,
    signatures: &[u8],
    num_perm: usize,
    bands: usize,
    rows: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let sigs = check_signatures(signatures, num_perm, bands, rows)?;
    let keys = py.detach(|| minhash::band_keys(&sigs, num_perm, bands, rows));
    let bytes: Vec<u8> = keys.iter().flat_map(|k| k.to_le_bytes()).collect();
    Ok(PyBytes::new(py, &bytes))
}

/// Cluster documents by LSH over MinHash signatures (little-endian u32, row-major).
/// Returns each document's representative index (its own index when it is kept).
#[pyfunction]
#[pyo3(signature = (signatures, num_perm, bands, rows, threshold=0.0))]
fn lsh_clusters(
    py: Python<'_>,
    signatures: &[u8],
    num_perm: usize,
    bands: usize,
    rows: usize,
    threshold: f64,
) -> PyResult<Vec<u32>> {
    let sigs = check_signatures(signatures, num_perm, bands, rows)?;
    Ok(py.detach(|| minhash::lsh_clusters(&sigs, num_perm, bands, rows, threshold)))
}

#[pymodule]
fn _lmfast_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(hash_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(hash_texts, m)?)?;
    m.add_function(wrap_pyfunction!(hash_files, m)?)?;
    m.add_function(wrap_pyfunction!(process_batch, m)?)?;
    m.add_function(wrap_pyfunction!(lsh_clusters, m)?)?;
    m.add_function(wrap_pyfunction!(band_keys, m)?)?;
    m.add_function(wrap_pyfunction!(process_jsonl, m)?)?;
    m.add_class::<Bpe>()?;
    Ok(())
}
