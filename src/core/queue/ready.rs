//! A queue's ready messages (never delivered, or requeued), in delivery order.
//!
//! One `Level` per priority (a queue without `x-max-priority` has one). A level
//! holds its requeued messages by sequence number, served first, and its
//! never-delivered messages in a `Backlog` (whose numbers are all higher), so a
//! requeued message goes back to its original place within its priority.
//! Higher levels are served first: levels\[p\] holds priority p.

use super::super::backlog::{Backlog, PagingConfig, Stored};
use crate::store::segments::Location;
use std::collections::BTreeMap;
use std::sync::Arc;

struct Level {
    backlog: Backlog,
    /// Requeued messages by sequence number: served before `backlog`.
    requeued: BTreeMap<u64, Stored>,
}

/// See the module doc.
pub(super) struct Ready {
    levels: Vec<Level>,
    /// Body bytes of the requeued messages (the backlogs count their own).
    requeued_bytes: u64,
}

impl Ready {
    /// `levels`: 1, or max priority + 1. `name`: the backlogs' page-file name
    /// (unique on the shard), suffixed `-p<priority>` for a priority queue.
    pub fn new(levels: usize, paging: Option<Arc<PagingConfig>>, name: String) -> Ready {
        let levels = if levels <= 1 {
            vec![Level::new(Backlog::new(paging, name))]
        } else {
            (0..levels)
                .map(|p| Level::new(Backlog::new(paging.clone(), format!("{}-p{}", name, p))))
                .collect()
        };
        Ready {
            levels,
            requeued_bytes: 0,
        }
    }

    /// The level a message of priority `p` (the `priority` property, None
    /// when absent) goes to: capped at the queue's maximum, as RabbitMQ does.
    #[inline]
    pub fn level_of(&self, p: Option<u8>) -> usize {
        (p.unwrap_or(0) as usize).min(self.levels.len() - 1)
    }

    pub fn is_priority(&self) -> bool {
        self.levels.len() > 1
    }

    /// A new message at the tail of its level.
    #[inline]
    pub fn push_back(&mut self, level: usize, s: Stored) {
        self.levels[level].backlog.push_back(s);
    }

    /// A delivered message comes back to its place.
    pub fn requeue(&mut self, level: usize, s: Stored) {
        self.requeued_bytes += s.msg.body().len() as u64;
        self.levels[level].requeued.insert(s.seq, s);
    }

    /// Takes the next message to deliver.
    #[inline]
    pub fn pop_front(&mut self) -> Option<Stored> {
        for l in self.levels.iter_mut().rev() {
            if let Some((_, s)) = l.requeued.pop_first() {
                self.requeued_bytes -= s.msg.body().len() as u64;
                return Some(s);
            }
            if let Some(s) = l.backlog.pop_front() {
                return Some(s);
            }
        }
        None
    }

    /// The next message to deliver, without taking it.
    pub fn front(&mut self) -> Option<&Stored> {
        let i = self.levels.iter_mut().rposition(|l| !l.is_empty())?;
        let l = &mut self.levels[i];
        match l.requeued.first_key_value() {
            Some((_, s)) => Some(s),
            None => l.backlog.front(),
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.levels.iter().all(Level::is_empty)
    }

    /// Messages paged out to disk (in no level's memory).
    pub fn paged(&self) -> usize {
        self.levels.iter().map(|l| l.backlog.paged()).sum()
    }

    pub fn len(&self) -> usize {
        self.levels
            .iter()
            .map(|l| l.backlog.len() + l.requeued.len())
            .sum()
    }

    /// Body bytes of every ready message (x-max-length-bytes).
    pub fn bytes(&self) -> u64 {
        self.requeued_bytes + self.levels.iter().map(|l| l.backlog.bytes()).sum::<u64>()
    }

    /// Removes every message, handing each to `f` (purge).
    pub fn drain_each(&mut self, mut f: impl FnMut(Stored)) {
        for l in &mut self.levels {
            for (_, s) in std::mem::take(&mut l.requeued) {
                f(s);
            }
            l.backlog.drain_each(&mut f);
        }
        self.requeued_bytes = 0;
    }

    /// Store locations of every message (queue deletion).
    pub fn locations(&self, mut f: impl FnMut(Location)) {
        for l in &self.levels {
            for s in l.requeued.values() {
                if let Some(loc) = s.loc {
                    f(loc);
                }
            }
            l.backlog.locations(&mut f);
        }
    }

    /// The in-memory message `seq` (compaction updates its location).
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Stored> {
        for l in &mut self.levels {
            if l.requeued.contains_key(&seq) {
                return l.requeued.get_mut(&seq);
            }
            if let Some(s) = l.backlog.get_mut(seq) {
                return Some(s);
            }
        }
        None
    }
}

impl Level {
    fn new(backlog: Backlog) -> Level {
        Level {
            backlog,
            requeued: BTreeMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.requeued.is_empty() && self.backlog.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::Message;

    fn stored(seq: u64, body: &'static str) -> Stored {
        Stored {
            seq,
            redelivered: false,
            msg: Message::new(b"", b"", b"", body.as_bytes()),
            loc: None,
        }
    }

    fn order(r: &mut Ready) -> Vec<u64> {
        std::iter::from_fn(|| r.pop_front().map(|s| s.seq)).collect()
    }

    #[test]
    fn higher_priority_first_fifo_within() {
        let mut r = Ready::new(4, None, "t".into());
        for (seq, p) in [(1, 0), (2, 3), (3, 1), (4, 3), (5, 9), (6, 0)] {
            let l = r.level_of(Some(p));
            r.push_back(l, stored(seq, "x"));
        }
        assert_eq!(r.len(), 6);
        assert_eq!(r.front().map(|s| s.seq), Some(2));
        // priority 9 is capped at 3 and keeps its arrival order there
        assert_eq!(order(&mut r), vec![2, 4, 5, 3, 1, 6]);
        assert!(r.is_empty());
    }

    #[test]
    fn requeued_messages_go_back_to_their_place_within_their_priority() {
        let mut r = Ready::new(3, None, "t".into());
        for (seq, p) in [(1, 2), (2, 2), (3, 1), (4, 2), (5, 1)] {
            let l = r.level_of(Some(p));
            r.push_back(l, stored(seq, "ab"));
        }
        let a = r.pop_front().unwrap(); // 1 (p2)
        let b = r.pop_front().unwrap(); // 2 (p2)
        assert_eq!((a.seq, b.seq), (1, 2));
        r.requeue(2, b);
        r.requeue(2, a);
        assert_eq!(r.bytes(), 10);
        assert_eq!(order(&mut r), vec![1, 2, 4, 3, 5]);
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn one_level_without_priorities() {
        let mut r = Ready::new(1, None, "t".into());
        assert!(!r.is_priority());
        assert_eq!(r.level_of(Some(7)), 0);
        r.push_back(0, stored(1, "a"));
        r.push_back(0, stored(2, "b"));
        let s = r.pop_front().unwrap();
        r.requeue(0, s);
        assert_eq!(order(&mut r), vec![1, 2]);
    }
}
