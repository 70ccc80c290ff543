//! ProbCover (Yehuda, Dekel, Hacohen and Weinshall, NeurIPS 2022):
//! greedy maximum coverage of δ-balls.
//!
//! # The canonical definition
//! - **The graph.** An edge x → y wherever the canonical squared distance
//!   ([`crate::batch::dist`]) is below δ², self-loops included, as in the
//!   reference code (`deep-al/pycls/al/prob_cover.py`). The graph is
//!   symmetric, so each row's list serves both directions.
//! - **Coverage.** The labeled rows' balls are covered from the start. Each
//!   pick is the selectable row whose ball holds the most uncovered rows,
//!   ties to the lower row; its ball becomes covered. Once every ball is
//!   covered, the remaining picks follow the `random` strategy's seeded
//!   draw, as the reference falls back to random picks.
//! - **δ.** Given (`delta`), or the largest δ whose purity reaches `purity`
//!   over a k-means with `classes` clusters, as scikit-activeml chooses it:
//!   a ball is pure when every row in it shares its centre's cluster, and
//!   the purity is the fraction of pure balls. With `r(x)` the distance
//!   from x to the nearest row of another cluster, a ball is pure exactly
//!   when `r(x) ≥ δ`, so the largest such δ is the ⌈purity·N⌉-th largest
//!   `r(x)`: exact, with no grid of candidate δ (scikit-activeml tries a
//!   grid, on a dense N x N matrix).
//!
//! # Exact, in blocks
//! The graph is built in tiles of rows with float32 distances and the
//! bound of [`crate::batch::dist`]; a pair the bound cannot place on one
//! side of δ² is measured in f64. No N x N matrix exists: memory is the
//! embeddings (every row meets every other, so they are held, N·D·4 bytes)
//! plus the edges, 4 bytes per directed edge.

use rayon::prelude::*;

use super::Picked;
use super::kmeans::{Reader, fit};
use crate::batch::dist::{GROUP, ROWS, X16Rows, sq_dist_f64, transpose_groups, x16_rows_kernel};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::score::random_priority;

/// Rows per tile side.
const TILE: usize = 128;

/// Bytes of transposed rows per cache block.
const BLOCK_BYTES: usize = 128 << 10;

pub use crate::job::DEFAULT_PURITY;

/// The δ-ball graph: each row's neighbours (itself included), ascending.
pub(crate) struct Graph {
    offsets: Vec<u64>,
    nbrs: Vec<u32>,
}

