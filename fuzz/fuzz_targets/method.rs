//! cargo-fuzz target `method`: see `warren::fuzz::targets::method`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::method(data));
