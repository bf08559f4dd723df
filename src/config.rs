//! Broker configuration, filled from the command line (see `main.rs`) or by tests.

use std::net::IpAddr;
use std::path::PathBuf;

/// Everything a broker needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to listen on (every shard listens on each, SO_REUSEPORT).
    pub bind: Vec<IpAddr>,
    /// AMQP port; 0 picks an ephemeral port (tests).
    pub port: u16,
    /// Number of shard threads (one event loop each).
    pub shards: usize,
    /// Where durable state lives.
    pub data_dir: PathBuf,
    /// When set, shard `i` also listens on 127.0.0.1:(base + i) (base 0: ephemeral
    /// ports), so a client can pick its shard. Used by the cross-shard tests.
    pub shard_port_base: Option<u16>,
    /// Pin shard threads to cores with core_affinity.
    pub pin_threads: bool,
    /// Heartbeat interval offered in connection.tune, seconds.
    pub heartbeat: u16,
    /// frame_max offered in connection.tune.
    pub frame_max: u32,
    /// channel_max offered in connection.tune.
    pub channel_max: u16,
    /// The user a fresh data directory starts with: tag administrator, full
    /// permissions on `/` (`--default-user`, `--default-pass`).
    pub default_user: String,
    pub default_pass: String,
    /// Users that may log in only from a loopback address (`--loopback-users`).
    pub loopback_users: Vec<String>,
    /// The user an AMQP 1.0 client that logs in with SASL ANONYMOUS (or
    /// without SASL) becomes (`--anonymous-user`; None: ANONYMOUS refused),
    /// RabbitMQ's `anonymous_login_user`.
    pub anonymous_user: Option<String>,
    /// Broker-wide connection limit (`--max-connections`; None: no limit).
    pub max_connections: Option<u64>,
    /// A RabbitMQ definitions file to load at boot (`--definitions`).
    pub definitions: Option<PathBuf>,
    /// Before sleeping in epoll_wait, a shard keeps polling (without blocking)
    /// this long for new input: lower latency at light load for CPU time.
    pub busy_poll: std::time::Duration,
    /// A publishing connection whose publishes all go to queues of one other
    /// shard moves to that shard while it publishes at most this many
    /// messages per second (`--follow-max-rate`; 0: connections never move).
    pub follow_max_rate: u32,
    /// Clustering (issue 20, under way): none without `etcd` endpoints.
    pub cluster: ClusterConfig,
    /// Memory alarm threshold as a fraction of physical memory (RabbitMQ's
    /// vm_memory_high_watermark); `memory_limit` overrides it.
    pub memory_high_watermark: f64,
    /// Memory alarm threshold in bytes of RSS (0: no memory alarm).
    pub memory_limit: Option<u64>,
    /// Disk alarm: free bytes the data directory must keep (0: no disk alarm).
    pub disk_free_limit: u64,
    /// When the message store's writes are made durable (group commit).
    pub fsync: crate::store::syncer::FsyncMode,
    /// Size at which a message-store segment file is closed (0: default).
    pub segment_size: u64,
    /// A queue keeps at most this many never-delivered messages in memory;
    /// the rest are paged out to disk (`core::backlog`).
    pub queue_max_in_memory: usize,
    /// … and at most this many body bytes.
    pub queue_max_in_memory_bytes: u64,
    /// Delivery acknowledgement timeout, ms (0: none); `x-consumer-timeout`
    /// overrides it per queue.
    pub consumer_timeout: u64,
    /// TLS (amqps) port; 0 picks an ephemeral port (tests). Listened on only
    /// when `tls_cert` and `tls_key` are set.
    pub tls_port: u16,
    /// The TLS listener's certificate chain, PEM.
    pub tls_cert: Option<PathBuf>,
    /// The TLS listener's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// CAs for client certificates, PEM: clients are asked for one and it is
    /// verified (optional unless `tls_fail_if_no_peer_cert`).
    pub tls_ca: Option<PathBuf>,
    /// With `tls_ca`: refuse clients that send no certificate.
    pub tls_fail_if_no_peer_cert: bool,
    /// Which part of a client certificate is the EXTERNAL login name
    /// (RabbitMQ's ssl_cert_login_from).
    pub tls_cert_login_from: CertLoginFrom,
    /// Management HTTP API port (`--http-port`): None = no HTTP server,
    /// Some(0) = an ephemeral port (tests; `BrokerHandle::http_port` tells
    /// which), Some(p) = port p.
    pub http_port: Option<u16>,
    /// Addresses the HTTP API listens on (`--http-bind`); empty = `bind`.
    pub http_bind: Vec<IpAddr>,
    /// Prometheus endpoint port (`--prometheus-port`, RabbitMQ's 15692),
    /// on the `http_bind` addresses, served by the HTTP API's thread: None
    /// = off, Some(0) = an ephemeral port (tests;
    /// `BrokerHandle::prometheus_port` tells which).
    pub prometheus_port: Option<u16>,
    /// `data_dir` is throw-away (`for_tests`): `BrokerHandle::shutdown`
    /// removes it.
    pub temporary_data_dir: bool,
}

/// Where the EXTERNAL mechanism takes the login name from in a client
/// certificate (RabbitMQ's `ssl_cert_login_from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CertLoginFrom {
    /// The whole subject, as an RFC 4514 string (`CN=guest,O=Org,C=SE`).
    #[default]
    DistinguishedName,
    /// The subject's common name(s).
    CommonName,
}

