//! The AMQP 1.0 front end (RabbitMQ 4's native protocol), beside the 0-9-1
//! one (`amqp091`) and on the same core: a connection (`connection/`:
//! headers, SASL, open, the frame loop) holds sessions (`session/`: each a
//! channel to the core) which hold links: publishers route with the core's
//! `route`/`enqueue`, consumers are credit-paced core consumers. Addresses
//! are RabbitMQ 4's v2 (`address.rs`); messages cross into the core's
//! neutral form and back in `mapping.rs`.
//!
//! Everything in it runs on a shard's thread, with a `&mut ShardCtx`. It
//! imports the core and `protocol::amqp10`, never `amqp091` or `shard`.

pub mod address;
mod conn_info;
pub mod connection;
pub mod error;
pub mod management;
pub mod mapping;
pub mod session;
pub mod wire;
