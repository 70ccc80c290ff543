//! The multi-label fast path's per-row reductions
//! ([`super::multilabel::reduce_f32`], [`super::multilabel::adaptive_parts`])
//! for sixteen rows side by side, on AVX-512. Row by row, a row of L = 20
//! labels leaves its reduction to short vectors, a scalar remainder and a
//! horizontal step, which cost more than reading the row. Here each row's
//! values are folded into one 16-lane accumulator (whole vectors, then the
//! tail under a mask), and the sixteen accumulators are reduced together
//! by a tree of two-source permutes (15 steps for 16 rows), which leaves
//! row r's reduction in lane r.
//!
//! Counts and extremes come out exactly as the row-by-row fold gives them;
//! sums come in another order, and mean-entropy's terms are
//! `t · rsqrt14(t)` rather than rounded roots: both are covered by
//! [`super::multilabel::FastBound`]'s bound (tested below against the row
//! path, and in `tests/suite/multilabel.rs` against naive references).
//! On CPUs with AVX2 and no AVX-512, [`reduce8`] does the same eight rows
//! at a time for the strategies where that pays off there. x86-64 only
//! (the module is compiled there alone); other CPUs take the row path.

use std::arch::x86_64::*;

use crate::query::MultiLabel;

/// Rows reduced at once, one per lane.
pub(crate) const LANES: usize = 16;

/// Sixteen rows' reductions, lane r for row r. `value` is
/// [`super::multilabel::reduce_f32`]'s (for adaptive, the positive count);
/// adaptive also gets its smallest positive value (`lo`, ∞ when none) and
/// largest non-positive one (`hi`, −∞ when none).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reduced {
    pub(crate) value: [f32; LANES],
    pub(crate) lo: [f32; LANES],
    pub(crate) hi: [f32; LANES],
}

/// The permute indices of the tree's four levels (half-widths 8, 4, 2, 1):
/// each level pairs vectors x and y, each holding 16 / (2h) rows of 2h
/// partial values, and takes the first h of each row's values (`FIRST`)
/// and the last h (`SECOND`), x's rows into lanes 0–7 and y's into 8–15,
/// so that combining the two halves one lane at a time leaves rows of h.
const fn tree_index(h: usize, second: bool) -> [i32; LANES] {
    let mut out = [0i32; LANES];
    let mut i = 0;
    while i < LANES {
        let j = i % 8;
        let lane = (j / h) * 2 * h + j % h + if second { h } else { 0 };
        out[i] = (lane + if i >= 8 { LANES } else { 0 }) as i32;
        i += 1;
    }
    out
}

const FIRST: [[i32; LANES]; 4] = [
    tree_index(8, false),
    tree_index(4, false),
    tree_index(2, false),
    tree_index(1, false),
];
const SECOND: [[i32; LANES]; 4] = [
    tree_index(8, true),
    tree_index(4, true),
    tree_index(2, true),
    tree_index(1, true),
];

/// Reduces sixteen 16-lane vectors to one whose lane r is `$op` over
/// vector r's lanes. A macro, not a function taking the operation: a
/// closure would not be inlined, and its intrinsics would become calls.
macro_rules! tree {
    ($v:expr, $op:ident) => {{
        let mut v: [__m512; LANES] = $v;
        let mut width = LANES;
        for level in 0..4 {
            let a = _mm512_loadu_si512(FIRST[level].as_ptr().cast());
            let b = _mm512_loadu_si512(SECOND[level].as_ptr().cast());
            width /= 2;
            for k in 0..width {
                let (x, y) = (v[2 * k], v[2 * k + 1]);
                v[k] = $op(
                    _mm512_permutex2var_ps(x, a, y),
                    _mm512_permutex2var_ps(x, b, y),
                );
            }
        }
        v[0]
    }};
}

