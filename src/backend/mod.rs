//! The row-wise engines: score a pool and keep its exact top k, on the
//! rayon CPU path or the wgpu GPU path. Every backend takes the same job
//! and returns the same [`Selection`] (see [`mod@crate::select`] for the
//! exactness rule that makes this possible).

pub(crate) mod chunked;
pub(crate) mod cpu;
pub use cpu::kernel_variant;
#[cfg(feature = "gpu")]
pub mod gpu;
/// Without the `gpu` feature: the same names, and a [`gpu::Gpu`] that
/// cannot be opened (so every GPU branch is statically dead).
#[cfg(not(feature = "gpu"))]
#[path = "no_gpu.rs"]
pub mod gpu;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::{Exclusions, Pool};
use crate::query::{InputForm, Query, Stochastic};
use crate::score::stochastic::RowKeys;
use crate::score::{self, Ranked, ScoreSpec};
use crate::select::Selection;

/// Bytes of pool data per unit of parallel work when `chunk_rows` is 0
/// (auto): big enough to amortize scheduling, small enough that a chunk and
/// its scratch stay in a core's L2 cache between the two passes over it.
pub const CHUNK_BYTES: u64 = 160 << 10;

/// A row-wise job as the engines read it: the public [`Job`] with its
/// strategy's score defined ([`ScoreSpec`]).
#[derive(Clone, Debug)]
pub(crate) struct RowJob {
    /// The strategy, its log base and seed.
    pub spec: ScoreSpec,
    /// What the rows hold and how they are validated.
    pub input: InputForm,
    /// Rows to select; `usize::MAX` (or anything ≥ N) ranks the whole pool.
    pub k: usize,
    /// Rows never selected (already labeled).
    pub exclusions: Exclusions,
    /// Rows per unit of work, 0 = auto; results never depend on it.
    pub chunk_rows: u64,
    /// A stochastic batch's keys in place of the plain ranking.
    pub stochastic: Option<Stochastic>,
}

impl RowJob {
    /// The row-wise view of `job`; an error for a batch-aware query.
    pub fn of(job: &Job) -> Result<RowJob> {
        let Query::Score(strategy) = job.query else {
            return Err(Error::Config(format!(
                "{} picks a batch rather than scoring each row; it has no per-row scores",
                job.query
            )));
        };
        Ok(RowJob {
            spec: ScoreSpec {
                strategy,
                log_base: job.log_base,
                seed: job.seed,
            },
            input: job.input,
            k: job.k,
            exclusions: job.exclusions.clone(),
            chunk_rows: job.chunk_rows,
            stochastic: job.stochastic,
        })
    }

    /// A job for the `k` best rows, no exclusions, automatic chunking.
    pub fn new(spec: ScoreSpec, input: InputForm, k: usize) -> Self {
        RowJob {
            spec,
            input,
            k,
            exclusions: Exclusions::default(),
            chunk_rows: 0,
            stochastic: None,
        }
    }

    /// The keys the rows are ranked by: the plain ranking, or a stochastic
    /// batch's that need only the row (not softrank's).
    pub fn keys(&self) -> Result<RowKeys> {
        RowKeys::new(
            Query::Score(self.spec.strategy),
            self.stochastic,
            self.spec.seed,
        )
        .ok_or_else(softrank_needs_the_pool)
    }

    /// The rows per chunk for `pool`.
    pub fn rows_per_chunk(&self, pool: &Pool) -> u64 {
        if self.chunk_rows > 0 {
            return self.chunk_rows;
        }
        (CHUNK_BYTES / (pool.classes() as u64 * 4).max(1)).clamp(64, 1 << 20)
    }

    /// Checks the job against the pool before any row is read.
    pub fn check(&self, pool: &Pool) -> Result<()> {
        let min = self.spec.strategy.min_classes();
        if pool.classes() < min {
            return Err(Error::TooFewClasses {
                path: pool.path().into(),
                strategy: self.spec.strategy.name(),
                classes: pool.classes(),
            });
        }
        self.input.check().map_err(Error::Config)
    }
}

