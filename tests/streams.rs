//! Streams (`x-queue-type=stream`) over AMQP 0-9-1 with lapin: declaration
//! and its refusals, every `x-stream-offset` form, replay by many consumers
//! on both shards, acks as credit, retention by size and by age, and the
//! stream surviving a restart and a kill -9. RabbitMQ's codes and texts
//! (3.13) are in `docs/streams-rabbitmq.md`; `tests/pika/streams.py` checks
//! the same with pika.
//!
//! Against RabbitMQ: `WARREN_TEST_EXTERNAL_URI=amqp://guest:guest@127.0.0.1:5672/%2f
//! cargo test --test streams` (the tests that need a warren of their own
//! skip).

mod common_durable;
mod common_http;
mod common_lapin;
mod common_python;
mod util;
use common_lapin::*;
use util::*;

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use std::time::Duration;

fn stream_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = table(extra);
    t.insert("x-queue-type".into(), s("stream"));
    t
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn declare_stream(ch: &Channel, name: &str, extra: &[(&str, AMQPValue)]) {
    within(ch.queue_declare(name, durable(), stream_args(extra)))
        .await
        .unwrap_or_else(|e| panic!("declare stream {name}: {e}"));
}

/// Publishes `n` messages `prefix-i` with confirms.
async fn publish_n(conn: &Connection, q: &str, prefix: &str, n: usize) {
    let ch = confirm_channel(conn).await;
    let mut confirms = Vec::with_capacity(n);
    for i in 0..n {
        let body = format!("{prefix}-{i}");
        let c = within(ch.basic_publish(
            "",
            q,
            Default::default(),
            body.as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        ))
        .await
        .expect("basic.publish");
        confirms.push(c);
    }
    for c in confirms {
        assert!(within(c).await.expect("confirm").is_ack());
    }
    let _ = ch.close(200, "OK").await;
}

/// A consumer with prefetch `prefetch` and `x-stream-offset` = `offset`.
async fn stream_consumer(
    conn: &Connection,
    q: &str,
    prefetch: u16,
    offset: Option<AMQPValue>,
) -> (Channel, Consumer) {
    let ch = channel(conn).await;
    within(ch.basic_qos(prefetch, BasicQosOptions::default()))
        .await
        .expect("basic.qos");
    let args = match offset {
        Some(v) => table(&[("x-stream-offset", v)]),
        None => FieldTable::default(),
    };
    let c = within(ch.basic_consume(q, "", BasicConsumeOptions::default(), args))
        .await
        .expect("basic.consume");
    (ch, c)
}

/// The `x-stream-offset` header of a delivery (a long).
fn offset_of(d: &lapin::message::Delivery) -> i64 {
    let h = d.properties.headers().as_ref().expect("headers");
    match h.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("x-stream-offset header: {other:?}"),
    }
}

