//! Graceful shutdown, a shard's part (`BrokerHandle::shutdown_gracefully`,
//! on SIGTERM/SIGINT): the shard stops accepting connections, stops reading
//! its clients (no new publishes) and lets what is in flight settle (the
//! store's batch written and fsynced, the confirms it held sent and
//! flushed); then it closes every connection as RabbitMQ does on shutdown
//! (0-9-1: 320 `CONNECTION_FORCED - broker shutdown`; AMQP 1.0:
//! `amqp:connection:forced`), reads again to take the clients' close-ok,
//! and ends its loop once they are gone or `CLOSE_WAIT` has passed. The
//! store is written and synced once more as the loop ends.

use super::Loop;
use crate::shard::session::Session;
use std::time::{Duration, Instant};

/// At most this long with reads paused, waiting for the store to settle.
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// At least this long, so that confirms coming from other shards' stores
/// arrive before the connections close.
const SETTLE_MIN: Duration = Duration::from_millis(50);
/// At most this long for the clients' close-ok.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The reason clients are given.
pub(super) const REASON: &str = "broker shutdown";

/// Where a shard is in its graceful shutdown.
pub(super) enum Draining {
    /// Reads paused since then: in-flight work settles.
    Settling(Instant),
    /// Every connection was told to close then.
    Closing(Instant),
}

impl Loop {
    /// True while the shard must not read its clients.
    pub(super) fn reads_paused(&self) -> bool {
        matches!(self.draining, Some(Draining::Settling(_)))
    }

    /// One step of a requested graceful shutdown, at the end of a loop
    /// iteration; true when the loop should end.
    pub(super) fn drain_step(&mut self, now: Instant) -> bool {
        match self.draining {
            None => {
                for mut l in std::mem::take(&mut self.listeners) {
                    let _ = self.links.poll.registry().deregister(&mut l);
                }
                log::info!(
                    "shard {}: shutting down: no new connections; {} open",
                    self.id,
                    self.state.conns.len()
                );
                self.draining = Some(Draining::Settling(now));
                false
            }
            Some(Draining::Settling(since)) => {
                let settled = self.state.ctx.store.as_ref().is_none_or(|s| s.is_idle())
                    && !self.has_outgoing()
                    && self.state.ctx.streams_to_write.is_empty();
                let waited = now.duration_since(since);
                if (settled && waited >= SETTLE_MIN) || waited >= SETTLE_MAX {
                    self.close_all();
                    self.draining = Some(Draining::Closing(now));
                }
                false
            }
            Some(Draining::Closing(since)) => {
                self.state.conns.is_empty() || now.duration_since(since) >= CLOSE_WAIT
            }
        }
    }

    /// Tells every client to go, and reads them all again (their close-ok
    /// arrived while reads were paused, or will).
    fn close_all(&mut self) {
        let (ctx, conns) = (&mut self.state.ctx, &mut self.state.conns);
        let mut slots = Vec::with_capacity(conns.len());
        for (slot, s) in conns.iter_mut() {
            match s {
                Session::Amqp091(c) => c.force_close(REASON, ctx),
                Session::Amqp10(c) => c.force_close(REASON, ctx),
                Session::Sniffing(_) => s.sock().dead = true,
            }
            ctx.mark_dirty(slot);
            slots.push(slot);
        }
        for slot in slots {
            self.list_read_again(slot);
        }
    }
}
