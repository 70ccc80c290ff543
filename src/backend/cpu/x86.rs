//! Eight rows at a time: column j of eight rows becomes one vector (a
//! gather on AVX2; on AVX-512, 16 rows are loaded whole and each column
//! assembled by two-source permutes, which measured 21–29% faster on
//! Zen 4 than the gathers), so the per-row sums, maxima and top-2 become
//! vertical SIMD operations. Each lane does exactly the scalar path's
//! operations in the same order, so results are bit-identical; a group
//! with any row near the sum tolerance goes through the scalar path.

use std::arch::x86_64::*;

use super::Emit;
use super::kernels::{SUM_SLACK, first_bad_row, plogp_sum, scalar_rows};
use crate::backend::RowJob;
use crate::query::Strategy;
use crate::score::fast::entropy_max_cutoff;
use crate::score::fast::{entropy_bound, plogp_approx};
use crate::score::random_priority;

/// How far ahead the 8-row path prefetches.
const PREFETCH_ROWS: usize = 128;

/// The 8-row path, in one copy per instruction set: `$wide` takes the
/// columns of 16 rows at once from plain loads and AVX-512 permutes
/// (class counts up to 16), the other copy gathers them.
macro_rules! groups_kernel {
    ($(#[$attr:meta])* $name:ident, $wide:literal) => {
        /// Returns how many leading rows it scored (a multiple of 8).
        $(#[$attr])*
        #[inline]
        pub(super) unsafe fn $name<const C: usize, E: Emit>(
            job: &RowJob,
            rows: &[f32],
            g0: u64,
            tol: f64,
            e: &mut E,
        ) -> Result<usize, usize> {
            // SAFETY: this copy runs only on CPUs with its features (the
            // dispatch checks them), and every pointer stays inside
            // `rows`: group g is rows 8g..8g + 8, and 16 rows are taken
            // only while two whole groups remain.
            unsafe {
                let n = rows.len() / C;
                let groups = n / 8;
                let mut post = Post::<C, $wide>::new(job, tol);
                let mut g = 0;
                while g < groups {
                    let r0 = g * 8;
                    let base = rows.as_ptr().add(r0 * C);
                    if $wide && C <= 16 && g + 2 <= groups {
                        prefetch::<C>(rows, r0, 16);
                        let (sums, maxes, seconds, invalid) = columns_16::<C>(base);
                        if invalid {
                            return Err(r0 + first_bad_row(&rows[r0 * C..], C, tol));
                        }
                        for h in 0..2 {
                            post.group(rows, g0, r0 + 8 * h, sums[h], maxes[h], seconds[h], e)?;
                        }
                        g += 2;
                    } else {
                        prefetch::<C>(rows, r0, 8);
                        let (s, a, b, invalid) = columns_8::<C>(base, job.spec.strategy);
                        if invalid {
                            return Err(r0 + first_bad_row(&rows[r0 * C..], C, tol));
                        }
                        post.group(rows, g0, r0, s, a, b, e)?;
                        g += 1;
                    }
                }
                // What entropy's prefilter still holds.
                post.flush(rows, e);
                Ok(groups * 8)
            }
        }
    };
}

groups_kernel!(
    #[target_feature(enable = "avx2,fma")]
    groups_of_8,
    false
);
groups_kernel!(
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    groups_of_8_wide,
    true
);

/// Fetches `count` rows a few groups ahead into L1: the loads would
/// otherwise wait on memory one line at a time.
#[inline(always)]
fn prefetch<const C: usize>(rows: &[f32], r0: usize, count: usize) {
    let ahead = (r0 + PREFETCH_ROWS) * C;
    if ahead < rows.len() {
        let p = rows.as_ptr().wrapping_add(ahead) as *const i8;
        for line in 0..(count * C * 4).div_ceil(64) {
            // SAFETY: a prefetch never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line * 64)) };
        }
    }
}

/// The column sums (in column order), largest and second-largest
/// values of the eight rows at `base`, and whether any value is
/// negative, NaN or infinite: column j of eight rows is one gather.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn columns_8<const C: usize>(
    base: *const f32,
    strategy: Strategy,
) -> (__m256, __m256, __m256, bool) {
    let c = C as i32;
    let idx = _mm256_setr_epi32(0, c, 2 * c, 3 * c, 4 * c, 5 * c, 6 * c, 7 * c);
    let (zero, max) = (_mm256_setzero_ps(), _mm256_set1_ps(f32::MAX));
    let (mut s, mut a, mut b) = (zero, zero, zero);
    let mut invalid = zero;
    let top2 = matches!(strategy, Strategy::Margin | Strategy::Ratio);
    for j in 0..C {
        // SAFETY: lanes read base + j + idx[l] = row l, column j, inside
        // the caller's eight rows.
        let v = unsafe { _mm256_i32gather_ps::<4>(base.add(j), idx) };
        s = _mm256_add_ps(s, v);
        invalid = _mm256_or_ps(
            invalid,
            _mm256_or_ps(
                _mm256_cmp_ps::<_CMP_NGE_UQ>(v, zero),
                _mm256_cmp_ps::<_CMP_NLE_UQ>(v, max),
            ),
        );
        if top2 {
            let lo = _mm256_min_ps(a, v);
            a = _mm256_max_ps(a, v);
            b = _mm256_max_ps(b, lo);
        } else {
            a = _mm256_max_ps(a, v);
        }
    }
    (s, a, b, _mm256_movemask_ps(invalid) != 0)
}

/// For 16 rows of C ≤ 16 values (C vectors of 16 floats), column j's
/// lanes from the vector pair p: `IDX[j][p]` picks row r's value
/// (r·C + j − 32p of the pair's 32) where `MASK[j][p]` has bit r.
struct Transpose<const C: usize>;

impl<const C: usize> Transpose<C> {
    const IDX: [[[i32; 16]; 8]; 16] = {
        let mut t = [[[0i32; 16]; 8]; 16];
        let mut j = 0;
        // Empty beyond 16 classes: that path is never taken there.
        while j < C && C <= 16 {
            let mut r = 0;
            while r < 16 {
                let f = r * C + j;
                t[j][f / 32][r] = (f % 32) as i32;
                r += 1;
            }
            j += 1;
        }
        t
    };
    const MASK: [[u16; 8]; 16] = {
        let mut m = [[0u16; 8]; 16];
        let mut j = 0;
        while j < C && C <= 16 {
            let mut r = 0;
            while r < 16 {
                m[j][(r * C + j) / 32] |= 1 << r;
                r += 1;
            }
            j += 1;
        }
        m
    };
}

/// [`columns_8`] for 16 rows at once, as two halves of eight: plain
/// loads, each column assembled by two-source permutes, the same
/// additions and comparisons in the same order (so the same bits).
// Not `#[target_feature]`: that would forbid `inline(always)`, and a
// call per 16 rows costs more than the rows' own work. It is only
// inlined into `groups_of_8_wide`, which enables AVX-512.
#[inline(always)]
unsafe fn columns_16<const C: usize>(
    base: *const f32,
) -> ([__m256; 2], [__m256; 2], [__m256; 2], bool) {
    // SAFETY: called only on CPUs with AVX-512 (see above); the loads
    // stay inside the caller's 16 rows.
    unsafe {
        let pairs = C.div_ceil(2);
        let mut v = [_mm512_setzero_ps(); 16];
        let (zero, max) = (_mm512_setzero_ps(), _mm512_set1_ps(f32::MAX));
        let mut invalid: __mmask16 = 0;
        for (i, x) in v.iter_mut().enumerate().take(C) {
            // SAFETY: 16 rows of C values are 16·C floats from `base`.
            *x = _mm512_loadu_ps(base.add(16 * i));
            invalid |= _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(*x, zero)
                | _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(*x, max);
        }
        let (mut s, mut a, mut b) = (zero, zero, zero);
        for j in 0..C {
            let mut col = zero;
            for p in 0..pairs {
                // SAFETY: a 16-lane load from a table row of 16 i32.
                let idx = _mm512_loadu_si512(Transpose::<C>::IDX[j][p].as_ptr().cast());
                let hi = if 2 * p + 1 < C {
                    v[2 * p + 1]
                } else {
                    v[2 * p]
                };
                let picked = _mm512_permutex2var_ps(v[2 * p], idx, hi);
                col = _mm512_mask_blend_ps(Transpose::<C>::MASK[j][p], col, picked);
            }
            s = _mm512_add_ps(s, col);
            let lo = _mm512_min_ps(a, col);
            a = _mm512_max_ps(a, col);
            b = _mm512_max_ps(b, lo);
        }
        (halves(s), halves(a), halves(b), invalid != 0)
    }
}

// Helpers of the kernels above and below, `inline(always)` and not
// closures: a closure would not be inlined, and the intrinsics in it
// (compiled without the kernel's features) would become calls.

/// The low and high eight lanes.
#[inline(always)]
unsafe fn halves(x: __m512) -> [__m256; 2] {
    // SAFETY: only inlined into `groups_of_8_wide` (AVX-512F).
    unsafe {
        [
            _mm512_castps512_ps256(x),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x))),
        ]
    }
}

