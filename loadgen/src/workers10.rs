//! The two worker threads of `throughput10`, each on its own AMQP 1.0
//! connection ([`Conn10`]) with one session and one link (handle
//! [`HANDLE`]):
//!
//! - the **sender** ([`sender`]) attaches to `/queues/NAME` and writes
//!   batches of pre-encoded transfers ([`Template`]: only the delivery-id
//!   and delivery-tag are patched per message), as many as the link credit,
//!   the broker's session incoming window and (unsettled) the `--inflight`
//!   limit on messages without an outcome allow; between writes it reads
//!   the broker's flows (credit, window) and dispositions (outcomes) without
//!   blocking, and it times how long each limit held it up;
//! - the **receiver** ([`receiver`]) attaches to `/queues/NAME` and grants
//!   `--credit` on its link, again whenever half is used; it walks the
//!   transfers in place, joins multi-frame deliveries (`more`), checks each
//!   message's sections, and (unsettled) accepts what it got with one
//!   settled disposition per range of delivery-ids after each read. Every
//!   flow it sends also renews its session incoming window.
//!
//! Both check the broker as they go: a transfer past the link credit we
//! granted, past our session window, or with the wrong settled flag is an
//! error. Counts go to the worker's [`Counters`] like the 0-9-1 workers':
//! `published` (whole messages written), `confirmed` / `nacked` (outcomes:
//! accepted / anything else), `delivered` (whole messages received).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use warren::protocol::amqp10::{
    role, write_data, write_header, write_transfer, Accepted, Attach, Body, DeliveryState,
    Disposition, FrameBody, Header, Performative, Sections, Transfer,
};

use crate::client::{ClientError, CLOSE_TIMEOUT};
use crate::client10::{Conn10, LinkFlow, CHANNEL};
use crate::report::Counters;
use crate::workers::{filler, ConfirmTracker, Worker, BATCH_BYTES};

/// The handle of each connection's one link.
pub const HANDLE: u32 = 0;

/// Warn when one limit has held the sender up this long without a break.
const STALL_WARNING: Duration = Duration::from_secs(5);

/// What the sender sends.
#[derive(Clone, Debug)]
pub struct SenderCfg {
    pub queue: String,
    /// Body size in bytes (one data section).
    pub size: usize,
    /// A header section with durable=true.
    pub persistent: bool,
    /// snd-settle-mode settled: no outcomes.
    pub settled: bool,
    /// Unsettled: at most this many messages without an outcome.
    pub inflight: u64,
    /// Our max-frame-size; outgoing frames are cut at the lower of it and
    /// the broker's.
    pub max_frame_size: u32,
    pub incoming_window: u32,
}

/// How the receiver receives.
#[derive(Clone, Debug)]
pub struct ReceiverCfg {
    pub queue: String,
    /// snd-settle-mode settled: deliveries come settled, no dispositions.
    pub settled: bool,
    /// Link credit granted at a time (again when half is used).
    pub credit: u32,
    /// Body size the sender sends: other sizes are counted as odd.
    pub size: usize,
    pub max_frame_size: u32,
    pub incoming_window: u32,
}

/// What held the sender up, and how its messages were framed.
#[derive(Clone, Debug, Default)]
pub struct SenderStats {
    /// Transfer frames per message.
    pub frames_per_msg: u32,
    /// Waiting with no link credit.
    pub wait_credit: Duration,
    /// Waiting for the broker's session incoming window.
    pub wait_window: Duration,
    /// Unsettled: waiting with `--inflight` messages without an outcome.
    pub wait_outcomes: Duration,
}

impl SenderStats {
    fn add_wait(&mut self, why: Limit, d: Duration) {
        match why {
            Limit::Credit => self.wait_credit += d,
            Limit::Window => self.wait_window += d,
            Limit::Outcomes => self.wait_outcomes += d,
        }
    }
}

/// What can hold the sender up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    Credit,
    Window,
    Outcomes,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Credit => "link credit",
            Limit::Window => "session incoming window",
            Limit::Outcomes => "outcomes",
        }
    }
}

