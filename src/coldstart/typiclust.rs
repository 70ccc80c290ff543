//! TypiClust (Hacohen, Dekel and Weinshall, ICML 2022), and the `kmeans`
//! baseline that shares its clusters.
//!
//! The pool is clustered by [`super::kmeans`] into |L| + B clusters (L the
//! labeled rows, B the batch; `clusters` overrides it). Clusters are
//! visited in order of fewest labeled rows, then most rows, then lowest
//! centre, round-robin should the batch outlast them, skipping clusters
//! with no unlabeled row left. From each visited cluster:
//! - `typiclust` takes its most typical unlabeled row. Typicality is
//!   `1 / (mean distance to the K nearest other unlabeled rows of the
//!   cluster + 10⁻⁵)`, K = min(20, m / 2) for m unlabeled rows; a cluster
//!   of one row gives that row, with typicality 0;
//! - `kmeans` takes the unlabeled row nearest the centre.
//!
//! Ties go to the lower row. Where this follows the paper and not its
//! reference code (`deep-al/pycls/al/typiclust.py`):
//! - the reference caps the clusters at 500 and drops clusters of 5 rows or
//!   fewer; here every cluster counts, as in the paper;
//! - the reference's faiss index returns *squared* distances, so its
//!   "mean distance" is a mean squared distance; here it is the mean
//!   Euclidean distance, as in the paper;
//! - the reference clusters L2-normalised self-supervised features; here
//!   the embeddings are used as given (normalise them first to match);
//! - the 10⁻⁵ guard against a zero mean is the reference's.
//!
//! # Exact
//! Typicalities run on float32 distances with the bound of
//! [`crate::batch::dist`]: the K smallest float32 distances bound the K
//! smallest exact ones from both sides (the bound is monotone), so each
//! row gets an interval; rows whose interval reaches the best lower bound
//! are re-checked with canonical f64 distances to every other row.

use rayon::prelude::*;

use super::Picked;
use super::kmeans::{Clusters, Reader, fit};
use crate::batch::arg_max;
use crate::batch::dist::{GROUP, ROWS, sq_dist_f64, transpose_groups, x16_rows_kernel};
use crate::error::{Error, Result};
use crate::job::Job;

/// Neighbours in the typicality, at most (the paper's and the reference's).
pub const NEIGHBOURS: usize = 20;

/// The reference's guard against a zero mean distance.
const GUARD: f64 = 1e-5;

/// Which row a visited cluster gives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    /// The most typical (TypiClust).
    Typical,
    /// The nearest its centre (k-means).
    NearestCentre,
}

/// The picks (row, typicality or distance to the centre), the rows
/// re-checked in f64, and the clustering's description.
pub(crate) fn pick(rd: &Reader, job: &Job, member: Member, iterations: usize) -> Result<Picked> {
    let n = rd.emb.rows();
    let labeled = job.exclusions.as_slice();
    let wanted = match job.clusters {
        0 => labeled.len() + job.k,
        c => c,
    };
    let k_clusters = (wanted as u64).min(n) as usize;
    let clusters = fit(rd, k_clusters, job.seed, iterations)?;
    let note = describe(&clusters, k_clusters);
    let mut members = clusters.members(k_clusters);
    let mut is_labeled = vec![false; n as usize];
    for &r in labeled {
        is_labeled[r as usize] = true;
    }
    let mut order: Vec<(usize, usize, usize)> = members
        .iter()
        .enumerate()
        .map(|(c, m)| {
            let l = m.iter().filter(|&&r| is_labeled[r as usize]).count();
            (l, m.len(), c)
        })
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    for m in &mut members {
        m.retain(|&r| !is_labeled[r as usize]);
    }
    let mut picks = Vec::with_capacity(job.k);
    let mut refined = clusters.refined;
    let mut at = 0;
    while picks.len() < job.k {
        let Some(c) = (0..order.len())
            .map(|i| order[(at + i) % order.len()].2)
            .find(|&c| !members[c].is_empty())
        else {
            return Err(Error::Config("no unlabeled row left to pick".into()));
        };
        at = order.iter().position(|o| o.2 == c).unwrap_or(0) + 1;
        let (row, score, re) = match member {
            Member::Typical => most_typical(rd, &members[c])?,
            Member::NearestCentre => nearest_centre(rd, &clusters, c, &members[c])?,
        };
        refined += re;
        picks.push((row, score));
        members[c].retain(|&r| r != row);
    }
    Ok(Picked {
        picks,
        refined,
        note,
    })
}

fn describe(c: &Clusters, k: usize) -> String {
    let how = if c.converged {
        "converged"
    } else {
        "stopped at the cap"
    };
    format!(
        "k-means: {k} clusters, seeded in {:.1} s, {} Lloyd iterations ({how}) in {:.1} s",
        c.times.0.as_secs_f64(),
        c.iterations,
        c.times.1.as_secs_f64()
    )
}

/// The unlabeled member nearest cluster `c`'s centre, canonically.
fn nearest_centre(rd: &Reader, cl: &Clusters, c: usize, rows: &[u64]) -> Result<(u64, f64, u64)> {
    let d = rd.d;
    let centre = &cl.centres[c * d..(c + 1) * d];
    let mut best: Option<(u64, f64)> = None;
    for &r in rows {
        let v = sq_dist_f64(&rd.row(r)?, centre);
        // Arg-min, ties to the lower row (rows ascend).
        if best.is_none_or(|(_, b)| v < b) {
            best = Some((r, v));
        }
    }
    let (r, v) = best.ok_or_else(|| Error::Config("an empty cluster".into()))?;
    Ok((r, v.sqrt(), 0))
}