/// [`LANES`] rows of `labels` stored f32 values each (`block`, row after
/// row, every value in [0, 1]) reduced as `strategy`'s fast path needs.
///
/// # Safety
/// The CPU must have AVX-512F, AVX-512DQ and POPCNT (`Isa::Avx512`).
#[target_feature(enable = "avx512f,avx512dq,avx2,fma,popcnt")]
#[inline]
pub(crate) unsafe fn reduce(strategy: MultiLabel, block: &[f32], labels: usize) -> Reduced {
    assert!(labels > 0 && block.len() == LANES * labels);
    let rows = Rows {
        base: block.as_ptr(),
        labels,
        full: labels / LANES,
        tail: ((1u32 << (labels % LANES)) - 1) as u16,
    };
    let mut out = Reduced::default();
    // SAFETY: the features are this function's, and `rows` is `block`,
    // checked above.
    unsafe {
        match strategy {
            MultiLabel::MeanEntropy => out.value = roots(&rows),
            MultiLabel::MaxEntropy | MultiLabel::MinMargin => out.value = nearest(&rows),
            MultiLabel::Cardinality | MultiLabel::Adaptive => extremes(&rows, &mut out, strategy),
            MultiLabel::AvgScore | MultiLabel::MaxScore => {
                out.value = modal(&rows, strategy == MultiLabel::AvgScore);
            }
        }
    }
    out
}

/// Sixteen rows of a block: where they start, their length, their whole
/// vectors and the mask of their tail's lanes.
struct Rows {
    base: *const f32,
    labels: usize,
    full: usize,
    tail: u16,
}

impl Rows {
    /// How many vectors a row spans (the tail counted).
    fn vectors(&self) -> usize {
        self.full + usize::from(self.tail != 0)
    }

    /// Row r's vector c (c = `full`: the tail, zeroed past L) and its mask.
    ///
    /// # Safety
    /// AVX-512F; `base` holds 16 rows of `labels` values, r < 16 and
    /// c < [`Rows::vectors`]: whole vectors lie inside the row, and the
    /// tail's masked load reads (and can fault on) only the lanes it keeps.
    #[inline(always)]
    unsafe fn load(&self, r: usize, c: usize) -> (__m512, __mmask16) {
        // SAFETY: as the caller's contract says.
        unsafe {
            let p = self.base.add(r * self.labels + LANES * c);
            if c < self.full {
                (_mm512_loadu_ps(p), 0xffff)
            } else {
                (_mm512_maskz_loadu_ps(self.tail, p), self.tail)
            }
        }
    }
}

/// mean-entropy: Σ √(x(1 − x)) as `t · rsqrt14(t)`, t ≥ 10⁻³⁰ so that
/// t = 0 gives a small positive term (rsqrt14(0) is ∞).
///
/// # Safety
/// As [`Rows::load`]'s.
#[inline(always)]
unsafe fn roots(rows: &Rows) -> [f32; LANES] {
    // SAFETY: as the caller's contract says.
    unsafe {
        let floor = _mm512_set1_ps(1e-30);
        let one = _mm512_set1_ps(1.0);
        let mut acc = [_mm512_setzero_ps(); LANES];
        for (r, a) in acc.iter_mut().enumerate() {
            for c in 0..rows.vectors() {
                let (x, m) = rows.load(r, c);
                let t = _mm512_max_ps(_mm512_mul_ps(x, _mm512_sub_ps(one, x)), floor);
                let root = _mm512_mul_ps(t, _mm512_rsqrt14_ps(t));
                *a = _mm512_mask_add_ps(*a, m, *a, root);
            }
        }
        lanes(tree!(acc, _mm512_add_ps))
    }
}

/// max-entropy, min-margin: the smallest `|x − ½|`.
///
/// # Safety
/// As [`Rows::load`]'s.
#[inline(always)]
unsafe fn nearest(rows: &Rows) -> [f32; LANES] {
    // SAFETY: as the caller's contract says.
    unsafe {
        let half = _mm512_set1_ps(0.5);
        let mut acc = [_mm512_set1_ps(f32::INFINITY); LANES];
        for (r, a) in acc.iter_mut().enumerate() {
            for c in 0..rows.vectors() {
                let (x, m) = rows.load(r, c);
                let d = _mm512_abs_ps(_mm512_sub_ps(x, half));
                *a = _mm512_mask_min_ps(*a, m, *a, d);
            }
        }
        lanes(tree!(acc, _mm512_min_ps))
    }
}

