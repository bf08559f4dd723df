//! Delivery acknowledgement timeout (`x-consumer-timeout` here; the broker's
//! `--consumer-timeout` default is 30 minutes): a channel that keeps a
//! delivery unacked too long is closed with 406 and RabbitMQ's text; the
//! message is requeued. Acked deliveries, and channels that ack in time, are
//! left alone.

mod common_ext;
mod common_lapin;
mod util;
use common_ext::*;
use common_lapin::*;
use util::*;

use lapin::{options::*, types::FieldTable};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_delivery_past_the_timeout_closes_the_channel() {
    deadline(30, async {
        let b = start_broker(1);
        if b.is_external() {
            return; // the local oracle (RabbitMQ 3.10) has no x-consumer-timeout
        }
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = uniq("ctimeout");
        declare_args(&ch, &q, &[("x-consumer-timeout", int(500))]).await;
        publish_acked(&ch, "", &q, b"slow", Default::default()).await;
        let c = channel(&conn).await;
        let mut errs = watch_channel(&c);
        let mut cons = consume_with(&c, &q, "", false, FieldTable::default()).await;
        let d = recv(&mut cons).await;
        let start = Instant::now();
        let (code, text) = next_err(&mut errs).await;
        let took = start.elapsed();
        assert_eq!(code, 406);
        assert_eq!(
            text,
            format!(
                "PRECONDITION_FAILED - delivery acknowledgement on channel {} timed out. \
                 Timeout value used: 500 ms. This timeout value can be configured, see \
                 consumers doc guide to learn more",
                c.id()
            )
        );
        assert!(took >= Duration::from_millis(450), "closed after {took:?}");
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
        drop(d);
        // the message is back, redelivered
        let m = get(&ch, &q, true).await.expect("requeued");
        assert_eq!(
            (sval(&m.delivery), m.delivery.redelivered),
            ("slow".to_string(), true)
        );
        assert!(conn.status().connected());
        delete(&ch, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_acked_in_time_keep_the_channel_open() {
    deadline(30, async {
        let b = start_broker(1);
        if b.is_external() {
            return; // the local oracle (RabbitMQ 3.10) has no x-consumer-timeout
        }
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = uniq("ctimeout-ok");
        declare_args(&ch, &q, &[("x-consumer-timeout", int(400))]).await;
        let c = channel(&conn).await;
        let mut errs = watch_channel(&c);
        let mut cons = consume_with(&c, &q, "", false, FieldTable::default()).await;
        // a steady trickle, each acked well within the timeout, for > 1 s.
        // The 150 ms hold is a fixed wait, not a poll: the point is that the
        // channel is NOT closed. That is only asserted for a delivery provably
        // acked within the 400 ms timeout (timed from before its publish to
        // after a round trip on `c` behind the ack); if a loaded machine
        // stalled the test for longer, the channel may rightly be closed and
        // the rest of this part is skipped.
        let timeout = Duration::from_millis(400);
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let mut in_time = true;
        for i in 0..8 {
            let sent = Instant::now();
            publish_acked(&ch, "", &q, format!("m{i}").as_bytes(), Default::default()).await;
            let d = recv(&mut cons).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
            d.ack(BasicAckOptions::default()).await.unwrap();
            let sync = within(c.queue_declare(&q, passive, FieldTable::default())).await;
            if sent.elapsed() >= timeout {
                eprintln!("ack {i} not provably within the timeout: channel checks skipped");
                in_time = false;
                break;
            }
            sync.expect("channel closed although every delivery was acked in time");
        }
        // and a basic.get delivery held past the timeout on another channel
        // counts too (RabbitMQ's channel checks every unacked delivery)
        if in_time {
            assert!(errs.try_recv().is_err(), "channel was closed");
            assert!(c.status().connected());
        }
        let g = channel(&conn).await;
        let mut gerrs = watch_channel(&g);
        let cancel = within(c.basic_cancel(cons.tag().as_str(), Default::default())).await;
        if in_time {
            cancel.unwrap();
        }
        publish_acked(&ch, "", &q, b"got", Default::default()).await;
        let _held = get_one(&g, &q).await;
        let (code, _) = next_err(&mut gerrs).await;
        assert_eq!(code, 406);
        delete(&ch, &q).await;
    })
    .await;
}
