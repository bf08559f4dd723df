//! Durability off the shard thread: a `Syncer` is a background thread that runs
//! `fdatasync` on the segment files a `SegmentLog` has written, so a shard never
//! blocks on the disk.
//!
//! The protocol, on the shard thread: append records, `SegmentLog::flush` (one
//! `write` per segment touched), then `Syncer::request(batch)` with a batch
//! number that only grows. The syncer thread syncs every file written up to the
//! flush, stores the batch number (`Syncer::synced`) and calls the wake callback
//! (typically the shard's `mio::Waker::wake`). The shard then releases the
//! publisher confirms of every batch up to `synced()`.
//!
//! Group commit: requests that arrive while a sync runs are answered together by
//! the next one, so the number of `fdatasync`s adapts to the disk's speed.
//!
//! An `fdatasync` that fails leaves the file in an unknown state: the kernel
//! may have dropped the dirty pages, and a later `fdatasync` of the same file
//! may succeed without writing them. So a failed round does not advance
//! `synced()`; it bumps `failures()` and wakes the shard, which must treat
//! every batch not yet confirmed as lost (nack it) and write on in a new
//! segment (`SegmentLog::quarantine`). Later rounds sync as usual.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A sync round this long is logged (a disk this slow holds every confirm).
const SLOW_SYNC: Duration = Duration::from_secs(1);

/// When the syncer runs `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncMode {
    /// After every requested batch (requests made during a sync coalesce into
    /// the next one).
    Always,
    /// At most one sync per interval: a request waits until the interval since
    /// the previous sync started has passed.
    Interval(Duration),
    /// Never sync: a batch counts as synced as soon as it is requested (and so
    /// flushed). For benchmarks only.
    Never,
}

/// State shared by a `SegmentLog` and its `Syncer`.
pub(crate) struct SyncShared {
    state: Mutex<SyncState>,
    cond: Condvar,
    /// Serialises sync rounds (`SegmentLog::sync` and the syncer thread).
    round: Mutex<()>,
    /// Log position (bytes appended since open) written to the files.
    flushed: AtomicU64,
    /// Log position known to be on disk.
    durable: AtomicU64,
    /// Highest batch number synced.
    synced: AtomicU64,
    /// Sync rounds that ran `fdatasync`.
    syncs: AtomicU64,
    /// Sync rounds that failed.
    failures: AtomicU64,
    /// The segment directory, synced after a segment file was created.
    dir: File,
    /// Its path (`store::fault`).
    path: std::path::PathBuf,
}

struct SyncState {
    requested: u64,
    stop: bool,
    /// The segment being written.
    current: Option<Arc<File>>,
    /// Segments rotated away from since the last sync round.
    rotated: Vec<Arc<File>>,
    /// A segment file was created since the last sync round.
    dir_dirty: bool,
    /// Other files written for this shard since the last round (streams'
    /// segments and indexes, their directories): synced by the next one.
    extra: Vec<Arc<File>>,
}

