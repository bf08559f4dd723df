//! One AMQP connection: the handshake (start / tune / open), the frame loop that
//! feeds its channels, heartbeats, and closing. RabbitMQ's `rabbit_reader`.
//!
//! Input is processed frame by frame straight out of the socket's read buffer. When
//! a channel waits for a queue's answer (`Flow::Wait`), processing stops — the rest
//! of the input stays buffered — until `on_reply` resumes it, so methods on a
//! connection are handled strictly in order.

use super::channel::{ChanCx, Channel, Flow};
use super::error::AmqpError;
use crate::core::ids::{ChannelRef, ConsumerRef, QueueRef};
use crate::core::message::Message;
use crate::core::shard_msg::{ConfirmTag, QueueOp, QueueReply, ShardMsg};
use crate::core::ShardCtx;
use crate::net::Socket;
use crate::protocol::constants as c;
use crate::protocol::methods::*;
use crate::protocol::{
    check_frame, write_heartbeat, write_method, FieldTable, FieldValue, Method, FRAME_SIZE_FUDGE,
    PROTOCOL_HEADER,
};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client may take to complete the handshake (RabbitMQ: 10 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait for `connection.close-ok` after sending `connection.close`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest frame accepted before tune-ok fixes frame_max.
const HANDSHAKE_FRAME_MAX: u32 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for "AMQP\0\0\x09\x01".
    ProtocolHeader,
    StartOk,
    TuneOk,
    Open,
    Running,
    /// The client sent connection.close while publishes in confirm mode were
    /// still on their way to queues: the close completes (teardown, close-ok)
    /// once their confirms are written, or at the deadline. Input is dropped.
    CloseAwaitingConfirms,
    /// We sent connection.close and wait for close-ok; other input is dropped.
    Closing,
    /// Done: flush what is queued, then drop the socket.
    CloseAfterFlush,
}

/// Facts about the connection that its channels read.
pub struct ConnInfo {
    pub slot: u32,
    /// Broker-wide unique id (exclusive-queue ownership).
    pub uid: u64,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub user: String,
    /// Client advertised consumer_cancel_notify: send basic.cancel when a
    /// consumed queue is deleted.
    pub cancel_notify: bool,
    /// The connection has published: the event loop stops reading it while
    /// the shard's outgoing rings are congested (publisher flow control).
    pub publisher: bool,
    /// Client advertised the connection.blocked capability.
    pub blocked_notify: bool,
    /// We sent connection.blocked (and owe a connection.unblocked).
    pub sent_blocked: bool,
    /// Exclusive queues this connection declared (deleted when it closes).
    pub exclusive_queues: Vec<QueueRef>,
    /// Flow control towards consumers: set while unsent output is above
    /// `OUTPUT_HIGH_WATER`; queues skip this connection's consumers meanwhile.
    pub output_full: Arc<AtomicBool>,
}

/// A connection that neither read nor wrote for this long gives its buffers
/// back (`Socket::release_idle_buffers`).
const IDLE_RELEASE: Duration = Duration::from_secs(1);
/// Unsent output above which queues stop delivering to this connection.
pub const OUTPUT_HIGH_WATER: usize = 4 * 1024 * 1024;
/// ... and below which they resume.
pub const OUTPUT_LOW_WATER: usize = 1024 * 1024;

pub struct Connection {
    pub sock: Socket,
    pub info: ConnInfo,
    state: State,
    /// Indexed by channel number; grown on demand.
    /// Boxed: a client opening channel 2047 costs 2048 pointers, not 2048 channels.
    channels: Vec<Option<Box<Channel>>>,
    pub last_read: Instant,
    pub last_write: Instant,
    deadline: Option<Instant>,
    /// The channel waiting for a queue's reply; input processing is paused.
    waiting: Option<u16>,
    /// Set when the socket should be dropped now.
    pub dead: bool,
    /// Listed in the event loop's read-again list (each connection once, so a
    /// busy publisher is read once per iteration, not once per past event).
    pub read_again: bool,
    /// Not read because the shard's outgoing rings are congested (publisher
    /// flow control); listed in the event loop's `flow_blocked`.
    pub flow_blocked: bool,
    /// Everything is sent; waiting for the peer to close.
    lingering: bool,
}

