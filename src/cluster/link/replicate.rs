//! Quorum-queue replication through the link (`core::quorum` tells the
//! shard's side, `cluster::quorum` who leads and who is in sync).
//!
//! As a queue's leader, the link sends each `ReplicaAppend` of the
//! leader's shard to the followers that are attached (a reset and a bulk
//! copy first, `ShardCtx::replica_bulk`), tracks how far each one has
//! synced, and hands the leader's shard the watermark (`Replicated`): the
//! lowest seq every in-sync follower holds. A follower that stays behind
//! for [`ISR_DEADLINE`] is asked out of the in-sync set; one that caught
//! up is asked back in. A follower that reconnects gets a new bulk copy
//! (frames may have been lost with the connection).
//!
//! As a follower, the link hands what the leader sends to the shard that
//! keeps the replica (`store_id % shards`), and takes only what the
//! leader named in etcd sends: a deposed leader's appends are dropped, so
//! it never gathers the acks it would need to confirm.
//!
//! Frames (after the transport's kind octet; integers big-endian):
//!
//! | kind | frame | fields |
//! |---|---|---|
//! | 1 | append | store id u64, seq u64, exchange (u8 length), routing key (u8 length), properties (u32 length), body (the rest) |
//! | 2 | gone | store id u64, seq u64, count u32 |
//! | 3 | reset | store id u64, generation u32, lineage u64, epoch u64 |
//! | 4 | synced | store id u64, seq u64, generation u32 |
//! | 15 | bulk done | store id u64, the copy's last seq u64, messages copied u64, generation u32 |
//!
//! **Fencing.** A leader's link sends its shard no watermark unless the
//! quorum view that names it leader was read under the node's current
//! lease, and that lease surely still lives (`Membership::lease`): an
//! election needs the leader's `alive` key gone, so none can have
//! happened, and every report counted was made before any. A deposed
//! leader thus confirms nothing, whatever its followers still take from
//! it before their views change. Followers in the in-sync set, or asked
//! into it and not yet seen there, all count for the watermark.

use super::decode_append;
use super::{queued, u32_at, u64_at, State, ISR_DEADLINE};
use crate::cluster::quorum::Request;
use crate::cluster::transport::Transport;
use crate::core::ids::QueueRef;
use crate::core::message::{Message, MessageMeta};
use crate::core::shard_msg::ShardMsg;
use std::collections::HashMap;
use std::time::Instant;

const K_APPEND: u8 = 1;
const K_GONE: u8 = 2;
const K_RESET: u8 = 3;
const K_SYNCED: u8 = 4;
const K_BULK_DONE: u8 = 15;

/// A follower that reported nothing this long after its reset gets a new
/// copy.
const RECOPY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// A follower of a queue this node leads.
#[derive(Default)]
pub(super) struct Follower {
    /// The generation of its current copy (0: not attached: no reset sent
    /// yet since it joined or reconnected).
    pub(super) gen: u32,
    /// The highest seq it reported synced in this generation.
    pub(super) synced: u64,
    /// Since when it has had unsynced messages (None: it is level).
    pub(super) behind_since: Option<Instant>,
    /// A bulk copy was asked of the leader's shard and not started yet.
    pub(super) bulk_asked: bool,
    /// Asked into the in-sync set, not seen there yet: counted as in it.
    pub(super) add_pending: bool,
    /// Out of the in-sync set: the leader's last seq when it was last
    /// looked at; the follower is asked back in once it has synced that
    /// far (under steady load it never equals the moving last seq).
    pub(super) catch_up: Option<u64>,
    /// Asked out of the in-sync set (logged once).
    pub(super) leaving: bool,
    /// Its bulk copy is being sent (from the reset to the bulk done): it
    /// cannot be asked into the in-sync set meanwhile.
    pub(super) copying: bool,
    /// When its last reset was sent.
    pub(super) reset_at: Option<Instant>,
    /// It reported a sync in its current generation (it took the reset).
    pub(super) reported: bool,
}

/// A queue this node leads.
pub(super) struct Lead {
    pub(super) queue: Option<QueueRef>,
    /// The epoch it was led in (0: not known yet).
    pub(super) epoch: u64,
    /// The highest seq the leader's shard appended.
    pub(super) last: u64,
    /// The watermark last sent to the shard.
    pub(super) sent: u64,
    pub(super) followers: HashMap<String, Follower>,
}

