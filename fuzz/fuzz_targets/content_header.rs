//! cargo-fuzz target `content_header`: see `warren::fuzz::targets::content_header`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::content_header(data));
