//! Queue and consumer argument validation: wrong types or values are 406
//! PRECONDITION_FAILED with RabbitMQ's texts, and no queue is created.

mod common_ext;
mod common_lapin;
mod util;
use common_ext::*;
use common_lapin::*;
use util::*;

use lapin::types::AMQPValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_are_406_with_rabbitmq_texts() {
    deadline(60, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let cases: Vec<(&str, AMQPValue, &str)> = vec![
            ("x-message-ttl", s("1"), "\"expected integer, got longstr\""),
            ("x-message-ttl", int(-1), "{value_negative,-1}"),
            ("x-message-ttl", int(315_360_000_001), "{value_too_large,315360000001}"),
            ("x-expires", int(0), "{value_zero,0}"),
            ("x-expires", int(-5), "{value_negative,-5}"),
            ("x-max-length", int(-1), "{value_negative,-1}"),
            ("x-max-length-bytes", AMQPValue::Boolean(true), "\"expected integer, got bool\""),
            ("x-max-priority", int(256), "{max_value_exceeded,256}"),
            ("x-max-priority", int(-1), "{value_negative,-1}"),
            ("x-overflow", s("drop-tail"), "invalid_overflow"),
            ("x-overflow", int(1), "{unacceptable_type,long}"),
            ("x-single-active-consumer", s("true"), "{unacceptable_type,longstr}"),
            ("x-queue-mode", s("fast"), "\"unsupported queue mode 'fast'\""),
        ];
        for (k, v, detail) in cases {
            let ch = channel(&conn).await;
            let q = uniq("badarg");
            let r = try_declare_args(&ch, &q, table(&[(k, v)])).await;
            let text =
                format!("PRECONDITION_FAILED - invalid arg '{k}' for queue '{q}' in vhost '/': {detail}");
            assert_channel_error(&conn, r.map(|_| ()), 406, &text).await;
            // nothing was created
            let ch = channel(&conn).await;
            let r = within(ch.queue_declare(
                &q,
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            ))
            .await;
            assert!(r.is_err(), "{q} was created");
        }
        // the dead-letter exchange's type is checked first, with another text
        let ch = channel(&conn).await;
        let q = uniq("badarg");
        let r = try_declare_args(&ch, &q, table(&[("x-dead-letter-exchange", int(1))])).await;
        let text = format!(
            "PRECONDITION_FAILED - invalid type 'long' for arg 'x-dead-letter-exchange' in queue '{q}' in vhost '/'"
        );
        assert_channel_error(&conn, r.map(|_| ()), 406, &text).await;
        // a routing key without an exchange
        let ch = channel(&conn).await;
        let q = uniq("badarg");
        let r = try_declare_args(&ch, &q, table(&[("x-dead-letter-routing-key", s("k"))])).await;
        let text = format!(
            "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '{q}' in vhost '/': routing_key_but_no_dlx_defined"
        );
        assert_channel_error(&conn, r.map(|_| ()), 406, &text).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_arguments_and_redeclare_equivalence() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        let q = uniq("goodargs");
        let args = [
            ("x-message-ttl", int(1000)),
            ("x-max-length", int(10)),
            ("x-overflow", s("reject-publish")),
            ("x-max-priority", int(3)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("k")),
            ("x-single-active-consumer", AMQPValue::Boolean(false)),
        ];
        declare_args(&ch, &q, &args).await;
        declare_args(&ch, &q, &args).await;
        let mut other = args.to_vec();
        other[3] = ("x-max-priority", int(4));
        let r = try_declare_args(&ch, &q, table(&other)).await;
        let text = format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '{q}' in vhost '/': received '4' but current is '3'"
        );
        assert_channel_error(&conn, r.map(|_| ()), 406, &text).await;
        let ch = channel(&conn).await;
        delete(&ch, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queue_declarations_refused_as_rabbitmq_refuses_them() {
    use lapin::options::QueueDeclareOptions;
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let quorum = || table(&[("x-queue-type", s("quorum"))]);
        let opts = |durable, auto_delete| QueueDeclareOptions {
            durable,
            auto_delete,
            ..Default::default()
        };
        for (durable, auto_delete, property) in
            [(false, false, "non-durable"), (true, true, "auto-delete")]
        {
            let ch = channel(&conn).await;
            let q = uniq("quorum-bad");
            let r = within(ch.queue_declare(&q, opts(durable, auto_delete), quorum())).await;
            let text = format!(
                "PRECONDITION_FAILED - invalid property '{property}' for queue '{q}' in vhost '/'"
            );
            assert_channel_error(&conn, r.map(|_| ()), 406, &text).await;
        }
        let ch = channel(&conn).await;
        let r = within(ch.queue_declare("", opts(true, false), quorum())).await;
        let text = "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue";
        assert_channel_error(&conn, r.map(|_| ()), 406, text).await;
        // Another type's argument: refused, as RabbitMQ 3.10.8 does.
        let ch = channel(&conn).await;
        let q = uniq("quorum-prio");
        let mut args = quorum();
        args.insert("x-max-priority".into(), lapin::types::AMQPValue::LongInt(5));
        let r = within(ch.queue_declare(&q, opts(true, false), args)).await;
        let text = format!(
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"
        );
        assert_channel_error(&conn, r.map(|_| ()), 406, &text).await;
        // durable, not exclusive, not auto-delete: accepted
        let ch = channel(&conn).await;
        let q = uniq("quorum-ok");
        within(ch.queue_declare(&q, opts(true, false), quorum()))
            .await
            .unwrap();
        delete(&ch, &q).await;
    })
    .await;
}
