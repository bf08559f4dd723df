//! The fuzz targets. Each takes arbitrary bytes, feeds them to the decoders
//! the broker uses on that kind of input, and checks what a decoder returned
//! against a second opinion: the cheap validator against the full decode, the
//! raw property accessors against the decoded struct, a decoded value against
//! the decode of its own encoding.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::amqp10::{
    self, descriptor, Body, Decoder, DeliveryState, Encode, Fields, FrameBody, MessageId,
    Performative, SaslFrame, Sections,
};
use crate::protocol::constants::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD, FRAME_MIN_SIZE};
use crate::protocol::methods::Method;
use crate::protocol::properties::{self, BASIC_CLASS_ID};
use crate::protocol::reader::Reader;
use crate::protocol::{
    check_frame, parse_content_header, write_basic_deliver, write_method, BasicProperties,
    FieldTable, FieldValue, PROTOCOL_HEADER,
};
use crate::store::defs_log::{self, Record as DefsRecord};
use crate::store::record::{
    self, decode_frame, Record as SegRecord, StoredMessage, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
    SEGMENT_MAGIC,
};
use crate::store::recover;

/// The frame reader: splits `data` into frames the way
/// `Connection::process` does (an optional 8-byte protocol header first,
/// then `check_frame` and the payload cut out of the read buffer), under
/// the frame_max limits a connection uses (the smallest negotiable, the
/// default, the handshake's, none), and decodes each method and content
/// header payload as `Connection::frame` would.
pub fn frame(data: &[u8]) {
    for frame_max in [FRAME_MIN_SIZE, 131_072, 1 << 20, 0] {
        split_frames(data, frame_max);
    }
}

fn split_frames(data: &[u8], frame_max: u32) {
    let mut rbuf = BytesMut::from(data);
    if rbuf.starts_with(&PROTOCOL_HEADER[..4]) {
        if rbuf.len() < 8 {
            return;
        }
        let _ = rbuf.split_to(8);
    }
    loop {
        match check_frame(&rbuf, frame_max) {
            Ok(None) => {
                // Nothing complete: a longer read must be able to complete it.
                assert!(
                    rbuf.len() < 7
                        || u32::from_be_bytes([rbuf[3], rbuf[4], rbuf[5], rbuf[6]]) as usize + 8
                            > rbuf.len()
                );
                return;
            }
            Ok(Some(head)) => {
                let total = head.total_len();
                assert!(total <= rbuf.len(), "check_frame: frame beyond the buffer");
                assert_eq!(head.payload_range().len(), head.size as usize);
                // Every strict prefix of a whole frame is "not yet".
                for cut in [0, 6, 7, total - 1] {
                    if cut < total {
                        assert_eq!(check_frame(&rbuf[..cut], frame_max), Ok(None), "{cut}");
                    }
                }
                let mut frame = rbuf.split_to(total);
                frame.truncate(frame.len() - 1);
                frame.advance(7);
                let payload = frame.freeze();
                assert_eq!(payload.len(), head.size as usize);
                match head.kind {
                    FRAME_METHOD => method_payload(payload),
                    FRAME_HEADER => content_header_payload(payload),
                    FRAME_BODY => {}
                    _ => {}
                }
            }
            Err(e) => {
                // Reported from the header alone, before the payload is in.
                let _ = e.to_string();
                return;
            }
        }
    }
}

/// `Method::decode` for every class and method; a decoded method must
/// re-encode to bytes that decode to the same encoding again, and frame.
pub fn method(data: &[u8]) {
    method_payload(Bytes::copy_from_slice(data));
}

