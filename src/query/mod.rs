//! What a query is: its strategy, the options that define its score, the
//! inputs it reads, and the problems a row can have. A leaf: it imports
//! nothing else from the crate, so every layer can name a query.
//!
//! The formulas themselves are defined once, in [`mod@crate::score`]
//! (row-wise) and [`mod@crate::batch`] (batch-aware); [`Query::needs`] says which inputs a
//! query reads, and the one door ([`crate::select()`]) checks them against
//! what it was given.

mod form;
mod method;
mod problem;
mod stochastic;

use std::fmt;

pub use form::{InputForm, REGRESSION_LIMIT, RegressionInput, default_sum_tol};
pub use method::Method;
pub use problem::{RowProblem, Value};
pub use stochastic::{Stochastic, StochasticKind};

/// A query strategy that scores each row on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// 1 − max p; higher is more informative.
    LeastConfidence,
    /// p(1) − p(2) of the two largest; lower is more informative.
    Margin,
    /// −Σ p log p; higher is more informative.
    Entropy,
    /// p(2) / p(1); higher is more informative.
    Ratio,
    /// A seeded uniform draw per row: the baseline.
    Random,
}

impl Strategy {
    /// Every row-wise strategy.
    pub const ALL: [Strategy; 5] = [
        Strategy::LeastConfidence,
        Strategy::Margin,
        Strategy::Entropy,
        Strategy::Ratio,
        Strategy::Random,
    ];

    /// The name the CLI and the Python package use.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::LeastConfidence => "least-confidence",
            Strategy::Margin => "margin",
            Strategy::Entropy => "entropy",
            Strategy::Ratio => "ratio",
            Strategy::Random => "random",
        }
    }

    /// The strategy named `name` ("least-confidence" or "least_confidence",
    /// "margin", ...), as the CLI and the Python package spell them.
    pub fn from_name(name: &str) -> Option<Strategy> {
        let name = name.replace('_', "-");
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Margin and ratio compare the two largest probabilities.
    pub fn min_classes(self) -> usize {
        match self {
            Strategy::Margin | Strategy::Ratio => 2,
            _ => 1,
        }
    }

    /// Whether a *lower* score is more informative.
    pub fn lower_is_better(self) -> bool {
        matches!(self, Strategy::Margin)
    }

    /// Priority (higher = more informative) of a score. Exact: a negation.
    #[inline]
    pub fn priority(self, score: f64) -> f64 {
        // `0.0 - x` rather than `-x` so a zero margin has priority +0.0.
        if self.lower_is_better() {
            0.0 - score
        } else {
            score
        }
    }

    /// The inverse of [`Strategy::priority`].
    #[inline]
    pub fn score(self, priority: f64) -> f64 {
        self.priority(priority)
    }
}

/// A batch-aware strategy: it picks a diverse batch rather than the k
/// individually best rows (see [`mod@crate::batch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BatchStrategy {
    /// BADGE: k-means++ seeding on gradient embeddings.
    Badge,
    /// Core-set: k-center greedy over the embeddings.
    Coreset,
    /// Cluster-Margin: low-margin candidates, clustered, round-robin.
    ClusterMargin,
    /// BatchBALD: greedy in the batch's mutual information with the model,
    /// from T samples per row.
    BatchBald,
}

impl BatchStrategy {
    /// Every batch strategy.
    pub const ALL: [BatchStrategy; 4] = [
        BatchStrategy::Badge,
        BatchStrategy::Coreset,
        BatchStrategy::ClusterMargin,
        BatchStrategy::BatchBald,
    ];

    /// The name the CLI and the Python package use.
    pub fn name(self) -> &'static str {
        match self {
            BatchStrategy::Badge => "badge",
            BatchStrategy::Coreset => "coreset",
            BatchStrategy::ClusterMargin => "cluster-margin",
            BatchStrategy::BatchBald => "batchbald",
        }
    }
}

