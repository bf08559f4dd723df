//! cargo-fuzz target `segment_scan`: see `warren::fuzz::targets::segment_scan`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::segment_scan(data));
