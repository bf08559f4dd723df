//! Delivery acknowledgement timeout (RabbitMQ's `consumer_timeout`, per queue
//! `x-consumer-timeout`). RabbitMQ's channel checks its oldest unacked
//! delivery; here the queue, which knows its own timeout, finds deliveries
//! unacked for longer and tells their channels (`ShardMsg::ConsumerTimeout`).
//! The channel is closed with 406 PRECONDITION_FAILED; its unacked messages
//! come back through the usual `ChannelGone` requeue.
//!
//! Cost: a delivery records the queue's `clock` (a plain field the shard's
//! tick advances every 200 ms: no clock read per message). The unacked map is
//! scanned only when its oldest entry could have timed out
//! (`timeout_check_at`), so at most once per timeout period while nothing
//! times out. A delivery made just before a tick carries that tick's (older)
//! clock, so the check waits one extra tick: a timeout never fires early and
//! fires at most ~400 ms late.

use super::super::ids::ChannelRef;
use super::super::outbox::Outbox;
use super::super::shard_msg::ShardMsg;
use super::Queue;

/// The shard's tick period (`shard::event_loop::TICK`), ms.
pub const TICK_MS: u64 = 200;

impl Queue {
    /// Looks for deliveries unacked for longer than the timeout (on the tick).
    pub(super) fn check_consumer_timeouts(&mut self, out: &mut Outbox) {
        let Some(timeout) = self.features.consumer_timeout else {
            return;
        };
        if self.unacked.is_empty() {
            self.timeout_check_at = 0;
            return;
        }
        if self.timeout_check_at == 0 {
            // The oldest delivery is at least as recent as the last tick.
            self.timeout_check_at = self.clock + timeout + TICK_MS;
            return;
        }
        if self.clock < self.timeout_check_at {
            return;
        }
        let limit = timeout + TICK_MS;
        let mut late: Vec<ChannelRef> = Vec::new();
        let mut oldest = self.clock;
        for u in self.unacked.values() {
            if self.clock.saturating_sub(u.at) > limit {
                if !late.contains(&u.channel) {
                    late.push(u.channel);
                }
            } else {
                oldest = oldest.min(u.at);
            }
        }
        for channel in late {
            out.push(
                channel.shard,
                ShardMsg::ConsumerTimeout {
                    channel,
                    timeout_ms: timeout,
                },
            );
        }
        // Timed-out deliveries leave when their channel closes; look again
        // one timeout later in case it did not.
        self.timeout_check_at = (oldest + limit + 1).max(self.clock + TICK_MS);
    }
}