/// A disagreement strategy: it scores each row from T samples of its class
/// probabilities (MC-dropout passes, or the members of a committee), with
/// higher meaning more disagreement, so more informative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Disagreement {
    /// BALD: `H[p̄] − (1/T) Σ_t H[p_t]`, the mutual information between the
    /// prediction and the model (Houlsby et al. 2011; Gal et al. 2017).
    Bald,
    /// The mean over classes of the population standard deviation over
    /// samples (Kampffmeyer et al. 2016).
    MeanStd,
    /// 1 − f_m / T, f_m the samples' votes for the modal class (Freeman
    /// 1965).
    VariationRatio,
    /// The entropy of the samples' vote fractions (Dagan and Engelson 1995).
    VoteEntropy,
    /// The entropy of the mean prediction p̄.
    ConsensusEntropy,
    /// (1/T) Σ_t KL(p_t ‖ p̄) (McCallum and Nigam 1998): equal to BALD in
    /// exact arithmetic.
    KlMean,
    /// max_t KL(p_t ‖ p̄): modAL's `KL_max_disagreement`.
    KlMax,
}

impl Disagreement {
    /// Every disagreement strategy.
    pub const ALL: [Disagreement; 7] = [
        Disagreement::Bald,
        Disagreement::MeanStd,
        Disagreement::VariationRatio,
        Disagreement::VoteEntropy,
        Disagreement::ConsensusEntropy,
        Disagreement::KlMean,
        Disagreement::KlMax,
    ];

    /// The name the CLI and the Python package use.
    pub fn name(self) -> &'static str {
        match self {
            Disagreement::Bald => "bald",
            Disagreement::MeanStd => "mean-std",
            Disagreement::VariationRatio => "variation-ratio",
            Disagreement::VoteEntropy => "vote-entropy",
            Disagreement::ConsensusEntropy => "consensus-entropy",
            Disagreement::KlMean => "kl-mean",
            Disagreement::KlMax => "kl-max",
        }
    }

    /// The samples it needs: one gives a mean prediction but no
    /// disagreement, so only the consensus entropy reads it.
    pub fn min_samples(self) -> usize {
        match self {
            Disagreement::ConsensusEntropy => 1,
            _ => 2,
        }
    }
}

/// A representative (cold-start) strategy: it reads embeddings alone, so
/// it can choose the first batch before any label or model exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ColdStart {
    /// TypiClust (Hacohen et al. 2022): the most typical row of each of the
    /// largest clusters holding no labeled row.
    Typiclust,
    /// ProbCover (Yehuda et al. 2022): greedy maximum coverage of δ-balls.
    Probcover,
    /// MaxHerding (Bae, Noh and Sutherland 2024): greedy maximum coverage
    /// under a Gaussian kernel of width σ.
    Maxherding,
    /// The unlabeled row nearest each k-means centre.
    Kmeans,
    /// Information density alone: the mean cosine similarity to the pool
    /// (Settles and Craven 2008).
    Density,
}

impl ColdStart {
    /// Every representative strategy.
    pub const ALL: [ColdStart; 5] = [
        ColdStart::Typiclust,
        ColdStart::Probcover,
        ColdStart::Maxherding,
        ColdStart::Kmeans,
        ColdStart::Density,
    ];

    /// The name the CLI and the Python package use.
    pub fn name(self) -> &'static str {
        match self {
            ColdStart::Typiclust => "typiclust",
            ColdStart::Probcover => "probcover",
            ColdStart::Maxherding => "maxherding",
            ColdStart::Kmeans => "kmeans",
            ColdStart::Density => "density",
        }
    }

    /// One line for `--help` and the docs.
    pub fn summary(self) -> &'static str {
        match self {
            ColdStart::Typiclust => {
                "TypiClust: k-means into |labeled| + k clusters; the most typical row (1 / mean distance to its 20 nearest neighbours) of each largest cluster with no labeled row; embeddings alone, no labels needed"
            }
            ColdStart::Probcover => {
                "ProbCover: greedy maximum coverage of δ-balls (--delta, or chosen for purity ≥ --purity over --classes k-means clusters); embeddings alone"
            }
            ColdStart::Maxherding => {
                "MaxHerding: greedy maximum coverage Σ_y max k(s, y) under the Gaussian kernel exp(−d²/(2σ²)) (σ from --delta, or chosen as ProbCover's δ by purity over --classes k-means clusters); embeddings alone"
            }
            ColdStart::Kmeans => {
                "the unlabeled row nearest each k-means centre (|labeled| + k clusters): a coverage baseline; embeddings alone"
            }
            ColdStart::Density => {
                "information density: mean cosine similarity to the pool; with another strategy, --density-beta weights it"
            }
        }
    }
}

