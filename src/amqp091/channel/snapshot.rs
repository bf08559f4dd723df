//! The management API's view of a channel and its consumers
//! (`core::stats`); called by the connection's snapshot.

use super::Channel;
use crate::amqp091::conn_info::ConnInfo;
use crate::core::ids::VhostId;
use crate::core::stats::{ChannelSnap, ConsumerSnap};
use std::sync::atomic::Ordering;

impl Channel {
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    pub fn snapshot(&self, conn: &str, info: &ConnInfo, vhost: Option<VhostId>) -> ChannelSnap {
        let unconfirmed = if self.confirm {
            self.publish_seq.saturating_sub(self.confirmed)
        } else {
            0
        };
        ChannelSnap {
            connection: conn.to_string(),
            number: self.me.channel,
            user: info.user.clone(),
            vhost,
            prefetch_count: self.consumer_prefetch,
            global_prefetch_count: self.window.limit.load(Ordering::Relaxed),
            confirm: self.confirm,
            transactional: self.tx.is_some(),
            messages_unacknowledged: self.unacked.len() as u64,
            messages_unconfirmed: unconfirmed,
            consumer_count: self.consumers.len() as u32,
            state: if self.closing { "closing" } else { "running" },
            stats: self.stats,
        }
    }

    pub fn consumer_snapshots(
        &self,
        conn: &str,
        info: &ConnInfo,
        vhost: Option<VhostId>,
        out: &mut Vec<ConsumerSnap>,
    ) {
        for c in &self.consumers {
            out.push(ConsumerSnap {
                connection: conn.to_string(),
                channel: self.me.channel,
                user: info.user.clone(),
                vhost,
                tag: String::from_utf8_lossy(&c.tag).into_owned(),
                queue: c.info.queue_name.clone(),
                ack_required: !c.no_ack,
                prefetch_count: c.info.prefetch,
                exclusive: c.info.exclusive,
                arguments: c.info.arguments.clone(),
            });
        }
    }
}
