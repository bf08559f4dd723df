//! A queue's page file: a FIFO of messages on disk, for the tail of a queue
//! beyond its in-memory limit (`core::backlog`). Scratch data: never synced,
//! never recovered, deleted when the queue goes or the broker starts.
//! (Persistent messages of durable queues are in the message store as well;
//! the page file keeps their store location so that their acks can be written.)
//!
//! Files: `<dir>/<name>.<n>.page`, chunks of about `chunk_size` bytes written
//! in order and read in order; a chunk is deleted as soon as it has been read.
//! Writes are buffered (one `pwrite` per `WRITE_BUF` bytes), reads are done in
//! blocks of `READ_BUF` bytes.
//!
//! Record (little-endian, no checksum — the file never outlives the process):
//! `u32 len` (of what follows), `u64 seq`, `u8 flags` (1 redelivered, 2 has a
//! store location), [`u64 segment, u32 offset, u32 len`], the lengths `u8`
//! exchange, `u8` routing key, `u32` properties, `u32` body, then the four
//! parts back to back (read back as one slice: `core::message::Layout::Packed`).

use super::segments::Location;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const WRITE_BUF: usize = 1 << 20;
const READ_BUF: usize = 1 << 20;
const FLAG_REDELIVERED: u8 = 1;
const FLAG_LOC: u8 = 2;

/// A message going to the page file (borrowed).
pub struct PagedMessage<'a> {
    pub seq: u64,
    pub redelivered: bool,
    pub loc: Option<Location>,
    pub exchange: &'a [u8],
    pub routing_key: &'a [u8],
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

/// A message read back: exchange, routing key, properties and body back to
/// back in `parts` (a slice of the read block, shared with its neighbours).
pub struct ReadMessage {
    pub seq: u64,
    pub redelivered: bool,
    pub loc: Option<Location>,
    pub parts: Bytes,
    pub exchange_len: usize,
    pub routing_key_len: usize,
    pub properties_len: usize,
}

impl ReadMessage {
    pub fn exchange(&self) -> &[u8] {
        &self.parts[..self.exchange_len]
    }

    pub fn routing_key(&self) -> &[u8] {
        &self.parts[self.exchange_len..self.exchange_len + self.routing_key_len]
    }

    pub fn properties(&self) -> &[u8] {
        let at = self.exchange_len + self.routing_key_len;
        &self.parts[at..at + self.properties_len]
    }

    pub fn body(&self) -> &[u8] {
        &self.parts[self.exchange_len + self.routing_key_len + self.properties_len..]
    }
}

struct Chunk {
    number: u64,
    file: File,
    /// Bytes written to the file (the last chunk may have more in `wbuf`).
    written: u64,
}

/// See the module doc.
pub struct PageFile {
    dir: PathBuf,
    name: String,
    chunk_size: u64,
    chunks: VecDeque<Chunk>,
    next_number: u64,
    /// Encoded records not yet written to the last chunk.
    wbuf: Vec<u8>,
    /// Read-ahead of the first chunk, starting at file offset `read_off`.
    /// Records are split off it without copying, so reading back costs an
    /// allocation per block, not per message (a block stays in memory while
    /// one of its messages does).
    rbuf: BytesMut,
    read_off: u64,
    /// Records in the file not yet read back.
    len: usize,
    /// …of which have a store location.
    stored: usize,
    /// Body bytes of those records.
    bytes: u64,
}

impl PageFile {
    /// An empty page file (no file is created until the first write).
    pub fn create(dir: &Path, name: &str, chunk_size: u64) -> io::Result<PageFile> {
        std::fs::create_dir_all(dir)?;
        Ok(PageFile {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            chunk_size: chunk_size.max(WRITE_BUF as u64),
            chunks: VecDeque::new(),
            next_number: 0,
            wbuf: Vec::new(),
            rbuf: BytesMut::new(),
            read_off: 0,
            len: 0,
            stored: 0,
            bytes: 0,
        })
    }

    /// Records not yet read back.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Some record not yet read back has a store location.
    pub fn has_stored(&self) -> bool {
        self.stored > 0
    }

    /// Body bytes of the records not yet read back.
    pub fn paged_bytes(&self) -> u64 {
        self.bytes
    }

