//! Encoding AMQP 1.0 values into a caller's `Vec<u8>`: the [`Encode`] trait
//! (values, typed fields, described types), the `put_*` writers, and the
//! compound builders the generated codec uses.
//!
//! Every value takes its smallest encoding (`uint0`, `smalluint`, `str8`,
//! `list0`, ...). A list, map or array is written in its 32-bit form, then
//! moved down into the 8-bit form when it fits (at most 255 bytes, a
//! `copy_within` in the same buffer): one pass, nothing allocated beyond the
//! `Vec`'s own growth. Inside an array, where all elements share one
//! constructor, lists, maps and arrays keep the 32-bit form.

use bytes::Bytes;

use super::types::code;
use super::value::{Fields, Str, Symbol, Value};

/// A value that knows its AMQP 1.0 encoding.
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

impl<T: Encode + ?Sized> Encode for &T {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out)
    }
}

impl<T: Encode> Encode for Option<T> {
    /// `None` is null.
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.encode(out),
            None => put_null(out),
        }
    }
}

// ---- primitives ----

#[inline]
pub fn put_null(out: &mut Vec<u8>) {
    out.push(code::NULL);
}

#[inline]
pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { code::TRUE } else { code::FALSE });
}

#[inline]
pub fn put_ubyte(out: &mut Vec<u8>, v: u8) {
    out.extend_from_slice(&[code::UBYTE, v]);
}

