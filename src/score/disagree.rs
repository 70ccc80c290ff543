//! The disagreement strategies' canonical scores: one row's T samples of
//! canonical f64 probabilities (row-major, sample after sample) in, one f64
//! score out. Sums run in sample order then class order; `0 · ln 0 = 0`
//! with no epsilon (as baal's `xlogy`); logarithms are natural, divided by
//! `ln b` for another base; argmax ties go to the lower class. Higher is
//! more informative for every one of them.

use crate::query::{Disagreement, LogBase};

use super::entropy_nat;

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
    // p̄: each class's sum over the samples, in sample order, over T.
    mean.clear();
    mean.resize(classes, 0.0);
    for s in p.chunks_exact(classes) {
        for (m, &v) in mean.iter_mut().zip(s) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= t);
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
}
