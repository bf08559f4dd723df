//! Length limits (`x-max-length`, `x-max-length-bytes`, `x-overflow`), as
//! RabbitMQ's classic queues apply them (`maybe_deliver_or_enqueue`,
//! `will_overflow`, `maybe_drop_head`). Both limits count ready messages only
//! (not unacked ones); bytes are body bytes.
//!
//! - `drop-head` (default): the message is enqueued (or delivered), then the
//!   oldest messages are dropped — dead-lettered with reason `maxlen` if the
//!   queue has a dead-letter exchange — until the queue is within its limits.
//! - `reject-publish`: a message that would take the queue over a limit is
//!   refused before anything else, even with consumers waiting: dropped, and
//!   nacked to a publisher in confirm mode (`ShardMsg::Confirm { ok: false }`).
//! - `reject-publish-dlx`: the same, and the refused message is dead-lettered
//!   (reason `maxlen`).

use super::dead_letter::Reason;
use super::features::Overflow;
use super::Queue;
use crate::core::message::Message;

impl Queue {
    /// A publish this queue refuses (reject-publish modes, over a limit). The
    /// caller then calls `refuse` instead of storing and publishing.
    #[inline]
    pub fn refuses(&self, msg: &Message) -> bool {
        self.features.limited()
            && self.features.overflow != Overflow::DropHead
            && self.would_overflow(msg)
    }

    #[cold]
    fn would_overflow(&self, msg: &Message) -> bool {
        let f = &self.features;
        f.max_length
            .is_some_and(|m| self.ready.len() as u64 + 1 > m)
            || f.max_bytes
                .is_some_and(|m| self.ready.bytes() + msg.body().len() as u64 > m)
    }

    /// A refused publish: dropped, or dead-lettered (`reject-publish-dlx`).
    #[cold]
    pub fn refuse(&mut self, msg: Message) {
        if self.features.overflow == Overflow::RejectPublishDlx
            && self.features.dead_letter.is_some()
        {
            self.dead.push((msg, Reason::Maxlen));
        }
    }

    /// drop-head: drops the oldest messages while over a limit.
    #[cold]
    pub(super) fn drop_head(&mut self) {
        if self.features.overflow != Overflow::DropHead {
            return;
        }
        let (len, bytes) = (self.features.max_length, self.features.max_bytes);
        while len.is_some_and(|m| self.ready.len() as u64 > m)
            || bytes.is_some_and(|m| self.ready.bytes() > m)
        {
            let Some(s) = self.ready.pop_front() else {
                return;
            };
            self.discard(s, Reason::Maxlen);
        }
    }
}
