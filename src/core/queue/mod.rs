//! A queue's runtime state: its messages, the messages delivered but not yet
//! acknowledged, and its consumers. A queue lives on exactly one shard and is
//! touched only by that shard's thread; everyone else talks to it with
//! `ShardMsg`s (publish, settle, requests).
//!
//! Ordering: every message gets a sequence number on arrival. Delivery is in
//! sequence order (within a priority, for a priority queue); a requeued
//! message goes back to its original place, with `redelivered` set
//! (`ready.rs`). The backlogs page their tails out to disk beyond the queue's
//! in-memory limit (`backlog`).
//!
//! RabbitMQ's queue extensions, parsed once at declaration into
//! `QueueFeatures` (`features.rs`), each in its own file: message and queue
//! TTL (`ttl.rs`), dead-lettering (`dead_letter.rs`), length limits
//! (`limits.rs`), consumer priorities and single active consumer
//! (`consumers.rs`), priority levels (`ready.rs`), delivery acknowledgement
//! timeouts (`timeouts.rs`). A queue declared without arguments takes none
//! of their slow paths: per message they cost a few flag tests.
//!
//! Work for the shard: messages that left for good (`take_gone`: store acks)
//! and messages to dead-letter (`take_dead`: routed by the shard). After each
//! operation the shard checks `has_followup`.

mod consumers;
pub mod dead_letter;
mod delivery_count;
pub mod features;
mod limits;
mod ready;
mod settle;
mod stream_ops;
pub mod timeouts;
pub mod ttl;

use super::backlog::{PagingConfig, Stored};
use super::error::CoreError;
use super::ids::{ChannelRef, ConsumerRef, QueueRef, Requester, VhostId};
use super::latency::{self, Arrivals, Histogram};
use super::message::{Message, MessageMeta};
use super::outbox::Outbox;
use super::shard_msg::{ConsumeMode, ConsumeSpec, QueueOp, QueueReply, ShardMsg};
use super::stats::{MsgStats, QueueSnap};
use super::stream::{Dispatched, Stream};
use super::vhost::resource;
use crate::protocol::FieldTable;
use crate::store::segments::Location;
pub use consumers::Credit;
use consumers::{Consumer, Consumers, Pick};
use dead_letter::Reason;
use features::QueueFeatures;
use ready::Ready;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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
    /// The queue's `clock` at delivery (consumer timeouts).
    at: u64,
}

/// Immutable properties fixed at declaration.
#[derive(Clone, Debug)]
pub struct QueueProps {
    pub vhost: VhostId,
    /// For texts (`queue 'q' in vhost 'v'`).
    pub vhost_name: Arc<str>,
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
    /// The `x-…` extensions, parsed from `props.arguments`.
    pub features: QueueFeatures,
    /// Ready messages: never delivered, or requeued (served first).
    ready: Ready,
    unacked: SeqMap<Unacked>,
    consumers: Consumers,
    next_seq: u64,
    /// Auto-delete applies only once a consumer has come and gone.
    had_consumer: bool,
    /// Already in the outbox's stalled list (listed once, however many
    /// publishes find the destination congested).
    stalled: bool,
    /// Stored messages that left the queue for good since the shard last
    /// looked (`take_gone`): their acks go to the message store.
    gone: Vec<(u64, Location)>,
    /// Messages to dead-letter (`take_dead`), with why.
    dead: Vec<(Message, Reason)>,
    /// A quorum queue's returns per message, for those returned at least
    /// once (`delivery_count.rs`).
    returns: HashMap<u64, u32>,
    /// Expiry (`ttl::now_ms` clock) of every message held (ready, requeued or
    /// unacked) that has a TTL. Empty for queues and messages without TTL.
    expiry: SeqMap<u64>,
    /// The message being published: its own dispatch ignores its expiry.
    fresh: u64,
    /// Last use for `x-expires` (`ttl::now_ms` clock).
    last_used: u64,
    /// `ttl::now_ms` at the last tick: deliveries are stamped with it.
    clock: u64,
    /// When the unacked map is next scanned for timed-out deliveries (0: no
    /// scan planned).
    timeout_check_at: u64,
    /// Message counters for the management API (`core::stats`).
    pub stats: MsgStats,
    /// Body bytes of the unacked messages.
    unacked_bytes: u64,
    /// When messages arrived, per loop iteration (`latency::Arrivals`).
    arrivals: Arrivals,
    /// Enqueue → first delivery (consume or get), µs.
    pub time_in_queue: Histogram,
    /// Enqueue → publisher confirm sent (after the fsync for a persistent
    /// message), µs; recorded by the shard (`ShardCtx::record_confirms`).
    pub confirm_latency: Histogram,
    /// `stats` activity (messages in + out + acks) at the last tick, and the
    /// queue clock since when it has not moved (0: it moved at the last tick).
    idle: (u64, u64),
    /// A stream (`x-queue-type=stream`) keeps its messages here, not in
    /// `ready` (`core::stream`); the shard opens it (`ShardCtx::new_queue`).
    pub stream: Option<Box<Stream>>,
    /// The leader of a quorum queue replicated to other nodes
    /// (`core::quorum`): every message is stored, and streamed to the
    /// followers; a confirm also waits for them.
    pub replicated: bool,
}

