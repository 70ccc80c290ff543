//! The statistics of simulations and comparisons, each defined once: the mean's confidence
//! interval, the Wilcoxon signed-rank test, Holm's correction, ranks with
//! ties averaged. The definitions follow SciPy's (`scipy.stats.t`,
//! `wilcoxon`, `rankdata`) and statsmodels' `multipletests(method="holm")`;
//! `python/tests/test_compare.py` checks them against SciPy.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Mean and sample standard deviation (n − 1 in the denominator; 0 for
/// fewer than two values, NaN for none).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, var.sqrt())
}

/// The two-sided confidence interval of the mean at `level` (0.95 for
/// 95%), from Student's t with n − 1 degrees of freedom: mean ±
/// t(1 − (1 − level)/2, n − 1) · s/√n. `None` for fewer than two values,
/// where the spread is unknown.
pub fn mean_ci(v: &[f64], level: f64) -> Option<(f64, f64)> {
    if v.len() < 2 {
        return None;
    }
    let (m, s) = mean_std(v);
    let half =
        t_quantile(1.0 - (1.0 - level) / 2.0, (v.len() - 1) as f64) * s / (v.len() as f64).sqrt();
    Some((m - half, m + half))
}

/// Several runs' curves gathered by x: for each x any run reached
/// (ascending), the y of every run that reached it, in run order (a run's
/// first point at an x counts).
pub fn by_x<R, P>(runs: R) -> Vec<(usize, Vec<f64>)>
where
    R: IntoIterator<Item = P>,
    P: IntoIterator<Item = (usize, f64)>,
{
    let mut at: std::collections::BTreeMap<usize, (Vec<f64>, usize)> = Default::default();
    for (r, run) in runs.into_iter().enumerate() {
        for (x, y) in run {
            let (ys, last) = at.entry(x).or_insert((Vec::new(), usize::MAX));
            if *last != r {
                ys.push(y);
                *last = r;
            }
        }
    }
    at.into_iter().map(|(x, (ys, _))| (x, ys)).collect()
}

/// The `q` quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile(q: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => t.inverse_cdf(q),
        Err(_) => f64::NAN,
    }
}

/// Ranks of `v`, 1 for the smallest, ties given the mean of the ranks they
/// span (SciPy's `rankdata(method="average")`).
pub fn rank_average(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && v[order[j]] == v[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let r = (i + 1 + j) as f64 / 2.0;
        order[i..j].iter().for_each(|&k| ranks[k] = r);
        i = j;
    }
    ranks
}

/// How a Wilcoxon p-value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WilcoxonMethod {
    /// The exact null distribution of W+ (no ties, no zeros, at most
    /// [`EXACT_MAX`] differences).
    Exact,
    /// The normal approximation with the tie correction, no continuity
    /// correction.
    Normal,
    /// Every difference was zero: no evidence either way, p = 1.
    AllTied,
}

/// The largest number of nonzero differences tested with the exact
/// distribution, as SciPy's `method="auto"`.
pub const EXACT_MAX: usize = 50;

/// A two-sided Wilcoxon signed-rank test.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Wilcoxon {
    /// min(W+, W−), SciPy's two-sided statistic.
    pub statistic: f64,
    /// The two-sided p-value.
    pub p: f64,
    /// How `p` was computed.
    pub method: WilcoxonMethod,
    /// The nonzero differences the test used.
    pub n: usize,
}

