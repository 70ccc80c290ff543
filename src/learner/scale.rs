//! Feature scaling, part of the model: the learner maps every input row
//! through `x' = (x − shift) / scale` (per column, in f32) before its first
//! layer, in training and in every prediction, and the statistics are saved
//! with the weights, so `predict`, `next` and `stream` apply exactly the
//! transform the model was trained with.
//!
//! Why the pool and not the labeled rows: the pool is what the model will
//! score, and a handful of labels (20 at the first round) gives poor
//! estimates of a column's spread. The statistics come from one streaming
//! pass in f64 (per-chunk two-pass moments merged with Chan's formula, in a
//! fixed order), so memory is O(columns) whatever the pool's size, and the
//! result does not depend on the thread count.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// What the learner does to its inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scale {
    /// `Standard`, except for uint8 images, which keep their [0, 1] scaling.
    #[default]
    Auto,
    /// Per-column mean 0, standard deviation 1 (population).
    Standard,
    /// Per-column minimum 0, maximum 1.
    MinMax,
    /// The features as given.
    None,
}

impl Scale {
    /// The transform to fit: `None` for no scaling. `unit_images` says the
    /// features were uint8 pixels already mapped to [0, 1].
    pub fn resolve(self, unit_images: bool) -> Option<ScaleKind> {
        match self {
            Scale::Auto if unit_images => None,
            Scale::Auto | Scale::Standard => Some(ScaleKind::Standard),
            Scale::MinMax => Some(ScaleKind::MinMax),
            Scale::None => None,
        }
    }

    /// The setting's name, as `--scale` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Auto => "auto",
            Scale::Standard => "standard",
            Scale::MinMax => "minmax",
            Scale::None => "none",
        }
    }
}

/// A fitted transform's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleKind {
    /// Mean 0 and population standard deviation 1.
    Standard,
    /// Minimum 0 and maximum 1.
    MinMax,
}

impl ScaleKind {
    /// The kind's name in a saved model.
    pub fn name(self) -> &'static str {
        match self {
            ScaleKind::Standard => "standard",
            ScaleKind::MinMax => "minmax",
        }
    }

    /// The kind `s` names.
    pub fn parse(s: &str) -> Option<ScaleKind> {
        match s {
            "standard" => Some(ScaleKind::Standard),
            "minmax" => Some(ScaleKind::MinMax),
            _ => None,
        }
    }
}

/// Per-column statistics of a set of rows, mergeable.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnStats {
    /// Rows seen.
    pub rows: u64,
    /// Each column's mean.
    pub mean: Vec<f64>,
    /// Sum of squared deviations from the mean.
    pub m2: Vec<f64>,
    /// Each column's smallest value.
    pub min: Vec<f64>,
    /// Each column's largest value.
    pub max: Vec<f64>,
}

/// Rows `a..e` of a matrix, lent in place or appended to the buffer (then
/// `None`): see [`ColumnStats::of_blocks`].
pub type LendRows<'a> = dyn Fn(usize, usize, &mut Vec<f32>) -> Option<&'a [f32]> + Sync + 'a;

impl ColumnStats {
    /// Statistics of no rows, `dim` columns.
    pub fn new(dim: usize) -> Self {
        ColumnStats {
            rows: 0,
            mean: vec![0.0; dim],
            m2: vec![0.0; dim],
            min: vec![f64::INFINITY; dim],
            max: vec![f64::NEG_INFINITY; dim],
        }
    }

    /// Columns.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The statistics of `x` (row-major, `dim` wide) by two passes over it.
    pub fn of_rows(x: &[f32], dim: usize) -> Self {
        let mut s = ColumnStats::new(dim);
        let n = x.len().checked_div(dim).unwrap_or(0);
        if n == 0 {
            return s;
        }
        s.rows = n as u64;
        for row in x.chunks_exact(dim) {
            for (j, &v) in row.iter().enumerate() {
                let v = v as f64;
                s.mean[j] += v;
                s.min[j] = s.min[j].min(v);
                s.max[j] = s.max[j].max(v);
            }
        }
        s.mean.iter_mut().for_each(|m| *m /= n as f64);
        for row in x.chunks_exact(dim) {
            for (j, &v) in row.iter().enumerate() {
                let d = v as f64 - s.mean[j];
                s.m2[j] += d * d;
            }
        }
        s
    }

