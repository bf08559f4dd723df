//! The authoritative definitions of the (single) vhost: exchanges, queues and
//! bindings, shared by all shards, plus an append-only change log from which every
//! shard keeps its own lock-free routing copy (`routing.rs`).
//!
//! Why a mutex here: definitions change rarely (declare, bind, delete) and must be
//! totally ordered across shards. Publishing never takes this lock: a shard only
//! reads one atomic (`version`) per publish and locks only when a change happened,
//! to apply the new log entries to its copy. Because a change bumps `version`
//! before the `*-ok` reply is written, a client that has received `bind-ok` finds
//! the binding on its very next publish, on whichever shard that publish lands.

use super::error::{AmqpError, AmqpResult};
use super::exchange::ExchangeKind;
use super::ids::QueueRef;
use crate::protocol::FieldTable;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

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
    pub source: String,
    pub dest: BindingDest,
    pub key: String,
    pub args: FieldTable,
    args_raw: Vec<u8>,
}

impl Binding {
    pub fn new(source: String, dest: BindingDest, key: String, args: FieldTable) -> Binding {
        let mut args_raw = Vec::new();
        args.encode(&mut args_raw);
        Binding {
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
        self.source == o.source
            && self.dest == o.dest
            && self.key == o.key
            && self.args_raw == o.args_raw
    }
}
impl Eq for Binding {}
impl std::hash::Hash for Binding {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.source.hash(h);
        self.dest.hash(h);
        self.key.hash(h);
        self.args_raw.hash(h);
    }
}

/// A declared exchange.
#[derive(Clone, Debug)]
pub struct ExchangeDef {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub args: FieldTable,
}

/// A declared queue. The queue's messages and consumers live on `queue.shard`.
#[derive(Clone, Debug)]
pub struct QueueDef {
    pub name: String,
    pub queue: QueueRef,
    pub durable: bool,
    pub auto_delete: bool,
    /// Connection id of the owner of an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub args: FieldTable,
}

/// One entry of the change log; shards apply them in order.
#[derive(Clone, Debug)]
pub enum DefEvent {
    ExchangeAdded {
        name: String,
        kind: ExchangeKind,
        internal: bool,
    },
    ExchangeRemoved {
        name: String,
    },
    QueueAdded {
        name: String,
        queue: QueueRef,
        exclusive_owner: Option<u64>,
    },
    QueueRemoved {
        name: String,
    },
    BindingAdded(Binding),
    BindingRemoved(Binding),
}

/// Shared definitions: lock for changes, `version` for cheap "anything new?" checks.
pub struct Definitions {
    state: Mutex<Defs>,
    /// Number of log events ever appended; a shard whose applied count differs
    /// must lock and catch up.
    version: AtomicU64,
}

/// The state behind the lock.
pub struct Defs {
    pub exchanges: HashMap<String, ExchangeDef>,
    pub queues: HashMap<String, QueueDef>,
    pub bindings: HashSet<Binding>,
    log: Vec<DefEvent>,
    /// Version number of `log[0]` (the log is trimmed once every shard read it).
    log_base: u64,
    /// Per shard: how many events it has applied.
    cursors: Vec<u64>,
}

/// Exchanges every vhost has from the start (RabbitMQ's set).
pub const PREDECLARED: &[(&str, ExchangeKind, bool)] = &[
    ("", ExchangeKind::Direct, false),
    ("amq.direct", ExchangeKind::Direct, false),
    ("amq.fanout", ExchangeKind::Fanout, false),
    ("amq.topic", ExchangeKind::Topic, false),
    ("amq.headers", ExchangeKind::Headers, false),
    ("amq.match", ExchangeKind::Headers, false),
    ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
];

impl Definitions {
    pub fn new(shards: usize) -> Definitions {
        let mut defs = Defs {
            exchanges: HashMap::new(),
            queues: HashMap::new(),
            bindings: HashSet::new(),
            log: Vec::new(),
            log_base: 0,
            cursors: vec![0; shards],
        };
        for &(name, kind, internal) in PREDECLARED {
            defs.add_exchange(ExchangeDef {
                name: name.into(),
                kind,
                durable: true,
                auto_delete: false,
                internal,
                args: FieldTable::default(),
            });
        }
        let version = defs.log.len() as u64;
        Definitions {
            state: Mutex::new(defs),
            version: AtomicU64::new(version),
        }
    }

    /// Current version; compare with what a shard applied.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Locks the definitions for a change or a catch-up. Not for the publish path
    /// except when `version()` moved.
    pub fn lock(&self) -> DefsGuard<'_> {
        DefsGuard {
            guard: self.state.lock().unwrap_or_else(|e| e.into_inner()),
            version: &self.version,
        }
    }
}

/// Lock guard that publishes the new version when dropped, i.e. after the change
/// is complete and before the caller writes its `*-ok`.
pub struct DefsGuard<'a> {
    guard: MutexGuard<'a, Defs>,
    version: &'a AtomicU64,
}

