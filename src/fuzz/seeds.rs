//! Valid inputs for every fuzz target, made by the codec's and the store's
//! own writers: a frame for every method, a whole client session, tables
//! with every field type, content headers with every property, a
//! definitions log written by `DefsLog`, segment files written by
//! `SegmentLog`; for AMQP 1.0, a whole client session, every performative
//! and SASL frame, values of every type, messages with every section. `tests/fuzz_smoke.rs` starts from them, and
//! `scripts/fuzz.sh` writes them out as the cargo-fuzz seed corpus.

use std::path::PathBuf;

use bytes::Bytes;

use crate::protocol::amqp10::{self as a10, Encode};
use crate::protocol::methods::{self, *};
use crate::protocol::{
    write_body, write_content_header, write_heartbeat, write_method, BasicProperties, FieldTable,
    FieldValue, Method, PROTOCOL_HEADER,
};
use crate::store::defs_log::{BindingRecord, DefsLog, DestKind, Record};
use crate::store::record::{self, Publish};
use crate::store::segments::SegmentLog;

/// The seeds of target `name` (empty for an unknown name).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "frame" => frames(),
        "method" => method_payloads(),
        "table" => tables(),
        "content_header" => content_headers(),
        "defs_log" => defs_logs(),
        "segment_record" => segment_records(),
        "segment_scan" => segment_files(),
        "amqp10_frame" => amqp10_frames(),
        "amqp10_value" => amqp10_values(),
        "amqp10_message" => amqp10_messages(),
        "stream_scan" => stream_files(),
        "stream_offsets" => stream_offsets(),
        _ => Vec::new(),
    }
}

fn s(v: &str) -> Bytes {
    Bytes::copy_from_slice(v.as_bytes())
}

fn method_payloads() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = methods::sample_methods()
        .iter()
        .map(|m| {
            let mut p = Vec::new();
            m.encode(&mut p);
            p
        })
        .collect();
    // The same methods with every argument at its default (mostly zeros).
    let defaults: Vec<Vec<u8>> = out
        .iter()
        .filter_map(|p| {
            let mut zero = p[..4].to_vec();
            zero.resize(64, 0);
            let m = Method::decode(Bytes::from(zero)).ok()?;
            let mut e = Vec::new();
            m.encode(&mut e);
            Some(e)
        })
        .collect();
    out.extend(defaults);
    out
}

/// A client's side of a whole session: the handshake, a channel, a queue,
/// publishes with confirms, a consumer, acks, a heartbeat, the close.
pub fn session() -> Vec<u8> {
    let mut out = PROTOCOL_HEADER.to_vec();
    let mut client_props = FieldTable::new();
    client_props.insert("product", FieldValue::LongStr(s("warren-fuzz")));
    let mut caps = FieldTable::new();
    caps.insert("publisher_confirms", FieldValue::Bool(true));
    client_props.insert("capabilities", FieldValue::Table(caps));
    let handshake: Vec<(u16, Method)> = vec![
        (
            0,
            ConnectionStartOk {
                client_properties: client_props,
                mechanism: s("PLAIN"),
                response: Bytes::from_static(b"\0guest\0guest"),
                locale: s("en_US"),
            }
            .into(),
        ),
        (
            0,
            ConnectionTuneOk {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 60,
            }
            .into(),
        ),
        (
            0,
            ConnectionOpen {
                virtual_host: s("/"),
                ..Default::default()
            }
            .into(),
        ),
        (1, ChannelOpen::default().into()),
        (1, ConfirmSelect::default().into()),
        (
            1,
            QueueDeclare {
                queue: s("fuzz-q"),
                auto_delete: true,
                ..Default::default()
            }
            .into(),
        ),
        (
            1,
            BasicQos {
                prefetch_count: 10,
                ..Default::default()
            }
            .into(),
        ),
    ];
    for (ch, m) in &handshake {
        write_method(&mut out, *ch, m);
    }
    let props = BasicProperties {
        content_type: Some(s("text/plain")),
        delivery_mode: Some(2),
        headers: Some([("h", FieldValue::I32(1))].into_iter().collect()),
        ..Default::default()
    };
    for body in [&b"hello"[..], &[7u8; 300][..]] {
        let publish = BasicPublish {
            routing_key: s("fuzz-q"),
            ..Default::default()
        };
        write_method(&mut out, 1, &publish.into());
        write_content_header(&mut out, 1, 60, body.len() as u64, &props.to_bytes());
        write_body(&mut out, 1, body, 4096);
    }
    let tail: Vec<(u16, Method)> = vec![
        (
            1,
            BasicConsume {
                queue: s("fuzz-q"),
                consumer_tag: s("c1"),
                ..Default::default()
            }
            .into(),
        ),
        (
            1,
            BasicAck {
                delivery_tag: 1,
                multiple: true,
            }
            .into(),
        ),
        (1, ChannelClose::default().into()),
        (0, ConnectionClose::default().into()),
    ];
    for (ch, m) in &tail {
        write_method(&mut out, *ch, m);
    }
    write_heartbeat(&mut out);
    out
}

