//! cargo-fuzz target `frame`: see `warren::fuzz::targets::frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::frame(data));
