//! Consumer priorities (`x-priority`): higher-priority consumers get messages
//! while they have prefetch room, lower ones only when those are full;
//! round-robin among equal priorities. (The `consumer_priorities` capability
//! is checked in tests/connection.rs.)

mod common_ext;
mod common_lapin;
mod util;
use common_ext::*;
use common_lapin::*;
use util::*;

use lapin::{options::*, types::FieldTable};

fn priority(p: i64) -> FieldTable {
    table(&[("x-priority", int(p))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_consumers_first_while_they_have_room() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = uniq("cprio");
        declare(&ch, &q).await;
        let (lo_ch, hi_ch) = (channel(&conn).await, channel(&conn).await);
        qos(&lo_ch, 10).await;
        qos(&hi_ch, 2).await;
        let mut lo = consume_with(&lo_ch, &q, "lo", false, priority(1)).await;
        let mut hi = consume_with(&hi_ch, &q, "hi", false, priority(10)).await;
        for i in 0..5 {
            publish_acked(&ch, "", &q, format!("m{i}").as_bytes(), Default::default()).await;
        }
        // hi takes its prefetch of 2, lo the rest
        let h: Vec<String> = vec![sval(&recv(&mut hi).await), sval(&recv(&mut hi).await)];
        assert_eq!(h, vec!["m0", "m1"]);
        let mut l = vec![];
        for _ in 0..3 {
            l.push(recv(&mut lo).await);
        }
        assert_eq!(
            l.iter().map(sval).collect::<Vec<_>>(),
            vec!["m2", "m3", "m4"]
        );
        recv_none(&mut hi, 100).await;
        // once hi has room again it is first again
        hi_ch
            .basic_ack(0, BasicAckOptions { multiple: true })
            .await
            .unwrap();
        for i in 5..7 {
            publish_acked(&ch, "", &q, format!("m{i}").as_bytes(), Default::default()).await;
        }
        assert_eq!(sval(&recv(&mut hi).await), "m5");
        assert_eq!(sval(&recv(&mut hi).await), "m6");
        recv_none(&mut lo, 200).await;
        delete(&ch, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_priorities_round_robin_and_default_is_zero() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = uniq("cprio-rr");
        declare(&ch, &q).await;
        let c = channel(&conn).await;
        let mut a = consume_with(&c, &q, "a", true, priority(5)).await;
        let mut bb = consume_with(&c, &q, "b", true, priority(5)).await;
        let mut zero = consume_with(&c, &q, "zero", true, FieldTable::default()).await;
        for i in 0..4 {
            publish_acked(&ch, "", &q, format!("m{i}").as_bytes(), Default::default()).await;
        }
        // no-ack consumers always have room: the two priority-5 ones share
        let got_a = [sval(&recv(&mut a).await), sval(&recv(&mut a).await)];
        let got_b = [sval(&recv(&mut bb).await), sval(&recv(&mut bb).await)];
        assert_eq!(got_a, ["m0", "m2"]);
        assert_eq!(got_b, ["m1", "m3"]);
        recv_none(&mut zero, 200).await;
        delete(&ch, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_priority_must_be_an_integer() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        let q = uniq("cprio-bad");
        declare(&ch, &q).await;
        let r = within(ch.basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            table(&[("x-priority", s("high"))]),
        ))
        .await;
        let text = format!(
            "PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': \"expected integer, got longstr\""
        );
        assert_channel_error(&conn, r, 406, &text).await;
        let ch = channel(&conn).await;
        delete(&ch, &q).await;
    })
    .await;
}