impl std::str::FromStr for CertLoginFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "distinguished_name" => Ok(CertLoginFrom::DistinguishedName),
            "common_name" => Ok(CertLoginFrom::CommonName),
            _ => Err(format!(
                "'{}': expected distinguished_name or common_name",
                s
            )),
        }
    }
}

/// Default `--queue-max-in-memory`: enough to keep a busy queue's consumers
/// fed from memory; ~5 MB of small messages per queue.
pub const DEFAULT_QUEUE_MAX_IN_MEMORY: usize = 20_000;
/// Default `--consumer-timeout`: RabbitMQ's 30 minutes.
pub const DEFAULT_CONSUMER_TIMEOUT: u64 = 30 * 60 * 1000;
/// Default `--queue-max-in-memory-bytes` (bodies).
pub const DEFAULT_QUEUE_MAX_IN_MEMORY_BYTES: u64 = 32 << 20;
/// `--follow-max-rate` default, msg/s: well below what one shard moves
/// (millions), well above the rates at which a second wake-up per message
/// dominates the cost (tuning.md, "Low load").
pub const DEFAULT_FOLLOW_MAX_RATE: u32 = 20_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            port: 5672,
            shards: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            data_dir: PathBuf::from("./data"),
            shard_port_base: None,
            pin_threads: true,
            heartbeat: 60,
            frame_max: 131072,
            channel_max: 2047,
            default_user: "guest".into(),
            default_pass: "guest".into(),
            loopback_users: vec!["guest".into()],
            anonymous_user: None,
            max_connections: None,
            definitions: None,
            busy_poll: std::time::Duration::ZERO,
            follow_max_rate: DEFAULT_FOLLOW_MAX_RATE,
            cluster: ClusterConfig::default(),
            memory_high_watermark: 0.4,
            memory_limit: None,
            // RabbitMQ's default disk_free_limit.
            disk_free_limit: 50_000_000,
            fsync: crate::store::syncer::FsyncMode::Always,
            segment_size: crate::store::segments::DEFAULT_SEGMENT_SIZE,
            queue_max_in_memory: DEFAULT_QUEUE_MAX_IN_MEMORY,
            queue_max_in_memory_bytes: DEFAULT_QUEUE_MAX_IN_MEMORY_BYTES,
            consumer_timeout: DEFAULT_CONSUMER_TIMEOUT,
            tls_port: 5671,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_fail_if_no_peer_cert: false,
            tls_cert_login_from: CertLoginFrom::DistinguishedName,
            http_port: Some(15672),
            http_bind: Vec::new(),
            prometheus_port: Some(15692),
            temporary_data_dir: false,
        }
    }
}

impl Config {
    /// The memory alarm threshold in bytes (0: none).
    pub fn memory_limit_bytes(&self) -> u64 {
        match self.memory_limit {
            Some(b) => b,
            None => total_memory()
                .map(|t| (t as f64 * self.memory_high_watermark) as u64)
                .unwrap_or(0),
        }
    }

    /// A config for in-process tests: loopback IPv4 only, ephemeral ports (one per
    /// shard too), no pinning, a fresh throw-away data dir (removed on shutdown,
    /// so nothing durable leaks from one test to the next).
    pub fn for_tests(shards: usize) -> Config {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "warren-test-{}-{}-{:x}",
            std::process::id(),
            TEST_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            nanos
        ));
        Config {
            temporary_data_dir: true,
            ..Config::for_tests_in(dir, shards)
        }
    }

    /// Like [`Config::for_tests`], but on the data directory `dir`, which is
    /// kept: a test can stop the broker and start another on the same
    /// directory (durability tests).
    pub fn for_tests_in(dir: PathBuf, shards: usize) -> Config {
        Config {
            bind: vec!["127.0.0.1".parse().unwrap()],
            port: 0,
            tls_port: 0,
            shards,
            data_dir: dir,
            shard_port_base: Some(0),
            pin_threads: false,
            http_port: Some(0),
            prometheus_port: Some(0),
            ..Config::default()
        }
    }
}

static TEST_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Total physical memory, bytes (for the default watermark).
pub fn total_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The cluster settings (`--node-name`, `--etcd`, `--cluster-name`,
/// `--cluster-port`, `--advertise-address`).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// etcd endpoints (`http://host:2379`); empty: a single node, no
    /// cluster.
    pub etcd: Vec<String>,
    /// The cluster's name: the etcd key prefix `/warren/<name>/`.
    pub name: String,
    /// Node-to-node traffic (RabbitMQ's inter-node port is 25672).
    pub port: u16,
    /// The address other nodes reach this one at (default: the host name).
    pub advertise_address: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            etcd: Vec::new(),
            name: "warren".into(),
            port: 25672,
            advertise_address: None,
        }
    }
}

/// `--node-name`, set once at start (`set_node_name`); the host's default
/// otherwise.
static NODE_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the node's name for this process (`--node-name`); false if it was
/// already set to another one.
pub fn set_node_name(name: &str) -> bool {
    NODE_NAME.get_or_init(|| name.to_string()) == name
}

/// The node's name: `--node-name`, else as RabbitMQ forms it
/// (`rabbit@<short hostname>`): `warren@<short hostname>`. The management
/// API, AMQP 1.0's `open` and the cluster's membership report it.
pub fn node_name() -> String {
    if let Some(n) = NODE_NAME.get() {
        return n.clone();
    }
    default_node_name()
}

/// `warren@<short hostname>`.
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let short = host.split('.').next().unwrap_or(&host).to_string();
    format!("warren@{}", short)
}
