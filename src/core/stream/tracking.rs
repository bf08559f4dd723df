//! Server-side offset tracking, as LavinMQ offers it over AMQP 0-9-1
//! (RabbitMQ has it only in its stream protocol): a consumer that sets
//! `x-stream-automatic-offset-tracking: true`, or that has a consumer tag of
//! its own (not `amq.ctag-…`) and no `x-stream-offset`, resumes after the
//! last message it acknowledged: after reconnecting, and after a restart.
//!
//! The offsets are kept per consumer tag in `<stream dir>/offsets`, an
//! append-only file of records `[u32 crc32][u8 tag length][tag][u64 next
//! offset]` (the last record of a tag wins), rewritten compactly when it is
//! opened and when it grows past `COMPACT_AT`. Records are appended at the
//! end of the loop iteration in which acks moved them, and synced with the
//! shard's batch.

use bytes::{BufMut, Bytes};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::protocol::{FieldTable, FieldValue};

/// Tags kept per stream: clients that make up a new consumer tag for every
/// consumer (pika does) would otherwise grow the table forever. Past it,
/// the tag acked least recently is forgotten.
pub const MAX_TAGS: usize = 10_000;
/// The offset a forgotten tag's record carries.
const FORGOTTEN: u64 = u64::MAX;

/// The file is rewritten once it is this many times larger than its live
/// records.
const COMPACT_FACTOR: u64 = 8;
/// … and at least this large.
const COMPACT_AT: u64 = 1 << 20;

/// Whether a consumer's acks are tracked.
pub fn is_tracked(tag: &[u8], args: &FieldTable) -> bool {
    match args
        .get("x-stream-automatic-offset-tracking")
        .and_then(FieldValue::as_bool)
    {
        Some(on) => on,
        None => !tag.starts_with(b"amq.ctag-") && args.get("x-stream-offset").is_none(),
    }
}

/// A stream's stored offsets.
pub struct Offsets {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    /// Next offset to read, per consumer tag, and when it last moved
    /// (`clock`).
    next: HashMap<Bytes, (u64, u64)>,
    clock: u64,
    /// Tags whose offset moved since `flush`.
    dirty: Vec<Bytes>,
}

fn record(tag: &[u8], next: u64, out: &mut Vec<u8>) {
    let tag = &tag[..tag.len().min(255)];
    let mut body = Vec::with_capacity(9 + tag.len());
    body.put_u8(tag.len() as u8);
    body.put_slice(tag);
    body.put_u64(next);
    out.put_u32(crc32fast::hash(&body));
    out.put_slice(&body);
}

impl Offsets {
    /// Reads `<dir>/offsets` (cut at its first bad record) and rewrites it
    /// compactly.
    pub fn open(dir: &Path) -> io::Result<Offsets> {
        let path = dir.join("offsets");
        let mut next = HashMap::new();
        if let Ok(mut f) = File::open(&path) {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            let mut p = 0;
            while p + 5 <= buf.len() {
                let crc = u32::from_be_bytes(buf[p..p + 4].try_into().expect("4"));
                let n = buf[p + 4] as usize;
                let end = p + 5 + n + 8;
                if end > buf.len() || crc32fast::hash(&buf[p + 4..end]) != crc {
                    break;
                }
                let tag = Bytes::copy_from_slice(&buf[p + 5..p + 5 + n]);
                let off = u64::from_be_bytes(buf[p + 5 + n..end].try_into().expect("8"));
                if off == FORGOTTEN {
                    next.remove(&tag);
                } else {
                    next.insert(tag, (off, p as u64));
                }
                p = end;
            }
        }
        let (file, len) = rewrite(&path, &next)?;
        let clock = next.values().map(|&(_, at)| at).max().unwrap_or(0) + 1;
        Ok(Offsets {
            path,
            file,
            len,
            next,
            clock,
            dirty: Vec::new(),
        })
    }

    /// Every tag and its next offset (fuzzing and tests).
    pub fn entries(&self) -> Vec<(Bytes, u64)> {
        self.next
            .iter()
            .map(|(t, &(o, _))| (t.clone(), o))
            .collect()
    }

    /// The next offset stored for `tag`.
    pub fn get(&self, tag: &[u8]) -> Option<u64> {
        self.next.get(tag).map(|&(o, _)| o)
    }

