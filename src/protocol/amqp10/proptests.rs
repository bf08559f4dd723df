//! Property tests: arbitrary value trees round-trip; the decoders, the
//! frame reader and the section parser never panic on arbitrary bytes, and
//! what they allocate stays proportional to their input.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::protocol::methods::tests::alloc_bytes_during;

/// Allocation allowed per input byte (a `Value` is 40 bytes; a `Vec` may
/// double; a described value boxes two).
const BYTES_PER_INPUT_BYTE: usize = 512;

fn arb_str() -> impl Strategy<Value = Str> {
    prop_oneof![".{0,8}", ".{250,260}"].prop_map(Str::from)
}

fn arb_symbol() -> impl Strategy<Value = Symbol> {
    "[ -~]{0,12}".prop_map(|s| Symbol::copy_from(&s).unwrap())
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        prop_oneof![Just(0u32), 0..256u32, any::<u32>()].prop_map(Value::Uint),
        prop_oneof![Just(0u64), 0..256u64, any::<u64>()].prop_map(Value::Ulong),
        any::<i8>().prop_map(Value::Byte),
        any::<i16>().prop_map(Value::Short),
        prop_oneof![-128..128i32, any::<i32>()].prop_map(Value::Int),
        prop_oneof![-128..128i64, any::<i64>()].prop_map(Value::Long),
        any::<f32>()
            .prop_filter("NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        any::<f64>()
            .prop_filter("NaN", |f| !f.is_nan())
            .prop_map(Value::Double),
        any::<[u8; 4]>().prop_map(Value::Decimal32),
        any::<[u8; 8]>().prop_map(Value::Decimal64),
        any::<[u8; 16]>().prop_map(Value::Decimal128),
        any::<char>().prop_map(Value::Char),
        any::<i64>().prop_map(Value::Timestamp),
        any::<[u8; 16]>().prop_map(Value::Uuid),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..8),
            prop::collection::vec(any::<u8>(), 250..300)
        ]
        .prop_map(|v| Value::Binary(Bytes::from(v))),
        arb_str().prop_map(Value::String),
        arb_symbol().prop_map(Value::Symbol),
    ]
}

/// `n` values of one type (what an array holds): the leaf's type, with
/// fresh values of it.
fn same_type(n: usize) -> impl Strategy<Value = Vec<Value>> {
    arb_leaf().prop_flat_map(move |first| {
        let kind = std::mem::discriminant(&first);
        prop::collection::vec(arb_leaf(), n).prop_map(move |vs| {
            vs.into_iter()
                .filter(|v| std::mem::discriminant(v) == kind)
                .collect()
        })
    })
}

fn arb_value() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            (0..6usize).prop_flat_map(same_type).prop_map(Value::Array),
            (arb_leaf(), inner.clone()).prop_map(|(d, v)| Value::Described(Box::new((d, v)))),
            // An array of described values: one descriptor for all.
            (any::<u8>(), same_type(3)).prop_map(|(d, vs)| Value::Array(
                vs.into_iter()
                    .map(|v| Value::Described(Box::new((Value::Ulong(d as u64), v))))
                    .collect()
            )),
        ]
    })
}

fn encoded(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

/// `f` must not allocate more than the per-byte budget for `input_len` bytes.
fn bounded<R>(input_len: usize, f: impl FnOnce() -> R) -> R {
    let (bytes, r) = alloc_bytes_during(f);
    assert!(
        bytes <= 4096 + BYTES_PER_INPUT_BYTE * input_len,
        "{bytes} bytes allocated for {input_len} bytes of input"
    );
    r
}

/// Bytes that tend to be constructors, sizes and descriptors.
fn amqpish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(vec![
            0x00, 0x40, 0x41, 0x43, 0x44, 0x45, 0x52, 0x53, 0x70, 0x72, 0x73, 0x75, 0x77, 0xa0,
            0xa1, 0xa3, 0xb0, 0xc0, 0xc1, 0xd0, 0xd1, 0xe0, 0xf0, 0xff, 0x10, 0x14, 0x02, 0x01
        ]),
    ];
    prop::collection::vec(byte, 0..256)
}

