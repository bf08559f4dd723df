//! cargo-fuzz target `amqp10_value`: see `warren::fuzz::targets::amqp10_value`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::amqp10_value(data));
