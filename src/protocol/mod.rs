//! AMQP 0-9-1 wire protocol: frames, field tables, content properties and the
//! method codec generated at build time from `spec/amqp-rabbitmq-0.9.1.json`
//! (see `build.rs`); and, in [`amqp10`], the AMQP 1.0 codec generated from
//! the OASIS XML in `spec/amqp-1.0/` (see `build/amqp10.rs`).
//!
//! Decoding is zero-copy: every string is a [`bytes::Bytes`] slice of the
//! received payload. Encoders append to a caller-provided `Vec<u8>`.

pub mod amqp10;
pub mod constants;
pub mod frame;
pub mod methods;
pub mod properties;
pub mod publish_span;
pub mod reader;
pub mod table;

pub use frame::*;
pub use methods::Method;
pub use properties::BasicProperties;
pub use reader::DecodeError;
pub use table::{FieldTable, FieldValue};
