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

/// One document: the normalized, filtered text and its exact hash, or the drop reason.
pub fn clean(raw: &str, cfg: &PipelineConfig) -> Result<(String, u64), &'static str> {
    let text = normalize(raw, cfg.form, cfg.strip_markup);
    if text.is_empty() {
        return Err("empty");
    }
    let final_text = filters::apply(&text, &cfg.filters)?.unwrap_or(text);
    let h = xxh3_64(final_text.as_bytes());
    Ok((final_text, h))
}

pub fn process<S: AsRef<str> + Sync>(texts: &[S], cfg: &PipelineConfig) -> BatchResult {
    let per_doc: Vec<(String, Option<&'static str>, u64)> = texts
        .par_iter()
        .map(|t| match clean(t.as_ref(), cfg) {
            Ok((text, h)) => (text, None, h),
            Err(reason) => (String::new(), Some(reason), 0),
        })
        .collect();
    let mut out = BatchResult {
        texts: Vec::with_capacity(per_doc.len()),
        reasons: Vec::with_capacity(per_doc.len()),
        exact: Vec::with_capacity(per_doc.len()),
        signatures: Vec::new(),
    };
    for (t, r, h) in per_doc {
        out.texts.push(t);
        out.reasons.push(r);
        out.exact.push(h);
    }
    if let Some(mh) = &cfg.minhash {
        out.signatures = mh.signatures(&out.texts);
        let p = mh.num_perm();
        for (i, r) in out.reasons.iter().enumerate() {
            if r.is_some() {
                out.signatures[i * p..(i + 1) * p].fill(0);
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
