//! `warren-loadgen fleet`: many connections with a little traffic each, the
//! shape of a fleet of devices or services rather than one fast pipe.
//!
//! `--connections N` publisher connections (one channel each, in confirm
//! mode) each publish `--rate-per-conn R` messages per second (default 1) of
//! `--size` bytes (default 16) through the default exchange, publisher `i`
//! to queue `i % Q`; `--consumers C` consumer connections (one channel, one
//! consumer each) consume queue `c % Q`. `--queues Q` defaults to one per
//! consumer. The queues are declared fresh (`loadgen-<pid>-<q>`, deleted at
//! the end), not durable; `--durable` makes them durable and the messages
//! persistent (delivery-mode 2).
//!
//! Schedule: message `k` of publisher `i` is due at `start + i * P / N + k *
//! P` with the period `P = 1 / R`: the publishers' sends are phase-shifted
//! so that the total `N * R` msg/s is spread evenly over each period instead
//! of arriving in one burst per second. As in `latency`, each body carries
//! its *scheduled* time (CLOCK_MONOTONIC ns), the publisher number and a
//! run tag (the pid): end-to-end latency is delivery time minus scheduled
//! time, so a message that waited to be sent counts its wait (no
//! coordinated omission), and confirm latency is basic.ack time minus
//! scheduled time. How late the sends were is reported as the "send lag".
//! Only messages scheduled after `--warmup` and before its end plus
//! `--duration` are measured; the run then drains (at most `--drain` s)
//! until every message is confirmed and delivered. If some are not (the
//! broker fell behind), the run fails: the latencies of the messages that
//! arrived say nothing of those that did not.
//!
//! Consumers: manual acks with basic.qos prefetch `--prefetch` (default
//! 100), and one basic.ack `multiple` for the last delivery of each socket
//! read. At a few messages per second per consumer nearly every read holds
//! one delivery, so this is a client that acks each message as it is
//! processed (the common application pattern), except that deliveries that
//! arrive together are settled together, as a client library's batching
//! would do.
//!
//! Threads: `--threads T` (default 2) threads, each running one epoll event
//! loop (mio, edge-triggered, non-blocking sockets) over its share of the
//! connections (publisher `i` and consumer `c` go to thread `i % T` and `c %
//! T`), not a thread per connection: 11,000 connections at 10,000 msg/s must
//! leave the broker its CPU on a small machine. A publisher's turn comes from
//! a timerfd armed at the next due send (epoll_wait's millisecond timeout
//! would add up to a millisecond of send lag); one `write()` per due message,
//! one `read()` per readable socket (a short read means the socket is
//! drained: no extra read to see EAGAIN).
//!
//! Opening: every connection does its handshake in its thread's event loop
//! (connect, protocol header, start-ok with PLAIN, tune-ok with heartbeat 0,
//! connection.open, channel.open, then confirm.select for a publisher or
//! basic.qos + basic.consume for a consumer), consumers first, with at most
//! `--open-concurrency` handshakes in flight over all threads. A connect
//! that is refused or reset, a connection closed during the handshake (not
//! for bad credentials: 403/530 are final) and a handshake that takes over
//! `--handshake-timeout` seconds (a broker out of file descriptors may
//! accept TCP connections it never serves) are retried up to
//! `--connect-retries` times with exponential back-off (100 ms doubling, at
//! most 3 s, with jitter). The first connection that runs out of retries
//! stops the opening and the run (exit status 1, the JSON says how many
//! opened). Each connection is one file descriptor, so RLIMIT_NOFILE is
//! raised to its hard limit as in `connections`.
//!
//! With `--pid PID` (for RabbitMQ: the beam.smp process): VmRSS before
//! opening (after the queues are declared), after opening (`--settle` s
//! later) and at the end of the measured window, RSS growth per connection,
//! and the broker's CPU over the measured window from
//! `/proc/PID/task/*/schedstat` ([`SchedStat`]: exact nanoseconds on CPU,
//! unlike the utime/stime clock ticks) as percent of one core, µs per
//! message and wake-ups per message (messages published in the window).
//! The loadgen's own CPU (getrusage) over the window is reported too, to see
//! whether it left the broker enough of the machine.
//!
//! Output: a line per second on stderr (opening progress, then messages
//! sent/confirmed/delivered in that second with p50/p99/max latency), and at
//! the end a table on stdout (or one JSON line with `--json`). Ctrl-C stops
//! early and still reports. Exit status: 0 if every connection opened and
//! stayed open, no error occurred, every message was confirmed and
//! delivered within `--drain` and measured ones arrived (were confirmed,
//! without consumers); 1 otherwise; 2 on bad arguments.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use warren::protocol::constants::{self, FRAME_BODY, FRAME_HEARTBEAT, FRAME_METHOD};
use warren::protocol::methods::*;
use warren::protocol::{check_frame, write_method, Method, PROTOCOL_HEADER};

use crate::client::{client_properties, method_id, CHANNEL};
use crate::connections::{catch_sigint, interrupted, raise_nofile_limit, vm_rss_kb};
use crate::latency::{histogram, read_stamp, stamp, tight_timer_slack, MIN_SIZE, PERCENTILES};
use crate::report::{self, group, rate, BrokerCpu, CpuTime, JsonObject, Report, SchedStat};
use crate::uri::AmqpUri;
use crate::workers::{
    deliver_tag, encode_publish, filler, properties, ExchangeType, Template, Topology,
};
use crate::CommonArgs;

/// Flags of `fleet`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publisher connections (one channel each, in confirm mode).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Messages per second each publisher sends (fixed schedule, phase-shifted
    /// across publishers).
    #[arg(long, default_value_t = 1.0)]
    pub rate_per_conn: f64,
    /// Consumer connections (one channel and one consumer each; manual acks).
    #[arg(long, default_value_t = 1_000)]
    pub consumers: usize,
    /// Queues (default: one per consumer, at least 1). Publisher i publishes
    /// to queue i % N, consumer c consumes queue c % N.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub queues: Option<u64>,
    /// basic.qos prefetch-count of each consumer.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,
    /// Durable queues and persistent messages (delivery-mode 2).
    #[arg(long)]
    pub durable: bool,
    /// Message body size in bytes (at least 16: the body carries the
    /// scheduled send time).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(MIN_SIZE..=(1 << 20)))]
    pub size: u64,
    /// Measured seconds (after the warmup).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds sent first and not counted.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds to wait after the last send for confirms and deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Event-loop threads, each serving its share of the connections.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub threads: u64,
    /// Handshakes in flight at once while opening (over all threads).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub open_concurrency: u64,
    /// Retries of a connection whose connect is refused or reset, or whose
    /// handshake is closed or times out.
    #[arg(long, default_value_t = 5)]
    pub connect_retries: u32,
    /// Seconds a connection may take from connect to ready before it is
    /// retried.
    #[arg(long, default_value_t = 15.0)]
    pub handshake_timeout: f64,
    /// Seconds to wait after the last connection opened before reading the
    /// broker's memory and starting to publish.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// The broker's process id (for RabbitMQ: the beam.smp process): report
    /// its VmRSS and, over the measured window, its CPU use.
    #[arg(long)]
    pub pid: Option<u32>,
}

/// The event-loop token of a thread's timerfd (connections use their index).
const TIMER: Token = Token(usize::MAX);

/// Size of a thread's read buffer (grown for a bigger frame).
const READ_BUF: usize = 64 * 1024;

/// How long the connections may take to close at the end.
const CLOSE_NS: u64 = 5_000_000_000;

/// Longest wait in epoll_wait: how often a thread looks at the shared flags.
const TICK: Duration = Duration::from_millis(20);

/// Most error messages kept (the others are counted).
const MAX_ERRORS: usize = 10;

/// Now on CLOCK_MONOTONIC in ns: the clock of the body timestamps (shared by
/// all threads) and of the timerfds.
#[inline]
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What every thread needs to know, fixed before they start.
struct Plan {
    addr: SocketAddr,
    uri: AmqpUri,
    publishers: usize,
    consumers: usize,
    queues: Vec<String>,
    /// Time between two sends of one publisher.
    period_ns: u64,
    size: usize,
    /// Content properties as on the wire (delivery-mode 2 with --durable).
    properties: Vec<u8>,
    prefetch: u16,
    threads: usize,
    /// Handshakes in flight per thread.
    concurrency: usize,
    retries: u32,
    handshake_ns: u64,
    /// Run tag in every body (the pid).
    tag: u32,
}

