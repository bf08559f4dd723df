//! Links on which the client receives: consumers of `/queues/:queue`.
//!
//! A consumer link is a core consumer in credit mode
//! (`ConsumeMode::Credit`): the client's `flow` frames become
//! `QueueOp::Credit` for the queue, which keeps the link's delivery-count
//! and answers drains and echoes (`QueueReply::Credit`) after the
//! deliveries they allowed. Deliveries arrive as `ShardMsg::Deliver` and
//! leave as transfer frames; the client's dispositions become `Settle`s.

use super::{Link, SessCx, SessResult, Session};
use crate::amqp10::address;
use crate::amqp10::error::{cond, Amqp10Error};
use crate::amqp10::mapping;
use crate::amqp10::wire;
use crate::core::auth::permissions::Access;
use crate::core::ids::{ChannelRef, ConsumerRef, QueueRef, Requester};
use crate::core::message::Message;
use crate::core::ops::Caller;
use crate::core::shard_msg::{ConsumeMode, ConsumeSpec, QueueOp, QueueReply, Settle, ShardMsg};
use std::collections::VecDeque;

/// A link on which the client receives.
pub struct OutLink {
    pub handle: u32,
    queue: QueueRef,
    consumer_id: u32,
    /// snd-settle-mode settled: deliveries are settled when sent (no acks).
    settled: bool,
}

/// An attach waiting for the queue to register the consumer.
pub(super) struct Awaiting {
    attach: wire::Attach,
    queue: QueueRef,
    consumer_id: u32,
    settled: bool,
}

/// One delivery not settled by the client yet.
#[derive(Clone, Copy)]
struct Unsettled {
    queue: QueueRef,
    seq: u64,
    consumer_id: u32,
}

/// A delivery waiting for the peer's session window, perhaps partly sent.
struct Held {
    consumer: ConsumerRef,
    queue: QueueRef,
    seq: u64,
    redelivered: bool,
    msg: Message,
    /// Its delivery-id and the bytes of it already sent, once it started.
    started: Option<(u32, usize)>,
}

/// The session's delivering state.
#[derive(Default)]
pub struct Delivering {
    next_delivery_id: u32,
    /// The delivery-id of `unsettled[0]`.
    base: u32,
    unsettled: VecDeque<Option<Unsettled>>,
    held: VecDeque<Held>,
    /// Link flows (drain, echo answers) waiting behind `held` transfers.
    flows: Vec<wire::LinkFlow>,
    /// Reused buffer for the sections before the body.
    scratch: Vec<u8>,
}

impl Delivering {
    /// The next delivery-id (shared by every link of the session) for a
    /// delivery sent settled: it takes a placeholder slot while others wait
    /// to be settled, so `unsettled[i]` stays delivery-id `base + i`.
    pub fn take_delivery_id(&mut self) -> u32 {
        let id = self.next_delivery_id;
        self.next_delivery_id = id.wrapping_add(1);
        if !self.unsettled.is_empty() {
            self.unsettled.push_back(None);
        }
        id
    }

    /// The next delivery-id for a delivery the client must settle.
    fn take_unsettled_id(&mut self, u: Unsettled) -> u32 {
        let id = self.next_delivery_id;
        self.next_delivery_id = id.wrapping_add(1);
        if self.unsettled.is_empty() {
            self.base = id;
        }
        self.unsettled.push_back(Some(u));
        id
    }

    pub fn clear(&mut self) {
        self.unsettled.clear();
        self.held.clear();
        self.flows.clear();
    }
}

impl Session {
    /// The client attaches as receiver: register a credit-paced consumer on
    /// the source queue; the attach is answered when the queue has it.
    pub(super) fn attach_outgoing(&mut self, a: wire::Attach, cx: &mut SessCx) -> SessResult {
        match self.check_source(&a, cx) {
            Ok(q) => {
                self.next_consumer_id += 1;
                let id = self.next_consumer_id;
                let settled = a.snd_settle_mode == wire::SND_SETTLED;
                let spec = ConsumeSpec {
                    consumer: ConsumerRef {
                        channel: self.me,
                        id,
                    },
                    conn_uid: cx.info.uid,
                    no_ack: settled,
                    exclusive: false,
                    mode: ConsumeMode::Credit {
                        credit: 0,
                        delivery_count: 0,
                    },
                    window: self.window.clone(),
                    output_full: cx.info.output_full.clone(),
                    arguments: mapping::consumer_arguments(&a),
                    tag: a.name.to_bytes(),
                };
                self.touch(q);
                cx.ctx.outbox.push(
                    q.shard,
                    ShardMsg::Request {
                        queue: q,
                        reply_to: Some(Requester::Channel(self.me)),
                        op: QueueOp::Consume(Box::new(spec)),
                    },
                );
                self.awaiting = Some(Awaiting {
                    attach: a,
                    queue: q,
                    consumer_id: id,
                    settled,
                });
                Ok(true)
            }
            // Permission failures end the session, as in RabbitMQ 4.
            Err(e) if e.condition == cond::UNAUTHORIZED_ACCESS => Err(super::SessError::Session(e)),
            Err(e) => {
                wire::write_attach_reply(cx.wbuf, self.channel, &a, wire::ROLE_SENDER, false, 0);
                wire::write_detach(cx.wbuf, self.channel, a.handle, true, Some(&e));
                Ok(false)
            }
        }
    }

