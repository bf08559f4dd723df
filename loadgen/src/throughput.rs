//! `warren-loadgen throughput`: N producers publish, M consumers drain
//! `--queues` queues; the message rates are printed every second (stderr)
//! and summarised at the end (stdout, table or JSON).
//!
//! Topology ([`Topology`]): queues `loadgen-<pid>` (or `--queue NAME`),
//! suffixed `-<i>` when `--queues` > 1; consumer `c` consumes queue `c % N`.
//! With `--exchange-type default` (the default) messages go through the
//! default exchange and producer `p` publishes to queue `p % N` (so use at
//! least as many producers as queues). Any other type declares exchange
//! `loadgen-<pid>-<type>` and binds every queue so that every message reaches
//! every queue, as RabbitMQ PerfTest does: direct "loadgen", fanout "",
//! topic "loadgen.#" (published as "loadgen.msg"), headers {x-match: all,
//! loadgen: "1"} (published with header loadgen="1"). Deliveries are then
//! multiplied by the fan-out: `expected = sent * queues`. `--durable`
//! declares queues and exchange durable, `--persistent` publishes with
//! delivery-mode 2 (persisted only in durable queues).
//!
//! Sequence: an admin connection declares the exchange, queues and bindings
//! (a `--queue` that exists is used as it is), every worker connects and sets
//! up, then a gate starts them all at once. The first `--warmup` seconds are
//! not counted in the rates; the rates are over the following `--duration`
//! seconds. Then workers stop (consumers stop counting; producers stop
//! writing and collect late confirms while closing), and the loadgen's own
//! queues and exchange are deleted (a `--queue` is left as it is, so one run
//! can fill it and a later one drain it).
//!
//! Rates are the average over the measured window and the median of its
//! per-second rates ([`medians`]). [`measure`], [`Sample`] and
//! [`medians`] also serve `throughput10`.
//!
//! Totals count the whole run (warmup included): `received` counts every
//! delivery on every consumer, `backlog = expected - received` with
//! `expected = sent * fan-out` (fan-out = 1 for the default exchange, else
//! the number of queues). Exit status: 0 on success, 1 on a broker/connection
//! error or if nothing was delivered, 2 on bad arguments.

use std::time::{Duration, Instant};

use crate::report::{self, group, group_i, off_or, rate, CpuTime, JsonObject, Report, Snapshot};
use crate::uri::AmqpUri;
use crate::workers::{self, Ack, ConsumerCfg, Crew, ExchangeType, ProducerCfg, Topology};
use crate::CommonArgs;
use warren::protocol::{FieldTable, FieldValue};

/// Flags of `throughput`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Producer connections (one thread each).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections (one thread each).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Queue to use (default: a fresh loadgen-<pid>, deleted at the end);
    /// with --queues N > 1 the queues are NAME-0 .. NAME-<N-1>.
    #[arg(long)]
    pub queue: Option<String>,
    /// Number of queues; consumer c consumes queue c % N.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub queues: u64,
    /// Exchange to publish through: `default` (routing key = queue name,
    /// producer p -> queue p % N) or a fresh exchange of that type with
    /// every queue bound, so that each message reaches every queue.
    #[arg(long, value_enum, default_value_t = ExchangeType::Default)]
    pub exchange_type: ExchangeType,
    /// Publish persistent messages (delivery-mode 2).
    #[arg(long)]
    pub persistent: bool,
    /// Declare the queues and the exchange durable.
    #[arg(long)]
    pub durable: bool,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Measured seconds (after the warmup).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run first and not counted in the rates.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Consumers use automatic acknowledgement (basic.consume no-ack).
    #[arg(long)]
    pub no_ack: bool,
    /// Manual ack: basic.ack multiple=true every N deliveries.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub ack_every: u64,
    /// Manual ack: basic.qos prefetch-count (0 = unlimited).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,
    /// Publisher confirms with at most N unconfirmed per producer (0 = off).
    #[arg(long, default_value_t = 0)]
    pub confirm: u64,
    /// Cap in msg/s per producer (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Streams: the queues are declared `x-queue-type=stream` (durable),
    /// and consumers read them from `--stream-offset` with manual acks
    /// (a stream needs a prefetch). Fill a stream with `--queue S
    /// --consumers 0`, then replay it with `--queue S --producers 0
    /// --consumers N`: a stream keeps what it was given.
    #[arg(long)]
    pub stream: bool,
    /// Where stream consumers start (`x-stream-offset`): first, last, next,
    /// or an offset.
    #[arg(long, default_value = "first")]
    pub stream_offset: String,
}

impl Args {
    fn ack(&self) -> Ack {
        Ack::new(self.no_ack, self.ack_every, self.prefetch)
    }

