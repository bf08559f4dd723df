//! The AMQP 1.0 message format (messaging 3.2): a transfer's payload is a
//! sequence of described sections, in this order, each at most once except
//! the body's data or amqp-sequence sections:
//!
//! header, delivery-annotations, message-annotations, properties,
//! application-properties, body (data+ | amqp-sequence+ | amqp-value),
//! footer.
//!
//! [`Sections::parse`] is zero-copy: the header and properties are decoded
//! (small, strings are slices), the maps and the body are checked and kept
//! as slices of the payload, decoded on demand. The `write_*` functions
//! encode sections for outgoing messages straight into a `Vec<u8>`; a
//! [`MapWriter`] writes annotations and application properties entry by
//! entry without building [`Value`]s.

use std::ops::Range;

use bytes::Bytes;

use super::decode::Decoder;
use super::encode::{map_begin, map_end, put_binary, put_descriptor, put_list, Encode};
use super::error::DecodeError;
use super::typed::Decode;
use super::types::{code, descriptor, Header, Properties};
use super::value::{Fields, Value};

/// The sections of a message, as received.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Sections {
    pub header: Option<Header>,
    pub delivery_annotations: Option<RawMap>,
    pub message_annotations: Option<RawMap>,
    pub properties: Option<Properties>,
    pub application_properties: Option<RawMap>,
    pub body: Body,
    pub footer: Option<RawMap>,
    /// Where the bare message (properties through body: what the sender
    /// wrote and no intermediary may change) lies in the payload.
    pub bare: Range<usize>,
}

/// A message body.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Body {
    /// No body section (the spec requires one; some clients send none).
    #[default]
    Empty,
    /// One or more `data` sections: opaque bytes.
    Data(DataSections),
    /// One or more `amqp-sequence` sections, each an encoded list.
    AmqpSequence(Vec<RawValue>),
    /// One `amqp-value` section: any encoded value.
    AmqpValue(RawValue),
}

/// The contents of consecutive `data` sections: slices of the payload.
/// One section, the common case, needs no allocation.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DataSections {
    pub first: Bytes,
    pub rest: Vec<Bytes>,
}

impl DataSections {
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.first).chain(self.rest.iter())
    }

    /// Number of sections.
    pub fn len(&self) -> usize {
        1 + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes in all sections.
    pub fn total_len(&self) -> usize {
        self.iter().map(Bytes::len).sum()
    }

    /// All the bytes in one buffer: the section itself when there is one
    /// (no copy), else a copy of them joined.
    pub fn to_contiguous(&self) -> Bytes {
        if self.rest.is_empty() {
            return self.first.clone();
        }
        let mut v = Vec::with_capacity(self.total_len());
        self.iter().for_each(|b| v.extend_from_slice(b));
        Bytes::from(v)
    }
}

/// An encoded value kept as received (a slice of the payload), checked
/// when parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct RawValue(Bytes);

impl RawValue {
    /// The encoded bytes, constructor included.
    pub fn raw(&self) -> &Bytes {
        &self.0
    }

    pub fn decode(&self) -> Result<Value, DecodeError> {
        Decoder::new(self.0.clone()).read_value()
    }
}

/// An encoded map kept as received (a slice of the payload), checked when
/// parsed: annotations, application properties, footer.
#[derive(Clone, Debug, PartialEq)]
pub struct RawMap(Bytes);

impl RawMap {
    /// The encoded map, constructor included.
    pub fn raw(&self) -> &Bytes {
        &self.0
    }

    /// All the pairs.
    pub fn decode(&self) -> Result<Fields, DecodeError> {
        Decoder::new(self.0.clone()).read()
    }

    /// The value of the first entry whose key is the symbol or string
    /// `key`, decoding only that value.
    pub fn get(&self, key: &str) -> Result<Option<Value>, DecodeError> {
        let mut d = Decoder::new(self.0.clone());
        for _ in 0..d.read_map_header()? {
            if d.read_value()?.as_str() == Some(key) {
                return d.read_value().map(Some);
            }
            d.skip_value()?;
        }
        Ok(None)
    }
}