/// Counts of one thread (or summed over all).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// Connections ready (handshake done).
    opened: u64,
    /// Connections given up after their retries.
    failed: u64,
    /// Connection attempts retried.
    retries: u64,
    /// Ready connections closed by the broker or by a socket error.
    lost: u64,
    /// Messages written.
    published: u64,
    /// Confirms received (acks and nacks).
    confirmed: u64,
    nacked: u64,
    /// basic.deliver received.
    delivered: u64,
    /// Deliveries without this run's body stamp.
    foreign: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.opened += o.opened;
        self.failed += o.failed;
        self.retries += o.retries;
        self.lost += o.lost;
        self.published += o.published;
        self.confirmed += o.confirmed;
        self.nacked += o.nacked;
        self.delivered += o.delivered;
        self.foreign += o.foreign;
    }
}

/// A thread's [`Tally`] for the orchestrating thread (one writer: the
/// event loop; relaxed stores, no read-modify-write), and its latencies
/// since the last per-second line. Aligned to keep threads off each
/// other's cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Slot {
    counts: [AtomicU64; 9],
    interval: Mutex<Option<Histogram<u64>>>,
}

impl Slot {
    fn store(&self, t: &Tally) {
        let v = [
            t.opened,
            t.failed,
            t.retries,
            t.lost,
            t.published,
            t.confirmed,
            t.nacked,
            t.delivered,
            t.foreign,
        ];
        for (c, v) in self.counts.iter().zip(v) {
            c.store(v, Ordering::Relaxed);
        }
    }

    fn load(&self) -> Tally {
        let v: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        Tally {
            opened: v[0],
            failed: v[1],
            retries: v[2],
            lost: v[3],
            published: v[4],
            confirmed: v[5],
            nacked: v[6],
            delivered: v[7],
            foreign: v[8],
        }
    }
}

/// The first [`MAX_ERRORS`] errors, and how many more there were.
#[derive(Default)]
struct ErrorLog {
    first: Vec<String>,
    more: u64,
}

/// State shared by the orchestrating thread and the event loops.
struct Shared {
    plan: Plan,
    /// Scheduled time of the first sends (mono ns); 0 until the run starts.
    /// Set after `warm_ns` and `end_ns` (release/acquire).
    start_ns: AtomicU64,
    /// Messages scheduled in `[warm_ns, end_ns)` are measured; none is
    /// scheduled at or after `end_ns`.
    warm_ns: AtomicU64,
    end_ns: AtomicU64,
    /// Close every connection and stop.
    close: AtomicBool,
    /// A connection ran out of retries: stop opening.
    give_up: AtomicBool,
    slots: Vec<Slot>,
    errors: Mutex<ErrorLog>,
}

impl Shared {
    fn error(&self, e: String) {
        let mut log = self.errors.lock().unwrap();
        if log.first.len() < MAX_ERRORS {
            log.first.push(e);
        } else {
            log.more += 1;
        }
    }

    fn errors(&self) -> Vec<String> {
        let log = self.errors.lock().unwrap();
        let mut v = log.first.clone();
        if log.more > 0 {
            v.push(format!("... and {} more errors", group(log.more)));
        }
        v
    }

    fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for s in &self.slots {
            t += s.load();
        }
        t
    }
}

/// The run's schedule as a thread sees it (from [`Shared`]).
#[derive(Clone, Copy, Debug)]
struct Times {
    start: u64,
    warm: u64,
    end: u64,
}

impl Times {
    #[inline]
    fn measured(&self, sched: u64) -> bool {
        sched >= self.warm && sched < self.end
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Not connected: waiting for its turn to open, or for its retry.
    Idle,
    /// TCP connect in progress.
    Connecting,
    /// Protocol header sent: waiting for connection.start.
    Start,
    /// start-ok sent: waiting for connection.tune.
    Tune,
    /// tune-ok and connection.open sent.
    OpenOk,
    /// channel.open sent.
    ChannelOk,
    /// confirm.select (publisher) or basic.qos (consumer) sent.
    SetupOk,
    /// basic.consume sent.
    ConsumeOk,
    Ready,
    /// connection.close sent at the end of the run.
    Closing,
    /// Closed, lost or given up: no socket.
    Done,
}

impl St {
    fn handshaking(self) -> bool {
        matches!(
            self,
            St::Connecting
                | St::Start
                | St::Tune
                | St::OpenOk
                | St::ChannelOk
                | St::SetupOk
                | St::ConsumeOk
        )
    }
}

/// One connection of the fleet.
struct Link {
    /// Publisher or consumer number (over all threads).
    idx: usize,
    publisher: bool,
    queue: usize,
    /// Publisher: offset of its sends within each period (ns).
    phase_ns: u64,
    st: St,
    sock: Option<TcpStream>,
    /// Connection attempts so far.
    attempts: u32,
    /// When the handshake times out (mono ns).
    deadline: u64,
    frame_max: u32,
    /// connection.blocked by the broker.
    blocked: bool,
    /// A partial frame left by the last read.
    partial: Vec<u8>,
    /// Bytes the socket did not take yet (sent when it is writable).
    pending: Vec<u8>,
    /// Publisher: the next message of its schedule.
    next_k: u64,
    /// Publisher: delivery tag of the last publish (1, 2, ... in order).
    tag: u64,
    /// Publisher: (delivery tag, scheduled time) of unconfirmed publishes.
    unconfirmed: VecDeque<(u64, u64)>,
    /// Consumer: delivery tag to ack (multiple) after this read; 0 = none.
    ack_tag: u64,
    /// Consumer: a basic.deliver came and its first body frame did not yet.
    want_body: bool,
}

impl Link {
    fn new(idx: usize, publisher: bool, queue: usize, phase_ns: u64) -> Link {
        Link {
            idx,
            publisher,
            queue,
            phase_ns,
            st: St::Idle,
            sock: None,
            attempts: 0,
            deadline: 0,
            frame_max: 0,
            blocked: false,
            partial: Vec::new(),
            pending: Vec::new(),
            next_k: 0,
            tag: 0,
            unconfirmed: VecDeque::new(),
            ack_tag: 0,
            want_body: false,
        }
    }

    fn name(&self) -> String {
        let role = if self.publisher {
            "publisher"
        } else {
            "consumer"
        };
        format!("{role} {}", self.idx)
    }
}

/// Why a connection failed, and whether another attempt may succeed.
#[derive(Debug)]
struct LinkErr {
    msg: String,
    retry: bool,
}

impl LinkErr {
    fn fatal(msg: impl Into<String>) -> LinkErr {
        LinkErr {
            msg: msg.into(),
            retry: false,
        }
    }
}

/// A socket error; the ones a busy broker causes (refused, reset, closed,
/// timed out) may be retried while opening.
fn io_err(e: io::Error) -> LinkErr {
    use io::ErrorKind::*;
    let retry = matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | UnexpectedEof
            | BrokenPipe
            | TimedOut
            | AddrNotAvailable
            | NotConnected
    );
    let msg = if e.kind() == UnexpectedEof {
        "broker closed the socket".to_string()
    } else {
        format!("I/O error: {e}")
    };
    LinkErr { msg, retry }
}

