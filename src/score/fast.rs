//! Approximate f32 scoring with proven error bounds: the fast paths' half of
//! the filter-and-refine rule. The WGSL shaders implement the same
//! functions (`shaders/select.wgsl`), so the same bounds cover them.
//!
//! Least confidence, margin and ratio need no approximation on plain
//! probability input: the two largest stored values are found exactly in
//! f32 and the score is then formed in f64 exactly as [`super::canonical_score`]
//! does. Only entropy needs a logarithm per value, and f64 `ln` is far too
//! slow to stay near the memory-bandwidth floor, so it uses [`ln_approx`].

/// √½, the split point that keeps the polynomial argument in [√½−1, √2−1].
const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Cephes `logf`'s polynomial in the reduced mantissa, highest power
/// first, as published: one list for the scalar, AVX2 and AVX-512 forms
/// ([`super::lanes`]), which must round alike (`shaders/ln.wgsl` spells
/// the same numbers).
// The coefficients are Cephes' as published.
#[allow(clippy::excessive_precision)]
pub(crate) const LN_POLY: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461_1e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_5e-1,
    -2.499_999_4e-1,
    3.333_333_1e-1,
];

/// ln 2 as a high part exact in f32 (so `e · LN2_HI` is exact) and the
/// low correction.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
/// See [`LN2_HI`].
// As published by Cephes.
#[allow(clippy::excessive_precision)]
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;

/// Natural log of a positive *normal* f32, branch-free so it vectorizes:
/// the Cephes `logf` polynomial on the mantissa plus the exponent times
/// ln 2 (split in a high part exact in f32 and a low correction).
///
/// An exhaustive run over every normal f32 in (0, 2] found the error at most
/// 0.49 · (1.2e-7 + 1.2e-7 · |ln x|) (with or without FMA contraction), and
/// one up to 65536 (`ln_approx_error_exhaustive`) at most 0.5 of it; the
/// `ln_approx_error` test re-checks a sample. [`LN_ABS_ERR`] and
/// [`LN_REL_ERR`] take 4x the measured maximum.
#[inline(always)]
pub fn ln_approx(x: f32) -> f32 {
    ln_with(x, |a, b, c| a * b + c)
}

/// [`ln_approx`] with each multiply and the add after it fused (one
/// rounding): nine fewer operations where the CPU fuses, so the paths
/// whose work is the logarithm (BALD's and the multi-label fast paths)
/// take it. Its error is within the same bound: the exhaustive runs
/// (`ln_approx_error_exhaustive`) check both forms. In the scalar copies
/// (a CPU without AVX2 and FMA) each fused step is a call to libm's
/// `fmaf`: the same bits, several times slower; only CPUs from before
/// about 2013 run those copies.
#[inline(always)]
pub fn ln_approx_fused(x: f32) -> f32 {
    ln_with(x, f32::mul_add)
}

/// The logarithm's one definition; `madd(a, b, c)` is `a · b + c`, fused
/// or not.
#[inline(always)]
fn ln_with(x: f32, madd: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // [0.5, 1)
    let small = m < SQRT_HALF;
    e -= small as i32;
    let x = if small { m + m - 1.0 } else { m - 1.0 };
    let z = x * x;
    let mut y = LN_POLY[0];
    for &k in &LN_POLY[1..] {
        y = madd(y, x, k);
    }
    y = y * x * z;
    let fe = e as f32;
    y = madd(fe, LN2_LO, y);
    y = madd(-0.5, z, y);
    madd(fe, LN2_HI, x + y)
}

/// `p · ln p` in f32, with `0 · ln 0 = 0`; values below the smallest normal
/// f32 also give 0 (their true term is above −1.1e-36).
#[inline(always)]
pub fn plogp_approx(p: f32) -> f32 {
    plogp_with(p, ln_approx)
}

/// [`plogp_approx`] by [`ln_approx_fused`]: what the vector kernels'
/// `plogp16` and `plogp8` compute.
#[inline(always)]
pub fn plogp_fused(p: f32) -> f32 {
    plogp_with(p, ln_approx_fused)
}

#[inline(always)]
fn plogp_with(p: f32, ln: impl Fn(f32) -> f32) -> f32 {
    if p >= f32::MIN_POSITIVE {
        p * ln(p)
    } else {
        0.0
    }
}

