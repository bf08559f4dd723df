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
//! - [`http`]: the management HTTP API (RabbitMQ's), on its own thread.
//!
//! Layers, bottom up: `net`, `protocol`, `client`, `store`, `config` → `core` →
//! `amqp091` → `shard` → `admin` → `http`; nothing imports a layer above it
//! (`tests/layering.rs`).
//!
//! See ARCHITECTURE.md for threads, rings and the path of a message.

pub mod admin;
pub mod amqp091;
pub mod amqp10;
pub mod client;
pub mod config;
pub mod core;
pub mod fuzz;
pub mod http;
pub mod net;
pub mod protocol;
pub mod shard;
pub mod store;

pub use config::Config;
pub use shard::BrokerHandle;

/// Starts a broker: the shards (`shard::start`), then the management HTTP
/// API and the Prometheus endpoint on top of them when `config.http_port`
/// or `config.prometheus_port` is set.
pub fn start(config: Config) -> std::io::Result<BrokerHandle> {
    let mut handle = shard::start(config)?;
    match http::start(handle.admin()) {
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
