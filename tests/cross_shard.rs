//! Cross-shard messaging (lapin): with two shards, publishers and consumers sit on
//! different shards (`shard_uri(0)` / `shard_uri(1)`) and every operation must behave as
//! on a single node: round trips, acks, nack requeue, basic.get, prefetch, requeue after a
//! connection closes, confirms, ordering of 10,000 messages, and queue/exchange management
//! from the other shard. (Against an external broker both URIs are the same node.)

mod common_lapin;
mod util;
use common_lapin::*;
use util::*;

use futures_lite::StreamExt;
use lapin::{
    options::*, publisher_confirm::Confirmation, types::FieldTable, BasicProperties, Channel,
    Connection, ExchangeKind,
};

// ---------------------------------------------------------------- local helpers
// (shared ones — deadline, uniq, declare, consume, recv, get, confirm_channel, … — come
// from tests/common_lapin)

/// Connections on shard 0 and shard 1 of a two-shard broker.
async fn two_shards(b: &TestBroker) -> (Connection, Connection) {
    (
        connect(&b.shard_uri(0)).await,
        connect(&b.shard_uri(1)).await,
    )
}

/// Publishes on a confirm channel and waits for a plain ack (so the message is enqueued
/// before the test looks at the queue from another shard).
async fn publish_confirmed(ch: &Channel, ex: &str, rk: &str, body: &[u8]) {
    let (opts, props) = (BasicPublishOptions::default(), BasicProperties::default());
    let pc = within(ch.basic_publish(ex, rk, opts, body, props))
        .await
        .expect("publish");
    assert_eq!(within(pc).await.expect("confirm"), Confirmation::Ack(None));
}

// ---------------------------------------------------------------- round trips