/// Position of each section kind in the spec's order.
fn rank(descriptor: u64) -> Option<u8> {
    Some(match descriptor {
        descriptor::HEADER => 1,
        descriptor::DELIVERY_ANNOTATIONS => 2,
        descriptor::MESSAGE_ANNOTATIONS => 3,
        descriptor::PROPERTIES => 4,
        descriptor::APPLICATION_PROPERTIES => 5,
        descriptor::DATA | descriptor::AMQP_SEQUENCE | descriptor::AMQP_VALUE => 6,
        descriptor::FOOTER => 7,
        _ => return None,
    })
}

impl Sections {
    /// Splits a message (a whole transfer payload) into its sections.
    pub fn parse(payload: Bytes) -> Result<Sections, DecodeError> {
        let mut d = Decoder::new(payload);
        let mut s = Sections::default();
        let mut last_rank = 0;
        let mut last_descriptor = None;
        let mut bare_start = None;
        let mut bare_end = 0;
        while !d.is_empty() {
            let start = d.position();
            let desc = d.read_described_start()?;
            let r = rank(desc).ok_or(DecodeError::UnknownSection(Some(desc)))?;
            let repeat_ok = matches!(desc, descriptor::DATA | descriptor::AMQP_SEQUENCE)
                && last_descriptor == Some(desc);
            if r < last_rank || (r == last_rank && !repeat_ok) {
                return Err(DecodeError::SectionOrder);
            }
            last_rank = r;
            last_descriptor = Some(desc);
            match desc {
                descriptor::HEADER => {
                    let c = list_code(&mut d)?;
                    s.header = Some(Header::decode_list(&mut d, c)?);
                }
                descriptor::PROPERTIES => {
                    let c = list_code(&mut d)?;
                    s.properties = Some(Properties::decode_list(&mut d, c)?);
                }
                descriptor::DELIVERY_ANNOTATIONS => s.delivery_annotations = Some(raw_map(&mut d)?),
                descriptor::MESSAGE_ANNOTATIONS => s.message_annotations = Some(raw_map(&mut d)?),
                descriptor::APPLICATION_PROPERTIES => {
                    s.application_properties = Some(raw_map(&mut d)?)
                }
                descriptor::FOOTER => s.footer = Some(raw_map(&mut d)?),
                descriptor::DATA => {
                    let c = d.read_ctor()?;
                    let b = Bytes::decode_ctor(&mut d, c)?;
                    match &mut s.body {
                        Body::Data(sections) => sections.rest.push(b),
                        _ => {
                            s.body = Body::Data(DataSections {
                                first: b,
                                rest: Vec::new(),
                            })
                        }
                    }
                }
                descriptor::AMQP_SEQUENCE => {
                    let v = raw_value(&mut d)?;
                    if !matches!(v.0[0], code::LIST0 | code::LIST8 | code::LIST32) {
                        return Err(DecodeError::UnexpectedType {
                            expected: "list",
                            code: v.0[0],
                        });
                    }
                    match &mut s.body {
                        Body::AmqpSequence(items) => items.push(v),
                        _ => s.body = Body::AmqpSequence(vec![v]),
                    }
                }
                _ => s.body = Body::AmqpValue(raw_value(&mut d)?),
            }
            if (4..=6).contains(&r) {
                bare_start.get_or_insert(start);
                bare_end = d.position();
            }
        }
        let start = bare_start.unwrap_or(bare_end);
        s.bare = start..bare_end;
        Ok(s)
    }
}

/// The constructor of a section's list (header, properties).
fn list_code(d: &mut Decoder) -> Result<u8, DecodeError> {
    let c = d.read_ctor()?;
    match c.descriptor {
        None => Ok(c.code),
        Some(_) => Err(DecodeError::BadDescriptor),
    }
}

/// A checked value, kept as a slice.
fn raw_value(d: &mut Decoder) -> Result<RawValue, DecodeError> {
    let at = d.position();
    d.skip_value()?;
    Ok(RawValue(d.slice(at, d.position())))
}

fn raw_map(d: &mut Decoder) -> Result<RawMap, DecodeError> {
    let v = raw_value(d)?;
    match v.0[0] {
        code::MAP8 | code::MAP32 => Ok(RawMap(v.0)),
        c => Err(DecodeError::UnexpectedType {
            expected: "map",
            code: c,
        }),
    }
}

// ---- writers ----

pub fn write_header(out: &mut Vec<u8>, h: &Header) {
    h.encode(out);
}

pub fn write_properties(out: &mut Vec<u8>, p: &Properties) {
    p.encode(out);
}

