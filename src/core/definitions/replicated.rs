//! Definitions shared by a cluster. The core does no I/O here: the cluster
//! layer (`cluster::defs_sync`, on etcd) plugs in a [`Replicator`], and
//! the definitions use it to keep one order of changes on every node.
//!
//! How a change is made on a clustered node (`Definitions::lock_change`):
//! 1. take this node's change mutex, then the cluster-wide change lock
//!    (`Replicator::acquire`), which tells the sequence number of the last
//!    batch any node wrote;
//! 2. wait until this node's applier has applied every batch up to it
//!    (`Definitions::apply_batch`, driven by the cluster layer), so the
//!    change is checked against the cluster's current definitions;
//! 3. make the change as a single node does; every record it produces,
//!    for transient objects too, goes to `Replicated::pending`;
//! 4. `Defs::commit` appends the pending records as the next batch
//!    (`Replicator::append`, which fails if the lock was lost); the guard's
//!    drop releases the lock and then waits until every live node applied
//!    the batch (`Replicator::wait_applied`), so a `*-ok` written after it
//!    means "visible on the next publish, on any node".
//!
//! Batches of other nodes are applied record by record
//! (`Defs::apply_foreign`), recording nothing. A queue of another node is
//! defined here with a `QueueRef` on [`REMOTE_SHARD`].

use super::{
    Binding, BindingDest, Definitions, Defs, DefsGuard, ExchangeDef, QueueDef, Replay, PREDECLARED,
};
use crate::core::exchange::ExchangeKind;
use crate::core::ids::{QueueRef, VhostId};
use crate::store::defs_log::Record;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The `QueueRef::shard` of a queue held by another node of the cluster.
pub const REMOTE_SHARD: u16 = u16::MAX;

/// `exclusive_owner` of an exclusive queue of a connection on another
/// node: no local connection has this id, so every local use is refused
/// with RESOURCE_LOCKED, as RabbitMQ refuses it.
pub const REMOTE_OWNER: u64 = u64::MAX;

/// How long a change waits for this node's applier to catch up.
const CATCH_UP: Duration = Duration::from_secs(10);

/// The cluster's side of shared definitions (implemented on etcd by
/// `cluster::defs_sync`). Every call may block on the network, bounded.
pub trait Replicator: Send + Sync {
    /// Takes the cluster-wide change lock; returns the sequence number of
    /// the last batch written by any node.
    fn acquire(&self) -> Result<u64, String>;
    /// Appends `batch` (framed records) as number `seq`, if this node
    /// still holds the lock.
    fn append(&self, seq: u64, batch: &[u8]) -> Result<(), String>;
    /// Releases the lock.
    fn release(&self);
    /// Returns once every other live node applied `seq`, or after a
    /// bounded wait.
    fn wait_applied(&self, seq: u64);
    /// A change waits for batches this node has not applied yet: look now.
    fn nudge(&self);
}

/// One batch of another node, to apply in order.
pub struct Batch {
    pub seq: u64,
    pub origin: String,
    pub records: Vec<Record>,
}

/// What applying a batch leaves for the cluster layer to do outside the
/// definitions (never waiting for a shard: a shard may be waiting for
/// the applier).
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// The vhost went: close its connections here and drop its queues'
    /// runtime state.
    VhostDeleted { id: VhostId, name: String },
    /// The user went: close their connections here.
    UserDeleted(String),
    /// Another node leads this node's queue now (elected while this node
    /// was away): the local queue must go (`ShardCtx::demote_queue`).
    QueueMovedAway(QueueRef),
}

/// Shared between the definitions and the threads waiting for the applier.
pub(super) struct Shared {
    pub(super) node: Arc<str>,
    pub(super) rep: Arc<dyn Replicator>,
    /// Serialises this node's changes before the cluster lock.
    pub(super) change: Mutex<()>,
    /// The last batch applied here (mirror of `Replicated::applied`).
    applied: AtomicU64,
    applied_cv: (Mutex<()>, Condvar),
}

impl Shared {
    pub(super) fn new(node: Arc<str>, rep: Arc<dyn Replicator>, applied: u64) -> Shared {
        Shared {
            node,
            rep,
            change: Mutex::new(()),
            applied: AtomicU64::new(applied),
            applied_cv: (Mutex::new(()), Condvar::new()),
        }
    }

