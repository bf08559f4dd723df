//! The per-shard message store: an append-only log of records split into
//! numbered segment files, `<16 hex digits>.seg`, in one directory per shard.
//! The record and file formats are documented in `record`.
//!
//! Writing. `append_publish`, `append_ack` and `append_queue_gone` only encode
//! into an in-memory buffer (no syscall, and no allocation once the buffers are
//! warm); acks are gathered per queue into compact `Acks` records. `flush` writes
//! the buffer with one `pwrite` per segment touched. When the current segment has
//! reached `segment_size`, the next record starts a new segment (a record never
//! spans two). `sync` makes everything flushed durable on the calling thread; a
//! `Syncer` (`start_syncer`) does it on a background thread instead.
//!
//! Recovery. `open` replays every segment (see `recover`) and returns, per queue,
//! the live messages in seq order with their location and, for messages up to
//! `Options::load_max` bytes, their contents. New records always go to a new
//! segment: files from before are never appended to.
//!
//! Liveness. Every segment counts its live messages: +1 per publish, −1 when the
//! message dies (`append_ack`, `append_queue_gone`, `relocate`, or `release` for
//! stores that are never recovered). A segment that is not the current one and
//! holds no live message is deleted at the next `flush`/`sync`, once
//! - the records that superseded its messages are durable (a relocated copy must
//!   be on disk before the original goes), and
//! - every segment holding a message that one of *its* records killed is gone:
//!   deleting an ack while the acked publish is still on disk would bring the
//!   message back at the next recovery. (After each round of deletions the
//!   directory is synced before the segments that depended on them go.)
//!
//! So deletions wait for a sync (`sync`, or a `Syncer` round) and happen in a
//! later `flush`: call `flush` from a periodic tick as well.
//!
//! Usage from a shard (the log belongs to one thread; only the `Syncer` is
//! shared): per loop iteration, `append_*` while handling messages, then
//! `flush()` and `syncer.request(batch)`; confirm the publishes of every batch
//! up to `syncer.synced()`. Keep the `Location` of each persistent message: it
//! is needed to ack it (`append_ack`), to drop it with its queue
//! (`append_queue_gone`), to read it back (`read`) and to compact. Dropping the
//! log flushes what is buffered, without syncing it.
//!
//! Compaction is re-appending. A segment with few live messages
//! (`compact_candidates`) holds its whole file on disk. The caller lists its
//! publishes (`publishes_in`), and for each one that is still live in its queue
//! (same queue, seq and location) calls `relocate`, which copies the record to
//! the current segment and returns the new location. Once its last live message
//! has moved, the old segment is deleted like any other. If the broker crashes
//! between the copy and the deletion, recovery finds two copies of the same
//! (queue_id, seq) and keeps the later one. Only live messages may be relocated:
//! a copy of an acked message appended after its ack would be live again.

use super::location::segment_path;
pub use super::location::Location;
use super::record::{
    self, encode_acks, encode_publish, encode_queue_gone, encode_segment_header, Publish,
    StoredMessage, SEGMENT_HEADER_LEN,
};
pub use super::recover::RecoveredMessage;
use super::recover::{self, ScannedSegment};
use super::syncer::{FsyncMode, SyncShared, Syncer};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A sensible segment size: large enough that rotations are rare, small enough
/// that a few long-lived messages do not hold much disk.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Largest segment size: offsets in a `Location` are u32.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 31;
/// Live messages up to this frame size are loaded at recovery by default.
pub const DEFAULT_LOAD_MAX: u32 = 64 << 10;

/// Acks of at most this many queues are gathered at once.
const MAX_ACK_BATCHES: usize = 8;
/// An ack batch is encoded once it holds this many seqs.
const MAX_ACK_BATCH: usize = 4096;

#[derive(Clone, Debug)]
pub struct Options {
    /// A segment is closed once it reaches this size (≤ `MAX_SEGMENT_SIZE`).
    pub segment_size: u64,
    /// At recovery, load the contents of live messages whose frame is at most
    /// this many bytes; larger ones are left for `SegmentLog::read`.
    pub load_max: u32,
    /// …and only the first this many of each queue (the rest: `load`).
    pub load_first: usize,
}

/// What `SegmentLog::open` found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Per queue_id, the live messages in seq order.
    pub queues: HashMap<u64, Vec<RecoveredMessage>>,
    /// Segment files replayed.
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    /// Files cut at a bad record: path and the length kept.
    pub truncated: Vec<(PathBuf, u64)>,
    /// Files that were not segments, renamed to `*.bad`.
    pub bad_files: Vec<PathBuf>,
    /// Segments deleted right away because nothing in them was live.
    pub deleted_segments: usize,
    pub elapsed: Duration,
}

