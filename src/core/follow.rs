//! A publishing connection follows its queue to the queue's shard.
//!
//! A publish whose connection and queue sit on different shards crosses a
//! ring, and at low load every crossing wakes the queue's shard from its
//! poll: two wake-ups per message instead of one, the dearest thing a
//! message costs when it travels alone (see tuning.md, "Low load"). At full
//! load the crossing is cheap (batched) and welcome (the publisher's
//! parsing runs on another core), so only connections that publish at a
//! modest rate move.
//!
//! The same holds for a consumer whose queue is on another shard: every
//! delivery crosses a ring and wakes the consumer's shard. So a connection
//! whose queues (those it publishes to and those it consumes from) are all
//! on one other shard moves there.
//!
//! [`Follow`] watches where a connection's publishes go, and the front end
//! tells it where the connection consumes from ([`Consumes`]). It asks to
//! move when:
//! - every publish it sent off its shard since it arrived went to queues
//!   of one shard, the target (one remote shard ever: its earlier messages
//!   to any queue are then either enqueued already or in the ring to the
//!   target, ahead of the session itself, so per-queue order holds);
//! - it consumes from no queue, and the last [`MIN_STREAK`] publishes all
//!   went to the target; or it consumes from queues of the target only
//!   (and has published nowhere else off its shard);
//! - it published and was delivered at most the configured rate
//!   (`--follow-max-rate`) in the last tick, and did either at least once
//!   since it arrived.
//!
//! A publish routed to several shards, or to a second remote shard, ends
//! the watch for good (until the connection moves, which starts it again).
//! The cost on the publish path is a loop over the destination queues
//! (usually one) and two compares; on the delivery path, one add.
//!
//! How a consumer moves without losing a delivery in flight (its queues
//! hold its consumers first, `QueueOp::Hold`) is the front end's and the
//! shard layer's business: `amqp091::connection::moving`,
//! `shard::event_loop::Loop::move_sessions`.

use super::ids::QueueRef;

/// Consecutive publishes to the target shard before a move is asked for.
pub const MIN_STREAK: u32 = 8;

/// Moves a shard starts per tick (`ShardCtx::move_budget`). A move costs
/// the old shard some microseconds (a poll deregistration, the hold round
/// trips of a consumer), so 10,000 connections that become ready together
/// move over some seconds instead of stalling one iteration for tens of
/// milliseconds.
pub const MOVES_PER_TICK: u32 = 32;

/// No remote publish seen yet.
const NONE: u16 = u16::MAX;
/// Remote publishes went to more than one shard: never moves.
const MIXED: u16 = u16::MAX - 1;

/// Where one connection's publishes go.
#[derive(Debug)]
pub struct Follow {
    target: u16,
    streak: u32,
    /// Publishes and deliveries since the last tick.
    this_tick: u32,
    /// It published or was delivered something since it arrived.
    active: bool,
}

/// Where a connection consumes from (the queues that may hold its consumers
/// or unacked deliveries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumes {
    /// No queue.
    Nothing,
    /// Queues of this one other shard only.
    From(u16),
    /// Queues of its own shard, or of several shards: it stays.
    Elsewhere,
}

impl Consumes {
    /// Where the queues `queues` are, seen from shard `here`.
    pub fn of<'a>(here: u16, queues: impl IntoIterator<Item = &'a QueueRef>) -> Consumes {
        let mut c = Consumes::Nothing;
        for q in queues {
            c = match c {
                _ if q.shard == here => return Consumes::Elsewhere,
                Consumes::Nothing => Consumes::From(q.shard),
                Consumes::From(s) if s == q.shard => c,
                _ => return Consumes::Elsewhere,
            };
        }
        c
    }
}

impl Default for Follow {
    fn default() -> Follow {
        Follow {
            target: NONE,
            streak: 0,
            this_tick: 0,
            active: false,
        }
    }
}

impl Follow {
    /// One publish from shard `here`, routed to `dests`.
    #[inline]
    pub fn note(&mut self, here: u16, dests: &[QueueRef]) {
        self.this_tick = self.this_tick.saturating_add(1);
        self.active = true;
        if self.target == MIXED {
            return;
        }
        let mut shard = NONE;
        for q in dests {
            if q.shard == crate::core::definitions::REMOTE_SHARD {
                // To another node: the link carries it, wherever this
                // connection is; it stays.
                self.target = MIXED;
                return;
            }
            if shard == NONE {
                shard = q.shard;
            } else if q.shard != shard {
                shard = MIXED;
                break;
            }
        }
        if shard == NONE {
            // Routed nowhere: no message travels.
            return;
        }
        if shard == here {
            self.streak = 0;
        } else if shard == MIXED {
            self.target = MIXED;
        } else if self.target == NONE || self.target == shard {
            self.target = shard;
            self.streak = self.streak.saturating_add(1);
        } else {
            self.target = MIXED;
        }
    }

