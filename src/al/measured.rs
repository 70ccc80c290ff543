//! What the regression and multi-label loops share: a seeded test split,
//! every (strategy, repeat) run in parallel (`runs_apart`, which
//! `simulate` uses too), random picks, and the report
//! of a loop that measures two test metrics a round (regression: RMSE and
//! R²; multi-label: micro- and macro-F1): per-strategy summaries,
//! `rounds.csv`, `summary.json`, `curves.svg` and the printed table.

use std::path::Path;

use crate::al::curves::{Axis, Series, plot_series};
use crate::atomic;
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::learner::shuffle;
use crate::pool::Exclusions;
use crate::query::{Method, Strategy};
use crate::rng::Rng;
use crate::score::random_priority;
use crate::stats::{by_x, mean_std};

/// A loop's two metrics: the first is the one its AULC ranks by.
#[derive(Clone, Copy, Debug)]
pub struct Metrics {
    /// `summary.json`'s task.
    pub task: &'static str,
    /// File keys: rounds.csv's columns, summary.json's `{key}_aulc_mean`.
    pub keys: [&'static str; 2],
    /// The names the table and the plot print.
    pub titles: [&'static str; 2],
    /// Whether a higher first metric is better (F1) or a lower (RMSE).
    pub higher_is_better: bool,
}

/// The regression loop's metrics.
pub const REGRESSION: Metrics = Metrics {
    task: "regression",
    keys: ["rmse", "r2"],
    titles: ["RMSE", "R²"],
    higher_is_better: false,
};

/// The multi-label loop's metrics.
pub const MULTILABEL: Metrics = Metrics {
    task: "multilabel",
    keys: ["micro_f1", "macro_f1"],
    titles: ["micro-F1", "macro-F1"],
    higher_is_better: true,
};

/// One round: labels, then the two test metrics of the model trained on
/// them.
#[derive(Clone, Debug)]
pub struct Round {
    /// Labeled rows the model trained on.
    pub labels: usize,
    /// The test metrics, in [`Metrics::keys`]' order.
    pub metrics: [f64; 2],
    /// Seconds the next batch's selection took (any committee's training
    /// included).
    pub select_s: f64,
}

/// One strategy's run on one seed.
#[derive(Clone, Debug)]
pub struct Run {
    /// The strategy's name.
    pub name: String,
    /// Which repeat (0-based).
    pub repeat: usize,
    /// Its rounds.
    pub rounds: Vec<Round>,
}

impl Run {
    /// The area under metric `m`'s curve, as the mean over rounds, the
    /// classification loop's AULC rule.
    pub fn aulc(&self, m: usize) -> f64 {
        let sum: f64 = self.rounds.iter().map(|r| r.metrics[m]).sum();
        sum / self.rounds.len().max(1) as f64
    }
}

/// Every (strategy, repeat) pair through `one_run`, in parallel
/// (`runs_apart`: each run on a thread of its own); results in a fixed
/// order (repeat-major), `progress` advanced as each finishes.
pub fn run_all(
    strategies: &[Method],
    repeats: usize,
    progress: &dyn Progress,
    one_run: &(dyn Fn(Method, usize) -> Result<Run> + Sync),
) -> Result<Vec<Run>> {
    let pairs: Vec<(Method, usize)> = (0..repeats.max(1))
        .flat_map(|r| strategies.iter().map(move |&q| (q, r)))
        .collect();
    runs_apart(&pairs, &|&(q, repeat)| {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let run = one_run(q, repeat)?;
        progress.advance(1);
        Ok(run)
    })
}

/// `one` over every item (a loop's runs), the results in the items' order;
/// the first error in that order wins, and no item starts after one.
///
/// With at least as many items as rayon threads, as many OS threads take
/// the items one at a time, each running its item inside a rayon pool of
/// one thread of its own; with fewer, the items run one after another on
/// the whole pool. Why not `par_iter`: a run in the shared pool that waits
/// on a parallel call of its own steals other tasks meanwhile, whole runs
/// among them, and its round's timers counted them (random's first
/// `select_s` read 68 s in a 6-run MNIST simulation, where its pick takes
/// 0.1 ms). Here a run's timers count its own work. Its results do not
/// depend on the thread count, so they are the same either way.
pub(crate) fn runs_apart<T: Sync, R: Send>(
    items: &[T],
    one: &(dyn Fn(&T) -> Result<R> + Sync),
) -> Result<Vec<R>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let threads = rayon::current_num_threads().max(1);
    if items.len() < threads {
        return items.iter().map(one).collect();
    }
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let slots: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Without a pool of its own (the system refused a thread),
                // the run's parallel calls go to the global pool: slower
                // timers, the same results.
                let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().ok();
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = match &pool {
                        Some(p) => p.install(|| one(item)),
                        None => one(item),
                    };
                    failed.fetch_or(result.is_err(), Ordering::Relaxed);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    // Only an error leaves items unstarted, and it is met in order.
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// The pool's rows (ascending) and the test rows of one repeat's split:
/// `fraction` of the `n` rows, seeded.
pub fn split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut Rng::new(seed ^ 0x7465_7374));
    let test_n = (n as f64 * fraction).round() as usize;
    let mut pool = order.split_off(test_n);
    pool.sort_unstable();
    order.sort_unstable();
    (pool, order)
}

