//! Document quality filters after Gopher (Rae et al. 2021), C4 (Raffel et al. 2020) and
//! FineWeb (Penedo et al. 2024), with the thresholds datatrove publishes as defaults.
//! Each rejection carries a reason name so a report can say why every document went.

use aho_corasick::AhoCorasick;
use rustc_hash::FxHashSet;
use std::sync::OnceLock;
use xxhash_rust::xxh3::xxh3_64;

pub use crate::repetition::GopherRepetition;
use crate::repetition::{duplicates, gopher_repetition};
use crate::words::{self, Words};

#[derive(Clone, Debug)]
pub struct LengthFilter {
    pub min_chars: usize,
    pub max_chars: usize,
    pub min_words: usize,
    pub max_words: usize,
}

#[derive(Clone, Debug)]
pub struct GopherQuality {
    pub min_doc_words: usize,
    pub max_doc_words: usize,
    pub min_avg_word_length: f64,
    pub max_avg_word_length: f64,
    pub max_symbol_word_ratio: f64,
    pub max_bullet_lines_ratio: f64,
    pub max_ellipsis_lines_ratio: f64,
    pub min_alpha_words_ratio: f64,
    pub min_stop_words: usize,
}

impl Default for GopherQuality {
    fn default() -> Self {
        Self {
            min_doc_words: 50,
            max_doc_words: 100_000,
            min_avg_word_length: 3.0,
            max_avg_word_length: 10.0,
            max_symbol_word_ratio: 0.1,
            max_bullet_lines_ratio: 0.9,
            max_ellipsis_lines_ratio: 0.3,
            min_alpha_words_ratio: 0.8,
            min_stop_words: 2,
        }
    }
}

#[derive(Clone, Debug)]
pub struct C4Quality {
    pub min_sentences: usize,
    pub min_words_per_line: usize,
    pub max_word_length: usize,
    /// Drop lines that do not end in terminal punctuation (original C4; FineWeb turns it off).
    pub filter_no_terminal_punct: bool,
}

impl Default for C4Quality {
    fn default() -> Self {
        Self {
            min_sentences: 5,
            min_words_per_line: 3,
            max_word_length: 1000,
            filter_no_terminal_punct: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FineWebQuality {
    pub line_punct_thr: f64,
    pub short_line_thr: f64,
    pub short_line_length: usize,
    pub char_duplicates_ratio: f64,
    pub new_line_ratio: f64,
}

impl Default for FineWebQuality {
    fn default() -> Self {
        Self {
            line_punct_thr: 0.12,
            short_line_thr: 0.67,
            short_line_length: 30,
            char_duplicates_ratio: 0.01,
            new_line_ratio: 0.3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    Latin,
    Cyrillic,
    Greek,
    Arabic,
    Cjk,
}

#[derive(Clone, Debug, Default)]
pub struct FilterConfig {
    pub length: Option<LengthFilter>,
    pub gopher_quality: Option<GopherQuality>,
    pub gopher_repetition: Option<GopherRepetition>,
    pub c4: Option<C4Quality>,
    pub fineweb: Option<FineWebQuality>,
    /// Keys of the listed words ([`bad_word_keys`]).
    pub bad_words: Option<FxHashSet<u64>>,
    /// (expected script, minimum fraction of letters in it)
    pub script: Option<(Script, f64)>,
}

const STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];
const TERMINAL: [char; 8] = ['.', '!', '?', '"', '\'', '\u{201d}', '\u{3002}', '\u{2026}'];
const POLICY: [&str; 8] = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
    "javascript",
    "lorem ipsum",
];

/// What the filters leave of a kept document: the text if C4 changed it, and the word
/// split and keys computed on the way, so MinHash does not split the text again.
pub struct Filtered<'a> {
    pub modified: Option<String>,
    pub words: Option<Words<'a>>,
    pub keys: Option<Vec<(u64, usize)>>,
}

/// The bad-word list as word keys (see [`crate::words::Words::keys`]): lower-cased entries.
pub fn bad_word_keys<'s>(list: impl IntoIterator<Item = &'s str>) -> FxHashSet<u64> {
    list.into_iter()
        .map(|w| xxh3_64(w.to_lowercase().as_bytes()))
        .collect()
}

/// Apply the configured filters, cheapest first (the kept set does not depend on the order,
/// only which rule a rejected document is charged to). Repetition runs last on the original
/// text, as in datatrove where it precedes C4's line cleaning. Returns what is left of the
/// document (see [`Filtered`]) or the name of the first rule that rejected it. `want_keys`
/// asks for the word keys even when no filter needs them (MinHash does).
pub fn apply<'a>(
    text: &'a str,
    cfg: &FilterConfig,
    want_keys: bool,
) -> Result<Filtered<'a>, &'static str> {
    if let Some(f) = &cfg.length {
        let chars = if text.is_ascii() {
            text.len()
        } else {
            text.chars().count()
        };
        // Decide on characters first: a huge document is rejected without splitting it.
        if chars < f.min_chars {
            return Err("too_short");
        }
        if chars > f.max_chars {
            let short = words::count(text) < f.min_words;
            return Err(if short { "too_short" } else { "too_long" });
        }
    }
    let words = Words::new(text);
    if let Some(f) = &cfg.length {
        if words.len() < f.min_words {
            return Err("too_short");
        }
        if words.len() > f.max_words {
            return Err("too_long");
        }
    }
    if let Some((script, min_frac)) = cfg.script {
        script_filter(text, script, min_frac)?;
    }
    if let Some(f) = &cfg.gopher_quality {
        gopher_quality(&words, f)?;
    }
    let mut modified = None;
    if let Some(f) = &cfg.c4 {
        modified = c4(text, f)?;
    }
    if let Some(f) = &cfg.fineweb {
        let n_words = match &modified {
            Some(m) => words::count(m),
            None => words.len(),
        };
        fineweb(modified.as_deref().unwrap_or(text), n_words, f)?;
    }
    let keys = (want_keys || cfg.bad_words.is_some()).then(|| words.keys());
    if let (Some(bad), Some(keys)) = (&cfg.bad_words, &keys) {
        if keys.iter().any(|(k, len)| *len <= 32 && bad.contains(k)) {
            return Err("bad_words");
        }
    }
    if let Some(f) = &cfg.gopher_repetition {
        gopher_repetition(text, &words, f)?;
    }
    Ok(Filtered {
        modified,
        words: Some(words),
        keys,
    })
}

