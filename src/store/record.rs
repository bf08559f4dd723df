//! The records of the message store and how they are laid out on disk.
//!
//! Everything is little-endian. A segment file is a 16-byte header followed by
//! frames:
//!
//! ```text
//! segment header:  "WRNSEG01" (8 bytes) | segment number u64
//! frame:           len u32 | crc u32 | type u8 | body (len bytes)
//! ```
//!
//! `len` is the length of the body alone (the frame is `FRAME_HEADER_LEN + len`
//! bytes), and `crc` is the CRC-32 (IEEE, as computed by `crc32fast`) of the type
//! byte followed by the body, so a flipped type byte is caught like a flipped
//! body byte. Bodies by type:
//!
//! ```text
//! 1 Publish:    queue_id u64 | seq u64 | exchange_len u16 | routing_key_len u16
//!               | properties_len u32 | exchange | routing_key | properties | body
//!               (the message body is whatever follows the properties)
//! 2 Acks:       queue_id u64 | count u32 | seq_0 varint | (count - 1) x delta varint
//!               (seqs ascending, each delta = seq_i - seq_(i-1); varints are
//!               LEB128, so an ack of a run of consecutive messages costs one
//!               byte each; the body ends exactly after the last varint)
//! 3 QueueGone:  queue_id u64 | up_to_seq u64
//!               (every message of the queue with seq <= up_to_seq is dead: a
//!               purge; `ALL_SEQS` = u64::MAX for a deleted queue)
//! 4 Publish with expiry: queue_id u64 | seq u64 | expires_at u64 | then as 1
//!               from exchange_len on (a message with a TTL: `expires_at` is
//!               its expiry, ms since the Unix epoch, so it keeps it across a
//!               restart; written only when there is one, so type 1 stays
//!               what every message without a TTL costs)
//! ```
//!
//! Decoding never panics and never trusts a length: any frame that is short, too
//! long, fails its checksum, has an unknown type or a body that does not parse
//! exactly is reported as a `FrameError`.

use bytes::Bytes;
use std::fmt;

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"WRNSEG01";
/// Magic + segment number.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// len + crc + type.
pub const FRAME_HEADER_LEN: usize = 9;
/// Largest frame (header included) the store writes or accepts.
pub const MAX_FRAME_LEN: usize = 1 << 31;
/// `up_to_seq` of a `QueueGone` for a deleted queue: every message.
pub const ALL_SEQS: u64 = u64::MAX;

pub const TYPE_PUBLISH: u8 = 1;
pub const TYPE_ACKS: u8 = 2;
pub const TYPE_QUEUE_GONE: u8 = 3;
pub const TYPE_PUBLISH_EXPIRING: u8 = 4;

/// Fixed part of a publish body: queue_id, seq, three lengths.
const PUBLISH_FIXED: usize = 8 + 8 + 2 + 2 + 4;

/// A persistent message of a durable queue (or a paged-out message in a scratch
/// store), as appended and as read back during recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish<'a> {
    pub queue_id: u64,
    pub seq: u64,
    pub exchange: &'a [u8],
    pub routing_key: &'a [u8],
    /// Content-header properties exactly as received.
    pub properties: &'a [u8],
    pub body: &'a [u8],
    /// Expiry (message TTL), ms since the Unix epoch; 0: none.
    pub expires_at: u64,
}

impl Publish<'_> {
    /// Length of the frame this publish encodes to.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN
            + PUBLISH_FIXED
            + if self.expires_at != 0 { 8 } else { 0 }
            + self.exchange.len()
            + self.routing_key.len()
            + self.properties.len()
            + self.body.len()
    }
}

/// A decoded `Acks` record. Its varints were checked when it was decoded, so
/// iterating cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acks<'a> {
    pub queue_id: u64,
    count: u32,
    varints: &'a [u8],
}

impl<'a> Acks<'a> {
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The acknowledged sequence numbers, ascending.
    pub fn seqs(&self) -> AckSeqs<'a> {
        AckSeqs {
            rest: self.varints,
            left: self.count,
            prev: 0,
            first: true,
        }
    }
}

