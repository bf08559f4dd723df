//! Publishing to a queue on another node: the first part of "any node
//! serves any client". A queue held by another node is routed here like
//! any other (its `QueueRef` is on `REMOTE_SHARD`), so the shard hands
//! its `ShardMsg::Publish` to the link; the link sends it to the node
//! that holds the queue, whose link gives it to the queue's shard as if a
//! local channel had published it. A publisher confirm travels back the
//! same way: the holding node's queue confirms to a `ChannelRef` on
//! `REMOTE_SHARD` that names the publishing node, and that node's link
//! turns the token back into the channel's `ConfirmTag`. A publish whose
//! node is lost before it confirmed is nacked (it may or may not have
//! arrived).
//!
//! Frames:
//!
//! | kind | frame | fields |
//! |---|---|---|
//! | 5 | publish | confirm token u64 (0: none), vhost (u16 length), queue (u16 length), exchange (u8 length), routing key (u8 length), properties (u32 length), body (the rest) |
//! | 6 | confirm | first token u64, count u32, ok u8 |

use super::{u32_at, u64_at, State};
use crate::core::definitions::REMOTE_SHARD;
use crate::core::ids::{ChannelRef, QueueRef};
use crate::core::message::{Message, MessageMeta};
use crate::core::shard_msg::{ConfirmTag, ShardMsg};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

pub(super) const K_PUBLISH: u8 = 5;
pub(super) const K_CONFIRM: u8 = 6;
/// `ChannelRef::channel` of the confirms of forwarded publishes (a
/// proxy channel keeps its origin's number, below 65535).
pub(super) const FORWARDED: u16 = u16::MAX;

/// Where a remote queue is, and what this node waits for.
#[derive(Default)]
pub(super) struct Forwarding {
    /// Remote queue refs → (node, vhost, name), or None for a ref the
    /// definitions no longer know (acks of a moved queue's deliveries,
    /// publishes routed before a move: one lookup, not one per message);
    /// emptied when the definitions change.
    remote: HashMap<QueueRef, Option<(String, String, String)>>,
    /// vhost → name → this node's queue (looked up by `&str`, no
    /// allocation per publish); emptied likewise.
    local: HashMap<String, HashMap<String, QueueRef>>,
    /// The definitions version the caches were filled at.
    defs_version: u64,
    /// Confirms this node waits for: token → (node, the channel's tag,
    /// when it was sent if the node's connection was not up yet).
    waiting: BTreeMap<u64, (String, ConfirmTag, Option<Instant>)>,
    next_token: u64,
    /// Nodes whose connection has been up since this link started.
    ever_up: HashSet<String>,
}

/// How long a publish waits for a node's first connection.
const FIRST_CONNECT: Duration = Duration::from_secs(5);

impl State {
    fn refresh_caches(&mut self) {
        let v = self.admin.definitions().version();
        if v != self.fwd.defs_version {
            self.fwd.defs_version = v;
            self.fwd.remote.clear();
            self.fwd.local.clear();
        }
    }

    /// The node, vhost and name of remote queue `queue`, from the
    /// definitions (cached until they change).
    pub(super) fn fwd_lookup(&mut self, queue: QueueRef) -> Option<(String, String, String)> {
        self.refresh_caches();
        if !self.fwd.remote.contains_key(&queue) {
            let found = {
                let g = self.admin.definitions().lock();
                let found = g.vhosts().find_map(|v| {
                    v.queues.values().find(|q| q.queue == queue).and_then(|q| {
                        Some((
                            q.node.as_deref()?.to_string(),
                            v.name.to_string(),
                            q.name.clone(),
                        ))
                    })
                });
                found
            };
            self.fwd.remote.insert(queue, found);
        }
        self.fwd.remote.get(&queue).cloned().flatten()
    }

    /// A `Publish` a shard routed to a queue on another node.
    pub(super) fn forward_publish(
        &mut self,
        queue: QueueRef,
        msg: Message,
        confirm: Option<ConfirmTag>,
    ) {
        let Some((node, vhost, name)) = self.fwd_lookup(queue) else {
            // This ref is gone meanwhile: the queue was deleted, or moved
            // to another node (a new leader). Not knowing which, the
            // publish is nacked: the publisher sends it again (RabbitMQ
            // acks a publish to a deleted queue; a nack is never wrong).
            if let Some(tag) = confirm {
                self.confirm_local(tag, false);
            }
            return;
        };
        self.ensure_peer(&node);
        // A node whose connection is down gets nothing: its PeerDown came
        // already, so the confirm would never come. One not connected yet
        // (this node just started, or it just joined) gets the frame when
        // it is, or the publish is nacked after FIRST_CONNECT.
        let up = self.transport.peer_up(&node);
        let first = !up && !self.fwd.ever_up.contains(&node);
        let token = match confirm {
            Some(tag) => {
                self.fwd.next_token += 1;
                let t = self.fwd.next_token;
                let since = first.then(Instant::now);
                self.fwd.waiting.insert(t, (node.clone(), tag, since));
                t
            }
            None => 0,
        };
        let sent = (up || first)
            && match self.transport.frame_mut(&node, K_PUBLISH) {
                Some(mut w) => {
                    w.reserve(8 + 4 + vhost.len() + name.len());
                    w.put_u64(token);
                    w.put_u16(vhost.len() as u16);
                    w.put(vhost.as_bytes());
                    w.put_u16(name.len() as u16);
                    w.put(name.as_bytes());
                    super::put_message(&mut w, &msg);
                    true
                }
                None => false,
            };
        if !sent && token != 0 {
            if let Some((_, tag, _)) = self.fwd.waiting.remove(&token) {
                self.confirm_local(tag, false);
            }
        }
    }

