//! One AMQP 1.0 session: RabbitMQ 4's `rabbit_amqp_session`, the
//! counterpart of the 0-9-1 channel. To the core a session *is* a channel:
//! its `ChannelRef` names it in every ring message (deliveries, confirms,
//! replies, `ChannelGone`), and a consumer link is a `ConsumerRef` of it.
//!
//! - `mod.rs`: begin, session flow control (windows), the link table, and
//!   the dispatch of attach / flow / transfer / disposition / detach.
//! - `incoming.rs`: links on which the client sends (publishers): targets,
//!   transfers (multi-frame), routing, outcomes after confirms.
//! - `outgoing.rs`: links on which the client receives (consumers): sources,
//!   credit, deliveries, dispositions.

use super::conn_info::ConnInfo;
use super::error::{cond, Amqp10Error};
use super::wire;
use crate::core::ids::{ChannelRef, QueueRef};
use crate::core::shard_msg::{ChannelWindow, ShardMsg};
use crate::core::ShardCtx;
use bytes::Bytes;
use std::sync::Arc;

mod incoming;
pub use incoming::MAX_MESSAGE_SIZE;
mod management_link;
mod outgoing;

pub use incoming::InLink;
pub use outgoing::OutLink;

/// The incoming window we advertise, in transfer frames, renewed when half
/// is used (RabbitMQ 4's `max_incoming_window`).
const INCOMING_WINDOW: u32 = 400;
/// The outgoing window we advertise (informational: we send when the
/// peer's incoming window allows).
const OUTGOING_WINDOW: u32 = u32::MAX;
/// Highest link handle we allow (RabbitMQ 4's `link_max_per_session` 256).
pub const HANDLE_MAX: u32 = 255;

/// What a session handler needs: the shard's core, the connection's output
/// buffer and what the connection knows.
pub struct SessCx<'a> {
    pub ctx: &'a mut ShardCtx,
    pub wbuf: &'a mut Vec<u8>,
    pub info: &'a mut ConnInfo,
}

/// A session's failure: it ends the session, or the whole connection.
#[derive(Debug)]
pub enum SessError {
    Session(Amqp10Error),
    Connection(Amqp10Error),
}

/// `Ok(true)`: the connection must wait for a queue's reply.
pub type SessResult = Result<bool, SessError>;

pub enum Link {
    In(Box<InLink>),
    Out(Box<OutLink>),
    /// The management link pair's halves (`management_link.rs`).
    MgmtIn(Box<management_link::MgmtIn>),
    MgmtOut(Box<management_link::MgmtOut>),
}

pub struct Session {
    pub me: ChannelRef,
    /// We sent `end` (after an error); everything but the peer's `end` is
    /// dropped.
    pub ending: bool,
    /// The peer's channel (ours is the same number).
    channel: u16,
    /// The highest handle the client may use: the lower of both begins.
    handle_max: u32,
    // ---- session flow control (2.5.6) ----
    /// The transfer-id we expect next.
    next_incoming_id: u32,
    /// Transfers we still accept before we renew the window.
    incoming_window: u32,
    /// The transfer-id of our next transfer.
    next_outgoing_id: u32,
    /// Transfers the peer still accepts.
    remote_incoming_window: u32,
    // ---- links, by the peer's handle (ours is the same) ----
    links: Vec<Option<Link>>,
    /// Every queue a link of this session consumed from or published to
    /// with an outcome pending: told `ChannelGone` when the session ends.
    touched: Vec<QueueRef>,
    /// The channel-wide window the core wants in a consume (never limited:
    /// AMQP 1.0 paces by link credit).
    window: Arc<ChannelWindow>,
    next_consumer_id: u32,
    /// A consumer link's attach waits for the queue (see `outgoing.rs`).
    awaiting: Option<outgoing::Awaiting>,
    /// A management request waits for a queue (`management_link.rs`).
    mgmt_wait: Option<management_link::MgmtWait>,
    // ---- publishing (incoming.rs) ----
    publish: incoming::Publishing,
    // ---- delivering (outgoing.rs) ----
    delivering: outgoing::Delivering,
}