fn frames() -> Vec<Vec<u8>> {
    let mut out = vec![session()];
    for m in methods::sample_methods() {
        let mut f = Vec::new();
        write_method(&mut f, 1, &m);
        out.push(f);
    }
    let mut f = Vec::new();
    write_content_header(&mut f, 1, 60, 3, &all_properties().to_bytes());
    write_body(&mut f, 1, b"abc", 0);
    write_heartbeat(&mut f);
    out.push(f);
    out
}

/// A table with every field type RabbitMQ knows, nested ones included.
pub fn every_type_table() -> FieldTable {
    let mut inner = FieldTable::new();
    inner.insert("k", FieldValue::LongStr(s("v")));
    [
        ("t", FieldValue::Bool(true)),
        ("b", FieldValue::I8(-2)),
        ("B", FieldValue::U8(250)),
        ("s", FieldValue::I16(-300)),
        ("u", FieldValue::U16(65000)),
        ("I", FieldValue::I32(-70000)),
        ("i", FieldValue::U32(4_000_000_000)),
        ("l", FieldValue::I64(-5_000_000_000)),
        ("f", FieldValue::F32(1.5)),
        ("d", FieldValue::F64(-2.25)),
        ("D", FieldValue::Decimal(2, 12345)),
        ("S", FieldValue::LongStr(s("hello"))),
        (
            "A",
            FieldValue::Array(vec![
                FieldValue::I32(1),
                FieldValue::LongStr(s("two")),
                FieldValue::Void,
                FieldValue::Array(vec![FieldValue::Bool(false)]),
            ]),
        ),
        ("T", FieldValue::Timestamp(1_700_000_000)),
        ("F", FieldValue::Table(inner)),
        ("V", FieldValue::Void),
        ("x", FieldValue::ByteArray(Bytes::from_static(&[0, 1, 255]))),
    ]
    .into_iter()
    .collect()
}

fn tables() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut t = Vec::new();
    every_type_table().encode(&mut t);
    out.push(t);
    out.push(vec![0, 0, 0, 0]);
    for (k, v) in every_type_table().iter() {
        let mut one = FieldTable::new();
        one.insert(std::str::from_utf8(k).unwrap_or("k"), v.clone());
        let mut b = Vec::new();
        one.encode(&mut b);
        out.push(b);
    }
    out
}

fn all_properties() -> BasicProperties {
    BasicProperties {
        content_type: Some(s("application/json")),
        content_encoding: Some(s("gzip")),
        headers: Some(every_type_table()),
        delivery_mode: Some(2),
        priority: Some(7),
        correlation_id: Some(s("corr")),
        reply_to: Some(s("amq.rabbitmq.reply-to")),
        expiration: Some(s("60000")),
        message_id: Some(s("mid")),
        timestamp: Some(1_700_000_000),
        kind: Some(s("type")),
        user_id: Some(s("guest")),
        app_id: Some(s("app")),
        cluster_id: Some(s("cluster")),
    }
}

/// Header frame payloads: every property, none, and the ones the broker
/// reads on the publish path.
fn content_headers() -> Vec<Vec<u8>> {
    let few = BasicProperties {
        delivery_mode: Some(1),
        priority: Some(3),
        expiration: Some(s("10")),
        ..Default::default()
    };
    [all_properties(), BasicProperties::default(), few]
        .iter()
        .map(|p| {
            let mut f = Vec::new();
            write_content_header(&mut f, 1, 60, 1234, &p.to_bytes());
            f[7..f.len() - 1].to_vec()
        })
        .collect()
}

