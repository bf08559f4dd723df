//! Messaging integration tests (lapin): publish/consume, properties, large and empty
//! bodies, returns, error cases, consumers, basic.get, round-robin dispatch, ordering.
//!
//! Validated against RabbitMQ 3.10 with `WARREN_TEST_EXTERNAL_URI`.

mod common_lapin;
mod util;
use common_lapin::*;
use util::*;

use futures_lite::StreamExt;
use lapin::{
    options::*,
    publisher_confirm::Confirmation,
    types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString},
    BasicProperties, Channel,
};
use std::time::Duration;

// ---------------------------------------------------------------- local helpers
// (shared ones — deadline, uniq, declare, publish, consume, recv, get, watch_channel, … —
// come from tests/common_lapin)

/// basic.get, retried until a message arrives (for publishes made on another connection).
async fn get_eventually(ch: &Channel, q: &str) -> lapin::message::BasicGetMessage {
    let start = std::time::Instant::now();
    loop {
        if let Some(m) = get(ch, q, true).await {
            return m;
        }
        assert!(start.elapsed() < TIMEOUT, "no message in {q}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn body_pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------- content

fn rich_headers() -> FieldTable {
    let mut nested = FieldTable::default();
    nested.insert("inner-str".into(), AMQPValue::LongString("deep".into()));
    nested.insert("inner-int".into(), AMQPValue::LongInt(-7));
    let mut deeper = FieldTable::default();
    deeper.insert("level".into(), AMQPValue::ShortShortUInt(3));
    nested.insert("deeper".into(), AMQPValue::FieldTable(deeper));

    let mut arr_table = FieldTable::default();
    arr_table.insert("k".into(), AMQPValue::Boolean(false));
    let array = FieldArray::from(vec![
        AMQPValue::LongString("a".into()),
        AMQPValue::LongInt(1),
        AMQPValue::Boolean(true),
        AMQPValue::FieldTable(arr_table),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::ShortInt(-2)])),
        AMQPValue::Void,
    ]);

    let mut h = FieldTable::default();
    h.insert("bool".into(), AMQPValue::Boolean(true));
    h.insert("i8".into(), AMQPValue::ShortShortInt(-8));
    h.insert("u8".into(), AMQPValue::ShortShortUInt(200));
    h.insert("i16".into(), AMQPValue::ShortInt(-1600));
    h.insert("u16".into(), AMQPValue::ShortUInt(65000));
    h.insert("i32".into(), AMQPValue::LongInt(-320000));
    h.insert("u32".into(), AMQPValue::LongUInt(4_000_000_000));
    h.insert("i64".into(), AMQPValue::LongLongInt(-6_400_000_000_000));
    h.insert("f32".into(), AMQPValue::Float(1.5));
    h.insert("f64".into(), AMQPValue::Double(-2.25e100));
    h.insert(
        "decimal".into(),
        AMQPValue::DecimalValue(DecimalValue {
            scale: 2,
            value: 12345,
        }),
    );
    h.insert(
        "lstr".into(),
        AMQPValue::LongString(LongString::from("héllo wörld")),
    );
    h.insert("empty".into(), AMQPValue::LongString("".into()));
    h.insert("ts".into(), AMQPValue::Timestamp(1_700_000_000));
    h.insert(
        "bytes".into(),
        AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2, 255])),
    );
    h.insert("void".into(), AMQPValue::Void);
    h.insert("array".into(), AMQPValue::FieldArray(array));
    h.insert("table".into(), AMQPValue::FieldTable(nested));
    h
}

