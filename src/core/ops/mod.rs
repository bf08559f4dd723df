//! The core's operations on definitions, as every front end calls them:
//! AMQP 0-9-1 channel methods today, the HTTP API and AMQP 1.0 links next.
//! Each takes plain values (names as `String`s, arguments as a table) and
//! returns a [`CoreError`](crate::core::error::CoreError) that the front end
//! renders in its own protocol. Checks run in RabbitMQ's order, so the first
//! error a client sees is RabbitMQ's.
//!
//! - `exchange.rs`: exchange declare / delete / bind / unbind;
//! - `queue.rs`: queue lookup, declare, bind, unbind;
//! - `equivalence.rs`: the redeclaration checks.

pub mod equivalence;
pub mod exchange;
pub mod queue;

/// Who asks. The connection's broker-wide id decides exclusive-queue
/// ownership; the vhost and the user join it with multi-tenancy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub conn_uid: u64,
}
