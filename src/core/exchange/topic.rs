//! Topic exchange: binding keys are patterns of dot-separated words where `*`
//! matches one word and `#` zero or more. Matching is done by [`TopicTrie`].

use super::topic_trie::TopicTrie;
use super::{Dest, ExchangeType};
use crate::protocol::FieldTable;
use std::collections::HashMap;

pub struct Topic {
    trie: TopicTrie<Dest>,
    /// How many bindings (differing only in arguments) share a (pattern, dest):
    /// the trie holds each pair once and loses it with the last binding.
    counts: HashMap<(String, Dest), usize>,
}

impl Default for Topic {
    fn default() -> Self {
        Topic {
            trie: TopicTrie::new(),
            counts: HashMap::new(),
        }
    }
}

impl ExchangeType for Topic {
    fn bind(&mut self, key: &str, _args: &FieldTable, dest: Dest) {
        let n = self.counts.entry((key.to_string(), dest)).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.trie.bind(key.as_bytes(), dest);
        }
    }
    fn unbind(&mut self, key: &str, _args: &FieldTable, dest: Dest) {
        let k = (key.to_string(), dest);
        if let Some(n) = self.counts.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&k);
                self.trie.unbind(key.as_bytes(), dest);
            }
        }
    }
    #[inline]
    fn route(&mut self, key: &[u8], _headers: Option<&FieldTable>, out: &mut Vec<Dest>) {
        self.trie.route(key, out);
    }
}
