//! Cost per operation of the two things every publish crosses after parsing:
//! - `topic/*`: matching one routing key against a topic exchange holding
//!   10,000 bindings (`TopicTrie::route`, as `Topic::route` calls it);
//! - `ring/*`: moving one `ShardMsg::Publish` through an SPSC ring, on one
//!   thread (the raw push + pop) and between two threads (what a cross-shard
//!   publish pays, wake-ups aside).
//!
//! The rings have the capacity the broker's mesh uses (`RING_CAPACITY`).
//!
//! Run with `cargo bench --bench routing`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};
use warren::broker::exchange::topic_trie::TopicTrie;
use warren::broker::exchange::Dest;
use warren::broker::ids::QueueRef;
use warren::broker::message::Message;
use warren::broker::shard_msg::ShardMsg;
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

/// 10,000 bindings, 2,000 of each of five shapes (literal, `*`, trailing `#`,
/// leading `*`, inner `#`), over 100 "regions" and 20 "services".
fn topic_trie() -> TopicTrie<Dest> {
    let mut t = TopicTrie::new();
    for i in 0..BINDINGS {
        let (a, b) = ((i / 5) % 100, i / 500);
        let pattern = match i % 5 {
            0 => format!("r{a}.s{b}.created"),
            1 => format!("r{a}.*.created"),
            2 => format!("r{a}.s{b}.#"),
            3 => format!("*.s{b}.deleted"),
            _ => format!("r{a}.#.audit"),
        };
        t.bind(pattern.as_bytes(), Dest::Queue(queue(i % QUEUES)));
    }
    t
}

fn topic(c: &mut Criterion) {
    let mut t = topic_trie();
    let mut g = c.benchmark_group("topic");
    g.throughput(Throughput::Elements(1));
    let mut out: Vec<Dest> = Vec::with_capacity(1024);
    for key in [
        "r7.s12.created",
        "r7.s12.x.y.audit",
        "r99.s3.deleted",
        "nomatch.at.all",
    ] {
        out.clear();
        t.route(key.as_bytes(), &mut out);
        let name = format!("route_10k_bindings/{key}/{}_dests", out.len());
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                t.route(black_box(key.as_bytes()), &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// What a cross-shard publish puts on a ring: a queue handle and four
/// `Bytes` handles (static here, so cloning costs nothing measurable).
fn publish_msg() -> ShardMsg {
    ShardMsg::Publish {
        queue: queue(1),
        msg: Message {
            exchange: Bytes::from_static(b"amq.topic"),
            routing_key: Bytes::from_static(b"r7.s12.created"),
            properties: Bytes::from_static(&[0x10, 0x00, 0x02]),
            body: Bytes::from_static(b"hello"),
        },
        confirm: None,
    }
}

fn ring_transfer(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));

    let (mut p, mut cons) = ring::<ShardMsg>(RING_CAPACITY);
    g.bench_function("push_pop/same_thread", |b| {
        b.iter(|| {
            if p.try_push(publish_msg()).is_err() {
                unreachable!("ring drained every iteration");
            }
            black_box(cons.pop())
        })
    });

    // Producer on the bench thread, consumer on another; the time is from the
    // first push until the consumer has popped the last message.
    g.bench_function("transfer/cross_thread", |b| {
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

criterion_group!(benches, topic, ring_transfer);
criterion_main!(benches);
