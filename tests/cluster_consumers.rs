//! Consumers of a quorum queue follow it to its next leader (issue 20),
//! as RabbitMQ's do: a consumer on another node than the leader keeps
//! consuming when the leader is killed, or drained, without a
//! basic.cancel; what it had not acked comes again, redelivered. Three
//! warren processes and one etcd; without an etcd binary the tests say so
//! and skip.

mod common_cluster;
mod common_durable;
mod common_etcd;
mod common_http;

use common_cluster::qq::{declare_qq, publish_tagged as publish, quorum_args, quorum_state};
use common_cluster::{three, until, Node};
use common_etcd::etcd;
use futures_lite::StreamExt;
use lapin::{options::*, types::FieldTable, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one consumer saw.
#[derive(Default)]
struct Seen {
    /// (body, redelivered) in order.
    got: Vec<(String, bool)>,
    /// The consumer's stream ended (a basic.cancel, or the connection).
    ended: bool,
}

/// Consumes `queue` on `uri` (prefetch 10) in the background, acking
/// every delivery except the first `hold` ones, into `seen`. Returns the
/// connection (closed when the test ends).
async fn consume(uri: &str, queue: &str, hold: usize, seen: Arc<Mutex<Seen>>) -> Connection {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(10, Default::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(queue, "", Default::default(), FieldTable::default())
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut held = 0;
        while let Some(d) = consumer.next().await {
            let Ok(d) = d else { break };
            let body = String::from_utf8_lossy(&d.data).into_owned();
            seen.lock().unwrap().got.push((body, d.redelivered));
            if held < hold {
                held += 1;
                continue;
            }
            if d.ack(Default::default()).await.is_err() {
                break;
            }
        }
        seen.lock().unwrap().ended = true;
    });
    conn
}

/// Three nodes with `qq` led by a, b and c in sync (None without etcd).
fn qq_on_three() -> Option<(common_etcd::EtcdProc, Vec<Node>, tokio::runtime::Runtime)> {
    let e = etcd()?;
    let nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    declare_qq(&rt, &nodes[0].uri());
    until("b and c in sync for qq", 20, || {
        quorum_state(&e.url).is_some_and(|(l, _, isr)| l == "warren@a" && isr.len() == 3)
    });
    Some((e, nodes, rt))
}

