//! Statistics: what the management API and the Prometheus endpoint report.
//!
//! Every counter is a plain `u64` owned by one shard and bumped by that
//! shard's thread only: no atomics, no locks, nothing per message beyond an
//! add. Queues count in [`crate::core::queue::Queue::stats`], channels in
//! their front end's channel, sockets in `net::socket::IoCounters`.
//!
//! Nobody reads them in place. A thread that is not a shard (the HTTP side)
//! asks every shard for a [`ShardSnapshot`] through the control path
//! (`shard::snapshot`), a copy of the numbers taken on the shard's own
//! thread between two events, and computes rates from two snapshots taken
//! some seconds apart (`admin::stats`).
//!
//! Field names follow RabbitMQ's `message_stats` (management API) so the
//! HTTP layer can name them one to one.

use super::ids::VhostId;
use super::latency::Histogram;
use crate::protocol::FieldTable;
use std::net::{IpAddr, SocketAddr};

/// Message counters of one queue, channel, connection or shard, as
/// RabbitMQ's `message_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgStats {
    /// Messages published (channel: basic.publish received; queue: enqueued).
    pub publish: u64,
    /// Publisher confirms sent (basic.ack to a publisher).
    pub confirm: u64,
    /// Unroutable mandatory messages returned (basic.return).
    pub return_unroutable: u64,
    /// Unroutable messages dropped (not mandatory).
    pub drop_unroutable: u64,
    /// Deliveries to consumers that must ack.
    pub deliver: u64,
    /// Deliveries to no-ack consumers.
    pub deliver_no_ack: u64,
    /// basic.get answered with a message, manual ack.
    pub get: u64,
    /// basic.get answered with a message, no ack.
    pub get_no_ack: u64,
    /// basic.get answered get-empty.
    pub get_empty: u64,
    /// Deliveries (consume or get) of messages delivered before.
    pub redeliver: u64,
    /// Deliveries acknowledged.
    pub ack: u64,
    /// Messages received on a channel in confirm mode (RabbitMQ's global
    /// `messages_received_confirm`; not a `message_stats` field, so not in
    /// [`MsgStats::fields`]).
    pub received_confirm: u64,
}

impl MsgStats {
    /// RabbitMQ's `deliver_get`: every delivery, consumed or got.
    pub fn deliver_get(&self) -> u64 {
        self.deliver + self.deliver_no_ack + self.get + self.get_no_ack
    }

    /// Adds `o` field by field.
    pub fn add(&mut self, o: &MsgStats) {
        self.publish += o.publish;
        self.confirm += o.confirm;
        self.return_unroutable += o.return_unroutable;
        self.drop_unroutable += o.drop_unroutable;
        self.deliver += o.deliver;
        self.deliver_no_ack += o.deliver_no_ack;
        self.get += o.get;
        self.get_no_ack += o.get_no_ack;
        self.get_empty += o.get_empty;
        self.redeliver += o.redeliver;
        self.ack += o.ack;
        self.received_confirm += o.received_confirm;
    }

    /// No counter moved yet (RabbitMQ leaves `message_stats` out then).
    pub fn is_zero(&self) -> bool {
        *self == MsgStats::default()
    }

    /// Every field with RabbitMQ's name, in a fixed order (rates and JSON).
    pub fn fields(&self) -> [(&'static str, u64); 12] {
        [
            ("publish", self.publish),
            ("confirm", self.confirm),
            ("return_unroutable", self.return_unroutable),
            ("drop_unroutable", self.drop_unroutable),
            ("deliver", self.deliver),
            ("deliver_no_ack", self.deliver_no_ack),
            ("get", self.get),
            ("get_no_ack", self.get_no_ack),
            ("get_empty", self.get_empty),
            ("redeliver", self.redeliver),
            ("ack", self.ack),
            ("deliver_get", self.deliver_get()),
        ]
    }
}

/// Upper bounds (bytes, inclusive) of the message size histogram's buckets,
/// RabbitMQ's `rabbit_msg_size_metrics` (4.1); a ninth bucket takes the rest.
pub const MSG_SIZE_BOUNDS: [u64; 8] = [
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
];

/// Sizes of the message bodies published on a shard (Prometheus's
/// `rabbitmq_message_size_bytes` histogram): per bucket, not cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgSizes {
    pub buckets: [u64; 9],
    /// Sum of all sizes observed.
    pub sum: u64,
}

