//! One client socket with its read and write buffers.
//!
//! Reads land in a `BytesMut`; complete frames are split off it as `Bytes`, so a
//! message body is a shared slice of the read buffer and is never copied on its way
//! into queues. Writes are encoded into one `Vec<u8>` per socket and flushed once per
//! event-loop iteration (one `write` syscall for many frames).

use super::tls::TlsState;
use bytes::BytesMut;
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Read buffer chunk: how much room we make before each `read`.
const READ_CHUNK: usize = 64 * 1024;
/// Read buffer of a connection that has none (new, or idle and released).
const FIRST_READ_CHUNK: usize = 4 * 1024;
/// A connection that neither read nor wrote for this long gives its buffers
/// back (`Socket::release_if_idle`).
const IDLE_RELEASE: Duration = Duration::from_secs(1);
/// Default cap on unprocessed input: no more is read until it is processed (the
/// connection waits on a queue, or used its per-iteration frame budget). Kept
/// small so that making room (`reserve`) never copies much unprocessed data.
/// A connection raises it to fit its largest frame (`set_max_buffered`).
const DEFAULT_MAX_BUFFERED: usize = 256 * 1024;
/// At most this many bytes are read from one connection per loop iteration, so
/// one busy publisher cannot starve the others on its shard; it also bounds the
/// iteration time, which is the ack round trip of consumers on the shard
/// (64 KiB: 2.1 M msg/s no-ack and 0.93 M msg/s acked deliveries next to an
/// uncapped publisher; 256 KiB: 1.24 M and 0.18 M; see tuning.md).
const MAX_READ_PER_EVENT: usize = 64 * 1024;

/// What a `fill` call found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Data may still be waiting in the kernel (we stopped early); call again later.
    More,
    /// The kernel has nothing more for now (`WouldBlock`).
    Drained,
    /// The peer closed its side.
    Closed,
}

/// A client connection's socket and buffers.
pub struct Socket {
    pub stream: TcpStream,
    /// Unprocessed input; frames are split off the front.
    pub rbuf: BytesMut,
    /// Encoded output not yet written; `wpos` is how much of it has been written.
    pub wbuf: Vec<u8>,
    wpos: usize,
    /// Unprocessed input above which `fill` stops reading.
    max_buffered: usize,
    /// TLS (the amqps listener): `rbuf` and `wbuf` hold plaintext, and
    /// `fill` / `flush` go through rustls. `None` for plain TCP, which then
    /// pays one branch per fill and flush.
    tls: Option<Box<TlsState>>,
    // ---- the event loop's bookkeeping, the same for every protocol ----
    /// Set when the socket should be dropped now.
    pub dead: bool,
    /// Listed in the event loop's read-again list (each connection once, so a
    /// busy publisher is read once per iteration, not once per past event).
    pub read_again: bool,
    /// Not read because the shard's outgoing rings are congested (publisher
    /// flow control); listed in the event loop's `flow_blocked`.
    pub flow_blocked: bool,
    /// Accepted on a shard's own port (`--shard-port-base`): the client
    /// chose this shard, and the connection never moves to another.
    pub stay: bool,
    /// When input last arrived (heartbeats, idle buffer release).
    pub last_read: Instant,
    /// When output was last written.
    pub last_write: Instant,
    /// Bytes and syscalls in each direction (management's `recv_oct`,
    /// `recv_cnt`, `send_oct`, `send_cnt`): counted per syscall, not per
    /// message. For TLS, the bytes on the wire (records).
    pub io: IoCounters,
}

/// See [`Socket::io`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub recv_oct: u64,
    pub recv_cnt: u64,
    pub send_oct: u64,
    pub send_cnt: u64,
}

impl Socket {
    pub fn new(stream: TcpStream) -> Socket {
        let _ = stream.set_nodelay(true);
        Socket {
            stream,
            // Buffers are allocated by the first read / write, and given back
            // by `release_if_idle` while the connection is idle.
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            wpos: 0,
            max_buffered: DEFAULT_MAX_BUFFERED,
            tls: None,
            dead: false,
            read_again: false,
            flow_blocked: false,
            stay: false,
            last_read: Instant::now(),
            last_write: Instant::now(),
            io: IoCounters::default(),
        }
    }

