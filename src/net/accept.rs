//! What a listener does when `accept` fails for want of file descriptors
//! (a connection flood beyond `ulimit -n`, EMFILE, or the system's table,
//! ENFILE).
//!
//! The listeners are registered edge-triggered (mio uses `EPOLLET`): readiness
//! is reported once per arriving connection, and a listener that is left
//! with connections in its backlog is not reported again until another one
//! arrives. Giving up on the first EMFILE therefore does not spin; it stalls:
//! the backlog (up to 1024 connections per listener) hangs, clients that
//! connected see no `connection.start`, and when descriptors are free again
//! nothing is accepted until yet another client arrives. And each arrival
//! logged a warning.
//!
//! [`AcceptGuard`] does two things, the classic ones:
//!
//! - **A reserve descriptor** (`/dev/null`, opened at start): on EMFILE or
//!   ENFILE it is closed, one pending connection is accepted with the
//!   descriptor that frees and closed at once (the client sees the
//!   connection closed instead of hanging in the backlog), and the reserve
//!   is opened again. This drains the backlog to `WouldBlock`, which is what
//!   the edge-triggered registration needs. The shards share one process
//!   and so one descriptor table: there is one reserve for the process, and
//!   every shard accepts under its lock ([`AcceptGuard::accept`]), so that
//!   no shard's accept takes the descriptor another shard freed to shed
//!   (the reserve would be lost, and that shard's backlog stuck).
//! - **A back-off**: when the reserve cannot be had (another thread took
//!   the descriptor it freed, or the system's table is full), the listener
//!   is not accepted from for [`BACKOFF`] and is then drained again by
//!   [`AcceptGuard::resume_due`] from the event loop's timer, since no
//!   readiness event will come for the connections already waiting.
//!
//! Warnings are rate-limited: at most one per [`LOG_EVERY`], with the number
//! of connections refused since the last one.

use mio::net::{TcpListener, TcpStream};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The process's reserve descriptor; every accept holds this lock.
static RESERVE: Mutex<Option<File>> = Mutex::new(None);

fn reserve() -> MutexGuard<'static, Option<File>> {
    RESERVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a listener is left alone after an accept failure the reserve
/// descriptor could not absorb.
pub const BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning this often.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// What the accept loop does after a failed `accept`.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterError {
    /// The error cost one pending connection (shed, or aborted by its
    /// client): accept the next one.
    Next,
    /// Stop accepting on this listener: it is drained, or paused and
    /// [`AcceptGuard::resume_due`] says when to drain it again.
    Stop,
}

/// One event loop's defence against descriptor exhaustion (module docs).
pub struct AcceptGuard {
    /// No accept before this instant (back-off).
    paused_until: Option<Instant>,
    /// Connections refused (shed, or left waiting) since the last warning.
    refused: u64,
    /// Connections shed (accepted and closed at once) since the start.
    pub shed_total: u64,
    last_log: Option<Instant>,
}

impl Default for AcceptGuard {
    fn default() -> Self {
        Self::new()
    }
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Out of descriptors (or of kernel memory for one): retrying at once
/// cannot succeed until something is closed.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Errors that concern one pending connection only (it was reset or
/// aborted before we took it); the next one may be fine.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED) | Some(libc::EPROTO) | Some(libc::EPERM) | Some(libc::EINTR)
    ) || e.kind() == io::ErrorKind::Interrupted
}

impl AcceptGuard {
    pub fn new() -> AcceptGuard {
        let mut spare = reserve();
        if spare.is_none() {
            *spare = open_spare();
        }
        AcceptGuard {
            paused_until: None,
            refused: 0,
            shed_total: 0,
            last_log: None,
        }
    }

    /// `listener.accept()`, under the reserve's lock (module docs).
    pub fn accept(&self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        let _reserve = reserve();
        listener.accept()
    }

    /// True while listeners are left alone (back-off).
    pub fn is_paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|t| now < t)
    }

    /// True once a back-off is over: the caller drains every listener again
    /// (their waiting connections raise no new readiness event). Clears it.
    pub fn resume_due(&mut self, now: Instant) -> bool {
        match self.paused_until {
            Some(t) if now >= t => {
                self.paused_until = None;
                let mut spare = reserve();
                if spare.is_none() {
                    *spare = open_spare();
                }
                true
            }
            _ => false,
        }
    }

    /// `listener.accept()` failed with `e` (not `WouldBlock`): shed one
    /// pending connection with the reserve descriptor, or back off.
    pub fn on_error(&mut self, e: &io::Error, listener: &TcpListener, now: Instant) -> AfterError {
        if is_per_connection(e) {
            return AfterError::Next;
        }
        self.refused += 1;
        let after = if is_resource_exhaustion(e) {
            self.shed_one(listener)
        } else {
            self.paused_until = Some(now + BACKOFF);
            AfterError::Stop
        };
        self.maybe_log(e, now);
        after
    }

    /// Closes the reserve, accepts and drops one connection, reopens the
    /// reserve. `Next` when a connection was shed and the reserve is back.
    fn shed_one(&mut self, listener: &TcpListener) -> AfterError {
        let mut spare = reserve();
        let Some(file) = spare.take() else {
            *spare = open_spare();
            drop(spare);
            return self.pause();
        };
        drop(file);
        // The connection is closed before the reserve is opened again: its
        // descriptor is the one the reserve gets back.
        let accepted = listener
            .accept()
            .map(|(stream, _)| drop::<TcpStream>(stream));
        *spare = open_spare();
        let have_spare = spare.is_some();
        drop(spare);
        match accepted {
            Ok(()) => {
                self.shed_total += 1;
                if have_spare {
                    return AfterError::Next;
                }
                self.pause()
            }
            // Nothing is waiting after all (its client gave up): drained.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => AfterError::Stop,
            // Something else took the descriptor we freed: wait.
            Err(_) => self.pause(),
        }
    }

    fn pause(&mut self) -> AfterError {
        self.paused_until = Some(Instant::now() + BACKOFF);
        AfterError::Stop
    }

    fn maybe_log(&mut self, e: &io::Error, now: Instant) {
        if self.last_log.is_some_and(|t| now < t + LOG_EVERY) {
            return;
        }
        self.last_log = Some(now);
        log::warn!(
            "accept failed: {} ({} connection(s) refused since the last warning, {} closed at once in all)",
            e,
            self.refused,
            self.shed_total
        );
        self.refused = 0;
    }
}
