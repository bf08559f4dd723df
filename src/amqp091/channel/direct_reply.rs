//! The channel's side of direct reply-to (see `amqp091/direct_reply.rs`):
//! basic.consume / basic.cancel / queue.declare of `amq.rabbitmq.reply-to`,
//! the `reply_to` rewrite of a request, and the delivery of a reply.
//! RabbitMQ's `rabbit_channel` `reply_consumer`, with its error texts.

use super::publish::write_content;
use super::{Awaiting, ChanCx, ChanResult, Channel, Flow};
use crate::amqp091::direct_reply::{ReplyAddress, ReplyToken, REPLY_TO};
use crate::amqp091::error::AmqpError;
use crate::core::ids::Requester;
use crate::core::message::Message;
use crate::core::shard_msg::ShardMsg;
use crate::protocol::frame::write_basic_deliver;
use crate::protocol::methods::*;
use crate::protocol::properties::{raw_property, PROP_REPLY_TO};
use bytes::Bytes;

/// The channel's consumer of `amq.rabbitmq.reply-to` (at most one).
pub(super) struct ReplyConsumer {
    tag: Bytes,
    /// Random, part of the reply address: a reply for an earlier consumer of
    /// this channel (cancelled, then consumed again) does not reach this one.
    key: u64,
}

impl Channel {
    /// basic.consume of `amq.rabbitmq.reply-to`: no queue, just a tag and a
    /// key. It must be no-ack, and a channel has one.
    pub(super) fn consume_reply_to(&mut self, m: BasicConsume, cx: &mut ChanCx) -> ChanResult {
        if self.consumers.iter().any(|c| c.tag == m.consumer_tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{}'",
                String::from_utf8_lossy(&m.consumer_tag)
            )));
        }
        if !m.no_ack {
            return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
        }
        if self.reply_consumer.is_some() {
            return Err(AmqpError::precondition("reply consumer already set"));
        }
        let tag = if m.consumer_tag.is_empty() {
            Bytes::from(cx.ctx.rng.name("amq.ctag-"))
        } else {
            m.consumer_tag
        };
        self.reply_consumer = Some(ReplyConsumer {
            tag: tag.clone(),
            key: cx.ctx.rng.next_u64(),
        });
        if !m.nowait {
            self.send(cx, BasicConsumeOk { consumer_tag: tag }.into());
        }
        Ok(Flow::Continue)
    }

    /// basic.cancel: true if `tag` was the reply consumer's (now cancelled).
    pub(super) fn cancel_reply_to(&mut self, m: &BasicCancel, cx: &mut ChanCx) -> bool {
        if self
            .reply_consumer
            .as_ref()
            .is_none_or(|r| r.tag != m.consumer_tag)
        {
            return false;
        }
        self.reply_consumer = None;
        if !m.nowait {
            let ok = BasicCancelOk {
                consumer_tag: m.consumer_tag.clone(),
            };
            self.send(cx, ok.into());
        }
        true
    }

    /// queue.declare of a name starting with `amq.rabbitmq.reply-to`, passive
    /// or not (RabbitMQ treats them all as passive): the pseudo-queue itself
    /// always exists; a reply address exists while its consumer does, which
    /// the requester's shard answers.
    pub(super) fn declare_reply_to(&mut self, m: QueueDeclare, cx: &mut ChanCx) -> ChanResult {
        let name = String::from_utf8_lossy(&m.queue).into_owned();
        if &m.queue[..] == REPLY_TO {
            self.last_queue = Some(name);
            if !m.nowait {
                let ok = QueueDeclareOk {
                    queue: m.queue,
                    message_count: 0,
                    consumer_count: 1,
                };
                self.send(cx, ok.into());
            }
            return Ok(Flow::Continue);
        }
        let to = ReplyAddress::parse(&m.queue)
            .filter(|a| (a.channel.shard as usize) < cx.ctx.config.shards)
            .ok_or_else(|| AmqpError::no_queue(&cx.info.access.vhost_name, &name))?;
        cx.ctx.outbox.push(
            to.channel.shard,
            ShardMsg::ReplyProbe {
                to,
                from: Requester::Channel(self.me),
            },
        );
        self.awaiting = Some(Awaiting::Declare {
            name,
            nowait: m.nowait,
        });
        Ok(Flow::Wait)
    }

    /// A request's `reply_to = amq.rabbitmq.reply-to` becomes this channel's
    /// reply address. Called for publishes whose properties have reply_to.
    pub(super) fn rewrite_reply_to(&self, msg: &mut Message) -> Result<(), AmqpError> {
        let props = msg.properties();
        let Some(value) = raw_property(props, PROP_REPLY_TO) else {
            return Ok(());
        };
        if value != REPLY_TO {
            return Ok(());
        }
        let Some(rc) = &self.reply_consumer else {
            return Err(AmqpError::precondition(
                "fast reply consumer does not exist",
            ));
        };
        let address = ReplyAddress {
            channel: self.me,
            key: rc.key,
        }
        .routing_key();
        // Splice the new shortstr over the old one; the rest stays byte-exact.
        let start = value.as_ptr() as usize - props.as_ptr() as usize;
        let end = start + value.len();
        let mut out = Vec::with_capacity(props.len() + address.len() - value.len());
        out.extend_from_slice(&props[..start - 1]);
        out.push(address.len() as u8);
        out.extend_from_slice(&address);
        out.extend_from_slice(&props[end..]);
        // Only reply_to changes: the message's meta stays as decoded.
        *msg = msg.with_properties(&out);
        Ok(())
    }

    /// Whether this channel's reply consumer has key `key`.
    pub fn has_reply_consumer(&self, key: u64) -> bool {
        self.reply_consumer.as_ref().is_some_and(|r| r.key == key)
    }

    /// A reply for this channel's reply consumer: basic.deliver straight to
    /// the socket (no-ack, so nothing is recorded). Dropped if the consumer is
    /// gone or was replaced.
    pub fn deliver_reply(&mut self, key: u64, msg: &Message, cx: &mut ChanCx) {
        let Some(rc) = self.reply_consumer.as_ref().filter(|r| r.key == key) else {
            return;
        };
        self.next_tag += 1;
        write_basic_deliver(
            cx.wbuf,
            self.me.channel,
            &rc.tag,
            self.next_tag,
            false,
            msg.exchange(),
            msg.routing_key(),
        );
        write_content(cx.wbuf, self.me.channel, msg, cx.info.frame_max);
    }
}

/// Whether queue.declare of `name` is about direct reply-to: RabbitMQ takes
/// every name that starts with `amq.rabbitmq.reply-to` (only the exact name
/// and valid reply addresses exist).
pub(super) fn is_reply_to_name(name: &[u8]) -> bool {
    name.starts_with(REPLY_TO)
}
