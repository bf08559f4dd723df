//! The forwarding loop: deliveries read from the source are written to the
//! destination as publishes, frame by frame, and settled at the source by
//! the `ack-mode` (RabbitMQ's `rabbit_amqp091_shovel:handle_source` /
//! `handle_dest` / `do_forward`).
//!
//! - **Byte-exact**: the content header's property list is copied as it
//!   came (rewritten only for `dest-add-forward-headers`,
//!   `dest-add-timestamp-header` or `dest-publish-properties`), the body
//!   frames are passed on as they arrive (re-cut only if the destination's
//!   frame_max is smaller). Nothing is decoded or buffered per message
//!   beyond its frames.
//! - **on-confirm**: publish sequence number n maps to the source delivery
//!   tag in `pending[n - first_seq]`; a destination ack (multiple or not)
//!   becomes one source ack of the highest tag it covers (multiple), a
//!   nack one source nack with requeue. Tags rise with sequence numbers on
//!   both channels, so `multiple` at the source never covers a message
//!   the destination has not confirmed.
//! - **on-publish**: the source is acked (multiple) once per batch, after
//!   the batch is written. **no-ack**: nothing to settle.
//! - **Flow**: while the destination has blocked us or has more than
//!   `OUT_HIGH` bytes unsent, the source socket is not read; the source's
//!   prefetch bounds what it sends meanwhile. Memory is the two read
//!   buffers plus at most `OUT_HIGH` of output.
//! - **I/O**: non-blocking reads and writes on both sockets, one poll(2)
//!   when neither has work: no syscall per message.

use super::worker::{Exit, RunCtx};
use crate::client::{method_id, ClientError, Conn, CHANNEL};
use crate::core::shovel_def::{AckMode, Dest, Protocol, ShovelDef, Source};
use crate::protocol::constants::{FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::protocol::properties::BasicProperties;
use crate::protocol::{FieldTable, FieldValue};
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Unsent destination output above which the source is not read.
const OUT_HIGH: usize = 4 << 20;

/// How long a stopping shovel waits for outstanding confirms.
const DRAIN: Duration = Duration::from_secs(2);

/// What the next source frame on the channel must be.
enum Expect {
    /// A method (basic.deliver, basic.cancel, …).
    Method,
    /// The content header of delivery `tag`; `forward`: publish it (false:
    /// dropped, past `src-delete-after`).
    Header { tag: u64, forward: bool },
    /// `left` body bytes of the current delivery.
    Body { left: u64, forward: bool },
}

/// The loop's state (see the module comment).
pub struct Forwarder<'a> {
    ctx: &'a RunCtx,
    ack_mode: AckMode,
    /// Exchange and routing key overrides (`fields_fun`).
    dest: &'a Dest,
    /// The properties are rewritten (forward headers, timestamp, overrides).
    rewrite: Option<Rewrite>,
    expect: Expect,
    /// The current delivery's exchange and routing key.
    exchange: Vec<u8>,
    routing_key: Vec<u8>,
    /// on-confirm: source tags by publish sequence number (None: settled).
    pending: VecDeque<Option<u64>>,
    first_seq: u64,
    /// on-publish: the highest tag published in this batch.
    publish_ack: Option<u64>,
    /// Messages that may still be published (`src-delete-after`).
    budget: Option<u64>,
    /// Messages still to move (settled) before the shovel is done.
    remaining: Option<u64>,
    src_out: Vec<u8>,
    dst_out: Vec<u8>,
    dst_sent: usize,
    src_sent: usize,
    forwarded: u64,
}

/// The property rewrite of `dest-add-forward-headers` & co.
pub(super) struct Rewrite {
    /// The `x-shovelled` entry to prepend, if forward headers are on.
    shovelled: Option<FieldTable>,
    timestamp: bool,
    /// An AMQP 1.0 destination (RabbitMQ's `rabbit_amqp10_shovel`): the
    /// forward headers are the message annotations `x-opt-shovelled-by`,
    /// `x-opt-shovel-type`, `x-opt-shovel-name` and
    /// `x-opt-shovelled-timestamp` (ms) instead (as headers here; the 1.0
    /// mapping writes `x-` headers as annotations).
    amqp10: Option<(String, String)>,
    overrides: serde_json::Map<String, serde_json::Value>,
}

