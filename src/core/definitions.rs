//! The authoritative definitions: vhosts, and in each its exchanges, queues
//! and bindings, shared by all shards, plus an append-only change log from
//! which every shard keeps its own lock-free routing copy (`routing.rs`).
//! Users and permissions (`tenancy.rs`) sit behind the same lock and in the
//! same log.
//!
//! Every exchange, queue and binding belongs to exactly one vhost
//! ([`VhostId`]); the same name in two vhosts is two objects.
//!
//! Why a mutex here: definitions change rarely (declare, bind, delete) and must be
//! totally ordered across shards. Publishing never takes this lock: a shard only
//! reads one atomic (`version`) per publish and locks only when a change happened,
//! to apply the new log entries to its copy. Because a change bumps `version`
//! before the `*-ok` reply is written, a client that has received `bind-ok` finds
//! the binding on its very next publish, on whichever shard that publish lands.
//!
//! Durability: [`Definitions::open`] reads `<data_dir>/definitions.log`
//! (`store::defs_log`), replays it, and from then on every change to a durable
//! exchange, a durable non-exclusive queue or a binding between two durable
//! ends is appended to it under the lock and synced before the lock is released
//! (`Defs::commit`, or at the latest `DefsGuard::drop`), so before the `*-ok`.
//! Recovered queues get a `QueueRef` on their home shard, which creates the
//! empty `Queue` objects before it serves anyone (`ShardCtx::recover_queues`).

