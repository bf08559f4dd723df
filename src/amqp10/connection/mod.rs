//! One AMQP 1.0 connection: the protocol headers, SASL, `open`, the frame
//! loop that feeds its sessions, idle time-outs, and closing. RabbitMQ 4's
//! `rabbit_amqp_reader`.
//!
//! Input is processed frame by frame straight out of the socket's read
//! buffer, as the 0-9-1 connection does. When a session waits for a queue's
//! answer (a consumer link's attach), processing stops — the rest of the
//! input stays buffered — until `on_reply` resumes it, so frames are handled
//! strictly in order.

use super::conn_info::ConnInfo;
use super::error::{cond, Amqp10Error};
use super::session::{SessCx, SessError, Session};
use super::wire;
use crate::core::access::connection as rights;
use crate::core::access::UserAccess;
use crate::core::ids::{ChannelRef, ConsumerRef, QueueRef};
use crate::core::message::Message;
use crate::core::shard_msg::{ConfirmTag, QueueOp, QueueReply, ShardMsg};
use crate::core::ShardCtx;
use crate::net::Socket;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod open;
mod snapshot;
pub use open::SaslInit;

/// How long a client may take from the first byte to `open` (RabbitMQ: 10 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait for the peer's `close` after sending ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest frame accepted before `open` fixes max-frame-size (RabbitMQ's
/// `INITIAL_MAX_FRAME_SIZE`).
const HANDSHAKE_FRAME_MAX: u32 = 8192;
/// The smallest max-frame-size AMQP 1.0 allows (2.7.1).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;
/// Unsent output above which queues stop delivering to this connection.
pub const OUTPUT_HIGH_WATER: usize = 4 * 1024 * 1024;
/// ... and below which they resume.
pub const OUTPUT_LOW_WATER: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for a protocol header: SASL (`AMQP\3\1\0\0`) first, or AMQP
    /// (`AMQP\0\1\0\0`) when SASL is skipped.
    Header,
    /// We sent sasl-mechanisms; waiting for sasl-init.
    SaslInit,
    /// SASL succeeded; waiting for the AMQP protocol header.
    AmqpHeader,
    /// Waiting for the client's `open`.
    Open,
    Running,
    /// We sent `close`; waiting for the peer's. Other input is dropped.
    Closing,
    /// Done: flush what is queued, then drop the socket.
    CloseAfterFlush,
}

pub struct Connection {
    pub sock: Socket,
    pub info: ConnInfo,
    state: State,
    /// Sessions by channel number (ours is the same as the peer's).
    sessions: Vec<Option<Box<Session>>>,
    deadline: Option<Instant>,
    /// The session waiting for a queue's reply; input processing is paused.
    waiting: Option<u16>,
    /// Everything is sent; waiting for the peer to close the socket.
    lingering: bool,
    /// Said connection.blocked-equivalent: reading stopped for an alarm.
    blocked: bool,
}

impl Connection {
    /// A connection whose first bytes looked like AMQP 1.0; the header
    /// itself is still in the read buffer.
    pub fn new(mut sock: Socket, slot: u32, uid: u64, accepted: Instant) -> Connection {
        sock.set_max_buffered(HANDSHAKE_FRAME_MAX as usize);
        let (peer, local) = (sock.stream.peer_addr().ok(), sock.stream.local_addr().ok());
        Connection {
            sock,
            info: ConnInfo {
                slot,
                uid,
                max_frame_out: MIN_MAX_FRAME_SIZE,
                max_frame_in: HANDSHAKE_FRAME_MAX,
                channel_max: 0,
                peer_idle_timeout: 0,
                user: String::new(),
                access: Arc::new(UserAccess::nobody()),
                counted: false,
                internal: false,
                channel_count: None,
                publisher: false,
                exclusive_queues: Vec::new(),
                output_full: Arc::new(AtomicBool::new(false)),
                connected_at: crate::core::stats::wall_ms(),
                auth_mechanism: "",
                container_id: String::new(),
                close_reason: None,
                peer,
                local,
            },
            state: State::Header,
            sessions: Vec::new(),
            deadline: Some(accepted + HANDSHAKE_TIMEOUT),
            waiting: None,
            lingering: false,
            blocked: false,
        }
    }

