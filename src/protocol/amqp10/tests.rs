//! Codec tests: every primitive in every encoding, the compound forms, the
//! bounds on hostile input, known byte vectors, message sections, and the
//! allocation budget of the transfer path.

use bytes::Bytes;

use super::encode::{put_array, put_list, put_map};
use super::*;
use crate::protocol::methods::tests::{alloc_bytes_during, allocs_during};

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

fn dec(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut d = Decoder::new(Bytes::copy_from_slice(bytes));
    let v = d.read_value()?;
    assert!(d.is_empty(), "bytes left after {v:?}");
    // The validating walk agrees.
    let mut s = Decoder::new(Bytes::copy_from_slice(bytes));
    s.skip_value().unwrap();
    assert!(s.is_empty());
    Ok(v)
}

fn sym(s: &'static str) -> Value {
    Value::Symbol(Symbol::from_static(s))
}

/// A valid instance of every encoding of types.xml, built from the table
/// itself, decodes to a value of that encoding's type.
#[test]
fn every_encoding_of_types_xml_decodes() {
    for e in ENCODINGS {
        let mut b = vec![e.code];
        let w = e.width as usize;
        match e.category {
            Category::Fixed => match e.code {
                code::BOOLEAN => b.push(1),
                code::CHAR => b.extend_from_slice(&0x41u32.to_be_bytes()),
                _ => b.extend(std::iter::repeat_n(7u8, w)),
            },
            Category::Variable => {
                b.extend_from_slice(&2u32.to_be_bytes()[4 - w..]);
                b.extend_from_slice(b"ab");
            }
            Category::Compound => {
                // Two elements: true, smalluint 5.
                b.extend_from_slice(&(w as u32 + 3).to_be_bytes()[4 - w..]);
                b.extend_from_slice(&2u32.to_be_bytes()[4 - w..]);
                b.extend_from_slice(&[code::TRUE, code::SMALLUINT, 5]);
            }
            Category::Array => {
                // Two smalluints.
                b.extend_from_slice(&(w as u32 + 3).to_be_bytes()[4 - w..]);
                b.extend_from_slice(&2u32.to_be_bytes()[4 - w..]);
                b.extend_from_slice(&[code::SMALLUINT, 1, 2]);
            }
        }
        let v = dec(&b).unwrap_or_else(|err| panic!("{} (0x{:02x}): {err}", e.name, e.code));
        assert_eq!(v.type_name(), e.ty, "{}", e.name);
        // Re-encoded, possibly in a smaller form, it decodes to the same value.
        assert_eq!(dec(&enc(&v)).unwrap(), v, "{}", e.name);
    }
}

