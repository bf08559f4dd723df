//! The sessions a shard serves: one per client socket, of whichever protocol
//! its first bytes announce. The event loop and the pump hold them as one
//! enum and dispatch statically (a `match`, no `dyn`, on the hot path).
//!
//! A new socket starts as [`Session::Sniffing`]: nothing is answered until
//! the 8-byte protocol header is in. AMQP 1.0 (`AMQP\0\1\0\0`) and its
//! SASL layer (`AMQP\3\1\0\0`) become an AMQP 1.0 [`amqp10::Connection`];
//! `AMQP\0\0\x09\x01` (and, as RabbitMQ, anything unknown, which gets the
//! 0-9-1 header back before the socket closes) an AMQP 0-9-1 [`Connection`].

use crate::amqp091::connection::{Connection, HANDSHAKE_TIMEOUT};
use crate::amqp10::connection as amqp10;
use crate::core::ShardCtx;
use crate::net::Socket;
use std::time::Instant;

/// Bytes of a protocol header: "AMQP" and four version octets.
const HEADER_LEN: usize = 8;

/// The protocol a session speaks.
#[allow(clippy::large_enum_variant)] // a sniffing socket lasts one round trip
pub enum Session {
    /// The protocol header is not complete yet.
    Sniffing(Sniffer),
    /// AMQP 0-9-1 (RabbitMQ's `rabbit_reader`). Not boxed: every delivery,
    /// confirm and reply is dispatched through here, and the slab holds
    /// connections inline as it did before sessions were an enum.
    Amqp091(Connection),
    /// AMQP 1.0 (RabbitMQ 4's `rabbit_amqp_reader`). Boxed: it is rarer,
    /// and the slab's entries stay the size of a 0-9-1 connection.
    Amqp10(Box<amqp10::Connection>),
}

/// A socket whose protocol header has not fully arrived.
pub struct Sniffer {
    /// Always `Some`; taken when the session becomes its protocol's.
    sock: Option<Socket>,
    slot: u32,
    uid: u64,
    accepted: Instant,
}

impl Session {
    /// A socket just accepted into connection slot `slot`.
    pub fn accepted(sock: Socket, slot: u32, uid: u64) -> Session {
        Session::Sniffing(Sniffer {
            sock: Some(sock),
            slot,
            uid,
            accepted: Instant::now(),
        })
    }

    pub fn sock(&mut self) -> &mut Socket {
        match self {
            Session::Sniffing(s) => s.sock.as_mut().expect("sniffing session without socket"),
            Session::Amqp091(c) => &mut c.sock,
            Session::Amqp10(c) => &mut c.sock,
        }
    }

    pub fn sock_ref(&self) -> &Socket {
        match self {
            Session::Sniffing(s) => s.sock.as_ref().expect("sniffing session without socket"),
            Session::Amqp091(c) => &c.sock,
            Session::Amqp10(c) => &c.sock,
        }
    }

    /// The 0-9-1 connection, if this session is one, to read.
    pub fn amqp091_ref(&self) -> Option<&Connection> {
        match self {
            Session::Amqp091(c) => Some(c),
            _ => None,
        }
    }

    /// The AMQP 1.0 connection, if this session is one.
    #[inline]
    pub fn amqp10(&mut self) -> Option<&mut amqp10::Connection> {
        match self {
            Session::Amqp10(c) => Some(c),
            _ => None,
        }
    }

    /// The 0-9-1 connection, if this session is one.
    #[inline]
    pub fn amqp091(&mut self) -> Option<&mut Connection> {
        match self {
            Session::Amqp091(c) => Some(c),
            _ => None,
        }
    }