use super::access::UserAccess;
use super::error::{CoreError, CoreResult};
use super::exchange::ExchangeKind;
use super::ids::{QueueRef, VhostId};
use super::tenancy::Tenancy;
use crate::store::defs_log::{DefsLog, Record};
use replay::{
    binding_record, cluster_queue_record, exchange_record, queue_record, vhost_record, Replay,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

mod boot;
mod parameters;
mod replay;
mod replicated;
mod users;
mod vhosts;

mod types;

pub use parameters::Parameter;
pub use replicated::{Batch, Effect, Replicator, REMOTE_OWNER, REMOTE_SHARD};
pub use types::{Binding, BindingDest, DefEvent, ExchangeDef, QueueDef};
pub use users::{LiveCounts, OpenError};
pub use vhosts::{VhostDefs, VhostLimits, VhostMeta};

/// Shared definitions: lock for changes, `version` for cheap "anything new?" checks.
pub struct Definitions {
    state: Mutex<Defs>,
    /// Number of log events ever appended; a shard whose applied count differs
    /// must lock and catch up.
    version: AtomicU64,
    /// Moves when users, permissions or vhosts change: connections rebuild
    /// their `UserAccess` on their next tick.
    auth_version: AtomicU64,
    /// Moves on every change of the runtime parameters (`parameters.rs`).
    parameters_version: AtomicU64,
    log_fault: LogFault,
    /// Set when the node is clustered (`Definitions::join_cluster`).
    cluster: std::sync::OnceLock<Arc<replicated::Shared>>,
}

/// The state behind the lock.
pub struct Defs {
    vhosts: HashMap<VhostId, VhostDefs>,
    /// Vhost names to ids, sorted (listings).
    vhost_ids: std::collections::BTreeMap<String, VhostId>,
    next_vhost_id: u32,
    log: Vec<DefEvent>,
    /// Version number of `log[0]` (the log is trimmed once every shard read it).
    log_base: u64,
    /// Per shard: how many events it has applied.
    cursors: Vec<u64>,
    /// The definitions log and the records of the change in progress, for a
    /// broker with a data directory (`Definitions::open`).
    persist: Option<Persist>,
    /// Next `QueueDef::store_id` to hand out.
    next_store_id: u64,
    /// Per shard: recovered queues whose `Queue` objects it must create.
    recovered: Vec<Vec<QueueDef>>,
    /// Users, permissions, limits.
    pub tenancy: Tenancy,
    /// The defaults of a fresh data directory exist (`bootstrap`).
    initialized: bool,
    /// Connections open now (limits).
    pub live: LiveCounts,
    /// Users or permissions changed under this lock: `auth_version` moves.
    auth_changed: bool,
    /// Vhost runtime parameters by (vhost, component, name)
    /// (`parameters.rs`).
    parameters: std::collections::BTreeMap<(String, String, String), serde_json::Value>,
    /// Parameters changed under this lock: `parameters_version` moves.
    parameters_changed: bool,
    /// Compiled rights per (user, vhost), shared by that user's connections
    /// (`Defs::shared_access`): a permission's three regular expressions
    /// cost ~22 KiB compiled (heaptrack), too much to hold once per
    /// connection. Emptied whenever users, permissions or vhosts change.
    access_cache: HashMap<(String, String), Arc<UserAccess>>,
    /// The cluster's shared definitions, when clustered (`replicated.rs`).
    cluster: Option<replicated::Replicated>,
}

struct Persist {
    log: DefsLog,
    /// Framed records not yet written (written and synced by `Defs::commit`).
    /// After a failed write they stay, in order, and go with the next commit
    /// (shard 0 retries on its tick: `Definitions::retry_log`).
    pending: Vec<u8>,
    /// The last write failed, with this error: the disk alarm is raised.
    failed: Option<String>,
    /// Bytes of `pending` that failed commits left (earlier changes').
    left: usize,
}

/// The definitions log's failure state as seen without the lock: the alarm
/// to raise and a flag for the retry.
#[derive(Default)]
struct LogFault {
    failed: std::sync::atomic::AtomicBool,
    alarms: std::sync::OnceLock<std::sync::Arc<super::alarms::Alarms>>,
}

/// The log is rewritten at boot once it holds more than this many records
/// beyond twice the live set.
const COMPACT_SLACK: usize = 1000;
/// `QueueRef::gen` of recovered queues; a shard's own generations start above it.
pub const RECOVERED_GEN: u32 = 1;

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
    /// Definitions that live in memory only (benches, unit tests): the vhost
    /// `/` and nothing else; nothing survives the process.
    pub fn new(shards: usize) -> Definitions {
        let mut defs = Defs::empty(shards);
        defs.install_vhost(super::vhost::DEFAULT_VHOST, VhostMeta::default());
        Definitions::from_defs(defs)
    }

    /// Definitions backed by `<data_dir>/definitions.log`: replays it (a
    /// damaged tail is cut off with a warning), compacts it if it holds far
    /// more records than the live set, and persists every durable change
    /// from then on. The recovered queues wait in `Defs::take_recovered` for
    /// their shards. A fresh data directory has no vhost and no user yet:
    /// the caller creates them (`Defs::bootstrap`) when `Defs::initialized`
    /// says so.
    pub fn open(data_dir: &Path, shards: usize) -> std::io::Result<Definitions> {
        let started = std::time::Instant::now();
        let (mut log, records) = DefsLog::open(data_dir)?;
        let n_records = records.len();
        let (defs, _) = Defs::install(Replay::run(records), shards, None);
        let live = defs.live_records();
        if n_records > 2 * live.len() + COMPACT_SLACK {
            log.rewrite(&live)?;
            log::info!(
                "definitions log compacted from {} to {} records",
                n_records,
                live.len()
            );
        }
        defs.log_recovered(n_records, started);
        let mut defs = defs;
        defs.persist = Some(Persist {
            log,
            pending: Vec::new(),
            failed: None,
            left: 0,
        });
        Ok(Definitions::from_defs(defs))
    }

    fn from_defs(defs: Defs) -> Definitions {
        let version = defs.log_base + defs.log.len() as u64;
        Definitions {
            state: Mutex::new(defs),
            version: AtomicU64::new(version),
            auth_version: AtomicU64::new(1),
            parameters_version: AtomicU64::new(1),
            log_fault: LogFault::default(),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// The alarms a failing definitions log raises (set once, at start).
    pub fn set_alarms(&self, alarms: std::sync::Arc<super::alarms::Alarms>) {
        let _ = self.log_fault.alarms.set(alarms);
    }

    /// The definitions log failed its last write: records wait to be written.
    pub fn log_failed(&self) -> bool {
        self.log_fault.failed.load(Ordering::Acquire)
    }

    /// Writes what a failed commit left (shard 0's tick, while
    /// `log_failed`); the alarm clears if it goes through.
    pub fn retry_log(&self) {
        // The guard's drop commits and updates the fault.
        drop(self.lock());
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
            guard: Some(self.state.lock().unwrap_or_else(|e| e.into_inner())),
            change: None,
            version: &self.version,
            auth_version: &self.auth_version,
            parameters_version: &self.parameters_version,
            log_fault: &self.log_fault,
        }
    }

    /// The current auth version (see `auth_version`).
    #[inline]
    pub fn auth_version(&self) -> u64 {
        self.auth_version.load(Ordering::Acquire)
    }

    /// Moves on every change of the runtime parameters (set, clear, the
    /// deletion of a vhost that had some, import): a supervisor polls it
    /// without the lock and re-reads `Defs::parameters` only when it moved.
    #[inline]
    pub fn parameters_version(&self) -> u64 {
        self.parameters_version.load(Ordering::Acquire)
    }
}

/// Lock guard that publishes the new version when dropped, i.e. after the change
/// is complete and before the caller writes its `*-ok`.
pub struct DefsGuard<'a> {
    /// Taken only by `drop`, to release the lock before waiting for the
    /// other nodes.
    guard: Option<MutexGuard<'a, Defs>>,
    /// This node's change mutex (`lock_change` on a clustered node).
    change: Option<MutexGuard<'a, ()>>,
    version: &'a AtomicU64,
    auth_version: &'a AtomicU64,
    parameters_version: &'a AtomicU64,
    log_fault: &'a LogFault,
}

