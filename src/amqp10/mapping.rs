//! Messages between AMQP 1.0 and the core's neutral form, as RabbitMQ 4
//! maps them (`mc_amqpl`, `mc_amqp`).
//!
//! The core's message carries AMQP 0-9-1 basic properties (what every
//! queue feature reads: persistence, priority, TTL, headers for the
//! headers exchange, CC/BCC, dead-lettering). A 1.0 message becomes one
//! on the publisher's shard (`to_core_in`) and a 1.0 consumer gets it back
//! (`write_for_amqp10`); a 0-9-1 consumer reads it as it is.
//!
//! | AMQP 1.0 | core (0-9-1 properties) |
//! |---|---|
//! | header.durable / priority / ttl | delivery_mode 2 or 1 / priority / expiration |
//! | properties.message-id, correlation-id | string as is; uuid as `urn:uuid:…`; ulong as decimal; binary or > 255 bytes: header `x-message-id` / `x-correlation-id` |
//! | properties.user-id / reply-to / content-type / content-encoding | user_id / reply_to (`/queues/Q` → `Q`) / content_type / content_encoding |
//! | properties.creation-time (ms) / group-id | timestamp (s) / app_id |
//! | properties.to, subject, absolute-expiry-time, group-sequence, reply-to-group-id | header `x-amqp-1.0-properties` (the encoded section; RabbitMQ 4 reads it back the same way) |
//! | application-properties | headers (typed as RabbitMQ's `to_091`) |
//! | message-annotations `x-…` (not `x-exchange`, `x-routing-key`) | headers; `x-basic-type` → type |
//! | one or more data sections | body (joined) |
//! | amqp-value, amqp-sequence, no body section | body = the encoded sections; type `amqp-1.0` |
//!
//! The body of a single data section is a slice of the transfer: never
//! copied. Going out, a consumer gets `header`, `message-annotations`
//! (`x-exchange`, `x-routing-key`, the `x-` headers), `properties`,
//! `application-properties` (the other headers of simple type) and the
//! body, written straight into the connection's output.

use super::wire::{self, Sections};
use crate::core::message::{Message, MessageMeta};
use crate::protocol::amqp10 as codec;
use crate::protocol::amqp10::{MessageId, Str, Symbol, Value};
use crate::protocol::properties::BasicProperties;
use crate::protocol::table::{FieldTable, FieldValue};
use bytes::Bytes;

/// 0-9-1 `type` of a message whose body is encoded AMQP 1.0 sections.
pub const AMQP10_TYPE: &[u8] = b"amqp-1.0";
/// Header keeping the 1.0 properties 0-9-1 cannot express.
pub const AMQP10_PROPERTIES_HEADER: &str = "x-amqp-1.0-properties";

/// `properties.to`: the address of a message sent on an anonymous link.
pub fn to_address(s: &Sections) -> Option<Bytes> {
    s.properties.as_ref()?.to.as_ref().map(|t| t.to_bytes())
}

