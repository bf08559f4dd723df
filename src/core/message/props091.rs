//! AMQP 0-9-1 content-header properties as the core reads them: the decoding
//! of [`MessageMeta`] (once per message, when it is built) and the few
//! readers of the raw properties that the core still needs.
//!
//! The hot path reads only `MessageMeta`. What still reads the raw properties
//! here or elsewhere in core runs only for messages that use the feature:
//! - [`headers`]: the headers exchange (`routing.rs`) and dead-lettering's
//!   routing keys (`queue/dead_letter.rs`);
//! - `queue/dead_letter.rs` decodes and re-encodes the properties to add
//!   `x-death` (a dead-lettered message is a new message);
//! - `sender_selected.rs` walks the headers table for `CC`/`BCC` (one flag
//!   test for a message without headers);
//! - the publish-time 406 for an invalid `expiration` ([`check_expiration`]),
//!   which quotes the value.

use super::{Message, MessageMeta};
use crate::core::error::CoreError;
use crate::protocol::properties::{
    raw_core_fields, raw_expiration, raw_has_headers, split_flags, PROP_EXPIRATION,
};
use crate::protocol::{BasicProperties, FieldTable};
use bytes::Bytes;

/// RabbitMQ's upper bound for TTLs and expiries: ten years in ms
/// (`rabbit_misc:check_expiry`).
pub const MAX_EXPIRY: i64 = 315_360_000_000;

impl MessageMeta {
    /// Decodes what the core needs from raw 0-9-1 properties (flags + list):
    /// one walk of the list up to `expiration`, no allocation. Delivery mode 2
    /// is persistent; an `expiration` that does not parse is an invalid TTL;
    /// malformed properties read as absent (as the `raw_*` accessors do).
    #[inline]
    pub fn from_amqp091(properties: &[u8]) -> MessageMeta {
        let f = raw_core_fields(properties);
        let ttl = match f.expiration {
            None => Ok(None),
            Some(v) => expiration_ms(v).map(Some).map_err(|_| ()),
        };
        MessageMeta::new(f.delivery_mode == Some(2), f.priority, ttl, f.has_headers)
    }
}

impl Message {
    /// basic.publish refuses a message whose `expiration` does not parse (406,
    /// RabbitMQ's `check_expiration_header`): [`check_expiration`], read from
    /// `meta` (decoded from these properties).
    #[inline]
    pub fn check_expiration(&self, meta: MessageMeta) -> Result<(), CoreError> {
        if !meta.ttl_invalid() {
            return Ok(());
        }
        invalid_expiration(&self.properties())
    }
}

/// The `headers` table of raw properties, decoded (allocates), None when the
/// message has none or the properties do not decode.
pub fn headers(raw: &[u8]) -> Option<FieldTable> {
    if !raw_has_headers(raw) {
        return None;
    }
    BasicProperties::decode(Bytes::copy_from_slice(raw))
        .ok()
        .and_then(|p| p.headers)
}

/// Whether raw properties carry `expiration` (a flag test: no parsing).
#[inline]
pub fn has_expiration(raw: &[u8]) -> bool {
    split_flags(raw).is_some_and(|(f, _)| f & (1 << (15 - PROP_EXPIRATION)) != 0)
}

/// Why an `expiration` value is refused (see `parse_expiration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BadExpiration {
    NoInteger,
    /// Characters after the digits, from this byte offset.
    Leftover(usize),
    /// More digits than an i64 holds.
    Overflow,
    Negative(i64),
    TooLarge(i64),
}

/// An `expiration` value as RabbitMQ reads it (`string:to_integer`, then
/// `check_expiry`), without allocating. Digits and signs are ASCII, so the
/// offsets are the same in the bytes and in their lossy UTF-8 reading.
fn expiration_ms(v: &[u8]) -> Result<u64, BadExpiration> {
    let (sign, digits_at) = match v.first() {
        Some(b'-') => (-1i64, 1),
        Some(b'+') => (1, 1),
        _ => (1, 0),
    };
    let rest = &v[digits_at..];
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    if end == 0 {
        return Err(BadExpiration::NoInteger);
    }
    if end < rest.len() {
        return Err(BadExpiration::Leftover(digits_at + end));
    }
    let mut n: i64 = 0;
    for &d in rest {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add((d - b'0') as i64))
            .ok_or(BadExpiration::Overflow)?;
    }
    let n = sign * n;
    if n < 0 {
        Err(BadExpiration::Negative(n))
    } else if n > MAX_EXPIRY {
        Err(BadExpiration::TooLarge(n))
    } else {
        Ok(n as u64)
    }
}

