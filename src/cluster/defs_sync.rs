//! The cluster's definitions in etcd: one totally ordered log of batches,
//! each batch the definitions-log records (`store::defs_record`) of one
//! change on one node, every object included (transient ones too, and
//! every queue with the node that holds it). This is the
//! [`Replicator`] the core's definitions use (`core/definitions/replicated.rs`
//! tells the whole protocol); here is only how it sits in etcd.
//!
//! Keys, under `/warren/<cluster>/defs/`:
//!
//! | key | value |
//! |---|---|
//! | `head` | the number of the last batch, decimal |
//! | `log/<20-digit number>` | u16 length + origin node, then the framed records |
//! | `lock` | the node making a change, under that node's lease |
//! | `applied/<node>` | the last batch that node applied, under its lease |
//!
//! A change appends with a transaction that requires `lock` to be this
//! node's (same mod revision as when taken) and `head` to be the batch
//! before, so a node that lost its lock (its lease expired while it was
//! stopped or cut off) can never append. The lock is under a lease of
//! [`LEASE_TTL`] seconds, so a node that dies holding it frees it.
//!
//! Two threads, never a shard: the applier (`cluster-defs`) applies the
//! batches of other nodes in order, woken by the watcher (`cluster-watch`,
//! an etcd watch on the prefix), by a change that waits for it
//! (`nudge`), or every 250 ms. Batches are never removed yet: the log
//! grows by one key per change (see `docs/clustering-design.md`).

