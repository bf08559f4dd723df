//! The shard messages' parts as the link puts them on the wire between
//! nodes (`remote.rs`): refs, queue operations and their answers, errors,
//! messages. Integers big-endian; a decoder returns `None` on anything
//! short or unknown (the frame is then dropped with a warning).

use crate::core::error::CoreError;
use crate::core::ids::{ChannelRef, QueueRef};
use crate::core::message::Message;
use crate::core::shard_msg::{ConsumeMode, QueueOp, QueueReply, Settle};
use crate::protocol::FieldTable;

/// A cursor over a frame's payload.
pub(super) struct Rd<'a> {
    p: &'a [u8],
    at: usize,
}

impl<'a> Rd<'a> {
    pub(super) fn new(p: &'a [u8]) -> Rd<'a> {
        Rd { p, at: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.p.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(super) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
    pub(super) fn channel(&mut self) -> Option<ChannelRef> {
        Some(ChannelRef {
            shard: self.u16()?,
            channel: self.u16()?,
            conn_slot: self.u32()?,
            incarnation: self.u32()?,
        })
    }
    pub(super) fn queue(&mut self) -> Option<QueueRef> {
        Some(QueueRef {
            shard: self.u16()?,
            slot: self.u32()?,
            gen: self.u32()?,
        })
    }
    pub(super) fn message(&mut self) -> Option<Message> {
        let x = self.bytes()?;
        let rk = self.bytes()?;
        let props = self.bytes()?;
        let body = self.bytes()?;
        Some(Message::new(x, rk, props, body))
    }
    fn table(&mut self) -> Option<FieldTable> {
        let raw = self.bytes()?;
        let mut r = crate::protocol::reader::Reader::new(bytes::Bytes::copy_from_slice(raw));
        r.table().ok()
    }
    pub(super) fn error(&mut self) -> Option<CoreError> {
        let kind = self.u8()?;
        let text = self.str()?.to_string();
        Some(match kind {
            0 => CoreError::NotFound(text),
            1 => CoreError::AccessRefused(text),
            2 => CoreError::ResourceLocked(text),
            3 => CoreError::PreconditionFailed(text),
            4 => CoreError::NotImplemented(text),
            6 => CoreError::Unavailable(text),
            _ => CoreError::Internal(text),
        })
    }
    pub(super) fn settle(&mut self) -> Option<Settle> {
        Some(match self.u8()? {
            0 => Settle::Ack,
            1 => Settle::Requeue,
            _ => Settle::Discard,
        })
    }
}

/// Appends to a frame being written.
pub(super) trait Wr {
    fn put(&mut self, b: &[u8]);
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.put(b);
    }
    fn channel(&mut self, c: ChannelRef) {
        self.u16(c.shard);
        self.u16(c.channel);
        self.u32(c.conn_slot);
        self.u32(c.incarnation);
    }
    fn queue(&mut self, q: QueueRef) {
        self.u16(q.shard);
        self.u32(q.slot);
        self.u32(q.gen);
    }
    fn message(&mut self, m: &Message) {
        self.bytes(m.exchange());
        self.bytes(m.routing_key());
        self.bytes(m.properties());
        self.bytes(m.body());
    }
    fn table(&mut self, t: &FieldTable) {
        let mut raw = Vec::new();
        t.encode(&mut raw);
        self.bytes(&raw);
    }
    fn error(&mut self, e: &CoreError) {
        let (kind, text) = match e {
            CoreError::NotFound(t) => (0, t),
            CoreError::AccessRefused(t) => (1, t),
            CoreError::ResourceLocked(t) => (2, t),
            CoreError::PreconditionFailed(t) => (3, t),
            CoreError::NotImplemented(t) => (4, t),
            CoreError::Internal(t) => (5, t),
            CoreError::Unavailable(t) => (6, t),
        };
        self.u8(kind);
        self.bytes(text.as_bytes());
    }
    fn settle(&mut self, s: Settle) {
        self.u8(match s {
            Settle::Ack => 0,
            Settle::Requeue => 1,
            Settle::Discard => 2,
        });
    }
}

impl Wr for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// A `QueueOp` on the wire. A consume carries what the owning node needs
/// to build the `ConsumeSpec` (its consumer ref names the proxy channel
/// there, and its window and output flag are the proxy's own).
pub(super) enum WireOp {
    Op(QueueOp),
    Consume {
        id: u32,
        conn_uid: u64,
        no_ack: bool,
        exclusive: bool,
        mode: ConsumeMode,
        window: u32,
        arguments: FieldTable,
        tag: bytes::Bytes,
    },
}

pub(super) fn put_op(w: &mut Vec<u8>, op: &QueueOp) -> bool {
    match op {
        QueueOp::Status => w.u8(0),
        QueueOp::Purge => w.u8(1),
        QueueOp::Delete {
            if_unused,
            if_empty,
        } => {
            w.u8(2);
            w.u8(*if_unused as u8);
            w.u8(*if_empty as u8);
        }
        QueueOp::Consume(spec) => {
            w.u8(3);
            w.u32(spec.consumer.id);
            w.u64(spec.conn_uid);
            w.u8(spec.no_ack as u8);
            w.u8(spec.exclusive as u8);
            match spec.mode {
                ConsumeMode::Prefetch(n) => {
                    w.u8(0);
                    w.u32(n);
                    w.u32(0);
                }
                ConsumeMode::Credit {
                    credit,
                    delivery_count,
                } => {
                    w.u8(1);
                    w.u32(credit);
                    w.u32(delivery_count);
                }
            }
            w.u32(spec.window.limit.load(std::sync::atomic::Ordering::Relaxed));
            w.table(&spec.arguments);
            w.bytes(&spec.tag);
        }
        QueueOp::Cancel { consumer } => {
            w.u8(4);
            w.u32(consumer.id);
        }
        QueueOp::Get { no_ack } => {
            w.u8(5);
            w.u8(*no_ack as u8);
        }
        QueueOp::Credit {
            consumer,
            delivery_count,
            credit,
            drain,
            echo,
        } => {
            w.u8(6);
            w.u32(consumer.id);
            w.u32(*delivery_count);
            w.u32(*credit);
            w.u8(*drain as u8);
            w.u8(*echo as u8);
        }
        // A connection never moves for a queue on another node.
        QueueOp::Hold { .. } | QueueOp::Release { .. } => return false,
    }
    true
}

/// Reads an op; consumer refs inside are rebuilt by the caller on
/// `channel` (the proxy channel on the owning node).
pub(super) fn get_op(r: &mut Rd<'_>, channel: ChannelRef) -> Option<WireOp> {
    use crate::core::ids::ConsumerRef;
    Some(match r.u8()? {
        0 => WireOp::Op(QueueOp::Status),
        1 => WireOp::Op(QueueOp::Purge),
        2 => WireOp::Op(QueueOp::Delete {
            if_unused: r.u8()? != 0,
            if_empty: r.u8()? != 0,
        }),
        3 => {
            let id = r.u32()?;
            let conn_uid = r.u64()?;
            let no_ack = r.u8()? != 0;
            let exclusive = r.u8()? != 0;
            let mode = match r.u8()? {
                0 => {
                    let n = r.u32()?;
                    r.u32()?;
                    ConsumeMode::Prefetch(n)
                }
                _ => ConsumeMode::Credit {
                    credit: r.u32()?,
                    delivery_count: r.u32()?,
                },
            };
            let window = r.u32()?;
            let arguments = r.table()?;
            let tag = bytes::Bytes::copy_from_slice(r.bytes()?);
            WireOp::Consume {
                id,
                conn_uid,
                no_ack,
                exclusive,
                mode,
                window,
                arguments,
                tag,
            }
        }
        4 => WireOp::Op(QueueOp::Cancel {
            consumer: ConsumerRef {
                channel,
                id: r.u32()?,
            },
        }),
        5 => WireOp::Op(QueueOp::Get {
            no_ack: r.u8()? != 0,
        }),
        6 => WireOp::Op(QueueOp::Credit {
            consumer: ConsumerRef {
                channel,
                id: r.u32()?,
            },
            delivery_count: r.u32()?,
            credit: r.u32()?,
            drain: r.u8()? != 0,
            echo: r.u8()? != 0,
        }),
        _ => return None,
    })
}

pub(super) fn put_reply(w: &mut Vec<u8>, reply: &QueueReply) {
    match reply {
        QueueReply::Status {
            messages,
            consumers,
        } => {
            w.u8(0);
            w.u32(*messages);
            w.u32(*consumers);
        }
        QueueReply::Purged { messages } => {
            w.u8(1);
            w.u32(*messages);
        }
        QueueReply::Deleted { messages } => {
            w.u8(2);
            w.u32(*messages);
        }
        QueueReply::Consumed => w.u8(3),
        QueueReply::Cancelled => w.u8(4),
        QueueReply::GetOk {
            seq,
            redelivered,
            messages,
            msg,
        } => {
            w.u8(5);
            w.u64(*seq);
            w.u8(*redelivered as u8);
            w.u32(*messages);
            w.message(msg);
        }
        QueueReply::GetEmpty => w.u8(6),
        QueueReply::Held => w.u8(7),
        QueueReply::Credit {
            consumer,
            delivery_count,
            credit,
            drain,
        } => {
            w.u8(8);
            w.u32(consumer.id);
            w.u32(*delivery_count);
            w.u32(*credit);
            w.u8(*drain as u8);
        }
        QueueReply::Error(e) => {
            w.u8(9);
            w.error(e);
        }
        QueueReply::Gone => w.u8(10),
    }
}

pub(super) fn get_reply(r: &mut Rd<'_>, channel: ChannelRef) -> Option<QueueReply> {
    use crate::core::ids::ConsumerRef;
    Some(match r.u8()? {
        0 => QueueReply::Status {
            messages: r.u32()?,
            consumers: r.u32()?,
        },
        1 => QueueReply::Purged { messages: r.u32()? },
        2 => QueueReply::Deleted { messages: r.u32()? },
        3 => QueueReply::Consumed,
        4 => QueueReply::Cancelled,
        5 => QueueReply::GetOk {
            seq: r.u64()?,
            redelivered: r.u8()? != 0,
            messages: r.u32()?,
            msg: r.message()?,
        },
        6 => QueueReply::GetEmpty,
        7 => QueueReply::Held,
        8 => QueueReply::Credit {
            consumer: ConsumerRef {
                channel,
                id: r.u32()?,
            },
            delivery_count: r.u32()?,
            credit: r.u32()?,
            drain: r.u8()? != 0,
        },
        9 => QueueReply::Error(r.error()?),
        10 => QueueReply::Gone,
        _ => return None,
    })
}
