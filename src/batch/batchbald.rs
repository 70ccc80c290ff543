//! BatchBALD's greedy engine (Kirsch, van Amersfoort and Gal, NeurIPS
//! 2019): each pick is the selectable row of largest gain
//! `H(y_n | y_B) − E_t H(p_{n,t})` given the picks B so far, ties to the
//! lower row, with the quantities of [`crate::score::batchbald`]: exact
//! while `C^|B|` is within the configuration budget M, importance-sampled
//! beyond it. Every candidate's gain is the canonical f64 one, so the
//! picks are the same for every thread count and chunk size.
//!
//! The first pass reads every row's T samples once: its conditional
//! entropy, and its gain (its BALD score). While exact, the gain of a row
//! can only fall as the batch grows (conditioning never raises entropy:
//! `H(y_n | y_B, y_b) ≤ H(y_n | y_B)`), so its last exact gain is a proven
//! upper bound, and a step scores rows in order of that bound until the
//! best gain found is above every bound left, with the rounding slack of
//! [`Joint::slack`]: the lazy greedy of submodular maximization, with the
//! same picks as scoring every row. A sampled estimate has no such
//! bound, so each sampled step starts from a pass of every row's
//! one-group bound. Either way a candidate is refined cheapest first (see
//! `Engine::best_by_bounds`), and only the few whose proven f64 interval
//! still reaches the best get the canonical gain.
//!
//! Memory: the T x N x C samples are read from their files in chunks at
//! each full pass; alpool holds per row its conditional entropy, its
//! bound, whether it may be picked and its place in the order of bounds
//! (about 41 bytes a row; the chunks of a sampled step's bound pass
//! briefly hold 24 more), and the
//! configurations (M x T f64).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::Clock;
use crate::backend::Progress;
use crate::backend::cpu::{Isa, per_isa};
use crate::backend::gpu::Gpu;
use crate::disagree::read_canonical;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Samples;
use crate::pool::samples::ReadBufs;
use crate::query::BatchStrategy;
use crate::score::batchbald::{DEFAULT_CONFIGURATIONS, FastScratch, Joint, conditional_entropy};
use crate::select::Selection;

/// Sample bytes a unit of parallel work reads in a full pass.
const CHUNK_BYTES: u64 = 256 << 10;

/// The batch BatchBALD picks from `samples`, in pick order; each entry's
/// score is the batch's estimated information `I(y_B; ω)` once it joined.
/// On `gpu` when given (`super::batchbald_gpu`): the same picks and scores.
pub(crate) fn select(
    samples: &Samples,
    job: &Job,
    gpu: Option<&Gpu>,
    progress: &dyn Progress,
) -> Result<Selection> {
    if let Some(gpu) = gpu {
        #[cfg(feature = "gpu")]
        return super::batchbald_gpu::select(gpu, samples, job, progress);
        #[cfg(not(feature = "gpu"))]
        gpu.never();
    }
    let n = samples.rows();
    let g0 = samples.first_row();
    let mut blocked = vec![false; n as usize];
    for &g in job.exclusions.within(g0, g0 + n) {
        blocked[(g - g0) as usize] = true;
    }
    let excluded = job.exclusions.within(g0, g0 + n).len();
    check(samples, job, excluded as u64)?;
    let engine = Engine::new(samples, job, progress);
    let mut clock = Clock::default();
    let mut cond = vec![0.0; n as usize];
    let mut bound = vec![f64::NEG_INFINITY; n as usize];
    let mut picks: Vec<(u64, f64)> = Vec::with_capacity(job.k);
    let mut picked: Vec<Vec<f64>> = Vec::with_capacity(job.k);
    let mut cond_b = 0.0;
    let mut rescored = 0u64;
    let mut lazy: Option<BinaryHeap<Cand>> = None;
    for step in 0..job.k {
        let joint = engine.joint(&picked);
        let best = if step == 0 {
            let best = engine.pass(
                &joint,
                &blocked,
                (&mut cond, true),
                (&mut bound, Pass::Gain),
            )?;
            clock.lap("first pass");
            best
        } else if joint.exact() {
            let heap = lazy.get_or_insert_with(|| heap_of(&bound, &blocked, 0));
            let (best, scored) = engine.best_by_bounds(&joint, &cond, heap)?;
            engine.progress.advance(engine.pass_bytes);
            rescored += scored;
            clock.lap("exact steps");
            best
        } else {
            lazy = None;
            engine.pass(
                &joint,
                &blocked,
                (&mut cond, false),
                (&mut bound, Pass::Bound),
            )?;
            let mut heap = heap_of(&bound, &blocked, 1);
            let (best, scored) = engine.best_by_bounds(&joint, &cond, &mut heap)?;
            rescored += scored;
            clock.lap("sampled steps");
            best
        };
        let Some((gain, row)) = best else { break };
        blocked[row as usize] = true;
        picks.push((g0 + row, joint.entropy() - cond_b + gain));
        cond_b += cond[row as usize];
        picked.push(engine.row(row)?);
    }
    let mut sel = Selection::picked(job, picks, n, excluded as u64, rescored);
    sel.phases = clock.phases;
    Ok(sel)
}

