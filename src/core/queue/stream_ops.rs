//! What a stream queue (`Queue::stream`, `core::stream`) does with the
//! synchronous requests: no basic.get, no purge, a deletion whatever
//! if-unused and if-empty say, consumers at offsets.

use super::{After, Queue};
use crate::core::error::CoreError;
use crate::core::shard_msg::{QueueOp, QueueReply};
use crate::core::vhost::resource;

impl Queue {
    /// `request` for a stream: what a stream does differently
    /// (`rabbit_stream_queue`): no basic.get, no purge, consumers at offsets.
    pub(super) fn stream_request(&mut self, op: QueueOp) -> (QueueReply, After) {
        let s = self.stream.as_mut().expect("a stream");
        let q = || resource(&self.props.vhost_name, "queue", &self.props.name);
        let reply = match op {
            QueueOp::Status => QueueReply::Status {
                messages: s.messages().min(u32::MAX as u64) as u32,
                consumers: s.consumer_count() as u32,
            },
            QueueOp::Purge => QueueReply::from(CoreError::NotImplemented(format!(
                "queue.purge not supported by stream queues {}",
                q()
            ))),
            QueueOp::Get { .. } => QueueReply::from(CoreError::NotImplemented(format!(
                "basic.get not supported by stream queues {}",
                q()
            ))),
            // RabbitMQ deletes a stream whatever if-unused and if-empty say,
            // and reports 0 messages.
            QueueOp::Delete { .. } => return (QueueReply::Deleted { messages: 0 }, After::Delete),
            QueueOp::Consume(spec) => {
                let now = crate::core::stats::wall_ms();
                match s.consume(&spec, &self.props.vhost_name, &self.props.name, now) {
                    Ok(()) => {
                        self.had_consumer = true;
                        QueueReply::Consumed
                    }
                    Err(e) => QueueReply::from(e),
                }
            }
            QueueOp::Cancel { consumer } => {
                s.cancel(consumer);
                QueueReply::Cancelled
            }
            QueueOp::Credit { .. } => {
                QueueReply::Error(CoreError::internal("credit outside the message pump"))
            }
            QueueOp::Hold { channel } => {
                s.hold(channel, true);
                QueueReply::Held
            }
            QueueOp::Release { channel } => {
                s.hold(channel, false);
                QueueReply::Held
            }
        };
        (reply, After::Nothing)
    }
}
