//! What a shovel reports: its state (RabbitMQ's `starting`, `running`,
//! `terminated` with a reason), when that last changed, where it is
//! connected (URIs without credentials) and how many messages it moved.
//!
//! A worker writes its [`Cell`]: the state under a mutex (a few changes
//! per connection), the counters as atomics added once per batch, never
//! per message. The HTTP API, warrenctl and Prometheus read snapshots
//! ([`Cell::snapshot`]).

use crate::core::shovel_def::{Dest, Protocol, ShovelDef, Source};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// The lifecycle state, as RabbitMQ names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Connecting and declaring.
    Starting,
    /// Moving messages.
    Running,
    /// Stopped; the reason, as RabbitMQ prints it (an Erlang string term:
    /// quoted).
    Terminated(String),
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Terminated(_) => "terminated",
        }
    }
}

/// A shovel's status at one moment.
#[derive(Clone, Debug)]
pub struct Status {
    pub vhost: String,
    pub name: String,
    pub state: State,
    /// When `state` last changed.
    pub since: SystemTime,
    /// The URIs connected to, credentials and query removed (while running).
    pub src_uri: Option<String>,
    pub dest_uri: Option<String>,
    pub src_protocol: Protocol,
    pub dest_protocol: Protocol,
    pub source: Option<Source>,
    pub dest: Option<Dest>,
    /// The destination blocked the shovel (connection.blocked): RabbitMQ
    /// 3.11+'s `blocked_status` `blocked`, else `running`.
    pub blocked: bool,
    /// Messages moved (confirmed by the destination with `on-confirm`,
    /// published otherwise), since the broker started.
    pub forwarded: u64,
    /// Published and not confirmed yet (`on-confirm`).
    pub pending: u64,
    /// Messages still to move before the shovel deletes itself
    /// (`src-delete-after`); None: unlimited.
    pub remaining: Option<u64>,
    /// Times the worker was (re)started.
    pub starts: u64,
}

/// One shovel's live status, shared by its worker and the readers.
pub struct Cell {
    status: Mutex<Status>,
    forwarded: AtomicU64,
    pending: AtomicU64,
    /// u64::MAX: unlimited.
    remaining: AtomicU64,
    blocked: AtomicBool,
}

impl Cell {
    pub fn new(vhost: &str, name: &str, def: Option<&ShovelDef>) -> Cell {
        Cell {
            status: Mutex::new(Status {
                vhost: vhost.to_string(),
                name: name.to_string(),
                state: State::Starting,
                since: SystemTime::now(),
                src_uri: None,
                dest_uri: None,
                src_protocol: def.map_or(Protocol::Amqp091, |d| d.src_protocol),
                dest_protocol: def.map_or(Protocol::Amqp091, |d| d.dest_protocol),
                source: def.map(|d| d.source.clone()),
                dest: def.map(|d| d.dest.clone()),
                blocked: false,
                forwarded: 0,
                pending: 0,
                remaining: None,
                starts: 0,
            }),
            forwarded: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            remaining: AtomicU64::new(u64::MAX),
            blocked: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A (re)start: `starting`, no endpoints yet.
    pub fn starting(&self) {
        let mut s = self.lock();
        s.state = State::Starting;
        s.since = SystemTime::now();
        s.src_uri = None;
        s.dest_uri = None;
        s.starts += 1;
        self.pending.store(0, Ordering::Relaxed);
        self.blocked.store(false, Ordering::Relaxed);
    }

    /// Connected and consuming.
    pub fn running(&self, src_uri: String, dest_uri: String) {
        let mut s = self.lock();
        s.state = State::Running;
        s.since = SystemTime::now();
        s.src_uri = Some(src_uri);
        s.dest_uri = Some(dest_uri);
    }

    /// Stopped, for `reason` (plain text; shown as an Erlang string term).
    pub fn terminated(&self, reason: &str) {
        let mut s = self.lock();
        s.state = State::Terminated(format!("{reason:?}"));
        s.since = SystemTime::now();
        self.pending.store(0, Ordering::Relaxed);
    }

    pub fn add_forwarded(&self, n: u64) {
        if n > 0 {
            self.forwarded.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn set_pending(&self, n: u64) {
        self.pending.store(n, Ordering::Relaxed);
    }

    pub fn set_remaining(&self, n: Option<u64>) {
        self.remaining
            .store(n.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::Relaxed);
    }

    pub fn state(&self) -> State {
        self.lock().state.clone()
    }

    pub fn snapshot(&self) -> Status {
        let mut s = self.lock().clone();
        s.forwarded = self.forwarded.load(Ordering::Relaxed);
        s.pending = self.pending.load(Ordering::Relaxed);
        s.blocked = self.blocked.load(Ordering::Relaxed);
        s.remaining = match self.remaining.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(n),
        };
        s
    }
}
