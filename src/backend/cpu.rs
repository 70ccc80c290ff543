//! The CPU backend: rayon over chunks of rows, a fused validate-and-score
//! pass per chunk, and a partial top-k per worker merged at the end.
//!
//! Plain probability input takes the fast kernels of [`crate::score::fast`]
//! (exact for least confidence, margin, ratio and random; bounded for
//! entropy, then refined). Entropy first skips, with a proven bound, the
//! rows whose largest value is too high for them to reach the current k-th
//! best ([`crate::score::fast::entropy_max_cutoff`]); only the rest pay for
//! logarithms. Logits and renormalized input are scored canonically row by
//! row. On x86-64 the kernels are compiled for the baseline, AVX2+FMA and
//! AVX-512, and picked at run time; Rust never fuses a multiply and an add
//! by itself, so all give bit-identical results.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::{Progress, RowJob, canonical_ranked};
use crate::error::{Error, Result};
use crate::pool::npy::DType;
use crate::pool::{Pool, Shard};
use crate::query::{InputForm, RowProblem, Strategy};
use crate::score::fast::{entropy_bound, entropy_max_cutoff, plogp_approx};
use crate::score::input::{prob_ok, prob_value_problem, row_sum, sum_ok};
use crate::score::{Ranked, random_priority};
use crate::select::{Selection, TopK};

/// Receives every valid row of a chunk: local row, the row itself, its
/// approximate priority and the error bound (0 = canonical).
trait Emit {
    fn emit(&mut self, i: usize, row: &[f32], priority: f64, bound: f64);
    /// Rows whose priority + bound is below this are ignored by `emit`, so
    /// a kernel may skip them.
    fn threshold(&self) -> f64;
}

/// Buffers a worker reuses from chunk to chunk.
#[derive(Default)]
struct Scratch {
    rows: RowBufs,
    terms: Vec<f32>,
    probs: Vec<f64>,
    scores: Vec<f64>,
}

/// Where a chunk's rows land when they cannot be borrowed from memory.
#[derive(Default)]
struct RowBufs {
    /// float32 rows read from a file, or widened from float16.
    decoded: Vec<f32>,
    /// float64 rows read from a file or not aligned in memory.
    wide: Vec<f64>,
    /// Bytes read from a file before widening (float16).
    raw: Vec<u8>,
}

/// The first invalid row a worker met, or the chunk it could not read
/// (`global`: the chunk's first row, so the earliest failure wins).
struct BadRow {
    global: u64,
    local: u64,
    path: std::path::PathBuf,
    problem: Result<RowProblem, Error>,
}

