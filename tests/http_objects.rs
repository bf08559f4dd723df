//! The management API for queues, exchanges and bindings (src/http/queues.rs,
//! exchanges.rs, bindings.rs over src/admin/objects.rs and exchanges.rs),
//! driven with a real HTTP client (ureq) against an in-process broker of two
//! shards, and checked with lapin: counts after known traffic, the list
//! parameters, declare / delete / purge / get / publish with RabbitMQ 3.13's
//! codes and bodies, bindings by `properties_key`, and who may do what.
//! Rates come from 5 s samples: only counts are checked.

mod common_http;
mod common_lapin;

use common_http::*;
use common_lapin::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Value};
use warren::{BrokerHandle, Config};

fn broker() -> (BrokerHandle, Api, String) {
    let _ = env_logger::builder().is_test(true).try_init();
    let b = warren::start(Config::for_tests(2)).expect("broker starts");
    let api = Api::new(b.http_port().expect("the HTTP API runs in tests"));
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.port());
    (b, api, uri)
}

/// Polls GET `path` until `check` holds for its JSON (counts cross shards).
fn poll_json(api: &Api, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = api.get(path);
        if a.status == 200 && check(&a.json()) {
            return a.json();
        }
        if std::time::Instant::now() > deadline {
            panic!("{what}: last answer to GET {path}: {a:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_counts_follow_traffic() {
    deadline(30, async {
        let (b, api, uri) = broker();
        let conn = connect(&uri).await;
        let ch = confirm_channel(&conn).await;
        let q = unique("hq");
        declare(&ch, &q).await;
        for i in 0..3 {
            within(ch.basic_publish(
                "",
                &q,
                Default::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            ))
            .await
            .unwrap()
            .await
            .unwrap();
        }
        let path = format!("/api/queues/%2F/{q}");
        let one = poll_json(&api, &path, "3 messages", |v| v["messages"] == 3);
        assert_eq!(one["messages_ready"], 3);
        assert_eq!(one["messages_unacknowledged"], 0);
        assert_eq!(one["message_bytes"], 6);
        assert_eq!(one["message_stats"]["publish"], 3);
        assert!(one["message_stats"]["publish_details"]["rate"].is_number());
        assert_eq!(one["consumers"], 0);
        assert_eq!(one["consumer_details"], json!([]));
        assert_eq!(one["type"], "classic");
        assert_eq!(one["state"], "running");
        assert_eq!(one["durable"], false);
        assert_eq!(one["vhost"], "/");
        assert_eq!(one["policy"], Value::Null);
        assert_eq!(one["messages_details"], json!({"rate": 0.0}));
        assert!(one["node"].as_str().unwrap().starts_with("warren@"));

        // A consumer (prefetch 1) takes one message and holds it.
        let cch = channel(&conn).await;
        within(cch.basic_qos(1, Default::default())).await.unwrap();
        let mut consumer =
            within(cch.basic_consume(&q, "ctag-1", Default::default(), FieldTable::default()))
                .await
                .unwrap();
        let _d = within(consumer.next()).await.unwrap().unwrap();
        let one = poll_json(&api, &path, "a consumer", |v| {
            v["consumers"] == 1 && v["messages_unacknowledged"] == 1
        });
        assert_eq!(one["messages_ready"], 2);
        assert_eq!(one["consumer_capacity"], 1.0);
        assert_eq!(one["consumer_details"][0]["consumer_tag"], "ctag-1");
        assert_eq!(
            one["consumer_details"][0]["channel_details"]["peer_host"],
            "127.0.0.1"
        );
        assert_eq!(one["consumer_details"][0]["prefetch_count"], 1);
        assert_eq!(one["consumer_details"][0]["ack_required"], true);
        assert_eq!(one["message_stats"]["deliver"], 1);
        assert_eq!(one["message_stats"]["deliver_get"], 1);
        // warren's latency histograms: one first delivery timed, three
        // publishes confirmed (at once: not persistent).
        let tiq = &one["latency"]["time_in_queue"];
        assert_eq!(tiq["count"], 1, "{tiq}");
        assert_eq!(tiq["buckets"].as_array().unwrap().len(), 21);
        assert_eq!(
            tiq["buckets"][20][0],
            Value::Null,
            "the last bucket is +Inf"
        );
        assert_eq!(one["latency"]["publish_to_confirm"]["count"], 3);
        // The default exchange counted the three publishes, all routed.
        let x = poll_json(
            &api,
            "/api/exchanges/%2F/amq.default",
            "exchange stats",
            |v| v["message_stats"]["publish_in"].as_u64() >= Some(3),
        );
        assert_eq!(
            x["message_stats"]["publish_in"], x["message_stats"]["publish_out"],
            "every publish to the default exchange here was routed: {x}"
        );
        assert!(x["message_stats"]["publish_in_details"]["rate"].is_number());

        // The list: the basic shape (no null fields), the same counts.
        let all = api.get_json("/api/queues");
        let mine = all
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == q.as_str())
            .expect("listed");
        assert_eq!(mine["messages"], 3);
        assert_eq!(mine["consumers"], 1);
        assert!(
            mine.get("policy").is_none(),
            "basic lists drop nulls: {mine}"
        );
        assert!(mine.get("consumer_details").is_none());
        let in_vhost = api.get_json("/api/queues/%2F");
        assert!(names(&in_vhost).contains(&q));
        // disable_stats: the definition only; enable_queue_totals: and counts.
        let bare = api.get_json(&format!("/api/queues/%2F?disable_stats=true&name={q}"));
        assert_eq!(bare[0]["name"], q.as_str());
        assert!(bare[0].get("messages").is_none(), "{bare}");
        let totals = api.get_json(&format!(
            "/api/queues/%2F?disable_stats=true&enable_queue_totals=true&name={q}"
        ));
        assert_eq!(totals[0]["messages"], 3);
        assert_eq!(totals[0]["messages_ready"], 2);
        assert!(totals[0].get("consumers").is_none());
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_parameters() {
    deadline(30, async {
        let (b, api, _) = broker();
        let p = unique("pg");
        for n in ["c", "a", "b"] {
            let r = api.put(&format!("/api/queues/%2F/{p}-{n}"), "{}");
            assert_eq!(r.status, 201, "{r:?}");
        }
        let page = api.get_json(&format!(
            "/api/queues?name={p}&page=1&page_size=2&sort=name&sort_reverse=true&columns=name,messages"
        ));
        assert_eq!(page["filtered_count"], 3);
        assert_eq!(page["item_count"], 2);
        assert_eq!(page["page_count"], 2);
        assert_eq!(
            page["items"],
            json!([{"name": format!("{p}-c"), "messages": 0}, {"name": format!("{p}-b"), "messages": 0}])
        );
        let rest = api.get_json(&format!("/api/queues?name={p}&page=2&page_size=2&sort=name"));
        assert_eq!(names(&rest["items"]), vec![format!("{p}-c")]);
        // Default order: by vhost and name.
        let plain = api.get_json(&format!("/api/queues/%2F?name={p}"));
        assert_eq!(names(&plain), vec![format!("{p}-a"), format!("{p}-b"), format!("{p}-c")]);
        let bad = api.get("/api/queues?page=1&page_size=501");
        assert_eq!(bad.status, 400, "{bad:?}");
        // Exchanges take the same parameters.
        let xs = api.get_json("/api/exchanges/%2F?columns=name,type&sort=name");
        assert_eq!(xs[0], json!({"name": "", "type": "direct"}));
        assert_eq!(xs[1]["name"], "amq.direct");
        let one = api.get_json(&format!("/api/queues/%2F/{p}-a?columns=name,durable"));
        assert_eq!(one, json!({"name": format!("{p}-a"), "durable": false}));
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_delete_and_purge_queues() {
    deadline(30, async {
        let (b, api, uri) = broker();
        let q = unique("dq");
        let path = format!("/api/queues/%2F/{q}");
        let body = r#"{"durable":true,"auto_delete":false,"arguments":{"x-max-length":10}}"#;
        assert_eq!(api.put(&path, body).status, 201);
        assert_eq!(api.put(&path, body).status, 204, "an equivalent redeclare");
        let v = api.get_json(&path);
        assert_eq!(v["durable"], true);
        assert_eq!(v["arguments"], json!({"x-max-length": 10}));
        let r = api.put(&path, r#"{"durable":false,"arguments":{"x-max-length":10}}"#);
        assert_error(
            &r,
            400,
            "bad_request",
            &format!("inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but current is 'true'"),
        );
        let r = api.put(&format!("{path}-b"), r#"{"durable":"yes"}"#);
        assert_eq!(r.status, 400);
        assert_eq!(r.json(), json!({"error": "bad_request", "reason": ["not_boolean", "yes"]}));
        assert_eq!(api.put(&format!("{path}-s"), r#"{"durable":"true"}"#).status, 201);
        assert_eq!(api.get_json(&format!("{path}-s"))["durable"], true, "rabbitmqadmin's strings");
        let r = api.put("/api/queues/%2F/amq.nope", "{}");
        assert_error(&r, 401, "not_authorised", "Access refused.");

        // A lapin client sees it, and fills it.
        let conn = connect(&uri).await;
        let ch = confirm_channel(&conn).await;
        let declared = within(ch.queue_declare(
            &q,
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        ))
        .await
        .expect("the API's queue exists for AMQP clients");
        assert_eq!(declared.message_count(), 0);
        for _ in 0..2 {
            within(ch.basic_publish("", &q, Default::default(), b"x", BasicProperties::default()))
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let r = api.delete(&format!("{path}?if-empty=true"));
        assert_error(&r, 400, "bad_request", &format!("queue '{q}' in vhost '/' not empty"));
        let cch = channel(&conn).await;
        within(cch.basic_qos(1, Default::default())).await.unwrap();
        let _consumer = within(cch.basic_consume(&q, "c", Default::default(), FieldTable::default()))
            .await
            .unwrap();
        poll_json(&api, &path, "consumer", |v| v["consumers"] == 1);
        let r = api.delete(&format!("{path}?if-unused=true"));
        assert_error(&r, 400, "bad_request", &format!("queue '{q}' in vhost '/' in use"));
        within(cch.close(200, "bye")).await.unwrap();
        poll_json(&api, &path, "consumer gone", |v| v["consumers"] == 0 && v["messages_ready"] == 2);
        assert_eq!(api.delete(&format!("{path}/contents")).status, 204);
        assert_eq!(api.get_json(&path)["messages"], 0);
        assert_eq!(message_count(&ch, &q).await, 0, "purged for AMQP clients too");
        assert_eq!(api.delete(&format!("{path}?if-empty=true")).status, 204);
        assert_error(&api.get(&path), 404, "Object Not Found", "Not Found");
        assert_error(&api.delete(&path), 404, "Object Not Found", "Not Found");
        assert_error(&api.get("/api/queues/nosuch-vhost"), 404, "Object Not Found", "Not Found");
        assert_error(&api.put("/api/queues/nosuch-vhost/q", "{}"), 404, "not_found", "vhost_not_found");

        // An exclusive queue belongs to its connection, not to the API.
        let x = temp_queue(&ch).await;
        let r = api.delete(&format!("/api/queues/%2F/{x}"));
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.json()["reason"].as_str().unwrap().starts_with("cannot obtain exclusive access to locked queue"));
        let v = api.get_json(&format!("/api/queues/%2F/{x}"));
        assert_eq!(v["exclusive"], true);
        assert!(v["owner_pid_details"]["name"].is_string(), "{v}");
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_messages_with_each_ackmode() {
    deadline(30, async {
        let (b, api, uri) = broker();
        let conn = connect(&uri).await;
        let ch = confirm_channel(&conn).await;
        let (q, dlq) = (unique("gq"), unique("gdlq"));
        declare(&ch, &dlq).await;
        let args = table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]);
        within(ch.queue_declare(&q, Default::default(), args)).await.unwrap();
        let headers = table(&[("h", s("v")), ("n", AMQPValue::LongInt(7))]);
        let props = BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_delivery_mode(2)
            .with_headers(headers)
            .with_message_id("id-1".into());
        for body in [&b"one"[..], &[0xff, 0xfe][..], b"three"] {
            within(ch.basic_publish("", &q, Default::default(), body, props.clone()))
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let path = format!("/api/queues/%2F/{q}/get");
        poll_json(&api, &format!("/api/queues/%2F/{q}"), "3 messages", |v| v["messages"] == 3);

        // Requeued: the same messages come back, redelivered.
        let r = api.post(&path, r#"{"count":2,"ackmode":"ack_requeue_true","encoding":"auto"}"#);
        assert_eq!(r.status, 200, "{r:?}");
        let got = r.json();
        assert_eq!(got.as_array().unwrap().len(), 2);
        assert_eq!(got[0]["payload"], "one");
        assert_eq!(got[0]["payload_encoding"], "string");
        assert_eq!(got[0]["payload_bytes"], 3);
        assert_eq!(got[0]["redelivered"], false);
        assert_eq!(got[0]["exchange"], "");
        assert_eq!(got[0]["routing_key"], q.as_str());
        assert_eq!(got[0]["message_count"], 2);
        assert_eq!(
            got[0]["properties"],
            json!({"content_type": "text/plain", "delivery_mode": 2, "message_id": "id-1", "headers": {"h": "v", "n": 7}})
        );
        assert_eq!(got[1]["payload"], "//4=", "not UTF-8: base64");
        assert_eq!(got[1]["payload_encoding"], "base64");
        let first = within(ch.basic_get(&q, BasicGetOptions { no_ack: false })).await.unwrap().expect("requeued");
        assert!(first.delivery.redelivered, "a requeued message is redelivered");
        assert_eq!(first.delivery.data, b"one");
        within(first.delivery.nack(BasicNackOptions { requeue: true, ..Default::default() })).await.unwrap();
        // The nack travels through the client's connection; the HTTP get
        // below goes straight to the queue's shard: wait until it is back.
        poll_json(&api, &format!("/api/queues/%2F/{q}"), "the nacked message is back", |v| {
            v["messages_ready"] == 3 && v["messages_unacknowledged"] == 0
        });

        // base64 and truncate.
        let r = api.post(&path, r#"{"count":1,"ackmode":"reject_requeue_true","encoding":"base64","truncate":2}"#);
        assert_eq!(r.json()[0]["payload"], "b24=");
        assert_eq!(r.json()[0]["redelivered"], true);
        assert_eq!(r.json()[0]["payload_bytes"], 3);

        // Rejected without requeue: dead-lettered.
        let r = api.post(&path, r#"{"count":1,"ackmode":"reject_requeue_false","encoding":"auto"}"#);
        assert_eq!(r.json()[0]["payload"], "one");
        poll_json(&api, &format!("/api/queues/%2F/{dlq}"), "dead-lettered", |v| v["messages"] == 1);
        // Taken without ack: gone.
        let r = api.post(&path, r#"{"count":5,"ackmode":"ack_requeue_false","encoding":"auto"}"#);
        assert_eq!(r.json().as_array().unwrap().len(), 2);
        assert_eq!(r.json()[1]["payload"], "three");
        assert_eq!(message_count(&ch, &q).await, 0);
        let v = api.get_json(&format!("/api/queues/%2F/{q}"));
        assert_eq!(v["message_stats"]["get_no_ack"], 2);
        assert_eq!(v["message_stats"]["get"], 5, "the API's 4 and lapin's 1");
        let r = api.post(&path, r#"{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}"#);
        assert_eq!(r.json(), json!([]));
        let r = api.post(&path, r#"{"count":1}"#);
        assert_error(&r, 400, "bad_request", "[{key_missing,ackmode},{key_missing,encoding}]");
        let r = api.post("/api/queues/%2F/nosuch/get", r#"{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}"#);
        assert_error(&r, 404, "not_found", "queue_not_found");
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_routes_like_amqp() {
    deadline(30, async {
        let (b, api, uri) = broker();
        let conn = connect(&uri).await;
        let ch = channel(&conn).await;
        let q = unique("pq");
        within(ch.queue_declare(&q, QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default()))
            .await
            .unwrap();
        let body = json!({
            "routing_key": q,
            "properties": {"delivery_mode": 2, "headers": {"k": "v", "n": 5}, "correlation_id": "c-1"},
            "payload": "aGVsbG8gd29ybGQ=",
            "payload_encoding": "base64",
        });
        let r = api.post("/api/exchanges/%2F/amq.default/publish", &body.to_string());
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json(), json!({"routed": true}));
        // In the queue when the API answered.
        let m = within(ch.basic_get(&q, BasicGetOptions { no_ack: true })).await.unwrap().expect("published");
        assert_eq!(m.delivery.data, b"hello world");
        let p = &m.delivery.properties;
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some("c-1"));
        let h = p.headers().as_ref().expect("headers").inner();
        assert_eq!(h.get("k"), Some(&AMQPValue::LongString("v".into())));
        assert_eq!(h.get("n"), Some(&AMQPValue::LongLongInt(5)));

        // A topic exchange with a binding made over the API.
        let x = unique("px");
        let r = api.put(&format!("/api/exchanges/%2F/{x}"), r#"{"type":"topic","durable":false}"#);
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(api.put(&format!("/api/exchanges/%2F/{x}"), r#"{"type":"topic"}"#).status, 204);
        let r = api.post(&format!("/api/bindings/%2F/e/{x}/q/{q}"), r#"{"routing_key":"a.*"}"#);
        assert_eq!(r.status, 201, "{r:?}");
        let publish = |key: &str| {
            let body = json!({"routing_key": key, "properties": {}, "payload": key, "payload_encoding": "string"});
            api.post(&format!("/api/exchanges/%2F/{x}/publish"), &body.to_string()).json()
        };
        assert_eq!(publish("a.b"), json!({"routed": true}));
        assert_eq!(publish("b.c"), json!({"routed": false}));
        let m = within(ch.basic_get(&q, BasicGetOptions { no_ack: true })).await.unwrap().expect("routed");
        assert_eq!(m.delivery.data, b"a.b");
        assert_eq!(m.delivery.exchange.as_str(), x);
        assert!(within(ch.basic_get(&q, BasicGetOptions { no_ack: true })).await.unwrap().is_none());

        // Refusals.
        let r = api.post("/api/exchanges/%2F/nosuch/publish", &body.to_string());
        assert_error(&r, 404, "not_found", "exchange_not_found");
        let r = api.post("/api/exchanges/%2F/amq.default/publish", r#"{"routing_key":"k","payload":"x"}"#);
        assert_error(&r, 400, "bad_request", "[{key_missing,properties},{key_missing,payload_encoding}]");
        let r = api.post(
            "/api/exchanges/%2F/amq.default/publish",
            r#"{"routing_key":"k","properties":{"delivery_mode":"2"},"payload":"x","payload_encoding":"string"}"#,
        );
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["reason"], json!(["not_int", "delivery_mode"]));
        let r = api.post(
            "/api/exchanges/%2F/amq.default/publish",
            r#"{"routing_key":"k","properties":{"user_id":"bob"},"payload":"x","payload_encoding":"string"}"#,
        );
        assert_error(
            &r,
            400,
            "bad_request",
            "406 PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'",
        );
        // The exchange endpoints.
        let v = api.get_json(&format!("/api/exchanges/%2F/{x}"));
        assert_eq!(v["type"], "topic");
        assert_eq!(v["durable"], false);
        let d = api.get_json("/api/exchanges/%2F/amq.default");
        assert_eq!((d["name"].as_str(), d["user_who_performed_action"].as_str()), (Some(""), Some("rmq-internal")));
        assert_error(&api.put("/api/exchanges/%2F/amq.default", "{}"), 401, "not_authorised", "Access refused.");
        assert_error(&api.delete("/api/exchanges/%2F/amq.direct"), 401, "not_authorised", "Access refused.");
        let r = api.delete(&format!("/api/exchanges/%2F/{x}?if-unused=true"));
        assert_error(&r, 400, "bad_request", &format!("exchange '{x}' in vhost '/' in use"));
        let r = api.put(&format!("/api/exchanges/%2F/{x}"), r#"{"type":"direct"}"#);
        assert_error(
            &r,
            400,
            "bad_request",
            &format!("inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'direct' but current is 'topic'"),
        );
        assert_eq!(api.delete(&format!("/api/exchanges/%2F/{x}")).status, 204);
        assert_error(&api.get(&format!("/api/exchanges/%2F/{x}")), 404, "Object Not Found", "Not Found");
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_by_properties_key() {
    deadline(30, async {
        let (b, api, uri) = broker();
        let (x, q) = (unique("bx"), unique("bq"));
        assert_eq!(
            api.put(&format!("/api/exchanges/%2F/{x}"), r#"{"type":"headers"}"#)
                .status,
            201
        );
        assert_eq!(api.put(&format!("/api/queues/%2F/{q}"), "{}").status, 201);
        let base = format!("/api/bindings/%2F/e/{x}/q/{q}");
        let r = api.post(&base, "{}");
        assert_eq!(
            (r.status, r.location.as_deref()),
            (201, Some(format!("{q}/~").as_str()))
        );
        let r = api.post(
            &base,
            r#"{"routing_key":"k","arguments":{"x-match":"any","foo":"bar"}}"#,
        );
        assert_eq!(r.status, 201, "{r:?}");
        let location = r.location.clone().expect("Location");
        let props = location
            .strip_prefix(&format!("{q}/"))
            .expect("relative to the request")
            .to_string();
        assert!(props.starts_with("k~") && props.len() == 8, "{props}");
        let list = api.get_json(&base);
        assert_eq!(list.as_array().unwrap().len(), 2);
        let with_args = list
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["routing_key"] == "k")
            .unwrap();
        assert_eq!(with_args["properties_key"], props.as_str());
        assert_eq!(
            with_args["arguments"],
            json!({"x-match": "any", "foo": "bar"})
        );
        assert_eq!(with_args["destination_type"], "queue");
        assert_eq!(with_args["source"], x.as_str());
        // The queue's bindings include the default exchange's.
        let of_q = api.get_json(&format!("/api/queues/%2F/{q}/bindings"));
        assert_eq!(of_q.as_array().unwrap().len(), 3);
        assert_eq!(of_q[0]["source"], "");
        assert_eq!(of_q[0]["routing_key"], q.as_str());
        assert_eq!(of_q[0]["properties_key"], q.as_str());
        let all = api.get_json("/api/bindings/%2F");
        assert!(all
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["source"] == "" && b["destination"] == q.as_str()));
        assert_eq!(
            api.get_json(&format!("/api/exchanges/%2F/{x}/bindings/source"))
                .as_array()
                .unwrap()
                .len(),
            2
        );

        // The binding works for AMQP clients: headers routing on its arguments.
        let conn = connect(&uri).await;
        let ch = confirm_channel(&conn).await;
        let props_h = BasicProperties::default().with_headers(table(&[("foo", s("bar"))]));
        within(ch.basic_publish(&x, "", Default::default(), b"h", props_h))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(message_count(&ch, &q).await, 1);

        // One binding by its key: shown, deleted, then gone.
        let one = format!("{base}/{}", props.replace('~', "%7E"));
        let v = api.get_json(&format!("{base}/{props}"));
        assert_eq!(v["routing_key"], "k");
        assert_eq!(api.get(&one).status, 200, "the segment is URL-decoded once");
        assert_eq!(api.delete(&format!("{base}/{props}")).status, 204);
        assert_error(
            &api.delete(&format!("{base}/{props}")),
            404,
            "Object Not Found",
            "Not Found",
        );
        assert_eq!(api.get(&format!("{base}/~")).status, 200);
        assert_eq!(
            api.get(&format!("{base}/k")).status,
            404,
            "k has no binding without arguments"
        );
        // The default exchange's implicit binding: listed, shown, not deletable.
        let implicit = format!("/api/bindings/%2F/e/amq.default/q/{q}/{q}");
        assert_eq!(api.get_json(&implicit)["source"], "");
        assert_error(
            &api.delete(&implicit),
            401,
            "not_authorised",
            "Access refused.",
        );
        let from_default = api.get_json("/api/exchanges/%2F/amq.default/bindings/source");
        assert!(from_default
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["destination"] == q.as_str()));

        // A key that needs quoting: the Location is encoded once more, and
        // the path segment must be too.
        let r = api.post(&base, r#"{"routing_key":"a b/c~d"}"#);
        let location = r.location.clone().expect("Location");
        assert_eq!(location, format!("{q}/a%2Bb%252Fc%257Ed"));
        let v = api.get_json(&format!("{base}/a%2Bb%252Fc%257Ed"));
        assert_eq!(
            (v["routing_key"].as_str(), v["properties_key"].as_str()),
            (Some("a b/c~d"), Some("a+b%2Fc%7Ed"))
        );

        // Exchange to exchange, and refusals.
        let r = api.post(
            &format!("/api/bindings/%2F/e/amq.direct/e/{x}"),
            r#"{"routing_key":"r"}"#,
        );
        assert_eq!(
            (r.status, r.location.as_deref()),
            (201, Some(format!("{x}/r").as_str()))
        );
        let d = api.get_json(&format!("/api/exchanges/%2F/{x}/bindings/destination"));
        assert_eq!(d[0]["destination_type"], "exchange");
        assert_eq!(
            api.delete(&format!("/api/bindings/%2F/e/amq.direct/e/{x}/r"))
                .status,
            204
        );
        let r = api.post(&format!("/api/bindings/%2F/e/{x}/q/nosuch"), "{}");
        assert_error(&r, 404, "not_found", "no queue 'nosuch' in vhost '/'");
        let r = api.post(&format!("/api/bindings/%2F/e/amq.default/q/{q}"), "{}");
        assert_error(&r, 401, "not_authorised", "Access refused.");
        assert_error(
            &api.get("/api/bindings/nosuch-vhost"),
            404,
            "Object Not Found",
            "Not Found",
        );
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_see_and_change_what() {
    deadline(30, async {
        let (b, api, _) = broker();
        let v = unique("hv");
        assert_eq!(api.put(&format!("/api/vhosts/{v}"), "{}").status, 201);
        assert_eq!(api.put("/api/users/mu", r#"{"password":"mu-pw","tags":"management"}"#).status, 201);
        let r = api.put(&format!("/api/permissions/{v}/mu"), r#"{"configure":"^mine","write":".*","read":".*"}"#);
        assert_eq!(r.status, 201, "{r:?}");
        let (q_root, q_v) = (unique("root-q"), unique("v-q"));
        // An administrator acts with their own permissions too.
        assert_error(&api.put(&format!("/api/queues/{v}/{q_v}"), "{}"), 401, "not_authorised", "Access refused.");
        let full = r#"{"configure":".*","write":".*","read":".*"}"#;
        assert_eq!(api.put(&format!("/api/permissions/{v}/guest"), full).status, 201);
        assert_eq!(api.put(&format!("/api/queues/%2F/{q_root}"), "{}").status, 201);
        assert_eq!(api.put(&format!("/api/queues/{v}/{q_v}"), "{}").status, 201);
        let mu = api.as_user(Some(("mu", "mu-pw")));

        // Only the vhosts the user has a permission on.
        for path in [
            "/api/queues/%2F".to_string(),
            format!("/api/queues/%2F/{q_root}"),
            "/api/exchanges/%2F".to_string(),
            "/api/bindings/%2F".to_string(),
        ] {
            assert_error(&mu.get(&path), 401, "not_authorised", "User not authorised to access virtual host");
        }
        let listed = names(&mu.get_json("/api/queues"));
        assert!(listed.contains(&q_v) && !listed.contains(&q_root), "{listed:?}");
        assert!(mu.get_json("/api/exchanges").as_array().unwrap().iter().all(|x| x["vhost"] == v.as_str()));
        assert_eq!(names(&mu.get_json(&format!("/api/queues/{v}"))), vec![q_v.clone()]);

        // Resource permissions apply as for AMQP: configure "^mine" only.
        assert_error(&mu.put(&format!("/api/queues/{v}/other"), "{}"), 401, "not_authorised", "Access refused.");
        let r = mu.put(&format!("/api/queues/{v}/mine-1"), "{}");
        assert_eq!(r.status, 201, "{r:?}");
        assert_error(&mu.delete(&format!("/api/queues/{v}/{q_v}")), 401, "not_authorised", "Access refused.");
        assert_eq!(mu.delete(&format!("/api/queues/{v}/mine-1")).status, 204);
        assert_eq!(mu.delete(&format!("/api/queues/{v}/{q_v}/contents")).status, 204, "read allows purge");
        let r = mu.post(
            &format!("/api/exchanges/{v}/amq.default/publish"),
            &json!({"routing_key": q_v, "properties": {}, "payload": "p", "payload_encoding": "string"}).to_string(),
        );
        assert_eq!(r.json(), json!({"routed": true}), "{r:?}");

        // Write denied: the publish is refused as the closed channel says.
        let r = api.put(&format!("/api/permissions/{v}/mu"), r#"{"configure":".*","write":"^$","read":".*"}"#);
        assert_eq!(r.status, 204);
        let r = mu.post(
            &format!("/api/exchanges/{v}/amq.default/publish"),
            r#"{"routing_key":"x","properties":{},"payload":"p","payload_encoding":"string"}"#,
        );
        assert_error(
            &r,
            400,
            "bad_request",
            &format!("403 ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '{v}' refused for user 'mu'"),
        );
        let r = mu.post(
            &format!("/api/queues/{v}/{q_v}/get"),
            r#"{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}"#,
        );
        assert_eq!(r.json()[0]["payload"], "p", "{r:?}");
        let r = api.put(&format!("/api/permissions/{v}/mu"), r#"{"configure":".*","write":".*","read":"^$"}"#);
        assert_eq!(r.status, 204);
        let r = mu.post(
            &format!("/api/queues/{v}/{q_v}/get"),
            r#"{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}"#,
        );
        assert_error(
            &r,
            401,
            "not_authorised",
            &format!("ACCESS_REFUSED - read access to queue '{q_v}' in vhost '{v}' refused for user 'mu'"),
        );
        // A user without a management tag may not use the API.
        assert_eq!(api.put("/api/users/plain", r#"{"password":"p","tags":""}"#).status, 201);
        let r = api.as_user(Some(("plain", "p"))).get("/api/queues");
        assert_error(&r, 401, "not_authorised", "Not management user");
        b.shutdown();
    })
    .await;
}
