//! A shard's statistics snapshot (`core::stats`), taken on its own thread
//! when the control path asks (`admin::stats`): the queues it owns, the
//! sessions it serves, its counters. Nothing here runs per message.

use super::session::Session;
use super::state::ShardState;
use crate::core::queue::ttl;
use crate::core::stats::{self, ShardSnapshot, Want};

impl ShardState {
    pub fn snapshot(&self, want: Want) -> ShardSnapshot {
        let ctx = &self.ctx;
        let mut out = ShardSnapshot {
            shard: ctx.id,
            totals: ctx.closed_channel_stats,
            churn: ctx.churn,
            msg_sizes: ctx.msg_sizes,
            ..ShardSnapshot::default()
        };
        let (now, wall) = (ttl::now_ms(), stats::wall_ms());
        for (_, q) in ctx.queues.iter() {
            out.queue_count += 1;
            out.messages_ready += q.message_count() as u64;
            out.messages_unacked += q.unacked_count() as u64;
            if want.queues {
                out.queues.push(q.snapshot(ctx.id, now, wall));
            }
        }
        if want.exchanges {
            ctx.routing.exchange_stats(&mut out.exchanges);
        }
        for (_, s) in self.conns.iter() {
            match s {
                Session::Amqp091(conn) => conn.snapshot(ctx, want, &mut out),
                Session::Amqp10(conn) => conn.snapshot(ctx, want, &mut out),
                Session::Sniffing(_) => {}
            }
        }
        out
    }

    /// Closes the connection named `name` (RabbitMQ's connection name) with
    /// 320 CONNECTION_FORCED - `reason`; false if this shard has no such
    /// connection.
    pub fn close_connection(&mut self, name: &str, reason: &str) -> bool {
        let (ctx, conns) = (&mut self.ctx, &mut self.conns);
        for (_, s) in conns.iter_mut() {
            match s {
                Session::Amqp091(conn) if conn.name() == name => {
                    conn.force_close(reason, ctx);
                    return true;
                }
                Session::Amqp10(conn) if conn.name() == name => {
                    conn.force_close(reason, ctx);
                    return true;
                }
                _ => {}
            }
        }
        false
    }
}
