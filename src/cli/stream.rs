//! `alpool stream` (stream-based selective sampling) and `alpool
//! synthesize` (membership query synthesis).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::select::StrategyArg;
use super::simulate::{DataArgs, LearnerArgs, parse_range};
use alpool::al::curves;
use alpool::al::pool_loop::{self, LoopConfig, RunResult};
use alpool::al::simulate::{Run, StrategySummary, summarize_names};
use alpool::al::stopping::StopConfig;
use alpool::al::stream::{
    self, Decision, NpyStream, Rule, StreamConfig, StreamScaling, TextStream,
};
use alpool::al::synthesis::{self, Generator, Shape, SynthesisConfig};
use alpool::al::{Dataset, FileOracle, GroundTruth, NearestNeighbour, Oracle, Split};
use alpool::atomic;
use alpool::learner::{Mlp, Scale};
use alpool::{LogBase, Strategy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuleArg {
    /// Query when the uncertainty is at least --threshold.
    Threshold,
    /// Žliobaitė et al.'s variable uncertainty: an adaptive threshold that
    /// spends the budget on the most uncertain recent instances.
    VariableUncertainty,
    /// Query at random with probability --budget (the baseline).
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OracleArg {
    /// Ground-truth labels (--labels), revealed only for queried instances.
    Truth,
    /// A person: queries are written to --queries as JSON lines and each
    /// label is read back as a line from --answers (a file or a pipe).
    Human,
}

#[derive(Args, Debug)]
pub struct OracleArgs {
    /// Who labels queried instances.
    #[arg(long, value_enum, default_value = "truth")]
    pub oracle: OracleArg,
    /// Where --oracle human writes queries.
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,
    /// Where --oracle human reads labels from, one per line.
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
}

impl OracleArgs {
    fn human(
        &self,
        classes: usize,
    ) -> anyhow::Result<FileOracle<std::fs::File, BufReader<std::fs::File>>> {
        let (Some(q), Some(a)) = (&self.queries, &self.answers) else {
            anyhow::bail!("--oracle human needs --queries FILE and --answers FILE");
        };
        let qf =
            std::fs::File::create(q).with_context(|| format!("cannot create {}", q.display()))?;
        let af = std::fs::File::open(a).with_context(|| format!("cannot open {}", a.display()))?;
        Ok(FileOracle::new(qf, BufReader::new(af), classes))
    }
}

#[derive(Args, Debug)]
pub struct StreamArgs {
    /// Stream the rows of this .npy in order (ids = row numbers).
    #[arg(long, value_name = "X.npy", conflicts_with = "stdin")]
    pub features: Option<PathBuf>,
    /// Stream CSV or JSON lines from standard input (ids = line order).
    #[arg(long)]
    pub stdin: bool,
    /// Ground-truth labels by id, for --oracle truth.
    #[arg(long, value_name = "y.npy")]
    pub labels: Option<PathBuf>,
    /// Rows of --features held out as the test set (never streamed), e.g. 0..300.
    #[arg(long, value_name = "A..B")]
    pub test_rows: Option<String>,
    /// Number of classes (default: from --labels).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Uncertainty measure (see README: all in [0, 1], higher = more informative).
    #[arg(short, long, value_enum, default_value = "margin")]
    pub strategy: StrategyArg,
    /// Decision rules to run over the same stream (several need --features).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "variable-uncertainty"
    )]
    pub rules: Vec<RuleArg>,
    /// The threshold rule's threshold.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// The variable-uncertainty rule's adjustment step.
    #[arg(long, default_value_t = 0.01)]
    pub step: f64,
    /// Fraction of instances that may be queried, over every --window.
    #[arg(long, default_value_t = 0.1)]
    pub budget: f64,
    #[arg(long, default_value_t = 1000)]
    pub window: usize,
    /// Labels gathered before the first model.
    #[arg(long, default_value_t = 10)]
    pub seed_size: usize,
    /// Retrain after this many new labels.
    #[arg(long, default_value_t = 10)]
    pub update_every: usize,
    #[arg(long)]
    pub warm_start: bool,
    /// Keep at most this many (most recent) labeled instances.
    #[arg(long, default_value_t = 10_000)]
    pub max_labeled: usize,
    /// Evaluate on the test set every this many instances.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: usize,
    /// Take the feature scaling from this saved model instead of estimating
    /// it on the warm-up window (the instances seen before the first model).
    #[arg(long, value_name = "MODEL.safetensors")]
    pub scale_from: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub oracle: OracleArgs,
    #[command(flatten)]
    pub learner: LearnerArgs,
    /// Output folder: decisions[-RULE].jsonl, prequential.jsonl, summary.json, curves.svg.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Stream items: (id, features).
type Items = Box<dyn Iterator<Item = alpool::Result<(u64, Vec<f32>)>>>;

fn read_labels(path: &Path) -> anyhow::Result<Vec<usize>> {
    use alpool::pool::npy::{self, DType};
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let h = npy::parse_header(
        path,
        &bytes,
        &[DType::I64, DType::I32, DType::U64, DType::U32, DType::U8],
        "labels must be a 1-D integer array",
    )?;
    let mut out = Vec::new();
    for (i, b) in bytes[h.data_offset..]
        .chunks_exact(h.dtype.size())
        .enumerate()
    {
        let v = npy::int_at(h.dtype, b);
        if v < 0 {
            anyhow::bail!("{}: element {i}: label {v} is negative", path.display());
        }
        out.push(v as usize);
    }
    Ok(out)
}

/// The stream's feature scaling: a saved model's, or estimated on the
/// warm-up window.
fn stream_scaling(a: &StreamArgs, dim: usize, unit_images: bool) -> anyhow::Result<StreamScaling> {
    let Some(path) = &a.scale_from else {
        return Ok(match Scale::from(a.learner.scale).resolve(unit_images) {
            Some(kind) => StreamScaling::WarmUp(kind),
            None => StreamScaling::None,
        });
    };
    let model = Mlp::load(path)?;
    match model.scaler() {
        Some(s) if s.dim() == dim => Ok(StreamScaling::Fixed(s.clone())),
        Some(s) => anyhow::bail!(
            "{}: its scaler has {} columns, the stream {dim} features",
            path.display(),
            s.dim()
        ),
        None => anyhow::bail!(
            "{}: the model has no feature scaling to take",
            path.display()
        ),
    }
}

pub fn stream(a: StreamArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let labels = a.labels.as_deref().map(read_labels).transpose()?;
    let classes = a
        .classes
        .or_else(|| labels.as_ref().map(|y| y.iter().max().map_or(0, |m| m + 1)))
        .context("give --classes (or --labels)")?;
    if a.oracle.oracle == OracleArg::Truth && labels.is_none() {
        anyhow::bail!("--oracle truth needs --labels");
    }
    if a.stdin && a.rules.len() > 1 {
        anyhow::bail!("standard input can be streamed once: give one rule, or stream --features");
    }
    let test_rows = a
        .test_rows
        .as_deref()
        .map(parse_range)
        .transpose()?
        .unwrap_or(0..0);
    let (test_x, test_y) = stream_test_set(&a, labels.as_deref(), &test_rows)?;
    let test = (!test_y.is_empty()).then_some(stream::TestSet {
        x: &test_x,
        y: &test_y,
    });
    let mut results = Vec::new();
    for rule_arg in &a.rules {
        let rule = match rule_arg {
            RuleArg::Threshold => Rule::Threshold(a.threshold),
            RuleArg::VariableUncertainty => Rule::VariableUncertainty { step: a.step },
            RuleArg::Random => Rule::Random,
        };
        let s = run_rule(&a, rule, &test_rows, labels.as_deref(), classes, test)?;
        println!(
            "{:<22} seen {:>8}  queried {:>7} ({:.2}%)  final test accuracy {}",
            rule.name(),
            s.seen,
            s.queries,
            100.0 * s.queries as f64 / s.seen.max(1) as f64,
            s.final_accuracy.map_or("n/a".into(), |x| format!("{x:.4}"))
        );
        results.push((rule.name(), s));
    }
    write_stream_reports(&a, &results)
}

/// The fixed test rows of a feature file, with their labels.
fn stream_test_set(
    a: &StreamArgs,
    labels: Option<&[usize]>,
    test_rows: &std::ops::Range<usize>,
) -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
    Ok(match (&a.features, labels) {
        (Some(f), Some(y)) if !test_rows.is_empty() => {
            let s = NpyStream::open(f, 0..0)?;
            let rows: Vec<usize> = test_rows.clone().collect();
            let x: Vec<f32> = rows.iter().flat_map(|&r| s.row(r)).collect();
            (x, rows.iter().map(|&r| y[r]).collect())
        }
        _ => (Vec::new(), Vec::new()),
    })
}

