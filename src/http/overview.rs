//! `/api/overview`, `/api/nodes` and `/api/nodes/{node}`
//! (rabbit_mgmt_wm_overview, rabbit_mgmt_wm_nodes, rabbit_mgmt_wm_node and
//! the node figures of rabbit_mgmt_external_stats, RabbitMQ 3.13).
//!
//! warren presents itself as RabbitMQ 3.13.7 with its product name
//! overridden, the way RabbitMQ reports a rebranded build: `rabbitmq_version`
//! (what clients and tools compare against) is "3.13.7", `product_name`
//! "warren" and `product_version` warren's own version. There is no Erlang
//! runtime: `erlang_version` is "n/a" and `erlang_full_version` says what
//! runs instead.
//!
//! Visibility as RabbitMQ: a monitor (tag administrator or monitoring) gets
//! the node's figures, listeners and contexts and every object; any other
//! management user gets no `node`/`listeners`/`contexts`, no consumer
//! count, their own connections and channels, and the queues, exchanges,
//! queue totals and message counters of the vhosts they have a permission
//! in. warren counts messages per queue and per channel, not per vhost, so
//! such a user's `message_stats` are the node's when they see every vhost,
//! and otherwise the sums over their vhosts' queues (publish, deliveries,
//! gets, acks, redeliveries; no confirms or unroutable counts).

use super::auth::is_monitor;
use super::scope::visible_vhosts;
use super::stats_json::{details, message_stats, put_counter, VhostNames};
use super::{ok, Api, ApiError, Creds, Level};
use crate::admin::stats::Rates;
use crate::admin::Admin;
use crate::core::stats::{Churn, MsgStats, ShardSnapshot, Want};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The RabbitMQ version whose API (and definitions format) warren speaks.
pub(crate) const RABBITMQ_VERSION: &str = "3.13.7";

/// `erlang_version`: there is none.
pub(crate) const ERLANG_VERSION: &str = "n/a";

/// `erlang_full_version`.
pub(crate) fn runtime_description() -> String {
    format!(
        "warren {} (Rust, thread-per-core; no Erlang runtime)",
        env!("CARGO_PKG_VERSION")
    )
}

/// What the overview and the node show of the HTTP side: where it listens.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub node: String,
    pub http_port: u16,
    pub prometheus_port: Option<u16>,
    /// The nodes being drained (`maintenance.rs`).
    pub draining: Vec<String>,
}

impl Endpoints {
    pub(crate) fn of(api: &Api) -> Endpoints {
        Endpoints {
            node: api.node.to_string(),
            http_port: api.http_port,
            prometheus_port: api.prometheus_port,
            draining: api
                .cluster
                .as_ref()
                .map(|c| c.quorum.draining())
                .unwrap_or_default(),
        }
    }
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true")
}

/// RabbitMQ's exchange types (`rabbit_registry`), sorted by name.
pub(crate) fn exchange_types() -> Value {
    let t = |name: &str| {
        json!({
            "name": name,
            "description": format!("AMQP {name} exchange, as per the AMQP specification"),
            "enabled": true,
        })
    };
    json!([t("direct"), t("fanout"), t("headers"), t("topic")])
}

/// The SASL mechanisms a client may use.
fn auth_mechanisms(tls: bool) -> Value {
    let m = |name: &str, description: &str, enabled: bool| json!({ "name": name, "description": description, "enabled": enabled });
    json!([
        m("PLAIN", "SASL PLAIN authentication mechanism", true),
        m("AMQPLAIN", "QPid AMQPLAIN mechanism", true),
        m(
            "EXTERNAL",
            "SASL EXTERNAL authentication mechanism (client certificates)",
            tls
        ),
    ])
}