impl<'a> Forwarder<'a> {
    pub fn new(def: &'a ShovelDef, ctx: &'a RunCtx, remaining: Option<u64>) -> Forwarder<'a> {
        let rewrite = Rewrite::of(def, ctx);
        Forwarder {
            ctx,
            ack_mode: def.ack_mode,
            dest: &def.dest,
            rewrite,
            expect: Expect::Method,
            exchange: Vec::new(),
            routing_key: Vec::new(),
            pending: VecDeque::new(),
            first_seq: 1,
            publish_ack: None,
            budget: remaining,
            remaining,
            src_out: Vec::with_capacity(4096),
            dst_out: Vec::with_capacity(256 * 1024),
            dst_sent: 0,
            src_sent: 0,
            forwarded: 0,
        }
    }

    /// Runs until stopped, done or failed.
    pub fn run(&mut self, src: &mut Conn, dst: &mut Conn) -> Exit {
        match self.run_inner(src, dst) {
            Ok(exit) => exit,
            Err((side, e)) => Exit::Failed(format!("{side}: {}", describe(&e))),
        }
    }

    fn run_inner(
        &mut self,
        src: &mut Conn,
        dst: &mut Conn,
    ) -> Result<Exit, (&'static str, ClientError)> {
        let s = |e| ("source", e);
        let d = |e| ("destination", e);
        let mut stopping: Option<Instant> = None;
        let mut src_hb = Heartbeat::new(src.heartbeat);
        let mut dst_hb = Heartbeat::new(dst.heartbeat);
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
            // Frames may wait in a read buffer (left by the setup calls):
            // handle them whether or not this read brought more.
            let now = Instant::now();
            let got = dst.poll().map_err(d)?;
            dst_hb.received(got, now).map_err(d)?;
            let mut busy = got | self.on_dest_frames(dst).map_err(d)?;
            let paused =
                stopping.is_some() || dst.blocked || self.dst_out.len() - self.dst_sent > OUT_HIGH;
            self.ctx.cell.set_blocked(dst.blocked);
            if paused {
                // Not read: its heartbeats wait in the socket.
                src_hb.received(true, now).map_err(s)?;
            } else {
                let got = src.poll().map_err(s)?;
                src_hb.received(got, now).map_err(s)?;
                busy |= got | self.on_source_frames(src, dst).map_err(s)?;
            }
            self.end_batch();
            dst_hb.send_if_due(&mut self.dst_out, now);
            src_hb.send_if_due(&mut self.src_out, now);
            flush(dst, &mut self.dst_out, &mut self.dst_sent).map_err(d)?;
            flush(src, &mut self.src_out, &mut self.src_sent).map_err(s)?;
            if self.remaining == Some(0) {
                self.flush_all(src, dst)?;
                return Ok(Exit::Done);
            }
            if !busy {
                let src_out = self.src_sent < self.src_out.len();
                let dst_out = self.dst_sent < self.dst_out.len();
                wait(src, dst, !paused, src_out, dst_out);
            }
        }
    }

    /// Writes everything still unsent (blocking up to the client's limits).
    fn flush_all(
        &mut self,
        src: &mut Conn,
        dst: &mut Conn,
    ) -> Result<(), (&'static str, ClientError)> {
        self.end_batch();
        dst.write_all(&self.dst_out[self.dst_sent..])
            .map_err(|e| ("destination", e))?;
        self.dst_out.clear();
        self.dst_sent = 0;
        src.write_all(&self.src_out[self.src_sent..])
            .map_err(|e| ("source", e))?;
        self.src_out.clear();
        self.src_sent = 0;
        Ok(())
    }

    /// Settles what a batch published (on-publish) and reports counters.
    fn end_batch(&mut self) {
        if let Some(tag) = self.publish_ack.take() {
            put_ack(&mut self.src_out, 80, tag, true, false);
        }
        if self.forwarded > 0 {
            self.ctx.cell.add_forwarded(self.forwarded);
            self.forwarded = 0;
        }
        self.ctx.cell.set_pending(self.pending.len() as u64);
        self.ctx.cell.set_remaining(self.remaining);
    }

    /// Confirms, flow and errors from the destination. True if there were
    /// frames.
    fn on_dest_frames(&mut self, dst: &mut Conn) -> Result<bool, ClientError> {
        let mut any = false;
        while let Some(f) = dst.next_frame()? {
            any = true;
            if f.kind != FRAME_METHOD {
                continue;
            }
            let p = dst.payload(&f);
            match method_id(p) {
                (60, 80) | (60, 120) => {
                    let (tag, multiple) = ack_fields(&p[4..])
                        .ok_or_else(|| ClientError::Protocol("short basic.ack".into()))?;
                    let nack = method_id(p).1 == 120;
                    self.on_confirm(tag, multiple, nack);
                }
                _ => {
                    let m = dst.other_method(&f)?;
                    if let crate::protocol::Method::BasicCancel(_) = m {
                        return Err(ClientError::Protocol("needed a restart".into()));
                    }
                }
            }
        }
        Ok(any)
    }

    /// A destination ack or nack of sequence `seq` (and below if
    /// `multiple`): settles the source tags it covers.
    fn on_confirm(&mut self, seq: u64, multiple: bool, nack: bool) {
        if seq < self.first_seq {
            return;
        }
        let mut top = None;
        let mut n = 0u64;
        if multiple {
            while self.first_seq <= seq {
                let Some(e) = self.pending.pop_front() else {
                    break;
                };
                self.first_seq += 1;
                if let Some(tag) = e {
                    top = Some(tag);
                    n += 1;
                }
            }
        } else if let Some(e) = self.pending.get_mut((seq - self.first_seq) as usize) {
            if let Some(tag) = e.take() {
                top = Some(tag);
                n = 1;
            }
            while let Some(None) = self.pending.front() {
                self.pending.pop_front();
                self.first_seq += 1;
            }
        }
        let Some(tag) = top else {
            return;
        };
        if nack {
            // basic.nack, requeue: the source keeps it, redelivered.
            put_ack(&mut self.src_out, 120, tag, multiple, true);
            if let Some(b) = self.budget.as_mut() {
                *b += n;
            }
        } else {
            put_ack(&mut self.src_out, 80, tag, multiple, false);
            self.forwarded += n;
            if let Some(r) = self.remaining.as_mut() {
                *r = r.saturating_sub(n);
            }
        }
    }

    /// Deliveries from the source, published to the destination. True if
    /// there were frames.
    fn on_source_frames(&mut self, src: &mut Conn, dst: &Conn) -> Result<bool, ClientError> {
        let mut any = false;
        let body_max = match dst.frame_max {
            0 => usize::MAX,
            n => (n as usize).saturating_sub(8).max(1),
        };
        while let Some(f) = src.next_frame()? {
            any = true;
            match f.kind {
                FRAME_HEARTBEAT => continue,
                FRAME_METHOD => {
                    let p = src.payload(&f);
                    if f.channel == CHANNEL && method_id(p) == (60, 60) {
                        let d = parse_deliver(&p[4..]).ok_or_else(|| {
                            ClientError::Protocol("malformed basic.deliver".into())
                        })?;
                        self.exchange.clear();
                        self.exchange.extend_from_slice(d.exchange);
                        self.routing_key.clear();
                        self.routing_key.extend_from_slice(d.routing_key);
                        let forward = self.budget != Some(0);
                        self.expect = Expect::Header {
                            tag: d.tag,
                            forward,
                        };
                        continue;
                    }
                    let m = src.other_method(&f)?;
                    if let crate::protocol::Method::BasicCancel(_) = m {
                        return Err(ClientError::Protocol(
                            "the source cancelled the consumer (queue deleted?)".into(),
                        ));
                    }
                }
                FRAME_HEADER => {
                    let Expect::Header { tag, forward } = self.expect else {
                        return Err(ClientError::Protocol("unexpected content header".into()));
                    };
                    let p = src.payload(&f);
                    if p.len() < 14 {
                        return Err(ClientError::Protocol("short content header".into()));
                    }
                    let size = u64::from_be_bytes(p[4..12].try_into().unwrap());
                    if forward {
                        self.publish(tag, &p[12..], size)?;
                    }
                    self.expect = if size == 0 {
                        Expect::Method
                    } else {
                        Expect::Body {
                            left: size,
                            forward,
                        }
                    };
                }
                FRAME_BODY => {
                    let Expect::Body { left, forward } = self.expect else {
                        return Err(ClientError::Protocol("unexpected body frame".into()));
                    };
                    let p = src.payload(&f);
                    if forward {
                        for chunk in p.chunks(body_max) {
                            put_frame(&mut self.dst_out, FRAME_BODY, chunk);
                        }
                    }
                    let left = left.saturating_sub(p.len() as u64);
                    self.expect = if left == 0 {
                        Expect::Method
                    } else {
                        Expect::Body { left, forward }
                    };
                }
                _ => {}
            }
        }
        Ok(any)
    }

    /// Writes basic.publish and the content header of delivery `tag`, and
    /// records how it is to be settled.
    fn publish(&mut self, tag: u64, props: &[u8], size: u64) -> Result<(), ClientError> {
        let exchange: &[u8] = match (&self.dest.queue, &self.dest.exchange) {
            (Some(_), _) => b"",
            (None, Some(x)) => x.as_bytes(),
            (None, None) => &self.exchange,
        };
        let key: &[u8] = match (&self.dest.queue, &self.dest.exchange_key) {
            (Some(q), _) => q.as_bytes(),
            (None, Some(k)) => k.as_bytes(),
            (None, None) => &self.routing_key,
        };
        let out = &mut self.dst_out;
        match &self.rewrite {
            None => put_publish(out, exchange, key, props, size),
            Some(r) => {
                let mut p = BasicProperties::decode(Bytes::copy_from_slice(props))
                    .map_err(|e| ClientError::Protocol(format!("bad properties: {e}")))?;
                r.apply(&mut p);
                put_publish(out, exchange, key, &p.to_bytes(), size);
            }
        }
        match self.ack_mode {
            AckMode::OnConfirm => self.pending.push_back(Some(tag)),
            AckMode::OnPublish => {
                self.publish_ack = Some(tag);
                self.forwarded += 1;
                if let Some(r) = self.remaining.as_mut() {
                    *r = r.saturating_sub(1);
                }
            }
            AckMode::NoAck => {
                self.forwarded += 1;
                if let Some(r) = self.remaining.as_mut() {
                    *r = r.saturating_sub(1);
                }
            }
        }
        if let Some(b) = self.budget.as_mut() {
            *b = b.saturating_sub(1);
        }
        Ok(())
    }
}

