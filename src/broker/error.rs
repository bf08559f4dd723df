//! AMQP errors as RabbitMQ reports them: a reply code plus text that starts with
//! the code's name (`NOT_FOUND - no queue 'x' in vhost '/'`). Clients match the
//! text prefix, so the wording follows RabbitMQ's.

use crate::protocol::constants as c;

/// An error that closes a channel (4xx) or the connection (5xx).
#[derive(Clone, Debug, PartialEq)]
pub struct AmqpError {
    pub code: u16,
    pub text: String,
}

impl AmqpError {
    pub fn new(code: u16, detail: impl std::fmt::Display) -> AmqpError {
        AmqpError {
            code,
            text: format!("{} - {}", c::reply_name(code), detail),
        }
    }
    pub fn not_found(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::NOT_FOUND, detail)
    }
    pub fn access_refused(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::ACCESS_REFUSED, detail)
    }
    pub fn precondition(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::PRECONDITION_FAILED, detail)
    }
    pub fn resource_locked(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::RESOURCE_LOCKED, detail)
    }
    pub fn not_implemented(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::NOT_IMPLEMENTED, detail)
    }
    pub fn command_invalid(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::COMMAND_INVALID, detail)
    }
    pub fn not_allowed(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::NOT_ALLOWED, detail)
    }
    pub fn channel_error(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::CHANNEL_ERROR, detail)
    }
    pub fn unexpected_frame(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::UNEXPECTED_FRAME, detail)
    }
    pub fn frame_error(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::FRAME_ERROR, detail)
    }
    pub fn syntax_error(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::SYNTAX_ERROR, detail)
    }
    pub fn internal(detail: impl std::fmt::Display) -> AmqpError {
        Self::new(c::INTERNAL_ERROR, detail)
    }

    /// Codes below 500 close only the channel; the rest close the connection.
    pub fn is_connection_error(&self) -> bool {
        self.code >= 500 || self.code == c::CONNECTION_FORCED
    }

    /// `no queue 'x' in vhost '/'` — RabbitMQ's resource naming in error texts.
    pub fn no_queue(name: &str) -> AmqpError {
        Self::not_found(format!("no queue '{}' in vhost '/'", name))
    }
    pub fn no_exchange(name: &str) -> AmqpError {
        Self::not_found(format!("no exchange '{}' in vhost '/'", name))
    }
    pub fn queue_locked(name: &str) -> AmqpError {
        Self::resource_locked(format!(
            "cannot obtain exclusive access to locked queue '{}' in vhost '/'. It could be originally \
             declared on another connection or the exclusive property value does not match that of \
             the original declaration.",
            name
        ))
    }
}

pub type AmqpResult<T> = Result<T, AmqpError>;
