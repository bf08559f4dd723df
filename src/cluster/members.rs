//! Cluster membership in etcd: a node that joins writes
//! `/warren/<cluster>/members/<node>` (what it is: its addresses and
//! ports; kept after it stops, so the cluster remembers it, as RabbitMQ's
//! `cluster_status` lists stopped nodes) and `/warren/<cluster>/alive/<node>`
//! under a lease of [`LEASE_TTL`] seconds that it renews every second. A
//! node that dies or is cut off loses its `alive` key within a lease time;
//! one that stops cleanly revokes its lease at once.
//!
//! `Membership` runs on its own thread (`cluster`), never a shard, and
//! keeps a copy of the members and their liveness for the management API
//! (`/api/nodes`).

use super::etcd::{Etcd, EtcdError};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Seconds a node's `alive` key outlives its last renewal.
pub const LEASE_TTL: i64 = 5;

/// How often the lease is renewed and the members re-read (a new node is
/// known to the others, and reachable through their links, within it).
const TICK: Duration = Duration::from_millis(250);

/// One member as the cluster knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    /// Its `alive` key exists.
    pub running: bool,
    /// What it wrote about itself (`address`, `amqp_port`, `http_port`,
    /// `cluster_port`).
    pub info: Value,
}

/// What this node says about itself.
#[derive(Clone, Debug)]
pub struct SelfInfo {
    pub node: String,
    pub address: String,
    pub amqp_port: u16,
    pub http_port: Option<u16>,
    pub cluster_port: u16,
}

/// The membership thread's handle.
#[derive(Clone)]
pub struct Membership {
    inner: Arc<Inner>,
}