    /// New input is in the socket's read buffer.
    pub fn on_input(&mut self, ctx: &mut ShardCtx) {
        if let Session::Sniffing(s) = self {
            let sock = s.sock.as_mut().expect("sniffing session without socket");
            sock.last_read = Instant::now();
            if sock.rbuf.len() < HEADER_LEN {
                return;
            }
            let amqp10 = matches!(
                &sock.rbuf[..HEADER_LEN],
                b"AMQP\x00\x01\x00\x00" | b"AMQP\x03\x01\x00\x00"
            );
            let sock = s.sock.take().expect("sniffing session without socket");
            *self = if amqp10 {
                Session::Amqp10(Box::new(amqp10::Connection::new(
                    sock, s.slot, s.uid, s.accepted,
                )))
            } else {
                // 0-9-1's connection also answers an unknown header.
                Session::Amqp091(Connection::new(sock, s.slot, s.uid, s.accepted))
            };
            ctx.churn.connection_created += 1;
        }
        match self {
            Session::Amqp091(c) => c.on_input(ctx),
            Session::Amqp10(c) => c.on_input(ctx),
            Session::Sniffing(_) => {}
        }
    }

    /// The session has published: publisher flow control and alarms apply.
    pub fn is_publisher(&self) -> bool {
        match self {
            Session::Amqp091(c) => c.info.publisher,
            Session::Amqp10(c) => c.info.publisher,
            Session::Sniffing(_) => false,
        }
    }

    /// True while input processing waits for a queue's answer.
    pub fn is_waiting(&self) -> bool {
        match self {
            Session::Amqp091(c) => c.is_waiting(),
            Session::Amqp10(c) => c.is_waiting(),
            Session::Sniffing(_) => false,
        }
    }

    /// A resource alarm stops reading this publisher.
    pub fn notify_blocked(&mut self, reason: &str, ctx: &mut ShardCtx) {
        match self {
            Session::Amqp091(c) => c.notify_blocked(reason, ctx),
            Session::Amqp10(c) => c.notify_blocked(reason, ctx),
            Session::Sniffing(_) => {}
        }
    }

    /// Reading resumes after an alarm.
    pub fn notify_unblocked(&mut self, ctx: &mut ShardCtx) {
        match self {
            Session::Amqp091(c) => c.notify_unblocked(ctx),
            Session::Amqp10(c) => c.notify_unblocked(ctx),
            Session::Sniffing(_) => {}
        }
    }

    /// Releases what the session holds in the core (consumers, unacked
    /// messages, exclusive queues). Idempotent.
    pub fn teardown(&mut self, ctx: &mut ShardCtx) {
        match self {
            Session::Amqp091(c) => c.teardown(ctx),
            Session::Amqp10(c) => c.teardown(ctx),
            Session::Sniffing(_) => {}
        }
    }

    /// Timers: handshake timeout, heartbeats, close timeouts. Returns when
    /// they are next due if nothing happens to the session meanwhile
    /// (`Some(now)`: at the next visit; `None`: no timer runs;
    /// `shard::due`).
    pub fn tick(&mut self, now: Instant, ctx: &mut ShardCtx) -> Option<Instant> {
        match self {
            Session::Amqp091(c) => c.tick(now, ctx),
            Session::Amqp10(c) => c.tick(now, ctx),
            Session::Sniffing(s) => {
                let due = s.accepted + HANDSHAKE_TIMEOUT;
                if now >= due {
                    log::debug!("handshake timeout");
                    self.sock().dead = true;
                }
                Some(due)
            }
        }
    }

    /// Encodes what must go out before the socket is flushed (batched
    /// publisher confirms).
    pub fn before_flush(&mut self, ctx: &mut ShardCtx) {
        match self {
            Session::Amqp091(c) => c.flush_confirms(ctx),
            Session::Amqp10(c) => c.flush_outcomes(ctx),
            Session::Sniffing(_) => {}
        }
    }

    /// All output is written: a session that said its last words lingers
    /// until the peer closes.
    pub fn after_flush(&mut self, all_written: bool, ctx: &mut ShardCtx) {
        match self {
            Session::Amqp091(c) => {
                if all_written && c.finished() {
                    c.linger();
                }
                c.output_drained(ctx);
            }
            Session::Amqp10(c) => {
                if all_written && c.finished() {
                    c.linger();
                }
                c.output_drained(ctx);
            }
            Session::Sniffing(_) => {}
        }
    }
}
