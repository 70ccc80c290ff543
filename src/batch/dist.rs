//! Distances and dot products between embedding rows: the canonical f64
//! definitions every backend must agree with, the float32 fast paths, and
//! the bounds that tie the two together.
//!
//! # The canonical definitions
//! Rows are float32 (float16 widens exactly; float64 embeddings narrow to
//! float32 once, on reading). A canonical sum over `d` terms widens each
//! term's inputs to f64 and accumulates into eight partial sums, term `j`
//! into sum `j mod 8` in increasing `j`, then adds the partial sums as
//! `((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))`. That order is part of
//! the definition: it is fixed, independent of the machine and of
//! threading, and it lets the compiler use eight f64 lanes.
//!
//! # The fast path and its bound
//! The fast path computes the same sums in float32 in any order (sixteen
//! lanes on the CPU, one thread per row on the GPU, with or without fused
//! multiply-add). For a sum of `d` products of float32 inputs, rounding
//! error analysis (Higham, *Accuracy and Stability of Numerical
//! Algorithms*, §3.1) gives, whatever the order:
//!
//! `|fast − exact| ≤ γ(d + 2) · Σ |terms| + (2d + 2) · 2⁻¹²⁶`, with `γ(n) = n·u / (1 − n·u)`, `u = 2⁻²⁴`.
//!
//! `γ(d + 2)` covers the subtraction, the product and the summation (an FMA
//! only removes roundings); the second term covers underflow, including a
//! GPU that flushes subnormals to zero. The canonical f64 value differs
//! from the exact one by `γ₆₄(d + 2) · Σ |terms|`, far below the float32
//! bound; `SLACK` doubles the float32 bound to cover it and the f64
//! arithmetic that applies the bound.

/// The float32 unit roundoff.
pub(crate) const U32: f64 = 1.0 / (1u64 << 24) as f64;

/// Safety factor on the float32 bounds (see the module docs).
pub(crate) const SLACK: f64 = 2.0;

/// `γ(n) = n·u / (1 − n·u)` for float32, times [`SLACK`].
pub(crate) fn gamma32(n: usize) -> f64 {
    let nu = n as f64 * U32;
    SLACK * nu / (1.0 - nu)
}

/// The absolute underflow term of a `d`-term float32 sum, times [`SLACK`].
pub(crate) fn underflow32(d: usize) -> f64 {
    SLACK * (2 * d + 2) as f64 * f32::MIN_POSITIVE as f64
}

/// Canonical squared Euclidean distance (see the module docs).
#[inline]
pub(crate) fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    canonical_sum(a, b, |x, y| {
        let d = x - y;
        d * d
    })
}

/// Canonical dot product of two float32 rows.
#[inline]
pub(crate) fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    canonical_sum(a, b, |x, y| x * y)
}

/// Canonical dot product of two f64 rows (BADGE's probability parts).
#[inline]
pub(crate) fn dot_f64_wide(a: &[f64], b: &[f64]) -> f64 {
    dot_f64_mapped(a, b, |x| x)
}

/// [`dot_f64_wide`] of `f(a)` and `b` without making `f(a)`: term j goes
/// to lane j % 8, the lanes then [`combine`]d, as there (so the same bits
/// as mapping first), in chunks of eight so that it vectorizes.
#[inline(always)]
pub(crate) fn dot_f64_mapped<T: Copy>(a: &[T], b: &[f64], f: impl Fn(T) -> f64) -> f64 {
    let mut s = [0f64; 8];
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            s[l] += f(x[l]) * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        s[l] += f(*x) * y;
    }
    combine(s)
}

#[inline(always)]
fn canonical_sum(a: &[f32], b: &[f32], term: impl Fn(f64, f64) -> f64) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut s = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            s[l] += term(x[l] as f64, y[l] as f64);
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        s[l] += term(*x as f64, *y as f64);
    }
    combine(s)
}

#[inline(always)]
fn combine(s: [f64; 8]) -> f64 {
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// Fast float32 squared distance: sixteen lanes, any order the compiler
/// likes within them (bounded by [`gamma32`]).
#[inline(always)]
pub(crate) fn sq_dist_f32(a: &[f32], b: &[f32]) -> f32 {
    lanes16(a, b, |x, y| {
        let d = x - y;
        d * d
    })
}

/// Fast float32 dot product.
#[inline(always)]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    lanes16(a, b, |x, y| x * y)
}

#[inline(always)]
fn lanes16(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut s = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            s[l] += term(x[l], y[l]);
        }
    }
    let mut t = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        t += term(*x, *y);
    }
    s.iter().sum::<f32>() + t
}

/// Rows per group of [`sq_dist_f32_x16`]: one float32 vector lane each.
pub(crate) const GROUP: usize = 16;

