//! The portable kernels: the canonical row-by-row path, and the fused
//! validate-and-score pass over plain probabilities, compiled once per
//! instruction set and picked at run time ([`super::Isa`]). Rust never fuses
//! a multiply and an add by itself, so every copy gives the same bits.

use super::{Emit, Isa};
use crate::backend::{RowJob, canonical_ranked};
use crate::query::{InputForm, RowProblem, Strategy};
use crate::score::fast::{entropy_bound, plogp_approx};
use crate::score::input::{prob_ok, prob_value_problem, row_sum, sum_ok};
use crate::score::{Ranked, random_priority};

/// Re-scores a validated row canonically (the refine step).
#[inline(never)]
pub(super) fn refine(job: &RowJob, row: &[f32], index: u64, probs: &mut Vec<f64>) -> Ranked {
    probs.resize(row.len(), 0.0);
    canonical_ranked(job, row, index, probs).unwrap_or(Ranked {
        // Unreachable: the kernel validated the row with the same rules.
        priority: f64::NEG_INFINITY,
        index,
    })
}

/// float64 rows: every score canonical, from the stored values (there is
/// no float32 fast path to bound; the bytes read dominate anyway).
pub(super) fn score_rows_exact<E: Emit>(
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
pub(super) fn score_rows<E: Emit>(
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
pub(super) fn dispatch<E: Emit>(
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
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports the features the function is compiled for.
        Isa::Avx512 => return unsafe { by_classes!(plain_probs_avx512, 2 3 4 5 6 8 10 16 20 100) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports the features the function is compiled for.
        Isa::Avx2 => return unsafe { by_classes!(plain_probs_avx2, 2 3 4 5 6 8 10 16 20 100) },
        _ => {}
    }
    by_classes!(plain_probs_base, 2 3 4 5 6 8 10 16 20 100)
}

/// The kernel variant this CPU runs, as `alpool bench` reports it (saying
/// so when `ALPOOL_ISA` narrowed it).
pub fn kernel_variant() -> String {
    let (used, found) = (Isa::detect(), Isa::found());
    if used == found {
        used.name().into()
    } else {
        format!(
            "{} (capped by ALPOOL_ISA; this CPU has {})",
            used.name(),
            found.name()
        )
    }
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
pub(super) fn first_bad_row(rows: &[f32], c: usize, tol: f64) -> usize {
    rows.chunks_exact(c)
        .position(|row| !(row.iter().all(|&x| prob_ok(x)) && sum_ok(row_sum(row), tol)))
        .unwrap_or(0)
}

/// An f32 row sum is within `SUM_SLACK · C · (s + 1)` of the canonical f64
/// sum (2x the worst-case rounding of C additions), so only rows that close
/// to the tolerance need the exact f64 sum.
pub(super) const SUM_SLACK: f64 = 2.0 / 16_777_216.0;

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
                2 => super::x86::groups_of_8_wide::<C, E>(job, rows, g0, tol, e)?,
                _ => super::x86::groups_of_8::<C, E>(job, rows, g0, tol, e)?,
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
pub(super) fn scalar_rows<const C: usize, E: Emit>(
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
pub(super) fn plogp_sum(row: &[f32], terms: &[f32]) -> f32 {
    if terms.is_empty() {
        row.iter().map(|&p| plogp_approx(p)).sum()
    } else {
        terms[..row.len()].iter().sum()
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
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
            // CI's machines have AVX2: there, a skip would hide the test.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but this CPU has no AVX2+FMA: the variants cannot be compared"
            );
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
}
