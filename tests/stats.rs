//! Statistics (`core::stats`, `shard::snapshot`, `admin::stats`): after known
//! traffic from a real client, the shards' snapshots hold the exact counts
//! RabbitMQ's management API would show: queue lengths and bytes, message
//! counters per queue and channel, the shard totals, churn, connection
//! details. The HTTP API and Prometheus render these numbers.

mod common_lapin;
use common_lapin::*;

use lapin::{options::*, types::FieldTable, BasicProperties};
use warren::core::stats::{MsgStats, ShardSnapshot, Want};

fn start(shards: usize) -> warren::BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    warren::start(warren::Config::for_tests(shards)).expect("broker starts")
}

fn totals(snaps: &[ShardSnapshot]) -> MsgStats {
    let mut t = MsgStats::default();
    for s in snaps {
        t.add(&s.totals);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_traffic() {
    deadline(60, async {
        let h = start(2);
        let admin = h.admin();
        let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", h.port());
        let conn = lapin::Connection::connect(
            &uri,
            lapin::ConnectionProperties::default().with_connection_name("stats-test".into()),
        )
        .await
        .expect("connects");
        let ch = channel(&conn).await;
        let q = unique("stats-q");
        within(ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default()))
            .await
            .unwrap();
        within(ch.confirm_select(ConfirmSelectOptions::default()))
            .await
            .unwrap();
        for i in 0..5 {
            let body = format!("message-{i}");
            within(ch.basic_publish(
                "",
                &q,
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            ))
            .await
            .unwrap()
            .await
            .unwrap();
        }
        // One unroutable (dropped) and one returned.
        within(ch.basic_publish(
            "",
            "no-such-queue-anywhere",
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        ))
        .await
        .unwrap()
        .await
        .unwrap();
        within(ch.basic_publish(
            "",
            "no-such-queue-anywhere",
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"x",
            BasicProperties::default(),
        ))
        .await
        .unwrap()
        .await
        .unwrap();

        // Five ready messages of 9 bytes each.
        let snap = admin.snapshot(Want::ALL);
        let qs: Vec<_> = snap
            .iter()
            .flat_map(|s| &s.queues)
            .filter(|x| x.name == q)
            .collect();
        assert_eq!(qs.len(), 1, "the queue is in exactly one shard's snapshot");
        let qsnap = qs[0];
        assert_eq!(qsnap.messages_ready, 5);
        assert_eq!(qsnap.messages_unacked, 0);
        assert_eq!(qsnap.bytes_ready, 45);
        assert_eq!(qsnap.stats.publish, 5);
        let mut default_x = (0, 0);
        for x in snap
            .iter()
            .flat_map(|s| &s.exchanges)
            .filter(|x| x.name.is_empty())
        {
            default_x.0 += x.stats.publish_in;
            default_x.1 += x.stats.publish_out;
        }
        assert_eq!(
            default_x,
            (7, 5),
            "the default exchange: 7 in, 5 routed out"
        );
        let t = totals(&snap);
        assert_eq!(t.publish, 7);
        assert_eq!(t.confirm, 7);
        assert_eq!(t.drop_unroutable, 1);
        assert_eq!(t.return_unroutable, 1);
        let c = snap
            .iter()
            .flat_map(|s| &s.connections)
            .find(|c| c.client_properties.get("connection_name").is_some())
            .expect("our connection is listed");
        assert_eq!(c.user, "guest");
        assert_eq!(c.protocol, "AMQP 0-9-1");
        assert_eq!(c.state, "running");
        assert_eq!(c.channels, 1);
        assert_eq!(c.auth_mechanism, "PLAIN");
        assert!(c.recv_oct > 0 && c.send_oct > 0 && c.recv_cnt > 0 && c.send_cnt > 0);
        assert_eq!(c.peer_host, "127.0.0.1");
        assert!(c.name.starts_with("127.0.0.1:") && c.name.contains(" -> 127.0.0.1:"));
        let chans: Vec<_> = snap.iter().flat_map(|s| &s.channels).collect();
        assert_eq!(chans.len(), 1);
        assert!(chans[0].confirm);
        assert_eq!(chans[0].stats.publish, 7);

        // Get two (one acked, one requeued), consume the rest with acks.
        let got = within(ch.basic_get(&q, BasicGetOptions::default()))
            .await
            .unwrap()
            .expect("a message");
        got.ack(BasicAckOptions::default()).await.unwrap();
        let got = within(ch.basic_get(&q, BasicGetOptions::default()))
            .await
            .unwrap()
            .expect("a message");
        got.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
        within(ch.basic_qos(10, BasicQosOptions::default()))
            .await
            .unwrap();
        let mut consumer = within(ch.basic_consume(
            &q,
            "stats-consumer",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await
        .unwrap();
        use futures_lite::StreamExt;
        let mut held = Vec::new();
        for _ in 0..4 {
            let d = within(consumer.next()).await.unwrap().unwrap();
            held.push(d);
        }
        // Four delivered, not acked yet: unacked in the queue.
        let snap = poll_for("the queue's unacked count", || {
            let snap = admin.snapshot(Want::ALL);
            let ok = snap
                .iter()
                .flat_map(|s| &s.queues)
                .any(|x| x.name == q && x.messages_unacked == 4);
            async move { ok.then_some(snap) }
        })
        .await;
        let qsnap = snap
            .iter()
            .flat_map(|s| &s.queues)
            .find(|x| x.name == q)
            .unwrap();
        assert_eq!(qsnap.messages_ready, 0);
        assert_eq!(qsnap.bytes_unacked, 36);
        assert_eq!(qsnap.consumers, 1);
        assert_eq!(qsnap.stats.get, 2);
        assert_eq!(qsnap.stats.deliver, 4);
        assert_eq!(
            qsnap.stats.redeliver, 1,
            "the requeued message came back redelivered"
        );
        let cons: Vec<_> = snap.iter().flat_map(|s| &s.consumers).collect();
        assert_eq!(cons.len(), 1);
        assert_eq!(cons[0].tag, "stats-consumer");
        assert_eq!(cons[0].queue, q);
        assert!(cons[0].ack_required);
        assert_eq!(cons[0].prefetch_count, 10);
        assert_eq!(
            qsnap.time_in_queue.count(),
            5,
            "each message's first delivery is timed once (the redelivery is not)"
        );
        assert_eq!(
            qsnap.confirm_latency.count(),
            5,
            "each confirmed publish to the queue is timed"
        );
        assert!(
            qsnap.time_in_queue.sum_us > 0,
            "messages waited in the queue"
        );
        for d in held {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        let snap = poll_for("acks counted in the queue", || {
            let snap = admin.snapshot(Want::ALL);
            let ok = snap
                .iter()
                .flat_map(|s| &s.queues)
                .any(|x| x.name == q && x.stats.ack == 5 && x.messages_unacked == 0);
            async move { ok.then_some(snap) }
        })
        .await;
        let t = totals(&snap);
        assert_eq!(t.ack, 5);
        assert_eq!(t.get, 2);
        assert_eq!(t.deliver, 4);
        assert_eq!(t.redeliver, 1);
        assert_eq!(t.deliver_get(), 6);

        // Closing the channel keeps its counts in the shard totals; churn
        // counts the channel and the connection.
        within(ch.close(200, "bye")).await.unwrap();
        within(conn.close(200, "bye")).await.unwrap();
        let snap = poll_for("the connection is gone from the snapshot", || {
            let snap = admin.snapshot(Want::ALL);
            let gone = snap.iter().all(|s| s.connections.is_empty());
            async move { gone.then_some(snap) }
        })
        .await;
        let t = totals(&snap);
        assert_eq!((t.publish, t.ack, t.confirm), (7, 5, 7));
        let mut churn = warren::core::stats::Churn::default();
        for s in &snap {
            churn.add(&s.churn);
        }
        assert_eq!(churn.channel_created, 1);
        assert_eq!(churn.channel_closed, 1);
        assert_eq!(churn.connection_created, 1);
        assert_eq!(churn.connection_closed, 1);
        assert_eq!(churn.queue_created, 1);
        h.shutdown();
    })
    .await;
}

/// A connection is closed by name through the admin API with 320 and the
/// operator's reason, as `DELETE /api/connections/{name}` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_connection_by_name() {
    deadline(60, async {
        let h = start(2);
        let admin = h.admin();
        let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", h.port());
        let conn = connect(&uri).await;
        let mut errors = watch_connection(&conn);
        let _ch = channel(&conn).await;
        let name = admin
            .snapshot(Want::ALL)
            .iter()
            .flat_map(|s| &s.connections)
            .map(|c| c.name.clone())
            .next()
            .expect("one connection");
        assert!(!admin.close_connection("1.2.3.4:5 -> 6.7.8.9:10", "nope"));
        assert!(admin.close_connection(&name, "closed by the operator"));
        assert_eq!(
            next_err(&mut errors).await,
            (
                320,
                "CONNECTION_FORCED - closed by the operator".to_string()
            )
        );
        h.shutdown();
    })
    .await;
}
