//! Recovery of a segment directory: the scan behind `SegmentLog::open`.
//!
//! Pass 1 reads every segment file in number order and replays its records into
//! a map (queue_id → seq → location): a publish inserts (a later copy of the same
//! (queue_id, seq), left by compaction, replaces the earlier one), an ack
//! removes, a `QueueGone` removes the queue's messages up to its seq. A file
//! stops at its first bad record and is truncated there. Pass 2 reads back the
//! live messages small enough to load, one read per segment, into one buffer per
//! segment that the messages slice.
//!
//! Along the way each segment collects its *refs*: the segments holding a
//! message that one of its records killed (acked, purged, or superseded by a
//! copy). A segment may be deleted only once none of its refs exists any more;
//! otherwise the killed message would come back at the next recovery.

use super::location::{segment_path, Location};
use super::record::{
    check_segment_header, decode_frame, encode_segment_header, Record, StoredMessage, ALL_SEQS,
    SEGMENT_HEADER_LEN,
};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A live message found at recovery.
#[derive(Clone, Debug)]
pub struct RecoveredMessage {
    pub seq: u64,
    pub location: Location,
    /// Loaded if the frame is at most `Options::load_max` bytes and among the
    /// first `Options::load_first` of its queue (boxed: most entries of a big
    /// recovery are not loaded, and stay small).
    pub message: Option<Box<StoredMessage>>,
}

/// Hasher for integer keys (queue ids, seqs): one multiplication.
#[derive(Default)]
pub(crate) struct IntHasher(u64);
impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
pub(crate) type IntMap<V> = HashMap<u64, V, BuildHasherDefault<IntHasher>>;

/// What the scan learnt about one segment file.
pub(crate) struct ScannedSegment {
    /// Valid length (after any truncation).
    pub len: u64,
    /// Publish records in it.
    pub total: u64,
    /// Live messages in it.
    pub live: u64,
    /// Segments holding messages its records killed; sorted, without itself.
    pub refs: Vec<u64>,
}

/// The result of a scan.
pub(crate) struct Scan {
    pub segments: BTreeMap<u64, ScannedSegment>,
    /// Per queue, live messages in seq order.
    pub queues: Vec<(u64, Vec<RecoveredMessage>)>,
    /// Highest segment number seen, including files set aside.
    pub max_number: u64,
    pub records: u64,
    pub bytes: u64,
    pub truncated: Vec<(PathBuf, u64)>,
    pub bad_files: Vec<PathBuf>,
}

/// Lists the segment numbers in `dir`, ascending. Only names of exactly 16
/// lower-case hex digits + ".seg" count; anything else is left alone.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name.to_str().and_then(parse_segment_name) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Reads and replays every segment of `dir`; loads the live messages whose frame
/// is at most `load_max` bytes, the first `load_first` of each queue.
pub(crate) fn scan(dir: &Path, load_max: u32, load_first: usize) -> io::Result<Scan> {
    let mut scan = Scan {
        segments: BTreeMap::new(),
        queues: Vec::new(),
        max_number: 0,
        records: 0,
        bytes: 0,
        truncated: Vec::new(),
        bad_files: Vec::new(),
    };
    let mut live: IntMap<IntMap<Location>> = IntMap::default();
    let mut buf = Vec::new();
    for n in list_segments(dir)? {
        scan.max_number = scan.max_number.max(n);
        let path = segment_path(dir, n);
        buf.clear();
        let mut file = File::open(&path)?;
        buf.reserve(file.metadata()?.len() as usize);
        file.read_to_end(&mut buf)?;
        if let Err(why) = check_segment_header(&buf, n) {
            set_aside(&path, n, &buf, why, &mut scan)?;
            continue;
        }
        let mut seg = ScannedSegment {
            len: 0,
            total: 0,
            live: 0,
            refs: Vec::new(),
        };
        let mut pos = SEGMENT_HEADER_LEN;
        while pos < buf.len() {
            let decoded = if pos > u32::MAX as usize {
                Err("segment larger than 4 GiB".to_string())
            } else {
                decode_frame(&buf[pos..]).map_err(|e| e.to_string())
            };
            match decoded {
                Ok((record, len)) => {
                    let loc = Location {
                        segment: n,
                        offset: pos as u32,
                        len: len as u32,
                    };
                    replay(record, loc, &mut seg, &mut live);
                    scan.records += 1;
                    pos += len;
                }
                Err(why) => {
                    log::warn!(
                        "message store: {}: {why} at offset {pos}; truncating the segment there \
                         ({} bytes dropped)",
                        path.display(),
                        buf.len() - pos
                    );
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(pos as u64)?;
                    f.sync_all()?;
                    scan.truncated.push((path.clone(), pos as u64));
                    break;
                }
            }
        }
        seg.len = pos as u64;
        scan.bytes += pos as u64;
        seg.refs.sort_unstable();
        seg.refs.dedup();
        scan.segments.insert(n, seg);
    }
    collect_live(live, &mut scan);
    load(dir, load_max, load_first, &mut scan)?;
    Ok(scan)
}

