//! From the definitions to log records and back: what `Defs` appends for a
//! change, and the replay of a log at boot (`Definitions::open`).

use super::vhosts::{VhostLimits, VhostMeta};
use super::{Binding, BindingDest, ExchangeDef, QueueDef, PREDECLARED};
use crate::core::exchange::ExchangeKind;
use crate::core::ids::{QueueRef, VhostId};
use crate::store::defs_log::{BindingRecord, DestKind, Record};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Replayed objects get their real vhost id when they are installed.
const UNSET: VhostId = VhostId(0);

pub(super) fn vhost_record(name: &str, m: &VhostMeta) -> Record {
    Record::VhostPut {
        name: name.to_string(),
        description: m.description.clone(),
        tags: m.tags.clone(),
        default_queue_type: m.default_queue_type.clone(),
        limits: m.limits.to_list(),
    }
}

pub(super) fn exchange_record(vhost: &str, x: &ExchangeDef) -> Record {
    Record::ExchangeDeclare {
        vhost: vhost.to_string(),
        name: x.name.clone(),
        kind: x.kind.as_str().to_string(),
        durable: x.durable,
        auto_delete: x.auto_delete,
        internal: x.internal,
        args: x.args.clone(),
    }
}

pub(super) fn queue_record(vhost: &str, q: &QueueDef) -> Record {
    Record::QueueDeclare {
        vhost: vhost.to_string(),
        name: q.name.clone(),
        id: q.store_id,
        home: q.queue.shard,
        auto_delete: q.auto_delete,
        args: q.args.clone(),
    }
}

/// A queue as a cluster carries it: every queue, with its node (this one:
/// its queues are the only ones it records).
pub(super) fn cluster_queue_record(vhost: &str, q: &QueueDef, node: &str) -> Record {
    Record::ClusterQueue {
        vhost: vhost.to_string(),
        name: q.name.clone(),
        id: q.store_id,
        home: q.queue.shard,
        durable: q.durable,
        auto_delete: q.auto_delete,
        exclusive: q.exclusive_owner.is_some(),
        owner: q.node.as_deref().unwrap_or(node).to_string(),
        args: q.args.clone(),
    }
}

pub(super) fn binding_record(vhost: &str, b: &Binding) -> BindingRecord {
    let (dest_kind, dest) = match &b.dest {
        BindingDest::Queue(n) => (DestKind::Queue, n.clone()),
        BindingDest::Exchange(n) => (DestKind::Exchange, n.clone()),
    };
    BindingRecord {
        vhost: vhost.to_string(),
        source: b.source.clone(),
        dest_kind,
        dest,
        key: b.key.clone(),
        args: b.args.clone(),
    }
}

/// One vhost of the durable set.
#[derive(Default)]
pub(super) struct ReplayVhost {
    pub(super) meta: VhostMeta,
    pub(super) exchanges: HashMap<String, ExchangeDef>,
    /// With the home shard from the log.
    pub(super) queues: HashMap<String, (QueueDef, u16)>,
    pub(super) bindings: HashSet<Binding>,
}

/// The durable set a log describes, replayed record by record. Every change
/// was logged explicitly (a queue's bindings are removed before the queue), so
/// replay needs no cascades beyond dropping dangling bindings. A record that
/// names a vhost with no `VhostPut` before it creates the vhost: logs written
/// before vhosts existed hold only `/`'s objects and no vhost record.
pub(super) struct Replay {
    pub(super) vhosts: BTreeMap<String, ReplayVhost>,
    pub(super) next_store_id: u64,
    pub(super) initialized: bool,
    /// User and permission records, in log order (`Tenancy::replay`).
    pub(super) tenancy: Vec<Record>,
    /// Runtime parameters by (vhost, component, name); those of a vhost
    /// that does not exist at the end are dropped by `Definitions::open`.
    pub(super) parameters: BTreeMap<(String, String, String), serde_json::Value>,
}

impl Replay {
    pub(super) fn run(records: Vec<Record>) -> Replay {
        let mut r = Replay {
            vhosts: BTreeMap::new(),
            next_store_id: 1,
            initialized: false,
            tenancy: Vec::new(),
            parameters: BTreeMap::new(),
        };
        for rec in records {
            r.apply(rec);
        }
        r
    }

    fn vhost(&mut self, name: String) -> &mut ReplayVhost {
        self.vhosts.entry(name).or_default()
    }