fn method_payload(payload: Bytes) {
    let m = match Method::decode(payload) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = (
        m.class_id(),
        m.method_id(),
        m.has_content(),
        m.is_synchronous(),
    );
    assert_eq!(m.to_string(), m.name());
    let mut once = Vec::new();
    m.encode(&mut once);
    let again = match Method::decode(Bytes::from(once.clone())) {
        Ok(a) => a,
        Err(e) => panic!("{} re-encoded does not decode: {e}", m.name()),
    };
    let mut twice = Vec::new();
    again.encode(&mut twice);
    assert_eq!(once, twice, "{} does not round-trip", m.name());
    let mut framed = Vec::new();
    write_method(&mut framed, 1, &m);
    let head = check_frame(&framed, 0).ok().flatten();
    assert_eq!(head.map(|h| h.total_len()), Some(framed.len()));
    if let Method::BasicDeliver(d) = &m {
        let mut fast = Vec::new();
        write_basic_deliver(
            &mut fast,
            1,
            &d.consumer_tag,
            d.delivery_tag,
            d.redelivered,
            &d.exchange,
            &d.routing_key,
        );
        assert_eq!(fast, framed, "write_basic_deliver differs from the codec");
    }
}

/// Field tables: `Reader::table` and `FieldTable::skip` must agree on the
/// outcome and on where the table ends; a decoded table re-encodes to bytes
/// that decode to the same encoding again.
pub fn table(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let mut full = Reader::new(bytes.clone());
    let decoded = full.table();
    let mut cheap = Reader::new(bytes);
    let skipped = FieldTable::skip(&mut cheap);
    assert_eq!(
        decoded.as_ref().err(),
        skipped.as_ref().err(),
        "table and skip disagree"
    );
    let Ok(t) = decoded else { return };
    assert_eq!(
        full.position(),
        cheap.position(),
        "table and skip end apart"
    );
    for (_, v) in t.iter() {
        touch_value(v);
    }
    let mut once = Vec::new();
    t.encode(&mut once);
    assert_eq!(once.len(), t.encoded_len());
    let again = match Reader::new(Bytes::from(once.clone())).table() {
        Ok(a) => a,
        Err(e) => panic!("re-encoded table does not decode: {e}"),
    };
    let mut twice = Vec::new();
    again.encode(&mut twice);
    assert_eq!(once, twice, "table does not round-trip");
}

/// The accessors a broker uses on argument values.
fn touch_value(v: &FieldValue) {
    let _ = (v.type_octet(), v.type_name(), v.as_str(), v.as_bytes());
    let _ = (v.as_i64(), v.as_bool(), v.encoded_len());
    if let Some(t) = v.as_table() {
        t.iter().for_each(|(_, v)| touch_value(v));
    }
    if let Some(a) = v.as_array() {
        a.iter().for_each(touch_value);
    }
}

/// Content headers: `parse_content_header`, then the properties as
/// `BasicProperties::decode`, `properties::validate` and the raw accessors
/// read them (which must all agree). `data` is tried both as a header frame
/// payload and as bare flags + property list.
pub fn content_header(data: &[u8]) {
    content_header_payload(Bytes::copy_from_slice(data));
    raw_properties(Bytes::copy_from_slice(data));
}

fn content_header_payload(payload: Bytes) {
    match parse_content_header(payload.clone()) {
        Ok(h) => {
            assert!(payload.len() >= 14);
            assert_eq!(&h.properties[..], &payload[12..]);
            if h.class_id == BASIC_CLASS_ID {
                assert!(BasicProperties::decode(h.properties.clone()).is_ok());
            }
            raw_properties(h.properties);
        }
        Err(e) => {
            let _ = e.to_string();
            if payload.len() >= 14 && payload[..2] == BASIC_CLASS_ID.to_be_bytes() {
                assert!(BasicProperties::decode(payload.slice(12..)).is_err());
            }
        }
    }
}

