//! `warren-loadgen churn`: how fast the broker creates and destroys things.
//! Each phase runs for `--duration` seconds (or `--count` operations), one
//! after the other, with `--threads` threads each doing one operation at a
//! time (so a rate is `threads / round-trip time`):
//!
//! - `connection`: a new TCP connection with the full handshake (through
//!   [`Conn::open`]: protocol header, start/start-ok, tune/tune-ok, open,
//!   plus channel.open of channel 1, as any client does before working),
//!   then connection.close / close-ok;
//! - `channel`: on one connection per thread, channel.open + channel.close
//!   of channel 2;
//! - `queue`: queue.declare (server-named, or `loadgen-churn-<pid>-<t>-<i>`
//!   with `--named-queues`; not durable, not exclusive, not auto-delete) +
//!   queue.delete;
//! - `binding`: queue.bind + queue.unbind of one queue per thread
//!   (`loadgen-churn-<pid>-<t>`, deleted at the end) to `amq.direct`, each
//!   operation with a new routing key.
//!
//! One operation is the pair (open + close, declare + delete, bind +
//! unbind); rates are pairs per second. A phase that fails stops at its
//! first error (recorded) and the next phase runs.
//!
//! Connection churn leaves a TIME_WAIT socket per connection (tens of
//! thousands in a few seconds); Linux reuses them for new outgoing
//! connections on loopback (`net.ipv4.tcp_tw_reuse` = 2, the default), but
//! against a remote broker a long phase can run out of local ports (then
//! connect fails with "Cannot assign requested address").
//!
//! Exit status: 0 if every phase completed operations without error, 1
//! otherwise, 2 on bad arguments.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use warren::protocol::constants;
use warren::protocol::methods::*;
use warren::protocol::{FieldTable, Method};

use crate::client::{unexpected, ClientError, Conn, CHANNEL, CLOSE_TIMEOUT};
use crate::report::{self, group, JsonObject, Report};
use crate::uri::AmqpUri;
use crate::workers::Halt;
use crate::CommonArgs;

/// A churn phase.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connection open (full handshake) + close.
    Connection,
    /// channel.open + channel.close on one connection.
    Channel,
    /// queue.declare + queue.delete.
    Queue,
    /// queue.bind + queue.unbind (amq.direct, distinct keys).
    Binding,
}

impl Phase {
    const ALL: [Phase; 4] = [
        Phase::Connection,
        Phase::Channel,
        Phase::Queue,
        Phase::Binding,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Connection => "connection",
            Phase::Channel => "channel",
            Phase::Queue => "queue",
            Phase::Binding => "binding",
        }
    }

    fn op(self) -> &'static str {
        match self {
            Phase::Connection => "open+close",
            Phase::Channel => "open+close",
            Phase::Queue => "declare+delete",
            Phase::Binding => "bind+unbind",
        }
    }
}

/// Flags of `churn`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Phases to run, in this order (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "connection,channel,queue,binding"
    )]
    pub phases: Vec<Phase>,
    /// Seconds per phase (ignored with --count).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Operations per phase instead of a duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Threads per phase, each with its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: u64,
    /// Queue phase: name the queues instead of letting the broker name them.
    #[arg(long)]
    pub named_queues: bool,
}

/// The channel the channel phase opens and closes.
const CHURN_CHANNEL: u16 = 2;

/// Outcome of one phase.
#[derive(Clone, Copy, Debug)]
struct PhaseResult {
    phase: Phase,
    ops: u64,
    secs: f64,
}

impl PhaseResult {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }

    /// Mean time of one operation (each thread does one at a time).
    fn us_per_op(&self, threads: u64) -> f64 {
        if self.ops == 0 {
            f64::NAN
        } else {
            self.secs * threads as f64 * 1e6 / self.ops as f64
        }
    }
}