impl DefsGuard<'_> {
    /// The auth version as it will be once this change is published.
    pub fn auth_version(&self) -> u64 {
        self.auth_version.load(Ordering::Acquire) + self.auth_changed as u64
    }
}

impl std::ops::Deref for DefsGuard<'_> {
    type Target = Defs;
    fn deref(&self) -> &Defs {
        self.guard.as_ref().expect("taken only by drop")
    }
}
impl std::ops::DerefMut for DefsGuard<'_> {
    fn deref_mut(&mut self) -> &mut Defs {
        self.guard.as_mut().expect("taken only by drop")
    }
}
impl Drop for DefsGuard<'_> {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        // Handlers that answer a client commit themselves, to report a failure;
        // this catches the rest (deletions by the owning shard, cascades).
        let _ = guard.commit();
        let failed = guard.persist.as_ref().and_then(|p| p.failed.as_deref());
        if failed.is_some() != self.log_fault.failed.load(Ordering::Acquire) {
            self.log_fault
                .failed
                .store(failed.is_some(), Ordering::Release);
            if let Some(a) = self.log_fault.alarms.get() {
                a.set_store_fault(super::alarms::FaultSource::Definitions, failed);
            }
        }
        let v = guard.log_base + guard.log.len() as u64;
        self.version.store(v, Ordering::Release);
        if std::mem::take(&mut guard.auth_changed) {
            self.auth_version.fetch_add(1, Ordering::AcqRel);
        }
        if std::mem::take(&mut guard.parameters_changed) {
            self.parameters_version.fetch_add(1, Ordering::AcqRel);
        }
        // A clustered change: release the cluster lock, then (with no lock
        // held) wait until the other nodes applied it.
        let mut wait = None;
        if let Some(c) = guard.cluster.as_mut() {
            if std::mem::take(&mut c.locked) {
                c.shared.rep.release();
            }
            wait = c.appended.take().map(|seq| (c.shared.clone(), seq));
        }
        drop(guard);
        self.change = None;
        if let Some((shared, seq)) = wait {
            shared.rep.wait_applied(seq);
        }
    }
}

