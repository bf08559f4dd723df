//! RabbitMQ's own command-line management client, `rabbitmqadmin` 3.10.8
//! (`/usr/bin/rabbitmqadmin` from Debian's rabbitmq-server package, or the
//! unchanged copy in tests/tools/), against warren's HTTP API: it lists,
//! declares, publishes, gets, purges, deletes, closes connections, and
//! exports and imports definitions. The tool is RabbitMQ's code, not ours:
//! what it sends and how it reads the answers is what a RabbitMQ user's
//! scripts get.

mod common_lapin;
use common_lapin::*;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use warren::{BrokerHandle, Config};

fn broker() -> BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    warren::start(Config::for_tests(2)).expect("broker starts")
}

/// The rabbitmqadmin script: the installed one, else the vendored copy.
fn script() -> PathBuf {
    let installed = PathBuf::from("/usr/bin/rabbitmqadmin");
    if installed.exists() {
        return installed;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/rabbitmqadmin-3.10.8")
}

/// Runs `rabbitmqadmin <args>` against the broker; (exit ok, stdout,
/// stderr). Python 3's standard library is all it needs.
fn admin(b: &BrokerHandle, args: &[&str]) -> (bool, String, String) {
    let port = b.http_port().expect("HTTP API").to_string();
    let out = Command::new("python3")
        .arg(script())
        .args(["-H", "127.0.0.1", "-P", &port, "-u", "guest", "-p", "guest"])
        .args(args)
        .output()
        .expect("python3 runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !stderr.contains("Traceback"),
        "rabbitmqadmin {args:?} crashed:\n{stderr}"
    );
    (out.status.success(), stdout, stderr)
}

/// `rabbitmqadmin … <args>` must succeed; its stdout.
fn ok(b: &BrokerHandle, args: &[&str]) -> String {
    let (success, stdout, stderr) = admin(b, args);
    assert!(
        success,
        "rabbitmqadmin {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// `-f raw_json list <what> [columns]` parsed.
fn list(b: &BrokerHandle, what: &[&str]) -> Vec<Value> {
    let mut args = vec!["-f", "raw_json", "list"];
    args.extend_from_slice(what);
    let text = ok(b, &args);
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => items,
        other => panic!("list {what:?}: not a JSON list: {other:?}\n{text}"),
    }
}

fn queue<'a>(items: &'a [Value], name: &str) -> Option<&'a Value> {
    items.iter().find(|q| q["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_publish_get_list_and_delete() {
    deadline(120, async {
        let b = broker();
        let (q, x) = (unique("ra-q"), unique("ra-x"));
        let out = ok(
            &b,
            &["declare", "queue", &format!("name={q}"), "durable=true"],
        );
        assert!(out.contains("queue declared"), "{out}");
        ok(
            &b,
            &["declare", "exchange", &format!("name={x}"), "type=topic"],
        );
        ok(
            &b,
            &[
                "declare",
                "binding",
                &format!("source={x}"),
                &format!("destination={q}"),
                "routing_key=a.#",
            ],
        );
        let queues = list(&b, &["queues"]);
        let mine = queue(&queues, &q).expect("the declared queue is listed");
        assert_eq!(mine["durable"], true);
        let exchanges = list(&b, &["exchanges"]);
        assert!(exchanges
            .iter()
            .any(|e| e["name"] == x.as_str() && e["type"] == "topic"));
        let bindings = list(&b, &["bindings"]);
        assert!(
            bindings.iter().any(|bd| bd["source"] == x.as_str()
                && bd["destination"] == q.as_str()
                && bd["routing_key"] == "a.#"),
            "binding listed: {bindings:?}"
        );

        // Publish through the exchange; it routes to the queue.
        let out = ok(
            &b,
            &[
                "publish",
                &format!("exchange={x}"),
                "routing_key=a.b",
                "payload=hello from rabbitmqadmin",
            ],
        );
        assert!(out.contains("Message published"), "{out}");
        assert!(!out.to_lowercase().contains("not routed"), "{out}");
        let out = ok(
            &b,
            &[
                "publish",
                &format!("exchange={x}"),
                "routing_key=zzz",
                "payload=lost",
            ],
        );
        assert!(
            out.to_lowercase().contains("not routed"),
            "an unroutable publish says so: {out}"
        );
        poll_for("the queue shows the message", || {
            let n = queue(&list(&b, &["queues"]), &q).map(|v| v["messages"].clone());
            async move { (n == Some(Value::from(1))).then_some(()) }
        })
        .await;
        // The (columns) table form works too.
        let table = ok(&b, &["list", "queues", "name", "messages"]);
        assert!(table.contains(&q), "{table}");

        // Get it, requeued, then for good.
        let got = ok(
            &b,
            &["get", &format!("queue={q}"), "ackmode=ack_requeue_true"],
        );
        assert!(got.contains("hello from rabbitmqadmin"), "{got}");
        let got = ok(
            &b,
            &[
                "-f",
                "raw_json",
                "get",
                &format!("queue={q}"),
                "ackmode=ack_requeue_false",
            ],
        );
        let msgs: Value = serde_json::from_str(&got).expect("JSON");
        assert_eq!(msgs[0]["payload"], "hello from rabbitmqadmin");
        assert_eq!(msgs[0]["redelivered"], true, "it was requeued once");
        poll_for("the queue is empty", || {
            let n = queue(&list(&b, &["queues"]), &q).map(|v| v["messages"].clone());
            async move { (n == Some(Value::from(0))).then_some(()) }
        })
        .await;

        // Purge and delete.
        ok(
            &b,
            &[
                "publish",
                "exchange=amq.default",
                &format!("routing_key={q}"),
                "payload=p",
            ],
        );
        poll_for("the message is in", || {
            let n = queue(&list(&b, &["queues"]), &q).map(|v| v["messages"].clone());
            async move { (n == Some(Value::from(1))).then_some(()) }
        })
        .await;
        ok(&b, &["purge", "queue", &format!("name={q}")]);
        let n = queue(&list(&b, &["queues"]), &q).map(|v| v["messages"].clone());
        assert_eq!(n, Some(Value::from(0)), "purged");
        ok(&b, &["delete", "queue", &format!("name={q}")]);
        assert!(queue(&list(&b, &["queues"]), &q).is_none(), "deleted");
        // A missing queue is an error, with RabbitMQ's reason.
        let (success, out, err) = admin(&b, &["delete", "queue", &format!("name={q}")]);
        assert!(!success, "deleting a missing queue fails: {out}");
        let said = format!("{out}{err}").to_lowercase();
        assert!(said.contains("not found"), "{out}{err}");
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_overview_and_connections() {
    deadline(120, async {
        let b = broker();
        let q = unique("ra-export");
        ok(
            &b,
            &["declare", "queue", &format!("name={q}"), "durable=true"],
        );
        ok(
            &b,
            &[
                "declare",
                "user",
                "name=ra-user",
                "password=pw",
                "tags=monitoring",
            ],
        );
        let dir = std::env::temp_dir().join(unique("ra-defs"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("defs.json");
        let out = ok(&b, &["export", file.to_str().unwrap()]);
        assert!(out.contains("Exported definitions"), "{out}");
        let defs: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert!(defs["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == q.as_str()));
        // Gone, then back from the file.
        ok(&b, &["delete", "queue", &format!("name={q}")]);
        ok(&b, &["delete", "user", "name=ra-user"]);
        let out = ok(&b, &["import", file.to_str().unwrap()]);
        assert!(out.contains("Uploaded definitions"), "{out}");
        assert!(
            queue(&list(&b, &["queues"]), &q).is_some(),
            "the queue is back"
        );
        assert!(list(&b, &["users"]).iter().any(|u| u["name"] == "ra-user"));

        // Overview and nodes.
        let overview = ok(&b, &["-f", "raw_json", "show", "overview"]);
        let overview: Value = serde_json::from_str(&overview).expect("JSON");
        let o = if overview.is_array() {
            &overview[0]
        } else {
            &overview
        };
        assert!(o["object_totals"]["queues"].as_u64().unwrap() >= 1, "{o}");
        let nodes = list(&b, &["nodes"]);
        assert_eq!(nodes.len(), 1);

        // A client connection is listed and closed by name.
        let conn = connect(&format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.port())).await;
        let mut errors = watch_connection(&conn);
        let name = poll_for("the connection is listed", || {
            let name = list(&b, &["connections"])
                .first()
                .and_then(|c| c["name"].as_str().map(String::from));
            async move { name }
        })
        .await;
        ok(&b, &["close", "connection", &format!("name={name}")]);
        let (code, _) = next_err(&mut errors).await;
        assert_eq!(code, 320);
        let _ = std::fs::remove_dir_all(&dir);
        b.shutdown();
    })
    .await;
}

/// `declare parameter component=shovel …` makes a working shovel (RabbitMQ's
/// way to script one), `list parameters` shows it, `delete parameter`
/// removes it.
#[test]
fn shovels_as_parameters() {
    let b = broker();
    ok(&b, &["declare", "queue", "name=adm-src", "durable=true"]);
    ok(
        &b,
        &[
            "declare",
            "parameter",
            "component=shovel",
            "name=adm",
            r#"value={"src-uri":"amqp://","src-queue":"adm-src","dest-uri":"amqp://","dest-queue":"adm-dst"}"#,
        ],
    );
    let params = list(&b, &["parameters"]);
    assert_eq!(params.len(), 1, "{params:?}");
    assert_eq!(params[0]["component"], "shovel");
    assert_eq!(params[0]["value"]["src-queue"], "adm-src");
    // Running once the destination queue is declared by the shovel.
    let t0 = std::time::Instant::now();
    while queue(&list(&b, &["queues"]), "adm-dst").is_none() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "the shovel did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ok(&b, &["publish", "routing_key=adm-src", "payload=hello"]);
    let t0 = std::time::Instant::now();
    loop {
        let qs = list(&b, &["queues"]);
        if queue(&qs, "adm-dst").is_some_and(|q| q["messages"] == 1) {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "not moved: {qs:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ok(&b, &["delete", "parameter", "component=shovel", "name=adm"]);
    assert!(list(&b, &["parameters"]).is_empty());
    b.shutdown();
}
