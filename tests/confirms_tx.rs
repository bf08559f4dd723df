//! Publisher confirms and transactions (lapin): confirm.select, acks, returns before acks,
//! tx select/commit/rollback of publishes and acks, mode-switch and not-transactional errors.
//!
//! Validated against RabbitMQ 3.10 with `WARREN_TEST_EXTERNAL_URI`.

mod common_lapin;
mod common_raw;
mod util;
use common_lapin::*;
use common_raw::*;
use util::*;

use lapin::{
    options::*,
    publisher_confirm::{Confirmation, PublisherConfirm},
    BasicProperties, Channel,
};

// ---------------------------------------------------------------- local helpers
// (shared ones — deadline, uniq, declare, publish, confirm_channel, message_count, … — come
// from tests/common_lapin)

/// basic.publish with default properties; returns the confirm without awaiting it.
async fn publish_pending(
    ch: &Channel,
    ex: &str,
    rk: &str,
    opts: BasicPublishOptions,
    body: &[u8],
) -> PublisherConfirm {
    within(ch.basic_publish(ex, rk, opts, body, BasicProperties::default()))
        .await
        .expect("basic.publish")
}

/// Asserts that `err` is a 406 PRECONDITION_FAILED with `detail` after the dash.
fn assert_406(err: &lapin::Error, detail: &str) {
    assert_eq!(
        code_text(err),
        (406, format!("PRECONDITION_FAILED - {detail}"))
    );
}

// ---------------------------------------------------------------- publisher confirms

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_is_confirmed() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = confirm_channel(&c).await;
        let q = uniq("confirm");
        declare(&ch, &q).await;
        // select again is idempotent
        within(ch.confirm_select(ConfirmSelectOptions::default()))
            .await
            .unwrap();
        let mut pending = Vec::new();
        for i in 0..200u32 {
            let opts = BasicPublishOptions::default();
            pending.push(publish_pending(&ch, "", &q, opts, &i.to_be_bytes()).await);
        }
        for pc in pending {
            assert_eq!(within(pc).await.unwrap(), Confirmation::Ack(None));
        }
        assert!(within(ch.wait_for_confirms()).await.unwrap().is_empty());
        assert_eq!(message_count(&ch, &q).await, 200);
        // confirms keep working after a burst (tags keep counting)
        let pc = publish_pending(&ch, "", &q, BasicPublishOptions::default(), b"last").await;
        assert!(within(pc).await.unwrap().is_ack());
        assert_eq!(message_count(&ch, &q).await, 201);
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_without_awaiting_each_then_wait_for_confirms() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = confirm_channel(&c).await;
        let q = uniq("confirm-bulk");
        declare(&ch, &q).await;
        for i in 0..2000u32 {
            // the broker may answer with multiple=true acks; lapin resolves all of them
            let opts = BasicPublishOptions::default();
            let _ = publish_pending(&ch, "", &q, opts, &i.to_be_bytes()).await;
        }
        assert!(within(ch.wait_for_confirms()).await.unwrap().is_empty());
        assert_eq!(message_count(&ch, &q).await, 2000);
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_mandatory_is_returned_then_acked() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = confirm_channel(&c).await;
        let q = uniq("ret-q");
        declare(&ch, &q).await;
        let mand = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let nobody = uniq("nobody");
        let p1 = publish_pending(&ch, "", &q, mand, b"routed").await;
        let p2 = publish_pending(&ch, "", &nobody, mand, b"returned").await;
        let p3 = publish_pending(&ch, "", &nobody, Default::default(), b"dropped").await;
        let p4 = publish_pending(&ch, "", &q, mand, b"routed2").await;
        assert_eq!(within(p1).await.unwrap(), Confirmation::Ack(None));
        match within(p2).await.unwrap() {
            Confirmation::Ack(Some(ret)) => {
                assert_eq!((ret.reply_code, ret.reply_text.as_str()), (312, "NO_ROUTE"));
                assert_eq!(ret.delivery.exchange.as_str(), "");
                assert_eq!(ret.delivery.routing_key.as_str(), nobody);
                assert_eq!(ret.delivery.data, b"returned");
            }
            other => panic!("expected a return before the ack, got {other:?}"),
        }
        assert_eq!(within(p3).await.unwrap(), Confirmation::Ack(None));
        assert_eq!(within(p4).await.unwrap(), Confirmation::Ack(None));
        assert_eq!(message_count(&ch, &q).await, 2);
        delete(&ch, &q).await;
    })
    .await
}

