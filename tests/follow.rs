//! Connections follow their queues (`core::follow`): with two shards, a
//! connection on shard 0 whose queues are all on shard 1 moves to shard 1,
//! and nothing it publishes, is confirmed or is delivered is lost, doubled
//! or reordered on the way. Connections on a shard's own port
//! (`shard_uri`) never move, so the queues and the "other side" of each
//! test sit still on shard 1; the connection under test comes in on the
//! main port and is retried until the kernel places it on shard 0.

mod common_lapin;
mod util;
use common_lapin::*;
use util::*;

use lapin::{options::*, BasicProperties, Connection, ConnectionProperties};
use std::time::Duration;

/// The shard serving the 0-9-1 connection named `name`, if any.
fn shard_of(b: &TestBroker, name: &str) -> Option<u16> {
    let name = name.to_string();
    let found = b
        .handle()
        .expect("in-process broker")
        .control()
        .ask_all(move |s| {
            let here = s.conns.iter().any(|(_, c)| {
                c.amqp091_ref().is_some_and(|c| {
                    c.info
                        .client_properties
                        .get("connection_name")
                        .and_then(|v| v.as_str())
                        == Some(name.as_str())
                })
            });
            here.then_some(s.ctx.id)
        });
    found.into_iter().flatten().next()
}

/// A connection named `name` on the main port that the kernel placed on
/// shard 0 (others are closed and retried).
async fn connect_on_shard0(b: &TestBroker, name: &str) -> Connection {
    for i in 0..64 {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let c = within(Connection::connect(&b.uri(), props))
            .await
            .expect("connect");
        let at = poll_for("the connection to be listed", || async {
            shard_of(b, name)
        })
        .await;
        if at == 0 {
            return c;
        }
        let _ = within(c.close(200, "wrong shard")).await;
        eventually("the connection to go", || async {
            shard_of(b, name).is_none()
        })
        .await;
        assert!(i < 63, "the kernel never placed a connection on shard 0");
    }
    unreachable!()
}

/// Publishes `body` to queue `q` on a confirm channel; true if acked.
async fn publish_acked(ch: &lapin::Channel, q: &str, body: &[u8]) -> bool {
    let pc = within(ch.basic_publish(
        "",
        q,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    ))
    .await
    .expect("basic.publish");
    within(pc).await.expect("confirm").is_ack()
}

fn body(i: u32) -> Vec<u8> {
    format!("m{i:05}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_moves_to_its_queues_shard_and_loses_nothing() {
    deadline(90, async {
        let b = start_broker(2);
        let home = connect(&b.shard_uri(1)).await;
        let hch = channel(&home).await;
        let q = uniq("follow-pub");
        declare(&hch, &q).await;
        let mut cons = consume(&hch, &q, true).await;

        let name = uniq("publisher");
        let p = connect_on_shard0(&b, &name).await;
        let pch = confirm_channel(&p).await;
        // Publishes at a modest rate, each confirmed, until well after the move.
        let mut moved_at = None;
        let mut i = 0u32;
        while i < 4000 {
            assert!(
                publish_acked(&pch, &q, &body(i)).await,
                "publish {i} nacked"
            );
            i += 1;
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if moved_at.is_none() && shard_of(&b, &name) == Some(1) {
                    moved_at = Some(i);
                }
                if moved_at.is_some_and(|m| i >= m + 300) {
                    break;
                }
            }
        }
        let moved_at = moved_at.expect("the publisher moved to shard 1");
        assert!(moved_at < i, "published after the move");
        for k in 0..i {
            let d = recv(&mut cons).await;
            assert_eq!(d.data, body(k), "message {k} in order, once");
        }
        expect_no_message(&mut cons, Duration::from_millis(200)).await;
        // The moved connection still does everything a connection does.
        assert_connection_usable(&p).await;
        within(p.close(200, "bye")).await.expect("clean close");
        eventually("the publisher to be gone", || async {
            shard_of(&b, &name).is_none()
        })
        .await;
    })
    .await
}

