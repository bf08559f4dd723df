//! Slow and stuck consumers (issue 14, part 4), with raw sockets:
//!
//! - a consumer that never reads its socket stops getting deliveries at its
//!   connection's output limit (`OUTPUT_HIGH_WATER`); what it does not get
//!   stays in the queue (paged beyond the in-memory limit, as usual), the
//!   broker's memory stays bounded, and another consumer of the same queue
//!   is served at full speed;
//! - a publisher far faster than its queue's (slowly acking) consumer
//!   leaves the broker's memory bounded without a memory alarm: the queue
//!   keeps at most `--queue-max-in-memory(-bytes)` in memory and pages the
//!   rest to disk.
//!
//! The broker is in-process, so memory is the test process's resident set
//! (`/proc/self/status`); the tests run one at a time (`serial`).

mod common_lapin;
mod common_raw;
mod util;
use common_raw::*;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const MIB: u64 = 1024 * 1024;
/// Message body size: one body frame at frame_max 131072.
const BODY: usize = 64 * 1024;

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Samples the resident set every 20 ms until dropped; `peak` is the most seen.
struct RssWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    t: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start() -> RssWatch {
        let peak = Arc::new(AtomicU64::new(rss()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            peak,
            stop,
            t: Some(t),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed).max(rss())
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.t.take() {
            let _ = t.join();
        }
    }
}

fn start(shards: usize) -> warren::BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut config = warren::Config::for_tests(shards);
    config.heartbeat = 0;
    warren::start(config).expect("broker starts")
}

fn client(port: u16) -> Raw {
    let mut r = Raw::connect(port);
    r.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    r.handshake(131072, 0);
    r.open_channel(1);
    r
}

/// basic.consume on channel 1 (acks required); returns the consumer tag.
fn consume(r: &mut Raw, q: &str) -> String {
    r.send_method(1, 60, 20, &queue_args(q, &[0, 0, 0, 0, 0, 0]));
    let a = r.expect_method(1, 60, 21);
    Cur(&a).shortstr()
}

/// queue.declare passive: (ready messages, consumers).
fn counts(r: &mut Raw, q: &str) -> (u32, u32) {
    r.send_method(1, 50, 10, &queue_args(q, &[0x01, 0, 0, 0, 0]));
    let a = r.expect_method(1, 50, 11);
    let mut c = Cur(&a);
    c.shortstr();
    (c.u32(), c.u32())
}

/// Publishes `n` messages of `BODY` bytes to `q` in confirm mode from a
/// writer thread and waits for every confirm; returns the time it took.
fn publish_confirmed(port: u16, q: &str, n: u64) -> Duration {
    let mut p = client(port);
    p.send_method(1, 85, 10, &[0]); // confirm.select
    p.expect_method(1, 85, 11);
    let frames = publish_frames(1, "", q, &vec![b'x'; BODY], 131072);
    let mut w = p.s.try_clone().unwrap();
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        for _ in 0..n {
            w.write_all(&frames).unwrap();
        }
    });
    let mut acked = 0;
    while acked < n {
        let a = p.expect_method(1, 60, 80); // basic.ack
        let tag = u64::from_be_bytes(a[..8].try_into().unwrap());
        acked = acked.max(tag);
    }
    writer.join().unwrap();
    t0.elapsed()
}

/// Reads one delivery (method, header, body); returns its delivery tag.
fn read_delivery(r: &mut Raw) -> u64 {
    let a = r.expect_method(1, 60, 60);
    let mut c = Cur(&a);
    c.shortstr();
    let tag = u64::from_be_bytes(c.take(8).try_into().unwrap());
    let (ty, _, _) = r.read_frame();
    assert_eq!(ty, 2, "content header");
    let (ty, _, body) = r.read_frame();
    assert_eq!((ty, body.len()), (3, BODY), "one body frame");
    tag
}

fn ack(r: &mut Raw, tag: u64) {
    r.send_method(1, 60, 80, &[&tag.to_be_bytes()[..], &[0]].concat());
}

/// A consumer that stops reading its socket: deliveries to it stop at its
/// connection's output limit, the other 200 MiB stay in the queue (paged),
/// memory stays bounded, and a second consumer of the same queue is served
/// at full speed meanwhile.
#[test]
fn stuck_consumer_is_bounded_and_others_are_served() {
    let _g = serial();
    const N: u64 = 3200; // 200 MiB
    let b = start(1);
    let port = b.port();
    let mut admin = client(port);
    admin.send_method(1, 50, 10, &queue_args("stuck", &[0, 0, 0, 0, 0]));
    admin.expect_method(1, 50, 11);
    let mut stuck = client(port);
    consume(&mut stuck, "stuck");
    // From here on `stuck` is never read.

    let rss0 = rss();
    let watch = RssWatch::start();
    let took = publish_confirmed(port, "stuck", N);
    let (ready, consumers) = counts(&mut admin, "stuck");
    let peak = watch.peak() - rss0;
    eprintln!(
        "stuck consumer: {N} x 64 KiB published in {took:?}; {ready} ready in the queue; RSS peak +{} MiB",
        peak / MIB
    );
    assert_eq!(consumers, 1);
    // The stuck consumer got its output limit (4 MiB) plus what the kernel
    // buffers, a few hundred messages at most; the rest wait in the queue.
    assert!(
        ready as u64 >= N - 400,
        "only {ready} of {N} messages left in the queue"
    );
    assert!(
        peak < 160 * MIB,
        "RSS grew {} MiB for a queue of 200 MiB with a stuck consumer",
        peak / MIB
    );

    // A second consumer of the same queue is served, fast.
    let mut fast = client(port);
    fast.send_method(1, 60, 10, &qos_args(0, 100));
    fast.expect_method(1, 60, 11);
    consume(&mut fast, "stuck");
    let t0 = Instant::now();
    let want = 1000;
    for _ in 0..want {
        let tag = read_delivery(&mut fast);
        ack(&mut fast, tag);
    }
    let t = t0.elapsed();
    let rate = want as f64 / t.as_secs_f64();
    eprintln!(
        "second consumer: {want} messages in {t:?} ({rate:.0} msg/s, {:.0} MiB/s); RSS peak +{} MiB",
        rate * BODY as f64 / MIB as f64,
        (watch.peak() - rss0) / MIB
    );
    assert!(t < Duration::from_secs(20), "{want} messages took {t:?}");
    let (ready_after, _) = counts(&mut admin, "stuck");
    assert!(
        ready_after as u64 <= ready as u64 - want,
        "the queue shrank by what was consumed"
    );
    drop(stuck);
    b.shutdown();
}