/// State shared by the threads of one phase.
struct Shared {
    halt: Halt,
    /// Operations completed.
    done: AtomicU64,
    /// Operations claimed (with --count).
    claimed: AtomicU64,
    count: Option<u64>,
    /// When each thread finished its last operation.
    last_op: Mutex<Option<Instant>>,
    /// Threads done with their setup.
    ready: AtomicUsize,
    /// The start signal (all threads set up).
    go: AtomicBool,
}

impl Shared {
    /// Whether the thread may start another operation.
    fn go(&self) -> bool {
        if self.halt.stopped() {
            return false;
        }
        match self.count {
            Some(n) => self.claimed.fetch_add(1, Ordering::Relaxed) < n,
            None => true,
        }
    }

    /// Reports this thread set up and waits for the start signal.
    fn ready_and_wait(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
        while !self.go.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn finished(&self, at: Instant) {
        let mut l = self.last_op.lock().unwrap();
        if l.is_none_or(|t| at > t) {
            *l = Some(at);
        }
    }
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// What one thread works on.
struct Worker {
    uri: AmqpUri,
    phase: Phase,
    t: u64,
    named_queues: bool,
    conn: Option<Conn>,
    /// Binding phase: the thread's queue.
    queue: String,
}

impl Worker {
    /// Opens the connection (and queue) the phase works on; not timed.
    fn setup(&mut self) -> Result<(), ClientError> {
        if self.phase == Phase::Connection {
            return Ok(());
        }
        let mut c = Conn::open(&self.uri, &format!("warren-loadgen churn {}", self.t))?;
        if self.phase == Phase::Binding {
            c.declare_queue(&self.queue, false, false)?;
        }
        self.conn = Some(c);
        Ok(())
    }

    /// One operation (a pair); `i` numbers this thread's operations.
    fn op(&mut self, i: u64) -> Result<(), ClientError> {
        let Some(c) = self.conn.as_mut() else {
            // Connection phase.
            let c = Conn::open(&self.uri, &format!("warren-loadgen churn {}", self.t))?;
            c.close(CLOSE_TIMEOUT, |_, _| {});
            return Ok(());
        };
        match self.phase {
            Phase::Connection => unreachable!("the connection phase holds no connection"),
            Phase::Channel => {
                match c.call(CHURN_CHANNEL, ChannelOpen::default().into())? {
                    Method::ChannelOpenOk(_) => {}
                    m => return Err(unexpected(&m, "channel.open-ok")),
                }
                let close = ChannelClose {
                    reply_code: constants::REPLY_SUCCESS,
                    reply_text: Bytes::from_static(b"churn"),
                    ..Default::default()
                };
                match c.call(CHURN_CHANNEL, close.into())? {
                    Method::ChannelCloseOk(_) => {}
                    m => return Err(unexpected(&m, "channel.close-ok")),
                }
            }
            Phase::Queue => {
                let name = if self.named_queues {
                    format!("loadgen-churn-{}-{}-{i}", std::process::id(), self.t)
                } else {
                    String::new()
                };
                let declare = QueueDeclare {
                    queue: bytes(&name),
                    ..Default::default()
                };
                let name = match c.call(CHANNEL, declare.into())? {
                    Method::QueueDeclareOk(ok) => ok.queue,
                    m => return Err(unexpected(&m, "queue.declare-ok")),
                };
                let delete = QueueDelete {
                    queue: name,
                    ..Default::default()
                };
                match c.call(CHANNEL, delete.into())? {
                    Method::QueueDeleteOk(_) => {}
                    m => return Err(unexpected(&m, "queue.delete-ok")),
                }
            }
            Phase::Binding => {
                let key = format!("churn-{}-{i}", self.t);
                c.bind_queue(&self.queue, "amq.direct", &key, FieldTable::new())?;
                let unbind = QueueUnbind {
                    queue: bytes(&self.queue),
                    exchange: Bytes::from_static(b"amq.direct"),
                    routing_key: bytes(&key),
                    ..Default::default()
                };
                match c.call(CHANNEL, unbind.into())? {
                    Method::QueueUnbindOk(_) => {}
                    m => return Err(unexpected(&m, "queue.unbind-ok")),
                }
            }
        }
        Ok(())
    }

    /// Deletes the binding phase's queue and closes the connection.
    fn teardown(&mut self) -> Result<(), ClientError> {
        let Some(mut c) = self.conn.take() else {
            return Ok(());
        };
        let r = if self.phase == Phase::Binding {
            c.delete_queue(&self.queue).map(|_| ())
        } else {
            Ok(())
        };
        c.close(CLOSE_TIMEOUT, |_, _| {});
        r
    }
}

/// One thread of a phase: setup, the start signal, operations until told
/// to stop, teardown.
fn worker(mut w: Worker, sh: &Shared) {
    let who = format!("{} thread {}", w.phase.name(), w.t);
    let setup = w.setup();
    sh.ready_and_wait();
    if let Err(e) = setup {
        sh.halt.fail(format!("{who}: setup: {e}"));
        return;
    }
    let mut i = 0u64;
    while sh.go() {
        if let Err(e) = w.op(i) {
            sh.halt.fail(format!("{who}: {e}"));
            break;
        }
        i += 1;
        sh.done.fetch_add(1, Ordering::Relaxed);
    }
    sh.finished(Instant::now());
    if let Err(e) = w.teardown() {
        sh.halt.fail(format!("{who}: cleanup: {e}"));
    }
}

/// Runs one phase with progress lines; returns its result and errors.
fn run_phase(args: &Args, uri: &AmqpUri, phase: Phase) -> (PhaseResult, Vec<String>) {
    let threads = args.threads as usize;
    let sh = Arc::new(Shared {
        halt: Halt::default(),
        done: AtomicU64::new(0),
        claimed: AtomicU64::new(0),
        count: args.count,
        last_op: Mutex::new(None),
        ready: AtomicUsize::new(0),
        go: AtomicBool::new(false),
    });
    let mut handles = Vec::new();
    for t in 0..threads {
        let w = Worker {
            uri: uri.clone(),
            phase,
            t: t as u64,
            named_queues: args.named_queues,
            conn: None,
            queue: format!("loadgen-churn-{}-{t}", std::process::id()),
        };
        let sh2 = sh.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{t}", phase.name()))
            .spawn(move || worker(w, &sh2));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                sh.halt
                    .fail(format!("{} thread {t}: cannot start: {e}", phase.name()));
                break;
            }
        }
    }
    while sh.ready.load(Ordering::Relaxed) < handles.len() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = Instant::now();
    sh.go.store(true, Ordering::Release);
    let end = t0 + Duration::from_secs_f64(args.duration);
    let mut prev = 0u64;
    let mut tick = 1u64;
    // In duration mode: the count and time when the stop was given.
    let mut at_stop = None;
    loop {
        let now = Instant::now();
        let all_done = handles.iter().all(|h| h.is_finished());
        if args.count.is_none() && at_stop.is_none() && now >= end {
            sh.halt.stop();
            at_stop = Some((sh.done.load(Ordering::Relaxed), end));
        }
        if all_done {
            break;
        }
        let next_at = t0 + Duration::from_secs(tick);
        if now >= next_at {
            let done = sh.done.load(Ordering::Relaxed);
            if at_stop.is_none() {
                eprintln!(
                    "{} t={tick}s {}/s (total {})",
                    phase.name(),
                    group(done - prev),
                    group(done)
                );
            }
            prev = done;
            tick += 1;
            continue;
        }
        let mut until = next_at;
        if at_stop.is_none() && args.count.is_none() {
            until = until.min(end);
        }
        std::thread::sleep(
            until
                .saturating_duration_since(now)
                .min(Duration::from_millis(20)),
        );
    }
    for h in handles {
        let _ = h.join();
    }
    let errors = sh.halt.errors();
    let (ops, secs) = match at_stop {
        // Stopped on time: ops completed by the deadline.
        Some((ops, at)) if errors.is_empty() => (ops, at.duration_since(t0).as_secs_f64()),
        // --count, or an error: ops completed by the last thread's last one.
        _ => {
            let last = sh.last_op.lock().unwrap().unwrap_or(t0);
            (
                sh.done.load(Ordering::Relaxed),
                last.duration_since(t0).as_secs_f64(),
            )
        }
    };
    let r = PhaseResult { phase, ops, secs };
    eprintln!(
        "{}: {} {} in {:.2} s = {}/s",
        phase.name(),
        group(ops),
        phase.op(),
        secs,
        report::rate(r.rate())
    );
    (r, errors)
}

