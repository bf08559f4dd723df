//! What the core refuses, in no protocol's words. RabbitMQ's core does the
//! same: it raises `protocol_error(not_found, "no queue ~s", ...)`, and each
//! front end turns the kind into its own code (0-9-1: 404, 1.0:
//! `amqp:not-found`, HTTP: 404). The detail is RabbitMQ's text after the
//! code name; the 0-9-1 rendering (`amqp091::error`) prefixes the name, so
//! `NOT_FOUND - no queue 'x' in vhost '/'` stays byte for byte what clients
//! match.

use super::vhost::resource;

/// An operation the core refused, by kind, with RabbitMQ's explanation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreError {
    /// A queue, exchange or binding end does not exist (0-9-1: 404).
    NotFound(String),
    /// The name or object may not be used this way (0-9-1: 403).
    AccessRefused(String),
    /// Another connection owns the exclusive queue (0-9-1: 405).
    ResourceLocked(String),
    /// Inequivalent redeclaration, bad argument, queue in use (0-9-1: 406).
    PreconditionFailed(String),
    /// A feature warren does not have (0-9-1: 540).
    NotImplemented(String),
    /// The broker failed, not the request (0-9-1: 541).
    Internal(String),
    /// The change could not be made durable (the definitions log cannot be
    /// written: disk full, I/O error), so it was not made; it may succeed
    /// once the disk alarm clears. A channel error in 0-9-1 (406), 503 in
    /// the HTTP API.
    Unavailable(String),
}

impl CoreError {
    pub fn precondition(detail: impl std::fmt::Display) -> CoreError {
        CoreError::PreconditionFailed(detail.to_string())
    }
    pub fn access_refused(detail: impl std::fmt::Display) -> CoreError {
        CoreError::AccessRefused(detail.to_string())
    }
    pub fn internal(detail: impl std::fmt::Display) -> CoreError {
        CoreError::Internal(detail.to_string())
    }

    /// `no queue 'x' in vhost '/'`.
    pub fn no_queue(vhost: &str, name: &str) -> CoreError {
        CoreError::NotFound(format!("no {}", resource(vhost, "queue", name)))
    }
    /// `no exchange 'x' in vhost '/'`.
    pub fn no_exchange(vhost: &str, name: &str) -> CoreError {
        CoreError::NotFound(format!("no {}", resource(vhost, "exchange", name)))
    }
    /// An exclusive queue used from a connection that does not own it.
    pub fn queue_locked(vhost: &str, name: &str) -> CoreError {
        CoreError::ResourceLocked(format!(
            "cannot obtain exclusive access to locked {}. It could be originally \
             declared on another connection or the exclusive property value does not match that of \
             the original declaration.",
            resource(vhost, "queue", name)
        ))
    }

    /// RabbitMQ's explanation, without any protocol's code name.
    pub fn detail(&self) -> &str {
        match self {
            CoreError::NotFound(d)
            | CoreError::AccessRefused(d)
            | CoreError::ResourceLocked(d)
            | CoreError::PreconditionFailed(d)
            | CoreError::NotImplemented(d)
            | CoreError::Internal(d)
            | CoreError::Unavailable(d) => d,
        }
    }
}

/// For logs and tests: RabbitMQ's name of the kind (its `amqp_error` atom,
/// upper-cased), " - ", the detail.
impl std::fmt::Display for CoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            CoreError::NotFound(_) => "NOT_FOUND",
            CoreError::AccessRefused(_) => "ACCESS_REFUSED",
            CoreError::ResourceLocked(_) => "RESOURCE_LOCKED",
            CoreError::PreconditionFailed(_) => "PRECONDITION_FAILED",
            CoreError::NotImplemented(_) => "NOT_IMPLEMENTED",
            CoreError::Internal(_) => "INTERNAL_ERROR",
            CoreError::Unavailable(_) => "PRECONDITION_FAILED",
        };
        write!(f, "{} - {}", kind, self.detail())
    }
}

pub type CoreResult<T> = Result<T, CoreError>;
