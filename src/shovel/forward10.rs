//! The forwarding loop when either end speaks AMQP 1.0 (RabbitMQ's
//! `rabbit_amqp10_shovel`). Messages pass whole, through the core's
//! neutral form (`core::message::Message`: 0-9-1 properties and a body),
//! mapped as warren's own 1.0 front end maps them (`amqp10::mapping`,
//! RabbitMQ 4's `mc_amqp`): a 1.0 source's transfers are parsed into
//! sections and turned into a `Message`; a 1.0 destination gets the
//! `Message` written as sections. A 0-9-1 end works as in `forward.rs`,
//! except that the body is gathered before the message goes on.
//!
//! Settlement follows the ack-mode as in `forward.rs`. At a 1.0 source a
//! settled disposition `accepted` acknowledges, `released` returns a
//! message the destination refused; credit (`src-prefetch-count`) is
//! renewed once half of it is used. At a 1.0 destination deliveries are
//! sent unsettled with `on-confirm` (the outcome is the confirm: accepted,
//! anything else a nack) and settled otherwise; the loop stops reading the
//! source while the destination's link credit or session window is
//! spent.

use super::forward::{put_ack, Heartbeat, Rewrite};
use super::worker::{Exit, RunCtx};
use crate::amqp10::mapping::{to_core_in, write_for_amqp10};
use crate::client::amqp10::{Conn10, LinkFlow, CHANNEL as CH10};
use crate::client::{method_id, ClientError, Conn};
use crate::core::message::Message;
use crate::core::shovel_def::{AckMode, Dest, ShovelDef};
use crate::protocol::amqp10::{
    role, write_transfer, Accepted, DeliveryState, Disposition, FrameBody, Performative, Released,
    Sections, Transfer,
};
use crate::protocol::constants::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use crate::protocol::properties::BasicProperties;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The link handle of a shovel's one link per connection.
pub const HANDLE: u32 = 0;

/// Unsent output above which the source is not read.
const OUT_HIGH: usize = 4 << 20;

/// How long a stopping shovel waits for outstanding confirms.
const DRAIN: Duration = Duration::from_secs(2);

/// One end of a shovel.
pub enum End {
    A091(Conn),
    A10(Link10),
}

/// An AMQP 1.0 connection with the shovel's link attached.
pub struct Link10 {
    pub conn: Conn10,
    /// Receiver: the credit granted (`src-prefetch-count`). Sender: unused.
    pub window: u32,
    /// Sender: credit the broker gave and we did not use. Receiver: credit
    /// we granted that the broker did not use.
    pub credit: u32,
    /// The link's delivery-count (ours as sender, the broker's as seen).
    pub delivery_count: u32,
}

impl End {
    fn poll(&mut self) -> Result<bool, ClientError> {
        match self {
            End::A091(c) => c.poll(),
            End::A10(l) => l.conn.poll(),
        }
    }

    fn fd(&self) -> std::os::fd::RawFd {
        match self {
            End::A091(c) => c.stream.fd(),
            End::A10(l) => l.conn.stream.fd(),
        }
    }

    fn stream(&mut self) -> &mut crate::client::stream::Stream {
        match self {
            End::A091(c) => &mut c.stream,
            End::A10(l) => &mut l.conn.stream,
        }
    }

    fn heartbeat_secs(&self) -> u16 {
        match self {
            End::A091(c) => c.heartbeat,
            // Conn10 keeps the broker's idle-time-out itself.
            End::A10(_) => 0,
        }
    }

    /// Closes politely (see `Conn::close`, `Conn10::close`).
    pub fn close(self) {
        let t = Duration::from_secs(2);
        match self {
            End::A091(c) => c.close(t, |_, _| {}),
            End::A10(l) => l.conn.close(t, |_| {}),
        }
    }
}

/// A 0-9-1 delivery being gathered.
struct Gathering {
    tag: u64,
    exchange: Bytes,
    key: Bytes,
    props: Bytes,
    left: u64,
    body: BytesMut,
}

