//! `alpool simulate`, `alpool train`, `alpool predict`: the active-learning
//! loop with a simulated oracle, and the learner on its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::select::{LogBaseArg, QueryArg};
use alpool::al::Dataset;
use alpool::al::curves;
use alpool::al::measured;
use alpool::al::multilabel::{MultiLabelData, MultiLabelSim};
use alpool::al::pool_loop::{self, EmbeddingSettings, LoopConfig};
use alpool::al::regression::{RegressionData, RegressionSim};
use alpool::al::simulate::{self, SimConfig, TestSet};
use alpool::al::stopping::{Plateau, Stabilizing, StopConfig, Uncertainty};
use alpool::backend::gpu::Gpu;
use alpool::compare::{self, Area, Initial, LearnerKind, Protocol, Scaling};
use alpool::features::FeaturePool;
use alpool::learner::{Engine, Mlp, MlpConfig, Scale};
use alpool::{LogBase, Method, MultiLabel, Query, Regression, StochasticKind, Strategy};

/// Where the labeled data comes from.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Features: N x D .npy (float32, float16, float64, or uint8 images,
    /// scaled to [0, 1]).
    #[arg(
        long,
        value_name = "X.npy",
        requires = "labels",
        conflicts_with = "csv"
    )]
    pub features: Option<PathBuf>,
    /// Integer labels 0..K-1: a 1-D .npy of length N (a float target with
    /// --task regression).
    #[arg(long, value_name = "y.npy")]
    pub labels: Option<PathBuf>,
    /// A CSV with a header line instead: every column but the label is a feature.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// The CSV's label column [default: "label", else the last column].
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
}

impl DataArgs {
    pub fn load(&self) -> anyhow::Result<Dataset> {
        match (&self.features, &self.labels, &self.csv) {
            (Some(x), Some(y), None) => Ok(Dataset::from_npy(x, y)?),
            (None, None, Some(c)) => Ok(Dataset::from_csv(c, self.label_column.as_deref())?),
            _ => anyhow::bail!("give --features X.npy --labels y.npy, or --csv FILE"),
        }
    }
}

