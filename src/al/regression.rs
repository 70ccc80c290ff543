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

use rayon::prelude::*;

use crate::al::curves::{Axis, Series, plot_series};
use crate::api::{Inputs, Run as DoorRun};
use crate::atomic;
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::features::FeaturePool;
use crate::job::Job;
use crate::learner::regressor::{Ensemble, Regressor};
use crate::learner::{MlpConfig, Scaler, shuffle};
use crate::pool::{Exclusions, Pool, SampleLayout, Samples};
use crate::query::{InputForm, Query, Regression, RegressionInput, Strategy};
use crate::rng::Rng;
use crate::score::random_priority;
use crate::stats::{by_x, mean_std};

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
        let name = features
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| "dataset".into(), |s| s.to_string_lossy().into_owned());
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
    /// `random` and regression strategies.
    pub strategies: Vec<Query>,
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

/// One round: labels, then the test error of the model trained on them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RegressionRound {
    /// Labeled rows the model trained on.
    pub labels: usize,
    /// Root mean squared error on the test rows.
    pub rmse: f64,
    /// The coefficient of determination on the test rows.
    pub r2: f64,
    /// Seconds the next batch's selection took (ensemble training
    /// included).
    pub select_s: f64,
}

/// One strategy's run on one seed.
#[derive(Clone, Debug)]
pub struct RegressionRun {
    /// The strategy's name.
    pub name: String,
    /// Which repeat (0-based).
    pub repeat: usize,
    /// Its rounds.
    pub rounds: Vec<RegressionRound>,
}

impl RegressionRun {
    /// The area under the RMSE curve, as the mean over rounds (lower is
    /// better), the classification loop's AULC rule.
    pub fn rmse_aulc(&self) -> f64 {
        self.rounds.iter().map(|r| r.rmse).sum::<f64>() / self.rounds.len().max(1) as f64
    }
}

/// Refuses a strategy the loop cannot run, or an impossible setting.
fn check(cfg: &RegressionSim, data: &RegressionData) -> Result<()> {
    for &q in &cfg.strategies {
        if !matches!(q, Query::Regress(_) | Query::Score(Strategy::Random)) {
            let names: Vec<&str> = Regression::ALL.map(|r| r.name()).to_vec();
            return Err(Error::Config(format!(
                "{q} is not a regression strategy; simulate --task regression runs random, {}",
                names.join(", ")
            )));
        }
    }
    let ensemble = [Regression::Std, Regression::Emcm].map(Query::Regress);
    let spread = cfg.strategies.iter().find(|q| ensemble.contains(q));
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
    let test = (data.rows() as f64 * cfg.test_fraction).round() as usize;
    if !(0.0..1.0).contains(&cfg.test_fraction) || test == 0 || cfg.seed_size == 0 {
        return Err(Error::Config(format!(
            "the test fraction ({}) must hold out at least one row and leave a pool, and the seed set must have a label (got {})",
            cfg.test_fraction, cfg.seed_size
        )));
    }
    if cfg.seed_size + test > data.rows() || cfg.batch_size == 0 {
        return Err(Error::Config(format!(
            "{} rows cannot hold {test} test rows and {} seed labels, or the batch is empty",
            data.rows(),
            cfg.seed_size
        )));
    }
    Ok(())
}

/// Every (strategy, repeat) run, in parallel; results in a fixed order,
/// `progress` advanced by one as each finishes.
pub fn simulate(
    data: &RegressionData,
    cfg: &RegressionSim,
    progress: &dyn Progress,
) -> Result<Vec<RegressionRun>> {
    check(cfg, data)?;
    let pairs: Vec<(Query, usize)> = (0..cfg.repeats.max(1))
        .flat_map(|r| cfg.strategies.iter().map(move |&q| (q, r)))
        .collect();
    pairs
        .par_iter()
        .map(|&(q, repeat)| {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let run = one_run(data, cfg, q, repeat)?;
            progress.advance(1);
            Ok(run)
        })
        .collect()
}