/// (value, its smallest encoding, other encodings of the same value).
fn forms() -> Vec<(Value, Vec<u8>, Vec<Vec<u8>>)> {
    vec![
        (Value::Null, vec![0x40], vec![]),
        (Value::Bool(true), vec![0x41], vec![vec![0x56, 1]]),
        (Value::Bool(false), vec![0x42], vec![vec![0x56, 0]]),
        (Value::Ubyte(200), vec![0x50, 200], vec![]),
        (Value::Ushort(0x1234), vec![0x60, 0x12, 0x34], vec![]),
        (
            Value::Uint(0),
            vec![0x43],
            vec![vec![0x52, 0], vec![0x70, 0, 0, 0, 0]],
        ),
        (Value::Uint(7), vec![0x52, 7], vec![vec![0x70, 0, 0, 0, 7]]),
        (Value::Uint(0x1_0000), vec![0x70, 0, 1, 0, 0], vec![]),
        (
            Value::Ulong(0),
            vec![0x44],
            vec![vec![0x53, 0], vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0]],
        ),
        (
            Value::Ulong(255),
            vec![0x53, 255],
            vec![vec![0x80, 0, 0, 0, 0, 0, 0, 0, 255]],
        ),
        (
            Value::Ulong(256),
            vec![0x80, 0, 0, 0, 0, 0, 0, 1, 0],
            vec![],
        ),
        (Value::Byte(-2), vec![0x51, 0xfe], vec![]),
        (Value::Short(-2), vec![0x61, 0xff, 0xfe], vec![]),
        (
            Value::Int(-2),
            vec![0x54, 0xfe],
            vec![vec![0x71, 0xff, 0xff, 0xff, 0xfe]],
        ),
        (Value::Int(128), vec![0x71, 0, 0, 0, 128], vec![]),
        (
            Value::Long(-128),
            vec![0x55, 0x80],
            vec![vec![0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80]],
        ),
        (
            Value::Long(1 << 40),
            vec![0x81, 0, 0, 1, 0, 0, 0, 0, 0],
            vec![],
        ),
        (Value::Float(1.5), vec![0x72, 0x3f, 0xc0, 0, 0], vec![]),
        (
            Value::Double(-2.0),
            vec![0x82, 0xc0, 0, 0, 0, 0, 0, 0, 0],
            vec![],
        ),
        (
            Value::Decimal32([1, 2, 3, 4]),
            vec![0x74, 1, 2, 3, 4],
            vec![],
        ),
        (
            Value::Decimal64([1; 8]),
            [vec![0x84], vec![1; 8]].concat(),
            vec![],
        ),
        (
            Value::Decimal128([2; 16]),
            [vec![0x94], vec![2; 16]].concat(),
            vec![],
        ),
        (Value::Char('é'), vec![0x73, 0, 0, 0, 0xe9], vec![]),
        (
            Value::Timestamp(1_311_704_463_521),
            vec![0x83, 0, 0, 1, 0x31, 0x67, 0xad, 0xb8, 0xa1],
            vec![],
        ),
        (
            Value::Uuid([9; 16]),
            [vec![0x98], vec![9; 16]].concat(),
            vec![],
        ),
        (
            Value::Binary(Bytes::from_static(b"ab")),
            vec![0xa0, 2, b'a', b'b'],
            vec![vec![0xb0, 0, 0, 0, 2, b'a', b'b']],
        ),
        (
            Value::from("ab"),
            vec![0xa1, 2, b'a', b'b'],
            vec![vec![0xb1, 0, 0, 0, 2, b'a', b'b']],
        ),
        (
            sym("ab"),
            vec![0xa3, 2, b'a', b'b'],
            vec![vec![0xb3, 0, 0, 0, 2, b'a', b'b']],
        ),
        (
            Value::List(vec![]),
            vec![0x45],
            vec![vec![0xc0, 1, 0], vec![0xd0, 0, 0, 0, 4, 0, 0, 0, 0]],
        ),
        (
            Value::List(vec![Value::Uint(1), Value::Null]),
            vec![0xc0, 4, 2, 0x52, 1, 0x40],
            vec![vec![0xd0, 0, 0, 0, 7, 0, 0, 0, 2, 0x52, 1, 0x40]],
        ),
        (
            Value::Map(vec![]),
            vec![0xc1, 1, 0],
            vec![vec![0xd1, 0, 0, 0, 4, 0, 0, 0, 0]],
        ),
        (
            Value::Map(vec![(sym("k"), Value::Bool(true))]),
            vec![0xc1, 5, 2, 0xa3, 1, b'k', 0x41],
            vec![vec![0xd1, 0, 0, 0, 8, 0, 0, 0, 2, 0xa3, 1, b'k', 0x41]],
        ),
        (
            Value::Array(vec![]),
            vec![0xe0, 2, 0, 0x40],
            vec![vec![0xf0, 0, 0, 0, 5, 0, 0, 0, 0, 0x40]],
        ),
        (
            Value::Array(vec![Value::Uint(1), Value::Uint(2)]),
            vec![0xe0, 4, 2, 0x52, 1, 2],
            vec![vec![
                0xf0, 0, 0, 0, 13, 0, 0, 0, 2, 0x70, 0, 0, 0, 1, 0, 0, 0, 2,
            ]],
        ),
        (
            Value::Array(vec![sym("a"), sym("bc")]),
            vec![0xe0, 7, 2, 0xa3, 1, b'a', 2, b'b', b'c'],
            vec![vec![
                0xe0, 13, 2, 0xb3, 0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c',
            ]],
        ),
        (
            // An array of described values: one descriptor in the constructor.
            Value::Array(vec![
                Value::Described(Box::new((
                    Value::Ulong(0x75),
                    Value::Binary(Bytes::from_static(b"x")),
                ))),
                Value::Described(Box::new((
                    Value::Ulong(0x75),
                    Value::Binary(Bytes::from_static(b"")),
                ))),
            ]),
            vec![0xe0, 8, 2, 0x00, 0x53, 0x75, 0xa0, 1, b'x', 0],
            vec![],
        ),
        (
            Value::Described(Box::new((sym("x:y"), Value::Uint(3)))),
            vec![0x00, 0xa3, 3, b'x', b':', b'y', 0x52, 3],
            vec![],
        ),
    ]
}

