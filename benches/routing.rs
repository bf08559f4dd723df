//! Exchange matching and the shard-to-shard ring, in three bench groups:
//!
//! - `topic`: matching one routing key against a topic exchange holding
//!   10,000 bindings (literal words, `*` and `#` patterns), through the
//!   broker's `ExchangeImpl` (`Topic::route` → `TopicTrie::route`), for keys
//!   that match (`hit/…`) and keys that match nothing (`miss/…`). The name
//!   ends with the number of distinct destinations found.
//! - `headers`: a headers exchange (`ExchangeImpl` → `Headers::route` →
//!   `headers_match`) with 100 bindings of 5 header arguments each, all with
//!   `x-match` = `all` or all `any`, for a message with 8 headers; hit and
//!   miss. `…/with_decode` adds the `BasicProperties::decode` that
//!   `Routing::route` runs once per message for a headers exchange.
//! - `ring`: moving `ShardMsg::Publish` entries (the broker's ring entry
//!   type; its `Bytes` handles are static, so only the ring's own cost is
//!   timed, not reference counting) through the broker's SPSC ring
//!   (`shard::ring`) with the mesh's capacity (`RING_CAPACITY`):
//!   - `same_thread/push_pop`: one push then one pop;
//!   - `same_thread/batch_N`: N pushes then N pops, as one event-loop
//!     iteration fills a ring (`Loop::send_outgoing`) and the peer drains it
//!     (`Loop::pump`);
//!   - `cross_thread/…`: a producer thread pushes N entries while a consumer
//!     thread pops them; the time is from the first push until the consumer
//!     has the last entry (spinning, no wake-ups). Needs two idle cores to
//!     mean anything.
//!
//! Throughput is in routed messages or ring entries per second (`elem/s`).
//!
//! Run with `cargo bench --bench routing` (add e.g. `-- headers` to pick a
//! group, `--warm-up-time 1 --measurement-time 2` for a quick run).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};
use warren::core::exchange::{Dest, ExchangeImpl, ExchangeKind};
use warren::core::ids::QueueRef;
use warren::core::message::{Message, MessageMeta};
use warren::core::shard_msg::ShardMsg;
use warren::protocol::{BasicProperties, FieldTable, FieldValue};
use warren::shard::mesh::RING_CAPACITY;
use warren::shard::ring::ring;

const BINDINGS: usize = 10_000;
/// Destination queues the bindings point at (spread over 4 shards). Prime, so
/// the bindings of one pattern land on different queues.
const QUEUES: usize = 1_009;

fn queue(i: usize) -> QueueRef {
    QueueRef {
        shard: (i % 4) as u16,
        slot: i as u32,
        gen: 1,
    }
}

/// A topic exchange with 10,000 bindings, 2,000 of each of five shapes
/// (literal, `*`, trailing `#`, leading `*`, inner `#`), over 100 "regions"
/// and 20 "services".
fn topic_exchange() -> ExchangeImpl {
    let mut x = ExchangeImpl::new(ExchangeKind::Topic);
    let no_args = FieldTable::new();
    for i in 0..BINDINGS {
        let (a, b) = ((i / 5) % 100, i / 500);
        let pattern = match i % 5 {
            0 => format!("r{a}.s{b}.created"),
            1 => format!("r{a}.*.created"),
            2 => format!("r{a}.s{b}.#"),
            3 => format!("*.s{b}.deleted"),
            _ => format!("r{a}.#.audit"),
        };
        x.bind(&pattern, &no_args, Dest::Queue(queue(i % QUEUES)));
    }
    x
}

/// Routes like `Routing::route` does for one exchange: append, then sort and
/// dedup when there is more than one destination.
#[inline]
fn route(x: &mut ExchangeImpl, key: &[u8], headers: Option<&FieldTable>, out: &mut Vec<Dest>) {
    out.clear();
    x.route(key, headers, out);
    if out.len() > 1 {
        out.sort_unstable();
        out.dedup();
    }
}

