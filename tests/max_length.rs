//! Length limits: `x-max-length` and `x-max-length-bytes` with each
//! `x-overflow` mode — drop-head (dead-lettering `maxlen`), reject-publish
//! (basic.nack in confirm mode, message dropped, even with a consumer
//! waiting) and reject-publish-dlx (nack and dead-letter).

mod common_ext;
mod common_lapin;
mod util;
use common_ext::*;
use common_lapin::*;
use util::*;

use lapin::{options::*, publisher_confirm::Confirmation};
use std::time::Duration;

const PLENTY: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_keeps_the_newest_and_dead_letters_the_dropped() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (q, dl) = (uniq("maxlen"), uniq("maxlen-dl"));
        declare(&ch, &dl).await;
        declare_args(
            &ch,
            &q,
            &[
                ("x-max-length", int(2)),
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s(&dl)),
            ],
        )
        .await;
        for i in 1..=5 {
            publish_acked(&ch, "", &q, format!("m{i}").as_bytes(), Default::default()).await;
        }
        assert_eq!(drain(&ch, &q).await, vec!["m4", "m5"]);
        wait_count(&ch, &dl, 3, PLENTY).await;
        let c = channel(&conn).await;
        let d = get_one(&c, &dl).await;
        assert_eq!(sval(&d), "m1");
        assert_eq!(
            hstr(&x_death(&d.properties)[0], "reason").as_deref(),
            Some("maxlen")
        );
        assert_eq!(drain(&ch, &dl).await, vec!["m2", "m3"]);
        // unacked messages do not count: two out, two more fit
        publish_acked(&ch, "", &q, b"a", Default::default()).await;
        publish_acked(&ch, "", &q, b"b", Default::default()).await;
        let _held = (get_one(&c, &q).await, get_one(&c, &q).await);
        publish_acked(&ch, "", &q, b"c", Default::default()).await;
        publish_acked(&ch, "", &q, b"d", Default::default()).await;
        assert_eq!(message_count(&ch, &q).await, 2);
        for q in [&q, &dl] {
            delete(&ch, q).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_bytes_counts_bodies() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = uniq("maxbytes");
        declare_args(&ch, &q, &[("x-max-length-bytes", int(10))]).await;
        for body in ["aaaa", "bbbb", "cccc"] {
            publish_acked(&ch, "", &q, body.as_bytes(), Default::default()).await;
        }
        // 12 bytes > 10: the oldest went
        assert_eq!(drain(&ch, &q).await, vec!["bbbb", "cccc"]);
        publish_acked(&ch, "", &q, &[b'x'; 11], Default::default()).await;
        assert_eq!(message_count(&ch, &q).await, 0);
        delete(&ch, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_nacks_in_confirm_mode() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (q, other) = (uniq("reject-pub"), uniq("reject-other"));
        declare_args(
            &ch,
            &q,
            &[
                ("x-max-length", int(2)),
                ("x-overflow", s("reject-publish")),
            ],
        )
        .await;
        declare(&ch, &other).await;
        let mut results = vec![];
        for i in 1..=4 {
            let c =
                publish_confirm(&ch, "", &q, format!("m{i}").as_bytes(), Default::default()).await;
            results.push(matches!(c, Confirmation::Ack(_)));
        }
        assert_eq!(results, vec![true, true, false, false]);
        // publishes after a nack are acked as usual
        publish_acked(&ch, "", &other, b"fine", Default::default()).await;
        assert_eq!(drain(&ch, &q).await, vec!["m1", "m2"]);
        // pipelined: acks and nacks each for their own publish
        let mut pending = vec![];
        for i in 1..=4 {
            let body = format!("p{i}");
            let pc = ch
                .basic_publish(
                    "",
                    &q,
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    Default::default(),
                )
                .await
                .unwrap();
            pending.push(pc);
        }
        let mut acks = vec![];
        for pc in pending {
            acks.push(within(pc).await.unwrap().is_ack());
        }
        assert_eq!(acks, vec![true, true, false, false]);
        // even with a consumer waiting, a full queue refuses
        let c = channel(&conn).await;
        qos(&c, 1).await;
        let mut cons = consume(&c, &q, false).await;
        let first = recv(&mut cons).await; // p1 (unacked); p2 ready
        assert_eq!(sval(&first), "p1");
        let r = publish_confirm(&ch, "", &q, b"more", Default::default()).await;
        assert!(r.is_ack(), "one ready message, room for one more");
        let r = publish_confirm(&ch, "", &q, b"over", Default::default()).await;
        assert!(matches!(r, Confirmation::Nack(_)), "{r:?}");
        for q in [&q, &other] {
            delete(&ch, q).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_dlx_nacks_and_dead_letters() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let (q, dl) = (uniq("reject-dlx"), uniq("reject-dlx-dl"));
        declare(&ch, &dl).await;
        declare_args(
            &ch,
            &q,
            &[
                ("x-max-length", int(1)),
                ("x-overflow", s("reject-publish-dlx")),
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s(&dl)),
            ],
        )
        .await;
        assert!(publish_confirm(&ch, "", &q, b"in", Default::default())
            .await
            .is_ack());
        let r = publish_confirm(&ch, "", &q, b"out", Default::default()).await;
        assert!(matches!(r, Confirmation::Nack(_)), "{r:?}");
        assert_eq!(drain(&ch, &q).await, vec!["in"]);
        wait_count(&ch, &dl, 1, PLENTY).await;
        let d = get_one(&ch, &dl).await;
        assert_eq!(sval(&d), "out");
        let death = &x_death(&d.properties)[0];
        assert_eq!(hstr(death, "reason").as_deref(), Some("maxlen"));
        assert_eq!(hstr(death, "queue").as_deref(), Some(q.as_str()));
        for q in [&q, &dl] {
            delete(&ch, q).await;
        }
    })
    .await;
}
