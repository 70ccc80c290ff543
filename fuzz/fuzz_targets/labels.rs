#![no_main]
//! See `alpool::fuzz::labels`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| alpool::fuzz::labels(data));
