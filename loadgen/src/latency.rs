//! `warren-loadgen latency`: end-to-end latency at a fixed publish rate, in
//! the manner of RabbitMQ PerfTest / lavinmqperf: one producer connection,
//! one consumer connection, one fresh queue (default exchange), all in this
//! process.
//!
//! Schedule: message `i` is due at `start + i / rate`. Its body (at least
//! [`MIN_SIZE`] bytes) carries that *scheduled* time in nanoseconds since a
//! base [`Instant`] shared by both threads, then `i` (u32) and a run tag
//! (the pid, u32; other bodies are counted as `foreign` and ignored), all
//! big-endian, then filler. The producer sleeps until the next message is
//! due (with a 1 us timer slack; `--spin-us N` busy-waits the last N us
//! instead) and then writes every due message in one `write()`; how late
//! it wrote them is reported as "send lag". If it falls behind (a full
//! confirm window, connection.blocked, a broker that does not read) it
//! sends the backlog of due messages at once. Latency is `receive time -
//! scheduled time`, so the time a message spent waiting to be sent counts:
//! no coordinated omission.
//!
//! The consumer ([`workers::consumer`]) hands the first body frame of
//! each delivery to a [`Recorder`], which reads the timestamp in place (no
//! allocation) with one clock read per socket read, and records it in an
//! HDR histogram (nanoseconds, 3 significant digits) if the message was
//! scheduled after `--warmup`, and in the per-second histogram in any case.
//!
//! Output: a line per second on stderr (messages sent and received in that
//! second, p50/p99/max of the deliveries of that second); at the end, after
//! the producer is done and the consumer has received everything (or
//! `--drain` seconds passed), a table on stdout (or one JSON line with
//! `--json`): p50, p90, p99, p99.9, max and mean in microseconds, the
//! producer's send lag (p50, p99, max), sent, received, target and achieved
//! rate, the loadgen's own CPU time.
//!
//! Broker CPU (`--pid PID`, for RabbitMQ the beam.smp process): the
//! scheduler statistics of every thread of PID ([`SchedStat`]: nanoseconds
//! on CPU and times scheduled in, from `/proc/PID/task/*/schedstat`, which
//! unlike the utime/stime clock ticks are exact) are read when the warmup
//! ends and when the producer has sent its last message (before the drain),
//! and reported as `broker_cpu_pct` (percent of one core over that window),
//! `broker_cpu_us_per_msg` and `broker_wakeups_per_msg` (per message sent in
//! the window); null without `--pid`. At a fixed rate this is what a message
//! costs the broker when it is not busy: wake-ups and system calls dominate.
//!
//! Exit status: 0 on success, 1 on a broker/connection error or if no
//! measured message arrived, 2 on bad arguments.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::IO_TICK;
use crate::report::{
    self, group, off_or, rate, BrokerCpu, CpuTime, JsonObject, Report, SchedStat, Snapshot,
};
use crate::uri::AmqpUri;
use crate::workers::{
    self, encode_publish, filler, Ack, ConsumerCfg, Crew, Deliveries, ExchangeType, Publisher,
    Topology, Worker, BATCH_BYTES,
};
use crate::CommonArgs;

/// Smallest body: scheduled time (u64), sequence (u32), run tag (u32).
pub const MIN_SIZE: u64 = 16;

/// Highest latency the histograms hold (larger values are clamped): 1 hour.
const MAX_NS: u64 = 3_600_000_000_000;

/// Flags of `latency`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publish rate in msg/s (fixed schedule).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub rate: u64,
    /// Message body size in bytes (at least 16: the body carries the
    /// scheduled send time).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(MIN_SIZE..=(1 << 27)))]
    pub size: u64,
    /// Measured seconds (after the warmup).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds sent first and not counted in the latency figures.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Busy-wait the last N microseconds before each send instead of
    /// sleeping (0 = always sleep). Cuts the producer's wake-up lag (see
    /// "send lag") at the cost of CPU the broker may need on a small box.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub spin_us: u64,
    /// Seconds to wait after the last send for messages still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// The consumer uses automatic acknowledgement (basic.consume no-ack).
    #[arg(long)]
    pub no_ack: bool,
    /// Manual ack: basic.ack multiple=true every N deliveries (and whenever
    /// the consumer is idle).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub ack_every: u64,
    /// Manual ack: basic.qos prefetch-count (0 = unlimited).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,
    /// Publisher confirms with at most N unconfirmed (0 = off). A full
    /// window delays sends, which shows as latency.
    #[arg(long, default_value_t = 0)]
    pub confirm: u64,
    /// Queue to use (default: a fresh loadgen-<pid>, deleted at the end;
    /// an existing --queue is used as it is and left).
    #[arg(long)]
    pub queue: Option<String>,
    /// The broker's process id (for RabbitMQ: the beam.smp process): report
    /// its CPU use over the measured window, from
    /// /proc/PID/task/*/schedstat.
    #[arg(long)]
    pub pid: Option<u32>,
}

