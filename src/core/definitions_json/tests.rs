use super::*;
use proptest::prelude::*;
use serde_json::json;

/// The layout of a RabbitMQ 3.10.8 export (management UI / `GET
/// /api/definitions`): `product_name`/`product_version`, tags as a string,
/// user limits `{}`, vhost limits `[]` with `metadata`, a queue `type`,
/// internal exchanges absent, plus a section this model does not know.
const EXPORT_3_10: &str = r#"{
  "rabbit_version": "3.10.8",
  "rabbitmq_version": "3.10.8",
  "product_name": "RabbitMQ",
  "product_version": "3.10.8",
  "users": [
    {"name": "guest", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
     "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "administrator", "limits": {}},
    {"name": "monitor", "password_hash": "AQIDBH/JkOf0oGZ5yhQgSBXkHS0=",
     "hashing_algorithm": "rabbit_password_hashing_md5", "tags": "monitoring, management", "limits": {"max-connections": 10}},
    {"name": "cert-user", "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256",
     "tags": "", "limits": {}}
  ],
  "vhosts": [
    {"name": "/", "limits": [], "metadata": {"description": "Default virtual host", "tags": []}},
    {"name": "prod", "limits": {"max-queues": 100}, "metadata": {"description": "", "tags": ["eu"]}}
  ],
  "permissions": [
    {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "monitor", "vhost": "/", "configure": "", "write": "", "read": "^amq\\."}
  ],
  "topic_permissions": [
    {"user": "guest", "vhost": "/", "exchange": "amq.topic", "write": "^{username}\\.", "read": ".*"}
  ],
  "parameters": [],
  "global_parameters": [
    {"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-x8l8VsE3V0RWHmSfh2M6Nw"}
  ],
  "policies": [
    {"vhost": "/", "name": "ttl", "pattern": "^ttl\\.", "apply-to": "queues",
     "definition": {"message-ttl": 60000}, "priority": 0}
  ],
  "queues": [
    {"name": "orders", "vhost": "/", "durable": true, "auto_delete": false,
     "arguments": {"x-queue-type": "classic", "x-max-length": 1000, "x-message-ttl": 1.5e3}},
    {"name": "legacy", "vhost": "/", "durable": false, "auto_delete": true, "arguments": {}}
  ],
  "exchanges": [
    {"name": "events", "vhost": "/", "type": "topic", "durable": true, "auto_delete": false,
     "internal": false, "arguments": {"alternate-exchange": "unrouted"}}
  ],
  "bindings": [
    {"source": "events", "vhost": "/", "destination": "orders", "destination_type": "queue",
     "routing_key": "order.*", "arguments": {}},
    {"source": "events", "vhost": "/", "destination": "hdr", "destination_type": "exchange",
     "routing_key": "", "arguments": {"x-match": "all", "nested": {"a": [1, "b", true]}}}
  ],
  "federation_upstreams": [{"name": "up"}]
}"#;

/// The layout of `rabbitmqctl export_definitions` in 3.13: tags as lists,
/// vhost description/tags/default_queue_type at the top level and in
/// `metadata`.
const EXPORT_3_13: &str = r#"{
  "bindings": [],
  "exchanges": [],
  "global_parameters": [{"name": "cluster_name", "value": "rabbit@host"}],
  "parameters": [],
  "permissions": [{"configure": ".*", "read": ".*", "user": "admin", "vhost": "/", "write": ".*"}],
  "policies": [],
  "queues": [{"arguments": {"x-queue-type": "quorum"}, "auto_delete": false, "durable": true,
              "name": "qq", "type": "quorum", "vhost": "/"}],
  "rabbit_version": "3.13.7",
  "rabbitmq_version": "3.13.7",
  "topic_permissions": [],
  "users": [{"hashing_algorithm": "rabbit_password_hashing_sha512", "limits": {},
             "name": "admin", "password_hash": "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc=",
             "tags": ["administrator", "management"]}],
  "vhosts": [{"default_queue_type": "quorum", "description": "Default virtual host", "limits": [],
              "metadata": {"default_queue_type": "quorum", "description": "Default virtual host", "tags": ["a"]},
              "name": "/", "tags": ["a"]}]
}"#;

