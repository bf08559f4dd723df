//! `warrenctl` (src/bin/warrenctl.rs): the built binary against an
//! in-process broker's HTTP API, with lapin checking what the commands did.

mod common_durable;
mod common_lapin;

use common_durable::{start_in, DataDir};
use common_lapin::*;
use std::process::{Command, Output};
use warren::{BrokerHandle, Config};

fn broker() -> BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    warren::start(Config::for_tests(2)).expect("broker starts")
}

/// Runs warrenctl against `b` as guest.
fn ctl(b: &BrokerHandle, args: &[&str]) -> Output {
    let port = b.http_port().expect("HTTP API").to_string();
    Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .args(["--port", &port])
        .args(args)
        .env_remove("WARREN_USER")
        .env_remove("WARREN_PASS")
        .output()
        .expect("warrenctl runs")
}

/// Runs warrenctl and asserts success; its stdout.
fn ok(b: &BrokerHandle, args: &[&str]) -> String {
    let out = ctl(b, args);
    assert!(
        out.status.success(),
        "warrenctl {args:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn uri(b: &BrokerHandle, user: &str, pass: &str, vhost: &str) -> String {
    format!(
        "amqp://{user}:{pass}@127.0.0.1:{}/{}",
        b.port(),
        vhost.replace('/', "%2F")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_user_and_set_permissions_then_publish() {
    let b = broker();
    let out = ok(&b, &["add_user", "alice", "alice-pw"]);
    assert_eq!(out, "Adding user \"alice\" ...\n");
    ok(
        &b,
        &["set_permissions", "-p", "/", "alice", ".*", ".*", ".*"],
    );
    let conn = connect(&uri(&b, "alice", "alice-pw", "/")).await;
    let ch = channel(&conn).await;
    declare(&ch, "ctl-q").await;
    publish(&ch, "", "ctl-q", b"hello").await;
    eventually("the message is in the queue", async || {
        message_count(&ch, "ctl-q").await == 1
    })
    .await;
    let _ = conn.close(200, "bye").await;

    // change_password keeps the tags, set_user_tags keeps the password.
    ok(&b, &["set_user_tags", "alice", "monitoring", "management"]);
    ok(&b, &["change_password", "alice", "new-pw"]);
    let users = ok(&b, &["list_users"]);
    assert!(
        users.contains("alice\t[monitoring, management]\n"),
        "{users}"
    );
    ok(&b, &["set_user_tags", "alice", "administrator"]);
    let conn = connect(&uri(&b, "alice", "new-pw", "/")).await;
    let _ = conn.close(200, "bye").await;
    ok(&b, &["delete_user", "alice"]);
    b.shutdown();
}

#[test]
fn list_users_and_vhosts_output() {
    let b = broker();
    ok(&b, &["add_user", "bob", "pw"]);
    ok(&b, &["set_user_tags", "bob", "administrator", "monitoring"]);
    let out = ok(&b, &["list_users"]);
    assert!(out.starts_with("Listing users ...\nuser\ttags\n"), "{out}");
    assert!(out.contains("guest\t[administrator]\n"), "{out}");
    assert!(out.contains("bob\t[administrator, monitoring]\n"), "{out}");
    let quiet = ok(&b, &["-q", "list_users"]);
    assert!(quiet.starts_with("user\ttags\n"), "{quiet}");

    ok(
        &b,
        &["add_vhost", "v1", "--description", "one", "--tags", "a,b"],
    );
    let out = ok(&b, &["list_vhosts"]);
    assert_eq!(out, "Listing vhosts ...\nname\n/\nv1\n");
    ok(
        &b,
        &["set_permissions", "-p", "v1", "bob", "^$", ".*", "^r"],
    );
    let out = ok(&b, &["list_permissions", "-p", "v1"]);
    assert_eq!(
        out,
        "Listing permissions for vhost \"v1\" ...\nuser\tconfigure\twrite\tread\nbob\t^$\t.*\t^r\n"
    );
    ok(&b, &["clear_permissions", "-p", "v1", "bob"]);
    assert_eq!(
        ok(&b, &["-q", "list_permissions", "-p", "v1"]),
        "user\tconfigure\twrite\tread\n"
    );
    ok(
        &b,
        &[
            "set_topic_permissions",
            "-p",
            "v1",
            "bob",
            "amq.topic",
            "^a",
            "^b",
        ],
    );
    ok(
        &b,
        &[
            "set_vhost_limits",
            "-p",
            "v1",
            r#"{"max-connections": 10, "max-queues": 5}"#,
        ],
    );
    ok(
        &b,
        &["set_vhost_limits", "-p", "v1", r#"{"max-queues": -1}"#],
    );
    ok(&b, &["set_user_limits", "bob", r#"{"max-channels": 3}"#]);
    let defs = ok(&b, &["export_definitions", "-"]);
    let defs: serde_json::Value = serde_json::from_str(&defs).unwrap();
    let v1 = defs["vhosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1")
        .unwrap();
    assert_eq!(v1["limits"], serde_json::json!({"max-connections": 10}));
    let bob = defs["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "bob")
        .unwrap();
    assert_eq!(bob["limits"], serde_json::json!({"max-channels": 3}));
    assert_eq!(defs["topic_permissions"].as_array().unwrap().len(), 1);
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_vhost_closes_its_connections() {
    let b = broker();
    ok(&b, &["add_vhost", "doomed"]);
    ok(
        &b,
        &["set_permissions", "-p", "doomed", "guest", ".*", ".*", ".*"],
    );
    let conn = connect(&uri(&b, "guest", "guest", "doomed")).await;
    let mut errs = watch_connection(&conn);
    let out = ok(&b, &["delete_vhost", "doomed"]);
    assert_eq!(out, "Deleting vhost \"doomed\" ...\n");
    let (code, text) = next_err(&mut errs).await;
    assert_eq!(
        (code, text.as_str()),
        (320, "CONNECTION_FORCED - vhost 'doomed' is deleted")
    );
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip() {
    let a = broker();
    ok(&a, &["add_vhost", "rt"]);
    ok(&a, &["add_user", "carol", "carol-pw"]);
    ok(
        &a,
        &["set_permissions", "-p", "rt", "carol", ".*", ".*", ".*"],
    );
    let file = std::env::temp_dir().join(format!("warrenctl-defs-{}.json", std::process::id()));
    let path = file.to_str().unwrap();
    let out = ok(&a, &["export_definitions", path]);
    assert!(
        out.starts_with("Exporting definitions in JSON to a file at"),
        "{out}"
    );
    a.shutdown();

    let b = broker();
    let out = ok(&b, &["import_definitions", path]);
    assert!(
        out.starts_with("Importing definitions in JSON from a file at"),
        "{out}"
    );
    let _ = std::fs::remove_file(&file);
    assert!(ok(&b, &["list_users"]).contains("carol\t[]\n"));
    assert!(ok(&b, &["list_vhosts"]).contains("\nrt\n"));
    let conn = connect(&uri(&b, "carol", "carol-pw", "rt")).await;
    let _ = conn.close(200, "bye").await;
    b.shutdown();
}

#[test]
fn failures_exit_non_zero_with_the_reason() {
    let b = broker();
    let out = ctl(&b, &["delete_user", "nosuch"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404") && err.contains("Not Found"), "{err}");

    ok(&b, &["add_user", "dave", "pw"]);
    let out = ctl(&b, &["add_user", "dave", "pw"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let out = ctl(&b, &["set_permissions", "dave", "(", ".*", ".*"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("400") && err.contains("bad_request"), "{err}");

    let out = ctl(&b, &["--password", "wrong", "list_users"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    let out = ctl(&b, &["set_vhost_limits", "not json"]);
    assert_eq!(out.status.code(), Some(64));
    b.shutdown();

    // Nothing listening: exit 69.
    let out = Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .args(["--port", "1", "list_users"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_survive_a_restart() {
    let dir = DataDir::new("warrenctl");
    let b = start_in(&dir.0, 2);
    ok(&b, &["add_vhost", "kept"]);
    ok(&b, &["add_user", "erin", "erin-pw"]);
    ok(&b, &["set_user_tags", "erin", "management"]);
    ok(
        &b,
        &["set_permissions", "-p", "kept", "erin", ".*", ".*", ".*"],
    );
    b.shutdown();

    let b = start_in(&dir.0, 2);
    assert!(ok(&b, &["list_users"]).contains("erin\t[management]\n"));
    assert!(ok(&b, &["list_vhosts"]).contains("\nkept\n"));
    let conn = connect(&uri(&b, "erin", "erin-pw", "kept")).await;
    let _ = conn.close(200, "bye").await;
    b.shutdown();
}

/// The inspection commands: rabbitmqctl's default columns, chosen info
/// items, `--no-table-headers`, `--formatter json`, `-q`; then purge_queue,
/// delete_queue and close_connection act on what lapin holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_commands_purge_delete_and_close() {
    deadline(60, async {
        let b = broker();
        let conn = lapin::Connection::connect(
            &uri(&b, "guest", "guest", "/"),
            lapin::ConnectionProperties::default().with_connection_name("ctl-conn".into()),
        )
        .await
        .expect("connects");
        let mut errors = watch_connection(&conn);
        let ch = channel(&conn).await;
        declare(&ch, "ctl-list-q").await;
        for _ in 0..3 {
            publish(&ch, "", "ctl-list-q", b"m").await;
        }
        eventually("three messages", async || {
            message_count(&ch, "ctl-list-q").await == 3
        })
        .await;
        let cch = channel(&conn).await;
        let _consumer = within(cch.basic_consume(
            "ctl-list-q",
            "ctl-tag",
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        ))
        .await
        .unwrap();

        // Default columns: name, messages; the queue is listed (it has a
        // consumer now, which may hold some of the messages unacked).
        let out = ok(&b, &["-q", "list_queues"]);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("name\tmessages"), "{out}");
        assert!(out.lines().any(|l| l == "ctl-list-q\t3"), "{out}");
        // Chosen columns, no headers.
        let out = ok(
            &b,
            &[
                "-q",
                "--no-table-headers",
                "list_queues",
                "name",
                "durable",
                "consumers",
            ],
        );
        assert!(out.lines().any(|l| l == "ctl-list-q\tfalse\t1"), "{out}");
        // Unknown info item: rabbitmqctl's usage error.
        let bad = ctl(&b, &["list_queues", "name", "nonsense"]);
        assert_eq!(bad.status.code(), Some(64));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("nonsense"));
        // JSON.
        let out = ok(
            &b,
            &[
                "-q",
                "--formatter",
                "json",
                "list_queues",
                "name",
                "messages",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert!(v
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "ctl-list-q" && q["messages"] == 3));

        let out = ok(&b, &["-q", "list_exchanges"]);
        assert!(out.lines().any(|l| l == "amq.topic\ttopic"), "{out}");
        let out = ok(&b, &["-q", "list_bindings"]);
        assert!(
            out.lines()
                .any(|l| l == "\texchange\tctl-list-q\tqueue\tctl-list-q\t[]"),
            "the default exchange's binding: {out}"
        );
        let out = ok(
            &b,
            &[
                "-q",
                "list_connections",
                "user",
                "state",
                "client_properties",
            ],
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("guest\trunning\t") && l.contains("ctl-conn")),
            "{out}"
        );
        let out = ok(&b, &["-q", "list_channels"]);
        assert_eq!(out.lines().count(), 3, "header and two channels: {out}");
        let out = ok(&b, &["-q", "list_consumers"]);
        assert!(
            out.contains("ctl-list-q\t") && out.contains("\tctl-tag\ttrue\t"),
            "{out}"
        );
        let out = ok(&b, &["status"]);
        assert!(out.contains("RabbitMQ version: "), "{out}");
        assert!(out.contains("queues: 1"), "{out}");

        // purge_queue empties what is ready; delete_queue removes it.
        within(cch.close(200, "bye")).await.unwrap();
        eventually("the consumer's messages are back", async || {
            message_count(&ch, "ctl-list-q").await == 3
        })
        .await;
        ok(&b, &["purge_queue", "ctl-list-q"]);
        assert_eq!(message_count(&ch, "ctl-list-q").await, 0);
        let gone = ctl(&b, &["delete_queue", "no-such-queue"]);
        assert_eq!(
            gone.status.code(),
            Some(1),
            "stderr: {}",
            String::from_utf8_lossy(&gone.stderr)
        );
        ok(&b, &["delete_queue", "ctl-list-q"]);

        // close_connection by the name list_connections shows.
        let name = ok(
            &b,
            &["-q", "--no-table-headers", "list_connections", "name"],
        );
        let name = name.lines().next().expect("one connection").to_string();
        ok(&b, &["close_connection", &name, "maintenance"]);
        assert_eq!(
            next_err(&mut errors).await,
            (320, "CONNECTION_FORCED - maintenance".to_string())
        );
        b.shutdown();
    })
    .await;
}
