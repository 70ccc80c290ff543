//! BALD's fast path over sixteen rows side by side, one per vector lane:
//! [`crate::score::fast::bald_approx`]'s arithmetic, and the fast path's
//! checks, for [`LANES`] rows at once, so that every step is one vector
//! operation where the one-row path spends a scalar one per sample and per
//! class. The disagreement engine (`src/disagree.rs`) runs it over whole
//! blocks of a chunk's rows, straight from the map of a T x N x C file.

// Loops over `0..LANES` index several per-lane arrays in step: written so
// that each is one vector operation.
#![allow(clippy::needless_range_loop)]

use super::fast::{LN_POLY, LN2_HI, LN2_LO, entropy_bound, plogp_fused};
use super::input::{prob_ok, sum_ok};

/// Asks for the cache lines of `values[from..from + len]` (what lies
/// inside), ahead of their use: a T x N x C file's rows are read from T
/// places at once, more streams than the hardware prefetchers follow.
#[inline(always)]
fn prefetch(values: &[f32], from: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let end = (from + len).min(values.len());
        let mut at = from;
        while at < end {
            // SAFETY: a prefetch of an address inside the slice; it reads
            // nothing and cannot fault.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(values.as_ptr().add(at).cast());
            }
            at += 16;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (values, from, len);
}

/// Rows [`bald_lanes`] scores side by side, one per vector lane.
pub(crate) const LANES: usize = 16;

/// How [`bald_lanes`] runs. Portable: each row's values are moved into
/// its lane one by one and the arithmetic is written per lane (the
/// compiler vectorizes it for the instruction set it is compiled for).
/// AVX-512 (C ≤ 16): the C vectors 16 rows fill are turned into columns by
/// two-source permutes ([`transpose`]), and the arithmetic runs on 16-lane
/// registers. Both do the same operations in the same order: the same
/// bits.
pub(crate) enum Kernel {
    /// Any CPU, any C.
    Portable,
    /// Only made where the CPU has AVX-512F and DQ and C ≤ 16.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The AVX-512 kernel for C classes where this CPU has AVX-512F and
    /// AVX-512DQ and C ≤ 16; the portable one otherwise. (Checked here, so
    /// that holding an `Avx512` kernel is what makes its intrinsics safe
    /// to run.)
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn avx512(classes: usize) -> Kernel {
        let cpu = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq");
        if !cpu || classes > LANES || classes == 0 {
            return Kernel::Portable;
        }
        Kernel::Avx512
    }
}

/// `block` (LANES rows of `C` values) into `dst`, column after column.
/// The C vectors the rows fill stay in registers; column j's lanes are
/// values `r·C + j`, and each pair of vectors gives the lanes it holds by
/// one two-source permute (which reads the index's low five bits, so one
/// index serves every pair) and a blend. `C` is a constant so that the
/// vectors are registers and the loops unroll: a run-time C spent more
/// time on loop control and reloading indices than on the permutes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose<const C: usize>(block: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(C <= LANES && block.len() == C * LANES && dst.len() == C * LANES);
    // SAFETY: AVX-512F is the caller's (an `Avx512` kernel exists only on
    // such a CPU); C vectors of 16 in both slices, checked above.
    unsafe {
        let base = block.as_ptr();
        let v: [__m512; C] = std::array::from_fn(|k| _mm512_loadu_ps(base.add(LANES * k)));
        let rows = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(C as i32),
        );
        for j in 0..C {
            let ix = _mm512_add_epi32(rows, _mm512_set1_epi32(j as i32));
            let mut col = _mm512_setzero_ps();
            for p in 0..C.div_ceil(2) {
                // Rows r with (r·C + j) / 32 = p: a run of lanes.
                let from = (32 * p).saturating_sub(j).div_ceil(C).min(LANES);
                let to = (32 * (p + 1)).saturating_sub(j).div_ceil(C).min(LANES);
                let mask = ((1u32 << to) - (1u32 << from)) as u16;
                let picked = _mm512_permutex2var_ps(v[2 * p], ix, v[(2 * p + 1).min(C - 1)]);
                col = _mm512_mask_blend_ps(mask, col, picked);
            }
            _mm512_storeu_ps(dst.as_mut_ptr().add(LANES * j), col);
        }
    }
}

