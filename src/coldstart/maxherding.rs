//! MaxHerding (Bae, Noh and Sutherland, ECCV 2024): greedy maximum of the
//! generalized coverage `C(L) = Σ_y max_{s ∈ L} k(s, y)` under the Gaussian
//! kernel `k(x, y) = exp(−‖x − y‖² / (2σ²))`, y over every row. ProbCover
//! is the same greedy under a 0/1 ball; a smooth kernel makes the picks
//! far less sensitive to its width (docs/coldstart.md measures both).
//!
//! The canonical definition, which every path computes bit for bit:
//!
//! - `‖x − y‖²` is the crate's canonical f64 squared distance
//!   (`batch::dist::sq_dist_f64`), and `k = exp(−d² / (2σ²))` in
//!   f64, `2σ²` rounded once.
//! - `c(y)` is the largest `k(s, y)` over the labeled and picked rows s
//!   (0 with none).
//! - A row's gain is `Σ_y max(0, k(x, y) − c(y))`: each block of
//!   [`BLOCK`] rows summed in row order, the blocks' sums in block order.
//! - Each pick is the selectable row of largest gain, ties to the lower
//!   row; its score is that gain. If every gain is 0 (the pool is covered
//!   to the last bit), the remaining picks follow the `random` strategy's
//!   seeded draw, as ProbCover's do.
//!
//! **Lazy greedy, exactly.** The coverage is a facility-location function,
//! so a row's gain can only fall as rows are picked, and the computed one
//! too: `c(y)` only grows, rounding is monotone, so each term
//! `max(0, k − c)` and each partial sum can only fall. A gain computed
//! earlier is therefore an upper bound on the gain now, bit for bit, and
//! the greedy recomputes only the rows whose old gain still leads (Minoux
//! 1978). A pick is made only with its gain computed at the current step
//! and at the head of the (gain, lower row) order, so the picks are the
//! plain greedy's on every thread count.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::Picked;
use super::kmeans::Reader;
use super::probcover;
use crate::batch::dist::{GROUP, X16, sq_dist_f64, transpose_groups, x16_kernel};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::score::random_priority;

/// Rows per block of a gain's sum: fixed, so the sum's order (and its
/// bits) does not depend on the threads.
pub const BLOCK: usize = 4096;

// A block's rows are whole groups of the float32 prefilter.
const _: () = assert!(BLOCK.is_multiple_of(GROUP));

/// The picks (row, gain), and a note on σ and what the picks cover.
pub(crate) fn pick(rd: &Reader, job: &Job, iterations: usize) -> Result<Picked> {
    let x = probcover::load(rd)?;
    let (s2, how, refined) = match job.delta {
        Some(sigma) => {
            if !(sigma.is_finite() && sigma > 0.0) {
                return Err(Error::Config(format!(
                    "--delta (maxherding's kernel width σ) must be a positive distance, not {sigma}"
                )));
            }
            (sigma * sigma, "given".to_string(), 0)
        }
        None => probcover::choose_delta(rd, &x, job, iterations)?,
    };
    let two_s2 = 2.0 * s2;
    if !(two_s2.is_finite() && two_s2 > 0.0) {
        return Err(Error::Config(format!(
            "maxherding's kernel width σ = {} gives 2σ² = {two_s2}: give a --delta between about 1e-150 and 1e150",
            s2.sqrt()
        )));
    }
    let kernel = Kernel {
        x: &x,
        t: transpose_groups(&x, rd.d),
        x16: x16_kernel(rd.simd),
        d: rd.d,
        two_s2,
        eps: rd.eps,
        abs: rd.abs,
    };
    let n = kernel.rows();
    let mut cover = Cover {
        c: vec![0f64; n],
        lim: vec![f64::INFINITY; n],
    };
    let mut open = vec![true; n];
    for &l in job.exclusions.as_slice() {
        let l = l as usize;
        if l < n && open[l] {
            open[l] = false;
            kernel.absorb(l, &mut cover);
        }
    }
    let (picks, recomputed) = greedy(&kernel, job, rd, &mut cover, &open)?;
    let covered: f64 = cover.c.iter().fold(0.0, |s, &c| s + c);
    let note = format!(
        "maxherding: σ = {:.6} ({how}); the labeled rows and the picks cover {:.1}% of the pool (mean of the best kernel value over its rows); {recomputed} gains recomputed beyond the first {n}",
        s2.sqrt(),
        100.0 * covered / n.max(1) as f64
    );
    Ok(Picked {
        picks,
        refined,
        note,
    })
}

/// The embeddings (also as transposed groups for the float32 prefilter)
/// and the kernel's `2σ²`.
struct Kernel<'a> {
    x: &'a [f32],
    t: Vec<f32>,
    x16: X16,
    d: usize,
    two_s2: f64,
    /// The float32 squared distance's relative and absolute bound.
    eps: f64,
    abs: f64,
}