    /// Adds `other`'s rows (Chan et al.'s pairwise update).
    pub fn merge(&mut self, other: &ColumnStats) {
        if other.rows == 0 {
            return;
        }
        if self.rows == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.rows as f64, other.rows as f64);
        let n = na + nb;
        for j in 0..self.dim() {
            let delta = other.mean[j] - self.mean[j];
            self.mean[j] += delta * nb / n;
            self.m2[j] += other.m2[j] + delta * delta * na * nb / n;
            self.min[j] = self.min[j].min(other.min[j]);
            self.max[j] = self.max[j].max(other.max[j]);
        }
        self.rows += other.rows;
    }

    /// One row, for streams: a one-row merge.
    pub fn push(&mut self, row: &[f32]) {
        self.merge(&ColumnStats::of_rows(row, self.dim()));
    }

    /// The statistics of the rows of `x` (row-major, `dim` wide), or of the
    /// listed `rows` only ([`ColumnStats::of_blocks`]).
    pub fn of_matrix(x: &[f32], dim: usize, rows: Option<&[usize]>) -> Self {
        let n = rows.map_or(x.len().checked_div(dim).unwrap_or(0), <[usize]>::len);
        ColumnStats::of_blocks(n, dim, &|a, e, g| match rows {
            None => Some(&x[a * dim..e * dim]),
            Some(rows) => {
                for &i in &rows[a..e] {
                    g.extend_from_slice(&x[i * dim..(i + 1) * dim]);
                }
                None
            }
        })
    }

    /// The statistics of `n` rows that `rows(a, e, buf)` lends in place or
    /// appends to `buf` (rows `a..e`, row-major): blocks of rows in
    /// parallel, a bounded group at a time, merged in block order (so extra
    /// memory is a block per thread, and the result the same on any thread
    /// count and from any source of the same rows).
    pub fn of_blocks<'a>(n: usize, dim: usize, rows: &LendRows<'a>) -> Self {
        const BLOCK: usize = 4096;
        const GROUP: usize = 64;
        let block = |b: usize| -> ColumnStats {
            let (a, e) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
            let mut g = Vec::new();
            match rows(a, e, &mut g) {
                Some(x) => ColumnStats::of_rows(x, dim),
                None => ColumnStats::of_rows(&g, dim),
            }
        };
        let mut s = ColumnStats::new(dim);
        let blocks = n.div_ceil(BLOCK);
        for first in (0..blocks).step_by(GROUP) {
            let partials: Vec<ColumnStats> = (first..(first + GROUP).min(blocks))
                .into_par_iter()
                .map(block)
                .collect();
            partials.iter().for_each(|p| s.merge(p));
        }
        s
    }

    /// One line naming the widest and narrowest columns when their ranges
    /// differ by more than `factor`: the sign of raw columns on unrelated
    /// scales (counts, money) fed to a learner with `--scale none`.
    pub fn range_warning(&self, factor: f64) -> Option<String> {
        let ranges: Vec<(usize, f64)> = (0..self.dim())
            .map(|j| (j, self.max[j] - self.min[j]))
            .filter(|(_, r)| r.is_finite() && *r > 0.0)
            .collect();
        let widest = ranges.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
        let narrowest = ranges.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
        (widest.1 > factor * narrowest.1).then(|| {
            format!(
                "feature columns are on very different scales: column {} spans {:.4} but column {} spans {:.4e} ({:.0}x); without scaling the learner may do much worse (try --scale standard)",
                widest.0,
                widest.1,
                narrowest.0,
                narrowest.1,
                widest.1 / narrowest.1
            )
        })
    }
}

/// A fitted per-column transform `x' = (x − shift) / scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaler {
    /// Standardizing or min-max.
    pub kind: ScaleKind,
    /// Subtracted from each column.
    pub shift: Vec<f32>,
    /// Never 0: a constant column gets 1.
    pub scale: Vec<f32>,
    /// Columns that were constant over the rows the statistics came from.
    pub constant: Vec<usize>,
}

impl Scaler {
    /// The transform of `kind` from `stats`.
    pub fn from_stats(kind: ScaleKind, stats: &ColumnStats) -> Result<Scaler> {
        if stats.rows == 0 {
            return Err(Error::Config(
                "feature scaling needs at least one row to estimate from".into(),
            ));
        }
        let mut constant = Vec::new();
        let (shift, scale) = (0..stats.dim())
            .map(|j| {
                let (shift, spread) = match kind {
                    ScaleKind::Standard => {
                        (stats.mean[j], (stats.m2[j] / stats.rows as f64).sqrt())
                    }
                    ScaleKind::MinMax => (stats.min[j], stats.max[j] - stats.min[j]),
                };
                // f32 is what the transform runs in: a spread that rounds to
                // 0 or to a subnormal would blow the column up.
                let spread = spread as f32;
                let spread = if spread.is_normal() {
                    spread
                } else {
                    constant.push(j);
                    1.0
                };
                (shift as f32, spread)
            })
            .unzip();
        Ok(Scaler {
            kind,
            shift,
            scale,
            constant,
        })
    }

    /// Fits `kind` on the rows of `x` (all, or those listed).
    pub fn fit(kind: ScaleKind, x: &[f32], dim: usize, rows: Option<&[usize]>) -> Result<Scaler> {
        Scaler::from_stats(kind, &ColumnStats::of_matrix(x, dim, rows))
    }

