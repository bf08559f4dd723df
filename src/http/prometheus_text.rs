//! The Prometheus text exposition format (0.0.4) of RabbitMQ's
//! `rabbitmq_prometheus` plugin, 3.13 (collectors
//! `prometheus_rabbitmq_core_metrics_collector`, `_global_metrics_collector`,
//! `_alarm_metrics_collector`, and 4.1's `_message_size_metrics_collector`):
//! the same metric names, types, help texts and labels, rendered straight
//! into a `String` from the shards' snapshots (no intermediate model, no
//! serde): with 100,000 queues `/metrics/per-object` renders in well under
//! a second.
//!
//! The families are grouped by the RabbitMQ table they come from
//! (`queue_coarse_metrics`, `channel_metrics`, …): `/metrics/detailed`
//! selects groups by those names (`family=`). This file has the writer and
//! the node-wide families; `prometheus_objects.rs` the queue, channel and
//! connection families (sums in `/metrics`, one sample per object with
//! RabbitMQ's labels in `/metrics/per-object`).
//!
//! What warren has no counterpart for is left out (Erlang VM, Mnesia, Raft,
//! I/O and message store counters, reductions, authentication attempts),
//! except `rabbitmq_erlang_uptime_seconds`, which the Grafana dashboards
//! join on and which is the node's uptime.

use crate::core::ids::VhostId;
use crate::core::stats::{MsgStats, ShardSnapshot, MSG_SIZE_BOUNDS};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;

/// Figures of the node itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeFigures {
    pub fd_used: u64,
    pub fd_total: u64,
    pub mem_used: u64,
    pub mem_limit: u64,
    pub disk_free: u64,
    pub disk_free_limit: u64,
    pub uptime_ms: u64,
    pub memory_alarm: bool,
    pub disk_alarm: bool,
}

/// Everything one scrape renders.
pub(crate) struct ScrapeData {
    pub node: String,
    pub cluster: String,
    pub snaps: Vec<ShardSnapshot>,
    pub vhosts: HashMap<VhostId, Arc<str>>,
    pub figures: NodeFigures,
    /// The shovels' status (`rabbitmq_shovel_dynamic`, `warren_shovel_*`).
    pub shovels: Vec<crate::shovel::status::Status>,
    /// The quorum queues this node leads (`prometheus_quorum`).
    pub quorum: Vec<super::prometheus_quorum::QuorumFigures>,
}

/// Which endpoint is scraped.
pub(crate) enum Endpoint {
    /// `/metrics`: object metrics summed.
    Aggregated,
    /// `/metrics/per-object`.
    PerObject,
    /// `/metrics/detailed`: the families named, per object, prefixed
    /// `rabbitmq_detailed_`; queue families only for `vhosts` if given.
    Detailed {
        families: HashSet<String>,
        vhosts: Option<HashSet<String>>,
    },
}

/// The RabbitMQ version warren's plugin versions report.
const VERSION: &str = super::overview::RABBITMQ_VERSION;
/// The Erlang prometheus client RabbitMQ 3.13.7 ships.
const PROMETHEUS_CLIENT_VERSION: &str = "4.11.0";

/// A value as the exposition format writes it.
pub(super) trait Num {
    fn put(&self, out: &mut String);
}

impl Num for u64 {
    fn put(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Num for f64 {
    fn put(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// Appends a label value, escaped (`\\`, `\"`, `\n`).
fn escape_into(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `k="v",k2="v2"` from pairs.
pub(super) fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        escape_into(&mut s, v);
        s.push('"');
    }
    s
}

/// The output and the prefix of its metric names.
pub(super) struct Out {
    s: String,
    pub(super) prefix: &'static str,
}

impl Out {
    /// `# TYPE` and `# HELP` lines (RabbitMQ's order).
    pub(super) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.s, "# TYPE {}{name} {kind}", self.prefix);
        let _ = writeln!(self.s, "# HELP {}{name} {help}", self.prefix);
    }

    /// One sample; `labels` pre-rendered (may be empty).
    pub(super) fn sample(&mut self, name: &str, labels: &str, v: impl Num) {
        self.s.push_str(self.prefix);
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            self.s.push_str(labels);
            self.s.push('}');
        }
        self.s.push(' ');
        v.put(&mut self.s);
        self.s.push('\n');
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, v: impl Num) {
        self.family(name, kind, help);
        self.sample(name, "", v);
    }
}

