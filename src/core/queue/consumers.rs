//! A queue's consumers and which one gets the next message
//! (`rabbit_queue_consumers`):
//!
//! - Consumer priorities (`x-priority` consumer argument, default 0): the
//!   highest-priority consumers with room (prefetch, channel window, flow
//!   control) get messages; lower ones only while all higher ones are full.
//!   Among equal priorities, round-robin.
//! - Single active consumer (`x-single-active-consumer`): only `active` gets
//!   messages. The first consumer becomes active; when it goes, the next one
//!   by priority, then registration order, takes over.
//!
//! The list is kept sorted by priority, highest first, stable within a
//! priority. Without mixed priorities the round-robin is a moving index, as
//! before consumer priorities existed; with them, the consumer served moves
//! to the back of its priority group (RabbitMQ's priority queue of consumers).

use super::super::ids::{ChannelRef, ConsumerRef};
use super::super::outbox::Outbox;
use super::super::shard_msg::ChannelWindow;
use crate::core::error::CoreError;
use crate::core::vhost::resource;
use crate::protocol::FieldTable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub(super) struct Consumer {
    pub r: ConsumerRef,
    pub no_ack: bool,
    pub prefetch: u32,
    pub unacked: u32,
    pub window: Arc<ChannelWindow>,
    /// Set by the consumer's connection while its unsent output is too large.
    pub output_full: Arc<AtomicBool>,
    /// `x-priority`.
    pub priority: i64,
    /// Credit-paced (AMQP 1.0 link): `credit` left, and the link's
    /// delivery-count (deliveries sent plus credit drained, wrapping).
    pub credit: Option<Credit>,
    /// Its connection is moving to another shard (`Consumers::hold`): no
    /// message until it arrives.
    pub held: bool,
}

/// A credit-paced consumer's link state (`ConsumeMode::Credit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    pub credit: u32,
    pub delivery_count: u32,
}

impl Credit {
    /// A `flow` from the receiver: its delivery-count and the credit it
    /// grants from there (AMQP 1.0 2.6.7: `link-credit = delivery-count(rcv)
    /// + link-credit(rcv) - delivery-count(snd)`, never below 0).
    pub fn grant(&mut self, rcv_delivery_count: u32, rcv_credit: u32) {
        let end = rcv_delivery_count.wrapping_add(rcv_credit);
        let left = end.wrapping_sub(self.delivery_count);
        // Serial-number arithmetic: a "negative" difference means the
        // receiver's view is behind what was already sent.
        self.credit = if left <= i32::MAX as u32 { left } else { 0 };
    }

    /// One delivery spent one credit.
    #[inline]
    pub fn spend(&mut self) {
        self.credit = self.credit.saturating_sub(1);
        self.delivery_count = self.delivery_count.wrapping_add(1);
    }

    /// Drain: the credit left is used up without deliveries.
    pub fn drain(&mut self) {
        self.delivery_count = self.delivery_count.wrapping_add(self.credit);
        self.credit = 0;
    }
}

/// The outcome of looking for a consumer.
pub(super) enum Pick {
    /// This one (its window slot, if any, is taken).
    Consumer(usize),
    /// Nobody has room.
    None,
    /// Nobody has room, and some only because their shard is congested.
    Congested,
}

#[derive(Default)]
pub(super) struct Consumers {
    list: Vec<Consumer>,
    /// Round-robin position (all priorities equal).
    next: usize,
    /// Not all consumers have the same priority.
    mixed: bool,
    /// The queue has `x-single-active-consumer`.
    pub single_active: bool,
    /// The single active consumer.
    active: Option<ConsumerRef>,
    /// An exclusive consumer holds the queue.
    pub exclusive: bool,
    /// Channels whose consumers are held (`hold`), also those they add.
    held: Vec<ChannelRef>,
}

/// `x-priority` of a basic.consume: any integer type (RabbitMQ's
/// `check_int_arg`), 0 when absent.
pub(super) fn consumer_priority(
    vhost: &str,
    queue: &str,
    args: &FieldTable,
) -> Result<i64, CoreError> {
    match args.get("x-priority") {
        None => Ok(0),
        Some(v) => v.as_i64().ok_or_else(|| {
            CoreError::precondition(format!(
                "invalid arg 'x-priority' for {}: \"expected integer, got {}\"",
                resource(vhost, "queue", queue),
                v.type_name()
            ))
        }),
    }
}