    /// True while a session waits for a queue's reply (input is not processed).
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// True when the connection has sent its last bytes and can go once flushed.
    pub fn finished(&self) -> bool {
        self.state == State::CloseAfterFlush
    }

    /// All output is written after close: leave the socket open until the
    /// client closes it or a timeout passes.
    pub fn linger(&mut self) {
        if self.lingering {
            return;
        }
        self.lingering = true;
        self.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
    }

    /// New input arrived (already in `sock.rbuf`).
    pub fn on_input(&mut self, ctx: &mut ShardCtx) {
        self.sock.last_read = Instant::now();
        if self.state == State::CloseAfterFlush {
            self.sock.rbuf.clear();
            return;
        }
        self.process(ctx);
    }

    /// Handles buffered frames until the buffer holds no whole frame or a
    /// session waits for a queue.
    pub fn process(&mut self, ctx: &mut ShardCtx) {
        while !self.sock.dead && self.waiting.is_none() && self.state != State::CloseAfterFlush {
            if matches!(self.state, State::Header | State::AmqpHeader) {
                if self.sock.rbuf.len() < 8 {
                    break;
                }
                let header = self.sock.rbuf.split_to(8);
                self.protocol_header(&header, ctx);
                continue;
            }
            let max = if self.state == State::Running {
                self.info.max_frame_in
            } else {
                HANDSHAKE_FRAME_MAX
            };
            match wire::check_frame(&self.sock.rbuf, max) {
                Ok(None) => break,
                Ok(Some(len)) => {
                    let frame = self.sock.rbuf.split_to(len).freeze();
                    match wire::decode_frame(frame) {
                        Ok(f) => self.frame(f, ctx),
                        Err(e) => {
                            self.sock.rbuf.clear();
                            self.connection_error(e, ctx);
                        }
                    }
                }
                Err(e) => {
                    self.sock.rbuf.clear();
                    self.connection_error(e, ctx);
                }
            }
        }
        self.flush_outcomes(ctx);
        if !self.sock.wbuf.is_empty() {
            ctx.mark_dirty(self.info.slot as usize);
        }
    }

    fn frame(&mut self, f: wire::InFrame, ctx: &mut ShardCtx) {
        match (self.state, f) {
            (_, wire::InFrame::Empty) => {}
            (State::SaslInit, wire::InFrame::Sasl(s)) => self.sasl_frame(s, ctx),
            (State::Open, wire::InFrame::Amqp { channel, perf, .. }) => {
                self.open_frame(channel, perf, ctx)
            }
            (
                State::Running,
                wire::InFrame::Amqp {
                    channel,
                    perf,
                    payload,
                },
            ) => self.running_frame(channel, perf, payload, ctx),
            (State::Closing, wire::InFrame::Amqp { perf, .. }) => {
                if matches!(perf, wire::Performative::Close(_)) {
                    self.state = State::CloseAfterFlush;
                    self.deadline = None;
                    ctx.mark_dirty(self.info.slot as usize);
                }
            }
            (_, _) => {
                let e = Amqp10Error::new(
                    cond::FRAMING_ERROR,
                    "unexpected frame type for the connection state",
                );
                self.connection_error(e, ctx);
            }
        }
    }

