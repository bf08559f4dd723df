//! The broker core: vhosts, definitions, exchanges and routing, queues and
//! their consumers, the shard messages and the store glue. It speaks no wire
//! protocol. Front ends (the AMQP 0-9-1 module, later AMQP 1.0 and HTTP) call its
//! operations (`ops`) and exchange [`shard_msg::ShardMsg`]s with it; the
//! core never imports them (`tests/layering.rs` checks).
//!
//! Everything here runs inside one shard's thread. [`ShardCtx`] is a shard's
//! state minus its sessions; [`ShardCtx::handle_queue_msg`] (`pump.rs`) is the
//! queue side of the shard's message pump.

pub mod access;
pub mod alarms;
pub mod auth;
pub mod backlog;
pub mod conn_log;
pub mod definitions;
pub mod definitions_json;
pub mod error;
pub mod exchange;
pub mod follow;
pub mod ids;
pub mod latency;
pub mod message;
pub mod name_map;
pub mod names;
pub mod ops;
pub mod outbox;
pub mod parameters;
pub mod persist;
mod pump;
pub mod queue;
pub mod queue_args;
pub mod quorum;
pub mod routing;
pub mod sender_selected;
pub mod shard_msg;
pub mod shovel_def;
pub mod stats;
pub mod stream;
pub mod tenancy;
pub mod vhost;

use crate::config::Config;
use definitions::Definitions;
use ids::QueueRef;
use outbox::Outbox;
use queue::{After, Queue};
use routing::Routing;
use slab::Slab;
use std::sync::Arc;

/// A shard's timer period: `ShardCtx::tick_queues`, the sessions' timers
/// and the store's tick run this often (`shard::event_loop`).
pub const TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// Everything of a shard except its connections. Channels get `&mut ShardCtx`
/// while their connection is borrowed separately.
pub struct ShardCtx {
    pub id: u16,
    pub config: Arc<Config>,
    pub defs: Arc<Definitions>,
    /// Memory and disk alarms, shared by all shards (shard 0 measures).
    pub alarms: Arc<alarms::Alarms>,
    /// This shard's lock-free copy of exchanges and bindings.
    pub routing: Routing,
    /// Messages produced this iteration, per destination shard.
    pub outbox: Outbox,
    /// Queues owned by this shard. Invariant: only this thread touches them.
    pub queues: Slab<Queue>,
    /// This shard's message store (None: nothing is persisted, e.g. in the
    /// micro-benchmarks).
    pub store: Option<persist::ShardStore>,
    /// Where and when queues page messages out (None: never, e.g. in the
    /// micro-benchmarks).
    pub paging: Option<Arc<backlog::PagingConfig>>,
    /// Reused to collect a queue's departed stored messages.
    gone_scratch: Vec<(u64, crate::store::segments::Location)>,
    next_queue_gen: u32,
    next_incarnation: u32,
    next_conn_uid: u64,
    /// Connections with output waiting to be flushed this iteration (each once).
    dirty: Vec<usize>,
    /// `dirty_flag[slot]`: the slot is already in `dirty`.
    dirty_flag: Vec<bool>,
    /// Connections whose reading was parked (input buffer full while waiting
    /// for a queue) and should be read again.
    pub reread: Vec<usize>,
    /// Sessions asking to move to another shard (slot, shard): publishing
    /// connections following their queue (`follow`). The shard layer moves
    /// those that can go (`Loop::move_sessions`).
    pub moves: Vec<(usize, u16)>,
    /// Moves this shard's sessions may still start this tick
    /// (`follow::MOVES_PER_TICK`): thousands of connections that all want
    /// to move at once go a few at a time, not in one long iteration.
    pub move_budget: u32,
    /// Reused by every publish to collect destination queues.
    pub route_scratch: Vec<QueueRef>,
    pub rng: names::Rng,
    /// Objects created and gone on this shard (management churn rates).
    pub churn: stats::Churn,
    /// Message counters of this shard's channels that have closed (the open
    /// ones hold their own): with them, the shard's global totals.
    pub closed_channel_stats: stats::MsgStats,
    /// Reused by `end_store_iteration`.
    released_scratch: Vec<(QueueRef, u64)>,
    /// This shard raised the disk alarm for its store (`note_store_fault`).
    store_faulted: bool,
    /// Body sizes of the messages published on this shard (Prometheus).
    pub msg_sizes: stats::MsgSizes,
    /// Streams with messages appended this iteration, written at its end
    /// (`write_streams`).
    pub streams_to_write: Vec<QueueRef>,
    /// Reused for the files a stream wrote (handed to the store's syncer).
    stream_files: Vec<Arc<std::fs::File>>,
    /// The last run shut down cleanly (`store::clean`): recovery may trust
    /// what it synced.
    pub clean_start: bool,
    /// Replicas of other nodes' quorum queues kept here (`quorum.rs`).
    pub replicas: quorum::Replicas,
}

