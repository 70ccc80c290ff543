#![no_main]
//! See `alpool::fuzz::server`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| alpool::fuzz::server(data));