    fn running_frame(
        &mut self,
        channel: u16,
        perf: wire::Performative,
        payload: Bytes,
        ctx: &mut ShardCtx,
    ) {
        use wire::Performative as P;
        match perf {
            P::Open(_) => {
                let e = Amqp10Error::new(cond::ILLEGAL_STATE, "second open");
                self.connection_error(e, ctx)
            }
            P::Close(c) => {
                if let Some(e) = c.error.as_ref() {
                    log::debug!("client closed connection with error {:?}", e);
                }
                self.info.close_reason = Some("client closed it".into());
                self.teardown(ctx);
                wire::write_close(&mut self.sock.wbuf, None);
                self.state = State::CloseAfterFlush;
                self.deadline = None;
                ctx.mark_dirty(self.info.slot as usize);
            }
            P::Begin(b) => self.begin(channel, b, ctx),
            P::End(e) => self.end(channel, e, ctx),
            other => {
                let r = match self.sessions.get_mut(channel as usize) {
                    Some(Some(s)) => {
                        let mut cx = SessCx {
                            ctx,
                            wbuf: &mut self.sock.wbuf,
                            info: &mut self.info,
                        };
                        s.performative(other, payload, &mut cx)
                    }
                    _ => Err(SessError::Connection(Amqp10Error::new(
                        cond::FRAMING_ERROR,
                        format!("frame on channel {} without a session", channel),
                    ))),
                };
                self.after_session(channel, r, ctx);
            }
        }
    }

    /// Applies a session's outcome: keep going, pause, end the session, or
    /// close the connection.
    fn after_session(&mut self, channel: u16, r: Result<bool, SessError>, ctx: &mut ShardCtx) {
        match r {
            Ok(false) => {}
            Ok(true) => self.waiting = Some(channel),
            Err(SessError::Session(e)) => self.session_error(channel, e, ctx),
            Err(SessError::Connection(e)) => self.connection_error(e, ctx),
        }
    }

    // ---- sessions ----

    fn begin(&mut self, channel: u16, b: wire::Begin, ctx: &mut ShardCtx) {
        if b.remote_channel.is_some() {
            let e = Amqp10Error::new(
                cond::NOT_IMPLEMENTED,
                "begin with remote-channel set: the broker never begins sessions",
            );
            return self.connection_error(e, ctx);
        }
        if channel > self.info.channel_max {
            let e = Amqp10Error::new(
                cond::FRAMING_ERROR,
                format!(
                    "channel {} exceeds the negotiated channel-max ({})",
                    channel, self.info.channel_max
                ),
            );
            return self.connection_error(e, ctx);
        }
        let i = channel as usize;
        if self.sessions.len() <= i {
            self.sessions.resize_with(i + 1, || None);
        }
        if self.sessions[i].is_some() {
            let e = Amqp10Error::new(
                cond::FRAMING_ERROR,
                format!("session already begun on channel {}", channel),
            );
            return self.connection_error(e, ctx);
        }
        if let Err(e) = self.count_session() {
            return self.connection_error(e, ctx);
        }
        let me = ChannelRef {
            shard: ctx.id,
            channel,
            conn_slot: self.info.slot,
            incarnation: ctx.next_incarnation(),
        };
        let session = Session::begin(me, &b, &mut self.sock.wbuf);
        self.sessions[i] = Some(Box::new(session));
        ctx.churn.channel_created += 1;
    }

    fn end(&mut self, channel: u16, e: wire::End, ctx: &mut ShardCtx) {
        let Some(slot) = self.sessions.get_mut(channel as usize) else {
            return;
        };
        let Some(mut s) = slot.take() else {
            return;
        };
        if let Some(err) = e.error.as_ref() {
            log::debug!("client ended session {} with error {:?}", channel, err);
        }
        let ended_by_us = s.ending;
        s.teardown(ctx);
        self.uncount_sessions(1);
        ctx.churn.channel_closed += 1;
        if !ended_by_us {
            wire::write_end(&mut self.sock.wbuf, channel, None);
        }
    }

    /// Ends a session with an error; its frames are dropped until the peer's end.
    fn session_error(&mut self, channel: u16, e: Amqp10Error, ctx: &mut ShardCtx) {
        log::debug!("session {} error: {}", channel, e.description);
        if let Some(Some(s)) = self.sessions.get_mut(channel as usize) {
            s.teardown(ctx);
            s.ending = true;
        }
        wire::write_end(&mut self.sock.wbuf, channel, Some(&e));
        ctx.mark_dirty(self.info.slot as usize);
    }

