//! `warren-loadgen fuzz`: the live fuzzer. `--connections` threads each open
//! connection after connection and send a mutated valid session
//! ([`fuzz_session`](crate::fuzz_session)): the bytes split into writes at
//! random points, whatever the broker answers read and discarded (read
//! timeout), the socket closed. Meanwhile a **canary** (a normal connection)
//! publishes with confirms to its own exclusive queue, consumes and acks
//! each message, and every second opens and closes one more connection.
//!
//! The run fails if the canary meets any error (a close, an I/O error, a
//! nack), a confirm or a delivery takes longer than `--max-confirm-ms`, a new
//! connection cannot be opened, or (with `--pid`) the broker's VmRSS grows
//! more than `--rss-limit-mb` over its value at the start. The same
//! `--seed` gives the same sessions (the timing, and so the broker's
//! answers, differ).
//!
//! Exit status: 0 if the canary was fine throughout, 1 otherwise, 2 on bad
//! arguments.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use warren::fuzz::mutate::Rng;
use warren::protocol::constants::FRAME_METHOD;
use warren::protocol::methods::*;
use warren::protocol::{write_body, write_content_header, write_method, Method};

use crate::client::{Conn, CHANNEL, CLOSE_TIMEOUT};
use crate::connections::vm_rss_kb;
use crate::fuzz_session::{mutate_session, record};
use crate::report::{self, group, JsonObject, Report};
use crate::uri::AmqpUri;
use crate::workers::Halt;
use crate::CommonArgs;

/// Flags of `fuzz`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Seconds to run.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Fuzzing connections at a time (one thread each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub connections: u64,
    /// Seed of the mutations (thread i uses seed + i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The broker's process id: fail if its VmRSS grows more than
    /// --rss-limit-mb over the start.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Allowed VmRSS growth of the broker (with --pid), MiB.
    #[arg(long, default_value_t = 512)]
    pub rss_limit_mb: u64,
    /// Longest a canary confirm or delivery may take, ms.
    #[arg(long, default_value_t = 2000)]
    pub max_confirm_ms: u64,
}

/// Counts of the fuzzing threads.
#[derive(Default)]
struct Counts {
    sessions: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    /// Sessions the broker closed before all was written.
    cut_short: AtomicU64,
    connect_failures: AtomicU64,
}

/// What the canary saw.
#[derive(Default)]
struct Canary {
    messages: AtomicU64,
    max_confirm_us: AtomicU64,
    reconnects: AtomicU64,
}

pub fn run(args: Args) -> i32 {
    let Some(uri) = args.common.validate(
        args.duration > 0.0 && !args.common.uri.starts_with("amqps"),
        "--duration must be > 0 (and the URI plain amqp://)",
    ) else {
        return 2;
    };
    let halt = Arc::new(Halt::default());
    let counts = Arc::new(Counts::default());
    let canary = Arc::new(Canary::default());
    let rss_start = args.pid.map(vm_rss_kb).transpose();
    let rss_start = match rss_start {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren-loadgen: --pid: {e}");
            return 2;
        }
    };
    let mut rss_max = rss_start;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let mut threads = Vec::new();
    {
        let (uri, halt, canary, max) = (
            uri.clone(),
            halt.clone(),
            canary.clone(),
            Duration::from_millis(args.max_confirm_ms),
        );
        threads.push(std::thread::spawn(move || {
            if let Err(e) = run_canary(&uri, &halt, &canary, max, deadline) {
                halt.fail(format!("canary: {e}"));
            }
        }));
    }
    for i in 0..args.connections {
        let (uri, halt, counts) = (uri.clone(), halt.clone(), counts.clone());
        let seed = args.seed.wrapping_add(i);
        threads.push(std::thread::spawn(move || {
            fuzz_loop(&uri, seed, &halt, &counts, deadline)
        }));
    }
    while Instant::now() < deadline && !halt.stopped() {
        std::thread::sleep(Duration::from_millis(200));
        if let (Some(pid), Some(start)) = (args.pid, rss_start) {
            match vm_rss_kb(pid) {
                Ok(kb) => {
                    rss_max = rss_max.max(Some(kb));
                    if kb > start + args.rss_limit_mb * 1024 {
                        halt.fail(format!(
                            "broker VmRSS grew from {start} KiB to {kb} KiB (limit +{} MiB)",
                            args.rss_limit_mb
                        ));
                    }
                }
                Err(e) => halt.fail(format!("broker gone? {e}")),
            }
        }
    }
    halt.stop();
    for t in threads {
        let _ = t.join();
    }
    // The broker must still serve a new client.
    match Conn::open(&uri, "warren-loadgen fuzz: after") {
        Ok(c) => c.close(CLOSE_TIMEOUT, |_, _| {}),
        Err(e) => halt.fail(format!("no new connection after the run: {e}")),
    }
    let summary = Summary {
        args: &args,
        uri: &uri,
        secs: started.elapsed().as_secs_f64(),
        sessions: counts.sessions.load(Ordering::Relaxed),
        frames: counts.frames.load(Ordering::Relaxed),
        bytes: counts.bytes.load(Ordering::Relaxed),
        cut_short: counts.cut_short.load(Ordering::Relaxed),
        connect_failures: counts.connect_failures.load(Ordering::Relaxed),
        canary_messages: canary.messages.load(Ordering::Relaxed),
        canary_max_ms: canary.max_confirm_us.load(Ordering::Relaxed) as f64 / 1000.0,
        canary_reconnects: canary.reconnects.load(Ordering::Relaxed),
        rss_start,
        rss_max,
        errors: halt.errors(),
    };
    report::finish(&summary, args.common.json)
}

