//! Statistics for the management API and the Prometheus endpoint: shard
//! snapshots through the control path, the node's own figures, and message
//! rates from periodic samples.
//!
//! Counts (queue lengths, consumers, connections) come from a fresh
//! snapshot per request (`Admin::snapshot`): one control round trip to
//! every shard, each copying what it owns between two events.
//!
//! Rates come from the [`Sampler`]: a thread of the caller's (the HTTP
//! server starts one) calls [`Sampler::sample`] every [`SAMPLE_INTERVAL`];
//! a rate is the difference between the last two samples over the time
//! between them, as RabbitMQ's management agent reports rates over its
//! 5-second collection interval. When no one has asked for object rates for
//! a minute, samples carry totals only, so an idle broker with 100,000
//! queues copies none of them.

use super::Admin;
use crate::core::alarms::{self, Alarms};
use crate::core::ids::VhostId;
use crate::core::stats::{Churn, ExchangeStats, MsgStats, ShardSnapshot, Want};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the sampler samples (RabbitMQ's `collect_statistics_interval`).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// After this long without a request for object rates, samples skip the
/// object lists.
const LISTS_KEPT_FOR: Duration = Duration::from_secs(60);

/// One listener, for `/api/overview`'s `listeners` and the port-listener
/// health check.
#[derive(Clone, Debug)]
pub struct Listener {
    /// `amqp`, `amqp/ssl`, `http`, `http/prometheus`.
    pub protocol: &'static str,
    pub port: u16,
}

/// What the node knows about itself.
pub struct NodeInfo {
    pub alarms: Arc<Alarms>,
    pub started: Instant,
    /// Wall clock at start, ms since the epoch.
    pub started_wall: u64,
    /// AMQP listeners; the HTTP side adds its own when it reports.
    pub listeners: Vec<Listener>,
}

impl NodeInfo {
    pub fn new(alarms: Arc<Alarms>, listeners: Vec<Listener>) -> NodeInfo {
        NodeInfo {
            alarms,
            started: Instant::now(),
            started_wall: crate::core::stats::wall_ms(),
            listeners,
        }
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Resident memory of the process (bytes), as the memory alarm measures it.
    pub fn memory_used(&self) -> u64 {
        alarms::process_rss().unwrap_or(0)
    }

    pub fn memory_limit(&self) -> u64 {
        self.alarms.memory_limit()
    }

    pub fn memory_alarm(&self) -> bool {
        self.alarms.memory_alarm()
    }

    pub fn disk_alarm(&self) -> bool {
        self.alarms.disk_alarm()
    }

    pub fn disk_free_limit(&self) -> u64 {
        self.alarms.disk_free_limit()
    }

    /// Free bytes on the data directory's file system.
    pub fn disk_free(&self) -> u64 {
        self.alarms.disk_free().unwrap_or(0)
    }

    /// Threads of the process and the system's limit (RabbitMQ's
    /// `proc_used`/`proc_total` count Erlang processes; warren's are threads).
    pub fn threads(&self) -> (u64, u64) {
        let used = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count() as u64);
        let total = std::fs::read_to_string("/proc/sys/kernel/threads-max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(used);
        (used, total)
    }

    /// Open file descriptors of the process and its limit.
    pub fn fds(&self) -> (u64, u64) {
        let used = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        let total = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur
        } else {
            0
        };
        (used, total)
    }
}

/// Node figures whose rates the API shows (`mem_used_details`, …).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeGauges {
    pub mem_used: f64,
    pub fd_used: f64,
    pub sockets_used: f64,
    pub proc_used: f64,
    pub disk_free: f64,
}

/// Per-object counters of one sample.
#[derive(Default)]
struct Sample {
    at: Option<Instant>,
    totals: MsgStats,
    churn: Churn,
    /// Ready and unacked messages over all queues.
    queue_totals: (u64, u64),
    node: NodeGauges,
    /// Object keys → counters, only when lists were sampled.
    queues: HashMap<(VhostId, String), MsgStats>,
    channels: HashMap<(String, u16), MsgStats>,
    /// Connection name → (recv_oct, send_oct).
    conns: HashMap<String, (u64, u64)>,
    /// Summed over shards.
    exchanges: HashMap<(VhostId, String), ExchangeStats>,
}

/// Rates per second, in the order of `MsgStats::fields()`.
pub type Rates = [f64; 12];

/// Message rates from periodic snapshots; see the module doc.
pub struct Sampler {
    admin: Admin,
    /// The last two samples: (older, newer).
    samples: Mutex<(Arc<Sample>, Arc<Sample>)>,
    /// When object rates were last asked for (ms since `born`).
    wanted_at: AtomicU64,
    born: Instant,
}

