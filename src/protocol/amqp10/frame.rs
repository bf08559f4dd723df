//! AMQP 1.0 frames (transport 2.3): `size:u32 doff:u8 type:u8 channel:u16`,
//! an extended header of `doff * 4 - 8` bytes (ignored), then the body: a
//! performative (type 0) or a SASL frame (type 1), and for a transfer its
//! payload. An empty body is a heartbeat.
//!
//! [`check_frame`] is the cheap "is a whole frame buffered?" step and
//! allocates nothing; [`read_frame`] decodes one whole frame, the payload a
//! slice of it. The writers append whole frames to a caller's `Vec<u8>`.

use std::fmt;

use bytes::Bytes;

use super::decode::Decoder;
use super::error::DecodeError;
use super::types::{condition, Performative, SaslFrame};

/// What a client sends first for AMQP 1.0: "AMQP" 0 1 0 0.
pub const AMQP_HEADER: &[u8; 8] = b"AMQP\x00\x01\x00\x00";
/// What a client sends first for a SASL layer: "AMQP" 3 1 0 0.
pub const SASL_HEADER: &[u8; 8] = b"AMQP\x03\x01\x00\x00";
/// The fixed frame header: size, doff, type, channel.
pub const FRAME_HEADER_LEN: usize = 8;

/// The frame's type octet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// 0x00: a performative.
    Amqp,
    /// 0x01: a SASL frame.
    Sasl,
}

impl FrameKind {
    pub fn from_octet(t: u8) -> Option<FrameKind> {
        match t {
            0 => Some(FrameKind::Amqp),
            1 => Some(FrameKind::Sasl),
            _ => None,
        }
    }

    pub fn octet(self) -> u8 {
        match self {
            FrameKind::Amqp => 0,
            FrameKind::Sasl => 1,
        }
    }
}

/// A frame body.
#[derive(Clone, Debug, PartialEq)]
pub enum FrameBody {
    Amqp(Performative),
    Sasl(SaslFrame),
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub channel: u16,
    pub kind: FrameKind,
    /// `None` for an empty frame (a heartbeat).
    pub body: Option<FrameBody>,
    /// What follows the performative: a transfer's message bytes (a slice
    /// of the frame, no copy); empty for other frames of a well-behaved peer.
    pub payload: Bytes,
}

/// A frame the connection must be closed for.
#[derive(Clone, Debug, PartialEq)]
pub enum FrameError {
    /// A size below the 8-byte header.
    TooSmall(u32),
    /// A size over the negotiated max-frame-size.
    TooLarge { size: u32, max: u32 },
    /// A data offset below 2 words, or past the frame's end.
    BadDataOffset { doff: u8, size: u32 },
    /// A type other than AMQP (0) or SASL (1).
    UnknownType(u8),
    /// A SASL frame with no body.
    EmptySasl,
    /// The body does not decode.
    Decode(DecodeError),
}

impl FrameError {
    /// The condition to close the connection with.
    pub fn condition(&self) -> &'static str {
        match self {
            FrameError::Decode(e) => e.condition(),
            _ => condition::connection::FRAMING_ERROR,
        }
    }

    /// The text of the close's error description.
    pub fn description(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooSmall(s) => write!(f, "frame size {s} is below the 8-byte header"),
            // RabbitMQ's words (rabbit_amqp_reader).
            FrameError::TooLarge { size, max } => write!(
                f,
                "frame size ({size} bytes) > maximum frame size ({max} bytes)"
            ),
            FrameError::BadDataOffset { doff, size } => {
                write!(f, "invalid data offset {doff} for frame size {size}")
            }
            FrameError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            FrameError::EmptySasl => f.write_str("empty SASL frame"),
            FrameError::Decode(e) => write!(f, "frame body: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<DecodeError> for FrameError {
    fn from(e: DecodeError) -> FrameError {
        FrameError::Decode(e)
    }
}

/// The header fields of a frame, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    size: u32,
    doff: u8,
    kind: FrameKind,
    channel: u16,
}

fn head(buf: &[u8; 8], max_frame_size: u32) -> Result<Head, FrameError> {
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let doff = buf[4];
    if size < FRAME_HEADER_LEN as u32 {
        return Err(FrameError::TooSmall(size));
    }
    if size > max_frame_size {
        return Err(FrameError::TooLarge {
            size,
            max: max_frame_size,
        });
    }
    if doff < 2 || doff as u32 * 4 > size {
        return Err(FrameError::BadDataOffset { doff, size });
    }
    let kind = FrameKind::from_octet(buf[5]).ok_or(FrameError::UnknownType(buf[5]))?;
    let channel = u16::from_be_bytes([buf[6], buf[7]]);
    Ok(Head {
        size,
        doff,
        kind,
        channel,
    })
}