impl Rewrite {
    /// The rewrite `def` asks for, if any.
    pub(super) fn of(def: &ShovelDef, ctx: &RunCtx) -> Option<Rewrite> {
        (def.add_forward_headers || def.add_timestamp_header || !def.publish_properties.is_empty())
            .then(|| Rewrite {
                shovelled: def.add_forward_headers.then(|| shovelled_entry(def, ctx)),
                timestamp: def.add_timestamp_header,
                amqp10: (def.dest_protocol == Protocol::Amqp10)
                    .then(|| (ctx.node.clone(), ctx.name.clone())),
                overrides: def.publish_properties.clone(),
            })
    }

    pub(super) fn apply(&self, p: &mut BasicProperties) {
        if let Some((node, name)) = &self.amqp10 {
            let s = |v: &str| FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()));
            let mut headers = p.headers.take().unwrap_or_default();
            if self.shovelled.is_some() {
                headers.insert("x-opt-shovelled-by", s(node));
                headers.insert("x-opt-shovel-type", s("dynamic"));
                headers.insert("x-opt-shovel-name", s(name));
            }
            if self.timestamp {
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                headers.insert("x-opt-shovelled-timestamp", FieldValue::I64(ms as i64));
            }
            p.headers = Some(headers);
            return;
        }
        if self.shovelled.is_some() || self.timestamp {
            let mut headers = p.headers.take().unwrap_or_default();
            if let Some(entry) = &self.shovelled {
                // rabbit_basic:prepend_table_header: the new table first.
                let mut list = vec![FieldValue::Table(entry.clone())];
                if let Some(FieldValue::Array(old)) = headers.remove("x-shovelled") {
                    list.extend(old);
                }
                headers.insert("x-shovelled", FieldValue::Array(list));
            }
            if self.timestamp {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                headers.insert("x-shovelled-timestamp", FieldValue::I64(now as i64));
            }
            p.headers = Some(headers);
        }
        for (k, v) in &self.overrides {
            let s = || v.as_str().map(|s| Bytes::copy_from_slice(s.as_bytes()));
            let n = || v.as_u64();
            match k.as_str() {
                "content_type" => p.content_type = s(),
                "content_encoding" => p.content_encoding = s(),
                "delivery_mode" => p.delivery_mode = n().map(|n| n as u8),
                "priority" => p.priority = n().map(|n| n as u8),
                "correlation_id" => p.correlation_id = s(),
                "reply_to" => p.reply_to = s(),
                "expiration" => p.expiration = s(),
                "message_id" => p.message_id = s(),
                "timestamp" => p.timestamp = n(),
                "type" => p.kind = s(),
                "user_id" => p.user_id = s(),
                "app_id" => p.app_id = s(),
                "cluster_id" => p.cluster_id = s(),
                _ => {}
            }
        }
    }
}