    pub(super) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub(super) fn set_applied(&self, seq: u64) {
        let _g = self.applied_cv.0.lock().unwrap_or_else(|e| e.into_inner());
        self.applied.store(seq, Ordering::Release);
        self.applied_cv.1.notify_all();
    }

    /// Waits until the applier reached `seq`; false after `CATCH_UP`.
    pub(super) fn wait_local(&self, seq: u64) -> bool {
        let deadline = Instant::now() + CATCH_UP;
        let mut g = self.applied_cv.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut nudged = false;
        while self.applied() < seq {
            if !nudged {
                self.rep.nudge();
                nudged = true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let step = (deadline - now).min(Duration::from_millis(50));
            g = self
                .applied_cv
                .1
                .wait_timeout(g, step)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if self.applied() < seq {
                self.rep.nudge();
            }
        }
        true
    }
}

/// The clustered state behind the definitions lock.
pub(super) struct Replicated {
    pub(super) shared: Arc<Shared>,
    /// The last batch applied here, ours or another node's.
    pub(super) applied: u64,
    /// Framed records of the change in progress (and any an unreplicated
    /// earlier change left), for the next batch.
    pub(super) pending: Vec<u8>,
    /// Applying another node's batch: record nothing.
    pub(super) foreign: bool,
    /// This guard holds the cluster lock (`lock_change`).
    pub(super) locked: bool,
    /// The last batch this guard appended: peers must apply it before the
    /// `*-ok`.
    pub(super) appended: Option<u64>,
    /// Next slot number for a remote queue's `QueueRef`.
    next_remote_slot: u32,
}

impl Replicated {
    pub(super) fn new(shared: Arc<Shared>, applied: u64) -> Replicated {
        Replicated {
            shared,
            applied,
            pending: Vec::new(),
            foreign: false,
            locked: false,
            appended: None,
            next_remote_slot: 0,
        }
    }

    /// A `QueueRef` for a queue of another node.
    pub(super) fn remote_ref(&mut self) -> QueueRef {
        self.next_remote_slot = self.next_remote_slot.wrapping_add(1);
        QueueRef {
            shard: REMOTE_SHARD,
            slot: self.next_remote_slot,
            gen: 1,
        }
    }
}

impl Definitions {
    /// The definitions of a clustered node: the cluster's batches up to
    /// `applied` (`records`, in order) replayed, this node's durable queues
    /// recovered on their home shards, every other node's queue remote.
    /// Changes go through `rep` from then on. Also returns this node's
    /// queues that cannot have survived its restart (transient or
    /// exclusive), as (vhost, name): the caller deletes them.
    pub fn from_cluster(
        records: Vec<Record>,
        shards: usize,
        node: &str,
        rep: Arc<dyn Replicator>,
        applied: u64,
    ) -> (Definitions, Vec<(String, String)>) {
        let started = std::time::Instant::now();
        let n_records = records.len();
        let shared = Arc::new(Shared::new(Arc::from(node), rep, applied));
        let (defs, stale) = Defs::install(
            Replay::run(records),
            shards,
            Some(Replicated::new(shared.clone(), applied)),
        );
        defs.log_recovered(n_records, started);
        let d = Definitions::from_defs(defs);
        let _ = d.cluster.set(shared);
        (d, stale)
    }

    /// Locks the definitions for a change. On a single node this is
    /// `lock`. On a clustered node it first takes the cluster-wide change
    /// lock and waits until this node applied every batch before it
    /// (`replicated.rs`), so the change is checked against the cluster's
    /// definitions and ordered after them. Blocks for the round trips to
    /// etcd (about a millisecond each here), like the fsync of a durable
    /// change does. If the cluster cannot be reached the change is made
    /// here and its `commit` fails; its records wait for the next change.
    pub fn lock_change(&self) -> DefsGuard<'_> {
        let Some(shared) = self.cluster.get() else {
            return self.lock();
        };
        let change = shared.change.lock().unwrap_or_else(|e| e.into_inner());
        let locked = match shared.rep.acquire() {
            Ok(head) => {
                if shared.wait_local(head) {
                    true
                } else {
                    log::error!(
                        "cluster definitions: this node did not catch up with batch {head} in \
                         time; the change is not replicated"
                    );
                    shared.rep.release();
                    false
                }
            }
            Err(e) => {
                log::error!("cluster definitions: cannot take the change lock: {e}");
                false
            }
        };
        let mut g = self.lock();
        g.change = Some(change);
        if let Some(c) = g.cluster.as_mut() {
            c.locked = locked;
        }
        g
    }

