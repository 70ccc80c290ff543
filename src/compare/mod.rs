//! Comparing strategies on one dataset: runs under a [`Protocol`], then the
//! statistics a decision needs (the area's mean with its confidence
//! interval, paired Wilcoxon tests against random and against the best,
//! Holm-corrected, win/tie/loss counts, mean ranks, labels to a target
//! accuracy) and a report: JSON, CSV and one self-contained HTML page.
//!
//! The runs come from the built-in learner ([`run`]) or from anywhere as
//! [`Curve`]s ([`summarize`]): the Python package trains a scikit-learn
//! model and hands its curves here, so the statistics are defined once.

pub mod html;
pub mod protocol;

use std::path::Path;

use serde::Serialize;

use crate::al::pool_loop::{self, EmbeddingSettings, LoopConfig};
use crate::al::simulate::{self, Run, SimConfig, TestSet};
use crate::al::stopping::StopConfig;
use crate::al::{Dataset, Split, seed_set};
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::learner::MlpConfig;
use crate::query::{Method, Strategy};

use crate::stats::{self, Wilcoxon};
pub use protocol::{Area, Initial, LearnerKind, Overrides, Protocol, Scaling};

/// The confidence level of every interval in a comparison.
pub const CONFIDENCE: f64 = 0.95;

/// One run's learning curve: test accuracy at each label count.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Curve {
    /// The strategy's name.
    pub strategy: String,
    /// The restart (0-based); runs with the same restart share their split
    /// and initial set.
    pub restart: usize,
    /// Labels at each round, ascending.
    pub labels: Vec<usize>,
    /// Test accuracy at each round.
    pub accuracy: Vec<f64>,
}

impl Curve {
    /// The curve as one number, by `area`.
    pub fn area(&self, area: Area) -> f64 {
        let a = &self.accuracy;
        match area {
            Area::MeanOverRounds => a.iter().sum::<f64>() / a.len().max(1) as f64,
            Area::Trapezoid => {
                let x = &self.labels;
                let span = match (x.first(), x.last()) {
                    (Some(&f), Some(&l)) if l > f => (l - f) as f64,
                    // One point: the area is its accuracy.
                    _ => return a.first().copied().unwrap_or(f64::NAN),
                };
                let sum: f64 = (1..x.len())
                    .map(|i| (x[i] - x[i - 1]) as f64 * (a[i] + a[i - 1]) / 2.0)
                    .sum();
                sum / span
            }
        }
    }
}

/// A paired test of one strategy against another over the restarts.
#[derive(Clone, Debug, Serialize)]
pub struct Paired {
    /// The other strategy.
    pub against: String,
    /// Restarts where this strategy's area is larger, equal, smaller.
    pub wins: usize,
    /// See `wins`.
    pub ties: usize,
    /// See `wins`.
    pub losses: usize,
    /// The Wilcoxon signed-rank test of the area differences.
    pub wilcoxon: Wilcoxon,
    /// Its p-value after Holm's correction over the family of tests it
    /// belongs to (all against random, all against the best, all pairs).
    pub p_holm: f64,
}

/// One point of a strategy's mean learning curve.
#[derive(Clone, Debug, Serialize)]
pub struct CurvePoint {
    /// Labels.
    pub labels: usize,
    /// Mean test accuracy over the runs that reached these labels.
    pub mean: f64,
    /// Its confidence interval (`None` with fewer than two runs).
    pub ci: Option<(f64, f64)>,
    /// Runs that reached these labels.
    pub runs: usize,
}

/// One strategy's figures.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyStats {
    /// The strategy's name.
    pub strategy: String,
    /// Runs (restarts).
    pub restarts: usize,
    /// The area's mean over the restarts.
    pub area_mean: f64,
    /// Its sample standard deviation.
    pub area_std: f64,
    /// Its confidence interval.
    pub area_ci: Option<(f64, f64)>,
    /// The last round's test accuracy, mean over the restarts.
    pub final_accuracy_mean: f64,
    /// Its confidence interval.
    pub final_accuracy_ci: Option<(f64, f64)>,
    /// The mean over restarts of the strategy's rank by area among all
    /// strategies (1 = best, ties averaged), as CDALBench reports ranks.
    pub mean_rank: f64,
    /// The fewest labels at which the mean curve reaches the target
    /// accuracy, over points every restart reached; `None` if it never does.
    pub labels_to_target: Option<usize>,
    /// 1 − labels_to_target / random's: the fraction of labels saved.
    pub label_savings: Option<f64>,
    /// The paired test against random (absent for random itself, or
    /// without random).
    pub vs_random: Option<Paired>,
    /// The paired test against the best strategy by mean area (absent for
    /// the best).
    pub vs_best: Option<Paired>,
    /// The mean learning curve.
    pub curve: Vec<CurvePoint>,
}

