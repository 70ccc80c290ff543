#![no_main]
//! See `alpool::fuzz::init`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| alpool::fuzz::init(data));
