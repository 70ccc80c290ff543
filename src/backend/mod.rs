//! Backends that score a pool and select from it. Every backend takes the
//! same [`Job`] and must return the same [`crate::Selection`] (see `select` for the
//! exactness rule that makes this possible).

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
/// Without the `gpu` feature: the same names, and a [`gpu::Gpu`] that
/// cannot be opened (so every GPU branch is statically dead).
#[cfg(not(feature = "gpu"))]
#[path = "no_gpu.rs"]
pub mod gpu;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::pool::{Exclusions, Pool};
use crate::score::{self, InputForm, Ranked, ScoreSpec};

/// Bytes of pool data per unit of parallel work when `chunk_rows` is 0
/// (auto): big enough to amortize scheduling, small enough that a chunk and
/// its scratch stay in a core's L2 cache between the two passes over it.
pub const CHUNK_BYTES: u64 = 160 << 10;

/// What to compute: the library's validated view of a `select` or `score`
/// command.
#[derive(Clone, Debug)]
pub struct Job {
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
}

impl Job {
    /// A job for the `k` best rows, no exclusions, automatic chunking.
    pub fn new(spec: ScoreSpec, input: InputForm, k: usize) -> Self {
        Job {
            spec,
            input,
            k,
            exclusions: Exclusions::default(),
            chunk_rows: 0,
        }
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
                strategy: self.spec.strategy.name(),
                classes: pool.classes(),
            });
        }
        match self.input {
            InputForm::Logits { temperature }
                if !(temperature.is_finite() && temperature > 0.0) =>
            {
                Err(Error::Config(format!(
                    "temperature must be a positive finite number, got {temperature}"
                )))
            }
            InputForm::Probs { sum_tol, .. } if !(0.0..1.0).contains(&sum_tol) => {
                Err(Error::Config(format!(
                    "the row-sum tolerance must be in [0, 1), got {sum_tol}"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Where the scoring runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Device {
    /// The GPU when one is found and the pool is large enough to gain.
    #[default]
    Auto,
    /// The rayon CPU path.
    Cpu,
    /// The wgpu path; an error if no adapter opens.
    Gpu,
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

/// Canonical re-scoring of single rows, read back from the pool: the refine
/// half of filter-and-refine, shared by all backends.
pub struct Refiner<'a> {
    pool: &'a Pool<'a>,
    job: &'a Job,
    row: Vec<f32>,
    probs: Vec<f64>,
}

impl<'a> Refiner<'a> {
    /// A refiner of `pool`'s rows under `job`.
    pub fn new(pool: &'a Pool<'a>, job: &'a Job) -> Self {
        Refiner {
            pool,
            job,
            row: vec![0.0; pool.classes()],
            probs: vec![0.0; pool.classes()],
        }
    }

    /// The canonical ranking entry of global row `index`, which a backend
    /// has already validated.
    pub fn ranked(&mut self, index: u64) -> Result<Ranked> {
        self.pool.row_f32(index, &mut self.row)?;
        canonical_ranked(self.job, &self.row, index, &mut self.probs).map_err(|problem| {
            let (shard, local) = self.pool.locate(index);
            Error::BadRow {
                path: shard.path().into(),
                row: local,
                global: index,
                problem,
            }
        })
    }
}

/// The canonical ranking entry of a stored row.
#[inline]
pub fn canonical_ranked<T: score::input::Stored>(
    job: &Job,
    row: &[T],
    index: u64,
    probs: &mut [f64],
) -> std::result::Result<Ranked, score::RowProblem> {
    score::input::canonical_probs(&job.input, row, probs)?;
    let s = score::canonical_score(&job.spec, probs, index);
    Ok(Ranked {
        priority: job.spec.strategy.priority(s),
        index,
    })
}

/// One adapter as `alpool devices` lists it.
#[derive(Clone, Debug)]
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
    /// Largest |GPU f32 priority − canonical priority| among them.
    pub max_score_diff: f64,
}
