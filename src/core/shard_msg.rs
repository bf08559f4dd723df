//! The messages shards send each other over the SPSC rings — and to themselves:
//! a shard's own traffic goes through the same path (a local queue instead of a
//! ring), so single-shard and cross-shard behaviour are the same code.
//!
//! Entries are fixed-size values; nothing in the publish → deliver → ack variants
//! allocates (`Message` is one `Bytes` handle and its layout, 40 bytes, with
//! a `Copy` `MessageMeta` beside it). An entry is 88 bytes: the rare, large
//! parts (a new consumer's `ConsumeSpec`) are boxed.

use super::error::CoreError;
use super::ids::{ChannelRef, ConsumerRef, QueueRef, ReplyAddress, Requester};
use super::message::{Message, MessageMeta};
use crate::protocol::FieldTable;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How a consumer is paced. A 0-9-1 consumer has a prefetch window
/// (basic.qos global=false): the queue stops delivering to it at that many
/// unacknowledged messages. An AMQP 1.0 link is paced by credit instead:
/// each delivery spends one, acks give none back, and the link's `flow`
/// frames grant more (`QueueOp::Credit`). The queue keeps the link's
/// delivery-count, as RabbitMQ 4's credit API v2 does, so credit granted
/// while deliveries are in flight is counted right. The channel-wide
/// window stays in `ConsumeSpec::window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumeMode {
    /// At most this many unacked deliveries; 0 = unlimited.
    Prefetch(u32),
    /// Link credit: `credit` deliveries allowed now; the link's
    /// delivery-count starts at `delivery_count`.
    Credit { credit: u32, delivery_count: u32 },
}

/// What to do with an unacknowledged message. The 0-9-1 methods map onto
/// it (basic.ack → `Ack`, reject/nack with requeue → `Requeue`, without →
/// `Discard`), and so do AMQP 1.0's outcomes (accepted, released, rejected);
/// 1.0's `modified` (requeue or dead-letter, counting a failed delivery)
/// becomes a fourth variant here, handled in `Queue::settle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Requeue,
    /// reject/nack without requeue.
    Discard,
}

/// One message between (or within) shards.
pub enum ShardMsg {
    // ---- to the shard that owns `queue` ----
    /// A routed message for a queue; `confirm` asks the queue's shard to tell the
    /// publishing channel once the message is enqueued (publisher confirms).
    Publish {
        queue: QueueRef,
        msg: Message,
        /// What the queue reads about `msg`, decoded once on arrival.
        meta: MessageMeta,
        confirm: Option<ConfirmTag>,
    },
    /// A request that expects a `Reply` (unless `reply_to` is None).
    Request {
        queue: QueueRef,
        reply_to: Option<Requester>,
        op: QueueOp,
    },
    /// ack / nack / reject of `count` deliveries with consecutive queue
    /// sequence numbers from `seq` (one when sent; `Outbox::push` merges a
    /// run, so an ack of many costs the ring one entry).
    Settle {
        queue: QueueRef,
        channel: ChannelRef,
        seq: u64,
        how: Settle,
        count: u32,
    },
    /// A channel closed: drop its consumers, requeue its unacked messages.
    ChannelGone {
        queue: QueueRef,
        channel: ChannelRef,
    },
    /// The channel-wide prefetch window of a consumer's channel opened again.
    Resume { queue: QueueRef },

    // ---- to the shard that owns the channel ----
    /// A message for a consumer.
    Deliver {
        consumer: ConsumerRef,
        queue: QueueRef,
        seq: u64,
        redelivered: bool,
        msg: Message,
    },
    /// The answer to a `Request`.
    Reply {
        to: Requester,
        queue: QueueRef,
        reply: QueueReply,
    },
    /// The queue cancelled a consumer (queue deleted): a broker-sent basic.cancel.
    ConsumerCancelled { consumer: ConsumerRef },
    /// A queue accepted (`ok`) or refused (`x-overflow` reject-publish)
    /// messages published in confirm mode: basic.ack or basic.nack. `count`
    /// publishes with consecutive sequence numbers up to `tag.seq` (one
    /// when sent; `Outbox::push` merges a run).
    Confirm {
        tag: ConfirmTag,
        ok: bool,
        count: u32,
    },
    /// A direct reply (published to `amq.rabbitmq.reply-to.<token>`) for the
    /// reply consumer of `to.channel` (`direct_reply.rs`).
    DirectReply { to: ReplyAddress, msg: Message },
    /// Does the reply consumer `to` still exist? Answered with a `Reply` to
    /// `from` (passive queue.declare of a reply address).
    ReplyProbe { to: ReplyAddress, from: Requester },
    /// A delivery to this channel stayed unacked longer than the queue's
    /// delivery acknowledgement timeout: the channel is closed (406).
    ConsumerTimeout {
        channel: ChannelRef,
        timeout_ms: u64,
    },

