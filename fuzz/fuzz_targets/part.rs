#![no_main]
//! See `alpool::fuzz::part`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| alpool::fuzz::part(data));
