//! Simulated active learning for regression: the loop of `simulate --task
//! regression`. A seeded split holds out test rows; each round trains the
//! regression MLP on the labeled rows, measures RMSE and R² on the test
//! rows, and asks the door for the next batch by one of `random`, `std`
//! (the spread of a bootstrap ensemble's predictions), `gsx`, `gsy` or
//! `igs` (greedy sampling; the feature space is the scaled features, as in
//! Wu et al. 2019), or `emcm` (the same ensemble against the model, by the
//! scaled features' norm). Every strategy of a repeat starts from the same split
//! and the same first labels, so the curves pair up.

use std::path::Path;
use std::time::Instant;

use crate::al::measured::{self, Round, Run, split};
use crate::api::{Inputs, Run as DoorRun};
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::features::FeaturePool;
use crate::job::Job;
use crate::learner::regressor::{Ensemble, Regressor};
use crate::learner::{Mlp, MlpConfig, Scaler};
use crate::pool::{Exclusions, Pool, SampleLayout, Samples};
use crate::query::{InputForm, Method, Query, Regression, RegressionInput, Strategy};

/// A regression dataset: N x D features and N finite targets.
pub struct RegressionData {
    x: Vec<f32>,
    y: Vec<f32>,
    dim: usize,
    /// For reports.
    pub name: String,
}

impl RegressionData {
    /// Rows `x` (N x `dim`, row-major) with targets `y`; a target or a
    /// feature that is not finite is an error naming its row.
    pub fn new(x: Vec<f32>, y: Vec<f32>, dim: usize, name: impl Into<String>) -> Result<Self> {
        if dim == 0 || x.len() != y.len() * dim || y.is_empty() {
            return Err(Error::Config(format!(
                "{} feature values for {} targets of {dim} features each",
                x.len(),
                y.len()
            )));
        }
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "row {i}: the target is {}; a regression target must be a finite number",
                y[i]
            )));
        }
        if let Some(at) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "row {}: feature {} is {}; features must be finite",
                at / dim,
                at % dim,
                x[at]
            )));
        }
        Ok(RegressionData {
            x,
            y,
            dim,
            name: name.into(),
        })
    }

    /// Features from `features` (N x D .npy: float32, float16, float64 or
    /// uint8 images read as [0, 1]) and targets from `targets` (N, or
    /// N x 1, float).
    pub fn from_npy(features: &Path, targets: &Path) -> Result<Self> {
        let pool = FeaturePool::open(&[features])?;
        let (n, dim) = (pool.rows() as usize, pool.dim());
        pool.check_all_finite()?;
        let x = pool.gather(&(0..n).collect::<Vec<_>>())?;
        let y = Pool::open_column(&[targets], Default::default())?.column_f64()?;
        if y.len() != n {
            return Err(Error::Config(format!(
                "{}: {} targets for the {n} rows of {}",
                targets.display(),
                y.len(),
                features.display()
            )));
        }
        let name = measured::dataset_name(features);
        let y = y.iter().map(|&v| v as f32).collect();
        RegressionData::new(x, y, dim, name).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", targets.display())),
            e => e,
        })
    }

    /// Rows N.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// A regressor ([`crate::learner::Output::Linear`]) trained on every
    /// row, scaled by the rows' statistics (`alpool train --regression`).
    pub fn train(&self, config: MlpConfig) -> Result<(Mlp, crate::learner::TrainReport)> {
        let scaler = match config.scale.resolve(false) {
            Some(kind) => Some(Scaler::fit(kind, &self.x, self.dim, None)?),
            None => None,
        };
        let mut m = Mlp::new_regressor(self.dim, config)?.with_scaler(scaler)?;
        let report = m.fit_regression(&self.x, &self.y)?;
        Ok((m, report))
    }

    fn gather(&self, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        gather(&self.x, &self.y, self.dim, rows)
    }
}

/// The features (`d` wide) and targets of `rows`.
fn gather(x: &[f32], y: &[f32], d: usize, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let xs = rows
        .iter()
        .flat_map(|&r| &x[r * d..(r + 1) * d])
        .copied()
        .collect();
    (xs, rows.iter().map(|&r| y[r]).collect())
}