/// What the receiver saw besides its count.
#[derive(Clone, Debug, Default)]
pub struct ReceiverStats {
    /// Deliveries settled by our accepted dispositions.
    pub accepted: u64,
    /// Deliveries that came in more than one transfer frame.
    pub multi_frame: u64,
    /// Messages whose body was not one data section of the expected size.
    pub odd_bodies: u64,
    /// Flows sent (credit and window renewals).
    pub flows: u64,
}

/// One message as it goes on the wire: its transfer frame(s), `more` on
/// all but the last, the first with the delivery-id and delivery-tag at
/// fixed offsets (full-width encodings), patched per message by
/// [`Template::patch`].
#[derive(Clone, Debug)]
pub struct Template {
    pub bytes: Vec<u8>,
    id_at: usize,
    tag_at: usize,
    pub frames: u32,
}

/// A delivery-id whose smallest encodings are full width (uint, 4-byte
/// binary), so that any id can be patched over it.
const MARK: u32 = 0xA1B2_C3D4;

impl Template {
    /// Frames `payload` (a message's encoded sections) on link `handle`,
    /// cutting it into frames of at most `max_frame` bytes.
    pub fn new(handle: u32, settled: bool, payload: &[u8], max_frame: u32) -> Template {
        let mut t = Transfer {
            handle,
            delivery_id: Some(MARK),
            delivery_tag: Some(Bytes::copy_from_slice(&MARK.to_be_bytes())),
            message_format: Some(0),
            settled: Some(settled),
            ..Transfer::default()
        };
        let max = max_frame as usize;
        let mut bytes = Vec::with_capacity(payload.len() + 64);
        let mut rest = payload;
        let mut frames = 0;
        loop {
            frames += 1;
            t.more = false;
            if 8 + encoded_len(&t) + rest.len() <= max {
                write_transfer(&mut bytes, CHANNEL, &t, rest);
                break;
            }
            t.more = true;
            let room = max.saturating_sub(8 + encoded_len(&t)).max(1);
            write_transfer(&mut bytes, CHANNEL, &t, &rest[..room]);
            rest = &rest[room..];
            // Continuations: the delivery-id and the rest may be omitted.
            t = Transfer {
                handle,
                ..Transfer::default()
            };
        }
        let m = MARK.to_be_bytes();
        let find = |pat: &[u8]| {
            bytes
                .windows(pat.len())
                .position(|w| w == pat)
                .map(|at| at + pat.len() - 4)
                .expect("the codec writes a full-width delivery-id and tag")
        };
        let id_at = find(&[0x70, m[0], m[1], m[2], m[3]]);
        let tag_at = find(&[0xa0, 4, m[0], m[1], m[2], m[3]]);
        Template {
            bytes,
            id_at,
            tag_at,
            frames,
        }
    }

    /// Writes delivery-id and delivery-tag `id` into `msg`, a copy of
    /// [`Template::bytes`].
    #[inline]
    pub fn patch(&self, msg: &mut [u8], id: u32) {
        let b = id.to_be_bytes();
        msg[self.id_at..self.id_at + 4].copy_from_slice(&b);
        msg[self.tag_at..self.tag_at + 4].copy_from_slice(&b);
    }
}

fn encoded_len(t: &Transfer) -> usize {
    let mut v = Vec::with_capacity(64);
    t.encode(&mut v);
    v.len()
}

/// The message's sections: a header (durable) if `persistent`, one data
/// section of `size` filler bytes.
pub fn message(size: usize, persistent: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 16);
    if persistent {
        let h = Header {
            durable: Some(true),
            ..Header::default()
        };
        write_header(&mut out, &h);
    }
    write_data(&mut out, &filler(size));
    out
}

/// `/queues/NAME`, the name percent-encoded outside RFC 3986's unreserved
/// characters (as RabbitMQ's clients write address v2).
pub fn queue_address(name: &str) -> String {
    let mut a = String::from("/queues/");
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            a.push(b as char);
        } else {
            a.push_str(&format!("%{b:02X}"));
        }
    }
    a
}

/// Our attach for the link to or from `queue`.
fn attach(name: &str, ours: bool, queue: &str, settled: bool) -> Attach {
    warren::client::amqp10::link_attach(name, HANDLE, ours, &queue_address(queue), settled)
}

