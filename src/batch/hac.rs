//! Average-linkage agglomerative clustering, deterministic: at every step
//! the pair of clusters `(i, j)`, `i < j`, with the smallest linkage
//! distance merges, ties to the smallest `i` and then the smallest `j`; the
//! merged cluster keeps the id `i`. Linkage distances are stored as float32
//! and updated by Lance–Williams in f64,
//! `d(i ∪ j, k) = (n_i·d(i, k) + n_j·d(j, k)) / (n_i + n_j)`,
//! starting from the Euclidean distances (canonical, [`super::dist`]). The
//! result is exactly that of the naive O(n³) procedure; each cluster's
//! nearest neighbour is cached (Müllner's generic algorithm), so a run
//! takes O(n²) time in practice and n(n − 1)/2 floats of memory.

use rayon::prelude::*;

use super::dist::sq_dist_f64;

/// Index of pair `(i, j)`, `i < j`, in the condensed matrix.
#[inline]
fn at(n: usize, i: usize, j: usize) -> usize {
    debug_assert!(i < j);
    i * n - i * (i + 1) / 2 + (j - i - 1)
}

/// Euclidean distances of every pair of the `n` rows of `points` (row-major,
/// `d` wide), condensed.
pub(crate) fn distances(points: &[f32], d: usize) -> Vec<f32> {
    let n = points.len() / d;
    let mut out = vec![0f32; n * n.saturating_sub(1) / 2];
    let mut parts: Vec<&mut [f32]> = Vec::with_capacity(n);
    let mut rest = &mut out[..];
    for i in 0..n {
        let (row, tail) = rest.split_at_mut(n - i - 1);
        parts.push(row);
        rest = tail;
    }
    parts.into_par_iter().enumerate().for_each(|(i, row)| {
        let a = &points[i * d..(i + 1) * d];
        for (o, j) in row.iter_mut().zip(i + 1..n) {
            *o = sq_dist_f64(a, &points[j * d..(j + 1) * d]).sqrt() as f32;
        }
    });
    out
}

/// Merges the `n` points (weights `weights`, condensed distances `dist`)
/// until `target` clusters remain; returns each point's cluster, numbered
/// by its lowest point.
pub(crate) fn average_linkage(mut dist: Vec<f32>, weights: &[u64], target: usize) -> Vec<usize> {
    let n = weights.len();
    let mut size: Vec<f64> = weights.iter().map(|&w| w as f64).collect();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut active = vec![true; n];
    let nearest = |dist: &[f32], active: &[bool], i: usize| -> (f32, usize) {
        let mut best = (f32::INFINITY, usize::MAX);
        for j in i + 1..n {
            if active[j] {
                let v = dist[at(n, i, j)];
                if v < best.0 {
                    best = (v, j);
                }
            }
        }
        best
    };
    let mut nn: Vec<(f32, usize)> = (0..n).map(|i| nearest(&dist, &active, i)).collect();
    let mut clusters = n;
    while clusters > target.max(1) {
        // The globally closest pair: smallest distance, then i, then j
        // (nn[i] already holds the smallest j for its distance).
        let mut i = usize::MAX;
        for k in 0..n {
            if active[k] && nn[k].1 != usize::MAX && (i == usize::MAX || nn[k].0 < nn[i].0) {
                i = k;
            }
        }
        if i == usize::MAX {
            break;
        }
        let j = nn[i].1;
        let (si, sj) = (size[i], size[j]);
        for k in (0..n).filter(|&k| active[k] && k != i && k != j) {
            let (ik, jk) = (pair(n, i, k), pair(n, j, k));
            dist[ik] = ((si * dist[ik] as f64 + sj * dist[jk] as f64) / (si + sj)) as f32;
        }
        active[j] = false;
        parent[j] = i;
        size[i] = si + sj;
        clusters -= 1;
        nn[i] = nearest(&dist, &active, i);
        for k in 0..n {
            if !active[k] || k == i {
                continue;
            }
            let stale = nn[k].1 == j || (k < i && nn[k].1 == i);
            if stale {
                nn[k] = nearest(&dist, &active, k);
            } else if k < i {
                let v = dist[at(n, k, i)];
                if v < nn[k].0 || (v == nn[k].0 && i < nn[k].1) {
                    nn[k] = (v, i);
                }
            }
        }
    }
    (0..n)
        .map(|mut p| {
            while parent[p] != p {
                p = parent[p];
            }
            p
        })
        .collect()
}

#[inline]
fn pair(n: usize, a: usize, b: usize) -> usize {
    if a < b { at(n, a, b) } else { at(n, b, a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive procedure: scan every active pair for the smallest
    /// (distance, i, j) at each step.
    fn naive(points: &[f32], d: usize, target: usize) -> Vec<usize> {
        let n = points.len() / d;
        let mut m = vec![vec![0f32; n]; n];
        for i in 0..n {
            for j in 0..n {
                m[i][j] = sq_dist_f64(&points[i * d..(i + 1) * d], &points[j * d..(j + 1) * d])
                    .sqrt() as f32;
            }
        }
        let mut size = vec![1f64; n];
        let mut label: Vec<usize> = (0..n).collect();
        let mut active = vec![true; n];
        let mut clusters = n;
        while clusters > target {
            let mut best = (f32::INFINITY, 0, 0);
            for i in 0..n {
                for j in i + 1..n {
                    if active[i] && active[j] && m[i][j] < best.0 {
                        best = (m[i][j], i, j);
                    }
                }
            }
            let (_, i, j) = best;
            for k in 0..n {
                if active[k] && k != i && k != j {
                    let v = ((size[i] * m[i][k] as f64 + size[j] * m[j][k] as f64)
                        / (size[i] + size[j])) as f32;
                    m[i][k] = v;
                    m[k][i] = v;
                }
            }
            size[i] += size[j];
            active[j] = false;
            for l in label.iter_mut() {
                if *l == j {
                    *l = i;
                }
            }
            clusters -= 1;
        }
        label
    }

    #[test]
    fn matches_the_naive_procedure_with_ties() {
        let mut r = crate::rng::Rng::new(5);
        for (n, d, grid) in [(40, 2, true), (60, 3, false), (25, 1, true)] {
            // Points on a coarse grid make many equal distances.
            let points: Vec<f32> = (0..n * d)
                .map(|_| {
                    let v = r.uniform() as f32;
                    if grid { (v * 4.0).floor() } else { v }
                })
                .collect();
            for target in [1, 2, 5, n / 2, n] {
                let got = average_linkage(distances(&points, d), &vec![1; n], target);
                assert_eq!(
                    got,
                    naive(&points, d, target),
                    "n {n} d {d} target {target}"
                );
            }
        }
    }
}