fn raw_properties(raw: Bytes) {
    let valid = properties::validate(&raw);
    let decoded = BasicProperties::decode(raw.clone());
    assert_eq!(
        valid.is_ok(),
        decoded.is_ok(),
        "validate and decode disagree"
    );
    let core = properties::raw_core_fields(&raw);
    assert_eq!(core.has_headers, properties::raw_has_headers(&raw));
    assert_eq!(core.delivery_mode, properties::raw_delivery_mode(&raw));
    assert_eq!(core.priority, properties::raw_priority(&raw));
    assert_eq!(core.expiration, properties::raw_expiration(&raw));
    let _ = (
        properties::raw_user_id(&raw),
        properties::raw_timestamp(&raw),
    );
    let Ok(p) = decoded else { return };
    assert_eq!(core.delivery_mode, p.delivery_mode);
    assert_eq!(core.priority, p.priority);
    assert_eq!(core.has_headers, p.headers.is_some());
    assert_eq!(core.expiration, p.expiration.as_deref());
    assert_eq!(properties::raw_user_id(&raw), p.user_id.as_deref());
    assert_eq!(properties::raw_timestamp(&raw), p.timestamp);
    assert_eq!(
        properties::raw_property(&raw, properties::PROP_CONTENT_TYPE),
        p.content_type.as_deref()
    );
    assert_eq!(
        properties::raw_property(&raw, properties::PROP_CLUSTER_ID),
        p.cluster_id.as_deref()
    );
    let once = p.to_bytes();
    let again = match BasicProperties::decode(once.clone()) {
        Ok(a) => a,
        Err(e) => panic!("re-encoded properties do not decode: {e}"),
    };
    assert_eq!(once, again.to_bytes(), "properties do not round-trip");
}

/// The definitions log: `data` as one record body (`Record::decode`), as a
/// whole log file image (`defs_log::parse`), and as that image with every
/// record's checksum made right, so that the record decoder is reached.
pub fn defs_log(data: &[u8]) {
    if let Ok(r) = DefsRecord::decode(Bytes::copy_from_slice(data)) {
        let mut framed = Vec::new();
        r.encode(&mut framed);
        check_defs_image(&framed);
    }
    check_defs_image(data);
    check_defs_image(&fix_defs_checksums(data));
}

fn check_defs_image(buf: &[u8]) {
    let parsed = defs_log::parse(buf);
    let valid = parsed.valid_len as usize;
    assert!(valid <= buf.len());
    assert_eq!(parsed.damage.is_none(), valid == buf.len());
    let prefix = defs_log::parse(&buf[..valid]);
    assert!(prefix.damage.is_none());
    assert_eq!(prefix.records.len(), parsed.records.len());
    // What was read writes back as a log that reads back the same.
    let mut once = Vec::new();
    for r in &parsed.records {
        r.encode(&mut once);
    }
    let again = defs_log::parse(&once);
    assert!(again.damage.is_none(), "{:?}", again.damage);
    let mut twice = Vec::new();
    for r in &again.records {
        r.encode(&mut twice);
    }
    assert_eq!(once, twice, "definitions records do not round-trip");
}