/// splitmix64 on eight lanes.
#[inline(always)]
unsafe fn mix(z: __m512i) -> __m512i {
    // SAFETY: only inlined into `groups_of_8_wide` (AVX-512F and DQ).
    unsafe {
        let z = _mm512_add_epi64(z, _mm512_set1_epi64(0x9E37_79B9_7F4A_7C15_u64 as i64));
        let z = _mm512_mullo_epi64(
            _mm512_xor_si512(z, _mm512_srli_epi64::<30>(z)),
            _mm512_set1_epi64(0xBF58_476D_1CE4_E5B9_u64 as i64),
        );
        let z = _mm512_mullo_epi64(
            _mm512_xor_si512(z, _mm512_srli_epi64::<27>(z)),
            _mm512_set1_epi64(0x94D0_49BB_1331_11EB_u64 as i64),
        );
        _mm512_xor_si512(z, _mm512_srli_epi64::<31>(z))
    }
}

/// Eight f32 lanes widened to 2 x 4 f64 lanes.
#[inline(always)]
unsafe fn to_pd(x: __m256) -> [__m256d; 2] {
    // SAFETY: AVX (the kernels).
    unsafe {
        [
            _mm256_cvtps_pd(_mm256_castps256_ps128(x)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)),
        ]
    }
}

