//! The definitions log: `<data_dir>/definitions.log`, an append-only file of
//! the changes to the durable definitions (durable exchanges, durable
//! non-exclusive queues, bindings whose two ends are durable).
//!
//! Each record is framed as `[u32 len][u32 crc32 of body][body]` (big-endian;
//! `len` counts the body only). The body is a type octet and the fields of
//! that type; strings are `u32` length + UTF-8 bytes, argument tables are AMQP
//! field tables encoded by the protocol codec:
//!
//! | type | record | fields |
//! |---|---|---|
//! | 1 | exchange declare | name, kind ("direct", …), flags (1 durable, 2 auto_delete, 4 internal), args |
//! | 2 | exchange delete | name |
//! | 3 | queue declare | name, id u64, home shard u16, flags (2 auto_delete), args |
//! | 4 | queue delete | name |
//! | 5 | binding add | source, dest kind (1 queue, 2 exchange), dest name, routing key, args |
//! | 6 | binding remove | same as binding add |
//! | 7 | next queue id | u64: no queue id below it may be handed out again |
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
//! This module knows nothing of the broker: `core::definitions` turns its
//! changes into [`Record`]s and replays the records at boot.

use crate::protocol::reader::{put_longstr, put_u16, put_u64, put_u8, Reader};
use crate::protocol::{DecodeError, FieldTable};
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The log's file name inside the data directory.
pub const FILE_NAME: &str = "definitions.log";
const TMP_NAME: &str = "definitions.log.tmp";
/// `len` + `crc`.
const FRAME_HEADER: usize = 8;
/// A body longer than this is damage, not a record (names are short strings and
/// argument tables come from one frame, at most a few MiB).
const MAX_BODY: usize = 64 << 20;

const T_EXCHANGE_DECLARE: u8 = 1;
const T_EXCHANGE_DELETE: u8 = 2;
const T_QUEUE_DECLARE: u8 = 3;
const T_QUEUE_DELETE: u8 = 4;
const T_BINDING_ADD: u8 = 5;
const T_BINDING_REMOVE: u8 = 6;
const T_NEXT_QUEUE_ID: u8 = 7;

const F_DURABLE: u8 = 1;
const F_AUTO_DELETE: u8 = 2;
const F_INTERNAL: u8 = 4;

/// What a binding leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestKind {
    Queue,
    Exchange,
}

/// A binding as the log stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct BindingRecord {
    pub source: String,
    pub dest_kind: DestKind,
    pub dest: String,
    pub key: String,
    pub args: FieldTable,
}

/// One change to the durable definitions.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    ExchangeDeclare {
        name: String,
        /// The type's name, as in exchange.declare.
        kind: String,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        args: FieldTable,
    },
    ExchangeDelete {
        name: String,
    },
    QueueDeclare {
        name: String,
        /// The queue's stable id (`QueueDef::store_id`), never reused.
        id: u64,
        /// The shard the queue lived on (taken modulo the shard count at boot).
        home: u16,
        auto_delete: bool,
        args: FieldTable,
    },
    QueueDelete {
        name: String,
    },
    BindingAdd(BindingRecord),
    BindingRemove(BindingRecord),
    /// Written first by compaction: queue ids below this were handed out, even
    /// if no declare record of them is left.
    NextQueueId(u64),
}