/// A comparison's result.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The settings.
    pub protocol: Protocol,
    /// The confidence level of the intervals.
    pub confidence: f64,
    /// The accuracy `labels_to_target` is measured at.
    pub target_accuracy: f64,
    /// Where it came from.
    pub target_rule: String,
    /// The strategy with the largest mean area.
    pub best: String,
    /// Per strategy, in the order given.
    pub strategies: Vec<StrategyStats>,
    /// Every pair (a before b in the given order), Holm-corrected together.
    pub pairs: Vec<PairRow>,
}

/// One cell pair of the paired-test matrix.
#[derive(Clone, Debug, Serialize)]
pub struct PairRow {
    /// The first strategy.
    pub a: String,
    /// The second; wins are a's.
    pub b: String,
    /// The test.
    #[serde(flatten)]
    pub test: Paired,
}

/// Runs `strategies` (each drawing its stochastic batches or not) under
/// `protocol` with the built-in learner (and, for
/// the strategies that read samples, a committee of `committee` of them,
/// or `mc_samples` MC-dropout passes of each round's model when not 0):
/// restart r uses seed `seed + r` for its split, initial set and model, the
/// same for every strategy. `progress` advances by one per finished run.
pub fn run(
    data: &Dataset,
    protocol: &Protocol,
    strategies: &[Method],
    (seed, mlp, (committee, mc_samples)): (u64, MlpConfig, (usize, usize)),
    progress: &dyn Progress,
) -> Result<Vec<Run>> {
    protocol.check(&data.y)?;
    for m in strategies {
        pool_loop::check_strategy(m.query, committee.max(mc_samples))?;
        if let Some(st) = m.stochastic {
            pool_loop::check_stochastic(m.query, st, None)?;
        }
    }
    if mc_samples > 0 && (mlp.dropout.is_nan() || mlp.dropout <= 0.0) {
        return Err(Error::Config(format!(
            "MC dropout ({mc_samples} passes) keeps the learner's dropout on at inference: train it with --dropout P (0 < P < 1)"
        )));
    }
    if protocol.learner != LearnerKind::Mlp {
        return Err(Error::Config(format!(
            "protocol {} trains {:?}, a scikit-learn model: run it from Python (alpool.compare), or give --protocol custom for the built-in MLP",
            protocol.name, protocol.learner
        )));
    }
    let cfg = SimConfig {
        strategies: strategies.to_vec(),
        repeats: protocol.restarts,
        test: TestSet::Fraction(protocol.test_fraction),
        base: LoopConfig {
            strategy: Strategy::Random.into(),
            log_base: crate::LogBase::E,
            seed_size: protocol.initial_size(data.classes),
            seed_stratified: protocol.initial.stratified(),
            batch_size: protocol.batch_size,
            stop: StopConfig {
                budget: protocol.budget,
                ..StopConfig::default()
            },
            // The model's seed comes from the run's (seed + r) alone, so a
            // restart gives the same curves run alone or among all of them
            // (alpool.ray.compare runs one restart per task).
            mlp: MlpConfig {
                scale: protocol.scaling.into(),
                seed: 0,
                ..mlp
            },
            warm_start: false,
            seed,
            embedding: EmbeddingSettings::default(),
            committee,
            mc_samples,
            stochastic: None,
        },
    };
    simulate::run_with(data, &cfg, None, progress)
}

/// Restart `seed`'s test split and initial set under `protocol` (seed
/// `seed + restart` for restart r), exactly as [`run`] draws them, for
/// learners outside the library to run on the same rows.
pub fn restart_rows(y: &[usize], protocol: &Protocol, seed: u64) -> (Split, Vec<usize>) {
    let split = Split::stratified(y, protocol.test_fraction, seed);
    let classes = y.iter().max().map_or(0, |m| m + 1);
    let initial = seed_set(
        &split.pool,
        y,
        protocol.initial_size(classes).max(1),
        protocol.initial.stratified(),
        seed,
    );
    (split, initial)
}

/// The curves of simulated runs.
pub fn curves(runs: &[Run]) -> Vec<Curve> {
    runs.iter()
        .map(|r| Curve {
            strategy: r.name.clone(),
            restart: r.repeat,
            labels: r.result.rounds.iter().map(|x| x.labels).collect(),
            accuracy: r.result.rounds.iter().map(|x| x.test_accuracy).collect(),
        })
        .collect()
}