    fn check_source(&self, a: &wire::Attach, cx: &mut SessCx) -> Result<QueueRef, Amqp10Error> {
        if a.rcv_settle_mode == wire::RCV_SETTLE_SECOND {
            return Err(Amqp10Error::new(
                cond::NOT_IMPLEMENTED,
                "rcv-settle-mode second not supported",
            ));
        }
        let Some(addr) = wire::source_address(a) else {
            return Err(Amqp10Error::new(
                cond::INVALID_FIELD,
                "a receiving link needs a source address (/queues/:queue)",
            ));
        };
        let name = address::parse_source(&addr).map_err(|_| {
            Amqp10Error::new(
                cond::INVALID_FIELD,
                format!(
                    "bad address '{}': expected /queues/:queue",
                    String::from_utf8_lossy(&addr)
                ),
            )
        })?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let caller = Caller {
            conn_uid: cx.info.uid,
            access: &cx.info.access,
        };
        let q = crate::core::ops::queue::use_queue(cx.ctx, caller, Access::Read, &name)?;
        Ok(q.queue)
    }

    /// A queue answered (today: a consumer link's consume, or a credit
    /// drain / echo).
    pub fn on_reply(&mut self, queue: QueueRef, reply: QueueReply, cx: &mut SessCx) -> SessResult {
        if let QueueReply::Credit {
            consumer,
            delivery_count,
            credit,
            drain,
        } = reply
        {
            if let Some(l) = self.out_link(consumer.id) {
                let flow = wire::LinkFlow {
                    handle: l.handle,
                    delivery_count,
                    link_credit: credit,
                    drain,
                    echo: false,
                };
                // After the transfers it accounts for: behind any that wait
                // for the session window.
                if self
                    .delivering
                    .held
                    .iter()
                    .any(|h| h.consumer.id == consumer.id)
                {
                    self.delivering.flows.push(flow);
                } else {
                    self.write_session_flow(cx.wbuf, Some(flow));
                }
            }
            return Ok(false);
        }
        if self.management_reply_pending() {
            let QueueReply::Credit { .. } = reply else {
                self.management_reply(queue, reply, cx);
                return Ok(false);
            };
        }
        // Only the answer the attach waits for (a stale reply of another
        // queue is not it).
        let Some(w) = self.awaiting.take_if(|w| w.queue == queue) else {
            return Ok(false);
        };
        let h = w.attach.handle;
        match reply {
            QueueReply::Consumed => {
                wire::write_attach_reply(
                    cx.wbuf,
                    self.channel,
                    &w.attach,
                    wire::ROLE_SENDER,
                    true,
                    0,
                );
                *self.link_slot(h) = Some(Link::Out(Box::new(OutLink {
                    handle: h,
                    queue: w.queue,
                    consumer_id: w.consumer_id,
                    settled: w.settled,
                })));
            }
            other => {
                let e = match other {
                    QueueReply::Error(e) => Amqp10Error::from(e),
                    _ => Amqp10Error::new(cond::NOT_FOUND, "queue deleted"),
                };
                wire::write_attach_reply(
                    cx.wbuf,
                    self.channel,
                    &w.attach,
                    wire::ROLE_SENDER,
                    false,
                    0,
                );
                wire::write_detach(cx.wbuf, self.channel, h, true, Some(&e));
            }
        }
        Ok(false)
    }

    fn out_link(&self, consumer_id: u32) -> Option<&OutLink> {
        self.links.iter().flatten().find_map(|l| match l {
            Link::Out(o) if o.consumer_id == consumer_id => Some(&**o),
            _ => None,
        })
    }

