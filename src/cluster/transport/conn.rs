//! One TCP connection of the transport, outbound (we dialled it, we only
//! send on it) or inbound (accepted, we only read it), and its side of the
//! handshake. A `Conn` reads and writes its socket and reports what
//! happened; the transport owns the peers and decides what that means
//! (a peer up or down, a reconnection, a log line).

use super::buf::{Filled, ReadBuf};
use super::wire::{self, FrameError, HandshakeError, ACCEPTED, KIND_HEARTBEAT, NONCE_LEN};
use super::Incoming;
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

/// The read buffer of a connection past its handshake; a frame larger
/// than this grows it for as long as it takes to receive.
const INBOUND_BUF: usize = 256 * 1024;
/// The read buffer during the handshake: a whole hello fits.
const HANDSHAKE_BUF: usize = 512;
const _: () = assert!(HANDSHAKE_BUF >= wire::MAX_HELLO);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Outbound: the non-blocking TCP connect is under way.
    Connecting,
    /// Outbound: waiting for the acceptor's challenge.
    AwaitChallenge,
    /// Outbound: hello sent, waiting for the verdict byte.
    AwaitVerdict,
    /// Inbound: challenge sent, waiting for the hello.
    AwaitHello { nonce: [u8; NONCE_LEN] },
    /// Handshake done: an outbound connection sends frames, an inbound
    /// one reads them.
    Up,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum Closed {
    /// The other end closed it.
    Eof,
    Io(io::Error),
    /// An inbound connection announced a frame we refuse.
    Frame(FrameError),
    /// We refused an inbound connection's hello (already logged).
    Refused,
    /// The acceptor refused our hello: it has another secret.
    RefusedByPeer,
    /// The acceptor's challenge was not one.
    BadChallenge(HandshakeError),
    /// The handshake took too long.
    HandshakeTimeout,
    /// An inbound connection said nothing, not even a heartbeat, for too long.
    Silent,
    /// The peer was removed or moved (`set_peers`).
    Removed,
    /// The same node opened a new inbound connection.
    Replaced,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Eof => f.write_str("closed by the peer"),
            Closed::Io(e) => write!(f, "{e}"),
            Closed::Frame(e) => write!(f, "{e}"),
            Closed::Refused => f.write_str("refused"),
            Closed::RefusedByPeer => f.write_str("refused our handshake (wrong cluster secret?)"),
            Closed::BadChallenge(e) => write!(f, "handshake: {e}"),
            Closed::HandshakeTimeout => f.write_str("handshake timed out"),
            Closed::Silent => f.write_str("silent for too long"),
            Closed::Removed => f.write_str("no longer a peer"),
            Closed::Replaced => f.write_str("replaced by a newer connection from the same node"),
        }
    }
}

/// What reading an inbound connection left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The kernel has nothing more.
    Drained,
    /// The per-event budget ran out: read again without waiting for an event.
    More,
}

pub struct Conn {
    pub stream: TcpStream,
    /// The other end's address, for log lines.
    pub addr: SocketAddr,
    pub outbound: bool,
    pub stage: Stage,
    /// The node at the other end: for an outbound connection, the peer we
    /// dialled; for an inbound one, the name its hello proved ("" before).
    pub node: String,
    rbuf: ReadBuf,
    /// Handshake bytes not yet written (challenge, hello, verdict); they
    /// are tiny and go before any frame.
    hs: Vec<u8>,
    hs_sent: usize,
    /// When the connection was opened (handshake timeout).
    pub opened: Instant,
    /// When input last arrived (inbound silence timeout).
    pub last_read: Instant,
    /// Listed in the transport's read-again list.
    pub read_again: bool,
}

impl Conn {
    /// A connection we are dialling to `node`.
    pub fn outbound(stream: TcpStream, addr: SocketAddr, node: &str, now: Instant) -> Conn {
        Conn::new(stream, addr, true, Stage::Connecting, node.to_owned(), now)
    }

    /// An accepted connection, whose challenge is queued.
    pub fn inbound(
        stream: TcpStream,
        addr: SocketAddr,
        nonce: [u8; NONCE_LEN],
        now: Instant,
    ) -> Conn {
        let mut c = Conn::new(
            stream,
            addr,
            false,
            Stage::AwaitHello { nonce },
            String::new(),
            now,
        );
        c.hs.extend_from_slice(&wire::challenge(&nonce));
        c
    }

    fn new(
        stream: TcpStream,
        addr: SocketAddr,
        outbound: bool,
        stage: Stage,
        node: String,
        now: Instant,
    ) -> Conn {
        Conn {
            stream,
            addr,
            outbound,
            stage,
            node,
            rbuf: ReadBuf::new(HANDSHAKE_BUF),
            hs: Vec::new(),
            hs_sent: 0,
            opened: now,
            last_read: now,
            read_again: false,
        }
    }

    /// See [`ReadBuf::shrink_if_idle`].
    pub fn shrink_if_idle(&mut self) {
        self.rbuf.shrink_if_idle();
    }

    pub fn is_up(&self) -> bool {
        self.stage == Stage::Up
    }