impl Args {
    fn ack(&self) -> Ack {
        Ack::new(self.no_ack, self.ack_every, self.prefetch)
    }
}

/// State shared by the orchestrating thread, the producer and the consumer.
struct Shared {
    /// Time zero of every timestamp in a body.
    base: Instant,
    /// Scheduled time of message 0 (ns since `base`); set before the gate opens.
    start_ns: AtomicU64,
    /// Messages scheduled at or after this (ns since `base`) are measured.
    warm_ns: AtomicU64,
    /// When the producer stopped sending (ns since `base`; 0 = not yet).
    done_ns: AtomicU64,
    /// Latencies (ns) since the last per-second line, all messages.
    interval: Mutex<Histogram<u64>>,
    /// The run tag in every body.
    tag: u32,
}

impl Shared {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Scheduled send time of message `i` (ns since the base).
#[inline]
fn scheduled(start_ns: u64, rate: u64, i: u64) -> u64 {
    start_ns + (i as u128 * 1_000_000_000 / rate as u128) as u64
}

/// Messages due at `now_ns`: the number of `i` with `scheduled(i) <= now_ns`,
/// i.e. with `i * 1e9 < (now - start + 1) * rate`.
#[inline]
fn due(start_ns: u64, rate: u64, now_ns: u64) -> u64 {
    match now_ns.checked_sub(start_ns) {
        Some(d) => ((d as u128 + 1) * rate as u128).div_ceil(1_000_000_000) as u64,
        None => 0,
    }
}

/// Writes the header of a latency body: scheduled time, sequence, run tag.
#[inline]
pub fn stamp(body: &mut [u8], scheduled_ns: u64, seq: u64, tag: u32) {
    body[..8].copy_from_slice(&scheduled_ns.to_be_bytes());
    body[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
    body[12..16].copy_from_slice(&tag.to_be_bytes());
}

/// The scheduled time in a latency body, if it is one of this run's.
#[inline]
pub fn read_stamp(body: &[u8], tag: u32) -> Option<u64> {
    let h = body.get(..16)?;
    if h[12..16] != tag.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(h[..8].try_into().unwrap()))
}

/// Lets the producer's sleeps end within ~1 us of the deadline (the default
/// timer slack of 50 us would delay every send by that much).
pub fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer and affects this thread only.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}

/// The producer thread: the fixed-rate schedule (see the module doc).
fn producer(w: &Worker, args: &Args, queue: &str, sh: &Shared) -> Result<Histogram<u64>, String> {
    tight_timer_slack();
    // How late (ns) each measured message was written: part of its latency.
    let mut lag = histogram();
    let mut p = Publisher::open(w, "latency producer", args.confirm)?;
    let t = encode_publish(
        "",
        queue,
        &[0, 0],
        &filler(args.size as usize),
        p.conn.frame_max,
    );
    let len = t.bytes.len();
    let per_write = (BATCH_BYTES / len).max(1) as u64;
    let mut buf = Vec::with_capacity(per_write as usize * len);
    if !w.ready() {
        return Ok(lag);
    }
    let start = sh.start_ns.load(Ordering::Relaxed);
    let warm = sh.warm_ns.load(Ordering::Relaxed);
    let spin_ns = args.spin_us * 1000;
    let total = ((args.warmup + args.duration) * args.rate as f64).ceil() as u64;
    let mut next = 0u64;
    let mut clean = true;
    while next < total && !w.ctl.stopped() {
        let now = sh.now_ns();
        let room = p.room();
        let n = (due(start, args.rate, now).min(total) - next)
            .min(per_write)
            .min(room);
        if n == 0 {
            if room == 0 {
                p.wait()?;
                continue;
            }
            let target = scheduled(start, args.rate, next);
            let wait = target.saturating_sub(now);
            if wait > spin_ns {
                std::thread::sleep(Duration::from_nanos(wait - spin_ns).min(IO_TICK));
                p.poll()?;
            } else {
                while sh.now_ns() < target {
                    std::hint::spin_loop();
                }
            }
            continue;
        }
        buf.clear();
        for i in next..next + n {
            let at = buf.len() + t.body_at;
            let sched = scheduled(start, args.rate, i);
            buf.extend_from_slice(&t.bytes);
            stamp(&mut buf[at..at + 16], sched, i, sh.tag);
            if sched >= warm {
                lag.saturating_record(now.saturating_sub(sched).max(1));
            }
        }
        if !p.write(&buf, len)? {
            clean = false;
            break;
        }
        next += n;
        p.poll()?;
    }
    sh.done_ns.store(sh.now_ns(), Ordering::Relaxed);
    if clean {
        p.close();
    }
    Ok(lag)
}