impl BadRow {
    fn earlier(a: Option<BadRow>, b: Option<BadRow>) -> Option<BadRow> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if a.global <= b.global { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    fn into_error(self) -> Error {
        match self.problem {
            Ok(problem) => Error::BadRow {
                path: self.path,
                row: self.local,
                global: self.global,
                problem,
            },
            Err(read) => read,
        }
    }
}

/// Runs the scoring kernel over one chunk, emitting every row to `e`. On an
/// invalid row, returns the first one.
fn run_chunk<E: Emit>(
    job: &RowJob,
    pool: &Pool,
    (shard, start, end): (&Shard, u64, u64),
    RowBufs { decoded, wide, raw }: &mut RowBufs,
    terms: &mut Vec<f32>,
    e: &mut E,
) -> Result<(), BadRow> {
    let c = pool.classes();
    let g0 = shard.first_row() + start;
    let unread = |e: Error| BadRow {
        global: g0,
        local: start,
        path: shard.path().into(),
        problem: Err(e),
    };
    let scored = if shard.dtype() == DType::F64 {
        let rows = shard.rows_f64(start, end, c, wide).map_err(unread)?;
        score_rows_exact(job, &rows, c, g0, e)
    } else {
        let rows = shard
            .rows_f32(start, end, c, decoded, raw)
            .map_err(unread)?;
        score_rows(job, &rows, c, g0, terms, e)
    };
    scored.map_err(|(i, problem)| BadRow {
        global: g0 + i as u64,
        local: start + i as u64,
        path: shard.path().into(),
        problem: Ok(problem),
    })
}

/// Re-scores a validated row canonically (the refine step).
#[inline(never)]
fn refine(job: &RowJob, row: &[f32], index: u64, probs: &mut Vec<f64>) -> Ranked {
    probs.resize(row.len(), 0.0);
    canonical_ranked(job, row, index, probs).unwrap_or(Ranked {
        // Unreachable: the kernel validated the row with the same rules.
        priority: f64::NEG_INFINITY,
        index,
    })
}

/// float64 rows: every score canonical, from the stored values (there is
/// no float32 fast path to bound; the bytes read dominate anyway).
fn score_rows_exact<E: Emit>(
    job: &RowJob,
    rows: &[f64],
    c: usize,
    g0: u64,
    e: &mut E,
) -> Result<(), (usize, RowProblem)> {
    let mut probs = vec![0.0; c];
    for (i, row) in rows.chunks_exact(c).enumerate() {
        let r = canonical_ranked(job, row, g0 + i as u64, &mut probs).map_err(|p| (i, p))?;
        e.emit(i, &[], r.priority, 0.0);
    }
    Ok(())
}

/// Scores `rows` (C order, `c` columns, first global index `g0`).
fn score_rows<E: Emit>(
    job: &RowJob,
    rows: &[f32],
    c: usize,
    g0: u64,
    terms: &mut Vec<f32>,
    e: &mut E,
) -> Result<(), (usize, RowProblem)> {
    match job.input {
        InputForm::Probs {
            renormalize: false,
            sum_tol,
        } => dispatch(job, rows, c, g0, sum_tol, terms, e).map_err(|i| {
            let row = &rows[i * c..(i + 1) * c];
            let problem = prob_value_problem(row).unwrap_or(RowProblem::SumOff {
                sum: row_sum(row),
                tol: sum_tol,
            });
            (i, problem)
        }),
        _ => {
            let mut probs = vec![0.0; c];
            for (i, row) in rows.chunks_exact(c).enumerate() {
                let r =
                    canonical_ranked(job, row, g0 + i as u64, &mut probs).map_err(|p| (i, p))?;
                e.emit(i, row, r.priority, 0.0);
            }
            Ok(())
        }
    }
}

/// Picks the kernel: AVX-512 or AVX2+FMA when the CPU has it, and a monomorphized
/// copy for common class counts so the per-row loops unroll fully.
fn dispatch<E: Emit>(
    job: &RowJob,
    rows: &[f32],
    c: usize,
    g0: u64,
    tol: f64,
    terms: &mut Vec<f32>,
    e: &mut E,
) -> Result<(), usize> {
    macro_rules! by_classes {
        ($kernel:ident, $($n:literal)*) => {
            match c {
                $($n => $kernel::<$n, E>(job, rows, c, g0, tol, terms, e),)*
                _ => $kernel::<0, E>(job, rows, c, g0, tol, terms, e),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { by_classes!(plain_probs_avx512, 2 3 4 5 6 8 10 16 20 100) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { by_classes!(plain_probs_avx2, 2 3 4 5 6 8 10 16 20 100) };
        }
    }
    by_classes!(plain_probs_base, 2 3 4 5 6 8 10 16 20 100)
}

/// The kernel variant this CPU runs, as `alpool bench` reports it.
pub fn kernel_variant() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "AVX2";
        }
    }
    "scalar"
}