/// Iterator over the sequence numbers of an `Acks` record.
pub struct AckSeqs<'a> {
    rest: &'a [u8],
    left: u32,
    prev: u64,
    first: bool,
}

impl Iterator for AckSeqs<'_> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        if self.left == 0 {
            return None;
        }
        let (v, n) = read_varint(self.rest)?;
        self.rest = &self.rest[n..];
        self.left -= 1;
        let seq = if self.first {
            v
        } else {
            self.prev.checked_add(v)?
        };
        self.first = false;
        self.prev = seq;
        Some(seq)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// One decoded record, borrowing from the bytes it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Publish(Publish<'a>),
    Acks(Acks<'a>),
    QueueGone { queue_id: u64, up_to_seq: u64 },
}

/// Why a frame could not be decoded. Recovery stops a file at the first one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame header or its length says: a torn write.
    Truncated,
    /// The length field is larger than `MAX_FRAME_LEN` allows.
    TooLong(u32),
    BadChecksum,
    UnknownType(u8),
    /// The checksum matched but the body does not parse as its type.
    BadBody(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated => write!(f, "truncated record"),
            FrameError::TooLong(n) => write!(f, "record length {n} too large"),
            FrameError::BadChecksum => write!(f, "checksum mismatch"),
            FrameError::UnknownType(t) => write!(f, "unknown record type {t}"),
            FrameError::BadBody(why) => write!(f, "malformed record body: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<FrameError> for std::io::Error {
    fn from(e: FrameError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// Appends the 16-byte header of segment `number`.
pub fn encode_segment_header(buf: &mut Vec<u8>, number: u64) {
    buf.extend_from_slice(&SEGMENT_MAGIC);
    buf.extend_from_slice(&number.to_le_bytes());
}

/// Checks the header of a segment file that should be segment `number`.
pub fn check_segment_header(bytes: &[u8], number: u64) -> Result<(), &'static str> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err("shorter than a segment header");
    }
    if bytes[..8] != SEGMENT_MAGIC {
        return Err("bad magic");
    }
    if le_u64(&bytes[8..16]) != number {
        return Err("segment number does not match the file name");
    }
    Ok(())
}

/// Appends a publish frame; returns the frame's length.
///
/// Panics if a field does not fit the format (exchange or routing key longer
/// than 64 KiB, frame larger than `MAX_FRAME_LEN`): AMQP limits all of them far
/// below that, so it is a caller bug.
pub fn encode_publish(buf: &mut Vec<u8>, p: &Publish<'_>) -> u32 {
    assert!(
        p.exchange.len() <= u16::MAX as usize,
        "exchange name too long"
    );
    assert!(
        p.routing_key.len() <= u16::MAX as usize,
        "routing key too long"
    );
    let frame_len = p.frame_len();
    assert!(
        frame_len <= MAX_FRAME_LEN,
        "message too large for the store"
    );
    let kind = if p.expires_at != 0 {
        TYPE_PUBLISH_EXPIRING
    } else {
        TYPE_PUBLISH
    };
    let start = begin_frame(buf, kind);
    buf.extend_from_slice(&p.queue_id.to_le_bytes());
    buf.extend_from_slice(&p.seq.to_le_bytes());
    if p.expires_at != 0 {
        buf.extend_from_slice(&p.expires_at.to_le_bytes());
    }
    buf.extend_from_slice(&(p.exchange.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(p.routing_key.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(p.properties.len() as u32).to_le_bytes());
    buf.extend_from_slice(p.exchange);
    buf.extend_from_slice(p.routing_key);
    buf.extend_from_slice(p.properties);
    buf.extend_from_slice(p.body);
    end_frame(buf, start)
}

/// Appends an `Acks` frame for `seqs` (sorted here; duplicates are kept and
/// harmless). Returns the frame's length. `seqs` must not be empty.
pub fn encode_acks(buf: &mut Vec<u8>, queue_id: u64, seqs: &mut [u64]) -> u32 {
    assert!(!seqs.is_empty(), "an Acks record needs at least one seq");
    seqs.sort_unstable();
    let start = begin_frame(buf, TYPE_ACKS);
    buf.extend_from_slice(&queue_id.to_le_bytes());
    buf.extend_from_slice(&(seqs.len() as u32).to_le_bytes());
    let mut prev = 0;
    for (i, &s) in seqs.iter().enumerate() {
        write_varint(buf, if i == 0 { s } else { s - prev });
        prev = s;
    }
    end_frame(buf, start)
}

/// Appends a `QueueGone` frame; returns the frame's length.
pub fn encode_queue_gone(buf: &mut Vec<u8>, queue_id: u64, up_to_seq: u64) -> u32 {
    let start = begin_frame(buf, TYPE_QUEUE_GONE);
    buf.extend_from_slice(&queue_id.to_le_bytes());
    buf.extend_from_slice(&up_to_seq.to_le_bytes());
    end_frame(buf, start)
}

fn begin_frame(buf: &mut Vec<u8>, ty: u8) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]);
    buf.push(ty);
    start
}

