//! When each connection slot next needs its timers run.
//!
//! The event loop runs every session's timers (`Session::tick`: heartbeats,
//! handshake and close time-outs, idle buffers, following its queues) in
//! slices between ticks. Visiting a session costs a cache miss or two (a
//! slab entry is ~470 bytes), and with 10,000 idle connections those
//! visits were most of what an idle broker did (tuning.md, "Idle").
//!
//! So each visit returns when the session next has something to do, and
//! the slice walks this table (8 bytes per slot, in slot order) instead of
//! the slab: a session whose time has not come is not touched. Anything
//! that happens to a session (input read, output flushed, a new or moved-in
//! session) makes it due at the next slice again, so its answer is only
//! trusted while it is left alone. A change of users or permissions makes
//! every slot due (each session rebuilds its rights at its tick).
//!
//! Invariant: a session is visited at least once per `MAX_SLEEP`, whatever
//! it answered: a timer missed by a bug shows late, never never.

use std::time::{Duration, Instant};

/// The longest a session's timers go unvisited.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// No session in the slot.
const VACANT: u64 = u64::MAX;

/// Per connection slot: the time (ms after `epoch`) its timers are due.
pub struct DueTable {
    epoch: Instant,
    /// 0 = at the next slice; `VACANT`: no session. Slots beyond the end
    /// are due (the slab knows whether they hold a session).
    at: Vec<u64>,
    /// The users-and-permissions version last seen (`Definitions::auth_version`).
    auth_version: u64,
}

impl DueTable {
    pub fn new(now: Instant) -> DueTable {
        DueTable {
            epoch: now,
            at: Vec::new(),
            auth_version: 0,
        }
    }

    /// Something happened to the session in `slot`: run its timers at the
    /// next slice.
    #[inline]
    pub fn touch(&mut self, slot: usize) {
        if let Some(at) = self.at.get_mut(slot) {
            *at = 0;
        }
    }

    /// The slot is empty now: it is skipped until a session takes it
    /// (`touch`).
    pub fn vacate(&mut self, slot: usize) {
        if let Some(at) = self.at.get_mut(slot) {
            *at = VACANT;
        }
    }

    /// Whether the session in `slot` is due at `now`.
    #[inline]
    pub fn is_due(&self, slot: usize, now: Instant) -> bool {
        match self.at.get(slot) {
            Some(&at) => at <= self.ms(now),
            None => true,
        }
    }

    /// The session in `slot` (visited at `now`) next needs its timers at
    /// `next` (`None`: no timer runs); at most `MAX_SLEEP` from now.
    pub fn set(&mut self, slot: usize, now: Instant, next: Option<Instant>) {
        if slot >= self.at.len() {
            self.at.resize(slot + 1, 0);
        }
        let cap = now + MAX_SLEEP;
        let next = next.map_or(cap, |n| n.min(cap));
        // Rounded up: a timer is never run before its time (it would then
        // find nothing to do, and wait for the next visit instead).
        let ms = next.saturating_duration_since(self.epoch).as_nanos();
        self.at[slot] = ms.div_ceil(1_000_000) as u64;
    }

    /// Users or permissions changed (`version` differs from the last one
    /// seen): every session is due.
    pub fn auth_changed(&mut self, version: u64) {
        if version != self.auth_version {
            self.auth_version = version;
            for at in self.at.iter_mut().filter(|at| **at != VACANT) {
                *at = 0;
            }
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_sleeps_until_its_time_and_wakes_when_touched() {
        let t0 = Instant::now();
        let mut d = DueTable::new(t0);
        // Never seen: due.
        assert!(d.is_due(3, t0));
        d.set(3, t0, Some(t0 + Duration::from_secs(5)));
        assert!(!d.is_due(3, t0 + Duration::from_millis(4_999)));
        assert!(d.is_due(3, t0 + Duration::from_secs(5)));
        // Slots below it that were never set are due.
        assert!(d.is_due(0, t0));
        d.touch(3);
        assert!(d.is_due(3, t0));
        // A vacated slot is skipped, also after a rights change, until a
        // session takes it.
        d.vacate(3);
        assert!(!d.is_due(3, t0 + MAX_SLEEP * 2));
        d.auth_changed(7);
        assert!(!d.is_due(3, t0));
        d.touch(3);
        assert!(d.is_due(3, t0));
    }

    #[test]
    fn never_later_than_max_sleep() {
        let t0 = Instant::now();
        let mut d = DueTable::new(t0);
        d.set(0, t0, Some(t0 + Duration::from_secs(3600)));
        d.set(1, t0, None);
        assert!(!d.is_due(0, t0 + MAX_SLEEP - Duration::from_millis(1)));
        assert!(d.is_due(0, t0 + MAX_SLEEP));
        assert!(d.is_due(1, t0 + MAX_SLEEP));
    }

    #[test]
    fn a_rights_change_makes_every_slot_due() {
        let t0 = Instant::now();
        let mut d = DueTable::new(t0);
        d.auth_changed(1);
        for slot in 0..4 {
            d.set(slot, t0, Some(t0 + Duration::from_secs(30)));
        }
        d.auth_changed(1);
        assert!(!d.is_due(2, t0));
        d.auth_changed(2);
        assert!((0..4).all(|s| d.is_due(s, t0)));
    }
}
