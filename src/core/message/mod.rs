//! A message as it travels from a publisher's channel into queues and out to
//! consumers.
//!
//! The core is protocol-neutral about messages in one way: what it needs to
//! know about a message on the hot path (persistent or not, priority, per-message
//! TTL, whether it has headers) is decoded once, when the message arrives,
//! into a small `Copy` [`MessageMeta`] that travels beside it to its queues
//! (`ShardMsg::Publish::meta`). Queues read the meta, never the encoded
//! properties. The meta is not part of `Message` itself: after the queue has
//! taken it in, a message is only moved and delivered, and at 128 bytes (four
//! `Bytes`, two cache lines) those moves are as cheap as they were. Reading the encoded
//! properties is the business of the format module ([`props091`] for AMQP
//! 0-9-1, the only format today).

use bytes::Bytes;

pub mod props091;

/// A published message. Every `Bytes` field is a slice of the publisher's read
/// buffer (or, for a body spread over several frames, of one buffer assembled for
/// it), so putting a message into N queues clones four reference counts,
/// never the bytes.
///
/// Format: `properties` holds the message's annotations in the encoding of the
/// protocol it arrived in, passed through byte-exact to consumers of that
/// protocol. Today that is always AMQP 0-9-1 content-header properties (flags +
/// list); a second native format (e.g. AMQP 1.0 header/annotation/properties
/// sections) would keep its own section bytes there, with the body still one
/// `Bytes`, and build the `MessageMeta` with its own decoder.
#[derive(Clone, Debug)]
pub struct Message {
    pub exchange: Bytes,
    pub routing_key: Bytes,
    /// Content-header properties exactly as received (flags + list), passed
    /// through byte-exact to consumers.
    pub properties: Bytes,
    pub body: Bytes,
}

impl Message {
    /// A message whose `properties` are AMQP 0-9-1 content-header properties
    /// (its meta: [`MessageMeta::from_amqp091`]).
    #[inline]
    pub fn from_amqp091(
        exchange: Bytes,
        routing_key: Bytes,
        properties: Bytes,
        body: Bytes,
    ) -> Message {
        Message {
            exchange,
            routing_key,
            properties,
            body,
        }
    }

    /// Size RabbitMQ counts for length limits: the body.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Exchange, routing key, properties and body together, bytes.
    #[inline]
    pub fn total_len(&self) -> usize {
        self.exchange.len() + self.routing_key.len() + self.properties.len() + self.body.len()
    }

    /// The same message in one allocation of its own. A message's parts are
    /// slices of the read buffer it arrived in, and keep all of that buffer
    /// (64 KiB or more) alive: a queue that keeps small messages for long
    /// must not hold a read buffer for each (`Backlog::push_back`).
    pub fn compacted(&self) -> Message {
        let mut v = Vec::with_capacity(self.total_len());
        for part in [
            &self.exchange,
            &self.routing_key,
            &self.properties,
            &self.body,
        ] {
            v.extend_from_slice(part);
        }
        let all = Bytes::from(v);
        let mut at = 0;
        let mut take = |n: usize| {
            let b = all.slice(at..at + n);
            at += n;
            b
        };
        Message {
            exchange: take(self.exchange.len()),
            routing_key: take(self.routing_key.len()),
            properties: take(self.properties.len()),
            body: take(self.body.len()),
        }
    }
}

/// What the core needs to know about a message, decoded once from its
/// properties on arrival (8 bytes, `Copy`; the body size is `body.len()`).
/// One word, because every queue hop moves the `Message` beside it.
///
/// Bits 0..48: the per-message TTL in ms (valid TTLs are at most ten years,
/// under 2^39), or `NO_TTL` / `BAD_TTL`; bits 48..56: the priority; bits
/// 56..64: `PERSISTENT`, `HAS_PRIORITY`, `HAS_HEADERS`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MessageMeta(u64);

