//! The producer and consumer threads of the message-flow scenarios, the
//! [`Crew`] that starts them (each with its [`Worker`] share), the
//! [`Control`] block the orchestrating thread drives them with, and the
//! [`Topology`] (queues, exchange, bindings) they work on. [`Halt`], the stop
//! flag with the errors that raised it, also serves the threads of the
//! `connections` and `churn` scenarios.
//!
//! Each worker owns one connection ([`Conn`]) and runs a tight blocking loop:
//!
//! - a **producer** ([`Publisher`]) pre-encodes one basic.publish (method +
//!   header + body frames, see [`encode_publish`]) and writes many copies per
//!   `write()` (about [`BATCH_BYTES`] per call), bounded by the confirm window
//!   (`--confirm`) and a rate; between writes it polls the socket without
//!   blocking for confirms, connection.blocked and closes. [`producer`] is the
//!   `throughput` loop (as fast as allowed, or capped); `latency` drives a
//!   [`Publisher`] on its own schedule, patching a timestamp into each copy;
//! - a **consumer** ([`consumer`]) reads 256 KiB chunks, walks the frames
//!   in place (no allocation), counts basic.deliver method frames (the
//!   delivery tag is read by hand from the payload), hands the first body
//!   frame of each delivery to a [`Deliveries`] sink if it wants bodies, and
//!   sends basic.ack `multiple` every `ack_every` deliveries.
//!
//! Counts go to the worker's own [`Counters`] (relaxed stores, no RMW).

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use warren::protocol::constants::{FRAME_BODY, FRAME_METHOD};
use warren::protocol::methods::*;
use warren::protocol::{
    write_body, write_content_header, write_method, BasicProperties, FieldTable, FieldValue, Method,
};

use crate::client::{self, method_id, ClientError, Conn, CHANNEL, CLOSE_TIMEOUT, IO_TICK};
use crate::report::{Counters, JsonObject, Snapshot};
use crate::uri::AmqpUri;

/// Bytes of publishes a producer hands to one `write()` (whole messages, at
/// least one).
pub const BATCH_BYTES: usize = 128 * 1024;

/// A stop flag and the errors that raised it, shared by a run's threads.
#[derive(Default)]
pub struct Halt {
    stop: AtomicBool,
    errors: Mutex<Vec<String>>,
}

impl Halt {
    /// Whether the threads should wind down.
    #[inline]
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Records a thread's error and stops everyone.
    pub fn fail(&self, e: String) {
        self.errors.lock().unwrap().push(e);
        self.stop();
    }

    /// The errors recorded so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

/// Start gate, stop flag and the first errors, shared by all workers.
#[derive(Default)]
pub struct Control {
    halt: Halt,
    gate: Mutex<Option<bool>>,
    gate_cv: Condvar,
}

impl Control {
    /// Whether workers should wind down.
    #[inline]
    pub fn stopped(&self) -> bool {
        self.halt.stopped()
    }

    pub fn stop(&self) {
        self.halt.stop();
    }

    /// Records a worker's error and stops everyone.
    pub fn fail(&self, e: String) {
        self.halt.fail(e);
        self.release(false);
    }

    pub fn errors(&self) -> Vec<String> {
        self.halt.errors()
    }

    /// Opens (`true`) or aborts (`false`) the start gate; the first call wins.
    pub fn release(&self, go: bool) {
        let mut g = self.gate.lock().unwrap();
        if g.is_none() {
            *g = Some(go);
        }
        self.gate_cv.notify_all();
    }

    /// Blocks until the gate opens (true) or the run is aborted (false).
    pub fn wait_gate(&self) -> bool {
        let mut g = self.gate.lock().unwrap();
        loop {
            if let Some(go) = *g {
                return go;
            }
            g = self.gate_cv.wait(g).unwrap();
        }
    }
}

/// `--exchange-type`: where producers publish and how queues are bound.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeType {
    /// The default exchange, routing key = queue name (no exchange declared).
    Default,
    /// Bound and published with routing key "loadgen".
    Direct,
    /// Bound with "" (the key is ignored).
    Fanout,
    /// Bound with "loadgen.#", published with "loadgen.msg".
    Topic,
    /// Bound with {x-match: all, loadgen: "1"}, published with header loadgen="1".
    Headers,
}

