//! Direct reply-to: RabbitMQ's `amq.rabbitmq.reply-to` pseudo-queue.
//!
//! An RPC client consumes `amq.rabbitmq.reply-to` (no-ack) on a channel and
//! publishes requests with `reply_to = amq.rabbitmq.reply-to`. The broker
//! rewrites that property to `amq.rabbitmq.reply-to.<token>`, where the token
//! names the requesting channel ([`ReplyAddress`]: shard, connection slot,
//! channel number, incarnation, plus a random key drawn when the reply
//! consumer was created). A server replies by publishing to the default
//! exchange with that routing key; the message goes straight to the
//! requester's shard (`ShardMsg::DirectReply`) and is written to its socket,
//! without any queue.
//!
//! A reply to a channel that is gone, or to a consumer cancelled and created
//! again, is dropped: the incarnation and key no longer match. As in RabbitMQ
//! a reply is never "routed" — a mandatory reply comes back as basic.return
//! NO_ROUTE even when it was delivered, and a publisher confirm acks it at
//! once.
//!
//! The channel's side (consume, cancel, the reply_to rewrite, delivery) is in
//! `channel/direct_reply.rs`.

pub use crate::core::ids::ReplyAddress;
use crate::core::ids::{ChannelRef, QueueRef};
use crate::core::message::Message;
use crate::core::shard_msg::ShardMsg;
use bytes::Bytes;

/// The pseudo-queue's name (consume on it; the `reply_to` value to rewrite).
pub const REPLY_TO: &[u8] = b"amq.rabbitmq.reply-to";
/// The prefix of rewritten `reply_to` values and of reply routing keys.
pub const REPLY_PREFIX: &[u8] = b"amq.rabbitmq.reply-to.";

/// Answers to a passive queue.declare of a reply address carry this
/// placeholder: no queue is involved.
pub const NO_QUEUE: QueueRef = QueueRef {
    shard: u16::MAX,
    slot: u32::MAX,
    gen: 0,
};

const RAW_LEN: usize = 20;
/// base64url without padding of 20 bytes.
const TOKEN_LEN: usize = 27;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The token format of a reply address (warren's own, not RabbitMQ's).
pub trait ReplyToken: Sized {
    fn routing_key(&self) -> Bytes;
    fn parse(routing_key: &[u8]) -> Option<Self>;
}

impl ReplyToken for ReplyAddress {
    /// `amq.rabbitmq.reply-to.<token>`.
    fn routing_key(&self) -> Bytes {
        let c = &self.channel;
        let mut raw = [0u8; RAW_LEN];
        raw[0..2].copy_from_slice(&c.shard.to_be_bytes());
        raw[2..4].copy_from_slice(&c.channel.to_be_bytes());
        raw[4..8].copy_from_slice(&c.conn_slot.to_be_bytes());
        raw[8..12].copy_from_slice(&c.incarnation.to_be_bytes());
        raw[12..20].copy_from_slice(&self.key.to_be_bytes());
        let mut out = Vec::with_capacity(REPLY_PREFIX.len() + TOKEN_LEN);
        out.extend_from_slice(REPLY_PREFIX);
        let mut bits = 0u32;
        let mut nbits = 0;
        for &b in &raw {
            bits = (bits << 8) | b as u32;
            nbits += 8;
            while nbits >= 6 {
                nbits -= 6;
                out.push(ALPHABET[((bits >> nbits) & 63) as usize]);
            }
        }
        if nbits > 0 {
            out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize]);
        }
        Bytes::from(out)
    }

    /// The address in a routing key made by [`ReplyAddress::routing_key`];
    /// `None` for anything else. Allocates nothing.
    fn parse(routing_key: &[u8]) -> Option<ReplyAddress> {
        let token = routing_key.strip_prefix(REPLY_PREFIX)?;
        if token.len() != TOKEN_LEN {
            return None;
        }
        let mut raw = [0u8; RAW_LEN];
        let (mut bits, mut nbits, mut at) = (0u32, 0, 0);
        for &ch in token {
            let v = ALPHABET.iter().position(|&a| a == ch)? as u32;
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                if at < RAW_LEN {
                    raw[at] = (bits >> nbits) as u8;
                }
                at += 1;
            }
        }
        // 27 characters carry 162 bits: 160 of data, 2 that must be zero.
        if at != RAW_LEN || bits & ((1 << nbits) - 1) != 0 {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes(raw[i..i + 4].try_into().unwrap());
        Some(ReplyAddress {
            channel: ChannelRef {
                shard: u16_at(0),
                channel: u16_at(2),
                conn_slot: u32_at(4),
                incarnation: u32_at(8),
            },
            key: u64::from_be_bytes(raw[12..20].try_into().unwrap()),
        })
    }
}

