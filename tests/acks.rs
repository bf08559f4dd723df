//! Acknowledgement integration tests (lapin): ack/nack/reject, requeue order, delivery-tag
//! errors, prefetch (fair dispatch, per-consumer and per-channel qos), basic.recover,
//! requeue of unacked messages on channel/connection close.
//!
//! Validated against RabbitMQ 3.10 with `WARREN_TEST_EXTERNAL_URI`.

mod common_lapin;
mod util;
use common_lapin::*;
use util::*;

use futures_lite::StreamExt;
use lapin::{options::*, Channel};
use std::time::Duration;

// ---------------------------------------------------------------- local helpers
// (shared ones — deadline, uniq, declare, publish, consume, recv, get, drain_redelivered, … —
// come from tests/common_lapin)

/// Polls the ready-message count until it equals `n` (panics after [`PATIENCE`]).
async fn wait_count(ch: &Channel, q: &str, n: u32) {
    eventually(&format!("{n} messages ready in {q}"), async || {
        message_count(ch, q).await == n
    })
    .await
}

async fn publish_n(ch: &Channel, q: &str, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        publish(ch, "", q, i.to_string().as_bytes()).await;
    }
}

// ---------------------------------------------------------------- ack

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_single_and_multiple() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("ack");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 1..=10).await;
        let mut cons = consume(&ch, &q, false).await;
        for i in 1..=10u64 {
            let d = recv(&mut cons).await;
            assert_eq!((d.delivery_tag, sval(&d)), (i, i.to_string()));
        }
        within(ch.basic_ack(3, BasicAckOptions { multiple: false }))
            .await
            .unwrap();
        within(ch.basic_ack(7, BasicAckOptions { multiple: true }))
            .await
            .unwrap(); // 1,2,4,5,6,7
        within(ch.basic_ack(9, BasicAckOptions { multiple: false }))
            .await
            .unwrap();
        // only 8 and 10 remain unacked: closing the channel requeues exactly those
        within(ch.close(200, "bye")).await.unwrap();
        let ch = channel(&c).await;
        assert_eq!(message_count(&ch, &q).await, 2);
        assert_eq!(
            drain_redelivered(&ch, &q).await,
            owned(&[("8", true), ("10", true)])
        );
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_multiple_with_tag_zero_acks_everything() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("ack0");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 1..=4).await;
        for _ in 0..4 {
            get(&ch, &q, false).await.expect("message");
        }
        within(ch.basic_ack(0, BasicAckOptions { multiple: true }))
            .await
            .unwrap();
        within(ch.close(200, "bye")).await.unwrap();
        let ch = channel(&c).await;
        assert_eq!(message_count(&ch, &q).await, 0);
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_tags_are_per_channel_and_shared_by_get_and_consume() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let ch2 = channel(&c).await;
        let q = uniq("tags");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 1..=4).await;
        assert_eq!(get(&ch, &q, false).await.unwrap().delivery.delivery_tag, 1);
        assert_eq!(get(&ch, &q, true).await.unwrap().delivery.delivery_tag, 2);
        assert_eq!(get(&ch2, &q, false).await.unwrap().delivery.delivery_tag, 1);
        let mut cons = consume(&ch, &q, false).await;
        assert_eq!(recv(&mut cons).await.delivery_tag, 3);
        delete(&ch, &q).await;
    })
    .await
}

// ---------------------------------------------------------------- nack / reject

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_messages_keep_their_position() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("requeue-pos");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 1..=7).await;
        for i in 1..=5u64 {
            assert_eq!(get(&ch, &q, false).await.unwrap().delivery.delivery_tag, i);
        }
        // requeue 3 first, then 1; 6 and 7 were never delivered
        within(ch.basic_nack(
            3,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        ))
        .await
        .unwrap();
        within(ch.basic_reject(1, BasicRejectOptions { requeue: true }))
            .await
            .unwrap();
        let got = drain_redelivered(&ch, &q).await;
        assert_eq!(
            got,
            owned(&[("1", true), ("3", true), ("6", false), ("7", false)])
        );
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_multiple_requeue_returns_all_in_order() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("nackm");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 1..=5).await;
        let mut cons = consume(&ch, &q, false).await;
        for _ in 1..=5 {
            recv(&mut cons).await;
        }
        within(ch.basic_ack(2, BasicAckOptions::default()))
            .await
            .unwrap();
        within(ch.basic_nack(
            4,
            BasicNackOptions {
                multiple: true,
                requeue: true,
            },
        ))
        .await
        .unwrap(); // 1,3,4
                   // they come straight back to the (still active) consumer, redelivered, in order
        let back: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                let d = recv(&mut cons).await;
                v.push((sval(&d), d.redelivered, d.delivery_tag));
            }
            v
        };
        assert_eq!(
            back,
            vec![
                ("1".into(), true, 6),
                ("3".into(), true, 7),
                ("4".into(), true, 8)
            ]
        );
        recv_none(&mut cons, 200).await;
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_and_reject_without_requeue_drop() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("drop");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 1..=4).await;
        for _ in 0..4 {
            get(&ch, &q, false).await.unwrap();
        }
        within(ch.basic_reject(1, BasicRejectOptions { requeue: false }))
            .await
            .unwrap();
        within(ch.basic_nack(
            2,
            BasicNackOptions {
                multiple: false,
                requeue: false,
            },
        ))
        .await
        .unwrap();
        within(ch.basic_nack(
            4,
            BasicNackOptions {
                multiple: true,
                requeue: false,
            },
        ))
        .await
        .unwrap(); // 3,4
        assert_eq!(message_count(&ch, &q).await, 0);
        within(ch.close(200, "bye")).await.unwrap();
        let ch = channel(&c).await;
        assert_eq!(
            message_count(&ch, &q).await,
            0,
            "dropped messages must not come back"
        );
        delete(&ch, &q).await;
    })
    .await
}

