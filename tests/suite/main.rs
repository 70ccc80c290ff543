//! The integration tests, one module per subject, in one binary: a release
//! binary per file linked the whole library two dozen times over. The
//! peak-heap tests have their own binary (`tests/memory`), since they count
//! every allocation in the process.
// Tests read best whole; the 80-line limit is for the library.
#![allow(clippy::too_many_lines)]

mod common;
mod rng;

mod al;
mod api;
mod batch;
mod batchbald;
mod cli;
mod coldstart;
mod compare;
mod disagree;
mod docs;
mod exactness;
mod fused;
mod fuzz_regressions;
mod gpu;
mod hostile;
mod layers;
mod learner;
mod merge;
mod multilabel;
mod read_path;
mod regression;
mod scaling;
mod stochastic;
mod stream;
mod workspace;
mod workspace_regression;
