#![no_main]
//! See `alpool::fuzz::exclusions`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| alpool::fuzz::exclusions(data));