/// cardinality: the positive counts; adaptive: those, and the smallest
/// positive and largest non-positive values.
///
/// # Safety
/// As [`Rows::load`]'s, and POPCNT.
#[inline(always)]
unsafe fn extremes(rows: &Rows, out: &mut Reduced, strategy: MultiLabel) {
    let adaptive = strategy == MultiLabel::Adaptive;
    // SAFETY: as the caller's contract says.
    unsafe {
        let half = _mm512_set1_ps(0.5);
        let mut lo = [_mm512_set1_ps(f32::INFINITY); LANES];
        let mut hi = [_mm512_set1_ps(f32::NEG_INFINITY); LANES];
        for r in 0..LANES {
            let mut n = 0;
            for c in 0..rows.vectors() {
                let (x, m) = rows.load(r, c);
                let pos = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(m, x, half);
                n += pos.count_ones();
                if adaptive {
                    lo[r] = _mm512_mask_min_ps(lo[r], pos, lo[r], x);
                    hi[r] = _mm512_mask_max_ps(hi[r], m & !pos, hi[r], x);
                }
            }
            out.value[r] = n as f32;
        }
        if adaptive {
            out.lo = lanes(tree!(lo, _mm512_min_ps));
            out.hi = lanes(tree!(hi, _mm512_max_ps));
        }
    }
}

/// avg-score (`sum`) and max-score: the sum or the largest of `x (ŷ − ½)`.
///
/// # Safety
/// As [`Rows::load`]'s.
#[inline(always)]
unsafe fn modal(rows: &Rows, sum: bool) -> [f32; LANES] {
    // SAFETY: as the caller's contract says.
    unsafe {
        let (half, neg) = (_mm512_set1_ps(0.5), _mm512_set1_ps(-0.5));
        let init = if sum { 0.0 } else { f32::NEG_INFINITY };
        let mut acc = [_mm512_set1_ps(init); LANES];
        for (r, a) in acc.iter_mut().enumerate() {
            for c in 0..rows.vectors() {
                let (x, m) = rows.load(r, c);
                let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, half);
                let v = _mm512_mul_ps(x, _mm512_mask_blend_ps(pos, neg, half));
                *a = if sum {
                    _mm512_mask_add_ps(*a, m, *a, v)
                } else {
                    _mm512_mask_max_ps(*a, m, *a, v)
                };
            }
        }
        if sum {
            lanes(tree!(acc, _mm512_add_ps))
        } else {
            lanes(tree!(acc, _mm512_max_ps))
        }
    }
}

