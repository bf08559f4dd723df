//! queue.declare / bind / unbind / purge / delete, over the core's operations
//! (`core::ops::queue`). Operations on an existing queue are requests to its
//! shard; `""` names the queue last declared on the channel.

use super::exchange_methods::text;
use super::{caller, Awaiting, ChanCx, ChanResult, Channel, Flow};
use crate::core::auth::permissions::Access;
use crate::core::ops::queue::{self as ops, Declared, QueueSpec};
use crate::core::shard_msg::QueueOp;
use crate::protocol::methods::*;
use bytes::Bytes;

impl Channel {
    pub(super) fn queue_declare(&mut self, m: QueueDeclare, cx: &mut ChanCx) -> ChanResult {
        if super::direct_reply::is_reply_to_name(&m.queue) {
            return self.declare_reply_to(m, cx);
        }
        if m.passive {
            let name = self.resolve_queue_name(&m.queue)?;
            let q = self.find_queue(&name, cx)?;
            self.last_queue = Some(name.clone());
            return self.request(
                cx,
                q.queue,
                QueueOp::Status,
                Awaiting::Declare {
                    name,
                    nowait: m.nowait,
                },
            );
        }
        let spec = QueueSpec {
            name: text(&m.queue),
            durable: m.durable,
            exclusive: m.exclusive,
            auto_delete: m.auto_delete,
            arguments: m.arguments,
        };
        match ops::queue_declare(cx.ctx, caller(cx.info), spec)? {
            Declared::Exists { name, queue } => {
                self.last_queue = Some(name.clone());
                self.request(
                    cx,
                    queue,
                    QueueOp::Status,
                    Awaiting::Declare {
                        name,
                        nowait: m.nowait,
                    },
                )
            }
            Declared::Created { name, queue } => {
                if m.exclusive {
                    cx.info.exclusive_queues.push(queue);
                }
                self.last_queue = Some(name.clone());
                if !m.nowait {
                    let ok = QueueDeclareOk {
                        queue: Bytes::from(name),
                        message_count: 0,
                        consumer_count: 0,
                    };
                    self.send(cx, ok.into());
                }
                Ok(Flow::Continue)
            }
        }
    }

    pub(super) fn queue_bind(&mut self, m: QueueBind, cx: &mut ChanCx) -> ChanResult {
        let name = self.resolve_queue_name(&m.queue)?;
        // RabbitMQ: an empty routing key with "" queue shortcut binds with the queue's name.
        let key = if m.routing_key.is_empty() && m.queue.is_empty() {
            name.clone()
        } else {
            text(&m.routing_key)
        };
        let b = ops::queue_binding(
            cx.ctx,
            caller(cx.info),
            name,
            text(&m.exchange),
            key,
            m.arguments,
        )?;
        ops::queue_bind(cx.ctx, b)?;
        if !m.nowait {
            self.send(cx, QueueBindOk {}.into());
        }
        Ok(Flow::Continue)
    }

    pub(super) fn queue_unbind(&mut self, m: QueueUnbind, cx: &mut ChanCx) -> ChanResult {
        let name = self.resolve_queue_name(&m.queue)?;
        let (exchange, key) = (text(&m.exchange), text(&m.routing_key));
        ops::queue_unbind(cx.ctx, caller(cx.info), name, exchange, key, m.arguments)?;
        self.send(cx, QueueUnbindOk {}.into());
        Ok(Flow::Continue)
    }

    pub(super) fn queue_purge(&mut self, m: QueuePurge, cx: &mut ChanCx) -> ChanResult {
        let name = self.resolve_queue_name(&m.queue)?;
        let q = self.use_queue(Access::Read, &name, cx)?;
        self.request(
            cx,
            q.queue,
            QueueOp::Purge,
            Awaiting::Purge {
                name,
                nowait: m.nowait,
            },
        )
    }

    pub(super) fn queue_delete(&mut self, m: QueueDelete, cx: &mut ChanCx) -> ChanResult {
        let name = self.resolve_queue_name(&m.queue)?;
        let q = match self.use_queue(Access::Configure, &name, cx) {
            Ok(q) => q,
            // Deleting a queue that does not exist succeeds (RabbitMQ 3.x).
            Err(e) if e.code == 404 => {
                if !m.nowait {
                    self.send(cx, QueueDeleteOk { message_count: 0 }.into());
                }
                return Ok(Flow::Continue);
            }
            Err(e) => return Err(e),
        };
        let op = QueueOp::Delete {
            if_unused: m.if_unused,
            if_empty: m.if_empty,
        };
        self.request(
            cx,
            q.queue,
            op,
            Awaiting::Delete {
                name,
                nowait: m.nowait,
            },
        )
    }
}
