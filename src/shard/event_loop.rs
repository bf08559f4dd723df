//! One shard's event loop (mio's model loop, plus rings):
//!
//! 1. `poll` for socket readiness (or a ring wake-up, or the tick timeout);
//! 2. accept new connections; read ready sockets and run their frames through
//!    `Connection` (which may route publishes and push ring messages);
//! 3. pump messages: the control inbox (`shard::control`), every incoming
//!    ring and the shard's own outbox, until nothing is left
//!    (`ShardState::handle`);
//! 4. move the outbox onto the outgoing rings, waking each peer once;
//! 5. flush the write buffers of connections that produced output (one write
//!    syscall per connection per iteration).

use super::control::Inbox;
use super::due::DueTable;
use super::mesh::{Links, WAKER_TOKEN};
use super::session::Session;
use super::state::ShardState;
use super::ShardListeners;
use crate::config::Config;
use crate::core::alarms::Alarms;
use crate::core::definitions::Definitions;
use crate::core::persist::ShardStore;
use crate::core::shard_msg::{Adoptee, ShardMsg};
use crate::core::{ShardCtx, TICK};
use crate::net::accept::{AcceptGuard, AfterError};
use crate::net::{ReadOutcome, Socket};
use mio::net::TcpListener;
use mio::{Events, Interest, Token};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stop reading from a connection whose unsent output exceeds this (a consumer
/// that does not read); resume when it drains.
#[path = "drain.rs"]
mod drain;

const WRITE_HIGH_WATER: usize = 16 * 1024 * 1024;
/// Messages taken from one incoming ring per pass, so one busy peer cannot
/// starve the sockets.
const RING_BATCH: usize = 4096;
/// Messages handled per `pump` call before the loop turns to its sockets again.
const PUMP_BUDGET: usize = 64 * 1024;
/// A shard working more than this per mille of its time takes no moving
/// connections (`Loop::move_sessions`).
const FOLLOW_MAX_LOAD: u32 = 500;

/// How many slices the connections' timers are cut into (`tick_slice`):
/// one per 1,024 connections, at most 8 (a slice every 25 ms). A shard
/// with few connections wakes only for the tick (also one whose slab still
/// has room for the many that left).
fn conn_tick_slices(connections: usize) -> usize {
    (connections / 1024).clamp(1, 8)
}

fn listener_token(i: usize) -> Token {
    Token(usize::MAX - 2 - i)
}

struct Loop {
    id: u16,
    state: ShardState,
    links: Links,
    /// Work from threads that are not shards (`shard::control`).
    control: Inbox,
    listeners: Vec<TcpListener>,
    /// `listeners[tls_from..]` are the TLS listeners.
    tls_from: usize,
    /// The TLS server configuration, when there are TLS listeners.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections that may have more input in the kernel.
    retry_read: Vec<usize>,
    /// Reused buffer for the connections flushed in one iteration.
    flush_list: Vec<usize>,
    /// Publishing connections not read while an outgoing ring is congested.
    flow_blocked: Vec<usize>,
    /// The reserve descriptor and back-off for accept failures (EMFILE).
    accept_guard: AcceptGuard,
    /// `listeners[own_listener]` is the shard's own port: its connections stay.
    own_listener: Option<usize>,
    /// Time spent outside `poll` since the last tick (the shard's load).
    busy: Duration,
    /// When each connection's timers are next due (`tick_slice`).
    due: DueTable,
    stop: Arc<AtomicBool>,
    /// A graceful shutdown was asked for (`drain`).
    drain: Arc<AtomicBool>,
    draining: Option<drain::Draining>,
}

/// What `shard::start` hands each shard's thread.
pub struct ShardSetup {
    pub id: u16,
    pub config: Arc<Config>,
    pub defs: Arc<Definitions>,
    pub alarms: Arc<Alarms>,
    pub listeners: ShardListeners,
    pub links: Links,
    /// Work from threads that are not shards.
    pub control: Inbox,
    pub stop: Arc<AtomicBool>,
    pub drain: Arc<AtomicBool>,
    /// The last run ended cleanly (`store::clean`).
    pub clean_start: bool,
}

/// Runs one shard until `stop` is set.
pub fn run(setup: ShardSetup) {
    let ShardSetup {
        id,
        config,
        defs,
        alarms,
        listeners: sl,
        links,
        control,
        stop,
        drain,
        clean_start,
    } = setup;
    let mut listeners = Vec::new();
    let tls_from = sl.listeners.len();
    let all = sl.listeners.into_iter().chain(sl.tls_listeners);
    for (i, l) in all.enumerate() {
        let mut l = TcpListener::from_std(l);
        if let Err(e) =
            links
                .poll
                .registry()
                .register(&mut l, listener_token(i), Interest::READABLE)
        {
            log::error!("shard {}: cannot register listener: {}", id, e);
        }
        listeners.push(l);
    }
    let mut ctx = ShardCtx::new(id, config, defs, alarms);
    ctx.clean_start = clean_start;
    // Page files of a previous run are scratch: gone.
    let paging_dir = crate::core::persist::paging_dir(&ctx.config.data_dir, id);
    let _ = std::fs::remove_dir_all(&paging_dir);
    ctx.paging = Some(Arc::new(crate::core::backlog::PagingConfig {
        dir: paging_dir,
        max_messages: ctx.config.queue_max_in_memory,
        max_bytes: ctx.config.queue_max_in_memory_bytes,
        chunk_size: ctx.config.segment_size.clamp(1 << 20, 64 << 20),
    }));
    // Durable queues homed here exist before anything is served, with the
    // persistent messages of this shard's store.
    ctx.recover_queues();
    let waker = links.wakers[id as usize].clone();
    let opened = ShardStore::open(
        &ctx.config.data_dir,
        id,
        ctx.config.segment_size,
        ctx.config.queue_max_in_memory,
        ctx.config.fsync,
        Box::new(move || {
            let _ = waker.wake();
        }),
    );
    match opened {
        Ok((store, recovered)) => {
            ctx.store = Some(store);
            ctx.recover_messages(recovered);
        }
        Err(e) => {
            // Serving without the store would confirm messages it cannot keep.
            log::error!("shard {}: cannot open the message store: {}", id, e);
            std::process::exit(1);
        }
    }
    let mut lp = Loop {
        id,
        state: ShardState::new(ctx),
        links,
        control,
        listeners,
        tls_from,
        tls: sl.tls,
        retry_read: Vec::new(),
        flush_list: Vec::new(),
        flow_blocked: Vec::new(),
        accept_guard: AcceptGuard::new(),
        own_listener: sl.own,
        busy: Duration::ZERO,
        due: DueTable::new(Instant::now()),
        stop,
        drain,
        draining: None,
    };
    lp.run();
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        // The connections' timers run in slices between ticks (`tick_slice`).
        let mut next_slice = Instant::now() + TICK;
        let mut slice = 0usize;
        let mut last_tick = Instant::now();
        let mut woke = Instant::now();
        let me = self.id as usize;
        let busy_poll = self.state.ctx.config.busy_poll;
        while !self.stop.load(Ordering::Acquire) {
            let mut timeout = next_tick
                .min(next_slice)
                .saturating_duration_since(Instant::now());
            let mut skip_poll = false;
            if !self.retry_read.is_empty()
                || !self.state.ctx.reread.is_empty()
                || self.has_outgoing()
            {
                timeout = Duration::ZERO;
            } else if busy_poll > Duration::ZERO && self.busy_poll(&mut events, busy_poll) {
                // Input arrived while spinning: `events` holds it.
                timeout = Duration::ZERO;
                skip_poll = true;
            } else {
                // Announce we may sleep, then look at the rings once more: a peer
                // that pushed before seeing the flag has its entry seen here.
                self.links.parked[me].store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if self.rings_nonempty() {
                    timeout = Duration::ZERO;
                }
            }
            self.busy += woke.elapsed();
            let polled = if skip_poll {
                Ok(())
            } else {
                self.links.poll.poll(&mut events, Some(timeout))
            };
            if let Err(e) = polled {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("shard {}: poll failed: {}", self.id, e);
                }
            }
            self.links.parked[me].store(false, Ordering::SeqCst);
            // The coarse clock of this iteration (`core::latency`), also
            // the time the tick below is due against.
            let now = Instant::now();
            woke = now;
            crate::core::latency::set_clock(now);
            for ev in events.iter() {
                match ev.token() {
                    WAKER_TOKEN => {}
                    Token(t)
                        if t > usize::MAX - 2 - self.listeners.len() && t <= usize::MAX - 2 =>
                    {
                        self.accept(usize::MAX - 2 - t)
                    }
                    Token(slot) => {
                        // A connection already listed to read again is read
                        // once, in that pass below.
                        let listed = self
                            .state
                            .conns
                            .get(slot)
                            .is_some_and(|c| c.sock_ref().read_again);
                        if (ev.is_readable() || ev.is_read_closed() || ev.is_error()) && !listed {
                            // A short read ends it, unless the FIN is already
                            // in (no new edge would come to finish the read).
                            let stop_short = !ev.is_read_closed() && !ev.is_error();
                            self.read(slot, stop_short);
                        }
                        if ev.is_writable() {
                            self.state.ctx.mark_dirty(slot);
                        }
                    }
                }
            }
            self.resume_accepting(now);
            let reread = std::mem::take(&mut self.state.ctx.reread);
            for slot in reread {
                self.list_read_again(slot);
            }
            let mut retry = std::mem::take(&mut self.retry_read);
            for &slot in &retry {
                if let Some(conn) = self.state.conns.get_mut(slot) {
                    conn.sock().read_again = false;
                }
            }
            for &slot in &retry {
                self.read(slot, false);
            }
            retry.clear();
            if self.retry_read.is_empty() {
                // Keep the capacity (no allocation per iteration).
                self.retry_read = retry;
            }
            self.pump();
            if now >= next_tick {
                next_tick = now + TICK;
                self.note_load(now.duration_since(last_tick));
                last_tick = now;
                self.tick(now);
                self.pump();
            }
            if now >= next_slice {
                let slices = conn_tick_slices(self.state.conns.len());
                slice = (slice + 1) % slices;
                next_slice = now + TICK / slices as u32;
                self.tick_slice(now, slice, slices);
                self.pump();
            }
            self.move_sessions();
            // Group commit: this iteration's store writes go out in one write
            // per segment and one fsync request; durable confirms are released.
            self.state.ctx.end_store_iteration();
            self.send_outgoing();
            self.unblock_publishers();
            // Queues that paused on a congested destination go on next round
            // (a Resume in the local outbox makes the next poll non-blocking).
            self.state.ctx.outbox.resume_stalled();
            self.flush();
            if self.drain.load(Ordering::Acquire) && self.drain_step(Instant::now()) {
                break;
            }
        }
        // Shutdown: what the store buffered is written and synced; sockets
        // close as the state drops.
        self.state.ctx.sync_streams();
        if let Some(store) = self.state.ctx.store.as_mut() {
            if let Err(e) = store.log.flush().and_then(|_| store.log.sync()) {
                log::error!(
                    "shard {}: message store not synced at shutdown: {}",
                    self.id,
                    e
                );
            }
        }
    }

    /// `--busy-poll-us`: polls without blocking for up to `spin`; true when
    /// socket events (now in `events`) or ring messages arrived meanwhile.
    fn busy_poll(&mut self, events: &mut Events, spin: Duration) -> bool {
        let until = Instant::now() + spin;
        loop {
            if self.links.poll.poll(events, Some(Duration::ZERO)).is_ok() && !events.is_empty() {
                return true;
            }
            if self.rings_nonempty() {
                events.clear();
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::hint::spin_loop();
        }
    }

    /// Accepts every connection waiting on listener `i`, until `WouldBlock`
    /// (the listener is edge-triggered). Out of descriptors, the
    /// `AcceptGuard` sheds waiting connections with its reserve descriptor
    /// or pauses accepting (`resume_accepting` drains again).
    fn accept(&mut self, i: usize) {
        if self.accept_guard.is_paused(Instant::now()) {
            return;
        }
        loop {
            match self.accept_guard.accept(&self.listeners[i]) {
                Ok((mut stream, _addr)) => {
                    let slot = self.state.conns.vacant_key();
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) =
                        self.links
                            .poll
                            .registry()
                            .register(&mut stream, Token(slot), interest)
                    {
                        log::warn!("cannot register connection: {}", e);
                        continue;
                    }
                    let mut sock = match &self.tls {
                        Some(tls) if i >= self.tls_from => {
                            match Socket::new_tls(stream, tls.clone()) {
                                Ok(s) => s,
                                Err(e) => {
                                    log::warn!("cannot start TLS: {}", e);
                                    continue;
                                }
                            }
                        }
                        _ => Socket::new(stream),
                    };
                    sock.stay = self.own_listener == Some(i);
                    let uid = self.state.ctx.next_conn_uid();
                    self.state
                        .conns
                        .insert(Session::accepted(sock, slot as u32, uid));
                    self.due.touch(slot);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    let after = self
                        .accept_guard
                        .on_error(&e, &self.listeners[i], Instant::now());
                    if after == AfterError::Stop {
                        return;
                    }
                }
            }
        }
    }

    /// After an accept back-off: drain every listener again, since the
    /// connections already waiting raise no new (edge-triggered) event.
    fn resume_accepting(&mut self, now: Instant) {
        if self.accept_guard.resume_due(now) {
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
    }

    /// Reads connection `slot` and runs its input; `stop_short` as in
    /// `Socket::fill`.
    fn read(&mut self, slot: usize, stop_short: bool) {
        let paused = self.reads_paused();
        let Some(conn) = self.state.conns.get_mut(slot) else {
            return;
        };
        self.due.touch(slot);
        if conn.sock().dead || paused {
            return;
        }
        if conn.sock().pending_output() > WRITE_HIGH_WATER {
            // Resumed from `flush` once the peer reads its output.
            return;
        }
        let alarm = self.state.ctx.alarms.active();
        if conn.is_publisher() && (alarm || self.state.ctx.outbox.remote_congested()) {
            // Publisher flow control (RabbitMQ's credit flow, by other means): a
            // queue shard that cannot keep up fills its ring and then our outbox;
            // its publishers wait, consumers and acks go on. A resource alarm
            // blocks every publisher the same way, and tells it. Resumed by
            // `unblock_publishers` once the outbox drained and no alarm is raised.
            if alarm {
                let reason = self.state.ctx.alarms.reason();
                conn.notify_blocked(reason, &mut self.state.ctx);
            }
            if !conn.sock().flow_blocked {
                conn.sock().flow_blocked = true;
                self.flow_blocked.push(slot);
            }
            return;
        }
        let outcome = conn.sock().fill(stop_short);
        conn.on_input(&mut self.state.ctx);
        if conn.sock().needs_flush() {
            // TLS handshake records (or an alert) to send, with no `wbuf`
            // output to make the connection dirty.
            self.state.ctx.mark_dirty(slot);
        }
        match outcome {
            Ok(ReadOutcome::Drained) => {}
            // A full buffer on a waiting connection is parked, not retried in a
            // spin; `Connection::on_reply` asks for the read again.
            Ok(ReadOutcome::More) if conn.is_waiting() && conn.sock().input_full() => {}
            Ok(ReadOutcome::More) => self.list_read_again(slot),
            Ok(ReadOutcome::Closed) | Err(_) => {
                conn.teardown(&mut self.state.ctx);
                conn.sock().dead = true;
                self.state.ctx.mark_dirty(slot);
            }
        }
    }

    /// Lists a connection to be read again next iteration (at most once).
    fn list_read_again(&mut self, slot: usize) {
        if let Some(conn) = self.state.conns.get_mut(slot) {
            if !conn.sock().read_again {
                conn.sock().read_again = true;
                self.retry_read.push(slot);
            }
        }
    }

    /// Handles ring messages and the shard's own messages until none is
    /// left; then registers the sessions that moved here.
    fn pump(&mut self) {
        self.pump_messages();
        if !self.state.adopted.is_empty() {
            self.register_adopted();
        }
    }

    fn pump_messages(&mut self) {
        let me = self.id as usize;
        // Bounded: under steady cross-shard traffic the rings never empty, and
        // the loop must still get back to sockets, flushes and timers. What is
        // left makes the next poll non-blocking (`rings_nonempty`).
        let mut budget = PUMP_BUDGET;
        loop {
            let mut did = self.control.drain(&mut self.state);
            while let Some(m) = self.state.ctx.outbox.pop_local() {
                self.state.handle(m);
                did += 1;
            }
            for j in 0..self.links.from.len() {
                if j == me {
                    continue;
                }
                for _ in 0..RING_BATCH {
                    let Some(m) = self.links.from[j].as_mut().and_then(|c| c.pop()) else {
                        break;
                    };
                    self.state.handle(m);
                    did += 1;
                    while let Some(m) = self.state.ctx.outbox.pop_local() {
                        self.state.handle(m);
                    }
                }
            }
            if did == 0 || did >= budget {
                return;
            }
            budget -= did;
        }
    }

    /// Publishes the share of `period` this shard spent working.
    fn note_load(&mut self, period: Duration) {
        let busy = std::mem::take(&mut self.busy);
        let per_mille = (busy.as_micros() * 1000 / period.as_micros().max(1)).min(1000) as u32;
        self.links.loads[self.id as usize].store(per_mille, Ordering::Relaxed);
    }

    /// Moves the sessions that asked to (`ShardCtx::moves`: publishers
    /// following their queue, `core::follow`) and can: into the ring to
    /// their new shard, behind everything they sent before. A shard busier
    /// than `FOLLOW_MAX_LOAD` takes no newcomers.
    fn move_sessions(&mut self) {
        if self.state.ctx.moves.is_empty() {
            return;
        }
        let mut moves = std::mem::take(&mut self.state.ctx.moves);
        for &(slot, to) in &moves {
            let Some(Session::Amqp091(conn)) = self.state.conns.get_mut(slot) else {
                continue;
            };
            let sock = &conn.sock;
            let busy = to == self.id
                || to as usize >= self.links.loads.len()
                || self.links.loads[to as usize].load(Ordering::Relaxed) > FOLLOW_MAX_LOAD;
            // (Connections on a shard's own port never ask: `ask_to_follow`.)
            if busy || sock.dead || sock.read_again || sock.flow_blocked || !conn.can_move() {
                // Its queues let its consumers go on; it asks again at a
                // later tick.
                conn.cancel_move(&mut self.state.ctx);
                continue;
            }
            self.due.vacate(slot);
            let mut session = self.state.conns.remove(slot);
            let _ = self
                .links
                .poll
                .registry()
                .deregister(&mut session.sock().stream);
            log::debug!(
                "shard {}: connection in slot {} moves to shard {}",
                self.id,
                slot,
                to
            );
            self.state
                .ctx
                .outbox
                .push(to, ShardMsg::Adopt(Adoptee(Box::new(session))));
        }
        moves.clear();
        self.state.ctx.moves = moves;
    }

    /// Sessions that moved here: their sockets join this shard's poll, and
    /// what they hold (input read on the old shard, output not yet written)
    /// is processed as if it had just arrived.
    fn register_adopted(&mut self) {
        let adopted = std::mem::take(&mut self.state.adopted);
        for &slot in &adopted {
            let Some(session) = self.state.conns.get_mut(slot) else {
                continue;
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            let sock = session.sock();
            sock.read_again = false;
            sock.flow_blocked = false;
            if let Err(e) =
                self.links
                    .poll
                    .registry()
                    .register(&mut sock.stream, Token(slot), interest)
            {
                log::warn!(
                    "shard {}: cannot register a moved connection: {}",
                    self.id,
                    e
                );
                session.teardown(&mut self.state.ctx);
                session.sock().dead = true;
                self.state.ctx.mark_dirty(slot);
                continue;
            }
            self.list_read_again(slot);
            self.state.ctx.mark_dirty(slot);
        }
        let mut adopted = adopted;
        adopted.clear();
        self.state.adopted = adopted;
    }

    fn rings_nonempty(&self) -> bool {
        self.links.from.iter().flatten().any(|c| !c.is_empty())
    }

    fn has_outgoing(&self) -> bool {
        self.state.ctx.outbox.to.iter().any(|q| !q.is_empty())
    }

    /// Moves this iteration's messages onto the rings; one wake-up per peer.
    fn send_outgoing(&mut self) {
        let me = self.id as usize;
        for j in 0..self.state.ctx.outbox.to.len() {
            if j == me || self.state.ctx.outbox.to[j].is_empty() {
                continue;
            }
            let ring = self.links.to[j].as_mut().expect("ring to peer");
            let outbox = &mut self.state.ctx.outbox;
            let mut pushed = false;
            while let Some(m) = outbox.pop(j) {
                match ring.try_push(m) {
                    Ok(()) => pushed = true,
                    Err(m) => {
                        // Ring full: keep the rest, in order, for the next iteration.
                        outbox.unpop(j, m);
                        break;
                    }
                }
            }
            if pushed {
                fence(Ordering::SeqCst);
                if self.links.parked[j].load(Ordering::SeqCst) {
                    let _ = self.links.wakers[j].wake();
                }
            }
        }
    }

    /// Publishers stopped by congested rings are read again once the outbox
    /// holds no congested destination.
    fn unblock_publishers(&mut self) {
        if self.flow_blocked.is_empty()
            || self.state.ctx.outbox.remote_congested()
            || self.state.ctx.alarms.active()
        {
            return;
        }
        let now = Instant::now();
        let mut blocked = std::mem::take(&mut self.flow_blocked);
        for &slot in &blocked {
            if let Some(conn) = self.state.conns.get_mut(slot) {
                if conn.sock().flow_blocked {
                    conn.sock().flow_blocked = false;
                    // Its silence while blocked was ours, not a missed heartbeat.
                    conn.sock().last_read = now;
                    conn.notify_unblocked(&mut self.state.ctx);
                    self.list_read_again(slot);
                }
            }
        }
        blocked.clear();
        self.flow_blocked = blocked;
    }

    fn tick(&mut self, now: Instant) {
        let ctx = &mut self.state.ctx;
        if self.id == 0 {
            ctx.alarms.check();
            if ctx.defs.log_failed() {
                ctx.defs.retry_log();
            }
        }
        ctx.store_tick(now);
        if ctx.alarms.active() {
            // Publishers blocked by congestion when the alarm came are told too.
            let reason = ctx.alarms.reason();
            for &slot in &self.flow_blocked {
                if let Some(conn) = self.state.conns.get_mut(slot) {
                    conn.notify_blocked(reason, ctx);
                }
            }
        }
        // Keeps this shard's cursor in the definitions log moving even when it
        // routes nothing, so the log can be trimmed.
        ctx.routing.sync(&ctx.defs);
        // Message TTL, x-expires and delivery acknowledgement timeouts.
        ctx.tick_queues(now);
        ctx.move_budget = crate::core::follow::MOVES_PER_TICK;
    }

    /// The sessions' timers (heartbeats, handshake and close timeouts, idle
    /// buffers, `ask_to_follow`) for the connection slots `slice`,
    /// `slice + slices`, ...: each connection once per `TICK`, spread over
    /// the tick so that 10,000 connections do not stall one iteration for
    /// milliseconds (a message arriving meanwhile would wait that long).
    /// A connection whose timers are not due is not touched (`shard::due`).
    fn tick_slice(&mut self, now: Instant, slice: usize, slices: usize) {
        let ctx = &mut self.state.ctx;
        self.due.auth_changed(ctx.defs.auth_version());
        let end = self.state.conns.capacity();
        for slot in (slice..end).step_by(slices) {
            if !self.due.is_due(slot, now) {
                continue;
            }
            let Some(conn) = self.state.conns.get_mut(slot) else {
                continue;
            };
            let mut next = Some(now);
            if !conn.sock().dead {
                next = conn.tick(now, ctx);
            }
            if conn.sock().dead {
                ctx.mark_dirty(slot);
            }
            self.due.set(slot, now, next);
        }
    }

    /// Writes pending output; drops finished and dead connections.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.flush_list);
        self.state.ctx.take_dirty(&mut dirty);
        for &slot in &dirty {
            let Some(conn) = self.state.conns.get_mut(slot) else {
                continue;
            };
            self.due.touch(slot);
            let mut drop_it = conn.sock().dead;
            if drop_it {
                // Last words (a close-ok to a client that half-closed): best effort.
                conn.sock().close_notify();
                let _ = conn.sock().flush();
            } else {
                conn.before_flush(&mut self.state.ctx);
                let sock = conn.sock();
                let pending = sock.pending_output();
                let was_blocked = pending > WRITE_HIGH_WATER;
                match sock.flush() {
                    Ok(all) => {
                        // Only real output counts for heartbeats (a writable event
                        // alone must not postpone the next heartbeat).
                        if sock.pending_output() < pending {
                            sock.last_write = Instant::now();
                        }
                        if was_blocked
                            && sock.pending_output() <= WRITE_HIGH_WATER
                            && !sock.read_again
                        {
                            sock.read_again = true;
                            self.retry_read.push(slot);
                        }
                        conn.after_flush(all, &mut self.state.ctx);
                    }
                    Err(_) => {
                        conn.teardown(&mut self.state.ctx);
                        drop_it = true;
                    }
                }
            }
            if drop_it {
                self.due.vacate(slot);
                let mut conn = self.state.conns.remove(slot);
                conn.teardown(&mut self.state.ctx);
                if !matches!(conn, Session::Sniffing(_)) {
                    self.state.ctx.churn.connection_closed += 1;
                }
                let _ = self
                    .links
                    .poll
                    .registry()
                    .deregister(&mut conn.sock().stream);
            }
        }
        dirty.clear();
        self.flush_list = dirty;
        // Teardown may have produced messages (requeues); they go out next round.
    }
}