/// An `expiration` value as RabbitMQ reads it (`rabbit_basic:parse_expiration`:
/// `string:to_integer`, then `check_expiry`); the error is RabbitMQ's term.
pub fn parse_expiration(v: &[u8]) -> Result<u64, String> {
    expiration_ms(v).map_err(|e| {
        let s = String::from_utf8_lossy(v);
        match e {
            BadExpiration::NoInteger => "no_integer".to_string(),
            BadExpiration::Leftover(at) => format!("{{leftover_string,\"{}\"}}", &s[at..]),
            BadExpiration::Overflow => format!("{{value_too_large,{}}}", &s),
            BadExpiration::Negative(n) => format!("{{value_negative,{}}}", n),
            BadExpiration::TooLarge(n) => format!("{{value_too_large,{}}}", n),
        }
    })
}

/// basic.publish refuses a message whose `expiration` does not parse (406,
/// RabbitMQ's `check_expiration_header`). One flag test when it has none.
#[inline]
pub fn check_expiration(raw: &[u8]) -> Result<(), CoreError> {
    if !has_expiration(raw) {
        return Ok(());
    }
    invalid_expiration(raw)
}

#[cold]
fn invalid_expiration(raw: &[u8]) -> Result<(), CoreError> {
    let Some(v) = raw_expiration(raw) else {
        return Ok(());
    };
    parse_expiration(v).map(|_| ()).map_err(|e| {
        CoreError::precondition(format!(
            "invalid expiration '{}': {}",
            String::from_utf8_lossy(v),
            e
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::table::FieldValue;

    fn raw(p: BasicProperties) -> Bytes {
        p.to_bytes()
    }

    #[test]
    fn meta_from_properties() {
        let m = MessageMeta::from_amqp091(&raw(BasicProperties::default()));
        assert_eq!(m, MessageMeta::NONE);
        let m = MessageMeta::from_amqp091(&raw(BasicProperties {
            content_type: Some(Bytes::from_static(b"text/plain")),
            headers: Some([("h", FieldValue::I32(1))].into_iter().collect()),
            delivery_mode: Some(2),
            priority: Some(7),
            expiration: Some(Bytes::from_static(b"60000")),
            ..Default::default()
        }));
        assert!(m.persistent() && m.has_headers());
        assert_eq!(
            (m.priority(), m.ttl(), m.ttl_invalid()),
            (Some(7), Some(60000), false)
        );
        let m = MessageMeta::from_amqp091(&raw(BasicProperties {
            delivery_mode: Some(1),
            expiration: Some(Bytes::from_static(b"soon")),
            ..Default::default()
        }));
        assert!(!m.persistent() && !m.has_headers());
        assert_eq!((m.priority(), m.ttl(), m.ttl_invalid()), (None, None, true));
        // Malformed: the expiration runs past the end, so it reads as absent.
        let m = MessageMeta::from_amqp091(&[0x01, 0x00, 9, b'1']);
        assert_eq!(m, MessageMeta::NONE);
    }

    #[test]
    fn publish_check_reads_meta() {
        let msg = |e: &'static [u8]| {
            Message::from_amqp091(
                Bytes::new(),
                Bytes::new(),
                raw(BasicProperties {
                    expiration: Some(Bytes::from_static(e)),
                    ..Default::default()
                }),
                Bytes::new(),
            )
        };
        for e in [
            &b"0"[..],
            b"100",
            b"+7",
            b"x",
            b"",
            b"-5",
            b"10x",
            b"315360000001",
        ] {
            let m = msg(e);
            let meta = MessageMeta::from_amqp091(m.properties());
            assert_eq!(
                m.check_expiration(meta).map_err(|e| e.to_string()),
                check_expiration(m.properties()).map_err(|e| e.to_string())
            );
            assert_eq!(meta.ttl(), parse_expiration(e).ok());
        }
        let m = msg(b"x");
        let meta = MessageMeta::from_amqp091(m.properties());
        assert_eq!(
            m.check_expiration(meta).unwrap_err().to_string(),
            "PRECONDITION_FAILED - invalid expiration 'x': no_integer"
        );
    }

    #[test]
    fn expiration_errors_as_rabbitmq() {
        assert_eq!(parse_expiration(b"-"), Err("no_integer".into()));
        assert_eq!(
            parse_expiration(b"99999999999999999999"),
            Err("{value_too_large,99999999999999999999}".into())
        );
        assert_eq!(
            parse_expiration(b"-99999999999999999999"),
            Err("{value_too_large,-99999999999999999999}".into())
        );
        assert_eq!(parse_expiration(b"-0"), Ok(0));
        assert_eq!(
            parse_expiration(b"1\xff2"),
            Err("{leftover_string,\"\u{fffd}2\"}".into())
        );
    }
}
