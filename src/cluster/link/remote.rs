//! Using a queue held by another node: declare (its status), consume,
//! get, purge, delete, and everything a consumer sends back. The second
//! part of "any node serves any client", after publishing (`forward.rs`).
//!
//! On the node of the client (the *origin*), the channel's `Request`,
//! `Settle`, `ChannelGone` and `Resume` for a queue on `REMOTE_SHARD` come
//! to the link, which sends them to the node holding the queue (the
//! *owner*) with the channel's ref and the queue's ref as the origin
//! knows them.
//!
//! On the owner, the link stands in for the channel: a *proxy* channel
//! (`ChannelRef` on `REMOTE_SHARD`, `conn_slot` numbering the proxy) with
//! its own channel-wide window and output flag, so the queue treats the
//! remote consumer as one of its own. What the queue sends the proxy
//! (`Reply`, `Deliver`, `ConsumerCancelled`, `ConsumerTimeout`) comes back
//! to the link, which sends it to the origin, where the channel gets it
//! with its own refs.
//!
//! A node lost: on the origin, its consumers of that node's queues are
//! cancelled (basic.cancel, as for a deleted queue), except a quorum
//! queue's, which follow the queue to its new leader (`reattach.rs`);
//! requests waiting for it are answered with an error. On the owner, the
//! lost node's proxy channels are gone (their unacked messages requeued,
//! redelivered).
//!
//! Frames (refs as `codec.rs` writes them):
//!
//! | kind | frame | fields |
//! |---|---|---|
//! | 7 | request | channel, queue, vhost, name, wants reply u8, op |
//! | 8 | reply | channel, queue, reply |
//! | 9 | deliver | channel, consumer id u32, queue, seq u64, redelivered u8, message |
//! | 10 | settle | channel, queue, seq u64, how, count u32 |
//! | 11 | channel gone | channel, queue |
//! | 12 | resume | queue |
//! | 13 | consumer cancelled | channel, consumer id u32 |
//! | 14 | consumer timeout | channel, timeout ms u64 |

use super::codec::{self, Rd, WireOp, Wr};
use super::State;
use crate::core::definitions::REMOTE_SHARD;
use crate::core::error::CoreError;
use crate::core::ids::{ChannelRef, ConsumerRef, QueueRef, Requester};
use crate::core::shard_msg::{ChannelWindow, ConsumeSpec, QueueOp, QueueReply, ShardMsg};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub(super) const K_REQUEST: u8 = 7;
pub(super) const K_REPLY: u8 = 8;
pub(super) const K_DELIVER: u8 = 9;
pub(super) const K_SETTLE: u8 = 10;
pub(super) const K_CHANNEL_GONE: u8 = 11;
pub(super) const K_RESUME: u8 = 12;
pub(super) const K_CANCELLED: u8 = 13;
pub(super) const K_TIMEOUT: u8 = 14;

/// Output waiting for one node above which the queues here stop
/// delivering to its consumers (their proxies' `output_full`), and below
/// which they start again: the transport's buffer (64 MiB) is never
/// reached, so no delivery is dropped.
const OUTPUT_HIGH: usize = 8 << 20;
const OUTPUT_LOW: usize = 2 << 20;

/// A consumer here of a queue on another node (origin side).
pub(super) struct RemoteConsumer {
    /// The node holding the queue (this node's name once it followed its
    /// queue here).
    pub(super) node: String,
    /// The queue as the channel knows it (the ref it consumed with).
    pub(super) queue: QueueRef,
    /// The ref the consumer's deliveries carry: `queue`, or after it
    /// followed its queue to a new leader the definitions' ref of the
    /// queue there (`reattach.rs`).
    pub(super) wire: QueueRef,
    pub(super) vhost: String,
    pub(super) name: String,
    pub(super) store_id: u64,
    /// A quorum queue's consumer paced by prefetch: it follows the queue
    /// to a new leader (`reattach.rs`) instead of being cancelled.
    pub(super) follows: bool,
    pub(super) spec: Box<ConsumeSpec>,
}