fn script_of(c: char) -> Option<Script> {
    let u = c as u32;
    Some(match u {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF => Script::Latin,
        0x370..=0x3FF | 0x1F00..=0x1FFF => Script::Greek,
        0x400..=0x52F => Script::Cyrillic,
        0x600..=0x6FF | 0x750..=0x77F => Script::Arabic,
        0x3040..=0x30FF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF => Script::Cjk,
        _ => return None,
    })
}

fn script_filter(text: &str, want: Script, min_frac: f64) -> Result<(), &'static str> {
    let (mut letters, mut matching) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        if script_of(c) == Some(want) {
            matching += 1;
        }
    }
    if letters > 0 && (matching as f64) < min_frac * letters as f64 {
        return Err("script_mismatch");
    }
    Ok(())
}

fn gopher_quality(words: &Words, f: &GopherQuality) -> Result<(), &'static str> {
    let text = words.text;
    // One pass over the words gathers every count the rules need.
    let (mut n, mut n_all, mut n_alpha, mut chars) = (0usize, 0usize, 0usize, 0usize);
    let mut present = [false; STOP_WORDS.len()];
    for w in words.iter() {
        n_all += 1;
        let (mut alnum, mut alpha) = (false, false);
        if w.is_ascii() {
            for b in w.bytes() {
                alpha |= b.is_ascii_alphabetic();
                alnum |= b.is_ascii_alphanumeric();
            }
        } else {
            for c in w.chars() {
                alnum |= c.is_alphanumeric();
                alpha |= c.is_alphabetic();
            }
        }
        if alpha {
            n_alpha += 1;
        }
        if !alnum {
            continue;
        }
        n += 1;
        chars += if w.is_ascii() {
            w.len()
        } else {
            w.chars().count()
        };
        let t = w.trim_matches(|c: char| !c.is_alphanumeric());
        if t.len() <= 4 {
            if let Some(i) = STOP_WORDS.iter().position(|s| *s == t) {
                present[i] = true; // distinct, case-sensitive, as datatrove counts them
            }
        }
    }
    if n < f.min_doc_words {
        return Err("gopher_short_doc");
    }
    if n > f.max_doc_words {
        return Err("gopher_long_doc");
    }
    let avg = chars as f64 / n as f64;
    if avg < f.min_avg_word_length {
        return Err("gopher_below_avg_threshold");
    }
    if avg > f.max_avg_word_length {
        return Err("gopher_above_avg_threshold");
    }
    let bytes = text.as_bytes();
    let hashes = memchr_count(b'#', bytes);
    if hashes as f64 / n as f64 > f.max_symbol_word_ratio {
        return Err("gopher_too_many_hashes");
    }
    let ellipsis = text.matches("...").count() + text.matches('\u{2026}').count();
    if ellipsis as f64 / n as f64 > f.max_symbol_word_ratio {
        return Err("gopher_too_many_ellipsis");
    }
    let (mut lines, mut bullets, mut end_ellipsis) = (0usize, 0usize, 0usize);
    for l in text.split('\n') {
        lines += 1;
        let s = l.trim_start();
        if s.starts_with('\u{2022}') || s.starts_with('-') {
            bullets += 1;
        }
        let e = l.trim_end();
        if e.ends_with("...") || e.ends_with('\u{2026}') {
            end_ellipsis += 1;
        }
    }
    if bullets as f64 / lines as f64 > f.max_bullet_lines_ratio {
        return Err("gopher_too_many_bullets");
    }
    if end_ellipsis as f64 / lines as f64 > f.max_ellipsis_lines_ratio {
        return Err("gopher_too_many_end_ellipsis");
    }
    if (n_alpha as f64 / n_all.max(1) as f64) < f.min_alpha_words_ratio {
        return Err("gopher_below_alpha_threshold");
    }
    if present.iter().filter(|p| **p).count() < f.min_stop_words {
        return Err("gopher_enough_stop_words");
    }
    Ok(())
}