/// RabbitMQ's `x-shovelled` table (`rabbit_shovel_util:update_headers`,
/// dynamic shovels): who moved the message, from where, to where.
fn shovelled_entry(def: &ShovelDef, ctx: &RunCtx) -> FieldTable {
    use crate::core::shovel_def::strip_credentials;
    let s = |v: &str| FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()));
    let mut t = FieldTable::new();
    t.insert("shovelled-by", s(&ctx.node));
    t.insert("shovel-type", s("dynamic"));
    t.insert("shovel-name", s(&ctx.name));
    t.insert("shovel-vhost", s(&ctx.vhost));
    if let Some(u) = def.src_uris.first() {
        t.insert("src-uri", s(&strip_credentials(u)));
    }
    if let Some(u) = def.dest_uris.first() {
        t.insert("dest-uri", s(&strip_credentials(u)));
    }
    match &def.source {
        Source::Queue { name, .. } => t.insert("src-queue", s(name)),
        Source::Exchange { name, key } => {
            t.insert("src-exchange", s(name));
            t.insert("src-exchange-key", s(key));
        }
        Source::Address(a) => t.insert("src-address", s(a)),
    }
    if let Some(x) = &def.dest.exchange {
        t.insert("dest-exchange", s(x));
    }
    if let Some(k) = &def.dest.exchange_key {
        t.insert("dest-exchange-key", s(k));
    }
    if let Some(q) = &def.dest.queue {
        t.insert("dest-queue", s(q));
    }
    t
}