#[test]
fn parses_a_3_10_export() {
    let d = DefinitionsFile::parse(EXPORT_3_10).unwrap();
    assert_eq!(d.rabbitmq_version.as_deref(), Some("3.10.8"));
    assert_eq!(d.product_name.as_deref(), Some("RabbitMQ"));
    assert_eq!(d.users.len(), 3);
    assert_eq!(d.users[0].tags, vec!["administrator"]);
    assert_eq!(d.users[1].tags, vec!["monitoring", "management"]);
    assert!(d.users[2].tags.is_empty());
    assert_eq!(d.users[1].limits.get("max-connections"), Some(&json!(10)));
    assert!(d.users[0].limits.is_empty());
    assert_eq!(d.users[1].hashing_algorithm, "rabbit_password_hashing_md5");
    assert_eq!(d.users[2].password_hash, "");
    assert_eq!(d.vhosts[0].limits, Some(Map::new()));
    assert_eq!(
        d.vhosts[0].effective_description(),
        Some("Default virtual host")
    );
    assert_eq!(
        d.vhosts[1].limits.as_ref().unwrap().get("max-queues"),
        Some(&json!(100))
    );
    assert_eq!(d.permissions[1].read, "^amq\\.");
    assert_eq!(d.topic_permissions[0].write, "^{username}\\.");
    assert_eq!(d.global_parameters.len(), 1);
    assert_eq!(d.policies[0]["definition"]["message-ttl"], json!(60000));
    assert_eq!(d.queues[0].kind, None);
    assert!(d.queues[0].durable && !d.queues[1].durable && d.queues[1].auto_delete);
    let args = json_to_table(&d.queues[0].arguments).unwrap();
    assert_eq!(args.get("x-max-length"), Some(&FieldValue::I64(1000)));
    assert_eq!(args.get("x-message-ttl"), Some(&FieldValue::F64(1500.0)));
    assert_eq!(
        args.get("x-queue-type").and_then(|v| v.as_str()),
        Some("classic")
    );
    assert_eq!(d.exchanges[0].kind, "topic");
    assert_eq!(d.bindings[1].destination_type, "exchange");
    assert_eq!(d.bindings[0].routing_key, "order.*");
    // The unknown section is dropped, not an error, and not written back.
    assert!(!d.to_json_pretty().contains("federation_upstreams"));
}

#[test]
fn parses_a_3_13_export() {
    let d = DefinitionsFile::parse(EXPORT_3_13).unwrap();
    assert_eq!(d.users[0].tags, vec!["administrator", "management"]);
    assert_eq!(
        d.users[0].hashing_algorithm,
        "rabbit_password_hashing_sha512"
    );
    let v = &d.vhosts[0];
    assert_eq!(v.tags, vec!["a"]);
    assert_eq!(v.effective_default_queue_type(), Some("quorum"));
    assert_eq!(v.description.as_deref(), Some("Default virtual host"));
    assert_eq!(v.metadata.as_ref().unwrap()["tags"], json!(["a"]));
    assert_eq!(d.queues[0].kind.as_deref(), Some("quorum"));
    assert!(d.exchanges.is_empty() && d.bindings.is_empty());
}

#[test]
fn the_hash_in_a_file_verifies() {
    use crate::core::auth::password::{HashAlgo, PasswordHash};
    let d = DefinitionsFile::parse(EXPORT_3_13).unwrap();
    let u = &d.users[0];
    let algo = HashAlgo::from_rabbit(&u.hashing_algorithm).unwrap();
    assert!(PasswordHash::from_base64(algo, &u.password_hash)
        .unwrap()
        .verify("test12"));
}

