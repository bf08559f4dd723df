//! Alternate exchanges (the `alternate-exchange` exchange argument), driven by
//! `lapin`: what an exchange cannot route goes to its AE (chains followed,
//! cycles end), `mandatory` returns only what no AE routes either, a missing AE
//! is ignored, the argument is checked at declaration and compared on
//! redeclaration with RabbitMQ's texts, and it survives a restart with a
//! durable exchange. Reply texts observed on RabbitMQ 3.10.8.

mod common_durable;
mod common_lapin;
mod util;

use common_lapin::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, ExchangeKind,
};
use util::*;

type R = Result<(), lapin::Error>;

/// Declares `x` of `kind` with an `alternate-exchange` argument when `ae` is set.
async fn xdecl(ch: &Channel, x: &str, kind: ExchangeKind, ae: Option<&str>) -> R {
    let args = match ae {
        Some(ae) => table(&[("alternate-exchange", s(ae))]),
        None => FieldTable::default(),
    };
    within(ch.exchange_declare(x, kind, Default::default(), args)).await
}

async fn xdeclare(ch: &Channel, x: &str, kind: ExchangeKind, ae: Option<&str>) {
    let r = xdecl(ch, x, kind, ae).await;
    r.unwrap_or_else(|e| panic!("exchange.declare {x}: {e}"));
}

/// A server-named exclusive queue bound to `x` with `key`.
async fn queue_on(ch: &Channel, x: &str, key: &str) -> String {
    let q = temp_queue(ch).await;
    bind(ch, &q, x, key).await;
    q
}

async fn cleanup(ch: &Channel, exchanges: &[&str]) {
    for x in exchanges {
        let _ = within(ch.exchange_delete(x, Default::default())).await;
    }
}

#[tokio::test]
async fn unroutable_messages_go_to_the_alternate_exchange() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (main, ae) = (unique("ae-main"), unique("ae-ae"));
        xdeclare(&ch, &ae, ExchangeKind::Fanout, None).await;
        xdeclare(&ch, &main, ExchangeKind::Direct, Some(&ae)).await;
        let qm = queue_on(&ch, &main, "k").await;
        let qa = queue_on(&ch, &ae, "").await;

        // Routable: the normal queue only, even with mandatory.
        routed(&ch, &main, "k", "to-main").await;
        // Unroutable: the AE takes it, so mandatory returns nothing.
        routed(&ch, &main, "nobody", "to-ae").await;
        let props = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_headers(table(&[("h", AMQPValue::LongInt(7))]));
        let c = within(ch.basic_publish(&main, "other", Default::default(), b"props", props))
            .await
            .unwrap();
        within(c).await.unwrap();

        assert_eq!(drain(&ch, &qm).await, ["to-main"]);
        let first = get(&ch, &qa, true)
            .await
            .expect("a message in the AE's queue");
        // Delivered with the original exchange and routing key, as RabbitMQ does.
        assert_eq!(first.delivery.exchange.as_str(), main);
        assert_eq!(first.delivery.routing_key.as_str(), "nobody");
        assert_eq!(sval(&first.delivery), "to-ae");
        let second = get(&ch, &qa, true).await.expect("second message");
        assert_eq!(sval(&second.delivery), "props");
        let p = &second.delivery.properties;
        assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("m-1"));
        let h = p.headers().as_ref().expect("headers kept");
        assert_eq!(h.inner().get("h"), Some(&AMQPValue::LongInt(7)));
        assert!(get(&ch, &qa, true).await.is_none());
        cleanup(&ch, &[&main, &ae]).await;
    })
    .await
}

#[tokio::test]
async fn mandatory_returns_only_what_no_alternate_routes() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (empty_ae, x1, x2) = (unique("ae-empty"), unique("ae-x1"), unique("ae-x2"));
        // x1's AE exists but routes nowhere; x2's AE does not exist.
        xdeclare(&ch, &empty_ae, ExchangeKind::Direct, None).await;
        xdeclare(&ch, &x1, ExchangeKind::Direct, Some(&empty_ae)).await;
        xdeclare(&ch, &x2, ExchangeKind::Topic, Some(&unique("ae-missing"))).await;
        unroutable(&ch, &x1, "k", "via-empty-ae").await;
        unroutable(&ch, &x2, "k", "via-missing-ae").await;
        // Without mandatory a missing AE is silently ignored: acked, channel open.
        let c = within(ch.basic_publish(&x2, "k", Default::default(), b"m", Default::default()))
            .await
            .unwrap();
        assert!(within(c).await.unwrap().is_ack());
        let q = queue_on(&ch, &x2, "k").await;
        routed(&ch, &x2, "k", "still-routes").await;
        assert_eq!(drain(&ch, &q).await, ["still-routes"]);
        cleanup(&ch, &[&empty_ae, &x1, &x2]).await;
    })
    .await
}

