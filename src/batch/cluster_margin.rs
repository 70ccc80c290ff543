//! Cluster-Margin (Citovsky et al., "Batch Active Learning at Scale",
//! NeurIPS 2021): the `k_m` lowest-margin rows (`candidates`, default 10·k)
//! are clustered by their embeddings, and the batch is taken round-robin
//! from the clusters, smallest cluster first, lowest margin first inside a
//! cluster.
//!
//! # Clustering, and why it scales
//! Up to [`HAC_MAX`] candidates, average-linkage agglomerative clustering
//! runs on all of them, as in the paper ([`super::hac`], exact and
//! deterministic), until `clusters` clusters remain (default k). Its
//! distance matrix needs n²/2 floats: 200 MB at 10,000 candidates, 20 GB at
//! 100,000. Beyond [`HAC_MAX`], k-center greedy ([`super::coreset`]) first
//! picks [`HAC_MAX`] representatives among the candidates; every candidate
//! joins its nearest representative (ties to the earlier one), and
//! average linkage runs on the representatives weighted by their members.
//! That is average linkage with each candidate moved onto its
//! representative: k-center greedy's covering radius r is within twice the
//! optimum, and no linkage distance moves by more than 2r.
//!
//! The order of clusters is (size, best member's margin rank); ties in
//! margin go to the lower row, as in every selection.

use rayon::prelude::*;

use super::dist::sq_dist_f64;
use super::{Clock, check_embedding_rows, hac};
use crate::backend::{self, Backend, Progress, RowJob};
use crate::error::Result;
use crate::job::Job;
use crate::pool::Pool;
use crate::query::{BatchStrategy, InputForm, LogBase, Strategy};
use crate::score::ScoreSpec;

/// The most candidates clustered directly (see the module docs).
pub const HAC_MAX: usize = 10_000;

pub(crate) fn pick(
    backend: Backend,
    probs: &Pool,
    emb: &Pool,
    job: &Job,
    progress: &dyn Progress,
    clock: &mut Clock,
) -> Result<(Vec<(u64, f64)>, u64)> {
    if job.k == 0 {
        return Ok((Vec::new(), 0));
    }
    let want = if job.candidates == 0 {
        job.k.saturating_mul(10)
    } else {
        job.candidates
    };
    let spec = ScoreSpec {
        strategy: Strategy::Margin,
        log_base: LogBase::E,
        seed: job.seed,
    };
    let mut margin = RowJob::new(spec, job.input, want.max(job.k));
    margin.exclusions = job.exclusions.clone();
    margin.chunk_rows = job.chunk_rows;
    let (cands, _) = backend::select_on(backend, probs, &margin, progress)?;
    clock.lap("margin candidates");
    let d = emb.classes();
    let mut points = vec![0f32; cands.entries.len() * d];
    for (e, p) in cands.entries.iter().zip(points.chunks_exact_mut(d)) {
        emb.row_f32(e.index, p)?;
        check_embedding_rows(emb, e.index, p)?;
    }
    let clusters = if job.clusters == 0 {
        job.k
    } else {
        job.clusters
    };
    let label = cluster(&points, d, clusters, job.chunk_rows, HAC_MAX)?;
    clock.lap("clustering");

    // Members of each cluster in candidate (margin) order.
    let n = cands.entries.len();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (pos, &l) in label.iter().enumerate() {
        members[l].push(pos);
    }
    let mut groups: Vec<Vec<usize>> = members.into_iter().filter(|m| !m.is_empty()).collect();
    groups.sort_by_key(|m| (m.len(), m[0]));
    let mut picks = Vec::with_capacity(job.k);
    'rounds: for round in 0.. {
        let mut any = false;
        for g in &groups {
            if let Some(&pos) = g.get(round) {
                any = true;
                let e = &cands.entries[pos];
                picks.push((e.index, e.score));
                if picks.len() == job.k {
                    break 'rounds;
                }
            }
        }
        if !any {
            break;
        }
    }
    clock.lap("round-robin");
    Ok((picks, cands.refined))
}

/// The cluster of each candidate (numbered by a member's position).
fn cluster(
    points: &[f32],
    d: usize,
    clusters: usize,
    chunk_rows: u64,
    hac_max: usize,
) -> Result<Vec<usize>> {
    let n = points.len() / d;
    if n <= hac_max {
        return Ok(hac::average_linkage(
            hac::distances(points, d),
            &vec![1; n],
            clusters,
        ));
    }
    let pool = Pool::from_f32(points, d)?.named("<cluster-margin candidates>");
    let mut reps_job = Job::new(BatchStrategy::Coreset, InputForm::probs(), hac_max);
    reps_job.chunk_rows = chunk_rows;
    let mut clock = Clock::default();
    let (reps, _) = super::coreset::pick(
        &pool,
        &reps_job,
        (None, super::coreset::First::Farthest),
        &backend::Silent,
        &mut clock,
    )?;
    let rep_points: Vec<f32> = reps
        .iter()
        .flat_map(|&(r, _)| points[r as usize * d..(r as usize + 1) * d].iter().copied())
        .collect();
    let home: Vec<usize> = points
        .par_chunks_exact(d)
        .map(|x| {
            let mut best = (f64::INFINITY, 0);
            for (i, rp) in rep_points.chunks_exact(d).enumerate() {
                let v = sq_dist_f64(x, rp);
                if v < best.0 {
                    best = (v, i);
                }
            }
            best.1
        })
        .collect();
    let mut weights = vec![0u64; reps.len()];
    home.iter().for_each(|&h| weights[h] += 1);
    let rep_label = hac::average_linkage(hac::distances(&rep_points, d), &weights, clusters);
    Ok(home.iter().map(|&h| rep_label[h]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn representatives_stand_in_for_their_members_beyond_the_limit() {
        let mut r = crate::rng::Rng::new(4);
        let (n, d) = (300, 3);
        let points: Vec<f32> = (0..n * d)
            .map(|_| (r.uniform() * 10.0).floor() as f32)
            .collect();
        // At or above n, the representatives are every point: plain HAC.
        let direct = cluster(&points, d, 12, 0, n).unwrap();
        assert_eq!(
            direct,
            hac::average_linkage(hac::distances(&points, d), &vec![1; n], 12)
        );
        let two_level = cluster(&points, d, 12, 0, 40).unwrap();
        let mut labels = two_level.clone();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), 12);
        // Equal points share a representative, hence a cluster.
        for a in 0..n {
            for b in 0..n {
                if points[a * d..(a + 1) * d] == points[b * d..(b + 1) * d] {
                    assert_eq!(two_level[a], two_level[b]);
                }
            }
        }
        for chunk in [1, 7] {
            assert_eq!(cluster(&points, d, 12, chunk, 40).unwrap(), two_level);
        }
    }
}
