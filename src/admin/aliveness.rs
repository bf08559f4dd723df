//! The aliveness test (RabbitMQ's `rabbit_mgmt_wm_aliveness_test`): as the
//! calling user, declare the queue `aliveness-test` in a vhost, publish a
//! message to it through the default exchange and get it back. RabbitMQ
//! does it over an internal client connection; warren does the same steps
//! through the core on the shards' threads (the control path): the
//! declare on shard 0 with `core::ops::queue::queue_declare`, then, on the
//! shard that owns the queue, a publish and a basic.get (no ack) handled by
//! `ShardCtx::handle_queue_msg`, as a message from a channel would be. The
//! queue is kept, as RabbitMQ keeps it.

use super::Admin;
use crate::core::error::CoreError;
use crate::core::message::{Message, MessageMeta};
use crate::core::ops::queue::{queue_declare, Declared, QueueSpec};
use crate::core::ops::Caller;
use crate::core::shard_msg::{QueueOp, QueueReply, ShardMsg};
use crate::protocol::FieldTable;
use bytes::Bytes;

/// The queue RabbitMQ's aliveness test uses.
pub const ALIVENESS_QUEUE: &str = "aliveness-test";

/// Why the aliveness test failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AlivenessFailure {
    /// The vhost does not exist.
    NoVhost,
    /// The user has no permission in the vhost (RabbitMQ cannot open its
    /// connection: "Access refused.").
    NoAccess,
    /// The core refused the declare (e.g. no configure permission, or an
    /// inequivalent `aliveness-test` queue).
    Refused(CoreError),
    /// The message published did not come back.
    Empty,
    /// A shard did not answer (stopping).
    Unavailable,
}

impl Admin {
    /// Runs the aliveness test in `vhost` as `user`; see the module doc.
    pub fn aliveness_test(&self, vhost: &str, user: &str) -> Result<(), AlivenessFailure> {
        let access = {
            let g = self.defs.lock();
            if g.vhost_id(vhost).is_none() {
                return Err(AlivenessFailure::NoVhost);
            }
            if g.tenancy.permission(user, vhost).is_none() {
                return Err(AlivenessFailure::NoAccess);
            }
            g.user_access(user, vhost, 0)
                .ok_or(AlivenessFailure::NoAccess)?
        };
        let declared = self
            .control
            .ask(0, move |s| {
                let caller = Caller {
                    conn_uid: 0,
                    access: &access,
                };
                let spec = QueueSpec {
                    name: ALIVENESS_QUEUE.to_string(),
                    durable: false,
                    exclusive: false,
                    auto_delete: false,
                    arguments: FieldTable::new(),
                };
                queue_declare(&mut s.ctx, caller, spec)
            })
            .ok_or(AlivenessFailure::Unavailable)?
            .map_err(AlivenessFailure::Refused)?;
        let queue = match declared {
            Declared::Created { queue, .. } | Declared::Exists { queue, .. } => queue,
        };
        let got = self
            .control
            .ask(queue.shard as usize, move |s| {
                let ctx = &mut s.ctx;
                let msg = Message::from_amqp091(
                    Bytes::new(),
                    Bytes::from_static(ALIVENESS_QUEUE.as_bytes()),
                    // No properties: the flags word only.
                    Bytes::from_static(&[0, 0]),
                    Bytes::from_static(b"test_message"),
                );
                let meta = MessageMeta::from_amqp091(msg.properties());
                ctx.handle_queue_msg(ShardMsg::Publish {
                    queue,
                    msg,
                    meta,
                    confirm: None,
                });
                let q = ctx
                    .queues
                    .get_mut(queue.slot as usize)
                    .filter(|q| q.me == queue)?;
                let (reply, _) = q.request(QueueOp::Get { no_ack: true }, None);
                Some(matches!(reply, QueueReply::GetOk { .. }))
            })
            .ok_or(AlivenessFailure::Unavailable)?;
        match got {
            Some(true) => Ok(()),
            Some(false) => Err(AlivenessFailure::Empty),
            // Deleted between the declare and the publish.
            None => Err(AlivenessFailure::Refused(CoreError::no_queue(
                vhost,
                ALIVENESS_QUEUE,
            ))),
        }
    }
}
