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
    /// Users allowed to log in: (name, password).
    pub users: Vec<(String, String)>,
    /// Before sleeping in epoll_wait, a shard keeps polling (without blocking)
    /// this long for new input: lower latency at light load for CPU time.
    pub busy_poll: std::time::Duration,
}

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
            users: vec![("guest".into(), "guest".into())],
            busy_poll: std::time::Duration::ZERO,
        }
    }
}

impl Config {
    /// A config for in-process tests: loopback IPv4 only, ephemeral ports (one per
    /// shard too), no pinning, a throw-away data dir.
    pub fn for_tests(shards: usize) -> Config {
        let dir = std::env::temp_dir().join(format!(
            "warren-test-{}-{}",
            std::process::id(),
            TEST_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        Config {
            bind: vec!["127.0.0.1".parse().unwrap()],
            port: 0,
            shards,
            data_dir: dir,
            shard_port_base: Some(0),
            pin_threads: false,
            ..Config::default()
        }
    }
}

static TEST_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
