use super::erl_term::LINE;
use super::*;
use crate::protocol::FieldValue;
use serde_json::json;

/// The oracle's broker: vhosts "/" and "shv-other" exist, user guest.
fn vhost_ok(v: &str) -> Result<(), String> {
    match v {
        "/" | "shv-other" => Ok(()),
        _ => Err(format!("user \"guest\" may not connect to vhost \"{v}\"")),
    }
}

fn errors(value: Value) -> Vec<String> {
    validate("vtest", &value, &vhost_ok).expect_err("should fail")
}

fn ok(value: Value) -> ShovelDef {
    validate("vtest", &value, &vhost_ok).expect("should pass")
}

/// `{"src-uri":"amqp://","src-queue":"q1","dest-uri":"amqp://","dest-queue":"q2"}` plus `extra`.
fn base(extra: Value) -> Value {
    let mut v =
        json!({"src-uri": "amqp://", "src-queue": "q1", "dest-uri": "amqp://", "dest-queue": "q2"});
    let (Value::Object(m), Value::Object(e)) = (&mut v, extra) else {
        unreachable!()
    };
    for (k, x) in e {
        if x.is_null() {
            m.remove(&k);
        } else {
            m.insert(k, x);
        }
    }
    v
}

/// One error, as the oracle printed it (HTML-unescaped, without the
/// "Validation failed\n\n" head and the trailing "\n").
fn one(extra: Value, expected: &str) {
    assert_eq!(errors(base(extra)), vec![expected.to_string()]);
}

#[test]
fn defaults() {
    let d = ok(base(json!({})));
    assert_eq!(d.src_protocol, Protocol::Amqp091);
    assert_eq!(d.src_uris, vec!["amqp://"]);
    assert_eq!(
        d.source,
        Source::Queue {
            name: "q1".into(),
            args: FieldTable::new()
        }
    );
    assert_eq!(d.prefetch, 1000);
    assert_eq!(d.delete_after, DeleteAfter::Never);
    assert_eq!(d.dest.queue.as_deref(), Some("q2"));
    assert_eq!(d.dest.exchange, None);
    assert!(!d.add_forward_headers && !d.add_timestamp_header);
    assert_eq!(d.ack_mode, AckMode::OnConfirm);
    assert_eq!(d.reconnect_delay, Some(Duration::from_secs(5)));
    assert!(d.publish_properties.is_empty());
}

