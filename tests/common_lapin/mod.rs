//! Small helpers for integration tests that drive the broker with the `lapin` client.
//!
//! Use with `mod common_lapin; use common_lapin::*;`. Every helper that waits has a
//! timeout, so a misbehaving broker makes a test fail instead of hang. A test file may
//! define its own variant of a helper under the same name (e.g. a `declare` taking
//! options); the local item shadows the one imported from here.
//!
//! Something the broker does on its own time (a timer tick, a hop to another shard) is
//! waited for with [`eventually`] / [`poll_for`]: poll against a deadline, never sleep a
//! fixed time and hope it has happened.
#![allow(dead_code)]

use futures_lite::StreamExt;
use lapin::{
    message::{BasicGetMessage, BasicReturnMessage, Delivery},
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer,
};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default upper bound for one broker round-trip in a test.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A short wait for "nothing more arrives" checks.
pub const SHORT: Duration = Duration::from_millis(300);

/// Reply text of a 403 for operations on the default exchange.
pub const DEFAULT_X: &str = "ACCESS_REFUSED - operation not permitted on the default exchange";

/// How long [`eventually`] and [`poll_for`] wait for something the broker does on its own
/// (a 200 ms timer tick: message TTL, x-expires, alarms, timeouts; or an asynchronous
/// hop between shards). Generous, so that a loaded CI machine cannot miss it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Pause between two checks of a poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `probe` every [`POLL_INTERVAL`] until it yields `Some`, and returns that value;
/// `None` if `timeout` passes first. The one poll loop of the tests: see [`poll_for_within`].
pub async fn try_poll_for_within<T>(
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `probe` every [`POLL_INTERVAL`] until it yields `Some`, and returns that value;
/// panics with "`what`: not observed within …" if `timeout` passes first. Use this instead
/// of sleeping for a fixed time and hoping the broker's tick has run by then.
pub async fn poll_for_within<T>(
    timeout: Duration,
    what: &str,
    probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    match try_poll_for_within(timeout, probe).await {
        Some(v) => v,
        None => panic!("{what}: not observed within {timeout:?}"),
    }
}

/// [`poll_for_within`] with the default [`PATIENCE`].
pub async fn poll_for<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
    poll_for_within(PATIENCE, what, probe).await
}

/// Polls `check` until it is true (panics after `timeout`); see [`poll_for_within`].
pub async fn eventually_within(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) {
    poll_for_within(timeout, what, async || check().await.then_some(())).await
}

/// Polls `check` until it is true (panics after [`PATIENCE`]); see [`poll_for_within`].
/// E.g. `eventually("queue q expired", async || !exists(&conn, &q).await).await`.
pub async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    eventually_within(PATIENCE, what, check).await
}

/// Runs a whole test body with an overall deadline so nothing can hang.
pub async fn deadline<F: Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test timed out");
}

/// Awaits `fut`, panicking if it does not finish within [`TIMEOUT`].
pub async fn within<F: Future>(fut: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("operation did not complete within {:?}", TIMEOUT),
    }
}

/// Opens a connection (panics on failure or timeout).
pub async fn connect(uri: &str) -> Connection {
    within(Connection::connect(uri, ConnectionProperties::default()))
        .await
        .unwrap_or_else(|e| panic!("connect to {uri}: {e}"))
}

/// Opens a channel on `conn` (panics on failure or timeout).
pub async fn channel(conn: &Connection) -> Channel {
    within(conn.create_channel()).await.expect("channel.open")
}

/// A name unique across tests and test runs (objects may outlive a run on a shared broker).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{:x}-{}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// [`unique`] with the `warren-msg-` prefix of the messaging tests.
pub fn uniq(prefix: &str) -> String {
    unique(&format!("warren-msg-{prefix}"))
}

/// `uri` with the query parameter `q` (e.g. `frame_max=8192`) appended.
pub fn with_query(uri: &str, q: &str) -> String {
    if uri.contains('?') {
        format!("{uri}&{q}")
    } else {
        format!("{uri}?{q}")
    }
}