#[test]
fn every_form_decodes_and_the_smallest_is_written() {
    for (v, smallest, others) in forms() {
        assert_eq!(enc(&v), smallest, "{v:?}");
        assert_eq!(dec(&smallest).unwrap(), v, "{smallest:02x?}");
        for o in others {
            assert_eq!(dec(&o).unwrap(), v, "{o:02x?}");
        }
    }
}

#[test]
fn compounds_switch_to_32_bits_when_large() {
    let big = Value::List(vec![Value::Binary(Bytes::from(vec![1u8; 300]))]);
    let b = enc(&big);
    assert_eq!(b[0], code::LIST32);
    assert_eq!(dec(&b).unwrap(), big);
    let many = Value::List(vec![Value::Null; 256]);
    assert_eq!(enc(&many)[0], code::LIST32);
    let map = Value::Map(vec![(sym("k"), Value::from("v")); 100]);
    assert_eq!(enc(&map)[0], code::MAP32);
    assert_eq!(dec(&enc(&map)).unwrap(), map);
    let arr = Value::Array(vec![Value::Ulong(1 << 40); 40]);
    assert_eq!(enc(&arr)[0], code::ARRAY32);
    assert_eq!(dec(&enc(&arr)).unwrap(), arr);
    let strs = Value::Array(vec![
        Value::from("x"),
        Value::String(Str::from("y".repeat(256))),
    ]);
    assert_eq!(enc(&strs)[9], code::STR32_UTF8);
    assert_eq!(dec(&enc(&strs)).unwrap(), strs);
    // Arrays of compounds, and of arrays.
    let nested = Value::Array(vec![
        Value::Array(vec![Value::Int(1)]),
        Value::Array(vec![Value::from("s")]),
    ]);
    assert_eq!(dec(&enc(&nested)).unwrap(), nested);
    let lists = Value::Array(vec![Value::List(vec![]), Value::List(vec![Value::Null])]);
    assert_eq!(dec(&enc(&lists)).unwrap(), lists);
    let maps = Value::Array(vec![Value::Map(vec![(Value::Null, Value::Null)])]);
    assert_eq!(dec(&enc(&maps)).unwrap(), maps);
}

#[test]
fn heterogeneous_arrays_are_written_as_lists() {
    let v = Value::Array(vec![Value::Uint(1), Value::from("x")]);
    assert_eq!(
        dec(&enc(&v)).unwrap(),
        Value::List(vec![Value::Uint(1), Value::from("x")])
    );
}

#[test]
fn typed_readers() {
    let mut d = Decoder::new(Bytes::from_static(&[
        0x43, 0x53, 9, 0xa3, 1, b's', 0xa1, 1, b't', 0xa0, 1, 0, 0x41, 0x83, 0, 0, 0, 0, 0, 0, 0,
        5, 0x40, 0x50, 1, 0x60, 0, 2,
    ]));
    assert_eq!(d.read_u32(), Ok(0));
    assert_eq!(d.read_u64(), Ok(9));
    assert_eq!(d.read_symbol().unwrap(), "s");
    assert_eq!(d.read_str().unwrap(), "t");
    assert_eq!(&d.read_binary().unwrap()[..], &[0]);
    assert_eq!(d.read_bool(), Ok(true));
    assert_eq!(d.read_timestamp(), Ok(5));
    assert_eq!(d.read_opt::<u32>(), Ok(None));
    assert_eq!(d.read_u8(), Ok(1));
    assert_eq!(d.read_u16(), Ok(2));
    assert!(d.is_empty());
    let mut d = Decoder::new(Bytes::from_static(&[0x40, 0x52]));
    assert_eq!(d.read_u32(), Err(DecodeError::UnexpectedNull));
    let e = Decoder::new(Bytes::from_static(&[0xa1, 1, b'x'])).read_u32();
    assert_eq!(
        e,
        Err(DecodeError::UnexpectedType {
            expected: "uint",
            code: 0xa1
        })
    );
    let (code, l) = Decoder::new(Bytes::from_static(&[0x00, 0x53, 0x17, 0x45]))
        .read_described_list_header()
        .unwrap();
    assert_eq!((code, l.remaining()), (0x17, 0));
}

