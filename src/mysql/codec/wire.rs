//! Primitive field encodings: fixed-width little-endian integers, length-encoded integers
//! and strings, NUL-terminated strings. Every read is checked against the end of the buffer.

use bytes::{BufMut, BytesMut};

use super::{malformed, ProtocolError};

/// First byte of a length-encoded integer that means SQL NULL (in result rows).
pub const LENENC_NULL: u8 = 0xFB;
/// Prefix of a 2-byte length-encoded integer.
pub const LENENC_2: u8 = 0xFC;
/// Prefix of a 3-byte length-encoded integer.
pub const LENENC_3: u8 = 0xFD;
/// Prefix of an 8-byte length-encoded integer.
pub const LENENC_8: u8 = 0xFE;
/// Not a valid length-encoded integer: where one is expected, 0xFF starts an ERR packet.
pub const LENENC_ERR: u8 = 0xFF;

/// A decoded length-encoded integer position: a value, or one of the two marker bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenEnc {
    /// `< 0xFB` in one byte, or a value after 0xFC (2 bytes), 0xFD (3 bytes), 0xFE (8 bytes).
    Int(u64),
    /// 0xFB: SQL NULL in a text-protocol row.
    Null,
    /// 0xFF: not an integer; an ERR packet starts here.
    ErrMarker,
}

/// Decodes a length-encoded integer at the start of `buf`; returns it and the bytes it used.
/// Non-minimal encodings (0xFC followed by a value below 251) are accepted, as servers do.
pub fn read_lenenc(buf: &[u8]) -> Result<(LenEnc, usize), ProtocolError> {
    let short = ProtocolError::Truncated {
        what: "length-encoded integer",
    };
    let (&first, rest) = buf.split_first().ok_or(short)?;
    let width = match first {
        0..=0xFA => return Ok((LenEnc::Int(u64::from(first)), 1)),
        LENENC_NULL => return Ok((LenEnc::Null, 1)),
        LENENC_ERR => return Ok((LenEnc::ErrMarker, 1)),
        LENENC_2 => 2,
        LENENC_3 => 3,
        _ => 8,
    };
    let bytes = rest.get(..width).ok_or(short)?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(bytes);
    Ok((LenEnc::Int(u64::from_le_bytes(le)), 1 + width))
}

/// Number of bytes [`put_lenenc_int`] writes for `v`.
pub fn lenenc_int_len(v: u64) -> usize {
    match v {
        0..=0xFA => 1,
        0xFB..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 9,
    }
}

/// Appends `v` as a length-encoded integer in its shortest form.
pub fn put_lenenc_int(out: &mut BytesMut, v: u64) {
    match v {
        0..=0xFA => out.put_u8(v as u8),
        0xFB..=0xFFFF => {
            out.put_u8(LENENC_2);
            out.put_u16_le(v as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            out.put_u8(LENENC_3);
            out.put_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.put_u8(LENENC_8);
            out.put_u64_le(v);
        }
    }
}

/// Appends a length-encoded string (length-encoded integer, then the bytes).
pub fn put_lenenc_bytes(out: &mut BytesMut, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.put_slice(s);
}

/// Appends a NUL-terminated string. The caller guarantees `s` holds no NUL; a NUL inside
/// would end the string early for the reader.
pub fn put_nul_bytes(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// Appends the low three bytes of `v`, little-endian.
pub fn put_u24_le(out: &mut BytesMut, v: u32) {
    out.put_slice(&v.to_le_bytes()[..3]);
}

/// A cursor over a payload whose every read is checked; errors name `what` is being read.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn short(&self) -> ProtocolError {
        ProtocolError::Truncated { what: self.what }
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.buf.len() {
            return Err(self.short());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u24(&mut self) -> Result<u32, ProtocolError> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    pub fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length-encoded integer position, markers included.
    pub fn lenenc(&mut self) -> Result<LenEnc, ProtocolError> {
        let (v, used) = read_lenenc(self.buf).map_err(|_| self.short())?;
        self.buf = self.buf.get(used..).unwrap_or_default();
        Ok(v)
    }

    /// A length-encoded integer; NULL and 0xFF are malformed here.
    pub fn lenenc_int(&mut self) -> Result<u64, ProtocolError> {
        match self.lenenc()? {
            LenEnc::Int(v) => Ok(v),
            LenEnc::Null | LenEnc::ErrMarker => Err(malformed(self.what)),
        }
    }

    /// A length-encoded string; its declared length must fit in what is left.
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.lenenc_int()?;
        let n = usize::try_from(n).map_err(|_| self.short())?;
        self.take(n)
    }

    /// A length-encoded string or NULL (0xFB), as in text-protocol rows.
    pub fn lenenc_bytes_or_null(&mut self) -> Result<Option<&'a [u8]>, ProtocolError> {
        if self.peek() == Some(LENENC_NULL) {
            self.buf = self.buf.get(1..).unwrap_or_default();
            return Ok(None);
        }
        self.lenenc_bytes().map(Some)
    }

    /// A NUL-terminated string (without its NUL); a missing NUL is truncation.
    pub fn nul_bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let nul = self.buf.iter().position(|&b| b == 0).ok_or(self.short())?;
        let s = self.take(nul)?;
        self.take(1)?;
        Ok(s)
    }

    /// A string ended by NUL or by the end of the payload (both seen in the wild for
    /// trailing plugin names).
    pub fn nul_or_eof_bytes(&mut self) -> &'a [u8] {
        match self.nul_bytes() {
            Ok(s) => s,
            Err(_) => self.rest(),
        }
    }

    /// Everything left (a `string<EOF>`).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Succeeds only if every byte was read.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(malformed(self.what))
        }
    }
}

