//! The AMQP 1.0 type system (types.xml): [`Value`], with [`Str`] and
//! [`Symbol`], zero-copy views of the received bytes, and [`Fields`], the map
//! type of `fields`, annotations and filter sets.
//!
//! A decoded string, symbol or binary is a [`Bytes`] slice of the frame it
//! came from: no copy, no allocation.

use std::fmt;

use bytes::Bytes;

use super::error::DecodeError;

/// An AMQP 1.0 value, as decoded (or to encode). Maps keep their order and,
/// as received, their duplicates. An `Array`'s elements all have the same
/// type (the encoder writes a heterogeneous one as a list).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Ubyte(u8),
    Ushort(u16),
    Uint(u32),
    Ulong(u64),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    /// IEEE 754 decimal32, as its 4 bytes (big-endian).
    Decimal32([u8; 4]),
    Decimal64([u8; 8]),
    Decimal128([u8; 16]),
    Char(char),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
    Binary(Bytes),
    String(Str),
    Symbol(Symbol),
    List(Vec<Value>),
    /// Key-value pairs in their wire order.
    Map(Vec<(Value, Value)>),
    Array(Vec<Value>),
    /// (descriptor, value).
    Described(Box<(Value, Value)>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The text of a string or a symbol.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s.as_str()),
            Value::Symbol(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// Any unsigned or non-negative signed integer, widened.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Ubyte(v) => Some(v as u64),
            Value::Ushort(v) => Some(v as u64),
            Value::Uint(v) => Some(v as u64),
            Value::Ulong(v) => Some(v),
            Value::Byte(v) => u64::try_from(v).ok(),
            Value::Short(v) => u64::try_from(v).ok(),
            Value::Int(v) => u64::try_from(v).ok(),
            Value::Long(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer, widened (ulong only up to `i64::MAX`).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Byte(v) => Some(v as i64),
            Value::Short(v) => Some(v as i64),
            Value::Int(v) => Some(v as i64),
            Value::Long(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The bytes of a binary.
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Value::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// The spec name of the value's type (`"uint"`, `"list"`, `"described"`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Ubyte(_) => "ubyte",
            Value::Ushort(_) => "ushort",
            Value::Uint(_) => "uint",
            Value::Ulong(_) => "ulong",
            Value::Byte(_) => "byte",
            Value::Short(_) => "short",
            Value::Int(_) => "int",
            Value::Long(_) => "long",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::Decimal32(_) => "decimal32",
            Value::Decimal64(_) => "decimal64",
            Value::Decimal128(_) => "decimal128",
            Value::Char(_) => "char",
            Value::Timestamp(_) => "timestamp",
            Value::Uuid(_) => "uuid",
            Value::Binary(_) => "binary",
            Value::String(_) => "string",
            Value::Symbol(_) => "symbol",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Array(_) => "array",
            Value::Described(_) => "described",
        }
    }
}

impl From<&'static str> for Value {
    /// A string (use `Value::Symbol(Symbol::from_static(..))` for a symbol).
    fn from(s: &'static str) -> Value {
        Value::String(Str::from_static(s))
    }
}

impl From<Str> for Value {
    fn from(s: Str) -> Value {
        Value::String(s)
    }
}

impl From<Symbol> for Value {
    fn from(s: Symbol) -> Value {
        Value::Symbol(s)
    }
}

/// An AMQP string: UTF-8, checked once when decoded or built; `as_str` is free.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Str(Bytes);

impl Str {
    /// A string from a literal, without a copy.
    pub const fn from_static(s: &'static str) -> Str {
        Str(Bytes::from_static(s.as_bytes()))
    }

    /// Checks that `b` is UTF-8 (no copy).
    pub fn from_utf8(b: Bytes) -> Result<Str, DecodeError> {
        match std::str::from_utf8(&b) {
            Ok(_) => Ok(Str(b)),
            Err(_) => Err(DecodeError::InvalidUtf8),
        }
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or is given a `str`) that the
        // bytes are UTF-8, and they are immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, sharing the buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Str {
    fn from(s: String) -> Str {
        Str(Bytes::from(s))
    }
}