/// The instances to stream (the feature file without its test rows, or
/// standard input), their dimension, and whether they are uint8 images.
fn open_items(
    a: &StreamArgs,
    test_rows: &std::ops::Range<usize>,
) -> anyhow::Result<(Items, usize, bool)> {
    if let Some(f) = &a.features {
        let s = NpyStream::open(f, test_rows.clone())?;
        let (d, u) = (s.dim(), s.unit_images());
        return Ok((Box::new(s), d, u));
    }
    // The dimension comes from the first line.
    let mut t = TextStream::new(BufReader::new(std::io::stdin()), "<stdin>").peekable();
    let d = match t.peek() {
        Some(Ok((_, v))) => v.len(),
        Some(Err(_)) => {
            return Err(t
                .next()
                .and_then(|r| r.err())
                .map(anyhow::Error::from)
                .unwrap_or_else(|| anyhow::anyhow!("bad input")));
        }
        None => anyhow::bail!("standard input is empty"),
    };
    Ok((Box::new(t), d, false))
}

/// One rule over the whole stream; its decisions go to
/// `decisions[-RULE].jsonl` as they are made.
fn run_rule(
    a: &StreamArgs,
    rule: Rule,
    test_rows: &std::ops::Range<usize>,
    labels: Option<&[usize]>,
    classes: usize,
    test: Option<stream::TestSet>,
) -> anyhow::Result<stream::StreamSummary> {
    let (mut source, dim, unit_images) = open_items(a, test_rows)?;
    let cfg = StreamConfig {
        strategy: a.strategy.into(),
        rule,
        budget: a.budget,
        window: a.window,
        seed_size: a.seed_size,
        update_every: a.update_every,
        warm_start: a.warm_start,
        mlp: a.learner.config(a.seed),
        max_labeled: a.max_labeled,
        checkpoint_every: a.checkpoint_every,
        seed: a.seed,
        scaling: stream_scaling(a, dim, unit_images)?,
    };
    let file = match a.rules.len() {
        1 => "decisions.jsonl".to_string(),
        _ => format!("decisions-{}.jsonl", rule.name()),
    };
    let path = a.out.join(&file);
    let mut summary = None;
    atomic::write(&path, |w| {
        let mut on = |d: &Decision| -> alpool::Result<()> {
            writeln!(
                w,
                "{{\"index\":{},\"score\":{},\"queried\":{}}}",
                d.index, d.score, d.queried
            )
            .map_err(|e| alpool::Error::io(&path, e))
        };
        let s = match a.oracle.oracle {
            OracleArg::Truth => {
                let mut o = GroundTruth::new(labels.unwrap_or(&[]));
                stream::run(&mut source, dim, classes, &cfg, &mut o, test, &mut on)
            }
            OracleArg::Human => {
                let mut o = a
                    .oracle
                    .human(classes)
                    .map_err(|e| alpool::Error::Config(e.to_string()))?;
                stream::run(&mut source, dim, classes, &cfg, &mut o, test, &mut on)
            }
        }?;
        summary = Some(s);
        Ok(())
    })?;
    Ok(summary.expect("set by the run"))
}