impl Session {
    /// The client's `begin` on `me.channel`: answered at once.
    pub fn begin(me: ChannelRef, b: &wire::Begin, wbuf: &mut Vec<u8>) -> Session {
        let s = Session {
            me,
            ending: false,
            channel: me.channel,
            handle_max: b.handle_max.min(HANDLE_MAX),
            next_incoming_id: b.next_outgoing_id,
            incoming_window: INCOMING_WINDOW,
            next_outgoing_id: 0,
            remote_incoming_window: b.incoming_window,
            links: Vec::new(),
            touched: Vec::new(),
            window: Arc::new(ChannelWindow::default()),
            next_consumer_id: 0,
            awaiting: None,
            mgmt_wait: None,
            publish: incoming::Publishing::default(),
            delivering: outgoing::Delivering::default(),
        };
        wire::write_begin(
            wbuf,
            me.channel,
            wire::BeginOut {
                remote_channel: me.channel,
                next_outgoing_id: s.next_outgoing_id,
                incoming_window: s.incoming_window,
                outgoing_window: OUTGOING_WINDOW,
                handle_max: s.handle_max,
            },
        );
        s
    }

    /// One performative for this session (not begin or end).
    pub fn performative(
        &mut self,
        p: wire::Performative,
        payload: Bytes,
        cx: &mut SessCx,
    ) -> SessResult {
        if self.ending {
            return Ok(false);
        }
        use wire::Performative as P;
        match p {
            P::Attach(a) => self.attach(*a, cx),
            P::Flow(f) => self.flow(f, cx),
            P::Transfer(t) => self.transfer(t, payload, cx),
            P::Disposition(d) => self.disposition(d, cx),
            P::Detach(d) => self.detach(d, cx),
            _ => Err(SessError::Connection(Amqp10Error::new(
                cond::FRAMING_ERROR,
                "unexpected performative",
            ))),
        }
    }

    fn attach(&mut self, a: wire::Attach, cx: &mut SessCx) -> SessResult {
        let h = a.handle;
        if h > self.handle_max {
            return Err(SessError::Session(Amqp10Error::new(
                cond::FRAMING_ERROR,
                format!(
                    "link handle value ({}) exceeds maximum link handle value ({})",
                    h, self.handle_max
                ),
            )));
        }
        if self.links.get(h as usize).is_some_and(|l| l.is_some()) {
            return Err(SessError::Session(Amqp10Error::new(
                cond::HANDLE_IN_USE,
                format!("handle {} is already associated with a link", h),
            )));
        }
        let management = if a.role == wire::ROLE_RECEIVER {
            wire::source_address(&a)
        } else {
            wire::target_address(&a)
        };
        if management.as_deref() == Some(crate::amqp10::management::ADDRESS.as_bytes()) {
            return self.attach_management(a, cx);
        }
        if a.role == wire::ROLE_RECEIVER {
            // The client receives: we send from a queue.
            self.attach_outgoing(a, cx)
        } else {
            self.attach_incoming(a, cx)
        }
    }

    fn link_slot(&mut self, h: u32) -> &mut Option<Link> {
        let i = h as usize;
        if self.links.len() <= i {
            self.links.resize_with(i + 1, || None);
        }
        &mut self.links[i]
    }

    fn flow(&mut self, f: wire::Flow, cx: &mut SessCx) -> SessResult {
        // Session state (2.5.6): the peer's incoming window, counted from
        // its next-incoming-id (the first flow may not have one yet).
        let their_next_in = f.next_incoming_id.unwrap_or(0);
        let window = their_next_in
            .wrapping_add(f.incoming_window)
            .wrapping_sub(self.next_outgoing_id);
        // Serial numbers: a "negative" window (a stale flow) is none.
        self.remote_incoming_window = if window <= i32::MAX as u32 { window } else { 0 };
        if self.remote_incoming_window > 0 {
            self.send_pending(cx);
            for i in 0..self.links.len() {
                if let Some(Link::MgmtOut(o)) = &self.links[i] {
                    let h = o.handle;
                    self.send_management(h, cx);
                }
            }
        }
        let Some(h) = f.handle else {
            if f.echo {
                self.write_session_flow(cx.wbuf, None);
            }
            return Ok(false);
        };
        let sf = self.session_flow();
        match self.links.get_mut(h as usize).and_then(|l| l.as_mut()) {
            Some(Link::Out(l)) => {
                let l: &mut OutLink = l;
                l.flow(&f, self.me, cx);
                Ok(false)
            }
            Some(Link::In(l)) => {
                if f.echo {
                    let flow = incoming::link_flow_in(sf, l);
                    wire::write_flow(cx.wbuf, self.channel, flow);
                }
                Ok(false)
            }
            Some(Link::MgmtOut(_)) => {
                self.management_flow(&f, cx);
                Ok(false)
            }
            Some(Link::MgmtIn(_)) => Ok(false),
            None => Err(SessError::Session(Amqp10Error::new(
                cond::UNATTACHED_HANDLE,
                format!("Unattached link handle: {}", h),
            ))),
        }
    }