/// Heartbeats of one connection (`Conn::heartbeat` seconds, 0: off): one
/// is sent when nothing was written for half the interval (a heartbeat
/// frame when the output is empty, else the output itself counts), and
/// the peer is given up ("heartbeat timeout", RabbitMQ's reason) when
/// nothing came for two intervals.
pub(super) struct Heartbeat {
    every: Option<Duration>,
    last_recv: Instant,
    last_sent: Instant,
}

impl Heartbeat {
    pub(super) fn new(secs: u16) -> Heartbeat {
        let now = Instant::now();
        Heartbeat {
            every: (secs > 0).then(|| Duration::from_secs(secs.into())),
            last_recv: now,
            last_sent: now,
        }
    }

    pub(super) fn received(&mut self, got: bool, now: Instant) -> Result<(), ClientError> {
        let Some(every) = self.every else {
            return Ok(());
        };
        if got {
            self.last_recv = now;
        } else if now.duration_since(self.last_recv) > every * 2 {
            return Err(ClientError::Protocol("heartbeat timeout".into()));
        }
        Ok(())
    }

    pub(super) fn send_if_due(&mut self, out: &mut Vec<u8>, now: Instant) {
        let Some(every) = self.every else {
            return;
        };
        if !out.is_empty() {
            self.last_sent = now;
        } else if now.duration_since(self.last_sent) >= every / 2 {
            out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xCE]);
            self.last_sent = now;
        }
    }
}

/// The fields of basic.deliver the loop needs (borrowed from the frame).
pub(super) struct Deliver<'b> {
    pub tag: u64,
    pub exchange: &'b [u8],
    pub routing_key: &'b [u8],
}

/// basic.deliver's arguments: consumer-tag, delivery-tag, redelivered,
/// exchange, routing-key.
pub(super) fn parse_deliver(a: &[u8]) -> Option<Deliver<'_>> {
    let ctag_len = *a.first()? as usize;
    let mut i = 1 + ctag_len;
    let tag = u64::from_be_bytes(a.get(i..i + 8)?.try_into().ok()?);
    i += 8 + 1;
    let xl = *a.get(i)? as usize;
    let exchange = a.get(i + 1..i + 1 + xl)?;
    i += 1 + xl;
    let kl = *a.get(i)? as usize;
    let routing_key = a.get(i + 1..i + 1 + kl)?;
    Some(Deliver {
        tag,
        exchange,
        routing_key,
    })
}

