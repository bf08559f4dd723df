//! The wire codec on the publish → deliver path, in two bench groups:
//!
//! - `frame`: parsing and encoding frames.
//!   - `frame/parse/basic.publish`, `frame/parse/content_header`: one frame,
//!     `check_frame` then `Method::decode` / `parse_content_header`.
//!   - `frame/parse/publish_stream/…`: a read buffer holding many publishes
//!     (method + content header + body frames each), taken apart exactly as
//!     `Connection::process` and `Connection::frame` do: `check_frame`,
//!     `BytesMut::split_to(..).freeze()`, the payload slice, then
//!     `Method::decode` (the generated codec over `protocol::reader::Reader`)
//!     or `parse_content_header`; a body payload is kept as its slice, as
//!     `Channel::content` keeps a one-frame body. Channels, routing and
//!     queues are left out (see `benches/publish.rs` for those). Filling the
//!     buffer (the `read(2)` copy `Socket::fill` does) is setup, not timed.
//!   - `frame/encode/…`: what `Channel::deliver` writes for one delivery:
//!     a `BasicDeliver` built from the message's `Bytes` handles, then
//!     `write_method` + `write_content_header` + `write_body` into a reused
//!     output buffer (the socket's `wbuf`).
//! - `field_table`: decoding, skipping (as publish validation does) and
//!   encoding the tables a broker meets: the `client-properties` pika and
//!   lapin send in connection.start-ok (with their `capabilities` table),
//!   and a message `headers` table with strings, integers, a nested table and
//!   an array. `field_table/decode/basic_properties+headers` decodes a whole
//!   property list with such headers, which is what routing through a headers
//!   exchange pays per message.
//!
//! Throughput is per message (`elem/s`) or per byte of input or output
//! (`B/s`), as named in each benchmark.
//!
//! Run with `cargo bench --bench protocol` (add e.g. `-- frame/parse` to pick
//! benchmarks, `--warm-up-time 1 --measurement-time 2` for a quick run).
//! Every input is built once outside the timed closure, and output buffers are
//! reused, as in the broker.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use warren::protocol::constants::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use warren::protocol::methods::{BasicDeliver, BasicPublish};
use warren::protocol::reader::Reader;
use warren::protocol::{
    check_frame, parse_content_header, write_body, write_content_header, write_method,
    BasicProperties, FieldTable, FieldValue, Method,
};

/// The broker's default frame_max (`--frame-max`).
const FRAME_MAX: u32 = 131072;
/// A typical small message body.
const BODY: [u8; 256] = [b'x'; 256];
/// Publishes in one buffer for `frame/parse/publish_stream`.
const STREAM_SMALL: usize = 1000;
/// Body size and count of the large-message stream.
const LARGE_BODY: usize = 16 * 1024;
const STREAM_LARGE: usize = 64;

/// Properties most clients send: content type, persistent delivery mode.
fn properties() -> Bytes {
    BasicProperties {
        content_type: Some(Bytes::from_static(b"application/json")),
        delivery_mode: Some(2),
        ..Default::default()
    }
    .to_bytes()
}

/// A frame in a shared buffer, as `Connection::process` splits it off the
/// socket's read buffer (the clone promotes it to shared storage up front, so
/// the timed slices only bump a reference count).
fn shared(v: Vec<u8>) -> Bytes {
    let b = Bytes::from(v);
    let _ = b.clone();
    b
}

fn publish_method() -> Method {
    Method::from(BasicPublish {
        ticket: 0,
        exchange: Bytes::from_static(b"amq.topic"),
        routing_key: Bytes::from_static(b"orders.eu.created"),
        mandatory: false,
        immediate: false,
    })
}

fn publish_frame() -> Bytes {
    let mut out = Vec::new();
    write_method(&mut out, 1, &publish_method());
    shared(out)
}

fn header_frame() -> Bytes {
    let mut out = Vec::new();
    write_content_header(&mut out, 1, 60, BODY.len() as u64, &properties());
    shared(out)
}

/// `n` publishes of `body` on channel 1, as a client writes them.
fn publish_stream(n: usize, body: &[u8]) -> Vec<u8> {
    let m = publish_method();
    let props = properties();
    let mut out = Vec::new();
    for _ in 0..n {
        write_method(&mut out, 1, &m);
        write_content_header(&mut out, 1, 60, body.len() as u64, &props);
        write_body(&mut out, 1, body, FRAME_MAX);
    }
    out
}