impl ExchangeType {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeType::Default => "default",
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }

    fn binding_key(self) -> &'static str {
        match self {
            ExchangeType::Direct => "loadgen",
            ExchangeType::Topic => "loadgen.#",
            _ => "",
        }
    }

    fn publish_key(self) -> &'static str {
        match self {
            ExchangeType::Direct => "loadgen",
            ExchangeType::Topic => "loadgen.msg",
            _ => "",
        }
    }

    fn binding_arguments(self) -> FieldTable {
        let mut t = FieldTable::new();
        if self == ExchangeType::Headers {
            t.insert("x-match", FieldValue::LongStr(Bytes::from_static(b"all")));
            t.insert("loadgen", FieldValue::LongStr(Bytes::from_static(b"1")));
        }
        t
    }

    /// The headers every publish carries (headers exchange only).
    pub fn publish_headers(self) -> Option<FieldTable> {
        (self == ExchangeType::Headers).then(|| {
            let mut t = FieldTable::new();
            t.insert("loadgen", FieldValue::LongStr(Bytes::from_static(b"1")));
            t
        })
    }
}

/// The queues (and exchange) of a run.
///
/// Queue names: `--queue NAME` or `loadgen-<pid>`, suffixed `-<i>` when there
/// is more than one. The exchange (any type but `default`) is
/// `loadgen-<pid>-<type>`, and every queue is bound to it so that every
/// message reaches every queue. With the default exchange, producer `p`
/// publishes to queue `p % N`; consumer `c` always consumes queue `c % N`.
#[derive(Clone, Debug)]
pub struct Topology {
    pub queues: Vec<String>,
    /// Queues named by the loadgen: created, and deleted at the end.
    /// User-given ones (`--queue`) are used as they are and left.
    pub own_queues: bool,
    pub kind: ExchangeType,
    /// "" for the default exchange.
    pub exchange: String,
    pub durable: bool,
    /// Queues are streams (`x-queue-type=stream`; always durable).
    pub stream: bool,
}

impl Topology {
    pub fn new(user_queue: Option<&str>, n: usize, kind: ExchangeType, durable: bool) -> Topology {
        let pid = std::process::id();
        let base = user_queue.map_or_else(|| format!("loadgen-{pid}"), str::to_string);
        let queues = if n <= 1 {
            vec![base]
        } else {
            (0..n).map(|i| format!("{base}-{i}")).collect()
        };
        let exchange = match kind {
            ExchangeType::Default => String::new(),
            k => format!("loadgen-{pid}-{}", k.name()),
        };
        Topology {
            queues,
            own_queues: user_queue.is_none(),
            kind,
            exchange,
            durable,
            stream: false,
        }
    }

    /// The queues are declared as streams (durable).
    pub fn streams(mut self) -> Topology {
        self.stream = true;
        self.durable = true;
        self
    }

