//! Vhosts, driven by lapin: connection.open refusals (530), isolation of
//! same-named objects across vhosts and shards, per-vhost default and amq.*
//! exchanges, dead-lettering and alternate exchanges resolved in the vhost,
//! deletion with live connections (320) and across a restart. Texts are
//! RabbitMQ 3.10.8's (docs/oracle/tenancy-rabbitmq-3.10.8.md §3, §5), the
//! same in 3.13.7.

mod common_durable;
mod common_lapin;
mod common_tenancy;
mod util;

use common_lapin::*;
use common_tenancy::*;
use lapin::{options::*, types::FieldTable, BasicProperties, Channel, Connection, ExchangeKind};
use util::*;

/// The close of a connection attempt that must fail.
async fn connect_err(uri: &str) -> (u16, String) {
    match within(Connection::connect(uri, Default::default())).await {
        Ok(_) => panic!("connection to {uri} must be refused"),
        Err(e) => code_text(&e),
    }
}

fn host_port(b: &TestBroker, shard: usize) -> String {
    format!("127.0.0.1:{}", b.shard_port(shard))
}

/// A vhost where guest has full permissions.
fn guest_vhost(t: &Tenancy, tag: &str) -> String {
    let v = unique(&format!("v-{tag}"));
    t.put_vhost(&v);
    t.set_permissions("guest", &v, ".*", ".*", ".*");
    v
}

async fn xdecl(ch: &Channel, x: &str, kind: ExchangeKind, args: FieldTable) {
    within(ch.exchange_declare(x, kind, Default::default(), args))
        .await
        .unwrap_or_else(|e| panic!("exchange.declare {x}: {e}"));
}

async fn qdecl(ch: &Channel, q: &str, args: FieldTable) {
    within(ch.queue_declare(q, Default::default(), args))
        .await
        .unwrap_or_else(|e| panic!("queue.declare {q}: {e}"));
}

async fn count_eventually(ch: &Channel, q: &str, n: u32) {
    eventually(&format!("{n} message(s) in {q}"), async || {
        message_count(ch, q).await == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_of_a_missing_vhost_is_530_vhost_not_found() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let nope = unique("nope");
        let got = connect_err(&t.uri("guest", "guest", &nope)).await;
        assert_eq!(got, (530, format!("NOT_ALLOWED - vhost {nope} not found")));
        assert_broker_alive(&t.uri("guest", "guest", "/")).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_of_a_vhost_without_permission_is_530_access_refused() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let v = unique("v-noperm");
        let u = unique("u-noperm");
        t.put_vhost(&v);
        t.put_user(&u, "pw");
        let got = connect_err(&t.uri(&u, "pw", &v)).await;
        let want = format!("NOT_ALLOWED - access to vhost '{v}' refused for user '{u}'");
        assert_eq!(got, (530, want));
        // a permission lets the next one in
        t.set_permissions(&u, &v, ".*", ".*", ".*");
        assert_broker_alive(&t.uri(&u, "pw", &v)).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_names_in_two_vhosts_are_independent_across_shards() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let (v1, v2) = (guest_vhost(&t, "iso1"), guest_vhost(&t, "iso2"));
        // v1 on shard 0, v2 on shard 1
        let c1 = connect(&t.uri_at(&host_port(&b, 0), "guest", "guest", &v1)).await;
        let c2 = connect(&t.uri_at(&host_port(&b, 1), "guest", "guest", &v2)).await;
        let (ch1, ch2) = (channel(&c1).await, channel(&c2).await);
        for ch in [&ch1, &ch2] {
            qdecl(ch, "q", FieldTable::default()).await;
            xdecl(ch, "x", ExchangeKind::Direct, FieldTable::default()).await;
            bind(ch, "q", "x", "k").await;
        }
        publish(&ch1, "x", "k", b"in v1").await;
        publish(&ch1, "", "q", b"in v1 too").await;
        count_eventually(&ch1, "q", 2).await;
        assert_eq!(
            message_count(&ch2, "q").await,
            0,
            "v2's q sees v1's messages"
        );
        // and the other way round, from the other shard
        publish(&ch2, "x", "k", b"in v2").await;
        count_eventually(&ch2, "q", 1).await;
        assert_eq!(message_count(&ch1, "q").await, 2);
        // a vhost's objects are reached from any shard
        let c1b = connect(&t.uri_at(&host_port(&b, 1), "guest", "guest", &v1)).await;
        let ch1b = channel(&c1b).await;
        assert_eq!(message_count(&ch1b, "q").await, 2);
        // deleting v2's exchange and queue leaves v1's
        xdel(&ch2, "x").await;
        within(ch2.queue_delete("q", Default::default()))
            .await
            .unwrap();
        publish(&ch1b, "x", "k", b"still routed").await;
        count_eventually(&ch1, "q", 3).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vhost_has_the_default_and_amq_exchanges() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let v = guest_vhost(&t, "amqx");
        let c = connect(&t.uri("guest", "guest", &v)).await;
        let ch = channel(&c).await;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        for (x, kind) in [
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            within(ch.exchange_declare(x, kind, passive, FieldTable::default()))
                .await
                .unwrap_or_else(|e| panic!("{x} in a new vhost: {e}"));
        }
        qdecl(&ch, "q", FieldTable::default()).await;
        publish(&ch, "", "q", b"default").await;
        bind(&ch, "q", "amq.topic", "a.#").await;
        publish(&ch, "amq.topic", "a.b", b"topic").await;
        count_eventually(&ch, "q", 2).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_and_alternate_exchanges_resolve_within_the_vhost() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let (v1, v2) = (guest_vhost(&t, "dlx1"), guest_vhost(&t, "dlx2"));
        let c1 = connect(&t.uri_at(&host_port(&b, 0), "guest", "guest", &v1)).await;
        let c2 = connect(&t.uri_at(&host_port(&b, 1), "guest", "guest", &v2)).await;
        let (ch1, ch2) = (channel(&c1).await, channel(&c2).await);
        for ch in [&ch1, &ch2] {
            xdecl(ch, "dlx", ExchangeKind::Fanout, FieldTable::default()).await;
            qdecl(ch, "dead", FieldTable::default()).await;
            bind(ch, "dead", "dlx", "").await;
            xdecl(ch, "ae", ExchangeKind::Fanout, FieldTable::default()).await;
            qdecl(ch, "unrouted", FieldTable::default()).await;
            bind(ch, "unrouted", "ae", "").await;
            let ae = table(&[("alternate-exchange", s("ae"))]);
            xdecl(ch, "xa", ExchangeKind::Direct, ae).await;
            qdecl(ch, "work", table(&[("x-dead-letter-exchange", s("dlx"))])).await;
        }
        // v1: a rejected message dead-letters to v1's dlx
        publish(&ch1, "", "work", b"reject me").await;
        let m = poll_for("message in work", async || {
            within(ch1.basic_get("work", Default::default()))
                .await
                .unwrap()
        })
        .await;
        within(m.delivery.reject(BasicRejectOptions { requeue: false }))
            .await
            .unwrap();
        count_eventually(&ch1, "dead", 1).await;
        // v1: an unroutable message goes to v1's alternate exchange
        publish(&ch1, "xa", "nowhere", b"unroutable").await;
        count_eventually(&ch1, "unrouted", 1).await;
        // v2 saw none of it
        assert_eq!(message_count(&ch2, "dead").await, 0);
        assert_eq!(message_count(&ch2, "unrouted").await, 0);
    })
    .await
}

