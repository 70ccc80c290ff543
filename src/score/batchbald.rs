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
use super::fast::Real;

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
    /// Every configuration in the f32 fast path's layout.
    fast: Lanes,
}

/// Weighted mixtures of the samples (the configurations' posteriors, or a
/// level's group mixtures) as the f32 fast path reads them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lanes {
    /// The T weights of each mixture in f32, sample-major: T rows of the
    /// mixtures, padded to a multiple of [`FAST_BLOCK`] with zero weight.
    w: Vec<f32>,
    /// The same in f64.
    w64: Vec<f64>,
    /// Each mixture's weight ω, padded as `w` with zeros.
    omega: Vec<f64>,
    /// `Σ ω`, rounded up.
    omega_sum: f64,
}

impl Lanes {
    /// From `weights`, T weights a mixture (each set summing to 1), and
    /// each mixture's `omega`.
    fn new(weights: &[f64], omega: &[f64], samples: usize) -> Lanes {
        let padded = omega.len().div_ceil(FAST_BLOCK) * FAST_BLOCK;
        let mut w64 = vec![0.0; samples * padded];
        for (m, ws) in weights.chunks_exact(samples).enumerate() {
            for (s, &x) in ws.iter().enumerate() {
                w64[s * padded + m] = x;
            }
        }
        let mut padded_omega = omega.to_vec();
        padded_omega.resize(padded, 0.0);
        Lanes {
            w: w64.iter().map(|&x| x as f32).collect(),
            w64,
            omega: padded_omega,
            omega_sum: omega.iter().sum::<f64>() * (1.0 + 1e-9),
        }
    }
}

/// How a float computes an entropy term: its unit roundoff, its
/// logarithm's error `A + R·|ln x|`, and what a value below the normal
/// range may move one class's term by.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arith {
    pub unit: f64,
    pub ln_abs: f64,
    pub ln_rel: f64,
    pub tiny: f64,
}

/// The error of one configuration's entropy `H(r_y)` computed from the
/// candidate's T x C probabilities with `arith` (the derivation is
/// [`Joint::fast_interval`]'s), per unit of ω, for a candidate whose T
/// sums are at most `s_max`; and `L`, which bounds `Σ_c r_c |ln r_c|` and
/// so `|H(r_y)|`.
pub(crate) fn entropy_error(t: usize, c: usize, s_max: f64, a: Arith) -> (f64, f64) {
    let u = a.unit;
    let (tf, cf) = (t as f64, c as f64);
    let rho = (tf + 3.0) * u / (1.0 - (tf + 3.0) * u);
    let over = (s_max - 1.0).max(0.0);
    let l = s_max * cf.ln() + std::f64::consts::E.recip() + s_max * over;
    let spread = rho * (l + s_max * (1.0 + 1.01 * rho)) + cf * a.tiny;
    let entropy = a.ln_abs * s_max * (1.0 + 2.0 * rho) * (1.0 + (cf + 2.0) * u)
        + (a.ln_rel + (cf + 2.0) * u) * l
        + cf * a.tiny;
    (spread + entropy, l)
}

/// Configurations [`Joint::fast_interval`] works on at once: a few vector
/// registers of f32 lanes per class.
const FAST_BLOCK: usize = 64;

/// Scratch for [`Joint::fast_interval`], for each float it computes in.
#[derive(Clone, Debug, Default)]
pub(crate) struct FastScratch {
    single: Bufs<f32>,
    double: Bufs<f64>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Bufs<F> {
    p: Vec<F>,
    r: Vec<F>,
    h: Vec<F>,
}

/// The floats [`Joint::fast_interval`] computes in, with their weights
/// and scratch.
pub(crate) trait Precision: Real {
    fn weights(lanes: &Lanes) -> &[Self];
    fn bufs(s: &mut FastScratch) -> &mut Bufs<Self>;
}

impl Precision for f32 {
    fn weights(lanes: &Lanes) -> &[f32] {
        &lanes.w
    }
    fn bufs(s: &mut FastScratch) -> &mut Bufs<f32> {
        &mut s.single
    }
}

impl Precision for f64 {
    fn weights(lanes: &Lanes) -> &[f64] {
        &lanes.w64
    }
    fn bufs(s: &mut FastScratch) -> &mut Bufs<f64> {
        &mut s.double
    }
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
            fast: Lanes::default(),
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
        for groups in [1, 16, 256, 2048] {
            if groups == 1 || groups * 4 <= count {
                joint.levels.push(joint.level(groups));
            }
        }
        joint.fast = Lanes::new(&joint.weights, &joint.omega, samples);
        joint
    }

