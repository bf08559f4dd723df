//! AMQP field tables with RabbitMQ's set of value types
//! (see rabbit_binary_parser / rabbit_binary_generator).
//!
//! Keys keep their wire order, so decoding then encoding a table gives the same
//! bytes back (for canonical input: a `t` octet other than 0/1 re-encodes as 1).

use bytes::Bytes;

/// Field tables are read with the cursor (`Reader::table`), but are this
/// module's concept: the reader knows bytes, not tables.
impl Reader {
    /// A field table (32-bit byte length + entries).
    pub fn table(&mut self) -> Result<FieldTable, DecodeError> {
        FieldTable::decode(self)
    }
}

use super::reader::{
    put_longstr, put_shortstr, put_u16, put_u32, put_u64, DecodeError, Reader, MAX_NESTING,
};

/// A field table: `(key, value)` pairs in wire order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FieldTable(pub Vec<(Bytes, FieldValue)>);

/// One field-table (or array) value. The type octet of each is in the comment.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s`
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: scale (decimal places), unscaled value.
    Decimal(u8, u32),
    /// `S`
    LongStr(Bytes),
    /// `A`: 32-bit byte length, then type-tagged values.
    Array(Vec<FieldValue>),
    /// `T`
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `V`
    Void,
    /// `x`: 32-bit length + bytes.
    ByteArray(Bytes),
}