/// What the owning shard must do after a queue operation.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Nothing,
    /// The queue deleted itself (auto-delete, x-expires) or was deleted: drop it.
    Delete,
}

impl Queue {
    /// A new, empty queue; `paging` None keeps all its messages in memory;
    /// `consumer_timeout` is the broker's default (ms, 0: none).
    pub fn new(
        me: QueueRef,
        props: QueueProps,
        paging: Option<Arc<PagingConfig>>,
        consumer_timeout: u64,
    ) -> Queue {
        let features = QueueFeatures::parse(&props.arguments, consumer_timeout);
        let levels = features.max_priority.map_or(1, |m| m as usize + 1);
        let now = ttl::now_ms();
        Queue {
            me,
            ready: Ready::new(levels, paging, format!("q{}-{}", me.slot, me.gen)),
            unacked: SeqMap::default(),
            consumers: Consumers::new(features.single_active),
            props,
            features,
            next_seq: 1,
            had_consumer: false,
            stalled: false,
            gone: Vec::new(),
            dead: Vec::new(),
            returns: HashMap::new(),
            expiry: SeqMap::default(),
            fresh: 0,
            last_used: now,
            clock: now,
            timeout_check_at: 0,
            stats: MsgStats::default(),
            unacked_bytes: 0,
            idle: (0, now),
            arrivals: Arrivals::default(),
            time_in_queue: Histogram::default(),
            confirm_latency: Histogram::default(),
            stream: None,
            replicated: false,
        }
    }

    /// A message the shard must write to its store before `publish_stored`:
    /// persistent (delivery mode 2) and routed to a durable queue.
    #[inline]
    pub fn persists(&self, meta: MessageMeta) -> bool {
        self.props.store_id != 0 && (meta.persistent() || self.replicated)
    }

    /// The sequence number the next published message will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The shard has work after an operation: store acks (`take_gone`) or
    /// messages to dead-letter (`take_dead`).
    #[inline]
    pub fn has_followup(&self) -> bool {
        !self.gone.is_empty() || !self.dead.is_empty()
    }

    /// Stored messages gone for good since the last call (their store acks).
    pub fn take_gone(&mut self, into: &mut Vec<(u64, Location)>) {
        into.append(&mut self.gone);
    }

    /// Messages to dead-letter since the last call.
    pub fn take_dead(&mut self) -> Vec<(Message, Reason)> {
        std::mem::take(&mut self.dead)
    }

    /// Locations of every stored message the queue holds (deletion).
    pub fn stored_locations(&self) -> Vec<Location> {
        let mut locs: Vec<Location> = self.unacked.values().filter_map(|u| u.loc).collect();
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
        self.ready.get_mut(seq).and_then(|s| s.loc.as_mut())
    }