    /// The configurations in about `groups` groups, each with its weight
    /// `W_g = Σ ω` and mixture `Σ_{y∈g} ω_y w_{y,t} / W_g`. The bound is
    /// tighter the more alike the posteriors within a group, so beyond one
    /// group the configurations are ordered by the sample their posterior
    /// weighs most (then by that weight, largest first; then by index), and
    /// a group never spans two such samples: once the batch tells the
    /// samples apart, a group's posteriors are nearly one sample's, and its
    /// bound nearly the gain's share.
    fn level(&self, groups: usize) -> Level {
        let t = self.samples;
        let count = self.omega.len();
        let size = count.div_ceil(groups).max(1);
        let key: Vec<(usize, f64)> = self
            .weights
            .chunks_exact(t)
            .map(|w| {
                w.iter().enumerate().fold(
                    (0, f64::NEG_INFINITY),
                    |b, (i, &x)| if x > b.1 { (i, x) } else { b },
                )
            })
            .collect();
        let mut order: Vec<usize> = (0..count).collect();
        if groups > 1 {
            order.sort_by(|&a, &b| {
                let ((sa, wa), (sb, wb)) = (key[a], key[b]);
                sa.cmp(&sb).then(wb.total_cmp(&wa)).then(a.cmp(&b))
            });
        }
        let mut level = Level {
            weight: Vec::with_capacity(groups),
            mixture: Vec::with_capacity(groups * t),
            lanes: Lanes::default(),
        };
        let mut i = 0;
        while i < count {
            let mut j = i + 1;
            while j < count && j - i < size && (groups == 1 || key[order[j]].0 == key[order[i]].0) {
                j += 1;
            }
            let total: f64 = order[i..j].iter().map(|&m| self.omega[m]).sum();
            // Configurations of weight 0 add nothing to the gain either.
            if total > 0.0 {
                let start = level.mixture.len();
                level.mixture.resize(start + t, 0.0);
                for &m in &order[i..j] {
                    let (o, ws) = (self.omega[m], &self.weights[m * t..(m + 1) * t]);
                    for (v, &x) in level.mixture[start..].iter_mut().zip(ws) {
                        *v += o * x;
                    }
                }
                level.mixture[start..].iter_mut().for_each(|v| *v /= total);
                level.weight.push(total);
            }
            i = j;
        }
        level.lanes = Lanes::new(&level.mixture, &level.weight, t);
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

    /// An interval around the gain of a candidate (`level` None), or
    /// around its bound number `level` of [`Joint::bound`], computed in
    /// float `F` (f32 or f64; see [`Precision`]) at a small part of the
    /// canonical cost: `(value, e)` with the exact value within `e` of
    /// `value` (`p` and `cond` as for [`Joint::gain`]). The engine takes
    /// `value + e` as the candidate's bound and computes the canonical gain
    /// only where that still reaches the best gain: the fast path of the
    /// exactness rule. A level's groups are mixtures as configurations are
    /// (weights over the samples summing to 1, a weight W_g for ω), so the
    /// same code and the same bound serve both.
    ///
    /// Each `r_y` is summed over the samples in F (`mul_add`, sample order,
    /// a block of configurations to a vector), its entropy is
    /// `−Σ_c p ln p` in F (class order) with F's vectorized logarithm
    /// ([`super::fast::ln_approx`], [`super::fast::ln_approx64`]), and the
    /// ω-weighted sum over the configurations is in f64. The error, term by
    /// term, with u F's unit roundoff:
    /// - `r̃_c = r_c (1 + δ)`, |δ| ≤ ρ = γ_{T+3} = (T + 3)u / (1 − (T + 3)u):
    ///   two conversions to F and at most T + 1 roundings of a sum of
    ///   non-negative terms (whether or not the FMA is fused), plus at most
    ///   (3T + 2)·u·2⁻¹²⁶ (f32) where values fall below the normal range;
    /// - then `|H(r̃) − H(r)| ≤ ρ (Σ_c r_c |ln r_c| + S (1 + 1.01ρ)) + C·τ`,
    ///   by the mean value theorem on `−x ln x` (τ: F's `TINY`), with
    ///   `S = Σ_c r_c ≤ S_max`, the largest of the row's T sums (Σ_t w_t = 1),
    ///   and `Σ r |ln r| ≤ L = S_max ln C + 1/e + S_max·max(0, S_max − 1)`;
    /// - the computed entropy of r̃: each term within `x (A + R |ln x|)`
    ///   (the logarithm's error) plus u of itself (the product), and the
    ///   C − 1 additions within (C − 1)u of the terms' magnitudes, so in all
    ///   `A·S̃ + (R + (C + 2)u)·L + C·τ`, with `S̃ ≤ S_max (1 + 2ρ)`; the
    ///   logarithms are proven for every normal input up to 2 (`S_max`
    ///   stays far below; a row past 1.9 gets an infinite interval);
    /// - the f64 sum over M' configurations: `(M' + 2) ε_64 Σ ω |h̃|`.
    ///
    /// The total is doubled for margin, as the other fast bounds are. At
    /// T = 20, C = 10 it is about 2e-5 nats in f32 and 1e-13 in f64.
    #[inline(always)]
    pub(crate) fn fast_interval<F: Precision>(
        &self,
        level: Option<usize>,
        p: &[f64],
        cond: f64,
        s: &mut FastScratch,
    ) -> (f64, f64) {
        let set = match level {
            Some(l) => &self.levels[l].lanes,
            None => &self.fast,
        };
        let weights = F::weights(set);
        let s = F::bufs(s);
        let (t, c) = (self.samples, self.classes);
        let padded = set.omega.len();
        s.p.clear();
        s.p.extend(p.iter().map(|&v| F::of(v)));
        s.r.resize(c * FAST_BLOCK, F::default());
        s.h.resize(padded, F::default());
        for (m0, h) in (0..padded)
            .step_by(FAST_BLOCK)
            .zip(s.h.chunks_exact_mut(FAST_BLOCK))
        {
            // Two classes at a time, so each weight loaded serves two FMAs.
            for c0 in (0..c).step_by(2) {
                let c1 = (c0 + 1).min(c - 1);
                let (mut a0, mut a1) = ([F::default(); FAST_BLOCK], [F::default(); FAST_BLOCK]);
                for ti in 0..t {
                    let (p0, p1) = (s.p[ti * c + c0], s.p[ti * c + c1]);
                    let w = &weights[ti * padded + m0..ti * padded + m0 + FAST_BLOCK];
                    for ((x0, x1), &wv) in a0.iter_mut().zip(a1.iter_mut()).zip(w) {
                        *x0 = wv.fma(p0, *x0);
                        *x1 = wv.fma(p1, *x1);
                    }
                }
                s.r[c0 * FAST_BLOCK..(c0 + 1) * FAST_BLOCK].copy_from_slice(&a0);
                s.r[c1 * FAST_BLOCK..(c1 + 1) * FAST_BLOCK].copy_from_slice(&a1);
            }
            h.fill(F::default());
            for r in s.r.chunks_exact(FAST_BLOCK) {
                for (hj, &x) in h.iter_mut().zip(r) {
                    *hj -= x.plogp();
                }
            }
        }
        // Apart from the loop above, so that its registers hold F lanes.
        let mut lanes = [0.0f64; 16];
        let mut abs_lanes = [0.0f64; 16];
        for (hs, os) in s.h.chunks_exact(16).zip(set.omega.chunks_exact(16)) {
            for j in 0..16 {
                let v = os[j] * hs[j].get();
                lanes[j] += v;
                abs_lanes[j] += v.abs();
            }
        }
        let value: f64 = lanes.iter().sum();
        let weighted_abs: f64 = abs_lanes.iter().sum();
        let s_max = p
            .chunks_exact(c.max(1))
            .map(|row| row.iter().sum::<f64>())
            .fold(0.0f64, f64::max)
            * (1.0 + 1e-12);
        let arith = Arith {
            unit: F::UNIT,
            ln_abs: F::LN_ABS,
            ln_rel: F::LN_REL,
            tiny: F::TINY,
        };
        let (each, _) = entropy_error(t, c, s_max, arith);
        let sum = (padded + 2) as f64 * f64::EPSILON * weighted_abs;
        let e = 2.0 * (each * set.omega_sum + sum) + 1e-300;
        // Sums this far from 1 are refused before; the logarithms' error
        // is proven only up to 2.
        let e = if s_max < 1.9 { e } else { f64::INFINITY };
        (value - cond, e)
    }

    /// Every configuration as the GPU kernel reads them
    /// (`shaders/batchbald.wgsl`): the T weights of each in f32,
    /// sample-major over the padded count, and each one's ω in f32 (0 in
    /// the padding).
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn gpu_lanes(&self) -> (&[f32], Vec<f32>) {
        let omega = self.fast.omega.iter().map(|&w| w as f32).collect();
        (&self.fast.w, omega)
    }

    /// The half-width of the interval around `H(y_n | y_B) = Σ_y ω_y H(r_y)`
    /// that the GPU kernel's f32 value lies in, for every candidate whose
    /// T sums are at most `s_max`: the f32 fast path's error
    /// ([`Joint::fast_interval`], [`entropy_error`]) with the GPU's
    /// logarithm (`ln_approx`, its bound taken 4x for the GPU's own
    /// roundings, as every kernel does) and a value below the normal range
    /// flushed at each of the 2T + 2 steps a class's sum takes; then the
    /// kernel's sum over the configurations, in f32: ω rounded to f32 and
    /// the product (2u), each of `threads` threads summing its share in
    /// order and a tree of log₂ `threads` levels (one rounding a level),
    /// all relative to `Σ ω |h̃|`, and ω or a product a GPU flushes. Doubled,
    /// as the other fast bounds are.
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn gpu_interval(&self, s_max: f64, threads: usize) -> f64 {
        use super::fast::{LN_ABS_ERR, LN_REL_ERR};
        const U: f64 = 1.0 / 16_777_216.0;
        const MIN_NORMAL: f64 = 1.1754943508222875e-38;
        let (t, c) = (self.samples, self.classes);
        let arith = Arith {
            unit: U,
            ln_abs: 4.0 * LN_ABS_ERR,
            ln_rel: 4.0 * LN_REL_ERR,
            tiny: (2 * t + 4) as f64 * 1.2e-36,
        };
        let (each, l) = entropy_error(t, c, s_max, arith);
        let padded = self.fast.omega.len().max(1);
        let per_thread = padded.div_ceil(threads.max(1)) as f64;
        let levels = (threads.max(1) as f64).log2().ceil();
        let magnitude = self.fast.omega_sum * (1.0 + U) * (1.01 * l + each);
        let sum = (per_thread + levels + 3.0) * U * 1.01 * magnitude;
        let flushed = padded as f64 * MIN_NORMAL * (l + 2.0);
        let e = 2.0 * (each * self.fast.omega_sum + sum + flushed) + 1e-30;
        if s_max < 1.9 { e } else { f64::INFINITY }
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
    /// The same in the f32 fast path's layout.
    lanes: Lanes,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// (T, C, picks, budget M) of the interval tests (this one and the GPU
    /// kernel's): exact and sampled steps, few and many samples and classes.
    pub(crate) const INTERVAL_CASES: [(usize, usize, usize, usize); 6] = [
        (2, 2, 0, 100),
        (5, 3, 2, 1000),
        (20, 10, 2, 10_000),
        (20, 10, 5, 2_000),
        (7, 50, 3, 500),
        (64, 4, 6, 3_000),
    ];

    /// T x C probabilities of one row: a softmax at `scale` with noise
    /// per sample; `shape` adds zeros, values near the f32 underflow and
    /// sums a little off 1, the corners of the fast path's bound.
    pub(crate) fn row(t: usize, c: usize, scale: f64, shape: u64, rng: &mut u64) -> Vec<f64> {
        let mut next = || {
            *rng = splitmix64(*rng);
            (*rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let centre: Vec<f64> = (0..c).map(|_| next() * scale).collect();
        let mut p = Vec::with_capacity(t * c);
        for _ in 0..t {
            let e: Vec<f64> = centre.iter().map(|&m| (m + next() * 2.0).exp()).collect();
            let sum: f64 = e.iter().sum();
            p.extend(e.iter().map(|v| v / sum));
        }
        let cells = p.len() as u64;
        match shape {
            1 => {
                for _ in 0..t {
                    p[(splitmix64(*rng) % cells) as usize] = 0.0;
                    *rng = splitmix64(*rng);
                }
            }
            2 => {
                for _ in 0..t {
                    p[(splitmix64(*rng) % cells) as usize] = 1e-41;
                    *rng = splitmix64(*rng);
                }
            }
            3 => p.iter_mut().for_each(|v| *v *= 1.0 + 3e-4),
            _ => {}
        }
        p
    }

    #[test]
    fn the_fast_gain_interval_holds_the_gain() {
        let mut rng = 0xF00Du64;
        let mut worst = 0.0f64;
        for (t, c, picks, budget) in INTERVAL_CASES {
            let batch: Vec<Vec<f64>> = (0..picks)
                .map(|i| row(t, c, 1.0 + i as f64, 0, &mut rng))
                .collect();
            let joint = Joint::new(&batch, t, c, budget, 9);
            let (mut r, mut fast) = (Vec::new(), FastScratch::default());
            for case in 0..40u64 {
                let scale = [0.1, 2.0, 8.0, 30.0][case as usize % 4];
                let p = row(t, c, scale, case % 4, &mut rng);
                let cond = conditional_entropy(&p, c);
                // The gain, then each level's bound.
                let mut exact: Vec<(Option<usize>, f64)> = (0..joint.bounds())
                    .map(|l| (Some(l), joint.bound(l, &p, cond, &mut r)))
                    .collect();
                exact.push((None, joint.gain(&p, cond, &mut r)));
                for (level, want) in exact {
                    for double in [false, true] {
                        let (value, e) = if double {
                            joint.fast_interval::<f64>(level, &p, cond, &mut fast)
                        } else {
                            joint.fast_interval::<f32>(level, &p, cond, &mut fast)
                        };
                        let off = (want - value).abs();
                        assert!(
                            off <= e + joint.slack(),
                            "T {t}, C {c}, {picks} picks, case {case}, level {level:?}, \
                             f64 {double}: {want} against {value} ± {e}"
                        );
                        // Tight enough to leave most candidates to the fast
                        // path (f32), and nearly all of them (f64).
                        let wide = if double { 1e-11 } else { 1e-4 };
                        assert!(e < wide, "T {t}, C {c}: the interval is {e} wide");
                        worst = worst.max(off / e);
                    }
                }
            }
        }
        // The bound is proven, not fitted: the error seen stays well inside.
        assert!(
            worst < 0.5,
            "the fast path's error reached {worst} of its bound"
        );
    }
}