/// Writes `data` to the link's socket; what it does not take now waits in
/// `pending` (after anything already waiting there).
fn write_link(link: &mut Link, data: &[u8]) -> io::Result<()> {
    if !link.pending.is_empty() {
        link.pending.extend_from_slice(data);
        return flush(link);
    }
    let Some(sock) = link.sock.as_mut() else {
        return Ok(());
    };
    let mut off = 0;
    while off < data.len() {
        match sock.write(&data[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                link.pending.extend_from_slice(&data[off..]);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes what waits in `pending`, as far as the socket takes it.
fn flush(link: &mut Link) -> io::Result<()> {
    let Some(sock) = link.sock.as_mut() else {
        return Ok(());
    };
    let mut off = 0;
    while off < link.pending.len() {
        match sock.write(&link.pending[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    link.pending.drain(..off);
    Ok(())
}

/// basic.ack on channel [`CHANNEL`], multiple, as on the wire (21 bytes):
/// written for every read that brought deliveries, so built by hand.
fn ack_frame(tag: u64) -> [u8; 21] {
    let mut f = [0u8; 21];
    f[0] = FRAME_METHOD;
    f[1..3].copy_from_slice(&CHANNEL.to_be_bytes());
    f[3..7].copy_from_slice(&13u32.to_be_bytes());
    f[7..9].copy_from_slice(&60u16.to_be_bytes());
    f[9..11].copy_from_slice(&80u16.to_be_bytes());
    f[11..19].copy_from_slice(&tag.to_be_bytes());
    f[19] = 1;
    f[20] = constants::FRAME_END;
    f
}

/// A timerfd on CLOCK_MONOTONIC, armed at absolute times: wakes the event
/// loop when the next publisher is due, to the microsecond.
struct Timer {
    fd: OwnedFd,
    /// The time it is armed for (0 = disarmed).
    armed: u64,
}

impl Timer {
    fn new() -> io::Result<Timer> {
        // SAFETY: timerfd_create takes flags and returns a new descriptor.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Timer { fd, armed: 0 })
    }

    /// Arms the timer for `at_ns` (mono ns; 0 disarms). Re-arming also
    /// resets its expiry count, so it need not be read.
    fn arm(&mut self, at_ns: u64) {
        if at_ns == self.armed {
            return;
        }
        self.armed = at_ns;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
        unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            );
        }
    }
}

/// The latencies a thread measured.
struct Hists {
    /// End to end: delivery time - scheduled time (measured messages).
    e2e: Histogram<u64>,
    /// basic.ack time - scheduled time (measured messages).
    confirm: Histogram<u64>,
    /// Send time - scheduled time (measured messages).
    lag: Histogram<u64>,
}

/// One thread's event loop over its share of the connections.
struct EventLoop<'a> {
    sh: &'a Shared,
    slot: &'a Slot,
    poll: Poll,
    timer: Timer,
    links: Vec<Link>,
    /// Indexes of the publishers in `links`, by phase.
    pubs: Vec<usize>,
    /// The next publisher turn: period `cycle`, publisher `pubs[pos]`.
    cycle: u64,
    pos: usize,
    /// Connections not opened yet (consumers first).
    to_open: VecDeque<usize>,
    /// Connections to try again, by time (mono ns).
    retry_at: BinaryHeap<Reverse<(u64, usize)>>,
    /// Handshakes in progress.
    in_flight: usize,
    /// Connections sent connection.close and not closed yet.
    closing: usize,
    /// The encoded basic.publish per queue (made on first use).
    templates: Vec<Option<Template>>,
    /// Scratch for encoding.
    out: Vec<u8>,
    /// The schedule, once the run started.
    times: Option<Times>,
    hists: Hists,
    /// End-to-end latencies of this iteration, for the per-second lines.
    batch: Vec<u64>,
    n: Tally,
    /// xorshift state for the retry jitter.
    rng: u64,
}

impl<'a> EventLoop<'a> {
    fn new(sh: &'a Shared, t: usize) -> io::Result<EventLoop<'a>> {
        let plan = &sh.plan;
        let poll = Poll::new()?;
        let timer = Timer::new()?;
        poll.registry().register(
            &mut SourceFd(&timer.fd.as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        let mut links = Vec::new();
        for c in (t..plan.consumers).step_by(plan.threads) {
            links.push(Link::new(c, false, c % plan.queues.len(), 0));
        }
        let mut pubs = Vec::new();
        for p in (t..plan.publishers).step_by(plan.threads) {
            let phase = (p as u128 * plan.period_ns as u128 / plan.publishers as u128) as u64;
            pubs.push(links.len());
            links.push(Link::new(p, true, p % plan.queues.len(), phase));
        }
        Ok(EventLoop {
            sh,
            slot: &sh.slots[t],
            poll,
            timer,
            to_open: (0..links.len()).collect(),
            links,
            pubs,
            cycle: 0,
            pos: 0,
            retry_at: BinaryHeap::new(),
            in_flight: 0,
            closing: 0,
            templates: vec![None; plan.queues.len()],
            out: Vec::with_capacity(4096),
            times: None,
            hists: Hists {
                e2e: histogram(),
                confirm: histogram(),
                lag: histogram(),
            },
            batch: Vec::with_capacity(1024),
            n: Tally::default(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1),
        })
    }

    /// Runs until the orchestrating thread says close (and the connections
    /// closed, or [`CLOSE_NS`] passed).
    fn run(mut self) -> Result<Hists, String> {
        tight_timer_slack();
        let mut events = Events::with_capacity(1024);
        let mut rbuf = vec![0u8; READ_BUF];
        let mut close_by: Option<u64> = None;
        let mut next_scan = 0u64;
        loop {
            let now = mono_ns();
            if self.times.is_none() {
                let start = self.sh.start_ns.load(Ordering::Acquire);
                if start != 0 {
                    self.times = Some(Times {
                        start,
                        warm: self.sh.warm_ns.load(Ordering::Relaxed),
                        end: self.sh.end_ns.load(Ordering::Relaxed),
                    });
                }
            }
            if close_by.is_none() && self.sh.close.load(Ordering::Relaxed) {
                self.close_all();
                close_by = Some(now + CLOSE_NS);
            }
            if let Some(by) = close_by {
                if self.closing == 0 || now >= by {
                    break;
                }
            } else {
                if self.in_flight > 0 && now >= next_scan {
                    self.time_out_handshakes(now);
                    next_scan = now + 100_000_000;
                }
                self.open_more(now);
                self.fire_due(now);
            }
            let next = if close_by.is_none() {
                self.next_due().unwrap_or(0)
            } else {
                0
            };
            self.timer.arm(next);
            self.report();
            let mut timeout = TICK;
            if self.may_open() {
                if let Some(Reverse((at, _))) = self.retry_at.peek() {
                    timeout = timeout.min(Duration::from_nanos(at.saturating_sub(now)));
                }
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("epoll_wait: {e}"));
                }
            }
            for ev in events.iter() {
                if ev.token() == TIMER {
                    continue;
                }
                self.on_event(ev.token().0, ev, &mut rbuf);
            }
        }
        self.report();
        Ok(self.hists)
    }

    /// Hands the counts and the latencies of this iteration to the
    /// orchestrating thread.
    fn report(&mut self) {
        self.slot.store(&self.n);
        if !self.batch.is_empty() {
            let mut h = self.slot.interval.lock().unwrap();
            let h = h.get_or_insert_with(histogram);
            for &v in &self.batch {
                h.saturating_record(v);
            }
            self.batch.clear();
        }
    }

    // --- opening ------------------------------------------------------------

    /// Whether another handshake may start now.
    fn may_open(&self) -> bool {
        self.in_flight < self.sh.plan.concurrency && !self.sh.give_up.load(Ordering::Relaxed)
    }

    /// Starts handshakes (retries that are due first) up to the concurrency.
    fn open_more(&mut self, now: u64) {
        while self.may_open() {
            let i = match self.retry_at.peek() {
                Some(&Reverse((at, i))) if at <= now => {
                    self.retry_at.pop();
                    i
                }
                _ => match self.to_open.pop_front() {
                    Some(i) => i,
                    None => break,
                },
            };
            self.connect(i, now);
        }
    }

    fn connect(&mut self, i: usize, now: u64) {
        let sh: &'a Shared = self.sh;
        let plan = &sh.plan;
        let link = &mut self.links[i];
        link.attempts += 1;
        link.st = St::Connecting;
        link.deadline = now + plan.handshake_ns;
        link.frame_max = 0;
        link.blocked = false;
        self.in_flight += 1;
        match TcpStream::connect(plan.addr) {
            Ok(mut s) => {
                match self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    Ok(()) => link.sock = Some(s),
                    Err(e) => self.fail(i, LinkErr::fatal(format!("epoll_ctl: {e}")), now),
                }
            }
            Err(e) => {
                let err = if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    LinkErr::fatal(format!(
                        "{e}: out of file descriptors (raise the hard limit: ulimit -Hn)"
                    ))
                } else {
                    io_err(e)
                };
                self.fail(i, err, now);
            }
        }
    }

    /// Retries (or gives up on) the handshakes that took too long.
    fn time_out_handshakes(&mut self, now: u64) {
        for i in 0..self.links.len() {
            let l = &self.links[i];
            if l.st.handshaking() && now >= l.deadline {
                let mut msg = format!(
                    "handshake timed out after {} s (waiting in state {:?})",
                    self.sh.plan.handshake_ns as f64 / 1e9,
                    l.st
                );
                if matches!(l.st, St::Connecting | St::Start) {
                    msg += ": the broker did not accept or serve the connection; out of file \
                            descriptors? (RabbitMQ: see the socket limit in `rabbitmqctl status`)";
                }
                self.fail(i, LinkErr { msg, retry: true }, now);
            }
        }
    }

    /// A connection failed: retried later if it was opening and may
    /// succeed, else given up (stops the opening) or counted as lost.
    fn fail(&mut self, i: usize, err: LinkErr, now: u64) {
        let sh: &'a Shared = self.sh;
        let plan = &sh.plan;
        let link = &mut self.links[i];
        link.sock = None;
        link.partial.clear();
        link.pending.clear();
        link.want_body = false;
        link.ack_tag = 0;
        match link.st {
            st if st.handshaking() => {
                self.in_flight -= 1;
                if err.retry && link.attempts <= plan.retries {
                    self.n.retries += 1;
                    link.st = St::Idle;
                    // 100 ms doubling, at most 3 s, +-25% jitter.
                    let base = (100_000_000u64 << (link.attempts - 1).min(5)).min(3_000_000_000);
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    let jitter = self.rng % (base / 2 + 1);
                    self.retry_at
                        .push(Reverse((now + base - base / 4 + jitter, i)));
                } else {
                    link.st = St::Done;
                    self.n.failed += 1;
                    self.sh.error(format!(
                        "{} could not be opened after {} attempt{}: {}",
                        link.name(),
                        link.attempts,
                        if link.attempts == 1 { "" } else { "s" },
                        err.msg
                    ));
                    self.sh.give_up.store(true, Ordering::Relaxed);
                }
            }
            St::Ready => {
                link.st = St::Done;
                self.n.lost += 1;
                self.sh.error(format!("{} lost: {}", link.name(), err.msg));
            }
            St::Closing => {
                link.st = St::Done;
                self.closing -= 1;
            }
            _ => link.st = St::Done,
        }
    }

    /// The connection finished its handshake.
    fn ready(&mut self, i: usize) {
        self.links[i].st = St::Ready;
        self.in_flight -= 1;
        self.n.opened += 1;
    }

    /// Encodes `m` on `channel` and writes it.
    fn send(&mut self, i: usize, channel: u16, m: &Method) -> Result<(), LinkErr> {
        self.out.clear();
        write_method(&mut self.out, channel, m);
        write_link(&mut self.links[i], &self.out).map_err(io_err)
    }

    /// The socket of a connecting link reported something: connected, or
    /// failed.
    fn on_connect(&mut self, i: usize, now: u64) {
        let Some(sock) = self.links[i].sock.as_ref() else {
            return;
        };
        match sock.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.fail(i, io_err(e), now),
        }
        match sock.peer_addr() {
            Ok(_) => {}
            // Not connected yet (a spurious wake-up).
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.fail(i, io_err(e), now),
        }
        let _ = sock.set_nodelay(true);
        self.links[i].st = St::Start;
        if let Err(e) = write_link(&mut self.links[i], PROTOCOL_HEADER) {
            self.fail(i, io_err(e), now);
        }
    }

    /// A method that is not a delivery or a confirm: the handshake steps,
    /// and the rare ones (close, blocked, cancel).
    fn control(&mut self, i: usize, m: Method, now: u64) -> Result<(), LinkErr> {
        let st = self.links[i].st;
        match m {
            Method::ConnectionClose(c) => {
                let _ = self.send(i, 0, &ConnectionCloseOk::default().into());
                if st == St::Closing {
                    self.closed(i);
                    return Ok(());
                }
                return Err(LinkErr {
                    msg: format!(
                        "connection closed by broker: {} {}",
                        c.reply_code,
                        String::from_utf8_lossy(&c.reply_text)
                    ),
                    // Bad credentials or vhost will not get better.
                    retry: st.handshaking() && !matches!(c.reply_code, 403 | 530),
                });
            }
            Method::ConnectionCloseOk(_) if st == St::Closing => {
                self.closed(i);
                return Ok(());
            }
            Method::ConnectionBlocked(_) => {
                self.links[i].blocked = true;
                return Ok(());
            }
            Method::ConnectionUnblocked(_) => {
                self.links[i].blocked = false;
                self.fire(i, now);
                return Ok(());
            }
            _ if st == St::Closing => return Ok(()),
            Method::ChannelClose(c) => {
                let _ = self.send(i, CHANNEL, &ChannelCloseOk::default().into());
                return Err(LinkErr::fatal(format!(
                    "channel closed by broker: {} {}",
                    c.reply_code,
                    String::from_utf8_lossy(&c.reply_text)
                )));
            }
            Method::BasicCancel(_) => {
                return Err(LinkErr::fatal(
                    "consumer cancelled by the broker (queue deleted?)",
                ))
            }
            _ => {}
        }
        let sh: &'a Shared = self.sh;
        let plan = &sh.plan;
        let publisher = self.links[i].publisher;
        match (st, m) {
            (St::Start, Method::ConnectionStart(s)) => {
                if !s.mechanisms.split(|&b| b == b' ').any(|m| m == b"PLAIN") {
                    return Err(LinkErr::fatal(format!(
                        "broker does not offer PLAIN (mechanisms: {})",
                        String::from_utf8_lossy(&s.mechanisms)
                    )));
                }
                let mut response = vec![0];
                response.extend_from_slice(plan.uri.user.as_bytes());
                response.push(0);
                response.extend_from_slice(plan.uri.password.as_bytes());
                let name = format!("warren-loadgen fleet {}", self.links[i].name());
                let ok = ConnectionStartOk {
                    client_properties: client_properties(&name),
                    mechanism: Bytes::from_static(b"PLAIN"),
                    response: Bytes::from(response),
                    locale: Bytes::from_static(b"en_US"),
                };
                self.links[i].st = St::Tune;
                self.send(i, 0, &ok.into())
            }
            (St::Tune, Method::ConnectionTune(t)) => {
                self.links[i].frame_max = t.frame_max;
                let tune_ok = ConnectionTuneOk {
                    channel_max: t.channel_max,
                    frame_max: t.frame_max,
                    heartbeat: 0,
                };
                let open = ConnectionOpen {
                    virtual_host: Bytes::copy_from_slice(plan.uri.vhost.as_bytes()),
                    ..Default::default()
                };
                self.out.clear();
                write_method(&mut self.out, 0, &tune_ok.into());
                write_method(&mut self.out, 0, &open.into());
                self.links[i].st = St::OpenOk;
                write_link(&mut self.links[i], &self.out).map_err(io_err)
            }
            (St::OpenOk, Method::ConnectionOpenOk(_)) => {
                self.links[i].st = St::ChannelOk;
                self.send(i, CHANNEL, &ChannelOpen::default().into())
            }
            (St::ChannelOk, Method::ChannelOpenOk(_)) => {
                self.links[i].st = St::SetupOk;
                if publisher {
                    self.send(i, CHANNEL, &ConfirmSelect::default().into())
                } else {
                    let qos = BasicQos {
                        prefetch_count: plan.prefetch,
                        ..Default::default()
                    };
                    self.send(i, CHANNEL, &qos.into())
                }
            }
            (St::SetupOk, Method::ConfirmSelectOk(_)) if publisher => {
                self.ready(i);
                Ok(())
            }
            (St::SetupOk, Method::BasicQosOk(_)) if !publisher => {
                let l = &self.links[i];
                let consume = BasicConsume {
                    queue: Bytes::copy_from_slice(plan.queues[l.queue].as_bytes()),
                    consumer_tag: Bytes::from(format!("warren-loadgen-fleet-{}", l.idx)),
                    ..Default::default()
                };
                self.links[i].st = St::ConsumeOk;
                self.send(i, CHANNEL, &consume.into())
            }
            (St::ConsumeOk, Method::BasicConsumeOk(_)) => {
                self.ready(i);
                Ok(())
            }
            (st, m) => Err(LinkErr::fatal(format!(
                "unexpected {} from the broker (connection in state {st:?})",
                m.name()
            ))),
        }
    }

    // --- the run ------------------------------------------------------------

    /// When the next publisher turn is due (None: no more sends).
    fn next_due(&self) -> Option<u64> {
        let t = self.times?;
        let &i = self.pubs.get(self.pos)?;
        let due = t.start + self.cycle * self.sh.plan.period_ns + self.links[i].phase_ns;
        (due < t.end).then_some(due)
    }

    /// Gives every publisher whose turn has come its turn.
    fn fire_due(&mut self, now: u64) {
        while let Some(due) = self.next_due() {
            if due > now {
                break;
            }
            self.fire(self.pubs[self.pos], now);
            self.pos += 1;
            if self.pos == self.pubs.len() {
                self.pos = 0;
                self.cycle += 1;
            }
        }
    }

    /// Publisher `i` sends every message of its schedule that is due by
    /// `now` (normally one; more after a blocked or full socket), in one
    /// write.
    fn fire(&mut self, i: usize, now: u64) {
        let Some(t) = self.times else {
            return;
        };
        let sh: &'a Shared = self.sh;
        let plan = &sh.plan;
        let period = plan.period_ns;
        let link = &mut self.links[i];
        if !link.publisher || link.st != St::Ready || link.blocked || !link.pending.is_empty() {
            return;
        }
        let first = t.start + link.phase_ns;
        if now < first {
            return;
        }
        let total = t.end.saturating_sub(first).div_ceil(period);
        let due = ((now - first) / period + 1).min(total);
        if due <= link.next_k {
            return;
        }
        let tpl = self.templates[link.queue].get_or_insert_with(|| {
            encode_publish(
                "",
                &plan.queues[link.queue],
                &plan.properties,
                &filler(plan.size),
                link.frame_max,
            )
        });
        self.out.clear();
        for k in link.next_k..due {
            let sched = first + k * period;
            let at = self.out.len() + tpl.body_at;
            self.out.extend_from_slice(&tpl.bytes);
            stamp(&mut self.out[at..at + 16], sched, link.idx as u64, plan.tag);
            link.tag += 1;
            link.unconfirmed.push_back((link.tag, sched));
            if t.measured(sched) {
                self.hists
                    .lag
                    .saturating_record(now.saturating_sub(sched).max(1));
            }
        }
        self.n.published += due - link.next_k;
        link.next_k = due;
        if let Err(e) = write_link(link, &self.out) {
            self.fail(i, io_err(e), now);
        }
    }

    /// basic.ack / basic.nack from the broker.
    fn confirm(&mut self, i: usize, tag: u64, multiple: bool, nack: bool, now: u64) {
        let link = &mut self.links[i];
        let mut resolved = |sched: u64| {
            self.n.confirmed += 1;
            if nack {
                self.n.nacked += 1;
            }
            if self.times.is_some_and(|t| t.measured(sched)) {
                self.hists
                    .confirm
                    .saturating_record(now.saturating_sub(sched).max(1));
            }
        };
        if multiple {
            while let Some(&(t, sched)) = link.unconfirmed.front() {
                if t > tag {
                    break;
                }
                link.unconfirmed.pop_front();
                resolved(sched);
            }
        } else if let Some(at) = link.unconfirmed.iter().position(|&(t, _)| t == tag) {
            let (_, sched) = link.unconfirmed.remove(at).unwrap();
            resolved(sched);
        }
    }

    /// The first body frame of a delivery: its latency.
    #[inline]
    fn body(&mut self, payload: &[u8], now: u64) {
        let Some(sched) = read_stamp(payload, self.sh.plan.tag) else {
            self.n.foreign += 1;
            return;
        };
        let lat = now.saturating_sub(sched).max(1);
        if self.times.is_some_and(|t| t.measured(sched)) {
            self.hists.e2e.saturating_record(lat);
        }
        self.batch.push(lat);
    }

    /// Handles the frames in `data` (read at `now`); returns how many bytes
    /// they took (the rest is a partial frame).
    fn frames(&mut self, i: usize, data: &[u8], now: u64) -> Result<usize, LinkErr> {
        let mut off = 0;
        loop {
            let h = match check_frame(&data[off..], 0) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) if data[off..].starts_with(b"AMQP") => {
                    return Err(LinkErr::fatal(format!(
                        "broker rejected the protocol header and answered {:?}",
                        &data[off..data.len().min(off + 8)]
                    )))
                }
                Err(e) => return Err(LinkErr::fatal(format!("bad frame from broker: {e}"))),
            };
            let p = &data[off + 7..off + 7 + h.size as usize];
            off += h.total_len();
            match h.kind {
                FRAME_METHOD => match method_id(p) {
                    (60, 60) => {
                        let tag = deliver_tag(p)
                            .ok_or_else(|| LinkErr::fatal("truncated basic.deliver"))?;
                        self.n.delivered += 1;
                        let link = &mut self.links[i];
                        link.ack_tag = tag;
                        link.want_body = true;
                    }
                    (60, 80) | (60, 120) => {
                        let b = p
                            .get(4..13)
                            .ok_or_else(|| LinkErr::fatal("truncated basic.ack"))?;
                        let tag = u64::from_be_bytes(b[..8].try_into().unwrap());
                        self.confirm(i, tag, b[8] & 1 != 0, method_id(p).1 == 120, now);
                    }
                    _ => {
                        let m = Method::decode(Bytes::copy_from_slice(p)).map_err(|e| {
                            LinkErr::fatal(format!("undecodable method from broker: {e}"))
                        })?;
                        self.control(i, m, now)?;
                    }
                },
                FRAME_BODY if self.links[i].want_body => {
                    self.links[i].want_body = false;
                    self.body(p, now);
                }
                // Heartbeats are off, but answer one if a broker sends it anyway.
                FRAME_HEARTBEAT => write_link(
                    &mut self.links[i],
                    &[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xCE],
                )
                .map_err(io_err)?,
                _ => {}
            }
            if self.links[i].sock.is_none() {
                break;
            }
        }
        Ok(off)
    }

    /// Reads what the socket has (until a short read), handles the frames
    /// and acks the deliveries that came.
    fn read(&mut self, i: usize, rbuf: &mut Vec<u8>) -> Result<(), LinkErr> {
        let link = &mut self.links[i];
        let mut end = link.partial.len();
        if end > rbuf.len() / 2 {
            rbuf.resize((end * 2).next_power_of_two(), 0);
        }
        rbuf[..end].copy_from_slice(&link.partial);
        link.partial.clear();
        loop {
            let Some(sock) = self.links[i].sock.as_mut() else {
                return Ok(());
            };
            match sock.read(&mut rbuf[end..]) {
                Ok(0) => return Err(io_err(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    end += n;
                    let full = end == rbuf.len();
                    let used = self.frames(i, &rbuf[..end], mono_ns())?;
                    rbuf.copy_within(used..end, 0);
                    end -= used;
                    if end > rbuf.len() / 2 {
                        // A frame bigger than half the buffer.
                        rbuf.resize(rbuf.len() * 2, 0);
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let link = &mut self.links[i];
        link.partial.extend_from_slice(&rbuf[..end]);
        if link.ack_tag != 0 && link.st == St::Ready {
            let f = ack_frame(link.ack_tag);
            link.ack_tag = 0;
            write_link(link, &f).map_err(io_err)?;
        }
        Ok(())
    }

    fn on_event(&mut self, i: usize, ev: &mio::event::Event, rbuf: &mut Vec<u8>) {
        let Some(link) = self.links.get_mut(i) else {
            return;
        };
        match link.st {
            St::Idle | St::Done => {}
            St::Connecting => self.on_connect(i, mono_ns()),
            _ => {
                if ev.is_writable() && !link.pending.is_empty() {
                    if let Err(e) = flush(link) {
                        return self.fail(i, io_err(e), mono_ns());
                    }
                    if link.pending.is_empty() && link.publisher {
                        // Sends held back by the full socket.
                        self.fire(i, mono_ns());
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    if let Err(e) = self.read(i, rbuf) {
                        self.fail(i, e, mono_ns());
                    }
                }
            }
        }
    }

    // --- the end ------------------------------------------------------------

    /// Sends connection.close on every open connection; drops the others.
    fn close_all(&mut self) {
        self.to_open.clear();
        self.retry_at.clear();
        let close = ConnectionClose {
            reply_code: constants::REPLY_SUCCESS,
            reply_text: Bytes::from_static(b"loadgen done"),
            ..Default::default()
        };
        self.out.clear();
        write_method(&mut self.out, 0, &close.into());
        for link in &mut self.links {
            match link.st {
                St::Ready => {
                    if write_link(link, &self.out).is_ok() {
                        link.st = St::Closing;
                        self.closing += 1;
                    } else {
                        link.st = St::Done;
                        link.sock = None;
                    }
                }
                st if st.handshaking() => {
                    link.st = St::Done;
                    link.sock = None;
                    self.in_flight -= 1;
                }
                _ => {}
            }
        }
    }

    /// close-ok (or the broker's own close) arrived after ours.
    fn closed(&mut self, i: usize) {
        let link = &mut self.links[i];
        link.st = St::Done;
        link.sock = None;
        self.closing -= 1;
    }
}

/// Runs the scenario; returns the process exit code.
pub fn run(args: Args) -> i32 {
    let Some(uri) = args.common.validate(
        args.connections > 0
            && args.rate_per_conn > 0.0
            && args.rate_per_conn <= 1e6
            && args.duration > 0.0
            && args.warmup >= 0.0
            && args.drain >= 0.0
            && args.settle >= 0.0
            && args.handshake_timeout > 0.0,
        "--connections, --rate-per-conn (up to 1,000,000), --duration and \
         --handshake-timeout must be > 0; --warmup, --drain and --settle >= 0",
    ) else {
        return 2;
    };
    if uri.tls {
        eprintln!("warren-loadgen: fleet speaks plain TCP only (no amqps://)");
        return 2;
    }
    let addr = match uri.addr().to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) => {
            eprintln!("warren-loadgen: --uri: {}: no address", uri.addr());
            return 2;
        }
        Err(e) => {
            eprintln!("warren-loadgen: --uri: {}: {e}", uri.addr());
            return 2;
        }
    };
    if let Some(pid) = args.pid {
        if let Err(e) = SchedStat::read(pid).and_then(|_| vm_rss_kb(pid)) {
            eprintln!("warren-loadgen: --pid: {e}");
            return 2;
        }
    }
    let total = args.connections + args.consumers;
    let nofile = raise_nofile_limit();
    if let Some(limit) = nofile {
        if total as u64 + 64 > limit {
            eprintln!(
                "warren-loadgen: warning: open-file limit is {limit} (hard limit): \
                 not enough for {} connections; raise it with ulimit -Hn",
                group(total as u64)
            );
        }
    }
    let n_queues = args.queues.map_or(args.consumers.max(1), |q| q as usize);
    if args.consumers < n_queues {
        eprintln!(
            "warren-loadgen: warning: {} queues but {} consumers: the queues without a consumer keep their messages",
            group(n_queues as u64),
            group(args.consumers as u64)
        );
    }

    // Queues first, then the broker's memory without the fleet.
    let topo = Topology::new(None, n_queues, ExchangeType::Default, args.durable);
    let declare_t0 = Instant::now();
    let Ok(admin) = topo.open_admin(&uri) else {
        return 1;
    };
    eprintln!(
        "declared {} queue{} in {:.2} s",
        group(n_queues as u64),
        if n_queues == 1 { "" } else { "s" },
        declare_t0.elapsed().as_secs_f64()
    );
    let mut errors = Vec::new();
    let read_rss = |errors: &mut Vec<String>| match args.pid.map(vm_rss_kb).transpose() {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("--pid: {e}"));
            None
        }
    };
    let rss_before = read_rss(&mut errors);
    catch_sigint();

    let threads = (args.threads as usize).min(total);
    let period_ns = ((1e9 / args.rate_per_conn).round() as u64).max(1);
    let sh = Arc::new(Shared {
        plan: Plan {
            addr,
            uri: uri.clone(),
            publishers: args.connections,
            consumers: args.consumers,
            queues: topo.queues.clone(),
            period_ns,
            size: args.size as usize,
            properties: properties(args.durable, None),
            prefetch: args.prefetch,
            threads,
            concurrency: (args.open_concurrency as usize).div_ceil(threads).max(1),
            retries: args.connect_retries,
            handshake_ns: (args.handshake_timeout * 1e9) as u64,
            tag: std::process::id(),
        },
        start_ns: AtomicU64::new(0),
        warm_ns: AtomicU64::new(0),
        end_ns: AtomicU64::new(0),
        close: AtomicBool::new(false),
        give_up: AtomicBool::new(false),
        slots: (0..threads).map(|_| Slot::default()).collect(),
        errors: Mutex::new(ErrorLog::default()),
    });
    let cpu_start = CpuTime::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let sh2 = sh.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fleet-{t}"))
            .spawn(move || {
                EventLoop::new(&sh2, t)
                    .map_err(|e| format!("thread {t}: cannot set up its event loop: {e}"))?
                    .run()
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                sh.error(format!("cannot start thread fleet-{t}: {e}"));
                sh.give_up.store(true, Ordering::Relaxed);
            }
        }
    }

    // Open.
    let t0 = Instant::now();
    let mut tick = 1u64;
    let mut prev_opened = 0;
    let opened_all = loop {
        let s = sh.tally();
        if s.opened as usize == total {
            break true;
        }
        if sh.give_up.load(Ordering::Relaxed)
            || interrupted()
            || handles.iter().any(|h| h.is_finished())
        {
            break false;
        }
        let next_at = t0 + Duration::from_secs(tick);
        let now = Instant::now();
        if now >= next_at {
            eprintln!(
                "t={tick}s opened {}/{} ({}/s), {} retries",
                group(s.opened),
                group(total as u64),
                group(s.opened - prev_opened),
                group(s.retries)
            );
            prev_opened = s.opened;
            tick += 1;
        } else {
            std::thread::sleep((next_at - now).min(Duration::from_millis(10)));
        }
    };
    let open_secs = t0.elapsed().as_secs_f64();
    let opening = sh.tally();
    eprintln!(
        "opened {} of {} connections in {open_secs:.2} s ({} conn/s), {} retries",
        group(opening.opened),
        group(total as u64),
        rate(opening.opened as f64 / open_secs.max(1e-9)),
        group(opening.retries)
    );

    let mut m = Measured::default();
    if opened_all {
        if !interrupted() {
            sleep_until_or_interrupted(mono_ns() + (args.settle * 1e9) as u64);
        }
        m.rss_opened = read_rss(&mut errors);
        if let (Some(b), Some(a)) = (rss_before, m.rss_opened) {
            eprintln!(
                "broker rss {} KiB -> {} KiB with the connections open",
                group(b),
                group(a)
            );
        }
        if !interrupted() {
            measure(&args, &sh, &mut m, &mut errors);
        }
    }
    sh.close.store(true, Ordering::Relaxed);
    let mut hists = Hists {
        e2e: histogram(),
        confirm: histogram(),
        lag: histogram(),
    };
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => {
                let _ = hists.e2e.add(&t.e2e);
                let _ = hists.confirm.add(&t.confirm);
                let _ = hists.lag.add(&t.lag);
            }
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("an event-loop thread panicked".into()),
        }
    }
    let end = sh.tally();
    let cpu = CpuTime::now();
    let mut all_errors = sh.errors();
    all_errors.append(&mut errors);
    // Messages that never arrived have no latency: the percentiles of the
    // others would flatter a broker that fell behind, so the run fails.
    let all_consumed = args.consumers >= n_queues;
    if opened_all
        && !interrupted()
        && (end.confirmed < end.published || (all_consumed && end.delivered < end.published))
    {
        all_errors.push(format!(
            "incomplete: of {} messages sent, {} were confirmed and {} delivered within \
             --drain {} s (the broker fell behind; the latencies are those of the messages \
             that arrived)",
            group(end.published),
            group(end.confirmed),
            group(end.delivered),
            args.drain
        ));
    }
    let (queue_left, teardown_errors) = topo.teardown(&uri, Some(admin));
    all_errors.extend(teardown_errors);

    let summary = Summary {
        args: &args,
        uri: &uri,
        queues: n_queues,
        threads,
        total: total as u64,
        open_secs,
        opening,
        end,
        m,
        hists,
        rss_before,
        nofile,
        cpu: CpuTime {
            user: cpu.user - cpu_start.user,
            sys: cpu.sys - cpu_start.sys,
        },
        queue_left,
        interrupted: interrupted(),
        errors: &all_errors,
    };
    report::finish(&summary, args.common.json)
}

