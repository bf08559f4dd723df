//! Dead-lettering: reject/nack without requeue (`rejected`), expiry
//! (`expired`), length limit (`maxlen`); the `x-death` header field by field,
//! `x-first-death-*` / `x-last-death-*`, the routing-key override, the
//! removed expiration, cycles (dropped unless a `rejected` death is in them),
//! a missing dead-letter exchange, and a target queue on the other shard;
//! quorum queues' `x-delivery-count` and `x-delivery-limit` (reason
//! `delivery_limit`).

mod common_ext;
mod common_lapin;
mod util;
use common_ext::*;
use common_lapin::*;
use util::*;

use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, ExchangeKind,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Deadline for the broker's TTL timer to have acted (polled, not slept).
const PLENTY: Duration = PATIENCE;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn long(t: &FieldTable, k: &str) -> i64 {
    match header(t, k) {
        Some(AMQPValue::LongLongInt(v)) => *v,
        other => panic!("{k}: expected a long, got {other:?}"),
    }
}

fn keys(t: &FieldTable) -> Vec<String> {
    match header(t, "routing-keys") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                other => panic!("routing key {other:?}"),
            })
            .collect(),
        other => panic!("routing-keys: {other:?}"),
    }
}

/// Checks one x-death entry field by field.
fn check_death(
    t: &FieldTable,
    queue: &str,
    reason: &str,
    count: i64,
    exchange: &str,
    rks: &[&str],
) {
    assert_eq!(hstr(t, "queue").as_deref(), Some(queue), "{t:?}");
    assert_eq!(hstr(t, "reason").as_deref(), Some(reason), "{t:?}");
    assert_eq!(long(t, "count"), count, "{t:?}");
    assert_eq!(hstr(t, "exchange").as_deref(), Some(exchange), "{t:?}");
    assert_eq!(keys(t), rks, "{t:?}");
    match header(t, "time") {
        Some(AMQPValue::Timestamp(ts)) => {
            assert!(ts.abs_diff(now_secs()) < 60, "time {ts} not now")
        }
        other => panic!("time: {other:?}"),
    }
}