/// Renders one scrape.
pub(crate) fn render(d: &ScrapeData, endpoint: &Endpoint) -> String {
    let (prefix, per_object, endpoint_name) = match endpoint {
        Endpoint::Aggregated => ("rabbitmq_", false, "aggregated"),
        Endpoint::PerObject => ("rabbitmq_", true, "per-object"),
        Endpoint::Detailed { .. } => ("rabbitmq_detailed_", true, "detailed"),
    };
    let wanted = |family: &str| match endpoint {
        Endpoint::Detailed { families, .. } => families.contains(family),
        _ => true,
    };
    let mut out = Out {
        s: String::with_capacity(64 << 10),
        prefix,
    };
    let vhost_ok = |id: VhostId| match endpoint {
        Endpoint::Detailed {
            vhosts: Some(v), ..
        } => d.vhosts.get(&id).is_some_and(|n| v.contains(&**n)),
        _ => true,
    };
    if matches!(endpoint, Endpoint::Aggregated) {
        alarms(&mut out, &d.figures);
    }
    if wanted("connection_churn_metrics") {
        churn(&mut out, d);
    }
    if wanted("node_coarse_metrics") {
        node_coarse(&mut out, d);
    }
    if wanted("node_metrics") {
        node_metrics(&mut out, &d.figures);
    }
    super::prometheus_objects::render(&mut out, d, per_object, &wanted, &vhost_ok);
    if !matches!(endpoint, Endpoint::Detailed { .. }) {
        totals(&mut out, d);
        global(&mut out, d);
        message_sizes(&mut out, d);
        shovels(&mut out, d);
    }
    if !matches!(endpoint, Endpoint::Detailed { .. }) || wanted("ra_metrics") {
        super::prometheus_quorum::render(&mut out, d, per_object);
    }
    // Identity is always there (dashboards join every query on it),
    // always with the `rabbitmq_` prefix.
    out.prefix = "rabbitmq_";
    build_info(&mut out);
    identity_info(&mut out, d, endpoint_name);
    out.s
}

/// RabbitMQ 4's `rabbitmq_shovel_dynamic{status}` (the number of shovels
/// per state; `rabbitmq_shovel_prometheus`), and warren's own per-shovel
/// figures (RabbitMQ has none): messages moved and awaiting confirmation.
fn shovels(out: &mut Out, d: &ScrapeData) {
    let prefix = out.prefix;
    out.prefix = "rabbitmq_";
    out.family(
        "shovel_dynamic",
        "gauge",
        "Current number of dynamic shovels",
    );
    let mut by_state: std::collections::BTreeMap<&str, u64> = Default::default();
    for s in &d.shovels {
        let state = match (&s.state, s.blocked) {
            (crate::shovel::status::State::Running, true) => "blocked",
            (st, _) => st.name(),
        };
        *by_state.entry(state).or_default() += 1;
    }
    for (state, n) in by_state {
        out.sample("shovel_dynamic", &labels(&[("status", state)]), n);
    }
    out.prefix = "warren_";
    out.family(
        "shovel_messages_forwarded_total",
        "counter",
        "Messages a shovel moved (confirmed by the destination with on-confirm)",
    );
    for s in &d.shovels {
        let l = labels(&[("vhost", &s.vhost), ("shovel", &s.name)]);
        out.sample("shovel_messages_forwarded_total", &l, s.forwarded);
    }
    out.family(
        "shovel_messages_pending",
        "gauge",
        "Messages a shovel published and the destination has not confirmed yet",
    );
    for s in &d.shovels {
        let l = labels(&[("vhost", &s.vhost), ("shovel", &s.name)]);
        out.sample("shovel_messages_pending", &l, s.pending);
    }
    out.prefix = prefix;
}

fn alarms(out: &mut Out, f: &NodeFigures) {
    let a = |out: &mut Out, name: &str, help: &str, on: bool| {
        out.single(name, "untyped", help, on as u64);
    };
    a(
        out,
        "alarms_file_descriptor_limit",
        "is 1 if file descriptor limit alarm is in effect",
        false,
    );
    a(
        out,
        "alarms_free_disk_space_watermark",
        "is 1 if free disk space watermark alarm is in effect",
        f.disk_alarm,
    );
    a(
        out,
        "alarms_memory_used_watermark",
        "is 1 if VM memory watermark alarm is in effect",
        f.memory_alarm,
    );
}

