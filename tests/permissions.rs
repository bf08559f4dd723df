//! RabbitMQ's permission table, driven by lapin: user `u-…` in vhost `v-…`
//! has exactly one permission missing per case, and the channel closes with
//! the exact 403 RabbitMQ 3.12+ gives (checked against RabbitMQ 3.10.8 with
//! `WARREN_TEST_EXTERNAL_URI`, whose texts lack the permission word; see
//! tests/common_tenancy). Setup objects are made by guest, who has full
//! permissions in the test's vhost.

mod common_lapin;
mod common_tenancy;
mod util;

use common_lapin::*;
use common_tenancy::*;
use lapin::{options::*, types::FieldTable, BasicProperties, Channel, Connection, ExchangeKind};
use std::time::Duration;
use util::*;

/// One case: a broker, a vhost with a user, guest's setup channel.
struct Env {
    _b: TestBroker,
    t: Tenancy,
    u: String,
    v: String,
    _admin: Connection,
    a: Channel,
}

impl Env {
    async fn new(tag: &str, c: &str, w: &str, r: &str) -> Env {
        let b = start_broker(2);
        let t = Tenancy::for_broker(&b);
        let (u, v) = t.user_in_vhost(tag, c, w, r);
        let admin = connect(&t.uri("guest", "guest", &v)).await;
        let a = channel(&admin).await;
        Env {
            _b: b,
            t,
            u,
            v,
            _admin: admin,
            a,
        }
    }

    /// A connection and channel of the user.
    async fn user(&self) -> (Connection, Channel) {
        let c = connect(&self.t.uri(&self.u, "pw", &self.v)).await;
        let ch = channel(&c).await;
        (c, ch)
    }

    fn refused(&self, perm: &str, kind: &str, name: &str) -> String {
        refused(perm, kind, name, &self.v, &self.u)
    }

    /// Asserts the 403 (either RabbitMQ text form in external mode).
    fn check(&self, got: (u16, String), expected: &str, what: &str) {
        assert_refused(got, expected, self.t.is_external(), what);
    }

    async fn declare_x(&self, x: &str, kind: ExchangeKind) {
        within(
            self.a
                .exchange_declare(x, kind, Default::default(), FieldTable::default()),
        )
        .await
        .expect("exchange.declare (setup)");
    }
}

/// The broker close of a failed operation.
fn err_of<T: std::fmt::Debug>(r: Result<T, lapin::Error>) -> (u16, String) {
    match r {
        Ok(v) => panic!("expected a channel close, got Ok({v:?})"),
        Err(e) => code_text(&e),
    }
}

/// Publishes (no confirm) and returns the channel.close it provokes.
async fn publish_refusal(ch: &Channel, x: &str, rk: &str) -> (u16, String) {
    let mut errs = watch_channel(ch);
    let _ =
        within(ch.basic_publish(x, rk, Default::default(), b"m", BasicProperties::default())).await;
    next_err(&mut errs).await
}

/// Publishes on a confirm channel; panics unless acked.
async fn publish_acked(ch: &Channel, x: &str, rk: &str) {
    let c = within(ch.basic_publish(x, rk, Default::default(), b"m", BasicProperties::default()))
        .await
        .expect("basic.publish");
    let conf = within(c).await.expect("confirm");
    assert!(conf.is_ack(), "publish to {x:?}/{rk:?} not acked: {conf:?}");
}

fn args(pairs: &[(&str, &str)]) -> FieldTable {
    let v: Vec<_> = pairs.iter().map(|(k, x)| (*k, s(x))).collect();
    table(&v)
}

macro_rules! case {
    ($name:ident, $body:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            deadline(60, $body).await
        }
    };
}

// ---------------------------------------------------------------- queues

case!(queue_declare_needs_configure_on_the_queue, async {
    let e = Env::new("qdecl", "^x", ".*", ".*").await;
    let (c, ch) = e.user().await;
    let r = within(ch.queue_declare("q1", Default::default(), FieldTable::default())).await;
    e.check(
        err_of(r),
        &e.refused("configure", "queue", "q1"),
        "queue.declare",
    );
    assert_connection_usable_without_declare(&c).await;
});