impl Defs {
    /// Builds the live definitions from a replayed log. `cluster`: the
    /// node is clustered, and queues of other nodes become remote; this
    /// node's queues that do not survive a restart are left out and
    /// returned as (vhost, name).
    fn install(
        replayed: Replay,
        shards: usize,
        cluster: Option<replicated::Replicated>,
    ) -> (Defs, Vec<(String, String)>) {
        let mut defs = Defs::empty(shards);
        defs.cluster = cluster;
        if let Some(c) = defs.cluster.as_mut() {
            c.foreign = true;
        }
        let me = defs.cluster_node().cloned();
        defs.next_store_id = replayed.next_store_id;
        defs.initialized = replayed.initialized;
        let mut slots = vec![0u32; shards];
        let mut all_queues: Vec<(VhostId, QueueDef, u16)> = Vec::new();
        let mut all_bindings = Vec::new();
        for (name, v) in replayed.vhosts {
            let id = defs.install_vhost(&name, v.meta);
            let mut exchanges: Vec<ExchangeDef> = v.exchanges.into_values().collect();
            exchanges.sort_by(|a, b| a.name.cmp(&b.name));
            for mut x in exchanges {
                x.vhost = id;
                defs.add_exchange(x);
            }
            all_queues.extend(v.queues.into_values().map(|(q, home)| (id, q, home)));
            all_bindings.extend(v.bindings.into_iter().map(|mut b| {
                b.vhost = id;
                b
            }));
        }
        // Each shard's recovered queues take its first slots, in id order.
        all_queues
            .sort_by(|(_, a, _), (_, b, _)| (a.store_id, &a.name).cmp(&(b.store_id, &b.name)));
        let mut stale = Vec::new();
        for (vhost, mut q, home) in all_queues {
            q.vhost = vhost;
            let mine = q.node.is_none() || q.node == me;
            if !mine {
                q.queue = defs
                    .cluster
                    .as_mut()
                    .map(replicated::Replicated::remote_ref)
                    .expect("only a clustered node has remote queues");
                defs.add_queue(q);
                continue;
            }
            q.node = None;
            if !q.durable || q.exclusive_owner.is_some() {
                stale.push((defs.vhost_name(vhost).to_string(), q.name));
                continue;
            }
            let shard = home as usize % shards;
            q.queue = QueueRef {
                shard: shard as u16,
                slot: slots[shard],
                gen: RECOVERED_GEN,
            };
            slots[shard] += 1;
            defs.recovered[shard].push(q.clone());
            defs.add_queue(q);
        }
        for b in all_bindings {
            let v = &defs.vhosts[&b.vhost];
            let dest_ok = match &b.dest {
                BindingDest::Queue(n) => v.queues.contains_key(n),
                BindingDest::Exchange(n) => v.exchanges.contains_key(n),
            };
            if dest_ok && v.exchanges.contains_key(&b.source) {
                defs.add_binding(b);
            }
        }
        defs.tenancy.replay(replayed.tenancy);
        defs.parameters = replayed.parameters;
        defs.parameters
            .retain(|(vhost, _, _), _| defs.vhost_ids.contains_key(vhost));
        if let Some(c) = defs.cluster.as_mut() {
            c.foreign = false;
        }
        (defs, stale)
    }

    fn log_recovered(&self, n_records: usize, started: std::time::Instant) {
        let (mut nx, mut nq, mut nb) = (0, 0, 0);
        for v in self.vhosts.values() {
            nx += v.exchanges.len() - PREDECLARED.len();
            nq += v.queues.len();
            nb += v.bindings.len();
        }
        log::info!(
            "recovered {} vhost(s), {} user(s), {} durable exchange(s), {} queue(s), {} binding(s), {} parameter(s) from {} record(s) in {:?}",
            self.vhosts.len(),
            self.tenancy.users.len(),
            nx,
            nq,
            nb,
            self.parameters.len(),
            n_records,
            started.elapsed()
        );
    }