/// [`transpose`] for the block's C (1 to 16).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_any(block: &[f32], dst: &mut [f32], classes: usize) {
    macro_rules! each {
        ($($c:literal)*) => {
            match classes {
                // SAFETY: the caller's.
                $($c => unsafe { transpose::<$c>(block, dst) },)*
                _ => unreachable!("an AVX-512 kernel is made for C ≤ 16 only"),
            }
        };
    }
    each!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// [`super::fast::bald_approx`] of [`LANES`] rows at once, with the checks
/// the fast path makes first. `planes[s]` holds sample `s` of the rows,
/// row after row (`classes` values each, as stored); the lanes are rows
/// `first..first + LANES`. Lane `l` runs row `l`'s arithmetic exactly as
/// `sample_sums`, `bald_approx` and the validity checks do (the same
/// operations in the same order), so it gets the same approximation and
/// the same proven bound. `lanes` is scratch.
///
/// Returns, per lane: whether every value is a probability and every
/// sample's canonical sum is within `sum_tol` of 1 (the other outputs are
/// meaningless where not), BALD in nats approximated, and its bound.
#[inline(always)]
pub(crate) fn bald_lanes(
    planes: &[&[f32]],
    (first, classes): (usize, usize),
    sum_tol: f64,
    (kernel, lanes): (&Kernel, &mut Vec<f32>),
) -> ([bool; LANES], [f64; LANES], [f64; LANES]) {
    let t = planes.len();
    // The block lane-major: each (sample, class) one contiguous vector.
    lanes.resize(t * classes * LANES, 0.0);
    for (plane, dst) in planes.iter().zip(lanes.chunks_exact_mut(classes * LANES)) {
        prefetch(plane, (first + 8 * LANES) * classes, LANES * classes);
        let block = &plane[first * classes..(first + LANES) * classes];
        match kernel {
            Kernel::Portable => {
                for (l, row) in block.chunks_exact(classes).enumerate() {
                    for (d, &x) in dst.chunks_exact_mut(LANES).zip(row) {
                        d[l % LANES] = x;
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                // SAFETY: an `Avx512` kernel is made only on CPUs with
                // AVX-512F and DQ ([`Kernel::avx512`]), with C ≤ 16.
                unsafe { transpose_any(block, dst, classes) }
            }
        }
    }
    let mut out = Sums::default();
    match kernel {
        Kernel::Portable => portable_sums(lanes, (t, classes), sum_tol, &mut out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx512 => unsafe { avx512_sums(lanes, (t, classes), sum_tol, &mut out) },
    }
    finish(&out, (t, classes))
}

/// What the passes over a block's values leave for each lane.
#[derive(Default)]
struct Sums {
    valid: [bool; LANES],
    /// Σ_t ĥ(p_t), and Σ_t of each sample's entropy bound.
    h_each: [f64; LANES],
    b_each: [f64; LANES],
    /// Σ p̄ (canonical f64), and Σ plogp_fused(p̄ as f32).
    sum_m: [f64; LANES],
    h_terms: [f32; LANES],
}

/// The approximation and its bound, from the passes' sums.
#[inline(always)]
fn finish(s: &Sums, (t, classes): (usize, usize)) -> ([bool; LANES], [f64; LANES], [f64; LANES]) {
    const U: f64 = 1.0 / 16_777_216.0;
    let (mut approx, mut bound) = ([0.0f64; LANES], [0.0f64; LANES]);
    let tf = t as f64;
    for l in 0..LANES {
        let h_mean = -s.h_terms[l] as f64;
        let rounding = 4.0 * U * (h_mean.abs() + s.sum_m[l] + 1e-6) + classes as f64 * 1e-36;
        let b_mean = entropy_bound(h_mean, s.sum_m[l], classes) + rounding;
        approx[l] = h_mean - s.h_each[l] / tf;
        bound[l] = b_mean + s.b_each[l] / tf;
    }
    (s.valid, approx, bound)
}

/// The passes, written per lane.
#[inline(always)]
fn portable_sums(lanes: &[f32], (t, classes): (usize, usize), sum_tol: f64, out: &mut Sums) {
    let at = |s: usize, j: usize| -> [f32; LANES] {
        let o = (s * classes + j) * LANES;
        lanes[o..o + LANES].try_into().expect("a lane block")
    };
    out.valid = [true; LANES];
    for s in 0..t {
        let (mut sum, mut terms) = ([0.0f64; LANES], [0.0f32; LANES]);
        for j in 0..classes {
            let x = at(s, j);
            for l in 0..LANES {
                out.valid[l] &= prob_ok(x[l]);
                sum[l] += x[l] as f64;
                terms[l] += plogp_fused(x[l]);
            }
        }
        each_sample(out, &sum, &terms, (classes, sum_tol));
    }
    // p̄ as the canonical mean: per class, the f64 sum in sample order,
    // over T.
    for j in 0..classes {
        let mut acc = [0.0f64; LANES];
        for s in 0..t {
            let x = at(s, j);
            for l in 0..LANES {
                acc[l] += x[l] as f64;
            }
        }
        for l in 0..LANES {
            let m = acc[l] / t as f64;
            out.sum_m[l] += m;
            out.h_terms[l] += plogp_fused(m as f32);
        }
    }
}

/// One sample's sums into the lanes' validity, entropies and bounds.
#[inline(always)]
fn each_sample(
    out: &mut Sums,
    sum: &[f64; LANES],
    terms: &[f32; LANES],
    (classes, sum_tol): (usize, f64),
) {
    for l in 0..LANES {
        out.valid[l] &= sum_ok(sum[l], sum_tol);
        let h = -terms[l] as f64;
        out.h_each[l] += h;
        out.b_each[l] += entropy_bound(h, sum[l], classes);
    }
}

/// [`portable_sums`] on 16-lane registers: the same operations in the same
/// order (each f32 product and sum rounded as written, the logarithm's
/// multiply-adds fused as `plogp_fused`'s and nothing else, f64 sums of
/// the values widened exactly).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn avx512_sums(lanes: &[f32], (t, classes): (usize, usize), sum_tol: f64, out: &mut Sums) {
    use std::arch::x86_64::*;
    assert!(lanes.len() >= t * classes * LANES);
    // SAFETY: the caller's: AVX-512F and DQ; every load is one of the
    // `t · classes` vectors of `lanes` (checked above).
    unsafe {
        let at = |s: usize, j: usize| lanes.as_ptr().add((s * classes + j) * LANES);
        let (zero, max) = (_mm512_setzero_ps(), _mm512_set1_ps(f32::MAX));
        let mut valid: __mmask16 = 0xffff;
        out.valid = [true; LANES];
        for s in 0..t {
            let (mut lo, mut hi, mut terms) = (_mm512_setzero_pd(), _mm512_setzero_pd(), zero);
            for j in 0..classes {
                let x = _mm512_loadu_ps(at(s, j));
                valid &= _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, zero)
                    & _mm512_cmp_ps_mask::<_CMP_LE_OQ>(x, max);
                lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
                hi = _mm512_add_pd(hi, _mm512_cvtps_pd(high_half(x)));
                terms = _mm512_add_ps(terms, plogp16(x));
            }
            let mut sum = [0.0f64; LANES];
            _mm512_storeu_pd(sum.as_mut_ptr(), lo);
            _mm512_storeu_pd(sum.as_mut_ptr().add(8), hi);
            let mut tm = [0.0f32; LANES];
            _mm512_storeu_ps(tm.as_mut_ptr(), terms);
            each_sample(out, &sum, &tm, (classes, sum_tol));
        }
        for (l, v) in out.valid.iter_mut().enumerate() {
            *v &= valid >> l & 1 == 1;
        }
        let (tf, mut sum_lo, mut sum_hi, mut h) = (
            _mm512_set1_pd(t as f64),
            _mm512_setzero_pd(),
            _mm512_setzero_pd(),
            zero,
        );
        for j in 0..classes {
            let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
            for s in 0..t {
                let x = _mm512_loadu_ps(at(s, j));
                lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
                hi = _mm512_add_pd(hi, _mm512_cvtps_pd(high_half(x)));
            }
            let (m_lo, m_hi) = (_mm512_div_pd(lo, tf), _mm512_div_pd(hi, tf));
            sum_lo = _mm512_add_pd(sum_lo, m_lo);
            sum_hi = _mm512_add_pd(sum_hi, m_hi);
            let m = _mm512_insertf32x8::<1>(
                _mm512_castps256_ps512(_mm512_cvtpd_ps(m_lo)),
                _mm512_cvtpd_ps(m_hi),
            );
            h = _mm512_add_ps(h, plogp16(m));
        }
        _mm512_storeu_pd(out.sum_m.as_mut_ptr(), sum_lo);
        _mm512_storeu_pd(out.sum_m.as_mut_ptr().add(8), sum_hi);
        _mm512_storeu_ps(out.h_terms.as_mut_ptr(), h);
    }
}

/// The high eight lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn high_half(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: only inlined into AVX-512DQ code.
    unsafe { _mm512_extractf32x8_ps::<1>(x) }
}

