//! Single active consumer (`x-single-active-consumer`): every consumer gets
//! consume-ok, only the first gets messages; when it is cancelled or its
//! channel closes, the next one in registration order takes over (with the
//! unacked messages requeued first).

mod common_ext;
mod common_lapin;
mod util;
use common_ext::*;
use common_lapin::*;
use util::*;

use lapin::{options::*, types::AMQPValue, types::FieldTable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_consumer_gets_messages_and_the_next_takes_over() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = uniq("sac");
        declare_args(
            &ch,
            &q,
            &[("x-single-active-consumer", AMQPValue::Boolean(true))],
        )
        .await;
        let (c1, c2, c3) = (
            channel(&conn).await,
            channel(&conn).await,
            channel(&conn).await,
        );
        let mut first = consume_with(&c1, &q, "first", false, FieldTable::default()).await;
        let mut second = consume_with(&c2, &q, "second", false, FieldTable::default()).await;
        let mut third = consume_with(&c3, &q, "third", false, FieldTable::default()).await;
        for i in 0..4 {
            publish_acked(&ch, "", &q, format!("m{i}").as_bytes(), Default::default()).await;
        }
        for i in 0..4 {
            let d = recv(&mut first).await;
            assert_eq!(sval(&d), format!("m{i}"));
            if i < 2 {
                d.ack(BasicAckOptions::default()).await.unwrap();
            }
        }
        recv_none(&mut second, 200).await;
        recv_none(&mut third, 10).await;
        // the active consumer's channel closes: m2, m3 go to `second`
        within(c1.close(200, "bye")).await.unwrap();
        let d = recv(&mut second).await;
        assert_eq!((sval(&d), d.redelivered), ("m2".to_string(), true));
        d.ack(BasicAckOptions::default()).await.unwrap();
        let d = recv(&mut second).await;
        assert_eq!(sval(&d), "m3");
        d.ack(BasicAckOptions::default()).await.unwrap();
        // cancelled: `third` takes over
        within(c2.basic_cancel("second", BasicCancelOptions::default()))
            .await
            .unwrap();
        publish_acked(&ch, "", &q, b"after", Default::default()).await;
        assert_eq!(sval(&recv(&mut third).await), "after");
        recv_none(&mut second, 100).await;
        delete(&ch, &q).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_consume_is_refused_on_a_single_active_consumer_queue() {
    deadline(30, async {
        let b = start_broker(1);
        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        let q = uniq("sac-excl");
        declare_args(
            &ch,
            &q,
            &[("x-single-active-consumer", AMQPValue::Boolean(true))],
        )
        .await;
        let opts = BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        };
        let r = within(ch.basic_consume(&q, "", opts, FieldTable::default())).await;
        let text = format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use");
        assert_channel_error(&conn, r, 403, &text).await;
        let ch = channel(&conn).await;
        delete(&ch, &q).await;
    })
    .await;
}
