//! The multi-label strategies' canonical scores: one row of L canonical
//! f64 probabilities (`canonical_probs` under `InputForm::MultiLabel`, so
//! each p_j = P(label j applies) in [0, 1]) in, one f64 score out.
//!
//! Definitions, each written once here:
//! - the binary entropy `h(p) = −p ln p − (1 − p) ln(1 − p)`, with
//!   `0 · ln 0 = 0` and no epsilon, natural logarithms divided by `ln b`;
//! - a label is *positive* when `p_j > 0.5` (small-text's and modAL's
//!   prediction threshold);
//! - sums run in label order.
//!
//! | strategy | score | better |
//! |---|---|---|
//! | mean-entropy | `(1/L) Σ_j h(p_j) / ln b` | higher |
//! | max-entropy | `max_j h(p_j) / ln b` | higher |
//! | min-margin | `min_j |p_j − 0.5|` | lower |
//! | cardinality | `|#positive − c̄|`, c̄ the labeled set's mean label count | higher |
//! | adaptive | `(1 / max(s, 0.01))^β · |#positive − c̄|^(1−β)` | higher |
//! | avg-score | `(1/L) Σ_j p_j (ŷ_j − ½)`, ŷ_j = [p_j > 0.5] | higher |
//! | max-score | `max_j p_j (ŷ_j − ½)` | higher |
//!
//! Adaptive is Li and Guo's (IJCAI 2013) combination of max-margin
//! uncertainty and label cardinality inconsistency with the *paper's*
//! separation margin `s = min_{positive} p_j − max_{non-positive} p_k`,
//! the gap between the weakest predicted label and the strongest
//! unpredicted one (not small-text's top-1 minus top-2, which ignores the
//! threshold). A row with no positive label takes 0.5 for the missing
//! minimum, one with every label positive takes 0.5 for the missing
//! maximum: the decision threshold is then the nearest point of the other
//! side. The paper picks β by retraining on each candidate; a scoring
//! engine has no learner to retrain, so β is given (default ½, as
//! small-text). The 0.01 floor on the margin is small-text's.

use crate::query::{LogBase, MultiLabel};

/// The prediction threshold: a label is positive when its p exceeds it.
pub const THRESHOLD: f64 = 0.5;

/// The floor on adaptive's separation margin, so a margin of 0 gives a
/// finite uncertainty (small-text's `eps`).
pub const MARGIN_FLOOR: f64 = 0.01;

/// What a multi-label score reads besides the row: the log base, the
/// labeled set's mean label count and adaptive's β.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultiSpec {
    /// The strategy.
    pub strategy: MultiLabel,
    /// Entropy's log base.
    pub log_base: LogBase,
    /// c̄: the labeled set's mean label count (cardinality, adaptive).
    pub cardinality: f64,
    /// β: adaptive's weight of uncertainty.
    pub beta: f64,
}

/// The binary entropy in nats, `0 · ln 0 = 0`.
#[inline]
pub fn binary_entropy(p: f64) -> f64 {
    let q = 1.0 - p;
    let mut h = 0.0;
    if p > 0.0 {
        h -= p * p.ln();
    }
    if q > 0.0 {
        h -= q * q.ln();
    }
    h
}

/// How many labels are positive (p > 0.5).
fn positives(p: &[f64]) -> usize {
    p.iter().filter(|&&x| x > THRESHOLD).count()
}

/// Li and Guo's separation margin: the smallest positive p minus the
/// largest non-positive one, 0.5 standing in for a side with no label.
pub fn separation_margin(p: &[f64]) -> f64 {
    let mut lowest_pos = f64::INFINITY;
    let mut highest_neg = f64::NEG_INFINITY;
    for &x in p {
        if x > THRESHOLD {
            lowest_pos = lowest_pos.min(x);
        } else {
            highest_neg = highest_neg.max(x);
        }
    }
    if lowest_pos == f64::INFINITY {
        lowest_pos = THRESHOLD;
    }
    if highest_neg == f64::NEG_INFINITY {
        highest_neg = THRESHOLD;
    }
    lowest_pos - highest_neg
}

