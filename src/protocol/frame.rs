//! Frames: `type:u8 channel:u16 size:u32 payload[size] 0xCE`.
//!
//! [`check_frame`] is the cheap "is a whole frame buffered?" step; the writers
//! append whole frames to a caller-provided `Vec<u8>`.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

use super::constants::{FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use super::methods::Method;
use super::properties::{self, BASIC_CLASS_ID};
use super::reader::{put_u16, put_u32, put_u64, DecodeError};

/// What a client sends first: "AMQP" 0 0 9 1.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Bytes of a frame that are not payload: 7 of header, 1 frame-end octet.
pub const FRAME_OVERHEAD: usize = 8;

/// Header of a frame known to be complete.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameHead {
    pub kind: u8,
    pub channel: u16,
    /// Payload size.
    pub size: u32,
}

impl FrameHead {
    /// Header + payload + frame-end octet.
    #[inline]
    pub fn total_len(&self) -> usize {
        7 + self.size as usize + 1
    }

    /// Where the payload lies in the buffer `check_frame` looked at.
    #[inline]
    pub fn payload_range(&self) -> Range<usize> {
        7..7 + self.size as usize
    }
}

/// A frame the connection must be closed for (FRAME_ERROR).
#[derive(Debug, Clone, PartialEq)]
pub enum FrameError {
    /// The octet after the payload was not 0xCE.
    BadFrameEnd(u8),
    /// A frame of type `kind` whose payload `size` is over the negotiated
    /// maximum payload `max` (frame-max minus the 8 octets of overhead), as
    /// RabbitMQ reports it.
    TooLarge { kind: u8, size: u32, max: u32 },
    /// Not a method, header, body or heartbeat frame.
    UnknownType(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadFrameEnd(b) => write!(f, "bad frame end marker 0x{b:02x}"),
            // rabbit_reader:fatal_frame_error, its payload not read: `<<>>`.
            FrameError::TooLarge { kind, size, max } => {
                write!(
                    f,
                    "type {kind}, all octets = <<>>: {{frame_too_large,{size},{max}}}"
                )
            }
            FrameError::UnknownType(t) => write!(f, "unknown frame type {t}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// How far a frame may exceed frame_max, as in RabbitMQ (rabbit_reader's
/// `FRAME_SIZE_FUDGE`): clients that fill a body frame's *payload* up to
/// frame_max (amqpstorm) must not lose their connection.
pub const FRAME_SIZE_FUDGE: u32 = FRAME_OVERHEAD as u32;

/// Looks at the start of `buf`. `Ok(None)`: not a whole frame yet (allocates
/// nothing). `Ok(Some(head))`: a whole frame of `head.total_len()` bytes is
/// there and ends with 0xCE. `frame_max` is the negotiated maximum *total*
/// frame size (header and end octet included), give or take
/// `FRAME_SIZE_FUDGE`; 0 = unlimited. An unknown type
/// or an oversized frame is reported as soon as the 7-byte header is readable.
pub fn check_frame(buf: &[u8], frame_max: u32) -> Result<Option<FrameHead>, FrameError> {
    let Some(h) = buf.get(..7) else {
        return Ok(None);
    };
    let kind = h[0];
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(FrameError::UnknownType(kind));
    }
    let channel = u16::from_be_bytes([h[1], h[2]]);
    let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
    if frame_max != 0 {
        let max = frame_max.saturating_sub(FRAME_OVERHEAD as u32);
        if size > max + FRAME_SIZE_FUDGE {
            return Err(FrameError::TooLarge { kind, size, max });
        }
    }
    let head = FrameHead {
        kind,
        channel,
        size,
    };
    match buf.get(head.total_len() - 1) {
        None => Ok(None),
        Some(&FRAME_END) => Ok(Some(head)),
        Some(&b) => Err(FrameError::BadFrameEnd(b)),
    }
}

/// Starts a frame; returns where the size goes (for [`end_frame`]).
#[inline]
fn begin_frame(out: &mut Vec<u8>, kind: u8, channel: u16) -> usize {
    out.push(kind);
    put_u16(out, channel);
    let at = out.len();
    put_u32(out, 0);
    at
}

/// Back-patches the payload size and appends the frame-end octet.
#[inline]
fn end_frame(out: &mut Vec<u8>, size_at: usize) {
    let size = (out.len() - size_at - 4) as u32;
    out[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    out.push(FRAME_END);
}

/// A whole method frame.
pub fn write_method(out: &mut Vec<u8>, channel: u16, m: &Method) {
    let at = begin_frame(out, FRAME_METHOD, channel);
    m.encode(out);
    end_frame(out, at);
}

/// A basic.deliver method frame, encoded from borrowed fields: the hot path
/// of every delivery (no `Method` value to build, no reference counts taken).
/// Same bytes as `write_method` with a `BasicDeliver`. Short strings longer
/// than 255 bytes cannot occur (they were decoded as short strings).
pub fn write_basic_deliver(
    out: &mut Vec<u8>,
    channel: u16,
    consumer_tag: &[u8],
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
) {
    let at = begin_frame(out, FRAME_METHOD, channel);
    put_u16(out, 60);
    put_u16(out, 60);
    put_shortstr(out, consumer_tag);
    put_u64(out, delivery_tag);
    out.push(redelivered as u8);
    put_shortstr(out, exchange);
    put_shortstr(out, routing_key);
    end_frame(out, at);
}

fn put_shortstr(out: &mut Vec<u8>, s: &[u8]) {
    let s = &s[..s.len().min(255)];
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// A heartbeat frame (channel 0, empty payload).
pub fn write_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// Content header frame: class-id, weight 0, body size, then `raw_properties`
/// (flags + list) verbatim.
pub fn write_content_header(
    out: &mut Vec<u8>,
    channel: u16,
    class_id: u16,
    body_size: u64,
    raw_properties: &[u8],
) {
    let at = begin_frame(out, FRAME_HEADER, channel);
    put_u16(out, class_id);
    put_u16(out, 0);
    put_u64(out, body_size);
    out.extend_from_slice(raw_properties);
    end_frame(out, at);
}

/// Body frames of at most `frame_max` total bytes each (payload
/// `frame_max - 8`; 0 = unlimited); nothing for an empty body.
pub fn write_body(out: &mut Vec<u8>, channel: u16, body: &[u8], frame_max: u32) {
    let chunk = if frame_max == 0 {
        u32::MAX as usize
    } else {
        (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
    };
    for part in body.chunks(chunk) {
        out.reserve(part.len() + FRAME_OVERHEAD);
        out.push(FRAME_BODY);
        put_u16(out, channel);
        put_u32(out, part.len() as u32);
        out.extend_from_slice(part);
        out.push(FRAME_END);
    }
}

/// A parsed content header frame payload.
#[derive(Clone, Debug, PartialEq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub weight: u16,
    pub body_size: u64,
    /// Raw property flags + list, a slice of the input.
    pub properties: Bytes,
}

/// Parses a content header payload. For class `basic` the properties are
/// checked to decode (without allocating); for any other class they are left
/// unchecked: the caller must compare `class_id` with the class of the method
/// the content belongs to (RabbitMQ: UNEXPECTED_FRAME).
pub fn parse_content_header(payload: Bytes) -> Result<ContentHeader, DecodeError> {
    if payload.len() < 14 {
        return Err(DecodeError::BadContentHeader);
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let weight = u16::from_be_bytes([payload[2], payload[3]]);
    let body_size = u64::from_be_bytes(payload[4..12].try_into().expect("8 bytes"));
    // The properties keep the payload's buffer (no extra reference count);
    // the common "no properties" (flags 0) needs no buffer at all.
    let properties = if payload.len() == 14 && payload[12] == 0 && payload[13] == 0 {
        Bytes::from_static(&[0, 0])
    } else {
        let mut p = payload;
        bytes::Buf::advance(&mut p, 12);
        p
    };
    if class_id == BASIC_CLASS_ID {
        properties::validate(&properties)?;
    }
    Ok(ContentHeader {
        class_id,
        weight,
        body_size,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::methods::{BasicAck, ConnectionTuneOk};
    use crate::protocol::BasicProperties;
    use proptest::prelude::*;

    fn method_frame() -> Vec<u8> {
        let mut out = Vec::new();
        let m = Method::from(BasicAck {
            delivery_tag: 7,
            multiple: true,
        });
        write_method(&mut out, 3, &m);
        out
    }

    #[test]
    fn basic_deliver_fast_path_matches_the_codec() {
        for (tag, redelivered, ex, rk) in [
            (1u64, false, &b""[..], &b"q"[..]),
            (u64::MAX, true, &b"amq.topic"[..], &[b'k'; 255][..]),
        ] {
            let m = crate::protocol::methods::BasicDeliver {
                consumer_tag: Bytes::from_static(b"ctag-1"),
                delivery_tag: tag,
                redelivered,
                exchange: Bytes::copy_from_slice(ex),
                routing_key: Bytes::copy_from_slice(rk),
            };
            let mut a = Vec::new();
            write_method(&mut a, 7, &m.into());
            let mut b = Vec::new();
            write_basic_deliver(&mut b, 7, b"ctag-1", tag, redelivered, ex, rk);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn method_frame_layout() {
        let f = method_frame();
        assert_eq!(
            f,
            [1, 0, 3, 0, 0, 0, 13, 0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0xCE]
        );
        let head = check_frame(&f, 4096).unwrap().unwrap();
        assert_eq!(
            head,
            FrameHead {
                kind: 1,
                channel: 3,
                size: 13
            }
        );
        assert_eq!(head.total_len(), f.len());
        let payload = Bytes::from(f.clone()).slice(head.payload_range());
        assert_eq!(
            Method::decode(payload).unwrap(),
            Method::BasicAck(BasicAck {
                delivery_tag: 7,
                multiple: true
            })
        );
    }

    #[test]
    fn check_frame_incomplete_and_complete() {
        let f = method_frame();
        for n in 0..f.len() {
            assert_eq!(check_frame(&f[..n], 0), Ok(None), "prefix {n}");
        }
        // A complete frame followed by the start of another.
        let mut two = f.clone();
        two.extend_from_slice(&f[..5]);
        assert_eq!(check_frame(&two, 0).unwrap().unwrap().total_len(), f.len());
        let mut hb = Vec::new();
        write_heartbeat(&mut hb);
        assert_eq!(hb, [8, 0, 0, 0, 0, 0, 0, 0xCE]);
        assert_eq!(check_frame(&hb, 0).unwrap().unwrap().size, 0);
    }

    #[test]
    fn check_frame_errors() {
        let mut f = method_frame();
        *f.last_mut().unwrap() = 0;
        assert_eq!(check_frame(&f, 0), Err(FrameError::BadFrameEnd(0)));
        assert_eq!(
            FrameError::BadFrameEnd(0).to_string(),
            "bad frame end marker 0x00"
        );
        // Too large: reported from the 7-byte header alone.
        let hdr = [1, 0, 1, 0, 3, 0x0d, 0x40]; // size 200000
        assert_eq!(
            check_frame(&hdr, 131072),
            Err(FrameError::TooLarge {
                kind: 1,
                size: 200000,
                max: 131064
            })
        );
        assert_eq!(
            FrameError::TooLarge {
                kind: 1,
                size: 200000,
                max: 131064
            }
            .to_string(),
            "type 1, all octets = <<>>: {frame_too_large,200000,131064}"
        );
        assert_eq!(check_frame(&hdr, 0), Ok(None));
        // Exactly frame_max total is fine, and so is a payload of frame_max
        // (RabbitMQ's fudge); one byte more is not.
        let mut body = Vec::new();
        write_body(&mut body, 1, &[0u8; 4088], 4096);
        assert_eq!(body.len(), 4096);
        assert!(check_frame(&body, 4096).unwrap().is_some());
        assert!(check_frame(&body, 4088).unwrap().is_some());
        assert_eq!(
            check_frame(&body, 4087),
            Err(FrameError::TooLarge {
                kind: 3,
                size: 4088,
                max: 4079
            })
        );
        assert_eq!(
            check_frame(&[9, 0, 0, 0, 0, 0, 0], 0),
            Err(FrameError::UnknownType(9))
        );
        assert_eq!(
            FrameError::UnknownType(9).to_string(),
            "unknown frame type 9"
        );
    }

    #[test]
    fn write_body_splits() {
        let frame_max = 4096u32;
        let payload_max = frame_max as usize - 8;
        let body: Vec<u8> = (0..3 * payload_max).map(|i| i as u8).collect();
        let mut out = Vec::new();
        write_body(&mut out, 5, &body, frame_max);
        assert_eq!(out.len(), 3 * frame_max as usize);
        let mut rest = &out[..];
        let mut joined = Vec::new();
        while !rest.is_empty() {
            let h = check_frame(rest, frame_max).unwrap().unwrap();
            assert_eq!((h.kind, h.channel, h.size as usize), (3, 5, payload_max));
            joined.extend_from_slice(&rest[h.payload_range()]);
            rest = &rest[h.total_len()..];
        }
        assert_eq!(joined, body);
        // One byte more: a fourth, one-byte frame.
        let mut out = Vec::new();
        write_body(&mut out, 5, &[0u8; 3 * 4088 + 1], frame_max);
        assert_eq!(out.len(), 3 * 4096 + 9);
        // Empty body: nothing.
        let mut out = Vec::new();
        write_body(&mut out, 5, &[], frame_max);
        assert!(out.is_empty());
        // Unlimited.
        write_body(&mut out, 5, &[1, 2, 3], 0);
        assert_eq!(out, [3, 0, 5, 0, 0, 0, 3, 1, 2, 3, 0xCE]);
    }

    #[test]
    fn content_header_round_trip() {
        let props = BasicProperties {
            delivery_mode: Some(2),
            headers: Some(
                [("a", crate::protocol::FieldValue::Bool(true))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        };
        let raw = props.to_bytes();
        let mut out = Vec::new();
        write_content_header(&mut out, 9, 60, 12345, &raw);
        let h = check_frame(&out, 0).unwrap().unwrap();
        assert_eq!((h.kind, h.channel), (2, 9));
        let payload = Bytes::from(out.clone()).slice(h.payload_range());
        let ch = parse_content_header(payload).unwrap();
        assert_eq!(
            ch,
            ContentHeader {
                class_id: 60,
                weight: 0,
                body_size: 12345,
                properties: raw.clone()
            }
        );
        assert_eq!(BasicProperties::decode(ch.properties).unwrap(), props);
    }

    #[test]
    fn content_header_errors() {
        assert_eq!(
            parse_content_header(Bytes::from_static(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
            Err(DecodeError::BadContentHeader)
        );
        // delivery-mode flag with no value.
        let p = Bytes::from_static(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0]);
        assert_eq!(parse_content_header(p), Err(DecodeError::Truncated));
        // headers table with an unknown field type.
        let p = Bytes::from_static(&[
            0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 0, 0, 0, 0, 3, 1, b'a', b'?',
        ]);
        assert_eq!(
            parse_content_header(p),
            Err(DecodeError::UnknownFieldType(b'?'))
        );
        // Tune-ok is fine as a sanity check of the import.
        let _ = ConnectionTuneOk::default();
    }

    proptest! {
        #[test]
        fn check_frame_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            frame_max in prop_oneof![Just(0u32), Just(1), Just(8), Just(9), any::<u32>()],
        ) {
            if let Ok(Some(h)) = check_frame(&bytes, frame_max) {
                prop_assert!(h.total_len() <= bytes.len());
                prop_assert_eq!(bytes[h.total_len() - 1], 0xCE);
            }
        }

        #[test]
        fn parse_content_header_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = parse_content_header(Bytes::from(bytes.clone()));
            // With a valid prefix so the properties get parsed.
            let mut p = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            p.extend_from_slice(&bytes);
            let p = Bytes::from(p);
            let parsed = parse_content_header(p.clone());
            let decoded = BasicProperties::decode(p.slice(12..));
            prop_assert_eq!(parsed.is_ok(), decoded.is_ok() && p.len() >= 14);
        }
    }
}
