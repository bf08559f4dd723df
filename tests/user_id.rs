//! Validated user-id (RabbitMQ's `check_user_id_header`), driven by `lapin`: a
//! publish whose `user_id` property names the authenticated user is delivered
//! with it; any other value closes the channel with RabbitMQ's 406, in confirm
//! mode and in transactions alike, after a missing exchange's 404.

mod common_lapin;
mod util;

use common_lapin::*;
use lapin::{options::*, BasicProperties, Channel};
use util::*;

const BOB: &str =
    "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'";

/// Publishes `body` to `q` with `user_id` set (if any) and no confirm awaited.
async fn publish_as(ch: &Channel, x: &str, q: &str, body: &[u8], user_id: Option<&str>) {
    let mut props = BasicProperties::default().with_message_id("m".into());
    if let Some(u) = user_id {
        props = props.with_user_id(u.into());
    }
    let _ = within(ch.basic_publish(x, q, BasicPublishOptions::default(), body, props)).await;
}

#[tokio::test]
async fn the_authenticated_user_passes_with_its_user_id() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = confirm_channel(&conn).await;
        let q = temp_queue(&ch).await;
        let props = BasicProperties::default().with_user_id("guest".into());
        let c = within(ch.basic_publish("", &q, Default::default(), b"me", props))
            .await
            .unwrap();
        assert!(within(c).await.unwrap().is_ack());
        publish_as(&ch, "", &q, b"anonymous", None).await;
        let m = get(&ch, &q, true).await.expect("first message");
        assert_eq!(
            m.delivery.properties.user_id().as_ref().map(|u| u.as_str()),
            Some("guest")
        );
        let m = get(&ch, &q, true).await.expect("second message");
        assert_eq!(sval(&m.delivery), "anonymous");
        assert!(m.delivery.properties.user_id().is_none());
    })
    .await
}

#[tokio::test]
async fn another_user_id_closes_the_channel_and_nothing_is_enqueued() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let admin = channel(&conn).await;
        let q = unique("uid");
        declare(&admin, &q).await;

        // Confirm mode: the channel closes, the message is not enqueued.
        let ch = confirm_channel(&conn).await;
        let mut errors = watch_channel(&ch);
        publish_as(&ch, "", &q, b"forged", Some("bob")).await;
        assert_eq!(next_err(&mut errors).await, (406, BOB.to_string()));
        assert_connection_usable(&conn).await;

        // Case matters: "Guest" is not "guest".
        let ch = channel(&conn).await;
        let mut errors = watch_channel(&ch);
        publish_as(&ch, "", &q, b"case", Some("Guest")).await;
        let (code, text) = next_err(&mut errors).await;
        assert_eq!(code, 406);
        assert!(text.starts_with("PRECONDITION_FAILED - user_id property set to 'Guest'"));

        // In a transaction the publish fails at once, not at commit.
        let ch = channel(&conn).await;
        within(ch.tx_select()).await.unwrap();
        let mut errors = watch_channel(&ch);
        publish_as(&ch, "", &q, b"tx", Some("bob")).await;
        assert_eq!(next_err(&mut errors).await, (406, BOB.to_string()));

        assert_eq!(message_count(&admin, &q).await, 0);
        delete(&admin, &q).await;
    })
    .await
}

#[tokio::test]
async fn a_missing_exchange_is_reported_before_the_user_id() {
    deadline(30, async {
        let b = start_broker(2);
        let conn = connect(&b.uri()).await;
        let ch = channel(&conn).await;
        let mut errors = watch_channel(&ch);
        let x = unique("uid-missing");
        publish_as(&ch, &x, "k", b"x", Some("bob")).await;
        assert_eq!(next_err(&mut errors).await, (404, no_exchange(&x)));
        // An internal exchange: 403 first.
        let ch = channel(&conn).await;
        let internal = unique("uid-internal");
        let opts = ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        };
        within(ch.exchange_declare(
            &internal,
            lapin::ExchangeKind::Direct,
            opts,
            Default::default(),
        ))
        .await
        .unwrap();
        let mut errors = watch_channel(&ch);
        publish_as(&ch, &internal, "k", b"x", Some("bob")).await;
        let want = format!(
            "ACCESS_REFUSED - cannot publish to internal exchange '{internal}' in vhost '/'"
        );
        assert_eq!(next_err(&mut errors).await, (403, want));
        let ch = channel(&conn).await;
        let _ = within(ch.exchange_delete(&internal, Default::default())).await;
    })
    .await
}