/// prequential.jsonl, summary.json and curves.svg of the rules' runs.
fn write_stream_reports(
    a: &StreamArgs,
    results: &[(&str, stream::StreamSummary)],
) -> anyhow::Result<()> {
    let mut preq = String::new();
    let mut summaries = Vec::new();
    let mut curves_data = Vec::new();
    for (name, s) in results {
        let checkpoints: Vec<serde_json::Value> = s
            .checkpoints
            .iter()
            .map(|&(seen, l, acc)| serde_json::json!({"seen": seen, "labels": l, "test_accuracy": acc}))
            .collect();
        for c in &checkpoints {
            let mut line = c.clone();
            line["rule"] = serde_json::json!(name);
            preq += &format!("{line}\n");
        }
        curves_data.push(StrategySummary {
            name: name.to_string(),
            aulc_mean: s.checkpoints.iter().map(|c| c.2).sum::<f64>()
                / s.checkpoints.len().max(1) as f64,
            aulc_std: 0.0,
            curve: s
                .checkpoints
                .iter()
                .map(|&(_, l, acc)| (l as usize, acc, 0.0, 1))
                .collect(),
        });
        summaries.push(serde_json::json!({
            "rule": name, "instances_seen": s.seen, "queries": s.queries, "budget": a.budget,
            "final_test_accuracy": s.final_accuracy, "checkpoints": checkpoints,
        }));
    }
    write_text(&a.out.join("prequential.jsonl"), &preq)?;
    let summary =
        serde_json::json!({"strategy": Strategy::from(a.strategy).name(), "rules": summaries});
    write_text(
        &a.out.join("summary.json"),
        &serde_json::to_string_pretty(&summary)?,
    )?;
    if curves_data.iter().any(|c| !c.curve.is_empty()) {
        let title = "stream: test accuracy against labels spent";
        curves::plot(&a.out.join("curves.svg"), title, &curves_data)?;
    }
    Ok(())
}

