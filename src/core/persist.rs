//! The broker's side of the message store: one [`ShardStore`] per shard wraps
//! that shard's `store::SegmentLog` (files in `<data_dir>/msgs/shard-<id>/`) and
//! its background `Syncer`, and implements group commit.
//!
//! - A persistent message (delivery mode 2) routed to a durable queue is
//!   appended by the queue's shard (`ShardCtx::handle_queue_msg`, before
//!   `Queue::publish`) and the queue keeps its location; when it leaves the
//!   queue for good (ack, reject, no-ack delivery, purge, deletion) the queue
//!   hands it back (`Queue::take_gone`) and the shard appends its ack
//!   (`ShardCtx::after_queue_op`, `ShardCtx::delete_queue`).
//! - Its publisher confirm is *held* here with the number of the batch it is
//!   in (`hold_confirm`). At the end of each loop iteration `end_iteration`
//!   writes the batch (one write per segment) and asks the syncer to make it
//!   durable; the syncer runs `fdatasync` on its own thread and wakes the
//!   shard, and `release_confirms` sends every held confirm whose batch is
//!   durable. So one fsync covers every queue's writes of a shard since the
//!   last one, and confirms never precede the data reaching the disk.
//! - A failed write or `fdatasync` (disk full, quota, I/O error) puts the
//!   store in a *fault* (`fault`): every held confirm that the failure may
//!   have cost is sent as a nack at once (`ShardMsg::Confirm` with `ok:
//!   false`), never an ack and never nothing, and the shard raises the disk
//!   alarm (`ShardCtx::end_store_iteration`), so publishers are blocked
//!   while consumers drain. Unwritten records stay buffered and are written
//!   again, at the same offsets, by the next flush (each iteration that
//!   appends, and each tick). After a failed `fdatasync` the log also moves
//!   to a new segment (`SegmentLog::quarantine`). The fault ends when a
//!   flush succeeds and a probe (`PROBE_BYTES` allocated, written and synced
//!   in the store's directory) shows the disk takes writes again.
//! - At boot (`ShardCtx::recover_messages`) the log is replayed and every
//!   durable queue of the shard gets its live messages back, marked
//!   redelivered (they may have been delivered before the restart).

use super::ids::QueueRef;
use super::latency;
use super::queue::Queue;
use super::shard_msg::{ConfirmTag, ShardMsg};
use crate::store::segments::{
    Location, Options, Recovered, SegmentLog, DEFAULT_LOAD_MAX, DEFAULT_SEGMENT_SIZE,
};
use crate::store::syncer::{FsyncMode, Syncer};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::store::record::Publish;

/// A shard's message store.
pub struct ShardStore {
    pub log: SegmentLog,
    syncer: Syncer,
    /// Number of the batch being appended to (flushed and synced as one).
    batch: u64,
    /// Something was appended since the last flush.
    dirty: bool,
    /// Confirms waiting for their batch to be durable, oldest first.
    held: VecDeque<Held>,
    /// Confirms released since the shard last looked (`take_released`):
    /// the queue and how long the confirm was held (µs, coarse clock), for
    /// the queue's publish → confirm histogram.
    released: Vec<(QueueRef, u64)>,
    /// Highest batch handed to the syncer.
    requested: u64,
    /// Syncer failures already handled (`Syncer::failures`).
    sync_failures: u64,
    /// Writes are failing (see the module doc).
    fault: Option<Fault>,
    /// Confirms sent as nacks because of a storage failure (statistics).
    pub nacked: u64,
    /// Segments compaction could not empty (some live messages were paged
    /// out), with when to try again.
    compact_retry: HashMap<u64, Instant>,
    /// Replicated quorum queues led here: the seq up to which every
    /// in-sync follower holds their messages (`core::quorum`).
    replicated: HashMap<QueueRef, u64>,
    /// A follower's replicas: (batch, store id, seq, generation) to report
    /// as synced once the batch is durable, oldest first.
    held_syncs: VecDeque<(u64, u64, u64, u32)>,
}

