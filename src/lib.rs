//! # alpool: exact, streaming active-learning pool selection
//!
//! A pool is an N x C matrix of class probabilities (or logits) for N
//! unlabeled instances, stored as one or more `.npy` shards that are read
//! in chunks, so pools larger than RAM work. A query strategy scores every
//! row, or picks a diverse batch, and the k most informative rows are
//! selected exactly: the result equals a full sort under the canonical
//! scores defined in [`mod@score`], with ties going to the lower row index.
//!
//! One door: [`select()`] takes the inputs a [`Query`] needs ([`Inputs`]:
//! a [`Pool`] of probabilities, embeddings, T [`Samples`] of the
//! probabilities, or a model with its feature files) and one [`Job`], runs
//! on the device the policy picks ([`Device::Auto`]) or the one asked for,
//! and says where it ran and why:
//!
//! ```
//! use alpool::{InputForm, Job, Pool, Run, Strategy};
//! # fn main() -> alpool::Result<()> {
//! // d1 = (0.9, 0.09, 0.01), d2 = (0.2, 0.5, 0.3): every strategy prefers d2.
//! let probs = vec![0.9f32, 0.09, 0.01, 0.2, 0.5, 0.3];
//! let pool = Pool::from_f32(&probs, 3)?;
//! let job = Job::new(Strategy::Margin, InputForm::probs(), 1);
//! let out = alpool::select(&pool, &job, &Run::default())?;
//! assert_eq!(out.selection.indices(), [1]);
//! // Files: Pool::open(&["shard-0.npy", "shard-1.npy"]); ndarray: Pool::from_array(a.view()).
//! # Ok(()) }
//! ```
//!
//! `docs/architecture.md` draws the layers; from the bottom: [`query`]
//! says what a query is, [`mod@score`] defines each score, [`pool`] reads
//! pools, [`mod@select`] keeps the top k exact, [`backend`] runs the
//! row-wise engines (rayon CPU, wgpu GPU), [`mod@batch`] the batch-aware
//! ones, `disagree` the disagreement strategies over T samples, `learner`
//! the MLP and `features` selection straight from features
//! (feature `learner`), [`api`] is the door, `al` the active-learning loop
//! and `workspace` batch jobs with people.

#[cfg(feature = "learner")]
pub mod al;
pub mod api;
pub mod atomic;
pub mod backend;
pub mod batch;
pub mod bench;
pub mod coldstart;
#[cfg(feature = "learner")]
pub mod compare;
mod disagree;
pub mod error;
#[cfg(feature = "learner")]
pub mod features;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;
mod job;
#[cfg(feature = "learner")]
pub mod learner;
mod lines;
mod multilabel;
pub mod part;
pub mod pool;
pub mod query;
mod regression;
pub mod report;
mod rng;
pub mod score;
pub mod select;
#[cfg(feature = "learner")]
pub mod stats;
#[cfg(feature = "workspace")]
pub mod workspace;

pub use api::{Device, Inputs, Outcome, Run, score, score_each, select};
pub use backend::{Progress, Silent};
pub use error::{Error, Result};
pub use job::{Job, Targets};
pub use pool::{Exclusions, Pool};
pub use pool::{SampleLayout, Samples};
pub use query::{
    BatchStrategy, ColdStart, Disagreement, InputForm, LogBase, Method, MultiLabel, Query,
    Regression, RegressionInput, Stochastic, StochasticKind, Strategy,
};
pub use select::{Selected, Selection};