impl State {
    /// A replication message from a shard: the leader's appends,
    /// removals, resets and copies, or a follower shard's report.
    pub(super) fn replica_from_shard(&mut self, m: ShardMsg) {
        match m {
            ShardMsg::ReplicaAppend {
                store_id,
                seq,
                msg,
                to,
                ..
            } => {
                let lead = self.leading.entry(store_id).or_insert_with(|| Lead {
                    queue: None,
                    epoch: 0,
                    last: 0,
                    sent: 0,
                    followers: HashMap::new(),
                });
                let targets: Vec<String> = if to == 0 {
                    lead.last = lead.last.max(seq);
                    lead.followers
                        .iter()
                        .filter(|(_, f)| f.gen != 0)
                        .map(|(n, _)| n.clone())
                        .collect()
                } else {
                    // A copy to follower `to`: not once its reset or an
                    // earlier frame of the copy could not go.
                    self.nodes
                        .get(to as usize - 1)
                        .cloned()
                        .into_iter()
                        .filter(|n| lead.followers.get(n).is_some_and(|f| f.gen != 0))
                        .collect()
                };
                let now = Instant::now();
                for t in targets {
                    let sent = send_append(&mut self.transport, &t, store_id, seq, &msg);
                    if let Some(f) = lead.followers.get_mut(&t) {
                        f.behind_since.get_or_insert(now);
                        if !sent {
                            // It missed one: a new copy once it can take it.
                            f.gen = 0;
                        }
                    }
                }
                self.watermark(store_id);
            }
            ShardMsg::ReplicaGone {
                store_id,
                seq,
                count,
            } => {
                let Some(lead) = self.leading.get(&store_id) else {
                    return;
                };
                let mut p = [0u8; 20];
                p[..8].copy_from_slice(&store_id.to_be_bytes());
                p[8..16].copy_from_slice(&seq.to_be_bytes());
                p[16..].copy_from_slice(&count.to_be_bytes());
                for (n, f) in &lead.followers {
                    if f.gen != 0 {
                        self.transport.send(n, K_GONE, &p);
                    }
                }
            }
            ShardMsg::ReplicaReset { store_id, to, .. } => {
                if to == 0 {
                    // The queue is gone: every follower drops its copy.
                    if let Some(lead) = self.leading.remove(&store_id) {
                        for n in lead.followers.keys() {
                            send_reset(&mut self.transport, n, store_id, 0, 0, 0);
                        }
                    }
                    return;
                }
                let Some(name) = self.nodes.get(to as usize - 1).cloned() else {
                    return;
                };
                let Some(f) = self
                    .leading
                    .get_mut(&store_id)
                    .and_then(|l| l.followers.get_mut(&name))
                else {
                    return;
                };
                let f: &mut Follower = f;
                self.next_gen = self.next_gen.wrapping_add(1).max(1);
                f.gen = self.next_gen;
                f.synced = 0;
                f.bulk_asked = false;
                f.copying = true;
                f.reported = false;
                f.reset_at = Some(Instant::now());
                // Not restarted: a follower reset again and again is still
                // asked out after ISR_DEADLINE.
                f.behind_since.get_or_insert_with(Instant::now);
                let gen = f.gen;
                let epoch = self.view.queues.get(&store_id).map_or(0, |q| q.epoch);
                let lineage = lineage(self.incarnation, epoch);
                if !send_reset(&mut self.transport, &name, store_id, gen, lineage, epoch) {
                    f.gen = 0;
                }
            }
            ShardMsg::ReplicaBulkDone {
                store_id,
                to,
                upto,
                count,
                ..
            } => {
                // The follower drops what the copy did not hold (gone
                // since); until then its replica stays a superset.
                let Some(name) = self.nodes.get(to as usize - 1).cloned() else {
                    return;
                };
                // The queue holds messages up to `upto` (a new leader's
                // were never appended through this link): the follower
                // is in sync once it has synced that far.
                let Some(lead) = self.leading.get_mut(&store_id) else {
                    return;
                };
                lead.last = lead.last.max(upto);
                let Some(f) = lead.followers.get_mut(&name) else {
                    return;
                };
                f.copying = false;
                // A copy cut short (a frame that could not go) ends with
                // no bulk done: the follower keeps its superset, and gets
                // a new copy.
                if f.gen == 0 {
                    return;
                }
                let mut p = [0u8; 28];
                p[..8].copy_from_slice(&store_id.to_be_bytes());
                p[8..16].copy_from_slice(&upto.to_be_bytes());
                p[16..24].copy_from_slice(&count.to_be_bytes());
                p[24..].copy_from_slice(&f.gen.to_be_bytes());
                if !queued(self.transport.send(&name, K_BULK_DONE, &p)) {
                    f.gen = 0;
                }
            }
            ShardMsg::ReplicaSynced { store_id, seq, gen } => {
                // This node follows: tell the leader that feeds it (the
                // one whose reset it took; etcd may not have told this
                // node about the queue yet).
                let r = self.reports.entry(store_id).or_insert((0, 0, true));
                if r.1 != gen || r.0 < seq {
                    *r = (seq, gen, false);
                }
                self.send_report(store_id);
            }
            _ => {}
        }
    }

