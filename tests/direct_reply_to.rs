//! Direct reply-to (`amq.rabbitmq.reply-to`), driven by `lapin`, with requester
//! and responder on the same and on different shards: the request's reply_to is
//! rewritten to a reply address, a reply published to it reaches the reply
//! consumer with its properties, the pseudo-queue can be declared, and the
//! error cases have RabbitMQ's codes and texts. As in RabbitMQ (documented and
//! observed on 3.10.8) a reply is never "routed": with mandatory it is also
//! returned, and a reply to a gone requester is dropped.

mod common_lapin;
mod util;

use common_lapin::*;
use lapin::{
    message::Delivery, options::*, publisher_confirm::Confirmation, types::FieldTable,
    BasicProperties, Channel, Connection, Consumer,
};
use util::*;

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Consumes the pseudo-queue (no-ack) with tag `tag`.
async fn consume_replies(ch: &Channel, tag: &str) -> Consumer {
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    within(ch.basic_consume(REPLY_TO, tag, opts, FieldTable::default()))
        .await
        .expect("basic.consume amq.rabbitmq.reply-to")
}

/// Sends a request to queue `q` with reply_to = amq.rabbitmq.reply-to.
async fn request(ch: &Channel, q: &str, corr: &str) {
    let props = BasicProperties::default()
        .with_reply_to(REPLY_TO.into())
        .with_correlation_id(corr.into());
    within(ch.basic_publish("", q, Default::default(), b"request", props))
        .await
        .expect("publish request");
}

/// The responder's side: takes the request from `q` and returns its reply_to.
async fn take_request(ch: &Channel, q: &str) -> (String, Delivery) {
    let m = poll_for(&format!("a request in {q}"), async || {
        get(ch, q, true).await
    })
    .await;
    let rt = m.delivery.properties.reply_to().as_ref().expect("reply_to");
    (rt.as_str().to_string(), m.delivery)
}

/// Publishes a reply on a confirm channel; the confirm's outcome.
async fn reply(ch: &Channel, to: &str, corr: &str, body: &str, mandatory: bool) -> Confirmation {
    let props = BasicProperties::default()
        .with_correlation_id(corr.into())
        .with_content_type("text/plain".into());
    let opts = BasicPublishOptions {
        mandatory,
        ..Default::default()
    };
    let c = within(ch.basic_publish("", to, opts, body.as_bytes(), props))
        .await
        .expect("publish reply");
    within(c).await.expect("confirm of the reply")
}

/// One RPC round trip from a requester on `req` to a responder on `resp`.
async fn round_trip(req: &Connection, resp: &Connection) {
    let rch = channel(req).await;
    let mut replies = consume_replies(&rch, "replies").await;
    let sch = confirm_channel(resp).await;
    let q = unique("drt-rpc");
    declare(&sch, &q).await;
    request(&rch, &q, "c-1").await;
    let (reply_to, req_delivery) = take_request(&sch, &q).await;
    assert!(
        reply_to.starts_with("amq.rabbitmq.reply-to.") && reply_to.len() > REPLY_TO.len() + 1,
        "reply_to not rewritten: {reply_to:?}"
    );
    let p = &req_delivery.properties;
    assert_eq!(p.correlation_id().as_ref().map(|c| c.as_str()), Some("c-1"));
    assert_eq!(sval(&req_delivery), "request");

    let c = reply(&sch, &reply_to, "c-1", "answer", false).await;
    assert!(c.is_ack());
    let d = recv(&mut replies).await;
    assert_eq!(sval(&d), "answer");
    assert_eq!(d.exchange.as_str(), "");
    assert_eq!(d.routing_key.as_str(), reply_to);
    assert!(!d.redelivered);
    let p = &d.properties;
    assert_eq!(p.correlation_id().as_ref().map(|c| c.as_str()), Some("c-1"));
    assert_eq!(
        p.content_type().as_ref().map(|c| c.as_str()),
        Some("text/plain")
    );
    // The same address serves further requests of the channel.
    request(&rch, &q, "c-2").await;
    let (again, _) = take_request(&sch, &q).await;
    assert_eq!(again, reply_to);
    reply(&sch, &again, "c-2", "second", false).await;
    assert_eq!(sval(&recv(&mut replies).await), "second");
    recv_none(&mut replies, 200).await;
    delete(&sch, &q).await;
}