impl Graph {
    fn of(&self, r: usize) -> &[u32] {
        &self.nbrs[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }

    /// Directed edges, self-loops included.
    pub fn edges(&self) -> u64 {
        self.nbrs.len() as u64
    }

    /// Bytes the graph holds.
    pub fn bytes(&self) -> u64 {
        (self.nbrs.len() * 4 + self.offsets.len() * 8) as u64
    }
}

/// The picks (row, rows newly covered), rows re-checked in f64, and what
/// was built (δ, edges, memory).
pub(crate) fn pick(rd: &Reader, job: &Job, iterations: usize) -> Result<Picked> {
    let n = rd.emb.rows();
    if n > u32::MAX as u64 {
        return Err(Error::Config(format!(
            "probcover indexes rows in 32 bits: {n} rows is too many"
        )));
    }
    let x = load(rd)?;
    let (delta2, how, mut refined) = match job.delta {
        Some(delta) => {
            if !(delta.is_finite() && delta > 0.0) {
                return Err(Error::Config(format!(
                    "--delta must be a positive distance, not {delta}"
                )));
            }
            (delta * delta, "given".to_string(), 0)
        }
        None => choose_delta(rd, &x, job, iterations)?,
    };
    let (graph, re) = build(rd, &x, delta2)?;
    refined += re;
    if graph.edges() == n {
        let closest = closest_pair(rd, &x);
        return Err(Error::Config(format!(
            "δ = {} joins no two rows (the closest two are {} apart): every ball holds only its centre; give a larger --delta",
            delta2.sqrt(),
            closest.sqrt()
        )));
    }
    let (picks, covered) = cover(&graph, job);
    // Coverage is what ProbCover maximizes: a δ whose balls cover little
    // of the pool at this budget picks from the densest regions alone
    // (MNIST's PCA features, docs/coldstart.md), so the user sees it.
    let note = format!(
        "probcover: δ = {:.6} ({how}); {} edges (self-loops included, {:.1} per row), {:.1} MiB; the labeled rows and the picks cover {covered} of {n} rows ({:.1}%)",
        delta2.sqrt(),
        graph.edges(),
        graph.edges() as f64 / n as f64,
        graph.bytes() as f64 / (1u64 << 20) as f64,
        100.0 * covered as f64 / n as f64
    );
    Ok(Picked {
        picks,
        refined,
        note,
    })
}

/// Every row, as float32, validated.
pub(crate) fn load(rd: &Reader) -> Result<Vec<f32>> {
    rd.validate()?;
    let mut x = vec![0f32; rd.emb.rows() as usize * rd.d];
    let d = rd.d;
    let mut none = vec![(); rd.emb.rows() as usize];
    let parts = rd.pass(&mut none, || (), |_, start, rows, _| (start, rows.to_vec()))?;
    for (start, rows) in parts {
        let at = start as usize * d;
        x[at..at + rows.len()].copy_from_slice(&rows);
    }
    Ok(x)
}

/// The graph at squared radius `delta2`, and the pairs measured in f64.
fn build(rd: &Reader, x: &[f32], delta2: f64) -> Result<(Graph, u64)> {
    let (d, n) = (rd.d, x.len() / rd.d);
    // A float32 distance at or past `skip` is at or past δ² exactly; below
    // `surely` it is below δ² exactly; between, f64 decides.
    let skip = next_up((delta2 * (1.0 + rd.eps) + rd.abs) as f32);
    let surely = -next_up(-(delta2 * (1.0 - rd.eps) - rd.abs) as f32);
    let parts = match rd.elsewhere {
        Some(far) => {
            let found = far.pairs_below(skip, surely)?;
            let unsure = found.iter().filter(|p| p.2).count() as u64;
            let mut pairs: Vec<(u32, u32)> = found
                .into_par_iter()
                .filter(|&(i, j, unsure)| {
                    let (i, j) = (i as usize, j as usize);
                    !unsure || sq_dist_f64(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]) < delta2
                })
                .map(|(i, j, _)| (i, j))
                .collect();
            pairs.par_sort_unstable();
            vec![(pairs, unsure)]
        }
        None => tile_pairs(rd, x, delta2, (skip, surely)),
    };
    Ok(from_pairs(n, parts))
}

/// Every pair within δ, tile by tile on the CPU, and the pairs measured in
/// f64 per tile.
fn tile_pairs(
    rd: &Reader,
    x: &[f32],
    delta2: f64,
    (skip, surely): (f32, f32),
) -> Vec<(Vec<(u32, u32)>, u64)> {
    let (d, n) = (rd.d, x.len() / rd.d);
    let t = transpose_groups(x, d);
    let tiles = n.div_ceil(TILE);
    // Each tile of rows i meets the groups from its own on; pairs i < j.
    (0..tiles)
        .into_par_iter()
        .map(|tile| {
            let (i0, i1) = (tile * TILE, ((tile + 1) * TILE).min(n));
            let mut pairs = Vec::new();
            let tile = Tile {
                x,
                t: &t,
                d,
                rows: i0..i1,
                skip,
                surely,
                delta2,
            };
            let refined = tile.pairs(x16_rows_kernel(rd.simd), &mut pairs);
            // Pairs in (i, j) order, whatever the blocking.
            pairs.sort_unstable();
            (pairs, refined)
        })
        .collect()
}

