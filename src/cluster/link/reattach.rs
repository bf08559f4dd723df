//! Consumers that follow a quorum queue to its next leader, as RabbitMQ's
//! do: a client consuming through this node keeps its consumer when the
//! queue's leader dies, is cut off or hands the queue over, and goes on
//! receiving from the new leader; the messages it had not acked come
//! again, redelivered (the new leader's replica marks them so).
//!
//! When the consumer's node is lost (`remote_lost`) or that node cancels
//! it (`K_CANCELLED`: the queue was deleted or moved away), the consumer
//! becomes an [`Orphan`](super::remote::Orphan). At each tick the definitions say where the
//! queue is now:
//!
//! - gone (or another queue of the same name): the consumer is cancelled
//!   (basic.cancel), as for a deleted queue;
//! - still on the node that cancelled it: deleted there, the definitions
//!   not here yet; cancelled after [`GRACE`];
//! - on another node that can be reached: the consume is sent there again
//!   (after a cancel of the same consumer, in case that node still had
//!   it), under the definitions' ref of the queue there, with no reply
//!   for the channel (`Waiting::reattach`);
//! - on this node: the consume goes to the local queue, its reply to the
//!   link ([`LINK_SLOT`](super::remote::LINK_SLOT));
//! - nowhere reachable for [`WAIT`] (or refused): cancelled.
//!
//! The channel is not told. Its consumer record keeps the ref it consumed
//! with; the consumer's deliveries carry the new one (the *wire* ref), so
//! its acks go straight to the new leader. Acks of deliveries from the
//! old leader carry the old ref, which the definitions no longer know:
//! they are dropped (the new leader delivers those messages again; its
//! seqs are not the old leader's). What the channel sends about the old
//! ref is passed on to the new: its cancel (`cancel_followed`), its end
//! (`followed_channel_gone`, through [`super::remote::Remote::wires`]) and
//! its resume after a full socket (`followed_resume`).
//!
//! Only consumers paced by prefetch follow (every 0-9-1 consumer); an
//! AMQP 1.0 link's credit lives in its session, so a 1.0 receiver is
//! detached as before and attaches again.

use super::codec::{self, Wr};
use super::remote::{
    Orphan, RemoteConsumer, Waiting, K_CHANNEL_GONE, K_REQUEST, K_RESUME, LINK_SLOT,
};
use super::State;
use crate::core::definitions::REMOTE_SHARD;
use crate::core::ids::{ChannelRef, ConsumerRef, QueueRef, Requester};
use crate::core::shard_msg::{ConsumeMode, ConsumeSpec, QueueOp, QueueReply, ShardMsg};
use std::time::{Duration, Instant};

/// A consumer cancelled by the node holding its queue while the
/// definitions here still say that node holds it: the queue was deleted
/// (its definitions arrive within this) unless it moves meanwhile.
const GRACE: Duration = Duration::from_secs(3);
/// How long a consumer waits for its queue to be led by a node it can
/// reach (an election takes the leader's lease, 5 s, and a little more).
const WAIT: Duration = Duration::from_secs(60);
impl State {
    /// The record of a consumer of a queue on another node, made as its
    /// consume is sent there.
    pub(super) fn remote_consumer(
        &mut self,
        node: String,
        queue: QueueRef,
        vhost: String,
        name: String,
        spec: Box<ConsumeSpec>,
    ) -> RemoteConsumer {
        let found = {
            let g = self.admin.definitions().lock();
            g.vhost_id(&vhost)
                .and_then(|v| g.queue(v, &name).ok())
                .map(|q| (q.store_id, crate::core::queue_args::is_quorum(&q.args)))
        };
        let (store_id, quorum) = found.unwrap_or((0, false));
        let follows = quorum && store_id != 0 && matches!(spec.mode, ConsumeMode::Prefetch(_));
        RemoteConsumer {
            node,
            queue,
            wire: queue,
            vhost,
            name,
            store_id,
            follows,
            spec,
        }
    }