impl Selection {
    /// The batch `picks` (global row, information in nats) of `job`, in
    /// pick order, scores in the job's log base.
    pub(super) fn picked(
        job: &Job,
        picks: Vec<(u64, f64)>,
        rows: u64,
        excluded: u64,
        refined: u64,
    ) -> Self {
        let ln_b = job.log_base.ln();
        let scored = picks.into_iter().map(|(index, info)| (index, info / ln_b));
        Selection::of_picks(job.query, scored, rows, excluded, refined)
    }
}

/// Refuses what BatchBALD cannot pick from, before any row is read.
pub(super) fn check(samples: &Samples, job: &Job, excluded: u64) -> Result<()> {
    job.input.check().map_err(Error::Config)?;
    let name = BatchStrategy::BatchBald.name();
    if samples.samples() < 2 {
        return Err(Error::Config(format!(
            "{name} needs at least 2 samples to measure disagreement, got T = 1"
        )));
    }
    let rows = samples.rows();
    if let Some(&bad) = job.exclusions.as_slice().last()
        && bad >= samples.first_row() + rows
    {
        return Err(Error::Config(format!(
            "excluded row {bad} is past the pool's {rows} rows"
        )));
    }
    let selectable = rows - excluded;
    if job.k as u64 > selectable {
        return Err(Error::TooFewRows {
            path: samples.path().into(),
            strategy: name,
            k: job.k,
            selectable,
            rows,
            excluded,
        });
    }
    Ok(())
}

/// A candidate in the lazy order: the largest bound first, then the lower
/// row.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cand {
    bound: f64,
    row: u64,
    /// How many of `Engine::best_by_bounds`' refinements (the levels'
    /// bounds, then the gain in f32 and f64) are taken this step, or
    /// [`GAIN`] once `bound` is the canonical gain itself.
    level: usize,
}

/// A candidate's level once its gain is computed.
const GAIN: usize = usize::MAX;

impl Eq for Cand {}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bound
            .total_cmp(&other.bound)
            .then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Every row that may still be picked, by its bound, with `level` of
/// [`Joint::bound`]'s bounds taken.
fn heap_of(bound: &[f64], blocked: &[bool], level: usize) -> BinaryHeap<Cand> {
    let mut all = Vec::with_capacity(blocked.iter().filter(|b| !**b).count());
    all.extend(
        bound
            .iter()
            .zip(blocked)
            .enumerate()
            .filter(|(_, (_, b))| !**b)
            .map(|(row, (&bound, _))| Cand {
                bound,
                row: row as u64,
                level,
            }),
    );
    BinaryHeap::from(all)
}

/// The better of two (gain, row): the larger gain, then the lower row.
pub(super) fn better(a: Option<(f64, u64)>, b: Option<(f64, u64)>) -> Option<(f64, u64)> {
    match (a, b) {
        (Some(x), Some(y)) => {
            if y.0 > x.0 || (y.0 == x.0 && y.1 < x.1) {
                Some(y)
            } else {
                Some(x)
            }
        }
        (x, None) => x,
        (None, y) => y,
    }
}

/// What a full pass computes for each row that may be picked: its gain,
/// or the first (one-group) bound of [`Joint::bound`], T·C products and C
/// logarithms a row.
#[derive(Clone, Copy)]
enum Pass {
    Gain,
    Bound,
}