    /// `node`'s connection is up: publishes that waited for it are on
    /// their way (a PeerDown nacks them if it is lost).
    pub(super) fn forwarding_up(&mut self, node: &str) {
        self.fwd.ever_up.insert(node.to_string());
        for (n, _, since) in self.fwd.waiting.values_mut() {
            if n == node {
                *since = None;
            }
        }
    }

    /// Publishes that waited [`FIRST_CONNECT`] for a node's first
    /// connection are nacked.
    pub(super) fn forwarding_expired(&mut self) {
        let now = Instant::now();
        let late: Vec<u64> = self
            .fwd
            .waiting
            .iter()
            .filter(|(_, (_, _, since))| {
                since.is_some_and(|t| now.duration_since(t) > FIRST_CONNECT)
            })
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            if let Some((_, tag, _)) = self.fwd.waiting.remove(&t) {
                self.confirm_local(tag, false);
            }
        }
    }

    /// A `Confirm` a local queue sent to a publisher on another node.
    pub(super) fn forward_confirm(&mut self, tag: ConfirmTag, ok: bool, count: u32) {
        let Some(node) = self.nodes.get(tag.channel.conn_slot as usize).cloned() else {
            return;
        };
        let first = tag.seq.get() + 1 - count as u64;
        let mut p = [0u8; 13];
        p[..8].copy_from_slice(&first.to_be_bytes());
        p[8..12].copy_from_slice(&count.to_be_bytes());
        p[12] = ok as u8;
        self.send_or_retry(&node, K_CONFIRM, &p);
    }

    /// A publish frame from `from`: to the queue's shard here.
    pub(super) fn publish_frame(&mut self, from: &str, p: &[u8]) {
        let Some(token) = u64_at(p, 0) else { return };
        let Some((vhost, name, rest)) = names(&p[8..]) else {
            return;
        };
        let Some(msg) = super::decode_append(rest) else {
            return;
        };
        self.refresh_caches();
        let cached = |f: &Forwarding| f.local.get(vhost).and_then(|v| v.get(name)).copied();
        if cached(&self.fwd).is_none() {
            let g = self.admin.definitions().lock();
            if let Some(q) = g
                .vhost_id(vhost)
                .and_then(|id| g.queue(id, name).ok())
                .filter(|q| q.node.is_none())
            {
                self.fwd
                    .local
                    .entry(vhost.to_string())
                    .or_default()
                    .insert(name.to_string(), q.queue);
            }
        }
        let from_no = self.node_no(from) as u32 - 1;
        let confirm = std::num::NonZeroU64::new(token).map(|seq| ConfirmTag {
            channel: ChannelRef {
                shard: REMOTE_SHARD,
                channel: FORWARDED,
                conn_slot: from_no,
                incarnation: 0,
            },
            seq,
        });
        match cached(&self.fwd) {
            Some(queue) if (queue.shard as usize) < self.shards => {
                let meta = MessageMeta::from_amqp091(msg.properties());
                self.pending[queue.shard as usize].push_back(ShardMsg::Publish {
                    queue,
                    msg,
                    meta,
                    confirm,
                });
            }
            // Not here. Deleted: handled, as RabbitMQ counts a publish to
            // a deleted queue. Held by another node now (a new leader this
            // node has not been told of, or this node was deposed):
            // nacked, never acked, since nothing here has it.
            _ => {
                if let Some(tag) = confirm {
                    let elsewhere = {
                        let g = self.admin.definitions().lock();
                        g.vhost_id(vhost)
                            .and_then(|id| g.queue(id, name).ok())
                            .is_some()
                    };
                    self.forward_confirm(tag, !elsewhere, 1);
                }
            }
        }
    }

    /// A confirm frame: the waiting channels get theirs.
    pub(super) fn confirm_frame(&mut self, p: &[u8]) {
        let (Some(first), Some(count)) = (u64_at(p, 0), u32_at(p, 8)) else {
            return;
        };
        let ok = p.get(12).copied() == Some(1);
        for t in first..first + count as u64 {
            if let Some((_, tag, _)) = self.fwd.waiting.remove(&t) {
                self.confirm_local(tag, ok);
            }
        }
    }

    /// `node` is lost: what it had not confirmed is nacked.
    pub(super) fn forwarding_lost(&mut self, node: &str) {
        let lost: Vec<u64> = self
            .fwd
            .waiting
            .iter()
            .filter(|(_, (n, _, _))| n == node)
            .map(|(t, _)| *t)
            .collect();
        for t in lost {
            if let Some((_, tag, _)) = self.fwd.waiting.remove(&t) {
                self.confirm_local(tag, false);
            }
        }
    }

    fn confirm_local(&mut self, tag: ConfirmTag, ok: bool) {
        let shard = tag.channel.shard as usize;
        if shard < self.shards {
            self.pending[shard].push_back(ShardMsg::Confirm { tag, ok, count: 1 });
        }
    }
}

/// vhost and queue names, then the rest.
fn names(p: &[u8]) -> Option<(&str, &str, &[u8])> {
    let vl = u16::from_be_bytes(p.get(..2)?.try_into().ok()?) as usize;
    let vhost = std::str::from_utf8(p.get(2..2 + vl)?).ok()?;
    let at = 2 + vl;
    let nl = u16::from_be_bytes(p.get(at..at + 2)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(p.get(at + 2..at + 2 + nl)?).ok()?;
    Some((vhost, name, p.get(at + 2 + nl..)?))
}