/// A storage failure not yet over.
struct Fault {
    /// The last error, for the alarm and the log.
    error: String,
    /// When to probe the disk next.
    next_probe: Instant,
    /// Failed writes and syncs since the fault began (one log line each
    /// would flood the log: a summary is logged when it ends).
    failures: u64,
}

/// Bytes a probe allocates, writes and syncs before a fault is declared
/// over: room for more than a trickle of records.
const PROBE_BYTES: usize = 1 << 20;
/// Probes run at most this often.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A publisher confirm waiting for its batch's fsync.
struct Held {
    batch: u64,
    tag: ConfirmTag,
    queue: QueueRef,
    /// A replicated queue's message: its seq, which the followers must hold
    /// too (0: not replicated).
    replica_seq: u64,
    /// `latency::clock()` when it was held.
    at: u64,
}

/// Compaction rewrites a segment once fewer than this fraction of the
/// messages written to it are live.
const COMPACT_BELOW: f64 = 0.3;
/// A segment compaction could not empty is tried again after this.
const COMPACT_RETRY: Duration = Duration::from_secs(30);

/// The directory of shard `id`'s message store.
pub fn shard_dir(data_dir: &Path, id: u16) -> PathBuf {
    data_dir.join("msgs").join(format!("shard-{id}"))
}

/// The directory of shard `id`'s queue page files (scratch, wiped at boot).
pub fn paging_dir(data_dir: &Path, id: u16) -> PathBuf {
    data_dir.join("paging").join(format!("shard-{id}"))
}

impl ShardStore {
    /// Opens (and replays) the store of shard `id`; `wake` is called by the
    /// syncer thread after each sync (the shard's waker).
    /// Only the first `load_first` messages of each queue are read back at
    /// once (the rest: `ShardCtx::recover_messages`, in batches).
    pub fn open(
        data_dir: &Path,
        id: u16,
        segment_size: u64,
        load_first: usize,
        mode: FsyncMode,
        wake: Box<dyn Fn() + Send>,
    ) -> io::Result<(ShardStore, Recovered)> {
        let size = if segment_size == 0 {
            DEFAULT_SEGMENT_SIZE
        } else {
            segment_size
        };
        let opts = Options {
            segment_size: size,
            load_max: DEFAULT_LOAD_MAX,
            load_first,
        };
        let (mut log, recovered) = SegmentLog::open_with(&shard_dir(data_dir, id), opts)?;
        let syncer = log.start_syncer(mode, wake)?;
        Ok((
            ShardStore {
                log,
                syncer,
                batch: 1,
                dirty: false,
                held: VecDeque::new(),
                released: Vec::new(),
                requested: 0,
                sync_failures: 0,
                fault: None,
                nacked: 0,
                compact_retry: HashMap::new(),
                replicated: HashMap::new(),
                held_syncs: VecDeque::new(),
            },
            recovered,
        ))
    }

    /// Appends a persistent message.
    #[inline]
    pub fn append(&mut self, p: &Publish<'_>) -> Location {
        self.dirty = true;
        self.log.append_publish(p)
    }

    /// `files` were written outside the log (streams, `core::stream`): the
    /// batch being appended is durable only once they are synced too.
    pub fn also_sync(&mut self, files: &mut Vec<std::sync::Arc<std::fs::File>>) {
        if !files.is_empty() {
            self.dirty = true;
            self.log.also_sync(files);
        }
    }

    /// A write outside the log failed (a stream's chunk): the current
    /// batch's confirms are nacked, as for a failed log write.
    pub fn external_write_failed(&mut self, error: &str, out: &mut super::outbox::Outbox) {
        self.failed(error);
        self.nack_after(self.requested, out);
        self.batch += 1;
    }

    /// The message at `loc` is gone for good (acked, rejected, dropped).
    #[inline]
    pub fn ack(&mut self, queue_id: u64, seq: u64, loc: Location) {
        self.dirty = true;
        self.log.append_ack(queue_id, seq, loc);
    }

