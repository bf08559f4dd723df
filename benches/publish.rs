//! `route_publish`: routing one publish end-to-end inside one shard, through
//! the broker's own code and nothing else.
//!
//! # What is driven
//! One shard's real state (`ShardState`: `ShardCtx` with its `Routing` copy,
//! `Outbox` and queue slab, plus the connection slab) and one real
//! `Connection`, set up through AMQP itself: the handshake, channel.open,
//! exchange.declare, queue.declare and queue.bind frames are fed to the
//! connection like any client's (every reply is checked for errors).
//!
//! Each timed batch is 1,000 publishes (basic.publish method frame + content
//! header + one 256-byte body frame each) placed in the connection's read
//! buffer, then what one event-loop iteration does with them:
//! 1. `Connection::on_input` → `process` → `check_frame` → `Method::decode` →
//!    `Channel::basic_publish`; `Channel::content` → `parse_content_header`
//!    (properties validated) → body kept as a slice of the read buffer →
//!    `publish_ready` → `route_and_enqueue` → `Routing::sync` (one atomic
//!    load) → `Routing::route` (exchange lookup by name, the exchange type's
//!    matching, headers decoded for a headers exchange) → one
//!    `Outbox::push(ShardMsg::Publish)` per destination queue;
//! 2. the pump of `Loop::pump`: `Outbox::pop_local` → `ShardState::handle` →
//!    `Queue::publish` (the queue has no consumers, so `dispatch` does nothing);
//!    in confirm mode also `ShardMsg::Confirm` → `Connection::confirm`, and
//!    `Connection::flush_confirms`, which encodes the basic.ack as `Loop::flush`
//!    has it done.
//!
//! # What is not
//! The socket: `Socket::fill` (the `read(2)` into the read buffer) and
//! `Socket::flush` are not run; the bytes are copied into the read buffer
//! before the timer starts, and the write buffer is cleared after it stops.
//! No ring either: the queue is on the publisher's shard (the cross-shard hop
//! is `ring/*` in `benches/routing.rs`). Between batches, outside the timing,
//! the queues are purged so they do not grow without end.
//!
//! Throughput is in published messages per second (`elem/s`); the time is
//! per message.
//!
//! Run with `cargo bench --bench publish` (add
//! `--warm-up-time 1 --measurement-time 2` for a quick run).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren::core::definitions::Definitions;
use warren::core::shard_msg::QueueOp;
use warren::core::ShardCtx;
use warren::net::Socket;
use warren::protocol::methods::*;
use warren::protocol::{
    check_frame, write_body, write_content_header, write_method, BasicProperties, FieldTable,
    FieldValue, Method, PROTOCOL_HEADER,
};
use warren::shard::session::Session;
use warren::shard::state::ShardState;
use warren::Config;

/// Publishes per timed batch (one read buffer's worth).
const BATCH: usize = 1000;
const BODY: [u8; 256] = [b'x'; 256];

/// One shard with one connected client, no event loop and no I/O.
struct Shard {
    state: ShardState,
    slot: usize,
    frame_max: u32,
    /// The client's end of the loopback connection (never read or written);
    /// kept open so the broker's socket stays valid.
    _peer: std::net::TcpStream,
}

impl Shard {
    fn new() -> Shard {
        let config = Config {
            shards: 1,
            pin_threads: false,
            ..Config::default()
        };
        let frame_max = config.frame_max;
        let defs = Arc::new(Definitions::new(1));
        let alarms = Arc::new(warren::core::alarms::Alarms::new(
            0,
            0,
            std::path::Path::new("/"),
        ));
        let mut state = ShardState::new(ShardCtx::new(0, Arc::new(config), defs, alarms));

        // A real socket is needed to build a `Connection`; it is never used.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).unwrap();
        let sock = Socket::new(mio::net::TcpStream::from_std(server));
        let entry = state.conns.vacant_entry();
        let slot = entry.key();
        let uid = state.ctx.next_conn_uid();
        entry.insert(Session::accepted(sock, slot as u32, uid));

        let mut shard = Shard {
            state,
            slot,
            frame_max,
            _peer: peer,
        };
        shard.handshake();
        shard
    }

    /// What one event-loop iteration does with the buffered input: the
    /// connection processes it, then the shard's own messages are handled
    /// until none are left, then pending confirms are encoded.
    #[inline]
    fn run(&mut self) {
        loop {
            let Shard { state, slot, .. } = self;
            state.conns[*slot].on_input(&mut state.ctx);
            while let Some(m) = state.ctx.outbox.pop_local() {
                state.handle(m);
            }
            let conn = &mut state.conns[*slot];
            if conn.sock().rbuf.is_empty() || conn.is_waiting() {
                break;
            }
        }
        let Shard { state, slot, .. } = self;
        state.conns[*slot].before_flush(&mut state.ctx);
    }