impl From<&str> for Str {
    /// Copies `s`.
    fn from(s: &str) -> Str {
        Str(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An AMQP symbol: ASCII, checked once when decoded or built.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Symbol(Bytes);

impl Symbol {
    /// A symbol from a literal, without a copy. Panics (at compile time in
    /// a `const`) if `s` is not ASCII.
    pub const fn from_static(s: &'static str) -> Symbol {
        assert!(s.is_ascii(), "a symbol is ASCII");
        Symbol(Bytes::from_static(s.as_bytes()))
    }

    /// Checks that `b` is ASCII (no copy).
    pub fn new(b: Bytes) -> Result<Symbol, DecodeError> {
        if b.is_ascii() {
            Ok(Symbol(b))
        } else {
            Err(DecodeError::InvalidSymbol)
        }
    }

    /// Copies `s`; `None` if it is not ASCII.
    pub fn copy_from(s: &str) -> Option<Symbol> {
        s.is_ascii()
            .then(|| Symbol(Bytes::copy_from_slice(s.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: ASCII (checked by every constructor) is UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq<str> for Symbol {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Symbol {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{}", self.as_str())
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A map in a typed field (`fields`, annotations, `filter-set`,
/// `node-properties`, attach's `unsettled`): its pairs in wire order.
/// Lookups are linear; these maps are small.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Fields(pub Vec<(Value, Value)>);

impl Fields {
    pub fn new() -> Fields {
        Fields(Vec::new())
    }

    /// The value of the first entry whose key is the symbol or string `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Sets `key` (a symbol) to `value`, replacing an existing entry.
    pub fn insert(&mut self, key: Symbol, value: Value) {
        match self
            .0
            .iter_mut()
            .find(|(k, _)| matches!(k, Value::Symbol(s) if *s == key))
        {
            Some(entry) => entry.1 = value,
            None => self.0.push((Value::Symbol(key), value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Value, Value)> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<(Value, Value)>> for Fields {
    fn from(v: Vec<(Value, Value)>) -> Fields {
        Fields(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_and_symbol_check_their_bytes() {
        assert_eq!(
            Str::from_utf8(Bytes::from_static(b"h\xc3\xa9")).unwrap(),
            "hé"
        );
        assert_eq!(
            Str::from_utf8(Bytes::from_static(b"\xff")),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            Symbol::new(Bytes::from_static(b"amqp:x")).unwrap(),
            "amqp:x"
        );
        assert_eq!(
            Symbol::new(Bytes::from_static(b"\xc3\xa9")),
            Err(DecodeError::InvalidSymbol)
        );
        assert_eq!(Symbol::copy_from("é"), None);
        assert_eq!(format!("{:?}", Symbol::from_static("a")), ":a");
        assert_eq!(format!("{}", Str::from("x")), "x");
    }

    #[test]
    fn fields_lookup_and_insert() {
        let mut f = Fields::new();
        f.insert(Symbol::from_static("a"), Value::Uint(1));
        f.insert(Symbol::from_static("b"), Value::Uint(2));
        f.insert(Symbol::from_static("a"), Value::Uint(3));
        assert_eq!(f.len(), 2);
        assert_eq!(f.get("a"), Some(&Value::Uint(3)));
        f.0.push((Value::from("s"), Value::Null));
        assert_eq!(f.get("s"), Some(&Value::Null));
        assert_eq!(f.get("zz"), None);
    }

    #[test]
    fn value_accessors() {
        assert_eq!(Value::Int(-1).as_u64(), None);
        assert_eq!(Value::Int(7).as_u64(), Some(7));
        assert_eq!(Value::Ulong(u64::MAX).as_i64(), None);
        assert_eq!(Value::Short(-2).as_i64(), Some(-2));
        assert_eq!(Value::from("x").as_str(), Some("x"));
        assert_eq!(Value::Bool(true).as_bool(), Some(true));
        assert_eq!(Value::Null.type_name(), "null");
        assert!(Value::default().is_null());
    }
}
