//! The session's side of the management link pair (`/management`): the
//! client's sender half carries requests to us, the receiver half takes
//! our responses; both halves have the same link name. What a request does
//! is `amqp10::management`'s business.

use super::{Link, SessCx, SessError, SessResult, Session};
use crate::amqp10::error::{cond, Amqp10Error};
use crate::amqp10::management::{self, Outcome, Request, Then};
use crate::amqp10::wire;
use crate::core::ids::{QueueRef, Requester};
use crate::core::ops::Caller;
use crate::core::shard_msg::{QueueReply, ShardMsg};
use crate::protocol::amqp10::{MessageId, Str, Value};
use bytes::Bytes;
use std::collections::VecDeque;

/// Credit we give the request link (RabbitMQ 4: 8, renewed at 4).
const MGMT_CREDIT: u32 = 8;

/// The client's sender half: requests come in on it.
pub struct MgmtIn {
    pub handle: u32,
    name: Str,
    delivery_count: u32,
    credit: u32,
}

/// The client's receiver half: our responses go out on it.
pub struct MgmtOut {
    pub handle: u32,
    name: Str,
    delivery_count: u32,
    credit: u32,
    /// Responses waiting for credit or the session window; one may be
    /// partly sent (its delivery-id and the bytes already out).
    held: VecDeque<Response>,
}

/// An encoded response, and once it started, its delivery-id and the bytes
/// of it already sent.
type Response = (Vec<u8>, Option<(u32, usize)>);

/// A request waiting for a queue's answer.
pub(super) struct MgmtWait {
    /// The queue asked (a reply of another is not the answer).
    queue: QueueRef,
    link: Str,
    id: Option<MessageId>,
    then: Then,
}

impl Session {
    /// An attach whose terminus is `/management`: one half of the pair.
    pub(super) fn attach_management(&mut self, a: wire::Attach, cx: &mut SessCx) -> SessResult {
        let h = a.handle;
        let we_send = a.role == wire::ROLE_RECEIVER;
        let our_role = if we_send {
            wire::ROLE_SENDER
        } else {
            wire::ROLE_RECEIVER
        };
        if let Err(e) = management::check_paired(&a) {
            wire::write_attach_reply(cx.wbuf, self.channel, &a, our_role, false, 0);
            wire::write_detach(cx.wbuf, self.channel, h, true, Some(&e));
            return Ok(false);
        }
        wire::write_attach_reply(cx.wbuf, self.channel, &a, our_role, true, 0);
        if we_send {
            *self.link_slot(h) = Some(Link::MgmtOut(Box::new(MgmtOut {
                handle: h,
                name: a.name.clone(),
                delivery_count: 0,
                credit: 0,
                held: VecDeque::new(),
            })));
        } else {
            let l = MgmtIn {
                handle: h,
                name: a.name.clone(),
                delivery_count: a.initial_delivery_count.unwrap_or(0),
                credit: MGMT_CREDIT,
            };
            self.write_mgmt_in_flow(&l, cx.wbuf);
            *self.link_slot(h) = Some(Link::MgmtIn(Box::new(l)));
        }
        Ok(false)
    }

    fn write_mgmt_in_flow(&self, l: &MgmtIn, wbuf: &mut Vec<u8>) {
        self.write_session_flow(
            wbuf,
            Some(wire::LinkFlow {
                handle: l.handle,
                delivery_count: l.delivery_count,
                link_credit: l.credit,
                drain: false,
                echo: false,
            }),
        );
    }

    /// A request (one settled, single-frame transfer).
    pub(super) fn management_transfer(
        &mut self,
        t: wire::Transfer,
        payload: Bytes,
        cx: &mut SessCx,
    ) -> SessResult {
        let h = t.handle;
        let Some(Some(Link::MgmtIn(l))) = self.links.get_mut(h as usize) else {
            unreachable!("called for a management request link");
        };
        if t.more {
            return Err(SessError::Session(Amqp10Error::new(
                cond::NOT_IMPLEMENTED,
                "multi-frame management requests are not supported",
            )));
        }
        l.credit = l.credit.saturating_sub(1);
        l.delivery_count = l.delivery_count.wrapping_add(1);
        let name = l.name.clone();
        let waiting = self
            .links
            .iter()
            .flatten()
            .map(|l| match l {
                Link::MgmtOut(o) if o.name == name => o.held.len(),
                _ => 0,
            })
            .sum::<usize>();
        let Some(Some(Link::MgmtIn(l))) = self.links.get_mut(h as usize) else {
            unreachable!("looked up above");
        };
        // More requests only while their responses can go out: a client
        // that grants no response credit gets no more request credit.
        if l.credit <= MGMT_CREDIT / 2 && waiting < MGMT_CREDIT as usize {
            l.credit = MGMT_CREDIT;
            let l = MgmtIn {
                handle: l.handle,
                name: l.name.clone(),
                delivery_count: l.delivery_count,
                credit: l.credit,
            };
            self.write_mgmt_in_flow(&l, cx.wbuf);
        }
        let req = management::in_spec_order(payload)
            .and_then(|p| wire::Sections::parse(p).ok())
            .and_then(|s| Request::parse(&s));
        let Some(req) = req else {
            return Err(SessError::Session(Amqp10Error::new(
                cond::DECODE_ERROR,
                "a management request needs properties subject and to",
            )));
        };
        let caller = Caller {
            conn_uid: cx.info.uid,
            access: &cx.info.access,
        };
        let outcome = management::handle(&req, cx.ctx, caller, &mut cx.info.exclusive_queues);
        match outcome {
            Outcome::Done(status, body) => {
                self.respond(&name, req.id, status, &body, cx);
                Ok(false)
            }
            Outcome::EndSession(e) => Err(SessError::Session(e)),
            Outcome::Ask(queue, op, then) => {
                cx.ctx.outbox.push(
                    queue.shard,
                    ShardMsg::Request {
                        queue,
                        reply_to: Some(Requester::Channel(self.me)),
                        op,
                    },
                );
                self.mgmt_wait = Some(MgmtWait {
                    queue,
                    link: name,
                    id: req.id,
                    then,
                });
                Ok(true)
            }
        }
    }

