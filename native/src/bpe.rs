//! Byte-level BPE encoding, token for token the same as Hugging Face `tokenizers` for the
//! tokenizers LMFast's models use (GPT-2 / SmolLM2, Llama-3 and Qwen2 style), built from a
//! `tokenizer.json`. Anything it does not reproduce exactly (other models, normalizers or
//! pre-tokenizers, added tokens with strip flags) is refused with the reason, and the caller
//! falls back to `tokenizers`.
//!
//! Speed comes from what `tokenizers` does and this does not need: no offsets or alignment
//! bookkeeping, a DFA regex (`regex` crate) instead of a backtracking one, with the one
//! look-ahead of these patterns, `\s+(?!\S)`, applied after the match, and a per-thread cache
//! of pieces already encoded. Merging is the classic lowest-rank-pair-first BPE, by scan for
//! short pieces and with a heap over a linked list for long ones (linear-log time).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;
use regex::Regex;
use rustc_hash::FxHashMap;
use serde_json::Value;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LOOKAHEAD: &str = r"\s+(?!\S)|\s+";
const NO_TOKEN: u32 = u32::MAX;
const CACHE_MAX_PIECE: usize = 64;
const CACHE_MAX_ENTRIES: usize = 1 << 16;

enum Step {
    /// Each numeric character becomes its own piece (Digits, individual_digits).
    Digits,
    /// Matches and the text between them become pieces (Split, behavior Isolated).
    Split {
        re: Regex,
        lookahead: bool,
        newline_alt: bool,
    },
}

/// Tells encoders apart in the per-thread cache.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct Bpe {
    id: u64,
    nfc: bool,
    steps: Vec<Step>,
    added: Option<(AhoCorasick, Vec<u32>)>,
    byte_token: [u32; 256],
    merges: FxHashMap<(u32, u32), (u32, u32)>, // (left, right) -> (rank, merged id)
    whole: Option<FxHashMap<Vec<u8>, u32>>,    // ignore_merges: pieces found whole
}

fn bytes_to_unicode() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        out[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
    }
    out
}

fn unsupported<T>(why: impl Into<String>) -> Result<T, String> {
    Err(why.into())
}

fn regex_step(pattern: &str) -> Result<Step, String> {
    // `\s+(?!\S)|\s+` is the only look-around these tokenizers use: match `\s+` and give the
    // last whitespace character back when a non-space follows (see `split`).
    let lookahead = pattern.ends_with(LOOKAHEAD);
    let core = if lookahead {
        format!("{}\\s+", &pattern[..pattern.len() - LOOKAHEAD.len()])
    } else {
        pattern.to_string()
    };
    if core.contains("(?=") || core.contains("(?!") || core.contains("(?<") {
        return unsupported(format!("pre-tokenizer regex with look-around: {pattern}"));
    }
    let re = Regex::new(&core).map_err(|e| format!("pre-tokenizer regex {pattern:?}: {e}"))?;
    Ok(Step::Split {
        re,
        lookahead,
        // Llama-3 / Qwen2 match whitespace ending in newlines with `\s*[\r\n]+` first.
        newline_alt: core.contains(r"\s*[\r\n]+"),
    })
}

/// Appends the steps of `pt`; returns whether a ByteLevel pre-tokenizer was among them.
fn pre_steps(pt: &Value, out: &mut Vec<Step>) -> Result<bool, String> {
    let mut byte_level = false;
    match pt.get("type").and_then(Value::as_str) {
        Some("Sequence") => {
            for p in pt["pretokenizers"].as_array().into_iter().flatten() {
                byte_level |= pre_steps(p, out)?;
            }
        }
        Some("ByteLevel") => {
            byte_level = true;
            if pt.get("add_prefix_space").and_then(Value::as_bool) == Some(true) {
                return unsupported("ByteLevel add_prefix_space");
            }
            if pt.get("use_regex").and_then(Value::as_bool) != Some(false) {
                out.push(regex_step(GPT2_PATTERN)?);
            }
        }
        Some("Digits") => {
            if pt.get("individual_digits").and_then(Value::as_bool) != Some(true) {
                return unsupported("Digits without individual_digits");
            }
            out.push(Step::Digits);
        }
        Some("Split") => {
            let pattern = pt["pattern"]["Regex"]
                .as_str()
                .ok_or("Split with a string pattern")?;
            if pt.get("behavior").and_then(Value::as_str) != Some("Isolated")
                || pt.get("invert").and_then(Value::as_bool) == Some(true)
            {
                return unsupported("Split other than Isolated");
            }
            out.push(regex_step(pattern)?);
        }
        other => return unsupported(format!("pre-tokenizer {other:?}")),
    }
    Ok(byte_level)
}