fn churn(out: &mut Out, d: &ScrapeData) {
    let mut c = crate::core::stats::Churn::default();
    for s in &d.snaps {
        c.add(&s.churn);
    }
    out.single(
        "connections_opened_total",
        "counter",
        "Total number of connections opened",
        c.connection_created,
    );
    out.single(
        "connections_closed_total",
        "counter",
        "Total number of connections closed or terminated",
        c.connection_closed,
    );
    out.single(
        "channels_opened_total",
        "counter",
        "Total number of channels opened",
        c.channel_created,
    );
    out.single(
        "channels_closed_total",
        "counter",
        "Total number of channels closed",
        c.channel_closed,
    );
    out.single(
        "queues_declared_total",
        "counter",
        "Total number of queues declared",
        c.queue_declared,
    );
    out.single(
        "queues_created_total",
        "counter",
        "Total number of queues created",
        c.queue_created,
    );
    out.single(
        "queues_deleted_total",
        "counter",
        "Total number of queues deleted",
        c.queue_deleted,
    );
}

fn node_coarse(out: &mut Out, d: &ScrapeData) {
    let f = &d.figures;
    let sockets: u64 = d.snaps.iter().map(|s| s.connection_count).sum();
    out.single(
        "process_open_fds",
        "gauge",
        "Open file descriptors",
        f.fd_used,
    );
    out.single(
        "process_open_tcp_sockets",
        "gauge",
        "Open TCP sockets",
        sockets,
    );
    out.single(
        "process_resident_memory_bytes",
        "gauge",
        "Memory used in bytes",
        f.mem_used,
    );
    out.single(
        "disk_space_available_bytes",
        "gauge",
        "Disk space available in bytes",
        f.disk_free,
    );
}

fn node_metrics(out: &mut Out, f: &NodeFigures) {
    out.single(
        "process_max_fds",
        "gauge",
        "Open file descriptors limit",
        f.fd_total,
    );
    out.single(
        "process_max_tcp_sockets",
        "gauge",
        "Open TCP sockets limit",
        f.fd_total,
    );
    out.single(
        "resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        f.mem_limit,
    );
    out.single(
        "disk_space_available_limit_bytes",
        "gauge",
        "Free disk space low watermark in bytes",
        f.disk_free_limit,
    );
    out.single(
        "erlang_uptime_seconds",
        "gauge",
        "Node uptime",
        f.uptime_ms as f64 / 1000.0,
    );
}

fn totals(out: &mut Out, d: &ScrapeData) {
    let sum = |f: fn(&ShardSnapshot) -> u64| d.snaps.iter().map(f).sum::<u64>();
    out.single(
        "connections",
        "gauge",
        "Connections currently open",
        sum(|s| s.connection_count),
    );
    out.single(
        "channels",
        "gauge",
        "Channels currently open",
        sum(|s| s.channel_count),
    );
    out.single(
        "consumers",
        "gauge",
        "Consumers currently connected",
        sum(|s| s.consumer_count),
    );
    out.single(
        "queues",
        "gauge",
        "Queues available",
        sum(|s| s.queue_count),
    );
}