/// Sleeps until `at_ns` (mono ns) in short naps, or until Ctrl-C.
fn sleep_until_or_interrupted(at_ns: u64) {
    loop {
        let now = mono_ns();
        if now >= at_ns || interrupted() {
            return;
        }
        std::thread::sleep(Duration::from_nanos(at_ns - now).min(Duration::from_millis(50)));
    }
}

/// What the orchestrating thread reads at the edges of the measured window.
#[derive(Default)]
struct Measured {
    /// Broker VmRSS after opening (KiB).
    rss_opened: Option<u64>,
    /// Broker VmRSS at the end of the measured window (KiB).
    rss_end: Option<u64>,
    /// Counts at the start and at the end of the window.
    at_warm: Option<Tally>,
    at_end: Option<Tally>,
    /// Length of the window (s).
    window_s: f64,
    broker_cpu: Option<BrokerCpu>,
    /// The loadgen's CPU over the window.
    loadgen_cpu: Option<CpuTime>,
    /// Seconds from the end of the window until everything was confirmed
    /// and delivered (or --drain ran out).
    drain_s: f64,
}

/// Starts the schedule and follows it: a line per second, the readings at
/// the start and end of the measured window, then the drain.
fn measure(args: &Args, sh: &Shared, m: &mut Measured, errors: &mut Vec<String>) {
    let base = mono_ns();
    // A little ahead, so that every thread sees the start before its first turn.
    let start = base + 50_000_000;
    let warm = start + (args.warmup * 1e9) as u64;
    let end = warm + (args.duration * 1e9) as u64;
    sh.warm_ns.store(warm, Ordering::Relaxed);
    sh.end_ns.store(end, Ordering::Relaxed);
    sh.start_ns.store(start, Ordering::Release);

    let sched = |e: &mut Vec<String>| match args.pid.map(SchedStat::read).transpose() {
        Ok(s) => s,
        Err(err) => {
            e.push(format!("--pid: {err}"));
            None
        }
    };
    let mut warm_read: Option<(Option<SchedStat>, CpuTime, Instant)> = None;
    let mut drain_until: Option<u64> = None;
    let mut prev = (sh.tally(), start);
    let mut tick = 1u64;
    let mut merged = histogram();
    // Deliveries are complete when every message reached a consumed queue.
    let all_consumed = args.consumers >= sh.plan.queues.len();
    loop {
        let now = mono_ns();
        if warm_read.is_none() && now >= warm {
            let s = sh.tally();
            m.at_warm = Some(s);
            warm_read = Some((sched(errors), CpuTime::now(), Instant::now()));
        }
        if drain_until.is_none() && now >= end {
            let s = sh.tally();
            let st = sched(errors);
            let cpu = CpuTime::now();
            let at = Instant::now();
            m.rss_end = match args.pid.map(vm_rss_kb).transpose() {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("--pid: {e}"));
                    None
                }
            };
            if let (Some((st0, cpu0, at0)), Some(s0)) = (&warm_read, &m.at_warm) {
                m.window_s = at.duration_since(*at0).as_secs_f64();
                if let (Some(a), Some(b)) = (st0, &st) {
                    m.broker_cpu = Some(b.since(a, s.published - s0.published));
                }
                m.loadgen_cpu = Some(CpuTime {
                    user: cpu.user - cpu0.user,
                    sys: cpu.sys - cpu0.sys,
                });
            }
            m.at_end = Some(s);
            drain_until = Some(now + (args.drain * 1e9) as u64);
        }
        if let Some(until) = drain_until {
            let s = sh.tally();
            let done = s.confirmed >= s.published && (!all_consumed || s.delivered >= s.published);
            if done || now >= until || interrupted() {
                m.drain_s = (now - end) as f64 / 1e9;
                per_second(sh, &mut prev, &mut merged, now, start, warm, true);
                return;
            }
        }
        if interrupted() {
            return;
        }
        let next_tick = start + tick * 1_000_000_000;
        if now >= next_tick {
            per_second(sh, &mut prev, &mut merged, now, start, warm, false);
            tick += 1;
            continue;
        }
        let mut until = next_tick;
        if warm_read.is_none() {
            until = until.min(warm);
        }
        if drain_until.is_none() {
            until = until.min(end);
        }
        std::thread::sleep(Duration::from_nanos(until - now).min(Duration::from_millis(20)));
    }
}