    /// `c` lost its queue: it waits for the queue's next home if it can
    /// follow it, else it is cancelled now.
    pub(super) fn orphan(
        &mut self,
        c: RemoteConsumer,
        cancelled_by: Option<String>,
        since: Instant,
    ) {
        if !c.follows {
            return self.cancel_here(c.spec.consumer);
        }
        log::info!(
            "cluster link: a consumer of quorum queue '{}' in vhost '{}' waits for its next \
             leader ({})",
            c.name,
            c.vhost,
            match &cancelled_by {
                Some(n) => format!("cancelled by {n}"),
                None => format!("{} lost", c.node),
            }
        );
        self.remote.orphans.push(Orphan {
            c,
            since,
            cancelled_by,
        });
    }

    /// Tells the channel its consumer is gone (basic.cancel).
    pub(super) fn cancel_here(&mut self, consumer: ConsumerRef) {
        let s = consumer.channel.shard as usize;
        if s < self.shards {
            self.pending[s].push_back(ShardMsg::ConsumerCancelled { consumer });
        }
    }

    /// The channel cancels `consumer` (its ref `queue`): if it waits for
    /// its queue, or followed it, the link answers or passes the cancel
    /// on to where the consumer is. True if done here.
    pub(super) fn cancel_followed(
        &mut self,
        consumer: ConsumerRef,
        queue: QueueRef,
        reply_to: Option<Requester>,
    ) -> bool {
        if let Some(i) = self
            .remote
            .orphans
            .iter()
            .position(|o| o.c.spec.consumer == consumer)
        {
            let o = self.remote.orphans.swap_remove(i);
            // The node it was on may still have it (a one-sided drop).
            if o.c.node != self.me {
                self.send_cancel(&o.c, o.c.wire, None);
            }
            if let Some(to) = reply_to {
                self.reply_here(to, queue, QueueReply::Cancelled);
            }
            return true;
        }
        let Some(i) = self
            .remote
            .consumers
            .iter()
            .position(|c| c.spec.consumer == consumer && c.wire != c.queue)
        else {
            return false;
        };
        let c = self.remote.consumers.swap_remove(i);
        if c.node == self.me {
            let s = c.wire.shard as usize;
            if s < self.shards {
                self.pending[s].push_back(ShardMsg::Request {
                    queue: c.wire,
                    reply_to,
                    op: QueueOp::Cancel { consumer },
                });
            }
        } else {
            self.send_cancel(&c, queue, reply_to);
        }
        true
    }

    /// Sends `c`'s node a cancel of `c` on its wire ref; the reply (if
    /// any) goes to the channel as about `reply_as`.
    fn send_cancel(&mut self, c: &RemoteConsumer, reply_as: QueueRef, reply_to: Option<Requester>) {
        let consumer = c.spec.consumer;
        let mut w = Vec::with_capacity(64);
        w.channel(consumer.channel);
        w.queue(c.wire);
        w.bytes(c.vhost.as_bytes());
        w.bytes(c.name.as_bytes());
        w.u8(reply_to.is_some() as u8);
        codec::put_op(&mut w, &QueueOp::Cancel { consumer });
        if let Some(to) = reply_to {
            self.remote.waiting.push(Waiting {
                node: c.node.clone(),
                to,
                queue: c.wire,
                reply_as,
                consumer: None,
                reattach: None,
            });
        }
        let node = c.node.clone();
        self.send_or_retry(&node, K_REQUEST, &w);
    }

    /// The channel is gone: so are the consumers it had on queues its
    /// consumers followed elsewhere (`wires`).
    pub(super) fn followed_channel_gone(&mut self, channel: ChannelRef, queue: QueueRef) {
        if self.remote.wires.is_empty() {
            return;
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.remote.wires)
            .into_iter()
            .partition(|w| w.0 == channel && w.1 == queue);
        self.remote.wires = kept;
        for (_, _, wire, node) in gone {
            if node == self.me {
                let s = wire.shard as usize;
                if s < self.shards {
                    self.pending[s].push_back(ShardMsg::ChannelGone {
                        queue: wire,
                        channel,
                    });
                }
            } else {
                let mut w = Vec::with_capacity(32);
                w.channel(channel);
                w.queue(wire);
                self.send_or_retry(&node, K_CHANNEL_GONE, &w);
            }
        }
    }