/// The connection.close a connection got (lapin may also report the socket
/// closing right after it; the AMQP close is what the broker said).
async fn forced_close(rx: &mut ErrRx) -> (u16, String) {
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(TIMEOUT, rx.recv()).await {
        if let Some(ct) = amqp_error(&e) {
            return ct;
        }
        seen.push(format!("{e:?}"));
    }
    panic!("no connection.close received; errors: {seen:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_vhost_closes_its_connections_with_320() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let v = guest_vhost(&t, "del");
        let other = guest_vhost(&t, "keep");
        let c0 = connect(&t.uri_at(&host_port(&b, 0), "guest", "guest", &v)).await;
        let c1 = connect(&t.uri_at(&host_port(&b, 1), "guest", "guest", &v)).await;
        let keep = connect(&t.uri("guest", "guest", &other)).await;
        let (mut e0, mut e1) = (watch_connection(&c0), watch_connection(&c1));
        let _ch = channel(&c0).await;
        t.delete_vhost(&v);
        let want = (320, format!("CONNECTION_FORCED - vhost '{v}' is deleted"));
        if t.is_external() {
            // RabbitMQ 3.10.8 sends the 320 (oracle §5, raw frames) but resets
            // the socket at once: lapin reports only ConnectionReset.
            for rx in [&mut e0, &mut e1] {
                let e = within(rx.recv()).await.expect("an error");
                eprintln!("external broker: {e:?}");
            }
        } else {
            assert_eq!(forced_close(&mut e0).await, want, "shard 0");
            assert_eq!(forced_close(&mut e1).await, want, "shard 1");
        }
        assert_connection_usable(&keep).await;
        // a new connection to it: not found
        let got = connect_err(&t.uri("guest", "guest", &v)).await;
        assert_eq!(got, (530, format!("NOT_ALLOWED - vhost {v} not found")));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_vhost_is_empty() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let v = guest_vhost(&t, "recreate");
        let u = unique("u-recreate");
        t.put_user(&u, "pw");
        t.set_permissions(&u, &v, ".*", ".*", ".*");
        {
            let c = connect(&t.uri("guest", "guest", &v)).await;
            let ch = channel(&c).await;
            qdecl(&ch, "q", FieldTable::default()).await;
            xdecl(&ch, "x", ExchangeKind::Fanout, FieldTable::default()).await;
            publish(&ch, "", "q", b"m").await;
            count_eventually(&ch, "q", 1).await;
            within(c.close(200, "bye")).await.unwrap();
        }
        t.delete_vhost(&v);
        t.put_vhost(&v);
        // permissions went with the vhost (checked with a user of its own:
        // RabbitMQ's HTTP API grants the creating user, guest, full rights)
        let got = connect_err(&t.uri(&u, "pw", &v)).await;
        let want = format!("NOT_ALLOWED - access to vhost '{v}' refused for user '{u}'");
        assert_eq!(got, (530, want));
        t.set_permissions("guest", &v, ".*", ".*", ".*");
        let c = connect(&t.uri("guest", "guest", &v)).await;
        let ch = channel(&c).await;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let r = within(ch.queue_declare("q", passive, FieldTable::default())).await;
        let want = format!("NOT_FOUND - no queue 'q' in vhost '{v}'");
        assert_eq!(code_text(&r.unwrap_err()), (404, want));
        let ch = channel(&c).await;
        let xpassive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let r =
            within(ch.exchange_declare("x", ExchangeKind::Fanout, xpassive, FieldTable::default()))
                .await;
        let want = format!("NOT_FOUND - no exchange 'x' in vhost '{v}'");
        assert_eq!(code_text(&r.unwrap_err()), (404, want));
    })
    .await
}

