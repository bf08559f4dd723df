//! cargo-fuzz target `table`: see `warren::fuzz::targets::table`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::table(data));