// ---------------------------------------------------------------- tag errors

async fn expect_406(ch: &Channel, errs: &mut ErrRx, tag: u64) {
    let (code, text) = next_err(errs).await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!("PRECONDITION_FAILED - unknown delivery tag {tag}")
    );
    eventually("the channel closed after the 406", async || {
        !ch.status().connected()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_unknown_tag_is_406() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let mut errs = watch_channel(&ch);
        let _ = within(ch.basic_ack(42, BasicAckOptions::default())).await;
        expect_406(&ch, &mut errs, 42).await;
        // nack and reject of an unknown tag as well
        let ch = channel(&c).await;
        let mut errs = watch_channel(&ch);
        let _ = within(ch.basic_nack(
            7,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        ))
        .await;
        expect_406(&ch, &mut errs, 7).await;
        let ch = channel(&c).await;
        let mut errs = watch_channel(&ch);
        let _ = within(ch.basic_reject(9, BasicRejectOptions { requeue: false })).await;
        expect_406(&ch, &mut errs, 9).await;
        // the connection survived
        assert!(c.status().connected());
        assert_broker_alive(&b.uri()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_ack_is_406_and_unacked_messages_are_requeued() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let mut errs = watch_channel(&ch);
        let q = uniq("dblack");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 1..=2).await;
        get(&ch, &q, false).await.unwrap();
        get(&ch, &q, false).await.unwrap();
        within(ch.basic_ack(1, BasicAckOptions::default()))
            .await
            .unwrap();
        let _ = within(ch.basic_ack(1, BasicAckOptions::default())).await;
        expect_406(&ch, &mut errs, 1).await;
        // the channel error requeued message 2
        let ch = channel(&c).await;
        assert_eq!(drain_redelivered(&ch, &q).await, owned(&[("2", true)]));
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_of_a_no_ack_delivery_is_406() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let mut errs = watch_channel(&ch);
        let q = uniq("noack");
        declare(&ch, &q).await;
        let mut cons = consume(&ch, &q, true).await;
        publish_n(&ch, &q, 1..=2).await;
        let d1 = recv(&mut cons).await;
        let d2 = recv(&mut cons).await;
        // no-ack deliveries still consume delivery tags, but there is nothing to ack
        assert_eq!((d1.delivery_tag, d2.delivery_tag), (1, 2));
        let _ = within(ch.basic_ack(d2.delivery_tag, BasicAckOptions::default())).await;
        expect_406(&ch, &mut errs, 2).await;
        let ch = channel(&c).await;
        assert_eq!(
            message_count(&ch, &q).await,
            0,
            "no-ack deliveries are settled at once"
        );
        delete(&ch, &q).await;
    })
    .await
}

