//! Priority queues (`x-max-priority`): higher priorities first, FIFO within a
//! priority, priorities above the maximum capped, and the order kept when
//! messages are requeued.

mod common_ext;
mod common_lapin;
mod util;
use common_ext::*;
use common_lapin::*;
use util::*;

use lapin::{options::*, BasicProperties};

fn prio(p: u8) -> BasicProperties {
    BasicProperties::default().with_priority(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_first_fifo_within_and_capped() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = uniq("prio");
        declare_args(&ch, &q, &[("x-max-priority", int(5))]).await;
        let msgs: [(&str, Option<u8>); 7] = [
            ("none-1", None),
            ("p1-1", Some(1)),
            ("p5-1", Some(5)),
            ("p9", Some(9)), // treated as 5
            ("p1-2", Some(1)),
            ("p5-2", Some(5)),
            ("none-2", None),
        ];
        for (body, p) in msgs {
            let props = p.map_or_else(BasicProperties::default, prio);
            publish_acked(&ch, "", &q, body.as_bytes(), props).await;
        }
        assert_eq!(message_count(&ch, &q).await, 7);
        assert_eq!(
            drain(&ch, &q).await,
            vec!["p5-1", "p9", "p5-2", "p1-1", "p1-2", "none-1", "none-2"]
        );
        delete(&ch, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_messages_keep_their_place_within_their_priority() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = uniq("prio-requeue");
        declare_args(&ch, &q, &[("x-max-priority", int(3))]).await;
        for (body, p) in [("h1", 3), ("h2", 3), ("l1", 1), ("h3", 3), ("l2", 1)] {
            publish_acked(&ch, "", &q, body.as_bytes(), prio(p)).await;
        }
        // take h1, h2, h3 and l1; requeue them in another order
        let c = channel(&conn).await;
        let mut taken = vec![];
        for _ in 0..4 {
            taken.push(get_one(&c, &q).await);
        }
        let bodies: Vec<String> = taken.iter().map(sval).collect();
        assert_eq!(bodies, vec!["h1", "h2", "h3", "l1"]);
        for d in taken.iter().rev() {
            d.nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        assert_eq!(
            drain_redelivered(&ch, &q).await,
            owned(&[
                ("h1", true),
                ("h2", true),
                ("h3", true),
                ("l1", true),
                ("l2", false)
            ])
        );
        // and through a consumer's channel closing
        for (body, p) in [("a", 1), ("b", 2), ("c", 2)] {
            publish_acked(&ch, "", &q, body.as_bytes(), prio(p)).await;
        }
        let c2 = channel(&conn).await;
        let mut cons = consume(&c2, &q, false).await;
        for _ in 0..3 {
            recv(&mut cons).await;
        }
        within(c2.close(200, "bye")).await.unwrap();
        assert_eq!(drain(&ch, &q).await, vec!["b", "c", "a"]);
        delete(&ch, &q).await;
    })
    .await;
}
