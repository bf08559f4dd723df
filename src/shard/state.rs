//! A shard's whole state, and its message pump: the core's [`ShardCtx`] plus
//! the sessions (client connections) the shard serves.

use crate::amqp091::connection::Connection;
use crate::amqp091::direct_reply;
use crate::core::shard_msg::ShardMsg;
use crate::core::ShardCtx;
use slab::Slab;

/// A shard's whole state.
pub struct ShardState {
    pub ctx: ShardCtx,
    pub conns: Slab<Connection>,
}

impl ShardState {
    pub fn new(ctx: ShardCtx) -> ShardState {
        ShardState {
            ctx,
            conns: Slab::new(),
        }
    }

    /// The message pump: every ring message (and every message the shard sent
    /// itself) is handled here, one at a time. Messages for a queue go to the
    /// core; messages for a session endpoint go to the session in that slot.
    #[inline]
    pub fn handle(&mut self, msg: ShardMsg) {
        let ctx = &mut self.ctx;
        match msg {
            ShardMsg::Deliver {
                consumer,
                queue,
                seq,
                redelivered,
                msg,
            } => {
                let slot = consumer.channel.conn_slot as usize;
                if let Some(conn) = self.conns.get_mut(slot) {
                    conn.deliver(consumer, queue, seq, redelivered, msg, ctx);
                }
                // A stale target is fine: the queue requeues everything of a
                // channel when it learns the channel is gone.
            }
            ShardMsg::Reply { to, queue, reply } => {
                if let Some(conn) = self.conns.get_mut(to.conn_slot as usize) {
                    conn.on_reply(to, queue, reply, ctx);
                }
            }
            ShardMsg::Confirm { tag, ok } => {
                if let Some(conn) = self.conns.get_mut(tag.channel.conn_slot as usize) {
                    conn.confirm(tag, ok, ctx);
                }
            }
            ShardMsg::DirectReply { to, msg } => {
                let conn = self.conns.get_mut(to.channel.conn_slot as usize);
                direct_reply::deliver(conn, to, msg, ctx)
            }
            ShardMsg::ReplyProbe { to, from } => {
                let conn = self.conns.get_mut(to.channel.conn_slot as usize);
                direct_reply::probe(conn, to, from, ctx)
            }
            ShardMsg::ConsumerCancelled { consumer } => {
                if let Some(conn) = self.conns.get_mut(consumer.channel.conn_slot as usize) {
                    conn.consumer_cancelled(consumer, ctx);
                }
            }
            ShardMsg::ConsumerTimeout {
                channel,
                timeout_ms,
            } => {
                if let Some(conn) = self.conns.get_mut(channel.conn_slot as usize) {
                    conn.consumer_timed_out(channel, timeout_ms, ctx);
                }
            }
            other => ctx.handle_queue_msg(other),
        }
    }
}