/// The two-sided Wilcoxon signed-rank test of the paired differences `d`,
/// zeros dropped (Wilcoxon's method, SciPy's default `zero_method`). The p-value
/// is exact when no differences tie and none is zero and at most
/// [`EXACT_MAX`] remain, as SciPy's `method="auto"`; otherwise it is the normal
/// approximation with the tie correction. (For tied or zero differences
/// among at most 13, SciPy's `auto` runs a permutation test instead; alpool
/// keeps the normal approximation, which SciPy gives with
/// `method="asymptotic"`.)
pub fn wilcoxon(d: &[f64]) -> Wilcoxon {
    let zeros = d.iter().filter(|&&x| x == 0.0).count();
    let nz: Vec<f64> = d.iter().copied().filter(|&x| x != 0.0).collect();
    let n = nz.len();
    if n == 0 {
        return Wilcoxon {
            statistic: 0.0,
            p: 1.0,
            method: WilcoxonMethod::AllTied,
            n,
        };
    }
    let abs: Vec<f64> = nz.iter().map(|x| x.abs()).collect();
    let ranks = rank_average(&abs);
    let r_plus: f64 = nz
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| **x > 0.0)
        .map(|(_, r)| r)
        .sum();
    let r_minus: f64 = nz
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| **x < 0.0)
        .map(|(_, r)| r)
        .sum();
    let tie_sizes = tie_sizes(&abs);
    let ties = tie_sizes.iter().any(|&t| t > 1);
    let statistic = r_plus.min(r_minus);
    if !ties && zeros == 0 && d.len() <= EXACT_MAX {
        let p = exact_two_sided(n, r_plus);
        return Wilcoxon {
            statistic,
            p,
            method: WilcoxonMethod::Exact,
            n,
        };
    }
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let tie_term: f64 = tie_sizes
        .iter()
        .map(|&t| (t as f64).powi(3) - t as f64)
        .sum();
    let se = ((nf * (nf + 1.0) * (2.0 * nf + 1.0) - tie_term / 2.0) / 24.0).sqrt();
    let z = (r_plus - mean) / se;
    let p = match Normal::new(0.0, 1.0) {
        Ok(normal) => (2.0 * normal.sf(z.abs())).min(1.0),
        Err(_) => f64::NAN,
    };
    Wilcoxon {
        statistic,
        p,
        method: WilcoxonMethod::Normal,
        n,
    }
}

/// The sizes of the groups of equal values in `v`.
fn tie_sizes(v: &[f64]) -> Vec<usize> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let j = s[i..].iter().take_while(|&&x| x == s[i]).count();
        out.push(j);
        i += j;
    }
    out
}

/// Two-sided exact p-value of W+ = `r_plus` over `n` untied nonzero
/// differences: 2 · min(P(W+ ≤ r), P(W+ ≥ r)), at most 1. The null counts
/// of each sum of a subset of 1..=n stay below 2⁵⁰, so f64 holds them
/// exactly.
fn exact_two_sided(n: usize, r_plus: f64) -> f64 {
    let max = n * (n + 1) / 2;
    let mut counts = vec![0f64; max + 1];
    counts[0] = 1.0;
    for k in 1..=n {
        for s in (k..=max).rev() {
            counts[s] += counts[s - k];
        }
    }
    let total = 2f64.powi(n as i32);
    // Without ties W+ is an integer.
    let r = r_plus.round() as usize;
    let le: f64 = counts[..=r.min(max)].iter().sum::<f64>() / total;
    let ge: f64 = counts[r.min(max)..].iter().sum::<f64>() / total;
    (2.0 * le.min(ge)).min(1.0)
}

/// Holm's step-down adjustment of `p` (statsmodels' `multipletests(method=
/// "holm")`): the i-th smallest becomes max over j ≤ i of
/// min(1, (m − j + 1) · p₍ⱼ₎), in the input's order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running = 0f64;
    for (j, &i) in order.iter().enumerate() {
        running = running.max(((m - j) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_gather_by_x_in_run_order_first_point_counting() {
        let runs = [
            vec![(10, 0.5), (20, 0.7)],
            vec![(20, 0.8), (20, 0.9), (30, 1.0)],
        ];
        let got = by_x(runs.iter().map(|r| r.iter().copied()));
        assert_eq!(
            got,
            vec![(10, vec![0.5]), (20, vec![0.7, 0.8]), (30, vec![1.0])]
        );
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            rank_average(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }

    #[test]
    fn exact_distribution_sums_to_one_and_is_symmetric() {
        // n = 3: W+ takes 0..=6 with counts 1,1,1,2,1,1,1 of 8.
        assert_eq!(exact_two_sided(3, 0.0), 0.25);
        assert_eq!(exact_two_sided(3, 6.0), 0.25);
        assert_eq!(exact_two_sided(3, 3.0), 1.0);
    }

    #[test]
    fn holm_is_monotone_in_the_sorted_order() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.2]);
        assert_eq!(adj, vec![0.04, 0.09, 0.09, 0.2]);
    }
}
