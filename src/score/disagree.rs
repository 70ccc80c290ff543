//! The disagreement strategies' canonical scores: one row's T samples of
//! canonical f64 probabilities (row-major, sample after sample) in, one f64
//! score out. Sums run in sample order then class order; `0 · ln 0 = 0`
//! with no epsilon (as baal's `xlogy`); logarithms are natural, divided by
//! `ln b` for another base; argmax ties go to the lower class. Higher is
//! more informative for every one of them.

use crate::query::{Disagreement, LogBase};

use super::entropy_nat;

/// p̄ into `mean`: each class's sum over the samples, in sample order,
/// over T.
pub fn mean_of(p: &[f64], classes: usize, mean: &mut Vec<f64>) {
    let t = (p.len() / classes.max(1)) as f64;
    mean.clear();
    mean.resize(classes, 0.0);
    for s in p.chunks_exact(classes) {
        for (m, &v) in mean.iter_mut().zip(s) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= t);
}

/// The canonical score of one row: `p` holds its T samples of C canonical
/// probabilities, sample after sample; `mean` is scratch for p̄.
pub fn disagreement(
    d: Disagreement,
    base: LogBase,
    p: &[f64],
    classes: usize,
    mean: &mut Vec<f64>,
) -> f64 {
    let t = (p.len() / classes.max(1)) as f64;
    mean_of(p, classes, mean);
    let samples = || p.chunks_exact(classes);
    let ln_b = base.ln();
    match d {
        Disagreement::Bald => {
            let h_each: f64 = samples().map(entropy_nat).sum();
            (entropy_nat(mean) - h_each / t) / ln_b
        }
        Disagreement::ConsensusEntropy => entropy_nat(mean) / ln_b,
        Disagreement::KlMean => samples().map(|s| kl(s, mean)).sum::<f64>() / t / ln_b,
        Disagreement::KlMax => {
            samples()
                .map(|s| kl(s, mean))
                .fold(f64::NEG_INFINITY, f64::max)
                / ln_b
        }
        Disagreement::MeanStd => {
            let mut sum = 0.0;
            for (c, &m) in mean.iter().enumerate() {
                let var: f64 = samples().map(|s| (s[c] - m) * (s[c] - m)).sum::<f64>() / t;
                sum += var.sqrt();
            }
            sum / classes as f64
        }
        Disagreement::VariationRatio => {
            let votes = votes(p, classes);
            let modal = votes.iter().copied().max().unwrap_or(0);
            1.0 - modal as f64 / t
        }
        Disagreement::VoteEntropy => {
            let fractions: Vec<f64> = votes(p, classes).iter().map(|&v| v as f64 / t).collect();
            entropy_nat(&fractions) / ln_b
        }
    }
}

/// An upper bound on the canonical score (natural logarithms) with no
/// logarithm, for the strategies that need one per value; `None` for the
/// others, whose canonical scores are cheap. `mean` is p̄ ([`mean_of`]).
///
/// From `ln x ≤ x − 1`, for any non-negative p and q (normalized or not):
/// `KL(p ‖ q) = Σ p ln(p/q) ≤ Σ p²/q − Σ p`. Hence
/// - kl-max: `max_t Σ_c p_tc (p_tc − m_c) / m_c`;
/// - bald and kl-mean (equal in exact arithmetic, `mean_t KL(p_t ‖ p̄)`):
///   the mean over samples of the same, which is
///   `Σ_c Σ_t (p_tc − m_c)² / (T m_c)`, written so with no cancellation.
///
/// Classes with `m_c = 0` have every `p_tc = 0` and add nothing. The
/// canonical f64 score and this bound are each within ~1e-13 of the exact
/// values for any T and C a pool has; callers keep a margin far above that.
pub fn upper_bound(d: Disagreement, p: &[f64], mean: &[f64]) -> Option<f64> {
    let classes = mean.len();
    let t = (p.len() / classes.max(1)) as f64;
    match d {
        Disagreement::Bald | Disagreement::KlMean => {
            let mut sum = 0.0;
            for (c, &m) in mean.iter().enumerate() {
                if m > 0.0 {
                    let sq: f64 = p
                        .chunks_exact(classes)
                        .map(|s| (s[c] - m) * (s[c] - m))
                        .sum();
                    sum += sq / (t * m);
                }
            }
            Some(sum)
        }
        Disagreement::KlMax => {
            let per_sample = p.chunks_exact(classes).map(|s| {
                let mut sum = 0.0;
                for (&x, &m) in s.iter().zip(mean) {
                    if m > 0.0 {
                        sum += x * (x - m) / m;
                    }
                }
                sum
            });
            Some(per_sample.fold(f64::NEG_INFINITY, f64::max))
        }
        _ => None,
    }
}