impl Recovered {
    pub fn message_count(&self) -> usize {
        self.queues.values().map(Vec::len).sum()
    }
}

/// One segment, as reported by `SegmentLog::segments`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub number: u64,
    /// Bytes, buffered ones included.
    pub len: u64,
    pub live: u64,
    /// Publish records ever written to it.
    pub total: u64,
}

struct Segment {
    /// Opened on first write (new segments) or first read (recovered ones).
    file: Option<Arc<File>>,
    len: u64,
    live: u64,
    total: u64,
    /// Segments holding messages killed by records of this one; sorted.
    refs: Vec<u64>,
    /// Log position at which `live` last dropped to 0.
    dead_at: u64,
}

impl Segment {
    fn new(len: u64) -> Segment {
        Segment {
            file: None,
            len,
            live: 0,
            total: 0,
            refs: Vec::new(),
            dead_at: 0,
        }
    }
}

/// Bytes of one segment not yet written: they go at `file_offset`.
struct Pending {
    segment: u64,
    file_offset: u64,
    buf: Vec<u8>,
}

struct AckBatch {
    queue_id: u64,
    seqs: Vec<u64>,
}

/// See the module doc.
pub struct SegmentLog {
    dir: PathBuf,
    opts: Options,
    segments: BTreeMap<u64, Segment>,
    current: u64,
    /// Unwritten bytes, oldest segment first; the last one is the current
    /// segment's, and there is always one.
    pending: Vec<Pending>,
    spare_bufs: Vec<Vec<u8>>,
    acks: Vec<AckBatch>,
    spare_seqs: Vec<Vec<u64>>,
    /// Log position: bytes appended since open.
    appended: u64,
    shared: Arc<SyncShared>,
    /// A segment may have become deletable.
    gc_due: bool,
    /// Lowest `dead_at` of a dead segment waiting for durability.
    gc_wait: u64,
    /// `FsyncMode::Never`: skip the directory syncs too.
    no_fsync: bool,
    /// Never recovered (`open_scratch`): dead segments go without waiting
    /// for durability.
    scratch: bool,
    /// An `fdatasync` failed (`quarantine`): no segment is deleted or
    /// compacted until the next start.
    pinned: bool,
}

impl SegmentLog {
    /// Opens (creating it if needed) the store in `dir` and recovers it.
    pub fn open(dir: &Path, segment_size: u64) -> io::Result<(SegmentLog, Recovered)> {
        SegmentLog::open_with(
            dir,
            Options {
                segment_size,
                load_max: DEFAULT_LOAD_MAX,
                load_first: usize::MAX,
            },
        )
    }

