//! Messages a shard has produced during one event-loop iteration, per destination
//! shard. The event loop moves them onto the rings in one go and wakes each
//! destination once per batch; messages for the shard itself are handled in the
//! same iteration. The queues keep their capacity, so steady traffic allocates
//! nothing.

use super::ids::QueueRef;
use super::shard_msg::ShardMsg;
use std::collections::VecDeque;

pub struct Outbox {
    pub me: u16,
    pub to: Vec<VecDeque<ShardMsg>>,
    /// Queues that stopped dispatching because a destination was congested;
    /// the event loop resumes them once the outbox has drained.
    pub stalled: Vec<QueueRef>,
}

/// Deliveries a queue may leave waiting for one shard before it pauses: bounds
/// the memory a fast queue can pile up ahead of a slower consumer shard.
pub const CONGESTION_LIMIT: usize = 16 * 1024;

impl Outbox {
    pub fn new(me: u16, shards: usize) -> Outbox {
        Outbox {
            me,
            to: (0..shards).map(|_| VecDeque::with_capacity(1024)).collect(),
            stalled: Vec::new(),
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

    #[inline]
    pub fn is_congested(&self, shard: u16) -> bool {
        self.to[shard as usize].len() >= CONGESTION_LIMIT
    }

    /// Once nothing is congested, stalled queues get a `Resume`.
    pub fn resume_stalled(&mut self) {
        if self.stalled.is_empty() || self.to.iter().any(|q| q.len() >= CONGESTION_LIMIT) {
            return;
        }
        let me = self.me as usize;
        for i in 0..self.stalled.len() {
            let queue = self.stalled[i];
            self.to[me].push_back(ShardMsg::Resume { queue });
        }
        self.stalled.clear();
    }

    pub fn has_local(&self) -> bool {
        !self.to[self.me as usize].is_empty()
    }
}
