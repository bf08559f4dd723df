//! cargo-fuzz target `defs_log`: see `warren::fuzz::targets::defs_log`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::defs_log(data));