    /// Sends the leader feeding replica `store_id` this node's last report
    /// of it, unless it went already (a report that could not go is sent
    /// again at the next tick: the leader counts on the latest).
    pub(super) fn send_report(&mut self, store_id: u64) {
        let Some(&(seq, gen, sent)) = self.reports.get(&store_id) else {
            return;
        };
        let Some(leader) = self.feeding.get(&store_id) else {
            return;
        };
        if sent {
            return;
        }
        let mut p = [0u8; 20];
        p[..8].copy_from_slice(&store_id.to_be_bytes());
        p[8..16].copy_from_slice(&seq.to_be_bytes());
        p[16..].copy_from_slice(&gen.to_be_bytes());
        if queued(self.transport.send(leader, K_SYNCED, &p)) {
            if let Some(r) = self.reports.get_mut(&store_id) {
                r.2 = true;
            }
        }
    }

    /// A replication frame from node `from`.
    pub(super) fn replica_frame(&mut self, from: &str, kind: u8, payload: &[u8]) {
        let p = payload;
        let Some(store_id) = u64_at(p, 0) else {
            return;
        };
        if kind == K_SYNCED {
            let (Some(seq), Some(gen)) = (u64_at(p, 8), u32_at(p, 16)) else {
                return;
            };
            if let Some(fl) = self
                .leading
                .get_mut(&store_id)
                .and_then(|l| l.followers.get_mut(from))
            {
                if gen == fl.gen {
                    fl.synced = fl.synced.max(seq);
                    fl.reported = true;
                    fl.behind_since = None;
                }
            }
            let last = self.leading.get(&store_id).map_or(0, |l| l.last);
            if let Some(fl) = self
                .leading
                .get_mut(&store_id)
                .and_then(|l| l.followers.get_mut(from))
            {
                if fl.synced < last {
                    fl.behind_since = Some(Instant::now());
                }
            }
            self.watermark(store_id);
            return;
        }
        // From a leader: only the one etcd names.
        if let Some(q) = self.view.queues.get(&store_id) {
            if q.leader != from {
                return;
            }
        }
        let shard = (store_id % self.shards as u64) as usize;
        let msg = match kind {
            K_APPEND => {
                let Some(seq) = u64_at(p, 8) else { return };
                let Some(m) = decode_append(&p[16..]) else {
                    log::warn!("cluster link: a damaged append from {}", from);
                    return;
                };
                let meta = MessageMeta::from_amqp091(m.properties());
                ShardMsg::ReplicaAppend {
                    store_id,
                    seq,
                    msg: m,
                    meta,
                    to: 0,
                }
            }
            K_GONE => {
                let (Some(seq), Some(count)) = (u64_at(p, 8), u32_at(p, 16)) else {
                    return;
                };
                ShardMsg::ReplicaGone {
                    store_id,
                    seq,
                    count,
                }
            }
            K_RESET => {
                let (Some(gen), Some(lineage), Some(epoch)) =
                    (u32_at(p, 8), u64_at(p, 12), u64_at(p, 20))
                else {
                    return;
                };
                self.feeding.insert(store_id, from.to_string());
                // An older generation's last report must not hold back
                // this one's.
                self.reports.remove(&store_id);
                ShardMsg::ReplicaReset {
                    store_id,
                    to: 0,
                    gen,
                    lineage,
                    epoch,
                }
            }
            K_BULK_DONE => {
                let (Some(upto), Some(count), Some(gen)) =
                    (u64_at(p, 8), u64_at(p, 16), u32_at(p, 24))
                else {
                    return;
                };
                ShardMsg::ReplicaBulkDone {
                    store_id,
                    to: 0,
                    upto,
                    count,
                    gen,
                }
            }
            _ => return,
        };
        self.pending[shard].push_back(msg);
    }