/// One copy of [`plain_probs`] per instruction set: `$attr` compiles it for
/// the features, `$v` picks the 8-row path (0: none, 1: AVX2 gathers,
/// 2: AVX-512 permutes).
macro_rules! kernel_variant {
    ($(#[$attr:meta])* $name:ident, $v:literal) => {
        $(#[$attr])*
        fn $name<const C: usize, E: Emit>(
            job: &RowJob,
            rows: &[f32],
            c: usize,
            g0: u64,
            tol: f64,
            terms: &mut Vec<f32>,
            e: &mut E,
        ) -> Result<(), usize> {
            plain_probs::<C, E, $v>(job, rows, c, g0, tol, terms, e)
        }
    };
}

kernel_variant!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    plain_probs_avx2,
    1
);
kernel_variant!(
    /// The 8-row path on 16 rows at a time (plain loads and permutes, no
    /// gathers), with the flat pass over the rows it leaves (validation,
    /// entropy's logarithms) free to use 16 lanes.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    plain_probs_avx512,
    2
);
kernel_variant!(plain_probs_base, 0);

/// The local index of the first row that fails validation (slow path, only
/// run once a chunk is known to hold one).
fn first_bad_row(rows: &[f32], c: usize, tol: f64) -> usize {
    rows.chunks_exact(c)
        .position(|row| !(row.iter().all(|&x| prob_ok(x)) && sum_ok(row_sum(row), tol)))
        .unwrap_or(0)
}

/// An f32 row sum is within `SUM_SLACK · C · (s + 1)` of the canonical f64
/// sum (2x the worst-case rounding of C additions), so only rows that close
/// to the tolerance need the exact f64 sum.
const SUM_SLACK: f64 = 2.0 / 16_777_216.0;

/// The fused validate-and-score pass over plain probabilities. `C` is the
/// class count when known at compile time, 0 otherwise; `V` picks the
/// 8-rows-at-a-time path: 1 gathers (from [`plain_probs_avx2`]), 2 takes
/// 16 rows of up to 16 classes by permutes (from [`plain_probs_avx512`]).
/// Returns the local index of the first invalid row.
#[inline(always)]
fn plain_probs<const C: usize, E: Emit, const V: u8>(
    job: &RowJob,
    rows: &[f32],
    c: usize,
    g0: u64,
    tol: f64,
    terms: &mut Vec<f32>,
    e: &mut E,
) -> Result<(), usize> {
    let c = if C > 0 { C } else { c };

    let n = rows.len() / c;
    let vector = cfg!(target_arch = "x86_64") && V > 0 && C > 0;
    // The 8-row path checks the values it gathers (every value of its rows
    // passes through exactly one gather); the rows it leaves, and the whole
    // chunk without it, are checked here over the flat slice.
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if vector {
        // SAFETY: V is only set by `plain_probs_avx2`/`_avx512`, which run
        // only on CPUs with AVX2 and FMA (and AVX-512F/DQ for the second).
        done = unsafe {
            match V {
                2 => x86::groups_of_8_wide::<C, E>(job, rows, g0, tol, e)?,
                _ => x86::groups_of_8::<C, E>(job, rows, g0, tol, e)?,
            }
        };
    }
    let tail = &rows[done * c..];
    let mut bad = false;
    terms.clear();
    if job.spec.strategy == Strategy::Entropy && !vector {
        terms.resize(rows.len(), 0.0);
        for (t, &p) in terms.iter_mut().zip(rows.iter()) {
            *t = plogp_approx(p);
            bad |= !prob_ok(p);
        }
    } else {
        for &x in tail {
            bad |= !prob_ok(x);
        }
    }
    if bad {
        return Err(done + first_bad_row(tail, c, tol));
    }
    scalar_rows::<C, E>(job, rows, c, g0, tol, terms, done, n, e)
}

/// Scores rows `i0..i1` one at a time (values already checked).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scalar_rows<const C: usize, E: Emit>(
    job: &RowJob,
    rows: &[f32],
    c: usize,
    g0: u64,
    tol: f64,
    terms: &[f32],
    i0: usize,
    i1: usize,
    e: &mut E,
) -> Result<(), usize> {
    let c = if C > 0 { C } else { c };
    let slack = SUM_SLACK * c as f64;
    let sum_passes = |row: &[f32]| -> bool {
        let s = row.iter().sum::<f32>() as f64;
        (s - 1.0).abs() + slack * (s + 1.0) <= tol || sum_ok(row_sum(row), tol)
    };

    // The two largest values, exactly, branch-free.
    #[inline(always)]
    fn top2(row: &[f32]) -> (f64, f64) {
        let (mut a, mut b) = (0.0f32, 0.0f32);
        for &x in row {
            let lo = a.min(x);
            a = a.max(x);
            b = b.max(lo);
        }
        // `+ 0.0` turns a −0.0 into +0.0, as the canonical top-2 has it.
        (a as f64, b as f64 + 0.0)
    }

    let rows = &rows[i0 * c..i1 * c];
    macro_rules! each_row {
        (|$i:ident, $row:ident| $priority:expr) => {
            for ($i, $row) in rows.chunks_exact(c).enumerate() {
                let $i = i0 + $i;
                if !sum_passes($row) {
                    return Err($i);
                }
                e.emit($i, $row, $priority, 0.0);
            }
        };
    }

    match job.spec.strategy {
        Strategy::LeastConfidence => each_row!(|_i, row| {
            let mut a = 0.0f32;
            for &x in row {
                a = a.max(x);
            }
            1.0 - a as f64
        }),
        Strategy::Margin => each_row!(|_i, row| {
            let (a, b) = top2(row);
            0.0 - (a - b)
        }),
        Strategy::Ratio => each_row!(|_i, row| {
            let (a, b) = top2(row);
            b / a
        }),
        Strategy::Random => each_row!(|i, row| random_priority(job.spec.seed, g0 + i as u64)),
        Strategy::Entropy => {
            let ln_b = job.spec.log_base.ln();
            for (i, row) in rows.chunks_exact(c).enumerate() {
                let i = i0 + i;
                if !sum_passes(row) {
                    return Err(i);
                }
                let sum = row.iter().sum::<f32>() as f64;
                let h = 0.0 - plogp_sum(row, terms.get(i * c..).unwrap_or_default()) as f64;
                e.emit(i, row, h / ln_b, entropy_bound(h, sum, c) / ln_b);
            }
        }
    }
    Ok(())
}