#[test]
fn oracle_single_errors() {
    one(
        json!({"src-uri": null}),
        "Key \"src-uri\" not found in vtest",
    );
    one(
        json!({"dest-uri": null}),
        "Key \"dest-uri\" not found in vtest",
    );
    one(
        json!({"src-queue": null}),
        "Must specify 'src-exchange' or 'src-queue'",
    );
    one(
        json!({"src-exchange": "x"}),
        "Cannot specify 'src-exchange' and 'src-queue'",
    );
    one(
        json!({"dest-exchange": "x"}),
        "Cannot specify 'dest-exchange' and 'dest-queue'",
    );
    one(
        json!({"src-uri": "not a uri"}),
        "\"not a uri\" not a valid URI: {{unable_to_parse_uri,no_scheme},\"not a uri\"}",
    );
    one(
        json!({"src-uri": "http://localhost"}),
        "\"http://localhost\" not a valid URI: {{unexpected_uri_scheme,\"http\"},\n                                     \"http://localhost\"}",
    );
    one(
        json!({"src-uri": ["amqp://", "foo://bar"]}),
        "\"foo://bar\" not a valid URI: {{unexpected_uri_scheme,\"foo\"},\"foo://bar\"}",
    );
    one(
        json!({"src-uri": 5}),
        "src-uri should be list, actually was 5",
    );
    one(
        json!({"dest-uri": "nope"}),
        "\"nope\" not a valid URI: {{unable_to_parse_uri,no_scheme},\"nope\"}",
    );
    one(
        json!({"src-uri": "amqp:///no-such-vhost"}),
        "user \"guest\" may not connect to vhost \"no-such-vhost\"",
    );
    one(
        json!({"ack-mode": "bogus"}),
        "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was <<\"bogus\">>",
    );
    one(
        json!({"ack-mode": 1}),
        "ack-mode should be binary, actually was 1",
    );
    one(
        json!({"src-prefetch-count": "10"}),
        "src-prefetch-count should be a number, actually was <<\"10\">>",
    );
    one(
        json!({"src-delete-after": -1}),
        "src-delete-after should be a number greater than or equal to 0, \"never\" or \"queue-length\", actually was -1",
    );
    one(
        json!({"src-delete-after": "bogus"}),
        "src-delete-after should be a number greater than or equal to 0, \"never\" or \"queue-length\", actually was <<\"bogus\">>",
    );
    one(
        json!({"ack-mode": "no-ack", "src-delete-after": 5}),
        "Cannot specify 'no-ack' and numerical 'delete-after'",
    );
    one(
        json!({"reconnect-delay": "5"}),
        "reconnect-delay should be a number, actually was <<\"5\">>",
    );
    one(
        json!({"dest-add-forward-headers": "yes"}),
        "dest-add-forward-headers should be boolean, actually was <<\"yes\">>",
    );
    one(
        json!({"dest-add-timestamp-header": 1}),
        "dest-add-timestamp-header should be boolean, actually was 1",
    );
    one(
        json!({"dest-publish-properties": {"bogus": 1}}),
        "Unrecognised terms [{<<\"bogus\">>,1}] in dest-publish-properties",
    );
    one(
        json!({"dest-publish-properties": {"delivery_mode": "2"}}),
        "delivery_mode should be a number, actually was <<\"2\">>",
    );
    one(
        json!({"dest-publish-properties": "x"}),
        "dest-publish-properties not a list <<\"x\">>",
    );
    one(
        json!({"src-consumer-args": {"x-foo": 1}}),
        "Unrecognised terms [{<<\"x-foo\">>,1}] in src-consumer-args",
    );
    one(
        json!({"src-queue-args": {"x-bogus": 1}}),
        "Unrecognised terms [{<<\"x-bogus\">>,1}] in src-queue-args",
    );
    one(
        json!({"src-queue": 5}),
        "src-queue should be binary, actually was 5",
    );
    one(
        json!({"dest-queue": "q".repeat(300)}),
        "dest-queue should be less than 255 bytes, actually was 300",
    );
    one(
        json!({"dest-exchange-key": 5}),
        "dest-exchange-key should be binary, actually was 5",
    );
    one(
        json!({"foo": "bar"}),
        "Unrecognised terms [{<<\"foo\">>,<<\"bar\">>}] in vtest",
    );
    one(
        json!({"foo": "bar", "baz": 1}),
        "Unrecognised terms [{<<\"baz\">>,1},{<<\"foo\">>,<<\"bar\">>}] in vtest",
    );
    one(
        json!({"src-protocol": "amqp10", "src-queue": null}),
        "Key \"src-address\" not found in vtest",
    );
    one(
        json!({"dest-protocol": "amqp10", "dest-queue": null}),
        "Key \"dest-address\" not found in vtest",
    );
    one(
        json!({"dest-protocol": "amqp10", "dest-address": "x"}),
        "Unrecognised terms [{<<\"dest-queue\">>,<<\"q2\">>}] in vtest",
    );
}