    fn empty(shards: usize) -> Defs {
        Defs {
            vhosts: HashMap::new(),
            vhost_ids: Default::default(),
            next_vhost_id: 1,
            tenancy: Tenancy::default(),
            initialized: false,
            live: LiveCounts::default(),
            auth_changed: false,
            access_cache: HashMap::new(),
            parameters: Default::default(),
            parameters_changed: false,
            log: Vec::new(),
            log_base: 0,
            cursors: vec![0; shards],
            persist: None,
            next_store_id: 1,
            recovered: vec![Vec::new(); shards],
            cluster: None,
        }
    }

    fn push(&mut self, e: DefEvent) {
        self.log.push(e);
    }

    /// Queues `record()` for the definitions log, if there is one.
    fn record(&mut self, record: impl FnOnce() -> Record) {
        self.record_if(true, record);
    }

    /// Queues `record()` for the definitions log if `durable`, and for the
    /// cluster (every change, durable or not) when clustered.
    fn record_if(&mut self, durable: bool, record: impl FnOnce() -> Record) {
        if let Some(c) = &mut self.cluster {
            if !c.foreign {
                record().encode(&mut c.pending);
            }
            return;
        }
        if let Some(p) = &mut self.persist {
            if durable {
                record().encode(&mut p.pending);
            }
        }
    }

    /// Writes and syncs the records of the change in progress (and any a
    /// failed commit left). A durable `*-ok` must mean durable, so the
    /// handlers call this before replying. On failure the records stay
    /// pending, in order, for the next commit, the disk alarm is raised
    /// (when the guard drops), and the error is `CoreError::Unavailable`: a
    /// declare undoes itself (`core::ops`) and the client gets a channel
    /// error.
    pub fn commit(&mut self) -> CoreResult<()> {
        if self.cluster.is_some() {
            return self.commit_cluster().map_err(|e| {
                CoreError::Unavailable(format!(
                    "the change cannot be replicated to the cluster: {e}"
                ))
            });
        }
        let Some(p) = &mut self.persist else {
            return Ok(());
        };
        if p.pending.is_empty() {
            return Ok(());
        }
        match p.log.append(&p.pending) {
            Ok(()) => {
                p.pending.clear();
                p.left = 0;
                if p.failed.take().is_some() {
                    log::warn!("the definitions log is written again");
                }
                Ok(())
            }
            Err(e) => {
                if p.failed.is_none() {
                    log::error!("cannot write the definitions log: {e}; retrying");
                }
                p.failed = Some(e.to_string());
                // A change that wrote nothing itself (a transient exchange,
                // say) does not fail for the earlier ones still waiting.
                let mine = p.pending.len() > p.left;
                p.left = p.pending.len();
                if !mine {
                    return Ok(());
                }
                Err(CoreError::Unavailable(format!(
                    "the change cannot be made durable: the definitions log cannot be \
                     written ({e})"
                )))
            }
        }
    }

    /// A fresh, never reused `QueueDef::store_id` for a new durable queue.
    pub fn next_store_id(&mut self) -> u64 {
        let id = self.next_store_id;
        self.next_store_id += 1;
        id
    }

    /// The store ids of the recovered streams (before the shards take
    /// their queues): the stream directories to keep at boot.
    pub fn recovered_streams(&self) -> std::collections::HashSet<u64> {
        self.recovered
            .iter()
            .flatten()
            .filter(|d| super::queue_args::is_stream(&d.args))
            .map(|d| d.store_id)
            .collect()
    }