proptest! {
    #[test]
    fn values_round_trip(v in arb_value()) {
        let once = encoded(&v);
        let back = Decoder::new(Bytes::from(once.clone())).read_value().unwrap();
        prop_assert_eq!(&back, &v);
        let mut s = Decoder::new(Bytes::from(once.clone()));
        s.skip_value().unwrap();
        prop_assert!(s.is_empty());
        prop_assert_eq!(encoded(&back), once);
    }

    #[test]
    fn decoder_never_panics_and_allocates_in_proportion(data in amqpish_bytes()) {
        let len = data.len();
        let bytes = Bytes::from(data);
        let mut full = Decoder::new(bytes.clone());
        let read = bounded(len, || full.read_value());
        let mut cheap = Decoder::new(bytes.clone());
        let skipped = bounded(len, || cheap.skip_value());
        prop_assert_eq!(read.as_ref().err(), skipped.as_ref().err());
        if let Ok(v) = read {
            prop_assert_eq!(full.position(), cheap.position());
            // What decodes re-encodes to bytes that decode to the same value
            // (floats aside: NaN != NaN).
            let again = Decoder::new(Bytes::from(encoded(&v))).read_value().unwrap();
            prop_assert_eq!(encoded(&again), encoded(&v));
        }
        let _ = bounded(len, || Performative::decode(&mut Decoder::new(bytes.clone())));
        let _ = bounded(len, || SaslFrame::decode(&mut Decoder::new(bytes.clone())));
        let _ = bounded(len, || DeliveryState::decode(&mut Decoder::new(bytes.clone())));
    }

    #[test]
    fn frames_never_panic(body in amqpish_bytes(), doff in 0u8..4, kind in 0u8..3, channel: u16) {
        let mut f = Vec::new();
        let size = (body.len() + 8) as u32;
        f.extend_from_slice(&size.to_be_bytes());
        f.extend_from_slice(&[doff, kind]);
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&body);
        let len = f.len();
        match check_frame(&f, 512) {
            Ok(Some(n)) => {
                prop_assert_eq!(n, len);
                let frame = bounded(len, || read_frame(Bytes::from(f)));
                if let Ok(frame) = frame {
                    prop_assert_eq!(frame.channel, channel);
                }
            }
            Ok(None) => prop_assert!(false, "a whole frame reported incomplete"),
            Err(e) => prop_assert!(!e.description().is_empty()),
        }
        let _ = bounded(body.len(), || read_frame(Bytes::from(body.clone())));
    }

    #[test]
    fn sections_never_panic(data in amqpish_bytes()) {
        let len = data.len();
        let parsed = bounded(len, || Sections::parse(Bytes::from(data)));
        if let Ok(s) = parsed {
            for m in [&s.delivery_annotations, &s.message_annotations, &s.application_properties, &s.footer]
                .into_iter()
                .flatten()
            {
                prop_assert!(m.decode().is_ok());
            }
            if let Body::AmqpValue(v) = &s.body {
                prop_assert!(v.decode().is_ok());
            }
            prop_assert!(s.bare.start <= s.bare.end && s.bare.end <= len);
        }
    }

    #[test]
    fn performatives_with_arbitrary_fields_never_panic(
        code in prop::sample::select(vec![0x10u8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]),
        fields in prop::collection::vec(arb_value(), 0..14),
    ) {
        let mut b = vec![0x00, 0x53, code];
        super::encode::put_list(&mut b, &fields);
        let len = b.len();
        if let Ok(p) = bounded(len, || Performative::decode(&mut Decoder::new(Bytes::from(b)))) {
            let mut once = Vec::new();
            p.encode(&mut once);
            let again = Performative::decode(&mut Decoder::new(Bytes::from(once))).unwrap();
            prop_assert_eq!(again, p);
        }
    }
}