impl MsgSizes {
    /// Counts one message of `size` body bytes: a few compares and two adds.
    #[inline]
    pub fn observe(&mut self, size: usize) {
        let size = size as u64;
        let i = MSG_SIZE_BOUNDS
            .iter()
            .position(|&b| size <= b)
            .unwrap_or(MSG_SIZE_BOUNDS.len());
        self.buckets[i] += 1;
        self.sum += size;
    }

    pub fn add(&mut self, o: &MsgSizes) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.sum += o.sum;
    }

    /// Messages observed.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Objects created and gone on a shard since boot (RabbitMQ's churn rates
/// and `rabbitmq_*_opened_total` / `_closed_total` metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Churn {
    pub connection_created: u64,
    pub connection_closed: u64,
    pub channel_created: u64,
    pub channel_closed: u64,
    /// queue.declare answered (created or existing).
    pub queue_declared: u64,
    pub queue_created: u64,
    pub queue_deleted: u64,
}

impl Churn {
    /// Every counter with RabbitMQ's name (`churn_rates`), in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 7] {
        [
            ("connection_created", self.connection_created),
            ("connection_closed", self.connection_closed),
            ("channel_created", self.channel_created),
            ("channel_closed", self.channel_closed),
            ("queue_declared", self.queue_declared),
            ("queue_created", self.queue_created),
            ("queue_deleted", self.queue_deleted),
        ]
    }

    pub fn add(&mut self, o: &Churn) {
        self.connection_created += o.connection_created;
        self.connection_closed += o.connection_closed;
        self.channel_created += o.channel_created;
        self.channel_closed += o.channel_closed;
        self.queue_declared += o.queue_declared;
        self.queue_created += o.queue_created;
        self.queue_deleted += o.queue_deleted;
    }
}

/// A queue as the management API shows it.
#[derive(Clone, Debug)]
pub struct QueueSnap {
    pub vhost: VhostId,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    /// The declaring connection's uid, for an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub arguments: FieldTable,
    pub messages_ready: u64,
    pub messages_unacked: u64,
    pub bytes_ready: u64,
    pub bytes_unacked: u64,
    /// Ready messages held on disk only (paged out).
    pub messages_paged_out: u64,
    pub consumers: u32,
    /// Consumers that receive (all, or only the active one with
    /// `x-single-active-consumer`).
    pub active_consumers: u32,
    /// Wall clock (ms since the epoch) since the queue has had nothing to do:
    /// no consumer and no message in or out. None while it is busy.
    pub idle_since: Option<u64>,
    pub stats: MsgStats,
    /// Rough heap bytes the queue holds beyond message bodies.
    pub memory: u64,
    /// Shard that owns the queue.
    pub shard: u16,
    /// Enqueue → first delivery, µs (`core::latency`).
    pub time_in_queue: Histogram,
    /// Enqueue → publisher confirm, µs.
    pub confirm_latency: Histogram,
    /// A stream's log and readers (`core::stream`).
    pub stream: Option<Box<StreamSnap>>,
}

/// A stream's state for the management API.
#[derive(Clone, Debug, Default)]
pub struct StreamSnap {
    /// The first offset kept.
    pub first_offset: u64,
    /// The offset the next message gets.
    pub next_offset: u64,
    pub segments: u64,
    /// Octets of chunks held in memory for readers.
    pub cached_bytes: u64,
    /// Each consumer: tag, the offset it reads next, and how far that is
    /// behind the end (`offset_lag`).
    pub readers: Vec<ReaderSnap>,
}