const TTL_MASK: u64 = (1 << 48) - 1;
/// No per-message TTL (none given, or the properties are malformed).
const NO_TTL: u64 = TTL_MASK;
/// An expiration was given but is not a valid TTL (publish refuses it).
const BAD_TTL: u64 = TTL_MASK - 1;
const PRIORITY_SHIFT: u32 = 48;
const FLAGS_SHIFT: u32 = 56;

const PERSISTENT: u64 = 1 << FLAGS_SHIFT;
const HAS_PRIORITY: u64 = 2 << FLAGS_SHIFT;
const HAS_HEADERS: u64 = 4 << FLAGS_SHIFT;

impl MessageMeta {
    /// A transient message without priority, TTL or headers.
    pub const NONE: MessageMeta = MessageMeta(NO_TTL);

    /// Built by a format's decoder. `ttl`: `Ok(Some(ms))`, `Ok(None)` (no
    /// TTL), or `Err(())` (a TTL was given but is invalid).
    #[inline]
    pub fn new(
        persistent: bool,
        priority: Option<u8>,
        ttl: Result<Option<u64>, ()>,
        has_headers: bool,
    ) -> MessageMeta {
        let mut m = match ttl {
            Ok(Some(ms)) => ms.min(BAD_TTL - 1),
            Ok(None) => NO_TTL,
            Err(()) => BAD_TTL,
        };
        if persistent {
            m |= PERSISTENT;
        }
        if let Some(p) = priority {
            m |= HAS_PRIORITY | (p as u64) << PRIORITY_SHIFT;
        }
        if has_headers {
            m |= HAS_HEADERS;
        }
        MessageMeta(m)
    }

    #[inline]
    fn ttl_bits(&self) -> u64 {
        self.0 & TTL_MASK
    }

    /// Persistent (0-9-1 delivery mode 2): stored when routed to a durable queue.
    #[inline]
    pub fn persistent(&self) -> bool {
        self.0 & PERSISTENT != 0
    }

    /// The message's priority, None when it has none.
    #[inline]
    pub fn priority(&self) -> Option<u8> {
        (self.0 & HAS_PRIORITY != 0).then_some((self.0 >> PRIORITY_SHIFT) as u8)
    }

    /// The message's own TTL in ms (0-9-1 `expiration`), None when it has
    /// none or an invalid one.
    #[inline]
    pub fn ttl(&self) -> Option<u64> {
        let ttl = self.ttl_bits();
        (ttl < BAD_TTL).then_some(ttl)
    }

    /// The message gave a TTL that is not valid (publish refuses it with 406).
    #[inline]
    pub fn ttl_invalid(&self) -> bool {
        self.ttl_bits() == BAD_TTL
    }

    /// The message has headers (a headers table, possibly empty).
    #[inline]
    pub fn has_headers(&self) -> bool {
        self.0 & HAS_HEADERS != 0
    }
}

impl Default for MessageMeta {
    fn default() -> MessageMeta {
        MessageMeta::NONE
    }
}

impl std::fmt::Debug for MessageMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = self.ttl_bits();
        let ttl: &dyn std::fmt::Debug = match bits {
            NO_TTL => &"none",
            BAD_TTL => &"invalid",
            ref ms => ms,
        };
        f.debug_struct("MessageMeta")
            .field("persistent", &self.persistent())
            .field("priority", &self.priority())
            .field("ttl", ttl)
            .field("has_headers", &self.has_headers())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_small_and_round_trips() {
        assert_eq!(std::mem::size_of::<MessageMeta>(), 8);
        let m = MessageMeta::new(true, Some(0), Ok(Some(0)), true);
        assert!(m.persistent() && m.has_headers());
        assert_eq!(
            (m.priority(), m.ttl(), m.ttl_invalid()),
            (Some(0), Some(0), false)
        );
        let m = MessageMeta::new(false, None, Err(()), false);
        assert!(!m.persistent() && !m.has_headers());
        assert_eq!((m.priority(), m.ttl(), m.ttl_invalid()), (None, None, true));
        assert_eq!(
            MessageMeta::default(),
            MessageMeta::new(false, None, Ok(None), false)
        );
        assert_eq!(MessageMeta::NONE.ttl(), None);
    }
}
