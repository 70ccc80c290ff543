//! BatchBALD's canonical quantities (Kirsch, van Amersfoort and Gal,
//! NeurIPS 2019), defined once; the greedy engine is `crate::batch::batchbald`.
//!
//! With T samples `p_t` of each row's C probabilities (MC-dropout passes
//! or committee members, each equally likely), the batch B's information
//! `I(y_B; ω) = H(y_B) − Σ_{b∈B} E_t H(p_{b,t})`. The greedy step adds the
//! row n of largest gain
//!
//! `gain(n) = H(y_n | y_B) − E_t H(p_{n,t})`,
//!
//! which ranks rows as `I(y_B, y_n; ω)` does (the rest is the same for
//! every n). With configurations y of the batch's labels, each with
//! weight ω_y and posterior weights `w_{y,t} ∝ Π_{b∈B} p_{b,t}(y_b)` over
//! the samples, `H(y_n | y_B) = Σ_y ω_y H(r_y)` with
//! `r_y = Σ_t w_{y,t} p_{n,t}` (the chain rule
//! `H(y_B, y_n) = H(y_B) + H(y_n | y_B)`):
//!
//! - **exact** while `C^|B|` is at most the configuration budget M: every y,
//!   in lexicographic order (the first pick most significant), with
//!   `ω_y = q_y = (1/T) Σ_t Π_b p_{b,t}(y_b)` and `H(y_B) = −Σ q_y ln q_y`;
//! - **importance-sampled** beyond it, as batchbald_redux does: `S =
//!   max(1, ⌊M/T⌋)` configurations drawn from each sample t' in turn
//!   (configuration m = t'·S + s draws each `y_b ~ p_{b,t'}`), so M' = S·T
//!   draws from the mixture q, each with `ω = 1/M'`, and
//!   `H(y_B) ≈ −(1/M') Σ_m ln q_m`. This is batchbald_redux's
//!   `SampledJointEntropy` estimator, written in the conditional form.
//!
//! Each draw is the inverse CDF of `p_{b,t'}` (class order; the first
//! class whose running sum exceeds u·Σp) at `u = (h + ½)/2⁵³`, h the top 53
//! bits of `splitmix64` chained over (seed, step, m, position in the
//! batch): the same configurations on every thread count, and new ones at
//! each step, as batchbald_redux resamples at each step.
//!
//! Everything is in f64 with natural logarithms and `0 · ln 0 = 0`; the
//! products are sums of logarithms (scaled by each configuration's
//! largest), so they never underflow to a configuration of weight 0 that
//! was drawn. Sums run in the order the formulas are written: samples,
//! then classes, then configurations.

use crate::rng::splitmix64;

use super::entropy_nat;

/// The configuration budget M when none is given (batchbald_redux's
/// `num_samples` in its examples).
pub const DEFAULT_CONFIGURATIONS: usize = 10_000;

/// Keeps the configuration draws' stream apart from the other seeded ones.
const CONFIG_STREAM: u64 = 0xBB67_AE85_84CA_A73B;

/// `E_t H(p_t)` in nats: the mean over the T samples (sample order) of
/// each sample's entropy; `p` holds T rows of C.
pub fn conditional_entropy(p: &[f64], classes: usize) -> f64 {
    let t = p.len() / classes.max(1);
    let sum: f64 = p.chunks_exact(classes).map(entropy_nat).sum();
    sum / t as f64
}