impl ShardCtx {
    pub fn new(
        id: u16,
        config: Arc<Config>,
        defs: Arc<Definitions>,
        alarms: Arc<alarms::Alarms>,
    ) -> ShardCtx {
        let shards = config.shards;
        let unclustered = config.cluster.etcd.is_empty();
        ShardCtx {
            id,
            config,
            defs,
            alarms,
            routing: Routing::new(id as usize),
            outbox: if unclustered {
                Outbox::new(id, shards)
            } else {
                Outbox::with_link(id, shards)
            },
            queues: Slab::new(),
            store: None,
            paging: None,
            gone_scratch: Vec::new(),
            next_queue_gen: 1,
            next_incarnation: 1,
            next_conn_uid: 1,
            dirty: Vec::new(),
            dirty_flag: Vec::new(),
            reread: Vec::new(),
            moves: Vec::new(),
            move_budget: follow::MOVES_PER_TICK,
            route_scratch: Vec::with_capacity(16),
            rng: names::Rng::new(id as u64),
            churn: stats::Churn::default(),
            closed_channel_stats: stats::MsgStats::default(),
            released_scratch: Vec::new(),
            store_faulted: false,
            msg_sizes: stats::MsgSizes::default(),
            streams_to_write: Vec::new(),
            stream_files: Vec::new(),
            clean_start: false,
            replicas: quorum::Replicas::default(),
        }
    }

    /// Shutdown: every stream's files synced, indexes included, so that a
    /// clean start trusts them (`store::clean`).
    pub fn sync_streams(&mut self) {
        let pending = std::mem::take(&mut self.streams_to_write);
        for q in pending {
            self.write_stream(q);
        }
        for (_, q) in self.queues.iter() {
            if let Some(s) = &q.stream {
                if let Err(e) = s.sync_all() {
                    log::error!("stream '{}': not synced at shutdown: {e}", q.props.name);
                }
            }
        }
    }

    /// A new queue of this shard (declared or recovered); a stream's log is
    /// opened (created) here, in `<data_dir>/streams/`.
    pub fn new_queue(
        &self,
        me: QueueRef,
        props: queue::QueueProps,
    ) -> Result<Queue, error::CoreError> {
        let stream = queue_args::is_stream(&props.arguments);
        let dir = stream::stream_dir(&self.config.data_dir, props.store_id);
        let mut q = Queue::new(me, props, self.paging.clone(), self.config.consumer_timeout);
        q.replicated = q.props.store_id != 0
            && self.defs.is_clustered()
            && queue_args::is_quorum(&q.props.arguments);
        if stream {
            let s =
                stream::Stream::open(&dir, &q.props.arguments, self.clean_start).map_err(|e| {
                    log::error!("cannot open stream {}: {e}", dir.display());
                    error::CoreError::internal(format!("cannot open the stream's log: {e}"))
                })?;
            q.stream = Some(Box::new(s));
        }
        Ok(q)
    }

