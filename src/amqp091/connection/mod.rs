//! One AMQP connection: the handshake (start / tune / open), the frame loop that
//! feeds its channels, heartbeats, and closing. RabbitMQ's `rabbit_reader`.
//!
//! Input is processed frame by frame straight out of the socket's read buffer. When
//! a channel waits for a queue's answer (`Flow::Wait`), processing stops — the rest
//! of the input stays buffered — until `on_reply` resumes it, so methods on a
//! connection are handled strictly in order.

use super::channel::{ChanCx, Channel, Flow};
use super::conn_info::{ConnInfo, TlsInfo};
use super::error::AmqpError;
use crate::core::access::connection as rights;
use crate::core::access::UserAccess;
use crate::core::follow::Follow;
use crate::core::ids::ChannelRef;
use crate::core::message::{Layout, Message};
use crate::core::shard_msg::{QueueOp, ShardMsg};
use crate::core::ShardCtx;
use crate::net::Socket;
use crate::protocol::constants as c;
use crate::protocol::methods::*;
use crate::protocol::publish_span::{publish_span, PublishSpan, WholePublish, EXCHANGE_AT};
use crate::protocol::{check_frame, write_heartbeat, write_method, FrameHead, Method};
use bytes::Bytes;

mod from_queues;
pub use from_queues::{deliver_direct_reply, probe_direct_reply};
mod handshake;
mod moving;
mod snapshot;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client may take to complete the handshake (RabbitMQ: 10 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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
    deadline: Option<Instant>,
    /// The channel waiting for a queue's reply; input processing is paused.
    waiting: Option<u16>,
    /// Everything is sent; waiting for the peer to close.
    lingering: bool,
    /// A move to another shard under way: its queues are holding its
    /// consumers (`moving.rs`).
    moving: Option<moving::Moving>,
}

