//! MinHash signatures over shingle hashes.
//!
//! Permutation `i` maps a 32-bit shingle value `x` to
//! `fmix(x ^ a_i)` with per-permutation odd multipliers (two multiply–xorshift
//! rounds): a bijection per permutation and well mixed across permutations, so
//! each slot behaves like an independent min-wise hash. The inner loop is plain
//! 32-bit lane arithmetic that LLVM vectorises; on x86-64 an AVX2 copy is
//! selected at run time, so the wheel still runs on any x86-64 CPU.

use crate::hashing::SplitMix64;

/// Lanes processed together; signatures are padded internally to a multiple of this.
pub const LANES: usize = 8;

/// Seeded family of `num_perm` hash permutations.
#[derive(Clone, Debug)]
pub struct Permutations {
    num_perm: usize,
    xor: Vec<u32>,
    mul1: Vec<u32>,
    mul2: Vec<u32>,
}

/// Fold a 64-bit shingle hash to the 32-bit value the permutations consume.
#[inline(always)]
pub fn fold32(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

impl Permutations {
    pub fn new(num_perm: usize, seed: u64) -> Self {
        let padded = num_perm.div_ceil(LANES) * LANES;
        let mut rng = SplitMix64::new(seed ^ 0x4D49_4E48_4153_4821);
        let mut xor = Vec::with_capacity(padded);
        let mut mul1 = Vec::with_capacity(padded);
        let mut mul2 = Vec::with_capacity(padded);
        for _ in 0..padded {
            let r = rng.next_u64();
            xor.push(r as u32);
            mul1.push((r >> 32) as u32 | 1);
            mul2.push(rng.next_u64() as u32 | 1);
        }
        Self {
            num_perm,
            xor,
            mul1,
            mul2,
        }
    }

    /// MinHash signature of the shingle values `xs` (already folded with `fold32`),
    /// written to `out`, which is resized to `num_perm`. An empty set gives all `u32::MAX`.
    pub fn signature(&self, xs: &[u32], out: &mut Vec<u32>) {
        out.clear();
        out.resize(self.xor.len(), u32::MAX);
        signature_dispatch(self, xs, out);
        out.truncate(self.num_perm);
    }
}

#[inline(always)]
fn signature_generic(p: &Permutations, xs: &[u32], out: &mut [u32]) {
    let chunks = out
        .chunks_exact_mut(LANES)
        .zip(p.xor.chunks_exact(LANES))
        .zip(p.mul1.chunks_exact(LANES))
        .zip(p.mul2.chunks_exact(LANES));
    for (((sig, a), m1), m2) in chunks {
        let mut acc = [u32::MAX; LANES];
        let a: [u32; LANES] = a.try_into().unwrap_or([0; LANES]);
        let m1: [u32; LANES] = m1.try_into().unwrap_or([1; LANES]);
        let m2: [u32; LANES] = m2.try_into().unwrap_or([1; LANES]);
        for &x in xs {
            for l in 0..LANES {
                let mut v = (x ^ a[l]).wrapping_mul(m1[l]);
                v ^= v >> 16;
                v = v.wrapping_mul(m2[l]);
                v ^= v >> 15;
                acc[l] = acc[l].min(v);
            }
        }
        sig.copy_from_slice(&acc);
    }
}

/// AVX2 kernel: 8 permutations per vector, two vectors per pass over the shingles
/// so the two multiply chains overlap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn signature_avx2(p: &Permutations, xs: &[u32], out: &mut [u32]) {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn load(s: &[u32]) -> __m256i {
        debug_assert!(s.len() >= LANES);
        // SAFETY: callers pass slices of exactly LANES u32 (unaligned load allowed).
        unsafe { _mm256_loadu_si256(s.as_ptr().cast::<__m256i>()) }
    }
    #[inline(always)]
    fn perm(x: __m256i, a: __m256i, m1: __m256i, m2: __m256i) -> __m256i {
        // SAFETY: only reached from the avx2-enabled function below.
        unsafe {
            let mut v = _mm256_mullo_epi32(_mm256_xor_si256(x, a), m1);
            v = _mm256_xor_si256(v, _mm256_srli_epi32::<16>(v));
            v = _mm256_mullo_epi32(v, m2);
            _mm256_xor_si256(v, _mm256_srli_epi32::<15>(v))
        }
    }
    let n = out.len() / LANES;
    let mut c = 0;
    while c < n {
        let pair = c + 1 < n;
        let r0 = c * LANES..(c + 1) * LANES;
        let r1 = if pair {
            (c + 1) * LANES..(c + 2) * LANES
        } else {
            r0.clone()
        };
        // SAFETY: r0/r1 are in bounds of the padded constant arrays and `out`.
        unsafe {
            let (a0, b0, d0) = (
                load(&p.xor[r0.clone()]),
                load(&p.mul1[r0.clone()]),
                load(&p.mul2[r0.clone()]),
            );
            let (a1, b1, d1) = (
                load(&p.xor[r1.clone()]),
                load(&p.mul1[r1.clone()]),
                load(&p.mul2[r1.clone()]),
            );
            let mut acc0 = _mm256_set1_epi32(-1);
            let mut acc1 = _mm256_set1_epi32(-1);
            for &x in xs {
                let xv = _mm256_set1_epi32(x as i32);
                acc0 = _mm256_min_epu32(acc0, perm(xv, a0, b0, d0));
                acc1 = _mm256_min_epu32(acc1, perm(xv, a1, b1, d1));
            }
            _mm256_storeu_si256(out[r0].as_mut_ptr().cast::<__m256i>(), acc0);
            if pair {
                _mm256_storeu_si256(out[r1].as_mut_ptr().cast::<__m256i>(), acc1);
            }
        }
        c += 2;
    }
}

