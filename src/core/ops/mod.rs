//! The core's operations on definitions, as every front end calls them:
//! AMQP 0-9-1 channel methods today, the HTTP API and AMQP 1.0 links next.
//! Each takes plain values (names as `String`s, arguments as a table) and
//! returns a [`CoreError`](crate::core::error::CoreError) that the front end
//! renders in its own protocol. Checks run in RabbitMQ's order, so the first
//! error a client sees is RabbitMQ's.
//!
//! - `exchange.rs`: exchange declare / delete / bind / unbind;
//! - `queue.rs`: queue lookup, declare, bind, unbind;
//! - `publish.rs`: routing a message and handing it to its queues;
//! - `equivalence.rs`: the redeclaration checks.

pub mod equivalence;
pub mod exchange;
pub mod publish;
pub mod queue;

use crate::core::access::UserAccess;
use crate::core::ids::VhostId;

/// Who asks: the connection's broker-wide id decides exclusive-queue
/// ownership, its user's rights in its vhost every permission check.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub conn_uid: u64,
    pub access: &'a UserAccess,
}

impl<'a> Caller<'a> {
    pub fn vhost(&self) -> VhostId {
        self.access.vhost
    }

    pub fn vhost_name(&self) -> &'a str {
        &self.access.vhost_name
    }
}
