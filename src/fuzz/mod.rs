//! Fuzzing entry points: one function per target, each taking arbitrary bytes
//! and driving the real decoders the way the broker does. They are called by
//! the cargo-fuzz crate in `fuzz/` (libFuzzer, nightly) and by
//! `tests/fuzz_smoke.rs` (stable, a time-boxed run of [`mutate`]); the live
//! fuzzer of `warren-loadgen fuzz` uses [`mutate`] too.
//!
//! A target panics only when it finds a bug: a decoder that panics, or two
//! decoders of the same bytes that disagree (a cheap check and the full
//! decode, a raw accessor and the decoded struct, a decode and the re-decode
//! of its encoding). Every error a decoder returns is an expected outcome.
//!
//! - [`targets`]: the targets and [`TARGETS`], their names.
//! - [`mutate`]: a small deterministic mutator (seeded RNG).
//! - [`seeds`]: valid inputs for every target, made by the codec's and the
//!   store's own writers.
//!
//! Not part of the broker's API (hidden from the docs).
#![doc(hidden)]

pub mod mutate;
pub mod seeds;
pub mod stream_targets;
pub mod targets;

/// A fuzz target: bytes in, panic on a bug.
pub type Target = fn(&[u8]);

/// Every target, by name (the names of `fuzz/fuzz_targets/*.rs`, of the seed
/// and regression folders).
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", targets::frame),
    ("method", targets::method),
    ("table", targets::table),
    ("content_header", targets::content_header),
    ("defs_log", targets::defs_log),
    ("segment_record", targets::segment_record),
    ("segment_scan", targets::segment_scan),
    ("amqp10_frame", targets::amqp10_frame),
    ("amqp10_value", targets::amqp10_value),
    ("amqp10_message", targets::amqp10_message),
    ("stream_scan", stream_targets::stream_scan),
    ("stream_offsets", stream_targets::stream_offsets),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