/// A message published to the default exchange: sends it to the requester of
/// every reply address among its routing keys (`shards` bounds the shard
/// number, so a forged token cannot name a shard that does not exist).
pub fn forward_replies(
    outbox: &mut crate::core::outbox::Outbox,
    shards: usize,
    msg: &Message,
    extra_keys: &[Bytes],
) {
    let keys = std::iter::once(msg.routing_key()).chain(extra_keys.iter().map(|k| &k[..]));
    for key in keys {
        if !key.starts_with(REPLY_PREFIX) {
            continue;
        }
        match ReplyAddress::parse(key) {
            Some(to) if (to.channel.shard as usize) < shards => outbox.push(
                to.channel.shard,
                ShardMsg::DirectReply {
                    to,
                    msg: msg.clone(),
                },
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(shard: u16, channel: u16, conn_slot: u32, incarnation: u32, key: u64) -> ReplyAddress {
        ReplyAddress {
            channel: ChannelRef {
                shard,
                channel,
                conn_slot,
                incarnation,
            },
            key,
        }
    }

    #[test]
    fn routing_key_round_trips() {
        for a in [
            addr(0, 1, 0, 1, 0),
            addr(1, 2047, 7, 99, 0xdead_beef_0123_4567),
            addr(u16::MAX, u16::MAX, u32::MAX, u32::MAX, u64::MAX),
        ] {
            let rk = a.routing_key();
            assert!(rk.starts_with(REPLY_PREFIX));
            assert_eq!(rk.len(), REPLY_PREFIX.len() + TOKEN_LEN);
            assert!(rk[REPLY_PREFIX.len()..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'));
            assert_eq!(ReplyAddress::parse(&rk), Some(a));
        }
        // Different keys, different tokens.
        assert_ne!(
            addr(0, 1, 0, 1, 1).routing_key(),
            addr(0, 1, 0, 1, 2).routing_key()
        );
    }

    #[test]
    fn anything_else_is_not_an_address() {
        let good = addr(1, 2, 3, 4, 5).routing_key();
        assert_eq!(ReplyAddress::parse(REPLY_TO), None);
        assert_eq!(ReplyAddress::parse(b"amq.rabbitmq.reply-to."), None);
        assert_eq!(ReplyAddress::parse(&good[1..]), None);
        assert_eq!(ReplyAddress::parse(&good[..good.len() - 1]), None);
        let mut longer = good.to_vec();
        longer.push(b'A');
        assert_eq!(ReplyAddress::parse(&longer), None);
        let mut bad_char = good.to_vec();
        bad_char[30] = b'=';
        assert_eq!(ReplyAddress::parse(&bad_char), None);
        // The last character's two spare bits must be zero.
        let mut spare = good.to_vec();
        let last = spare.len() - 1;
        let v = ALPHABET.iter().position(|&c| c == spare[last]).unwrap();
        spare[last] = ALPHABET[v | 1];
        assert_eq!(ReplyAddress::parse(&spare), None);
        // RabbitMQ's own tokens (another broker's) are not ours.
        assert_eq!(
            ReplyAddress::parse(
                b"amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5NTAyNjUzAAACigAAAABrBNb7.rKSVhMNRv/nTxJ/uWgiQeA=="
            ),
            None
        );
    }
}