struct Inner {
    etcd: Etcd,
    cluster: String,
    prefix: String,
    me: SelfInfo,
    members: Mutex<Vec<Member>>,
    lease: LeaseClock,
    /// etcd answered the last round.
    connected: AtomicBool,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Membership {
    /// Joins cluster `cluster` through `endpoints` and keeps this node
    /// alive there until [`Membership::stop`]. Returns once the first
    /// registration was tried (its failure is logged and retried every
    /// second: the broker serves its own clients meanwhile).
    pub fn start(endpoints: &[String], cluster: &str, me: SelfInfo) -> Membership {
        let inner = Arc::new(Inner {
            etcd: Etcd::new(endpoints),
            cluster: cluster.to_string(),
            prefix: format!("/warren/{cluster}/"),
            me,
            members: Mutex::new(Vec::new()),
            lease: LeaseClock::new(),
            connected: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let i = inner.clone();
        let t = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || run(&i))
            .expect("spawning the cluster thread");
        *inner.thread.lock().unwrap() = Some(t);
        Membership { inner }
    }

    /// Every member, this node first, then by name.
    pub fn members(&self) -> Vec<Member> {
        self.inner.members.lock().unwrap().clone()
    }

    /// The cluster's name (`--cluster-name`).
    pub fn cluster_name(&self) -> &str {
        &self.inner.cluster
    }

    /// The members as etcd has them now (read at once, not at the next
    /// round): for a node that hears of a peer it does not know yet.
    pub fn refresh(&self) -> Vec<Member> {
        if let Err(e) = read_members(&self.inner) {
            log::warn!("cluster: {e}");
        }
        self.members()
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.me.node
    }

    /// The lease this node's `alive` key is under, while it surely lives
    /// in etcd: etcd counts a renewal from when it gets it, this node from
    /// when it sent it (less a margin), so while this answers, the key
    /// exists and no other node can have been elected in this node's
    /// place (`cluster::quorum`). None when unsure.
    pub fn lease(&self) -> Option<i64> {
        self.inner.lease.get()
    }

    /// etcd answered the last round.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Leaves: revokes the lease (the node shows as stopped at once) and
    /// ends the thread.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(t) = self.inner.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

/// The host's name (`--advertise-address`'s default).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// This node's lease and until when it surely lives (see
/// [`Membership::lease`]).
struct LeaseClock {
    base: Instant,
    id: AtomicI64,
    /// Nanoseconds after `base`.
    until: AtomicU64,
}

/// Taken off a lease's time, for the time etcd takes to see a renewal.
const LEASE_MARGIN: Duration = Duration::from_millis(250);

impl LeaseClock {
    fn new() -> LeaseClock {
        LeaseClock {
            base: Instant::now(),
            id: AtomicI64::new(0),
            until: AtomicU64::new(0),
        }
    }

    fn get(&self) -> Option<i64> {
        let id = self.id.load(Ordering::Acquire);
        let now = self.base.elapsed().as_nanos() as u64;
        (id != 0 && now < self.until.load(Ordering::Acquire)).then_some(id)
    }

    /// Lease `id` was renewed (or granted) for `ttl` seconds by a request
    /// sent at `sent`.
    fn renewed(&self, id: i64, sent: Instant, ttl: i64) {
        let until = (sent + Duration::from_secs(ttl.max(0) as u64))
            .checked_sub(LEASE_MARGIN)
            .unwrap_or(sent);
        let ns = until.saturating_duration_since(self.base).as_nanos() as u64;
        self.until.store(ns, Ordering::Release);
        self.id.store(id, Ordering::Release);
    }

    fn lost(&self) {
        self.id.store(0, Ordering::Release);
        self.until.store(0, Ordering::Release);
    }
}

fn run(inner: &Inner) {
    let mut lease: Option<i64> = None;
    let mut next = Instant::now();
    while !inner.stop.load(Ordering::Acquire) {
        if Instant::now() >= next {
            next = Instant::now() + TICK;
            let ok = round(inner, &mut lease);
            if let Err(e) = &ok {
                log::warn!("cluster: {e}");
            }
            inner.connected.store(ok.is_ok(), Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(id) = lease {
        // Not counted on from now: the key goes.
        inner.lease.lost();
        if let Err(e) = inner.etcd.revoke(id) {
            log::warn!("cluster: could not leave cleanly: {e}");
        }
    }
}

/// One round: (re)register if the lease is gone, renew it, re-read the
/// members.
fn round(inner: &Inner, lease: &mut Option<i64>) -> Result<(), EtcdError> {
    let me = &inner.me;
    let sent = Instant::now();
    let renewed = match *lease {
        Some(id) => match inner.etcd.keep_alive(id)? {
            ttl if ttl > 0 => {
                inner.lease.renewed(id, sent, ttl);
                true
            }
            _ => false,
        },
        None => false,
    };
    if !renewed {
        inner.lease.lost();
        if lease.is_some() {
            log::warn!("cluster: this node's lease had expired; registering again");
        }
        let id = inner.etcd.grant(LEASE_TTL)?;
        let info = json!({
            "address": me.address,
            "amqp_port": me.amqp_port,
            "http_port": me.http_port,
            "cluster_port": me.cluster_port,
        });
        let key = |what: &str| format!("{}{what}/{}", inner.prefix, me.node).into_bytes();
        inner
            .etcd
            .put(&key("members"), info.to_string().as_bytes(), 0)?;
        inner.etcd.put(&key("alive"), b"1", id)?;
        inner.lease.renewed(id, sent, LEASE_TTL);
        if lease.is_none() {
            log::info!(
                "cluster: node '{}' joined cluster {}",
                me.node,
                inner.prefix
            );
        }
        *lease = Some(id);
    }
    read_members(inner)
}

/// Reads the members and who is alive from etcd into the cache.
fn read_members(inner: &Inner) -> Result<(), EtcdError> {
    let me = &inner.me;
    let (members, _) = inner
        .etcd
        .range_prefix(format!("{}members/", inner.prefix).as_bytes())?;
    let (alive, _) = inner
        .etcd
        .range_prefix(format!("{}alive/", inner.prefix).as_bytes())?;
    let name_of = |key: &[u8], dir: &str| {
        String::from_utf8_lossy(&key[inner.prefix.len() + dir.len() + 1..]).into_owned()
    };
    let alive: Vec<String> = alive.iter().map(|kv| name_of(&kv.key, "alive")).collect();
    let mut list: Vec<Member> = members
        .iter()
        .map(|kv| {
            let name = name_of(&kv.key, "members");
            Member {
                running: alive.contains(&name),
                info: serde_json::from_slice(&kv.value).unwrap_or(Value::Null),
                name,
            }
        })
        .collect();
    list.sort_by(|a, b| (a.name != me.node, &a.name).cmp(&(b.name != me.node, &b.name)));
    *inner.members.lock().unwrap() = list;
    Ok(())
}
