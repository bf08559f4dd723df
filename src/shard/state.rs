//! A shard's whole state, and its message pump: the core's [`ShardCtx`] plus
//! the sessions (client connections) the shard serves.

use super::session::Session;
use crate::amqp091::connection::{self, Connection};
use crate::core::ids::{Requester, VhostId};
use crate::core::shard_msg::ShardMsg;
use crate::core::ShardCtx;
use slab::Slab;

/// A shard's whole state.
pub struct ShardState {
    pub ctx: ShardCtx,
    pub conns: Slab<Session>,
    /// Slots of sessions that moved here during this pump, for the event
    /// loop to register with its poll (`Loop::register_adopted`).
    pub adopted: Vec<usize>,
}

impl ShardState {
    pub fn new(ctx: ShardCtx) -> ShardState {
        ShardState {
            ctx,
            conns: Slab::new(),
            adopted: Vec::new(),
        }
    }

    /// The message pump: every ring message (and every message the shard sent
    /// itself) is handled here, one at a time. Messages for a queue go to the
    /// core; messages for a session endpoint go to the session in that slot.
    #[inline]
    pub fn handle(&mut self, msg: ShardMsg) {
        let (ctx, conns) = (&mut self.ctx, &mut self.conns);
        match msg {
            ShardMsg::Deliver {
                consumer,
                queue,
                seq,
                redelivered,
                msg,
            } => {
                match conns.get_mut(consumer.channel.conn_slot as usize) {
                    Some(Session::Amqp091(conn)) => {
                        conn.deliver(consumer, queue, seq, redelivered, msg, ctx)
                    }
                    Some(Session::Amqp10(conn)) => {
                        conn.deliver(consumer, queue, seq, redelivered, msg, ctx)
                    }
                    _ => {}
                }
                // A stale target is fine: the queue requeues everything of a
                // channel when it learns the channel is gone.
            }
            ShardMsg::Reply {
                to: Requester::Channel(to),
                queue,
                reply,
            } => match conns.get_mut(to.conn_slot as usize) {
                Some(Session::Amqp091(conn)) => conn.on_reply(to, queue, reply, ctx),
                Some(Session::Amqp10(conn)) => conn.on_reply(to, queue, reply, ctx),
                _ => {}
            },
            ShardMsg::Confirm { tag, ok, count } => {
                match conns.get_mut(tag.channel.conn_slot as usize) {
                    Some(Session::Amqp091(conn)) => conn.confirm(tag, ok, count, ctx),
                    Some(Session::Amqp10(conn)) => conn.confirm(tag, ok, count, ctx),
                    _ => {}
                }
            }
            ShardMsg::DirectReply { to, msg } => {
                let conn = amqp091(conns, to.channel.conn_slot);
                connection::deliver_direct_reply(conn, to, msg, ctx)
            }
            ShardMsg::ReplyProbe { to, from } => {
                let conn = amqp091(conns, to.channel.conn_slot);
                connection::probe_direct_reply(conn, to, from, ctx)
            }
            ShardMsg::ConsumerCancelled { consumer } => {
                match conns.get_mut(consumer.channel.conn_slot as usize) {
                    Some(Session::Amqp091(conn)) => conn.consumer_cancelled(consumer, ctx),
                    Some(Session::Amqp10(conn)) => conn.consumer_cancelled(consumer, ctx),
                    _ => {}
                }
            }
            ShardMsg::ConsumerTimeout {
                channel,
                timeout_ms,
            } => match conns.get_mut(channel.conn_slot as usize) {
                Some(Session::Amqp091(conn)) => conn.consumer_timed_out(channel, timeout_ms, ctx),
                Some(Session::Amqp10(conn)) => conn.consumer_timed_out(channel, timeout_ms, ctx),
                _ => {}
            },
            ShardMsg::Adopt(a) => match a.0.downcast::<Session>() {
                Ok(session) => {
                    let mut session = *session;
                    let slot = conns.vacant_key();
                    if let Session::Amqp091(conn) = &mut session {
                        conn.moved_in(slot as u32, ctx);
                    }
                    conns.insert(session);
                    self.adopted.push(slot);
                }
                Err(_) => log::error!("shard {}: adopted something not a session", ctx.id),
            },
            // Listed, not `_`: a new variant must be given a side here.
            msg @ (ShardMsg::Publish { .. }
            | ShardMsg::Request { .. }
            | ShardMsg::Settle { .. }
            | ShardMsg::ChannelGone { .. }
            | ShardMsg::Resume { .. }) => ctx.handle_queue_msg(msg),
            msg @ (ShardMsg::ReplicaAppend { .. }
            | ShardMsg::ReplicaGone { .. }
            | ShardMsg::ReplicaReset { .. }
            | ShardMsg::ReplicaBulkDone { .. }
            | ShardMsg::ReplicaSynced { .. }
            | ShardMsg::Replicated { .. }) => ctx.handle_replica_msg(msg),
        }
    }
}

impl ShardState {
    /// Vhost deletion, this shard's part: its connections on the vhost are
    /// closed (320 CONNECTION_FORCED) and its queues in the vhost deleted
    /// with their stored messages.
    pub fn close_vhost(&mut self, vhost: VhostId, text: &str) {
        let (ctx, conns) = (&mut self.ctx, &mut self.conns);
        for (_, s) in conns.iter_mut() {
            match s {
                Session::Amqp091(conn) if conn.info.counted && conn.info.access.vhost == vhost => {
                    conn.force_close(text, ctx)
                }
                Session::Amqp10(conn) if conn.info.counted && conn.info.access.vhost == vhost => {
                    conn.force_close(text, ctx)
                }
                _ => {}
            }
        }
        let doomed: Vec<_> = ctx
            .queues
            .iter()
            .filter(|(_, q)| q.props.vhost == vhost)
            .map(|(_, q)| q.me)
            .collect();
        for q in doomed {
            ctx.delete_queue(q);
        }
    }
}

impl ShardState {
    /// User deletion, this shard's part: the user's connections are closed
    /// (320 CONNECTION_FORCED - user 'u' is deleted), as RabbitMQ does.
    pub fn close_user(&mut self, user: &str, text: &str) {
        let (ctx, conns) = (&mut self.ctx, &mut self.conns);
        for (_, s) in conns.iter_mut() {
            match s {
                Session::Amqp091(conn) if conn.info.counted && conn.info.user == user => {
                    conn.force_close(text, ctx)
                }
                Session::Amqp10(conn) if conn.info.counted && conn.info.user == user => {
                    conn.force_close(text, ctx)
                }
                _ => {}
            }
        }
    }
}

/// The 0-9-1 connection in `slot`, if that slot holds one.
#[inline]
fn amqp091(conns: &mut Slab<Session>, slot: u32) -> Option<&mut Connection> {
    conns.get_mut(slot as usize).and_then(Session::amqp091)
}