#[test]
fn zero_copy_strings_and_binaries() {
    let buf = Bytes::from(enc(&Value::List(vec![
        Value::from("hello"),
        Value::Binary(Bytes::from_static(b"bin")),
    ])));
    let v = Decoder::new(buf.clone()).read_value().unwrap();
    let Value::List(items) = v else { panic!() };
    let (Value::String(s), Value::Binary(b)) = (&items[0], &items[1]) else {
        panic!()
    };
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    assert!(range.contains(&(s.as_bytes().as_ptr() as usize)));
    assert!(range.contains(&(b.as_ptr() as usize)));
}

#[test]
fn invalid_values() {
    let cases: &[(&[u8], DecodeError)] = &[
        (&[], DecodeError::Truncated),
        (&[0x70, 0, 0], DecodeError::Truncated),
        (&[0x01], DecodeError::UnknownCode(0x01)),
        (&[0x56, 2], DecodeError::InvalidBool(2)),
        (&[0x73, 0, 0x11, 0, 0], DecodeError::InvalidChar(0x110000)),
        (&[0xa1, 1, 0xff], DecodeError::InvalidUtf8),
        (&[0xa3, 1, 0xc3], DecodeError::InvalidSymbol),
        (&[0xa0, 5, 1], DecodeError::Truncated),
        (&[0xc1, 2, 1, 0x40], DecodeError::OddMapCount(1)),
        // list8 whose element overruns its size / leaves bytes.
        (&[0xc0, 2, 1, 0x52, 1], DecodeError::Truncated),
        (&[0xc0, 3, 1, 0x40, 0x40], DecodeError::SizeMismatch),
        // A count larger than the bytes of the list.
        (&[0xc0, 2, 5, 0x40], DecodeError::BadSize),
        (&[0xe0, 3, 2, 0x70, 0], DecodeError::BadSize),
        // An array constructor with two descriptors.
        (
            &[0xe0, 5, 1, 0x00, 0x44, 0x00, 0x44],
            DecodeError::BadDescriptor,
        ),
    ];
    for (bytes, err) in cases {
        let mut d = Decoder::new(Bytes::copy_from_slice(bytes));
        assert_eq!(d.read_value().as_ref(), Err(err), "{bytes:02x?}");
        let mut s = Decoder::new(Bytes::copy_from_slice(bytes));
        assert_eq!(s.skip_value().as_ref(), Err(err), "skip {bytes:02x?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn hostile_counts_do_not_allocate() {
    // A list32 claiming 2^32 - 1 elements in 8 bytes.
    static CLAIM: [u8; 13] = [
        0xd0, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0x40, 0x40, 0x40, 0x40,
    ];
    let (bytes, r) = alloc_bytes_during(|| Decoder::new(Bytes::from_static(&CLAIM)).read_value());
    assert_eq!(r, Err(DecodeError::BadSize));
    assert!(bytes < 1024, "{bytes} bytes allocated");
    // An array32 of 2^32 - 1 nulls (zero-width elements).
    static NULLS: [u8; 10] = [0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40];
    let (bytes, r) = alloc_bytes_during(|| Decoder::new(Bytes::from_static(&NULLS)).read_value());
    assert_eq!(r, Err(DecodeError::TooManyElements));
    assert!(bytes < 1024, "{bytes} bytes allocated");
    // The same claim inside a typed field (open's offered-capabilities).
    let mut open = vec![
        0x00, 0x53, 0x10, 0xd0, 0, 0, 0, 0, 0, 0, 0, 8, 0xa1, 1, b'c',
    ];
    open.extend_from_slice(&[0x40; 6]);
    open.extend_from_slice(&[0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xa3]);
    let n = (open.len() - 8) as u32;
    open[4..8].copy_from_slice(&n.to_be_bytes());
    let (bytes, r) =
        alloc_bytes_during(|| Performative::decode(&mut Decoder::new(Bytes::from(open))));
    assert_eq!(r, Err(DecodeError::BadSize));
    assert!(bytes < 1024, "{bytes} bytes allocated");
    // A few null arrays are fine, within the input's length in all.
    let few = [0xe0, 2, 3, 0x40];
    assert_eq!(dec(&few).unwrap(), Value::Array(vec![Value::Null; 3]));
}

#[test]
fn nesting_is_bounded() {
    let deep_ok: Vec<u8> = [[0xc0u8, 0, 1]; MAX_DEPTH as usize - 1]
        .concat()
        .into_iter()
        .chain([0x45])
        .collect();
    let mut fixed = deep_ok.clone();
    // Sizes from the inside out.
    for i in (0..MAX_DEPTH as usize - 1).rev() {
        fixed[i * 3 + 1] = (fixed.len() - i * 3 - 2) as u8;
    }
    assert!(dec(&fixed).is_ok());
    let mut too_deep = vec![0x45];
    for _ in 0..=MAX_DEPTH {
        let n = too_deep.len() as u32 + 4;
        too_deep = [
            vec![0xd0],
            n.to_be_bytes().to_vec(),
            vec![0, 0, 0, 1],
            too_deep,
        ]
        .concat();
    }
    assert_eq!(dec(&too_deep[9..]).map(drop), Ok(()));
    let r = Decoder::new(Bytes::from(too_deep.clone())).read_value();
    assert_eq!(r, Err(DecodeError::TooDeep));
    assert_eq!(
        Decoder::new(Bytes::from(too_deep)).skip_value(),
        Err(DecodeError::TooDeep)
    );
    let described = vec![0x00; 1000];
    assert_eq!(
        Decoder::new(Bytes::from(described.clone())).read_value(),
        Err(DecodeError::TooDeep)
    );
    assert_eq!(
        Decoder::new(Bytes::from(described)).skip_value(),
        Err(DecodeError::TooDeep)
    );
}

#[test]
fn typed_arrays_and_fields() {
    let mut out = Vec::new();
    put_array(
        &mut out,
        &[Symbol::from_static("a"), Symbol::from_static("b")],
    );
    assert_eq!(out, [0xe0, 6, 2, 0xa3, 1, b'a', 1, b'b']);
    out.clear();
    put_array(&mut out, &[1u32, 300]);
    assert_eq!(out, [0xe0, 10, 2, 0x70, 0, 0, 0, 1, 0, 0, 1, 44]);
    out.clear();
    put_array::<Str>(&mut out, &[]);
    assert_eq!(out, [0xe0, 2, 0, 0xa1]);
    out.clear();
    put_list(&mut out, &[]);
    put_map(&mut out, &[]);
    assert_eq!(out, [0x45, 0xc1, 1, 0]);
}

/// A message as ActiveMQ Artemis sends it in a transfer (list32 and map32
/// sections, as recorded by a client library), with a short amqp-value.
#[test]
fn artemis_transfer_and_message() {
    let mut f = vec![0, 0, 0, 0, 2, 0, 0, 1];
    // transfer(handle 0, delivery-id 0, tag 0x00, format 0, settled false)
    f.extend_from_slice(&[
        0x00, 0x53, 0x14, 0xc0, 0x08, 0x05, 0x43, 0x43, 0xa0, 0x01, 0x00, 0x43, 0x42,
    ]);
    // header: list32 of 3 nulls.
    f.extend_from_slice(&[
        0x00, 0x53, 0x70, 0xd0, 0, 0, 0, 7, 0, 0, 0, 3, 0x40, 0x40, 0x40,
    ]);
    // properties: message-id (string), user-id null, to.
    f.extend_from_slice(&[
        0x00, 0x53, 0x73, 0xd0, 0, 0, 0, 0x3b, 0, 0, 0, 3, 0xa1, 0x24,
    ]);
    f.extend_from_slice(b"d1d768a3-0614-4e10-9f94-30327c89614c");
    f.extend_from_slice(&[0x40, 0xa1, 0x0e]);
    f.extend_from_slice(b"stream.devices");
    // application-properties: map32 of three string pairs.
    f.extend_from_slice(&[0x00, 0x53, 0x74, 0xd1, 0, 0, 0, 0x61, 0, 0, 0, 6]);
    for s in [
        "jobType",
        "device",
        "deviceId",
        "eac4ec5e59fe313164be0765f3bac57c",
        "templateId",
        "Netin ICMP Default",
    ] {
        f.extend_from_slice(&[0xa1, s.len() as u8]);
        f.extend_from_slice(s.as_bytes());
    }
    // amqp-value: str32.
    let json = br#"{"timestamp":1715527807845}"#;
    f.extend_from_slice(&[0x00, 0x53, 0x77, 0xb1, 0, 0, 0, json.len() as u8]);
    f.extend_from_slice(json);
    let n = f.len() as u32;
    f[..4].copy_from_slice(&n.to_be_bytes());

    assert_eq!(check_frame(&f, 65536), Ok(Some(f.len())));
    let frame = read_frame(Bytes::from(f)).unwrap();
    let Some(FrameBody::Amqp(Performative::Transfer(t))) = frame.body else {
        panic!()
    };
    assert_eq!(
        (t.handle, t.delivery_id, t.message_format, t.settled),
        (0, Some(0), Some(0), Some(false))
    );
    assert_eq!(t.delivery_tag.as_deref(), Some(&[0u8][..]));
    let s = Sections::parse(frame.payload.clone()).unwrap();
    assert_eq!(s.header, Some(Header::default()));
    let p = s.properties.as_ref().unwrap();
    assert_eq!(
        p.message_id,
        Some(MessageId::String(Str::from_static(
            "d1d768a3-0614-4e10-9f94-30327c89614c"
        )))
    );
    assert_eq!(p.to.as_ref().unwrap(), "stream.devices");
    let ap = s.application_properties.as_ref().unwrap();
    assert_eq!(
        ap.get("deviceId").unwrap(),
        Some(Value::from("eac4ec5e59fe313164be0765f3bac57c"))
    );
    assert_eq!(ap.get("nope").unwrap(), None);
    assert_eq!(ap.decode().unwrap().len(), 3);
    let Body::AmqpValue(v) = &s.body else {
        panic!("{:?}", s.body)
    };
    assert_eq!(
        v.decode().unwrap().as_str(),
        Some(std::str::from_utf8(json).unwrap())
    );
    // The bare message runs from the properties to the end.
    assert_eq!(s.bare.end, frame.payload.len());
    assert_eq!(
        &frame.payload[s.bare.start..s.bare.start + 3],
        &[0x00, 0x53, 0x73]
    );
}

/// The transfer path: decoding a transfer frame (no delivery state) and
/// encoding a transfer with header, properties and data into a buffer with
/// room allocate nothing.
#[test]
fn transfer_path_allocates_nothing() {
    let t = Transfer {
        handle: 3,
        delivery_id: Some(77),
        delivery_tag: Some(Bytes::from_static(b"tag-1")),
        message_format: Some(0),
        settled: Some(false),
        ..Default::default()
    };
    let header = Header {
        durable: Some(true),
        ..Default::default()
    };
    let props = Properties {
        message_id: Some(MessageId::String(Str::from_static("id-1"))),
        to: Some(Str::from_static("/queues/q")),
        content_type: Some(Symbol::from_static("text/plain")),
        creation_time: Some(1_700_000_000_000),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(4096);
    let mut msg = Vec::with_capacity(1024);
    let (n, ()) = allocs_during(|| {
        write_header(&mut msg, &header);
        begin_map_section(&mut msg, descriptor::MESSAGE_ANNOTATIONS).symbol("x-opt-a", "b");
        write_properties(&mut msg, &props);
        write_data(&mut msg, b"hello");
        write_transfer(&mut out, 1, &t, &msg);
    });
    assert_eq!(n, 0, "encoding allocated");
    // A shared buffer, as a connection's read buffer hands out.
    let frame = Bytes::from(out.clone());
    let _warm = frame.clone();
    let (n, f) = allocs_during(|| read_frame(frame.clone()).unwrap());
    assert_eq!(n, 0, "decoding allocated");
    assert_eq!(f.body, Some(FrameBody::Amqp(Performative::Transfer(t))));
    let (n, s) = allocs_during(|| Sections::parse(f.payload.clone()).unwrap());
    assert_eq!(n, 0, "parsing the sections allocated");
    assert_eq!(s.properties, Some(props));
    assert_eq!(s.header, Some(header));
}

#[test]
fn performative_sizes_stay_small() {
    // Moved on every frame: attach (source and target inline) is boxed.
    let sizes = [
        std::mem::size_of::<Performative>(),
        std::mem::size_of::<Transfer>(),
        std::mem::size_of::<DeliveryState>(),
        std::mem::size_of::<Value>(),
    ];
    eprintln!("Performative, Transfer, DeliveryState, Value: {sizes:?} bytes");
    assert!(sizes[0] <= 256 && sizes[1] <= 256, "{sizes:?}");
    assert!(sizes[3] <= 40, "{sizes:?}");
}