pub fn write_delivery_annotations(out: &mut Vec<u8>, f: &Fields) {
    write_map_section(out, descriptor::DELIVERY_ANNOTATIONS, f);
}

pub fn write_message_annotations(out: &mut Vec<u8>, f: &Fields) {
    write_map_section(out, descriptor::MESSAGE_ANNOTATIONS, f);
}

pub fn write_application_properties(out: &mut Vec<u8>, f: &Fields) {
    write_map_section(out, descriptor::APPLICATION_PROPERTIES, f);
}

pub fn write_footer(out: &mut Vec<u8>, f: &Fields) {
    write_map_section(out, descriptor::FOOTER, f);
}

fn write_map_section(out: &mut Vec<u8>, descriptor: u64, f: &Fields) {
    put_descriptor(out, descriptor);
    f.encode(out);
}

/// A section whose value is already encoded (a [`RawMap`] or [`RawValue`]
/// forwarded unchanged): descriptor, then `raw`.
pub fn write_section_raw(out: &mut Vec<u8>, descriptor: u64, raw: &[u8]) {
    put_descriptor(out, descriptor);
    out.extend_from_slice(raw);
}

/// One `data` section.
pub fn write_data(out: &mut Vec<u8>, data: &[u8]) {
    put_descriptor(out, descriptor::DATA);
    put_binary(out, data);
}

/// An `amqp-value` section holding `v` (a [`Value`], or any typed value).
pub fn write_amqp_value<T: Encode + ?Sized>(out: &mut Vec<u8>, v: &T) {
    put_descriptor(out, descriptor::AMQP_VALUE);
    v.encode(out);
}

/// One `amqp-sequence` section.
pub fn write_amqp_sequence(out: &mut Vec<u8>, items: &[Value]) {
    put_descriptor(out, descriptor::AMQP_SEQUENCE);
    put_list(out, items);
}

/// Starts a map section (`descriptor::MESSAGE_ANNOTATIONS`, ...) to be
/// filled entry by entry; the map's header is written when the writer is
/// dropped.
pub fn begin_map_section(out: &mut Vec<u8>, descriptor: u64) -> MapWriter<'_> {
    put_descriptor(out, descriptor);
    let at = map_begin(out);
    MapWriter { out, at, count: 0 }
}

/// Writes a map's entries as they come, without building [`Value`]s.
pub struct MapWriter<'a> {
    out: &'a mut Vec<u8>,
    at: usize,
    /// Keys and values written so far.
    count: u32,
}

impl MapWriter<'_> {
    /// An entry (`key` a [`Symbol`](super::Symbol), [`SymbolRef`](super::SymbolRef),
    /// `str` for a string, ...).
    pub fn entry<K, V>(&mut self, key: &K, value: &V) -> &mut Self
    where
        K: Encode + ?Sized,
        V: Encode + ?Sized,
    {
        key.encode(self.out);
        value.encode(self.out);
        self.count += 2;
        self
    }

    /// An entry whose key is the symbol `key` (annotation keys are symbols).
    pub fn symbol<V: Encode + ?Sized>(&mut self, key: &str, value: &V) -> &mut Self {
        self.entry(&super::encode::SymbolRef(key), value)
    }

    /// Ends the map (as dropping the writer does).
    pub fn finish(self) {}
}

