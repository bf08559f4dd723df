//! Queues larger than their in-memory limit: the tail of a queue lives only in
//! its page file (`<data_dir>/paging/shard-<i>/`) and comes back in order —
//! with publishers and consumers running at once, across requeues, purge,
//! delete and a restart (persistent messages of durable queues are in the
//! message store as well; page files are scratch and wiped at boot).
//!
//! In-process only: the tests set the broker's in-memory limit and look into
//! its data directory.

mod common_durable;
mod common_lapin;

use common_durable::*;
use common_lapin::*;
use lapin::{options::*, BasicProperties};
use std::path::Path;
use warren::{BrokerHandle, Config};

/// A broker on `dir` whose queues keep at most `limit` messages in memory.
fn start_paging(dir: &Path, limit: usize) -> BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut config = Config::for_tests_in(dir.to_path_buf(), 2);
    config.queue_max_in_memory = limit;
    warren::start(config).expect("broker starts")
}

/// Page files currently on disk.
fn page_files(dir: &Path) -> usize {
    let Ok(shards) = std::fs::read_dir(dir.join("paging")) else {
        return 0;
    };
    shards
        .flatten()
        .flat_map(|s| std::fs::read_dir(s.path()).into_iter().flatten().flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == "page"))
        .count()
}

fn body(i: usize) -> Vec<u8> {
    // Varying sizes, so records straddle read blocks.
    let mut b = format!("m{i}-").into_bytes();
    b.resize(b.len() + (i * 37) % 3000, b'x');
    b
}

fn index_of(data: &[u8]) -> usize {
    let s = std::str::from_utf8(data).unwrap();
    s[1..s.find('-').unwrap()].parse().unwrap()
}

async fn publish_n(ch: &lapin::Channel, q: &str, range: std::ops::Range<usize>, persistent: bool) {
    let props = if persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let mut pending = Vec::new();
    for i in range {
        pending.push(
            ch.basic_publish("", q, Default::default(), &body(i), props.clone())
                .await
                .expect("publish"),
        );
        if pending.len() >= 500 {
            for c in pending.drain(..) {
                assert!(within(c).await.expect("confirm").is_ack());
            }
        }
    }
    for c in pending {
        assert!(within(c).await.expect("confirm").is_ack());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_is_paged_out_and_delivered_back_in_order() {
    deadline(90, async {
        let dir = DataDir::new("paging-order");
        let b = start_paging(&dir.0, 100);
        let c = connect(&uri(b.port())).await;
        let ch = confirm_channel(&c).await;
        let q = uniq("paged");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 0..5000, false).await;
        assert_eq!(message_count(&ch, &q).await, 5000);
        assert!(page_files(&dir.0) > 0, "the tail should be on disk");

        // A consumer drains while a publisher keeps adding: order holds.
        let cch = channel(&c).await;
        cch.basic_qos(50, BasicQosOptions::default()).await.unwrap();
        let mut cons = consume(&cch, &q, false).await;
        let pch = confirm_channel(&c).await;
        let q2 = q.clone();
        let publisher = tokio::spawn(async move { publish_n(&pch, &q2, 5000..8000, false).await });
        for want in 0..8000 {
            let d = recv(&mut cons).await;
            assert_eq!(index_of(&d.data), want);
            assert_eq!(d.data, body(want));
            assert!(!d.redelivered);
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        publisher.await.unwrap();
        recv_none(&mut cons, 200).await;
        assert_eq!(page_files(&dir.0), 0, "read-back chunks are deleted");
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_messages_come_before_paged_ones_and_purge_delete_clean_up() {
    deadline(90, async {
        let dir = DataDir::new("paging-requeue");
        let b = start_paging(&dir.0, 50);
        let c = connect(&uri(b.port())).await;
        let ch = confirm_channel(&c).await;
        let q = uniq("paged-rq");
        declare(&ch, &q).await;
        publish_n(&ch, &q, 0..1000, false).await;
        // Take 10 unacked on another channel, then close it: they are requeued.
        let gch = channel(&c).await;
        for want in 0..10 {
            let m = get(&gch, &q, false).await.expect("a message");
            assert_eq!(index_of(&m.delivery.data), want);
        }
        gch.close(200, "bye").await.unwrap();
        for want in 0..1000 {
            let m = get(&ch, &q, true).await.expect("a message");
            assert_eq!(index_of(&m.delivery.data), want);
            assert_eq!(m.delivery.redelivered, want < 10);
            if want == 499 {
                break;
            }
        }
        assert_eq!(message_count(&ch, &q).await, 500);
        let purged = ch
            .queue_purge(&q, QueuePurgeOptions::default())
            .await
            .unwrap();
        assert_eq!(purged, 500);
        assert_eq!(page_files(&dir.0), 0, "purge removes the page file");

        publish_n(&ch, &q, 0..1000, false).await;
        assert!(page_files(&dir.0) > 0);
        let deleted = ch
            .queue_delete(&q, QueueDeleteOptions::default())
            .await
            .unwrap();
        assert_eq!(deleted, 1000);
        assert_eq!(page_files(&dir.0), 0, "delete removes the page file");
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_persistent_messages_survive_restart_and_their_acks_count() {
    deadline(120, async {
        let dir = DataDir::new("paging-durable");
        let q = "paged-durable";
        {
            let b = start_paging(&dir.0, 100);
            let c = connect(&uri(b.port())).await;
            let ch = confirm_channel(&c).await;
            let opts = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            ch.queue_declare(q, opts, Default::default()).await.unwrap();
            publish_n(&ch, q, 0..3000, true).await;
            assert!(page_files(&dir.0) > 0);
            // Ack 1000: most of them were paged out and read back, so their
            // store acks use locations kept in the page file.
            for want in 0..1000 {
                let m = get(&ch, q, false).await.expect("a message");
                assert_eq!(index_of(&m.delivery.data), want);
                m.delivery.ack(BasicAckOptions::default()).await.unwrap();
            }
            // Let the acks reach the store before stopping.
            assert_eq!(message_count(&ch, q).await, 2000);
            c.close(200, "bye").await.unwrap();
            b.shutdown();
        }
        // The page files of the last run are wiped at boot…
        std::fs::create_dir_all(dir.0.join("paging/shard-0")).unwrap();
        std::fs::write(dir.0.join("paging/shard-0/stale.0.page"), b"junk").unwrap();
        let b = start_paging(&dir.0, 100);
        let c = connect(&uri(b.port())).await;
        let ch = channel(&c).await;
        let opts = QueueDeclareOptions {
            durable: true,
            passive: true,
            ..Default::default()
        };
        let ok = ch.queue_declare(q, opts, Default::default()).await.unwrap();
        assert_eq!(ok.message_count(), 2000);
        assert!(!dir.0.join("paging/shard-0/stale.0.page").exists());
        // …and the recovered queue pages its tail out again.
        assert!(page_files(&dir.0) > 0);
        for want in 1000..3000 {
            let m = get(&ch, q, true).await.expect("a message");
            assert_eq!(index_of(&m.delivery.data), want);
            assert_eq!(m.delivery.data, body(want));
            assert!(m.delivery.redelivered);
        }
        assert!(get(&ch, q, true).await.is_none());
        b.shutdown();
    })
    .await;
}
