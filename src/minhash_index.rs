//! MinHash + LSH store with optional verification of candidates.
//!
//! Memory per stored text is one table entry per band (8 bytes at 72-90% load)
//! plus the verification payload:
//! - `Verify::Exact`: the shingle set as 16-bit fingerprints, Elias–Fano coded
//!   (about 1.6 bytes per distinct shingle, ~78 bytes for a 50-word prompt with
//!   word 3-grams; see `fpset`). Jaccard
//!   on these is exact up to fingerprint collisions, which only add a spurious
//!   match with probability |A \ B| * |B \ A| / 65536;
//! - `Verify::Signature`: the low byte of every permutation (`num_perm` bytes),
//!   giving an estimate whose error shrinks with `num_perm` but never vanishes;
//! - `Verify::None`: nothing; every band collision is reported.
//!
//! Full 32-bit signatures are never stored: at 128 permutations they alone would
//! cost 512 bytes per text.

use crate::config::{Config, Method, Verify};
use crate::fpset;
use crate::lsh;
use crate::minhash::{estimate_b8, fold32, Permutations};
use crate::seq::Seq;
use crate::serial::{ReadResult, Reader, Writer};
use crate::shingle::{jaccard_sorted, Scratch, Shingling};
use crate::store::{reserve_slack, Sketcher, Store};
use crate::table::KeyTable;

pub struct MinHashSketcher {
    shingling: Shingling,
    perms: Permutations,
    bands: u32,
    rows: u32,
    seed: u64,
    verify: Verify,
}

pub struct MinHashSketch {
    keys: Vec<u32>,
    /// Sorted, distinct 16-bit shingle fingerprints (exact verification only)...
    fps: Vec<u16>,
    /// ...and their compact encoding, made here so the parallel phase pays for it.
    fps_code: Vec<u8>,
    /// Low byte of each signature slot (signature verification only).
    sig8: Vec<u8>,
    /// Lowest bit of each of the first 128 signature slots (exact mode pre-filter).
    bits: [u64; 2],
}

/// 16-bit fingerprint of a shingle hash (top bits; the signature uses the folded low bits).
#[inline(always)]
fn fingerprint16(h: u64) -> u16 {
    (h >> 48) as u16
}

/// Sorted, distinct 16-bit fingerprints of `hashes`. The fingerprints are
/// uniform, so one counting pass on the high byte leaves buckets of about one
/// element each to finish by insertion sort: cheaper than a comparison sort at the
/// ~50 shingles of a prompt, and every text pays it.
fn sorted_fingerprints(hashes: &[u64]) -> Vec<u16> {
    let n = hashes.len();
    let mut out = vec![0u16; n];
    if n < 32 {
        for (o, &h) in out.iter_mut().zip(hashes) {
            *o = fingerprint16(h);
        }
        out.sort_unstable();
    } else {
        let mut starts = [0u32; 257];
        for &h in hashes {
            starts[usize::from(fingerprint16(h) >> 8) + 1] += 1;
        }
        for b in 1..257 {
            starts[b] += starts[b - 1];
        }
        let mut next = starts;
        for &h in hashes {
            let f = fingerprint16(h);
            let b = usize::from(f >> 8);
            out[next[b] as usize] = f;
            next[b] += 1;
        }
        for w in starts.windows(2) {
            let bucket = &mut out[w[0] as usize..w[1] as usize];
            if bucket.len() <= 16 {
                // Insertion sort: buckets hold about n / 256 elements.
                for i in 1..bucket.len() {
                    let v = bucket[i];
                    let mut j = i;
                    while j > 0 && bucket[j - 1] > v {
                        bucket[j] = bucket[j - 1];
                        j -= 1;
                    }
                    bucket[j] = v;
                }
            } else {
                bucket.sort_unstable();
            }
        }
    }
    out.dedup();
    out
}

/// Signature slots the exact-mode pre-filter reads.
fn bit_slots(cfg: &Config) -> u32 {
    (cfg.bands * cfg.rows).min(128)
}

impl MinHashSketcher {
    fn new(cfg: &Config) -> Self {
        // Signature verification needs every permutation; otherwise only the banded ones.
        let used = match cfg.verify {
            Verify::Signature => cfg.num_perm,
            Verify::Exact | Verify::None => cfg.bands * cfg.rows,
        };
        Self {
            shingling: cfg.shingling,
            perms: Permutations::new(used as usize, cfg.seed),
            bands: cfg.bands,
            rows: cfg.rows,
            seed: cfg.seed,
            verify: cfg.verify,
        }
    }
}