    /// One delivery to the connection.
    #[inline]
    pub fn delivered(&mut self) {
        self.this_tick = self.this_tick.saturating_add(1);
        self.active = true;
    }

    /// At the shard's tick: the shard this connection should move to, if
    /// it published and was delivered at most `max_per_tick` messages since
    /// the last tick.
    /// `consumes` is asked only for a connection that may move (not for an
    /// idle one: the tick visits every connection).
    pub fn wants(&mut self, max_per_tick: u32, consumes: impl FnOnce() -> Consumes) -> Option<u16> {
        let n = std::mem::take(&mut self.this_tick);
        if n > max_per_tick || !self.active || self.target == MIXED {
            return None;
        }
        match consumes() {
            Consumes::Nothing => {
                (self.target < MIXED && self.streak >= MIN_STREAK).then_some(self.target)
            }
            Consumes::From(s) => (self.target == NONE || self.target == s).then_some(s),
            Consumes::Elsewhere => None,
        }
    }

    /// Publishes and deliveries since the last `wants`. With none, `wants`
    /// answers as it did last time: what it looks at changes only with the
    /// connection's traffic and its client's consumes.
    pub fn traffic(&self) -> u32 {
        self.this_tick
    }

    /// The connection moved: watch afresh from its new shard.
    pub fn moved(&mut self) {
        *self = Follow::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(shard: u16) -> QueueRef {
        QueueRef {
            shard,
            slot: 0,
            gen: 0,
        }
    }

    #[test]
    fn a_streak_to_one_remote_shard_asks_to_move() {
        let mut f = Follow::default();
        for _ in 0..MIN_STREAK - 1 {
            f.note(0, &[q(1)]);
        }
        assert_eq!(f.wants(100, || Consumes::Nothing), None);
        f.note(0, &[q(1)]);
        assert_eq!(f.wants(100, || Consumes::Nothing), Some(1));
    }

    #[test]
    fn too_fast_does_not_move() {
        let mut f = Follow::default();
        for _ in 0..50 {
            f.note(0, &[q(1)]);
        }
        assert_eq!(f.wants(10, || Consumes::Nothing), None);
        // A quieter tick later: moves.
        f.note(0, &[q(1)]);
        assert_eq!(f.wants(10, || Consumes::Nothing), Some(1));
    }

    #[test]
    fn local_publishes_break_the_streak_but_not_the_target() {
        let mut f = Follow::default();
        for _ in 0..MIN_STREAK {
            f.note(0, &[q(1)]);
        }
        f.note(0, &[q(0)]);
        assert_eq!(f.wants(100, || Consumes::Nothing), None);
        for _ in 0..MIN_STREAK {
            f.note(0, &[q(1)]);
        }
        assert_eq!(f.wants(100, || Consumes::Nothing), Some(1));
    }

    #[test]
    fn two_remote_shards_never_move() {
        let mut f = Follow::default();
        f.note(0, &[q(2)]);
        for _ in 0..100 {
            f.note(0, &[q(1)]);
        }
        assert_eq!(f.wants(1000, || Consumes::Nothing), None);
        let mut g = Follow::default();
        for _ in 0..100 {
            g.note(0, &[q(1), q(2)]);
        }
        assert_eq!(g.wants(1000, || Consumes::Nothing), None);
        g.moved();
        for _ in 0..MIN_STREAK {
            g.note(1, &[q(2)]);
        }
        assert_eq!(g.wants(1000, || Consumes::Nothing), Some(2));
    }

    #[test]
    fn a_consumer_follows_its_queues_shard() {
        let mut f = Follow::default();
        // Idle since it arrived: stays.
        assert_eq!(f.wants(100, || Consumes::From(1)), None);
        f.delivered();
        assert_eq!(f.wants(100, || Consumes::From(1)), Some(1));
        // Publishing locally keeps it movable; publishing to another shard not.
        f.note(0, &[q(0)]);
        assert_eq!(f.wants(100, || Consumes::From(1)), Some(1));
        f.note(0, &[q(1)]);
        assert_eq!(f.wants(100, || Consumes::From(1)), Some(1));
        f.note(0, &[q(2)]);
        assert_eq!(f.wants(100, || Consumes::From(1)), None);
        assert_eq!(f.wants(100, || Consumes::Nothing), None);
    }

    #[test]
    fn where_a_connection_consumes() {
        assert_eq!(Consumes::of(0, &[]), Consumes::Nothing);
        assert_eq!(Consumes::of(0, &[q(1), q(1)]), Consumes::From(1));
        assert_eq!(Consumes::of(0, &[q(1), q(2)]), Consumes::Elsewhere);
        assert_eq!(Consumes::of(0, &[q(1), q(0)]), Consumes::Elsewhere);
    }

    #[test]
    fn unroutable_publishes_change_nothing() {
        let mut f = Follow::default();
        for _ in 0..MIN_STREAK {
            f.note(0, &[q(1)]);
            f.note(0, &[]);
        }
        assert_eq!(f.wants(100, || Consumes::Nothing), Some(1));
    }
}
