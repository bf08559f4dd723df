//! AMQP 1.0 errors: a condition symbol and a description, RabbitMQ 4's
//! (`rabbit_amqp_session`, `rabbit_amqp_reader`), and how the core's refusals
//! become them. Where an error ends up (a detach, an end, a close, a rejected
//! outcome) is decided by whoever raises it.

use crate::core::error::CoreError;

/// The conditions warren raises (AMQP 1.0 2.8.15–2.8.18).
pub mod cond {
    pub const INTERNAL_ERROR: &str = "amqp:internal-error";
    pub const NOT_FOUND: &str = "amqp:not-found";
    pub const UNAUTHORIZED_ACCESS: &str = "amqp:unauthorized-access";
    pub const DECODE_ERROR: &str = "amqp:decode-error";
    pub const RESOURCE_LIMIT_EXCEEDED: &str = "amqp:resource-limit-exceeded";
    pub const NOT_ALLOWED: &str = "amqp:not-allowed";
    pub const INVALID_FIELD: &str = "amqp:invalid-field";
    pub const NOT_IMPLEMENTED: &str = "amqp:not-implemented";
    pub const RESOURCE_LOCKED: &str = "amqp:resource-locked";
    pub const PRECONDITION_FAILED: &str = "amqp:precondition-failed";
    pub const RESOURCE_DELETED: &str = "amqp:resource-deleted";
    pub const ILLEGAL_STATE: &str = "amqp:illegal-state";
    pub const FRAME_SIZE_TOO_SMALL: &str = "amqp:frame-size-too-small";
    pub const CONNECTION_FORCED: &str = "amqp:connection:forced";
    pub const FRAMING_ERROR: &str = "amqp:connection:framing-error";
    pub const WINDOW_VIOLATION: &str = "amqp:session:window-violation";
    pub const ERRANT_LINK: &str = "amqp:session:errant-link";
    pub const HANDLE_IN_USE: &str = "amqp:session:handle-in-use";
    pub const UNATTACHED_HANDLE: &str = "amqp:session:unattached-handle";
    pub const DETACH_FORCED: &str = "amqp:link:detach-forced";
    pub const MESSAGE_SIZE_EXCEEDED: &str = "amqp:link:message-size-exceeded";
    pub const STOLEN: &str = "amqp:link:stolen";
}

/// An error condition with RabbitMQ's description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amqp10Error {
    pub condition: &'static str,
    pub description: String,
}

impl Amqp10Error {
    pub fn new(condition: &'static str, description: impl Into<String>) -> Amqp10Error {
        Amqp10Error {
            condition,
            description: description.into(),
        }
    }
}

impl From<CoreError> for Amqp10Error {
    fn from(e: CoreError) -> Amqp10Error {
        let condition = match &e {
            CoreError::NotFound(_) => cond::NOT_FOUND,
            CoreError::AccessRefused(_) => cond::UNAUTHORIZED_ACCESS,
            CoreError::ResourceLocked(_) => cond::RESOURCE_LOCKED,
            CoreError::PreconditionFailed(_) => cond::PRECONDITION_FAILED,
            CoreError::NotImplemented(_) => cond::NOT_IMPLEMENTED,
            CoreError::Internal(_) => cond::INTERNAL_ERROR,
            CoreError::Unavailable(_) => cond::RESOURCE_LIMIT_EXCEEDED,
        };
        Amqp10Error::new(condition, e.detail())
    }
}