#[derive(Clone, Debug)]
pub struct ReaderSnap {
    pub tag: String,
    pub offset: u64,
    pub offset_lag: u64,
}

/// Why a connection is not being read (RabbitMQ's `state: blocked` /
/// `flow`, plus the cause, which RabbitMQ does not say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockedBy {
    /// The memory alarm is on and the connection publishes.
    MemoryAlarm,
    /// The disk alarm is on and the connection publishes.
    DiskAlarm,
    /// Publisher flow control: the shard's outgoing ring to a peer shard is
    /// full (a queue on that shard is slow to take messages).
    Flow { shard: u16 },
}

impl BlockedBy {
    /// For the API and the UI.
    pub fn describe(&self) -> String {
        match self {
            BlockedBy::MemoryAlarm => "memory alarm".into(),
            BlockedBy::DiskAlarm => "disk alarm".into(),
            BlockedBy::Flow { shard } => format!("flow control (ring to shard {shard} full)"),
        }
    }
}

/// A client connection as the management API shows it.
#[derive(Clone, Debug)]
pub struct ConnSnap {
    /// `peer_host:peer_port -> host:port`, RabbitMQ's connection name.
    pub name: String,
    /// `AMQP 0-9-1`, later `AMQP 1.0`.
    pub protocol: &'static str,
    pub user: String,
    pub vhost: Option<VhostId>,
    pub peer_host: String,
    pub peer_port: u16,
    pub host: String,
    pub port: u16,
    /// Wall clock, ms since the epoch.
    pub connected_at: u64,
    /// The client's properties from connection.start-ok (raw table).
    pub client_properties: FieldTable,
    pub auth_mechanism: &'static str,
    pub channels: u32,
    pub channel_max: u16,
    pub frame_max: u32,
    /// Seconds, as negotiated.
    pub heartbeat: u16,
    /// `starting`, `tuning`, `opening`, `running`, `blocking`, `blocked`,
    /// `flow`, `closing`: RabbitMQ's states.
    pub state: &'static str,
    pub blocked_by: Option<BlockedBy>,
    pub ssl: bool,
    pub ssl_protocol: Option<&'static str>,
    pub ssl_cipher: Option<&'static str>,
    pub peer_cert_subject: Option<String>,
    pub recv_oct: u64,
    pub recv_cnt: u64,
    pub send_oct: u64,
    pub send_cnt: u64,
    /// Bytes waiting in the output buffer.
    pub send_pend: u64,
    /// The connection's uid (exclusive queue owners).
    pub uid: u64,
    pub shard: u16,
}

/// A channel as the management API shows it.
#[derive(Clone, Debug)]
pub struct ChannelSnap {
    /// The connection's name.
    pub connection: String,
    pub number: u16,
    pub user: String,
    pub vhost: Option<VhostId>,
    /// basic.qos global=false (per consumer).
    pub prefetch_count: u32,
    /// basic.qos global=true.
    pub global_prefetch_count: u32,
    pub confirm: bool,
    pub transactional: bool,
    pub messages_unacknowledged: u64,
    pub messages_unconfirmed: u64,
    pub consumer_count: u32,
    pub state: &'static str,
    pub stats: MsgStats,
}

/// A consumer as the management API shows it.
#[derive(Clone, Debug)]
pub struct ConsumerSnap {
    pub connection: String,
    pub channel: u16,
    pub user: String,
    pub vhost: Option<VhostId>,
    pub tag: String,
    pub queue: String,
    pub ack_required: bool,
    pub prefetch_count: u32,
    pub exclusive: bool,
    pub arguments: FieldTable,
}

/// An exchange's counters on one shard (publishes are routed on the
/// publisher's shard, so every shard counts its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Messages published to the exchange.
    pub publish_in: u64,
    /// Of those, messages it routed to at least one queue.
    pub publish_out: u64,
}

