//! Shards: one event-loop thread per core, each owning its listeners,
//! connections and queues, linked to every other shard by SPSC rings.
//!
//! [`start`] binds the listeners on the caller's thread (so the ports are known,
//! and errors reported, before it returns), builds the ring mesh, and spawns one
//! pinned thread per shard running [`event_loop::run`].

pub mod control;
pub mod due;
pub mod event_loop;
pub mod mesh;
pub mod ring;
pub mod session;
pub mod snapshot;
pub mod state;

use crate::config::Config;
use crate::core::alarms::Alarms;
use crate::core::definitions::Definitions;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running broker.
pub struct BrokerHandle {
    alarms: Arc<Alarms>,
    port: u16,
    tls_port: Option<u16>,
    shard_ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    /// A graceful shutdown is under way (`shutdown_gracefully`).
    drain: Arc<AtomicBool>,
    /// Where the clean-shutdown marker goes (`store::clean`).
    data_dir: std::path::PathBuf,
    wakers: Vec<Arc<mio::Waker>>,
    control: control::Control,
    admin: crate::admin::Admin,
    threads: Vec<JoinHandle<()>>,
    /// A throw-away data directory (`Config::for_tests`), removed on shutdown.
    temp_data_dir: Option<std::path::PathBuf>,
    /// The management HTTP API's and the Prometheus endpoint's ports and
    /// how to stop them (`http::start`, attached by `warren::start`; this
    /// layer does not know the server).
    http: Option<AttachedHttp>,
    /// What `warren::start` ran on top of the shards besides the HTTP API
    /// (the shovels, the cluster membership): stopped first, in order.
    attached_stops: Vec<Box<dyn FnOnce() + Send>>,
    /// A clustered node's end of the mesh for the cluster link, until
    /// `take_cluster_links`.
    cluster_links: Option<mesh::Links>,
}

/// The server `warren::start` runs on top of the shards (`attach_http`).
struct AttachedHttp {
    port: Option<u16>,
    prometheus_port: Option<u16>,
    stop: Box<dyn FnOnce() + Send>,
}

impl BrokerHandle {
    /// The AMQP port (useful when the config asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS (amqps) port, when TLS is on (`tls_cert` and `tls_key`); the
    /// real one when the config asked for port 0.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// Per-shard ports, if `shard_port_base` was set: a connection to
    /// `shard_ports()[i]` is served by shard `i`.
    pub fn shard_ports(&self) -> &[u16] {
        &self.shard_ports
    }

    /// The broker's resource alarms (e.g. `set_memory_limit` at run time).
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// The control path into every shard, for work that comes from no client
    /// connection (`shard::control`).
    pub fn control(&self) -> control::Control {
        self.control.clone()
    }

    /// The cluster link's end of the mesh (a clustered node; once).
    pub fn take_cluster_links(&mut self) -> Option<mesh::Links> {
        self.cluster_links.take()
    }

    /// Users, vhosts, permissions, limits, definitions (`admin`).
    pub fn admin(&self) -> crate::admin::Admin {
        self.admin.clone()
    }

    /// The management HTTP API's port, if it runs (`Config::http_port`).
    pub fn http_port(&self) -> Option<u16> {
        self.http.as_ref().and_then(|h| h.port)
    }

    /// The Prometheus endpoint's port, if it runs (`Config::prometheus_port`).
    pub fn prometheus_port(&self) -> Option<u16> {
        self.http.as_ref().and_then(|h| h.prometheus_port)
    }

    /// Attaches a server that runs on top of the broker (its API and
    /// Prometheus ports): `stop` ends it (and waits for its threads) on
    /// `shutdown`, before the shards stop.
    /// Hands the handle the stop of something `warren::start` runs on top
    /// of the shards (the shovels, the cluster membership): these stop
    /// first, in the order attached, while the shards still serve them.
    pub fn attach_stop(&mut self, stop: Box<dyn FnOnce() + Send>) {
        self.attached_stops.push(stop);
    }

    pub fn attach_http(
        &mut self,
        port: Option<u16>,
        prometheus_port: Option<u16>,
        stop: Box<dyn FnOnce() + Send>,
    ) {
        self.http = Some(AttachedHttp {
            port,
            prometheus_port,
            stop,
        });
    }

    /// Graceful shutdown (SIGTERM): every shard stops accepting, lets the
    /// messages in flight reach the disk and their confirms go out, then
    /// closes its clients with 320 `CONNECTION_FORCED - broker shutdown`
    /// (`event_loop`'s `drain`). After `wait` the shards are stopped
    /// whatever is left; the stores are synced either way.
    pub fn shutdown_gracefully(mut self, wait: std::time::Duration) {
        for stop in self.attached_stops.drain(..) {
            stop();
        }
        if let Some(h) = self.http.take() {
            (h.stop)();
        }
        self.drain.store(true, Ordering::Release);
        for w in &self.wakers {
            let _ = w.wake();
        }
        let until = std::time::Instant::now() + wait;
        while self.threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let data_dir = self.data_dir.clone();
        if self.stop_and_join() {
            // Every shard synced its stores as its loop ended.
            if let Err(e) = crate::store::clean::write(&data_dir) {
                log::warn!("cannot write the clean-shutdown marker: {e}");
            }
        }
    }

