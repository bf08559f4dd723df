//! Durable definitions survive a restart, graceful or SIGKILL: durable
//! exchanges, durable non-exclusive queues and bindings between durable ends
//! come back (with their flags and arguments); transient exchanges and queues,
//! exclusive queues and bindings with a transient end do not. Deletes persist,
//! and a damaged `definitions.log` tail is cut with a warning at boot.
//!
//! These tests restart a broker on the same data directory, so they always run
//! in-process (or against the `warren` binary), never against an external broker.

mod common_durable;
mod common_lapin;

use common_durable::*;
use common_lapin::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    Channel, Connection, ExchangeKind,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Res<T> = Result<T, lapin::Error>;

const DURABLE_Q: QueueDeclareOptions = QueueDeclareOptions {
    passive: false,
    durable: true,
    exclusive: false,
    auto_delete: false,
    nowait: false,
};
const TRANSIENT_Q: QueueDeclareOptions = QueueDeclareOptions {
    durable: false,
    ..DURABLE_Q
};
const PASSIVE_Q: QueueDeclareOptions = QueueDeclareOptions {
    passive: true,
    ..TRANSIENT_Q
};

fn xopts(durable: bool, auto_delete: bool, internal: bool) -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable,
        auto_delete,
        internal,
        ..Default::default()
    }
}

async fn xdecl(ch: &Channel, x: &str, kind: ExchangeKind, o: ExchangeDeclareOptions) -> Res<()> {
    within(ch.exchange_declare(x, kind, o, FieldTable::default())).await
}

async fn qdecl(ch: &Channel, q: &str, o: QueueDeclareOptions, args: FieldTable) -> Res<()> {
    within(ch.queue_declare(q, o, args)).await.map(|_| ())
}

