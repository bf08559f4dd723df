//! Quorum queues' delivery count (RabbitMQ's `x-delivery-count` and
//! `x-delivery-limit`, as RabbitMQ 4.0 to 4.2 count them): every return of
//! a delivered message (basic.reject or basic.nack with requeue, its
//! channel closing, its consumer cancelled or timed out) counts one. The
//! redelivered message carries the count in its `x-delivery-count` header
//! (a long; any value the publisher put there is replaced). A message
//! returned more often than the limit (default 20) is dropped, or
//! dead-lettered with reason `delivery_limit`.
//!
//! The count lives in the queue's memory (`Queue::returns`, for messages
//! returned at least once) and in the redelivered message's header; the
//! copy in the store (and on the followers) keeps the published
//! properties, so a restart or a failover starts the count again.

use super::dead_letter::Reason;
use super::{Queue, Unacked};
use crate::protocol::{BasicProperties, FieldValue};
use bytes::Bytes;

const HEADER: &str = "x-delivery-count";

impl Queue {
    /// Message `seq`, delivered as `u`, is returned: the message to requeue
    /// (its header counting this return), or None when it went over the
    /// limit (it left the queue).
    pub(super) fn count_delivery(&mut self, seq: u64, u: Unacked) -> Option<Unacked> {
        let count = {
            let n = self.returns.entry(seq).or_insert(0);
            *n = n.saturating_add(1);
            *n as u64
        };
        if self.features.delivery_limit.is_some_and(|l| count > l) {
            self.forget(seq, u.loc);
            if self.features.dead_letter.is_some() {
                self.dead.push((u.msg, Reason::DeliveryLimit));
            }
            return None;
        }
        // Properties that do not decode (never from a 0-9-1 client: the
        // channel checked them) are left as they are.
        let Ok(mut props) = BasicProperties::decode(u.msg.properties_bytes()) else {
            return Some(u);
        };
        let mut headers = props.headers.take().unwrap_or_default();
        headers.0.retain(|(k, _)| k.as_ref() != HEADER.as_bytes());
        headers.0.push((
            Bytes::from_static(HEADER.as_bytes()),
            FieldValue::I64(count as i64),
        ));
        props.headers = Some(headers);
        let mut raw = Vec::new();
        props.encode(&mut raw);
        Some(Unacked {
            msg: u.msg.with_properties(&raw),
            ..u
        })
    }
}
