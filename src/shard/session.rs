//! The sessions a shard serves: one per client socket, of whichever protocol
//! its first bytes announce. The event loop and the pump hold them as one
//! enum and dispatch statically (a `match`, no `dyn`, on the hot path).
//!
//! A new socket starts as [`Session::Sniffing`]: nothing is answered until
//! the 8-byte protocol header is in. `AMQP\0\0\x09\x01` (and, as RabbitMQ,
//! anything unknown, which gets the 0-9-1 header back before the socket
//! closes) becomes an AMQP 0-9-1 [`Connection`]. AMQP 1.0 (`AMQP\0\1\0\0`)
//! and its SASL layer (`AMQP\3\1\0\0`) become further variants here.

use crate::amqp091::connection::{Connection, HANDSHAKE_TIMEOUT};
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
        }
    }

    pub fn sock_ref(&self) -> &Socket {
        match self {
            Session::Sniffing(s) => s.sock.as_ref().expect("sniffing session without socket"),
            Session::Amqp091(c) => &c.sock,
        }
    }

    /// The 0-9-1 connection, if this session is one, to read.
    pub fn amqp091_ref(&self) -> Option<&Connection> {
        match self {
            Session::Amqp091(c) => Some(c),
            Session::Sniffing(_) => None,
        }
    }

    /// The 0-9-1 connection, if this session is one.
    #[inline]
    pub fn amqp091(&mut self) -> Option<&mut Connection> {
        match self {
            Session::Amqp091(c) => Some(c),
            Session::Sniffing(_) => None,
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
            // Only 0-9-1 today: its connection answers an unknown header.
            let sock = s.sock.take().expect("sniffing session without socket");
            let conn = Connection::new(sock, s.slot, s.uid, s.accepted);
            *self = Session::Amqp091(conn);
            ctx.churn.connection_created += 1;
        }
        match self {
            Session::Amqp091(c) => c.on_input(ctx),
            Session::Sniffing(_) => {}
        }
    }

    /// The session has published: publisher flow control and alarms apply.
    pub fn is_publisher(&self) -> bool {
        match self {
            Session::Amqp091(c) => c.info.publisher,
            Session::Sniffing(_) => false,
        }
    }

    /// True while input processing waits for a queue's answer.
    pub fn is_waiting(&self) -> bool {
        match self {
            Session::Amqp091(c) => c.is_waiting(),
            Session::Sniffing(_) => false,
        }
    }

    /// A resource alarm stops reading this publisher.
    pub fn notify_blocked(&mut self, reason: &str, ctx: &mut ShardCtx) {
        if let Session::Amqp091(c) = self {
            c.notify_blocked(reason, ctx)
        }
    }

    /// Reading resumes after an alarm.
    pub fn notify_unblocked(&mut self, ctx: &mut ShardCtx) {
        if let Session::Amqp091(c) = self {
            c.notify_unblocked(ctx)
        }
    }

    /// Releases what the session holds in the core (consumers, unacked
    /// messages, exclusive queues). Idempotent.
    pub fn teardown(&mut self, ctx: &mut ShardCtx) {
        if let Session::Amqp091(c) = self {
            c.teardown(ctx)
        }
    }

    /// Timers: handshake timeout, heartbeats, close timeouts.
    pub fn tick(&mut self, now: Instant, ctx: &mut ShardCtx) {
        match self {
            Session::Amqp091(c) => c.tick(now, ctx),
            Session::Sniffing(s) => {
                if now >= s.accepted + HANDSHAKE_TIMEOUT {
                    log::debug!("handshake timeout");
                    self.sock().dead = true;
                }
            }
        }
    }

    /// Encodes what must go out before the socket is flushed (batched
    /// publisher confirms).
    pub fn before_flush(&mut self, ctx: &mut ShardCtx) {
        if let Session::Amqp091(c) = self {
            c.flush_confirms(ctx)
        }
    }

    /// All output is written: a session that said its last words lingers
    /// until the peer closes.
    pub fn after_flush(&mut self, all_written: bool, ctx: &mut ShardCtx) {
        if let Session::Amqp091(c) = self {
            if all_written && c.finished() {
                c.linger();
            }
            c.output_drained(ctx);
        }
    }
}
