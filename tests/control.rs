//! The control path (`shard::control`): work from a thread that is no shard
//! and no client connection (what the management API and metrics will do)
//! reaches every shard's state through its inbox, runs on the shard's thread,
//! and calls the same core operations as the AMQP 0-9-1 front end.

mod common_lapin;
use common_lapin::*;

use lapin::{options::*, types::FieldTable, BasicProperties};
use warren::core::error::CoreError;
use warren::core::ops::{self, Caller};
use warren::protocol::FieldTable as WFieldTable;

fn start(shards: usize) -> warren::BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    warren::start(warren::Config::for_tests(shards)).expect("broker starts")
}

fn shard_uri(h: &warren::BrokerHandle, shard: usize) -> String {
    format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        h.shard_ports()[shard]
    )
}

fn exchange(name: &str, kind: &str) -> ops::exchange::ExchangeSpec {
    ops::exchange::ExchangeSpec {
        name: name.to_string(),
        kind: kind.to_string(),
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: WFieldTable::new(),
    }
}

/// Each shard answers with its own state, idle shards included (the send
/// wakes their poll).
#[test]
fn control_reaches_every_shard_and_runs_on_it() {
    let h = start(2);
    let control = h.control();
    assert_eq!(control.shards(), 2);
    let ids = control.ask_all(|s| (s.ctx.id, std::thread::current().name().map(String::from)));
    assert_eq!(
        ids,
        vec![
            (0, Some("warren-shard-0".to_string())),
            (1, Some("warren-shard-1".to_string()))
        ]
    );
    assert_eq!(control.ask(1, |s| s.ctx.queues.len()), Some(0));
    assert_eq!(control.ask(7, |s| s.ctx.id), None, "no shard 7");
    h.shutdown();
    assert_eq!(
        control.ask(0, |s| s.ctx.id),
        None,
        "a stopped shard answers nothing"
    );
}

/// An exchange and a queue made through the control path are what a 0-9-1
/// client sees, and a refusal comes back as the core's neutral error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_operations_from_the_control_path() {
    deadline(60, async {
        let h = start(2);
        let control = h.control();
        let x = unique("ctl-x");
        let (x2, q) = (x.clone(), unique("ctl-q"));
        let declared = control
            .ask(0, move |s| {
                let access = s.ctx.defs.lock().admin_access("/").unwrap();
                let caller = Caller { conn_uid: 0, access: &access };
                ops::exchange::exchange_declare(&s.ctx.defs, caller, exchange(&x2, "fanout"))
            })
            .expect("shard 0 answers");
        assert_eq!(declared, Ok(()));
        let x2 = x.clone();
        let refused = control
            .ask(1, move |s| {
                let access = s.ctx.defs.lock().admin_access("/").unwrap();
                let caller = Caller { conn_uid: 0, access: &access };
                ops::exchange::exchange_declare(&s.ctx.defs, caller, exchange(&x2, "topic"))
            })
            .expect("shard 1 answers");
        assert_eq!(
            refused,
            Err(CoreError::PreconditionFailed(format!(
                "inequivalent arg 'type' for exchange '{}' in vhost '/': received 'topic' but current is 'fanout'",
                x
            )))
        );
        // A queue on shard 1, bound to the exchange, all without a client.
        let (x2, q2) = (x.clone(), q.clone());
        let (queue, bound) = control
            .ask(1, move |s| {
                let access = s.ctx.defs.lock().admin_access("/").unwrap();
                let caller = Caller { conn_uid: 0, access: &access };
                let spec = ops::queue::QueueSpec {
                    name: q2.clone(),
                    durable: false,
                    exclusive: false,
                    auto_delete: false,
                    arguments: WFieldTable::new(),
                };
                let queue = match ops::queue::queue_declare(&mut s.ctx, caller, spec) {
                    Ok(ops::queue::Declared::Created { queue, .. }) => queue,
                    Ok(ops::queue::Declared::Exists { .. }) => panic!("queue existed"),
                    Err(e) => panic!("declare refused: {}", e),
                };
                let b = ops::queue::queue_binding(
                    &mut s.ctx,
                    caller,
                    q2,
                    x2,
                    String::new(),
                    WFieldTable::new(),
                );
                let bound = b.and_then(|b| ops::queue::queue_bind(&mut s.ctx, b));
                (queue, bound)
            })
            .expect("shard 1 answers");
        assert_eq!(bound, Ok(()));
        assert_eq!(queue.shard, 1);

        // A client on shard 0 publishes to the exchange; the queue on shard 1
        // has the message, seen by the client and by the control path.
        let conn = connect(&shard_uri(&h, 0)).await;
        let ch = channel(&conn).await;
        within(ch.exchange_declare(
            &x,
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await
        .expect("the exchange exists for 0-9-1 clients");
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        let pc = within(ch.basic_publish(&x, "", BasicPublishOptions::default(), b"hi", BasicProperties::default()))
            .await
            .unwrap();
        assert!(within(pc).await.unwrap().is_ack());
        let count = control.ask(1, move |s| {
            s.ctx.queues.get(queue.slot as usize).map(|q| q.message_count())
        });
        assert_eq!(count, Some(Some(1)));
        let got = within(ch.basic_get(&q, BasicGetOptions { no_ack: true }))
            .await
            .unwrap()
            .expect("the message");
        assert_eq!(got.delivery.data, b"hi");
        conn.close(200, "bye").await.ok();
        h.shutdown();
    })
    .await
}