fn defs_records() -> Vec<Record> {
    let mut args = FieldTable::new();
    args.insert("x-message-ttl", FieldValue::I32(60_000));
    args.insert("x-dead-letter-exchange", FieldValue::LongStr(s("dlx")));
    let binding = |dest_kind| BindingRecord {
        vhost: "/".into(),
        source: "amq.topic".into(),
        dest_kind,
        dest: "q1".into(),
        key: "a.#".into(),
        args: args.clone(),
    };
    vec![
        Record::VhostPut {
            name: "/".into(),
            description: "Default virtual host".into(),
            tags: vec!["a".into()],
            default_queue_type: "classic".into(),
            limits: vec![("max-connections".into(), 10)],
        },
        Record::UserPut {
            name: "guest".into(),
            algorithm: "rabbit_password_hashing_sha256".into(),
            hash: vec![1, 2, 3, 4, 5, 6, 7, 8],
            tags: vec!["administrator".into()],
            limits: vec![],
        },
        Record::PermissionSet {
            user: "guest".into(),
            vhost: "/".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        },
        Record::TopicPermissionSet {
            user: "guest".into(),
            vhost: "/".into(),
            exchange: "amq.topic".into(),
            write: "^a".into(),
            read: ".*".into(),
        },
        Record::Initialized,
        Record::ParameterSet {
            vhost: "/".into(),
            component: "shovel".into(),
            name: "s1".into(),
            value: r#"{"dest-uri":"amqp://","src-queue":"q1","src-uri":"amqp://"}"#.into(),
        },
        Record::NextQueueId(42),
        Record::ExchangeDeclare {
            vhost: "/".into(),
            name: "x1".into(),
            kind: "topic".into(),
            durable: true,
            auto_delete: false,
            internal: false,
            args: args.clone(),
        },
        Record::QueueDeclare {
            vhost: "/".into(),
            name: "q1".into(),
            id: 7,
            home: 1,
            auto_delete: false,
            args: every_type_table(),
        },
        Record::ClusterQueue {
            vhost: "/".into(),
            name: "q2".into(),
            id: 8,
            home: 0,
            durable: true,
            auto_delete: false,
            exclusive: false,
            owner: "warren@a".into(),
            args: every_type_table(),
        },
        Record::BindingAdd(binding(DestKind::Queue)),
        Record::BindingAdd(binding(DestKind::Exchange)),
        Record::BindingRemove(binding(DestKind::Queue)),
        Record::QueueDelete {
            vhost: "/".into(),
            name: "q1".into(),
        },
        Record::ExchangeDelete {
            vhost: "/".into(),
            name: "x1".into(),
        },
        Record::TopicPermissionClear {
            user: "guest".into(),
            vhost: "/".into(),
            exchange: "amq.topic".into(),
        },
        Record::PermissionClear {
            user: "guest".into(),
            vhost: "/".into(),
        },
        Record::UserDelete {
            name: "guest".into(),
        },
        Record::VhostDelete { name: "v".into() },
    ]
}

/// A scratch directory for the store's writers.
fn scratch(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "warren-fuzz-seeds-{what}-{}-{nanos}",
        std::process::id()
    ))
}

/// A definitions log written by `DefsLog`, and each record body alone.
fn defs_logs() -> Vec<Vec<u8>> {
    let records = defs_records();
    let mut out = Vec::new();
    for r in &records {
        let mut f = Vec::new();
        r.encode(&mut f);
        out.push(f[8..].to_vec());
    }
    let dir = scratch("defs");
    let written = (|| -> std::io::Result<Vec<u8>> {
        let (mut log, _) = DefsLog::open(&dir)?;
        for chunk in records.chunks(5) {
            let mut frames = Vec::new();
            chunk.iter().for_each(|r| r.encode(&mut frames));
            log.append(&frames)?;
        }
        drop(log);
        std::fs::read(dir.join(crate::store::defs_log::FILE_NAME))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    out.push(written.expect("definitions log seed"));
    out
}

fn publish<'a>(queue_id: u64, seq: u64, body: &'a [u8], expires_at: u64) -> Publish<'a> {
    Publish {
        queue_id,
        seq,
        exchange: b"amq.direct",
        routing_key: b"key",
        properties: &[0x10, 0x00, 2],
        body,
        expires_at,
    }
}

fn segment_records() -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    record::encode_publish(&mut all, &publish(1, 1, b"hello", 0));
    record::encode_publish(&mut all, &publish(1, 2, b"ttl", 1_700_000_000_000));
    record::encode_acks(&mut all, 1, &mut [1, 2, 300, 70_000]);
    record::encode_queue_gone(&mut all, 1, record::ALL_SEQS);
    record::encode_queue_gone(&mut all, 2, 9);
    vec![all]
}

/// The `.seg` files of `dir`, concatenated in name order.
fn seg_image(dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    names.sort();
    let mut image = Vec::new();
    for n in names {
        image.extend(std::fs::read(n)?);
    }
    Ok(image)
}

