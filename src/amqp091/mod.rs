//! The AMQP 0-9-1 front end: RabbitMQ's `rabbit_reader` (`connection/`) and
//! `rabbit_channel` (`channel/`). It turns frames into calls on the core
//! (`crate::core`) and the core's answers, deliveries and errors into frames.
//! Nothing in the core knows this module exists.
//!
//! - `connection/`: frame loop, heartbeats, closing (`mod.rs`), channel 0
//!   (`handshake.rs`), what queues send back (`from_queues.rs`);
//! - `conn_info.rs`: what a connection knows that its channels read;
//! - `channel/`: one handler per method, named after it;
//! - `error.rs`: `AmqpError`, a reply code and RabbitMQ's text, and the
//!   rendering of the core's `CoreError`;
//! - `direct_reply.rs`: `amq.rabbitmq.reply-to`'s token and delivery.

pub mod channel;
pub mod conn_info;
pub mod connection;
pub mod direct_reply;
pub mod error;