    /// The channel's socket drained: the queues its consumers followed
    /// may deliver again.
    pub(super) fn followed_resume(&mut self, queue: QueueRef) {
        let mut to: Vec<(QueueRef, String)> = self
            .remote
            .consumers
            .iter()
            .filter(|c| c.queue == queue && c.wire != queue)
            .map(|c| (c.wire, c.node.clone()))
            .collect();
        to.sort_by_key(|t| (t.0.shard, t.0.slot, t.0.gen));
        to.dedup();
        for (wire, node) in to {
            if node == self.me {
                let s = wire.shard as usize;
                if s < self.shards {
                    self.pending[s].push_back(ShardMsg::Resume { queue: wire });
                }
            } else {
                let mut w = Vec::with_capacity(16);
                w.queue(wire);
                self.send_or_retry(&node, K_RESUME, &w);
            }
        }
    }

    /// `c` follows no more: the channel is told (basic.cancel), and the
    /// node it was last sent to, in case that node still has it.
    fn give_up(&mut self, c: &RemoteConsumer) {
        if c.node != self.me {
            self.send_cancel(c, c.wire, None);
        }
        self.cancel_here(c.spec.consumer);
    }

    /// At each tick, when a consumer followed its queue here: one whose
    /// queue left this node since was cancelled by the queue itself
    /// (straight to its channel, which forgot it): its records go.
    pub(super) fn forget_left_here(&mut self) {
        if !self.remote.consumers.iter().any(|c| c.node == self.me) {
            return;
        }
        let stale: Vec<(ChannelRef, QueueRef, QueueRef)> = {
            let g = self.admin.definitions().lock();
            self.remote
                .consumers
                .iter()
                .filter(|c| c.node == self.me)
                .filter(|c| {
                    let here = g
                        .vhost_id(&c.vhost)
                        .and_then(|v| g.queue(v, &c.name).ok())
                        .is_some_and(|q| q.queue == c.wire);
                    !here
                })
                .map(|c| (c.spec.consumer.channel, c.queue, c.wire))
                .collect()
        };
        for (channel, queue, wire) in stale {
            self.remote
                .consumers
                .retain(|c| !(c.spec.consumer.channel == channel && c.wire == wire));
            self.remote
                .wires
                .retain(|w| !(w.0 == channel && w.1 == queue && w.2 == wire));
        }
    }

    /// The node holding queue `name` of `vhost` with `store_id` (this
    /// node's name if here) and the definitions' ref of it, or None if
    /// there is no such queue now.
    fn home_of(&self, vhost: &str, name: &str, store_id: u64) -> Option<(String, QueueRef)> {
        let g = self.admin.definitions().lock();
        let q = g.vhost_id(vhost).and_then(|v| g.queue(v, name).ok())?;
        if q.store_id != store_id {
            return None;
        }
        let node = match q.node.as_deref() {
            Some(n) => n.to_string(),
            None => self.me.clone(),
        };
        Some((node, q.queue))
    }

    /// At each tick: every waiting consumer whose queue has a reachable
    /// home is sent there; the others wait, or are cancelled (see the
    /// module's notes).
    pub(super) fn reattach_orphans(&mut self) {
        self.forget_left_here();
        if self.remote.orphans.is_empty() {
            return;
        }
        let now = Instant::now();
        for o in std::mem::take(&mut self.remote.orphans) {
            let waited = now.duration_since(o.since);
            let Some((home, target)) = self.home_of(&o.c.vhost, &o.c.name, o.c.store_id) else {
                log::info!(
                    "cluster link: quorum queue '{}' in vhost '{}' is gone; its consumer is \
                     cancelled",
                    o.c.name,
                    o.c.vhost
                );
                self.give_up(&o.c);
                continue;
            };
            let here = home == self.me;
            let deleted_there = o.cancelled_by.as_deref() == Some(home.as_str());
            let limit = if deleted_there { GRACE } else { WAIT };
            if waited >= limit {
                log::info!(
                    "cluster link: quorum queue '{}' in vhost '{}' has no leader to follow after \
                     {:?}; its consumer is cancelled",
                    o.c.name,
                    o.c.vhost,
                    limit
                );
                self.give_up(&o.c);
                continue;
            }
            if deleted_there
                || (!here && !self.transport.peer_up(&home))
                || (here && target.shard == REMOTE_SHARD)
            {
                self.remote.orphans.push(o);
                continue;
            }
            self.reattach(o, home, target);
        }
    }