/// The graph of the pairs (i < j) in `parts`, with the pairs measured in
/// f64.
fn from_pairs(n: usize, parts: Vec<(Vec<(u32, u32)>, u64)>) -> (Graph, u64) {
    let mut degree = vec![1u64; n];
    let mut refined = 0;
    for (pairs, r) in &parts {
        refined += r;
        for &(i, j) in pairs {
            degree[i as usize] += 1;
            degree[j as usize] += 1;
        }
    }
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0u64);
    for g in &degree {
        offsets.push(offsets.last().copied().unwrap_or(0) + g);
    }
    let mut fill: Vec<u64> = offsets[..n].to_vec();
    let mut nbrs = vec![0u32; offsets[n] as usize];
    // Self-loops first, then pairs in tile order: each list ascends
    // after a sort.
    for (r, f) in fill.iter_mut().enumerate() {
        nbrs[*f as usize] = r as u32;
        *f += 1;
    }
    for (pairs, _) in parts {
        for (i, j) in pairs {
            nbrs[fill[i as usize] as usize] = j;
            fill[i as usize] += 1;
            nbrs[fill[j as usize] as usize] = i;
            fill[j as usize] += 1;
        }
    }
    (Graph { offsets, nbrs }, refined)
}

/// One tile of rows meeting every later row, for [`build`].
struct Tile<'a> {
    x: &'a [f32],
    /// `x` in transposed groups ([`transpose_groups`]).
    t: &'a [f32],
    d: usize,
    rows: std::ops::Range<usize>,
    /// Float32 distances at or past `skip` are at or past δ² exactly;
    /// below `surely`, below it; between, f64 decides.
    skip: f32,
    surely: f32,
    delta2: f64,
}

impl Tile<'_> {
    /// Appends the edges (i, j), i in the tile, i < j; returns the pairs
    /// measured in f64. Groups of j run in blocks of about
    /// [`BLOCK_BYTES`], so a block stays in cache while every row of the
    /// tile meets it.
    fn pairs(&self, x16: X16Rows, pairs: &mut Vec<(u32, u32)>) -> u64 {
        let (x, d) = (self.x, self.d);
        let n = x.len() / d;
        let mut refined = 0;
        let first = self.rows.start / GROUP;
        blocked(
            x,
            self.t,
            d,
            self.rows.clone(),
            first,
            x16,
            |i, g, xi, v| {
                if (g + 1) * GROUP <= i {
                    return;
                }
                // Counted lane by lane (it vectorises): most groups hold no
                // row within reach.
                if v.iter().filter(|&&v| v < self.skip).count() == 0 {
                    return;
                }
                for (lane, &v) in v.iter().enumerate() {
                    let j = g * GROUP + lane;
                    if j <= i || j >= n || v >= self.skip {
                        continue;
                    }
                    let edge = v < self.surely || {
                        refined += 1;
                        sq_dist_f64(xi, &x[j * d..(j + 1) * d]) < self.delta2
                    };
                    if edge {
                        pairs.push((i as u32, j as u32));
                    }
                }
            },
        );
        refined
    }
}

/// Calls `f(i, g, row i, distances to group g's sixteen rows)` for every
/// row i of `rows` and every group from `first` on, the groups in blocks
/// of about [`BLOCK_BYTES`] so that a block stays in cache while every row
/// meets it, and the rows [`ROWS`] at a time so each group is read once
/// for all of them. The calls come in no fixed order.
fn blocked(
    x: &[f32],
    t: &[f32],
    d: usize,
    rows: std::ops::Range<usize>,
    first: usize,
    x16: X16Rows,
    mut f: impl FnMut(usize, usize, &[f32], [f32; GROUP]),
) {
    let per_block = (BLOCK_BYTES / (GROUP * d * 4)).max(1);
    let groups: Vec<&[f32]> = t.chunks_exact(GROUP * d).skip(first).collect();
    let rows: Vec<usize> = rows.collect();
    for (b, block) in groups.chunks(per_block).enumerate() {
        let g0 = first + b * per_block;
        for some in rows.chunks(ROWS) {
            // A short last block repeats its last row.
            let xs: [&[f32]; ROWS] = std::array::from_fn(|r| {
                let i = some[r.min(some.len() - 1)];
                &x[i * d..(i + 1) * d]
            });
            for (gb, group) in block.iter().enumerate() {
                let v = x16(&xs, group);
                for (r, &i) in some.iter().enumerate() {
                    f(i, g0 + gb, xs[r], v[r]);
                }
            }
        }
    }
}