#[test]
fn oracle_order() {
    let v = json!({"ack-mode": "x", "dest-uri": 5, "src-exchange": "b", "src-queue": "a"});
    assert_eq!(
        errors(v),
        vec![
            "Cannot specify 'src-exchange' and 'src-queue'",
            "dest-uri should be list, actually was 5",
            "Key \"src-uri\" not found in vtest",
            "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was <<\"x\">>",
        ]
    );
    assert_eq!(
        errors(json!({})),
        vec![
            "Must specify 'src-exchange' or 'src-queue'",
            "Key \"dest-uri\" not found in vtest",
            "Key \"src-uri\" not found in vtest",
        ]
    );
    assert_eq!(
        errors(json!([1, 2])),
        vec![
            "Must specify 'src-exchange' or 'src-queue'",
            "Unrecognised terms [1,2] in vtest",
            "Key \"dest-uri\" not found in vtest",
            "Key \"src-uri\" not found in vtest",
        ]
    );
    // Nested results stay together, in their own order.
    let v = base(
        json!({"dest-publish-properties": {"delivery_mode": "2", "priority": "1", "x": 1},
                        "reconnect-delay": "1"}),
    );
    assert_eq!(
        errors(v),
        vec![
            "Unrecognised terms [{<<\"x\">>,1}] in dest-publish-properties",
            "priority should be a number, actually was <<\"1\">>",
            "delivery_mode should be a number, actually was <<\"2\">>",
            "reconnect-delay should be a number, actually was <<\"1\">>",
        ]
    );
}

