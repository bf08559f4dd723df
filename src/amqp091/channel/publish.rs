//! basic.publish: assembling a message from its method, header and body frames,
//! routing it on this shard, handing it to the queues' shards; publisher confirms
//! and transactions.
//!
//! The hot path, `publish_framed`: the message is one `Bytes` over the frames
//! it came in (`Connection::publish_whole`), routing fills a reused Vec, each
//! destination queue gets a clone of that one handle and the `Copy`
//! `MessageMeta` (decoded once, in `publish_message`). No allocation, no lock
//! (one atomic load in `Routing::sync`). Frames that did not arrive together
//! go through `basic_publish`, `content` and `publish_ready`, which copies
//! the parts into one buffer.

use super::{ChanCx, ChanResult, Channel, Flow};
use crate::amqp091::direct_reply;
use crate::amqp091::error::AmqpError;
use crate::core::message::{Message, MessageMeta};
use crate::core::ops::publish::{self as ops_publish, Unroutable};
use crate::core::routing::RouteError;
use crate::core::sender_selected;
use crate::core::shard_msg::ConfirmTag;
use crate::protocol::constants as c;
use crate::protocol::methods::*;
use crate::protocol::properties::{validate_in, BASIC_CLASS_ID};
use crate::protocol::{write_body, write_content_header, write_method, DecodeError, Method};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::ops::Range;

/// RabbitMQ's default max_message_size (128 MiB).
const MAX_MESSAGE_SIZE: u64 = 128 * 1024 * 1024;

/// Where the channel is in receiving a published message.
pub(super) enum Content {
    Idle,
    Header {
        publish: BasicPublish,
    },
    Body {
        publish: BasicPublish,
        properties: Bytes,
        size: u64,
        body: Body,
    },
}

/// Body frames received so far.
pub(super) enum Body {
    Empty,
    /// A single frame: kept as the read-buffer slice, no copy.
    One(Bytes),
    /// Several frames: copied into one buffer (one allocation per message).
    Many(BytesMut),
}

/// basic.publish's own checks: `immediate` is refused, as by RabbitMQ.
fn publish_allowed(immediate: bool, cx: &mut ChanCx) -> Result<(), AmqpError> {
    if immediate {
        return Err(AmqpError::not_implemented("immediate=true"));
    }
    cx.info.publisher = true;
    Ok(())
}

/// The checks of a content header (its payload is `buf[range]`), in the
/// order a publish meets them: its fixed fields are there, it is for class
/// 60, its properties decode, and it announces a body within RabbitMQ's
/// max_message_size. Returns the body size.
fn check_content_header(buf: &Bytes, range: Range<usize>) -> Result<u64, AmqpError> {
    let payload = &buf[range.clone()];
    let Some(fixed) = payload.get(..12).filter(|_| payload.len() >= 14) else {
        return Err(AmqpError::syntax_error(DecodeError::BadContentHeader));
    };
    let class_id = u16::from_be_bytes([fixed[0], fixed[1]]);
    let body_size = u64::from_be_bytes(fixed[4..12].try_into().expect("8 bytes"));
    if class_id != BASIC_CLASS_ID {
        return Err(AmqpError::unexpected_frame(format!(
            "expected content header for class 60, got one for class {}",
            class_id
        )));
    }
    validate_in(buf, range.start + 12..range.end).map_err(AmqpError::syntax_error)?;
    if body_size > MAX_MESSAGE_SIZE {
        return Err(AmqpError::precondition(format!(
            "message size {} is larger than configured max size {}",
            body_size, MAX_MESSAGE_SIZE
        )));
    }
    Ok(body_size)
}

/// An open transaction: publishes and settlements held until commit.
#[derive(Default)]
pub(super) struct Tx {
    pub publishes: Vec<(Message, MessageMeta, bool)>,
    pub settles: Vec<(super::Unacked, crate::core::shard_msg::Settle)>,
}

impl Channel {
    pub(super) fn basic_publish(&mut self, m: BasicPublish, cx: &mut ChanCx) -> ChanResult {
        publish_allowed(m.immediate, cx)?;
        self.content = Content::Header { publish: m };
        Ok(Flow::Continue)
    }