/// Prints one per-second line: what was sent, confirmed and delivered since
/// the last one (`prev`: its counts and time), and the latency of those
/// deliveries.
fn per_second(
    sh: &Shared,
    prev: &mut (Tally, u64),
    merged: &mut Histogram<u64>,
    now: u64,
    start: u64,
    warm: u64,
    last: bool,
) {
    let s = sh.tally();
    let (p, since) = *prev;
    merged.reset();
    for slot in &sh.slots {
        if let Some(h) = slot.interval.lock().unwrap().as_mut() {
            let _ = merged.add(&*h);
            h.reset();
        }
    }
    if last && s.delivered == p.delivered && s.published == p.published {
        return;
    }
    let t = now.saturating_sub(start) as f64 / 1e9;
    let t = if (t - t.round()).abs() < 0.05 {
        format!("{}", t.round())
    } else {
        format!("{t:.1}")
    };
    let mut l = format!(
        "t={t}s sent {} confirmed {} delivered {}",
        group(s.published - p.published),
        group(s.confirmed - p.confirmed),
        group(s.delivered - p.delivered)
    );
    if !merged.is_empty() {
        l += &format!(
            " p50 {} us p99 {} us max {} us",
            us(merged.value_at_quantile(0.5)),
            us(merged.value_at_quantile(0.99)),
            us(merged.max())
        );
    }
    if since < warm {
        l += " (warmup)";
    }
    if last {
        l += " (drain)";
    }
    eprintln!("{l}");
    *prev = (s, now);
}