/// A consumer between two leaders of its queue (`reattach.rs`).
pub(super) struct Orphan {
    pub(super) c: RemoteConsumer,
    /// When it lost its queue's node (kept across failed attempts).
    pub(super) since: std::time::Instant,
    /// The node that cancelled it, if that is how it was lost.
    pub(super) cancelled_by: Option<String>,
}

/// The `conn_slot` of the requester standing for the link itself, in a
/// consume it sends a local queue for a following consumer
/// (`reattach.rs`): the reply comes back to the link.
pub(super) const LINK_SLOT: u32 = u32::MAX;

/// A request waiting for a reply (origin side).
pub(super) struct Waiting {
    pub(super) node: String,
    pub(super) to: Requester,
    /// The ref the request was sent with (the reply carries it).
    pub(super) queue: QueueRef,
    /// The ref the channel asked about (its reply carries it).
    pub(super) reply_as: QueueRef,
    /// A consume: the consumer (only its record goes if it fails).
    pub(super) consumer: Option<ConsumerRef>,
    /// The consume of a consumer following its queue (`reattach.rs`):
    /// since when it has been without its queue. The reply is not the
    /// channel's.
    pub(super) reattach: Option<std::time::Instant>,
}

/// The owner's stand-in for a channel on another node.
struct Proxy {
    node: String,
    origin: ChannelRef,
    /// Queue here → the ref the origin channel used for it (what its
    /// deliveries and replies carry back).
    origin_q: HashMap<QueueRef, QueueRef>,
    window: Arc<ChannelWindow>,
    output_full: Arc<AtomicBool>,
}

#[derive(Default)]
pub(super) struct Remote {
    // ---- as the owner ----
    proxies: HashMap<u32, Proxy>,
    /// (origin node's number, `State::node_no`, its channel) → proxy.
    by_origin: HashMap<(u16, ChannelRef), u32>,
    next_proxy: u32,
    /// (origin node, the origin's ref of the queue) → the queue here.
    queues: HashMap<(u16, QueueRef), QueueRef>,
    // ---- as the origin ----
    /// Consumers of queues on other nodes.
    pub(super) consumers: Vec<RemoteConsumer>,
    /// Requests waiting for another node, in the order sent.
    pub(super) waiting: Vec<Waiting>,
    /// Consumers whose queue is between nodes (`reattach.rs`).
    pub(super) orphans: Vec<Orphan>,
    /// Where channels' consumers followed their queues: (channel, the
    /// channel's ref, the ref used since, its node), until the channel
    /// is gone (`reattach.rs`).
    pub(super) wires: Vec<(ChannelRef, QueueRef, QueueRef, String)>,
    /// The frame being written, for the per-message ones (deliveries,
    /// settles): reused, never allocated again.
    scratch: Vec<u8>,
    /// Nodes whose consumers here are paused (their output is high).
    paused: Vec<String>,
    /// Frames for a node not reachable yet: (give up at, node, kind,
    /// payload), in order.
    retry: Vec<(std::time::Instant, String, u8, Vec<u8>)>,
}

/// How long a request waits for a node this one does not know yet.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

impl State {
    /// The node, vhost and name of remote queue `queue` (origin side).
    fn remote_queue(&mut self, queue: QueueRef) -> Option<(String, String, String)> {
        let found = self.fwd_lookup(queue);
        if let Some((node, _, _)) = &found {
            let node = node.clone();
            self.ensure_peer(&node);
        }
        if found.is_none() {
            log::debug!("cluster link: remote queue {queue:?} is not defined here");
        }
        found
    }