/// Runs the scenario; returns the process exit code.
pub fn run(args: Args) -> i32 {
    let Some(uri) = args.common.validate(
        args.count.is_some() || args.duration > 0.0,
        "--duration must be > 0",
    ) else {
        return 2;
    };
    let mut phases: Vec<Phase> = Vec::new();
    for p in &args.phases {
        if !phases.contains(p) {
            phases.push(*p);
        }
    }
    if phases.is_empty() {
        eprintln!("warren-loadgen: --phases: none given");
        return 2;
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for &p in &phases {
        let (r, e) = run_phase(&args, &uri, p);
        results.push(r);
        errors.extend(e);
    }
    let summary = Summary {
        args: &args,
        uri: &uri,
        phases: &phases,
        results,
        errors,
    };
    report::finish(&summary, args.common.json)
}

/// Everything the final report shows.
struct Summary<'a> {
    args: &'a Args,
    uri: &'a AmqpUri,
    /// The phases run, in order (duplicates dropped).
    phases: &'a [Phase],
    results: Vec<PhaseResult>,
    errors: Vec<String>,
}

impl Report for Summary<'_> {
    fn ok(&self) -> bool {
        self.errors.is_empty() && self.results.iter().all(|r| r.ops > 0)
    }

    fn errors(&self) -> &[String] {
        &self.errors
    }

    fn table(&self) -> String {
        let args = self.args;
        let mut rows = vec![
            ("broker", self.uri.to_string()),
            (
                "per phase",
                match args.count {
                    Some(n) => format!("{} operations, {} threads", group(n), args.threads),
                    None => format!("{} s, {} threads", args.duration, args.threads),
                },
            ),
        ];
        for r in &self.results {
            let mut v = format!(
                "{}/s  ({} {} in {:.2} s, {:.0} us each)",
                report::rate(r.rate()),
                group(r.ops),
                r.phase.op(),
                r.secs,
                r.us_per_op(args.threads)
            );
            if r.phase == Phase::Queue {
                v += if args.named_queues {
                    " named"
                } else {
                    " server-named"
                };
            }
            rows.push((r.phase.name(), v));
        }
        rows.push(("result", if self.ok() { "ok" } else { "FAILED" }.into()));
        report::table("churn", rows)
    }

    fn json(&self) -> String {
        let args = self.args;
        let names: Vec<&str> = self.phases.iter().map(|p| p.name()).collect();
        let mut o = JsonObject::new();
        o.str("scenario", "churn")
            .str("uri", &self.uri.to_string())
            .strs("phases", &names)
            .int("threads", args.threads as i64);
        match args.count {
            Some(n) => o.raw("duration_s", "null").int("count", n as i64),
            None => o.num("duration_s", args.duration, 3).raw("count", "null"),
        };
        o.bool("named_queues", args.named_queues);
        for p in Phase::ALL {
            let n = p.name();
            match self.results.iter().find(|r| r.phase == p) {
                Some(r) => {
                    o.num(&format!("{n}_rate"), r.rate(), 1)
                        .int(&format!("{n}_ops"), r.ops as i64)
                        .num(&format!("{n}_s"), r.secs, 3)
                        .num(&format!("{n}_us_per_op"), r.us_per_op(args.threads), 1);
                }
                None => {
                    for k in ["rate", "ops", "s", "us_per_op"] {
                        o.raw(&format!("{n}_{k}"), "null");
                    }
                }
            }
        }
        self.json_tail(&mut o)
    }
}