fn topic(c: &mut Criterion) {
    let mut x = topic_exchange();
    let mut g = c.benchmark_group("topic");
    g.throughput(Throughput::Elements(1));
    let mut out: Vec<Dest> = Vec::with_capacity(1024);
    for (kind, key) in [
        ("hit", "r7.s12.created"),
        ("hit", "r7.s12.x.y.audit"),
        ("hit", "r99.s3.deleted"),
        // Walks r7's subtree (r7.*, r7.s*.#, r7.#) and finds nothing.
        ("miss", "r7.x.updated"),
        // No binding starts with this word: only the `*` branch is tried.
        ("miss", "nomatch.at.all"),
    ] {
        route(&mut x, key.as_bytes(), None, &mut out);
        assert_eq!(kind == "hit", !out.is_empty(), "{key}");
        let name = format!("10k_bindings/{kind}/{key}/{}_dests", out.len());
        g.bench_function(name, |b| {
            b.iter(|| {
                route(&mut x, black_box(key.as_bytes()), None, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn s(v: &str) -> FieldValue {
    FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()))
}

const HEADER_BINDINGS: usize = 100;

/// 100 bindings of a headers exchange, all with the same `x-match`, each with
/// 5 arguments: region r0..r9, tenant t0..t9, kind k0..k6, version 0..4
/// (an integer), env e0..e2. (region, tenant) is unique per binding.
fn headers_exchange(x_match: &str) -> ExchangeImpl {
    let mut x = ExchangeImpl::new(ExchangeKind::Headers);
    for j in 0..HEADER_BINDINGS {
        let args: FieldTable = [
            ("x-match", s(x_match)),
            ("region", s(&format!("r{}", j % 10))),
            ("tenant", s(&format!("t{}", j / 10))),
            ("kind", s(&format!("k{}", j % 7))),
            ("version", FieldValue::I32((j % 5) as i32)),
            ("env", s(&format!("e{}", j % 3))),
        ]
        .into_iter()
        .collect();
        x.bind("", &args, Dest::Queue(queue(j)));
    }
    x
}

/// A message's 8 headers: the 5 the bindings look at (in another order),
/// plus 3 others.
fn message_headers(region: &str, tenant: &str, kind: &str, version: i64, env: &str) -> FieldTable {
    [
        ("content-kind", s("order")),
        ("env", s(env)),
        ("trace-id", s("4bf92f3577b34da6a3ce929d0e0e4736")),
        ("kind", s(kind)),
        ("tenant", s(tenant)),
        ("sent-at", FieldValue::Timestamp(1_700_000_000)),
        // A long, as many clients send integers; matches the bindings' I32.
        ("version", FieldValue::I64(version)),
        ("region", s(region)),
    ]
    .into_iter()
    .collect()
}

fn headers(c: &mut Criterion) {
    let mut g = c.benchmark_group("headers");
    g.throughput(Throughput::Elements(1));
    let mut out: Vec<Dest> = Vec::with_capacity(HEADER_BINDINGS);
    // Binding 43: region r3, tenant t4, kind k1, version 3, env e1.
    let exact = message_headers("r3", "t4", "k1", 3, "e1");
    // Matches no argument of any binding.
    let none = message_headers("r99", "t99", "k99", 99, "e99");
    // `all`: one binding argument off (kind) everywhere.
    let near = message_headers("r3", "t4", "k6", 3, "e1");
    for (x_match, cases) in [
        (
            "all",
            [
                ("hit", &exact),
                ("miss/one_arg_differs", &near),
                ("miss", &none),
            ],
        ),
        (
            "any",
            [("hit", &exact), ("hit/one_arg", &near), ("miss", &none)],
        ),
    ] {
        let mut x = headers_exchange(x_match);
        for (case, h) in cases {
            route(&mut x, b"", Some(h), &mut out);
            assert_eq!(case.starts_with("hit"), !out.is_empty(), "{x_match} {case}");
            let name = format!(
                "{x_match}/{HEADER_BINDINGS}_bindings_5_args/{case}/{}_dests",
                out.len()
            );
            g.bench_function(name, |b| {
                b.iter(|| {
                    route(&mut x, b"", Some(black_box(h)), &mut out);
                    black_box(out.len())
                })
            });
        }
        // With the per-message decode of the properties that `Routing::route`
        // does before matching.
        let props = BasicProperties {
            content_type: Some(Bytes::from_static(b"application/json")),
            delivery_mode: Some(2),
            headers: Some(exact.clone()),
            ..Default::default()
        }
        .to_bytes();
        g.bench_function(
            format!("{x_match}/{HEADER_BINDINGS}_bindings_5_args/hit/with_decode"),
            |b| {
                b.iter(|| {
                    let h = BasicProperties::decode(black_box(&props).clone())
                        .ok()
                        .and_then(|p| p.headers);
                    route(&mut x, b"", h.as_ref(), &mut out);
                    black_box(out.len())
                })
            },
        );
    }
    g.finish();
}

/// What a cross-shard publish puts on a ring: a queue handle and four
/// `Bytes` handles (static here, so cloning and dropping them costs nothing
/// measurable and the numbers are the ring's).
fn publish_msg() -> ShardMsg {
    ShardMsg::Publish {
        queue: queue(1),
        msg: Message::from_amqp091(
            Bytes::from_static(b"amq.topic"),
            Bytes::from_static(b"r7.s12.created"),
            Bytes::from_static(&[0x10, 0x00, 0x02]),
            Bytes::from_static(b"hello"),
        ),
        meta: MessageMeta::from_amqp091(&[0x10, 0x00, 0x02]),
        confirm: None,
    }
}

fn ring_transfer(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    let entry = std::mem::size_of::<ShardMsg>();

    g.throughput(Throughput::Elements(1));
    let (mut p, mut cons) = ring::<ShardMsg>(RING_CAPACITY);
    g.bench_function(format!("same_thread/push_pop/{entry}B_entry"), |b| {
        b.iter(|| {
            if p.try_push(publish_msg()).is_err() {
                unreachable!("ring drained every iteration");
            }
            black_box(cons.pop())
        })
    });
    for batch in [64usize, 4096] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("same_thread/batch_{batch}/{entry}B_entry"), |b| {
            b.iter(|| {
                for _ in 0..batch {
                    if p.try_push(publish_msg()).is_err() {
                        unreachable!("batch fits in the ring");
                    }
                }
                for _ in 0..batch {
                    black_box(cons.pop());
                }
            })
        });
    }
    drop((p, cons));

    // Every criterion iteration is one entry; iter_custom runs `iters`
    // entries from a producer thread (the bench thread) to a consumer thread.
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("cross_thread/{entry}B_entry"), |b| {
        b.iter_custom(cross_thread);
    });
    g.finish();
}

fn cross_thread(iters: u64) -> Duration {
    let (mut p, mut cons) = ring::<ShardMsg>(RING_CAPACITY);
    let consumer = std::thread::spawn(move || {
        let mut got = 0u64;
        while got < iters {
            match cons.pop() {
                Some(m) => {
                    black_box(m);
                    got += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
        Instant::now()
    });
    let start = Instant::now();
    for _ in 0..iters {
        let mut m = publish_msg();
        while let Err(back) = p.try_push(m) {
            m = back;
            std::hint::spin_loop();
        }
    }
    let end = consumer.join().expect("consumer thread");
    end.duration_since(start)
}

criterion_group!(benches, topic, headers, ring_transfer);
criterion_main!(benches);
