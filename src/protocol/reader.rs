//! A zero-copy cursor over a received payload, the decode error type, and the
//! small big-endian writers shared by the encoders.
//!
//! Every string a [`Reader`] hands out is a [`Bytes::slice`] of the input: no
//! copy, no allocation (only a reference-count increment).

use std::fmt;

use bytes::Bytes;

/// Why a payload (method, content header, field table) could not be decoded.
///
/// Its `Display` text is meant to follow `"SYNTAX_ERROR - "` or
/// `"FRAME_ERROR - "` in a `connection.close` reply text.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// The payload ended before the value being read.
    Truncated,
    /// The class-id/method-id pair names no method of the spec.
    UnknownMethod { class_id: u16, method_id: u16 },
    /// A field-table or array value carried a type octet RabbitMQ does not know.
    UnknownFieldType(u8),
    /// A content header that is too short or whose property flags are invalid.
    BadContentHeader,
    /// Bytes left over where none may be.
    TrailingBytes,
    /// Field tables / arrays nested deeper than [`MAX_NESTING`].
    NestingTooDeep,
}

/// The deepest nesting of tables and arrays accepted from the network.
pub const MAX_NESTING: usize = 100;

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("malformed frame: payload truncated"),
            DecodeError::UnknownMethod {
                class_id,
                method_id,
            } => write!(f, "unknown method class {class_id} method {method_id}"),
            DecodeError::UnknownFieldType(t) => {
                if t.is_ascii_graphic() {
                    write!(f, "unknown field table type '{}'", *t as char)
                } else {
                    write!(f, "unknown field table type 0x{t:02x}")
                }
            }
            DecodeError::BadContentHeader => f.write_str("malformed content header"),
            DecodeError::TrailingBytes => f.write_str("malformed frame: trailing bytes"),
            DecodeError::NestingTooDeep => {
                write!(f, "field table nested deeper than {MAX_NESTING} levels")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Zero-copy big-endian cursor over a [`Bytes`] payload.
#[derive(Clone, Debug)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Offset of the cursor from the start of the input.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The whole input, read or not (to quote it in an error).
    pub fn into_inner(self) -> Bytes {
        self.buf
    }

    /// The unread rest of the input (a slice, no copy).
    pub fn rest(&self) -> Bytes {
        self.buf.slice(self.pos..)
    }

    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        // `s` has exactly N bytes.
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take()?))
    }

    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    /// `n` bytes as a slice of the input.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// Skips `n` bytes.
    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    /// Octet length + bytes.
    #[inline]
    pub fn shortstr(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u8()? as usize;
        self.bytes(n)
    }

    /// 32-bit length + bytes.
    #[inline]
    pub fn longstr(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }
}

// ---- writers (caller-provided Vec, big-endian) ----

#[inline]
pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

#[inline]
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Octet length + bytes; anything past 255 bytes is dropped (never panics).
#[inline]
pub fn put_shortstr(out: &mut Vec<u8>, s: &[u8]) {
    let s = &s[..s.len().min(255)];
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// 32-bit length + bytes; anything past u32::MAX bytes is dropped.
#[inline]
pub fn put_longstr(out: &mut Vec<u8>, s: &[u8]) {
    let s = &s[..s.len().min(u32::MAX as usize)];
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_slices() {
        let buf = Bytes::from_static(&[
            1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 3, b'a', b'b', b'c', 0, 0, 0, 1, b'z',
        ]);
        let mut r = Reader::new(buf);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.shortstr().unwrap(), &b"abc"[..]);
        assert_eq!(r.longstr().unwrap(), &b"z"[..]);
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.u8(), Err(DecodeError::Truncated));
    }

    #[test]
    fn truncated_strings() {
        let mut r = Reader::new(Bytes::from_static(&[5, b'a']));
        assert_eq!(r.shortstr(), Err(DecodeError::Truncated));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1]));
        assert_eq!(r.longstr(), Err(DecodeError::Truncated));
        let mut r = Reader::new(Bytes::from_static(&[1, 2]));
        assert_eq!(r.u32(), Err(DecodeError::Truncated));
        assert_eq!(r.bytes(usize::MAX), Err(DecodeError::Truncated));
    }

    #[test]
    fn shortstr_writer_truncates() {
        let mut out = Vec::new();
        put_shortstr(&mut out, &[b'a'; 300]);
        assert_eq!(out.len(), 256);
        assert_eq!(out[0], 255);
    }
}