/// `x-priority` from the link property `rabbitmq:priority`.
pub fn consumer_arguments(a: &wire::Attach) -> FieldTable {
    let mut t = FieldTable::new();
    // RabbitMQ 4's stream filters on the source, by key or descriptor.
    if let Some(filters) = a.source.as_ref().and_then(|s| s.filter.as_ref()) {
        for (k, v) in filters.iter() {
            let (descriptor, inner) = match v {
                Value::Described(d) => (d.0.as_str(), &d.1),
                other => (None, other),
            };
            let name = descriptor.or(k.as_str()).unwrap_or("");
            match name {
                "rabbitmq:stream-offset-spec" => {
                    let spec = match inner {
                        Value::String(s) => Some(FieldValue::LongStr(s.to_bytes())),
                        Value::Symbol(s) => Some(FieldValue::LongStr(Bytes::copy_from_slice(
                            s.as_str().as_bytes(),
                        ))),
                        Value::Timestamp(ms) => {
                            Some(FieldValue::Timestamp((*ms).max(0) as u64 / 1000))
                        }
                        v => v.as_i64().map(FieldValue::I64),
                    };
                    if let Some(spec) = spec {
                        t.insert("x-stream-offset", spec);
                    }
                }
                "rabbitmq:stream-filter" => {
                    let one = |v: &Value| match v {
                        Value::String(s) => Some(FieldValue::LongStr(s.to_bytes())),
                        Value::Symbol(s) => Some(FieldValue::LongStr(Bytes::copy_from_slice(
                            s.as_str().as_bytes(),
                        ))),
                        _ => None,
                    };
                    let value = match inner {
                        Value::List(items) | Value::Array(items) => {
                            Some(FieldValue::Array(items.iter().filter_map(one).collect()))
                        }
                        v => one(v),
                    };
                    if let Some(value) = value {
                        t.insert("x-stream-filter", value);
                    }
                }
                "rabbitmq:stream-match-unfiltered" => {
                    if let Value::Bool(b) = inner {
                        t.insert("x-stream-match-unfiltered", FieldValue::Bool(*b));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(p) = a
        .properties
        .as_ref()
        .and_then(|p| p.get("rabbitmq:priority"))
        .and_then(|v| v.as_i64())
    {
        t.insert("x-priority", FieldValue::I64(p));
    }
    t
}

fn id_to_091(id: &MessageId, header: &str, headers: &mut FieldTable) -> Option<Bytes> {
    match id {
        MessageId::String(s) if s.len() <= 255 => Some(s.to_bytes()),
        MessageId::String(s) => {
            headers.insert(header, FieldValue::LongStr(s.to_bytes()));
            None
        }
        MessageId::Uuid(u) => Some(Bytes::from(format!("urn:uuid:{}", uuid_text(u)))),
        MessageId::Ulong(n) => Some(Bytes::from(n.to_string())),
        MessageId::Binary(b) => {
            headers.insert(header, FieldValue::ByteArray(b.clone()));
            None
        }
    }
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{:02x}", b)).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn uuid_parse(s: &[u8]) -> Option<[u8; 16]> {
    let s = std::str::from_utf8(s.strip_prefix(b"urn:uuid:")?).ok()?;
    if !s.is_ascii() {
        return None;
    }
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// A 1.0 value as a 0-9-1 field value (RabbitMQ's `to_091`); None for
/// what 0-9-1 has no type for.
pub(crate) fn to_091(v: &Value) -> Option<FieldValue> {
    Some(match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Ubyte(n) => FieldValue::U8(*n),
        Value::Ushort(n) => FieldValue::U16(*n),
        Value::Uint(n) => FieldValue::U32(*n),
        Value::Ulong(n) => FieldValue::I64(i64::try_from(*n).ok()?),
        Value::Byte(n) => FieldValue::I8(*n),
        Value::Short(n) => FieldValue::I16(*n),
        Value::Int(n) => FieldValue::I32(*n),
        Value::Long(n) => FieldValue::I64(*n),
        Value::Float(f) if f.is_finite() => FieldValue::F32(*f),
        Value::Double(f) if f.is_finite() => FieldValue::F64(*f),
        Value::Timestamp(ms) => FieldValue::Timestamp((*ms / 1000).max(0) as u64),
        Value::Binary(b) => FieldValue::LongStr(b.clone()),
        Value::String(s) => FieldValue::LongStr(s.to_bytes()),
        Value::Symbol(s) => FieldValue::LongStr(s.to_bytes()),
        Value::List(items) | Value::Array(items) => {
            FieldValue::Array(items.iter().filter_map(to_091).collect())
        }
        Value::Map(pairs) => {
            let mut t = FieldTable::new();
            for (k, v) in pairs {
                if let (Some(k), Some(v)) = (k.as_str(), to_091(v)) {
                    t.insert(k, v);
                }
            }
            FieldValue::Table(t)
        }
        _ => return None,
    })
}

/// A 0-9-1 field value as a 1.0 value (RabbitMQ's `from_091`). Arrays and
/// tables only where `complex` (message annotations).
pub(crate) fn from_091(v: &FieldValue, complex: bool) -> Option<Value> {
    Some(match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(n) => Value::Byte(*n),
        FieldValue::U8(n) => Value::Ubyte(*n),
        FieldValue::I16(n) => Value::Short(*n),
        FieldValue::U16(n) => Value::Ushort(*n),
        FieldValue::I32(n) => Value::Int(*n),
        FieldValue::U32(n) => Value::Uint(*n),
        FieldValue::I64(n) => Value::Long(*n),
        FieldValue::F32(f) => Value::Float(*f),
        FieldValue::F64(f) => Value::Double(*f),
        FieldValue::Timestamp(s) => Value::Timestamp((*s as i64).saturating_mul(1000)),
        FieldValue::Void => Value::Null,
        FieldValue::ByteArray(b) => Value::Binary(b.clone()),
        FieldValue::LongStr(s) => match Str::from_utf8(s.clone()) {
            Ok(t) if s.len() <= 4096 && !s.contains(&0) => Value::String(t),
            _ => Value::Binary(s.clone()),
        },
        FieldValue::Array(items) if complex => {
            Value::List(items.iter().filter_map(|v| from_091(v, true)).collect())
        }
        FieldValue::Table(t) if complex => Value::Map(
            t.iter()
                .filter_map(|(k, v)| {
                    let k = Symbol::new(k.clone()).ok()?;
                    Some((Value::Symbol(k), from_091(v, true)?))
                })
                .collect(),
        ),
        _ => return None,
    })
}

/// A 1.0 message published to `exchange` with `key`, in the core's form.
/// Bytes as an AMQP 1.0 string: the same bytes when they are UTF-8 (no
/// copy), else a lossy copy.
fn text(b: &Bytes) -> Str {
    Str::from_utf8(b.clone()).unwrap_or_else(|_| Str::from(String::from_utf8_lossy(b).as_ref()))
}

/// A 1.0 message published to `exchange` with `key`, in the core's form.
/// Its 0-9-1 properties are encoded in `scratch` and cut out of `arena`
/// (one allocation per 64 KiB of properties, not one per message).
pub fn to_core_in(
    exchange: Bytes,
    key: Bytes,
    s: &Sections,
    scratch: &mut Vec<u8>,
    arena: &mut bytes::BytesMut,
) -> (Message, MessageMeta) {
    let (p, body) = properties_of(s);
    scratch.clear();
    p.encode(scratch);
    if arena.capacity() - arena.len() < scratch.len() {
        *arena = bytes::BytesMut::with_capacity((64 * 1024).max(scratch.len()));
    }
    arena.extend_from_slice(scratch);
    let properties = arena.split().freeze();
    finish(exchange, key, body, properties)
}

/// [`to_core_in`] with properties of their own (tests).
#[cfg(test)]
pub fn to_core(exchange: Bytes, key: Bytes, s: &Sections) -> (Message, MessageMeta) {
    let (p, body) = properties_of(s);
    finish(exchange, key, body, p.to_bytes())
}

/// The 0-9-1 properties of a 1.0 message (its body's type marker included).
fn properties_of(s: &Sections) -> (BasicProperties, Bytes) {
    let mut p = BasicProperties::default();
    let mut headers = FieldTable::new();
    if let Some(h) = &s.header {
        p.delivery_mode = Some(if h.durable.unwrap_or(false) { 2 } else { 1 });
        p.priority = h.priority;
        p.expiration = h.ttl.map(|t| Bytes::from(t.to_string()));
    }
    let mut extra = false;
    if let Some(pr) = &s.properties {
        p.message_id = pr
            .message_id
            .as_ref()
            .and_then(|id| id_to_091(id, "x-message-id", &mut headers));
        p.correlation_id = pr
            .correlation_id
            .as_ref()
            .and_then(|id| id_to_091(id, "x-correlation-id", &mut headers));
        p.user_id = pr
            .user_id
            .clone()
            .filter(|u| u.len() < 256 && !u.contains(&0));
        p.reply_to = pr.reply_to.as_ref().map(|r| {
            let b = r.to_bytes();
            match b.strip_prefix(b"/queues/") {
                Some(q) => super::address::decode(Bytes::copy_from_slice(q)).unwrap_or(b.clone()),
                None => b,
            }
        });
        p.content_type = pr.content_type.as_ref().map(|c| c.to_bytes());
        p.content_encoding = pr.content_encoding.as_ref().map(|c| c.to_bytes());
        p.timestamp = pr.creation_time.map(|ms| (ms / 1000).max(0) as u64);
        p.app_id = pr.group_id.as_ref().map(|g| g.to_bytes());
    }
    if let Some(ma) = s.message_annotations.as_ref().and_then(|m| m.decode().ok()) {
        for (k, v) in ma.iter() {
            let Some(k) = k.as_str() else { continue };
            match k {
                "x-exchange" | "x-routing-key" => {}
                "x-basic-type" => p.kind = v.as_str().map(|t| Bytes::copy_from_slice(t.as_bytes())),
                "x-cc" => {
                    if let Some(a) = to_091(v) {
                        headers.insert("CC", a);
                    }
                }
                k if k.starts_with("x-") => {
                    if let Some(v) = to_091(v) {
                        headers.insert(k, v);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(ap) = s
        .application_properties
        .as_ref()
        .and_then(|m| m.decode().ok())
    {
        for (k, v) in ap.iter() {
            if let (Some(k), Some(v)) = (k.as_str(), to_091(v)) {
                if k.len() < 256 {
                    headers.insert(k, v);
                }
            }
        }
    }
    if let Some(pr) = &s.properties {
        // What 0-9-1 cannot say (to, subject, typed ids, ...) travels as the
        // encoded 1.0 section, when the 0-9-1 properties would not give it
        // back the same.
        extra = properties_from_091(&p) != *pr;
    }
    if extra {
        let mut raw = Vec::new();
        if let Some(pr) = &s.properties {
            codec::write_properties(&mut raw, pr);
        }
        headers.insert(
            AMQP10_PROPERTIES_HEADER,
            FieldValue::ByteArray(Bytes::from(raw)),
        );
    }
    let body = match &s.body {
        codec::Body::Data(d) => d.to_contiguous(),
        // No body section (the spec wants one; proton sends none for a
        // None body): kept as it came, like amqp-value.
        codec::Body::Empty | codec::Body::AmqpValue(_) | codec::Body::AmqpSequence(_) => {
            p.kind = Some(Bytes::from_static(AMQP10_TYPE));
            body_and_footer(s)
        }
    };
    if !headers.is_empty() {
        p.headers = Some(headers);
    }
    (p, body)
}

fn finish(exchange: Bytes, key: Bytes, body: Bytes, properties: Bytes) -> (Message, MessageMeta) {
    let meta = MessageMeta::from_amqp091(&properties);
    (Message::from_amqp091(exchange, key, properties, body), meta)
}

/// The encoded body sections (and footer) of a message whose body is not
/// data: from the first body section to the end of the payload.
fn body_and_footer(s: &Sections) -> Bytes {
    let mut out = Vec::new();
    match &s.body {
        codec::Body::AmqpValue(v) => {
            codec::write_section_raw(&mut out, codec::descriptor::AMQP_VALUE, v.raw())
        }
        codec::Body::AmqpSequence(seq) => {
            for v in seq {
                codec::write_section_raw(&mut out, codec::descriptor::AMQP_SEQUENCE, v.raw());
            }
        }
        _ => {}
    }
    if let Some(f) = &s.footer {
        codec::write_section_raw(&mut out, codec::descriptor::FOOTER, f.raw());
    }
    Bytes::from(out)
}

/// Writes the sections of `msg` for a 1.0 consumer into `out`, up to its
/// body; returns the body bytes to send after them (a data section's
/// content, or the encoded body sections of a message that came in over
/// 1.0 with one).
pub fn write_for_amqp10<'m>(msg: &'m Message, redelivered: bool, out: &mut Vec<u8>) -> &'m [u8] {
    let p = BasicProperties::decode(msg.properties_bytes()).unwrap_or_default();
    let raw_body = p.kind.as_deref() == Some(AMQP10_TYPE);
    // header
    let ttl = p
        .expiration
        .as_ref()
        .and_then(|e| std::str::from_utf8(e).ok())
        .and_then(|e| e.parse::<u32>().ok());
    let delivery_count = p
        .headers
        .as_ref()
        .and_then(|h| h.get("x-delivery-count"))
        .and_then(|v| v.as_i64())
        .map(|n| n.clamp(0, u32::MAX as i64) as u32)
        .unwrap_or(0);
    codec::write_header(
        out,
        &codec::Header {
            durable: Some(p.delivery_mode == Some(2)),
            priority: p.priority,
            ttl,
            first_acquirer: Some(!redelivered && delivery_count == 0),
            delivery_count: Some(delivery_count),
        },
    );
    // message-annotations
    {
        let mut ma = codec::begin_map_section(out, codec::descriptor::MESSAGE_ANNOTATIONS);
        ma.symbol("x-exchange", &text(&msg.exchange_bytes()));
        ma.symbol("x-routing-key", &text(&msg.routing_key_bytes()));
        if let Some(t) = p.kind.as_ref().filter(|_| !raw_body) {
            ma.symbol("x-basic-type", &text(t));
        }
        if let Some(h) = &p.headers {
            for (k, v) in h.iter() {
                let key = String::from_utf8_lossy(k);
                if key == "CC" {
                    if let Some(v) = from_091(v, true) {
                        ma.symbol("x-cc", &v);
                    }
                } else if key.starts_with("x-") && key != AMQP10_PROPERTIES_HEADER {
                    if let (Some(v), Ok(_)) = (from_091(v, true), Symbol::new(k.clone())) {
                        ma.symbol(&key, &v);
                    }
                }
            }
        }
        ma.finish();
    }
    // properties: the kept 1.0 section if there is one, else from 0-9-1
    let kept = p
        .headers
        .as_ref()
        .and_then(|h| h.get(AMQP10_PROPERTIES_HEADER))
        .and_then(|v| match v {
            FieldValue::ByteArray(b) => Some(b.clone()),
            _ => None,
        })
        .and_then(|raw| {
            let mut d = codec::Decoder::new(raw);
            d.read::<codec::Properties>().ok()
        });
    let props = match kept {
        Some(k) => k,
        None => properties_from_091(&p),
    };
    if props != codec::Properties::default() {
        codec::write_properties(out, &props);
    }
    // application-properties: headers that are not x-, of simple type
    if let Some(h) = &p.headers {
        let simple: Vec<(&Bytes, Value)> = h
            .iter()
            .filter(|(k, _)| !k.starts_with(b"x-") && k.as_ref() != b"CC")
            .filter_map(|(k, v)| Some((k, from_091(v, false)?)))
            .collect();
        if !simple.is_empty() {
            let mut ap = codec::begin_map_section(out, codec::descriptor::APPLICATION_PROPERTIES);
            for (k, v) in &simple {
                ap.entry(&text(k), v);
            }
            ap.finish();
        }
    }
    if raw_body {
        return msg.body();
    }
    // data section header; the body follows it
    out.extend_from_slice(&[codec::code::DESCRIBED, 0x53, codec::descriptor::DATA as u8]);
    let n = msg.body().len();
    if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xa0, n as u8]);
    } else {
        out.push(0xb0);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    msg.body()
}

fn properties_from_091(p: &BasicProperties) -> codec::Properties {
    let id = |b: &Option<Bytes>| {
        b.as_ref().map(|b| match uuid_parse(b) {
            Some(u) => MessageId::Uuid(u),
            None => match Str::from_utf8(b.clone()) {
                Ok(s) => MessageId::String(s),
                Err(_) => MessageId::Binary(b.clone()),
            },
        })
    };
    let str_of = |b: &Option<Bytes>| b.as_ref().and_then(|b| Str::from_utf8(b.clone()).ok());
    let sym_of = |b: &Option<Bytes>| b.as_ref().and_then(|b| Symbol::new(b.clone()).ok());
    codec::Properties {
        message_id: id(&p.message_id),
        user_id: p.user_id.clone(),
        to: None,
        subject: None,
        reply_to: p.reply_to.as_ref().map(|r| {
            let mut s = String::from("/queues/");
            super::address::encode(r, &mut s);
            Str::from(s)
        }),
        correlation_id: id(&p.correlation_id),
        content_type: sym_of(&p.content_type),
        content_encoding: sym_of(&p.content_encoding),
        absolute_expiry_time: None,
        creation_time: p.timestamp.map(|s| (s as i64).saturating_mul(1000)),
        group_id: str_of(&p.app_id),
        group_sequence: None,
        reply_to_group_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::amqp10::Fields;

    #[test]
    fn uuid_text_round_trips() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        let t = format!("urn:uuid:{}", uuid_text(&u));
        assert_eq!(t, "urn:uuid:12345678-9abc-def0-0123-456789abcdef");
        assert_eq!(uuid_parse(t.as_bytes()), Some(u));
        assert_eq!(uuid_parse(b"urn:uuid:nope"), None);
        // 36 bytes, but not hex digits on char boundaries: no panic.
        let mut tricky = b"urn:uuid:0\xc3\xa9----".to_vec();
        tricky.extend(std::iter::repeat_n(b'a', 29));
        assert_eq!(uuid_parse(&tricky), None);
    }

    fn fields(pairs: Vec<(&'static str, Value)>) -> Fields {
        Fields(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::Symbol(Symbol::from_static(k)), v))
                .collect(),
        )
    }

    /// A 1.0 message into the core and out again to a 1.0 consumer keeps
    /// what both protocols can say.
    #[test]
    fn amqp10_round_trip_through_the_core() {
        let mut payload = Vec::new();
        codec::write_header(
            &mut payload,
            &codec::Header {
                durable: Some(true),
                priority: Some(7),
                ttl: Some(88000),
                first_acquirer: None,
                delivery_count: None,
            },
        );
        codec::write_message_annotations(
            &mut payload,
            &fields(vec![("x-custom", Value::Long(-3))]),
        );
        let props = codec::Properties {
            message_id: Some(MessageId::Uuid([7; 16])),
            correlation_id: Some(MessageId::String(Str::from("corr"))),
            subject: Some(Str::from("subj")),
            content_type: Some(Symbol::from_static("text/plain")),
            reply_to: Some(Str::from("/queues/reply%20q")),
            creation_time: Some(1_700_000_000_000),
            ..Default::default()
        };
        codec::write_properties(&mut payload, &props);
        let mut ap = Vec::new();
        codec::write_application_properties(
            &mut ap,
            &Fields(vec![
                (Value::String(Str::from("k")), Value::String(Str::from("v"))),
                (Value::String(Str::from("n")), Value::Uint(2)),
            ]),
        );
        payload.extend_from_slice(&ap);
        codec::write_data(&mut payload, b"hello");
        let s = Sections::parse(Bytes::from(payload)).unwrap();
        let (msg, meta) = to_core(
            Bytes::from_static(b"amq.topic"),
            Bytes::from_static(b"a.b"),
            &s,
        );
        assert!(meta.persistent());
        assert_eq!(msg.body().as_ref(), b"hello");
        let p = BasicProperties::decode(msg.properties_bytes()).unwrap();
        assert_eq!(p.delivery_mode, Some(2));
        assert_eq!(p.priority, Some(7));
        assert_eq!(p.expiration.as_deref(), Some(&b"88000"[..]));
        assert_eq!(p.reply_to.as_deref(), Some(&b"reply q"[..]));
        assert_eq!(
            p.message_id.as_deref(),
            Some(&b"urn:uuid:07070707-0707-0707-0707-070707070707"[..])
        );
        let h = p.headers.clone().unwrap();
        assert_eq!(
            h.get("k"),
            Some(&FieldValue::LongStr(Bytes::from_static(b"v")))
        );
        assert_eq!(h.get("n"), Some(&FieldValue::U32(2)));
        assert_eq!(h.get("x-custom"), Some(&FieldValue::I64(-3)));

        let mut out = Vec::new();
        let body = write_for_amqp10(&msg, false, &mut out).to_vec();
        out.extend_from_slice(&body);
        let back = Sections::parse(Bytes::from(out)).unwrap();
        let hd = back.header.unwrap();
        assert_eq!(hd.durable, Some(true));
        assert_eq!(hd.priority, Some(7));
        assert_eq!(hd.ttl, Some(88000));
        assert_eq!(hd.first_acquirer, Some(true));
        // The subject made the 1.0 properties travel whole.
        assert_eq!(back.properties.as_ref(), Some(&props));
        let ma = back.message_annotations.unwrap();
        assert_eq!(
            ma.get("x-exchange").unwrap(),
            Some(Value::String(Str::from("amq.topic")))
        );
        assert_eq!(
            ma.get("x-routing-key").unwrap(),
            Some(Value::String(Str::from("a.b")))
        );
        assert_eq!(ma.get("x-custom").unwrap(), Some(Value::Long(-3)));
        let ap = back.application_properties.unwrap();
        assert_eq!(ap.get("k").unwrap(), Some(Value::String(Str::from("v"))));
        assert_eq!(ap.get("n").unwrap(), Some(Value::Uint(2)));
        match back.body {
            codec::Body::Data(d) => assert_eq!(d.first.as_ref(), b"hello"),
            other => panic!("{:?}", other),
        }
    }

    #[test]
    fn amqp_value_bodies_travel_encoded() {
        let mut payload = Vec::new();
        codec::write_amqp_value(&mut payload, &Value::String(Str::from("hi there")));
        let s = Sections::parse(Bytes::from(payload)).unwrap();
        let (msg, _) = to_core(Bytes::new(), Bytes::from_static(b"q"), &s);
        let p = BasicProperties::decode(msg.properties_bytes()).unwrap();
        assert_eq!(p.kind.as_deref(), Some(AMQP10_TYPE));
        let mut out = Vec::new();
        let body = write_for_amqp10(&msg, true, &mut out).to_vec();
        out.extend_from_slice(&body);
        let back = Sections::parse(Bytes::from(out)).unwrap();
        assert_eq!(back.header.unwrap().first_acquirer, Some(false));
        match back.body {
            codec::Body::AmqpValue(v) => {
                assert_eq!(v.decode().unwrap(), Value::String(Str::from("hi there")))
            }
            other => panic!("{:?}", other),
        }
    }
}