/// Fills in len and crc of the frame that starts at `start`.
fn end_frame(buf: &mut [u8], start: usize) -> u32 {
    let frame_len = buf.len() - start;
    let body_len = (frame_len - FRAME_HEADER_LEN) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    frame_len as u32
}

/// Decodes the frame at the start of `buf`. Returns the record and the frame's
/// length (header included).
pub fn decode_frame(buf: &[u8]) -> Result<(Record<'_>, usize), FrameError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Truncated);
    }
    let len = le_u32(&buf[0..4]);
    if len as usize > MAX_FRAME_LEN - FRAME_HEADER_LEN {
        return Err(FrameError::TooLong(len));
    }
    let frame_len = FRAME_HEADER_LEN + len as usize;
    if buf.len() < frame_len {
        return Err(FrameError::Truncated);
    }
    if crc32fast::hash(&buf[8..frame_len]) != le_u32(&buf[4..8]) {
        return Err(FrameError::BadChecksum);
    }
    let body = &buf[FRAME_HEADER_LEN..frame_len];
    let record = match buf[8] {
        TYPE_PUBLISH => Record::Publish(decode_publish(body, false)?),
        TYPE_PUBLISH_EXPIRING => Record::Publish(decode_publish(body, true)?),
        TYPE_ACKS => Record::Acks(decode_acks(body)?),
        TYPE_QUEUE_GONE => {
            if body.len() != 16 {
                return Err(FrameError::BadBody("QueueGone body is not 16 bytes"));
            }
            Record::QueueGone {
                queue_id: le_u64(&body[0..8]),
                up_to_seq: le_u64(&body[8..16]),
            }
        }
        t => return Err(FrameError::UnknownType(t)),
    };
    Ok((record, frame_len))
}

/// A type 1 body, or a type 4 one (`expiring`: an expiry after the seq).
fn decode_publish(body: &[u8], expiring: bool) -> Result<Publish<'_>, FrameError> {
    let extra = if expiring { 8 } else { 0 };
    if body.len() < PUBLISH_FIXED + extra {
        return Err(FrameError::BadBody("publish shorter than its fixed part"));
    }
    let queue_id = le_u64(&body[0..8]);
    let seq = le_u64(&body[8..16]);
    let expires_at = if expiring {
        match le_u64(&body[16..24]) {
            0 => return Err(FrameError::BadBody("expiring publish without expiry")),
            e => e,
        }
    } else {
        0
    };
    // From here on both types have the same layout.
    let body = &body[extra..];
    let ex = u16::from_le_bytes([body[16], body[17]]) as usize;
    let rk = u16::from_le_bytes([body[18], body[19]]) as usize;
    let props = le_u32(&body[20..24]) as usize;
    let rest = &body[PUBLISH_FIXED..];
    // Each length is at most 2^32, so the sum cannot overflow a usize on 64-bit;
    // checked anyway for 32-bit targets.
    let fields = ex
        .checked_add(rk)
        .and_then(|n| n.checked_add(props))
        .filter(|&n| n <= rest.len())
        .ok_or(FrameError::BadBody(
            "publish field lengths exceed the record",
        ))?;
    Ok(Publish {
        queue_id,
        seq,
        exchange: &rest[..ex],
        routing_key: &rest[ex..ex + rk],
        properties: &rest[ex + rk..fields],
        body: &rest[fields..],
        expires_at,
    })
}