/// A file whose header is wrong. An empty file, or a prefix of the right header,
/// is what a crash right after creating a segment leaves: removed. Anything
/// else is renamed to `<name>.bad` and left for a human.
fn set_aside(path: &Path, n: u64, bytes: &[u8], why: &str, scan: &mut Scan) -> io::Result<()> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
    encode_segment_header(&mut header, n);
    if bytes.len() < SEGMENT_HEADER_LEN && header.starts_with(bytes) {
        log::warn!(
            "message store: {}: incomplete segment header ({} bytes); removing it",
            path.display(),
            bytes.len()
        );
        std::fs::remove_file(path)?;
    } else {
        let mut bad = path.as_os_str().to_owned();
        bad.push(".bad");
        log::warn!(
            "message store: {}: not a segment ({why}); renamed to {}",
            path.display(),
            Path::new(&bad).display()
        );
        std::fs::rename(path, &bad)?;
        scan.bad_files.push(PathBuf::from(bad));
    }
    Ok(())
}

/// Notes that a record of `seg` (number `this`) killed a message in `target`.
fn add_ref(refs: &mut Vec<u64>, target: u64, this: u64) {
    if target != this && refs.last() != Some(&target) {
        refs.push(target);
    }
}

fn replay(
    record: Record<'_>,
    loc: Location,
    seg: &mut ScannedSegment,
    live: &mut IntMap<IntMap<Location>>,
) {
    let this = loc.segment;
    match record {
        Record::Publish(p) => {
            seg.total += 1;
            if let Some(old) = live.entry(p.queue_id).or_default().insert(p.seq, loc) {
                add_ref(&mut seg.refs, old.segment, this);
            }
        }
        Record::Acks(acks) => {
            if let Some(q) = live.get_mut(&acks.queue_id) {
                for seq in acks.seqs() {
                    if let Some(old) = q.remove(&seq) {
                        add_ref(&mut seg.refs, old.segment, this);
                    }
                }
            }
        }
        Record::QueueGone {
            queue_id,
            up_to_seq,
        } => {
            if up_to_seq == ALL_SEQS {
                if let Some(q) = live.remove(&queue_id) {
                    for old in q.values() {
                        add_ref(&mut seg.refs, old.segment, this);
                    }
                }
            } else if let Some(q) = live.get_mut(&queue_id) {
                q.retain(|&seq, old| {
                    if seq <= up_to_seq {
                        add_ref(&mut seg.refs, old.segment, this);
                        false
                    } else {
                        true
                    }
                });
            }
        }
    }
}

