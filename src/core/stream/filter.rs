//! Stream filtering (RabbitMQ 3.13): a publisher tags a message with the
//! `x-stream-filter-value` header; a consumer with `x-stream-filter` (one
//! value or an array) gets only the messages tagged with one of them, and,
//! with `x-stream-match-unfiltered`, also those without a tag.
//!
//! As in RabbitMQ, every chunk carries a bloom filter of its messages'
//! values (`Bloom`, `x-stream-filter-size-bytes`, 16 by default) and a flag
//! for "some message has no value", so a filtered reader skips whole
//! chunks that cannot match without looking at their messages. RabbitMQ
//! stops there and leaves the rest to the client (an AMQP 0-9-1 consumer
//! may still see messages that do not match); warren also checks each
//! message of the chunks it reads, so a client that filters again sees no
//! difference, and one that does not gets only what it asked for.

use crate::protocol::properties::{raw_property, PROP_HEADERS};
use crate::protocol::table::table_lookup;
use crate::protocol::{FieldTable, FieldValue};
use bytes::Bytes;

/// The header a publisher tags a message with.
pub const VALUE_HEADER: &[u8] = b"x-stream-filter-value";
/// RabbitMQ's default bloom filter size.
pub const DEFAULT_BLOOM_BYTES: usize = 16;

/// The filter value of a message, from its properties (a slice of them:
/// no copy, no allocation).
pub fn value_of(properties: &Bytes) -> Option<Bytes> {
    let table = raw_property(properties, PROP_HEADERS)?;
    let at = table.as_ptr() as usize - properties.as_ptr() as usize;
    match table_lookup(properties.slice(at..at + table.len()), VALUE_HEADER)? {
        FieldValue::LongStr(v) => Some(v),
        _ => None,
    }
}

/// FNV-1a, 64 bits: stable across versions and runs (filters are on disk).
fn hash(v: &[u8]) -> u64 {
    v.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Two bit positions of `v` in a filter of `bits` bits.
fn positions(v: &[u8], bits: usize) -> [usize; 2] {
    let h = hash(v);
    let (a, b) = (h as u32 as usize, (h >> 32) as usize);
    [a % bits, a.wrapping_add(b) % bits]
}

/// The chunk being built's filter.
pub struct Bloom {
    bits: Vec<u8>,
    /// Some message had a value / had none.
    filtered: bool,
    unfiltered: bool,
}

impl Bloom {
    pub fn new(bytes: usize) -> Bloom {
        Bloom {
            bits: vec![0; bytes.clamp(16, 255)],
            filtered: false,
            unfiltered: false,
        }
    }

    /// A message with filter value `v` (None: without one) joins the chunk.
    pub fn add(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => {
                self.filtered = true;
                let n = self.bits.len() * 8;
                for p in positions(v, n) {
                    self.bits[p / 8] |= 1 << (p % 8);
                }
            }
            None => self.unfiltered = true,
        }
    }

    /// The chunk's filter area (empty when no message had a value: every
    /// message is unfiltered), and a clean filter for the next chunk.
    pub fn take(&mut self, out: &mut Vec<u8>) {
        out.clear();
        if self.filtered {
            out.push(self.unfiltered as u8);
            out.extend_from_slice(&self.bits);
        }
        self.bits.fill(0);
        self.filtered = false;
        self.unfiltered = false;
    }
}

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

    /// Whether a chunk with this filter area may hold a matching message.
    pub fn may_match(&self, area: &[u8]) -> bool {
        let Some((&unfiltered, bits)) = area.split_first() else {
            return self.match_unfiltered; // no message has a value
        };
        if unfiltered != 0 && self.match_unfiltered {
            return true;
        }
        if bits.is_empty() {
            return true;
        }
        let n = bits.len() * 8;
        self.values.iter().any(|v| {
            positions(v, n)
                .iter()
                .all(|&p| bits[p / 8] & (1 << (p % 8)) != 0)
        })
    }

    /// Whether a message with these (0-9-1) properties passes.
    pub fn matches(&self, properties: &Bytes) -> bool {
        match value_of(properties) {
            Some(v) => self.values.contains(&v),
            None => self.match_unfiltered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_has_no_false_negatives_and_skips_most_chunks() {
        let f = |vals: &[&'static str], unfiltered| Filter {
            values: vals
                .iter()
                .map(|v| Bytes::from_static(v.as_bytes()))
                .collect(),
            match_unfiltered: unfiltered,
        };
        let mut b = Bloom::new(16);
        let mut area = Vec::new();
        b.add(Some(b"eu"));
        b.add(Some(b"us"));
        b.take(&mut area);
        assert_eq!(area.len(), 17);
        assert!(f(&["eu"], false).may_match(&area));
        assert!(f(&["x", "us"], false).may_match(&area));
        let misses = (0..100)
            .filter(|i| f(&[Box::leak(format!("v{i}").into_boxed_str())], false).may_match(&area))
            .count();
        assert!(misses < 20, "{misses} false positives of 100");
        // Only unfiltered messages: an empty area.
        b.add(None);
        b.take(&mut area);
        assert!(area.is_empty());
        assert!(!f(&["eu"], false).may_match(&area));
        assert!(f(&["eu"], true).may_match(&area));
        // Mixed.
        b.add(None);
        b.add(Some(b"eu"));
        b.take(&mut area);
        assert!(f(&["zz"], true).may_match(&area));
    }
}
