//! How a stored row becomes canonical f64 probabilities, and what makes a
//! row invalid: the definitions every backend must agree with.

use std::fmt;

use crate::query::{InputForm, REGRESSION_LIMIT, RegressionInput, RowProblem, Value};

/// A value as a pool stores it: float32 (float16 widens to it exactly) or
/// float64, widened exactly to f64 for the canonical scores.
pub trait Stored: Copy + fmt::Display {
    /// The value, widened exactly.
    fn wide(self) -> f64;
}

impl Stored for f32 {
    #[inline(always)]
    fn wide(self) -> f64 {
        self as f64
    }
}

impl Stored for f64 {
    #[inline(always)]
    fn wide(self) -> f64 {
        self
    }
}

/// The one predicate for a stored probability: finite and ≥ 0 (−0.0 passes).
/// Written so NaN fails both comparisons.
// `&` rather than `contains`: no short-circuit, so the flat check vectorizes.
#[allow(clippy::manual_range_contains)]
#[inline(always)]
pub fn prob_ok(x: f32) -> bool {
    (x >= 0.0) & (x <= f32::MAX)
}

/// The one row-sum rule for probabilities (the sum in f64, column order).
#[inline(always)]
pub fn sum_ok(sum: f64, tol: f64) -> bool {
    (sum - 1.0).abs() <= tol
}

/// The first bad value of a probability row, with the reason.
pub fn prob_value_problem<T: Stored>(row: &[T]) -> Option<RowProblem> {
    row.iter().enumerate().find_map(|(col, &v)| {
        let value = Value(v.wide());
        if value.0 >= 0.0 && value.0.is_finite() {
            None
        } else if value.0.is_finite() {
            Some(RowProblem::Negative { col, value })
        } else {
            Some(RowProblem::NotFinite { col, value })
        }
    })
}

/// Canonical probabilities of one stored row, written to `out` (same
/// length). This is the definition every backend must agree with.
pub fn canonical_probs<T: Stored>(
    form: &InputForm,
    row: &[T],
    out: &mut [f64],
) -> Result<(), RowProblem> {
    debug_assert_eq!(row.len(), out.len());
    match *form {
        InputForm::Probs {
            renormalize,
            sum_tol,
        } => {
            if let Some(p) = prob_value_problem(row) {
                return Err(p);
            }
            let sum = row_sum(row);
            if renormalize {
                if sum == 0.0 {
                    return Err(RowProblem::ZeroSum);
                }
                for (o, &x) in out.iter_mut().zip(row) {
                    *o = x.wide() / sum;
                }
            } else {
                if !sum_ok(sum, sum_tol) {
                    return Err(RowProblem::SumOff { sum, tol: sum_tol });
                }
                for (o, &x) in out.iter_mut().zip(row) {
                    *o = x.wide();
                }
            }
        }
        InputForm::Logits { temperature } => {
            let mut max = f64::NEG_INFINITY;
            for (col, &z) in row.iter().enumerate() {
                let z = z.wide();
                if !z.is_finite() {
                    return Err(RowProblem::NotFinite {
                        col,
                        value: Value(z),
                    });
                }
                max = max.max(z);
            }
            let mut sum = 0.0;
            for (o, &z) in out.iter_mut().zip(row) {
                *o = ((z.wide() - max) / temperature).exp();
                sum += *o;
            }
            // sum ≥ 1: the max column contributes exp(0).
            for o in out.iter_mut() {
                *o /= sum;
            }
        }
        InputForm::MultiLabel { logits: false } => {
            for (col, (o, &x)) in out.iter_mut().zip(row).enumerate() {
                let value = Value(x.wide());
                if !value.0.is_finite() {
                    return Err(RowProblem::NotFinite { col, value });
                }
                if value.0 < 0.0 {
                    return Err(RowProblem::Negative { col, value });
                }
                if value.0 > 1.0 {
                    return Err(RowProblem::AboveOne { col, value });
                }
                *o = value.0;
            }
        }
        InputForm::MultiLabel { logits: true } => {
            for (col, (o, &z)) in out.iter_mut().zip(row).enumerate() {
                let z = z.wide();
                if !z.is_finite() {
                    return Err(RowProblem::NotFinite {
                        col,
                        value: Value(z),
                    });
                }
                *o = sigmoid(z);
            }
        }
        InputForm::Regression(kind) => regression_values(kind, row, out)?,
    }
    Ok(())
}

