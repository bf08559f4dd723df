//! Typed decoding: [`Decode`] (a type read from its constructor on), the
//! typed readers of [`Decoder`], and [`ListReader`], with which the
//! generated described types read their fields.

use bytes::Bytes;

use super::decode::{width_of, Decoder};
use super::error::DecodeError;
use super::types::{code, descriptor_code};
use super::value::{Fields, Str, Symbol, Value};

/// First reservation for an array's elements: the count is only a claim.
const MAX_PREALLOC: usize = 64;

/// A constructor as read: the format code and, for a described type, its
/// descriptor (a symbolic descriptor is mapped to its code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctor {
    pub code: u8,
    pub descriptor: Option<u64>,
}

impl Ctor {
    /// An undescribed null.
    #[inline]
    pub fn is_null(&self) -> bool {
        self.code == code::NULL && self.descriptor.is_none()
    }

    /// The format code of an undescribed value of type `expected`.
    #[inline]
    fn plain(self, expected: &'static str) -> Result<u8, DecodeError> {
        match self.descriptor {
            None => Ok(self.code),
            Some(_) => Err(DecodeError::UnexpectedType {
                expected,
                code: code::DESCRIBED,
            }),
        }
    }
}

/// A type read from its constructor on: primitives accept each of their
/// encodings, described types check their descriptor.
pub trait Decode: Sized {
    fn decode_ctor(d: &mut Decoder, c: Ctor) -> Result<Self, DecodeError>;
}

impl Decoder {
    /// Reads a constructor: a format code, or `0x00`, a descriptor (ulong
    /// or symbol) and a format code.
    pub fn read_ctor(&mut self) -> Result<Ctor, DecodeError> {
        let c = self.byte()?;
        if c != code::DESCRIBED {
            return Ok(Ctor {
                code: c,
                descriptor: None,
            });
        }
        let descriptor = self.read_descriptor()?;
        let c = self.byte()?;
        if c == code::DESCRIBED {
            return Err(DecodeError::BadDescriptor);
        }
        Ok(Ctor {
            code: c,
            descriptor: Some(descriptor),
        })
    }

    /// A descriptor (after `0x00`): a ulong, or a symbol the spec names.
    pub fn read_descriptor(&mut self) -> Result<u64, DecodeError> {
        match self.byte()? {
            code::ULONG => self.be_u64(),
            code::SMALLULONG => Ok(self.byte()? as u64),
            code::ULONG0 => Ok(0),
            c @ (code::SYM8 | code::SYM32) => {
                let name = self.variable(width_of(c))?;
                descriptor_code(&name).ok_or(DecodeError::UnknownDescriptor)
            }
            _ => Err(DecodeError::BadDescriptor),
        }
    }

    /// `0x00` and a descriptor: the start of a described value (a message
    /// section, say) whose value is read next.
    pub fn read_described_start(&mut self) -> Result<u64, DecodeError> {
        match self.byte()? {
            code::DESCRIBED => self.read_descriptor(),
            _ => Err(DecodeError::BadDescriptor),
        }
    }

    /// A map's constructor, size and count; returns the number of pairs,
    /// to be read with `read_value`/`skip_value`. Use it on input that
    /// holds exactly the map (the map's end is not enforced).
    pub fn read_map_header(&mut self) -> Result<u32, DecodeError> {
        let c = self.byte()?;
        if !matches!(c, code::MAP8 | code::MAP32) {
            return Err(DecodeError::UnexpectedType {
                expected: "map",
                code: c,
            });
        }
        let (count, _end) = self.compound_header(width_of(c))?;
        if count % 2 != 0 {
            return Err(DecodeError::OddMapCount(count));
        }
        Ok(count / 2)
    }

    /// A described list: its descriptor code and a reader over its fields
    /// (call [`ListReader::finish`] after the fields).
    pub fn read_described_list_header(&mut self) -> Result<(u64, ListReader), DecodeError> {
        let c = self.read_ctor()?;
        let d = c.descriptor.ok_or(DecodeError::WrongDescriptor {
            expected: "described list",
            found: None,
        })?;
        Ok((d, ListReader::new(self, c.code)?))
    }

    /// A value of type `T`; null is an error.
    pub fn read<T: Decode>(&mut self) -> Result<T, DecodeError> {
        self.read_opt()?.ok_or(DecodeError::UnexpectedNull)
    }