/// Every listener as `/api/overview` lists it, sorted by protocol, port
/// and node (RabbitMQ's order).
pub(crate) fn listeners(admin: &Admin, ep: &Endpoints) -> Vec<Value> {
    let config = admin.config();
    let http_bind = if config.http_bind.is_empty() {
        &config.bind
    } else {
        &config.http_bind
    };
    let mut out = Vec::new();
    for l in &admin.node().listeners {
        for ip in &config.bind {
            out.push(json!({
                "node": ep.node,
                "protocol": l.protocol,
                "ip_address": ip.to_string(),
                "port": l.port,
                "socket_opts": { "backlog": 1024, "nodelay": true },
            }));
        }
    }
    for ip in http_bind {
        out.push(json!({
            "node": ep.node,
            "protocol": "http",
            "ip_address": ip.to_string(),
            "port": ep.http_port,
            "socket_opts": { "port": ep.http_port },
        }));
        if let Some(p) = ep.prometheus_port {
            out.push(json!({
                "node": ep.node,
                "protocol": "http/prometheus",
                "ip_address": ip.to_string(),
                "port": p,
                "socket_opts": { "port": p, "protocol": "http/prometheus" },
            }));
        }
    }
    let key = |v: &Value| {
        (
            v["protocol"].as_str().unwrap_or("").to_string(),
            v["port"].as_u64().unwrap_or(0),
        )
    };
    out.sort_by_key(key);
    out
}

/// The web contexts (`contexts`), with or without the node name.
fn contexts(ep: &Endpoints, with_node: bool) -> Vec<Value> {
    let mut out = vec![json!({
        "ssl_opts": [],
        "description": "RabbitMQ Management",
        "path": "/",
        "port": ep.http_port.to_string(),
    })];
    if let Some(p) = ep.prometheus_port {
        out.push(json!({
            "ssl_opts": [],
            "description": "RabbitMQ Prometheus",
            "path": "/",
            "port": p.to_string(),
            "protocol": "'http/prometheus'",
        }));
    }
    if with_node {
        for c in &mut out {
            c["node"] = json!(ep.node);
        }
    } else {
        for c in &mut out {
            c.as_object_mut().map(|m| m.remove("ssl_opts"));
        }
    }
    out
}

