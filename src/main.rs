//! The `warren` broker binary: parses flags (each with an environment fallback)
//! and runs the broker until SIGTERM or SIGINT, which shut it down
//! gracefully (`BrokerHandle::shutdown_gracefully`); a second signal stops it
//! at once (the stores are crash-safe).

mod config_file;
mod logging;

use clap::{CommandFactory, Parser};
use std::net::IpAddr;
use std::path::PathBuf;

/// warren: an AMQP 0-9-1 message broker compatible with RabbitMQ clients.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML; every flag is a key, with _ for -). Default:
    /// /etc/warren/warren.toml when it exists. Flags and environment
    /// variables override it.
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration (flags, environment, file), print the
    /// effective settings and where each comes from, and exit.
    #[arg(long)]
    check_config: bool,
    /// Print a configuration file with every key at its default, and exit.
    #[arg(long)]
    example_config: bool,
    /// AMQP port.
    #[arg(long, env = "WARREN_PORT", default_value_t = 5672)]
    port: u16,
    /// Addresses to listen on (repeat or comma-separate).
    #[arg(
        long,
        env = "WARREN_BIND",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    bind: Vec<IpAddr>,
    /// Number of shards (event-loop threads); default: available cores.
    #[arg(long, env = "WARREN_SHARDS")]
    shards: Option<usize>,
    /// Data directory.
    #[arg(long, env = "WARREN_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, env = "WARREN_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log lines as text or as one JSON object each (time, level, shard,
    /// thread, target, message).
    #[arg(long, env = "WARREN_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: logging::Format,
    /// Log to this file (appended to; reopened on SIGHUP, for logrotate)
    /// instead of stderr.
    #[arg(long, env = "WARREN_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Also listen on 127.0.0.1:(BASE + i) for each shard i, so clients can pick
    /// their shard (testing, pinning).
    #[arg(long, env = "WARREN_SHARD_PORT_BASE")]
    shard_port_base: Option<u16>,
    /// Do not pin shard threads to cores.
    #[arg(long, env = "WARREN_NO_PIN")]
    no_pin: bool,
    /// Heartbeat interval offered to clients, seconds (0 disables).
    #[arg(long, env = "WARREN_HEARTBEAT", default_value_t = 60)]
    heartbeat: u16,
    /// frame_max offered to clients, bytes.
    #[arg(long, env = "WARREN_FRAME_MAX", default_value_t = 131072)]
    frame_max: u32,
    /// Microseconds a shard keeps polling for input before it sleeps
    /// (0: sleep at once). Trades CPU for latency at light load.
    #[arg(long, env = "WARREN_BUSY_POLL_US", default_value_t = 0)]
    busy_poll_us: u64,
    /// A connection whose publishes all go to queues of one other shard
    /// moves to that shard (one thread wakes per message instead of two)
    /// while it publishes at most this many messages per second; faster
    /// publishers stay, to keep their parsing on a core of their own
    /// (0: connections never move). Connections on a --shard-port-base port
    /// never move.
    #[arg(long, env = "WARREN_FOLLOW_MAX_RATE", default_value_t = warren::config::DEFAULT_FOLLOW_MAX_RATE)]
    follow_max_rate: u32,
    /// Memory alarm: publishers are blocked while the broker's RSS is above
    /// this fraction of physical memory (RabbitMQ's vm_memory_high_watermark).
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK", default_value_t = 0.4)]
    memory_high_watermark: f64,
    /// Memory alarm threshold in bytes of RSS; overrides the watermark (0: off).
    #[arg(long, env = "WARREN_MEMORY_LIMIT")]
    memory_limit: Option<u64>,
    /// Disk alarm: publishers are blocked while the data directory's file
    /// system has fewer free bytes than this (0: off).
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT", default_value_t = 50_000_000)]
    disk_free_limit: u64,
    /// When persistent messages are made durable before their confirms:
    /// `always` (one fdatasync per shard per batch of writes, group commit),
    /// `interval:<ms>` (at most one per interval), `never` (benchmarks only).
    #[arg(long, env = "WARREN_FSYNC", default_value = "always",
          value_parser = warren::core::persist::parse_fsync_mode)]
    fsync: warren::store::syncer::FsyncMode,
    /// Message store segment file size, bytes.
    #[arg(long, env = "WARREN_SEGMENT_SIZE", default_value_t = 64 * 1024 * 1024)]
    segment_size: u64,
    /// A queue keeps at most this many never-delivered messages in memory; the
    /// rest wait on disk (`<data-dir>/paging`) and are read back in order.
    #[arg(long, env = "WARREN_QUEUE_MAX_IN_MEMORY",
          default_value_t = warren::config::DEFAULT_QUEUE_MAX_IN_MEMORY)]
    queue_max_in_memory: usize,
    /// … and at most this many message-body bytes.
    #[arg(long, env = "WARREN_QUEUE_MAX_IN_MEMORY_BYTES",
          default_value_t = warren::config::DEFAULT_QUEUE_MAX_IN_MEMORY_BYTES)]
    queue_max_in_memory_bytes: u64,
    /// Delivery acknowledgement timeout, ms (RabbitMQ's consumer_timeout): a
    /// channel holding a delivery unacked longer is closed with 406. 0: none.
    /// A queue's `x-consumer-timeout` argument overrides it.
    #[arg(long, env = "WARREN_CONSUMER_TIMEOUT",
          default_value_t = warren::config::DEFAULT_CONSUMER_TIMEOUT)]
    consumer_timeout: u64,
    /// AMQP over TLS (amqps) port; listened on only with --tls-cert and --tls-key.
    #[arg(long, env = "WARREN_TLS_PORT", default_value_t = 5671)]
    tls_port: u16,
    /// The TLS listener's certificate chain, PEM (leaf first).
    #[arg(long, env = "WARREN_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The TLS listener's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "WARREN_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA bundle, PEM: TLS clients are asked for a certificate, and one they
    /// send must be signed by these CAs.
    #[arg(long, env = "WARREN_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// With --tls-ca: refuse TLS clients that send no certificate.
    #[arg(long, env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT")]
    tls_fail_if_no_peer_cert: bool,
    /// The EXTERNAL login name of a client certificate: `distinguished_name`
    /// (its subject, RFC 4514) or `common_name` (RabbitMQ's ssl_cert_login_from).
    #[arg(
        long,
        env = "WARREN_TLS_CERT_LOGIN_FROM",
        default_value = "distinguished_name"
    )]
    tls_cert_login_from: warren::config::CertLoginFrom,
    /// The user a fresh data directory starts with (tag administrator, full
    /// permissions on vhost `/`).
    #[arg(long, env = "WARREN_DEFAULT_USER", default_value = "guest")]
    default_user: String,
    /// That user's password.
    #[arg(long, env = "WARREN_DEFAULT_PASS", default_value = "guest")]
    default_pass: String,
    /// Users that may log in only from a loopback address (comma-separated;
    /// empty: none), as RabbitMQ's loopback_users.
    #[arg(
        long,
        env = "WARREN_LOOPBACK_USERS",
        value_delimiter = ',',
        default_value = "guest"
    )]
    loopback_users: Vec<String>,
    /// The user AMQP 1.0 clients that log in with SASL ANONYMOUS become
    /// (RabbitMQ's anonymous_login_user). Unset: ANONYMOUS is refused.
    #[arg(long, env = "WARREN_ANONYMOUS_USER")]
    anonymous_user: Option<String>,
    /// Broker-wide limit on open client connections (none when unset).
    #[arg(long, env = "WARREN_MAX_CONNECTIONS")]
    max_connections: Option<u64>,
    /// A RabbitMQ definitions file (rabbitmqctl export_definitions) to load
    /// at boot, before any connection is accepted.
    #[arg(long, env = "WARREN_DEFINITIONS")]
    definitions: Option<PathBuf>,
    /// Management HTTP API port (0: no HTTP API).
    #[arg(long, env = "WARREN_HTTP_PORT", default_value_t = 15672)]
    http_port: u16,
    /// Addresses the HTTP API listens on (default: those of --bind).
    #[arg(long, env = "WARREN_HTTP_BIND", value_delimiter = ',')]
    http_bind: Vec<IpAddr>,
    /// Prometheus metrics port (/metrics, /metrics/per-object), on the
    /// --http-bind addresses (0: no Prometheus endpoint).
    #[arg(long, env = "WARREN_PROMETHEUS_PORT", default_value_t = 15692)]
    prometheus_port: u16,
    /// On SIGTERM/SIGINT, at most this many seconds for messages in flight to
    /// reach the disk, their confirms to go out and clients to take the
    /// connection.close (320 CONNECTION_FORCED - broker shutdown).
    #[arg(long, env = "WARREN_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    shutdown_timeout: u64,
    /// This node's name (default: warren@<short hostname>), as the
    /// management API and the cluster show it.
    #[arg(long, env = "WARREN_NODE_NAME")]
    node_name: Option<String>,
    /// etcd endpoints (comma-separated, e.g. http://10.0.0.1:2379): join the
    /// cluster they hold. None: a single node.
    #[arg(long, env = "WARREN_ETCD", value_delimiter = ',')]
    etcd: Vec<String>,
    /// The cluster's name (its etcd key prefix /warren/<name>/).
    #[arg(long, env = "WARREN_CLUSTER_NAME", default_value = "warren")]
    cluster_name: String,
    /// Port for node-to-node traffic.
    #[arg(long, env = "WARREN_CLUSTER_PORT", default_value_t = 25672)]
    cluster_port: u16,
    /// The address other nodes reach this one at (default: the host name).
    #[arg(long, env = "WARREN_ADVERTISE_ADDRESS")]
    advertise_address: Option<String>,
}

