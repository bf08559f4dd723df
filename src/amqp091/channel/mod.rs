//! An AMQP channel: RabbitMQ's `rabbit_channel`. Handlers are named after the AMQP
//! methods they implement and live in one file per class:
//! - `exchange_methods.rs`: exchange.declare / delete / bind / unbind
//! - `queue_methods.rs`: queue.declare / bind / unbind / purge / delete
//! - `basic_methods.rs`: basic.qos / consume / cancel / get / ack / nack / reject / recover
//! - `publish.rs`: basic.publish, content assembly, confirms, tx
//! - `replies.rs`: answers from queues (continuations) and deliveries
//! - `publish_checks.rs`: what basic.publish checks before routing (user-id,
//!   direct reply-to, exchange errors first)
//! - `direct_reply.rs`: the `amq.rabbitmq.reply-to` pseudo-queue
//!
//! A channel owns no queue state. It sends requests and settlements to the
//! queues' shards and keeps only what AMQP makes per-channel: delivery tags,
//! consumer tags, the prefetch window, confirm and tx state.

mod basic_methods;
mod direct_reply;
mod exchange_methods;
mod publish;
mod publish_checks;
mod queue_methods;
mod replies;
mod snapshot;

use super::conn_info::ConnInfo;
use super::error::AmqpError;
use crate::core::auth::permissions::Access;
use crate::core::ids::{ChannelRef, QueueRef, Requester};
use crate::core::ops::Caller;
use crate::core::routing::LocalQueue;
use crate::core::shard_msg::{ChannelWindow, QueueOp, ShardMsg};
use crate::core::stats::MsgStats;
use crate::core::ShardCtx;
use crate::protocol::methods::*;
use crate::protocol::{write_method, Method};
use bytes::Bytes;
use publish::{Content, Tx};
use std::collections::VecDeque;
use std::sync::Arc;

/// What a channel handler needs besides the channel: the shard and the
/// connection's output buffer and facts.
pub struct ChanCx<'a> {
    pub ctx: &'a mut ShardCtx,
    pub wbuf: &'a mut Vec<u8>,
    pub info: &'a mut ConnInfo,
}

/// The core's view of who calls: this channel's connection and its rights.
fn caller(info: &ConnInfo) -> Caller<'_> {
    Caller {
        conn_uid: info.uid,
        access: &info.access,
    }
}

/// Whether the connection may go on with the next frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// A request to a queue is outstanding; resume on its reply.
    Wait,
}

pub type ChanResult = Result<Flow, AmqpError>;

/// A delivery the client has not acknowledged yet.
#[derive(Clone, Copy, Debug)]
struct Unacked {
    tag: u64,
    queue: QueueRef,
    seq: u64,
    /// Counts against the channel-wide prefetch window (consumer deliveries do,
    /// basic.get does not).
    windowed: bool,
}

/// A consumer of this channel.
struct ConsumerEntry {
    id: u32,
    tag: Bytes,
    queue: QueueRef,
    no_ack: bool,
    /// For the management API's consumer list.
    info: Box<ConsumerInfo>,
}

/// What the management API shows of a consumer beyond what routing needs.
struct ConsumerInfo {
    queue_name: String,
    prefetch: u32,
    exclusive: bool,
    arguments: crate::protocol::FieldTable,
}

/// What the channel waits for from a queue, and how to finish the method.
enum Awaiting {
    Declare {
        name: String,
        nowait: bool,
    },
    Purge {
        name: String,
        nowait: bool,
    },
    Delete {
        name: String,
        nowait: bool,
    },
    Consume {
        name: String,
        tag: Bytes,
        id: u32,
        nowait: bool,
    },
    Cancel {
        tag: Bytes,
        id: u32,
        nowait: bool,
    },
    Get {
        name: String,
        no_ack: bool,
    },
}