async fn xbind(ch: &Channel, dest: &str, src: &str, key: &str) {
    within(ch.exchange_bind(dest, src, key, Default::default(), FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("exchange.bind {src} -> {dest}: {e}"));
}

/// Whether queue `q` exists (passive declare on a throwaway channel).
async fn queue_exists(conn: &Connection, q: &str) -> bool {
    let ch = channel(conn).await;
    match qdecl(&ch, q, PASSIVE_Q, FieldTable::default()).await {
        Ok(()) => true,
        Err(e) => {
            assert_amqp_error(&e, 404, &no_queue(q));
            false
        }
    }
}

/// Whether exchange `x` exists (passive declare on a throwaway channel).
async fn exchange_exists(conn: &Connection, x: &str) -> bool {
    let ch = channel(conn).await;
    let o = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match xdecl(&ch, x, ExchangeKind::Direct, o).await {
        Ok(()) => true,
        Err(e) => {
            assert_amqp_error(&e, 404, &no_exchange(x));
            false
        }
    }
}

async fn assert_queues(conn: &Connection, present: &[&str], absent: &[&str]) {
    for q in present {
        assert!(queue_exists(conn, q).await, "queue {q} did not survive");
    }
    for q in absent {
        assert!(!queue_exists(conn, q).await, "queue {q} survived");
    }
}

async fn assert_exchanges(conn: &Connection, present: &[&str], absent: &[&str]) {
    for x in present {
        assert!(
            exchange_exists(conn, x).await,
            "exchange {x} did not survive"
        );
    }
    for x in absent {
        assert!(!exchange_exists(conn, x).await, "exchange {x} survived");
    }
}

/// Publishes (mandatory, confirmed) through `x` and gets the message from `q`.
async fn routes_to(ch: &Channel, x: &str, key: &str, q: &str, headers: Option<FieldTable>) {
    let body = unique("body");
    let ret = publish_h(ch, x, key, &body, headers).await;
    assert!(ret.is_none(), "{x:?}/{key:?} was unroutable");
    let m = get(ch, q, true).await;
    let m = m.unwrap_or_else(|| panic!("nothing in {q} from {x:?}/{key:?}"));
    assert_eq!(String::from_utf8_lossy(&m.delivery.data), body);
}

fn queue_args() -> FieldTable {
    table(&[
        ("x-message-ttl", AMQPValue::LongInt(60_000)),
        ("x-max-length", AMQPValue::LongInt(10)),
    ])
}

const KINDS: [(&str, ExchangeKind); 4] = [
    ("direct", ExchangeKind::Direct),
    ("fanout", ExchangeKind::Fanout),
    ("topic", ExchangeKind::Topic),
    ("headers", ExchangeKind::Headers),
];

#[tokio::test(flavor = "multi_thread")]
async fn graceful_restart_keeps_exactly_the_durable_definitions() {
    deadline(30, async {
        let dir = DataDir::new("graceful");
        let b = start_in(&dir.0, 2);
        // One connection per shard, so durable queues live on both.
        let c0 = connect(&uri(b.shard_ports()[0])).await;
        let c1 = connect(&uri(b.shard_ports()[1])).await;
        let (ch0, ch1) = (channel(&c0).await, channel(&c1).await);
        for (name, kind) in KINDS {
            let d = format!("dx-{name}");
            let t = format!("tx-{name}");
            xdecl(&ch0, &d, kind.clone(), xopts(true, false, false)).await.unwrap();
            xdecl(&ch0, &t, kind, xopts(false, false, false)).await.unwrap();
        }
        let auto_internal = xopts(true, true, true);
        xdecl(&ch0, "dx-auto-int", ExchangeKind::Topic, auto_internal).await.unwrap();
        qdecl(&ch0, "dq", DURABLE_Q, queue_args()).await.unwrap();
        qdecl(&ch1, "dq1", DURABLE_Q, FieldTable::default()).await.unwrap();
        let auto = QueueDeclareOptions {
            auto_delete: true,
            ..DURABLE_Q
        };
        qdecl(&ch1, "dq-auto", auto, FieldTable::default()).await.unwrap();
        qdecl(&ch0, "tq", TRANSIENT_Q, FieldTable::default()).await.unwrap();
        let excl = QueueDeclareOptions {
            exclusive: true,
            ..DURABLE_Q
        };
        qdecl(&ch1, "xq", excl, FieldTable::default()).await.unwrap();
        // Durable bindings.
        bind(&ch0, "dq", "dx-direct", "k").await;
        bind(&ch0, "dq1", "dx-topic", "a.*").await;
        let h = table(&[("x-match", s("all")), ("h", s("1"))]);
        bind_args(&ch0, "dq1", "dx-headers", "", h).await;
        xbind(&ch0, "dx-topic", "dx-fanout", "").await;
        bind(&ch0, "dq", "amq.direct", "amqk").await;
        bind(&ch0, "dq-auto", "dx-auto-int", "#").await;
        // Bindings with a transient (or exclusive) end.
        bind(&ch0, "tq", "dx-direct", "k").await;
        bind(&ch0, "dq", "tx-direct", "k").await;
        xbind(&ch0, "tx-fanout", "dx-direct", "e2e").await;
        bind(&ch1, "xq", "dx-direct", "x").await;
        // The exclusive queue's connection is still open at shutdown.
        b.shutdown();
        drop((ch0, ch1, c0, c1));

        let b = start_in(&dir.0, 2);
        let conn = connect(&uri(b.port())).await;
        let durable_x: Vec<String> = KINDS.iter().map(|k| format!("dx-{}", k.0)).collect();
        let transient_x: Vec<String> = KINDS.iter().map(|k| format!("tx-{}", k.0)).collect();
        let mut present: Vec<&str> = durable_x.iter().map(|s| s.as_str()).collect();
        present.push("dx-auto-int");
        let absent: Vec<&str> = transient_x.iter().map(|s| s.as_str()).collect();
        assert_exchanges(&conn, &present, &absent).await;
        assert_queues(&conn, &["dq", "dq1", "dq-auto"], &["tq", "xq"]).await;

        // The durable bindings route.
        let ch = confirm_channel(&conn).await;
        routes_to(&ch, "dx-direct", "k", "dq", None).await;
        routes_to(&ch, "dx-fanout", "a.b", "dq1", None).await;
        let h = table(&[("h", s("1"))]);
        routes_to(&ch, "dx-headers", "", "dq1", Some(h)).await;
        routes_to(&ch, "amq.direct", "amqk", "dq", None).await;
        routes_to(&ch, "", "dq1", "dq1", None).await;
        // The others are gone: a new namesake of the transient queue and
        // exchange is not bound.
        qdecl(&ch, "tq", TRANSIENT_Q, FieldTable::default()).await.unwrap();
        routes_to(&ch, "dx-direct", "k", "dq", None).await;
        assert!(get(&ch, "tq", true).await.is_none(), "tq bound again");
        xdecl(&ch, "tx-fanout", ExchangeKind::Fanout, xopts(false, false, false))
            .await
            .unwrap();
        bind(&ch, "tq", "tx-fanout", "").await;
        unroutable(&ch, "dx-direct", "e2e", "via a transient e2e binding").await;
        unroutable(&ch, "dx-direct", "x", "to the exclusive queue").await;

        // Flags and arguments came back: the same declaration is accepted, another refused.
        qdecl(&ch, "dq", DURABLE_Q, queue_args()).await.unwrap();
        qdecl(&ch, "dq-auto", auto, FieldTable::default()).await.unwrap();
        xdecl(&ch, "dx-auto-int", ExchangeKind::Topic, auto_internal).await.unwrap();
        let other = table(&[
            ("x-message-ttl", AMQPValue::LongInt(60_000)),
            ("x-max-length", AMQPValue::LongInt(11)),
        ]);
        let r = qdecl(&ch, "dq", DURABLE_Q, other).await;
        let text = "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'dq' in vhost '/': received '11' but current is '10'";
        assert_channel_error(&conn, r, 406, text).await;
        let ch = channel(&conn).await;
        let r = qdecl(&ch, "dq1", TRANSIENT_Q, FieldTable::default()).await;
        let text = "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'dq1' in vhost '/': received 'false' but current is 'true'";
        assert_channel_error(&conn, r, 406, text).await;
        let ch = channel(&conn).await;
        let r = xdecl(&ch, "dx-topic", ExchangeKind::Fanout, xopts(true, false, false)).await;
        let text = "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'dx-topic' in vhost '/': received 'fanout' but current is 'topic'";
        assert_channel_error(&conn, r, 406, text).await;
        b.shutdown();
        drop(conn);

        // Started with another shard count (if the data directory does not
        // pin it, the queue homed on shard 1 moves to shard 0): all still there.
        let b = start_in(&dir.0, 1);
        let conn = connect(&uri(b.port())).await;
        let ch = confirm_channel(&conn).await;
        routes_to(&ch, "dx-topic", "a.c", "dq1", None).await;
        routes_to(&ch, "dx-direct", "k", "dq", None).await;
        assert_queues(&conn, &["dq-auto"], &["tq"]).await;
        b.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_persist() {
    deadline(30, async {
        let dir = DataDir::new("deletes");
        let b = start_in(&dir.0, 2);
        let conn = connect(&uri(b.port())).await;
        let ch = channel(&conn).await;
        for q in ["q-gone", "q-kept"] {
            qdecl(&ch, q, DURABLE_Q, FieldTable::default())
                .await
                .unwrap();
        }
        for x in ["x-kept", "x-gone"] {
            xdecl(&ch, x, ExchangeKind::Direct, xopts(true, false, false))
                .await
                .unwrap();
        }
        xdecl(
            &ch,
            "x-auto",
            ExchangeKind::Direct,
            xopts(true, true, false),
        )
        .await
        .unwrap();
        bind(&ch, "q-gone", "x-kept", "a").await;
        bind(&ch, "q-kept", "x-kept", "b").await;
        bind(&ch, "q-kept", "x-kept", "c").await;
        bind(&ch, "q-kept", "x-gone", "d").await;
        xbind(&ch, "x-gone", "x-kept", "e").await;
        bind(&ch, "q-kept", "x-auto", "f").await;
        within(ch.queue_delete("q-gone", Default::default()))
            .await
            .unwrap();
        xdel(&ch, "x-gone").await;
        unbind(&ch, "q-kept", "x-kept", "b").await;
        // The last binding of an auto-delete exchange goes, and so does it.
        unbind(&ch, "q-kept", "x-auto", "f").await;
        b.shutdown();
        drop(conn);

        let b = start_in(&dir.0, 2);
        let conn = connect(&uri(b.port())).await;
        assert_queues(&conn, &["q-kept"], &["q-gone"]).await;
        assert_exchanges(&conn, &["x-kept"], &["x-gone", "x-auto"]).await;
        let ch = confirm_channel(&conn).await;
        routes_to(&ch, "x-kept", "c", "q-kept", None).await;
        unroutable(&ch, "x-kept", "b", "unbound").await;
        unroutable(&ch, "x-kept", "a", "to a deleted queue").await;
        unroutable(&ch, "x-kept", "e", "to a deleted exchange").await;
        // Deleting a recovered queue and exchange persists too.
        within(ch.queue_delete("q-kept", Default::default()))
            .await
            .unwrap();
        xdel(&ch, "x-kept").await;
        b.shutdown();
        drop(conn);

        let b = start_in(&dir.0, 2);
        let conn = connect(&uri(b.port())).await;
        assert_queues(&conn, &[], &["q-kept"]).await;
        assert_exchanges(&conn, &[], &["x-kept"]).await;
        b.shutdown();
    })
    .await;
}

/// The `warren` binary on `dir`, its port, and its log lines so far.
struct Proc {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn start(dir: &Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            // Never the machine's /etc/warren/warren.toml.
            .env("WARREN_CONFIG", "/dev/null")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--shards",
                "2",
                "--no-pin",
                "--http-port",
                "0",
                "--prometheus-port",
                "0",
            ])
            .args(["--log-level", "info", "--data-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn warren");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        // Keeps reading (a full pipe would stall the broker's logging).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.split("listening on port ").nth(1) {
                    let port = p.split_whitespace().next().and_then(|p| p.parse().ok());
                    let _ = tx.send(port);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
        let port = port.unwrap_or_else(|| panic!("no port in the log: {:?}", log.lock()));
        Proc { child, port, log }
    }

    fn uri(&self) -> String {
        uri(self.port)
    }

    /// SIGKILL, and wait for the process to be gone.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    fn log_has(&self, words: &[&str]) -> bool {
        let log = self.log.lock().unwrap();
        log.iter().any(|l| words.iter().all(|w| l.contains(w)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn declare_set(uri: &str, tag: &str) {
    let conn = connect(uri).await;
    let ch = channel(&conn).await;
    let q = format!("dq-{tag}");
    let x = format!("dx-{tag}");
    qdecl(&ch, &q, DURABLE_Q, FieldTable::default())
        .await
        .unwrap();
    xdecl(&ch, &x, ExchangeKind::Topic, xopts(true, false, false))
        .await
        .unwrap();
    bind(&ch, &q, &x, "#").await;
    let t = format!("tq-{tag}");
    qdecl(&ch, &t, TRANSIENT_Q, FieldTable::default())
        .await
        .unwrap();
    // No close: the broker dies with the connection open.
    drop(conn);
}

async fn check_set(uri: &str, tag: &str) {
    let conn = connect(uri).await;
    let q = format!("dq-{tag}");
    let t = format!("tq-{tag}");
    assert_queues(&conn, &[&q], &[&t]).await;
    let ch = confirm_channel(&conn).await;
    routes_to(&ch, &format!("dx-{tag}"), "any.key", &q, None).await;
    let _ = within(conn.close(200, "bye")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_keeps_durable_definitions() {
    deadline(30, async {
        let dir = DataDir::new("sigkill");
        let p = Proc::start(&dir.0);
        declare_set(&p.uri(), "a").await;
        p.kill();
        let p = Proc::start(&dir.0);
        check_set(&p.uri(), "a").await;
        // And once more, with changes made after the first recovery.
        declare_set(&p.uri(), "b").await;
        p.kill();
        let p = Proc::start(&dir.0);
        check_set(&p.uri(), "a").await;
        check_set(&p.uri(), "b").await;
        let warned = p.log_has(&["WARN", "definitions"]);
        assert!(!warned, "warnings: {:?}", p.log.lock());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_tail_is_cut_with_a_warning() {
    deadline(30, async {
        let dir = DataDir::new("garbage");
        let p = Proc::start(&dir.0);
        declare_set(&p.uri(), "a").await;
        p.kill();
        let good = std::fs::metadata(dir.log()).unwrap().len();
        // A torn append: a plausible header and half a body.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.log())
            .unwrap();
        std::io::Write::write_all(&mut f, &[0, 0, 0, 40, 1, 2, 3, 4, 3, 0, 0]).unwrap();
        drop(f);
        let p = Proc::start(&dir.0);
        assert!(
            p.log_has(&["WARN", "definitions.log", "torn record"]),
            "no warning: {:?}",
            p.log.lock()
        );
        assert_eq!(std::fs::metadata(dir.log()).unwrap().len(), good, "cut");
        check_set(&p.uri(), "a").await;
        // Appends after the cut are read back.
        declare_set(&p.uri(), "b").await;
        p.kill();
        let p = Proc::start(&dir.0);
        check_set(&p.uri(), "a").await;
        check_set(&p.uri(), "b").await;
    })
    .await;
}

/// Boot time with many durable queues (not a test; run by hand):
/// `WARREN_BOOT_QUEUES=100000 cargo test --release --test durable_definitions -- --ignored --nocapture boot_time`.
/// Writes the log directly in the broker's format (declaring 100k durable
/// queues over AMQP costs one fdatasync each), then times a restart until a
/// passive declare of the last queue succeeds and a publish reaches it.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn boot_time_with_many_durable_queues() {
    use warren::store::defs_log::{BindingRecord, DefsLog, DestKind, Record};
    let n: u64 = std::env::var("WARREN_BOOT_QUEUES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = DataDir::new("boot");
    let mut buf = Vec::new();
    Record::ExchangeDeclare {
        vhost: "/".into(),
        name: "boot-x".into(),
        kind: "direct".into(),
        durable: true,
        auto_delete: false,
        internal: false,
        args: Default::default(),
    }
    .encode(&mut buf);
    for i in 1..=n {
        let name = format!("boot-q-{i}");
        Record::QueueDeclare {
            vhost: "/".into(),
            name: name.clone(),
            id: i,
            home: (i % 2) as u16,
            auto_delete: false,
            args: Default::default(),
        }
        .encode(&mut buf);
        Record::BindingAdd(BindingRecord {
            vhost: "/".into(),
            source: "boot-x".into(),
            dest_kind: DestKind::Queue,
            dest: name.clone(),
            key: name,
            args: Default::default(),
        })
        .encode(&mut buf);
    }
    {
        let (mut log, _) = DefsLog::open(&dir.0).unwrap();
        log.append(&buf).unwrap();
    }
    let last = format!("boot-q-{n}");
    let t0 = Instant::now();
    let b = start_in(&dir.0, 2);
    let conn = connect(&uri(b.port())).await;
    assert!(queue_exists(&conn, &last).await);
    let booted = t0.elapsed();
    let ch = confirm_channel(&conn).await;
    routes_to(&ch, "boot-x", &last, &last, None).await;
    let routed = t0.elapsed();
    println!(
        "{n} durable queues + {n} bindings ({} KiB of log): passive declare of the last after {:?}, routed publish after {:?}",
        buf.len() / 1024,
        booted,
        routed
    );
    // For scale: what a durable declare costs over AMQP (one fdatasync each).
    let t1 = Instant::now();
    for i in 0..1000 {
        let q = format!("boot-new-{i}");
        qdecl(&ch, &q, DURABLE_Q, FieldTable::default())
            .await
            .unwrap();
    }
    println!(
        "1000 durable queue.declare one after the other: {:?}",
        t1.elapsed()
    );
    drop(conn);
    b.shutdown();
}