/// p_j (ŷ_j − ½): modAL's per-label score.
#[inline]
fn modal_score(p: f64) -> f64 {
    let predicted = if p > THRESHOLD { 1.0 } else { 0.0 };
    p * (predicted - 0.5)
}

/// The canonical score of one row of L canonical probabilities.
pub fn multilabel_score(spec: &MultiSpec, p: &[f64]) -> f64 {
    let l = p.len().max(1) as f64;
    let ln_b = spec.log_base.ln();
    let inconsistency = || (positives(p) as f64 - spec.cardinality).abs();
    match spec.strategy {
        MultiLabel::MeanEntropy => p.iter().map(|&x| binary_entropy(x)).sum::<f64>() / l / ln_b,
        MultiLabel::MaxEntropy => {
            p.iter()
                .map(|&x| binary_entropy(x))
                .fold(f64::NEG_INFINITY, f64::max)
                / ln_b
        }
        MultiLabel::MinMargin => p
            .iter()
            .map(|&x| (x - THRESHOLD).abs())
            .fold(f64::INFINITY, f64::min),
        MultiLabel::Cardinality => inconsistency(),
        MultiLabel::Adaptive => {
            let uncertainty = 1.0 / separation_margin(p).max(MARGIN_FLOOR);
            uncertainty.powf(spec.beta) * inconsistency().powf(1.0 - spec.beta)
        }
        MultiLabel::AvgScore => p.iter().map(|&x| modal_score(x)).sum::<f64>() / l,
        MultiLabel::MaxScore => p
            .iter()
            .map(|&x| modal_score(x))
            .fold(f64::NEG_INFINITY, f64::max),
    }
}

/// An upper bound on the canonical priority of the entropies with no
/// logarithm, from `h(p) ≤ ln 2 · (4p(1 − p))^½`, looser than Topsøe's
/// `ln 2 · (4p(1 − p))^(1/ln 4)` (2001) since 4p(1 − p) ≤ 1, equal at
/// p = ½, and one square root instead of a power;
/// `None` for the other strategies, whose canonical scores are cheap.
/// The canonical f64 score sits within a few ulp of the exact one, far
/// below the margin callers add.
pub fn entropy_upper_bound(spec: &MultiSpec, p: &[f64]) -> Option<f64> {
    let root = |x: f64| 2.0 * std::f64::consts::LN_2 * (x * (1.0 - x)).max(0.0).sqrt();
    let ln_b = spec.log_base.ln();
    match spec.strategy {
        MultiLabel::MeanEntropy => {
            Some(p.iter().map(|&x| root(x)).sum::<f64>() / p.len().max(1) as f64 / ln_b)
        }
        MultiLabel::MaxEntropy => {
            // h is largest where p is nearest ½.
            let m = p
                .iter()
                .map(|&x| (x - THRESHOLD).abs())
                .fold(f64::INFINITY, f64::min);
            Some(root(THRESHOLD - m) / ln_b)
        }
        _ => None,
    }
}

/// f32 unit roundoff, 2⁻²⁴.
const U: f64 = 1.0 / 16_777_216.0;

/// mean-entropy's f32 terms `√(p (1 − p))` of a whole chunk at once (the
/// logarithm-free bound's, [`entropy_upper_bound`]): one flat loop the
/// compiler vectorizes, where a row of a few labels would leave much of
/// the work to scalar code.
#[inline(always)]
pub(crate) fn entropy_terms(values: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend(values.iter().map(|&x| (x * (1.0 - x)).sqrt()));
}