/// Each row's float32 squared distance to the nearest row of another
/// cluster (infinite if none), tile by tile against cache-sized blocks of
/// every row; padded to whole groups.
fn nearest_other(rd: &Reader, x: &[f32], a: &[u32]) -> Vec<f32> {
    let (d, n) = (rd.d, x.len() / rd.d);
    let t = transpose_groups(x, d);
    let x16 = x16_rows_kernel(rd.simd);
    // Cluster ids lane by lane, the last group's missing rows marked so
    // that no lane test needs a bound check.
    let width = n.div_ceil(GROUP) * GROUP;
    let mut ids = a.to_vec();
    ids.resize(width, MISSING);
    // Each pair is measured once, from the tile of its lower row: it
    // lowers both rows' minima, the later row's in a per-worker vector
    // (merged by minimum: no order enters).
    (0..n.div_ceil(TILE))
        .into_par_iter()
        .fold(
            || vec![f32::INFINITY; width],
            |mut far, tile| {
                let rows = tile * TILE..((tile + 1) * TILE).min(n);
                let mut own = vec![[f32::INFINITY; GROUP]; rows.len()];
                blocked(
                    x,
                    &t,
                    d,
                    rows.clone(),
                    rows.start / GROUP,
                    x16,
                    |i, g, _, v| {
                        let (m, ai) = (&mut own[i - rows.start], a[i]);
                        let ids = &ids[g * GROUP..(g + 1) * GROUP];
                        let theirs = &mut far[g * GROUP..(g + 1) * GROUP];
                        // Lane by lane, so it vectorises.
                        for l in 0..GROUP {
                            let other = ids[l] != ai && ids[l] != MISSING;
                            m[l] = if other && v[l] < m[l] { v[l] } else { m[l] };
                            theirs[l] = if other && v[l] < theirs[l] {
                                v[l]
                            } else {
                                theirs[l]
                            };
                        }
                    },
                );
                for (lanes, f) in own.iter().zip(&mut far[rows]) {
                    *f = lanes.iter().fold(*f, |m, &v| m.min(v));
                }
                far
            },
        )
        .reduce(
            || vec![f32::INFINITY; width],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x = x.min(y));
                a
            },
        )
}

/// The cluster id of a missing row in the last group.
const MISSING: u32 = u32::MAX;

/// The smallest squared distance between two distinct rows, canonically
/// (for the message when δ joins none: a slow pass, on that error only).
fn closest_pair(rd: &Reader, x: &[f32]) -> f64 {
    let (d, n) = (rd.d, x.len() / rd.d);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &x[i * d..(i + 1) * d];
            (i + 1..n)
                .map(|j| sq_dist_f64(xi, &x[j * d..(j + 1) * d]))
                .fold(f64::INFINITY, f64::min)
        })
        .reduce(|| f64::INFINITY, f64::min)
}

/// The next float32 up (toward +∞), so a rounded threshold stays on the
/// safe side.
fn next_up(v: f32) -> f32 {
    if v.is_nan() || v == f32::INFINITY {
        return v;
    }
    if v == 0.0 {
        return f32::from_bits(1);
    }
    let b = v.to_bits();
    f32::from_bits(if v > 0.0 { b + 1 } else { b - 1 })
}