    /// Writes the chunk stream `q` has been building (`Stream::write_chunk`)
    /// and delivers it to the stream's consumers. The files written are
    /// synced with the store's next batch; a failed write nacks the held
    /// confirms, as a failed store write does.
    pub fn write_stream(&mut self, q: QueueRef) {
        let Some(queue) = self.queues.get_mut(q.slot as usize).filter(|x| x.me == q) else {
            return;
        };
        let Some(s) = queue.stream.as_mut() else {
            return;
        };
        s.listed = false;
        let now = stats::wall_ms();
        let written = s.write_chunk(now, &mut self.stream_files);
        if let Err(e) = s.write_offsets(&mut self.stream_files) {
            log::error!("stream '{}': offsets not written: {e}", queue.props.name);
        }
        match written {
            Ok(()) => queue.dispatch(&mut self.outbox),
            Err(e) => {
                log::error!("stream '{}': write failed: {e}", queue.props.name);
                if let Some(store) = self.store.as_mut() {
                    store.external_write_failed(
                        &format!("stream write failed: {e}"),
                        &mut self.outbox,
                    );
                }
            }
        }
        match self.store.as_mut() {
            Some(store) => store.also_sync(&mut self.stream_files),
            None => self.stream_files.clear(),
        }
    }

    /// Creates, empty, the durable queues recovered from the definitions log
    /// whose home is this shard, at the slots `Definitions::open` gave them
    /// (every shard's routing copy already knows them). Called once, on this
    /// shard's thread, before its event loop first polls: messages for them
    /// may wait in the rings, and are handled only after this.
    pub fn recover_queues(&mut self) {
        let (recovered, names) = {
            let mut g = self.defs.lock();
            let r = g.take_recovered(self.id as usize);
            let names: Vec<_> = r.iter().map(|d| g.vhost_name(d.vhost)).collect();
            (r, names)
        };
        if recovered.is_empty() {
            return;
        }
        assert!(self.queues.is_empty(), "queues recovered into a used shard");
        let mut queues = Vec::with_capacity(recovered.len());
        for (d, vhost_name) in recovered.into_iter().zip(names) {
            let props = queue::QueueProps {
                vhost: d.vhost,
                vhost_name,
                name: d.name,
                durable: d.durable,
                auto_delete: d.auto_delete,
                exclusive_owner: None,
                arguments: d.args,
                store_id: d.store_id,
            };
            let name = props.name.clone();
            match self.new_queue(d.queue, props) {
                Ok(q) => {
                    if q.replicated {
                        // Its epoch is the cluster's to say.
                        self.replicas.led.insert(q.props.store_id, u64::MAX);
                    }
                    queues.push((d.queue.slot as usize, q))
                }
                Err(e) => log::error!("queue '{name}' not recovered: {e}"),
            }
        }
        self.queues = queues.into_iter().collect();
    }

    pub fn next_queue_gen(&mut self) -> u32 {
        self.next_queue_gen = self.next_queue_gen.wrapping_add(1);
        self.next_queue_gen
    }

    pub fn next_incarnation(&mut self) -> u32 {
        self.next_incarnation = self.next_incarnation.wrapping_add(1);
        self.next_incarnation
    }

    /// Connection ids are unique broker-wide: shard number in the top bits.
    pub fn next_conn_uid(&mut self) -> u64 {
        self.next_conn_uid += 1;
        ((self.id as u64) << 48) | self.next_conn_uid
    }

    /// Notes that a connection has output to flush. Called per delivery, so it
    /// lists each connection once per iteration (a flag per slot) instead of
    /// pushing per message and sorting at flush.
    #[inline]
    pub fn mark_dirty(&mut self, conn_slot: usize) {
        if conn_slot >= self.dirty_flag.len() {
            self.dirty_flag.resize(conn_slot + 1, false);
        }
        if !self.dirty_flag[conn_slot] {
            self.dirty_flag[conn_slot] = true;
            self.dirty.push(conn_slot);
        }
    }

    /// Takes the list of connections to flush, clearing their flags.
    pub fn take_dirty(&mut self, into: &mut Vec<usize>) {
        for &slot in &self.dirty {
            self.dirty_flag[slot] = false;
        }
        into.append(&mut self.dirty);
    }

