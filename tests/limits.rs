//! Vhost, user and broker limits, driven by lapin, with RabbitMQ's texts
//! (docs/oracle/tenancy-rabbitmq-3.10.8.md §4; the same in 3.13.7): the
//! refused connection or queue, clearing a limit, and counters that stay
//! right after refusals (new connections fit again once others close).

mod common_lapin;
mod common_tenancy;
mod util;

use common_lapin::*;
use common_tenancy::*;
use lapin::{types::FieldTable, Connection};
use util::*;

/// The close of a connection attempt that must fail.
async fn connect_err(uri: &str) -> (u16, String) {
    match within(Connection::connect(uri, Default::default())).await {
        Ok(_) => panic!("connection to {uri} must be refused"),
        Err(e) => code_text(&e),
    }
}

/// A connection to `uri` succeeds, eventually (the broker released a slot).
async fn fits_eventually(uri: &str, what: &str) -> Connection {
    poll_for(what, async || {
        within(Connection::connect(uri, Default::default()))
            .await
            .ok()
    })
    .await
}

async fn close(c: Connection) {
    within(c.close(200, "bye")).await.expect("connection.close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_max_connections() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let (u, v) = t.user_in_vhost("vmaxconn", ".*", ".*", ".*");
        t.set_vhost_limit(&v, "max-connections", 1);
        let uri = t.uri(&u, "pw", &v);
        let c1 = connect(&uri).await;
        let want = format!(
            "NOT_ALLOWED - access to vhost '{v}' refused for user '{u}': connection limit (1) is reached"
        );
        for _ in 0..3 {
            assert_eq!(connect_err(&uri).await, (530, want.clone()));
        }
        // the refusals left the count at one: closing c1 makes room
        close(c1).await;
        let c1 = fits_eventually(&uri, "a connection after the first closed").await;
        assert_eq!(connect_err(&uri).await, (530, want));
        // cleared: any number
        t.set_vhost_limit(&v, "max-connections", -1);
        let c2 = fits_eventually(&uri, "a second connection once cleared").await;
        let c3 = connect(&uri).await;
        for c in [c1, c2, c3] {
            close(c).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_max_connections_zero_and_the_limit_comes_before_access() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let (u, v) = t.user_in_vhost("vmax0", ".*", ".*", ".*");
        t.set_vhost_limit(&v, "max-connections", 0);
        let want = format!(
            "NOT_ALLOWED - access to vhost '{v}' refused for user '{u}': connection limit (0) is reached"
        );
        assert_eq!(connect_err(&t.uri(&u, "pw", &v)).await, (530, want));
        // RabbitMQ checks the vhost's limit before the user's access: a user
        // without permission there gets the limit text (oracle §3)
        let nobody = unique("u-noperm");
        t.put_user(&nobody, "pw");
        let want = format!(
            "NOT_ALLOWED - access to vhost '{v}' refused for user '{nobody}': connection limit (0) is reached"
        );
        assert_eq!(connect_err(&t.uri(&nobody, "pw", &v)).await, (530, want));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_max_queues() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let (u, v) = t.user_in_vhost("vmaxq", ".*", ".*", ".*");
        t.set_vhost_limit(&v, "max-queues", 1);
        let c = connect(&t.uri(&u, "pw", &v)).await;
        let ch = channel(&c).await;
        declare(&ch, "q1").await;
        declare(&ch, "q1").await; // a redeclare is not a new queue
        let r = within(ch.queue_declare("q2", Default::default(), FieldTable::default())).await;
        let want =
            format!("PRECONDITION_FAILED - cannot declare queue 'q2': queue limit in vhost '{v}' (1) is reached");
        assert_eq!(code_text(&r.unwrap_err()), (406, want));
        // a server-named queue is refused by its generated name
        let ch = channel(&c).await;
        let r = within(ch.queue_declare("", Default::default(), FieldTable::default())).await;
        let (code, text) = code_text(&r.unwrap_err());
        let suffix = format!("': queue limit in vhost '{v}' (1) is reached");
        assert!(
            code == 406
                && text.starts_with("PRECONDITION_FAILED - cannot declare queue 'amq.gen-")
                && text.ends_with(&suffix),
            "server-named: {code} {text:?}"
        );
        // cleared: q2 fits
        t.set_vhost_limit(&v, "max-queues", -1);
        let ch = channel(&c).await;
        eventually("q2 declared once the limit is cleared", async || {
            let ch = channel(&c).await;
            within(ch.queue_declare("q2", Default::default(), FieldTable::default()))
                .await
                .is_ok()
        })
        .await;
        // deleting makes room under a limit again
        t.set_vhost_limit(&v, "max-queues", 2);
        within(ch.queue_delete("q2", Default::default())).await.unwrap();
        declare(&ch, "q3").await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_max_connections() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let (u, v) = t.user_in_vhost("umaxconn", ".*", ".*", ".*");
        // the limit is the user's, in every vhost
        let v2 = unique("v-umaxconn2");
        t.put_vhost(&v2);
        t.set_permissions(&u, &v2, ".*", ".*", ".*");
        t.set_user_limit(&u, "max-connections", 1);
        let c1 = connect(&t.uri(&u, "pw", &v)).await;
        let want = format!(
            "NOT_ALLOWED - connection refused for user '{u}': user connection limit (1) is reached"
        );
        assert_eq!(connect_err(&t.uri(&u, "pw", &v)).await, (530, want.clone()));
        assert_eq!(
            connect_err(&t.uri(&u, "pw", &v2)).await,
            (530, want.clone())
        );
        // guest is not limited
        let g = connect(&t.uri("guest", "guest", &v)).await;
        close(c1).await;
        let c1 =
            fits_eventually(&t.uri(&u, "pw", &v2), "a connection after the first closed").await;
        assert_eq!(connect_err(&t.uri(&u, "pw", &v)).await, (530, want));
        t.set_user_limit(&u, "max-connections", -1);
        let c2 = fits_eventually(&t.uri(&u, "pw", &v), "a second connection once cleared").await;
        for c in [c1, c2, g] {
            close(c).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_max_channels_counts_across_connections() {
    deadline(60, async {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let (u, v) = t.user_in_vhost("umaxch", ".*", ".*", ".*");
        t.set_user_limit(&u, "max-channels", 2);
        let uri = t.uri(&u, "pw", &v);
        let c1 = connect(&uri).await;
        let c2 = connect(&uri).await;
        let _ch1 = channel(&c1).await;
        let _ch2 = channel(&c2).await;
        // the third channel, on either connection: 530 closes that connection
        let want = format!(
            "NOT_ALLOWED - number of channels opened for user '{u}' has reached the maximum allowed user limit of (2)"
        );
        let r = within(c2.create_channel()).await;
        assert_eq!(code_text(&r.unwrap_err()), (530, want.clone()));
        eventually("c2 closed by the broker", async || !c2.status().connected()).await;
        assert!(c1.status().connected(), "the other connection stays");
        // c2's channel was released with it: a new connection gets one
        let c3 = connect(&uri).await;
        let _ch3 = poll_for("a channel after c2 closed", async || {
            let c = connect(&uri).await;
            let ok = within(c.create_channel()).await.ok();
            ok.map(|ch| (c, ch))
        })
        .await;
        let r = within(c3.create_channel()).await;
        assert_eq!(code_text(&r.unwrap_err()), (530, want));
        // cleared: more channels on a new connection. (An already open one
        // picks the change up on its next tick in warren; RabbitMQ reads the
        // limit at every channel.open. Not asserted: a refusal closes it.)
        t.set_user_limit(&u, "max-channels", -1);
        let c4 = connect(&uri).await;
        let _a = channel(&c4).await;
        let _b = channel(&c4).await;
        let _c = channel(&c4).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_max_connections() {
    if std::env::var("WARREN_TEST_EXTERNAL_URI").is_ok() {
        // RabbitMQ 3.10.8 caps at TCP accept (no AMQP reply, oracle §4);
        // warren follows 3.11+'s 530 at connection.open.
        eprintln!("skipped against an external broker: broker config");
        return;
    }
    deadline(60, async {
        let _ = env_logger::builder().is_test(true).try_init();
        let mut config = warren::Config::for_tests(2);
        config.max_connections = Some(2);
        let h = warren::start(config).expect("broker starts");
        let t = Tenancy::local(&h);
        let uri = t.uri("guest", "guest", "/");
        let c1 = connect(&uri).await;
        let c2 = connect(&uri).await;
        let want = "NOT_ALLOWED - connection refused: node connection limit (2) is reached";
        for _ in 0..3 {
            assert_eq!(connect_err(&uri).await, (530, want.to_string()));
        }
        close(c1).await;
        let c1 = fits_eventually(&uri, "a connection after one closed").await;
        assert_eq!(connect_err(&uri).await, (530, want.to_string()));
        close(c1).await;
        close(c2).await;
        drop(t);
        h.shutdown();
    })
    .await
}