impl Bpe {
    /// Build from a `tokenizer.json`; Err says why this tokenizer needs `tokenizers`.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let t: Value = serde_json::from_str(json).map_err(|e| format!("tokenizer.json: {e}"))?;
        let model = &t["model"];
        if model.get("type").and_then(Value::as_str) != Some("BPE") {
            return unsupported(format!("model {:?}", model.get("type")));
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if model
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return unsupported(key);
            }
        }
        if model.get("dropout").is_some_and(|d| !d.is_null()) {
            return unsupported("BPE dropout");
        }
        let nfc = match &t["normalizer"] {
            Value::Null => false,
            n if n.get("type").and_then(Value::as_str) == Some("NFC") => true,
            n => return unsupported(format!("normalizer {:?}", n.get("type"))),
        };
        let mut steps = Vec::new();
        let byte_level = match &t["pre_tokenizer"] {
            Value::Null => false,
            pt => pre_steps(pt, &mut steps)?,
        };
        if !byte_level {
            return unsupported("no ByteLevel pre-tokenizer: not a byte-level BPE");
        }
        let vocab: FxHashMap<String, u32> =
            serde_json::from_value(model["vocab"].clone()).map_err(|e| format!("vocab: {e}"))?;
        let chars = bytes_to_unicode();
        let mut byte_of: FxHashMap<char, u8> = FxHashMap::default();
        for (b, c) in chars.iter().enumerate() {
            byte_of.insert(*c, b as u8);
        }
        // A byte without a token is skipped, as `tokenizers` does when there is no unk.
        let mut byte_token = [NO_TOKEN; 256];
        for (b, c) in chars.iter().enumerate() {
            if let Some(&id) = vocab.get(&c.to_string()) {
                byte_token[b] = id;
            }
        }
        if byte_token.iter().filter(|&&t| t != NO_TOKEN).count() < 200 {
            return unsupported("most bytes have no token: not byte-level");
        }
        if model.get("unk_token").is_some_and(|u| !u.is_null()) && byte_token.contains(&NO_TOKEN) {
            return unsupported("unk token with bytes missing from the vocab");
        }
        let mut merges = FxHashMap::default();
        for (rank, m) in model["merges"]
            .as_array()
            .ok_or("merges")?
            .iter()
            .enumerate()
        {
            let (a, b) = match m {
                Value::String(s) => s.split_once(' ').ok_or("merge without a space")?,
                Value::Array(p) if p.len() == 2 => (
                    p[0].as_str().ok_or("merge pair")?,
                    p[1].as_str().ok_or("merge pair")?,
                ),
                _ => return unsupported("merge format"),
            };
            let (Some(&ia), Some(&ib), Some(&im)) =
                (vocab.get(a), vocab.get(b), vocab.get(&format!("{a}{b}")))
            else {
                return unsupported(format!("merge {a} {b} names tokens not in the vocab"));
            };
            merges.entry((ia, ib)).or_insert((rank as u32, im));
        }
        let whole = if model.get("ignore_merges").and_then(Value::as_bool) == Some(true) {
            let mut m = FxHashMap::default();
            for (tok, &id) in &vocab {
                let bytes: Option<Vec<u8>> =
                    tok.chars().map(|c| byte_of.get(&c).copied()).collect();
                if let Some(b) = bytes {
                    m.insert(b, id);
                }
            }
            Some(m)
        } else {
            None
        };
        let mut patterns = Vec::new();
        let mut ids = Vec::new();
        for a in t["added_tokens"].as_array().into_iter().flatten() {
            for flag in ["lstrip", "rstrip", "single_word"] {
                if a.get(flag).and_then(Value::as_bool) == Some(true) {
                    return unsupported(format!("added token with {flag}"));
                }
            }
            patterns.push(
                a["content"]
                    .as_str()
                    .ok_or("added token content")?
                    .to_string(),
            );
            ids.push(a["id"].as_u64().ok_or("added token id")? as u32);
        }
        let added = if patterns.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .map_err(|e| format!("added tokens: {e}"))?;
            Some((ac, ids))
        };
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            nfc,
            steps,
            added,
            byte_token,
            merges,
            whole,
        })
    }

    /// Token ids of `text`, as `tokenizers`' `encode(text, add_special_tokens=False)`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3);
        let normalized: std::borrow::Cow<str> =
            if self.nfc && is_nfc_quick(text.chars()) != IsNormalized::Yes {
                text.nfc().collect::<String>().into()
            } else {
                text.into()
            };
        let text = normalized.as_ref();
        match &self.added {
            None => self.encode_plain(text, &mut out),
            Some((ac, ids)) => {
                let mut at = 0;
                for m in ac.find_iter(text) {
                    self.encode_plain(&text[at..m.start()], &mut out);
                    out.push(ids[m.pattern().as_usize()]);
                    at = m.end();
                }
                self.encode_plain(&text[at..], &mut out);
            }
        }
        out
    }

    /// Many texts in parallel.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Vec<u32>> {
        texts.par_iter().map(|t| self.encode(t.as_ref())).collect()
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        self.pre_tokenize(text, 0, &mut |piece| {
            self.encode_piece(piece.as_bytes(), out)
        });
    }

    /// Apply pre-tokenizer steps from `step` on, calling `emit` with each final piece.
    fn pre_tokenize(&self, text: &str, step: usize, emit: &mut dyn FnMut(&str)) {
        let Some(s) = self.steps.get(step) else {
            emit(text);
            return;
        };
        match s {
            Step::Digits => {
                let mut start = 0;
                for (i, c) in text.char_indices() {
                    if c.is_numeric() {
                        if start < i {
                            self.pre_tokenize(&text[start..i], step + 1, emit);
                        }
                        let end = i + c.len_utf8();
                        self.pre_tokenize(&text[i..end], step + 1, emit);
                        start = end;
                    }
                }
                if start < text.len() {
                    self.pre_tokenize(&text[start..], step + 1, emit);
                }
            }
            Step::Split {
                re,
                lookahead,
                newline_alt,
            } => {
                let mut at = 0;
                while at < text.len() {
                    let Some(m) = re.find_at(text, at) else {
                        self.pre_tokenize(&text[at..], step + 1, emit);
                        return;
                    };
                    if m.start() > at {
                        self.pre_tokenize(&text[at..m.start()], step + 1, emit);
                    }
                    let mut end = m.end();
                    if *lookahead && end < text.len() {
                        // `\s+(?!\S)`: a whitespace run followed by a non-space gives its last
                        // character back to what follows (when it is longer than one).
                        let piece = &text[m.start()..end];
                        let from_last_alt = !*newline_alt || !piece.contains(['\r', '\n']);
                        if from_last_alt && piece.chars().all(char::is_whitespace) {
                            if let Some((last, _)) = piece.char_indices().next_back() {
                                if last > 0 {
                                    end = m.start() + last;
                                }
                            }
                        }
                    }
                    self.pre_tokenize(&text[m.start()..end], step + 1, emit);
                    at = end;
                }
            }
        }
    }

    fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() == 1 {
            let t = self.byte_token[piece[0] as usize];
            if t != NO_TOKEN {
                out.push(t);
            }
            return;
        }
        if let Some(whole) = &self.whole {
            if let Some(&id) = whole.get(piece) {
                out.push(id);
                return;
            }
        }
        /// (encoder id, piece -> ids)
        type PieceCache = (u64, FxHashMap<Vec<u8>, Vec<u32>>);
        if piece.len() <= CACHE_MAX_PIECE {
            thread_local! {
                // (encoder id, piece -> ids): one encoder's entries at a time per thread.
                static CACHE: RefCell<PieceCache> =
                    RefCell::new((0, FxHashMap::default()));
            }
            CACHE.with(|c| {
                let mut guard = c.borrow_mut();
                let (owner, cache) = &mut *guard;
                if *owner != self.id {
                    cache.clear();
                    *owner = self.id;
                }
                if let Some(ids) = cache.get(piece) {
                    out.extend_from_slice(ids);
                    return;
                }
                let ids = self.merge_short(piece);
                out.extend_from_slice(&ids);
                if cache.len() >= CACHE_MAX_ENTRIES {
                    cache.clear();
                }
                cache.insert(piece.to_vec(), ids);
            });
        } else {
            out.extend(self.merge_long(piece));
        }
    }

    /// Lowest rank first, leftmost on ties, by rescanning: fastest for short pieces.
    fn byte_ids(&self, piece: &[u8]) -> Vec<u32> {
        piece
            .iter()
            .map(|&b| self.byte_token[b as usize])
            .filter(|&t| t != NO_TOKEN)
            .collect()
    }

    fn merge_short(&self, piece: &[u8]) -> Vec<u32> {
        let mut ids = self.byte_ids(piece);
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..ids.len().saturating_sub(1) {
                if let Some(&(rank, id)) = self.merges.get(&(ids[i], ids[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else { return ids };
            ids[i] = id;
            ids.remove(i + 1);
        }
    }

    /// The same merges with a heap of candidate pairs over a linked list: O(n log n).
    fn merge_long(&self, piece: &[u8]) -> Vec<u32> {
        let mut ids = self.byte_ids(piece);
        let n = ids.len();
        if n < 2 {
            return ids;
        }
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<Reverse<(u32, usize, u32, u32)>>,
                    ids: &[u32],
                    i: usize,
                    j: usize| {
            if let Some(&(rank, _)) = self.merges.get(&(ids[i], ids[j])) {
                heap.push(Reverse((rank, i, ids[i], ids[j])));
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, &ids, i, i + 1);
        }
        while let Some(Reverse((_, i, left, right))) = heap.pop() {
            let j = next[i];
            // Stale entries: either side was merged since the pair was queued.
            if !alive[i] || j >= n || ids[i] != left || ids[j] != right {
                continue;
            }
            let (_, merged) = self.merges[&(left, right)];
            ids[i] = merged;
            alive[j] = false;
            next[i] = next[j];
            if next[j] < n {
                prev[next[j]] = i;
            }
            if prev[i] != usize::MAX {
                push(&mut heap, &ids, prev[i], i);
            }
            if next[i] < n {
                push(&mut heap, &ids, i, next[i]);
            }
        }
        (0..n).filter(|&i| alive[i]).map(|i| ids[i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection() {
        let m = bytes_to_unicode();
        let set: std::collections::HashSet<char> = m.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(m[b' ' as usize], 'Ġ');
        assert_eq!(m[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn lookahead_split_matches_the_original_semantics() {
        let step = regex_step(GPT2_PATTERN).unwrap();
        let bpe = Bpe {
            id: 0,
            nfc: false,
            steps: vec![step],
            added: None,
            byte_token: [0; 256],
            merges: FxHashMap::default(),
            whole: None,
        };
        let mut pieces = Vec::new();
        bpe.pre_tokenize("a   b\n\nc  ", 0, &mut |p| pieces.push(p.to_string()));
        assert_eq!(pieces, vec!["a", "  ", " b", "\n", "\n", "c", "  "]);
    }
}