/// The uniform draw in (0, 1) for position `j` of configuration `m` at
/// greedy step `step`.
pub fn config_uniform(seed: u64, step: u64, m: u64, j: u64) -> f64 {
    let h = splitmix64(splitmix64(splitmix64(splitmix64(seed ^ CONFIG_STREAM) ^ step) ^ m) ^ j);
    ((h >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// The class drawn from the C probabilities `p` (not all 0) at `u`: the
/// first whose running sum exceeds `u · Σp`; if rounding leaves none, the
/// last class of positive probability. Never a class of probability 0.
pub fn draw_class(p: &[f64], u: f64) -> usize {
    let total: f64 = p.iter().sum();
    let target = u * total;
    let mut run = 0.0;
    for (c, &v) in p.iter().enumerate() {
        run += v;
        if v > 0.0 && run > target {
            return c;
        }
    }
    p.iter().rposition(|&v| v > 0.0).unwrap_or(0)
}

/// The batch so far, as configurations: what a candidate's gain needs.
#[derive(Clone, Debug)]
pub struct Joint {
    samples: usize,
    classes: usize,
    /// Configuration after configuration, T posterior weights summing to 1.
    weights: Vec<f64>,
    /// Each configuration's weight ω.
    omega: Vec<f64>,
    /// Coarser views of the configurations, for bounds: see [`Joint::bound`].
    levels: Vec<Level>,
    /// `H(y_B)` in nats (estimated when sampled).
    entropy: f64,
    exact: bool,
}

impl Joint {
    /// The joint of the picks so far: `picks` holds each picked row's T x C
    /// canonical probabilities, in pick order; `budget` is M; `seed` and
    /// `step` (the number of picks) key the draws when sampled.
    pub fn new(
        picks: &[Vec<f64>],
        samples: usize,
        classes: usize,
        budget: usize,
        seed: u64,
    ) -> Joint {
        let step = picks.len() as u64;
        let ln: Vec<Vec<f64>> = picks
            .iter()
            .map(|p| p.iter().map(|&v| v.ln()).collect())
            .collect();
        let exact_count = u32::try_from(picks.len())
            .ok()
            .and_then(|n| classes.checked_pow(n))
            .filter(|&m| m <= budget.max(1));
        let mut joint = Joint {
            samples,
            classes,
            weights: Vec::new(),
            omega: Vec::new(),
            levels: Vec::new(),
            entropy: 0.0,
            exact: exact_count.is_some(),
        };
        let mut y = vec![0usize; picks.len()];
        let mut log_p = vec![0.0; samples];
        match exact_count {
            Some(count) => {
                for m in 0..count {
                    // y: m's digits in base C, the first pick most significant.
                    let mut rest = m;
                    for yj in y.iter_mut().rev() {
                        *yj = rest % classes;
                        rest /= classes;
                    }
                    joint.add(&ln, &y, &mut log_p, None);
                }
            }
            None => {
                let per = (budget / samples).max(1);
                let drawn = (per * samples) as f64;
                for m in 0..per * samples {
                    let from = m / per;
                    for (j, (yj, p)) in y.iter_mut().zip(picks).enumerate() {
                        let u = config_uniform(seed, step, m as u64, j as u64);
                        *yj = draw_class(&p[from * classes..(from + 1) * classes], u);
                    }
                    joint.add(&ln, &y, &mut log_p, Some(drawn));
                }
            }
        }
        let count = joint.omega.len();
        for groups in [1, 16, 256] {
            if groups == 1 || groups * 4 <= count {
                joint.levels.push(joint.level(groups));
            }
        }
        joint
    }

    /// The configurations in `groups` contiguous groups (configuration
    /// order; sampled ones drawn from the same sample are neighbours, with
    /// like posteriors), each with its weight `W_g = Σ ω` and mixture
    /// `Σ_{y∈g} ω_y w_{y,t} / W_g`.
    fn level(&self, groups: usize) -> Level {
        let t = self.samples;
        let size = self.omega.len().div_ceil(groups).max(1);
        let mut level = Level {
            weight: Vec::with_capacity(groups),
            mixture: Vec::with_capacity(groups * t),
        };
        for (w, omega) in self.weights.chunks(size * t).zip(self.omega.chunks(size)) {
            let total: f64 = omega.iter().sum();
            let start = level.mixture.len();
            level.mixture.resize(start + t, 0.0);
            for (ws, &o) in w.chunks_exact(t).zip(omega) {
                for (v, &x) in level.mixture[start..].iter_mut().zip(ws) {
                    *v += o * x;
                }
            }
            level.mixture[start..].iter_mut().for_each(|v| *v /= total);
            level.weight.push(total);
        }
        level
    }

    /// Adds configuration `y`: its weights, ω and its term of `H(y_B)`
    /// (`drawn` = M' when sampled).
    fn add(&mut self, ln: &[Vec<f64>], y: &[usize], log_p: &mut [f64], drawn: Option<f64>) {
        let (t, c) = (self.samples, self.classes);
        for (s, lp) in log_p.iter_mut().enumerate() {
            *lp = ln.iter().zip(y).map(|(l, &yj)| l[s * c + yj]).sum::<f64>();
        }
        let top = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if top == f64::NEG_INFINITY {
            // A configuration no sample allows: q_y = 0, no term.
            return;
        }
        let start = self.weights.len();
        self.weights
            .extend(log_p.iter().map(|&lp| (lp - top).exp()));
        let scaled: f64 = self.weights[start..].iter().sum();
        self.weights[start..].iter_mut().for_each(|w| *w /= scaled);
        let ln_q = top + (scaled / t as f64).ln();
        match drawn {
            None => {
                let q = ln_q.exp();
                self.omega.push(q);
                if q > 0.0 {
                    self.entropy -= q * ln_q;
                }
            }
            Some(m) => {
                self.omega.push(1.0 / m);
                self.entropy -= ln_q / m;
            }
        }
    }

    /// `H(y_B)` in nats (an estimate when sampled).
    pub fn entropy(&self) -> f64 {
        self.entropy
    }

    /// Whether every configuration is enumerated.
    pub fn exact(&self) -> bool {
        self.exact
    }

    /// The configurations held.
    pub fn configurations(&self) -> usize {
        self.omega.len()
    }

    /// The gain of a candidate whose T x C canonical probabilities are `p`
    /// and whose `E_t H(p_t)` is `cond`: `Σ_y ω_y H(r_y) − cond` (nats);
    /// `r` is scratch.
    pub fn gain(&self, p: &[f64], cond: f64, r: &mut Vec<f64>) -> f64 {
        let c = self.classes;
        r.resize(c, 0.0);
        let mut h = 0.0;
        for (w, &omega) in self.weights.chunks_exact(self.samples).zip(&self.omega) {
            r.iter_mut().for_each(|v| *v = 0.0);
            for (&ws, ps) in w.iter().zip(p.chunks_exact(c)) {
                for (v, &pc) in r.iter_mut().zip(ps) {
                    *v += ws * pc;
                }
            }
            h += omega * entropy_nat(r);
        }
        h - cond
    }

    /// How many bounds [`Joint::bound`] has, coarsest first.
    pub fn bounds(&self) -> usize {
        self.levels.len()
    }

    /// Upper bound number `level` on [`Joint::gain`] for the same row: the
    /// configurations in G groups (1, 16, then 256, while well below
    /// their count), `Σ_g W_g H(Σ_t v_{g,t} p_t) − cond`, with G·T·C
    /// multiplications and G·C logarithms instead of M times T·C and C.
    /// By the concavity of entropy, within each group
    /// `Σ_{y∈g} ω_y H(r_y) ≤ W_g H(Σ_{y∈g} (ω_y/W_g) r_y)`, and that mean
    /// of the r_y is `Σ_t v_{g,t} p_t`. It holds for the sampled estimate
    /// as for the exact value. With one group it is about the row's BALD
    /// score; finer groups come closer to the gain.
    pub fn bound(&self, level: usize, p: &[f64], cond: f64, r: &mut Vec<f64>) -> f64 {
        let c = self.classes;
        let lv = &self.levels[level];
        let mut h = 0.0;
        for (v, &weight) in lv.mixture.chunks_exact(self.samples).zip(&lv.weight) {
            r.clear();
            r.resize(c, 0.0);
            for (&vt, ps) in v.iter().zip(p.chunks_exact(c)) {
                for (x, &pc) in r.iter_mut().zip(ps) {
                    *x += vt * pc;
                }
            }
            h += weight * entropy_nat(r);
        }
        h - cond
    }

    /// A bound on the rounding of a computed gain, from the a-priori bound
    /// of summation (n terms: n·ε relative to the sum of their magnitudes),
    /// taken eight times over: every term is at most `ln C` in magnitude
    /// and the weights sum to about 1.
    pub fn slack(&self) -> f64 {
        let terms = (self.omega.len() * self.classes + self.samples * self.classes + 64) as f64;
        8.0 * terms * f64::EPSILON * (1.0 + (self.classes as f64).ln() + self.entropy.abs())
    }
}

/// The configurations in groups: each group's weight, and its mixture over
/// the samples (T values a group).
#[derive(Clone, Debug)]
struct Level {
    weight: Vec<f64>,
    mixture: Vec<f64>,
}