/// The sending side: link and session bookkeeping, outcomes.
struct Sender<'a> {
    conn: Conn10,
    w: &'a Worker,
    settled: bool,
    /// Credit left of the broker's last grant.
    credit: u32,
    /// Deliveries begun on the link (its delivery-count).
    delivery_count: u32,
    /// Messages fully written.
    sent: u64,
    /// Outcomes, by delivery-id + 1 (runs stay below 2^32 messages).
    outcomes: ConfirmTracker,
    stats: SenderStats,
}

impl Sender<'_> {
    /// Messages written and without an outcome.
    fn unsettled(&self) -> u64 {
        self.sent.saturating_sub(self.outcomes.resolved())
    }

    /// Handles what already arrived, without blocking.
    fn poll(&mut self) -> Result<(), String> {
        self.conn.poll()?;
        self.incoming()
    }

    /// Waits for input (at most an I/O tick) and handles it.
    fn wait(&mut self) -> Result<(), String> {
        if !self.conn.fill()? {
            self.conn.heartbeat()?;
        }
        self.incoming()
    }

    /// Walks what arrived: credit, the session window (in `next_frame`),
    /// outcomes; close, end and detach are errors.
    fn incoming(&mut self) -> Result<(), String> {
        let before = self.outcomes.resolved();
        while let Some(f) = self.conn.next_frame()? {
            match &f.body {
                Some(FrameBody::Amqp(Performative::Flow(fl))) if fl.handle == Some(HANDLE) => {
                    // Credit = the broker's delivery-count + its credit - ours.
                    let granted = fl.link_credit.unwrap_or(0);
                    let left = fl
                        .delivery_count
                        .unwrap_or(0)
                        .wrapping_add(granted)
                        .wrapping_sub(self.delivery_count);
                    self.credit = if left > granted { 0 } else { left };
                }
                Some(FrameBody::Amqp(Performative::Disposition(d))) if d.role == role::RECEIVER => {
                    let nack = !matches!(d.state, Some(DeliveryState::Accepted(_)));
                    let last = d.last.unwrap_or(d.first);
                    self.outcomes
                        .on_range(d.first as u64 + 1, last as u64 + 1, nack);
                }
                _ => self.conn.control(&f)?,
            }
        }
        if self.outcomes.resolved() != before {
            let c = self.w.counters();
            Counters::set(&c.confirmed, self.outcomes.resolved());
            Counters::set(&c.nacked, self.outcomes.nacked);
        }
        Ok(())
    }

    /// Writes `data`, whole messages of `len` bytes each, counting them as
    /// they complete. While the broker does not read, handles what it
    /// sends. Ok(false): stopped in the middle (drop the connection).
    fn write(&mut self, data: &[u8], len: usize) -> Result<bool, String> {
        let mut off = 0;
        while off < data.len() {
            match self.conn.stream.write(&data[off..]) {
                Ok(0) => return Err("broker closed the socket".into()),
                Ok(n) => {
                    off += n;
                    self.conn.wrote();
                    let done = self.sent + (off / len) as u64;
                    Counters::set(&self.w.counters().published, done);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.w.ctl.stopped() {
                        return Ok(false);
                    }
                    self.poll()?;
                }
                Err(e) => return Err(ClientError::from(e).to_string()),
            }
        }
        self.sent += (data.len() / len) as u64;
        Ok(true)
    }
}

