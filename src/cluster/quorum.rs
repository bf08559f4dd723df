//! Quorum queues' leaders, members and in-sync sets, in etcd. One key per
//! quorum queue, `/warren/<cluster>/quorum/<store id>`, holding
//! [`QState`] as JSON. It changes only by transactions that compare the
//! key's mod revision with the one this node read (so two changes never
//! both apply) and require a live node:
//!
//! - **created** by the leader (the node that declared the queue, as
//!   RabbitMQ's default `client-local` locator does), with up to
//!   `x-quorum-initial-group-size` (default 3) running nodes as members,
//!   all of them in the in-sync set (the queue is empty);
//! - **in-sync set** changes are asked by the leader's link
//!   (`Request`): a follower that stays behind for [`super::link::ISR_DEADLINE`]
//!   leaves it, one that caught up comes back; the transaction requires
//!   the leader's own `alive` key, so a leader whose lease ran out cannot
//!   change it;
//! - **elections**: when the leader's `alive` key is gone, every in-sync
//!   follower tries one transaction that requires it still gone: epoch +
//!   1, itself the leader and the only in-sync member. The winner turns
//!   its replica into the queue (`Admin::promote_replica`). A deposed
//!   leader learns it from the definitions (`Effect::QueueMovedAway`).
//!
//! Only an in-sync member can be elected, and every confirmed message is
//! on every in-sync member, so a confirmed message survives as long as
//! one in-sync member does. The new leader is always a member of the old
//! in-sync set, and it refuses appends from anyone else. A deposed leader
//! can confirm nothing more: its link counts follower reports only while
//! the lease its view was read under surely lives, and an election needs
//! that lease gone (`View::lease`, `cluster::link`).
//!
//! The manager runs on its own thread (`cluster-quorum`), never a shard;
//! it publishes what it read as a [`View`] for the link.

use super::etcd::{Cmp, Compare, Etcd, EtcdError, Op};
use super::members::Membership;
use crate::admin::Admin;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

/// How often the manager looks at etcd.
const ROUND: Duration = Duration::from_millis(100);
/// How often nodes that are gone are looked for (`forget_lost_nodes`).
const LOST_CHECK: Duration = Duration::from_secs(2);
/// RabbitMQ's default group size (`quorum_cluster_size`).
const DEFAULT_GROUP: usize = 3;

/// One quorum queue as etcd holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QState {
    pub vhost: String,
    pub name: String,
    pub leader: String,
    pub epoch: u64,
    pub members: Vec<String>,
    pub isr: Vec<String>,
    /// The key's mod revision when read (not stored).
    #[serde(skip)]
    pub rev: i64,
}

/// What the manager last read.
#[derive(Default, Clone)]
pub struct View {
    pub queues: HashMap<u64, QState>,
    pub alive: Vec<String>,
    /// The lease this node's `alive` key was under when read (0: not
    /// alive). The link lets a leader's confirms go only while
    /// [`Membership::lease`] still gives this one: no election can have
    /// taken its queues since this view was read.
    pub lease: i64,
}

/// How far a queue's followers are, as its leader's link last saw it
/// (the management API's `replication_lag`).
#[derive(Clone, Debug, Default)]
pub struct Lag {
    /// The leader's last seq.
    pub last: u64,
    /// The watermark: every in-sync member holds the messages up to it
    /// (their confirms may go).
    pub commit: u64,
    /// Each follower's last synced seq (0: not attached).
    pub followers: Vec<(String, u64)>,
}

/// A change the link asks for (as the queue's leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    IsrRemove { store_id: u64, node: String },
    IsrAdd { store_id: u64, node: String },
}

#[derive(Clone)]
pub struct Quorum {
    inner: Arc<Inner>,
}