/// Each row's coverage c(y), and `lim(y) = −ln c(y) + 10⁻⁹`: wherever
/// `d² / (2σ²)`, rounded, is at least `lim(y)`, the canonical `k(x, y)`
/// rounds below c(y), so the term `max(0, k − c)` is exactly 0. (k ≤
/// c·e^(−10⁻⁹ + 2·10⁻¹³) before its rounding, the logarithm's error taken
/// out; `exp`'s error of at most an ulp, 2.2·10⁻¹⁶, cannot close a gap of
/// 10⁻⁹.) With c = 0 the limit is +∞: every term counts.
struct Cover {
    c: Vec<f64>,
    lim: Vec<f64>,
}

impl Kernel<'_> {
    fn rows(&self) -> usize {
        self.x.len() / self.d.max(1)
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// `k(i, y) = exp(−‖x_i − x_y‖² / (2σ²))`, canonically.
    fn at(&self, i: usize, y: usize) -> f64 {
        (-sq_dist_f64(self.row(i), self.row(y)) / self.two_s2).exp()
    }

    /// Row p joins the covering rows: `c(y) = max(c(y), k(p, y))`.
    fn absorb(&self, p: usize, cover: &mut Cover) {
        cover
            .c
            .par_iter_mut()
            .zip(cover.lim.par_iter_mut())
            .enumerate()
            .for_each(|(y, (c, lim))| {
                let k = self.at(p, y);
                if k > *c {
                    *c = k;
                    *lim = -k.ln() + 1e-9;
                }
            });
    }

    /// Row i's gain over `cover`, in the canonical order. A term is
    /// skipped only where it is exactly 0: first where the float32
    /// distance's lower bound already reaches `lim(y)` (most rows, once a
    /// few are picked), then where the canonical distance does; the rest
    /// are the canonical terms, added in row order, so the sum's bits are
    /// those of adding every term.
    fn gain(&self, i: usize, cover: &Cover) -> f64 {
        let (n, d) = (cover.c.len(), self.d);
        let xi = self.row(i);
        let blocks: Vec<f64> = (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let (lo, hi) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
                let mut s = 0f64;
                // BLOCK is a multiple of GROUP: a block's groups are its own.
                for g in lo / GROUP..hi.div_ceil(GROUP) {
                    let f = (self.x16)(xi, &self.t[g * GROUP * d..(g + 1) * GROUP * d]);
                    for (l, &f) in f.iter().enumerate() {
                        let y = g * GROUP + l;
                        if y >= hi {
                            break;
                        }
                        let lim = cover.lim[y];
                        let low = ((f as f64 - self.abs) / (1.0 + self.eps)).max(0.0);
                        if low / self.two_s2 >= lim {
                            continue;
                        }
                        let q = sq_dist_f64(xi, self.row(y)) / self.two_s2;
                        if q >= lim {
                            continue;
                        }
                        // (−q).exp() is `at`'s value: negation is exact.
                        let t = (-q).exp() - cover.c[y];
                        if t > 0.0 {
                            s += t;
                        }
                    }
                }
                s
            })
            .collect();
        blocks.iter().fold(0.0, |s, &b| s + b)
    }
}

/// The lazy greedy from `cover` over the `open` rows: the picks (row,
/// gain) and how many gains were recomputed after the first pass.
fn greedy(
    kernel: &Kernel,
    job: &Job,
    rd: &Reader,
    cover: &mut Cover,
    open: &[bool],
) -> Result<(Vec<(u64, f64)>, u64)> {
    if rd.progress.cancelled() {
        return Err(Error::Cancelled);
    }
    // Every selectable row's gain before the first pick: each an upper
    // bound from then on.
    let mut heap: BinaryHeap<Entry> = (0..open.len())
        .into_par_iter()
        .filter(|&i| open[i])
        .map(|row| Entry {
            bound: kernel.gain(row, cover),
            row,
            step: 0,
        })
        .collect::<Vec<_>>()
        .into();
    let mut picks: Vec<(u64, f64)> = Vec::with_capacity(job.k.min(open.len()));
    let mut recomputed = 0u64;
    while picks.len() < job.k {
        if rd.progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let Some(top) = heap.pop() else { break };
        if top.step != picks.len() {
            recomputed += 1;
            heap.push(Entry {
                bound: kernel.gain(top.row, cover),
                row: top.row,
                step: picks.len(),
            });
        } else if top.bound > 0.0 {
            picks.push((top.row as u64, top.bound));
            kernel.absorb(top.row, cover);
        } else {
            // Covered to the last bit: the seeded draw decides the rest.
            heap.push(top);
            let mut rest: Vec<usize> = heap.drain().map(|e| e.row).collect();
            rest.sort_by(|&a, &b| {
                let key = |r: usize| random_priority(job.seed, r as u64);
                key(b).total_cmp(&key(a)).then(a.cmp(&b))
            });
            let room = job.k - picks.len();
            picks.extend(rest.into_iter().take(room).map(|r| (r as u64, 0.0)));
            break;
        }
    }
    Ok((picks, recomputed))
}

/// A row's gain computed at `step` (the number of picks then): an upper
/// bound on its gain at any later step.
struct Entry {
    bound: f64,
    row: usize,
    step: usize,
}

impl Ord for Entry {
    // The largest gain first, ties to the lower row.
    fn cmp(&self, other: &Self) -> Ordering {
        self.bound
            .total_cmp(&other.bound)
            .then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}