pub struct Channel {
    pub me: ChannelRef,
    /// We sent channel.close and wait for close-ok; input is discarded.
    pub closing: bool,
    content: Content,
    next_tag: u64,
    /// Sorted by tag (tags only grow).
    unacked: VecDeque<Unacked>,
    consumers: Vec<ConsumerEntry>,
    next_consumer_id: u32,
    /// basic.qos global=false: prefetch for consumers created from now on.
    consumer_prefetch: u32,
    /// basic.qos global=true, shared with the queues this channel consumes from.
    window: Arc<ChannelWindow>,
    confirm: bool,
    /// Publish sequence number of the last message (confirm mode).
    publish_seq: u64,
    /// Highest sequence number confirmed to the client.
    confirmed: u64,
    /// Routed publishes not yet accepted by all their queues: (seq, queues
    /// left), in seq order. Entries reach 0 out of order and leave from the front.
    unconfirmed: VecDeque<(u64, u32)>,
    /// Publishes a queue refused (x-overflow reject-publish): nacked, not
    /// acked, when `flush_confirms` reaches them.
    nacked: Vec<u64>,
    /// Unroutable publishes above `confirmed` already acked on their own, in
    /// seq order: a later cumulative ack must not carry their tags (clients
    /// drop an ack for a tag they no longer wait for, with all it covers).
    acked_ahead: VecDeque<u64>,
    tx: Option<Tx>,
    /// Queues that may hold consumers or unacked messages of this channel.
    touched: Vec<QueueRef>,
    awaiting: Option<Awaiting>,
    /// The queue most recently declared on this channel ("" means it).
    last_queue: Option<String>,
    /// The consumer of `amq.rabbitmq.reply-to` (direct reply-to), if any.
    reply_consumer: Option<direct_reply::ReplyConsumer>,
    /// Sender-selected routing keys (`CC`/`BCC`) of the publish being routed;
    /// reused, so a publish without them allocates nothing.
    route_keys: Vec<Bytes>,
    /// The exchange this channel may publish to, as last checked, and the
    /// version of the rights it was checked under (`check_publish_access`).
    write_ok: (Vec<u8>, u64),
    /// Message counters for the management API (`core::stats`).
    pub stats: MsgStats,
}

impl Channel {
    pub fn new(me: ChannelRef) -> Channel {
        Channel {
            me,
            closing: false,
            content: Content::Idle,
            next_tag: 0,
            unacked: VecDeque::new(),
            consumers: Vec::new(),
            next_consumer_id: 0,
            consumer_prefetch: 0,
            window: Arc::new(ChannelWindow::default()),
            confirm: false,
            publish_seq: 0,
            confirmed: 0,
            unconfirmed: VecDeque::new(),
            nacked: Vec::new(),
            acked_ahead: VecDeque::new(),
            tx: None,
            touched: Vec::new(),
            awaiting: None,
            last_queue: None,
            reply_consumer: None,
            route_keys: Vec::new(),
            write_ok: (Vec::new(), u64::MAX),
            stats: MsgStats::default(),
        }
    }

    /// Dispatches one method (the flat match of LavinMQ's channel).
    pub fn method(&mut self, m: Method, cx: &mut ChanCx) -> ChanResult {
        if !matches!(self.content, Content::Idle) {
            return Err(AmqpError::unexpected_frame(format!(
                "expected content header for class 60, got non content header frame instead ({})",
                m.name()
            )));
        }
        match m {
            Method::ExchangeDeclare(m) => self.exchange_declare(m, cx),
            Method::ExchangeDelete(m) => self.exchange_delete(m, cx),
            Method::ExchangeBind(m) => self.exchange_bind(m, cx),
            Method::ExchangeUnbind(m) => self.exchange_unbind(m, cx),
            Method::QueueDeclare(m) => self.queue_declare(m, cx),
            Method::QueueBind(m) => self.queue_bind(m, cx),
            Method::QueueUnbind(m) => self.queue_unbind(m, cx),
            Method::QueuePurge(m) => self.queue_purge(m, cx),
            Method::QueueDelete(m) => self.queue_delete(m, cx),
            Method::BasicQos(m) => self.basic_qos(m, cx),
            Method::BasicConsume(m) => self.basic_consume(m, cx),
            Method::BasicCancel(m) => self.basic_cancel(m, cx),
            Method::BasicPublish(m) => self.basic_publish(m, cx),
            Method::BasicGet(m) => self.basic_get(m, cx),
            Method::BasicAck(m) => self.basic_ack(m, cx),
            Method::BasicNack(m) => self.basic_nack(m, cx),
            Method::BasicReject(m) => self.basic_reject(m, cx),
            Method::BasicRecover(m) => self.basic_recover(m.requeue, true, cx),
            Method::BasicRecoverAsync(m) => self.basic_recover(m.requeue, false, cx),
            Method::ConfirmSelect(m) => self.confirm_select(m, cx),
            Method::TxSelect(_) => self.tx_select(cx),
            Method::TxCommit(_) => self.tx_commit(cx),
            Method::TxRollback(_) => self.tx_rollback(cx),
            Method::ChannelFlow(m) => self.channel_flow(m, cx),
            Method::AccessRequest(_) => {
                self.send(cx, AccessRequestOk::default().into());
                Ok(Flow::Continue)
            }
            other => Err(AmqpError::command_invalid(format!(
                "method {} is not valid on a channel from a client",
                other.name()
            ))),
        }
    }

    fn channel_flow(&mut self, m: ChannelFlow, cx: &mut ChanCx) -> ChanResult {
        if !m.active {
            return Err(AmqpError::not_implemented("active=false"));
        }
        self.send(cx, ChannelFlowOk { active: true }.into());
        Ok(Flow::Continue)
    }

    fn send(&self, cx: &mut ChanCx, m: Method) {
        write_method(cx.wbuf, self.me.channel, &m);
    }