    /// Sends `o`'s consume to `home`, where the queue is `target`.
    fn reattach(&mut self, o: Orphan, home: String, target: QueueRef) {
        let Orphan { mut c, since, .. } = o;
        let consumer = c.spec.consumer;
        log::debug!(
            "cluster link: a consumer of quorum queue '{}' in vhost '{}' follows it to {}",
            c.name,
            c.vhost,
            home
        );
        c.node = home.clone();
        c.wire = target;
        let channel = consumer.channel;
        if home == self.me {
            let link = ChannelRef {
                shard: REMOTE_SHARD,
                channel: channel.channel,
                conn_slot: LINK_SLOT,
                incarnation: channel.incarnation,
            };
            self.remote.waiting.push(Waiting {
                node: home.clone(),
                to: Requester::Channel(link),
                queue: target,
                reply_as: c.queue,
                consumer: Some(consumer),
                reattach: Some(since),
            });
            let op = QueueOp::Consume(copy_spec(&c.spec));
            let s = target.shard as usize;
            if s < self.shards {
                self.pending[s].push_back(ShardMsg::Request {
                    queue: target,
                    reply_to: Some(Requester::Channel(link)),
                    op,
                });
            }
        } else {
            // A cancel first: `home` may still have the consumer (it did
            // not see the connection drop this node saw).
            self.send_cancel(&c, c.queue, None);
            let mut w = Vec::with_capacity(96);
            w.channel(channel);
            w.queue(target);
            w.bytes(c.vhost.as_bytes());
            w.bytes(c.name.as_bytes());
            w.u8(1);
            let op = QueueOp::Consume(copy_spec(&c.spec));
            codec::put_op(&mut w, &op);
            self.remote.waiting.push(Waiting {
                node: home.clone(),
                to: Requester::Channel(channel),
                queue: target,
                reply_as: c.queue,
                consumer: Some(consumer),
                reattach: Some(since),
            });
            self.send_or_retry(&home, K_REQUEST, &w);
        }
        if c.wire != c.queue {
            let w = (channel, c.queue, c.wire, home);
            if !self.remote.wires.contains(&w) {
                self.remote.wires.push(w);
            }
        }
        self.remote.consumers.push(c);
    }

    /// A local queue answered a consume the link sent for a following
    /// consumer (`LINK_SLOT`).
    pub(super) fn local_reattach_reply(&mut self, queue: QueueRef, reply: QueueReply) {
        let me = self.me.clone();
        let Some(i) = self
            .remote
            .waiting
            .iter()
            .position(|w| w.node == me && w.queue == queue && w.reattach.is_some())
        else {
            return;
        };
        let w = self.remote.waiting.remove(i);
        if let (Some(since), Some(consumer)) = (w.reattach, w.consumer) {
            if matches!(reply, QueueReply::Error(_) | QueueReply::Gone) {
                let refused = matches!(reply, QueueReply::Error(_));
                self.reattach_failed(&me, consumer, since, refused);
            }
        }
    }

    /// The consume sent for a following consumer failed: refused (an
    /// exclusive consumer, say), it is cancelled; else (the node did not
    /// hold the queue after all, or could not be reached) it waits again.
    pub(super) fn reattach_failed(
        &mut self,
        node: &str,
        consumer: ConsumerRef,
        since: Instant,
        refused: bool,
    ) {
        // Not there if the channel cancelled it meanwhile (or it was
        // lost with `node` and waits already).
        let Some(i) = self
            .remote
            .consumers
            .iter()
            .position(|c| c.spec.consumer == consumer && c.node == node)
        else {
            return;
        };
        let c = self.remote.consumers.swap_remove(i);
        if refused {
            log::info!(
                "cluster link: quorum queue '{}' in vhost '{}' refused a consumer following it; \
                 it is cancelled",
                c.name,
                c.vhost
            );
            return self.give_up(&c);
        }
        self.remote.orphans.push(Orphan {
            c,
            since,
            cancelled_by: None,
        });
    }
}

/// A consume for the same consumer again (the record keeps its own).
fn copy_spec(s: &ConsumeSpec) -> Box<ConsumeSpec> {
    Box::new(ConsumeSpec {
        consumer: s.consumer,
        conn_uid: s.conn_uid,
        no_ack: s.no_ack,
        exclusive: s.exclusive,
        mode: s.mode,
        window: s.window.clone(),
        output_full: s.output_full.clone(),
        arguments: s.arguments.clone(),
        tag: s.tag.clone(),
    })
}