/// `Connection::process` + `Connection::frame` without the channel: takes every
/// whole frame off `rbuf` and decodes it. Returns the number of messages
/// (body frames) seen.
fn parse_all(rbuf: &mut BytesMut) -> usize {
    let mut bodies = 0;
    while let Some(head) = check_frame(rbuf, FRAME_MAX).expect("valid frames") {
        let frame = rbuf.split_to(head.total_len()).freeze();
        let payload = frame.slice(7..frame.len() - 1);
        match head.kind {
            FRAME_METHOD => {
                black_box(Method::decode(payload).expect("valid method"));
            }
            FRAME_HEADER => {
                black_box(parse_content_header(payload).expect("valid header"));
            }
            FRAME_BODY => {
                black_box(payload);
                bodies += 1;
            }
            _ => unreachable!("only publishes in the stream"),
        }
    }
    bodies
}

fn frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");

    // ---- parse ----
    g.throughput(Throughput::Elements(1));
    let f = publish_frame();
    g.bench_function("parse/basic.publish", |b| {
        b.iter(|| {
            let head = check_frame(black_box(&f), FRAME_MAX).unwrap().unwrap();
            let m = Method::decode(f.slice(head.payload_range())).unwrap();
            black_box(m)
        })
    });
    let f = header_frame();
    g.bench_function("parse/content_header", |b| {
        b.iter(|| {
            let head = check_frame(black_box(&f), FRAME_MAX).unwrap().unwrap();
            let h = parse_content_header(f.slice(head.payload_range())).unwrap();
            black_box(h)
        })
    });

    let small = publish_stream(STREAM_SMALL, &BODY);
    g.throughput(Throughput::Elements(STREAM_SMALL as u64));
    g.bench_function(
        format!("parse/publish_stream/{STREAM_SMALL}x256B/msgs"),
        |b| {
            b.iter_batched(
                || BytesMut::from(&small[..]),
                |mut rbuf| {
                    let n = parse_all(&mut rbuf);
                    debug_assert_eq!(n, STREAM_SMALL);
                    // Returned, so the buffer is freed outside the timing
                    // (in the broker the bodies live on in queues).
                    rbuf
                },
                BatchSize::SmallInput,
            )
        },
    );
    let large = publish_stream(STREAM_LARGE, &[b'y'; LARGE_BODY]);
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function(
        format!("parse/publish_stream/{STREAM_LARGE}x16KiB/bytes"),
        |b| {
            b.iter_batched(
                || BytesMut::from(&large[..]),
                |mut rbuf| {
                    parse_all(&mut rbuf);
                    rbuf
                },
                BatchSize::SmallInput,
            )
        },
    );

    // ---- encode ----
    let consumer_tag = Bytes::from_static(b"amq.ctag-AAAAAAAAAAAAAAAAAAAAAA");
    let exchange = Bytes::from_static(b"amq.topic");
    let routing_key = Bytes::from_static(b"orders.eu.created");
    let props = properties();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut tag = 0u64;
    // `Channel::deliver`: the method is built per delivery from the message's
    // handles; the content is written after it.
    let mut deliver = |out: &mut Vec<u8>, body: &[u8]| {
        tag += 1;
        let m = BasicDeliver {
            consumer_tag: consumer_tag.clone(),
            delivery_tag: tag,
            redelivered: false,
            exchange: exchange.clone(),
            routing_key: routing_key.clone(),
        };
        write_method(out, 1, &m.into());
        write_content_header(out, 1, 60, body.len() as u64, &props);
        write_body(out, 1, body, FRAME_MAX);
    };

    g.throughput(Throughput::Elements(1));
    g.bench_function("encode/basic.deliver+header+body/256B", |b| {
        b.iter(|| {
            out.clear();
            deliver(&mut out, black_box(&BODY));
            black_box(out.len())
        })
    });
    g.throughput(Throughput::Elements(STREAM_SMALL as u64));
    g.bench_function(
        format!("encode/deliver_stream/{STREAM_SMALL}x256B/msgs"),
        |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..STREAM_SMALL {
                    deliver(&mut out, black_box(&BODY));
                }
                black_box(out.len())
            })
        },
    );
    let big = vec![b'y'; LARGE_BODY];
    out.clear();
    deliver(&mut out, &big);
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function("encode/basic.deliver+header+body/16KiB/bytes", |b| {
        b.iter(|| {
            out.clear();
            deliver(&mut out, black_box(&big));
            black_box(out.len())
        })
    });
    g.finish();
}

fn s(v: &'static str) -> FieldValue {
    FieldValue::LongStr(Bytes::from_static(v.as_bytes()))
}

/// pika 1.3's `client_properties` (`pika.connection.Connection._client_properties`).
fn pika_client_properties() -> FieldTable {
    let caps: FieldTable = [
        ("authentication_failure_close", FieldValue::Bool(true)),
        ("basic.nack", FieldValue::Bool(true)),
        ("connection.blocked", FieldValue::Bool(true)),
        ("consumer_cancel_notify", FieldValue::Bool(true)),
        ("publisher_confirms", FieldValue::Bool(true)),
    ]
    .into_iter()
    .collect();
    [
        ("product", s("Pika Python Client Library")),
        ("platform", s("Python 3.12.3")),
        ("capabilities", FieldValue::Table(caps)),
        ("information", s("See http://pika.rtfd.org")),
        ("version", s("1.3.2")),
    ]
    .into_iter()
    .collect()
}