/// The common part: qq led by a with b and c in sync, a consumer on b
/// and one on c, each holding its first two deliveries unacked, 100
/// messages consumed. `move_leader` then takes the queue off a; after
/// it, 100 more are published through b. Both consumers must go on
/// without a cancel, get the new messages, and the held ones again,
/// redelivered.
fn consumers_follow(move_leader: impl FnOnce(&mut [Node], &str)) {
    let Some((e, mut nodes, rt)) = qq_on_three() else {
        return;
    };
    let on_b = Arc::new(Mutex::new(Seen::default()));
    let on_c = Arc::new(Mutex::new(Seen::default()));
    let _cb = rt.block_on(consume(&nodes[1].uri(), "qq", 2, on_b.clone()));
    let _cc = rt.block_on(consume(&nodes[2].uri(), "qq", 2, on_c.clone()));
    let before = rt.block_on(publish(&nodes[0].uri(), "qq", 100, "before-"));
    assert_eq!(before.len(), 100, "every publish confirmed");
    let bodies = |s: &Arc<Mutex<Seen>>| -> HashSet<String> {
        s.lock()
            .unwrap()
            .got
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    };
    until("the first 100 consumed", 20, || {
        bodies(&on_b).len() + bodies(&on_c).len() >= 100
    });
    let held: Vec<String> = [&on_b, &on_c]
        .iter()
        .flat_map(|s| {
            s.lock().unwrap().got[..2]
                .iter()
                .map(|(b, _)| b.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    let seen_before = [
        on_b.lock().unwrap().got.len(),
        on_c.lock().unwrap().got.len(),
    ];

    move_leader(&mut nodes, &e.url);
    until("a new leader", 30, || {
        quorum_state(&e.url).is_some_and(|(l, _, _)| l != "warren@a")
    });
    // Publishes during the change may be nacked: sent again until 100
    // are confirmed.
    let mut after = Vec::new();
    let t0 = Instant::now();
    while after.len() < 100 && t0.elapsed() < Duration::from_secs(30) {
        let got = rt.block_on(publish(
            &nodes[1].uri(),
            "qq",
            100,
            &format!("after{}-", after.len()),
        ));
        after.extend(got.into_iter().take(100 - after.len()));
    }
    assert_eq!(after.len(), 100, "publishing goes on after the change");
    let all = |_: ()| -> HashSet<String> { bodies(&on_b).union(&bodies(&on_c)).cloned().collect() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !after.iter().all(|b| all(()).contains(b)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = || {
        format!(
            "\n--- a:\n{}\n--- b:\n{}\n--- c:\n{}",
            nodes[0].log(),
            nodes[1].log(),
            nodes[2].log()
        )
    };
    let missing: Vec<&String> = after.iter().filter(|b| !all(()).contains(*b)).collect();
    assert!(
        missing.is_empty(),
        "{} published after the change never reached a consumer: {:?}{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        logs()
    );
    for (name, s, n) in [("b", &on_b, seen_before[0]), ("c", &on_c, seen_before[1])] {
        let s = s.lock().unwrap();
        assert!(!s.ended, "the consumer on {name} was cancelled{}", logs());
        let new = s.got[n..]
            .iter()
            .filter(|(b, _)| b.starts_with("after"))
            .count();
        assert!(
            new > 0,
            "the consumer on {name} got nothing after the change{}",
            logs()
        );
    }
    // The four held unacked come again, redelivered, to one or the other.
    let again: HashSet<String> = [&on_b, &on_c]
        .iter()
        .zip(seen_before)
        .flat_map(|(s, n)| {
            s.lock().unwrap().got[n..]
                .iter()
                .filter(|(_, r)| *r)
                .map(|(b, _)| b.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    for h in &held {
        assert!(
            again.contains(h),
            "held {h} not redelivered after the change{}",
            logs()
        );
    }
    eprintln!(
        "consumers followed qq: b got {}, c got {} after the change; {} held redelivered",
        on_b.lock().unwrap().got.len() - seen_before[0],
        on_c.lock().unwrap().got.len() - seen_before[1],
        held.len()
    );
}

#[test]
fn consumers_follow_a_quorum_queue_when_its_leader_is_killed() {
    consumers_follow(|nodes, _| nodes[0].kill());
}

#[test]
fn consumers_follow_a_quorum_queue_when_its_leader_is_drained() {
    consumers_follow(|nodes, _| {
        let api = &nodes[0].api;
        let a = api.put("/api/nodes/warren%40a/drain", "");
        assert!(a.status / 100 == 2, "drain: {a:?}");
    });
}

/// A consumer its client cancels while the queue has no leader stays
/// cancelled: the new leader gets no consumer for it (messages published
/// after the election stay ready, none is delivered to the old channel).
#[test]
fn a_consumer_cancelled_while_its_queue_has_no_leader_stays_cancelled() {
    let Some((e, mut nodes, rt)) = qq_on_three() else {
        return;
    };
    let (conn, ch, tag, delivered) = rt.block_on(async {
        let conn = Connection::connect(&nodes[1].uri(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let mut consumer = ch
            .basic_consume("qq", "c1", Default::default(), FieldTable::default())
            .await
            .unwrap();
        let delivered = Arc::new(Mutex::new(0usize));
        let d2 = delivered.clone();
        tokio::spawn(async move {
            while let Some(Ok(_)) = consumer.next().await {
                *d2.lock().unwrap() += 1;
            }
        });
        (conn, ch, "c1", delivered)
    });
    nodes[0].kill();
    // Before the election (the lease is 5 s): the client cancels.
    rt.block_on(ch.basic_cancel(tag, Default::default()))
        .expect("cancel-ok while the queue has no leader");
    until("a new leader", 30, || {
        quorum_state(&e.url).is_some_and(|(l, _, _)| l != "warren@a")
    });
    let mut after = Vec::new();
    let t0 = Instant::now();
    while after.len() < 50 && t0.elapsed() < Duration::from_secs(30) {
        after.extend(rt.block_on(publish(&nodes[1].uri(), "qq", 50 - after.len(), "x")));
    }
    assert_eq!(after.len(), 50);
    // Give a resurrected consumer time to show (the link looks every
    // 100 ms): the 50 stay ready on the new leader, with no consumer.
    std::thread::sleep(Duration::from_secs(2));
    let (messages, consumers) = rt.block_on(async {
        let c = Connection::connect(&nodes[2].uri(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = c.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare("qq", passive, quorum_args())
            .await
            .unwrap();
        (q.message_count(), q.consumer_count())
    });
    assert_eq!(
        *delivered.lock().unwrap(),
        0,
        "nothing delivered to the cancelled consumer"
    );
    assert_eq!((messages, consumers), (50, 0), "ready, and no consumer");
    drop(conn);
}