/// Segment files written by `SegmentLog` (small segments, so several),
/// concatenated in number order: `segment_scan` cuts them apart again.
fn segment_files() -> Vec<Vec<u8>> {
    let dir = scratch("segments");
    let written = (|| -> std::io::Result<Vec<u8>> {
        let (mut log, _) = SegmentLog::open(&dir, 256)?;
        let body = [b'm'; 40];
        let mut locs = Vec::new();
        for seq in 1..=8u64 {
            let expiry = if seq % 3 == 0 { 1_700_000_000_000 } else { 0 };
            locs.push(log.append_publish(&publish(seq % 2 + 1, seq, &body, expiry)));
        }
        log.append_ack(2, 1, locs[0]);
        log.append_ack(2, 3, locs[2]);
        log.append_queue_gone(1, 4, [locs[1], locs[3]]);
        log.flush()?;
        seg_image(&dir)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let image = written.expect("segment seed");
    let first = image
        .get(..record::SEGMENT_HEADER_LEN * 2)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    vec![image, first]
}

/// A stream's segments written by `StreamLog` (small segments, so
/// several; chunks with records and filters), concatenated in order:
/// `stream_scan` cuts them apart again.
fn stream_files() -> Vec<Vec<u8>> {
    use crate::store::stream_log::{ChunkBuilder, StreamLog};
    let dir = scratch("stream");
    let written = (|| -> std::io::Result<Vec<u8>> {
        let mut log = StreamLog::open(&dir, 300)?;
        let mut offset = 0;
        for i in 0..6u64 {
            let mut b = ChunkBuilder::new();
            for _ in 0..=i % 3 {
                b.push(
                    b"ex",
                    b"key",
                    |o| o.extend_from_slice(&[0x20, 0, 0, 0, 0, 0]),
                    &[b'm'; 30],
                );
            }
            let n = b.count as u64;
            let filter: &[u8] = if i % 2 == 0 { &[1; 17] } else { &[] };
            log.append(b.seal(offset, 1_700_000_000_000 + i, filter))?;
            offset += n;
        }
        seg_image(&dir)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    vec![written.expect("stream seed")]
}

/// A stream's offsets file written by `Offsets`.
fn stream_offsets() -> Vec<Vec<u8>> {
    use crate::core::stream::tracking::Offsets;
    let dir = scratch("offsets");
    let _ = std::fs::create_dir_all(&dir);
    let written = (|| -> std::io::Result<Vec<u8>> {
        let mut o = Offsets::open(&dir)?;
        for (i, tag) in ["reader", "amq.ctag-x", "other"].iter().enumerate() {
            o.acked(&Bytes::from_static(tag.as_bytes()), i as u64 * 7);
        }
        o.flush(&mut Vec::new())?;
        o.acked(&Bytes::from_static(b"reader"), 99);
        o.flush(&mut Vec::new())?;
        std::fs::read(dir.join("offsets"))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    vec![written.expect("offsets seed")]
}

/// A client's side of a whole AMQP 1.0 session: SASL PLAIN, open, begin,
/// a sender and a receiver link, a transfer with a message, flow,
/// disposition, a heartbeat, detach, end, close.
pub fn amqp10_session() -> Vec<u8> {
    use a10::{Performative as P, Symbol};
    let mut out = a10::SASL_HEADER.to_vec();
    let init = a10::SaslInit {
        mechanism: Symbol::from_static("PLAIN"),
        initial_response: Some(Bytes::from_static(b"\0guest\0guest")),
        hostname: Some(a10::Str::from_static("localhost")),
    };
    a10::write_sasl_frame(&mut out, &init.into());
    out.extend_from_slice(a10::AMQP_HEADER);
    let target = a10::Target {
        address: Some(a10::Str::from_static("/queues/q")),
        ..Default::default()
    };
    let source = a10::Source {
        address: Some(a10::Str::from_static("/queues/q")),
        ..Default::default()
    };
    let frames: Vec<P> = vec![
        a10::Open {
            container_id: a10::Str::from_static("fuzz"),
            max_frame_size: 65_536,
            idle_time_out: Some(60_000),
            ..Default::default()
        }
        .into(),
        a10::Begin {
            next_outgoing_id: 0,
            incoming_window: 100,
            outgoing_window: 100,
            ..Default::default()
        }
        .into(),
        a10::Attach {
            name: a10::Str::from_static("sender"),
            handle: 0,
            role: a10::role::SENDER,
            target: Some(a10::TargetOrCoordinator::Target(target)),
            ..Default::default()
        }
        .into(),
        a10::Attach {
            name: a10::Str::from_static("receiver"),
            handle: 1,
            role: a10::role::RECEIVER,
            source: Some(source),
            ..Default::default()
        }
        .into(),
        a10::Flow {
            incoming_window: 100,
            next_outgoing_id: 1,
            outgoing_window: 100,
            handle: Some(1),
            link_credit: Some(10),
            ..Default::default()
        }
        .into(),
    ];
    for p in &frames {
        a10::write_frame(&mut out, 1, p, b"");
    }
    let transfer = a10::Transfer {
        handle: 0,
        delivery_id: Some(0),
        delivery_tag: Some(Bytes::from_static(b"\0")),
        message_format: Some(0),
        ..Default::default()
    };
    for m in amqp10_messages().iter().take(2) {
        a10::write_transfer(&mut out, 1, &transfer, m);
    }
    let tail: Vec<P> = vec![
        a10::Disposition {
            role: a10::role::RECEIVER,
            first: 0,
            last: Some(1),
            settled: true,
            state: Some(a10::DeliveryState::Accepted(a10::Accepted {})),
            ..Default::default()
        }
        .into(),
        a10::Detach {
            handle: 0,
            closed: true,
            ..Default::default()
        }
        .into(),
        a10::End::default().into(),
        a10::Close::default().into(),
    ];
    a10::write_heartbeat(&mut out);
    for p in &tail {
        a10::write_frame(&mut out, 1, p, b"");
    }
    out
}

fn amqp10_frames() -> Vec<Vec<u8>> {
    let mut out = vec![amqp10_session()];
    for p in a10::Performative::samples() {
        let mut f = Vec::new();
        a10::write_frame(&mut f, 3, &p, b"");
        out.push(f);
    }
    for s in a10::SaslFrame::samples() {
        let mut f = Vec::new();
        a10::write_sasl_frame(&mut f, &s);
        out.push(f);
    }
    out
}

/// A list holding a value of every type, and a map and an array of them.
fn amqp10_every_type() -> a10::Value {
    use a10::Value as V;
    let leaves = vec![
        V::Null,
        V::Bool(true),
        V::Ubyte(1),
        V::Ushort(2),
        V::Uint(0),
        V::Uint(3),
        V::Uint(70_000),
        V::Ulong(0),
        V::Ulong(4),
        V::Ulong(1 << 40),
        V::Byte(-1),
        V::Short(-2),
        V::Int(-3),
        V::Int(-70_000),
        V::Long(-4),
        V::Long(-(1 << 40)),
        V::Float(1.5),
        V::Double(-2.5),
        V::Decimal32([1; 4]),
        V::Decimal64([2; 8]),
        V::Decimal128([3; 16]),
        V::Char('x'),
        V::Timestamp(1_700_000_000_000),
        V::Uuid([4; 16]),
        V::Binary(Bytes::from_static(b"bin")),
        V::from("str"),
        V::Symbol(a10::Symbol::from_static("sym")),
    ];
    let map = V::Map(vec![(V::from("k"), V::List(leaves.clone()))]);
    let array = V::Array(vec![V::Uint(1), V::Uint(300)]);
    let described = V::Described(Box::new((V::Ulong(0x77), array.clone())));
    V::List([leaves, vec![map, array, described]].concat())
}

fn amqp10_values() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut v = Vec::new();
    amqp10_every_type().encode(&mut v);
    out.push(v);
    for s in a10::DeliveryState::samples() {
        let mut v = Vec::new();
        s.encode(&mut v);
        out.push(v);
    }
    for p in a10::Performative::samples() {
        let mut v = Vec::new();
        p.encode(&mut v);
        out.push(v);
    }
    out
}

fn amqp10_messages() -> Vec<Vec<u8>> {
    use a10::descriptor;
    let mut full = Vec::new();
    a10::write_header(&mut full, &a10::Header::sample());
    a10::write_delivery_annotations(&mut full, &a10::Fields::new());
    a10::begin_map_section(&mut full, descriptor::MESSAGE_ANNOTATIONS)
        .symbol("x-opt-routing-key", "rk")
        .symbol("x-opt-n", &1u32);
    a10::write_properties(&mut full, &a10::Properties::sample());
    a10::begin_map_section(&mut full, descriptor::APPLICATION_PROPERTIES).entry("k", "v");
    a10::write_data(&mut full, b"hello");
    a10::write_data(&mut full, b"world");
    a10::write_footer(&mut full, &a10::Fields::new());
    let mut data = Vec::new();
    a10::write_data(&mut data, b"body");
    let mut value = Vec::new();
    a10::write_properties(&mut value, &a10::Properties::default());
    a10::write_amqp_value(&mut value, &amqp10_every_type());
    let mut seq = Vec::new();
    a10::write_amqp_sequence(&mut seq, &[a10::Value::Uint(1), a10::Value::from("x")]);
    a10::write_amqp_sequence(&mut seq, &[]);
    vec![data, full, value, seq]
}
