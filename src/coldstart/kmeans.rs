//! Seeded, exact k-means: k-means++ seeding by the exponential race, then
//! Lloyd's iterations to convergence or a cap. TypiClust, the `kmeans`
//! baseline and ProbCover's choice of δ all cluster through here.
//!
//! # The canonical clustering
//! - **Seeding.** The first centre is the row with the most random bits
//!   `bits(seed, 0, row)`; centre `t` is the arg-max of the race key
//!   `D²(x) / E_t(x)` ([`crate::batch::rng`]): k-means++ sampling (Arthur
//!   and Vassilvitskii 2007) as an arg-max, so it does not depend on a
//!   prefix sum's order. `D²` is the canonical squared distance
//!   ([`crate::batch::dist`]) to the nearest centre so far.
//! - **Assignment.** Each row goes to the centre at the smallest canonical
//!   squared distance, ties to the lower centre.
//! - **Update.** A centre becomes the mean of its rows, summed in f64 in
//!   row order and rounded to float32 once; a centre that loses every row
//!   stays where it was.
//! - **Stop.** When an assignment changes no row, or after `max_iter`
//!   assignments.
//!
//! # Fast and exact
//! Distances run in float32 with the bound of [`crate::batch::dist`]; a
//! row whose nearest centre the bound cannot decide is re-checked in f64.
//! After the first assignment, a row keeps its centre without any distance
//! when Hamerly's test proves it (Hamerly 2010): an upper bound on its
//! distance to its centre, grown by that centre's move, stays strictly
//! below a lower bound on its distance to every other centre, shrunk by
//! the largest move. The bounds are rounded outwards, with a relative
//! margin far above the f64 error of a canonical distance, so a skipped
//! row has the assignment the canonical definition gives. Same seed, same
//! clusters, on every thread count and chunk size.

use rayon::prelude::*;

use crate::backend::Progress;
use crate::batch::coreset::Euclid;
use crate::batch::dist::{GROUP, Simd, gamma32, sq_dist_f64, underflow32};
use crate::batch::dist::{ROWS, transpose_groups, x16_rows_kernel};
use crate::batch::lazy::{Key, Lazy, round_up};
use crate::batch::rng::bits;
use crate::batch::{Bufs, arg_max, check_embedding_rows, par_pass, read_rows, rows_per_chunk};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Pool;

/// Relative margin on the pruning bounds: far above a canonical
/// distance's f64 error (about (D + 2)·2⁻⁵³), far below any gap that
/// matters.
const MARGIN: f64 = 1e-9;

/// Lloyd's assignments at most, unless the job says otherwise.
pub const DEFAULT_ITERATIONS: usize = 100;

/// Reads embedding rows in chunks, in parallel, with the float32 bound.
pub(crate) struct Reader<'a> {
    pub emb: &'a Pool<'a>,
    pub d: usize,
    pub chunk: u64,
    pub simd: Simd,
    /// Relative and absolute bound of a float32 squared distance.
    pub eps: f64,
    pub abs: f64,
    pub progress: &'a dyn Progress,
    /// Where the float32 distances of Lloyd's assignments and of
    /// ProbCover run when not here (the GPU).
    pub elsewhere: Option<&'a dyn Distances32>,
}

/// A row's first nearest centre by float32 squared distance, that
/// distance, and the smallest to any other centre (`f32::MAX` if none).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Near {
    pub best: u32,
    pub least: f32,
    pub second: f32,
}

/// Float32 squared distances between the rows, computed elsewhere (the
/// GPU: `coldstart/gpu.rs`) in any summation order: the bound of
/// [`crate::batch::dist`] holds for each one, and the caller decides
/// with it what the float32 values cannot.
pub(crate) trait Distances32: Sync {
    /// Each row's nearest of `centres` (K x D, row-major).
    fn nearest(&self, centres: &[f32]) -> Result<Vec<Near>>;

    /// Every pair of rows i < j at a distance below `skip`, with whether
    /// it is not below `surely` (then f64 must decide).
    fn pairs_below(&self, skip: f32, surely: f32) -> Result<Vec<(u32, u32, bool)>>;

