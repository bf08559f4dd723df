//! `/api/overview`, `/api/nodes` and the health checks over a real HTTP
//! client (ureq), after known traffic from a real AMQP client (lapin):
//! the counts are exact, the shapes are RabbitMQ's (keys of the 3.10.8
//! captures in tests/fixtures/mgmt/, plus 3.13's additions), and the tag
//! rules are RabbitMQ's.

mod common_http;
mod common_lapin;

use common_http::*;
use common_lapin::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ConnectionProperties};
use serde_json::{json, Value};
use warren::{BrokerHandle, Config};

fn broker(shards: usize) -> (BrokerHandle, Api) {
    let _ = env_logger::builder().is_test(true).try_init();
    let b = warren::start(Config::for_tests(shards)).expect("broker starts");
    let port = b.http_port().expect("the HTTP API runs in tests");
    (b, Api::new(port))
}

fn amqp(b: &BrokerHandle) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2F", b.port())
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/mgmt/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("fixture JSON")
}

/// Keys of RabbitMQ's object `theirs` that `ours` lacks, but for `except`.
fn missing_keys(theirs: &Value, ours: &Value, except: &[&str]) -> Vec<String> {
    theirs
        .as_object()
        .expect("an object")
        .keys()
        .filter(|k| !except.contains(&k.as_str()) && ours.get(k.as_str()).is_none())
        .cloned()
        .collect()
}

