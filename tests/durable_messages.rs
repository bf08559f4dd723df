//! Persistent messages survive restarts: a persistent message (delivery mode 2)
//! in a durable queue that the broker confirmed is there after a graceful
//! restart and after SIGKILL — also when the broker is killed at random
//! moments while publishing, twenty times over — while transient messages and
//! non-durable queues are gone, acked messages do not come back, and a damaged
//! segment file is recovered up to the damage.
//!
//! These tests restart brokers on the same data directory, so they run
//! in-process or against the `warren` binary, never against an external broker.

mod common_durable;
mod common_lapin;

use common_durable::*;
use common_lapin::*;
use lapin::{options::*, publisher_confirm::Confirmation, BasicProperties, Channel, Connection};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn declare_durable(ch: &Channel, q: &str) {
    let opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    within(ch.queue_declare(q, opts, Default::default()))
        .await
        .expect("queue.declare");
}

/// Publishes and waits for the confirm.
async fn publish_confirmed(ch: &Channel, q: &str, body: &[u8], props: BasicProperties) {
    let c = within(ch.basic_publish("", q, Default::default(), body, props))
        .await
        .expect("basic.publish");
    assert_eq!(within(c).await.expect("confirm"), Confirmation::Ack(None));
}

/// Every message of `q` (basic.get, acked): body and redelivered flag.
async fn drain_all(ch: &Channel, q: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Some(m) = within(ch.basic_get(q, BasicGetOptions::default()))
        .await
        .expect("basic.get")
    {
        out.push((
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
            m.delivery.redelivered,
        ));
        within(m.delivery.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    out
}

async fn passive_exists(ch: &Channel, q: &str) -> bool {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    within(ch.queue_declare(q, opts, Default::default()))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_persistent_messages_of_durable_queues_only() {
    deadline(60, async {
        let dir = DataDir::new("graceful");
        let b = start_in(&dir.0, 2);
        let c = connect(&uri(b.port())).await;
        let ch = confirm_channel(&c).await;
        declare_durable(&ch, "dq").await;
        declare(&ch, "tq").await; // transient queue
        for i in 0..100 {
            publish_confirmed(&ch, "dq", format!("p{i}").as_bytes(), persistent()).await;
        }
        for i in 0..10 {
            // Transient messages in a durable queue do not survive.
            let props = BasicProperties::default().with_delivery_mode(1);
            publish_confirmed(&ch, "dq", format!("t{i}").as_bytes(), props).await;
            publish_confirmed(&ch, "tq", b"x", persistent()).await;
        }
        // Ack the first 30 persistent ones: they must not come back.
        for i in 0..30 {
            let m = within(ch.basic_get("dq", BasicGetOptions::default()))
                .await
                .unwrap()
                .expect("a message");
            assert_eq!(m.delivery.data, format!("p{i}").as_bytes());
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        // Reject one without requeue and nack one with requeue.
        let m = ch
            .basic_get("dq", BasicGetOptions::default())
            .await
            .unwrap()
            .unwrap();
        m.delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        let m = ch
            .basic_get("dq", BasicGetOptions::default())
            .await
            .unwrap()
            .unwrap();
        m.delivery
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .unwrap();
        drop(ch);
        let _ = c.close(200, "bye").await;
        b.shutdown();

        let b = start_in(&dir.0, 2);
        let c = connect(&uri(b.port())).await;
        let ch = channel(&c).await;
        assert!(!passive_exists(&ch, "tq").await, "transient queue is gone");
        let ch = channel(&c).await;
        let got = drain_all(&ch, "dq").await;
        let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
        let want: Vec<String> = (31..100).map(|i| format!("p{i}")).collect();
        assert_eq!(
            bodies, want,
            "p30 was rejected, p0..p29 acked, t* transient"
        );
        assert!(
            got.iter().all(|(_, r)| *r),
            "recovered messages are redelivered"
        );
        b.shutdown();
        // Drained and acked: nothing comes back after another restart.
        let b = start_in(&dir.0, 2);
        let c = connect(&uri(b.port())).await;
        let ch = channel(&c).await;
        assert_eq!(message_count(&ch, "dq").await, 0);
        b.shutdown();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_and_delete_are_remembered() {
    deadline(60, async {
        let dir = DataDir::new("purge");
        let b = start_in(&dir.0, 1);
        let c = connect(&uri(b.port())).await;
        let ch = confirm_channel(&c).await;
        declare_durable(&ch, "purged").await;
        declare_durable(&ch, "deleted").await;
        for q in ["purged", "deleted"] {
            for i in 0..20 {
                publish_confirmed(&ch, q, format!("{i}").as_bytes(), persistent()).await;
            }
        }
        ch.queue_purge("purged", Default::default()).await.unwrap();
        publish_confirmed(&ch, "purged", b"after-purge", persistent()).await;
        ch.queue_delete("deleted", Default::default())
            .await
            .unwrap();
        b.shutdown();
        let b = start_in(&dir.0, 1);
        let c = connect(&uri(b.port())).await;
        let ch = channel(&c).await;
        let got = drain_all(&ch, "purged").await;
        assert_eq!(got, vec![("after-purge".to_string(), true)]);
        declare_durable(&ch, "deleted").await;
        assert_eq!(message_count(&ch, "deleted").await, 0);
        b.shutdown();
    })
    .await
}

// ---------------------------------------------------------------- the binary

/// Connects (retrying while the broker recovers).
async fn connect_retry(port: u16) -> Connection {
    let t0 = Instant::now();
    loop {
        match Connection::connect(&uri(port), Default::default()).await {
            Ok(c) => return c,
            Err(e) if t0.elapsed() > Duration::from_secs(20) => panic!("connect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_every_confirmed_message() {
    deadline(90, async {
        let dir = DataDir::new("kill");
        let p = Proc::start(&dir.0);
        let c = connect_retry(p.port).await;
        let ch = confirm_channel(&c).await;
        declare_durable(&ch, "dq").await;
        // 2,000 publishes without waiting for each confirm, then all confirms.
        let mut pending = Vec::new();
        for i in 0..2000u32 {
            let c = ch
                .basic_publish("", "dq", Default::default(), &i.to_be_bytes(), persistent())
                .await
                .unwrap();
            pending.push(c);
        }
        for c in pending {
            assert_eq!(within(c).await.unwrap(), Confirmation::Ack(None));
        }
        p.kill9();
        let p = Proc::start(&dir.0);
        let c = connect_retry(p.port).await;
        let ch = channel(&c).await;
        assert_eq!(message_count(&ch, "dq").await, 2000);
    })
    .await
}

/// Publishes with confirms while the broker is SIGKILLed at random moments,
/// 20 times; at the end every confirmed message is there, and a message seen
/// twice is marked redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_loses_no_confirmed_message() {
    deadline(240, async {
        let dir = DataDir::new("crashloop");
        let mut confirmed: BTreeSet<u32> = BTreeSet::new();
        let mut next: u32 = 0;
        let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ std::process::id() as u64;
        for round in 0..20 {
            let p = Proc::start(&dir.0);
            let c = connect_retry(p.port).await;
            let ch = confirm_channel(&c).await;
            declare_durable(&ch, "crash").await;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let kill_after = Duration::from_millis(20 + rng % 200);
            let t0 = Instant::now();
            let mut window: Vec<(u32, lapin::publisher_confirm::PublisherConfirm)> = Vec::new();
            let mut killer = Some(p);
            while let Some(p) = killer.take() {
                if t0.elapsed() >= kill_after {
                    p.kill9();
                    break;
                }
                killer = Some(p);
                let id = next;
                next += 1;
                match ch
                    .basic_publish(
                        "",
                        "crash",
                        Default::default(),
                        &id.to_be_bytes(),
                        persistent(),
                    )
                    .await
                {
                    Ok(pc) => window.push((id, pc)),
                    Err(_) => break,
                }
                if window.len() >= 50 {
                    for (id, pc) in window.drain(..) {
                        if let Ok(Ok(Confirmation::Ack(_))) =
                            tokio::time::timeout(Duration::from_secs(5), pc).await
                        {
                            confirmed.insert(id);
                        }
                    }
                }
            }
            // Confirms that arrived before the kill count; the others may or
            // may not have been stored.
            for (id, pc) in window.drain(..) {
                if let Ok(Ok(Confirmation::Ack(_))) =
                    tokio::time::timeout(Duration::from_millis(200), pc).await
                {
                    confirmed.insert(id);
                }
            }
            eprintln!("round {round}: {} confirmed so far", confirmed.len());
        }
        let p = Proc::start(&dir.0);
        let c = connect_retry(p.port).await;
        let ch = channel(&c).await;
        let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
        while let Some(m) = within(ch.basic_get("crash", BasicGetOptions::default()))
            .await
            .expect("basic.get")
        {
            let id = u32::from_be_bytes(m.delivery.data[..4].try_into().unwrap());
            let n = seen.entry(id).or_default();
            *n += 1;
            assert!(
                *n == 1 || m.delivery.redelivered,
                "message {id} seen twice without redelivered"
            );
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        let missing: Vec<&u32> = confirmed
            .iter()
            .filter(|id| !seen.contains_key(id))
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} confirmed messages lost, e.g. {:?}",
            missing.len(),
            confirmed.len(),
            &missing[..missing.len().min(10)]
        );
        assert!(
            confirmed.len() > 100,
            "the loop confirmed too little to mean much"
        );
        drop(p);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_recover_up_to_the_damage() {
    deadline(60, async {
        for damage in ["truncate", "bitflip"] {
            let dir = DataDir::new(damage);
            let b = start_in(&dir.0, 1);
            let c = connect(&uri(b.port())).await;
            let ch = confirm_channel(&c).await;
            declare_durable(&ch, "dq").await;
            for i in 0..100u32 {
                publish_confirmed(&ch, "dq", &[i as u8; 64], persistent()).await;
            }
            b.shutdown();
            let segs = dir.segments();
            assert_eq!(segs.len(), 1, "{segs:?}");
            let mut bytes = std::fs::read(&segs[0]).unwrap();
            let len = bytes.len();
            match damage {
                // Cut the last record in half: 99 survive.
                "truncate" => bytes.truncate(len - 40),
                // Flip a bit in the body of a record in the middle.
                _ => bytes[len / 2] ^= 0x10,
            }
            std::fs::write(&segs[0], &bytes).unwrap();
            let b = start_in(&dir.0, 1);
            let c = connect(&uri(b.port())).await;
            let ch = channel(&c).await;
            let n = message_count(&ch, "dq").await;
            let got = drain_all(&ch, "dq").await;
            assert_eq!(got.len() as u32, n);
            match damage {
                "truncate" => assert_eq!(n, 99),
                _ => assert!((40..=60).contains(&n), "kept {n} messages before the flip"),
            }
            // The messages kept are the first ones, in order.
            for (i, (body, _)) in got.iter().enumerate() {
                assert_eq!(body.as_bytes(), &[i as u8; 64][..]);
            }
            b.shutdown();
        }
    })
    .await
}

/// Compaction: with small segments, acking most messages leaves segments with
/// a few live ones; the broker re-appends those and the old files go. The
/// moved messages are intact after a restart, and acks of moved messages
/// (which use their new locations) are remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_frees_mostly_dead_segments_and_keeps_live_messages() {
    deadline(90, async {
        let dir = DataDir::new("compact");
        let start = || {
            let _ = env_logger::builder().is_test(true).try_init();
            let mut config = warren::Config::for_tests_in(dir.0.clone(), 1);
            config.segment_size = 64 << 10;
            warren::start(config).expect("broker starts")
        };
        let b = start();
        let c = connect(&uri(b.port())).await;
        let ch = confirm_channel(&c).await;
        declare_durable(&ch, "churn").await;
        declare_durable(&ch, "keep").await;
        let pad = "x".repeat(1000);
        for i in 0..2000 {
            let (q, body) = if i % 20 == 0 {
                ("keep", format!("k{}-{pad}", i / 20))
            } else {
                ("churn", format!("c{i}-{pad}"))
            };
            publish_confirmed(&ch, q, body.as_bytes(), persistent()).await;
        }
        let before = dir.segments().len();
        assert!(before >= 20, "expected many segments, got {before}");
        assert_eq!(drain_all(&ch, "churn").await.len(), 1900);
        // Every old segment now holds 1 live message in 20: compaction moves
        // them (one segment per 200 ms tick) and the files go.
        let what = format!("segments compacted to <= 4 of {before}");
        eventually_within(Duration::from_secs(30), &what, async || {
            dir.segments().len() <= 4
        })
        .await;
        // Ack the first 10 kept messages (at their new locations).
        for i in 0..10 {
            let m = within(ch.basic_get("keep", BasicGetOptions::default()))
                .await
                .unwrap()
                .expect("a message");
            assert!(m.delivery.data.starts_with(format!("k{i}-").as_bytes()));
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        assert_eq!(message_count(&ch, "keep").await, 90);
        c.close(200, "bye").await.unwrap();
        b.shutdown();

        let b = start();
        let c = connect(&uri(b.port())).await;
        let ch = channel(&c).await;
        let got = drain_all(&ch, "keep").await;
        let want: Vec<(String, bool)> = (10..100).map(|i| (format!("k{i}-{pad}"), true)).collect();
        assert_eq!(got, want);
        b.shutdown();
    })
    .await;
}

/// A persistent message keeps its expiry across a restart: one whose TTL ran
/// out while the broker was down is gone right after boot (not a whole TTL
/// later), one with time left is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ttl_keeps_counting_across_a_restart() {
    deadline(60, async {
        let dir = DataDir::new("ttl-restart");
        let b = start_in(&dir.0, 2);
        let c = connect(&uri(b.port())).await;
        let ch = confirm_channel(&c).await;
        let opts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut args = lapin::types::FieldTable::default();
        args.insert(
            "x-message-ttl".into(),
            lapin::types::AMQPValue::LongInt(1500),
        );
        within(ch.queue_declare("ttl-short", opts, args))
            .await
            .unwrap();
        declare_durable(&ch, "ttl-long").await;
        publish_confirmed(&ch, "ttl-short", b"short", persistent()).await;
        // after the confirm: the broker received "short", and started its TTL,
        // before this
        let confirmed = Instant::now();
        let long = persistent().with_expiration("600000".into());
        publish_confirmed(&ch, "ttl-long", b"long", long).await;
        c.close(200, "bye").await.unwrap();
        b.shutdown();
        // Down past the short TTL. A fixed wait, not a poll: it waits for the
        // clock (the broker is down), and a longer wait is just as valid.
        tokio::time::sleep(Duration::from_millis(1600).saturating_sub(confirmed.elapsed())).await;

        // before the restart: a TTL counted from boot would end >= 1.5 s after this
        let restarting = Instant::now();
        let b = start_in(&dir.0, 2);
        let c = connect(&uri(b.port())).await;
        let ch = channel(&c).await;
        // Expired at the first look (the 200 ms tick), sooner than the 1.5 s a
        // TTL counted from boot would take.
        eventually(
            "the expired message dropped after the restart",
            async || message_count(&ch, "ttl-short").await == 0,
        )
        .await;
        let gone = restarting.elapsed();
        assert!(
            gone < Duration::from_millis(1500),
            "the expired message outlived the restart by {gone:?}: its TTL restarted at boot"
        );
        let got = drain_all(&ch, "ttl-long").await;
        assert_eq!(got, vec![("long".to_string(), true)]);
        b.shutdown();
    })
    .await;
}