fn memchr_count(needle: u8, haystack: &[u8]) -> usize {
    haystack.iter().filter(|&&b| b == needle).count()
}

/// C4's line-level cleaning: keeps lines that end in terminal punctuation, have enough words
/// and mention no javascript or policy boilerplate; rejects the document for lorem ipsum,
/// curly braces (code) or too few sentences left.
fn c4_patterns() -> &'static AhoCorasick {
    static AC: OnceLock<AhoCorasick> = OnceLock::new();
    AC.get_or_init(|| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(POLICY)
            .expect("static patterns")
    })
}

fn c4(text: &str, f: &C4Quality) -> Result<Option<String>, &'static str> {
    let ac = c4_patterns();
    let mut kept: Vec<&str> = Vec::new();
    let (mut sentences, mut dropped) = (0usize, false);
    for raw in text.split('\n') {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        // One scan finds lorem ipsum, javascript and policy boilerplate (ASCII, any case).
        let mut boilerplate = false;
        for m in ac.find_iter(line) {
            if POLICY[m.pattern().as_usize()] == "lorem ipsum" {
                return Err("lorem_ipsum");
            }
            boilerplate = true;
        }
        if line.contains('{') {
            return Err("curly_bracket");
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let drop = words.iter().any(|w| w.chars().count() > f.max_word_length)
            || (f.filter_no_terminal_punct
                && (!line.ends_with(TERMINAL)
                    || line.ends_with("...")
                    || line.ends_with('\u{2026}')))
            || words.len() < f.min_words_per_line
            || boilerplate;
        if drop {
            dropped = true;
            continue;
        }
        sentences += count_sentences(line);
        kept.push(line);
    }
    if sentences < f.min_sentences {
        return Err("too_few_sentences");
    }
    Ok(dropped.then(|| kept.join("\n")))
}

fn count_sentences(line: &str) -> usize {
    let bytes = line.as_bytes();
    let mut n = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_none_or(|c| c.is_ascii_whitespace())
        {
            n += 1;
        }
    }
    n.max(1)
}