impl Connection {
    /// A connection whose first bytes (`accepted`: when the socket was
    /// accepted) looked like AMQP 0-9-1; the header itself is still in the
    /// read buffer and checked by `protocol_header`.
    pub fn new(mut sock: Socket, slot: u32, uid: u64, accepted: Instant) -> Connection {
        sock.set_max_buffered(HANDSHAKE_FRAME_MAX as usize);
        let tls = sock.tls().map(|t| {
            Box::new(TlsInfo {
                protocol: t.protocol(),
                cipher: t.cipher(),
                peer_cert_subject: t.peer_cert().map(|p| p.subject.clone()),
            })
        });
        let (peer, local) = (sock.stream.peer_addr().ok(), sock.stream.local_addr().ok());
        Connection {
            sock,
            info: ConnInfo {
                slot,
                uid,
                frame_max: HANDSHAKE_FRAME_MAX,
                channel_max: 0,
                heartbeat: 0,
                user: String::new(),
                access: Arc::new(UserAccess::nobody()),
                counted: false,
                channel_count: None,
                internal: false,
                cancel_notify: false,
                publisher: false,
                blocked_notify: false,
                sent_blocked: false,
                exclusive_queues: Vec::new(),
                output_full: Arc::new(AtomicBool::new(false)),
                ssl: tls.is_some(),
                tls,
                connected_at: crate::core::stats::wall_ms(),
                client_properties: crate::protocol::FieldTable::default(),
                auth_mechanism: "",
                peer,
                local,
                follow: Follow::default(),
                close_reason: None,
            },
            state: State::ProtocolHeader,
            channels: Vec::new(),
            deadline: Some(accepted + HANDSHAKE_TIMEOUT),
            waiting: None,
            lingering: false,
            moving: None,
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
        self.sock.last_read = Instant::now();
        if self.state == State::CloseAfterFlush {
            self.sock.rbuf.clear();
            return;
        }
        self.process(ctx);
    }

    /// Handles buffered frames until the buffer holds no whole frame or a channel
    /// waits for a queue.
    pub fn process(&mut self, ctx: &mut ShardCtx) {
        while !self.sock.dead && self.waiting.is_none() && self.state != State::CloseAfterFlush {
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
                Ok(Some(head)) if head.kind == c::FRAME_METHOD && self.state == State::Running => {
                    match publish_span(&self.sock.rbuf, head, max) {
                        PublishSpan::Whole(w) => self.publish_whole(head.channel, w, ctx),
                        PublishSpan::Partial if self.may_wait_for(head.channel) => break,
                        _ => self.next_frame(head, ctx),
                    }
                }
                Ok(Some(head)) => self.next_frame(head, ctx),
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

    /// Cuts the whole frame `head` from the read buffer and handles it.
    #[inline]
    fn next_frame(&mut self, head: FrameHead, ctx: &mut ShardCtx) {
        // Cut the payload out directly (no slice of a frame `Bytes`): two
        // reference-count updates fewer per frame.
        let mut frame = self.sock.rbuf.split_to(head.total_len());
        frame.truncate(frame.len() - 1);
        bytes::Buf::advance(&mut frame, 7);
        let payload = frame.freeze();
        self.frame(head.kind, head.channel, payload, ctx);
    }

    /// A basic.publish with its header and body frames, all buffered: cut
    /// from the read buffer as one, so the message is one buffer over them
    /// (`Layout::Wire`), handed to the channel whole
    /// (`Channel::publish_framed`): no frame is cut apart, no method decoded
    /// into `Bytes`.
    fn publish_whole(&mut self, ch: u16, w: WholePublish, ctx: &mut ShardCtx) {
        let all = self.sock.rbuf.split_to(w.len).freeze();
        if let Some(Some(chan)) = self.channels.get_mut(ch as usize) {
            if !chan.closing && chan.content_idle() {
                let msg = Message::in_buffer(
                    all.slice(EXCHANGE_AT..w.end),
                    Layout::Wire,
                    w.exchange_len,
                    w.routing_key_len,
                    w.properties_len,
                );
                if let Some(msg) = msg {
                    let bits = all[EXCHANGE_AT + w.exchange_len + 1 + w.routing_key_len];
                    let header = w.header_at + 7..w.body_at - 1;
                    let mut cx = ChanCx {
                        ctx,
                        wbuf: &mut self.sock.wbuf,
                        info: &mut self.info,
                    };
                    let r = chan.publish_framed(bits, &all, header, msg, &mut cx);
                    return self.after_channel(ch, r, 60, 40, ctx);
                }
            }
        }
        // Not a channel that takes a publish now: the frames one by one,
        // for the errors they get alone.
        self.frame(c::FRAME_METHOD, ch, all.slice(7..w.header_at - 1), ctx);
        if self.going_on() {
            self.frame(
                c::FRAME_HEADER,
                ch,
                all.slice(w.header_at + 7..w.body_at - 1),
                ctx,
            );
        }
        if w.body_at < w.len && self.going_on() {
            self.frame(c::FRAME_BODY, ch, all.slice(w.body_at + 7..w.end), ctx);
        }
    }

    /// Whether frames after the one just handled are handled too (the loop
    /// condition of `process`).
    fn going_on(&self) -> bool {
        !self.sock.dead
            && self.waiting.is_none()
            && !matches!(
                self.state,
                State::CloseAfterFlush | State::CloseAwaitingConfirms
            )
    }

    /// Whether `process` may leave a publish's first frames buffered until
    /// the rest arrive: the buffer has room for them, and the channel is open
    /// and expects a method. Otherwise the method frame gets its answer (an
    /// error) now, as it would alone.
    fn may_wait_for(&self, ch: u16) -> bool {
        !self.sock.input_full()
            && matches!(self.channels.get(ch as usize), Some(Some(c)) if !c.closing && c.content_idle())
    }

    fn frame(&mut self, kind: u8, channel: u16, payload: Bytes, ctx: &mut ShardCtx) {
        match kind {
            c::FRAME_METHOD => {
                let mut r = crate::protocol::reader::Reader::new(payload);
                let method = match Method::decode_from(&mut r) {
                    Ok(m) => m,
                    Err(crate::protocol::DecodeError::UnknownMethod {
                        class_id,
                        method_id,
                    }) => {
                        let err = AmqpError::command_invalid(format!(
                            "unknown method class {} method {}",
                            class_id, method_id
                        ));
                        return self.connection_error(err, 0, 0, ctx);
                    }
                    Err(_) => {
                        // RabbitMQ: 501 `cannot decode <<args>>`, for the
                        // method named by the frame's ids.
                        let raw = r.into_inner();
                        let (class, method) = match raw.get(..4) {
                            Some(ids) => (
                                u16::from_be_bytes([ids[0], ids[1]]),
                                u16::from_be_bytes([ids[2], ids[3]]),
                            ),
                            None => (0, 0),
                        };
                        let args = raw.get(4..).unwrap_or(&[]);
                        let err = AmqpError::frame_error(format!(
                            "cannot decode {}",
                            erlang_binary(args)
                        ));
                        return self.connection_error(err, class, method, ctx);
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
                    // RabbitMQ raises it for method `none`: class and method 0.
                    return self.connection_error(err, 0, 0, ctx);
                }
                if let Err(err) = self.count_channel() {
                    return self.connection_error(err, class, method, ctx);
                }
                let me = ChannelRef {
                    shard: ctx.id,
                    channel: ch,
                    conn_slot: self.info.slot,
                    incarnation: ctx.next_incarnation(),
                };
                *self.channel_slot(ch) = Some(Box::new(Channel::new(me)));
                ctx.churn.channel_created += 1;
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
                self.uncount_channels(1);
                ctx.churn.channel_closed += 1;
            }
            // Both sides closed at once: answer the client's close as well
            // (RabbitMQ does); its close-ok for ours then finds no channel.
            (Some(true), Method::ChannelClose(_)) => {
                *self.channel_slot(ch) = None;
                self.uncount_channels(1);
                ctx.churn.channel_closed += 1;
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
                    self.uncount_channels(1);
                    ctx.churn.channel_closed += 1;
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
        self.info.close_reason = Some(e.text.clone().into());
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

    /// The broker closes the connection (320 CONNECTION_FORCED - `text`):
    /// vhost deletion, shutdown, an operator's request.
    pub fn force_close(&mut self, text: &str, ctx: &mut ShardCtx) {
        self.connection_error(AmqpError::new(c::CONNECTION_FORCED, text), 0, 0, ctx);
    }

    /// Releases everything the connection holds in queues: consumers, unacked
    /// messages (requeued), exclusive queues (deleted). Idempotent.
    pub fn teardown(&mut self, ctx: &mut ShardCtx) {
        let mut n = 0;
        for chan in self.channels.iter_mut().flatten() {
            chan.teardown(ctx);
            n += 1;
        }
        self.channels.clear();
        self.uncount_channels(n);
        ctx.churn.channel_closed += n;
        if std::mem::take(&mut self.info.counted) {
            let vhost = self.info.access.vhost;
            ctx.defs.lock().connection_closed(&self.info.user, vhost);
            let i = &self.info;
            crate::core::conn_log::closed(
                "AMQP 0-9-1",
                i.peer,
                i.local,
                &i.user,
                &i.access.vhost_name,
                i.close_reason.as_deref(),
            );
        }
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

    // ---- timers ----

    /// Called a few times a second: heartbeats, handshake and close timeouts,
    /// idle buffers, following its queues. Returns when it is next due if
    /// nothing happens to the connection meanwhile (`Some(now)`: at the next
    /// visit; `None`: no timer runs; `shard::due`).
    pub fn tick(&mut self, now: Instant, ctx: &mut ShardCtx) -> Option<Instant> {
        if let Some(d) = self.deadline {
            if now >= d {
                if self.lingering {
                    self.sock.dead = true;
                } else if self.state == State::CloseAwaitingConfirms {
                    self.finish_client_close(ctx);
                } else if self.state == State::Closing {
                    self.state = State::CloseAfterFlush;
                    self.deadline = None;
                    ctx.mark_dirty(self.info.slot as usize);
                } else {
                    log::debug!("handshake timeout");
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
        if !self.ask_to_follow(ctx) {
            return Some(now);
        }
        if self.info.heartbeat == 0 {
            return release;
        }
        let hb = Duration::from_secs(self.info.heartbeat as u64);
        // While its output backs up we stop reading the client (event loop), so
        // its heartbeats may sit unread: only judge silence when we read.
        let reading = self.sock.pending_output() <= OUTPUT_HIGH_WATER && !self.sock.flow_blocked;
        if reading && now.duration_since(self.sock.last_read) > hb * 2 {
            log::info!(
                "closing connection: missed heartbeats from client, timeout: {}s",
                self.info.heartbeat
            );
            self.teardown(ctx);
            self.sock.dead = true;
            return Some(now);
        }
        if now.duration_since(self.sock.last_write) >= hb / 2 && self.sock.wbuf.is_empty() {
            write_heartbeat(&mut self.sock.wbuf);
            ctx.mark_dirty(self.info.slot as usize);
        }
        if !reading || !self.sock.wbuf.is_empty() {
            // Output under way: the flush makes it due again.
            return Some(now);
        }
        let silence = self.sock.last_read + hb * 2 + Duration::from_millis(1);
        let beat = self.sock.last_write + hb / 2;
        let due = silence.min(beat);
        Some(release.map_or(due, |r| r.min(due)))
    }

    fn send(&mut self, channel: u16, m: &Method) {
        write_method(&mut self.sock.wbuf, channel, m);
    }

    // ---- tenancy ----

    /// Counts a new channel against the user's `max-channels` (across all
    /// their connections), or refuses it as RabbitMQ does (530).
    fn count_channel(&mut self) -> Result<(), AmqpError> {
        rights::take_channel(self.info.channel_count.as_deref(), &self.info.access)
            .map_err(AmqpError::not_allowed)
    }

    fn uncount_channels(&mut self, n: u64) {
        rights::release_channels(self.info.channel_count.as_deref(), n);
    }

    /// Users or permissions changed: rebuild this connection's rights.
    fn refresh_access(&mut self, ctx: &mut ShardCtx) {
        self.info.access = rights::refreshed(&ctx.defs, &self.info.access);
    }
}

/// Bytes as Erlang's `~w` prints a binary (`<<0,0,200,97>>`), as RabbitMQ
/// quotes an undecodable method; long ones are cut (a reply text holds 255
/// bytes).
fn erlang_binary(b: &[u8]) -> String {
    let mut s = String::from("<<");
    for (i, x) in b.iter().enumerate() {
        if s.len() > 230 {
            s.push_str("...");
            break;
        }
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push_str(">>");
    s
}
