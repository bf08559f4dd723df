//! A stream's log on disk: `<data_dir>/streams/<store id>/`, an append-only
//! sequence of segments, each a `.seg` file of *chunks* and a `.idx` file
//! with one fixed-size entry per chunk (RabbitMQ's osiris keeps the same
//! pair). The module knows nothing of AMQP: a record is four byte strings.
//!
//! - A **chunk** is what one loop iteration appended to the stream: a
//!   40-octet header (`CHUNK_MAGIC`, CRC-32 of everything after the CRC,
//!   first offset, timestamp in ms since the epoch, record count, records'
//!   length, filter length) then the records, then the chunk's filter
//!   (a bloom filter of the messages' filter values, possibly empty). Every
//!   message has an *offset*: the chunk's first offset plus its index.
//! - A **record** is `[u32 len][u8 exchange len][u8 routing key len][u32
//!   properties len][exchange][routing key][properties][body]`: from the
//!   exchange on, the parts lie back to back, so a message is a slice of
//!   the chunk's buffer.
//! - A **segment** (`<first offset, 20 digits>.seg`, header `WRNSTR01`)
//!   takes chunks until the next would make it larger than the stream's
//!   segment size; then a new one starts. Its index (`.idx`) has per chunk
//!   `[u64 first offset][u64 timestamp][u64 position][u32 count][u32 chunk
//!   length]`: seeks by offset or time are binary searches over it, with
//!   one `pread` per step. Only per-segment summaries stay in memory, so a
//!   stream's memory does not grow with its length.
//! - **Retention** (`retain`) deletes whole segments from the head, never the
//!   one being written.
//! - **Recovery** (`open`) trusts the index of every segment but the last,
//!   and scans the last one chunk by chunk (CRC checked), cuts it after its
//!   last whole chunk and rewrites its index: a crash loses only what was
//!   not synced, and nothing synced is confirmed twice.
//!
//! Writes are `pwrite`s on the caller's thread; the files written since
//! the last look (`take_written`: the current segment after each chunk,
//! an index only when its segment is full or was rebuilt, since recovery
//! rebuilds the current one's) are handed to the shard's syncer, which
//! `fdatasync`s them with the shard's message store (group commit).

use super::fault;
use super::stream_chunk::{parse_header, u32_at, u64_at};
pub use super::stream_chunk::{
    Chunk, ChunkBuilder, ChunkPos, RecordSpan, CHUNK_HEADER, CHUNK_MAGIC, MAX_CHUNK_BYTES,
    RECORD_HEADER,
};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first octets of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"WRNSTR01";
const SEG_HEADER: u64 = SEGMENT_MAGIC.len() as u64;
/// Octets of an index entry.
const INDEX_ENTRY: u64 = 32;
/// RabbitMQ's default `x-stream-max-segment-size-bytes` (500 MB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 500_000_000;

/// One segment's summary.
struct Segment {
    first_offset: u64,
    /// One past the last offset in it.
    next_offset: u64,
    first_ts: u64,
    last_ts: u64,
    /// Octets written (the file's length).
    size: u64,
    chunks: u64,
    seg: Arc<File>,
    idx: Arc<File>,
    /// Its segment file was written since `take_written` last looked.
    written: bool,
    /// Its index needs a sync: it was rewritten (recovery), or the segment
    /// is full (rolled). The index of the segment being written is not
    /// synced with every chunk: recovery rebuilds it from the segment.
    index_written: bool,
}

/// A stream's log (see the module doc).
pub struct StreamLog {
    dir: PathBuf,
    dir_file: Arc<File>,
    segments: VecDeque<Segment>,
    segment_size: u64,
    /// The newest chunk: (position, first offset).
    last_chunk: Option<(ChunkPos, u64)>,
    /// A segment file was created since `take_written` last looked.
    dir_dirty: bool,
}

fn seg_path(dir: &Path, first: u64, ext: &str) -> PathBuf {
    dir.join(format!("{first:020}.{ext}"))
}

fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
}