/// Turns the live map into per-queue lists in seq order and counts the live
/// messages of each segment.
fn collect_live(live: IntMap<IntMap<Location>>, scan: &mut Scan) {
    let mut counts: IntMap<u64> = IntMap::default();
    for (queue_id, msgs) in live {
        if msgs.is_empty() {
            continue;
        }
        let mut v: Vec<(u64, Location)> = msgs.into_iter().collect();
        v.sort_unstable_by_key(|&(seq, _)| seq);
        // Messages in seq order sit mostly in ascending segments: count runs.
        let mut run = (u64::MAX, 0u64);
        for &(_, loc) in &v {
            if loc.segment != run.0 {
                if run.1 > 0 {
                    *counts.entry(run.0).or_default() += run.1;
                }
                run = (loc.segment, 0);
            }
            run.1 += 1;
        }
        if run.1 > 0 {
            *counts.entry(run.0).or_default() += run.1;
        }
        let msgs = v
            .into_iter()
            .map(|(seq, location)| RecoveredMessage {
                seq,
                location,
                message: None,
            })
            .collect();
        scan.queues.push((queue_id, msgs));
    }
    for (n, count) in counts {
        if let Some(seg) = scan.segments.get_mut(&n) {
            seg.live = count;
        }
    }
}

/// Pass 2: reads back the first `load_first` live messages of each queue
/// whose frame is at most `load_max` bytes (`read_frames` per segment).
fn load(dir: &Path, load_max: u32, load_first: usize, scan: &mut Scan) -> io::Result<()> {
    // (location, index in scan.queues, index in that queue's list)
    let mut wanted: Vec<(Location, u32, u32)> = Vec::new();
    for (q, (_, msgs)) in scan.queues.iter().enumerate() {
        for (i, m) in msgs.iter().enumerate().take(load_first) {
            if m.location.len <= load_max {
                wanted.push((m.location, q as u32, i as u32));
            }
        }
    }
    wanted.sort_unstable_by_key(|w| w.0);
    let mut i = 0;
    let mut locs = Vec::new();
    while i < wanted.len() {
        let segment = wanted[i].0.segment;
        let end = i + wanted[i..].partition_point(|w| w.0.segment == segment);
        let group = &wanted[i..end];
        i = end;
        locs.clear();
        locs.extend(group.iter().map(|w| w.0));
        let file = File::open(segment_path(dir, segment))?;
        let frames = read_frames(&file, &locs)?;
        for (w, frame) in group.iter().zip(frames) {
            if let Some(m) = scan.queues[w.1 as usize].1.get_mut(w.2 as usize) {
                // The frame was checked in pass 1; a failure here means the file
                // changed under us. Leave it unloaded: `read` will report it.
                m.message = StoredMessage::from_frame(frame).ok().map(Box::new);
            }
        }
    }
    Ok(())
}

/// Reads the frames at `locs` (one segment, ascending offsets) with one read of
/// the span from the first to the last; the frames slice that buffer, unless
/// they fill less than half of it, in which case they are copied into a buffer
/// of their own (so a mostly dead segment does not stay in memory).
pub(crate) fn read_frames(file: &File, locs: &[Location]) -> io::Result<Vec<Bytes>> {
    let Some(first) = locs.first().map(|l| l.offset as u64) else {
        return Ok(Vec::new());
    };
    let last = locs[locs.len() - 1];
    let span_end = last.offset as u64 + last.len as u64;
    let mut span = vec![0u8; (span_end - first) as usize];
    file.read_exact_at(&mut span, first)?;
    let used: u64 = locs.iter().map(|l| l.len as u64).sum();
    let (buf, offsets): (Bytes, Vec<usize>) = if used * 2 >= span.len() as u64 {
        let offsets = locs
            .iter()
            .map(|l| (l.offset as u64 - first) as usize)
            .collect();
        (Bytes::from(span), offsets)
    } else {
        let mut compact = Vec::with_capacity(used as usize);
        let mut offsets = Vec::with_capacity(locs.len());
        for l in locs {
            let at = (l.offset as u64 - first) as usize;
            offsets.push(compact.len());
            compact.extend_from_slice(&span[at..at + l.len as usize]);
        }
        (Bytes::from(compact), offsets)
    };
    Ok(locs
        .iter()
        .zip(offsets)
        .map(|(l, at)| buf.slice(at..at + l.len as usize))
        .collect())
}
