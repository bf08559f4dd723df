//! Why AMQP 1.0 bytes could not be decoded. Every variant is an expected
//! outcome of hostile input; [`DecodeError::condition`] names the AMQP error
//! condition to close the connection (or detach the link) with, and
//! `Display` is the description.

use std::fmt;

use super::types::condition;

/// Why a value, a described type or a message section could not be decoded.
/// After an error the [`Decoder`](super::Decoder)'s position is unspecified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a value.
    Truncated,
    /// A constructor byte that types.xml does not define.
    UnknownCode(u8),
    /// A value of another type where `expected` was required.
    UnexpectedType { expected: &'static str, code: u8 },
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// A symbol that is not ASCII.
    InvalidSymbol,
    /// A char that is not a Unicode scalar value.
    InvalidChar(u32),
    /// A boolean (0x56) octet other than 0 or 1.
    InvalidBool(u8),
    /// Lists, maps, arrays and described values nested deeper than
    /// [`MAX_DEPTH`](super::MAX_DEPTH).
    TooDeep,
    /// A compound or array whose size or element count cannot fit in the
    /// bytes that remain (checked before anything is allocated).
    BadSize,
    /// The elements of a compound did not end where its size said.
    SizeMismatch,
    /// A map with an odd number of elements.
    OddMapCount(u32),
    /// Arrays of zero-width elements (null, true, uint0, ...) claiming more
    /// elements in all than there are input bytes.
    TooManyElements,
    /// A descriptor that is neither a ulong nor a symbol, or a constructor
    /// with two descriptors, where a described type was expected.
    BadDescriptor,
    /// A symbolic descriptor the spec does not define.
    UnknownDescriptor,
    /// A described type other than the one (or the archetype) `expected`.
    WrongDescriptor {
        expected: &'static str,
        found: Option<u64>,
    },
    /// A mandatory field (`type.field`) that is absent or null.
    MissingField(&'static str),
    /// A restricted number outside its type's choices.
    InvalidChoice { ty: &'static str, value: u64 },
    /// A null where a value was required.
    UnexpectedNull,
    /// Message sections out of the spec's order, repeated, or mixing body kinds.
    SectionOrder,
    /// Bytes after the last message section that are not a section.
    UnknownSection(Option<u64>),
}

impl DecodeError {
    /// The AMQP error condition to report: `amqp:decode-error`, or
    /// `amqp:invalid-field` for a well-formed value that breaks a field's rules.
    pub fn condition(&self) -> &'static str {
        match self {
            DecodeError::MissingField(_) | DecodeError::InvalidChoice { .. } => {
                condition::INVALID_FIELD
            }
            _ => condition::DECODE_ERROR,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("truncated value"),
            DecodeError::UnknownCode(c) => write!(f, "unknown constructor 0x{c:02x}"),
            DecodeError::UnexpectedType { expected, code } => {
                write!(f, "expected {expected}, found constructor 0x{code:02x}")
            }
            DecodeError::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            DecodeError::InvalidSymbol => f.write_str("symbol is not ASCII"),
            DecodeError::InvalidChar(c) => write!(f, "invalid char 0x{c:x}"),
            DecodeError::InvalidBool(b) => write!(f, "invalid boolean octet 0x{b:02x}"),
            DecodeError::TooDeep => write!(f, "values nested deeper than {}", super::MAX_DEPTH),
            DecodeError::BadSize => f.write_str("compound size or count exceeds the input"),
            DecodeError::SizeMismatch => f.write_str("compound elements do not match its size"),
            DecodeError::OddMapCount(n) => write!(f, "map with an odd element count {n}"),
            DecodeError::TooManyElements => f.write_str("too many zero-width array elements"),
            DecodeError::BadDescriptor => f.write_str("invalid descriptor"),
            DecodeError::UnknownDescriptor => f.write_str("unknown symbolic descriptor"),
            DecodeError::WrongDescriptor {
                expected,
                found: Some(c),
            } => write!(f, "expected {expected}, found descriptor 0x{c:x}"),
            DecodeError::WrongDescriptor {
                expected,
                found: None,
            } => write!(f, "expected {expected}, found an undescribed value"),
            DecodeError::MissingField(field) => write!(f, "mandatory field {field} is absent"),
            DecodeError::InvalidChoice { ty, value } => write!(f, "invalid {ty} {value}"),
            DecodeError::UnexpectedNull => f.write_str("unexpected null"),
            DecodeError::SectionOrder => f.write_str("message sections out of order"),
            DecodeError::UnknownSection(Some(c)) => write!(f, "unknown message section 0x{c:x}"),
            DecodeError::UnknownSection(None) => f.write_str("invalid message section"),
        }
    }
}

impl std::error::Error for DecodeError {}