/// basic.ack / basic.nack arguments: delivery-tag, then the bits
/// (multiple first).
fn ack_fields(a: &[u8]) -> Option<(u64, bool)> {
    let tag = u64::from_be_bytes(a.get(..8)?.try_into().ok()?);
    let bits = *a.get(8)?;
    Some((tag, bits & 1 != 0))
}

/// Appends basic.ack (method 80) or basic.nack (120, requeue) on the
/// channel.
pub(super) fn put_ack(out: &mut Vec<u8>, method: u8, tag: u64, multiple: bool, requeue: bool) {
    let at = begin(out, FRAME_METHOD);
    out.extend_from_slice(&[0, 60, 0, method]);
    out.extend_from_slice(&tag.to_be_bytes());
    out.push(u8::from(multiple) | (u8::from(requeue) << 1));
    end(out, at);
}

fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    out.push(kind);
    out.extend_from_slice(&CHANNEL.to_be_bytes());
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

fn end(out: &mut Vec<u8>, at: usize) {
    let size = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
    out.push(0xCE);
}

/// Appends basic.publish (`exchange`, `key`) and the content header with
/// the raw property list `props` for a body of `size` bytes.
pub(super) fn put_publish(out: &mut Vec<u8>, exchange: &[u8], key: &[u8], props: &[u8], size: u64) {
    let at = begin(out, FRAME_METHOD);
    out.extend_from_slice(&[0, 60, 0, 40, 0, 0]);
    out.push(exchange.len().min(255) as u8);
    out.extend_from_slice(&exchange[..exchange.len().min(255)]);
    out.push(key.len().min(255) as u8);
    out.extend_from_slice(&key[..key.len().min(255)]);
    out.push(0);
    end(out, at);
    let at = begin(out, FRAME_HEADER);
    out.extend_from_slice(&[0, 60, 0, 0]);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(props);
    end(out, at);
}

pub(super) fn put_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let at = begin(out, kind);
    out.extend_from_slice(payload);
    end(out, at);
}

/// Writes what the socket takes now; the rest waits for the next round.
fn flush(c: &mut Conn, out: &mut Vec<u8>, sent: &mut usize) -> Result<(), ClientError> {
    flush_stream(&mut c.stream, out, sent)
}

/// [`flush`] on any client socket.
pub(super) fn flush_stream(
    stream: &mut crate::client::stream::Stream,
    out: &mut Vec<u8>,
    sent: &mut usize,
) -> Result<(), ClientError> {
    while *sent < out.len() {
        match stream.write_nonblocking(&out[*sent..]) {
            Ok(0) => return Err(crate::client::eof()),
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    if *sent == out.len() {
        out.clear();
        *sent = 0;
        match stream.flush_nonblocking() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e.into()),
            _ => {}
        }
    } else if *sent > 1 << 20 {
        out.drain(..*sent);
        *sent = 0;
    }
    Ok(())
}

/// Waits (at most 100 ms, so the stop flag is seen) until a socket can be
/// read, or written where output waits.
fn wait(src: &Conn, dst: &Conn, read_src: bool, src_out: bool, dst_out: bool) {
    let src_out = src_out || src.stream.wants_write();
    let dst_out = dst_out || dst.stream.wants_write();
    wait_fds(src.stream.fd(), dst.stream.fd(), read_src, src_out, dst_out);
}

/// [`wait`] on two file descriptors.
pub(super) fn wait_fds(src: i32, dst: i32, read_src: bool, src_out: bool, dst_out: bool) {
    let ev = |read: bool, write: bool| {
        (if read { libc::POLLIN } else { 0 }) | (if write { libc::POLLOUT } else { 0 })
    };
    let mut fds = [
        libc::pollfd {
            fd: src,
            events: ev(read_src, src_out),
            revents: 0,
        },
        libc::pollfd {
            fd: dst,
            events: ev(true, dst_out),
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
}

/// A failure as the status shows it.
pub(super) fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => "socket closed".into(),
        other => other.to_string(),
    }
}
