//! The fuzz targets of the streams' files: a stream's segments as recovery
//! reads them (`stream_scan`) and its stored offsets (`stream_offsets`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::core::stream::tracking::Offsets;
use crate::store::stream_log::{StreamLog, CHUNK_HEADER, CHUNK_MAGIC, SEGMENT_MAGIC};

thread_local! {
    /// This thread's scratch directory.
    static DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// A fresh scratch directory for this thread.
fn with_dir(tag: &str, f: impl FnOnce(&Path)) {
    DIR.with(|d| {
        let mut d = d.borrow_mut();
        let dir = d.get_or_insert_with(|| {
            let tid = format!("{:?}", std::thread::current().id());
            let tid: String = tid.chars().filter(char::is_ascii_digit).collect();
            std::env::temp_dir().join(format!("warren-fuzz-{tag}-{}-{tid}", std::process::id()))
        });
        let _ = std::fs::remove_dir_all(&*dir);
        std::fs::create_dir_all(&*dir).expect("scratch directory");
        f(dir);
        let _ = std::fs::remove_dir_all(&*dir);
    });
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Makes the CRC of every chunk that fits right (so that mutations reach
/// past the checksum), and returns the first chunk's first offset.
fn fix_chunks(seg: &mut [u8]) -> u64 {
    let first = seg
        .get(8 + 8..8 + 16)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8")));
    let mut at = SEGMENT_MAGIC.len();
    while at + CHUNK_HEADER <= seg.len() && be32(seg, at) == Some(CHUNK_MAGIC) {
        let records = be32(seg, at + 28).unwrap_or(0) as usize;
        let filter = be32(seg, at + 32).unwrap_or(0) as usize;
        let end = at + CHUNK_HEADER + records + filter;
        if end > seg.len() {
            break;
        }
        let crc = crc32fast::hash(&seg[at + 8..end]);
        seg[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
    first
}

/// Recovery of a stream directory (`StreamLog::open`): `data` is cut into
/// segment files at each segment magic after the first, named after their
/// first chunk, with their chunks' checksums made right and no index (so
/// every segment is scanned). The log must open, and everything it then
/// hands out must be readable and lie within its chunk: a walk over every
/// chunk and record, seeks by offset and time, retention, and a reopen
/// that finds the same end.
pub fn stream_scan(data: &[u8]) {
    with_dir("stream", |dir| {
        let mut starts = vec![0];
        let mut at = 8;
        while let Some(i) = data
            .get(at..)
            .and_then(|d| d.windows(8).position(|w| w == SEGMENT_MAGIC))
        {
            starts.push(at + i);
            at += i + 8;
        }
        starts.push(data.len());
        for w in starts.windows(2) {
            let mut seg = data[w[0]..w[1]].to_vec();
            let first = fix_chunks(&mut seg);
            std::fs::write(dir.join(format!("{first:020}.seg")), seg).expect("scratch");
        }
        let mut log = match StreamLog::open(dir, 1 << 12) {
            Ok(l) => l,
            Err(e) => panic!("a readable stream directory did not open: {e}"),
        };
        let (first, next) = (log.first_offset(), log.next_offset());
        assert!(first <= next);
        let mut at = log.start();
        let mut end = first;
        let mut chunks = 0;
        while let Some(c) = log.read(at).expect("a chunk the log knows is readable") {
            assert!(c.first_offset >= end, "chunks go forward");
            end = c.first_offset + c.count as u64;
            let mut p = 0;
            while let Some(r) = c.record_at(p) {
                assert!(r.start <= r.end && r.end <= c.bytes.len());
                assert!(r.next > p);
                p = r.next;
            }
            let _ = c.filter();
            at = StreamLog::after(&c);
            chunks += 1;
            assert!(chunks <= data.len(), "the walk ends");
        }
        assert!(end <= next);
        for o in [0, first, next / 2, next.saturating_sub(1), next, u64::MAX] {
            let at = log.seek_offset(o).expect("seek by offset");
            log.read(at).expect("read at a seek");
        }
        for ts in [0, 1_700_000_000_000, u64::MAX] {
            let at = log.seek_timestamp(ts).expect("seek by time");
            log.read(at).expect("read at a seek");
        }
        log.retain(1 << 12, 0, 0);
        let next_after = log.next_offset();
        drop(log);
        let log = StreamLog::open(dir, 1 << 12).expect("reopen");
        assert_eq!(log.next_offset(), next_after, "a reopen finds the same end");
    });
}

/// A stream's stored offsets (`Offsets::open`): whatever the file holds, it
/// opens, and a reopen (after the rewrite `open` does) finds the same
/// offsets.
pub fn stream_offsets(data: &[u8]) {
    with_dir("offsets", |dir| {
        std::fs::write(dir.join("offsets"), data).expect("scratch");
        let o = Offsets::open(dir).expect("offsets open");
        let entries = o.entries();
        drop(o);
        let o = Offsets::open(dir).expect("offsets reopen");
        for (tag, off) in &entries {
            assert_eq!(o.get(tag), Some(*off));
        }
        assert_eq!(o.entries().len(), entries.len());
        let _: Vec<Bytes> = entries.into_iter().map(|(t, _)| t).collect();
    });
}