impl Consumers {
    pub fn new(single_active: bool) -> Consumers {
        Consumers {
            single_active,
            ..Default::default()
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Adds a consumer after those of its priority or higher.
    pub fn add(&mut self, mut c: Consumer) {
        c.held = self.held.contains(&c.r.channel);
        let at = self
            .list
            .iter()
            .position(|x| x.priority < c.priority)
            .unwrap_or(self.list.len());
        if self.single_active && self.active.is_none() {
            self.active = Some(c.r);
        }
        self.list.insert(at, c);
        self.changed();
    }

    /// Removes the consumers `f` selects; true if any.
    pub fn remove_where(&mut self, f: impl Fn(&Consumer) -> bool) -> bool {
        let before = self.list.len();
        self.list.retain(|c| !f(c));
        if self.list.len() == before {
            return false;
        }
        // An exclusive consumer is the only one, so it was removed.
        self.exclusive = false;
        if self
            .active
            .is_some_and(|a| !self.list.iter().any(|c| c.r == a))
        {
            self.active = self.list.first().map(|c| c.r);
        }
        self.changed();
        true
    }

    pub fn remove(&mut self, r: ConsumerRef) -> bool {
        self.remove_where(|c| c.r == r)
    }

    pub fn remove_channel(&mut self, ch: ChannelRef) -> bool {
        self.held.retain(|h| *h != ch);
        self.remove_where(|c| c.r.channel == ch)
    }

    /// Channel `ch`'s connection is moving to another shard
    /// (`core::follow`): none of its consumers, present or added meanwhile,
    /// gets a message until `release` or `rehome`.
    pub fn hold(&mut self, ch: ChannelRef) {
        if !self.held.contains(&ch) {
            self.held.push(ch);
        }
        self.set_held(ch, true);
    }

    /// The move did not happen: channel `ch`'s consumers go on.
    pub fn release(&mut self, ch: ChannelRef) {
        self.held.retain(|h| *h != ch);
        self.set_held(ch, false);
    }

    /// Channel `from` arrived on its new shard as `to`: its consumers are
    /// addressed there, and go on.
    pub fn rehome(&mut self, from: ChannelRef, to: ChannelRef) {
        self.release(from);
        for c in &mut self.list {
            if c.r.channel == from {
                c.r.channel = to;
            }
        }
        if let Some(a) = &mut self.active {
            if a.channel == from {
                a.channel = to;
            }
        }
    }

    fn set_held(&mut self, ch: ChannelRef, held: bool) {
        for c in &mut self.list {
            if c.r.channel == ch {
                c.held = held;
            }
        }
    }

    fn changed(&mut self) {
        self.next = 0;
        self.mixed = self
            .list
            .first()
            .is_some_and(|f| self.list.iter().any(|c| c.priority != f.priority));
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Consumer {
        &mut self.list[i]
    }

    /// The consumer `r`, if it is here.
    pub fn find_mut(&mut self, r: ConsumerRef) -> Option<&mut Consumer> {
        self.list.iter_mut().find(|c| c.r == r)
    }

    /// A delivery or basic.get of `r` was settled.
    #[inline]
    pub fn settled(&mut self, r: ConsumerRef) {
        if let Some(c) = self.list.iter_mut().find(|c| c.r == r) {
            c.unacked = c.unacked.saturating_sub(1);
        }
    }

    /// Takes every consumer out (queue deletion).
    pub fn drain(&mut self) -> impl Iterator<Item = Consumer> + '_ {
        self.active = None;
        self.exclusive = false;
        self.next = 0;
        self.list.drain(..)
    }

    /// Finds the consumer for the next message.
    #[inline]
    pub fn pick(&mut self, out: &Outbox) -> Pick {
        let n = self.list.len();
        let mut congested = false;
        if self.single_active {
            let Some(i) = self
                .active
                .and_then(|a| self.list.iter().position(|c| c.r == a))
            else {
                return Pick::None;
            };
            return match ready(&self.list[i], out) {
                Ready::Yes => Pick::Consumer(i),
                Ready::No => Pick::None,
                Ready::Congested => Pick::Congested,
            };
        }
        for k in 0..n {
            // Mixed priorities: in list order (highest first); else round-robin.
            let i = if self.mixed { k } else { (self.next + k) % n };
            match ready(&self.list[i], out) {
                Ready::Yes => return Pick::Consumer(i),
                Ready::No => {}
                Ready::Congested => congested = true,
            }
        }
        if congested {
            Pick::Congested
        } else {
            Pick::None
        }
    }

    /// Consumer `i` was given a message: the next one is someone else's turn.
    #[inline]
    pub fn delivered(&mut self, i: usize) {
        if self.single_active {
            return;
        }
        if !self.mixed {
            self.next = (i + 1) % self.list.len();
            return;
        }
        let p = self.list[i].priority;
        let end = self.list[i..]
            .iter()
            .position(|c| c.priority != p)
            .map_or(self.list.len(), |e| i + e);
        self.list[i..end].rotate_left(1);
    }
}

enum Ready {
    Yes,
    No,
    Congested,
}

/// Whether a consumer can take a message now; takes a channel-window slot
/// when it can.
#[inline]
fn ready(c: &Consumer, out: &Outbox) -> Ready {
    // Flow control: a consumer whose connection cannot keep up, or whose
    // shard already has a full batch in flight, waits; so does one whose
    // connection is moving.
    if c.held || c.output_full.load(Ordering::Relaxed) {
        return Ready::No;
    }
    if out.is_congested(c.r.channel.shard) {
        return Ready::Congested;
    }
    // Link credit is all the pacing a credit consumer has (no channel-wide
    // window).
    if let Some(k) = c.credit {
        return if k.credit == 0 { Ready::No } else { Ready::Yes };
    }
    if c.no_ack {
        return Ready::Yes;
    }
    if c.prefetch != 0 && c.unacked >= c.prefetch {
        return Ready::No;
    }
    if !c.window.try_take() {
        return Ready::No;
    }
    Ready::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(id: u32, priority: i64, prefetch: u32) -> Consumer {
        Consumer {
            r: ConsumerRef {
                channel: ChannelRef {
                    shard: 0,
                    channel: 1,
                    conn_slot: 0,
                    incarnation: 1,
                },
                id,
            },
            no_ack: false,
            prefetch,
            unacked: 0,
            window: Arc::new(ChannelWindow::default()),
            output_full: Arc::new(AtomicBool::new(false)),
            priority,
            credit: None,
            held: false,
        }
    }

    /// Delivers `n` messages; returns the consumer ids in order.
    fn run(cs: &mut Consumers, n: usize) -> Vec<u32> {
        let out = Outbox::new(0, 1);
        let mut got = vec![];
        for _ in 0..n {
            match cs.pick(&out) {
                Pick::Consumer(i) => {
                    let c = cs.get_mut(i);
                    c.unacked += 1;
                    got.push(c.r.id);
                    cs.delivered(i);
                }
                _ => break,
            }
        }
        got
    }

    #[test]
    fn higher_priority_first_while_it_has_room_round_robin_among_equals() {
        let mut cs = Consumers::default();
        cs.add(consumer(1, 0, 0));
        cs.add(consumer(2, 10, 2));
        cs.add(consumer(3, 10, 2));
        cs.add(consumer(4, 5, 1));
        assert_eq!(run(&mut cs, 7), vec![2, 3, 2, 3, 4, 1, 1]);
    }

    #[test]
    fn equal_priorities_round_robin() {
        let mut cs = Consumers::default();
        for id in 1..=3 {
            cs.add(consumer(id, 0, 0));
        }
        assert_eq!(run(&mut cs, 5), vec![1, 2, 3, 1, 2]);
    }

    #[test]
    fn single_active_consumer_hands_over_in_order() {
        let mut cs = Consumers::new(true);
        cs.add(consumer(1, 0, 0));
        cs.add(consumer(2, 0, 0));
        cs.add(consumer(3, 0, 0));
        assert_eq!(run(&mut cs, 3), vec![1, 1, 1]);
        let r1 = cs.list[0].r;
        assert!(cs.remove(r1));
        assert_eq!(run(&mut cs, 2), vec![2, 2]);
        // removing a waiting consumer does not change the active one
        let r3 = cs.list.iter().find(|c| c.r.id == 3).unwrap().r;
        cs.remove(r3);
        assert_eq!(run(&mut cs, 1), vec![2]);
    }

    #[test]
    fn link_credit_follows_the_receivers_view() {
        let mut k = Credit {
            credit: 0,
            delivery_count: 0,
        };
        k.grant(0, 1);
        assert_eq!(k.credit, 1);
        k.spend();
        assert_eq!((k.credit, k.delivery_count), (0, 1));
        // The receiver granted 5 from delivery-count 0 before it saw the
        // first transfer: 4 are left.
        k.grant(0, 5);
        assert_eq!(k.credit, 4);
        // A stale view (behind what was sent) grants nothing.
        k.delivery_count = 10;
        k.grant(3, 2);
        assert_eq!(k.credit, 0);
        // Wrapping delivery-counts.
        k.delivery_count = u32::MAX;
        k.grant(u32::MAX - 1, 3);
        assert_eq!(k.credit, 2);
        k.drain();
        assert_eq!((k.credit, k.delivery_count), (0, 1));
    }
}
