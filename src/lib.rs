//! # alpool: exact, streaming active-learning pool selection
//!
//! A pool is an N x C matrix of class probabilities (or logits) for N
//! unlabeled instances, stored as one or more `.npy` shards that are
//! memory-mapped and walked in chunks, so pools larger than RAM work. A
//! query strategy scores every row and the k most informative rows are
//! selected, exactly: the result equals a full sort under the canonical
//! scores defined in [`score`], with ties going to the lower row index.
//!
//! ```
//! use alpool::{Job, Pool, ScoreSpec, Strategy, InputForm, backend::Silent};
//! # fn main() -> alpool::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("pool.npy");
//! // d1 = (0.9, 0.09, 0.01), d2 = (0.2, 0.5, 0.3): every strategy prefers d2.
//! alpool::pool::npy::save(&path, &[2, 3], &[0.9f32, 0.09, 0.01, 0.2, 0.5, 0.3])?;
//! let pool = Pool::open(&[&path])?;
//! let job = Job::new(ScoreSpec::new(Strategy::Margin), InputForm::probs(false), 1);
//! let sel = alpool::backend::cpu::select(&pool, &job, &Silent)?;
//! assert_eq!(sel.indices(), [1]);
//! assert!((sel.entries[0].score - 0.2).abs() < 1e-7);
//! # Ok(()) }
//! ```
//!
//! Layout: [`pool`] reads pools, [`score`] defines the strategies,
//! [`select`] keeps the top k exact, [`backend`] runs the work (rayon CPU,
//! wgpu GPU), [`learner`] is the candle MLP, [`al`] the active-learning
//! loop, [`report`] writes results, [`bench`] measures.

pub mod al;
pub mod backend;
pub mod bench;
pub mod error;
pub mod learner;
pub mod pool;
pub mod report;
pub mod score;
pub mod select;
pub mod workspace;

pub use backend::{Device, Job};
pub use error::{Error, Result};
pub use pool::{Exclusions, Pool};
pub use score::{InputForm, LogBase, ScoreSpec, Strategy};
pub use select::{Selected, Selection};
