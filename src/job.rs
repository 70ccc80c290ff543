//! The one job type: what to select, for every query. The door
//! ([`crate::select()`]) takes it with the inputs the query needs; each
//! engine reads the fields its query uses.

use std::path::Path;

use crate::error::{Error, Result};
use crate::pool::Exclusions;
use crate::query::{
    DEFAULT_UNCERTAINTY_WEIGHT, InputForm, LogBase, Query, REGRESSION_LIMIT, Stochastic,
};

/// The purity ProbCover's chosen δ must reach by default (the paper's α).
pub const DEFAULT_PURITY: f64 = 0.95;

/// What to select: the query, its options, k and the rows never to pick.
///
/// ```
/// use alpool::{BatchStrategy, InputForm, Job, Strategy};
/// let rows = Job::new(Strategy::Entropy, InputForm::probs(), 100).seed(7);
/// let batch = Job::new(BatchStrategy::Badge, InputForm::logits(2.0), 50);
/// assert_eq!(rows.k, 100);
/// assert_eq!(batch.query.name(), "badge");
/// ```
#[derive(Clone, Debug)]
pub struct Job {
    /// The strategy.
    pub query: Query,
    /// What the probability rows hold and how they are checked.
    pub input: InputForm,
    /// Rows to select; `usize::MAX` (or anything ≥ N) ranks every row of a
    /// row-wise query. A batch query picks at most the selectable rows.
    pub k: usize,
    /// Rows never selected (already labeled); core-set's initial centres.
    pub exclusions: Exclusions,
    /// Entropy's log base.
    pub log_base: LogBase,
    /// Seeds the random strategy, BADGE's sampling and a stochastic
    /// batch's noise.
    pub seed: u64,
    /// Draw the k rows at random, favouring informative ones, instead of
    /// taking the k best (row-wise and disagreement queries).
    pub stochastic: Option<Stochastic>,
    /// Cluster-Margin: the lowest-margin rows clustered (0 = 10·k).
    pub candidates: usize,
    /// Cluster-Margin: clusters to form (0 = k).
    pub clusters: usize,
    /// BatchBALD: the configuration budget M, past which the joint
    /// entropy is sampled (0 = 10,000).
    pub configurations: usize,
    /// Rows per unit of parallel work, 0 = auto; results never depend on it.
    pub chunk_rows: u64,
    /// k-means (typiclust, kmeans, probcover's δ): Lloyd's assignments at
    /// most (0 = 100).
    pub iterations: usize,
    /// ProbCover: the ball radius δ (`None`: chosen by purity).
    pub delta: Option<f64>,
    /// ProbCover: the purity a chosen δ must reach.
    pub purity: f64,
    /// ProbCover: the k-means clusters (one per class) δ's purity is
    /// measured over (0: δ must be given).
    pub purity_classes: usize,
    /// Weights a row-wise strategy by information density: its
    /// informativeness times (mean cosine similarity to the pool)^β, from
    /// the embeddings (see [`crate::coldstart::density`]).
    pub density_beta: Option<f64>,
    /// Multi-label cardinality and adaptive: the labeled set's mean label
    /// count (the labels each labeled item carries, averaged).
    pub label_cardinality: Option<f64>,
    /// Multi-label adaptive: β, the weight of the separation margin's
    /// uncertainty against the cardinality inconsistency, in [0, 1].
    pub uncertainty_weight: f64,
    /// Regression `gsy` and `igs`: the labeled rows' targets (every row of
    /// `exclusions` has one).
    pub targets: Targets,
}

/// The labeled rows' regression targets: (global row, target), one per
/// row, ascending by row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Targets(Vec<(u64, f64)>);

impl Targets {
    /// The targets of the `labeled` rows, read from `column`, the pool's
    /// N targets in row order (unlabeled rows' entries are not read, so
    /// NaN may mark them). A labeled row past the column, or whose target
    /// is not a finite number within ±[`REGRESSION_LIMIT`], is an error
    /// naming it.
    pub fn of_labeled(column: &[f64], labeled: &Exclusions) -> Result<Targets> {
        let mut out = Vec::with_capacity(labeled.len());
        for &row in labeled.as_slice() {
            let Some(&y) = column.get(row as usize) else {
                return Err(Error::Config(format!(
                    "labeled row {row} has no target: the targets hold {} rows",
                    column.len()
                )));
            };
            if !(y.is_finite() && y.abs() <= REGRESSION_LIMIT) {
                return Err(Error::Config(format!(
                    "labeled row {row} has target {y}; a labeled row's target must be a finite number within ±{REGRESSION_LIMIT:e} (mark unlabeled rows NaN and leave them out of the labeled rows)"
                )));
            }
            out.push((row, y));
        }
        Ok(Targets(out))
    }