    /// Makes these definitions a cluster's: from now on changes go
    /// through `rep` (`lock_change`), and batches of other nodes come in
    /// through `apply_batch`. `applied` is the last batch the definitions
    /// hold (they were built from the cluster's batches up to it).
    pub fn join_cluster(&self, node: &str, rep: Arc<dyn Replicator>, applied: u64) {
        let shared = Arc::new(Shared::new(Arc::from(node), rep, applied));
        let mut g = self.lock();
        g.cluster = Some(Replicated::new(shared.clone(), applied));
        // A clustered node keeps its definitions in the cluster only.
        g.persist = None;
        drop(g);
        let _ = self.cluster.set(shared);
    }

    /// Tells the cluster that this node's queues `stale` (vhost, name),
    /// transient or exclusive ones of its previous run, are gone.
    pub fn forget_stale_queues(&self, stale: &[(String, String)]) {
        if stale.is_empty() {
            return;
        }
        let mut g = self.lock_change();
        for (vhost, name) in stale {
            g.record(|| Record::QueueDelete {
                vhost: vhost.clone(),
                name: name.clone(),
            });
        }
        if let Err(e) = g.commit() {
            log::warn!("cluster definitions: could not drop this node's old queues: {e}");
        }
    }

    /// Node `node` is gone (its lease ran out): its queues that cannot
    /// outlive it, transient or exclusive, are deleted for every node, as
    /// RabbitMQ deletes a lost node's transient queues. Its durable ones
    /// stay (unavailable until it is back). Returns how many went.
    pub fn forget_lost_node_queues(&self, node: &str) -> usize {
        let doomed = |g: &DefsGuard<'_>| -> Vec<(VhostId, String, QueueRef)> {
            g.vhosts()
                .flat_map(|v| {
                    v.queues
                        .values()
                        .filter(|q| q.node.as_deref() == Some(node))
                        .filter(|q| !q.durable || q.exclusive_owner.is_some())
                        .map(|q| (q.vhost, q.name.clone(), q.queue))
                })
                .collect()
        };
        if doomed(&self.lock()).is_empty() {
            return 0;
        }
        let mut g = self.lock_change();
        let list = doomed(&g);
        for (vid, name, queue) in &list {
            g.remove_queue(*vid, name, *queue);
        }
        if let Err(e) = g.commit() {
            log::warn!("cluster definitions: could not drop the queues of {node}: {e}");
        }
        list.len()
    }

    /// This node is part of a cluster (its definitions are the cluster's).
    pub fn is_clustered(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// The last batch applied here (clustered; else 0).
    pub fn cluster_applied(&self) -> u64 {
        self.cluster.get().map_or(0, |s| s.applied())
    }

    /// Applies another node's batch, if it is the next one. Returns what
    /// the cluster layer must do outside the definitions, or `Err` with the
    /// sequence number expected when `batch` is not it.
    pub fn apply_batch(&self, batch: Batch) -> Result<Vec<Effect>, u64> {
        let mut effects = Vec::new();
        let mut g = self.lock();
        let Some(c) = g.cluster.as_mut() else {
            return Ok(effects);
        };
        if batch.seq <= c.applied {
            return Ok(effects);
        }
        if batch.seq != c.applied + 1 {
            return Err(c.applied + 1);
        }
        c.foreign = true;
        for rec in batch.records {
            g.apply_foreign(rec, &mut effects);
        }
        let c = g.cluster.as_mut().expect("clustered");
        c.foreign = false;
        c.applied = batch.seq;
        c.shared.set_applied(batch.seq);
        Ok(effects)
    }
}

impl Defs {
    /// The node name, when clustered.
    pub fn cluster_node(&self) -> Option<&Arc<str>> {
        self.cluster.as_ref().map(|c| &c.shared.node)
    }

    /// The last batch applied here (0 unclustered).
    pub fn cluster_applied(&self) -> u64 {
        self.cluster.as_ref().map_or(0, |c| c.applied)
    }