    // ---- quorum-queue replication, through the cluster link
    // (`core::quorum`, `cluster::link`); `store_id` names the queue on
    // every node ----
    /// A message the leader of quorum queue `store_id` stored as `seq`:
    /// from the leader's shard to the link, which sends it to every
    /// follower (`to` 0) or to follower `to` (a bulk copy; the link's node
    /// number), whose link hands it to the follower shard that keeps the
    /// queue's replica.
    ReplicaAppend {
        store_id: u64,
        seq: u64,
        msg: Message,
        meta: MessageMeta,
        to: u16,
    },
    /// Messages `seq .. seq + count` left the quorum queue for good
    /// (acked, dropped, expired, dead-lettered): same way as `ReplicaAppend`.
    ReplicaGone { store_id: u64, seq: u64, count: u32 },
    /// The replica of `store_id` on follower `to` (0: every follower)
    /// starts again, as generation `gen` (the link numbers them; 0: the
    /// queue is gone, the replica is dropped): a bulk copy follows, from
    /// a leader of `lineage` (its epoch and process, set by the link),
    /// and `ReplicaBulkDone` ends it.
    ReplicaReset {
        store_id: u64,
        to: u16,
        gen: u32,
        lineage: u64,
        /// The leader's epoch (a shard that holds the queue from an
        /// older epoch steps down; `core::quorum`).
        epoch: u64,
    },
    /// From the leader's shard to its link: the bulk copy for follower
    /// `to` is complete; it held every message up to `upto`.
    /// `count` messages were copied (the follower checks it got them all
    /// in generation `gen`, set by the leader's link, before it drops what
    /// the copy did not bring).
    ReplicaBulkDone {
        store_id: u64,
        to: u16,
        upto: u64,
        count: u64,
        gen: u32,
    },
    /// From a follower shard to its link (and on to the leader's node):
    /// generation `gen` of the replica of `store_id` holds every message
    /// up to `seq` on disk.
    ReplicaSynced { store_id: u64, seq: u64, gen: u32 },
    /// From the link to the leader's shard: every in-sync follower holds
    /// the messages of `queue` up to `seq`; their confirms may go.
    Replicated { queue: QueueRef, seq: u64 },

    // ---- to the shard layer ----
    /// A session moving to this shard (a publishing connection following
    /// its queue, `core::follow`). It travels in the ring behind every
    /// message it sent before it left, so they are handled first.
    Adopt(Adoptee),
}

/// A session in transit between shards. Sessions belong to the shard layer,
/// above the core: the core carries one without knowing what it is.
pub struct Adoptee(pub Box<dyn std::any::Any + Send>);

/// Identifies one publish of a channel in confirm mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfirmTag {
    pub channel: ChannelRef,
    /// Publish sequence numbers start at 1, so `Option<ConfirmTag>` costs no
    /// tag: every `ShardMsg::Publish` is 8 bytes smaller.
    pub seq: std::num::NonZeroU64,
}

