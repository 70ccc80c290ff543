#![no_main]
//! See `alpool::fuzz::npy`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| alpool::fuzz::npy(data));
