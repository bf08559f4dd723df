//! cargo-fuzz target `amqp10_message`: see `warren::fuzz::targets::amqp10_message`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren::fuzz::targets::amqp10_message(data));