    /// The rows with a target in `column`, anything but NaN: the labeled
    /// rows when none are named (NaN marks an unlabeled row, as
    /// scikit-activeml's `MISSING_LABEL`; an infinity is a labeled row's
    /// bad target, refused by [`Targets::of_labeled`]).
    pub fn labeled_rows(column: &[f64]) -> Exclusions {
        let rows = column.iter().enumerate().filter(|(_, y)| !y.is_nan());
        Exclusions::new(rows.map(|(r, _)| r as u64).collect())
    }

    /// Row `row`'s target, if it has one.
    pub fn get(&self, row: u64) -> Option<f64> {
        let at = self.0.binary_search_by_key(&row, |&(r, _)| r).ok()?;
        Some(self.0[at].1)
    }

    /// How many rows have a target.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no row has one.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Job {
    /// `query` for the `k` best rows: no exclusions, natural logarithms,
    /// seed 0, default Cluster-Margin sizes, automatic chunking.
    pub fn new(query: impl Into<Query>, input: InputForm, k: usize) -> Job {
        Job {
            query: query.into(),
            input,
            k,
            exclusions: Exclusions::default(),
            log_base: LogBase::E,
            seed: 0,
            stochastic: None,
            candidates: 0,
            clusters: 0,
            configurations: 0,
            chunk_rows: 0,
            iterations: 0,
            delta: None,
            purity: DEFAULT_PURITY,
            purity_classes: 0,
            density_beta: None,
            label_cardinality: None,
            uncertainty_weight: DEFAULT_UNCERTAINTY_WEIGHT,
            targets: Targets::default(),
        }
    }

    /// With `seed`.
    pub fn seed(mut self, seed: u64) -> Job {
        self.seed = seed;
        self
    }

    /// With entropy's log base `base`.
    pub fn log_base(mut self, base: LogBase) -> Job {
        self.log_base = base;
        self
    }

    /// Drawing a stochastic batch (see [`crate::score::stochastic`]).
    pub fn stochastic(mut self, stochastic: Stochastic) -> Job {
        self.stochastic = Some(stochastic);
        self
    }

    /// Refuses exclusions past `rows` rows of `what` ("the pool's", read
    /// from `path`) and a k beyond the rows left, for `strategy`, which
    /// picks distinct rows.
    pub(crate) fn check_picks(
        &self,
        (rows, what, path): (u64, &str, &Path),
        strategy: &'static str,
    ) -> Result<()> {
        if let Some(&bad) = self.exclusions.as_slice().last()
            && bad >= rows
        {
            return Err(Error::Config(format!(
                "excluded row {bad} is past {what} {rows} rows"
            )));
        }
        let excluded = self.exclusions.len() as u64;
        let selectable = rows - excluded.min(rows);
        if self.k as u64 > selectable {
            return Err(Error::TooFewRows {
                path: path.into(),
                strategy,
                k: self.k,
                selectable,
                rows,
                excluded,
            });
        }
        Ok(())
    }

    /// With the pool's regression targets, `column` (N values in row
    /// order, NaN for unlabeled rows): the labeled rows (the exclusions,
    /// or, when none are set, every row whose target is not NaN, as
    /// scikit-activeml reads `y`) take their targets from it.
    pub fn with_targets(mut self, column: &[f64]) -> Result<Job> {
        if self.exclusions.is_empty() {
            self.exclusions = Targets::labeled_rows(column);
        }
        self.targets = Targets::of_labeled(column, &self.exclusions)?;
        Ok(self)
    }

    /// Never selecting `rows`.
    pub fn exclude(mut self, rows: Exclusions) -> Job {
        self.exclusions = rows;
        self
    }
}