    /// Messages recovered from the store at boot, in sequence order: they are
    /// delivered first, marked redelivered (they may have been delivered
    /// before the restart). Each item is (seq, location, message, stored
    /// expiry): a message keeps the expiry it had (see `ttl.rs`); one that
    /// expired while the broker was down goes at the first look.
    pub fn recover(&mut self, msgs: impl IntoIterator<Item = (u64, Location, Message, u64)>) {
        for (seq, loc, msg, expires_at) in msgs {
            if seq < self.next_seq {
                continue; // a duplicate (the list is in seq order): keep the first
            }
            let meta = MessageMeta::from_amqp091(msg.properties());
            self.recover_expiry(seq, meta, expires_at);
            let level = self.level_of(meta);
            self.ready.push_back(
                level,
                Stored {
                    seq,
                    redelivered: true,
                    msg,
                    loc: Some(loc),
                },
            );
            self.next_seq = self.next_seq.max(seq + 1);
        }
    }

    pub fn message_count(&self) -> u32 {
        match &self.stream {
            Some(s) => s.messages().min(u32::MAX as u64) as u32,
            None => self.ready.len() as u32,
        }
    }

    pub fn unacked_count(&self) -> u32 {
        self.unacked.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        match &self.stream {
            Some(s) => s.consumer_count() as u32,
            None => self.consumers.len() as u32,
        }
    }

    /// The priority level of a message (0 without `x-max-priority`).
    #[inline]
    fn level_of(&self, meta: MessageMeta) -> usize {
        if self.ready.is_priority() {
            self.ready.level_of(meta.priority())
        } else {
            0
        }
    }

    /// A routed message arrives with its meta (`loc`: where the shard stored
    /// it, if it `persists`; it was stored with sequence number `next_seq`).
    /// The shard checked `refuses` first.
    #[inline]
    pub fn publish(
        &mut self,
        msg: Message,
        meta: MessageMeta,
        loc: Option<Location>,
        out: &mut Outbox,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.publish += 1;
        self.arrivals.arrived(seq, latency::clock());
        if self.expires(meta) {
            self.set_expiry(seq, meta);
        }
        let level = self.level_of(meta);
        self.ready.push_back(
            level,
            Stored {
                seq,
                redelivered: false,
                msg,
                loc,
            },
        );
        if !self.consumers.is_empty() {
            self.fresh = seq;
            self.dispatch(out);
            self.fresh = 0;
        }
        if self.features.limited() {
            self.drop_head();
        }
        if !self.expiry.is_empty() {
            self.drop_expired(ttl::now_ms());
        }
    }

    /// A message leaves the queue for good (acked, delivered without ack,
    /// dropped): its store ack and expiry go.
    #[inline]
    fn forget(&mut self, seq: u64, loc: Option<Location>) {
        if let Some(loc) = loc {
            self.gone.push((seq, loc));
        }
        if !self.returns.is_empty() {
            self.returns.remove(&seq);
        }
        if !self.expiry.is_empty() {
            self.expiry.remove(&seq);
        }
    }

    /// A `Resume`: the queue is off the outbox's stalled list (if it was on it)
    /// and tries again.
    pub fn resume(&mut self, out: &mut Outbox) {
        self.stalled = false;
        self.dispatch(out);
    }

