//! A queue's never-delivered messages, in arrival (sequence) order: the head
//! in memory, and — beyond the queue's in-memory limit — the tail only on disk,
//! in the queue's page file (`store::page_file`), so a queue can hold tens of
//! millions of messages in bounded memory.
//!
//! Invariants:
//! - Every message in memory comes before every paged one (paging only ever
//!   takes the tail; reading back refills the head in order).
//! - Once anything is paged, new messages are paged too until the page file is
//!   empty again, so the order is kept.
//! - A paged message costs no memory at all (no per-message entry): the page
//!   file is a FIFO read back in batches when the in-memory head runs low.
//! - When the page file cannot be written (disk full), messages stay in
//!   memory: at the head if nothing is paged, else in `overflow`, which
//!   follows the page file, so the order holds either way. Paging is tried
//!   again `PAGE_RETRY` later (the overflow first).
//!
//! Requeued messages are not here: they come back from `Unacked` (in memory)
//! and are served first by the queue (`Queue::requeued`).

use super::latency;
use super::message::{Layout, Message};
use crate::store::page_file::{PageFile, PagedMessage};
use crate::store::segments::Location;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

/// A message waiting in a queue.
pub struct Stored {
    pub seq: u64,
    pub redelivered: bool,
    pub msg: Message,
    /// In the shard's message store (persistent message, durable queue).
    pub loc: Option<Location>,
}

/// When and where queues page message bodies out (one per shard).
#[derive(Debug)]
pub struct PagingConfig {
    /// `<data_dir>/paging/shard-<id>`: wiped at boot (nothing in it outlives
    /// the process; persistent messages are in the message store as well).
    pub dir: PathBuf,
    /// A backlog keeps at most this many messages in memory…
    pub max_messages: usize,
    /// …and at most this many body bytes.
    pub max_bytes: u64,
    /// Size of one page-file chunk (a chunk is deleted once read).
    pub chunk_size: u64,
}

/// A message that stays in memory behind this many others is copied into
/// an allocation of its own (`Message::compacted`) when it arrived sparse:
/// its parts are slices of the publisher's read buffer, and a queue that
/// keeps small messages published between larger ones that went elsewhere
/// would otherwise keep a whole read buffer (64 KiB or more) alive for each
/// (4,000 messages of 4 bytes held 345 MiB). Messages near the head
/// (delivered soon: the hot path) are never copied, so what a queue can pin
/// this way is about this many read buffers.
const COMPACT_BEHIND: usize = 128;
/// "Sparse": more than this (or more than its body, if larger) of other
/// bytes between the end of the previous message's body and the start of
/// this one's, beyond its own method and header frames. Messages that
/// arrived one after the other share their buffers well and are not copied.
const COMPACT_WASTE: usize = 1024;
/// Frame overhead between two consecutive messages' bodies (frame headers
/// and ends, the method's other fields, the content header's fixed part).
const FRAMING: usize = 64;

/// Messages read back from disk per refill (at most).
const REFILL_MESSAGES: usize = 4096;
/// Body bytes read back per refill (at most, beyond one message).
const REFILL_BYTES: u64 = 4 << 20;
/// After a failed page-file write, paging is tried again this much later
/// (µs of the coarse clock).
const PAGE_RETRY: u64 = 5_000_000;

/// A queue's ready messages (see the module doc).
pub struct Backlog {
    mem: VecDeque<Stored>,
    /// Body bytes of every message, in memory and paged.
    bytes: u64,
    mem_bytes: u64,
    paging: Option<Arc<PagingConfig>>,
    /// Page-file name (unique on the shard while the queue lives).
    name: String,
    page: Option<PageFile>,
    /// Paging failed: no paging before this coarse-clock time (µs).
    page_retry_at: u64,
    /// Messages that came while the page file could not be written, after
    /// everything paged (see the module doc); in memory.
    overflow: VecDeque<Stored>,
    /// Where the body of the last message pushed ended, as it arrived.
    last_end: usize,
}

impl Backlog {
    /// An empty backlog; `paging` None keeps everything in memory.
    pub fn new(paging: Option<Arc<PagingConfig>>, name: String) -> Backlog {
        Backlog {
            mem: VecDeque::new(),
            bytes: 0,
            mem_bytes: 0,
            paging,
            name,
            page: None,
            page_retry_at: 0,
            overflow: VecDeque::new(),
            last_end: 0,
        }
    }

    /// Messages, in memory and paged.
    #[inline]
    pub fn len(&self) -> usize {
        self.mem.len() + self.paged() + self.overflow.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty() && self.paged() == 0 && self.overflow.is_empty()
    }

    /// Body bytes of all messages (RabbitMQ's measure for x-max-length-bytes).
    #[inline]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Messages only on disk.
    #[inline]
    pub fn paged(&self) -> usize {
        self.page.as_ref().map_or(0, |p| p.len())
    }

