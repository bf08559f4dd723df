//! `/api/connections…`, `/api/channels…` and `/api/consumers…` over a real
//! HTTP client (ureq) while real AMQP clients (lapin) are connected: the
//! objects listed are the clients' with RabbitMQ's fields, DELETE closes a
//! connection with 320 CONNECTION_FORCED and the given reason, and a
//! management user sees and closes only their own connections.

mod common_http;
mod common_lapin;

use common_http::*;
use common_lapin::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use warren::{BrokerHandle, Config};

fn broker() -> (BrokerHandle, Api) {
    let _ = env_logger::builder().is_test(true).try_init();
    let b = warren::start(Config::for_tests(2)).expect("broker starts");
    let port = b.http_port().expect("the HTTP API runs in tests");
    (b, Api::new(port))
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/mgmt/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("fixture JSON")
}

/// Keys of RabbitMQ's object `theirs` that `ours` lacks, but for the
/// Erlang-only ones (`garbage_collection`, `reductions…`) and `except`.
fn missing_keys(theirs: &Value, ours: &Value, except: &[&str]) -> Vec<String> {
    let erlang = ["garbage_collection", "reductions", "reductions_details"];
    theirs
        .as_object()
        .expect("an object")
        .keys()
        .filter(|k| !erlang.contains(&k.as_str()) && !except.contains(&k.as_str()))
        .filter(|k| ours.get(k.as_str()).is_none())
        .cloned()
        .collect()
}

/// A path segment, percent-encoded as RabbitMQ's UI and rabbitmqadmin do.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn open(b: &BrokerHandle, user: &str, pass: &str, name: &str) -> Connection {
    let uri = format!("amqp://{user}:{pass}@127.0.0.1:{}/%2F", b.port());
    within(Connection::connect(
        &uri,
        ConnectionProperties::default().with_connection_name(name.into()),
    ))
    .await
    .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
}

