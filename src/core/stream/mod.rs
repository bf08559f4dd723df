//! Streams (`x-queue-type=stream`): append-only, replayable queues, as
//! RabbitMQ's `rabbit_stream_queue` offers them over AMQP 0-9-1.
//!
//! A stream is a `Queue` whose `stream` holds one of these. Messages are
//! never removed by consumers: each consumer reads the log at its own
//! offset (`reader::Cursor`), and acknowledgements only return credit.
//! The log is on disk (`store::stream_log`, one directory per stream);
//! retention deletes whole segments from the head (`x-max-length-bytes`,
//! `x-max-age`).
//!
//! The path of a message: `ShardCtx::handle_queue_msg` gives a publish to
//! `Stream::append`, which copies it into the chunk being built with its
//! `x-stream-offset` header added (the offset is known then, so every reader
//! gets the bytes as stored); the publisher's confirm is held by the
//! shard's store. At the end of the loop iteration
//! `ShardCtx::end_store_iteration` seals the chunk (`Stream::write_chunk`),
//! writes it, hands the written files to the store's syncer (so the fsync
//! that releases the confirms covers them) and dispatches: consumers read
//! the new chunk from the `ChunkCache`, as slices of its buffer.

pub mod args;
pub mod filter;
pub mod reader;
pub mod tracking;

use super::error::CoreError;
use super::ids::{ChannelRef, ConsumerRef, QueueRef};
use super::message::Message;
use super::outbox::Outbox;
use super::queue::Credit;
use super::shard_msg::{ConsumeMode, ConsumeSpec, ShardMsg};
use super::stats::{MsgStats, ReaderSnap, StreamSnap};
use super::vhost::resource;
use crate::protocol::properties::put_with_header_entry;
use crate::store::stream_log::{ChunkBuilder, StreamLog, MAX_CHUNK_BYTES};
use args::{OffsetSpec, StreamArgs};
use bytes::BufMut;
use reader::{ChunkCache, Cursor};
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The directory of the stream with store id `store_id`.
pub fn stream_dir(data_dir: &Path, store_id: u64) -> PathBuf {
    data_dir.join("streams").join(format!("{store_id:016x}"))
}

/// Boot: deletes the stream directories of no stream in the definitions
/// (a stream deleted by a broker that stopped before its files were gone).
pub fn remove_orphans(data_dir: &Path, keep: &std::collections::HashSet<u64>) {
    let Ok(dirs) = std::fs::read_dir(data_dir.join("streams")) else {
        return;
    };
    for d in dirs.flatten() {
        let name = d.file_name();
        let id = u64::from_str_radix(&name.to_string_lossy(), 16).ok();
        if id.is_some_and(|id| keep.contains(&id)) {
            continue;
        }
        log::warn!(
            "deleting {}: no stream in the definitions has it",
            d.path().display()
        );
        if let Err(e) = std::fs::remove_dir_all(d.path()) {
            log::warn!("cannot delete {}: {e}", d.path().display());
        }
    }
}

/// How often retention is looked at besides when a segment fills (ms).
const RETENTION_EVERY_MS: u64 = 1000;

struct StreamConsumer {
    r: ConsumerRef,
    /// Its consumer tag (management API, offset tracking).
    tag: bytes::Bytes,
    /// basic.qos prefetch: deliveries not yet acknowledged, at most.
    prefetch: u32,
    /// Deliveries not yet acknowledged, in delivery order: (sequence
    /// number, offset).
    unacked: VecDeque<(u64, u64)>,
    /// `x-stream-filter`: only these messages are delivered.
    filter: Option<filter::Filter>,
    /// Its acks move its tracked offset (`tracking`).
    tracked: bool,
    /// An AMQP 1.0 link: paced by link credit, not a prefetch.
    credit: Option<Credit>,
    /// Settled deliveries (1.0 `snd-settle-mode settled`): nothing to ack.
    no_ack: bool,
    cursor: Cursor,
    /// The connection's "too much unsent output" flag.
    output_full: Arc<AtomicBool>,
    /// The consumer's connection is moving to another shard.
    held: bool,
}