/// Several strategies, several seeds each, on one regression dataset.
#[derive(Clone, Debug)]
pub struct RegressionSim {
    /// `random` and regression strategies; `std` and `emcm` may draw
    /// stochastic batches (`power-std`).
    pub strategies: Vec<Method>,
    /// Runs per strategy, with seeds `seed`, `seed + 1`, ...
    pub repeats: usize,
    /// The first repeat's seed.
    pub seed: u64,
    /// The fraction of rows held out for testing (seeded).
    pub test_fraction: f64,
    /// Labels drawn at random before the first round.
    pub seed_size: usize,
    /// Rows labeled per round.
    pub batch_size: usize,
    /// Stop at this many labels.
    pub budget: usize,
    /// The learner (hidden layers, AdamW, epochs, scaling).
    pub mlp: MlpConfig,
    /// Members of the ensemble `std` and `emcm` read.
    pub committee: usize,
    /// MC dropout instead of the ensemble (0: the ensemble): T passes of
    /// the round's model, trained with `mlp.dropout` > 0.
    pub mc_samples: usize,
}

/// Refuses a strategy the loop cannot run, or an impossible setting.
fn check(cfg: &RegressionSim, data: &RegressionData) -> Result<()> {
    for m in &cfg.strategies {
        let q = m.query;
        if !matches!(q, Query::Regress(_) | Query::Score(Strategy::Random)) {
            let names: Vec<&str> = Regression::ALL.map(|r| r.name()).to_vec();
            return Err(Error::Config(format!(
                "{q} is not a regression strategy; simulate --task regression runs random, {}",
                names.join(", ")
            )));
        }
        m.check().map_err(Error::Config)?;
    }
    let ensemble = [Regression::Std, Regression::Emcm].map(Query::Regress);
    let spread = cfg
        .strategies
        .iter()
        .map(|m| m.query)
        .find(|q| ensemble.contains(q));
    if let (Some(q), true) = (spread, cfg.mc_samples > 0) {
        let rate = cfg.mlp.dropout;
        if cfg.mc_samples < 2 || rate.is_nan() || rate <= 0.0 || rate >= 1.0 {
            return Err(Error::Config(format!(
                "{q} with MC dropout needs at least 2 passes (--mc-samples, got {}) of a learner trained with --dropout P in (0, 1) (got {rate})",
                cfg.mc_samples
            )));
        }
    }
    if let Some(q) = spread
        && cfg.mc_samples == 0
        && cfg.committee < 2
    {
        return Err(Error::Config(format!(
            "{q} reads the ensemble's predictions: --committee must be at least 2, got {}",
            cfg.committee
        )));
    }
    measured::check_sizes(
        data.rows(),
        cfg.test_fraction,
        cfg.seed_size,
        cfg.batch_size,
    )
}

/// Every (strategy, repeat) run, in parallel; results in a fixed order,
/// `progress` advanced by one as each finishes. A round's metrics are the
/// test RMSE and R² ([`measured::REGRESSION`]).
pub fn simulate(
    data: &RegressionData,
    cfg: &RegressionSim,
    progress: &dyn Progress,
) -> Result<Vec<Run>> {
    check(cfg, data)?;
    measured::run_all(&cfg.strategies, cfg.repeats, progress, &|m, repeat| {
        one_run(data, cfg, m, repeat)
    })
}

/// What one run reads: the pool's rows, gathered, and its settings.
struct Pooled<'a> {
    data: &'a RegressionData,
    cfg: &'a RegressionSim,
    x: Vec<f32>,
    y: Vec<f32>,
    /// The scaled pool features: greedy sampling's feature space.
    scaled: Vec<f32>,
    scaler: Option<Scaler>,
}

fn one_run(data: &RegressionData, cfg: &RegressionSim, m: Method, repeat: usize) -> Result<Run> {
    let seed = cfg.seed + repeat as u64;
    let (pool_rows, test) = split(data.rows(), cfg.test_fraction, seed);
    let (x, y) = data.gather(&pool_rows);
    let scaler = match cfg.mlp.scale.resolve(false) {
        Some(kind) => Some(Scaler::fit(kind, &x, data.dim, None)?),
        None => None,
    };
    let mut scaled = x.clone();
    if let Some(s) = &scaler {
        s.apply_in_place(&mut scaled);
    }
    let p = Pooled {
        data,
        cfg,
        x,
        y,
        scaled,
        scaler,
    };
    let mut labeled = measured::seed_rows(pool_rows.len(), cfg.seed_size, seed);
    let (test_x, test_y) = data.gather(&test);
    let mlp = MlpConfig {
        seed,
        ..cfg.mlp.clone()
    };
    let mut rounds = Vec::new();
    loop {
        let (lx, ly) = p.labeled(&labeled);
        let model = Regressor::fit(data.dim, &mlp, p.scaler.clone(), (&lx, &ly))?;
        let (rmse, r2) = errors(&model.predict(&test_x, None), &test_y);
        let left = pool_rows.len() - labeled.len();
        let k = cfg
            .batch_size
            .min(cfg.budget.saturating_sub(labeled.len()))
            .min(left);
        let t0 = Instant::now();
        let picks = match k {
            0 => Vec::new(),
            _ => p.select(m, &model, &labeled, k, seed ^ rounds.len() as u64)?,
        };
        rounds.push(Round {
            labels: labeled.len(),
            metrics: [rmse, r2],
            select_s: t0.elapsed().as_secs_f64(),
        });
        if picks.is_empty() {
            break;
        }
        labeled.extend(picks);
    }
    Ok(Run {
        name: m.name(),
        repeat,
        rounds,
    })
}