impl Sampler {
    pub fn new(admin: Admin) -> Sampler {
        Sampler {
            admin,
            samples: Mutex::new((Arc::default(), Arc::default())),
            wanted_at: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// Takes one sample (call every [`SAMPLE_INTERVAL`], from a thread that
    /// is not a shard).
    pub fn sample(&self) {
        let wanted_at = self.wanted_at.load(Ordering::Relaxed);
        let since = (self.born.elapsed().as_millis() as u64).saturating_sub(wanted_at);
        let lists = wanted_at != 0 && since < LISTS_KEPT_FOR.as_millis() as u64;
        let want = if lists {
            Want {
                queues: true,
                connections: true,
                channels: true,
                consumers: false,
                exchanges: true,
            }
        } else {
            Want::TOTALS
        };
        let snaps = self.admin.snapshot(want);
        let mut s = Sample {
            at: Some(Instant::now()),
            ..Sample::default()
        };
        let node = self.admin.node();
        s.node = NodeGauges {
            mem_used: node.memory_used() as f64,
            fd_used: node.fds().0 as f64,
            sockets_used: snaps.iter().map(|x| x.connection_count).sum::<u64>() as f64,
            proc_used: node.threads().0 as f64,
            disk_free: node.disk_free() as f64,
        };
        for snap in snaps {
            s.totals.add(&snap.totals);
            s.churn.add(&snap.churn);
            s.queue_totals.0 += snap.messages_ready;
            s.queue_totals.1 += snap.messages_unacked;
            for q in snap.queues {
                s.queues.insert((q.vhost, q.name), q.stats);
            }
            for c in snap.channels {
                s.channels.insert((c.connection, c.number), c.stats);
            }
            for c in snap.connections {
                s.conns.insert(c.name, (c.recv_oct, c.send_oct));
            }
            for x in snap.exchanges {
                let e = s.exchanges.entry((x.vhost, x.name)).or_default();
                e.publish_in += x.stats.publish_in;
                e.publish_out += x.stats.publish_out;
            }
        }
        let mut g = self.samples.lock().unwrap();
        let newer = std::mem::replace(&mut g.1, Arc::new(s));
        g.0 = newer;
    }

    /// Notes that object rates are wanted (the next samples carry lists).
    pub fn want_objects(&self) {
        let now = (self.born.elapsed().as_millis() as u64).max(1);
        self.wanted_at.store(now, Ordering::Relaxed);
    }

    fn pair(&self) -> (Arc<Sample>, Arc<Sample>) {
        let g = self.samples.lock().unwrap();
        (g.0.clone(), g.1.clone())
    }

    /// The node-wide message rates (overview).
    pub fn total_rates(&self) -> Rates {
        let (a, b) = self.pair();
        rates(&a, &b, Some(&a.totals), Some(&b.totals))
    }

    /// Churn rates, in the order of `Churn::fields()`.
    pub fn churn_rates(&self) -> [f64; 7] {
        let (a, b) = self.pair();
        let mut out = [0.0; 7];
        let dt = secs(&a, &b);
        if dt > 0.0 {
            for (i, ((_, x), (_, y))) in a.churn.fields().iter().zip(b.churn.fields()).enumerate() {
                out[i] = y.saturating_sub(*x) as f64 / dt;
            }
        }
        out
    }

    /// Rates of change of the queue totals: (messages, ready, unacked)
    /// per second (negative when queues shrink).
    pub fn queue_totals_rates(&self) -> [f64; 3] {
        let (a, b) = self.pair();
        let dt = secs(&a, &b);
        if dt <= 0.0 {
            return [0.0; 3];
        }
        let d = |x: u64, y: u64| (y as f64 - x as f64) / dt;
        let (r, u) = (
            d(a.queue_totals.0, b.queue_totals.0),
            d(a.queue_totals.1, b.queue_totals.1),
        );
        [r + u, r, u]
    }

    /// Rates of change of the node's gauges, per second.
    pub fn node_rates(&self) -> NodeGauges {
        let (a, b) = self.pair();
        let dt = secs(&a, &b);
        if dt <= 0.0 {
            return NodeGauges::default();
        }
        let d = |x: f64, y: f64| (y - x) / dt;
        NodeGauges {
            mem_used: d(a.node.mem_used, b.node.mem_used),
            fd_used: d(a.node.fd_used, b.node.fd_used),
            sockets_used: d(a.node.sockets_used, b.node.sockets_used),
            proc_used: d(a.node.proc_used, b.node.proc_used),
            disk_free: d(a.node.disk_free, b.node.disk_free),
        }
    }

    /// A view for many lookups (one lock for a whole list).
    pub fn view(&self) -> RateView {
        self.want_objects();
        let (older, newer) = self.pair();
        RateView { older, newer }
    }
}

/// The last two samples, for looking up many objects' rates.
pub struct RateView {
    older: Arc<Sample>,
    newer: Arc<Sample>,
}

impl RateView {
    pub fn queue(&self, vhost: VhostId, name: &str) -> Rates {
        let k = (vhost, name.to_string());
        rates(
            &self.older,
            &self.newer,
            self.older.queues.get(&k),
            self.newer.queues.get(&k),
        )
    }

    pub fn channel(&self, conn: &str, number: u16) -> Rates {
        let k = (conn.to_string(), number);
        rates(
            &self.older,
            &self.newer,
            self.older.channels.get(&k),
            self.newer.channels.get(&k),
        )
    }

    /// (publish_in, publish_out) messages per second.
    pub fn exchange(&self, vhost: VhostId, name: &str) -> (f64, f64) {
        let k = (vhost, name.to_string());
        let (Some(a), Some(b)) = (self.older.exchanges.get(&k), self.newer.exchanges.get(&k))
        else {
            return (0.0, 0.0);
        };
        let dt = secs(&self.older, &self.newer);
        if dt <= 0.0 {
            return (0.0, 0.0);
        }
        (
            b.publish_in.saturating_sub(a.publish_in) as f64 / dt,
            b.publish_out.saturating_sub(a.publish_out) as f64 / dt,
        )
    }

    /// (recv_oct, send_oct) bytes per second.
    pub fn connection(&self, name: &str) -> (f64, f64) {
        let (Some(a), Some(b)) = (self.older.conns.get(name), self.newer.conns.get(name)) else {
            return (0.0, 0.0);
        };
        let dt = secs(&self.older, &self.newer);
        if dt <= 0.0 {
            return (0.0, 0.0);
        }
        (
            b.0.saturating_sub(a.0) as f64 / dt,
            b.1.saturating_sub(a.1) as f64 / dt,
        )
    }
}

fn secs(a: &Sample, b: &Sample) -> f64 {
    match (a.at, b.at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    }
}

fn rates(a: &Sample, b: &Sample, x: Option<&MsgStats>, y: Option<&MsgStats>) -> Rates {
    let mut out = [0.0; 12];
    let dt = secs(a, b);
    let (Some(x), Some(y)) = (x, y) else {
        return out;
    };
    if dt <= 0.0 {
        return out;
    }
    for (i, ((_, old), (_, new))) in x.fields().iter().zip(y.fields().iter()).enumerate() {
        out[i] = new.saturating_sub(*old) as f64 / dt;
    }
    out
}

impl Admin {
    /// Every shard's snapshot (`ShardState::snapshot`), in shard order. Blocks
    /// for one control round trip.
    pub fn snapshot(&self, want: Want) -> Vec<ShardSnapshot> {
        self.control.ask_all(move |state| state.snapshot(want))
    }

    /// Closes the connection named `name` with 320 CONNECTION_FORCED -
    /// `reason`; false if no shard has it.
    pub fn close_connection(&self, name: &str, reason: &str) -> bool {
        let (name, reason): (Arc<str>, Arc<str>) = (name.into(), reason.into());
        self.control
            .ask_all(move |state| state.close_connection(&name, &reason))
            .into_iter()
            .any(|closed| closed)
    }

    /// Every exchange's counters summed over the shards, by (vhost, name);
    /// exchanges that routed nothing are absent.
    pub fn exchange_stats(&self) -> HashMap<(VhostId, String), ExchangeStats> {
        let want = Want {
            exchanges: true,
            ..Want::TOTALS
        };
        let mut out: HashMap<(VhostId, String), ExchangeStats> = HashMap::new();
        for snap in self.snapshot(want) {
            for x in snap.exchanges {
                let e = out.entry((x.vhost, x.name)).or_default();
                e.publish_in += x.stats.publish_in;
                e.publish_out += x.stats.publish_out;
            }
        }
        out
    }

    /// Vhost ids to names, for rendering snapshots.
    pub fn vhost_names(&self) -> HashMap<VhostId, Arc<str>> {
        let g = self.defs.lock();
        g.vhost_ids()
            .map(|(name, id)| (id, Arc::from(name)))
            .collect()
    }

    /// Exchanges and queues per vhost name, from the definitions
    /// (`object_totals` for a user who sees only some vhosts).
    pub fn object_counts(&self) -> HashMap<String, (usize, usize)> {
        let g = self.defs.lock();
        let ids: Vec<(String, VhostId)> =
            g.vhost_ids().map(|(n, id)| (n.to_string(), id)).collect();
        ids.into_iter()
            .filter_map(|(name, id)| {
                let v = g.vh(id).ok()?;
                Some((name, (v.exchanges.len(), v.queues.len())))
            })
            .collect()
    }

    /// The node's own figures.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }
}