/// Softrank's key is a row's rank in the whole pool: only the ranking of
/// every canonical score draws it (`api::stochastic`).
pub(crate) fn softrank_needs_the_pool() -> Error {
    Error::Config(
        "softrank ranks the whole pool before it draws: it runs on the CPU (--device cpu or auto)"
            .into(),
    )
}

/// A device already opened: the CPU, or a GPU kept across many selections
/// (the loop's rounds), so it is opened once.
#[derive(Clone, Copy)]
pub enum Backend<'g> {
    /// The rayon CPU path.
    Cpu,
    /// An opened wgpu device.
    Gpu(&'g gpu::Gpu),
}

/// The exact top k of `pool` under `job` on `backend`, with the GPU's
/// phases when it ran there.
pub(crate) fn select_on(
    backend: Backend,
    pool: &Pool,
    job: &RowJob,
    progress: &dyn Progress,
) -> Result<(Selection, Option<Phases>)> {
    match backend {
        Backend::Cpu if job.stochastic.is_some() => {
            Ok((cpu::select_drawn(pool, job, job.keys()?, progress)?, None))
        }
        Backend::Cpu => Ok((cpu::select(pool, job, progress)?, None)),
        Backend::Gpu(g) => gpu::select(g, pool, job, progress).map(|(s, p)| (s, Some(p))),
    }
}

/// Receives progress, and may ask the work to stop: backends check
/// [`Progress::cancelled`] between chunks and then return
/// [`Error::Cancelled`]. The unit is the work's own: bytes of pool data
/// scored for a selection, items stored for a workspace's `init`.
pub trait Progress: Sync {
    /// `bytes` more of the pool were read and scored (or items stored).
    fn advance(&self, _bytes: u64) {}
    /// Whether the caller wants the work to stop.
    fn cancelled(&self) -> bool {
        false
    }
}

/// No progress reporting.
pub struct Silent;
impl Progress for Silent {}

/// The canonical ranking entry of a stored row.
#[inline]
pub(crate) fn canonical_ranked<T: score::input::Stored>(
    job: &RowJob,
    row: &[T],
    index: u64,
    probs: &mut [f64],
) -> std::result::Result<Ranked, crate::query::RowProblem> {
    score::input::canonical_probs(&job.input, row, probs)?;
    let s = score::canonical_score(&job.spec, probs, index);
    Ok(Ranked {
        priority: job.spec.strategy.priority(s),
        index,
    })
}

/// One adapter as `alpool devices` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSummary {
    /// The adapter's name.
    pub name: String,
    /// Vulkan, Metal, DX12 or GL.
    pub backend: String,
    /// Discrete, integrated, virtual or CPU.
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// The largest storage buffer one binding may hold.
    pub max_storage_buffer_binding_size: u64,
    /// The largest buffer.
    pub max_buffer_size: u64,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Whether the adapter is itself a CPU (lavapipe, llvmpipe).
    pub is_cpu: bool,
}

/// Where a GPU selection spent its time, and what it sent back.
#[derive(Clone, Debug, Default)]
pub struct Phases {
    /// Converting and copying rows to the device.
    pub upload: Duration,
    /// The model's layers (selecting from features).
    pub forward: Duration,
    /// The scoring kernel.
    pub score: Duration,
    /// The radix select and compaction.
    pub topk: Duration,
    /// Copying the candidates back.
    pub readback: Duration,
    /// Re-scoring the candidates canonically.
    pub refine: Duration,
    /// Chunks the pool was split into.
    pub chunks: u64,
    /// Rows sent back to the host and re-scored canonically.
    pub candidates: u64,
    /// Largest |GPU f32 key − canonical key| among them: the key is the
    /// priority (a stochastic batch's key under one), and where rows carry
    /// intervals, the GPU's is the interval's upper end.
    pub max_score_diff: f64,
}
