//! Gopher repetition (Rae et al. 2021): duplicated lines and paragraphs, the most frequent
//! 2-4-grams and the share of text in duplicated 5-10-grams, over the shared word split.

use rustc_hash::{FxHashMap, FxHashSet};
use xxhash_rust::xxh3::xxh3_64;

use crate::words::Words;

/// Thresholds: the share of duplicated lines / paragraphs (by count and by characters), of
/// the most frequent n-grams and of text in duplicated n-grams above which a document goes.
#[derive(Clone, Debug)]
pub struct GopherRepetition {
    pub dup_line_frac: f64,
    pub dup_para_frac: f64,
    pub dup_line_char_frac: f64,
    pub dup_para_char_frac: f64,
    pub top_n_grams: Vec<(usize, f64)>,
    pub dup_n_grams: Vec<(usize, f64)>,
}

impl Default for GopherRepetition {
    fn default() -> Self {
        Self {
            dup_line_frac: 0.3,
            dup_para_frac: 0.3,
            dup_line_char_frac: 0.2,
            dup_para_char_frac: 0.2,
            top_n_grams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_n_grams: vec![
                (5, 0.15),
                (6, 0.14),
                (7, 0.13),
                (8, 0.12),
                (9, 0.11),
                (10, 0.10),
            ],
        }
    }
}

/// Count duplicated elements (after their first occurrence) and their characters.
pub(crate) fn duplicates<'a>(elements: impl Iterator<Item = &'a str>) -> (usize, usize, usize) {
    let mut seen = FxHashSet::default();
    let (mut n, mut dup, mut dup_chars) = (0, 0, 0);
    for e in elements {
        n += 1;
        if !seen.insert(xxh3_64(e.as_bytes())) {
            dup += 1;
            dup_chars += e.len();
        }
    }
    (n, dup, dup_chars)
}

fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n").map(str::trim).filter(|p| !p.is_empty())
}

pub(crate) fn gopher_repetition(
    text: &str,
    words: &Words,
    f: &GopherRepetition,
) -> Result<(), &'static str> {
    let total = text.len().max(1) as f64;
    let (n, dup, chars) = duplicates(paragraphs(text));
    if n > 0 && dup as f64 / n as f64 > f.dup_para_frac {
        return Err("dup_para_frac");
    }
    if chars as f64 / total > f.dup_para_char_frac {
        return Err("dup_para_char_frac");
    }
    let (n, dup, chars) = duplicates(text.split('\n').filter(|l| !l.trim().is_empty()));
    if n > 0 && dup as f64 / n as f64 > f.dup_line_frac {
        return Err("dup_line_frac");
    }
    if chars as f64 / total > f.dup_line_char_frac {
        return Err("dup_line_char_frac");
    }
    if f.top_n_grams.is_empty() && f.dup_n_grams.is_empty() {
        return Ok(());
    }
    let n_words = words.len();
    // Prefix sums of word lengths and a polynomial prefix hash: any n-gram's character count
    // and hash in O(1).
    let mut len_prefix = Vec::with_capacity(n_words + 1);
    let mut hash_prefix = Vec::with_capacity(n_words + 1);
    len_prefix.push(0usize);
    hash_prefix.push(0u64);
    for (i, h) in words.raw_hashes().into_iter().enumerate() {
        len_prefix.push(len_prefix[i] + words.byte_len(i));
        hash_prefix.push(hash_prefix[i].wrapping_mul(BASE).wrapping_add(h));
    }
    let mut grams = NGrams::new(n_words);
    for &(n, thr) in &f.top_n_grams {
        if n == 0 || n_words < n {
            continue;
        }
        let pow = BASE.wrapping_pow(n as u32);
        let (count, at) = grams.count(n, |i| {
            hash_prefix[i + n].wrapping_sub(hash_prefix[i].wrapping_mul(pow))
        });
        if count > 1 {
            let at = at as usize;
            let gram_len = len_prefix[at + n] - len_prefix[at] + n - 1;
            if (gram_len * count as usize) as f64 / total > thr {
                return Err(top_reason(n));
            }
        }
    }
    for &(n, thr) in &f.dup_n_grams {
        if n == 0 || n_words < n {
            continue;
        }
        let pow = BASE.wrapping_pow(n as u32);
        grams.count(n, |i| {
            hash_prefix[i + n].wrapping_sub(hash_prefix[i].wrapping_mul(pow))
        });
        // Scan left to right; a gram seen before counts its characters and is skipped over.
        // Only grams occurring twice or more can be seen before, so only they are tracked.
        grams.seen.fill(false);
        let (mut i, mut repeated) = (0usize, 0usize);
        while i + n <= n_words {
            if grams.repeated[i] {
                let id = grams.first[i] as usize;
                if grams.seen[id] {
                    repeated += len_prefix[i + n] - len_prefix[i];
                    i += n;
                    continue;
                }
                grams.seen[id] = true;
            }
            i += 1;
        }
        if repeated as f64 / total > thr {
            return Err(dup_reason(n));
        }
        if repeated == 0 {
            break; // no repeated n-gram means no repeated longer one either
        }
    }
    Ok(())
}