// ---------------------------------------------------------------- prefetch (limits on unacked deliveries)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_dispatch_with_prefetch_one() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let lazy = channel(&c).await;
        let busy = channel(&c).await;
        let q = uniq("fair");
        declare(&lazy, &q).await;
        for ch in [&lazy, &busy] {
            within(ch.basic_qos(1, BasicQosOptions::default()))
                .await
                .unwrap();
        }
        let mut l = consume(&lazy, &q, false).await;
        let mut w = consume(&busy, &q, false).await;
        for i in 0..10 {
            publish(&lazy, "", &q, i.to_string().as_bytes()).await;
        }
        let first_lazy = recv(&mut l).await; // never acked
        let mut worked = 0;
        while worked < 9 {
            let d = recv(&mut w).await;
            within(busy.basic_ack(d.delivery_tag, BasicAckOptions::default()))
                .await
                .unwrap();
            worked += 1;
        }
        recv_none(&mut l, 300).await;
        recv_none(&mut w, 100).await;
        // acking frees the slot: the lazy consumer gets the next message
        within(lazy.basic_ack(first_lazy.delivery_tag, BasicAckOptions::default()))
            .await
            .unwrap();
        publish(&busy, "", &q, b"late").await;
        publish(&busy, "", &q, b"late2").await;
        let d1 = recv(&mut l).await;
        let d2 = recv(&mut w).await;
        let mut got = vec![d1.data, d2.data];
        got.sort();
        assert_eq!(got, vec![b"late".to_vec(), b"late2".to_vec()]);
        delete(&lazy, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_per_consumer_and_per_channel() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let setup = channel(&c).await;
        let (q1, q2) = (uniq("qos1"), uniq("qos2"));
        declare(&setup, &q1).await;
        declare(&setup, &q2).await;
        for i in 0..10 {
            publish(&setup, "", &q1, format!("a{i}").as_bytes()).await;
            publish(&setup, "", &q2, format!("b{i}").as_bytes()).await;
        }
        // global=false: the limit applies to each consumer separately
        let ch = channel(&c).await;
        within(ch.basic_qos(2, BasicQosOptions { global: false }))
            .await
            .unwrap();
        let mut a = consume(&ch, &q1, false).await;
        let mut bb = consume(&ch, &q2, false).await;
        for _ in 0..2 {
            recv(&mut a).await;
            recv(&mut bb).await;
        }
        recv_none(&mut a, 300).await;
        recv_none(&mut bb, 100).await;
        // ack one of a's: exactly one more for a
        within(ch.basic_ack(1, BasicAckOptions::default()))
            .await
            .unwrap();
        let _ = recv(&mut a).await;
        recv_none(&mut a, 300).await;
        within(ch.close(200, "done")).await.unwrap(); // requeues the 5 unacked

        // global=true: the limit is shared by all consumers of the channel
        let ch = channel(&c).await;
        within(ch.basic_qos(3, BasicQosOptions { global: true }))
            .await
            .unwrap();
        let mut a = consume(&ch, &q1, false).await;
        let mut bb = consume(&ch, &q2, false).await;
        // Deliveries on either consumer: those expected are awaited with the
        // usual TIMEOUT; then a fixed 500 ms "nothing more arrives" window
        // (a negative check, valid however late it runs).
        let mut tags = Vec::new();
        while tags.len() < 3 {
            tokio::select! {
                Some(Ok(d)) = a.next() => tags.push(d.delivery_tag),
                Some(Ok(d)) = bb.next() => tags.push(d.delivery_tag),
                _ = tokio::time::sleep(TIMEOUT) => break,
            }
        }
        loop {
            tokio::select! {
                Some(Ok(d)) = a.next() => tags.push(d.delivery_tag),
                Some(Ok(d)) = bb.next() => tags.push(d.delivery_tag),
                _ = tokio::time::sleep(Duration::from_millis(500)) => break,
            }
        }
        assert_eq!(tags.len(), 3, "global prefetch 3 shared by two consumers");
        within(ch.basic_ack(tags[0], BasicAckOptions::default()))
            .await
            .unwrap();
        let mut more = 0;
        while more < 1 {
            tokio::select! {
                Some(Ok(_)) = a.next() => more += 1,
                Some(Ok(_)) = bb.next() => more += 1,
                _ = tokio::time::sleep(TIMEOUT) => break,
            }
        }
        loop {
            tokio::select! {
                Some(Ok(_)) = a.next() => more += 1,
                Some(Ok(_)) = bb.next() => more += 1,
                _ = tokio::time::sleep(Duration::from_millis(500)) => break,
            }
        }
        assert_eq!(more, 1, "one ack frees exactly one slot");
        delete(&setup, &q1).await;
        delete(&setup, &q2).await;
    })
    .await
}

// ---------------------------------------------------------------- recover and requeue on close

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_recover_requeue_redelivers_unacked() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("recover");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 1..=3).await;
        let mut cons = consume(&ch, &q, false).await;
        for _ in 0..3 {
            recv(&mut cons).await;
        }
        within(ch.basic_ack(2, BasicAckOptions::default()))
            .await
            .unwrap();
        within(ch.basic_recover(BasicRecoverOptions { requeue: true }))
            .await
            .unwrap();
        let mut again = Vec::new();
        for _ in 0..2 {
            let d = recv(&mut cons).await;
            again.push((sval(&d), d.redelivered));
            within(ch.basic_ack(d.delivery_tag, BasicAckOptions::default()))
                .await
                .unwrap();
        }
        assert_eq!(again, owned(&[("1", true), ("3", true)]));
        recv_none(&mut cons, 200).await;
        assert_eq!(message_count(&ch, &q).await, 0);
        delete(&ch, &q).await;
    })
    .await
}

