//! The CPU backend: rayon over chunks of rows, a fused validate-and-score
//! pass per chunk, and a partial top-k per worker merged at the end.
//!
//! Plain probability input takes the fast kernels of [`crate::score::fast`]
//! (exact for least confidence, margin, ratio and random; bounded for
//! entropy, then refined). Entropy first skips, with a proven bound, the
//! rows whose largest value is too high for them to reach the current k-th
//! best ([`crate::score::fast::entropy_max_cutoff`]); only the rest pay for
//! logarithms. Logits and renormalized input are scored canonically row by
//! row. On x86-64 the kernels are compiled for the baseline, AVX2+FMA and
//! AVX-512, and picked at run time; Rust never fuses a multiply and an add
//! by itself, so all give bit-identical results.
//!
//! This file is the driver: chunks, workers, the shared threshold and the
//! merge. The kernels are in `kernels` (portable, one copy per instruction
//! set) and `x86` (the 8- and 16-row SIMD paths); `isa` detects the CPU's
//! vector extensions once for all of them.

mod isa;
mod kernels;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::{Progress, RowJob};
use crate::error::{Error, Result};
use crate::pool::npy::DType;
use crate::pool::{Pool, Shard};
use crate::query::RowProblem;
use crate::score::stochastic::{RowKeys, uniform};
use crate::score::{Ranked, max_priority};
use crate::select::{Keyed, Selection, SharedFloor, TopK};
pub(crate) use isa::{Isa, per_isa};
pub use kernels::kernel_variant;
use kernels::{refine, score_rows, score_rows_exact};

/// Receives every valid row of a chunk: local row, the row itself, its
/// approximate priority and the error bound (0 = canonical).
pub(super) trait Emit {
    fn emit(&mut self, i: usize, row: &[f32], priority: f64, bound: f64);
    /// Rows whose priority + bound is below this are ignored by `emit`, so
    /// a kernel may skip them.
    fn threshold(&self) -> f64;
}

/// Buffers a worker reuses from chunk to chunk.
#[derive(Default)]
struct Scratch {
    rows: RowBufs,
    terms: Vec<f32>,
    probs: Vec<f64>,
    scores: Vec<f64>,
}

/// Where a chunk's rows land when they cannot be borrowed from memory.
#[derive(Default)]
struct RowBufs {
    /// float32 rows read from a file, or widened from float16.
    decoded: Vec<f32>,
    /// float64 rows read from a file or not aligned in memory.
    wide: Vec<f64>,
    /// Bytes read from a file before widening (float16).
    raw: Vec<u8>,
}

/// The first invalid row a worker met, or the chunk it could not read
/// (`global`: the chunk's first row, so the earliest failure wins).
struct BadRow {
    global: u64,
    local: u64,
    path: std::path::PathBuf,
    problem: Result<RowProblem, Error>,
}

