//! Queue TTL (`x-expires`): a queue unused for the timeout is deleted with its
//! bindings; consumers, basic.get and redeclaration keep it alive. And the
//! broker-sent basic.cancel to consumers of a deleted queue.

mod common_ext;
mod common_lapin;
mod util;
use common_ext::*;
use common_lapin::*;
use util::*;

use lapin::{options::*, types::FieldTable, ExchangeKind};
use std::time::{Duration, Instant};

async fn exists(conn: &lapin::Connection, q: &str) -> bool {
    let ch = channel(conn).await;
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let r = within(ch.queue_declare(q, opts, FieldTable::default())).await;
    if r.is_ok() {
        let _ = ch.close(200, "ok").await;
    }
    r.is_ok()
}

/// Polls until `q` is gone; returns how long it took.
async fn wait_gone(conn: &lapin::Connection, q: &str) -> Duration {
    let start = Instant::now();
    eventually(&format!("queue {q} deleted"), async || {
        // basic.get or a passive declare would reset the countdown; a
        // mandatory publish does not
        let ch = confirm_channel(conn).await;
        let ret = publish_h(&ch, "", q, "probe", None).await;
        let _ = ch.close(200, "ok").await;
        ret.is_some()
    })
    .await;
    start.elapsed()
}

/// One use of a queue with `x-expires` = `ttl` that restarts its countdown
/// (`op`: a redeclare, a basic.get, a basic.consume). Returns what `op`
/// returned, and whether the broker provably ran `op` less than `ttl` after
/// the previous use (`prev`, taken before that use was sent), i.e. while the
/// queue must still have existed. On a machine loaded enough to stall the
/// test for longer, the queue may rightly have expired in between.
async fn timed_use<T>(
    prev: &mut Instant,
    ttl: Duration,
    op: impl std::future::Future<Output = T>,
) -> (T, bool) {
    let sent = Instant::now();
    let out = op.await;
    let in_time = prev.elapsed() < ttl;
    *prev = sent;
    (out, in_time)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_queue_is_deleted_with_its_bindings() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (q, x) = (uniq("expires"), uniq("expires-x"));
        within(ch.exchange_declare(
            &x,
            ExchangeKind::Direct,
            Default::default(),
            Default::default(),
        ))
        .await
        .unwrap();
        declare_args(&ch, &q, &[("x-expires", int(400))]).await;
        bind(&ch, &q, &x, "k").await;
        let took = wait_gone(&conn, &q).await;
        assert!(took >= Duration::from_millis(250), "deleted after {took:?}");
        assert!(!exists(&conn, &q).await);
        // the binding went with it: a queue of the same name is not bound
        declare(&ch, &q).await;
        unroutable(&ch, &x, "k", "nobody").await;
        delete(&ch, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_basic_get_and_redeclare_keep_it_alive() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let mut ch = channel(&conn).await;
        let q = uniq("expires-alive");
        let ttl = Duration::from_millis(500);
        let args = [("x-expires", int(500))];
        // The sleeps below are fixed waits, not polls: this test checks that the
        // queue is NOT deleted while it is used every 200 ms. Each "still there"
        // is only asserted when the previous use was provably less than the
        // 500 ms x-expires earlier (see `timed_use`); after a longer stall of the
        // test process the queue is declared again and the test goes on.
        let mut prev = Instant::now();
        declare_args(&ch, &q, &args).await;
        // redeclared every 200 ms for 1.2 s
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            timed_use(&mut prev, ttl, declare_args(&ch, &q, &args)).await;
        }
        // basic.get every 200 ms
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let get = within(ch.basic_get(&q, BasicGetOptions { no_ack: true }));
            let (r, in_time) = timed_use(&mut prev, ttl, get).await;
            if in_time {
                let r =
                    r.unwrap_or_else(|e| panic!("basic.get on a queue used < x-expires ago: {e}"));
                assert!(r.is_none());
            } else if r.is_err() {
                ch = channel(&conn).await;
                timed_use(&mut prev, ttl, declare_args(&ch, &q, &args)).await;
            }
        }
        // a consumer for 1.2 s
        let mut c = channel(&conn).await;
        let opts = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let consume = within(c.basic_consume(&q, "", opts, FieldTable::default()));
        let cons = match timed_use(&mut prev, ttl, consume).await {
            (Ok(cons), _) => cons,
            (Err(e), true) => panic!("basic.consume on a queue used < x-expires ago: {e}"),
            (Err(_), false) => {
                declare_args(&ch, &q, &args).await;
                c = channel(&conn).await;
                within(c.basic_consume(&q, "", opts, FieldTable::default()))
                    .await
                    .expect("basic.consume")
            }
        };
        // (a consumer keeps the queue however long this takes)
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(exists(&conn, &q).await);
        within(c.basic_cancel(cons.tag().as_str(), Default::default()))
            .await
            .unwrap();
        // unused from now on
        wait_gone(&conn, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_of_a_deleted_queue_get_basic_cancel() {
    deadline(30, async {
        let b = start_broker(2);
        // the consumer on shard 1, the queue and its deletion on shard 0
        let c0 = connect(&b.shard_uri(0)).await;
        let c1 = connect(&b.shard_uri(1)).await;
        let ch0 = channel(&c0).await;
        let q = uniq("cancel-notify");
        declare(&ch0, &q).await;
        let ch1 = channel(&c1).await;
        let mut cons = consume(&ch1, &q, false).await;
        within(ch0.queue_delete(&q, Default::default()))
            .await
            .unwrap();
        // lapin ends the consumer stream on a broker-sent basic.cancel
        assert!(recv_one(&mut cons, TIMEOUT).await.is_none());
        assert_connection_usable(&c1).await;
    })
    .await;
}