    /// Declares the exchange, the queues and the bindings.
    pub fn declare(&self, admin: &mut Conn) -> Result<(), String> {
        if !self.exchange.is_empty() {
            admin
                .declare_exchange(&self.exchange, self.kind.name(), self.durable)
                .map_err(|e| format!("declaring exchange {:?}: {e}", self.exchange))?;
        }
        for q in &self.queues {
            let mut args = FieldTable::new();
            if self.stream {
                args.insert(
                    "x-queue-type",
                    FieldValue::LongStr(Bytes::from_static(b"stream")),
                );
            }
            admin
                .declare_queue_with(q, self.durable, !self.own_queues, args)
                .map_err(|e| format!("declaring queue {q:?}: {e}"))?;
            if !self.exchange.is_empty() {
                let (key, args) = (self.kind.binding_key(), self.kind.binding_arguments());
                admin
                    .bind_queue(q, &self.exchange, key, args)
                    .map_err(|e| format!("binding queue {q:?}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Opens the admin connection and declares the topology (see
    /// [`Topology::declare`]). On failure the error is printed, what was
    /// created is removed again, and the errors of that cleanup are
    /// returned (for the caller to print or not): exit status 1.
    pub fn open_admin(&self, uri: &AmqpUri) -> Result<Conn, Vec<String>> {
        let mut admin = match Conn::open(uri, "warren-loadgen admin") {
            Ok(c) => c,
            Err(e) => {
                eprintln!("warren-loadgen: cannot connect to {uri}: {e}");
                return Err(Vec::new());
            }
        };
        match self.declare(&mut admin) {
            Ok(()) => Ok(admin),
            Err(e) => {
                eprintln!("warren-loadgen: {e}");
                Err(self.teardown(uri, Some(admin)).1)
            }
        }
    }

    /// How many queues each published message reaches.
    pub fn fanout(&self) -> u64 {
        match self.kind {
            ExchangeType::Default => 1,
            _ => self.queues.len() as u64,
        }
    }

    /// (exchange, routing key) producer `p` publishes with.
    pub fn route(&self, p: usize) -> (&str, &str) {
        match self.kind {
            ExchangeType::Default => ("", &self.queues[p % self.queues.len()]),
            k => (&self.exchange, k.publish_key()),
        }
    }

    /// The queue consumer `c` consumes.
    pub fn consumer_queue(&self, c: usize) -> &str {
        &self.queues[c % self.queues.len()]
    }

    /// Deletes the loadgen's own queues (a user-given queue is only
    /// inspected) and the exchange. Returns the messages left in the queues
    /// (`None` if a reply is missing) and the errors met. If the admin
    /// connection is gone, a fresh one is tried, so nothing lingers.
    pub fn teardown(&self, uri: &AmqpUri, admin: Option<Conn>) -> (Option<u64>, Vec<String>) {
        let mut admin = admin;
        let mut errors = Vec::new();
        let mut left = Some(0u64);
        for q in &self.queues {
            let (what, r) = if self.own_queues {
                (
                    "queue.delete",
                    admin_call(uri, &mut admin, |c| c.delete_queue(q)),
                )
            } else {
                (
                    "queue.declare",
                    admin_call(uri, &mut admin, |c| c.queue_len(q)),
                )
            };
            match r {
                Ok(n) => left = left.map(|l| l + n as u64),
                Err(e) => {
                    errors.push(format!("{what} {q:?}: {e}"));
                    left = None;
                }
            }
        }
        if !self.exchange.is_empty() {
            if let Err(e) = admin_call(uri, &mut admin, |c| c.delete_exchange(&self.exchange)) {
                errors.push(format!("exchange.delete {:?}: {e}", self.exchange));
            }
        }
        if let Some(c) = admin {
            c.close(CLOSE_TIMEOUT, |_, _| {});
        }
        (left, errors)
    }
}

/// Runs `op` on the admin connection; if that connection is gone (e.g.
/// closed by an operator), once more on a fresh one, which then replaces it.
fn admin_call<T>(
    uri: &AmqpUri,
    admin: &mut Option<Conn>,
    op: impl Fn(&mut Conn) -> client::Result<T>,
) -> Result<T, String> {
    if let Some(c) = admin.as_mut() {
        match op(c) {
            Ok(v) => return Ok(v),
            Err(e @ ClientError::ChannelClosed { .. }) => {
                if c.reopen_channel().is_err() {
                    *admin = None;
                }
                return Err(e.to_string());
            }
            Err(ClientError::ConnectionClosed { .. } | ClientError::Io(_)) => *admin = None,
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut c = Conn::open(uri, "warren-loadgen admin").map_err(|e| e.to_string())?;
    let r = op(&mut c);
    *admin = Some(c);
    r.map_err(|e| e.to_string())
}

/// The worker threads of a run: one [`Counters`] slot each, the
/// [`Control`] block, and the channel on which each reports that it is set
/// up.
pub struct Crew {
    uri: AmqpUri,
    pub ctl: Arc<Control>,
    counters: Arc<[Counters]>,
    /// Dropped by [`Crew::wait_ready`], so that it notices when every
    /// worker is gone.
    ready_tx: Option<Sender<()>>,
    ready_rx: Receiver<()>,
}

impl Crew {
    /// A crew of `n` workers connecting to `uri`.
    pub fn new(uri: &AmqpUri, n: usize) -> Crew {
        let (ready_tx, ready_rx) = mpsc::channel();
        Crew {
            uri: uri.clone(),
            ctl: Arc::new(Control::default()),
            counters: (0..n).map(|_| Counters::default()).collect(),
            ready_tx: Some(ready_tx),
            ready_rx,
        }
    }

    /// Starts worker thread `name`, counting into slot `slot`, running `f`
    /// (before [`Crew::wait_ready`]); an error it returns is recorded in
    /// [`Crew::ctl`] (which stops the run), a value is the thread's result.
    pub fn spawn<T: Send + 'static>(
        &self,
        name: String,
        slot: usize,
        f: impl FnOnce(&Worker) -> Result<T, String> + Send + 'static,
    ) -> Option<JoinHandle<Option<T>>> {
        let ready = self
            .ready_tx
            .clone()
            .expect("workers start before wait_ready");
        let w = Worker {
            uri: self.uri.clone(),
            ctl: self.ctl.clone(),
            counters: self.counters.clone(),
            slot,
            ready,
        };
        let tname = name.clone();
        let spawned = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || f(&w).map_err(|e| w.ctl.fail(format!("{tname}: {e}"))).ok());
        match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                self.ctl.fail(format!("cannot start thread {name}: {e}"));
                None
            }
        }
    }

    /// Waits until every worker reported ready (true), or one failed
    /// (false).
    pub fn wait_ready(&mut self) -> bool {
        self.ready_tx = None;
        let n = self.counters.len();
        let mut got = 0;
        while got < n && !self.ctl.stopped() {
            match self.ready_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => got += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        got == n && !self.ctl.stopped()
    }

    /// The sum of all workers' counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(self.counters.iter())
    }
}

/// One worker thread's share of its [`Crew`].
pub struct Worker {
    pub uri: AmqpUri,
    pub ctl: Arc<Control>,
    counters: Arc<[Counters]>,
    slot: usize,
    ready: Sender<()>,
}

impl Worker {
    /// This worker's own counters.
    pub fn counters(&self) -> &Counters {
        &self.counters[self.slot]
    }

    /// Reports this worker set up and waits for the start gate: true when
    /// it opens, false if the run was aborted.
    pub fn ready(&self) -> bool {
        let _ = self.ready.send(());
        self.ctl.wait_gate()
    }
}

/// What a producer publishes and how fast.
#[derive(Clone, Debug)]
pub struct ProducerCfg {
    pub exchange: String,
    pub routing_key: String,
    /// Content properties as on the wire (flags + list), see [`properties`].
    pub properties: Vec<u8>,
    /// Body size in bytes.
    pub size: usize,
    /// Publisher confirms with at most this many unconfirmed; 0 = off.
    pub confirm: u64,
    /// Messages per second cap; 0 = unlimited.
    pub rate: u64,
}

/// What a consumer consumes and how it acks.
#[derive(Clone, Debug)]
pub struct ConsumerCfg {
    pub queue: String,
    pub ack: Ack,
    /// basic.consume arguments (`x-stream-offset` …).
    pub arguments: FieldTable,
}

/// How a consumer acknowledges (`--no-ack`, `--ack-every`, `--prefetch`).
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    /// Auto-ack (basic.consume no-ack).
    pub no_ack: bool,
    /// basic.ack multiple every N deliveries (manual ack).
    pub every: u64,
    /// basic.qos prefetch-count (manual ack); 0 = unlimited.
    pub prefetch: u16,
}

impl Ack {
    pub fn new(no_ack: bool, every: u64, prefetch: u16) -> Ack {
        Ack {
            no_ack,
            every,
            prefetch,
        }
    }

    /// "auto" or "manual, multiple every 100 (prefetch 1000)".
    pub fn describe(&self) -> String {
        if self.no_ack {
            "auto".into()
        } else {
            format!(
                "manual, multiple every {} (prefetch {})",
                self.every, self.prefetch
            )
        }
    }

    /// The JSON keys `ack` ("auto" or "manual"), `ack_every`, `prefetch`.
    pub fn json<'o>(&self, o: &'o mut JsonObject) -> &'o mut JsonObject {
        o.str("ack", if self.no_ack { "auto" } else { "manual" })
            .int("ack_every", self.every as i64)
            .int("prefetch", self.prefetch as i64)
    }
}

