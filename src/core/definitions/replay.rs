//! From the definitions to log records and back: what `Defs` appends for a
//! change, and the replay of a log at boot (`Definitions::open`).

use super::{Binding, BindingDest, ExchangeDef, QueueDef, PREDECLARED};
use crate::core::exchange::ExchangeKind;
use crate::core::ids::QueueRef;
use crate::store::defs_log::{BindingRecord, DestKind, Record};
use std::collections::{HashMap, HashSet};

pub(super) fn exchange_record(x: &ExchangeDef) -> Record {
    Record::ExchangeDeclare {
        name: x.name.clone(),
        kind: x.kind.as_str().to_string(),
        durable: x.durable,
        auto_delete: x.auto_delete,
        internal: x.internal,
        args: x.args.clone(),
    }
}

pub(super) fn queue_record(q: &QueueDef) -> Record {
    Record::QueueDeclare {
        name: q.name.clone(),
        id: q.store_id,
        home: q.queue.shard,
        auto_delete: q.auto_delete,
        args: q.args.clone(),
    }
}

pub(super) fn binding_record(b: &Binding) -> BindingRecord {
    let (dest_kind, dest) = match &b.dest {
        BindingDest::Queue(n) => (DestKind::Queue, n.clone()),
        BindingDest::Exchange(n) => (DestKind::Exchange, n.clone()),
    };
    BindingRecord {
        source: b.source.clone(),
        dest_kind,
        dest,
        key: b.key.clone(),
        args: b.args.clone(),
    }
}

/// The durable set a log describes, replayed record by record. Every change
/// was logged explicitly (a queue's bindings are removed before the queue), so
/// replay needs no cascades beyond dropping dangling bindings.
pub(super) struct Replay {
    pub(super) exchanges: HashMap<String, ExchangeDef>,
    /// With the home shard from the log.
    pub(super) queues: HashMap<String, (QueueDef, u16)>,
    pub(super) bindings: HashSet<Binding>,
    pub(super) next_store_id: u64,
}

impl Replay {
    pub(super) fn run(records: Vec<Record>) -> Replay {
        let mut r = Replay {
            exchanges: HashMap::new(),
            queues: HashMap::new(),
            bindings: HashSet::new(),
            next_store_id: 1,
        };
        for rec in records {
            r.apply(rec);
        }
        r
    }

    fn apply(&mut self, rec: Record) {
        match rec {
            Record::ExchangeDeclare {
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
                if PREDECLARED.iter().any(|p| p.0 == name) {
                    return;
                }
                let def = ExchangeDef {
                    name: name.clone(),
                    kind,
                    durable,
                    auto_delete,
                    internal,
                    args,
                };
                self.exchanges.insert(name, def);
            }
            Record::ExchangeDelete { name } => {
                self.exchanges.remove(&name);
                self.bindings.retain(|b| {
                    b.source != name && !matches!(&b.dest, BindingDest::Exchange(d) if *d == name)
                });
            }
            Record::QueueDeclare {
                name,
                id,
                home,
                auto_delete,
                args,
            } => {
                self.next_store_id = self.next_store_id.max(id.saturating_add(1));
                let def = QueueDef {
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
                };
                self.queues.insert(name, (def, home));
            }
            Record::QueueDelete { name } => {
                self.queues.remove(&name);
                let dest = BindingDest::Queue(name);
                self.bindings.retain(|b| b.dest != dest);
            }
            Record::BindingAdd(b) => {
                self.bindings.insert(binding_from(b));
            }
            Record::BindingRemove(b) => {
                self.bindings.remove(&binding_from(b));
            }
            Record::NextQueueId(n) => self.next_store_id = self.next_store_id.max(n),
        }
    }
}

fn binding_from(b: BindingRecord) -> Binding {
    let dest = match b.dest_kind {
        DestKind::Queue => BindingDest::Queue(b.dest),
        DestKind::Exchange => BindingDest::Exchange(b.dest),
    };
    Binding::new(b.source, dest, b.key, b.args)
}