/// `Ok(Some(len))` when `buf` starts with a whole frame of `len` bytes,
/// `Ok(None)` when more bytes are needed. A bad header is reported as soon
/// as its 8 bytes are in, before the body arrives. Allocates nothing.
#[inline]
pub fn check_frame(buf: &[u8], max_frame_size: u32) -> Result<Option<usize>, FrameError> {
    let Some(h) = buf.first_chunk::<8>() else {
        return Ok(None);
    };
    let h = head(h, max_frame_size)?;
    let len = h.size as usize;
    Ok((buf.len() >= len).then_some(len))
}

/// Decodes one whole frame (exactly the `len` bytes [`check_frame`]
/// reported; the size is not checked against a limit again). The payload
/// and every string in the body are slices of `frame`.
pub fn read_frame(frame: Bytes) -> Result<Frame, FrameError> {
    let h = frame
        .first_chunk::<8>()
        .ok_or(FrameError::Decode(DecodeError::Truncated))?;
    let h = head(h, u32::MAX)?;
    if h.size as usize != frame.len() {
        return Err(FrameError::Decode(DecodeError::Truncated));
    }
    let body = frame.slice(h.doff as usize * 4..);
    if body.is_empty() {
        if h.kind == FrameKind::Sasl {
            return Err(FrameError::EmptySasl);
        }
        return Ok(Frame {
            channel: h.channel,
            kind: h.kind,
            body: None,
            payload: body,
        });
    }
    let mut d = Decoder::new(body);
    let body = match h.kind {
        FrameKind::Amqp => FrameBody::Amqp(Performative::decode(&mut d)?),
        FrameKind::Sasl => FrameBody::Sasl(SaslFrame::decode(&mut d)?),
    };
    Ok(Frame {
        channel: h.channel,
        kind: h.kind,
        body: Some(body),
        payload: d.rest(),
    })
}

/// Appends a frame header for `kind` on `channel`; returns where the frame
/// starts, for [`end_frame`].
#[inline]
fn begin_frame(out: &mut Vec<u8>, kind: FrameKind, channel: u16) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, 2, kind.octet()]);
    out.extend_from_slice(&channel.to_be_bytes());
    at
}

