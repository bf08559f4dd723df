//! A stream's chunk, as `stream_log` stores it (the format is in that
//! module's doc): `ChunkBuilder` writes one, `Chunk` reads one back,
//! `RecordSpan` is a record inside it.

use bytes::{BufMut, Bytes, BytesMut};

/// The first octets of every chunk.
pub const CHUNK_MAGIC: u32 = 0x5753_4348; // "WSCH"
/// Octets of a chunk header.
pub const CHUNK_HEADER: usize = 40;
/// Octets before a record's exchange: length, exchange and routing key
/// lengths, properties length.
pub const RECORD_HEADER: usize = 10;
/// A chunk is sealed once its records pass this size, even mid-iteration,
/// so that readers never pin huge buffers.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// Where a chunk starts: its segment (by the segment's first offset) and
/// its position in the segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkPos {
    pub segment: u64,
    pub pos: u64,
}

/// A chunk read back (or just written): its header fields and the whole
/// chunk's bytes, header included.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub at: ChunkPos,
    pub first_offset: u64,
    pub timestamp: u64,
    pub count: u32,
    pub bytes: Bytes,
}

impl Chunk {
    /// Octets of the chunk in its segment.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The chunk's filter (empty: none).
    pub fn filter(&self) -> &[u8] {
        let records = u32_at(&self.bytes, 28) as usize;
        &self.bytes[CHUNK_HEADER + records..]
    }

    /// The records, from position `at` (0: the first) on: each as
    /// (exchange len, routing key len, properties len, start, end) in
    /// `bytes`, where `start..end` is exchange ‖ routing key ‖ properties ‖
    /// body.
    pub fn record_at(&self, at: usize) -> Option<RecordSpan> {
        let records = u32_at(&self.bytes, 28) as usize;
        let p = CHUNK_HEADER + at;
        if at >= records || p + RECORD_HEADER > self.bytes.len() {
            return None;
        }
        let b = &self.bytes[..];
        let len = u32_at(b, p) as usize;
        let ex = b[p + 4] as usize;
        let rk = b[p + 5] as usize;
        let props = u32_at(b, p + 6) as usize;
        let start = p + RECORD_HEADER;
        let end = p + 4 + len;
        if len < 6 || end > CHUNK_HEADER + records || start + ex + rk + props > end {
            return None;
        }
        Some(RecordSpan {
            exchange_len: ex,
            routing_key_len: rk,
            properties_len: props,
            start,
            end,
            next: end - CHUNK_HEADER,
        })
    }
}

/// One record inside a chunk's bytes (`Chunk::record_at`).
#[derive(Clone, Copy, Debug)]
pub struct RecordSpan {
    pub exchange_len: usize,
    pub routing_key_len: usize,
    pub properties_len: usize,
    pub start: usize,
    pub end: usize,
    /// Where the next record starts (for `record_at`).
    pub next: usize,
}

/// Builds the chunk being appended: records go straight into its buffer;
/// `seal` writes the header.
pub struct ChunkBuilder {
    buf: BytesMut,
    pub count: u32,
}

impl Default for ChunkBuilder {
    fn default() -> Self {
        ChunkBuilder::new()
    }
}

impl ChunkBuilder {
    pub fn new() -> ChunkBuilder {
        ChunkBuilder {
            buf: BytesMut::new(),
            count: 0,
        }
    }

    /// Records' octets so far.
    pub fn records_len(&self) -> usize {
        self.buf.len().saturating_sub(CHUNK_HEADER)
    }

    /// Appends one record; `props` writes the properties.
    pub fn push(
        &mut self,
        exchange: &[u8],
        routing_key: &[u8],
        props: impl FnOnce(&mut BytesMut),
        body: &[u8],
    ) {
        if self.buf.is_empty() {
            self.buf.reserve(CHUNK_HEADER + 4096);
            self.buf.put_bytes(0, CHUNK_HEADER);
        }
        let exchange = &exchange[..exchange.len().min(255)];
        let routing_key = &routing_key[..routing_key.len().min(255)];
        let at = self.buf.len();
        self.buf.put_bytes(0, RECORD_HEADER);
        self.buf.put_slice(exchange);
        self.buf.put_slice(routing_key);
        let props_at = self.buf.len();
        props(&mut self.buf);
        let props_len = self.buf.len() - props_at;
        self.buf.put_slice(body);
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self.buf[at + 4] = exchange.len() as u8;
        self.buf[at + 5] = routing_key.len() as u8;
        self.buf[at + 6..at + 10].copy_from_slice(&(props_len as u32).to_be_bytes());
        self.count += 1;
    }

    /// The finished chunk's bytes (header filled in), and an empty builder
    /// again.
    pub fn seal(&mut self, first_offset: u64, timestamp: u64, filter: &[u8]) -> Bytes {
        let records = self.records_len() as u32;
        self.buf.put_slice(filter);
        let b = &mut self.buf[..];
        b[0..4].copy_from_slice(&CHUNK_MAGIC.to_be_bytes());
        b[8..16].copy_from_slice(&first_offset.to_be_bytes());
        b[16..24].copy_from_slice(&timestamp.to_be_bytes());
        b[24..28].copy_from_slice(&self.count.to_be_bytes());
        b[28..32].copy_from_slice(&records.to_be_bytes());
        b[32..36].copy_from_slice(&(filter.len() as u32).to_be_bytes());
        b[36..40].copy_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_be_bytes());
        self.count = 0;
        self.buf.split().freeze()
    }
}

pub(super) fn u32_at(b: &[u8], p: usize) -> u32 {
    u32::from_be_bytes(b[p..p + 4].try_into().expect("4 octets"))
}

pub(super) fn u64_at(b: &[u8], p: usize) -> u64 {
    u64::from_be_bytes(b[p..p + 8].try_into().expect("8 octets"))
}

/// A chunk header's fields: (first offset, timestamp, count, whole length).
pub(super) fn parse_header(h: &[u8]) -> Option<(u64, u64, u32, u64)> {
    if h.len() < CHUNK_HEADER || u32_at(h, 0) != CHUNK_MAGIC {
        return None;
    }
    let len = CHUNK_HEADER as u64 + u32_at(h, 28) as u64 + u32_at(h, 32) as u64;
    Some((u64_at(h, 8), u64_at(h, 16), u32_at(h, 24), len))
}
