//! Information density (Settles and Craven 2008): how representative a row
//! is, as its mean cosine similarity to the pool, alone or weighting a
//! row-wise strategy's informativeness.
//!
//! # The canonical definition
//! - `x̂ = x / ‖x‖`, with `‖x‖² = dot(x, x)` the canonical f64 dot product
//!   of [`crate::batch::dist`]; an all-zero row has no direction and is an
//!   error naming it.
//! - `m = (1/N) Σ_u x̂_u` over every pool row (labeled ones too), summed in
//!   f64 over fixed blocks of [`BLOCK`] rows in row order, the blocks' sums
//!   then added in block order: the same on every thread count.
//! - The density of x is `sim(x) = x̂ · m` (canonical f64 order), the mean
//!   cosine similarity of x to every pool row, itself included: exact in
//!   O(N·D), where modAL's `information_density` builds an N x N matrix.
//! - `density` alone ranks rows by `sim`, higher first. With a row-wise
//!   strategy and `--density-beta β` the priority is
//!   `φ(x) · max(sim(x), 0)^β`, with φ the strategy's informativeness,
//!   higher = more informative: the score itself, or `1 − margin` for
//!   margin. Cosine similarities can be negative, and a negative base has
//!   no real power, so it is clamped at 0 (Settles and Craven use
//!   non-negative features, where it never is).
//!
//! Ties go to the lower row. Everything is computed in f64 from the rows
//! as read: no fast path, so no bound is needed, at about the speed of
//! reading the file.

use rayon::prelude::*;

use super::kmeans::Reader;
use crate::backend::cpu::{Isa, per_isa};
use crate::backend::{Progress, RowJob};
use crate::batch::dist::{dot_f64, dot_f64_mapped};
use crate::batch::{Bufs, check_embedding_rows, read_rows};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Pool;
use crate::query::RowProblem;
use crate::score::Ranked;
use crate::select::TopK;

/// Rows per block of the mean's sum: part of the definition.
pub const BLOCK: u64 = 4096;

/// Each row's density, in row order, into an N-vector.
pub(crate) fn similarities(rd: &Reader) -> Result<Vec<f64>> {
    let m = mean_direction(rd)?;
    let mut sim = vec![0f64; rd.emb.rows() as usize];
    let d = rd.d;
    let isa = Isa::detect();
    let done = rd.pass(
        &mut sim,
        || (),
        |_: &mut (), _, rows, out| {
            vectorized(isa, Block::Similarities { m: &m, out }, rows, d);
        },
    )?;
    drop(done);
    Ok(sim)
}

/// `m`, the mean of the unit rows, checking every row on the way.
fn mean_direction(rd: &Reader) -> Result<Vec<f64>> {
    let (emb, d, n) = (rd.emb, rd.d, rd.emb.rows());
    let blocks = n.div_ceil(BLOCK);
    let isa = Isa::detect();
    let sums: Vec<Vec<f64>> = (0..blocks)
        .into_par_iter()
        .map_init(Bufs::default, |bufs, b| {
            if rd.progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let start = b * BLOCK;
            let rows = read_rows(emb, start, (start + BLOCK).min(n), bufs)?;
            check_embedding_rows(emb, start, &rows)?;
            let mut s = vec![0f64; d];
            if let Some(i) = vectorized(isa, Block::Sum(&mut s), &rows, d) {
                return Err(zero_row(emb, start + i as u64));
            }
            rd.progress.advance((rows.len() * 4) as u64);
            Ok(s)
        })
        .collect::<Result<_>>()?;
    let mut m = vec![0f64; d];
    for s in sums {
        for (m, v) in m.iter_mut().zip(s) {
            *m += v;
        }
    }
    Ok(m.into_iter().map(|v| v / n as f64).collect())
}

/// What a block of rows adds: to the sum of its unit rows, or each row's
/// similarity to the mean direction `m` (into `out`).
enum Block<'a> {
    Sum(&'a mut [f64]),
    Similarities { m: &'a [f64], out: &'a mut [f64] },
}

per_isa! {
    /// One block of `rows` (D values a row) through [`Block`], in the
    /// canonical f64 order, compiled for the CPU's vector extensions (the
    /// same operations in the same order at any width, so the same bits);
    /// the first all-zero row's place in the block, if any, when summing.
    fn vectorized(block: Block, rows: &[f32], d: usize) -> Option<usize> {
        match block {
            Block::Sum(s) => {
                for (i, x) in rows.chunks_exact(d).enumerate() {
                    let norm2 = dot_f64(x, x);
                    if norm2 == 0.0 {
                        return Some(i);
                    }
                    let inv = 1.0 / norm2.sqrt();
                    for (s, &v) in s.iter_mut().zip(x) {
                        *s += v as f64 * inv;
                    }
                }
            }
            Block::Similarities { m, out } => {
                for (x, o) in rows.chunks_exact(d).zip(out.iter_mut()) {
                    *o = similarity(x, m);
                }
            }
        }
        None
    }
}