    /// Adds a message at the tail (sequence numbers only grow).
    #[inline]
    pub fn push_back(&mut self, s: Stored) {
        let n = s.msg.body().len() as u64;
        self.bytes += n;
        if !self.overflow.is_empty() {
            self.push_overflow(s);
        } else if self.paged() > 0 || self.over_limit() {
            if let Some(s) = self.page_out(s) {
                if self.paged() > 0 {
                    self.overflow.push_back(s);
                } else {
                    self.mem_bytes += n;
                    self.mem.push_back(s);
                }
            }
        } else {
            self.mem_bytes += n;
            let sparse = self.arrived_sparse(&s.msg);
            let s = if sparse && self.mem.len() >= COMPACT_BEHIND {
                Stored {
                    msg: s.msg.compacted(),
                    ..s
                }
            } else {
                s
            };
            self.mem.push_back(s);
        }
    }

    /// True when `m`'s body is far from where the previous message's ended
    /// in memory (see `COMPACT_WASTE`); remembers where `m`'s ends.
    #[inline]
    fn arrived_sparse(&mut self, m: &Message) -> bool {
        let start = m.body().as_ptr() as usize;
        let prev = std::mem::replace(&mut self.last_end, start + m.body().len());
        let own = m.exchange().len() + m.routing_key().len() + m.properties().len() + FRAMING;
        // Before the previous one (another buffer): a huge gap.
        let waste = start.wrapping_sub(prev).saturating_sub(own);
        waste > COMPACT_WASTE.max(m.body().len())
    }

    #[inline]
    fn over_limit(&self) -> bool {
        match &self.paging {
            Some(p) if self.may_page() => {
                self.mem.len() >= p.max_messages || self.mem_bytes >= p.max_bytes
            }
            _ => false,
        }
    }

    /// Not in the pause after a failed page-file write.
    #[inline]
    fn may_page(&self) -> bool {
        self.page_retry_at == 0 || latency::clock() >= self.page_retry_at
    }

    #[cold]
    fn page_failed(&mut self) {
        self.page_retry_at = latency::clock().max(1) + PAGE_RETRY;
    }

    /// A message behind the overflow: the overflow goes to the page file
    /// first, once paging may be tried again.
    #[cold]
    fn push_overflow(&mut self, s: Stored) {
        self.overflow.push_back(s);
        if !self.may_page() {
            return;
        }
        self.page_retry_at = 0;
        while let Some(o) = self.overflow.pop_front() {
            if let Some(o) = self.page_out(o) {
                self.overflow.push_front(o);
                return;
            }
        }
    }

    /// Writes `s` to the page file; gives it back if that failed.
    #[cold]
    fn page_out(&mut self, s: Stored) -> Option<Stored> {
        let cfg = self.paging.as_ref()?;
        if self.page.is_none() {
            match PageFile::create(&cfg.dir, &self.name, cfg.chunk_size) {
                Ok(p) => self.page = Some(p),
                Err(e) => {
                    log::error!("cannot page out queue messages: {}", e);
                    self.page_failed();
                    return Some(s);
                }
            }
        }
        let page = self.page.as_mut().expect("created");
        let paged = PagedMessage {
            seq: s.seq,
            redelivered: s.redelivered,
            loc: s.loc,
            exchange: s.msg.exchange(),
            routing_key: s.msg.routing_key(),
            properties: s.msg.properties(),
            body: s.msg.body(),
        };
        match page.push(&paged) {
            Ok(()) => None,
            Err(e) => {
                log::error!("cannot page out queue messages: {}", e);
                self.page_failed();
                Some(s)
            }
        }
    }

    /// Takes the head message.
    #[inline]
    pub fn pop_front(&mut self) -> Option<Stored> {
        if self.mem.is_empty() {
            self.refill();
        }
        let s = self.mem.pop_front()?;
        let n = s.msg.body().len() as u64;
        self.mem_bytes -= n;
        self.bytes -= n;
        Some(s)
    }

    /// The head message (reads a batch back from disk if the head is paged).
    pub fn front(&mut self) -> Option<&Stored> {
        if self.mem.is_empty() {
            self.refill();
        }
        self.mem.front()
    }

    /// Refills the empty head: the next batch of paged messages, or, once
    /// the page file is empty, the overflow.
    #[cold]
    fn refill(&mut self) {
        self.refill_from_page();
        if self.paged() == 0 && self.mem.is_empty() && !self.overflow.is_empty() {
            // What waited behind the page file is next.
            std::mem::swap(&mut self.mem, &mut self.overflow);
            self.mem_bytes = self.mem.iter().map(|s| s.msg.body().len() as u64).sum();
        }
    }