    /// basic.consume arguments: `x-stream-offset` for `--stream`.
    fn consume_arguments(&self) -> FieldTable {
        let mut t = FieldTable::new();
        if self.stream {
            let v = match self.stream_offset.parse::<i64>() {
                Ok(n) => FieldValue::I64(n),
                Err(_) => FieldValue::LongStr(bytes::Bytes::from(self.stream_offset.clone())),
            };
            t.insert("x-stream-offset", v);
        }
        t
    }
}

/// One per-second line (also `throughput10`'s).
pub struct Sample {
    pub t: f64,
    /// The second began in the warmup: not in the medians.
    pub warmup: bool,
    pub rates: report::Rates,
    pub backlog: i64,
}

/// Medians of the measured per-second publish and deliver rates (warmup
/// seconds left out); None without a measured second.
pub fn medians(samples: &[Sample]) -> (Option<f64>, Option<f64>) {
    let measured = || samples.iter().filter(|s| !s.warmup);
    (
        report::median(measured().map(|s| s.rates.publish).collect()),
        report::median(measured().map(|s| s.rates.deliver).collect()),
    )
}

/// Runs the scenario; returns the process exit code.
pub fn run(args: Args) -> i32 {
    let Some(uri) = args.common.validate(
        args.duration > 0.0 && args.warmup >= 0.0,
        "--duration must be > 0 and --warmup >= 0",
    ) else {
        return 2;
    };
    if args.stream && (args.no_ack || args.prefetch == 0) {
        eprintln!("warren-loadgen: --stream needs manual acks and a --prefetch > 0");
        return 2;
    }
    let mut topo = Topology::new(
        args.queue.as_deref(),
        args.queues as usize,
        args.exchange_type,
        args.durable,
    );
    if args.stream {
        topo = topo.streams();
    }
    let n_queues = topo.queues.len();
    if topo.kind == ExchangeType::Default && args.producers < n_queues {
        eprintln!(
            "warren-loadgen: warning: with the default exchange producer p publishes to queue p % {n_queues}: \
             {} of {n_queues} queues get no messages (use --producers >= --queues)",
            n_queues - args.producers
        );
    }
    if args.consumers < n_queues {
        eprintln!(
            "warren-loadgen: warning: {} of {n_queues} queues have no consumer (consumer c consumes queue c % {n_queues})",
            n_queues - args.consumers
        );
    }
    let admin = match topo.open_admin(&uri) {
        Ok(c) => c,
        Err(cleanup_errors) => {
            for e in cleanup_errors {
                eprintln!("warren-loadgen: cleanup: {e}");
            }
            return 1;
        }
    };

    let n_workers = args.producers + args.consumers;
    let mut crew = Crew::new(&uri, n_workers);
    let mut threads = Vec::new();
    let properties = workers::properties(args.persistent, topo.kind.publish_headers());
    for i in 0..n_workers {
        let t = if i < args.consumers {
            let cfg = ConsumerCfg {
                queue: topo.consumer_queue(i).to_string(),
                ack: args.ack(),
                arguments: args.consume_arguments(),
            };
            crew.spawn(format!("consumer-{i}"), i, move |w| {
                workers::consumer(w, i, &cfg, &mut ())
            })
        } else {
            let p = i - args.consumers;
            let (exchange, routing_key) = topo.route(p);
            let cfg = ProducerCfg {
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
                properties: properties.clone(),
                size: args.size,
                confirm: args.confirm,
                rate: args.rate,
            };
            crew.spawn(format!("producer-{p}"), i, move |w| {
                workers::producer(w, p, &cfg)
            })
        };
        threads.extend(t);
    }

    // Wait for every worker's setup.
    let mut samples = Vec::new();
    let fanout = topo.fanout();
    let (start_snap, end_snap) = if crew.wait_ready() {
        crew.ctl.release(true);
        let window = Window {
            warmup: args.warmup,
            duration: args.duration,
            confirms: args.confirm > 0,
            fanout,
        };
        measure(&window, &crew, &mut samples)
    } else {
        crew.ctl.release(false);
        let s = crew.snapshot();
        (s, s)
    };
    crew.ctl.stop();
    for t in threads {
        let _ = t.join();
    }
    let total = crew.snapshot();
    let cpu = CpuTime::now();

    let mut errors = crew.ctl.errors();
    // Messages left: from queue.delete-ok, or a passive declare for --queue.
    let (queue_left, teardown_errors) = topo.teardown(&uri, Some(admin));
    errors.extend(teardown_errors);

    let summary = Summary {
        args: &args,
        uri: &uri,
        topo: &topo,
        measured: end_snap.rates_since(&start_snap),
        total,
        queue_left,
        cpu,
        samples,
        errors: &errors,
    };
    let code = report::finish(&summary, args.common.json);
    if errors.is_empty() && total.delivered == 0 {
        eprintln!("warren-loadgen: nothing was delivered");
    }
    code
}