    /// A value of type `T`, or `None` for null.
    pub fn read_opt<T: Decode>(&mut self) -> Result<Option<T>, DecodeError> {
        let c = self.read_ctor()?;
        if c.is_null() {
            return Ok(None);
        }
        T::decode_ctor(self, c).map(Some)
    }

    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        self.read()
    }

    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        self.read()
    }

    pub fn read_u16(&mut self) -> Result<u16, DecodeError> {
        self.read()
    }

    /// A uint (any of its three encodings).
    pub fn read_u32(&mut self) -> Result<u32, DecodeError> {
        self.read()
    }

    /// A ulong (any of its three encodings).
    pub fn read_u64(&mut self) -> Result<u64, DecodeError> {
        self.read()
    }

    pub fn read_str(&mut self) -> Result<Str, DecodeError> {
        self.read()
    }

    pub fn read_symbol(&mut self) -> Result<Symbol, DecodeError> {
        self.read()
    }

    pub fn read_binary(&mut self) -> Result<Bytes, DecodeError> {
        self.read()
    }

    /// A timestamp (ms since the epoch).
    pub fn read_timestamp(&mut self) -> Result<i64, DecodeError> {
        let c = self.read_ctor()?;
        decode_timestamp(self, c)
    }

    /// The elements of an array whose constructor `c` was read, each a `T`.
    fn array_of<T: Decode>(&mut self, c: u8) -> Result<Vec<T>, DecodeError> {
        let (count, outer) = self.array_start(width_of(c))?;
        let elem = self.read_ctor()?;
        self.check_elements(elem.code, count)?;
        let mut items = Vec::with_capacity((count as usize).min(MAX_PREALLOC));
        for _ in 0..count {
            items.push(T::decode_ctor(self, elem)?);
        }
        self.leave(outer)?;
        Ok(items)
    }
}

fn decode_timestamp(d: &mut Decoder, c: Ctor) -> Result<i64, DecodeError> {
    match c.plain("timestamp")? {
        code::TIMESTAMP => Ok(d.be_u64()? as i64),
        code => Err(DecodeError::UnexpectedType {
            expected: "timestamp",
            code,
        }),
    }
}

macro_rules! decode_number {
    ($t:ty, $name:literal, $($code:path => |$d:ident| $e:expr),+) => {
        impl Decode for $t {
            #[inline]
            fn decode_ctor(d: &mut Decoder, c: Ctor) -> Result<$t, DecodeError> {
                match c.plain($name)? {
                    $($code => {
                        let $d = &mut *d;
                        Ok($e)
                    })+
                    code => Err(DecodeError::UnexpectedType { expected: $name, code }),
                }
            }
        }
    };
}

decode_number!(bool, "boolean",
    code::TRUE => |_d| true,
    code::FALSE => |_d| false,
    code::BOOLEAN => |d| d.bool_octet()?);
decode_number!(u8, "ubyte", code::UBYTE => |d| d.byte()?);
decode_number!(u16, "ushort", code::USHORT => |d| d.be_u16()?);
decode_number!(u32, "uint",
    code::UINT => |d| d.be_u32()?,
    code::SMALLUINT => |d| d.byte()? as u32,
    code::UINT0 => |_d| 0);
decode_number!(u64, "ulong",
    code::ULONG => |d| d.be_u64()?,
    code::SMALLULONG => |d| d.byte()? as u64,
    code::ULONG0 => |_d| 0);
decode_number!(i32, "int",
    code::INT => |d| d.be_u32()? as i32,
    code::SMALLINT => |d| d.byte()? as i8 as i32);
decode_number!(i64, "long",
    code::LONG => |d| d.be_u64()? as i64,
    code::SMALLLONG => |d| d.byte()? as i8 as i64);
decode_number!([u8; 16], "uuid", code::UUID => |d| d.take()?);
decode_number!(Bytes, "binary",
    code::VBIN8 => |d| d.variable(1)?,
    code::VBIN32 => |d| d.variable(4)?);
decode_number!(Str, "string",
    code::STR8_UTF8 => |d| Str::from_utf8(d.variable(1)?)?,
    code::STR32_UTF8 => |d| Str::from_utf8(d.variable(4)?)?);
decode_number!(Symbol, "symbol",
    code::SYM8 => |d| Symbol::new(d.variable(1)?)?,
    code::SYM32 => |d| Symbol::new(d.variable(4)?)?);
