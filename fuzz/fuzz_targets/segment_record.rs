//! cargo-fuzz target `segment_record`: see `warren::fuzz::targets::segment_record`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::segment_record(data));
