//! Shingling of normalised text into 64-bit shingle hashes.
//!
//! Word n-grams hash every word once and combine `n` neighbouring word hashes, so
//! a 50-word prompt costs ~50 short hashes instead of re-hashing overlapping text.
//! Character n-grams hash each `n`-character window of the normalised text.
//! A text shorter than one shingle (but not empty) yields one shingle of the whole
//! text, so short prompts are still comparable; an empty text has no shingles.

use crate::hashing::{combine, hash_word};
use crate::normalize::is_ascii_space;
use xxhash_rust::xxh3::xxh3_64_with_seed;

const WORD_SEED: u64 = 0x5753_4849_4E47_4C45; // "WSHINGLE"
const CHAR_SEED: u64 = 0x4353_4849_4E47_4C45; // "CSHINGLE"

/// How a normalised text is cut into shingles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shingling {
    /// `n` consecutive words.
    Words(u32),
    /// `n` consecutive Unicode scalar values (spaces included).
    Chars(u32),
}

/// Reusable buffers, so that hashing a text allocates nothing in steady state.
#[derive(Default, Debug)]
pub struct Scratch {
    pub norm: String,
    pub words: Vec<u64>,
    pub bounds: Vec<usize>,
    pub hashes: Vec<u64>,
    pub lower: Vec<u8>,
    /// Free buffers for the sketchers (folded hashes, signatures).
    pub u32s: Vec<u32>,
    pub sig: Vec<u32>,
}

impl Shingling {
    /// Parse the Python-facing spelling (`"word"` / `"char"`) and size.
    pub fn parse(kind: &str, n: u32) -> Result<Self, String> {
        if n == 0 || n > 64 {
            return Err(format!("ngram must be between 1 and 64, got {n}"));
        }
        match kind {
            "word" => Ok(Self::Words(n)),
            "char" => Ok(Self::Chars(n)),
            other => Err(format!("shingle must be 'word' or 'char', got {other:?}")),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Words(_) => "word",
            Self::Chars(_) => "char",
        }
    }

    pub fn n(&self) -> u32 {
        match *self {
            Self::Words(n) | Self::Chars(n) => n,
        }
    }

    /// Hash every shingle of the already-normalised `norm` into `out` (cleared first),
    /// in text order, repeats included.
    pub fn hash_into(
        &self,
        norm: &str,
        words: &mut Vec<u64>,
        bounds: &mut Vec<usize>,
        out: &mut Vec<u64>,
    ) {
        out.clear();
        if norm.is_empty() {
            return;
        }
        match *self {
            Self::Words(n) => {
                words.clear();
                // `norm` has single-space separators and no leading/trailing space.
                words.extend(norm.as_bytes().split(|&b| b == b' ').map(hash_word));
                word_shingles(words, n as usize, out);
            }
            Self::Chars(n) => {
                let n = n as usize;
                let seed = CHAR_SEED ^ n as u64;
                if norm.is_ascii() {
                    let bytes = norm.as_bytes();
                    if bytes.len() <= n {
                        out.push(xxh3_64_with_seed(bytes, seed));
                    } else {
                        out.extend(bytes.windows(n).map(|w| xxh3_64_with_seed(w, seed)));
                    }
                } else {
                    bounds.clear();
                    bounds.extend(norm.char_indices().map(|(i, _)| i));
                    bounds.push(norm.len());
                    let chars = bounds.len() - 1;
                    let bytes = norm.as_bytes();
                    if chars <= n {
                        out.push(xxh3_64_with_seed(bytes, seed));
                    } else {
                        out.extend(
                            bounds
                                .windows(n + 1)
                                .map(|w| xxh3_64_with_seed(&bytes[w[0]..w[n]], seed)),
                        );
                    }
                }
            }
        }
    }

    /// Normalise `text` and hash its shingles into `scratch.hashes`.
    pub fn hash_text(&self, text: &str, scratch: &mut Scratch) {
        if let (Self::Words(n), true) = (*self, text.is_ascii()) {
            // Fast path, same result: lowercase, split on ASCII whitespace and hash
            // each word, without building the normalised text.
            let Scratch {
                lower,
                words,
                hashes,
                ..
            } = scratch;
            lower.clear();
            lower.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
            words.clear();
            words.extend(
                lower
                    .split(|&b| is_ascii_space(b))
                    .filter(|w| !w.is_empty())
                    .map(hash_word),
            );
            hashes.clear();
            if !words.is_empty() {
                word_shingles(words, n as usize, hashes);
            }
            return;
        }
        crate::normalize::normalize_into(text, &mut scratch.norm);
        let Scratch {
            norm,
            words,
            bounds,
            hashes,
            ..
        } = scratch;
        self.hash_into(norm, words, bounds, hashes);
    }