/// Every 400 of the oracle's validation section (all but the bad port,
/// whose stack trace is abridged here) gives the same text, every 201 passes.
#[test]
fn oracle_file() {
    let raw = include_str!("../../../docs/oracle/raw/shovels.out");
    let mut checked = 0;
    for block in raw
        .split("\n### ")
        .filter(|b| b.starts_with("validation: "))
    {
        let (title, body) = block.split_once('\n').unwrap();
        if title.contains("bad port") || title.contains("protocol bogus") {
            continue;
        }
        let r: Value = serde_json::from_str(body.trim()).unwrap();
        let value = &r["value"];
        let got = validate("vtest", value, &vhost_ok);
        match r["status"].as_u64() {
            Some(201) => assert!(got.is_ok(), "{title}: {got:?}"),
            _ => {
                let reason = r["body"]["reason"].as_str().unwrap();
                let reason = reason
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&");
                let mut want = String::from("Validation failed\n\n");
                for e in got.expect_err(title) {
                    want += &e;
                    want += "\n";
                }
                assert_eq!(want, reason, "{title}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 40, "{checked}");
}

#[test]
fn protocols_outside_the_enum() {
    assert_eq!(
        errors(base(json!({"src-protocol": "amqp09"}))),
        vec!["src-protocol should be one of [<<\"amqp10\">>,<<\"amqp091\">>], actually was <<\"amqp09\">>"]
    );
    assert_eq!(
        errors(base(json!({"dest-protocol": 1}))),
        vec!["dest-protocol should be binary, actually was 1"]
    );
    assert_eq!(errors(json!("x")), vec!["vtest not a list <<\"x\">>"]);
}

#[test]
fn uri_terms() {
    let e = |uri: &str| errors(base(json!({ "src-uri": uri })));
    assert_eq!(
        e("amqp://localhost:notaport"),
        // The oracle's first four lines; then RabbitMQ prints a stack trace
        // (abridged here) and packs short elements on a line (not copied).
        vec![[
            "\"amqp://localhost:notaport\" not a valid URI: {{unable_to_parse_uri,",
            "                                               {malformed_uri,",
            "                                                \"amqp://localhost:notaport\",",
            "                                                {'EXIT',",
            "                                                 {badarg,",
            "                                                  [{erlang,",
            "                                                    list_to_integer,",
            "                                                    [\"notaport\"]}]}}}},",
            "                                              \"amqp://localhost:notaport\"}",
        ]
        .join("\n")]
    );
    assert_eq!(
        e("amqp://h:70000"),
        vec!["\"amqp://h:70000\" not a valid URI: {{port_out_of_range,70000},\"amqp://h:70000\"}"]
    );
    assert_eq!(
        e("amqp://h/a/b"),
        vec!["\"amqp://h/a/b\" not a valid URI: {{invalid_vhost,\"a/b\"},\"amqp://h/a/b\"}"]
    );
    assert_eq!(
        e("amqp://:5672"),
        vec!["\"amqp://:5672\" not a valid URI: {port_requires_host,\"amqp://:5672\"}"]
    );
    assert_eq!(
        e("amqp://h/%zz"),
        vec![
            "\"amqp://h/%zz\" not a valid URI: {{invalid_entitiy,['%',122,122]},\"amqp://h/%zz\"}"
        ]
    );
    assert_eq!(
        e("amqp://h/%"),
        vec!["\"amqp://h/%\" not a valid URI: {{unterminated_entity,['%']},\"amqp://h/%\"}"]
    );
    assert_eq!(
        e("amqp://u:p%@h"),
        vec!["\"amqp://u:p%@h\" not a valid URI: {{unterminated_entity,['%']},\"amqp://u:p%@h\"}"]
    );
    for good in [
        "amqps://localhost",
        "amqp://u:p@h:5673/%2F?heartbeat=5",
        "amqp://[::1]:5672",
        "amqp:///shv-other",
    ] {
        ok(base(json!({ "src-uri": good })));
    }
    ok(base(json!({ "src-uri": [] })));
}

#[test]
fn parsed_definition() {
    let d = ok(json!({
        "src-uri": ["amqp://a", "amqp://b"], "src-exchange": "x", "prefetch-count": 1.5,
        "delete-after": "queue-length", "src-consumer-args": {"x-priority": 3},
        "dest-uri": "amqp://", "dest-exchange": "y", "dest-exchange-key": "k",
        "add-forward-headers": true, "dest-add-timestamp-header": true,
        "publish-properties": {"delivery_mode": 2}, "ack-mode": "on-publish", "reconnect-delay": 0
    }));
    assert_eq!(d.src_uris, vec!["amqp://a", "amqp://b"]);
    assert_eq!(
        d.source,
        Source::Exchange {
            name: "x".into(),
            key: String::new()
        }
    );
    assert_eq!(d.prefetch, 1);
    assert_eq!(d.delete_after, DeleteAfter::QueueLength);
    assert_eq!(d.consumer_args.0.len(), 1);
    assert_eq!(d.consumer_args.0[0].1, FieldValue::I64(3));
    assert_eq!(
        (d.dest.exchange.as_deref(), d.dest.exchange_key.as_deref()),
        (Some("y"), Some("k"))
    );
    assert!(d.add_forward_headers && d.add_timestamp_header);
    assert_eq!(d.publish_properties["delivery_mode"], json!(2));
    assert_eq!(d.ack_mode, AckMode::OnPublish);
    assert_eq!(d.reconnect_delay, None);
    let delay = |v: Value| ok(base(json!({ "reconnect-delay": v }))).reconnect_delay;
    assert_eq!(delay(json!(-1)), None);
    assert_eq!(delay(json!(2.0)), None);
    assert_eq!(delay(json!(2)), Some(Duration::from_secs(2)));
    let prefetch = |v: Value| {
        ok(base(
            json!({ "src-prefetch-count": v, "prefetch-count": 7 }),
        ))
        .prefetch
    };
    assert_eq!(prefetch(json!(-1)), 0);
    assert_eq!(prefetch(json!(100000)), 65535);
    assert_eq!(prefetch(json!(10.9)), 10);
    let d = ok(base(
        json!({"src-delete-after": 4, "delete-after": "never", "src-queue-args": {"x-max-length": 5}}),
    ));
    assert_eq!(d.delete_after, DeleteAfter::Count(4));
    assert!(matches!(&d.source, Source::Queue { args, .. } if args.0.len() == 1));
    let d = ok(json!({
        "src-protocol": "amqp10", "src-uri": "amqp://", "src-address": "/queue/a",
        "dest-protocol": "amqp10", "dest-uri": "amqp://", "dest-address": "/queue/b",
        "dest-application-properties": {"a": "1"}, "dest-properties": []
    }));
    assert_eq!(d.source, Source::Address("/queue/a".into()));
    assert_eq!(d.dest.address.as_deref(), Some("/queue/b"));
    assert_eq!(d.dest.application_properties["a"], json!("1"));
    assert!(d.dest.properties.is_empty());
}

#[test]
fn amqp10_maps_and_args() {
    let v = json!({
        "src-protocol": "amqp10", "src-uri": "amqp://", "src-address": "a", "src-queue": "q1",
        "dest-protocol": "amqp10", "dest-uri": "amqp://", "dest-address": "b",
        "dest-properties": {"a": 1, "b": "x", "c": [1]}, "dest-message-annotations": 5
    });
    assert_eq!(
        errors(v),
        vec![
            "Unrecognised terms [{<<\"src-queue\">>,<<\"q1\">>}] in vtest",
            "c should be binary, actually was [1]",
            "a should be binary, actually was 1",
            "dest-message-annotations not a list 5",
        ]
    );
    // Values of known arguments are not checked (as RabbitMQ), but must
    // make a field table.
    ok(base(json!({"src-queue-args": {"x-max-length": "many"}})));
    assert_eq!(
        errors(base(json!({"dest-queue-args": {"x-max-length": null}}))),
        vec!["dest-queue-args: argument 'x-max-length': null is not allowed"]
    );
}

#[test]
fn term_printing() {
    let t = |v: Value| Term::json(&v).flat();
    assert_eq!(t(json!(null)), "null");
    assert_eq!(t(json!(true)), "true");
    assert_eq!(t(json!(1.5)), "1.5");
    assert_eq!(t(json!(100.0)), "100.0");
    assert_eq!(t(json!(1e300)), "1.0e300");
    assert_eq!(t(json!(u64::MAX)), "18446744073709551615");
    assert_eq!(t(json!("a\"b\\\n")), "<<\"a\\\"b\\\\\\n\">>");
    assert_eq!(t(json!("é")), "<<\"é\"/utf8>>");
    assert_eq!(t(json!("\u{1}")), "<<1>>");
    assert_eq!(t(json!("")), "<<>>");
    assert_eq!(t(json!([])), "[]");
    assert_eq!(t(json!([104, 105])), "\"hi\"");
    assert_eq!(t(json!(["a", 1])), "[<<\"a\">>,1]");
    assert_eq!(
        t(json!({"b": 1, "a": {}})),
        "#{<<\"a\">> => #{},<<\"b\">> => 1}"
    );
    // Past column 80, one element a line.
    let long: Vec<Value> = (0..30).map(|i| json!(format!("element{i}"))).collect();
    let s = tp("x ", &Term::json(&Value::Array(long)));
    assert!(s.lines().all(|l| l.chars().count() <= LINE), "{s}");
    assert!(
        s.starts_with("x [<<\"element0\">>,\n   <<\"element1\">>,"),
        "{s}"
    );
}

#[test]
fn credentials_stripped() {
    let s = strip_credentials;
    assert_eq!(
        s("amqp://guest:guest@localhost:5672/%2F?heartbeat=10"),
        "amqp://localhost:5672/%2F"
    );
    assert_eq!(s("amqp://"), "amqp://");
    assert_eq!(s("amqp:///vh"), "amqp:///vh");
    assert_eq!(s("amqps://u@h"), "amqps://h");
    assert_eq!(s("amqp://u:p@[::1]:5673/v#f"), "amqp://::1:5673/v");
    assert_eq!(s("amqp://h:05672"), "amqp://h:5672");
    assert_eq!(s("nonsense"), "nonsense");
}

#[test]
fn no_panics_on_odd_values() {
    let odd = [
        json!(null),
        json!(1),
        json!({"src-uri": [[["amqp://"]]], "src-queue": "q", "dest-uri": "amqp://"}),
        json!({"src-uri": "amqp://[", "src-queue": "q", "dest-uri": ":"}),
        json!({"src-uri": "amqp://é@h/%C3%A9", "src-queue": {"a": [null]}, "dest-uri": "amqp:"}),
        json!({"src-uri": "amqp://h:-1", "src-queue": "q", "dest-uri": "amqp://h:+99999999999999999999999"}),
        json!({"src-uri": "amqp://[::1]x", "src-queue": "q", "dest-uri": "AMQP://h", "src-delete-after": 1e30}),
    ];
    for v in odd {
        let _ = validate("n", &v, &vhost_ok);
    }
}