pub(super) struct Engine<'a> {
    samples: &'a Samples<'a>,
    job: &'a Job,
    /// The configuration budget M.
    pub(super) budget: usize,
    progress: &'a dyn Progress,
    /// The bytes a full pass reads (for progress).
    pub(super) pass_bytes: u64,
}

impl<'a> Engine<'a> {
    pub(super) fn new(samples: &'a Samples<'a>, job: &'a Job, progress: &'a dyn Progress) -> Self {
        Engine {
            samples,
            job,
            budget: match job.configurations {
                0 => DEFAULT_CONFIGURATIONS,
                m => m,
            },
            progress,
            pass_bytes: samples.data_bytes(),
        }
    }

    pub(super) fn joint(&self, picked: &[Vec<f64>]) -> Joint {
        let (t, c) = (self.samples.samples(), self.samples.classes());
        Joint::new(picked, t, c, self.budget, self.job.seed)
    }

    fn rows_per_chunk(&self) -> u64 {
        if self.job.chunk_rows > 0 {
            return self.job.chunk_rows;
        }
        let row = (self.samples.samples() * self.samples.classes() * 4).max(1) as u64;
        (CHUNK_BYTES / row).clamp(16, 1 << 16)
    }

    /// The canonical T x C probabilities of local `row`.
    pub(super) fn row(&self, row: u64) -> Result<Vec<f64>> {
        let (mut bufs, mut stored, mut p) = (ReadBufs::default(), Vec::new(), Vec::new());
        read_canonical(
            self.samples,
            self.job,
            (row, row + 1),
            (&mut bufs, &mut stored),
            &mut p,
        )?;
        Ok(p)
    }

    /// Reads every row once: for each that may be picked, its gain or
    /// bound (`kind`) into `bound`, and on the `first` pass every row's
    /// conditional entropy into `cond`; returns the best (value, local
    /// row). A bad row is reported as the first in row order.
    fn pass(
        &self,
        joint: &Joint,
        blocked: &[bool],
        (cond, first): (&mut [f64], bool),
        (bound, kind): (&mut [f64], Pass),
    ) -> Result<Option<(f64, u64)>> {
        let step = self.rows_per_chunk() as usize;
        let results: Vec<Result<Option<(f64, u64)>>> = bound
            .par_chunks_mut(step)
            .zip(cond.par_chunks_mut(step))
            .enumerate()
            .map_init(Scratch::default, |s, (i, (bound, cond))| {
                if self.progress.cancelled() {
                    return Err(Error::Cancelled);
                }
                let start = (i * step) as u64;
                let span = (start, start + bound.len() as u64);
                let best = self.chunk(
                    s,
                    (joint, kind),
                    span,
                    &blocked[i * step..],
                    (cond, first),
                    bound,
                )?;
                self.progress
                    .advance(self.pass_bytes / self.samples.rows().max(1) * (span.1 - span.0));
                Ok(best)
            })
            .collect();
        let mut best = None;
        for r in results {
            best = better(best, r?);
        }
        Ok(best)
    }

    /// One chunk of a full pass: local rows `span`, whose `blocked`,
    /// `cond` and `bound` entries start at its first row.
    fn chunk(
        &self,
        s: &mut Scratch,
        (joint, kind): (&Joint, Pass),
        span: (u64, u64),
        blocked: &[bool],
        (cond, first): (&mut [f64], bool),
        bound: &mut [f64],
    ) -> Result<Option<(f64, u64)>> {
        let (t, c) = (self.samples.samples(), self.samples.classes());
        read_canonical(
            self.samples,
            self.job,
            span,
            (&mut s.bufs, &mut s.stored),
            &mut s.probs,
        )?;
        let mut best = None;
        for (i, p) in s.probs.chunks_exact(t * c).enumerate() {
            if first {
                cond[i] = conditional_entropy(p, c);
            }
            if blocked[i] {
                continue;
            }
            let value = match kind {
                Pass::Gain => joint.gain(p, cond[i], &mut s.r),
                Pass::Bound => joint.bound(0, p, cond[i], &mut s.r),
            };
            bound[i] = value;
            best = better(best, Some((value, span.0 + i as u64)));
        }
        Ok(best)
    }

