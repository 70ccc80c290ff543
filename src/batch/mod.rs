//! Batch-aware selection: strategies that pick a *diverse* batch instead of
//! the k individually most uncertain rows, which with large batches are
//! often near-duplicates. Each reads the pool's probabilities (or logits)
//! N x C and an embedding per row N x D, memory-mapped in chunks:
//!
//! - [`BatchStrategy::Badge`] (Ash et al., ICLR 2020): k-means++ seeding on
//!   the gradient embeddings `(onehot(ŷ) − p) ⊗ e`, never formed ([`badge`]);
//! - [`BatchStrategy::Coreset`] (Sener & Savarese, ICLR 2018): k-center
//!   greedy over the embeddings ([`coreset`]);
//! - [`BatchStrategy::ClusterMargin`] (Citovsky et al., NeurIPS 2021): the
//!   lowest-margin candidates, clustered, picked round-robin
//!   ([`cluster_margin`]).
//!
//! # Exactness
//! Every pick is an arg-max of a per-row key (distance to the nearest
//! centre, or BADGE's race key), ties to the lower row index, under the
//! canonical f64 definitions of [`dist`] and [`rng`]. A float32 pass
//! computes each key with a proven bound; only rows whose upper bound
//! reaches the best lower bound are re-checked canonically. So picks are
//! the same for every thread count, chunk size, read path and backend,
//! and memory beyond the mapped files is a few N-vectors.

pub mod badge;
pub(crate) mod batchbald;
#[cfg(feature = "gpu")]
mod batchbald_gpu;
pub mod cluster_margin;
pub mod coreset;
pub mod dist;
#[cfg(feature = "gpu")]
pub(crate) mod gpu;
#[cfg(not(feature = "gpu"))]
#[path = "no_gpu.rs"]
mod gpu;
pub(crate) mod greedy;
pub mod hac;
pub(crate) mod lazy;
pub mod rng;

use std::borrow::Cow;
use std::collections::HashMap;

use rayon::prelude::*;

use crate::backend::{Backend, Progress};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Pool;
use crate::pool::npy::DType;
use crate::query::{BatchStrategy, InputForm, Query, RowProblem, Value};
use crate::score::input::canonical_probs;
use crate::select::Selection;

/// Rows per unit of parallel work for `emb`: `job.chunk_rows`, or about
/// 1 MiB of embeddings, several chunks per core even for small pools and
/// few enough that a pass's bookkeeping is noise. Picks never depend on it.
pub(crate) fn rows_per_chunk(job: &Job, emb: &Pool) -> u64 {
    if job.chunk_rows > 0 {
        return job.chunk_rows;
    }
    ((1u64 << 20) / (emb.classes() as u64 * 4)).clamp(64, 1 << 16)
}

/// The k rows `job`'s batch strategy picks from `probs` (N x C; core-set
/// runs without them) and `emb` (N x D), in pick order, on `backend`:
/// every backend picks the same rows. Each entry's score is what decided
/// it: the distance to the nearest centre (core-set), the squared
/// gradient-embedding distance (BADGE), or the margin (Cluster-Margin).
pub(crate) fn select_on(
    backend: Backend,
    probs: Option<&Pool>,
    emb: &Pool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<Selection> {
    let Query::Batch(strategy) = job.query else {
        return Err(Error::Config(format!(
            "{} scores each row; it is not a batch strategy",
            job.query
        )));
    };
    check(strategy, probs, emb, job)?;
    let gpu = match backend {
        Backend::Gpu(g) => Some(g),
        Backend::Cpu => None,
    };
    let needs_probs =
        || probs.ok_or_else(|| Error::Config(format!("{strategy} needs the pool's probabilities")));
    let mut clock = Clock::default();
    let clock_ref = &mut clock;
    let (picks, refined) = match strategy {
        BatchStrategy::Coreset => coreset::pick(
            emb,
            job,
            (gpu, coreset::First::Farthest),
            progress,
            clock_ref,
        )?,
        BatchStrategy::Badge => badge::pick(needs_probs()?, emb, job, gpu, progress, clock_ref)?,
        BatchStrategy::BatchBald => {
            return Err(Error::Config(
                "batchbald reads T samples per row (--samples), not embeddings".into(),
            ));
        }
        BatchStrategy::ClusterMargin => {
            cluster_margin::pick(backend, needs_probs()?, emb, job, progress, clock_ref)?
        }
    };
    let excluded = job.exclusions.len() as u64;
    let mut sel = Selection::of_picks(job.query, picks, emb.rows(), excluded, refined);
    sel.phases = clock.phases;
    Ok(sel)
}

/// Phase timings for `-v`: the time since the last lap, added to the
/// phase's total (a phase met once per pick adds up over the picks).
pub(crate) struct Clock {
    last: std::time::Instant,
    phases: Vec<(&'static str, std::time::Duration)>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            last: std::time::Instant::now(),
            phases: Vec::new(),
        }
    }
}

