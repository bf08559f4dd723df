//! A message as it travels from a publisher's channel into queues and out to
//! consumers.

use bytes::Bytes;

/// A published message. Every field is a `Bytes` slice of the publisher's read
/// buffer (or, for a body spread over several frames, of one buffer assembled for
/// it), so putting a message into N queues clones four reference counts, never the
/// bytes.
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
    /// Size RabbitMQ counts for length limits: the body.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }
}