/// RabbitMQ's 404 reply text for a missing queue in the default vhost.
pub fn no_queue(q: &str) -> String {
    format!("NOT_FOUND - no queue '{q}' in vhost '/'")
}

/// RabbitMQ's 404 reply text for a missing exchange in the default vhost.
pub fn no_exchange(x: &str) -> String {
    format!("NOT_FOUND - no exchange '{x}' in vhost '/'")
}

/// The reply code and text of a broker-sent channel.close / connection.close, if `err` is one.
pub fn amqp_error(err: &lapin::Error) -> Option<(u16, String)> {
    match err {
        lapin::Error::ProtocolError(e) => Some((e.get_id(), e.get_message().as_str().to_string())),
        _ => None,
    }
}

/// The reply code and text of `e`, which must be a broker-sent close.
pub fn code_text(e: &lapin::Error) -> (u16, String) {
    amqp_error(e).unwrap_or_else(|| panic!("expected an AMQP protocol error, got {e:?}"))
}

/// Asserts that `err` is a broker close with `code` and a reply text starting with `prefix`.
pub fn assert_amqp_error(err: &lapin::Error, code: u16, prefix: &str) {
    match amqp_error(err) {
        Some((c, text)) => {
            assert_eq!(c, code, "reply code (text: {text:?})");
            assert!(
                text.starts_with(prefix),
                "reply text {text:?} does not start with {prefix:?}"
            );
        }
        None => panic!("expected AMQP error {code} {prefix:?}, got {err:?}"),
    }
}

