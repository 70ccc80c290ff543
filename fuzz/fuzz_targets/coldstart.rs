#![no_main]
//! See `alpool::fuzz::coldstart`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| alpool::fuzz::coldstart(data));