    /// Reads the next batch of paged messages into memory.
    fn refill_from_page(&mut self) {
        let Some(page) = self.page.as_mut() else {
            return;
        };
        if page.len() == 0 {
            return;
        }
        let mut read_bytes = 0u64;
        let mut n = 0;
        while n < REFILL_MESSAGES && read_bytes < REFILL_BYTES {
            match page.pop() {
                Ok(Some(m)) => {
                    let len = m.body().len() as u64;
                    read_bytes += len;
                    n += 1;
                    self.mem_bytes += len;
                    self.mem.push_back(Stored {
                        seq: m.seq,
                        redelivered: m.redelivered,
                        loc: m.loc,
                        msg: Message::in_buffer(
                            m.parts,
                            Layout::Packed,
                            m.exchange_len,
                            m.routing_key_len,
                            m.properties_len,
                        )
                        .expect("page records hold short strings"),
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    // The scratch file is unreadable: what is left of it is
                    // lost (logged loudly; persistent messages come back at
                    // the next restart from the message store).
                    log::error!(
                        "queue page file {}: {} messages unreadable: {}",
                        self.name,
                        page.len(),
                        e
                    );
                    let lost = page.paged_bytes();
                    self.bytes = self.bytes.saturating_sub(lost);
                    self.page = None;
                    self.page_failed();
                    break;
                }
            }
        }
        if self.page.as_ref().is_some_and(|p| p.len() == 0) {
            self.page = None; // deletes the files
        }
    }

    /// Removes every message, in order, handing each to `f` (purge, delete).
    /// Paged messages are read back from disk only if some of them are in the
    /// message store (their locations are needed); otherwise the files go.
    pub fn drain_each(&mut self, mut f: impl FnMut(Stored)) {
        loop {
            for s in self.mem.drain(..) {
                f(s);
            }
            self.mem_bytes = 0;
            match &self.page {
                Some(p) if p.has_stored() => self.refill(),
                _ => break,
            }
        }
        self.page = None;
        for s in self.overflow.drain(..) {
            f(s);
        }
        self.bytes = 0;
    }

    /// Store locations of every message (queue deletion). Paged ones are read
    /// from the page file without taking them out.
    pub fn locations(&self, mut f: impl FnMut(Location)) {
        for s in &self.mem {
            if let Some(loc) = s.loc {
                f(loc);
            }
        }
        if let Some(p) = self.page.as_ref().filter(|p| p.has_stored()) {
            if let Err(e) = p.for_each_location(&mut f) {
                log::error!("queue page file {}: {}", self.name, e);
            }
        }
        self.overflow.iter().filter_map(|s| s.loc).for_each(f);
    }

    /// The in-memory message `seq`, for updating its store location
    /// (compaction). Paged messages are not reachable (None).
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Stored> {
        if let Ok(i) = self.mem.binary_search_by_key(&seq, |s| s.seq) {
            return self.mem.get_mut(i);
        }
        let i = self.overflow.binary_search_by_key(&seq, |s| s.seq).ok()?;
        self.overflow.get_mut(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fault::{self, Op};
    use bytes::Bytes;
    use std::time::{Duration, Instant};

    fn msg(seq: u64) -> Stored {
        Stored {
            seq,
            redelivered: false,
            msg: Message::from_amqp091(
                Bytes::new(),
                Bytes::from_static(b"q"),
                Bytes::new(),
                // Larger than the page file's write buffer: every push writes.
                Bytes::from(vec![seq as u8; 300 << 10]),
            ),
            loc: None,
        }
    }

    #[test]
    fn a_failing_page_file_keeps_messages_in_order_and_paging_resumes() {
        let dir = std::env::temp_dir().join(format!("warren-backlog-{}", std::process::id()));
        let cfg = Arc::new(PagingConfig {
            dir: dir.clone(),
            max_messages: 2,
            max_bytes: u64::MAX,
            chunk_size: 1,
        });
        let t0 = Instant::now();
        latency::set_clock(t0 + Duration::from_secs(1));
        let mut b = Backlog::new(Some(cfg), "q".into());
        for seq in 0..5 {
            b.push_back(msg(seq));
        }
        assert_eq!(b.paged(), 3);
        // The disk fills: nothing more is paged, nothing is lost, and what
        // comes waits behind the page file.
        fault::inject(&dir, Op::Write, u64::MAX, libc::ENOSPC);
        for seq in 5..10 {
            b.push_back(msg(seq));
        }
        assert_eq!(b.len(), 10);
        assert!(b.paged() <= 4, "{} paged", b.paged());
        // Space is back; after the pause, paging goes on (overflow first).
        fault::clear(&dir);
        latency::set_clock(t0 + Duration::from_secs(10));
        for seq in 10..14 {
            b.push_back(msg(seq));
        }
        assert!(b.paged() >= 8, "paging resumed: {} paged", b.paged());
        assert_eq!(b.len(), 14);
        let mut got = Vec::new();
        while let Some(s) = b.pop_front() {
            got.push(s.seq);
        }
        assert_eq!(got, (0..14).collect::<Vec<_>>());
        assert!(b.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