/// Eight f32 lanes widened to f64.
#[inline(always)]
unsafe fn widen(x: __m256) -> [f64; 8] {
    let mut out = [0f64; 8];
    // SAFETY: AVX (the kernels); two 4-lane stores into 8 elements.
    unsafe {
        _mm256_storeu_pd(out.as_mut_ptr(), _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
        _mm256_storeu_pd(
            out.as_mut_ptr().add(4),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)),
        );
    }
    out
}

/// [`random_priority`] of rows `first..first + 8`, eight lanes at once:
/// the same integer operations, so the same bits.
#[inline(always)]
unsafe fn random_priorities_8(seed: u64, first: u64) -> [f64; 8] {
    // SAFETY: only inlined into `groups_of_8_wide` (AVX-512F and DQ).
    unsafe {
        let index = _mm512_add_epi64(
            _mm512_set1_epi64(first as i64),
            _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
        );
        let index = _mm512_add_epi64(index, _mm512_set1_epi64(0x9E37_79B9_7F4A_7C15_u64 as i64));
        let h = mix(_mm512_xor_si512(_mm512_set1_epi64(seed as i64), mix(index)));
        let p = _mm512_mul_pd(
            _mm512_cvtepu64_pd(_mm512_srli_epi64::<11>(h)),
            _mm512_set1_pd(1.0 / (1u64 << 53) as f64),
        );
        let mut out = [0f64; 8];
        _mm512_storeu_pd(out.as_mut_ptr(), p);
        out
    }
}

/// What follows the columns of a group of eight rows: the sum
/// pre-check, then each strategy's priorities (entropy's prefilter and
/// batched logarithms) offered to the emitter in row order.
struct Post<'j, const C: usize, const WIDE: bool> {
    job: &'j RowJob,
    strategy: Strategy,
    ln_b: f64,
    one: __m256d,
    slack: __m256d,
    vtol: __m256d,
    abs_mask: __m256d,
    tol: f64,
    // Entropy's prefilter: rows whose largest value is above `cutoff`
    // cannot reach the threshold it was computed for, and the threshold
    // only rises, so a stale cutoff is merely less sharp. Recomputed
    // every 1,024 groups (a bisection costs a few microseconds).
    cutoff_for: f64,
    cutoff: __m256,
    groups: usize,
    // Rows the prefilter kept, with their sums, scored eight at a time
    // so their logarithms vectorize.
    pending: [(usize, f64); 8],
    npending: usize,
    logs: Vec<f32>,
}

