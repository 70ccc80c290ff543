//! `alpool compare`: which strategy for this dataset, answered with
//! statistics under a named protocol, written as JSON, CSV and an HTML
//! report.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::progress::Bar;
use super::simulate::{DataArgs, MethodArg, MethodParser, draws, methods, scaling_notes};
use alpool::compare::{self, Area, Initial, Overrides, Protocol, Scaling};
use alpool::learner::MlpConfig;
use alpool::{Method, Strategy};

#[derive(Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Strategies to compare; include random, the baseline every paired
    /// test and label saving is measured against. Prefix one that scores
    /// rows with power-, softmax- or softrank- to draw its batches (power-bald;
    /// see simulate --help), at --beta.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "random,least-confidence,margin,entropy",
        value_parser = MethodParser
    )]
    pub strategies: Vec<MethodArg>,
    /// The inverse temperature (> 0) of the strategies that draw their
    /// batches (power-bald, …): larger follows the scores more closely
    /// [default: 1].
    #[arg(long, value_name = "B")]
    pub beta: Option<f64>,
    /// The settings: alpool (simulate's defaults: 20% test, 20 random
    /// initial labels, batches of 10 to 300 labels, the MLP, 10 restarts,
    /// mean accuracy over rounds) or lu2023 (Lu et al. 2023: an RBF SVM,
    /// so from Python only). Any flag below overrides its part, and the
    /// protocol is then reported as custom. docs/compare.md cites each.
    #[arg(long, default_value = "alpool", value_name = "NAME")]
    pub protocol: String,
    /// Runs per strategy; restart r uses seed --seed + r for its split,
    /// initial set and model, the same for every strategy.
    #[arg(long)]
    pub restarts: Option<usize>,
    /// Fraction of each class held out as the test set.
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Initial labels drawn at random from the pool.
    #[arg(long, value_name = "N", conflicts_with = "initial_per_class")]
    pub initial: Option<usize>,
    /// Initial labels: this many of each class.
    #[arg(long, value_name = "N")]
    pub initial_per_class: Option<usize>,
    /// Rows queried per round.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Stop at this many labels (the initial ones included).
    #[arg(long, conflicts_with = "until_empty")]
    pub budget: Option<usize>,
    /// Query until the pool is empty.
    #[arg(long)]
    pub until_empty: bool,
    /// Feature scaling, fitted on the pool, never the test rows.
    #[arg(long, value_enum)]
    pub scale: Option<ScalingArg>,
    /// How a curve becomes one number: the mean accuracy over rounds, or
    /// the trapezoid area over the labels' span.
    #[arg(long, value_enum)]
    pub area: Option<AreaArg>,
    /// Members of the committee the disagreement strategies (bald,
    /// vote-entropy, …) and batchbald read: each round trains this many
    /// learners beside the model, each on its own bootstrap resample of the
    /// labels with its own seed; their probabilities are the T samples.
    #[arg(long, value_name = "T", default_value_t = alpool::al::pool_loop::DEFAULT_COMMITTEE, value_parser = crate::cli::simulate::committee_size)]
    pub committee: usize,
    /// MLP hidden layer widths, e.g. 256 or 512,128.
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// MLP epochs per training run.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// MLP dropout after each hidden layer [default: 0].
    #[arg(long, value_name = "P")]
    pub dropout: Option<f32>,
    /// MC dropout instead of a committee: the disagreement strategies and
    /// batchbald read T passes of each round's model with dropout kept on
    /// (needs --dropout P > 0).
    #[arg(long, value_name = "T", default_value_t = 0)]
    pub mc_samples: usize,
    /// The accuracy "labels to target" is measured at [default: random's
    /// final mean accuracy].
    #[arg(long)]
    pub target_accuracy: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder: compare.json, ranking.csv, pairs.csv, curves.csv,
    /// report.html.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScalingArg {
    Auto,
    Standard,
    Minmax,
    None,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AreaArg {
    MeanOverRounds,
    Trapezoid,
}

impl CompareArgs {
    /// The named protocol with the flags' overrides; `custom` if any.
    fn protocol(&self) -> anyhow::Result<Protocol> {
        let o = Overrides {
            restarts: self.restarts,
            test_fraction: self.test_fraction,
            initial: self
                .initial
                .map(Initial::Random)
                .or(self.initial_per_class.map(Initial::PerClass)),
            batch_size: self.batch_size,
            budget: self.budget,
            until_empty: self.until_empty,
            scaling: self.scale.map(|s| match s {
                ScalingArg::Auto => Scaling::Auto,
                ScalingArg::Standard => Scaling::Standard,
                ScalingArg::Minmax => Scaling::Minmax,
                ScalingArg::None => Scaling::None,
            }),
            area: self.area.map(|a| match a {
                AreaArg::MeanOverRounds => Area::MeanOverRounds,
                AreaArg::Trapezoid => Area::Trapezoid,
            }),
        };
        Ok(Protocol::resolve(&self.protocol, &o)?)
    }
}

pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let protocol = a.protocol()?;
    let data = a.data.load()?;
    protocol.check(&data.y)?;
    scaling_notes(protocol.scaling.into(), &data)?;
    let strategies = methods(&a.strategies, a.beta, None)?;
    if !strategies.contains(&Strategy::Random.into()) {
        eprintln!(
            "note: random is not among the strategies: no paired test against it and no label savings"
        );
    }
    let mut mlp = MlpConfig::default();
    if let Some(h) = &a.hidden {
        mlp.hidden = h.clone();
    }
    if let Some(p) = a.dropout {
        mlp.dropout = p;
    }
    if let Some(e) = a.epochs {
        mlp.epochs = e;
    }
    eprintln!(
        "comparing {} on {} ({} rows, {} classes) under protocol {}: {} restarts",
        strategies
            .iter()
            .map(Method::name)
            .collect::<Vec<_>>()
            .join(", "),
        data.name,
        data.rows(),
        data.classes,
        protocol.name,
        protocol.restarts
    );
    let t = Instant::now();
    let bar = Bar::runs((strategies.len() * protocol.restarts) as u64, "compare");
    let runs = compare::run(
        &data,
        &protocol,
        &strategies,
        (a.seed, mlp.clone(), (a.committee, a.mc_samples)),
        &bar,
    )?;
    bar.finish();
    let curves = compare::curves(&runs);
    let names: Vec<String> = strategies.iter().map(Method::name).collect();
    let cmp = compare::summarize(&curves, &names, &protocol, a.target_accuracy)?;
    let meta = serde_json::json!({
        "title": format!("alpool compare: {}", data.name),
        "dataset": data.name, "rows": data.rows(), "features": data.dim, "classes": data.classes,
        "seed": a.seed, "seconds": t.elapsed().as_secs_f64(),
        "learner": { "kind": "mlp", "hidden": mlp.hidden, "epochs": mlp.epochs, "lr": mlp.lr, "min_steps": mlp.min_steps, "dropout": mlp.dropout, "mc_samples": a.mc_samples },
        "stochastic": draws(&strategies),
        "alpool_version": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    compare::write(&a.out, &cmp, &curves, &meta)?;
    println!("{}", compare::table(&cmp));
    println!(
        "{} runs in {:.1} s; wrote compare.json, ranking.csv, pairs.csv, curves.csv and report.html to {}",
        runs.len(),
        t.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}