/// Groups of [`GROUP`] rows of `rows` (D columns), each stored transposed
/// (`t[g·D·16 + l·16 + lane]`), the last group padded with zeros, so one
/// row meets sixteen others with every lane busy and no horizontal sum.
pub(crate) fn transpose_groups(rows: &[f32], d: usize) -> Vec<f32> {
    let n = rows.len() / d.max(1);
    let groups = n.div_ceil(GROUP);
    let mut t = vec![0f32; groups * GROUP * d];
    for (r, x) in rows.chunks_exact(d).enumerate() {
        let (g, lane) = (r / GROUP, r % GROUP);
        let base = g * GROUP * d;
        for (l, &v) in x.iter().enumerate() {
            t[base + l * GROUP + lane] = v;
        }
    }
    t
}

/// Fast float32 squared distances from `x` to the sixteen rows of one
/// transposed group: each lane sums its `d` terms in column order, so the
/// bound of [`gamma32`] holds as for [`sq_dist_f32`].
#[inline(always)]
pub(crate) fn sq_dist_f32_x16(x: &[f32], group: &[f32]) -> [f32; GROUP] {
    let mut acc = [0f32; GROUP];
    let (cols, _) = group.as_chunks::<GROUP>();
    for (&v, col) in x.iter().zip(cols) {
        for l in 0..GROUP {
            let t = v - col[l];
            acc[l] += t * t;
        }
    }
    acc
}

/// A kernel computing [`sq_dist_f32_x16`]: the portable one, or one in
/// AVX-512 intrinsics (compilers keep generic code to 256-bit vectors even
/// where 512-bit ones are enabled). Both sum each lane's terms in column
/// order, the second with fused multiply-adds: the bound covers both.
pub(crate) type X16 = fn(&[f32], &[f32]) -> [f32; GROUP];

/// The fastest [`X16`] kernel `simd` runs.
pub(crate) fn x16_kernel(simd: Simd) -> X16 {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: `Simd::Avx512` is detected only on CPUs with AVX-512F.
        return |x, g| unsafe { x16_avx512(x, g) };
    }
    let _ = simd;
    |x, g| sq_dist_f32_x16(x, g)
}

/// Rows per call of an [`X16Rows`] kernel.
pub(crate) const ROWS: usize = 8;

/// A kernel computing [`sq_dist_f32_x16`] for [`ROWS`] rows at once, so
/// each column of the group is loaded once for all of them (many centres
/// no longer fit the fastest cache, and one row per sweep is bound by
/// reading them). Each lane's terms are summed in column order as in
/// [`sq_dist_f32_x16`]: the same bound.
pub(crate) type X16Rows = fn(&[&[f32]; ROWS], &[f32]) -> [[f32; GROUP]; ROWS];

/// The fastest [`X16Rows`] kernel `simd` runs.
pub(crate) fn x16_rows_kernel(simd: Simd) -> X16Rows {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: `Simd::Avx512` is detected only on CPUs with AVX-512F.
        return |x, g| unsafe { x16_rows_avx512(x, g) };
    }
    let _ = simd;
    |xs, g| xs.map(|x| sq_dist_f32_x16(x, g))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn x16_rows_avx512(xs: &[&[f32]; ROWS], group: &[f32]) -> [[f32; GROUP]; ROWS] {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps, _mm512_sub_ps,
    };
    let d = xs[0].len();
    assert!(xs.iter().all(|x| x.len() == d) && group.len() >= d * GROUP);
    let mut acc: [__m512; ROWS] = [_mm512_setzero_ps(); ROWS];
    for l in 0..d {
        // SAFETY: the assert keeps every load of sixteen floats in bounds.
        let c = unsafe { _mm512_loadu_ps(group.as_ptr().add(l * GROUP)) };
        for (a, x) in acc.iter_mut().zip(xs) {
            let t = _mm512_sub_ps(_mm512_set1_ps(x[l]), c);
            *a = _mm512_fmadd_ps(t, t, *a);
        }
    }
    let mut out = [[0f32; GROUP]; ROWS];
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: each `o` holds sixteen floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
    out
}

/// A kernel computing [`sq_dist_f32`] for one pair: the portable one, or
/// one in AVX-512 intrinsics (sixteen lanes with fused multiply-adds, then
/// their sum; any order is within the bound).
pub(crate) type X1 = fn(&[f32], &[f32]) -> f32;