    /// A message of a local shard about a queue on another node.
    pub(super) fn remote_from_shard(&mut self, m: ShardMsg) {
        match m {
            ShardMsg::Request {
                queue,
                reply_to,
                op,
            } => {
                if let QueueOp::Cancel { consumer } = &op {
                    if self.cancel_followed(*consumer, queue, reply_to) {
                        return;
                    }
                }
                if matches!(op, QueueOp::Hold { .. } | QueueOp::Release { .. }) {
                    // A connection never moves for a queue on another
                    // node; nothing is held.
                    if let Some(to) = reply_to {
                        self.reply_here(to, queue, QueueReply::Held);
                    }
                    return;
                }
                let Some((node, vhost, name)) = self.remote_queue(queue) else {
                    if let QueueOp::Cancel { consumer } = &op {
                        self.remote
                            .consumers
                            .retain(|c| c.spec.consumer != *consumer);
                    }
                    if let Some(to) = reply_to {
                        self.reply_here(to, queue, QueueReply::Gone);
                    }
                    return;
                };
                let channel = match reply_to {
                    Some(Requester::Channel(c)) => c,
                    None => ChannelRef {
                        shard: REMOTE_SHARD,
                        channel: 0,
                        conn_slot: 0,
                        incarnation: 0,
                    },
                };
                let mut w = Vec::with_capacity(64);
                w.channel(channel);
                w.queue(queue);
                w.bytes(vhost.as_bytes());
                w.bytes(name.as_bytes());
                w.u8(reply_to.is_some() as u8);
                if !codec::put_op(&mut w, &op) {
                    // Hold/Release: a connection never moves for a queue
                    // on another node; nothing is held.
                    if let Some(to) = reply_to {
                        self.reply_here(to, queue, QueueReply::Held);
                    }
                    return;
                }
                if let QueueOp::Cancel { consumer } = &op {
                    self.remote
                        .consumers
                        .retain(|c| c.spec.consumer != *consumer);
                }
                let consumer = match &op {
                    QueueOp::Consume(spec) => Some(spec.consumer),
                    _ => None,
                };
                if let Some(to) = reply_to {
                    self.remote.waiting.push(Waiting {
                        node: node.clone(),
                        to,
                        queue,
                        reply_as: queue,
                        consumer,
                        reattach: None,
                    });
                }
                if let QueueOp::Consume(spec) = op {
                    let c = self.remote_consumer(node.clone(), queue, vhost, name, spec);
                    self.remote.consumers.push(c);
                }
                self.send_or_retry(&node, K_REQUEST, &w);
            }
            ShardMsg::Settle {
                queue,
                channel,
                seq,
                how,
                count,
            } => {
                let Some((node, _, _)) = self.remote_queue(queue) else {
                    return;
                };
                let mut w = std::mem::take(&mut self.remote.scratch);
                w.clear();
                w.channel(channel);
                w.queue(queue);
                w.u64(seq);
                w.settle(how);
                w.u32(count);
                self.send_or_retry(&node, K_SETTLE, &w);
                self.remote.scratch = w;
            }
            ShardMsg::ChannelGone { queue, channel } => {
                self.remote
                    .consumers
                    .retain(|c| !(c.spec.consumer.channel == channel && c.queue == queue));
                self.remote
                    .orphans
                    .retain(|o| !(o.c.spec.consumer.channel == channel && o.c.queue == queue));
                self.followed_channel_gone(channel, queue);
                let Some((node, _, _)) = self.remote_queue(queue) else {
                    return;
                };
                let mut w = Vec::with_capacity(32);
                w.channel(channel);
                w.queue(queue);
                self.send_or_retry(&node, K_CHANNEL_GONE, &w);
            }
            ShardMsg::Resume { queue } => {
                self.followed_resume(queue);
                let Some((node, _, _)) = self.remote_queue(queue) else {
                    return;
                };
                let mut w = Vec::with_capacity(16);
                w.queue(queue);
                self.send_or_retry(&node, K_RESUME, &w);
            }
            _ => {}
        }
    }

    /// The answer to request `w`: to its channel, or, for a following
    /// consumer's consume, to `reattach.rs`.
    fn on_remote_reply(&mut self, w: Waiting, reply: QueueReply) {
        let failed = matches!(reply, QueueReply::Error(_) | QueueReply::Gone);
        if let (Some(since), Some(consumer)) = (w.reattach, w.consumer) {
            if failed {
                let refused = matches!(reply, QueueReply::Error(_));
                self.reattach_failed(&w.node, consumer, since, refused);
            }
            return;
        }
        if let (true, Some(consumer)) = (failed, w.consumer) {
            // The consumer never existed.
            self.remote
                .consumers
                .retain(|c| c.spec.consumer != consumer);
        }
        self.reply_here(w.to, w.reply_as, reply);
    }

