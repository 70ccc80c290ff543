//! # alpool: exact, streaming active-learning pool selection
//!
//! A pool is an N x C matrix of class probabilities (or logits) for N
//! unlabeled instances, stored as one or more `.npy` shards that are
//! memory-mapped and walked in chunks, so pools larger than RAM work. A
//! query strategy scores every row and the k most informative rows are
//! selected, exactly: the result equals a full sort under the canonical
//! scores defined in [`mod@score`], with ties going to the lower row index.
//!
//! One function to call: [`select()`] (and [`score()`]) over a [`Pool`] —
//! `.npy` files memory-mapped, or a slice or `ndarray` view borrowed
//! without a copy — on the CPU, the GPU, or whichever the library judges
//! faster ([`Device::Auto`]):
//!
//! ```
//! use alpool::{Device, InputForm, Job, Pool, ScoreSpec, Strategy};
//! # fn main() -> alpool::Result<()> {
//! // d1 = (0.9, 0.09, 0.01), d2 = (0.2, 0.5, 0.3): every strategy prefers d2.
//! let probs = vec![0.9f32, 0.09, 0.01, 0.2, 0.5, 0.3];
//! let pool = Pool::from_f32(&probs, 3)?;
//! let job = Job::new(ScoreSpec::new(Strategy::Margin), InputForm::probs(), 1);
//! let sel = alpool::select(&pool, &job, Device::Auto)?;
//! assert_eq!(sel.indices(), [1]);
//! // Files: Pool::open(&["shard-0.npy", "shard-1.npy"]); ndarray: Pool::from_array(a.view()).
//! # Ok(()) }
//! ```
//!
//! Layout: [`api`] is the front door, [`pool`] reads pools, [`mod@score`] defines the strategies,
//! [`mod@select`] keeps the top k exact, [`backend`] runs the work (rayon CPU,
//! wgpu GPU), [`batch`] the batch-aware strategies, `learner` the MLP (fused
//! f32 kernels, candle as the reference; feature `learner`), `al` the active-learning
//! loop, [`report`] writes results, [`mod@bench`] measures.

#[cfg(feature = "learner")]
pub mod al;
pub mod api;
pub mod backend;
pub mod batch;
pub mod bench;
pub mod error;
#[cfg(feature = "learner")]
pub mod features;
#[cfg(feature = "learner")]
pub mod learner;
pub mod part;
pub mod pool;
pub mod report;
pub mod score;
pub mod select;
#[cfg(feature = "workspace")]
pub mod workspace;

pub use api::{Backend, Outcome, Run, score, select, select_on, select_with};
pub use backend::{Device, Job};
pub use batch::{BatchJob, BatchStrategy, select_batch, select_batch_on};
pub use error::{Error, Result};
pub use pool::{Exclusions, Pool};
pub use score::{InputForm, LogBase, Query, ScoreSpec, Strategy};
pub use select::{Selected, Selection};