/// An unroutable publish is acked at once, even while earlier ones still wait
/// for their queue; the cumulative ack sent when those arrive must carry a tag
/// not acked before (rabbit_channel's coalesce_and_send): aiormq ignores an ack
/// for a tag it no longer waits for, and with it every publish it covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_acks_never_repeat_a_tag() {
    let b = start_broker(1);
    let port = b.port();
    let q = uniq("ack-tags");
    blocking(move || {
        let mut r = Raw::connect(port);
        r.handshake(131072, 0);
        r.open_channel(1);
        r.send_method(1, 50, 10, &queue_args(&q, &[0x04, 0, 0, 0, 0])); // exclusive
        r.expect_method(1, 50, 11);
        r.send_method(1, 85, 10, &[0]);
        r.expect_method(1, 85, 11);
        let nobody = uniq("nobody");
        let mandatory = [&[0, 0][..], &shortstr(""), &shortstr(&nobody), &[1]].concat();
        // One write, so that the broker reads them all before any queue answers.
        let mut burst = Vec::new();
        burst.extend(publish_frames(1, "", &q, b"1", 131072));
        burst.extend(publish_frames(1, "", &nobody, b"2", 131072));
        burst.extend(publish_frames(1, "", &q, b"3", 131072));
        burst.extend(publish_frames_with(1, &mandatory, b"4", 131072));
        burst.extend(publish_frames(1, "", &nobody, b"5", 131072));
        r.send(&burst);
        let mut acked = [false; 6];
        while !acked[1..].iter().all(|&a| a) {
            let (ty, ch, p) = r.read_frame();
            if ty != 1 {
                continue; // the content of publish 4's basic.return
            }
            let ids = (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            );
            if ids == (60, 50) {
                continue; // basic.return of publish 4
            }
            assert_eq!((ch, ids), (1, (60, 80)), "expected basic.ack");
            let tag = u64::from_be_bytes(p[4..12].try_into().unwrap()) as usize;
            let multiple = p[12] != 0;
            assert!(!acked[tag], "tag {tag} acked twice (multiple: {multiple})");
            let from = if multiple { 1 } else { tag };
            acked[from..=tag].iter_mut().for_each(|a| *a = true);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_channel_error_fails_pending_confirms() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = confirm_channel(&c).await;
        let ex = uniq("no-ex");
        let pc = publish_pending(&ch, &ex, "rk", BasicPublishOptions::default(), b"x").await;
        let err = within(pc)
            .await
            .expect_err("publish to a missing exchange cannot be confirmed");
        assert_eq!(code_text(&err), (404, no_exchange(&ex)));
        assert_broker_alive(&b.uri()).await;
    })
    .await
}