/// The areas of each strategy's curves, indexed by restart; every strategy
/// must have run the same restarts, once each, with a curve of matching
/// lengths.
fn areas(curves: &[Curve], names: &[String], area: Area) -> Result<Vec<Vec<f64>>> {
    let restarts = curves.iter().map(|c| c.restart + 1).max().unwrap_or(0);
    let mut out = vec![vec![f64::NAN; restarts]; names.len()];
    for c in curves {
        let s = names.iter().position(|n| *n == c.strategy).ok_or_else(|| {
            Error::Config(format!(
                "a curve of {:?}, a strategy not compared",
                c.strategy
            ))
        })?;
        if c.labels.len() != c.accuracy.len() || c.labels.is_empty() {
            return Err(Error::Config(format!(
                "{} restart {}: {} label counts and {} accuracies; a curve needs one of each per round",
                c.strategy,
                c.restart,
                c.labels.len(),
                c.accuracy.len()
            )));
        }
        if !out[s][c.restart].is_nan() {
            return Err(Error::Config(format!(
                "{} restart {} has two curves",
                c.strategy, c.restart
            )));
        }
        out[s][c.restart] = c.area(area);
    }
    for (s, row) in out.iter().enumerate() {
        if let Some(r) = row.iter().position(|a| a.is_nan()) {
            return Err(Error::Config(format!(
                "{} has no curve for restart {r}: paired tests need every strategy on every restart",
                names[s]
            )));
        }
    }
    Ok(out)
}

/// Win, tie and loss counts of `a` against `b`, and their test.
fn paired(a: &[f64], b: &[f64], against: &str) -> Paired {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    Paired {
        against: against.to_string(),
        wins: d.iter().filter(|&&x| x > 0.0).count(),
        ties: d.iter().filter(|&&x| x == 0.0).count(),
        losses: d.iter().filter(|&&x| x < 0.0).count(),
        wilcoxon: stats::wilcoxon(&d),
        p_holm: f64::NAN,
    }
}

/// Holm-corrects the tests in place, as one family.
fn holm_family(tests: &mut [&mut Paired]) {
    let p: Vec<f64> = tests.iter().map(|t| t.wilcoxon.p).collect();
    for (t, adj) in tests.iter_mut().zip(stats::holm(&p)) {
        t.p_holm = adj;
    }
}