async fn round_trip(b: &TestBroker, from: usize, to: usize) {
    let p = connect(&b.shard_uri(from)).await;
    let c = connect(&b.shard_uri(to)).await;
    let pch = confirm_channel(&p).await;
    let cch = channel(&c).await;
    let q = uniq(&format!("rt{from}{to}"));
    declare(&cch, &q).await;
    let mut cons = consume(&cch, &q, false).await;
    let mut headers = FieldTable::default();
    headers.insert("k".into(), lapin::types::AMQPValue::LongInt(-5));
    let props = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_message_id(format!("from-{from}").into())
        .with_headers(headers)
        .with_priority(3)
        .with_timestamp(1234567);
    let body = vec![b'x'; 200_000]; // several frames
    let opts = BasicPublishOptions::default();
    let pc = within(pch.basic_publish("", &q, opts, &body, props.clone())).await;
    assert!(within(pc.unwrap()).await.unwrap().is_ack());
    let d = recv(&mut cons).await;
    assert_eq!((d.properties, d.data, d.redelivered), (props, body, false));
    assert_eq!(d.routing_key.as_str(), q);
    within(cch.basic_ack(d.delivery_tag, BasicAckOptions::default()))
        .await
        .unwrap();
    // the ack really removed it: nothing comes back when the consumer's channel closes
    within(cch.close(200, "bye")).await.unwrap();
    assert_eq!(message_count(&pch, &q).await, 0);
    delete(&pch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_ack_both_directions() {
    deadline(60, async {
        let b = start_broker(2);
        round_trip(&b, 0, 1).await;
        round_trip(&b, 1, 0).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_requeue_and_reject_across_shards() {
    deadline(60, async {
        let b = start_broker(2);
        let (c0, c1) = two_shards(&b).await;
        let pch = confirm_channel(&c0).await;
        let cch = channel(&c1).await;
        let q = uniq("nack");
        declare(&pch, &q).await;
        for m in ["a", "b", "c"] {
            publish_confirmed(&pch, "", &q, m.as_bytes()).await;
        }
        let mut cons = consume(&cch, &q, false).await;
        let mut first = Vec::new();
        for _ in 0..3 {
            first.push(recv(&mut cons).await);
        }
        // stop the consumer (its deliveries stay unacked), then requeue "b" and "a" (in
        // that order) and reject "c" for good: the queue holds a, b in their old places
        let cancel = BasicCancelOptions::default();
        within(cch.basic_cancel(cons.tag().as_str(), cancel))
            .await
            .unwrap();
        let nack = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        within(cch.basic_nack(first[1].delivery_tag, nack))
            .await
            .unwrap();
        within(cch.basic_nack(first[0].delivery_tag, nack))
            .await
            .unwrap();
        let reject = BasicRejectOptions { requeue: false };
        within(cch.basic_reject(first[2].delivery_tag, reject))
            .await
            .unwrap();
        // seen from the publisher's shard. The nacks travel to the queue
        // asynchronously (as in RabbitMQ: no reply to wait for), so wait until
        // both are back before looking at their order.
        eventually("both nacked messages back in the queue", async || {
            message_count(&pch, &q).await == 2
        })
        .await;
        let mut again = Vec::new();
        for _ in 0..2 {
            let m = get(&pch, &q, true).await.expect("requeued message");
            again.push((sval(&m.delivery), m.delivery.redelivered));
        }
        assert_eq!(again, owned(&[("a", true), ("b", true)]));
        assert!(
            get(&pch, &q, true).await.is_none(),
            "the rejected message is gone"
        );
        delete(&pch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_across_shards() {
    deadline(60, async {
        let b = start_broker(2);
        let (c0, c1) = two_shards(&b).await;
        let pch = confirm_channel(&c0).await;
        let gch = channel(&c1).await;
        let q = uniq("get");
        declare(&gch, &q).await;
        for i in 0..3 {
            publish_confirmed(&pch, "", &q, format!("m{i}").as_bytes()).await;
        }
        for (i, left) in [(0, 2), (1, 1), (2, 0)] {
            let m = get(&gch, &q, false).await.expect("message");
            assert_eq!(
                (sval(&m.delivery), m.message_count),
                (format!("m{i}"), left)
            );
        }
        assert!(get(&gch, &q, false).await.is_none());
        // requeue two of them from the getter's shard; the publisher's shard sees them
        let nack = BasicNackOptions {
            multiple: true,
            requeue: true,
        };
        within(gch.basic_nack(2, nack)).await.unwrap();
        let m = get(&pch, &q, true).await.expect("requeued message");
        assert_eq!(
            (sval(&m.delivery), m.delivery.redelivered),
            ("m0".into(), true)
        );
        delete(&pch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_fairness_across_shards() {
    deadline(60, async {
        let b = start_broker(2);
        let (c0, c1) = two_shards(&b).await;
        let lazy = channel(&c0).await;
        let busy = channel(&c1).await;
        let q = uniq("fair");
        declare(&lazy, &q).await;
        for ch in [&lazy, &busy] {
            within(ch.basic_qos(1, BasicQosOptions::default()))
                .await
                .unwrap();
        }
        let mut l = consume(&lazy, &q, false).await;
        let mut w = consume(&busy, &q, false).await;
        let pch = confirm_channel(&c0).await;
        for i in 0..10 {
            publish_confirmed(&pch, "", &q, i.to_string().as_bytes()).await;
        }
        let _held = recv(&mut l).await; // never acked
        for _ in 0..9 {
            let d = recv(&mut w).await;
            within(busy.basic_ack(d.delivery_tag, BasicAckOptions::default()))
                .await
                .unwrap();
        }
        recv_none(&mut l, 300).await;
        recv_none(&mut w, 100).await;
        delete(&pch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_requeued_to_other_shard_when_connection_closes() {
    deadline(60, async {
        let b = start_broker(2);
        let (c0, c1) = two_shards(&b).await;
        let ch0 = channel(&c0).await;
        let ch1 = channel(&c1).await;
        let q = uniq("rq");
        declare(&ch1, &q).await;
        within(ch0.basic_qos(3, BasicQosOptions::default()))
            .await
            .unwrap();
        let mut first = consume(&ch0, &q, false).await;
        let pch = confirm_channel(&c1).await;
        for i in 1..=3 {
            publish_confirmed(&pch, "", &q, i.to_string().as_bytes()).await;
        }
        for i in 1..=3 {
            assert_eq!(sval(&recv(&mut first).await), i.to_string());
        }
        let mut second = consume(&ch1, &q, false).await;
        recv_none(&mut second, 200).await;
        within(c0.close(200, "bye")).await.unwrap();
        for i in 1..=3 {
            let d = recv(&mut second).await;
            assert_eq!((sval(&d), d.redelivered), (i.to_string(), true));
            within(ch1.basic_ack(d.delivery_tag, BasicAckOptions::default()))
                .await
                .unwrap();
        }
        delete(&ch1, &q).await;
    })
    .await
}

// ---------------------------------------------------------------- confirms and ordering

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_and_returns_for_queues_and_exchanges_of_the_other_shard() {
    deadline(60, async {
        let b = start_broker(2);
        let (c0, c1) = two_shards(&b).await;
        let admin = channel(&c1).await;
        let (q, ex) = (uniq("conf"), uniq("conf-ex"));
        declare(&admin, &q).await;
        let opts = ExchangeDeclareOptions {
            auto_delete: false,
            ..Default::default()
        };
        within(admin.exchange_declare(&ex, ExchangeKind::Direct, opts, FieldTable::default()))
            .await
            .unwrap();
        within(admin.queue_bind(&q, &ex, "rk", Default::default(), FieldTable::default()))
            .await
            .unwrap();
        // right after the declare/bind-ok on shard 1, shard 0 routes through them
        let pch = confirm_channel(&c0).await;
        let mand = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let props = BasicProperties::default();
        let routed = within(pch.basic_publish(&ex, "rk", mand, b"in", props.clone())).await;
        let lost = within(pch.basic_publish(&ex, "other", mand, b"out", props)).await;
        assert_eq!(
            within(routed.unwrap()).await.unwrap(),
            Confirmation::Ack(None)
        );
        match within(lost.unwrap()).await.unwrap() {
            Confirmation::Ack(Some(ret)) => assert_eq!(ret.reply_code, 312),
            other => panic!("expected a return then an ack, got {other:?}"),
        }
        for i in 0..100u32 {
            let body = i.to_be_bytes();
            let pc = pch.basic_publish(&ex, "rk", mand, &body, Default::default());
            within(pc).await.unwrap();
        }
        assert!(within(pch.wait_for_confirms()).await.unwrap().is_empty());
        assert_eq!(message_count(&admin, &q).await, 101);
        within(admin.exchange_delete(&ex, Default::default()))
            .await
            .unwrap();
        delete(&admin, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_in_order_with_acks() {
    deadline(180, async {
        let b = start_broker(2);
        let (c0, c1) = two_shards(&b).await;
        let pch = confirm_channel(&c0).await;
        let cch = channel(&c1).await;
        let q = uniq("10k");
        declare(&cch, &q).await;
        within(cch.basic_qos(200, BasicQosOptions::default()))
            .await
            .unwrap();
        let mut cons = consume(&cch, &q, false).await;
        const N: u32 = 10_000;
        let publisher = tokio::spawn(async move {
            let (opts, props) = (BasicPublishOptions::default(), BasicProperties::default());
            for i in 0..N {
                let body = i.to_be_bytes();
                pch.basic_publish("", &q, opts, &body, props.clone())
                    .await
                    .unwrap();
            }
            assert!(pch.wait_for_confirms().await.unwrap().is_empty());
            (pch, q)
        });
        for i in 0..N {
            let d = recv(&mut cons).await;
            assert_eq!(d.data, i.to_be_bytes(), "message {i} out of order");
            assert!(!d.redelivered);
            if i % 50 == 49 {
                let multiple = BasicAckOptions { multiple: true };
                within(cch.basic_ack(d.delivery_tag, multiple))
                    .await
                    .unwrap();
            }
        }
        let (pch, q) = within(publisher).await.unwrap();
        recv_none(&mut cons, 300).await;
        within(cch.close(200, "bye")).await.unwrap();
        assert_eq!(message_count(&pch, &q).await, 0, "all 10,000 acked");
        delete(&pch, &q).await;
    })
    .await
}

// ---------------------------------------------------------------- management from the other shard

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declared_on_one_shard_deleted_from_the_other() {
    deadline(60, async {
        let b = start_broker(2);
        let (c0, c1) = two_shards(&b).await;
        let ch0 = confirm_channel(&c0).await;
        let ch1 = channel(&c1).await;
        let q = uniq("del");
        declare(&ch0, &q).await;
        for i in 0..3 {
            publish_confirmed(&ch0, "", &q, &[i]).await;
        }
        // redeclare from the other shard sees the same queue
        let ok = within(ch1.queue_declare(&q, Default::default(), FieldTable::default())).await;
        assert_eq!(ok.unwrap().message_count(), 3);
        let cch = channel(&c0).await;
        within(cch.basic_qos(1, BasicQosOptions::default()))
            .await
            .unwrap();
        let mut cons = consume(&cch, &q, false).await;
        let _ = recv(&mut cons).await; // one unacked, two ready
        let deleted = within(ch1.queue_delete(&q, QueueDeleteOptions::default())).await;
        assert_eq!(deleted.unwrap(), 2, "delete-ok counts the ready messages");
        // the consumer on shard 0 is cancelled by the broker: its stream ends
        let end = tokio::time::timeout(TIMEOUT, async {
            while let Some(Ok(_)) = cons.next().await {}
        });
        assert!(
            end.await.is_ok(),
            "consumer not cancelled after its queue was deleted"
        );
        let probe = channel(&c0).await;
        let opts = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let err = within(probe.queue_declare(&q, opts, FieldTable::default())).await;
        assert_eq!(
            code_text(&err.expect_err("queue is gone")),
            (404, no_queue(&q))
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_from_the_other_shard() {
    deadline(60, async {
        let b = start_broker(2);
        let (c0, c1) = two_shards(&b).await;
        let ch0 = confirm_channel(&c0).await;
        let ch1 = channel(&c1).await;
        let q = uniq("purge");
        declare(&ch0, &q).await;
        for i in 0..5 {
            publish_confirmed(&ch0, "", &q, &[i]).await;
        }
        let purged = within(ch1.queue_purge(&q, QueuePurgeOptions::default())).await;
        assert_eq!(purged.unwrap(), 5);
        assert_eq!(message_count(&ch0, &q).await, 0);
        publish_confirmed(&ch0, "", &q, b"after").await;
        let m = get(&ch1, &q, true).await.expect("message after purge");
        assert_eq!(m.delivery.data, b"after");
        delete(&ch1, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusivity_holds_across_shards() {
    deadline(60, async {
        let b = start_broker(2);
        let (c0, c1) = two_shards(&b).await;
        let ch0 = channel(&c0).await;
        // an exclusive queue of shard 0's connection is locked for shard 1
        let q = temp_queue(&ch0).await;
        assert!(q.starts_with("amq.gen-"), "{q}");
        let ch1 = channel(&c1).await;
        let err = within(ch1.basic_consume(&q, "", Default::default(), FieldTable::default()))
            .await
            .expect_err("another connection's exclusive queue");
        assert_amqp_error(
            &err,
            405,
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue",
        );
        // an exclusive consumer on shard 0 refuses a consumer from shard 1
        let shared = uniq("exclc");
        declare(&ch0, &shared).await;
        let excl = BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        };
        let _c = within(ch0.basic_consume(&shared, "", excl, FieldTable::default()))
            .await
            .unwrap();
        let ch1 = channel(&c1).await;
        let err = within(ch1.basic_consume(&shared, "", Default::default(), FieldTable::default()))
            .await
            .expect_err("queue in exclusive use");
        let expected = format!("ACCESS_REFUSED - queue '{shared}' in vhost '/' in exclusive use");
        assert_eq!(code_text(&err), (403, expected));
        // the exclusive queue disappears with its connection
        within(c0.close(200, "bye")).await.unwrap();
        let ch1 = channel(&c1).await;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let gone = within(ch1.queue_declare(&q, passive, FieldTable::default())).await;
        assert_eq!(
            code_text(&gone.expect_err("exclusive queue deleted")).0,
            404
        );
        let ch1 = channel(&c1).await;
        delete(&ch1, &shared).await;
    })
    .await
}
