//! The management API's cluster view (issue 20): every node lists every
//! queue of the cluster with the holding node's figures, answers for a
//! queue another node holds, shows a quorum queue's leader, members,
//! online members, in-sync set and replication lag, and lists every
//! running node with its own figures — as RabbitMQ's management plugin
//! does on any node. Three warren processes and one etcd; without an etcd
//! binary the tests say so and skip.

mod common_cluster;
mod common_durable;
mod common_etcd;
mod common_http;

use common_cluster::{three, until};
use common_etcd::etcd;
use serde_json::{json, Value};

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|q| q["name"] == name)
}

#[test]
fn every_node_shows_the_whole_cluster() {
    let Some(e) = etcd() else { return };
    let mut nodes = three(&e.url);
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    // A quorum queue and a classic queue, both held by a, with messages
    // published through a's API.
    for (q, kind) in [("qq", "quorum"), ("cq", "classic")] {
        let r = nodes[0].api.put(
            &format!("/api/queues/%2F/{q}"),
            &json!({"durable": true, "arguments": {"x-queue-type": kind}}).to_string(),
        );
        assert!(
            r.status == 201 || r.status == 204,
            "declare {q}: {}",
            r.status
        );
        for i in 0..7 {
            let r = nodes[0].api.post(
                "/api/exchanges/%2F/amq.default/publish",
                &json!({"properties": {}, "routing_key": q, "payload": format!("m{i}"),
                        "payload_encoding": "string"})
                .to_string(),
            );
            assert_eq!(r.json()["routed"], true, "publish to {q}");
        }
    }
    // The quorum queue's state is in etcd, all members in sync.
    until("qq's members all in sync", 20, || {
        let v = nodes[1].api.get_json("/api/queues/%2F/qq");
        v["in_sync"].as_array().is_some_and(|s| s.len() == 3)
    });
    for n in &nodes {
        until(&format!("{} knows every node", n.name), 10, || {
            let l = n.api.get_json("/api/nodes");
            l.as_array().is_some_and(|l| l.len() == 3)
        });
    }
    for n in &nodes {
        // The list has both queues, with a's counts, on every node.
        let list = n.api.get_json("/api/queues");
        let qq = find(&list, "qq").unwrap_or_else(|| panic!("{}: no qq in {list}", n.name));
        let cq = find(&list, "cq").unwrap_or_else(|| panic!("{}: no cq in {list}", n.name));
        assert_eq!(qq["messages"], 7, "{}: {qq}", n.name);
        assert_eq!(cq["messages"], 7, "{}: {cq}", n.name);
        assert_eq!(qq["type"], "quorum", "{}", n.name);
        assert_eq!(cq["type"], "classic", "{}", n.name);
        assert_eq!(qq["node"], "warren@a", "{}", n.name);
        assert_eq!(cq["node"], "warren@a", "{}", n.name);
        assert_eq!(qq["leader"], "warren@a", "{}", n.name);
        let mut members: Vec<String> = serde_json::from_value(qq["members"].clone()).unwrap();
        members.sort();
        assert_eq!(members, names, "{}", n.name);
        let online = qq["online"].as_array().map_or(0, Vec::len);
        assert_eq!(online, 3, "{}", n.name);
        // One queue, through any node.
        let one = n.api.get_json("/api/queues/%2F/cq");
        assert_eq!(one["messages"], 7, "{}: {one}", n.name);
        assert_eq!(one["node"], "warren@a", "{}", n.name);
        // Each node lists every node, with its own figures.
        let list = n.api.get_json("/api/nodes");
        for name in &names {
            let node =
                find(&list, name).unwrap_or_else(|| panic!("{}: no {name} in {list}", n.name));
            assert_eq!(node["running"], true, "{}: {node}", n.name);
            assert!(
                node["mem_used"].is_u64(),
                "{}: {name} has no figures: {node}",
                n.name
            );
        }
    }
    // The leader tells how far each follower is.
    let qq = nodes[2].api.get_json("/api/queues/%2F/qq");
    let lag = qq["replication_lag"].as_object().expect("replication_lag");
    assert_eq!(lag.len(), 2, "{qq}");
    // a stops: its queues are still listed, as down, with their
    // definitions; the quorum queue moves to an elected follower.
    nodes[0].kill();
    until("qq led by b or c", 30, || {
        let v = nodes[1].api.get_json("/api/queues/%2F/qq");
        v["leader"] == "warren@b" || v["leader"] == "warren@c"
    });
    let list = nodes[1].api.get_json("/api/queues");
    let cq = find(&list, "cq").expect("cq listed while a is down");
    assert_eq!(cq["state"], "down", "{cq}");
    assert_eq!(cq["node"], "warren@a", "{cq}");
    let qq = find(&list, "qq").expect("qq listed");
    assert_eq!(qq["messages"], 7, "the new leader's count: {qq}");
    let online = qq["online"].as_array().map_or(0, Vec::len);
    assert_eq!(online, 2, "{qq}");
    until("c lists a as stopped", 10, || {
        let list = nodes[2].api.get_json("/api/nodes");
        find(&list, "warren@a").is_some_and(|a| a["running"] == false)
    });
}

