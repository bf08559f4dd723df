//! Small helpers for integration tests that drive the broker with the `lapin` client.
//!
//! Use with `mod common_lapin; use common_lapin::*;`. Every helper that waits has a
//! timeout, so a misbehaving broker makes a test fail instead of hang.
#![allow(dead_code)]

use futures_lite::StreamExt;
use lapin::{message::Delivery, Channel, Connection, ConnectionProperties, Consumer};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default upper bound for one broker round-trip in a test.
pub const TIMEOUT: Duration = Duration::from_secs(10);

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

/// The reply code and text of a broker-sent channel.close / connection.close, if `err` is one.
pub fn amqp_error(err: &lapin::Error) -> Option<(u16, String)> {
    match err {
        lapin::Error::ProtocolError(e) => Some((e.get_id(), e.get_message().as_str().to_string())),
        _ => None,
    }
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
