//! Quorum queues replicated across three nodes (issue 20): a publisher's
//! confirm means every in-sync member has the message on disk, so when
//! the leader is killed (SIGKILL) an in-sync follower is elected through
//! etcd and serves every confirmed message, redelivered. Three warren
//! processes and one etcd; without an etcd binary the tests say so and
//! skip.

mod common_cluster;
mod common_durable;
mod common_etcd;
mod common_http;

use common_cluster::Node;
use common_etcd::etcd;
use futures_lite::StreamExt;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, Connection, ConnectionProperties,
};
use std::collections::HashSet;
use std::time::Duration;

fn three(etcd_url: &str) -> Vec<Node> {
    let u = etcd_url.to_string();
    let starts: Vec<_> = ["warren@a", "warren@b", "warren@c"]
        .into_iter()
        .map(|n| {
            let u = u.clone();
            std::thread::spawn(move || Node::start(n, &u))
        })
        .collect();
    starts.into_iter().map(|t| t.join().unwrap()).collect()
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// Publishes `n` messages ("0", "1", …) with confirms; returns those acked.
async fn publish_confirmed(uri: &str, queue: &str, n: usize) -> Vec<String> {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..n {
        let body = i.to_string();
        let c = ch
            .basic_publish(
                "",
                queue,
                Default::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        pending.push((body, c));
    }
    let mut acked = Vec::new();
    for (body, c) in pending {
        let c = tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("a confirm within 30 s")
            .unwrap();
        if c.is_ack() {
            acked.push(body);
        }
    }
    let _ = conn.close(200, "").await;
    acked
}

/// Drains `queue` on `uri` until it stays empty for a second: (bodies,
/// every delivery redelivered?).
async fn drain(uri: &str, queue: &str) -> (Vec<String>, bool) {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(1000, Default::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(queue, "drain", Default::default(), FieldTable::default())
        .await
        .unwrap();
    let mut bodies = Vec::new();
    let mut all_redelivered = true;
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(1), consumer.next()).await {
        let d = d.unwrap();
        all_redelivered &= d.redelivered;
        bodies.push(String::from_utf8_lossy(&d.data).into_owned());
        d.ack(Default::default()).await.unwrap();
    }
    let _ = conn.close(200, "").await;
    (bodies, all_redelivered)
}

/// The node where `queue` is local (a passive declare finds it).
async fn leader_of(nodes: &[&Node], queue: &str) -> Option<usize> {
    for (i, n) in nodes.iter().enumerate() {
        let Ok(conn) = Connection::connect(&n.uri(), ConnectionProperties::default()).await else {
            continue;
        };
        let ch = conn.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..Default::default()
        };
        let found = ch
            .queue_declare(queue, passive, quorum_args())
            .await
            .is_ok();
        let _ = conn.close(200, "").await;
        if found {
            return Some(i);
        }
    }
    None
}

#[test]
fn confirmed_messages_survive_the_leader_being_killed() {
    let Some(e) = etcd() else { return };
    let mut nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    const N: usize = 3000;
    let acked = rt.block_on(async {
        let conn = Connection::connect(&nodes[0].uri(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("qq", durable, quorum_args())
            .await
            .unwrap();
        let _ = conn.close(200, "").await;
        publish_confirmed(&nodes[0].uri(), "qq", N).await
    });
    assert_eq!(acked.len(), N, "every publish confirmed");
    nodes[0].kill();
    let t0 = std::time::Instant::now();
    let mut leader = None;
    while leader.is_none() && t0.elapsed() < Duration::from_secs(20) {
        leader = rt.block_on(leader_of(&[&nodes[1], &nodes[2]], "qq"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        leader.is_some(),
        "no follower leads qq after 20 s\n--- a:\n{}\n--- b:\n{}\n--- c:\n{}",
        nodes[0].log(),
        nodes[1].log(),
        nodes[2].log()
    );
    let failover = t0.elapsed();
    let leader = &nodes[1 + leader.unwrap()];
    let (got, redelivered) = rt.block_on(drain(&leader.uri(), "qq"));
    let got_set: HashSet<&String> = got.iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|b| !got_set.contains(b)).collect();
    eprintln!(
        "failover in {:?}; {} confirmed, {} consumed from {}, {} missing",
        failover,
        acked.len(),
        got.len(),
        leader.name,
        missing.len()
    );
    if std::env::var("WARREN_TEST_SHOW").is_ok() {
        eprintln!("--- a:\n{}", nodes[0].log());
    }
    assert!(
        missing.is_empty(),
        "confirmed messages lost: {:?}…",
        &missing[..missing.len().min(10)]
    );
    assert!(redelivered, "messages after a failover come redelivered");
    assert_eq!(got.len(), got_set.len(), "no message twice");
}
