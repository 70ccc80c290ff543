//! The counter-based random stream behind BADGE's D² sampling, and the
//! exponential variates it turns into.
//!
//! # Why a race instead of a prefix sum
//! k-means++ picks row `i` with probability `w_i / Σ w`. Done by a prefix
//! sum, the pick depends on every row's weight to the last bit, so a fast
//! float32 weight on one backend and another summation order on a second
//! could pick different rows. The exponential race picks the same
//! distribution with a per-row key instead: with `E_i` independent standard
//! exponentials, `argmax_i w_i / E_i` is row `i` with probability
//! `w_i / Σ w` (the minimum of independent exponentials with rates `w_i` is
//! the `i`-th with that probability). A pick is then an arg-max, exactly
//! like core-set's, and the float32 fast path with a bound plus a
//! canonical re-check keeps it exact.
//!
//! # The stream
//! `E` for pick `t` and row `i` comes from 23 bits of a hash of
//! `(seed, t, i)`: the same on every run, thread count, chunk size and
//! backend, and computable on a GPU (32-bit integers only). `U = (r + ½)·2⁻²³`
//! is exact in float32, and `E = −ln U` is computed by one formula in both
//! precisions (`ln` by the atanh series on the mantissa), so the canonical
//! value is defined by this file and not by a platform's `libm`.

/// lowbias32 (Chris Wellons' hash prospector): a 32-bit integer mixer.
#[inline(always)]
pub(crate) fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The 23 random bits of pick `t`, row `row`, under `seed`.
#[inline(always)]
pub(crate) fn bits(seed: u64, t: u32, row: u64) -> u32 {
    let mut h = mix32(seed as u32 ^ 0x9e37_79b9);
    h = mix32(h ^ (seed >> 32) as u32);
    h = mix32(h ^ t);
    h = mix32(h ^ row as u32);
    mix32(h ^ (row >> 32) as u32) >> 9
}

/// Relative error of [`exp_fast`] against [`exp_canonical`], proven loose
/// (the formula's error is a few float32 roundings, below 2⁻²⁰) and checked
/// for every one of the 2²³ inputs by a test.
pub(crate) const EXP_REL: f64 = 1.0 / (1u64 << 16) as f64;

/// `E = −ln U`, `U = (r + ½)·2⁻²³`, in float32: the fast path.
#[inline(always)]
pub(crate) fn exp_fast(r: u32) -> f32 {
    let u = (r as f32 + 0.5) * (1.0 / 8_388_608.0);
    let (e, m) = split(u.to_bits());
    let m = f32::from_bits(m);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // 2·atanh(s) to s⁹: |s| ≤ 0.1716, so the next term is below 2⁻³⁰ of it.
    let ln_m = 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (0.2 + s2 * (1.0 / 7.0 + s2 / 9.0))));
    -(e as f32 * std::f32::consts::LN_2 + ln_m)
}

/// The same formula in f64 with the series to s²¹: the canonical value.
#[inline]
pub(crate) fn exp_canonical(r: u32) -> f64 {
    let u = (r as f64 + 0.5) / 8_388_608.0;
    // `u` is exact in float32, so its float32 bits give the same split.
    let (e, m) = split((u as f32).to_bits());
    let m = f32::from_bits(m) as f64;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut series = 0.0;
    for n in (0..=10).rev() {
        series = series * s2 + 1.0 / (2 * n + 1) as f64;
    }
    -(e as f64 * std::f64::consts::LN_2 + 2.0 * s * series)
}

/// `u = m·2^e` with `m` in [√½, √2): the exponent and the float32 bits of `m`.
#[inline(always)]
fn split(bits: u32) -> (i32, u32) {
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = (bits & 0x007f_ffff) | 0x3f80_0000;
    // 1.4142135 = √2 rounded down; mantissas at or above it halve.
    if m >= 0x3fb5_04f3 {
        m -= 0x0080_0000;
        e += 1;
    }
    (e, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exponential_is_within_its_bound_for_every_input() {
        let mut worst = 0f64;
        for r in 0..(1u32 << 23) {
            let (f, c) = (exp_fast(r) as f64, exp_canonical(r));
            worst = worst.max((f - c).abs() / c);
        }
        assert!(worst <= EXP_REL / 8.0, "worst relative error {worst:e}");
    }

    #[test]
    fn canonical_exponential_is_minus_ln_u() {
        for r in [
            0u32,
            1,
            1000,
            4_194_303,
            4_194_304,
            6_000_000,
            (1 << 23) - 1,
        ] {
            let u = (r as f64 + 0.5) / 8_388_608.0;
            let want = -u.ln();
            assert!(
                (exp_canonical(r) - want).abs() <= 4.0 * f64::EPSILON * want,
                "r = {r}"
            );
        }
    }

    #[test]
    fn the_stream_is_uniform_enough_and_seeded() {
        let n = 200_000u64;
        let mean: f64 = (0..n).map(|i| exp_canonical(bits(7, 3, i))).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean of Exp(1) draws {mean}");
    }

    /// Each bit of the seed, the pick and the row reaches the output: rows
    /// 2³² apart, or seeds differing only in their high half, draw apart.
    #[test]
    fn every_input_bit_changes_the_draw() {
        let (seed, t, row) = (
            0x0123_4567_89ab_cdefu64,
            0x5555_aaaau32,
            0xfedc_ba98_7654_3210u64,
        );
        let base = bits(seed, t, row);
        for b in 0..64 {
            assert_ne!(bits(seed ^ 1 << b, t, row), base, "seed bit {b} is ignored");
            assert_ne!(bits(seed, t, row ^ 1 << b), base, "row bit {b} is ignored");
        }
        for b in 0..32 {
            assert_ne!(bits(seed, t ^ 1 << b, row), base, "pick bit {b} is ignored");
        }
        // 23 bits, all in use: over 2¹⁶ rows each output bit is set about
        // half the time (4 standard deviations: 512).
        for b in 0..23 {
            let set = (0..1u64 << 16)
                .filter(|&r| bits(seed, t, r) >> b & 1 == 1)
                .count();
            assert!(
                set.abs_diff(1 << 15) < 512,
                "output bit {b} set {set} times"
            );
        }
        assert!((0..1u64 << 16).all(|r| bits(seed, t, r) < 1 << 23));
    }
}
