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
    loop {
        // basic.get or a passive declare would reset the countdown; a
        // mandatory publish does not
        let ch = confirm_channel(conn).await;
        let ret = publish_h(&ch, "", q, "probe", None).await;
        let _ = ch.close(200, "ok").await;
        if ret.is_some() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "queue {q} not deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        let ch = channel(&conn).await;
        let q = uniq("expires-alive");
        let args = [("x-expires", int(500))];
        declare_args(&ch, &q, &args).await;
        // redeclared every 200 ms for 1.2 s
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            declare_args(&ch, &q, &args).await;
        }
        // basic.get every 200 ms
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(get(&ch, &q, true).await.is_none());
        }
        // a consumer for 1.2 s
        let c = channel(&conn).await;
        let cons = consume(&c, &q, true).await;
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