/// Nanoseconds as microseconds with one decimal.
fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

/// Everything the final report shows.
struct Summary<'a> {
    args: &'a Args,
    uri: &'a AmqpUri,
    queues: usize,
    threads: usize,
    /// Connections to open (publishers + consumers).
    total: u64,
    open_secs: f64,
    /// Counts when the opening ended.
    opening: Tally,
    /// Counts at the very end.
    end: Tally,
    m: Measured,
    hists: Hists,
    rss_before: Option<u64>,
    nofile: Option<u64>,
    /// The loadgen's CPU for the whole run (from the first connection).
    cpu: CpuTime,
    queue_left: Option<u64>,
    interrupted: bool,
    errors: &'a [String],
}

impl Summary<'_> {
    fn target_rate(&self) -> f64 {
        self.args.connections as f64 * self.args.rate_per_conn
    }

    /// Messages published in the measured window, per second.
    fn achieved_rate(&self) -> Option<f64> {
        let (a, b) = (self.m.at_warm?, self.m.at_end?);
        (self.m.window_s > 0.0).then(|| (b.published - a.published) as f64 / self.m.window_s)
    }

    fn rss_per_conn(&self) -> Option<f64> {
        let (b, a) = (self.rss_before?, self.m.rss_opened?);
        (self.opening.opened > 0).then(|| (a as f64 - b as f64) / self.opening.opened as f64)
    }

    fn loadgen_cpu_pct(&self) -> Option<f64> {
        let c = self.m.loadgen_cpu?;
        (self.m.window_s > 0.0).then(|| c.total() / self.m.window_s * 100.0)
    }

    /// Every message was confirmed, and delivered if its queue had a
    /// consumer.
    fn complete(&self) -> bool {
        let e = &self.end;
        e.confirmed >= e.published
            && (self.args.consumers < self.queues || e.delivered >= e.published)
    }

    fn pct(h: &Histogram<u64>, q: f64) -> f64 {
        h.value_at_quantile(q) as f64 / 1e3
    }
}