    /// Sends the leader's shard the watermark of `store_id` if it moved.
    pub(super) fn watermark(&mut self, store_id: u64) {
        let Some(lead) = self.leading.get_mut(&store_id) else {
            return;
        };
        if let Some(q) = self.view.queues.get(&store_id).filter(|_| lead.epoch == 0) {
            lead.epoch = q.epoch;
        }
        let q = match self.view.queues.get(&store_id) {
            Some(q) if q.leader == self.me && q.epoch == lead.epoch => q,
            // Not (yet) known as its leader: no confirm goes.
            _ => return,
        };
        // Fenced (see the module doc).
        if self.view.lease == 0 || self.membership.lease() != Some(self.view.lease) {
            return;
        }
        let mut wm = lead.last;
        for n in q.isr.iter().filter(|n| **n != self.me) {
            let synced = lead
                .followers
                .get(n)
                .filter(|f| f.gen != 0)
                .map_or(0, |f| f.synced);
            wm = wm.min(synced);
        }
        for f in lead.followers.values().filter(|f| f.add_pending) {
            wm = wm.min(if f.gen != 0 { f.synced } else { 0 });
        }
        if wm <= lead.sent {
            return;
        }
        if lead.queue.is_none() {
            lead.queue = self
                .admin
                .definitions()
                .lock()
                .queue_by_store_id(store_id)
                .filter(|q| q.node.is_none())
                .map(|q| q.queue);
        }
        let Some(queue) = lead.queue else { return };
        lead.sent = wm;
        let shard = queue.shard as usize;
        if shard < self.shards {
            self.pending[shard].push_back(ShardMsg::Replicated { queue, seq: wm });
        }
    }

    /// The replication part of the link's tick: reports sent again,
    /// followers attached, asked out of or back into the in-sync set.
    pub(super) fn tick_replication(&mut self) {
        let unsent: Vec<u64> = self
            .reports
            .iter()
            .filter(|(_, r)| !r.2)
            .map(|(id, _)| *id)
            .collect();
        for id in unsent {
            self.send_report(id);
        }
        // Detached followers whose node can be reached get a new copy.
        let mut attach = Vec::new();
        for (id, l) in &self.leading {
            for (n, f) in &l.followers {
                if f.gen == 0 && !f.bulk_asked && self.transport.peer_up(n) {
                    attach.push((*id, n.clone()));
                }
            }
        }
        for (id, n) in attach {
            self.ask_bulk(id, &n);
        }
        // Followers behind too long leave the in-sync set; caught-up ones
        // come back.
        let now = Instant::now();
        let ids: Vec<u64> = self.leading.keys().copied().collect();
        for id in ids {
            let Some(q) = self.view.queues.get(&id).filter(|q| q.leader == self.me) else {
                continue;
            };
            let q = q.clone();
            let lead = self.leading.get_mut(&id).expect("listed");
            let (last, sent) = (lead.last, lead.sent);
            for (n, f) in lead.followers.iter_mut() {
                let in_view = q.isr.contains(n);
                if in_view {
                    f.add_pending = false;
                }
                let in_sync = in_view || f.add_pending;
                let behind = (f.gen == 0 && last > 0) || f.synced < last;
                if !behind {
                    f.behind_since = None;
                } else {
                    f.behind_since.get_or_insert(now);
                }
                if in_sync
                    && f.behind_since
                        .is_some_and(|t| now.duration_since(t) > ISR_DEADLINE)
                {
                    if !f.leaving {
                        f.leaving = true;
                        log::info!(
                            "quorum queue '{}': {} is behind (synced to {} of {}{}) for {:?}; \
                             asking it out of the in-sync set",
                            q.name,
                            n,
                            f.synced,
                            last,
                            if f.gen == 0 { ", not attached" } else { "" },
                            ISR_DEADLINE
                        );
                    }
                    f.add_pending = false;
                    self.quorum.request(Request::IsrRemove {
                        store_id: id,
                        node: n.clone(),
                    });
                }
                // A follower whose reset or copy never took (a frame lost
                // with a connection, a shard that still held the queue)
                // gets a new copy.
                if f.gen != 0
                    && !f.copying
                    && f.synced == 0
                    && last > 0
                    && f.reset_at
                        .is_some_and(|t| now.duration_since(t) > RECOPY_AFTER)
                {
                    f.gen = 0;
                    continue;
                }
                // Asked in: asked again each tick until the set shows it (a
                // request can lose to another change of the key), and only
                // once it holds every message confirmed so far (`sent`
                // cannot pass it meanwhile: it counts for the watermark).
                if f.add_pending && !in_view {
                    if f.synced >= sent {
                        self.quorum.request(Request::IsrAdd {
                            store_id: id,
                            node: n.clone(),
                        });
                    }
                    continue;
                }
                if in_sync || f.gen == 0 || f.bulk_asked || f.copying || !f.reported {
                    f.catch_up = None;
                    continue;
                }
                f.leaving = false;
                match f.catch_up {
                    Some(target) if f.synced >= target => {
                        f.catch_up = None;
                        f.add_pending = true;
                        if f.synced >= sent {
                            self.quorum.request(Request::IsrAdd {
                                store_id: id,
                                node: n.clone(),
                            });
                        }
                    }
                    Some(_) => {}
                    None => f.catch_up = Some(last),
                }
            }
            self.watermark(id);
        }
        let lag = self
            .leading
            .iter()
            .filter(|(id, _)| {
                self.view
                    .queues
                    .get(id)
                    .is_some_and(|q| q.leader == self.me)
            })
            .map(|(id, l)| {
                let followers = l
                    .followers
                    .iter()
                    .map(|(n, f)| (n.clone(), if f.gen != 0 { f.synced } else { 0 }))
                    .collect();
                (
                    *id,
                    crate::cluster::quorum::Lag {
                        last: l.last,
                        commit: l.sent,
                        followers,
                    },
                )
            })
            .collect();
        self.quorum.set_lag(lag);
    }

