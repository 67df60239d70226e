//! One word split per document, shared by every rule that looks at words: the length and
//! bad-word filters, Gopher repetition and MinHash. Splitting (and hashing) once instead of
//! once per rule is most of what makes the per-document pass fast; ASCII text, the common
//! case, is split on bytes without decoding characters.

use xxhash_rust::xxh3::xxh3_64;

/// Rust's `char::is_whitespace` restricted to ASCII (unlike `u8::is_ascii_whitespace` it
/// includes vertical tab), so the byte split equals `str::split_whitespace`.
#[inline(always)]
fn ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The words of a text (as `str::split_whitespace` gives them) as byte ranges.
pub struct Words<'a> {
    pub text: &'a str,
    pub ascii: bool,
    spans: Vec<(usize, usize)>,
}

impl<'a> Words<'a> {
    pub fn new(text: &'a str) -> Self {
        let ascii = text.is_ascii();
        let mut spans = Vec::with_capacity(text.len() / 5 + 1);
        if ascii {
            let mut start = None;
            for (i, &b) in text.as_bytes().iter().enumerate() {
                match (ascii_space(b), start) {
                    (true, Some(s)) => {
                        spans.push((s, i));
                        start = None;
                    }
                    (false, None) => start = Some(i),
                    _ => {}
                }
            }
            if let Some(s) = start {
                spans.push((s, text.len()));
            }
        } else {
            let base = text.as_ptr() as usize;
            spans.extend(text.split_whitespace().map(|w| {
                let s = w.as_ptr() as usize - base;
                (s, s + w.len())
            }));
        }
        Self { text, ascii, spans }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn get(&self, i: usize) -> &'a str {
        let (s, e) = self.spans[i];
        &self.text[s..e]
    }

    /// Byte length of each word.
    pub fn byte_len(&self, i: usize) -> usize {
        let (s, e) = self.spans[i];
        e - s
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.spans.iter().map(|&(s, e)| &self.text[s..e])
    }

    /// Characters in the text (bytes when it is ASCII).
    pub fn chars(&self) -> usize {
        if self.ascii {
            self.text.len()
        } else {
            self.text.chars().count()
        }
    }

    /// xxh3 of every word as written (the repetition rules compare words exactly).
    pub fn raw_hashes(&self) -> Vec<u64> {
        self.iter().map(|w| xxh3_64(w.as_bytes())).collect()
    }

    /// Word keys: xxh3 of each word lower-cased with surrounding punctuation removed (words
    /// that are only punctuation have none), with the trimmed length in bytes. MinHash
    /// shingles and the bad-word list both match on these.
    pub fn keys(&self) -> Vec<(u64, usize)> {
        let mut out = Vec::with_capacity(self.len());
        let mut buf = String::new();
        let mut ascii_buf = [0u8; 64];
        for w in self.iter() {
            if let Some(k) = word_key(w, &mut ascii_buf, &mut buf) {
                out.push(k);
            }
        }
        out
    }
}

/// Words in `text`, without keeping them.
pub fn count(text: &str) -> usize {
    if text.is_ascii() {
        let b = text.as_bytes();
        let mut n = 0;
        let mut prev_space = true;
        for &c in b {
            let sp = ascii_space(c);
            n += (prev_space && !sp) as usize;
            prev_space = sp;
        }
        n
    } else {
        text.split_whitespace().count()
    }
}

/// The key of one word (see [`Words::keys`]); `None` when nothing alphanumeric is left.
#[inline]
pub fn word_key(w: &str, ascii_buf: &mut [u8; 64], buf: &mut String) -> Option<(u64, usize)> {
    let b = w.as_bytes();
    if b.is_ascii() {
        let start = b.iter().position(u8::is_ascii_alphanumeric)?;
        let end = b.iter().rposition(u8::is_ascii_alphanumeric)? + 1;
        let t = &b[start..end];
        if !t.iter().any(u8::is_ascii_uppercase) {
            return Some((xxh3_64(t), t.len()));
        }
        if t.len() <= ascii_buf.len() {
            let dst = &mut ascii_buf[..t.len()];
            dst.copy_from_slice(t);
            dst.make_ascii_lowercase();
            return Some((xxh3_64(dst), t.len()));
        }
        return Some((xxh3_64(t.to_ascii_lowercase().as_slice()), t.len()));
    }
    let t = w.trim_matches(|c: char| !c.is_alphanumeric());
    if t.is_empty() {
        return None;
    }
    buf.clear();
    buf.extend(t.chars().flat_map(char::to_lowercase));
    Some((xxh3_64(buf.as_bytes()), t.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_equals_split_whitespace() {
        for text in [
            "",
            "   ",
            "one",
            " a  b\tc\nd\x0be\x0cf\rg ",
            "caf\u{e9} na\u{ef}ve\u{3000}wide\u{a0}nbsp  end",
            "x\u{1c}y",
        ] {
            let w = Words::new(text);
            let want: Vec<&str> = text.split_whitespace().collect();
            assert_eq!(w.iter().collect::<Vec<_>>(), want, "{text:?}");
            assert_eq!(count(text), want.len(), "{text:?}");
        }
    }

    #[test]
    fn keys_trim_and_lowercase() {
        let w = Words::new("Hello, hello! -- CAF\u{c9} caf\u{e9}");
        let k = w.keys();
        assert_eq!(k.len(), 4); // "--" has no key
        assert_eq!(k[0], k[1]);
        assert_eq!(k[2], k[3]);
        assert_eq!(k[0], (xxh3_64(b"hello"), 5));
    }
}