#[tokio::test]
async fn rpc_on_one_shard() {
    deadline(30, async {
        let b = start_broker(2);
        let c = connect(&b.shard_uri(0)).await;
        round_trip(&c, &c).await;
    })
    .await
}

#[tokio::test]
async fn rpc_across_shards_both_ways() {
    deadline(30, async {
        let b = start_broker(2);
        let c0 = connect(&b.shard_uri(0)).await;
        let c1 = connect(&b.shard_uri(1)).await;
        round_trip(&c0, &c1).await;
        round_trip(&c1, &c0).await;
    })
    .await
}

#[tokio::test]
async fn reply_consumer_must_be_no_ack_and_single() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        let r =
            within(ch.basic_consume(REPLY_TO, "", Default::default(), FieldTable::default())).await;
        let text = "PRECONDITION_FAILED - reply consumer cannot acknowledge";
        assert_channel_error(&conn, r, 406, text).await;

        let ch = channel(&conn).await;
        let _first = consume_replies(&ch, "one").await;
        let opts = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let r = within(ch.basic_consume(REPLY_TO, "two", opts, FieldTable::default())).await;
        assert_channel_error(
            &conn,
            r,
            406,
            "PRECONDITION_FAILED - reply consumer already set",
        )
        .await;
    })
    .await
}

#[tokio::test]
async fn request_without_reply_consumer_is_406() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        let q = temp_queue(&ch).await;
        let mut errors = watch_channel(&ch);
        request(&ch, &q, "c").await;
        let text = "PRECONDITION_FAILED - fast reply consumer does not exist";
        assert_eq!(next_err(&mut errors).await, (406, text.to_string()));
        assert_connection_usable(&conn).await;
        // A consumer on another channel of the connection does not count.
        let other = channel(&conn).await;
        let _c = consume_replies(&other, "elsewhere").await;
        let ch = channel(&conn).await;
        let q = temp_queue(&ch).await;
        let mut errors = watch_channel(&ch);
        request(&ch, &q, "c").await;
        assert_eq!(next_err(&mut errors).await, (406, text.to_string()));
    })
    .await
}

#[tokio::test]
async fn the_pseudo_queue_and_reply_addresses_can_be_declared() {
    deadline(30, async {
        let b = start_broker(2);
        let req = connect(&b.shard_uri(0)).await;
        let resp = connect(&b.shard_uri(1)).await;
        let ch = channel(&resp).await;
        for passive in [true, false] {
            let opts = QueueDeclareOptions {
                passive,
                ..Default::default()
            };
            let ok = within(ch.queue_declare(REPLY_TO, opts, FieldTable::default()))
                .await
                .expect("declare amq.rabbitmq.reply-to");
            assert_eq!(ok.name().as_str(), REPLY_TO);
            assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
        }
        // A live reply address (on the other shard) exists...
        let rch = channel(&req).await;
        let _replies = consume_replies(&rch, "r").await;
        let sch = channel(&resp).await;
        let q = temp_queue(&sch).await;
        request(&rch, &q, "c").await;
        let (reply_to, _) = take_request(&sch, &q).await;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let ok = within(sch.queue_declare(&reply_to, passive, FieldTable::default()))
            .await
            .expect("passive declare of a live reply address");
        assert_eq!(ok.name().as_str(), reply_to);
        assert_eq!(ok.consumer_count(), 1);
        // ... until its channel closes.
        within(rch.close(200, "bye")).await.unwrap();
        let r = within(sch.queue_declare(&reply_to, passive, FieldTable::default())).await;
        assert_channel_error(&resp, r, 404, &no_queue(&reply_to)).await;
        let ch = channel(&resp).await;
        let bogus = format!("{REPLY_TO}.not-a-token");
        let r = within(ch.queue_declare(&bogus, passive, FieldTable::default())).await;
        assert_channel_error(&resp, r, 404, &no_queue(&bogus)).await;
    })
    .await
}