impl BadRow {
    fn earlier(a: Option<BadRow>, b: Option<BadRow>) -> Option<BadRow> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if a.global <= b.global { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    fn into_error(self) -> Error {
        match self.problem {
            Ok(problem) => Error::BadRow {
                path: self.path,
                row: self.local,
                global: self.global,
                problem,
            },
            Err(read) => read,
        }
    }
}

/// Runs the scoring kernel over one chunk, emitting every row to `e`. On an
/// invalid row, returns the first one.
fn run_chunk<E: Emit>(
    job: &RowJob,
    pool: &Pool,
    (shard, start, end): (&Shard, u64, u64),
    RowBufs { decoded, wide, raw }: &mut RowBufs,
    terms: &mut Vec<f32>,
    e: &mut E,
) -> Result<(), BadRow> {
    let c = pool.classes();
    let g0 = shard.first_row() + start;
    let unread = |e: Error| BadRow {
        global: g0,
        local: start,
        path: shard.path().into(),
        problem: Err(e),
    };
    let scored = if shard.dtype() == DType::F64 {
        let rows = shard.rows_f64(start, end, c, wide).map_err(unread)?;
        score_rows_exact(job, &rows, c, g0, e)
    } else {
        let rows = shard
            .rows_f32(start, end, c, decoded, raw)
            .map_err(unread)?;
        score_rows(job, &rows, c, g0, terms, e)
    };
    scored.map_err(|(i, problem)| BadRow {
        global: g0 + i as u64,
        local: start + i as u64,
        path: shard.path().into(),
        problem: Ok(problem),
    })
}

/// How a worker ranks the rows it is emitted: by canonical priority (the
/// plain top k), or by a stochastic batch's key ([`Draw`]).
trait Ranker: Sync {
    /// What the worker's heap holds.
    type Row: Ord + Copy + Send;
    /// Whether a kernel may skip rows whose priority (plus bound) is below
    /// the threshold: keys with noise are not decided by the priority.
    const PRUNES: bool;
    /// The value the threshold compares: the priority, or the key.
    fn level(row: &Self::Row) -> f64;
    /// The ranking of an emitted valid row at `index`: `None` when it
    /// cannot reach `thresh` (what [`Ranker::gate`] made of it is `gate`);
    /// `refine` gives its canonical priority when the bound is not 0.
    fn rank(
        &self,
        row: (f64, f64, u64),
        levels: (f64, f64),
        refine: impl FnOnce() -> f64,
    ) -> Option<Self::Row>;
    /// What the ranker precomputes from a new threshold.
    fn gate(&self, thresh: f64) -> f64;
}

/// The plain top k by canonical priority.
struct Plain;

impl Ranker for Plain {
    type Row = Ranked;
    const PRUNES: bool = true;
    #[inline(always)]
    fn level(row: &Ranked) -> f64 {
        row.priority
    }
    #[inline(always)]
    fn rank(
        &self,
        (priority, bound, index): (f64, f64, u64),
        (thresh, _): (f64, f64),
        refine: impl FnOnce() -> f64,
    ) -> Option<Ranked> {
        if priority + bound < thresh {
            return None;
        }
        let priority = if bound == 0.0 { priority } else { refine() };
        Some(Ranked { priority, index })
    }
    fn gate(&self, _: f64) -> f64 {
        0.0
    }
}

/// A stochastic batch whose keys are each row's own (softmax, power):
/// rows whose draw is below the gate of the threshold are dropped after a
/// hash, before any logarithm; the rest only once their key's bound
/// misses the threshold; the others get their canonical key.
struct Draw {
    keys: RowKeys,
    max_priority: f64,
}

impl Ranker for Draw {
    type Row = Keyed;
    const PRUNES: bool = false;
    #[inline(always)]
    fn level(row: &Keyed) -> f64 {
        row.key
    }
    #[inline(always)]
    fn rank(
        &self,
        (priority, bound, index): (f64, f64, u64),
        (thresh, gate): (f64, f64),
        refine: impl FnOnce() -> f64,
    ) -> Option<Keyed> {
        let u = uniform(self.keys.seed(), index);
        if u < gate || (bound != 0.0 && self.keys.key_bound(priority + bound, u) < thresh) {
            return None;
        }
        let priority = if bound == 0.0 { priority } else { refine() };
        let key = self.keys.key_of_draw(priority, u);
        (key >= thresh).then_some(Keyed {
            key,
            index,
            priority,
        })
    }
    fn gate(&self, thresh: f64) -> f64 {
        self.keys.gate(thresh, self.max_priority)
    }
}

/// The select emitter: skips excluded rows and those that cannot reach
/// the worst kept one, offers the rest, refining bounded ones first.
struct Collect<'a, R: Ranker> {
    ranker: &'a R,
    job: &'a RowJob,
    top: &'a mut TopK<R::Row>,
    /// Rows below this cannot enter.
    thresh: f64,
    /// The ranker's view of `thresh`.
    gate: f64,
    g0: u64,
    excluded: &'a [u64],
    probs: &'a mut Vec<f64>,
    refined: u64,
}