    pub fn open_with(dir: &Path, opts: Options) -> io::Result<(SegmentLog, Recovered)> {
        if opts.segment_size > MAX_SEGMENT_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "segment size {} above {MAX_SEGMENT_SIZE}",
                    opts.segment_size
                ),
            ));
        }
        let t0 = Instant::now();
        std::fs::create_dir_all(dir)?;
        let dir_file = File::open(dir)?;
        let scan = recover::scan(dir, opts.load_max, opts.load_first)?;
        let mut recovered = Recovered {
            segments: scan.segments.len(),
            records: scan.records,
            bytes: scan.bytes,
            truncated: scan.truncated,
            bad_files: scan.bad_files,
            queues: scan.queues.into_iter().collect(),
            ..Recovered::default()
        };
        let mut segments = BTreeMap::new();
        let mut any_dead = false;
        for (n, s) in scan.segments {
            let ScannedSegment {
                len,
                total,
                live,
                refs,
            } = s;
            any_dead |= live == 0;
            segments.insert(
                n,
                Segment {
                    file: None,
                    len,
                    live,
                    total,
                    refs,
                    dead_at: 0,
                },
            );
        }
        let current = scan.max_number.checked_add(1).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "segment numbers exhausted")
        })?;
        segments.insert(current, Segment::new(SEGMENT_HEADER_LEN as u64));
        let mut buf = Vec::new();
        encode_segment_header(&mut buf, current);
        let mut log = SegmentLog {
            dir: dir.to_path_buf(),
            opts,
            segments,
            current,
            pending: vec![Pending {
                segment: current,
                file_offset: 0,
                buf,
            }],
            spare_bufs: Vec::new(),
            acks: Vec::new(),
            spare_seqs: Vec::new(),
            appended: SEGMENT_HEADER_LEN as u64,
            shared: SyncShared::new(dir_file, dir),
            gc_due: false,
            gc_wait: u64::MAX,
            no_fsync: false,
            scratch: false,
            pinned: false,
        };
        if any_dead {
            // A dead segment may have been superseded by copies in files that
            // are still only in the page cache (the previous run did not sync
            // them): make them durable before deleting anything.
            let fd = log.shared.dir().as_raw_fd();
            // SAFETY: syncfs takes a file descriptor we own for the call.
            if unsafe { libc::syncfs(fd) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let before = log.segments.len();
            log.gc_due = true;
            log.collect_garbage(0)?;
            recovered.deleted_segments = before - log.segments.len();
        }
        recovered.elapsed = t0.elapsed();
        log::info!(
            "message store {}: recovered {} messages in {} queues from {} segments ({} records, \
             {} bytes) in {:?}",
            log.dir.display(),
            recovered.message_count(),
            recovered.queues.len(),
            recovered.segments,
            recovered.records,
            recovered.bytes,
            recovered.elapsed
        );
        Ok((log, recovered))
    }

    /// Opens a store whose contents never outlive the process (paged-out
    /// transient messages): existing segments in `dir` are deleted, nothing is
    /// ever synced, and a segment is deleted as soon as it holds no live
    /// message. Messages die by `release` (or `append_ack`).
    pub fn open_scratch(dir: &Path, segment_size: u64) -> io::Result<SegmentLog> {
        std::fs::create_dir_all(dir)?;
        for n in recover::list_segments(dir)? {
            std::fs::remove_file(segment_path(dir, n))?;
        }
        let (mut log, _) = SegmentLog::open(dir, segment_size)?;
        log.scratch = true;
        log.no_fsync = true;
        Ok(log)
    }

    /// Starts the background syncer of this log (see `syncer`). `wake` is called
    /// on the syncer thread after each sync.
    pub fn start_syncer(
        &mut self,
        mode: FsyncMode,
        wake: Box<dyn Fn() + Send>,
    ) -> io::Result<Syncer> {
        self.no_fsync = mode == FsyncMode::Never;
        Syncer::start(self.shared.clone(), mode, wake)
    }

    /// `files`, written outside the log (streams), are synced by the next
    /// round of this log's syncer (`Syncer::request`).
    pub fn also_sync(&self, files: &mut Vec<std::sync::Arc<File>>) {
        self.shared.also_sync(files);
    }

    /// Appends a publish; returns where it is (valid at once: `read` serves
    /// unflushed records from the buffer).
    pub fn append_publish(&mut self, p: &Publish<'_>) -> Location {
        self.make_room();
        let n = encode_publish(self.buf(), p);
        self.appended_new(n, 1)
    }

    /// Message `old` was replaced by a publish of the same (queue id, seq)
    /// appended since: it is dead, with no ack record (recovery keeps the
    /// later publish of a seq; an ack would kill both).
    pub fn supersede(&mut self, old: Location) {
        self.kill(old, true);
    }

    /// Writes the acks gathered so far into the log now, ahead of whatever
    /// is appended next (a publish reusing an acked seq must come after
    /// its ack).
    pub fn seal_pending_acks(&mut self) {
        self.seal_acks();
    }

    /// Appends the ack of message (`queue_id`, `seq`) stored at `loc`: the
    /// message is dead. Acks are gathered per queue and encoded at the latest by
    /// the next `flush`.
    pub fn append_ack(&mut self, queue_id: u64, seq: u64, loc: Location) {
        self.kill(loc, true);
        let i = match self.acks.iter().position(|b| b.queue_id == queue_id) {
            Some(i) => i,
            None => {
                if self.acks.len() >= MAX_ACK_BATCHES {
                    self.seal_ack_batch(0);
                }
                let seqs = self.spare_seqs.pop().unwrap_or_default();
                self.acks.push(AckBatch { queue_id, seqs });
                self.acks.len() - 1
            }
        };
        self.acks[i].seqs.push(seq);
        if self.acks[i].seqs.len() >= MAX_ACK_BATCH {
            self.seal_ack_batch(i);
        }
    }

    /// Appends a `QueueGone`: every message of the queue with seq ≤ `up_to_seq`
    /// is dead (`record::ALL_SEQS` for a deleted queue, the highest seq purged
    /// for a purge). `locations` are the locations of those messages.
    pub fn append_queue_gone(
        &mut self,
        queue_id: u64,
        up_to_seq: u64,
        locations: impl IntoIterator<Item = Location>,
    ) {
        self.make_room();
        let n = encode_queue_gone(self.buf(), queue_id, up_to_seq);
        self.appended_new(n, 0);
        for loc in locations {
            self.kill(loc, true);
        }
    }

    /// Forgets a message without writing anything: only for stores that are
    /// never recovered (a scratch store for paged-out transient messages). In a
    /// recovered store the message would come back.
    pub fn release(&mut self, loc: Location) {
        self.kill(loc, false);
    }

    /// Copies a live message to the current segment (compaction; see the module
    /// doc) and returns its new location. The old copy no longer counts.
    pub fn relocate(&mut self, loc: Location) -> io::Result<Location> {
        let frame = self.read_frame(loc)?;
        StoredMessage::from_frame(frame.clone())?;
        self.make_room();
        let offset = self.cur().len;
        self.buf().extend_from_slice(&frame);
        let new = self.appended_new(frame.len() as u32, 1);
        debug_assert_eq!(new.offset as u64, offset);
        self.kill(loc, true);
        Ok(new)
    }

    /// Loads the contents of the recovered messages in `msgs` that are not
    /// loaded yet: one read per segment span (see `recover::read_frames`), so
    /// a recovery can be read back in batches instead of all at once.
    pub fn load(&mut self, msgs: &mut [RecoveredMessage]) -> io::Result<()> {
        self.flush()?;
        let mut wanted: Vec<(Location, usize)> = msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| m.message.is_none())
            .map(|(i, m)| (m.location, i))
            .collect();
        wanted.sort_unstable_by_key(|w| w.0);
        let mut locs = Vec::new();
        for group in wanted.chunk_by(|a, b| a.0.segment == b.0.segment) {
            locs.clear();
            locs.extend(group.iter().map(|w| w.0));
            let file = self.file_for_read(group[0].0.segment)?;
            for (w, frame) in group.iter().zip(recover::read_frames(&file, &locs)?) {
                msgs[w.1].message = Some(Box::new(StoredMessage::from_frame(frame)?));
            }
        }
        Ok(())
    }

    /// Reads a publish back.
    pub fn read(&mut self, loc: Location) -> io::Result<StoredMessage> {
        Ok(StoredMessage::from_frame(self.read_frame(loc)?)?)
    }

    /// Every publish record of `segment`: (queue_id, seq, location). For
    /// compaction; includes dead and superseded ones.
    pub fn publishes_in(&mut self, segment: u64) -> io::Result<Vec<(u64, u64, Location)>> {
        if self
            .pending
            .iter()
            .any(|p| p.segment == segment && !p.buf.is_empty())
        {
            self.flush()?;
        }
        let len = self.segments.get(&segment).map_or(0, |s| s.len) as usize;
        let file = self.file_for_read(segment)?;
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, 0)?;
        let mut out = Vec::new();
        let mut pos = SEGMENT_HEADER_LEN;
        while pos < bytes.len() {
            let (r, n) = record::decode_frame(&bytes[pos..])?;
            if let record::Record::Publish(p) = r {
                let loc = Location {
                    segment,
                    offset: pos as u32,
                    len: n as u32,
                };
                out.push((p.queue_id, p.seq, loc));
            }
            pos += n;
        }
        Ok(out)
    }

    /// Writes everything appended so far (one `pwrite` per segment touched),
    /// then deletes the segments that became deletable. Cheap when there is
    /// nothing to do: call it from a periodic tick too, so that deletions
    /// happen while idle.
    pub fn flush(&mut self) -> io::Result<()> {
        self.seal_acks();
        for i in 0..self.pending.len() {
            let p = &self.pending[i];
            // A segment with nothing but its header is not created yet.
            if p.buf.is_empty() || (p.file_offset == 0 && p.buf.len() == SEGMENT_HEADER_LEN) {
                continue;
            }
            let segment = self.pending[i].segment;
            super::fault::check(&self.dir, super::fault::Op::Write)?;
            let file = self.file_for_write(segment)?;
            let p = &mut self.pending[i];
            // On error nothing is cleared: the retry writes the same bytes at
            // the same offset.
            file.write_all_at(&p.buf, p.file_offset)?;
            p.file_offset += p.buf.len() as u64;
            p.buf.clear();
        }
        if self.pending.len() > 1 {
            let keep = self.pending.len() - 1;
            for p in self.pending.drain(..keep) {
                self.spare_bufs.push(p.buf);
            }
        }
        self.shared.set_flushed(self.appended);
        self.collect_garbage(self.shared.durable())
    }

    /// `flush`, then `fdatasync` of every segment written since the last sync,
    /// on this thread.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.shared.sync_round()?;
        self.collect_garbage(self.shared.durable())
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|(&number, s)| SegmentInfo {
                number,
                len: s.len,
                live: s.live,
                total: s.total,
            })
            .collect()
    }

    /// The segment being written.
    pub fn current_segment(&self) -> u64 {
        self.current
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cur(&mut self) -> &mut Segment {
        self.segments
            .get_mut(&self.current)
            .expect("the current segment exists")
    }

    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.pending.last_mut().expect("a pending buffer").buf
    }

    /// Accounts for a record of `len` bytes just encoded into the current
    /// segment; `publishes` is 1 for a publish. Returns its location.
    fn appended_new(&mut self, len: u32, publishes: u64) -> Location {
        self.appended += len as u64;
        let current = self.current;
        let seg = self.cur();
        let offset = seg.len;
        seg.len += len as u64;
        seg.live += publishes;
        seg.total += publishes;
        Location {
            segment: current,
            offset: offset as u32,
            len,
        }
    }

    /// Rotates if the current segment is full (and holds at least one record).
    fn make_room(&mut self) {
        let len = self.cur().len;
        if len >= self.opts.segment_size && len > SEGMENT_HEADER_LEN as u64 {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        // Pending acks belong to the segment their refs were noted on.
        self.seal_acks();
        self.gc_due = true;
        self.current += 1;
        let mut buf = self.spare_bufs.pop().unwrap_or_default();
        encode_segment_header(&mut buf, self.current);
        self.appended += SEGMENT_HEADER_LEN as u64;
        self.segments
            .insert(self.current, Segment::new(SEGMENT_HEADER_LEN as u64));
        self.pending.push(Pending {
            segment: self.current,
            file_offset: 0,
            buf,
        });
    }

    fn seal_acks(&mut self) {
        while !self.acks.is_empty() {
            self.seal_ack_batch(self.acks.len() - 1);
        }
    }

    fn seal_ack_batch(&mut self, i: usize) {
        let mut b = self.acks.swap_remove(i);
        if !b.seqs.is_empty() {
            let n = encode_acks(self.buf(), b.queue_id, &mut b.seqs);
            self.appended_new(n, 0);
        }
        b.seqs.clear();
        self.spare_seqs.push(b.seqs);
    }

    fn file_for_write(&mut self, segment: u64) -> io::Result<Arc<File>> {
        let path = segment_path(&self.dir, segment);
        let seg = self
            .segments
            .get_mut(&segment)
            .expect("pending segment exists");
        if let Some(f) = &seg.file {
            return Ok(f.clone());
        }
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)?,
        );
        seg.file = Some(f.clone());
        self.shared.new_file(f.clone());
        Ok(f)
    }

    fn file_for_read(&mut self, segment: u64) -> io::Result<Arc<File>> {
        let path = segment_path(&self.dir, segment);
        let seg = self.segments.get_mut(&segment).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no segment {segment}"))
        })?;
        if let Some(f) = &seg.file {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(path)?);
        seg.file = Some(f.clone());
        Ok(f)
    }

    /// The whole frame at `loc`, from the buffer if it is not written yet.
    fn read_frame(&mut self, loc: Location) -> io::Result<Bytes> {
        let (offset, len) = (loc.offset as u64, loc.len as usize);
        for p in &self.pending {
            if p.segment == loc.segment && offset >= p.file_offset {
                let at = (offset - p.file_offset) as usize;
                return match p.buf.get(at..at + len) {
                    Some(b) => Ok(Bytes::copy_from_slice(b)),
                    None => Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{loc:?} is past the end of the log"),
                    )),
                };
            }
        }
        let file = self.file_for_read(loc.segment)?;
        let mut frame = vec![0u8; len];
        file.read_exact_at(&mut frame, offset)?;
        Ok(Bytes::from(frame))
    }
}

#[cfg(test)]
impl SegmentLog {
    /// Drops the log as a crash would: buffered records are lost and nothing
    /// more is written or deleted.
    pub(crate) fn crash(mut self) {
        for p in &mut self.pending {
            p.buf.clear();
        }
        self.acks.clear();
        self.gc_due = false;
        self.gc_wait = u64::MAX;
    }
}

impl Drop for SegmentLog {
    /// Writes what is buffered (without syncing it).
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::error!(
                "message store {}: final flush failed: {e}",
                self.dir.display()
            );
        }
    }
}

/// A throw-away directory for tests, removed on drop.
#[cfg(test)]
pub(crate) struct TestDir(PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> TestDir {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "warren-store-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TestDir(dir)
}

#[path = "segments_gc.rs"]
mod gc;

#[cfg(test)]
#[path = "segments_tests.rs"]
mod tests;
