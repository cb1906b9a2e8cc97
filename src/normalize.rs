//! Text normalisation applied before shingling: NFKC, full Unicode case folding
//! and whitespace collapse.
//!
//! Near-duplicate detection should not be fooled by full-width letters, ligatures,
//! capitalisation or runs of spaces, so these are erased before anything is hashed.
//! The result has words separated by single ASCII spaces and no leading or trailing
//! space, which lets the word shingler split on `' '` alone.

use std::borrow::Cow;

use caseless::Caseless;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Whitespace as Python's `str.split()` sees it: Unicode `White_Space` plus the
/// four ASCII information separators (U+001C..U+001F), so both sides agree.
#[inline]
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// ASCII bytes that `is_space` accepts.
#[inline]
pub fn is_ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f)
}

/// Normalise `text` into `out` (which is cleared first).
pub fn normalize_into(text: &str, out: &mut String) {
    out.clear();
    if text.is_ascii() {
        // For ASCII input NFKC is the identity and case folding is lowercasing.
        collapse_ascii(text.as_bytes(), out);
        return;
    }
    // ASCII whitespace is a safe cut point for NFKC (a starter that nothing composes
    // with, and folding is per character), so only the words that contain non-ASCII
    // characters go through the Unicode machinery.
    let mut w = Collapser::new(out);
    let mut folded = String::new();
    for word in text.split(|c: char| c.is_ascii() && is_ascii_space(c as u8)) {
        if word.is_empty() {
            continue;
        }
        w.space();
        if word.is_ascii() {
            // No whitespace inside (we split on it), so append it wholesale.
            w.push_ascii_word(word);
        } else {
            fold_word(word, &mut folded);
            for c in folded.chars() {
                w.push(c);
            }
        }
    }
}

/// NFKC, full case folding, NFKC again (folding can leave text that is not in
/// NFKC); quick checks skip the normalisers when the text is already normalised.
fn fold_word(word: &str, out: &mut String) {
    out.clear();
    let nfkc: Cow<str> = if is_nfkc_quick(word.chars()) == IsNormalized::Yes {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(word.nfkc().collect())
    };
    for c in nfkc.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(std::iter::once(c).default_case_fold());
        }
    }
    if is_nfkc_quick(out.chars()) != IsNormalized::Yes {
        *out = out.nfkc().collect();
    }
}

/// Appends characters, turning every run of whitespace into one space and dropping
/// leading and trailing whitespace.
struct Collapser<'a> {
    out: &'a mut String,
    pending_space: bool,
}

impl<'a> Collapser<'a> {
    fn new(out: &'a mut String) -> Self {
        Self {
            out,
            pending_space: false,
        }
    }

    #[inline]
    fn space(&mut self) {
        self.pending_space = !self.out.is_empty();
    }

    fn push_ascii_word(&mut self, word: &str) {
        if self.pending_space {
            self.out.push(' ');
            self.pending_space = false;
        }
        let start = self.out.len();
        self.out.push_str(word);
        self.out[start..].make_ascii_lowercase();
    }

    #[inline]
    fn push(&mut self, c: char) {
        if is_space(c) {
            self.space();
        } else {
            if self.pending_space {
                self.out.push(' ');
                self.pending_space = false;
            }
            self.out.push(c);
        }
    }
}

/// Convenience wrapper returning a fresh `String`.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalize_into(text, &mut out);
    out
}

fn collapse_ascii(bytes: &[u8], out: &mut String) {
    let mut buf = std::mem::take(out).into_bytes();
    buf.clear();
    buf.reserve(bytes.len());
    let mut pending_space = false;
    for &b in bytes {
        if is_ascii_space(b) {
            pending_space = !buf.is_empty();
        } else {
            if pending_space {
                buf.push(b' ');
                pending_space = false;
            }
            buf.push(b.to_ascii_lowercase());
        }
    }
    // Only ASCII bytes were written, so the conversion cannot fail.
    *out = String::from_utf8(buf).unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_and_lowercases_ascii() {
        assert_eq!(normalize("  Hello,\t\nWORLD  again "), "hello, world again");
        assert_eq!(normalize(""), "");
        assert_eq!(normalize(" \t\r\n"), "");
        assert_eq!(normalize("a\x1cb\x0bc"), "a b c");
    }

    #[test]
    fn nfkc_and_case_folding() {
        // Full-width letters, ligature, German sharp s, Greek final sigma, no-break space.
        assert_eq!(
            normalize("ＨＥＬＬＯ ﬁne STRAẞE\u{a0}ΟΔΟΣ"),
            "hello fine strasse οδοσ"
        );
        // Unicode spaces collapse too.
        assert_eq!(normalize("a\u{3000}\u{2028}b"), "a b");
    }

    #[test]
    fn nul_and_odd_input_survive() {
        assert_eq!(normalize("a\0b"), "a\0b");
        assert_eq!(normalize("\u{10FFFF}\u{FFFD}"), "\u{10FFFF}\u{FFFD}");
        let combining = "e\u{301}"; // decomposed é
        assert_eq!(normalize(combining), "é");
    }

    #[test]
    fn idempotent() {
        for s in ["ＨＥＬＬＯ ﬁne", "ǅ ǈ ǋ", "İstanbul", "ﬀ Ⅻ ㎏", "a  b"] {
            let once = normalize(s);
            assert_eq!(normalize(&once), once, "{s:?}");
        }
    }
}