/// What [`measure`] times and prints.
pub struct Window {
    /// Seconds not counted in the rates.
    pub warmup: f64,
    /// Measured seconds after the warmup.
    pub duration: f64,
    /// Print the confirm rate in the per-second lines.
    pub confirms: bool,
    /// Queues each message reaches (for the backlog).
    pub fanout: u64,
}

/// The timed part: per-second lines until warmup + duration (or an error).
/// Returns the snapshots at the start and end of the measured window.
pub fn measure(w: &Window, crew: &Crew, samples: &mut Vec<Sample>) -> (Snapshot, Snapshot) {
    let t0 = Instant::now();
    let warm_end = t0 + Duration::from_secs_f64(w.warmup);
    let end = warm_end + Duration::from_secs_f64(w.duration);
    let mut prev = crew.snapshot();
    let mut start = (w.warmup == 0.0).then_some(prev);
    let mut tick = 1u64;
    loop {
        let now = Instant::now();
        if crew.ctl.stopped() {
            let s = crew.snapshot();
            return (start.unwrap_or(s), s);
        }
        if start.is_none() && now >= warm_end {
            start = Some(crew.snapshot());
        }
        let next_tick = t0 + Duration::from_secs(tick);
        if now >= next_tick && next_tick <= end {
            let s = crew.snapshot();
            let sample = Sample {
                t: s.at.duration_since(t0).as_secs_f64(),
                warmup: prev.at < warm_end,
                rates: s.rates_since(&prev),
                backlog: s.backlog(w.fanout),
            };
            eprintln!("{}", line(&sample, w.confirms));
            samples.push(sample);
            prev = s;
            tick += 1;
            continue;
        }
        if now >= end {
            return (start.unwrap(), crew.snapshot());
        }
        let mut until = next_tick.min(end);
        if start.is_none() {
            until = until.min(warm_end);
        }
        let nap = until
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        std::thread::sleep(nap);
    }
}

/// "t=3s publish 812,000/s deliver 810,500/s confirm 800,000/s backlog 1,234".
fn line(s: &Sample, confirms: bool) -> String {
    let mut l = format!(
        "t={}s publish {}/s deliver {}/s",
        s.t.round(),
        rate(s.rates.publish),
        rate(s.rates.deliver)
    );
    if confirms {
        l += &format!(" confirm {}/s", rate(s.rates.confirm));
    }
    l += &format!(" backlog {}", group_i(s.backlog));
    if s.warmup {
        l += " (warmup)";
    }
    l
}

/// The median of the per-second rates ("812,000 msg/s"), or "-" without a
/// measured second.
pub fn median_row(m: Option<f64>) -> String {
    m.map_or_else(|| "-".into(), |m| format!("{} msg/s", rate(m)))
}

/// Everything the final report shows.
struct Summary<'a> {
    args: &'a Args,
    uri: &'a AmqpUri,
    topo: &'a Topology,
    measured: report::Rates,
    total: Snapshot,
    queue_left: Option<u64>,
    cpu: CpuTime,
    samples: Vec<Sample>,
    errors: &'a [String],
}

impl Summary<'_> {
    /// "loadgen-123" or "3: loadgen-123-0 .. loadgen-123-2".
    fn queues(&self) -> String {
        match &self.topo.queues[..] {
            [one] => one.clone(),
            [first, .., last] => format!("{}: {first} .. {last}", self.topo.queues.len()),
            [] => String::new(),
        }
    }

    fn exchange(&self) -> String {
        let t = self.topo;
        match t.kind {
            ExchangeType::Default if t.queues.len() > 1 => {
                "default (producer p -> queue p % N)".into()
            }
            ExchangeType::Default => "default".into(),
            k => format!(
                "{} {} (each message to all {} queues)",
                k.name(),
                t.exchange,
                t.queues.len()
            ),
        }
    }

    /// CPU microseconds per message moved (published + delivered).
    fn cpu_us_per_msg(&self) -> f64 {
        let moved = self.total.published + self.total.delivered;
        if moved == 0 {
            0.0
        } else {
            self.cpu.total() * 1e6 / moved as f64
        }
    }
}

