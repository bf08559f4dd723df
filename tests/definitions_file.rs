//! Boot with RabbitMQ 3.10.8's own definitions export
//! (tests/fixtures/rabbitmq-3.10.8-definitions.json, the verbatim output of
//! `rabbitmqctl export_definitions`; users and passwords in
//! docs/oracle/tenancy-rabbitmq-3.10.8.md §7): its users log in, vhosts,
//! permissions, durable queues, exchanges and bindings are in place in the
//! right vhost, and policies/parameters are skipped without failing. A file
//! with a bad hash or broken JSON makes `warren::start` fail, not panic.

mod common_lapin;
mod common_tenancy;
mod util;

use common_lapin::*;
use common_tenancy::*;
use lapin::{options::*, types::FieldTable, Channel, Connection};
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rabbitmq-3.10.8-definitions.json")
}

fn boot(file: PathBuf) -> std::io::Result<warren::BrokerHandle> {
    let _ = env_logger::builder().is_test(true).try_init();
    warren::start(warren::Config {
        definitions: Some(file),
        ..warren::Config::for_tests(2)
    })
}

async fn connect_err(uri: &str) -> (u16, String) {
    match within(Connection::connect(uri, Default::default())).await {
        Ok(_) => panic!("connection to {uri} must be refused"),
        Err(e) => code_text(&e),
    }
}

async fn passive_count(ch: &Channel, q: &str) -> Result<u32, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    within(ch.queue_declare(q, passive, FieldTable::default()))
        .await
        .map(|ok| ok.message_count())
}