/// |ln_approx(x) − ln x| ≤ LN_ABS_ERR + LN_REL_ERR · |ln x| for normal
/// x ≤ [`LN_MAX_X`], with a 4x safety factor over the exhaustive
/// measurement.
pub const LN_ABS_ERR: f64 = 2.4e-7;
/// Relative error of the vectorized f32 logarithm, measured over every
/// normal f32 up to [`LN_MAX_X`].
pub const LN_REL_ERR: f64 = 2.4e-7;
/// The largest input the f32 logarithm's bound was measured for.
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub const LN_MAX_X: f32 = 65536.0;

/// Natural log of a positive *normal* f64, branch-free so it vectorizes:
/// `x = 2^e · m` with m in [√½, √2), `ln m = 2 atanh(s)`, `s = (m − 1)/(m + 1)`,
/// by its series to `s¹⁹` (|s| ≤ 0.1716, so the rest is below 1e-17), and
/// `e · ln 2` in fdlibm's two parts (the high part times any exponent is
/// exact).
///
/// The error, from the operations: `m − 1` is exact (Sterbenz), `s` is
/// within 2u relative (u = 2⁻⁵³), the series' correction `2s·z·P(z)` is
/// under 1% of `2s` and within 14u relative, and the two final additions
/// round once each; in all under `6u |ln x| + 4u |ln m| + 1e-17`, so
/// [`LN64_ABS_ERR`] and [`LN64_REL_ERR`] hold it with a factor of 10 to
/// spare (`ln_approx64_error` checks a million inputs against `f64::ln`).
#[inline(always)]
pub fn ln_approx64(x: f64) -> f64 {
    // fdlibm's ln2_hi (its low 32 bits zero) and ln2_lo.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1022;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3fe0_0000_0000_0000); // [0.5, 1)
    let small = m < std::f64::consts::FRAC_1_SQRT_2;
    e -= small as i64;
    let m = if small { m + m } else { m };
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let mut poly = 1.0 / 19.0;
    for k in [17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0] {
        poly = poly * z + 1.0 / k;
    }
    let fe = e as f64;
    fe * LN2_HI + (2.0 * s + (2.0 * s * z * poly + fe * LN2_LO))
}

/// |ln_approx64(x) − ln x| ≤ LN64_ABS_ERR + LN64_REL_ERR · |ln x| for
/// normal x ≤ 2.
pub const LN64_ABS_ERR: f64 = 1e-14;
/// Relative error of [`ln_approx64`].
pub const LN64_REL_ERR: f64 = 1e-14;

/// A float the batch fast paths compute in: f32 for twice the lanes, f64
/// for intervals a million times narrower. Each gives its unit roundoff
/// and its logarithm's proven error, so one error bound serves both.
pub trait Real: Copy + Default + std::ops::SubAssign {
    /// The unit roundoff u.
    const UNIT: f64;
    /// The logarithm's error: absolute part.
    const LN_ABS: f64;
    /// The logarithm's error: part relative to |ln x|.
    const LN_REL: f64;
    /// A bound on what values below the normal range move one class's
    /// `p ln p` by (their flushed term, and the sums' absolute rounding).
    const TINY: f64;
    fn of(x: f64) -> Self;
    fn get(self) -> f64;
    /// `self · a + b`, fused where the CPU fuses.
    fn fma(self, a: Self, b: Self) -> Self;
    /// `p ln p`, 0 below the normal range.
    fn plogp(self) -> Self;
}