fn decode_acks(body: &[u8]) -> Result<Acks<'_>, FrameError> {
    if body.len() < 12 {
        return Err(FrameError::BadBody("acks shorter than its fixed part"));
    }
    let count = le_u32(&body[8..12]);
    let varints = &body[12..];
    if count == 0 {
        return Err(FrameError::BadBody("acks record with no seq"));
    }
    // Walk the varints once so that iterating later cannot fail.
    let mut rest = varints;
    let mut prev: u64 = 0;
    for i in 0..count {
        let (v, n) = read_varint(rest).ok_or(FrameError::BadBody("bad ack varint"))?;
        rest = &rest[n..];
        prev = if i == 0 {
            v
        } else {
            prev.checked_add(v)
                .ok_or(FrameError::BadBody("ack seq overflows"))?
        };
    }
    if !rest.is_empty() {
        return Err(FrameError::BadBody("trailing bytes after the acks"));
    }
    Ok(Acks {
        queue_id: le_u64(&body[0..8]),
        count,
        varints,
    })
}

fn write_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// LEB128; None if truncated or longer than a u64.
fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            return None;
        }
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// A publish read back from the store, every field a slice of one buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub queue_id: u64,
    pub seq: u64,
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub properties: Bytes,
    pub body: Bytes,
    /// The four parts together (they lie back to back in a record).
    pub parts: Bytes,
    /// See `Publish::expires_at`.
    pub expires_at: u64,
}

