//! Protocols: the named settings of a comparison (test split, initial set,
//! batch, budget, scaling, learner, restarts, the curve's area), each cited
//! with its source, so that a comparison can be rerun and compared with a
//! published one. `docs/compare.md` lists them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::learner::Scale;

/// The labels a run starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initial {
    /// This many rows of each class, drawn at random within the class.
    PerClass(usize),
    /// This many rows drawn uniformly at random from the pool.
    Random(usize),
    /// This many rows spread as evenly over the classes as the pool allows
    /// (`simulate --seed-sampling stratified`).
    Stratified(usize),
}

impl Initial {
    /// Whether the draw spreads over the classes.
    pub fn stratified(self) -> bool {
        !matches!(self, Initial::Random(_))
    }
}

/// How a run's learning curve becomes one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    /// The mean test accuracy over the rounds, the initial model's
    /// included: `simulate`'s AULC.
    MeanOverRounds,
    /// The trapezoid area under accuracy against the number of labels,
    /// divided by the span of labels: Lu et al.'s AUBC (batch 1, so one
    /// step per query).
    Trapezoid,
}

impl Area {
    /// The area's name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Area::MeanOverRounds => "mean-over-rounds",
            Area::Trapezoid => "trapezoid",
        }
    }
}

/// The learner a protocol trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LearnerKind {
    /// alpool's MLP (one hidden layer of 256, the fused engine).
    Mlp,
    /// scikit-learn's `SVC(kernel="rbf", gamma="auto", C=1.0,
    /// probability=True)`: from Python only.
    SvmRbf,
}

/// The feature scaling, fitted on the pool (the training part), never on
/// the test rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// z-scores, except uint8 images.
    Auto,
    /// z-scores (scikit-learn's `StandardScaler`).
    Standard,
    /// [0, 1] per column.
    Minmax,
    /// None.
    None,
}

impl From<Scaling> for Scale {
    fn from(s: Scaling) -> Scale {
        match s {
            Scaling::Auto => Scale::Auto,
            Scaling::Standard => Scale::Standard,
            Scaling::Minmax => Scale::MinMax,
            Scaling::None => Scale::None,
        }
    }
}

/// A comparison's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Protocol {
    /// The protocol's name (`custom` once a setting is overridden).
    pub name: String,
    /// Where the settings come from.
    pub source: String,
    /// The fraction of each class held out as the test set (stratified,
    /// drawn per restart from its seed).
    pub test_fraction: f64,
    /// The labels each run starts from.
    pub initial: Initial,
    /// Rows queried per round.
    pub batch_size: usize,
    /// Labels at which a run stops, the initial ones included; `None`: when
    /// the pool is empty.
    pub budget: Option<usize>,
    /// The feature scaling.
    pub scaling: Scaling,
    /// The learner.
    pub learner: LearnerKind,
    /// Runs per strategy; restart r uses seed `seed + r` for its split,
    /// initial set and learner, the same for every strategy, so runs pair.
    pub restarts: usize,
    /// How a curve becomes one number.
    pub area: Area,
}

/// The protocols shipped, by name.
pub const NAMES: [&str; 2] = ["alpool", "lu2023"];

impl Protocol {
    /// The protocol called `name`.
    pub fn named(name: &str) -> Result<Protocol> {
        match name {
            "alpool" => Ok(Protocol {
                name: "alpool".into(),
                source: "alpool simulate's defaults (docs/simulate.md)".into(),
                test_fraction: 0.2,
                initial: Initial::Random(20),
                batch_size: 10,
                budget: Some(300),
                scaling: Scaling::Auto,
                learner: LearnerKind::Mlp,
                restarts: 10,
                area: Area::MeanOverRounds,
            }),
            "lu2023" => Ok(Protocol {
                name: "lu2023".into(),
                source: "Lu, Li and Lin, Re-Benchmarking Pool-Based Active Learning for Binary Classification, arXiv:2306.08954 (2023); settings of github.com/ariapoy/active-learning-benchmark (src/config.py, src/run-reproduce.sh)".into(),
                test_fraction: 0.4,
                initial: Initial::Random(20),
                batch_size: 1,
                budget: None,
                scaling: Scaling::Standard,
                learner: LearnerKind::SvmRbf,
                restarts: 100,
                area: Area::Trapezoid,
            }),
            other => Err(Error::Config(format!(
                "unknown protocol {other:?}; the protocols are {} (or custom, with flags)",
                NAMES.join(", ")
            ))),
        }
    }

