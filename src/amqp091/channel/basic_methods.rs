//! basic.qos / consume / cancel / get / ack / nack / reject / recover.

use super::{Awaiting, ChanCx, ChanResult, Channel, ConsumerEntry, Flow, Unacked};
use crate::amqp091::error::AmqpError;
use crate::core::auth::permissions::Access;
use crate::core::ids::ConsumerRef;
use crate::core::shard_msg::{ConsumeMode, ConsumeSpec, QueueOp, Settle, ShardMsg};
use crate::protocol::methods::*;
use bytes::Bytes;
use std::sync::atomic::Ordering;

impl Channel {
    pub(super) fn basic_qos(&mut self, m: BasicQos, cx: &mut ChanCx) -> ChanResult {
        if m.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format!(
                "prefetch_size!=0 ({})",
                m.prefetch_size
            )));
        }
        let count = m.prefetch_count as u32;
        if m.global {
            let old = self.window.limit.swap(count, Ordering::AcqRel);
            if count == 0 || (old != 0 && count > old) {
                self.resume_window_queues(cx);
            }
        } else {
            self.consumer_prefetch = count;
            // RabbitMQ (3.8+) lifts the channel-wide limit on a per-consumer
            // basic.qos (`rabbit_limiter:unlimit_prefetch`): a global limit
            // holds only when set after the per-consumer one.
            if self.window.limit.swap(0, Ordering::AcqRel) != 0 {
                self.resume_window_queues(cx);
            }
        }
        self.send(cx, BasicQosOk {}.into());
        Ok(Flow::Continue)
    }

    pub(super) fn basic_consume(&mut self, m: BasicConsume, cx: &mut ChanCx) -> ChanResult {
        let name = self.resolve_queue_name(&m.queue)?;
        if name.as_bytes() == crate::amqp091::direct_reply::REPLY_TO {
            return self.consume_reply_to(m, cx);
        }
        let q = self.use_queue(Access::Read, &name, cx)?;
        let tag = if m.consumer_tag.is_empty() {
            Bytes::from(cx.ctx.rng.name("amq.ctag-"))
        } else {
            m.consumer_tag.clone()
        };
        if self.consumers.iter().any(|c| c.tag == tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{}'",
                String::from_utf8_lossy(&tag)
            )));
        }
        self.next_consumer_id += 1;
        let id = self.next_consumer_id;
        self.consumers.push(ConsumerEntry {
            id,
            tag: tag.clone(),
            queue: q.queue,
            no_ack: m.no_ack,
            info: Box::new(super::ConsumerInfo {
                queue_name: name.clone(),
                prefetch: self.consumer_prefetch,
                exclusive: m.exclusive,
                arguments: m.arguments.clone(),
            }),
        });
        self.touch(q.queue);
        let spec = ConsumeSpec {
            consumer: ConsumerRef {
                channel: self.me,
                id,
            },
            conn_uid: cx.info.uid,
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            mode: ConsumeMode::Prefetch(self.consumer_prefetch),
            window: self.window.clone(),
            output_full: cx.info.output_full.clone(),
            arguments: m.arguments,
            tag: tag.clone(),
        };
        let then = Awaiting::Consume {
            name,
            tag,
            id,
            nowait: m.nowait,
        };
        self.request(cx, q.queue, QueueOp::Consume(Box::new(spec)), then)
    }

    pub(super) fn basic_cancel(&mut self, m: BasicCancel, cx: &mut ChanCx) -> ChanResult {
        if self.cancel_reply_to(&m, cx) {
            return Ok(Flow::Continue);
        }
        let Some(c) = self.consumers.iter().find(|c| c.tag == m.consumer_tag) else {
            // RabbitMQ answers cancel-ok for an unknown tag.
            if !m.nowait {
                self.send(
                    cx,
                    BasicCancelOk {
                        consumer_tag: m.consumer_tag,
                    }
                    .into(),
                );
            }
            return Ok(Flow::Continue);
        };
        let (queue, id) = (c.queue, c.id);
        let op = QueueOp::Cancel {
            consumer: ConsumerRef {
                channel: self.me,
                id,
            },
        };
        self.request(
            cx,
            queue,
            op,
            Awaiting::Cancel {
                tag: m.consumer_tag,
                id,
                nowait: m.nowait,
            },
        )
    }

    pub(super) fn basic_get(&mut self, m: BasicGet, cx: &mut ChanCx) -> ChanResult {
        let name = self.resolve_queue_name(&m.queue)?;
        let q = self.use_queue(Access::Read, &name, cx)?;
        self.touch(q.queue);
        self.request(
            cx,
            q.queue,
            QueueOp::Get { no_ack: m.no_ack },
            Awaiting::Get {
                name,
                no_ack: m.no_ack,
            },
        )
    }

    pub(super) fn basic_ack(&mut self, m: BasicAck, cx: &mut ChanCx) -> ChanResult {
        self.settle(m.delivery_tag, m.multiple, Settle::Ack, cx)
    }

    pub(super) fn basic_nack(&mut self, m: BasicNack, cx: &mut ChanCx) -> ChanResult {
        let how = if m.requeue {
            Settle::Requeue
        } else {
            Settle::Discard
        };
        self.settle(m.delivery_tag, m.multiple, how, cx)
    }

    pub(super) fn basic_reject(&mut self, m: BasicReject, cx: &mut ChanCx) -> ChanResult {
        let how = if m.requeue {
            Settle::Requeue
        } else {
            Settle::Discard
        };
        self.settle(m.delivery_tag, false, how, cx)
    }

    /// basic.recover(requeue=true): every unacked delivery goes back to its queue.
    /// RabbitMQ does not implement requeue=false.
    pub(super) fn basic_recover(
        &mut self,
        requeue: bool,
        reply: bool,
        cx: &mut ChanCx,
    ) -> ChanResult {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        self.settle(0, true, Settle::Requeue, cx)?;
        if reply {
            self.send(cx, BasicRecoverOk {}.into());
        }
        Ok(Flow::Continue)
    }

    /// Removes the deliveries an ack/nack/reject names (tag 0 + multiple: all)
    /// and tells their queues. An unknown tag is a 406, as in RabbitMQ.
    fn settle(&mut self, tag: u64, multiple: bool, how: Settle, cx: &mut ChanCx) -> ChanResult {
        let upto = if multiple && tag == 0 {
            match self.unacked.back() {
                Some(u) => u.tag,
                None => return Ok(Flow::Continue),
            }
        } else {
            tag
        };
        let pos = self
            .unacked
            .binary_search_by_key(&upto, |u| u.tag)
            .map_err(|_| AmqpError::precondition(format!("unknown delivery tag {}", tag)))?;
        let mut freed = 0u32;
        if multiple {
            for _ in 0..=pos {
                let u = self.unacked.pop_front().unwrap();
                freed += u.windowed as u32;
                self.settle_one(u, how, cx);
            }
        } else {
            let u = self.unacked.remove(pos).unwrap();
            freed += u.windowed as u32;
            self.settle_one(u, how, cx);
        }
        // In a transaction the window opens at commit, when the acks happen.
        if freed > 0 && self.tx.is_none() && self.window.give_back(freed) {
            self.resume_window_queues(cx);
        }
        Ok(Flow::Continue)
    }

    fn settle_one(&mut self, u: Unacked, how: Settle, cx: &mut ChanCx) {
        match self.tx.as_mut() {
            Some(tx) => tx.settles.push((u, how)),
            None => self.send_settle(u, how, cx),
        }
    }

    pub(super) fn send_settle(&mut self, u: Unacked, how: Settle, cx: &mut ChanCx) {
        self.stats.ack += (how == Settle::Ack) as u64;
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

    /// The channel-wide window has room again: consumers' queues may deliver.
    pub(super) fn resume_window_queues(&mut self, cx: &mut ChanCx) {
        for c in &self.consumers {
            if !c.no_ack {
                cx.ctx
                    .outbox
                    .push(c.queue.shard, ShardMsg::Resume { queue: c.queue });
            }
        }
    }

    /// The connection's output drained: every consumer's queue may deliver.
    pub fn resume_all(&mut self, ctx: &mut crate::core::ShardCtx) {
        for c in &self.consumers {
            ctx.outbox
                .push(c.queue.shard, ShardMsg::Resume { queue: c.queue });
        }
    }
}
