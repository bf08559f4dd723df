//! warren: an AMQP 0-9-1 broker that speaks the protocol the way RabbitMQ does,
//! built thread-per-core.
//!
//! # Layout (modules in the order data flows)
//! - [`net`]: listeners (one SO_REUSEPORT socket per shard) and socket buffers.
//! - [`protocol`]: frames, field tables, the method codec generated from the spec.
//! - [`client`]: a small blocking AMQP 0-9-1 client on that codec (the
//!   shovels and the load generator use it).
//! - [`shard`]: the per-core event loop, the SPSC rings between shards, timers,
//!   the sessions a shard serves and the control path into it.
//! - [`amqp091`]: the AMQP 0-9-1 front end (connections, channels).
//! - [`core`]: the broker core, in no protocol's terms: vhosts, definitions,
//!   exchanges, routing, queues, consumers, and the operations front ends call.
//! - [`store`]: on-disk state (data directory).
//! - [`admin`]: users, vhosts, permissions, limits, definitions, for tools.
//! - [`shovel`]: dynamic shovels (moving messages in from another broker),
//!   on their own threads, as clients of both ends.
//! - [`cluster`]: clustering on etcd (issue 20, under way: the etcd client).
//! - [`http`]: the management HTTP API (RabbitMQ's), on its own thread.
//!
//! Layers, bottom up: `net`, `protocol`, `client`, `store`, `config` → `core` →
//! `amqp091` → `shard` → `admin` → `shovel` → `http`; nothing imports a layer above it
//! (`tests/layering.rs`).
//!
//! See ARCHITECTURE.md for threads, rings and the path of a message.

pub mod admin;
pub mod amqp091;
pub mod amqp10;
pub mod client;
pub mod cluster;
pub mod config;
pub mod core;
pub mod fuzz;
pub mod http;
pub mod net;
pub mod protocol;
pub mod shard;
pub mod shovel;
pub mod store;

pub use config::Config;

pub use shard::BrokerHandle;

/// Starts a broker: the shards (`shard::start`), then the management HTTP
/// API and the Prometheus endpoint on top of them when `config.http_port`
/// or `config.prometheus_port` is set.
pub fn start(config: Config) -> std::io::Result<BrokerHandle> {
    // Direct `amqp://` shovel URIs connect to this broker's own listener:
    // on loopback if it listens there, else on its first address.
    let own = config
        .bind
        .iter()
        .copied()
        .find(|a| a.is_loopback() || a.is_unspecified())
        .map(|a| match a {
            std::net::IpAddr::V4(_) => std::net::IpAddr::from([127, 0, 0, 1]),
            std::net::IpAddr::V6(_) => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        })
        .or(config.bind.first().copied())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let cluster = config.cluster.clone();
    let cluster_bind = config
        .bind
        .first()
        .copied()
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let http_port = config.http_port;
    // A clustered node's definitions are the cluster's, in etcd.
    let mut defs_sync = None;
    // This node's queues that did not survive its restart, from the
    // definitions builder (run inside `start_with`).
    let stale = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let open_defs: Option<shard::OpenDefs> = if cluster.etcd.is_empty() {
        None
    } else {
        let node = config::node_name();
        let (sync, records, head) =
            cluster::defs_sync::DefsSync::connect(&cluster.etcd, &cluster.name, &node)
                .map_err(|e| std::io::Error::other(format!("cluster definitions: {e}")))?;
        defs_sync = Some(sync.clone());
        let stale_out = stale.clone();
        let open: shard::OpenDefs = Box::new(move |shards| {
            let (d, st) = core::definitions::Definitions::from_cluster(
                records,
                shards,
                &node,
                sync.replicator(),
                head,
            );
            *stale_out.lock().unwrap() = st;
            // The applier runs before the shards: their first change
            // (the bootstrap) may wait for it.
            let d = std::sync::Arc::new(d);
            sync.start(&d);
            Ok(d)
        });
        Some(open)
    };
    let mut handle = shard::start_with(config, open_defs)?;
    if let Some(sync) = &defs_sync {
        let admin = handle.admin();
        let defs = admin.definitions().clone();
        sync.on_effects(Box::new(move |e| match e {
            core::definitions::Effect::VhostDeleted { id, name } => {
                admin.vhost_gone_elsewhere(id, &name)
            }
            core::definitions::Effect::UserDeleted(name) => admin.user_gone_elsewhere(&name),
            core::definitions::Effect::QueueMovedAway(q) => admin.demote_queue(q),
        }));
        defs.forget_stale_queues(&stale.lock().unwrap());
        let s = sync.clone();
        handle.attach_stop(Box::new(move || s.stop()));
    }
    let local = std::net::SocketAddr::new(own, handle.port());
    let shovels = shovel::Shovels::start(handle.admin(), local, config::node_name());
    let s = shovels.clone();
    handle.attach_stop(Box::new(move || s.stop()));
    let membership = match cluster.etcd.is_empty() {
        true => None,
        false => {
            let listener =
                std::net::TcpListener::bind((cluster_bind, cluster.port)).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot listen on cluster port {}: {e}", cluster.port),
                    )
                })?;
            let me = cluster::members::SelfInfo {
                node: config::node_name(),
                address: cluster
                    .advertise_address
                    .clone()
                    .unwrap_or_else(cluster::members::host_name),
                amqp_port: handle.port(),
                http_port: http_port.filter(|&p| p != 0),
                cluster_port: listener.local_addr()?.port(),
            };
            let m = cluster::members::Membership::start(&cluster.etcd, &cluster.name, me);
            let quorum = cluster::start_replication(&mut handle, &cluster, listener, m.clone())?;
            let stop = m.clone();
            handle.attach_stop(Box::new(move || stop.stop()));
            Some(http::ClusterView {
                membership: m,
                quorum,
            })
        }
    };
    match http::start(handle.admin(), shovels, membership) {
        Ok(Some(server)) => {
            let ports = (server.port(), server.prometheus_port());
            handle.attach_http(ports.0, ports.1, Box::new(move || server.stop()));
        }
        Ok(None) => {}
        Err(e) => {
            handle.shutdown();
            return Err(e);
        }
    }
    Ok(handle)
}
