//! Peak-heap tests: each measures its allocations with the counting
//! allocator, so they share one binary with nothing else in it and run one
//! at a time (`alone`): another test's allocations would count as theirs.
// Tests read best whole; the 80-line limit is for the library.
#![allow(clippy::too_many_lines)]

mod dataset;
mod disagree;
mod fused;
#[path = "../suite/rng.rs"]
mod rng;
mod scaling;
mod stochastic;
mod stream;

use std::sync::{Mutex, MutexGuard};

#[global_allocator]
static ALLOC: alpool::bench::CountingAlloc = alpool::bench::CountingAlloc;

/// Held for the whole of each test: the harness runs tests on parallel
/// threads, and the counter is process-wide.
fn alone() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one may still measure.
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}