decode_number!(Fields, "map",
    code::MAP8 => |d| Fields(d.map_pairs(1)?),
    code::MAP32 => |d| Fields(d.map_pairs(4)?));

/// The fields of a described list, read in order. Fields past the list's
/// count are absent; fields past the ones read are skipped by `finish`.
#[derive(Debug)]
pub struct ListReader {
    left: u32,
    /// The decoder's limit outside the list (None for list0).
    outer: Option<usize>,
}

impl ListReader {
    /// Starts reading a list whose constructor `list_code` was read.
    pub fn new(d: &mut Decoder, list_code: u8) -> Result<ListReader, DecodeError> {
        match list_code {
            code::LIST0 => Ok(ListReader {
                left: 0,
                outer: None,
            }),
            code::LIST8 | code::LIST32 => {
                let (count, end) = d.compound_header(width_of(list_code))?;
                let outer = d.enter(end)?;
                Ok(ListReader {
                    left: count,
                    outer: Some(outer),
                })
            }
            code => Err(DecodeError::UnexpectedType {
                expected: "list",
                code,
            }),
        }
    }

    /// Fields not yet read.
    pub fn remaining(&self) -> u32 {
        self.left
    }

    /// The next field's constructor, `None` if it is null or absent.
    fn next(&mut self, d: &mut Decoder) -> Result<Option<Ctor>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let c = d.read_ctor()?;
        Ok((!c.is_null()).then_some(c))
    }

    pub fn opt<T: Decode>(&mut self, d: &mut Decoder) -> Result<Option<T>, DecodeError> {
        match self.next(d)? {
            Some(c) => T::decode_ctor(d, c).map(Some),
            None => Ok(None),
        }
    }

    /// A mandatory field (`field` names it in the error).
    pub fn req<T: Decode>(
        &mut self,
        d: &mut Decoder,
        field: &'static str,
    ) -> Result<T, DecodeError> {
        self.opt(d)?.ok_or(DecodeError::MissingField(field))
    }

    /// A `multiple` field: an array, or a single value; empty if absent.
    pub fn multiple<T: Decode>(&mut self, d: &mut Decoder) -> Result<Vec<T>, DecodeError> {
        Ok(self.opt_multiple(d)?.unwrap_or_default())
    }

    /// A mandatory `multiple` field.
    pub fn req_multiple<T: Decode>(
        &mut self,
        d: &mut Decoder,
        field: &'static str,
    ) -> Result<Vec<T>, DecodeError> {
        self.opt_multiple(d)?
            .ok_or(DecodeError::MissingField(field))
    }

    fn opt_multiple<T: Decode>(&mut self, d: &mut Decoder) -> Result<Option<Vec<T>>, DecodeError> {
        match self.next(d)? {
            None => Ok(None),
            Some(c) if c.descriptor.is_none() && matches!(c.code, code::ARRAY8 | code::ARRAY32) => {
                d.array_of(c.code).map(Some)
            }
            Some(c) => Ok(Some(vec![T::decode_ctor(d, c)?])),
        }
    }

    /// A field of any type (`*`); `None` for null or absent.
    pub fn opt_value(&mut self, d: &mut Decoder) -> Result<Option<Value>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let v = d.read_value()?;
        Ok((!v.is_null()).then_some(v))
    }

    pub fn req_value(
        &mut self,
        d: &mut Decoder,
        field: &'static str,
    ) -> Result<Value, DecodeError> {
        self.opt_value(d)?.ok_or(DecodeError::MissingField(field))
    }

    pub fn opt_timestamp(&mut self, d: &mut Decoder) -> Result<Option<i64>, DecodeError> {
        match self.next(d)? {
            Some(c) => decode_timestamp(d, c).map(Some),
            None => Ok(None),
        }
    }

    pub fn req_timestamp(
        &mut self,
        d: &mut Decoder,
        field: &'static str,
    ) -> Result<i64, DecodeError> {
        self.opt_timestamp(d)?
            .ok_or(DecodeError::MissingField(field))
    }

    /// Skips the fields not read (a newer peer's) and leaves the list.
    pub fn finish(self, d: &mut Decoder) -> Result<(), DecodeError> {
        if let Some(outer) = self.outer {
            d.pos = d.limit;
            d.leave(outer)?;
        }
        Ok(())
    }
}