    /// The recovered queues `shard` must create (once, at its start).
    pub fn take_recovered(&mut self, shard: usize) -> Vec<QueueDef> {
        self.recovered
            .get_mut(shard)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The vhost `id`'s definitions. A connection's vhost can vanish under
    /// it (vhost deletion closes the connection a moment later).
    pub fn vh(&self, id: VhostId) -> CoreResult<&VhostDefs> {
        self.vhosts
            .get(&id)
            .ok_or_else(|| CoreError::NotFound("vhost is being deleted".into()))
    }

    fn vh_mut(&mut self, id: VhostId) -> Option<&mut VhostDefs> {
        self.vhosts.get_mut(&id)
    }

    /// The name of vhost `id` ("" if it is gone).
    pub fn vhost_name(&self, id: VhostId) -> Arc<str> {
        self.vhosts
            .get(&id)
            .map(|v| v.name.clone())
            .unwrap_or_else(|| Arc::from(""))
    }

    fn exchange_durable(&self, vhost: VhostId, name: &str) -> bool {
        self.vhosts
            .get(&vhost)
            .and_then(|v| v.exchanges.get(name))
            .is_some_and(|x| x.durable)
    }

    /// Survives a restart: both ends do.
    fn binding_durable(&self, b: &Binding) -> bool {
        self.exchange_durable(b.vhost, &b.source)
            && match &b.dest {
                BindingDest::Queue(n) => self
                    .vhosts
                    .get(&b.vhost)
                    .and_then(|v| v.queues.get(n))
                    .is_some_and(|q| q.persistent()),
                BindingDest::Exchange(n) => self.exchange_durable(b.vhost, n),
            }
    }

    /// The durable definitions as log records (for compaction).
    fn live_records(&self) -> Vec<Record> {
        let mut out = vec![Record::NextQueueId(self.next_store_id)];
        if self.initialized {
            out.push(Record::Initialized);
        }
        let predeclared = |n: &str| PREDECLARED.iter().any(|p| p.0 == n);
        for (name, id) in &self.vhost_ids {
            let v = &self.vhosts[id];
            out.push(vhost_record(name, &v.meta));
            for x in v.exchanges.values() {
                if x.durable && !predeclared(&x.name) {
                    out.push(exchange_record(name, x));
                }
            }
            for q in v.queues.values().filter(|q| q.persistent()) {
                out.push(queue_record(name, q));
            }
            for b in &v.bindings {
                if self.binding_durable(b) {
                    out.push(Record::BindingAdd(binding_record(name, b)));
                }
            }
        }
        self.tenancy.live_records(&mut out);
        self.parameter_records(&mut out);
        out
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

    /// Adds an exchange to its vhost (which must exist).
    pub fn add_exchange(&mut self, def: ExchangeDef) {
        let vname = self.vhost_name(def.vhost);
        self.record_if(def.durable, || exchange_record(&vname, &def));
        self.push(DefEvent::ExchangeAdded {
            vhost: def.vhost,
            name: def.name.clone(),
            kind: def.kind,
            internal: def.internal,
            alternate: def.alternate().map(str::to_string),
        });
        if let Some(v) = self.vh_mut(def.vhost) {
            v.exchanges.insert(def.name.clone(), def);
        }
    }

    /// Removes an exchange and every binding to or from it.
    pub fn remove_exchange(&mut self, vhost: VhostId, name: &str) {
        let Some(v) = self.vhosts.get(&vhost) else {
            return;
        };
        let doomed: Vec<Binding> = v
            .bindings
            .iter()
            .filter(|b| b.source == name || b.dest == BindingDest::Exchange(name.to_string()))
            .cloned()
            .collect();
        for b in doomed {
            self.remove_binding(&b);
        }
        let vname = self.vhost_name(vhost);
        let removed = self.vh_mut(vhost).and_then(|v| v.exchanges.remove(name));
        if let Some(x) = removed {
            self.record_if(x.durable, || Record::ExchangeDelete {
                vhost: vname.to_string(),
                name: name.to_string(),
            });
            self.push(DefEvent::ExchangeRemoved {
                vhost,
                name: name.to_string(),
            });
        }
    }

    /// Adds a queue to its vhost (which must exist).
    pub fn add_queue(&mut self, def: QueueDef) {
        let vname = self.vhost_name(def.vhost);
        let node = self.cluster_node().cloned();
        match node {
            Some(node) => self.record_if(true, || cluster_queue_record(&vname, &def, &node)),
            None => self.record_if(def.persistent(), || queue_record(&vname, &def)),
        }
        self.push(DefEvent::QueueAdded {
            vhost: def.vhost,
            name: def.name.clone(),
            queue: def.queue,
            exclusive_owner: def.exclusive_owner,
        });
        if let Some(v) = self.vh_mut(def.vhost) {
            v.queues.insert(def.name.clone(), def);
        }
    }

    /// Removes a queue and its bindings (auto-delete exchanges left without
    /// bindings go too). Only the owning shard calls this, when it deletes the
    /// queue's runtime state; `queue` guards against removing a newer namesake.
    pub fn remove_queue(&mut self, vhost: VhostId, name: &str, queue: QueueRef) {
        let Some(v) = self.vhosts.get(&vhost) else {
            return;
        };
        match v.queues.get(name) {
            Some(q) if q.queue == queue => {}
            _ => return,
        }
        let dest = BindingDest::Queue(name.to_string());
        let doomed: Vec<Binding> = v
            .bindings
            .iter()
            .filter(|b| b.dest == dest)
            .cloned()
            .collect();
        for b in doomed {
            self.remove_binding(&b);
        }
        let vname = self.vhost_name(vhost);
        let removed = self.vh_mut(vhost).and_then(|v| v.queues.remove(name));
        if let Some(q) = removed {
            self.record_if(q.persistent(), || Record::QueueDelete {
                vhost: vname.to_string(),
                name: name.to_string(),
            });
        }
        self.push(DefEvent::QueueRemoved {
            vhost,
            name: name.to_string(),
        });
    }

    pub fn add_binding(&mut self, b: Binding) {
        let Some(v) = self.vh_mut(b.vhost) else {
            return;
        };
        if v.bindings.insert(b.clone()) {
            let vname = self.vhost_name(b.vhost);
            let durable = self.binding_durable(&b);
            self.record_if(durable, || Record::BindingAdd(binding_record(&vname, &b)));
            self.push(DefEvent::BindingAdded(b));
        }
    }

    /// Removes a binding; an auto-delete source exchange left without bindings is
    /// deleted, as RabbitMQ does.
    pub fn remove_binding(&mut self, b: &Binding) -> bool {
        let Some(v) = self.vh_mut(b.vhost) else {
            return false;
        };
        if !v.bindings.remove(b) {
            return false;
        }
        // Both ends still exist here: a queue or exchange is removed after
        // its bindings.
        let vname = self.vhost_name(b.vhost);
        let durable = self.binding_durable(b);
        self.record_if(durable, || Record::BindingRemove(binding_record(&vname, b)));
        self.push(DefEvent::BindingRemoved(b.clone()));
        let v = &self.vhosts[&b.vhost];
        let source = b.source.clone();
        let auto = v
            .exchanges
            .get(&source)
            .map(|e| e.auto_delete)
            .unwrap_or(false);
        if auto && !v.bindings.iter().any(|x| x.source == source) {
            self.remove_exchange(b.vhost, &source);
        }
        true
    }

    pub fn has_bindings_from(&self, vhost: VhostId, exchange: &str) -> bool {
        self.vhosts
            .get(&vhost)
            .is_some_and(|v| v.bindings.iter().any(|b| b.source == exchange))
    }

    pub fn exchange(&self, vhost: VhostId, name: &str) -> CoreResult<&ExchangeDef> {
        let v = self.vh(vhost)?;
        v.exchanges
            .get(name)
            .ok_or_else(|| CoreError::no_exchange(&v.name, name))
    }

    pub fn queue(&self, vhost: VhostId, name: &str) -> CoreResult<&QueueDef> {
        let v = self.vh(vhost)?;
        v.queues
            .get(name)
            .ok_or_else(|| CoreError::no_queue(&v.name, name))
    }
}

#[cfg(test)]
mod tests;
