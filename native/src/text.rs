//! Text normalization and word splitting shared by the filters and the deduplication hashes.
//!
//! One normalization feeds everything downstream, so two documents that differ only in
//! Unicode form, control characters, markup or whitespace hash (and dedup) as equal.

use unicode_normalization::{is_nfc_quick, is_nfkc_quick, IsNormalized, UnicodeNormalization};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Nfc,
    Nfkc,
    None,
}

/// Normalize `text`: Unicode form, HTML tags and common entities removed, control characters
/// dropped, runs of spaces and tabs collapsed, trailing spaces and blank-line runs trimmed.
pub fn normalize(text: &str, form: Form, strip_markup: bool) -> String {
    let ascii = text.is_ascii(); // ASCII is already in every normal form
    let unicode: std::borrow::Cow<str> = match form {
        _ if ascii => std::borrow::Cow::Borrowed(text),
        Form::Nfc if is_nfc_quick(text.chars()) != IsNormalized::Yes => text.nfc().collect(),
        Form::Nfkc if is_nfkc_quick(text.chars()) != IsNormalized::Yes => text.nfkc().collect(),
        _ => std::borrow::Cow::Borrowed(text),
    };
    let src: std::borrow::Cow<str> = if strip_markup && unicode.contains(['<', '&']) {
        std::borrow::Cow::Owned(strip_html(&unicode))
    } else {
        unicode
    };
    let mut out = String::with_capacity(src.len());
    let mut blank_run = 0usize;
    for raw_line in src.split('\n') {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let start = out.len();
        let mut pending_space = false;
        if (ascii || line.is_ascii()) && clean_ascii(line.as_bytes()) {
            out.push_str(line); // the common case: nothing to change on this line
        } else if ascii || line.is_ascii() {
            // Bytes, no char decoding.
            for &b in line.as_bytes() {
                if b == b' ' || b == b'\t' {
                    pending_space = out.len() > start;
                    continue;
                }
                if b < 0x20 || b == 0x7f {
                    continue;
                }
                if pending_space {
                    out.push(' ');
                    pending_space = false;
                }
                out.push(b as char);
            }
        } else {
            for ch in line.chars() {
                if ch == ' ' || ch == '\t' || ch == '\u{a0}' {
                    pending_space = out.len() > start;
                    continue;
                }
                if ch.is_control() || ch == '\u{feff}' || ch == '\u{200b}' {
                    continue;
                }
                if pending_space {
                    out.push(' ');
                    pending_space = false;
                }
                out.push(ch);
            }
        }
        if out.len() == start {
            blank_run += 1;
            if blank_run > 1 || start == 0 {
                continue; // at most one blank line in a row, none at the start
            }
        } else {
            blank_run = 0;
        }
        out.push('\n');
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

/// An ASCII line normalization leaves as it is: no control characters or tabs, no space at
/// either end, no two spaces in a row.
fn clean_ascii(line: &[u8]) -> bool {
    if line.first() == Some(&b' ') || line.last() == Some(&b' ') {
        return false;
    }
    let mut bad = false;
    let mut prev_space = false;
    for &b in line {
        let space = b == b' ';
        bad |= b < 0x20 || b == 0x7f || (space && prev_space);
        prev_space = space;
    }
    !bad
}

/// Drop `<tag ...>` markup and decode the handful of entities that matter for text.
fn strip_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix('<') {
            // A tag is '<' followed by a letter, '/' or '!' and closed on the same line.
            let is_tag =
                after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!');
            match (is_tag, tail.find('>')) {
                (true, Some(end)) if !tail[..end].contains('\n') => {
                    rest = &tail[end + 1..];
                    continue;
                }
                _ => {
                    out.push('<');
                    rest = &tail[1..];
                    continue;
                }
            }
        }
        let entities = [
            ("&nbsp;", " "),
            ("&amp;", "&"),
            ("&lt;", "<"),
            ("&gt;", ">"),
            ("&quot;", "\""),
            ("&#39;", "'"),
            ("&apos;", "'"),
        ];
        match entities.iter().find(|(e, _)| tail.starts_with(e)) {
            Some((e, r)) => {
                out.push_str(r);
                rest = &tail[e.len()..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_whitespace_controls_and_markup() {
        let text = "  Hello\t\tworld \u{0007}\r\n\n\n\n<b>bold</b> &amp; more&nbsp;text  \n";
        assert_eq!(
            normalize(text, Form::Nfc, true),
            "Hello world\n\nbold & more text"
        );
    }

    #[test]
    fn unicode_forms() {
        let decomposed = "e\u{301}"; // e + combining acute
        assert_eq!(normalize(decomposed, Form::Nfc, false), "\u{e9}");
        assert_eq!(normalize("\u{fb01}le", Form::Nfkc, false), "file"); // ligature fi
        assert_eq!(normalize("\u{fb01}le", Form::Nfc, false), "\u{fb01}le");
    }

    #[test]
    fn keeps_non_tags() {
        assert_eq!(
            normalize("a < b and c > d", Form::Nfc, true),
            "a < b and c > d"
        );
        assert_eq!(normalize("AT&T", Form::Nfc, true), "AT&T");
    }
}