    /// Stops every shard and waits for the threads.
    pub fn shutdown(self) {
        self.stop_and_join();
    }

    /// `shutdown`; true if every shard thread ended normally.
    fn stop_and_join(mut self) -> bool {
        for stop in self.attached_stops.drain(..) {
            stop();
        }
        if let Some(h) = self.http.take() {
            (h.stop)();
        }
        self.stop.store(true, Ordering::Release);
        for w in &self.wakers {
            let _ = w.wake();
        }
        let mut all_ok = true;
        for t in self.threads.drain(..) {
            all_ok &= t.join().is_ok();
        }
        if let Some(dir) = self.temp_data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        all_ok
    }

    /// Blocks until the shard threads end (they end only on shutdown).
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Listeners of one shard: the shared port on each bind address, plus its own port.
pub struct ShardListeners {
    pub listeners: Vec<std::net::TcpListener>,
    /// The shared TLS port on each bind address (empty without TLS).
    pub tls_listeners: Vec<std::net::TcpListener>,
    /// The TLS server configuration, one for the whole broker.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `listeners[own]` is the shard's own port (`--shard-port-base`): its
    /// connections never move to another shard.
    pub own: Option<usize>,
}

/// Binds `port` on every address for every shard (SO_REUSEPORT), pushing
/// each shard's sockets into the list `which` picks. Port 0: shard 0's
/// socket gets an ephemeral port, and the other shards bind that one.
/// Returns the port.
fn bind_shared(
    bind: &[IpAddr],
    mut port: u16,
    per_shard: &mut [ShardListeners],
    which: fn(&mut ShardListeners) -> &mut Vec<std::net::TcpListener>,
) -> io::Result<u16> {
    let mut bound_any = false;
    for ip in bind {
        for (i, sl) in per_shard.iter_mut().enumerate() {
            let probe = if i == 0 {
                crate::net::listener::ensure_port_free(SocketAddr::new(*ip, port))
            } else {
                Ok(())
            };
            let l = match probe.and_then(|_| crate::net::bind_reuseport(SocketAddr::new(*ip, port)))
            {
                Ok(l) => l,
                // A machine without IPv6 (or without that address) still serves
                // the other addresses, as long as one of them works.
                Err(e) if unavailable(&e) && i == 0 => {
                    log::warn!("not listening on {}: {}", ip, e);
                    break;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot listen on {}:{}: {}", ip, port, e),
                    ))
                }
            };
            bound_any = true;
            if port == 0 && i == 0 {
                port = l.local_addr()?.port();
            }
            which(sl).push(l);
        }
    }
    if !bound_any {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "no listen address could be bound",
        ));
    }
    Ok(port)
}

/// Builds the definitions for `shards` shards instead of
/// `<data_dir>/definitions.log` (a clustered node's, from etcd).
pub type OpenDefs = Box<dyn FnOnce(usize) -> io::Result<Arc<Definitions>>>;

/// Starts a broker.
pub fn start(config: Config) -> io::Result<BrokerHandle> {
    start_with(config, None)
}