/// A register's sixteen lanes.
///
/// # Safety
/// AVX-512F.
#[inline(always)]
unsafe fn lanes(v: __m512) -> [f32; LANES] {
    let mut out = [0f32; LANES];
    // SAFETY: an unaligned store of 16 f32 into an array of 16, on the
    // caller's AVX-512F.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// Reduces eight 8-lane registers to one (lanes in [`AVX2_ORDER`]): the
/// 128-bit halves against each other, then pairs and single lanes within
/// halves.
macro_rules! tree8 {
    ($v:expr, $op:ident) => {{
        let v: [__m256; 8] = $v;
        let mut w = [_mm256_setzero_ps(); 4];
        for k in 0..4 {
            let (x, y) = (v[2 * k], v[2 * k + 1]);
            w[k] = $op(
                _mm256_permute2f128_ps::<0x20>(x, y),
                _mm256_permute2f128_ps::<0x31>(x, y),
            );
        }
        let mut u = [_mm256_setzero_ps(); 2];
        for k in 0..2 {
            let (x, y) = (w[2 * k], w[2 * k + 1]);
            u[k] = $op(
                _mm256_shuffle_ps::<0b01_00_01_00>(x, y),
                _mm256_shuffle_ps::<0b11_10_11_10>(x, y),
            );
        }
        $op(
            _mm256_shuffle_ps::<0b10_00_10_00>(u[0], u[1]),
            _mm256_shuffle_ps::<0b11_01_11_01>(u[0], u[1]),
        )
    }};
}

/// [`reduce`] for CPUs with AVX2 and no AVX-512, for the strategies
/// where eight rows at a time pay off there ([`EIGHT`]): into lanes 0–7 of
/// the result. Each row is folded into one 8-lane register (the tail
/// through a masked load), and three levels of 128-bit-half and in-half
/// shuffles reduce eight registers to one, whose lanes hold rows 0, 2, 4,
/// 6, 1, 3, 5, 7 ([`AVX2_ORDER`]). Measured on AVX2 code (the Intel VM,
/// its AVX-512 copies set aside), it took adaptive from 1.81x to 1.39x of
/// `dd` and mean-entropy from 1.93x to 1.30x (whole processes), and made
/// the single-reduction strategies slower than their row path
/// (cardinality 74 → 100 ms in process), so they stay on the row path
/// there.
///
/// # Safety
/// The CPU must have AVX2, FMA and POPCNT (`Isa::Avx2` or wider).
#[target_feature(enable = "avx2,fma,popcnt")]
#[inline]
pub(crate) unsafe fn reduce8(strategy: MultiLabel, block: &[f32], labels: usize) -> Reduced {
    assert!(labels > 0 && block.len() == 8 * labels && EIGHT.contains(&strategy));
    let rows = Rows8::new(block, labels);
    // SAFETY: the features are this function's, and `rows` is `block`,
    // checked above.
    unsafe {
        if strategy == MultiLabel::MeanEntropy {
            Reduced {
                value: roots8(&rows),
                ..Reduced::default()
            }
        } else {
            adaptive8(&rows)
        }
    }
}

/// The strategies [`reduce8`] serves.
pub(crate) const EIGHT: [MultiLabel; 2] = [MultiLabel::Adaptive, MultiLabel::MeanEntropy];

/// mean-entropy's Σ √(x(1 − x)) on AVX2, each root `t · y` with `y` the
/// reciprocal root estimate (relative error at most 1.5·2⁻¹²) after one
/// Newton step, `y (1.5 − ½ t y²)`: that squares the estimate's error
/// (1.5·ε² < 2.1e-7) and adds a few f32 roundings, far inside the 2⁻¹³
/// that [`super::multilabel::FastBound`] allows a root. Rounded roots
/// (`vsqrtps`) would be exact but cost 6 cycles a vector on Intel and
/// more on AMD, the estimate and its step about 2. t ≥ 10⁻³⁰ as in
/// [`roots`].
///
/// # Safety
/// As [`Rows8::load`]'s.
#[inline(always)]
unsafe fn roots8(rows: &Rows8) -> [f32; LANES] {
    // SAFETY: as the caller's contract says.
    unsafe {
        let floor = _mm256_set1_ps(1e-30);
        let (one, half, three_halves) = (
            _mm256_set1_ps(1.0),
            _mm256_set1_ps(0.5),
            _mm256_set1_ps(1.5),
        );
        let mut acc = [_mm256_setzero_ps(); 8];
        for (r, a) in acc.iter_mut().enumerate() {
            for c in 0..rows.vectors() {
                let (x, m) = rows.load(r, c);
                let t = _mm256_max_ps(_mm256_mul_ps(x, _mm256_sub_ps(one, x)), floor);
                let y = _mm256_rsqrt_ps(t);
                let ty = _mm256_mul_ps(t, y);
                let step = _mm256_fnmadd_ps(_mm256_mul_ps(half, ty), y, three_halves);
                let root = _mm256_mul_ps(ty, step);
                *a = _mm256_add_ps(*a, _mm256_and_ps(root, m));
            }
        }
        unorder(tree8!(acc, _mm256_add_ps))
    }
}

/// Adaptive's reduction ([`reduce`]'s positive counts and extremes) of
/// eight rows.
///
/// # Safety
/// As [`Rows8::load`]'s, and POPCNT.
#[inline(always)]
unsafe fn adaptive8(rows: &Rows8) -> Reduced {
    let mut out = Reduced::default();
    // SAFETY: as the caller's contract says.
    unsafe {
        let (inf, ninf) = (
            _mm256_set1_ps(f32::INFINITY),
            _mm256_set1_ps(f32::NEG_INFINITY),
        );
        let half = _mm256_set1_ps(0.5);
        let (mut lo, mut hi) = ([inf; 8], [ninf; 8]);
        for r in 0..8 {
            let mut count = 0;
            for c in 0..rows.vectors() {
                let (x, m) = rows.load(r, c);
                let pos = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, half), m);
                count += (_mm256_movemask_ps(pos) as u32).count_ones();
                let neg = _mm256_andnot_ps(pos, m);
                lo[r] = _mm256_min_ps(lo[r], _mm256_blendv_ps(inf, x, pos));
                hi[r] = _mm256_max_ps(hi[r], _mm256_blendv_ps(ninf, x, neg));
            }
            out.value[r] = count as f32;
        }
        out.lo = unorder(tree8!(lo, _mm256_min_ps));
        out.hi = unorder(tree8!(hi, _mm256_max_ps));
    }
    out
}

