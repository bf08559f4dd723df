//! Quorum queues replicated across the nodes of a cluster (issue 20),
//! the shard's side. The cluster's side (who leads, who follows, the
//! in-sync set in etcd, the link between nodes) is `cluster::link` and
//! `cluster::quorum`.
//!
//! **Leader.** A quorum queue's leader is an ordinary durable `Queue` with
//! `replicated` set: every message it takes is written to the shard's
//! store (whatever its delivery mode, as RabbitMQ's quorum queues do), and
//! also handed to the cluster link as `ShardMsg::ReplicaAppend` (seq and
//! message); messages that leave it for good go as `ReplicaGone`. Its
//! publisher confirms wait for the store's fsync *and* for the link's
//! `Replicated` watermark: every in-sync follower has the message on disk
//! (`ShardStore::hold_confirm`, `ShardStore::set_replicated`).
//!
//! **Follower.** A follower node keeps a [`Replica`] per quorum queue on
//! shard `store_id % shards`: the messages' places in the shard's own
//! store, by seq. It appends what the leader sends, acks what left, and
//! after each fsync tells the leader how far it is (`ReplicaSynced`). A
//! replica never delivers. When the follower is elected leader, the
//! replica becomes a `Queue` (`ShardCtx::promote_replica`), every message
//! marked redelivered.

use super::ids::QueueRef;
use super::message::Message;
use super::shard_msg::ShardMsg;
use super::{persist, ShardCtx};
use crate::core::definitions::REMOTE_SHARD;
use crate::store::segments::Location;
use std::collections::{BTreeMap, HashMap};

/// A follower's copy of one quorum queue.
#[derive(Default)]
pub struct Replica {
    /// Every message the leader sent and did not say gone, by seq, with
    /// its place in the store.
    pub entries: BTreeMap<u64, Location>,
    /// The highest seq appended.
    pub last: u64,
    /// The generation the leader's link gave the replica's last reset:
    /// reports carry it, so one from before a reset is not mistaken for
    /// one after.
    pub gen: u32,
    /// The lineage of the leader that fed it last (its epoch and process,
    /// `ReplicaReset`): 0 unknown (recovered from disk).
    pub lineage: u64,
    /// A bulk copy under way (see [`Copying`]).
    pub copying: Option<Copying>,
}

/// A bulk copy under way, from a reset to its `ReplicaBulkDone`.
///
/// The replica keeps what it held before the reset until the copy ends:
/// it may be in the in-sync set meanwhile (a follower that reconnected),
/// and be elected before the copy ends, so it must stay a superset of
/// what the leader confirmed. At the end, what the copy did not bring is
/// gone at the leader, and goes here too. A message held from before
/// whose seq the copy brings again is kept if it came from the same
/// lineage (same leader process and epoch: the same message), and
/// replaced otherwise (a seq an unconfirmed message of an older leader
/// had may hold another message now).
#[derive(Default)]
pub struct Copying {
    /// The seqs the copy (and the stream after it) brought, ascending.
    copied: Vec<u64>,
    /// Held messages whose seq comes again are replaced.
    replace: bool,
}

impl Copying {
    fn brought(&self, seq: u64) -> bool {
        self.copied.binary_search(&seq).is_ok()
    }
}

/// The replicas a shard keeps, by the queue's store id.
#[derive(Default)]
pub struct Replicas {
    pub by_id: HashMap<u64, Replica>,
    /// The replicated queues this shard holds, by store id, with the
    /// epoch it leads them in (1 when declared here, the election's when
    /// promoted, unknown — `u64::MAX` — when recovered at boot). A deposed
    /// leader that does not know it yet may still send appends and resets
    /// for them: they must not make a replica here, under the queue's own
    /// store id. A reset of a later epoch means another node leads now:
    /// the queue steps down first (`demote_queue`).
    pub led: HashMap<u64, u64>,
    /// Queues this shard led and another node leads now
    /// (`demote_queue`): a publish still on its way to one is nacked,
    /// not counted as handled as for a deleted queue.
    pub demoted: std::collections::HashSet<QueueRef>,
}

impl Replicas {
    /// Messages held in replicas (statistics).
    pub fn messages(&self) -> usize {
        self.by_id.values().map(|r| r.entries.len()).sum()
    }
}

