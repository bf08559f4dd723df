//! Queues declared before the shards start (a definitions file loaded at
//! boot): they join the recovered queues, which each shard creates before it
//! serves anyone (`ShardCtx::recover_queues`).

use super::{Defs, QueueDef, RECOVERED_GEN};
use crate::core::error::{CoreError, CoreResult};
use crate::core::ids::QueueRef;
use crate::core::ops::queue::QueueSpec;
use crate::core::queue_args;

impl Defs {
    /// Declares a queue homed on `shard` for the shard to create at start.
    /// An existing queue of that name is left as it is (a definitions
    /// import is idempotent).
    pub fn declare_queue_at_boot(
        &mut self,
        vhost: &str,
        q: QueueSpec,
        shard: usize,
    ) -> CoreResult<()> {
        let id = self
            .vhost_id(vhost)
            .ok_or_else(|| CoreError::NotFound(format!("no vhost '{}'", vhost)))?;
        if self.vh(id)?.queues.contains_key(&q.name) {
            return Ok(());
        }
        if q.name.is_empty() || q.name.starts_with("amq.") {
            return Err(CoreError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                q.name
            )));
        }
        queue_args::validate(vhost, &q.name, &q.arguments)?;
        queue_args::check_type_properties(
            vhost,
            &q.name,
            &q.arguments,
            q.durable,
            false,
            q.auto_delete,
        )?;
        let shard = shard.min(self.recovered.len().saturating_sub(1));
        let store_id = if q.durable { self.next_store_id() } else { 0 };
        let def = QueueDef {
            vhost: id,
            name: q.name,
            queue: QueueRef {
                shard: shard as u16,
                slot: self.recovered[shard].len() as u32,
                gen: RECOVERED_GEN,
            },
            durable: q.durable,
            auto_delete: q.auto_delete,
            exclusive_owner: None,
            args: q.arguments,
            store_id,
            node: None,
        };
        self.recovered[shard].push(def.clone());
        self.add_queue(def);
        Ok(())
    }
}