/// `rabbitmq_global_*` (rabbit_global_counters): every message the node's
/// channels handled since boot, open and closed ones.
fn global(out: &mut Out, d: &ScrapeData) {
    let mut t = MsgStats::default();
    for s in &d.snaps {
        t.add(&s.totals);
    }
    let publishers: u64 = d.snaps.iter().map(|s| s.publishers).sum();
    let consumers: u64 = d.snaps.iter().map(|s| s.consumer_count).sum();
    let p = "protocol=\"amqp091\"";
    // Per queue type, as RabbitMQ: every message is in a classic queue,
    // the other types' series are there at 0.
    let pq = "protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"";
    let mut one = |name: &str, kind: &str, help: &str, l: &str, v: u64| {
        out.family(name, kind, help);
        out.sample(name, l, v);
        if l == pq {
            for t in ["rabbit_quorum_queue", "rabbit_stream_queue"] {
                let l = format!("protocol=\"amqp091\",queue_type=\"{t}\"");
                out.sample(name, &l, 0u64);
            }
        }
    };
    one(
        "global_consumers",
        "gauge",
        "Current number of consumers",
        p,
        consumers,
    );
    one(
        "global_messages_acknowledged_total",
        "counter",
        "Total number of messages acknowledged by consumers",
        pq,
        t.ack,
    );
    one(
        "global_messages_confirmed_total",
        "counter",
        "Total number of messages confirmed to publishers",
        p,
        t.confirm,
    );
    one("global_messages_delivered_consume_auto_ack_total", "counter", "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment", pq, t.deliver_no_ack);
    one("global_messages_delivered_consume_manual_ack_total", "counter", "Total number of messages delivered to consumers using basic.consume with manual acknowledgment", pq, t.deliver);
    one("global_messages_delivered_get_auto_ack_total", "counter", "Total number of messages delivered to consumers using basic.get with automatic acknowledgment", pq, t.get_no_ack);
    one("global_messages_delivered_get_manual_ack_total", "counter", "Total number of messages delivered to consumers using basic.get with manual acknowledgment", pq, t.get);
    one(
        "global_messages_delivered_total",
        "counter",
        "Total number of messages delivered to consumers",
        pq,
        t.deliver_get(),
    );
    one(
        "global_messages_get_empty_total",
        "counter",
        "Total number of times basic.get operations fetched no message",
        pq,
        t.get_empty,
    );
    one(
        "global_messages_received_confirm_total",
        "counter",
        "Total number of messages received from publishers expecting confirmations",
        p,
        t.received_confirm,
    );
    one(
        "global_messages_received_total",
        "counter",
        "Total number of messages received from publishers",
        p,
        t.publish,
    );
    one(
        "global_messages_redelivered_total",
        "counter",
        "Total number of messages redelivered to consumers",
        pq,
        t.redeliver,
    );
    let routed = t
        .publish
        .saturating_sub(t.drop_unroutable + t.return_unroutable);
    one(
        "global_messages_routed_total",
        "counter",
        "Total number of messages routed to queues or streams",
        p,
        routed,
    );
    one("global_messages_unroutable_dropped_total", "counter", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", p, t.drop_unroutable);
    one("global_messages_unroutable_returned_total", "counter", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", p, t.return_unroutable);
    one(
        "global_publishers",
        "gauge",
        "Current number of publishers",
        p,
        publishers,
    );
}

/// The bucket bounds as Prometheus normalises `le` values ("100.0",
/// "1e+06"), so that dashboards' `le="1e+06"` selectors match.
const LE: [&str; 8] = [
    "100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "5e+07", "1e+08",
];

/// `rabbitmq_message_size_bytes` (RabbitMQ 4.1's histogram of published
/// message sizes; the Grafana RabbitMQ-Overview dashboard charts it).
fn message_sizes(out: &mut Out, d: &ScrapeData) {
    let mut h = crate::core::stats::MsgSizes::default();
    for s in &d.snaps {
        h.add(&s.msg_sizes);
    }
    debug_assert_eq!(LE.len(), MSG_SIZE_BOUNDS.len());
    out.family(
        "message_size_bytes",
        "histogram",
        "Size of messages received from publishers",
    );
    let mut cumulative = 0;
    for (i, le) in LE.iter().enumerate() {
        cumulative += h.buckets[i];
        let l = format!("protocol=\"amqp091\",le=\"{le}\"");
        out.sample("message_size_bytes_bucket", &l, cumulative);
    }
    cumulative += h.buckets[LE.len()];
    out.sample(
        "message_size_bytes_bucket",
        "protocol=\"amqp091\",le=\"+Inf\"",
        cumulative,
    );
    out.sample("message_size_bytes_sum", "protocol=\"amqp091\"", h.sum);
    out.sample(
        "message_size_bytes_count",
        "protocol=\"amqp091\"",
        cumulative,
    );
}

fn build_info(out: &mut Out) {
    out.family(
        "build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
    );
    let l = labels(&[
        ("product_name", "warren"),
        ("product_version", env!("CARGO_PKG_VERSION")),
        ("rabbitmq_version", VERSION),
        ("prometheus_plugin_version", VERSION),
        ("prometheus_client_version", PROMETHEUS_CLIENT_VERSION),
        ("erlang_version", super::overview::ERLANG_VERSION),
    ]);
    out.sample("build_info", &l, 1u64);
}

/// `rabbitmq_identity_info`, with RabbitMQ 4's `rabbitmq_endpoint` label
/// (the Grafana dashboards select on it).
fn identity_info(out: &mut Out, d: &ScrapeData, endpoint: &str) {
    out.family(
        "identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
    );
    let l = labels(&[
        ("rabbitmq_node", &d.node),
        ("rabbitmq_cluster", &d.cluster),
        ("rabbitmq_cluster_permanent_id", &permanent_id(&d.cluster)),
        ("rabbitmq_endpoint", endpoint),
    ]);
    out.sample("identity_info", &l, 1u64);
}

/// A stable id derived from the cluster name (RabbitMQ's is random and
/// kept in its database; warren's node name plays that part).
fn permanent_id(cluster: &str) -> String {
    // FNV-1a, 64 bits: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in cluster.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("rabbitmq-cluster-id-{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::stats::QueueSnap;

    fn queue(i: usize) -> QueueSnap {
        QueueSnap {
            vhost: VhostId(0),
            name: format!("queue-{i}"),
            durable: true,
            auto_delete: false,
            exclusive_owner: None,
            arguments: Default::default(),
            messages_ready: i as u64,
            messages_unacked: 1,
            bytes_ready: 100,
            bytes_unacked: 10,
            messages_paged_out: 0,
            consumers: 1,
            active_consumers: 1,
            idle_since: None,
            stats: MsgStats::default(),
            memory: 1000,
            shard: 0,
            time_in_queue: Default::default(),
            confirm_latency: Default::default(),
            stream: None,
        }
    }

    fn data(queues: usize) -> ScrapeData {
        let snap = ShardSnapshot {
            queues: (0..queues).map(queue).collect(),
            queue_count: queues as u64,
            ..ShardSnapshot::default()
        };
        ScrapeData {
            shovels: Vec::new(),
            quorum: Vec::new(),
            node: "warren@host".into(),
            cluster: "warren@host".into(),
            snaps: vec![snap],
            vhosts: [(VhostId(0), Arc::from("/"))].into_iter().collect(),
            figures: NodeFigures::default(),
        }
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            labels(&[("queue", "a\"b\\c\nd"), ("vhost", "/")]),
            "queue=\"a\\\"b\\\\c\\nd\",vhost=\"/\""
        );
    }

    #[test]
    fn per_object_and_aggregated() {
        let d = data(3);
        let per = render(&d, &Endpoint::PerObject);
        assert!(per.contains("rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"queue-2\"} 2\n"));
        assert!(per.contains("rabbitmq_queues 3\n"));
        assert!(per.contains("rabbitmq_endpoint=\"per-object\""));
        let agg = render(&d, &Endpoint::Aggregated);
        assert!(agg.contains("rabbitmq_queue_messages_ready 3\n"), "{agg}");
        assert!(agg.contains("rabbitmq_queue_messages 6\n"));
        assert!(agg
            .contains("rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"1e+06\"} 0\n"));
        let detailed = render(
            &d,
            &Endpoint::Detailed {
                families: ["queue_coarse_metrics".to_string()].into_iter().collect(),
                vhosts: None,
            },
        );
        assert!(detailed
            .contains("rabbitmq_detailed_queue_messages{vhost=\"/\",queue=\"queue-1\"} 2\n"));
        assert!(!detailed.contains("rabbitmq_detailed_queue_consumers"));
        assert!(detailed.contains("rabbitmq_identity_info{"));
    }

    /// 100,000 queues per object: well under a second (release build; a
    /// debug build gets ten times that).
    #[test]
    fn hundred_thousand_queues_render_fast() {
        let d = data(100_000);
        let t = std::time::Instant::now();
        let text = render(&d, &Endpoint::PerObject);
        let took = t.elapsed();
        assert!(text.len() > 10_000_000);
        let budget = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
        assert!(took.as_secs_f64() < budget, "rendering took {took:?}");
        eprintln!("100,000 queues: {} bytes in {took:?}", text.len());
    }
}