    pub(super) fn management_reply_pending(&self) -> bool {
        self.mgmt_wait.is_some()
    }

    /// The queue answered a management request: respond.
    pub(super) fn management_reply(
        &mut self,
        queue: QueueRef,
        reply: QueueReply,
        cx: &mut SessCx,
    ) -> bool {
        let Some(w) = self.mgmt_wait.take_if(|w| w.queue == queue) else {
            return false;
        };
        let (status, body) = management::on_reply(w.then, reply);
        self.respond(&w.link, w.id, status, &body, cx);
        true
    }

    /// Sends (or holds, until the client grants credit) a response on the
    /// receiver half named `link`.
    fn respond(
        &mut self,
        link: &Str,
        id: Option<MessageId>,
        status: u16,
        body: &Value,
        cx: &mut SessCx,
    ) {
        let mut msg = Vec::new();
        management::write_response(&mut msg, id, status, body);
        let Some(out) = self.links.iter_mut().flatten().find_map(|l| match l {
            Link::MgmtOut(o) if o.name == *link => Some(o),
            _ => None,
        }) else {
            log::debug!("management response without a receiver half: dropped");
            return;
        };
        out.held.push_back((msg, None));
        let h = out.handle;
        self.send_management(h, cx);
    }

    /// Sends held responses on the receiver half `h` while it has credit.
    pub(super) fn send_management(&mut self, h: u32, cx: &mut SessCx) {
        loop {
            let Some(Some(Link::MgmtOut(out))) = self.links.get_mut(h as usize) else {
                return;
            };
            if self.remote_incoming_window == 0 {
                return;
            }
            let Some((msg, started)) = out.held.pop_front() else {
                return;
            };
            let (delivery_id, from) = match started {
                Some(s) => s,
                None if out.credit == 0 => {
                    out.held.push_front((msg, None));
                    return;
                }
                None => {
                    out.credit -= 1;
                    out.delivery_count = out.delivery_count.wrapping_add(1);
                    (self.delivering.take_delivery_id(), 0)
                }
            };
            let (frames, next) = wire::write_transfer_part(
                cx.wbuf,
                self.channel,
                wire::TransferOut {
                    handle: h,
                    delivery_id,
                    settled: true,
                },
                &msg,
                &[],
                cx.info.max_frame_out,
                from,
                self.remote_incoming_window,
            );
            self.next_outgoing_id = self.next_outgoing_id.wrapping_add(frames);
            self.remote_incoming_window = self.remote_incoming_window.saturating_sub(frames);
            if next < msg.len() {
                if let Some(Some(Link::MgmtOut(out))) = self.links.get_mut(h as usize) {
                    out.held.push_front((msg, Some((delivery_id, next))));
                }
                return;
            }
        }
    }

    /// The client's flow for the receiver half: its credit.
    pub(super) fn management_flow(&mut self, f: &wire::Flow, cx: &mut SessCx) {
        let Some(h) = f.handle else { return };
        let Some(Some(Link::MgmtOut(out))) = self.links.get_mut(h as usize) else {
            return;
        };
        let rcv_count = f.delivery_count.unwrap_or(0);
        let end = rcv_count.wrapping_add(f.link_credit.unwrap_or(0));
        let left = end.wrapping_sub(out.delivery_count);
        out.credit = if left <= i32::MAX as u32 { left } else { 0 };
        self.send_management(h, cx);
        let Some(Some(Link::MgmtOut(out))) = self.links.get_mut(h as usize) else {
            return;
        };
        if f.drain {
            out.delivery_count = out.delivery_count.wrapping_add(out.credit);
            out.credit = 0;
        }
        let (dc, credit, drain, echo) = (out.delivery_count, out.credit, f.drain, f.echo);
        if echo || drain {
            self.write_session_flow(
                cx.wbuf,
                Some(wire::LinkFlow {
                    handle: h,
                    delivery_count: dc,
                    link_credit: credit,
                    drain,
                    echo: false,
                }),
            );
        }
    }
}
