//! A queue's runtime state: its messages, the messages delivered but not yet
//! acknowledged, and its consumers. A queue lives on exactly one shard and is
//! touched only by that shard's thread; everyone else talks to it with
//! `ShardMsg`s (publish, settle, requests).
//!
//! Ordering: every message gets a sequence number on arrival. Delivery is in
//! sequence order; a requeued message goes back to its original place (the
//! requeued messages, ordered by sequence number, are always served before the
//! never-delivered ones in the `Backlog`, whose numbers are all higher), with
//! `redelivered` set. The backlog pages its tail out to disk beyond the
//! queue's in-memory limit (`backlog`).

use super::backlog::{Backlog, PagingConfig, Stored};
use super::error::AmqpError;
use super::ids::{ChannelRef, ConsumerRef, QueueRef};
use super::message::Message;
use super::outbox::Outbox;
use super::shard_msg::{ChannelWindow, ConsumeSpec, QueueOp, QueueReply, Settle, ShardMsg};
use crate::protocol::FieldTable;
use crate::store::segments::Location;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Hasher for sequence-number keys: they are already unique integers.
#[derive(Default)]
pub struct SeqHasher(u64);
impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | *b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Spread the bits a little so sequential keys use the whole table.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

struct Unacked {
    msg: Message,
    loc: Option<Location>,
    channel: ChannelRef,
    /// None for basic.get deliveries.
    consumer: Option<ConsumerRef>,
}

struct Consumer {
    r: ConsumerRef,
    no_ack: bool,
    prefetch: u32,
    unacked: u32,
    window: Arc<ChannelWindow>,
    /// Set by the consumer's connection while its unsent output is too large.
    output_full: Arc<AtomicBool>,
    /// Consumer arguments as given (x-priority is read by the extensions work).
    #[allow(dead_code)]
    arguments: FieldTable,
}

/// Immutable properties fixed at declaration.
#[derive(Clone, Debug)]
pub struct QueueProps {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive_owner: Option<u64>,
    pub arguments: FieldTable,
    /// Stable id of a durable, non-exclusive queue (`QueueDef::store_id`; 0
    /// for any other): the same after a restart, never reused.
    pub store_id: u64,
}

pub struct Queue {
    pub me: QueueRef,
    pub props: QueueProps,
    /// Never-delivered messages (head in memory, tail maybe on disk).
    ready: Backlog,
    /// Requeued messages by sequence number: served first.
    requeued: BTreeMap<u64, Stored>,
    unacked: SeqMap<Unacked>,
    consumers: Vec<Consumer>,
    /// Round-robin position in `consumers`.
    next_consumer: usize,
    next_seq: u64,
    /// An exclusive consumer holds the queue.
    exclusive_consumer: bool,
    /// Auto-delete applies only once a consumer has come and gone.
    had_consumer: bool,
    /// Already in the outbox's stalled list (listed once, however many
    /// publishes find the destination congested).
    stalled: bool,
    /// Stored messages that left the queue for good since the shard last
    /// looked (`take_gone`): their acks go to the message store.
    gone: Vec<(u64, Location)>,
}

/// What the owning shard must do after a queue operation.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Nothing,
    /// The queue deleted itself (auto-delete) or was deleted: drop it.
    Delete,
}

impl Queue {
    /// A new, empty queue; `paging` None keeps all its messages in memory.
    pub fn new(me: QueueRef, props: QueueProps, paging: Option<Arc<PagingConfig>>) -> Queue {
        Queue {
            me,
            props,
            ready: Backlog::new(paging, format!("q{}-{}", me.slot, me.gen)),
            requeued: BTreeMap::new(),
            unacked: SeqMap::default(),
            consumers: Vec::new(),
            next_consumer: 0,
            next_seq: 1,
            exclusive_consumer: false,
            had_consumer: false,
            stalled: false,
            gone: Vec::new(),
        }
    }