/// A publisher much faster than its queue's consumer (prefetch 10, acking
/// one message every 2 ms), all on one shard: the queue keeps its
/// in-memory limit and pages the rest, so the broker's memory stays bounded
/// and no memory alarm (set 256 MiB above the starting RSS) is needed to
/// hold the publisher back.
#[test]
fn fast_publisher_slow_consumer_is_bounded_without_alarm() {
    fast_publisher_slow_consumer(1, 0, 0);
}

/// The same with the publisher on shard 0 and the queue and its consumer on
/// shard 1: the publishes cross a ring (whose congestion would block the
/// publisher, `Outbox::remote_congested`).
#[test]
fn fast_publisher_on_another_shard_is_bounded_without_alarm() {
    fast_publisher_slow_consumer(2, 0, 1);
}

fn fast_publisher_slow_consumer(shards: usize, publisher_shard: usize, queue_shard: usize) {
    let _g = serial();
    const N: u64 = 1600; // 100 MiB
    let b = start(shards);
    let port = b.shard_ports()[queue_shard];
    let mut admin = client(port);
    admin.send_method(1, 50, 10, &queue_args("slow", &[0, 0, 0, 0, 0]));
    admin.expect_method(1, 50, 11);

    // The memory alarm (shard 0 compares RSS with it every 200 ms) 256 MiB
    // above where we start: the peak staying below it means it never fired.
    let rss0 = rss();
    let alarm_limit = rss0 + 256 * MIB;
    b.alarms().set_memory_limit(alarm_limit);
    let watch = RssWatch::start();

    let mut slow = client(port);
    slow.send_method(1, 60, 10, &qos_args(0, 10));
    slow.expect_method(1, 60, 11);
    consume(&mut slow, "slow");
    let done = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let (d2, g2) = (done.clone(), got.clone());
    let consumer = std::thread::spawn(move || {
        while !d2.load(Ordering::Relaxed) {
            let tag = read_delivery(&mut slow);
            std::thread::sleep(Duration::from_millis(2));
            ack(&mut slow, tag);
            g2.fetch_add(1, Ordering::Relaxed);
        }
        slow
    });

    let took = publish_confirmed(b.shard_ports()[publisher_shard], "slow", N);
    let consumed = got.load(Ordering::Relaxed);
    let (ready, _) = counts(&mut admin, "slow");
    let peak = watch.peak() - rss0;
    eprintln!(
        "fast publisher (shard {publisher_shard}, queue on shard {queue_shard}): {N} x 64 KiB confirmed in {took:?} while the consumer took {consumed}; {ready} ready; RSS peak +{} MiB; memory alarm: {}",
        peak / MIB,
        b.alarms().memory_alarm()
    );
    assert!(!b.alarms().memory_alarm(), "the memory alarm was raised");
    assert!(
        rss0 + peak < alarm_limit,
        "RSS reached the memory alarm's limit"
    );
    assert!(peak < 160 * MIB, "RSS grew {} MiB", peak / MIB);
    assert!(
        ready as u64 > N / 2,
        "the consumer is slow: most messages wait"
    );
    done.store(true, Ordering::Relaxed);
    // The consumer is still served: it sees its next delivery.
    let slow = consumer.join().unwrap();
    drop(slow);
    b.shutdown();
}

/// Messages a queue keeps in memory are slices of the read buffers they
/// arrived in. A queue that keeps small messages published between large
/// ones that go elsewhere (here: unroutable, dropped) must not keep every
/// read buffer alive: memory stays near what the queue holds.
#[test]
fn small_kept_messages_do_not_pin_read_buffers() {
    let _g = serial();
    const N: usize = 4000;
    let b = start(1);
    let port = b.port();
    let mut p = client(port);
    p.send_method(1, 50, 10, &queue_args("keep", &[0, 0, 0, 0, 0]));
    p.expect_method(1, 50, 11);
    let rss0 = rss();
    let small = publish_frames(1, "", "keep", b"tiny", 131072);
    let big = publish_frames(1, "", "no-such-queue", &vec![b'x'; 60 * 1024], 131072);
    let mut w = p.s.try_clone().unwrap();
    for _ in 0..N {
        w.write_all(&small).unwrap();
        w.write_all(&big).unwrap();
    }
    // Everything was handled once the queue counts all the small ones.
    let t0 = Instant::now();
    loop {
        let (ready, _) = counts(&mut p, "keep");
        if ready as usize == N {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{ready} of {N} arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let grown = rss().saturating_sub(rss0);
    eprintln!(
        "{N} small messages kept between {N} x 60 KiB dropped ones: RSS +{} MiB",
        grown / MIB
    );
    assert!(grown < 64 * MIB, "RSS grew {} MiB", grown / MIB);
    b.shutdown();
}