/// Starts a broker whose definitions come from `open_defs`, if given.
pub fn start_with(config: Config, open_defs: Option<OpenDefs>) -> io::Result<BrokerHandle> {
    // A data directory keeps the shard count it was written with: durable
    // queues and their messages' stores are placed by it.
    crate::store::format::check(&config.data_dir)?;
    let shards = crate::store::shard_count::pin(&config.data_dir, config.shards.max(1))?;
    let mut config = config;
    config.shards = shards;
    let mut per_shard: Vec<ShardListeners> = (0..shards)
        .map(|_| ShardListeners {
            listeners: Vec::new(),
            tls_listeners: Vec::new(),
            tls: None,
            own: None,
        })
        .collect();
    let port = bind_shared(&config.bind, config.port, &mut per_shard, |sl| {
        &mut sl.listeners
    })?;
    // The TLS listeners: built once, shared by every shard's connections.
    let mut tls_port = None;
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let tls = crate::net::tls::server_config(&crate::net::tls::TlsFiles {
            cert,
            key,
            ca: config.tls_ca.as_deref(),
            fail_if_no_peer_cert: config.tls_fail_if_no_peer_cert,
        })?;
        let p = bind_shared(&config.bind, config.tls_port, &mut per_shard, |sl| {
            &mut sl.tls_listeners
        })?;
        for sl in &mut per_shard {
            sl.tls = Some(tls.clone());
        }
        tls_port = Some(p);
    }
    let mut shard_ports = Vec::new();
    if let Some(base) = config.shard_port_base {
        for (i, sl) in per_shard.iter_mut().enumerate() {
            let p = if base == 0 {
                0
            } else {
                base.saturating_add(i as u16)
            };
            let l =
                crate::net::bind_reuseport(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))?;
            shard_ports.push(l.local_addr()?.port());
            sl.own = Some(sl.listeners.len());
            sl.listeners.push(l);
        }
    }
    config.port = port;
    if let Some(p) = tls_port {
        config.tls_port = p;
    }
    let config = Arc::new(config);
    // Replays <data_dir>/definitions.log: durable exchanges, queues and
    // bindings are back, and each shard creates its recovered queues before it
    // serves anyone (`ShardCtx::recover_queues`).
    let defs = match open_defs {
        Some(open) => open(shards)?,
        None => Arc::new(Definitions::open(&config.data_dir, shards).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open the definitions in {}: {}",
                    config.data_dir.display(),
                    e
                ),
            )
        })?),
    };
    // A fresh data directory gets vhost `/` and the default user.
    defs.lock_change()
        .bootstrap(&config.default_user, &config.default_pass)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let clean_start = crate::store::clean::take(&config.data_dir);
    if clean_start {
        log::info!("the last run shut down cleanly: its streams' indexes are trusted");
    }
    let streams = defs.lock().recovered_streams();
    crate::core::stream::remove_orphans(&config.data_dir, &streams);
    let alarms = Arc::new(Alarms::new(
        config.memory_limit_bytes(),
        config.disk_free_limit,
        &config.data_dir,
    ));
    defs.set_alarms(alarms.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let drain = Arc::new(AtomicBool::new(false));
    // A clustered node's mesh has one more member after the shards: the
    // cluster link (`cluster::link`), which carries what goes to other
    // nodes.
    let clustered = !config.cluster.etcd.is_empty();
    let mut mesh = mesh::Mesh::new(shards + clustered as usize)?;
    let wakers = mesh.wakers.clone();
    let (control, inboxes) = control::channels(wakers[..shards].to_vec());
    let cores = if config.pin_threads {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut listeners = vec![crate::admin::stats::Listener {
        protocol: "amqp",
        port,
    }];
    if let Some(port) = tls_port {
        listeners.push(crate::admin::stats::Listener {
            protocol: "amqp/ssl",
            port,
        });
    }
    let node = crate::admin::stats::NodeInfo::new(alarms.clone(), listeners);
    let admin = crate::admin::Admin::new(defs.clone(), control.clone(), config.clone(), node);
    if let Some(path) = &config.definitions {
        load_definitions(&admin, path)?;
    }
    let mut threads = Vec::new();
    for (i, (sl, inbox)) in per_shard.into_iter().zip(inboxes).enumerate() {
        let links = mesh.take_links(i);
        let config = config.clone();
        let defs = defs.clone();
        let alarms = alarms.clone();
        let stop = stop.clone();
        let drain = drain.clone();
        let core = if cores.is_empty() {
            None
        } else {
            Some(cores[i % cores.len()])
        };
        let t = std::thread::Builder::new()
            .name(format!("warren-shard-{}", i))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                event_loop::run(event_loop::ShardSetup {
                    id: i as u16,
                    config,
                    defs,
                    alarms,
                    listeners: sl,
                    links,
                    control: inbox,
                    stop,
                    drain,
                    clean_start,
                });
            })?;
        threads.push(t);
    }
    log::info!("warren listening on port {} with {} shard(s)", port, shards);
    if let Some(p) = tls_port {
        log::info!("warren listening for TLS on port {}", p);
    }
    Ok(BrokerHandle {
        alarms,
        port,
        tls_port,
        shard_ports,
        stop,
        drain,
        data_dir: config.data_dir.clone(),
        wakers,
        control,
        admin,
        threads,
        temp_data_dir: config.temporary_data_dir.then(|| config.data_dir.clone()),
        http: None,
        attached_stops: Vec::new(),
        cluster_links: clustered.then(|| mesh.take_links(shards)),
    })
}

/// `--definitions FILE`: a RabbitMQ definitions file, imported before any
/// shard runs. A file that cannot be read or parsed stops the start.
fn load_definitions(admin: &crate::admin::Admin, path: &std::path::Path) -> io::Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read definitions file {}: {}", path.display(), e),
        )
    })?;
    let file = crate::core::definitions_json::DefinitionsFile::parse(&text)
        .map_err(|e| io::Error::other(format!("definitions file {}: {}", path.display(), e)))?;
    let report = admin
        .import_at_boot(&file)
        .map_err(|e| io::Error::other(format!("definitions file {}: {}", path.display(), e)))?;
    log::info!(
        "imported definitions from {}: {} user(s), {} vhost(s), {} queue(s), {} exchange(s), {} binding(s), {} warning(s)",
        path.display(),
        file.users.len(),
        file.vhosts.len(),
        file.queues.len(),
        file.exchanges.len(),
        file.bindings.len(),
        report.warnings.len()
    );
    Ok(())
}

fn unavailable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(libc::EAFNOSUPPORT)
}
