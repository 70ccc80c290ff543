//! Input forms: what a pool's rows hold, and how they are checked.

/// What the pool's rows hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputForm {
    /// Class probabilities. Each value must be finite and ≥ 0, and the row
    /// sum (f64, column order) within `sum_tol` of 1, unless `renormalize`,
    /// which divides every row by its sum instead (a zero sum is an error).
    Probs {
        /// Divide each row by its sum instead of checking it.
        renormalize: bool,
        /// How far a row's sum may be from 1.
        sum_tol: f64,
    },
    /// Logits: `p = softmax(z / temperature)`, computed stably in f64
    /// (`exp((z − max z) / T)`, then divided by the sum).
    Logits {
        /// The softmax temperature T.
        temperature: f64,
    },
    /// A multi-label pool: L independent outputs a row, one per label,
    /// for the multi-label strategies alone. Probabilities must lie in
    /// [0, 1]; logits z give p = σ(z) = 1 / (1 + e^−z), computed in f64.
    MultiLabel {
        /// The values are logits, not probabilities.
        logits: bool,
    },
    /// A regression model's outputs, for the regression strategies alone:
    /// real values, finite and within ±[`REGRESSION_LIMIT`].
    Regression(RegressionInput),
}

/// What a regression pool's rows hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegressionInput {
    /// One prediction a row (N, or N x 1).
    Predictions,
    /// (mean, standard deviation) a row (N x 2); the standard deviation
    /// must be ≥ 0.
    MeanStd,
    /// T predictions a row from an ensemble or MC-dropout passes, stored
    /// sample-major (T x N) or as T files of N.
    Samples,
}

impl RegressionInput {
    /// As the CLI and the Python package spell its form.
    pub fn name(self) -> &'static str {
        match self {
            RegressionInput::Predictions => "regression",
            RegressionInput::MeanStd => "regression-mean-std",
            RegressionInput::Samples => "regression-samples",
        }
    }
}

/// The largest magnitude a regression value may have: squared differences
/// of predictions and targets, times squared feature distances, then stay
/// far from overflow in f64.
pub const REGRESSION_LIMIT: f64 = 1e15;

impl InputForm {
    /// Probabilities, checked with float32 data's default row-sum
    /// tolerance (1e-3).
    pub fn probs() -> Self {
        InputForm::Probs {
            renormalize: false,
            sum_tol: default_sum_tol(false),
        }
    }

    /// A model's softmax output, as `next`, the loop and the ML backend
    /// read it: renormalized, since it sums to 1 only within float32
    /// rounding, so each score is defined on exactly what the model meant.
    pub const fn model_output() -> Self {
        InputForm::Probs {
            renormalize: true,
            sum_tol: 1e-3,
        }
    }

    /// Logits at softmax temperature `temperature`.
    pub fn logits(temperature: f64) -> Self {
        InputForm::Logits { temperature }
    }

    /// Probabilities stored as float16, whose values carry only 11
    /// significant bits (a 10-class row may be off by a few 1e-3): the
    /// default tolerance is 1e-2.
    pub fn probs_f16() -> Self {
        InputForm::Probs {
            renormalize: false,
            sum_tol: default_sum_tol(true),
        }
    }

    /// The default probabilities form for a pool with float16 data or
    /// not.
    pub fn probs_for(f16: bool) -> Self {
        if f16 {
            InputForm::probs_f16()
        } else {
            InputForm::probs()
        }
    }

    /// Why these settings cannot be used, if they cannot: a temperature
    /// that is not a positive finite number, or a row-sum tolerance outside
    /// [0, 1).
    pub fn check(&self) -> Result<(), String> {
        match *self {
            InputForm::Logits { temperature }
                if !(temperature.is_finite() && temperature > 0.0) =>
            {
                Err(format!(
                    "temperature must be a positive finite number, got {temperature}"
                ))
            }
            InputForm::Probs { sum_tol, .. } if !(0.0..1.0).contains(&sum_tol) => Err(format!(
                "the row-sum tolerance must be in [0, 1), got {sum_tol}"
            )),
            _ => Ok(()),
        }
    }

    /// Whether the rows are a multi-label pool's.
    pub fn is_multilabel(&self) -> bool {
        matches!(self, InputForm::MultiLabel { .. })
    }

    /// What a regression pool's rows hold, if they are one's.
    pub fn regression(&self) -> Option<RegressionInput> {
        match *self {
            InputForm::Regression(r) => Some(r),
            _ => None,
        }
    }

    /// Whether rows are used as stored, with no transformation: the case the
    /// fast kernels handle.
    pub fn is_plain_probs(&self) -> bool {
        matches!(
            self,
            InputForm::Probs {
                renormalize: false,
                ..
            }
        )
    }
}

/// The row-sum tolerance when none is given: looser for float16.
pub fn default_sum_tol(dtype_is_f16: bool) -> f64 {
    if dtype_is_f16 { 1e-2 } else { 1e-3 }
}
