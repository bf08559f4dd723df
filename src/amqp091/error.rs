//! AMQP errors as RabbitMQ reports them: a reply code plus text that starts with
//! the code's name (`NOT_FOUND - no queue 'x' in vhost '/'`). Clients match the
//! text prefix, so the wording follows RabbitMQ's.

use crate::core::error::CoreError;
use crate::core::sender_selected::BadHeaderType;
use crate::protocol::constants as c;

/// An error that closes a channel (4xx) or the connection (5xx).
#[derive(Clone, Debug, PartialEq)]
pub struct AmqpError {
    pub code: u16,
    pub text: String,
}

impl AmqpError {
    pub fn no_queue(vhost: &str, name: &str) -> AmqpError {
        CoreError::no_queue(vhost, name).into()
    }
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

    /// The spec's hard errors (320, 402, 5xx) close the connection; soft
    /// errors close only the channel.
    pub fn is_connection_error(&self) -> bool {
        c::is_hard_error(self.code)
    }
}

/// The core's refusals in 0-9-1 words: the kind picks the reply code, and the
/// text is the code's name, " - ", and the core's detail (what RabbitMQ's
/// `rabbit_binary_generator:map_exception` does with an `amqp_error`).
impl From<CoreError> for AmqpError {
    fn from(e: CoreError) -> AmqpError {
        let code = match &e {
            CoreError::NotFound(_) => c::NOT_FOUND,
            CoreError::AccessRefused(_) => c::ACCESS_REFUSED,
            CoreError::ResourceLocked(_) => c::RESOURCE_LOCKED,
            CoreError::PreconditionFailed(_) => c::PRECONDITION_FAILED,
            CoreError::NotImplemented(_) => c::NOT_IMPLEMENTED,
            CoreError::Internal(_) => c::INTERNAL_ERROR,
            // Soft: the channel closes, the connection and its other
            // channels go on, and the client may retry once space is back.
            CoreError::Unavailable(_) => c::PRECONDITION_FAILED,
        };
        AmqpError::new(code, e.detail())
    }
}

impl From<BadHeaderType> for AmqpError {
    fn from(e: BadHeaderType) -> AmqpError {
        CoreError::from(e).into()
    }
}

pub type AmqpResult<T> = Result<T, AmqpError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The 0-9-1 text of every core error kind is the code's name and the
    /// core's detail, as the core's own `Display` (used in its tests) says.
    #[test]
    fn core_errors_render_as_rabbitmq_texts() {
        let d = || "detail".to_string();
        for (e, code) in [
            (CoreError::NotFound(d()), 404),
            (CoreError::AccessRefused(d()), 403),
            (CoreError::ResourceLocked(d()), 405),
            (CoreError::PreconditionFailed(d()), 406),
            (CoreError::NotImplemented(d()), 540),
            (CoreError::Internal(d()), 541),
            (CoreError::Unavailable(d()), 406),
        ] {
            let a = AmqpError::from(e.clone());
            assert_eq!(a.code, code);
            assert_eq!(a.text, e.to_string());
        }
        assert_eq!(
            AmqpError::no_queue("/", "q").text,
            "NOT_FOUND - no queue 'q' in vhost '/'"
        );
    }
}