impl Clock {
    pub fn lap(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        let spent = now - self.last;
        self.last = now;
        match self.phases.iter_mut().find(|p| p.0 == phase) {
            Some(p) => p.1 += spent,
            None => self.phases.push((phase, spent)),
        }
    }
}

/// Checks shapes and k before any row is read.
fn check(strategy: BatchStrategy, probs: Option<&Pool>, emb: &Pool, job: &Job) -> Result<()> {
    let first = |p: &Pool| p.shards()[0].path().to_path_buf();
    let rows = emb.rows();
    if let Some(probs) = probs {
        if rows != probs.rows() {
            return Err(Error::EmbeddingRows {
                path: first(emb),
                pool: first(probs),
                expected: probs.rows(),
                found: rows,
            });
        }
        if probs.classes() < job.query.min_classes() {
            return Err(Error::TooFewClasses {
                path: first(probs),
                strategy: strategy.name(),
                classes: probs.classes(),
            });
        }
    }
    job.check_picks((rows, "the pool's", emb.path()), strategy.name())?;
    Ok(())
}

/// Embedding values beyond this could overflow a float32 squared distance.
pub const EMBED_LIMIT: f64 = 1e15;

/// The largest f32 not above [`EMBED_LIMIT`]: for an f32 `v`,
/// `|v| ≤ LIMIT32` exactly when `|v| as f64 ≤ EMBED_LIMIT` (the widening
/// is exact).
const LIMIT32: f32 = {
    let l = EMBED_LIMIT as f32;
    if l as f64 > EMBED_LIMIT {
        f32::from_bits(l.to_bits() - 1)
    } else {
        l
    }
};

/// Scratch for reading rows.
#[derive(Default)]
pub(crate) struct Bufs {
    scratch: Vec<f32>,
    raw: Vec<u8>,
    gather: Vec<f32>,
    wide: Vec<f64>,
}

/// Global rows `start..end` of `pool` as float32, crossing shards if they
/// must (then copied into `b`).
pub(crate) fn read_rows<'s>(
    pool: &'s Pool,
    start: u64,
    end: u64,
    b: &'s mut Bufs,
) -> Result<Cow<'s, [f32]>> {
    let (shard, local) = pool.locate(start);
    if local + (end - start) <= shard.rows() {
        return shard.rows_f32(
            local,
            local + (end - start),
            pool.classes(),
            &mut b.scratch,
            &mut b.raw,
        );
    }
    b.gather.clear();
    let mut at = start;
    while at < end {
        let (shard, local) = pool.locate(at);
        let take = (shard.rows() - local).min(end - at);
        let rows = shard.rows_f32(
            local,
            local + take,
            pool.classes(),
            &mut b.scratch,
            &mut b.raw,
        )?;
        b.gather.extend_from_slice(&rows);
        at += take;
    }
    Ok(Cow::Borrowed(&b.gather))
}

/// The canonical probabilities of global rows `start..end` into `out`
/// (row-major), read as stored (float64 rows from their own values).
pub(crate) fn canonical_prob_rows(
    pool: &Pool,
    input: &InputForm,
    start: u64,
    end: u64,
    b: &mut Bufs,
    out: &mut Vec<f64>,
) -> Result<()> {
    let c = pool.classes();
    out.clear();
    out.resize((end - start) as usize * c, 0.0);
    let mut at = start;
    while at < end {
        let (shard, local) = pool.locate(at);
        let take = (shard.rows() - local).min(end - at);
        let o = &mut out[(at - start) as usize * c..(at - start + take) as usize * c];
        let fail = |i: usize, problem: RowProblem| Error::BadRow {
            path: shard.path().into(),
            row: local + i as u64,
            global: at + i as u64,
            problem,
        };
        if shard.dtype() == DType::F64 {
            let rows = shard.rows_f64(local, local + take, c, &mut b.wide)?;
            for (i, (r, o)) in rows.chunks_exact(c).zip(o.chunks_exact_mut(c)).enumerate() {
                canonical_probs(input, r, o).map_err(|p| fail(i, p))?;
            }
        } else {
            let rows = shard.rows_f32(local, local + take, c, &mut b.scratch, &mut b.raw)?;
            for (i, (r, o)) in rows.chunks_exact(c).zip(o.chunks_exact_mut(c)).enumerate() {
                canonical_probs(input, r, o).map_err(|p| fail(i, p))?;
            }
        }
        at += take;
    }
    Ok(())
}

