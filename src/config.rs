//! Settings of a similarity index: method, threshold, shingling, LSH banding,
//! verification. Validated once here so the rest of the crate can trust them.

use crate::lsh;
use crate::serial::{ReadResult, Reader, Writer};
use crate::shingle::Shingling;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    MinHash,
    SimHash,
    Exact,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "minhash" => Ok(Self::MinHash),
            "simhash" => Ok(Self::SimHash),
            "exact" => Ok(Self::Exact),
            other => Err(format!(
                "method must be 'minhash', 'simhash' or 'exact', got {other:?}"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::MinHash => "minhash",
            Self::SimHash => "simhash",
            Self::Exact => "exact",
        }
    }
}

/// How MinHash LSH candidates are checked before being reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Exact Jaccard of the stored shingle sets (16-bit shingle fingerprints).
    Exact,
    /// Jaccard estimated from a stored 8-bit-per-permutation signature.
    Signature,
    /// Report every LSH candidate unchecked.
    None,
}

impl Verify {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Self::Exact),
            "signature" => Ok(Self::Signature),
            "none" => Ok(Self::None),
            other => Err(format!(
                "verify must be 'exact', 'signature' or 'none', got {other:?}"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Signature => "signature",
            Self::None => "none",
        }
    }
}

/// LSH weights `(false positive, false negative)` used when bands/rows are not given.
/// With verification a false positive only costs one check, so misses weigh more.
pub fn default_weights(verify: Verify) -> (f64, f64) {
    match verify {
        Verify::None => (0.5, 0.5),
        Verify::Exact | Verify::Signature => (0.05, 0.95),
    }
}

/// Validated, fully resolved settings of an index.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub method: Method,
    pub threshold: f64,
    pub shingling: Shingling,
    pub num_perm: u32,
    pub bands: u32,
    pub rows: u32,
    pub verify: Verify,
    pub max_distance: u32,
    pub seed: u64,
}

pub const MAX_PERM: u32 = 4096;
pub const MAX_DISTANCE: u32 = 3;

impl Config {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        method: Method,
        threshold: f64,
        shingling: Shingling,
        num_perm: u32,
        bands: Option<u32>,
        rows: Option<u32>,
        verify: Verify,
        max_distance: u32,
        seed: u64,
    ) -> Result<Self, String> {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(format!("threshold must be in (0, 1], got {threshold}"));
        }
        if num_perm == 0 || num_perm > MAX_PERM {
            return Err(format!(
                "num_perm must be between 1 and {MAX_PERM}, got {num_perm}"
            ));
        }
        if max_distance > MAX_DISTANCE {
            return Err(format!(
                "max_distance must be between 0 and {MAX_DISTANCE}, got {max_distance}"
            ));
        }
        let (bands, rows) = if method != Method::MinHash {
            (0, 0) // banding only applies to MinHash; the other methods record none
        } else {
            let (bands, rows) = match (bands, rows) {
                (Some(b), Some(r)) => (b, r),
                (Some(b), None) if b > 0 => (b, num_perm / b),
                (None, Some(r)) if r > 0 => (num_perm / r, r),
                (None, None) => {
                    let (fp, fn_) = default_weights(verify);
                    lsh::optimal_params(threshold, num_perm, fp, fn_)
                }
                (b, r) => (b.unwrap_or(0), r.unwrap_or(0)),
            };
            if bands == 0 || rows == 0 || u64::from(bands) * u64::from(rows) > u64::from(num_perm) {
                return Err(format!(
                    "need bands >= 1, rows >= 1 and bands * rows <= num_perm ({num_perm}), got {bands} x {rows}"
                ));
            }
            (bands, rows)
        };
        Ok(Self {
            method,
            threshold,
            shingling,
            num_perm,
            bands,
            rows,
            verify,
            max_distance,
            seed,
        })
    }

    pub fn write(&self, w: &mut Writer) {
        w.u8(match self.method {
            Method::MinHash => 0,
            Method::SimHash => 1,
            Method::Exact => 2,
        });
        w.f64(self.threshold);
        w.u8(match self.shingling {
            Shingling::Words(_) => 0,
            Shingling::Chars(_) => 1,
        });
        w.u32(self.shingling.n());
        w.u32(self.num_perm);
        w.u32(self.bands);
        w.u32(self.rows);
        w.u8(match self.verify {
            Verify::Exact => 0,
            Verify::Signature => 1,
            Verify::None => 2,
        });
        w.u32(self.max_distance);
        w.u64(self.seed);
    }

    pub fn read(r: &mut Reader) -> ReadResult<Self> {
        let method = match r.u8()? {
            0 => Method::MinHash,
            1 => Method::SimHash,
            2 => Method::Exact,
            m => return Err(format!("unknown method code {m}")),
        };
        let threshold = r.f64()?;
        let kind = match r.u8()? {
            0 => "word",
            1 => "char",
            k => return Err(format!("unknown shingle code {k}")),
        };
        let shingling = Shingling::parse(kind, r.u32()?)?;
        let num_perm = r.u32()?;
        let bands = r.u32()?;
        let rows = r.u32()?;
        let verify = match r.u8()? {
            0 => Verify::Exact,
            1 => Verify::Signature,
            2 => Verify::None,
            v => return Err(format!("unknown verify code {v}")),
        };
        let max_distance = r.u32()?;
        let seed = r.u64()?;
        Self::new(
            method,
            threshold,
            shingling,
            num_perm,
            Some(bands),
            Some(rows),
            verify,
            max_distance,
            seed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minhash(threshold: f64, bands: Option<u32>, rows: Option<u32>) -> Result<Config, String> {
        Config::new(
            Method::MinHash,
            threshold,
            Shingling::Words(3),
            128,
            bands,
            rows,
            Verify::Exact,
            3,
            1,
        )
    }

    #[test]
    fn resolves_and_validates_banding() {
        let c = minhash(0.8, None, None).unwrap();
        assert_eq!((c.bands, c.rows), (16, 8));
        assert_eq!(minhash(0.8, Some(32), None).map(|c| c.rows), Ok(4));
        assert_eq!(minhash(0.8, None, Some(5)).map(|c| c.bands), Ok(25));
        assert!(minhash(0.8, Some(20), Some(7)).is_err());
        assert!(minhash(0.8, Some(0), None).is_err());
        assert!(minhash(0.0, None, None).is_err());
        assert!(minhash(f64::NAN, None, None).is_err());
        assert!(minhash(1.5, None, None).is_err());
    }

    #[test]
    fn round_trips_through_bytes() {
        let c = minhash(0.7, Some(10), Some(6)).unwrap();
        let mut w = Writer::new();
        c.write(&mut w);
        let data = w.finish();
        let mut r = Reader::new(&data).unwrap();
        assert_eq!(Config::read(&mut r).unwrap(), c);
    }

    #[test]
    fn names_parse_back() {
        for m in [Method::MinHash, Method::SimHash, Method::Exact] {
            assert_eq!(Method::parse(m.name()), Ok(m));
        }
        for v in [Verify::Exact, Verify::Signature, Verify::None] {
            assert_eq!(Verify::parse(v.name()), Ok(v));
        }
        assert!(Method::parse("lsh").is_err());
    }
}