impl FieldValue {
    /// The type octet of this value on the wire.
    pub fn type_octet(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => b't',
            FieldValue::I8(_) => b'b',
            FieldValue::U8(_) => b'B',
            FieldValue::I16(_) => b's',
            FieldValue::U16(_) => b'u',
            FieldValue::I32(_) => b'I',
            FieldValue::U32(_) => b'i',
            FieldValue::I64(_) => b'l',
            FieldValue::F32(_) => b'f',
            FieldValue::F64(_) => b'd',
            FieldValue::Decimal(..) => b'D',
            FieldValue::LongStr(_) => b'S',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
            FieldValue::ByteArray(_) => b'x',
        }
    }

    /// The type's name as RabbitMQ spells it in error texts
    /// (e.g. `{unacceptable_type,longstr}`).
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Bool(_) => "bool",
            FieldValue::I8(_) => "byte",
            FieldValue::U8(_) => "unsignedbyte",
            FieldValue::I16(_) => "short",
            FieldValue::U16(_) => "unsignedshort",
            FieldValue::I32(_) => "signedint",
            FieldValue::U32(_) => "unsignedint",
            FieldValue::I64(_) => "long",
            FieldValue::F32(_) => "float",
            FieldValue::F64(_) => "double",
            FieldValue::Decimal(..) => "decimal",
            FieldValue::LongStr(_) => "longstr",
            FieldValue::Array(_) => "array",
            FieldValue::Timestamp(_) => "timestamp",
            FieldValue::Table(_) => "table",
            FieldValue::Void => "void",
            FieldValue::ByteArray(_) => "binary",
        }
    }

    /// A `LongStr` that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongStr(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The raw bytes of a `LongStr` or `ByteArray`.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            FieldValue::LongStr(b) | FieldValue::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    /// Any integer type (RabbitMQ's integer argument types: byte, short,
    /// signedint, long, unsignedbyte, unsignedshort, unsignedint). Not
    /// timestamps, floats or decimals.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValue::I8(v) => Some(v as i64),
            FieldValue::U8(v) => Some(v as i64),
            FieldValue::I16(v) => Some(v as i64),
            FieldValue::U16(v) => Some(v as i64),
            FieldValue::I32(v) => Some(v as i64),
            FieldValue::U32(v) => Some(v as i64),
            FieldValue::I64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            FieldValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&FieldTable> {
        match self {
            FieldValue::Table(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[FieldValue]> {
        match self {
            FieldValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Type octet + value.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.type_octet());
        match self {
            FieldValue::Bool(b) => out.push(*b as u8),
            FieldValue::I8(v) => out.push(*v as u8),
            FieldValue::U8(v) => out.push(*v),
            FieldValue::I16(v) => put_u16(out, *v as u16),
            FieldValue::U16(v) => put_u16(out, *v),
            FieldValue::I32(v) => put_u32(out, *v as u32),
            FieldValue::U32(v) => put_u32(out, *v),
            FieldValue::I64(v) => put_u64(out, *v as u64),
            FieldValue::F32(v) => put_u32(out, v.to_bits()),
            FieldValue::F64(v) => put_u64(out, v.to_bits()),
            FieldValue::Decimal(scale, v) => {
                out.push(*scale);
                put_u32(out, *v);
            }
            FieldValue::LongStr(b) | FieldValue::ByteArray(b) => put_longstr(out, b),
            FieldValue::Array(items) => {
                let at = out.len();
                put_u32(out, 0);
                for v in items {
                    v.encode(out);
                }
                patch_len(out, at);
            }
            FieldValue::Timestamp(v) => put_u64(out, *v),
            FieldValue::Table(t) => t.encode(out),
            FieldValue::Void => {}
        }
    }

    /// Bytes `encode` writes (type octet included).
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            FieldValue::Bool(_) | FieldValue::I8(_) | FieldValue::U8(_) => 1,
            FieldValue::I16(_) | FieldValue::U16(_) => 2,
            FieldValue::I32(_) | FieldValue::U32(_) | FieldValue::F32(_) => 4,
            FieldValue::I64(_) | FieldValue::F64(_) | FieldValue::Timestamp(_) => 8,
            FieldValue::Decimal(..) => 5,
            FieldValue::LongStr(b) | FieldValue::ByteArray(b) => 4 + b.len().min(u32::MAX as usize),
            FieldValue::Array(items) => 4 + items.iter().map(|v| v.encoded_len()).sum::<usize>(),
            FieldValue::Table(t) => t.encoded_len(),
            FieldValue::Void => 0,
        }
    }

    /// Type octet + value; `depth` is the nesting level of the enclosing table/array.
    fn decode(r: &mut Reader, depth: usize) -> Result<FieldValue, DecodeError> {
        let t = r.u8()?;
        Ok(match t {
            b't' => FieldValue::Bool(r.u8()? != 0),
            b'b' => FieldValue::I8(r.u8()? as i8),
            b'B' => FieldValue::U8(r.u8()?),
            b's' => FieldValue::I16(r.u16()? as i16),
            b'u' => FieldValue::U16(r.u16()?),
            b'I' => FieldValue::I32(r.u32()? as i32),
            b'i' => FieldValue::U32(r.u32()?),
            b'l' => FieldValue::I64(r.u64()? as i64),
            b'f' => FieldValue::F32(f32::from_bits(r.u32()?)),
            b'd' => FieldValue::F64(f64::from_bits(r.u64()?)),
            b'D' => {
                let scale = r.u8()?;
                FieldValue::Decimal(scale, r.u32()?)
            }
            b'S' => FieldValue::LongStr(r.longstr()?),
            b'A' => FieldValue::Array(decode_array(r, depth + 1)?),
            b'T' => FieldValue::Timestamp(r.u64()?),
            b'F' => FieldValue::Table(FieldTable::decode_nested(r, depth + 1)?),
            b'V' => FieldValue::Void,
            b'x' => FieldValue::ByteArray(r.longstr()?),
            other => return Err(DecodeError::UnknownFieldType(other)),
        })
    }
}

fn decode_array(r: &mut Reader, depth: usize) -> Result<Vec<FieldValue>, DecodeError> {
    if depth > MAX_NESTING {
        return Err(DecodeError::NestingTooDeep);
    }
    let body = r.longstr()?;
    let mut sub = Reader::new(body);
    let mut items = Vec::new();
    while sub.remaining() > 0 {
        items.push(FieldValue::decode(&mut sub, depth)?);
    }
    Ok(items)
}

/// Writes the byte count after the 4-byte placeholder at `at` into it.
fn patch_len(out: &mut [u8], at: usize) {
    let n = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&n.to_be_bytes());
}