/// The consumer's [`Deliveries`] sink: turns body timestamps into latencies.
struct Recorder<'a> {
    sh: &'a Shared,
    /// Measured messages (scheduled after the warmup).
    total: Histogram<u64>,
    /// Latencies of the current read, for [`Shared::interval`].
    batch: Vec<u64>,
    /// Receive time of the current read (one clock read per read).
    now: Option<u64>,
    /// Deliveries that are not this run's latency messages.
    foreign: u64,
}

impl Deliveries for Recorder<'_> {
    const BODIES: bool = true;

    #[inline]
    fn body(&mut self, payload: &[u8]) {
        let Some(sched) = read_stamp(payload, self.sh.tag) else {
            self.foreign += 1;
            return;
        };
        let sh = self.sh;
        let now = *self.now.get_or_insert_with(|| sh.now_ns());
        let lat = now.saturating_sub(sched).max(1);
        if sched >= sh.warm_ns.load(Ordering::Relaxed) {
            self.total.saturating_record(lat);
        }
        self.batch.push(lat);
    }

    fn batch_end(&mut self) {
        self.now = None;
        if !self.batch.is_empty() {
            let mut h = self.sh.interval.lock().unwrap();
            for &v in &self.batch {
                h.saturating_record(v);
            }
            self.batch.clear();
        }
    }
}

/// One per-second line.
struct Sample {
    t: f64,
    warmup: bool,
    sent: u64,
    received: u64,
    /// p50, p99, max in ns (0 without deliveries).
    p50: u64,
    p99: u64,
    max: u64,
}