struct Inner {
    etcd: Etcd,
    prefix: String,
    node: String,
    admin: Admin,
    membership: Membership,
    view: RwLock<Arc<View>>,
    version: AtomicU64,
    requests: Mutex<Vec<Request>>,
    lag: Mutex<HashMap<u64, Lag>>,
    /// The nodes being drained, as last read.
    draining_now: Mutex<Vec<String>>,
    /// The mod revision of the `rebalance` key acted on (None: not read
    /// yet; the first reading only sets it).
    rebalanced: Mutex<Option<i64>>,
    /// When lost nodes were last looked for, and the nodes not alive then
    /// (`forget_lost_nodes`).
    lost: Mutex<(std::time::Instant, Vec<String>)>,
    nudged: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Quorum {
    pub fn start(
        endpoints: &[String],
        cluster: &str,
        node: &str,
        admin: Admin,
        membership: Membership,
    ) -> Quorum {
        let inner = Arc::new(Inner {
            etcd: Etcd::new(endpoints),
            prefix: format!("/warren/{cluster}/"),
            node: node.to_string(),
            admin,
            membership,
            view: RwLock::new(Arc::new(View::default())),
            version: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            lag: Mutex::new(HashMap::new()),
            draining_now: Mutex::new(Vec::new()),
            rebalanced: Mutex::new(None),
            lost: Mutex::new((std::time::Instant::now(), Vec::new())),
            nudged: Mutex::new(false),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let i = inner.clone();
        let t = std::thread::Builder::new()
            .name("cluster-quorum".into())
            .spawn(move || i.run())
            .expect("spawning the quorum manager");
        *inner.thread.lock().unwrap() = Some(t);
        Quorum { inner }
    }

    /// The last view, and its version (moves when it changed).
    pub fn view(&self) -> (Arc<View>, u64) {
        let v = self.inner.view.read().unwrap().clone();
        (v, self.inner.version.load(Ordering::Acquire))
    }

    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }

    /// Asks for an in-sync set change (done on the manager's thread).
    pub fn request(&self, r: Request) {
        let mut q = self.inner.requests.lock().unwrap();
        if !q.contains(&r) {
            q.push(r);
        }
        drop(q);
        self.inner.nudge();
    }

    /// The link's figures of the queues this node leads, by store id.
    pub fn set_lag(&self, lag: HashMap<u64, Lag>) {
        *self.inner.lag.lock().unwrap() = lag;
    }

    /// How far the followers of queue `store_id` are, if this node leads it.
    pub fn lag(&self, store_id: u64) -> Option<Lag> {
        self.inner.lag.lock().unwrap().get(&store_id).cloned()
    }

    /// Drains `node` (moves every quorum queue it leads to another
    /// in-sync member, and keeps it from leading any: `rabbitmq-upgrade
    /// drain`) or revives it. Any node may ask for any node; the key lives
    /// in etcd until revived.
    pub fn set_draining(&self, node: &str, on: bool) -> Result<(), EtcdError> {
        let k = format!("{}draining/{node}", self.inner.prefix).into_bytes();
        if on {
            self.inner.etcd.put(&k, b"1", 0)?;
        } else {
            self.inner.etcd.delete(&k)?;
        }
        self.inner.nudge();
        Ok(())
    }

    /// The nodes being drained (as last read).
    pub fn draining(&self) -> Vec<String> {
        self.inner.draining_now.lock().unwrap().clone()
    }

    /// Asks every node to hand over leaders until each leads its share
    /// (`rabbitmq-queues rebalance quorum`; `POST /api/rebalance/queues`).
    pub fn rebalance(&self) -> Result<(), EtcdError> {
        let k = format!("{}rebalance", self.inner.prefix).into_bytes();
        self.inner.etcd.put(&k, b"1", 0)?;
        self.inner.nudge();
        Ok(())
    }

    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.nudge();
        if let Some(t) = self.inner.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

fn key(prefix: &str, store_id: u64) -> Vec<u8> {
    format!("{prefix}quorum/{store_id}").into_bytes()
}

impl Inner {
    fn nudge(&self) {
        *self.nudged.lock().unwrap() = true;
        self.wake.notify_all();
    }

    fn run(&self) {
        while !self.stop.load(Ordering::Acquire) {
            if let Err(e) = self.round() {
                log::warn!("quorum queues: {e}");
            }
            let mut n = self.nudged.lock().unwrap();
            if !*n {
                n = self.wake.wait_timeout(n, ROUND).unwrap().0;
            }
            *n = false;
        }
    }

    fn alive_key(&self, node: &str) -> Vec<u8> {
        format!("{}alive/{node}", self.prefix).into_bytes()
    }

    fn round(&self) -> Result<(), EtcdError> {
        // Before the reads: the alive key read below is under this lease
        // or a later one.
        let lease = self.membership.lease().unwrap_or(0);
        let alive_prefix = format!("{}alive/", self.prefix);
        let (alive, _) = self.etcd.range_prefix(alive_prefix.as_bytes())?;
        let mut alive: Vec<String> = alive
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key[alive_prefix.len()..]).into_owned())
            .collect();
        alive.sort();
        let qprefix = format!("{}quorum/", self.prefix);
        let (kvs, _) = self.etcd.range_prefix(qprefix.as_bytes())?;
        let mut queues = HashMap::new();
        for kv in kvs {
            let id: u64 = String::from_utf8_lossy(&kv.key[qprefix.len()..])
                .parse()
                .unwrap_or(0);
            match serde_json::from_slice::<QState>(&kv.value) {
                Ok(mut q) => {
                    q.rev = kv.mod_revision;
                    queues.insert(id, q);
                }
                Err(e) => log::warn!("quorum queues: state of {id} unreadable: {e}"),
            }
        }
        let me_alive = alive.contains(&self.node);
        let mut changed = false;
        // Queues this node leads with no state yet: created here.
        let local = self.admin.definitions().lock().local_quorum_queues();
        if me_alive {
            for (id, vhost, name, size) in &local {
                if queues.contains_key(id) {
                    continue;
                }
                let size = size.map_or(DEFAULT_GROUP, |s| s.max(1) as usize);
                let mut members = vec![self.node.clone()];
                members.extend(alive.iter().filter(|n| **n != self.node).cloned());
                members.truncate(size);
                let q = QState {
                    vhost: vhost.clone(),
                    name: name.clone(),
                    leader: self.node.clone(),
                    epoch: 1,
                    isr: members.clone(),
                    members,
                    rev: 0,
                };
                let k = key(&self.prefix, *id);
                let r = self.etcd.txn(
                    &[Compare::Version(k.clone(), Cmp::Equal, 0)],
                    &[Op::Put {
                        key: k,
                        value: serde_json::to_vec(&q).unwrap_or_default(),
                        lease: 0,
                    }],
                    &[],
                )?;
                if r.succeeded {
                    log::info!(
                        "quorum queue '{}' in vhost '{}': members {}",
                        name,
                        vhost,
                        q.members.join(", ")
                    );
                    changed = true;
                }
            }
        }
        // Requests of the link, for queues this node leads.
        let requests: Vec<Request> = std::mem::take(&mut *self.requests.lock().unwrap());
        for r in requests {
            let (id, node, add) = match &r {
                Request::IsrRemove { store_id, node } => (*store_id, node, false),
                Request::IsrAdd { store_id, node } => (*store_id, node, true),
            };
            let Some(q) = queues.get(&id) else { continue };
            if q.leader != self.node || q.isr.contains(node) == add {
                continue;
            }
            let mut next = q.clone();
            if add {
                next.isr.push(node.clone());
            } else {
                next.isr.retain(|n| n != node);
            }
            if self.swap(id, q, &next, &self.node, true)? {
                log::info!(
                    "quorum queue '{}': {} {} the in-sync set",
                    q.name,
                    node,
                    if add { "rejoined" } else { "left" }
                );
                changed = true;
            }
        }
        // Nodes being drained, and the last rebalance asked.
        let draining = self.draining()?;
        let me_draining = draining.contains(&self.node);
        // Elections.
        if me_alive {
            for (&id, q) in &queues {
                if q.leader == self.node || !q.isr.contains(&self.node) || alive.contains(&q.leader)
                {
                    continue;
                }
                // A node being drained stands only if no other can.
                if me_draining
                    && q.isr
                        .iter()
                        .any(|n| *n != self.node && alive.contains(n) && !draining.contains(n))
                {
                    continue;
                }
                let mut next = q.clone();
                next.leader = self.node.clone();
                next.epoch += 1;
                next.isr = vec![self.node.clone()];
                if !self.swap(id, q, &next, &q.leader, false)? {
                    continue;
                }
                log::warn!(
                    "quorum queue '{}' in vhost '{}': leader {} is gone; this node leads it \
                     (epoch {})",
                    q.name,
                    q.vhost,
                    q.leader,
                    next.epoch
                );
                if let Err(e) = self.admin.promote_replica(id, next.epoch) {
                    log::error!("quorum queue '{}': cannot take the lead: {e}", q.name);
                }
                changed = true;
            }
        }
        if me_alive {
            changed |= self.take_handed_over(&queues)?;
            changed |= self.move_leaders(&queues, &alive, &draining)?;
            self.forget_lost_nodes(&alive);
        }
        // States of queues gone from the definitions, removed by their
        // leader.
        {
            let defs = self.admin.definitions().lock();
            for (&id, q) in &queues {
                if q.leader == self.node && defs.queue_by_store_id(id).is_none() {
                    let _ = self.etcd.delete(&key(&self.prefix, id));
                    changed = true;
                }
            }
        }
        if changed {
            // Read again next round; meanwhile publish what was read.
            self.nudge();
        }
        *self.draining_now.lock().unwrap() = draining;
        let view = View {
            queues,
            alive,
            lease: if me_alive { lease } else { 0 },
        };
        let mut v = self.view.write().unwrap();
        let old = v.clone();
        if old.queues != view.queues || old.alive != view.alive || old.lease != view.lease {
            *v = Arc::new(view);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    fn draining(&self) -> Result<Vec<String>, EtcdError> {
        let prefix = format!("{}draining/", self.prefix);
        let (kvs, _) = self.etcd.range_prefix(prefix.as_bytes())?;
        Ok(kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned())
            .collect())
    }

    /// Every [`LOST_CHECK`]: nodes holding queues in the definitions that
    /// were not alive at the last check either lose their transient and
    /// exclusive queues (`Definitions::forget_lost_node_queues`). Done by
    /// the first live node by name only.
    fn forget_lost_nodes(&self, alive: &[String]) {
        let mut lost = self.lost.lock().unwrap();
        if lost.0.elapsed() < LOST_CHECK {
            return;
        }
        lost.0 = std::time::Instant::now();
        if alive.first() != Some(&self.node) {
            lost.1.clear();
            return;
        }
        let holders: Vec<String> = {
            let defs = self.admin.definitions().lock();
            let mut h: Vec<String> = defs
                .vhosts()
                .flat_map(|v| v.queues.values().filter_map(|q| q.node.as_deref()))
                .filter(|n| !alive.iter().any(|a| a == n))
                .map(str::to_string)
                .collect();
            h.sort();
            h.dedup();
            h
        };
        for node in &holders {
            if !lost.1.contains(node) {
                continue;
            }
            let n = self.admin.definitions().forget_lost_node_queues(node);
            if n > 0 {
                log::info!(
                    "cluster: node {node} is gone; its {n} transient or exclusive queue(s) are deleted"
                );
            }
        }
        lost.1 = holders;
    }

    /// Queues etcd says this node leads while the definitions put them on
    /// another node: handed over by their leader (`move_leaders`), or an
    /// election whose promotion failed. The replica becomes the queue.
    fn take_handed_over(&self, queues: &HashMap<u64, QState>) -> Result<bool, EtcdError> {
        let mine: Vec<(u64, String, u64)> = {
            let defs = self.admin.definitions().lock();
            queues
                .iter()
                .filter(|(id, q)| {
                    q.leader == self.node
                        && defs
                            .queue_by_store_id(**id)
                            .is_some_and(|d| d.node.is_some())
                })
                .map(|(id, q)| (*id, q.name.clone(), q.epoch))
                .collect()
        };
        for (id, name, epoch) in &mine {
            log::info!("quorum queue '{name}': handed over to this node; it leads it now");
            if let Err(e) = self.admin.promote_replica(*id, *epoch) {
                log::error!("quorum queue '{name}': cannot take the lead: {e}");
            }
        }
        Ok(!mine.is_empty())
    }

    /// Hands queues this node leads to other in-sync members: all of them
    /// when this node is being drained; when a rebalance was asked, while
    /// it leads more than the average over the running nodes not drained,
    /// each to an in-sync member leading at least two fewer.
    /// A handover is one transaction, guarded by this node's `alive` key
    /// and the key's revision: epoch + 1, the new leader the only in-sync
    /// member (as an election). The new leader takes it
    /// (`take_handed_over`); this node drops its queue when the
    /// definitions say so (`Effect::QueueMovedAway`), and nacks the
    /// confirms it still held.
    fn move_leaders(
        &self,
        queues: &HashMap<u64, QState>,
        alive: &[String],
        draining: &[String],
    ) -> Result<bool, EtcdError> {
        let me_draining = draining.contains(&self.node);
        let rebalance = {
            let k = format!("{}rebalance", self.prefix).into_bytes();
            let rev = self.etcd.get(&k)?.map_or(0, |kv| kv.mod_revision);
            let mut seen = self.rebalanced.lock().unwrap();
            let asked = seen.is_some_and(|s| s != rev) && rev != 0;
            *seen = Some(rev);
            asked
        };
        if !me_draining && !rebalance {
            return Ok(false);
        }
        let candidates: Vec<&String> = alive.iter().filter(|n| !draining.contains(n)).collect();
        let mut leads: HashMap<&str, usize> = candidates.iter().map(|n| (n.as_str(), 0)).collect();
        for q in queues.values() {
            if let Some(c) = leads.get_mut(q.leader.as_str()) {
                *c += 1;
            }
        }
        let (total, nodes) = (queues.len(), candidates.len().max(1));
        let mut mine: Vec<(&u64, &QState)> = queues
            .iter()
            .filter(|(_, q)| q.leader == self.node)
            .collect();
        mine.sort_by_key(|(id, _)| **id);
        let mut changed = false;
        for (&id, q) in mine {
            let have = leads.get(self.node.as_str()).copied().unwrap_or(0);
            // Above the average: hand one over, to a node it leaves
            // better balanced (RabbitMQ's rebalance).
            if !me_draining && have * nodes <= total {
                break;
            }
            // The in-sync follower leading the fewest queues.
            let Some(to) = q
                .isr
                .iter()
                .filter(|n| **n != self.node && leads.contains_key(n.as_str()))
                .min_by_key(|n| (leads[n.as_str()], n.as_str()))
                .cloned()
            else {
                continue;
            };
            if !me_draining && leads[to.as_str()] + 1 >= have {
                continue;
            }
            let mut next = q.clone();
            next.leader = to.clone();
            next.epoch += 1;
            next.isr = vec![to.clone()];
            if !self.swap(id, q, &next, &self.node, true)? {
                continue;
            }
            log::info!(
                "quorum queue '{}' in vhost '{}': handed over to {} (epoch {}){}",
                q.name,
                q.vhost,
                to,
                next.epoch,
                if me_draining {
                    ", this node being drained"
                } else {
                    ""
                }
            );
            *leads.entry(self.node.as_str()).or_default() = have.saturating_sub(1);
            if let Some(c) = leads.get_mut(to.as_str()) {
                *c += 1;
            }
            changed = true;
        }
        Ok(changed)
    }

    /// Replaces `q` (as read) by `next` if nobody changed it since and
    /// `guard` is alive (`alive` true) or gone (false).
    fn swap(
        &self,
        id: u64,
        q: &QState,
        next: &QState,
        guard: &str,
        alive: bool,
    ) -> Result<bool, EtcdError> {
        let k = key(&self.prefix, id);
        let guard_cmp = if alive {
            Compare::Version(self.alive_key(guard), Cmp::Greater, 0)
        } else {
            Compare::Version(self.alive_key(guard), Cmp::Equal, 0)
        };
        let r = self.etcd.txn(
            &[
                Compare::ModRevision(k.clone(), Cmp::Equal, q.rev),
                guard_cmp,
            ],
            &[Op::Put {
                key: k,
                value: serde_json::to_vec(next).unwrap_or_default(),
                lease: 0,
            }],
            &[],
        )?;
        Ok(r.succeeded)
    }
}
