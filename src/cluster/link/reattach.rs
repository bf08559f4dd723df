//! Consumers that follow a quorum queue to its next leader, as RabbitMQ's
//! do: a client consuming through this node keeps its consumer when the
//! queue's leader dies, is cut off or hands the queue over, and goes on
//! receiving from the new leader; the messages it had not acked come
//! again, redelivered (the new leader's replica marks them so).
//!
//! The channel never learns: it goes on using the queue's ref as it knew
//! it (the *old* ref, from when the queue was on the other node). When
//! the consumer's node is lost (`remote_lost`) or that node cancels it
//! (`K_CANCELLED`: the queue was deleted or moved away), the consumer
//! becomes an [`Orphan`] and the old ref a [`Moved`] alias. At each tick
//! the definitions say where the queue is now:
//!
//! - gone (or another queue of the same name): the consumer is cancelled
//!   (basic.cancel), as for a deleted queue;
//! - still on the node that cancelled it: deleted there, the definitions
//!   not here yet; cancelled after [`GRACE`];
//! - on a node that can be reached (or this one): the consume is sent
//!   there again under the old ref, with no reply for the channel
//!   (`Waiting::reattach`). The new node's proxy channel maps the old
//!   ref to its queue, so deliveries, acks, cancels and the channel's end
//!   all work on the old ref (`remote_queue` resolves it by name);
//! - nowhere reachable for [`WAIT`]: cancelled.
//!
//! A queue now led by this node is reached through the link too (frames
//! to this node go round in `send_or_retry`), so the channel's refs stay
//! valid. Acks of deliveries from the old leader reach the new one under
//! the same seqs (a replica keeps the leader's seqs) and settle the
//! message only if it was delivered again to the same consumer's
//! channel; otherwise they are ignored and the message comes again.
//!
//! Only consumers paced by prefetch follow (every 0-9-1 consumer); an
//! AMQP 1.0 link's credit lives in its session, so a 1.0 receiver is
//! detached as before and attaches again.

use super::codec::{self, Wr};
use super::remote::{RemoteConsumer, Waiting, K_REQUEST};
use super::State;
use crate::core::ids::{ConsumerRef, QueueRef, Requester};
use crate::core::shard_msg::{ConsumeMode, ConsumeSpec, QueueOp, ShardMsg};
use std::time::{Duration, Instant};

/// A consumer cancelled by the node holding its queue while the
/// definitions here still say that node holds it: the queue was deleted
/// (its definitions arrive within this) unless it moves meanwhile.
const GRACE: Duration = Duration::from_secs(3);
/// How long a consumer waits for its queue to be led by a node it can
/// reach (an election takes the leader's lease, 5 s, and a little more).
const WAIT: Duration = Duration::from_secs(60);

/// A consumer between two leaders of its queue.
pub(super) struct Orphan {
    pub(super) c: RemoteConsumer,
    /// When it lost its queue's node (kept across failed attempts).
    pub(super) since: Instant,
    /// The node that cancelled it, if that is how it was lost.
    pub(super) cancelled_by: Option<String>,
}

