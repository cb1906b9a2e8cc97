//! Little-endian byte encoding for saved indexes, with checked reads: corrupt or
//! truncated input becomes an error message, never a panic or a huge allocation.

use xxhash_rust::xxh3::xxh3_64;

#[derive(Default, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    pub fn u64s(&mut self, v: &[u64]) {
        self.u64(v.len() as u64);
        self.buf.reserve(v.len() * 8);
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// Finish: append an xxh3-64 checksum of everything written.
    pub fn finish(mut self) -> Vec<u8> {
        let sum = xxh3_64(&self.buf);
        self.u64(sum);
        self.buf
    }
}

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

pub type ReadResult<T> = Result<T, String>;

impl<'a> Reader<'a> {
    /// Verify the trailing checksum and return a reader over the body.
    pub fn new(data: &'a [u8]) -> ReadResult<Self> {
        if data.len() < 8 {
            return Err("data too short".into());
        }
        let (body, tail) = data.split_at(data.len() - 8);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(tail);
        if xxh3_64(body) != u64::from_le_bytes(sum) {
            return Err("checksum mismatch: data is corrupt or truncated".into());
        }
        Ok(Self { data: body, pos: 0 })
    }

    fn take(&mut self, n: usize) -> ReadResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err("unexpected end of data".into()),
        }
    }

    fn array<const N: usize>(&mut self) -> ReadResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> ReadResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> ReadResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> ReadResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> ReadResult<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// Length prefix for `width`-byte items, checked against the bytes left.
    fn len(&mut self, width: usize) -> ReadResult<usize> {
        let n = self.u64()?;
        let left = (self.data.len() - self.pos) as u64;
        match n.checked_mul(width as u64) {
            Some(bytes) if bytes <= left => Ok(n as usize),
            _ => Err("length prefix exceeds data".into()),
        }
    }

    pub fn bytes(&mut self) -> ReadResult<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }

    pub fn u64s(&mut self) -> ReadResult<Vec<u64>> {
        let n = self.len(8)?;
        Ok(self
            .take(n * 8)?
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                u64::from_le_bytes(a)
            })
            .collect())
    }

    pub fn expect_end(&self) -> ReadResult<()> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err("trailing bytes after index data".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = Writer::new();
        w.u8(7);
        w.u32(9);
        w.u64(u64::MAX);
        w.f64(0.25);
        w.bytes(b"abc");
        w.u64s(&[4, 5]);
        let data = w.finish();
        let mut r = Reader::new(&data).unwrap();
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 9);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.f64().unwrap(), 0.25);
        assert_eq!(r.bytes().unwrap(), b"abc");
        assert_eq!(r.u64s().unwrap(), vec![4, 5]);
        r.expect_end().unwrap();
    }

    #[test]
    fn corrupt_and_truncated_input_is_an_error() {
        let mut w = Writer::new();
        w.u64s(&[1, 2, 3]);
        let mut data = w.finish();
        assert!(Reader::new(&data[..data.len() - 1]).is_err());
        assert!(Reader::new(&[]).is_err());
        data[3] ^= 1;
        assert!(Reader::new(&data).is_err());
    }

    #[test]
    fn huge_length_prefix_is_rejected_without_allocating() {
        let mut w = Writer::new();
        w.u64(u64::MAX / 2);
        let data = w.finish();
        let mut r = Reader::new(&data).unwrap();
        assert!(r.u64s().is_err());
    }
}
