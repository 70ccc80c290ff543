//! Simulations: several strategies, several seeds each, on one dataset,
//! summarized as learning curves and their areas.

use super::pool_loop::{self, LoopConfig, RunResult};
use super::{Dataset, GroundTruth, Split};
use crate::backend::gpu::Gpu;
use crate::backend::{Progress, Silent};
use crate::error::{Error, Result};
use crate::query::Method;
use crate::stats::{by_x, mean_std};

/// How the held-out test set is chosen.
#[derive(Clone, Debug)]
pub enum TestSet {
    /// A stratified fraction, drawn per repeat.
    Fraction(f64),
    /// Fixed rows (e.g. MNIST's official test rows 60000..70000).
    Rows(std::ops::Range<usize>),
}

/// Several strategies, several seeds each, on one dataset.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The strategies compared, each drawing its stochastic batches or not.
    pub strategies: Vec<Method>,
    /// Runs per strategy, with seeds `base.seed`, `base.seed + 1`, ...
    pub repeats: usize,
    /// The held-out rows.
    pub test: TestSet,
    /// The loop's settings; `strategy`, `stochastic` and `seed` are set
    /// per run.
    pub base: LoopConfig,
}

impl SimConfig {
    /// Each strategy's name in the reports, in the order given
    /// ([`Method::name`]).
    pub fn names(&self) -> Vec<String> {
        self.strategies.iter().map(Method::name).collect()
    }
}

/// One method's run on one seed (a strategy's name, or a synthesis
/// generator's).
#[derive(Clone, Debug)]
pub struct Run {
    /// The method's name.
    pub name: String,
    /// Which repeat (0-based).
    pub repeat: usize,
    /// The run's rounds and labels.
    pub result: RunResult,
}

/// Per method: the learning curve's mean and spread over the repeats.
#[derive(Clone, Debug)]
pub struct StrategySummary {
    /// The method's name.
    pub name: String,
    /// Mean area under the learning curve over the repeats.
    pub aulc_mean: f64,
    /// Its sample standard deviation.
    pub aulc_std: f64,
    /// (labels, mean accuracy, std, runs that reached it)
    pub curve: Vec<(usize, f64, f64, usize)>,
}

/// Runs every (strategy, repeat) pair, in parallel
/// (`measured::runs_apart`: each run on a thread of its own); results are in
/// a fixed order and do not depend on scheduling.
pub fn run(data: &Dataset, cfg: &SimConfig, gpu: Option<&Gpu>) -> Result<Vec<Run>> {
    run_with(data, cfg, gpu, &Silent)
}

/// [`run`], advancing `progress` by one as each run finishes; a run not
/// yet started when `progress` is cancelled does not start.
pub fn run_with(
    data: &Dataset,
    cfg: &SimConfig,
    gpu: Option<&Gpu>,
    progress: &dyn Progress,
) -> Result<Vec<Run>> {
    if gpu.is_some()
        && let Some(m) = cfg
            .strategies
            .iter()
            .find(|m| m.drawn().is_some_and(|s| !s.per_row()))
    {
        return Err(Error::Config(format!(
            "{}: a softrank batch ranks the whole pool on the CPU; run it without the GPU, or draw power or softmax batches there",
            m.name()
        )));
    }
    let pairs: Vec<(Method, usize)> = cfg
        .strategies
        .iter()
        .flat_map(|&s| (0..cfg.repeats).map(move |r| (s, r)))
        .collect();
    let one = |&(method, repeat): &(Method, usize)| -> Result<Run> {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let seed = cfg.base.seed.wrapping_add(repeat as u64);
        let split = match &cfg.test {
            TestSet::Fraction(f) => Split::stratified(&data.y, *f, seed),
            TestSet::Rows(r) => Split::fixed(data.rows(), r.clone()),
        };
        let lc = LoopConfig {
            strategy: method.query,
            stochastic: method.stochastic,
            seed,
            ..cfg.base.clone()
        };
        let mut oracle = GroundTruth::new(&data.y);
        let result = pool_loop::run(data, &split, &lc, &mut oracle, gpu)?;
        progress.advance(1);
        Ok(Run {
            name: method.name(),
            repeat,
            result,
        })
    };
    match gpu {
        // One device, one queue: run the GPU simulations one at a time.
        Some(_) => pairs.iter().map(one).collect(),
        None => super::measured::runs_apart(&pairs, &one),
    }
}

/// Summaries for each method name, in the order given.
pub fn summarize_names(runs: &[Run], names: &[String]) -> Vec<StrategySummary> {
    names
        .iter()
        .map(|name| {
            let mine: Vec<&Run> = runs.iter().filter(|r| &r.name == name).collect();
            let aulcs: Vec<f64> = mine.iter().map(|r| r.result.aulc()).collect();
            let (aulc_mean, aulc_std) = mean_std(&aulcs);
            let curve = by_x(
                mine.iter()
                    .map(|r| r.result.rounds.iter().map(|x| (x.labels, x.test_accuracy))),
            )
            .into_iter()
            .map(|(n, accs)| {
                let (m, s) = mean_std(&accs);
                (n, m, s, accs.len())
            })
            .collect();
            StrategySummary {
                name: name.clone(),
                aulc_mean,
                aulc_std,
                curve,
            }
        })
        .collect()
}

/// Summaries for each strategy, in the order given.
pub fn summarize(runs: &[Run], strategies: &[Method]) -> Vec<StrategySummary> {
    let names: Vec<String> = strategies.iter().map(Method::name).collect();
    summarize_names(runs, &names)
}