/// What `Stream::dispatch` stopped on.
#[derive(Debug, PartialEq, Eq)]
pub enum Dispatched {
    /// Every consumer is out of credit or at the end of the log.
    Done,
    /// A consumer's shard is congested: try again on `Resume`.
    Congested,
}

pub struct Stream {
    log: StreamLog,
    args: StreamArgs,
    /// The chunk being appended (this loop iteration's messages).
    building: ChunkBuilder,
    /// The shard lists this stream for `write_chunk` (`ShardCtx`).
    pub listed: bool,
    consumers: Vec<StreamConsumer>,
    cache: ChunkCache,
    /// Sequence numbers of deliveries (what acks name), one per delivery.
    next_seq: u64,
    /// When retention was last looked at (ms since the epoch).
    retention_at: u64,
    /// Consumers' stored offsets (`tracking`).
    offsets: tracking::Offsets,
    /// The filter of the chunk being built (`filter`).
    bloom: filter::Bloom,
    /// Reused for a sealed chunk's filter area.
    filter_area: Vec<u8>,
}

impl Stream {
    /// Opens (or creates) the stream's log in `dir`.
    /// `clean`: the last run shut down cleanly (`store::clean`).
    pub fn open(
        dir: &Path,
        arguments: &crate::protocol::FieldTable,
        clean: bool,
    ) -> io::Result<Stream> {
        let args = StreamArgs::parse(arguments);
        let log = StreamLog::open_with(dir, args.segment_size, clean)?;
        let offsets = tracking::Offsets::open(dir)?;
        let bloom_bytes = arguments
            .get("x-stream-filter-size-bytes")
            .and_then(crate::protocol::FieldValue::as_i64)
            .map_or(filter::DEFAULT_BLOOM_BYTES, |n| n.clamp(16, 255) as usize);
        Ok(Stream {
            offsets,
            bloom: filter::Bloom::new(bloom_bytes),
            filter_area: Vec::new(),
            log,
            args,
            building: ChunkBuilder::new(),
            listed: false,
            consumers: Vec::new(),
            cache: ChunkCache::default(),
            next_seq: 1,
            retention_at: 0,
        })
    }

    /// The offset the next appended message gets.
    pub fn next_offset(&self) -> u64 {
        self.log.next_offset() + self.building.count as u64
    }

    /// Messages kept (written; the chunk being built not counted).
    pub fn messages(&self) -> u64 {
        self.log.next_offset() - self.log.first_offset()
    }

    /// Octets on disk.
    pub fn bytes(&self) -> u64 {
        self.log.size()
    }