/// An exchange's counters as a snapshot lists them.
#[derive(Clone, Debug)]
pub struct ExchangeSnap {
    pub vhost: VhostId,
    /// "" for the default exchange.
    pub name: String,
    pub stats: ExchangeStats,
}

/// What a snapshot should hold: the lists are skipped unless asked for (a
/// `/api/overview` on a broker with 100,000 queues copies no queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    pub queues: bool,
    pub connections: bool,
    pub channels: bool,
    pub consumers: bool,
    /// Exchanges' publish_in / publish_out.
    pub exchanges: bool,
}

impl Want {
    pub const ALL: Want = Want {
        queues: true,
        connections: true,
        channels: true,
        consumers: true,
        exchanges: true,
    };
    pub const TOTALS: Want = Want {
        queues: false,
        connections: false,
        channels: false,
        consumers: false,
        exchanges: false,
    };
}

/// One shard's numbers at one instant.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    pub shard: u16,
    pub queues: Vec<QueueSnap>,
    pub connections: Vec<ConnSnap>,
    pub channels: Vec<ChannelSnap>,
    pub consumers: Vec<ConsumerSnap>,
    /// Exchanges that routed something on this shard (summed over shards by
    /// the reader).
    pub exchanges: Vec<ExchangeSnap>,
    /// Channel-side counters of every channel the shard ever served (open
    /// ones included): RabbitMQ's global message counters.
    pub totals: MsgStats,
    pub churn: Churn,
    /// Body sizes of the messages published on the shard since boot.
    pub msg_sizes: MsgSizes,
    /// Always filled, even when the lists are not asked for.
    pub queue_count: u64,
    pub connection_count: u64,
    pub channel_count: u64,
    pub consumer_count: u64,
    /// Ready and unacked messages over all the shard's queues.
    pub messages_ready: u64,
    pub messages_unacked: u64,
    /// Connections that have published (RabbitMQ's `publishers`).
    pub publishers: u64,
}

/// Milliseconds since the Unix epoch (`connected_at`, `idle_since`).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RabbitMQ's connection name: `peer -> local`, each `address:port`.
pub fn connection_name(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> String {
    format!("{} -> {}", addr_text(peer), addr_text(local))
}

pub fn addr_text(a: Option<SocketAddr>) -> String {
    match a {
        Some(a) => format!("{}:{}", ip_text(a.ip()), a.port()),
        None => "unknown".into(),
    }
}

/// An address as RabbitMQ prints it (`rabbit_misc:ntoab`): IPv4-mapped IPv6
/// as IPv4, other IPv6 without brackets.
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

impl super::ShardCtx {
    /// Why the broker is not reading a connection, if it is not: an alarm
    /// (a publisher, while the alarm is on), or the shard's ring to a peer
    /// shard being full (publisher flow control, `flow_blocked`).
    pub fn publisher_blocked_by(&self, publisher: bool, flow_blocked: bool) -> Option<BlockedBy> {
        if !publisher {
            return None;
        }
        if self.alarms.active() {
            return Some(if self.alarms.reason() == super::alarms::LOW_ON_MEMORY {
                BlockedBy::MemoryAlarm
            } else {
                BlockedBy::DiskAlarm
            });
        }
        if flow_blocked {
            let shard = (0..self.config.shards as u16)
                .find(|&s| s != self.id && self.outbox.is_congested(s))
                .unwrap_or(self.id);
            return Some(BlockedBy::Flow { shard });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::MsgSizes;

    #[test]
    fn message_sizes_fall_in_rabbitmq_buckets() {
        let mut h = MsgSizes::default();
        for size in [0, 100, 101, 1_000, 1_001, 100_000_000, 100_000_001] {
            h.observe(size);
        }
        assert_eq!(h.buckets, [2, 2, 1, 0, 0, 0, 0, 1, 1]);
        assert_eq!(h.count(), 7);
        assert_eq!(h.sum, 200_002_203);
    }
}