impl Pooled<'_> {
    /// T predictions of every pool row: MC-dropout passes of the round's
    /// model, or a bootstrap ensemble's members.
    fn spread(&self, model: &Regressor, labeled: &[usize], seed: u64) -> Result<(usize, Vec<f32>)> {
        let t = self.cfg.mc_samples;
        if t > 0 {
            return Ok((t, model.mc_samples(&self.x, None, (t, seed))?));
        }
        let (lx, ly) = self.labeled(labeled);
        let (t, scaler) = (self.cfg.committee, self.scaler.clone());
        let ens = Ensemble::fit(t, self.data.dim, &self.cfg.mlp, scaler, (&lx, &ly), seed)?;
        Ok((t, ens.samples(&self.x, None)))
    }

    fn labeled(&self, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        gather(&self.x, &self.y, self.data.dim, rows)
    }

    /// The next `k` pool rows under `m`, through the door; `seed` is the
    /// round's (random's draw, the ensemble's, a stochastic batch's).
    fn select(
        &self,
        m: Method,
        model: &Regressor,
        labeled: &[usize],
        k: usize,
        seed: u64,
    ) -> Result<Vec<usize>> {
        let n = self.y.len();
        let taken = Exclusions::new(labeled.iter().map(|&r| r as u64).collect());
        let door = |inputs: Inputs, job: Job| -> Result<Vec<usize>> {
            let sel = crate::api::select(inputs, &job, &DoorRun::default())?.selection;
            Ok(sel.indices().into_iter().map(|i| i as usize).collect())
        };
        let form = |kind| InputForm::Regression(kind);
        let q = m.query;
        match q {
            Query::Regress(Regression::Std | Regression::Emcm) => {
                let (t, values) = self.spread(model, labeled, seed)?;
                let pool = Pool::from_f32(&values, 1)?;
                let samples = Samples::from_pool(pool, [t, n, 1], SampleLayout::Tnc)?;
                let mut job = Job::new(q, form(RegressionInput::Samples), k)
                    .seed(seed)
                    .exclude(taken);
                job.stochastic = m.drawn();
                if q == Query::Regress(Regression::Std) {
                    return door(Inputs::samples(&samples), job);
                }
                // EMCM: the model's predictions against the ensemble's, by
                // the norm of the scaled features.
                let preds = model.predict(&self.x, None);
                let preds = Pool::from_f32(&preds, 1)?;
                let emb = Pool::from_f32(&self.scaled, self.data.dim)?;
                let inputs = Inputs::samples(&samples)
                    .with_probs(&preds)
                    .with_embeddings(&emb);
                door(inputs, job)
            }
            Query::Regress(r) => {
                let emb = Pool::from_f32(&self.scaled, self.data.dim)?;
                let preds = model.predict(&self.x, None);
                let preds = Pool::from_f32(&preds, 1)?;
                let mut column = vec![f64::NAN; n];
                for &l in labeled {
                    column[l] = self.y[l] as f64;
                }
                let job = Job::new(q, form(RegressionInput::Predictions), k)
                    .exclude(taken)
                    .with_targets(&column)?;
                let inputs = match r {
                    Regression::Gsx => Inputs::embeddings(&emb),
                    _ => Inputs::probs(&preds).with_embeddings(&emb),
                };
                door(inputs, job)
            }
            _ => Ok(measured::random_picks(n, &taken, k, seed)),
        }
    }
}

/// RMSE and R² of `pred` against `y`, in f64.
pub fn errors(pred: &[f32], y: &[f32]) -> (f64, f64) {
    let n = y.len().max(1) as f64;
    let sse: f64 = pred
        .iter()
        .zip(y)
        .map(|(&p, &t)| (p as f64 - t as f64).powi(2))
        .sum();
    let mean = y.iter().map(|&t| t as f64).sum::<f64>() / n;
    let sst: f64 = y.iter().map(|&t| (t as f64 - mean).powi(2)).sum();
    let r2 = if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN };
    ((sse / n).sqrt(), r2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_rmse_and_r2() {
        let (rmse, r2) = errors(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((rmse - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // SST = (1−8/3)² + (2−8/3)² + (5−8/3)² = 8.6667.
        assert!((r2 - (1.0 - 4.0 / (26.0 / 3.0))).abs() < 1e-12);
    }
}
