//! The node-to-node transport on the cluster port (`--cluster-port`,
//! 25672): authenticated, batched, non-blocking binary frames between
//! warren nodes. Quorum-queue replication and the link that forwards shard
//! messages between nodes will ride on it; it knows nothing of either.
//!
//! It has no thread of its own. Its owner (the `cluster` thread) runs one
//! `mio::Poll`, hands its registry to [`Transport::new`] and forwards the
//! events whose token the transport [`owns`](Transport::owns), so that the
//! same loop can also poll the rings from the shards. The transport uses
//! tokens `token_base .. token_base + TOKENS`: `token_base` is the
//! listener, `token_base + 1 + slot` the connection in slab slot `slot`.
//!
//! # Connections
//! Each node dials every peer (`set_peers`) and *sends only* on that
//! outbound connection; connections it accepts are *read only*. So a pair
//! of nodes has two TCP connections, one per direction, and nobody has to
//! decide which of two crossing connects wins. `PeerUp`/`PeerDown` are
//! about the outbound connection (can we send to it?); an inbound
//! connection closing is not reported: the peer's own outbound side says
//! what it means. A lost outbound connection is redialled with backoff
//! (100 ms doubling to 2 s). Frames sent while a peer is not up are
//! buffered (up to [`MAX_PENDING`]) and go out once it is; when a
//! connection is lost, what the kernel took is gone with it (it may or may
//! not have arrived), the rest of a frame it took part of is dropped, and
//! the frames after it stay for the next connection. A receiver closes a
//! node's older inbound connections when a new one completes its
//! handshake, so theirs never follow the new one's. So a receiver sees
//! each peer's frames in order, with a gap only where a connection broke.
//!
//! Liveness: an outbound connection idle for 1 s sends a heartbeat (an
//! empty frame of kind 0, never handed to the sink); an inbound connection
//! silent for 5 s is closed; an outbound one has `TCP_USER_TIMEOUT` 5 s,
//! so the kernel drops it when its data (at least the heartbeats) goes
//! unacknowledged that long, and it is redialled. A connection whose
//! handshake has not completed within 5 s is closed (and an outbound one
//! redialled).
//!
//! # Wire format
//! Handshake (the acceptor speaks first):
//! - acceptor → connector: `WRNCLU01`, a 16-byte random nonce;
//! - connector → acceptor: `WRNCLU01`, u16 big-endian length and the
//!   connector's node name (UTF-8, 1 to 255 bytes), then 32 bytes of
//!   HMAC-SHA256(secret, nonce ‖ name);
//! - acceptor → connector: one byte, 1 (accepted) or 0 (refused: bad
//!   magic, bad name, wrong MAC; logged with the peer's address, then the
//!   connection is closed). The connector's connection is up only once it
//!   has read the 1.
//!
//! The nonce makes a recorded hello useless on another connection. The
//! acceptor is not authenticated to the connector and nothing is
//! encrypted: the cluster port belongs on a trusted network.
//!
//! Then, connector → acceptor only, frames:
//! `[u32 big-endian length of kind + payload][u8 kind][payload]`, the
//! length at most 64 MiB ([`MAX_FRAME`]): a larger one, or 0, closes the
//! connection with a warning. Kind 0 is the heartbeat; the others belong
//! to the callers.
//!
//! # Layout
//! - `wire.rs`: the messages' encoding, the two-step frame check, HMAC.
//! - `buf.rs`: `ReadBuf` (input, frames borrowed from it) and `OutBuf`
//!   (a peer's output, which survives reconnections), `FrameWriter`.
//! - `conn.rs`: one connection and its side of the handshake.

mod buf;
mod conn;
mod wire;

pub use buf::FrameWriter;
pub use wire::{check_frame, hmac_sha256, FrameError, KIND_HEARTBEAT, MAX_FRAME, MAX_PAYLOAD};

use conn::{Closed, Conn, Progress};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Connections at most (outbound and inbound; handshaking ones count).
/// Accepted connections beyond it are closed at once.
pub const MAX_CONNS: usize = 1024;
/// Tokens the transport may use, from `token_base`.
pub const TOKENS: usize = 1 + MAX_CONNS;
/// Output buffered for one peer above which `send` refuses (`Full`).
pub const MAX_PENDING: usize = 64 << 20;
/// Input read from one connection per event; the rest waits for
/// [`Transport::run_deferred`], so one busy peer cannot hold the owner's
/// loop (and the rings it also serves).
pub const READ_PER_EVENT: usize = 256 * 1024;