    fn chunk_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{}.{}.page", self.name, number))
    }

    /// Appends a message at the tail.
    pub fn push(&mut self, m: &PagedMessage<'_>) -> io::Result<()> {
        if m.exchange.len() > 255 || m.routing_key.len() > 255 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
        }
        let need_new = match self.chunks.back() {
            None => true,
            Some(c) => c.written + self.wbuf.len() as u64 >= self.chunk_size,
        };
        if need_new {
            self.write_out()?;
            let number = self.next_number;
            let path = self.chunk_path(number);
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(path)?;
            self.next_number += 1;
            self.chunks.push_back(Chunk {
                number,
                file,
                written: 0,
            });
        }
        if self.wbuf.len() >= WRITE_BUF {
            // Before this message is taken: a failure leaves it with the
            // caller, never half here.
            self.write_out()?;
        }
        let b = &mut self.wbuf;
        let start = b.len();
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&m.seq.to_le_bytes());
        let mut flags = 0;
        if m.redelivered {
            flags |= FLAG_REDELIVERED;
        }
        if m.loc.is_some() {
            flags |= FLAG_LOC;
        }
        b.push(flags);
        if let Some(loc) = m.loc {
            b.extend_from_slice(&loc.segment.to_le_bytes());
            b.extend_from_slice(&loc.offset.to_le_bytes());
            b.extend_from_slice(&loc.len.to_le_bytes());
        }
        b.push(m.exchange.len() as u8);
        b.push(m.routing_key.len() as u8);
        b.extend_from_slice(&(m.properties.len() as u32).to_le_bytes());
        b.extend_from_slice(&(m.body.len() as u32).to_le_bytes());
        for part in [m.exchange, m.routing_key, m.properties, m.body] {
            b.extend_from_slice(part);
        }
        let len = (b.len() - start - 4) as u32;
        b[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.len += 1;
        self.bytes += m.body.len() as u64;
        if m.loc.is_some() {
            self.stored += 1;
        }
        Ok(())
    }

    /// Writes the buffered tail to the last chunk.
    fn write_out(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        crate::store::fault::check(&self.dir, crate::store::fault::Op::Write)?;
        let c = self.chunks.back_mut().expect("wbuf belongs to a chunk");
        c.file.write_all_at(&self.wbuf, c.written)?;
        c.written += self.wbuf.len() as u64;
        self.wbuf.clear();
        Ok(())
    }

    /// Takes the head message, or None when empty.
    pub fn pop(&mut self) -> io::Result<Option<ReadMessage>> {
        loop {
            if self.len == 0 {
                return Ok(None);
            }
            if self.chunks.len() == 1 {
                self.write_out()?; // reading into the unwritten tail
            }
            let written = self.chunks.front().expect("len > 0").written;
            if self.read_off >= written {
                // The first chunk is read through: drop it.
                let c = self.chunks.pop_front().expect("checked");
                let _ = std::fs::remove_file(self.chunk_path(c.number));
                self.rbuf = BytesMut::new();
                self.read_off = 0;
                if self.chunks.is_empty() {
                    return Err(corrupt("records missing"));
                }
                continue;
            }
            self.fill(4)?;
            let len = u32::from_le_bytes(self.rbuf[..4].try_into().unwrap()) as usize;
            self.fill(4 + len)?;
            let rec = self.rbuf.split_to(4 + len).freeze().slice(4..);
            self.read_off += 4 + len as u64;
            let m = decode(rec)?;
            self.len -= 1;
            self.bytes -= m.body().len() as u64;
            if m.loc.is_some() {
                self.stored -= 1;
            }
            return Ok(Some(m));
        }
    }

    /// At least `n` bytes in `rbuf` (from the read position of the first
    /// chunk), reading ahead `READ_BUF` bytes at a time.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        let have = self.rbuf.len();
        if have >= n {
            return Ok(());
        }
        let c = self.chunks.front().expect("reading a chunk");
        let from = self.read_off + have as u64;
        let want = (n - have).max(READ_BUF) as u64;
        let upto = (from + want).min(c.written);
        if upto < self.read_off + n as u64 {
            return Err(corrupt("record runs past the end of its chunk"));
        }
        // Earlier records still share the old block: this moves the few
        // bytes left into a new one.
        self.rbuf.reserve((upto - from) as usize);
        self.rbuf.resize(have + (upto - from) as usize, 0);
        c.file.read_exact_at(&mut self.rbuf[have..], from)?;
        Ok(())
    }

    /// Calls `f` with the store location of every record not yet read back.
    pub fn for_each_location(&self, f: &mut impl FnMut(Location)) -> io::Result<()> {
        for (i, c) in self.chunks.iter().enumerate() {
            let start = if i == 0 { self.read_off } else { 0 };
            let mut bytes = vec![0u8; (c.written - start) as usize];
            c.file.read_exact_at(&mut bytes, start)?;
            if i + 1 == self.chunks.len() {
                bytes.extend_from_slice(&self.wbuf);
            }
            let mut pos = 0;
            while pos + 4 <= bytes.len() {
                let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
                let rec = bytes
                    .get(pos + 4..pos + 4 + len)
                    .ok_or_else(|| corrupt("truncated record"))?;
                if let Some(loc) = decode(Bytes::copy_from_slice(rec))?.loc {
                    f(loc);
                }
                pos += 4 + len;
            }
        }
        Ok(())
    }
}

