//! What queues send a 0-9-1 connection (deliveries, replies to its
//! requests, confirms, consumer cancellations and timeouts), handed to the
//! channel they address if it is still the same channel.

use super::{Connection, State, OUTPUT_HIGH_WATER, OUTPUT_LOW_WATER};
use crate::amqp091::channel::{ChanCx, Channel};
use crate::amqp091::direct_reply::NO_QUEUE;
use crate::amqp091::error::AmqpError;
use crate::core::ids::{ChannelRef, ConsumerRef, QueueRef};
use crate::core::ids::{ReplyAddress, Requester};
use crate::core::message::Message;
use crate::core::shard_msg::{ConfirmTag, QueueReply, ShardMsg};
use crate::core::ShardCtx;
use crate::protocol::methods::*;
use crate::protocol::write_method;
use std::sync::atomic::Ordering;

impl Connection {
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
        self.info.follow.delivered();
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
        if let QueueReply::Held = reply {
            // The connection's own request, not the channel's (`moving.rs`).
            self.held(ctx);
            return;
        }
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

    /// A queue accepted `count` messages this connection published in
    /// confirm mode, up to `tag.seq`.
    pub fn confirm(&mut self, tag: ConfirmTag, ok: bool, count: u32, ctx: &mut ShardCtx) {
        let slot = self.info.slot as usize;
        if let Some(chan) = self.channel_for(tag.channel) {
            let last = tag.seq.get();
            for seq in last + 1 - count as u64..=last {
                chan.on_confirm(seq, ok);
            }
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
}

/// `ShardMsg::DirectReply`: written to the reply consumer, if the connection,
/// its channel and the consumer are still there.
pub fn deliver_direct_reply(
    conn: Option<&mut Connection>,
    to: ReplyAddress,
    msg: Message,
    ctx: &mut ShardCtx,
) {
    if let Some(conn) = conn {
        conn.on_channel(to.channel, ctx, |ch, cx| ch.deliver_reply(to.key, &msg, cx));
    }
}

/// `ShardMsg::ReplyProbe`: does the reply consumer still exist? (passive
/// queue.declare of a reply address). Answers like a queue would.
pub fn probe_direct_reply(
    conn: Option<&mut Connection>,
    to: ReplyAddress,
    from: Requester,
    ctx: &mut ShardCtx,
) {
    let live = conn
        .and_then(|conn| conn.on_channel(to.channel, ctx, |ch, _| ch.has_reply_consumer(to.key)))
        .unwrap_or(false);
    let reply = if live {
        QueueReply::Status {
            messages: 0,
            consumers: 1,
        }
    } else {
        QueueReply::Gone
    };
    ctx.outbox.push(
        from.shard(),
        ShardMsg::Reply {
            to: from,
            queue: NO_QUEUE,
            reply,
        },
    );
}
