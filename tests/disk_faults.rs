//! Storage faults (lapin): a message store or definitions log that cannot
//! write must answer every client, never hang one.
//!
//! - `full_disk_nacks_blocks_and_recovers` fills a real, size-limited tmpfs
//!   with the disk alarm's free-space limit off (`--disk-free-limit 0`, the
//!   state a quota or a fast-filling disk reaches between two checks): the
//!   publisher gets nacks or `connection.blocked` within a second, consumers
//!   keep draining, and once the file system grows (`mount -o remount`) the
//!   alarm clears and publishing goes on. After a restart every confirmed
//!   message is there. Skipped, with the reason, where the test may not
//!   mount (not root, no tmpfs).
//! - The others inject faults (`warren::store::fault`): a failed
//!   `fdatasync`, which a tmpfs never gives, and a definitions-log write that
//!   fails under a durable queue.declare.
//!
//! Injected faults apply to the directory of one test's broker only, so the
//! tests of this file may run in parallel.

mod common_durable;
mod common_lapin;
mod util;
use common_durable::*;
use common_lapin::*;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use warren::store::fault::{self, Op};
use warren::{BrokerHandle, Config};

/// A broker on `dir` with the free-space alarm off and fsync on every batch.
fn start_faulty(dir: &Path) -> BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut c = Config::for_tests_in(dir.to_path_buf(), 2);
    c.disk_free_limit = 0;
    c.segment_size = 1 << 20;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match warren::start(c.clone()) {
            Ok(b) => return b,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("broker starts: {e:?}"),
        }
    }
}

/// A tmpfs of `mib` MiB mounted for one test, unmounted at the end.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(tag: &str, mib: u64) -> Result<Tmpfs, String> {
        let dir = std::env::temp_dir().join(format!("warren-tmpfs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir))
    }

    /// Grows the file system: space is freed, as an operator would.
    fn resize(&self, mib: u64) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.0)
            .status()
            .expect("mount -o remount");
        assert!(st.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn persistent(id: u64) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(id.to_string().into())
}