    /// A whole publish, its method, header and body frames read together
    /// (`Connection::publish_whole`): what `basic_publish`, `content` and
    /// `publish_ready` do with them one by one, without cutting the frames
    /// apart. `msg` is the one buffer over them; `bits` the method's
    /// mandatory/immediate octet, `frames[header]` the content header's
    /// payload.
    pub fn publish_framed(
        &mut self,
        bits: u8,
        frames: &Bytes,
        header: Range<usize>,
        msg: Message,
        cx: &mut ChanCx,
    ) -> ChanResult {
        debug_assert!(self.content_idle());
        publish_allowed(bits & 2 != 0, cx)?;
        check_content_header(frames, header)?;
        self.publish_message(msg, bits & 1 != 0, cx)
    }

    /// No publish is waiting for its content frames.
    pub fn content_idle(&self) -> bool {
        matches!(self.content, Content::Idle)
    }

    /// A content header or body frame for this channel.
    pub fn content(&mut self, kind: u8, payload: Bytes, cx: &mut ChanCx) -> ChanResult {
        match (std::mem::replace(&mut self.content, Content::Idle), kind) {
            (Content::Header { publish }, c::FRAME_HEADER) => {
                // Checked (properties included) once; the properties are the
                // rest of the payload.
                let size = check_content_header(&payload, 0..payload.len())?;
                let properties = payload.slice(12..);
                if size == 0 {
                    return self.publish_ready(publish, properties, Bytes::new(), cx);
                }
                self.content = Content::Body {
                    publish,
                    properties,
                    size,
                    body: Body::Empty,
                };
                Ok(Flow::Continue)
            }
            (
                Content::Body {
                    publish,
                    properties,
                    size,
                    body,
                },
                c::FRAME_BODY,
            ) => {
                let body = match body {
                    Body::Empty if payload.len() as u64 == size => Body::One(payload),
                    Body::Empty => {
                        let mut b = BytesMut::with_capacity(initial_body_capacity(size));
                        b.extend_from_slice(&payload);
                        Body::Many(b)
                    }
                    Body::One(first) => {
                        let mut b = BytesMut::with_capacity(initial_body_capacity(size));
                        b.extend_from_slice(&first);
                        b.extend_from_slice(&payload);
                        Body::Many(b)
                    }
                    Body::Many(mut b) => {
                        b.extend_from_slice(&payload);
                        Body::Many(b)
                    }
                };
                let have = match &body {
                    Body::Empty => 0,
                    Body::One(b) => b.len() as u64,
                    Body::Many(b) => b.len() as u64,
                };
                if have > size {
                    return Err(AmqpError::frame_error(format!(
                        "content body larger than the {} bytes the content header announced",
                        size
                    )));
                }
                if have < size {
                    self.content = Content::Body {
                        publish,
                        properties,
                        size,
                        body,
                    };
                    return Ok(Flow::Continue);
                }
                let body = match body {
                    Body::One(b) => b,
                    Body::Many(b) => b.freeze(),
                    Body::Empty => Bytes::new(),
                };
                self.publish_ready(publish, properties, body, cx)
            }
            (Content::Idle, _) => Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            )),
            (_, _) => Err(AmqpError::unexpected_frame("content frame out of order")),
        }
    }

    fn publish_ready(
        &mut self,
        p: BasicPublish,
        properties: Bytes,
        body: Bytes,
        cx: &mut ChanCx,
    ) -> ChanResult {
        // Frames that did not come together (`publish_framed` takes those
        // that did): the parts are copied into a buffer of their own.
        let msg = Message::new(&p.exchange, &p.routing_key, &properties, &body);
        self.publish_message(msg, p.mandatory, cx)
    }

    /// A published message, assembled: checks, then routing (or the
    /// transaction).
    fn publish_message(
        &mut self,
        mut msg: Message,
        mandatory: bool,
        cx: &mut ChanCx,
    ) -> ChanResult {
        self.check_publish_access(msg.exchange(), msg.routing_key(), cx)?;
        // The one decode of the properties the core needs; it travels to the
        // queues beside the message (the reply_to rewrite below leaves every
        // field of it as it is).
        let meta = MessageMeta::from_amqp091(msg.properties());
        self.check_publish(&mut msg, meta, cx)?;
        self.stats.publish += 1;
        self.stats.received_confirm += self.confirm as u64;
        cx.ctx.msg_sizes.observe(msg.body().len());
        if self.tx.is_some() {
            // Fail now on an unknown exchange or bad CC/BCC headers, as
            // RabbitMQ does, but route at commit.
            let ctx = &mut *cx.ctx;
            ctx.routing.sync(&ctx.defs);
            let vhost = cx.info.access.vhost;
            check_exchange(
                ctx.routing
                    .exchange(vhost, msg.exchange())
                    .map(|x| x.internal),
                &cx.info.access.vhost_name,
                msg.exchange(),
            )?;
            let mut keys = std::mem::take(&mut self.route_keys);
            keys.clear();
            let bcc = sender_selected::header_routes(&msg, &mut keys);
            if let (Ok(bcc), true) = (&bcc, msg.exchange().is_empty()) {
                // RabbitMQ hands direct replies over while routing, before the
                // transaction holds the message: they go out now, not at commit.
                let mut reply = msg.clone();
                if let Some(bcc) = bcc {
                    reply =
                        reply.with_properties(&sender_selected::strip_bcc(reply.properties(), bcc));
                }
                direct_reply::forward_replies(&mut ctx.outbox, ctx.config.shards, &reply, &keys);
            }
            keys.clear();
            self.route_keys = keys;
            bcc?;
            self.tx
                .as_mut()
                .unwrap()
                .publishes
                .push((msg, meta, mandatory));
            return Ok(Flow::Continue);
        }
        self.route_and_enqueue(msg, meta, mandatory, true, cx)?;
        Ok(Flow::Continue)
    }

    /// Routes on this shard and hands the message to every destination queue
    /// (and, on the default exchange and if `replies`, to the requesters of
    /// direct replies; a transaction sent those at publish time).
    fn route_and_enqueue(
        &mut self,
        mut msg: Message,
        meta: MessageMeta,
        mandatory: bool,
        replies: bool,
        cx: &mut ChanCx,
    ) -> Result<(), AmqpError> {
        // Sender-selected keys (CC/BCC headers), as slices of the properties.
        let mut keys = std::mem::take(&mut self.route_keys);
        keys.clear();
        let vhost = cx.info.access.vhost;
        let routed = ops_publish::route(cx.ctx, vhost, &mut msg, &mut keys);
        let routed = match routed {
            Err(Unroutable::Header(e)) => {
                self.route_keys = keys;
                return Err(self.exchange_error(msg.exchange(), cx).unwrap_or(e.into()));
            }
            Err(Unroutable::Exchange(e)) => Err(e),
            Ok(()) => Ok(()),
        };
        let ctx = &mut *cx.ctx;
        if replies && routed.is_ok() && msg.exchange().is_empty() {
            direct_reply::forward_replies(&mut ctx.outbox, ctx.config.shards, &msg, &keys);
        }
        keys.clear();
        self.route_keys = keys;
        if let Err(e) = routed {
            return Err(route_error(e, &cx.info.access.vhost_name, msg.exchange()));
        }
        // In confirm mode the message's sequence number; the queues confirm it
        // once they hold it, and basic.ack goes out when all of them did.
        let seq = self.confirm.then_some(self.publish_seq + 1);
        let confirm = seq
            .and_then(std::num::NonZeroU64::new)
            .map(|seq| ConfirmTag {
                channel: self.me,
                seq,
            });
        cx.info.follow.note(ctx.id, &ctx.route_scratch);
        if !ctx.route_scratch.is_empty() {
            let queues = ops_publish::enqueue(ctx, msg, meta, confirm);
            if let Some(seq) = seq {
                self.unconfirmed.push_back((seq, queues as u32));
            }
        } else if !mandatory {
            self.stats.drop_unroutable += 1;
        } else {
            self.stats.return_unroutable += 1;
            // Confirm earlier publishes first: clients (lapin) attach a return to
            // the next ack they see, so a batched ack must not cover messages
            // published before the returned one.
            self.flush_confirms(cx.wbuf);
            let ret = BasicReturn {
                reply_code: c::NO_ROUTE,
                reply_text: Bytes::from_static(b"NO_ROUTE"),
                exchange: msg.exchange_bytes(),
                routing_key: msg.routing_key_bytes(),
            };
            write_method(cx.wbuf, self.me.channel, &ret.into());
            write_content(cx.wbuf, self.me.channel, &msg, cx.info.frame_max);
        }
        if let Some(seq) = seq {
            let returned = mandatory && routed_nowhere(&self.unconfirmed, seq);
            if routed_nowhere(&self.unconfirmed, seq) && (returned || !self.unconfirmed.is_empty())
            {
                // Ack an unroutable message on its own, right away (as RabbitMQ
                // does) rather than hold it behind pending ones — and right after
                // its basic.return: clients (lapin) attach a return to the next
                // confirm they resolve, so no ack may cover it together with
                // later messages.
                let ack = BasicAck {
                    delivery_tag: seq,
                    multiple: false,
                };
                write_method(cx.wbuf, self.me.channel, &ack.into());
                self.stats.confirm += 1;
                if self.unconfirmed.is_empty() {
                    // flush_confirms above acked everything before it.
                    self.confirmed = seq;
                } else {
                    self.acked_ahead.push_back(seq);
                }
            }
            self.publish_seq = seq;
        }
        Ok(())
    }

    /// One of the queues of publish `seq` holds the message now (`ok`), or
    /// refused it (x-overflow reject-publish): the publish is then nacked.
    pub fn on_confirm(&mut self, seq: u64, ok: bool) {
        if !ok && !self.nacked.contains(&seq) {
            self.nacked.push(seq);
        }
        // Publishes are mostly confirmed in order and without gaps: try the
        // slot `seq - first` before searching.
        let first = self.unconfirmed.front().map_or(seq, |e| e.0);
        let guess = seq.wrapping_sub(first) as usize;
        let at = match self.unconfirmed.get(guess) {
            Some(e) if e.0 == seq => Some(guess),
            _ => self.unconfirmed.binary_search_by_key(&seq, |e| e.0).ok(),
        };
        if let Some(i) = at {
            let left = &mut self.unconfirmed[i].1;
            *left = left.saturating_sub(1);
        }
        while self.unconfirmed.front().is_some_and(|e| e.1 == 0) {
            self.unconfirmed.pop_front();
        }
    }

    /// Sends one basic.ack (multiple when it covers several) for every publish
    /// up to the first one still waiting for a queue.
    /// Publishes in confirm mode are still waiting for their queues.
    pub fn awaits_confirms(&self) -> bool {
        self.confirm && !self.unconfirmed.is_empty()
    }

    pub fn flush_confirms(&mut self, wbuf: &mut Vec<u8>) {
        if !self.confirm {
            return;
        }
        let upto = match self.unconfirmed.front() {
            Some(&(seq, _)) => seq - 1,
            None => self.publish_seq,
        };
        if upto <= self.confirmed {
            return;
        }
        if !self.nacked.is_empty() {
            self.flush_nacks(upto, wbuf);
            if upto <= self.confirmed {
                return;
            }
        }
        self.ack_upto(upto, wbuf);
    }

    /// Acks every publish up to `upto` not acked yet with one basic.ack
    /// (multiple when it covers several), tagged with the highest of them not
    /// acked on its own before, as rabbit_channel's `coalesce_and_send`.
    fn ack_upto(&mut self, upto: u64, wbuf: &mut Vec<u8>) {
        let mut tag = upto;
        if !self.acked_ahead.is_empty() {
            let n = self.acked_ahead.partition_point(|&s| s <= upto);
            for &s in self.acked_ahead.range(..n).rev() {
                if s != tag {
                    break;
                }
                tag -= 1;
            }
            self.acked_ahead.drain(..n);
        }
        if tag > self.confirmed {
            self.stats.confirm += tag - self.confirmed;
            let ack = BasicAck {
                delivery_tag: tag,
                multiple: tag > self.confirmed + 1,
            };
            write_method(wbuf, self.me.channel, &ack.into());
        }
        self.confirmed = upto;
    }

    /// Writes the basic.nack of each refused publish up to `upto`, each after
    /// a basic.ack of the publishes before it.
    #[cold]
    fn flush_nacks(&mut self, upto: u64, wbuf: &mut Vec<u8>) {
        self.nacked.sort_unstable();
        let n = self.nacked.partition_point(|&s| s <= upto);
        let mut nacked = std::mem::take(&mut self.nacked);
        for seq in nacked.drain(..n) {
            if seq > self.confirmed + 1 {
                self.ack_upto(seq - 1, wbuf);
            }
            let nack = BasicNack {
                delivery_tag: seq,
                multiple: false,
                requeue: false,
            };
            write_method(wbuf, self.me.channel, &nack.into());
            self.confirmed = seq;
        }
        self.nacked = nacked;
    }

    pub(super) fn confirm_select(&mut self, m: ConfirmSelect, cx: &mut ChanCx) -> ChanResult {
        if self.tx.is_some() {
            return Err(AmqpError::precondition(
                "cannot switch from tx to confirm mode",
            ));
        }
        self.confirm = true;
        if !m.nowait {
            self.send(cx, ConfirmSelectOk {}.into());
        }
        Ok(Flow::Continue)
    }

    pub(super) fn tx_select(&mut self, cx: &mut ChanCx) -> ChanResult {
        if self.confirm {
            return Err(AmqpError::precondition(
                "cannot switch from confirm to tx mode",
            ));
        }
        if self.tx.is_none() {
            self.tx = Some(Tx::default());
        }
        self.send(cx, TxSelectOk {}.into());
        Ok(Flow::Continue)
    }

    pub(super) fn tx_commit(&mut self, cx: &mut ChanCx) -> ChanResult {
        let Some(tx) = self.tx.as_mut() else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        let publishes = std::mem::take(&mut tx.publishes);
        let settles = std::mem::take(&mut tx.settles);
        for (msg, meta, mandatory) in publishes {
            self.route_and_enqueue(msg, meta, mandatory, false, cx)?;
        }
        let mut freed = 0u32;
        for (u, how) in settles {
            freed += u.windowed as u32;
            self.send_settle(u, how, cx);
        }
        if freed > 0 && self.window.give_back(freed) {
            self.resume_window_queues(cx);
        }
        self.send(cx, TxCommitOk {}.into());
        Ok(Flow::Continue)
    }

    pub(super) fn tx_rollback(&mut self, cx: &mut ChanCx) -> ChanResult {
        let Some(tx) = self.tx.as_mut() else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        tx.publishes.clear();
        // Acks in the transaction are undone: the deliveries are unacked again.
        let mut back: Vec<super::Unacked> = tx.settles.drain(..).map(|(u, _)| u).collect();
        back.extend(self.unacked.drain(..));
        back.sort_by_key(|u| u.tag);
        self.unacked = back.into();
        self.send(cx, TxRollbackOk {}.into());
        Ok(Flow::Continue)
    }
}