    /// The initial set's size on `classes` classes.
    pub fn initial_size(&self, classes: usize) -> usize {
        match self.initial {
            Initial::PerClass(n) => n * classes,
            Initial::Random(n) | Initial::Stratified(n) => n,
        }
    }

    /// Checks the protocol against a dataset's labels: a test fraction in
    /// (0, 1), a batch of at least one, every class holding the rows the
    /// initial set needs in the pool, a budget within the pool.
    pub fn check(&self, y: &[usize]) -> Result<()> {
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(Error::Config(format!(
                "the test fraction is {}; it must lie strictly between 0 and 1",
                self.test_fraction
            )));
        }
        if self.batch_size == 0 || self.restarts == 0 {
            return Err(Error::Config(
                "the batch size and the number of restarts must be at least 1".into(),
            ));
        }
        let classes = y.iter().max().map_or(0, |m| m + 1);
        let mut counts = vec![0usize; classes];
        y.iter().for_each(|&c| counts[c] += 1);
        // The pool keeps what the stratified test split leaves of each class.
        let pool: Vec<usize> = counts
            .iter()
            .map(|&n| n - (n as f64 * self.test_fraction).round() as usize)
            .collect();
        let total: usize = pool.iter().sum();
        if let Initial::PerClass(n) = self.initial
            && let Some((c, &have)) = pool.iter().enumerate().find(|(_, h)| **h < n)
        {
            return Err(Error::Config(format!(
                "class {c} has {have} row(s) in the pool after the {:.0}% test split (of {} in all); the initial set needs {n} per class",
                self.test_fraction * 100.0,
                counts[c]
            )));
        }
        let init = self.initial_size(classes);
        if init > total {
            return Err(Error::Config(format!(
                "the initial set needs {init} labels; the pool holds {total} rows after the test split"
            )));
        }
        match self.budget {
            Some(b) if b > total => Err(Error::Config(format!(
                "the budget of {b} labels is beyond the pool: {total} rows after the {:.0}% test split",
                self.test_fraction * 100.0
            ))),
            Some(b) if b < init => Err(Error::Config(format!(
                "the budget of {b} labels is below the initial set's {init}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Changes to a named protocol; each one given makes it `custom`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Runs per strategy.
    pub restarts: Option<usize>,
    /// The test fraction.
    pub test_fraction: Option<f64>,
    /// The initial set.
    pub initial: Option<Initial>,
    /// Rows per round.
    pub batch_size: Option<usize>,
    /// Labels at which to stop.
    pub budget: Option<usize>,
    /// Query until the pool is empty (no budget).
    #[serde(default)]
    pub until_empty: bool,
    /// The scaling.
    pub scaling: Option<Scaling>,
    /// The curve's area.
    pub area: Option<Area>,
}

impl Protocol {
    /// The protocol called `name` (`custom`: alpool's, to be overridden)
    /// with `o` applied. With any change it is named `custom`, its source
    /// saying what it started from; a custom protocol keeps the named one's
    /// learner.
    pub fn resolve(name: &str, o: &Overrides) -> Result<Protocol> {
        let base = if name == "custom" { "alpool" } else { name };
        let named = Protocol::named(base)?;
        if o.budget.is_some() && o.until_empty {
            return Err(Error::Config(
                "a budget and until-empty were both given; choose one".into(),
            ));
        }
        let p = Protocol {
            restarts: o.restarts.unwrap_or(named.restarts),
            test_fraction: o.test_fraction.unwrap_or(named.test_fraction),
            initial: o.initial.unwrap_or(named.initial),
            batch_size: o.batch_size.unwrap_or(named.batch_size),
            budget: if o.until_empty {
                None
            } else {
                o.budget.or(named.budget)
            },
            scaling: o.scaling.unwrap_or(named.scaling),
            area: o.area.unwrap_or(named.area),
            ..named.clone()
        };
        if p == named && name != "custom" {
            return Ok(p);
        }
        Ok(Protocol {
            name: "custom".into(),
            source: format!("{} with overrides", named.name),
            ..p
        })
    }
}
