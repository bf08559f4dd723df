//! Links on which the client sends: publishers. RabbitMQ 4's incoming
//! links (`rabbit_amqp_session:handle_attach` for role sender,
//! `incoming_mgmt_link` aside).
//!
//! A message is routed on this shard with the core's `route` and handed to
//! its queues with `enqueue`, as the 0-9-1 channel does. An unsettled
//! transfer gets its outcome once every queue holds the message (durable
//! messages after the group commit's fsync): accepted; released when it
//! was routed nowhere; rejected when a queue refused it (reject-publish
//! overflow, a store that cannot write).

use super::{Link, SessCx, SessError, SessResult, Session};
use crate::amqp10::address::{self, TargetAddr};
use crate::amqp10::error::{cond, Amqp10Error};
use crate::amqp10::mapping;
use crate::amqp10::wire;
use crate::core::auth::permissions::Access;
use crate::core::ops::publish::{self as ops_publish, Unroutable};
use crate::core::shard_msg::ConfirmTag;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Credit we give a publisher link (RabbitMQ 4's `max_link_credit`),
/// renewed when half is spent and fewer than this many of the link's
/// messages wait for their queues: a publisher whose messages are not
/// confirmed stops getting credit.
const LINK_CREDIT: u32 = 170;
/// RabbitMQ 4's default `max_message_size` for AMQP 1.0: 16 MiB.
pub const MAX_MESSAGE_SIZE: u64 = 16 * 1024 * 1024;

/// Where a link's messages go.
#[derive(Debug)]
enum Target {
    Fixed(TargetAddr),
    /// Null target address: each message's `to` (anonymous relay).
    Anonymous,
}

/// A link on which the client sends.
pub struct InLink {
    pub handle: u32,
    target: Target,
    /// The sender's delivery-count, as far as we have counted it.
    delivery_count: u32,
    /// Credit left of what we granted.
    credit: u32,
    /// Messages of this link waiting for their queues' confirms.
    unconfirmed: u32,
    /// A delivery whose transfer frames are still coming (`more`).
    partial: Option<Partial>,
}

struct Partial {
    delivery_id: u32,
    settled: bool,
    buf: BytesMut,
}

/// A message published unsettled, waiting for its queues.
struct Pending {
    seq: u64,
    /// The link it came on.
    handle: u32,
    delivery_id: u32,
    /// Queues that have not answered yet.
    left: u32,
    /// One of them refused it.
    refused: bool,
}

/// The session's publishing state.
#[derive(Default)]
pub struct Publishing {
    next_seq: u64,
    pending: VecDeque<Pending>,
    /// Outcomes decided and not written yet: (delivery-id, outcome).
    ready: Vec<(u32, wire::Outcome)>,
    route_keys: Vec<Bytes>,
    /// Where each message's 0-9-1 properties are encoded, then cut out of
    /// `arena` (`mapping::to_core_in`).
    scratch: Vec<u8>,
    arena: BytesMut,
}

impl Publishing {
    pub fn clear(&mut self) {
        self.pending.clear();
        self.ready.clear();
    }
}

impl Session {
    /// The client attaches as sender: check the target, answer with our
    /// attach (receiver) and grant credit.
    pub(super) fn attach_incoming(&mut self, a: wire::Attach, cx: &mut SessCx) -> SessResult {
        let h = a.handle;
        let target = match self.check_target(&a, cx) {
            Ok(t) => t,
            // Permission failures end the session, as in RabbitMQ 4.
            Err(e) if e.condition == cond::UNAUTHORIZED_ACCESS => {
                return Err(SessError::Session(e))
            }
            Err(e) => {
                // Refuse the link (2.6.3): an attach without terminus, then
                // a detach with the error.
                wire::write_attach_reply(cx.wbuf, self.channel, &a, wire::ROLE_RECEIVER, false, 0);
                wire::write_detach(cx.wbuf, self.channel, h, true, Some(&e));
                return Ok(false);
            }
        };
        cx.info.publisher = true;
        let delivery_count = a.initial_delivery_count.unwrap_or(0);
        wire::write_attach_reply(cx.wbuf, self.channel, &a, wire::ROLE_RECEIVER, true, 0);
        let link = InLink {
            handle: h,
            target,
            delivery_count,
            credit: LINK_CREDIT,
            unconfirmed: 0,
            partial: None,
        };
        let flow = self.link_flow_in(&link);
        wire::write_flow(cx.wbuf, self.channel, flow);
        *self.link_slot(h) = Some(Link::In(Box::new(link)));
        Ok(false)
    }

    /// The target of a sending link, checked as RabbitMQ 4 checks it: the
    /// address form, the exchange or queue exists, write permission.
    fn check_target(&self, a: &wire::Attach, cx: &mut SessCx) -> Result<Target, Amqp10Error> {
        if a.rcv_settle_mode == wire::RCV_SETTLE_SECOND {
            return Err(Amqp10Error::new(
                cond::NOT_IMPLEMENTED,
                "rcv-settle-mode second not supported",
            ));
        }
        if wire::is_coordinator(a) {
            return Err(Amqp10Error::new(
                cond::NOT_IMPLEMENTED,
                "Transactions not supported",
            ));
        }
        let Some(addr) = wire::target_address(a) else {
            return Ok(Target::Anonymous);
        };
        let t = address::parse_target(&addr).map_err(|_| bad_address(&addr))?;
        check_fixed_target(&t, cx)?;
        Ok(Target::Fixed(t))
    }

    /// Our flow for an incoming link: its delivery-count and our credit.
    pub(super) fn link_flow_in(&self, l: &InLink) -> wire::FlowOut {
        link_flow_in(self.session_flow(), l)
    }

    /// A transfer frame on an incoming link.
    pub(super) fn transfer(
        &mut self,
        t: wire::Transfer,
        payload: Bytes,
        cx: &mut SessCx,
    ) -> SessResult {
        self.count_incoming(cx)?;
        let h = t.handle;
        if let Some(Some(Link::MgmtIn(_))) = self.links.get(h as usize) {
            return self.management_transfer(t, payload, cx);
        }
        let sf = self.session_flow();
        let channel = self.channel;
        let Some(Some(Link::In(link))) = self.links.get_mut(h as usize) else {
            return Err(SessError::Session(Amqp10Error::new(
                cond::UNATTACHED_HANDLE,
                format!("transfer on unattached handle {}", h),
            )));
        };
        if t.aborted {
            link.partial = None;
            return Ok(false);
        }
        let settled = t.settled.unwrap_or(false);
        let complete = match link.partial.take() {
            Some(mut p) => {
                if p.buf.len() as u64 + payload.len() as u64 > MAX_MESSAGE_SIZE {
                    let e = size_exceeded(p.buf.len() as u64 + payload.len() as u64);
                    return Err(SessError::Session(e));
                }
                p.buf.extend_from_slice(&payload);
                p.settled |= settled;
                if t.more {
                    link.partial = Some(p);
                    return Ok(false);
                }
                (p.delivery_id, p.settled, p.buf.freeze())
            }
            None => {
                let Some(delivery_id) = t.delivery_id else {
                    return Err(SessError::Connection(Amqp10Error::new(
                        cond::FRAMING_ERROR,
                        "first transfer of a delivery without delivery-id",
                    )));
                };
                if link.credit == 0 {
                    let e = Amqp10Error::new(
                        "amqp:link:transfer-limit-exceeded",
                        "transfer without link credit",
                    );
                    self.detach_with(h, e, cx);
                    return Ok(false);
                }
                link.credit -= 1;
                link.delivery_count = link.delivery_count.wrapping_add(1);
                top_up(link, sf, channel, cx.wbuf);
                if payload.len() as u64 > MAX_MESSAGE_SIZE {
                    return Err(SessError::Session(size_exceeded(payload.len() as u64)));
                }
                if t.more {
                    let mut buf = BytesMut::with_capacity((payload.len() * 4).min(1 << 20));
                    buf.extend_from_slice(&payload);
                    let Some(Some(Link::In(link))) = self.links.get_mut(h as usize) else {
                        unreachable!("link looked up above");
                    };
                    link.partial = Some(Partial {
                        delivery_id,
                        settled,
                        buf,
                    });
                    return Ok(false);
                }
                (delivery_id, settled, payload)
            }
        };
        let (delivery_id, settled, payload) = complete;
        self.publish(h, delivery_id, settled, payload, cx);
        Ok(false)
    }

    /// A whole message: route it, hand it to its queues, decide or await
    /// its outcome.
    fn publish(
        &mut self,
        h: u32,
        delivery_id: u32,
        settled: bool,
        payload: Bytes,
        cx: &mut SessCx,
    ) {
        let outcome = match self.route_message(h, delivery_id, settled, payload, cx) {
            Ok(None) => return,
            Ok(Some(o)) => o,
            Err(LinkFail(e)) => {
                if !settled {
                    self.publish
                        .ready
                        .push((delivery_id, wire::Outcome::Released));
                    self.flush_outcomes(cx.wbuf);
                }
                return self.detach_with(h, e, cx);
            }
        };
        match outcome {
            // A settled message has no outcome to carry the error: the
            // link goes (RabbitMQ 4).
            wire::Outcome::Rejected(Some(e)) if settled => self.detach_with(h, e, cx),
            _ if settled => {}
            o => self.publish.ready.push((delivery_id, o)),
        }
    }

    /// Routes and enqueues; `Ok(None)` when the outcome waits for queues,
    /// `Ok(Some(outcome))` when it is known now.
    fn route_message(
        &mut self,
        h: u32,
        delivery_id: u32,
        settled: bool,
        payload: Bytes,
        cx: &mut SessCx,
    ) -> Result<Option<wire::Outcome>, LinkFail> {
        let sections = match wire::Sections::parse(payload) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Some(wire::Outcome::Rejected(Some(Amqp10Error::new(
                    cond::DECODE_ERROR,
                    e.to_string(),
                )))))
            }
        };
        let Some(Some(Link::In(link))) = self.links.get(h as usize) else {
            return Ok(None);
        };
        let (exchange, key) = match &link.target {
            Target::Fixed(t) => fixed_route(t),
            Target::Anonymous => {
                let Some(to) = mapping::to_address(&sections) else {
                    return Ok(Some(wire::Outcome::Rejected(Some(Amqp10Error::new(
                        cond::PRECONDITION_FAILED,
                        "anonymous terminus requires 'to' address to be set",
                    )))));
                };
                let t = match address::parse_target(&to) {
                    Ok(t) => t,
                    Err(_) => {
                        let e = Amqp10Error::new(
                            cond::PRECONDITION_FAILED,
                            format!("bad 'to' address string: {}", String::from_utf8_lossy(&to)),
                        );
                        return Ok(Some(wire::Outcome::Rejected(Some(e))));
                    }
                };
                if let Err(e) = check_fixed_target(&t, cx) {
                    return Ok(Some(wire::Outcome::Rejected(Some(e))));
                }
                fixed_route(&t)
            }
        };
        let anonymous = matches!(link.target, Target::Anonymous);
        if let Some(uid) = sections
            .properties
            .as_ref()
            .and_then(|p| p.user_id.as_ref())
        {
            if uid.as_ref() != cx.info.user.as_bytes() {
                return Err(LinkFail(Amqp10Error::new(
                    cond::UNAUTHORIZED_ACCESS,
                    format!(
                        "user_id property set to '{}' but authenticated user was '{}'",
                        String::from_utf8_lossy(uid),
                        cx.info.user
                    ),
                )));
            }
        }
        let pb = &mut self.publish;
        let (mut msg, meta) =
            mapping::to_core_in(exchange, key, &sections, &mut pb.scratch, &mut pb.arena);
        cx.ctx.msg_sizes.observe(msg.body().len());
        let mut keys = std::mem::take(&mut self.publish.route_keys);
        keys.clear();
        let vhost = cx.info.access.vhost;
        let routed = ops_publish::route(cx.ctx, vhost, &mut msg, &mut keys);
        keys.clear();
        self.publish.route_keys = keys;
        match routed {
            Ok(()) => {}
            Err(Unroutable::Header(e)) => {
                return Ok(Some(wire::Outcome::Rejected(Some(Amqp10Error::new(
                    cond::PRECONDITION_FAILED,
                    crate::core::error::CoreError::from(e).detail().to_string(),
                )))))
            }
            Err(Unroutable::Exchange(e)) => {
                let err = Amqp10Error::from(e.to_error(&cx.info.access.vhost_name, msg.exchange()));
                if anonymous {
                    return Ok(Some(wire::Outcome::Rejected(Some(err))));
                }
                // The link's exchange was deleted under it.
                return Err(LinkFail(err));
            }
        }
        if cx.ctx.route_scratch.is_empty() {
            // RabbitMQ 4: an unroutable message is released.
            return Ok(Some(wire::Outcome::Released));
        }
        if settled {
            ops_publish::enqueue(cx.ctx, msg, meta, None);
            return Ok(None);
        }
        self.publish.next_seq += 1;
        let seq = self.publish.next_seq;
        let tag = ConfirmTag {
            channel: self.me,
            seq: std::num::NonZeroU64::new(seq).expect("seq starts at 1"),
        };
        let n = ops_publish::enqueue(cx.ctx, msg, meta, Some(tag));
        if let Some(Some(Link::In(l))) = self.links.get_mut(h as usize) {
            l.unconfirmed += 1;
        }
        self.publish.pending.push_back(Pending {
            seq,
            handle: h,
            delivery_id,
            left: n as u32,
            refused: false,
        });
        Ok(None)
    }

    /// One queue of publish `seq` holds the message (`ok`) or refused it.
    pub fn confirm(&mut self, seq: u64, ok: bool) {
        let p = &mut self.publish;
        let first = p.pending.front().map_or(seq, |e| e.seq);
        let guess = seq.wrapping_sub(first) as usize;
        let at = match p.pending.get(guess) {
            Some(e) if e.seq == seq => Some(guess),
            _ => p.pending.iter().position(|e| e.seq == seq),
        };
        let Some(i) = at else { return };
        let e = &mut p.pending[i];
        e.refused |= !ok;
        e.left = e.left.saturating_sub(1);
        if e.left > 0 {
            return;
        }
        let outcome = if e.refused {
            wire::Outcome::Rejected(None)
        } else {
            wire::Outcome::Accepted
        };
        p.ready.push((e.delivery_id, outcome));
        let handle = e.handle;
        while p.pending.front().is_some_and(|e| e.left == 0) {
            p.pending.pop_front();
        }
        // Answered out of order: drop the ones answered in the middle.
        if p.pending.len() > 64 && i > 0 {
            p.pending.retain(|e| e.left > 0);
        }
        if let Some(Some(Link::In(l))) = self.links.get_mut(handle as usize) {
            l.unconfirmed = l.unconfirmed.saturating_sub(1);
        }
    }

    /// Writes the decided outcomes: one settled disposition per run of
    /// consecutive delivery-ids with the same outcome.
    pub fn flush_outcomes(&mut self, wbuf: &mut Vec<u8>) {
        if self.publish.ready.is_empty() {
            return;
        }
        // Confirms came in: links held back for want of them get credit.
        let (sf, channel) = (self.session_flow(), self.channel);
        for l in self.links.iter_mut().flatten() {
            if let Link::In(l) = l {
                top_up(l, sf, channel, wbuf);
            }
        }
        let ready = &mut self.publish.ready;
        ready.sort_by_key(|r| r.0);
        let mut i = 0;
        while i < ready.len() {
            let (first, ref outcome) = ready[i];
            let mut j = i + 1;
            while j < ready.len()
                && ready[j].0 == ready[j - 1].0.wrapping_add(1)
                && ready[j].1 == *outcome
            {
                j += 1;
            }
            let last = ready[j - 1].0;
            wire::write_disposition(
                wbuf,
                self.channel,
                wire::ROLE_RECEIVER,
                first,
                last,
                true,
                outcome,
            );
            i = j;
        }
        ready.clear();
    }
}