#[test]
fn sections_and_fields_are_optional() {
    for empty in ["", "  \n", "{}"] {
        let d = DefinitionsFile::parse(empty).unwrap();
        assert!(d.users.is_empty() && d.queues.is_empty() && d.rabbit_version.is_none());
    }
    let d = DefinitionsFile::parse(
        r#"{"users": [{"name": "u", "password": "secret"}],
            "vhosts": [{"name": "/"}],
            "queues": [{"name": "q"}],
            "exchanges": [{"name": "x", "type": "direct"}],
            "bindings": [{"source": "x", "destination": "q", "destination_type": "queue"}],
            "some_future_key": 1}"#,
    )
    .unwrap();
    let u = &d.users[0];
    assert_eq!(u.password_hash, "");
    assert_eq!(u.password.as_deref(), Some("secret"));
    assert_eq!(u.hashing_algorithm, DEFAULT_HASHING_ALGORITHM);
    assert!(u.tags.is_empty() && u.limits.is_empty());
    let v = &d.vhosts[0];
    assert!(v.description.is_none() && v.metadata.is_none() && v.limits.is_none());
    assert!(v.tags.is_empty());
    let q = &d.queues[0];
    assert_eq!(
        (q.vhost.as_str(), q.durable, q.auto_delete),
        ("/", true, false)
    );
    assert!(q.arguments.is_empty() && q.kind.is_none());
    let x = &d.exchanges[0];
    assert!(x.durable && !x.auto_delete && !x.internal);
    assert_eq!(d.bindings[0].routing_key, "");
    // A cleartext password read is written back (a broker's export sets none).
    assert!(d.to_json_pretty().contains("\"password\": \"secret\""));
}