/// Splits a NUL-terminated byte string off the front of `buf`.
pub fn read_nul_bytes(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = buf.iter().position(|&b| b == 0)?;
    Some((buf.get(..nul)?, buf.get(nul + 1..)?))
}

/// Splits a length-encoded string (or NULL, as `None`) off the front of `buf`; returns it
/// and the bytes used.
pub fn read_lenenc_bytes(buf: &[u8]) -> Result<(Option<&[u8]>, usize), ProtocolError> {
    let mut r = Reader::new(buf, "length-encoded string");
    let s = r.lenenc_bytes_or_null()?;
    Ok((s, buf.len() - r.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> BytesMut {
        let mut b = BytesMut::new();
        put_lenenc_int(&mut b, v);
        b
    }

    #[test]
    fn lenenc_ints_use_the_shortest_of_four_forms() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0]),
            (250, &[0xFA]),
            (251, &[0xFC, 0xFB, 0]),
            (0xFFFF, &[0xFC, 0xFF, 0xFF]),
            (1 << 16, &[0xFD, 0, 0, 1]),
            ((1 << 24) - 1, &[0xFD, 0xFF, 0xFF, 0xFF]),
            (1 << 24, &[0xFE, 0, 0, 0, 1, 0, 0, 0, 0]),
            (
                u64::MAX,
                &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
        ];
        for &(v, wire) in cases {
            let b = enc(v);
            assert_eq!(&b[..], wire, "encoding of {v}");
            assert_eq!(lenenc_int_len(v), wire.len());
            assert_eq!(read_lenenc(wire).unwrap(), (LenEnc::Int(v), wire.len()));
            // One byte short is truncation, never a panic.
            assert!(matches!(
                read_lenenc(&wire[..wire.len() - 1]),
                Err(ProtocolError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn lenenc_markers_and_non_minimal_forms() {
        assert_eq!(read_lenenc(&[0xFB]).unwrap(), (LenEnc::Null, 1));
        assert_eq!(read_lenenc(&[0xFF, 1, 2]).unwrap(), (LenEnc::ErrMarker, 1));
        assert_eq!(read_lenenc(&[0xFC, 5, 0]).unwrap(), (LenEnc::Int(5), 3));
        let mut r = Reader::new(&[0xFB], "x");
        assert_eq!(r.lenenc_int(), Err(ProtocolError::Malformed { what: "x" }));
    }

    #[test]
    fn lenenc_strings_at_boundary_lengths() {
        for n in [0usize, 250, 251, 1 << 16, 1 << 24] {
            let s = vec![b'a'; n];
            let mut b = BytesMut::new();
            put_lenenc_bytes(&mut b, &s);
            assert_eq!(b.len(), lenenc_int_len(n as u64) + n);
            let (got, used) = read_lenenc_bytes(&b).unwrap();
            assert_eq!((got.unwrap().len(), used), (n, b.len()));
            if n > 0 {
                assert!(read_lenenc_bytes(&b[..b.len() - 1]).is_err());
            }
        }
        assert_eq!(read_lenenc_bytes(&[0xFB]).unwrap(), (None, 1));
        // A declared length near u64::MAX is truncation, not an overflow.
        let huge = [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, b'a'];
        assert!(read_lenenc_bytes(&huge).is_err());
    }

    #[test]
    fn reader_checks_every_fixed_width_read() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7], "t");
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 0x0302);
        assert_eq!(r.u24().unwrap(), 0x060504);
        assert!(r.u32().is_err());
        assert_eq!(r.remaining(), &[7]);
        assert!(r.finish().is_err());
        assert_eq!(r.u8().unwrap(), 7);
        assert!(r.finish().is_ok());
        assert!(r.u8().is_err());
    }

    #[test]
    fn nul_strings() {
        let mut r = Reader::new(b"ab\0cd", "t");
        assert_eq!(r.nul_bytes().unwrap(), b"ab");
        assert!(r.clone().nul_bytes().is_err());
        assert_eq!(r.nul_or_eof_bytes(), b"cd");
        assert!(r.is_empty());
        assert_eq!(read_nul_bytes(b"x\0y"), Some((&b"x"[..], &b"y"[..])));
        assert_eq!(read_nul_bytes(b"xy"), None);
        let mut b = BytesMut::new();
        put_nul_bytes(&mut b, b"hi");
        put_u24_le(&mut b, 0x0A0B0C);
        assert_eq!(&b[..], b"hi\0\x0C\x0B\x0A");
    }
}