    /// Each row's smallest distance to a row whose id in `ids` differs
    /// from its own (infinite if none).
    fn nearest_other(&self, ids: &[u32]) -> Result<Vec<f32>>;
}

impl<'a> Reader<'a> {
    pub fn new(emb: &'a Pool<'a>, job: &Job, progress: &'a dyn Progress) -> Reader<'a> {
        let d = emb.classes();
        Reader {
            emb,
            d,
            chunk: rows_per_chunk(job, emb),
            simd: Simd::detect(),
            eps: gamma32(d + 2),
            abs: underflow32(d),
            progress,
            elsewhere: None,
        }
    }

    /// The interval holding the exact squared distance of a float32 one.
    #[inline]
    pub fn interval(&self, f: f32) -> (f64, f64) {
        let f = f as f64;
        (
            ((f - self.abs) / (1.0 + self.eps)).max(0.0),
            (f + self.abs) / (1.0 - self.eps),
        )
    }

    /// The largest float32 distance whose interval can reach the upper
    /// end of `least`'s, rounded up: a centre farther than this in float32
    /// is farther than the nearest one in exact arithmetic.
    fn reach(&self, least: f32) -> f32 {
        let (_, hi) = self.interval(least);
        round_up((hi * (1.0 + self.eps) + self.abs) * (1.0 + 1e-12))
    }

    /// One row, as float32.
    pub fn row(&self, r: u64) -> Result<Vec<f32>> {
        let mut x = vec![0f32; self.d];
        self.emb.row_f32(r, &mut x)?;
        Ok(x)
    }

    /// Runs `f(scratch, first row, rows, state)` over the rows in chunks, in
    /// parallel, with `state` split alike; results in chunk order.
    pub fn pass<T: Send, I, R: Send>(
        &self,
        state: &mut [T],
        init: impl Fn() -> I + Sync + Send,
        f: impl Fn(&mut I, u64, &[f32], &mut [T]) -> R + Sync + Send,
    ) -> Result<Vec<R>> {
        let (emb, progress) = (self.emb, self.progress);
        par_pass(
            state,
            self.chunk,
            || (Bufs::default(), init()),
            |(bufs, scratch), start, s| {
                if progress.cancelled() {
                    return Err(Error::Cancelled);
                }
                let rows = read_rows(emb, start, start + s.len() as u64, bufs)?;
                progress.advance((rows.len() * 4) as u64);
                Ok(f(scratch, start, &rows, s))
            },
        )
    }

    /// Checks every row (finite, within the float32 limit) in one pass.
    pub fn validate(&self) -> Result<()> {
        let mut none = vec![(); self.emb.rows() as usize];
        let emb = self.emb;
        let checks = self.pass(
            &mut none,
            || (),
            |_, start, rows, _| check_embedding_rows(emb, start, rows),
        )?;
        checks.into_iter().collect()
    }
}

/// A clustering: the centres, each row's centre, and how it ended.
pub(crate) struct Clusters {
    /// K x D, row-major.
    pub centres: Vec<f32>,
    /// Each row's centre.
    pub assign: Vec<u32>,
    /// Lloyd's assignments run.
    pub iterations: usize,
    /// Whether the last assignment changed nothing.
    pub converged: bool,
    /// Rows whose nearest centre was re-checked in f64.
    pub refined: u64,
    /// Time spent seeding, and in Lloyd's iterations.
    pub times: (std::time::Duration, std::time::Duration),
}

impl Clusters {
    /// The rows of each cluster, ascending.
    pub fn members(&self, k: usize) -> Vec<Vec<u64>> {
        let mut m = vec![Vec::new(); k];
        for (r, &a) in self.assign.iter().enumerate() {
            m[a as usize].push(r as u64);
        }
        m
    }
}

/// Clusters every row of `rd`'s embeddings into `k` clusters (rows are
/// validated on the way).
pub(crate) fn fit(rd: &Reader, k: usize, seed: u64, max_iter: usize) -> Result<Clusters> {
    let n = rd.emb.rows();
    if k == 0 || k as u64 > n {
        return Err(Error::Config(format!(
            "{}: k-means into {k} clusters needs at least one cluster and a row for each; the embeddings have {n} rows",
            rd.emb.path().display()
        )));
    }
    let t0 = std::time::Instant::now();
    let (mut centres, mut refined) = seed_centres(rd, k, seed)?;
    let seeded = t0.elapsed();
    let mut state = vec![RowState::default(); n as usize];
    let mut iterations = 0;
    let mut converged = false;
    let mut moves = vec![f64::INFINITY; k];
    while iterations < max_iter.max(1) {
        let (changed, r) = match rd.elsewhere {
            Some(far) => assign_from(rd, &centres, &far.nearest(&centres)?, &mut state)?,
            None => assign(rd, &centres, &moves, &mut state)?,
        };
        refined += r;
        iterations += 1;
        if changed == 0 {
            converged = true;
            break;
        }
        if iterations == max_iter.max(1) {
            break;
        }
        moves = update_means(rd, &state, &mut centres)?;
    }
    Ok(Clusters {
        centres,
        assign: state.iter().map(|s| s.centre).collect(),
        iterations,
        converged,
        refined,
        times: (seeded, t0.elapsed() - seeded),
    })
}

/// k-means++ by the exponential race: the centres, and the rows re-checked.
fn seed_centres(rd: &Reader, k: usize, seed: u64) -> Result<(Vec<f32>, u64)> {
    let (d, n) = (rd.d, rd.emb.rows());
    let mut none = vec![(); n as usize];
    let emb = rd.emb;
    let firsts = rd.pass(
        &mut none,
        || (),
        |_, start, rows, _| {
            check_embedding_rows(emb, start, rows)?;
            let keys =
                (0..(rows.len() / d) as u64).map(|i| (start + i, bits(seed, 0, start + i) as f64));
            Ok(arg_max(keys))
        },
    )?;
    let mut best = None;
    for f in firsts {
        best = arg_max(best.into_iter().chain(f?));
    }
    let (first, _) = best.ok_or_else(|| Error::Config("the pool is empty".into()))?;
    // The pass above validated every row.
    let mut space = Euclid::new(emb, rd.chunk, rd.progress).validated();
    space.add_centre(first)?;
    let mut lazy = Lazy::new(n, &[first]);
    for t in 1..k {
        let key = Key::Race { seed, t: t as u32 };
        let (row, _) = lazy
            .pick(&mut space, key, rd.progress)?
            .ok_or_else(|| Error::Config("no row left".into()))?;
        space.add_centre(row)?;
        lazy.take(row);
    }
    Ok((space.into_centres(), lazy.refined))
}

/// One chunk's scratch in an assignment: the rows to measure and their
/// float32 distances, [`ROWS`] rows at a time.
#[derive(Default)]
struct Scratch {
    measure: Vec<usize>,
    dists: Vec<f32>,
}

/// A row's centre and Hamerly's bounds on its distances (not squared).
#[derive(Clone, Copy)]
struct RowState {
    centre: u32,
    /// Upper bound on the distance to its centre.
    upper: f64,
    /// Lower bound on the distance to every other centre.
    lower: f64,
}

impl Default for RowState {
    fn default() -> Self {
        RowState {
            centre: u32::MAX,
            upper: f64::INFINITY,
            lower: 0.0,
        }
    }
}

/// One assignment: rows whose centre changed, and rows re-checked in f64.
/// `moves[j]` is how far centre `j` moved in the last update (infinite at
/// first, so every row is measured).
fn assign(
    rd: &Reader,
    centres: &[f32],
    moves: &[f64],
    state: &mut [RowState],
) -> Result<(u64, u64)> {
    let (d, k) = (rd.d, centres.len() / rd.d);
    let far = moves.iter().copied().fold(0.0, f64::max);
    let grouped = transpose_groups(centres, d);
    let x16 = x16_rows_kernel(rd.simd);
    let parts = rd.pass(state, Scratch::default, |sc: &mut Scratch, _, rows, s| {
        let (mut changed, mut refined) = (0u64, 0u64);
        sc.measure.clear();
        for (i, st) in s.iter_mut().enumerate() {
            if st.centre != u32::MAX {
                st.upper = (st.upper + moves[st.centre as usize]) * (1.0 + MARGIN);
                st.lower = (st.lower - far) * (1.0 - MARGIN);
                if st.upper * (1.0 + 2.0 * MARGIN) < st.lower {
                    continue;
                }
            }
            sc.measure.push(i);
        }
        // Rows measured together, ROWS at a time (the last block repeats
        // its last row).
        sc.dists.resize(ROWS * grouped.len() / d, 0.0);
        for block in sc.measure.chunks(ROWS) {
            let xs: [&[f32]; ROWS] = std::array::from_fn(|r| {
                let i = block[r.min(block.len() - 1)];
                &rows[i * d..(i + 1) * d]
            });
            let width = grouped.len() / d;
            for (g, group) in grouped.chunks_exact(GROUP * d).enumerate() {
                for (r, v) in x16(&xs, group).iter().enumerate() {
                    sc.dists[r * width + g * GROUP..r * width + (g + 1) * GROUP].copy_from_slice(v);
                }
            }
            for (r, &i) in block.iter().enumerate() {
                let dists = &sc.dists[r * width..r * width + k];
                let (a, upper, lower, re) = nearest_centre(rd, xs[r], centres, dists);
                refined += re as u64;
                changed += (a != s[i].centre) as u64;
                s[i] = RowState {
                    centre: a,
                    upper,
                    lower,
                };
            }
        }
        (changed, refined)
    })?;
    Ok(parts
        .into_iter()
        .fold((0, 0), |(c, r), (c2, r2)| (c + c2, r + r2)))
}

/// The canonical nearest centre from float32 distances `dists`, with
/// bounds on the distance to it and to every other centre, and whether
/// f64 had to decide.
fn nearest_centre(rd: &Reader, x: &[f32], centres: &[f32], dists: &[f32]) -> (u32, f64, f64, bool) {
    // The first smallest distance: its value lane by lane (vectorised),
    // then its first position.
    let least = lanes_min(dists, |_| true);
    let best = dists.iter().position(|&v| v == least).unwrap_or(0);
    let (_, hi) = rd.interval(least);
    // Centres whose lower bound reaches the best upper bound could be
    // nearest; any other is farther than `lower`. Inverting the interval
    // tests each float32 distance against one float32 threshold (a few
    // more close centres, never one fewer).
    let reach = rd.reach(least);
    let far = lanes_min(dists, |v| v > reach);
    let mut close = Vec::new();
    if dists.iter().filter(|&&v| v <= reach).count() > 1 {
        close.extend((0..dists.len()).filter(|&j| j != best && dists[j] <= reach));
    }
    let mut lower = match far < f32::INFINITY {
        true => rd.interval(far).0,
        false => f64::INFINITY,
    };
    if close.is_empty() {
        let up = hi.sqrt() * (1.0 + MARGIN);
        return (best as u32, up, lower.sqrt() * (1.0 - MARGIN), false);
    }
    close.push(best);
    close.sort_unstable();
    let d = rd.d;
    let exact: Vec<(usize, f64)> = close
        .iter()
        .map(|&j| (j, sq_dist_f64(x, &centres[j * d..(j + 1) * d])))
        .collect();
    let (a, da) = exact
        .iter()
        .copied()
        .fold((usize::MAX, f64::INFINITY), |b, (j, v)| {
            if v < b.1 { (j, v) } else { b }
        });
    // The runner-up among the close ones bounds the others from below too;
    // a tie makes the lower bound equal the upper, so the row is measured
    // again next time.
    for &(j, v) in &exact {
        if j != a {
            lower = lower.min(v);
        }
    }
    let up = da.sqrt() * (1.0 + MARGIN);
    (a as u32, up, lower.sqrt() * (1.0 - MARGIN), true)
}

/// One assignment from float32 nearest centres made elsewhere: a row
/// whose other centres are all beyond [`Reader::reach`] of its nearest
/// keeps that one; any other is measured in f64 against every centre
/// (the canonical nearest, ties to the lower centre). Returns the rows
/// whose centre changed and the rows measured in f64.
fn assign_from(
    rd: &Reader,
    centres: &[f32],
    near: &[Near],
    state: &mut [RowState],
) -> Result<(u64, u64)> {
    let (d, k) = (rd.d, centres.len() / rd.d);
    if rd.progress.cancelled() {
        return Err(Error::Cancelled);
    }
    rd.progress.advance(rd.emb.rows() * d as u64 * 4);
    if near.len() != state.len() {
        return Err(Error::Gpu(format!(
            "the device sent {} nearest centres for {} rows",
            near.len(),
            state.len()
        )));
    }
    let parts: Vec<Result<(u64, u64)>> = state
        .par_chunks_mut(rd.chunk.max(1) as usize)
        .zip(near.par_chunks(rd.chunk.max(1) as usize))
        .enumerate()
        .map(|(c, (s, near))| {
            let (mut changed, mut refined) = (0u64, 0u64);
            let start = c as u64 * rd.chunk.max(1);
            for (i, (st, n)) in s.iter_mut().zip(near).enumerate() {
                let a = if (n.best as usize) < k && n.second > rd.reach(n.least) {
                    n.best
                } else {
                    let x = rd.row(start + i as u64)?;
                    refined += 1;
                    let dists = centres.chunks_exact(d).map(|c| sq_dist_f64(&x, c));
                    let (a, _) = dists.enumerate().fold((0, f64::INFINITY), |b, (j, v)| {
                        if v < b.1 { (j, v) } else { b }
                    });
                    a as u32
                };
                changed += (a != st.centre) as u64;
                st.centre = a;
            }
            Ok((changed, refined))
        })
        .collect();
    parts
        .into_iter()
        .try_fold((0, 0), |(c, r), p| p.map(|(c2, r2)| (c + c2, r + r2)))
}

/// The smallest of `v` where `keep` holds (infinite if none), sixteen
/// lanes at a time so the compiler vectorises it.
#[inline(always)]
fn lanes_min(v: &[f32], keep: impl Fn(f32) -> bool) -> f32 {
    let mut m = [f32::INFINITY; GROUP];
    let chunks = v.chunks_exact(GROUP);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..GROUP {
            m[l] = if keep(c[l]) && c[l] < m[l] {
                c[l]
            } else {
                m[l]
            };
        }
    }
    let mut least = f32::INFINITY;
    for &x in m.iter().chain(rest.iter().filter(|&&x| keep(x))) {
        least = if x < least { x } else { least };
    }
    least
}