#[inline]
fn end_frame(out: &mut [u8], at: usize) {
    let size = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends an AMQP frame: `performative` on `channel`, then `payload`
/// (a transfer's message bytes; empty otherwise).
pub fn write_frame(out: &mut Vec<u8>, channel: u16, performative: &Performative, payload: &[u8]) {
    let at = begin_frame(out, FrameKind::Amqp, channel);
    performative.encode(out);
    out.extend_from_slice(payload);
    end_frame(out, at);
}

/// Appends a transfer frame without building a [`Performative`]: the same
/// bytes as `write_frame` of `Performative::Transfer`.
pub fn write_transfer(out: &mut Vec<u8>, channel: u16, transfer: &super::Transfer, payload: &[u8]) {
    let at = begin_frame(out, FrameKind::Amqp, channel);
    transfer.encode(out);
    out.extend_from_slice(payload);
    end_frame(out, at);
}

/// Appends a SASL frame (channel 0).
pub fn write_sasl_frame(out: &mut Vec<u8>, frame: &SaslFrame) {
    let at = begin_frame(out, FrameKind::Sasl, 0);
    frame.encode(out);
    end_frame(out, at);
}

/// Appends an empty AMQP frame on channel 0 (a heartbeat).
pub fn write_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 0, 8, 2, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::amqp10::*;

    fn frame_of(p: &Performative, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, channel, p, payload);
        out
    }

    #[test]
    fn every_performative_frames_and_reads_back() {
        for p in Performative::samples() {
            let bytes = frame_of(&p, 7, b"");
            assert_eq!(check_frame(&bytes, u32::MAX), Ok(Some(bytes.len())));
            for cut in 0..bytes.len() {
                assert_eq!(check_frame(&bytes[..cut], u32::MAX), Ok(None));
            }
            let f = read_frame(Bytes::from(bytes)).unwrap();
            assert_eq!((f.channel, f.kind), (7, FrameKind::Amqp));
            assert_eq!(f.body, Some(FrameBody::Amqp(p)));
            assert!(f.payload.is_empty());
        }
        for s in SaslFrame::samples() {
            let mut out = Vec::new();
            write_sasl_frame(&mut out, &s);
            let f = read_frame(Bytes::from(out)).unwrap();
            assert_eq!((f.channel, f.kind), (0, FrameKind::Sasl));
            assert_eq!(f.body, Some(FrameBody::Sasl(s)));
        }
    }

    #[test]
    fn transfer_payload_is_the_rest_zero_copy() {
        let t = Transfer {
            handle: 1,
            delivery_id: Some(5),
            delivery_tag: Some(Bytes::from_static(b"t")),
            ..Default::default()
        };
        let bytes = Bytes::from(frame_of(&t.clone().into(), 3, b"hello"));
        let mut same = Vec::new();
        write_transfer(&mut same, 3, &t, b"hello");
        assert_eq!(same, bytes);
        let f = read_frame(bytes.clone()).unwrap();
        assert_eq!(f.body, Some(FrameBody::Amqp(Performative::Transfer(t))));
        assert_eq!(&f.payload[..], b"hello");
        let base = bytes.as_ptr() as usize;
        assert_eq!(f.payload.as_ptr() as usize, base + bytes.len() - 5);
    }

    #[test]
    fn heartbeat_and_extended_header() {
        let mut hb = Vec::new();
        write_heartbeat(&mut hb);
        assert_eq!(check_frame(&hb, 512), Ok(Some(8)));
        let f = read_frame(Bytes::from(hb)).unwrap();
        assert_eq!((f.body, f.channel), (None, 0));
        // doff 3: 4 bytes of extended header are skipped.
        let mut ext = vec![0, 0, 0, 0, 3, 0, 0, 1, 9, 9, 9, 9];
        Performative::End(End::default()).encode(&mut ext);
        let n = ext.len() as u32;
        ext[..4].copy_from_slice(&n.to_be_bytes());
        let f = read_frame(Bytes::from(ext)).unwrap();
        assert_eq!(
            f.body,
            Some(FrameBody::Amqp(Performative::End(End::default())))
        );
    }

    #[test]
    fn bad_headers() {
        let cases: [(&[u8], FrameError); 5] = [
            (&[0, 0, 0, 7, 2, 0, 0, 0], FrameError::TooSmall(7)),
            (
                &[0, 0, 2, 1, 2, 0, 0, 0],
                FrameError::TooLarge {
                    size: 513,
                    max: 512,
                },
            ),
            (
                &[0, 0, 0, 8, 1, 0, 0, 0],
                FrameError::BadDataOffset { doff: 1, size: 8 },
            ),
            (
                &[0, 0, 0, 8, 3, 0, 0, 0],
                FrameError::BadDataOffset { doff: 3, size: 8 },
            ),
            (&[0, 0, 0, 8, 2, 2, 0, 0], FrameError::UnknownType(2)),
        ];
        assert_eq!(
            cases[1].1.description(),
            "frame size (513 bytes) > maximum frame size (512 bytes)"
        );
        for (bytes, err) in cases {
            assert_eq!(check_frame(bytes, 512), Err(err.clone()));
            assert_eq!(err.condition(), condition::connection::FRAMING_ERROR);
            assert!(!err.description().is_empty());
        }
        assert_eq!(
            read_frame(Bytes::from_static(&[0, 0, 0, 8, 2, 1, 0, 0])),
            Err(FrameError::EmptySasl)
        );
        // A body that is not a performative.
        let e = read_frame(Bytes::from_static(&[0, 0, 0, 9, 2, 0, 0, 0, 0x40])).unwrap_err();
        assert_eq!(e.condition(), condition::DECODE_ERROR);
    }

    /// The Open frame fe2o3-amqp's transport test expects on the wire
    /// (container "1234", hostname "127.0.0.1", max-frame-size 1000,
    /// channel-max 9, idle-time-out 5).
    #[test]
    fn open_frame_as_fe2o3_amqp_sends_it() {
        let wire: &[u8] = &[
            0x00, 0x00, 0x00, 0x29, 0x02, 0x00, 0x00, 0x00, 0x00, 0x53, 0x10, 0xc0, 0x1c, 0x05,
            0xa1, 0x04, b'1', b'2', b'3', b'4', 0xa1, 0x09, b'1', b'2', b'7', b'.', b'0', b'.',
            b'0', b'.', b'1', 0x70, 0x00, 0x00, 0x03, 0xe8, 0x60, 0x00, 0x09, 0x52, 0x05,
        ];
        let open = Open {
            container_id: Str::from_static("1234"),
            hostname: Some(Str::from_static("127.0.0.1")),
            max_frame_size: 1000,
            channel_max: 9,
            idle_time_out: Some(5),
            ..Default::default()
        };
        assert_eq!(frame_of(&open.clone().into(), 0, b""), wire);
        let f = read_frame(Bytes::from_static(wire)).unwrap();
        assert_eq!(f.body, Some(FrameBody::Amqp(Performative::Open(open))));
    }

    /// SASL frames as ActiveMQ Artemis sends them (from a client library's
    /// recorded exchange): mechanisms [PLAIN, ANONYMOUS], then outcome ok.
    #[test]
    fn sasl_frames_from_a_broker() {
        let mechanisms: &[u8] = &[
            0x00, 0x53, 0x40, 0xc0, 0x15, 0x01, 0xe0, 0x12, 0x02, 0xa3, 0x05, b'P', b'L', b'A',
            b'I', b'N', 0x09, b'A', b'N', b'O', b'N', b'Y', b'M', b'O', b'U', b'S',
        ];
        let m = SaslFrame::decode(&mut Decoder::new(Bytes::from_static(mechanisms))).unwrap();
        let want = SaslMechanisms {
            sasl_server_mechanisms: vec![
                Symbol::from_static("PLAIN"),
                Symbol::from_static("ANONYMOUS"),
            ],
        };
        assert_eq!(m, SaslFrame::SaslMechanisms(want.clone()));
        let mut out = Vec::new();
        want.encode(&mut out);
        assert_eq!(out, mechanisms);
        let outcome: &[u8] = &[0x00, 0x53, 0x44, 0xc0, 0x03, 0x01, 0x50, 0x00];
        let o = SaslFrame::decode(&mut Decoder::new(Bytes::from_static(outcome))).unwrap();
        assert_eq!(
            o,
            SaslFrame::SaslOutcome(SaslOutcome {
                code: SaslCode::Ok,
                additional_data: None
            })
        );
        // sasl-init as list32: PLAIN, a response, a hostname.
        let mut init = vec![0x00, 0x53, 0x41, 0xd0, 0, 0, 0, 0x1a, 0, 0, 0, 3, 0xa3, 5];
        init.extend_from_slice(b"PLAIN");
        init.extend_from_slice(&[0xa0, 0x07, 0, b'u', b's', b'r', 0, b'p', b'w', 0xa1, 0x04]);
        init.extend_from_slice(b"host");
        let i = SaslFrame::decode(&mut Decoder::new(Bytes::from(init))).unwrap();
        let SaslFrame::SaslInit(i) = i else {
            panic!("{i:?}")
        };
        assert_eq!(i.mechanism, "PLAIN");
        assert_eq!(i.initial_response.as_deref(), Some(&b"\0usr\0pw"[..]));
        assert_eq!(i.hostname.unwrap(), "host");
    }

    /// An Open as ActiveMQ Artemis sends it: explicit channel-max 65535,
    /// idle-time-out, offered capabilities, properties.
    #[test]
    fn open_with_every_kind_of_field() {
        let mut b = vec![0x00, 0x53, 0x10, 0xc0, 0, 0x0a, 0xa1, 0x08];
        b.extend_from_slice(b"NetinAMQ");
        b.extend_from_slice(&[
            0x40, 0x70, 0, 2, 0, 0, 0x60, 0xff, 0xff, 0x70, 0, 0, 0x75, 0x30,
        ]);
        b.extend_from_slice(&[0x40, 0x40, 0xe0, 0x14, 0x02, 0xa3, 0x07]);
        b.extend_from_slice(b"SHARED1");
        b.push(0x09);
        b.extend_from_slice(b"ANONYMOUS");
        b.extend_from_slice(&[0x40, 0xc1, 0x10, 0x02, 0xa3, 0x07]);
        b.extend_from_slice(b"product");
        b.extend_from_slice(&[0xa1, 0x04]);
        b.extend_from_slice(b"amq1");
        b[4] = (b.len() - 5) as u8;
        let Performative::Open(o) =
            Performative::decode(&mut Decoder::new(Bytes::from(b))).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.container_id, "NetinAMQ");
        assert_eq!(
            (o.hostname, o.max_frame_size, o.channel_max),
            (None, 131072, 65535)
        );
        assert_eq!(o.idle_time_out, Some(30000));
        assert_eq!(o.offered_capabilities.len(), 2);
        let props = o.properties.unwrap();
        assert_eq!(props.get("product").and_then(Value::as_str), Some("amq1"));
    }
}