    /// A message the shard must write to its store before `publish_stored`:
    /// persistent (delivery mode 2) and routed to a durable queue.
    #[inline]
    pub fn persists(&self, msg: &Message) -> bool {
        self.props.store_id != 0
            && crate::protocol::properties::raw_delivery_mode(&msg.properties) == Some(2)
    }

    /// The sequence number the next published message will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Stored messages left the queue since the last `take_gone` (never for
    /// a non-durable queue): the shard has store acks to write.
    #[inline]
    pub fn has_gone(&self) -> bool {
        !self.gone.is_empty()
    }

    /// Stored messages gone for good since the last call (their store acks).
    pub fn take_gone(&mut self, into: &mut Vec<(u64, Location)>) {
        into.append(&mut self.gone);
    }

    /// Locations of every stored message the queue holds (deletion).
    pub fn stored_locations(&self) -> Vec<Location> {
        let mut locs: Vec<Location> = self
            .requeued
            .values()
            .filter_map(|s| s.loc)
            .chain(self.unacked.values().filter_map(|u| u.loc))
            .collect();
        self.ready.locations(|l| locs.push(l));
        locs
    }

    /// The store location of message `seq` if the queue holds it in memory
    /// (ready, requeued or unacked): compaction moves it. None for a message
    /// gone or paged out (its page-file copy names the old location, so it
    /// cannot move).
    pub fn stored_loc_mut(&mut self, seq: u64) -> Option<&mut Location> {
        if let Some(u) = self.unacked.get_mut(&seq) {
            return u.loc.as_mut();
        }
        if let Some(s) = self.requeued.get_mut(&seq) {
            return s.loc.as_mut();
        }
        self.ready.get_mut(seq).and_then(|s| s.loc.as_mut())
    }

    /// Messages recovered from the store at boot, in sequence order: they are
    /// delivered first, marked redelivered (they may have been delivered
    /// before the restart).
    pub fn recover(&mut self, msgs: impl IntoIterator<Item = (u64, Location, Message)>) {
        for (seq, loc, msg) in msgs {
            if seq < self.next_seq {
                continue; // a duplicate (the list is in seq order): keep the first
            }
            self.ready.push_back(Stored {
                seq,
                redelivered: true,
                msg,
                loc: Some(loc),
            });
            self.next_seq = self.next_seq.max(seq + 1);
        }
    }

    pub fn message_count(&self) -> u32 {
        (self.ready.len() + self.requeued.len()) as u32
    }

    /// Messages only on disk (paged out).
    pub fn paged_count(&self) -> usize {
        self.ready.paged()
    }

    pub fn consumer_count(&self) -> u32 {
        self.consumers.len() as u32
    }