/// A flow for an incoming link: the session's state, the link's
/// delivery-count and our credit.
pub(super) fn link_flow_in(mut f: wire::FlowOut, l: &InLink) -> wire::FlowOut {
    f.link = Some(wire::LinkFlow {
        handle: l.handle,
        delivery_count: l.delivery_count,
        link_credit: l.credit,
        drain: false,
        echo: false,
    });
    f
}

/// Grants a publisher link its credit again once half is spent, unless too
/// many of its messages wait for confirms.
fn top_up(l: &mut InLink, sf: wire::FlowOut, channel: u16, wbuf: &mut Vec<u8>) {
    if l.credit <= LINK_CREDIT / 2 && l.unconfirmed < LINK_CREDIT {
        l.credit = LINK_CREDIT;
        wire::write_flow(wbuf, channel, link_flow_in(sf, l));
    }
}

/// A link must go (detach with this error).
pub(super) struct LinkFail(pub Amqp10Error);

/// Exchange and routing key for a target. `/exchanges/:exchange` routes
/// with the empty key: v2 addresses never take the key from the message's
/// subject (RabbitMQ 4's `parse_target_v2_string0`; only v1 did).
fn fixed_route(t: &TargetAddr) -> (Bytes, Bytes) {
    match t {
        TargetAddr::ExchangeKey { exchange, key } => (exchange.clone(), key.clone()),
        TargetAddr::Exchange { exchange } => (exchange.clone(), Bytes::new()),
        TargetAddr::Queue { queue } => (Bytes::new(), queue.clone()),
    }
}