/// The sender thread: connect, attach, report ready, wait for the gate,
/// send as fast as credit, window and outcomes allow until stopped, wait a
/// little for the last outcomes, close.
pub fn sender(w: &Worker, cfg: &SenderCfg) -> Result<SenderStats, String> {
    let name = format!("warren-loadgen-sender-{}", std::process::id());
    let mut conn = Conn10::open(&w.uri, &name, cfg.max_frame_size, cfg.incoming_window)?;
    conn.attach(attach(&name, role::SENDER, &cfg.queue, cfg.settled))?;
    let max_frame = conn.max_frame_out.min(cfg.max_frame_size);
    let msg = Template::new(
        HANDLE,
        cfg.settled,
        &message(cfg.size, cfg.persistent),
        max_frame,
    );
    let mut s = Sender {
        conn,
        w,
        settled: cfg.settled,
        credit: 0,
        delivery_count: 0,
        sent: 0,
        outcomes: ConfirmTracker::default(),
        stats: SenderStats {
            frames_per_msg: msg.frames,
            ..SenderStats::default()
        },
    };
    // The first credit came right after the attach.
    s.incoming()?;
    if !w.ready() {
        return Ok(s.stats);
    }
    let len = msg.bytes.len();
    let per_batch = (BATCH_BYTES / len).max(1);
    let mut batch = msg.bytes.repeat(per_batch);
    // The limit holding the sender up, since when.
    let mut stalled: Option<(Limit, Instant)> = None;
    let mut warned = false;
    while !w.ctl.stopped() {
        let window = s.conn.session.remote_incoming_window / msg.frames;
        let outcomes = if s.settled {
            u64::MAX
        } else {
            cfg.inflight.saturating_sub(s.unsettled())
        };
        let n = (per_batch as u64)
            .min(s.credit as u64)
            .min(window as u64)
            .min(outcomes) as usize;
        if n == 0 {
            let why = if s.credit == 0 {
                Limit::Credit
            } else if window == 0 {
                Limit::Window
            } else {
                Limit::Outcomes
            };
            let t = Instant::now();
            let since = match stalled {
                Some((w, since)) if w == why => since,
                _ => t,
            };
            stalled = Some((why, since));
            if !warned && since.elapsed() > STALL_WARNING {
                warned = true;
                eprintln!(
                    "warren-loadgen: sender: waiting for the broker's {} for {} s ({} sent, {} without outcome)",
                    why.name(),
                    STALL_WARNING.as_secs(),
                    s.sent,
                    s.unsettled()
                );
            }
            s.wait()?;
            s.stats.add_wait(why, t.elapsed());
            continue;
        }
        stalled = None;
        let first_id = s.conn.session.next_delivery_id;
        for (i, m) in batch.chunks_exact_mut(len).take(n).enumerate() {
            msg.patch(m, first_id.wrapping_add(i as u32));
        }
        // Committed before the write: a flow read while the write stalls
        // is counted against these.
        let frames = n as u32 * msg.frames;
        s.credit -= n as u32;
        s.delivery_count = s.delivery_count.wrapping_add(n as u32);
        let session = &mut s.conn.session;
        session.next_delivery_id = first_id.wrapping_add(n as u32);
        session.next_outgoing_id = session.next_outgoing_id.wrapping_add(frames);
        session.remote_incoming_window -= frames;
        if !s.write(&batch[..n * len], len)? {
            // Stopped mid-message: no clean close possible, drop the socket.
            return Ok(s.stats);
        }
        s.poll()?;
    }
    // The last outcomes, before the close drops them with the session.
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while !s.settled && s.unsettled() > 0 && Instant::now() < deadline {
        s.wait()?;
    }
    let Sender {
        conn,
        stats,
        mut outcomes,
        ..
    } = s;
    conn.close(CLOSE_TIMEOUT, |f| {
        if let Some(FrameBody::Amqp(Performative::Disposition(d))) = &f.body {
            let nack = !matches!(d.state, Some(DeliveryState::Accepted(_)));
            let last = d.last.unwrap_or(d.first);
            outcomes.on_range(d.first as u64 + 1, last as u64 + 1, nack);
        }
    });
    let c = w.counters();
    Counters::set(&c.confirmed, outcomes.resolved());
    Counters::set(&c.nacked, outcomes.nacked);
    Ok(stats)
}

/// A delivery whose frames are still coming.
struct Partial {
    id: u32,
    payload: Vec<u8>,
}

/// The receiving side: credit, ranges to accept, multi-frame deliveries.
struct Receiver<'a> {
    conn: Conn10,
    w: &'a Worker,
    cfg: &'a ReceiverCfg,
    /// Deliveries begun on the link (its delivery-count).
    delivery_count: u32,
    /// The delivery-count our last flow's credit runs up to.
    limit: u32,
    /// Whole messages received.
    received: u64,
    /// Delivery-ids received and not yet accepted: first..=last.
    unaccepted: Option<(u32, u32)>,
    partial: Option<Partial>,
    stats: ReceiverStats,
}