async fn declare_durable(ch: &Channel, q: &str) {
    within(ch.queue_declare(
        q,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("queue.declare");
}

/// What became of the messages a publisher sent.
#[derive(Default)]
struct Outcome {
    acked: BTreeSet<u64>,
    nacked: BTreeSet<u64>,
}

/// Publishes `n` persistent messages from `first` and waits up to `wait`
/// for their confirms. Returns how many were answered (acked or nacked, in
/// order) and records them; the rest are still in flight.
async fn publish_batch(
    ch: &Channel,
    q: &str,
    first: u64,
    n: u64,
    body: &[u8],
    wait: Duration,
    out: &mut Outcome,
) -> (u64, Vec<(u64, lapin::publisher_confirm::PublisherConfirm)>) {
    let mut pending = Vec::new();
    for id in first..first + n {
        // lapin holds publishes back while the connection is blocked.
        let sent = tokio::time::timeout(
            wait,
            ch.basic_publish("", q, BasicPublishOptions::default(), body, persistent(id)),
        )
        .await;
        match sent {
            Ok(c) => pending.push((id, c.expect("basic.publish"))),
            Err(_) => break,
        }
    }
    let (answered, rest) = await_confirms(pending, wait, out).await;
    (answered, rest)
}

/// Waits up to `wait` for the confirms, in order; returns how many came and
/// the ones still in flight.
async fn await_confirms(
    pending: Vec<(u64, lapin::publisher_confirm::PublisherConfirm)>,
    wait: Duration,
    out: &mut Outcome,
) -> (u64, Vec<(u64, lapin::publisher_confirm::PublisherConfirm)>) {
    let until = tokio::time::Instant::now() + wait;
    let mut answered = 0;
    let mut it = pending.into_iter();
    while let Some((id, c)) = it.next() {
        let mut c = c;
        match tokio::time::timeout_at(until, &mut c).await {
            Ok(Ok(conf)) => {
                answered += 1;
                if conf.is_ack() {
                    out.acked.insert(id);
                } else {
                    out.nacked.insert(id);
                }
            }
            Ok(Err(e)) => panic!("confirm of {id} failed: {e}"),
            Err(_) => {
                let mut rest = vec![(id, c)];
                rest.extend(it);
                return (answered, rest);
            }
        }
    }
    (answered, Vec::new())
}

/// Drains `q` with basic.get and returns the message ids.
async fn drain_ids(ch: &Channel, q: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    while let Some(m) = within(ch.basic_get(q, BasicGetOptions { no_ack: true }))
        .await
        .expect("basic.get")
    {
        let id = m
            .delivery
            .properties
            .message_id()
            .as_ref()
            .expect("message_id")
            .as_str()
            .parse()
            .expect("numeric id");
        ids.push(id);
    }
    ids
}

/// Starts a broker on `dir` again and drains `q`: the message ids it has.
async fn ids_after_restart(dir: &Path, q: &str) -> Vec<u64> {
    let b = start_faulty(dir);
    let conn = connect(&uri(b.port())).await;
    let ch = channel(&conn).await;
    let ids = drain_ids(&ch, q).await;
    let _ = conn.close(200, "bye").await;
    b.shutdown();
    ids
}

fn assert_all_there(out: &Outcome, ids: &[u64]) {
    let there: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(there.len(), ids.len(), "no duplicates after the restart");
    let missing: Vec<u64> = out.acked.difference(&there).copied().collect();
    assert!(
        missing.is_empty(),
        "{} confirmed messages lost, first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_nacks_blocks_and_recovers() {
    let fs = match Tmpfs::mount("full", 6) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED full_disk_nacks_blocks_and_recovers: {why} (needs root and tmpfs)");
            return;
        }
    };
    let dir = fs.0.join("data");
    deadline(120, async {
        let b = start_faulty(&dir);
        let publisher = connect(&uri(b.port())).await;
        let pch = confirm_channel(&publisher).await;
        let q = "filled";
        declare_durable(&pch, q).await;
        let consumer_conn = connect(&uri(b.port())).await;
        let cch = channel(&consumer_conn).await;

        // Fill the disk: 4 KiB persistent messages, 50 at a time, until one
        // is nacked or the publisher is blocked.
        let body = vec![b'x'; 4096];
        let mut out = Outcome::default();
        let mut next = 0u64;
        let in_flight;
        let hit = loop {
            assert!(next < 20_000, "6 MiB never filled up");
            let (answered, rest) =
                publish_batch(&pch, q, next, 50, &body, Duration::from_secs(1), &mut out).await;
            next += 50;
            if !out.nacked.is_empty() {
                in_flight = rest;
                break "nack";
            }
            if answered < 50 {
                // Unanswered for a second: the publisher must be blocked.
                assert!(
                    publisher.status().blocked(),
                    "publishes {}.. neither confirmed, nacked nor blocked after 1 s",
                    next - 50 + answered
                );
                in_flight = rest;
                break "blocked";
            }
        };
        eprintln!(
            "disk full after {} confirmed messages: first answer {hit}; {} nacked so far",
            out.acked.len(),
            out.nacked.len()
        );
        assert!(out.acked.len() > 100, "some messages fit");
        let h = &b;
        eventually("the disk alarm is raised", async || h.alarms().disk_alarm()).await;
        eventually_within(
            Duration::from_secs(2),
            "connection.blocked reaches the publisher",
            async || {
                // The next publish is not read while blocked; it is sent so
                // that a publisher idle at the alarm learns of it too.
                if !publisher.status().blocked() {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(100),
                        pch.basic_publish("", q, Default::default(), b"", persistent(u64::MAX)),
                    )
                    .await;
                }
                publisher.status().blocked()
            },
        )
        .await;
        assert!(
            !consumer_conn.status().blocked(),
            "a consumer is not blocked"
        );

        // Consumers keep draining while the disk is full (their acks cannot
        // be written yet, but are kept).
        let mut consumer = within(cch.basic_consume(
            q,
            "drain",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect("basic.consume");
        for _ in 0..20 {
            let d = recv(&mut consumer).await;
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
        within(cch.basic_cancel("drain", BasicCancelOptions::default()))
            .await
            .expect("basic.cancel");
        assert!(h.alarms().disk_alarm(), "still full");

        // Space comes back: the alarm clears, the publisher is unblocked and
        // everything in flight is answered.
        fs.resize(64);
        eventually_within(
            Duration::from_secs(5),
            "the disk alarm clears",
            async || !h.alarms().disk_alarm(),
        )
        .await;
        eventually("connection.unblocked", async || {
            !publisher.status().blocked()
        })
        .await;
        let (_, rest) = await_confirms(in_flight, Duration::from_secs(10), &mut out).await;
        assert!(rest.is_empty(), "{} publishes never answered", rest.len());
        let before = out.acked.len();
        let (answered, _) =
            publish_batch(&pch, q, next, 100, &body, Duration::from_secs(10), &mut out).await;
        assert_eq!(answered, 100);
        assert_eq!(out.acked.len(), before + 100, "publishing works again");
        let consumed = 20;
        drop(consumer);
        let _ = publisher.close(200, "bye").await;
        let _ = consumer_conn.close(200, "bye").await;
        b.shutdown();

        // Restart: every confirmed message not consumed is there.
        let ids = ids_after_restart(&dir, q).await;
        let acked_back = ids.iter().filter(|i| out.acked.contains(i)).count();
        let nacked_back = ids.iter().filter(|i| out.nacked.contains(i)).count();
        eprintln!(
            "after the restart: {} messages ({} confirmed of {}, {} consumed before; {} of {} \
             nacked ones were written after all)",
            ids.len(),
            acked_back,
            out.acked.len(),
            consumed,
            nacked_back,
            out.nacked.len()
        );
        // The 20 consumed were acked by the consumer: gone or redelivered.
        let lost = out.acked.len() - acked_back;
        assert!(
            lost <= consumed,
            "{lost} confirmed messages missing after the restart (only {consumed} were consumed)"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fsync_nacks_in_flight_and_later_confirms_hold() {
    let data = DataDir::new("fsync-fault");
    deadline(90, async {
        let b = start_faulty(&data.0);
        let conn = connect(&uri(b.port())).await;
        let ch = confirm_channel(&conn).await;
        let q = "synced";
        declare_durable(&ch, q).await;
        let body = vec![b'y'; 512];
        let mut out = Outcome::default();
        let (n, _) = publish_batch(&ch, q, 0, 100, &body, Duration::from_secs(10), &mut out).await;
        assert_eq!((n, out.acked.len()), (100, 100));

        // The next fdatasync fails: what it covered is nacked, not acked.
        fault::inject(&data.0, Op::Sync, 1, libc::EIO);
        let (n, rest) =
            publish_batch(&ch, q, 100, 100, &body, Duration::from_secs(10), &mut out).await;
        assert!(
            n == 100 || conn.status().blocked(),
            "{} of 100 publishes answered and not blocked",
            n
        );
        assert!(!out.nacked.is_empty(), "the failed sync nacked something");
        let h = &b;
        eventually_within(
            Duration::from_secs(5),
            "the disk alarm clears",
            async || !h.alarms().disk_alarm(),
        )
        .await;
        let (_, rest) = await_confirms(rest, Duration::from_secs(10), &mut out).await;
        assert!(rest.is_empty(), "every publish answered");
        let (n, _) =
            publish_batch(&ch, q, 200, 100, &body, Duration::from_secs(10), &mut out).await;
        assert_eq!(n, 100);
        assert!(out.acked.contains(&299), "confirms go on after the fault");
        let _ = conn.close(200, "bye").await;
        b.shutdown();

        let ids = ids_after_restart(&data.0, q).await;
        eprintln!(
            "{} acked, {} nacked, {} back after the restart",
            out.acked.len(),
            out.nacked.len(),
            ids.len()
        );
        assert_all_there(&out, &ids);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_errors_nack_and_writes_resume() {
    let data = DataDir::new("write-fault");
    deadline(90, async {
        let b = start_faulty(&data.0);
        let conn = connect(&uri(b.port())).await;
        let ch = confirm_channel(&conn).await;
        let q = "written";
        declare_durable(&ch, q).await;
        let body = vec![b'z'; 256];
        let mut out = Outcome::default();
        // Three segment writes fail with EDQUOT (a quota), then the disk
        // takes writes again; the probe sees it.
        fault::inject(&data.0.join("msgs"), Op::Write, 3, libc::EDQUOT);
        let (n, rest) = publish_batch(&ch, q, 0, 50, &body, Duration::from_secs(2), &mut out).await;
        assert!(
            !out.nacked.is_empty() || conn.status().blocked(),
            "{n} answered, none nacked, not blocked"
        );
        let h = &b;
        eventually_within(
            Duration::from_secs(5),
            "the disk alarm clears",
            async || !h.alarms().disk_alarm(),
        )
        .await;
        let (_, rest) = await_confirms(rest, Duration::from_secs(10), &mut out).await;
        assert!(rest.is_empty(), "every publish answered");
        let (n, _) = publish_batch(&ch, q, 50, 50, &body, Duration::from_secs(10), &mut out).await;
        assert_eq!(n, 50);
        assert!(out.acked.contains(&99));
        let _ = conn.close(200, "bye").await;
        b.shutdown();

        let ids = ids_after_restart(&data.0, q).await;
        assert_all_there(&out, &ids);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declare_that_cannot_be_made_durable_fails_on_its_channel() {
    let data = DataDir::new("defs-fault");
    deadline(60, async {
        let b = start_faulty(&data.0);
        let conn = connect(&uri(b.port())).await;
        let ch = channel(&conn).await;
        // The definitions log (in the data dir itself) fails its next write.
        fault::inject(&data.0.join("definitions.log"), Op::Write, 1, libc::ENOSPC);
        let err = ch
            .queue_declare(
                "not-durable-yet",
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect_err("the declare fails");
        let (code, text) = code_text(&err);
        assert_eq!(code, 406, "{text}");
        assert!(
            text.starts_with("PRECONDITION_FAILED - the change cannot be made durable")
                && text.contains("No space left on device"),
            "{text}"
        );
        // A channel error: the connection goes on, and the queue does not
        // exist.
        let ch = channel(&conn).await;
        let err = ch
            .queue_declare(
                "not-durable-yet",
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect_err("no such queue");
        assert_eq!(code_text(&err).0, 404);
        // A transient declare does not need the disk.
        let ch = channel(&conn).await;
        within(ch.exchange_declare(
            "transient-x",
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect("a transient exchange");
        let h = &b;
        eventually_within(
            Duration::from_secs(5),
            "the disk alarm clears",
            async || !h.alarms().disk_alarm(),
        )
        .await;
        declare_durable(&ch, "durable-now").await;
        let _ = conn.close(200, "bye").await;
        b.shutdown();

        let b = start_faulty(&data.0);
        let conn = connect(&uri(b.port())).await;
        let ch = channel(&conn).await;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        within(ch.queue_declare("durable-now", passive, FieldTable::default()))
            .await
            .expect("the later declare survived");
        let err = ch
            .queue_declare("not-durable-yet", passive, FieldTable::default())
            .await
            .expect_err("the failed declare left nothing");
        assert_eq!(code_text(&err).0, 404);
        let _ = conn.close(200, "bye").await;
        b.shutdown();
    })
    .await;
}

/// Every message of stream `q`, from its first offset, by message id.
async fn stream_ids(ch: &Channel, q: &str) -> Vec<u64> {
    within(ch.basic_qos(1000, BasicQosOptions::default()))
        .await
        .expect("basic.qos");
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        lapin::types::AMQPValue::LongString("first".into()),
    );
    let mut c = within(ch.basic_consume(q, "", BasicConsumeOptions::default(), args))
        .await
        .expect("basic.consume");
    let mut ids = Vec::new();
    while let Some(d) = recv_one(&mut c, Duration::from_millis(500)).await {
        let id = d.properties.message_id().as_ref().expect("message_id");
        ids.push(id.as_str().parse().expect("numeric id"));
        within(d.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_write_errors_nack_and_writes_resume() {
    let data = DataDir::new("stream-write-fault");
    deadline(90, async {
        let b = start_faulty(&data.0);
        let conn = connect(&uri(b.port())).await;
        let ch = confirm_channel(&conn).await;
        let q = "stream-written";
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("stream".into()),
        );
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        within(ch.queue_declare(q, durable, args))
            .await
            .expect("queue.declare");
        let body = vec![b's'; 256];
        let mut out = Outcome::default();
        // Three chunk writes fail with EDQUOT: their messages are nacked,
        // never acked; then the stream takes writes again.
        fault::inject(&data.0.join("streams"), Op::Write, 3, libc::EDQUOT);
        let (_, rest) = publish_batch(&ch, q, 0, 50, &body, Duration::from_secs(2), &mut out).await;
        let h = &b;
        eventually_within(
            Duration::from_secs(5),
            "the disk alarm clears",
            async || !h.alarms().disk_alarm(),
        )
        .await;
        let (_, rest) = await_confirms(rest, Duration::from_secs(10), &mut out).await;
        assert!(rest.is_empty(), "every publish answered");
        assert!(!out.nacked.is_empty(), "the failed writes were nacked");
        let (n, _) = publish_batch(&ch, q, 50, 50, &body, Duration::from_secs(10), &mut out).await;
        assert_eq!(n, 50);
        assert!(out.acked.contains(&99));
        let _ = conn.close(200, "bye").await;
        b.shutdown();

        // After a restart the stream holds every acked message once, in
        // order, and none that was nacked (their chunk was never written).
        let b = start_faulty(&data.0);
        let conn = connect(&uri(b.port())).await;
        let ids = stream_ids(&channel(&conn).await, q).await;
        let _ = conn.close(200, "bye").await;
        b.shutdown();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "in order, once: {ids:?}"
        );
        assert_all_there(&out, &ids);
        assert!(ids.iter().all(|id| !out.nacked.contains(id)), "{ids:?}");
    })
    .await;
}