/// Publisher-confirm bookkeeping: tags are 1, 2, 3... in publish order;
/// acks/nacks may be `multiple` and (in theory) out of order.
#[derive(Default, Debug)]
pub struct ConfirmTracker {
    /// Every tag <= this is resolved.
    upto: u64,
    /// Resolved tags above `upto` (out-of-order singles).
    above: BTreeSet<u64>,
    /// Resolved by a nack.
    pub nacked: u64,
}

impl ConfirmTracker {
    /// Messages confirmed (acked or nacked) so far.
    #[inline]
    pub fn resolved(&self) -> u64 {
        self.upto + self.above.len() as u64
    }

    pub fn on_confirm(&mut self, tag: u64, multiple: bool, nack: bool) {
        let before = self.resolved();
        if tag > self.upto {
            if multiple {
                self.above = self.above.split_off(&(tag + 1));
                self.upto = tag;
            } else {
                self.above.insert(tag);
            }
            while self.above.remove(&(self.upto + 1)) {
                self.upto += 1;
            }
        }
        if nack {
            self.nacked += self.resolved() - before;
        }
    }

    /// Resolves tags `first..=last` at once (an AMQP 1.0 disposition
    /// range): as one `multiple` if nothing below `first` is open, else one
    /// by one.
    pub fn on_range(&mut self, first: u64, last: u64, nack: bool) {
        if first <= self.upto + 1 {
            self.on_confirm(last, true, nack);
        } else {
            for tag in first..=last {
                self.on_confirm(tag, false, nack);
            }
        }
    }