    /// Sends `close` with the error and waits (briefly) for the peer's.
    pub fn connection_error(&mut self, e: Amqp10Error, ctx: &mut ShardCtx) {
        log::debug!(
            "AMQP 1.0 connection error: {} {}",
            e.condition,
            e.description
        );
        if matches!(self.state, State::Closing | State::CloseAfterFlush) {
            return;
        }
        self.info.close_reason = Some(format!("{} {}", e.condition, e.description).into());
        self.teardown(ctx);
        if matches!(
            self.state,
            State::Header | State::AmqpHeader | State::SaslInit
        ) {
            // No AMQP layer yet: nothing to say it with.
            self.state = State::CloseAfterFlush;
        } else {
            if self.state == State::Open {
                // A close must follow an open (2.4.1): send ours first.
                open::write_server_open(&mut self.sock.wbuf, ctx);
            }
            wire::write_close(&mut self.sock.wbuf, Some(&e));
            self.state = State::Closing;
            self.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
        }
        self.waiting = None;
        ctx.mark_dirty(self.info.slot as usize);
    }

    /// The broker closes the connection (`amqp:connection:forced`): vhost
    /// or user deletion, shutdown.
    pub fn force_close(&mut self, text: &str, ctx: &mut ShardCtx) {
        self.connection_error(Amqp10Error::new(cond::CONNECTION_FORCED, text), ctx);
    }

    /// Releases everything the connection holds in queues: consumers,
    /// unsettled deliveries (requeued), exclusive queues. Idempotent.
    pub fn teardown(&mut self, ctx: &mut ShardCtx) {
        let mut n = 0;
        for s in self.sessions.iter_mut().flatten() {
            s.teardown(ctx);
            n += 1;
        }
        self.sessions.clear();
        self.uncount_sessions(n);
        ctx.churn.channel_closed += n;
        if std::mem::take(&mut self.info.counted) {
            let vhost = self.info.access.vhost;
            ctx.defs.lock().connection_closed(&self.info.user, vhost);
            let i = &self.info;
            crate::core::conn_log::closed(
                "AMQP 1.0",
                i.peer,
                i.local,
                &i.user,
                &i.access.vhost_name,
                i.close_reason.as_deref(),
            );
        }
        for q in self.info.exclusive_queues.drain(..) {
            if q.shard == ctx.id {
                ctx.delete_queue(q);
            } else {
                let op = QueueOp::Delete {
                    if_unused: false,
                    if_empty: false,
                };
                ctx.outbox.push(
                    q.shard,
                    ShardMsg::Request {
                        queue: q,
                        reply_to: None,
                        op,
                    },
                );
            }
        }
    }

    // ---- what queues send back ----

    fn session_mut(&mut self, me: ChannelRef) -> Option<&mut Session> {
        live(&mut self.sessions, me)
    }

    /// A message for one of our consumer links.
    pub fn deliver(
        &mut self,
        consumer: ConsumerRef,
        queue: QueueRef,
        seq: u64,
        redelivered: bool,
        msg: Message,
        ctx: &mut ShardCtx,
    ) {
        let slot = self.info.slot as usize;
        let Some(s) = live(&mut self.sessions, consumer.channel) else {
            // The session is gone: the queue learns it (ChannelGone) and
            // requeues everything of it.
            return;
        };
        let mut cx = SessCx {
            ctx,
            wbuf: &mut self.sock.wbuf,
            info: &mut self.info,
        };
        s.deliver(consumer, queue, seq, redelivered, msg, &mut cx);
        if self.sock.pending_output() > OUTPUT_HIGH_WATER {
            self.info.output_full.store(true, Ordering::Relaxed);
        }
        ctx.mark_dirty(slot);
    }

