//! A message as it travels from a publisher's channel into queues and out to
//! consumers.
//!
//! The core is protocol-neutral about messages in one way: what it needs to
//! know about a message on the hot path (persistent or not, priority, per-message
//! TTL, whether it has headers) is decoded once, when the message arrives,
//! into a small `Copy` [`MessageMeta`] that travels beside it to its queues
//! (`ShardMsg::Publish::meta`). Queues read the meta, never the encoded
//! properties. Reading the encoded properties is the business of the format
//! module ([`props091`] for AMQP 0-9-1, the only format today).

use bytes::Bytes;

pub mod props091;

/// A published message: one `Bytes` over one buffer that holds the exchange,
/// routing key, properties and body, and a word saying where each lies.
///
/// The buffer is, for nearly every message, the slice of the publisher's read
/// buffer from the exchange name of its basic.publish frame to the end of its
/// body frame ([`Layout::Wire`]: the frame bytes between the parts stay where
/// they are). Putting a message into N queues clones one reference count, and
/// a consumer on another shard drops one; a ring entry carries 40 bytes of
/// message. A message that did not arrive as contiguous frames (a body in
/// several frames, AMQP 1.0, dead-lettering, the store) gets one buffer of its
/// own with the parts back to back ([`Layout::Packed`]).
///
/// Format: `properties` holds the message's annotations in the encoding of the
/// protocol it arrived in, passed through byte-exact to consumers of that
/// protocol. Today that is always AMQP 0-9-1 content-header properties (flags +
/// list); a second native format (e.g. AMQP 1.0 header/annotation/properties
/// sections) would keep its own section bytes there and build the
/// `MessageMeta` with its own decoder.
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    ex_len: u8,
    rk_len: u8,
    layout: Layout,
    props_len: u32,
}

/// How a message's parts lie in its buffer. The exchange always starts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Back to back: exchange, routing key, properties, body.
    Packed,
    /// As AMQP 0-9-1 frames put them: the exchange and routing key
    /// short strings of basic.publish (one length octet between them), the
    /// rest of the method frame and the content header's fixed fields
    /// ([`WIRE_GAP_PROPS`] octets) before the property flags, and, when
    /// there is a body, the frame end and body frame header
    /// ([`WIRE_GAP_BODY`]) before it.
    Wire,
}

/// Octets between the routing key and the properties in [`Layout::Wire`]:
/// the publish bits (1), frame end (1), the header frame's header (7), and
/// class id, weight and body size (12).
pub const WIRE_GAP_PROPS: usize = 21;
/// Octets between the properties and the body in [`Layout::Wire`]: frame
/// end (1) and the body frame's header (7).
pub const WIRE_GAP_BODY: usize = 8;

impl Message {
    /// A message in a buffer of its own (one allocation, one copy of each
    /// part). Exchange and routing key are short strings: at most 255 bytes
    /// (longer ones are cut; no caller passes one).
    pub fn new(exchange: &[u8], routing_key: &[u8], properties: &[u8], body: &[u8]) -> Message {
        let exchange = &exchange[..exchange.len().min(255)];
        let routing_key = &routing_key[..routing_key.len().min(255)];
        let mut v =
            Vec::with_capacity(exchange.len() + routing_key.len() + properties.len() + body.len());
        for part in [exchange, routing_key, properties, body] {
            v.extend_from_slice(part);
        }
        Message {
            buf: Bytes::from(v),
            ex_len: exchange.len() as u8,
            rk_len: routing_key.len() as u8,
            layout: Layout::Packed,
            props_len: properties.len() as u32,
        }
    }

    /// A message whose parts already lie in `buf` as `layout` says, `buf`
    /// ending where the body ends. None when the lengths do not fit `buf`.
    #[inline]
    pub fn in_buffer(
        buf: Bytes,
        layout: Layout,
        exchange_len: usize,
        routing_key_len: usize,
        properties_len: usize,
    ) -> Option<Message> {
        if exchange_len > 255 || routing_key_len > 255 || properties_len > u32::MAX as usize {
            return None;
        }
        let m = Message {
            buf,
            ex_len: exchange_len as u8,
            rk_len: routing_key_len as u8,
            layout,
            props_len: properties_len as u32,
        };
        (m.props_end() <= m.buf.len()).then_some(m)
    }

    /// A message whose `properties` are AMQP 0-9-1 content-header properties
    /// (its meta: [`MessageMeta::from_amqp091`]), from separate parts: in a
    /// buffer of its own.
    pub fn from_amqp091(
        exchange: impl AsRef<[u8]>,
        routing_key: impl AsRef<[u8]>,
        properties: impl AsRef<[u8]>,
        body: impl AsRef<[u8]>,
    ) -> Message {
        Message::new(
            exchange.as_ref(),
            routing_key.as_ref(),
            properties.as_ref(),
            body.as_ref(),
        )
    }

    #[inline]
    fn rk_start(&self) -> usize {
        self.ex_len as usize + (self.layout == Layout::Wire) as usize
    }

    #[inline]
    fn props_start(&self) -> usize {
        let gap = match self.layout {
            Layout::Packed => 0,
            Layout::Wire => WIRE_GAP_PROPS,
        };
        self.rk_start() + self.rk_len as usize + gap
    }

    #[inline]
    fn props_end(&self) -> usize {
        self.props_start() + self.props_len as usize
    }

    #[inline]
    fn body_start(&self) -> usize {
        let end = self.props_end();
        match self.layout {
            Layout::Packed => end,
            Layout::Wire => (end + WIRE_GAP_BODY).min(self.buf.len()),
        }
    }