/// The first rows labeled: `size` of the `n` pool rows, seeded.
pub fn seed_rows(n: usize, size: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut Rng::new(seed ^ 0x7365_6564));
    order.truncate(size);
    order
}

/// Refuses a split of `rows` rows that holds out no test row or leaves no
/// pool, an empty seed set, a seed set the pool cannot hold, or an empty
/// batch.
pub fn check_sizes(rows: usize, test_fraction: f64, seed_size: usize, batch: usize) -> Result<()> {
    let test = (rows as f64 * test_fraction).round() as usize;
    if !(0.0..1.0).contains(&test_fraction) || test == 0 || seed_size == 0 {
        return Err(Error::Config(format!(
            "the test fraction ({test_fraction}) must hold out at least one row and leave a pool, and the seed set must have a label (got {seed_size})"
        )));
    }
    if seed_size + test > rows || batch == 0 {
        return Err(Error::Config(format!(
            "{rows} rows cannot hold {test} test rows and {seed_size} seed labels, or the batch is empty"
        )));
    }
    Ok(())
}

/// What reports call a dataset read from `features`: its folder's name.
pub fn dataset_name(features: &Path) -> String {
    features
        .parent()
        .and_then(|p| p.file_name())
        .map_or_else(|| "dataset".into(), |s| s.to_string_lossy().into_owned())
}

/// The random strategy over `n` rows: each free row's seeded draw, the `k`
/// largest (ties to the lower row).
pub fn random_picks(n: usize, taken: &Exclusions, k: usize, seed: u64) -> Vec<usize> {
    let mut free: Vec<(f64, usize)> = (0..n)
        .filter(|&r| !taken.contains(r as u64))
        .map(|r| (random_priority(seed, r as u64), r))
        .collect();
    free.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    free.into_iter().take(k).map(|(_, r)| r).collect()
}

/// Per strategy: the AULCs' means over the repeats, the first's standard
/// deviation, and the mean curves.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The strategy's name.
    pub strategy: String,
    /// Each metric's AULC, averaged over the repeats.
    pub aulc_mean: [f64; 2],
    /// The first metric's AULC's sample standard deviation over the
    /// repeats.
    pub aulc_std: f64,
    /// (labels, mean first metric, its std, mean second metric, runs that
    /// reached it).
    pub curve: Vec<(usize, f64, f64, f64, usize)>,
}