fn all_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/x-test".into())
        .with_content_encoding("gzip".into())
        .with_headers(rich_headers())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("reply-queue".into())
        .with_expiration("600000".into())
        .with_message_id("msg-42".into())
        .with_timestamp(1_650_000_000)
        .with_type("test.type".into())
        .with_user_id("guest".into()) // RabbitMQ validates user_id against the login
        .with_app_id("warren-tests".into())
        .with_cluster_id("cluster-x".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_basic_properties_round_trip() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("props");
        declare(&ch, &q).await;
        let props = all_properties();
        let body = b"property payload".to_vec();
        for _ in 0..2 {
            within(ch.basic_publish("", &q, BasicPublishOptions::default(), &body, props.clone()))
                .await
                .unwrap();
        }
        // via basic.get
        let m = get(&ch, &q, true).await.expect("message");
        assert_eq!(m.delivery.properties, props);
        assert_eq!(m.delivery.data, body);
        assert_eq!(m.message_count, 1);
        // via basic.deliver
        let mut cons = consume(&ch, &q, true).await;
        let d = recv(&mut cons).await;
        assert_eq!(d.properties, props);
        assert_eq!(d.data, body);
        assert_eq!(d.exchange.as_str(), "");
        assert_eq!(d.routing_key.as_str(), q);
        assert!(!d.redelivered);
        // no properties at all stays "no properties"
        within(ch.basic_publish(
            "",
            &q,
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        ))
        .await
        .unwrap();
        let d = recv(&mut cons).await;
        assert_eq!(d.properties, BasicProperties::default());
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_body_round_trip() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("empty");
        declare(&ch, &q).await;
        let props = BasicProperties::default().with_message_id("zero".into());
        within(ch.basic_publish("", &q, BasicPublishOptions::default(), b"", props.clone()))
            .await
            .unwrap();
        publish(&ch, "", &q, b"").await;
        let m = get(&ch, &q, true).await.expect("message");
        assert!(m.delivery.data.is_empty());
        assert_eq!(m.delivery.properties, props);
        let mut cons = consume(&ch, &q, true).await;
        let d = recv(&mut cons).await;
        assert!(d.data.is_empty());
        // a following non-empty message is not confused with the empty one
        publish(&ch, "", &q, b"after").await;
        assert_eq!(recv(&mut cons).await.data, b"after");
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_of_three_frame_max_intact() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        assert_eq!(
            c.configuration().frame_max(),
            131072,
            "server offers frame_max 131072"
        );
        let ch = channel(&c).await;
        let q = uniq("big");
        declare(&ch, &q).await;
        let body = body_pattern(3 * 131072);
        let body2 = body_pattern(3 * (131072 - 8)); // exactly three full body frames
        publish(&ch, "", &q, &body).await;
        publish(&ch, "", &q, &body2).await;
        let mut cons = consume(&ch, &q, false).await;
        let d = recv(&mut cons).await;
        assert_eq!(d.data.len(), body.len());
        assert!(d.data == body, "large body corrupted");
        let d2 = recv(&mut cons).await;
        assert!(d2.data == body2, "second large body corrupted");
        within(ch.basic_ack(d2.delivery_tag, BasicAckOptions { multiple: true }))
            .await
            .unwrap();
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_negotiated_frame_max_splits_bodies() {
    deadline(60, async {
        let b = start_broker(1);
        // lapin never negotiates below its FRAME_MIN_SIZE of 8192 (asking 4096 gives 8192);
        // the 4096 case is covered with a raw client in tests/connection.rs.
        let small = connect(&with_query(&b.uri(), "frame_max=8192")).await;
        assert_eq!(small.configuration().frame_max(), 8192);
        let normal = connect(&b.uri()).await;
        let sch = channel(&small).await;
        let nch = channel(&normal).await;
        let q = uniq("fm8192");
        declare(&sch, &q).await;
        let body = body_pattern(3 * 8192 + 17);
        // small-frame publisher → normal consumer and normal publisher → small-frame consumer
        publish(&sch, "", &q, &body).await;
        let m = get_eventually(&nch, &q).await;
        assert!(m.delivery.data == body);
        publish(&nch, "", &q, &body).await;
        let m = get_eventually(&sch, &q).await;
        assert!(m.delivery.data == body);
        // headers of several KB with the small frame size
        let mut h = FieldTable::default();
        h.insert("big".into(), AMQPValue::LongString("h".repeat(3000).into()));
        let props = BasicProperties::default().with_headers(h);
        within(sch.basic_publish("", &q, BasicPublishOptions::default(), &body, props.clone()))
            .await
            .unwrap();
        let mut cons = consume(&sch, &q, true).await;
        let d = recv(&mut cons).await;
        assert_eq!(d.properties, props);
        assert!(d.data == body);
        delete(&sch, &q).await;
    })
    .await
}

// ---------------------------------------------------------------- returns and errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_unroutable_is_returned_312() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = confirm_channel(&c).await;
        let rk = uniq("nobody");
        let props = BasicProperties::default().with_message_id("ret-1".into());
        let opts = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = within(ch.basic_publish("amq.direct", &rk, opts, b"bounce", props.clone()))
            .await
            .unwrap();
        match within(confirm).await.unwrap() {
            Confirmation::Ack(Some(ret)) => {
                assert_eq!(ret.reply_code, 312);
                assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
                assert_eq!(ret.delivery.exchange.as_str(), "amq.direct");
                assert_eq!(ret.delivery.routing_key.as_str(), rk);
                assert_eq!(ret.delivery.data, b"bounce");
                assert_eq!(ret.delivery.properties, props);
            }
            other => panic!("expected ack with a returned message, got {other:?}"),
        }
        // not mandatory: silently dropped, plain ack
        let confirm = within(ch.basic_publish(
            "amq.direct",
            &rk,
            BasicPublishOptions::default(),
            b"drop",
            props,
        ))
        .await
        .unwrap();
        assert_eq!(within(confirm).await.unwrap(), Confirmation::Ack(None));
        // mandatory but routable: no return
        let q = uniq("routable");
        declare(&ch, &q).await;
        let confirm = within(ch.basic_publish("", &q, opts, b"ok", BasicProperties::default()))
            .await
            .unwrap();
        assert_eq!(within(confirm).await.unwrap(), Confirmation::Ack(None));
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_missing_exchange_is_404_channel_close() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let mut errs = watch_channel(&ch);
        let ex = uniq("nope");
        publish(&ch, &ex, "rk", b"lost").await;
        let (code, text) = next_err(&mut errs).await;
        assert_eq!(code, 404);
        assert_eq!(text, no_exchange(&ex));
        // the connection survives a channel error
        assert!(c.status().connected());
        let ch2 = channel(&c).await;
        let q = uniq("after404");
        declare(&ch2, &q).await;
        delete(&ch2, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_publish_closes_connection_540() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let mut errs = watch_connection(&c);
        let ch = channel(&c).await;
        let opts = BasicPublishOptions {
            immediate: true,
            ..Default::default()
        };
        let _ = within(ch.basic_publish("", "whatever", opts, b"now", BasicProperties::default()))
            .await;
        let (code, text) = next_err(&mut errs).await;
        assert_eq!(code, 540);
        assert_eq!(text, "NOT_IMPLEMENTED - immediate=true");
        assert!(wait_until(Duration::from_secs(5), || !c
            .status()
            .connected()));
        assert_broker_alive(&b.uri()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_from_missing_queue_is_404() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("missing");
        let err = within(ch.basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect_err("consume from a missing queue must fail");
        assert_eq!(code_text(&err), (404, no_queue(&q)));
        let err = within(ch.basic_get(&q, BasicGetOptions::default()))
            .await
            .err();
        // the channel is closed now; a further call fails without reaching the broker
        assert!(err.is_some());
        let ch2 = channel(&c).await;
        let err = within(ch2.basic_get(&q, BasicGetOptions::default()))
            .await
            .expect_err("get from missing queue");
        assert_eq!(code_text(&err), (404, no_queue(&q)));
    })
    .await
}

// ---------------------------------------------------------------- consumers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_generated_consumer_tags() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("ctag");
        declare(&ch, &q).await;
        let c1 = consume(&ch, &q, true).await;
        let c2 = consume(&ch, &q, true).await;
        for tag in [c1.tag(), c2.tag()] {
            assert!(tag.as_str().starts_with("amq.ctag-"), "tag {tag}");
            assert!(tag.as_str().len() > "amq.ctag-".len() + 8);
        }
        assert_ne!(c1.tag(), c2.tag());
        // a client-chosen tag is kept verbatim
        let mine = within(ch.basic_consume(
            &q,
            "my-tag",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await
        .unwrap();
        assert_eq!(mine.tag().as_str(), "my-tag");
        // reusing a tag on the same channel: 530 NOT_ALLOWED connection close
        let mut errs = watch_connection(&c);
        let _ = within(ch.basic_consume(
            &q,
            "my-tag",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await;
        let (code, text) = next_err(&mut errs).await;
        assert_eq!(code, 530);
        assert_eq!(text, "NOT_ALLOWED - attempt to reuse consumer tag 'my-tag'");
        let c2 = connect(&b.uri()).await;
        delete(&channel(&c2).await, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_consumer_refuses_others() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("exclc");
        declare(&ch, &q).await;
        let excl = BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        };
        let _c1 = within(ch.basic_consume(&q, "", excl, FieldTable::default()))
            .await
            .unwrap();
        let expected = (
            403,
            format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
        );
        // a second (non-exclusive) consumer is refused
        let ch2 = channel(&c).await;
        let err = within(ch2.basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect_err("second consumer must be refused");
        assert_eq!(code_text(&err), expected);
        // a second exclusive consumer is refused too
        let ch3 = channel(&c).await;
        let err = within(ch3.basic_consume(&q, "", excl, FieldTable::default()))
            .await
            .expect_err("refused");
        assert_eq!(code_text(&err), expected);

        // exclusive consume on a queue that already has a consumer
        let q2 = uniq("exclc2");
        let ch4 = channel(&c).await;
        declare(&ch4, &q2).await;
        let _plain = consume(&ch4, &q2, true).await;
        let ch5 = channel(&c).await;
        let err = within(ch5.basic_consume(&q2, "", excl, FieldTable::default()))
            .await
            .expect_err("refused");
        assert_eq!(
            code_text(&err),
            (
                403,
                format!("ACCESS_REFUSED - queue '{q2}' in vhost '/' in exclusive use")
            )
        );

        // after the exclusive consumer is cancelled, others may consume
        within(ch.basic_cancel(_c1.tag().as_str(), BasicCancelOptions::default()))
            .await
            .unwrap();
        let ch6 = channel(&c).await;
        let _c3 = consume(&ch6, &q, true).await;
        delete(&ch6, &q).await;
        delete(&ch6, &q2).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_cancel_stops_deliveries() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("cancel");
        declare(&ch, &q).await;
        let mut cons = consume(&ch, &q, true).await;
        publish(&ch, "", &q, b"one").await;
        assert_eq!(recv(&mut cons).await.data, b"one");
        within(ch.basic_cancel(cons.tag().as_str(), BasicCancelOptions::default()))
            .await
            .unwrap();
        publish(&ch, "", &q, b"two").await;
        // the stream ends, and "two" stays in the queue
        match tokio::time::timeout(Duration::from_secs(1), cons.next()).await {
            Ok(None) | Err(_) => {}
            Ok(Some(d)) => panic!("delivery after cancel: {d:?}"),
        }
        let m = get(&ch, &q, true).await.expect("two stays queued");
        assert_eq!(m.delivery.data, b"two");
        assert_eq!(m.message_count, 0);
        // cancelling an unknown tag is not an error
        within(ch.basic_cancel("no-such-tag", BasicCancelOptions::default()))
            .await
            .unwrap();
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_and_get_empty() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("get");
        declare(&ch, &q).await;
        assert!(
            get(&ch, &q, false).await.is_none(),
            "get-empty on an empty queue"
        );
        for i in 0..3 {
            publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        }
        for (i, left) in [(0, 2), (1, 1), (2, 0)] {
            let m = get(&ch, &q, false).await.expect("message");
            assert_eq!(m.delivery.data, format!("m{i}").as_bytes());
            assert_eq!(m.message_count, left);
            assert_eq!(m.delivery.delivery_tag, i as u64 + 1);
            assert!(!m.delivery.redelivered);
            assert_eq!(m.delivery.exchange.as_str(), "");
        }
        assert!(get(&ch, &q, false).await.is_none());
        within(ch.basic_ack(3, BasicAckOptions { multiple: true }))
            .await
            .unwrap();
        assert_eq!(message_count(&ch, &q).await, 0);
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_across_two_consumers() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch1 = channel(&c).await;
        let ch2 = channel(&c).await;
        let q = uniq("rr");
        declare(&ch1, &q).await;
        let mut a = consume(&ch1, &q, true).await;
        let mut bb = consume(&ch2, &q, true).await;
        let n = 20;
        for i in 0..n {
            publish(&ch1, "", &q, i.to_string().as_bytes()).await;
        }
        let mut got_a = Vec::new();
        let mut got_b = Vec::new();
        for _ in 0..n / 2 {
            got_a.push(sval(&recv(&mut a).await).parse::<u32>().unwrap());
            got_b.push(sval(&recv(&mut bb).await).parse::<u32>().unwrap());
        }
        recv_none(&mut a, 200).await;
        recv_none(&mut bb, 200).await;
        // strict alternation: one consumer gets the even, the other the odd messages, in order
        let (even, odd) = if got_a[0] == 0 {
            (&got_a, &got_b)
        } else {
            (&got_b, &got_a)
        };
        assert_eq!(*even, (0..n).step_by(2).collect::<Vec<_>>());
        assert_eq!(*odd, (1..n).step_by(2).collect::<Vec<_>>());
        delete(&ch1, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_messages_arrive_in_order() {
    deadline(90, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("order");
        declare(&ch, &q).await;
        let mut cons = consume(&ch, &q, false).await;
        let pch = channel(&c).await;
        for i in 0..1000u32 {
            publish(&pch, "", &q, &i.to_be_bytes()).await;
        }
        for i in 0..1000u32 {
            let d = recv(&mut cons).await;
            assert_eq!(d.data, i.to_be_bytes(), "message {i} out of order");
            assert_eq!(d.delivery_tag, i as u64 + 1);
            if i % 100 == 99 {
                within(ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true }))
                    .await
                    .unwrap();
            }
        }
        recv_none(&mut cons, 200).await;
        let ok = within(ch.queue_declare(
            &q,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await
        .unwrap();
        assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_flow_active_true_is_acknowledged() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let active = within(ch.channel_flow(ChannelFlowOptions { active: true }))
            .await
            .unwrap();
        assert!(active);
        // the channel still works afterwards
        let q = uniq("flow");
        declare(&ch, &q).await;
        publish(&ch, "", &q, b"flowing").await;
        assert_eq!(get(&ch, &q, true).await.unwrap().delivery.data, b"flowing");
        delete(&ch, &q).await;
    })
    .await
}
