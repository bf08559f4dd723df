//! cargo-fuzz target `stream_offsets`: see `warren::fuzz::stream_targets::stream_offsets`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::stream_targets::stream_offsets(data));