/// The summaries, in the order of `names`.
pub fn summarize(runs: &[Run], names: &[String]) -> Vec<Summary> {
    names
        .iter()
        .map(|name| {
            let mine: Vec<&Run> = runs.iter().filter(|r| &r.name == name).collect();
            let aulc = |m: usize| mean_std(&mine.iter().map(|r| r.aulc(m)).collect::<Vec<_>>());
            let curve = |m: usize| {
                by_x(
                    mine.iter()
                        .map(move |r| r.rounds.iter().map(move |x| (x.labels, x.metrics[m]))),
                )
            };
            let curve = curve(0)
                .into_iter()
                .zip(curve(1))
                .map(|((n, a), (_, b))| {
                    let (m, s) = mean_std(&a);
                    (n, m, s, mean_std(&b).0, a.len())
                })
                .collect();
            let (first, std) = aulc(0);
            Summary {
                strategy: name.clone(),
                aulc_mean: [first, aulc(1).0],
                aulc_std: std,
                curve,
            }
        })
        .collect()
}

/// `rounds.csv` (one line per strategy, repeat and round), `summary.json`
/// (per strategy: the AULCs and the mean curve) and `curves.svg` (the mean
/// first metric against labels, ± one standard deviation), each written
/// whole or not at all. `settings` (a JSON object: the run's settings a
/// reader needs, such as each drawn strategy's β) goes into
/// `summary.json` beside the task and the dataset.
pub fn write(
    dir: &Path,
    (runs, summary): (&[Run], &[Summary]),
    (dataset, settings): (&str, &serde_json::Value),
    m: &Metrics,
) -> Result<()> {
    let csv = dir.join("rounds.csv");
    let [k0, k1] = m.keys;
    atomic::write(&csv, |w| {
        let io = |e| Error::io(&csv, e);
        writeln!(w, "strategy,repeat,round,labels,{k0},{k1},select_s").map_err(io)?;
        for r in runs {
            for (i, x) in r.rounds.iter().enumerate() {
                let [a, b] = x.metrics;
                let line = format!(
                    "{},{},{i},{},{a:.6},{b:.6},{:.4}",
                    r.name, r.repeat, x.labels, x.select_s
                );
                writeln!(w, "{line}").map_err(io)?;
            }
        }
        Ok(())
    })?;
    let strategies: Vec<serde_json::Value> = summary
        .iter()
        .map(|s| {
            let mut v = serde_json::json!({"strategy": s.strategy, "curve": s.curve});
            v[format!("{k0}_aulc_mean")] = s.aulc_mean[0].into();
            v[format!("{k0}_aulc_std")] = s.aulc_std.into();
            v[format!("{k1}_aulc_mean")] = s.aulc_mean[1].into();
            v
        })
        .collect();
    let json = dir.join("summary.json");
    let mut v = serde_json::json!({"task": m.task, "dataset": dataset, "strategies": strategies});
    if let Some(extra) = settings.as_object() {
        for (key, value) in extra {
            v[key] = value.clone();
        }
    }
    atomic::write(&json, |w| {
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::Config(e.to_string()))?;
        w.write_all(text.as_bytes())
            .map_err(|e| Error::io(&json, e))
    })?;
    plot(dir, summary, dataset, m)
}

/// `curves.svg`: the mean first metric against labels, ± one standard
/// deviation.
fn plot(dir: &Path, summary: &[Summary], dataset: &str, m: &Metrics) -> Result<()> {
    let t0 = m.titles[0];
    let series: Vec<Series> = summary
        .iter()
        .map(|s| Series {
            name: format!("{} ({t0} AULC {:.4})", s.strategy, s.aulc_mean[0]),
            points: s.curve.iter().map(|c| (c.0, c.1, c.2)).collect(),
        })
        .collect();
    let points = || series.iter().flat_map(|s| s.points.iter());
    let lo = points().map(|c| c.1 - c.2).fold(f64::INFINITY, f64::min);
    let hi = points()
        .map(|c| c.1 + c.2)
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let label = format!("test {t0}");
    let (legend, better) = match m.higher_is_better {
        true => (plotters::prelude::SeriesLabelPosition::LowerRight, "higher"),
        false => (plotters::prelude::SeriesLabelPosition::UpperRight, "lower"),
    };
    let axis = Axis {
        label: &label,
        range: ((lo - pad).max(0.0), hi + pad),
        legend,
    };
    let title = format!("{dataset}: test {t0} against labels ({better} is better)");
    plot_series(&dir.join("curves.svg"), &title, &axis, &series)
}