fn fineweb(text: &str, n_words: usize, f: &FineWebQuality) -> Result<(), &'static str> {
    let lines: Vec<&str> = text.split('\n').filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Err("empty");
    }
    let n = lines.len() as f64;
    let punct = lines
        .iter()
        .filter(|l| l.trim_end().ends_with(TERMINAL))
        .count() as f64;
    if punct / n < f.line_punct_thr {
        return Err("line_punct_ratio");
    }
    let short = lines
        .iter()
        .filter(|l| l.chars().count() <= f.short_line_length)
        .count() as f64;
    if short / n > f.short_line_thr {
        return Err("short_line_ratio");
    }
    let (_, _, dup_chars) = duplicates(lines.iter().copied());
    let chars = text.len() - text.matches('\n').count();
    if chars > 0 && dup_chars as f64 / chars as f64 > f.char_duplicates_ratio {
        return Err("char_dup_ratio");
    }
    let words = n_words.max(1);
    if text.matches('\n').count() as f64 / words as f64 > f.new_line_ratio {
        return Err("list_ratio");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, cfg: &FilterConfig) -> Result<Option<String>, &'static str> {
        apply(text, cfg, false).map(|f| f.modified)
    }

    fn prose() -> String {
        let s = "The quick brown fox jumps over the lazy dog and runs to the river with friends. ";
        let t = "Scientists have found that the weather of the north is colder than expected. ";
        let u = "Many people enjoy reading books in the evening because it helps them to relax. ";
        let v = "A good teacher explains difficult ideas with patience and with clear examples. ";
        let w = "The city council approved the new park after a long debate about the budget. ";
        format!("{s}{t}\n{u}{v}\n{w}")
            .replace(". \n", ".\n")
            .trim_end()
            .to_string()
    }

    fn all() -> FilterConfig {
        FilterConfig {
            gopher_quality: Some(GopherQuality::default()),
            gopher_repetition: Some(GopherRepetition::default()),
            c4: Some(C4Quality::default()),
            fineweb: Some(FineWebQuality::default()),
            ..Default::default()
        }
    }

    #[test]
    fn clean_prose_passes_everything() {
        assert_eq!(run(&prose(), &all()), Ok(None));
    }

    #[test]
    fn each_rule_names_itself() {
        let cfg = all();
        assert_eq!(run("Too short to matter.", &cfg), Err("gopher_short_doc"));
        let repeated = "Buy cheap watches now at our store today.\n".repeat(30);
        let rep_only = FilterConfig {
            gopher_repetition: Some(GopherRepetition::default()),
            ..Default::default()
        };
        assert_eq!(run(&repeated, &rep_only), Err("dup_line_frac"));
        let lorem = format!(
            "{}\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
            prose()
        );
        assert_eq!(run(&lorem, &cfg), Err("lorem_ipsum"));
        let code = format!("{}\nfunction f() {{ return 1; }}", prose());
        assert_eq!(run(&code, &cfg), Err("curly_bracket"));
        let tags: String = (0..40).map(|i| format!("#t{i} ")).collect();
        let hashes = format!("{} {}", prose(), tags);
        assert_eq!(run(&hashes, &cfg), Err("gopher_too_many_hashes"));
    }

    #[test]
    fn c4_drops_lines_without_punctuation() {
        let text = format!("{}\nClick here\nMenu Home About", prose());
        let out = run(&text, &all()).unwrap().unwrap();
        assert!(!out.contains("Click here") && out.contains("quick brown fox"));
    }

    #[test]
    fn fineweb_list_and_short_lines() {
        let cfg = FilterConfig {
            fineweb: Some(FineWebQuality::default()),
            ..Default::default()
        };
        let list: String = (0..40).map(|i| format!("item number {i}.\n")).collect();
        assert_eq!(run(&list, &cfg), Err("short_line_ratio"));
        let no_punct: String = (0..10)
            .map(|i| format!("a long line of text without an ending mark {i}\n"))
            .collect();
        assert_eq!(run(&no_punct, &cfg), Err("line_punct_ratio"));
    }

    #[test]
    fn length_bad_words_and_script() {
        let bad = bad_word_keys(["Darn"]);
        let cfg = FilterConfig {
            length: Some(LengthFilter {
                min_chars: 10,
                max_chars: 1000,
                min_words: 3,
                max_words: 100,
            }),
            bad_words: Some(bad),
            script: Some((Script::Latin, 0.5)),
            ..Default::default()
        };
        assert_eq!(run("tiny", &cfg), Err("too_short"));
        assert_eq!(run(&"word ".repeat(200), &cfg), Err("too_long"));
        assert_eq!(run("Oh Darn, this is bad.", &cfg), Err("bad_words"));
        assert_eq!(
            run("Это текст на русском языке.", &cfg),
            Err("script_mismatch")
        );
        assert_eq!(run("This is fine text.", &cfg), Ok(None));
    }
}