    /// `tag` acknowledged the message at `offset`: it resumes after it (an
    /// ack of an older message, out of order, moves nothing back).
    pub fn acked(&mut self, tag: &Bytes, offset: u64) {
        self.clock += 1;
        if !self.next.contains_key(tag) && self.next.len() >= MAX_TAGS {
            self.forget_oldest();
        }
        let e = self.next.entry(tag.clone()).or_insert((0, 0));
        if offset + 1 > e.0 {
            *e = (offset + 1, self.clock);
            if !self.dirty.contains(tag) {
                self.dirty.push(tag.clone());
            }
        }
    }

    /// Drops the tag acked least recently (a record says so).
    fn forget_oldest(&mut self) {
        let Some(old) = self
            .next
            .iter()
            .min_by_key(|(_, &(_, at))| at)
            .map(|(t, _)| t.clone())
        else {
            return;
        };
        self.next.remove(&old);
        if !self.dirty.contains(&old) {
            self.dirty.push(old);
        }
    }

    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Appends the offsets that moved; the file goes to `files` (syncer).
    pub fn flush(&mut self, files: &mut Vec<Arc<File>>) -> io::Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for tag in &self.dirty {
            let off = self.next.get(tag).map_or(FORGOTTEN, |&(o, _)| o);
            record(tag, off, &mut out);
        }
        self.file.write_all_at(&out, self.len)?;
        self.dirty.clear();
        self.len += out.len() as u64;
        let live = self.next.len() as u64 * 64;
        if self.len > COMPACT_AT.max(live * COMPACT_FACTOR) {
            let (file, len) = rewrite(&self.path, &self.next)?;
            self.file = file;
            self.len = len;
        }
        files.push(self.file.clone());
        Ok(())
    }
}

/// Writes every offset to a new file, synced, and renames it over `path`.
fn rewrite(path: &Path, next: &HashMap<Bytes, (u64, u64)>) -> io::Result<(Arc<File>, u64)> {
    let tmp = path.with_extension("tmp");
    // Oldest first, so that a reopen sees the same order of acks.
    let mut all: Vec<_> = next.iter().collect();
    all.sort_by_key(|(_, &(_, at))| at);
    let mut out = Vec::new();
    for (tag, &(off, _)) in all {
        record(tag, off, &mut out);
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all_at(&out, 0)?;
    f.sync_data()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok((Arc::new(f), out.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_reopen_and_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("warren-offsets-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut o = Offsets::open(&dir).unwrap();
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"bee"));
        o.acked(&a, 5);
        o.acked(&b, 9);
        o.acked(&a, 3); // older: no move back
        let mut files = Vec::new();
        o.flush(&mut files).unwrap();
        assert_eq!(files.len(), 1);
        o.acked(&a, 7);
        o.flush(&mut files).unwrap();
        drop(o);
        // A torn record at the end is ignored.
        let f = OpenOptions::new()
            .append(true)
            .open(dir.join("offsets"))
            .unwrap();
        f.write_all_at(&[1, 2, 3], f.metadata().unwrap().len())
            .unwrap();
        let o = Offsets::open(&dir).unwrap();
        assert_eq!(
            (o.get(b"a"), o.get(b"bee"), o.get(b"c")),
            (Some(8), Some(10), None)
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_least_recent_tag_is_forgotten_past_the_limit() {
        let dir = std::env::temp_dir().join(format!("warren-offsets-max-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut o = Offsets::open(&dir).unwrap();
        let tag = |i: usize| Bytes::from(format!("t{i}"));
        for i in 0..MAX_TAGS {
            o.acked(&tag(i), 1);
        }
        o.acked(&tag(0), 2); // t0 is fresh again: t1 is the oldest
        o.acked(&tag(MAX_TAGS), 1);
        assert_eq!(o.get(b"t1"), None);
        assert_eq!(o.get(b"t0"), Some(3));
        o.flush(&mut Vec::new()).unwrap();
        drop(o);
        let o = Offsets::open(&dir).unwrap();
        assert_eq!(
            (o.get(b"t1"), o.get(b"t0"), o.next.len()),
            (None, Some(3), MAX_TAGS)
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn who_is_tracked() {
        let mut t = FieldTable::new();
        assert!(is_tracked(b"my-consumer", &t));
        assert!(!is_tracked(b"amq.ctag-xyz", &t));
        t.insert("x-stream-offset", FieldValue::I64(0));
        assert!(!is_tracked(b"my-consumer", &t));
        t.insert("x-stream-automatic-offset-tracking", FieldValue::Bool(true));
        assert!(is_tracked(b"amq.ctag-xyz", &t));
    }
}
