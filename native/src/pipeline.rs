//! The per-document data-preparation pass: normalize, filter, hash, sign. Batch in, batch
//! out, documents in parallel. Cross-document work (exact and near dedup) happens on the
//! hashes and signatures afterwards, so a shard can be processed anywhere.

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

use crate::filters::{self, FilterConfig};
use crate::minhash::MinHasher;
use crate::text::{normalize, Form};

pub struct PipelineConfig {
    pub form: Form,
    pub strip_markup: bool,
    pub filters: FilterConfig,
    pub minhash: Option<MinHasher>,
}

pub struct BatchResult {
    /// Final text of kept documents ("" for dropped ones).
    pub texts: Vec<String>,
    /// Why each dropped document was dropped (None: kept).
    pub reasons: Vec<Option<&'static str>>,
    /// xxh3-64 of each kept document's final text (exact dedup key).
    pub exact: Vec<u64>,
    /// MinHash signatures, row-major (doc, perm); zeros for dropped documents.
    pub signatures: Vec<u32>,
}

/// A kept document.
pub struct Cleaned {
    pub text: String,
    /// xxh3-64 of the text (exact dedup key).
    pub exact: u64,
    pub chars: usize,
    /// MinHash signature (empty when near dedup is off).
    pub signature: Vec<u32>,
}

/// One document: normalize, filter, hash and sign, or the reason it was dropped. The
/// filters' word split is reused for the signature unless C4 rewrote the text.
pub fn clean(raw: &str, cfg: &PipelineConfig) -> Result<Cleaned, &'static str> {
    let text = normalize(raw, cfg.form, cfg.strip_markup);
    if text.is_empty() {
        return Err("empty");
    }
    let filters::Filtered {
        modified,
        words,
        keys,
    } = filters::apply(&text, &cfg.filters, cfg.minhash.is_some())?;
    let signature = match &cfg.minhash {
        Some(mh) => {
            let mut sig = vec![0u32; mh.num_perm()];
            match (&modified, &keys) {
                (None, Some(keys)) => mh.signature_of_keys(keys, &mut sig),
                (Some(m), _) => mh.signature(m, &mut sig),
                (None, None) => mh.signature(&text, &mut sig),
            }
            sig
        }
        None => Vec::new(),
    };
    let ascii = words.map(|w| w.ascii);
    drop(keys);
    let (text, chars) = match modified {
        Some(m) => {
            let chars = m.chars().count();
            (m, chars)
        }
        None => {
            let chars = if ascii.unwrap_or_else(|| text.is_ascii()) {
                text.len()
            } else {
                text.chars().count()
            };
            (text, chars)
        }
    };
    let exact = xxh3_64(text.as_bytes());
    Ok(Cleaned {
        text,
        exact,
        chars,
        signature,
    })
}

pub fn process<S: AsRef<str> + Sync>(texts: &[S], cfg: &PipelineConfig) -> BatchResult {
    let per_doc: Vec<Result<Cleaned, &'static str>> =
        texts.par_iter().map(|t| clean(t.as_ref(), cfg)).collect();
    let p = cfg.minhash.as_ref().map_or(0, MinHasher::num_perm);
    let mut out = BatchResult {
        texts: Vec::with_capacity(per_doc.len()),
        reasons: Vec::with_capacity(per_doc.len()),
        exact: Vec::with_capacity(per_doc.len()),
        signatures: Vec::with_capacity(per_doc.len() * p),
    };
    for doc in per_doc {
        match doc {
            Ok(c) => {
                out.texts.push(c.text);
                out.reasons.push(None);
                out.exact.push(c.exact);
                out.signatures.extend_from_slice(&c.signature);
            }
            Err(reason) => {
                out.texts.push(String::new());
                out.reasons.push(Some(reason));
                out.exact.push(0);
                out.signatures.extend(std::iter::repeat_n(0, p));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::LengthFilter;

    #[test]
    fn batch_keeps_drops_and_hashes() {
        let cfg = PipelineConfig {
            form: Form::Nfc,
            strip_markup: true,
            filters: FilterConfig {
                length: Some(LengthFilter {
                    min_chars: 5,
                    max_chars: 1000,
                    min_words: 2,
                    max_words: 1000,
                }),
                ..Default::default()
            },
            minhash: Some(MinHasher::new(8, 2, 3)),
        };
        let out = process(&["  Hello   world  ", "", "x", "<p>Hello world</p>"], &cfg);
        assert_eq!(out.texts[0], "Hello world");
        assert_eq!(
            out.reasons,
            vec![None, Some("empty"), Some("too_short"), None]
        );
        assert_eq!(out.exact[0], out.exact[3]); // same text once normalized
        assert_eq!(out.signatures.len(), 4 * 8);
        assert!(out.signatures[8..16].iter().all(|&v| v == 0));
    }
}
