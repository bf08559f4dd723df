//! Message TTL (`x-message-ttl`, the `expiration` property) and queue TTL
//! (`x-expires`), as RabbitMQ's classic queues do them
//! (`rabbit_amqqueue_process`: `calculate_msg_expiry`, `drop_expired_msgs`,
//! `ensure_expiry_timer`):
//!
//! - A message's expiry is fixed on arrival: now + the lower of the queue's
//!   and the message's TTL. Requeued messages keep it.
//! - Only the head is looked at: expired messages are dropped (or
//!   dead-lettered, reason `expired`) when they reach the head — before a
//!   delivery or basic.get, after a publish, and on the shard's tick (every
//!   200 ms) while nobody reads. A message that does not expire blocks the
//!   expired ones behind it, as in RabbitMQ.
//! - TTL 0: a message is delivered only if a consumer takes it at once (the
//!   publish's own dispatch ignores its expiry, `Queue::fresh`); otherwise
//!   it expires right after the publish.
//! - Expiries are kept in memory only (`Queue::expiry`, by sequence number,
//!   for messages that have one). Messages recovered after a restart get a
//!   new expiry counted from the boot (RabbitMQ keeps the original one).
//! - `x-expires`: a queue without consumers, not declared again and not read
//!   with basic.get for that long is deleted (checked on the tick).

use super::super::backlog::Stored;
use super::dead_letter::Reason;
use super::{After, Queue};
use crate::core::message::MessageMeta;
use std::sync::OnceLock;
use std::time::Instant;

// Reading `expiration` from 0-9-1 properties is the message format's job; the
// queue reads the TTL decoded into `MessageMeta`.
pub use crate::core::message::props091::{check_expiration, has_expiration, parse_expiration};

/// Milliseconds on a monotonic clock (since the first call in the process).
pub fn now_ms() -> u64 {
    ms_since_base(Instant::now())
}

/// The wall clock, ms since the Unix epoch (expiries kept in the store).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `t` on the `now_ms` clock.
pub fn ms_since_base(t: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    t.saturating_duration_since(base).as_millis() as u64
}

impl Queue {
    /// The TTL (ms) that applies to a message: the lower of the queue's and
    /// the message's, if either has one.
    #[inline]
    fn ttl_of(&self, meta: MessageMeta) -> Option<u64> {
        match (self.features.message_ttl, meta.ttl()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a message arriving now gets an expiry (a test of two options).
    #[inline]
    pub(super) fn expires(&self, meta: MessageMeta) -> bool {
        self.features.message_ttl.is_some() || meta.ttl().is_some()
    }

    /// Records the expiry of a message that arrives now, if it has one.
    #[cold]
    pub(super) fn set_expiry(&mut self, seq: u64, meta: MessageMeta) {
        if let Some(ttl) = self.ttl_of(meta) {
            self.expiry.insert(seq, now_ms().saturating_add(ttl));
        }
    }

    /// The expiry to store with a persistent message arriving now (ms since
    /// the Unix epoch, 0: none), so that it keeps its expiry across a
    /// restart (`recover`).
    #[inline]
    pub fn stored_expiry(&self, meta: MessageMeta) -> u64 {
        self.ttl_of(meta)
            .map_or(0, |ttl| wall_ms().saturating_add(ttl).max(1))
    }

    /// A recovered message's expiry: the stored one (on the wall clock,
    /// converted to `now_ms`'s), or, for a record without one, counted from now.
    pub(super) fn recover_expiry(&mut self, seq: u64, meta: MessageMeta, expires_at: u64) {
        if expires_at == 0 {
            if self.expires(meta) {
                self.set_expiry(seq, meta);
            }
            return;
        }
        let left = expires_at.saturating_sub(wall_ms());
        self.expiry.insert(seq, now_ms().saturating_add(left));
    }

    /// Drops (or dead-letters) the expired messages at the head. The message
    /// being published (`fresh`) is spared: TTL 0 still lets a waiting
    /// consumer take it.
    pub(super) fn drop_expired(&mut self, now: u64) {
        loop {
            let Some(head) = self.ready.front() else {
                return;
            };
            let seq = head.seq;
            if seq == self.fresh {
                return;
            }
            match self.expiry.get(&seq) {
                Some(&at) if at <= now => {}
                _ => return,
            }
            let s = self.ready.pop_front().expect("head");
            self.discard(s, Reason::Expired);
        }
    }

    /// A message leaves the queue without being delivered (expired, dropped
    /// by a limit): dead-lettered if the queue has a dead-letter exchange.
    pub(super) fn discard(&mut self, s: Stored, reason: Reason) {
        self.forget(s.seq, s.loc);
        if self.features.dead_letter.is_some() {
            self.dead.push((s.msg, reason));
        }
    }

    /// The queue was used (declare, basic.get, last consumer gone): the
    /// `x-expires` countdown starts again.
    #[inline]
    pub(super) fn touch(&mut self) {
        if self.features.expires.is_some() {
            self.last_used = now_ms();
        }
    }

    /// `x-expires` elapsed with the queue unused.
    pub(super) fn expires_due(&self, now: u64) -> After {
        match self.features.expires {
            Some(e) if self.consumers.is_empty() && now.saturating_sub(self.last_used) >= e => {
                After::Delete
            }
            _ => After::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_parses_as_rabbitmq() {
        assert_eq!(parse_expiration(b"100"), Ok(100));
        assert_eq!(parse_expiration(b"0"), Ok(0));
        assert_eq!(parse_expiration(b"+7"), Ok(7));
        assert_eq!(parse_expiration(b"abc"), Err("no_integer".into()));
        assert_eq!(parse_expiration(b""), Err("no_integer".into()));
        assert_eq!(parse_expiration(b"-5"), Err("{value_negative,-5}".into()));
        assert_eq!(
            parse_expiration(b"10x"),
            Err("{leftover_string,\"x\"}".into())
        );
        assert_eq!(
            parse_expiration(b"315360000001"),
            Err("{value_too_large,315360000001}".into())
        );
    }

    #[test]
    fn expiration_flag_test() {
        let mut raw = Vec::new();
        crate::protocol::BasicProperties {
            expiration: Some("5".into()),
            ..Default::default()
        }
        .encode(&mut raw);
        assert!(has_expiration(&raw));
        let mut raw = Vec::new();
        crate::protocol::BasicProperties::default().encode(&mut raw);
        assert!(!has_expiration(&raw));
        assert!(check_expiration(&raw).is_ok());
        let mut raw = Vec::new();
        crate::protocol::BasicProperties {
            expiration: Some("x".into()),
            ..Default::default()
        }
        .encode(&mut raw);
        assert_eq!(
            check_expiration(&raw).unwrap_err().to_string(),
            "PRECONDITION_FAILED - invalid expiration 'x': no_integer"
        );
    }
}