/// Which row each lane of [`adaptive8`]'s tree holds.
const AVX2_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// The tree's register, lanes put back in row order (lanes 8–15 zero).
///
/// # Safety
/// AVX.
#[inline(always)]
unsafe fn unorder(v: __m256) -> [f32; LANES] {
    let mut lanes = [0f32; 8];
    // SAFETY: an unaligned store of 8 f32 into an array of 8, on the
    // caller's AVX.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    let mut out = [0f32; LANES];
    for (i, &r) in AVX2_ORDER.iter().enumerate() {
        out[r] = lanes[i];
    }
    out
}

/// Eight rows of a block, as [`Rows`] for AVX2: the tail's lanes by a
/// mask register (AVX2's masked load takes the sign bit of each lane).
struct Rows8 {
    base: *const f32,
    labels: usize,
    full: usize,
    rem: usize,
}

impl Rows8 {
    fn new(block: &[f32], labels: usize) -> Self {
        Rows8 {
            base: block.as_ptr(),
            labels,
            full: labels / 8,
            rem: labels % 8,
        }
    }

    fn vectors(&self) -> usize {
        self.full + usize::from(self.rem != 0)
    }

    /// Row r's vector c (c = `full`: the tail, zeroed past L) and its
    /// mask, all ones in the lanes that hold values.
    ///
    /// # Safety
    /// AVX2; `base` holds 8 rows of `labels` values, r < 8 and
    /// c < [`Rows8::vectors`]: whole vectors lie inside the row, and the
    /// tail's masked load reads (and can fault on) only the lanes it keeps.
    #[inline(always)]
    unsafe fn load(&self, r: usize, c: usize) -> (__m256, __m256) {
        // SAFETY: as the caller's contract says.
        unsafe {
            let p = self.base.add(r * self.labels + 8 * c);
            if c < self.full {
                (
                    _mm256_loadu_ps(p),
                    _mm256_castsi256_ps(_mm256_set1_epi32(-1)),
                )
            } else {
                let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let m = _mm256_cmpgt_epi32(_mm256_set1_epi32(self.rem as i32), lane);
                (_mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))
            }
        }
    }
}

/// [`super::multilabel::binary_plogp_sum`] of one row on AVX-512: the same
/// f32 terms ([`super::lanes::plogp16`] is `plogp_fused`'s operations one
/// by one), sixteen labels at a time, summed in another order.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512DQ.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
#[inline]
pub(crate) unsafe fn binary_plogp_sum(row: &[f32]) -> f32 {
    use super::lanes::plogp16;
    let full = row.len() / LANES;
    let tail: __mmask16 = ((1u32 << (row.len() % LANES)) - 1) as __mmask16;
    let one = _mm512_set1_ps(1.0);
    let mut acc = _mm512_setzero_ps();
    // SAFETY: the features are this function's; whole vectors lie inside
    // `row`, and the tail's load keeps only the lanes inside it.
    unsafe {
        let base = row.as_ptr();
        for c in 0..=full {
            let (x, m) = if c < full {
                (_mm512_loadu_ps(base.add(LANES * c)), 0xffff)
            } else if tail != 0 {
                (_mm512_maskz_loadu_ps(tail, base.add(LANES * c)), tail)
            } else {
                break;
            };
            let terms = _mm512_add_ps(plogp16(x), plogp16(_mm512_sub_ps(one, x)));
            acc = _mm512_mask_add_ps(acc, m, acc, terms);
        }
        _mm512_reduce_add_ps(acc)
    }
}