async fn requeue_on_close(close_connection: bool) {
    let b = start_broker(1);
    let other = connect(&b.uri()).await;
    let och = channel(&other).await;
    let q = uniq(if close_connection {
        "rq-conn"
    } else {
        "rq-chan"
    });
    declare(&och, &q).await;
    publish_n(&och, &q, 1..=5).await;

    let first = connect(&b.uri()).await;
    let fch = channel(&first).await;
    within(fch.basic_qos(3, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut fc = consume(&fch, &q, false).await;
    for i in 1..=3 {
        assert_eq!(sval(&recv(&mut fc).await), i.to_string());
    }
    // a second consumer elsewhere: gets 4 and 5 now, then 1 and 3 once they are requeued
    let mut oc = consume(&och, &q, false).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = recv(&mut oc).await;
        got.push((sval(&d), d.redelivered));
    }
    within(fch.basic_ack(2, BasicAckOptions::default()))
        .await
        .unwrap();
    if close_connection {
        within(first.close(200, "bye")).await.unwrap();
    } else {
        within(fch.close(200, "bye")).await.unwrap();
    }
    for _ in 0..2 {
        let d = recv(&mut oc).await;
        got.push((sval(&d), d.redelivered));
    }
    assert_eq!(
        got,
        owned(&[("4", false), ("5", false), ("1", true), ("3", true)])
    );
    within(och.basic_ack(0, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    recv_none(&mut oc, 200).await;
    delete(&och, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_requeued_when_channel_closes() {
    deadline(60, requeue_on_close(false)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_requeued_when_connection_closes() {
    deadline(60, requeue_on_close(true)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_requeued_when_socket_drops() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("rq-sock");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 1..=2).await;
        // (publishes are asynchronous: wait until both are enqueued)
        wait_count(&ch, &q, 2).await;
        // a raw client takes both without acking, then vanishes without closing
        let port = b.port();
        let qq = q.clone();
        tokio::task::spawn_blocking(move || raw_get_and_drop(port, &qq))
            .await
            .unwrap();
        let mut cons = consume(&ch, &q, false).await;
        let d1 = recv(&mut cons).await;
        let d2 = recv(&mut cons).await;
        assert_eq!(
            (sval(&d1), d1.redelivered, sval(&d2), d2.redelivered),
            ("1".into(), true, "2".into(), true)
        );
        delete(&ch, &q).await;
    })
    .await
}

/// Raw client: handshake, channel 1, two basic.get (ack mode), then drop the socket.
fn raw_get_and_drop(port: u16, q: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let frame = |ty: u8, ch: u16, p: &[u8]| {
        let mut f = vec![ty];
        f.extend_from_slice(&ch.to_be_bytes());
        f.extend_from_slice(&(p.len() as u32).to_be_bytes());
        f.extend_from_slice(p);
        f.push(0xCE);
        f
    };
    let read = |s: &mut std::net::TcpStream| {
        let mut h = [0u8; 7];
        s.read_exact(&mut h).unwrap();
        let mut p = vec![0u8; u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize + 1];
        s.read_exact(&mut p).unwrap();
        p.pop();
        (h[0], p)
    };
    s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    read(&mut s); // start
    let mut a = vec![0, 0, 0, 0, 5];
    a.extend_from_slice(b"PLAIN");
    a.extend_from_slice(&12u32.to_be_bytes());
    a.extend_from_slice(b"\0guest\0guest");
    a.push(5);
    a.extend_from_slice(b"en_US");
    s.write_all(&frame(1, 0, &[&[0, 10, 0, 11][..], &a].concat()))
        .unwrap();
    read(&mut s); // tune
    s.write_all(&frame(1, 0, &[0, 10, 0, 31, 0x07, 0xFF, 0, 2, 0, 0, 0, 0]))
        .unwrap();
    s.write_all(&frame(1, 0, &[0, 10, 0, 40, 1, b'/', 0, 0]))
        .unwrap();
    read(&mut s); // open-ok
    s.write_all(&frame(1, 1, &[0, 20, 0, 10, 0])).unwrap();
    read(&mut s); // channel.open-ok
    for _ in 0..2 {
        let mut g = vec![0, 60, 0, 70, 0, 0, q.len() as u8];
        g.extend_from_slice(q.as_bytes());
        g.push(0); // no_ack = false
        s.write_all(&frame(1, 1, &g)).unwrap();
        let (_, m) = read(&mut s);
        assert_eq!(&m[..4], &[0, 60, 0, 71], "get-ok");
        read(&mut s); // header
        read(&mut s); // body
    }
    drop(s);
}
