//! Dynamic shovels: RabbitMQ's shovel plugin, for moving messages from
//! another broker (or another vhost) into this one while both run.
//!
//! A shovel is a definition, the runtime parameter `shovel` of a vhost
//! (`core::definitions`, set through the HTTP API, definitions import or
//! warrenctl; its value checked by `core::shovel_def`), and a worker thread
//! that carries it out (`worker.rs`, `forward.rs`). The [`Shovels`]
//! supervisor keeps the workers in line with the definitions: it polls the
//! parameters' version (an atomic) every [`TICK`], starts a worker for a
//! new shovel, restarts one whose value changed, stops one whose parameter
//! was cleared, and restarts a failed one after its `reconnect-delay`
//! (never when the delay is 0, as RabbitMQ). A shovel that has moved its
//! `src-delete-after` messages clears its own parameter.
//!
//! Where it runs: off the shards, as a client of both ends. A direct
//! `amqp://` URI (this broker) is a loopback connection to our own listener
//! (`core::auth::internal`), so a shovel's publishes take the same path,
//! permission checks, flow control and alarms as any client's.
//!
//! Layering: above `admin` (definitions) and `client`; the HTTP API reads
//! the status through [`Shovels`].

mod forward;
mod forward10;
pub mod status;
mod worker;

use crate::admin::Admin;
use crate::core::shovel_def::{self, ShovelDef};
use serde_json::Value;
use status::{Cell, Status};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use worker::{Exit, RunCtx};

/// How often the supervisor looks at the definitions and its workers.
pub const TICK: Duration = Duration::from_millis(100);

/// (vhost, name).
type Key = (String, String);

/// The supervisor's handle: status for the API, restart, stop.
#[derive(Clone)]
pub struct Shovels {
    inner: Arc<Inner>,
}

struct Inner {
    admin: Admin,
    local: SocketAddr,
    node: String,
    entries: Mutex<BTreeMap<Key, Entry>>,
    /// Restart requests (`DELETE /api/shovels/vhost/{v}/{n}/restart`).
    restarts: Mutex<Vec<Key>>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// One shovel known to the supervisor.
struct Entry {
    /// The parameter's value the worker runs (a change restarts it).
    value: Value,
    def: Option<ShovelDef>,
    cell: Arc<Cell>,
    worker: Option<Worker>,
    /// When to start the worker again (after a failure).
    restart_at: Option<Instant>,
}

struct Worker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Exit>,
}