impl Record {
    /// Appends the body (type octet and fields, no frame).
    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Record::ExchangeDeclare {
                name,
                kind,
                durable,
                auto_delete,
                internal,
                args,
            } => {
                put_u8(out, T_EXCHANGE_DECLARE);
                put_longstr(out, name.as_bytes());
                put_longstr(out, kind.as_bytes());
                let mut flags = 0;
                if *durable {
                    flags |= F_DURABLE;
                }
                if *auto_delete {
                    flags |= F_AUTO_DELETE;
                }
                if *internal {
                    flags |= F_INTERNAL;
                }
                put_u8(out, flags);
                args.encode(out);
            }
            Record::ExchangeDelete { name } => {
                put_u8(out, T_EXCHANGE_DELETE);
                put_longstr(out, name.as_bytes());
            }
            Record::QueueDeclare {
                name,
                id,
                home,
                auto_delete,
                args,
            } => {
                put_u8(out, T_QUEUE_DECLARE);
                put_longstr(out, name.as_bytes());
                put_u64(out, *id);
                put_u16(out, *home);
                put_u8(out, if *auto_delete { F_AUTO_DELETE } else { 0 });
                args.encode(out);
            }
            Record::QueueDelete { name } => {
                put_u8(out, T_QUEUE_DELETE);
                put_longstr(out, name.as_bytes());
            }
            Record::BindingAdd(b) | Record::BindingRemove(b) => {
                let t = if matches!(self, Record::BindingAdd(_)) {
                    T_BINDING_ADD
                } else {
                    T_BINDING_REMOVE
                };
                put_u8(out, t);
                put_longstr(out, b.source.as_bytes());
                put_u8(
                    out,
                    match b.dest_kind {
                        DestKind::Queue => 1,
                        DestKind::Exchange => 2,
                    },
                );
                put_longstr(out, b.dest.as_bytes());
                put_longstr(out, b.key.as_bytes());
                b.args.encode(out);
            }
            Record::NextQueueId(id) => {
                put_u8(out, T_NEXT_QUEUE_ID);
                put_u64(out, *id);
            }
        }
    }

    /// Appends the framed record: `[len][crc32][body]`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        self.encode_body(out);
        let body = &out[at + FRAME_HEADER..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        out[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
    }

    /// Decodes one body; it must be consumed exactly.
    pub fn decode(body: Bytes) -> Result<Record, DecodeError> {
        let mut r = Reader::new(body);
        let rec = match r.u8()? {
            T_EXCHANGE_DECLARE => {
                let name = string(&mut r)?;
                let kind = string(&mut r)?;
                let flags = r.u8()?;
                Record::ExchangeDeclare {
                    name,
                    kind,
                    durable: flags & F_DURABLE != 0,
                    auto_delete: flags & F_AUTO_DELETE != 0,
                    internal: flags & F_INTERNAL != 0,
                    args: r.table()?,
                }
            }
            T_EXCHANGE_DELETE => Record::ExchangeDelete {
                name: string(&mut r)?,
            },
            T_QUEUE_DECLARE => Record::QueueDeclare {
                name: string(&mut r)?,
                id: r.u64()?,
                home: r.u16()?,
                auto_delete: r.u8()? & F_AUTO_DELETE != 0,
                args: r.table()?,
            },
            T_QUEUE_DELETE => Record::QueueDelete {
                name: string(&mut r)?,
            },
            t @ (T_BINDING_ADD | T_BINDING_REMOVE) => {
                let source = string(&mut r)?;
                let dest_kind = match r.u8()? {
                    1 => DestKind::Queue,
                    2 => DestKind::Exchange,
                    k => return Err(DecodeError::UnknownFieldType(k)),
                };
                let b = BindingRecord {
                    source,
                    dest_kind,
                    dest: string(&mut r)?,
                    key: string(&mut r)?,
                    args: r.table()?,
                };
                if t == T_BINDING_ADD {
                    Record::BindingAdd(b)
                } else {
                    Record::BindingRemove(b)
                }
            }
            T_NEXT_QUEUE_ID => Record::NextQueueId(r.u64()?),
            t => return Err(DecodeError::UnknownFieldType(t)),
        };
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(rec)
    }
}

fn string(r: &mut Reader) -> Result<String, DecodeError> {
    let b = r.longstr()?;
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Truncated)
}

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
        let res = self
            .file
            .write_all(frames)
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
    use crate::protocol::FieldValue;

    fn args() -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("x-message-ttl", FieldValue::I32(60_000));
        t.insert("x-dead-letter-exchange", FieldValue::LongStr("dlx".into()));
        t
    }

    fn binding(kind: DestKind) -> BindingRecord {
        BindingRecord {
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
                name: "x1".into(),
                kind: "topic".into(),
                durable: true,
                auto_delete: true,
                internal: false,
                args: args(),
            },
            Record::ExchangeDeclare {
                name: "x2 ünïcode".into(),
                kind: "headers".into(),
                durable: true,
                auto_delete: false,
                internal: true,
                args: FieldTable::default(),
            },
            Record::QueueDeclare {
                name: "q1".into(),
                id: u64::MAX - 1,
                home: 3,
                auto_delete: true,
                args: args(),
            },
            Record::BindingAdd(binding(DestKind::Queue)),
            Record::BindingAdd(binding(DestKind::Exchange)),
            Record::BindingRemove(binding(DestKind::Queue)),
            Record::QueueDelete { name: "q1".into() },
            Record::ExchangeDelete { name: "x1".into() },
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
}
