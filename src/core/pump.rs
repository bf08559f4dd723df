//! The queue side of a shard's message pump: ring messages addressed to a
//! queue this shard owns (publish, request, settle, channel gone, resume).
//! The shard's pump (`ShardState::handle`, above the core) sends everything
//! else to the session it names.

use super::ids::{ChannelRef, QueueRef, Requester};
use super::outbox::Outbox;
use super::persist;
use super::queue::After;
use super::shard_msg::{QueueOp, QueueReply, ShardMsg};
use super::ShardCtx;

impl ShardCtx {
    /// Handles one message for a queue of this shard. A message for a queue
    /// that is gone (stale `QueueRef`) is dropped, as RabbitMQ drops it; a
    /// request for one is answered `QueueReply::Gone`.
    #[inline]
    pub fn handle_queue_msg(&mut self, msg: ShardMsg) {
        let ctx = self;
        match msg {
            ShardMsg::Publish {
                queue,
                msg,
                meta,
                confirm,
            } => {
                let mut stored = false;
                let mut followup = false;
                let mut replica: Option<(u64, u64)> = None;
                if let Some(q) = ctx
                    .queues
                    .get_mut(queue.slot as usize)
                    .filter(|q| q.me == queue)
                {
                    if let Some(st) = q.stream.as_mut() {
                        // A stream keeps every message on disk: the confirm
                        // waits for the chunk's fsync (`end_store_iteration`).
                        let full = st.append(&msg);
                        q.stats.publish += 1;
                        if !st.listed {
                            st.listed = true;
                            ctx.streams_to_write.push(queue);
                        }
                        if let Some(tag) = confirm {
                            match ctx.store.as_mut() {
                                Some(store) => store.hold_confirm(tag, queue),
                                None => ctx.outbox.push(
                                    tag.channel.shard,
                                    ShardMsg::Confirm {
                                        tag,
                                        ok: true,
                                        count: 1,
                                    },
                                ),
                            }
                        }
                        if full {
                            ctx.write_stream(queue);
                        }
                        return;
                    }
                    if q.refuses(&msg) {
                        // x-overflow reject-publish(-dlx): nacked, not stored.
                        q.refuse(msg);
                        if q.has_followup() {
                            ctx.after_queue_op(queue);
                        }
                        if let Some(tag) = confirm {
                            nack(&mut ctx.outbox, tag);
                        }
                        return;
                    }
                    // A persistent message to a durable queue is written to the
                    // store first; its confirm waits for the batch's fsync.
                    let seq = q.next_seq();
                    if q.replicated {
                        replica = Some((q.props.store_id, seq));
                    }
                    let loc = match ctx.store.as_mut() {
                        Some(store) if q.persists(meta) => {
                            stored = true;
                            Some(store.append(&persist::Publish {
                                queue_id: q.props.store_id,
                                seq,
                                exchange: msg.exchange(),
                                routing_key: msg.routing_key(),
                                properties: msg.properties(),
                                body: msg.body(),
                                expires_at: q.stored_expiry(meta),
                            }))
                        }
                        _ => None,
                    };
                    if let Some((id, seq)) = replica.filter(|_| stored) {
                        // The followers get it before any consumer can ack it.
                        ctx.outbox.push(
                            crate::core::definitions::REMOTE_SHARD,
                            ShardMsg::ReplicaAppend {
                                store_id: id,
                                seq,
                                msg: msg.clone(),
                                meta,
                                to: 0,
                            },
                        );
                    }
                    q.publish(msg, meta, loc, &mut ctx.outbox);
                    if confirm.is_some() && !stored {
                        // Confirmed below, in this iteration: 0 µs held.
                        q.confirm_latency.record(0);
                    }
                    followup = q.has_followup();
                }
                if followup {
                    ctx.after_queue_op(queue);
                }
                // A message routed to a queue deleted meanwhile counts as handled,
                // as in RabbitMQ; one routed to a quorum queue this node no
                // longer leads is nacked (the new leader does not have it).
                if let Some(tag) = confirm.filter(|_| ctx.replicas.demoted.contains(&queue)) {
                    nack(&mut ctx.outbox, tag);
                    return;
                }
                if let Some(tag) = confirm {
                    match ctx.store.as_mut() {
                        Some(store) if stored => match replica {
                            Some((_, seq)) => store.hold_replicated_confirm(tag, queue, seq),
                            None => store.hold_confirm(tag, queue),
                        },
                        _ => ctx.outbox.push(
                            tag.channel.shard,
                            ShardMsg::Confirm {
                                tag,
                                ok: true,
                                count: 1,
                            },
                        ),
                    }
                }
            }
            ShardMsg::Request {
                queue,
                reply_to,
                op,
            } => {
                ctx.run_request(queue, op, reply_to, |out, reply| {
                    if let Some(to) = reply_to {
                        out.push(to.shard(), ShardMsg::Reply { to, queue, reply });
                    }
                });
            }
            ShardMsg::Settle {
                queue,
                channel,
                seq,
                how,
                count,
            } => {
                if let Some(q) = ctx
                    .queues
                    .get_mut(queue.slot as usize)
                    .filter(|q| q.me == queue)
                {
                    q.settle(channel, seq, count, how, &mut ctx.outbox);
                    if let Some(st) = q.stream.as_mut() {
                        // Tracked offsets moved: written at the iteration's end.
                        if st.offsets_dirty() && !st.listed {
                            st.listed = true;
                            ctx.streams_to_write.push(queue);
                        }
                    }
                    if q.has_followup() {
                        ctx.after_queue_op(queue);
                    }
                }
            }
            ShardMsg::ChannelGone { queue, channel } => {
                if let Some(q) = ctx
                    .queues
                    .get_mut(queue.slot as usize)
                    .filter(|q| q.me == queue)
                {
                    if q.channel_gone(channel, &mut ctx.outbox) == After::Delete {
                        // Requeued messages may have been dead-lettered
                        // (limits, TTL) before the auto-delete.
                        ctx.after_queue_op(queue);
                        ctx.delete_queue(queue);
                    } else if q.has_followup() {
                        ctx.after_queue_op(queue);
                    }
                }
            }
            ShardMsg::Resume { queue } => {
                if let Some(q) = ctx
                    .queues
                    .get_mut(queue.slot as usize)
                    .filter(|q| q.me == queue)
                {
                    q.resume(&mut ctx.outbox);
                    if q.has_followup() {
                        ctx.after_queue_op(queue);
                    }
                }
            }
            // The shard's pump gives every message for a session endpoint to
            // the session; none of these reaches here.
            ShardMsg::Deliver { .. }
            | ShardMsg::Reply { .. }
            | ShardMsg::ConsumerCancelled { .. }
            | ShardMsg::Confirm { .. }
            | ShardMsg::DirectReply { .. }
            | ShardMsg::ReplyProbe { .. }
            | ShardMsg::ConsumerTimeout { .. }
            | ShardMsg::Adopt(_) => {
                unreachable!("a session message reached the queue pump")
            }
            msg @ (ShardMsg::ReplicaAppend { .. }
            | ShardMsg::ReplicaGone { .. }
            | ShardMsg::ReplicaReset { .. }
            | ShardMsg::ReplicaBulkDone { .. }
            | ShardMsg::ReplicaSynced { .. }
            | ShardMsg::Replicated { .. }) => ctx.handle_replica_msg(msg),
        }
    }