    /// Sends a request to a queue and remembers how to finish the method.
    fn request(
        &mut self,
        cx: &mut ChanCx,
        queue: QueueRef,
        op: QueueOp,
        then: Awaiting,
    ) -> ChanResult {
        cx.ctx.outbox.push(
            queue.shard,
            ShardMsg::Request {
                queue,
                reply_to: Some(Requester::Channel(self.me)),
                op,
            },
        );
        self.awaiting = Some(then);
        Ok(Flow::Wait)
    }

    /// The (class, method) of the method waiting for a reply, for error reports.
    pub fn waiting_method(&self) -> (u16, u16) {
        match self.awaiting {
            Some(Awaiting::Declare { .. }) => (50, 10),
            Some(Awaiting::Purge { .. }) => (50, 30),
            Some(Awaiting::Delete { .. }) => (50, 40),
            Some(Awaiting::Consume { .. }) => (60, 20),
            Some(Awaiting::Cancel { .. }) => (60, 30),
            Some(Awaiting::Get { .. }) => (60, 70),
            None => (0, 0),
        }
    }

    /// Expects nothing from another shard but deliveries from the queues
    /// it touched (which a move holds, `connection::moving`): no reply
    /// consumer, no publish waiting for its confirm, no request waiting for
    /// its answer, no transaction, not closing. Only a connection whose
    /// channels all are may move to another shard (`Connection::can_move`).
    pub fn is_portable(&self) -> bool {
        !self.closing
            && self.reply_consumer.is_none()
            && self.unconfirmed.is_empty()
            && self.awaiting.is_none()
            && self.tx.is_none()
    }

    /// The connection moved to another shard: the channel's new address.
    pub fn moved(&mut self, me: ChannelRef) {
        self.me = me;
    }

    /// The queues that may hold this channel's consumers or unacked
    /// deliveries.
    pub fn touched(&self) -> &[QueueRef] {
        &self.touched
    }

    fn touch(&mut self, q: QueueRef) {
        if !self.touched.contains(&q) {
            self.touched.push(q);
        }
    }

    /// "" names the queue last declared on this channel.
    fn resolve_queue_name(&self, name: &Bytes) -> Result<String, AmqpError> {
        if name.is_empty() {
            return self
                .last_queue
                .clone()
                .ok_or_else(|| AmqpError::not_found("no previously declared queue"));
        }
        Ok(String::from_utf8_lossy(name).into_owned())
    }

    /// Finds a queue and checks this connection may use it.
    fn find_queue(&self, name: &str, cx: &mut ChanCx) -> Result<LocalQueue, AmqpError> {
        Ok(crate::core::ops::queue::find_queue(
            cx.ctx,
            caller(cx.info),
            name,
        )?)
    }

    /// Like `find_queue`, after checking the user's `access` to the queue.
    fn use_queue(
        &self,
        access: Access,
        name: &str,
        cx: &mut ChanCx,
    ) -> Result<LocalQueue, AmqpError> {
        Ok(crate::core::ops::queue::use_queue(
            cx.ctx,
            caller(cx.info),
            access,
            name,
        )?)
    }

    /// The channel is closing (either side) or its connection is gone: queues
    /// requeue what it had not acknowledged and forget its consumers.
    pub fn teardown(&mut self, cx_ctx: &mut ShardCtx) {
        // Its counters join the shard's totals (once: teardown may run again).
        let stats = std::mem::take(&mut self.stats);
        cx_ctx.closed_channel_stats.add(&stats);
        for q in self.touched.drain(..) {
            cx_ctx.outbox.push(
                q.shard,
                ShardMsg::ChannelGone {
                    queue: q,
                    channel: self.me,
                },
            );
        }
        self.unacked.clear();
        self.consumers.clear();
        self.tx = None;
        self.awaiting = None;
        self.content = Content::Idle;
        self.reply_consumer = None;
    }

    /// A queue this channel used is deleted: nothing more to tell it when the
    /// channel closes (keeps `touched` from growing with, e.g., one reply
    /// queue per RPC call). Unacked deliveries from it stay ackable, as in
    /// RabbitMQ; their settlements are ignored by the stale handle.
    pub fn queue_gone(&mut self, q: QueueRef) {
        self.touched.retain(|t| *t != q);
    }

    /// The queue a consumer reads from.
    pub fn consumer_queue(&self, id: u32) -> Option<QueueRef> {
        self.consumers.iter().find(|c| c.id == id).map(|c| c.queue)
    }

    /// Removes a consumer the queue cancelled; returns its tag.
    pub fn forget_consumer(&mut self, id: u32) -> Option<Bytes> {
        let i = self.consumers.iter().position(|c| c.id == id)?;
        Some(self.consumers.swap_remove(i).tag)
    }
}