/// Blocks SIGTERM and SIGINT in this thread and every thread it starts
/// (before any is started), so that `wait_signal` takes them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a sigset_t of our own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Tells systemd (a `Type=notify` unit: `$NOTIFY_SOCKET`) how the service
/// is: `READY=1` once it listens, `STOPPING=1` when it shuts down. Nothing
/// without the variable.
fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &a));
    if let Err(e) = sent {
        log::warn!("cannot notify systemd ({path}): {e}");
    }
}

/// Waits for one of the blocked signals; returns its number.
fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is a valid sigset_t, `sig` a valid out pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn main() {
    let signals = block_signals();
    let parsed = match config_file::parse::<Args>(std::env::args_os().collect()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warren: {e}");
            std::process::exit(2);
        }
    };
    if parsed.args.example_config {
        print!("{}", config_file::example(&Args::command()));
        return;
    }
    if parsed.args.check_config {
        match &parsed.file {
            Some(f) => println!("# configuration file: {}", f.display()),
            None => println!("# no configuration file"),
        }
        for (key, value) in &parsed.values {
            let source = parsed.sources.get(key).copied();
            let shown = if value.is_empty() {
                "(not set)".to_string()
            } else {
                config_file::toml_value(value)
            };
            println!(
                "{key} = {shown}  # {}",
                match source {
                    Some(config_file::Source::Flag) => "flag",
                    Some(config_file::Source::Environment) => "environment",
                    Some(config_file::Source::File) => "file",
                    _ => "default",
                }
            );
        }
    }
    let check_only = parsed.args.check_config;
    let args = parsed.args;
    let log_file = if check_only {
        None
    } else {
        match logging::init(&args.log_level, args.log_format, args.log_file.as_deref()) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("warren: {e}");
                std::process::exit(1);
            }
        }
    };
    let mut config = warren::Config::default();
    config.port = args.port;
    config.bind = args.bind;
    if let Some(n) = args.shards {
        config.shards = n.max(1);
    }
    config.data_dir = args.data_dir;
    config.shard_port_base = args.shard_port_base;
    config.pin_threads = !args.no_pin;
    config.heartbeat = args.heartbeat;
    // Each connection buffers up to one whole frame; keep that bounded.
    config.frame_max = args.frame_max.clamp(4096, 2 * 1024 * 1024);
    config.memory_high_watermark = args.memory_high_watermark.clamp(0.0, 1.0);
    config.memory_limit = args.memory_limit;
    config.disk_free_limit = args.disk_free_limit;
    config.fsync = args.fsync;
    config.segment_size = args
        .segment_size
        .clamp(1 << 20, warren::store::segments::MAX_SEGMENT_SIZE);
    config.queue_max_in_memory = args.queue_max_in_memory.max(1);
    config.queue_max_in_memory_bytes = args.queue_max_in_memory_bytes.max(1);
    config.consumer_timeout = args.consumer_timeout;
    config.tls_port = args.tls_port;
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        eprintln!("warren: --tls-cert and --tls-key go together");
        std::process::exit(1);
    }
    config.tls_cert = args.tls_cert;
    config.tls_key = args.tls_key;
    config.tls_ca = args.tls_ca;
    config.tls_fail_if_no_peer_cert = args.tls_fail_if_no_peer_cert;
    config.tls_cert_login_from = args.tls_cert_login_from;
    config.default_user = args.default_user;
    config.default_pass = args.default_pass;
    config.loopback_users = args
        .loopback_users
        .into_iter()
        .filter(|u| !u.is_empty())
        .collect();
    config.anonymous_user = args.anonymous_user.filter(|u| !u.is_empty());
    config.max_connections = args.max_connections;
    config.definitions = args.definitions;
    config.http_port = (args.http_port != 0).then_some(args.http_port);
    config.http_bind = args.http_bind;
    config.prometheus_port = (args.prometheus_port != 0).then_some(args.prometheus_port);
    config.busy_poll = std::time::Duration::from_micros(args.busy_poll_us.min(1_000_000));
    config.follow_max_rate = args.follow_max_rate;
    if let Some(name) = args.node_name.as_deref().filter(|n| !n.is_empty()) {
        warren::config::set_node_name(name);
    }
    config.cluster = warren::config::ClusterConfig {
        etcd: args.etcd.into_iter().filter(|e| !e.is_empty()).collect(),
        name: args.cluster_name,
        port: args.cluster_port,
        advertise_address: args.advertise_address.filter(|a| !a.is_empty()),
    };
    if check_only {
        // The files the settings name must be readable, too.
        if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
            let files = warren::net::tls::TlsFiles {
                cert,
                key,
                ca: config.tls_ca.as_deref(),
                fail_if_no_peer_cert: config.tls_fail_if_no_peer_cert,
            };
            if let Err(e) = warren::net::tls::server_config(&files) {
                eprintln!("warren: {e}");
                std::process::exit(1);
            }
        }
        println!("# configuration ok");
        return;
    }
    if let Err(e) = warren::store::ensure_data_dir(&config.data_dir) {
        eprintln!(
            "warren: cannot create data dir {}: {}",
            config.data_dir.display(),
            e
        );
        std::process::exit(1);
    }
    let handle = match warren::start(config) {
        Ok(handle) => handle,
        Err(e) => {
            // One line, what went wrong and what to do; never a backtrace.
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    " (another broker or program listens there: stop it, or choose another port)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    " (the user warren runs as needs write access there)"
                }
                _ => "",
            };
            eprintln!("warren: {e}{hint}");
            std::process::exit(1);
        }
    };
    sd_notify("READY=1");
    // SIGHUP reopens the log file (logrotate); SIGTERM and SIGINT stop.
    let next_stop = move || loop {
        let sig = wait_signal(&signals);
        if sig != libc::SIGHUP {
            return sig;
        }
        if let Some(f) = &log_file {
            match f.reopen() {
                Ok(()) => log::info!("SIGHUP: log file reopened"),
                Err(e) => log::error!("SIGHUP: cannot reopen the log file: {e}"),
            }
        }
    };
    let sig = next_stop();
    sd_notify("STOPPING=1");
    log::info!(
        "signal {sig}: shutting down (at most {} s; a second signal stops at once)",
        args.shutdown_timeout
    );
    std::thread::spawn(move || {
        let sig = next_stop();
        log::warn!("signal {sig}: stopping now");
        std::process::exit(1);
    });
    handle.shutdown_gracefully(std::time::Duration::from_secs(args.shutdown_timeout));
    log::info!("stopped");
}
