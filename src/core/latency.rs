//! Latency histograms without a clock read per message.
//!
//! - [`clock`]: the shard's coarse clock, microseconds on a monotonic base,
//!   set once per event-loop iteration (`set_clock`, right after the poll
//!   returns) and read by queues from a thread-local: no syscall, no vDSO
//!   call per message. Everything done in one iteration shares its time, so
//!   a message delivered in the iteration it arrived in waited "0 µs".
//! - [`Histogram`]: counts in fixed log-scale buckets ([`BOUNDS_US`]) plus
//!   the sum, 168 bytes, rendered as a Prometheus histogram and in the
//!   queue's API object.
//! - [`Arrivals`]: when a queue's messages arrived, kept per loop iteration
//!   rather than per message: `(first sequence number, time)` marks, at most
//!   [`MAX_MARKS`] of them (when full, every other mark is dropped, which
//!   makes later lookups a little pessimistic, never optimistic by more
//!   than the dropped interval). A queue's time-in-queue of a message is
//!   its delivery time minus the mark of its sequence number.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Instant;

thread_local! {
    static CLOCK_US: Cell<u64> = const { Cell::new(0) };
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Sets this thread's coarse clock to `now` (the event loop, once per
/// iteration).
#[inline]
pub fn set_clock(now: Instant) {
    let us = now.saturating_duration_since(base()).as_micros() as u64;
    CLOCK_US.with(|c| c.set(us));
}

/// This thread's coarse clock, µs (0 until the first `set_clock`).
#[inline]
pub fn clock() -> u64 {
    CLOCK_US.with(|c| c.get())
}

/// Upper bounds of the buckets, µs (Prometheus `le`); the last bucket is
/// `+Inf`.
pub const BOUNDS_US: [u64; 20] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    3_600_000_000,
];

/// See the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram {
    /// `counts[i]`: observations ≤ `BOUNDS_US[i]` and above the bound before
    /// (not cumulative); the last slot is above every bound.
    pub counts: [u64; BOUNDS_US.len() + 1],
    pub sum_us: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: [0; BOUNDS_US.len() + 1],
            sum_us: 0,
        }
    }
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, us: u64) {
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us += us;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn add(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.sum_us += o.sum_us;
    }

    /// `(bound µs or None for +Inf, cumulative count)`, Prometheus style.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let mut acc = 0;
        self.counts.iter().enumerate().map(move |(i, c)| {
            acc += c;
            (BOUNDS_US.get(i).copied(), acc)
        })
    }
}

/// Most arrival marks a queue keeps (16 bytes each).
pub const MAX_MARKS: usize = 64;

/// See the module doc.
#[derive(Debug, Default)]
pub struct Arrivals {
    marks: VecDeque<(u64, u64)>,
}

impl Arrivals {
    /// Message `seq` arrives now (`clock()`); sequence numbers only grow.
    #[inline]
    pub fn arrived(&mut self, seq: u64, now: u64) {
        if self.marks.back().is_some_and(|m| m.1 == now) {
            return;
        }
        if self.marks.len() == MAX_MARKS {
            self.thin();
        }
        self.marks.push_back((seq, now));
    }

    /// When message `seq` arrived (None: before any mark, e.g. recovered at
    /// boot). `in_order`: messages before `seq` will not be asked about
    /// again (a first delivery from a FIFO queue), so older marks go.
    #[inline]
    pub fn arrival(&mut self, seq: u64, in_order: bool) -> Option<u64> {
        // The common case, a FIFO queue delivering from its head: the first
        // mark is the message's (no search).
        if let Some(&(first, at)) = self.marks.front() {
            if first <= seq && self.marks.get(1).is_none_or(|m| m.0 > seq) {
                return Some(at);
            }
        }
        let i = self.marks.partition_point(|m| m.0 <= seq);
        if i == 0 {
            return None;
        }
        let at = self.marks[i - 1].1;
        if in_order && i > 1 {
            self.marks.drain(..i - 1);
        }
        Some(at)
    }

    /// Drops every other mark (keeping the first): a message then maps to
    /// an earlier mark than its own, so it seems to have waited longer.
    #[cold]
    fn thin(&mut self) {
        let mut i = 0;
        self.marks.retain(|_| {
            i += 1;
            i % 2 == 1
        });
    }

    pub fn len(&self) -> usize {
        self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds() {
        let mut h = Histogram::default();
        h.record(0);
        h.record(100);
        h.record(101);
        h.record(u64::MAX / 4);
        assert_eq!(h.counts[0], 2, "0 and 100 µs are ≤ 100");
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[BOUNDS_US.len()], 1, "beyond the last bound: +Inf");
        assert_eq!(h.count(), 4);
        let cum: Vec<_> = h.cumulative().collect();
        assert_eq!(cum.first(), Some(&(Some(100), 2)));
        assert_eq!(cum.last(), Some(&(None, 4)));
    }

    #[test]
    fn arrivals_map_sequence_numbers_to_their_iteration() {
        let mut a = Arrivals::default();
        a.arrived(1, 1000);
        a.arrived(2, 1000);
        a.arrived(3, 2000);
        a.arrived(10, 5000);
        assert_eq!(a.len(), 3, "one mark per distinct time");
        assert_eq!(a.arrival(2, false), Some(1000));
        assert_eq!(a.arrival(9, false), Some(2000));
        assert_eq!(a.arrival(0, false), None);
        assert_eq!(a.arrival(3, true), Some(2000));
        assert_eq!(a.len(), 2, "marks before seq 3's went");
        assert_eq!(a.arrival(11, true), Some(5000));
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn head_shortcut_agrees_with_the_search() {
        // Marks at seq 0, 5, 10, ...; every lookup, in and out of order,
        // against the mark found by searching the list as it was.
        let mut a = Arrivals::default();
        for i in 0..40u64 {
            a.arrived(i * 5, i * 100);
        }
        for (seq, in_order) in [(0, false), (3, true), (4, true), (5, false), (7, true)]
            .into_iter()
            .chain((8..220).map(|s| (s, s % 3 != 0)))
        {
            let expected = a.marks.iter().rev().find(|m| m.0 <= seq).map(|m| m.1);
            assert_eq!(a.arrival(seq, in_order), expected, "seq {seq}");
        }
    }

    #[test]
    fn marks_stay_bounded_and_never_claim_a_later_arrival() {
        let mut a = Arrivals::default();
        for i in 0..10_000u64 {
            a.arrived(i, i * 10);
        }
        assert!(a.len() <= MAX_MARKS);
        for seq in [0u64, 1, 500, 9_999] {
            let at = a.arrival(seq, false).unwrap();
            assert!(at <= seq * 10, "seq {seq}: mark {at} is after its arrival");
        }
    }
}
