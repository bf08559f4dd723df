//! What arrives at a channel from queues: answers to its requests (finishing the
//! AMQP method that waited) and deliveries to its consumers.

use super::publish::{write_content, write_method_and_content};
use super::{Awaiting, ChanCx, ChanResult, Channel, Flow, Unacked};
use crate::amqp091::error::AmqpError;
use crate::core::ids::QueueRef;
use crate::core::message::Message;
use crate::core::shard_msg::{QueueReply, Settle, ShardMsg};
use crate::protocol::frame::write_basic_deliver;
use crate::protocol::methods::*;
use bytes::Bytes;

impl Channel {
    /// A queue answered the request this channel waits for.
    pub fn on_reply(&mut self, queue: QueueRef, reply: QueueReply, cx: &mut ChanCx) -> ChanResult {
        let Some(waiting) = self.awaiting.take() else {
            return Ok(Flow::Continue);
        };
        if let (Awaiting::Consume { id, .. }, QueueReply::Gone | QueueReply::Error(_)) =
            (&waiting, &reply)
        {
            // The queue refused the consumer: it never existed.
            self.forget_consumer(*id);
        }
        match (waiting, reply) {
            (Awaiting::Cancel { tag, id, nowait }, QueueReply::Gone) => {
                // The queue went away: the consumer is gone either way.
                self.forget_consumer(id);
                if !nowait {
                    self.send(cx, BasicCancelOk { consumer_tag: tag }.into());
                }
                Ok(Flow::Continue)
            }
            (Awaiting::Delete { nowait, .. }, QueueReply::Gone) => {
                if !nowait {
                    self.send(cx, QueueDeleteOk { message_count: 0 }.into());
                }
                Ok(Flow::Continue)
            }
            (w, QueueReply::Gone) => Err(AmqpError::no_queue(
                &cx.info.access.vhost_name,
                waiting_name(&w),
            )),
            (_, QueueReply::Error(e)) => Err(e.into()),
            (
                Awaiting::Declare { name, nowait },
                QueueReply::Status {
                    messages,
                    consumers,
                },
            ) => {
                if !nowait {
                    let ok = QueueDeclareOk {
                        queue: Bytes::from(name),
                        message_count: messages,
                        consumer_count: consumers,
                    };
                    self.send(cx, ok.into());
                }
                Ok(Flow::Continue)
            }
            (Awaiting::Purge { nowait, .. }, QueueReply::Purged { messages }) => {
                if !nowait {
                    self.send(
                        cx,
                        QueuePurgeOk {
                            message_count: messages,
                        }
                        .into(),
                    );
                }
                Ok(Flow::Continue)
            }
            (Awaiting::Delete { nowait, .. }, QueueReply::Deleted { messages }) => {
                self.queue_gone(queue);
                cx.info.exclusive_queues.retain(|q| *q != queue);
                if !nowait {
                    self.send(
                        cx,
                        QueueDeleteOk {
                            message_count: messages,
                        }
                        .into(),
                    );
                }
                Ok(Flow::Continue)
            }
            (Awaiting::Consume { tag, nowait, .. }, QueueReply::Consumed) => {
                if !nowait {
                    self.send(cx, BasicConsumeOk { consumer_tag: tag }.into());
                }
                Ok(Flow::Continue)
            }
            (Awaiting::Cancel { tag, id, nowait }, QueueReply::Cancelled) => {
                self.forget_consumer(id);
                if !nowait {
                    self.send(cx, BasicCancelOk { consumer_tag: tag }.into());
                }
                Ok(Flow::Continue)
            }
            (Awaiting::Get { .. }, QueueReply::GetEmpty) => {
                self.stats.get_empty += 1;
                self.send(cx, BasicGetEmpty::default().into());
                Ok(Flow::Continue)
            }
            (
                Awaiting::Get { no_ack, .. },
                QueueReply::GetOk {
                    seq,
                    redelivered,
                    messages,
                    msg,
                },
            ) => {
                self.next_tag += 1;
                let tag = self.next_tag;
                self.stats.redeliver += redelivered as u64;
                if !no_ack {
                    self.stats.get += 1;
                    self.unacked.push_back(Unacked {
                        tag,
                        queue,
                        seq,
                        windowed: false,
                    });
                } else {
                    self.stats.get_no_ack += 1;
                }
                let ok = BasicGetOk {
                    delivery_tag: tag,
                    redelivered,
                    exchange: msg.exchange_bytes(),
                    routing_key: msg.routing_key_bytes(),
                    message_count: messages,
                };
                write_method_and_content(
                    cx.wbuf,
                    self.me.channel,
                    &ok.into(),
                    &msg,
                    cx.info.frame_max,
                );
                Ok(Flow::Continue)
            }
            (_, _) => Err(AmqpError::internal("unexpected reply from queue")),
        }
    }

    /// A queue delivers a message to one of this channel's consumers.
    #[inline]
    pub fn deliver(
        &mut self,
        consumer: u32,
        queue: QueueRef,
        seq: u64,
        redelivered: bool,
        msg: &Message,
        cx: &mut ChanCx,
    ) {
        let Some(c) = self.consumers.iter().find(|c| c.id == consumer) else {
            // Not ours any more: give it back rather than lose it.
            cx.ctx.outbox.push(
                queue.shard,
                ShardMsg::Settle {
                    queue,
                    channel: self.me,
                    seq,
                    how: Settle::Requeue,
                    count: 1,
                },
            );
            return;
        };
        self.next_tag += 1;
        let tag = self.next_tag;
        self.stats.redeliver += redelivered as u64;
        if !c.no_ack {
            self.stats.deliver += 1;
            self.unacked.push_back(Unacked {
                tag,
                queue,
                seq,
                windowed: true,
            });
        } else {
            self.stats.deliver_no_ack += 1;
        }
        write_basic_deliver(
            cx.wbuf,
            self.me.channel,
            &c.tag,
            tag,
            redelivered,
            msg.exchange(),
            msg.routing_key(),
        );
        write_content(cx.wbuf, self.me.channel, msg, cx.info.frame_max);
    }
}

fn waiting_name(w: &Awaiting) -> &str {
    match w {
        Awaiting::Declare { name, .. }
        | Awaiting::Purge { name, .. }
        | Awaiting::Delete { name, .. }
        | Awaiting::Consume { name, .. }
        | Awaiting::Get { name, .. } => name,
        Awaiting::Cancel { .. } => "",
    }
}