/// A direct exchange `x` and a queue `dl` bound to it with key `dlkey`.
async fn dlx_setup(ch: &Channel, x: &str, dl: &str, key: &str) {
    within(ch.exchange_declare(
        x,
        ExchangeKind::Direct,
        Default::default(),
        Default::default(),
    ))
    .await
    .unwrap();
    declare(ch, dl).await;
    bind(ch, dl, x, key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_messages_get_x_death_and_first_last_death_headers() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (x, dl, q) = (uniq("dlx"), uniq("dl-target"), uniq("dl-src"));
        dlx_setup(&ch, &x, &dl, &q).await;
        declare_args(&ch, &q, &[("x-dead-letter-exchange", s(&x))]).await;
        let mut h = FieldTable::default();
        h.insert("app".into(), s("kept"));
        let props = BasicProperties::default()
            .with_headers(h)
            .with_content_type("text/plain".into())
            .with_delivery_mode(2);
        publish_acked(&ch, "", &q, b"bad", props).await;
        let c = channel(&conn).await;
        let d = get_one(&c, &q).await;
        d.reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        wait_count(&ch, &dl, 1, PLENTY).await;
        let m = get_one(&ch, &dl).await;
        assert_eq!(sval(&m), "bad");
        // routed with its own routing key through the DLX
        assert_eq!(
            (m.exchange.as_str(), m.routing_key.as_str()),
            (x.as_str(), q.as_str())
        );
        assert_eq!(
            m.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("text/plain")
        );
        assert_eq!(*m.properties.delivery_mode(), Some(2));
        let h = headers(&m.properties);
        assert_eq!(hstr(&h, "app").as_deref(), Some("kept"));
        let deaths = x_death(&m.properties);
        assert_eq!(deaths.len(), 1);
        check_death(&deaths[0], &q, "rejected", 1, "", &[&q]);
        assert!(header(&deaths[0], "original-expiration").is_none());
        assert_eq!(
            hstr(&h, "x-first-death-reason").as_deref(),
            Some("rejected")
        );
        assert_eq!(hstr(&h, "x-first-death-queue").as_deref(), Some(q.as_str()));
        assert_eq!(hstr(&h, "x-first-death-exchange").as_deref(), Some(""));
        if !b.is_external() {
            // x-last-death-* are new in RabbitMQ 3.13 (the local oracle is 3.10)
            assert_eq!(hstr(&h, "x-last-death-reason").as_deref(), Some("rejected"));
            assert_eq!(hstr(&h, "x-last-death-queue").as_deref(), Some(q.as_str()));
            assert_eq!(hstr(&h, "x-last-death-exchange").as_deref(), Some(""));
        }
        m.ack(BasicAckOptions::default()).await.unwrap();
        // nack(requeue=false) too; an ack does not dead-letter
        publish_acked(&ch, "", &q, b"nacked", Default::default()).await;
        publish_acked(&ch, "", &q, b"acked", Default::default()).await;
        let d = get_one(&c, &q).await;
        d.nack(BasicNackOptions {
            requeue: false,
            multiple: false,
        })
        .await
        .unwrap();
        get_one(&c, &q)
            .await
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        wait_count(&ch, &dl, 1, PLENTY).await;
        assert_eq!(drain(&ch, &dl).await, vec!["nacked"]);
        for q in [&q, &dl] {
            delete(&ch, q).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_with_routing_key_override_and_original_expiration() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (x, dl, q) = (uniq("dlx"), uniq("dl-exp"), uniq("src-exp"));
        dlx_setup(&ch, &x, &dl, "override").await;
        declare_args(
            &ch,
            &q,
            &[
                ("x-dead-letter-exchange", s(&x)),
                ("x-dead-letter-routing-key", s("override")),
            ],
        )
        .await;
        publish_acked(&ch, "", &q, b"ttl", expiring("100")).await;
        wait_count(&ch, &dl, 1, PLENTY).await;
        let m = get_one(&ch, &dl).await;
        assert_eq!(m.routing_key.as_str(), "override");
        // the per-message TTL is gone, remembered in x-death
        assert_eq!(*m.properties.expiration(), None);
        let deaths = x_death(&m.properties);
        check_death(&deaths[0], &q, "expired", 1, "", &[&q]);
        assert_eq!(
            hstr(&deaths[0], "original-expiration").as_deref(),
            Some("100")
        );
        assert_eq!(
            hstr(&headers(&m.properties), "x-first-death-reason").as_deref(),
            Some("expired")
        );
        m.ack(BasicAckOptions::default()).await.unwrap();
        for q in [&q, &dl] {
            delete(&ch, q).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deaths_in_the_same_queue_and_reason_are_merged_and_moved_to_the_front() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        // a: rejected → b; b: expired → a (through the default exchange)
        let (a, bq) = (uniq("ring-a"), uniq("ring-b"));
        declare_args(
            &ch,
            &a,
            &[
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s(&bq)),
            ],
        )
        .await;
        declare_args(
            &ch,
            &bq,
            &[
                ("x-message-ttl", int(50)),
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s(&a)),
            ],
        )
        .await;
        publish_acked(&ch, "", &a, b"m", Default::default()).await;
        let c = channel(&conn).await;
        for round in 1..=2i64 {
            let d = get_one(&c, &a).await;
            if round == 2 {
                let deaths = x_death(&d.properties);
                assert_eq!(deaths.len(), 2, "{deaths:?}");
                check_death(&deaths[0], &bq, "expired", 1, "", &[&bq]);
                check_death(&deaths[1], &a, "rejected", 1, "", &[&a]);
            }
            d.reject(BasicRejectOptions { requeue: false })
                .await
                .unwrap();
            // through b (expired) and back to a: allowed, a rejection is in the cycle
            wait_count(&ch, &a, 1, PLENTY).await;
        }
        let d = get_one(&c, &a).await;
        let deaths = x_death(&d.properties);
        assert_eq!(deaths.len(), 2);
        check_death(&deaths[0], &bq, "expired", 2, "", &[&bq]);
        // the rejected entry kept its first exchange and routing keys
        check_death(&deaths[1], &a, "rejected", 2, "", &[&a]);
        let h = headers(&d.properties);
        assert_eq!(hstr(&h, "x-first-death-queue").as_deref(), Some(a.as_str()));
        assert_eq!(
            hstr(&h, "x-first-death-reason").as_deref(),
            Some("rejected")
        );
        if !b.is_external() {
            // RabbitMQ 3.13
            assert_eq!(hstr(&h, "x-last-death-queue").as_deref(), Some(bq.as_str()));
            assert_eq!(hstr(&h, "x-last-death-reason").as_deref(), Some("expired"));
        }
        d.ack(BasicAckOptions::default()).await.unwrap();
        for q in [&a, &bq] {
            delete(&ch, q).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_cycle_is_dropped() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        // a and b expire into each other: no rejection anywhere
        let (a, bq, seen) = (uniq("cyc-a"), uniq("cyc-b"), uniq("cyc-seen"));
        let x = uniq("cyc-fanout");
        within(ch.exchange_declare(
            &x,
            ExchangeKind::Fanout,
            Default::default(),
            Default::default(),
        ))
        .await
        .unwrap();
        declare(&ch, &seen).await;
        bind(&ch, &seen, &x, "").await;
        // b dead-letters to a fanout that reaches a and `seen`
        declare_args(
            &ch,
            &a,
            &[
                ("x-message-ttl", int(50)),
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s(&bq)),
            ],
        )
        .await;
        bind(&ch, &a, &x, "").await;
        declare_args(
            &ch,
            &bq,
            &[
                ("x-message-ttl", int(50)),
                ("x-dead-letter-exchange", s(&x)),
            ],
        )
        .await;
        publish_acked(&ch, "", &a, b"loop", Default::default()).await;
        // a → b (expired) → fanout: `seen` gets it; back into a would close a
        // cycle of expiries only, so that copy is dropped
        wait_count(&ch, &seen, 1, PLENTY).await;
        let m = get_one(&ch, &seen).await;
        let deaths = x_death(&m.properties);
        assert_eq!(deaths.len(), 2);
        check_death(&deaths[0], &bq, "expired", 1, "", &[&bq]);
        check_death(&deaths[1], &a, "expired", 1, "", &[&a]);
        // A fixed wait, not a poll: it checks that nothing more happens (no copy
        // went round the cycle again, which would show after two 50 ms TTLs and
        // their timer ticks). The queues stay empty however late we look.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(message_count(&ch, &a).await, 0);
        assert_eq!(message_count(&ch, &bq).await, 0);
        assert_eq!(message_count(&ch, &seen).await, 0);
        for q in [&a, &bq, &seen] {
            delete(&ch, q).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_exchange_drops_the_message() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = uniq("dl-nox");
        declare_args(
            &ch,
            &q,
            &[("x-dead-letter-exchange", s(&uniq("no-such-x")))],
        )
        .await;
        publish_acked(&ch, "", &q, b"x", Default::default()).await;
        let d = get_one(&ch, &q).await;
        d.reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        wait_count(&ch, &q, 0, PLENTY).await;
        assert_connection_usable(&conn).await;
        delete(&ch, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_reach_a_queue_on_the_other_shard() {
    deadline(30, async {
        let b = start_broker(2);
        let c0 = connect(&b.shard_uri(0)).await;
        let c1 = connect(&b.shard_uri(1)).await;
        let ch0 = confirm_channel(&c0).await;
        let ch1 = confirm_channel(&c1).await;
        // the target queue lives on shard 1, the source on shard 0
        let (dl, q) = (uniq("xs-target"), uniq("xs-src"));
        declare(&ch1, &dl).await;
        declare_args(
            &ch0,
            &q,
            &[
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s(&dl)),
                ("x-max-length", int(1)),
            ],
        )
        .await;
        let persistent = BasicProperties::default().with_delivery_mode(2);
        publish_acked(&ch1, "", &q, b"first", persistent.clone()).await;
        publish_acked(&ch1, "", &q, b"second", persistent).await; // drops "first" (maxlen)
        wait_count(&ch1, &dl, 1, PLENTY).await;
        let m = get_one(&ch1, &dl).await;
        assert_eq!(sval(&m), "first");
        check_death(&x_death(&m.properties)[0], &q, "maxlen", 1, "", &[&q]);
        m.ack(BasicAckOptions::default()).await.unwrap();
        // and rejection from a consumer on shard 1 of a message in the shard 0 queue
        let mut cons = consume(&ch1, &q, false).await;
        let d = recv(&mut cons).await;
        d.reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        wait_count(&ch0, &dl, 1, PLENTY).await;
        let m = get_one(&ch0, &dl).await;
        assert_eq!(sval(&m), "second");
        check_death(&x_death(&m.properties)[0], &q, "rejected", 1, "", &[&q]);
        m.ack(BasicAckOptions::default()).await.unwrap();
        delete(&ch0, &q).await;
        delete(&ch0, &dl).await;
    })
    .await;
}

/// Clients cannot publish to an internal exchange, but queues can
/// dead-letter through one (RabbitMQ routes dead letters without the check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_dead_letter_exchange_is_used() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let x = uniq("dl-internal-x");
        let opts = ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        };
        within(ch.exchange_declare(&x, ExchangeKind::Fanout, opts, Default::default()))
            .await
            .unwrap();
        let dl = uniq("dl-internal-target");
        declare(&ch, &dl).await;
        bind(&ch, &dl, &x, "").await;
        let q = uniq("dl-internal-src");
        declare_args(&ch, &q, &[("x-dead-letter-exchange", s(&x))]).await;
        publish_acked(&ch, "", &q, b"via-internal", Default::default()).await;
        let d = get_one(&ch, &q).await;
        d.reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        wait_count(&ch, &dl, 1, PLENTY).await;
        let got = get_one(&ch, &dl).await;
        assert_eq!(got.data, b"via-internal");
        assert_eq!(x_death(&got.properties).len(), 1);
        for q in [&q, &dl] {
            delete(&ch, q).await;
        }
        xdel(&ch, &x).await;
    })
    .await;
}

