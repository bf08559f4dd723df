//! What a 0-9-1 connection knows that its channels read: negotiated limits,
//! the client's capabilities, its exclusive queues, the flow-control flag.
//! Its own file so that channels need not import the connection that owns
//! them (the connection drives the channels, never the reverse).

use crate::core::access::UserAccess;
use crate::core::follow::Follow;
use crate::core::ids::QueueRef;
use crate::protocol::FieldTable;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// Facts about the connection that its channels read.
pub struct ConnInfo {
    pub slot: u32,
    /// Broker-wide unique id (exclusive-queue ownership).
    pub uid: u64,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub user: String,
    /// What the user may do in the connection's vhost (from connection.open;
    /// rebuilt when permissions change, `Connection::tick`).
    pub access: Arc<UserAccess>,
    /// The connection is counted in the definitions' live counts (limits).
    pub counted: bool,
    /// The broker's own connection (a shovel's direct `amqp://`,
    /// `core::auth::internal`): full rights, never refreshed from a user's.
    pub internal: bool,
    /// The user's channel count across connections (max-channels).
    pub channel_count: Option<Arc<AtomicU64>>,
    /// Client advertised consumer_cancel_notify: send basic.cancel when a
    /// consumed queue is deleted.
    pub cancel_notify: bool,
    /// The connection has published: the event loop stops reading it while
    /// the shard's outgoing rings are congested (publisher flow control).
    pub publisher: bool,
    /// Client advertised the connection.blocked capability.
    pub blocked_notify: bool,
    /// We sent connection.blocked (and owe a connection.unblocked).
    pub sent_blocked: bool,
    /// Exclusive queues this connection declared (deleted when it closes).
    pub exclusive_queues: Vec<QueueRef>,
    /// The connection came in on the TLS listener (management's `ssl`).
    pub ssl: bool,
    /// With `ssl`: what the handshake settled, for the management API.
    pub tls: Option<Box<TlsInfo>>,
    /// Flow control towards consumers: set while unsent output is above
    /// `OUTPUT_HIGH_WATER`; queues skip this connection's consumers meanwhile.
    pub output_full: Arc<AtomicBool>,
    /// Wall clock at accept, ms since the epoch (management's `connected_at`).
    pub connected_at: u64,
    /// The client's properties from connection.start-ok, kept for the
    /// management API (`client_properties`, the connection's user-given name).
    pub client_properties: FieldTable,
    /// The SASL mechanism the client logged in with.
    pub auth_mechanism: &'static str,
    /// The client's and our end of the socket, read once at accept.
    pub peer: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
    /// Where its publishes go: asks to move to its queue's shard
    /// (`core::follow`).
    pub follow: Follow,
    /// Why it closes, for the log line (`core::conn_log::closed`); None
    /// when the socket just went away.
    pub close_reason: Option<Box<str>>,
}

/// What a TLS connection's handshake settled (management's `ssl_protocol`,
/// `ssl_cipher`, `peer_cert_subject`). Boxed: plain connections pay a
/// null pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `tlsv1.2` or `tlsv1.3`, as RabbitMQ names them.
    pub protocol: Option<&'static str>,
    /// IANA cipher-suite name.
    pub cipher: Option<&'static str>,
    /// The verified client certificate's subject (RFC 4514, RabbitMQ's
    /// format), if the client sent one.
    pub peer_cert_subject: Option<String>,
}
