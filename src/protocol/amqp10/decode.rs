//! [`Decoder`]: a zero-copy cursor over received bytes that reads AMQP 1.0
//! values of any type ([`Decoder::read_value`]) or checks them without
//! building anything ([`Decoder::skip_value`]). Typed reads are in
//! [`typed`](super::typed).
//!
//! Hostile input is bounded: nesting is limited to [`MAX_DEPTH`], a compound
//! or array's size and element count are checked against the bytes that
//! remain before anything is allocated, no read passes the end of the
//! innermost compound, and zero-width array elements (an array of nulls
//! takes no bytes per element) are budgeted against the input's length. So
//! what a decode allocates is proportional to its input.

use bytes::Bytes;

use super::error::DecodeError;
use super::types::{code, encoding, Category};
use super::value::{Str, Symbol, Value};

/// The deepest nesting of lists, maps, arrays and described values accepted.
pub const MAX_DEPTH: u32 = 64;

/// First reservation for a compound's elements: the count is only a claim.
const MAX_PREALLOC: usize = 64;

/// Zero-copy cursor over an AMQP 1.0 encoding.
#[derive(Clone, Debug)]
pub struct Decoder {
    buf: Bytes,
    pub(super) pos: usize,
    /// End of the innermost compound being read: no read passes it.
    pub(super) limit: usize,
    depth: u32,
    /// Zero-width array elements still allowed (they take no input bytes).
    zero_width_budget: usize,
}

impl Decoder {
    pub fn new(buf: Bytes) -> Decoder {
        let len = buf.len();
        Decoder {
            buf,
            pos: 0,
            limit: len,
            depth: 0,
            zero_width_budget: len,
        }
    }

