//! Text normalisation applied before shingling: NFKC, full Unicode case folding
//! and whitespace collapse.
//!
//! Near-duplicate detection should not be fooled by full-width letters, ligatures,
//! capitalisation or runs of spaces, so these are erased before anything is hashed.
//! The result has words separated by single ASCII spaces and no leading or trailing
//! space, which lets the word shingler split on `' '` alone.

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;

/// Whitespace as Python's `str.split()` sees it: Unicode `White_Space` plus the
/// four ASCII information separators (U+001C..U+001F), so both sides agree.
#[inline]
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[inline]
fn is_ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f)
}

/// Normalise `text` into `out` (which is cleared first).
pub fn normalize_into(text: &str, out: &mut String) {
    out.clear();
    if text.is_ascii() {
        // For ASCII input NFKC is the identity and case folding is lowercasing.
        collapse_ascii(text.as_bytes(), out);
    } else {
        // NFKC_Casefold-style: normalise, fold, and normalise again because folding
        // can produce sequences that are not in NFKC.
        let folded: String = text.nfkc().default_case_fold().nfkc().collect();
        collapse(&folded, out);
    }
}

/// Convenience wrapper returning a fresh `String`.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalize_into(text, &mut out);
    out
}

fn collapse_ascii(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len());
    let mut pending_space = false;
    for &b in bytes {
        if is_ascii_space(b) {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(char::from(b.to_ascii_lowercase()));
        }
    }
}

fn collapse(text: &str, out: &mut String) {
    out.reserve(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if is_space(c) {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
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