/// What the fast path reduces a row of stored float32 values to, each
/// value already checked to lie in [0, 1] (so the canonical probabilities
/// are the values widened); for mean-entropy, a row of its
/// [`entropy_terms`] instead. Branch-light f32 work, so a row costs about
/// what reading it costs; [`FastBound::upper`] then bounds the row's
/// canonical priority from it. `multilabel_lanes` forms the same
/// reductions for sixteen rows side by side (counts and extremes exactly;
/// sums in another order, which their bounds allow).
///
/// - mean-entropy: the sum of the terms `√(p(1 − p))`;
/// - max-entropy, min-margin: the smallest `|x − ½|`;
/// - cardinality: the positive count;
/// - avg-score, max-score: the sum and the largest of `x (ŷ − ½)`.
///
/// Adaptive's reduction is [`adaptive_parts`], bounded by
/// [`AdaptiveCuts`].
#[inline(always)]
pub(crate) fn reduce_f32(strategy: MultiLabel, row: &[f32]) -> f32 {
    let add = |a: f32, b: f32| a + b;
    let min = |a: f32, b: f32| if b < a { b } else { a };
    let max = |a: f32, b: f32| if b > a { b } else { a };
    let modal = |x: f32| if x > 0.5 { 0.5 * x } else { -0.5 * x };
    match strategy {
        MultiLabel::MeanEntropy => fold8(row, 0.0, |t| t, add),
        MultiLabel::MaxEntropy | MultiLabel::MinMargin => {
            fold8(row, f32::INFINITY, |x| (x - 0.5).abs(), min)
        }
        MultiLabel::Cardinality | MultiLabel::Adaptive => {
            fold8(row, 0.0, |x| if x > 0.5 { 1.0 } else { 0.0 }, add)
        }
        MultiLabel::AvgScore => fold8(row, 0.0, modal, add),
        MultiLabel::MaxScore => fold8(row, f32::NEG_INFINITY, modal, max),
    }
}

/// The fast path's upper bound on a row's canonical *priority* from its
/// [`reduce_f32`] reduction, with the constants of a pool's strategy and
/// label count taken once. Only a row whose bound reaches the k-th best
/// priority is then scored canonically.
///
/// - Stored values compare with ½ exactly, so the positive count and the
///   extreme positive and non-positive values are exact; `x · ½` is exact.
///   Cardinality and max-score are therefore exact.
/// - `|x − ½|` rounds once in f32 (≤ 2⁻²⁵ off; exact for x ≥ ¼).
/// - mean-entropy is bounded by `2 ln 2 · mean √(p(1 − p))`
///   ([`entropy_upper_bound`]). Each term may be an f32 root (within
///   3 · 2⁻²⁴ relative) or `t · rsqrt14(t)` of `t = max(x(1 − x), 10⁻³⁰)`
///   (the lanes': within 2⁻¹⁴ + 4 · 2⁻²⁴ relative, or above the exact
///   root); the factor `1 + 2⁻¹³` covers either, and `1 + (L + 4)2⁻²⁴` the
///   f32 sum of L nonnegative terms in any order.
/// - max-entropy and min-margin are bounded from the nearest value to ½.
/// - avg-score's f32 sum of L terms of size ≤ ½, in any order, is off by
///   at most L² · 2⁻²⁵; divided by L.
///
/// Every bound is then padded far above the canonical f64 rounding.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FastBound {
    strategy: MultiLabel,
    /// The factor on the reduction: mean-entropy's `2 ln 2 (1 + 2⁻¹³)
    /// (1 + (L + 4)u) / L / ln b`, max-entropy's `2 ln 2 / ln b`,
    /// avg-score's `1 / L`.
    scale: f64,
    /// c̄ for cardinality; `L u` for avg-score.
    offset: f64,
}

impl FastBound {
    pub(crate) fn new(spec: &MultiSpec, labels: usize) -> Self {
        let l = labels.max(1) as f64;
        let ln_b = spec.log_base.ln();
        let two_ln2 = 2.0 * std::f64::consts::LN_2;
        let (scale, offset) = match spec.strategy {
            MultiLabel::MeanEntropy => {
                let terms = 1.0 + 1.0 / 8192.0;
                (two_ln2 * terms * (1.0 + (l + 4.0) * U) / l / ln_b, 0.0)
            }
            MultiLabel::MaxEntropy => (two_ln2 / ln_b, 0.0),
            MultiLabel::Cardinality => (1.0, spec.cardinality),
            MultiLabel::AvgScore => (1.0 / l, l * U),
            _ => (1.0, 0.0),
        };
        FastBound {
            strategy: spec.strategy,
            scale,
            offset,
        }
    }