    /// A queue answered a session's request.
    pub fn on_reply(
        &mut self,
        to: ChannelRef,
        queue: QueueRef,
        reply: QueueReply,
        ctx: &mut ShardCtx,
    ) {
        let (r, still_waiting) = match live(&mut self.sessions, to) {
            Some(s) => {
                let mut cx = SessCx {
                    ctx,
                    wbuf: &mut self.sock.wbuf,
                    info: &mut self.info,
                };
                let r = s.on_reply(queue, reply, &mut cx);
                (r, s.is_awaiting())
            }
            None => (Ok(false), false),
        };
        // A credit reply may come while the session waits for another
        // (an attach's consume): input stays paused until that one is in.
        if self.waiting == Some(to.channel) && !still_waiting {
            self.waiting = None;
        }
        self.after_session(to.channel, r, ctx);
        if self.waiting.is_none() && !self.sock.rbuf.is_empty() {
            self.process(ctx);
        }
        ctx.mark_dirty(self.info.slot as usize);
    }

    /// A queue holds (or refused) `count` published messages, up to
    /// `tag.seq`.
    pub fn confirm(&mut self, tag: ConfirmTag, ok: bool, count: u32, ctx: &mut ShardCtx) {
        if let Some(s) = self.session_mut(tag.channel) {
            let last = tag.seq.get();
            for seq in last + 1 - count as u64..=last {
                s.confirm(seq, ok);
            }
            ctx.mark_dirty(self.info.slot as usize);
        }
    }

    /// A queue cancelled one of our consumer links (queue deleted).
    pub fn consumer_cancelled(&mut self, consumer: ConsumerRef, ctx: &mut ShardCtx) {
        if let Some(s) = live(&mut self.sessions, consumer.channel) {
            s.consumer_cancelled(consumer.id, &mut self.sock.wbuf);
            ctx.mark_dirty(self.info.slot as usize);
        }
    }

    /// A delivery to session `me` stayed unsettled longer than the queue's
    /// delivery acknowledgement timeout: the session ends (the 0-9-1
    /// channel is closed with the same words).
    pub fn consumer_timed_out(&mut self, me: ChannelRef, timeout_ms: u64, ctx: &mut ShardCtx) {
        if self.session_mut(me).is_none() {
            return;
        }
        log::warn!(
            "AMQP 1.0 session {}: delivery acknowledgement timed out ({} ms); ending it",
            me.channel,
            timeout_ms
        );
        let e = Amqp10Error::new(
            cond::PRECONDITION_FAILED,
            format!(
                "delivery acknowledgement on channel {} timed out. Timeout value used: {} ms. \
                 This timeout value can be configured, see consumers doc guide to learn more",
                me.channel, timeout_ms
            ),
        );
        self.session_error(me.channel, e, ctx);
    }

    /// Settled outcomes for published messages go out before a flush.
    pub fn flush_outcomes(&mut self, _ctx: &mut ShardCtx) {
        for s in self.sessions.iter_mut().flatten() {
            s.flush_outcomes(&mut self.sock.wbuf);
        }
    }

    /// Output drained below the low-water mark: consumer links resume.
    pub fn output_drained(&mut self, ctx: &mut ShardCtx) {
        if self.sock.pending_output() < OUTPUT_LOW_WATER
            && self.info.output_full.swap(false, Ordering::Relaxed)
        {
            for s in self.sessions.iter_mut().flatten() {
                s.resume_all(ctx);
            }
        }
    }

    // ---- alarms ----

    /// A resource alarm stops reading this publisher. AMQP 1.0 has no
    /// connection.blocked: the peer sees its link credit run out and the
    /// socket stop being read.
    pub fn notify_blocked(&mut self, _reason: &str, _ctx: &mut ShardCtx) {
        self.blocked = true;
    }

    pub fn notify_unblocked(&mut self, _ctx: &mut ShardCtx) {
        self.blocked = false;
    }