/// One fuzzing thread: mutated sessions until the deadline.
fn fuzz_loop(uri: &AmqpUri, seed: u64, halt: &Halt, counts: &Counts, deadline: Instant) {
    let mut rng = Rng::new(seed);
    let addr = match uri.addr().to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => return halt.fail(format!("cannot resolve {}", uri.addr())),
    };
    while !halt.stopped() && Instant::now() < deadline {
        let mut session = record(&uri.user, &uri.password, &uri.vhost, rng.next_u64());
        mutate_session(&mut session, &mut rng);
        let tcp = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(t) => t,
            Err(_) => {
                counts.connect_failures.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let frames = session.frames.len() as u64;
        let bytes: Vec<u8> = session.frames.concat();
        let whole = send_session(tcp, &bytes, &mut rng);
        counts.sessions.fetch_add(1, Ordering::Relaxed);
        counts.frames.fetch_add(frames, Ordering::Relaxed);
        counts
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if !whole {
            counts.cut_short.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes `bytes` in a few pieces split at random points, draining the
/// broker's answers between them; then reads until the broker closes or
/// stays quiet. Returns whether everything was written.
fn send_session(mut tcp: TcpStream, bytes: &[u8], rng: &mut Rng) -> bool {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(20)));
    let mut cuts: Vec<usize> = (0..rng.below(4))
        .map(|_| rng.below(bytes.len() + 1))
        .collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut sink = [0u8; 16 * 1024];
    let mut at = 0;
    let mut whole = true;
    for cut in cuts {
        if tcp.write_all(&bytes[at..cut]).is_err() {
            whole = false;
            break;
        }
        at = cut;
        if rng.one_in(4) {
            std::thread::sleep(Duration::from_millis(rng.below(5) as u64));
        }
        if matches!(tcp.read(&mut sink), Ok(0)) {
            whole = at == bytes.len();
            break;
        }
    }
    // Drain: until EOF, an error, 40 ms of silence or 1 s in all.
    let end = Instant::now() + Duration::from_secs(1);
    let mut quiet = 0;
    while Instant::now() < end && quiet < 2 {
        match tcp.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => quiet = 0,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => quiet += 1,
            Err(_) => break,
        }
    }
    whole
}