    /// Bytes left before the end of the input (or of the compound being read).
    #[inline]
    pub fn remaining(&self) -> usize {
        self.limit - self.pos
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Offset from the start of the input.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread rest of the input (a slice, no copy).
    pub fn rest(&self) -> Bytes {
        self.buf.slice(self.pos..self.limit)
    }

    /// The input between two positions (a slice, no copy).
    pub fn slice(&self, from: usize, to: usize) -> Bytes {
        self.buf.slice(from..to)
    }

    // ---- raw big-endian reads ----

    #[inline]
    pub(super) fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        if self.remaining() < N {
            return Err(DecodeError::Truncated);
        }
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    #[inline]
    pub(super) fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    #[inline]
    pub(super) fn be_u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take()?))
    }

    #[inline]
    pub(super) fn be_u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    #[inline]
    pub(super) fn be_u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    #[inline]
    fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    #[inline]
    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    /// A 1- or 4-octet length.
    #[inline]
    fn len_prefix(&mut self, width: u8) -> Result<usize, DecodeError> {
        Ok(if width == 1 {
            self.byte()? as usize
        } else {
            self.be_u32()? as usize
        })
    }

    /// The bytes of a variable-width value (binary, string, symbol).
    #[inline]
    pub(super) fn variable(&mut self, width: u8) -> Result<Bytes, DecodeError> {
        let n = self.len_prefix(width)?;
        self.bytes(n)
    }

    // ---- compounds ----

    /// Reads a compound's size and count; the count is checked against the
    /// size (every element takes a constructor byte). Returns (count, end).
    pub(super) fn compound_header(&mut self, width: u8) -> Result<(u32, usize), DecodeError> {
        let size = self.len_prefix(width)?;
        if size < width as usize || size > self.remaining() {
            return Err(DecodeError::BadSize);
        }
        let end = self.pos + size;
        let count = self.len_prefix(width)?;
        if count > size - width as usize {
            return Err(DecodeError::BadSize);
        }
        Ok((count as u32, end))
    }

    /// Starts reading a compound that ends at `end`; returns the outer limit.
    #[inline]
    pub(super) fn enter(&mut self, end: usize) -> Result<usize, DecodeError> {
        self.descend()?;
        Ok(std::mem::replace(&mut self.limit, end))
    }

    /// Ends a compound: its elements must have filled it exactly.
    #[inline]
    pub(super) fn leave(&mut self, outer: usize) -> Result<(), DecodeError> {
        if self.pos != self.limit {
            return Err(DecodeError::SizeMismatch);
        }
        self.limit = outer;
        self.depth -= 1;
        Ok(())
    }

    #[inline]
    fn descend(&mut self) -> Result<(), DecodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        self.depth += 1;
        Ok(())
    }

    /// An array's size and count (entering it). Returns (count, outer limit).
    pub(super) fn array_start(&mut self, width: u8) -> Result<(u32, usize), DecodeError> {
        let size = self.len_prefix(width)?;
        if size < width as usize || size > self.remaining() {
            return Err(DecodeError::BadSize);
        }
        let end = self.pos + size;
        let outer = self.enter(end)?;
        let count = self.len_prefix(width)?;
        Ok((count as u32, outer))
    }

    /// Checks that `count` elements of constructor `elem` can be in what is
    /// left of the array, before they are read or allocated.
    pub(super) fn check_elements(&mut self, elem: u8, count: u32) -> Result<(), DecodeError> {
        let (cat, width) = encoding(elem).ok_or(DecodeError::UnknownCode(elem))?;
        let min = match cat {
            Category::Fixed => width as usize,
            Category::Variable => width as usize,
            Category::Compound => 2 * width as usize,
            Category::Array => 2 * width as usize + 1,
        };
        if min == 0 {
            if count as usize > self.zero_width_budget {
                return Err(DecodeError::TooManyElements);
            }
            self.zero_width_budget -= count as usize;
        } else if (count as usize).saturating_mul(min) > self.remaining() {
            return Err(DecodeError::BadSize);
        }
        Ok(())
    }

    // ---- values ----

    /// Reads one value of any type.
    pub fn read_value(&mut self) -> Result<Value, DecodeError> {
        let c = self.byte()?;
        if c == code::DESCRIBED {
            self.descend()?;
            let descriptor = self.read_value()?;
            let value = self.read_value()?;
            self.depth -= 1;
            return Ok(Value::Described(Box::new((descriptor, value))));
        }
        self.value_body(c)
    }

    /// The value after its (undescribed) constructor `c`.
    fn value_body(&mut self, c: u8) -> Result<Value, DecodeError> {
        Ok(match c {
            code::NULL => Value::Null,
            code::BOOLEAN => Value::Bool(self.bool_octet()?),
            code::TRUE => Value::Bool(true),
            code::FALSE => Value::Bool(false),
            code::UBYTE => Value::Ubyte(self.byte()?),
            code::USHORT => Value::Ushort(self.be_u16()?),
            code::UINT => Value::Uint(self.be_u32()?),
            code::SMALLUINT => Value::Uint(self.byte()? as u32),
            code::UINT0 => Value::Uint(0),
            code::ULONG => Value::Ulong(self.be_u64()?),
            code::SMALLULONG => Value::Ulong(self.byte()? as u64),
            code::ULONG0 => Value::Ulong(0),
            code::BYTE => Value::Byte(self.byte()? as i8),
            code::SHORT => Value::Short(self.be_u16()? as i16),
            code::INT => Value::Int(self.be_u32()? as i32),
            code::SMALLINT => Value::Int(self.byte()? as i8 as i32),
            code::LONG => Value::Long(self.be_u64()? as i64),
            code::SMALLLONG => Value::Long(self.byte()? as i8 as i64),
            code::FLOAT => Value::Float(f32::from_bits(self.be_u32()?)),
            code::DOUBLE => Value::Double(f64::from_bits(self.be_u64()?)),
            code::DECIMAL32 => Value::Decimal32(self.take()?),
            code::DECIMAL64 => Value::Decimal64(self.take()?),
            code::DECIMAL128 => Value::Decimal128(self.take()?),
            code::CHAR => Value::Char(self.char()?),
            code::TIMESTAMP => Value::Timestamp(self.be_u64()? as i64),
            code::UUID => Value::Uuid(self.take()?),
            code::VBIN8 => Value::Binary(self.variable(1)?),
            code::VBIN32 => Value::Binary(self.variable(4)?),
            code::STR8_UTF8 => Value::String(Str::from_utf8(self.variable(1)?)?),
            code::STR32_UTF8 => Value::String(Str::from_utf8(self.variable(4)?)?),
            code::SYM8 => Value::Symbol(Symbol::new(self.variable(1)?)?),
            code::SYM32 => Value::Symbol(Symbol::new(self.variable(4)?)?),
            code::LIST0 => Value::List(Vec::new()),
            code::LIST8 | code::LIST32 => Value::List(self.list_items(width_of(c))?),
            code::MAP8 | code::MAP32 => Value::Map(self.map_pairs(width_of(c))?),
            code::ARRAY8 | code::ARRAY32 => Value::Array(self.array_items(width_of(c))?),
            other => return Err(DecodeError::UnknownCode(other)),
        })
    }

    #[inline]
    pub(super) fn bool_octet(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::InvalidBool(b)),
        }
    }

    #[inline]
    fn char(&mut self) -> Result<char, DecodeError> {
        let c = self.be_u32()?;
        char::from_u32(c).ok_or(DecodeError::InvalidChar(c))
    }

    fn list_items(&mut self, width: u8) -> Result<Vec<Value>, DecodeError> {
        let (count, end) = self.compound_header(width)?;
        let outer = self.enter(end)?;
        let mut items = Vec::with_capacity((count as usize).min(MAX_PREALLOC));
        for _ in 0..count {
            items.push(self.read_value()?);
        }
        self.leave(outer)?;
        Ok(items)
    }

    pub(super) fn map_pairs(&mut self, width: u8) -> Result<Vec<(Value, Value)>, DecodeError> {
        let (count, end) = self.compound_header(width)?;
        if count % 2 != 0 {
            return Err(DecodeError::OddMapCount(count));
        }
        let outer = self.enter(end)?;
        let mut pairs = Vec::with_capacity((count as usize / 2).min(MAX_PREALLOC));
        for _ in 0..count / 2 {
            let k = self.read_value()?;
            let v = self.read_value()?;
            pairs.push((k, v));
        }
        self.leave(outer)?;
        Ok(pairs)
    }

    fn array_items(&mut self, width: u8) -> Result<Vec<Value>, DecodeError> {
        let (count, outer) = self.array_start(width)?;
        let mut elem = self.byte()?;
        let mut descriptor = None;
        if elem == code::DESCRIBED {
            descriptor = Some(self.read_value()?);
            elem = self.byte()?;
            if elem == code::DESCRIBED {
                return Err(DecodeError::BadDescriptor);
            }
        }
        self.check_elements(elem, count)?;
        let mut items = Vec::with_capacity((count as usize).min(MAX_PREALLOC));
        for _ in 0..count {
            let v = self.value_body(elem)?;
            items.push(match &descriptor {
                Some(d) => Value::Described(Box::new((d.clone(), v))),
                None => v,
            });
        }
        self.leave(outer)?;
        Ok(items)
    }

    // ---- validation without building ----

    /// Checks one value of any type and moves past it, allocating nothing.
    /// Succeeds exactly when [`read_value`](Self::read_value) would.
    pub fn skip_value(&mut self) -> Result<(), DecodeError> {
        let c = self.byte()?;
        if c == code::DESCRIBED {
            self.descend()?;
            self.skip_value()?;
            self.skip_value()?;
            self.depth -= 1;
            return Ok(());
        }
        self.skip_body(c)
    }

    fn skip_body(&mut self, c: u8) -> Result<(), DecodeError> {
        let (cat, width) = encoding(c).ok_or(DecodeError::UnknownCode(c))?;
        match cat {
            Category::Fixed => match c {
                code::BOOLEAN => self.bool_octet().map(drop),
                code::CHAR => self.char().map(drop),
                _ => self.skip(width as usize),
            },
            Category::Variable => {
                let b = self.variable(width)?;
                match c {
                    code::STR8_UTF8 | code::STR32_UTF8 => Str::from_utf8(b).map(drop),
                    code::SYM8 | code::SYM32 => Symbol::new(b).map(drop),
                    _ => Ok(()),
                }
            }
            Category::Compound => {
                let (count, end) = self.compound_header(width)?;
                if matches!(c, code::MAP8 | code::MAP32) && count % 2 != 0 {
                    return Err(DecodeError::OddMapCount(count));
                }
                let outer = self.enter(end)?;
                for _ in 0..count {
                    self.skip_value()?;
                }
                self.leave(outer)
            }
            Category::Array => {
                let (count, outer) = self.array_start(width)?;
                let mut elem = self.byte()?;
                if elem == code::DESCRIBED {
                    self.skip_value()?;
                    elem = self.byte()?;
                    if elem == code::DESCRIBED {
                        return Err(DecodeError::BadDescriptor);
                    }
                }
                self.check_elements(elem, count)?;
                for _ in 0..count {
                    self.skip_body(elem)?;
                }
                self.leave(outer)
            }
        }
    }
}

/// 1 for the 8-bit form of a variable/compound/array code, else 4.
#[inline]
pub(super) fn width_of(c: u8) -> u8 {
    match encoding(c) {
        Some((_, 1)) => 1,
        _ => 4,
    }
}