/// A multi-frame body's first allocation: the announced size, but at most
/// 1 MiB — a header alone must not make us reserve 128 MiB.
fn initial_body_capacity(size: u64) -> usize {
    size.min(1024 * 1024) as usize
}

/// True if publish `seq` was not routed anywhere (it has no pending entry).
fn routed_nowhere(unconfirmed: &VecDeque<(u64, u32)>, seq: u64) -> bool {
    unconfirmed.back().is_none_or(|e| e.0 != seq)
}

pub(super) fn check_exchange(
    found: Option<bool>,
    vhost: &str,
    name: &[u8],
) -> Result<(), AmqpError> {
    match found {
        None => Err(route_error(RouteError::NoExchange, vhost, name)),
        Some(true) => Err(route_error(RouteError::Internal, vhost, name)),
        Some(false) => Ok(()),
    }
}

fn route_error(e: RouteError, vhost: &str, exchange: &[u8]) -> AmqpError {
    e.to_error(vhost, exchange).into()
}

/// Content header and body frames of a message (deliver, get-ok, return).
pub(super) fn write_content(wbuf: &mut Vec<u8>, channel: u16, msg: &Message, frame_max: u32) {
    write_content_header(wbuf, channel, 60, msg.body().len() as u64, msg.properties());
    write_body(wbuf, channel, msg.body(), frame_max);
}

/// Used by replies.rs for get-ok.
pub(super) fn write_method_and_content(
    wbuf: &mut Vec<u8>,
    channel: u16,
    m: &Method,
    msg: &Message,
    frame_max: u32,
) {
    write_method(wbuf, channel, m);
    write_content(wbuf, channel, msg, frame_max);
}