/// The statistics of `curves` for `names` (in that order) under
/// `protocol`. `target`: the accuracy for `labels_to_target`; by default
/// random's final mean accuracy (without random: the lowest strategy's).
pub fn summarize(
    curves: &[Curve],
    names: &[String],
    protocol: &Protocol,
    target: Option<f64>,
) -> Result<Comparison> {
    if names.is_empty() {
        return Err(Error::Config("no strategies to compare".into()));
    }
    let areas = areas(curves, names, protocol.area)?;
    let restarts = areas[0].len();
    let means: Vec<f64> = areas.iter().map(|a| stats::mean_std(a).0).collect();
    let best = (0..names.len())
        .max_by(|&a, &b| means[a].total_cmp(&means[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    let random = names.iter().position(|n| n == Strategy::Random.name());
    let ranks = mean_ranks(&areas);
    let mut strategies: Vec<StrategyStats> = names
        .iter()
        .enumerate()
        .map(|(s, name)| strategy_stats(s, name, curves, &areas, ranks[s]))
        .collect();
    let (target_accuracy, target_rule) = match (target, random) {
        (Some(t), _) => (t, "given".to_string()),
        (None, Some(r)) => (
            strategies[r].final_accuracy_mean,
            "random's final mean accuracy".to_string(),
        ),
        (None, None) => (
            strategies
                .iter()
                .map(|s| s.final_accuracy_mean)
                .fold(f64::INFINITY, f64::min),
            "the lowest final mean accuracy".to_string(),
        ),
    };
    for s in &mut strategies {
        s.labels_to_target = labels_to(&s.curve, target_accuracy, restarts);
    }
    let random_labels = random.and_then(|r| strategies[r].labels_to_target);
    for s in &mut strategies {
        s.label_savings = match (s.labels_to_target, random_labels) {
            (Some(l), Some(r)) if r > 0 => Some(1.0 - l as f64 / r as f64),
            _ => None,
        };
    }
    for s in 0..names.len() {
        if let Some(r) = random.filter(|&r| r != s) {
            strategies[s].vs_random = Some(paired(&areas[s], &areas[r], &names[r]));
        }
        if s != best {
            strategies[s].vs_best = Some(paired(&areas[s], &areas[best], &names[best]));
        }
    }
    holm_family(
        &mut strategies
            .iter_mut()
            .filter_map(|s| s.vs_random.as_mut())
            .collect::<Vec<_>>(),
    );
    holm_family(
        &mut strategies
            .iter_mut()
            .filter_map(|s| s.vs_best.as_mut())
            .collect::<Vec<_>>(),
    );
    let mut pairs: Vec<PairRow> = (0..names.len())
        .flat_map(|a| ((a + 1)..names.len()).map(move |b| (a, b)))
        .map(|(a, b)| PairRow {
            a: names[a].clone(),
            b: names[b].clone(),
            test: paired(&areas[a], &areas[b], &names[b]),
        })
        .collect();
    holm_family(&mut pairs.iter_mut().map(|p| &mut p.test).collect::<Vec<_>>());
    Ok(Comparison {
        protocol: protocol.clone(),
        confidence: CONFIDENCE,
        target_accuracy,
        target_rule,
        best: names[best].clone(),
        strategies,
        pairs,
    })
}

/// Each strategy's rank by area in each restart (1 = largest, ties
/// averaged), averaged over the restarts.
fn mean_ranks(areas: &[Vec<f64>]) -> Vec<f64> {
    let restarts = areas[0].len();
    let mut sum = vec![0.0; areas.len()];
    for r in 0..restarts {
        // Ranking the negated areas puts the largest first.
        let neg: Vec<f64> = areas.iter().map(|a| -a[r]).collect();
        for (s, rank) in stats::rank_average(&neg).into_iter().enumerate() {
            sum[s] += rank;
        }
    }
    sum.into_iter().map(|x| x / restarts as f64).collect()
}

/// One strategy's figures before the ones that need the others.
fn strategy_stats(
    s: usize,
    name: &str,
    curves: &[Curve],
    areas: &[Vec<f64>],
    mean_rank: f64,
) -> StrategyStats {
    let mine: Vec<&Curve> = curves.iter().filter(|c| c.strategy == name).collect();
    let finals: Vec<f64> = mine
        .iter()
        .filter_map(|c| c.accuracy.last().copied())
        .collect();
    let (area_mean, area_std) = stats::mean_std(&areas[s]);
    let curve = stats::by_x(
        mine.iter()
            .map(|c| c.labels.iter().copied().zip(c.accuracy.iter().copied())),
    )
    .into_iter()
    .map(|(n, at)| CurvePoint {
        labels: n,
        mean: stats::mean_std(&at).0,
        ci: stats::mean_ci(&at, CONFIDENCE),
        runs: at.len(),
    })
    .collect();
    StrategyStats {
        strategy: name.to_string(),
        restarts: areas[s].len(),
        area_mean,
        area_std,
        area_ci: stats::mean_ci(&areas[s], CONFIDENCE),
        final_accuracy_mean: stats::mean_std(&finals).0,
        final_accuracy_ci: stats::mean_ci(&finals, CONFIDENCE),
        mean_rank,
        labels_to_target: None,
        label_savings: None,
        vs_random: None,
        vs_best: None,
        curve,
    }
}

/// The fewest labels where the mean curve, over points all `restarts`
/// reached, is at least `target`.
fn labels_to(curve: &[CurvePoint], target: f64, restarts: usize) -> Option<usize> {
    curve
        .iter()
        .find(|p| p.runs == restarts && p.mean >= target)
        .map(|p| p.labels)
}

/// Writes a comparison under `dir`: `compare.json` (the comparison and
/// `meta`), `ranking.csv`, `pairs.csv`, `curves.csv` (every run's curve)
/// and `report.html`. Each file is written whole or not at all.
pub fn write(
    dir: &Path,
    cmp: &Comparison,
    curves: &[Curve],
    meta: &serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let doc = document(cmp, curves, meta);
    let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::Config(e.to_string()))?;
    let json = dir.join("compare.json");
    crate::atomic::write(&json, |w| {
        w.write_all(text.as_bytes())
            .map_err(|e| Error::io(&json, e))
    })?;
    write_csvs(dir, cmp, curves)?;
    let page = html::page(&doc)?;
    let path = dir.join("report.html");
    crate::atomic::write(&path, |w| {
        w.write_all(page.as_bytes())
            .map_err(|e| Error::io(&path, e))
    })
}

/// The comparison as one JSON document, `compare.json`'s content:
/// `{"meta", "comparison", "curves"}`.
pub fn document(cmp: &Comparison, curves: &[Curve], meta: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "meta": meta, "comparison": cmp, "curves": curves })
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or(String::new(), |x| x.to_string())
}

