//! What an AMQP 1.0 connection knows that its sessions read: negotiated
//! limits, the user and their rights, the flow-control flag. Its own file so
//! that sessions need not import the connection that owns them.

use crate::core::access::UserAccess;
use crate::core::ids::QueueRef;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

pub struct ConnInfo {
    pub slot: u32,
    /// Broker-wide unique id (exclusive-queue ownership).
    pub uid: u64,
    /// The largest frame we may send: the peer's `max-frame-size`.
    pub max_frame_out: u32,
    /// The largest frame we accept (our `open.max-frame-size`).
    pub max_frame_in: u32,
    /// Highest channel (session) number allowed, from both `open`s.
    pub channel_max: u16,
    /// The peer's idle time-out, ms (0: none): we send an empty frame
    /// before half of it passes without output.
    pub peer_idle_timeout: u32,
    pub user: String,
    /// What the user may do in the connection's vhost.
    pub access: Arc<UserAccess>,
    /// The connection is counted in the definitions' live counts (limits).
    pub counted: bool,
    /// The broker's own connection (a shovel's direct `amqp://`,
    /// `core::auth::internal`): full rights, never refreshed from a user's.
    pub internal: bool,
    /// The user's channel count across connections (sessions count as
    /// channels for `max-channels`, as in RabbitMQ 4).
    pub channel_count: Option<Arc<AtomicU64>>,
    /// The connection has published: publisher flow control applies.
    pub publisher: bool,
    /// Exclusive queues this connection declared (deleted when it closes).
    pub exclusive_queues: Vec<QueueRef>,
    /// Flow control towards consumers: set while unsent output is above the
    /// high-water mark; queues skip this connection's links meanwhile.
    pub output_full: Arc<AtomicBool>,
    /// Wall clock at accept, ms since the epoch.
    pub connected_at: u64,
    /// The SASL mechanism the client logged in with.
    pub auth_mechanism: &'static str,
    /// The client's `open.container-id`.
    pub container_id: String,
    pub peer: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
    /// Why it closes, for the log line (`core::conn_log::closed`).
    pub close_reason: Option<Box<str>>,
}