/// Runs the scenario; returns the process exit code.
pub fn run(args: Args) -> i32 {
    let Some(uri) = args.common.validate(
        args.duration > 0.0 && args.warmup >= 0.0 && args.drain >= 0.0,
        "--duration must be > 0, --warmup and --drain >= 0",
    ) else {
        return 2;
    };
    if let Some(pid) = args.pid {
        if let Err(e) = SchedStat::read(pid) {
            eprintln!("warren-loadgen: --pid: {e}");
            return 2;
        }
    }
    let topo = Topology::new(args.queue.as_deref(), 1, ExchangeType::Default, false);
    let queue = topo.queues[0].clone();
    let Ok(admin) = topo.open_admin(&uri) else {
        return 1;
    };

    let sh = Arc::new(Shared {
        base: Instant::now(),
        start_ns: AtomicU64::new(0),
        warm_ns: AtomicU64::new(0),
        done_ns: AtomicU64::new(0),
        interval: Mutex::new(histogram()),
        tag: std::process::id(),
    });
    // Counters: [consumer, producer].
    let mut crew = Crew::new(&uri, 2);
    let consumer = {
        let sh = sh.clone();
        let cfg = ConsumerCfg {
            queue: queue.clone(),
            ack: args.ack(),
            arguments: Default::default(),
        };
        crew.spawn("consumer".into(), 0, move |w| {
            let mut rec = Recorder {
                sh: &sh,
                total: histogram(),
                batch: Vec::with_capacity(1024),
                now: None,
                foreign: 0,
            };
            workers::consumer(w, 0, &cfg, &mut rec)?;
            Ok((rec.total, rec.foreign))
        })
    };
    let producer = {
        let (sh, args, queue) = (sh.clone(), args.clone(), queue.clone());
        crew.spawn("producer".into(), 1, move |w| {
            producer(w, &args, &queue, &sh)
        })
    };

    let mut samples = Vec::new();
    let mut window = Window::default();
    if crew.wait_ready() {
        let start = sh.now_ns();
        sh.start_ns.store(start, Ordering::Relaxed);
        let warm = start + (args.warmup * 1e9) as u64;
        sh.warm_ns.store(warm, Ordering::Relaxed);
        crew.ctl.release(true);
        measure(&args, &sh, &crew, &mut samples, &mut window);
    } else {
        crew.ctl.release(false);
    }
    crew.ctl.stop();
    let lag = producer
        .and_then(|p| p.join().ok().flatten())
        .unwrap_or_else(histogram);
    let (hist, foreign) = consumer
        .and_then(|c| c.join().ok().flatten())
        .unwrap_or_else(|| (histogram(), 0));
    let total = crew.snapshot();
    let cpu = CpuTime::now();

    let mut errors = crew.ctl.errors();
    let broker_cpu = window.broker_cpu();
    if let Some(e) = window.error {
        errors.push(e);
    }
    let (queue_left, teardown_errors) = topo.teardown(&uri, Some(admin));
    errors.extend(teardown_errors);

    let start = sh.start_ns.load(Ordering::Relaxed);
    let done = sh.done_ns.load(Ordering::Relaxed);
    // Over the schedule's span at least, so that an on-time run shows the
    // target rate exactly.
    let send_secs =
        (done.saturating_sub(start) as f64 / 1e9).max(total.published as f64 / args.rate as f64);
    let summary = Summary {
        args: &args,
        uri: &uri,
        queue: &queue,
        hist,
        lag,
        total,
        achieved: if send_secs > 0.0 {
            total.published as f64 / send_secs
        } else {
            0.0
        },
        foreign,
        queue_left,
        cpu,
        broker_cpu,
        samples,
        errors: &errors,
    };
    let code = report::finish(&summary, args.common.json);
    // Why a run without errors is incomplete or failed.
    if errors.is_empty() && total.delivered < total.published {
        eprintln!(
            "warren-loadgen: warning: {} messages sent but not received within --drain {} s",
            group(total.published - total.delivered),
            args.drain
        );
    }
    if errors.is_empty() && summary.hist.is_empty() {
        eprintln!("warren-loadgen: no measured message was received");
    }
    code
}

/// The broker's scheduler statistics at the start and the end of the
/// measured window (`--pid`), with the messages sent by then.
#[derive(Default)]
struct Window {
    start: Option<(SchedStat, u64)>,
    end: Option<(SchedStat, u64)>,
    /// Why a reading failed (the broker exited?).
    error: Option<String>,
}

impl Window {
    /// Reads the broker's statistics (if `--pid`) with `sent` messages sent.
    fn read(&mut self, pid: Option<u32>, sent: u64) -> Option<(SchedStat, u64)> {
        match SchedStat::read(pid?) {
            Ok(st) => Some((st, sent)),
            Err(e) => {
                self.error.get_or_insert(format!("--pid: {e}"));
                None
            }
        }
    }

    fn broker_cpu(&self) -> Option<BrokerCpu> {
        let ((a, sent_a), (b, sent_b)) = (self.start.as_ref()?, self.end.as_ref()?);
        Some(b.since(a, sent_b - sent_a))
    }
}

/// The timed part: a line per second while the producer runs and the
/// consumer catches up (at most `--drain` s after the producer is done);
/// the broker's CPU readings (`--pid`) when the warmup ends and when the
/// producer is done.
fn measure(args: &Args, sh: &Shared, crew: &Crew, samples: &mut Vec<Sample>, window: &mut Window) {
    let t0 = Instant::now();
    let warm_end = t0 + Duration::from_secs_f64(args.warmup);
    let mut prev = crew.snapshot();
    let mut spare = histogram();
    let mut tick = 1u64;
    let mut drain_until: Option<Instant> = None;
    let mut warm_read = false;
    loop {
        let now = Instant::now();
        let s = crew.snapshot();
        if crew.ctl.stopped() {
            return;
        }
        if !warm_read && now >= warm_end {
            warm_read = true;
            window.start = window.read(args.pid, s.published);
        }
        if drain_until.is_none() && sh.done_ns.load(Ordering::Relaxed) != 0 {
            drain_until = Some(now + Duration::from_secs_f64(args.drain));
            // The producer stopped after `s` was taken: count all it sent.
            let sent = crew.snapshot().published;
            window.end = window.read(args.pid, sent);
        }
        let finished = drain_until.is_some_and(|until| s.delivered >= s.published || now >= until);
        let next_tick = t0 + Duration::from_secs(tick);
        // A line per second, and one for the last part-second (if it
        // received anything).
        if now >= next_tick || (finished && s.delivered > prev.delivered) {
            std::mem::swap(&mut *sh.interval.lock().unwrap(), &mut spare);
            let sample = Sample {
                t: s.at.duration_since(t0).as_secs_f64(),
                warmup: prev.at < warm_end,
                sent: s.published - prev.published,
                received: s.delivered - prev.delivered,
                p50: spare.value_at_quantile(0.5),
                p99: spare.value_at_quantile(0.99),
                max: spare.max(),
            };
            spare.reset();
            eprintln!("{}", line(&sample));
            samples.push(sample);
            prev = s;
            tick += 1;
        }
        if finished {
            return;
        }
        if now >= next_tick {
            continue;
        }
        let mut until = next_tick;
        if !warm_read {
            until = until.min(warm_end);
        }
        let nap = until
            .saturating_duration_since(now)
            .min(Duration::from_millis(20));
        std::thread::sleep(nap);
    }
}