    // ---- timers ----

    /// Called a few times a second: handshake and close time-outs, idle
    /// time-outs both ways, idle buffers. Returns when it is next due if
    /// nothing happens to the connection meanwhile (`Some(now)`: at the
    /// next visit; `None`: no timer runs; `shard::due`).
    pub fn tick(&mut self, now: Instant, ctx: &mut ShardCtx) -> Option<Instant> {
        if let Some(d) = self.deadline {
            if now >= d {
                if self.lingering {
                    self.sock.dead = true;
                } else if self.state == State::Closing {
                    self.state = State::CloseAfterFlush;
                    self.deadline = None;
                    ctx.mark_dirty(self.info.slot as usize);
                } else {
                    log::debug!("AMQP 1.0 handshake timeout");
                    self.teardown(ctx);
                    self.sock.dead = true;
                }
                return Some(now);
            }
        }
        if self.info.counted
            && !self.info.internal
            && ctx.defs.auth_version() != self.info.access.version
        {
            self.refresh_access(ctx);
        }
        let release = self.sock.release_if_idle(now);
        if self.state != State::Running {
            // Opening or closing: a few round trips, watched every visit.
            return Some(now);
        }
        // Our idle time-out: the peer must send something (a frame or an
        // empty frame) within it.
        let ours = Duration::from_millis(ctx.config.heartbeat as u64 * 1000);
        let reading = self.sock.pending_output() <= OUTPUT_HIGH_WATER && !self.sock.flow_blocked;
        if !ours.is_zero() && reading && now.duration_since(self.sock.last_read) > ours * 2 {
            log::info!(
                "closing AMQP 1.0 connection: no frame from the client within the idle time-out ({} ms)",
                ours.as_millis()
            );
            let e = Amqp10Error::new(
                cond::RESOURCE_LIMIT_EXCEEDED,
                "no frame received from client within idle timeout threshold",
            );
            self.connection_error(e, ctx);
            return Some(now);
        }
        let theirs = Duration::from_millis(self.info.peer_idle_timeout as u64);
        if !theirs.is_zero()
            && now.duration_since(self.sock.last_write) >= theirs / 2
            && self.sock.wbuf.is_empty()
        {
            wire::write_empty_frame(&mut self.sock.wbuf);
            ctx.mark_dirty(self.info.slot as usize);
        }
        if !reading || !self.sock.wbuf.is_empty() {
            // Output under way: the flush makes it due again.
            return Some(now);
        }
        let mut due = release;
        if !ours.is_zero() {
            let silence = self.sock.last_read + ours * 2 + Duration::from_millis(1);
            due = Some(due.map_or(silence, |d| d.min(silence)));
        }
        if !theirs.is_zero() {
            let beat = self.sock.last_write + theirs / 2;
            due = Some(due.map_or(beat, |d| d.min(beat)));
        }
        due
    }

    // ---- tenancy ----

    fn count_session(&mut self) -> Result<(), Amqp10Error> {
        rights::take_channel(self.info.channel_count.as_deref(), &self.info.access)
            .map_err(|e| Amqp10Error::new(cond::RESOURCE_LIMIT_EXCEEDED, e))
    }

    fn uncount_sessions(&mut self, n: u64) {
        rights::release_channels(self.info.channel_count.as_deref(), n);
    }

    /// Users or permissions changed: rebuild this connection's rights.
    fn refresh_access(&mut self, ctx: &mut ShardCtx) {
        self.info.access = rights::refreshed(&ctx.defs, &self.info.access);
    }
}

/// The session `me` names, if it is still the one (not ended, not a later
/// session on the same channel).
fn live(sessions: &mut [Option<Box<Session>>], me: ChannelRef) -> Option<&mut Session> {
    match sessions.get_mut(me.channel as usize) {
        Some(Some(s)) if s.me == me && !s.ending => Some(s),
        _ => None,
    }
}