const LOGIN_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_users_log_in_with_their_passwords() {
    deadline(60, async {
        let h = boot(fixture()).expect("the 3.10.8 export loads");
        let t = Tenancy::local(&h);
        for (u, p, v) in [
            ("guest", "guest", "/"),
            ("admin1", "admin1-pass", "/"),
            ("admin1", "admin1-pass", "v1"),
            ("admin1", "admin1-pass", "v2"),
            ("mon1", "mon1-pass", "v1"),
            ("free1", "free1-pass", "v2"),
        ] {
            let c = within(Connection::connect(&t.uri(u, p, v), Default::default()))
                .await
                .unwrap_or_else(|e| panic!("{u} on {v}: {e}"));
            within(c.close(200, "bye")).await.unwrap();
        }
        let refused = (403, LOGIN_REFUSED.to_string());
        assert_eq!(connect_err(&t.uri("admin1", "wrong", "/")).await, refused);
        // nopw1 has no password (password_hash ""): every PLAIN login fails
        assert_eq!(connect_err(&t.uri("nopw1", "x", "v1")).await, refused);
        // mon1 has no permission on v2
        assert_eq!(
            connect_err(&t.uri("mon1", "mon1-pass", "v2")).await,
            (
                530,
                "NOT_ALLOWED - access to vhost 'v2' refused for user 'mon1'".into()
            )
        );
        let names: Vec<String> = h
            .admin()
            .list_vhosts()
            .into_iter()
            .map(|v| v.name)
            .collect();
        for v in ["/", "v1", "v2"] {
            assert!(names.iter().any(|n| n == v), "vhost {v} in {names:?}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_permissions_apply() {
    deadline(60, async {
        let h = boot(fixture()).expect("the 3.10.8 export loads");
        let t = Tenancy::local(&h);
        // free1 on v2: configure "" (nothing), write ^free\.
        let c = connect(&t.uri("free1", "free1-pass", "v2")).await;
        let ch = channel(&c).await;
        let r = within(ch.queue_declare("free.q", Default::default(), FieldTable::default())).await;
        let want = refused("configure", "queue", "free.q", "v2", "free1");
        assert_eq!(code_text(&r.unwrap_err()), (403, want));
        let ch = channel(&c).await;
        let mut errs = watch_channel(&ch);
        let _ = within(ch.basic_publish(
            "x.direct",
            "k1",
            Default::default(),
            b"m",
            Default::default(),
        ))
        .await;
        let want = refused("write", "exchange", "x.direct", "v2", "free1");
        assert_eq!(next_err(&mut errs).await, (403, want));
        // mon1 on v1: configure ^mon-.*
        let c = connect(&t.uri("mon1", "mon1-pass", "v1")).await;
        let ch = channel(&c).await;
        declare(&ch, "mon-q").await;
        let r = within(ch.queue_declare("other", Default::default(), FieldTable::default())).await;
        let want = refused("configure", "queue", "other", "v1", "mon1");
        assert_eq!(code_text(&r.unwrap_err()), (403, want));
        // mon1's topic permission on amq.topic: write ^mon\.
        let ch = confirm_channel(&c).await;
        let conf = within(ch.basic_publish(
            "amq.topic",
            "mon.1",
            Default::default(),
            b"m",
            Default::default(),
        ))
        .await
        .unwrap();
        assert!(within(conf).await.unwrap().is_ack());
        let mut errs = watch_channel(&ch);
        let _ = within(ch.basic_publish(
            "amq.topic",
            "x.y",
            Default::default(),
            b"m",
            Default::default(),
        ))
        .await;
        let want = topic_refused("write", "x.y", "amq.topic", "v1", "mon1");
        assert_eq!(next_err(&mut errs).await, (403, want));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_queues_exchanges_and_bindings_are_in_their_vhosts() {
    deadline(60, async {
        let h = boot(fixture()).expect("the 3.10.8 export loads");
        let t = Tenancy::local(&h);
        let c1 = connect(&t.uri("admin1", "admin1-pass", "v1")).await;
        let c2 = connect(&t.uri("admin1", "admin1-pass", "v2")).await;
        let c0 = connect(&t.uri("admin1", "admin1-pass", "/")).await;
        let (ch1, ch2, ch0) = (channel(&c1).await, channel(&c2).await, channel(&c0).await);
        for q in ["q.classic", "q.plain", "q.dead", "ttl.q"] {
            assert_eq!(
                passive_count(&ch1, q)
                    .await
                    .unwrap_or_else(|e| panic!("v1 {q}: {e}")),
                0
            );
        }
        for q in ["q.classic", "q.dead", "ttl.q"] {
            passive_count(&ch2, q)
                .await
                .unwrap_or_else(|e| panic!("v2 {q}: {e}"));
        }
        assert_eq!(passive_count(&ch0, "root.q").await.expect("/ root.q"), 0);
        // v1's queues are not in /
        let r = passive_count(&ch0, "q.classic").await;
        assert_eq!(
            code_text(&r.unwrap_err()),
            (404, "NOT_FOUND - no queue 'q.classic' in vhost '/'".into())
        );
        let ch0 = channel(&c0).await;
        // an imported binding: x.direct -k1-> q.classic in v1
        publish(&ch1, "x.direct", "k1", b"direct").await;
        // an imported exchange-to-exchange binding: x.topic -a.#-> x.fanout -> q.quorum
        publish(&ch1, "x.topic", "a.b", b"e2e").await;
        publish(&ch0, "root.x", "r", b"root").await;
        eventually("1 in v1's q.classic", async || {
            passive_count(&ch1, "q.classic").await.ok() == Some(1)
        })
        .await;
        eventually("1 in v1's q.quorum (via x.topic -> x.fanout)", async || {
            passive_count(&ch1, "q.quorum").await.ok() == Some(1)
        })
        .await;
        eventually("1 in /'s root.q", async || {
            passive_count(&ch0, "root.q").await.ok() == Some(1)
        })
        .await;
        assert_eq!(
            passive_count(&ch2, "q.classic").await.unwrap(),
            0,
            "v2 untouched"
        );
        // the imported alternate exchange: unroutable on x.direct -> ae -> q.plain
        publish(&ch1, "x.direct", "nowhere", b"ae").await;
        eventually("1 in v1's q.plain via ae", async || {
            passive_count(&ch1, "q.plain").await.ok() == Some(1)
        })
        .await;
    })
    .await
}

fn temp_file(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("warren-defs-{tag}")));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("defs.json");
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn a_bad_password_hash_fails_the_start() {
    let f = temp_file(
        "badhash",
        r#"{"users":[{"name":"bad","password_hash":"!!! not base64 !!!","hashing_algorithm":"rabbit_password_hashing_sha256","tags":[],"limits":{}}],
"vhosts":[],"permissions":[]}"#,
    );
    let r = std::panic::catch_unwind(|| boot(f.clone()).map(|h| h.shutdown()));
    let _ = std::fs::remove_dir_all(f.parent().unwrap());
    match r {
        Ok(Err(e)) => eprintln!("refused as expected: {e}"),
        Ok(Ok(())) => panic!("a bad password hash must make warren::start fail"),
        Err(_) => panic!("warren::start panicked on a bad password hash"),
    }
}

#[test]
fn invalid_json_fails_the_start() {
    let f = temp_file("badjson", r#"{"users":[{"name":"x", "#);
    let r = std::panic::catch_unwind(|| boot(f.clone()).map(|h| h.shutdown()));
    let _ = std::fs::remove_dir_all(f.parent().unwrap());
    match r {
        Ok(Err(e)) => eprintln!("refused as expected: {e}"),
        Ok(Ok(())) => panic!("invalid JSON must make warren::start fail"),
        Err(_) => panic!("warren::start panicked on invalid JSON"),
    }
}
