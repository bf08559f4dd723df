//! Dynamic shovels with warren at both ends: a shovel defined through the
//! HTTP API (`PUT /api/parameters/shovel/{vhost}/{name}`) moves a source
//! queue's backlog and then its live traffic, with every property, header
//! and body intact; deleting it stops it; a destination killed with
//! SIGKILL mid-way loses nothing confirmed and the rest follows once it is
//! back (the shovel is a durable definition and resumes); a bad URI or a
//! missing source queue shows in the status with a reason while the shovel
//! keeps retrying; `src-delete-after` removes the shovel when done.
//!
//! RabbitMQ's behaviour: docs/shovels-rabbitmq.md.

mod common_durable;
mod common_http;
mod common_lapin;
use common_http::Api;
use common_lapin::*;

use lapin::options::{
    BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warren::{BrokerHandle, Config};

fn broker() -> (BrokerHandle, Api) {
    let _ = env_logger::builder().is_test(true).try_init();
    let b = warren::start(Config::for_tests(2)).expect("broker starts");
    let api = Api::new(b.http_port().expect("the HTTP API runs in tests"));
    (b, api)
}

fn uri(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `f` every 20 ms until it gives Some, for at most `secs`.
fn poll<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn put_shovel(api: &Api, name: &str, value: Value) {
    let a = api.put(
        &format!("/api/parameters/shovel/%2f/{name}"),
        &json!({ "value": value }).to_string(),
    );
    assert!(
        a.status == 201 || a.status == 204,
        "PUT shovel: {} {}",
        a.status,
        a.body
    );
}

/// The status entry of shovel `name`, if listed.
fn status(api: &Api, name: &str) -> Option<Value> {
    api.get_json("/api/shovels/%2f")
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

fn wait_state(api: &Api, name: &str, state: &str) -> Value {
    poll(&format!("shovel {name} {state}"), 30, || {
        status(api, name).filter(|s| s["state"] == state)
    })
}

/// Messages in a queue (ready + unacked), by a passive declare.
async fn count(ch: &Channel, q: &str) -> u32 {
    ch.queue_declare(
        q,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

/// A channel in confirm mode.
async fn confirming(c: &lapin::Connection) -> Channel {
    let ch = channel(c).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

/// basic.get with auto-ack.
async fn get(ch: &Channel, q: &str) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(q, lapin::options::BasicGetOptions { no_ack: true })
        .await
        .unwrap()
}

async fn declare(ch: &Channel, q: &str) {
    ch.queue_declare(
        q,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// Publishes bodies `from..to` ("m<i>") to queue `q`, persistent, confirmed.
async fn publish_range(ch: &Channel, q: &str, from: u32, to: u32) {
    for i in from..to {
        ch.basic_publish(
            "",
            q,
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
}

/// Every property and a headers table of every common type.
fn rich_properties() -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert("s".into(), AMQPValue::LongString("text".into()));
    h.insert("i".into(), AMQPValue::LongInt(-7));
    h.insert("l".into(), AMQPValue::LongLongInt(1 << 40));
    h.insert("b".into(), AMQPValue::Boolean(true));
    h.insert("d".into(), AMQPValue::Double(2.5));
    h.insert(
        "a".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString("x".into())])),
    );
    let mut inner = FieldTable::default();
    inner.insert("k".into(), AMQPValue::ShortInt(3));
    h.insert("t".into(), AMQPValue::FieldTable(inner));
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_content_encoding(ShortString::from("gzip"))
        .with_headers(h)
        .with_delivery_mode(2)
        .with_priority(3)
        .with_correlation_id(ShortString::from("corr"))
        .with_reply_to(ShortString::from("replies"))
        .with_expiration(ShortString::from("600000"))
        .with_message_id(ShortString::from("mid-1"))
        .with_timestamp(1_700_000_000)
        .with_type(ShortString::from("kind"))
        .with_user_id(ShortString::from("guest"))
        .with_app_id(ShortString::from("app"))
        .with_cluster_id(ShortString::from("cluster"))
}

#[test]
fn backlog_then_live_traffic_moves_with_properties_intact() {
    let (src_b, _src_api) = broker();
    let (dst_b, api) = broker();
    rt().block_on(async {
        let sc = connect(&uri(src_b.port())).await;
        let sch = confirming(&sc).await;
        declare(&sch, "src").await;
        // One message with everything set, and a 200 KB body (several
        // frames), then a backlog.
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        sch.basic_publish(
            "",
            "src",
            BasicPublishOptions::default(),
            &body,
            rich_properties(),
        )
        .await
        .unwrap();
        publish_range(&sch, "src", 0, 5000).await;

        put_shovel(
            &api,
            "s1",
            json!({
                "src-uri": uri(src_b.port()),
                "src-queue": "src",
                "dest-uri": "amqp://",
                "dest-queue": "dst",
            }),
        );
        let s = wait_state(&api, "s1", "running");
        assert_eq!(
            s["src_uri"],
            format!("amqp://127.0.0.1:{}/%2f", src_b.port()),
            "{s}"
        );
        assert_eq!(s["dest_uri"], "amqp://");
        assert_eq!(
            (s["src_queue"].as_str(), s["dest_queue"].as_str()),
            (Some("src"), Some("dst"))
        );
        assert_eq!(s["type"], "dynamic");

        let dc = connect(&uri(dst_b.port())).await;
        let dch = channel(&dc).await;
        eventually("the backlog arrives", async || {
            count(&dch, "dst").await == 5001
        })
        .await;
        // Live traffic follows.
        publish_range(&sch, "src", 5000, 6000).await;
        eventually("live traffic arrives", async || {
            count(&dch, "dst").await == 6001
        })
        .await;
        eventually("the source is drained and acked", async || {
            count(&sch, "src").await == 0
        })
        .await;
        let s = poll("forwarded 6001", 10, || {
            status(&api, "s1").filter(|s| s["forwarded"] == 6001)
        });
        assert_eq!(s["pending"], 0);

        // In order, byte for byte.
        let first = get(&dch, "dst").await.expect("a message");
        assert_eq!(first.delivery.data, body);
        assert_eq!(first.delivery.properties, rich_properties());
        assert!(!first.delivery.redelivered);
        for i in 0..6000 {
            let m = get(&dch, "dst").await.expect("a message");
            assert_eq!(m.delivery.data, format!("m{i}").as_bytes());
            assert_eq!(m.delivery.properties.delivery_mode(), &Some(2));
            assert!(m.delivery.properties.headers().is_none());
        }
    });
    dst_b.shutdown();
    src_b.shutdown();
}

#[test]
fn forward_headers_and_exchange_destination() {
    let (b, api) = broker();
    rt().block_on(async {
        let c = connect(&uri(b.port())).await;
        let ch = channel(&c).await;
        declare(&ch, "fh-src").await;
        declare(&ch, "fh-dst").await;
        ch.queue_bind("fh-dst", "amq.direct", "rk", Default::default(), FieldTable::default())
            .await
            .unwrap();
        put_shovel(
            &api,
            "fh",
            json!({
                "src-uri": "amqp://",
                "src-queue": "fh-src",
                "dest-uri": "amqp://",
                "dest-exchange": "amq.direct",
                "dest-exchange-key": "rk",
                "dest-add-forward-headers": true,
                "dest-add-timestamp-header": true,
                "ack-mode": "on-publish",
            }),
        );
        wait_state(&api, "fh", "running");
        ch.basic_publish("", "fh-src", BasicPublishOptions::default(), b"hi", BasicProperties::default())
            .await
            .unwrap();
        let m = poll_for("the forwarded message", async || {
            get(&ch, "fh-dst").await
        })
        .await;
        let h = m.delivery.properties.headers().clone().expect("headers");
        let AMQPValue::FieldArray(list) = &h.inner()["x-shovelled"] else {
            panic!("x-shovelled: {h:?}")
        };
        let AMQPValue::FieldTable(t) = &list.as_slice()[0] else {
            panic!("{list:?}")
        };
        let get = |k: &str| match t.inner().get(k) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(get("shovel-name"), "fh");
        assert_eq!(get("shovel-type"), "dynamic");
        assert_eq!(get("shovel-vhost"), "/");
        assert_eq!(get("src-queue"), "fh-src");
        assert_eq!(get("dest-exchange"), "amq.direct");
        assert_eq!(get("dest-exchange-key"), "rk");
        assert_eq!(get("src-uri"), "amqp://");
        assert!(matches!(h.inner().get("x-shovelled-timestamp"), Some(AMQPValue::LongLongInt(t)) if *t > 1_700_000_000));
    });
    b.shutdown();
}

#[test]
fn delete_stops_the_shovel() {
    let (b, api) = broker();
    rt().block_on(async {
        let c = connect(&uri(b.port())).await;
        let ch = confirming(&c).await;
        declare(&ch, "del-src").await;
        put_shovel(
            &api,
            "del",
            json!({"src-uri": "amqp://", "src-queue": "del-src", "dest-uri": "amqp://", "dest-queue": "del-dst"}),
        );
        wait_state(&api, "del", "running");
        publish_range(&ch, "del-src", 0, 10).await;
        eventually("moved", async || count(&ch, "del-dst").await == 10).await;

        let a = api.delete("/api/shovels/vhost/%2f/del");
        assert_eq!(a.status, 204, "{}", a.body);
        poll("the status entry goes", 10, || status(&api, "del").is_none().then_some(()));
        assert_eq!(api.get("/api/parameters/shovel/%2f/del").status, 404);
        // Its connections are closed: nothing consumes the source any more.
        poll("the shovel's connections close", 10, || {
            let conns = api.get_json("/api/connections");
            let named = conns.as_array().unwrap().iter().any(|c| {
                c["client_properties"]["connection_name"] == "Shovel del"
            });
            (!named).then_some(())
        });
        publish_range(&ch, "del-src", 10, 15).await;
        assert_eq!(count(&ch, "del-src").await, 5);
        assert_eq!(count(&ch, "del-dst").await, 10);
        assert_eq!(api.delete("/api/shovels/vhost/%2f/del").status, 404);
    });
    b.shutdown();
}

#[test]
fn bad_uri_and_missing_source_queue_show_a_reason_and_are_retried() {
    let (b, api) = broker();
    let dead = common_durable::free_port();
    put_shovel(
        &api,
        "bad-uri",
        json!({"src-uri": format!("amqp://guest:guest@127.0.0.1:{dead}"), "src-queue": "q",
               "dest-uri": "amqp://", "dest-queue": "q", "reconnect-delay": 1}),
    );
    let s = wait_state(&api, "bad-uri", "terminated");
    let reason = s["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("failed to connect to the source"),
        "{reason}"
    );
    assert!(
        !reason.contains("guest:guest"),
        "credentials leak: {reason}"
    );
    // Retried: it goes through `starting` again, with a new timestamp.
    let t0 = s["timestamp"].clone();
    poll("a retry", 15, || {
        status(&api, "bad-uri").filter(|s| s["timestamp"] != t0)
    });

    put_shovel(
        &api,
        "later",
        json!({"src-uri": "amqp://", "src-queue": "not-yet", "dest-uri": "amqp://",
               "dest-queue": "later-dst", "reconnect-delay": 1}),
    );
    let s = wait_state(&api, "later", "terminated");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("NOT_FOUND - no queue 'not-yet' in vhost '/'"),
        "{reason}"
    );
    rt().block_on(async {
        let c = connect(&uri(b.port())).await;
        let ch = channel(&c).await;
        declare(&ch, "not-yet").await;
        ch.basic_publish(
            "",
            "not-yet",
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap();
        wait_state(&api, "later", "running");
        eventually("the message moves once the queue exists", async || {
            count(&ch, "later-dst").await == 1
        })
        .await;
    });
    b.shutdown();
}

#[test]
fn delete_after_queue_length_moves_the_backlog_and_removes_itself() {
    let (b, api) = broker();
    rt().block_on(async {
        let c = connect(&uri(b.port())).await;
        let ch = confirming(&c).await;
        declare(&ch, "da-src").await;
        publish_range(&ch, "da-src", 0, 100).await;
        put_shovel(
            &api,
            "da",
            json!({"src-uri": "amqp://", "src-queue": "da-src", "dest-uri": "amqp://",
                   "dest-queue": "da-dst", "src-delete-after": "queue-length"}),
        );
        poll("the shovel deletes its parameter", 20, || {
            (api.get("/api/parameters/shovel/%2f/da").status == 404).then_some(())
        });
        assert_eq!(count(&ch, "da-dst").await, 100);
        // Published after: stays.
        publish_range(&ch, "da-src", 100, 101).await;
        assert_eq!(count(&ch, "da-src").await, 1);
    });
    b.shutdown();
}

/// A child process killed when dropped (a failed assertion leaves none
/// behind).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The destination (which runs the shovel: `dest-uri amqp://`) is killed
/// with SIGKILL while messages flow. After its restart the shovel, a
/// durable definition, resumes: every message is at the destination, the
/// ones confirmed before the kill exactly once, and at most the
/// unconfirmed window (the prefetch) twice.
#[test]
fn kill9_of_the_destination_loses_nothing() {
    const N: u32 = 30_000;
    let (src_b, src_api) = broker();
    let dir = common_durable::DataDir::new("shovel-kill9");
    let http = common_durable::free_port();
    let start = |port: u16| {
        let child = common_durable::warren_command_http(port, http, &dir.0)
            .args(["--shards", "2", "--log-level", "warn"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("warren starts");
        common_durable::wait_listening(port);
        common_durable::wait_listening(http);
        KillOnDrop(child)
    };
    let port = common_durable::free_port();
    let mut child = start(port);
    let api = Api::new(http);
    rt().block_on(async {
        let sc = connect(&uri(src_b.port())).await;
        let sch = confirming(&sc).await;
        declare(&sch, "k-src").await;
        publish_range(&sch, "k-src", 0, N).await;
        put_shovel(
            &api,
            "k",
            json!({"src-uri": uri(src_b.port()), "src-queue": "k-src", "dest-uri": "amqp://",
                   "dest-queue": "k-dst", "reconnect-delay": 1, "src-prefetch-count": 500}),
        );
        wait_state(&api, "k", "running");
        {
            let dc = connect(&uri(port)).await;
            let dch = channel(&dc).await;
            eventually("part of it moved", async || {
                count(&dch, "k-dst").await >= N / 4
            })
            .await;
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let in_flight = count(&sch, "k-src").await;
        assert!(in_flight > 0, "all moved before the kill: make N larger");

        let _child = start(port);
        let dc = connect(&uri(port)).await;
        let dch = channel(&dc).await;
        // Everything acknowledged at the source (ready and unacked both 0)
        // was confirmed by the destination first.
        poll("the rest follows", 60, || {
            let q = src_api.get_json("/api/queues/%2f/k-src");
            (q["messages"] == 0 && q["messages_unacknowledged"] == 0).then_some(())
        });
        let total = count(&dch, "k-dst").await;
        let mut seen = vec![0u32; N as usize];
        for _ in 0..total {
            let m = dch
                .basic_get("k-dst", lapin::options::BasicGetOptions { no_ack: false })
                .await
                .unwrap()
                .expect("a message");
            let i: usize = std::str::from_utf8(&m.delivery.data[1..])
                .unwrap()
                .parse()
                .unwrap();
            seen[i] += 1;
            m.ack(BasicAckOptions::default()).await.unwrap();
        }
        let missing = seen.iter().filter(|&&n| n == 0).count();
        let twice = seen.iter().filter(|&&n| n == 2).count();
        let more = seen.iter().filter(|&&n| n > 2).count();
        println!("kill -9 of the destination: {N} messages, {missing} missing, {twice} twice");
        assert_eq!(missing, 0);
        assert_eq!(more, 0);
        assert!(
            twice <= 500,
            "{twice} duplicates: more than the unconfirmed window"
        );
    });
    src_b.shutdown();
}

#[test]
fn warrenctl_shovel_commands() {
    let (b, api) = broker();
    let port = b.http_port().unwrap().to_string();
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
            .args(["--port", &port, "-q"])
            .args(args)
            .env_remove("WARREN_USER")
            .env_remove("WARREN_PASS")
            .output()
            .expect("warrenctl runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    rt().block_on(async {
        let c = connect(&uri(b.port())).await;
        let ch = channel(&c).await;
        declare(&ch, "ctl-src").await;
    });
    ctl(&[
        "set_parameter",
        "shovel",
        "ctl",
        r#"{"src-uri": "amqp://", "src-queue": "ctl-src", "dest-uri": "amqp://", "dest-queue": "ctl-dst"}"#,
    ]);
    let running = wait_state(&api, "ctl", "running");
    let out = ctl(&["shovel_status"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("name\tvhost\ttype\tstate\tsource\tdestination\ttermination_reason\tlast_changed\tforwarded")
    );
    let row: Vec<&str> = lines.next().expect("a row").split('\t').collect();
    assert_eq!(
        &row[..6],
        &["ctl", "/", "dynamic", "running", "amqp://", "amqp://"]
    );
    // restart: starting again (a new timestamp), then running.
    std::thread::sleep(Duration::from_millis(1100)); // the timestamp has seconds
    ctl(&["restart_shovel", "ctl"]);
    poll("restarted", 20, || {
        status(&api, "ctl")
            .filter(|s| s["state"] == "running" && s["timestamp"] != running["timestamp"])
    });
    ctl(&["delete_shovel", "ctl"]);
    poll("deleted", 10, || {
        status(&api, "ctl").is_none().then_some(())
    });
    assert_eq!(ctl(&["shovel_status"]).lines().count(), 1);
    b.shutdown();
}

/// A destination that blocks (memory alarm) slows the shovel to a stop:
/// the shovel shows `blocked`, what it holds stays within the prefetch, the
/// rest waits in the source queue; everything follows once the alarm
/// clears.
#[test]
fn a_blocked_destination_holds_the_shovel_back() {
    let (src_b, _) = broker();
    let (dst_b, api) = broker();
    rt().block_on(async {
        let sc = connect(&uri(src_b.port())).await;
        let sch = confirming(&sc).await;
        declare(&sch, "fl-src").await;
        put_shovel(
            &api,
            "fl",
            json!({"src-uri": uri(src_b.port()), "src-queue": "fl-src", "dest-uri": "amqp://",
                   "dest-queue": "fl-dst", "src-prefetch-count": 100}),
        );
        wait_state(&api, "fl", "running");
        let dc = connect(&uri(dst_b.port())).await;
        let dch = channel(&dc).await;
        publish_range(&sch, "fl-src", 0, 10).await;
        eventually("the first ten move", async || {
            count(&dch, "fl-dst").await == 10
        })
        .await;

        dst_b.alarms().set_memory_limit(1);
        publish_range(&sch, "fl-src", 10, 20_010).await;
        wait_state(&api, "fl", "blocked");
        // Held back: what moved before the alarm took effect stays put, the
        // rest waits in the source, at most the prefetch (100) in flight.
        let moved = count(&dch, "fl-dst").await - 10;
        let ready = count(&sch, "fl-src").await;
        assert!(
            moved < 20_000,
            "everything moved: the shovel was not held back"
        );
        assert!(
            ready + moved >= 20_000 - 100,
            "only {ready} left in the source, {moved} moved"
        );
        let s = status(&api, "fl").unwrap();
        assert!(s["pending"].as_u64().unwrap() <= 100, "{s}");
        // Nothing more moves while blocked (a short look: it is a negative).
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            count(&dch, "fl-dst").await - 10,
            moved,
            "moved while blocked"
        );

        dst_b.alarms().set_memory_limit(u64::MAX);
        wait_state(&api, "fl", "running");
        eventually("the rest follows", async || {
            count(&dch, "fl-dst").await == 20_010
        })
        .await;
        eventually("the source is drained", async || {
            count(&sch, "fl-src").await == 0
        })
        .await;
    });
    dst_b.shutdown();
    src_b.shutdown();
}

/// A source that stops answering without closing its socket (SIGSTOP, as a
/// partition looks) is given up after two heartbeat intervals, and the
/// shovel is running again once it answers.
#[test]
fn a_silent_source_is_noticed_by_heartbeats() {
    let (b, api) = broker();
    let dir = common_durable::DataDir::new("shovel-heartbeat");
    let src = common_durable::Proc::start(&dir.0);
    rt().block_on(async {
        let c = connect(&uri(src.port)).await;
        let ch = channel(&c).await;
        declare(&ch, "hb-src").await;
        ch.close(200, "bye").await.unwrap();
        c.close(200, "bye").await.unwrap();
    });
    put_shovel(
        &api,
        "hb",
        json!({"src-uri": format!("{}?heartbeat=1", uri(src.port)), "src-queue": "hb-src",
               "dest-uri": "amqp://", "dest-queue": "hb-dst", "reconnect-delay": 1}),
    );
    wait_state(&api, "hb", "running");
    src.signal(libc::SIGSTOP);
    let s = wait_state(&api, "hb", "terminated");
    src.signal(libc::SIGCONT);
    assert!(
        s["reason"].as_str().unwrap().contains("heartbeat timeout"),
        "{s}"
    );
    wait_state(&api, "hb", "running");
    b.shutdown();
}

/// AMQP 1.0 at either end (`src-protocol`/`dest-protocol` `amqp10`,
/// RabbitMQ 4 addresses): 0-9-1 → 1.0, 1.0 → 0-9-1 and 1.0 → 1.0, over the
/// network and direct, with on-confirm. The message keeps its body,
/// content type, message id and headers (through warren's 1.0 mapping).
#[test]
fn amqp10_at_either_end() {
    let (b, api) = broker();
    rt().block_on(async {
        let c = connect(&uri(b.port())).await;
        let ch = confirming(&c).await;
        for q in ["x10-a", "x10-b", "x10-c", "x10-d"] {
            declare(&ch, q).await;
        }
        // a (0-9-1) -> b (1.0 dest), b (1.0 src) -> c (0-9-1), c -> d both 1.0.
        put_shovel(
            &api,
            "to10",
            json!({"src-uri": uri(b.port()), "src-queue": "x10-a",
                   "dest-protocol": "amqp10", "dest-uri": "amqp://", "dest-address": "/queues/x10-b",
                   "dest-add-forward-headers": true}),
        );
        put_shovel(
            &api,
            "from10",
            json!({"src-protocol": "amqp10", "src-uri": uri(b.port()), "src-address": "/queues/x10-b",
                   "dest-uri": "amqp://", "dest-queue": "x10-c"}),
        );
        put_shovel(
            &api,
            "both10",
            json!({"src-protocol": "amqp10", "src-uri": "amqp://", "src-address": "/queues/x10-c",
                   "dest-protocol": "amqp10", "dest-uri": "amqp://", "dest-address": "/queues/x10-d",
                   "src-prefetch-count": 10}),
        );
        for n in ["to10", "from10", "both10"] {
            wait_state(&api, n, "running");
        }
        let mut h = FieldTable::default();
        h.insert("k".into(), AMQPValue::LongString("v".into()));
        for i in 0..300u32 {
            ch.basic_publish(
                "",
                "x10-a",
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default()
                    .with_content_type(ShortString::from("text/plain"))
                    .with_message_id(ShortString::from(format!("id{i}")))
                    .with_headers(h.clone())
                    .with_delivery_mode(2),
            )
            .await
            .unwrap();
        }
        ch.wait_for_confirms().await.unwrap();
        eventually("all reach the last queue", async || count(&ch, "x10-d").await == 300).await;
        for q in ["x10-a", "x10-b", "x10-c"] {
            eventually("the others are drained", async || count(&ch, q).await == 0).await;
        }
        for i in 0..300u32 {
            let m = get(&ch, "x10-d").await.expect("a message");
            assert_eq!(m.delivery.data, format!("m{i}").as_bytes());
            let p = &m.delivery.properties;
            assert_eq!(p.content_type().as_ref().map(|s| s.as_str()), Some("text/plain"));
            assert_eq!(p.message_id().as_ref().map(|s| s.to_string()), Some(format!("id{i}")));
            assert_eq!(p.delivery_mode(), &Some(2));
            let hv = p.headers().as_ref().and_then(|h| h.inner().get("k").cloned());
            assert_eq!(hv, Some(AMQPValue::LongString("v".into())), "{p:?}");
            // RabbitMQ 4.2's forward headers of a 1.0 destination: message
            // annotations, back as headers at 0-9-1.
            let by = p.headers().as_ref().and_then(|h| h.inner().get("x-opt-shovel-name").cloned());
            assert_eq!(by, Some(AMQPValue::LongString("to10".into())), "{p:?}");
        }
        for n in ["to10", "from10", "both10"] {
            let s = poll("forwarded 300", 10, || status(&api, n).filter(|s| s["forwarded"] == 300));
            assert_eq!(s["pending"], 0);
        }
        // A body of several frames at every hop (131072-byte frames).
        let big: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
        ch.basic_publish("", "x10-a", BasicPublishOptions::default(), &big, BasicProperties::default())
            .await
            .unwrap();
        let m = poll_for("the big message", async || {
            get(&ch, "x10-d").await
        })
        .await;
        assert!(m.delivery.data == big, "the big body changed");
        let s = status(&api, "both10").unwrap();
        assert_eq!((s["src_protocol"].as_str(), s["dest_protocol"].as_str()), (Some("amqp10"), Some("amqp10")));
        assert_eq!(s["src_address"], "/queues/x10-c");
        assert_eq!(s["dest_address"], "/queues/x10-d");
    });
    b.shutdown();
}
