//! `warren-loadgen throughput10`: one sender -> one queue -> one receiver
//! over AMQP 1.0 (raw TCP, SASL PLAIN, address v2 `/queues/NAME`, the
//! workers in [`workers10`](crate::workers10)); the message rates are
//! printed every second (stderr) and summarised at the end (stdout, table
//! or JSON), as `throughput` does for 0-9-1.
//!
//! The queue is `loadgen-<pid>` or `--queue NAME`, declared by an admin
//! connection over 0-9-1 (`--durable`: durable; a `--queue` that exists is
//! used as it is) and deleted at the end (a `--queue` is left).
//!
//! Settlement: `--settled` attaches both links with snd-settle-mode
//! settled (the sender gets no outcomes, the receiver sends no
//! dispositions). Otherwise the sender keeps at most `--inflight` messages
//! without an outcome and the receiver accepts what it got with ranged
//! dispositions after each read. Either way the sender is paced by the
//! broker's link credit (RabbitMQ 4 grants 170, again when half is used if
//! fewer than 170 wait for their queues) and its session incoming window
//! (400, renewed by a session flow), and the receiver grants `--credit`,
//! again when half is used, and renews its own `--incoming-window`.
//!
//! Rates are the average over the measured window (after `--warmup`) and
//! the median of its per-second rates. Exit status: 0 on success, 1 on a
//! broker/connection error or if nothing was delivered, 2 on bad arguments.

use crate::report::{self, group, group_i, rate, CpuTime, JsonObject, Report, Snapshot};
use crate::throughput::{measure, median_row, medians, samples_json, Sample, Window};
use crate::uri::AmqpUri;
use crate::workers::{Crew, ExchangeType, Topology};
use crate::workers10::{self, ReceiverCfg, ReceiverStats, SenderCfg, SenderStats};
use crate::CommonArgs;

/// Flags of `throughput10`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Queue to use (default: a fresh loadgen-<pid>, deleted at the end).
    #[arg(long)]
    pub queue: Option<String>,
    /// Declare the queue durable.
    #[arg(long)]
    pub durable: bool,
    /// Send a header section with durable=true.
    #[arg(long)]
    pub persistent: bool,
    /// Message body size in bytes (one data section).
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Measured seconds (after the warmup).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run first and not counted in the rates.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Both links snd-settle-mode settled: no outcomes, no dispositions.
    #[arg(long)]
    pub settled: bool,
    /// Unsettled: messages the sender may have without an outcome.
    #[arg(long, default_value_t = 170, value_parser = clap::value_parser!(u64).range(1..))]
    pub inflight: u64,
    /// Link credit the receiver grants at a time (again when half is used).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub credit: u32,
    /// Our max-frame-size (at least 512); the sender also cuts its frames
    /// at it, so a small value makes multi-frame messages.
    #[arg(long, default_value_t = 131072, value_parser = clap::value_parser!(u32).range(512..))]
    pub max_frame_size: u32,
    /// The session incoming window each connection advertises (transfer
    /// frames), renewed when half is used.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1..))]
    pub incoming_window: u32,
}

/// Runs the scenario; returns the process exit code.
pub fn run(args: Args) -> i32 {
    let Some(uri) = args.common.validate(
        args.duration > 0.0 && args.warmup >= 0.0,
        "--duration must be > 0 and --warmup >= 0",
    ) else {
        return 2;
    };
    let topo = Topology::new(
        args.queue.as_deref(),
        1,
        ExchangeType::Default,
        args.durable,
    );
    let admin = match topo.open_admin(&uri) {
        Ok(c) => c,
        Err(cleanup_errors) => {
            for e in cleanup_errors {
                eprintln!("warren-loadgen: cleanup: {e}");
            }
            return 1;
        }
    };
    let queue = topo.queues[0].clone();
    let rcfg = ReceiverCfg {
        queue: queue.clone(),
        settled: args.settled,
        credit: args.credit,
        size: args.size,
        max_frame_size: args.max_frame_size,
        incoming_window: args.incoming_window,
    };
    let scfg = SenderCfg {
        queue,
        size: args.size,
        persistent: args.persistent,
        settled: args.settled,
        inflight: args.inflight,
        max_frame_size: args.max_frame_size,
        incoming_window: args.incoming_window,
    };
    let mut crew = Crew::new(&uri, 2);
    let receiver = crew.spawn("receiver".into(), 0, move |w| workers10::receiver(w, &rcfg));
    let sender = crew.spawn("sender".into(), 1, move |w| workers10::sender(w, &scfg));

    let mut samples = Vec::new();
    let (start_snap, end_snap) = if crew.wait_ready() {
        crew.ctl.release(true);
        let window = Window {
            warmup: args.warmup,
            duration: args.duration,
            confirms: !args.settled,
            fanout: 1,
        };
        measure(&window, &crew, &mut samples)
    } else {
        crew.ctl.release(false);
        let s = crew.snapshot();
        (s, s)
    };
    crew.ctl.stop();
    let rstats = receiver
        .and_then(|t| t.join().ok().flatten())
        .unwrap_or_default();
    let sstats = sender
        .and_then(|t| t.join().ok().flatten())
        .unwrap_or_default();
    let total = crew.snapshot();
    let cpu = CpuTime::now();

    let mut errors = crew.ctl.errors();
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
        sender: sstats,
        receiver: rstats,
        errors: &errors,
    };
    let code = report::finish(&summary, args.common.json);
    if errors.is_empty() && total.delivered == 0 {
        eprintln!("warren-loadgen: nothing was delivered");
    }
    code
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
    sender: SenderStats,
    receiver: ReceiverStats,
    errors: &'a [String],
}