/// A multi-label strategy: it scores a row of L independent sigmoid
/// outputs p_j = P(label j applies), one per label (`InputForm::MultiLabel`).
/// The canonical definitions are in `score::multilabel`; "positive" means
/// p_j > 0.5 throughout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MultiLabel {
    /// The mean over labels of the binary entropy h(p_j); higher is more
    /// informative.
    MeanEntropy,
    /// The largest binary entropy over the labels.
    MaxEntropy,
    /// The smallest |p_j − 0.5| over the labels; lower is more informative.
    MinMargin,
    /// Label cardinality inconsistency (Li and Guo 2013; small-text's
    /// `LabelCardinalityInconsistency`): |#positive − the labeled set's mean
    /// label count|.
    Cardinality,
    /// Li and Guo 2013's combination, with the paper's separation margin
    /// (smallest positive p minus largest non-positive p):
    /// (1 / max(margin, 0.01))^β · inconsistency^(1 − β).
    Adaptive,
    /// modAL's `avg_score`: the mean of p_j · (ŷ_j − ½), ŷ_j = [p_j > 0.5].
    AvgScore,
    /// modAL's `max_score`: the largest p_j · (ŷ_j − ½).
    MaxScore,
}

/// Adaptive's β when none is given: uncertainty and inconsistency weigh
/// the same (small-text's default).
pub const DEFAULT_UNCERTAINTY_WEIGHT: f64 = 0.5;

impl MultiLabel {
    /// Every multi-label strategy.
    pub const ALL: [MultiLabel; 7] = [
        MultiLabel::MeanEntropy,
        MultiLabel::MaxEntropy,
        MultiLabel::MinMargin,
        MultiLabel::Cardinality,
        MultiLabel::Adaptive,
        MultiLabel::AvgScore,
        MultiLabel::MaxScore,
    ];

    /// The name the CLI and the Python package use.
    pub fn name(self) -> &'static str {
        match self {
            MultiLabel::MeanEntropy => "mean-entropy",
            MultiLabel::MaxEntropy => "max-entropy",
            MultiLabel::MinMargin => "min-margin",
            MultiLabel::Cardinality => "cardinality",
            MultiLabel::Adaptive => "adaptive",
            MultiLabel::AvgScore => "avg-score",
            MultiLabel::MaxScore => "max-score",
        }
    }

    /// Whether it reads the labeled set's mean label count.
    pub fn needs_cardinality(self) -> bool {
        matches!(self, MultiLabel::Cardinality | MultiLabel::Adaptive)
    }
}

/// A regression strategy: the pool's rows are a regression model's
/// predictions (`InputForm::Regression`), not class probabilities. The
/// canonical definitions are in `score::regression` and `batch::greedy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Regression {
    /// The population standard deviation of T predictions (an ensemble or
    /// MC-dropout passes), or the given standard deviation of a (mean,
    /// standard deviation) row; higher is more informative.
    Std,
    /// Greedy sampling in the feature space (Wu, Lin and Huang 2019): the
    /// row farthest from its nearest labeled or picked row.
    Gsx,
    /// Greedy sampling in the output space: the row whose prediction is
    /// farthest from its nearest labeled target (a picked row's target is
    /// its prediction until it is labeled).
    Gsy,
    /// Improved greedy sampling: the largest min over labeled and picked
    /// rows of (feature distance · output distance).
    Igs,
    /// Expected model change maximization (Cai et al. 2013): the mean
    /// absolute difference between T ensemble predictions and the model's,
    /// times the norm of the row's features.
    Emcm,
}

impl Regression {
    /// Every regression strategy.
    pub const ALL: [Regression; 5] = [
        Regression::Std,
        Regression::Gsx,
        Regression::Gsy,
        Regression::Igs,
        Regression::Emcm,
    ];