impl StoredMessage {
    /// Decodes one whole publish frame (checksum included) without copying it.
    pub fn from_frame(frame: Bytes) -> Result<StoredMessage, FrameError> {
        let (record, len) = decode_frame(&frame)?;
        if len != frame.len() {
            return Err(FrameError::BadBody("bytes after the frame"));
        }
        match record {
            Record::Publish(p) => Ok(StoredMessage {
                parts: {
                    let start = p.exchange.as_ptr() as usize - frame.as_ptr() as usize;
                    let len =
                        p.exchange.len() + p.routing_key.len() + p.properties.len() + p.body.len();
                    frame.slice(start..start + len)
                },
                queue_id: p.queue_id,
                seq: p.seq,
                exchange: frame.slice_ref(p.exchange),
                routing_key: frame.slice_ref(p.routing_key),
                properties: frame.slice_ref(p.properties),
                body: frame.slice_ref(p.body),
                expires_at: p.expires_at,
            }),
            _ => Err(FrameError::BadBody("not a publish record")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn publish<'a>(body: &'a [u8]) -> Publish<'a> {
        Publish {
            queue_id: 7,
            seq: 42,
            exchange: b"amq.direct",
            routing_key: b"rk",
            properties: &[0x80, 0x00, 2],
            body,
            expires_at: 0,
        }
    }

    /// A message with a TTL is a type 4 record carrying its expiry; one
    /// without stays type 1 (no extra bytes).
    #[test]
    fn publish_with_expiry_round_trips_as_type_4() {
        let expiring = Publish {
            expires_at: 1_790_000_000_123,
            ..publish(b"ttl")
        };
        let mut buf = Vec::new();
        let n = encode_publish(&mut buf, &expiring);
        assert_eq!(n as usize, expiring.frame_len());
        assert_eq!(buf[8], TYPE_PUBLISH_EXPIRING);
        assert_eq!(
            decode_frame(&buf),
            Ok((Record::Publish(expiring), buf.len()))
        );
        let m = StoredMessage::from_frame(Bytes::from(buf)).unwrap();
        assert_eq!(
            (m.seq, m.expires_at, &m.body[..]),
            (42, 1_790_000_000_123, &b"ttl"[..])
        );
        let mut plain = Vec::new();
        encode_publish(&mut plain, &publish(b"ttl"));
        assert_eq!(plain[8], TYPE_PUBLISH);
        assert_eq!(plain.len() + 8, n as usize);
    }

    #[test]
    fn round_trip_every_record_type() {
        let mut buf = Vec::new();
        let big = vec![0xabu8; 70_000];
        let empty = Publish {
            queue_id: u64::MAX,
            seq: 0,
            exchange: b"",
            routing_key: b"",
            properties: b"",
            body: b"",
            expires_at: 0,
        };
        let mut lens = vec![
            encode_publish(&mut buf, &publish(b"hello")),
            encode_publish(&mut buf, &publish(&big)),
            encode_publish(&mut buf, &empty),
        ];
        let mut seqs = vec![9, 3, 4, 5, u64::MAX, 3, 1 << 40];
        lens.push(encode_acks(&mut buf, 7, &mut seqs));
        lens.push(encode_acks(&mut buf, 8, &mut [0]));
        lens.push(encode_queue_gone(&mut buf, 7, 100));
        lens.push(encode_queue_gone(&mut buf, 9, ALL_SEQS));
        assert_eq!(lens.iter().map(|&n| n as usize).sum::<usize>(), buf.len());
        assert_eq!(lens[0] as usize, publish(b"hello").frame_len());

        let mut pos = 0;
        let mut out = Vec::new();
        while pos < buf.len() {
            let (r, n) = decode_frame(&buf[pos..]).unwrap();
            out.push(r);
            pos += n;
        }
        assert_eq!(out.len(), 7);
        assert_eq!(out[0], Record::Publish(publish(b"hello")));
        assert_eq!(out[1], Record::Publish(publish(&big)));
        assert_eq!(out[2], Record::Publish(empty));
        match out[3] {
            Record::Acks(a) => {
                assert_eq!(a.queue_id, 7);
                assert_eq!(a.len(), 7);
                let got: Vec<u64> = a.seqs().collect();
                assert_eq!(got, vec![3, 3, 4, 5, 9, 1 << 40, u64::MAX]);
            }
            ref r => panic!("{r:?}"),
        }
        match out[4] {
            Record::Acks(a) => assert_eq!(a.seqs().collect::<Vec<_>>(), vec![0]),
            ref r => panic!("{r:?}"),
        }
        assert_eq!(
            out[5],
            Record::QueueGone {
                queue_id: 7,
                up_to_seq: 100
            }
        );
        assert_eq!(
            out[6],
            Record::QueueGone {
                queue_id: 9,
                up_to_seq: ALL_SEQS
            }
        );
    }

    #[test]
    fn consecutive_acks_cost_about_a_byte_each() {
        let mut buf = Vec::new();
        let mut seqs: Vec<u64> = (1_000_000..1_001_000).collect();
        let n = encode_acks(&mut buf, 1, &mut seqs);
        assert!(n < 1_030, "{n}");
    }

    #[test]
    fn stored_message_from_frame() {
        let mut buf = Vec::new();
        encode_publish(&mut buf, &publish(b"body"));
        let m = StoredMessage::from_frame(Bytes::from(buf.clone())).unwrap();
        assert_eq!((m.queue_id, m.seq), (7, 42));
        assert_eq!(&m.exchange[..], b"amq.direct");
        assert_eq!(&m.routing_key[..], b"rk");
        assert_eq!(&m.properties[..], &[0x80, 0, 2]);
        assert_eq!(&m.body[..], b"body");
        buf.push(0);
        assert!(StoredMessage::from_frame(Bytes::from(buf)).is_err());
        let mut gone = Vec::new();
        encode_queue_gone(&mut gone, 1, 2);
        assert!(StoredMessage::from_frame(Bytes::from(gone)).is_err());
    }

    /// Re-signs a frame after its body was edited, so that the body checks run.
    fn reseal(frame: &mut [u8]) {
        let crc = crc32fast::hash(&frame[8..]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn malformed_frames_are_errors() {
        let mut buf = Vec::new();
        encode_publish(&mut buf, &publish(b"x"));
        for cut in 0..buf.len() {
            assert_eq!(decode_frame(&buf[..cut]), Err(FrameError::Truncated));
        }
        let mut bad = buf.clone();
        bad[12] ^= 1;
        assert_eq!(decode_frame(&bad), Err(FrameError::BadChecksum));
        let mut bad = buf.clone();
        bad[8] = 99;
        reseal(&mut bad);
        assert_eq!(decode_frame(&bad), Err(FrameError::UnknownType(99)));
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_frame(&bad), Err(FrameError::TooLong(u32::MAX)));
        // Field lengths larger than the record.
        let mut bad = buf.clone();
        bad[9 + 20..9 + 24].copy_from_slice(&1000u32.to_le_bytes());
        reseal(&mut bad);
        assert!(matches!(decode_frame(&bad), Err(FrameError::BadBody(_))));

        let mut acks = Vec::new();
        encode_acks(&mut acks, 1, &mut [1, 2, 3]);
        let mut bad = acks.clone();
        bad[9 + 8..9 + 12].copy_from_slice(&4u32.to_le_bytes()); // count too big
        reseal(&mut bad);
        assert!(matches!(decode_frame(&bad), Err(FrameError::BadBody(_))));
        bad[9 + 8..9 + 12].copy_from_slice(&2u32.to_le_bytes()); // trailing bytes
        reseal(&mut bad);
        assert!(matches!(decode_frame(&bad), Err(FrameError::BadBody(_))));
        bad[9 + 8..9 + 12].copy_from_slice(&0u32.to_le_bytes());
        reseal(&mut bad);
        assert!(matches!(decode_frame(&bad), Err(FrameError::BadBody(_))));

        // A delta that overflows u64.
        let mut ovf = Vec::new();
        encode_acks(&mut ovf, 1, &mut [u64::MAX - 1, u64::MAX]);
        let mut bad = ovf.clone();
        let last = bad.len() - 1;
        bad[last] = 5;
        reseal(&mut bad);
        assert!(matches!(decode_frame(&bad), Err(FrameError::BadBody(_))));

        // A zero-filled tail (what a crash can leave after a size update).
        assert_eq!(decode_frame(&[0u8; 64]), Err(FrameError::BadChecksum));
    }

    #[test]
    fn segment_header() {
        let mut h = Vec::new();
        encode_segment_header(&mut h, 5);
        assert_eq!(h.len(), SEGMENT_HEADER_LEN);
        assert!(check_segment_header(&h, 5).is_ok());
        assert!(check_segment_header(&h, 6).is_err());
        assert!(check_segment_header(&h[..15], 5).is_err());
        h[0] = b'X';
        assert!(check_segment_header(&h, 5).is_err());
    }

    #[test]
    fn varints() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            write_varint(&mut b, v);
            assert_eq!(read_varint(&b), Some((v, b.len())));
            assert_eq!(read_varint(&b[..b.len() - 1]), None);
        }
        assert_eq!(read_varint(&[0xff; 10]), None);
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes);
            let _ = StoredMessage::from_frame(Bytes::from(bytes));
        }

        #[test]
        fn publish_round_trips(
            queue_id in any::<u64>(),
            seq in any::<u64>(),
            exchange in proptest::collection::vec(any::<u8>(), 0..300),
            routing_key in proptest::collection::vec(any::<u8>(), 0..300),
            properties in proptest::collection::vec(any::<u8>(), 0..100),
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            expires_at in prop_oneof![Just(0u64), any::<u64>()],
        ) {
            let p = Publish { queue_id, seq, exchange: &exchange, routing_key: &routing_key,
                              properties: &properties, body: &body, expires_at };
            let mut buf = Vec::new();
            let n = encode_publish(&mut buf, &p);
            prop_assert_eq!(n as usize, buf.len());
            prop_assert_eq!(decode_frame(&buf), Ok((Record::Publish(p), buf.len())));
        }

        #[test]
        fn acks_round_trip(seqs in proptest::collection::vec(any::<u64>(), 1..200)) {
            let mut sorted = seqs.clone();
            let mut buf = Vec::new();
            encode_acks(&mut buf, 3, &mut sorted);
            let (r, n) = decode_frame(&buf).unwrap();
            prop_assert_eq!(n, buf.len());
            let mut want = seqs;
            want.sort_unstable();
            match r {
                Record::Acks(a) => prop_assert_eq!(a.seqs().collect::<Vec<_>>(), want),
                _ => prop_assert!(false),
            }
        }
    }
}