/// A 1.0 transfer being gathered (multi-frame).
struct Partial10 {
    id: u32,
    payload: BytesMut,
}

pub struct Forwarder10<'a> {
    ctx: &'a RunCtx,
    ack_mode: AckMode,
    dest: &'a Dest,
    rewrite: Option<Rewrite>,
    gathering: Option<Gathering>,
    partial: Option<Partial10>,
    /// on-confirm: source tags by destination sequence (0-9-1 publish seq,
    /// or 1.0 delivery-id + 1), None once settled.
    pending: VecDeque<Option<u64>>,
    first_seq: u64,
    next_seq: u64,
    budget: Option<u64>,
    remaining: Option<u64>,
    /// Source tags to settle, in order: (tag, accepted).
    settle: Vec<(u64, bool)>,
    src_out: Vec<u8>,
    dst_out: Vec<u8>,
    src_sent: usize,
    dst_sent: usize,
    forwarded: u64,
    scratch: Vec<u8>,
    arena: BytesMut,
}

impl<'a> Forwarder10<'a> {
    pub fn new(def: &'a ShovelDef, ctx: &'a RunCtx, remaining: Option<u64>) -> Forwarder10<'a> {
        Forwarder10 {
            ctx,
            ack_mode: def.ack_mode,
            dest: &def.dest,
            rewrite: Rewrite::of(def, ctx),
            gathering: None,
            partial: None,
            pending: VecDeque::new(),
            first_seq: 1,
            next_seq: 1,
            budget: remaining,
            remaining,
            settle: Vec::new(),
            src_out: Vec::new(),
            dst_out: Vec::new(),
            src_sent: 0,
            dst_sent: 0,
            forwarded: 0,
            scratch: Vec::new(),
            arena: BytesMut::new(),
        }
    }

    pub fn run(&mut self, src: &mut End, dst: &mut End) -> Exit {
        match self.run_inner(src, dst) {
            Ok(exit) => exit,
            Err((side, e)) => Exit::Failed(format!("{side}: {}", super::forward::describe(&e))),
        }
    }

    fn run_inner(
        &mut self,
        src: &mut End,
        dst: &mut End,
    ) -> Result<Exit, (&'static str, ClientError)> {
        let s = |e| ("source", e);
        let d = |e| ("destination", e);
        let mut stopping: Option<Instant> = None;
        let mut src_hb = Heartbeat::new(src.heartbeat_secs());
        let mut dst_hb = Heartbeat::new(dst.heartbeat_secs());
        loop {
            if stopping.is_none() && self.ctx.stop.load(Ordering::Acquire) {
                stopping = Some(Instant::now() + DRAIN);
            }
            if let Some(deadline) = stopping {
                if self.pending.is_empty() || Instant::now() > deadline {
                    self.flush_all(src, dst)?;
                    return Ok(Exit::Stopped);
                }
            }
            let now = Instant::now();
            let got = dst.poll().map_err(d)?;
            dst_hb.received(got, now).map_err(d)?;
            let mut busy = got | self.on_dest_frames(dst).map_err(d)?;
            let (blocked, no_room) = match &*dst {
                End::A091(c) => (c.blocked, false),
                End::A10(l) => (
                    false,
                    l.credit == 0 || l.conn.session.remote_incoming_window == 0,
                ),
            };
            self.ctx.cell.set_blocked(blocked);
            let paused = stopping.is_some()
                || blocked
                || no_room
                || self.dst_out.len() - self.dst_sent > OUT_HIGH;
            if paused {
                src_hb.received(true, now).map_err(s)?;
            } else {
                let got = src.poll().map_err(s)?;
                src_hb.received(got, now).map_err(s)?;
                busy |= got | self.on_source_frames(src, dst).map_err(s)?;
            }
            self.end_batch(src);
            dst_hb.send_if_due(&mut self.dst_out, now);
            src_hb.send_if_due(&mut self.src_out, now);
            flush(dst, &mut self.dst_out, &mut self.dst_sent).map_err(d)?;
            flush(src, &mut self.src_out, &mut self.src_sent).map_err(s)?;
            // A 1.0 connection's own heartbeat, written directly: only
            // between our writes, never inside a half-sent frame.
            if let (End::A10(l), true) = (&mut *src, self.src_out.is_empty()) {
                l.conn.heartbeat().map_err(s)?;
            }
            if let (End::A10(l), true) = (&mut *dst, self.dst_out.is_empty()) {
                l.conn.heartbeat().map_err(d)?;
            }
            if self.remaining == Some(0) {
                self.flush_all(src, dst)?;
                return Ok(Exit::Done);
            }
            if !busy {
                wait(
                    src,
                    dst,
                    !paused,
                    self.src_sent < self.src_out.len(),
                    self.dst_sent < self.dst_out.len(),
                );
            }
        }
    }

    fn flush_all(
        &mut self,
        src: &mut End,
        dst: &mut End,
    ) -> Result<(), (&'static str, ClientError)> {
        self.end_batch(src);
        crate::client::write_all_within(dst.stream(), &self.dst_out[self.dst_sent..])
            .map_err(|e| ("destination", e))?;
        self.dst_out.clear();
        self.dst_sent = 0;
        crate::client::write_all_within(src.stream(), &self.src_out[self.src_sent..])
            .map_err(|e| ("source", e))?;
        self.src_out.clear();
        self.src_sent = 0;
        Ok(())
    }

    /// Settles at the source what this batch decided, renews a 1.0
    /// source's credit and window, reports counters.
    fn end_batch(&mut self, src: &mut End) {
        let settle = std::mem::take(&mut self.settle);
        match src {
            End::A091(_) => {
                // Tags rise: one multiple ack per accepted run ending
                // before a nack, one nack each.
                let mut top: Option<u64> = None;
                for (tag, ok) in &settle {
                    if *ok {
                        top = Some(*tag);
                    } else {
                        if let Some(t) = top.take() {
                            put_ack(&mut self.src_out, 80, t, true, false);
                        }
                        put_ack(&mut self.src_out, 120, *tag, false, true);
                    }
                }
                if let Some(t) = top {
                    put_ack(&mut self.src_out, 80, t, true, false);
                }
            }
            End::A10(l) => {
                // Runs of consecutive ids with the same outcome: one
                // disposition each.
                let mut i = 0;
                while i < settle.len() {
                    let (first, ok) = settle[i];
                    let mut last = first;
                    while i + 1 < settle.len() && settle[i + 1] == (last + 1, ok) {
                        i += 1;
                        last += 1;
                    }
                    i += 1;
                    let state = if ok {
                        DeliveryState::Accepted(Accepted {})
                    } else {
                        DeliveryState::Released(Released {})
                    };
                    let d = Disposition {
                        role: role::RECEIVER,
                        first: first as u32,
                        last: (last != first).then_some(last as u32),
                        settled: true,
                        state: Some(state),
                        batchable: false,
                    };
                    l.conn.queue(&Performative::Disposition(d));
                }
                if l.credit <= l.window / 2 {
                    l.credit = l.window;
                    l.conn.queue_flow(Some(LinkFlow {
                        handle: HANDLE,
                        delivery_count: l.delivery_count,
                        link_credit: l.window,
                    }));
                } else if l.conn.session.window_low() {
                    l.conn.queue_flow(None);
                }
                self.src_out.append(&mut l.conn.out);
            }
        }
        self.ctx
            .cell
            .add_forwarded(std::mem::take(&mut self.forwarded));
        self.ctx.cell.set_pending(self.pending.len() as u64);
        self.ctx.cell.set_remaining(self.remaining);
    }

    fn on_dest_frames(&mut self, dst: &mut End) -> Result<bool, ClientError> {
        let mut any = false;
        match dst {
            End::A091(c) => {
                while let Some(f) = c.next_frame()? {
                    any = true;
                    if f.kind != FRAME_METHOD {
                        continue;
                    }
                    let p = c.payload(&f);
                    match method_id(p) {
                        (60, 80) | (60, 120) => {
                            let a = &p[4..];
                            let (Some(tag), Some(bits)) = (a.get(..8), a.get(8)) else {
                                return Err(ClientError::Protocol("short basic.ack".into()));
                            };
                            let seq = u64::from_be_bytes(tag.try_into().unwrap());
                            let nack = method_id(p).1 == 120;
                            if bits & 1 != 0 {
                                let from = self.first_seq;
                                for s in from..=seq {
                                    self.outcome(s, !nack);
                                }
                            } else {
                                self.outcome(seq, !nack);
                            }
                        }
                        _ => {
                            if let crate::protocol::Method::BasicCancel(_) = c.other_method(&f)? {
                                return Err(ClientError::Protocol("needed a restart".into()));
                            }
                        }
                    }
                }
            }
            End::A10(l) => {
                while let Some(f) = l.conn.next_frame()? {
                    any = true;
                    match &f.body {
                        Some(FrameBody::Amqp(Performative::Flow(fl)))
                            if fl.handle == Some(HANDLE) =>
                        {
                            let granted = fl.link_credit.unwrap_or(0);
                            let left = fl
                                .delivery_count
                                .unwrap_or(0)
                                .wrapping_add(granted)
                                .wrapping_sub(l.delivery_count);
                            l.credit = if left > granted { 0 } else { left };
                        }
                        Some(FrameBody::Amqp(Performative::Disposition(dp)))
                            if dp.role == role::RECEIVER =>
                        {
                            let ok = matches!(dp.state, Some(DeliveryState::Accepted(_)));
                            let last = dp.last.unwrap_or(dp.first);
                            let mut id = dp.first;
                            loop {
                                self.outcome(id as u64 + 1, ok);
                                if id == last {
                                    break;
                                }
                                id = id.wrapping_add(1);
                            }
                        }
                        _ => l.conn.control(&f)?,
                    }
                }
            }
        }
        Ok(any)
    }

    /// The destination's outcome of sequence `seq`.
    fn outcome(&mut self, seq: u64, ok: bool) {
        if seq < self.first_seq {
            return;
        }
        if let Some(e) = self.pending.get_mut((seq - self.first_seq) as usize) {
            if let Some(tag) = e.take() {
                self.settle.push((tag, ok));
                if ok {
                    self.forwarded += 1;
                    if let Some(r) = self.remaining.as_mut() {
                        *r = r.saturating_sub(1);
                    }
                } else if let Some(b) = self.budget.as_mut() {
                    *b += 1;
                }
            }
        }
        while let Some(None) = self.pending.front() {
            self.pending.pop_front();
            self.first_seq += 1;
        }
    }

    fn on_source_frames(&mut self, src: &mut End, dst: &mut End) -> Result<bool, ClientError> {
        let mut any = false;
        match src {
            End::A091(c) => {
                while let Some(f) = c.next_frame()? {
                    any = true;
                    let p = c.payload(&f);
                    match f.kind {
                        FRAME_METHOD if method_id(p) == (60, 60) => {
                            let d = super::forward::parse_deliver(&p[4..]).ok_or_else(|| {
                                ClientError::Protocol("malformed basic.deliver".into())
                            })?;
                            self.gathering = Some(Gathering {
                                tag: d.tag,
                                exchange: Bytes::copy_from_slice(d.exchange),
                                key: Bytes::copy_from_slice(d.routing_key),
                                props: Bytes::new(),
                                left: 0,
                                body: BytesMut::new(),
                            });
                        }
                        FRAME_METHOD => {
                            if let crate::protocol::Method::BasicCancel(_) = c.other_method(&f)? {
                                return Err(ClientError::Protocol(
                                    "the source cancelled the consumer (queue deleted?)".into(),
                                ));
                            }
                        }
                        FRAME_HEADER => {
                            let g = self.gathering.as_mut().ok_or_else(|| {
                                ClientError::Protocol("unexpected content header".into())
                            })?;
                            if p.len() < 14 {
                                return Err(ClientError::Protocol("short content header".into()));
                            }
                            g.left = u64::from_be_bytes(p[4..12].try_into().unwrap());
                            g.props = Bytes::copy_from_slice(&p[12..]);
                            self.forward_if_whole(dst)?;
                        }
                        FRAME_BODY => {
                            let g = self.gathering.as_mut().ok_or_else(|| {
                                ClientError::Protocol("unexpected body frame".into())
                            })?;
                            g.body.extend_from_slice(p);
                            g.left = g.left.saturating_sub(p.len() as u64);
                            self.forward_if_whole(dst)?;
                        }
                        _ => {}
                    }
                }
            }
            End::A10(l) => {
                while let Some(f) = l.conn.next_frame()? {
                    any = true;
                    let (t, payload) = match &f.body {
                        Some(FrameBody::Amqp(Performative::Transfer(t))) => {
                            (t.clone(), f.payload.clone())
                        }
                        Some(FrameBody::Amqp(
                            Performative::Flow(_) | Performative::Disposition(_),
                        )) => continue,
                        _ => {
                            l.conn.control(&f)?;
                            continue;
                        }
                    };
                    if let Some((id, whole)) = self.gather10(l, &t, payload)? {
                        let sections = Sections::parse(whole).map_err(|e| {
                            ClientError::Protocol(format!("delivery {id}: bad message: {e}"))
                        })?;
                        let (msg, _) = to_core_in(
                            Bytes::new(),
                            Bytes::new(),
                            &sections,
                            &mut self.scratch,
                            &mut self.arena,
                        );
                        let key = crate::amqp10::mapping::to_address(&sections).unwrap_or_default();
                        self.forward(
                            id as u64,
                            msg.exchange_bytes(),
                            key,
                            msg.properties_bytes(),
                            msg.body_bytes(),
                            dst,
                        )?;
                    }
                }
            }
        }
        Ok(any)
    }

    /// Forwards the 0-9-1 delivery being gathered once its body is all in.
    fn forward_if_whole(&mut self, dst: &mut End) -> Result<(), ClientError> {
        if self.gathering.as_ref().is_none_or(|g| g.left > 0) {
            return Ok(());
        }
        let g = self.gathering.take().unwrap();
        self.forward(g.tag, g.exchange, g.key, g.props, g.body.freeze(), dst)
    }

    /// A 1.0 transfer: the whole message once its last frame is in.
    fn gather10(
        &mut self,
        l: &mut Link10,
        t: &Transfer,
        payload: Bytes,
    ) -> Result<Option<(u32, Bytes)>, ClientError> {
        if let Some(mut p) = self.partial.take() {
            if t.aborted {
                return Ok(None);
            }
            p.payload.extend_from_slice(&payload);
            if t.more {
                self.partial = Some(p);
                return Ok(None);
            }
            return Ok(Some((p.id, p.payload.freeze())));
        }
        let id = t
            .delivery_id
            .ok_or_else(|| ClientError::Protocol("a transfer without delivery-id".into()))?;
        l.delivery_count = l.delivery_count.wrapping_add(1);
        l.credit = l.credit.saturating_sub(1);
        if t.aborted {
            return Ok(None);
        }
        if t.more {
            self.partial = Some(Partial10 {
                id,
                payload: BytesMut::from(&payload[..]),
            });
            return Ok(None);
        }
        Ok(Some((id, payload)))
    }

    /// Publishes one whole message to the destination and records how it
    /// is settled at the source. Past `src-delete-after` it is dropped
    /// unsettled (it goes back to the source when the shovel closes).
    fn forward(
        &mut self,
        tag: u64,
        exchange: Bytes,
        key: Bytes,
        props: Bytes,
        body: Bytes,
        dst: &mut End,
    ) -> Result<(), ClientError> {
        if self.budget == Some(0) {
            return Ok(());
        }
        let props = match &self.rewrite {
            None => props,
            Some(r) => {
                let mut p = BasicProperties::decode(props)
                    .map_err(|e| ClientError::Protocol(format!("bad properties: {e}")))?;
                r.apply(&mut p);
                p.to_bytes()
            }
        };
        let exchange: Bytes = match (&self.dest.queue, &self.dest.exchange) {
            (Some(_), _) => Bytes::new(),
            (None, Some(x)) => Bytes::copy_from_slice(x.as_bytes()),
            (None, None) => exchange,
        };
        let key: Bytes = match (&self.dest.queue, &self.dest.exchange_key) {
            (Some(q), _) => Bytes::copy_from_slice(q.as_bytes()),
            (None, Some(k)) => Bytes::copy_from_slice(k.as_bytes()),
            (None, None) => key,
        };
        let settled = self.ack_mode != AckMode::OnConfirm;
        match dst {
            End::A091(c) => {
                super::forward::put_publish(
                    &mut self.dst_out,
                    &exchange,
                    &key,
                    &props,
                    body.len() as u64,
                );
                let max = match c.frame_max {
                    0 => usize::MAX,
                    n => (n as usize).saturating_sub(8).max(1),
                };
                for chunk in body.chunks(max) {
                    super::forward::put_frame(&mut self.dst_out, FRAME_BODY, chunk);
                }
            }
            End::A10(l) => {
                let msg = Message::from_amqp091(exchange, key, props, body);
                self.scratch.clear();
                let rest = write_for_amqp10(&msg, false, &mut self.scratch);
                self.scratch.extend_from_slice(rest);
                let id = l.conn.session.next_delivery_id;
                l.conn.session.next_delivery_id = id.wrapping_add(1);
                let mut t = Transfer {
                    handle: HANDLE,
                    delivery_id: Some(id),
                    delivery_tag: Some(Bytes::copy_from_slice(&id.to_be_bytes())),
                    message_format: Some(0),
                    settled: Some(settled),
                    ..Transfer::default()
                };
                let room = (l.conn.max_frame_out as usize).saturating_sub(512).max(512);
                let mut rest: &[u8] = &self.scratch;
                loop {
                    t.more = rest.len() > room;
                    let n = rest.len().min(room);
                    write_transfer(&mut self.dst_out, CH10, &t, &rest[..n]);
                    l.conn.session.next_outgoing_id =
                        l.conn.session.next_outgoing_id.wrapping_add(1);
                    l.conn.session.remote_incoming_window =
                        l.conn.session.remote_incoming_window.saturating_sub(1);
                    rest = &rest[n..];
                    if rest.is_empty() {
                        break;
                    }
                    t = Transfer {
                        handle: HANDLE,
                        ..Transfer::default()
                    };
                }
                l.delivery_count = l.delivery_count.wrapping_add(1);
                l.credit = l.credit.saturating_sub(1);
                // The 1.0 sequence is the delivery-id + 1 (ids start at 0).
                self.next_seq = id as u64 + 1;
            }
        }
        if let Some(b) = self.budget.as_mut() {
            *b = b.saturating_sub(1);
        }
        if settled {
            self.settle.push((tag, true));
            self.forwarded += 1;
            if let Some(r) = self.remaining.as_mut() {
                *r = r.saturating_sub(1);
            }
        } else {
            if self.pending.is_empty() {
                self.first_seq = self.next_seq;
            }
            self.pending.push_back(Some(tag));
        }
        self.next_seq += 1;
        Ok(())
    }
}

fn flush(end: &mut End, out: &mut Vec<u8>, sent: &mut usize) -> Result<(), ClientError> {
    super::forward::flush_stream(end.stream(), out, sent)
}

fn wait(src: &End, dst: &End, read_src: bool, src_out: bool, dst_out: bool) {
    super::forward::wait_fds(src.fd(), dst.fd(), read_src, src_out, dst_out);
}