/// The fastest [`X1`] kernel `simd` runs.
pub(crate) fn x1_kernel(simd: Simd) -> X1 {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: `Simd::Avx512` is detected only on CPUs with AVX-512F.
        return |a, b| unsafe { x1_avx512(a, b) };
    }
    let _ = simd;
    |a, b| sq_dist_f32(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn x1_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_reduce_add_ps, _mm512_setzero_ps, _mm512_sub_ps,
    };
    let n = a.len().min(b.len());
    let full = n / GROUP * GROUP;
    let mut acc = _mm512_setzero_ps();
    let mut at = 0;
    while at < full {
        // SAFETY: `at + 16 ≤ n` for both slices.
        let (x, y) = unsafe {
            (
                _mm512_loadu_ps(a.as_ptr().add(at)),
                _mm512_loadu_ps(b.as_ptr().add(at)),
            )
        };
        let t = _mm512_sub_ps(x, y);
        acc = _mm512_fmadd_ps(t, t, acc);
        at += GROUP;
    }
    let mut tail = 0f32;
    for (x, y) in a[full..n].iter().zip(&b[full..n]) {
        let t = x - y;
        tail += t * t;
    }
    _mm512_reduce_add_ps(acc) + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn x16_avx512(x: &[f32], group: &[f32]) -> [f32; GROUP] {
    use std::arch::x86_64::{
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
        _mm512_sub_ps,
    };
    assert!(group.len() >= x.len() * GROUP);
    let mut acc = _mm512_setzero_ps();
    for (l, &v) in x.iter().enumerate() {
        // SAFETY: the assert keeps every load of sixteen floats in bounds.
        let c = unsafe { _mm512_loadu_ps(group.as_ptr().add(l * GROUP)) };
        let t = _mm512_sub_ps(_mm512_set1_ps(v), c);
        acc = _mm512_fmadd_ps(t, t, acc);
    }
    let mut out = [0f32; GROUP];
    // SAFETY: `out` holds sixteen floats.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

/// Which vector unit the fast kernels run on: the CPU's, detected once
/// for every kernel compiled per instruction set.
pub(crate) use crate::backend::cpu::Isa as Simd;

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..n * d)
            .map(|i| {
                // Mixed magnitudes, exact duplicates and a few tiny values.
                let v = r.uniform() as f32 * 2.0 - 1.0;
                match i % 7 {
                    0 => v * 1e3,
                    3 => v * 1e-20,
                    _ => v,
                }
            })
            .collect()
    }

    #[test]
    fn fast_paths_stay_within_the_bound() {
        for d in [1, 3, 8, 15, 16, 17, 64, 127, 300] {
            let x = rows(40, d, d as u64);
            for (a, b) in x.chunks_exact(d).zip(x.chunks_exact(d).skip(1)) {
                let exact = sq_dist_f64(a, b);
                let fast = Simd::detect().run(|| sq_dist_f32(a, b)) as f64;
                let bound = gamma32(d + 2) * exact + underflow32(d);
                assert!((fast - exact).abs() <= bound, "d = {d}: {fast} vs {exact}");
                let abs: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (*x as f64 * *y as f64).abs())
                    .sum();
                let (fd, ed) = (dot_f32(a, b) as f64, dot_f64(a, b));
                assert!((fd - ed).abs() <= gamma32(d + 2) * abs + underflow32(d));
            }
        }
    }

    #[test]
    fn grouped_distances_stay_within_the_bound() {
        for d in [1, 5, 16, 33, 128] {
            let x = rows(37, d, d as u64 + 7);
            let t = transpose_groups(&x, d);
            for a in x.chunks_exact(d) {
                for (g, group) in t.chunks_exact(GROUP * d).enumerate() {
                    let fast = Simd::detect().run(|| sq_dist_f32_x16(a, group));
                    let best = x16_kernel(Simd::detect())(a, group);
                    let rows = x16_rows_kernel(Simd::detect())(&[a; ROWS], group);
                    assert!(rows.iter().all(|r| r == &best), "d {d}: same sums");
                    let one = x1_kernel(Simd::detect());
                    for (lane, (&f, &b)) in fast.iter().zip(&best).enumerate() {
                        let r = g * GROUP + lane;
                        let exact = match x.chunks_exact(d).nth(r) {
                            Some(b) => sq_dist_f64(a, b),
                            None => sq_dist_f64(a, &vec![0.0; d]),
                        };
                        let bound = gamma32(d + 2) * exact + underflow32(d);
                        assert!((f as f64 - exact).abs() <= bound, "d {d} row {r}");
                        assert!((b as f64 - exact).abs() <= bound, "d {d} row {r}");
                        if let Some(row) = x.chunks_exact(d).nth(r) {
                            let f1 = one(a, row) as f64;
                            assert!((f1 - exact).abs() <= bound, "d {d} row {r}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn canonical_sums_follow_the_defined_order() {
        let a: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..19).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut s = [0f64; 8];
        for j in 0..19 {
            s[j % 8] += a[j] as f64 * b[j] as f64;
        }
        let want = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        assert_eq!(dot_f64(&a, &b).to_bits(), want.to_bits());
        let wide_a: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let wide_b: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        assert_eq!(dot_f64_wide(&wide_a, &wide_b).to_bits(), want.to_bits());
    }
}