impl Connection {
    pub fn new(mut sock: Socket, slot: u32, uid: u64) -> Connection {
        let now = Instant::now();
        sock.set_max_buffered(HANDSHAKE_FRAME_MAX as usize);
        Connection {
            sock,
            info: ConnInfo {
                slot,
                uid,
                frame_max: HANDSHAKE_FRAME_MAX,
                channel_max: 0,
                heartbeat: 0,
                user: String::new(),
                cancel_notify: false,
                publisher: false,
                blocked_notify: false,
                sent_blocked: false,
                exclusive_queues: Vec::new(),
                output_full: Arc::new(AtomicBool::new(false)),
            },
            state: State::ProtocolHeader,
            channels: Vec::new(),
            last_read: now,
            last_write: now,
            deadline: Some(now + HANDSHAKE_TIMEOUT),
            waiting: None,
            dead: false,
            read_again: false,
            flow_blocked: false,
            lingering: false,
        }
    }

    /// True while a channel waits for a queue's reply (input is not processed).
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// True when the connection has sent its last bytes and can go once flushed.
    pub fn finished(&self) -> bool {
        self.state == State::CloseAfterFlush
    }

    /// All output is written after close: like RabbitMQ, leave the socket open
    /// until the client closes it (it does on close-ok) or a timeout passes.
    /// Closing first makes some clients (lapin) report an aborted connection.
    pub fn linger(&mut self) {
        if self.lingering {
            return;
        }
        self.lingering = true;
        self.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
    }

    /// New input arrived (already in `sock.rbuf`).
    pub fn on_input(&mut self, ctx: &mut ShardCtx) {
        self.last_read = Instant::now();
        if self.state == State::CloseAfterFlush {
            self.sock.rbuf.clear();
            return;
        }
        self.process(ctx);
    }

    /// Handles buffered frames until the buffer holds no whole frame or a channel
    /// waits for a queue.
    pub fn process(&mut self, ctx: &mut ShardCtx) {
        while !self.dead && self.waiting.is_none() && self.state != State::CloseAfterFlush {
            if self.state == State::CloseAwaitingConfirms {
                // Nothing may follow connection.close.
                self.sock.rbuf.clear();
                break;
            }
            if self.state == State::ProtocolHeader {
                if self.sock.rbuf.len() < 8 {
                    break;
                }
                let header = self.sock.rbuf.split_to(8);
                self.protocol_header(&header, ctx);
                continue;
            }
            let max = if self.state == State::Running {
                self.info.frame_max
            } else {
                HANDSHAKE_FRAME_MAX
            };
            match check_frame(&self.sock.rbuf, max) {
                Ok(None) => break,
                Ok(Some(head)) => {
                    // Cut the payload out directly (no slice of a frame
                    // `Bytes`): two reference-count updates fewer per frame.
                    let mut frame = self.sock.rbuf.split_to(head.total_len());
                    frame.truncate(frame.len() - 1);
                    bytes::Buf::advance(&mut frame, 7);
                    let payload = frame.freeze();
                    self.frame(head.kind, head.channel, payload, ctx);
                }
                Err(e) => {
                    self.sock.rbuf.clear();
                    self.connection_error(AmqpError::frame_error(e), 0, 0, ctx);
                }
            }
        }
        self.flush_confirms(ctx);
        if !self.sock.wbuf.is_empty() {
            ctx.mark_dirty(self.info.slot as usize);
        }
    }

