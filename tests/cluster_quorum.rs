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

use common_cluster::qq::{
    declare_qq, publish_confirmed, publish_tagged, quorum_args, quorum_state,
};
use common_cluster::{three, Node};
use common_etcd::etcd;
use futures_lite::StreamExt;
use lapin::{options::*, types::FieldTable, BasicProperties, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::time::Duration;

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
    declare_qq(&rt, &nodes[0].uri());
    let acked = rt.block_on(publish_confirmed(&nodes[0].uri(), "qq", N));
    assert_eq!(acked.len(), N, "every publish confirmed");
    nodes[0].kill();
    let t0 = std::time::Instant::now();
    // Failover: until a follower is elected (in etcd) and serves the
    // queue. (Asking b or c alone would also time the wait of a request
    // sent to a's node before the election.)
    let mut leader = None;
    while leader.is_none() && t0.elapsed() < Duration::from_secs(20) {
        let elected =
            quorum_state(&e.url).and_then(|(l, _, _)| nodes[1..].iter().position(|n| n.name == l));
        if let Some(i) = elected {
            leader = rt.block_on(leader_of(&[&nodes[1 + i]], "qq")).map(|_| i);
        }
        std::thread::sleep(Duration::from_millis(20));
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

fn signal(n: &Node, sig: i32) {
    let pid = n.child.as_ref().expect("running").id() as i32;
    unsafe { libc::kill(pid, sig) };
}

#[test]
fn a_stuck_follower_leaves_the_in_sync_set_and_comes_back() {
    let Some(e) = etcd() else { return };
    let nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    declare_qq(&rt, &nodes[0].uri());
    let all = vec!["warren@a".to_string(), "warren@b".into(), "warren@c".into()];
    common_cluster::until("the queue has its three members in sync", 10, || {
        quorum_state(&e.url).is_some_and(|s| s.2 == all)
    });
    signal(&nodes[2], libc::SIGSTOP);
    // Publishing goes on: c leaves the in-sync set after its deadline,
    // and the confirms come.
    let t0 = std::time::Instant::now();
    let acked = rt.block_on(publish_confirmed(&nodes[0].uri(), "qq", 500));
    eprintln!("500 confirmed in {:?} with c stopped", t0.elapsed());
    assert_eq!(acked.len(), 500);
    let s = quorum_state(&e.url).unwrap();
    assert_eq!(
        s.2,
        vec!["warren@a".to_string(), "warren@b".into()],
        "{s:?}"
    );
    signal(&nodes[2], libc::SIGCONT);
    common_cluster::until("c catches up and is in sync again", 20, || {
        quorum_state(&e.url).is_some_and(|s| s.2 == all)
    });
    // c holds everything: with a and b gone... only a kill of both would
    // show it; here, one more confirmed batch needs all three.
    let acked = rt.block_on(publish_confirmed(&nodes[0].uri(), "qq", 100));
    assert_eq!(acked.len(), 100);
}

#[test]
fn a_killed_leader_comes_back_as_a_follower_and_catches_up() {
    let Some(e) = etcd() else { return };
    let mut nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    declare_qq(&rt, &nodes[0].uri());
    let acked = rt.block_on(publish_confirmed(&nodes[0].uri(), "qq", 1000));
    assert_eq!(acked.len(), 1000);
    nodes[0].kill();
    common_cluster::until("another node leads", 20, || {
        quorum_state(&e.url).is_some_and(|s| s.0 != "warren@a" && s.1 == 2)
    });
    let (leader, _, _) = quorum_state(&e.url).unwrap();
    let li = if leader == "warren@b" { 1 } else { 2 };
    // More messages while a is down.
    let more = rt.block_on(publish_tagged(&nodes[li].uri(), "qq", 500, "more-"));
    assert_eq!(more.len(), 500);
    nodes[0].restart();
    common_cluster::until("a is back in the in-sync set", 20, || {
        quorum_state(&e.url).is_some_and(|s| s.2.contains(&"warren@a".to_string()))
    });
    let s = quorum_state(&e.url).unwrap();
    assert_eq!(s.0, leader, "the lead stays where it went");
    // Kill the new leader too: a (caught up) or the third node takes
    // over, and nothing confirmed is missing.
    nodes[li].kill();
    let mut found = None;
    let t0 = std::time::Instant::now();
    while found.is_none() && t0.elapsed() < Duration::from_secs(20) {
        let others: Vec<&Node> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != li)
            .map(|(_, n)| n)
            .collect();
        found = rt
            .block_on(leader_of(&others, "qq"))
            .map(|i| others[i].uri());
        std::thread::sleep(Duration::from_millis(100));
    }
    let uri = found.expect("a third leader");
    let (got, _) = rt.block_on(drain(&uri, "qq"));
    eprintln!(
        "{} confirmed, {} consumed after two failovers",
        acked.len() + more.len(),
        got.len()
    );
    let got: HashSet<String> = got.into_iter().collect();
    let missing = acked
        .iter()
        .chain(more.iter())
        .filter(|b| !got.contains(*b))
        .count();
    assert_eq!(missing, 0, "confirmed messages missing after two failovers");
}

#[test]
fn a_paused_leader_is_replaced_confirms_nothing_more_and_rejoins() {
    let Some(e) = etcd() else { return };
    let nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    declare_qq(&rt, &nodes[0].uri());
    let first = rt.block_on(publish_tagged(&nodes[0].uri(), "qq", 500, "first-"));
    assert_eq!(first.len(), 500);
    // A connection to a, open before the pause, publishes after it.
    let (conn, ch) = rt.block_on(async {
        let conn = Connection::connect(&nodes[0].uri(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        (conn, ch)
    });
    signal(&nodes[0], libc::SIGSTOP);
    common_cluster::until("another node leads", 20, || {
        quorum_state(&e.url).is_some_and(|s| s.0 != "warren@a" && s.1 == 2)
    });
    let (leader, _, _) = quorum_state(&e.url).unwrap();
    let li = if leader == "warren@b" { 1 } else { 2 };
    let second = rt.block_on(publish_tagged(&nodes[li].uri(), "qq", 300, "second-"));
    assert_eq!(second.len(), 300);
    signal(&nodes[0], libc::SIGCONT);
    // The old leader confirms nothing on its own any more: a publish on
    // it is either not confirmed (nacked) or confirmed because the new
    // leader has it (a forwards it there once it knows), never acked and
    // lost.
    let (stale_acked, answered) = rt.block_on(async {
        let (mut acked, mut answered) = (Vec::new(), 0);
        for i in 0..50 {
            let body = format!("stale-{i}");
            let Ok(c) = ch
                .basic_publish(
                    "",
                    "qq",
                    Default::default(),
                    body.as_bytes(),
                    BasicProperties::default(),
                )
                .await
            else {
                break;
            };
            let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(30), c).await else {
                break;
            };
            answered += 1;
            if c.is_ack() {
                acked.push(body);
            }
        }
        let _ = conn.close(200, "").await;
        (acked, answered)
    });
    eprintln!(
        "the deposed leader answered {answered} of 50 publishes, {} acked",
        stale_acked.len()
    );
    assert!(answered > 0, "the old connection answered nothing");
    common_cluster::until("a rejoins as an in-sync follower", 20, || {
        quorum_state(&e.url).is_some_and(|s| s.0 == leader && s.2.contains(&"warren@a".to_string()))
    });
    // One leader: every node that lists qq says it is on the leader.
    for n in &nodes {
        let r = n.api.get("/api/queues/%2F/qq");
        if r.status == 200 {
            assert_eq!(r.json()["node"], leader.as_str(), "{} lists qq", n.name);
        }
    }
    let (got, _) = rt.block_on(drain(&nodes[li].uri(), "qq"));
    let got: HashSet<String> = got.into_iter().collect();
    let missing = first
        .iter()
        .chain(second.iter())
        .chain(stale_acked.iter())
        .filter(|b| !got.contains(*b))
        .count();
    assert_eq!(missing, 0, "confirmed messages missing after the partition");
}

#[test]
fn a_rolling_restart_under_load_loses_nothing_confirmed() {
    let Some(e) = etcd() else { return };
    let mut nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    declare_qq(&rt, &nodes[0].uri());
    let uris: Vec<(String, String)> = nodes.iter().map(|n| (n.name.clone(), n.uri())).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = e.url.clone();
    let s = stop.clone();
    // The publisher follows the leader etcd names, batch by batch, and
    // keeps what was confirmed.
    let publisher = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut acked = Vec::new();
        let mut batch = 0;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let Some((leader, _, _)) = quorum_state(&url) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let uri = &uris.iter().find(|(n, _)| *n == leader).unwrap().1;
            let tag = format!("b{batch}-");
            batch += 1;
            let got = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(20), try_publish(uri, "qq", 100, &tag))
                    .await
                    .unwrap_or_default()
            });
            if got.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
            acked.extend(got);
        }
        acked
    });
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..3 {
        nodes[i].stop();
        std::thread::sleep(Duration::from_millis(500));
        nodes[i].restart();
        let name = nodes[i].name.clone();
        common_cluster::until(&format!("{name} is back in sync"), 30, || {
            quorum_state(&e.url).is_some_and(|s| s.2.contains(&name))
        });
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = publisher.join().unwrap();
    let (leader, _, _) = quorum_state(&e.url).unwrap();
    let li = nodes.iter().position(|n| n.name == leader).unwrap();
    let (got, _) = rt.block_on(drain(&nodes[li].uri(), "qq"));
    let got: HashSet<String> = got.into_iter().collect();
    let missing = acked.iter().filter(|b| !got.contains(*b)).count();
    eprintln!(
        "rolling restart: {} confirmed, {} consumed, {} missing",
        acked.len(),
        got.len(),
        missing
    );
    assert!(acked.len() > 1000, "the publisher made progress");
    assert_eq!(missing, 0, "confirmed messages lost in the rolling restart");
}