    /// Every message of a queue up to `up_to_seq` is gone (purge, deletion).
    pub fn queue_gone(
        &mut self,
        queue_id: u64,
        up_to_seq: u64,
        locations: impl IntoIterator<Item = Location>,
    ) {
        self.dirty = true;
        self.log.append_queue_gone(queue_id, up_to_seq, locations);
    }

    /// Holds a publisher confirm for a message of `queue` until the current
    /// batch is durable.
    pub fn hold_confirm(&mut self, tag: ConfirmTag, queue: QueueRef) {
        self.hold_replicated_confirm(tag, queue, 0);
    }

    /// Holds a confirm of a replicated queue's message `seq` until the
    /// batch is durable and every in-sync follower holds it
    /// (`set_replicated`).
    pub fn hold_replicated_confirm(&mut self, tag: ConfirmTag, queue: QueueRef, seq: u64) {
        self.held.push_back(Held {
            batch: self.batch,
            tag,
            queue,
            replica_seq: seq,
            at: latency::clock(),
        });
    }

    /// The followers of replicated queue `queue` hold its messages up to
    /// `seq` (the cluster link's watermark).
    pub fn set_replicated(&mut self, queue: QueueRef, seq: u64) {
        let r = self.replicated.entry(queue).or_insert(0);
        *r = (*r).max(seq);
    }

    /// A replicated queue led here is gone (or another node leads it
    /// now): its held confirms are nacked (nothing says the new leader
    /// has those messages) and its watermark forgotten.
    pub fn forget_replicated(&mut self, queue: QueueRef, out: &mut super::outbox::Outbox) {
        self.replicated.remove(&queue);
        let before = self.held.len();
        self.held.retain(|h| {
            if h.queue != queue || h.replica_seq == 0 {
                return true;
            }
            out.push(
                h.tag.channel.shard,
                ShardMsg::Confirm {
                    tag: h.tag,
                    ok: false,
                    count: 1,
                },
            );
            false
        });
        self.nacked += (before - self.held.len()) as u64;
    }

    /// Message (`queue_id`, `seq`) at `old` is replaced by `p` (same queue
    /// id and seq): no ack is written (`SegmentLog::supersede`).
    pub fn replace(&mut self, old: Location, p: &Publish<'_>) -> Location {
        let loc = self.append(p);
        self.log.supersede(old);
        loc
    }

    /// The acks gathered so far go into the log before anything appended
    /// next: a seq acked now may be published again (a replica's copy).
    pub fn seal_acks(&mut self) {
        self.dirty = true;
        self.log.seal_pending_acks();
    }

    /// The current batch must be synced even if nothing was appended to
    /// it (a replica's report of messages it already held waits for it).
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// A follower appended message `seq` of replica `store_id`: report it
    /// to the leader once the current batch is durable.
    pub fn hold_sync(&mut self, store_id: u64, seq: u64, gen: u32) {
        match self.held_syncs.back_mut() {
            Some(last) if last.0 == self.batch && last.1 == store_id && last.3 == gen => {
                last.2 = last.2.max(seq)
            }
            _ => self.held_syncs.push_back((self.batch, store_id, seq, gen)),
        }
    }

    /// Nothing appended unwritten and no confirm waiting for an fsync.
    pub fn is_idle(&self) -> bool {
        !self.dirty && self.held.is_empty() && self.held_syncs.is_empty()
    }

    /// The confirms released since the last call, with their hold times.
    pub fn take_released(&mut self, into: &mut Vec<(QueueRef, u64)>) {
        into.append(&mut self.released);
    }

    /// End of a loop iteration: writes what was appended and asks for it to
    /// be synced (group commit); then releases the confirms already durable,
    /// and nacks those a failure cost.
    pub fn end_iteration(&mut self, out: &mut super::outbox::Outbox) {
        if self.dirty {
            self.dirty = false;
            match self.log.flush() {
                Ok(()) => {
                    self.syncer.request(self.batch);
                    self.requested = self.batch;
                    self.batch += 1;
                }
                Err(e) => {
                    // This batch's confirms will not be acked: its records
                    // are not on disk. They stay buffered and are written
                    // again later (and are then durable, but a nacked
                    // publisher must not count on it).
                    self.failed(&format!("write failed: {e}"));
                    self.nack_after(self.requested, out);
                    self.batch += 1;
                }
            }
        }
        self.release_confirms(out);
    }