/// `Σ plogp_approx(p)` over a row in column order, in f32: from the flat
/// pass's `terms` when it computed them (non-empty), else inline. Every
/// path sums a row's terms this way, so they agree to the bit.
#[inline(always)]
fn plogp_sum(row: &[f32], terms: &[f32]) -> f32 {
    if terms.is_empty() {
        row.iter().map(|&p| plogp_approx(p)).sum()
    } else {
        terms[..row.len()].iter().sum()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Eight rows at a time: column j of eight rows becomes one vector (a
    //! gather on AVX2; on AVX-512, 16 rows are loaded whole and each column
    //! assembled by two-source permutes, which measured 21–29% faster on
    //! Zen 4 than the gathers), so the per-row sums, maxima and top-2 become
    //! vertical SIMD operations. Each lane does exactly the scalar path's
    //! operations in the same order, so results are bit-identical; a group
    //! with any row near the sum tolerance goes through the scalar path.

    use std::arch::x86_64::*;

    use super::{Emit, SUM_SLACK, entropy_max_cutoff, plogp_sum, random_priority, scalar_rows};
    use crate::backend::RowJob;
    use crate::query::Strategy;
    use crate::score::fast::{entropy_bound, plogp_approx};

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
                                return Err(r0 + super::first_bad_row(&rows[r0 * C..], C, tol));
                            }
                            for h in 0..2 {
                                post.group(rows, g0, r0 + 8 * h, sums[h], maxes[h], seconds[h], e)?;
                            }
                            g += 2;
                        } else {
                            prefetch::<C>(rows, r0, 8);
                            let (s, a, b, invalid) = columns_8::<C>(base, job.spec.strategy);
                            if invalid {
                                return Err(r0 + super::first_bad_row(&rows[r0 * C..], C, tol));
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
            let index =
                _mm512_add_epi64(index, _mm512_set1_epi64(0x9E37_79B9_7F4A_7C15_u64 as i64));
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
                    return scalar_rows::<C, E>(
                        self.job,
                        rows,
                        C,
                        g0,
                        self.tol,
                        &[],
                        r0,
                        r0 + 8,
                        e,
                    );
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
}

/// f64 → u64 preserving order, so a shared threshold can use `fetch_max`.
fn ordered_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

fn from_ordered_bits(b: u64) -> f64 {
    f64::from_bits(if b >> 63 == 1 { b & !(1 << 63) } else { !b })
}

/// The select emitter: skips rows that cannot reach the worst kept
/// priority, offers exact rows, and refines bounded ones first.
struct Collect<'a> {
    job: &'a RowJob,
    top: &'a mut TopK,
    /// Rows with priority + bound below this cannot enter.
    thresh: f64,
    g0: u64,
    excluded: &'a [u64],
    probs: &'a mut Vec<f64>,
    refined: u64,
}

impl Collect<'_> {
    fn initial_threshold(top: &TopK, shared: f64) -> f64 {
        if top.k() == 0 {
            return f64::INFINITY;
        }
        top.worst().map_or(shared, |w| w.priority.max(shared))
    }
}