    pub(super) fn reply_here(&mut self, to: Requester, queue: QueueRef, reply: QueueReply) {
        let shard = to.shard() as usize;
        if shard < self.shards {
            self.pending[shard].push_back(ShardMsg::Reply { to, queue, reply });
        }
    }

    /// A message a local queue sent to a proxy channel: back to its node.
    /// (Or the answer to a consume the link sent for a consumer following
    /// its queue here, `reattach.rs`.)
    pub(super) fn remote_to_origin(&mut self, m: ShardMsg) {
        let m = match m {
            ShardMsg::Reply {
                to: Requester::Channel(c),
                queue,
                reply,
            } if c.conn_slot == LINK_SLOT => {
                return self.local_reattach_reply(queue, reply);
            }
            m => m,
        };
        let channel_of = |m: &ShardMsg| -> Option<ChannelRef> {
            Some(match m {
                ShardMsg::Reply {
                    to: Requester::Channel(c),
                    ..
                } => *c,
                ShardMsg::Deliver { consumer, .. } => consumer.channel,
                ShardMsg::ConsumerCancelled { consumer } => consumer.channel,
                ShardMsg::ConsumerTimeout { channel, .. } => *channel,
                _ => return None,
            })
        };
        let Some(proxy) = channel_of(&m) else { return };
        let Some(p) = self.remote.proxies.get_mut(&proxy.conn_slot) else {
            return;
        };
        let local_q = match &m {
            ShardMsg::Reply { queue, .. } | ShardMsg::Deliver { queue, .. } => *queue,
            _ => proxy_none(),
        };
        let oq = p.origin_q.get(&local_q).copied().unwrap_or(local_q);
        // Borrowed out of the proxy for the send (put back below): no
        // copy of the node's name per delivery.
        let (node, origin) = (std::mem::take(&mut p.node), p.origin);
        // One buffer for every frame (a delivery each): no allocation.
        let mut w = std::mem::take(&mut self.remote.scratch);
        w.clear();
        w.channel(origin);
        let kind = match &m {
            ShardMsg::Reply { reply, .. } => {
                w.queue(oq);
                codec::put_reply(&mut w, reply);
                K_REPLY
            }
            ShardMsg::Deliver {
                consumer,
                seq,
                redelivered,
                msg,
                ..
            } => {
                w.u32(consumer.id);
                w.queue(oq);
                w.u64(*seq);
                w.u8(*redelivered as u8);
                w.message(msg);
                K_DELIVER
            }
            ShardMsg::ConsumerCancelled { consumer } => {
                w.u32(consumer.id);
                K_CANCELLED
            }
            ShardMsg::ConsumerTimeout { timeout_ms, .. } => {
                w.u64(*timeout_ms);
                K_TIMEOUT
            }
            _ => unreachable!("channel_of took only these"),
        };
        self.send_or_retry(&node, kind, &w);
        self.remote.scratch = w;
        if let Some(p) = self.remote.proxies.get_mut(&proxy.conn_slot) {
            p.node = node;
        }
    }

    /// The proxy channel standing in for `origin` of `node` (made on
    /// first use).
    fn proxy(&mut self, node: &str, origin: ChannelRef) -> ChannelRef {
        let key = (self.node_no(node), origin);
        let id = match self.remote.by_origin.get(&key) {
            Some(&id) => id,
            None => {
                self.remote.next_proxy = self.remote.next_proxy.wrapping_add(1);
                let id = self.remote.next_proxy;
                self.remote.proxies.insert(
                    id,
                    Proxy {
                        node: node.to_string(),
                        origin,
                        origin_q: HashMap::new(),
                        window: Arc::new(ChannelWindow::default()),
                        output_full: Arc::new(AtomicBool::new(false)),
                    },
                );
                self.remote.by_origin.insert(key, id);
                id
            }
        };
        ChannelRef {
            shard: REMOTE_SHARD,
            channel: origin.channel,
            conn_slot: id,
            incarnation: origin.incarnation,
        }
    }