/// A queue ref the definitions no longer know, still used by a channel.
pub(super) struct Moved {
    pub(super) vhost: String,
    pub(super) name: String,
    pub(super) store_id: u64,
    /// Where the queue was found, and the definitions' version then.
    pub(super) home: Option<(u64, String)>,
}

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
            "cluster link: consumer of quorum queue '{}' in vhost '{}' waits for its next \
             leader ({})",
            c.name,
            c.vhost,
            match &cancelled_by {
                Some(n) => format!("cancelled by {n}"),
                None => format!("{} lost", c.node),
            }
        );
        self.remote.moved.entry(c.queue).or_insert_with(|| Moved {
            vhost: c.vhost.clone(),
            name: c.name.clone(),
            store_id: c.store_id,
            home: None,
        });
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

    /// The channel cancels `consumer` while it waits for its queue:
    /// nothing to tell any node. True if it was waiting.
    pub(super) fn cancel_orphan(&mut self, consumer: ConsumerRef) -> bool {
        let before = self.remote.orphans.len();
        self.remote
            .orphans
            .retain(|o| o.c.spec.consumer != consumer);
        self.remote.orphans.len() != before
    }

    /// The node holding queue `name` of `vhost` with `store_id` (this
    /// node's name if here), or None if there is no such queue now.
    fn home_of(&self, vhost: &str, name: &str, store_id: u64) -> Option<String> {
        let g = self.admin.definitions().lock();
        let q = g.vhost_id(vhost).and_then(|v| g.queue(v, name).ok())?;
        if q.store_id != store_id {
            return None;
        }
        Some(match q.node.as_deref() {
            Some(n) => n.to_string(),
            None => self.me.clone(),
        })
    }

    /// Where a moved ref's queue is now, as `remote_queue` answers
    /// (node, vhost, name); cached until the definitions change.
    pub(super) fn moved_home(&mut self, queue: QueueRef) -> Option<(String, String, String)> {
        let version = self.admin.definitions().version();
        let m = self.remote.moved.get(&queue)?;
        if let Some((v, home)) = &m.home {
            if *v == version {
                return Some((home.clone(), m.vhost.clone(), m.name.clone()));
            }
        }
        let (vhost, name, store_id) = (m.vhost.clone(), m.name.clone(), m.store_id);
        let home = self.home_of(&vhost, &name, store_id)?;
        if let Some(m) = self.remote.moved.get_mut(&queue) {
            m.home = Some((version, home.clone()));
        }
        Some((home, vhost, name))
    }

    /// At each tick: every waiting consumer whose queue has a reachable
    /// home is sent there; the others wait, or are cancelled (see the
    /// module's notes).
    pub(super) fn reattach_orphans(&mut self) {
        if self.remote.orphans.is_empty() {
            return;
        }
        let now = Instant::now();
        for o in std::mem::take(&mut self.remote.orphans) {
            let Some(home) = self.home_of(&o.c.vhost, &o.c.name, o.c.store_id) else {
                log::info!(
                    "cluster link: quorum queue '{}' in vhost '{}' is gone; its consumer is \
                     cancelled",
                    o.c.name,
                    o.c.vhost
                );
                self.cancel_here(o.c.spec.consumer);
                continue;
            };
            let reachable = home == self.me || self.transport.peer_up(&home);
            let deleted_there = o.cancelled_by.as_deref() == Some(home.as_str());
            if deleted_there || !reachable {
                let limit = if deleted_there { GRACE } else { WAIT };
                if now.duration_since(o.since) >= limit {
                    log::info!(
                        "cluster link: quorum queue '{}' in vhost '{}' has no reachable leader \
                         after {:?}; its consumer is cancelled",
                        o.c.name,
                        o.c.vhost,
                        limit
                    );
                    self.cancel_here(o.c.spec.consumer);
                } else {
                    self.remote.orphans.push(o);
                }
                continue;
            }
            self.reattach(o, home);
        }
    }

    /// Sends `o`'s consume to `home`, under the channel's ref of the queue.
    fn reattach(&mut self, o: Orphan, home: String) {
        let Orphan { mut c, since, .. } = o;
        let consumer = c.spec.consumer;
        log::info!(
            "cluster link: consumer of quorum queue '{}' in vhost '{}' follows it to {}",
            c.name,
            c.vhost,
            home
        );
        let mut w = Vec::with_capacity(96);
        w.channel(consumer.channel);
        w.queue(c.queue);
        w.bytes(c.vhost.as_bytes());
        w.bytes(c.name.as_bytes());
        w.u8(1);
        let op = QueueOp::Consume(c.spec);
        codec::put_op(&mut w, &op);
        let QueueOp::Consume(spec) = op else {
            unreachable!("built above")
        };
        c.spec = spec;
        c.node = home.clone();
        self.remote.waiting.push(Waiting {
            node: home.clone(),
            to: Requester::Channel(consumer.channel),
            queue: c.queue,
            reattach: Some((consumer, since)),
        });
        self.remote.consumers.push(c);
        self.send_or_retry(&home, K_REQUEST, w);
    }

    /// The consume sent for a following consumer failed (the node did not
    /// hold the queue after all, or could not be reached): it waits again.
    pub(super) fn reattach_failed(&mut self, consumer: ConsumerRef, since: Instant) {
        let Some(i) = self
            .remote
            .consumers
            .iter()
            .position(|c| c.spec.consumer == consumer)
        else {
            return;
        };
        let c = self.remote.consumers.remove(i);
        self.remote.orphans.push(Orphan {
            c,
            since,
            cancelled_by: None,
        });
    }
}