/// The canonical density of row `x` (not all zero) given the mean
/// direction `m`: `x̂ · m`, each x̂ value rounded as it would be stored.
#[inline(always)]
fn similarity(x: &[f32], m: &[f64]) -> f64 {
    let inv = 1.0 / dot_f64(x, x).sqrt();
    dot_f64_mapped(x, m, |v| v as f64 * inv)
}

/// The interval the GPU's f32 similarity gets (`score_density` in
/// `shaders/select.wgsl`): `half · A/|x| + rel · |priority|`, A = Σ|x_j m_j|.
/// With u = 2⁻²⁴ and D values a row: the f32 dot of x with m rounded to
/// f32 is within (γ_D + u)·A of x · m, and the f32 sum of |x_j m_j|
/// underestimates A by at most γ_D; |x|² is within γ_D relative, its
/// square root within 10u more (WGSL inherits it from 1/inverseSqrt, at
/// most 4.5 ulp), the division 2.5 ulp (5u). So the similarity is within
/// (γ_D + u)/(1 − γ_D) · A/|x| + (γ_D/2 + 15u) · |priority| of the exact
/// one (to first order), and the canonical f64 value within 1e-14 of that;
/// both terms are doubled.
#[cfg(feature = "gpu")]
fn gpu_bound(d: usize) -> (f64, f64) {
    use crate::batch::dist::U32;
    let nu = d as f64 * U32;
    let gamma = nu / (1.0 - nu);
    (
        2.0 * (gamma + U32) / (1.0 - gamma),
        2.0 * (gamma / 2.0 + 16.0 * U32),
    )
}

/// The k densest rows not excluded, on the GPU: the mean direction from
/// the host's first pass (which checks every row), the similarities and
/// their top k on the GPU, each candidate re-scored canonically.
#[cfg(feature = "gpu")]
pub(crate) fn densest_on_gpu(
    gpu: &crate::backend::gpu::Gpu,
    rd: &Reader,
    job: &Job,
) -> Result<(crate::select::Selection, crate::backend::Phases)> {
    let m = mean_direction(rd)?;
    let score = |x: &[f32], index, _: &mut [f64]| {
        Ok(Ranked {
            priority: similarity(x, &m),
            index,
        })
    };
    crate::backend::gpu::select_density(gpu, rd.emb, job, &m, gpu_bound(rd.d), &score, rd.progress)
}

fn zero_row(emb: &Pool, row: u64) -> Error {
    let (shard, local) = emb.locate(row);
    Error::BadRow {
        path: shard.path().into(),
        row: local,
        global: row,
        problem: RowProblem::ZeroNorm,
    }
}

/// The k densest rows not excluded, best first.
pub(crate) fn densest(sim: &[f64], job: &Job) -> TopK {
    let mut excluded = job.exclusions.as_slice().iter().peekable();
    let mut top = TopK::new(job.k);
    for (r, &s) in sim.iter().enumerate() {
        if excluded.next_if(|&&e| e == r as u64).is_some() {
            continue;
        }
        top.offer(Ranked {
            priority: s,
            index: r as u64,
        });
    }
    top
}

/// Refuses a weight exponent that is not a finite number ≥ 0.
pub(crate) fn check_beta(beta: f64) -> Result<()> {
    if !(beta.is_finite() && beta >= 0.0) {
        return Err(Error::Config(format!(
            "--density-beta must be a finite number ≥ 0, not {beta}"
        )));
    }
    Ok(())
}

/// A row's weight from its density `sim`: `max(sim, 0)^β`, at least 0.
pub(crate) fn weight(sim: f64, beta: f64) -> f64 {
    sim.max(0.0).powf(beta)
}

/// A row's weighted priority from its canonical `score` under a strategy
/// whose lower scores are better (`lower`) or higher: `φ · weight`.
pub(crate) fn weighted_priority(lower: bool, score: f64, weight: f64) -> f64 {
    let phi = if lower { 1.0 - score } else { score };
    phi * weight
}

/// The k best rows of a row-wise `job` weighted by density `sim`:
/// priority `φ · max(sim, 0)^β`.
pub(crate) fn weighted(
    probs: &Pool,
    sim: &[f64],
    job: &Job,
    beta: f64,
    progress: &dyn Progress,
) -> Result<TopK> {
    check_beta(beta)?;
    let rows = RowJob::of(&Job {
        k: usize::MAX,
        ..job.clone()
    })?;
    rows.check(probs)?;
    let lower = job.query.lower_is_better();
    let mut excluded = job.exclusions.as_slice().iter().peekable();
    let mut top = TopK::new(job.k);
    let mut at = 0usize;
    let g0 = probs.first_row();
    crate::backend::cpu::score_all(probs, &rows, progress, &mut |scores| {
        for &s in scores {
            let r = g0 + at as u64;
            let w = weight(sim[at], beta);
            at += 1;
            if excluded.next_if(|&&e| e == r).is_some() {
                continue;
            }
            top.offer(Ranked {
                priority: weighted_priority(lower, s, w),
                index: r,
            });
        }
        Ok(())
    })?;
    Ok(top)
}