impl<R: Ranker> Emit for Collect<'_, R> {
    #[inline(always)]
    fn threshold(&self) -> f64 {
        if R::PRUNES {
            self.thresh
        } else {
            f64::NEG_INFINITY
        }
    }
    #[inline(always)]
    fn emit(&mut self, i: usize, row: &[f32], priority: f64, bound: f64) {
        if R::PRUNES && priority + bound < self.thresh {
            return;
        }
        let index = self.g0 + i as u64;
        if !self.excluded.is_empty() && self.excluded.binary_search(&index).is_ok() {
            return;
        }
        let (job, probs, refined) = (self.job, &mut *self.probs, &mut self.refined);
        let refine = || {
            *refined += 1;
            refine(job, row, index, probs).priority
        };
        let Some(r) = self
            .ranker
            .rank((priority, bound, index), (self.thresh, self.gate), refine)
        else {
            return;
        };
        self.top.offer(r);
        if let Some(w) = self.top.worst()
            && R::level(w) > self.thresh
        {
            self.thresh = R::level(w);
            self.gate = self.ranker.gate(self.thresh);
        }
    }
}

/// A rayon worker's partial result.
struct Worker<T> {
    top: Option<TopK<T>>,
    refined: u64,
    bad: Option<BadRow>,
    scratch: Scratch,
}

impl<T> Default for Worker<T> {
    fn default() -> Self {
        Worker {
            top: None,
            refined: 0,
            bad: None,
            scratch: Scratch::default(),
        }
    }
}