impl Sketcher for MinHashSketcher {
    type Sketch = MinHashSketch;

    fn sketch(&self, text: &str, scratch: &mut Scratch) -> MinHashSketch {
        self.shingling.hash_text(text, scratch);
        let Scratch {
            hashes, u32s, sig, ..
        } = scratch;
        u32s.clear();
        u32s.extend(hashes.iter().map(|&h| fold32(h)));
        self.perms.signature(u32s, sig);
        let mut keys = Vec::with_capacity(self.bands as usize);
        lsh::band_keys(sig, self.bands, self.rows, self.seed, &mut keys);
        let fps = match self.verify {
            Verify::Exact => sorted_fingerprints(hashes),
            Verify::Signature | Verify::None => Vec::new(),
        };
        let sig8 = match self.verify {
            Verify::Signature => sig.iter().map(|&v| v as u8).collect(),
            Verify::Exact | Verify::None => Vec::new(),
        };
        let mut fps_code = Vec::new();
        let mut bits = [0u64; 2];
        if self.verify == Verify::Exact {
            fpset::encode(&fps, &mut fps_code);
            for (i, &v) in sig.iter().take(128).enumerate() {
                bits[i / 64] |= u64::from(v & 1) << (i % 64);
            }
        }
        MinHashSketch {
            keys,
            fps,
            fps_code,
            sig8,
            bits,
        }
    }
}

pub struct MinHashStore {
    threshold: f64,
    verify: Verify,
    num_perm: usize,
    bands: u32,
    tables: Vec<KeyTable>,
    fp_data: Vec<u8>,
    /// `fp_data[fp_offsets[s]..fp_offsets[s + 1]]` is slot `s`'s encoded set (exact mode).
    fp_offsets: Seq,
    /// `MinHashSketch::bits` of each slot, two words per slot (exact mode).
    bits: Vec<u64>,
    /// Pre-filter cut-off: a candidate whose 1-bit estimate is below it is rejected
    /// without decoding its fingerprints (see `prefilter_cutoff`).
    cutoff: f64,
    /// Signature slots behind `bits` (128, or fewer if the bands use fewer).
    bit_slots: u32,
    sig_data: Vec<u8>,
}

/// 1-bit MinHash: two texts' lowest signature bits agree with probability
/// `(1 + J) / 2`, so `2 * agree / k - 1` estimates J with standard deviation
/// `2 * sqrt(p (1 - p) / k)`. Rejecting estimates more than five deviations below
/// the threshold skips most false LSH candidates while a pair at the threshold is
/// wrongly dropped with probability below 3e-7 (bits of the colliding band agree
/// by construction, which only raises the estimate).
fn prefilter_cutoff(threshold: f64, k: u32) -> f64 {
    if k == 0 {
        return f64::NEG_INFINITY;
    }
    let p = (1.0 + threshold) / 2.0;
    threshold - 5.0 * 2.0 * (p * (1.0 - p) / f64::from(k)).sqrt()
}

/// Exact Jaccard of two sorted 16-bit fingerprint sets if it reaches `threshold`.
fn verify_sets(a: &[u16], b: &[u16], threshold: f64) -> Option<f64> {
    // Size filter: J <= min/max, so skip the merge when that is already too small.
    if (a.len().min(b.len()) as f64) < threshold * a.len().max(b.len()) as f64 {
        return None;
    }
    let j = jaccard_sorted(a, b);
    (j >= threshold).then_some(j)
}