    fn protocol_header(&mut self, header: &[u8], ctx: &mut ShardCtx) {
        if header != PROTOCOL_HEADER {
            // AMQP: answer with the version we speak, then close.
            self.sock.wbuf.extend_from_slice(PROTOCOL_HEADER);
            self.state = State::CloseAfterFlush;
            ctx.mark_dirty(self.info.slot as usize);
            return;
        }
        let start = ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: Bytes::from_static(b"AMQPLAIN PLAIN"),
            locales: Bytes::from_static(b"en_US"),
        };
        self.send(0, &start.into());
        self.state = State::StartOk;
    }

    fn frame(&mut self, kind: u8, channel: u16, payload: Bytes, ctx: &mut ShardCtx) {
        match kind {
            c::FRAME_METHOD => {
                let method = match Method::decode(payload) {
                    Ok(m) => m,
                    Err(e) => {
                        let err = match e {
                            crate::protocol::DecodeError::UnknownMethod {
                                class_id,
                                method_id,
                            } => AmqpError::command_invalid(format!(
                                "unknown method class {} method {}",
                                class_id, method_id
                            )),
                            other => AmqpError::syntax_error(other),
                        };
                        return self.connection_error(err, 0, 0, ctx);
                    }
                };
                if self.state == State::Closing {
                    return self.while_closing(channel, method, ctx);
                }
                if channel == 0 {
                    self.connection_method(method, ctx)
                } else if self.state != State::Running {
                    let err = AmqpError::command_invalid("channel methods before connection.open");
                    self.connection_error(err, method.class_id(), method.method_id(), ctx)
                } else {
                    self.channel_method(channel, method, ctx)
                }
            }
            c::FRAME_HEADER | c::FRAME_BODY => {
                if self.state == State::Closing {
                    return;
                }
                if channel == 0 || self.state != State::Running {
                    let err = AmqpError::unexpected_frame("content frame on channel 0");
                    return self.connection_error(err, 0, 0, ctx);
                }
                self.channel_content(kind, channel, payload, ctx)
            }
            c::FRAME_HEARTBEAT => {
                if channel != 0 {
                    let err = AmqpError::frame_error("heartbeat frame on non-zero channel");
                    self.connection_error(err, 0, 0, ctx)
                }
            }
            other => {
                let err = AmqpError::frame_error(format!("unknown frame type {}", other));
                self.connection_error(err, 0, 0, ctx)
            }
        }
    }

    /// A resource alarm stops reading this publisher: tell the client, once,
    /// if it advertised the connection.blocked capability.
    pub fn notify_blocked(&mut self, reason: &str, ctx: &mut ShardCtx) {
        if self.info.blocked_notify && !self.info.sent_blocked && self.state == State::Running {
            self.info.sent_blocked = true;
            let m = ConnectionBlocked {
                reason: Bytes::copy_from_slice(reason.as_bytes()),
            };
            self.send(0, &m.into());
            ctx.mark_dirty(self.info.slot as usize);
        }
    }

    /// Reading resumes: connection.unblocked if connection.blocked was sent.
    pub fn notify_unblocked(&mut self, ctx: &mut ShardCtx) {
        if self.info.sent_blocked {
            self.info.sent_blocked = false;
            if self.state == State::Running {
                self.send(0, &ConnectionUnblocked {}.into());
                ctx.mark_dirty(self.info.slot as usize);
            }
        }
    }

    /// Answers the client's connection.close: channels go, close-ok is sent.
    fn finish_client_close(&mut self, ctx: &mut ShardCtx) {
        self.flush_confirms(ctx);
        self.teardown(ctx);
        self.send(0, &ConnectionCloseOk {}.into());
        self.state = State::CloseAfterFlush;
        self.deadline = None;
        ctx.mark_dirty(self.info.slot as usize);
    }

    fn while_closing(&mut self, channel: u16, method: Method, ctx: &mut ShardCtx) {
        match method {
            // The client acknowledged our close: nothing more to say or wait
            // for, the socket goes now (rabbit_reader's terminate_connection).
            Method::ConnectionCloseOk(_) if channel == 0 => {
                self.state = State::CloseAfterFlush;
                self.dead = true;
                ctx.mark_dirty(self.info.slot as usize);
            }
            Method::ConnectionClose(_) if channel == 0 => {
                self.send(0, &ConnectionCloseOk {}.into());
                self.state = State::CloseAfterFlush;
            }
            _ => {}
        }
    }

    // ---- channel 0: the connection class ----

    fn connection_method(&mut self, m: Method, ctx: &mut ShardCtx) {
        let (class, method) = (m.class_id(), m.method_id());
        let r = match (self.state, m) {
            (State::StartOk, Method::ConnectionStartOk(m)) => self.connection_start_ok(m, ctx),
            (State::TuneOk, Method::ConnectionTuneOk(m)) => self.connection_tune_ok(m, ctx),
            (State::Open, Method::ConnectionOpen(m)) => self.connection_open(m),
            (_, Method::ConnectionClose(_)) => {
                if self.channels.iter().flatten().any(|c| c.awaits_confirms()) {
                    self.state = State::CloseAwaitingConfirms;
                    self.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
                } else {
                    self.finish_client_close(ctx);
                }
                Ok(())
            }
            (State::Running, Method::ConnectionUpdateSecret(_)) => {
                self.send(0, &ConnectionUpdateSecretOk {}.into());
                Ok(())
            }
            // Clients may tell us they are blocked; nothing to do.
            (State::Running, Method::ConnectionBlocked(_))
            | (State::Running, Method::ConnectionUnblocked(_)) => Ok(()),
            (_, other) => Err(AmqpError::command_invalid(format!(
                "unexpected method {} on channel 0 in state {:?}",
                other.name(),
                self.state
            ))),
        };
        if let Err(e) = r {
            self.connection_error(e, class, method, ctx);
        }
    }

    fn connection_start_ok(
        &mut self,
        m: ConnectionStartOk,
        ctx: &mut ShardCtx,
    ) -> Result<(), AmqpError> {
        let mechanism = String::from_utf8_lossy(&m.mechanism).into_owned();
        let creds = match mechanism.as_str() {
            "PLAIN" => parse_plain(&m.response),
            "AMQPLAIN" => parse_amqplain(&m.response),
            _ => {
                return Err(AmqpError::command_invalid(format!(
                    "unknown authentication mechanism '{}'",
                    mechanism
                )))
            }
        };
        let ok = creds
            .as_ref()
            .map(|(u, p)| ctx.config.users.iter().any(|(cu, cp)| cu == u && cp == p))
            .unwrap_or(false);
        if !ok {
            return Err(AmqpError::access_refused(format!(
                "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                mechanism
            )));
        }
        self.info.user = creds.map(|c| c.0).unwrap_or_default();
        if let Some(FieldValue::Table(caps)) = m.client_properties.get("capabilities") {
            self.info.cancel_notify = caps
                .get("consumer_cancel_notify")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            self.info.blocked_notify = caps
                .get("connection.blocked")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
        }
        let tune = ConnectionTune {
            channel_max: ctx.config.channel_max,
            frame_max: ctx.config.frame_max,
            heartbeat: ctx.config.heartbeat,
        };
        self.send(0, &tune.into());
        self.state = State::TuneOk;
        Ok(())
    }

    fn connection_tune_ok(
        &mut self,
        m: ConnectionTuneOk,
        ctx: &mut ShardCtx,
    ) -> Result<(), AmqpError> {
        let server_frame_max = ctx.config.frame_max;
        if m.frame_max != 0 && m.frame_max < c::FRAME_MIN_SIZE {
            return Err(AmqpError::not_allowed(format!(
                "frame_max={} < {} min size",
                m.frame_max,
                c::FRAME_MIN_SIZE
            )));
        }
        self.info.frame_max = if m.frame_max == 0 {
            server_frame_max
        } else {
            m.frame_max.min(server_frame_max)
        };
        let server_channel_max = ctx.config.channel_max;
        self.info.channel_max = if m.channel_max == 0 {
            server_channel_max
        } else {
            m.channel_max.min(server_channel_max)
        };
        self.info.heartbeat = m.heartbeat;
        let largest_frame = self.info.frame_max + FRAME_SIZE_FUDGE;
        self.sock.set_max_buffered(largest_frame as usize);
        self.state = State::Open;
        Ok(())
    }

    fn connection_open(&mut self, m: ConnectionOpen) -> Result<(), AmqpError> {
        if &m.virtual_host[..] != b"/" {
            return Err(AmqpError::not_allowed(format!(
                "vhost {} not found",
                String::from_utf8_lossy(&m.virtual_host)
            )));
        }
        self.send(0, &ConnectionOpenOk::default().into());
        self.state = State::Running;
        self.deadline = None;
        Ok(())
    }

    // ---- channels ----

    fn channel_slot(&mut self, ch: u16) -> &mut Option<Box<Channel>> {
        let i = ch as usize;
        if self.channels.len() <= i {
            self.channels.resize_with(i + 1, || None);
        }
        &mut self.channels[i]
    }

    fn channel_method(&mut self, ch: u16, m: Method, ctx: &mut ShardCtx) {
        let (class, method) = (m.class_id(), m.method_id());
        let slot_closing = match self.channels.get(ch as usize) {
            Some(Some(c)) => Some(c.closing),
            _ => None,
        };
        match (slot_closing, m) {
            (None, Method::ChannelOpen(_)) => {
                // channel_max bounds how many channels are open, not their
                // numbers: RabbitMQ (rabbit_reader:create_channel) opens
                // channel 65535 on a connection that negotiated 2047.
                let open = self.channels.iter().flatten().count();
                if self.info.channel_max != 0 && open >= self.info.channel_max as usize {
                    let err = AmqpError::not_allowed(format!(
                        "number of channels opened ({}) has reached the negotiated channel_max ({})",
                        open, self.info.channel_max
                    ));
                    return self.connection_error(err, class, method, ctx);
                }
                let me = ChannelRef {
                    shard: ctx.id,
                    channel: ch,
                    conn_slot: self.info.slot,
                    incarnation: ctx.next_incarnation(),
                };
                *self.channel_slot(ch) = Some(Box::new(Channel::new(me)));
                self.send(ch, &ChannelOpenOk::default().into());
            }
            (None, Method::ChannelClose(_)) => self.send(ch, &ChannelCloseOk {}.into()),
            (None, Method::ChannelCloseOk(_)) => {}
            (None, other) => {
                let err = AmqpError::channel_error("expected 'channel.open'");
                self.connection_error(err, other.class_id(), other.method_id(), ctx)
            }
            // After we closed the channel, everything but close/close-ok is dropped.
            (Some(true), Method::ChannelCloseOk(_)) => {
                *self.channel_slot(ch) = None;
            }
            // Both sides closed at once: answer the client's close as well
            // (RabbitMQ does); its close-ok for ours then finds no channel.
            (Some(true), Method::ChannelClose(_)) => {
                *self.channel_slot(ch) = None;
                self.send(ch, &ChannelCloseOk {}.into());
            }
            (Some(true), _) => {}
            (Some(false), Method::ChannelOpen(_)) => {
                let err = AmqpError::channel_error("second 'channel.open' seen");
                self.connection_error(err, class, method, ctx)
            }
            (Some(false), Method::ChannelClose(_)) => {
                if let Some(mut chan) = self.channel_slot(ch).take() {
                    chan.teardown(ctx);
                }
                self.send(ch, &ChannelCloseOk {}.into());
            }
            (Some(false), Method::ChannelCloseOk(_)) => {}
            (Some(false), m) => {
                let r = {
                    let chan = self.channels[ch as usize].as_mut().unwrap();
                    let mut cx = ChanCx {
                        ctx,
                        wbuf: &mut self.sock.wbuf,
                        info: &mut self.info,
                    };
                    chan.method(m, &mut cx)
                };
                self.after_channel(ch, r, class, method, ctx);
            }
        }
    }

    fn channel_content(&mut self, kind: u8, ch: u16, payload: Bytes, ctx: &mut ShardCtx) {
        let r = match self.channels.get_mut(ch as usize).and_then(|c| c.as_mut()) {
            None => Err(AmqpError::channel_error(format!(
                "content frame on unopened channel {}",
                ch
            ))),
            Some(chan) if chan.closing => return,
            Some(chan) => {
                let mut cx = ChanCx {
                    ctx,
                    wbuf: &mut self.sock.wbuf,
                    info: &mut self.info,
                };
                chan.content(kind, payload, &mut cx)
            }
        };
        match r {
            Err(e) if e.code == c::CHANNEL_ERROR => self.connection_error(e, 0, 0, ctx),
            r => self.after_channel(ch, r, 60, 40, ctx),
        }
    }

    /// Applies a channel handler's outcome: keep going, pause, or close the
    /// channel (4xx) or the connection (5xx).
    fn after_channel(
        &mut self,
        ch: u16,
        r: Result<Flow, AmqpError>,
        class: u16,
        method: u16,
        ctx: &mut ShardCtx,
    ) {
        match r {
            Ok(Flow::Continue) => {}
            Ok(Flow::Wait) => self.waiting = Some(ch),
            Err(e) if e.is_connection_error() => self.connection_error(e, class, method, ctx),
            Err(e) => self.channel_error(ch, e, class, method, ctx),
        }
    }

    fn channel_error(
        &mut self,
        ch: u16,
        e: AmqpError,
        class: u16,
        method: u16,
        ctx: &mut ShardCtx,
    ) {
        log::debug!("channel {} error: {}", ch, e.text);
        if let Some(Some(chan)) = self.channels.get_mut(ch as usize) {
            chan.teardown(ctx);
            chan.closing = true;
        }
        let close = ChannelClose {
            reply_code: e.code,
            reply_text: Bytes::from(e.text),
            class_id: class,
            method_id: method,
        };
        self.send(ch, &close.into());
    }

    /// Sends connection.close and waits (briefly) for close-ok.
    pub fn connection_error(&mut self, e: AmqpError, class: u16, method: u16, ctx: &mut ShardCtx) {
        log::debug!("connection error: {}", e.text);
        if matches!(self.state, State::Closing | State::CloseAfterFlush) {
            return;
        }
        self.teardown(ctx);
        let close = ConnectionClose {
            reply_code: e.code,
            reply_text: Bytes::from(e.text),
            class_id: class,
            method_id: method,
        };
        self.send(0, &close.into());
        self.state = State::Closing;
        self.waiting = None;
        self.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
        ctx.mark_dirty(self.info.slot as usize);
    }

    /// Releases everything the connection holds in queues: consumers, unacked
    /// messages (requeued), exclusive queues (deleted). Idempotent.
    pub fn teardown(&mut self, ctx: &mut ShardCtx) {
        for chan in self.channels.iter_mut().flatten() {
            chan.teardown(ctx);
        }
        self.channels.clear();
        // Exclusive queues live on this shard (declared here): delete them now, so
        // they are gone before our close-ok reaches the client.
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

    // ---- messages from queues ----

    fn channel_for(&mut self, r: ChannelRef) -> Option<&mut Channel> {
        match self.channels.get_mut(r.channel as usize) {
            Some(Some(c)) if c.me == r && !c.closing => Some(c),
            _ => None,
        }
    }

    /// Runs `f` on channel `r` if it is still open (same incarnation, not
    /// closing) and lists the connection for flushing. For messages that
    /// address a channel rather than a consumer (direct reply-to).
    pub fn on_channel<R>(
        &mut self,
        r: ChannelRef,
        ctx: &mut ShardCtx,
        f: impl FnOnce(&mut Channel, &mut ChanCx) -> R,
    ) -> Option<R> {
        let slot = self.info.slot as usize;
        let chan = match self.channels.get_mut(r.channel as usize) {
            Some(Some(c)) if c.me == r && !c.closing => c,
            _ => return None,
        };
        let mut cx = ChanCx {
            ctx,
            wbuf: &mut self.sock.wbuf,
            info: &mut self.info,
        };
        let out = f(chan, &mut cx);
        cx.ctx.mark_dirty(slot);
        Some(out)
    }

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
        let Some(chan) = (match self.channels.get_mut(consumer.channel.channel as usize) {
            Some(Some(c)) if c.me == consumer.channel && !c.closing => Some(c),
            _ => None,
        }) else {
            return;
        };
        let mut cx = ChanCx {
            ctx,
            wbuf: &mut self.sock.wbuf,
            info: &mut self.info,
        };
        chan.deliver(consumer.id, queue, seq, redelivered, &msg, &mut cx);
        cx.ctx.mark_dirty(slot);
        if self.sock.pending_output() > OUTPUT_HIGH_WATER {
            self.info.output_full.store(true, Ordering::Relaxed);
        }
    }

    /// Called after a flush: once output has drained, consumers' queues resume.
    pub fn output_drained(&mut self, ctx: &mut ShardCtx) {
        if self.info.output_full.load(Ordering::Relaxed)
            && self.sock.pending_output() <= OUTPUT_LOW_WATER
        {
            self.info.output_full.store(false, Ordering::Relaxed);
            for chan in self.channels.iter_mut().flatten() {
                chan.resume_all(ctx);
            }
        }
    }

    pub fn on_reply(
        &mut self,
        to: ChannelRef,
        queue: QueueRef,
        reply: QueueReply,
        ctx: &mut ShardCtx,
    ) {
        if self.waiting != Some(to.channel) || self.channel_for(to).is_none() {
            return;
        }
        self.waiting = None;
        let (r, class, method) = {
            let chan = self.channels[to.channel as usize].as_mut().unwrap();
            let (class, method) = chan.waiting_method();
            let mut cx = ChanCx {
                ctx,
                wbuf: &mut self.sock.wbuf,
                info: &mut self.info,
            };
            (chan.on_reply(queue, reply, &mut cx), class, method)
        };
        self.after_channel(to.channel, r, class, method, ctx);
        // Continue with input that arrived while we waited, and read again if
        // reading was parked on a full buffer.
        let parked = self.sock.input_full();
        self.process(ctx);
        if parked {
            ctx.reread.push(self.info.slot as usize);
        }
    }

    pub fn consumer_cancelled(&mut self, consumer: ConsumerRef, ctx: &mut ShardCtx) {
        let slot = self.info.slot as usize;
        let notify = self.info.cancel_notify;
        if let Some(chan) = self.channel_for(consumer.channel) {
            // Only queue deletion cancels consumers from the queue side.
            if let Some(q) = chan.consumer_queue(consumer.id) {
                chan.queue_gone(q);
            }
            if let Some(tag) = chan.forget_consumer(consumer.id) {
                if notify {
                    let cancel = BasicCancel {
                        consumer_tag: tag,
                        nowait: true,
                    };
                    write_method(
                        &mut self.sock.wbuf,
                        consumer.channel.channel,
                        &cancel.into(),
                    );
                    ctx.mark_dirty(slot);
                }
            }
        }
    }

    /// A queue found a delivery to `channel` unacked for longer than its
    /// timeout: the channel is closed as RabbitMQ's `handle_consumer_timed_out`
    /// does (406, no class/method); the close requeues its unacked messages.
    pub fn consumer_timed_out(&mut self, channel: ChannelRef, timeout_ms: u64, ctx: &mut ShardCtx) {
        if self.channel_for(channel).is_none() {
            return;
        }
        log::warn!(
            "channel {}: delivery acknowledgement timed out ({} ms); closing it",
            channel.channel,
            timeout_ms
        );
        let e = AmqpError::precondition(format!(
            "delivery acknowledgement on channel {} timed out. Timeout value used: {} ms. \
             This timeout value can be configured, see consumers doc guide to learn more",
            channel.channel, timeout_ms
        ));
        self.channel_error(channel.channel, e, 0, 0, ctx);
        ctx.mark_dirty(self.info.slot as usize);
    }

    /// A queue accepted a message this connection published in confirm mode.
    pub fn confirm(&mut self, tag: ConfirmTag, ok: bool, ctx: &mut ShardCtx) {
        let slot = self.info.slot as usize;
        if let Some(chan) = self.channel_for(tag.channel) {
            chan.on_confirm(tag.seq, ok);
            // The ack goes out at flush time, one frame for the whole batch.
            ctx.mark_dirty(slot);
        }
        if self.state == State::CloseAwaitingConfirms
            && !self.channels.iter().flatten().any(|c| c.awaits_confirms())
        {
            self.finish_client_close(ctx);
        }
    }

    /// Writes basic.ack frames for everything confirmed so far (called before
    /// the connection's output is flushed).
    pub fn flush_confirms(&mut self, ctx: &mut ShardCtx) {
        for chan in self.channels.iter_mut().flatten() {
            chan.flush_confirms(&mut self.sock.wbuf);
        }
        let _ = ctx;
    }

    // ---- timers ----

    /// Called a few times a second: heartbeats, handshake and close timeouts.
    pub fn tick(&mut self, now: Instant, ctx: &mut ShardCtx) {
        if let Some(d) = self.deadline {
            if now >= d {
                if self.lingering {
                    self.dead = true;
                } else if self.state == State::CloseAwaitingConfirms {
                    self.finish_client_close(ctx);
                } else if self.state == State::Closing {
                    self.state = State::CloseAfterFlush;
                    self.deadline = None;
                    ctx.mark_dirty(self.info.slot as usize);
                } else {
                    log::debug!("handshake timeout");
                    self.teardown(ctx);
                    self.dead = true;
                }
                return;
            }
        }
        if now.duration_since(self.last_read) > IDLE_RELEASE
            && now.duration_since(self.last_write) > IDLE_RELEASE
        {
            self.sock.release_idle_buffers();
        }
        if self.state != State::Running || self.info.heartbeat == 0 {
            return;
        }
        let hb = Duration::from_secs(self.info.heartbeat as u64);
        // While its output backs up we stop reading the client (event loop), so
        // its heartbeats may sit unread: only judge silence when we read.
        let reading = self.sock.pending_output() <= OUTPUT_HIGH_WATER && !self.flow_blocked;
        if reading && now.duration_since(self.last_read) > hb * 2 {
            log::info!(
                "closing connection: missed heartbeats from client, timeout: {}s",
                self.info.heartbeat
            );
            self.teardown(ctx);
            self.dead = true;
            return;
        }
        if now.duration_since(self.last_write) >= hb / 2 && self.sock.wbuf.is_empty() {
            write_heartbeat(&mut self.sock.wbuf);
            ctx.mark_dirty(self.info.slot as usize);
        }
    }

    fn send(&mut self, channel: u16, m: &Method) {
        write_method(&mut self.sock.wbuf, channel, m);
    }
}