/// `[u32 len][u32 crc][body]` frames with each crc recomputed, as far as the
/// lengths chain.
fn fix_defs_checksums(data: &[u8]) -> Vec<u8> {
    let mut buf = data.to_vec();
    let mut at = 0usize;
    while let Some(h) = buf.get(at..at + 8) {
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let Some(body) = buf.get(at + 8..at + 8 + len) else {
            break;
        };
        let crc = crc32fast::hash(body);
        buf[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        at += 8 + len;
    }
    buf
}

/// Message store records: `record::decode_frame` over `data` as a run of
/// frames, raw and with every checksum made right; each decoded record must
/// re-encode to the same bytes (acks: to the same seqs).
pub fn segment_record(data: &[u8]) {
    check_segment_frames(data);
    check_segment_frames(&fix_segment_checksums(data, 0));
}

fn check_segment_frames(buf: &[u8]) {
    let mut pos = 0;
    while pos < buf.len() {
        let (rec, len) = match decode_frame(&buf[pos..]) {
            Ok(r) => r,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        };
        assert!(len >= FRAME_HEADER_LEN && len <= buf.len() - pos);
        let frame = &buf[pos..pos + len];
        let mut out = Vec::new();
        match rec {
            SegRecord::Publish(p) => {
                assert_eq!(p.frame_len(), len);
                record::encode_publish(&mut out, &p);
                assert_eq!(out, frame, "publish record does not round-trip");
                let m = StoredMessage::from_frame(Bytes::copy_from_slice(frame));
                let m = m.unwrap_or_else(|e| panic!("from_frame: {e}"));
                assert_eq!(
                    (m.queue_id, m.seq, &m.body[..]),
                    (p.queue_id, p.seq, p.body)
                );
            }
            SegRecord::Acks(a) => {
                let mut seqs: Vec<u64> = a.seqs().collect();
                assert_eq!(seqs.len(), a.len());
                assert!(seqs.windows(2).all(|w| w[0] <= w[1]));
                let before = seqs.clone();
                record::encode_acks(&mut out, a.queue_id, &mut seqs);
                match decode_frame(&out) {
                    Ok((SegRecord::Acks(b), n)) => {
                        assert_eq!(n, out.len());
                        assert_eq!(b.queue_id, a.queue_id);
                        assert_eq!(b.seqs().collect::<Vec<_>>(), before);
                    }
                    other => panic!("acks record does not round-trip: {other:?}"),
                }
            }
            SegRecord::QueueGone {
                queue_id,
                up_to_seq,
            } => {
                record::encode_queue_gone(&mut out, queue_id, up_to_seq);
                assert_eq!(out, frame, "queue-gone record does not round-trip");
            }
        }
        pos += len;
    }
}

/// Little-endian `[u32 len][u32 crc][type][body]` frames from `from`, each crc
/// recomputed, as far as the lengths chain.
fn fix_segment_checksums(data: &[u8], from: usize) -> Vec<u8> {
    let mut buf = data.to_vec();
    let mut at = from;
    while let Some(h) = buf.get(at..at + 8) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let end = at + FRAME_HEADER_LEN + len;
        let Some(covered) = buf.get(at + 8..end) else {
            break;
        };
        let crc = crc32fast::hash(covered);
        buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
    buf
}

thread_local! {
    /// This thread's scratch directory for `segment_scan`.
    static SCAN_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// The recovery scan of a message store directory (`recover::scan`, what
/// `SegmentLog::open` runs at boot): `data` is cut into segment files at each
/// segment magic after the first, their frames' checksums are made right,
/// and the files are scanned from a scratch directory. Whatever the scan
/// keeps must lie inside the files as they are left.
pub fn segment_scan(data: &[u8]) {
    SCAN_DIR.with(|d| {
        let mut d = d.borrow_mut();
        let dir = d.get_or_insert_with(|| {
            let tid = format!("{:?}", std::thread::current().id());
            let tid: String = tid.chars().filter(char::is_ascii_digit).collect();
            std::env::temp_dir().join(format!("warren-fuzz-scan-{}-{tid}", std::process::id()))
        });
        scan_image(dir, data);
    });
}

fn scan_image(dir: &Path, data: &[u8]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
    let mut starts = vec![0];
    let mut at = 8;
    while let Some(i) = data.get(at..).and_then(|d| find(d, &SEGMENT_MAGIC)) {
        starts.push(at + i);
        at += i + 8;
    }
    starts.push(data.len());
    for (n, w) in starts.windows(2).enumerate() {
        let file = fix_segment_checksums(&data[w[0]..w[1]], SEGMENT_HEADER_LEN);
        let path = dir.join(format!("{:016x}.seg", n as u64 + 1));
        std::fs::write(path, file).expect("scratch segment");
    }
    let scan = match recover::scan(dir, 1 << 10, 4) {
        Ok(s) => s,
        Err(e) => panic!("scan of a readable directory failed: {e}"),
    };
    for (&n, seg) in &scan.segments {
        let path = dir.join(format!("{n:016x}.seg"));
        let on_disk = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert_eq!(
            seg.len, on_disk,
            "segment {n}: kept length is not the file's"
        );
        assert!(
            seg.live <= seg.total,
            "segment {n}: more live messages than publishes"
        );
    }
    for (queue_id, msgs) in &scan.queues {
        assert!(msgs.windows(2).all(|w| w[0].seq < w[1].seq));
        for m in msgs {
            let l = m.location;
            let seg = scan
                .segments
                .get(&l.segment)
                .expect("a live message's segment");
            assert!(l.offset as u64 + l.len as u64 <= seg.len);
            if let Some(s) = &m.message {
                assert_eq!((s.queue_id, s.seq), (*queue_id, m.seq));
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// AMQP 1.0 frames: `data` split as an AMQP 1.0 connection would (an
/// optional protocol header, then `check_frame` and `read_frame` on each
/// frame) under the smallest max-frame-size, a common one and none. Every
/// decoded body re-encodes to a frame that decodes to the same encoding;
/// a transfer's payload goes through `Sections::parse`.
pub fn amqp10_frame(data: &[u8]) {
    for max in [amqp10::MIN_MAX_FRAME_SIZE, 65_536, u32::MAX] {
        split_amqp10_frames(data, max);
    }
}

fn split_amqp10_frames(data: &[u8], max: u32) {
    let mut buf = Bytes::copy_from_slice(data);
    while buf.starts_with(b"AMQP") {
        if buf.len() < 8 {
            return;
        }
        buf.advance(8);
    }
    loop {
        match amqp10::check_frame(&buf, max) {
            Ok(None) => {
                assert!(
                    buf.len() < 8
                        || u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
                            > buf.len()
                );
                return;
            }
            Ok(Some(n)) => {
                assert!(
                    n >= 8 && n <= buf.len(),
                    "check_frame: frame beyond the buffer"
                );
                for cut in [0, 7, n - 1] {
                    assert_eq!(amqp10::check_frame(&buf[..cut], max), Ok(None), "{cut}");
                }
                match amqp10::read_frame(buf.split_to(n)) {
                    Ok(f) => amqp10_frame_again(&f),
                    Err(e) => drop((e.condition(), e.description())),
                }
            }
            Err(e) => return drop((e.condition(), e.description())),
        }
    }
}

fn amqp10_frame_again(f: &amqp10::Frame) {
    let mut once = Vec::new();
    match &f.body {
        Some(FrameBody::Amqp(p)) => amqp10::write_frame(&mut once, f.channel, p, &f.payload),
        Some(FrameBody::Sasl(s)) => amqp10::write_sasl_frame(&mut once, s),
        None => return amqp10::write_heartbeat(&mut once),
    }
    let again = amqp10::read_frame(Bytes::from(once.clone()))
        .unwrap_or_else(|e| panic!("a re-encoded frame does not decode: {e}"));
    // A SASL frame is written without whatever followed its body.
    if f.kind == amqp10::FrameKind::Amqp {
        assert_eq!(again.payload, f.payload);
    } else {
        assert!(again.payload.is_empty());
    }
    let mut twice = Vec::new();
    match &again.body {
        Some(FrameBody::Amqp(p)) => amqp10::write_frame(&mut twice, f.channel, p, &f.payload),
        Some(FrameBody::Sasl(s)) => amqp10::write_sasl_frame(&mut twice, s),
        None => panic!("a frame re-encoded as a heartbeat"),
    }
    assert_eq!(once, twice, "frame does not round-trip");
    if let Some(FrameBody::Amqp(Performative::Transfer(_))) = &f.body {
        amqp10_sections(f.payload.clone());
    }
}

/// AMQP 1.0 values: `Decoder::read_value` and `Decoder::skip_value` agree
/// on the outcome and where the value ends; a decoded value re-encodes to
/// bytes that decode to the same encoding. The typed readers of the
/// archetypes a session decodes run on the same bytes.
pub fn amqp10_value(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let mut full = Decoder::new(bytes.clone());
    let read = full.read_value();
    let mut cheap = Decoder::new(bytes.clone());
    let skipped = cheap.skip_value();
    assert_eq!(
        read.as_ref().err(),
        skipped.as_ref().err(),
        "read and skip disagree"
    );
    if let Ok(v) = read {
        assert_eq!(full.position(), cheap.position(), "read and skip end apart");
        let _ = (
            v.type_name(),
            v.as_str(),
            v.as_u64(),
            v.as_i64(),
            v.as_bool(),
        );
        let once = encoded(&v);
        let again = Decoder::new(Bytes::from(once.clone()))
            .read_value()
            .unwrap_or_else(|e| panic!("a re-encoded value does not decode: {e}"));
        assert_eq!(once, encoded(&again), "value does not round-trip");
    }
    let typed = |d: &mut Decoder| {
        let _ = Performative::decode(d).map(|p| typed_again(&p));
    };
    typed(&mut Decoder::new(bytes.clone()));
    let _ = SaslFrame::decode(&mut Decoder::new(bytes.clone())).map(|s| typed_again(&s));
    let _ = DeliveryState::decode(&mut Decoder::new(bytes.clone())).map(|s| typed_again(&s));
    let _ = Decoder::new(bytes.clone())
        .read::<MessageId>()
        .map(|m| typed_again(&m));
    let _ = Decoder::new(bytes)
        .read::<Fields>()
        .map(|f| typed_again(&f));
}

fn encoded<T: Encode + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

/// A typed value's encoding decodes to a value with the same encoding.
fn typed_again<T: amqp10::Decode + Encode>(v: &T) {
    let once = encoded(v);
    let again: T = Decoder::new(Bytes::from(once.clone()))
        .read()
        .unwrap_or_else(|e| panic!("a re-encoded typed value does not decode: {e}"));
    assert_eq!(once, encoded(&again), "typed value does not round-trip");
}

/// AMQP 1.0 messages: `Sections::parse`; every section it keeps raw must
/// decode, and the message written back from its sections parses to the
/// same sections.
pub fn amqp10_message(data: &[u8]) {
    amqp10_sections(Bytes::copy_from_slice(data));
}

fn amqp10_sections(payload: Bytes) {
    let s = match Sections::parse(payload.clone()) {
        Ok(s) => s,
        Err(e) => return drop((e.condition(), e.to_string())),
    };
    assert!(s.bare.start <= s.bare.end && s.bare.end <= payload.len());
    let maps = [
        (&s.delivery_annotations, descriptor::DELIVERY_ANNOTATIONS),
        (&s.message_annotations, descriptor::MESSAGE_ANNOTATIONS),
        (
            &s.application_properties,
            descriptor::APPLICATION_PROPERTIES,
        ),
    ];
    let mut out = Vec::new();
    if let Some(h) = &s.header {
        amqp10::write_header(&mut out, h);
    }
    for (m, code) in &maps[..2] {
        if let Some(m) = m {
            let f = m
                .decode()
                .unwrap_or_else(|e| panic!("a checked map does not decode: {e}"));
            // The one-value lookup finds what the full decode has first.
            if let Some((Some(key), v)) = f.0.first().map(|(k, v)| (k.as_str(), v)) {
                let got = m
                    .get(key)
                    .unwrap_or_else(|e| panic!("get on a checked map: {e}"));
                assert_eq!(
                    got.map(|g| encoded(&g)),
                    Some(encoded(v)),
                    "get and decode disagree"
                );
            }
            amqp10::write_section_raw(&mut out, *code, m.raw());
        }
    }
    if let Some(p) = &s.properties {
        amqp10::write_properties(&mut out, p);
    }
    if let (Some(m), code) = maps[2] {
        m.decode()
            .unwrap_or_else(|e| panic!("a checked map does not decode: {e}"));
        amqp10::write_section_raw(&mut out, code, m.raw());
    }
    match &s.body {
        Body::Empty => {}
        Body::Data(d) => d.iter().for_each(|b| amqp10::write_data(&mut out, b)),
        Body::AmqpSequence(items) => items.iter().for_each(|v| {
            v.decode()
                .unwrap_or_else(|e| panic!("a checked sequence does not decode: {e}"));
            amqp10::write_section_raw(&mut out, descriptor::AMQP_SEQUENCE, v.raw());
        }),
        Body::AmqpValue(v) => {
            v.decode()
                .unwrap_or_else(|e| panic!("a checked value does not decode: {e}"));
            amqp10::write_section_raw(&mut out, descriptor::AMQP_VALUE, v.raw());
        }
    }
    if let Some(f) = &s.footer {
        f.decode()
            .unwrap_or_else(|e| panic!("a checked footer does not decode: {e}"));
        amqp10::write_section_raw(&mut out, descriptor::FOOTER, f.raw());
    }
    let mut again = Sections::parse(Bytes::from(out))
        .unwrap_or_else(|e| panic!("a re-written message does not parse: {e}"));
    again.bare = s.bare.clone();
    assert_eq!(again, s, "message does not round-trip");
}