impl<'j, const C: usize, const WIDE: bool> Post<'j, C, WIDE> {
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn new(job: &'j RowJob, tol: f64) -> Self {
        {
            Post {
                job,
                strategy: job.spec.strategy,
                ln_b: job.spec.log_base.ln(),
                one: _mm256_set1_pd(1.0),
                slack: _mm256_set1_pd(SUM_SLACK * C as f64),
                vtol: _mm256_set1_pd(tol),
                abs_mask: _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX)),
                tol,
                cutoff_for: f64::NEG_INFINITY,
                cutoff: _mm256_set1_ps(f32::INFINITY),
                groups: 0,
                pending: [(0, 0.0); 8],
                npending: 0,
                logs: Vec::new(),
            }
        }
    }

    /// Rows r0..r0 + 8, with their column sums `s`, largest values `a`
    /// and second-largest `b`.
    // Inlined into the kernels (see `columns_16`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn group<E: Emit>(
        &mut self,
        rows: &[f32],
        g0: u64,
        r0: usize,
        s: __m256,
        a: __m256,
        b: __m256,
        e: &mut E,
    ) -> Result<(), usize> {
        // SAFETY: called only from the kernels, on CPUs with AVX2.
        unsafe {
            let g = self.groups;
            self.groups += 1;
            // The sum pre-check of the scalar path, on 2 x 4 lanes of f64.
            let s_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(s));
            let s_hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(s));
            if self.sums_ok(s_lo) & self.sums_ok(s_hi) != 0xF {
                // Rows reach `e` in order (`score_all` relies on it).
                self.flush(rows, e);
                return scalar_rows::<C, E>(self.job, rows, C, g0, self.tol, &[], r0, r0 + 8, e);
            }
            if self.strategy == Strategy::Entropy {
                let thresh = e.threshold();
                if thresh > self.cutoff_for
                    && (g.is_multiple_of(1024) || self.cutoff_for == f64::NEG_INFINITY)
                {
                    self.cutoff =
                        _mm256_set1_ps(entropy_max_cutoff(thresh, C, self.tol, self.ln_b));
                    self.cutoff_for = thresh;
                }
                let keep = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(a, self.cutoff));
                if keep == 0 {
                    return Ok(());
                }
                let sums = widen(s);
                for lane in (0..8).filter(|l| keep >> l & 1 == 1) {
                    self.pending[self.npending] = (r0 + lane, sums[lane]);
                    self.npending += 1;
                    if self.npending == 8 {
                        self.flush(rows, e);
                    }
                }
                return Ok(());
            }
            // Priorities on 2 x 4 lanes of f64: the scalar path's
            // operations, lane by lane (IEEE arithmetic is the same in
            // a vector), so the same bits.
            let (av, bv) = (to_pd(a), to_pd(b));
            let zero = _mm256_setzero_pd();
            let mut p = [zero; 2];
            for h in 0..2 {
                // `+ 0.0` turns a −0.0 into +0.0, as the canonical
                // top-2 has it.
                let second = _mm256_add_pd(bv[h], zero);
                p[h] = match self.strategy {
                    Strategy::Margin => _mm256_sub_pd(zero, _mm256_sub_pd(av[h], second)),
                    Strategy::Ratio => _mm256_div_pd(second, av[h]),
                    Strategy::Random => zero,
                    // Least confidence (entropy never gets here).
                    _ => _mm256_sub_pd(self.one, av[h]),
                };
            }
            let mut out = [0f64; 8];
            _mm256_storeu_pd(out.as_mut_ptr(), p[0]);
            _mm256_storeu_pd(out.as_mut_ptr().add(4), p[1]);
            if self.strategy == Strategy::Random {
                // The rows only had to pass the checks: the priority is
                // the row's hash (64-bit products: AVX-512DQ).
                out = if WIDE {
                    random_priorities_8(self.job.spec.seed, g0 + r0 as u64)
                } else {
                    std::array::from_fn(|l| {
                        random_priority(self.job.spec.seed, g0 + (r0 + l) as u64)
                    })
                };
            }
            let thresh = e.threshold();
            for (lane, &priority) in out.iter().enumerate() {
                if priority >= thresh {
                    let i = r0 + lane;
                    e.emit(i, &rows[i * C..(i + 1) * C], priority, 0.0);
                }
            }
            Ok(())
        }
    }

    /// The lanes of `s` (four row sums) that pass the scalar path's
    /// sum pre-check, as a 4-bit mask.
    #[inline(always)]
    unsafe fn sums_ok(&self, s: __m256d) -> i32 {
        // SAFETY: AVX (the kernels).
        unsafe {
            let dev = _mm256_and_pd(_mm256_sub_pd(s, self.one), self.abs_mask);
            let lhs = _mm256_add_pd(dev, _mm256_mul_pd(self.slack, _mm256_add_pd(s, self.one)));
            _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LE_OQ>(lhs, self.vtol))
        }
    }

    /// Scores entropy's pending rows (also once the groups are done).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn flush<E: Emit>(&mut self, rows: &[f32], e: &mut E) {
        if self.npending > 0 {
            entropy_rows::<C, E>(
                rows,
                &self.pending[..self.npending],
                &mut self.logs,
                self.ln_b,
                e,
            );
            self.npending = 0;
        }
    }
}

/// Scores the listed rows (local index, f32 sum) by entropy: their
/// values are copied together so one flat loop takes all the
/// logarithms, then each row's terms are summed as everywhere else.
#[inline(always)]
fn entropy_rows<const C: usize, E: Emit>(
    rows: &[f32],
    list: &[(usize, f64)],
    logs: &mut Vec<f32>,
    ln_b: f64,
    e: &mut E,
) {
    logs.clear();
    for &(i, _) in list {
        logs.extend_from_slice(&rows[i * C..(i + 1) * C]);
    }
    for t in logs.iter_mut() {
        *t = plogp_approx(*t);
    }
    for (k, &(i, sum)) in list.iter().enumerate() {
        let row = &rows[i * C..(i + 1) * C];
        let h = 0.0 - plogp_sum(row, &logs[k * C..]) as f64;
        e.emit(i, row, h / ln_b, entropy_bound(h, sum, C) / ln_b);
    }
}
