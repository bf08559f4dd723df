//! Virtual hosts in the definitions: each holds its own exchanges (starting
//! with the default exchange and the `amq.*` set), queues and bindings.
//! Creating one is a record in the log and an event for the shards' routing
//! copies; deleting one is the last step of `vhost_delete` (the shards have
//! closed its connections and deleted its queues by then).

use super::{Binding, DefEvent, Defs, ExchangeDef, QueueDef, PREDECLARED};
use crate::core::error::{CoreError, CoreResult};
use crate::core::ids::VhostId;
use crate::protocol::FieldTable;
use crate::store::defs_log::{Limits, Record};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One vhost's definitions.
pub struct VhostDefs {
    pub id: VhostId,
    pub name: Arc<str>,
    pub meta: VhostMeta,
    pub exchanges: HashMap<String, ExchangeDef>,
    pub queues: HashMap<String, QueueDef>,
    pub bindings: HashSet<Binding>,
    /// Being deleted: no new connection may open on it.
    pub deleting: bool,
}

/// What an operator says about a vhost (RabbitMQ's vhost metadata).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VhostMeta {
    pub description: String,
    pub tags: Vec<String>,
    /// "" when not set (RabbitMQ's default: classic).
    pub default_queue_type: String,
    pub limits: VhostLimits,
}

/// `rabbitmqctl set_vhost_limits`: `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VhostLimits {
    pub max_connections: Option<u64>,
    pub max_queues: Option<u64>,
}

impl VhostLimits {
    /// From RabbitMQ's names; a negative value means no limit.
    pub fn set(&mut self, name: &str, value: i64) -> Result<(), String> {
        let v = u64::try_from(value).ok();
        match name {
            "max-connections" => self.max_connections = v,
            "max-queues" => self.max_queues = v,
            _ => return Err(format!("unknown vhost limit '{}'", name)),
        }
        Ok(())
    }

    /// The limits that are set, by RabbitMQ's names.
    pub fn to_list(&self) -> Limits {
        let mut out = Vec::new();
        if let Some(n) = self.max_connections {
            out.push(("max-connections".to_string(), n as i64));
        }
        if let Some(n) = self.max_queues {
            out.push(("max-queues".to_string(), n as i64));
        }
        out
    }

    pub fn from_list(list: &Limits) -> VhostLimits {
        let mut l = VhostLimits::default();
        for (k, v) in list {
            let _ = l.set(k, *v);
        }
        l
    }
}

impl Defs {
    /// The id of the vhost called `name`.
    pub fn vhost_id(&self, name: &str) -> Option<VhostId> {
        self.vhost_ids.get(name).copied()
    }

    /// Every vhost's (name, id), by name.
    pub fn vhost_ids(&self) -> impl Iterator<Item = (&str, VhostId)> {
        self.vhost_ids.iter().map(|(n, id)| (n.as_str(), *id))
    }

    /// Every vhost, by name.
    pub fn vhosts(&self) -> impl Iterator<Item = &VhostDefs> {
        self.vhost_ids.values().map(|id| &self.vhosts[id])
    }

    /// Creates the in-memory vhost with its predeclared exchanges (no log
    /// record: boot replay and `add_vhost` call this).
    pub(super) fn install_vhost(&mut self, name: &str, meta: VhostMeta) -> VhostId {
        let id = VhostId(self.next_vhost_id);
        self.next_vhost_id += 1;
        let name: Arc<str> = Arc::from(name);
        self.vhosts.insert(
            id,
            VhostDefs {
                id,
                name: name.clone(),
                meta,
                exchanges: HashMap::new(),
                queues: HashMap::new(),
                bindings: HashSet::new(),
                deleting: false,
            },
        );
        self.vhost_ids.insert(name.to_string(), id);
        self.push(DefEvent::VhostAdded { vhost: id, name });
        for &(x, kind, internal) in PREDECLARED {
            self.push(DefEvent::ExchangeAdded {
                vhost: id,
                name: x.into(),
                kind,
                internal,
                alternate: None,
            });
            self.vhosts.get_mut(&id).unwrap().exchanges.insert(
                x.into(),
                ExchangeDef {
                    vhost: id,
                    name: x.into(),
                    kind,
                    durable: true,
                    auto_delete: false,
                    internal,
                    args: FieldTable::default(),
                },
            );
        }
        id
    }

