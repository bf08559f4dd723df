//! Stream filtering (RabbitMQ 3.13): a publisher tags a message with the
//! `x-stream-filter-value` header; a consumer with `x-stream-filter` (one
//! value or an array) gets only the messages tagged with one of them, and,
//! with `x-stream-match-unfiltered`, also those without a tag.
//!
//! RabbitMQ skips whole chunks whose bloom filter has none of the values
//! and leaves the rest to the client (an AMQP 0-9-1 consumer may still see
//! messages that do not match). warren filters each message, so a client
//! that filters again sees no difference, and one that does not gets only
//! what it asked for.

use crate::core::message::props091;
use crate::protocol::{FieldTable, FieldValue};
use bytes::Bytes;

/// A consumer's filter.
#[derive(Clone, Debug)]
pub struct Filter {
    values: Vec<Bytes>,
    match_unfiltered: bool,
}

impl Filter {
    /// From the consumer's arguments; None without `x-stream-filter`.
    pub fn parse(args: &FieldTable) -> Option<Filter> {
        let values = match args.get("x-stream-filter")? {
            FieldValue::LongStr(b) => vec![b.clone()],
            FieldValue::Array(a) => a
                .iter()
                .filter_map(|v| match v {
                    FieldValue::LongStr(b) => Some(b.clone()),
                    _ => None,
                })
                .collect(),
            _ => return None,
        };
        let match_unfiltered = args
            .get("x-stream-match-unfiltered")
            .and_then(FieldValue::as_bool)
            .unwrap_or(false);
        Some(Filter {
            values,
            match_unfiltered,
        })
    }

    /// Whether a message with these (0-9-1) properties passes.
    pub fn matches(&self, properties: &[u8]) -> bool {
        let value =
            props091::headers(properties).and_then(|h| match h.get("x-stream-filter-value") {
                Some(FieldValue::LongStr(b)) => Some(b.clone()),
                _ => None,
            });
        match value {
            Some(v) => self.values.contains(&v),
            None => self.match_unfiltered,
        }
    }
}