// ---------------------------------------------------------------- transactions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_publishes_visible_only_after_commit() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let obs = channel(&c).await;
        let q = uniq("txpub");
        declare(&ch, &q).await;
        let mut cons = consume(&obs, &q, true).await;
        within(ch.tx_select()).await.unwrap();
        for i in 1..=3 {
            publish(&ch, "", &q, i.to_string().as_bytes()).await;
        }
        recv_none(&mut cons, 300).await;
        within(ch.tx_commit()).await.unwrap();
        for i in 1..=3 {
            assert_eq!(sval(&recv(&mut cons).await), i.to_string());
        }
        // the channel stays transactional: the next batch waits for the next commit
        publish(&ch, "", &q, b"4").await;
        recv_none(&mut cons, 300).await;
        within(ch.tx_commit()).await.unwrap();
        assert_eq!(sval(&recv(&mut cons).await), "4");
        // an empty commit is fine
        within(ch.tx_commit()).await.unwrap();
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_rollback_discards_publishes() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("txrb");
        declare(&ch, &q).await;
        within(ch.tx_select()).await.unwrap();
        publish(&ch, "", &q, b"gone1").await;
        publish(&ch, "", &q, b"gone2").await;
        within(ch.tx_rollback()).await.unwrap();
        assert_eq!(message_count(&ch, &q).await, 0);
        publish(&ch, "", &q, b"kept").await;
        within(ch.tx_commit()).await.unwrap();
        assert_eq!(message_count(&ch, &q).await, 1);
        // uncommitted publishes are discarded when the channel closes
        publish(&ch, "", &q, b"never").await;
        within(ch.close(200, "bye")).await.unwrap();
        let ch = channel(&c).await;
        let m = get(&ch, &q, true).await.unwrap();
        assert_eq!(
            (m.delivery.data.as_slice(), m.message_count),
            (&b"kept"[..], 0)
        );
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_acks_applied_on_commit_and_discarded_on_rollback() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let setup = channel(&c).await;
        let q = uniq("txack");
        declare(&setup, &q).await;
        for i in 1..=4 {
            publish(&setup, "", &q, i.to_string().as_bytes()).await;
        }
        let ch = channel(&c).await;
        within(ch.tx_select()).await.unwrap();
        for i in 1..=4u64 {
            assert_eq!(get(&ch, &q, false).await.unwrap().delivery.delivery_tag, i);
        }
        within(ch.basic_ack(1, BasicAckOptions::default()))
            .await
            .unwrap();
        within(ch.basic_ack(2, BasicAckOptions::default()))
            .await
            .unwrap();
        within(ch.tx_commit()).await.unwrap(); // 1 and 2 are gone
        within(ch.basic_ack(3, BasicAckOptions::default()))
            .await
            .unwrap();
        within(ch.tx_rollback()).await.unwrap(); // the ack of 3 is forgotten: 3 stays unacked
        within(ch.basic_reject(4, BasicRejectOptions { requeue: false }))
            .await
            .unwrap(); // uncommitted
        within(ch.close(200, "bye")).await.unwrap(); // requeues 3 and 4
        let got = drain_redelivered(&setup, &q).await;
        assert_eq!(got, owned(&[("3", true), ("4", true)]));
        delete(&setup, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_requeue_nack_applied_on_commit() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let q = uniq("txnack");
        declare(&ch, &q).await;
        publish(&ch, "", &q, b"a").await;
        within(ch.tx_select()).await.unwrap();
        let m = get(&ch, &q, false).await.unwrap();
        within(ch.basic_nack(
            m.delivery.delivery_tag,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        ))
        .await
        .unwrap();
        assert_eq!(
            message_count(&ch, &q).await,
            0,
            "nack not applied before commit"
        );
        within(ch.tx_commit()).await.unwrap();
        let m = get(&ch, &q, false).await.expect("requeued on commit");
        assert!(m.delivery.redelivered);
        within(ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()))
            .await
            .unwrap();
        within(ch.tx_commit()).await.unwrap();
        delete(&ch, &q).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_commit_or_rollback_without_select_is_406() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        let err = within(ch.tx_commit())
            .await
            .expect_err("commit without select");
        assert_406(&err, "channel is not transactional");
        let ch = channel(&c).await;
        let err = within(ch.tx_rollback())
            .await
            .expect_err("rollback without select");
        assert_406(&err, "channel is not transactional");
        assert!(c.status().connected());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_and_confirm_modes_are_exclusive() {
    deadline(60, async {
        let b = start_broker(1);
        let c = connect(&b.uri()).await;
        let ch = channel(&c).await;
        within(ch.tx_select()).await.unwrap();
        within(ch.tx_select()).await.unwrap(); // idempotent
        let err = within(ch.confirm_select(ConfirmSelectOptions::default()))
            .await
            .expect_err("tx → confirm");
        assert_406(&err, "cannot switch from tx to confirm mode");
        let ch = confirm_channel(&c).await;
        let err = within(ch.tx_select()).await.expect_err("confirm → tx");
        assert_406(&err, "cannot switch from confirm to tx mode");
        assert!(c.status().connected());
    })
    .await
}

/// A client that closes its connection right after publishing in confirm mode
/// still gets every confirm before close-ok (the queue is on another shard, so
/// the confirms are in flight when connection.close arrives). Stricter than
/// RabbitMQ 3.10, which may drop the last confirms (lapin then fails them with
/// `InvalidConnectionState(Closed)`), so not run against an external broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_in_flight_are_sent_before_close_ok() {
    deadline(60, async {
        let b = start_broker(2);
        if b.is_external() {
            return;
        }
        let owner = connect(&b.shard_uri(1)).await;
        let och = channel(&owner).await;
        for round in 0..20 {
            let q = uniq("close-confirm");
            declare(&och, &q).await;
            let c = connect(&b.shard_uri(0)).await;
            let ch = confirm_channel(&c).await;
            let mut pending = Vec::new();
            for i in 0..200u32 {
                let opts = BasicPublishOptions::default();
                pending.push(publish_pending(&ch, "", &q, opts, &i.to_be_bytes()).await);
            }
            within(c.close(200, "bye")).await.expect("connection.close");
            for (i, p) in pending.into_iter().enumerate() {
                let r = within(p).await;
                assert!(
                    matches!(r, Ok(Confirmation::Ack(None))),
                    "round {round}: publish {i} got {r:?}"
                );
            }
            assert_eq!(message_count(&och, &q).await, 200);
            delete(&och, &q).await;
        }
    })
    .await
}