    /// Creates vhost `name`, or updates its metadata if it exists (as
    /// RabbitMQ's `PUT /api/vhosts/{name}` does). Returns its id and whether
    /// it was created.
    pub fn put_vhost(&mut self, name: &str, meta: VhostMeta) -> CoreResult<(VhostId, bool)> {
        check_vhost_name(name)?;
        self.record(|| super::replay::vhost_record(name, &meta));
        if let Some(id) = self.vhost_id(name) {
            let v = self.vhosts.get_mut(&id).unwrap();
            if v.deleting {
                return Err(CoreError::PreconditionFailed(format!(
                    "vhost '{}' is being deleted",
                    name
                )));
            }
            v.meta = meta;
            return Ok((id, false));
        }
        Ok((self.install_vhost(name, meta), true))
    }

    /// Changes one limit of a vhost (`value` < 0: no limit).
    pub fn set_vhost_limit(&mut self, name: &str, limit: &str, value: i64) -> CoreResult<()> {
        let id = self
            .vhost_id(name)
            .ok_or_else(|| CoreError::NotFound(format!("no vhost '{}'", name)))?;
        let mut meta = self.vhosts[&id].meta.clone();
        meta.limits
            .set(limit, value)
            .map_err(CoreError::PreconditionFailed)?;
        self.put_vhost(name, meta).map(|_| ())
    }

    /// Marks a vhost as being deleted: from now on no connection opens on it.
    pub fn start_vhost_delete(&mut self, name: &str) -> CoreResult<VhostId> {
        let id = self
            .vhost_id(name)
            .ok_or_else(|| CoreError::NotFound(format!("no vhost '{}'", name)))?;
        self.vhosts.get_mut(&id).unwrap().deleting = true;
        Ok(id)
    }

    /// Removes a vhost with everything still in it, the permissions and
    /// the runtime parameters on it. Its connections are closed and its
    /// queues' runtime state deleted by their shards before this is called.
    pub fn remove_vhost(&mut self, id: VhostId) {
        let Some(v) = self.vhosts.get(&id) else {
            return;
        };
        let name = v.name.to_string();
        let bindings: Vec<Binding> = v.bindings.iter().cloned().collect();
        let queues: Vec<(String, crate::core::ids::QueueRef)> = v
            .queues
            .values()
            .map(|q| (q.name.clone(), q.queue))
            .collect();
        let exchanges: Vec<String> = v.exchanges.keys().cloned().collect();
        for b in bindings {
            self.remove_binding(&b);
        }
        for (q, r) in queues {
            self.remove_queue(id, &q, r);
        }
        for x in exchanges {
            self.remove_exchange(id, &x);
        }
        self.tenancy.forget_vhost(&name);
        self.clear_vhost_parameters(&name);
        self.record(|| Record::VhostDelete { name: name.clone() });
        self.vhosts.remove(&id);
        self.vhost_ids.remove(&name);
        self.rights_changed();
        self.push(DefEvent::VhostRemoved { vhost: id });
    }

    /// The defaults of a fresh data directory exist.
    pub fn initialized(&self) -> bool {
        self.initialized
    }

    pub(super) fn mark_initialized(&mut self) {
        self.initialized = true;
        self.record(|| Record::Initialized);
    }
}

/// RabbitMQ accepts any UTF-8 name but the empty one.
fn check_vhost_name(name: &str) -> CoreResult<()> {
    if name.is_empty() {
        return Err(CoreError::PreconditionFailed(
            "vhost name must not be empty".into(),
        ));
    }
    Ok(())
}