    /// The quorum view changed: followers to attach or forget.
    pub(super) fn apply_view(&mut self) {
        let view = self.view.clone();
        for (&id, q) in &view.queues {
            if q.leader != self.me {
                self.leading.remove(&id);
                continue;
            }
            let lead = self.leading.entry(id).or_insert_with(|| Lead {
                queue: None,
                epoch: q.epoch,
                last: 0,
                sent: 0,
                followers: HashMap::new(),
            });
            if lead.epoch != q.epoch {
                // Led again after another node led it: every follower
                // starts over.
                if lead.epoch != 0 {
                    lead.followers.clear();
                    lead.queue = None;
                    // The promoted queue numbers its messages anew.
                    lead.last = 0;
                    lead.sent = 0;
                }
                lead.epoch = q.epoch;
            }
            for (n, f) in lead.followers.iter_mut() {
                if q.isr.contains(n) {
                    f.add_pending = false;
                }
            }
            lead.followers.retain(|n, _| q.members.contains(n));
            let mut ask = Vec::new();
            for m in &q.members {
                if *m == self.me || lead.followers.contains_key(m) {
                    continue;
                }
                lead.followers.insert(m.clone(), Follower::default());
                ask.push(m.clone());
            }
            for m in ask {
                self.ask_bulk(id, &m);
            }
        }
        self.leading.retain(|id, _| view.queues.contains_key(id));
        let ids: Vec<u64> = self.leading.keys().copied().collect();
        for id in ids {
            self.watermark(id);
        }
    }

    /// Asks the leader's shard for a reset and bulk copy to `node`.
    pub(super) fn ask_bulk(&mut self, store_id: u64, node: &str) {
        let to = self.node_no(node);
        let Some(queue) = self
            .admin
            .definitions()
            .lock()
            .queue_by_store_id(store_id)
            .filter(|q| q.node.is_none())
            .map(|q| q.queue)
        else {
            return;
        };
        if let Some(f) = self
            .leading
            .get_mut(&store_id)
            .and_then(|l| l.followers.get_mut(node))
        {
            f.bulk_asked = true;
            f.gen = 0;
        }
        self.admin.ask_replica_bulk(queue, to);
    }
}

/// False when the frame could not be queued (unknown peer, output full).
fn send_append(t: &mut Transport, node: &str, store_id: u64, seq: u64, msg: &Message) -> bool {
    let Some(mut w) = t.frame_mut(node, K_APPEND) else {
        return false;
    };
    w.reserve(16);
    w.put_u64(store_id);
    w.put_u64(seq);
    super::put_message(&mut w, msg);
    true
}

fn send_reset(
    t: &mut Transport,
    node: &str,
    store_id: u64,
    gen: u32,
    lineage: u64,
    epoch: u64,
) -> bool {
    let mut p = [0u8; 28];
    p[..8].copy_from_slice(&store_id.to_be_bytes());
    p[8..12].copy_from_slice(&gen.to_be_bytes());
    p[12..20].copy_from_slice(&lineage.to_be_bytes());
    p[20..].copy_from_slice(&epoch.to_be_bytes());
    queued(t.send(node, K_RESET, &p))
}

/// A number for this process, unlike the node's earlier ones.
pub(super) fn incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The lineage of a leader's messages: its process and epoch. Two
/// replicas fed by one lineage hold the same message at the same seq; a
/// leader restarted, or another one elected, may not (`core::quorum`).
fn lineage(incarnation: u64, epoch: u64) -> u64 {
    (incarnation ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)).max(1)
}