    /// A channel moved here from another shard (`core::follow`): queue
    /// `queue` of this shard addresses its consumers and unacked deliveries
    /// to `to` instead of `from`.
    pub fn rehome_channel(&mut self, queue: QueueRef, from: ChannelRef, to: ChannelRef) {
        let Some(q) = self
            .queues
            .get_mut(queue.slot as usize)
            .filter(|q| q.me == queue)
        else {
            return;
        };
        q.rehome_channel(from, to, &mut self.outbox);
        if q.has_followup() {
            self.after_queue_op(queue);
        }
    }

    /// A request to queue `queue` of this shard from the control path (the
    /// management API's purge, delete, get): what a `ShardMsg::Request` does,
    /// with the answer returned instead of sent. `requester` is who the
    /// queue records an unacked basic.get against.
    pub fn request_here(
        &mut self,
        queue: QueueRef,
        op: QueueOp,
        requester: Option<Requester>,
    ) -> QueueReply {
        let mut answer = QueueReply::Gone;
        self.run_request(queue, op, requester, |_, reply| answer = reply);
        answer
    }

    /// Runs `op` on queue `queue` (`Queue::request`) and gives the reply to
    /// `answer` (`QueueReply::Gone` if the queue is gone) before the queue
    /// goes on: a consume-ok is sent before the first delivery.
    fn run_request(
        &mut self,
        queue: QueueRef,
        op: QueueOp,
        reply_to: Option<Requester>,
        answer: impl FnOnce(&mut Outbox, QueueReply),
    ) {
        let ctx = self;
        let Some(q) = ctx
            .queues
            .get_mut(queue.slot as usize)
            .filter(|q| q.me == queue)
        else {
            // A flow for a deleted queue needs no answer (its link is
            // detached by the ConsumerCancelled already on its way).
            // A gone queue holds no consumer: held.
            match op {
                QueueOp::Credit { .. } => {}
                QueueOp::Hold { .. } => answer(&mut ctx.outbox, QueueReply::Held),
                _ => answer(&mut ctx.outbox, QueueReply::Gone),
            }
            return;
        };
        if let QueueOp::Credit {
            consumer,
            delivery_count,
            credit,
            drain,
            echo,
        } = op
        {
            // Deliveries first, then the answer, so the link's flow frame
            // follows the transfers it accounts for.
            let reply = q.credit(consumer, delivery_count, credit, drain, &mut ctx.outbox);
            if drain || echo {
                if let Some(reply) = reply {
                    answer(&mut ctx.outbox, reply);
                }
            }
            if q.has_followup() {
                ctx.after_queue_op(queue);
            }
            return;
        }
        let (reply, after) = q.request(op, reply_to);
        answer(&mut ctx.outbox, reply);
        match after {
            After::Delete => ctx.delete_queue(queue),
            After::Nothing => {
                q.dispatch(&mut ctx.outbox);
                if q.has_followup() {
                    ctx.after_queue_op(queue);
                }
            }
        }
    }
}

/// A publisher confirm, negative, for one message.
fn nack(out: &mut super::outbox::Outbox, tag: crate::core::shard_msg::ConfirmTag) {
    out.push(
        tag.channel.shard,
        ShardMsg::Confirm {
            tag,
            ok: false,
            count: 1,
        },
    );
}