#[tokio::test]
async fn replies_are_never_routed_and_stale_ones_are_dropped() {
    deadline(30, async {
        let b = start_broker(2);
        let req = connect(&b.shard_uri(0)).await;
        let resp = connect(&b.shard_uri(1)).await;
        let rch = channel(&req).await;
        let mut replies = consume_replies(&rch, "r").await;
        let sch = confirm_channel(&resp).await;
        let q = temp_queue(&sch).await;
        request(&rch, &q, "c").await;
        let (reply_to, _) = take_request(&sch, &q).await;

        // Mandatory: delivered, and returned as NO_ROUTE all the same.
        let c = reply(&sch, &reply_to, "c", "mandatory", true).await;
        let ret = c
            .take_message()
            .expect("basic.return for a mandatory reply");
        assert_eq!(ret.reply_code, 312);
        assert_eq!(ret.routing_key.as_str(), reply_to);
        assert_eq!(sval(&recv(&mut replies).await), "mandatory");

        // Cancelled consumer: replies to its address are dropped, even after
        // a new reply consumer (new address) appears on the same channel.
        within(rch.basic_cancel("r", Default::default()))
            .await
            .unwrap();
        assert!(reply(&sch, &reply_to, "c", "after-cancel", false)
            .await
            .is_ack());
        let mut fresh = consume_replies(&rch, "r2").await;
        assert!(reply(&sch, &reply_to, "c", "old-address", false)
            .await
            .is_ack());
        request(&rch, &q, "c2").await;
        let (new_reply_to, _) = take_request(&sch, &q).await;
        assert_ne!(new_reply_to, reply_to);
        reply(&sch, &new_reply_to, "c2", "new-address", false).await;
        assert_eq!(sval(&recv(&mut fresh).await), "new-address");
        recv_none(&mut fresh, 200).await;

        // A closed requester: dropped, or returned when mandatory; the
        // responder's channel stays open.
        within(rch.close(200, "bye")).await.unwrap();
        assert!(reply(&sch, &new_reply_to, "c", "gone", false)
            .await
            .is_ack());
        let c = reply(&sch, &new_reply_to, "c", "gone", true).await;
        assert_eq!(c.take_message().expect("returned").reply_code, 312);
        // Addresses that were never handed out, including one naming a shard
        // that does not exist: dropped, no harm done.
        let forged = format!(
            "{}B{}",
            &new_reply_to[..REPLY_TO.len() + 1],
            &new_reply_to[REPLY_TO.len() + 2..]
        );
        assert!(
            reply(&sch, &format!("{REPLY_TO}.bogus"), "c", "bogus", false)
                .await
                .is_ack()
        );
        // (RabbitMQ 3.10.8 closes the connection with 541 for this one.)
        if !b.is_external() {
            assert!(reply(&sch, &forged, "c", "forged", false).await.is_ack());
        }
        assert_connection_usable(&resp).await;
        assert_broker_alive(&b.uri()).await;
    })
    .await
}

#[tokio::test]
async fn transactional_reply_goes_out_at_publish_as_in_rabbitmq() {
    deadline(30, async {
        let b = start_broker(2);
        let req = connect(&b.shard_uri(1)).await;
        let resp = connect(&b.shard_uri(0)).await;
        let rch = channel(&req).await;
        let mut replies = consume_replies(&rch, "").await;
        let sch = channel(&resp).await;
        let q = temp_queue(&sch).await;
        request(&rch, &q, "c").await;
        let (reply_to, _) = take_request(&sch, &q).await;
        within(sch.tx_select()).await.unwrap();
        // RabbitMQ delivers a direct reply while routing it, which happens at
        // publish even in a transaction; a rollback does not take it back,
        // and the commit does not send it again.
        within(sch.basic_publish("", &reply_to, Default::default(), b"tx", Default::default()))
            .await
            .unwrap();
        let d = recv(&mut replies).await;
        assert_eq!(sval(&d), "tx");
        assert!(replies.tag().as_str().starts_with("amq.ctag-"));
        within(sch.tx_rollback()).await.unwrap();
        within(sch.basic_publish(
            "",
            &reply_to,
            Default::default(),
            b"tx2",
            Default::default(),
        ))
        .await
        .unwrap();
        assert_eq!(sval(&recv(&mut replies).await), "tx2");
        within(sch.tx_commit()).await.unwrap();
        recv_none(&mut replies, 300).await;
    })
    .await
}