    fn queue_mut(&mut self, q: QueueRef) -> Option<&mut Queue> {
        match self.queues.get_mut(q.slot as usize) {
            Some(queue) if queue.me == q => Some(queue),
            _ => None,
        }
    }

    /// End of a loop iteration for the store (group commit, confirms
    /// released: `ShardStore::end_iteration`); the released confirms' hold
    /// times go into their queues' histograms.
    pub fn end_store_iteration(&mut self) {
        if !self.streams_to_write.is_empty() {
            let streams = std::mem::take(&mut self.streams_to_write);
            for &q in &streams {
                self.write_stream(q);
            }
            self.streams_to_write = streams;
            self.streams_to_write.clear();
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        store.end_iteration(&mut self.outbox);
        let mut released = std::mem::take(&mut self.released_scratch);
        store.take_released(&mut released);
        for (q, us) in released.drain(..) {
            if let Some(queue) = self.queue_mut(q) {
                queue.confirm_latency.record(us);
            }
        }
        self.released_scratch = released;
        self.note_store_fault();
    }

    /// The store's timer (from the loop's tick): retries failed writes,
    /// probes a fault, compacts one segment.
    pub fn store_tick(&mut self, now: std::time::Instant) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        store.tick(now);
        store.compact(&mut self.queues, now);
        self.note_store_fault();
    }

    /// Raises or clears the disk alarm when the store's fault begins or ends.
    #[inline]
    fn note_store_fault(&mut self) {
        let Some(store) = &self.store else {
            return;
        };
        if store.fault().is_some() != self.store_faulted {
            self.store_faulted = !self.store_faulted;
            self.alarms
                .set_store_fault(alarms::FaultSource::Shard(self.id), store.fault());
        }
    }

    /// Deletes a queue owned by this shard: consumers are told (basic.cancel),
    /// its definition and bindings removed, its messages dropped.
    pub fn delete_queue(&mut self, q: QueueRef) {
        if self.queue_mut(q).is_none() {
            return;
        }
        let mut queue = self.queues.remove(q.slot as usize);
        self.churn.queue_deleted += 1;
        queue.cancel_all(&mut self.outbox);
        if queue.replicated {
            if let Some(store) = self.store.as_mut() {
                store.forget_replicated(q, &mut self.outbox);
            }
            let store_id = queue.props.store_id;
            self.replicas.led.remove(&store_id);
            self.outbox.push(
                definitions::REMOTE_SHARD,
                shard_msg::ShardMsg::ReplicaReset {
                    store_id,
                    to: 0,
                    gen: 0,
                    lineage: 0,
                    epoch: 0,
                },
            );
        }
        if let Some(s) = queue.stream.take() {
            s.destroy();
        }
        if let Some(store) = self.store.as_mut() {
            let id = queue.props.store_id;
            if id != 0 {
                let mut gone = std::mem::take(&mut self.gone_scratch);
                queue.take_gone(&mut gone);
                for (seq, loc) in gone.drain(..) {
                    store.ack(id, seq, loc);
                }
                self.gone_scratch = gone;
                store.queue_gone(id, crate::store::record::ALL_SEQS, queue.stored_locations());
            }
        }
        self.defs
            .lock_change()
            .remove_queue(queue.props.vhost, &queue.props.name, q);
    }

    /// The follow-up of an operation on queue `q` (`Queue::has_followup`):
    /// store acks of messages that left it for good, and messages it
    /// dead-lettered, routed here and sent to their queues.
    #[inline]
    fn after_queue_op(&mut self, q: QueueRef) {
        let Some(queue) = self.queues.get_mut(q.slot as usize).filter(|x| x.me == q) else {
            return;
        };
        let id = queue.props.store_id;
        let replicated = queue.replicated;
        if id != 0 {
            if let Some(store) = self.store.as_mut() {
                queue.take_gone(&mut self.gone_scratch);
                for &(seq, loc) in &self.gone_scratch {
                    store.ack(id, seq, loc);
                }
            }
            if replicated {
                for i in 0..self.gone_scratch.len() {
                    let seq = self.gone_scratch[i].0;
                    self.replicate_gone(id, seq);
                }
            }
            self.gone_scratch.clear();
        }
        let Some(queue) = self.queues.get_mut(q.slot as usize).filter(|x| x.me == q) else {
            return;
        };
        let dead = queue.take_dead();
        if dead.is_empty() {
            return;
        }
        if let Some(target) = queue.features.dead_letter.clone() {
            let name = queue.props.name.clone();
            let vhost = queue.props.vhost;
            queue::dead_letter::publish(
                vhost,
                &name,
                &target,
                dead,
                &mut self.routing,
                &self.defs,
                &mut self.outbox,
            );
        }
    }