    /// The best row of a step, best-first: the candidate of largest bound
    /// is taken, its next bound computed and put back, or once they are
    /// spent its canonical gain; until every bound left is below the best
    /// gain by more than the rounding slack. The bounds, cheapest first:
    /// the levels of [`Joint::bound`] in f32 but the finest, the finest in
    /// f64, then the gain in f32 and in f64 (each the top of the interval
    /// of [`Joint::fast_interval`]); the f64 steps separate the gains late
    /// in a batch, which are smaller than the f32 interval.
    /// Groups of candidates are taken at once and worked on in parallel;
    /// the best is the same for any grouping. The rows scored go back with
    /// their gain as bound, but the pick; every bound is kept for the next
    /// exact step, where each still bounds the gain. Returns the best and
    /// how many gains were computed.
    fn best_by_bounds(
        &self,
        joint: &Joint,
        cond: &[f64],
        heap: &mut BinaryHeap<Cand>,
    ) -> Result<(Option<(f64, u64)>, u64)> {
        let slack = 2.0 * joint.slack();
        let group = (16 * rayon::current_num_threads()).max(8);
        let isa = Isa::detect();
        let mut best: Option<(f64, u64)> = None;
        let mut scored: Vec<Cand> = Vec::new();
        loop {
            if self.progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let mut take = Vec::with_capacity(group);
            while take.len() < group {
                match heap.peek() {
                    Some(top) if best.is_none_or(|b| top.bound + slack >= b.0) => {
                        take.extend(heap.pop());
                    }
                    _ => break,
                }
            }
            if take.is_empty() {
                break;
            }
            let next: Vec<Result<Cand>> = take
                .par_iter()
                .map_init(Scratch::default, |s, cand| {
                    let r = cand.row;
                    read_canonical(
                        self.samples,
                        self.job,
                        (r, r + 1),
                        (&mut s.bufs, &mut s.stored),
                        &mut s.probs,
                    )?;
                    let cond = cond[r as usize];
                    Ok(if cand.level <= joint.bounds() + 1 {
                        // The levels' bounds in f32, the finest level's in
                        // f64, then the gain in f32 and in f64.
                        let b = joint.bounds();
                        let level = match cand.level {
                            l if l < b => Some(l),
                            _ => None,
                        };
                        let double = cand.level + 1 == b || cand.level == b + 1;
                        let (value, e) =
                            fast_interval(isa, (joint, level, double), &s.probs, cond, &mut s.fast);
                        Cand {
                            bound: (value + e).min(cand.bound),
                            row: r,
                            level: cand.level + 1,
                        }
                    } else {
                        Cand {
                            bound: joint.gain(&s.probs, cond, &mut s.r),
                            row: r,
                            level: GAIN,
                        }
                    })
                })
                .collect();
            for cand in next {
                let cand = cand?;
                if cand.level == GAIN {
                    best = better(best, Some((cand.bound, cand.row)));
                    scored.push(cand);
                } else {
                    heap.push(cand);
                }
            }
        }
        let count = scored.len() as u64;
        let pick = best.map(|b| b.1);
        // In place: the order holds a candidate a row.
        let mut kept = std::mem::take(heap).into_vec();
        kept.extend(scored.into_iter().filter(|c| Some(c.row) != pick));
        kept.iter_mut().for_each(|c| c.level = 0);
        *heap = BinaryHeap::from(kept);
        Ok((best, count))
    }
}

per_isa! {
    /// [`Joint::fast_interval`] in f64 (`double`) or f32, compiled for the
    /// CPU's vector extensions, whose fused multiply-adds it needs.
    fn fast_interval(
        job: (&Joint, Option<usize>, bool),
        p: &[f64],
        cond: f64,
        s: &mut FastScratch,
    ) -> (f64, f64) {
        let (joint, level, double) = job;
        if double {
            joint.fast_interval::<f64>(level, p, cond, s)
        } else {
            joint.fast_interval::<f32>(level, p, cond, s)
        }
    }
}

#[derive(Default)]
pub(super) struct Scratch {
    pub(super) bufs: ReadBufs,
    pub(super) stored: Vec<f64>,
    pub(super) probs: Vec<f64>,
    pub(super) r: Vec<f64>,
    fast: FastScratch,
}