    /// Writes what is left of the handshake bytes; `WouldBlock` leaves the
    /// rest for the next (writable) event.
    pub fn write_handshake(&mut self) -> io::Result<()> {
        while self.hs_sent < self.hs.len() {
            match self.stream.write(&self.hs[self.hs_sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.hs_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.hs.clear();
        self.hs_sent = 0;
        Ok(())
    }

    /// An outbound connection's event: completes the connect, then the
    /// handshake. `Ok(true)` when the handshake completed just now.
    pub fn outbound_ready(
        &mut self,
        secret: &[u8],
        me: &str,
        readable: bool,
    ) -> Result<bool, Closed> {
        if self.stage == Stage::Connecting {
            if let Some(e) = self.stream.take_error().map_err(Closed::Io)? {
                return Err(Closed::Io(e));
            }
            match self.stream.peer_addr() {
                Ok(_) => self.stage = Stage::AwaitChallenge,
                // Not connected yet: a spurious event.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) => return Err(Closed::Io(e)),
            }
        }
        self.write_handshake().map_err(Closed::Io)?;
        if self.stage == Stage::Up {
            return if readable { self.drain_up() } else { Ok(false) };
        }
        // The handshake messages are tiny: read all there is.
        let closed = loop {
            match self
                .rbuf
                .fill(&mut self.stream, HANDSHAKE_BUF)
                .map_err(Closed::Io)?
            {
                Filled::Read(_) => {}
                Filled::Drained => break false,
                Filled::Closed => break true,
            }
        };
        if self.stage == Stage::AwaitChallenge {
            if let Some(nonce) =
                wire::check_challenge(self.rbuf.data()).map_err(Closed::BadChallenge)?
            {
                self.rbuf.consume(wire::CHALLENGE_LEN);
                wire::put_hello(&mut self.hs, secret, &nonce, me);
                self.stage = Stage::AwaitVerdict;
                self.write_handshake().map_err(Closed::Io)?;
            }
        }
        if self.stage == Stage::AwaitVerdict {
            match self.rbuf.data().first() {
                Some(&ACCEPTED) => {
                    self.rbuf.consume(1);
                    self.stage = Stage::Up;
                    return Ok(true);
                }
                Some(_) => return Err(Closed::RefusedByPeer),
                None => {}
            }
        }
        if closed {
            return Err(Closed::Eof);
        }
        Ok(false)
    }

    /// An outbound connection past its handshake is never sent anything:
    /// reading it only finds out that it closed.
    fn drain_up(&mut self) -> Result<bool, Closed> {
        let mut scratch = [0u8; 256];
        loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Err(Closed::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Closed::Io(e)),
            }
        }
    }

    /// An inbound connection's event (or read-again turn): finishes the
    /// handshake, then reads at most `budget` bytes, handing every whole
    /// frame but heartbeats to `sink`.
    pub fn inbound_ready(
        &mut self,
        secret: &[u8],
        mut budget: usize,
        sink: &mut impl FnMut(Incoming<'_>),
    ) -> Result<Progress, Closed> {
        self.write_handshake().map_err(Closed::Io)?;
        loop {
            let filled = self
                .rbuf
                .fill(&mut self.stream, budget)
                .map_err(Closed::Io)?;
            if let Filled::Read(n) = filled {
                budget = budget.saturating_sub(n);
                self.last_read = Instant::now();
            }
            if let Stage::AwaitHello { nonce } = self.stage {
                self.take_hello(secret, &nonce)?;
            }
            if self.stage == Stage::Up {
                self.take_frames(sink)?;
            }
            match filled {
                Filled::Closed => return Err(Closed::Eof),
                Filled::Drained => return Ok(Progress::Drained),
                Filled::Read(_) if budget == 0 => return Ok(Progress::More),
                Filled::Read(_) => {}
            }
        }
    }

    /// Checks a whole hello, if there is one: answers [`ACCEPTED`] and
    /// turns the connection into a frame reader, or refuses it.
    fn take_hello(&mut self, secret: &[u8], nonce: &[u8; NONCE_LEN]) -> Result<(), Closed> {
        let size = match wire::check_hello(self.rbuf.data()) {
            Ok(None) => return Ok(()),
            Ok(Some(size)) => size,
            Err(e) => return Err(self.refuse(e, "")),
        };
        match wire::verify_hello(self.rbuf.data(), size, secret, nonce) {
            Ok(name) => self.node = name.to_owned(),
            Err(e) => {
                let claims = String::from_utf8_lossy(
                    &self.rbuf.data()[wire::MAGIC.len() + 2..size - wire::MAC_LEN],
                );
                let claims = format!(" (claiming to be {claims:?})");
                return Err(self.refuse(e, &claims));
            }
        }
        self.rbuf.consume(size);
        self.rbuf.set_target(INBOUND_BUF);
        self.stage = Stage::Up;
        self.hs.push(ACCEPTED);
        self.write_handshake().map_err(Closed::Io)?;
        log::info!(
            "cluster: accepted a connection from node {} at {}",
            self.node,
            self.addr
        );
        Ok(())
    }

    /// Logs why, and tells the connector (best effort: it is closed next).
    fn refuse(&mut self, why: HandshakeError, claims: &str) -> Closed {
        log::warn!(
            "cluster: refused a connection from {}{claims}: {why}",
            self.addr
        );
        let _ = self.stream.write(&[wire::REFUSED]);
        Closed::Refused
    }

    fn take_frames(&mut self, sink: &mut impl FnMut(Incoming<'_>)) -> Result<(), Closed> {
        let Conn { rbuf, node, .. } = self;
        while let Some((kind, payload)) = rbuf.next_frame().map_err(Closed::Frame)? {
            if kind != KIND_HEARTBEAT {
                sink(Incoming::Frame {
                    from: node,
                    kind,
                    payload,
                });
            }
        }
        Ok(())
    }
}