/// Moves each centre to the mean of its rows (f64 sums in row order) and
/// returns how far each moved, rounded up.
fn update_means(rd: &Reader, state: &[RowState], centres: &mut [f32]) -> Result<Vec<f64>> {
    let (d, n) = (rd.d, rd.emb.rows());
    let k = centres.len() / d;
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0u64; k];
    let mut bufs = Bufs::default();
    let mut start = 0;
    while start < n {
        if rd.progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let end = (start + rd.chunk).min(n);
        let rows = read_rows(rd.emb, start, end, &mut bufs)?;
        for (x, st) in rows
            .chunks_exact(d)
            .zip(&state[start as usize..end as usize])
        {
            let a = st.centre as usize;
            counts[a] += 1;
            for (s, &v) in sums[a * d..(a + 1) * d].iter_mut().zip(x) {
                *s += v as f64;
            }
        }
        start = end;
    }
    let moves = centres
        .par_chunks_mut(d)
        .zip(sums.par_chunks(d))
        .zip(counts.par_iter())
        .map(|((c, s), &count)| {
            if count == 0 {
                return 0.0;
            }
            let new: Vec<f32> = s.iter().map(|v| (v / count as f64) as f32).collect();
            let moved = sq_dist_f64(c, &new).sqrt() * (1.0 + MARGIN);
            c.copy_from_slice(&new);
            moved
        })
        .collect();
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InputForm;
    use crate::query::{ColdStart, Query};

    /// A device that sums the dimensions backwards and, among centres at
    /// the same float32 distance, names the last one nearest: legal (the
    /// tie makes the runner-up equal), so the host must decide those rows.
    struct Backwards {
        x: Vec<f32>,
        d: usize,
        ties: std::sync::atomic::AtomicU64,
    }

    impl Distances32 for Backwards {
        fn pairs_below(&self, _: f32, _: f32) -> Result<Vec<(u32, u32, bool)>> {
            unreachable!("k-means needs no pairs")
        }

        fn nearest_other(&self, _: &[u32]) -> Result<Vec<f32>> {
            unreachable!("k-means needs no other clusters")
        }

        fn nearest(&self, centres: &[f32]) -> Result<Vec<Near>> {
            let d = self.d;
            let near = self.x.chunks_exact(d).map(|x| {
                let mut n = Near {
                    best: 0,
                    least: f32::MAX,
                    second: f32::MAX,
                };
                for (j, c) in centres.chunks_exact(d).enumerate() {
                    let s = (0..d)
                        .rev()
                        .fold(0f32, |s, i| s + (x[i] - c[i]) * (x[i] - c[i]));
                    if j == 0 || s <= n.least {
                        n.second = if j == 0 { f32::MAX } else { n.least };
                        (n.least, n.best) = (s, j as u32);
                    } else if s < n.second {
                        n.second = s;
                    }
                }
                if n.second == n.least {
                    self.ties.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                n
            });
            Ok(near.collect())
        }
    }

    #[test]
    fn assignments_made_elsewhere_equal_the_cpus() {
        // Small integers: many rows sit at equal distances from two centres.
        let mut r = crate::rng::Rng::new(5);
        let d = 3;
        let x: Vec<f32> = (0..900).map(|_| r.below(4) as f32).collect();
        let pool = Pool::from_f32(&x, d).unwrap();
        let job = Job::new(Query::Cold(ColdStart::Kmeans), InputForm::probs(), 3);
        let dev = Backwards {
            x: x.clone(),
            d,
            ties: Default::default(),
        };
        for (k, chunk) in [(2, 0), (7, 64), (12, 1)] {
            let mut job = job.clone();
            job.chunk_rows = chunk;
            let mut rd = Reader::new(&pool, &job, &crate::Silent);
            let cpu = fit(&rd, k, 4, 100).unwrap();
            rd.elsewhere = Some(&dev);
            let there = fit(&rd, k, 4, 100).unwrap();
            assert_eq!(there.assign, cpu.assign, "k {k}");
            assert_eq!(there.centres, cpu.centres, "k {k}");
            assert_eq!(there.iterations, cpu.iterations, "k {k}");
        }
        assert!(dev.ties.into_inner() > 100, "the data must tie");
    }

    #[test]
    fn pruned_assignments_equal_full_ones() {
        // Three blobs and a few rows on the boundaries.
        let mut r = crate::rng::Rng::new(3);
        let d = 5;
        let mut x = Vec::new();
        for i in 0..600 {
            let c = (i % 3) as f32 * 4.0;
            for _ in 0..d {
                x.push(c + r.normal() as f32);
            }
        }
        let pool = Pool::from_f32(&x, d).unwrap();
        let job = Job::new(Query::Cold(ColdStart::Kmeans), InputForm::probs(), 3);
        let rd = Reader::new(&pool, &job, &crate::Silent);
        let fit = fit(&rd, 7, 11, 100).unwrap();
        assert!(fit.converged);
        // The converged assignment is the canonical nearest centre.
        for (i, row) in x.chunks_exact(d).enumerate() {
            let near = fit
                .centres
                .chunks_exact(d)
                .enumerate()
                .map(|(j, c)| (j, sq_dist_f64(row, c)))
                .fold(
                    (0, f64::INFINITY),
                    |b, (j, v)| if v < b.1 { (j, v) } else { b },
                );
            assert_eq!(fit.assign[i] as usize, near.0, "row {i}");
        }
    }
}
