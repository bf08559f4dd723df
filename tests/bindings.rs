//! queue.bind / queue.unbind semantics and cross-shard visibility of bindings, driven by the
//! `lapin` client. Reply texts are RabbitMQ's (observed on 3.10.8; 3.13 is the reference).

mod common_lapin;
mod util;

use common_lapin::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    Channel,
    ExchangeKind::{self, *},
};
use std::time::Duration;
use util::*;

type R = Result<(), lapin::Error>;

async fn xdecl(ch: &Channel, x: &str, kind: ExchangeKind) {
    let r = within(ch.exchange_declare(x, kind, Default::default(), FieldTable::default())).await;
    r.unwrap_or_else(|e| panic!("exchange.declare {x}: {e}"));
}

async fn qdecl(ch: &Channel, q: &str) -> String {
    let opts = QueueDeclareOptions::default();
    let r = within(ch.queue_declare(q, opts, FieldTable::default())).await;
    r.unwrap_or_else(|e| panic!("queue.declare {q}: {e}"))
        .name()
        .as_str()
        .to_string()
}

async fn qdel(ch: &Channel, q: &str) {
    within(ch.queue_delete(q, Default::default()))
        .await
        .expect("queue.delete");
}

async fn try_unbind(ch: &Channel, q: &str, x: &str, key: &str, args: FieldTable) -> R {
    within(ch.queue_unbind(q, x, key, args)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_to_missing_queue_or_exchange_is_404() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let x = unique("bx-missing");
    xdecl(&ch, &x, Direct).await;
    let q = temp_queue(&ch).await;
    let (mq, mx) = (unique("bq-nope"), unique("bx-nope"));

    let r = try_bind(&ch, &mq, &x, "k", FieldTable::default()).await;
    assert_channel_error(&conn, r, 404, &no_queue(&mq)).await;
    let ch = channel(&conn).await;
    let r = try_bind(&ch, &q, &mx, "k", FieldTable::default()).await;
    assert_channel_error(&conn, r, 404, &no_exchange(&mx)).await;
    let ch = channel(&conn).await;
    let r = try_bind(&ch, &mq, &mx, "k", FieldTable::default()).await;
    assert_channel_error(&conn, r, 404, "NOT_FOUND - no ").await;
    // nothing was bound: the exchange can be deleted if-unused
    let ch = channel(&conn).await;
    let if_unused = ExchangeDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    within(ch.exchange_delete(&x, if_unused))
        .await
        .expect("exchange has no bindings");
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_and_unbind_on_default_exchange_is_403() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let q = temp_queue(&ch).await;
    let r = try_bind(&ch, &q, "", "other-key", FieldTable::default()).await;
    assert_channel_error(&conn, r, 403, DEFAULT_X).await;
    let ch = channel(&conn).await;
    let r = try_unbind(&ch, &q, "", &q, FieldTable::default()).await;
    assert_channel_error(&conn, r, 403, DEFAULT_X).await;
    // the implicit default binding is untouched
    let ch = confirm_channel(&conn).await;
    routed(&ch, "", &q, "still").await;
    unroutable(&ch, "", "other-key", "never").await;
    assert_eq!(drain(&ch, &q).await, vec!["still"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unbind_stops_routing() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let x = unique("bx-unbind");
    xdecl(&ch, &x, Direct).await;
    let q1 = temp_queue(&ch).await;
    let q2 = temp_queue(&ch).await;
    bind(&ch, &q1, &x, "k").await;
    bind(&ch, &q2, &x, "k").await;
    routed(&ch, &x, "k", "both").await;
    unbind(&ch, &q1, &x, "k").await;
    routed(&ch, &x, "k", "q2-only").await;
    unbind(&ch, &q2, &x, "k").await;
    unroutable(&ch, &x, "k", "nobody").await;
    assert_eq!(drain(&ch, &q1).await, vec!["both"]);
    assert_eq!(drain(&ch, &q2).await, vec!["both", "q2-only"]);
    // re-binding after unbind works
    bind(&ch, &q1, &x, "k").await;
    routed(&ch, &x, "k", "again").await;
    assert_eq!(drain(&ch, &q1).await, vec!["again"]);
    xdel(&ch, &x).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_is_idempotent() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let x = unique("bx-idem");
    xdecl(&ch, &x, Direct).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "k").await;
    bind(&ch, &q, &x, "k").await;
    routed(&ch, &x, "k", "one").await;
    assert_eq!(
        drain(&ch, &q).await,
        vec!["one"],
        "a double binding delivers once"
    );
    // a single unbind removes it
    unbind(&ch, &q, &x, "k").await;
    unroutable(&ch, &x, "k", "none").await;
    assert!(drain(&ch, &q).await.is_empty());
    xdel(&ch, &x).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multiple_keys_and_overlapping_bindings_deliver_once() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let x = unique("bx-multi");
    xdecl(&ch, &x, Direct).await;
    let q = temp_queue(&ch).await;
    for key in ["k1", "k2", "k3"] {
        bind(&ch, &q, &x, key).await;
    }
    routed(&ch, &x, "k1", "1").await;
    routed(&ch, &x, "k2", "2").await;
    unroutable(&ch, &x, "k4", "4").await;
    unbind(&ch, &q, &x, "k2").await;
    unroutable(&ch, &x, "k2", "2b").await;
    routed(&ch, &x, "k3", "3").await;
    assert_eq!(drain(&ch, &q).await, vec!["1", "2", "3"]);

    // topic: two patterns matching the same key still give one copy per queue
    let t = unique("bx-multi-topic");
    xdecl(&ch, &t, Topic).await;
    let q2 = temp_queue(&ch).await;
    for key in ["a.*", "*.b", "#", "a.b"] {
        bind(&ch, &q, &t, key).await;
    }
    bind(&ch, &q2, &t, "a.#").await;
    routed(&ch, &t, "a.b", "ab").await;
    routed(&ch, &t, "c.d", "cd").await;
    assert_eq!(drain(&ch, &q).await, vec!["ab", "cd"]);
    assert_eq!(drain(&ch, &q2).await, vec!["ab"]);
    xdel(&ch, &x).await;
    xdel(&ch, &t).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binding_identity_includes_arguments() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    // direct: same key, different arguments = two bindings (one delivery)
    let x = unique("bx-args");
    xdecl(&ch, &x, Direct).await;
    let q = temp_queue(&ch).await;
    let foo = table(&[("foo", AMQPValue::LongInt(1))]);
    bind(&ch, &q, &x, "k").await;
    try_bind(&ch, &q, &x, "k", foo.clone())
        .await
        .expect("bind with args");
    routed(&ch, &x, "k", "1").await;
    unbind(&ch, &q, &x, "k").await;
    routed(&ch, &x, "k", "2").await; // via the binding with arguments
    try_unbind(&ch, &q, &x, "k", foo)
        .await
        .expect("unbind with args");
    unroutable(&ch, &x, "k", "3").await;
    assert_eq!(drain(&ch, &q).await, vec!["1", "2"]);

    // headers: unbinding with one argument table leaves the other binding in place
    let h = unique("bx-args-h");
    xdecl(&ch, &h, Headers).await;
    let a = table(&[("x-match", s("all")), ("a", s("1"))]);
    let bb = table(&[("x-match", s("all")), ("b", s("2"))]);
    try_bind(&ch, &q, &h, "", a.clone()).await.unwrap();
    try_bind(&ch, &q, &h, "", bb.clone()).await.unwrap();
    let ha = table(&[("a", s("1"))]);
    let hb = table(&[("b", s("2"))]);
    assert!(publish_h(&ch, &h, "", "a1", Some(ha.clone()))
        .await
        .is_none());
    try_unbind(&ch, &q, &h, "", a).await.expect("unbind a");
    assert!(
        publish_h(&ch, &h, "", "a2", Some(ha)).await.is_some(),
        "a-binding removed"
    );
    assert!(
        publish_h(&ch, &h, "", "b1", Some(hb)).await.is_none(),
        "b-binding kept"
    );
    assert_eq!(drain(&ch, &q).await, vec!["a1", "b1"]);
    xdel(&ch, &x).await;
    xdel(&ch, &h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unbind_of_nonexistent_binding_is_ok() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let x = unique("bx-unbind-none");
    xdecl(&ch, &x, Direct).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "k").await;
    unbind(&ch, &q, &x, "other").await;
    unbind(&ch, &q, &x, "other").await;
    unbind(&ch, &unique("bq-nope"), &x, "k").await;
    unbind(&ch, &q, &unique("bx-nope"), "k").await;
    // the channel is open and the real binding unaffected
    routed(&ch, &x, "k", "kept").await;
    assert_eq!(drain(&ch, &q).await, vec!["kept"]);
    xdel(&ch, &x).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_queue_removes_its_bindings() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = confirm_channel(&conn).await;
    let x = unique("bx-qdel");
    xdecl(&ch, &x, Fanout).await;
    let q = unique("bq-qdel");
    qdecl(&ch, &q).await;
    bind(&ch, &q, &x, "").await;
    qdel(&ch, &q).await;
    unroutable(&ch, &x, "", "gone").await;
    // a new queue with the same name does not inherit the binding
    qdecl(&ch, &q).await;
    unroutable(&ch, &x, "", "still-gone").await;
    assert!(drain(&ch, &q).await.is_empty());
    qdel(&ch, &q).await;
    xdel(&ch, &x).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_queue_name_means_last_declared_queue() {
    let b = start_broker(1);
    let conn = connect(&b.uri()).await;
    let ch = channel(&conn).await;
    let r = try_bind(&ch, "", "amq.direct", "k", FieldTable::default()).await;
    assert_channel_error(&conn, r, 404, "NOT_FOUND - no previously declared queue").await;
    let ch = confirm_channel(&conn).await;
    let x = unique("bx-last");
    xdecl(&ch, &x, Direct).await;
    let q = temp_queue(&ch).await;
    // queue "" = last declared queue; with an empty key the key is the queue name too
    try_bind(&ch, "", &x, "", FieldTable::default())
        .await
        .expect("bind ''");
    routed(&ch, &x, &q, "by-name").await;
    unroutable(&ch, &x, "", "empty-key").await;
    assert_eq!(drain(&ch, &q).await, vec!["by-name"]);
    xdel(&ch, &x).await;
}

/// After bind-ok on one shard, the very next publish from another connection on the other
/// shard must be routed (and after unbind-ok, must not be). Repeated with fresh names.
#[tokio::test(flavor = "multi_thread")]
async fn binding_is_visible_on_other_shard_immediately() {
    let b = start_broker(2);
    let c0 = connect(&b.shard_uri(0)).await;
    let c1 = connect(&b.shard_uri(1)).await;
    let ch0 = channel(&c0).await;
    let pch = confirm_channel(&c1).await;
    let kinds = [Direct, Topic, Fanout];
    for i in 0..50 {
        let x = unique("bx-shard");
        let kind = kinds[i % kinds.len()].clone();
        xdecl(&ch0, &x, kind).await;
        // alternate server-named exclusive queues and named shared ones
        let q = if i % 2 == 0 {
            temp_queue(&ch0).await
        } else {
            qdecl(&ch0, &unique("bq-shard")).await
        };
        let key = unique("key");
        let mut consumer = {
            let opts = BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            };
            within(ch0.basic_consume(&q, "", opts, FieldTable::default()))
                .await
                .expect("consume")
        };
        bind(&ch0, &q, &x, &key).await;
        let body = format!("msg-{i}");
        let ret = publish_h(&pch, &x, &key, &body, None).await;
        assert!(
            ret.is_none(),
            "iteration {i}: publish right after bind-ok was returned"
        );
        let d = recv_one(&mut consumer, TIMEOUT).await;
        let d = d.unwrap_or_else(|| panic!("iteration {i}: message not delivered"));
        assert_eq!(d.data, body.as_bytes());
        assert_eq!(d.routing_key.as_str(), key);

        unbind(&ch0, &q, &x, &key).await;
        let ret = publish_h(&pch, &x, &key, "after-unbind", None).await;
        assert!(
            ret.is_some(),
            "iteration {i}: publish right after unbind-ok was routed"
        );
        expect_no_message(&mut consumer, Duration::from_millis(20)).await;
        if i % 2 == 1 {
            qdel(&ch0, &q).await;
        }
        xdel(&ch0, &x).await;
    }
    assert_connection_usable(&c0).await;
    assert_connection_usable(&c1).await;
}