/// One consumer on a moving connection, fed from shard 1 while it moves.
async fn consumer_moves(no_ack: bool) {
    let b = start_broker(2);
    let home = connect(&b.shard_uri(1)).await;
    let hch = confirm_channel(&home).await;
    let q = uniq("follow-con");
    declare(&hch, &q).await;

    let name = uniq("consumer");
    let c = connect_on_shard0(&b, &name).await;
    let cch = channel(&c).await;
    within(cch.basic_qos(20, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut cons = consume(&cch, &q, no_ack).await;

    // Publisher on shard 1 (stays): a steady trickle, in order, until the
    // consumer has seen 500 deliveries after its move.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut publisher = Some({
        let (hch, q, stop) = (hch.clone(), q.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 200_000 {
                publish(&hch, "", &q, &body(i)).await;
                i += 1;
                if i % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            within(hch.wait_for_confirms()).await.unwrap();
            i
        })
    });
    let mut moved_at = None;
    let mut k = 0u32;
    let mut sent = None;
    while sent.is_none_or(|n| k < n) {
        let d = recv(&mut cons).await;
        assert_eq!(d.data, body(k), "delivery {k} in order, once");
        assert!(!d.redelivered, "delivery {k} not redelivered");
        if !no_ack {
            within(d.acker.ack(BasicAckOptions::default()))
                .await
                .unwrap();
        }
        k += 1;
        if k % 100 == 0 && moved_at.is_none() && shard_of(&b, &name) == Some(1) {
            moved_at = Some(k);
        }
        if sent.is_none() && moved_at.is_some_and(|m| k >= m + 500) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            sent = Some(publisher.take().unwrap().await.unwrap());
        }
        assert!(k < 200_000, "the consumer never moved to shard 1");
    }
    expect_no_message(&mut cons, Duration::from_millis(200)).await;
    // Every ack reached the queue (readdressed on the way): nothing left.
    assert_eq!(message_count(&hch, &q).await, 0);
    // After the move, deliveries and acks still flow.
    assert!(publish_acked(&hch, &q, b"after").await);
    let d = recv(&mut cons).await;
    assert_eq!(d.data, b"after");
    if !no_ack {
        within(d.acker.ack(BasicAckOptions::default()))
            .await
            .unwrap();
    }
    eventually("the last ack to land", || async {
        message_count(&hch, &q).await == 0
    })
    .await;
    // Closing the moved connection leaves the queue without consumers.
    within(c.close(200, "bye")).await.expect("clean close");
    eventually("the consumer to be gone", || async {
        let ok = within(hch.queue_declare(
            &q,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        ))
        .await
        .unwrap();
        ok.consumer_count() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_ack_consumer_moves_without_losing_a_delivery() {
    deadline(90, consumer_moves(true)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acking_consumer_moves_and_its_acks_follow() {
    deadline(90, consumer_moves(false)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_with_queues_on_both_shards_stays() {
    deadline(60, async {
        let b = start_broker(2);
        let h0 = connect(&b.shard_uri(0)).await;
        let h1 = connect(&b.shard_uri(1)).await;
        let (c0, c1) = (channel(&h0).await, channel(&h1).await);
        let (q0, q1) = (uniq("both0"), uniq("both1"));
        declare(&c0, &q0).await;
        declare(&c1, &q1).await;
        let name = uniq("mixed");
        let p = connect_on_shard0(&b, &name).await;
        let pch = confirm_channel(&p).await;
        for i in 0..400u32 {
            for q in [&q1, &q1, &q0] {
                assert!(publish_acked(&pch, q, &body(i)).await);
            }
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        assert_eq!(
            shard_of(&b, &name),
            Some(0),
            "publishes to both shards: stays"
        );
        assert_eq!(message_count(&c1, &q1).await, 800);
        assert_eq!(message_count(&c0, &q0).await, 400);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_max_rate_zero_keeps_connections_where_they_are() {
    deadline(60, async {
        let mut config = warren::Config::for_tests(2);
        config.follow_max_rate = 0;
        let h = warren::start(config).expect("broker starts");
        let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", h.port());
        let home = connect(&format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f",
            h.shard_ports()[1]
        ))
        .await;
        let hch = channel(&home).await;
        let q = uniq("nofollow");
        declare(&hch, &q).await;
        // Up to 16 connections: some land on shard 0; none of them moves.
        let control = h.control();
        let mut conns = Vec::new();
        for _ in 0..16 {
            let c = connect(&uri).await;
            let ch = confirm_channel(&c).await;
            conns.push((c, ch));
        }
        let on0 = || control.ask(0, |s| s.conns.len()).unwrap();
        let before = on0();
        assert!(before > 0, "no connection landed on shard 0");
        for i in 0..600u32 {
            for (_, ch) in &conns {
                publish(ch, "", &q, &body(i)).await;
            }
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for (_, ch) in &conns {
            within(ch.wait_for_confirms()).await.unwrap();
        }
        assert_eq!(on0(), before, "no connection left shard 0");
        drop(conns);
        h.shutdown();
    })
    .await
}