    /// Handles a method frame payload if it is basic.ack or basic.nack.
    #[inline]
    pub fn on_method(&mut self, payload: &[u8]) -> bool {
        let nack = match method_id(payload) {
            (60, 80) => false,
            (60, 120) => true,
            _ => return false,
        };
        if let Some(b) = payload.get(4..13) {
            let tag = u64::from_be_bytes(b[..8].try_into().unwrap());
            self.on_confirm(tag, b[8] & 1 != 0, nack);
        }
        true
    }
}

/// Content properties as on the wire (flags + list): delivery-mode 2 if
/// `persistent`, and `headers` if any; `[0, 0]` (none) otherwise.
pub fn properties(persistent: bool, headers: Option<FieldTable>) -> Vec<u8> {
    let p = BasicProperties {
        delivery_mode: persistent.then_some(2),
        headers,
        ..Default::default()
    };
    let mut out = Vec::new();
    p.encode(&mut out);
    out
}

/// One basic.publish as it goes on the wire: method frame, content header
/// (the given raw `properties`), body frame(s).
#[derive(Clone, Debug)]
pub struct Template {
    pub bytes: Vec<u8>,
    /// Offset of the first body byte (in the first body frame).
    pub body_at: usize,
}

/// Encodes one basic.publish of `body` (see [`Template`]).
pub fn encode_publish(
    exchange: &str,
    routing_key: &str,
    properties: &[u8],
    body: &[u8],
    frame_max: u32,
) -> Template {
    let mut out = Vec::new();
    let publish = BasicPublish {
        exchange: Bytes::copy_from_slice(exchange.as_bytes()),
        routing_key: Bytes::copy_from_slice(routing_key.as_bytes()),
        ..Default::default()
    };
    write_method(&mut out, CHANNEL, &publish.into());
    write_content_header(&mut out, CHANNEL, 60, body.len() as u64, properties);
    let body_at = out.len() + 7;
    write_body(&mut out, CHANNEL, body, frame_max);
    Template {
        bytes: out,
        body_at,
    }
}

/// The filler body of `throughput` messages.
pub fn filler(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The delivery tag of a basic.deliver payload:
/// class, method, consumer-tag (shortstr), delivery-tag (u64), ...
#[inline]
pub fn deliver_tag(payload: &[u8]) -> Option<u64> {
    let n = *payload.get(4)? as usize;
    let b = payload.get(5 + n..13 + n)?;
    Some(u64::from_be_bytes(b.try_into().unwrap()))
}

/// The publishing side of a producer connection: writes batches of
/// pre-encoded messages, tracks the confirm window and keeps the worker's
/// [`Counters`] (published, confirmed, nacked) current.
pub struct Publisher<'a> {
    pub conn: Conn,
    name: String,
    confirm: u64,
    /// Messages fully written.
    pub sent: u64,
    confirms: ConfirmTracker,
    worker: &'a Worker,
    warned_stall: bool,
}

