//! Small `Copy` handles naming things that live on a particular shard. They cross
//! shard boundaries inside ring messages, so they are plain integers: the owning
//! shard checks `incarnation`/`gen` to tell a live target from a stale one.

/// A queue: owned by `shard`, stored at `slot` of that shard's queue slab.
/// `gen` changes each time the slot is reused, so a stale handle (a queue deleted
/// while messages to it were in flight) is recognised and the message dropped,
/// exactly as RabbitMQ drops messages routed to a queue that is being deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef {
    pub shard: u16,
    pub slot: u32,
    pub gen: u32,
}

/// A channel of a connection: the connection lives at `conn_slot` of `shard`'s
/// connection slab; `incarnation` is unique per channel.open on that shard, so a
/// delivery addressed to a channel that was closed (and maybe reopened under the
/// same number) is recognised as stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    pub shard: u16,
    pub channel: u16,
    pub conn_slot: u32,
    pub incarnation: u32,
}

/// Who waits for a queue's answer to a `ShardMsg::Request`: the reply goes
/// back to it as `ShardMsg::Reply`. Today always a 0-9-1 channel; an AMQP 1.0
/// link (attach, drain) joins as a variant, and the queue code does not
/// change: it only hands the requester back with its answer (and records
/// basic.get's unacked delivery against the channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requester {
    Channel(ChannelRef),
}

impl Requester {
    /// The shard that serves the requester (where the reply goes).
    #[inline]
    pub fn shard(self) -> u16 {
        match self {
            Requester::Channel(c) => c.shard,
        }
    }
}

/// A consumer: a channel plus the channel-local consumer number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConsumerRef {
    pub channel: ChannelRef,
    pub id: u32,
}

/// Where direct replies go (`amq.rabbitmq.reply-to`): a channel with a reply
/// consumer, and the random key drawn when that consumer was created. The
/// token that encodes it in a routing key is the 0-9-1 front end's
/// (`amqp091::direct_reply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyAddress {
    pub channel: ChannelRef,
    pub key: u64,
}

/// A virtual host, by number: the same on every shard for the life of the
/// process (not across restarts; the log names vhosts by name). Numbers are
/// never reused, so a stale one finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VhostId(pub u32);