/// PLAIN: "\0user\0password" (an authorisation identity before the first NUL is allowed).
fn parse_plain(resp: &[u8]) -> Option<(String, String)> {
    let mut parts = resp.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    Some((
        String::from_utf8_lossy(user).into_owned(),
        String::from_utf8_lossy(pass).into_owned(),
    ))
}

/// AMQPLAIN: a field table without its length prefix, with LOGIN and PASSWORD.
fn parse_amqplain(resp: &Bytes) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(resp.len() + 4);
    buf.extend_from_slice(&(resp.len() as u32).to_be_bytes());
    buf.extend_from_slice(resp);
    let mut r = crate::protocol::reader::Reader::new(Bytes::from(buf));
    let t = r.table().ok()?;
    let user = t.get("LOGIN")?.as_str()?.to_string();
    let pass = t.get("PASSWORD")?.as_str()?.to_string();
    Some((user, pass))
}

/// connection.start server-properties, as RabbitMQ sends them (clients check
/// `product` and the capabilities table). Only capabilities that work are
/// advertised.
fn server_properties() -> FieldTable {
    let mut caps = FieldTable::new();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
        "consumer_priorities",
    ] {
        caps.insert(cap, FieldValue::Bool(true));
    }
    let s = |v: &str| FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()));
    let mut t = FieldTable::new();
    t.insert("capabilities", FieldValue::Table(caps));
    t.insert("cluster_name", s("warren"));
    t.insert("copyright", s("Copyright (c) the warren authors"));
    t.insert(
        "information",
        s("warren: an AMQP 0-9-1 broker compatible with RabbitMQ clients"),
    );
    t.insert("platform", s("Rust"));
    t.insert("product", s("RabbitMQ"));
    t.insert("version", s("3.13.7"));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_response() {
        assert_eq!(
            parse_plain(b"\0guest\0secret"),
            Some(("guest".into(), "secret".into()))
        );
        assert_eq!(parse_plain(b"authz\0u\0p"), Some(("u".into(), "p".into())));
        assert_eq!(parse_plain(b"guest"), None);
    }

    #[test]
    fn amqplain_response_is_a_table_without_length_prefix() {
        let mut t = FieldTable::new();
        t.insert("LOGIN", FieldValue::LongStr(Bytes::from_static(b"guest")));
        t.insert("PASSWORD", FieldValue::LongStr(Bytes::from_static(b"pw")));
        let mut enc = Vec::new();
        t.encode(&mut enc);
        let resp = Bytes::from(enc[4..].to_vec());
        assert_eq!(parse_amqplain(&resp), Some(("guest".into(), "pw".into())));
        assert_eq!(parse_amqplain(&Bytes::from_static(b"\x05LOGIN")), None);
    }

    #[test]
    fn server_properties_carry_what_clients_check() {
        let p = server_properties();
        assert_eq!(p.get("product").and_then(|v| v.as_str()), Some("RabbitMQ"));
        let Some(FieldValue::Table(caps)) = p.get("capabilities") else {
            panic!("no capabilities")
        };
        for cap in [
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "per_consumer_qos",
            "direct_reply_to",
        ] {
            assert_eq!(
                caps.get(cap).and_then(|v| v.as_bool()),
                Some(true),
                "{}",
                cap
            );
        }
        assert!(caps.get("accept_consumer_cancel_ok").is_none());
    }
}