    /// A frame of the remote-queue protocol from `from`.
    pub(super) fn remote_frame(&mut self, from: &str, kind: u8, p: &[u8]) {
        if self.remote_frame_inner(from, kind, p).is_none() {
            log::warn!("cluster link: a damaged frame of kind {kind} from {from}");
        }
    }

    fn remote_frame_inner(&mut self, from: &str, kind: u8, p: &[u8]) -> Option<()> {
        let mut r = Rd::new(p);
        match kind {
            // ---- as the owner ----
            K_REQUEST => {
                let origin = r.channel()?;
                let oq = r.queue()?;
                let vhost = r.str()?.to_string();
                let name = r.str()?.to_string();
                let wants_reply = r.u8()? != 0;
                let proxy = self.proxy(from, origin);
                let op = match codec::get_op(&mut r, proxy)? {
                    WireOp::Op(op) => op,
                    WireOp::Consume {
                        id,
                        conn_uid,
                        no_ack,
                        exclusive,
                        mode,
                        window,
                        arguments,
                        tag,
                    } => {
                        let p = &self.remote.proxies[&proxy.conn_slot];
                        p.window
                            .limit
                            .store(window, std::sync::atomic::Ordering::Relaxed);
                        QueueOp::Consume(Box::new(ConsumeSpec {
                            consumer: ConsumerRef { channel: proxy, id },
                            conn_uid,
                            no_ack,
                            exclusive,
                            mode,
                            window: p.window.clone(),
                            output_full: p.output_full.clone(),
                            arguments,
                            tag,
                        }))
                    }
                };
                let local = {
                    let g = self.admin.definitions().lock();
                    g.vhost_id(&vhost)
                        .and_then(|id| g.queue(id, &name).ok())
                        .filter(|q| q.node.is_none())
                        .map(|q| q.queue)
                };
                let reply_to = wants_reply.then_some(Requester::Channel(proxy));
                match local {
                    Some(q) if (q.shard as usize) < self.shards => {
                        let from_no = self.node_no(from);
                        self.remote.queues.insert((from_no, oq), q);
                        if let Some(p) = self.remote.proxies.get_mut(&proxy.conn_slot) {
                            p.origin_q.insert(q, oq);
                        }
                        self.pending[q.shard as usize].push_back(ShardMsg::Request {
                            queue: q,
                            reply_to,
                            op,
                        });
                    }
                    _ => {
                        if wants_reply {
                            let mut w = Vec::new();
                            w.channel(origin);
                            w.queue(oq);
                            codec::put_reply(&mut w, &QueueReply::Gone);
                            self.send_or_retry(from, K_REPLY, &w);
                        }
                    }
                }
            }
            K_SETTLE | K_CHANNEL_GONE => {
                let origin = r.channel()?;
                let oq = r.queue()?;
                let from_no = self.node_no(from);
                let Some(&q) = self.remote.queues.get(&(from_no, oq)) else {
                    return Some(());
                };
                let channel = self.proxy(from, origin);
                let m = if kind == K_SETTLE {
                    let seq = r.u64()?;
                    let how = r.settle()?;
                    let count = r.u32()?;
                    ShardMsg::Settle {
                        queue: q,
                        channel,
                        seq,
                        how,
                        count,
                    }
                } else {
                    ShardMsg::ChannelGone { queue: q, channel }
                };
                if (q.shard as usize) < self.shards {
                    self.pending[q.shard as usize].push_back(m);
                }
            }
            K_RESUME => {
                let oq = r.queue()?;
                let from_no = self.node_no(from);
                if let Some(&q) = self.remote.queues.get(&(from_no, oq)) {
                    if (q.shard as usize) < self.shards {
                        self.pending[q.shard as usize].push_back(ShardMsg::Resume { queue: q });
                    }
                }
            }
            // ---- as the origin ----
            K_REPLY => {
                let origin = r.channel()?;
                let queue = r.queue()?;
                let reply = codec::get_reply(&mut r, origin)?;
                let to = Requester::Channel(origin);
                let Some(i) = self
                    .remote
                    .waiting
                    .iter()
                    .position(|w| w.node == from && w.to == to && w.queue == queue)
                else {
                    // Its request was answered already (the node was
                    // given up on), or was no channel's.
                    log::debug!("cluster link: a reply from {from} nobody waits for");
                    return Some(());
                };
                let w = self.remote.waiting.remove(i);
                self.on_remote_reply(w, reply);
            }
            K_DELIVER => {
                let origin = r.channel()?;
                let id = r.u32()?;
                let queue = r.queue()?;
                let seq = r.u64()?;
                let redelivered = r.u8()? != 0;
                let msg = r.message()?;
                if (origin.shard as usize) < self.shards {
                    self.pending[origin.shard as usize].push_back(ShardMsg::Deliver {
                        consumer: ConsumerRef {
                            channel: origin,
                            id,
                        },
                        queue,
                        seq,
                        redelivered,
                        msg,
                    });
                }
            }
            K_CANCELLED => {
                let origin = r.channel()?;
                let id = r.u32()?;
                let consumer = ConsumerRef {
                    channel: origin,
                    id,
                };
                let found = self
                    .remote
                    .consumers
                    .iter()
                    .position(|c| c.spec.consumer == consumer);
                match found {
                    Some(i) if self.remote.consumers[i].node == from => {
                        let c = self.remote.consumers.remove(i);
                        // Deleted, or moved to another leader (a
                        // handover): the definitions tell which.
                        self.orphan(c, Some(from.to_string()), std::time::Instant::now());
                    }
                    // A late word of a node the consumer left.
                    Some(_) => {}
                    None if self
                        .remote
                        .orphans
                        .iter()
                        .any(|o| o.c.spec.consumer == consumer) => {}
                    None => self.cancel_here(consumer),
                }
            }
            K_TIMEOUT => {
                let channel = r.channel()?;
                let timeout_ms = r.u64()?;
                if (channel.shard as usize) < self.shards {
                    self.pending[channel.shard as usize].push_back(ShardMsg::ConsumerTimeout {
                        channel,
                        timeout_ms,
                    });
                }
            }
            _ => {}
        }
        Some(())
    }