/// [`plogp_fused`] of 16 lanes: [`super::fast::ln_approx_fused`]'s
/// operations, one by one.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn plogp16(p: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // SAFETY: only inlined into AVX-512F code.
    unsafe {
        let c = |v: f32| _mm512_set1_ps(v);
        let bits = _mm512_castps_si512(p);
        let e = _mm512_sub_epi32(
            _mm512_and_si512(_mm512_srli_epi32::<23>(bits), _mm512_set1_epi32(0xff)),
            _mm512_set1_epi32(126),
        );
        let m = _mm512_castsi512_ps(_mm512_or_si512(
            _mm512_and_si512(bits, _mm512_set1_epi32(0x007f_ffff)),
            _mm512_set1_epi32(0x3f00_0000),
        ));
        let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(m, c(std::f32::consts::FRAC_1_SQRT_2));
        let e = _mm512_mask_sub_epi32(e, small, e, _mm512_set1_epi32(1));
        // m + m where small, then − 1: the row path's two cases.
        let x = _mm512_sub_ps(_mm512_mask_add_ps(m, small, m, m), c(1.0));
        let z = _mm512_mul_ps(x, x);
        let mut y = c(LN_POLY[0]);
        for &k in &LN_POLY[1..] {
            y = _mm512_fmadd_ps(y, x, c(k));
        }
        y = _mm512_mul_ps(_mm512_mul_ps(y, x), z);
        let fe = _mm512_cvtepi32_ps(e);
        y = _mm512_fmadd_ps(fe, c(LN2_LO), y);
        y = _mm512_fmadd_ps(c(-0.5), z, y);
        let ln = _mm512_fmadd_ps(fe, c(LN2_HI), _mm512_add_ps(x, y));
        let normal = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(p, c(f32::MIN_POSITIVE));
        _mm512_maskz_mul_ps(normal, p, ln)
    }
}