/// The listed connection whose client gave `name`.
fn by_client_name(list: &Value, name: &str) -> Option<Value> {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_properties"]["connection_name"] == name)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_channels_and_consumers_are_listed() {
    deadline(30, async {
        let (b, api) = broker();
        let conn = open(&b, "guest", "guest", "listed-conn").await;
        let ch1 = channel(&conn).await;
        within(ch1.confirm_select(ConfirmSelectOptions::default()))
            .await
            .unwrap();
        let q = unique("lc-q");
        declare(&ch1, &q).await;
        for _ in 0..3 {
            let c = within(ch1.basic_publish(
                "",
                &q,
                Default::default(),
                b"hello",
                BasicProperties::default(),
            ))
            .await
            .unwrap();
            within(c).await.unwrap();
        }
        let ch2 = channel(&conn).await;
        within(ch2.basic_qos(10, BasicQosOptions::default()))
            .await
            .unwrap();
        let mut consumer =
            within(ch2.basic_consume(&q, "lc-ctag", Default::default(), FieldTable::default()))
                .await
                .unwrap();
        // Two deliveries stay unacked on channel 2.
        for _ in 0..3 {
            recv(&mut consumer).await;
        }

        let list = api.get_json("/api/connections");
        let c = by_client_name(&list, "listed-conn").expect("the connection is listed");
        assert_eq!(list.as_array().unwrap().len(), 1);
        let name = c["name"].as_str().unwrap().to_string();
        assert!(
            name.starts_with("127.0.0.1:")
                && name.ends_with(&format!(" -> 127.0.0.1:{}", b.port())),
            "{name}"
        );
        assert_eq!(c["user"], "guest");
        assert_eq!(c["vhost"], "/");
        assert_eq!(c["user_provided_name"], "listed-conn");
        assert_eq!(c["channels"], 2);
        assert_eq!(c["protocol"], "AMQP 0-9-1");
        assert_eq!(c["type"], "network");
        assert_eq!(c["state"], "running");
        assert_eq!(c["auth_mechanism"], "PLAIN");
        assert_eq!(c["port"], b.port());
        assert_eq!(
            c["client_properties"]["capabilities"]["publisher_confirms"],
            true
        );
        assert!(c["recv_oct"].as_u64().unwrap() > 0 && c["send_oct"].as_u64().unwrap() > 0);
        assert!(c["recv_oct_details"]["rate"].is_f64());
        assert!(c.get("blocked_by").is_none(), "not blocked");
        let theirs = &fixture("connections.json")[0];
        assert_eq!(missing_keys(theirs, &c, &[]), Vec::<String>::new());

        let one = api.get_json(&format!("/api/connections/{}", enc(&name)));
        assert_eq!(one["name"], name.as_str());
        assert_eq!(one["channels"], 2);
        assert_eq!(
            api.get_json("/api/vhosts/%2F/connections")
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_error(
            &api.get("/api/vhosts/nope/connections"),
            404,
            "Object Not Found",
            "Not Found",
        );
        let paged = api.get_json("/api/connections?page=1&page_size=1&columns=name,user");
        assert_eq!(paged["items"], json!([{"name": name, "user": "guest"}]));
        assert_eq!(paged["total_count"], 1);
        assert_eq!(
            api.get_json("/api/connections?disable_stats=true"),
            json!([{"name": name, "vhost": "/", "user": "guest", "node": one["node"]}])
        );

        // Channels: two, numbered 1 and 2, named after the connection.
        let chans = api.get_json(&format!("/api/connections/{}/channels", enc(&name)));
        let chans = chans.as_array().unwrap();
        assert_eq!(chans.len(), 2);
        let c1 = chans.iter().find(|c| c["number"] == 1).expect("channel 1");
        let c2 = chans.iter().find(|c| c["number"] == 2).expect("channel 2");
        assert_eq!(c1["name"], format!("{name} (1)"));
        assert_eq!(c1["confirm"], true);
        assert_eq!(c1["message_stats"]["publish"], 3);
        assert_eq!(c1["message_stats"]["confirm"], 3);
        assert!(
            c1["message_stats"].get("deliver").is_none(),
            "no delivery group: {c1}"
        );
        assert_eq!(c2["prefetch_count"], 10);
        assert_eq!(c2["consumer_count"], 1);
        assert_eq!(c2["messages_unacknowledged"], 3);
        assert_eq!(c2["message_stats"]["deliver"], 3);
        assert!(
            c2["message_stats"].get("publish").is_none(),
            "no publish group: {c2}"
        );
        assert_eq!(c2["connection_details"]["name"], name.as_str());
        assert_eq!(c2["connection_details"]["peer_port"], c["peer_port"]);
        for theirs in fixture("channels.json").as_array().unwrap() {
            assert_eq!(
                missing_keys(theirs, c2, &["idle_since", "message_stats"]),
                Vec::<String>::new()
            );
        }
        assert_eq!(api.get_json("/api/channels").as_array().unwrap().len(), 2);
        assert_eq!(
            api.get_json("/api/vhosts/%2F/channels")
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let single = api.get_json(&format!("/api/channels/{}", enc(&format!("{name} (2)"))));
        assert_eq!(single["number"], 2);
        assert_eq!(single["consumer_details"][0]["consumer_tag"], "lc-ctag");
        assert_eq!(single["deliveries"], json!([]));
        assert_eq!(
            missing_keys(&fixture("channel-single.json"), &single, &["idle_since"]),
            Vec::<String>::new()
        );
        assert_error(
            &api.get(&format!("/api/channels/{}", enc(&format!("{name} (9)")))),
            404,
            "Object Not Found",
            "Not Found",
        );

        // Consumers.
        let cons = api.get_json("/api/consumers");
        assert_eq!(cons.as_array().unwrap().len(), 1);
        let k = &cons[0];
        assert_eq!(k["consumer_tag"], "lc-ctag");
        assert_eq!(k["queue"], json!({"name": q, "vhost": "/"}));
        assert_eq!(k["ack_required"], true);
        assert_eq!(k["prefetch_count"], 10);
        assert_eq!(
            (&k["active"], &k["activity_status"]),
            (&json!(true), &json!("up"))
        );
        assert_eq!(k["channel_details"]["name"], format!("{name} (2)"));
        assert_eq!(k["channel_details"]["number"], 2);
        assert_eq!(k["channel_details"]["connection_name"], name.as_str());
        assert_eq!(k["channel_details"]["user"], "guest");
        assert_eq!(k["channel_details"]["peer_port"], c["peer_port"]);
        assert_eq!(
            missing_keys(&fixture("consumers.json")[0], k, &[]),
            Vec::<String>::new()
        );
        assert_eq!(api.get_json("/api/consumers/%2F"), cons);
        assert_error(
            &api.get("/api/consumers/nope"),
            404,
            "Object Not Found",
            "Not Found",
        );
        conn.close(200, "bye").await.ok();
        b.shutdown();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_closes_with_connection_forced() {
    deadline(30, async {
        let (b, api) = broker();
        let conn = open(&b, "guest", "guest", "to-close").await;
        let mut errors = watch_connection(&conn);
        let name = by_client_name(&api.get_json("/api/connections"), "to-close").unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string();
        let path = format!("/api/connections/{}", enc(&name));
        let r = api.call_with_header("DELETE", &path, ("X-Reason", "maintenance window"));
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(r.body, "");
        assert_eq!(
            next_err(&mut errors).await,
            (320, "CONNECTION_FORCED - maintenance window".to_string())
        );
        eventually("the connection is gone", async || {
            api.get(&path).status == 404
        })
        .await;
        assert_error(&api.delete(&path), 404, "Object Not Found", "Not Found");
        // Without X-Reason: RabbitMQ's default reason.
        let conn = open(&b, "guest", "guest", "to-close-2").await;
        let mut errors = watch_connection(&conn);
        let name = by_client_name(&api.get_json("/api/connections"), "to-close-2").unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            api.delete(&format!("/api/connections/{}", enc(&name)))
                .status,
            204
        );
        assert_eq!(
            next_err(&mut errors).await,
            (
                320,
                "CONNECTION_FORCED - Closed via management plugin".to_string()
            )
        );
        b.shutdown();
    })
    .await
}

/// RabbitMQ's rules: a management user sees only their own connections,
/// channels and consumers and may close only their own; a monitor sees all
/// and closes only their own; an administrator closes any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_and_close_only_their_own() {
    deadline(30, async {
        let (b, api) = broker();
        for (u, tags) in [("alice", "management"), ("mona", "monitoring")] {
            let r = api.put(
                &format!("/api/users/{u}"),
                &format!(r#"{{"password":"{u}-pw","tags":"{tags}"}}"#),
            );
            assert_eq!(r.status, 201);
            let r = api.put(
                &format!("/api/permissions/%2F/{u}"),
                r#"{"configure":".*","write":".*","read":".*"}"#,
            );
            assert_eq!(r.status, 201);
        }
        let alice = api.as_user(Some(("alice", "alice-pw")));
        let mona = api.as_user(Some(("mona", "mona-pw")));
        let guest_conn = open(&b, "guest", "guest", "guest-conn").await;
        let q = unique("own-q");
        let gch = channel(&guest_conn).await;
        declare(&gch, &q).await;
        let _consumer =
            within(gch.basic_consume(&q, "guest-ctag", Default::default(), FieldTable::default()))
                .await
                .unwrap();
        let alice_conn = open(&b, "alice", "alice-pw", "alice-conn").await;
        let _ach = channel(&alice_conn).await;
        let mut alice_errors = watch_connection(&alice_conn);

        let all = api.get_json("/api/connections");
        assert_eq!(all.as_array().unwrap().len(), 2);
        let guest_name = by_client_name(&all, "guest-conn").unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string();
        let alice_name = by_client_name(&all, "alice-conn").unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string();

        let mine = alice.get_json("/api/connections");
        assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
        assert_eq!(mine[0]["user"], "alice");
        let chans = alice.get_json("/api/channels");
        assert_eq!(chans.as_array().unwrap().len(), 1);
        assert_eq!(chans[0]["user"], "alice");
        assert_eq!(alice.get_json("/api/consumers"), json!([]));
        assert_eq!(
            mona.get_json("/api/connections").as_array().unwrap().len(),
            2
        );
        assert_eq!(mona.get_json("/api/consumers").as_array().unwrap().len(), 1);

        let guest_path = format!("/api/connections/{}", enc(&guest_name));
        let denied = "User not authorised to access object";
        assert_error(&alice.get(&guest_path), 401, "not_authorised", denied);
        assert_error(&alice.delete(&guest_path), 401, "not_authorised", denied);
        assert_error(
            &alice.get(&format!(
                "/api/channels/{}",
                enc(&format!("{guest_name} (1)"))
            )),
            401,
            "not_authorised",
            denied,
        );
        assert_eq!(
            mona.get(&guest_path).status,
            200,
            "a monitor reads anyone's"
        );
        assert_error(&mona.delete(&guest_path), 401, "not_authorised", denied);
        assert_error(
            &alice.get("/api/connections/username/guest"),
            401,
            "not_authorised",
            denied,
        );
        let node = all[0]["node"].clone();
        assert_eq!(
            alice.get_json("/api/connections/username/alice"),
            json!([{"name": alice_name, "vhost": "/", "user": "alice", "node": node}])
        );
        // Her own she may close.
        assert_eq!(
            alice
                .delete(&format!("/api/connections/{}", enc(&alice_name)))
                .status,
            204
        );
        assert_eq!(
            next_err(&mut alice_errors).await,
            (
                320,
                "CONNECTION_FORCED - Closed via management plugin".to_string()
            )
        );
        // An administrator closes a user's every connection.
        let mut guest_errors = watch_connection(&guest_conn);
        let r = api.call_with_header(
            "DELETE",
            "/api/connections/username/guest",
            ("X-Reason", "all of them"),
        );
        assert_eq!(r.status, 204);
        assert_eq!(
            next_err(&mut guest_errors).await,
            (320, "CONNECTION_FORCED - all of them".to_string())
        );
        eventually("no connection left", async || {
            api.get_json("/api/connections")
                .as_array()
                .unwrap()
                .is_empty()
        })
        .await;
        b.shutdown();
    })
    .await
}

/// While the memory alarm blocks a publisher, its connection says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_publisher_shows_why() {
    deadline(30, async {
        let (b, api) = broker();
        let conn = open(&b, "guest", "guest", "blocked-pub").await;
        let ch = channel(&conn).await;
        let q = unique("blk-q");
        declare(&ch, &q).await;
        publish(&ch, "", &q, b"before").await;
        b.alarms().set_memory_limit(1);
        let c = poll_for("the publisher is blocked", async || {
            by_client_name(&api.get_json("/api/connections"), "blocked-pub")
                .filter(|c| c["state"] == "blocked")
        })
        .await;
        assert_eq!(c["blocked_by"], "memory alarm");
        b.alarms().set_memory_limit(0);
        let c = poll_for("the publisher runs again", async || {
            by_client_name(&api.get_json("/api/connections"), "blocked-pub")
                .filter(|c| c["state"] == "running")
        })
        .await;
        assert!(c.get("blocked_by").is_none());
        b.shutdown();
    })
    .await
}
