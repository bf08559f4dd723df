//! Queue declaration, equivalence, exclusivity, auto-delete, purge and delete, driven by the
//! `lapin` client. Reply texts are RabbitMQ's (observed on 3.10.8; 3.13 is the reference).

mod common_lapin;
mod util;

use common_lapin::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, Consumer, Queue,
};
use util::*;

type Res<T> = Result<T, lapin::Error>;

/// Queue declare options: durable, exclusive, auto_delete.
fn o(durable: bool, exclusive: bool, auto_delete: bool) -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable,
        exclusive,
        auto_delete,
        ..Default::default()
    }
}

const PLAIN: QueueDeclareOptions = QueueDeclareOptions {
    passive: false,
    durable: false,
    exclusive: false,
    auto_delete: false,
    nowait: false,
};
const PASSIVE: QueueDeclareOptions = QueueDeclareOptions {
    passive: true,
    ..PLAIN
};
const EXCLUSIVE: QueueDeclareOptions = QueueDeclareOptions {
    exclusive: true,
    ..PLAIN
};

async fn qdecl(ch: &Channel, q: &str, opts: QueueDeclareOptions, args: FieldTable) -> Res<Queue> {
    within(ch.queue_declare(q, opts, args)).await
}

async fn declare(ch: &Channel, q: &str, opts: QueueDeclareOptions) -> Queue {
    let r = qdecl(ch, q, opts, FieldTable::default()).await;
    r.unwrap_or_else(|e| panic!("queue.declare {q}: {e}"))
}

async fn qdel(ch: &Channel, q: &str, opts: QueueDeleteOptions) -> Res<u32> {
    within(ch.queue_delete(q, opts)).await
}

async fn counts(ch: &Channel, q: &str) -> (u32, u32) {
    let d = declare(ch, q, PASSIVE).await;
    (d.message_count(), d.consumer_count())
}

/// Publishes `n` messages to `q` via the default exchange, each confirmed and routed.
async fn publish_n(ch: &Channel, q: &str, n: usize) {
    for i in 0..n {
        let opts = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let body = format!("m{i}");
        let p = within(ch.basic_publish("", q, opts, body.as_bytes(), BasicProperties::default()));
        let c = within(p.await.expect("basic.publish"))
            .await
            .expect("confirm");
        assert!(c.is_ack(), "not acked: {c:?}");
        assert!(c.take_message().is_none(), "message to {q} was returned");
    }
}

async fn consume(ch: &Channel, q: &str, tag: &str) -> Res<Consumer> {
    within(ch.basic_consume(q, tag, Default::default(), FieldTable::default())).await
}

async fn cancel(ch: &Channel, tag: &str) {
    within(ch.basic_cancel(tag, Default::default()))
        .await
        .expect("basic.cancel");
}

/// `Some(counts)` if the queue exists, `None` on 404 (checked on a throwaway channel).
async fn queue_state(conn: &Connection, q: &str) -> Option<(u32, u32)> {
    let ch = channel(conn).await;
    match qdecl(&ch, q, PASSIVE, FieldTable::default()).await {
        Ok(d) => {
            let _ = within(ch.close(200, "OK")).await;
            Some((d.message_count(), d.consumer_count()))
        }
        Err(e) => {
            assert_amqp_error(&e, 404, &no_queue(q));
            None
        }
    }
}

/// Polls until queue `q` no longer exists (deletion may be asynchronous).
async fn assert_queue_gone(conn: &Connection, q: &str) {
    eventually(&format!("queue {q} deleted"), async || {
        queue_state(conn, q).await.is_none()
    })
    .await
}

/// queue.delete with `opts` fails with 406 "queue '…' in vhost '/' {reason}" (a channel error).
async fn assert_delete_refused(
    conn: &Connection,
    ch: &Channel,
    q: &str,
    opts: QueueDeleteOptions,
    reason: &str,
) {
    let r = qdel(ch, q, opts).await;
    let text = format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' {reason}");
    assert_channel_error(conn, r, 406, &text).await;
}

/// queue.delete with `opts` succeeds removing no message (`what` names the step), and the
/// queue is gone.
async fn assert_deleted_empty(
    conn: &Connection,
    ch: &Channel,
    q: &str,
    opts: QueueDeleteOptions,
    what: &str,
) {
    assert_eq!(qdel(ch, q, opts).await.expect(what), 0);
    assert!(queue_state(conn, q).await.is_none());
}