    /// The shingles themselves, for inspection and tests (same cut as `hash_into`).
    pub fn strings(&self, norm: &str) -> Vec<String> {
        if norm.is_empty() {
            return Vec::new();
        }
        match *self {
            Self::Words(n) => {
                let words: Vec<&str> = norm.split(' ').collect();
                if words.len() <= n as usize {
                    vec![words.join(" ")]
                } else {
                    words.windows(n as usize).map(|w| w.join(" ")).collect()
                }
            }
            Self::Chars(n) => {
                let chars: Vec<char> = norm.chars().collect();
                if chars.len() <= n as usize {
                    vec![norm.to_owned()]
                } else {
                    chars
                        .windows(n as usize)
                        .map(|w| w.iter().collect())
                        .collect()
                }
            }
        }
    }
}

/// Shingle hashes from per-word hashes: each window of `n` words, or the whole
/// text if it is shorter than that.
fn word_shingles(words: &[u64], n: usize, out: &mut Vec<u64>) {
    let seed = WORD_SEED ^ n as u64;
    if words.len() <= n {
        out.push(combine(seed, words.iter().copied()));
    } else {
        out.extend(words.windows(n).map(|w| combine(seed, w.iter().copied())));
    }
}

/// Sorted, de-duplicated copy of `hashes`: the shingle set.
pub fn to_set(hashes: &[u64]) -> Vec<u64> {
    let mut set = hashes.to_vec();
    set.sort_unstable();
    set.dedup();
    set
}

/// Exact Jaccard similarity of two sorted, de-duplicated sets (1.0 for two empty sets).
pub fn jaccard_sorted<T: Ord>(a: &[T], b: &[T]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let inter = intersection_size(a, b);
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Size of the intersection of two sorted, de-duplicated slices (merge walk).
pub fn intersection_size<T: Ord>(a: &[T], b: &[T]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(s: Shingling, text: &str) -> Vec<u64> {
        let mut scratch = Scratch::default();
        s.hash_text(text, &mut scratch);
        scratch.hashes.clone()
    }

    #[test]
    fn word_shingles_count_and_short_text() {
        let w3 = Shingling::Words(3);
        assert_eq!(hashes(w3, "a b c d e").len(), 3);
        assert_eq!(hashes(w3, "a b").len(), 1);
        assert_eq!(hashes(w3, "a b c").len(), 1);
        assert!(hashes(w3, "").is_empty());
        assert!(hashes(w3, "   ").is_empty());
        assert_eq!(w3.strings("a b c d"), vec!["a b c", "b c d"]);
        assert_eq!(w3.strings("a b"), vec!["a b"]);
    }

    #[test]
    fn normalisation_makes_variants_equal() {
        let w = Shingling::Words(2);
        assert_eq!(
            hashes(w, "Hello   WORLD foo"),
            hashes(w, "hello world\tfoo")
        );
        assert_ne!(hashes(w, "hello world foo"), hashes(w, "hello world bar"));
    }

    #[test]
    fn word_boundaries_matter() {
        let w = Shingling::Words(2);
        assert_ne!(hashes(w, "ab c"), hashes(w, "a bc"));
        assert_ne!(
            hashes(Shingling::Words(1), "a"),
            hashes(Shingling::Words(2), "a")
        );
    }

    #[test]
    fn char_shingles_ascii_and_unicode_agree_on_counts() {
        let c3 = Shingling::Chars(3);
        assert_eq!(hashes(c3, "abcde").len(), 3);
        assert_eq!(hashes(c3, "ab").len(), 1);
        assert_eq!(hashes(c3, "αβγδε").len(), 3);
        assert_eq!(c3.strings("αβγδ"), vec!["αβγ", "βγδ"]);
        // Same shingle text gives the same hash whichever path produced it.
        let ascii = hashes(c3, "xyz");
        let mixed = hashes(c3, "xyzé");
        assert_eq!(ascii[0], mixed[0]);
    }

    #[test]
    fn ascii_fast_path_matches_general_path() {
        let alphabet = b"aZ b\t\n\x0b\x0c\r\x1c\x1f\x00.,!Q";
        let mut rng = crate::hashing::SplitMix64::new(11);
        for _ in 0..3000 {
            let len = (rng.next_u64() % 40) as usize;
            let text: String = (0..len)
                .map(|_| char::from(alphabet[(rng.next_u64() % alphabet.len() as u64) as usize]))
                .collect();
            for s in [Shingling::Words(1), Shingling::Words(3)] {
                let mut scratch = Scratch::default();
                s.hash_text(&text, &mut scratch);
                let norm = crate::normalize::normalize(&text);
                let (mut w, mut b, mut h) = (Vec::new(), Vec::new(), Vec::new());
                s.hash_into(&norm, &mut w, &mut b, &mut h);
                assert_eq!(scratch.hashes, h, "{text:?}");
            }
        }
    }

    #[test]
    fn jaccard_basics() {
        assert_eq!(jaccard_sorted::<u64>(&[], &[]), 1.0);
        assert_eq!(jaccard_sorted(&[1u64], &[]), 0.0);
        assert_eq!(jaccard_sorted(&[1u64, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(intersection_size(&[1u16, 5, 9], &[1, 9]), 2);
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert!(Shingling::parse("word", 0).is_err());
        assert!(Shingling::parse("token", 3).is_err());
        assert_eq!(Shingling::parse("char", 5), Ok(Shingling::Chars(5)));
    }
}
