//! Reading a stream: a consumer's `Cursor` walks the log chunk by chunk,
//! and a `ChunkCache` shares the chunks read (and those just written) among
//! the stream's consumers, so readers close to each other read the disk
//! once and every message they get is a slice of one shared buffer.

use super::super::message::{Layout, Message};
use super::filter::Filter;
use crate::store::stream_log::{Chunk, ChunkPos, StreamLog};
use std::collections::{HashMap, VecDeque};
use std::io;

/// Octets of chunks a stream keeps for its readers.
pub const CACHE_BYTES: usize = 16 << 20;

/// Recently written or read chunks, oldest evicted first.
#[derive(Default)]
pub struct ChunkCache {
    chunks: HashMap<ChunkPos, Chunk>,
    order: VecDeque<ChunkPos>,
    bytes: usize,
}

impl ChunkCache {
    pub fn insert(&mut self, c: Chunk) {
        if self.chunks.contains_key(&c.at) {
            return;
        }
        self.bytes += c.bytes.len();
        self.order.push_back(c.at);
        self.chunks.insert(c.at, c);
        while self.bytes > CACHE_BYTES && self.order.len() > 1 {
            let old = self.order.pop_front().expect("not empty");
            if let Some(c) = self.chunks.remove(&old) {
                self.bytes -= c.bytes.len();
            }
        }
    }

    fn get(&self, at: ChunkPos) -> Option<Chunk> {
        self.chunks.get(&at).cloned()
    }

    /// Drops every chunk.
    pub fn clear(&mut self) {
        *self = ChunkCache::default();
    }

    /// Octets held (the stream's memory figure).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Where a consumer is in the stream.
pub struct Cursor {
    /// The chunk being delivered, if any.
    chunk: Option<Chunk>,
    /// Position of the next record in `chunk` (0: its first).
    rec: usize,
    /// Offset of the next record of `chunk`.
    pub offset: u64,
    /// Where the next chunk is read from once `chunk` is done.
    next: ChunkPos,
    /// Records below this offset are skipped (a start inside a chunk).
    skip_below: u64,
}

/// A message read from the stream: its offset and the message, a slice of
/// the chunk's buffer.
pub struct Read {
    pub offset: u64,
    pub msg: Message,
}

impl Cursor {
    /// A cursor that reads the chunk at `at` first, delivering from offset
    /// `from` on.
    pub fn at(at: ChunkPos, from: u64) -> Cursor {
        Cursor {
            chunk: None,
            rec: 0,
            offset: from,
            next: at,
            skip_below: from,
        }
    }

    /// The next message, reading chunks as needed; None at the end of the
    /// log. A cursor left behind by retention goes on at the log's head.
    /// With a `filter`, chunks that cannot hold a matching message are
    /// skipped whole (their bloom filter says so).
    pub fn next(
        &mut self,
        log: &StreamLog,
        cache: &mut ChunkCache,
        filter: Option<&Filter>,
    ) -> io::Result<Option<Read>> {
        loop {
            if let Some(c) = &self.chunk {
                match c.record_at(self.rec) {
                    Some(r) => {
                        let offset = self.offset;
                        self.rec = r.next;
                        self.offset += 1;
                        if offset < self.skip_below {
                            continue;
                        }
                        let Some(msg) = Message::in_buffer(
                            c.bytes.slice(r.start..r.end),
                            Layout::Packed,
                            r.exchange_len,
                            r.routing_key_len,
                            r.properties_len,
                        ) else {
                            continue;
                        };
                        return Ok(Some(Read { offset, msg }));
                    }
                    None => {
                        self.next = StreamLog::after(c);
                        self.chunk = None;
                    }
                }
            }
            if self.next.segment < log.first_offset() {
                // Retention deleted what this cursor was about to read.
                self.next = log.start();
                self.skip_below = log.first_offset();
            }
            let chunk = match cache.get(self.next) {
                Some(c) => c,
                None => match log.read(self.next)? {
                    Some(c) => {
                        cache.insert(c.clone());
                        c
                    }
                    None => return Ok(None),
                },
            };
            self.offset = chunk.first_offset;
            self.rec = 0;
            if filter.is_some_and(|f| !f.may_match(chunk.filter())) {
                self.next = StreamLog::after(&chunk);
                self.offset += chunk.count as u64;
                continue;
            }
            self.next = chunk.at;
            self.chunk = Some(chunk);
        }
    }
}