/// Nanoseconds as microseconds with one decimal.
fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

/// "t=3s sent 10,000 received 10,000 p50 85.3 us p99 140.2 us max 390.1 us"
/// (t with one decimal for a part-second).
fn line(s: &Sample) -> String {
    let t = if (s.t - s.t.round()).abs() < 0.05 {
        format!("{}", s.t.round())
    } else {
        format!("{:.1}", s.t)
    };
    let mut l = format!(
        "t={t}s sent {} received {}",
        group(s.sent),
        group(s.received)
    );
    if s.received > 0 {
        l += &format!(
            " p50 {} us p99 {} us max {} us",
            us(s.p50),
            us(s.p99),
            us(s.max)
        );
    }
    if s.warmup {
        l += " (warmup)";
    }
    l
}

/// Everything the final report shows.
struct Summary<'a> {
    args: &'a Args,
    uri: &'a AmqpUri,
    queue: &'a str,
    /// Latencies (ns) of the measured messages.
    hist: Histogram<u64>,
    /// How late (ns) the producer wrote the measured messages.
    lag: Histogram<u64>,
    total: Snapshot,
    achieved: f64,
    foreign: u64,
    queue_left: Option<u64>,
    cpu: CpuTime,
    /// The broker's CPU over the measured window (`--pid`).
    broker_cpu: Option<BrokerCpu>,
    samples: Vec<Sample>,
    errors: &'a [String],
}

/// (label, JSON key, quantile) of the reported percentiles (also the
/// fleet's, `fleet.rs`).
pub(crate) const PERCENTILES: [(&str, &str, f64); 4] = [
    ("p50", "p50_us", 0.5),
    ("p90", "p90_us", 0.9),
    ("p99", "p99_us", 0.99),
    ("p99.9", "p999_us", 0.999),
];