/// KL(s ‖ m) = Σ s ln(s / m) as Σ s (ln s − ln m), over the classes where
/// s > 0 (there m ≥ s / T > 0).
fn kl(s: &[f64], m: &[f64]) -> f64 {
    let mut sum = 0.0;
    for (&a, &b) in s.iter().zip(m) {
        if a > 0.0 {
            sum += a * (a.ln() - b.ln());
        }
    }
    sum
}

/// How many samples vote for each class: a sample votes for its largest
/// probability, ties to the lower class.
fn votes(p: &[f64], classes: usize) -> Vec<u32> {
    let mut v = vec![0u32; classes];
    for s in p.chunks_exact(classes) {
        let mut best = 0;
        for (c, &x) in s.iter().enumerate() {
            if x > s[best] {
                best = c;
            }
        }
        v[best] += 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(d: Disagreement, p: &[f64], c: usize) -> f64 {
        disagreement(d, LogBase::E, p, c, &mut Vec::new())
    }

    #[test]
    fn agreement_scores_zero_and_disagreement_more() {
        // Two samples that agree: no disagreement by any measure.
        let same = [0.7, 0.2, 0.1, 0.7, 0.2, 0.1];
        for d in [
            Disagreement::Bald,
            Disagreement::MeanStd,
            Disagreement::VariationRatio,
            Disagreement::VoteEntropy,
            Disagreement::KlMean,
            Disagreement::KlMax,
        ] {
            assert!(score(d, &same, 3).abs() < 1e-15, "{d}");
        }
        // Two confident samples for different classes: BALD = ln 2, and
        // the consensus entropy is the same (each sample has none).
        let split = [1.0, 0.0, 0.0, 1.0];
        let ln2 = std::f64::consts::LN_2;
        assert!((score(Disagreement::Bald, &split, 2) - ln2).abs() < 1e-15);
        assert!((score(Disagreement::ConsensusEntropy, &split, 2) - ln2).abs() < 1e-15);
        assert!((score(Disagreement::KlMean, &split, 2) - ln2).abs() < 1e-15);
        assert_eq!(score(Disagreement::VariationRatio, &split, 2), 0.5);
        assert!((score(Disagreement::VoteEntropy, &split, 2) - ln2).abs() < 1e-15);
        assert_eq!(score(Disagreement::MeanStd, &split, 2), 0.5);
    }

    #[test]
    fn the_bound_is_above_the_score() {
        // Rows from agreement to full disagreement, normalized or off by
        // the row-sum tolerance.
        let mut x = 0.37f64;
        let mut next = || {
            x = (x * 997.0 + 0.123).fract();
            x
        };
        for case in 0..2000 {
            let (t, c) = (2 + case % 7, 2 + case % 5);
            let spread = (case % 11) as f64 / 10.0;
            let mut p = Vec::new();
            for _ in 0..t {
                let w: Vec<f64> = (0..c).map(|_| 1.0 + spread * 20.0 * next()).collect();
                let s: f64 = w.iter().sum::<f64>() * (1.0 + 1e-3 * (next() - 0.5));
                p.extend(w.iter().map(|v| v / s));
            }
            let mut mean = Vec::new();
            mean_of(&p, c, &mut mean);
            for d in [
                Disagreement::Bald,
                Disagreement::KlMean,
                Disagreement::KlMax,
            ] {
                let ub = upper_bound(d, &p, &mean).unwrap();
                let s = disagreement(d, LogBase::E, &p, c, &mut Vec::new());
                assert!(
                    s <= ub + 1e-12,
                    "{d} case {case}: score {s} above bound {ub}"
                );
            }
        }
    }
}
