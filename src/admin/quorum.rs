//! The cluster's hands on quorum queues (`cluster::quorum` decides, these
//! act on the shards): a follower elected leader turns its replica into
//! the queue; a node that lost the lead while away drops its queue.

use super::Admin;
use crate::core::ids::QueueRef;
use crate::core::queue::QueueProps;

impl Admin {
    /// This node was elected leader of quorum queue `store_id`: the
    /// replica on shard `store_id % shards` becomes the queue (its
    /// messages ready again, redelivered), and the definitions say so, to
    /// every node.
    pub fn promote_replica(&self, store_id: u64, epoch: u64) -> Result<(), String> {
        let shard = (store_id % self.control.shards().max(1) as u64) as usize;
        let def = {
            let g = self.defs.lock();
            let def = g
                .queue_by_store_id(store_id)
                .ok_or_else(|| format!("no queue with id {store_id}"))?
                .clone();
            let vname = g.vhost_name(def.vhost);
            (def, vname)
        };
        let (def, vhost_name) = def;
        self.control
            .ask(shard, move |s| {
                if s.ctx.replicas.led.contains_key(&store_id) {
                    // Promoted already (its definitions change failed):
                    // the definitions only.
                    let me = s
                        .ctx
                        .queues
                        .iter()
                        .find(|(_, q)| q.props.store_id == store_id)
                        .map(|(_, q)| q.me)
                        .ok_or_else(|| format!("queue {store_id} led but not found"))?;
                    let defs = s.ctx.defs.clone();
                    let mut g = defs.lock_change();
                    g.rehome_queue(def.vhost, &def.name, me, None);
                    return g.commit().map_err(|e| e.to_string());
                }
                let me = QueueRef {
                    shard: shard as u16,
                    slot: s.ctx.queues.vacant_key() as u32,
                    gen: s.ctx.next_queue_gen(),
                };
                let props = QueueProps {
                    vhost: def.vhost,
                    vhost_name,
                    name: def.name.clone(),
                    durable: def.durable,
                    auto_delete: def.auto_delete,
                    exclusive_owner: None,
                    arguments: def.args.clone(),
                    store_id,
                };
                s.ctx
                    .promote_replica(me, props, epoch)
                    .map_err(|e| e.to_string())?;
                let defs = s.ctx.defs.clone();
                let mut g = defs.lock_change();
                g.rehome_queue(def.vhost, &def.name, me, None);
                g.commit().map_err(|e| e.to_string())
            })
            .ok_or_else(|| "the shard stopped".to_string())?
    }

    /// Another node leads queue `queue` of this node now: it goes here.
    /// Does not wait.
    pub fn demote_queue(&self, queue: QueueRef) {
        self.control
            .send(queue.shard as usize, move |s| s.ctx.demote_queue(queue));
    }
}

impl Admin {
    /// The leader's shard sends follower `to` (the link's node number) a
    /// reset and a copy of queue `queue` (`ShardCtx::replica_bulk`). Does
    /// not wait.
    pub fn ask_replica_bulk(&self, queue: QueueRef, to: u16) {
        self.control
            .send(queue.shard as usize, move |s| s.ctx.replica_bulk(queue, to));
    }
}