const HEARTBEAT_IDLE: Duration = Duration::from_secs(1);
const INBOUND_SILENCE: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const USER_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// An empty output buffer larger than this gives its memory back at a tick.
const OUT_KEEP: usize = 4 << 20;

/// What the transport hands its owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A frame from `from`; `payload` is borrowed from the read buffer.
    Frame {
        from: &'a str,
        kind: u8,
        payload: &'a [u8],
    },
    /// The outbound connection to this peer completed its handshake.
    PeerUp(&'a str),
    /// The outbound connection to this peer, up until now, was lost (or
    /// the peer was removed or moved by `set_peers`). Every `PeerUp` is
    /// followed by one `PeerDown` before the next `PeerUp`.
    PeerDown(&'a str),
}

/// What [`Transport::send`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    /// Buffered for a connection that is up.
    Queued,
    /// Buffered, and sent once the connection to the peer is up.
    NotConnected,
    /// Not a peer (see `set_peers`).
    NoSuchPeer,
    /// Refused: [`MAX_PENDING`] bytes are waiting for this peer already.
    Full,
    /// Refused: the payload exceeds [`MAX_PAYLOAD`].
    TooLarge,
}

/// One other node.
struct Peer {
    name: String,
    addr: SocketAddr,
    /// Frames not yet written; survives reconnections.
    out: buf::OutBuf,
    /// Slab slot of the outbound connection (dialling, handshaking or up).
    conn: Option<usize>,
    /// The outbound connection completed its handshake (`PeerUp` was reported).
    up: bool,
    /// Wait before the next dial after a failure.
    backoff: Duration,
    retry_at: Instant,
    /// When output was last written (heartbeat when idle).
    last_write: Instant,
    /// A failure was logged as a warning since the peer was last up: the
    /// next ones are debug lines, not one warning per redial.
    warned: bool,
}

/// The cluster transport: one listener, a connection to every peer, the
/// connections peers made to us. See the module documentation.
pub struct Transport {
    me: String,
    secret: Vec<u8>,
    listener: TcpListener,
    /// For registering connections made after `new`.
    registry: Registry,
    token_base: usize,
    conns: Slab<Conn>,
    peers: Vec<Peer>,
    /// Peers lost outside `handle_event` (in `flush`, `tick`, `set_peers`),
    /// reported at the start of the next `handle_event` or `run_deferred`,
    /// so always before a `PeerUp` that follows.
    downs: Vec<String>,
    /// Inbound connections that used their per-event budget.
    read_again: Vec<usize>,
    /// `accept` failed (out of descriptors): retried at each tick, since an
    /// edge-triggered listener raises no new event for the waiting backlog.
    accept_again: bool,
}

impl Transport {
    /// A transport on `listener` (bound already; port 0 is fine) for node
    /// `me`, registered in `registry` with tokens from `token_base` (see
    /// [`TOKENS`]). Peers come with [`set_peers`](Transport::set_peers).
    pub fn new(
        listener: std::net::TcpListener,
        me: String,
        secret: Vec<u8>,
        registry: &Registry,
        token_base: usize,
    ) -> io::Result<Transport> {
        if me.is_empty() || me.len() > wire::MAX_NAME {
            let msg = format!(
                "cluster: a node name has 1 to {} bytes, not {}",
                wire::MAX_NAME,
                me.len()
            );
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, Token(token_base), Interest::READABLE)?;
        Ok(Transport {
            me,
            secret,
            listener,
            registry: registry.try_clone()?,
            token_base,
            conns: Slab::new(),
            peers: Vec::new(),
            downs: Vec::new(),
            read_again: Vec::new(),
            accept_again: false,
        })
    }

    /// Whether an event with this token is the transport's.
    pub fn owns(&self, token: Token) -> bool {
        (self.token_base..self.token_base + TOKENS).contains(&token.0)
    }