#[test]
fn tags_forms() {
    let parse = |tags: &str| {
        let text = format!(r#"{{"users": [{{"name": "u", "tags": {tags}}}]}}"#);
        DefinitionsFile::parse(&text).map(|d| d.users[0].tags.clone())
    };
    assert_eq!(parse(r#""administrator""#).unwrap(), vec!["administrator"]);
    assert_eq!(parse(r#""a,b , c,,""#).unwrap(), vec!["a", "b", "c"]);
    assert_eq!(parse(r#"["a", " b "]"#).unwrap(), vec!["a", "b"]);
    assert_eq!(parse(r#""""#).unwrap(), Vec::<String>::new());
    assert_eq!(parse("[]").unwrap(), Vec::<String>::new());
    assert_eq!(parse("null").unwrap(), Vec::<String>::new());
    let e = parse("42").unwrap_err();
    assert!(e.contains("tags must be"), "{e}");
}

#[test]
fn md5_is_assumed_for_pre_3_6_exports() {
    let text = |v: &str| {
        format!(
            r#"{{"rabbit_version": "{v}", "users": [{{"name": "u", "password_hash": "", "tags": ""}}]}}"#
        )
    };
    let old = DefinitionsFile::parse(&text("3.5.7")).unwrap();
    assert_eq!(
        old.users[0].hashing_algorithm,
        "rabbit_password_hashing_md5"
    );
    for v in ["3.6.0", "3.10.8", "4.0.1", ""] {
        let d = DefinitionsFile::parse(&text(v)).unwrap();
        assert_eq!(
            d.users[0].hashing_algorithm, DEFAULT_HASHING_ALGORITHM,
            "{v}"
        );
    }
}

#[test]
fn malformed_documents_are_errors() {
    for bad in [
        "[]",
        "null",
        "42",
        "{",
        r#"{"users": {}}"#,
        r#"{"users": [{"tags": "x"}]}"#,
        r#"{"queues": [{"name": "q", "arguments": 3}]}"#,
        r#"{"permissions": [{"user": "u"}]}"#,
    ] {
        let e = DefinitionsFile::parse(bad).unwrap_err();
        assert!(!e.is_empty(), "{bad}");
    }
    let e = DefinitionsFile::parse("[]").unwrap_err();
    assert!(e.contains("object"), "{e}");
    let e = DefinitionsFile::parse("{\n  \"users\": 1}").unwrap_err();
    assert!(e.starts_with("definitions: "), "{e}");
}

#[test]
fn round_trip() {
    for text in [EXPORT_3_10, EXPORT_3_13] {
        let d = DefinitionsFile::parse(text).unwrap();
        let out = d.to_json_pretty();
        let back = DefinitionsFile::parse(&out).unwrap();
        assert_eq!(back.to_json_pretty(), out);
        assert_eq!(back.users, d.users);
        assert_eq!(back.vhosts, d.vhosts);
        assert_eq!(back.permissions, d.permissions);
        assert_eq!(back.topic_permissions, d.topic_permissions);
        assert_eq!(back.queues, d.queues);
        assert_eq!(back.exchanges, d.exchanges);
        assert_eq!(back.bindings, d.bindings);
        assert_eq!(back.policies, d.policies);
        // Tags are written as lists (3.13 layout).
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v["users"][0]["tags"].is_array());
    }
}

#[test]
fn json_to_table_types() {
    let args = json!({
        "s": "text", "i": -5, "big": 9_007_199_254_740_993i64, "f": 0.25, "t": true,
        "a": [1, "x", [false]], "o": {"k": {"deep": 1}}
    });
    let t = json_to_table(args.as_object().unwrap()).unwrap();
    assert_eq!(
        t.get("s"),
        Some(&FieldValue::LongStr(Bytes::from_static(b"text")))
    );
    assert_eq!(t.get("i"), Some(&FieldValue::I64(-5)));
    assert_eq!(t.get("big"), Some(&FieldValue::I64(9_007_199_254_740_993)));
    assert_eq!(t.get("f"), Some(&FieldValue::F64(0.25)));
    assert_eq!(t.get("t"), Some(&FieldValue::Bool(true)));
    let a = t.get("a").unwrap().as_array().unwrap();
    assert_eq!(a[0], FieldValue::I64(1));
    assert_eq!(a[2], FieldValue::Array(vec![FieldValue::Bool(false)]));
    let o = t.get("o").unwrap().as_table().unwrap();
    assert_eq!(
        o.get("k").unwrap().as_table().unwrap().get("deep"),
        Some(&FieldValue::I64(1))
    );
    // The table encodes (every value type is a wire type).
    let mut wire = Vec::new();
    t.encode(&mut wire);
    assert_eq!(wire.len(), t.encoded_len());

    // Doubles read back bit-exact from text (serde_json's float_roundtrip).
    let f = 9.646727474589757e265;
    let text = serde_json::to_string(&json!({ "f": f })).unwrap();
    let reread: Map<String, Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json_to_table(&reread).unwrap().get("f"),
        Some(&FieldValue::F64(f))
    );

    let e = json_to_table(json!({"x-null": null}).as_object().unwrap()).unwrap_err();
    assert!(e.contains("x-null") && e.contains("null"), "{e}");
    let e = json_to_table(json!({"n": [u64::MAX]}).as_object().unwrap()).unwrap_err();
    assert!(e.contains("64-bit"), "{e}");
}

#[test]
fn table_to_json_types() {
    let mut t = FieldTable::new();
    t.insert("b", FieldValue::I8(-1));
    t.insert("u", FieldValue::U32(7));
    t.insert("ts", FieldValue::Timestamp(1_700_000_000));
    t.insert("f", FieldValue::F32(0.5));
    t.insert("nan", FieldValue::F64(f64::NAN));
    t.insert("dec", FieldValue::Decimal(2, 12345));
    t.insert("bin", FieldValue::ByteArray(Bytes::from_static(b"ok")));
    t.insert(
        "bad",
        FieldValue::LongStr(Bytes::from_static(&[0xff, 0xfe])),
    );
    t.insert("v", FieldValue::Void);
    let j = Value::Object(table_to_json(&t));
    assert_eq!(j["b"], json!(-1));
    assert_eq!(j["u"], json!(7));
    assert_eq!(j["ts"], json!(1_700_000_000));
    assert_eq!(j["f"], json!(0.5));
    assert_eq!(j["nan"], Value::Null);
    assert_eq!(j["dec"], json!(123.45));
    assert_eq!(j["bin"], json!("ok"));
    assert_eq!(j["bad"], json!("Invalid UTF-8, base64 is: //4="));
    assert_eq!(j["v"], Value::Null);
    // A repeated key keeps its last value.
    let dup = FieldTable(vec![
        (Bytes::from_static(b"k"), FieldValue::I64(1)),
        (Bytes::from_static(b"k"), FieldValue::I64(2)),
    ]);
    assert_eq!(table_to_json(&dup)["k"], json!(2));
}

/// Tables sorted by key at every level (a JSON object has no order).
fn sorted(t: &FieldTable) -> FieldTable {
    let mut entries: Vec<_> =
        t.0.iter()
            .map(|(k, v)| (k.clone(), sorted_value(v)))
            .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    FieldTable(entries)
}

fn sorted_value(v: &FieldValue) -> FieldValue {
    match v {
        FieldValue::Table(t) => FieldValue::Table(sorted(t)),
        FieldValue::Array(a) => FieldValue::Array(a.iter().map(sorted_value).collect()),
        other => other.clone(),
    }
}

fn leaf() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        "\\PC{0,12}".prop_map(|s| FieldValue::LongStr(Bytes::from(s))),
        any::<i64>().prop_map(FieldValue::I64),
        any::<bool>().prop_map(FieldValue::Bool),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(FieldValue::F64),
    ]
}

fn table_of(value: impl Strategy<Value = FieldValue>) -> impl Strategy<Value = FieldTable> {
    prop::collection::btree_map("[a-z-]{1,8}", value, 0..5)
        .prop_map(|m| FieldTable(m.into_iter().map(|(k, v)| (Bytes::from(k), v)).collect()))
}

fn value() -> impl Strategy<Value = FieldValue> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(FieldValue::Array),
            table_of(inner).prop_map(FieldValue::Table),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn parse_never_panics(s in "\\PC{0,200}") {
        let _ = DefinitionsFile::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_jsonish(s in "[{}\\[\\]\",:a-z0-9 ]{0,120}") {
        let _ = DefinitionsFile::parse(&s);
    }

    #[test]
    fn table_json_round_trip(t in table_of(value())) {
        let j = table_to_json(&t);
        let back = json_to_table(&j).unwrap();
        prop_assert_eq!(sorted(&back), sorted(&t));
        // And through text, as in a definitions file.
        let text = serde_json::to_string(&j).unwrap();
        let reread: Map<String, Value> = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(sorted(&json_to_table(&reread).unwrap()), sorted(&t));
    }
}

/// The export of the local RabbitMQ 3.10.8 (`rabbitmqctl export_definitions`,
/// docs/oracle/tenancy-rabbitmq-3.10.8.md): vhost limits as a list of pairs,
/// vhost tags in metadata as a string or a list.
#[test]
fn rabbitmq_3_10_8_export_parses() {
    let text = include_str!("../../../tests/fixtures/rabbitmq-3.10.8-definitions.json");
    let d = DefinitionsFile::parse(text).expect("3.10.8 export parses");
    let v1 = d.vhosts.iter().find(|v| v.name == "v1").unwrap();
    let limits = v1.limits.as_ref().unwrap();
    assert_eq!(limits.get("max-connections"), Some(&json!(100)));
    assert_eq!(limits.get("max-queues"), Some(&json!(50)));
    assert!(v1.effective_tags().is_empty());
    let v2 = d.vhosts.iter().find(|v| v.name == "v2").unwrap();
    assert_eq!(v2.effective_tags(), vec!["team-a", "blue"]);
    assert_eq!(v2.effective_default_queue_type(), Some("quorum"));
    assert!(d
        .users
        .iter()
        .any(|u| u.name == "nopw1" && u.password_hash.is_empty()));
    assert!(d.queues.len() >= 10 && !d.bindings.is_empty());
}