impl Shovels {
    /// Starts the supervisor. `local` is this broker's AMQP listener (for
    /// direct `amqp://` URIs), `node` its node name (`x-shovelled`).
    pub fn start(admin: Admin, local: SocketAddr, node: String) -> Shovels {
        let inner = Arc::new(Inner {
            admin,
            local,
            node,
            entries: Mutex::new(BTreeMap::new()),
            restarts: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let i = inner.clone();
        let t = std::thread::Builder::new()
            .name("shovels".into())
            .spawn(move || supervise(&i))
            .expect("spawning the shovel supervisor");
        *inner.thread.lock().unwrap() = Some(t);
        Shovels { inner }
    }

    /// The status of every shovel (of `vhost`, if given), sorted by vhost
    /// and name.
    pub fn status(&self, vhost: Option<&str>) -> Vec<Status> {
        let entries = self.inner.entries.lock().unwrap();
        entries
            .iter()
            .filter(|((v, _), _)| vhost.is_none_or(|want| want == v))
            .map(|(_, e)| e.cell.snapshot())
            .collect()
    }

    /// Restarts a shovel (RabbitMQ's `restart_shovel`): false if it has no
    /// status entry.
    pub fn restart(&self, vhost: &str, name: &str) -> bool {
        let key = (vhost.to_string(), name.to_string());
        if !self.inner.entries.lock().unwrap().contains_key(&key) {
            return false;
        }
        self.inner.restarts.lock().unwrap().push(key);
        true
    }

    /// Stops every worker (each closes its connections; unacknowledged
    /// source messages go back to their queues) and the supervisor.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(t) = self.inner.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

/// The supervisor thread.
fn supervise(inner: &Inner) {
    let mut seen_version = None;
    while !inner.stop.load(Ordering::Acquire) {
        let version = inner.admin.parameters_version();
        if seen_version != Some(version) {
            seen_version = Some(version);
            sync_definitions(inner);
        }
        let restarts = std::mem::take(&mut *inner.restarts.lock().unwrap());
        let mut entries = inner.entries.lock().unwrap();
        for key in restarts {
            if let Some(e) = entries.get_mut(&key) {
                stop_worker(e);
                e.restart_at = Some(Instant::now());
            }
        }
        let mut done = Vec::new();
        for (key, e) in entries.iter_mut() {
            reap(key, e, &mut done);
            if e.worker.is_none() && e.restart_at.is_some_and(|t| t <= Instant::now()) {
                e.restart_at = None;
                spawn(inner, key, e);
            }
        }
        drop(entries);
        for (vhost, name) in done {
            // src-delete-after reached: the shovel clears its own
            // parameter, as RabbitMQ does (acting user rmq-shovel).
            if let Err(e) = inner.admin.clear_parameter(&vhost, "shovel", &name) {
                log::warn!(
                    "shovel '{name}' in vhost '{vhost}': could not delete its definition: {e}"
                );
            }
            inner.entries.lock().unwrap().remove(&(vhost, name));
        }
        std::thread::sleep(TICK);
    }
    let entries = std::mem::take(&mut *inner.entries.lock().unwrap());
    let mut all: Vec<Entry> = entries.into_values().collect();
    stop_all(&mut all);
}

/// Stops the workers of `entries` together (all flags first, then the
/// joins).
fn stop_all(entries: &mut [Entry]) {
    for e in entries.iter() {
        if let Some(w) = &e.worker {
            w.stop.store(true, Ordering::Release);
        }
    }
    for e in entries.iter_mut() {
        stop_worker(e);
    }
}

/// Brings the entries in line with the shovel parameters.
fn sync_definitions(inner: &Inner) {
    let params: BTreeMap<Key, Value> = inner
        .admin
        .list_parameters(Some("shovel"), None)
        .into_iter()
        .map(|p| ((p.vhost, p.name), p.value))
        .collect();
    let mut entries = inner.entries.lock().unwrap();
    let gone: Vec<Key> = entries
        .iter()
        .filter(|(key, e)| params.get(*key) != Some(&e.value))
        .map(|(key, _)| key.clone())
        .collect();
    let mut stopped: Vec<Entry> = gone.iter().filter_map(|k| entries.remove(k)).collect();
    // Stopping a worker takes up to a few seconds (it waits for its
    // confirms): not under the lock the API reads the status with.
    drop(entries);
    stop_all(&mut stopped);
    let mut entries = inner.entries.lock().unwrap();
    for (key, value) in params {
        if entries.contains_key(&key) {
            continue;
        }
        // Checked when it was set; checked again here because a definition
        // from an older data directory or import may no longer pass.
        let def = shovel_def::validate(&key.1, &value, &|_| Ok(()));
        let cell = Arc::new(Cell::new(&key.0, &key.1, def.as_ref().ok()));
        let mut e = Entry {
            value,
            def: def.as_ref().ok().cloned(),
            cell,
            worker: None,
            restart_at: None,
        };
        match def {
            Ok(_) => spawn(inner, &key, &mut e),
            Err(errors) => e
                .cell
                .terminated(&format!("invalid definition: {}", errors.join("; "))),
        }
        entries.insert(key, e);
    }
}

/// Starts the worker thread of `e`.
fn spawn(inner: &Inner, key: &Key, e: &mut Entry) {
    let Some(def) = e.def.clone() else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = RunCtx {
        vhost: key.0.clone(),
        name: key.1.clone(),
        local: inner.local,
        node: inner.node.clone(),
        stop: stop.clone(),
        cell: e.cell.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("shovel {}", key.1))
        .spawn(move || worker::run(&def, &ctx));
    match thread {
        Ok(thread) => e.worker = Some(Worker { stop, thread }),
        Err(err) => {
            e.cell
                .terminated(&format!("could not start a thread: {err}"));
            e.restart_at = e
                .def
                .as_ref()
                .and_then(|d| d.reconnect_delay)
                .map(|d| Instant::now() + d);
        }
    }
}

/// Collects a finished worker: a failure is shown and retried after the
/// delay; `Done` is reported in `done`.
fn reap(key: &Key, e: &mut Entry, done: &mut Vec<Key>) {
    if !e.worker.as_ref().is_some_and(|w| w.thread.is_finished()) {
        return;
    }
    let w = e.worker.take().unwrap();
    let exit = w
        .thread
        .join()
        .unwrap_or_else(|_| Exit::Failed("the shovel's thread panicked".into()));
    match exit {
        Exit::Stopped => {}
        Exit::Done => {
            log::info!(
                "shovel '{}' in vhost '{}' has moved what it had to",
                key.1,
                key.0
            );
            done.push(key.clone());
        }
        Exit::Failed(reason) => {
            log::warn!(
                "shovel '{}' in vhost '{}' stopped: {}",
                key.1,
                key.0,
                reason
            );
            e.cell.terminated(&reason);
            e.restart_at = e
                .def
                .as_ref()
                .and_then(|d| d.reconnect_delay)
                .map(|d| Instant::now() + d);
        }
    }
}

/// Stops the worker of `e` and waits for it.
fn stop_worker(e: &mut Entry) {
    if let Some(w) = e.worker.take() {
        w.stop.store(true, Ordering::Release);
        let _ = w.thread.join();
    }
}
