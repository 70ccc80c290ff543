//! Why a row was rejected, with the value as stored.

use std::fmt;

/// A stored value in a message: as stored (f32 values print as f32).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Value(pub f64);

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value(v as f64)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let narrow = self.0 as f32;
        if narrow as f64 == self.0 || self.0.is_nan() {
            write!(f, "{narrow}")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Why a row was rejected.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RowProblem {
    /// A NaN or an infinity.
    NotFinite {
        /// The column.
        col: usize,
        /// The value, as stored.
        value: Value,
    },
    /// A negative probability.
    Negative {
        /// The column.
        col: usize,
        /// The value, as stored.
        value: Value,
    },
    /// A multi-label probability above 1.
    AboveOne {
        /// The column.
        col: usize,
        /// The value, as stored.
        value: Value,
    },
    /// A row sum too far from 1.
    SumOff {
        /// The row's sum.
        sum: f64,
        /// The tolerance.
        tol: f64,
    },
    /// Every probability is 0.
    ZeroSum,
    /// An embedding value too large for float32 distances to stay finite.
    TooLarge {
        /// The column.
        col: usize,
        /// The value, as stored.
        value: Value,
        /// The largest magnitude allowed.
        limit: f64,
    },
    /// An all-zero embedding, which has no direction for cosine similarity.
    ZeroNorm,
    /// A negative standard deviation in a (mean, std) regression row.
    NegativeStd {
        /// The value, as stored.
        value: Value,
    },
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowProblem::NotFinite { col, value } => {
                write!(
                    f,
                    "column {col} is {value} (NaN and infinities are not allowed)"
                )
            }
            RowProblem::Negative { col, value } => {
                write!(
                    f,
                    "column {col} is negative ({value}); probabilities must be ≥ 0 (pass --input logits for logits)"
                )
            }
            RowProblem::AboveOne { col, value } => write!(
                f,
                "column {col} is {value}; a multi-label probability must lie in [0, 1] (pass --input multilabel-logits for logits)"
            ),
            RowProblem::SumOff { sum, tol } => write!(
                f,
                "probabilities sum to {sum}, not 1 within {tol}; pass --renormalize to divide each row by its sum, or --input logits"
            ),
            RowProblem::ZeroSum => write!(
                f,
                "all probabilities are 0, so the row cannot be renormalized"
            ),
            RowProblem::TooLarge { col, value, limit } => write!(
                f,
                "column {col} is {value}; values must lie within ±{limit:e} so that squared distances stay finite"
            ),
            RowProblem::NegativeStd { value } => write!(
                f,
                "column 1 (the standard deviation) is negative ({value}); a (mean, std) row's std must be ≥ 0"
            ),
            RowProblem::ZeroNorm => write!(
                f,
                "every value is 0, so the row has no direction for cosine similarity; drop the row or give it a nonzero embedding"
            ),
        }
    }
}