impl FieldTable {
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// The first value under `key`.
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.get_bytes(key.as_bytes())
    }

    /// The first value under a (possibly non-UTF-8) key.
    pub fn get_bytes(&self, key: &[u8]) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| &k[..] == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Replaces the value of an existing key (keeping its position) or appends.
    pub fn insert(&mut self, key: &str, v: FieldValue) {
        match self.0.iter_mut().find(|(k, _)| &k[..] == key.as_bytes()) {
            Some(slot) => slot.1 = v,
            None => self.0.push((Bytes::copy_from_slice(key.as_bytes()), v)),
        }
    }

    /// Removes the first entry under `key`.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let i = self.0.iter().position(|(k, _)| &k[..] == key.as_bytes())?;
        Some(self.0.remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// 32-bit byte length, then `key (shortstr), type octet, value` entries.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        put_u32(out, 0);
        for (k, v) in &self.0 {
            put_shortstr(out, k);
            v.encode(out);
        }
        patch_len(out, at);
    }

    /// Bytes `encode` writes (length prefix included).
    pub fn encoded_len(&self) -> usize {
        4 + self
            .0
            .iter()
            .map(|(k, v)| 1 + k.len().min(255) + v.encoded_len())
            .sum::<usize>()
    }

    /// Reads a table (length prefix first). Strings are slices of the input.
    pub fn decode(r: &mut Reader) -> Result<FieldTable, DecodeError> {
        Self::decode_nested(r, 0)
    }

    fn decode_nested(r: &mut Reader, depth: usize) -> Result<FieldTable, DecodeError> {
        if depth > MAX_NESTING {
            return Err(DecodeError::NestingTooDeep);
        }
        let body = r.longstr()?;
        let mut sub = Reader::new(body);
        let mut entries = Vec::new();
        while sub.remaining() > 0 {
            let key = sub.shortstr()?;
            let v = FieldValue::decode(&mut sub, depth)?;
            entries.push((key, v));
        }
        Ok(FieldTable(entries))
    }
}

/// Skips one type octet + value, checking it as `FieldValue::decode` would.
fn skip_value(r: &mut Reader, depth: usize) -> Result<(), DecodeError> {
    match r.u8()? {
        b't' | b'b' | b'B' => r.skip(1),
        b's' | b'u' => r.skip(2),
        b'I' | b'i' | b'f' => r.skip(4),
        b'D' => r.skip(5),
        b'l' | b'd' | b'T' => r.skip(8),
        b'S' | b'x' => {
            let n = r.u32()? as usize;
            r.skip(n)
        }
        b'A' => {
            if depth + 1 > MAX_NESTING {
                return Err(DecodeError::NestingTooDeep);
            }
            let mut sub = Reader::new(r.longstr()?);
            while sub.remaining() > 0 {
                skip_value(&mut sub, depth + 1)?;
            }
            Ok(())
        }
        b'F' => skip_table(r, depth + 1),
        b'V' => Ok(()),
        other => Err(DecodeError::UnknownFieldType(other)),
    }
}

fn skip_table(r: &mut Reader, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_NESTING {
        return Err(DecodeError::NestingTooDeep);
    }
    let mut sub = Reader::new(r.longstr()?);
    while sub.remaining() > 0 {
        sub.shortstr()?;
        skip_value(&mut sub, depth)?;
    }
    Ok(())
}

impl FieldTable {
    /// Checks that `r` starts with a table `decode` would accept and steps over
    /// it, without allocating (for validation on the publish path).
    pub fn skip(r: &mut Reader) -> Result<(), DecodeError> {
        skip_table(r, 0)
    }
}

/// The value under `key` in an encoded table's entries (`body`: no length
/// prefix), decoded alone: the entries before it are skipped, so a scalar
/// or string found allocates nothing (strings are slices of `body`). None
/// if absent or malformed.
pub fn table_lookup(body: Bytes, key: &[u8]) -> Option<FieldValue> {
    let mut r = Reader::new(body);
    while r.remaining() > 0 {
        let k = r.shortstr().ok()?;
        if &k[..] == key {
            return FieldValue::decode(&mut r, 0).ok();
        }
        skip_value(&mut r, 0).ok()?;
    }
    None
}

impl From<Vec<(Bytes, FieldValue)>> for FieldTable {
    fn from(v: Vec<(Bytes, FieldValue)>) -> Self {
        FieldTable(v)
    }
}

