//! LSH banding: choice of bands x rows, and band keys.
//!
//! Two signatures become candidates when all `rows` slots of at least one of the
//! `bands` bands agree, which happens with probability `1 - (1 - s^r)^b` for
//! Jaccard `s`. `optimal_params` picks `(b, r)` by minimising the weighted areas
//! under that S-curve on the wrong side of the threshold (false positives below,
//! false negatives above), the method datasketch documents.

use crate::hashing::{combine, fmix64};

/// Probability that a pair with Jaccard `s` becomes a candidate.
pub fn candidate_probability(s: f64, bands: u32, rows: u32) -> f64 {
    1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32)
}

/// Composite Simpson integral of `f` over `[lo, hi]` (`n` even).
fn simpson(f: impl Fn(f64) -> f64, lo: f64, hi: f64, n: usize) -> f64 {
    if hi <= lo {
        return 0.0;
    }
    let h = (hi - lo) / n as f64;
    let mut sum = f(lo) + f(hi);
    for i in 1..n {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += w * f(lo + i as f64 * h);
    }
    sum * h / 3.0
}

/// Area under the S-curve below `threshold` (false-positive mass).
pub fn false_positive_area(threshold: f64, bands: u32, rows: u32) -> f64 {
    simpson(
        |s| candidate_probability(s, bands, rows),
        0.0,
        threshold,
        256,
    )
}

/// Area above the S-curve above `threshold` (false-negative mass).
pub fn false_negative_area(threshold: f64, bands: u32, rows: u32) -> f64 {
    simpson(
        |s| 1.0 - candidate_probability(s, bands, rows),
        threshold,
        1.0,
        256,
    )
}

/// `(bands, rows)` with `bands * rows <= num_perm` minimising
/// `fp_weight * FP area + fn_weight * FN area`.
pub fn optimal_params(threshold: f64, num_perm: u32, fp_weight: f64, fn_weight: f64) -> (u32, u32) {
    let mut best = (1, num_perm.max(1));
    let mut best_err = f64::INFINITY;
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let err = fp_weight * false_positive_area(threshold, b, r)
                + fn_weight * false_negative_area(threshold, b, r);
            if err < best_err {
                best_err = err;
                best = (b, r);
            }
        }
    }
    best
}

/// 32-bit key of one band of a signature. The band index is mixed in so that equal
/// rows in different bands never share a bucket by accident.
#[inline]
pub fn band_key(rows: &[u32], band: u32, seed: u64) -> u32 {
    let h = combine(
        fmix64(seed ^ u64::from(band)),
        rows.iter().map(|&v| u64::from(v)),
    );
    (h >> 32) as u32
}

/// Keys of all bands of `sig` (uses the first `bands * rows` slots), into `out`.
pub fn band_keys(sig: &[u32], bands: u32, rows: u32, seed: u64, out: &mut Vec<u32>) {
    out.clear();
    out.extend(
        sig.chunks_exact(rows as usize)
            .take(bands as usize)
            .enumerate()
            .map(|(i, chunk)| band_key(chunk, i as u32, seed)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_datasketch_choices() {
        // Values returned by datasketch.lsh._optimal_param (scipy quad integration).
        assert_eq!(optimal_params(0.8, 128, 0.5, 0.5), (9, 13));
        assert_eq!(optimal_params(0.8, 128, 0.05, 0.95), (16, 8));
        assert_eq!(optimal_params(0.5, 128, 0.5, 0.5), (25, 5));
        assert_eq!(optimal_params(0.9, 256, 0.5, 0.5), (9, 28));
    }

    #[test]
    fn probability_shape() {
        assert!(candidate_probability(0.0, 16, 8) == 0.0);
        assert!((candidate_probability(1.0, 16, 8) - 1.0).abs() < 1e-12);
        assert!(candidate_probability(0.9, 16, 8) > candidate_probability(0.6, 16, 8));
    }

    #[test]
    fn areas_are_sane() {
        let fp = false_positive_area(0.8, 1, 1); // integral of s over [0, .8]
        assert!((fp - 0.32).abs() < 1e-9);
        let fn_ = false_negative_area(0.8, 1, 1); // integral of 1-s over [.8, 1]
        assert!((fn_ - 0.02).abs() < 1e-9);
    }

    #[test]
    fn band_keys_depend_on_band_and_rows() {
        let sig: Vec<u32> = (0..16).collect();
        let mut keys = Vec::new();
        band_keys(&sig, 4, 4, 1, &mut keys);
        assert_eq!(keys.len(), 4);
        assert_ne!(band_key(&[1, 2], 0, 1), band_key(&[1, 2], 1, 1));
        assert_ne!(band_key(&[1, 2], 0, 1), band_key(&[1, 3], 0, 1));
        assert_eq!(band_key(&[1, 2], 0, 1), band_key(&[1, 2], 0, 1));
    }
}