    /// Feeds `input`, runs it, and returns the methods the broker wrote back
    /// (the write buffer is cleared). Panics on any close.
    fn feed(&mut self, input: &[u8]) -> Vec<Method> {
        self.state.conns[self.slot]
            .sock()
            .rbuf
            .extend_from_slice(input);
        self.run();
        let out = std::mem::take(&mut self.state.conns[self.slot].sock().wbuf);
        let mut rest = &out[..];
        let mut methods = Vec::new();
        while let Some(head) = check_frame(rest, 0).expect("broker wrote a bad frame") {
            if head.kind == 1 {
                let payload = Bytes::copy_from_slice(&rest[head.payload_range()]);
                let m = Method::decode(payload).expect("broker wrote a bad method");
                assert!(
                    !matches!(m, Method::ConnectionClose(_) | Method::ChannelClose(_)),
                    "broker closed: {m:?}"
                );
                methods.push(m);
            }
            rest = &rest[head.total_len()..];
        }
        assert!(rest.is_empty());
        self.state.conns[self.slot].sock().wbuf.clear();
        methods
    }

    /// Sends methods (channel, method) in one go and checks the broker
    /// answered each synchronous one.
    fn call(&mut self, methods: &[(u16, Method)], expect_replies: usize) {
        let mut input = Vec::new();
        for (ch, m) in methods {
            write_method(&mut input, *ch, m);
        }
        let replies = self.feed(&input);
        assert_eq!(replies.len(), expect_replies, "replies: {replies:?}");
    }

    fn handshake(&mut self) {
        let start = self.feed(PROTOCOL_HEADER);
        assert!(matches!(start[..], [Method::ConnectionStart(_)]));
        let start_ok = ConnectionStartOk {
            client_properties: FieldTable::new(),
            mechanism: Bytes::from_static(b"PLAIN"),
            response: Bytes::from_static(b"\0guest\0guest"),
            locale: Bytes::from_static(b"en_US"),
        };
        let tune = self.feed(&frame(0, start_ok.into()));
        let Some(Method::ConnectionTune(t)) = tune.first() else {
            panic!("expected connection.tune, got {tune:?}");
        };
        let tune_ok = ConnectionTuneOk {
            channel_max: t.channel_max,
            frame_max: t.frame_max,
            heartbeat: 0,
        };
        let open = ConnectionOpen {
            virtual_host: Bytes::from_static(b"/"),
            ..Default::default()
        };
        self.call(&[(0, tune_ok.into()), (0, open.into())], 1);
    }

    /// Declares queues `names` and binds each as given.
    fn declare(&mut self, ch: u16, names: &[&str], binds: &[(&str, &str, &str, FieldTable)]) {
        let mut ms = Vec::new();
        for q in names {
            ms.push((
                ch,
                QueueDeclare {
                    queue: Bytes::copy_from_slice(q.as_bytes()),
                    ..Default::default()
                }
                .into(),
            ));
        }
        for (q, x, key, args) in binds {
            ms.push((
                ch,
                QueueBind {
                    queue: Bytes::copy_from_slice(q.as_bytes()),
                    exchange: Bytes::copy_from_slice(x.as_bytes()),
                    routing_key: Bytes::copy_from_slice(key.as_bytes()),
                    arguments: args.clone(),
                    ..Default::default()
                }
                .into(),
            ));
        }
        let n = ms.len();
        self.call(&ms, n);
    }

    /// Messages in all queues of the shard; purges them (not timed).
    fn purge(&mut self) -> u64 {
        let mut n = 0;
        for (_, q) in self.state.ctx.queues.iter_mut() {
            n += q.message_count() as u64;
            let _ = q.request(QueueOp::Purge, None);
        }
        n
    }
}

fn frame(ch: u16, m: Method) -> Vec<u8> {
    let mut out = Vec::new();
    write_method(&mut out, ch, &m);
    out
}

/// `n` publishes, each method + header + body frames, as a client sends them.
fn publishes(
    n: usize,
    ch: u16,
    exchange: &str,
    key: &str,
    props: &Bytes,
    frame_max: u32,
) -> Vec<u8> {
    let m = Method::from(BasicPublish {
        exchange: Bytes::copy_from_slice(exchange.as_bytes()),
        routing_key: Bytes::copy_from_slice(key.as_bytes()),
        ..Default::default()
    });
    let mut out = Vec::new();
    for _ in 0..n {
        write_method(&mut out, ch, &m);
        write_content_header(&mut out, ch, 60, BODY.len() as u64, props);
        write_body(&mut out, ch, &BODY, frame_max);
    }
    out
}