    /// Our session state, optionally with a link's.
    fn session_flow(&self) -> wire::FlowOut {
        wire::FlowOut {
            next_incoming_id: self.next_incoming_id,
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: OUTGOING_WINDOW,
            link: None,
        }
    }

    fn write_session_flow(&self, wbuf: &mut Vec<u8>, link: Option<wire::LinkFlow>) {
        let mut f = self.session_flow();
        f.link = link;
        wire::write_flow(wbuf, self.channel, f);
    }

    /// A transfer frame arrived: count it against our incoming window and
    /// renew the window when half of it is used.
    fn count_incoming(&mut self, cx: &mut SessCx) -> Result<(), SessError> {
        if self.incoming_window == 0 {
            return Err(SessError::Session(Amqp10Error::new(
                cond::WINDOW_VIOLATION,
                "incoming window violation (tolerated excess tranfers: 0)",
            )));
        }
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        self.incoming_window -= 1;
        if self.incoming_window <= INCOMING_WINDOW / 2 {
            self.incoming_window = INCOMING_WINDOW;
            self.write_session_flow(cx.wbuf, None);
        }
        Ok(())
    }

    fn detach(&mut self, d: wire::Detach, cx: &mut SessCx) -> SessResult {
        let h = d.handle;
        let Some(link) = self.links.get_mut(h as usize).and_then(|l| l.take()) else {
            // The peer answering a detach of ours (a refused link, one we
            // closed with an error) or a handle never attached: RabbitMQ 4
            // ignores it (no reply, the session goes on).
            return Ok(false);
        };
        if let Some(e) = d.error.as_ref() {
            log::debug!("client detached link {} with error {:?}", h, e);
        }
        if let Link::Out(l) = link {
            self.close_outgoing(*l, cx);
        }
        // RabbitMQ echoes the client's detach.
        wire::write_detach(cx.wbuf, self.channel, h, d.closed, None);
        Ok(false)
    }

    /// Detaches a link with an error (the session goes on).
    fn detach_with(&mut self, h: u32, e: Amqp10Error, cx: &mut SessCx) {
        log::debug!("detaching link {}: {} {}", h, e.condition, e.description);
        if let Some(Link::Out(l)) = self.links.get_mut(h as usize).and_then(|l| l.take()) {
            self.close_outgoing(*l, cx);
        }
        wire::write_detach(cx.wbuf, self.channel, h, true, Some(&e));
    }

    /// The session ends (either side) or its connection is gone: queues
    /// requeue what it did not settle and forget its consumers. Idempotent.
    pub fn teardown(&mut self, ctx: &mut ShardCtx) {
        for q in self.touched.drain(..) {
            ctx.outbox.push(
                q.shard,
                ShardMsg::ChannelGone {
                    queue: q,
                    channel: self.me,
                },
            );
        }
        self.links.clear();
        self.delivering.clear();
        self.publish.clear();
        self.awaiting = None;
        self.mgmt_wait = None;
    }

    /// Waiting for a queue's answer to an attach or a management request.
    pub fn is_awaiting(&self) -> bool {
        self.awaiting.is_some() || self.mgmt_wait.is_some()
    }

    /// Consumer links (the management API's consumer count).
    pub fn consumer_count(&self) -> usize {
        self.links
            .iter()
            .flatten()
            .filter(|l| matches!(l, Link::Out(_)))
            .count()
    }

    fn touch(&mut self, q: QueueRef) {
        if !self.touched.contains(&q) {
            self.touched.push(q);
        }
    }
}
