//! What the definitions hold, as plain values: exchanges, queues, bindings
//! and the change-log entries (`DefEvent`) shards apply to their routing
//! copies.

use crate::core::exchange::ExchangeKind;
use crate::core::ids::{QueueRef, VhostId};
use crate::protocol::FieldTable;
use std::sync::Arc;

/// Where a binding leads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BindingDest {
    Queue(String),
    Exchange(String),
}

impl BindingDest {
    pub fn name(&self) -> &str {
        match self {
            BindingDest::Queue(n) | BindingDest::Exchange(n) => n,
        }
    }
}

/// One binding. Identity is (source, destination, key, encoded arguments), as in
/// RabbitMQ: the same key with other arguments is another binding.
#[derive(Clone, Debug)]
pub struct Binding {
    pub vhost: VhostId,
    pub source: String,
    pub dest: BindingDest,
    pub key: String,
    pub args: FieldTable,
    args_raw: Vec<u8>,
}

impl Binding {
    pub fn new(
        vhost: VhostId,
        source: String,
        dest: BindingDest,
        key: String,
        args: FieldTable,
    ) -> Binding {
        let mut args_raw = Vec::new();
        args.encode(&mut args_raw);
        Binding {
            vhost,
            source,
            dest,
            key,
            args,
            args_raw,
        }
    }
}
impl PartialEq for Binding {
    fn eq(&self, o: &Self) -> bool {
        self.vhost == o.vhost
            && self.source == o.source
            && self.dest == o.dest
            && self.key == o.key
            && self.args_raw == o.args_raw
    }
}
impl Eq for Binding {}
impl std::hash::Hash for Binding {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.vhost.hash(h);
        self.source.hash(h);
        self.dest.hash(h);
        self.key.hash(h);
        self.args_raw.hash(h);
    }
}

/// A declared exchange.
#[derive(Clone, Debug)]
pub struct ExchangeDef {
    pub vhost: VhostId,
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub args: FieldTable,
}

impl ExchangeDef {
    /// The `alternate-exchange` argument (a longstr, checked at declaration).
    pub fn alternate(&self) -> Option<&str> {
        self.args.get("alternate-exchange").and_then(|v| v.as_str())
    }
}

/// A declared queue. The queue's messages and consumers live on `queue.shard`.
#[derive(Clone, Debug)]
pub struct QueueDef {
    pub vhost: VhostId,
    pub name: String,
    pub queue: QueueRef,
    pub durable: bool,
    pub auto_delete: bool,
    /// Connection id of the owner of an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub args: FieldTable,
    /// Stable id of a durable, non-exclusive queue (0 for any other): the same
    /// across restarts and never reused, for the message store to key by.
    pub store_id: u64,
    /// The node holding the queue, if another node of the cluster (then
    /// `queue` is on `REMOTE_SHARD`); `None`: this node.
    pub node: Option<Arc<str>>,
}

impl QueueDef {
    /// Survives a restart: durable and not exclusive (RabbitMQ deletes
    /// exclusive queues with their connection, so never recovers one).
    pub fn persistent(&self) -> bool {
        self.durable && self.exclusive_owner.is_none()
    }
}

/// One entry of the change log; shards apply them in order.
#[derive(Clone, Debug)]
pub enum DefEvent {
    VhostAdded {
        vhost: VhostId,
        name: Arc<str>,
    },
    /// Everything in it is gone (removed before, or with it).
    VhostRemoved {
        vhost: VhostId,
    },
    ExchangeAdded {
        vhost: VhostId,
        name: String,
        kind: ExchangeKind,
        internal: bool,
        /// The `alternate-exchange` argument: where messages this exchange
        /// cannot route go (looked up by name when needed).
        alternate: Option<String>,
    },
    ExchangeRemoved {
        vhost: VhostId,
        name: String,
    },
    QueueAdded {
        vhost: VhostId,
        name: String,
        queue: QueueRef,
        exclusive_owner: Option<u64>,
    },
    QueueRemoved {
        vhost: VhostId,
        name: String,
    },
    BindingAdded(Binding),
    BindingRemoved(Binding),
}