case!(server_named_queue_is_checked_by_its_generated_name, async {
    let e = Env::new("qgen", "^$", ".*", ".*").await;
    let (_c, ch) = e.user().await;
    let r = within(ch.queue_declare("", Default::default(), FieldTable::default())).await;
    let (code, text) = err_of(r);
    let prefix = if e.t.is_external() && !text.contains("configure access") {
        "ACCESS_REFUSED - access to queue 'amq.gen-"
    } else {
        "ACCESS_REFUSED - configure access to queue 'amq.gen-"
    };
    let suffix = format!("' in vhost '{}' refused for user '{}'", e.v, e.u);
    assert!(
        code == 403 && text.starts_with(prefix) && text.ends_with(&suffix),
        "server-named declare: got {code} {text:?}"
    );
    // configure on ^amq\.gen- allows it
    e.t.set_permissions(&e.u, &e.v, r"^amq\.gen-", ".*", ".*");
    let (_c2, ch2) = e.user().await;
    let q = within(ch2.queue_declare("", Default::default(), FieldTable::default()))
        .await
        .expect("server-named declare with configure ^amq\\.gen-");
    assert!(q.name().as_str().starts_with("amq.gen-"));
});

case!(queue_delete_needs_configure, async {
    let e = Env::new("qdel", "^x", ".*", ".*").await;
    declare(&e.a, "q1").await;
    let (_c, ch) = e.user().await;
    let r = within(ch.queue_delete("q1", Default::default())).await;
    e.check(
        err_of(r),
        &e.refused("configure", "queue", "q1"),
        "queue.delete",
    );
});

case!(queue_purge_needs_read, async {
    let e = Env::new("qpurge", ".*", ".*", "^x").await;
    declare(&e.a, "q1").await;
    let (_c, ch) = e.user().await;
    let r = within(ch.queue_purge("q1", Default::default())).await;
    e.check(err_of(r), &e.refused("read", "queue", "q1"), "queue.purge");
});

// ---------------------------------------------------------------- exchanges