impl Emit for Collect<'_> {
    #[inline(always)]
    fn threshold(&self) -> f64 {
        self.thresh
    }
    #[inline(always)]
    fn emit(&mut self, i: usize, row: &[f32], priority: f64, bound: f64) {
        if priority + bound < self.thresh {
            return;
        }
        let index = self.g0 + i as u64;
        if !self.excluded.is_empty() && self.excluded.binary_search(&index).is_ok() {
            return;
        }
        let r = if bound == 0.0 {
            Ranked { priority, index }
        } else {
            self.refined += 1;
            refine(self.job, row, index, self.probs)
        };
        self.top.offer(r);
        if let Some(w) = self.top.worst() {
            self.thresh = self.thresh.max(w.priority);
        }
    }
}

/// A rayon worker's partial result.
#[derive(Default)]
struct Worker {
    top: Option<TopK>,
    refined: u64,
    bad: Option<BadRow>,
    scratch: Scratch,
}

impl Worker {
    fn merge(mut self, other: Worker) -> Worker {
        self.top = match (self.top, other.top) {
            (Some(mut a), Some(b)) => {
                a.merge(b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.refined += other.refined;
        self.bad = BadRow::earlier(self.bad, other.bad);
        self
    }
}

/// Selects the top k rows of the pool under `job`.
pub(crate) fn select(pool: &Pool, job: &RowJob, progress: &dyn Progress) -> Result<Selection> {
    job.check(pool)?;
    let c = pool.classes();
    let k = job.k.min(pool.rows() as usize);
    let chunks: Vec<(&Shard, u64, u64)> = pool.chunks(job.rows_per_chunk(pool)).collect();
    let first_bad = AtomicU64::new(u64::MAX);
    // The best k-th priority any worker has proven so far: every worker's
    // full heap is a lower bound on the global k-th priority.
    let shared = AtomicU64::new(ordered_bits(f64::NEG_INFINITY));

    // One worker per thread, each taking the next chunk in file order:
    // every thread warms its threshold once, and the reads stay close to
    // sequential, which read-ahead (and a cold disk) needs.
    let next = AtomicUsize::new(0);
    let workers: Vec<Worker> = rayon::broadcast(|_| {
        let mut w = Worker::default();
        while let Some(&chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
            let (shard, start, end) = chunk;
            let g0 = shard.first_row() + start;
            // Chunks past a known bad row cannot change the error.
            if g0 > first_bad.load(Ordering::Relaxed) || progress.cancelled() {
                continue;
            }
            let top = w.top.get_or_insert_with(|| TopK::new(k));
            let thresh =
                Collect::initial_threshold(top, from_ordered_bits(shared.load(Ordering::Relaxed)));
            let excluded = job.exclusions.within(g0, shard.first_row() + end);
            let Scratch {
                rows, terms, probs, ..
            } = &mut w.scratch;
            let mut e = Collect {
                job,
                top,
                thresh,
                g0,
                excluded,
                probs,
                refined: 0,
            };
            let r = run_chunk(job, pool, chunk, rows, terms, &mut e);
            let refined = e.refined;
            if let Err(bad) = r {
                first_bad.fetch_min(bad.global, Ordering::Relaxed);
                w.bad = BadRow::earlier(w.bad.take(), Some(bad));
                continue;
            }
            if let Some(worst) = top.worst() {
                shared.fetch_max(ordered_bits(worst.priority), Ordering::Relaxed);
            }
            w.refined += refined;
            progress.advance((end - start) * (c * shard.dtype().size()) as u64);
        }
        w
    });
    let worker = workers
        .into_iter()
        .reduce(Worker::merge)
        .unwrap_or_default();

    if let Some(bad) = worker.bad {
        return Err(bad.into_error());
    }
    if progress.cancelled() {
        return Err(Error::Cancelled);
    }
    Ok(Selection::from_topk(
        job.spec.strategy,
        worker.top.unwrap_or_else(|| TopK::new(k)),
        pool.rows(),
        job.exclusions.len() as u64,
        worker.refined,
    ))
}

/// The score emitter: every row's canonical priority, in order.
struct Fill<'a> {
    job: &'a RowJob,
    g0: u64,
    scores: &'a mut Vec<f64>,
    probs: &'a mut Vec<f64>,
}

impl Emit for Fill<'_> {
    fn threshold(&self) -> f64 {
        f64::NEG_INFINITY
    }
    #[inline(always)]
    fn emit(&mut self, i: usize, row: &[f32], priority: f64, bound: f64) {
        let p = if bound == 0.0 {
            priority
        } else {
            refine(self.job, row, self.g0 + i as u64, self.probs).priority
        };
        self.scores.push(self.job.spec.strategy.score(p));
    }
}

/// Chunks scored per sequential step of [`score_all`]: bounds its memory.
const SCORE_STEP_CHUNKS: usize = 64;

/// Computes the canonical score of every row, in order, handing them to
/// `sink` a block at a time (excluded rows are scored too).
pub(crate) fn score_all(
    pool: &Pool,
    job: &RowJob,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(&[f64]) -> Result<()>,
) -> Result<()> {
    job.check(pool)?;
    let c = pool.classes();
    let chunks: Vec<(&Shard, u64, u64)> = pool.chunks(job.rows_per_chunk(pool)).collect();
    for step in chunks.chunks(SCORE_STEP_CHUNKS) {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let scored: Vec<Result<Vec<f64>, BadRow>> = step
            .par_iter()
            .map_init(Scratch::default, |s, &chunk| {
                let Scratch {
                    rows,
                    terms,
                    probs,
                    scores,
                } = s;
                scores.clear();
                let g0 = chunk.0.first_row() + chunk.1;
                let mut e = Fill {
                    job,
                    g0,
                    scores,
                    probs,
                };
                run_chunk(job, pool, chunk, rows, terms, &mut e)?;
                let out = s.scores.clone();
                progress.advance((chunk.2 - chunk.1) * (c * chunk.0.dtype().size()) as u64);
                Ok(out)
            })
            .collect();
        for r in scored {
            sink(&r.map_err(BadRow::into_error)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row with its priority and bound, as bits.
    #[derive(Default)]
    struct Record(Vec<(usize, u64, u64)>);

    impl Emit for Record {
        fn emit(&mut self, i: usize, _row: &[f32], priority: f64, bound: f64) {
            self.0.push((i, priority.to_bits(), bound.to_bits()));
        }
        fn threshold(&self) -> f64 {
            f64::NEG_INFINITY
        }
    }

    /// The kernels compiled for AVX-512, AVX2 and no SIMD give the same
    /// bits for every row (only one of them runs on a given CPU, so the
    /// exactness tests alone would not notice a difference).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_kernel_variant_gives_the_same_bits() {
        use crate::bench::synth::softmax_pool;
        let has = |f: &str| match f {
            "avx512f" => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
            }
            _ => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
        };
        if !has("avx2") {
            eprintln!("SKIP every_kernel_variant_gives_the_same_bits: no AVX2+FMA on this CPU");
            return;
        }
        fn check<const C: usize>(has_avx512: bool) {
            // 1,003 rows: 125 groups of 8 (62 pairs for the 16-row path and
            // one lone group) and a tail of 3.
            let mut rows = softmax_pool(1003, C, C as u64);
            let row = |rows: &mut Vec<f32>, i: usize, v: &[f32]| {
                rows[i * C..(i + 1) * C].copy_from_slice(&v[..C]);
            };
            let mut one_hot = vec![-0.0f32; C];
            one_hot[C / 2] = 1.0;
            row(&mut rows, 17, &one_hot);
            // A tie for the largest value.
            let mut tie = vec![0.0f32; C];
            (tie[0], tie[C - 1]) = (0.5, 0.5);
            row(&mut rows, 40, &tie);
            // A sum near the tolerance sends its group to the scalar path.
            let mut off = vec![(1.0 + 0.9e-3) / C as f32; C];
            off[0] += 1e-7;
            row(&mut rows, 333, &off);
            for strategy in Strategy::ALL {
                let job = RowJob::new(
                    crate::score::ScoreSpec::new(strategy),
                    InputForm::probs(),
                    10,
                );
                let run = |kernel: &str, rows: &[f32]| {
                    let (mut rec, mut terms) = (Record::default(), Vec::new());
                    let args = (&job, rows, C, 0, 1e-3);
                    let r = match kernel {
                        // SAFETY: each variant runs only when the CPU has its
                        // features (checked by the caller below).
                        "avx512" => unsafe {
                            plain_probs_avx512::<C, Record>(
                                args.0, args.1, args.2, args.3, args.4, &mut terms, &mut rec,
                            )
                        },
                        // SAFETY: as above.
                        "avx2" => unsafe {
                            plain_probs_avx2::<C, Record>(
                                args.0, args.1, args.2, args.3, args.4, &mut terms, &mut rec,
                            )
                        },
                        _ => plain_probs_base::<C, Record>(
                            args.0, args.1, args.2, args.3, args.4, &mut terms, &mut rec,
                        ),
                    };
                    (r, rec.0)
                };
                let base = run("base", &rows);
                assert_eq!(base.0, Ok(()));
                assert_eq!(base.1.len(), 1003);
                let mut bad = rows.clone();
                bad[600 * C + C - 1] = -1e-3;
                let base_bad = run("base", &bad);
                assert_eq!(base_bad.0, Err(600), "C = {C}, {strategy:?}");
                let mut kernels = vec!["avx2"];
                if has_avx512 {
                    kernels.push("avx512");
                }
                for k in kernels {
                    let got = run(k, &rows);
                    let first_diff = got.1.iter().zip(&base.1).position(|(a, b)| a != b);
                    assert!(
                        got.0 == base.0 && got.1.len() == base.1.len() && first_diff.is_none(),
                        "C = {C}, {strategy:?}: {k} differs from the scalar path (first at {first_diff:?})"
                    );
                    assert_eq!(run(k, &bad).0, base_bad.0, "C = {C}, {strategy:?}: {k}");
                }
            }
        }
        let wide = has("avx512f");
        check::<2>(wide);
        check::<3>(wide);
        check::<5>(wide);
        check::<10>(wide);
        check::<16>(wide);
        check::<20>(wide);
    }

    #[test]
    fn ordered_bits_preserve_order() {
        let xs = [
            f64::NEG_INFINITY,
            -1.0,
            -1e-300,
            -0.0,
            0.0,
            1e-300,
            0.5,
            1.0,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(ordered_bits(w[0]) <= ordered_bits(w[1]), "{w:?}");
            assert_eq!(
                from_ordered_bits(ordered_bits(w[0])).to_bits(),
                w[0].to_bits()
            );
        }
    }
}