/// lapin 2's `client-properties` (its defaults plus a `connection_name`).
fn lapin_client_properties() -> FieldTable {
    let caps: FieldTable = [
        ("publisher_confirms", FieldValue::Bool(true)),
        ("exchange_exchange_bindings", FieldValue::Bool(true)),
        ("basic.nack", FieldValue::Bool(true)),
        ("consumer_cancel_notify", FieldValue::Bool(true)),
        ("connection.blocked", FieldValue::Bool(true)),
        ("authentication_failure_close", FieldValue::Bool(true)),
    ]
    .into_iter()
    .collect();
    [
        ("product", s("lapin")),
        ("version", s("2.5.0")),
        ("platform", s("rust")),
        (
            "copyright",
            s("Copyright (c) 2017-2024 Marc-Antoine Perennou"),
        ),
        ("information", s("https://github.com/amqp-rs/lapin")),
        ("capabilities", FieldValue::Table(caps)),
        ("connection_name", s("orders-service@host-17")),
    ]
    .into_iter()
    .collect()
}

/// Message headers of the kinds applications set: strings, integers of
/// several widths, a timestamp, a nested table and an array (an
/// `x-death`-like entry).
fn message_headers() -> FieldTable {
    let trace: FieldTable = [
        ("trace-id", s("4bf92f3577b34da6a3ce929d0e0e4736")),
        ("span-id", s("00f067aa0ba902b7")),
        ("sampled", FieldValue::Bool(true)),
    ]
    .into_iter()
    .collect();
    let death: FieldTable = [
        ("count", FieldValue::I64(1)),
        ("reason", s("rejected")),
        ("queue", s("orders.eu")),
        ("time", FieldValue::Timestamp(1_700_000_000)),
        ("exchange", s("amq.topic")),
        (
            "routing-keys",
            FieldValue::Array(vec![s("orders.eu.created")]),
        ),
    ]
    .into_iter()
    .collect();
    [
        ("content-kind", s("order")),
        ("region", s("eu-west-1")),
        ("tenant", s("acme")),
        ("schema-version", FieldValue::I32(3)),
        ("priority-class", FieldValue::U8(2)),
        ("size-hint", FieldValue::I64(4096)),
        ("sent-at", FieldValue::Timestamp(1_700_000_000)),
        ("trace", FieldValue::Table(trace)),
        (
            "tags",
            FieldValue::Array(vec![s("new"), s("priority"), FieldValue::I32(7)]),
        ),
        ("x-death", FieldValue::Array(vec![FieldValue::Table(death)])),
    ]
    .into_iter()
    .collect()
}

fn encoded(t: &FieldTable) -> Bytes {
    let mut out = Vec::new();
    t.encode(&mut out);
    shared(out)
}

fn field_table(c: &mut Criterion) {
    let mut g = c.benchmark_group("field_table");
    g.throughput(Throughput::Elements(1));
    let tables = [
        ("client_properties/pika", pika_client_properties()),
        ("client_properties/lapin", lapin_client_properties()),
        ("headers/10_entries_nested", message_headers()),
    ];
    let mut out = Vec::with_capacity(4096);
    for (name, table) in &tables {
        let raw = encoded(table);
        let mut r = Reader::new(raw.clone());
        assert_eq!(&FieldTable::decode(&mut r).unwrap(), table);
        let label = format!("{name}/{}B", raw.len());
        g.bench_function(format!("decode/{label}"), |b| {
            b.iter(|| {
                let mut r = Reader::new(black_box(&raw).clone());
                black_box(FieldTable::decode(&mut r).unwrap())
            })
        });
        g.bench_function(format!("skip/{label}"), |b| {
            b.iter(|| {
                let mut r = Reader::new(black_box(&raw).clone());
                FieldTable::skip(&mut r).unwrap();
                black_box(r.position())
            })
        });
        g.bench_function(format!("encode/{label}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(table).encode(&mut out);
                black_box(out.len())
            })
        });
    }
    // What `Routing::route` decodes for a headers exchange.
    let props = shared(
        BasicProperties {
            content_type: Some(Bytes::from_static(b"application/json")),
            headers: Some(message_headers()),
            delivery_mode: Some(2),
            ..Default::default()
        }
        .to_bytes()
        .to_vec(),
    );
    g.bench_function("decode/basic_properties+headers", |b| {
        b.iter(|| black_box(BasicProperties::decode(black_box(&props).clone()).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, frame, field_table);
criterion_main!(benches);
