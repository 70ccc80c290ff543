//! Stochastic batch acquisition (Kirsch et al., "Stochastic Batch
//! Acquisition: A Simple Baseline for Deep Active Learning", TMLR 2023):
//! instead of the k best rows, k rows drawn without replacement with
//! probabilities that grow with the score. The definitions of the keys are
//! in `crate::score::stochastic`.

use std::fmt;

/// How a row's chance grows with its score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StochasticKind {
    /// Probability ∝ v^β, v ≥ 0 the row's value (its score; 1 − margin
    /// for margin).
    Power,
    /// Probability ∝ exp(β·priority).
    Softmax,
    /// Probability ∝ rank^−β, rank 1 the most informative row of the pool.
    Softrank,
}

impl StochasticKind {
    /// Every kind.
    pub const ALL: [StochasticKind; 3] = [
        StochasticKind::Power,
        StochasticKind::Softmax,
        StochasticKind::Softrank,
    ];

    /// The name the CLI and the Python package use.
    pub fn name(self) -> &'static str {
        match self {
            StochasticKind::Power => "power",
            StochasticKind::Softmax => "softmax",
            StochasticKind::Softrank => "softrank",
        }
    }
}

impl fmt::Display for StochasticKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for StochasticKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StochasticKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown stochastic acquisition {s:?}; choose power, softmax or softrank")
            })
    }
}

/// A stochastic batch: the kind, and the inverse temperature β (> 0; as β
/// grows the picks become the plain top k, and β = ∞ is exactly it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stochastic {
    /// How a row's chance grows with its score.
    pub kind: StochasticKind,
    /// The inverse temperature.
    pub beta: f64,
}

impl Stochastic {
    /// `kind` at inverse temperature `beta`.
    pub fn new(kind: StochasticKind, beta: f64) -> Self {
        Stochastic { kind, beta }
    }

    /// An error message if β is not a number above 0 (∞ allowed).
    pub fn check(&self) -> Result<(), String> {
        if self.beta > 0.0 {
            Ok(())
        } else {
            Err(format!(
                "beta must be above 0 (it is {}); a larger beta follows the scores more closely, and beta = inf is the plain top k",
                self.beta
            ))
        }
    }

    /// [`Stochastic::check`], and that `query` has a score per row to draw
    /// from: not a strategy that picks a batch, nor a cold-start one.
    pub fn check_for(&self, query: super::Query) -> Result<(), String> {
        self.check()?;
        if query.picks_batch() || matches!(query, super::Query::Cold(_)) {
            return Err(format!(
                "{query} picks a batch itself; a stochastic batch draws from a row-wise, disagreement or multi-label strategy's scores"
            ));
        }
        Ok(())
    }

    /// Whether shards' parts merge exactly: a row's key depends only on
    /// its own score and index, except under softrank, whose rank is the
    /// whole pool's.
    pub fn per_row(&self) -> bool {
        self.kind != StochasticKind::Softrank
    }
}

impl fmt::Display for Stochastic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (beta {})", self.kind, self.beta)
    }
}
