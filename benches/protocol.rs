//! Cost per operation of the wire codec on the publish → deliver path:
//! - `parse/*`: what a connection does with each frame it reads
//!   (`check_frame`, then `Method::decode` or `parse_content_header`);
//! - `encode/*`: what a channel writes for each delivery
//!   (`write_method` + `write_content_header` + `write_body`);
//! - `field_table/*`: decoding (and skipping, as publish validation does) a
//!   10-entry table, the shape of a client's `client-properties` or a
//!   message's `headers`.
//!
//! Run with `cargo bench --bench protocol`. Every input is built once outside
//! the timed closure, and output buffers are reused, as in the broker.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
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

fn publish_frame() -> Bytes {
    let m = Method::from(BasicPublish {
        ticket: 0,
        exchange: Bytes::from_static(b"amq.topic"),
        routing_key: Bytes::from_static(b"orders.eu.created"),
        mandatory: false,
        immediate: false,
    });
    let mut out = Vec::new();
    write_method(&mut out, 1, &m);
    shared(out)
}

fn header_frame() -> Bytes {
    let mut out = Vec::new();
    write_content_header(&mut out, 1, 60, BODY.len() as u64, &properties());
    shared(out)
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    let frame = publish_frame();
    g.bench_function("basic.publish", |b| {
        b.iter(|| {
            let head = check_frame(black_box(&frame), FRAME_MAX).unwrap().unwrap();
            let m = Method::decode(frame.slice(head.payload_range())).unwrap();
            black_box(m)
        })
    });
    let frame = header_frame();
    g.bench_function("content_header", |b| {
        b.iter(|| {
            let head = check_frame(black_box(&frame), FRAME_MAX).unwrap().unwrap();
            let h = parse_content_header(frame.slice(head.payload_range())).unwrap();
            black_box(h)
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let deliver = Method::from(BasicDeliver {
        consumer_tag: Bytes::from_static(b"amq.ctag-AAAAAAAAAAAAAAAAAAAAAA"),
        delivery_tag: 1,
        redelivered: false,
        exchange: Bytes::from_static(b"amq.topic"),
        routing_key: Bytes::from_static(b"orders.eu.created"),
    });
    let props = properties();
    let mut out = Vec::with_capacity(4096);
    g.bench_function("basic.deliver+header+body/256B", |b| {
        b.iter(|| {
            out.clear();
            write_method(&mut out, 1, black_box(&deliver));
            write_content_header(&mut out, 1, 60, BODY.len() as u64, black_box(&props));
            write_body(&mut out, 1, black_box(&BODY), FRAME_MAX);
            black_box(out.len())
        })
    });
    g.finish();
}

/// Ten entries of the usual kinds, one of them a nested table.
fn ten_entry_table() -> Bytes {
    let s = |v: &'static str| FieldValue::LongStr(Bytes::from_static(v.as_bytes()));
    let mut caps = FieldTable::new();
    caps.insert("publisher_confirms", FieldValue::Bool(true));
    caps.insert("consumer_cancel_notify", FieldValue::Bool(true));
    let t: FieldTable = [
        ("product", s("warren-bench")),
        ("version", s("1.0.0")),
        ("platform", s("Rust")),
        ("capabilities", FieldValue::Table(caps)),
        ("connection_name", s("bench-connection")),
        ("x-retries", FieldValue::I32(3)),
        ("x-priority", FieldValue::U8(5)),
        ("sent-at", FieldValue::Timestamp(1_700_000_000)),
        ("trace-id", s("4bf92f3577b34da6a3ce929d0e0e4736")),
        ("sampled", FieldValue::Bool(false)),
    ]
    .into_iter()
    .collect();
    assert_eq!(t.len(), 10);
    let mut out = Vec::new();
    t.encode(&mut out);
    shared(out)
}

fn field_table(c: &mut Criterion) {
    let mut g = c.benchmark_group("field_table");
    g.throughput(Throughput::Elements(1));
    let raw = ten_entry_table();
    g.bench_function("decode/10_entries", |b| {
        b.iter(|| {
            let mut r = Reader::new(black_box(&raw).clone());
            black_box(FieldTable::decode(&mut r).unwrap())
        })
    });
    g.bench_function("skip/10_entries", |b| {
        b.iter(|| {
            let mut r = Reader::new(black_box(&raw).clone());
            FieldTable::skip(&mut r).unwrap();
            black_box(r.position())
        })
    });
    g.finish();
}

criterion_group!(benches, parse, encode, field_table);
criterion_main!(benches);