impl MinHashStore {
    /// Encoded fingerprint set of `slot` (empty for a slot dropped on save).
    fn fps_code(&self, slot: u32) -> &[u8] {
        let s = slot as usize;
        match (self.fp_offsets.get(s), self.fp_offsets.get(s + 1)) {
            (Some(a), Some(b)) => self.fp_data.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// False when the 1-bit estimate rules the pair out (exact mode only).
    fn may_match(&self, a: &[u64; 2], b: &[u64; 2]) -> bool {
        let k = self.bit_slots;
        let differ = (a[0] ^ b[0]).count_ones() + (a[1] ^ b[1]).count_ones();
        let agree = f64::from(k - differ.min(k));
        2.0 * agree / f64::from(k.max(1)) - 1.0 >= self.cutoff
    }

    fn sig8(&self, slot: u32) -> &[u8] {
        let start = slot as usize * self.num_perm;
        self.sig_data
            .get(start..start + self.num_perm)
            .unwrap_or(&[])
    }

    fn check(&self, fps: (&[u16], &[u16]), sig8: (&[u8], &[u8]), collisions: usize) -> Option<f64> {
        match self.verify {
            Verify::Exact => verify_sets(fps.0, fps.1, self.threshold),
            Verify::Signature => {
                let e = estimate_b8(sig8.0, sig8.1);
                (e >= self.threshold).then_some(e)
            }
            // Unverified: report the share of bands that collided.
            Verify::None => Some(collisions as f64 / self.bands as f64),
        }
    }
}

impl Store for MinHashStore {
    type Sketcher = MinHashSketcher;
    const METHOD: Method = Method::MinHash;

    fn new(cfg: &Config) -> (MinHashSketcher, Self) {
        let store = Self {
            threshold: cfg.threshold,
            verify: cfg.verify,
            num_perm: cfg.num_perm as usize,
            bands: cfg.bands,
            tables: (0..cfg.bands).map(|_| KeyTable::new()).collect(),
            fp_data: Vec::new(),
            fp_offsets: std::iter::once(0).collect(),
            bits: Vec::new(),
            cutoff: prefilter_cutoff(cfg.threshold, bit_slots(cfg)),
            bit_slots: bit_slots(cfg),
            sig_data: Vec::new(),
        };
        (MinHashSketcher::new(cfg), store)
    }

    fn tables(&self) -> &[KeyTable] {
        &self.tables
    }

    fn tables_mut(&mut self) -> &mut [KeyTable] {
        &mut self.tables
    }

    #[inline]
    fn key(&self, sketch: &MinHashSketch, table: usize) -> u32 {
        sketch.keys.get(table).copied().unwrap_or(0)
    }

    fn verify_stored(&self, sk: &MinHashSketch, slot: u32, collisions: usize) -> Option<f64> {
        if self.verify != Verify::Exact {
            return self.check((&[], &[]), (self.sig8(slot), &sk.sig8), collisions);
        }
        let s = slot as usize * 2;
        let stored_bits = [
            self.bits.get(s).copied().unwrap_or(0),
            self.bits.get(s + 1).copied().unwrap_or(0),
        ];
        if !self.may_match(&stored_bits, &sk.bits) {
            return None;
        }
        let code = self.fps_code(slot);
        // Size filter before decoding: J <= min/max of the set sizes.
        let n = fpset::count(code).unwrap_or(0);
        let m = sk.fps.len();
        if (n.min(m) as f64) < self.threshold * n.max(m) as f64 {
            return None;
        }
        thread_local! {
            static DECODED: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        DECODED.with(|buf| {
            let mut fresh = Vec::new();
            let mut guard = buf.try_borrow_mut();
            let stored = match guard.as_deref_mut() {
                Ok(b) => b,
                Err(_) => &mut fresh,
            };
            fpset::decode(code, stored)?;
            verify_sets(stored, &sk.fps, self.threshold)
        })
    }

    fn verify_pair(&self, a: &MinHashSketch, b: &MinHashSketch, collisions: usize) -> Option<f64> {
        if self.verify == Verify::Exact && !self.may_match(&a.bits, &b.bits) {
            return None;
        }
        self.check((&a.fps, &b.fps), (&a.sig8, &b.sig8), collisions)
    }

    fn push_payload(&mut self, sk: &MinHashSketch) {
        match self.verify {
            Verify::Exact => {
                reserve_slack(&mut self.fp_data, sk.fps_code.len());
                self.fp_data.extend_from_slice(&sk.fps_code);
                self.fp_offsets.push(self.fp_data.len() as u64);
                reserve_slack(&mut self.bits, 2);
                self.bits.extend_from_slice(&sk.bits);
            }
            Verify::Signature => {
                reserve_slack(&mut self.sig_data, sk.sig8.len());
                self.sig_data.extend_from_slice(&sk.sig8);
            }
            Verify::None => {}
        }
    }

    fn remove(&mut self, _slot: u32) {
        // Band keys are not kept per text (that would cost 4 bytes per band), so the
        // entries stay until the next save/load, masked out as not live.
    }

    fn write(&self, w: &mut Writer, live: impl Fn(u32) -> bool) {
        for t in &self.tables {
            let mut packed: Vec<u64> = t
                .iter()
                .filter(|&(_, s)| live(s))
                .map(|(k, s)| (u64::from(k) << 32) | u64::from(s))
                .collect();
            packed.sort_unstable();
            w.u64s(&packed);
        }
        let slots = self.fp_offsets.len().saturating_sub(1);
        let mut offsets = Vec::with_capacity(self.fp_offsets.len());
        let mut data = Vec::with_capacity(self.fp_data.len());
        offsets.push(0u64);
        for s in 0..slots as u32 {
            if live(s) {
                data.extend_from_slice(self.fps_code(s));
            }
            offsets.push(data.len() as u64);
        }
        w.u64s(&offsets);
        w.bytes(&data);
        w.u64s(&self.bits);
        w.bytes(&self.sig_data);
    }

    fn read(
        cfg: &Config,
        r: &mut Reader,
        slots: usize,
        _live: impl Fn(u32) -> bool,
    ) -> ReadResult<(MinHashSketcher, Self)> {
        let (sketcher, mut store) = Self::new(cfg);
        for t in store.tables.iter_mut() {
            let pairs: Vec<(u32, u32)> = r
                .u64s()?
                .into_iter()
                .map(|e| ((e >> 32) as u32, e as u32))
                .collect();
            if pairs.iter().any(|&(_, s)| s as usize >= slots) {
                return Err("band entry points past the stored texts".into());
            }
            *t = KeyTable::from_pairs(&pairs).ok_or("corrupt band table")?;
        }
        let offsets = r.u64s()?;
        let data = r.bytes()?.to_vec();
        let bits = r.u64s()?;
        let sig = r.bytes()?;
        match cfg.verify {
            Verify::Exact => {
                let ok = offsets.len() == slots + 1
                    && offsets.first() == Some(&0)
                    && offsets.last() == Some(&(data.len() as u64))
                    && offsets.windows(2).all(|w| w[0] <= w[1]);
                if !ok {
                    return Err("corrupt shingle-set offsets".into());
                }
                if bits.len() != slots * 2 {
                    return Err("corrupt pre-filter bits".into());
                }
                store.bits = bits;
                store.fp_offsets = offsets.into_iter().collect();
                store.fp_data = data;
                let mut scratch = Vec::new();
                for s in 0..slots as u32 {
                    let code = store.fps_code(s);
                    if !code.is_empty() && fpset::decode(code, &mut scratch).is_none() {
                        return Err("corrupt shingle set".into());
                    }
                }
            }
            Verify::Signature => {
                if sig.len() != slots * store.num_perm {
                    return Err("corrupt signature data".into());
                }
                store.sig_data = sig.to_vec();
            }
            Verify::None => {}
        }
        Ok((sketcher, store))
    }

    fn payload_bytes(&self) -> usize {
        self.fp_data.capacity()
            + self.fp_offsets.memory_bytes()
            + self.bits.capacity() * 8
            + self.sig_data.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;

    fn cfg(verify: Verify) -> Config {
        Config::new(
            Method::MinHash,
            0.8,
            Shingling::Words(3),
            128,
            None,
            None,
            verify,
            3,
            1,
        )
        .unwrap()
    }

    const BASE: &str =
        "write a short story about a lighthouse keeper who finds a message in a bottle \
        and decides to sail across the northern sea to return it to the sender before winter";

    #[test]
    fn finds_near_duplicate_and_rejects_different_text() {
        for verify in [Verify::Exact, Verify::Signature, Verify::None] {
            let mut idx: Index<MinHashStore> = Index::new(cfg(verify));
            assert_eq!(idx.insert_if_new(BASE).unwrap(), None);
            let near = BASE.replace("winter", "spring");
            let hit = idx.insert_if_new(&near).unwrap();
            assert_eq!(hit.map(|h| h.0), Some(0), "{verify:?}");
            let other =
                "explain how photosynthesis converts light energy into chemical energy in plants";
            assert_eq!(idx.insert_if_new(other).unwrap(), None);
            assert_eq!(idx.len(), 2);
            assert_eq!(idx.next_position(), 3);
            assert_eq!(idx.duplicates(), &[(1, 0)]);
        }
    }

    #[test]
    fn exact_verification_reports_true_jaccard() {
        let mut idx: Index<MinHashStore> = Index::new(cfg(Verify::Exact));
        idx.insert(BASE).unwrap();
        let hits = idx.query(BASE);
        assert_eq!(hits, vec![(0, 1.0)]);
        let near = BASE.replace("winter", "spring");
        let (_, sim) = idx.query(&near)[0];
        // 31 words -> 29 distinct trigrams; changing the last word alters one.
        assert!((sim - 28.0 / 30.0).abs() < 1e-12, "{sim}");
    }

    #[test]
    fn batch_equals_one_by_one() {
        let texts: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    "{BASE} number {} {}",
                    i % 37,
                    if i % 5 == 0 { "extra" } else { "" }
                )
            })
            .collect();
        let mut a: Index<MinHashStore> = Index::new(cfg(Verify::Exact));
        let one: Vec<_> = texts.iter().map(|t| a.insert_if_new(t).unwrap()).collect();
        let mut b: Index<MinHashStore> = Index::new(cfg(Verify::Exact));
        let many = b.insert_if_new_many(&texts).unwrap();
        assert_eq!(one, many);
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    #[test]
    fn remove_and_round_trip() {
        for verify in [Verify::Exact, Verify::Signature, Verify::None] {
            let mut idx: Index<MinHashStore> = Index::new(cfg(verify));
            idx.insert(BASE).unwrap();
            idx.insert("something completely different from the base text here")
                .unwrap();
            assert!(idx.remove(0));
            assert!(!idx.remove(0));
            assert!(!idx.remove(7));
            assert!(idx.query(BASE).is_empty());
            let bytes = idx.to_bytes();
            let back: Index<MinHashStore> = Index::from_bytes(&bytes).unwrap();
            assert_eq!(back.len(), 1);
            assert_eq!(back.next_position(), 2);
            assert_eq!(
                back.query("something completely different from the base text here")[0].0,
                1
            );
            assert!(back.query(BASE).is_empty());
            assert!(Index::<MinHashStore>::from_bytes(&bytes[..bytes.len() / 2]).is_err());
        }
    }

    #[test]
    fn sorted_fingerprints_sort_and_dedup() {
        let mut rng = crate::hashing::SplitMix64::new(4);
        for n in [0usize, 1, 31, 32, 57, 500, 70_000] {
            let hashes: Vec<u64> = (0..n).map(|i| rng.next_u64() >> (i % 3 * 8)).collect();
            let mut expect: Vec<u16> = hashes.iter().map(|&h| fingerprint16(h)).collect();
            expect.sort_unstable();
            expect.dedup();
            assert!(sorted_fingerprints(&hashes) == expect, "n={n}");
        }
    }

    #[test]
    fn prefilter_keeps_every_pair_at_or_above_threshold() {
        assert!((prefilter_cutoff(0.8, 128) - 0.535).abs() < 0.01);
        let c = cfg(Verify::Exact);
        let (sketcher, store) = MinHashStore::new(&c);
        let mut scratch = Scratch::default();
        let mut rng = crate::hashing::SplitMix64::new(12);
        let (mut kept, mut rejected_far) = (0, 0);
        for trial in 0..2000u64 {
            let words: Vec<String> = (0..60).map(|i| format!("w{}_{}", trial, i)).collect();
            let mut edited = words.clone();
            let edits = (rng.next_u64() % 12) as usize;
            for _ in 0..edits {
                let at = (rng.next_u64() % 60) as usize;
                edited[at] = format!("x{}", rng.next_u64());
            }
            let (a, b) = (words.join(" "), edited.join(" "));
            let sa = sketcher.sketch(&a, &mut scratch);
            let sb = sketcher.sketch(&b, &mut scratch);
            let j = jaccard_sorted(&sa.fps, &sb.fps);
            if j >= 0.8 {
                assert!(
                    store.may_match(&sa.bits, &sb.bits),
                    "pair with J={j} rejected"
                );
                kept += 1;
            } else if j < 0.4 && !store.may_match(&sa.bits, &sb.bits) {
                rejected_far += 1;
            }
        }
        assert!(kept > 100);
        assert!(
            rejected_far > 0,
            "the pre-filter should reject clearly different pairs"
        );
    }

    #[test]
    fn empty_texts_are_duplicates_of_each_other() {
        let mut idx: Index<MinHashStore> = Index::new(cfg(Verify::Exact));
        assert_eq!(idx.insert_if_new("").unwrap(), None);
        assert_eq!(idx.insert_if_new("   ").unwrap(), Some((0, 1.0)));
    }
}