#[inline]
pub fn put_ushort(out: &mut Vec<u8>, v: u16) {
    out.push(code::USHORT);
    out.extend_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn put_uint(out: &mut Vec<u8>, v: u32) {
    match v {
        0 => out.push(code::UINT0),
        1..=255 => out.extend_from_slice(&[code::SMALLUINT, v as u8]),
        _ => {
            out.push(code::UINT);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

#[inline]
pub fn put_ulong(out: &mut Vec<u8>, v: u64) {
    match v {
        0 => out.push(code::ULONG0),
        1..=255 => out.extend_from_slice(&[code::SMALLULONG, v as u8]),
        _ => {
            out.push(code::ULONG);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

#[inline]
pub fn put_byte(out: &mut Vec<u8>, v: i8) {
    out.extend_from_slice(&[code::BYTE, v as u8]);
}

#[inline]
pub fn put_short(out: &mut Vec<u8>, v: i16) {
    out.push(code::SHORT);
    out.extend_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn put_int(out: &mut Vec<u8>, v: i32) {
    match i8::try_from(v) {
        Ok(b) => out.extend_from_slice(&[code::SMALLINT, b as u8]),
        Err(_) => {
            out.push(code::INT);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

#[inline]
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    match i8::try_from(v) {
        Ok(b) => out.extend_from_slice(&[code::SMALLLONG, b as u8]),
        Err(_) => {
            out.push(code::LONG);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

#[inline]
pub fn put_float(out: &mut Vec<u8>, v: f32) {
    out.push(code::FLOAT);
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

#[inline]
pub fn put_double(out: &mut Vec<u8>, v: f64) {
    out.push(code::DOUBLE);
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

#[inline]
pub fn put_char(out: &mut Vec<u8>, v: char) {
    out.push(code::CHAR);
    out.extend_from_slice(&(v as u32).to_be_bytes());
}

/// A timestamp (ms since the epoch).
#[inline]
pub fn put_timestamp(out: &mut Vec<u8>, v: i64) {
    out.push(code::TIMESTAMP);
    out.extend_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn put_uuid(out: &mut Vec<u8>, v: &[u8; 16]) {
    out.push(code::UUID);
    out.extend_from_slice(v);
}

/// A length-prefixed value: the 8-bit form up to 255 bytes.
#[inline]
fn put_variable(out: &mut Vec<u8>, code8: u8, code32: u8, b: &[u8]) {
    match u8::try_from(b.len()) {
        Ok(n) => out.extend_from_slice(&[code8, n]),
        Err(_) => {
            out.push(code32);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(b);
}

#[inline]
pub fn put_binary(out: &mut Vec<u8>, b: &[u8]) {
    put_variable(out, code::VBIN8, code::VBIN32, b);
}

#[inline]
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    put_variable(out, code::STR8_UTF8, code::STR32_UTF8, s.as_bytes());
}

/// A symbol; `s` should be ASCII.
#[inline]
pub fn put_symbol(out: &mut Vec<u8>, s: &[u8]) {
    put_variable(out, code::SYM8, code::SYM32, s);
}

/// `0x00` and a descriptor code (smallulong when it fits, as every spec code does).
#[inline]
pub fn put_descriptor(out: &mut Vec<u8>, descriptor: u64) {
    out.push(code::DESCRIBED);
    put_ulong(out, descriptor);
}

// ---- compounds ----

/// Starts a compound (list, map or array) at the end of `out`: a 32-bit
/// header to be filled in by [`list_end`], [`map_end`] or the array writer.
#[inline]
pub fn list_begin(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[code::LIST32, 0, 0, 0, 0, 0, 0, 0, 0]);
    at
}

/// Ends a list begun at `at` holding `count` elements: `list0` if empty,
/// `list8` if it fits, else `list32`.
#[inline]
pub fn list_end(out: &mut Vec<u8>, at: usize, count: u32) {
    if count == 0 {
        out.truncate(at);
        out.push(code::LIST0);
    } else {
        compound_end(out, at, count, code::LIST8, code::LIST32);
    }
}

#[inline]
pub fn map_begin(out: &mut Vec<u8>) -> usize {
    list_begin(out)
}

/// Ends a map begun at `at` holding `count` elements (twice its pairs).
#[inline]
pub fn map_end(out: &mut Vec<u8>, at: usize, count: u32) {
    compound_end(out, at, count, code::MAP8, code::MAP32);
}

/// Writes size and count into the 32-bit header at `at`, or moves the
/// elements down into an 8-bit header when they fit.
fn compound_end(out: &mut Vec<u8>, at: usize, count: u32, code8: u8, code32: u8) {
    let body = out.len() - at - 9;
    if body < 255 && count <= 255 {
        out[at] = code8;
        out[at + 1] = body as u8 + 1;
        out[at + 2] = count as u8;
        out.copy_within(at + 9.., at + 3);
        out.truncate(out.len() - 6);
    } else {
        out[at] = code32;
        out[at + 1..at + 5].copy_from_slice(&(body as u32 + 4).to_be_bytes());
        out[at + 5..at + 9].copy_from_slice(&count.to_be_bytes());
    }
}

pub fn put_list(out: &mut Vec<u8>, items: &[Value]) {
    let at = list_begin(out);
    for v in items {
        v.encode(out);
    }
    list_end(out, at, items.len() as u32);
}

pub fn put_map(out: &mut Vec<u8>, pairs: &[(Value, Value)]) {
    let at = map_begin(out);
    for (k, v) in pairs {
        k.encode(out);
        v.encode(out);
    }
    map_end(out, at, 2 * pairs.len() as u32);
}

/// A type that can be an array element: one constructor for all of them.
pub trait ArrayElement {
    /// The smallest constructor that fits every item.
    fn element_code(items: &[Self]) -> u8
    where
        Self: Sized;
    /// The value without its constructor.
    fn encode_body(&self, code: u8, out: &mut Vec<u8>);
}

/// An array of `items` (a `multiple` field).
pub fn put_array<T: ArrayElement>(out: &mut Vec<u8>, items: &[T]) {
    let at = array_begin(out);
    out.push(T::element_code(items));
    let c = out[out.len() - 1];
    for v in items {
        v.encode_body(c, out);
    }
    compound_end(out, at, items.len() as u32, code::ARRAY8, code::ARRAY32);
}

#[inline]
fn array_begin(out: &mut Vec<u8>) -> usize {
    list_begin(out)
}

fn variable_code(max_len: usize, code8: u8, code32: u8) -> u8 {
    if max_len <= 255 {
        code8
    } else {
        code32
    }
}

fn put_variable_body(out: &mut Vec<u8>, code8: u8, c: u8, b: &[u8]) {
    if c == code8 {
        out.push(b.len() as u8);
    } else {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

impl ArrayElement for Symbol {
    fn element_code(items: &[Symbol]) -> u8 {
        let max = items.iter().map(Symbol::len).max().unwrap_or(0);
        variable_code(max, code::SYM8, code::SYM32)
    }
    fn encode_body(&self, c: u8, out: &mut Vec<u8>) {
        put_variable_body(out, code::SYM8, c, self.as_bytes());
    }
}

impl ArrayElement for Str {
    fn element_code(items: &[Str]) -> u8 {
        let max = items.iter().map(Str::len).max().unwrap_or(0);
        variable_code(max, code::STR8_UTF8, code::STR32_UTF8)
    }
    fn encode_body(&self, c: u8, out: &mut Vec<u8>) {
        put_variable_body(out, code::STR8_UTF8, c, self.as_bytes());
    }
}

impl ArrayElement for u32 {
    fn element_code(items: &[u32]) -> u8 {
        if items.iter().all(|&v| v <= 255) {
            code::SMALLUINT
        } else {
            code::UINT
        }
    }
    fn encode_body(&self, c: u8, out: &mut Vec<u8>) {
        if c == code::SMALLUINT {
            out.push(*self as u8);
        } else {
            out.extend_from_slice(&self.to_be_bytes());
        }
    }
}

/// An array of values. All must have the same type (and, if described, the
/// same descriptor); a heterogeneous `items` is written as a list instead,
/// since no array can hold it.
pub fn put_array_values(out: &mut Vec<u8>, items: &[Value]) {
    let Some(c) = array_code(items, 0) else {
        return put_list(out, items);
    };
    let at = array_begin(out);
    if let Some(Value::Described(b)) = items.first() {
        out.push(code::DESCRIBED);
        b.0.encode(out);
    }
    out.push(c);
    for v in items {
        put_body(v, c, out);
    }
    compound_end(out, at, items.len() as u32, code::ARRAY8, code::ARRAY32);
}

/// The one constructor (inside the descriptor, for described values) that
/// fits all `items`, after unwrapping `peel` (0 or 1) descriptors from each;
/// `None` if they are not all of one type. Null for none.
fn array_code(items: &[Value], peel: usize) -> Option<u8> {
    let Some(first) = items.first().map(|v| peeled(v, peel)) else {
        return Some(code::NULL);
    };
    let same = std::mem::discriminant(first);
    if !items
        .iter()
        .all(|v| std::mem::discriminant(peeled(v, peel)) == same)
    {
        return None;
    }
    let all = |f: &dyn Fn(&Value) -> bool| items.iter().all(|v| f(peeled(v, peel)));
    Some(match first {
        Value::Null => code::NULL,
        Value::Bool(_) => code::BOOLEAN,
        Value::Ubyte(_) => code::UBYTE,
        Value::Ushort(_) => code::USHORT,
        Value::Uint(_) if all(&|v| matches!(v, Value::Uint(x) if *x <= 255)) => code::SMALLUINT,
        Value::Uint(_) => code::UINT,
        Value::Ulong(_) if all(&|v| matches!(v, Value::Ulong(x) if *x <= 255)) => code::SMALLULONG,
        Value::Ulong(_) => code::ULONG,
        Value::Byte(_) => code::BYTE,
        Value::Short(_) => code::SHORT,
        Value::Int(_) if all(&|v| matches!(v, Value::Int(x) if i8::try_from(*x).is_ok())) => {
            code::SMALLINT
        }
        Value::Int(_) => code::INT,
        Value::Long(_) if all(&|v| matches!(v, Value::Long(x) if i8::try_from(*x).is_ok())) => {
            code::SMALLLONG
        }
        Value::Long(_) => code::LONG,
        Value::Float(_) => code::FLOAT,
        Value::Double(_) => code::DOUBLE,
        Value::Decimal32(_) => code::DECIMAL32,
        Value::Decimal64(_) => code::DECIMAL64,
        Value::Decimal128(_) => code::DECIMAL128,
        Value::Char(_) => code::CHAR,
        Value::Timestamp(_) => code::TIMESTAMP,
        Value::Uuid(_) => code::UUID,
        Value::Binary(_) if all(&|v| matches!(v, Value::Binary(b) if b.len() <= 255)) => {
            code::VBIN8
        }
        Value::Binary(_) => code::VBIN32,
        Value::String(_) if all(&|v| matches!(v, Value::String(s) if s.len() <= 255)) => {
            code::STR8_UTF8
        }
        Value::String(_) => code::STR32_UTF8,
        Value::Symbol(_) if all(&|v| matches!(v, Value::Symbol(s) if s.len() <= 255)) => code::SYM8,
        Value::Symbol(_) => code::SYM32,
        Value::List(_) => code::LIST32,
        Value::Map(_) => code::MAP32,
        // Each inner array has its own element constructor, but must have one.
        Value::Array(_) if all(&|v| matches!(v, Value::Array(a) if array_code(a, 0).is_some())) => {
            code::ARRAY32
        }
        Value::Array(_) => return None,
        // One descriptor for all, in the element constructor (only one fits).
        Value::Described(b)
            if peel == 0 && all(&|v| matches!(v, Value::Described(x) if x.0 == b.0)) =>
        {
            array_code(items, 1)?
        }
        Value::Described(_) => return None,
    })
}

/// `v`, or the value inside it when `peel` is 1 and it is described.
fn peeled(v: &Value, peel: usize) -> &Value {
    match v {
        Value::Described(b) if peel > 0 => &b.1,
        v => v,
    }
}

/// The value `v` without its constructor, for constructor `c` (chosen by
/// `array_code`, so it fits).
fn put_body(v: &Value, c: u8, out: &mut Vec<u8>) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push(*b as u8),
        Value::Ubyte(x) => out.push(*x),
        Value::Ushort(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Uint(x) if c == code::SMALLUINT => out.push(*x as u8),
        Value::Uint(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Ulong(x) if c == code::SMALLULONG => out.push(*x as u8),
        Value::Ulong(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Byte(x) => out.push(*x as u8),
        Value::Short(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Int(x) if c == code::SMALLINT => out.push(*x as i8 as u8),
        Value::Int(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Long(x) if c == code::SMALLLONG => out.push(*x as i8 as u8),
        Value::Long(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Float(x) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
        Value::Double(x) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
        Value::Decimal32(x) => out.extend_from_slice(x),
        Value::Decimal64(x) => out.extend_from_slice(x),
        Value::Decimal128(x) => out.extend_from_slice(x),
        Value::Char(x) => out.extend_from_slice(&(*x as u32).to_be_bytes()),
        Value::Timestamp(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Uuid(x) => out.extend_from_slice(x),
        Value::Binary(b) => put_variable_body(out, code::VBIN8, c, b),
        Value::String(s) => put_variable_body(out, code::STR8_UTF8, c, s.as_bytes()),
        Value::Symbol(s) => put_variable_body(out, code::SYM8, c, s.as_bytes()),
        Value::List(items) => put_body32(out, items.len() as u32, |out| {
            items.iter().for_each(|v| v.encode(out))
        }),
        Value::Map(pairs) => put_body32(out, 2 * pairs.len() as u32, |out| {
            for (k, v) in pairs {
                k.encode(out);
                v.encode(out);
            }
        }),
        Value::Array(items) => {
            let inner = array_code(items, 0).unwrap_or(code::NULL);
            put_body32(out, items.len() as u32, |out| {
                if let Some(Value::Described(b)) = items.first() {
                    out.push(code::DESCRIBED);
                    b.0.encode(out);
                }
                out.push(inner);
                items.iter().for_each(|v| put_body(v, inner, out));
            })
        }
        Value::Described(b) => put_body(&b.1, c, out),
    }
}

/// A 32-bit compound body: size, count, then what `f` writes.
fn put_body32(out: &mut Vec<u8>, count: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&count.to_be_bytes());
    f(out);
    let size = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

impl Encode for Value {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => put_null(out),
            Value::Bool(v) => put_bool(out, *v),
            Value::Ubyte(v) => put_ubyte(out, *v),
            Value::Ushort(v) => put_ushort(out, *v),
            Value::Uint(v) => put_uint(out, *v),
            Value::Ulong(v) => put_ulong(out, *v),
            Value::Byte(v) => put_byte(out, *v),
            Value::Short(v) => put_short(out, *v),
            Value::Int(v) => put_int(out, *v),
            Value::Long(v) => put_long(out, *v),
            Value::Float(v) => put_float(out, *v),
            Value::Double(v) => put_double(out, *v),
            Value::Decimal32(v) => {
                out.push(code::DECIMAL32);
                out.extend_from_slice(v);
            }
            Value::Decimal64(v) => {
                out.push(code::DECIMAL64);
                out.extend_from_slice(v);
            }
            Value::Decimal128(v) => {
                out.push(code::DECIMAL128);
                out.extend_from_slice(v);
            }
            Value::Char(v) => put_char(out, *v),
            Value::Timestamp(v) => put_timestamp(out, *v),
            Value::Uuid(v) => put_uuid(out, v),
            Value::Binary(b) => put_binary(out, b),
            Value::String(s) => put_string(out, s.as_str()),
            Value::Symbol(s) => put_symbol(out, s.as_bytes()),
            Value::List(items) => put_list(out, items),
            Value::Map(pairs) => put_map(out, pairs),
            Value::Array(items) => put_array_values(out, items),
            Value::Described(b) => {
                out.push(code::DESCRIBED);
                b.0.encode(out);
                b.1.encode(out);
            }
        }
    }
}

macro_rules! encode_with {
    ($($t:ty => $f:ident),+) => {
        $(impl Encode for $t {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                $f(out, *self)
            }
        })+
    };
}

encode_with!(
    bool => put_bool,
    u8 => put_ubyte,
    u16 => put_ushort,
    u32 => put_uint,
    u64 => put_ulong,
    i8 => put_byte,
    i16 => put_short,
    i32 => put_int,
    i64 => put_long,
    f32 => put_float,
    f64 => put_double,
    char => put_char
);

impl Encode for [u8; 16] {
    /// A uuid.
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        put_uuid(out, self)
    }
}

impl Encode for Bytes {
    /// A binary.
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        put_binary(out, self)
    }
}

impl Encode for [u8] {
    /// A binary.
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        put_binary(out, self)
    }
}

impl Encode for Str {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        put_string(out, self.as_str())
    }
}

impl Encode for str {
    /// A string.
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        put_string(out, self)
    }
}

impl Encode for Symbol {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        put_symbol(out, self.as_bytes())
    }
}

/// A symbol written from borrowed text, without building a [`Symbol`]
/// (map keys of annotations, say).
#[derive(Clone, Copy, Debug)]
pub struct SymbolRef<'a>(pub &'a str);

impl Encode for SymbolRef<'_> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        put_symbol(out, self.0.as_bytes())
    }
}

impl Encode for Fields {
    fn encode(&self, out: &mut Vec<u8>) {
        put_map(out, &self.0)
    }
}
