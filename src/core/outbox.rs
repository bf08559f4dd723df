//! Messages a shard has produced during one event-loop iteration, per destination
//! shard. The event loop moves them onto the rings in one go and wakes each
//! destination once per batch; messages for the shard itself are handled in the
//! same iteration. The queues keep their capacity, so steady traffic allocates
//! nothing.

use super::definitions::REMOTE_SHARD;
use super::ids::QueueRef;
use super::shard_msg::ShardMsg;
use std::collections::VecDeque;

pub struct Outbox {
    pub me: u16,
    pub to: Vec<VecDeque<ShardMsg>>,
    /// Queues that stopped dispatching because a destination was congested;
    /// the event loop resumes them once the outbox has drained.
    pub stalled: Vec<QueueRef>,
    /// Body bytes waiting per destination (the count alone would let 16 Ki
    /// large messages pile up).
    bytes: Vec<usize>,
    /// The index of the cluster link (the destination of
    /// `REMOTE_SHARD`: other nodes), the last one; `usize::MAX` on a node
    /// that is not clustered.
    link: usize,
}

/// Messages a queue may leave waiting for one shard before it pauses: bounds
/// the memory a fast queue can pile up ahead of a slower consumer shard.
pub const CONGESTION_LIMIT: usize = 16 * 1024;
/// ... and body bytes.
pub const CONGESTION_BYTES: usize = 16 * 1024 * 1024;

/// Body bytes a message carries (what congestion is measured in).
#[inline]
fn weight(msg: &ShardMsg) -> usize {
    match msg {
        ShardMsg::Deliver { msg, .. } | ShardMsg::Publish { msg, .. } => msg.body().len(),
        _ => 0,
    }
}

/// Extends `last` by `next` if `next` continues its run; true if it did.
#[inline]
fn merge(last: &mut ShardMsg, next: &ShardMsg) -> bool {
    match (last, next) {
        (
            ShardMsg::Confirm { tag, ok, count },
            ShardMsg::Confirm {
                tag: t,
                ok: o,
                count: 1,
            },
        ) if t.channel == tag.channel && o == ok && t.seq.get() == tag.seq.get() + 1 => {
            tag.seq = t.seq;
            *count += 1;
            true
        }
        (
            ShardMsg::Settle {
                queue,
                channel,
                seq,
                how,
                count,
            },
            ShardMsg::Settle {
                queue: q,
                channel: c,
                seq: s,
                how: h,
                count: 1,
            },
        ) if q == queue && c == channel && h == how && *s == *seq + *count as u64 => {
            *count += 1;
            true
        }
        (
            ShardMsg::ReplicaGone {
                store_id,
                seq,
                count,
            },
            ShardMsg::ReplicaGone {
                store_id: i,
                seq: s,
                count: 1,
            },
        ) if i == store_id && *s == *seq + *count as u64 => {
            *count += 1;
            true
        }
        _ => false,
    }
}

impl Outbox {
    pub fn new(me: u16, shards: usize) -> Outbox {
        Outbox {
            me,
            to: (0..shards).map(|_| VecDeque::with_capacity(1024)).collect(),
            stalled: Vec::new(),
            bytes: vec![0; shards],
            link: usize::MAX,
        }
    }

    /// An outbox for `shards` shards and, after them, the cluster link.
    pub fn with_link(me: u16, shards: usize) -> Outbox {
        let mut o = Outbox::new(me, shards + 1);
        o.link = shards;
        o
    }

    /// The destination index of `shard` (`REMOTE_SHARD`: the link).
    #[inline]
    fn index(&self, shard: u16) -> usize {
        if shard == REMOTE_SHARD {
            self.link
        } else {
            shard as usize
        }
    }

    /// Queues `msg` for `shard`. A confirm or a settle that continues the
    /// run of the last message queued for that shard (same channel, next
    /// sequence number, same outcome) is merged into it: an ack of many
    /// deliveries, or a batch of confirms, costs one entry.
    #[inline]
    pub fn push(&mut self, shard: u16, msg: ShardMsg) {
        let i = self.index(shard);
        // Only a clustered node has remote queues.
        let Some(to) = self.to.get_mut(i) else {
            return;
        };
        if let Some(last) = to.back_mut() {
            if merge(last, &msg) {
                return;
            }
        }
        self.bytes[i] += weight(&msg);
        to.push_back(msg);
    }

    /// Next message for `shard`, oldest first.
    #[inline]
    pub fn pop(&mut self, shard: usize) -> Option<ShardMsg> {
        let m = self.to[shard].pop_front()?;
        self.bytes[shard] -= weight(&m);
        Some(m)
    }

    /// Puts back a message `pop` took (its ring was full), keeping the order.
    pub fn unpop(&mut self, shard: usize, msg: ShardMsg) {
        self.bytes[shard] += weight(&msg);
        self.to[shard].push_front(msg);
    }

    /// Next message this shard sent to itself.
    #[inline]
    pub fn pop_local(&mut self) -> Option<ShardMsg> {
        self.pop(self.me as usize)
    }

    #[inline]
    pub fn is_congested(&self, shard: u16) -> bool {
        let s = self.index(shard);
        s < self.to.len()
            && (self.to[s].len() >= CONGESTION_LIMIT || self.bytes[s] >= CONGESTION_BYTES)
    }

    /// Some other shard's destination is congested (its ring is full and the
    /// overflow here reached the limit).
    #[inline]
    pub fn remote_congested(&self) -> bool {
        (0..self.to.len()).any(|s| s != self.me as usize && self.is_congested(s as u16))
    }

    /// Once nothing is congested, stalled queues get a `Resume`.
    pub fn resume_stalled(&mut self) {
        if self.stalled.is_empty() || (0..self.to.len()).any(|s| self.is_congested(s as u16)) {
            return;
        }
        let me = self.me as usize;
        for i in 0..self.stalled.len() {
            let queue = self.stalled[i];
            self.to[me].push_back(ShardMsg::Resume { queue });
        }
        self.stalled.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resume() -> ShardMsg {
        ShardMsg::Resume {
            queue: QueueRef {
                shard: 1,
                slot: 0,
                gen: 0,
            },
        }
    }

    #[test]
    fn congestion_of_other_shards_only_blocks_publishers() {
        let mut out = Outbox::new(0, 3);
        for _ in 0..CONGESTION_LIMIT {
            out.push(0, resume());
        }
        // The shard's own backlog is handled in the same iteration: no flow.
        assert!(out.is_congested(0) && !out.remote_congested());
        for _ in 0..CONGESTION_LIMIT - 1 {
            out.push(2, resume());
        }
        assert!(!out.remote_congested());
        out.push(2, resume());
        assert!(out.remote_congested());
        out.pop(2);
        assert!(!out.remote_congested(), "one below the limit reopens");
    }
}
