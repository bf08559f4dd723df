//! Helpers for the tests of RabbitMQ's queue extensions (TTL, dead-lettering,
//! limits, priorities, consumer options, timeouts). Use next to
//! `common_lapin`: `mod common_ext; use common_ext::*;`.
#![allow(dead_code)]

use crate::common_lapin::*;
use lapin::{
    options::*,
    publisher_confirm::Confirmation,
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Consumer,
};
use std::time::Duration;

/// An integer argument value.
pub fn int(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

/// queue.declare with arguments, returning the result.
pub async fn try_declare_args(
    ch: &Channel,
    q: &str,
    args: FieldTable,
) -> Result<lapin::Queue, lapin::Error> {
    within(ch.queue_declare(q, QueueDeclareOptions::default(), args)).await
}

/// queue.declare with arguments (panics on failure).
pub async fn declare_args(ch: &Channel, q: &str, pairs: &[(&str, AMQPValue)]) {
    try_declare_args(ch, q, table(pairs))
        .await
        .unwrap_or_else(|e| panic!("queue.declare {q}: {e}"));
}

/// Publishes on a confirm channel and returns the confirmation.
pub async fn publish_confirm(
    ch: &Channel,
    x: &str,
    rk: &str,
    body: &[u8],
    props: BasicProperties,
) -> Confirmation {
    let pc = within(ch.basic_publish(x, rk, BasicPublishOptions::default(), body, props))
        .await
        .expect("basic.publish");
    within(pc).await.expect("publisher confirm")
}

/// Publishes on a confirm channel and asserts a plain ack.
pub async fn publish_acked(ch: &Channel, x: &str, rk: &str, body: &[u8], props: BasicProperties) {
    let c = publish_confirm(ch, x, rk, body, props).await;
    assert!(
        c.is_ack(),
        "publish of {:?} not acked: {c:?}",
        String::from_utf8_lossy(body)
    );
}

/// Properties with a per-message TTL.
pub fn expiring(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ms.into())
}

/// Polls the ready-message count of `q` until it is `n` (panics after `within`).
pub async fn wait_count(ch: &Channel, q: &str, n: u32, within_: Duration) {
    let reached = async || (message_count(ch, q).await == n).then_some(());
    if try_poll_for_within(within_, reached).await.is_none() {
        let c = message_count(ch, q).await;
        panic!("queue {q} has {c} messages, expected {n} within {within_:?}");
    }
}

/// basic.consume with options and arguments (panics on failure).
pub async fn consume_with(
    ch: &Channel,
    q: &str,
    tag: &str,
    no_ack: bool,
    args: FieldTable,
) -> Consumer {
    let opts = BasicConsumeOptions {
        no_ack,
        ..Default::default()
    };
    within(ch.basic_consume(q, tag, opts, args))
        .await
        .unwrap_or_else(|e| panic!("basic.consume {q}: {e}"))
}

/// basic.qos prefetch (per consumer).
pub async fn qos(ch: &Channel, n: u16) {
    within(ch.basic_qos(n, BasicQosOptions::default()))
        .await
        .expect("basic.qos");
}

/// The `headers` of a delivery (empty when it has none).
pub fn headers(p: &BasicProperties) -> FieldTable {
    p.headers().clone().unwrap_or_default()
}

/// A header value.
pub fn header<'a>(h: &'a FieldTable, k: &str) -> Option<&'a AMQPValue> {
    h.inner().get(k)
}

/// A long-string header value as text.
pub fn hstr(h: &FieldTable, k: &str) -> Option<String> {
    match header(h, k)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => panic!("header {k} is not a long string: {other:?}"),
    }
}

/// The `x-death` entries of a delivery, as tables.
pub fn x_death(p: &BasicProperties) -> Vec<FieldTable> {
    match header(&headers(p), "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry is not a table: {other:?}"),
            })
            .collect(),
        None => Vec::new(),
        Some(other) => panic!("x-death is not an array: {other:?}"),
    }
}

/// basic.get with ack; the delivery (panics when empty).
pub async fn get_one(ch: &Channel, q: &str) -> lapin::message::Delivery {
    get(ch, q, false)
        .await
        .unwrap_or_else(|| panic!("queue {q} is empty"))
        .delivery
}