/// The first embedding value that is not finite or too large, as an error
/// naming its file and row.
pub(crate) fn check_embedding_rows(emb: &Pool, start: u64, rows: &[f32]) -> Result<()> {
    let d = emb.classes();
    // NaN fails `is_finite`; infinities and huge values fail the limit.
    let bad = |v: f32| !v.is_finite() || v.abs() as f64 > EMBED_LIMIT;
    // The same test in f32 and without an early exit, so that it
    // vectorizes (this runs over every value of every pass that checks):
    // f32 to f64 is exact, so `|v| ≤ LIMIT32`, the largest f32 not above
    // the limit, holds exactly when `|v| as f64 ≤ EMBED_LIMIT`; NaN fails
    // it, as do the infinities.
    let fine = rows
        .chunks(1024)
        .all(|c| c.iter().fold(true, |ok, &v| ok & (v.abs() <= LIMIT32)));
    if fine {
        return Ok(());
    }
    let at = rows.iter().position(|&v| bad(v)).unwrap_or(0);
    let (row, col, value) = (start + (at / d) as u64, at % d, rows[at]);
    let (shard, local) = emb.locate(row);
    let problem = if value.is_finite() {
        RowProblem::TooLarge {
            col,
            value: Value::from(value),
            limit: EMBED_LIMIT,
        }
    } else {
        RowProblem::NotFinite {
            col,
            value: Value::from(value),
        }
    };
    Err(Error::BadRow {
        path: shard.path().into(),
        row: local,
        global: row,
        problem,
    })
}

/// Runs `f(scratch, first global row, chunk of state)` over `state` split
/// into chunks of `chunk` rows, in parallel; results in chunk order, the
/// first error (in chunk order) wins.
pub(crate) fn par_pass<T, I, R>(
    state: &mut [T],
    chunk: u64,
    init: impl Fn() -> I + Sync + Send,
    f: impl Fn(&mut I, u64, &mut [T]) -> Result<R> + Sync + Send,
) -> Result<Vec<R>>
where
    T: Send,
    R: Send,
{
    state
        .par_chunks_mut(chunk as usize)
        .enumerate()
        .map_init(init, |i, (c, s)| f(i, c as u64 * chunk, s))
        .collect::<Vec<Result<R>>>()
        .into_iter()
        .collect()
}

/// The winner among canonical (row, key) pairs: largest key, then lowest
/// row.
pub(crate) fn arg_max(keys: impl IntoIterator<Item = (u64, f64)>) -> Option<(u64, f64)> {
    keys.into_iter().fold(None, |best, (r, k)| match best {
        Some((br, bk)) if bk > k || (bk == k && br < r) => Some((br, bk)),
        _ => Some((r, k)),
    })
}

/// Each re-checked row's canonical distance to its nearest centre, and how
/// many centres that covers, so a row re-checked again only folds in the
/// centres added since.
#[derive(Default)]
pub(crate) struct Nearest(HashMap<u64, (f64, usize)>);

impl Nearest {
    /// Row `row`'s canonical minimum over the first `centres` centres,
    /// `dist(from)` giving the minimum over centres `from..centres`.
    pub fn get(
        &mut self,
        row: u64,
        centres: usize,
        dist: impl FnOnce(usize) -> Result<f64>,
    ) -> Result<f64> {
        let (old, seen) = self.0.get(&row).copied().unwrap_or((f64::INFINITY, 0));
        let new = if seen < centres {
            old.min(dist(seen)?)
        } else {
            old
        };
        self.0.insert(row, (new, centres));
        Ok(new)
    }
}

/// Marks `rows` (excluded or picked) in a state vector.
pub(crate) fn mark<T: Copy>(state: &mut [T], rows: &[u64], value: T) {
    for &r in rows {
        state[r as usize] = value;
    }
}

/// Which update a pass runs: the shader's `kind`.
#[derive(Clone, Copy)]
pub(crate) enum Update {
    Coreset = 0,
    Badge = 1,
    Igs = 2,
}

/// The bound terms and random stream a pass needs (rounded up to f32 on
/// the way in).
#[derive(Clone, Copy, Default)]
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub(crate) struct Terms {
    pub eps: f64,
    pub abs: f64,
    pub eta_a: f64,
    pub eta_e: f64,
    pub under: f64,
    pub emax: f64,
    pub gmax: f64,
    pub exp_rel: f64,
    pub seed: u64,
    pub t: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_f32_limit_is_the_f64_limit() {
        let bad = |v: f32| !v.is_finite() || v.abs() as f64 > EMBED_LIMIT;
        let up = f32::from_bits(LIMIT32.to_bits() + 1);
        let down = f32::from_bits(LIMIT32.to_bits() - 1);
        for v in [
            0.0,
            1.0,
            down,
            LIMIT32,
            up,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
        ] {
            for v in [v, -v] {
                assert_eq!(v.abs() <= LIMIT32, !bad(v), "{v:e}");
            }
        }
        assert!(bad(up) && !bad(LIMIT32));
    }
}