/// N-gram counts over a document's word positions, for increasing n. An n-gram can occur
/// twice only where the (n-1)-gram starting at the same position does, so after the first
/// pass only positions marked `repeated` by the previous pass are hashed: in ordinary prose
/// few positions survive past trigrams, which makes the longer passes nearly free.
struct NGrams {
    /// n of the last pass (0: none yet).
    last_n: usize,
    /// Per position: its gram occurs at least twice (as of the last pass).
    repeated: Vec<bool>,
    /// Per counted position: the first position holding the same gram (its id).
    first: Vec<u32>,
    /// Occurrences per gram id.
    counts: Vec<u32>,
    /// Scratch for the duplicated-n-gram scan, per gram id.
    seen: Vec<bool>,
    ids: FxHashMap<u64, u32>,
}

impl NGrams {
    fn new(n_words: usize) -> Self {
        Self {
            last_n: 0,
            repeated: vec![false; n_words],
            first: vec![0; n_words],
            counts: vec![0; n_words],
            seen: vec![false; n_words],
            ids: FxHashMap::default(),
        }
    }

    /// Count the n-grams (hashes from `gram`) and mark the repeated ones. Returns the count
    /// and first position of the gram that first reached the highest count, scanning left to
    /// right (exact whenever that count is above one, the only case the rules use).
    fn count(&mut self, n: usize, gram: impl Fn(usize) -> u64) -> (u32, u32) {
        let positions = self.repeated.len() + 1 - n;
        let prune = self.last_n != 0 && n > self.last_n;
        self.ids.clear();
        self.ids.reserve(positions);
        self.counts[..positions].fill(0);
        let mut best = (0u32, 0u32);
        for i in 0..positions {
            if prune && !self.repeated[i] {
                continue;
            }
            let id = *self.ids.entry(gram(i)).or_insert(i as u32);
            self.first[i] = id;
            let c = &mut self.counts[id as usize];
            *c += 1;
            if *c > best.0 {
                best = (*c, id);
            }
        }
        for i in 0..positions {
            self.repeated[i] =
                (!prune || self.repeated[i]) && self.counts[self.first[i] as usize] >= 2;
        }
        self.repeated[positions..].fill(false);
        self.last_n = n;
        best
    }
}

const BASE: u64 = 0x100_0000_01B3;

fn top_reason(n: usize) -> &'static str {
    match n {
        2 => "top_2_gram",
        3 => "top_3_gram",
        4 => "top_4_gram",
        _ => "top_n_gram",
    }
}

fn dup_reason(n: usize) -> &'static str {
    match n {
        5 => "duplicated_5_n_grams",
        6 => "duplicated_6_n_grams",
        7 => "duplicated_7_n_grams",
        8 => "duplicated_8_n_grams",
        9 => "duplicated_9_n_grams",
        10 => "duplicated_10_n_grams",
        _ => "duplicated_n_grams",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repetition rules written directly (every n-gram hashed for every n), to check the
    /// pruned passes against.
    fn reference_ngrams(text: &str, f: &GopherRepetition) -> Result<(), &'static str> {
        let total = text.len().max(1) as f64;
        let words: Vec<&str> = text.split_whitespace().collect();
        let key = |i: usize, n: usize| words[i..i + n].join(" ");
        let chars = |i: usize, n: usize| words[i..i + n].iter().map(|w| w.len()).sum::<usize>();
        for &(n, thr) in &f.top_n_grams {
            if words.len() < n {
                continue;
            }
            let mut counts: FxHashMap<String, (u32, usize)> = FxHashMap::default();
            let mut best = (0u32, 0usize);
            for i in 0..=words.len() - n {
                let e = counts.entry(key(i, n)).or_insert((0, i));
                e.0 += 1;
                if e.0 > best.0 {
                    best = *e;
                }
            }
            if best.0 > 1 && ((chars(best.1, n) + n - 1) * best.0 as usize) as f64 / total > thr {
                return Err(top_reason(n));
            }
        }
        for &(n, thr) in &f.dup_n_grams {
            if words.len() < n {
                continue;
            }
            let mut seen = FxHashSet::default();
            let (mut i, mut repeated) = (0, 0);
            while i + n <= words.len() {
                if !seen.insert(key(i, n)) {
                    repeated += chars(i, n);
                    i += n;
                } else {
                    i += 1;
                }
            }
            if repeated as f64 / total > thr {
                return Err(dup_reason(n));
            }
        }
        Ok(())
    }

    #[test]
    fn pruned_ngram_passes_equal_the_direct_rules() {
        // Documents from a tiny vocabulary repeat n-grams of every length at varied rates.
        let vocab = ["a", "b", "cat", "dog", "the", "ran", "x1", "yy", "zed", "q"];
        let mut state = 7u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let f = GopherRepetition {
            dup_line_frac: 1.0,
            dup_para_frac: 1.0,
            dup_line_char_frac: 1.0,
            dup_para_char_frac: 1.0,
            ..Default::default()
        };
        let mut reasons = FxHashSet::default();
        for _ in 0..600 {
            let vocab_size = 2 + next(9);
            let n_words = 5 + next(120) as usize;
            let mut words: Vec<&str> = Vec::new();
            while words.len() < n_words {
                if !words.is_empty() && next(4) == 0 {
                    let start = next(words.len() as u64) as usize;
                    let len = (1 + next(12) as usize).min(words.len() - start);
                    let copy: Vec<&str> = words[start..start + len].to_vec();
                    words.extend(copy);
                } else {
                    words.push(vocab[next(vocab_size) as usize]);
                }
            }
            let text = words.join(" ");
            let want = reference_ngrams(&text, &f);
            let got = gopher_repetition(&text, &Words::new(&text), &f);
            assert_eq!(got, want, "{text}");
            reasons.insert(want);
        }
        assert!(
            reasons.len() >= 4,
            "the generator should reach several rules: {reasons:?}"
        );
    }
}