impl Summary<'_> {
    /// CPU microseconds per message moved (sent + received).
    fn cpu_us_per_msg(&self) -> f64 {
        let moved = self.total.published + self.total.delivered;
        if moved == 0 {
            0.0
        } else {
            self.cpu.total() * 1e6 / moved as f64
        }
    }

    fn settlement(&self) -> String {
        let a = self.args;
        if a.settled {
            "settled (no outcomes, no dispositions)".into()
        } else {
            format!(
                "unsettled: sender <= {} without outcome, receiver accepts ranges",
                group(a.inflight)
            )
        }
    }

    /// "credit 0.12 s, session window 0.00 s, outcomes 3.40 s".
    fn waits(&self) -> String {
        let s = &self.sender;
        format!(
            "link credit {:.2} s, session window {:.2} s, outcomes {:.2} s",
            s.wait_credit.as_secs_f64(),
            s.wait_window.as_secs_f64(),
            s.wait_outcomes.as_secs_f64()
        )
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
        let r = &self.receiver;
        let (publish_median, deliver_median) = medians(&self.samples);
        let mut rows: Vec<(&str, String)> = vec![
            ("broker", format!("{} (AMQP 1.0)", self.uri)),
            (
                "queue",
                format!(
                    "{} ({})",
                    self.topo.queues[0],
                    workers10::queue_address(&self.topo.queues[0])
                ),
            ),
            (
                "messages",
                format!(
                    "{} B body, {}, {} transfer frame(s) each",
                    a.size,
                    if a.persistent {
                        "persistent (header durable=true)"
                    } else {
                        "transient"
                    },
                    self.sender.frames_per_msg
                ),
            ),
            ("durable", if a.durable { "yes" } else { "no" }.to_string()),
            ("settlement", self.settlement()),
            (
                "receiver",
                format!(
                    "credit {}, incoming-window {}, max-frame-size {}",
                    group(a.credit as u64),
                    group(a.incoming_window as u64),
                    group(a.max_frame_size as u64)
                ),
            ),
            (
                "measured",
                format!("{:.2} s after {} s warmup", m.secs, a.warmup),
            ),
            ("publish", format!("{} msg/s", rate(m.publish))),
            ("publish median", median_row(publish_median)),
            ("deliver", format!("{} msg/s", rate(m.deliver))),
            ("deliver median", median_row(deliver_median)),
        ];
        if !a.settled {
            rows.push(("outcome", format!("{} msg/s", rate(m.confirm))));
        }
        rows.push(("sent", group(t.published)));
        rows.push(("received", group(t.delivered)));
        if !a.settled {
            rows.push((
                "outcomes",
                format!("{} ({} not accepted)", group(t.confirmed), group(t.nacked)),
            ));
            rows.push(("accepted", group(r.accepted)));
        }
        if r.multi_frame > 0 {
            rows.push(("multi-frame", group(r.multi_frame)));
        }
        if r.odd_bodies > 0 {
            rows.push(("odd bodies", group(r.odd_bodies)));
        }
        rows.push(("backlog", group_i(t.backlog(1))));
        if let Some(q) = self.queue_left {
            rows.push(("left in queue", group(q)));
        }
        rows.push(("sender waited", self.waits()));
        rows.push((
            "loadgen cpu",
            format!("{} ({:.2} us/msg)", self.cpu, self.cpu_us_per_msg()),
        ));
        report::table("throughput10", rows)
    }

    fn json(&self) -> String {
        let a = self.args;
        let m = &self.measured;
        let t = &self.total;
        let (s, r) = (&self.sender, &self.receiver);
        let (publish_median, deliver_median) = medians(&self.samples);
        let samples = samples_json(&self.samples);
        let mut o = JsonObject::new();
        o.str("scenario", "throughput10")
            .str("uri", &self.uri.to_string())
            .str("queue", &self.topo.queues[0])
            .bool("persistent", a.persistent)
            .bool("durable", a.durable)
            .int("size", a.size as i64)
            .bool("settled", a.settled)
            .int("inflight", a.inflight as i64)
            .int("credit", a.credit as i64)
            .int("max_frame_size", a.max_frame_size as i64)
            .int("incoming_window", a.incoming_window as i64)
            .int("frames_per_msg", s.frames_per_msg as i64)
            .num("warmup_s", a.warmup, 3)
            .num("duration_s", m.secs, 3)
            .num("publish_rate", m.publish, 1)
            .num("deliver_rate", m.deliver, 1)
            .num("confirm_rate", m.confirm, 1)
            .opt_num("publish_median", publish_median, 1)
            .opt_num("deliver_median", deliver_median, 1)
            .int("sent", t.published as i64)
            .int("received", t.delivered as i64)
            .int("confirmed", t.confirmed as i64)
            .int("nacked", t.nacked as i64)
            .int("accepted", r.accepted as i64)
            .int("multi_frame", r.multi_frame as i64)
            .int("odd_bodies", r.odd_bodies as i64)
            .int("receiver_flows", r.flows as i64)
            .int("backlog", t.backlog(1))
            .opt_int("queue_left", self.queue_left.map(|q| q as i64))
            .num("wait_credit_s", s.wait_credit.as_secs_f64(), 3)
            .num("wait_window_s", s.wait_window.as_secs_f64(), 3)
            .num("wait_outcomes_s", s.wait_outcomes.as_secs_f64(), 3)
            .cpu(&self.cpu)
            .num("cpu_us_per_msg", self.cpu_us_per_msg(), 3)
            .raw("samples", &report::json_array(&samples));
        self.json_tail(&mut o)
    }
}
