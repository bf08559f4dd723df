//! Sender-selected distribution (RabbitMQ's `CC` and `BCC` headers), driven by
//! `lapin`: the keys they list route the message through the same exchange as
//! its routing key (direct, topic, default exchange; through exchange-to-exchange
//! bindings; in transactions), each queue gets one copy, `BCC` is removed before
//! delivery (and from a basic.return) while `CC` and every other header stay, and
//! a `CC`/`BCC` that is not an array closes the channel with RabbitMQ's 406.

mod common_lapin;
mod util;

use common_lapin::*;
use lapin::{
    message::Delivery,
    types::{AMQPValue, FieldArray, FieldTable},
    BasicProperties, Channel, ExchangeKind,
};
use util::*;

fn keys(ks: &[&str]) -> AMQPValue {
    let v: Vec<AMQPValue> = ks.iter().map(|k| s(k)).collect();
    AMQPValue::FieldArray(FieldArray::from(v))
}

/// Publishes (mandatory, confirmed) with `headers`; the basic.return if any.
async fn publish_headers(
    ch: &Channel,
    x: &str,
    key: &str,
    body: &str,
    headers: FieldTable,
) -> Option<lapin::message::BasicReturnMessage> {
    publish_h(ch, x, key, body, Some(headers)).await
}

async fn xdeclare(ch: &Channel, x: &str, kind: ExchangeKind) {
    within(ch.exchange_declare(x, kind, Default::default(), FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("exchange.declare {x}: {e}"));
}

/// The one message in `q` (basic.get), and that it was the only one.
async fn only_message(ch: &Channel, q: &str) -> Delivery {
    let m = get(ch, q, true)
        .await
        .unwrap_or_else(|| panic!("no message in {q}"));
    assert!(
        get(ch, q, true).await.is_none(),
        "more than one message in {q}"
    );
    m.delivery
}

fn header<'a>(d: &'a Delivery, key: &str) -> Option<&'a AMQPValue> {
    d.properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(key))
}

#[tokio::test]
async fn cc_and_bcc_route_through_a_direct_exchange_and_bcc_is_removed() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let x = unique("ssd-direct");
        xdeclare(&ch, &x, ExchangeKind::Direct).await;
        let (qa, qb, qc, qd) = (
            temp_queue(&ch).await,
            temp_queue(&ch).await,
            temp_queue(&ch).await,
            temp_queue(&ch).await,
        );
        bind(&ch, &qa, &x, "a").await;
        bind(&ch, &qb, &x, "b").await;
        bind(&ch, &qc, &x, "c").await;
        bind(&ch, &qd, &x, "d").await;
        let h = table(&[
            ("CC", keys(&["b", "a"])),
            ("BCC", keys(&["c"])),
            ("other", AMQPValue::LongInt(42)),
            ("text", s("kept")),
        ]);
        let ret = publish_headers(&ch, &x, "a", "hello", h).await;
        assert!(ret.is_none(), "routed message was returned");
        for q in [&qa, &qb, &qc] {
            let d = only_message(&ch, q).await;
            assert_eq!(sval(&d), "hello");
            // The routing key of the delivery is the one published with.
            assert_eq!(d.routing_key.as_str(), "a");
            assert_eq!(header(&d, "CC"), Some(&keys(&["b", "a"])), "CC kept in {q}");
            assert_eq!(header(&d, "BCC"), None, "BCC visible in {q}");
            assert_eq!(header(&d, "other"), Some(&AMQPValue::LongInt(42)));
            assert_eq!(header(&d, "text"), Some(&s("kept")));
        }
        assert!(get(&ch, &qd, true).await.is_none(), "d was not selected");
        let _ = within(ch.exchange_delete(&x, Default::default())).await;
    })
    .await
}

#[tokio::test]
async fn cc_keys_alone_make_a_message_routable() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let x = unique("ssd-mand");
        xdeclare(&ch, &x, ExchangeKind::Direct).await;
        let q = temp_queue(&ch).await;
        bind(&ch, &q, &x, "bound").await;
        // The routing key matches nothing; a BCC key does: not returned.
        let ret = publish_headers(
            &ch,
            &x,
            "nothing",
            "via-bcc",
            table(&[("BCC", keys(&["bound"]))]),
        )
        .await;
        assert!(ret.is_none());
        assert_eq!(drain(&ch, &q).await, ["via-bcc"]);
        // Nothing matches: returned, and the returned copy has no BCC either.
        let h = table(&[("BCC", keys(&["secret"])), ("CC", keys(&["x"]))]);
        let ret = publish_headers(&ch, &x, "nothing", "lost", h)
            .await
            .expect("basic.return");
        assert_eq!(ret.reply_code, 312);
        let rh = ret.properties.headers().as_ref().expect("headers");
        assert!(rh.inner().get("BCC").is_none(), "BCC in basic.return");
        assert_eq!(rh.inner().get("CC"), Some(&keys(&["x"])));
        let _ = within(ch.exchange_delete(&x, Default::default())).await;
    })
    .await
}