    /// The name the CLI and the Python package use.
    pub fn name(self) -> &'static str {
        match self {
            Regression::Std => "std",
            Regression::Gsx => "gsx",
            Regression::Gsy => "gsy",
            Regression::Igs => "igs",
            Regression::Emcm => "emcm",
        }
    }

    /// One line on what it does, for `--help` and the docs.
    pub fn summary(self) -> &'static str {
        match self {
            Regression::Std => {
                "regression: the population standard deviation of T predictions (--input regression-samples, T x N), or the std column of (mean, std) rows (--input regression-mean-std)"
            }
            Regression::Gsx => {
                "regression: greedy sampling in feature space (Wu et al. 2019): the row farthest from every labeled (--exclude) and picked row; embeddings alone"
            }
            Regression::Gsy => {
                "regression: greedy sampling in output space: the prediction farthest from every labeled row's target (--targets) and picked row's prediction"
            }
            Regression::Igs => {
                "regression: improved greedy sampling: the largest min over labeled and picked rows of feature distance × output distance (--embeddings, --targets)"
            }
            Regression::Emcm => {
                "regression: expected model change (Cai et al. 2013): mean |ensemble prediction − the model's| (--samples, T x N; the pool: the model's N predictions) × ‖features‖ (--embeddings)"
            }
        }
    }

    /// Whether it reads the labeled rows' targets (`Job::targets`).
    pub fn needs_targets(self) -> bool {
        matches!(self, Regression::Gsy | Regression::Igs)
    }
}

impl fmt::Display for Regression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Regression> for Query {
    fn from(r: Regression) -> Query {
        Query::Regress(r)
    }
}

impl fmt::Display for MultiLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<MultiLabel> for Query {
    fn from(m: MultiLabel) -> Query {
        Query::Multi(m)
    }
}

impl fmt::Display for ColdStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ColdStart> for Query {
    fn from(c: ColdStart) -> Query {
        Query::Cold(c)
    }
}

/// Any query strategy: one that scores each row on its own, a batch-aware
/// one, one that scores each row from T samples, or a representative one
/// over embeddings alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Query {
    /// A strategy that scores each row on its own.
    Score(Strategy),
    /// A strategy that picks a diverse batch.
    Batch(BatchStrategy),
    /// A strategy that scores each row from T samples of its probabilities.
    Disagree(Disagreement),
    /// A representative strategy over embeddings alone (cold start).
    Cold(ColdStart),
    /// A strategy over a multi-label pool's sigmoid outputs.
    Multi(MultiLabel),
    /// A strategy over a regression model's predictions.
    Regress(Regression),
}

/// An input a query can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// N x C class probabilities or logits: a pool, or a model with its
    /// feature files, which makes them.
    Probs,
    /// N x D embeddings, one row per pool row (or the last hidden layer of
    /// a model given with its features).
    Embeddings,
    /// T samples of N x C probabilities (MC-dropout passes or committee
    /// members).
    Samples,
}

impl Input {
    /// The input as a user gives it, on the command line and in Python.
    pub fn how_to_give(self) -> &'static str {
        match self {
            Input::Probs => {
                "class probabilities: a pool (POOL.npy, or --model M --features X.npy; probs= or model= and features= in Python)"
            }
            Input::Embeddings => {
                "embeddings: --embeddings E.npy (embeddings= in Python), one row per pool row"
            }
            Input::Samples => {
                "T samples of the probabilities: --samples S.npy (T x N x C, or N x T x C with --layout ntc) or T files of N x C (samples= in Python), or a committee: several --model files with --features"
            }
        }
    }

    /// The flag (or argument) that gives it, for "remove it" messages.
    pub fn flag(self) -> &'static str {
        match self {
            Input::Probs => "the pool (POOL.npy, probs=)",
            Input::Embeddings => "--embeddings (embeddings=)",
            Input::Samples => "--samples (samples=)",
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Input::Probs => "probabilities",
            Input::Embeddings => "embeddings",
            Input::Samples => "samples",
        })
    }
}

/// How a query uses one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// It cannot run without it.
    Required,
    /// It reads it when given (core-set checks the pool's rows against the
    /// embeddings'), and runs without it.
    Optional,
    /// It never reads it: giving it is a mistake worth naming.
    Unused,
}

