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
//!
//! **Float32 bounds first.** Canonical gains cost an f64 distance and an
//! `exp` a pair, and the first pass alone meets every pair. So the heap
//! holds upper bounds made from the float32 distances (`Kernel::upper`),
//! eight rows a sweep; a row's canonical gain is computed only when its
//! fresh bound reaches the head of the heap, and a pick is made only on a
//! canonical gain computed at the current step. A bound only has to be
//! an upper bound for this to be the plain greedy; how tight it is decides
//! how many canonical gains are computed (the note says).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;

use rayon::prelude::*;

use super::Picked;
use super::kmeans::Reader;
use super::probcover;
use crate::backend::cpu::per_isa;
use crate::batch::dist::{
    GROUP, ROWS, Simd, X16, X16Rows, sq_dist_f64, transpose_groups, x16_kernel, x16_rows_kernel,
};
use crate::batch::lazy::round_up;
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
    // Normal, not just positive: the bounds divide by 2σ², and its
    // inverse must be finite (`Kernel::scale`).
    if !(two_s2.is_normal() && two_s2 > 0.0) {
        return Err(Error::Config(format!(
            "maxherding's kernel width σ = {} gives 2σ² = {two_s2}: give a --delta between about 1e-150 and 1e150",
            s2.sqrt()
        )));
    }
    let kernel = Kernel {
        x: &x,
        t: transpose_groups(&x, rd.d),
        x16: x16_kernel(rd.simd),
        rows8: x16_rows_kernel(rd.simd),
        isa: rd.simd,
        d: rd.d,
        two_s2,
        eps: rd.eps,
        abs: rd.abs,
    };
    let n = kernel.rows();
    let mut cover = Cover::new(n);
    let mut open = vec![true; n];
    for &l in job.exclusions.as_slice() {
        let l = l as usize;
        if l < n && open[l] {
            open[l] = false;
            kernel.absorb(l, &mut cover);
        }
    }
    let (picks, count) = greedy(&kernel, job, rd, &mut cover, &open)?;
    let covered: f64 = cover.c.iter().fold(0.0, |s, &c| s + c);
    let note = format!(
        "maxherding: σ = {:.6} ({how}); the labeled rows and the picks cover {:.1}% of the pool (mean of the best kernel value over its rows); {} bounds recomputed beyond the first {n}, {} gains computed in f64",
        s2.sqrt(),
        100.0 * covered / n.max(1) as f64,
        count.bounds,
        count.exact
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
    rows8: X16Rows,
    isa: Simd,
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
/// 10⁻⁹.) With c = 0 the limit is +∞: every term counts. `flim(y)` is the
/// same limit on the float32 distance: at or beyond it, the `q` of
/// [`k_upper`] reaches `lim(y)`; it is padded with −∞ to whole
/// groups, so a group's padding never counts.
struct Cover {
    c: Vec<f64>,
    lim: Vec<f64>,
    flim: Vec<f32>,
}

impl Cover {
    /// Group g's sixteen `c` (0 past the last row) and `flim`.
    fn group(&self, g: usize) -> ([f64; GROUP], [f32; GROUP]) {
        let (lo, n) = (g * GROUP, self.c.len());
        let mut c = [0f64; GROUP];
        let live = GROUP.min(n - lo);
        c[..live].copy_from_slice(&self.c[lo..lo + live]);
        let flim = self.flim[lo..lo + GROUP].try_into().expect("padded");
        (c, flim)
    }

    fn new(n: usize) -> Cover {
        let mut flim = vec![f32::INFINITY; n.div_ceil(GROUP) * GROUP];
        flim[n..].fill(f32::NEG_INFINITY);
        Cover {
            c: vec![0f64; n],
            lim: vec![f64::INFINITY; n],
            flim,
        }
    }
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
        // The inverse of `k_upper`'s q, rounded up: a float32 distance at
        // or beyond it gives a q at or beyond lim.
        let (a, _) = self.scale();
        let n = cover.c.len();
        cover
            .c
            .par_iter_mut()
            .zip(cover.lim.par_iter_mut())
            .zip(cover.flim[..n].par_iter_mut())
            .enumerate()
            .for_each(|(y, ((c, lim), flim))| {
                let k = self.at(p, y);
                if k > *c {
                    *c = k;
                    *lim = -k.ln() + 1e-9;
                    *flim = round_up((*lim / a * (1.0 + 1e-9) + self.abs) * (1.0 + 1e-9));
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

impl Kernel<'_> {
    /// Upper bounds on the canonical gains of `rows` (at most [`ROWS`])
    /// over the columns `cols` (`cols.start` a multiple of [`GROUP`]), from
    /// the float32 distances: each term's `k` from the distance's lower
    /// bound, so at least the canonical term, the terms added in any
    /// order; [`Self::widen`] covers that order's rounding.
    ///
    /// Why each term bounds the canonical one: the canonical distance is
    /// at least `(f − abs) / (1 + eps)` (the crate's float32 bound), so the
    /// canonical `q = d² / (2σ²)` is at least the `q` here, whose factor
    /// is rounded down by 10⁻¹³, far beyond the few roundings it takes;
    /// `exp` is within an ulp, so the canonical `k` is below
    /// `exp(−q)·(1 + 10⁻¹²) + 10⁻³⁰⁰` (the last for the subnormals), and
    /// rounding `k − c` is monotone in `k`. Where the float32 distance
    /// reaches `flim(y)` the canonical term is 0 ([`Cover`]). [`exp_neg`]
    /// stands in for `exp`, within 10⁻¹³ of it.
    fn upper_part(&self, rows: &[usize], cover: &Cover, cols: Range<usize>) -> [f64; ROWS] {
        let d = self.d;
        // A short batch repeats its last row in the kernel's spare slots.
        let xs: [&[f32]; ROWS] = std::array::from_fn(|r| self.row(rows[r.min(rows.len() - 1)]));
        let mut s = [0f64; ROWS];
        for g in cols.start / GROUP..cols.end.div_ceil(GROUP) {
            let f = (self.rows8)(&xs, &self.t[g * GROUP * d..(g + 1) * GROUP * d]);
            let (c, flim) = cover.group(g);
            terms(self.isa, &f, rows.len(), &flim, &c, self.scale(), &mut s);
        }
        s
    }

    /// [`Self::upper`] of every row at once, as the first pass needs: a
    /// pair's float32 distance and exponential serve both its rows (the
    /// distance's bound and each row's own `c` and `flim` are symmetric
    /// in the pair), so the N² pairs cost half. Tiles of sixteen rows by
    /// sixteen, the upper triangle; each worker adds into its own sums.
    fn first_bounds(&self, cover: &Cover) -> Vec<f64> {
        let (n, d) = (self.rows(), self.d);
        let groups = n.div_ceil(GROUP);
        let mut sums = (0..groups)
            .into_par_iter()
            .fold(
                || vec![0f64; groups * GROUP],
                |mut acc, i| {
                    // A padded group repeats row 0: its lanes' flim of −∞
                    // keeps those rows out of every sum, its own are dropped.
                    let row = |r: usize| self.row(if r < n { r } else { 0 });
                    let half = |h: usize| -> [&[f32]; ROWS] {
                        std::array::from_fn(|r| row(i * GROUP + h * ROWS + r))
                    };
                    let (lo, hi) = (half(0), half(1));
                    let (ci, fi) = cover.group(i);
                    for j in i..groups {
                        let g = &self.t[j * GROUP * d..(j + 1) * GROUP * d];
                        let (f0, f1) = ((self.rows8)(&lo, g), (self.rows8)(&hi, g));
                        let mut f = [[0f32; GROUP]; GROUP];
                        f[..ROWS].copy_from_slice(&f0);
                        f[ROWS..].copy_from_slice(&f1);
                        let (cj, fj) = cover.group(j);
                        let (head, tail) = acc.split_at_mut(j * GROUP);
                        let si: &mut [f64; GROUP] = if i == j {
                            (&mut tail[..GROUP]).try_into().expect("a group")
                        } else {
                            (&mut head[i * GROUP..(i + 1) * GROUP])
                                .try_into()
                                .expect("a group")
                        };
                        let mut sj = [0f64; GROUP];
                        tile(
                            self.isa,
                            &f,
                            (&fj, &cj),
                            (&fi, &ci),
                            i != j,
                            self.scale(),
                            (si, &mut sj),
                        );
                        for (t, s) in tail[..GROUP].iter_mut().zip(sj) {
                            *t += s;
                        }
                    }
                    acc
                },
            )
            .reduce(
                || vec![0f64; groups * GROUP],
                |mut a, b| {
                    for (a, b) in a.iter_mut().zip(b) {
                        *a += b;
                    }
                    a
                },
            );
        sums.truncate(n);
        let w = self.widen();
        sums.iter_mut().for_each(|s| *s *= w);
        sums
    }

    /// `(a, abs)` of [`k_upper`]'s `q = (f − abs)·a`: the float32 distance's
    /// lower bound over 2σ², its factor rounded down by 10⁻¹³.
    fn scale(&self) -> (f64, f64) {
        ((1.0 - 1e-13) / ((1.0 + self.eps) * self.two_s2), self.abs)
    }

    /// The factor that lifts a sum of [`Self::upper_part`]'s terms, added
    /// in any order, above the canonical sum of terms no larger: both sums
    /// of nonnegative terms are within `γ(n + n / BLOCK + 2)` of their
    /// exact values (Higham §4.2), doubled, with room for this product.
    fn widen(&self) -> f64 {
        let n = self.rows();
        let gamma = (n + n / BLOCK + 2) as f64 * f64::EPSILON / 2.0;
        1.0 + 4.0 * gamma
    }

    /// [`Self::upper_part`] over every column, blocks in parallel, widened.
    fn upper(&self, rows: &[usize], cover: &Cover) -> [f64; ROWS] {
        let n = self.rows();
        let parts: Vec<[f64; ROWS]> = (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| self.upper_part(rows, cover, b * BLOCK..((b + 1) * BLOCK).min(n)))
            .collect();
        let mut s = [0f64; ROWS];
        for p in parts {
            for (s, p) in s.iter_mut().zip(p) {
                *s += p;
            }
        }
        s.map(|s| s * self.widen())
    }
}

per_isa! {
    /// One group's upper terms ([`Kernel::upper_part`]) added to `s`, for
    /// the first `rows` rows of `f` (the group's float32 distances from
    /// each), compiled for the CPU's vector extensions: a row none of
    /// whose sixteen distances is under `flim` adds nothing, and is told
    /// by one comparison.
    fn terms(
        f: &[[f32; GROUP]; ROWS],
        rows: usize,
        flim: &[f32; GROUP],
        c: &[f64; GROUP],
        scale: (f64, f64),
        s: &mut [f64; ROWS],
    ) -> () {
        for (f, s) in f.iter().zip(s.iter_mut()).take(rows) {
            let mut any = false;
            for l in 0..GROUP {
                any |= f[l] < flim[l];
            }
            if !any {
                continue;
            }
            let mut t = [0f64; GROUP];
            for l in 0..GROUP {
                let v = k_upper(f[l], scale) - c[l];
                t[l] = if f[l] < flim[l] && v > 0.0 { v } else { 0.0 };
            }
            *s += lane_sum(t);
        }
    }
}

per_isa! {
    /// One tile of [`Kernel::first_bounds`]: `f[r][l]`, the float32
    /// distance from row r of group I to row l of group J, adds each row
    /// of I its terms over J's rows (`cols`: J's `flim` and `c`) into
    /// `sums.0`, and, when `mirror` (I ≠ J), each row of J its terms over
    /// I's rows (`rows`) into `sums.1`, from the same `exp`.
    fn tile(
        f: &[[f32; GROUP]; GROUP],
        cols: (&[f32; GROUP], &[f64; GROUP]),
        rows: (&[f32; GROUP], &[f64; GROUP]),
        mirror: bool,
        scale: (f64, f64),
        sums: (&mut [f64; GROUP], &mut [f64; GROUP]),
    ) -> () {
        let ((fj, cj), (fi, ci), (si, sj)) = (cols, rows, sums);
        for (r, f) in f.iter().enumerate() {
            let mut t = [0f64; GROUP];
            for l in 0..GROUP {
                let k = k_upper(f[l], scale);
                let v = k - cj[l];
                t[l] = if f[l] < fj[l] && v > 0.0 { v } else { 0.0 };
                let w = k - ci[r];
                sj[l] += if mirror && f[l] < fi[r] && w > 0.0 { w } else { 0.0 };
            }
            si[r] += lane_sum(t);
        }
    }
}

/// An upper bound on the canonical kernel value of a pair whose float32
/// squared distance is `f`, `scale` from [`Kernel::scale`];
/// [`Kernel::upper_part`] says why it holds.
#[inline(always)]
fn k_upper(f: f32, (a, abs): (f64, f64)) -> f64 {
    // Beyond q = 700, exp(−700) ≈ 10⁻³⁰⁴ still bounds the value.
    let q = ((f as f64 - abs).max(0.0) * a).min(700.0);
    exp_neg(q) * (1.0 + 1e-12) + 1e-300
}

/// The sum of sixteen lanes, pairwise (any order will do: `widen` covers
/// every one).
#[inline(always)]
fn lane_sum(mut t: [f64; GROUP]) -> f64 {
    let mut w = GROUP;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            t[l] += t[l + w];
        }
    }
    t[0]
}

/// 1/j! for j = 0 to 13.
const INV_FACT: [f64; 14] = {
    let mut f = [1.0; 14];
    let mut j = 1;
    while j < 14 {
        f[j] = f[j - 1] / j as f64;
        j += 1;
    }
    f
};

/// `exp(−q)` for `0 ≤ q ≤ 708`, within a relative 10⁻¹³ of the true value
/// (the test measures under 10⁻¹⁵ against `exp`), in plain arithmetic that
/// vectorizes: `exp(−q) = 2⁻ⁿ·eʳ` with n the integer nearest `q / ln 2`
/// and `r = n·ln 2 − q`, `|r| ≤ ln 2 / 2` (Cody and Waite's split of
/// ln 2), `eʳ` by its Taylor series to degree 13 (remainder under
/// `0.35¹⁴ / 14! < 10⁻¹⁶`), `2⁻ⁿ` set in the exponent bits.
#[inline(always)]
fn exp_neg(q: f64) -> f64 {
    // 1.5·2⁵²: adding it rounds to an integer held in the low bits.
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    // fdlibm's split: ln 2's first 32 bits, and the rest.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let big = q * std::f64::consts::LOG2_E + MAGIC;
    let n = big - MAGIC;
    // n·ln 2 − q: n·LN2_HI is exact (n < 2¹¹), and so is its difference
    // from q (Sterbenz), so r is within an ulp of its own.
    let r = (n * LN2_HI - q) + n * LN2_LO;
    // Horner on 1/j!, j = 13 down to 0: eʳ.
    let mut p = INV_FACT[13];
    for &c in INV_FACT[..13].iter().rev() {
        p = p * r + c;
    }
    p * f64::from_bits((1023 - (big.to_bits() - MAGIC.to_bits())) << 52)
}

/// What the greedy computed beyond the first pass: float32 bounds and
/// canonical gains.
#[derive(Default)]
struct Count {
    bounds: u64,
    exact: u64,
}

/// The lazy greedy from `cover` over the `open` rows: the picks (row,
/// gain) and what it computed.
fn greedy(
    kernel: &Kernel,
    job: &Job,
    rd: &Reader,
    cover: &mut Cover,
    open: &[bool],
) -> Result<(Vec<(u64, f64)>, Count)> {
    if rd.progress.cancelled() {
        return Err(Error::Cancelled);
    }
    // Every selectable row's bound before the first pick: each an upper
    // bound from then on.
    let mut heap: BinaryHeap<Entry> = kernel
        .first_bounds(cover)
        .into_iter()
        .enumerate()
        .filter(|&(row, _)| open[row])
        .map(|(row, u)| Entry::bound(u, row, 0))
        .collect::<Vec<_>>()
        .into();
    let mut picks: Vec<(u64, f64)> = Vec::with_capacity(job.k.min(open.len()));
    let mut count = Count::default();
    while picks.len() < job.k {
        if rd.progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let step = picks.len();
        let Some(top) = heap.pop() else { break };
        if top.step != step {
            // The stale rows at the head, bounded together in one sweep.
            let mut rows = vec![top.row];
            while rows.len() < ROWS {
                match heap.peek() {
                    Some(e) if e.step != step => rows.push(e.row),
                    _ => break,
                }
                heap.pop();
            }
            count.bounds += rows.len() as u64;
            for (&row, u) in rows.iter().zip(kernel.upper(&rows, cover)) {
                heap.push(Entry::bound(u, row, step));
            }
        } else if !top.exact {
            // A bound of 0 holds the gain to 0; any other is replaced by
            // the canonical gain.
            let gain = if top.bound > 0.0 {
                count.exact += 1;
                kernel.gain(top.row, cover)
            } else {
                0.0
            };
            heap.push(Entry {
                bound: gain,
                exact: true,
                ..top
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
    Ok((picks, count))
}

/// A bound on a row's gain computed at `step` (the number of picks then),
/// the canonical gain itself if `exact`: an upper bound on its gain at any
/// later step.
struct Entry {
    bound: f64,
    row: usize,
    step: usize,
    exact: bool,
}

impl Entry {
    fn bound(bound: f64, row: usize, step: usize) -> Entry {
        Entry {
            bound,
            row,
            step,
            exact: false,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::dist::{gamma32, underflow32};
    use crate::rng::splitmix64;

    fn bits(seed: u64, i: u64) -> u64 {
        splitmix64(splitmix64(seed) ^ i)
    }

    #[test]
    fn exp_neg_is_within_its_stated_bound_of_exp() {
        let mut qs: Vec<f64> = (0..2_000_000).map(|i| i as f64 * 708.0 / 2e6).collect();
        // Both sides of every reduction boundary, (n + ½)·ln 2, and the ends.
        for n in 0..1022 {
            let b = (n as f64 + 0.5) * std::f64::consts::LN_2;
            qs.extend([b.next_down(), b, b.next_up()]);
        }
        qs.extend([0.0, 1e-300, 5e-324, 708.0]);
        let mut worst = 0f64;
        for q in qs.into_iter().filter(|&q| q <= 708.0) {
            let (got, want) = (exp_neg(q), (-q).exp());
            worst = worst.max((got / want - 1.0).abs());
        }
        // Well inside the 1e-13 the upper bounds rely on.
        assert!(worst < 1e-15, "{worst:e}");
    }

    /// A kernel over `x` (rows of `d`), as `pick` makes it.
    fn kernel<'a>(x: &'a [f32], d: usize, sigma: f64, isa: Simd) -> Kernel<'a> {
        Kernel {
            x,
            t: transpose_groups(x, d),
            x16: x16_kernel(isa),
            rows8: x16_rows_kernel(isa),
            isa,
            d,
            two_s2: 2.0 * sigma * sigma,
            eps: gamma32(d + 2),
            abs: underflow32(d),
        }
    }

    #[test]
    fn float32_bounds_hold_every_canonical_gain_from_above_and_closely() {
        for isa in [Simd::Scalar, Simd::detect()] {
            for (n, d, sigma) in [
                (700, 5, 0.05),
                (1500, 24, 1.5),
                (300, 3, 40.0),
                (4200, 8, 0.9),
            ] {
                // Clustered rows on a coarse grid: exact duplicates (d = 0),
                // near pairs, and pairs whose q reaches the clamp at 700.
                let x: Vec<f32> = (0..n * d)
                    .map(|i| {
                        let (r, j) = (i / d, i % d);
                        let centre = (bits(9, (r % 7) as u64) % 5) as f32 * 2.0;
                        let jitter = (bits(11, i as u64) % 9) as f32 / 8.0;
                        centre + if r % 3 == 0 { 0.0 } else { jitter } + j as f32 * 0.01
                    })
                    .collect();
                let k = kernel(&x, d, sigma, isa);
                let mut cover = Cover::new(n);
                let mut rng = 0u64;
                for round in 0..4 {
                    let rows: Vec<usize> = (0..ROWS)
                        .map(|i| (bits(round, i as u64) % n as u64) as usize)
                        .collect();
                    let first = k.first_bounds(&cover);
                    for take in [1, 3, ROWS] {
                        let upper = k.upper(&rows[..take], &cover);
                        let whole = k.upper_part(&rows[..take], &cover, 0..n);
                        for (r, &row) in rows[..take].iter().enumerate() {
                            let exact = k.gain(row, &cover);
                            let u = upper[r];
                            assert!(
                                u >= exact,
                                "{isa:?} n {n} σ {sigma} row {row}: {u} < {exact}"
                            );
                            assert!(whole[r] * k.widen() >= exact, "n {n} one sweep");
                            assert!(first[row] >= exact, "n {n} σ {sigma} row {row}: first pass");
                            assert!(first[row] <= u * (1.0 + 1e-9) + 1e-12, "n {n} first pass");
                            // Close: within twice what the float32 distance's
                            // bound allows each term, k·q·2ε (and exp's margin).
                            let slack: f64 = (0..n)
                                .map(|y| {
                                    let q = sq_dist_f64(k.row(row), k.row(y)) / k.two_s2;
                                    (-q).exp() * (q * 2.0 * k.eps + 2e-12)
                                })
                                .sum();
                            assert!(
                                u - exact <= 2.0 * slack + 1e-12 * exact,
                                "n {n} σ {sigma}: {u} − {exact} > 2·{slack}"
                            );
                        }
                    }
                    // Cover more rows: the limits start to skip terms.
                    for _ in 0..3 {
                        rng += 1;
                        k.absorb((bits(77, rng) % n as u64) as usize, &mut cover);
                    }
                }
            }
        }
    }
}