    /// Timer tick: retries the writes of a fault and probes whether it is
    /// over; a flush also deletes segments that became dead and whose
    /// dependencies are durable (the store defers deletions to a flush).
    pub fn tick(&mut self, now: Instant) {
        match self.log.flush() {
            Err(e) => self.failed(&format!("write failed: {e}")),
            Ok(()) => {
                let due = self.fault.as_ref().is_some_and(|f| now >= f.next_probe);
                if due {
                    self.probe(now);
                }
            }
        }
    }

    /// The storage failure going on, if any: its last error.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_ref().map(|f| f.error.as_str())
    }

    fn failed(&mut self, e: &str) {
        match &mut self.fault {
            Some(f) => {
                f.failures += 1;
                f.error = e.to_string();
            }
            None => {
                log::error!(
                    "message store {}: {e}; unconfirmed messages are nacked and writes retried",
                    self.log.dir().display()
                );
                self.fault = Some(Fault {
                    error: e.to_string(),
                    next_probe: Instant::now() + PROBE_EVERY,
                    failures: 1,
                });
            }
        }
    }

    /// Is the disk taking writes again? Allocates, writes and syncs
    /// `PROBE_BYTES` in a scratch file next to the segments.
    fn probe(&mut self, now: Instant) {
        let path = self.log.dir().join("probe.tmp");
        let res = crate::store::fault::check(self.log.dir(), crate::store::fault::Op::Write)
            .and_then(|_| std::fs::File::create(&path))
            .and_then(|f| {
                use std::io::Write;
                let mut f = f;
                f.write_all(&vec![0u8; PROBE_BYTES])?;
                f.sync_data()
            });
        let _ = std::fs::remove_file(&path);
        match res {
            Ok(()) => {
                if let Some(f) = self.fault.take() {
                    log::warn!(
                        "message store {}: writes succeed again after {} failed write(s) or \
                         sync(s); {} confirm(s) were nacked",
                        self.log.dir().display(),
                        f.failures,
                        self.nacked
                    );
                }
            }
            Err(e) => {
                if let Some(f) = &mut self.fault {
                    f.error = e.to_string();
                    f.next_probe = now + PROBE_EVERY;
                }
            }
        }
    }

    /// Sends every held confirm of a batch after `batch` as a nack (batches
    /// up to it were written and handed to the syncer: their fate is the
    /// sync's).
    fn nack_after(&mut self, batch: u64, out: &mut super::outbox::Outbox) {
        let from = self.held.partition_point(|h| h.batch <= batch);
        for h in self.held.drain(from..) {
            self.nacked += 1;
            out.push(
                h.tag.channel.shard,
                ShardMsg::Confirm {
                    tag: h.tag,
                    ok: false,
                    count: 1,
                },
            );
        }
    }

    /// Compaction, one segment per call (from the shard's tick): the live
    /// messages of a mostly dead segment are re-appended and their queues
    /// updated to the new locations; the old file goes once the copies are
    /// durable (`SegmentLog`). Only messages a queue holds in memory move — a
    /// paged-out message's page-file copy names its old location — so a
    /// segment with paged messages is retried later. Returns messages moved.
    pub fn compact(&mut self, queues: &mut Slab<Queue>, now: Instant) -> usize {
        self.compact_retry.retain(|_, at| *at > now);
        let Some(segment) = self
            .log
            .compact_candidates(COMPACT_BELOW)
            .into_iter()
            .find(|n| !self.compact_retry.contains_key(n))
        else {
            return 0;
        };
        let publishes = match self.log.publishes_in(segment) {
            Ok(p) => p,
            Err(e) => {
                log::error!("message store: cannot compact segment {segment}: {e}");
                self.compact_retry.insert(segment, now + COMPACT_RETRY);
                return 0;
            }
        };
        let by_id: HashMap<u64, usize> = queues
            .iter()
            .filter(|(_, q)| q.props.store_id != 0)
            .map(|(slot, q)| (q.props.store_id, slot))
            .collect();
        let mut moved = 0;
        for (queue_id, seq, loc) in publishes {
            let Some(q) = by_id.get(&queue_id).and_then(|&slot| queues.get_mut(slot)) else {
                continue;
            };
            // Only the copy the queue holds is live (not an acked or a
            // superseded one).
            let Some(held) = q.stored_loc_mut(seq).filter(|l| **l == loc) else {
                continue;
            };
            match self.log.relocate(loc) {
                Ok(new) => {
                    *held = new;
                    moved += 1;
                }
                Err(e) => {
                    log::error!("message store: cannot relocate a message: {e}");
                    break;
                }
            }
        }
        if moved > 0 {
            self.dirty = true;
        }
        let left = self
            .log
            .segments()
            .iter()
            .find(|s| s.number == segment)
            .map_or(0, |s| s.live);
        if left > 0 {
            self.compact_retry.insert(segment, now + COMPACT_RETRY);
        }
        log::debug!("message store: compacted segment {segment}: {moved} moved, {left} left");
        moved
    }

    /// Sends the held confirms whose batch is durable.
    pub fn release_confirms(&mut self, out: &mut super::outbox::Outbox) {
        let synced = self.syncer.synced();
        // After `synced`: a failure is counted before a later round's batch.
        let failures = self.syncer.failures();
        if failures != self.sync_failures {
            // A failed fdatasync: nothing held can be trusted to be on disk,
            // whatever later rounds say (see `SegmentLog::quarantine`).
            self.sync_failures = failures;
            self.failed("fdatasync failed");
            self.nack_after(0, out);
            self.log.quarantine();
            if let Some(f) = &mut self.fault {
                f.next_probe = Instant::now();
            }
            return;
        }
        while let Some(&(batch, store_id, seq, gen)) = self.held_syncs.front() {
            if batch > synced {
                break;
            }
            self.held_syncs.pop_front();
            out.push(
                crate::core::definitions::REMOTE_SHARD,
                ShardMsg::ReplicaSynced { store_id, seq, gen },
            );
        }
        if self.held.is_empty() {
            return;
        }
        let now = latency::clock();
        while let Some(h) = self.held.front() {
            if h.batch > synced {
                break;
            }
            if h.replica_seq != 0
                && self.replicated.get(&h.queue).copied().unwrap_or(0) < h.replica_seq
            {
                break;
            }
            let h = self.held.pop_front().expect("front exists");
            self.released.push((h.queue, now.saturating_sub(h.at)));
            out.push(
                h.tag.channel.shard,
                ShardMsg::Confirm {
                    tag: h.tag,
                    ok: true,
                    count: 1,
                },
            );
        }
    }
}

/// `--fsync` values: `always` (a sync per batch), `interval:<ms>` (at most one
/// per interval), `never` (benchmarks only: confirms once written).
pub fn parse_fsync_mode(s: &str) -> Result<FsyncMode, String> {
    match s {
        "always" => Ok(FsyncMode::Always),
        "never" => Ok(FsyncMode::Never),
        _ => match s.strip_prefix("interval:") {
            Some(ms) => ms
                .parse::<u64>()
                .map(|ms| FsyncMode::Interval(std::time::Duration::from_millis(ms)))
                .map_err(|_| format!("bad fsync interval {s:?}")),
            None => Err(format!(
                "unknown fsync mode {s:?} (always, interval:<ms>, never)"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_modes() {
        assert_eq!(parse_fsync_mode("always"), Ok(FsyncMode::Always));
        assert_eq!(parse_fsync_mode("never"), Ok(FsyncMode::Never));
        assert_eq!(
            parse_fsync_mode("interval:5"),
            Ok(FsyncMode::Interval(std::time::Duration::from_millis(5)))
        );
        assert!(parse_fsync_mode("sometimes").is_err());
        assert!(parse_fsync_mode("interval:x").is_err());
    }
}