/// The table printed after a simulation: each strategy's first-metric
/// AULC against random's (a ratio above 1 is better than random when
/// higher is better, below 1 otherwise).
pub fn table(summary: &[Summary], m: &Metrics) -> String {
    let random = summary
        .iter()
        .find(|s| s.strategy == Strategy::Random.name())
        .map(|s| s.aulc_mean[0]);
    let [t0, t1] = m.titles;
    let mut out = format!(
        "{:<14} {:>24} {:>10} {:>16} {:>30}\n",
        "strategy",
        format!("{t0} AULC mean ± std"),
        "vs random",
        format!("{t1} AULC"),
        format!("final {t0} ± std (labels)")
    );
    for s in summary {
        let vs = match random {
            Some(r) if s.strategy != Strategy::Random.name() => {
                format!("{:.3}x", s.aulc_mean[0] / r)
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
            "{:<14} {:>13.5} ± {:<8.5} {:>10} {:>16.4} {:>30}\n",
            s.strategy, s.aulc_mean[0], s.aulc_std, vs, s.aulc_mean[1], last
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_seeded_and_disjoint() {
        let (pool, test) = split(100, 0.2, 7);
        assert_eq!((pool.len(), test.len()), (80, 20));
        assert!(pool.iter().all(|r| !test.contains(r)));
        assert_eq!(split(100, 0.2, 7), (pool, test));
    }

    /// Each run has its thread to itself while it runs: no other run
    /// starts on a thread whose run waits on a parallel call of its own
    /// (in one shared pool they did, and the waiting run's timers counted
    /// them). Results come in order; the first error in order wins.
    #[test]
    fn runs_apart_keeps_each_runs_thread_to_itself() {
        use rayon::prelude::*;
        use std::cell::Cell;
        thread_local!(static RUNNING: Cell<usize> = const { Cell::new(0) });
        let items: Vec<u64> = (0..16).collect();
        let run = |&i: &u64| -> Result<u64> {
            let before = RUNNING.with(|r| r.replace(r.get() + 1));
            assert_eq!(before, 0, "run {i} started beside another on its thread");
            // A parallel call whose tasks wait a little: a waiting run's
            // thread would steal meanwhile, if it could.
            let mut sum = 0;
            for k in 0..4u64 {
                sum += (0..64u64)
                    .into_par_iter()
                    .map(|j| {
                        let wait = 50 * ((i + j + k) % 5);
                        std::thread::sleep(std::time::Duration::from_micros(wait));
                        i * j
                    })
                    .sum::<u64>();
            }
            RUNNING.with(|r| r.set(r.get() - 1));
            Ok(sum)
        };
        // Four threads, however many cores: stealing needs idle hands.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let want: Vec<u64> = items.iter().map(|i| 4 * i * (0..64).sum::<u64>()).collect();
        // A shared pool let a waiting run's thread start another run in
        // about one try of three here; three tries.
        for _ in 0..3 {
            let got = pool.install(|| runs_apart(&items, &run)).unwrap();
            assert_eq!(got, want);
        }
        let failing = |&i: &u64| -> Result<u64> {
            match i {
                2 | 5 => Err(Error::Config(format!("run {i}"))),
                _ => Ok(i),
            }
        };
        let err = runs_apart(&items, &failing).unwrap_err().to_string();
        assert!(err.contains("run 2"), "{err}");
    }
}