/// A regression row as stored, checked: every value finite and within
/// ±[`REGRESSION_LIMIT`], and a (mean, std) row's std ≥ 0.
fn regression_values<T: Stored>(
    kind: RegressionInput,
    row: &[T],
    out: &mut [f64],
) -> Result<(), RowProblem> {
    for (col, (o, &x)) in out.iter_mut().zip(row).enumerate() {
        let value = Value(x.wide());
        if !value.0.is_finite() {
            return Err(RowProblem::NotFinite { col, value });
        }
        if value.0.abs() > REGRESSION_LIMIT {
            return Err(RowProblem::TooLarge {
                col,
                value,
                limit: REGRESSION_LIMIT,
            });
        }
        if kind == RegressionInput::MeanStd && col == 1 && value.0 < 0.0 {
            return Err(RowProblem::NegativeStd { value });
        }
        *o = value.0;
    }
    Ok(())
}

/// σ(z) = 1 / (1 + e^−z), in the form whose exponential cannot overflow.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The row sum in f64, column order.
#[inline(always)]
pub fn row_sum<T: Stored>(row: &[T]) -> f64 {
    row.iter().map(|&x| x.wide()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable() {
        // candle's test: softmax([1234, 0]) must not overflow.
        let mut p = [0.0; 2];
        canonical_probs(
            &InputForm::Logits { temperature: 1.0 },
            &[1234.0, 0.0],
            &mut p,
        )
        .unwrap();
        assert_eq!(p[0], 1.0);
        assert!(p[1] >= 0.0 && p[1] < 1e-300);
        canonical_probs(&InputForm::Logits { temperature: 2.0 }, &[2.0, 0.0], &mut p).unwrap();
        // softmax([1, 0]) = [e/(e+1), 1/(e+1)]
        let e = std::f64::consts::E;
        assert!((p[0] - e / (e + 1.0)).abs() < 1e-15);
    }

    #[test]
    fn rejects_bad_rows() {
        let form = InputForm::probs();
        let mut p = [0.0; 3];
        let err = |row: &[f32], form: &InputForm| {
            canonical_probs(form, row, &mut [0.0; 3][..row.len()]).unwrap_err()
        };
        assert!(matches!(
            err(&[0.5, f32::NAN, 0.5], &form),
            RowProblem::NotFinite { col: 1, .. }
        ));
        assert!(matches!(
            err(&[0.5, -0.1, 0.6], &form),
            RowProblem::Negative { col: 1, .. }
        ));
        assert!(matches!(
            err(&[0.5, 0.1, 0.6], &form),
            RowProblem::SumOff { .. }
        ));
        assert!(matches!(
            err(&[f32::NEG_INFINITY, 0.1, 0.6], &form),
            RowProblem::NotFinite { col: 0, .. }
        ));
        let renorm = InputForm::Probs {
            renormalize: true,
            sum_tol: 1e-3,
        };
        assert_eq!(err(&[0.0, 0.0, 0.0], &renorm), RowProblem::ZeroSum);
        canonical_probs(&renorm, &[1.0, 2.0, 1.0], &mut p).unwrap();
        assert_eq!(p, [0.25, 0.5, 0.25]);
        canonical_probs(&form, &[-0.0, 0.5, 0.5], &mut p).unwrap();
    }

    impl RowProblem {
        fn col(&self) -> Option<usize> {
            match self {
                RowProblem::NotFinite { col, .. } | RowProblem::Negative { col, .. } => Some(*col),
                _ => None,
            }
        }
    }

    #[test]
    fn nan_reports_its_column() {
        let mut p = [0.0; 3];
        let e = canonical_probs(&InputForm::probs(), &[0.5, f32::NAN, 0.5], &mut p).unwrap_err();
        assert_eq!(e.col(), Some(1));
        assert!(e.to_string().contains("NaN"), "{e}");
    }
}
