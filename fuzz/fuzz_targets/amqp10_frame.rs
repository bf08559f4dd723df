//! cargo-fuzz target `amqp10_frame`: see `warren::fuzz::targets::amqp10_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::amqp10_frame(data));
