//! The producer and consumer threads of the message-flow scenarios, and the
//! [`Control`] block the orchestrating thread drives them with.
//!
//! Each worker owns one connection ([`Conn`]) and runs a tight blocking loop:
//!
//! - a **producer** pre-encodes one basic.publish (method + header + body
//!   frames) and writes many copies per `write()` (about [`BATCH_BYTES`] per
//!   call), bounded by the confirm window (`--confirm`) and the rate cap
//!   (`--rate`); between writes it polls the socket without blocking for
//!   confirms, connection.blocked and closes;
//! - a **consumer** reads 256 KiB chunks, walks the frames in place, counts
//!   basic.deliver method frames (the delivery tag is read by hand from the
//!   payload) and sends basic.ack `multiple` every `ack_every` deliveries.
//!
//! Counts go to the worker's own [`Counters`] (relaxed stores, no RMW).

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use warren::protocol::constants::FRAME_METHOD;
use warren::protocol::methods::*;
use warren::protocol::{write_body, write_content_header, write_method, Method};

use crate::client::{method_id, ClientError, Conn, CHANNEL, IO_TICK};
use crate::report::Counters;
use crate::uri::AmqpUri;

/// Bytes of publishes a producer hands to one `write()` (whole messages, at
/// least one).
pub const BATCH_BYTES: usize = 128 * 1024;

/// How long a worker waits for connection.close-ok at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Start gate, stop flag and the first errors, shared by all workers.
#[derive(Default)]
pub struct Control {
    stop: AtomicBool,
    gate: Mutex<Option<bool>>,
    gate_cv: Condvar,
    errors: Mutex<Vec<String>>,
}