impl SyncShared {
    pub(crate) fn new(dir: File, path: &std::path::Path) -> Arc<SyncShared> {
        Arc::new(SyncShared {
            state: Mutex::new(SyncState {
                requested: 0,
                stop: false,
                current: None,
                rotated: Vec::new(),
                dir_dirty: false,
                extra: Vec::new(),
            }),
            cond: Condvar::new(),
            round: Mutex::new(()),
            flushed: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            dir,
            path: path.to_path_buf(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn dir(&self) -> &File {
        &self.dir
    }

    /// A new segment file was created: it becomes the one written, and the
    /// previous one still needs its final sync.
    pub(crate) fn new_file(&self, file: Arc<File>) {
        let mut s = self.lock();
        if let Some(old) = s.current.replace(file) {
            s.rotated.push(old);
        }
        s.dir_dirty = true;
    }

    /// `files` were written (outside the log) and are synced by the next
    /// round, with the log.
    pub(crate) fn also_sync(&self, files: &mut Vec<Arc<File>>) {
        if !files.is_empty() {
            self.lock().extra.append(files);
        }
    }

    /// Everything up to log position `pos` has been written to the files.
    pub(crate) fn set_flushed(&self, pos: u64) {
        self.flushed.store(pos, Ordering::Release);
    }

    /// Log position known to be on disk.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Makes everything flushed so far durable: `fdatasync` of the current
    /// segment and of those rotated away from since the last round, and of the
    /// directory if a segment was created. Skips the syscalls when nothing was
    /// flushed since the last round.
    pub(crate) fn sync_round(&self) -> io::Result<()> {
        let _round = self.round.lock().unwrap_or_else(|e| e.into_inner());
        // Read the position before looking at the files: every file written
        // before the position was stored was registered before it, too.
        let pos = self.flushed.load(Ordering::Acquire);
        let log_dirty = pos > self.durable.load(Ordering::Acquire);
        let (mut files, dir_dirty) = {
            let mut s = self.lock();
            let mut files = Vec::new();
            let mut dir_dirty = false;
            if log_dirty {
                files = std::mem::take(&mut s.rotated);
                files.extend(s.current.clone());
                dir_dirty = std::mem::take(&mut s.dir_dirty);
            }
            files.append(&mut s.extra);
            (files, dir_dirty)
        };
        if files.is_empty() && !dir_dirty {
            return Ok(());
        }
        let mut result = super::fault::check(&self.path, super::fault::Op::Sync);
        let started = Instant::now();
        for f in files.drain(..) {
            if result.is_err() {
                break;
            }
            if let Err(e) = f.sync_data() {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() && dir_dirty {
            result = self.dir.sync_all();
        }
        if let Err(e) = result {
            log::error!("message store: fdatasync failed: {e}; unconfirmed messages are nacked");
            self.failures.fetch_add(1, Ordering::AcqRel);
            return Err(e);
        }
        let took = started.elapsed();
        if took >= SLOW_SYNC {
            log::warn!(
                "message store {}: slow fdatasync: {} ms (confirms wait for it)",
                self.path.display(),
                took.as_millis()
            );
        }
        self.durable.fetch_max(pos, Ordering::AcqRel);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The background syncer of one shard's `SegmentLog` (see the module doc).
/// Dropping it finishes the requested syncs and stops the thread.
pub struct Syncer {
    shared: Arc<SyncShared>,
    mode: FsyncMode,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread (none for `FsyncMode::Never`).
    pub(crate) fn start(
        shared: Arc<SyncShared>,
        mode: FsyncMode,
        wake: Box<dyn Fn() + Send>,
    ) -> io::Result<Syncer> {
        let thread = match mode {
            FsyncMode::Never => None,
            _ => {
                let s = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("warren-syncer".into())
                        .spawn(move || run(&s, mode, wake))?,
                )
            }
        };
        Ok(Syncer {
            shared,
            mode,
            thread,
        })
    }

    pub fn mode(&self) -> FsyncMode {
        self.mode
    }

    /// Asks for every batch up to `token` to be made durable. Call it after
    /// `SegmentLog::flush`. Tokens must grow; a smaller one is ignored. With
    /// `FsyncMode::Never` the batch counts as synced at once (the wake callback
    /// is not called: the caller knows).
    pub fn request(&self, token: u64) {
        if self.mode == FsyncMode::Never {
            let flushed = self.shared.flushed.load(Ordering::Acquire);
            self.shared.durable.fetch_max(flushed, Ordering::AcqRel);
            self.shared.synced.fetch_max(token, Ordering::AcqRel);
            return;
        }
        let mut s = self.shared.lock();
        if token > s.requested {
            s.requested = token;
            self.shared.cond.notify_one();
        }
    }

    /// Highest batch number known durable.
    pub fn synced(&self) -> u64 {
        self.shared.synced.load(Ordering::Acquire)
    }

    /// Sync rounds that failed so far. Read it after `synced()`: a failure
    /// is counted before any later round's batch is published.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Acquire)
    }

    /// Number of sync rounds that ran `fdatasync` (statistics).
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cond.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &SyncShared, mode: FsyncMode, wake: Box<dyn Fn() + Send>) {
    let mut synced = 0;
    let mut last_round: Option<Instant> = None;
    loop {
        let target = {
            let mut s = shared.lock();
            loop {
                if s.requested > synced {
                    let due = match (mode, last_round) {
                        (FsyncMode::Interval(d), Some(t)) if !s.stop => Some(t + d),
                        _ => None,
                    };
                    match due {
                        Some(due) if Instant::now() < due => {
                            let wait = due.saturating_duration_since(Instant::now());
                            s = shared
                                .cond
                                .wait_timeout(s, wait)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        _ => break s.requested,
                    }
                } else if s.stop {
                    return;
                } else {
                    s = shared.cond.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            }
        };
        last_round = Some(Instant::now());
        if shared.sync_round().is_err() {
            // Counted in `failures`; the shard nacks what was held. The
            // requests up to `target` are answered (by the nacks): wait for
            // a newer one.
            synced = target;
            wake();
            continue;
        }
        synced = target;
        shared.synced.store(target, Ordering::Release);
        wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::Publish;
    use crate::store::segments::{test_dir, SegmentLog};
    use std::sync::mpsc;

    fn publish(log: &mut SegmentLog, seq: u64) {
        log.append_publish(&Publish {
            queue_id: 1,
            seq,
            exchange: b"",
            routing_key: b"q",
            properties: b"",
            body: b"0123456789abcdef",
            expires_at: 0,
        });
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn synced_advances_and_wakes() {
        let dir = test_dir("syncer_wakes");
        let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let (tx, rx) = mpsc::channel();
        let syncer = log
            .start_syncer(FsyncMode::Always, Box::new(move || tx.send(()).unwrap()))
            .unwrap();
        assert_eq!(syncer.synced(), 0);
        for batch in 1..=3 {
            publish(&mut log, batch);
            log.flush().unwrap();
            syncer.request(batch);
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
            wait_until("synced", || syncer.synced() >= batch);
        }
        assert_eq!(syncer.synced(), 3);
        assert!(syncer.syncs() >= 1 && syncer.syncs() <= 3);
        assert_eq!(syncer.failures(), 0);
        // A smaller token is ignored.
        syncer.request(2);
        assert_eq!(syncer.synced(), 3);
    }

    #[test]
    fn requests_coalesce() {
        let dir = test_dir("syncer_coalesce");
        let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        // The wake callback of the first round blocks until the test has made
        // its other requests, so they all wait for the same next round.
        let (woke_tx, woke_rx) = mpsc::channel::<u64>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let wakes = Arc::new(AtomicU64::new(0));
        let w = wakes.clone();
        let syncer = log
            .start_syncer(
                FsyncMode::Always,
                Box::new(move || {
                    let n = w.fetch_add(1, Ordering::SeqCst) + 1;
                    woke_tx.send(n).unwrap();
                    if n == 1 {
                        go_rx.recv().unwrap();
                    }
                }),
            )
            .unwrap();
        publish(&mut log, 1);
        log.flush().unwrap();
        syncer.request(1);
        assert_eq!(woke_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        assert_eq!(syncer.synced(), 1);
        for batch in 2..=100 {
            publish(&mut log, batch);
            log.flush().unwrap();
            syncer.request(batch);
        }
        go_tx.send(()).unwrap();
        assert_eq!(woke_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 2);
        assert_eq!(syncer.synced(), 100);
        assert_eq!(syncer.syncs(), 2, "99 requests, one fdatasync");
        drop(syncer);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn interval_mode_spaces_syncs() {
        let dir = test_dir("syncer_interval");
        let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let syncer = log
            .start_syncer(
                FsyncMode::Interval(Duration::from_millis(200)),
                Box::new(|| {}),
            )
            .unwrap();
        let t0 = Instant::now();
        for batch in 1..=20 {
            publish(&mut log, batch);
            log.flush().unwrap();
            syncer.request(batch);
            std::thread::sleep(Duration::from_millis(10));
        }
        wait_until("synced 20", || syncer.synced() == 20);
        let elapsed = t0.elapsed();
        // 20 requests over >= 200 ms: one round at the start, then at most one
        // per 200 ms.
        let max = 1 + (elapsed.as_millis() / 200) as u64;
        assert!(
            syncer.syncs() <= max,
            "{} syncs in {elapsed:?}",
            syncer.syncs()
        );
        assert!(syncer.syncs() < 20);
    }

    #[test]
    fn never_mode_is_synced_on_request() {
        let dir = test_dir("syncer_never");
        let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let syncer = log
            .start_syncer(FsyncMode::Never, Box::new(|| panic!("no wake")))
            .unwrap();
        publish(&mut log, 1);
        log.flush().unwrap();
        syncer.request(7);
        assert_eq!(syncer.synced(), 7);
        assert_eq!(syncer.syncs(), 0);
    }

    #[test]
    fn drop_finishes_requested_syncs() {
        let dir = test_dir("syncer_drop");
        let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let syncer = log
            .start_syncer(
                FsyncMode::Interval(Duration::from_secs(3600)),
                Box::new(|| {}),
            )
            .unwrap();
        publish(&mut log, 1);
        log.flush().unwrap();
        syncer.request(1);
        wait_until("first round", || syncer.synced() == 1);
        publish(&mut log, 2);
        log.flush().unwrap();
        syncer.request(2);
        // The next round is an hour away, but stopping does it now.
        let t0 = Instant::now();
        let shared = syncer.shared.clone();
        drop(syncer);
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_eq!(shared.synced.load(Ordering::Acquire), 2);
    }
}
