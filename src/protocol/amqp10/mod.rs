//! AMQP 1.0 wire protocol (OASIS AMQP 1.0): the type system, the described
//! types generated from the spec's XML, frames and the message format.
//!
//! # Layout
//! - [`value`]: [`Value`], the type system, with [`Str`] (UTF-8) and
//!   [`Symbol`] (ASCII) over `Bytes`, and [`Fields`], the map of typed fields.
//! - [`decode`]: [`Decoder`], a zero-copy cursor with bounded depth and
//!   allocation, reading values of any type.
//! - [`typed`]: the [`Decode`] trait, the typed readers, and the
//!   [`ListReader`] the generated types read their fields with.
//! - [`encode`]: the [`Encode`] trait and `put_*` writers; smallest
//!   encodings, compounds built in place in the caller's `Vec<u8>`.
//! - [`types`]: the code `build/amqp10.rs` generates from
//!   `spec/amqp-1.0/*.xml`: a struct per composite type ([`Open`] ...
//!   [`Close`], [`Source`], [`Target`], [`Header`], [`Properties`], the SASL
//!   frames, the delivery states, the transaction types), the archetype
//!   enums ([`Performative`], [`SaslFrame`], [`DeliveryState`],
//!   [`Outcome`], ...), the choices and the [`condition`] constants.
//! - [`frame`]: frame header, protocol headers, [`check_frame`] (no
//!   allocation), [`read_frame`] and the frame writers.
//! - [`message`]: [`Sections::parse`], the message's sections as slices of
//!   the transfer payload, and the section writers.
//! - [`error`]: [`DecodeError`], with the AMQP condition to report.
//!
//! Decoding is zero-copy: every string, symbol and binary is a slice of the
//! frame it came from. Decoding a transfer with no delivery state allocates
//! nothing; nor does encoding a transfer, header, properties and data into a
//! `Vec` with room.

pub mod decode;
pub mod encode;
pub mod error;
pub mod frame;
pub mod message;
pub mod typed;
pub mod types;
pub mod value;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use decode::{Decoder, MAX_DEPTH};
/// The encoding trait under the name the session layer was promised.
pub use encode::Encode as Encoder;
pub use encode::{Encode, SymbolRef};
pub use error::DecodeError;
pub use frame::{
    check_frame, read_frame, write_frame, write_heartbeat, write_sasl_frame, write_transfer, Frame,
    FrameBody, FrameError, FrameKind, AMQP_HEADER, FRAME_HEADER_LEN, SASL_HEADER,
};
pub use message::{
    begin_map_section, write_amqp_sequence, write_amqp_value, write_application_properties,
    write_data, write_delivery_annotations, write_footer, write_header, write_message_annotations,
    write_properties, write_section_raw, Body, DataSections, MapWriter, RawMap, RawValue, Sections,
};
pub use typed::{Ctor, Decode, ListReader};
pub use types::*;
pub use value::{Fields, Str, Symbol, Value};
