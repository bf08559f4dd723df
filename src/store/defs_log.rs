//! The definitions log: `<data_dir>/definitions.log`, an append-only file of
//! the changes to the durable definitions (durable exchanges, durable
//! non-exclusive queues, bindings whose two ends are durable).
//!
//! Each record is framed as `[u32 len][u32 crc32 of body][body]` (big-endian;
//! `len` counts the body only). The records and their bodies are in
//! `defs_record.rs`.
//!
//! Appends are written and `fdatasync`ed before the change is acknowledged
//! (`DefsLog::append`). Reading stops at the end or at the first record that
//! is torn (a crash in the middle of an append), too long, fails its checksum
//! or does not decode; the file is cut there with a warning, so everything
//! before the damage is kept and nothing after it. Compaction
//! (`DefsLog::rewrite`) writes the live set to a temporary file, syncs it,
//! renames it over the log and syncs the directory, so a crash leaves either
//! the old log or the new one.
//!
//! This module knows nothing of the broker.

use super::defs_record::FRAME_HEADER;
pub use super::defs_record::{BindingRecord, DestKind, Limits, Record};
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The log's file name inside the data directory.
pub const FILE_NAME: &str = "definitions.log";
const TMP_NAME: &str = "definitions.log.tmp";
/// A body longer than this is damage, not a record (names are short strings and
/// argument tables come from one frame, at most a few MiB).
const MAX_BODY: usize = 64 << 20;

/// What reading a log found.
#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<Record>,
    /// Bytes of whole, valid records from the start.
    pub valid_len: u64,
    /// Why reading stopped before the end, if it did.
    pub damage: Option<String>,
}

/// Reads records from `buf` until its end or the first damaged record.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut p = Parsed::default();
    let mut at = 0usize;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < FRAME_HEADER {
            p.damage = Some(format!("torn record header at byte {}", at));
            break;
        }
        let len = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_be_bytes(rest[4..8].try_into().unwrap());
        if len == 0 || len > MAX_BODY {
            p.damage = Some(format!("bad record length {} at byte {}", len, at));
            break;
        }
        if rest.len() - FRAME_HEADER < len {
            p.damage = Some(format!("torn record at byte {}", at));
            break;
        }
        let body = &rest[FRAME_HEADER..FRAME_HEADER + len];
        if crc32fast::hash(body) != crc {
            p.damage = Some(format!("checksum mismatch at byte {}", at));
            break;
        }
        // A copy per record: argument tables are slices of it, and must not
        // keep the whole file's buffer alive.
        match Record::decode(Bytes::copy_from_slice(body)) {
            Ok(r) => p.records.push(r),
            Err(e) => {
                p.damage = Some(format!("undecodable record at byte {}: {}", at, e));
                break;
            }
        }
        at += FRAME_HEADER + len;
        p.valid_len = at as u64;
    }
    p
}

/// The open log, positioned at its end, locked against a second broker.
pub struct DefsLog {
    file: File,
    dir: PathBuf,
    /// Bytes of valid records in the file (where the next append goes).
    len: u64,
}

impl DefsLog {
    /// Opens (creating if needed) the log in `dir`, which is created too. Returns
    /// the records it holds; a damaged tail is cut off with a warning.
    pub fn open(dir: &Path) -> io::Result<(DefsLog, Vec<Record>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        lock(&file, &path)?;
        if !existed {
            sync_dir(dir)?;
        }
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let parsed = parse(&buf);
        drop(buf);
        if let Some(why) = &parsed.damage {
            log::warn!(
                "{}: {}; keeping the {} record(s) before it and cutting the file at byte {}",
                path.display(),
                why,
                parsed.records.len(),
                parsed.valid_len
            );
            file.set_len(parsed.valid_len)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(parsed.valid_len))?;
        let log = DefsLog {
            file,
            dir: dir.to_path_buf(),
            len: parsed.valid_len,
        };
        Ok((log, parsed.records))
    }

    /// Bytes of records in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends framed records (from [`Record::encode`]) and waits until they are
    /// on disk. On failure the file is cut back to where it was, as far as the
    /// disk lets us, and the error returned.
    pub fn append(&mut self, frames: &[u8]) -> io::Result<()> {
        if frames.is_empty() {
            return Ok(());
        }
        let res = super::fault::check(&self.dir.join(FILE_NAME), super::fault::Op::Write)
            .and_then(|_| self.file.write_all(frames))
            .and_then(|_| self.file.sync_data());
        match res {
            Ok(()) => {
                self.len += frames.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                let _ = self.file.seek(SeekFrom::Start(self.len));
                Err(e)
            }
        }
    }

    /// Replaces the log with `records` (compaction): temporary file, sync,
    /// rename over the log, sync the directory.
    pub fn rewrite(&mut self, records: &[Record]) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            r.encode(&mut buf);
        }
        let tmp = self.dir.join(TMP_NAME);
        let path = self.dir.join(FILE_NAME);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        // Locked before it becomes the log; the old file's lock goes with it.
        lock(&f, &tmp)?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        self.file = f;
        self.len = buf.len() as u64;
        Ok(())
    }
}

