//! Small helpers for the compact binary encodings that cross the tunnel.
//!
//! Every decoder of network bytes goes through [`Reader`], which never panics: a short or
//! malformed buffer is an [`Error::Malformed`].

use bytes::{BufMut, BytesMut};

use crate::Error;

/// Reads fields from a byte slice, front to back.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The next `n` bytes; an error if fewer are left.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Malformed("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A byte string with a one-byte length.
    pub fn bytes8(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    /// A byte string with a two-byte length.
    pub fn bytes16(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// A UTF-8 string with a one-byte length.
    pub fn str8(&mut self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.bytes8()?).map_err(|_| Error::Malformed("not UTF-8"))
    }

    /// How many bytes are left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed: trailing garbage is an error, not ignored.
    pub fn finish(self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed("trailing bytes"))
        }
    }
}

/// Writes a byte string with a one-byte length. Callers keep strings under 256 bytes
/// (service and datacenter names are validated when configured).
pub fn put_bytes8(out: &mut BytesMut, b: &[u8]) {
    let n = b.len().min(u8::MAX as usize);
    out.put_u8(n as u8);
    out.put_slice(&b[..n]);
}

/// Writes a byte string with a two-byte length, truncated at 65,535 bytes.
pub fn put_bytes16(out: &mut BytesMut, b: &[u8]) {
    let n = b.len().min(u16::MAX as usize);
    out.put_u16(n as u16);
    out.put_slice(&b[..n]);
}

/// Seeded pseudo-random buffers for tests that throw garbage at decoders.
#[cfg(test)]
pub(crate) fn garbage(count: usize, max_len: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count).map(move |_| {
        let len = (next() % max_len as u64) as usize;
        // Small values dominate, so lengths and counts often look plausible.
        (0..len)
            .map(|_| match next() % 4 {
                0 => next() as u8,
                _ => (next() % 8) as u8,
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_truncated_input() {
        let mut r = Reader::new(&[5, b'a', b'b']);
        assert!(r.str8().is_err());
        let mut r = Reader::new(&[0]);
        assert!(r.u16().is_err());
    }

    #[test]
    fn finish_refuses_trailing_bytes() {
        let mut r = Reader::new(&[1, 2]);
        assert_eq!(r.u8().expect("one byte"), 1);
        assert!(r.finish().is_err());
    }
}