    #[inline]
    pub fn exchange(&self) -> &[u8] {
        &self.buf[..self.ex_len as usize]
    }

    #[inline]
    pub fn routing_key(&self) -> &[u8] {
        let at = self.rk_start();
        &self.buf[at..at + self.rk_len as usize]
    }

    /// Content-header properties exactly as received (flags + list), passed
    /// through byte-exact to consumers.
    #[inline]
    pub fn properties(&self) -> &[u8] {
        &self.buf[self.props_start()..self.props_end()]
    }

    #[inline]
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body_start()..]
    }

    /// The exchange as a `Bytes` of its own (no copy).
    pub fn exchange_bytes(&self) -> Bytes {
        self.buf.slice(..self.ex_len as usize)
    }

    /// The routing key as a `Bytes` of its own (no copy).
    pub fn routing_key_bytes(&self) -> Bytes {
        let at = self.rk_start();
        self.buf.slice(at..at + self.rk_len as usize)
    }

    /// The body as a `Bytes` of its own (one reference count; no copy).
    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.body_start()..)
    }

    /// The properties as a `Bytes` of their own (no copy).
    pub fn properties_bytes(&self) -> Bytes {
        self.buf.slice(self.props_start()..self.props_end())
    }

    /// Size RabbitMQ counts for length limits: the body.
    #[inline]
    pub fn body_len(&self) -> usize {
        self.buf.len() - self.body_start()
    }

    /// Exchange, routing key, properties and body together, bytes.
    #[inline]
    pub fn total_len(&self) -> usize {
        self.ex_len as usize + self.rk_len as usize + self.props_len as usize + self.body_len()
    }

    /// The same message with other properties (a new buffer).
    pub fn with_properties(&self, properties: &[u8]) -> Message {
        Message::new(self.exchange(), self.routing_key(), properties, self.body())
    }

    /// The same message in one allocation of its own. A message's buffer is a
    /// slice of the read buffer it arrived in, and keeps all of that buffer
    /// (64 KiB or more) alive: a queue that keeps small messages for long
    /// must not hold a read buffer for each (`Backlog::push_back`).
    pub fn compacted(&self) -> Message {
        Message {
            buf: Bytes::copy_from_slice(&self.buf),
            ..*self
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("exchange", &Bytes::copy_from_slice(self.exchange()))
            .field("routing_key", &Bytes::copy_from_slice(self.routing_key()))
            .field("properties", &Bytes::copy_from_slice(self.properties()))
            .field("body_len", &self.body_len())
            .finish()
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

    fn parts(m: &Message) -> (&[u8], &[u8], &[u8], &[u8]) {
        (m.exchange(), m.routing_key(), m.properties(), m.body())
    }

    #[test]
    fn one_buffer_per_message() {
        assert_eq!(std::mem::size_of::<Message>(), 40);
        let m = Message::new(b"ex", b"key", &[0x10, 0, 2], b"body");
        assert_eq!(
            parts(&m),
            (&b"ex"[..], &b"key"[..], &[0x10, 0, 2][..], &b"body"[..])
        );
        assert_eq!((m.body_len(), m.total_len()), (4, 12));
        assert_eq!(parts(&m.compacted()), parts(&m));
        let p = m.with_properties(&[0, 0]);
        assert_eq!(
            parts(&p),
            (&b"ex"[..], &b"key"[..], &[0, 0][..], &b"body"[..])
        );
        assert_eq!(&m.body_bytes()[..], b"body");
        assert_eq!(&m.exchange_bytes()[..], b"ex");
        assert_eq!(&m.routing_key_bytes()[..], b"key");
        assert_eq!(&m.properties_bytes()[..], &[0x10, 0, 2]);
    }

    #[test]
    fn wire_layout_reads_between_the_frame_bytes() {
        // exchange, its neighbour's length octet, routing key, 21 octets of
        // method tail and header fields, properties, 8 of frame end and body
        // frame header, body.
        let mut buf = b"ex".to_vec();
        buf.push(3);
        buf.extend_from_slice(b"key");
        buf.extend_from_slice(&[0xAA; WIRE_GAP_PROPS]);
        buf.extend_from_slice(&[0x10, 0, 2]);
        buf.extend_from_slice(&[0xBB; WIRE_GAP_BODY]);
        buf.extend_from_slice(b"body");
        let m = Message::in_buffer(Bytes::from(buf), Layout::Wire, 2, 3, 3).unwrap();
        assert_eq!(
            parts(&m),
            (&b"ex"[..], &b"key"[..], &[0x10, 0, 2][..], &b"body"[..])
        );
        assert_eq!(parts(&m.compacted()), parts(&m));
        // No body: the buffer ends with the properties.
        let mut buf = b"\x00".to_vec();
        buf.extend_from_slice(&[0xAA; WIRE_GAP_PROPS]);
        buf.extend_from_slice(&[0, 0]);
        let m = Message::in_buffer(Bytes::from(buf), Layout::Wire, 0, 0, 2).unwrap();
        assert_eq!(parts(&m), (&b""[..], &b""[..], &[0, 0][..], &b""[..]));
        // Lengths past the end are refused.
        assert!(Message::in_buffer(Bytes::from_static(b"abc"), Layout::Packed, 2, 2, 0).is_none());
        assert!(
            Message::in_buffer(Bytes::from_static(b"abc"), Layout::Packed, 256, 0, 0).is_none()
        );
    }

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