    /// The bound from the row's reduction; infinite for adaptive (bounded
    /// exactly by [`AdaptiveCuts`] instead).
    #[inline(always)]
    pub(crate) fn upper(&self, reduced: f32) -> f64 {
        let pad = |x: f64| x + 1e-9 * (1.0 + x.abs());
        let r = reduced as f64;
        match self.strategy {
            MultiLabel::MeanEntropy => pad(self.scale * r),
            MultiLabel::MaxEntropy => {
                let p = THRESHOLD - (r - U).max(0.0);
                pad(self.scale * (p * (1.0 - p)).sqrt())
            }
            MultiLabel::MinMargin => pad(U - r),
            MultiLabel::Cardinality => pad((r - self.offset).abs()),
            MultiLabel::Adaptive => f64::INFINITY,
            MultiLabel::AvgScore => pad(r * self.scale + self.offset),
            MultiLabel::MaxScore => pad(r),
        }
    }
}

/// mean-entropy's second, tighter bound on a row of stored f32 values
/// that passed the first: `p ln p + q ln q` summed in f32 with
/// [`ln_approx`](super::fast::ln_approx), q = 1 − p in f32
/// ([`binary_plogp_sum`], or `multilabel_lanes::binary_plogp_sum`: the
/// same terms, summed in another order).
/// [`entropy_bound`](super::fast::entropy_bound) covers the logarithm and
/// the sum, in any order, over 2L values summing to L; q's own rounding
/// (only for p < ½, where q ≥ ½: ≤ 2⁻²⁵, moving `q ln q` by at most
/// 2⁻²⁵ · (1 + ln 2)) adds L · 2⁻²⁴.
#[inline(always)]
pub(crate) fn mean_entropy_upper(log_base: crate::query::LogBase, labels: usize, sum: f32) -> f64 {
    use super::fast::entropy_bound;
    let l = labels.max(1) as f64;
    let h_hat = -(sum as f64);
    let bound = entropy_bound(h_hat, l, 2 * labels) + l * U;
    let hi = (h_hat + bound) / l / log_base.ln();
    hi + 1e-9 * (1.0 + hi.abs())
}

/// `Σ p ln p + q ln q` of a row, q = 1 − p, in f32: [`mean_entropy_upper`]'s
/// sum, row by row.
#[inline(always)]
pub(crate) fn binary_plogp_sum(row: &[f32]) -> f32 {
    // Written out rather than through `fold8`: a generic map is not always
    // inlined into the vectorized copies, and this one is two logarithms.
    let mut acc = [0f32; 8];
    let mut it = row.chunks_exact(8);
    for c in &mut it {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += binary_plogp(x);
        }
    }
    let mut s = 0f32;
    for &x in it.remainder() {
        s += binary_plogp(x);
    }
    for a in acc {
        s += a;
    }
    s
}

/// The interval the GPU's f32 multi-label priority gets (the kernel's
/// `score_multi` in `shaders/select.wgsl`): `half + rel · |priority|`
/// around it holds the canonical priority. Each is generous (the GPU may
/// fuse multiply-adds; WGSL's `pow` is only accurate to a few ulp of
/// `exp2(y · log2 x)`):
/// - min-margin, max-score: one f32 rounding (`|x − ½|`, `x · ½`): 4u;
/// - cardinality: the positive count is exact and the mean label count
///   comes as an f32 pair, so `|n − c̄|` rounds once: 4u relative;
/// - avg-score: an f32 sum of L terms of size ≤ ½, then / L: 4(L + 1)u;
/// - the entropies: four times the CPU's bound (`fast::entropy_bound`) at the
///   largest entropy (L ln 2 over 2L terms summing to L, or one label's),
///   plus q = 1 − p's own rounding, L · 4u, then / L and / ln b;
/// - adaptive: u and c each within 2u relative, `pow` within 1e-5
///   relative on any GPU: 1e-4 relative.
///
/// From logits, the kernel adds each row's own term: its sigmoids are
/// within `ε = (6 + 2|z|) · 2⁻²³` relative, which moves an entropy term by
/// under 2.8ε, `|p − ½|` and `p · ½` by ε, and adaptive's margin (≥ 0.01)
/// by 2ε, so its priority by 200ε relative; the kernel takes twice each.
pub fn gpu_bounds(spec: &MultiSpec, labels: usize) -> (f64, f64) {
    use super::fast::entropy_bound;
    let l = labels.max(1) as f64;
    let ln_b = spec.log_base.ln();
    let ln2 = std::f64::consts::LN_2;
    match spec.strategy {
        MultiLabel::MinMargin | MultiLabel::MaxScore => (4.0 * U, 0.0),
        MultiLabel::Cardinality => (4.0 * U, 4.0 * U),
        MultiLabel::AvgScore => (4.0 * (l + 1.0) * U, 4.0 * U),
        MultiLabel::MeanEntropy => {
            let b = 4.0 * entropy_bound(l * ln2, l, 2 * labels.max(1)) + 4.0 * l * U;
            (b / l / ln_b + 8.0 * U, 8.0 * U)
        }
        MultiLabel::MaxEntropy => {
            let b = 4.0 * entropy_bound(ln2, 1.0, 2) + 4.0 * U;
            (b / ln_b + 8.0 * U, 8.0 * U)
        }
        MultiLabel::Adaptive => (1e-6, 1e-4),
    }
}