    /// Hands messages to consumers with room in their prefetch windows
    /// (`consumers.rs` picks which).
    pub fn dispatch(&mut self, out: &mut Outbox) {
        if let Some(s) = self.stream.as_mut() {
            if s.dispatch(self.me, out, &mut self.stats) == Dispatched::Congested && !self.stalled {
                self.stalled = true;
                out.stalled.push(self.me);
            }
            return;
        }
        if self.consumers.is_empty() {
            return;
        }
        let ttl_now = if self.expiry.is_empty() {
            None
        } else {
            Some(ttl::now_ms())
        };
        loop {
            if let Some(now) = ttl_now {
                self.drop_expired(now);
            }
            if self.ready.is_empty() {
                return;
            }
            let idx = match self.consumers.pick(out) {
                Pick::Consumer(i) => i,
                Pick::None => return,
                Pick::Congested => {
                    if !self.stalled {
                        self.stalled = true;
                        out.stalled.push(self.me);
                    }
                    return;
                }
            };
            let s = self.ready.pop_front().expect("not empty");
            if !s.redelivered {
                self.waited(s.seq);
            }
            let c = self.consumers.get_mut(idx);
            let consumer = c.r;
            if let Some(k) = c.credit.as_mut() {
                k.spend();
            }
            self.stats.redeliver += s.redelivered as u64;
            if !c.no_ack {
                c.unacked += 1;
                self.stats.deliver += 1;
                self.unacked_bytes += s.msg.body().len() as u64;
                self.unacked.insert(
                    s.seq,
                    Unacked {
                        msg: s.msg.clone(),
                        loc: s.loc,
                        channel: consumer.channel,
                        consumer: Some(consumer),
                        at: self.clock,
                    },
                );
            } else {
                self.stats.deliver_no_ack += 1;
                self.forget(s.seq, s.loc);
            }
            self.consumers.delivered(idx);
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

    fn auto_delete_due(&self) -> bool {
        self.props.auto_delete && self.had_consumer && self.consumers.is_empty()
    }

    /// The shard's periodic tick (`ShardCtx::tick_queues`, every 200 ms):
    /// expires messages nobody reads, finds timed-out deliveries, and deletes
    /// the queue when `x-expires` is due.
    pub fn tick(&mut self, now: u64, out: &mut Outbox) -> After {
        self.clock = now;
        let activity = self.stats.publish + self.stats.deliver_get() + self.stats.ack;
        if activity != self.idle.0 {
            self.idle = (activity, 0);
        } else if self.idle.1 == 0 {
            self.idle.1 = now;
        }
        if !self.expiry.is_empty() {
            self.drop_expired(now);
        }
        if !self.unacked.is_empty() || self.timeout_check_at != 0 {
            self.check_consumer_timeouts(out);
        }
        self.expires_due(now)
    }

    /// Handles a synchronous request; returns the reply and what to do next. The
    /// caller sends the reply and then calls `dispatch`, so a consume-ok reaches
    /// the client before the consumer's first delivery.
    pub fn request(&mut self, op: QueueOp, reply_to: Option<Requester>) -> (QueueReply, After) {
        if self.stream.is_some() {
            return self.stream_request(op);
        }
        match op {
            QueueOp::Status => {
                self.touch();
                (
                    QueueReply::Status {
                        messages: self.message_count(),
                        consumers: self.consumer_count(),
                    },
                    After::Nothing,
                )
            }
            QueueOp::Purge => {
                // Purge removes ready messages only; unacked ones stay unacked.
                let n = self.message_count();
                let (gone, expiry) = (&mut self.gone, &mut self.expiry);
                self.ready.drain_each(|s: Stored| {
                    if let Some(loc) = s.loc {
                        gone.push((s.seq, loc));
                    }
                    if !expiry.is_empty() {
                        expiry.remove(&s.seq);
                    }
                });
                (QueueReply::Purged { messages: n }, After::Nothing)
            }
            QueueOp::Delete {
                if_unused,
                if_empty,
            } => {
                if if_unused && !self.consumers.is_empty() {
                    let e = CoreError::precondition(format!(
                        "{} in use",
                        resource(&self.props.vhost_name, "queue", &self.props.name),
                    ));
                    return (QueueReply::from(e), After::Nothing);
                }
                if if_empty && self.message_count() > 0 {
                    let e = CoreError::precondition(format!(
                        "{} not empty",
                        resource(&self.props.vhost_name, "queue", &self.props.name),
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
            QueueOp::Consume(spec) => self.consume(*spec),
            QueueOp::Cancel { consumer } => {
                if self.consumers.remove(consumer) && self.consumers.is_empty() {
                    self.touch();
                }
                let after = if self.auto_delete_due() {
                    After::Delete
                } else {
                    After::Nothing
                };
                (QueueReply::Cancelled, after)
            }
            // `ShardCtx::run_request` hands credit to `Queue::credit`, which
            // may deliver; here there is no outbox to deliver through.
            QueueOp::Credit { .. } => (
                QueueReply::Error(CoreError::internal("credit outside the message pump")),
                After::Nothing,
            ),
            QueueOp::Hold { channel } => {
                self.consumers.hold(channel);
                (QueueReply::Held, After::Nothing)
            }
            QueueOp::Release { channel } => {
                self.consumers.release(channel);
                (QueueReply::Held, After::Nothing)
            }
            QueueOp::Get { no_ack } => {
                self.touch();
                let channel = reply_to.map(|Requester::Channel(c)| c);
                (self.get(no_ack, channel), After::Nothing)
            }
        }
    }

    fn consume(&mut self, spec: ConsumeSpec) -> (QueueReply, After) {
        let priority = match consumers::consumer_priority(
            &self.props.vhost_name,
            &self.props.name,
            &spec.arguments,
        ) {
            Ok(p) => p,
            Err(e) => return (QueueReply::from(e), After::Nothing),
        };
        let single_active = self.consumers.single_active;
        if self.consumers.exclusive
            || (spec.exclusive && (single_active || !self.consumers.is_empty()))
        {
            let e = CoreError::access_refused(format!(
                "{} in exclusive use",
                resource(&self.props.vhost_name, "queue", &self.props.name),
            ));
            return (QueueReply::from(e), After::Nothing);
        }
        self.consumers.exclusive = spec.exclusive;
        self.had_consumer = true;
        self.consumers.add(Consumer {
            r: spec.consumer,
            no_ack: spec.no_ack,
            prefetch: match spec.mode {
                ConsumeMode::Prefetch(limit) => limit,
                ConsumeMode::Credit { .. } => 0,
            },
            unacked: 0,
            window: spec.window,
            output_full: spec.output_full,
            priority,
            credit: match spec.mode {
                ConsumeMode::Prefetch(_) => None,
                ConsumeMode::Credit {
                    credit,
                    delivery_count,
                } => Some(consumers::Credit {
                    credit,
                    delivery_count,
                }),
            },
            held: false,
        });
        (QueueReply::Consumed, After::Nothing)
    }

    /// A `flow` for the credit-paced consumer `r`: grants the credit,
    /// delivers what it allows, and, if `drain`, spends the rest. Returns
    /// the link state after that (`QueueReply::Credit`), or None if `r` is
    /// not a credit-paced consumer of this queue (cancelled meanwhile).
    pub fn credit(
        &mut self,
        r: ConsumerRef,
        delivery_count: u32,
        credit: u32,
        drain: bool,
        out: &mut Outbox,
    ) -> Option<QueueReply> {
        if self.stream.is_some() {
            let s = self.stream.as_mut().expect("a stream");
            s.grant(r, delivery_count, credit)?;
            self.dispatch(out);
            let s = self.stream.as_mut().expect("a stream");
            let k = s.credit_after(r, drain)?;
            return Some(QueueReply::Credit {
                consumer: r,
                delivery_count: k.delivery_count,
                credit: k.credit,
                drain,
            });
        }
        self.consumers
            .find_mut(r)?
            .credit
            .as_mut()?
            .grant(delivery_count, credit);
        self.dispatch(out);
        let k = self.consumers.find_mut(r)?.credit.as_mut()?;
        if drain {
            k.drain();
        }
        Some(QueueReply::Credit {
            consumer: r,
            delivery_count: k.delivery_count,
            credit: k.credit,
            drain,
        })
    }

    /// basic.get: the next message, recorded as unacked to the channel unless no_ack.
    pub fn get(&mut self, no_ack: bool, channel: Option<ChannelRef>) -> QueueReply {
        if !self.expiry.is_empty() {
            self.drop_expired(ttl::now_ms());
        }
        let Some(s) = self.ready.pop_front() else {
            self.stats.get_empty += 1;
            return QueueReply::GetEmpty;
        };
        self.stats.redeliver += s.redelivered as u64;
        if !s.redelivered {
            self.waited(s.seq);
        }
        match (no_ack, channel) {
            (false, Some(ch)) => {
                self.stats.get += 1;
                self.unacked_bytes += s.msg.body().len() as u64;
                self.unacked.insert(
                    s.seq,
                    Unacked {
                        msg: s.msg.clone(),
                        loc: s.loc,
                        channel: ch,
                        consumer: None,
                        at: self.clock,
                    },
                );
            }
            _ => {
                self.stats.get_no_ack += 1;
                self.forget(s.seq, s.loc);
            }
        }
        QueueReply::GetOk {
            seq: s.seq,
            redelivered: s.redelivered,
            messages: self.message_count(),
            msg: s.msg,
        }
    }

    /// Message `seq` leaves the ready list for its first delivery: its time
    /// in the queue goes into the histogram (messages recovered at boot have
    /// no arrival mark and are not counted).
    #[inline]
    fn waited(&mut self, seq: u64) {
        let in_order = !self.ready.is_priority();
        if let Some(at) = self.arrivals.arrival(seq, in_order) {
            self.time_in_queue
                .record(latency::clock().saturating_sub(at));
        }
    }

    /// The management API's view of the queue (`core::stats`). `now`:
    /// `ttl::now_ms()`, `wall`: `stats::wall_ms()`, read once per snapshot.
    pub fn snapshot(&self, shard: u16, now: u64, wall: u64) -> QueueSnap {
        let consumers = self.consumer_count();
        let active_consumers = if self.features.single_active {
            consumers.min(1)
        } else {
            consumers
        };
        QueueSnap {
            vhost: self.props.vhost,
            name: self.props.name.clone(),
            durable: self.props.durable,
            auto_delete: self.props.auto_delete,
            exclusive_owner: self.props.exclusive_owner,
            arguments: self.props.arguments.clone(),
            messages_ready: self
                .stream
                .as_ref()
                .map_or(self.ready.len() as u64, |s| s.messages()),
            // A stream's deliveries are not messages it holds: RabbitMQ
            // shows its messages as all ready and none unacknowledged.
            messages_unacked: if self.stream.is_some() {
                0
            } else {
                self.unacked.len() as u64
            },
            bytes_ready: self
                .stream
                .as_ref()
                .map_or(self.ready.bytes(), |s| s.bytes()),
            bytes_unacked: self.unacked_bytes,
            messages_paged_out: self.ready.paged() as u64,
            consumers,
            active_consumers,
            idle_since: (self.idle.1 != 0 && consumers == 0)
                .then(|| wall.saturating_sub(now.saturating_sub(self.idle.1))),
            stats: self.stats,
            memory: self.memory()
                + self
                    .stream
                    .as_ref()
                    .map_or(0, |s| s.snapshot_cached_bytes()),
            shard,
            time_in_queue: self.time_in_queue,
            confirm_latency: self.confirm_latency,
            stream: self.stream.as_ref().map(|s| Box::new(s.snapshot())),
        }
    }

    /// Rough heap bytes held beyond message bodies: the structure, the
    /// in-memory index entries, the unacked map, the expiry map.
    fn memory(&self) -> u64 {
        let entry = std::mem::size_of::<Stored>() as u64;
        let unacked = (std::mem::size_of::<Unacked>() + 16) as u64;
        std::mem::size_of::<Queue>() as u64
            + (self.ready.len() - self.ready.paged()) as u64 * entry
            + self.unacked.capacity() as u64 * unacked
            + self.expiry.capacity() as u64 * 24
    }

    /// The queue is being deleted: tell consumers (broker-sent basic.cancel).
    pub fn cancel_all(&mut self, out: &mut Outbox) {
        if let Some(s) = self.stream.as_mut() {
            for r in s.drain_consumers() {
                out.push(r.channel.shard, ShardMsg::ConsumerCancelled { consumer: r });
            }
        }
        for c in self.consumers.drain() {
            out.push(
                c.r.channel.shard,
                ShardMsg::ConsumerCancelled { consumer: c.r },
            );
        }
    }
}