#[tokio::test]
async fn chains_of_alternates_are_followed_and_cycles_end() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (a, bx, c) = (unique("ae-a"), unique("ae-b"), unique("ae-c"));
        // a -> b -> c as alternates; b routes "b.*", c takes the rest.
        xdeclare(&ch, &c, ExchangeKind::Fanout, None).await;
        xdeclare(&ch, &bx, ExchangeKind::Topic, Some(&c)).await;
        xdeclare(&ch, &a, ExchangeKind::Direct, Some(&bx)).await;
        let qa = queue_on(&ch, &a, "a").await;
        let qb = queue_on(&ch, &bx, "b.*").await;
        let qc = queue_on(&ch, &c, "").await;
        routed(&ch, &a, "a", "1").await;
        routed(&ch, &a, "b.x", "2").await;
        routed(&ch, &a, "zzz", "3").await;
        assert_eq!(drain(&ch, &qa).await, ["1"]);
        assert_eq!(drain(&ch, &qb).await, ["2"]);
        assert_eq!(drain(&ch, &qc).await, ["3"]);

        // d and e are each other's alternate and route nothing: the loop ends
        // and the message comes back.
        let (d, e) = (unique("ae-d"), unique("ae-e"));
        xdeclare(&ch, &d, ExchangeKind::Direct, Some(&e)).await;
        xdeclare(&ch, &e, ExchangeKind::Direct, Some(&d)).await;
        unroutable(&ch, &d, "k", "loop").await;
        // A queue on e catches what d cannot route, once.
        let qe = queue_on(&ch, &e, "k").await;
        routed(&ch, &d, "k", "caught").await;
        assert_eq!(drain(&ch, &qe).await, ["caught"]);
        cleanup(&ch, &[&a, &bx, &c, &d, &e]).await;
    })
    .await
}

#[tokio::test]
async fn exchange_to_exchange_routes_use_the_alternate_of_the_exchange_that_fails() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (x, y, ax, ay) = (
            unique("ae-x"),
            unique("ae-y"),
            unique("ae-ax"),
            unique("ae-ay"),
        );
        xdeclare(&ch, &ax, ExchangeKind::Fanout, None).await;
        xdeclare(&ch, &ay, ExchangeKind::Fanout, None).await;
        xdeclare(&ch, &x, ExchangeKind::Direct, Some(&ax)).await;
        xdeclare(&ch, &y, ExchangeKind::Direct, Some(&ay)).await;
        within(ch.exchange_bind(&y, &x, "k", Default::default(), FieldTable::default()))
            .await
            .unwrap();
        let qax = queue_on(&ch, &ax, "").await;
        let qay = queue_on(&ch, &ay, "").await;
        // x routes "k" to y, which routes nowhere: y's AE, not x's.
        routed(&ch, &x, "k", "y-failed").await;
        // x routes nothing for "j": x's AE.
        routed(&ch, &x, "j", "x-failed").await;
        assert_eq!(drain(&ch, &qay).await, ["y-failed"]);
        assert_eq!(drain(&ch, &qax).await, ["x-failed"]);
        cleanup(&ch, &[&x, &y, &ax, &ay]).await;
    })
    .await
}

