//! The arguments a stream understands: its retention and segment size at
//! declaration (`x-max-length-bytes`, `x-max-age`,
//! `x-stream-max-segment-size-bytes`), and a consumer's starting point
//! (`x-stream-offset`), parsed as RabbitMQ's `rabbit_stream_queue` and
//! `rabbit_amqqueue:check_max_age` parse them.

use crate::protocol::{FieldTable, FieldValue};

/// A stream's settings, from its declaration arguments (checked before by
/// `queue_args::validate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamArgs {
    /// `x-max-length-bytes` (0: no limit).
    pub max_bytes: u64,
    /// `x-max-age` in ms (0: no limit).
    pub max_age_ms: u64,
    /// `x-stream-max-segment-size-bytes` (0: the default).
    pub segment_size: u64,
}

impl StreamArgs {
    pub fn parse(args: &FieldTable) -> StreamArgs {
        let int = |k: &str| {
            args.get(k)
                .and_then(FieldValue::as_i64)
                .map_or(0, |n| n.max(0) as u64)
        };
        StreamArgs {
            max_bytes: int("x-max-length-bytes"),
            max_age_ms: args
                .get("x-max-age")
                .and_then(FieldValue::as_str)
                .and_then(|s| parse_max_age(s).ok())
                .unwrap_or(0),
            segment_size: int("x-stream-max-segment-size-bytes"),
        }
    }
}

/// `check_max_age`: digits then a unit (`Y` 365 days, `M` 30 days, `D`,
/// `h`, `m`, `s`), in ms. RabbitMQ 3.13 crashes on a value without digits;
/// newer versions refuse it, as here (`invalid_max_age`).
pub fn parse_max_age(s: &str) -> Result<u64, &'static str> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (value, unit) = s.split_at(digits);
    let value: u64 = value.parse().map_err(|_| "invalid_max_age")?;
    if value == 0 {
        return Err("invalid_max_age");
    }
    let secs: u64 = match unit {
        "Y" => 365 * 86_400,
        "M" => 30 * 86_400,
        "D" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err("invalid_max_age"),
    };
    value.checked_mul(secs * 1000).ok_or("invalid_max_age")
}

/// Where a new consumer starts (`x-stream-offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first message kept.
    First,
    /// The first message of the newest chunk.
    Last,
    /// The next message written (the default).
    Next,
    /// This offset (clamped to what is kept).
    Offset(u64),
    /// The first chunk written at or after this time (ms since the epoch).
    Timestamp(u64),
}

impl OffsetSpec {
    /// RabbitMQ's `parse_offset_arg`: `first`, `last`, `next`, an integer
    /// offset, an AMQP timestamp (seconds), or an interval before now
    /// (`"1h"`, `"30m"`, `"7D"`). `now_ms`: the wall clock. The error is
    /// the value as RabbitMQ prints it in `{invalid_offset_arg, V}`.
    pub fn parse(v: Option<&FieldValue>, now_ms: u64) -> Result<OffsetSpec, String> {
        let Some(v) = v else {
            return Ok(OffsetSpec::Next);
        };
        match v {
            FieldValue::LongStr(b) => match &b[..] {
                b"first" => Ok(OffsetSpec::First),
                b"last" => Ok(OffsetSpec::Last),
                b"next" => Ok(OffsetSpec::Next),
                other => {
                    let s = String::from_utf8_lossy(other);
                    match parse_max_age(&s) {
                        Ok(ms) => Ok(OffsetSpec::Timestamp(now_ms.saturating_sub(ms))),
                        Err(_) => Err(format!("{{longstr,<<\"{s}\">>}}")),
                    }
                }
            },
            FieldValue::Timestamp(secs) => Ok(OffsetSpec::Timestamp(secs.saturating_mul(1000))),
            v => match v.as_i64() {
                Some(n) => Ok(OffsetSpec::Offset(n.max(0) as u64)),
                None => Err(format!("{{{},{v:?}}}", v.type_name())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn s(v: &'static str) -> FieldValue {
        FieldValue::LongStr(Bytes::from_static(v.as_bytes()))
    }

    #[test]
    fn max_age_units() {
        assert_eq!(parse_max_age("7D"), Ok(7 * 86_400_000));
        assert_eq!(parse_max_age("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_max_age("30m"), Ok(1_800_000));
        assert_eq!(parse_max_age("10s"), Ok(10_000));
        assert_eq!(parse_max_age("1Y"), Ok(365 * 86_400_000));
        assert_eq!(parse_max_age("2M"), Ok(60 * 86_400_000));
        assert!(parse_max_age("bogus").is_err());
        assert!(parse_max_age("10x").is_err());
        assert!(parse_max_age("10").is_err());
        assert!(parse_max_age("").is_err());
        assert!(parse_max_age("0D").is_err());
        assert!(parse_max_age("7d").is_err());
        assert!(parse_max_age("1h30m").is_err());
        assert!(parse_max_age("99999999999999999999Y").is_err());
    }

    #[test]
    fn offset_specs() {
        let p = |v: FieldValue| OffsetSpec::parse(Some(&v), 10_000_000);
        assert_eq!(OffsetSpec::parse(None, 0), Ok(OffsetSpec::Next));
        assert_eq!(p(s("first")), Ok(OffsetSpec::First));
        assert_eq!(p(s("last")), Ok(OffsetSpec::Last));
        assert_eq!(p(s("next")), Ok(OffsetSpec::Next));
        assert_eq!(p(FieldValue::I64(42)), Ok(OffsetSpec::Offset(42)));
        assert_eq!(p(FieldValue::I8(3)), Ok(OffsetSpec::Offset(3)));
        assert_eq!(p(FieldValue::I64(-5)), Ok(OffsetSpec::Offset(0)));
        assert_eq!(p(FieldValue::Timestamp(7)), Ok(OffsetSpec::Timestamp(7000)));
        assert_eq!(
            p(s("1h")),
            Ok(OffsetSpec::Timestamp(10_000_000 - 3_600_000))
        );
        assert!(p(s("bogus")).is_err());
        assert!(p(FieldValue::Bool(true)).is_err());
    }

    #[test]
    fn stream_args() {
        let mut t = FieldTable::new();
        t.insert("x-max-length-bytes", FieldValue::I64(1000));
        t.insert("x-max-age", s("10s"));
        t.insert("x-stream-max-segment-size-bytes", FieldValue::I32(500));
        assert_eq!(
            StreamArgs::parse(&t),
            StreamArgs {
                max_bytes: 1000,
                max_age_ms: 10_000,
                segment_size: 500
            }
        );
    }
}
