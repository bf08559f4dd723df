//! cargo-fuzz target `stream_scan`: see `warren::fuzz::stream_targets::stream_scan`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::stream_targets::stream_scan(data));