/// Adaptive's two parts of a row of stored f32 values in [0, 1], exactly
/// as the canonical score forms them: the positive count and the
/// uncertainty `1 / max(separation margin, 0.01)`.
#[inline(always)]
pub(crate) fn adaptive_parts(row: &[f32]) -> (usize, f64) {
    let inf = f32::INFINITY;
    let min = |a: f32, b: f32| if b < a { b } else { a };
    let max = |a: f32, b: f32| if b > a { b } else { a };
    let lo = fold8(row, inf, |x| if x > 0.5 { x } else { inf }, min);
    let hi = fold8(row, -inf, |x| if x > 0.5 { -inf } else { x }, max);
    let n = reduce_f32(MultiLabel::Adaptive, row);
    adaptive_from(n as usize, lo, hi)
}

/// [`adaptive_parts`] from a row's positive count, its smallest positive
/// value (∞ when none) and its largest non-positive one (−∞ when none).
#[inline(always)]
pub(crate) fn adaptive_from(positives: usize, lo: f32, hi: f32) -> (usize, f64) {
    let lo = if lo.is_finite() { lo as f64 } else { THRESHOLD };
    let hi = if hi.is_finite() { hi as f64 } else { THRESHOLD };
    (positives, 1.0 / (lo - hi).max(MARGIN_FLOOR))
}

/// Adaptive's exact prefilter. Its priority `u^β c^(1−β)` has only L + 1
/// possible c (one per positive count n: `c = |n − c̄|`), so for a
/// threshold T each n has a least uncertainty that can reach it,
/// `u ≥ (T / c^(1−β))^(1/β)`; a row below its n's cut cannot enter the
/// top k. The cuts are recomputed when the threshold moves, and padded
/// down far beyond the rounding of `powf`.
pub(crate) struct AdaptiveCuts {
    thresh: f64,
    cut: Vec<f64>,
}

impl AdaptiveCuts {
    pub(crate) fn new() -> Self {
        AdaptiveCuts {
            thresh: f64::NAN,
            cut: Vec::new(),
        }
    }

    /// Whether a row with `positives` positive labels and uncertainty `u`
    /// ([`adaptive_parts`]) may reach priority `thresh`.
    #[inline]
    pub(crate) fn may_reach(
        &mut self,
        spec: &MultiSpec,
        labels: usize,
        thresh: f64,
        (positives, u): (usize, f64),
    ) -> bool {
        if thresh.to_bits() != self.thresh.to_bits() {
            self.recompute(spec, labels, thresh);
        }
        u >= self.cut[positives.min(labels)]
    }