impl<T: Ord> Worker<T> {
    fn merge(mut self, other: Worker<T>) -> Worker<T> {
        self.top = match (self.top, other.top) {
            (Some(mut a), Some(b)) => {
                a.merge(b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.refined += other.refined;
        self.bad = BadRow::earlier(self.bad, other.bad);
        self
    }
}

/// Selects the top k rows of the pool under `job`.
pub(crate) fn select(pool: &Pool, job: &RowJob, progress: &dyn Progress) -> Result<Selection> {
    let (top, refined) = rank(pool, job, &Plain, progress)?;
    Ok(Selection::from_topk(
        job.spec.strategy,
        top,
        pool.rows(),
        job.exclusions.len() as u64,
        refined,
    ))
}

/// Draws a stochastic batch whose keys are each row's own (`keys`: softmax
/// or power) from the pool: the k largest keys, exactly.
pub(crate) fn select_drawn(
    pool: &Pool,
    job: &RowJob,
    keys: RowKeys,
    progress: &dyn Progress,
) -> Result<Selection> {
    let draw = Draw {
        keys,
        max_priority: max_priority(&job.spec, pool.classes(), &job.input),
    };
    let (top, refined) = rank(pool, job, &draw, progress)?;
    Ok(Selection::from_topk(
        job.spec.strategy,
        top,
        pool.rows(),
        job.exclusions.len() as u64,
        refined,
    ))
}

/// The k best rows of the pool under `ranker`, and how many rows were
/// refined.
fn rank<R: Ranker>(
    pool: &Pool,
    job: &RowJob,
    ranker: &R,
    progress: &dyn Progress,
) -> Result<(TopK<R::Row>, u64)> {
    job.check(pool)?;
    let c = pool.classes();
    let k = job.k.min(pool.rows() as usize);
    let chunks: Vec<(&Shard, u64, u64)> = pool.chunks(job.rows_per_chunk(pool)).collect();
    let first_bad = AtomicU64::new(u64::MAX);
    // The best k-th level any worker has proven so far: every worker's
    // full heap is a lower bound on the global k-th one.
    let shared = SharedFloor::new();

    // One worker per thread, each taking the next chunk in file order:
    // every thread warms its threshold once, and the reads stay close to
    // sequential, which read-ahead (and a cold disk) needs.
    let next = AtomicUsize::new(0);
    let workers: Vec<Worker<R::Row>> = rayon::broadcast(|_| {
        let mut w = Worker::default();
        while let Some(&chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
            let (shard, start, end) = chunk;
            let g0 = shard.first_row() + start;
            // Chunks past a known bad row cannot change the error.
            if g0 > first_bad.load(Ordering::Relaxed) || progress.cancelled() {
                continue;
            }
            let top = w.top.get_or_insert_with(|| TopK::new(k));
            let thresh = match top.worst() {
                _ if k == 0 => f64::INFINITY,
                Some(worst) => R::level(worst).max(shared.get()),
                None => shared.get(),
            };
            let excluded = job.exclusions.within(g0, shard.first_row() + end);
            let Scratch {
                rows, terms, probs, ..
            } = &mut w.scratch;
            let mut e = Collect {
                ranker,
                job,
                top,
                thresh,
                gate: ranker.gate(thresh),
                g0,
                excluded,
                probs,
                refined: 0,
            };
            let r = run_chunk(job, pool, chunk, rows, terms, &mut e);
            let refined = e.refined;
            if let Err(bad) = r {
                first_bad.fetch_min(bad.global, Ordering::Relaxed);
                w.bad = BadRow::earlier(w.bad.take(), Some(bad));
                continue;
            }
            if let Some(worst) = top.worst() {
                shared.raise_to(R::level(worst));
            }
            w.refined += refined;
            progress.advance((end - start) * (c * shard.dtype().size()) as u64);
        }
        w
    });
    let worker = workers
        .into_iter()
        .reduce(Worker::merge)
        .unwrap_or_default();

    if let Some(bad) = worker.bad {
        return Err(bad.into_error());
    }
    if progress.cancelled() {
        return Err(Error::Cancelled);
    }
    Ok((worker.top.unwrap_or_else(|| TopK::new(k)), worker.refined))
}

/// The score emitter: every row's canonical priority, in order.
struct Fill<'a> {
    job: &'a RowJob,
    g0: u64,
    scores: &'a mut Vec<f64>,
    probs: &'a mut Vec<f64>,
}

impl Emit for Fill<'_> {
    fn threshold(&self) -> f64 {
        f64::NEG_INFINITY
    }
    #[inline(always)]
    fn emit(&mut self, i: usize, row: &[f32], priority: f64, bound: f64) {
        let p = if bound == 0.0 {
            priority
        } else {
            refine(self.job, row, self.g0 + i as u64, self.probs).priority
        };
        self.scores.push(self.job.spec.strategy.score(p));
    }
}

/// Chunks scored per sequential step of [`score_all`]: bounds its memory.
const SCORE_STEP_CHUNKS: usize = 64;

/// Computes the canonical score of every row, in order, handing them to
/// `sink` a block at a time (excluded rows are scored too).
pub(crate) fn score_all(
    pool: &Pool,
    job: &RowJob,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(&[f64]) -> Result<()>,
) -> Result<()> {
    job.check(pool)?;
    let c = pool.classes();
    let chunks: Vec<(&Shard, u64, u64)> = pool.chunks(job.rows_per_chunk(pool)).collect();
    for step in chunks.chunks(SCORE_STEP_CHUNKS) {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let scored: Vec<Result<Vec<f64>, BadRow>> = step
            .par_iter()
            .map_init(Scratch::default, |s, &chunk| {
                let Scratch {
                    rows,
                    terms,
                    probs,
                    scores,
                } = s;
                scores.clear();
                let g0 = chunk.0.first_row() + chunk.1;
                let mut e = Fill {
                    job,
                    g0,
                    scores,
                    probs,
                };
                run_chunk(job, pool, chunk, rows, terms, &mut e)?;
                let out = s.scores.clone();
                progress.advance((chunk.2 - chunk.1) * (c * chunk.0.dtype().size()) as u64);
                Ok(out)
            })
            .collect();
        for r in scored {
            sink(&r.map_err(BadRow::into_error)?)?;
        }
    }
    Ok(())
}