#[cfg(target_arch = "x86_64")]
fn signature_dispatch(p: &Permutations, xs: &[u32], out: &mut [u32]) {
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above; the result is cached by std).
        unsafe { signature_avx2(p, xs, out) }
    } else {
        signature_generic(p, xs, out)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn signature_dispatch(p: &Permutations, xs: &[u32], out: &mut [u32]) {
    signature_generic(p, xs, out)
}

/// Fraction of equal slots: the MinHash estimate of Jaccard similarity.
pub fn estimate(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f64 / n as f64
}

/// Estimate from 8-bit truncated signatures (b-bit MinHash, b = 8), corrected for
/// the 1/256 chance that two different minima share their low byte.
pub fn estimate_b8(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n as f64;
    let c = 1.0 / 256.0;
    ((eq - c) / (1.0 - c)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::fmix64;

    fn set(range: std::ops::Range<u64>) -> Vec<u32> {
        range.map(|i| fold32(fmix64(i))).collect()
    }

    #[test]
    fn empty_set_is_all_max_and_len_is_num_perm() {
        let p = Permutations::new(13, 1);
        let mut sig = Vec::new();
        p.signature(&[], &mut sig);
        assert_eq!(sig, vec![u32::MAX; 13]);
        p.signature(&set(0..5), &mut sig);
        assert_eq!(sig.len(), 13);
    }

    #[test]
    fn generic_and_dispatched_agree() {
        let p = Permutations::new(64, 3);
        let xs = set(0..200);
        let mut a = vec![u32::MAX; 64];
        signature_generic(&p, &xs, &mut a);
        let mut b = Vec::new();
        p.signature(&xs, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn identical_sets_estimate_one_and_disjoint_near_zero() {
        let p = Permutations::new(128, 9);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        p.signature(&set(0..100), &mut a);
        p.signature(&set(0..100), &mut b);
        assert_eq!(estimate(&a, &b), 1.0);
        p.signature(&set(1000..1100), &mut b);
        assert!(estimate(&a, &b) < 0.05);
    }

    #[test]
    fn estimator_error_matches_theory() {
        // Mean squared error of the estimate should be close to J(1-J)/k for
        // independent permutations; badly correlated permutations inflate it.
        let k = 128;
        let p = Permutations::new(k, 42);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut sq = 0.0;
        let trials = 300u64;
        let j = 60.0 / 140.0; // |A|=|B|=100, overlap 60
        for t in 0..trials {
            let base = t * 10_000;
            p.signature(&set(base..base + 100), &mut a);
            p.signature(&set(base + 40..base + 140), &mut b);
            let e = estimate(&a, &b) - j;
            sq += e * e;
        }
        let mse = sq / trials as f64;
        let theory = j * (1.0 - j) / k as f64;
        assert!(
            mse < 1.5 * theory && mse > 0.5 * theory,
            "mse {mse} theory {theory}"
        );
    }

    #[test]
    fn b8_estimate_is_corrected() {
        assert_eq!(estimate_b8(&[1, 2, 3], &[1, 2, 3]), 1.0);
        assert!(estimate_b8(&[1, 2, 3, 4], &[5, 6, 7, 8]) == 0.0);
    }
}