/// Writes `text` to `path` atomically.
fn write_text(path: &Path, text: &str) -> anyhow::Result<()> {
    atomic::write(path, |w| {
        w.write_all(text.as_bytes())
            .map_err(|e| alpool::Error::io(path, e))
    })?;
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GeneratorArg {
    Boundary,
    Perturb,
}

#[derive(Args, Debug)]
pub struct SynthesizeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Use the embedded digits set (the default when no data is given).
    #[arg(long)]
    pub digits: bool,
    /// Generators to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "boundary,perturb"
    )]
    pub generators: Vec<GeneratorArg>,
    /// Pool-based strategies to compare against, at the same budget.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "margin,random"
    )]
    pub compare: Vec<StrategyArg>,
    /// Image shape of the features, for the perturb generator (e.g. 8x8, 28x28).
    #[arg(long, value_name = "HxW")]
    pub image_shape: Option<Shape>,
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 20)]
    pub seed_size: usize,
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 150)]
    pub budget: usize,
    /// Bisection stops once the model's margin is below this.
    #[arg(long, default_value_t = 0.05)]
    pub tolerance: f64,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub oracle: OracleArgs,
    #[command(flatten)]
    pub learner: LearnerArgs,
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn synthesize(a: SynthesizeArgs) -> anyhow::Result<()> {
    let data = if a.digits || (a.data.features.is_none() && a.data.csv.is_none()) {
        Dataset::digits()
    } else {
        a.data.load()?
    };
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut runs: Vec<Run> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for g in &a.generators {
        let generator = match g {
            GeneratorArg::Boundary => Generator::Boundary,
            GeneratorArg::Perturb => Generator::Perturb,
        };
        names.push(generator.name().into());
        runs.extend(synthesis_runs(&a, &data, generator)?);
    }
    for s in &a.compare {
        let strategy: Strategy = (*s).into();
        names.push(strategy.name().into());
        runs.extend(pool_runs(&a, &data, strategy)?);
    }
    let summary = summarize_names(&runs, &names);
    curves::write_rounds(&a.out, &runs)?;
    let meta = serde_json::json!({
        "dataset": data.name, "budget": a.budget, "seed_size": a.seed_size, "batch_size": a.batch_size,
        "repeats": a.repeats, "oracle_for_synthesized": "label of the nearest real instance (1-NN) among the non-test rows",
    });
    curves::write_summary(&a.out, &summary, &runs, meta)?;
    let title = format!("{}: synthesis vs pool-based", data.name);
    curves::plot(&a.out.join("curves.svg"), &title, &summary)?;
    println!("{}", curves::table(&summary));
    Ok(())
}

/// `generator`'s runs, one per repeat.
fn synthesis_runs(
    a: &SynthesizeArgs,
    data: &Dataset,
    generator: Generator,
) -> anyhow::Result<Vec<Run>> {
    let image = a
        .image_shape
        .or_else(|| (data.name == "digits").then_some(Shape { h: 8, w: 8 }));
    let mut runs = Vec::new();
    for repeat in 0..a.repeats.max(1) {
        let seed = a.seed + repeat as u64;
        let split = Split::stratified(&data.y, a.test_fraction, seed);
        let cfg = SynthesisConfig {
            generator,
            image,
            seed_size: a.seed_size,
            batch_size: a.batch_size,
            budget: a.budget,
            tolerance: a.tolerance,
            mlp: a.learner.config(a.seed),
            seed,
        };
        let result: RunResult = match a.oracle.oracle {
            // The proxy: the nearest real instance's label, among all rows
            // that are not in the test set.
            OracleArg::Truth => {
                let rows = split.pool.clone();
                let mut o = NearestNeighbour { data, rows };
                synthesis::run(data, &split, &cfg, &mut o)?
            }
            OracleArg::Human => {
                let mut o = a.oracle.human(data.classes)?;
                synthesis::run(data, &split, &cfg, &mut o as &mut dyn Oracle)?
            }
        };
        let name = generator.name().into();
        runs.push(Run {
            name,
            repeat,
            result,
        });
    }
    Ok(runs)
}

/// The pool-based comparison runs of `strategy` at the same budget.
fn pool_runs(a: &SynthesizeArgs, data: &Dataset, strategy: Strategy) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for repeat in 0..a.repeats.max(1) {
        let seed = a.seed + repeat as u64;
        let split = Split::stratified(&data.y, a.test_fraction, seed);
        let cfg = LoopConfig {
            strategy: strategy.into(),
            log_base: LogBase::E,
            seed_size: a.seed_size,
            seed_stratified: false,
            batch_size: a.batch_size,
            stop: StopConfig {
                budget: Some(a.budget),
                ..Default::default()
            },
            mlp: a.learner.config(a.seed),
            warm_start: false,
            seed,
            embedding: Default::default(),
            committee: 0,
            mc_samples: 0,
            stochastic: None,
        };
        let result = pool_loop::run(data, &split, &cfg, &mut GroundTruth::new(&data.y), None)?;
        let name = strategy.name().into();
        runs.push(Run {
            name,
            repeat,
            result,
        });
    }
    Ok(runs)
}