/// Requests a channel makes of a queue (synchronous AMQP methods).
pub enum QueueOp {
    /// Message and consumer counts (queue.declare on an existing queue).
    Status,
    Purge,
    Delete {
        if_unused: bool,
        if_empty: bool,
    },
    /// Boxed: a consumer is added rarely, and the box keeps every ring
    /// entry small.
    Consume(Box<ConsumeSpec>),
    Cancel {
        consumer: ConsumerRef,
    },
    Get {
        no_ack: bool,
    },
    /// The connection of `channel` is moving to another shard
    /// (`core::follow`): deliver nothing more to the channel's consumers,
    /// and answer `Held` (behind every delivery already sent).
    Hold {
        channel: ChannelRef,
    },
    /// The move did not happen: the channel's consumers go on. No answer.
    Release {
        channel: ChannelRef,
    },
    /// An AMQP 1.0 `flow` for a credit-paced consumer: the receiver's view
    /// of the link (`delivery_count` as it last saw it, `credit` it grants
    /// from there). The queue works out the credit left (RabbitMQ's
    /// `delivery-count + link-credit - sent`), delivers, and, if `drain`,
    /// spends the rest by advancing its delivery-count. Answered with
    /// `QueueReply::Credit` when `drain` or `echo`; else not at all.
    Credit {
        consumer: ConsumerRef,
        delivery_count: u32,
        credit: u32,
        drain: bool,
        echo: bool,
    },
}

/// A new consumer as the queue stores it.
pub struct ConsumeSpec {
    pub consumer: ConsumerRef,
    /// The consumer's connection, for exclusive-queue checks.
    pub conn_uid: u64,
    pub no_ack: bool,
    pub exclusive: bool,
    /// How deliveries are paced.
    pub mode: ConsumeMode,
    /// The channel-wide window (basic.qos global=true), shared with the channel.
    pub window: Arc<ChannelWindow>,
    /// The connection's "too much unsent output" flag (flow control).
    pub output_full: Arc<std::sync::atomic::AtomicBool>,
    pub arguments: FieldTable,
    /// The consumer's name as its client knows it (0-9-1 consumer tag,
    /// 1.0 link name): streams show it with the consumer's offset and
    /// key offset tracking by it.
    pub tag: bytes::Bytes,
}

/// Answers to `QueueOp`s.
pub enum QueueReply {
    Status {
        messages: u32,
        consumers: u32,
    },
    Purged {
        messages: u32,
    },
    Deleted {
        messages: u32,
    },
    Consumed,
    Cancelled,
    GetOk {
        seq: u64,
        redelivered: bool,
        messages: u32,
        msg: Message,
    },
    GetEmpty,
    /// `QueueOp::Hold` is in effect (also the answer for a queue that is gone:
    /// nothing to hold).
    Held,
    /// The link state after a `QueueOp::Credit` (drained or echoed): sent
    /// after the deliveries it made, so the link's `flow` follows them.
    Credit {
        consumer: ConsumerRef,
        delivery_count: u32,
        credit: u32,
        drain: bool,
    },
    /// The queue refused (e.g. delete if-empty on a non-empty queue).
    Error(CoreError),
    /// The queue no longer exists (deleted between lookup and request).
    Gone,
}

impl From<CoreError> for QueueReply {
    fn from(e: CoreError) -> QueueReply {
        QueueReply::Error(e)
    }
}

/// A channel's channel-wide prefetch window (basic.qos global=true), shared by the
/// channel and the queues its consumers read from, which may be on other shards.
/// Allocated once per channel; per message only atomics are touched.
#[derive(Default, Debug)]
pub struct ChannelWindow {
    /// 0 = unlimited.
    pub limit: AtomicU32,
    pub unacked: AtomicU32,
}

impl ChannelWindow {
    /// Takes one slot of the window; false when the window is full.
    #[inline]
    pub fn try_take(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
            self.unacked.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let mut cur = self.unacked.load(Ordering::Relaxed);
        loop {
            if cur >= limit {
                return false;
            }
            match self.unacked.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Returns `n` slots; true if the window was full before (queues must resume).
    #[inline]
    pub fn give_back(&self, n: u32) -> bool {
        let before = self.unacked.fetch_sub(
            n.min(self.unacked.load(Ordering::Relaxed)),
            Ordering::AcqRel,
        );
        let limit = self.limit.load(Ordering::Relaxed);
        limit != 0 && before >= limit
    }

    pub fn is_full(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit != 0 && self.unacked.load(Ordering::Relaxed) >= limit
    }
}

#[cfg(test)]
mod tests {
    /// Ring entries are fixed-size values; tuning.md quotes this size for the
    /// memory of the ring mesh. Keep the figure there in step.
    #[test]
    fn ring_entry_size() {
        let n = std::mem::size_of::<super::ShardMsg>();
        eprintln!("size_of::<ShardMsg>() = {}", n);
        assert!(n <= 88, "ShardMsg grew to {} bytes", n);
    }
}