impl Drop for PageFile {
    fn drop(&mut self) {
        for c in &self.chunks {
            let _ = std::fs::remove_file(self.chunk_path(c.number));
        }
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("page file: {what}"))
}

/// Decodes one record (without its length prefix).
fn decode(rec: Bytes) -> io::Result<ReadMessage> {
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> io::Result<std::ops::Range<usize>> {
        let r = *pos..*pos + n;
        if r.end > rec.len() {
            return Err(corrupt("truncated record"));
        }
        *pos += n;
        Ok(r)
    };
    let seq = u64::from_le_bytes(rec[take(&mut pos, 8)?].try_into().unwrap());
    let flags = rec[take(&mut pos, 1)?][0];
    let loc = if flags & FLAG_LOC != 0 {
        let segment = u64::from_le_bytes(rec[take(&mut pos, 8)?].try_into().unwrap());
        let offset = u32::from_le_bytes(rec[take(&mut pos, 4)?].try_into().unwrap());
        let len = u32::from_le_bytes(rec[take(&mut pos, 4)?].try_into().unwrap());
        Some(Location {
            segment,
            offset,
            len,
        })
    } else {
        None
    };
    let exchange_len = rec[take(&mut pos, 1)?][0] as usize;
    let routing_key_len = rec[take(&mut pos, 1)?][0] as usize;
    let properties_len = u32::from_le_bytes(rec[take(&mut pos, 4)?].try_into().unwrap()) as usize;
    let body_len = u32::from_le_bytes(rec[take(&mut pos, 4)?].try_into().unwrap()) as usize;
    let parts = rec.slice(take(
        &mut pos,
        exchange_len + routing_key_len + properties_len + body_len,
    )?);
    Ok(ReadMessage {
        seq,
        redelivered: flags & FLAG_REDELIVERED != 0,
        loc,
        parts,
        exchange_len,
        routing_key_len,
        properties_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segments::test_dir;

    fn msg(seq: u64, body: &[u8]) -> PagedMessage<'_> {
        PagedMessage {
            seq,
            redelivered: seq % 3 == 0,
            loc: (seq % 2 == 0).then_some(Location {
                segment: seq,
                offset: 7,
                len: 9,
            }),
            exchange: b"ex",
            routing_key: b"rk",
            properties: b"\x00\x00",
            body,
        }
    }

    #[test]
    fn fifo_across_chunks_and_interleaved_reads() {
        let dir = test_dir("page-fifo");
        let mut p = PageFile::create(dir.path(), "q1", 0).unwrap();
        let body = vec![7u8; 10_000];
        let mut next_read = 1u64;
        for seq in 1..=1000u64 {
            p.push(&msg(seq, &body[..(seq as usize * 13) % 10_000]))
                .unwrap();
            if seq % 7 == 0 {
                let m = p.pop().unwrap().unwrap();
                assert_eq!(m.seq, next_read);
                next_read += 1;
            }
        }
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(files > 1, "several chunks expected, got {files}");
        let mut locs = 0;
        p.for_each_location(&mut |_| locs += 1).unwrap();
        assert_eq!(locs, (next_read..=1000).filter(|s| s % 2 == 0).count());
        while let Some(m) = p.pop().unwrap() {
            assert_eq!(m.seq, next_read);
            assert_eq!(m.body().len(), (m.seq as usize * 13) % 10_000);
            assert_eq!(m.redelivered, m.seq % 3 == 0);
            assert_eq!(m.loc.is_some(), m.seq % 2 == 0);
            assert_eq!(&m.exchange()[..], b"ex");
            assert_eq!(&m.routing_key()[..], b"rk");
            next_read += 1;
        }
        assert_eq!(next_read, 1001);
        assert!(p.is_empty() && !p.has_stored() && p.paged_bytes() == 0);
        drop(p);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