/// Greedy maximum coverage from the labeled rows' balls: the picks (row,
/// rows newly covered) and how many rows the labeled rows and the picks
/// cover.
fn cover(g: &Graph, job: &Job) -> (Vec<(u64, f64)>, u64) {
    let n = g.offsets.len() - 1;
    let mut gain: Vec<u64> = (0..n).map(|r| g.of(r).len() as u64).collect();
    let mut covered = vec![false; n];
    let mut open = vec![true; n];
    let mut total = 0u64;
    let mut take = |p: usize, gain: &mut Vec<u64>, open: &mut Vec<bool>| {
        open[p] = false;
        for &y in g.of(p) {
            if !std::mem::replace(&mut covered[y as usize], true) {
                total += 1;
                for &x in g.of(y as usize) {
                    gain[x as usize] -= 1;
                }
            }
        }
    };
    for &l in job.exclusions.as_slice() {
        take(l as usize, &mut gain, &mut open);
    }
    let mut picks = Vec::with_capacity(job.k);
    while picks.len() < job.k {
        // Most newly covered, ties to the lower row.
        let best = (0..n)
            .filter(|&r| open[r])
            .fold(None, |b: Option<usize>, r| match b {
                Some(b) if gain[b] >= gain[r] => Some(b),
                _ => Some(r),
            });
        let Some(mut p) = best else { break };
        if gain[p] == 0 {
            // Everything is covered: the seeded random draw decides.
            p = (0..n)
                .filter(|&r| open[r])
                .map(|r| (r as u64, random_priority(job.seed, r as u64)))
                .fold(None, |b: Option<(u64, f64)>, (r, k)| match b {
                    Some(b) if b.1 >= k => Some(b),
                    _ => Some((r, k)),
                })
                .map_or(p, |b| b.0 as usize);
        }
        picks.push((p as u64, gain[p] as f64));
        take(p, &mut gain, &mut open);
    }
    (picks, total)
}

/// δ² for `purity` over a k-means with `classes` clusters, how it was
/// chosen, and the rows re-checked in f64.
pub(crate) fn choose_delta(
    rd: &Reader,
    x: &[f32],
    job: &Job,
    iterations: usize,
) -> Result<(f64, String, u64)> {
    let (d, n) = (rd.d, x.len() / rd.d);
    let classes = job.purity_classes;
    if classes == 0 {
        return Err(Error::Config(format!(
            "{} needs --delta D, or --classes C to choose δ by purity over C k-means clusters (one per class)",
            job.query
        )));
    }
    let purity = job.purity;
    if !(purity > 0.0 && purity <= 1.0) {
        return Err(Error::Config(format!(
            "--purity must lie in (0, 1], not {purity}"
        )));
    }
    let cl = fit(rd, classes, job.seed, iterations)?;
    let a = &cl.assign;
    let nearest = match rd.elsewhere {
        Some(far) => far.nearest_other(a)?,
        None => nearest_other(rd, x, a),
    };
    let bounds: Vec<(f64, f64)> = nearest[..n]
        .iter()
        .map(|&m| {
            if m == f32::INFINITY {
                (f64::INFINITY, f64::INFINITY)
            } else {
                rd.interval(m)
            }
        })
        .collect();
    let want = ((purity * n as f64).ceil() as usize).clamp(1, n);
    let kth_largest = |mut v: Vec<f64>| {
        v.sort_unstable_by(|a, b| b.total_cmp(a));
        v[want - 1]
    };
    let low = kth_largest(bounds.iter().map(|b| b.0).collect());
    let high = kth_largest(bounds.iter().map(|b| b.1).collect());
    let above = bounds.iter().filter(|b| b.0 > high).count();
    let unsure: Vec<usize> = (0..n)
        .filter(|&i| bounds[i].0 <= high && bounds[i].1 >= low)
        .collect();
    let mut exact: Vec<f64> = unsure
        .par_iter()
        .map(|&i| {
            let xi = &x[i * d..(i + 1) * d];
            x.chunks_exact(d)
                .enumerate()
                .filter(|&(j, _)| a[j] != a[i])
                .map(|(_, xj)| sq_dist_f64(xi, xj))
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    exact.sort_unstable_by(|a, b| b.total_cmp(a));
    let delta2 = exact[want - above - 1];
    if !delta2.is_finite() || delta2 <= 0.0 {
        return Err(Error::Config(format!(
            "no δ reaches purity {purity} over {classes} k-means clusters (every row is in one cluster, or rows of different clusters coincide); give --delta"
        )));
    }
    let how = format!("purity {purity} over {classes} k-means clusters");
    Ok((delta2, how, unsure.len() as u64 + cl.refined))
}