    /// The listener's address (its port, when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The other nodes and their cluster addresses, all of them. New peers
    /// are dialled now; a removed peer's connection is closed and its
    /// buffered output dropped; a peer whose address changed is redialled.
    /// An entry named like this node is ignored.
    pub fn set_peers(&mut self, peers: &[(String, SocketAddr)]) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.peers.len() {
            let keep = peers.iter().find(|(n, _)| *n == self.peers[i].name);
            match keep {
                None => {
                    self.disconnect(i, Closed::Removed);
                    log::info!("cluster: {} is no longer a peer", self.peers[i].name);
                    self.peers.swap_remove(i);
                    continue;
                }
                Some(&(_, addr)) if addr != self.peers[i].addr => {
                    self.disconnect(i, Closed::Removed);
                    let p = &mut self.peers[i];
                    log::info!("cluster: peer {} moved from {} to {addr}", p.name, p.addr);
                    p.addr = addr;
                    p.backoff = BACKOFF_MIN;
                    p.retry_at = now;
                }
                Some(_) => {}
            }
            i += 1;
        }
        for (name, addr) in peers {
            if *name == self.me || self.peers.iter().any(|p| p.name == *name) {
                continue;
            }
            self.peers.push(Peer {
                name: name.clone(),
                addr: *addr,
                out: buf::OutBuf::default(),
                conn: None,
                up: false,
                backoff: BACKOFF_MIN,
                retry_at: now,
                last_write: now,
                warned: false,
            });
        }
        for i in 0..self.peers.len() {
            if self.peers[i].conn.is_none() && self.peers[i].retry_at <= now {
                self.connect(i, now);
            }
        }
    }

    /// Appends one frame to `node`'s output (no syscall: [`flush`](Transport::flush)
    /// writes). Kind 0 is the heartbeat, which the receiver drops.
    pub fn send(&mut self, node: &str, kind: u8, payload: &[u8]) -> SendResult {
        let Some(p) = self.peers.iter_mut().find(|p| p.name == node) else {
            return SendResult::NoSuchPeer;
        };
        if payload.len() > MAX_PAYLOAD {
            return SendResult::TooLarge;
        }
        let pending = p.out.pending();
        // An empty buffer takes any frame, so every legal frame can be sent.
        if pending > 0 && pending + wire::HEADER_LEN + payload.len() > MAX_PENDING {
            return SendResult::Full;
        }
        p.out.push(kind, payload);
        if p.up {
            SendResult::Queued
        } else {
            SendResult::NotConnected
        }
    }

    /// A writer that encodes one frame's payload straight into `node`'s
    /// output; the frame is complete when the writer is dropped. `None`
    /// when `node` is not a peer or [`MAX_PENDING`] bytes wait for it
    /// (`pending_bytes` and `peer_up` tell which). Like `send`, a frame
    /// for a peer that is not up waits for it.
    pub fn frame_mut(&mut self, node: &str, kind: u8) -> Option<FrameWriter<'_>> {
        let p = self.peers.iter_mut().find(|p| p.name == node)?;
        (p.out.pending() < MAX_PENDING).then(|| p.out.writer(kind))
    }

    /// Bytes buffered for `node` and not yet written to its socket (0 for
    /// an unknown node): callers stop producing above their own bound.
    pub fn pending_bytes(&self, node: &str) -> usize {
        self.peers
            .iter()
            .find(|p| p.name == node)
            .map_or(0, |p| p.out.pending())
    }

    /// Whether the outbound connection to `node` is up.
    pub fn peer_up(&self, node: &str) -> bool {
        self.peers.iter().any(|p| p.name == node && p.up)
    }

    /// The nodes with an inbound connection past its handshake.
    pub fn inbound_nodes(&self) -> impl Iterator<Item = &str> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.outbound && c.is_up())
            .map(|(_, c)| c.node.as_str())
    }

    /// Writes every peer's buffered output, until it is all written or the
    /// socket is full; what is left goes on the writable event.
    pub fn flush(&mut self) {
        for i in 0..self.peers.len() {
            if self.peers[i].up && self.peers[i].out.pending() > 0 {
                self.flush_peer(i);
            }
        }
    }

    /// Handles one event whose token the transport [`owns`](Transport::owns).
    pub fn handle_event(&mut self, event: &Event, sink: &mut impl FnMut(Incoming<'_>)) {
        self.report_downs(sink);
        let token = event.token().0;
        if token == self.token_base {
            self.accept_all();
            return;
        }
        let Some(slot) = token.checked_sub(self.token_base + 1) else {
            return;
        };
        // An event for a connection closed earlier in the same batch.
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        if conn.outbound {
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            self.outbound_ready(slot, readable, event.is_writable(), sink);
        } else {
            self.inbound_ready(slot, sink);
        }
        self.report_downs(sink);
    }

    /// Whether there is work that no event will announce: inbound input
    /// left unread by the per-event budget, or a `PeerDown` to report.
    /// The owner then polls with a zero timeout and calls `run_deferred`.
    pub fn has_deferred(&self) -> bool {
        !self.read_again.is_empty() || !self.downs.is_empty()
    }

    /// Does that work: reports lost peers and reads the connections that
    /// had more input (again at most [`READ_PER_EVENT`] each).
    pub fn run_deferred(&mut self, sink: &mut impl FnMut(Incoming<'_>)) {
        self.report_downs(sink);
        for slot in std::mem::take(&mut self.read_again) {
            if self
                .conns
                .get(slot)
                .is_some_and(|c| c.read_again && !c.outbound)
            {
                self.inbound_ready(slot, sink);
            }
        }
        self.report_downs(sink);
    }

    /// The owner's timer, about every 100 ms: redials, heartbeats, timeouts.
    pub fn tick(&mut self, now: Instant) {
        if self.accept_again {
            self.accept_all();
        }
        let mut dead = Vec::new();
        for (slot, c) in self.conns.iter_mut() {
            c.shrink_if_idle();
            // Inbound too: a stranger trickling its hello byte by byte
            // would never be silent for long.
            if !c.is_up() && now.saturating_duration_since(c.opened) >= HANDSHAKE_TIMEOUT {
                dead.push((slot, Closed::HandshakeTimeout));
            } else if !c.outbound
                && !c.read_again
                && now.saturating_duration_since(c.last_read) >= INBOUND_SILENCE
            {
                dead.push((slot, Closed::Silent));
            }
        }
        for (slot, why) in dead {
            self.close(slot, why, now);
        }
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            if p.conn.is_none() && now >= p.retry_at {
                self.connect(i, now);
            } else if p.up
                && p.out.pending() == 0
                && now.saturating_duration_since(p.last_write) >= HEARTBEAT_IDLE
            {
                p.out.push(KIND_HEARTBEAT, &[]);
                self.flush_peer(i);
            }
            self.peers[i].out.shrink_if_idle(OUT_KEEP);
        }
    }

    fn report_downs(&mut self, sink: &mut impl FnMut(Incoming<'_>)) {
        for name in self.downs.drain(..) {
            sink(Incoming::PeerDown(&name));
        }
    }

    fn accept_all(&mut self) {
        self.accept_again = false;
        loop {
            let (stream, addr) = match self.listener.accept() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("cluster: accept on the cluster port failed: {e}");
                    self.accept_again = true;
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNS {
                log::warn!(
                    "cluster: closed a connection from {addr}: {MAX_CONNS} connections already"
                );
                continue;
            }
            let mut nonce = [0u8; wire::NONCE_LEN];
            if let Err(e) = getrandom::fill(&mut nonce) {
                log::warn!("cluster: closed a connection from {addr}: no random nonce: {e}");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let conn = Conn::inbound(stream, addr, nonce, Instant::now());
            if let Some(slot) = self.insert(conn) {
                // The challenge; a failure shows as an error at the next read.
                let _ = self.conns[slot].write_handshake();
            }
        }
    }

    /// Registers a connection for reading and writing, edge-triggered, once:
    /// a writable event comes only when a full send buffer drains, so the
    /// interest costs nothing while output flows and needs no re-registering.
    fn insert(&mut self, mut conn: Conn) -> Option<usize> {
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        let token = Token(self.token_base + 1 + slot);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.registry.register(&mut conn.stream, token, interest) {
            log::warn!(
                "cluster: cannot register a connection with {}: {e}",
                conn.addr
            );
            return None;
        }
        entry.insert(conn);
        Some(slot)
    }

    /// Dials peer `i`.
    fn connect(&mut self, i: usize, now: Instant) {
        let addr = self.peers[i].addr;
        let stream = if self.conns.len() >= MAX_CONNS {
            Err(io::Error::other("too many connections"))
        } else {
            TcpStream::connect(addr)
        };
        let slot = match stream {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                set_user_timeout(&stream);
                self.insert(Conn::outbound(stream, addr, &self.peers[i].name, now))
            }
            Err(e) => {
                self.failed(i, &Closed::Io(e));
                None
            }
        };
        match slot {
            Some(slot) => self.peers[i].conn = Some(slot),
            None => self.schedule_retry(i, now),
        }
    }

    fn outbound_ready(
        &mut self,
        slot: usize,
        readable: bool,
        writable: bool,
        sink: &mut impl FnMut(Incoming<'_>),
    ) {
        let Some(i) = self.peers.iter().position(|p| p.conn == Some(slot)) else {
            return;
        };
        match self.conns[slot].outbound_ready(&self.secret, &self.me, readable) {
            Err(why) => self.close(slot, why, Instant::now()),
            Ok(true) => {
                let p = &mut self.peers[i];
                log::info!("cluster: connected to node {} at {}", p.name, p.addr);
                p.up = true;
                p.warned = false;
                p.backoff = BACKOFF_MIN;
                p.last_write = Instant::now();
                sink(Incoming::PeerUp(&p.name));
                self.flush_peer(i);
            }
            Ok(false) if writable && self.peers[i].up => self.flush_peer(i),
            Ok(false) => {}
        }
    }

    fn inbound_ready(&mut self, slot: usize, sink: &mut impl FnMut(Incoming<'_>)) {
        let conn = &mut self.conns[slot];
        conn.read_again = false;
        let was_up = conn.is_up();
        match conn.inbound_ready(&self.secret, READ_PER_EVENT, sink) {
            Ok(Progress::Drained) => {}
            Ok(Progress::More) => {
                conn.read_again = true;
                self.read_again.push(slot);
            }
            Err(why) => return self.close(slot, why, Instant::now()),
        }
        if !was_up && self.conns[slot].is_up() {
            self.replace_older(slot);
        }
    }

    /// A node's new inbound connection closes its older ones (the node
    /// dialled again: it gave them up), before the new one delivers a
    /// frame, so that a frame from an old connection never follows one
    /// from the new. What the old ones still held is dropped, as the
    /// sender expects of a connection it lost.
    fn replace_older(&mut self, slot: usize) {
        let node = &self.conns[slot].node;
        let older: Vec<usize> = self
            .conns
            .iter()
            .filter(|&(s, c)| s != slot && !c.outbound && c.is_up() && c.node == *node)
            .map(|(s, _)| s)
            .collect();
        for s in older {
            self.close(s, Closed::Replaced, Instant::now());
        }
    }

    fn flush_peer(&mut self, i: usize) {
        let p = &mut self.peers[i];
        let Some(slot) = p.conn else { return };
        match p.out.write_to(&mut self.conns[slot].stream) {
            Ok(true) => p.last_write = Instant::now(),
            Ok(false) => {}
            Err(e) => self.close(slot, Closed::Io(e), Instant::now()),
        }
    }

    /// Closes the connection in `slot`; for an outbound one, the peer is
    /// down (reported if it was up) and redialled after its backoff.
    fn close(&mut self, slot: usize, why: Closed, now: Instant) {
        let mut conn = self.conns.remove(slot);
        let _ = self.registry.deregister(&mut conn.stream);
        if !conn.outbound {
            let who = if conn.node.is_empty() {
                String::new()
            } else {
                format!(" from node {}", conn.node)
            };
            match why {
                Closed::Eof | Closed::Refused => {
                    log::debug!("cluster: connection{who} at {} {why}", conn.addr)
                }
                Closed::Frame(_) => log::warn!(
                    "cluster: closed the connection{who} at {}: {why}",
                    conn.addr
                ),
                _ => log::info!(
                    "cluster: closed the connection{who} at {}: {why}",
                    conn.addr
                ),
            }
            return;
        }
        let Some(i) = self.peers.iter().position(|p| p.conn == Some(slot)) else {
            return;
        };
        self.peers[i].conn = None;
        self.peers[i].out.connection_lost();
        if std::mem::take(&mut self.peers[i].up) {
            self.downs.push(self.peers[i].name.clone());
        }
        self.failed(i, &why);
        self.schedule_retry(i, now);
    }

    /// Closes peer `i`'s connection at once, for `set_peers`.
    fn disconnect(&mut self, i: usize, why: Closed) {
        if let Some(slot) = self.peers[i].conn {
            self.close(slot, why, Instant::now());
        }
    }

    /// Logs a failed or lost outbound connection: a warning the first time
    /// since the peer was last up, then quietly while it stays down.
    fn failed(&mut self, i: usize, why: &Closed) {
        let p = &mut self.peers[i];
        if matches!(why, Closed::Removed) {
            return;
        }
        if p.warned {
            log::debug!(
                "cluster: connection to node {} at {}: {why}",
                p.name,
                p.addr
            );
        } else {
            log::warn!(
                "cluster: connection to node {} at {}: {why}",
                p.name,
                p.addr
            );
            p.warned = true;
        }
    }

    fn schedule_retry(&mut self, i: usize, now: Instant) {
        let p = &mut self.peers[i];
        p.retry_at = now + p.backoff;
        p.backoff = (p.backoff * 2).min(BACKOFF_MAX);
    }
}

/// Makes the kernel drop an outbound connection whose data goes
/// unacknowledged for [`USER_TIMEOUT`]: with a heartbeat every second, a
/// peer that vanished (power off, partition) is found out in seconds, not
/// after TCP's retransmissions give up (minutes).
fn set_user_timeout(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(USER_TIMEOUT)) {
        log::debug!("cluster: TCP_USER_TIMEOUT: {e}");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (stream, USER_TIMEOUT);
}