    /// A socket accepted on the TLS listener: the server speaks first only
    /// once the handshake is done.
    pub fn new_tls(stream: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Socket> {
        let mut sock = Socket::new(stream);
        sock.tls = Some(Box::new(TlsState::new(config)?));
        Ok(sock)
    }

    /// The TLS session, for a socket of the TLS listener.
    pub fn tls(&self) -> Option<&TlsState> {
        self.tls.as_deref()
    }

    /// Output is waiting that no `wbuf` byte announces: TLS handshake
    /// records, alerts, session tickets. The event loop flushes after a read
    /// when this says so.
    pub fn needs_flush(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.wants_write())
    }

    /// Reads what the kernel has (bounded), appending to `rbuf`.
    ///
    /// `stop_short`: a read that returns less than it asked for ends the
    /// fill as `Drained`, without the read that would say `WouldBlock`
    /// (one syscall less per wake-up at low load). TCP returns a short read
    /// only when its receive queue is empty, or at a FIN: anything that
    /// arrives later raises a new edge-triggered event. The caller passes
    /// `false` when that does not hold: the event already reported the
    /// peer's FIN (`is_read_closed`, and no new edge will come for it), or
    /// the read is not answering an event at all (a retried read).
    pub fn fill(&mut self, stop_short: bool) -> io::Result<ReadOutcome> {
        if self.tls.is_some() {
            return self.fill_tls();
        }
        let mut total = 0;
        loop {
            if self.rbuf.len() >= self.max_buffered || total >= MAX_READ_PER_EVENT {
                return Ok(ReadOutcome::More);
            }
            if self.rbuf.capacity() == 0 {
                // A new or idle connection: its first read is most likely a
                // handshake or a heartbeat, so start small.
                self.rbuf.reserve(FIRST_READ_CHUNK);
            } else if self.rbuf.capacity() == self.rbuf.len()
                || (self.rbuf.capacity() >= READ_CHUNK
                    && self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4)
            {
                // Reclaims the old allocation when no frame slices point into it any
                // more; allocates only when queued messages still hold it.
                self.rbuf.reserve(READ_CHUNK);
            }
            let spare = self.rbuf.spare_capacity_mut();
            let asked = spare.len();
            // SAFETY: read(2) writes at most `spare.len()` bytes into the spare
            // capacity (no reference to uninitialised bytes is formed); `len` grows
            // by exactly the number of bytes the kernel reports written.
            let n = unsafe {
                libc::read(
                    self.stream.as_raw_fd(),
                    spare.as_mut_ptr() as *mut libc::c_void,
                    spare.len(),
                )
            };
            let r = if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            };
            match r {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(n) => {
                    let len = self.rbuf.len();
                    unsafe { self.rbuf.set_len(len + n) };
                    total += n;
                    self.io.recv_oct += n as u64;
                    self.io.recv_cnt += 1;
                    if stop_short && n < asked {
                        return Ok(ReadOutcome::Drained);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `fill` for TLS: ciphertext from the kernel into rustls, plaintext from
    /// rustls into `rbuf`, with the same bounds as the plain path (counted in
    /// ciphertext; the plaintext of what was read is always taken, so rustls
    /// never sits on input the event loop does not know about).
    fn fill_tls(&mut self) -> io::Result<ReadOutcome> {
        let mut total = 0;
        loop {
            if self.rbuf.len() >= self.max_buffered || total >= MAX_READ_PER_EVENT {
                return Ok(ReadOutcome::More);
            }
            let tls = self.tls.as_mut().expect("TLS socket");
            let r = tls.conn.read_tls(&mut self.stream);
            let eof = match r {
                Ok(0) => true,
                Ok(n) => {
                    total += n;
                    self.io.recv_oct += n as u64;
                    self.io.recv_cnt += 1;
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let state = match tls.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // The alert rustls queued goes out now, best effort.
                    let _ = tls.conn.write_tls(&mut self.stream);
                    self.dead = true;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            };
            tls.after_packets();
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let len = self.rbuf.len();
                if self.rbuf.capacity() - len < n {
                    let chunk = if self.rbuf.capacity() == 0 {
                        FIRST_READ_CHUNK
                    } else {
                        READ_CHUNK
                    };
                    self.rbuf.reserve(n.max(chunk));
                }
                // rustls reads into initialised memory only; zeroing what it
                // is about to overwrite is cheap next to decrypting it.
                self.rbuf.resize(len + n, 0);
                tls.conn.reader().read_exact(&mut self.rbuf[len..])?;
            }
            if eof || state.peer_has_closed() {
                return Ok(ReadOutcome::Closed);
            }
        }
    }

    /// True when no more input is read until some is processed.
    pub fn input_full(&self) -> bool {
        self.rbuf.len() >= self.max_buffered
    }

    /// Lets a whole frame of `frame_size` bytes be buffered.
    pub fn set_max_buffered(&mut self, frame_size: usize) {
        self.max_buffered = frame_size.max(DEFAULT_MAX_BUFFERED);
    }

    /// At a session's tick: gives back the (empty) buffers once the socket
    /// has been quiet both ways for `IDLE_RELEASE`, so that thousands of idle
    /// connections cost a few KiB each, not two 64 KiB buffers. Returns when
    /// to look again, if it still holds a buffer that could be given back
    /// then (`shard::due`). Never on the hot path.
    pub fn release_if_idle(&mut self, now: Instant) -> Option<Instant> {
        let quiet_since = self.last_read.max(self.last_write);
        let idle = now.duration_since(quiet_since) > IDLE_RELEASE;
        let spare_r = self.rbuf.is_empty() && self.rbuf.capacity() > 0;
        let spare_w = self.wbuf.is_empty() && self.wbuf.capacity() > 0;
        if idle && spare_r {
            self.rbuf = BytesMut::new();
        }
        if idle && spare_w {
            self.wbuf = Vec::new();
        }
        (!idle && (spare_r || spare_w))
            .then(|| quiet_since + IDLE_RELEASE + Duration::from_millis(1))
    }

    /// Bytes encoded but not yet handed to the kernel.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Writes as much pending output as the kernel takes. Ok(true) when all written.
    pub fn flush(&mut self) -> io::Result<bool> {
        if self.tls.is_some() {
            return self.flush_tls();
        }
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    self.io.send_oct += n as u64;
                    self.io.send_cnt += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Keep the buffer from growing forever with already-written bytes.
                    if self.wpos > 1024 * 1024 {
                        self.wbuf.drain(..self.wpos);
                        self.wpos = 0;
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(true)
    }

    /// `flush` for TLS: `wbuf` plaintext into rustls (which takes at most its
    /// buffer limit, 64 KiB, at a time), records out with `write_tls`, until
    /// the kernel says `WouldBlock` or nothing is left, handshake included.
    fn flush_tls(&mut self) -> io::Result<bool> {
        let conn = &mut self.tls.as_mut().expect("TLS socket").conn;
        loop {
            let mut took = 0;
            if self.wpos < self.wbuf.len() {
                took = conn.writer().write(&self.wbuf[self.wpos..])?;
                self.wpos += took;
            }
            if !conn.wants_write() {
                if self.wpos == self.wbuf.len() {
                    break;
                }
                if took == 0 {
                    // Still handshaking with rustls's plaintext buffer full.
                    return Ok(false);
                }
                continue;
            }
            match conn.write_tls(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.io.send_oct += n as u64;
                    self.io.send_cnt += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.wpos > 1024 * 1024 {
                        self.wbuf.drain(..self.wpos);
                        self.wpos = 0;
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(true)
    }

    /// Queues a TLS close_notify (nothing for plain TCP); the next `flush`
    /// sends it. Called when the broker drops the connection.
    pub fn close_notify(&mut self) {
        if let Some(t) = self.tls.as_mut().filter(|t| t.established()) {
            t.conn.send_close_notify();
        }
    }
}