case!(exchange_declare_needs_configure, async {
    let e = Env::new("xdecl", "^q", ".*", ".*").await;
    let (_c, ch) = e.user().await;
    let r = within(ch.exchange_declare(
        "x1",
        ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    e.check(
        err_of(r),
        &e.refused("configure", "exchange", "x1"),
        "exchange.declare",
    );
});

case!(exchange_delete_needs_configure, async {
    let e = Env::new("xdel", "^q", ".*", ".*").await;
    e.declare_x("x2", ExchangeKind::Direct).await;
    let (_c, ch) = e.user().await;
    let r = within(ch.exchange_delete("x2", Default::default())).await;
    e.check(
        err_of(r),
        &e.refused("configure", "exchange", "x2"),
        "exchange.delete",
    );
});

case!(passive_declares_are_not_checked, async {
    let e = Env::new("passive", "^$", "^$", "^$").await;
    declare(&e.a, "q1").await;
    e.declare_x("x1", ExchangeKind::Direct).await;
    let (c, ch) = e.user().await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    within(ch.queue_declare("q1", passive, FieldTable::default()))
        .await
        .expect("passive queue.declare without configure");
    let xpassive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    within(ch.exchange_declare("x1", ExchangeKind::Direct, xpassive, FieldTable::default()))
        .await
        .expect("passive exchange.declare without configure");
    // a missing queue is 404, not 403
    let r = within(ch.queue_declare("nope", passive, FieldTable::default())).await;
    assert_eq!(
        err_of(r),
        (
            404,
            format!("NOT_FOUND - no queue 'nope' in vhost '{}'", e.v)
        )
    );
    assert_connection_usable_without_declare(&c).await;
});

/// The user may declare nothing here: a fresh channel opens and closes.
async fn assert_connection_usable_without_declare(c: &Connection) {
    assert!(c.status().connected());
    let ch = channel(c).await;
    within(ch.close(200, "OK")).await.expect("channel.close");
}

// ---------------------------------------------------------------- bindings

async fn q1_x1(e: &Env) {
    declare(&e.a, "q1").await;
    e.declare_x("x1", ExchangeKind::Direct).await;
}

case!(queue_bind_needs_write_on_the_queue, async {
    let e = Env::new("qbw", ".*", "^x", ".*").await;
    q1_x1(&e).await;
    let (_c, ch) = e.user().await;
    let r = try_bind(&ch, "q1", "x1", "k", FieldTable::default()).await;
    e.check(err_of(r), &e.refused("write", "queue", "q1"), "queue.bind");
});

case!(queue_bind_needs_read_on_the_exchange, async {
    let e = Env::new("qbr", ".*", ".*", "^q").await;
    q1_x1(&e).await;
    let (_c, ch) = e.user().await;
    let r = try_bind(&ch, "q1", "x1", "k", FieldTable::default()).await;
    e.check(
        err_of(r),
        &e.refused("read", "exchange", "x1"),
        "queue.bind",
    );
});

case!(queue_unbind_needs_write_on_the_queue, async {
    let e = Env::new("qubw", ".*", "^x", ".*").await;
    q1_x1(&e).await;
    bind(&e.a, "q1", "x1", "k").await;
    let (_c, ch) = e.user().await;
    let r = within(ch.queue_unbind("q1", "x1", "k", FieldTable::default())).await;
    e.check(
        err_of(r),
        &e.refused("write", "queue", "q1"),
        "queue.unbind",
    );
});

case!(queue_unbind_needs_read_on_the_exchange, async {
    let e = Env::new("qubr", ".*", ".*", "^q").await;
    q1_x1(&e).await;
    bind(&e.a, "q1", "x1", "k").await;
    let (_c, ch) = e.user().await;
    let r = within(ch.queue_unbind("q1", "x1", "k", FieldTable::default())).await;
    e.check(
        err_of(r),
        &e.refused("read", "exchange", "x1"),
        "queue.unbind",
    );
});

async fn x1_x2(e: &Env) {
    e.declare_x("x1", ExchangeKind::Direct).await;
    e.declare_x("x2", ExchangeKind::Direct).await;
}

case!(exchange_bind_needs_write_on_the_destination, async {
    let e = Env::new("xbw", ".*", "^x1$", ".*").await;
    x1_x2(&e).await;
    let (_c, ch) = e.user().await;
    let r =
        within(ch.exchange_bind("x2", "x1", "k", Default::default(), FieldTable::default())).await;
    e.check(
        err_of(r),
        &e.refused("write", "exchange", "x2"),
        "exchange.bind",
    );
});

case!(exchange_bind_needs_read_on_the_source, async {
    let e = Env::new("xbr", ".*", ".*", "^x2$").await;
    x1_x2(&e).await;
    let (_c, ch) = e.user().await;
    let r =
        within(ch.exchange_bind("x2", "x1", "k", Default::default(), FieldTable::default())).await;
    e.check(
        err_of(r),
        &e.refused("read", "exchange", "x1"),
        "exchange.bind",
    );
});

case!(exchange_unbind_needs_write_on_the_destination, async {
    let e = Env::new("xubw", ".*", "^x1$", ".*").await;
    x1_x2(&e).await;
    within(e.a.exchange_bind("x2", "x1", "k", Default::default(), FieldTable::default()))
        .await
        .expect("exchange.bind (setup)");
    let (_c, ch) = e.user().await;
    let r = within(ch.exchange_unbind("x2", "x1", "k", Default::default(), FieldTable::default()))
        .await;
    e.check(
        err_of(r),
        &e.refused("write", "exchange", "x2"),
        "exchange.unbind",
    );
});

case!(exchange_unbind_needs_read_on_the_source, async {
    let e = Env::new("xubr", ".*", ".*", "^x2$").await;
    x1_x2(&e).await;
    within(e.a.exchange_bind("x2", "x1", "k", Default::default(), FieldTable::default()))
        .await
        .expect("exchange.bind (setup)");
    let (_c, ch) = e.user().await;
    let r = within(ch.exchange_unbind("x2", "x1", "k", Default::default(), FieldTable::default()))
        .await;
    e.check(
        err_of(r),
        &e.refused("read", "exchange", "x1"),
        "exchange.unbind",
    );
});

// ---------------------------------------------------------------- publish, consume, get

case!(publish_needs_write_on_the_exchange, async {
    let e = Env::new("pubw", ".*", "^q", ".*").await;
    q1_x1(&e).await;
    let (c, ch) = e.user().await;
    let got = publish_refusal(&ch, "x1", "q1").await;
    e.check(got, &e.refused("write", "exchange", "x1"), "basic.publish");
    assert_connection_usable(&c).await;
});

case!(
    publish_to_the_default_exchange_is_checked_as_amq_default,
    async {
        let e = Env::new("pubdef", ".*", "^q", ".*").await;
        declare(&e.a, "q1").await;
        let (_c, ch) = e.user().await;
        let got = publish_refusal(&ch, "", "q1").await;
        e.check(
            got,
            &e.refused("write", "exchange", "amq.default"),
            "publish to ''",
        );
        // ^$ does not allow it either: the name checked is amq.default
        e.t.set_permissions(&e.u, &e.v, ".*", "^$", ".*");
        let (_c, ch) = e.user().await;
        let got = publish_refusal(&ch, "", "q1").await;
        e.check(
            got,
            &e.refused("write", "exchange", "amq.default"),
            "publish to '' with ^$",
        );
        // ^amq\.default$ allows it
        e.t.set_permissions(&e.u, &e.v, ".*", r"^amq\.default$", ".*");
        let (c, _) = e.user().await;
        let ch = confirm_channel(&c).await;
        publish_acked(&ch, "", "q1").await;
    }
);

case!(consume_needs_read, async {
    let e = Env::new("cons", ".*", ".*", "^x").await;
    declare(&e.a, "q1").await;
    let (_c, ch) = e.user().await;
    let r = within(ch.basic_consume("q1", "", Default::default(), FieldTable::default())).await;
    e.check(
        err_of(r),
        &e.refused("read", "queue", "q1"),
        "basic.consume",
    );
});

case!(get_needs_read, async {
    let e = Env::new("get", ".*", ".*", "^x").await;
    declare(&e.a, "q1").await;
    let (_c, ch) = e.user().await;
    let r = within(ch.basic_get("q1", Default::default())).await;
    e.check(err_of(r), &e.refused("read", "queue", "q1"), "basic.get");
});

// ---------------------------------------------------------------- DLX and AE

case!(dead_letter_exchange_needs_write_on_the_dlx, async {
    let e = Env::new("dlxw", ".*", "^q", ".*").await;
    e.declare_x("dlx", ExchangeKind::Fanout).await;
    let (_c, ch) = e.user().await;
    let a = args(&[("x-dead-letter-exchange", "dlx")]);
    let r = within(ch.queue_declare("qd", Default::default(), a)).await;
    e.check(
        err_of(r),
        &e.refused("write", "exchange", "dlx"),
        "declare with DLX",
    );
});

case!(dead_letter_exchange_needs_read_on_the_queue, async {
    let e = Env::new("dlxr", ".*", ".*", "^d").await;
    e.declare_x("dlx", ExchangeKind::Fanout).await;
    let (_c, ch) = e.user().await;
    let a = args(&[("x-dead-letter-exchange", "dlx")]);
    let r = within(ch.queue_declare("qd", Default::default(), a)).await;
    e.check(
        err_of(r),
        &e.refused("read", "queue", "qd"),
        "declare with DLX",
    );
});

case!(
    dead_letter_exchange_needs_no_configure_or_read_on_the_dlx,
    async {
        let e = Env::new("dlxok", "^q", ".*", "^q").await;
        e.declare_x("dlx", ExchangeKind::Fanout).await;
        let (_c, ch) = e.user().await;
        let a = args(&[("x-dead-letter-exchange", "dlx")]);
        within(ch.queue_declare("qd", Default::default(), a))
            .await
            .expect("configure/read on the DLX are not checked");
    }
);

case!(alternate_exchange_needs_write_on_the_ae, async {
    let e = Env::new("aew", ".*", "^x", ".*").await;
    e.declare_x("ae", ExchangeKind::Fanout).await;
    let (_c, ch) = e.user().await;
    let a = args(&[("alternate-exchange", "ae")]);
    let r = within(ch.exchange_declare("xa", ExchangeKind::Direct, Default::default(), a)).await;
    e.check(
        err_of(r),
        &e.refused("write", "exchange", "ae"),
        "declare with AE",
    );
});

case!(
    alternate_exchange_needs_read_on_the_declared_exchange,
    async {
        let e = Env::new("aer", ".*", ".*", "^a").await;
        e.declare_x("ae", ExchangeKind::Fanout).await;
        let (_c, ch) = e.user().await;
        let a = args(&[("alternate-exchange", "ae")]);
        let r =
            within(ch.exchange_declare("xa", ExchangeKind::Direct, Default::default(), a)).await;
        e.check(
            err_of(r),
            &e.refused("read", "exchange", "xa"),
            "declare with AE",
        );
    }
);

// ---------------------------------------------------------------- topic permissions

case!(topic_publish_outside_the_write_pattern_is_refused, async {
    let e = Env::new("tpw", ".*", ".*", ".*").await;
    e.t.set_topic_permissions(&e.u, &e.v, "amq.topic", r"^a\.", r"^b\.");
    let (c, _) = e.user().await;
    let ch = confirm_channel(&c).await;
    publish_acked(&ch, "amq.topic", "a.1").await;
    let got = publish_refusal(&ch, "amq.topic", "x.y").await;
    let want = topic_refused("write", "x.y", "amq.topic", &e.v, &e.u);
    e.check(got, &want, "topic publish");
});

case!(topic_bind_outside_the_read_pattern_is_refused, async {
    let e = Env::new("tpr", ".*", ".*", ".*").await;
    e.t.set_topic_permissions(&e.u, &e.v, "amq.topic", r"^a\.", r"^b\.");
    declare(&e.a, "q1").await;
    let (_c, ch) = e.user().await;
    try_bind(&ch, "q1", "amq.topic", "b.1", FieldTable::default())
        .await
        .expect("bind inside the read pattern");
    let r = try_bind(&ch, "q1", "amq.topic", "z", FieldTable::default()).await;
    let want = topic_refused("read", "z", "amq.topic", &e.v, &e.u);
    e.check(err_of(r), &want, "topic bind");
});

case!(topic_pattern_expands_username, async {
    let e = Env::new("tpuser", ".*", ".*", ".*").await;
    e.t.set_topic_permissions(&e.u, &e.v, "amq.topic", r"^{username}\.", ".*");
    let (c, _) = e.user().await;
    let ch = confirm_channel(&c).await;
    publish_acked(&ch, "amq.topic", &format!("{}.1", e.u)).await;
    let got = publish_refusal(&ch, "amq.topic", "other.1").await;
    let want = topic_refused("write", "other.1", "amq.topic", &e.v, &e.u);
    e.check(got, &want, "{username} topic publish");
});

case!(a_direct_exchange_is_not_topic_checked, async {
    let e = Env::new("tpdirect", ".*", ".*", ".*").await;
    q1_x1(&e).await;
    e.t.set_topic_permissions(&e.u, &e.v, "x1", "^a", "^b");
    let (c, ch) = e.user().await;
    try_bind(&ch, "q1", "x1", "z", FieldTable::default())
        .await
        .expect("bind on a direct exchange with a topic permission");
    let ch = confirm_channel(&c).await;
    publish_acked(&ch, "x1", "x.y").await;
});

// ---------------------------------------------------------------- live changes

/// Publishes on `ch` (confirm mode) until the channel is closed, within `limit`;
/// returns the close.
async fn refused_within(ch: &Channel, x: &str, limit: Duration) -> (u16, String) {
    let mut errs = watch_channel(ch);
    let start = std::time::Instant::now();
    loop {
        if let Ok(e) = errs.try_recv() {
            return code_text(&e);
        }
        assert!(
            start.elapsed() < limit,
            "the permission change did not reach the open channel within {limit:?}"
        );
        if let Ok(c) = ch
            .basic_publish(x, "k", Default::default(), b"m", BasicProperties::default())
            .await
        {
            let _ = tokio::time::timeout(Duration::from_millis(100), c).await;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn live_change(tag: &str, change: impl FnOnce(&Env)) {
    let e = Env::new(tag, ".*", ".*", ".*").await;
    if e.t.is_external() {
        // RabbitMQ caches a channel's last successful checks until the channel
        // hibernates (oracle §5): the change reaches it after 1-10 s, not
        // deterministically. Only warren promises the next tick.
        eprintln!("skipped against an external broker: permission cache");
        return;
    }
    q1_x1(&e).await;
    let (c, _) = e.user().await;
    let ch = confirm_channel(&c).await;
    publish_acked(&ch, "x1", "k").await;
    change(&e);
    let got = refused_within(&ch, "x1", Duration::from_secs(1)).await;
    e.check(
        got,
        &e.refused("write", "exchange", "x1"),
        "publish after the change",
    );
}

case!(
    clear_permissions_reaches_an_open_channel_within_a_second,
    async {
        live_change("live-clear", |e| e.t.clear_permissions(&e.u, &e.v)).await;
    }
);

case!(
    set_permissions_reaches_an_open_channel_within_a_second,
    async {
        live_change("live-set", |e| {
            e.t.set_permissions(&e.u, &e.v, ".*", "^$", ".*")
        })
        .await;
    }
);

case!(
    a_refusal_on_one_channel_leaves_other_connections_alone,
    async {
        let e = Env::new("isolate", ".*", "^q", ".*").await;
        declare(&e.a, "q1").await;
        e.declare_x("x1", ExchangeKind::Direct).await;
        bind(&e.a, "q1", "x1", "k").await;
        let (c1, ch1) = e.user().await;
        let (_c2, ch2) = e.user().await;
        let mut consumer =
            within(ch2.basic_consume("q1", "", Default::default(), FieldTable::default()))
                .await
                .expect("consume");
        let got = publish_refusal(&ch1, "x1", "k").await;
        e.check(got, &e.refused("write", "exchange", "x1"), "publish");
        // the other connection still consumes what guest publishes
        publish(&e.a, "x1", "k", b"after").await;
        let d = recv_one(&mut consumer, TIMEOUT)
            .await
            .expect("delivery on the other connection");
        assert_eq!(d.data, b"after");
        // and the refused connection itself still opens channels
        assert!(c1.status().connected());
        let ch = channel(&c1).await;
        within(ch.queue_declare(
            "q1",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await
        .expect("passive declare on a new channel");
    }
);