/// The canary: publish with confirms, consume, ack, one message at a time,
/// each round trip within `max`; a fresh connection every second.
fn run_canary(
    uri: &AmqpUri,
    halt: &Halt,
    canary: &Canary,
    max: Duration,
    deadline: Instant,
) -> Result<(), String> {
    let mut c = Conn::open(uri, "warren-loadgen fuzz: canary")?;
    c.call(CHANNEL, ConfirmSelect::default().into())?;
    let queue = match c.call(
        CHANNEL,
        QueueDeclare {
            exclusive: true,
            ..Default::default()
        }
        .into(),
    )? {
        Method::QueueDeclareOk(ok) => ok.queue,
        m => return Err(format!("expected queue.declare-ok, got {}", m.name())),
    };
    c.call(
        CHANNEL,
        BasicConsume {
            queue: queue.clone(),
            consumer_tag: Bytes::from_static(b"canary"),
            ..Default::default()
        }
        .into(),
    )?;
    let mut publish = Vec::new();
    write_method(
        &mut publish,
        CHANNEL,
        &BasicPublish {
            routing_key: queue,
            ..Default::default()
        }
        .into(),
    );
    write_content_header(&mut publish, CHANNEL, 60, 6, &[0, 0]);
    write_body(&mut publish, CHANNEL, b"canary", 0);
    let mut tag = 0u64;
    let mut last_reconnect = Instant::now();
    while !halt.stopped() && Instant::now() < deadline {
        tag += 1;
        let t0 = Instant::now();
        c.write_all(&publish)?;
        let (mut confirmed, mut delivered) = (false, false);
        while !(confirmed && delivered) {
            if t0.elapsed() > max {
                return Err(format!(
                    "message {tag}: no confirm{} after {} ms",
                    if confirmed { "ed delivery" } else { "" },
                    max.as_millis()
                ));
            }
            while let Some(f) = c.next_frame()? {
                if f.kind != FRAME_METHOD {
                    continue;
                }
                match c.other_method(&f)? {
                    Method::BasicAck(a) => confirmed |= a.delivery_tag >= tag,
                    Method::BasicNack(n) => return Err(format!("nack of {}", n.delivery_tag)),
                    Method::BasicDeliver(d) => {
                        delivered = true;
                        c.send(
                            CHANNEL,
                            &BasicAck {
                                delivery_tag: d.delivery_tag,
                                multiple: false,
                            }
                            .into(),
                        )?;
                    }
                    m => return Err(format!("unexpected {}", m.name())),
                }
            }
            if !(confirmed && delivered) {
                c.fill()?;
            }
        }
        let us = t0.elapsed().as_micros() as u64;
        canary.max_confirm_us.fetch_max(us, Ordering::Relaxed);
        canary.messages.fetch_add(1, Ordering::Relaxed);
        if last_reconnect.elapsed() > Duration::from_secs(1) {
            last_reconnect = Instant::now();
            let t = Instant::now();
            let other = Conn::open(uri, "warren-loadgen fuzz: canary probe")
                .map_err(|e| format!("new connection refused: {e}"))?;
            other.close(CLOSE_TIMEOUT, |_, _| {});
            if t.elapsed() > max * 2 {
                return Err(format!("a new connection took {:?}", t.elapsed()));
            }
            canary.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        // A few messages per second are enough to notice a stall.
        std::thread::sleep(Duration::from_millis(5));
    }
    c.close(CLOSE_TIMEOUT, |_, _| {});
    Ok(())
}

/// Everything the final report shows.
struct Summary<'a> {
    args: &'a Args,
    uri: &'a AmqpUri,
    secs: f64,
    sessions: u64,
    frames: u64,
    bytes: u64,
    cut_short: u64,
    connect_failures: u64,
    canary_messages: u64,
    canary_max_ms: f64,
    canary_reconnects: u64,
    rss_start: Option<u64>,
    rss_max: Option<u64>,
    errors: Vec<String>,
}

impl Report for Summary<'_> {
    fn ok(&self) -> bool {
        self.errors.is_empty() && self.canary_messages > 0
    }

    fn errors(&self) -> &[String] {
        &self.errors
    }

    fn table(&self) -> String {
        let mut rows = vec![
            ("broker", self.uri.to_string()),
            (
                "run",
                format!(
                    "{:.1} s, {} connections, seed {}",
                    self.secs, self.args.connections, self.args.seed
                ),
            ),
            (
                "sent",
                format!(
                    "{} sessions, {} frames, {} bytes ({} cut short by the broker)",
                    group(self.sessions),
                    group(self.frames),
                    group(self.bytes),
                    group(self.cut_short)
                ),
            ),
            ("connect failures", group(self.connect_failures)),
            (
                "canary",
                format!(
                    "{} messages confirmed and delivered, max {:.1} ms; {} new connections",
                    group(self.canary_messages),
                    self.canary_max_ms,
                    group(self.canary_reconnects)
                ),
            ),
        ];
        if let (Some(a), Some(b)) = (self.rss_start, self.rss_max) {
            rows.push(("broker VmRSS", format!("{a} KiB at start, max {b} KiB")));
        }
        rows.push(("result", if self.ok() { "ok" } else { "FAILED" }.into()));
        report::table("fuzz", rows)
    }

    fn json(&self) -> String {
        let mut o = JsonObject::new();
        o.str("scenario", "fuzz")
            .str("uri", &self.uri.to_string())
            .num("duration_s", self.secs, 3)
            .int("connections", self.args.connections as i64)
            .int("seed", self.args.seed as i64)
            .int("sessions", self.sessions as i64)
            .int("frames", self.frames as i64)
            .int("bytes", self.bytes as i64)
            .int("cut_short", self.cut_short as i64)
            .int("connect_failures", self.connect_failures as i64)
            .int("canary_messages", self.canary_messages as i64)
            .num("canary_max_ms", self.canary_max_ms, 1)
            .int("canary_reconnects", self.canary_reconnects as i64)
            .opt_int("rss_start_kb", self.rss_start.map(|v| v as i64))
            .opt_int("rss_max_kb", self.rss_max.map(|v| v as i64));
        self.json_tail(&mut o)
    }
}