/// Creates a user with `tags` and full permissions on `/`.
fn user(api: &Api, name: &str, tags: &str) -> Api {
    let r = api.put(
        &format!("/api/users/{name}"),
        &format!(r#"{{"password":"{name}-pw","tags":"{tags}"}}"#),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = api.put(
        &format!("/api/permissions/%2F/{name}"),
        r#"{"configure":".*","write":".*","read":".*"}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
    api.as_user(Some((name, &format!("{name}-pw"))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_counts_known_traffic() {
    deadline(30, async {
        let (b, api) = broker(2);
        let fresh = api.get_json("/api/overview");
        assert_eq!(fresh["message_stats"], json!({}), "nothing happened yet");
        assert_eq!(fresh["object_totals"]["connections"], 0);

        let conn = within(lapin::Connection::connect(
            &amqp(&b),
            ConnectionProperties::default().with_connection_name("node-test".into()),
        ))
        .await
        .unwrap();
        let ch = channel(&conn).await;
        within(ch.confirm_select(ConfirmSelectOptions::default()))
            .await
            .unwrap();
        let (q, q2) = (unique("ov-q"), unique("ov-q2"));
        declare(&ch, &q).await;
        declare(&ch, &q2).await;
        for i in 0..5 {
            let body = format!("m{i}");
            let c = within(ch.basic_publish(
                "",
                &q,
                Default::default(),
                body.as_bytes(),
                BasicProperties::default(),
            ))
            .await
            .unwrap();
            assert!(within(c).await.unwrap().is_ack());
        }
        // Unroutable, not mandatory: dropped (and confirmed).
        let c = within(ch.basic_publish(
            "",
            "no-such-queue",
            Default::default(),
            b"x",
            BasicProperties::default(),
        ))
        .await
        .unwrap();
        within(c).await.unwrap();
        let got = get(&ch, &q, true).await.expect("a message");
        assert_eq!(got.delivery.data, b"m0");
        let got = get(&ch, &q, false).await.expect("a message");
        within(got.delivery.acker.ack(BasicAckOptions::default()))
            .await
            .unwrap();
        let ch2 = channel(&conn).await;
        let _consumer = within(ch2.basic_consume(
            &q2,
            "ov-consumer",
            Default::default(),
            FieldTable::default(),
        ))
        .await
        .unwrap();

        let o = poll_for("overview counts", async || {
            let o = api.get_json("/api/overview");
            // The ack is counted by the channel, the queue forgets the
            // message when the settle reaches its shard: wait for both.
            (o["message_stats"]["ack"] == 1
                && o["object_totals"]["consumers"] == 1
                && o["queue_totals"]["messages_unacknowledged"] == 0)
                .then_some(o)
        })
        .await;
        assert_eq!(
            o["object_totals"],
            json!({"connections": 1, "channels": 2, "consumers": 1, "exchanges": 7, "queues": 2})
        );
        let qt = &o["queue_totals"];
        assert_eq!(
            (
                &qt["messages"],
                &qt["messages_ready"],
                &qt["messages_unacknowledged"]
            ),
            (&json!(3), &json!(3), &json!(0))
        );
        assert!(qt["messages_details"]["rate"].is_f64());
        let ms = &o["message_stats"];
        for (k, v) in [
            ("publish", 6),
            ("confirm", 6),
            ("drop_unroutable", 1),
            ("return_unroutable", 0),
            ("get", 1),
            ("get_no_ack", 1),
            ("deliver_get", 2),
            ("ack", 1),
            ("deliver", 0),
            ("redeliver", 0),
        ] {
            assert_eq!(ms[k], v, "message_stats.{k}: {ms}");
            assert!(ms[format!("{k}_details")]["rate"].is_f64(), "{k}_details");
        }
        let churn = &o["churn_rates"];
        assert_eq!(churn["connection_created"], 1);
        assert_eq!(churn["channel_created"], 2);
        assert_eq!(churn["queue_declared"], 2);
        assert_eq!(churn["queue_created"], 2);
        assert_eq!(churn["queue_deleted"], 0);
        assert!(churn["channel_closed_details"]["rate"].is_f64());
        // RabbitMQ's keys (3.10.8 capture), but for the disk counters warren
        // does not keep.
        let theirs = fixture("overview.json");
        assert_eq!(missing_keys(&theirs, &o, &[]), Vec::<String>::new());
        assert_eq!(
            missing_keys(
                &theirs["message_stats"],
                ms,
                &[
                    "disk_reads",
                    "disk_reads_details",
                    "disk_writes",
                    "disk_writes_details"
                ]
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            missing_keys(&theirs["churn_rates"], churn, &[]),
            Vec::<String>::new()
        );
        assert_eq!(o["rabbitmq_version"], "3.13.7");
        assert_eq!(o["product_name"], "warren");
        assert_eq!(o["rates_mode"], "basic");
        assert_eq!(o["statistics_db_event_queue"], 0);
        let ports: Vec<(String, u64)> = o["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["protocol"].as_str().unwrap().to_string(),
                    l["port"].as_u64().unwrap(),
                )
            })
            .collect();
        for (proto, port) in [
            ("amqp", b.port()),
            ("http", b.http_port().unwrap()),
            ("http/prometheus", b.prometheus_port().unwrap()),
        ] {
            assert!(
                ports.contains(&(proto.to_string(), port as u64)),
                "{proto} in {ports:?}"
            );
        }
        assert_eq!(o["contexts"].as_array().unwrap().len(), 2);
        // rabbitmqadmin's `show overview`.
        let cols =
            "columns=rabbitmq_version,cluster_name,queue_totals.messages,object_totals.queues";
        let shown = api.get_json(&format!("/api/overview?{cols}"));
        assert_eq!(shown["rabbitmq_version"], "3.13.7");
        assert_eq!(shown["queue_totals"]["messages"], 3);
        assert_eq!(shown["object_totals"]["queues"], 2);
        assert!(shown.get("listeners").is_none());
        // disable_stats: the static keys, node and three totals.
        let d = api.get_json("/api/overview?disable_stats=true");
        assert_eq!(
            d["object_totals"],
            json!({"queues": 2, "exchanges": 7, "connections": 1})
        );
        assert!(d.get("message_stats").is_none() && d.get("listeners").is_none());
        conn.close(200, "bye").await.ok();
        b.shutdown();
    })
    .await
}

/// A management user sees only their vhosts and their own connections, and
/// none of the node's details; /api/nodes needs a monitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_scope_overview_and_nodes() {
    deadline(30, async {
        let (b, api) = broker(1);
        let mgmt = user(&api, "mgmt", "management");
        let mon = user(&api, "mon", "monitoring");
        assert_eq!(api.put("/api/vhosts/v2", "").status, 201);
        let r = api.put(
            "/api/permissions/v2/guest",
            r#"{"configure":".*","write":".*","read":".*"}"#,
        );
        assert_eq!(r.status, 201);
        // A queue in v2 (the aliveness test declares one), and guest's
        // connection on /.
        assert_eq!(
            api.get_json("/api/aliveness-test/v2"),
            json!({"status": "ok"})
        );
        let conn = connect(&amqp(&b)).await;
        let _ch = channel(&conn).await;
        let full = api.get_json("/api/overview");
        assert_eq!(full["object_totals"]["queues"], 1);
        assert_eq!(full["object_totals"]["exchanges"], 14);
        assert_eq!(full["object_totals"]["connections"], 1);

        let o = mgmt.get_json("/api/overview");
        for k in ["node", "listeners", "contexts"] {
            assert!(o.get(k).is_none(), "a management user sees no {k}");
        }
        assert_eq!(
            o["object_totals"],
            json!({"queues": 0, "exchanges": 7, "connections": 0, "channels": 0})
        );
        let o = mon.get_json("/api/overview");
        assert_eq!(
            o["object_totals"]["connections"], 1,
            "a monitor sees everyone's"
        );
        assert!(o.get("listeners").is_some());

        // Nodes: monitors only.
        assert_error(
            &mgmt.get("/api/nodes"),
            401,
            "not_authorised",
            "Not monitor user",
        );
        let nodes = mon.get_json("/api/nodes");
        let nodes = nodes.as_array().unwrap();
        assert_eq!(nodes.len(), 1);
        let n = &nodes[0];
        let name = n["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("warren@"));
        assert_eq!((&n["type"], &n["running"]), (&json!("disc"), &json!(true)));
        assert_eq!(n["sockets_used"], 1);
        assert_eq!(n["connection_created"], 1);
        assert!(n["os_pid"].is_string(), "os_pid is a string in RabbitMQ");
        for k in [
            "mem_used",
            "mem_limit",
            "mem_alarm",
            "disk_free",
            "disk_free_limit",
            "disk_free_alarm",
            "fd_used",
            "fd_total",
            "sockets_total",
            "proc_used",
            "proc_total",
            "uptime",
            "run_queue",
            "processors",
            "partitions",
            "exchange_types",
            "auth_mechanisms",
            "applications",
            "contexts",
            "enabled_plugins",
            "rates_mode",
            "net_ticktime",
        ] {
            assert!(n.get(k).is_some(), "node key {k}");
        }
        for k in [
            "mem_used",
            "fd_used",
            "sockets_used",
            "proc_used",
            "disk_free",
        ] {
            assert!(n[format!("{k}_details")]["rate"].is_f64(), "{k}_details");
        }
        assert!(n["mem_used"].as_u64().unwrap() > 0);
        assert!(n["uptime"].as_u64().is_some());
        let theirs = fixture("node-single.json");
        let keys_3_10 = [
            "partitions",
            "os_pid",
            "fd_total",
            "sockets_total",
            "mem_limit",
            "mem_alarm",
            "disk_free_limit",
            "disk_free_alarm",
            "proc_total",
            "rates_mode",
            "uptime",
            "run_queue",
            "processors",
            "name",
            "running",
            "type",
        ];
        for k in keys_3_10 {
            assert!(theirs.get(k).is_some(), "the fixture has {k}");
        }
        let one = api.get_json(&format!("/api/nodes/{}", name.replace('@', "%40")));
        assert_eq!(one["name"], name.as_str());
        assert_error(
            &api.get("/api/nodes/rabbit@nope"),
            404,
            "Object Not Found",
            "Not Found",
        );
        let basic = api.get_json("/api/nodes?disable_stats=true");
        assert_eq!(
            basic,
            json!([{"name": name, "type": "disc", "running": true, "being_drained": false}])
        );
        assert_eq!(
            api.get_json("/api/nodes?columns=name,type")[0],
            json!({"name": name, "type": "disc"})
        );
        conn.close(200, "bye").await.ok();
        b.shutdown();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_health_checks_follow_the_memory_alarm() {
    deadline(30, async {
        let (b, api) = broker(1);
        let ok = json!({"status": "ok"});
        assert_eq!(api.get_json("/api/health/checks/alarms"), ok);
        assert_eq!(api.get_json("/api/health/checks/local-alarms"), ok);
        b.alarms().set_memory_limit(1);
        let a = poll_for("the alarms check fails", async || {
            let a = api.get("/api/health/checks/alarms");
            (a.status == 503).then_some(a)
        })
        .await;
        let node = api.get_json("/api/overview")["node"].clone();
        assert_eq!(
            a.json(),
            json!({
                "status": "failed",
                "reason": "There are alarms in effect in the cluster",
                "alarms": [{"resource": "memory", "node": node}],
            })
        );
        let l = api.get("/api/health/checks/local-alarms");
        assert_eq!(l.status, 503);
        assert_eq!(l.json()["reason"], "There are alarms in effect on the node");
        let n = api.get_json("/api/nodes")[0].clone();
        assert_eq!(n["mem_alarm"], true);
        // Cleared: back to 200.
        b.alarms().set_memory_limit(0);
        eventually("the alarms check passes", async || {
            api.get("/api/health/checks/alarms").status == 200
        })
        .await;
        assert_eq!(api.get_json("/api/health/checks/local-alarms"), ok);
        b.shutdown();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_and_other_health_checks() {
    deadline(30, async {
        let (b, api) = broker(1);
        let amqp_port = b.port();
        assert_eq!(
            api.get_json(&format!("/api/health/checks/port-listener/{amqp_port}")),
            json!({"status": "ok", "port": amqp_port})
        );
        let http = b.http_port().unwrap();
        assert_eq!(
            api.get_json(&format!("/api/health/checks/port-listener/{http}"))["status"],
            "ok"
        );
        let f = api.get("/api/health/checks/port-listener/1");
        assert_eq!(f.status, 503, "{f:?}");
        let f = f.json();
        assert_eq!(
            (&f["status"], &f["reason"], &f["missing"]),
            (&json!("failed"), &json!("No active listener"), &json!(1))
        );
        assert!(f["ports"].as_array().unwrap().contains(&json!(amqp_port)));
        assert_error(
            &api.get("/api/health/checks/port-listener/abc"),
            400,
            "bad_request",
            "Invalid port",
        );
        assert_eq!(
            api.get_json("/api/health/checks/protocol-listener/amqp091"),
            json!({"status": "ok", "protocol": "amqp"})
        );
        let f = api.get("/api/health/checks/protocol-listener/stomp");
        assert_eq!(f.status, 503);
        assert_eq!(f.json()["missing"], "stomp");
        for path in ["virtual-hosts", "certificate-expiration/1/months"] {
            assert_eq!(
                api.get_json(&format!("/api/health/checks/{path}")),
                json!({"status": "ok"}),
                "{path}"
            );
        }
        for path in ["node-is-quorum-critical", "node-is-mirror-sync-critical"] {
            assert_eq!(
                api.get_json(&format!("/api/health/checks/{path}")),
                json!({"status": "ok", "reason": "single node cluster"})
            );
        }
        assert_error(
            &api.get("/api/health/checks/certificate-expiration/1/fortnights"),
            400,
            "bad_request",
            "Time unit not recognised. Supported units: days, weeks, months, years.",
        );
        assert_eq!(
            api.get_json("/api/healthchecks/node"),
            json!({"status": "ok"})
        );
        b.shutdown();
    })
    .await
}

/// The aliveness test declares `aliveness-test`, publishes and gets a
/// message through the core, and keeps the queue (empty) as RabbitMQ does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliveness_test_goes_through_the_core() {
    deadline(30, async {
        let (b, api) = broker(2);
        assert_eq!(api.get_json("/api/aliveness-test/%2F"), json!({"status": "ok"}));
        assert_eq!(api.get_json("/api/aliveness-test/%2F"), json!({"status": "ok"}));
        let conn = connect(&amqp(&b)).await;
        let ch = channel(&conn).await;
        assert_eq!(message_count(&ch, "aliveness-test").await, 0, "the queue stays, empty");
        let o = poll_for("two aliveness messages counted", async || {
            let o = api.get_json("/api/overview");
            (o["object_totals"]["queues"] == 1).then_some(o)
        })
        .await;
        assert_eq!(o["queue_totals"]["messages"], 0);
        assert_error(&api.get("/api/aliveness-test/nope"), 404, "Object Not Found", "Not Found");
        // A user without permissions in a vhost may not test it; an
        // administrator without permissions cannot open it.
        assert_eq!(api.put("/api/vhosts/v2", "").status, 201);
        let mgmt = user(&api, "mgmt", "management");
        assert_error(
            &mgmt.get("/api/aliveness-test/v2"),
            401,
            "not_authorised",
            "User not authorised to access virtual host",
        );
        assert_eq!(mgmt.get_json("/api/aliveness-test/%2F"), json!({"status": "ok"}));
        assert_error(&api.get("/api/aliveness-test/v2"), 401, "not_authorised", "Access refused.");
        // Without configure permission on the queue name: the core refuses.
        let r = api.put("/api/permissions/%2F/mgmt", r#"{"configure":"^x$","write":".*","read":".*"}"#);
        assert_eq!(r.status, 204);
        assert_error(
            &mgmt.get("/api/aliveness-test/%2F"),
            401,
            "not_authorised",
            "ACCESS_REFUSED - configure access to queue 'aliveness-test' in vhost '/' refused for user 'mgmt'",
        );
        conn.close(200, "bye").await.ok();
        b.shutdown();
    })
    .await
}

/// The certificate expiration check reads the TLS listener's certificate:
/// one that expired in 2000 is reported, one valid until 4096 is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiration_reads_the_tls_certificate() {
    deadline(30, async {
        let dir = std::env::temp_dir().join(unique("warren-cert-exp"));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, not_after) in [
            ("old", Some(rcgen::date_time_ymd(2000, 1, 1))),
            ("new", None),
        ] {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            if let Some(t) = not_after {
                params.not_after = t;
            }
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        for (name, expired) in [("old", true), ("new", false)] {
            let config = Config {
                tls_cert: Some(dir.join(format!("{name}.pem"))),
                tls_key: Some(dir.join(format!("{name}.key"))),
                ..Config::for_tests(1)
            };
            let b = warren::start(config).expect("broker starts");
            let api = Api::new(b.http_port().unwrap());
            let a = api.get("/api/health/checks/certificate-expiration/1/months");
            if expired {
                assert_eq!(a.status, 503, "{a:?}");
                let j = a.json();
                assert_eq!(j["reason"], "Certificates expiring");
                let l = &j["expired"][0];
                assert_eq!(l["protocol"], "amqp/ssl");
                assert_eq!(l["port"], b.tls_port().unwrap());
                assert_eq!(l["certfile_expires_on"], json!(["2000-01-01 0:00:00"]));
            } else {
                assert_eq!(a.status, 200, "{a:?}");
                assert_eq!(a.json(), json!({"status": "ok"}));
            }
            b.shutdown();
        }
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}
