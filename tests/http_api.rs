//! The management HTTP API (src/http/), driven with a real HTTP client
//! (ureq) against an in-process broker, and checked with lapin where a
//! change must be visible to AMQP clients.

mod common_http;
mod common_lapin;

use common_http::*;
use common_lapin::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{json, Value};
use warren::core::auth::password::{HashAlgo, PasswordHash};
use warren::{BrokerHandle, Config};

fn broker() -> (BrokerHandle, Api) {
    let _ = env_logger::builder().is_test(true).try_init();
    let b = warren::start(Config::for_tests(2)).expect("broker starts");
    let port = b.http_port().expect("the HTTP API runs in tests");
    (b, Api::new(port))
}

fn amqp(b: &BrokerHandle, user: &str, pass: &str, vhost: &str) -> String {
    let vhost = vhost.replace('/', "%2F");
    format!("amqp://{user}:{pass}@127.0.0.1:{}/{vhost}", b.port())
}

async fn try_connect(uri: &str) -> Result<lapin::Connection, lapin::Error> {
    within(lapin::Connection::connect(
        uri,
        lapin::ConnectionProperties::default(),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_and_tags() {
    let (b, api) = broker();
    let who = api.get_json("/api/whoami");
    assert_eq!(who, json!({"name": "guest", "tags": ["administrator"]}));

    for a in [
        api.as_user(None).get("/api/users"),
        api.as_user(Some(("guest", "wrong"))).get("/api/users"),
        api.as_user(Some(("nosuch", "x"))).get("/api/whoami"),
    ] {
        assert_error(&a, 401, "not_authorized", "Not_Authorized");
        assert_eq!(
            a.www_authenticate.as_deref(),
            Some("Basic realm=\"RabbitMQ Management\"")
        );
    }

    // A management user may ask who it is, not list users.
    let r = api.put(
        "/api/users/mgmt",
        r#"{"password":"mgmt-pw","tags":"management"}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let mgmt = api.as_user(Some(("mgmt", "mgmt-pw")));
    assert_eq!(
        mgmt.get_json("/api/whoami"),
        json!({"name": "mgmt", "tags": ["management"]})
    );
    for path in [
        "/api/users",
        "/api/vhosts",
        "/api/permissions",
        "/api/definitions",
    ] {
        let a = mgmt.get(path);
        assert_error(&a, 401, "not_authorised", "Not administrator user");
        assert_eq!(a.www_authenticate, None);
    }
    // A user without a management tag may not use the API at all.
    api.put("/api/users/plain", r#"{"password":"plain-pw","tags":""}"#);
    let a = api.as_user(Some(("plain", "plain-pw"))).get("/api/whoami");
    assert_error(&a, 401, "not_authorised", "Not management user");
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_created_over_http_log_in_over_amqp() {
    let (b, api) = broker();
    let r = api.put(
        "/api/users/u1",
        r#"{"password":"p1","tags":"monitoring,policymaker"}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = api.put(
        "/api/users/u1",
        r#"{"password":"p1","tags":["monitoring","policymaker"]}"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    let u = api.get_json("/api/users/u1");
    assert_eq!(u["name"], "u1");
    assert_eq!(u["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert_eq!(u["tags"], json!(["monitoring", "policymaker"]));
    assert_eq!(u["limits"], json!({}));
    assert!(!u["password_hash"].as_str().unwrap().is_empty());
    let users = api.get_json("/api/users");
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"guest") && names.contains(&"u1"),
        "{names:?}"
    );
    assert!(api
        .get_json("/api/users/without-permissions")
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == "u1"));

    let r = api.put(
        "/api/permissions/%2F/u1",
        r#"{"configure":".*","write":".*","read":".*"}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let conn = connect(&amqp(&b, "u1", "p1", "/")).await;
    assert_connection_usable(&conn).await;
    let _ = conn.close(200, "bye").await;
    assert!(try_connect(&amqp(&b, "u1", "wrong", "/")).await.is_err());

    // A PUT with tags only clears the password, as in RabbitMQ
    // (rabbit_auth_backend_internal:put_user); sending the hash back keeps it.
    let r = api.put("/api/users/u1", r#"{"tags":"monitoring"}"#);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(api.get_json("/api/users/u1")["password_hash"], "");
    assert!(try_connect(&amqp(&b, "u1", "p1", "/")).await.is_err());
    let keep = json!({
        "tags": "administrator",
        "password_hash": u["password_hash"],
        "hashing_algorithm": u["hashing_algorithm"],
    });
    let r = api.put("/api/users/u1", &keep.to_string());
    assert_eq!(r.status, 204, "{r:?}");
    let conn = connect(&amqp(&b, "u1", "p1", "/")).await;
    let _ = conn.close(200, "bye").await;
    // … and with it the new tag: u1 is an administrator now.
    let u1 = api.as_user(Some(("u1", "p1")));
    assert_eq!(u1.get("/api/users").status, 200);

    // A RabbitMQ-format hash of a known password.
    let hash = PasswordHash::with_salt(HashAlgo::Sha256, [7, 1, 2, 9], "hashed-secret").to_base64();
    let body = json!({
        "password_hash": hash,
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": ""
    });
    let r = api.put("/api/users/u2", &body.to_string());
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(api.get_json("/api/users/u2")["password_hash"], hash);
    api.put(
        "/api/permissions/%2F/u2",
        r#"{"configure":".*","write":".*","read":".*"}"#,
    );
    let conn = connect(&amqp(&b, "u2", "hashed-secret", "/")).await;
    let _ = conn.close(200, "bye").await;
    let r = api.put(
        "/api/users/u3",
        r#"{"password_hash":"not base64!","tags":""}"#,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"], "bad_request");

    let r = api.put("/api/users/u4", r#"{"password":"p"}"#);
    assert_error(&r, 400, "bad_request", "tags_not_present");

    assert_eq!(api.delete("/api/users/u2").status, 204);
    assert_error(
        &api.delete("/api/users/u2"),
        404,
        "Object Not Found",
        "Not Found",
    );
    assert_error(
        &api.get("/api/users/u2"),
        404,
        "Object Not Found",
        "Not Found",
    );
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhosts_and_permissions() {
    let (b, api) = broker();
    let r = api.put(
        "/api/vhosts/v",
        r#"{"description":"test vhost","tags":"a,b"}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        api.put(
            "/api/vhosts/v",
            r#"{"description":"test vhost","tags":["a","b"]}"#
        )
        .status,
        204
    );
    let v = api.get_json("/api/vhosts/v");
    assert_eq!(v["name"], "v");
    assert_eq!(v["description"], "test vhost");
    assert_eq!(v["tags"], json!(["a", "b"]));
    assert_eq!(
        v["metadata"],
        json!({"description": "test vhost", "tags": ["a", "b"]})
    );
    assert_eq!(v["tracing"], false);
    assert!(v["cluster_state"].is_object());
    let all = api.get_json("/api/vhosts");
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"/") && names.contains(&"v"), "{names:?}");
    assert_eq!(api.get_json("/api/vhosts/%2F")["name"], "/");

    api.put("/api/users/u", r#"{"password":"pw","tags":""}"#);
    let r = api.put(
        "/api/permissions/v/u",
        r#"{"configure":"^$","write":".*","read":".*"}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        api.get_json("/api/permissions/v/u"),
        json!({"user": "u", "vhost": "v", "configure": "^$", "write": ".*", "read": ".*"})
    );
    assert!(api
        .get_json("/api/vhosts/v/permissions")
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["user"] == "u"));
    assert_eq!(
        api.get_json("/api/users/u/permissions")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(api
        .get_json("/api/permissions")
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["user"] == "u" && p["vhost"] == "v"));

    let conn = connect(&amqp(&b, "u", "pw", "v")).await;
    let ch = channel(&conn).await;
    let res =
        within(ch.queue_declare("q", QueueDeclareOptions::default(), FieldTable::default())).await;
    assert_amqp_error(
        &res.expect_err("configure refused"),
        403,
        "ACCESS_REFUSED - configure access to queue 'q' in vhost 'v' refused for user 'u'",
    );
    let _ = conn.close(200, "bye").await;

    let r = api.put("/api/permissions/v/u", r#"{"configure":"("}"#);
    assert_error(
        &r,
        400,
        "bad_request",
        "[{key_missing,write},{key_missing,read}]",
    );
    let r = api.put(
        "/api/permissions/v/u",
        r#"{"configure":"(","write":".*","read":".*"}"#,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"], "bad_request");
    let r = api.put(
        "/api/permissions/v/nosuch",
        r#"{"configure":".*","write":".*","read":".*"}"#,
    );
    assert_error(&r, 400, "bad_request", "vhost_or_user_not_found");
    let r = api.put(
        "/api/permissions/nosuch/u",
        r#"{"configure":".*","write":".*","read":".*"}"#,
    );
    assert_error(&r, 400, "bad_request", "vhost_or_user_not_found");
    assert_eq!(
        api.put(
            "/api/permissions/v/u",
            r#"{"configure":".*","write":".*","read":".*"}"#
        )
        .status,
        204
    );

    // Clearing the permission refuses the next connection.
    assert_eq!(api.delete("/api/permissions/v/u").status, 204);
    assert_error(
        &api.get("/api/permissions/v/u"),
        404,
        "Object Not Found",
        "Not Found",
    );
    assert_error(
        &api.delete("/api/permissions/v/u"),
        404,
        "Object Not Found",
        "Not Found",
    );
    let err = try_connect(&amqp(&b, "u", "pw", "v"))
        .await
        .expect_err("no permission");
    assert_amqp_error(
        &err,
        530,
        "NOT_ALLOWED - access to vhost 'v' refused for user 'u'",
    );

    assert_eq!(api.delete("/api/vhosts/v").status, 204);
    assert_error(
        &api.get("/api/vhosts/v"),
        404,
        "Object Not Found",
        "Not Found",
    );
    assert_error(
        &api.delete("/api/vhosts/v"),
        404,
        "Object Not Found",
        "Not Found",
    );
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_permissions() {
    let (b, api) = broker();
    api.put("/api/users/t", r#"{"password":"pw","tags":""}"#);
    let body = r#"{"exchange":"amq.topic","write":"^a","read":"^b"}"#;
    assert_eq!(api.put("/api/topic-permissions/%2F/t", body).status, 201);
    assert_eq!(api.put("/api/topic-permissions/%2F/t", body).status, 204);
    let want =
        json!([{"user": "t", "vhost": "/", "exchange": "amq.topic", "write": "^a", "read": "^b"}]);
    assert_eq!(api.get_json("/api/topic-permissions/%2F/t"), want);
    assert_eq!(api.get_json("/api/users/t/topic-permissions"), want);
    assert!(api
        .get_json("/api/topic-permissions")
        .as_array()
        .unwrap()
        .contains(&want[0]));
    assert!(api
        .get_json("/api/vhosts/%2F/topic-permissions")
        .as_array()
        .unwrap()
        .contains(&want[0]));
    let r = api.put(
        "/api/topic-permissions/%2F/t",
        r#"{"write":"^a","read":"^b"}"#,
    );
    assert_error(&r, 400, "bad_request", "[{key_missing,exchange}]");
    assert_eq!(api.delete("/api/topic-permissions/%2F/t").status, 204);
    assert_error(
        &api.get("/api/topic-permissions/%2F/t"),
        404,
        "Object Not Found",
        "Not Found",
    );
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_and_user_limits() {
    let (b, api) = broker();
    assert_eq!(api.get_json("/api/vhost-limits"), json!([]));
    assert_eq!(
        api.put("/api/vhost-limits/%2F/max-connections", r#"{"value":1}"#)
            .status,
        204
    );
    assert_eq!(
        api.put("/api/vhost-limits/%2F/max-queues", r#"{"value":10}"#)
            .status,
        204
    );
    let want = json!([{"vhost": "/", "value": {"max-connections": 1, "max-queues": 10}}]);
    assert_eq!(api.get_json("/api/vhost-limits"), want);
    assert_eq!(api.get_json("/api/vhost-limits/%2F"), want);
    // The limit applies: a second connection to `/` is refused.
    let c1 = connect(&amqp(&b, "guest", "guest", "/")).await;
    let err = try_connect(&amqp(&b, "guest", "guest", "/"))
        .await
        .expect_err("over the limit");
    assert_eq!(amqp_error(&err).map(|(c, _)| c), Some(530), "{err:?}");
    let _ = c1.close(200, "bye").await;
    let r = api.put("/api/vhost-limits/%2F/max-bogus", r#"{"value":1}"#);
    assert_eq!(r.status, 400, "{r:?}");
    let r = api.put("/api/vhost-limits/%2F/max-queues", r#"{"value":"x"}"#);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.json()["reason"]
        .as_str()
        .unwrap()
        .contains("max-queues should be a number"));
    assert_error(
        &api.put("/api/vhost-limits/nosuch/max-queues", r#"{"value":1}"#),
        404,
        "Object Not Found",
        "Not Found",
    );
    assert_eq!(
        api.delete("/api/vhost-limits/%2F/max-connections").status,
        204
    );
    assert_eq!(
        api.delete("/api/vhost-limits/%2F/max-connections").status,
        204
    );
    assert_eq!(
        api.get_json("/api/vhost-limits/%2F"),
        json!([{"vhost": "/", "value": {"max-queues": 10}}])
    );
    assert_eq!(api.delete("/api/vhost-limits/%2F/max-queues").status, 204);
    assert_eq!(api.get_json("/api/vhost-limits/%2F"), json!([]));

    api.put("/api/users/l", r#"{"password":"pw","tags":""}"#);
    assert_eq!(
        api.put("/api/user-limits/l/max-channels", r#"{"value":5}"#)
            .status,
        204
    );
    assert_eq!(
        api.put("/api/user-limits/l/max-connections", r#"{"value":2}"#)
            .status,
        204
    );
    let want = json!([{"user": "l", "value": {"max-connections": 2, "max-channels": 5}}]);
    assert_eq!(api.get_json("/api/user-limits"), want);
    assert_eq!(api.get_json("/api/user-limits/l"), want);
    assert_eq!(api.get_json("/api/users/l")["limits"], want[0]["value"]);
    assert_eq!(api.delete("/api/user-limits/l/max-channels").status, 204);
    assert_eq!(
        api.get_json("/api/user-limits/l"),
        json!([{"user": "l", "value": {"max-connections": 2}}])
    );
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_round_trip_to_a_second_broker() {
    let (a, api_a) = broker();
    api_a.put("/api/vhosts/dv", r#"{"description":"defs","tags":"t1"}"#);
    api_a.put(
        "/api/users/du",
        r#"{"password":"du-pw","tags":"policymaker"}"#,
    );
    api_a.put(
        "/api/permissions/dv/du",
        r#"{"configure":".*","write":".*","read":"^r"}"#,
    );
    api_a.put(
        "/api/topic-permissions/dv/du",
        r#"{"exchange":"amq.topic","write":"^w","read":".*"}"#,
    );
    api_a.put("/api/vhost-limits/dv/max-queues", r#"{"value":7}"#);
    api_a.put("/api/user-limits/du/max-channels", r#"{"value":3}"#);
    let conn = connect(&amqp(&a, "guest", "guest", "/")).await;
    let ch = channel(&conn).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    within(ch.queue_declare("defs-q", durable, FieldTable::default()))
        .await
        .unwrap();
    let _ = conn.close(200, "bye").await;

    let exported = api_a.get("/api/definitions");
    assert_eq!(exported.status, 200);
    let defs = exported.json();
    for key in [
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "queues",
        "exchanges",
        "bindings",
    ] {
        assert!(defs[key].is_array(), "{key} in {defs}");
    }
    assert_eq!(defs["rabbitmq_version"], "3.13.7");
    a.shutdown();

    let (b, api_b) = broker();
    let r = api_b.post("/api/definitions", &exported.body);
    assert_eq!(r.status, 204, "{r:?}");
    let again = api_b.get_json("/api/definitions");
    for key in [
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "queues",
    ] {
        assert_eq!(sorted(&again[key]), sorted(&defs[key]), "{key}");
    }
    assert_eq!(
        api_b.get_json("/api/vhost-limits/dv")[0]["value"],
        json!({"max-queues": 7})
    );
    // The imported password hash logs in.
    let conn = connect(&amqp(&b, "du", "du-pw", "dv")).await;
    let _ = conn.close(200, "bye").await;

    assert_error(
        &api_b.post("/api/definitions", "{not json"),
        400,
        "bad_request",
        "failed_to_parse_json",
    );
    let r = api_b.post("/api/definitions", "[1,2]");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"], "bad_request");
    b.shutdown();
}

/// A JSON array in a stable order, to compare exports.
fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json() {
    let (b, api) = broker();
    assert_error(
        &api.get("/api/nosuchthing"),
        404,
        "Object Not Found",
        "Not Found",
    );
    assert_error(
        &api.get("/nothing/here"),
        404,
        "Object Not Found",
        "Not Found",
    );
    assert_error(
        &api.put("/api/users/x", "not json"),
        400,
        "bad_request",
        "not_json",
    );
    assert_error(
        &api.put("/api/users/x", r#"{"password":"#),
        400,
        "bad_request",
        "not_json",
    );
    let r = api.call("PATCH", "/api/users/x", Some("{}"));
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.json()["error"].is_string());
    let r = api.post("/api/users", "{}");
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.json()["reason"].is_string());
    // Odd input never takes the server down.
    assert_eq!(
        api.put("/api/users/x", r#"{"password":1,"tags":7}"#).status,
        400
    );
    assert_eq!(
        api.put("/api/vhost-limits/%2F/max-queues", "[]").status,
        400
    );
    assert_eq!(api.put("/api/vhosts/%FF", "").status, 400);
    let o = api.get_json("/api/overview");
    assert_eq!(o["product_name"], "warren");
    assert_eq!(o["rabbitmq_version"], "3.13.7");
    assert_eq!(o["management_version"], "3.13.7");
    assert!(o["node"].as_str().unwrap().starts_with("warren@"));
    assert_eq!(api.get_json("/api/whoami")["name"], "guest");
    b.shutdown();
}

#[test]
fn http_can_be_disabled() {
    let b = warren::start(Config {
        http_port: None,
        ..Config::for_tests(1)
    })
    .expect("broker starts");
    assert_eq!(b.http_port(), None);
    b.shutdown();
}

/// `POST /api/users/bulk-delete` deletes in order and stops at a missing
/// user (RabbitMQ's is not atomic either); `GET /api/auth/hash_password`
/// gives a hash that logs in when a user is created with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_and_hash_password() {
    deadline(30, async {
        let (b, api) = broker();
        for u in ["bd-1", "bd-2", "bd-3"] {
            let a = api.call(
                "PUT",
                &format!("/api/users/{u}"),
                Some(r#"{"password":"pw","tags":""}"#),
            );
            assert_eq!(a.status, 201, "{a:?}");
        }
        let a = api.call(
            "POST",
            "/api/users/bulk-delete",
            Some(r#"{"users":["bd-1","bd-2"]}"#),
        );
        assert_eq!(a.status, 204, "{a:?}");
        assert_eq!(api.call("GET", "/api/users/bd-1", None).status, 404);
        assert_eq!(api.call("GET", "/api/users/bd-3", None).status, 200);
        let a = api.call(
            "POST",
            "/api/users/bulk-delete",
            Some(r#"{"users":["bd-3","nobody"]}"#),
        );
        assert_eq!(a.status, 404, "{a:?}");
        assert_eq!(
            api.call("GET", "/api/users/bd-3", None).status,
            404,
            "deleted before the error"
        );
        assert_eq!(
            api.call("POST", "/api/users/bulk-delete", Some("{}"))
                .status,
            400
        );

        let h = api
            .call("GET", "/api/auth/hash_password/s3cret", None)
            .json();
        let hash = h["ok"].as_str().expect("a hash").to_string();
        let body = json!({"password_hash": hash, "tags": "administrator"}).to_string();
        assert_eq!(
            api.call("PUT", "/api/users/hashed", Some(&body)).status,
            201
        );
        let as_hashed = api.as_user(Some(("hashed", "s3cret")));
        assert_eq!(
            as_hashed.call("GET", "/api/whoami", None).status,
            200,
            "the hash is the password's"
        );
        b.shutdown();
    })
    .await;
}