    fn recompute(&mut self, spec: &MultiSpec, labels: usize, thresh: f64) {
        let beta = spec.beta;
        let least_u = |n: usize| {
            let c = (n as f64 - spec.cardinality).abs();
            if thresh.is_nan() || thresh <= 0.0 {
                // Every priority is ≥ 0.
                0.0
            } else if beta == 0.0 {
                // u^0 = 1: the inconsistency alone decides.
                if c >= thresh * (1.0 - 1e-9) {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else if c == 0.0 && beta < 1.0 {
                // 0^(1−β) = 0: no uncertainty reaches a positive T.
                f64::INFINITY
            } else {
                (thresh / c.powf(1.0 - beta)).powf(1.0 / beta) * (1.0 - 1e-9)
            }
        };
        self.cut = (0..=labels).map(least_u).collect();
        self.thresh = thresh;
    }
}

/// `p ln p + q ln q` in f32, q = 1 − p.
#[inline(always)]
pub(crate) fn binary_plogp(x: f32) -> f32 {
    use super::fast::plogp_fused;
    plogp_fused(x) + plogp_fused(1.0 - x)
}

/// `op` over `map` of every value, in eight independent lanes (then the
/// rest), so the loop vectorizes: every caller's result holds for any
/// order (min, max, counts; sums whose bound covers any order).
#[inline(always)]
fn fold8(row: &[f32], init: f32, map: impl Fn(f32) -> f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let mut it = row.chunks_exact(8);
    for c in &mut it {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = op(*a, map(x));
        }
    }
    let mut r = it.remainder().iter().fold(init, |r, &x| op(r, map(x)));
    for a in acc {
        r = op(r, a);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(strategy: MultiLabel) -> MultiSpec {
        MultiSpec {
            strategy,
            log_base: LogBase::E,
            cardinality: 1.5,
            beta: 0.5,
        }
    }

    #[test]
    fn the_entropy_bound_holds_everywhere() {
        // A dense grid, the ends and the values next to ½.
        let mut ps: Vec<f64> = (0..=100_000).map(|i| i as f64 / 100_000.0).collect();
        ps.extend([1e-300, 1e-30, 1e-12, 0.5 - 1e-12, 0.5 + 1e-12, 1.0 - 1e-12]);
        for &p in &ps {
            let h = binary_entropy(p);
            let ub = 2.0 * std::f64::consts::LN_2 * (p * (1.0 - p)).sqrt();
            assert!(h <= ub + 1e-15, "p = {p}: h {h} > bound {ub}");
        }
        for s in [MultiLabel::MeanEntropy, MultiLabel::MaxEntropy] {
            for row in [[0.1, 0.9, 0.5], [0.0, 1.0, 0.3], [0.49, 0.51, 0.02]] {
                let ub = entropy_upper_bound(&spec(s), &row).unwrap();
                assert!(multilabel_score(&spec(s), &row) <= ub + 1e-15, "{s}");
            }
        }
    }

    #[test]
    fn definitions_on_small_rows() {
        let row = [0.9, 0.6, 0.2];
        // Two positives against c̄ = 1.5.
        assert_eq!(multilabel_score(&spec(MultiLabel::Cardinality), &row), 0.5);
        // Weakest positive 0.6, strongest negative 0.2.
        assert!((separation_margin(&row) - 0.4).abs() < 1e-15);
        assert_eq!(separation_margin(&[0.2, 0.1]), 0.5 - 0.2);
        assert_eq!(separation_margin(&[0.7, 0.9]), 0.7 - 0.5);
        let adaptive = multilabel_score(&spec(MultiLabel::Adaptive), &row);
        assert!((adaptive - (2.5f64 * 0.5).sqrt()).abs() < 1e-12);
        assert_eq!(
            multilabel_score(&spec(MultiLabel::MinMargin), &row),
            0.09999999999999998
        );
        let avg = multilabel_score(&spec(MultiLabel::AvgScore), &row);
        assert!((avg - (0.45 + 0.3 - 0.1) / 3.0).abs() < 1e-15);
        assert_eq!(multilabel_score(&spec(MultiLabel::MaxScore), &row), 0.45);
        let h = multilabel_score(&spec(MultiLabel::MaxEntropy), &[0.5, 0.0, 1.0]);
        assert_eq!(h, std::f64::consts::LN_2);
        assert_eq!(
            multilabel_score(&spec(MultiLabel::MeanEntropy), &[0.0, 1.0]),
            0.0
        );
    }
}