#[tokio::test]
async fn default_topic_and_fanout_exchanges() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        // Default exchange: each key names a queue.
        let (q1, q2, q3) = (
            temp_queue(&ch).await,
            temp_queue(&ch).await,
            temp_queue(&ch).await,
        );
        let h = table(&[
            ("CC", keys(&[&q2, "no-such-queue"])),
            ("BCC", keys(&[&q3, &q1])),
        ]);
        assert!(publish_headers(&ch, "", &q1, "dflt", h).await.is_none());
        for q in [&q1, &q2, &q3] {
            let d = only_message(&ch, q).await;
            assert_eq!(d.routing_key.as_str(), q1);
            assert_eq!(header(&d, "BCC"), None);
        }
        // Topic: every key is matched against the patterns.
        let t = unique("ssd-topic");
        xdeclare(&ch, &t, ExchangeKind::Topic).await;
        let (qs, qh) = (temp_queue(&ch).await, temp_queue(&ch).await);
        bind(&ch, &qs, &t, "stock.*").await;
        bind(&ch, &qh, &t, "#.urgent").await;
        let h = table(&[
            ("CC", keys(&["stock.nyse", "stock.lse"])),
            ("BCC", keys(&["a.b.urgent"])),
        ]);
        assert!(publish_headers(&ch, &t, "weather", "t", h).await.is_none());
        assert_eq!(drain(&ch, &qs).await, ["t"], "one copy per queue");
        assert_eq!(drain(&ch, &qh).await, ["t"]);
        // Fanout ignores keys: one copy.
        let f = unique("ssd-fanout");
        xdeclare(&ch, &f, ExchangeKind::Fanout).await;
        let qf = temp_queue(&ch).await;
        bind(&ch, &qf, &f, "").await;
        let h = table(&[("CC", keys(&["1", "2"])), ("BCC", keys(&["3"]))]);
        assert!(publish_headers(&ch, &f, "", "f", h).await.is_none());
        let d = only_message(&ch, &qf).await;
        assert_eq!(header(&d, "BCC"), None);
        for x in [&t, &f] {
            let _ = within(ch.exchange_delete(x, Default::default())).await;
        }
    })
    .await
}

#[tokio::test]
async fn keys_follow_exchange_to_exchange_bindings_and_only_strings_count() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (front, back) = (unique("ssd-front"), unique("ssd-back"));
        xdeclare(&ch, &front, ExchangeKind::Direct).await;
        xdeclare(&ch, &back, ExchangeKind::Topic).await;
        within(ch.exchange_bind(
            &back,
            &front,
            "hop",
            Default::default(),
            FieldTable::default(),
        ))
        .await
        .unwrap();
        let (qa, qb) = (temp_queue(&ch).await, temp_queue(&ch).await);
        bind(&ch, &qa, &back, "a.*").await;
        bind(&ch, &qb, &back, "b.*").await;
        // "hop" reaches back; the CC keys are matched there too. Elements that
        // are not strings are ignored, as RabbitMQ does.
        let cc = AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::LongInt(1),
            s("a.x"),
            AMQPValue::Boolean(true),
        ]));
        let h = table(&[("CC", cc.clone()), ("BCC", keys(&["b.y"]))]);
        assert!(publish_headers(&ch, &front, "hop", "e2e", h)
            .await
            .is_none());
        let d = only_message(&ch, &qa).await;
        assert_eq!(header(&d, "CC"), Some(&cc));
        assert_eq!(sval(&only_message(&ch, &qb).await), "e2e");
        for x in [&front, &back] {
            let _ = within(ch.exchange_delete(x, Default::default())).await;
        }
    })
    .await
}

#[tokio::test]
async fn transactions_route_cc_and_bcc_at_commit() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        within(ch.tx_select()).await.unwrap();
        let (q1, q2) = (temp_queue(&ch).await, temp_queue(&ch).await);
        let props = BasicProperties::default().with_headers(table(&[("BCC", keys(&[&q2]))]));
        within(ch.basic_publish("", &q1, Default::default(), b"tx", props))
            .await
            .unwrap();
        assert_eq!(message_count(&ch, &q2).await, 0);
        within(ch.tx_commit()).await.unwrap();
        for q in [&q1, &q2] {
            let d = only_message(&ch, q).await;
            assert_eq!(header(&d, "BCC"), None);
        }
    })
    .await
}

#[tokio::test]
async fn cc_or_bcc_of_another_type_is_406() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let cases = [
            (table(&[("CC", s("a"))]), r#"PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"CC",longstr}"#),
            (table(&[("BCC", AMQPValue::LongInt(5))]), r#"PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"BCC",signedint}"#),
            // CC is looked at first.
            (table(&[("BCC", s("b")), ("CC", AMQPValue::Boolean(true))]), r#"PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"CC",bool}"#),
        ];
        for (headers, text) in cases {
            let ch = confirm_channel(&conn).await;
            let q = temp_queue(&ch).await;
            let mut errors = watch_channel(&ch);
            let props = BasicProperties::default().with_headers(headers);
            let _ = within(ch.basic_publish("", &q, Default::default(), b"x", props)).await;
            assert_eq!(next_err(&mut errors).await, (406, text.to_string()));
            assert_connection_usable(&conn).await;
        }
        // In a transaction the publish itself fails, not the commit.
        let ch = channel(&conn).await;
        within(ch.tx_select()).await.unwrap();
        let mut errors = watch_channel(&ch);
        let props = BasicProperties::default().with_headers(table(&[("CC", s("a"))]));
        let _ = within(ch.basic_publish("", "q", Default::default(), b"x", props)).await;
        let (code, _) = next_err(&mut errors).await;
        assert_eq!(code, 406);
        // A missing exchange is reported first (404), as RabbitMQ does.
        let ch = channel(&conn).await;
        let mut errors = watch_channel(&ch);
        let x = unique("ssd-missing");
        let props = BasicProperties::default().with_headers(table(&[("CC", s("a"))]));
        let _ = within(ch.basic_publish(&x, "k", Default::default(), b"x", props)).await;
        assert_eq!(next_err(&mut errors).await, (404, no_exchange(&x)));
    })
    .await
}