/// Which inputs a query reads ([`Query::needs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// Probabilities or logits.
    pub probs: Use,
    /// Embeddings.
    pub embeddings: Use,
    /// T samples of the probabilities.
    pub samples: Use,
}

impl Needs {
    /// Every input, in the order messages name them.
    pub const INPUTS: [Input; 3] = [Input::Probs, Input::Embeddings, Input::Samples];

    /// How the query uses `input`.
    pub fn of(&self, input: Input) -> Use {
        match input {
            Input::Probs => self.probs,
            Input::Embeddings => self.embeddings,
            Input::Samples => self.samples,
        }
    }
}

impl Query {
    /// Every strategy: row-wise, batch-aware, disagreement, then
    /// representative.
    pub fn all() -> Vec<Query> {
        let rows = Strategy::ALL.into_iter().map(Query::Score);
        let batch = BatchStrategy::ALL.into_iter().map(Query::Batch);
        let samples = Disagreement::ALL.into_iter().map(Query::Disagree);
        let cold = ColdStart::ALL.into_iter().map(Query::Cold);
        let multi = MultiLabel::ALL.into_iter().map(Query::Multi);
        let regression = Regression::ALL.into_iter().map(Query::Regress);
        rows.chain(batch)
            .chain(samples)
            .chain(cold)
            .chain(multi)
            .chain(regression)
            .collect()
    }

