//! What a consumer's channel sends back to a queue: settles (ack, nack,
//! reject; `ShardMsg::Settle`, a run of them merged into one), its going
//! away (`ShardMsg::ChannelGone`), and its moving to another shard with its
//! connection (`core::follow`: `ShardCtx::rehome_channel`); and the
//! requeue of what comes back.

use super::dead_letter::Reason;
use super::{After, MessageMeta, Queue, Stored, Unacked};
use crate::core::ids::ChannelRef;
use crate::core::outbox::Outbox;
use crate::core::shard_msg::Settle;

impl Queue {
    /// ack / nack / reject of `count` deliveries from `seq` on. Unknown
    /// sequence numbers are ignored: the channel validated the tag, so this
    /// can only be a message the queue already requeued because the channel
    /// went away.
    pub fn settle(
        &mut self,
        channel: ChannelRef,
        seq: u64,
        count: u32,
        how: Settle,
        out: &mut Outbox,
    ) {
        if let Some(st) = self.stream.as_mut() {
            // A stream removes nothing: every settle returns credit
            // (RabbitMQ 3.13; 3.10 closed the channel on nack and reject).
            let known = st.settle(channel, seq, count, how == Settle::Ack);
            if how == Settle::Ack {
                self.stats.ack += known;
            }
            self.dispatch(out);
            return;
        }
        for s in seq..seq + count as u64 {
            self.settle_one(channel, s, how);
        }
        self.dispatch(out);
    }

    fn settle_one(&mut self, channel: ChannelRef, seq: u64, how: Settle) {
        let Some(u) = self.unacked.remove(&seq) else {
            return;
        };
        if u.channel != channel {
            self.unacked.insert(seq, u);
            return;
        }
        self.unacked_bytes -= u.msg.body().len() as u64;
        if let Some(cr) = u.consumer {
            self.consumers.settled(cr);
        }
        match how {
            Settle::Requeue => {
                self.requeue(seq, u);
                self.after_requeue();
            }
            Settle::Ack => {
                self.stats.ack += 1;
                self.forget(seq, u.loc);
            }
            Settle::Discard => {
                self.forget(seq, u.loc);
                if self.features.dead_letter.is_some() {
                    self.dead.push((u.msg, Reason::Rejected));
                }
            }
        }
    }

    /// Channel `from` moved to another shard (`core::follow`) and is `to`
    /// now: its consumers and unacked deliveries are addressed there, and
    /// its held consumers go on.
    pub fn rehome_channel(&mut self, from: ChannelRef, to: ChannelRef, out: &mut Outbox) {
        if let Some(s) = self.stream.as_mut() {
            s.rehome(from, to);
            self.dispatch(out);
            return;
        }
        self.consumers.rehome(from, to);
        for u in self.unacked.values_mut() {
            if u.channel == from {
                u.channel = to;
                if let Some(c) = &mut u.consumer {
                    c.channel = to;
                }
            }
        }
        self.dispatch(out);
    }

    /// A channel closed: forget its consumers, requeue what it had not acked.
    pub fn channel_gone(&mut self, channel: ChannelRef, out: &mut Outbox) -> After {
        if let Some(s) = self.stream.as_mut() {
            s.channel_gone(channel);
            self.dispatch(out);
            return After::Nothing;
        }
        if self.consumers.remove_channel(channel) && self.consumers.is_empty() {
            self.touch();
        }
        let mut seqs: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.channel == channel)
            .map(|(s, _)| *s)
            .collect();
        seqs.sort_unstable();
        for &seq in &seqs {
            if let Some(u) = self.unacked.remove(&seq) {
                self.unacked_bytes -= u.msg.body().len() as u64;
                self.requeue(seq, u);
            }
        }
        if !seqs.is_empty() {
            self.after_requeue();
        }
        if self.auto_delete_due() {
            return After::Delete;
        }
        self.dispatch(out);
        After::Nothing
    }

    /// A delivered message comes back, to its place, marked redelivered.
    /// In a quorum queue it counts a delivery (`x-delivery-count`); one
    /// returned more often than `x-delivery-limit` leaves instead
    /// (`delivery_count.rs`).
    fn requeue(&mut self, seq: u64, mut u: Unacked) {
        if self.features.counts_deliveries {
            match self.count_delivery(seq, u) {
                Some(back) => u = back,
                None => return,
            }
        }
        // The level again: only a priority queue decodes the priority back
        // (the meta stayed with the publish; requeues are the rare path).
        let level = if self.ready.is_priority() {
            self.level_of(MessageMeta::from_amqp091(u.msg.properties()))
        } else {
            0
        };
        self.ready.requeue(
            level,
            Stored {
                seq,
                redelivered: true,
                msg: u.msg,
                loc: u.loc,
            },
        );
    }

    /// After requeues: limits and expiries apply to the messages back in the
    /// queue (RabbitMQ's `requeue_and_run`).
    fn after_requeue(&mut self) {
        if self.features.limited() {
            self.drop_head();
        }
        if !self.expiry.is_empty() {
            self.drop_expired(super::ttl::now_ms());
        }
    }
}