impl StreamLog {
    /// Opens the stream in `dir` (created if missing), recovering what is
    /// there; `segment_size` 0 means `DEFAULT_SEGMENT_SIZE`.
    pub fn open(dir: &Path, segment_size: u64) -> io::Result<StreamLog> {
        StreamLog::open_with(dir, segment_size, false)
    }

    /// `open`; with `clean` (the broker shut down cleanly and synced every
    /// index, `sync_all`), the last segment's index is trusted like the
    /// others' (checked against the segment's length) instead of the
    /// segment being read through.
    pub fn open_with(dir: &Path, segment_size: u64, clean: bool) -> io::Result<StreamLog> {
        fs::create_dir_all(dir)?;
        let mut firsts: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
                firsts.push(n);
            }
        }
        firsts.sort_unstable();
        let mut log = StreamLog {
            dir: dir.to_path_buf(),
            dir_file: Arc::new(File::open(dir)?),
            segments: VecDeque::new(),
            segment_size: if segment_size == 0 {
                DEFAULT_SEGMENT_SIZE
            } else {
                segment_size
            },
            last_chunk: None,
            dir_dirty: false,
        };
        let n = firsts.len();
        for (i, first) in firsts.into_iter().enumerate() {
            let seg = log.open_segment(first, i + 1 == n && !clean)?;
            if let Some(prev) = log.segments.back() {
                if seg.first_offset < prev.next_offset {
                    // Offsets the previous segment already has: damage, not
                    // something this log wrote. Set aside, never read.
                    let path = seg_path(&log.dir, first, "seg");
                    log::error!(
                        "stream {}: segment {} overlaps the one before (which ends at {}); renamed to .bad",
                        log.dir.display(),
                        first,
                        prev.next_offset
                    );
                    fs::rename(&path, path.with_extension("seg.bad"))?;
                    continue;
                }
            }
            log.segments.push_back(seg);
        }
        if log.segments.is_empty() {
            log.new_segment(0)?;
        }
        log.last_chunk = log.find_last_chunk()?;
        Ok(log)
    }

    /// Opens one segment: trusting its index, or (`scan`, the last one)
    /// checking its chunks, cutting it after the last whole one and
    /// rewriting the index.
    fn open_segment(&self, first: u64, scan: bool) -> io::Result<Segment> {
        let seg = open_rw(&seg_path(&self.dir, first, "seg"), false)?;
        let idx = open_rw(&seg_path(&self.dir, first, "idx"), true)?;
        let mut s = Segment {
            first_offset: first,
            next_offset: first,
            first_ts: 0,
            last_ts: 0,
            size: seg.metadata()?.len(),
            chunks: 0,
            seg: Arc::new(seg),
            idx: Arc::new(idx),
            written: false,
            index_written: false,
        };
        let idx_len = s.idx.metadata()?.len();
        if scan || idx_len % INDEX_ENTRY != 0 {
            self.scan_segment(&mut s)?;
            return Ok(s);
        }
        s.chunks = idx_len / INDEX_ENTRY;
        if s.chunks == 0 {
            // A full segment has chunks: an empty index was never synced.
            self.scan_segment(&mut s)?;
            return Ok(s);
        }
        let e = read_entry(&s.idx, 0)?;
        s.first_ts = e.timestamp;
        let e = read_entry(&s.idx, s.chunks - 1)?;
        s.last_ts = e.timestamp;
        s.next_offset = e.first_offset.saturating_add(e.count as u64);
        if e.pos.checked_add(e.len) != Some(s.size)
            || e.first_offset.checked_add(e.count as u64).is_none()
        {
            // The index does not end where the segment does (a crash right
            // after the segment filled up, before its index was synced).
            self.scan_segment(&mut s)?;
        }
        Ok(s)
    }

    /// Walks a segment's chunks, checking each; cuts the file after the last
    /// good one and rewrites the index.
    fn scan_segment(&self, s: &mut Segment) -> io::Result<()> {
        // From scratch: whatever an index said is not trusted here.
        s.next_offset = s.first_offset;
        s.chunks = 0;
        s.first_ts = 0;
        s.last_ts = 0;
        let file_len = s.seg.metadata()?.len();
        let mut magic = [0u8; 8];
        if file_len < SEG_HEADER
            || s.seg.read_exact_at(&mut magic, 0).is_err()
            || &magic != SEGMENT_MAGIC
        {
            s.seg.set_len(0)?;
            s.seg.write_all_at(SEGMENT_MAGIC, 0)?;
            s.idx.set_len(0)?;
            s.size = SEG_HEADER;
            s.written = true;
            s.index_written = true;
            return Ok(());
        }
        let mut pos = SEG_HEADER;
        let mut entries = Vec::new();
        let mut header = [0u8; CHUNK_HEADER];
        let mut body = Vec::new();
        while pos + CHUNK_HEADER as u64 <= file_len {
            if s.seg.read_exact_at(&mut header, pos).is_err() {
                break;
            }
            let Some((first, ts, count, len)) = parse_header(&header) else {
                break;
            };
            if pos + len > file_len
                || first != s.next_offset
                || first.checked_add(count as u64).is_none()
            {
                break;
            }
            body.resize((len - CHUNK_HEADER as u64) as usize, 0);
            if s.seg
                .read_exact_at(&mut body, pos + CHUNK_HEADER as u64)
                .is_err()
            {
                break;
            }
            let mut h = crc32fast::Hasher::new();
            h.update(&header[8..]);
            h.update(&body);
            if h.finalize() != u32_at(&header, 4) {
                break;
            }
            if s.chunks == 0 {
                s.first_ts = ts;
            }
            s.last_ts = ts;
            s.next_offset = first + count as u64;
            s.chunks += 1;
            entries.extend_from_slice(&entry_bytes(first, ts, pos, count, len));
            pos += len;
        }
        if pos < file_len {
            log::warn!(
                "stream {}: segment {} cut at {} of {} octets (a torn or damaged chunk)",
                self.dir.display(),
                s.first_offset,
                pos,
                file_len
            );
            s.seg.set_len(pos)?;
        }
        s.idx.set_len(0)?;
        s.idx.write_all_at(&entries, 0)?;
        s.size = pos;
        s.written = true;
        s.index_written = true;
        Ok(())
    }

    /// Starts a new segment whose first offset is `first`.
    fn new_segment(&mut self, first: u64) -> io::Result<()> {
        fault::check(&self.dir, fault::Op::Write)?;
        let seg = open_rw(&seg_path(&self.dir, first, "seg"), true)?;
        seg.set_len(0)?;
        seg.write_all_at(SEGMENT_MAGIC, 0)?;
        let idx = open_rw(&seg_path(&self.dir, first, "idx"), true)?;
        idx.set_len(0)?;
        self.segments.push_back(Segment {
            first_offset: first,
            next_offset: first,
            first_ts: 0,
            last_ts: 0,
            size: SEG_HEADER,
            chunks: 0,
            seg: Arc::new(seg),
            idx: Arc::new(idx),
            written: true,
            index_written: true,
        });
        self.dir_dirty = true;
        Ok(())
    }

    fn find_last_chunk(&self) -> io::Result<Option<(ChunkPos, u64)>> {
        for s in self.segments.iter().rev() {
            if s.chunks > 0 {
                let e = read_entry(&s.idx, s.chunks - 1)?;
                return Ok(Some((
                    ChunkPos {
                        segment: s.first_offset,
                        pos: e.pos,
                    },
                    e.first_offset,
                )));
            }
        }
        Ok(None)
    }

    /// The offset of the first message kept.
    pub fn first_offset(&self) -> u64 {
        self.segments.front().map_or(0, |s| s.first_offset)
    }

    /// The offset the next message will get.
    pub fn next_offset(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.next_offset)
    }

    /// Octets on disk (segments).
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The newest chunk's position and first offset.
    pub fn last_chunk(&self) -> Option<(ChunkPos, u64)> {
        self.last_chunk
    }

    /// Writes a sealed chunk (`ChunkBuilder::seal`) at the end, starting a
    /// new segment first if it would not fit. On an error nothing is
    /// counted as written (the next write goes to the same place).
    pub fn append(&mut self, bytes: Bytes) -> io::Result<Chunk> {
        let (first, ts, count, len) =
            parse_header(&bytes).ok_or_else(|| io::Error::other("not a sealed chunk"))?;
        debug_assert_eq!(first, self.next_offset());
        let cur = self.segments.back().expect("a segment");
        if cur.chunks > 0 && cur.size + len > self.segment_size {
            self.new_segment(first)?;
            // The full segment's index is final: synced with this batch.
            let n = self.segments.len();
            self.segments[n - 2].index_written = true;
        }
        fault::check(&self.dir, fault::Op::Write)?;
        let s = self.segments.back_mut().expect("a segment");
        let pos = s.size;
        s.seg.write_all_at(&bytes, pos)?;
        s.idx.write_all_at(
            &entry_bytes(first, ts, pos, count, len),
            s.chunks * INDEX_ENTRY,
        )?;
        if s.chunks == 0 {
            s.first_ts = ts;
        }
        s.last_ts = ts;
        s.chunks += 1;
        s.size = pos + len;
        s.next_offset = first + count as u64;
        s.written = true;
        let at = ChunkPos {
            segment: s.first_offset,
            pos,
        };
        self.last_chunk = Some((at, first));
        Ok(Chunk {
            at,
            first_offset: first,
            timestamp: ts,
            count,
            bytes,
        })
    }

    /// The files written since the last call (for the syncer), and the
    /// directory if a segment was created.
    pub fn take_written(&mut self, into: &mut Vec<Arc<File>>) {
        for s in self.segments.iter_mut() {
            if std::mem::take(&mut s.written) {
                into.push(s.seg.clone());
            }
            if std::mem::take(&mut s.index_written) {
                into.push(s.idx.clone());
            }
        }
        if std::mem::take(&mut self.dir_dirty) {
            into.push(self.dir_file.clone());
        }
    }

    fn segment(&self, first: u64) -> Option<&Segment> {
        let i = self
            .segments
            .binary_search_by_key(&first, |s| s.first_offset)
            .ok()?;
        self.segments.get(i)
    }

    /// The chunk at `at`, or the first chunk of the next segment if `at` is
    /// the end of a full one; None at the end of the log, or if `at`'s
    /// segment was deleted (retention).
    pub fn read(&self, at: ChunkPos) -> io::Result<Option<Chunk>> {
        let Some(mut s) = self.segment(at.segment) else {
            return Ok(None);
        };
        let mut pos = at.pos;
        if pos >= s.size {
            let i = self
                .segments
                .binary_search_by_key(&at.segment, |s| s.first_offset)
                .unwrap_or(0);
            match self.segments.get(i + 1) {
                Some(next) => {
                    s = next;
                    pos = SEG_HEADER;
                    if pos >= s.size {
                        return Ok(None);
                    }
                }
                None => return Ok(None),
            }
        }
        let mut header = [0u8; CHUNK_HEADER];
        s.seg.read_exact_at(&mut header, pos)?;
        let (first, ts, count, len) = parse_header(&header).ok_or_else(|| {
            io::Error::other(format!("no chunk at {pos} in segment {}", s.first_offset))
        })?;
        let mut buf = BytesMut::zeroed(len as usize);
        s.seg.read_exact_at(&mut buf, pos)?;
        Ok(Some(Chunk {
            at: ChunkPos {
                segment: s.first_offset,
                pos,
            },
            first_offset: first,
            timestamp: ts,
            count,
            bytes: buf.freeze(),
        }))
    }

    /// Where the chunk after `c` starts (possibly past its segment's end:
    /// `read` then moves on to the next segment).
    pub fn after(c: &Chunk) -> ChunkPos {
        ChunkPos {
            segment: c.at.segment,
            pos: c.at.pos + c.len(),
        }
    }

    /// The position just past the newest chunk: where a reader waits for
    /// the next one.
    pub fn end(&self) -> ChunkPos {
        let s = self.segments.back().expect("a segment");
        ChunkPos {
            segment: s.first_offset,
            pos: s.size,
        }
    }

    /// The first chunk kept.
    pub fn start(&self) -> ChunkPos {
        let s = self.segments.front().expect("a segment");
        ChunkPos {
            segment: s.first_offset,
            pos: SEG_HEADER,
        }
    }

    /// The chunk holding `offset` (the first chunk if it is older than
    /// the log, `end` if it is not written yet).
    pub fn seek_offset(&self, offset: u64) -> io::Result<ChunkPos> {
        if offset >= self.next_offset() {
            return Ok(self.end());
        }
        let i = self.segments.partition_point(|s| s.next_offset <= offset);
        let Some(s) = self.segments.get(i) else {
            return Ok(self.end());
        };
        if offset < s.first_offset || s.chunks == 0 {
            return Ok(ChunkPos {
                segment: s.first_offset,
                pos: SEG_HEADER,
            });
        }
        // The last entry whose first offset is <= offset.
        let (mut lo, mut hi) = (0u64, s.chunks);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if read_entry(&s.idx, mid)?.first_offset <= offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(ChunkPos {
            segment: s.first_offset,
            pos: read_entry(&s.idx, lo)?.pos,
        })
    }

    /// The first chunk written at or after `ts` (ms since the epoch), or
    /// `end`.
    pub fn seek_timestamp(&self, ts: u64) -> io::Result<ChunkPos> {
        let Some(s) = self
            .segments
            .iter()
            .find(|s| s.chunks > 0 && s.last_ts >= ts)
        else {
            return Ok(self.end());
        };
        let (mut lo, mut hi) = (0u64, s.chunks - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if read_entry(&s.idx, mid)?.timestamp >= ts {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(ChunkPos {
            segment: s.first_offset,
            pos: read_entry(&s.idx, lo)?.pos,
        })
    }

    /// Deletes segments from the head, never the one being written, while
    /// the stream is over `max_bytes` (0: no limit) or the segment's newest
    /// chunk is older than `max_age_ms` before `now_ms` (0: no limit).
    /// Returns how many went.
    pub fn retain(&mut self, max_bytes: u64, max_age_ms: u64, now_ms: u64) -> usize {
        let mut removed = 0;
        let mut total = self.size();
        while self.segments.len() > 1 {
            let s = &self.segments[0];
            let by_size = max_bytes > 0 && total > max_bytes;
            let by_age = max_age_ms > 0 && s.last_ts.saturating_add(max_age_ms) < now_ms;
            if !by_size && !by_age {
                break;
            }
            let s = self.segments.pop_front().expect("more than one");
            total -= s.size;
            for ext in ["seg", "idx"] {
                let p = seg_path(&self.dir, s.first_offset, ext);
                if let Err(e) = fs::remove_file(&p) {
                    log::warn!("stream retention: cannot delete {}: {e}", p.display());
                }
            }
            self.dir_dirty = true;
            removed += 1;
        }
        removed
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Syncs every file of the log, indexes included (a clean shutdown:
    /// the next `open_with(.., clean)` trusts them).
    pub fn sync_all(&self) -> io::Result<()> {
        for s in &self.segments {
            s.seg.sync_data()?;
            s.idx.sync_data()?;
        }
        self.dir_file.sync_all()
    }

    /// Deletes the stream's files (the queue was deleted).
    pub fn destroy(self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            log::warn!("cannot delete stream {}: {e}", self.dir.display());
        }
    }
}

struct Entry {
    first_offset: u64,
    timestamp: u64,
    pos: u64,
    count: u32,
    len: u64,
}

fn entry_bytes(first: u64, ts: u64, pos: u64, count: u32, len: u64) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0..8].copy_from_slice(&first.to_be_bytes());
    e[8..16].copy_from_slice(&ts.to_be_bytes());
    e[16..24].copy_from_slice(&pos.to_be_bytes());
    e[24..28].copy_from_slice(&count.to_be_bytes());
    e[28..32].copy_from_slice(&(len as u32).to_be_bytes());
    e
}

fn read_entry(idx: &File, i: u64) -> io::Result<Entry> {
    let mut e = [0u8; 32];
    idx.read_exact_at(&mut e, i * INDEX_ENTRY)?;
    Ok(Entry {
        first_offset: u64_at(&e, 0),
        timestamp: u64_at(&e, 8),
        pos: u64_at(&e, 16),
        count: u32_at(&e, 24),
        len: u32_at(&e, 28) as u64,
    })
}

#[cfg(test)]
#[path = "stream_log_tests.rs"]
mod tests;