    /// Columns.
    pub fn dim(&self) -> usize {
        self.shift.len()
    }

    /// Transforms one row into `out`.
    #[inline]
    pub fn apply(&self, row: &[f32], out: &mut [f32]) {
        for (((o, &v), &s), &d) in out.iter_mut().zip(row).zip(&self.shift).zip(&self.scale) {
            *o = (v - s) / d;
        }
    }

    /// Transforms row-major rows in place.
    pub fn apply_in_place(&self, x: &mut [f32]) {
        for row in x.chunks_exact_mut(self.dim()) {
            for ((v, &s), &d) in row.iter_mut().zip(&self.shift).zip(&self.scale) {
                *v = (*v - s) / d;
            }
        }
    }

    /// A note for the user when columns were constant, or `None`.
    pub fn note(&self) -> Option<String> {
        if self.constant.is_empty() {
            return None;
        }
        let shown: Vec<String> = self
            .constant
            .iter()
            .take(8)
            .map(|c| c.to_string())
            .collect();
        let more = self.constant.len().saturating_sub(8);
        Some(format!(
            "{} feature column(s) are constant over the pool and left unscaled (scale 1): {}{}",
            self.constant.len(),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_blocks_equal_one_pass() {
        let dim = 3;
        let x: Vec<f32> = (0..3000)
            .map(|i| ((i * 7919) % 1013) as f32 * 0.37 - 40.0)
            .collect();
        let whole = ColumnStats::of_rows(&x, dim);
        let mut merged = ColumnStats::new(dim);
        for c in x.chunks(dim * 77) {
            merged.merge(&ColumnStats::of_rows(c, dim));
        }
        for j in 0..dim {
            assert!((whole.mean[j] - merged.mean[j]).abs() < 1e-9);
            assert!((whole.m2[j] - merged.m2[j]).abs() / whole.m2[j] < 1e-9);
            assert_eq!(whole.min[j], merged.min[j]);
            assert_eq!(whole.max[j], merged.max[j]);
        }
        let mut pushed = ColumnStats::new(dim);
        x.chunks(dim).for_each(|r| pushed.push(r));
        assert!((pushed.m2[1] - whole.m2[1]).abs() / whole.m2[1] < 1e-9);
    }

    #[test]
    fn standard_scaling_gives_zero_mean_unit_variance() {
        let x = [1.0f32, 10.0, 3.0, 30.0, 5.0, 50.0, 7.0, 70.0];
        let s = Scaler::fit(ScaleKind::Standard, &x, 2, None).unwrap();
        let mut z = x.to_vec();
        s.apply_in_place(&mut z);
        for j in 0..2 {
            let col: Vec<f64> = z.iter().skip(j).step_by(2).map(|&v| v as f64).collect();
            let mean = col.iter().sum::<f64>() / 4.0;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0;
            assert!(
                mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
                "{mean} {var}"
            );
        }
        let m = Scaler::fit(ScaleKind::MinMax, &x, 2, Some(&[1, 2])).unwrap();
        assert_eq!(
            (m.shift.clone(), m.scale.clone()),
            (vec![3.0, 30.0], vec![2.0, 20.0])
        );
    }

    #[test]
    fn constant_and_outlier_columns() {
        // Column 0 constant, column 1 one huge outlier among small values.
        let mut x = Vec::new();
        for i in 0..1000 {
            x.extend([4.0f32, if i == 500 { 1e6 } else { (i % 10) as f32 }]);
        }
        let s = Scaler::fit(ScaleKind::Standard, &x, 2, None).unwrap();
        assert_eq!(s.constant, vec![0]);
        assert_eq!(s.scale[0], 1.0);
        assert!(s.note().unwrap().contains("constant"));
        let mut z = x.clone();
        s.apply_in_place(&mut z);
        assert!(z.iter().all(|v| v.is_finite()));
        assert!(z.iter().step_by(2).all(|&v| v == 0.0));
        // The outlier dominates the spread but nothing overflows.
        assert!(z[1001] > 30.0);
        let m = Scaler::fit(ScaleKind::MinMax, &x, 2, None).unwrap();
        let mut z = x;
        m.apply_in_place(&mut z);
        assert!(z.iter().skip(1).step_by(2).all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn warns_on_ranges_far_apart() {
        let x = [0.0f32, 0.0, 1.0, 5000.0];
        let s = ColumnStats::of_rows(&x, 2);
        let w = s.range_warning(1000.0).unwrap();
        assert!(w.contains("column 1") && w.contains("column 0"), "{w}");
        assert!(
            ColumnStats::of_rows(&[0.0, 0.0, 1.0, 50.0], 2)
                .range_warning(1000.0)
                .is_none()
        );
    }

    #[test]
    fn empty_pool_is_an_error() {
        assert!(Scaler::fit(ScaleKind::Standard, &[], 3, None).is_err());
    }
}