/// [`binary_plogp_sum`] on AVX2: the same f32 terms
/// ([`super::lanes::plogp8`]), eight labels at a time, summed in another
/// order.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn binary_plogp_sum8(row: &[f32]) -> f32 {
    use super::lanes::plogp8;
    let rows = Rows8::new(row, row.len());
    // SAFETY: the features are this function's, and `rows` is one row,
    // `row` itself.
    unsafe {
        let one = _mm256_set1_ps(1.0);
        let mut acc = _mm256_setzero_ps();
        for c in 0..rows.vectors() {
            let (x, m) = rows.load(0, c);
            let terms = _mm256_add_ps(plogp8(x), plogp8(_mm256_sub_ps(one, x)));
            acc = _mm256_add_ps(acc, _mm256_and_ps(terms, m));
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::LogBase;
    use crate::score::multilabel::{
        FastBound, MultiSpec, adaptive_parts, binary_plogp_sum as binary_plogp_sum_rows,
        entropy_terms, mean_entropy_upper, multilabel_score, reduce_f32,
    };

    /// Values with every edge of the reductions: 0, ½, 1, their f32
    /// neighbours, subnormals, and a spread between.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        const EDGES: [f32; 9] = [
            0.0, 0.5, 1.0, 0.49999997, 0.50000006, 1e-40, 0.99999994, 0.25, 0.75,
        ];
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state.is_multiple_of(3) {
                    EDGES[(state >> 8) as usize % EDGES.len()]
                } else {
                    ((state >> 40) as f32) / (1u64 << 24) as f32
                }
            })
            .collect()
    }

    #[test]
    fn sixteen_rows_reduce_as_the_row_path_does() {
        if crate::backend::cpu::Isa::detect() != crate::backend::cpu::Isa::Avx512 {
            eprintln!("skipped: this CPU has no AVX-512, the lanes never run here");
            return;
        }
        // SAFETY: `Isa::Avx512` checked above.
        lanes_reduce_as_the_row_path_does(LANES, &MultiLabel::ALL, |s, b, l| unsafe {
            reduce(s, b, l)
        });
    }

    #[test]
    fn eight_rows_reduce_as_the_row_path_does_on_avx2() {
        if crate::backend::cpu::Isa::detect() == crate::backend::cpu::Isa::Scalar {
            eprintln!("skipped: this CPU has no AVX2, the lanes never run here");
            return;
        }
        // SAFETY: AVX2, FMA and POPCNT (`Isa::Avx2` or wider), checked.
        lanes_reduce_as_the_row_path_does(8, &EIGHT, |s, b, l| unsafe { reduce8(s, b, l) });
    }

    /// A reducer of `rows` rows at once against the row path, for
    /// `strategies`.
    fn lanes_reduce_as_the_row_path_does(
        rows: usize,
        strategies: &[MultiLabel],
        reduce: impl Fn(MultiLabel, &[f32], usize) -> Reduced,
    ) {
        for labels in [1, 3, 7, 8, 9, 15, 16, 17, 20, 32, 37] {
            let mut block = values(rows * labels, labels as u64);
            // Rows where the entropy bound is tight (every p = ½, and p a
            // rounding away from it) and where every term is 0.
            block[..labels].fill(0.5);
            for (j, x) in block[labels..2 * labels].iter_mut().enumerate() {
                *x = if j % 2 == 0 { 0.49999997 } else { 0.50000006 };
            }
            for (j, x) in block[2 * labels..3 * labels].iter_mut().enumerate() {
                *x = (j % 2) as f32;
            }
            for &strategy in strategies {
                let got = reduce(strategy, &block, labels);
                let spec = MultiSpec {
                    strategy,
                    log_base: LogBase::Two,
                    cardinality: 0.4 * labels as f64,
                    beta: 0.5,
                };
                let bound = FastBound::new(&spec, labels);
                for (r, row) in block.chunks_exact(labels).enumerate() {
                    let what = format!("{strategy}, L = {labels}, row {r}");
                    match strategy {
                        MultiLabel::Adaptive => {
                            let n = got.value[r] as usize;
                            let parts =
                                crate::score::multilabel::adaptive_from(n, got.lo[r], got.hi[r]);
                            assert_eq!(parts, adaptive_parts(row), "{what}");
                        }
                        MultiLabel::MeanEntropy => {
                            // Another order and approximate roots: the
                            // bound still holds and stays close.
                            let mut terms = Vec::new();
                            entropy_terms(row, &mut terms);
                            let by_rows = reduce_f32(strategy, &terms);
                            let off = (got.value[r] - by_rows).abs();
                            let near = 2e-4 * by_rows + labels as f32 * 2e-15;
                            assert!(off <= near, "{what}: {} against {by_rows}", got.value[r]);
                            let p: Vec<f64> = row.iter().map(|&x| x as f64).collect();
                            let exact = multilabel_score(&spec, &p);
                            assert!(bound.upper(got.value[r]) >= exact, "{what}");
                            // What the bound claims to cover: the roots'
                            // mean in f64, which the approximate roots miss
                            // by up to 2⁻¹⁴ each.
                            let roots: f64 = p.iter().map(|&x| (x * (1.0 - x)).sqrt()).sum();
                            let claim =
                                2.0 * std::f64::consts::LN_2 * roots / labels as f64 / 2f64.ln();
                            assert!(bound.upper(got.value[r]) >= claim, "{what}");
                            // The second bound: the row path's terms, summed
                            // in another order, on every instruction set
                            // this CPU has.
                            let narrow = binary_plogp_sum_rows(row);
                            let isa = crate::backend::cpu::Isa::detect();
                            let mut wide = vec![narrow];
                            if isa != crate::backend::cpu::Isa::Scalar {
                                // SAFETY: AVX2 and FMA, checked.
                                wide.push(unsafe { binary_plogp_sum8(row) });
                            }
                            if isa == crate::backend::cpu::Isa::Avx512 {
                                // SAFETY: `Isa::Avx512` checked.
                                wide.push(unsafe { binary_plogp_sum(row) });
                            }
                            for wide in wide {
                                let near = 2.0 * labels as f32 * f32::EPSILON * narrow.abs();
                                assert!(
                                    (wide - narrow).abs() <= near,
                                    "{what}: {wide} against {narrow}"
                                );
                                let upper = mean_entropy_upper(spec.log_base, labels, wide);
                                assert!(upper >= exact, "{what}");
                            }
                        }
                        MultiLabel::AvgScore => {
                            let p: Vec<f64> = row.iter().map(|&x| x as f64).collect();
                            let exact = multilabel_score(&spec, &p);
                            assert!(bound.upper(got.value[r]) >= exact, "{what}");
                            let by_rows = reduce_f32(strategy, row);
                            let near = (labels * labels) as f32 * f32::EPSILON;
                            assert!((got.value[r] - by_rows).abs() <= near, "{what}");
                        }
                        _ => assert_eq!(
                            got.value[r].to_bits(),
                            reduce_f32(strategy, row).to_bits(),
                            "{what}"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn the_tree_takes_every_lane_once() {
        // Level by level, each output lane names one input lane, and the
        // two tables of a level together name all 32 of x and y.
        for level in 0..4 {
            let mut seen = [false; 2 * LANES];
            for &i in FIRST[level].iter().chain(&SECOND[level]) {
                assert!(!seen[i as usize], "level {level}: lane {i} twice");
                seen[i as usize] = true;
            }
        }
    }
}