/// The most typical of `rows` (ascending), its typicality, and the rows
/// re-checked in f64.
pub(crate) fn most_typical(rd: &Reader, rows: &[u64]) -> Result<(u64, f64, u64)> {
    let (m, d) = (rows.len(), rd.d);
    if m == 1 {
        return Ok((rows[0], 0.0, 0));
    }
    let knn = NEIGHBOURS.min(m / 2);
    let mut x = Vec::with_capacity(m * d);
    for &r in rows {
        x.extend(rd.row(r)?);
    }
    let grouped = transpose_groups(&x, d);
    let x16 = x16_rows_kernel(rd.simd);
    // Rows are measured ROWS at a time, so each group of the others is
    // read once for all of them (one row per sweep was bound by reading
    // the cluster, again for every row).
    let bounds: Vec<(f64, f64)> = (0..m)
        .collect::<Vec<_>>()
        .par_chunks(ROWS)
        .map_init(Vec::new, |dists: &mut Vec<f32>, block| {
            let xs: [&[f32]; ROWS] = std::array::from_fn(|r| {
                let i = block[r.min(block.len() - 1)];
                &x[i * d..(i + 1) * d]
            });
            let width = grouped.len() / d;
            dists.resize(ROWS * width, 0.0);
            for (g, group) in grouped.chunks_exact(GROUP * d).enumerate() {
                for (r, v) in x16(&xs, group).iter().enumerate() {
                    dists[r * width + g * GROUP..r * width + (g + 1) * GROUP].copy_from_slice(v);
                }
            }
            let mut out = Vec::with_capacity(block.len());
            for (r, &i) in block.iter().enumerate() {
                let row = &mut dists[r * width..r * width + width];
                out.push(typicality_bounds(rd, row, m, i, knn));
            }
            out
        })
        .flatten()
        .collect();
    let best_lo = bounds.iter().map(|b| b.0).fold(f64::NEG_INFINITY, f64::max);
    let contenders: Vec<usize> = (0..m).filter(|&i| bounds[i].1 >= best_lo).collect();
    let keys: Vec<(u64, f64)> = contenders
        .par_iter()
        .map(|&i| (rows[i], typicality(&x, d, i, knn)))
        .collect();
    let (row, t) = arg_max(keys).ok_or_else(|| Error::Config("an empty cluster".into()))?;
    Ok((row, t, contenders.len() as u64))
}

/// Bounds on row `i`'s typicality from its float32 squared distances to
/// the `m` rows of its cluster (`dists`, padded past `m`; reordered).
fn typicality_bounds(rd: &Reader, dists: &mut [f32], m: usize, i: usize, knn: usize) -> (f64, f64) {
    // Drop the padding, then the row itself.
    let dists = &mut dists[..m];
    dists.swap(i, m - 1);
    let dists = smallest(&mut dists[..m - 1], knn);
    let (mut lo, mut hi) = (0.0, 0.0);
    for &v in dists {
        let (l, h) = rd.interval(v);
        lo += l.sqrt();
        hi += h.sqrt();
    }
    let (lo, hi) = (lo / knn as f64, hi / knn as f64);
    // Typicality falls as the mean rises; pad for f64 rounding.
    let pad = 1e-12;
    (
        (1.0 - pad) / (hi * (1.0 + pad) + GUARD),
        (1.0 + pad) / (lo * (1.0 - pad) + GUARD),
    )
}

/// The `k` smallest of `v` (in no order), moving values around. The k-th
/// smallest of the first [`SAMPLE`] values is at least the k-th smallest
/// of all, so every value above it can go before the selection, which
/// then sorts a few hundred values instead of the whole cluster.
fn smallest(v: &mut [f32], k: usize) -> &[f32] {
    if v.len() > 4 * SAMPLE.max(k) {
        let mut head = v[..SAMPLE.max(k)].to_vec();
        head.select_nth_unstable_by(k - 1, f32::total_cmp);
        let t = head[k - 1];
        // Branch-free compaction: `kept` never passes `j`.
        let mut kept = 0;
        for j in 0..v.len() {
            let x = v[j];
            v[kept] = x;
            kept += (x <= t) as usize;
        }
        let v = &mut v[..kept];
        v.select_nth_unstable_by(k - 1, f32::total_cmp);
        return &v[..k];
    }
    v.select_nth_unstable_by(k - 1, f32::total_cmp);
    &v[..k]
}

/// Values [`smallest`] draws its threshold from.
const SAMPLE: usize = 256;

/// Canonical typicality of row `i` among the rows of `x`: the `knn`
/// smallest canonical distances to the others, summed in ascending order.
fn typicality(x: &[f32], d: usize, i: usize, knn: usize) -> f64 {
    let xi = &x[i * d..(i + 1) * d];
    let mut dists: Vec<f64> = x
        .chunks_exact(d)
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(_, xj)| sq_dist_f64(xi, xj).sqrt())
        .collect();
    dists.sort_unstable_by(f64::total_cmp);
    let mean = dists[..knn].iter().sum::<f64>() / knn as f64;
    1.0 / (mean + GUARD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_values_are_those_of_a_sort() {
        let mut r = crate::rng::Rng::new(9);
        for (n, k, levels) in [
            (5000, 20, 50),
            (1025, 20, 3),
            (20_000, 1, 1000),
            (300, 20, 7),
        ] {
            // Few levels: many ties, also at the threshold.
            let v: Vec<f32> = (0..n).map(|_| r.below(levels) as f32 * 0.25).collect();
            let mut want = v.clone();
            want.sort_unstable_by(f32::total_cmp);
            let mut got = smallest(&mut v.clone(), k).to_vec();
            got.sort_unstable_by(f32::total_cmp);
            assert_eq!(got, want[..k], "n {n} k {k}");
        }
    }
}