impl Real for f32 {
    const UNIT: f64 = 1.0 / 16_777_216.0;
    const LN_ABS: f64 = LN_ABS_ERR;
    const LN_REL: f64 = LN_REL_ERR;
    const TINY: f64 = 1.2e-36;
    #[inline(always)]
    fn of(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn get(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn fma(self, a: f32, b: f32) -> f32 {
        self.mul_add(a, b)
    }
    #[inline(always)]
    fn plogp(self) -> f32 {
        plogp_approx(self)
    }
}

impl Real for f64 {
    const UNIT: f64 = f64::EPSILON / 2.0;
    const LN_ABS: f64 = LN64_ABS_ERR;
    const LN_REL: f64 = LN64_REL_ERR;
    const TINY: f64 = 1e-300;
    #[inline(always)]
    fn of(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn get(self) -> f64 {
        self
    }
    #[inline(always)]
    fn fma(self, a: f64, b: f64) -> f64 {
        self.mul_add(a, b)
    }
    #[inline(always)]
    fn plogp(self) -> f64 {
        if self >= f64::MIN_POSITIVE {
            self * ln_approx64(self)
        } else {
            0.0
        }
    }
}

/// Error bound of the approximate natural entropy
/// `h_hat = −Σ plogp_approx(p_i)` (or `plogp_fused`; summed in f32) against the
/// canonical one, for a row of `classes` values summing to about `sum`.
///
/// Per term: |p·ln̂p − p·ln p| ≤ p·(A + R·|ln p|) + u·|p·ln̂p| (the f32
/// product's rounding, u = 2⁻²⁴); flushed subnormal terms add at most
/// 1.1e-36 each; the f32 sum of C terms adds (C − 1)·u·Σ|terms|. In all:
/// A·sum + (R + C·u)·H + C·1.1e-36, with H ≤ ĥ(1 + 1e-6) + 1e-6. The
/// canonical f64 sum differs by a few f64 ulp of H. Doubled for margin.
#[inline(always)]
pub fn entropy_bound(h_hat: f64, sum: f64, classes: usize) -> f64 {
    const U: f64 = 1.0 / 16_777_216.0;
    let c = classes as f64;
    let h = h_hat.abs() * (1.0 + 1e-6) + 1e-6;
    2.0 * (LN_ABS_ERR * sum.abs() + (LN_REL_ERR + c * U + 1e-15) * h + c * 1.2e-36)
}

/// An upper bound on the canonical natural entropy `−Σ p ln p` of a row of
/// `classes` non-negative values whose largest is `a` and whose sum is `s`:
/// `−p ln p` is concave, so the other `C − 1` values hold the most entropy
/// when they share the remaining mass `s − a` equally.
pub fn entropy_given_max(a: f64, s: f64, classes: usize) -> f64 {
    let f = |p: f64| if p > 0.0 { -p * p.ln() } else { 0.0 };
    let rest = s - a;
    let others = if classes > 1 && rest > 0.0 {
        let c1 = (classes - 1) as f64;
        c1 * f(rest / c1)
    } else {
        0.0
    };
    f(a) + others
}

/// The entropy prefilter: the largest row maximum that can still reach
/// priority `thresh` (natural entropy / `ln_b`). Any valid row (values
/// ≥ 0, sum within `tol` of 1) whose largest value is above the returned
/// f32 has a canonical priority below `thresh`, so a kernel may skip its
/// logarithms. Infinity (skip nothing) when `thresh` is not finite or no
/// maximum is high enough.
pub fn entropy_max_cutoff(thresh: f64, classes: usize, tol: f64, ln_b: f64) -> f32 {
    if !thresh.is_finite() || classes == 0 {
        return f32::INFINITY;
    }
    let c = classes as f64;
    let (s_lo, s_hi) = (1.0 - tol, 1.0 + tol);
    // The bound's worst case over the sums a valid row can have: it is
    // concave in s with its peak at s = a + (C − 1)/e.
    let worst = |a: f64| {
        let lo = s_lo.max(a);
        let s = (a + (c - 1.0) / std::f64::consts::E).clamp(lo.min(s_hi), s_hi);
        entropy_given_max(a, s, classes)
    };
    // Far above the f64 rounding of the canonical sum and of `worst`.
    let margin = 1e-9 * (1.0 + thresh.abs());
    let skips = |a: f64| worst(a) / ln_b + margin < thresh;
    // From a = (1 + tol)/C up, every sum's bound decreases with a, and so
    // does their worst case over a shrinking range of sums.
    let (mut lo, mut hi) = (s_hi / c, s_hi);
    if !skips(hi) {
        return f32::INFINITY;
    }
    if !skips(lo) {
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if skips(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
    } else {
        hi = lo;
    }
    // Rounded up, so a stored f32 above the cutoff is above `hi`.
    let f = hi as f32;
    if (f as f64) < hi { f.next_up() } else { f }
}

/// Bound on |GPU f32 priority − canonical priority| for the kernels in
/// `shaders/select.wgsl`, which score in f32 (the same logarithm as
/// [`ln_approx`], but the GPU may fuse multiply-adds, and WGSL's `exp` is
/// only accurate to 3 + 2|x| ulp):
/// - plain probabilities: least confidence, margin, ratio and random round
///   once or twice in f32 (≤ 2⁻²⁴ each): 8·2⁻²⁴; entropy: 4x the CPU bound
///   at the largest entropy (ln C) plus the f32 scaling by 1/ln b;
/// - logits add the softmax's error: each p carries a relative error of at
///   most (C + 6 + 2|z|)·2⁻²³, which moves least confidence, margin and
///   ratio by (C + 8)²·2⁻²² at most and entropy by (C + 8)·16·(2 + ln C)·2⁻²²
///   (p·ln²p ≤ 0.55);
/// - renormalized rows add (C + 1)·2⁻²⁴ relative error per p from the f32 sum.
///
/// Loose bounds cost only extra candidates, never exactness.
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub fn gpu_bound(
    strategy: super::Strategy,
    input: &crate::query::InputForm,
    ln_b: f64,
    classes: usize,
) -> f64 {
    const U: f64 = 1.0 / 16_777_216.0;
    let c = classes.max(1) as f64;
    let ln_c = c.ln().max(1.0);
    let entropy = strategy == super::Strategy::Entropy;
    let (sum_tol, renormalize, logits) = match *input {
        crate::query::InputForm::Probs {
            sum_tol,
            renormalize,
        } => (sum_tol, renormalize, false),
        crate::query::InputForm::Logits { .. }
        | crate::query::InputForm::MultiLabel { .. }
        | crate::query::InputForm::Regression(_) => (0.0, false, true),
    };
    let mut b = if entropy {
        (4.0 * entropy_bound(ln_c, 1.0 + sum_tol, classes) + 8.0 * U * ln_c) / ln_b
    } else {
        8.0 * U
    };
    if renormalize {
        // x / s with s summed in f32: each p off by (C + 1)·2⁻²⁴ relative.
        let extra = 4.0 * (c + 2.0) * U * (1.0 + ln_c);
        b += if entropy {
            extra / ln_b.min(1.0)
        } else {
            extra
        };
    }
    if logits {
        let extra = (c + 8.0) * (c + 16.0 + 16.0 * (2.0 + ln_c)) * 2.0 * U;
        b += if entropy {
            extra / ln_b.min(1.0)
        } else {
            extra
        };
    }
    b
}

/// The interval `half + rel · |priority|` around a disagreement score as
/// the GPU kernel computes it in f32 (`shaders/select.wgsl`,
/// `score_samples`), against the canonical f64 score, in units of `log_b`.
/// With u = 2⁻²⁴ and H = (1 + tol)·ln C plus the entropy bound E of one f32
/// entropy (as [`gpu_bound`]'s: 4x the CPU's at ln C, for the GPU's own
/// rounding and fused multiply-adds):
/// - BALD (and kl-mean, equal in exact arithmetic): the mean of the T
///   sample entropies, E each, and the f32 sum of T terms of at most H and
///   its division by T: T·u·H; then as consensus entropy;
/// - consensus entropy: p̄ summed over samples in f32 and divided by T is
///   p̄·(1 + δ_j), |δ_j| ≤ δ = 1.01·T·u, which moves H(p̄) by at most
///   δ·(H + 1.01 Σ p̄) (the slope of `−x ln x` is `−(ln x + 1)`); then E
///   for ĥ(p̄₃₂); the subtraction: 2·u·H; values a GPU flushes below the
///   smallest normal f32: 1e-35 a class; the canonical kl-mean's own f64
///   rounding away from BALD's: 1e-9·(1 + H);
/// - vote entropy: the votes are exact (argmax of the stored values), so
///   it is consensus entropy of one "sample", the fractions v/T;
/// - variation ratio: `1 − f/T` rounds twice in f32;
/// - kl-max: each term `p·(ln̂ p − ln̂ p̄₃₂)` of a normal p is off by
///   p·(2·(A + R·(|ln p| + |ln p̄|)) + 1.01δ) with the f32 logarithm's
///   A and R (doubled again for the GPU, as E is), and by 2u of
///   p·(|ln p| + |ln p̄|) from the difference and the product; the f32 sum
///   of C terms adds C·u of their total. Since p̄ ≥ p/T (every sample is
///   non-negative), Σ p·|ln p̄| ≤ H + (1 + tol)·ln T, so
///   Σ p·(|ln p| + |ln p̄|) ≤ 2H + (1 + tol)·ln T; a value below the
///   smallest normal f32 is left out, 2e-36 a class. The max over samples
///   keeps the bound;
/// - mean-std: the kernel bounds each row from its own values (see
///   `column_spread`); here only the canonical score's f64 rounding;
/// - the scaling by 1/ln b in f32: `rel` = 4u.
///
/// Doubled for margin: a loose bound costs only candidates.
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub fn gpu_samples_bound(
    d: crate::query::Disagreement,
    classes: usize,
    samples: usize,
    sum_tol: f64,
    ln_b: f64,
) -> (f64, f64) {
    use crate::query::Disagreement as D;
    const U: f64 = 1.0 / 16_777_216.0;
    let c = classes.max(1) as f64;
    if d == D::MeanStd {
        // The kernel makes each row's interval from its own values; this
        // covers only the canonical f64 score's own rounding.
        return (1e-30, 1e-8);
    }
    if d == D::KlMax {
        let (t, sum) = (samples.max(1) as f64, 1.0 + sum_tol);
        let h = sum * c.ln().max(1.0) * (1.0 + 1e-6) + 1e-6;
        let (a, r) = (4.0 * LN_ABS_ERR, 4.0 * LN_REL_ERR);
        let logs = 2.0 * h + sum * t.ln();
        let nats = sum * (2.0 * a + 1.01 * 1.01 * t * U) + (2.0 * r + (2.0 + c) * U) * logs;
        let nats = nats + c * 2e-36 + 1e-9 * (1.0 + logs);
        return (2.0 * nats / ln_b, 4.0 * U);
    }
    let (t, sum_tol) = match d {
        D::VariationRatio => return (8.0 * U, 0.0),
        // The fractions sum to 1 within the rounding of each.
        D::VoteEntropy => (1.0, 2.0 * c * U),
        _ => (samples.max(1) as f64, sum_tol),
    };
    let ln_c = c.ln().max(1.0);
    let delta = 1.01 * t * U;
    let sum = 1.0 + sum_tol;
    let e_each = 4.0 * entropy_bound(ln_c, sum, classes) + 8.0 * U * ln_c;
    let e_mean = 4.0 * entropy_bound(ln_c, sum * (1.0 + delta), classes) + 8.0 * U * ln_c;
    let h = sum * ln_c + e_each;
    let each = match d {
        D::Bald | D::KlMean => e_each + t * U * h,
        _ => 0.0,
    };
    let nats =
        each + delta * (h + 1.01 * sum) + e_mean + 2.0 * U * h + c * 1e-35 + 1e-9 * (1.0 + h);
    (2.0 * nats / ln_b, 4.0 * U)
}

/// The relative change [`gpu_rounded_samples_bound`] allows each value:
/// float32 rounding (2⁻²⁴) and one ulp more (2⁻²³), within 2⁻²².
pub const ROUNDING: f64 = 1.0 / 4_194_304.0;

/// How far a disagreement score can move when every canonical probability
/// is rounded to float32 for the GPU, in units of `log_b` (mean-std and
/// variation ratio in their own). The host rounds each f64 value to the
/// nearest float32 and raises the sample's first largest value by one ulp
/// where rounding tied it with a value before it, so each value moves by
/// at most ρ = 2⁻²² relative plus 2⁻¹⁴⁸ absolute, and every sample's
/// argmax (ties to the lower class) is the canonical one:
/// - variation ratio and vote entropy count the same votes: 0;
/// - an entropy of a row summing to S moves by at most
///   E = ρ·(S ln C + 0.4) + (1 + ρ)·S·ρ/(1 − ρ) (write each value as
///   q(1 + η): `−qη ln q − q(1 + η) ln(1 + η)`, and Σ|q ln q| ≤ S ln C + 1/e);
///   p̄ is a mean of such values, so it is p̄(1 + η̄) with |η̄| ≤ ρ too;
///   BALD moves by 2E, consensus entropy by E;
/// - a KL term `p ln(p/p̄)` moves by ρ·p|ln(p/p̄)| + (1 + ρ)·p·2ρ/(1 − ρ),
///   and Σ p|ln(p/p̄)| ≤ 2(S ln C + 0.4) + S ln T (p̄ ≥ p/T); kl-mean is
///   the mean of T such sums, kl-max their max;
/// - mean-std: each population standard deviation moves by at most the
///   largest change of a value, ρ·S, plus 2⁻¹²⁶ for a value below the normal range;
/// - a value below the smallest normal float32 adds at most 1e-35 a class
///   and sample (`x|ln x| ≤ 1.1e-36` there, `ln T` more for a KL term).
///
/// Doubled, as every GPU bound here.
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub fn gpu_rounded_samples_bound(
    d: crate::query::Disagreement,
    classes: usize,
    samples: usize,
    sum_tol: f64,
    ln_b: f64,
) -> f64 {
    samples_moved_bound(d, (classes, samples), sum_tol, ln_b, ROUNDING)
}

/// How far a disagreement score can move when every probability moves by
/// at most `rho` relative (plus 2⁻¹⁴⁸ absolute, and values below float32's
/// normal range by anything up to it) with each sample's argmax kept: the
/// argument of [`gpu_rounded_samples_bound`] with ρ = `rho` (< 1), in
/// units of `log_b`, doubled. It grows faster than linearly in ρ, so
/// `(f(ρ) − f(0)) / ρ` at a largest ρ bounds it per unit for every smaller
/// one (the MC-dropout planes the GPU makes, `crate::features`).
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub fn samples_moved_bound(
    d: crate::query::Disagreement,
    (classes, samples): (usize, usize),
    sum_tol: f64,
    ln_b: f64,
    rho: f64,
) -> f64 {
    use crate::query::Disagreement as D;
    let (c, t) = (classes.max(1) as f64, samples.max(1) as f64);
    let s = 1.0 + sum_tol;
    let habs = s * c.ln() + 0.4;
    let tiny = c * t * 1e-35 * (1.0 + t.ln());
    let entropy = rho * habs + (1.0 + rho) * s * rho / (1.0 - rho);
    let kl = rho * (2.0 * habs + s * t.ln()) + (1.0 + rho) * s * 2.0 * rho / (1.0 - rho);
    let nats = match d {
        D::VariationRatio | D::VoteEntropy => return 0.0,
        // A value below float32's normal range may move to 0 (a GPU
        // flushes it): 2⁻¹²⁶ at most.
        D::MeanStd => return 2.0 * (rho * s + 1.2e-38),
        D::Bald => 2.0 * entropy,
        D::ConsensusEntropy => entropy,
        D::KlMean | D::KlMax => kl,
    };
    2.0 * (nats + tiny) / ln_b
}

/// Each sample's canonical sum (f64, in column order) into `sums`: eight
/// samples at a time, each its own chain, in registers.
#[inline(always)]
pub(crate) fn sample_sums(row: &[f32], classes: usize, sums: &mut [f64]) {
    let t = sums.len();
    let mut t0 = 0;
    while t0 + 8 <= t {
        let mut acc = [0.0f64; 8];
        for j in 0..classes {
            for (l, a) in acc.iter_mut().enumerate() {
                *a += row[(t0 + l) * classes + j] as f64;
            }
        }
        sums[t0..t0 + 8].copy_from_slice(&acc);
        t0 += 8;
    }
    for (sum, s) in sums[t0..]
        .iter_mut()
        .zip(row[t0 * classes..].chunks_exact(classes))
    {
        *sum = s.iter().map(|&x| x as f64).sum();
    }
}

/// BALD's fast half, for one valid row of plain probabilities: its T
/// samples of C values as stored (sample after sample), each sample's
/// canonical f64 sum in `sums`. Returns BALD in nats approximated in f32,
/// `ĥ(p̄) − (1/T) Σ_t ĥ(p_t)`, and a proven bound on its distance to the
/// canonical f64 value (`score::disagree`), which kl-mean equals in exact
/// arithmetic:
/// - each `ĥ(p_t)` is within [`entropy_bound`] of the canonical `H(p_t)`
///   (the stored values are the canonical probabilities);
/// - p̄ is summed in f64 as the canonical mean is, then rounded to f32
///   (relative error u = 2⁻²⁴), so `ĥ(p̄₃₂)` is within [`entropy_bound`] of
///   `H(p̄₃₂)`, which is within `2u·(H + Σ p̄)` of `H(p̄)` (the slope of
///   `−x ln x` is `−(ln x + 1)`), doubled, plus 1e-36 a class for values
///   that round below the smallest normal f32.
///
/// `terms` (T·C) and `mean` (C) are scratch.
#[inline(always)]
pub(crate) fn bald_approx(
    row: &[f32],
    classes: usize,
    sums: &[f64],
    terms: &mut [f32],
    mean: &mut [f32],
) -> (f64, f64) {
    const U: f64 = 1.0 / 16_777_216.0;
    let t = row.len() / classes;
    for (o, &x) in terms.iter_mut().zip(row) {
        *o = plogp_fused(x);
    }
    let (mut h_each, mut b_each) = (0.0f64, 0.0f64);
    for (s, &sum) in terms.chunks_exact(classes).zip(sums) {
        let h = -(s.iter().sum::<f32>()) as f64;
        h_each += h;
        b_each += entropy_bound(h, sum, classes);
    }
    // p̄ as the canonical mean: per class, the f64 sum in sample order,
    // over T; eight classes side by side, in registers.
    let mut sum_m = 0.0f64;
    let mut j0 = 0;
    while j0 < classes {
        let w = (classes - j0).min(8);
        let mut acc = [0.0f64; 8];
        if w == 8 {
            for s in row.chunks_exact(classes) {
                for (a, &x) in acc.iter_mut().zip(&s[j0..j0 + 8]) {
                    *a += x as f64;
                }
            }
        } else {
            for s in row.chunks_exact(classes) {
                for (a, &x) in acc.iter_mut().zip(&s[j0..j0 + w]) {
                    *a += x as f64;
                }
            }
        }
        for (o, &a) in mean[j0..j0 + w].iter_mut().zip(&acc) {
            let m = a / t as f64;
            sum_m += m;
            *o = m as f32;
        }
        j0 += w;
    }
    let h_mean = -(mean.iter().map(|&x| plogp_fused(x)).sum::<f32>()) as f64;
    let rounding = 4.0 * U * (h_mean.abs() + sum_m + 1e-6) + classes as f64 * 1e-36;
    let b_mean = entropy_bound(h_mean, sum_m, classes) + rounding;
    let tf = t as f64;
    (h_mean - h_each / tf, b_mean + b_each / tf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// The larger error of the two forms, relative to half the bound.
    fn check_ln(x: f32) -> f64 {
        let exact = (x as f64).ln();
        let err = (ln_approx(x) as f64 - exact)
            .abs()
            .max((ln_approx_fused(x) as f64 - exact).abs());
        err / (LN_ABS_ERR / 2.0 + LN_REL_ERR / 2.0 * exact.abs())
    }

    /// The WGSL logarithm spells [`LN_POLY`], [`LN2_HI`] and [`LN2_LO`]:
    /// every kernel's entropy is bounded by the CPU's analysis only if it
    /// computes the same polynomial.
    #[test]
    fn the_shaders_logarithm_has_the_cpus_constants() {
        fn leading(s: &str) -> f32 {
            let s = s.trim_start();
            let end = s
                .find(|c: char| !(c.is_ascii_digit() || "+-.e".contains(c)))
                .unwrap_or(s.len());
            s[..end].parse().expect("a number")
        }
        let wgsl = include_str!("../../shaders/ln.wgsl");
        let (mut poly, mut hi, mut lo) = (Vec::new(), None, None);
        for line in wgsl.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("var y = ") {
                poly.push(leading(rest));
            } else if let Some(rest) = line.strip_prefix("y = y * x - ") {
                poly.push(-leading(rest));
            } else if let Some(rest) = line.strip_prefix("y = y * x + ") {
                poly.push(leading(rest));
            } else if let Some(rest) = line.strip_prefix("y = y + fe * ") {
                lo = Some(leading(rest));
            } else if let Some(rest) = line.strip_prefix("return fe * ") {
                hi = Some(leading(rest));
            }
        }
        assert_eq!(poly, LN_POLY);
        assert_eq!((hi, lo), (Some(LN2_HI), Some(LN2_LO)));
    }

    /// Every normal f32 the bound is stated for, as measured once (about
    /// 1.2 billion logarithms; `cargo test --release -- --ignored`).
    #[test]
    #[ignore]
    fn ln_approx_error_exhaustive() {
        let worst = (f32::MIN_POSITIVE.to_bits()..=LN_MAX_X.to_bits())
            .into_par_iter()
            .map(|b| check_ln(f32::from_bits(b)))
            .reduce(|| 0.0, f64::max);
        assert!(worst <= 0.5, "{worst}");
    }

    #[test]
    fn ln_approx_error() {
        // Every 97th normal f32 in (0, 65536] (BatchBALD's sums of samples
        // may pass 1; a stochastic batch's noise takes logarithms up to
        // 37), plus the ends and the split point.
        let lo = f32::MIN_POSITIVE.to_bits();
        let hi = LN_MAX_X.to_bits();
        let mut worst = 0.0f64;
        let mut b = lo;
        while b <= hi {
            worst = worst.max(check_ln(f32::from_bits(b)));
            b += 97;
        }
        for x in [
            f32::MIN_POSITIVE,
            1.0,
            SQRT_HALF,
            0.5,
            1.0 - f32::EPSILON,
            2.0,
            LN_MAX_X,
        ] {
            worst = worst.max(check_ln(x));
        }
        // Relative to 1.2e-7 (1 + |ln x|), the exhaustive maximum was 0.49.
        assert!(
            worst <= 0.5,
            "ln_approx error is {worst} times the measured bound"
        );
    }

    #[test]
    fn ln_approx64_error() {
        // Log-uniform over the normal range up to 2, and dense around the
        // split points, where the series is longest and the parts cancel.
        let mut rng = 0x5EED_u64;
        let mut worst = 0.0f64;
        for i in 0..1_000_000u64 {
            rng = crate::rng::splitmix64(rng);
            let u = (rng >> 11) as f64 / (1u64 << 53) as f64;
            let x = match i % 3 {
                0 => (u * (2f64.ln() - f64::MIN_POSITIVE.ln()) + f64::MIN_POSITIVE.ln()).exp(),
                1 => std::f64::consts::FRAC_1_SQRT_2 * (1.0 + (u - 0.5) * 1e-3),
                _ => 1.0 + (u - 0.5) * 1e-2,
            };
            if !(f64::MIN_POSITIVE..=2.0).contains(&x) {
                continue;
            }
            let exact = x.ln();
            let err = (ln_approx64(x) - exact).abs();
            worst = worst.max(err / (LN64_ABS_ERR + LN64_REL_ERR * exact.abs()));
        }
        for x in [
            f64::MIN_POSITIVE,
            0.5,
            1.0,
            2.0,
            std::f64::consts::FRAC_1_SQRT_2,
        ] {
            let err = (ln_approx64(x) - x.ln()).abs();
            worst = worst.max(err / (LN64_ABS_ERR + LN64_REL_ERR * x.ln().abs()));
        }
        // The analysis allows a tenth of the bound; the sample must too.
        assert!(worst <= 0.1, "ln_approx64 error is {worst} of its bound");
    }

    #[test]
    fn entropy_bound_holds_on_hard_rows() {
        let mut rng = 0x1234_5678u64;
        let mut next = || {
            rng = crate::rng::splitmix64(rng);
            (rng >> 40) as f32 / (1u64 << 24) as f32
        };
        for classes in [2usize, 3, 10, 100, 1000] {
            for trial in 0..200 {
                // Mix flat rows, peaked rows and tiny values.
                let mut row: Vec<f32> = (0..classes)
                    .map(|_| {
                        let u = next();
                        match trial % 3 {
                            0 => u,
                            1 => u.powi(8),
                            _ => (u * -80.0).exp(),
                        }
                    })
                    .collect();
                let s: f32 = row.iter().sum();
                row.iter_mut().for_each(|x| *x /= s);
                let p: Vec<f64> = row.iter().map(|&x| x as f64).collect();
                let exact = super::super::entropy_nat(&p);
                let h_hat = -row.iter().map(|&x| plogp_approx(x)).sum::<f32>() as f64;
                let sum: f64 = p.iter().sum();
                let bound = entropy_bound(h_hat, sum, classes);
                assert!(
                    (h_hat - exact).abs() <= bound / 2.0,
                    "C={classes}: |{h_hat} - {exact}| > {bound}/2"
                );
            }
        }
    }

    /// The prefilter never skips a row that could reach the threshold: for
    /// rows of every shape (flat, peaked, one-hot, sums at both ends of the
    /// tolerance) and thresholds around their own entropy, a row whose
    /// maximum is above the cutoff has a canonical priority below it.
    #[test]
    fn the_entropy_cutoff_never_skips_a_contender() {
        let mut rng = 0x9e37_79b9u64;
        let mut next = || {
            rng = crate::rng::splitmix64(rng);
            (rng >> 40) as f64 / (1u64 << 24) as f64
        };
        let mut skipped = 0;
        for classes in [1usize, 2, 3, 4, 10, 100] {
            for (tol, ln_b) in [
                (1e-3, 1.0),
                (0.05, std::f64::consts::LN_2),
                (0.0, 10f64.ln()),
            ] {
                for trial in 0..400 {
                    let mut row: Vec<f64> = (0..classes)
                        .map(|_| {
                            let u = next();
                            match trial % 4 {
                                0 => u,
                                1 => u.powi(8),
                                2 => (u * -30.0).exp(),
                                _ => u.powi(40),
                            }
                        })
                        .collect();
                    let total: f64 = row.iter().sum::<f64>().max(1e-300);
                    // A sum anywhere in [1 − tol, 1 + tol].
                    let target = 1.0 + tol * (2.0 * next() - 1.0);
                    let row: Vec<f32> = row
                        .iter_mut()
                        .map(|x| (*x / total * target) as f32)
                        .collect();
                    let p: Vec<f64> = row.iter().map(|&x| x as f64).collect();
                    if (p.iter().sum::<f64>() - 1.0).abs() > tol {
                        continue;
                    }
                    let max = row.iter().copied().fold(0.0f32, f32::max);
                    let priority = super::super::entropy_nat(&p) / ln_b;
                    for t in [
                        priority * (1.0 + 1e-12),
                        priority + 1e-6,
                        priority + 0.01,
                        priority * 1.5 + 0.1,
                        priority - 1e-6,
                    ] {
                        let cutoff = entropy_max_cutoff(t, classes, tol, ln_b);
                        if max > cutoff {
                            skipped += 1;
                            assert!(
                                priority < t,
                                "C={classes} tol={tol}: row {row:?} (priority {priority}) skipped at threshold {t}, cutoff {cutoff}"
                            );
                        }
                    }
                }
            }
        }
        // The filter does skip rows (it is not vacuous).
        assert!(skipped > 1000, "skipped only {skipped}");
    }
}