impl<'a> FromIterator<(&'a str, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (&'a str, FieldValue)>>(iter: I) -> Self {
        let mut t = FieldTable::new();
        for (k, v) in iter {
            t.insert(k, v);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &'static str) -> FieldValue {
        FieldValue::LongStr(Bytes::from_static(v.as_bytes()))
    }

    fn every_type() -> FieldTable {
        let mut inner = FieldTable::new();
        inner.insert("k", s("v"));
        [
            ("t", FieldValue::Bool(true)),
            ("f", FieldValue::Bool(false)),
            ("b", FieldValue::I8(-2)),
            ("B", FieldValue::U8(250)),
            ("s", FieldValue::I16(-300)),
            ("u", FieldValue::U16(65000)),
            ("I", FieldValue::I32(-70000)),
            ("i", FieldValue::U32(4_000_000_000)),
            ("l", FieldValue::I64(-5_000_000_000)),
            ("fl", FieldValue::F32(1.5)),
            ("d", FieldValue::F64(-2.25)),
            ("D", FieldValue::Decimal(2, 12345)),
            ("S", s("hello")),
            (
                "A",
                FieldValue::Array(vec![FieldValue::I32(1), s("two"), FieldValue::Void]),
            ),
            ("T", FieldValue::Timestamp(1_700_000_000)),
            ("F", FieldValue::Table(inner)),
            ("V", FieldValue::Void),
            (
                "x",
                FieldValue::ByteArray(Bytes::from_static(&[0, 1, 2, 255])),
            ),
        ]
        .into_iter()
        .collect()
    }

    fn roundtrip_bytes(bytes: Vec<u8>) -> FieldTable {
        let mut r = Reader::new(Bytes::from(bytes.clone()));
        let t = FieldTable::decode(&mut r).unwrap();
        assert_eq!(r.remaining(), 0);
        let mut again = Vec::new();
        t.encode(&mut again);
        assert_eq!(again, bytes, "re-encoding is byte-exact");
        assert_eq!(t.encoded_len(), bytes.len());
        t
    }

    #[test]
    fn table_lookup_finds_one_value() {
        let t: FieldTable = [
            ("a", FieldValue::Array(vec![FieldValue::I8(1)])),
            ("k", FieldValue::LongStr(Bytes::from_static(b"v"))),
        ]
        .into_iter()
        .collect();
        let mut out = Vec::new();
        t.encode(&mut out);
        let body = Bytes::from(out).slice(4..);
        assert_eq!(
            table_lookup(body.clone(), b"k"),
            Some(FieldValue::LongStr(Bytes::from_static(b"v")))
        );
        assert_eq!(table_lookup(body.clone(), b"x"), None);
        assert_eq!(table_lookup(body.slice(..5), b"k"), None);
    }

    #[test]
    fn every_type_round_trips_byte_exact() {
        let t = every_type();
        let mut out = Vec::new();
        t.encode(&mut out);
        assert_eq!(out.len(), t.encoded_len());
        assert_eq!(
            FieldTable::skip(&mut Reader::new(Bytes::from(out.clone()))),
            Ok(())
        );
        let back = roundtrip_bytes(out);
        assert_eq!(back, t);
        assert_eq!(back.len(), 18);
    }

    #[test]
    fn each_type_encodes_to_known_bytes() {
        let cases: Vec<(FieldValue, Vec<u8>)> = vec![
            (FieldValue::Bool(true), vec![b't', 1]),
            (FieldValue::I8(-1), vec![b'b', 0xff]),
            (FieldValue::U8(7), vec![b'B', 7]),
            (FieldValue::I16(-2), vec![b's', 0xff, 0xfe]),
            (FieldValue::U16(258), vec![b'u', 1, 2]),
            (FieldValue::I32(-1), vec![b'I', 0xff, 0xff, 0xff, 0xff]),
            (FieldValue::U32(1), vec![b'i', 0, 0, 0, 1]),
            (FieldValue::I64(1), vec![b'l', 0, 0, 0, 0, 0, 0, 0, 1]),
            (FieldValue::F32(1.0), vec![b'f', 0x3f, 0x80, 0, 0]),
            (
                FieldValue::F64(1.0),
                vec![b'd', 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
            ),
            (FieldValue::Decimal(3, 5), vec![b'D', 3, 0, 0, 0, 5]),
            (s("ab"), vec![b'S', 0, 0, 0, 2, b'a', b'b']),
            (
                FieldValue::Array(vec![FieldValue::U8(1)]),
                vec![b'A', 0, 0, 0, 2, b'B', 1],
            ),
            (FieldValue::Timestamp(2), vec![b'T', 0, 0, 0, 0, 0, 0, 0, 2]),
            (FieldValue::Table(FieldTable::new()), vec![b'F', 0, 0, 0, 0]),
            (FieldValue::Void, vec![b'V']),
            (
                FieldValue::ByteArray(Bytes::from_static(b"\0")),
                vec![b'x', 0, 0, 0, 1, 0],
            ),
        ];
        for (v, bytes) in cases {
            let mut out = Vec::new();
            v.encode(&mut out);
            assert_eq!(out, bytes, "{v:?}");
            assert_eq!(v.encoded_len(), bytes.len());
            let mut r = Reader::new(Bytes::from(bytes));
            assert_eq!(FieldValue::decode(&mut r, 0).unwrap(), v);
        }
    }

    #[test]
    fn known_client_bytes() {
        // {"a": short 0x0102, "bb": byte -1}, as a client writes it.
        let bytes = vec![0, 0, 0, 10, 1, b'a', b's', 1, 2, 2, b'b', b'b', b'b', 0xff];
        let t = roundtrip_bytes(bytes);
        assert_eq!(t.get("a"), Some(&FieldValue::I16(0x0102)));
        assert_eq!(t.get("bb"), Some(&FieldValue::I8(-1)));
        assert_eq!(t.get("a").unwrap().as_i64(), Some(0x0102));
        assert_eq!(t.get("bb").unwrap().type_name(), "byte");
        assert_eq!(t.get("zz"), None);
    }

    #[test]
    fn decode_errors() {
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 5, 1, b'a', b'S', 0]));
        assert_eq!(FieldTable::decode(&mut r), Err(DecodeError::Truncated));
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 4, 1, b'a', b'S', 0]));
        assert_eq!(FieldTable::decode(&mut r), Err(DecodeError::Truncated));
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 3, 1, b'a', b'Z']));
        assert_eq!(
            FieldTable::decode(&mut r),
            Err(DecodeError::UnknownFieldType(b'Z'))
        );
        let mut r = Reader::new(Bytes::from_static(&[0, 0]));
        assert_eq!(FieldTable::decode(&mut r), Err(DecodeError::Truncated));
        // A key with no value.
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 2, 1, b'a']));
        assert_eq!(FieldTable::decode(&mut r), Err(DecodeError::Truncated));
        // Array element of unknown type.
        let mut r = Reader::new(Bytes::from_static(&[
            0, 0, 0, 8, 1, b'a', b'A', 0, 0, 0, 1, b'?',
        ]));
        assert_eq!(
            FieldTable::decode(&mut r),
            Err(DecodeError::UnknownFieldType(b'?'))
        );
        assert!(DecodeError::UnknownFieldType(b'?')
            .to_string()
            .contains("'?'"));
    }

    fn nested(depth: usize, array: bool) -> Vec<u8> {
        let mut v = FieldValue::Void;
        for i in 0..depth {
            v = if array && i % 2 == 0 {
                FieldValue::Array(vec![v])
            } else {
                FieldValue::Table([("n", v)].into_iter().collect())
            };
        }
        let t: FieldTable = [("top", v)].into_iter().collect();
        let mut out = Vec::new();
        t.encode(&mut out);
        out
    }

    #[test]
    fn nesting_is_bounded() {
        for array in [false, true] {
            let ok = nested(MAX_NESTING, array);
            assert!(FieldTable::decode(&mut Reader::new(Bytes::from(ok))).is_ok());
            let deep = Bytes::from(nested(MAX_NESTING + 1, array));
            assert_eq!(
                FieldTable::decode(&mut Reader::new(deep.clone())),
                Err(DecodeError::NestingTooDeep)
            );
            assert_eq!(
                FieldTable::skip(&mut Reader::new(deep)),
                Err(DecodeError::NestingTooDeep)
            );
        }
        // Very deep input must not overflow the stack either.
        // (built by hand: encoding or dropping such a value would recurse).
        // Level k (from the inside, k >= 1) is 4 + 3 + size(k-1) bytes; size(0) = 4.
        let n = 100_000u32;
        let mut deep = Vec::new();
        for k in (1..=n).rev() {
            deep.extend_from_slice(&(3 + 4 + 7 * (k - 1)).to_be_bytes());
            deep.extend_from_slice(&[1, b'n', b'F']);
        }
        deep.extend_from_slice(&[0, 0, 0, 0]);
        let deep = Bytes::from(deep);
        assert_eq!(
            FieldTable::decode(&mut Reader::new(deep.clone())),
            Err(DecodeError::NestingTooDeep)
        );
        assert_eq!(
            FieldTable::skip(&mut Reader::new(deep)),
            Err(DecodeError::NestingTooDeep)
        );
    }

    #[test]
    fn insert_replaces_in_place_and_remove() {
        let mut t = FieldTable::new();
        t.insert("a", FieldValue::I32(1));
        t.insert("b", FieldValue::I32(2));
        t.insert("a", FieldValue::I32(3));
        assert_eq!(t.len(), 2);
        assert_eq!(t.iter().next().unwrap().1, &FieldValue::I32(3));
        assert_eq!(t.remove("a"), Some(FieldValue::I32(3)));
        assert_eq!(t.remove("a"), None);
        assert_eq!(t.len(), 1);
        assert!(!t.is_empty());
        assert_eq!(s("x").as_str(), Some("x"));
        assert_eq!(FieldValue::Bool(true).as_bool(), Some(true));
        assert_eq!(FieldValue::Timestamp(1).as_i64(), None);
        assert_eq!(FieldValue::U32(5).type_name(), "unsignedint");
    }

    fn arb_value() -> impl Strategy<Value = FieldValue> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(FieldValue::Bool),
            any::<i8>().prop_map(FieldValue::I8),
            any::<u8>().prop_map(FieldValue::U8),
            any::<i16>().prop_map(FieldValue::I16),
            any::<u16>().prop_map(FieldValue::U16),
            any::<i32>().prop_map(FieldValue::I32),
            any::<u32>().prop_map(FieldValue::U32),
            any::<i64>().prop_map(FieldValue::I64),
            any::<u32>().prop_map(|b| FieldValue::F32(f32::from_bits(b))),
            any::<u64>().prop_map(|b| FieldValue::F64(f64::from_bits(b))),
            (any::<u8>(), any::<u32>()).prop_map(|(s, v)| FieldValue::Decimal(s, v)),
            proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(|v| FieldValue::LongStr(Bytes::from(v))),
            any::<u64>().prop_map(FieldValue::Timestamp),
            Just(FieldValue::Void),
            proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(|v| FieldValue::ByteArray(Bytes::from(v))),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
                proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..10), inner),
                    0..6
                )
                .prop_map(|kv| FieldValue::Table(FieldTable(
                    kv.into_iter().map(|(k, v)| (Bytes::from(k), v)).collect()
                ))),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = FieldTable::decode(&mut Reader::new(Bytes::from(bytes.clone())));
            // Also with a plausible length prefix so the body gets parsed.
            let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let framed = Bytes::from(framed);
            let decoded = FieldTable::decode(&mut Reader::new(framed.clone()));
            let skipped = FieldTable::skip(&mut Reader::new(framed));
            prop_assert_eq!(decoded.map(|_| ()), skipped, "skip agrees with decode");
        }

        #[test]
        fn arbitrary_tables_round_trip_byte_exact(v in arb_value()) {
            let t: FieldTable = [("v", v)].into_iter().collect();
            let mut out = Vec::new();
            t.encode(&mut out);
            prop_assert_eq!(out.len(), t.encoded_len());
            let back = FieldTable::decode(&mut Reader::new(Bytes::from(out.clone()))).unwrap();
            let mut again = Vec::new();
            back.encode(&mut again);
            prop_assert_eq!(again, out);
        }
    }
}