    fn apply(&mut self, rec: Record) {
        match rec {
            Record::ExchangeDeclare {
                vhost,
                name,
                kind,
                durable,
                auto_delete,
                internal,
                args,
            } => {
                let Some(kind) = ExchangeKind::parse(&kind) else {
                    log::warn!(
                        "definitions log: exchange '{}' of unknown type '{}' skipped",
                        name,
                        kind
                    );
                    return;
                };
                let v = self.vhost(vhost);
                if PREDECLARED.iter().any(|p| p.0 == name) {
                    return;
                }
                let def = ExchangeDef {
                    vhost: UNSET,
                    name: name.clone(),
                    kind,
                    durable,
                    auto_delete,
                    internal,
                    args,
                };
                v.exchanges.insert(name, def);
            }
            Record::ExchangeDelete { vhost, name } => {
                let v = self.vhost(vhost);
                v.exchanges.remove(&name);
                v.bindings.retain(|b| {
                    b.source != name && !matches!(&b.dest, BindingDest::Exchange(d) if *d == name)
                });
            }
            Record::QueueDeclare {
                vhost,
                name,
                id,
                home,
                auto_delete,
                args,
            } => {
                self.next_store_id = self.next_store_id.max(id.saturating_add(1));
                let def = QueueDef {
                    vhost: UNSET,
                    name: name.clone(),
                    // Assigned once the shard count is known.
                    queue: QueueRef {
                        shard: 0,
                        slot: 0,
                        gen: 0,
                    },
                    durable: true,
                    auto_delete,
                    exclusive_owner: None,
                    args,
                    store_id: id,
                    node: None,
                };
                self.vhost(vhost).queues.insert(name, (def, home));
            }
            Record::ClusterQueue {
                vhost,
                name,
                id,
                home,
                durable,
                auto_delete,
                exclusive,
                owner,
                args,
            } => {
                self.next_store_id = self.next_store_id.max(id.saturating_add(1));
                let def = QueueDef {
                    vhost: UNSET,
                    name: name.clone(),
                    queue: QueueRef {
                        shard: 0,
                        slot: 0,
                        gen: 0,
                    },
                    durable,
                    auto_delete,
                    exclusive_owner: exclusive.then_some(super::REMOTE_OWNER),
                    args,
                    store_id: id,
                    node: Some(std::sync::Arc::from(owner)),
                };
                self.vhost(vhost).queues.insert(name, (def, home));
            }
            Record::QueueDelete { vhost, name } => {
                let v = self.vhost(vhost);
                v.queues.remove(&name);
                let dest = BindingDest::Queue(name);
                v.bindings.retain(|b| b.dest != dest);
            }
            Record::BindingAdd(b) => {
                let (vhost, b) = binding_from(b);
                self.vhost(vhost).bindings.insert(b);
            }
            Record::BindingRemove(b) => {
                let (vhost, b) = binding_from(b);
                self.vhost(vhost).bindings.remove(&b);
            }
            Record::NextQueueId(n) => self.next_store_id = self.next_store_id.max(n),
            Record::VhostPut {
                name,
                description,
                tags,
                default_queue_type,
                limits,
            } => {
                self.vhost(name).meta = VhostMeta {
                    description,
                    tags,
                    default_queue_type,
                    limits: VhostLimits::from_list(&limits),
                };
            }
            Record::VhostDelete { name } => {
                self.vhosts.remove(&name);
                self.parameters.retain(|(vhost, _, _), _| *vhost != name);
                self.tenancy.push(Record::VhostDelete { name });
            }
            Record::ParameterSet {
                vhost,
                component,
                name,
                value,
            } => match serde_json::from_str(&value) {
                Ok(v) => {
                    self.parameters.insert((vhost, component, name), v);
                }
                Err(e) => log::warn!(
                    "definitions log: parameter '{}' of component '{}' in vhost '{}' skipped: \
                     its value is not JSON ({})",
                    name,
                    component,
                    vhost,
                    e
                ),
            },
            Record::ParameterClear {
                vhost,
                component,
                name,
            } => {
                self.parameters.remove(&(vhost, component, name));
            }
            Record::Initialized => self.initialized = true,
            rec @ (Record::UserPut { .. }
            | Record::UserDelete { .. }
            | Record::PermissionSet { .. }
            | Record::PermissionClear { .. }
            | Record::TopicPermissionSet { .. }
            | Record::TopicPermissionClear { .. }) => self.tenancy.push(rec),
        }
    }
}

pub(super) fn binding_from(b: BindingRecord) -> (String, Binding) {
    let dest = match b.dest_kind {
        DestKind::Queue => BindingDest::Queue(b.dest),
        DestKind::Exchange => BindingDest::Exchange(b.dest),
    };
    (b.vhost, Binding::new(UNSET, b.source, dest, b.key, b.args))
}