    /// The name the CLI and the Python package use.
    pub fn name(self) -> &'static str {
        match self {
            Query::Score(s) => s.name(),
            Query::Batch(b) => b.name(),
            Query::Disagree(d) => d.name(),
            Query::Cold(c) => c.name(),
            Query::Multi(m) => m.name(),
            Query::Regress(r) => r.name(),
        }
    }

    /// The strategy named `name`, as the CLI and the Python package spell it
    /// (`_` reads as `-`).
    pub fn from_name(name: &str) -> Option<Query> {
        let name = name.replace('_', "-");
        Query::all().into_iter().find(|q| q.name() == name)
    }

    /// Whether a *lower* score is more informative (margin, min-margin).
    pub fn lower_is_better(self) -> bool {
        matches!(self, Query::Score(s) if s.lower_is_better())
            || self == Query::Multi(MultiLabel::MinMargin)
    }

    /// Whether it scores a multi-label pool (`InputForm::MultiLabel`).
    pub fn is_multilabel(self) -> bool {
        matches!(self, Query::Multi(_))
    }

    /// Whether it picks a batch from the whole pool (a pick depends on the
    /// picks before it), so it has no per-row score, no parts to merge
    /// and no stochastic batch.
    pub fn picks_batch(self) -> bool {
        matches!(
            self,
            Query::Batch(_) | Query::Regress(Regression::Gsx | Regression::Gsy | Regression::Igs)
        )
    }

    /// Whether each row has a score of its own (row-wise, disagreement,
    /// multi-label, a regression spread): the k best merge from blocks and
    /// shards, and a stochastic batch can draw from the scores.
    pub fn scores_rows(self) -> bool {
        matches!(
            self,
            Query::Score(_)
                | Query::Disagree(_)
                | Query::Multi(_)
                | Query::Regress(Regression::Std)
        )
    }

    /// Whether it reads a regression model's predictions
    /// (`InputForm::Regression`).
    pub fn is_regression(self) -> bool {
        matches!(self, Query::Regress(_))
    }

    /// Priority (higher = more informative) of a score: the score, negated
    /// where lower is better.
    #[inline]
    pub fn priority(self, score: f64) -> f64 {
        // `0.0 - x` rather than `-x` so a zero margin has priority +0.0.
        if self.lower_is_better() {
            0.0 - score
        } else {
            score
        }
    }

    /// One line on what the query does, for `--help` and the docs.
    pub fn summary(self) -> &'static str {
        match self {
            Query::Score(Strategy::LeastConfidence) => "1 − max p; higher is more informative",
            Query::Score(Strategy::Margin) => {
                "p(1) − p(2) of the two largest; smaller is more informative"
            }
            Query::Score(Strategy::Entropy) => {
                "−Σ p log p (base from --log-base); higher is more informative"
            }
            Query::Score(Strategy::Ratio) => "p(2) / p(1); higher is more informative",
            Query::Score(Strategy::Random) => "a uniform draw per row from --seed: the baseline",
            Query::Batch(BatchStrategy::Badge) => {
                "BADGE: k-means++ seeding on the gradient embeddings (onehot(ŷ) − p) ⊗ e, uncertain and diverse; reads embeddings (--embeddings, or a model's last hidden layer)"
            }
            Query::Batch(BatchStrategy::Coreset) => {
                "core-set: k-center greedy over the embeddings from the labeled rows (--exclude); reads embeddings alone"
            }
            Query::Batch(BatchStrategy::ClusterMargin) => {
                "Cluster-Margin: the lowest-margin rows (10·k, or --candidates), clustered (k, or --clusters), picked round-robin; reads embeddings"
            }
            Query::Batch(BatchStrategy::BatchBald) => {
                "BatchBALD: greedy in the batch's joint mutual information with the model over T samples (--samples); exact up to --configurations, then sampled"
            }
            Query::Disagree(d) => match d {
                Disagreement::Bald => {
                    "BALD: H[p̄] − mean_t H[p_t] over T samples (--samples): the mutual information between prediction and model"
                }
                Disagreement::MeanStd => {
                    "mean over classes of the standard deviation over T samples (--samples)"
                }
                Disagreement::VariationRatio => {
                    "1 − (votes for the modal class) / T over T samples (--samples)"
                }
                Disagreement::VoteEntropy => "entropy of the T samples' vote fractions (--samples)",
                Disagreement::ConsensusEntropy => "entropy of the mean of T samples (--samples)",
                Disagreement::KlMean => {
                    "mean over T samples (--samples) of KL(p_t ‖ p̄); equals BALD in exact arithmetic"
                }
                Disagreement::KlMax => "largest KL(p_t ‖ p̄) over T samples (--samples)",
            },
            Query::Cold(c) => c.summary(),
            Query::Multi(m) => match m {
                MultiLabel::MeanEntropy => {
                    "multi-label: mean over labels of the binary entropy of p_j (base from --log-base); higher is more informative"
                }
                MultiLabel::MaxEntropy => {
                    "multi-label: the largest binary entropy over the labels; higher is more informative"
                }
                MultiLabel::MinMargin => {
                    "multi-label: the smallest |p_j − 0.5| over the labels; smaller is more informative"
                }
                MultiLabel::Cardinality => {
                    "multi-label: |labels predicted (p_j > 0.5) − the labeled set's mean label count (--label-cardinality)|, as small-text"
                }
                MultiLabel::Adaptive => {
                    "multi-label: Li and Guo 2013: (1 / max(separation margin, 0.01))^β · cardinality inconsistency^(1−β), β from --uncertainty-weight"
                }
                MultiLabel::AvgScore => {
                    "multi-label: modAL's avg_score, the mean of p_j·(ŷ_j − ½); higher first"
                }
                MultiLabel::MaxScore => {
                    "multi-label: modAL's max_score, the largest p_j·(ŷ_j − ½); higher first"
                }
            },
            Query::Regress(r) => r.summary(),
        }
    }

    /// Which inputs the query reads: the door refuses a request that lacks
    /// a required one or gives an unused one, naming it.
    pub fn needs(self) -> Needs {
        use Use::{Optional, Required, Unused};
        match self {
            Query::Score(_) | Query::Multi(_) => Needs {
                probs: Required,
                embeddings: Unused,
                samples: Unused,
            },
            Query::Batch(BatchStrategy::Coreset) => Needs {
                probs: Optional,
                embeddings: Required,
                samples: Unused,
            },
            Query::Batch(BatchStrategy::Badge | BatchStrategy::ClusterMargin) => Needs {
                probs: Required,
                embeddings: Required,
                samples: Unused,
            },
            Query::Disagree(_) | Query::Batch(BatchStrategy::BatchBald) => Needs {
                probs: Unused,
                embeddings: Unused,
                samples: Required,
            },
            Query::Cold(_) | Query::Regress(Regression::Gsx) => Needs {
                probs: Unused,
                embeddings: Required,
                samples: Unused,
            },
            // The spread: T predictions, or (mean, std) rows, read as one
            // sample of two values.
            Query::Regress(Regression::Std) => Needs {
                probs: Unused,
                embeddings: Unused,
                samples: Required,
            },
            // With no labeled row, the first pick is GSx's, which reads
            // the embeddings (the door says so when they are missing).
            Query::Regress(Regression::Gsy) => Needs {
                probs: Required,
                embeddings: Optional,
                samples: Unused,
            },
            Query::Regress(Regression::Igs) => Needs {
                probs: Required,
                embeddings: Required,
                samples: Unused,
            },
            Query::Regress(Regression::Emcm) => Needs {
                probs: Required,
                embeddings: Required,
                samples: Required,
            },
        }
    }

    /// The classes a pool must have (margin and ratio compare the two
    /// largest probabilities; so does Cluster-Margin).
    pub fn min_classes(self) -> usize {
        match self {
            Query::Score(s) => s.min_classes(),
            Query::Batch(BatchStrategy::ClusterMargin) => 2,
            Query::Batch(_)
            | Query::Disagree(_)
            | Query::Cold(_)
            | Query::Multi(_)
            | Query::Regress(_) => 1,
        }
    }
}