    /// Octets of chunks held in memory for readers.
    pub fn snapshot_cached_bytes(&self) -> u64 {
        self.cache.bytes() as u64
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Appends a message to the chunk being built, with its offset in the
    /// `x-stream-offset` header. Returns true when the chunk is full and
    /// should be written now (`write_chunk`) rather than at the end of the
    /// iteration.
    pub fn append(&mut self, msg: &Message) -> bool {
        let offset = self.next_offset();
        let props = msg.properties();
        if crate::protocol::properties::raw_has_headers(props) {
            let v = filter::value_of(&msg.properties_bytes());
            self.bloom.add(v.as_deref());
        } else {
            self.bloom.add(None);
        }
        self.building.push(
            msg.exchange(),
            msg.routing_key(),
            |out| {
                let mut entry = [0u8; 1 + 15 + 1 + 8];
                entry[0] = 15;
                entry[1..16].copy_from_slice(b"x-stream-offset");
                entry[16] = b'l';
                entry[17..].copy_from_slice(&(offset as i64).to_be_bytes());
                if !put_with_header_entry(props, &entry, out) {
                    out.put_slice(props);
                }
            },
            msg.body(),
        );
        self.building.records_len() >= MAX_CHUNK_BYTES
    }

    /// Seals and writes the chunk being built (if any) and hands the
    /// files written to `files` (for the syncer). On an error the chunk is
    /// dropped: its messages' confirms are nacked by the caller, and the
    /// next chunk takes their offsets.
    pub fn write_chunk(&mut self, now_ms: u64, files: &mut Vec<Arc<File>>) -> io::Result<()> {
        if self.building.count == 0 {
            return Ok(());
        }
        let first = self.log.next_offset();
        self.bloom.take(&mut self.filter_area);
        let bytes = self.building.seal(first, now_ms, &self.filter_area);
        let segments = self.log.segment_count();
        let chunk = self.log.append(bytes)?;
        // Kept for live readers; a stream nobody reads keeps nothing.
        if !self.consumers.is_empty() {
            self.cache.insert(chunk);
        }
        if self.log.segment_count() != segments {
            self.retain(now_ms);
        }
        self.log.take_written(files);
        Ok(())
    }

    /// Writes the tracked offsets that moved (`tracking`); the file goes to
    /// `files` for the syncer.
    pub fn write_offsets(&mut self, files: &mut Vec<Arc<File>>) -> io::Result<()> {
        self.offsets.flush(files)
    }

    /// Tracked offsets changed since they were last written.
    pub fn offsets_dirty(&self) -> bool {
        self.offsets.is_dirty()
    }

    /// Deletes segments past the retention limits; the stream's files
    /// changed go to `files`.
    fn retain(&mut self, now_ms: u64) {
        self.retention_at = now_ms;
        if self.args.max_bytes == 0 && self.args.max_age_ms == 0 {
            return;
        }
        let n = self
            .log
            .retain(self.args.max_bytes, self.args.max_age_ms, now_ms);
        if n > 0 {
            log::debug!(
                "stream {}: retention deleted {n} segment(s); first offset now {}",
                self.log.dir().display(),
                self.log.first_offset()
            );
        }
    }

    /// The shard's tick: age retention, now and then.
    pub fn tick(&mut self, now_ms: u64, files: &mut Vec<Arc<File>>) {
        if now_ms >= self.retention_at + RETENTION_EVERY_MS {
            self.retain(now_ms);
            self.log.take_written(files);
        }
    }

    /// basic.consume, with RabbitMQ's refusals in its order
    /// (`rabbit_stream_queue:consume`).
    pub fn consume(
        &mut self,
        spec: &ConsumeSpec,
        vhost: &str,
        name: &str,
        now_ms: u64,
    ) -> Result<(), CoreError> {
        let q = resource(vhost, "queue", name);
        let (prefetch, credit) = match spec.mode {
            ConsumeMode::Prefetch(n) => (n, None),
            // AMQP 1.0 (RabbitMQ 4): link credit paces, settled is allowed.
            ConsumeMode::Credit {
                credit,
                delivery_count,
            } => (
                0,
                Some(Credit {
                    credit,
                    delivery_count,
                }),
            ),
        };
        if credit.is_none() && prefetch == 0 {
            return Err(CoreError::precondition(format!(
                "consumer prefetch count is not set for '{q}'"
            )));
        }
        if credit.is_none() && spec.no_ack {
            return Err(CoreError::NotImplemented(format!(
                "automatic acknowledgement not supported by stream queues {q}"
            )));
        }
        if credit.is_none() && spec.window.limit.load(Ordering::Relaxed) != 0 {
            return Err(CoreError::NotImplemented(format!(
                "{q} does not support global qos"
            )));
        }
        // The consumer arguments RabbitMQ knows but a stream does not take.
        for arg in ["x-priority", "x-cancel-on-ha-failover"] {
            if spec.arguments.get(arg).is_some() {
                return Err(CoreError::precondition(format!(
                    "invalid arg '{arg}' for {q} of queue type rabbit_stream_queue"
                )));
            }
        }
        // RabbitMQ 3.13 crashes the channel (541) on the forms that are not
        // even interval-shaped (`bogus`, a bool); they get the 406 here.
        let spec_offset = OffsetSpec::parse(spec.arguments.get("x-stream-offset"), now_ms)
            .map_err(|v| {
                CoreError::precondition(format!(
                    "invalid arg 'x-stream-offset' for {q}: {{invalid_stream_offset_arg,{v}}}"
                ))
            })?;
        let filter = filter::Filter::parse(&spec.arguments);
        let tracked = tracking::is_tracked(&spec.tag, &spec.arguments);
        let explicit = spec.arguments.get("x-stream-offset").is_some();
        let spec_offset = match self.offsets.get(&spec.tag) {
            Some(next) if tracked && !explicit => OffsetSpec::Offset(next),
            _ => spec_offset,
        };
        let io = |e: io::Error| CoreError::internal(format!("stream {q}: {e}"));
        let cursor = match spec_offset {
            OffsetSpec::First => Cursor::at(self.log.start(), 0),
            OffsetSpec::Last => match self.log.last_chunk() {
                Some((at, first)) => Cursor::at(at, first),
                None => Cursor::at(self.log.end(), self.next_offset()),
            },
            OffsetSpec::Next => Cursor::at(self.log.end(), self.next_offset()),
            OffsetSpec::Offset(n) => Cursor::at(self.log.seek_offset(n).map_err(io)?, n),
            OffsetSpec::Timestamp(ts) => Cursor::at(self.log.seek_timestamp(ts).map_err(io)?, 0),
        };
        self.consumers.push(StreamConsumer {
            r: spec.consumer,
            tag: spec.tag.clone(),
            prefetch,
            unacked: VecDeque::new(),
            cursor,
            output_full: spec.output_full.clone(),
            held: false,
            filter,
            tracked,
            credit,
            no_ack: spec.no_ack,
        });
        Ok(())
    }

    /// A link's `flow`: the credit it grants (None: not a credit-paced
    /// consumer of this stream).
    pub fn grant(&mut self, r: ConsumerRef, delivery_count: u32, credit: u32) -> Option<()> {
        let c = self.consumers.iter_mut().find(|c| c.r == r)?;
        c.credit.as_mut()?.grant(delivery_count, credit);
        Some(())
    }

    /// The link's credit after delivering what it allowed; with `drain`,
    /// what is left is spent.
    pub fn credit_after(&mut self, r: ConsumerRef, drain: bool) -> Option<Credit> {
        let c = self.consumers.iter_mut().find(|c| c.r == r)?;
        let k = c.credit.as_mut()?;
        if drain {
            k.drain();
        }
        Some(*k)
    }

    /// basic.cancel; true if `r` was a consumer.
    pub fn cancel(&mut self, r: ConsumerRef) -> bool {
        let before = self.consumers.len();
        self.consumers.retain(|c| c.r != r);
        self.after_consumers_left();
        self.consumers.len() != before
    }

    /// The channel closed: its consumers go (nothing to requeue).
    pub fn channel_gone(&mut self, channel: ChannelRef) -> bool {
        let before = self.consumers.len();
        self.consumers.retain(|c| c.r.channel != channel);
        self.after_consumers_left();
        self.consumers.len() != before
    }

    /// Without readers the cache goes: an idle stream holds no chunks.
    fn after_consumers_left(&mut self) {
        if self.consumers.is_empty() {
            self.cache.clear();
        }
    }

    /// The channel moved to another shard with its connection.
    pub fn rehome(&mut self, from: ChannelRef, to: ChannelRef) {
        for c in self.consumers.iter_mut().filter(|c| c.r.channel == from) {
            c.r.channel = to;
            c.held = false;
        }
    }

    /// The channel's connection is about to move (`hold`) or moved
    /// (`release`): its consumers wait meanwhile.
    pub fn hold(&mut self, channel: ChannelRef, held: bool) {
        for c in self.consumers.iter_mut().filter(|c| c.r.channel == channel) {
            c.held = held;
        }
    }

    /// ack, nack or reject of `count` deliveries from `seq` on: all only
    /// return credit (RabbitMQ 3.13: a stream removes nothing). Returns how
    /// many were known.
    pub fn settle(&mut self, channel: ChannelRef, seq: u64, count: u32, ack: bool) -> u64 {
        let mut known = 0;
        for s in seq..seq + count as u64 {
            for c in self.consumers.iter_mut().filter(|c| c.r.channel == channel) {
                let i = match c.unacked.front() {
                    Some(&(f, _)) if f == s => 0,
                    _ => match c.unacked.binary_search_by_key(&s, |&(q, _)| q) {
                        Ok(i) => i,
                        Err(_) => continue,
                    },
                };
                let (_, offset) = c.unacked.remove(i).expect("found");
                if ack && c.tracked {
                    self.offsets.acked(&c.tag, offset);
                }
                known += 1;
                break;
            }
        }
        known
    }

    /// Delivers to every consumer what its credit allows from where it is.
    pub fn dispatch(&mut self, me: QueueRef, out: &mut Outbox, stats: &mut MsgStats) -> Dispatched {
        let mut result = Dispatched::Done;
        for c in &mut self.consumers {
            loop {
                let room = match &c.credit {
                    Some(k) => k.credit > 0,
                    None => c.unacked.len() < c.prefetch as usize,
                };
                if c.held || !room || c.output_full.load(Ordering::Relaxed) {
                    break;
                }
                if out.is_congested(c.r.channel.shard) {
                    result = Dispatched::Congested;
                    break;
                }
                let read = match c.cursor.next(&self.log, &mut self.cache, c.filter.as_ref()) {
                    Ok(Some(read)) => read,
                    Ok(None) => break,
                    Err(e) => {
                        log::error!(
                            "stream {}: read failed at offset {}: {e}",
                            self.log.dir().display(),
                            c.cursor.offset
                        );
                        break;
                    }
                };
                if let Some(f) = &c.filter {
                    if !f.matches(&read.msg.properties_bytes()) {
                        continue;
                    }
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                if let Some(k) = c.credit.as_mut() {
                    k.spend();
                }
                if !c.no_ack {
                    c.unacked.push_back((seq, read.offset));
                } else if c.tracked {
                    self.offsets.acked(&c.tag, read.offset);
                }
                if c.no_ack {
                    stats.deliver_no_ack += 1;
                } else {
                    stats.deliver += 1;
                }
                out.push(
                    c.r.channel.shard,
                    ShardMsg::Deliver {
                        consumer: c.r,
                        queue: me,
                        seq,
                        redelivered: false,
                        msg: read.msg,
                    },
                );
            }
        }
        result
    }

    /// The management API's view.
    pub fn snapshot(&self) -> StreamSnap {
        let next = self.log.next_offset();
        StreamSnap {
            first_offset: self.log.first_offset(),
            next_offset: next,
            segments: self.log.segment_count() as u64,
            cached_bytes: self.cache.bytes() as u64,
            readers: self
                .consumers
                .iter()
                .map(|c| ReaderSnap {
                    tag: String::from_utf8_lossy(&c.tag).into_owned(),
                    offset: c.cursor.offset,
                    offset_lag: next.saturating_sub(c.cursor.offset),
                })
                .collect(),
        }
    }

    /// Every consumer (queue deletion: they are cancelled).
    pub fn drain_consumers(&mut self) -> impl Iterator<Item = ConsumerRef> + '_ {
        self.consumers.drain(..).map(|c| c.r)
    }

    /// Syncs all the stream's files (shutdown).
    pub fn sync_all(&self) -> io::Result<()> {
        self.log.sync_all()
    }

    /// Deletes the stream's files (the queue was deleted).
    pub fn destroy(self) {
        self.log.destroy();
    }
}
