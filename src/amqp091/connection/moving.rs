//! A 0-9-1 connection moving to another shard: a connection following its
//! queues (`core::follow`). The connection asks at its tick
//! (`ask_to_follow`); the shard layer moves it only while `can_move` holds
//! (`Loop::move_sessions`), and the new shard gives it its new address
//! (`moved_in`).
//!
//! Whatever another shard sends to the connection's old address after it
//! left is lost, so nothing may be on its way when it goes:
//! - no request waits for a queue's answer, no publish for its confirm, no
//!   transaction, no reply consumer, no close under way
//!   (`Channel::is_portable`); no exclusive queue (it stays with them);
//! - no delivery: a connection that consumes first asks each queue its
//!   channels touched to hold their consumers (`QueueOp::Hold`, also
//!   consumers added meanwhile). A queue answers `Held` behind every
//!   delivery it already sent, so once every answer is in, nothing is in
//!   flight; the connection asks to move. If it cannot (a new queue was
//!   touched, a request started, the target is busy), the shard layer
//!   calls `cancel_move` and the queues release it (`QueueOp::Release`).
//!
//! On the new shard, which owns all those queues, `moved_in` gives every
//! channel a new address and has each queue readdress its consumers and
//! unacked deliveries there (`ShardCtx::rehome_channel`), which lifts the
//! hold. Acks sent before the move travel in the ring ahead of the
//! connection, so they reach the queue first.
//!
//! Not covered: a queue deleted, or a delivery timing out, in the instant
//! between the last `Held` and the arrival on the new shard sends its
//! basic.cancel (or channel close) to the old address, where it is lost.

use super::{Connection, State};
use crate::core::follow::Consumes;
use crate::core::ids::{ChannelRef, QueueRef, Requester};
use crate::core::shard_msg::{QueueOp, ShardMsg};
use crate::core::{ShardCtx, TICK};

/// A move under way: the queues asked to hold the connection's consumers.
pub(super) struct Moving {
    to: u16,
    /// `Held` answers still to come.
    pending: usize,
    /// Every (channel, queue) pair asked to hold.
    held: Vec<(ChannelRef, QueueRef)>,
}

impl Connection {
    /// At the tick: if its traffic calls for it, starts the connection's
    /// move to its queues' shard.
    ///
    /// Returns whether it is settled: it will not ask until it has traffic
    /// again (or its client consumes), so its next tick may wait.
    pub(super) fn ask_to_follow(&mut self, ctx: &mut ShardCtx) -> bool {
        let rate = ctx.config.follow_max_rate;
        if rate == 0 || self.sock.stay {
            return true;
        }
        if self.moving.is_some() || ctx.move_budget == 0 {
            return false;
        }
        let quiet = self.info.follow.traffic() == 0;
        let per_tick = (rate as u64 * TICK.as_millis() as u64 / 1000) as u32;
        let mut consumes = Consumes::Nothing;
        let here = ctx.id;
        let channels = &self.channels;
        let wants = self.info.follow.wants(per_tick, || {
            consumes = Consumes::of(here, channels.iter().flatten().flat_map(|c| c.touched()));
            consumes
        });
        let Some(to) = wants else {
            return quiet;
        };
        ctx.move_budget -= 1;
        if consumes == Consumes::Nothing {
            ctx.moves.push((self.info.slot as usize, to));
            return false;
        }
        if !self.can_move_now() {
            return false;
        }
        let held: Vec<(ChannelRef, QueueRef)> = self
            .channels
            .iter()
            .flatten()
            .flat_map(|c| c.touched().iter().map(|q| (c.me, *q)))
            .collect();
        for &(channel, queue) in &held {
            ctx.outbox.push(
                queue.shard,
                ShardMsg::Request {
                    queue,
                    reply_to: Some(Requester::Channel(channel)),
                    op: QueueOp::Hold { channel },
                },
            );
        }
        self.moving = Some(Moving {
            to,
            pending: held.len(),
            held,
        });
        false
    }

    /// A queue holds the connection's consumers; once all do, asks to move.
    pub(super) fn held(&mut self, ctx: &mut ShardCtx) {
        if let Some(m) = &mut self.moving {
            m.pending = m.pending.saturating_sub(1);
            if m.pending == 0 {
                ctx.moves.push((self.info.slot as usize, m.to));
            }
        }
    }

    /// Nothing addressed to this connection can be on its way from another
    /// shard: it may move.
    pub fn can_move(&self) -> bool {
        if !self.can_move_now() {
            return false;
        }
        match &self.moving {
            None => self
                .channels
                .iter()
                .flatten()
                .all(|c| c.touched().is_empty()),
            Some(m) => {
                m.pending == 0
                    && self
                        .channels
                        .iter()
                        .flatten()
                        .all(|c| c.touched().iter().all(|q| m.held.contains(&(c.me, *q))))
            }
        }
    }

    /// What must hold for a move whatever the connection consumes.
    fn can_move_now(&self) -> bool {
        self.state == State::Running
            && self.waiting.is_none()
            && !self.lingering
            && self.info.exclusive_queues.is_empty()
            && self.channels.iter().flatten().all(|c| c.is_portable())
    }

    /// The move is off: the queues holding its consumers let them go on.
    pub fn cancel_move(&mut self, ctx: &mut ShardCtx) {
        let Some(m) = self.moving.take() else {
            return;
        };
        for (channel, queue) in m.held {
            ctx.outbox.push(
                queue.shard,
                ShardMsg::Request {
                    queue,
                    reply_to: None,
                    op: QueueOp::Release { channel },
                },
            );
        }
    }

    /// The connection arrived on this shard in connection slot `slot`: its
    /// channels take addresses here (fresh incarnations: the ones they had
    /// are unique only on the shard that issued them), and the queues they
    /// touched, all on this shard, readdress their consumers and unacked
    /// deliveries and go on delivering.
    pub fn moved_in(&mut self, slot: u32, ctx: &mut ShardCtx) {
        self.info.slot = slot;
        self.info.follow.moved();
        self.moving = None;
        for chan in self.channels.iter_mut().flatten() {
            let from = chan.me;
            let to = ChannelRef {
                shard: ctx.id,
                channel: from.channel,
                conn_slot: slot,
                incarnation: ctx.next_incarnation(),
            };
            chan.moved(to);
            for &q in chan.touched() {
                if q.shard == ctx.id {
                    ctx.rehome_channel(q, from, to);
                }
            }
        }
    }
}
