//! AMQP 0-9-1 wire protocol: frames, field tables, content properties and the
//! method codec generated at build time from `spec/amqp-rabbitmq-0.9.1.json`
//! (see `build.rs`).
//!
//! Decoding is zero-copy: every string is a [`bytes::Bytes`] slice of the
//! received payload. Encoders append to a caller-provided `Vec<u8>`.

pub mod constants;
pub mod frame;
pub mod methods;
pub mod properties;
pub mod reader;
pub mod table;

pub use frame::*;
pub use methods::Method;
pub use properties::BasicProperties;
pub use reader::DecodeError;
pub use table::{FieldTable, FieldValue};
