//! Which segments may go, and when (see `segments.rs`'s module doc): a
//! segment's live count falls as its messages are acked or moved (`kill`);
//! one with none left, and no record of it needed by a live segment, is
//! deleted once the records that killed its messages are durable
//! (`collect_garbage`); a mostly dead one is a compaction candidate; after a
//! failed fdatasync nothing goes until the next start (`quarantine`).

use super::{segment_path, Location, SegmentLog, SEGMENT_HEADER_LEN};
use std::io;

impl SegmentLog {
    /// Segments (not the current one) whose live messages are fewer than
    /// `threshold` (e.g. 0.1) of the messages written to them, oldest first.
    /// Segments with no live message are not listed: they go by themselves.
    pub fn compact_candidates(&self, threshold: f64) -> Vec<u64> {
        if self.pinned {
            return Vec::new();
        }
        self.segments
            .iter()
            .filter(|&(&n, s)| {
                n != self.current && s.live > 0 && (s.live as f64) < threshold * s.total as f64
            })
            .map(|(&n, _)| n)
            .collect()
    }

    /// After a failed `fdatasync`: what was written since the last good
    /// sync may be lost (the kernel may have dropped the dirty pages, and a
    /// later sync of the same file can succeed without them), so a restart
    /// may cut the current segment short there. New records go to a new
    /// segment, so nothing confirmed from now on sits behind the damage; and
    /// no segment is deleted or compacted until the next start, since a
    /// record that superseded it (an ack, a compacted copy) may be among the
    /// lost ones. The caller nacks what it had not confirmed.
    pub fn quarantine(&mut self) {
        if self.cur().len > SEGMENT_HEADER_LEN as u64 {
            self.rotate();
        }
        if !self.pinned {
            self.pinned = true;
            log::error!(
                "message store {}: segments are kept (no deletion, no compaction) until the \
                 next start, after a failed fdatasync",
                self.dir.display()
            );
        }
    }

    /// The message at `loc` is dead. With `kill_ref`, the record that killed it
    /// is (or will be, for acks) in the current segment: note the dependency.
    pub(super) fn kill(&mut self, loc: Location, kill_ref: bool) {
        let appended = self.appended;
        match self.segments.get_mut(&loc.segment) {
            Some(s) if s.live > 0 => {
                s.live -= 1;
                if s.live == 0 {
                    s.dead_at = appended;
                    self.gc_due = true;
                }
            }
            _ => {
                log::warn!("message store: release of {loc:?}, which is not live");
                return;
            }
        }
        if kill_ref && loc.segment != self.current {
            let refs = &mut self.cur().refs;
            if let Err(i) = refs.binary_search(&loc.segment) {
                refs.insert(i, loc.segment);
            }
        }
    }

    /// Deletes every segment that may go (see the module doc), in rounds: the
    /// directory is synced after each round, before the segments whose refs
    /// that round removed can go in the next one.
    pub(super) fn collect_garbage(&mut self, durable: u64) -> io::Result<()> {
        if self.pinned {
            return Ok(());
        }
        let durable = if self.scratch { u64::MAX } else { durable };
        if !self.gc_due && self.gc_wait > durable {
            return Ok(());
        }
        self.gc_due = false;
        self.gc_wait = u64::MAX;
        loop {
            let mut doomed = Vec::new();
            for (&n, s) in &self.segments {
                if n == self.current || s.live > 0 {
                    continue;
                }
                if s.dead_at > durable {
                    self.gc_wait = self.gc_wait.min(s.dead_at);
                } else if !s.refs.iter().any(|r| self.segments.contains_key(r)) {
                    doomed.push(n);
                }
            }
            if doomed.is_empty() {
                return Ok(());
            }
            for n in doomed {
                match std::fs::remove_file(segment_path(&self.dir, n)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        self.gc_due = true;
                        return Err(e);
                    }
                }
                self.segments.remove(&n);
            }
            if !self.no_fsync {
                self.shared.dir().sync_all()?;
            }
        }
    }
}
