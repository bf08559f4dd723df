//! Messages a shard has produced during one event-loop iteration, per destination
//! shard. The event loop moves them onto the rings in one go and wakes each
//! destination once per batch; messages for the shard itself are handled in the
//! same iteration. The queues keep their capacity, so steady traffic allocates
//! nothing.

use super::shard_msg::ShardMsg;
use std::collections::VecDeque;

pub struct Outbox {
    pub me: u16,
    pub to: Vec<VecDeque<ShardMsg>>,
}

impl Outbox {
    pub fn new(me: u16, shards: usize) -> Outbox {
        Outbox {
            me,
            to: (0..shards).map(|_| VecDeque::with_capacity(1024)).collect(),
        }
    }

    #[inline]
    pub fn push(&mut self, shard: u16, msg: ShardMsg) {
        self.to[shard as usize].push_back(msg);
    }

    /// Next message this shard sent to itself.
    #[inline]
    pub fn pop_local(&mut self) -> Option<ShardMsg> {
        self.to[self.me as usize].pop_front()
    }

    pub fn has_local(&self) -> bool {
        !self.to[self.me as usize].is_empty()
    }
}