    /// A message from a queue for one of our links.
    pub fn deliver(
        &mut self,
        consumer: ConsumerRef,
        queue: QueueRef,
        seq: u64,
        redelivered: bool,
        msg: Message,
        cx: &mut SessCx,
    ) {
        let held = Held {
            consumer,
            queue,
            seq,
            redelivered,
            msg,
            started: None,
        };
        if self.remote_incoming_window == 0 || !self.delivering.held.is_empty() {
            self.delivering.held.push_back(held);
            return;
        }
        if let Some(rest) = self.send_transfer(held, cx) {
            self.delivering.held.push_front(rest);
        }
    }

    /// Sends a delivery, or as many of its frames as the peer's session
    /// window takes; returns what is left of it.
    fn send_transfer(&mut self, h: Held, cx: &mut SessCx) -> Option<Held> {
        let Some(l) = self.out_link(h.consumer.id) else {
            // Its link was detached meanwhile: give it back (a settled one,
            // or one partly sent, is gone for this client).
            if h.started.is_none() {
                cx.ctx.outbox.push(
                    h.queue.shard,
                    ShardMsg::Settle {
                        queue: h.queue,
                        channel: self.me,
                        seq: h.seq,
                        how: Settle::Requeue,
                        count: 1,
                    },
                );
            }
            return None;
        };
        let (handle, settled) = (l.handle, l.settled);
        let d = &mut self.delivering;
        let (delivery_id, from) = match h.started {
            Some(s) => s,
            None if settled => (d.take_delivery_id(), 0),
            None => {
                let u = Unsettled {
                    queue: h.queue,
                    seq: h.seq,
                    consumer_id: h.consumer.id,
                };
                (d.take_unsettled_id(u), 0)
            }
        };
        d.scratch.clear();
        let body = mapping::write_for_amqp10(&h.msg, h.redelivered, &mut d.scratch);
        let total = d.scratch.len() + body.len();
        let (frames, next) = wire::write_transfer_part(
            cx.wbuf,
            self.channel,
            wire::TransferOut {
                handle,
                delivery_id,
                settled,
            },
            &d.scratch,
            body,
            cx.info.max_frame_out,
            from,
            self.remote_incoming_window,
        );
        self.next_outgoing_id = self.next_outgoing_id.wrapping_add(frames);
        self.remote_incoming_window = self.remote_incoming_window.saturating_sub(frames);
        (next < total).then_some(Held {
            started: Some((delivery_id, next)),
            ..h
        })
    }

    /// The peer's session window opened: send what waited for it.
    pub(super) fn send_pending(&mut self, cx: &mut SessCx) {
        while self.remote_incoming_window > 0 {
            let Some(h) = self.delivering.held.pop_front() else {
                break;
            };
            if let Some(rest) = self.send_transfer(h, cx) {
                self.delivering.held.push_front(rest);
                return;
            }
        }
        if self.delivering.held.is_empty() && !self.delivering.flows.is_empty() {
            for f in std::mem::take(&mut self.delivering.flows) {
                self.write_session_flow(cx.wbuf, Some(f));
            }
        }
    }

    /// The client settles deliveries `first..=last` with an outcome.
    pub(super) fn disposition(&mut self, d: wire::Disposition, cx: &mut SessCx) -> SessResult {
        if d.role != wire::ROLE_RECEIVER {
            // About transfers the client sent: we settle those ourselves.
            return Ok(false);
        }
        let outcome = wire::outcome(&d.state);
        if !d.settled {
            // An outcome the client has not settled: we settle it (RabbitMQ
            // 4 answers with a settled disposition of the same state).
            match &outcome {
                None => return Ok(false),
                Some(o) => {
                    let last = d.last.unwrap_or(d.first);
                    wire::write_disposition(
                        cx.wbuf,
                        self.channel,
                        wire::ROLE_SENDER,
                        d.first,
                        last,
                        true,
                        o,
                    );
                }
            }
        }
        let how = match &outcome {
            None | Some(wire::Outcome::Accepted) => Settle::Ack,
            Some(wire::Outcome::Released) => Settle::Requeue,
            Some(wire::Outcome::Rejected(_)) => Settle::Discard,
            Some(wire::Outcome::Modified {
                undeliverable_here, ..
            }) => {
                if *undeliverable_here {
                    Settle::Discard
                } else {
                    Settle::Requeue
                }
            }
        };
        let last = d.last.unwrap_or(d.first);
        let del = &mut self.delivering;
        // Only the ids we have: a range like 0..=u32::MAX costs what is
        // unsettled, not four billion steps.
        let (from, to) = (d.first.wrapping_sub(del.base), last.wrapping_sub(del.base));
        let len = del.unsettled.len() as u32;
        let span = if from <= to && from < len {
            from as usize..=(to.min(len.saturating_sub(1))) as usize
        } else {
            #[allow(clippy::reversed_empty_ranges)]
            {
                1..=0
            }
        };
        for i in span {
            if let Some(slot) = del.unsettled.get_mut(i) {
                if let Some(u) = slot.take() {
                    cx.ctx.outbox.push(
                        u.queue.shard,
                        ShardMsg::Settle {
                            queue: u.queue,
                            channel: self.me,
                            seq: u.seq,
                            how,
                            count: 1,
                        },
                    );
                }
            }
        }
        while del.unsettled.front().is_some_and(|u| u.is_none()) {
            del.unsettled.pop_front();
            del.base = del.base.wrapping_add(1);
        }
        Ok(false)
    }