    /// Sends a frame, or keeps it (behind any kept for the same node) for
    /// the ticks to come when the node is not known here yet: it just
    /// joined, and this node's membership round has not listed it.
    pub(super) fn send_or_retry(&mut self, node: &str, kind: u8, w: &[u8]) {
        let behind = self.remote.retry.iter().any(|r| r.1 == node);
        // Only to a node whose connection is up: one that is down already
        // reported it (`PeerDown`), and would never answer what waits.
        if !behind
            && self.transport.peer_up(node)
            && super::queued(self.transport.send(node, kind, w))
        {
            return;
        }
        let until = std::time::Instant::now() + RETRY_FOR;
        self.remote
            .retry
            .push((until, node.to_string(), kind, w.to_vec()));
    }

    /// At each tick: frames kept for a node are sent if it can be reached
    /// now; after `RETRY_FOR` they are dropped, and requests waiting for
    /// the node fail as if it were lost.
    pub(super) fn retry_requests(&mut self) {
        if self.remote.retry.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let mut failed: Vec<String> = Vec::new();
        for (until, node, kind, w) in std::mem::take(&mut self.remote.retry) {
            self.ensure_peer(&node);
            let blocked = self.remote.retry.iter().any(|r| r.1 == node);
            if !blocked
                && self.transport.peer_up(&node)
                && super::queued(self.transport.send(&node, kind, &w))
            {
                continue;
            }
            if now >= until {
                if !failed.contains(&node) {
                    failed.push(node);
                }
            } else {
                self.remote.retry.push((until, node, kind, w));
            }
        }
        for node in failed {
            self.remote.retry.retain(|r| r.1 != node);
            let (lost, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.remote.waiting)
                .into_iter()
                .partition(|w| w.node == node);
            self.remote.waiting = kept;
            for w in lost {
                // (A following consumer waits again, not refused.)
                let e = match w.reattach {
                    Some(_) => QueueReply::Gone,
                    None => QueueReply::Error(unreachable(&node)),
                };
                self.on_remote_reply(w, e);
            }
        }
    }