impl Report for Summary<'_> {
    fn ok(&self) -> bool {
        self.errors.is_empty() && self.total.delivered > 0
    }

    fn errors(&self) -> &[String] {
        self.errors
    }

    fn table(&self) -> String {
        let a = self.args;
        let m = &self.measured;
        let t = &self.total;
        let mut rows: Vec<(&str, String)> = vec![
            ("broker", self.uri.to_string()),
            ("queues", self.queues()),
            ("exchange", self.exchange()),
            (
                "workers",
                format!("{} producers, {} consumers", a.producers, a.consumers),
            ),
            (
                "messages",
                format!(
                    "{} B body, {}",
                    a.size,
                    if a.persistent {
                        "persistent (delivery-mode 2)"
                    } else {
                        "transient"
                    }
                ),
            ),
            (
                "durable",
                if a.durable || a.stream { "yes" } else { "no" }.to_string(),
            ),
            (
                "stream",
                if a.stream {
                    format!("yes, consumers from {}", a.stream_offset)
                } else {
                    "no".to_string()
                },
            ),
            ("ack", a.ack().describe()),
            ("confirms", off_or(a.confirm, "outstanding max")),
            ("rate cap", off_or(a.rate, "msg/s per producer")),
            (
                "measured",
                format!("{:.2} s after {} s warmup", m.secs, a.warmup),
            ),
            ("publish", format!("{} msg/s", rate(m.publish))),
            ("deliver", format!("{} msg/s", rate(m.deliver))),
        ];
        let (publish_median, deliver_median) = medians(&self.samples);
        rows.push(("publish median", median_row(publish_median)));
        rows.push(("deliver median", median_row(deliver_median)));
        if a.confirm > 0 {
            rows.push(("confirm", format!("{} msg/s", rate(m.confirm))));
        }
        rows.push(("sent", group(t.published)));
        let fanout = self.topo.fanout();
        if fanout > 1 {
            rows.push((
                "expected",
                format!("{} (sent x {fanout} queues)", group(t.expected(fanout))),
            ));
        }
        rows.push(("received", group(t.delivered)));
        if a.confirm > 0 {
            rows.push((
                "confirmed",
                format!("{} ({} nacked)", group(t.confirmed), group(t.nacked)),
            ));
        }
        rows.push(("backlog", group_i(t.backlog(fanout))));
        if let Some(q) = self.queue_left {
            rows.push(("left in queues", group(q)));
        }
        rows.push((
            "loadgen cpu",
            format!("{} ({:.2} us/msg)", self.cpu, self.cpu_us_per_msg()),
        ));
        report::table("throughput", rows)
    }

    fn json(&self) -> String {
        let a = self.args;
        let m = &self.measured;
        let t = &self.total;
        let fanout = self.topo.fanout();
        let samples = samples_json(&self.samples);
        let mut o = JsonObject::new();
        o.str("scenario", "throughput")
            .str("uri", &self.uri.to_string())
            .str("queue", &self.topo.queues[0])
            .int("queues", self.topo.queues.len() as i64)
            .strs("queue_names", &self.topo.queues)
            .str("exchange_type", self.topo.kind.name())
            .str("exchange", &self.topo.exchange)
            .int("fanout", fanout as i64)
            .bool("persistent", a.persistent)
            .bool("durable", a.durable || a.stream)
            .bool("stream", a.stream)
            .str("stream_offset", &a.stream_offset)
            .int("producers", a.producers as i64)
            .int("consumers", a.consumers as i64)
            .int("size", a.size as i64);
        a.ack()
            .json(&mut o)
            .int("confirm", a.confirm as i64)
            .int("rate_limit", a.rate as i64)
            .num("warmup_s", a.warmup, 3)
            .num("duration_s", m.secs, 3)
            .num("publish_rate", m.publish, 1)
            .num("deliver_rate", m.deliver, 1)
            .num("confirm_rate", m.confirm, 1);
        let (publish_median, deliver_median) = medians(&self.samples);
        o.opt_num("publish_median", publish_median, 1)
            .opt_num("deliver_median", deliver_median, 1)
            .int("sent", t.published as i64)
            .int("expected", t.expected(fanout) as i64)
            .int("received", t.delivered as i64)
            .int("confirmed", t.confirmed as i64)
            .int("nacked", t.nacked as i64)
            .int("backlog", t.backlog(fanout))
            .opt_int("queue_left", self.queue_left.map(|q| q as i64))
            .cpu(&self.cpu)
            .num("cpu_us_per_msg", self.cpu_us_per_msg(), 3)
            .raw("samples", &report::json_array(&samples));
        self.json_tail(&mut o)
    }
}

/// The per-second samples of a run as JSON objects (the `samples` array of
/// `--json`), for both throughput scenarios.
pub(crate) fn samples_json(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .map(|s| {
            JsonObject::new()
                .num("t", s.t, 3)
                .bool("warmup", s.warmup)
                .num("publish_rate", s.rates.publish, 1)
                .num("deliver_rate", s.rates.deliver, 1)
                .num("confirm_rate", s.rates.confirm, 1)
                .int("backlog", s.backlog)
                .finish()
        })
        .collect()
}