/// Publishes `n` messages to `queue` through `uri` with confirms; the
/// bodies of those acked.
async fn publish_confirmed(uri: &str, queue: &str, n: usize) -> Vec<String> {
    use lapin::{options::*, BasicProperties, Connection, ConnectionProperties};
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut acked = Vec::new();
    for i in 0..n {
        let body = format!("{queue}-{i}");
        let c = ch
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        if c.is_ack() {
            acked.push(body);
        }
    }
    let _ = conn.close(200, "").await;
    acked
}

/// Fetches every message of `queue` through `uri` (basic.get until empty).
async fn drain_queue(uri: &str, queue: &str) -> Vec<String> {
    use lapin::{options::*, Connection, ConnectionProperties};
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        got.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    let _ = conn.close(200, "").await;
    got
}

fn warrenctl(http: u16, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .args(["--port", &http.to_string()])
        .args(args)
        .output()
        .expect("warrenctl runs");
    assert!(
        out.status.success(),
        "warrenctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Leaders by queue name, as node `api` lists them.
fn leaders(api: &common_http::Api) -> Vec<(String, String)> {
    let list = api.get_json("/api/queues");
    let mut v: Vec<(String, String)> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|q| q["type"] == "quorum")
        .map(|q| {
            (
                q["name"].as_str().unwrap_or("").to_string(),
                q["leader"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn leaders_move_off_a_drained_node_and_spread_on_rebalance() {
    let Some(e) = etcd() else { return };
    let nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let names = ["q1", "q2", "q3"];
    for q in names {
        let r = nodes[0].api.put(
            &format!("/api/queues/%2F/{q}"),
            &json!({"durable": true, "arguments": {"x-queue-type": "quorum"}}).to_string(),
        );
        assert!(
            r.status == 201 || r.status == 204,
            "declare {q}: {}",
            r.status
        );
    }
    until("every queue's members in sync", 20, || {
        names.iter().all(|q| {
            let v = nodes[1].api.get_json(&format!("/api/queues/%2F/{q}"));
            v["in_sync"].as_array().is_some_and(|s| s.len() == 3)
        })
    });
    let mut confirmed = Vec::new();
    for q in names {
        let acked = rt.block_on(publish_confirmed(&nodes[0].uri(), q, 50));
        assert_eq!(acked.len(), 50, "{q}");
        confirmed.push(acked);
    }
    assert!(leaders(&nodes[1].api).iter().all(|(_, l)| l == "warren@a"));
    // Drain a: its leaders move to b and c.
    warrenctl(nodes[0].http, &["drain"]);
    until("no queue led by a", 20, || {
        let l = leaders(&nodes[1].api);
        l.len() == 3 && l.iter().all(|(_, l)| l != "warren@a")
    });
    let list = nodes[2].api.get_json("/api/nodes");
    let a = find(&list, "warren@a").expect("a listed");
    assert_eq!(a["being_drained"], true, "{a}");
    // A quorum queue declared on a drained node moves off it too.
    let r = nodes[0].api.put(
        "/api/queues/%2F/q4",
        &json!({"durable": true, "arguments": {"x-queue-type": "quorum"}}).to_string(),
    );
    assert!(
        r.status == 201 || r.status == 204,
        "declare q4: {}",
        r.status
    );
    until("q4 led by b or c", 20, || {
        leaders(&nodes[1].api)
            .iter()
            .any(|(q, l)| q == "q4" && l != "warren@a")
    });
    // Nothing confirmed was lost in the moves.
    for (q, acked) in names.iter().zip(&confirmed) {
        let got = rt.block_on(drain_queue(&nodes[1].uri(), q));
        let missing = acked.iter().filter(|b| !got.contains(b)).count();
        assert_eq!(
            missing,
            0,
            "{q}: {} of {} confirmed missing",
            missing,
            acked.len()
        );
    }
    // Revived and rebalanced: a leads again, nobody more than its share.
    warrenctl(nodes[0].http, &["revive"]);
    until("a no longer drained", 10, || {
        let list = nodes[1].api.get_json("/api/nodes");
        find(&list, "warren@a").is_some_and(|a| a["being_drained"] == false)
    });
    warrenctl(nodes[1].http, &["rebalance", "quorum"]);
    until("leaders spread", 20, || {
        let l = leaders(&nodes[2].api);
        let count = |n: &str| l.iter().filter(|(_, x)| x == n).count();
        l.len() == 4
            && count("warren@a") >= 1
            && ["warren@a", "warren@b", "warren@c"]
                .iter()
                .all(|n| count(n) <= 2)
    });
}