#[tokio::test]
async fn alternate_declared_later_or_deleted_is_looked_up_by_name() {
    deadline(30, async {
        let b = start_broker(2);
        // Publisher on shard 0, definitions changed from shard 1.
        let p = connect(&b.shard_uri(0)).await;
        let admin = connect(&b.shard_uri(1)).await;
        let pch = confirm_channel(&p).await;
        let ach = channel(&admin).await;
        let (main, ae) = (unique("ae-late-main"), unique("ae-late"));
        xdeclare(&ach, &main, ExchangeKind::Direct, Some(&ae)).await;
        unroutable(&pch, &main, "k", "before").await;
        xdeclare(&ach, &ae, ExchangeKind::Fanout, None).await;
        let q = unique("ae-late-q");
        declare(&ach, &q).await;
        bind(&ach, &q, &ae, "").await;
        routed(&pch, &main, "k", "after").await;
        within(ach.exchange_delete(&ae, Default::default()))
            .await
            .unwrap();
        unroutable(&pch, &main, "k", "deleted").await;
        assert_eq!(drain(&ach, &q).await, ["after"]);
        delete(&ach, &q).await;
        cleanup(&ach, &[&main]).await;
    })
    .await
}

#[tokio::test]
async fn alternate_exchange_argument_is_checked_and_compared() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let x = unique("ae-args");
        let ch = channel(&conn).await;
        let bad = table(&[("alternate-exchange", AMQPValue::LongInt(5))]);
        let r = within(ch.exchange_declare(&x, ExchangeKind::Direct, Default::default(), bad)).await;
        let want = format!(
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange '{x}' in vhost '/'"
        );
        assert_channel_error(&conn, r, 406, &want).await;

        let ch = channel(&conn).await;
        xdeclare(&ch, &x, ExchangeKind::Direct, Some("ae-1")).await;
        // The same argument again is fine.
        xdeclare(&ch, &x, ExchangeKind::Direct, Some("ae-1")).await;
        let r = xdecl(&ch, &x, ExchangeKind::Direct, Some("ae-2")).await;
        let want = format!("PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': received 'ae-2' but current is 'ae-1'");
        assert_channel_error(&conn, r, 406, &want).await;
        let ch = channel(&conn).await;
        let r = xdecl(&ch, &x, ExchangeKind::Direct, None).await;
        let want = format!("PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': received none but current is the value 'ae-1' of type 'longstr'");
        assert_channel_error(&conn, r, 406, &want).await;

        let ch = channel(&conn).await;
        let y = unique("ae-args-none");
        xdeclare(&ch, &y, ExchangeKind::Direct, None).await;
        let r = xdecl(&ch, &y, ExchangeKind::Direct, Some("z")).await;
        let want = format!("PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{y}' in vhost '/': received the value 'z' of type 'longstr' but current is none");
        assert_channel_error(&conn, r, 406, &want).await;
        let ch = channel(&conn).await;
        cleanup(&ch, &[&x, &y]).await;
    })
    .await
}

#[tokio::test]
async fn durable_exchange_keeps_its_alternate_across_a_restart() {
    if std::env::var("WARREN_TEST_EXTERNAL_URI").is_ok() {
        return; // restarts an in-process broker
    }
    deadline(30, async {
        use common_durable::*;
        let dir = DataDir::new("ae");
        let b = start_in(&dir.0, 2);
        {
            let conn = connect(&uri(b.port())).await;
            let ch = channel(&conn).await;
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            let args = table(&[("alternate-exchange", s("dae"))]);
            within(ch.exchange_declare("dmain", ExchangeKind::Direct, durable, args))
                .await
                .unwrap();
            let ae_args = FieldTable::default();
            within(ch.exchange_declare("dae", ExchangeKind::Fanout, durable, ae_args))
                .await
                .unwrap();
            let dq = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            within(ch.queue_declare("daeq", dq, FieldTable::default()))
                .await
                .unwrap();
            bind(&ch, "daeq", "dae", "").await;
        }
        b.shutdown();
        let b = start_in(&dir.0, 2);
        let conn = connect(&uri(b.port())).await;
        let ch = confirm_channel(&conn).await;
        routed(&ch, "dmain", "anything", "after-restart").await;
        assert_eq!(drain(&ch, "daeq").await, ["after-restart"]);
        // Still compared on redeclaration.
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let no_args = FieldTable::default();
        let r = within(ch.exchange_declare("dmain", ExchangeKind::Direct, durable, no_args)).await;
        let e = r.expect_err("redeclare without the argument");
        assert_amqp_error(
            &e,
            406,
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange'",
        );
        b.shutdown();
    })
    .await
}