/// [`plogp_fused`] of 8 lanes on AVX2: [`plogp16`]'s operations, lane
/// masks in place of mask registers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn plogp8(p: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: only inlined into AVX2 code.
    unsafe {
        let c = |v: f32| _mm256_set1_ps(v);
        let bits = _mm256_castps_si256(p);
        let e = _mm256_sub_epi32(
            _mm256_and_si256(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(0xff)),
            _mm256_set1_epi32(126),
        );
        let m = _mm256_castsi256_ps(_mm256_or_si256(
            _mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)),
            _mm256_set1_epi32(0x3f00_0000),
        ));
        let small = _mm256_cmp_ps::<_CMP_LT_OQ>(m, c(std::f32::consts::FRAC_1_SQRT_2));
        // A set lane is −1 as an integer: e − 1 where m is small.
        let e = _mm256_add_epi32(e, _mm256_castps_si256(small));
        // m + m where small (m added to itself, masked), then − 1.
        let m = _mm256_add_ps(m, _mm256_and_ps(m, small));
        let x = _mm256_sub_ps(m, c(1.0));
        let z = _mm256_mul_ps(x, x);
        let mut y = c(LN_POLY[0]);
        for &k in &LN_POLY[1..] {
            y = _mm256_fmadd_ps(y, x, c(k));
        }
        y = _mm256_mul_ps(_mm256_mul_ps(y, x), z);
        let fe = _mm256_cvtepi32_ps(e);
        y = _mm256_fmadd_ps(fe, c(LN2_LO), y);
        y = _mm256_fmadd_ps(c(-0.5), z, y);
        let ln = _mm256_fmadd_ps(fe, c(LN2_HI), _mm256_add_ps(x, y));
        let normal = _mm256_cmp_ps::<_CMP_GE_OQ>(p, c(f32::MIN_POSITIVE));
        _mm256_and_ps(_mm256_mul_ps(p, ln), normal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::fast::{bald_approx, sample_sums};

    /// The lanes' `p ln p` is `plogp_fused`'s, bit for bit, for every
    /// kind of input: zero, subnormals, the √½ seam where the exponent
    /// moves, one, and a spread of exponents between.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn lanes_take_the_logarithm_the_row_path_takes() {
        use crate::backend::cpu::Isa;
        use std::arch::x86_64::*;
        let seam = std::f32::consts::FRAC_1_SQRT_2;
        let mut xs = vec![0.0, 1e-45, 1e-40, f32::MIN_POSITIVE, 1.0, 0.5, 0.99999994];
        xs.extend([
            seam.next_down(),
            seam,
            seam.next_up(),
            0.5 * seam,
            2.0 * seam,
        ]);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        while xs.len() % 16 != 0 || xs.len() < 4096 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // A uniform mantissa at an exponent from 2⁻⁶⁰ to 2⁰.
            let m = 1.0 + ((state >> 41) as f32) / (1u64 << 23) as f32;
            xs.push(m * 2f32.powi(-((state % 61) as i32)) * 0.5);
        }
        let want: Vec<u32> = xs.iter().map(|&x| plogp_fused(x).to_bits()).collect();
        /// # Safety
        /// AVX2; 8 values at `x` and `out`.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn eight(x: *const f32, out: *mut f32) {
            // SAFETY: as the caller's contract says.
            unsafe { _mm256_storeu_ps(out, plogp8(_mm256_loadu_ps(x))) }
        }
        /// # Safety
        /// AVX-512F and DQ; 16 values at `x` and `out`.
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        unsafe fn sixteen(x: *const f32, out: *mut f32) {
            // SAFETY: as the caller's contract says.
            unsafe { _mm512_storeu_ps(out, plogp16(_mm512_loadu_ps(x))) }
        }
        let isa = Isa::detect();
        for (i, chunk) in xs.chunks_exact(16).enumerate() {
            let want = &want[16 * i..16 * (i + 1)];
            let mut got = [0f32; 16];
            if isa != Isa::Scalar {
                // SAFETY: AVX2, checked; two halves of 16 values.
                unsafe {
                    eight(chunk.as_ptr(), got.as_mut_ptr());
                    eight(chunk.as_ptr().add(8), got.as_mut_ptr().add(8));
                }
                let got: Vec<u32> = got.iter().map(|g| g.to_bits()).collect();
                assert_eq!(got, want, "8 lanes, {chunk:?}");
            }
            if isa == Isa::Avx512 {
                // SAFETY: AVX-512F and DQ, checked; 16 values.
                unsafe { sixteen(chunk.as_ptr(), got.as_mut_ptr()) };
                let got: Vec<u32> = got.iter().map(|g| g.to_bits()).collect();
                assert_eq!(got, want, "16 lanes, {chunk:?}");
            }
        }
    }

    /// Rows side by side get what each gets alone: the same validity, the
    /// same approximation and the same bound, for rows of every shape
    /// (zeros, tiny values, sums off by more than the tolerance, a
    /// negative value, NaN) at several T and C.
    #[test]
    fn bald_lanes_equal_the_one_row_path() {
        let mut rng = crate::rng::Rng::new(0x51ed_2701);
        let mut next = || rng.uniform() as f32;
        let tol = 1e-4;
        for (t, c) in [(2usize, 2usize), (5, 3), (20, 10), (3, 17)] {
            let n = 3 * LANES + 1;
            let first = LANES + 1;
            let mut planes = vec![vec![0f32; n * c]; t];
            for r in 0..n {
                for (s, plane) in planes.iter_mut().enumerate() {
                    let row = &mut plane[r * c..(r + 1) * c];
                    row.iter_mut().for_each(|x| {
                        let u = next();
                        *x = match r % 4 {
                            0 => u,
                            1 => u.powi(8),
                            2 => (u * -80.0).exp(),
                            _ => {
                                if u < 0.3 {
                                    0.0
                                } else {
                                    u
                                }
                            }
                        }
                    });
                    let sum: f32 = row.iter().sum();
                    row.iter_mut().for_each(|x| *x /= sum);
                    match (r % 7, s) {
                        (3, 1) => row[0] += 0.01,
                        (5, 0) => row[c - 1] = -row[c - 1],
                        (6, 1) if r % 2 == 0 => row[0] = f32::NAN,
                        _ => {}
                    }
                }
            }
            let slices: Vec<&[f32]> = planes.iter().map(|p| &p[..]).collect();
            // The AVX-512 kernel where this CPU has it (the portable one
            // again where not).
            let mut ways = vec![Kernel::Portable];
            #[cfg(target_arch = "x86_64")]
            ways.push(Kernel::avx512(c));
            let mut lanes = Vec::new();
            let got: Vec<_> = ways
                .iter()
                .map(|w| bald_lanes(&slices, (first, c), tol, (w, &mut lanes)))
                .collect();
            // Bit for bit (NaN where a row holds one).
            let bits = |g: &([bool; LANES], [f64; LANES], [f64; LANES])| {
                (g.0, g.1.map(f64::to_bits), g.2.map(f64::to_bits))
            };
            assert!(
                got.iter().all(|g| bits(g) == bits(&got[0])),
                "T={t} C={c}: the transposes differ"
            );
            let (valid, approx, bound) = got[0];
            for l in 0..LANES {
                let r = first + l;
                let row: Vec<f32> = planes
                    .iter()
                    .flat_map(|p| p[r * c..(r + 1) * c].to_vec())
                    .collect();
                let mut sums = vec![0.0; t];
                sample_sums(&row, c, &mut sums);
                let ok = row.iter().all(|&x| crate::score::input::prob_ok(x))
                    && sums.iter().all(|&s| crate::score::input::sum_ok(s, tol));
                assert_eq!(valid[l], ok, "T={t} C={c} row {r}");
                if ok {
                    let (mut terms, mut mean) = (vec![0.0; t * c], vec![0.0; c]);
                    let (a, b) = bald_approx(&row, c, &sums, &mut terms, &mut mean);
                    assert_eq!((approx[l], bound[l]), (a, b), "T={t} C={c} row {r}");
                }
            }
            assert!(valid.iter().any(|&v| v) && !valid.iter().all(|&v| v));
        }
    }
}