impl ShardCtx {
    /// A replication message for this shard (see the module doc).
    pub fn handle_replica_msg(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::ReplicaAppend {
                store_id, seq, msg, ..
            } => self.replica_append(store_id, seq, &msg),
            ShardMsg::ReplicaGone {
                store_id,
                seq,
                count,
            } => {
                let Some(store) = self.store.as_mut() else {
                    return;
                };
                let Some(r) = self.replicas.by_id.get_mut(&store_id) else {
                    return;
                };
                for s in seq..seq + count as u64 {
                    if let Some(loc) = r.entries.remove(&s) {
                        store.ack(store_id, s, loc);
                    }
                }
            }
            ShardMsg::ReplicaReset {
                store_id,
                gen,
                lineage,
                epoch,
                ..
            } => {
                if let Some(&mine) = self.replicas.led.get(&store_id) {
                    if gen == 0 || epoch <= mine || mine == u64::MAX {
                        return;
                    }
                    // Another node leads it from a later epoch: this
                    // node's queue steps down before its replica starts.
                    let held = self
                        .queues
                        .iter()
                        .find(|(_, q)| q.props.store_id == store_id)
                        .map(|(_, q)| q.me);
                    match held {
                        Some(q) => self.demote_queue(q),
                        None => {
                            self.replicas.led.remove(&store_id);
                        }
                    }
                }
                if let Some(store) = self.store.as_mut() {
                    // A gone seq of the older lineage may come back in
                    // the copy: its ack goes into the log first.
                    store.seal_acks();
                }
                if gen == 0 {
                    // The queue is gone.
                    self.drop_replica(store_id);
                    return;
                }
                let r = self.replicas.by_id.entry(store_id).or_default();
                // A copy cut short by this reset may have left messages of
                // an older lineage: they are still replaced.
                let replace = r.lineage != lineage
                    || lineage == 0
                    || r.copying.as_ref().is_some_and(|c| c.replace);
                r.gen = gen;
                r.lineage = lineage;
                r.copying = Some(Copying {
                    copied: Vec::new(),
                    replace,
                });
            }
            ShardMsg::ReplicaBulkDone {
                store_id,
                upto,
                count,
                gen,
                ..
            } => {
                let Some(store) = self.store.as_mut() else {
                    return;
                };
                let Some(r) = self.replicas.by_id.get_mut(&store_id) else {
                    return;
                };
                let Some(c) = r.copying.take() else {
                    return;
                };
                if r.gen != gen || c.copied.len() as u64 != count {
                    // Not this copy's end, or frames of it were lost with
                    // a connection: nothing is dropped (a new copy comes).
                    r.copying = Some(c);
                    return;
                }
                // Nothing was streamed after the copy yet (the frames keep
                // their order): what it did not bring is gone.
                let stale: Vec<u64> = r
                    .entries
                    .keys()
                    .copied()
                    .filter(|s| !c.brought(*s))
                    .collect();
                for s in stale {
                    if let Some(loc) = r.entries.remove(&s) {
                        store.ack(store_id, s, loc);
                    }
                }
                // The stream after the copy may publish these seqs again:
                // their acks go into the log first.
                store.seal_acks();
                // It holds all the leader held up to `upto` (what the copy
                // did not bring was gone): reported once durable, so a
                // leader whose last messages were consumed before the
                // copy does not wait for them.
                r.last = r.last.max(upto);
                store.touch();
                store.hold_sync(store_id, upto, r.gen);
            }
            ShardMsg::Replicated { queue, seq } => {
                if let Some(store) = self.store.as_mut() {
                    store.set_replicated(queue, seq);
                }
            }
            // A follower shard's own report goes to the link, never here.
            _ => {}
        }
    }

    fn replica_append(&mut self, store_id: u64, seq: u64, msg: &Message) {
        if self.replicas.led.contains_key(&store_id) {
            return;
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let r = self.replicas.by_id.entry(store_id).or_default();
        if r.copying.as_ref().is_some_and(|c| c.brought(seq)) {
            // Sent twice in one copy (never expected).
            store.touch();
            store.hold_sync(store_id, seq, r.gen);
            return;
        }
        let replace = r.copying.as_ref().is_some_and(|c| c.replace);
        let publish = persist::Publish {
            queue_id: store_id,
            seq,
            exchange: msg.exchange(),
            routing_key: msg.routing_key(),
            properties: msg.properties(),
            body: msg.body(),
            expires_at: 0,
        };
        match r.entries.get(&seq).copied() {
            None => {
                let loc = store.append(&publish);
                r.entries.insert(seq, loc);
            }
            // Replaced: the new record supersedes the old one at recovery
            // (no ack: it would land after the publish and kill both).
            Some(old) if replace => {
                let loc = store.replace(old, &publish);
                r.entries.insert(seq, loc);
            }
            // Held already, the same message: its report still waits for
            // a sync round.
            Some(_) => store.touch(),
        }
        if let Some(c) = r.copying.as_mut() {
            if c.copied.last().is_some_and(|&l| l > seq) {
                // Out of order (never expected): kept sorted.
                let at = c.copied.partition_point(|&s| s < seq);
                c.copied.insert(at, seq);
            } else {
                c.copied.push(seq);
            }
        }
        r.last = r.last.max(seq);
        store.hold_sync(store_id, seq, r.gen);
    }

    /// Drops the replica of `store_id` (a reset, or its queue is gone).
    pub fn drop_replica(&mut self, store_id: u64) {
        let Some(r) = self.replicas.by_id.remove(&store_id) else {
            return;
        };
        if let Some(store) = self.store.as_mut() {
            for (seq, loc) in r.entries {
                store.ack(store_id, seq, loc);
            }
        }
    }

    /// The leader's side of a follower joining: a reset, then every
    /// message queue `queue` holds (read back from the store, in seq
    /// order), then `ReplicaBulkDone`, all through the outbox in order,
    /// ahead of what is published after.
    pub fn replica_bulk(&mut self, queue: QueueRef, to: u16) {
        let Some(q) = self
            .queues
            .get(queue.slot as usize)
            .filter(|q| q.me == queue)
        else {
            return;
        };
        let store_id = q.props.store_id;
        let upto = q.next_seq().saturating_sub(1);
        let locs = q.stored_locations();
        self.outbox.push(
            REMOTE_SHARD,
            ShardMsg::ReplicaReset {
                store_id,
                to,
                gen: 0,
                lineage: 0,
                epoch: 0,
            },
        );
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let mut msgs = Vec::with_capacity(locs.len());
        let mut complete = true;
        for loc in locs {
            match store.log.read(loc) {
                Ok(m) => msgs.push(m),
                Err(e) => {
                    // The copy goes without its end: the follower keeps
                    // what it held (it stays a superset) and gets a new
                    // copy later.
                    log::error!("quorum queue bulk copy: cannot read a message back: {e}");
                    complete = false;
                }
            }
        }
        msgs.sort_by_key(|m| m.seq);
        let count = msgs.len() as u64;
        for m in msgs {
            let msg = Message::new(&m.exchange, &m.routing_key, &m.properties, &m.body);
            let meta = super::message::MessageMeta::from_amqp091(msg.properties());
            self.outbox.push(
                REMOTE_SHARD,
                ShardMsg::ReplicaAppend {
                    store_id,
                    seq: m.seq,
                    msg,
                    meta,
                    to,
                },
            );
        }
        if !complete {
            return;
        }
        self.outbox.push(
            REMOTE_SHARD,
            ShardMsg::ReplicaBulkDone {
                store_id,
                to,
                upto,
                count,
                gen: 0,
            },
        );
    }

    /// This node no longer leads queue `queue` (another node was elected
    /// while it was away): its consumers are cancelled, its messages
    /// dropped here (the new leader has them, and copies them back to this
    /// node's replica), its confirms nacked by the store's fault path if
    /// any are held. The definitions already name the new leader.
    pub fn demote_queue(&mut self, queue: QueueRef) {
        let Some(q) = self
            .queues
            .get(queue.slot as usize)
            .filter(|q| q.me == queue)
        else {
            return;
        };
        let store_id = q.props.store_id;
        let mut q = self.queues.remove(queue.slot as usize);
        q.cancel_all(&mut self.outbox);
        // Kept for good: a ref is never reused (its generation), and
        // demotions are few.
        self.replicas.demoted.insert(queue);
        self.replicas.led.remove(&store_id);
        if let Some(store) = self.store.as_mut() {
            store.queue_gone(
                store_id,
                crate::store::record::ALL_SEQS,
                q.stored_locations(),
            );
            store.forget_replicated(queue, &mut self.outbox);
        }
        log::warn!(
            "quorum queue '{}': another node leads it now; this node follows",
            q.props.name
        );
    }

    /// The leader's side of messages leaving a replicated queue for good.
    pub(super) fn replicate_gone(&mut self, store_id: u64, seq: u64) {
        self.outbox.push(
            REMOTE_SHARD,
            ShardMsg::ReplicaGone {
                store_id,
                seq,
                count: 1,
            },
        );
    }

    /// Makes the replica of `store_id` on this shard the queue `me`
    /// describes, as the new leader: its messages are ready again, marked
    /// redelivered (a consumer of the old leader may have had them). The
    /// caller has made `me` the queue's definition here.
    pub fn promote_replica(
        &mut self,
        me: QueueRef,
        props: super::queue::QueueProps,
        epoch: u64,
    ) -> Result<(), super::error::CoreError> {
        let store_id = props.store_id;
        let mut queue = self.new_queue(me, props)?;
        queue.replicated = true;
        if let Some(store) = self.store.as_mut() {
            // The queue's next seqs may be ones whose gone-acks are still
            // gathered: those go into the log first.
            store.seal_acks();
        }
        let entries = self
            .replicas
            .by_id
            .remove(&store_id)
            .map(|r| r.entries)
            .unwrap_or_default();
        if let Some(store) = self.store.as_mut() {
            let mut msgs: Vec<crate::store::segments::RecoveredMessage> = entries
                .into_iter()
                .map(|(seq, location)| crate::store::segments::RecoveredMessage {
                    seq,
                    location,
                    message: None,
                })
                .collect();
            for chunk in msgs.chunks_mut(4096) {
                if let Err(e) = store.log.load(chunk) {
                    log::error!(
                        "quorum queue '{}': cannot read its replica back: {e}",
                        queue.props.name
                    );
                }
                queue.recover(chunk.iter_mut().filter_map(|m| {
                    let s = *m.message.take()?;
                    let msg = Message::new(&s.exchange, &s.routing_key, &s.properties, &s.body);
                    Some((m.seq, m.location, msg, s.expires_at))
                }));
            }
        }
        debug_assert_eq!(self.queues.vacant_key(), me.slot as usize);
        self.queues.insert(queue);
        self.replicas.led.insert(store_id, epoch);
        Ok(())
    }
}