/// An exclusive lock on the log: a second broker on the same data directory
/// would interleave its appends with ours.
fn lock(file: &File, path: &Path) -> io::Result<()> {
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "{} is locked (another broker on this data directory?): {}",
                path.display(),
                e
            ),
        ));
    }
    Ok(())
}

/// Makes a created or renamed directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FieldTable, FieldValue};

    fn args() -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("x-message-ttl", FieldValue::I32(60_000));
        t.insert("x-dead-letter-exchange", FieldValue::LongStr("dlx".into()));
        t
    }

    fn binding(kind: DestKind) -> BindingRecord {
        BindingRecord {
            vhost: "v".into(),
            source: "src".into(),
            dest_kind: kind,
            dest: "dst".into(),
            key: "a.#".into(),
            args: args(),
        }
    }

    fn samples() -> Vec<Record> {
        vec![
            Record::NextQueueId(42),
            Record::ExchangeDeclare {
                vhost: "/".into(),
                name: "x1".into(),
                kind: "topic".into(),
                durable: true,
                auto_delete: true,
                internal: false,
                args: args(),
            },
            Record::ExchangeDeclare {
                vhost: "vh ü".into(),
                name: "x2 ünïcode".into(),
                kind: "headers".into(),
                durable: true,
                auto_delete: false,
                internal: true,
                args: FieldTable::default(),
            },
            Record::QueueDeclare {
                vhost: "/".into(),
                name: "q1".into(),
                id: u64::MAX - 1,
                home: 3,
                auto_delete: true,
                args: args(),
            },
            Record::ClusterQueue {
                vhost: "/".into(),
                name: "q2".into(),
                id: 9,
                home: 1,
                durable: false,
                auto_delete: true,
                exclusive: true,
                owner: "rabbit@node-ü".into(),
                args: args(),
            },
            Record::BindingAdd(binding(DestKind::Queue)),
            Record::BindingAdd(binding(DestKind::Exchange)),
            Record::BindingRemove(binding(DestKind::Queue)),
            Record::QueueDelete {
                vhost: "/".into(),
                name: "q1".into(),
            },
            Record::ExchangeDelete {
                vhost: "/".into(),
                name: "x1".into(),
            },
            Record::VhostPut {
                name: "v".into(),
                description: "test".into(),
                tags: vec!["a".into(), "b".into()],
                default_queue_type: "classic".into(),
                limits: vec![("max-connections".into(), 10), ("max-queues".into(), -1)],
            },
            Record::UserPut {
                name: "u".into(),
                algorithm: "rabbit_password_hashing_sha256".into(),
                hash: vec![1, 2, 3, 4, 5],
                tags: vec!["administrator".into()],
                limits: vec![],
            },
            Record::PermissionSet {
                user: "u".into(),
                vhost: "v".into(),
                configure: ".*".into(),
                write: "".into(),
                read: "^q$".into(),
            },
            Record::TopicPermissionSet {
                user: "u".into(),
                vhost: "v".into(),
                exchange: "amq.topic".into(),
                write: "^a".into(),
                read: ".*".into(),
            },
            Record::TopicPermissionClear {
                user: "u".into(),
                vhost: "v".into(),
                exchange: "amq.topic".into(),
            },
            Record::PermissionClear {
                user: "u".into(),
                vhost: "v".into(),
            },
            Record::UserDelete { name: "u".into() },
            Record::ParameterSet {
                vhost: "v".into(),
                component: "shovel".into(),
                name: "s ü".into(),
                value: r#"{"src-uri":"amqp://","src-queue":"q"}"#.into(),
            },
            Record::ParameterClear {
                vhost: "v".into(),
                component: "shovel".into(),
                name: "s ü".into(),
            },
            Record::VhostDelete { name: "v".into() },
            Record::Initialized,
        ]
    }

    fn encode_all(rs: &[Record]) -> Vec<u8> {
        let mut buf = Vec::new();
        for r in rs {
            r.encode(&mut buf);
        }
        buf
    }

    /// Offsets where each record's frame starts, plus the end.
    fn boundaries(rs: &[Record]) -> Vec<usize> {
        let mut at = vec![0];
        let mut buf = Vec::new();
        for r in rs {
            r.encode(&mut buf);
            at.push(buf.len());
        }
        at
    }

    #[test]
    fn codec_round_trip() {
        let rs = samples();
        let buf = encode_all(&rs);
        let p = parse(&buf);
        assert_eq!(p.damage, None);
        assert_eq!(p.valid_len, buf.len() as u64);
        assert_eq!(p.records, rs);
    }

    #[test]
    fn every_truncation_keeps_the_whole_records_before_it() {
        let rs = samples();
        let buf = encode_all(&rs);
        let ends = boundaries(&rs);
        for cut in 0..buf.len() {
            let p = parse(&buf[..cut]);
            let whole = ends.iter().filter(|&&e| e > 0 && e <= cut).count();
            assert_eq!(p.records, rs[..whole], "cut at {}", cut);
            assert_eq!(p.valid_len, ends[whole] as u64, "cut at {}", cut);
            assert_eq!(p.damage.is_some(), cut != ends[whole], "cut at {}", cut);
        }
    }

    #[test]
    fn every_bit_flip_keeps_the_records_before_the_damaged_one() {
        let rs = samples();
        let buf = encode_all(&rs);
        let ends = boundaries(&rs);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                let p = parse(&b);
                // The damaged record is the one whose frame holds `byte`.
                let hit = ends.iter().filter(|&&e| e <= byte).count() - 1;
                assert_eq!(p.records, rs[..hit], "flip {}:{}", byte, bit);
                assert_eq!(p.valid_len, ends[hit] as u64);
                assert!(p.damage.is_some(), "flip {}:{} not detected", byte, bit);
            }
        }
    }

    #[test]
    fn garbage_is_never_a_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000 {
            let mut b = Vec::new();
            for _ in 0..(n % 97) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b.push(seed as u8);
            }
            let p = parse(&b);
            assert!(p.valid_len as usize <= b.len());
        }
        // A huge length field is damage, not an allocation.
        let p = parse(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1]);
        assert!(p.records.is_empty() && p.damage.is_some());
        // A valid checksum over a body of an unknown type is damage too.
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(&crc32fast::hash(&[99]).to_be_bytes());
        b.push(99);
        let p = parse(&b);
        assert!(p.records.is_empty() && p.damage.is_some());
    }

    #[test]
    fn open_append_reopen_and_cut_a_damaged_tail() {
        let tmp = crate::store::segments::test_dir("tail");
        let dir = tmp.path().to_path_buf();
        let rs = samples();
        {
            let (mut log, got) = DefsLog::open(&dir).unwrap();
            assert!(got.is_empty() && log.is_empty());
            log.append(&encode_all(&rs[..4])).unwrap();
            log.append(&encode_all(&rs[4..])).unwrap();
        }
        let path = dir.join(FILE_NAME);
        let good = std::fs::metadata(&path).unwrap().len();
        // A torn append: half a record at the end.
        let mut extra = Vec::new();
        rs[3].encode(&mut extra);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&extra[..extra.len() / 2]).unwrap();
        drop(f);
        {
            let (mut log, got) = DefsLog::open(&dir).unwrap();
            assert_eq!(got, rs);
            assert_eq!(log.len(), good);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), good, "cut");
            // Appends go after the cut.
            log.append(&extra).unwrap();
        }
        let (_log, got) = DefsLog::open(&dir).unwrap();
        assert_eq!(got.len(), rs.len() + 1);
        assert_eq!(got[rs.len()], rs[3]);
        drop(_log);
    }

    #[test]
    fn a_flipped_bit_in_the_middle_keeps_the_prefix() {
        let tmp = crate::store::segments::test_dir("flip");
        let dir = tmp.path().to_path_buf();
        let rs = samples();
        let ends = boundaries(&rs);
        {
            let (mut log, _) = DefsLog::open(&dir).unwrap();
            log.append(&encode_all(&rs)).unwrap();
        }
        let path = dir.join(FILE_NAME);
        let mut b = std::fs::read(&path).unwrap();
        b[ends[5] + 10] ^= 0x10;
        std::fs::write(&path, &b).unwrap();
        let (_log, got) = DefsLog::open(&dir).unwrap();
        assert_eq!(got, rs[..5]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[5] as u64);
        drop(_log);
    }

    #[test]
    fn rewrite_replaces_the_log_and_a_second_open_is_refused() {
        let tmp = crate::store::segments::test_dir("rewrite");
        let dir = tmp.path().to_path_buf();
        let rs = samples();
        let (mut log, _) = DefsLog::open(&dir).unwrap();
        log.append(&encode_all(&rs)).unwrap();
        assert!(DefsLog::open(&dir).is_err(), "locked");
        log.rewrite(&rs[..2]).unwrap();
        assert!(DefsLog::open(&dir).is_err(), "still locked after rewrite");
        log.append(&encode_all(&rs[2..3])).unwrap();
        assert!(!dir.join(TMP_NAME).exists());
        drop(log);
        let (_log, got) = DefsLog::open(&dir).unwrap();
        assert_eq!(got, rs[..3]);
        drop(_log);
    }

    #[test]
    fn records_of_the_first_format_belong_to_the_default_vhost() {
        use crate::protocol::reader::{put_longstr, put_u16, put_u64, put_u8};
        let mut body = Vec::new();
        put_u8(&mut body, 3); // queue declare, no vhost
        put_longstr(&mut body, b"q");
        put_u64(&mut body, 7);
        put_u16(&mut body, 1);
        put_u8(&mut body, 0);
        FieldTable::default().encode(&mut body);
        assert_eq!(
            Record::decode(Bytes::from(body)).unwrap(),
            Record::QueueDeclare {
                vhost: "/".into(),
                name: "q".into(),
                id: 7,
                home: 1,
                auto_delete: false,
                args: FieldTable::default(),
            }
        );
    }
}
