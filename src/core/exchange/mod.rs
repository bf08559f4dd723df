//! Exchange types. Each type is one file implementing [`ExchangeType`]; a shard's
//! routing copy (`core::routing`) holds one [`ExchangeImpl`] per exchange.
//!
//! All of this runs on one shard's thread, against that shard's private copy of
//! the bindings: no locks, and `route` reuses caller-provided buffers.

pub mod direct;
pub mod fanout;
pub mod headers;
pub mod headers_match;
pub mod topic;
pub mod topic_trie;

use super::ids::QueueRef;
use crate::protocol::FieldTable;

/// The four AMQP exchange types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// A binding's destination as the routing copy stores it: a queue handle, or the
/// index of another exchange in the same routing copy (exchange-to-exchange).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dest {
    Queue(QueueRef),
    Exchange(usize),
}

/// What an exchange type does with bindings and messages.
pub trait ExchangeType {
    /// Called when a binding from this exchange is added (each shard, when it
    /// applies the definitions log). Bindings with equal key and destination but
    /// other arguments are separate bindings; `route` still yields a destination once.
    fn bind(&mut self, key: &str, args: &FieldTable, dest: Dest);
    /// Called when a binding is removed; undoes one `bind` with the same arguments.
    fn unbind(&mut self, key: &str, args: &FieldTable, dest: Dest);
    /// Called for each message published to the exchange, on the publisher's
    /// shard. Appends matching destinations to `out` (duplicates allowed; the
    /// caller removes them). Must not allocate once warmed up.
    fn route(&mut self, routing_key: &[u8], headers: Option<&FieldTable>, out: &mut Vec<Dest>);
    /// True if `route` needs the message's headers decoded.
    fn needs_headers(&self) -> bool {
        false
    }
}

/// Static dispatch over the four types.
pub enum ExchangeImpl {
    Direct(direct::Direct),
    Fanout(fanout::Fanout),
    Topic(topic::Topic),
    Headers(headers::Headers),
}

impl ExchangeImpl {
    pub fn new(kind: ExchangeKind) -> ExchangeImpl {
        match kind {
            ExchangeKind::Direct => ExchangeImpl::Direct(Default::default()),
            ExchangeKind::Fanout => ExchangeImpl::Fanout(Default::default()),
            ExchangeKind::Topic => ExchangeImpl::Topic(Default::default()),
            ExchangeKind::Headers => ExchangeImpl::Headers(Default::default()),
        }
    }
    fn inner(&mut self) -> &mut dyn ExchangeType {
        match self {
            ExchangeImpl::Direct(x) => x,
            ExchangeImpl::Fanout(x) => x,
            ExchangeImpl::Topic(x) => x,
            ExchangeImpl::Headers(x) => x,
        }
    }
    pub fn bind(&mut self, key: &str, args: &FieldTable, dest: Dest) {
        self.inner().bind(key, args, dest)
    }
    pub fn unbind(&mut self, key: &str, args: &FieldTable, dest: Dest) {
        self.inner().unbind(key, args, dest)
    }
    #[inline]
    pub fn route(&mut self, key: &[u8], headers: Option<&FieldTable>, out: &mut Vec<Dest>) {
        match self {
            ExchangeImpl::Direct(x) => x.route(key, headers, out),
            ExchangeImpl::Fanout(x) => x.route(key, headers, out),
            ExchangeImpl::Topic(x) => x.route(key, headers, out),
            ExchangeImpl::Headers(x) => x.route(key, headers, out),
        }
    }
    pub fn needs_headers(&self) -> bool {
        matches!(self, ExchangeImpl::Headers(_))
    }
    /// True if `route` looks at the routing key (direct, topic): a message
    /// with sender-selected keys (`CC`/`BCC`) is matched once per key. Fanout
    /// and headers exchanges route once.
    pub fn uses_routing_key(&self) -> bool {
        matches!(self, ExchangeImpl::Direct(_) | ExchangeImpl::Topic(_))
    }
}

/// Removes one occurrence of `dest` from a multiset kept as a Vec.
pub(crate) fn remove_one(v: &mut Vec<Dest>, dest: Dest) {
    if let Some(i) = v.iter().position(|d| *d == dest) {
        v.swap_remove(i);
    }
}