impl Report for Summary<'_> {
    fn ok(&self) -> bool {
        self.errors.is_empty() && !self.hist.is_empty()
    }

    fn errors(&self) -> &[String] {
        self.errors
    }

    fn table(&self) -> String {
        let a = self.args;
        let t = &self.total;
        let h = &self.hist;
        let mut rows: Vec<(&str, String)> = vec![
            ("broker", self.uri.to_string()),
            ("queue", self.queue.to_string()),
            (
                "rate",
                format!(
                    "{} msg/s target, {} msg/s achieved",
                    group(a.rate),
                    rate(self.achieved)
                ),
            ),
            ("body", format!("{} B", a.size)),
            ("ack", a.ack().describe()),
            ("confirms", off_or(a.confirm, "outstanding max")),
            (
                "measured",
                format!(
                    "{} messages over {} s after {} s warmup",
                    group(h.len()),
                    a.duration,
                    a.warmup
                ),
            ),
            ("sent", group(t.published)),
            ("received", group(t.delivered)),
        ];
        if a.confirm > 0 {
            rows.push((
                "confirmed",
                format!("{} ({} nacked)", group(t.confirmed), group(t.nacked)),
            ));
        }
        if self.foreign > 0 {
            rows.push(("foreign", group(self.foreign)));
        }
        if let Some(q) = self.queue_left {
            rows.push(("left in queue", group(q)));
        }
        if !h.is_empty() {
            for (label, _, q) in PERCENTILES {
                rows.push((label, format!("{} us", us(h.value_at_quantile(q)))));
            }
            rows.push(("max", format!("{} us", us(h.max()))));
            rows.push((
                "mean",
                format!(
                    "{:.1} us (stddev {:.1} us)",
                    h.mean() / 1e3,
                    h.stdev() / 1e3
                ),
            ));
        }
        if !self.lag.is_empty() {
            let l = &self.lag;
            rows.push((
                "send lag",
                format!(
                    "p50 {} us, p99 {} us, max {} us (producer behind schedule; part of the latency)",
                    us(l.value_at_quantile(0.5)),
                    us(l.value_at_quantile(0.99)),
                    us(l.max())
                ),
            ));
        }
        if let (Some(pid), Some(c)) = (a.pid, &self.broker_cpu) {
            rows.push(("broker cpu", format!("{} (pid {pid})", c.describe())));
        }
        rows.push(("loadgen cpu", self.cpu.to_string()));
        report::table("latency", rows)
    }

    fn json(&self) -> String {
        let a = self.args;
        let t = &self.total;
        let h = &self.hist;
        let us = |ns: u64| ns as f64 / 1e3;
        let samples: Vec<String> = self
            .samples
            .iter()
            .map(|s| {
                JsonObject::new()
                    .num("t", s.t, 3)
                    .bool("warmup", s.warmup)
                    .int("sent", s.sent as i64)
                    .int("received", s.received as i64)
                    .num("p50_us", us(s.p50), 1)
                    .num("p99_us", us(s.p99), 1)
                    .num("max_us", us(s.max), 1)
                    .finish()
            })
            .collect();
        let mut o = JsonObject::new();
        o.str("scenario", "latency")
            .str("uri", &self.uri.to_string())
            .str("queue", self.queue)
            .int("rate", a.rate as i64)
            .num("achieved_rate", self.achieved, 1)
            .int("size", a.size as i64);
        a.ack()
            .json(&mut o)
            .int("confirm", a.confirm as i64)
            .num("warmup_s", a.warmup, 3)
            .num("duration_s", a.duration, 3)
            .int("sent", t.published as i64)
            .int("received", t.delivered as i64)
            .int("measured", h.len() as i64)
            .int("foreign", self.foreign as i64)
            .int("confirmed", t.confirmed as i64)
            .int("nacked", t.nacked as i64);
        for (_, key, q) in PERCENTILES {
            o.num(key, us(h.value_at_quantile(q)), 1);
        }
        o.num("max_us", us(h.max()), 1)
            .num("min_us", us(h.min()), 1)
            .num("mean_us", h.mean() / 1e3, 1)
            .num("stddev_us", h.stdev() / 1e3, 1)
            .num("send_lag_p50_us", us(self.lag.value_at_quantile(0.5)), 1)
            .num("send_lag_p99_us", us(self.lag.value_at_quantile(0.99)), 1)
            .num("send_lag_max_us", us(self.lag.max()), 1)
            .opt_int("queue_left", self.queue_left.map(|q| q as i64))
            .opt_int("pid", a.pid.map(i64::from))
            .broker_cpu(self.broker_cpu.as_ref())
            .cpu(&self.cpu)
            .raw("samples", &report::json_array(&samples));
        self.json_tail(&mut o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        // 3 msg/s from t=100: due at 100, 100+333333333, 100+666666666.
        assert_eq!(scheduled(100, 3, 0), 100);
        assert_eq!(scheduled(100, 3, 1), 100 + 333_333_333);
        assert_eq!(due(100, 3, 99), 0);
        assert_eq!(due(100, 3, 100), 1);
        assert_eq!(due(100, 3, 100 + 333_333_332), 1);
        assert_eq!(due(100, 3, 100 + 333_333_334), 2);
        assert_eq!(due(100, 3, 100 + 1_000_000_000), 4);
        for i in 0..1000 {
            let s = scheduled(7, 12_345, i);
            assert_eq!(due(7, 12_345, s), i + 1, "message {i}");
        }
    }

    #[test]
    fn body_stamp() {
        let mut body = filler(20);
        stamp(&mut body, 123_456_789_000, 42, 7);
        assert_eq!(read_stamp(&body, 7), Some(123_456_789_000));
        assert_eq!(read_stamp(&body, 8), None);
        assert_eq!(read_stamp(&body[..15], 7), None);
        assert_eq!(&body[16..], b"qrst");
    }
}
