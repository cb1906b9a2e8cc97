//! Compact encoding of sorted sets of 16-bit fingerprints (Elias–Fano).
//!
//! Exact verification keeps every stored text's shingle fingerprints, so their
//! size is most of the index. A sorted set of `n` values below 2^16 is split into
//! `l = floor(log2(2^16 / n))` low bits, stored verbatim, and high bits stored in
//! unary as a bit vector of `n + 2^(16 - l)` bits: about `n * (l + 2)` bits in all,
//! 78 bytes instead of 98 for the ~49 shingles of a 50-word prompt.
//!
//! Layout: `n` as a LEB128 varint, then the low bits packed little-endian, then
//! the high-bit vector (each part padded to a whole byte).

/// Number of low bits for a set of `n` values.
fn low_bits(n: usize) -> u32 {
    if n == 0 {
        return 0;
    }
    // floor(log2(65536 / n)), kept within 0..=15.
    (65536 / n).max(1).ilog2().min(15)
}

/// Append the encoding of `set` (sorted, distinct) to `out`.
pub fn encode(set: &[u16], out: &mut Vec<u8>) {
    let n = set.len();
    let mut v = n;
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    if n == 0 {
        return;
    }
    let l = low_bits(n);
    let low_bytes = (n * l as usize).div_ceil(8);
    let high_len = n + (65536usize >> l);
    let start = out.len();
    out.resize(start + low_bytes + high_len.div_ceil(8), 0);
    let (low, high) = out[start..].split_at_mut(low_bytes);
    let mask = (1u64 << l) - 1;
    // Low bits through a 64-bit accumulator, flushed a byte at a time.
    let (mut acc, mut filled, mut at) = (0u64, 0u32, 0usize);
    for (i, &x) in set.iter().enumerate() {
        acc |= (u64::from(x) & mask) << filled;
        filled += l;
        while filled >= 8 {
            low[at] = acc as u8;
            at += 1;
            acc >>= 8;
            filled -= 8;
        }
        let pos = (usize::from(x) >> l) + i;
        high[pos / 8] |= 1 << (pos % 8);
    }
    if filled > 0 {
        low[at] = acc as u8;
    }
}

/// Number of values in an encoded set (without decoding it).
pub fn count(data: &[u8]) -> Option<usize> {
    read_varint(data).map(|(n, _)| n)
}

fn read_varint(data: &[u8]) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for (i, &b) in data.iter().enumerate().take(3) {
        n |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// Total encoded length of a set of `n` values.
fn encoded_len(n: usize, header: usize) -> usize {
    if n == 0 {
        return header;
    }
    let l = low_bits(n);
    header + (n * l as usize).div_ceil(8) + (n + (65536usize >> l)).div_ceil(8)
}

/// Decode into `out` (cleared first). `None` if `data` is not exactly one valid
/// encoding (wrong length, wrong number of high bits, values not increasing).
pub fn decode(data: &[u8], out: &mut Vec<u16>) -> Option<()> {
    out.clear();
    let (n, header) = read_varint(data)?;
    if n > 65536 || encoded_len(n, header) != data.len() {
        return None;
    }
    if n == 0 {
        return Some(());
    }
    let l = low_bits(n);
    let low_bytes = (n * l as usize).div_ceil(8);
    let (low, high) = data[header..].split_at(low_bytes);
    out.reserve(n);
    let mask = (1u64 << l) - 1;
    let (mut acc, mut filled, mut at) = (0u64, 0u32, 0usize);
    let mut i = 0usize;
    for (w, &byte) in high.iter().enumerate() {
        let mut bits = byte;
        while bits != 0 {
            let pos = w * 8 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if i >= n || pos < i {
                return None;
            }
            while filled < l {
                acc |= u64::from(*low.get(at)?) << filled;
                at += 1;
                filled += 8;
            }
            let lo = (acc & mask) as usize;
            acc >>= l;
            filled -= l;
            let v = ((pos - i) << l) | lo;
            if v > 0xFFFF || out.last().is_some_and(|&p| usize::from(p) >= v) {
                return None;
            }
            out.push(v as u16);
            i += 1;
        }
    }
    (i == n).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::SplitMix64;

    fn round_trip(set: &[u16]) -> Vec<u8> {
        let mut enc = Vec::new();
        encode(set, &mut enc);
        let mut dec = Vec::new();
        decode(&enc, &mut dec).expect("valid encoding");
        assert_eq!(dec, set);
        assert_eq!(count(&enc), Some(set.len()));
        enc
    }

    #[test]
    fn round_trips_sets_of_every_size() {
        let mut rng = SplitMix64::new(8);
        for n in [0usize, 1, 2, 3, 7, 49, 100, 1000, 20_000, 65_536] {
            let mut set: Vec<u16> = if n == 65_536 {
                (0..=u16::MAX).collect()
            } else {
                (0..n * 2).map(|_| rng.next_u64() as u16).collect()
            };
            set.sort_unstable();
            set.dedup();
            set.truncate(n.max(1).min(set.len()));
            round_trip(&set);
        }
        round_trip(&[0]);
        round_trip(&[u16::MAX]);
        round_trip(&[0, u16::MAX]);
    }

    #[test]
    fn is_compact_for_prompt_sized_sets() {
        let mut rng = SplitMix64::new(9);
        let mut set: Vec<u16> = (0..49).map(|_| rng.next_u64() as u16).collect();
        set.sort_unstable();
        set.dedup();
        assert!(round_trip(&set).len() <= 80);
    }

    #[test]
    fn rejects_corrupt_data() {
        let mut enc = Vec::new();
        encode(&[3, 900, 4000, 60000], &mut enc);
        let mut out = Vec::new();
        assert!(decode(&enc[..enc.len() - 1], &mut out).is_none());
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decode(&longer, &mut out).is_none());
        assert!(decode(&[], &mut out).is_none());
        assert!(decode(&[0xFF, 0xFF, 0xFF, 0xFF], &mut out).is_none());
        let last = enc.len() - 1;
        let mut extra_bit = enc.clone();
        extra_bit[last] ^= 0x80;
        assert!(decode(&extra_bit, &mut out).is_none() || out.len() == 4);
        // Every single-byte corruption is either rejected or decodes to a sorted set.
        for i in 0..enc.len() {
            for flip in [1u8, 0x10, 0x80] {
                let mut bad = enc.clone();
                bad[i] ^= flip;
                if decode(&bad, &mut out).is_some() {
                    assert!(out.windows(2).all(|w| w[0] < w[1]));
                }
            }
        }
    }
}