/// One way of publishing, with what it must route to.
struct Case {
    name: &'static str,
    channel: u16,
    exchange: &'static str,
    key: &'static str,
    props: Bytes,
    /// Destination queues per message.
    queues: u64,
}

fn s(v: &'static str) -> FieldValue {
    FieldValue::LongStr(Bytes::from_static(v.as_bytes()))
}

/// The shard with its topology, and the cases that publish into it.
fn setup() -> (Shard, Vec<Case>) {
    let mut sh = Shard::new();
    // Channel 1: plain publishes. Channel 2: confirm mode.
    sh.call(
        &[
            (1, ChannelOpen::default().into()),
            (2, ChannelOpen::default().into()),
            (2, ConfirmSelect { nowait: false }.into()),
        ],
        3,
    );
    let none = FieldTable::new;
    let headers_args: FieldTable = [
        ("x-match", s("all")),
        ("region", s("eu")),
        ("kind", s("order")),
    ]
    .into_iter()
    .collect();
    sh.declare(
        1,
        &[
            "q.direct",
            "q.topic",
            "q.headers",
            "q.fan1",
            "q.fan2",
            "q.fan3",
        ],
        &[
            ("q.direct", "amq.direct", "orders", none()),
            ("q.topic", "amq.topic", "orders.*.created", none()),
            ("q.topic", "amq.topic", "orders.#", none()),
            ("q.topic", "amq.topic", "invoices.#", none()),
            ("q.headers", "amq.headers", "", headers_args),
            ("q.fan1", "amq.fanout", "", none()),
            ("q.fan2", "amq.fanout", "", none()),
            ("q.fan3", "amq.fanout", "", none()),
        ],
    );
    let plain = BasicProperties {
        content_type: Some(Bytes::from_static(b"application/json")),
        delivery_mode: Some(2),
        ..Default::default()
    }
    .to_bytes();
    let with_headers = BasicProperties {
        content_type: Some(Bytes::from_static(b"application/json")),
        delivery_mode: Some(2),
        headers: Some(
            [
                ("kind", s("order")),
                ("tenant", s("acme")),
                ("region", s("eu")),
                ("schema-version", FieldValue::I32(3)),
            ]
            .into_iter()
            .collect(),
        ),
        ..Default::default()
    }
    .to_bytes();
    let case = |name, channel, exchange, key, props: &Bytes, queues| Case {
        name,
        channel,
        exchange,
        key,
        props: props.clone(),
        queues,
    };
    let cases = vec![
        case("default_exchange/1_queue", 1, "", "q.direct", &plain, 1),
        case("direct/1_queue", 1, "amq.direct", "orders", &plain, 1),
        case(
            "topic/1_queue",
            1,
            "amq.topic",
            "orders.eu.created",
            &plain,
            1,
        ),
        case("fanout/3_queues", 1, "amq.fanout", "", &plain, 3),
        case("headers/1_queue", 1, "amq.headers", "", &with_headers, 1),
        case("unroutable", 1, "amq.direct", "nobody", &plain, 0),
        case(
            "direct/1_queue/confirm",
            2,
            "amq.direct",
            "orders",
            &plain,
            1,
        ),
    ];
    (sh, cases)
}

fn route_publish(c: &mut Criterion) {
    let (mut sh, cases) = setup();
    let mut g = c.benchmark_group("route_publish");
    g.throughput(Throughput::Elements(1));
    for case in &cases {
        let input = publishes(
            BATCH,
            case.channel,
            case.exchange,
            case.key,
            &case.props,
            sh.frame_max,
        );
        let per_msg = input.len() / BATCH;

        // Check the case once: every message reaches its queues, no error,
        // and in confirm mode every one is acked.
        let replies = sh.feed(&input);
        assert_eq!(sh.purge(), BATCH as u64 * case.queues, "{}", case.name);
        if case.channel == 2 {
            assert!(
                matches!(replies.last(), Some(Method::BasicAck(a)) if a.multiple),
                "{}: {replies:?}",
                case.name
            );
        } else {
            assert!(replies.is_empty(), "{}: {replies:?}", case.name);
        }

        g.bench_function(format!("{}/256B", case.name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let n = left.min(BATCH);
                    left -= n;
                    sh.state.conns[sh.slot]
                        .sock()
                        .rbuf
                        .extend_from_slice(&input[..n * per_msg]);
                    let start = Instant::now();
                    sh.run();
                    total += start.elapsed();
                    sh.state.conns[sh.slot].sock().wbuf.clear();
                    sh.purge();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, route_publish);
criterion_main!(benches);