/// Publishes `n` persistent messages to `q` and waits for the confirms.
async fn publish_persistent(c: &Connection, q: &str, n: usize) {
    let ch = confirm_channel(c).await;
    for i in 0..n {
        let props = BasicProperties::default().with_delivery_mode(2);
        let body = format!("m{i}");
        let conf = within(ch.basic_publish("", q, Default::default(), body.as_bytes(), props))
            .await
            .expect("publish");
        assert!(within(conf).await.unwrap().is_ack());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_vhost_stays_deleted_after_restart_and_the_default_vhost_is_intact() {
    if std::env::var("WARREN_TEST_EXTERNAL_URI").is_ok() {
        eprintln!("skipped against an external broker: restarts an in-process broker");
        return;
    }
    deadline(120, async {
        let dir = common_durable::DataDir::new("vhost-delete");
        let h = common_durable::start_in(&dir.0, 2);
        let t = Tenancy::local(&h);
        let v = guest_vhost(&t, "durdel");
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let cv = connect(&t.uri("guest", "guest", &v)).await;
        let cd = connect(&t.uri("guest", "guest", "/")).await;
        for c in [&cv, &cd] {
            let ch = channel(c).await;
            within(ch.queue_declare("dq", durable, FieldTable::default()))
                .await
                .expect("durable queue");
            publish_persistent(c, "dq", 3).await;
        }
        let mut ev = watch_connection(&cv);
        t.delete_vhost(&v);
        assert_eq!(
            next_err(&mut ev).await,
            (320, format!("CONNECTION_FORCED - vhost '{v}' is deleted"))
        );
        within(cd.close(200, "bye")).await.unwrap();
        drop(t);
        h.shutdown();

        let h = common_durable::start_in(&dir.0, 2);
        let t = Tenancy::local(&h);
        assert!(h.admin().vhost(&v).is_err(), "vhost {v} back after restart");
        let got = connect_err(&t.uri("guest", "guest", &v)).await;
        assert_eq!(got, (530, format!("NOT_ALLOWED - vhost {v} not found")));
        let cd = connect(&t.uri("guest", "guest", "/")).await;
        let ch = channel(&cd).await;
        assert_eq!(
            message_count(&ch, "dq").await,
            3,
            "default vhost's messages"
        );
        // re-created: empty
        t.put_vhost(&v);
        t.set_permissions("guest", &v, ".*", ".*", ".*");
        let cv = connect(&t.uri("guest", "guest", &v)).await;
        let ch = channel(&cv).await;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let r = within(ch.queue_declare("dq", passive, FieldTable::default())).await;
        let want = format!("NOT_FOUND - no queue 'dq' in vhost '{v}'");
        assert_eq!(code_text(&r.unwrap_err()), (404, want));
        // a new queue of the same name there starts empty
        let ch = channel(&cv).await;
        within(ch.queue_declare("dq", durable, FieldTable::default()))
            .await
            .unwrap();
        assert_eq!(message_count(&ch, "dq").await, 0);
        drop((cv, cd));
        drop(t);
        h.shutdown();
    })
    .await
}
