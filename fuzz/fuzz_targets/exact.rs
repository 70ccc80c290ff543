#![no_main]
//! See `alpool::fuzz::exact`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| alpool::fuzz::exact(data));
