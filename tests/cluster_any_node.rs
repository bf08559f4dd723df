//! Any node serves any client (issue 20): a queue held by one node is
//! declared, published to, consumed from, fetched, purged and deleted
//! through another, as RabbitMQ's nodes do for each other's queues.
//! Three warren processes and one etcd; without an etcd binary the tests
//! say so and skip.

mod common_amqp10;
mod common_cluster;
mod common_durable;
mod common_etcd;
mod common_http;

use common_cluster::three;
use common_etcd::etcd;
use futures_lite::StreamExt;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, Connection, ConnectionProperties,
};
use std::time::Duration;

fn args(kind: &str) -> FieldTable {
    let mut a = FieldTable::default();
    a.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    a
}

async fn channel(uri: &str) -> (Connection, lapin::Channel) {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

#[test]
fn a_queue_on_one_node_is_used_through_the_others() {
    let Some(e) = etcd() else { return };
    let nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for kind in ["quorum", "classic"] {
            let q = format!("{kind}-q");
            // Declared on a: a holds it.
            let (ca, cha) = channel(&nodes[0].uri()).await;
            cha.queue_declare(&q, durable(), args(kind)).await.unwrap();
            // Declared again on b (what every client does on connect): ok,
            // with a's counts.
            let (cb, chb) = channel(&nodes[1].uri()).await;
            let d = chb.queue_declare(&q, durable(), args(kind)).await.unwrap();
            assert_eq!(d.message_count(), 0, "{kind}");
            // Published on b with confirms.
            chb.confirm_select(Default::default()).await.unwrap();
            for i in 0..100 {
                let c = chb
                    .basic_publish(
                        "",
                        &q,
                        Default::default(),
                        format!("m{i}").as_bytes(),
                        BasicProperties::default(),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                assert!(c.is_ack(), "{kind}: publish {i}");
            }
            let d = chb
                .queue_declare(
                    &q,
                    QueueDeclareOptions {
                        passive: true,
                        ..durable()
                    },
                    args(kind),
                )
                .await
                .unwrap();
            assert_eq!(d.message_count(), 100, "{kind}: counts through b");
            // Fetched on c.
            let (cc, chc) = channel(&nodes[2].uri()).await;
            let got = chc
                .basic_get(&q, BasicGetOptions { no_ack: true })
                .await
                .unwrap()
                .expect("a message");
            assert_eq!(got.delivery.data, b"m0", "{kind}");
            // Consumed on b, acked; a requeue through c comes back
            // redelivered.
            chb.basic_qos(10, Default::default()).await.unwrap();
            let mut consumer = chb
                .basic_consume(&q, "on-b", Default::default(), FieldTable::default())
                .await
                .unwrap();
            let mut seen = Vec::new();
            while seen.len() < 99 {
                let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
                    .await
                    .expect("deliveries through b")
                    .unwrap()
                    .unwrap();
                seen.push(String::from_utf8_lossy(&d.data).into_owned());
                d.ack(Default::default()).await.unwrap();
            }
            assert_eq!(seen[0], "m1", "{kind}");
            assert_eq!(seen[98], "m99", "{kind}");
            chb.basic_cancel("on-b", Default::default()).await.unwrap();
            // Purged on c, deleted on b.
            for i in 0..5 {
                chb.basic_publish(
                    "",
                    &q,
                    Default::default(),
                    format!("p{i}").as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            }
            let purged = chc.queue_purge(&q, Default::default()).await.unwrap();
            assert_eq!(purged, 5, "{kind}: purged through c");
            chb.queue_delete(&q, Default::default()).await.unwrap();
            let err = cha
                .queue_declare(
                    &q,
                    QueueDeclareOptions {
                        passive: true,
                        ..durable()
                    },
                    args(kind),
                )
                .await;
            assert!(err.is_err(), "{kind}: deleted through b, gone on a");
            for c in [ca, cb, cc] {
                let _ = c.close(200, "").await;
            }
        }
    });
}

/// AMQP 1.0 clients use a queue held by another node as 0-9-1 clients
/// do: the 1.0 front end calls the same core operations, which reach the
/// holder through the link.
#[test]
fn amqp10_clients_use_a_queue_on_another_node() {
    use common_amqp10 as a10;
    let Some(e) = etcd() else { return };
    let nodes = three(&e.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_ca, cha) = channel(&nodes[0].uri()).await;
        cha.queue_declare("q10", durable(), args("quorum"))
            .await
            .unwrap();
        // Sent on b, each transfer accepted once a and its followers have it.
        let mut cb = a10::open(nodes[1].port).await;
        let mut sb = a10::begin(&mut cb).await;
        let mut tx = a10::sender(&mut sb, "/queues/q10").await;
        for i in 0..20 {
            a10::send_accepted(&mut tx, a10::msg(format!("m{i}").as_bytes())).await;
        }
        let d = cha
            .queue_declare(
                "q10",
                QueueDeclareOptions {
                    passive: true,
                    ..durable()
                },
                args("quorum"),
            )
            .await
            .unwrap();
        assert_eq!(d.message_count(), 20, "held by a");
        // Received on c, in order, each accepted.
        let mut cc = a10::open(nodes[2].port).await;
        let mut sc = a10::begin(&mut cc).await;
        let mut rx = a10::receiver(&mut sc, "/queues/q10").await;
        for i in 0..20 {
            let d = a10::recv(&mut rx).await;
            let body = match d.body() {
                fe2o3_amqp::types::messaging::Body::Data(b) => b
                    .iter()
                    .flat_map(|d| d.0.iter().copied())
                    .collect::<Vec<u8>>(),
                other => panic!("body {other:?}"),
            };
            assert_eq!(body, format!("m{i}").as_bytes());
            rx.accept(&d).await.unwrap();
        }
        common_cluster::until("q10 empty on a", 10, || {
            let n = nodes[0].api.get_json("/api/queues/%2F/q10");
            n["messages"] == 0
        });
        let _ = rx.close().await;
        let _ = tx.close().await;
        let _ = sc.end().await;
        let _ = sb.end().await;
        let _ = cc.close().await;
        let _ = cb.close().await;
    });
}