/// Receives `n` deliveries, acking each; returns (offset, body).
async fn take(c: &mut Consumer, n: usize) -> Vec<(i64, String)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let d = recv(c).await;
        out.push((offset_of(&d), String::from_utf8_lossy(&d.data).into_owned()));
        within(d.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_checks_match_rabbitmq() {
    deadline(60, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let q = uniq("st-decl");
        // Every stream argument is accepted.
        let ch = channel(&conn).await;
        declare_stream(
            &ch,
            &q,
            &[
                ("x-max-length-bytes", AMQPValue::LongLongInt(1_000_000)),
                ("x-max-age", s("7D")),
                ("x-stream-max-segment-size-bytes", AMQPValue::LongLongInt(100_000)),
                ("x-initial-cluster-size", AMQPValue::LongInt(1)),
                ("x-queue-leader-locator", s("client-local")),
                ("x-stream-filter-size-bytes", AMQPValue::LongInt(32)),
            ],
        )
        .await;
        // A redeclaration compares the stream's own arguments, and only them.
        let same = [
            ("x-max-length-bytes", AMQPValue::LongLongInt(1_000_000)),
            ("x-max-age", s("7D")),
            ("x-stream-max-segment-size-bytes", AMQPValue::LongLongInt(100_000)),
            ("x-initial-cluster-size", AMQPValue::LongInt(1)),
            ("x-queue-leader-locator", s("client-local")),
        ];
        let mut with_ttl = same.to_vec();
        with_ttl.push(("x-message-ttl", AMQPValue::LongInt(5)));
        within(ch.queue_declare(&q, durable(), stream_args(&with_ttl)))
            .await
            .expect("a TTL given again is ignored, as RabbitMQ does");
        let mut other_age = same.to_vec();
        other_age[1] = ("x-max-age", s("2h"));
        let r = within(ch.queue_declare(&q, durable(), stream_args(&other_age))).await;
        let text = format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue '{q}' in vhost '/': received '2h' but current is '7D'"
        );
        assert_channel_error(&conn, r.map(|_| ()), 406, &text).await;
        let refused: Vec<(QueueDeclareOptions, FieldTable, String)> = vec![
            (
                QueueDeclareOptions::default(),
                stream_args(&[]),
                "invalid property 'non-durable' for queue '{q}' in vhost '/'".into(),
            ),
            (
                QueueDeclareOptions {
                    durable: true,
                    auto_delete: true,
                    ..Default::default()
                },
                stream_args(&[]),
                "invalid property 'auto-delete' for queue '{q}' in vhost '/'".into(),
            ),
            (
                QueueDeclareOptions {
                    durable: true,
                    exclusive: true,
                    ..Default::default()
                },
                stream_args(&[]),
                "invalid property 'exclusive-owner' for queue '{q}' in vhost '/'".into(),
            ),
            (
                durable(),
                stream_args(&[("x-max-age", s("0D"))]),
                "invalid arg 'x-max-age' for queue '{q}' in vhost '/': invalid_max_age".into(),
            ),
            (
                durable(),
                stream_args(&[(
                    "x-stream-max-segment-size-bytes",
                    AMQPValue::LongLongInt(3_000_000_001),
                )]),
                "Exceeded max value for x-stream-max-segment-size-bytes".into(),
            ),
            (
                // Arguments are checked before properties.
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                stream_args(&[("x-max-length", AMQPValue::LongInt(1))]),
                "invalid arg 'x-max-length' for queue '{q}' in vhost '/' of queue type rabbit_stream_queue".into(),
            ),
            (
                durable(),
                stream_args(&[("x-max-length-bytes", AMQPValue::LongInt(-1))]),
                "invalid arg 'x-max-length-bytes' for queue '{q}' in vhost '/': {value_negative,-1}"
                    .into(),
            ),
        ];
        let mut cases = refused;
        for arg in [
            "x-message-ttl",
            "x-expires",
            "x-max-length",
            "x-max-priority",
            "x-single-active-consumer",
            "x-dead-letter-exchange",
            "x-overflow",
        ] {
            let v = match arg {
                "x-single-active-consumer" => AMQPValue::Boolean(true),
                "x-dead-letter-exchange" => s("dlx"),
                "x-overflow" => s("drop-head"),
                _ => AMQPValue::LongInt(5),
            };
            cases.push((
                durable(),
                stream_args(&[(arg, v)]),
                format!("invalid arg '{arg}' for queue '{{q}}' in vhost '/' of queue type rabbit_stream_queue"),
            ));
        }
        for (opts, args, text) in cases {
            let ch = channel(&conn).await;
            let name = uniq("st-bad");
            let r = within(ch.queue_declare(&name, opts, args)).await;
            let text = format!("PRECONDITION_FAILED - {}", text.replace("{q}", &name));
            assert_channel_error(&conn, r.map(|_| ()), 406, &text).await;
        }
        if !b.is_external() {
            // 3.13's check; RabbitMQ 3.10 accepts any filter size.
            let ch = channel(&conn).await;
            let name = uniq("st-bad");
            let r = within(ch.queue_declare(
                &name,
                durable(),
                stream_args(&[("x-stream-filter-size-bytes", AMQPValue::LongInt(8))]),
            ))
            .await;
            let text = "PRECONDITION_FAILED - Invalid value for  x-stream-filter-size-bytes";
            assert_channel_error(&conn, r.map(|_| ()), 406, text).await;
        }
        if !b.is_external() {
            // RabbitMQ before 4.2.7 crashes the channel on this (541).
            let ch = channel(&conn).await;
            let name = uniq("st-bad");
            let r = within(ch.queue_declare(&name, durable(), stream_args(&[("x-max-age", s("bogus"))]))).await;
            let text = format!(
                "PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '{name}' in vhost '/': invalid_max_age"
            );
            assert_channel_error(&conn, r.map(|_| ()), 406, &text).await;
        }
        let ch = channel(&conn).await;
        let r = within(ch.queue_declare("", durable(), stream_args(&[]))).await;
        assert_channel_error(
            &conn,
            r.map(|_| ()),
            406,
            "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue",
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_get_and_purge_refusals() {
    deadline(60, async {
        let b = start_broker(1);
        let setup = connect(&b.uri()).await;
        let q = uniq("st-refuse");
        declare_stream(&channel(&setup).await, &q, &[]).await;
        let res = |q: &str| format!("queue '{q}' in vhost '/'");
        // No prefetch: a channel error.
        let ch = channel(&setup).await;
        let r = within(ch.basic_consume(&q, "", Default::default(), FieldTable::default())).await;
        assert_channel_error(
            &setup,
            r.map(|_| ()),
            406,
            &format!(
                "PRECONDITION_FAILED - consumer prefetch count is not set for '{}'",
                res(&q)
            ),
        )
        .await;
        // The rest close the connection (540 is a hard error).
        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        within(ch.basic_qos(10, BasicQosOptions::default()))
            .await
            .unwrap();
        let opts = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let r = within(ch.basic_consume(&q, "", opts, FieldTable::default())).await;
        let text = format!(
            "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues {}",
            res(&q)
        );
        assert_connection_error(&conn, r.map(|_| ()), 540, &text).await;

        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        let r = within(ch.basic_get(&q, Default::default())).await;
        let text = format!(
            "NOT_IMPLEMENTED - basic.get not supported by stream queues {}",
            res(&q)
        );
        assert_connection_error(&conn, r.map(|_| ()), 540, &text).await;

        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        // Per consumer, then global. (The other way round is no global
        // limit: a per-consumer basic.qos lifts it, in RabbitMQ and here.)
        within(ch.basic_qos(10, BasicQosOptions::default()))
            .await
            .unwrap();
        within(ch.basic_qos(10, BasicQosOptions { global: true }))
            .await
            .unwrap();
        let r = within(ch.basic_consume(&q, "", Default::default(), FieldTable::default())).await;
        let text = format!("NOT_IMPLEMENTED - {} does not support global qos", res(&q));
        assert_connection_error(&conn, r.map(|_| ()), 540, &text).await;

        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        within(ch.basic_qos(10, BasicQosOptions { global: true }))
            .await
            .unwrap();
        within(ch.basic_qos(10, BasicQosOptions::default()))
            .await
            .unwrap();
        within(ch.basic_consume(&q, "", Default::default(), FieldTable::default()))
            .await
            .expect("global, then per consumer: no global limit left");
        let ch = channel(&conn).await;
        let r = within(ch.queue_purge(&q, Default::default())).await;
        assert!(
            matches!(amqp_error(r.as_ref().unwrap_err()), Some((540, _))),
            "purge: {r:?}"
        );
        let ch = channel(&setup).await;
        within(ch.basic_qos(10, BasicQosOptions::default())).await.unwrap();
        let r = within(ch.basic_consume(
            &q,
            "",
            Default::default(),
            table(&[("x-priority", AMQPValue::LongInt(1))]),
        ))
        .await;
        let text = format!(
            "PRECONDITION_FAILED - invalid arg 'x-priority' for {} of queue type rabbit_stream_queue",
            res(&q)
        );
        assert_channel_error(&setup, r.map(|_| ()), 406, &text).await;
        let ch = channel(&setup).await;
        within(ch.basic_qos(10, BasicQosOptions::default())).await.unwrap();
        let r = within(ch.basic_consume(
            &q,
            "",
            Default::default(),
            table(&[("x-stream-offset", s("10x"))]),
        ))
        .await;
        let text = format!(
            "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {}: {{invalid_stream_offset_arg,{{longstr,<<\"10x\">>}}}}",
            res(&q)
        );
        assert_channel_error(&setup, r.map(|_| ()), 406, &text).await;
        // None of that harmed the stream.
        publish_n(&setup, &q, "ok", 3).await;
        let (_ch, mut c) = stream_consumer(&setup, &q, 10, Some(s("first"))).await;
        assert_eq!(take(&mut c, 3).await[2], (2, "ok-2".to_string()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_offset_spec() {
    deadline(60, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let q = uniq("st-offsets");
        declare_stream(&channel(&conn).await, &q, &[]).await;
        publish_n(&conn, &q, "a", 5).await;
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // A chunk written in a later second than the first five.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        publish_n(&conn, &q, "b", 5).await;

        let (_c1, mut first) = stream_consumer(&conn, &q, 100, Some(s("first"))).await;
        let got = take(&mut first, 10).await;
        let want: Vec<(i64, String)> = (0..10)
            .map(|i| (i, format!("{}-{}", if i < 5 { "a" } else { "b" }, i % 5)))
            .collect();
        assert_eq!(got, want, "first: everything, in order, with its offset");

        let (_c2, mut numeric) =
            stream_consumer(&conn, &q, 100, Some(AMQPValue::LongLongInt(7))).await;
        assert_eq!(take(&mut numeric, 3).await[0].0, 7);
        recv_none(&mut numeric, 200).await;

        // A timestamp (seconds): from the first chunk written at or after it.
        let (_c3, mut ts) =
            stream_consumer(&conn, &q, 100, Some(AMQPValue::Timestamp(before + 1))).await;
        assert_eq!(take(&mut ts, 1).await[0].0, 5);

        // An interval before now: everything written in the last minute.
        let (_c4, mut interval) = stream_consumer(&conn, &q, 100, Some(s("1m"))).await;
        assert_eq!(take(&mut interval, 1).await[0].0, 0);

        // last: the newest chunk (the last confirm batch: at least the last message).
        let (_c5, mut last) = stream_consumer(&conn, &q, 100, Some(s("last"))).await;
        let l = take(&mut last, 1).await[0].0;
        assert!(
            (5..10).contains(&l),
            "last starts in the newest chunk, got {l}"
        );

        // next (and the default): only what comes after.
        let (_c6, mut next) = stream_consumer(&conn, &q, 100, Some(s("next"))).await;
        let (_c7, mut default) = stream_consumer(&conn, &q, 100, None).await;
        recv_none(&mut next, 200).await;
        publish_n(&conn, &q, "c", 1).await;
        assert_eq!(take(&mut next, 1).await, vec![(10, "c-0".to_string())]);
        assert_eq!(take(&mut default, 1).await, vec![(10, "c-0".to_string())]);
        // Live consumers get the new message too.
        assert_eq!(take(&mut first, 1).await[0].0, 10);

        // An offset past the end waits there.
        let (_c8, mut far) =
            stream_consumer(&conn, &q, 100, Some(AMQPValue::LongLongInt(1000))).await;
        recv_none(&mut far, 200).await;

        // A bad spec is refused.
        let ch = channel(&conn).await;
        within(ch.basic_qos(1, BasicQosOptions::default()))
            .await
            .unwrap();
        let r = within(ch.basic_consume(
            &q,
            "",
            Default::default(),
            table(&[("x-stream-offset", s("bogus"))]),
        ))
        .await;
        assert!(r.is_err(), "x-stream-offset 'bogus' is refused");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_consumers_replay_on_both_shards() {
    deadline(120, async {
        let b = start_broker(2);
        if b.is_external() {
            return;
        }
        let pub_conn = connect(&b.shard_uri(0)).await;
        let q = uniq("st-replay");
        declare_stream(&channel(&pub_conn).await, &q, &[]).await;
        const N: usize = 2000;
        publish_n(&pub_conn, &q, "m", N).await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let uri = b.shard_uri(i % 2);
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let conn = connect(&uri).await;
                let (_ch, mut c) = stream_consumer(&conn, &q, 50, Some(s("first"))).await;
                let got = take(&mut c, N).await;
                for (i, (off, body)) in got.iter().enumerate() {
                    assert_eq!((*off, body.as_str()), (i as i64, format!("m-{i}").as_str()));
                }
            }));
        }
        for t in tasks {
            t.await.expect("consumer task");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_nacks_and_rejects_only_return_credit() {
    deadline(60, async {
        let b = start_broker(1);
        if b.is_external() {
            // RabbitMQ 3.10 closes the channel on nack and reject (540);
            // 3.13 returns credit as here.
            return;
        }
        let conn = connect(&b.uri()).await;
        let q = uniq("st-credit");
        declare_stream(&channel(&conn).await, &q, &[]).await;
        publish_n(&conn, &q, "m", 10).await;
        let (_ch, mut c) = stream_consumer(&conn, &q, 2, Some(s("first"))).await;
        let d0 = recv(&mut c).await;
        let d1 = recv(&mut c).await;
        recv_none(&mut c, 200).await; // the prefetch is full
        within(d0.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        }))
        .await
        .unwrap();
        let d2 = recv(&mut c).await;
        assert_eq!(
            offset_of(&d2),
            2,
            "a nack is not a requeue: the stream goes on"
        );
        within(d1.reject(BasicRejectOptions { requeue: false }))
            .await
            .unwrap();
        let d3 = recv(&mut c).await;
        assert_eq!(offset_of(&d3), 3);
        within(d3.ack(BasicAckOptions { multiple: true }))
            .await
            .unwrap();
        assert_eq!(take(&mut c, 2).await[1].0, 5);
        // Nothing was removed.
        assert_eq!(message_count(&channel(&conn).await, &q).await, 10);
        let (_ch2, mut again) = stream_consumer(&conn, &q, 100, Some(s("first"))).await;
        assert_eq!(take(&mut again, 10).await.len(), 10);
    })
    .await;
}

/// A runtime for the tests that drive a `warren` process between awaits.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Files of the stream's segments under `data_dir`.
fn segment_files(data_dir: &std::path::Path) -> usize {
    let Ok(streams) = std::fs::read_dir(data_dir.join("streams")) else {
        return 0;
    };
    streams
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == "seg"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_drops_whole_segments_and_readers_jump_ahead() {
    deadline(60, async {
        let b = start_broker(1);
        if b.is_external() {
            return;
        }
        let conn = connect(&b.uri()).await;
        let q = uniq("st-size");
        declare_stream(
            &channel(&conn).await,
            &q,
            &[
                ("x-max-length-bytes", AMQPValue::LongLongInt(20_000)),
                (
                    "x-stream-max-segment-size-bytes",
                    AMQPValue::LongLongInt(5_000),
                ),
            ],
        )
        .await;
        // A slow reader holds its place at offset 0 (prefetch 1, no ack).
        let (_slow_ch, mut slow) = stream_consumer(&conn, &q, 1, Some(s("first"))).await;
        let body = "x".repeat(200);
        let ch = confirm_channel(&conn).await;
        for i in 0..400 {
            // One chunk per message: confirmed one by one.
            let c = within(ch.basic_publish(
                "",
                &q,
                Default::default(),
                format!("{i}-{body}").as_bytes(),
                BasicProperties::default(),
            ))
            .await
            .unwrap();
            assert!(within(c).await.unwrap().is_ack());
        }
        // ~90 KB written, 20 KB kept: the head moved, in whole segments.
        let first = recv(&mut slow).await;
        assert_eq!(offset_of(&first), 0);
        let (_c, mut fresh) = stream_consumer(&conn, &q, 1000, Some(s("first"))).await;
        let head = offset_of(&recv(&mut fresh).await);
        assert!(
            head > 250,
            "the head moved past the oldest segments: {head}"
        );
        let count = message_count(&channel(&conn).await, &q).await as i64;
        assert_eq!(count, 400 - head, "message count is what is kept");
        // The slow reader, acking, continues at the new head (the chunk it
        // held in memory aside).
        within(first.ack(BasicAckOptions::default())).await.unwrap();
        let mut next = offset_of(&recv(&mut slow).await);
        // It may finish the chunk it had; then it jumps.
        while next < head {
            let d = recv(&mut slow).await;
            let o = offset_of(&d);
            assert!(o == next + 1 || o >= head, "{next} then {o}");
            next = o;
            within(d.ack(BasicAckOptions::default())).await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_age() {
    deadline(60, async {
        if std::env::var("WARREN_TEST_EXTERNAL_URI").is_ok() {
            return;
        }
        let dir = common_durable::DataDir::new("st-age");
        let data_dir = dir.0.clone();
        let h = common_durable::start_in(&dir.0, 1);
        let conn = connect(&common_durable::uri(h.port())).await;
        let q = uniq("st-age");
        declare_stream(
            &channel(&conn).await,
            &q,
            &[
                ("x-max-age", s("1s")),
                (
                    "x-stream-max-segment-size-bytes",
                    AMQPValue::LongLongInt(1_000),
                ),
            ],
        )
        .await;
        let body = "y".repeat(300);
        for _ in 0..10 {
            publish_n(&conn, &q, &body, 1).await;
        }
        assert!(segment_files(&data_dir) >= 5);
        // Segments older than a second go (on the timer), but never the
        // one being written.
        let ch = channel(&conn).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n = message_count(&ch, &q).await;
            if n <= 3 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still {n} messages");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(segment_files(&data_dir) >= 1);
        let (_c, mut first) = stream_consumer(&conn, &q, 100, Some(s("first"))).await;
        assert!(offset_of(&recv(&mut first).await) >= 7);
    })
    .await;
}

#[test]
fn survives_restart_and_kill9() {
    if std::env::var("WARREN_TEST_EXTERNAL_URI").is_ok() {
        return;
    }
    let dir = common_durable::DataDir::new("streams");
    let rt = runtime();
    let q = uniq("st-durable");
    let p = common_durable::Proc::start(&dir.0);
    rt.block_on(async {
        let conn = connect(&common_durable::uri(p.port)).await;
        declare_stream(&channel(&conn).await, &q, &[]).await;
        publish_n(&conn, &q, "m", 1000).await;
    });
    p.kill9();
    // A stream directory no definition names (its queue was deleted by a
    // broker that died before the files went): removed at boot.
    let orphan = dir.0.join("streams").join("00000000000000ff");
    std::fs::create_dir_all(&orphan).unwrap();
    let p = common_durable::Proc::start(&dir.0);
    assert!(!orphan.exists(), "the orphan stream directory is gone");
    rt.block_on(deadline(60, async {
        let conn = connect(&common_durable::uri(p.port)).await;
        assert_eq!(message_count(&channel(&conn).await, &q).await, 1000);
        publish_n(&conn, &q, "n", 10).await;
        let (_ch, mut c) = stream_consumer(&conn, &q, 500, Some(s("first"))).await;
        let got = take(&mut c, 1010).await;
        for (i, (off, body)) in got.iter().enumerate() {
            let want = if i < 1000 {
                format!("m-{i}")
            } else {
                format!("n-{}", i - 1000)
            };
            assert_eq!((*off, body.as_str()), (i as i64, want.as_str()));
        }
        // Deleting the stream deletes its files.
        within(channel(&conn).await.queue_delete(&q, Default::default()))
            .await
            .unwrap();
    }));
    drop(p);
    assert_eq!(
        segment_files(&dir.0),
        0,
        "the deleted stream's files are gone"
    );
}

#[test]
fn pika_streams_script() {
    let b = start_broker(2);
    let script = common_python::package_dir()
        .join("tests")
        .join("pika")
        .join("streams.py");
    let (p0, p1) = if b.is_external() {
        (b.port(), b.port())
    } else {
        (b.shard_port(0), b.shard_port(1))
    };
    common_python::run_script(
        &script,
        &[
            "--pub-port".to_string(),
            p0.to_string(),
            "--sub-port".to_string(),
            p1.to_string(),
        ],
    );
}

async fn publish_with_filter(ch: &Channel, q: &str, body: &str, value: Option<&str>) {
    let mut props = BasicProperties::default();
    if let Some(v) = value {
        props = props.with_headers(table(&[("x-stream-filter-value", s(v))]));
    }
    let c = within(ch.basic_publish("", q, Default::default(), body.as_bytes(), props))
        .await
        .unwrap();
    assert!(within(c).await.unwrap().is_ack());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_deliver_only_matching_messages() {
    deadline(60, async {
        let b = start_broker(1);
        if b.is_external() {
            return; // RabbitMQ leaves per-message filtering to 0-9-1 clients
        }
        let conn = connect(&b.uri()).await;
        let q = uniq("st-filter");
        declare_stream(&channel(&conn).await, &q, &[]).await;
        let ch = confirm_channel(&conn).await;
        for i in 0..30 {
            let v = ["a", "b", "-"][i % 3];
            publish_with_filter(&ch, &q, &format!("{v}{i}"), (v != "-").then_some(v)).await;
        }
        let bodies = |got: Vec<(i64, String)>| got.into_iter().map(|(_, b)| b).collect::<Vec<_>>();
        let consume = |filter: AMQPValue, unfiltered: bool| {
            let conn = &conn;
            let q = q.clone();
            async move {
                let ch = channel(conn).await;
                within(ch.basic_qos(100, BasicQosOptions::default()))
                    .await
                    .unwrap();
                let args = table(&[
                    ("x-stream-offset", s("first")),
                    ("x-stream-filter", filter),
                    ("x-stream-match-unfiltered", AMQPValue::Boolean(unfiltered)),
                ]);
                let c = within(ch.basic_consume(&q, "", Default::default(), args))
                    .await
                    .unwrap();
                (ch, c)
            }
        };
        let (_c1, mut a) = consume(s("a"), false).await;
        let got = bodies(take(&mut a, 10).await);
        assert!(got.iter().all(|b| b.starts_with('a')), "{got:?}");
        recv_none(&mut a, 200).await;
        let both = AMQPValue::FieldArray(vec![s("a"), s("b")].into());
        let (_c2, mut ab) = consume(both, false).await;
        let got = bodies(take(&mut ab, 20).await);
        assert!(got.iter().all(|b| !b.starts_with('-')), "{got:?}");
        recv_none(&mut ab, 200).await;
        let (_c3, mut au) = consume(s("a"), true).await;
        let got = bodies(take(&mut au, 20).await);
        assert!(got.iter().all(|b| !b.starts_with('b')), "{got:?}");
        recv_none(&mut au, 200).await;
    })
    .await;
}

/// A tracked consumer (tag `tag`, automatic offset tracking) on `conn`:
/// reads `n` messages from where it stands, acking them; returns their
/// offsets.
async fn tracked_read(conn: &Connection, q: &str, tag: &str, n: usize, first: bool) -> Vec<i64> {
    let ch = channel(conn).await;
    within(ch.basic_qos(100, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut args = table(&[(
        "x-stream-automatic-offset-tracking",
        AMQPValue::Boolean(true),
    )]);
    if first {
        args.insert("x-stream-offset".into(), s("first"));
    }
    let mut c = within(ch.basic_consume(q, tag, Default::default(), args))
        .await
        .unwrap();
    let got = take(&mut c, n).await.into_iter().map(|(o, _)| o).collect();
    within(ch.close(200, "OK")).await.unwrap();
    got
}

#[test]
fn tracked_offsets_resume_after_reconnect_and_restart() {
    if std::env::var("WARREN_TEST_EXTERNAL_URI").is_ok() {
        return; // LavinMQ's feature, not RabbitMQ's
    }
    let dir = common_durable::DataDir::new("streams-tracking");
    let rt = runtime();
    let q = uniq("st-track");
    let p = common_durable::Proc::start(&dir.0);
    rt.block_on(deadline(60, async {
        let conn = connect(&common_durable::uri(p.port)).await;
        declare_stream(&channel(&conn).await, &q, &[]).await;
        publish_n(&conn, &q, "m", 20).await;
        assert_eq!(
            tracked_read(&conn, &q, "reader", 4, true).await,
            vec![0, 1, 2, 3]
        );
        // The same tag again, no x-stream-offset: after the last ack.
        assert_eq!(
            tracked_read(&conn, &q, "reader", 3, false).await,
            vec![4, 5, 6]
        );
        // Another tag has its own offset.
        assert_eq!(tracked_read(&conn, &q, "other", 1, true).await, vec![0]);
    }));
    p.kill9();
    let p = common_durable::Proc::start(&dir.0);
    rt.block_on(deadline(60, async {
        let conn = connect(&common_durable::uri(p.port)).await;
        assert_eq!(
            tracked_read(&conn, &q, "reader", 2, false).await,
            vec![7, 8]
        );
        assert_eq!(tracked_read(&conn, &q, "other", 1, false).await, vec![1]);
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_api_and_prometheus_show_streams() {
    deadline(60, async {
        let b = start_broker(1);
        let Some(h) = b.handle() else { return };
        let api = common_http::Api::new(h.http_port().expect("HTTP API"));
        let prom = common_http::Api::new(h.prometheus_port().expect("Prometheus")).as_user(None);
        let conn = connect(&b.uri()).await;
        let q = uniq("st-mgmt");
        declare_stream(&channel(&conn).await, &q, &[]).await;
        publish_n(&conn, &q, "m", 30).await;
        // A consumer 10 messages in, holding its prefetch (no acks).
        let ch = channel(&conn).await;
        within(ch.basic_qos(10, BasicQosOptions::default()))
            .await
            .unwrap();
        let mut c = within(ch.basic_consume(
            &q,
            "mgmt-reader",
            Default::default(),
            table(&[("x-stream-offset", s("first"))]),
        ))
        .await
        .unwrap();
        for _ in 0..10 {
            recv(&mut c).await;
        }
        let path = format!("/api/queues/%2f/{q}");
        let mut j = serde_json::Value::Null;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            j = api.get_json(&path);
            if j["stream_readers"][0]["offset"] == 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(j["type"], "stream", "{j}");
        assert_eq!(j["messages"], 30);
        assert_eq!(j["messages_ready"], 30);
        assert_eq!(j["consumers"], 1);
        assert_eq!(j["first_offset"], 0);
        assert_eq!(j["committed_offset"], 29);
        assert_eq!(j["segments"], 1);
        assert!(j["message_bytes"].as_u64().unwrap() > 30 * 16, "{j}");
        assert_eq!(j["stream_readers"][0]["consumer_tag"], "mgmt-reader");
        assert_eq!(j["stream_readers"][0]["offset"], 10);
        assert_eq!(j["stream_readers"][0]["offset_lag"], 20);
        assert_eq!(j["max_offset_lag"], 20);
        let list = api.get_json("/api/queues");
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == q.as_str())
            .expect("the stream is listed");
        assert_eq!(row["type"], "stream");
        let text = prom.get("/metrics/per-object").body;
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l.contains(&format!("queue=\"{q}\"")))
                .unwrap_or_else(|| panic!("no {name} for {q} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(line("rabbitmq_queue_messages_ready{"), "30");
        assert_eq!(line("rabbitmq_stream_segments{"), "1");
        assert_eq!(line("rabbitmq_stream_consumer_max_offset_lag{"), "20");
    })
    .await;
}