    /// The shard's tick: every queue's timers (message TTL, x-expires,
    /// delivery acknowledgement timeouts).
    pub fn tick_queues(&mut self, now: std::time::Instant) {
        let now = queue::ttl::ms_since_base(now);
        let mut expired = Vec::new();
        let mut followup = Vec::new();
        let wall = stats::wall_ms();
        for (_, q) in self.queues.iter_mut() {
            if let Some(s) = q.stream.as_mut() {
                s.tick(wall, &mut self.stream_files);
                // A consumer left behind by retention goes on at the head.
                q.dispatch(&mut self.outbox);
                continue;
            }
            if q.tick(now, &mut self.outbox) == After::Delete {
                expired.push(q.me);
            } else if q.has_followup() {
                followup.push(q.me);
            }
        }
        match self.store.as_mut() {
            Some(store) => store.also_sync(&mut self.stream_files),
            None => self.stream_files.clear(),
        }
        for q in followup {
            self.after_queue_op(q);
        }
        for q in expired {
            log::debug!("deleting queue {:?} on expiry (x-expires)", q);
            self.after_queue_op(q);
            self.delete_queue(q);
        }
    }

    /// Boot: gives this shard's durable queues their messages back from the
    /// store (`recovered` came from opening it). Messages of queues that no
    /// longer exist are forgotten in the store.
    pub fn recover_messages(&mut self, mut recovered: crate::store::segments::Recovered) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        for (_, queue) in self.queues.iter_mut() {
            let id = queue.props.store_id;
            let Some(msgs) = recovered.queues.remove(&id).filter(|_| id != 0) else {
                continue;
            };
            // In batches: a queue beyond its in-memory limit pages the rest
            // out as it goes, so a big recovery never sits in memory whole.
            let total = msgs.len();
            let mut msgs = msgs;
            for chunk in msgs.chunks_mut(RECOVER_BATCH) {
                if let Err(e) = store.log.load(chunk) {
                    log::error!(
                        "queue '{}': cannot read messages back: {}",
                        queue.props.name,
                        e
                    );
                }
                queue.recover(chunk.iter_mut().filter_map(|m| {
                    let s = *m.message.take()?;
                    Some((
                        m.seq,
                        m.location,
                        message::Message::in_buffer(
                            s.parts.clone(),
                            message::Layout::Packed,
                            s.exchange.len(),
                            s.routing_key.len(),
                            s.properties.len(),
                        )
                        .unwrap_or_else(|| {
                            message::Message::new(
                                &s.exchange,
                                &s.routing_key,
                                &s.properties,
                                &s.body,
                            )
                        }),
                        s.expires_at,
                    ))
                }));
            }
            log::info!(
                "{}: {} persistent messages recovered",
                vhost::resource(&queue.props.vhost_name, "queue", &queue.props.name),
                total
            );
        }
        let clustered = self.defs.is_clustered();
        for (id, msgs) in recovered.queues.drain() {
            if clustered {
                // Another node's quorum queue this node follows.
                let r = self.replicas.by_id.entry(id).or_default();
                for m in msgs {
                    r.last = r.last.max(m.seq);
                    r.entries.insert(m.seq, m.location);
                }
                continue;
            }
            let up_to = msgs.iter().map(|m| m.seq).max().unwrap_or(0);
            store.queue_gone(id, up_to, msgs.iter().map(|m| m.location));
        }
    }
}

/// Recovered messages read back from the store at a time.
const RECOVER_BATCH: usize = 4096;