/// The learner's settings.
#[derive(Args, Debug, Clone)]
pub struct LearnerArgs {
    /// Hidden layer widths, e.g. 256 or 512,128.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Minibatch size for training.
    #[arg(long, default_value_t = 32)]
    pub train_batch: usize,
    /// Epochs per training run (raised to reach --min-steps).
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// At least this many gradient steps per training run.
    #[arg(long, default_value_t = 300)]
    pub min_steps: usize,
    /// Fraction of the labeled set held out for early stopping (used from
    /// 50 labels on; 0 = off). Off by default: on a few hundred labels the
    /// slice is too small to stop on (digits AULC, random: 0.846 with 0.1,
    /// 0.891 without).
    #[arg(long, default_value_t = 0.0)]
    pub val_fraction: f64,
    /// Weight the loss by inverse class frequency.
    #[arg(long)]
    pub class_weights: bool,
    /// What trains and runs the model: fused f32 kernels (fast), or
    /// candle's ops and autograd (the reference the fused path is tested
    /// against; several times slower).
    #[arg(long, value_enum, default_value = "fused")]
    pub engine: EngineArg,
    /// Feature scaling, fitted on the pool (never the test rows) and saved
    /// with the model: per-column z-scores (standard), [0, 1] (minmax), or
    /// none. auto = standard, except uint8 images, which keep their [0, 1]
    /// pixel scaling.
    #[arg(long, value_enum, default_value = "auto")]
    pub scale: ScaleArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScaleArg {
    Auto,
    Standard,
    Minmax,
    None,
}

impl From<ScaleArg> for Scale {
    fn from(s: ScaleArg) -> Scale {
        match s {
            ScaleArg::Auto => Scale::Auto,
            ScaleArg::Standard => Scale::Standard,
            ScaleArg::Minmax => Scale::MinMax,
            ScaleArg::None => Scale::None,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EngineArg {
    Fused,
    Candle,
}

impl LearnerArgs {
    pub fn config(&self, seed: u64) -> MlpConfig {
        MlpConfig {
            hidden: self.hidden.clone(),
            dropout: self.dropout,
            lr: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.train_batch,
            epochs: self.epochs,
            min_steps: self.min_steps,
            val_fraction: self.val_fraction,
            patience: 5,
            class_weights: self.class_weights,
            seed,
            engine: match self.engine {
                EngineArg::Fused => Engine::Fused,
                EngineArg::Candle => Engine::Candle,
            },
            scale: self.scale.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    /// Integer class labels; test accuracy and macro-F1 curves.
    Classification,
    /// A float target (--labels y.npy, float32 or float64); the learner
    /// is the MLP with one linear output trained on the mean squared
    /// error of standardized targets; test RMSE and R² curves. Strategies:
    /// random, std (the spread of a --committee bootstrap ensemble), gsx,
    /// gsy, igs.
    Regression,
    /// N x L 0/1 ground truth (--labels Y.npy, any integer or float
    /// dtype); the learner is the MLP with L sigmoid outputs trained on
    /// binary cross-entropy; test micro- and macro-F1 curves (a label is
    /// predicted when σ > 0.5). Strategies: random and the multi-label
    /// family (mean-entropy, max-entropy, min-margin, cardinality,
    /// adaptive, avg-score, max-score).
    Multilabel,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SeedSampling {
    Random,
    Stratified,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// What the labels are.
    #[arg(long, value_enum, default_value = "classification")]
    pub task: TaskArg,
    /// Fraction of each class held out as the test set (stratified, seeded).
    #[arg(long, default_value_t = 0.2, conflicts_with = "test_rows")]
    pub test_fraction: f64,
    /// Fixed test rows instead, e.g. 60000..70000.
    #[arg(long, value_name = "A..B")]
    pub test_rows: Option<String>,
    /// Labels drawn from the pool before the first round.
    #[arg(long, default_value_t = 20)]
    pub seed_size: usize,
    /// How the seed labels are drawn.
    #[arg(long, value_enum, default_value = "random")]
    pub seed_sampling: SeedSampling,
    /// Rows queried per round.
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    /// Stop at this many labels.
    #[arg(long, default_value_t = 300)]
    pub budget: usize,
    /// Strategies to compare [default: random,margin; with --task
    /// regression: random,std,gsx,igs]. Prefix a strategy that scores rows
    /// (row-wise, disagreement, multi-label, std, emcm) with power-,
    /// softmax- or softrank- to
    /// draw each batch at random with chances that grow with the scores,
    /// seeded by the round, instead of taking the k best (stochastic batch
    /// acquisition, Kirsch et al. 2023): power-bald is their PowerBALD.
    /// --beta sets how closely the draws follow the scores.
    #[arg(long, value_delimiter = ',', value_parser = MethodParser)]
    pub strategies: Option<Vec<MethodArg>>,
    /// Embeddings for the strategies that read them (typiclust, probcover,
    /// maxherding, kmeans, density, badge, coreset, cluster-margin): .npy N x D, one row
    /// per dataset row. Default: the learner's last hidden layer, each round.
    #[arg(long, value_name = "E.npy")]
    pub embeddings: Option<PathBuf>,
    /// probcover: the ball radius δ; maxherding: the Gaussian kernel's width
    /// σ. Without it, it is the largest radius whose balls are at least
    /// --purity pure over one k-means cluster per class of the dataset.
    #[arg(long, value_name = "D")]
    pub delta: Option<f64>,
    /// probcover and maxherding without --delta: the fraction of balls that
    /// must hold rows of one cluster only.
    #[arg(long, value_name = "A", default_value_t = 0.95)]
    pub purity: f64,
    /// Weight each row-wise uncertainty strategy by information density
    /// (Settles and Craven 2008): its informativeness times max(0, mean
    /// cosine similarity to the pool)^B over the embeddings (--embeddings,
    /// or the learner's last hidden layer each round). Random stays the
    /// unweighted baseline; batch and cold-start strategies run as they are.
    #[arg(long, value_name = "B")]
    pub density_beta: Option<f64>,
    /// Members of the committee the disagreement strategies (bald,
    /// vote-entropy, …) and batchbald read: each round trains this many
    /// learners beside the model, each on its own bootstrap resample of the
    /// labels with its own seed; their probabilities are the T samples.
    #[arg(long, value_name = "T", default_value_t = alpool::al::pool_loop::DEFAULT_COMMITTEE, value_parser = crate::cli::simulate::committee_size)]
    pub committee: usize,
    /// MC dropout instead of a committee: the disagreement strategies and
    /// batchbald read T passes of the round's model with dropout kept on
    /// (the learner needs --dropout P > 0), masks seeded by the round.
    #[arg(long, value_name = "T", default_value_t = 0)]
    pub mc_samples: usize,
    /// typiclust, kmeans, the δ by purity: Lloyd's k-means assignments at most.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// The inverse temperature (> 0) of the strategies that draw their
    /// batches (power-bald, softmax-margin, …; see --strategies): larger
    /// follows the scores more closely; "inf" is the plain top k
    /// [default: 1].
    #[arg(long, value_name = "B")]
    pub beta: Option<f64>,
    /// Runs per strategy, with seeds --seed, --seed + 1, ...
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Entropy's log base.
    #[arg(long, value_enum, default_value = "e")]
    pub log_base: LogBaseArg,
    /// Stop once test accuracy reaches this.
    #[arg(long)]
    pub target_accuracy: Option<f64>,
    /// Stop after this many rounds without a test-accuracy gain above --min-delta.
    #[arg(long)]
    pub patience: Option<usize>,
    #[arg(long, default_value_t = 0.005)]
    pub min_delta: f64,
    /// Stop once successive models' predictions on a stop set agree with
    /// Cohen's kappa ≥ this for --stable-rounds rounds.
    #[arg(long)]
    pub stabilizing_kappa: Option<f64>,
    #[arg(long, default_value_t = 3)]
    pub stable_rounds: usize,
    /// Rows of the pool in the stop set.
    #[arg(long, default_value_t = 1000)]
    pub stop_set: usize,
    /// Stop once the pool's largest least-confidence score is below this.
    #[arg(long)]
    pub uncertainty_below: Option<f64>,
    /// Use the pool's mean least-confidence score instead of its maximum.
    #[arg(long)]
    pub uncertainty_mean: bool,
    /// Continue training the last round's model instead of retraining.
    #[arg(long)]
    pub warm_start: bool,
    #[command(flatten)]
    pub learner: LearnerArgs,
    /// Score the pool on the GPU.
    #[arg(long)]
    pub gpu: bool,
    /// Output folder: rounds.jsonl, rounds.csv, summary.json, curves.svg.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `A..B` as a range of rows.
pub fn parse_range(s: &str) -> anyhow::Result<std::ops::Range<usize>> {
    let (a, b) = s
        .split_once("..")
        .with_context(|| format!("--test-rows {s:?}: expected A..B"))?;
    Ok(a.trim().parse()?..b.trim().parse()?)
}

pub fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    if a.strategies.is_none() && a.beta.is_some() {
        // The default strategies draw nothing for --beta to set.
        methods(&[], a.beta, None)?;
    }
    if a.task != TaskArg::Classification {
        return simulate_measured(&a);
    }
    let data = a.data.load()?;
    scaling_notes(a.learner.scale.into(), &data)?;
    let strategies: Vec<Method> = match &a.strategies {
        Some(list) => methods(list, a.beta, a.density_beta)?,
        None => vec![Strategy::Random.into(), Strategy::Margin.into()],
    };
    let cfg = SimConfig {
        strategies,
        repeats: a.repeats.max(1),
        test: match &a.test_rows {
            Some(r) => TestSet::Rows(parse_range(r)?),
            None => TestSet::Fraction(a.test_fraction),
        },
        base: LoopConfig {
            strategy: Strategy::Random.into(),
            log_base: match a.log_base {
                LogBaseArg::Two => LogBase::Two,
                LogBaseArg::E => LogBase::E,
                LogBaseArg::Ten => LogBase::Ten,
            },
            seed_size: a.seed_size,
            seed_stratified: matches!(a.seed_sampling, SeedSampling::Stratified),
            batch_size: a.batch_size,
            stop: StopConfig {
                budget: Some(a.budget),
                target_accuracy: a.target_accuracy,
                plateau: a.patience.map(|patience| Plateau {
                    min_delta: a.min_delta,
                    patience,
                }),
                stabilizing: a.stabilizing_kappa.map(|kappa| Stabilizing {
                    kappa,
                    rounds: a.stable_rounds,
                    stop_set: a.stop_set,
                }),
                uncertainty: a.uncertainty_below.map(|threshold| Uncertainty {
                    threshold,
                    mean: a.uncertainty_mean,
                }),
            },
            mlp: a.learner.config(a.seed),
            warm_start: a.warm_start,
            seed: a.seed,
            embedding: EmbeddingSettings {
                given: match &a.embeddings {
                    Some(p) => Some(Arc::new(FeaturePool::open(std::slice::from_ref(p))?)),
                    None => None,
                },
                iterations: a.iterations as usize,
                delta: a.delta,
                purity: a.purity,
                density_beta: a.density_beta,
            },
            committee: a.committee,
            mc_samples: a.mc_samples,
            stochastic: None,
        },
    };
    let gpu = if a.gpu { Some(Gpu::new(None)?) } else { None };
    run_and_report(&data, &cfg, gpu.as_ref(), &a.out)
}

/// The strategies of `--strategies`, each drawn one at inverse temperature
/// `beta` (1 if not given); refuses a prefix on a strategy that cannot draw,
/// and `--beta` with nothing to draw.
pub fn methods(
    list: &[MethodArg],
    beta: Option<f64>,
    density_beta: Option<f64>,
) -> anyhow::Result<Vec<Method>> {
    let out = list
        .iter()
        .map(|m| Method::new(m.query, m.kind, beta.unwrap_or(1.0)))
        .collect::<Result<Vec<Method>, String>>()
        .map_err(|e| anyhow::anyhow!("--strategies {e}"))?;
    for m in &out {
        if let Some(st) = m.stochastic {
            pool_loop::check_stochastic(m.query, st, density_beta)
                .with_context(|| format!("--strategies {}", m.name()))?;
        }
    }
    if let Some(b) = beta
        && out.iter().all(|m| m.stochastic.is_none())
    {
        anyhow::bail!(
            "--beta {b} sets the draws of power-, softmax- and softrank- strategies, and none is listed (e.g. --strategies margin,power-margin)"
        );
    }
    Ok(out)
}

/// The strategies that draw their batches, for the reports' settings:
/// `[{strategy, kind, beta}]`, an infinite β as "inf" (JSON has no
/// infinity), as `alpool.compare` writes them.
pub fn draws(methods: &[Method]) -> serde_json::Value {
    methods
        .iter()
        .filter_map(|m| {
            let st = m.drawn()?;
            let beta = match st.beta.is_finite() {
                true => serde_json::json!(st.beta),
                false => "inf".into(),
            };
            Some(serde_json::json!({ "strategy": m.name(), "kind": st.kind.name(), "beta": beta }))
        })
        .collect()
}

/// A strategy of `simulate --strategies` and `compare --strategies`: any
/// strategy, or one prefixed by a stochastic batch's kind (`power-bald`).
#[derive(Clone, Copy, Debug)]
pub struct MethodArg {
    query: Query,
    kind: Option<StochasticKind>,
}

/// Parses [`MethodArg`]; `--help` lists the strategies as `select`'s do.
#[derive(Clone)]
pub struct MethodParser;

impl clap::builder::TypedValueParser for MethodParser {
    type Value = MethodArg;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<MethodArg, clap::Error> {
        let text = value.to_string_lossy();
        let (kind, name) = Method::split_kind(&text);
        let q = clap::builder::EnumValueParser::<QueryArg>::new()
            .parse_ref(cmd, arg, std::ffi::OsStr::new(name))
            .map_err(|e| match kind {
                // Name the whole value, not the strategy after the prefix.
                Some(_) => clap::Error::raw(
                    clap::error::ErrorKind::InvalidValue,
                    format!(
                        "invalid value '{text}' for '--strategies': '{name}' is not a strategy (see --help)\n"
                    ),
                )
                .with_cmd(cmd),
                None => e,
            })?;
        Ok(MethodArg { query: q.0, kind })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            QueryArg::value_variants()
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}

/// `simulate --task regression | multilabel`: the loop, its files and its
/// table.
fn simulate_measured(a: &SimulateArgs) -> anyhow::Result<()> {
    let task = a.task.to_possible_value().map(|v| v.get_name().to_string());
    let task = task.unwrap_or_default();
    let (Some(x), Some(y)) = (&a.data.features, &a.data.labels) else {
        anyhow::bail!(
            "--task {task} reads --features X.npy and --labels Y.npy ({})",
            match a.task {
                TaskArg::Regression => "a float target",
                _ => "N x L 0/1 ground truth",
            }
        );
    };
    if a.test_rows.is_some() {
        anyhow::bail!("--task {task} holds out --test-fraction of the rows (no --test-rows)");
    }
    let t0 = Instant::now();
    let (runs, strategies, name, metrics) = run_measured(a, x, y)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("could not create {}", a.out.display()))?;
    let names: Vec<String> = strategies.iter().map(Method::name).collect();
    let summary = measured::summarize(&runs, &names);
    let settings = serde_json::json!({ "stochastic": draws(&strategies) });
    measured::write(&a.out, (&runs, &summary), (&name, &settings), &metrics)?;
    print!("{}", measured::table(&summary, &metrics));
    eprintln!(
        "alpool: {} runs in {:.1} s; rounds.csv, summary.json and curves.svg in {}",
        runs.len(),
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

/// The runs of `simulate --task regression | multilabel` on features `x`
/// and labels `y`: the runs, the strategies, the dataset's name and the
/// metrics.
fn run_measured(
    a: &SimulateArgs,
    x: &Path,
    y: &Path,
) -> anyhow::Result<(Vec<measured::Run>, Vec<Method>, String, measured::Metrics)> {
    let given: Option<Vec<Method>> = match &a.strategies {
        Some(list) => Some(methods(list, a.beta, None)?),
        None => None,
    };
    let random = Method::from(Strategy::Random);
    let runs_of = |strategies: &[Method], run: &dyn Fn(&dyn alpool::Progress) -> _| {
        let bar =
            super::progress::Bar::runs((strategies.len() * a.repeats.max(1)) as u64, "simulate");
        let runs: alpool::Result<Vec<measured::Run>> = run(&bar);
        bar.finish();
        runs
    };
    if a.task == TaskArg::Regression {
        let data = RegressionData::from_npy(x, y)?;
        let strategies = given.unwrap_or_else(|| {
            let default = [Regression::Std, Regression::Gsx, Regression::Igs];
            [random]
                .into_iter()
                .chain(default.map(|r| Query::Regress(r).into()))
                .collect()
        });
        let cfg = RegressionSim {
            strategies: strategies.clone(),
            repeats: a.repeats.max(1),
            seed: a.seed,
            test_fraction: a.test_fraction,
            seed_size: a.seed_size,
            batch_size: a.batch_size,
            budget: a.budget,
            mlp: a.learner.config(a.seed),
            committee: a.committee,
            mc_samples: a.mc_samples,
        };
        let runs = runs_of(&strategies, &|bar| {
            alpool::al::regression::simulate(&data, &cfg, bar)
        })?;
        Ok((runs, strategies, data.name, measured::REGRESSION))
    } else {
        let data = MultiLabelData::from_npy(x, y)?;
        let strategies = given.unwrap_or_else(|| {
            let default = [MultiLabel::MeanEntropy, MultiLabel::MinMargin];
            [random]
                .into_iter()
                .chain(default.map(|m| Query::Multi(m).into()))
                .collect()
        });
        let cfg = MultiLabelSim {
            strategies: strategies.clone(),
            repeats: a.repeats.max(1),
            seed: a.seed,
            test_fraction: a.test_fraction,
            seed_size: a.seed_size,
            batch_size: a.batch_size,
            budget: a.budget,
            mlp: a.learner.config(a.seed),
        };
        let runs = runs_of(&strategies, &|bar| {
            alpool::al::multilabel::simulate(&data, &cfg, bar)
        })?;
        Ok((runs, strategies, data.name, measured::MULTILABEL))
    }
}

/// Runs a simulation, writes its files to `out` and prints the table.
pub fn run_and_report(
    data: &Dataset,
    cfg: &SimConfig,
    gpu: Option<&Gpu>,
    out: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    eprintln!(
        "simulating {} on {} ({} rows x {} features, {} classes): {} repeat(s), seed {} labels, batches of {}, budget {}",
        cfg.names().join(", "),
        data.name,
        data.rows(),
        data.dim,
        data.classes,
        cfg.repeats,
        cfg.base.seed_size,
        cfg.base.batch_size,
        cfg.base
            .stop
            .budget
            .map_or("none".into(), |b| b.to_string())
    );
    let t = Instant::now();
    let runs = simulate::run(data, cfg, gpu)?;
    let summary = simulate::summarize_names(&runs, &cfg.names());
    let meta = serde_json::json!({
        "dataset": data.name, "rows": data.rows(), "features": data.dim, "classes": data.classes,
        "repeats": cfg.repeats, "seed_size": cfg.base.seed_size, "batch_size": cfg.base.batch_size,
        "budget": cfg.base.stop.budget, "seconds": t.elapsed().as_secs_f64(),
        "learner": { "hidden": cfg.base.mlp.hidden, "lr": cfg.base.mlp.lr, "epochs": cfg.base.mlp.epochs, "min_steps": cfg.base.mlp.min_steps },
        "stochastic": draws(&cfg.strategies),
    });
    curves::write_rounds(out, &runs)?;
    curves::write_summary(out, &summary, &runs, meta.clone())?;
    curves::plot(
        &out.join("curves.svg"),
        &format!("{}: test accuracy against labels", data.name),
        &summary,
    )?;
    report(data, cfg, &runs, meta, out)?;
    println!("{}", curves::table(&summary));
    println!(
        "{} runs in {:.1} s; wrote rounds.jsonl, rounds.csv, summary.json, curves.svg and the comparison (report.html, compare.json, ranking.csv, pairs.csv, curves.csv) to {}",
        runs.len(),
        t.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// The simulation as a comparison (`alpool compare`'s statistics and
/// report page), its settings described as a protocol.
fn report(
    data: &Dataset,
    cfg: &SimConfig,
    runs: &[simulate::Run],
    mut meta: serde_json::Value,
    out: &Path,
) -> anyhow::Result<()> {
    let (test_fraction, source) = match &cfg.test {
        TestSet::Fraction(f) => (*f, "alpool simulate's flags".to_string()),
        TestSet::Rows(r) => (
            r.len() as f64 / data.rows().max(1) as f64,
            format!("alpool simulate's flags; test rows {}..{}", r.start, r.end),
        ),
    };
    let b = &cfg.base;
    let protocol = Protocol {
        name: "simulate".into(),
        source,
        test_fraction,
        initial: if b.seed_stratified {
            Initial::Stratified(b.seed_size)
        } else {
            Initial::Random(b.seed_size)
        },
        batch_size: b.batch_size,
        budget: b.stop.budget,
        scaling: match b.mlp.scale {
            Scale::Auto => Scaling::Auto,
            Scale::Standard => Scaling::Standard,
            Scale::MinMax => Scaling::Minmax,
            Scale::None => Scaling::None,
        },
        learner: LearnerKind::Mlp,
        restarts: cfg.repeats,
        area: Area::MeanOverRounds,
    };
    let curves = compare::curves(runs);
    let cmp = compare::summarize(&curves, &cfg.names(), &protocol, None)?;
    meta["title"] = format!("alpool simulate: {}", data.name).into();
    compare::write(out, &cmp, &curves, &meta)?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub learner: LearnerArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A multi-label model: --labels is N x L 0/1 ground truth (any
    /// integer or float dtype), and the model has L independent sigmoid
    /// outputs trained on binary cross-entropy; `alpool predict` then writes
    /// a --input multilabel pool, and `select --model` reads it as one.
    #[arg(long)]
    pub multilabel: bool,
    /// A regressor: --labels is N float targets (NaN or infinite refused
    /// by row), and the model has one linear output trained on the mean
    /// squared error of the standardized targets; `alpool predict` then
    /// writes N x 1 predictions, and `select --model` with --mc-samples
    /// reads its MC-dropout passes for std (--input regression-samples).
    #[arg(long, conflicts_with = "multilabel")]
    pub regression: bool,
    /// Model file (safetensors); the config goes beside it as .json.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Tells the user, on stderr, what to know about the feature scaling: the
/// constant columns a scaler leaves alone, or raw columns on very
/// different scales fed to the learner unscaled.
pub fn scaling_notes(scale: Scale, data: &Dataset) -> anyhow::Result<()> {
    match data.scaler(scale, None)? {
        Some(s) => {
            if let Some(note) = s.note() {
                eprintln!("note: {note}");
            }
        }
        None if !data.unit_images => {
            let stats = data.column_stats(None);
            if let Some(w) = stats.range_warning(RANGE_WARNING_FACTOR) {
                eprintln!("warning: {w}");
            }
        }
        None => {}
    }
    Ok(())
}

/// Column ranges further apart than this get a warning under `--scale none`.
pub const RANGE_WARNING_FACTOR: f64 = 1000.0;

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    if a.multilabel || a.regression {
        return train_targets(&a);
    }
    let data = a.data.load()?;
    let scale = Scale::from(a.learner.scale);
    scaling_notes(scale, &data)?;
    let mut m = Mlp::new(data.dim, data.classes, a.learner.config(a.seed))?
        .with_scaler(data.scaler(scale, None)?)?;
    let t = Instant::now();
    let r = m.fit(&data.features(), &data.y)?;
    m.save(&a.out)?;
    eprintln!(
        "trained on {} rows in {:.2} s ({} epochs, {} steps): training accuracy {:.4} → {:.4}; saved {}",
        data.rows(),
        t.elapsed().as_secs_f64(),
        r.epochs,
        r.steps,
        r.train_accuracy_before,
        r.train_accuracy,
        a.out.display()
    );
    Ok(())
}

/// `train --multilabel` and `train --regression`: the learner on N x L
/// 0/1 labels or N float targets.
fn train_targets(a: &TrainArgs) -> anyhow::Result<()> {
    let (Some(x), Some(y)) = (&a.data.features, &a.data.labels) else {
        anyhow::bail!(
            "train --multilabel and --regression read --features X.npy and --labels Y.npy (N x L 0/1, or N floats)"
        );
    };
    let config = a.learner.config(a.seed);
    let t = Instant::now();
    let (m, r, rows, (what, measure)) = if a.regression {
        let data = RegressionData::from_npy(x, y)?;
        let (m, r) = data.train(config)?;
        (
            m,
            r,
            data.rows(),
            ("a regressor".to_string(), "training R²"),
        )
    } else {
        let data = MultiLabelData::from_npy(x, y)?;
        let (m, r) = data.train(config)?;
        let what = format!("{} sigmoid outputs", data.labels());
        (m, r, data.rows(), (what, "(row, label) pairs right"))
    };
    m.save(&a.out)?;
    eprintln!(
        "trained {what} on {rows} rows in {:.2} s ({} epochs, {} steps): {measure} {:.4} → {:.4}; saved {}",
        t.elapsed().as_secs_f64(),
        r.epochs,
        r.steps,
        r.train_accuracy_before,
        r.train_accuracy,
        a.out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A model saved by `alpool train`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Features: N x D .npy.
    #[arg(long, value_name = "X.npy")]
    pub features: PathBuf,
    /// Output: N x C float32 probabilities, a pool for `alpool select`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn predict(a: PredictArgs) -> anyhow::Result<()> {
    use alpool::pool::npy::{self, DType};
    let m = Mlp::load(&a.model)?;
    // Memory-mapped and predicted in blocks, the output written as it goes:
    // memory stays bounded however many rows the file has.
    let features = alpool::features::FeaturePool::open(&[&a.features])?;
    let rows = features.rows() as usize;
    let t = Instant::now();
    let bar = super::progress::Bar::bytes(features.data_bytes(), false, "predict");
    let io = |e| alpool::Error::io(&a.out, e);
    let r = alpool::atomic::write(&a.out, |w| {
        w.write_all(&npy::encode_header(DType::F32, &[rows, m.classes()]))
            .map_err(io)?;
        features.predict_blocks(&m, &bar, &mut |_, p| {
            w.write_all(bytemuck::cast_slice(p)).map_err(io)
        })
    });
    bar.finish();
    r?;
    eprintln!(
        "predicted {rows} rows in {:.2} s ({:.0} rows/s); wrote {}",
        t.elapsed().as_secs_f64(),
        rows as f64 / t.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

/// `--committee T`: two members at least, or there is no disagreement.
pub fn committee_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(t) if t >= 2 => Ok(t),
        Ok(t) => Err(format!(
            "a committee of {t} cannot disagree; give at least 2 members"
        )),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}
