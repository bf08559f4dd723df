//! Resource alarms (lapin): while the memory alarm is raised, publishing
//! connections are not read and get `connection.blocked` (lapin advertises
//! the capability), consumers keep draining, and everything resumes with
//! `connection.unblocked` once the alarm clears. The alarm is driven through
//! `BrokerHandle::alarms().set_memory_limit` (RabbitMQ:
//! `rabbitmqctl set_vm_memory_high_watermark`), so these tests need the
//! in-process broker.

mod common_lapin;
mod util;
use common_lapin::*;
use util::*;

use lapin::{options::*, BasicProperties, Connection};
use std::time::Duration;

fn blocked(c: &Connection) -> bool {
    c.status().blocked()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_blocks_publishers_and_consumers_keep_draining() {
    deadline(60, async {
        let b = start_broker(2);
        let Some(h) = b.handle() else { return };
        let publisher = connect(&b.uri()).await;
        let pch = channel(&publisher).await;
        let q = uniq("alarm");
        declare(&pch, &q).await;
        // Publish once before the alarm: the connection is now a publisher.
        for i in 0..10 {
            publish(&pch, "", &q, format!("before-{i}").as_bytes()).await;
        }
        let consumer_conn = connect(&b.uri()).await;
        let cch = channel(&consumer_conn).await;
        assert_eq!(message_count(&cch, &q).await, 10);

        h.alarms().set_memory_limit(1);
        // The alarm is measured on a timer; once it is raised, the next publish
        // is not read and the publisher is told.
        eventually("the memory alarm raised", async || h.alarms().active()).await;
        publish(&pch, "", &q, b"during").await;
        eventually("connection.blocked reaches the publisher", async || {
            blocked(&publisher)
        })
        .await;
        assert!(!blocked(&consumer_conn), "a consumer is not blocked");

        // Consumers keep draining what is queued.
        let mut consumer = consume(&cch, &q, false).await;
        for i in 0..10 {
            let d = recv(&mut consumer).await;
            assert_eq!(sval(&d), format!("before-{i}"));
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        recv_none(&mut consumer, 500).await;

        h.alarms().set_memory_limit(u64::MAX);
        eventually("connection.unblocked", async || !blocked(&publisher)).await;
        let d = recv(&mut consumer).await;
        assert_eq!(sval(&d), "during");
        d.ack(BasicAckOptions::default()).await.unwrap();
        // Publishing works again.
        publish(&pch, "", &q, b"after").await;
        assert_eq!(sval(&recv(&mut consumer).await), "after");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_wait_while_blocked_and_arrive_after() {
    deadline(60, async {
        let b = start_broker(1);
        let Some(h) = b.handle() else { return };
        let c = connect(&b.uri()).await;
        let ch = confirm_channel(&c).await;
        let q = uniq("alarm-confirm");
        declare(&ch, &q).await;
        // Confirmed, so that it is surely read before the alarm is raised.
        let first = within(ch.basic_publish(
            "",
            &q,
            Default::default(),
            b"first",
            BasicProperties::default(),
        ))
        .await
        .expect("basic.publish");
        assert!(within(first).await.expect("confirm").is_ack());
        h.alarms().set_memory_limit(1);
        eventually("the memory alarm raised", async || h.alarms().active()).await;
        let pending = ch
            .basic_publish(
                "",
                &q,
                Default::default(),
                b"second",
                BasicProperties::default(),
            )
            .await
            .expect("publish is written");
        eventually("blocked", async || blocked(&c)).await;
        // A fixed wait, not a poll: it checks that something does NOT happen (the
        // blocked publish is not read). While the alarm is raised that holds however
        // long we wait, so a late check cannot fail wrongly.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let admin = connect(&b.uri()).await;
        let ach = channel(&admin).await;
        assert_eq!(message_count(&ach, &q).await, 1, "not read while blocked");
        h.alarms().set_memory_limit(u64::MAX);
        let confirm = within(pending).await.expect("confirm");
        assert!(confirm.is_ack(), "{confirm:?}");
        assert_eq!(message_count(&ach, &q).await, 2);
        assert!(!blocked(&c));
    })
    .await
}