    /// A consumer link goes (detach, or an error): cancel the consumer and
    /// give back what it has not settled.
    pub(super) fn close_outgoing(&mut self, l: OutLink, cx: &mut SessCx) {
        let consumer = ConsumerRef {
            channel: self.me,
            id: l.consumer_id,
        };
        cx.ctx.outbox.push(
            l.queue.shard,
            ShardMsg::Request {
                queue: l.queue,
                reply_to: None,
                op: QueueOp::Cancel { consumer },
            },
        );
        for slot in self.delivering.unsettled.iter_mut() {
            if slot.is_some_and(|u| u.consumer_id == l.consumer_id) {
                let u = slot.take().expect("checked");
                cx.ctx.outbox.push(
                    u.queue.shard,
                    ShardMsg::Settle {
                        queue: u.queue,
                        channel: self.me,
                        seq: u.seq,
                        how: Settle::Requeue,
                        count: 1,
                    },
                );
            }
        }
    }

    /// The queue of a consumer link was deleted: detach it.
    pub fn consumer_cancelled(&mut self, consumer_id: u32, wbuf: &mut Vec<u8>) {
        let Some(h) = self.out_link(consumer_id).map(|l| l.handle) else {
            return;
        };
        self.links[h as usize] = None;
        // The queue is gone with what it had delivered: nothing to settle.
        for slot in self.delivering.unsettled.iter_mut() {
            if slot.is_some_and(|u| u.consumer_id == consumer_id) {
                *slot = None;
            }
        }
        let e = Amqp10Error::new(cond::RESOURCE_DELETED, "");
        wire::write_detach(wbuf, self.channel, h, true, Some(&e));
    }

    /// Output drained: every queue a link consumes from may deliver again.
    pub fn resume_all(&mut self, ctx: &mut crate::core::ShardCtx) {
        for l in self.links.iter().flatten() {
            if let Link::Out(o) = l {
                ctx.outbox
                    .push(o.queue.shard, ShardMsg::Resume { queue: o.queue });
            }
        }
    }
}

impl OutLink {
    /// The client's flow for this link: credit for the queue.
    pub(super) fn flow(&mut self, f: &wire::Flow, me: ChannelRef, cx: &mut SessCx) {
        let op = QueueOp::Credit {
            consumer: ConsumerRef {
                channel: me,
                id: self.consumer_id,
            },
            delivery_count: f.delivery_count.unwrap_or(0),
            credit: f.link_credit.unwrap_or(0),
            drain: f.drain,
            echo: f.echo,
        };
        cx.ctx.outbox.push(
            self.queue.shard,
            ShardMsg::Request {
                queue: self.queue,
                reply_to: Some(Requester::Channel(me)),
                op,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(seq: u64) -> Unsettled {
        Unsettled {
            queue: QueueRef {
                shard: 0,
                slot: 0,
                gen: 1,
            },
            seq,
            consumer_id: 1,
        }
    }

    /// Settled deliveries and management responses between unsettled ones
    /// keep a slot each, so `unsettled[i]` is always delivery-id `base + i`.
    #[test]
    fn delivery_ids_stay_aligned_with_their_slots() {
        let mut d = Delivering::default();
        assert_eq!(d.take_delivery_id(), 0); // settled, nothing waits: no slot
        assert_eq!(d.take_unsettled_id(u(10)), 1);
        assert_eq!(d.take_delivery_id(), 2); // settled: a placeholder
        assert_eq!(d.take_unsettled_id(u(11)), 3);
        assert_eq!(d.base, 1);
        for (id, seq) in [(1u32, Some(10)), (2, None), (3, Some(11))] {
            let slot = d.unsettled[id.wrapping_sub(d.base) as usize];
            assert_eq!(slot.map(|s| s.seq), seq, "id {id}");
        }
    }
}