/// Like `publish_tagged`, but a failed connection or channel ends the
/// batch with what was confirmed so far.
async fn try_publish(uri: &str, queue: &str, n: usize, tag: &str) -> Vec<String> {
    let Ok(conn) = Connection::connect(uri, ConnectionProperties::default()).await else {
        return Vec::new();
    };
    let Ok(ch) = conn.create_channel().await else {
        return Vec::new();
    };
    if ch.confirm_select(Default::default()).await.is_err() {
        return Vec::new();
    }
    let mut pending = Vec::new();
    for i in 0..n {
        let body = format!("{tag}{i}");
        match ch
            .basic_publish(
                "",
                queue,
                Default::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
        {
            Ok(c) => pending.push((body, c)),
            Err(_) => break,
        }
    }
    let mut acked = Vec::new();
    for (body, c) in pending {
        if let Ok(c) = c.await {
            if c.is_ack() && c.take_message().is_none() {
                acked.push(body);
            }
        }
    }
    let _ = conn.close(200, "").await;
    acked
}

/// Publishing through other nodes while the leader is killed: about
/// 20 k publishes through c around the kill. It once found confirmed
/// messages lost around the failover, as `scripts/chaos.sh` did (a
/// follower that reset its replica while in the in-sync set; a deposed
/// leader acking forwarded publishes it no longer held).
#[test]
fn publishes_through_another_node_are_confirmed_by_the_leader_and_survive_its_death() {
    let Some(e) = etcd() else { return };
    let mut nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    declare_qq(&rt, &nodes[0].uri());
    // Published on b, held by a: each confirm comes from a once a and its
    // in-sync followers have the message.
    let acked = rt.block_on(publish_tagged(&nodes[1].uri(), "qq", 2000, "via-b-"));
    assert_eq!(acked.len(), 2000);
    // And while a dies: publishes through c go on, some nacked or never
    // confirmed around the failover, none confirmed and lost.
    let url = e.url.clone();
    let c_uri = nodes[2].uri();
    let during = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut acked = Vec::new();
        let t0 = std::time::Instant::now();
        let mut batch = 0;
        while t0.elapsed() < Duration::from_secs(12) {
            let tag = format!("c{batch}-");
            batch += 1;
            acked.extend(rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    try_publish(&c_uri, "qq", 200, &tag),
                )
                .await
                .unwrap_or_default()
            }));
        }
        let _ = url;
        acked
    });
    std::thread::sleep(Duration::from_millis(1500));
    nodes[0].kill();
    let during = during.join().unwrap();
    let (leader, _, _) = quorum_state(&e.url).unwrap();
    assert_ne!(leader, "warren@a");
    let li = nodes.iter().position(|n| n.name == leader).unwrap();
    let (got, _) = rt.block_on(drain(&nodes[li].uri(), "qq"));
    let got: HashSet<String> = got.into_iter().collect();
    let missing = acked
        .iter()
        .chain(during.iter())
        .filter(|b| !got.contains(*b))
        .count();
    eprintln!(
        "through other nodes: {} + {} confirmed, {} consumed from {}, {} missing",
        acked.len(),
        during.len(),
        got.len(),
        leader,
        missing
    );
    assert!(!during.is_empty(), "publishing through c went on");
    assert_eq!(missing, 0, "confirmed messages lost");
}