use super::etcd::{Cmp, Compare, Etcd, EtcdError, Op};
use crate::core::definitions::{Batch, Definitions, Effect, Replicator};
use crate::store::defs_log::Record;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Seconds the lock (and this node's `applied` key) outlive the node.
pub const LEASE_TTL: i64 = 5;
/// How long a change tries to take the lock.
const ACQUIRE_FOR: Duration = Duration::from_secs(10);
/// How long a change waits for the other nodes to apply it.
const PEERS_FOR: Duration = Duration::from_secs(5);
/// The applier looks at etcd at least this often.
const APPLIER_IDLE: Duration = Duration::from_millis(250);

/// What the applier does with effects of other nodes' changes that reach
/// beyond the definitions (closing connections): set once the shards run.
pub type EffectHandler = Box<dyn Fn(Effect) + Send + Sync>;

/// This node's link to the cluster's definitions.
#[derive(Clone)]
pub struct DefsSync {
    inner: Arc<Inner>,
}

struct Inner {
    etcd: Etcd,
    /// `/warren/<cluster>/defs/`.
    prefix: String,
    /// `/warren/<cluster>/alive/`: the live nodes (`members.rs`).
    alive_prefix: String,
    node: String,
    lease: AtomicI64,
    /// The lock's mod revision while this node holds it.
    lock_rev: Mutex<Option<i64>>,
    nudged: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
    defs: OnceLock<Weak<Definitions>>,
    effects: OnceLock<EffectHandler>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

fn batch_key(prefix: &str, seq: u64) -> Vec<u8> {
    format!("{prefix}log/{seq:020}").into_bytes()
}

/// A batch's value: its origin, then the framed records.
fn encode_batch(origin: &str, records: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + origin.len() + records.len());
    v.extend_from_slice(&(origin.len() as u16).to_be_bytes());
    v.extend_from_slice(origin.as_bytes());
    v.extend_from_slice(records);
    v
}

fn decode_batch(seq: u64, value: &[u8]) -> Result<Batch, String> {
    let bad = || format!("cluster definitions: batch {seq} is damaged");
    let n = u16::from_be_bytes(value.get(..2).ok_or_else(bad)?.try_into().unwrap()) as usize;
    let origin = value.get(2..2 + n).ok_or_else(bad)?;
    let parsed = crate::store::defs_log::parse(&value[2 + n..]);
    if parsed.damage.is_some() {
        return Err(bad());
    }
    let records = parsed.records;
    Ok(Batch {
        seq,
        origin: String::from_utf8_lossy(origin).into_owned(),
        records,
    })
}

fn num(v: &[u8]) -> u64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl DefsSync {
    /// Connects to the cluster's definitions (retrying until etcd answers
    /// or `stop` is set) and reads every batch: the records in order and
    /// the last batch's number, to build this node's definitions from
    /// (`Definitions::from_cluster`).
    pub fn connect(
        endpoints: &[String],
        cluster: &str,
        node: &str,
    ) -> Result<(DefsSync, Vec<Record>, u64), EtcdError> {
        let inner = Arc::new(Inner {
            etcd: Etcd::new(endpoints),
            prefix: format!("/warren/{cluster}/defs/"),
            alive_prefix: format!("/warren/{cluster}/alive/"),
            node: node.to_string(),
            lease: AtomicI64::new(0),
            lock_rev: Mutex::new(None),
            nudged: Mutex::new(false),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            defs: OnceLock::new(),
            effects: OnceLock::new(),
            threads: Mutex::new(Vec::new()),
        });
        let started = Instant::now();
        let (batches, head) = loop {
            match inner.read_from(1) {
                Ok(r) => break r,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    log::warn!("cluster definitions: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        };
        let mut records = Vec::new();
        for b in batches {
            records.extend(b.records);
        }
        log::info!("cluster definitions: {head} batch(es) read from etcd");
        Ok((DefsSync { inner }, records, head))
    }

    /// The replicator to give the definitions.
    pub fn replicator(&self) -> Arc<dyn Replicator> {
        Arc::new(self.clone())
    }

    /// Starts the applier and the watcher for `defs`.
    pub fn start(&self, defs: &Arc<Definitions>) {
        let _ = self.inner.defs.set(Arc::downgrade(defs));
        let mut threads = self.inner.threads.lock().unwrap();
        let i = self.inner.clone();
        threads.push(
            std::thread::Builder::new()
                .name("cluster-defs".into())
                .spawn(move || i.applier())
                .expect("spawning the definitions applier"),
        );
        let i = self.inner.clone();
        threads.push(
            std::thread::Builder::new()
                .name("cluster-watch".into())
                .spawn(move || i.watcher())
                .expect("spawning the definitions watcher"),
        );
    }

    /// What to do with effects of other nodes' changes (set once).
    pub fn on_effects(&self, f: EffectHandler) {
        let _ = self.inner.effects.set(f);
    }

    /// Ends the threads (the watcher within a second) and the lease.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.wake.notify_all();
        for t in self.inner.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
        let lease = self.inner.lease.swap(0, Ordering::AcqRel);
        if lease != 0 {
            let _ = self.inner.etcd.revoke(lease);
        }
    }
}

impl Inner {
    fn key(&self, what: &str) -> Vec<u8> {
        format!("{}{what}", self.prefix).into_bytes()
    }

    /// This node's lease, granted (again) when it has none or it expired.
    fn lease(&self) -> Result<i64, EtcdError> {
        let id = self.lease.load(Ordering::Acquire);
        if id != 0 {
            return Ok(id);
        }
        let id = self.etcd.grant(LEASE_TTL)?;
        self.lease.store(id, Ordering::Release);
        Ok(id)
    }

    /// Renews the lease (the applier, every round).
    fn keep_alive(&self) {
        let id = self.lease.load(Ordering::Acquire);
        if id != 0 && matches!(self.etcd.keep_alive(id), Ok(0)) {
            log::warn!("cluster definitions: this node's lease expired");
            let _ = self
                .lease
                .compare_exchange(id, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The batches from `from` to the head, and the head.
    fn read_from(&self, from: u64) -> Result<(Vec<Batch>, u64), EtcdError> {
        let head = self
            .etcd
            .get(&self.key("head"))?
            .map_or(0, |kv| num(&kv.value));
        if head < from {
            return Ok((Vec::new(), head));
        }
        let log_prefix = format!("{}log/", self.prefix);
        let (kvs, _) = self
            .etcd
            .range_from(&batch_key(&self.prefix, from), log_prefix.as_bytes())?;
        let mut out = Vec::new();
        for kv in kvs {
            let seq = num(&kv.key[log_prefix.len()..]);
            if seq > head {
                break;
            }
            out.push(decode_batch(seq, &kv.value).map_err(EtcdError::Protocol)?);
        }
        Ok((out, head))
    }

    fn wait_nudge(&self, timeout: Duration) {
        let mut n = self.nudged.lock().unwrap();
        if !*n {
            n = self.wake.wait_timeout(n, timeout).unwrap().0;
        }
        *n = false;
    }

    fn nudge(&self) {
        *self.nudged.lock().unwrap() = true;
        self.wake.notify_all();
    }

    fn applier(&self) {
        let mut reported = 0;
        let mut last_renew = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            if last_renew.elapsed() >= Duration::from_secs(1) {
                self.keep_alive();
                last_renew = Instant::now();
            }
            if let Err(e) = self.catch_up(&mut reported) {
                log::warn!("cluster definitions: {e}");
            }
            self.wait_nudge(APPLIER_IDLE);
        }
    }

    /// Applies what other nodes wrote since this node's last batch, then
    /// says so in `applied/<node>`.
    fn catch_up(&self, reported: &mut u64) -> Result<(), EtcdError> {
        let Some(defs) = self.defs.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let applied = defs.cluster_applied();
        let (batches, _) = self.read_from(applied + 1)?;
        for b in batches {
            let seq = b.seq;
            match defs.apply_batch(b) {
                Ok(effects) => {
                    for e in effects {
                        match self.effects.get() {
                            Some(f) => f(e),
                            None => log::warn!("cluster definitions: effect {e:?} before start"),
                        }
                    }
                }
                Err(want) => {
                    return Err(EtcdError::Protocol(format!(
                        "batch {seq} came while {want} was expected"
                    )))
                }
            }
        }
        let now = defs.cluster_applied();
        if now != *reported {
            let lease = self.lease()?;
            let key = self.key(&format!("applied/{}", self.node));
            self.etcd.put(&key, now.to_string().as_bytes(), lease)?;
            *reported = now;
        }
        Ok(())
    }

    fn watcher(&self) {
        let mut from = 0;
        while !self.stop.load(Ordering::Acquire) {
            let prefix = self.key("head");
            let r = self.etcd.watch_prefix(&prefix, from, |rev| {
                from = rev + 1;
                self.nudge();
                !self.stop.load(Ordering::Acquire)
            });
            if r.is_err() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

impl Replicator for DefsSync {
    fn acquire(&self) -> Result<u64, String> {
        let i = &self.inner;
        let deadline = Instant::now() + ACQUIRE_FOR;
        let lock = i.key("lock");
        let mut pause = Duration::from_micros(500);
        loop {
            let lease = i.lease().map_err(|e| e.to_string())?;
            let took = i
                .etcd
                .txn(
                    &[Compare::Version(lock.clone(), Cmp::Equal, 0)],
                    &[Op::Put {
                        key: lock.clone(),
                        value: i.node.as_bytes().to_vec(),
                        lease,
                    }],
                    &[],
                )
                .map_err(|e| e.to_string())?;
            if took.succeeded {
                *i.lock_rev.lock().unwrap() = Some(took.revision);
                let head = i
                    .etcd
                    .get(&i.key("head"))
                    .map_err(|e| e.to_string())?
                    .map_or(0, |kv| num(&kv.value));
                return Ok(head);
            }
            if Instant::now() >= deadline {
                let holder = i.etcd.get(&lock).ok().flatten().map(|kv| kv.value);
                return Err(format!(
                    "the cluster's definitions stayed locked by node '{}'",
                    String::from_utf8_lossy(&holder.unwrap_or_default())
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    fn append(&self, seq: u64, batch: &[u8]) -> Result<(), String> {
        let i = &self.inner;
        let Some(rev) = *i.lock_rev.lock().unwrap() else {
            return Err("this node does not hold the cluster's definitions lock".into());
        };
        let head = i.key("head");
        let head_ok = if seq == 1 {
            Compare::Version(head.clone(), Cmp::Equal, 0)
        } else {
            Compare::Value(head.clone(), Cmp::Equal, (seq - 1).to_string().into_bytes())
        };
        let r = i
            .etcd
            .txn(
                &[
                    Compare::ModRevision(i.key("lock"), Cmp::Equal, rev),
                    head_ok,
                ],
                &[
                    Op::Put {
                        key: batch_key(&i.prefix, seq),
                        value: encode_batch(&i.node, batch),
                        lease: 0,
                    },
                    Op::Put {
                        key: head,
                        value: seq.to_string().into_bytes(),
                        lease: 0,
                    },
                ],
                &[],
            )
            .map_err(|e| e.to_string())?;
        if r.succeeded {
            Ok(())
        } else {
            Err("this node lost the cluster's definitions lock".into())
        }
    }

    fn release(&self) {
        let i = &self.inner;
        let Some(rev) = i.lock_rev.lock().unwrap().take() else {
            return;
        };
        let lock = i.key("lock");
        if let Err(e) = i.etcd.txn(
            &[Compare::ModRevision(lock.clone(), Cmp::Equal, rev)],
            &[Op::Delete(lock)],
            &[],
        ) {
            log::warn!("cluster definitions: could not release the lock: {e}");
        }
    }

    fn wait_applied(&self, seq: u64) {
        let i = &self.inner;
        let deadline = Instant::now() + PEERS_FOR;
        let applied_prefix = format!("{}applied/", i.prefix);
        let mut pause = Duration::from_micros(500);
        loop {
            let behind = (|| -> Result<Vec<String>, EtcdError> {
                let (alive, _) = i.etcd.range_prefix(i.alive_prefix.as_bytes())?;
                let (applied, _) = i.etcd.range_prefix(applied_prefix.as_bytes())?;
                let mut behind = Vec::new();
                for kv in alive {
                    let node = String::from_utf8_lossy(&kv.key[i.alive_prefix.len()..]);
                    if node == i.node {
                        continue;
                    }
                    let done = applied.iter().any(|a| {
                        a.key[applied_prefix.len()..] == *node.as_bytes() && num(&a.value) >= seq
                    });
                    if !done {
                        behind.push(node.into_owned());
                    }
                }
                Ok(behind)
            })();
            match behind {
                Ok(b) if b.is_empty() => return,
                Ok(b) if Instant::now() >= deadline => {
                    log::warn!(
                        "cluster definitions: node(s) {} did not apply change {seq} within {:?}",
                        b.join(", "),
                        PEERS_FOR
                    );
                    return;
                }
                Err(e) if Instant::now() >= deadline => {
                    log::warn!("cluster definitions: cannot see who applied change {seq}: {e}");
                    return;
                }
                _ => {}
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    fn nudge(&self) {
        self.inner.nudge();
    }
}