impl<'a> Publisher<'a> {
    /// Connects (as connection `name`) and enables publisher confirms if
    /// `confirm` > 0 (at most that many unconfirmed).
    pub fn open(worker: &'a Worker, name: &str, confirm: u64) -> Result<Publisher<'a>, String> {
        let mut conn = Conn::open(&worker.uri, &format!("warren-loadgen {name}"))?;
        if confirm > 0 {
            match conn.call(CHANNEL, ConfirmSelect::default().into())? {
                Method::ConfirmSelectOk(_) => {}
                m => return Err(format!("expected confirm.select-ok, got {}", m.name())),
            }
        }
        Ok(Publisher {
            conn,
            name: name.to_string(),
            confirm,
            sent: 0,
            confirms: ConfirmTracker::default(),
            worker,
            warned_stall: false,
        })
    }

    /// Messages that may be written now: 0 while the connection is blocked
    /// or the confirm window is full, else the room left in the window
    /// (`u64::MAX` without confirms).
    pub fn room(&self) -> u64 {
        if self.conn.blocked {
            0
        } else if self.confirm == 0 {
            u64::MAX
        } else {
            let outstanding = self.sent.saturating_sub(self.confirms.resolved());
            self.confirm.saturating_sub(outstanding)
        }
    }

    /// Writes `data`, whole messages of `len` bytes each. While the broker
    /// does not read, handles what it sends (confirms, blocked, close).
    /// Ok(false): the run was stopped in the middle of the write, so the
    /// connection cannot be closed cleanly (drop it).
    pub fn write(&mut self, data: &[u8], len: usize) -> Result<bool, String> {
        let mut off = 0;
        let mut stalled_since: Option<Instant> = None;
        while off < data.len() {
            match self.conn.stream.write(&data[off..]) {
                Ok(0) => return Err("broker closed the socket".into()),
                Ok(w) => {
                    off += w;
                    stalled_since = None;
                    let done = self.sent + (off / len) as u64;
                    Counters::set(&self.worker.counters().published, done);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // The broker is not reading (flow control, or busy).
                    if self.worker.ctl.stopped() {
                        return Ok(false);
                    }
                    self.poll()?;
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if !self.warned_stall && since.elapsed() > Duration::from_secs(5) {
                        self.warned_stall = true;
                        eprintln!(
                            "warren-loadgen: {}: broker has not read from its socket for 5 s",
                            self.name
                        );
                    }
                }
                Err(e) => return Err(ClientError::from(e).to_string()),
            }
        }
        self.sent += (data.len() / len) as u64;
        Ok(true)
    }

    /// Handles whatever already arrived, without blocking.
    pub fn poll(&mut self) -> Result<(), String> {
        self.conn.poll()?;
        self.incoming()
    }

    /// Waits for input (at most [`IO_TICK`]) and handles it: for a full
    /// confirm window or a blocked connection.
    pub fn wait(&mut self) -> Result<(), String> {
        self.conn.fill()?;
        self.incoming()
    }

    /// Handles what arrived: confirms, and the rare methods (close, blocked)
    /// via [`Conn::other_method`].
    fn incoming(&mut self) -> Result<(), String> {
        let before = self.confirms.resolved();
        while let Some(f) = self.conn.next_frame()? {
            if f.kind != FRAME_METHOD || self.confirms.on_method(self.conn.payload(&f)) {
                continue;
            }
            self.conn.other_method(&f)?;
        }
        if self.confirms.resolved() != before {
            self.publish_confirms();
        }
        Ok(())
    }

    fn publish_confirms(&self) {
        let counters = self.worker.counters();
        Counters::set(&counters.confirmed, self.confirms.resolved());
        Counters::set(&counters.nacked, self.confirms.nacked);
    }

    /// Closes the connection, collecting late confirms.
    pub fn close(self) {
        let Publisher {
            conn,
            mut confirms,
            worker,
            ..
        } = self;
        conn.close(CLOSE_TIMEOUT, |c, f| {
            if f.kind == FRAME_METHOD {
                confirms.on_method(c.payload(f));
            }
        });
        let counters = worker.counters();
        Counters::set(&counters.confirmed, confirms.resolved());
        Counters::set(&counters.nacked, confirms.nacked);
    }
}

/// A `throughput` producer thread: connect, set up, report ready, wait for
/// the gate, publish as fast as allowed (or at `cfg.rate`) until stopped,
/// close.
pub fn producer(w: &Worker, idx: usize, cfg: &ProducerCfg) -> Result<(), String> {
    let name = format!("producer {idx}");
    let mut p = Publisher::open(w, &name, cfg.confirm)?;
    let body = filler(cfg.size);
    let msg = encode_publish(
        &cfg.exchange,
        &cfg.routing_key,
        &cfg.properties,
        &body,
        p.conn.frame_max,
    )
    .bytes;
    let len = msg.len();
    let per_batch = (BATCH_BYTES / len).max(1);
    let batch = msg.repeat(per_batch);
    if !w.ready() {
        return Ok(());
    }
    let started = Instant::now();
    while !w.ctl.stopped() {
        let room = p.room();
        let mut n = (per_batch as u64).min(room);
        if cfg.rate > 0 {
            let due = (cfg.rate as f64 * started.elapsed().as_secs_f64()) as u64 + 1;
            n = n.min(due.saturating_sub(p.sent));
        }
        if n == 0 {
            if room == 0 {
                p.wait()?;
            } else {
                // Rate cap: sleep until the next message is due, but at
                // least 1 ms so that writes carry a batch, not one message.
                let next = Duration::from_secs_f64((p.sent + 1) as f64 / cfg.rate as f64);
                let wait = next
                    .saturating_sub(started.elapsed())
                    .clamp(Duration::from_millis(1), IO_TICK);
                std::thread::sleep(wait);
                p.poll()?;
            }
            continue;
        }
        if !p.write(&batch[..n as usize * len], len)? {
            // Stopped mid-message: no clean close possible, drop the socket.
            return Ok(());
        }
        p.poll()?;
    }
    p.close();
    Ok(())
}

/// What a consumer does with each delivery besides counting it.
pub trait Deliveries {
    /// Whether [`Deliveries::body`] is called (else bodies are skipped).
    const BODIES: bool;
    /// The payload of the first body frame of each delivery (valid only
    /// during the call; a delivery with an empty body has none).
    fn body(&mut self, payload: &[u8]);
    /// After the frames of one read were walked.
    fn batch_end(&mut self);
}

/// Just count.
impl Deliveries for () {
    const BODIES: bool = false;
    fn body(&mut self, _: &[u8]) {}
    fn batch_end(&mut self) {}
}

/// A consumer thread: connect, qos, report ready, wait for the gate,
/// consume, count (and ack) deliveries, handing bodies to `sink` (`&mut ()`
/// to just count), until stopped; close.
pub fn consumer<D: Deliveries>(
    w: &Worker,
    idx: usize,
    cfg: &ConsumerCfg,
    sink: &mut D,
) -> Result<(), String> {
    let mut conn = Conn::open(&w.uri, &format!("warren-loadgen consumer {idx}"))?;
    if !cfg.ack.no_ack && cfg.ack.prefetch > 0 {
        let qos = BasicQos {
            prefetch_count: cfg.ack.prefetch,
            ..Default::default()
        };
        match conn.call(CHANNEL, qos.into())? {
            Method::BasicQosOk(_) => {}
            m => return Err(format!("expected basic.qos-ok, got {}", m.name())),
        }
    }
    if !w.ready() {
        return Ok(());
    }
    let consume = BasicConsume {
        queue: Bytes::copy_from_slice(cfg.queue.as_bytes()),
        consumer_tag: Bytes::from(format!("warren-loadgen-{idx}")),
        no_ack: cfg.ack.no_ack,
        arguments: cfg.arguments.clone(),
        ..Default::default()
    };
    match conn.call(CHANNEL, consume.into())? {
        Method::BasicConsumeOk(_) => {}
        m => return Err(format!("expected basic.consume-ok, got {}", m.name())),
    }
    // Ack before the broker runs out of prefetch credit.
    let ack_every = match cfg.ack.prefetch {
        0 => cfg.ack.every,
        p => cfg.ack.every.min((p as u64 / 2).max(1)),
    }
    .max(1);
    let mut delivered = 0u64;
    let mut last_tag = 0u64;
    let mut unacked = 0u64;
    // A basic.deliver was seen and its first body frame was not.
    let mut want_body = false;
    let counters = w.counters();
    // Frames first, then a read: the read that brought consume-ok may have
    // brought deliveries too (`Conn::call` leaves them in the buffer). If they
    // are the whole prefetch window, or the whole queue, nothing more arrives
    // until they are acked, so a loop that only walked frames after a
    // successful read would wait for the broker while the broker waits for it.
    loop {
        while let Some(f) = conn.next_frame()? {
            if f.kind != FRAME_METHOD {
                if D::BODIES && want_body && f.kind == FRAME_BODY {
                    want_body = false;
                    sink.body(conn.payload(&f));
                }
                continue;
            }
            let p = conn.payload(&f);
            if method_id(p) == (60, 60) {
                delivered += 1;
                want_body = D::BODIES;
                if !cfg.ack.no_ack {
                    last_tag = deliver_tag(p).ok_or("truncated basic.deliver")?;
                    unacked += 1;
                    if unacked >= ack_every {
                        ack(&mut conn, last_tag)?;
                        unacked = 0;
                    }
                }
                continue;
            }
            if let Method::BasicCancel(_) = conn.other_method(&f)? {
                return Err("consumer cancelled by the broker (queue deleted?)".into());
            }
        }
        sink.batch_end();
        Counters::set(&counters.delivered, delivered);
        if w.ctl.stopped() {
            break;
        }
        if !conn.fill()? && unacked > 0 {
            // Idle: ack the tail.
            ack(&mut conn, last_tag)?;
            unacked = 0;
        }
    }
    // Settle what was counted, so that it is not requeued by the close.
    if unacked > 0 {
        ack(&mut conn, last_tag)?;
    }
    conn.close(CLOSE_TIMEOUT, |_, _| {});
    Ok(())
}

fn ack(conn: &mut Conn, tag: u64) -> Result<(), ClientError> {
    let m = BasicAck {
        delivery_tag: tag,
        multiple: true,
    };
    conn.send(CHANNEL, &m.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren::protocol::check_frame;

    #[test]
    fn confirms_in_and_out_of_order() {
        let mut t = ConfirmTracker::default();
        t.on_confirm(1, false, false);
        t.on_confirm(3, false, false);
        assert_eq!(t.resolved(), 2);
        t.on_confirm(5, false, true);
        assert_eq!((t.resolved(), t.nacked), (3, 1));
        t.on_confirm(4, true, false); // covers 2 and 4
        assert_eq!(t.resolved(), 5);
        t.on_confirm(3, false, false); // duplicate, ignored
        t.on_confirm(10, true, true);
        assert_eq!((t.resolved(), t.nacked), (10, 6));
        assert!(t.above.is_empty());
    }

    #[test]
    fn confirm_ranges() {
        let mut t = ConfirmTracker::default();
        t.on_range(1, 3, false);
        assert_eq!(t.resolved(), 3);
        t.on_range(6, 7, true); // a gap: 4 and 5 stay open
        assert_eq!((t.resolved(), t.nacked), (5, 2));
        t.on_range(4, 5, false);
        assert_eq!((t.resolved(), t.nacked), (7, 2));
        t.on_range(2, 8, false); // overlaps what is resolved: only 8 is new
        assert_eq!((t.resolved(), t.nacked), (8, 2));
        assert!(t.above.is_empty());
    }

    #[test]
    fn confirm_frames() {
        let mut out = Vec::new();
        write_method(
            &mut out,
            1,
            &BasicAck {
                delivery_tag: 7,
                multiple: true,
            }
            .into(),
        );
        let h = check_frame(&out, 0).unwrap().unwrap();
        let mut t = ConfirmTracker::default();
        assert!(t.on_method(&out[h.payload_range()]));
        assert_eq!(t.resolved(), 7);
        assert!(!t.on_method(&[0, 60, 0, 60]));
    }

    #[test]
    fn publish_layout_and_deliver_tag() {
        let t = encode_publish("", "q", &[0, 0], &filler(10), 4096);
        assert_eq!(&t.bytes[t.body_at..t.body_at + 10], b"abcdefghij");
        let msg = t.bytes;
        let mut rest = &msg[..];
        let mut kinds = Vec::new();
        while !rest.is_empty() {
            let h = check_frame(rest, 4096).unwrap().unwrap();
            kinds.push(h.kind);
            rest = &rest[h.total_len()..];
        }
        assert_eq!(kinds, [1, 2, 3]);
        let empty = encode_publish("", "q", &[0, 0], &[], 4096);
        assert_eq!(empty.bytes.len(), msg.len() - 18);
        let deliver = BasicDeliver {
            consumer_tag: Bytes::from_static(b"ctag"),
            delivery_tag: 123456789,
            ..Default::default()
        };
        let mut out = Vec::new();
        Method::from(deliver).encode(&mut out);
        assert_eq!(deliver_tag(&out), Some(123456789));
        assert_eq!(deliver_tag(&out[..10]), None);
    }
}