/// Asserts that `res` failed with a *channel*-level close (`code`, text starting with
/// `prefix`) and that the connection survived: a new channel can be opened and used.
pub async fn assert_channel_error<T: std::fmt::Debug>(
    conn: &Connection,
    res: Result<T, lapin::Error>,
    code: u16,
    prefix: &str,
) {
    let err = match res {
        Ok(v) => panic!("expected channel error {code} {prefix:?}, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_amqp_error(&err, code, prefix);
    assert_connection_usable(conn).await;
}

/// Asserts that `res` failed with a *connection*-level close (`code`, text prefix) and that
/// the connection is no longer usable.
pub async fn assert_connection_error<T: std::fmt::Debug>(
    conn: &Connection,
    res: Result<T, lapin::Error>,
    code: u16,
    prefix: &str,
) {
    let err = match res {
        Ok(v) => panic!("expected connection error {code} {prefix:?}, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_amqp_error(&err, code, prefix);
    let closed = tokio::time::timeout(TIMEOUT, async {
        while conn.status().connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "connection still open after a connection-level error"
    );
}

/// Opens a fresh channel on `conn`, declares and deletes a server-named queue on it, and
/// closes it: proves the connection is still fully working.
pub async fn assert_connection_usable(conn: &Connection) {
    assert!(
        conn.status().connected(),
        "connection is no longer connected"
    );
    let ch = channel(conn).await;
    let q = within(ch.queue_declare(
        "",
        lapin::options::QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        Default::default(),
    ))
    .await
    .expect("queue.declare on a new channel after a channel error");
    within(ch.queue_delete(q.name().as_str(), Default::default()))
        .await
        .expect("queue.delete on a new channel after a channel error");
    within(ch.close(200, "OK")).await.expect("channel.close");
}

/// Waits up to `timeout` for the next delivery. `None` on timeout or when the consumer
/// ends (cancelled); panics if the consumer reports an error.
pub async fn recv_one(consumer: &mut Consumer, timeout: Duration) -> Option<Delivery> {
    match tokio::time::timeout(timeout, consumer.next()).await {
        Err(_) => None,
        Ok(None) => None,
        Ok(Some(Ok(d))) => Some(d),
        Ok(Some(Err(e))) => panic!("consumer error: {e}"),
    }
}

/// Asserts that no delivery arrives on `consumer` within `dur`.
pub async fn expect_no_message(consumer: &mut Consumer, dur: Duration) {
    if let Some(d) = recv_one(consumer, dur).await {
        panic!(
            "unexpected delivery: exchange={:?} routing_key={:?} body={:?}",
            d.exchange.as_str(),
            d.routing_key.as_str(),
            String::from_utf8_lossy(&d.data)
        );
    }
}

/// A fresh connection still works (the broker survived).
pub async fn assert_broker_alive(uri: &str) {
    assert_connection_usable(&connect(uri).await).await;
}

/// Errors reported asynchronously for a channel or connection.
pub type ErrRx = tokio::sync::mpsc::UnboundedReceiver<lapin::Error>;

/// Collects errors reported asynchronously for a channel (e.g. a broker channel.close).
pub fn watch_channel(ch: &Channel) -> ErrRx {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    ch.on_error(move |e| {
        let _ = tx.send(e);
    });
    rx
}

/// Collects errors reported asynchronously for a connection (a broker connection.close).
pub fn watch_connection(c: &Connection) -> ErrRx {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    c.on_error(move |e| {
        let _ = tx.send(e);
    });
    rx
}

/// The code and text of the next error on `rx`.
pub async fn next_err(rx: &mut ErrRx) -> (u16, String) {
    code_text(&within(rx.recv()).await.expect("error handler dropped"))
}

// ---------------------------------------------------------------- queues

/// Declares queue `name` with default flags (panics on failure).
pub async fn declare(ch: &Channel, name: &str) {
    within(ch.queue_declare(name, QueueDeclareOptions::default(), FieldTable::default()))
        .await
        .expect("queue.declare");
}

/// Deletes queue `name`, ignoring any error (clean-up).
pub async fn delete(ch: &Channel, name: &str) {
    let _ = within(ch.queue_delete(name, QueueDeleteOptions::default())).await;
}

/// A server-named exclusive queue.
pub async fn temp_queue(ch: &Channel) -> String {
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let q = within(ch.queue_declare("", opts, FieldTable::default())).await;
    q.expect("queue.declare").name().as_str().to_string()
}

/// The ready-message count of `q` (passive declare).
pub async fn message_count(ch: &Channel, q: &str) -> u32 {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    within(ch.queue_declare(q, opts, FieldTable::default()))
        .await
        .expect("passive declare")
        .message_count()
}

// ---------------------------------------------------------------- exchanges and bindings

/// Deletes exchange `x` (panics on failure).
pub async fn xdel(ch: &Channel, x: &str) {
    let r = within(ch.exchange_delete(x, Default::default())).await;
    r.unwrap_or_else(|e| panic!("exchange.delete {x}: {e}"));
}

/// queue.bind, returning the result.
pub async fn try_bind(
    ch: &Channel,
    q: &str,
    x: &str,
    key: &str,
    args: FieldTable,
) -> Result<(), lapin::Error> {
    within(ch.queue_bind(q, x, key, Default::default(), args)).await
}

/// queue.bind with arguments (panics on failure).
pub async fn bind_args(ch: &Channel, q: &str, x: &str, key: &str, args: FieldTable) {
    let r = try_bind(ch, q, x, key, args).await;
    r.unwrap_or_else(|e| panic!("queue.bind {q} {x} {key}: {e}"));
}

/// queue.bind without arguments (panics on failure).
pub async fn bind(ch: &Channel, q: &str, x: &str, key: &str) {
    bind_args(ch, q, x, key, FieldTable::default()).await
}

/// queue.unbind without arguments (panics on failure).
pub async fn unbind(ch: &Channel, q: &str, x: &str, key: &str) {
    let r = within(ch.queue_unbind(q, x, key, FieldTable::default())).await;
    r.unwrap_or_else(|e| panic!("queue.unbind {q} {x} {key}: {e}"));
}

/// A field table from `(key, value)` pairs.
pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// A long-string field value.
pub fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

// ---------------------------------------------------------------- publishing

/// Publishes `body` with default options and properties (the confirm, if any, is not awaited).
pub async fn publish(ch: &Channel, ex: &str, rk: &str, body: &[u8]) {
    within(ch.basic_publish(
        ex,
        rk,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    ))
    .await
    .expect("basic.publish");
}

/// A channel in confirm mode.
pub async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = channel(conn).await;
    within(ch.confirm_select(Default::default()))
        .await
        .expect("confirm.select");
    ch
}

/// Publishes mandatory on a confirm channel, waits for the ack, returns the basic.return if any.
pub async fn publish_h(
    ch: &Channel,
    x: &str,
    key: &str,
    body: &str,
    headers: Option<FieldTable>,
) -> Option<BasicReturnMessage> {
    let mut props = BasicProperties::default();
    if let Some(h) = headers {
        props = props.with_headers(h);
    }
    let opts = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let confirm = within(ch.basic_publish(x, key, opts, body.as_bytes(), props)).await;
    let c = within(confirm.expect("basic.publish"))
        .await
        .expect("publisher confirm");
    assert!(c.is_ack(), "publish to {x:?}/{key:?} was not acked: {c:?}");
    c.take_message()
}

/// Publishes (mandatory, confirmed) and asserts the message was routed (no basic.return).
pub async fn routed(ch: &Channel, x: &str, key: &str, body: &str) {
    let ret = publish_h(ch, x, key, body, None).await;
    assert!(
        ret.is_none(),
        "{body:?} to {x:?}/{key:?} was returned unroutable"
    );
}

/// Publishes (mandatory, confirmed) and asserts the message came back as 312 NO_ROUTE.
pub async fn unroutable(ch: &Channel, x: &str, key: &str, body: &str) {
    let ret = publish_h(ch, x, key, body, None).await;
    let ret = ret.unwrap_or_else(|| panic!("{body:?} to {x:?}/{key:?} was routed"));
    assert_eq!(ret.reply_code, 312);
    assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
}

// ---------------------------------------------------------------- consuming

/// basic.consume with a server-named tag (panics on failure).
pub async fn consume(ch: &Channel, q: &str, no_ack: bool) -> Consumer {
    let opts = BasicConsumeOptions {
        no_ack,
        ..Default::default()
    };
    within(ch.basic_consume(q, "", opts, FieldTable::default()))
        .await
        .expect("basic.consume")
}

/// The next delivery on `c` (panics after [`TIMEOUT`]).
pub async fn recv(c: &mut Consumer) -> Delivery {
    recv_one(c, TIMEOUT)
        .await
        .expect("no delivery within the timeout")
}

/// Asserts nothing arrives on `c` within `ms`.
pub async fn recv_none(c: &mut Consumer, ms: u64) {
    expect_no_message(c, Duration::from_millis(ms)).await
}

/// basic.get (panics on failure); `None` on get-empty.
pub async fn get(ch: &Channel, q: &str, no_ack: bool) -> Option<BasicGetMessage> {
    within(ch.basic_get(q, BasicGetOptions { no_ack }))
        .await
        .expect("basic.get")
}

/// The body of `d` as UTF-8.
pub fn sval(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

/// Gets every ready message from `q` (no-ack) and returns the bodies.
pub async fn drain(ch: &Channel, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let m = within(ch.basic_get(q, BasicGetOptions { no_ack: true })).await;
        match m.expect("basic.get") {
            Some(m) => out.push(String::from_utf8_lossy(&m.delivery.data).into_owned()),
            None => return out,
        }
    }
}

/// Gets every ready message from `q` (no-ack) and returns (body, redelivered) pairs.
pub async fn drain_redelivered(ch: &Channel, q: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Some(m) = get(ch, q, true).await {
        out.push((sval(&m.delivery), m.delivery.redelivered));
    }
    out
}

/// `(body, redelivered)` pairs as returned by [`drain_redelivered`].
pub fn owned(v: &[(&str, bool)]) -> Vec<(String, bool)> {
    v.iter().map(|(s, r)| (s.to_string(), *r)).collect()
}