impl Control {
    /// Whether workers should wind down.
    #[inline]
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Records a worker's error and stops everyone.
    pub fn fail(&self, e: String) {
        self.errors.lock().unwrap().push(e);
        self.stop();
        self.release(false);
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
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

/// What a producer publishes and how fast.
#[derive(Clone, Debug)]
pub struct ProducerCfg {
    /// Routing key on the default exchange.
    pub queue: String,
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
    /// Auto-ack (basic.consume no-ack).
    pub no_ack: bool,
    /// basic.ack multiple every N deliveries (manual ack).
    pub ack_every: u64,
    /// basic.qos prefetch-count (manual ack); 0 = unlimited.
    pub prefetch: u16,
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

/// One basic.publish to the default exchange as it goes on the wire:
/// method frame, content header (no properties), body frame(s).
pub fn encode_publish(queue: &str, size: usize, frame_max: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let publish = BasicPublish {
        routing_key: Bytes::copy_from_slice(queue.as_bytes()),
        ..Default::default()
    };
    write_method(&mut out, CHANNEL, &publish.into());
    write_content_header(&mut out, CHANNEL, 60, size as u64, &[0, 0]);
    let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    write_body(&mut out, CHANNEL, &body, frame_max);
    out
}

/// The delivery tag of a basic.deliver payload:
/// class, method, consumer-tag (shortstr), delivery-tag (u64), ...
#[inline]
pub fn deliver_tag(payload: &[u8]) -> Option<u64> {
    let n = *payload.get(4)? as usize;
    let b = payload.get(5 + n..13 + n)?;
    Some(u64::from_be_bytes(b.try_into().unwrap()))
}

/// A producer thread: connect, set up, report ready, wait for the gate, publish
/// until stopped, close.
pub fn producer(
    uri: &AmqpUri,
    idx: usize,
    cfg: &ProducerCfg,
    ctl: &Control,
    counters: &Counters,
    ready: Sender<()>,
) -> Result<(), String> {
    let mut conn = Conn::open(uri, &format!("warren-loadgen producer {idx}"))?;
    if cfg.confirm > 0 {
        match conn.call(CHANNEL, ConfirmSelect::default().into())? {
            Method::ConfirmSelectOk(_) => {}
            m => return Err(format!("expected confirm.select-ok, got {}", m.name())),
        }
    }
    let msg = encode_publish(&cfg.queue, cfg.size, conn.frame_max);
    let len = msg.len();
    let per_batch = (BATCH_BYTES / len).max(1);
    let batch = msg.repeat(per_batch);
    let _ = ready.send(());
    if !ctl.wait_gate() {
        return Ok(());
    }
    let started = Instant::now();
    let mut sent = 0u64;
    let mut confirms = ConfirmTracker::default();
    let mut warned_stall = false;
    let mut clean = true;
    'run: while !ctl.stopped() {
        let mut n = per_batch as u64;
        let mut window_full = false;
        if cfg.confirm > 0 {
            let room = cfg.confirm.saturating_sub(sent - confirms.resolved());
            window_full = room == 0;
            n = n.min(room);
        }
        if cfg.rate > 0 {
            let due = (cfg.rate as f64 * started.elapsed().as_secs_f64()) as u64 + 1;
            n = n.min(due.saturating_sub(sent));
        }
        if conn.blocked {
            n = 0;
        }
        if n == 0 {
            if window_full || conn.blocked {
                conn.fill()?;
            } else {
                // Rate cap: sleep until the next message is due, but at
                // least 1 ms so that writes carry a batch, not one message.
                let next = Duration::from_secs_f64((sent + 1) as f64 / cfg.rate as f64);
                let wait = next
                    .saturating_sub(started.elapsed())
                    .clamp(Duration::from_millis(1), IO_TICK);
                std::thread::sleep(wait);
                conn.poll()?;
            }
            incoming(&mut conn, &mut confirms, counters)?;
            continue;
        }
        let data = &batch[..n as usize * len];
        let mut off = 0;
        let mut stalled_since: Option<Instant> = None;
        while off < data.len() {
            match conn.stream.write(&data[off..]) {
                Ok(0) => return Err("broker closed the socket".into()),
                Ok(w) => {
                    off += w;
                    stalled_since = None;
                    Counters::set(&counters.published, sent + (off / len) as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // The broker is not reading (flow control, or busy).
                    if ctl.stopped() {
                        // Mid-message: no clean close possible, drop the socket.
                        clean = false;
                        break 'run;
                    }
                    conn.poll()?;
                    incoming(&mut conn, &mut confirms, counters)?;
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if !warned_stall && since.elapsed() > Duration::from_secs(5) {
                        warned_stall = true;
                        eprintln!("warren-loadgen: producer {idx}: broker has not read from its socket for 5 s");
                    }
                }
                Err(e) => return Err(ClientError::from(e).to_string()),
            }
        }
        sent += n;
        conn.poll()?;
        incoming(&mut conn, &mut confirms, counters)?;
    }
    if clean {
        conn.close(CLOSE_TIMEOUT, |c, f| {
            if f.kind == FRAME_METHOD {
                confirms.on_method(c.payload(f));
            }
        });
        Counters::set(&counters.confirmed, confirms.resolved());
        Counters::set(&counters.nacked, confirms.nacked);
    }
    Ok(())
}

/// Handles what a producer received: confirms, and the rare methods
/// (close, blocked) via [`Conn::other_method`].
fn incoming(conn: &mut Conn, confirms: &mut ConfirmTracker, c: &Counters) -> Result<(), String> {
    let before = confirms.resolved();
    while let Some(f) = conn.next_frame()? {
        if f.kind != FRAME_METHOD || confirms.on_method(conn.payload(&f)) {
            continue;
        }
        conn.other_method(&f)?;
    }
    if confirms.resolved() != before {
        Counters::set(&c.confirmed, confirms.resolved());
        Counters::set(&c.nacked, confirms.nacked);
    }
    Ok(())
}

/// A consumer thread: connect, qos, consume, report ready, wait for the gate,
/// count (and ack) deliveries until stopped, close.
pub fn consumer(
    uri: &AmqpUri,
    idx: usize,
    cfg: &ConsumerCfg,
    ctl: &Control,
    counters: &Counters,
    ready: Sender<()>,
) -> Result<(), String> {
    let mut conn = Conn::open(uri, &format!("warren-loadgen consumer {idx}"))?;
    if !cfg.no_ack && cfg.prefetch > 0 {
        let qos = BasicQos {
            prefetch_count: cfg.prefetch,
            ..Default::default()
        };
        match conn.call(CHANNEL, qos.into())? {
            Method::BasicQosOk(_) => {}
            m => return Err(format!("expected basic.qos-ok, got {}", m.name())),
        }
    }
    let _ = ready.send(());
    if !ctl.wait_gate() {
        return Ok(());
    }
    let consume = BasicConsume {
        queue: Bytes::copy_from_slice(cfg.queue.as_bytes()),
        consumer_tag: Bytes::from(format!("warren-loadgen-{idx}")),
        no_ack: cfg.no_ack,
        ..Default::default()
    };
    match conn.call(CHANNEL, consume.into())? {
        Method::BasicConsumeOk(_) => {}
        m => return Err(format!("expected basic.consume-ok, got {}", m.name())),
    }
    // Ack before the broker runs out of prefetch credit.
    let ack_every = match cfg.prefetch {
        0 => cfg.ack_every,
        p => cfg.ack_every.min((p as u64 / 2).max(1)),
    }
    .max(1);
    let mut delivered = 0u64;
    let mut last_tag = 0u64;
    let mut unacked = 0u64;
    while !ctl.stopped() {
        if !conn.fill()? {
            // Idle: ack the tail.
            if unacked > 0 {
                ack(&mut conn, last_tag)?;
                unacked = 0;
            }
            continue;
        }
        while let Some(f) = conn.next_frame()? {
            if f.kind != FRAME_METHOD {
                continue;
            }
            let p = conn.payload(&f);
            if method_id(p) == (60, 60) {
                delivered += 1;
                if !cfg.no_ack {
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
        Counters::set(&counters.delivered, delivered);
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
        let msg = encode_publish("q", 10, 4096);
        let mut rest = &msg[..];
        let mut kinds = Vec::new();
        while !rest.is_empty() {
            let h = check_frame(rest, 4096).unwrap().unwrap();
            kinds.push(h.kind);
            rest = &rest[h.total_len()..];
        }
        assert_eq!(kinds, [1, 2, 3]);
        assert_eq!(encode_publish("q", 0, 4096).len(), msg.len() - 18);
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