impl Report for Summary<'_> {
    fn ok(&self) -> bool {
        // Measured messages arrived (were confirmed, for a fleet without
        // consumers).
        let measured = if self.args.consumers > 0 {
            &self.hists.e2e
        } else {
            &self.hists.confirm
        };
        self.errors.is_empty()
            && self.opening.opened == self.total
            && self.end.lost == 0
            && !measured.is_empty()
    }

    fn errors(&self) -> &[String] {
        self.errors
    }

    fn table(&self) -> String {
        let a = self.args;
        let e = &self.end;
        let h = &self.hists.e2e;
        let mut rows: Vec<(&str, String)> = vec![
            ("broker", self.uri.to_string()),
            (
                "fleet",
                format!(
                    "{} publishers x {} msg/s (confirms), {} consumers (prefetch {}), {} queue{}{}",
                    group(a.connections as u64),
                    a.rate_per_conn,
                    group(a.consumers as u64),
                    a.prefetch,
                    group(self.queues as u64),
                    if self.queues == 1 { "" } else { "s" },
                    if a.durable {
                        ", durable + persistent"
                    } else {
                        ""
                    }
                ),
            ),
            (
                "opened",
                format!(
                    "{} of {} in {:.2} s ({} conn/s), {} retries, {} event-loop threads",
                    group(self.opening.opened),
                    group(self.total),
                    self.open_secs,
                    rate(self.opening.opened as f64 / self.open_secs.max(1e-9)),
                    group(self.opening.retries),
                    self.threads
                ),
            ),
        ];
        if let Some(r) = self.achieved_rate() {
            rows.push((
                "rate",
                format!(
                    "{} msg/s target, {} msg/s achieved",
                    rate(self.target_rate()),
                    rate(r)
                ),
            ));
        }
        rows.push((
            "measured",
            format!(
                "{} messages over {} s after {} s warmup",
                group(h.len()),
                a.duration,
                a.warmup
            ),
        ));
        rows.push(("sent", group(e.published)));
        rows.push((
            "confirmed",
            format!("{} ({} nacked)", group(e.confirmed), group(e.nacked)),
        ));
        rows.push(("delivered", group(e.delivered)));
        if e.foreign > 0 {
            rows.push(("foreign", group(e.foreign)));
        }
        if e.lost > 0 {
            rows.push(("lost", format!("{} connections", group(e.lost))));
        }
        if let Some(q) = self.queue_left {
            rows.push(("left in queues", group(q)));
        }
        if !h.is_empty() {
            for (label, _, q) in PERCENTILES {
                rows.push((label, format!("{:.1} us", Self::pct(h, q))));
            }
            rows.push(("max", format!("{:.1} us", h.max() as f64 / 1e3)));
        }
        for (label, h, note) in [
            ("confirm", &self.hists.confirm, ""),
            ("send lag", &self.hists.lag, " (part of the latency)"),
        ] {
            if !h.is_empty() {
                rows.push((
                    label,
                    format!(
                        "p50 {:.1} us, p99 {:.1} us, max {:.1} us{note}",
                        Self::pct(h, 0.5),
                        Self::pct(h, 0.99),
                        h.max() as f64 / 1e3
                    ),
                ));
            }
        }
        if let Some(pid) = a.pid {
            rows.push(("broker pid", pid.to_string()));
            if let Some(c) = &self.m.broker_cpu {
                rows.push(("broker cpu", c.describe()));
            }
            let kib = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{} KiB", group(v)));
            rows.push((
                "broker rss",
                format!(
                    "{} before, {} opened, {} at the end",
                    kib(self.rss_before),
                    kib(self.m.rss_opened),
                    kib(self.m.rss_end)
                ),
            ));
            if let Some(per) = self.rss_per_conn() {
                rows.push(("rss per conn", format!("{per:.1} KiB")));
            }
        }
        let mut cpu = self.cpu.to_string();
        if let Some(p) = self.loadgen_cpu_pct() {
            cpu += &format!(" ({p:.1}% of a core over the measured window)");
        }
        rows.push(("loadgen cpu", cpu));
        if let Some(n) = self.nofile {
            rows.push(("loadgen nofile", group(n)));
        }
        if self.interrupted {
            rows.push(("interrupted", "yes (Ctrl-C)".into()));
        }
        rows.push(("result", if self.ok() { "ok" } else { "FAILED" }.into()));
        report::table("fleet", rows)
    }

    fn json(&self) -> String {
        let a = self.args;
        let e = &self.end;
        let h = &self.hists.e2e;
        let c = &self.hists.confirm;
        let l = &self.hists.lag;
        let q = |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| Self::pct(h, q));
        let mut o = JsonObject::new();
        o.str("scenario", "fleet")
            .str("uri", &self.uri.to_string())
            .int("connections", a.connections as i64)
            .int("consumers", a.consumers as i64)
            .int("queues", self.queues as i64)
            .int("threads", self.threads as i64)
            .num("rate_per_conn", a.rate_per_conn, 3)
            .num("target_rate", self.target_rate(), 1)
            .int("size", a.size as i64)
            .int("prefetch", a.prefetch as i64)
            .bool("durable", a.durable)
            .num("warmup_s", a.warmup, 3)
            .num("duration_s", a.duration, 3)
            .int("opened", self.opening.opened as i64)
            .int("open_failed", self.opening.failed as i64)
            .int("open_retries", self.opening.retries as i64)
            .num("open_s", self.open_secs, 3)
            .num(
                "open_rate",
                self.opening.opened as f64 / self.open_secs.max(1e-9),
                1,
            )
            .int("lost", e.lost as i64)
            .int("published", e.published as i64)
            .int("confirmed", e.confirmed as i64)
            .int("nacked", e.nacked as i64)
            .int("delivered", e.delivered as i64)
            .int("foreign", e.foreign as i64)
            .bool("complete", self.complete())
            .int("measured", h.len() as i64)
            .opt_num("achieved_rate", self.achieved_rate(), 1)
            .num("window_s", self.m.window_s, 3)
            .num("drain_s", self.m.drain_s, 3);
        for (_, key, p) in PERCENTILES {
            o.opt_num(key, q(h, p), 1);
        }
        o.opt_num("max_us", (!h.is_empty()).then(|| h.max() as f64 / 1e3), 1)
            .opt_num("mean_us", (!h.is_empty()).then(|| h.mean() / 1e3), 1)
            .opt_num("confirm_p50_us", q(c, 0.5), 1)
            .opt_num("confirm_p99_us", q(c, 0.99), 1)
            .opt_num(
                "confirm_max_us",
                (!c.is_empty()).then(|| c.max() as f64 / 1e3),
                1,
            )
            .opt_num("send_lag_p50_us", q(l, 0.5), 1)
            .opt_num("send_lag_p99_us", q(l, 0.99), 1)
            .opt_num(
                "send_lag_max_us",
                (!l.is_empty()).then(|| l.max() as f64 / 1e3),
                1,
            )
            .opt_int("queue_left", self.queue_left.map(|v| v as i64))
            .opt_int("pid", a.pid.map(i64::from))
            .broker_cpu(self.m.broker_cpu.as_ref())
            .opt_int("rss_before_kb", self.rss_before.map(|v| v as i64))
            .opt_int("rss_opened_kb", self.m.rss_opened.map(|v| v as i64))
            .opt_int("rss_end_kb", self.m.rss_end.map(|v| v as i64))
            .opt_num("rss_per_conn_kb", self.rss_per_conn(), 2)
            .opt_num("loadgen_cpu_pct", self.loadgen_cpu_pct(), 2)
            .cpu(&self.cpu)
            .opt_int("nofile_limit", self.nofile.map(|v| v as i64))
            .bool("interrupted", self.interrupted);
        self.json_tail(&mut o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_frame_matches_the_codec() {
        let mut out = Vec::new();
        write_method(
            &mut out,
            CHANNEL,
            &BasicAck {
                delivery_tag: 0x0102_0304_0506_0708,
                multiple: true,
            }
            .into(),
        );
        assert_eq!(&ack_frame(0x0102_0304_0506_0708)[..], &out[..]);
    }

    #[test]
    fn io_errors_worth_a_retry() {
        assert!(io_err(io::ErrorKind::ConnectionRefused.into()).retry);
        assert!(io_err(io::ErrorKind::UnexpectedEof.into()).retry);
        assert!(!io_err(io::ErrorKind::PermissionDenied.into()).retry);
    }

    #[test]
    fn timer_fires_at_an_absolute_time() {
        let mut poll = Poll::new().unwrap();
        let mut timer = Timer::new().unwrap();
        poll.registry()
            .register(
                &mut SourceFd(&timer.fd.as_raw_fd()),
                TIMER,
                Interest::READABLE,
            )
            .unwrap();
        let at = mono_ns() + 2_000_000;
        timer.arm(at);
        let mut events = Events::with_capacity(4);
        let t0 = Instant::now();
        while events.is_empty() && t0.elapsed() < Duration::from_secs(2) {
            poll.poll(&mut events, Some(Duration::from_secs(1)))
                .unwrap();
        }
        assert!(!events.is_empty());
        assert!(mono_ns() >= at);
    }
}