    /// After each flush: a node whose output grew past `OUTPUT_HIGH` has
    /// its proxies marked full (the queues skip their consumers, as for a
    /// local connection's full socket); once below `OUTPUT_LOW` they are
    /// cleared and their queues resumed.
    pub(super) fn remote_backpressure(&mut self) {
        if self.remote.proxies.is_empty() {
            return;
        }
        let mut nodes: Vec<String> = self
            .remote
            .proxies
            .values()
            .map(|p| p.node.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        for node in nodes {
            let out = self.transport.pending_bytes(&node);
            let paused = self.remote.paused.contains(&node);
            if !paused && out > OUTPUT_HIGH {
                self.remote.paused.push(node.clone());
                self.set_full(&node, true);
            } else if paused && out < OUTPUT_LOW {
                self.remote.paused.retain(|n| *n != node);
                self.set_full(&node, false);
                let node_no = self.node_no(&node);
                let queues: Vec<QueueRef> = self
                    .remote
                    .queues
                    .iter()
                    .filter(|((n, _), _)| *n == node_no)
                    .map(|(_, q)| *q)
                    .collect();
                for q in queues {
                    if (q.shard as usize) < self.shards {
                        self.pending[q.shard as usize].push_back(ShardMsg::Resume { queue: q });
                    }
                }
            }
        }
    }

    fn set_full(&self, node: &str, full: bool) {
        for p in self.remote.proxies.values().filter(|p| p.node == node) {
            p.output_full
                .store(full, std::sync::atomic::Ordering::Release);
        }
    }

    /// `node` is lost: its consumers here are cancelled (a quorum queue's
    /// wait for its next leader, `reattach.rs`), requests waiting for it
    /// answered; its proxy channels here are gone.
    pub(super) fn remote_lost(&mut self, node: &str) {
        let (lost, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.remote.consumers)
            .into_iter()
            .partition(|c| c.node == node);
        self.remote.consumers = kept;
        let now = std::time::Instant::now();
        for c in lost {
            self.orphan(c, None, now);
        }
        let (lost, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.remote.waiting)
            .into_iter()
            .partition(|w| w.node == node);
        self.remote.waiting = kept;
        for w in lost {
            // A following consumer's consume: the consumer was among
            // those just orphaned.
            if w.reattach.is_none() {
                self.reply_here(w.to, w.reply_as, QueueReply::Error(unreachable(node)));
            }
        }
        let gone: Vec<u32> = self
            .remote
            .proxies
            .iter()
            .filter(|(_, p)| p.node == node)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let Some(p) = self.remote.proxies.remove(&id) else {
                continue;
            };
            let node_no = self.node_no(&p.node);
            self.remote.by_origin.remove(&(node_no, p.origin));
            let channel = ChannelRef {
                shard: REMOTE_SHARD,
                channel: p.origin.channel,
                conn_slot: id,
                incarnation: p.origin.incarnation,
            };
            let node_no = self.node_no(node);
            let queues: Vec<QueueRef> = self
                .remote
                .queues
                .iter()
                .filter(|((n, _), _)| *n == node_no)
                .map(|(_, q)| *q)
                .collect();
            for q in queues {
                if (q.shard as usize) < self.shards {
                    self.pending[q.shard as usize]
                        .push_back(ShardMsg::ChannelGone { queue: q, channel });
                }
            }
        }
        let node_no = self.node_no(node);
        self.remote.queues.retain(|(n, _), _| *n != node_no);
    }
}

/// A queue ref for messages that carry none.
fn proxy_none() -> QueueRef {
    QueueRef {
        shard: REMOTE_SHARD,
        slot: 0,
        gen: 0,
    }
}

fn unreachable(node: &str) -> CoreError {
    CoreError::NotFound(format!(
        "node '{node}', which holds the queue, cannot be reached"
    ))
}
