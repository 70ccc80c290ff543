#![no_main]
//! See `alpool::fuzz::model`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| alpool::fuzz::model(data));