impl Receiver<'_> {
    /// Queues a flow granting `--credit` from our delivery-count.
    fn grant(&mut self) {
        self.limit = self.delivery_count.wrapping_add(self.cfg.credit);
        self.conn.queue_flow(Some(LinkFlow {
            handle: HANDLE,
            delivery_count: self.delivery_count,
            link_credit: self.cfg.credit,
        }));
        self.stats.flows += 1;
    }

    /// Credit the broker has left.
    fn credit_left(&self) -> u32 {
        self.limit.wrapping_sub(self.delivery_count)
    }

    /// Walks what arrived, then accepts it, renews credit and window, and
    /// writes that.
    fn walk(&mut self) -> Result<(), String> {
        while let Some(f) = self.conn.next_frame()? {
            match &f.body {
                Some(FrameBody::Amqp(Performative::Transfer(t))) => {
                    self.transfer(t, f.payload.clone())?
                }
                // Drain and echo answers, the broker settling (released on a
                // consumer timeout): nothing to do here.
                Some(FrameBody::Amqp(Performative::Flow(_) | Performative::Disposition(_))) => {}
                _ => self.conn.control(&f)?,
            }
        }
        Counters::set(&self.w.counters().delivered, self.received);
        self.accept();
        if self.credit_left() <= self.cfg.credit / 2 {
            self.grant();
        } else if self.conn.session.window_low() {
            self.conn.queue_flow(None);
            self.stats.flows += 1;
        }
        Ok(self.conn.flush()?)
    }

    fn transfer(&mut self, t: &Transfer, payload: Bytes) -> Result<(), String> {
        if t.handle != HANDLE {
            return Err(format!(
                "transfer on handle {} (ours is {HANDLE})",
                t.handle
            ));
        }
        let Some(mut p) = self.partial.take() else {
            return self.first_transfer(t, payload);
        };
        if t.delivery_id.is_some_and(|id| id != p.id) {
            return Err(format!(
                "continuation transfer with delivery-id {:?} in delivery {}",
                t.delivery_id, p.id
            ));
        }
        if t.aborted {
            return Ok(());
        }
        p.payload.extend_from_slice(&payload);
        if t.more {
            self.partial = Some(p);
            return Ok(());
        }
        self.complete(p.id, Bytes::from(p.payload))
    }

    fn first_transfer(&mut self, t: &Transfer, payload: Bytes) -> Result<(), String> {
        let id = t
            .delivery_id
            .ok_or("first transfer of a delivery without delivery-id")?;
        self.delivery_count = self.delivery_count.wrapping_add(1);
        if self.credit_left() > self.cfg.credit {
            // Wrapped below 0: one delivery past the credit.
            return Err(format!(
                "delivery {id} past the link credit: delivery-count {} with credit up to {}",
                self.delivery_count, self.limit
            ));
        }
        let settled = t.settled.unwrap_or(false);
        if settled != self.cfg.settled {
            return Err(format!(
                "delivery {id} with settled={settled} on a link attached with snd-settle-mode {}",
                if self.cfg.settled {
                    "settled"
                } else {
                    "unsettled"
                }
            ));
        }
        if t.aborted {
            return Ok(());
        }
        if t.more {
            self.stats.multi_frame += 1;
            self.partial = Some(Partial {
                id,
                payload: payload.to_vec(),
            });
            return Ok(());
        }
        self.complete(id, payload)
    }

    /// A whole message: check its sections, count it, note it to accept.
    fn complete(&mut self, id: u32, payload: Bytes) -> Result<(), String> {
        let sections =
            Sections::parse(payload).map_err(|e| format!("delivery {id}: bad message: {e}"))?;
        match &sections.body {
            Body::Data(d) if d.len() == 1 && d.total_len() == self.cfg.size => {}
            _ => self.stats.odd_bodies += 1,
        }
        self.received += 1;
        if self.cfg.settled {
            return Ok(());
        }
        self.unaccepted = match self.unaccepted {
            Some((first, last)) if id == last.wrapping_add(1) => Some((first, id)),
            Some(_) => {
                self.accept();
                Some((id, id))
            }
            None => Some((id, id)),
        };
        Ok(())
    }

    /// Queues one settled disposition accepting the open range.
    fn accept(&mut self) {
        let Some((first, last)) = self.unaccepted.take() else {
            return;
        };
        let d = Disposition {
            role: role::RECEIVER,
            first,
            last: (last != first).then_some(last),
            settled: true,
            state: Some(DeliveryState::Accepted(Accepted {})),
            batchable: false,
        };
        self.conn.queue(&Performative::Disposition(d));
        self.stats.accepted += last.wrapping_sub(first) as u64 + 1;
    }
}