fn args(k: &str, v: AMQPValue) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(k.into(), v);
    t
}

fn locked(q: &str) -> String {
    format!(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. \
         It could be originally declared on another connection or the exclusive property \
         value does not match that of the original declaration."
    )
}

fn inequivalent(q: &str, arg: &str) -> String {
    format!("PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{q}' in vhost '/': ")
}

#[tokio::test(flavor = "multi_thread")]
async fn server_named_queue() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let q1 = temp_queue(&ch).await;
    let q2 = temp_queue(&ch).await;
    for q in [&q1, &q2] {
        assert!(q.starts_with("amq.gen-"), "server-named queue {q:?}");
        assert_eq!(q.len(), 30, "amq.gen- + 22 chars: {q:?}");
        let ok = q[8..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        assert!(ok, "suffix is url-safe base64: {q:?}");
    }
    assert_ne!(q1, q2);
    // the generated name is a real queue: routable by name and passively declarable
    publish_n(&ch, &q1, 2).await;
    assert_eq!(counts(&ch, &q1).await, (2, 0));
    assert_eq!(counts(&ch, &q2).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn declare_ok_reports_message_and_consumer_counts() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let q = unique("q-counts");
    let d = declare(&ch, &q, PLAIN).await;
    assert_eq!(
        (d.name().as_str(), d.message_count(), d.consumer_count()),
        (q.as_str(), 0, 0)
    );
    publish_n(&ch, &q, 3).await;
    let d = declare(&ch, &q, PLAIN).await;
    assert_eq!(
        (d.message_count(), d.consumer_count()),
        (3, 0),
        "redeclare-ok counts"
    );
    assert_eq!(counts(&ch, &q).await, (3, 0), "passive declare-ok counts");

    // a consumer with prefetch 1 holds one message unacked: 2 ready, 1 consumer
    let cch = channel(&conn).await;
    within(cch.basic_qos(1, Default::default()))
        .await
        .expect("basic.qos");
    let mut consumer = consume(&cch, &q, "c1").await.expect("basic.consume");
    let d = recv_one(&mut consumer, TIMEOUT)
        .await
        .expect("first delivery");
    assert_eq!(d.data, b"m0");
    expect_no_message(&mut consumer, SHORT).await;
    assert_eq!(counts(&ch, &q).await, (2, 1));
    let cch2 = channel(&conn).await;
    let _consumer2 = consume(&cch2, &q, "c2").await.expect("basic.consume");
    let d2 = declare(&ch, &q, PLAIN).await;
    assert_eq!(d2.consumer_count(), 2);
    within(cch.close(200, "OK")).await.unwrap();
    within(cch2.close(200, "OK")).await.unwrap();
    assert_eq!(
        qdel(&ch, &q, Default::default())
            .await
            .expect("queue.delete"),
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redeclare_with_different_flags_or_arguments_fails() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let q = unique("q-inequiv");
    let ttl = |v: i32| args("x-message-ttl", AMQPValue::LongInt(v));
    qdecl(&ch, &q, PLAIN, ttl(1000))
        .await
        .expect("queue.declare");
    // identical redeclare, and integer arguments compare by value across int types
    qdecl(&ch, &q, PLAIN, ttl(1000))
        .await
        .expect("identical redeclare");
    let long = args("x-message-ttl", AMQPValue::LongLongInt(1000));
    qdecl(&ch, &q, PLAIN, long)
        .await
        .expect("redeclare with a 64-bit integer ttl");
    // unknown arguments are not compared
    let mut extra = ttl(1000);
    extra.insert("x-unknown-arg".into(), AMQPValue::LongString("v".into()));
    qdecl(&ch, &q, PLAIN, extra)
        .await
        .expect("redeclare with an extra unknown arg");

    let flag_cases = [
        (
            o(true, false, false),
            "durable",
            "received 'true' but current is 'false'",
        ),
        (
            o(false, false, true),
            "auto_delete",
            "received 'true' but current is 'false'",
        ),
    ];
    for (opts, arg, rest) in flag_cases {
        let ch = channel(&conn).await;
        let r = qdecl(&ch, &q, opts, ttl(1000)).await;
        let text = format!("{}{rest}", inequivalent(&q, arg));
        assert_channel_error(&conn, r, 406, &text).await;
    }
    // exclusive mismatch is RESOURCE_LOCKED, not PRECONDITION_FAILED
    let ch = channel(&conn).await;
    let r = qdecl(&ch, &q, EXCLUSIVE, ttl(1000)).await;
    assert_channel_error(&conn, r, 405, &locked(&q)).await;

    let ch = channel(&conn).await;
    let r = qdecl(&ch, &q, PLAIN, ttl(2000)).await;
    let text = format!(
        "{}received '2000' but current is '1000'",
        inequivalent(&q, "x-message-ttl")
    );
    assert_channel_error(&conn, r, 406, &text).await;
    let ch = channel(&conn).await;
    let r = qdecl(&ch, &q, PLAIN, FieldTable::default()).await;
    assert_channel_error(&conn, r, 406, &inequivalent(&q, "x-message-ttl")).await;
    let ch = channel(&conn).await;
    let r = qdecl(&ch, &q, PLAIN, args("x-max-length", AMQPValue::LongInt(5))).await;
    assert_channel_error(&conn, r, 406, "PRECONDITION_FAILED - inequivalent arg '").await;

    // the queue is unchanged
    let ch = channel(&conn).await;
    qdecl(&ch, &q, PLAIN, ttl(1000))
        .await
        .expect("original declaration still valid");
    qdel(&ch, &q, Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_queue_arguments_are_406() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let cases = [
        ("x-message-ttl", AMQPValue::LongString("abc".into())),
        ("x-message-ttl", AMQPValue::LongInt(-1)),
        ("x-expires", AMQPValue::LongInt(0)),
    ];
    for (k, v) in cases {
        let ch = channel(&conn).await;
        let q = unique("q-badarg");
        let r = qdecl(&ch, &q, PLAIN, args(k, v)).await;
        let text = format!("PRECONDITION_FAILED - invalid arg '{k}' for queue '{q}' in vhost '/'");
        assert_channel_error(&conn, r, 406, &text).await;
        assert!(
            queue_state(&conn, &q).await.is_none(),
            "queue {q} was created"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn passive_declare_ignores_flags_and_missing_is_404() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let q = unique("q-passive");
    declare(&ch, &q, PLAIN).await;
    // passive ignores durable / exclusive / auto_delete / arguments
    let all = QueueDeclareOptions {
        passive: true,
        ..o(true, true, true)
    };
    let r = qdecl(&ch, &q, all, args("x-message-ttl", AMQPValue::LongInt(5))).await;
    r.expect("passive declare with other flags");
    let missing = unique("q-missing");
    let r = qdecl(&ch, &missing, PASSIVE, FieldTable::default()).await;
    assert_channel_error(&conn, r, 404, &no_queue(&missing)).await;
    assert!(
        queue_state(&conn, &missing).await.is_none(),
        "passive declare created it"
    );
    let ch = channel(&conn).await;
    qdel(&ch, &q, Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn declare_reserved_amq_name_is_403() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let q = format!("amq.{}", unique("x"));
    let r = qdecl(&ch, &q, PLAIN, FieldTable::default()).await;
    let text = format!("ACCESS_REFUSED - queue name '{q}' contains reserved prefix 'amq.*'");
    assert_channel_error(&conn, r, 403, &text).await;
    // a passive declare of a missing amq.* queue is a plain 404
    let ch = channel(&conn).await;
    let r = qdecl(&ch, &q, PASSIVE, FieldTable::default()).await;
    assert_channel_error(&conn, r, 404, &no_queue(&q)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn durable_flag_is_kept() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let q = unique("q-durable");
    declare(&ch, &q, o(true, false, false)).await;
    declare(&ch, &q, o(true, false, false)).await;
    declare(&ch, &q, PASSIVE).await;
    let r = qdecl(&ch, &q, PLAIN, FieldTable::default()).await;
    let text = format!(
        "{}received 'false' but current is 'true'",
        inequivalent(&q, "durable")
    );
    assert_channel_error(&conn, r, 406, &text).await;
    let ch = channel(&conn).await;
    qdel(&ch, &q, Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exclusive_queue_is_locked_for_other_connections() {
    let b = start_broker(1);
    let owner = connect(&b.uri()).await;
    let other = connect(&b.uri()).await;
    let och = confirm_channel(&owner).await;
    let q = unique("q-excl");
    declare(&och, &q, EXCLUSIVE).await;
    publish_n(&och, &q, 1).await;

    let ch = channel(&other).await;
    let r = qdecl(&ch, &q, EXCLUSIVE, FieldTable::default()).await;
    assert_channel_error(&other, r, 405, &locked(&q)).await;
    let ch = channel(&other).await;
    let r = qdecl(&ch, &q, PLAIN, FieldTable::default()).await;
    assert_channel_error(&other, r, 405, &locked(&q)).await;
    let ch = channel(&other).await;
    let r = qdecl(&ch, &q, PASSIVE, FieldTable::default()).await;
    assert_channel_error(&other, r, 405, &locked(&q)).await;
    let ch = channel(&other).await;
    let r = consume(&ch, &q, "").await;
    assert_channel_error(&other, r, 405, &locked(&q)).await;
    let ch = channel(&other).await;
    let r = within(ch.basic_get(&q, Default::default())).await;
    assert_channel_error(&other, r, 405, &locked(&q)).await;
    let ch = channel(&other).await;
    let r = within(ch.queue_purge(&q, Default::default())).await;
    assert_channel_error(&other, r, 405, &locked(&q)).await;
    let ch = channel(&other).await;
    let r = qdel(&ch, &q, Default::default()).await;
    assert_channel_error(&other, r, 405, &locked(&q)).await;
    let ch = channel(&other).await;
    let r = within(ch.queue_bind(
        &q,
        "amq.fanout",
        "",
        Default::default(),
        FieldTable::default(),
    ));
    assert_channel_error(&other, r.await, 405, &locked(&q)).await;

    // the owner redeclaring it as non-exclusive is also refused
    let ch = channel(&owner).await;
    let r = qdecl(&ch, &q, PLAIN, FieldTable::default()).await;
    assert_channel_error(&owner, r, 405, &locked(&q)).await;
    // nothing above touched it: the owner still sees its message and can use it
    assert_eq!(counts(&och, &q).await, (1, 0));
    declare(&och, &q, EXCLUSIVE).await;
    let m = within(och.basic_get(&q, BasicGetOptions { no_ack: true }))
        .await
        .unwrap();
    assert_eq!(m.expect("message").delivery.data, b"m0");
}

#[tokio::test(flavor = "multi_thread")]
async fn exclusive_queue_deleted_when_its_connection_closes() {
    let b = start_broker(1);
    let owner = connect(&b.uri()).await;
    let observer = connect(&b.uri()).await;
    let q = unique("q-excl-close");
    let ch = channel(&owner).await;
    declare(&ch, &q, EXCLUSIVE).await;
    // closing the declaring channel does not delete it
    within(ch.close(200, "OK")).await.unwrap();
    let ch2 = channel(&owner).await;
    assert_eq!(counts(&ch2, &q).await, (0, 0));
    // it exists (locked) for others until the owner connection closes
    let och = channel(&observer).await;
    let r = qdecl(&och, &q, PASSIVE, FieldTable::default()).await;
    assert_channel_error(&observer, r, 405, &locked(&q)).await;
    within(owner.close(200, "bye"))
        .await
        .expect("connection.close");
    assert_queue_gone(&observer, &q).await;
    // and the name is free again
    let och = channel(&observer).await;
    declare(&och, &q, EXCLUSIVE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_delete_queue_deleted_when_last_consumer_cancels() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let q = unique("q-autodel");
    declare(&ch, &q, o(false, false, true)).await;
    // not deleted before any consumer came
    // A fixed wait, not a poll: checks that it is NOT deleted (yet), which
    // holds however late the check runs.
    tokio::time::sleep(SHORT).await;
    assert_eq!(queue_state(&conn, &q).await, Some((0, 0)));
    let ch1 = channel(&conn).await;
    let ch2 = channel(&conn).await;
    let _c1 = consume(&ch1, &q, "c1").await.expect("basic.consume");
    let _c2 = consume(&ch2, &q, "c2").await.expect("basic.consume");
    assert_eq!(queue_state(&conn, &q).await, Some((0, 2)));
    cancel(&ch1, "c1").await;
    // A fixed wait, not a poll: checks that it is NOT deleted (yet), which
    // holds however late the check runs.
    tokio::time::sleep(SHORT).await;
    assert_eq!(
        queue_state(&conn, &q).await,
        Some((0, 1)),
        "deleted with a consumer left"
    );
    cancel(&ch2, "c2").await;
    assert_queue_gone(&conn, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_delete_queue_deleted_when_consumer_channel_closes() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let q = unique("q-autodel-close");
    declare(&ch, &q, o(false, false, true)).await;
    let cch = channel(&conn).await;
    let _c = consume(&cch, &q, "c").await.expect("basic.consume");
    within(cch.close(200, "OK")).await.unwrap();
    assert_queue_gone(&conn, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_returns_count_and_empties() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    publish_n(&ch, &q, 5).await;
    assert_eq!(
        within(ch.queue_purge(&q, Default::default()))
            .await
            .unwrap(),
        5
    );
    assert_eq!(counts(&ch, &q).await, (0, 0));
    let m = within(ch.basic_get(&q, BasicGetOptions { no_ack: true }))
        .await
        .unwrap();
    assert!(m.is_none(), "message left after purge");
    assert_eq!(
        within(ch.queue_purge(&q, Default::default()))
            .await
            .unwrap(),
        0
    );
    // the queue keeps working after a purge
    publish_n(&ch, &q, 1).await;
    assert_eq!(counts(&ch, &q).await, (1, 0));
    let missing = unique("q-purge-missing");
    let r = within(ch.queue_purge(&missing, Default::default())).await;
    assert_channel_error(&conn, r, 404, &no_queue(&missing)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_returns_count() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let q = unique("q-delete");
    declare(&ch, &q, PLAIN).await;
    publish_n(&ch, &q, 4).await;
    assert_eq!(
        qdel(&ch, &q, Default::default())
            .await
            .expect("queue.delete"),
        4
    );
    assert!(queue_state(&conn, &q).await.is_none());
    // deleting a missing queue is delete-ok with 0
    assert_eq!(
        qdel(&ch, &q, Default::default())
            .await
            .expect("delete missing"),
        0
    );
    let opts = QueueDeleteOptions {
        if_empty: true,
        if_unused: true,
        ..Default::default()
    };
    assert_eq!(
        qdel(&ch, &unique("q-never"), opts)
            .await
            .expect("delete missing"),
        0
    );
    // re-creating it gives an empty queue
    assert_eq!(declare(&ch, &q, PLAIN).await.message_count(), 0);
    qdel(&ch, &q, Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_if_empty_with_messages_is_406() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    publish_n(&ch, &q, 1).await;
    let if_empty = QueueDeleteOptions {
        if_empty: true,
        ..Default::default()
    };
    assert_delete_refused(&conn, &ch, &q, if_empty, "not empty").await;
    let ch = channel(&conn).await;
    assert_eq!(counts(&ch, &q).await, (1, 0), "queue and message survive");
    within(ch.queue_purge(&q, Default::default()))
        .await
        .unwrap();
    let what = "if-empty delete of an empty queue";
    assert_deleted_empty(&conn, &ch, &q, if_empty, what).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_if_unused_with_consumer_is_406() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let q = temp_queue(&ch).await;
    let cch = channel(&conn).await;
    let _c = consume(&cch, &q, "c").await.expect("basic.consume");
    let if_unused = QueueDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    assert_delete_refused(&conn, &ch, &q, if_unused, "in use").await;
    let ch = channel(&conn).await;
    assert_eq!(counts(&ch, &q).await, (0, 1));
    cancel(&cch, "c").await;
    let what = "if-unused delete of an unused queue";
    assert_deleted_empty(&conn, &ch, &q, if_unused, what).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_queue_cancels_its_consumers() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let q = unique("q-del-consumed");
    declare(&ch, &q, PLAIN).await;
    let cch = channel(&conn).await;
    let mut consumer = consume(&cch, &q, "c").await.expect("basic.consume");
    qdel(&ch, &q, Default::default())
        .await
        .expect("queue.delete");
    // the broker sends basic.cancel: the consumer stream ends
    let started = tokio::time::Instant::now();
    assert!(recv_one(&mut consumer, TIMEOUT).await.is_none());
    assert!(
        started.elapsed() < TIMEOUT,
        "consumer was not cancelled by the broker"
    );
    assert_eq!(consumer.state(), lapin::ConsumerState::Canceled);
    // the consumer's channel stays open
    temp_queue(&cch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_on_missing_queue_are_404() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let q = unique("q-nope");
    let ch = channel(&conn).await;
    let r = consume(&ch, &q, "").await;
    assert_channel_error(&conn, r, 404, &no_queue(&q)).await;
    let ch = channel(&conn).await;
    let r = within(ch.basic_get(&q, Default::default())).await;
    assert_channel_error(&conn, r, 404, &no_queue(&q)).await;
}