impl std::ops::Deref for DefsGuard<'_> {
    type Target = Defs;
    fn deref(&self) -> &Defs {
        &self.guard
    }
}
impl std::ops::DerefMut for DefsGuard<'_> {
    fn deref_mut(&mut self) -> &mut Defs {
        &mut self.guard
    }
}
impl Drop for DefsGuard<'_> {
    fn drop(&mut self) {
        let v = self.guard.log_base + self.guard.log.len() as u64;
        self.version.store(v, Ordering::Release);
    }
}

impl Defs {
    fn push(&mut self, e: DefEvent) {
        self.log.push(e);
    }

    /// Events `shard` has not applied yet; marks them applied and trims the log
    /// prefix every shard has read.
    pub fn take_events(&mut self, shard: usize, applied: u64, out: &mut Vec<DefEvent>) -> u64 {
        // A shard's cursor never falls behind the trimmed prefix (trimming
        // stops at the slowest cursor); if that ever broke, fail loudly.
        let start = applied
            .checked_sub(self.log_base)
            .expect("definitions cursor behind trimmed log") as usize;
        out.extend_from_slice(&self.log[start..]);
        let now = self.log_base + self.log.len() as u64;
        self.cursors[shard] = now;
        if self.log.len() > 1024 {
            let min = *self.cursors.iter().min().unwrap();
            let n = (min - self.log_base) as usize;
            self.log.drain(..n);
            self.log_base = min;
        }
        now
    }

    /// Every event from the beginning is no longer available once trimmed, so a
    /// shard starts at 0 before anything is trimmed (all shards start together).
    pub fn add_exchange(&mut self, def: ExchangeDef) {
        self.push(DefEvent::ExchangeAdded {
            name: def.name.clone(),
            kind: def.kind,
            internal: def.internal,
        });
        self.exchanges.insert(def.name.clone(), def);
    }

    /// Removes an exchange and every binding to or from it.
    pub fn remove_exchange(&mut self, name: &str) {
        let doomed: Vec<Binding> = self
            .bindings
            .iter()
            .filter(|b| b.source == name || b.dest == BindingDest::Exchange(name.to_string()))
            .cloned()
            .collect();
        for b in doomed {
            self.remove_binding(&b);
        }
        if self.exchanges.remove(name).is_some() {
            self.push(DefEvent::ExchangeRemoved {
                name: name.to_string(),
            });
        }
    }

    pub fn add_queue(&mut self, def: QueueDef) {
        self.push(DefEvent::QueueAdded {
            name: def.name.clone(),
            queue: def.queue,
            exclusive_owner: def.exclusive_owner,
        });
        self.queues.insert(def.name.clone(), def);
    }

    /// Removes a queue and its bindings (auto-delete exchanges left without
    /// bindings go too). Only the owning shard calls this, when it deletes the
    /// queue's runtime state; `queue` guards against removing a newer namesake.
    pub fn remove_queue(&mut self, name: &str, queue: QueueRef) {
        match self.queues.get(name) {
            Some(q) if q.queue == queue => {}
            _ => return,
        }
        let dest = BindingDest::Queue(name.to_string());
        let doomed: Vec<Binding> = self
            .bindings
            .iter()
            .filter(|b| b.dest == dest)
            .cloned()
            .collect();
        for b in doomed {
            self.remove_binding(&b);
        }
        self.queues.remove(name);
        self.push(DefEvent::QueueRemoved {
            name: name.to_string(),
        });
    }

    pub fn add_binding(&mut self, b: Binding) {
        if self.bindings.insert(b.clone()) {
            self.push(DefEvent::BindingAdded(b));
        }
    }

    /// Removes a binding; an auto-delete source exchange left without bindings is
    /// deleted, as RabbitMQ does.
    pub fn remove_binding(&mut self, b: &Binding) -> bool {
        if !self.bindings.remove(b) {
            return false;
        }
        self.push(DefEvent::BindingRemoved(b.clone()));
        let source = b.source.clone();
        let auto = self
            .exchanges
            .get(&source)
            .map(|e| e.auto_delete)
            .unwrap_or(false);
        if auto && !self.bindings.iter().any(|x| x.source == source) {
            self.remove_exchange(&source);
        }
        true
    }

    pub fn has_bindings_from(&self, exchange: &str) -> bool {
        self.bindings.iter().any(|b| b.source == exchange)
    }

    pub fn exchange(&self, name: &str) -> AmqpResult<&ExchangeDef> {
        self.exchanges
            .get(name)
            .ok_or_else(|| AmqpError::no_exchange(name))
    }

    pub fn queue(&self, name: &str) -> AmqpResult<&QueueDef> {
        self.queues
            .get(name)
            .ok_or_else(|| AmqpError::no_queue(name))
    }
}
