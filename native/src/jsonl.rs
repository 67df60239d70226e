//! JSONL shards processed without leaving Rust: parse each line, pull out the text field,
//! run the per-document pass (normalize, filter, hash, sign) and write the kept record back
//! whole (every field, the cleaned text in place of the original, provenance added). Python
//! receives one output buffer and small per-document arrays, never a string per document.

use std::borrow::Cow;
use std::fmt;

use rayon::prelude::*;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::pipeline::{clean, PipelineConfig};

/// The provenance key added to every kept record.
pub const SOURCE_KEY: &str = "_source";

/// A JSON object's fields in file order, values left unparsed.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// What happened to one line.
pub enum Outcome {
    /// Blank line: not a record.
    Blank,
    /// Not a JSON object (the parser's message).
    Malformed(String),
    Dropped {
        id: String,
        reason: &'static str,
    },
    Kept {
        id: String,
        record: Vec<u8>,
        exact: u64,
        chars: u32,
        signature: Vec<u32>,
    },
}

pub struct LineResult {
    pub line: u64,
    pub invalid_utf8: bool,
    pub text_bytes: u64,
    /// Characters of the text as read, so the share of text that filtering removes can be
    /// told in the same unit as the kept documents' lengths.
    pub text_chars: u64,
    pub outcome: Outcome,
}

pub struct ShardConfig<'a> {
    pub pipeline: &'a PipelineConfig,
    pub text_field: &'a str,
    pub id_field: &'a str,
    /// Shown in `_source.file` and in ids of records without one.
    pub file: &'a str,
}

/// Process every line of `buf` (whole lines; `first_line` is the 1-based number of the
/// first), documents in parallel, results in input order.
pub fn process(buf: &[u8], first_line: u64, cfg: &ShardConfig) -> Vec<LineResult> {
    let mut lines: Vec<(u64, &[u8])> = Vec::new();
    let mut start = 0usize;
    let mut n = first_line;
    for end in memchr::memchr_iter(b'\n', buf) {
        lines.push((n, &buf[start..end]));
        start = end + 1;
        n += 1;
    }
    if start < buf.len() {
        lines.push((n, &buf[start..]));
    }
    // Small chunks balance many short documents against the occasional huge one.
    lines
        .par_iter()
        .with_max_len(64)
        .map(|&(n, line)| process_line(line, n, cfg))
        .collect()
}

fn process_line(raw: &[u8], n: u64, cfg: &ShardConfig) -> LineResult {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut res = LineResult {
        line: n,
        invalid_utf8: false,
        text_bytes: 0,
        text_chars: 0,
        outcome: Outcome::Blank,
    };
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return res;
    }
    let owned: String;
    let line: &str = match std::str::from_utf8(raw) {
        Ok(s) => s,
        Err(_) => {
            // As the Python reader does: count it, replace the bad bytes, keep the record.
            res.invalid_utf8 = true;
            owned = String::from_utf8_lossy(raw).into_owned();
            &owned
        }
    };
    let fields: Fields = match serde_json::from_str(line) {
        Ok(f) => f,
        Err(e) => {
            res.outcome = Outcome::Malformed(e.to_string());
            return res;
        }
    };
    let id = record_id(&fields, cfg, n);
    let text_pos = fields.0.iter().position(|(k, _)| k == cfg.text_field);
    let text: Option<Cow<str>> =
        text_pos.and_then(|i| serde_json::from_str::<Cow<str>>(fields.0[i].1.get()).ok());
    let Some(text) = text else {
        res.outcome = Outcome::Dropped {
            id,
            reason: "no_text",
        };
        return res;
    };
    res.text_bytes = text.len() as u64;
    res.text_chars = if text.is_ascii() {
        text.len() as u64
    } else {
        text.chars().count() as u64
    };
    match clean(&text, cfg.pipeline) {
        Err(reason) => res.outcome = Outcome::Dropped { id, reason },
        Ok(c) => {
            let record = write_record(&fields, text_pos.unwrap_or(0), &c.text, cfg.file, n);
            res.outcome = Outcome::Kept {
                id,
                record,
                exact: c.exact,
                chars: c.chars.min(u32::MAX as usize) as u32,
                signature: c.signature,
            };
        }
    }
    res
}

/// The record's id: its `id_field` when that is a string or number, else `file:line`.
fn record_id(fields: &Fields, cfg: &ShardConfig, n: u64) -> String {
    if let Some((_, v)) = fields.0.iter().find(|(k, _)| k == cfg.id_field) {
        let raw = v.get();
        if raw.starts_with('"') {
            if let Ok(s) = serde_json::from_str::<String>(raw) {
                return s;
            }
        } else if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return raw.to_string();
        }
    }
    format!("{}:{}", cfg.file, n)
}

/// The record with every field in its order, the text replaced and `_source` (re)written.
fn write_record(fields: &Fields, text_pos: usize, text: &str, file: &str, line: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64 + fields.0.len() * 16);
    out.push(b'{');
    for (i, (k, v)) in fields.0.iter().enumerate() {
        if k == SOURCE_KEY {
            continue;
        }
        serde_json::to_writer(&mut out, k).expect("writing to a Vec cannot fail");
        out.push(b':');
        if i == text_pos {
            serde_json::to_writer(&mut out, text).expect("writing to a Vec cannot fail");
        } else {
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b',');
    }
    out.extend_from_slice(b"\"_source\":{\"file\":");
    serde_json::to_writer(&mut out, file).expect("writing to a Vec cannot fail");
    out.extend_from_slice(format!(",\"line\":{line}}}}}\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::{FilterConfig, LengthFilter};
    use crate::text::Form;

    fn cfg() -> PipelineConfig {
        PipelineConfig {
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
            minhash: None,
        }
    }

    #[test]
    fn keeps_fields_and_reports_problems() {
        let p = cfg();
        let c = ShardConfig {
            pipeline: &p,
            text_field: "text",
            id_field: "id",
            file: "a.jsonl",
        };
        let buf = b"{\"id\":\"x\",\"text\":\"  Hello   world \",\"meta\":{\"k\":[1,2]}}\n\n{bad\n{\"text\":\"x\"}\n[1]\n{\"id\":7,\"text\":\"caf\xff ok now\"}";
        let out = process(buf, 10, &c);
        assert_eq!(out.len(), 6);
        match &out[0].outcome {
            Outcome::Kept { id, record, .. } => {
                assert_eq!(id, "x");
                assert_eq!(
                    std::str::from_utf8(record).unwrap(),
                    "{\"id\":\"x\",\"text\":\"Hello world\",\"meta\":{\"k\":[1,2]},\"_source\":{\"file\":\"a.jsonl\",\"line\":10}}\n"
                );
            }
            _ => panic!("first record should be kept"),
        }
        assert!(matches!(out[1].outcome, Outcome::Blank));
        assert!(matches!(out[2].outcome, Outcome::Malformed(_)));
        match &out[3].outcome {
            Outcome::Dropped { id, reason } => {
                assert_eq!(id, "a.jsonl:13");
                assert_eq!(*reason, "too_short");
            }
            _ => panic!("short record should be dropped"),
        }
        assert!(matches!(out[4].outcome, Outcome::Malformed(_)));
        assert!(out[5].invalid_utf8);
        assert!(matches!(&out[5].outcome, Outcome::Kept { id, .. } if id == "7"));
    }
}
