//! The RabbitMQ extensions a queue was declared with (`x-…` arguments),
//! parsed once at declaration into plain values. The hot path looks only at
//! these fields (a few `Option` / `bool` tests): a queue declared without
//! arguments pays nothing for the extensions.
//!
//! The arguments were validated (`queue_args::validate`) before the queue was
//! created; a value that does not parse here (only possible for definitions
//! written by another version) is ignored, as if absent.

use crate::protocol::{FieldTable, FieldValue};
use bytes::Bytes;

/// What happens to a publish that would take the queue over its length limit
/// (`x-overflow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (or dead-letter, reason `maxlen`) the oldest messages.
    DropHead,
    /// Refuse the new message: basic.nack in confirm mode.
    RejectPublish,
    /// Refuse it and dead-letter it (reason `maxlen`).
    RejectPublishDlx,
}

/// Where dead-lettered messages go (`x-dead-letter-exchange`, `-routing-key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterTarget {
    /// "" is the default exchange.
    pub exchange: Bytes,
    /// None: the message's own routing keys.
    pub routing_key: Option<Bytes>,
}

/// The queue's extensions (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueFeatures {
    /// `x-message-ttl`, ms.
    pub message_ttl: Option<u64>,
    /// `x-expires`, ms: the queue is deleted after this long unused.
    pub expires: Option<u64>,
    pub dead_letter: Option<DeadLetterTarget>,
    /// `x-max-length`, ready messages.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`, body bytes of ready messages.
    pub max_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-max-priority`, capped to 1..=255 as RabbitMQ does: the queue has
    /// `max + 1` priority levels.
    pub max_priority: Option<u8>,
    /// `x-single-active-consumer`.
    pub single_active: bool,
    /// Delivery acknowledgement timeout, ms: `x-consumer-timeout`, else the
    /// broker's `--consumer-timeout` (None: never).
    pub consumer_timeout: Option<u64>,
    /// A quorum queue: returned messages carry `x-delivery-count`.
    pub counts_deliveries: bool,
    /// A quorum queue's `x-delivery-limit`: a message returned more often
    /// is dropped or dead-lettered (reason `delivery_limit`). RabbitMQ
    /// 4's default, 20; a negative value: none.
    pub delivery_limit: Option<u64>,
}

/// RabbitMQ 4's default `x-delivery-limit` of quorum queues.
pub const DEFAULT_DELIVERY_LIMIT: u64 = 20;

impl QueueFeatures {
    /// Reads the arguments of a queue (`default_consumer_timeout`: the
    /// broker-wide timeout, 0 = none).
    pub fn parse(args: &FieldTable, default_consumer_timeout: u64) -> QueueFeatures {
        let int = |k: &str| args.get(k).and_then(FieldValue::as_i64);
        let quorum = crate::core::queue_args::is_quorum(args);
        let non_neg = |k: &str| int(k).filter(|v| *v >= 0).map(|v| v as u64);
        let overflow = match args.get("x-overflow").and_then(FieldValue::as_str) {
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
            _ => Overflow::DropHead,
        };
        let dead_letter = args
            .get("x-dead-letter-exchange")
            .and_then(FieldValue::as_bytes)
            .map(|x| DeadLetterTarget {
                exchange: x.clone(),
                routing_key: args
                    .get("x-dead-letter-routing-key")
                    .and_then(FieldValue::as_bytes)
                    .cloned(),
            });
        // RabbitMQ: max(1, min(requested, 255)), and only for integer types.
        let max_priority = int("x-max-priority").map(|p| p.clamp(1, 255) as u8);
        let consumer_timeout = match non_neg("x-consumer-timeout") {
            Some(t) => Some(t),
            None if default_consumer_timeout > 0 => Some(default_consumer_timeout),
            None => None,
        };
        QueueFeatures {
            message_ttl: non_neg("x-message-ttl"),
            expires: non_neg("x-expires").filter(|v| *v > 0),
            dead_letter,
            max_length: non_neg("x-max-length"),
            max_bytes: non_neg("x-max-length-bytes"),
            overflow,
            max_priority,
            single_active: args
                .get("x-single-active-consumer")
                .and_then(FieldValue::as_bool)
                .unwrap_or(false),
            consumer_timeout,
            counts_deliveries: quorum,
            delivery_limit: match int("x-delivery-limit") {
                _ if !quorum => None,
                Some(n) if n < 0 => None,
                Some(n) => Some(n as u64),
                None => Some(DEFAULT_DELIVERY_LIMIT),
            },
        }
    }

    /// A length limit is set.
    #[inline]
    pub fn limited(&self) -> bool {
        self.max_length.is_some() || self.max_bytes.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::new();
        for (k, v) in pairs {
            t.insert(k, v.clone());
        }
        t
    }
    fn s(v: &str) -> FieldValue {
        FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()))
    }

    #[test]
    fn no_arguments_no_features() {
        let f = QueueFeatures::parse(&FieldTable::new(), 0);
        assert_eq!(f.message_ttl, None);
        assert_eq!(f.dead_letter, None);
        assert!(!f.limited());
        assert_eq!(f.max_priority, None);
        assert_eq!(f.consumer_timeout, None);
        assert_eq!(f.overflow, Overflow::DropHead);
        assert_eq!(
            QueueFeatures::parse(&FieldTable::new(), 1_800_000).consumer_timeout,
            Some(1_800_000)
        );
    }

    #[test]
    fn every_argument() {
        let f = QueueFeatures::parse(
            &args(&[
                ("x-message-ttl", FieldValue::I32(100)),
                ("x-expires", FieldValue::I64(5000)),
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s("dl")),
                ("x-max-length", FieldValue::U8(3)),
                ("x-max-length-bytes", FieldValue::I16(10)),
                ("x-overflow", s("reject-publish-dlx")),
                ("x-max-priority", FieldValue::I32(0)),
                ("x-single-active-consumer", FieldValue::Bool(true)),
                ("x-consumer-timeout", FieldValue::I32(500)),
            ]),
            1_800_000,
        );
        assert_eq!(f.message_ttl, Some(100));
        assert_eq!(f.expires, Some(5000));
        let dl = f.dead_letter.unwrap();
        assert_eq!(
            (&dl.exchange[..], dl.routing_key.as_deref()),
            (&b""[..], Some(&b"dl"[..]))
        );
        assert_eq!((f.max_length, f.max_bytes), (Some(3), Some(10)));
        assert_eq!(f.overflow, Overflow::RejectPublishDlx);
        // RabbitMQ makes x-max-priority 0 a two-level queue.
        assert_eq!(f.max_priority, Some(1));
        assert!(f.single_active);
        assert_eq!(f.consumer_timeout, Some(500));
        let f = QueueFeatures::parse(&args(&[("x-max-priority", FieldValue::I32(300))]), 0);
        assert_eq!(f.max_priority, Some(255));
    }
}