impl From<Strategy> for Query {
    fn from(s: Strategy) -> Query {
        Query::Score(s)
    }
}

impl From<BatchStrategy> for Query {
    fn from(s: BatchStrategy) -> Query {
        Query::Batch(s)
    }
}

impl From<Disagreement> for Query {
    fn from(d: Disagreement) -> Query {
        Query::Disagree(d)
    }
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for BatchStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// "a, b or c" of every query's name, for messages.
fn all_names() -> String {
    let names: Vec<&str> = Query::all().into_iter().map(Query::name).collect();
    names.join(", ")
}

impl std::str::FromStr for Query {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Query::from_name(s)
            .ok_or_else(|| format!("unknown strategy {s:?}; choose one of {}", all_names()))
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match Query::from_str(s)? {
            Query::Score(st) => Ok(st),
            other => Err(format!(
                "{other} does not score each row from its probabilities alone; row-wise strategies: {}",
                Strategy::ALL.map(Strategy::name).join(", ")
            )),
        }
    }
}

/// The base of the entropy's logarithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogBase {
    /// Bits.
    Two,
    /// Nats (the default).
    #[default]
    E,
    /// Decimal digits.
    Ten,
}

impl LogBase {
    /// As the CLI spells it: "2", "e" or "10".
    pub fn name(self) -> &'static str {
        match self {
            LogBase::Two => "2",
            LogBase::E => "e",
            LogBase::Ten => "10",
        }
    }

    /// `ln b`: entropy in base b is the natural entropy divided by this.
    pub fn ln(self) -> f64 {
        match self {
            LogBase::Two => std::f64::consts::LN_2,
            LogBase::E => 1.0,
            LogBase::Ten => std::f64::consts::LN_10,
        }
    }
}

impl std::str::FromStr for LogBase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "2" => Ok(LogBase::Two),
            "e" => Ok(LogBase::E),
            "10" => Ok(LogBase::Ten),
            _ => Err(format!("unknown log base {s:?}; choose 2, e or 10")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_needs_are_declared() {
        for q in Query::all() {
            assert_eq!(Query::from_name(q.name()), Some(q));
            assert_eq!(q.name().parse::<Query>(), Ok(q));
            let needs = q.needs();
            // Every query reads something it cannot run without.
            assert!(
                Needs::INPUTS.iter().any(|&i| needs.of(i) == Use::Required),
                "{q}"
            );
        }
        assert_eq!(
            Query::from_name("cluster_margin"),
            Some(Query::Batch(BatchStrategy::ClusterMargin))
        );
        let e = "badge".parse::<Strategy>().unwrap_err();
        assert!(e.contains("does not score each row"), "{e}");
        assert!(
            "nope"
                .parse::<Query>()
                .unwrap_err()
                .contains("cluster-margin")
        );
    }
}