/// A durable queue of type `kind` with more arguments.
async fn declare_typed(ch: &Channel, q: &str, kind: &str, more: &[(&str, AMQPValue)]) {
    let mut pairs = vec![("x-queue-type", s(kind))];
    pairs.extend(more.iter().cloned());
    within(ch.queue_declare(
        q,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        table(&pairs),
    ))
    .await
    .unwrap_or_else(|e| panic!("queue.declare {q}: {e}"));
}

fn delivery_count(m: &lapin::message::Delivery) -> Option<i64> {
    match header(&headers(&m.properties), "x-delivery-count") {
        Some(AMQPValue::LongLongInt(v)) => Some(*v),
        None => None,
        other => panic!("x-delivery-count: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_count_returned_deliveries() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (qq, cq) = (uniq("qq-count"), uniq("cq-count"));
        declare_typed(&ch, &qq, "quorum", &[]).await;
        declare_typed(&ch, &cq, "classic", &[]).await;
        for q in [&qq, &cq] {
            publish_acked(&ch, "", q, b"m", BasicProperties::default()).await;
        }
        let c = channel(&conn).await;
        // First delivery: no header. Each return counts one.
        for n in 0..3 {
            let d = get_one(&c, &qq).await;
            assert_eq!(delivery_count(&d), (n > 0).then_some(n), "delivery {n}");
            assert_eq!(d.redelivered, n > 0);
            d.reject(BasicRejectOptions { requeue: true })
                .await
                .unwrap();
        }
        // A channel closing with the message unacked counts too.
        let c2 = channel(&conn).await;
        let d = get_one(&c2, &qq).await;
        assert_eq!(delivery_count(&d), Some(3));
        c2.close(200, "bye").await.unwrap();
        let d = get_one(&c, &qq).await;
        assert_eq!(delivery_count(&d), Some(4));
        d.ack(BasicAckOptions::default()).await.unwrap();
        // A classic queue adds no header.
        let d = get_one(&c, &cq).await;
        d.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
        let d = get_one(&c, &cq).await;
        assert!(d.redelivered);
        assert_eq!(delivery_count(&d), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_delivery_limit_a_message_is_dead_lettered_or_dropped() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (x, dl, q, plain) = (
            uniq("dlx-limit"),
            uniq("dl-limit"),
            uniq("qq-limit"),
            uniq("qq-default"),
        );
        dlx_setup(&ch, &x, &dl, &q).await;
        declare_typed(
            &ch,
            &q,
            "quorum",
            &[
                ("x-delivery-limit", AMQPValue::LongInt(2)),
                ("x-dead-letter-exchange", s(&x)),
            ],
        )
        .await;
        publish_acked(&ch, "", &q, b"poison", BasicProperties::default()).await;
        let c = channel(&conn).await;
        // Delivered three times (counts 0, 1, 2); the third return is one
        // too many.
        for _ in 0..3 {
            let d = get_one(&c, &q).await;
            d.reject(BasicRejectOptions { requeue: true })
                .await
                .unwrap();
        }
        wait_count(&ch, &dl, 1, PLENTY).await;
        assert_eq!(message_count(&ch, &q).await, 0);
        let m = get_one(&ch, &dl).await;
        assert_eq!(sval(&m), "poison");
        let deaths = x_death(&m.properties);
        check_death(&deaths[0], &q, "delivery_limit", 1, "", &[&q]);
        // RabbitMQ 4's default limit, 20, without a dead-letter exchange:
        // dropped after the 21st return.
        declare_typed(&ch, &plain, "quorum", &[]).await;
        publish_acked(&ch, "", &plain, b"p", BasicProperties::default()).await;
        for n in 0..21 {
            let d = get_one(&c, &plain).await;
            assert_eq!(delivery_count(&d), (n > 0).then_some(n));
            d.reject(BasicRejectOptions { requeue: true })
                .await
                .unwrap();
        }
        wait_count(&ch, &plain, 0, PLENTY).await;
    })
    .await;
}