/// A target's exchange or queue must exist and the user may write to the
/// exchange (the default exchange for `/queues/:queue`).
fn check_fixed_target(t: &TargetAddr, cx: &mut SessCx) -> Result<(), Amqp10Error> {
    let access = cx.info.access.clone();
    let vhost = access.vhost;
    let ctx = &mut *cx.ctx;
    ctx.routing.sync(&ctx.defs);
    match t {
        TargetAddr::ExchangeKey { exchange, .. } | TargetAddr::Exchange { exchange } => {
            let name = String::from_utf8_lossy(exchange);
            access.check_exchange(Access::Write, &name)?;
            if ctx.routing.exchange(vhost, exchange).is_none() {
                return Err(
                    crate::core::error::CoreError::no_exchange(&access.vhost_name, &name).into(),
                );
            }
        }
        TargetAddr::Queue { queue } => {
            access.check_exchange(Access::Write, "")?;
            let name = String::from_utf8_lossy(queue);
            if ctx.routing.queue(vhost, &name).is_none() {
                return Err(
                    crate::core::error::CoreError::no_queue(&access.vhost_name, &name).into(),
                );
            }
        }
    }
    Ok(())
}

fn bad_address(addr: &[u8]) -> Amqp10Error {
    Amqp10Error::new(
        cond::INVALID_FIELD,
        format!(
            "bad address '{}': expected /exchanges/:exchange[/:routing-key] or /queues/:queue",
            String::from_utf8_lossy(addr)
        ),
    )
}

fn size_exceeded(size: u64) -> Amqp10Error {
    Amqp10Error::new(
        cond::MESSAGE_SIZE_EXCEEDED,
        format!(
            "message size ({} bytes) > maximum message size ({} bytes)",
            size, MAX_MESSAGE_SIZE
        ),
    )
}
