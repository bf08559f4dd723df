//! warren: an AMQP 0-9-1 broker that speaks the protocol the way RabbitMQ does,
//! built thread-per-core.
//!
//! # Layout (modules in the order data flows)
//! - [`net`]: listeners (one SO_REUSEPORT socket per shard) and socket buffers.
//! - [`protocol`]: frames, field tables, the method codec generated from the spec.
//! - [`shard`]: the per-core event loop, the SPSC rings between shards, timers.
//! - [`broker`]: connections, channels, exchanges, queues, consumers, definitions.
//! - [`store`]: on-disk state (data directory).
//!
//! See ARCHITECTURE.md for threads, rings and the path of a message.

pub mod amqp091;
pub mod config;
pub mod core;
pub mod net;
pub mod protocol;
pub mod shard;
pub mod store;

pub use config::Config;
pub use shard::{start, BrokerHandle};