fn write_csvs(dir: &Path, cmp: &Comparison, curves: &[Curve]) -> Result<()> {
    let path = dir.join("ranking.csv");
    crate::atomic::write(&path, |w| {
        let io = |e| Error::io(&path, e);
        writeln!(w, "strategy,restarts,area_mean,area_std,area_ci_low,area_ci_high,mean_rank,final_accuracy_mean,labels_to_target,label_savings,p_vs_random_holm,p_vs_best_holm,wins_vs_random,ties_vs_random,losses_vs_random").map_err(io)?;
        for s in &cmp.strategies {
            let r = s.vs_random.as_ref();
            writeln!(
                w,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                s.strategy,
                s.restarts,
                s.area_mean,
                s.area_std,
                opt(s.area_ci.map(|c| c.0)),
                opt(s.area_ci.map(|c| c.1)),
                s.mean_rank,
                s.final_accuracy_mean,
                opt(s.labels_to_target),
                opt(s.label_savings),
                opt(r.map(|t| t.p_holm)),
                opt(s.vs_best.as_ref().map(|t| t.p_holm)),
                opt(r.map(|t| t.wins)),
                opt(r.map(|t| t.ties)),
                opt(r.map(|t| t.losses)),
            )
            .map_err(io)?;
        }
        Ok(())
    })?;
    let path = dir.join("pairs.csv");
    crate::atomic::write(&path, |w| {
        let io = |e| Error::io(&path, e);
        writeln!(w, "a,b,wins,ties,losses,statistic,p,p_holm,method").map_err(io)?;
        for p in &cmp.pairs {
            let t = &p.test;
            writeln!(
                w,
                "{},{},{},{},{},{},{},{},{:?}",
                p.a,
                p.b,
                t.wins,
                t.ties,
                t.losses,
                t.wilcoxon.statistic,
                t.wilcoxon.p,
                t.p_holm,
                t.wilcoxon.method
            )
            .map_err(io)?;
        }
        Ok(())
    })?;
    let path = dir.join("curves.csv");
    crate::atomic::write(&path, |w| {
        let io = |e| Error::io(&path, e);
        writeln!(w, "strategy,restart,labels,accuracy").map_err(io)?;
        for c in curves {
            for (l, a) in c.labels.iter().zip(&c.accuracy) {
                writeln!(w, "{},{},{},{}", c.strategy, c.restart, l, a).map_err(io)?;
            }
        }
        Ok(())
    })
}

/// The ranking as a plain-text table, best mean rank first.
pub fn table(cmp: &Comparison) -> String {
    let mut rows: Vec<&StrategyStats> = cmp.strategies.iter().collect();
    rows.sort_by(|a, b| a.mean_rank.total_cmp(&b.mean_rank));
    let mut out = format!(
        "{:<20} {:>8} {:>19} {:>6} {:>9} {:>11} {:>8} {:>10} {:>10}\n",
        "strategy",
        "area",
        "95% CI",
        "rank",
        "final acc",
        "labels→tgt",
        "saved",
        "W/T/L rnd",
        "p vs rnd"
    );
    for s in rows {
        let ci = s
            .area_ci
            .map_or("—".into(), |(lo, hi)| format!("{lo:.4}–{hi:.4}"));
        let r = s.vs_random.as_ref();
        out += &format!(
            "{:<20} {:>8.4} {:>19} {:>6.2} {:>9.4} {:>11} {:>8} {:>10} {:>10}\n",
            s.strategy,
            s.area_mean,
            ci,
            s.mean_rank,
            s.final_accuracy_mean,
            s.labels_to_target.map_or("—".into(), |l| l.to_string()),
            s.label_savings
                .map_or("—".into(), |x| format!("{:.1}%", x * 100.0)),
            r.map_or("—".into(), |t| format!(
                "{}/{}/{}",
                t.wins, t.ties, t.losses
            )),
            r.map_or("—".into(), |t| format!("{:.3}", t.p_holm)),
        );
    }
    out + &format!(
        "area: {}; labels→tgt: labels where the mean curve reaches {:.4} ({}); p: Wilcoxon signed-rank, Holm-corrected",
        cmp.protocol.area.name(),
        cmp.target_accuracy,
        cmp.target_rule
    )
}