/// The pool's rows (ascending) and the test rows of one repeat's split.
fn split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut Rng::new(seed ^ 0x7465_7374));
    let test_n = (n as f64 * fraction).round() as usize;
    let mut pool = order.split_off(test_n);
    pool.sort_unstable();
    order.sort_unstable();
    (pool, order)
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

fn one_run(
    data: &RegressionData,
    cfg: &RegressionSim,
    q: Query,
    repeat: usize,
) -> Result<RegressionRun> {
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
    let mut order: Vec<usize> = (0..pool_rows.len()).collect();
    shuffle(&mut order, &mut Rng::new(seed ^ 0x7365_6564));
    let mut labeled: Vec<usize> = order[..cfg.seed_size].to_vec();
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
            _ => p.select(q, &model, &labeled, k, seed ^ rounds.len() as u64)?,
        };
        rounds.push(RegressionRound {
            labels: labeled.len(),
            rmse,
            r2,
            select_s: t0.elapsed().as_secs_f64(),
        });
        if picks.is_empty() {
            break;
        }
        labeled.extend(picks);
    }
    Ok(RegressionRun {
        name: q.name().into(),
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

    /// The next `k` pool rows under `q`, through the door.
    fn select(
        &self,
        q: Query,
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
        match q {
            Query::Regress(Regression::Std | Regression::Emcm) => {
                let (t, values) = self.spread(model, labeled, seed)?;
                let pool = Pool::from_f32(&values, 1)?;
                let samples = Samples::from_pool(pool, [t, n, 1], SampleLayout::Tnc)?;
                let job = Job::new(q, form(RegressionInput::Samples), k).exclude(taken);
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
            // Random: the random strategy's seeded draw per row, the k
            // largest (ties to the lower row).
            _ => {
                let mut free: Vec<(f64, usize)> = (0..n)
                    .filter(|&r| !taken.contains(r as u64))
                    .map(|r| (random_priority(seed, r as u64), r))
                    .collect();
                free.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                Ok(free.into_iter().take(k).map(|(_, r)| r).collect())
            }
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

/// Per strategy: the RMSE AULC's mean and standard deviation over the
/// repeats, the R² AULC's mean, and the mean curves.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RegressionSummary {
    /// The strategy's name.
    pub strategy: String,
    /// Mean RMSE over the rounds, averaged over the repeats (lower is
    /// better), and its sample standard deviation.
    pub rmse_aulc_mean: f64,
    /// Its standard deviation over the repeats.
    pub rmse_aulc_std: f64,
    /// Mean R² over the rounds, averaged over the repeats.
    pub r2_aulc_mean: f64,
    /// (labels, mean RMSE, its std, mean R², runs that reached it).
    pub curve: Vec<(usize, f64, f64, f64, usize)>,
}

/// The summaries, in the order of `names`.
pub fn summarize(runs: &[RegressionRun], names: &[String]) -> Vec<RegressionSummary> {
    names
        .iter()
        .map(|name| {
            let mine: Vec<&RegressionRun> = runs.iter().filter(|r| &r.name == name).collect();
            let aulcs: Vec<f64> = mine.iter().map(|r| r.rmse_aulc()).collect();
            let r2s: Vec<f64> = mine
                .iter()
                .map(|r| r.rounds.iter().map(|x| x.r2).sum::<f64>() / r.rounds.len().max(1) as f64)
                .collect();
            let (rmse_aulc_mean, rmse_aulc_std) = mean_std(&aulcs);
            let rmse = by_x(
                mine.iter()
                    .map(|r| r.rounds.iter().map(|x| (x.labels, x.rmse))),
            );
            let r2 = by_x(
                mine.iter()
                    .map(|r| r.rounds.iter().map(|x| (x.labels, x.r2))),
            );
            let curve = rmse
                .into_iter()
                .zip(r2)
                .map(|((n, e), (_, d))| {
                    let (m, s) = mean_std(&e);
                    (n, m, s, mean_std(&d).0, e.len())
                })
                .collect();
            RegressionSummary {
                strategy: name.clone(),
                rmse_aulc_mean,
                rmse_aulc_std,
                r2_aulc_mean: mean_std(&r2s).0,
                curve,
            }
        })
        .collect()
}

/// `rounds.csv` (one line per strategy, repeat and round), `summary.json`
/// (per strategy: the AULCs and the mean curve) and `curves.svg` (mean test
/// RMSE against labels, ± one standard deviation), written whole or not at
/// all.
pub fn write(
    dir: &Path,
    runs: &[RegressionRun],
    summary: &[RegressionSummary],
    dataset: &str,
) -> Result<()> {
    let csv = dir.join("rounds.csv");
    atomic::write(&csv, |w| {
        let io = |e| Error::io(&csv, e);
        writeln!(w, "strategy,repeat,round,labels,rmse,r2,select_s").map_err(io)?;
        for r in runs {
            for (i, x) in r.rounds.iter().enumerate() {
                let line = format!(
                    "{},{},{i},{},{:.6},{:.6},{:.4}",
                    r.name, r.repeat, x.labels, x.rmse, x.r2, x.select_s
                );
                writeln!(w, "{line}").map_err(io)?;
            }
        }
        Ok(())
    })?;
    let json = dir.join("summary.json");
    let v = serde_json::json!({"task": "regression", "dataset": dataset, "strategies": summary});
    atomic::write(&json, |w| {
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::Config(e.to_string()))?;
        w.write_all(text.as_bytes())
            .map_err(|e| Error::io(&json, e))
    })?;
    let series: Vec<Series> = summary
        .iter()
        .map(|s| Series {
            name: format!("{} (RMSE AULC {:.4})", s.strategy, s.rmse_aulc_mean),
            points: s.curve.iter().map(|c| (c.0, c.1, c.2)).collect(),
        })
        .collect();
    let points = || series.iter().flat_map(|s| s.points.iter());
    let lo = points().map(|c| c.1 - c.2).fold(f64::INFINITY, f64::min);
    let hi = points()
        .map(|c| c.1 + c.2)
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let axis = Axis {
        label: "test RMSE",
        range: ((lo - pad).max(0.0), hi + pad),
        legend: plotters::prelude::SeriesLabelPosition::UpperRight,
    };
    let title = format!("{dataset}: test RMSE against labels (lower is better)");
    plot_series(&dir.join("curves.svg"), &title, &axis, &series)
}

/// The table printed after a simulation: each strategy's RMSE AULC
/// against random's (a ratio below 1 is better than random).
pub fn table(summary: &[RegressionSummary]) -> String {
    let random = summary
        .iter()
        .find(|s| s.strategy == Strategy::Random.name())
        .map(|s| s.rmse_aulc_mean);
    let mut out = format!(
        "{:<10} {:>22} {:>10} {:>10} {:>26}\n",
        "strategy", "RMSE AULC mean ± std", "vs random", "R² AULC", "final RMSE ± std (labels)"
    );
    for s in summary {
        let vs = match random {
            Some(r) if s.strategy != Strategy::Random.name() => {
                format!("{:.3}x", s.rmse_aulc_mean / r)
            }
            _ => "—".into(),
        };
        let last = s
            .curve
            .last()
            .map_or(String::from("—"), |&(n, m, sd, _, _)| {
                format!("{m:.4} ± {sd:.4} ({n})")
            });
        out += &format!(
            "{:<10} {:>12.5} ± {:<8.5} {:>10} {:>10.4} {:>26}\n",
            s.strategy, s.rmse_aulc_mean, s.rmse_aulc_std, vs, s.r2_aulc_mean, last
        );
    }
    out
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

    #[test]
    fn the_split_is_seeded_and_disjoint() {
        let (pool, test) = split(100, 0.2, 7);
        assert_eq!((pool.len(), test.len()), (80, 20));
        assert!(pool.iter().all(|r| !test.contains(r)));
        assert_eq!(split(100, 0.2, 7), (pool, test));
    }
}