/// The receiver thread: connect, attach, report ready, wait for the gate,
/// grant credit, receive (and accept) until stopped, close.
pub fn receiver(w: &Worker, cfg: &ReceiverCfg) -> Result<ReceiverStats, String> {
    let name = format!("warren-loadgen-receiver-{}", std::process::id());
    let mut conn = Conn10::open(&w.uri, &name, cfg.max_frame_size, cfg.incoming_window)?;
    let reply = conn.attach(attach(&name, role::RECEIVER, &cfg.queue, cfg.settled))?;
    let delivery_count = reply.initial_delivery_count.unwrap_or(0);
    let mut r = Receiver {
        conn,
        w,
        cfg,
        delivery_count,
        limit: delivery_count,
        received: 0,
        unaccepted: None,
        partial: None,
        stats: ReceiverStats::default(),
    };
    if !w.ready() {
        return Ok(r.stats);
    }
    r.grant();
    // Frames first, then a read: the grant goes out in the first walk.
    loop {
        r.walk()?;
        if w.ctl.stopped() {
            break;
        }
        if !r.conn.fill()? {
            r.conn.heartbeat()?;
        }
    }
    let Receiver { conn, stats, .. } = r;
    conn.close(CLOSE_TIMEOUT, |_| {});
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren::protocol::amqp10::{check_frame, read_frame};

    /// The frames of `bytes`, decoded.
    fn frames(bytes: &[u8], max: u32) -> Vec<(Transfer, Bytes)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = check_frame(rest, max).unwrap().expect("whole frame");
            let f = read_frame(Bytes::copy_from_slice(&rest[..len])).unwrap();
            match f.body {
                Some(FrameBody::Amqp(Performative::Transfer(t))) => out.push((t, f.payload)),
                b => panic!("not a transfer: {b:?}"),
            }
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn one_frame_template_patched() {
        let payload = message(16, false);
        let t = Template::new(HANDLE, false, &payload, 131072);
        assert_eq!(t.frames, 1);
        let mut m = t.bytes.clone();
        t.patch(&mut m, 7);
        let f = frames(&m, 131072);
        assert_eq!(f.len(), 1);
        let (tr, p) = &f[0];
        assert_eq!(tr.delivery_id, Some(7));
        assert_eq!(tr.delivery_tag.as_deref(), Some(&7u32.to_be_bytes()[..]));
        assert_eq!(
            (tr.settled, tr.more, tr.message_format),
            (Some(false), false, Some(0))
        );
        assert_eq!(&p[..], &payload[..]);
        let s = Sections::parse(p.clone()).unwrap();
        assert!(s.header.is_none());
        match s.body {
            Body::Data(d) => assert_eq!(&d.first[..], &filler(16)[..]),
            b => panic!("{b:?}"),
        }
    }

    #[test]
    fn multi_frame_template() {
        let payload = message(2000, true);
        let t = Template::new(HANDLE, true, &payload, 512);
        let mut m = t.bytes.clone();
        t.patch(&mut m, 0x0102_0304);
        let f = frames(&m, 512);
        assert_eq!(f.len() as u32, t.frames);
        assert!(t.frames >= 4, "{}", t.frames);
        assert_eq!(f[0].0.delivery_id, Some(0x0102_0304));
        assert_eq!(f[0].0.settled, Some(true));
        for (i, (tr, _)) in f.iter().enumerate() {
            assert_eq!(tr.more, i + 1 < f.len(), "frame {i}");
            assert_eq!(tr.handle, HANDLE);
        }
        let joined: Vec<u8> = f.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        assert_eq!(joined, payload);
        let s = Sections::parse(Bytes::from(joined)).unwrap();
        assert_eq!(s.header.and_then(|h| h.durable), Some(true));
    }

    #[test]
    fn addresses() {
        assert_eq!(queue_address("loadgen-12"), "/queues/loadgen-12");
        assert_eq!(queue_address("a b/c"), "/queues/a%20b%2Fc");
        assert_eq!(queue_address("é"), "/queues/%C3%A9");
    }
}