    /// Queue `name` is held by `queue` now (`node`: another node; None:
    /// this one), keeping its bindings: the routing copies see it removed
    /// and added again, with its bindings. Recorded (for the cluster) when
    /// this node made the change.
    pub fn rehome_queue(
        &mut self,
        vhost: VhostId,
        name: &str,
        queue: QueueRef,
        node: Option<Arc<str>>,
    ) {
        let Some(v) = self.vhosts.get(&vhost) else {
            return;
        };
        let Some(def) = v.queues.get(name) else {
            return;
        };
        let mut def = def.clone();
        let dest = BindingDest::Queue(name.to_string());
        let bindings: Vec<Binding> = v
            .bindings
            .iter()
            .filter(|b| b.dest == dest)
            .cloned()
            .collect();
        for b in &bindings {
            self.push(super::DefEvent::BindingRemoved(b.clone()));
        }
        self.push(super::DefEvent::QueueRemoved {
            vhost,
            name: name.to_string(),
        });
        def.queue = queue;
        def.node = node;
        if def.node.is_none() {
            def.exclusive_owner = None;
        }
        self.push(super::DefEvent::QueueAdded {
            vhost,
            name: name.to_string(),
            queue,
            exclusive_owner: def.exclusive_owner,
        });
        for b in bindings {
            self.push(super::DefEvent::BindingAdded(b));
        }
        let vname = self.vhost_name(vhost);
        if let Some(me) = self.cluster_node().cloned() {
            self.record_if(true, || {
                super::replay::cluster_queue_record(&vname, &def, &me)
            });
        }
        if let Some(v) = self.vhosts.get_mut(&vhost) {
            v.queues.insert(name.to_string(), def);
        }
    }

    /// The queue with store id `id`, anywhere in the cluster.
    pub fn queue_by_store_id(&self, id: u64) -> Option<&QueueDef> {
        self.vhosts
            .values()
            .flat_map(|v| v.queues.values())
            .find(|q| q.store_id == id && id != 0)
    }

    /// This node's quorum queues (it leads them): (store id, vhost name,
    /// queue name, `x-quorum-initial-group-size`).
    pub fn local_quorum_queues(&self) -> Vec<(u64, String, String, Option<i64>)> {
        let mut out = Vec::new();
        for v in self.vhosts.values() {
            for q in v.queues.values() {
                if q.node.is_none()
                    && q.store_id != 0
                    && crate::core::queue_args::is_quorum(&q.args)
                {
                    let size = q
                        .args
                        .get("x-quorum-initial-group-size")
                        .and_then(|v| v.as_i64());
                    out.push((q.store_id, v.name.to_string(), q.name.clone(), size));
                }
            }
        }
        out
    }

    /// Writes the pending records as the next batch (`Defs::commit`).
    pub(super) fn commit_cluster(&mut self) -> Result<(), String> {
        let Some(c) = &mut self.cluster else {
            return Ok(());
        };
        if c.pending.is_empty() {
            return Ok(());
        }
        if !c.locked {
            // A change made without `lock_change` (or while the cluster
            // was unreachable): its records wait for the next change that
            // holds the lock.
            return Err("the cluster's definitions could not be locked".into());
        }
        let seq = c.applied + 1;
        c.shared.rep.append(seq, &c.pending)?;
        c.pending.clear();
        c.applied = seq;
        c.appended = Some(seq);
        c.shared.set_applied(seq);
        Ok(())
    }

    /// The binding a record names, in this node's vhost numbering (the
    /// replay's conversion, with the vhost looked up).
    fn binding_of(&self, b: crate::store::defs_log::BindingRecord) -> Option<Binding> {
        let (vhost, mut b) = super::replay::binding_from(b);
        b.vhost = self.vhost_id(&vhost)?;
        Some(b)
    }