    /// A routed message arrives (`loc`: where the shard stored it, if it
    /// `persists`; it was stored with sequence number `next_seq`).
    #[inline]
    pub fn publish(&mut self, msg: Message, loc: Option<Location>, out: &mut Outbox) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ready.push_back(Stored {
            seq,
            redelivered: false,
            msg,
            loc,
        });
        if !self.consumers.is_empty() {
            self.dispatch(out);
        }
    }

    fn pop_next(&mut self) -> Option<Stored> {
        if let Some((_, s)) = self.requeued.pop_first() {
            return Some(s);
        }
        self.ready.pop_front()
    }

    fn has_messages(&self) -> bool {
        !self.ready.is_empty() || !self.requeued.is_empty()
    }

    /// A `Resume`: the queue is off the outbox's stalled list (if it was on it)
    /// and tries again.
    pub fn resume(&mut self, out: &mut Outbox) {
        self.stalled = false;
        self.dispatch(out);
    }

    /// Hands messages to consumers with room in their prefetch windows,
    /// round-robin.
    pub fn dispatch(&mut self, out: &mut Outbox) {
        let n = self.consumers.len();
        if n == 0 {
            return;
        }
        while self.has_messages() {
            let mut chosen = None;
            let mut congested = false;
            for i in 0..n {
                let idx = (self.next_consumer + i) % n;
                let c = &self.consumers[idx];
                // Flow control: a consumer whose connection cannot keep up, or
                // whose shard already has a full batch in flight, waits.
                if c.output_full.load(Ordering::Relaxed) {
                    continue;
                }
                if out.is_congested(c.r.channel.shard) {
                    congested = true;
                    continue;
                }
                if c.no_ack {
                    chosen = Some(idx);
                    break;
                }
                if c.prefetch != 0 && c.unacked >= c.prefetch {
                    continue;
                }
                if !c.window.try_take() {
                    continue;
                }
                chosen = Some(idx);
                break;
            }
            let Some(idx) = chosen else {
                if congested && !self.stalled {
                    self.stalled = true;
                    out.stalled.push(self.me);
                }
                return;
            };
            self.next_consumer = (idx + 1) % n;
            let s = self.pop_next().expect("has_messages");
            let c = &mut self.consumers[idx];
            let consumer = c.r;
            if !c.no_ack {
                c.unacked += 1;
                self.unacked.insert(
                    s.seq,
                    Unacked {
                        msg: s.msg.clone(),
                        loc: s.loc,
                        channel: consumer.channel,
                        consumer: Some(consumer),
                    },
                );
            } else if let Some(loc) = s.loc {
                self.gone.push((s.seq, loc));
            }
            out.push(
                consumer.channel.shard,
                ShardMsg::Deliver {
                    consumer,
                    queue: self.me,
                    seq: s.seq,
                    redelivered: s.redelivered,
                    msg: s.msg,
                },
            );
        }
    }

    /// ack / nack / reject of one delivery. Unknown sequence numbers are ignored:
    /// the channel validated the tag, so this can only be a message the queue
    /// already requeued because the channel went away.
    pub fn settle(&mut self, channel: ChannelRef, seq: u64, how: Settle, out: &mut Outbox) {
        let Some(u) = self.unacked.remove(&seq) else {
            return;
        };
        if u.channel != channel {
            self.unacked.insert(seq, u);
            return;
        }
        if let Some(cr) = u.consumer {
            if let Some(c) = self.consumers.iter_mut().find(|c| c.r == cr) {
                c.unacked = c.unacked.saturating_sub(1);
            }
        }
        if how == Settle::Requeue {
            self.requeued.insert(
                seq,
                Stored {
                    seq,
                    redelivered: true,
                    msg: u.msg,
                    loc: u.loc,
                },
            );
        } else if let Some(loc) = u.loc {
            self.gone.push((seq, loc));
        }
        self.dispatch(out);
    }

    /// A channel closed: forget its consumers, requeue what it had not acked.
    pub fn channel_gone(&mut self, channel: ChannelRef, out: &mut Outbox) -> After {
        let before = self.consumers.len();
        self.consumers.retain(|c| c.r.channel != channel);
        if self.consumers.len() != before {
            self.exclusive_consumer = false;
            self.next_consumer = 0;
        }
        let mut seqs: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.channel == channel)
            .map(|(s, _)| *s)
            .collect();
        seqs.sort_unstable();
        for seq in seqs {
            if let Some(u) = self.unacked.remove(&seq) {
                self.requeued.insert(
                    seq,
                    Stored {
                        seq,
                        redelivered: true,
                        msg: u.msg,
                        loc: u.loc,
                    },
                );
            }
        }
        if self.auto_delete_due() {
            return After::Delete;
        }
        self.dispatch(out);
        After::Nothing
    }

    fn auto_delete_due(&self) -> bool {
        self.props.auto_delete && self.had_consumer && self.consumers.is_empty()
    }

    /// Handles a synchronous request; returns the reply and what to do next. The
    /// caller sends the reply and then calls `dispatch`, so a consume-ok reaches
    /// the client before the consumer's first delivery.
    pub fn request(&mut self, op: QueueOp, reply_to: Option<ChannelRef>) -> (QueueReply, After) {
        match op {
            QueueOp::Status => (
                QueueReply::Status {
                    messages: self.message_count(),
                    consumers: self.consumer_count(),
                },
                After::Nothing,
            ),
            QueueOp::Purge => {
                // Purge removes ready messages only; unacked ones stay unacked.
                let n = self.message_count();
                let gone = &mut self.gone;
                let mut drop = |s: Stored| {
                    if let Some(loc) = s.loc {
                        gone.push((s.seq, loc));
                    }
                };
                for (_, s) in std::mem::take(&mut self.requeued) {
                    drop(s);
                }
                self.ready.drain_each(drop);
                (QueueReply::Purged { messages: n }, After::Nothing)
            }
            QueueOp::Delete {
                if_unused,
                if_empty,
            } => {
                if if_unused && !self.consumers.is_empty() {
                    let e = AmqpError::precondition(format!(
                        "queue '{}' in vhost '/' in use",
                        self.props.name
                    ));
                    return (QueueReply::from(e), After::Nothing);
                }
                if if_empty && self.message_count() > 0 {
                    let e = AmqpError::precondition(format!(
                        "queue '{}' in vhost '/' not empty",
                        self.props.name
                    ));
                    return (QueueReply::from(e), After::Nothing);
                }
                (
                    QueueReply::Deleted {
                        messages: self.message_count(),
                    },
                    After::Delete,
                )
            }
            QueueOp::Consume(spec) => self.consume(spec),
            QueueOp::Cancel { consumer } => {
                let before = self.consumers.len();
                self.consumers.retain(|c| c.r != consumer);
                if self.consumers.len() != before {
                    // An exclusive consumer is the only one, so it was this one.
                    self.exclusive_consumer = false;
                    self.next_consumer = 0;
                }
                let after = if self.auto_delete_due() {
                    After::Delete
                } else {
                    After::Nothing
                };
                (QueueReply::Cancelled, after)
            }
            QueueOp::Get { no_ack } => (self.get(no_ack, reply_to), After::Nothing),
        }
    }

    fn consume(&mut self, spec: ConsumeSpec) -> (QueueReply, After) {
        if self.exclusive_consumer || (spec.exclusive && !self.consumers.is_empty()) {
            let e = AmqpError::access_refused(format!(
                "queue '{}' in vhost '/' in exclusive use",
                self.props.name
            ));
            return (QueueReply::from(e), After::Nothing);
        }
        self.exclusive_consumer = spec.exclusive;
        self.had_consumer = true;
        self.consumers.push(Consumer {
            r: spec.consumer,
            no_ack: spec.no_ack,
            prefetch: spec.prefetch,
            unacked: 0,
            window: spec.window,
            output_full: spec.output_full,
            arguments: spec.arguments,
        });
        (QueueReply::Consumed, After::Nothing)
    }

    /// basic.get: the next message, recorded as unacked to the channel unless no_ack.
    pub fn get(&mut self, no_ack: bool, channel: Option<ChannelRef>) -> QueueReply {
        let Some(s) = self.pop_next() else {
            return QueueReply::GetEmpty;
        };
        match (no_ack, channel) {
            (false, Some(ch)) => {
                self.unacked.insert(
                    s.seq,
                    Unacked {
                        msg: s.msg.clone(),
                        loc: s.loc,
                        channel: ch,
                        consumer: None,
                    },
                );
            }
            _ => {
                if let Some(loc) = s.loc {
                    self.gone.push((s.seq, loc));
                }
            }
        }
        QueueReply::GetOk {
            seq: s.seq,
            redelivered: s.redelivered,
            messages: self.message_count(),
            msg: s.msg,
        }
    }

    /// The queue is being deleted: tell consumers (broker-sent basic.cancel).
    pub fn cancel_all(&mut self, out: &mut Outbox) {
        for c in self.consumers.drain(..) {
            out.push(
                c.r.channel.shard,
                ShardMsg::ConsumerCancelled { consumer: c.r },
            );
        }
    }
}