impl Drop for MapWriter<'_> {
    fn drop(&mut self) {
        map_end(self.out, self.at, self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::amqp10::{Declare, MessageId, Str, Symbol};

    fn message_with_every_section() -> Vec<u8> {
        let mut m = Vec::new();
        write_header(
            &mut m,
            &Header {
                durable: Some(true),
                priority: Some(4),
                ..Default::default()
            },
        );
        let mut da = Fields::new();
        da.insert(Symbol::from_static("x-da"), Value::Uint(1));
        write_delivery_annotations(&mut m, &da);
        begin_map_section(&mut m, descriptor::MESSAGE_ANNOTATIONS)
            .symbol("x-opt-routing-key", "rk")
            .symbol("x-opt-n", &7u32);
        write_properties(
            &mut m,
            &Properties {
                message_id: Some(MessageId::Ulong(9)),
                subject: Some(Str::from_static("subj")),
                ..Default::default()
            },
        );
        begin_map_section(&mut m, descriptor::APPLICATION_PROPERTIES).entry("k", "v");
        write_data(&mut m, b"one");
        write_data(&mut m, b"two");
        write_footer(&mut m, &Fields::new());
        m
    }

    #[test]
    fn sections_written_and_parsed() {
        let m = Bytes::from(message_with_every_section());
        let s = Sections::parse(m.clone()).unwrap();
        assert_eq!(s.header.as_ref().unwrap().priority, Some(4));
        assert_eq!(
            s.delivery_annotations
                .as_ref()
                .unwrap()
                .get("x-da")
                .unwrap(),
            Some(Value::Uint(1))
        );
        let ma = s.message_annotations.as_ref().unwrap();
        assert_eq!(
            ma.get("x-opt-routing-key").unwrap(),
            Some(Value::from("rk"))
        );
        assert_eq!(ma.get("x-opt-n").unwrap(), Some(Value::Uint(7)));
        assert_eq!(
            s.properties.as_ref().unwrap().subject.as_ref().unwrap(),
            "subj"
        );
        assert_eq!(
            s.application_properties.as_ref().unwrap().get("k").unwrap(),
            Some(Value::from("v"))
        );
        let Body::Data(data) = &s.body else { panic!() };
        assert_eq!(data.len(), 2);
        assert_eq!(&data.to_contiguous()[..], b"onetwo");
        assert!(s.footer.as_ref().unwrap().decode().unwrap().is_empty());
        // Zero-copy: the first data section points into the payload.
        let at = data.first.as_ptr() as usize - m.as_ptr() as usize;
        assert_eq!(&m[at..at + 3], b"one");
        // The raw maps forward unchanged.
        let mut again = Vec::new();
        write_section_raw(&mut again, descriptor::MESSAGE_ANNOTATIONS, ma.raw());
        let re = Sections::parse(Bytes::from(again)).unwrap();
        assert_eq!(re.message_annotations.as_ref(), Some(ma));
        // amqp-sequence and amqp-value bodies.
        let mut seq = Vec::new();
        write_amqp_sequence(&mut seq, &[Value::Uint(1)]);
        write_amqp_sequence(&mut seq, &[]);
        let Body::AmqpSequence(items) = Sections::parse(Bytes::from(seq)).unwrap().body else {
            panic!()
        };
        assert_eq!(
            items[0].decode().unwrap(),
            Value::List(vec![Value::Uint(1)])
        );
        assert_eq!(items.len(), 2);
        let mut val = Vec::new();
        write_amqp_value(&mut val, &Declare::sample());
        let Body::AmqpValue(v) = Sections::parse(Bytes::from(val)).unwrap().body else {
            panic!()
        };
        let declare: Declare = Decoder::new(v.raw().clone()).read().unwrap();
        assert_eq!(declare, Declare::sample());
        assert_eq!(Sections::parse(Bytes::new()).unwrap(), Sections::default());
    }

    #[test]
    fn sections_out_of_order_are_refused() {
        let mut header = Vec::new();
        write_header(&mut header, &Header::default());
        let mut props = Vec::new();
        write_properties(&mut props, &Properties::default());
        let mut data = Vec::new();
        write_data(&mut data, b"x");
        let mut value = Vec::new();
        write_amqp_value(&mut value, &Value::Null);
        let mut footer = Vec::new();
        write_footer(&mut footer, &Fields::new());
        for bad in [
            [props.clone(), header.clone()].concat(),
            [header.clone(), header.clone()].concat(),
            [data.clone(), value.clone()].concat(),
            [value.clone(), value.clone()].concat(),
            [footer.clone(), data.clone()].concat(),
            [data.clone(), props.clone()].concat(),
        ] {
            assert_eq!(
                Sections::parse(Bytes::from(bad)),
                Err(DecodeError::SectionOrder)
            );
        }
        assert_eq!(
            Sections::parse(Bytes::from_static(&[0x00, 0x53, 0x10, 0x45])),
            Err(DecodeError::UnknownSection(Some(0x10)))
        );
        assert_eq!(
            Sections::parse(Bytes::from_static(&[0x40])),
            Err(DecodeError::BadDescriptor)
        );
        // A map section that is not a map; a data section that is not binary.
        assert!(Sections::parse(Bytes::from_static(&[0x00, 0x53, 0x74, 0x45])).is_err());
        assert!(Sections::parse(Bytes::from_static(&[0x00, 0x53, 0x75, 0xa1, 0])).is_err());
    }
}