    /// Applies one record another node wrote.
    pub(super) fn apply_foreign(&mut self, rec: Record, effects: &mut Vec<Effect>) {
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
                let (Some(id), Some(kind)) = (self.vhost_id(&vhost), ExchangeKind::parse(&kind))
                else {
                    return;
                };
                if PREDECLARED.iter().any(|p| p.0 == name) {
                    return;
                }
                self.add_exchange(ExchangeDef {
                    vhost: id,
                    name,
                    kind,
                    durable,
                    auto_delete,
                    internal,
                    args,
                });
            }
            Record::ExchangeDelete { vhost, name } => {
                if let Some(id) = self.vhost_id(&vhost) {
                    self.remove_exchange(id, &name);
                }
            }
            Record::ClusterQueue {
                vhost,
                name,
                id,
                durable,
                auto_delete,
                exclusive,
                owner,
                args,
                ..
            } => {
                let Some(vid) = self.vhost_id(&vhost) else {
                    return;
                };
                self.next_store_id = self.next_store_id.max(id.saturating_add(1));
                let me = self.cluster_node().cloned();
                if me.as_deref() == Some(owner.as_str()) {
                    log::warn!(
                        "cluster definitions: queue '{}' in vhost '{}' is said to be on this \
                         node, which did not declare it; ignored",
                        name,
                        vhost
                    );
                    return;
                }
                if let Some(old) = self.vh(vid).ok().and_then(|v| v.queues.get(&name)) {
                    let (old, old_id) = (old.queue, old.store_id);
                    if old_id == id && id != 0 {
                        // The same queue, led by another node now.
                        let remote = self.cluster.as_mut().map(Replicated::remote_ref);
                        if let Some(remote) = remote {
                            self.rehome_queue(vid, &name, remote, Some(Arc::from(owner)));
                            if old.shard != REMOTE_SHARD {
                                effects.push(Effect::QueueMovedAway(old));
                            }
                        }
                        return;
                    }
                    self.remove_queue(vid, &name, old);
                }
                let queue = self
                    .cluster
                    .as_mut()
                    .map(Replicated::remote_ref)
                    .unwrap_or(QueueRef {
                        shard: REMOTE_SHARD,
                        slot: 0,
                        gen: 1,
                    });
                self.add_queue(QueueDef {
                    vhost: vid,
                    name,
                    queue,
                    durable,
                    auto_delete,
                    exclusive_owner: exclusive.then_some(REMOTE_OWNER),
                    args,
                    store_id: id,
                    node: Some(Arc::from(owner)),
                });
            }
            Record::QueueDeclare { vhost, name, .. } => log::warn!(
                "cluster definitions: queue '{}' in vhost '{}' has no node; ignored",
                name,
                vhost
            ),
            Record::QueueDelete { vhost, name } => {
                let Some(vid) = self.vhost_id(&vhost) else {
                    return;
                };
                let Some(q) = self.vh(vid).ok().and_then(|v| v.queues.get(&name)) else {
                    return;
                };
                if q.queue.shard != REMOTE_SHARD {
                    log::warn!(
                        "cluster definitions: another node deleted queue '{}' in vhost '{}', \
                         which is on this node; kept",
                        name,
                        vhost
                    );
                    return;
                }
                let r = q.queue;
                self.remove_queue(vid, &name, r);
            }
            Record::BindingAdd(b) => {
                if let Some(b) = self.binding_of(b) {
                    self.add_binding(b);
                }
            }
            Record::BindingRemove(b) => {
                if let Some(b) = self.binding_of(b) {
                    self.remove_binding(&b);
                }
            }
            Record::NextQueueId(n) => self.next_store_id = self.next_store_id.max(n),
            Record::VhostPut {
                name,
                description,
                tags,
                default_queue_type,
                limits,
            } => {
                let meta = super::VhostMeta {
                    description,
                    tags,
                    default_queue_type,
                    limits: super::VhostLimits::from_list(&limits),
                };
                let _ = self.put_vhost(&name, meta);
                self.rights_changed();
            }
            Record::VhostDelete { name } => {
                if let Some(id) = self.vhost_id(&name) {
                    self.remove_vhost(id);
                    effects.push(Effect::VhostDeleted { id, name });
                }
            }
            Record::ParameterSet {
                vhost,
                component,
                name,
                value,
            } => {
                if let Ok(v) = serde_json::from_str(&value) {
                    let _ = self.set_parameter(&vhost, &component, &name, v);
                }
            }
            Record::ParameterClear {
                vhost,
                component,
                name,
            } => {
                let _ = self.clear_parameter(&vhost, &component, &name);
            }
            Record::Initialized => self.mark_initialized(),
            rec @ (Record::UserPut { .. }
            | Record::UserDelete { .. }
            | Record::PermissionSet { .. }
            | Record::PermissionClear { .. }
            | Record::TopicPermissionSet { .. }
            | Record::TopicPermissionClear { .. }) => {
                if let Record::UserDelete { name } = &rec {
                    effects.push(Effect::UserDeleted(name.clone()));
                }
                self.tenancy.replay(vec![rec]);
                self.rights_changed();
            }
        }
    }
}
