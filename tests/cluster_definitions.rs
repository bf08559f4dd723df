//! Definitions shared by a cluster through etcd (issue 20, deliverable 1):
//! what one node declares (over AMQP or the HTTP API) every node has, a
//! binding made on one node routes the very next publish on another, and
//! deletions travel too (with their effects: a deleted vhost's or user's
//! connections close on every node). Three warren processes and one etcd;
//! without an etcd binary the tests say so and skip.

mod common_cluster;
mod common_durable;
mod common_etcd;
mod common_http;

use common_cluster::{until, Node};
use common_etcd::etcd;
use lapin::{options::*, types::FieldTable, BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;

fn three_named(etcd_url: &str) -> (Node, Node, Node) {
    let mut v = common_cluster::three(etcd_url);
    let c = v.pop().unwrap();
    let b = v.pop().unwrap();
    let a = v.pop().unwrap();
    (a, b, c)
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

fn queue_names(api: &common_http::Api) -> Vec<String> {
    names(&api.get_json("/api/definitions")["queues"])
}

#[test]
fn definitions_made_on_one_node_are_seen_on_the_others() {
    let Some(e) = etcd() else { return };
    let (a, b, c) = three_named(&e.url);
    // Exactly one node created the defaults; every node has them.
    for n in [&a, &b, &c] {
        assert_eq!(n.api.get("/api/whoami").status, 200, "{}", n.log());
    }
    let created: usize = [&a, &b, &c]
        .iter()
        .map(|n| n.log().matches("created the default user").count())
        .sum();
    assert_eq!(created, 1, "the defaults were created once");

    // Over the HTTP API, each node a part.
    assert_eq!(a.api.put("/api/vhosts/v2", "{}").status, 201);
    let r = b
        .api
        .put("/api/users/bob", r#"{"password":"pw","tags":"management"}"#);
    assert_eq!(r.status, 201);
    let perm = r#"{"configure":".*","write":".*","read":".*"}"#;
    assert_eq!(c.api.put("/api/permissions/v2/bob", perm).status, 201);
    assert_eq!(c.api.put("/api/permissions/v2/guest", perm).status, 201);
    let r = a.api.put(
        "/api/exchanges/v2/hx",
        r#"{"type":"fanout","durable":false}"#,
    );
    assert_eq!(r.status, 201);

    // Over AMQP, on node a.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conn = Connection::connect(&a.uri(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            "ax",
            lapin::ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
        let qd = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("aq", qd, FieldTable::default())
            .await
            .unwrap();
        ch.queue_declare("atransient", Default::default(), FieldTable::default())
            .await
            .unwrap();
        ch.queue_bind("aq", "ax", "k.#", Default::default(), FieldTable::default())
            .await
            .unwrap();
        conn.close(200, "bye").await.unwrap();
    });

    for n in [&a, &b, &c] {
        let who = &n.name;
        assert_eq!(n.api.get("/api/vhosts/v2").status, 200, "{who}");
        assert_eq!(n.api.get("/api/users/bob").status, 200, "{who}");
        assert_eq!(n.api.get("/api/permissions/v2/bob").status, 200, "{who}");
        let x = n.api.get_json("/api/exchanges/%2F/ax");
        assert_eq!(x["type"], "topic", "{who}");
        assert_eq!(
            n.api.get_json("/api/exchanges/v2/hx")["durable"],
            false,
            "{who}"
        );
        let bs = n.api.get_json("/api/bindings/%2F/e/ax/q/aq");
        assert_eq!(bs[0]["routing_key"], "k.#", "{who}: {bs}");
        let qs = queue_names(&n.api);
        assert!(qs.contains(&"aq".to_string()), "{who}: {qs:?}");
        // bob logs in on every node.
        let bob = n.api.as_user(Some(("bob", "pw")));
        assert_eq!(bob.get("/api/whoami").status, 200, "{who}");
    }

    // Deletions travel: an exchange deleted on b is gone everywhere (its
    // binding with it).
    assert_eq!(b.api.delete("/api/exchanges/%2F/ax").status, 204);
    for n in [&a, &b, &c] {
        assert_eq!(n.api.get("/api/exchanges/%2F/ax").status, 404, "{}", n.name);
        assert_eq!(
            n.api.get_json("/api/bindings/%2F/e/ax/q/aq"),
            Value::Array(vec![])
        );
    }

    // A vhost deleted on c closes its connections on a; a user deleted on
    // a closes theirs on b.
    rt.block_on(async {
        let on_a = Connection::connect(
            &format!("amqp://guest:guest@127.0.0.1:{}/v2", a.port),
            ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let bob_on_b = Connection::connect(
            &format!("amqp://bob:pw@127.0.0.1:{}/v2", b.port),
            ConnectionProperties::default(),
        )
        .await
        .unwrap();
        assert_eq!(a.api.delete("/api/users/bob").status, 204);
        until("bob's connection on b closes", 10, || {
            !bob_on_b.status().connected()
        });
        assert_eq!(c.api.delete("/api/vhosts/v2").status, 204);
        until("the connection to v2 on a closes", 10, || {
            !on_a.status().connected()
        });
    });
    for n in [&a, &b, &c] {
        assert_eq!(n.api.get("/api/vhosts/v2").status, 404, "{}", n.name);
        assert_eq!(n.api.get("/api/users/bob").status, 404, "{}", n.name);
    }
}

#[test]
fn a_binding_made_on_one_node_routes_the_next_publish_on_another() {
    let Some(e) = etcd() else { return };
    let (a, b, _c) = three_named(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let on_b = Connection::connect(&b.uri(), ConnectionProperties::default())
            .await
            .unwrap();
        let pub_b = on_b.create_channel().await.unwrap();
        pub_b
            .queue_declare("qb", Default::default(), FieldTable::default())
            .await
            .unwrap();
        pub_b
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let on_a = Connection::connect(&a.uri(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch_a = on_a.create_channel().await.unwrap();
        const N: usize = 30;
        for i in 0..N {
            let x = format!("x{i}");
            ch_a.exchange_declare(
                &x,
                lapin::ExchangeKind::Direct,
                Default::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
            ch_a.queue_bind("qb", &x, "k", Default::default(), FieldTable::default())
                .await
                .unwrap();
            // bind-ok came from a: b routes with it now.
            let opts = BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            };
            let confirm = pub_b
                .basic_publish(&x, "k", opts, b"m", BasicProperties::default())
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(confirm.is_ack(), "publish {i}");
            assert!(
                confirm.take_message().is_none(),
                "publish {i} after bind-ok on another node was returned unroutable"
            );
        }
        let q = pub_b
            .queue_declare(
                "qb",
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        assert_eq!(q.message_count() as usize, N);
    });
}

/// Declares a durable queue `kept` and a transient one `transient` on
/// `uri`; returns the connection (with it the channel) still open.
async fn declare_kept_and_transient(
    uri: &str,
    kept: &str,
    transient: &str,
) -> (Connection, lapin::Channel) {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let qd = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(kept, qd, FieldTable::default())
        .await
        .unwrap();
    ch.queue_declare(transient, Default::default(), FieldTable::default())
        .await
        .unwrap();
    (conn, ch)
}

#[test]
fn a_restarted_node_keeps_its_durable_queues_and_drops_its_transient_ones() {
    let Some(e) = etcd() else { return };
    let (mut a, b, _c) = three_named(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_conn, ch) = declare_kept_and_transient(&a.uri(), "kept", "transient").await;
        ch.confirm_select(Default::default()).await.unwrap();
        ch.basic_publish(
            "",
            "kept",
            Default::default(),
            b"persisted",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    });
    // b knows both (a queue.bind on b finds them).
    let bind_on_b = |q: &str| {
        b.api
            .post(
                &format!("/api/bindings/%2F/e/amq.direct/q/{q}"),
                r#"{"routing_key":"k"}"#,
            )
            .status
    };
    assert_eq!(bind_on_b("kept"), 201);
    assert_eq!(bind_on_b("transient"), 201);
    a.kill();
    a.restart();
    until("a's transient queue is gone on b", 10, || {
        bind_on_b("transient") == 404
    });
    assert_eq!(bind_on_b("kept"), 201);
    let q = a.api.get_json("/api/queues/%2F/kept");
    until("kept's message is back on a", 10, || {
        a.api.get_json("/api/queues/%2F/kept")["messages"] == 1
    });
    assert_eq!(q["durable"], true);
}

#[test]
fn a_lost_node_s_transient_queues_are_deleted_and_its_durable_ones_kept() {
    let Some(e) = etcd() else { return };
    let (a, b, mut c) = three_named(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (conn, _ch) = declare_kept_and_transient(&c.uri(), "c-kept", "c-transient").await;
        // The connection stays open: c dies with it.
        std::mem::forget(conn);
    });
    let bind_on = |n: &common_cluster::Node, q: &str| {
        n.api
            .post(
                &format!("/api/bindings/%2F/e/amq.direct/q/{q}"),
                r#"{"routing_key":"k"}"#,
            )
            .status
    };
    assert_eq!(bind_on(&b, "c-transient"), 201);
    c.kill();
    // Once c's lease is gone (5 s) and the next two checks saw it gone.
    until("c's transient queue is gone on b", 20, || {
        bind_on(&b, "c-transient") == 404
    });
    assert_eq!(bind_on(&a, "c-transient"), 404);
    assert_eq!(
        bind_on(&a, "c-kept"),
        201,
        "a durable queue outlives its node"
    );
}