/// The identification fields every overview starts with.
/// `cluster_name`: the node's name on a single node (RabbitMQ's default),
/// `--cluster-name` in a cluster.
fn identity(disable_stats: bool, enable_queue_totals: bool, cluster: &str) -> Map<String, Value> {
    let v = json!({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        "sample_retention_policies": {
            "global": [600, 3600, 28800, 86400],
            "basic": [600, 3600],
            "detailed": [600],
        },
        "exchange_types": exchange_types(),
        "product_version": env!("CARGO_PKG_VERSION"),
        "product_name": "warren",
        "rabbitmq_version": RABBITMQ_VERSION,
        "cluster_name": cluster,
        "erlang_version": ERLANG_VERSION,
        "erlang_full_version": runtime_description(),
        "release_series_support_status": "supported",
        "disable_stats": disable_stats,
        "is_op_policy_updating_enabled": true,
        "enable_queue_totals": enable_queue_totals,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `churn_rates` from the shards' counters and the sampler's rates.
pub(crate) fn churn_json(churn: &Churn, rates: &[f64; 7]) -> Value {
    let mut m = Map::new();
    for (i, (name, value)) in churn.fields().iter().enumerate() {
        put_counter(&mut m, name, *value, rates[i]);
    }
    Value::Object(m)
}

fn queue_totals_json(ready: u64, unacked: u64, rates: [f64; 3]) -> Value {
    let mut m = Map::new();
    put_counter(&mut m, "messages", ready + unacked, rates[0]);
    put_counter(&mut m, "messages_ready", ready, rates[1]);
    put_counter(&mut m, "messages_unacknowledged", unacked, rates[2]);
    Value::Object(m)
}

fn sum_churn(snaps: &[ShardSnapshot]) -> Churn {
    let mut c = Churn::default();
    for s in snaps {
        c.add(&s.churn);
    }
    c
}

/// `GET /api/overview` (query: `disable_stats`, `enable_queue_totals`).
pub(crate) async fn overview(
    State(api): State<Api>,
    c: Creds,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (ep, rates) = (Endpoints::of(&api), api.rates.clone());
    let cluster = match &api.membership {
        Some(m) => m.cluster_name().to_string(),
        None => ep.node.to_string(),
    };
    api.call(c, Level::Management, move |a, u| {
        // `columns=` (rabbitmqadmin's `show overview` asks for
        // `rabbitmq_version,cluster_name,queue_totals.messages,…`).
        let columns = super::listing::ListQuery::parse(&q)?;
        let (disable, totals) = (flag(&q, "disable_stats"), flag(&q, "enable_queue_totals"));
        let mut out = identity(disable, totals, &cluster);
        let monitor = is_monitor(u);
        let visible = visible_vhosts(a, u);
        let counts = a.object_counts();
        let (mut exchanges, mut queues) = (0, 0);
        for (vhost, (x, q)) in &counts {
            if visible.as_ref().is_none_or(|v| v.contains(vhost)) {
                exchanges += x;
                queues += q;
            }
        }
        if disable {
            let mut ot = json!({ "queues": queues, "exchanges": exchanges });
            if monitor {
                let snaps = a.snapshot(Want::TOTALS);
                ot["connections"] = json!(snaps.iter().map(|s| s.connection_count).sum::<u64>());
            }
            out.insert("node".into(), json!(ep.node));
            out.insert("object_totals".into(), ot);
            return Ok(ok(&columns.trim_one(Value::Object(out))));
        }
        let stats = if monitor {
            monitor_stats(a, &rates)
        } else {
            let sees_all = visible
                .as_ref()
                .is_none_or(|v| counts.keys().all(|k| v.contains(k)));
            user_stats(a, &rates, u, sees_all, visible.as_ref())
        };
        let snaps = &stats.snaps;
        out.insert("message_stats".into(), stats.message_stats);
        out.insert(
            "churn_rates".into(),
            churn_json(&sum_churn(snaps), &rates.churn_rates()),
        );
        out.insert("queue_totals".into(), stats.queue_totals);
        let mut ot = Map::new();
        if monitor {
            ot.insert(
                "consumers".into(),
                json!(snaps.iter().map(|s| s.consumer_count).sum::<u64>()),
            );
        }
        ot.insert("queues".into(), json!(queues));
        ot.insert("exchanges".into(), json!(exchanges));
        ot.insert("connections".into(), json!(stats.connections));
        ot.insert("channels".into(), json!(stats.channels));
        out.insert("object_totals".into(), Value::Object(ot));
        out.insert("statistics_db_event_queue".into(), json!(0));
        if monitor {
            out.insert("node".into(), json!(ep.node));
            out.insert("listeners".into(), json!(listeners(a, &ep)));
            out.insert("contexts".into(), json!(contexts(&ep, true)));
        }
        Ok(ok(&columns.trim_one(Value::Object(out))))
    })
    .await
}

/// The overview's statistics for one caller.
struct OverviewStats {
    snaps: Vec<ShardSnapshot>,
    message_stats: Value,
    queue_totals: Value,
    connections: u64,
    channels: u64,
}

/// `{}` until something was published or delivered (RabbitMQ's fresh node).
fn message_stats_or_empty(t: &MsgStats, rates: &Rates) -> Value {
    if t.is_zero() {
        json!({})
    } else {
        message_stats(t, rates, None)
    }
}

/// A monitor's overview: the node's totals (no object lists copied).
fn monitor_stats(a: &Admin, rates: &crate::admin::stats::Sampler) -> OverviewStats {
    let snaps = a.snapshot(Want::TOTALS);
    let mut t = MsgStats::default();
    let (mut ready, mut unacked, mut connections, mut channels) = (0, 0, 0, 0);
    for s in &snaps {
        t.add(&s.totals);
        ready += s.messages_ready;
        unacked += s.messages_unacked;
        connections += s.connection_count;
        channels += s.channel_count;
    }
    OverviewStats {
        message_stats: message_stats_or_empty(&t, &rates.total_rates()),
        queue_totals: queue_totals_json(ready, unacked, rates.queue_totals_rates()),
        snaps,
        connections,
        channels,
    }
}

/// A management user's overview: their vhosts' queues, their own
/// connections and channels (see the module doc for message_stats).
fn user_stats(
    a: &Admin,
    rates: &crate::admin::stats::Sampler,
    u: &crate::admin::UserView,
    sees_all: bool,
    visible: Option<&std::collections::HashSet<String>>,
) -> OverviewStats {
    let want = Want {
        queues: true,
        connections: true,
        channels: true,
        consumers: false,
        exchanges: false,
    };
    let snaps = a.snapshot(want);
    let names = VhostNames(a.vhost_names());
    let seen = |id| visible.is_none_or(|v| v.contains(names.name(Some(id))));
    let (mut ready, mut unacked) = (0, 0);
    let mut t = MsgStats::default();
    let mut r: Rates = [0.0; 12];
    let view = (!sees_all).then(|| rates.view());
    for q in snaps
        .iter()
        .flat_map(|s| &s.queues)
        .filter(|q| seen(q.vhost))
    {
        ready += q.messages_ready;
        unacked += q.messages_unacked;
        if let Some(view) = &view {
            // A queue counts no confirms and no unroutable messages.
            t.add(&q.stats);
            for (r, qr) in r.iter_mut().zip(view.queue(q.vhost, &q.name)) {
                *r += qr;
            }
        }
    }
    let message_stats = if sees_all {
        let mut all = MsgStats::default();
        for s in &snaps {
            all.add(&s.totals);
        }
        message_stats_or_empty(&all, &rates.total_rates())
    } else {
        message_stats_or_empty(&t, &r)
    };
    let totals_rates = if sees_all {
        rates.queue_totals_rates()
    } else {
        [0.0; 3]
    };
    let connections = snaps
        .iter()
        .flat_map(|s| &s.connections)
        .filter(|c| c.user == u.name)
        .count() as u64;
    let channels = snaps
        .iter()
        .flat_map(|s| &s.channels)
        .filter(|c| c.user == u.name)
        .count() as u64;
    OverviewStats {
        message_stats,
        queue_totals: queue_totals_json(ready, unacked, totals_rates),
        snaps,
        connections,
        channels,
    }
}

// ---- nodes ----

/// One node as `/api/nodes` shows it (`disable_stats`: the basic fields).
fn node_json(
    a: &Admin,
    api_rates: &crate::admin::stats::Sampler,
    ep: &Endpoints,
    disable_stats: bool,
) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(ep.node));
    m.insert("type".into(), json!("disc"));
    m.insert("running".into(), json!(true));
    m.insert(
        "being_drained".into(),
        json!(ep.draining.contains(&ep.node)),
    );
    if disable_stats {
        return Value::Object(m);
    }
    let node = a.node();
    let rates = api_rates.node_rates();
    let snaps = a.snapshot(Want::TOTALS);
    let sockets: u64 = snaps.iter().map(|s| s.connection_count).sum();
    let (fd_used, fd_total) = node.fds();
    let (proc_used, proc_total) = node.threads();
    let config = a.config();
    put_counter(&mut m, "mem_used", node.memory_used(), rates.mem_used);
    m.insert("mem_limit".into(), json!(node.memory_limit()));
    m.insert("mem_alarm".into(), json!(node.memory_alarm()));
    put_counter(&mut m, "disk_free", node.disk_free(), 0.0);
    m.insert("disk_free_details".into(), details(rates.disk_free));
    m.insert("disk_free_limit".into(), json!(node.disk_free_limit()));
    m.insert("disk_free_alarm".into(), json!(node.disk_alarm()));
    put_counter(&mut m, "fd_used", fd_used, rates.fd_used);
    m.insert("fd_total".into(), json!(fd_total));
    put_counter(&mut m, "sockets_used", sockets, rates.sockets_used);
    m.insert("sockets_total".into(), json!(fd_total));
    put_counter(&mut m, "proc_used", proc_used, rates.proc_used);
    m.insert("proc_total".into(), json!(proc_total));
    let extra = json!({
        "os_pid": std::process::id().to_string(),
        "partitions": [],
        "rates_mode": "basic",
        "uptime": node.uptime_ms(),
        "run_queue": 0,
        "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "exchange_types": exchange_types(),
        "auth_mechanisms": auth_mechanisms(config.tls_cert.is_some()),
        "applications": [
            { "name": "rabbitmq_management", "description": "RabbitMQ Management Console", "version": RABBITMQ_VERSION },
            { "name": "rabbitmq_prometheus", "description": "Prometheus metrics for RabbitMQ", "version": RABBITMQ_VERSION },
            { "name": "warren", "description": "warren, an AMQP 0-9-1 broker", "version": env!("CARGO_PKG_VERSION") },
        ],
        "contexts": contexts(ep, false),
        "log_files": ["<stdout>"],
        "db_dir": config.data_dir.display().to_string(),
        "config_files": [],
        "net_ticktime": 60,
        "enabled_plugins": if ep.prometheus_port.is_some() {
            json!(["rabbitmq_management", "rabbitmq_prometheus"])
        } else {
            json!(["rabbitmq_management"])
        },
        "mem_calculation_strategy": "rss",
        "ra_open_file_metrics": {},
        "cluster_links": [],
        "metrics_gc_queue_length": {
            "connection_closed": 0, "channel_closed": 0, "consumer_deleted": 0,
            "exchange_deleted": 0, "queue_deleted": 0, "vhost_deleted": 0,
            "node_node_deleted": 0, "channel_consumer_deleted": 0,
        },
    });
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    if let Value::Object(c) = churn_json(&sum_churn(&snaps), &api_rates.churn_rates()) {
        m.extend(c);
    }
    Value::Object(m)
}

/// `GET /api/nodes`: this node, then the cluster's other members
/// (monitors only).
pub(crate) async fn nodes(
    State(api): State<Api>,
    c: Creds,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (ep, rates) = (Endpoints::of(&api), api.rates.clone());
    let cluster = api.cluster.clone();
    let creds = c.clone();
    api.call(c, Level::Monitor, move |a, _| {
        let query = super::listing::ListQuery::parse(&q)?;
        let mut list = vec![node_json(a, &rates, &ep, flag(&q, "disable_stats"))];
        list.extend(other_members(cluster.as_ref(), &ep, &creds, &q));
        Ok(ok(&query.apply(list)?))
    })
    .await
}

/// The other members of the cluster (`--etcd`): a running one as it
/// describes itself (`GET /api/nodes/{itself}` on it), else as RabbitMQ
/// lists a node it has no figures of: name, type, running.
fn other_members(
    cluster: Option<&super::ClusterView>,
    ep: &Endpoints,
    creds: &Creds,
    q: &HashMap<String, String>,
) -> Vec<Value> {
    let Some(c) = cluster else {
        return Vec::new();
    };
    let peers = c.peers();
    let stats = if flag(q, "disable_stats") {
        "?disable_stats=true"
    } else {
        ""
    };
    c.membership
        .members()
        .into_iter()
        .filter(|n| n.name != ep.node)
        .map(|n| {
            let answer = peers.iter().find(|p| p.name == n.name).and_then(|p| {
                let path = format!(
                    "/api/nodes/{}{stats}",
                    super::cluster_view::segment(&n.name)
                );
                c.get(p, &path, creds).ok().filter(Value::is_object)
            });
            answer.unwrap_or_else(|| {
                json!({
                    "name": n.name,
                    "type": "disc",
                    "running": n.running,
                    "being_drained": ep.draining.contains(&n.name),
                })
            })
        })
        .collect()
}

/// `GET /api/nodes/{node}`: this node, another member (its basic fields),
/// else 404.
pub(crate) async fn node(
    State(api): State<Api>,
    c: Creds,
    h: axum::http::HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (ep, rates) = (Endpoints::of(&api), api.rates.clone());
    // Another node asking for this one only: never passed on.
    let cluster = api
        .cluster
        .clone()
        .filter(|_| !super::cluster_view::local_only(&h));
    let creds = c.clone();
    api.call(c, Level::Monitor, move |a, _| {
        if name != ep.node {
            return other_members(cluster.as_ref(), &ep, &creds, &q)
                .into_iter()
                .find(|n| n["name"] == name)
                .map(|n| ok(&n))
                .ok_or_else(ApiError::not_found);
        }
        Ok(ok(&node_json(a, &rates, &ep, flag(&q, "disable_stats"))))
    })
    .await
}
