//! Quorum-queue helpers shared by the cluster tests: declaring `qq`,
//! publishing with confirms, and the queue's state in etcd.

use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, Connection, ConnectionProperties,
};
use std::time::Duration;

pub fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// Publishes `n` messages ("0", "1", …) with confirms; returns those acked.
pub async fn publish_confirmed(uri: &str, queue: &str, n: usize) -> Vec<String> {
    publish_tagged(uri, queue, n, "").await
}

/// `publish_confirmed` with bodies `<tag>0`, `<tag>1`, ….
pub async fn publish_tagged(uri: &str, queue: &str, n: usize, tag: &str) -> Vec<String> {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..n {
        let body = format!("{tag}{i}");
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

/// The in-sync set etcd holds for the only quorum queue: (leader, epoch,
/// in-sync members).
pub fn quorum_state(etcd_url: &str) -> Option<(String, u64, Vec<String>)> {
    let e = warren::cluster::etcd::Etcd::new(&[etcd_url.to_string()]);
    let (kvs, _) = e.range_prefix(b"/warren/t/quorum/").ok()?;
    let v: serde_json::Value = serde_json::from_slice(&kvs.first()?.value).ok()?;
    let mut isr: Vec<String> = v["isr"]
        .as_array()?
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    isr.sort();
    Some((v["leader"].as_str()?.to_string(), v["epoch"].as_u64()?, isr))
}

pub fn declare_qq(rt: &tokio::runtime::Runtime, uri: &str) {
    rt.block_on(async {
        let conn = Connection::connect(uri, ConnectionProperties::default())
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
    });
}
