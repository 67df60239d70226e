//! Tokenize a JSONL file's text field with the fast BPE: chunks of whole lines, documents
//! in parallel, ids in document order.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;

use crate::bpe::Bpe;

const CHUNK: usize = 8 << 20;

/// (all ids, token count per non-blank line). A line whose field is missing or not a string
/// counts as an empty document, so lengths stay aligned with the file's records.
pub fn encode_jsonl(bpe: &Bpe, path: &Path, field: &str) -> std::io::Result<(Vec<u32>, Vec<u32>)> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let (mut ids, mut lengths) = (Vec::new(), Vec::new());
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    loop {
        buf.clear();
        (&mut reader).take(CHUNK as u64).read_to_end(&mut buf)?;
        if buf.is_empty() {
            break;
        }
        if buf.last() != Some(&b'\n') {
            reader.read_until(b'\n', &mut buf)?;
        }
        let lines: Vec<&[u8]> = buf
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        let encoded: Vec<Vec<u32>> = lines
            .par_iter()
            .with_max_len(16)
            .map(|line| match field_text(line, field) {
                Some(text) => bpe.encode(&text),
                None => Vec::new(),
            })
            .collect();
        for e in encoded {
            lengths.push(e.len() as u32);
            ids.extend_from_slice(&e);
        }
    }
    Ok((ids, lengths))
}

fn field_text(line: &[u8], field: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Any<'a>(
        #[serde(borrow)]
        std::collections::HashMap<std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue>,
    );
    let map: Any = serde_json::from_slice(line).ok()?;
    // Plain-text files prepared beside records keep their text under "text".
    let raw = map.0.get(field).or_else(|| map.0.get("text"))?;
    serde_json::from_str::<String>(raw.get()).ok()
}
