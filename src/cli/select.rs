//! `alpool select` and `alpool score`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use std::sync::LazyLock;

use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};

use super::progress::Bar;
use alpool::backend::Phases;
use alpool::features::FeaturePool;
use alpool::learner::Mlp;
use alpool::part::PartHeader;
use alpool::pool::ReadPath;
use alpool::query::{Regression, RegressionInput, default_sum_tol};
use alpool::{
    BatchStrategy, Device, Exclusions, InputForm, Inputs, Job, LogBase, Pool, Query, Run,
    SampleLayout, Samples, Stochastic, StochasticKind, Strategy, report,
};

/// A row-wise strategy, by the library's name for it: the list and each
/// one's help come from [`Strategy`], so a new strategy needs nothing here.
#[derive(Clone, Copy, Debug)]
pub struct StrategyArg(pub Strategy);

impl ValueEnum for StrategyArg {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: LazyLock<Vec<StrategyArg>> =
            LazyLock::new(|| Strategy::ALL.into_iter().map(StrategyArg).collect());
        &ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let q = Query::Score(self.0);
        Some(PossibleValue::new(q.name()).help(q.summary()))
    }
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        s.0
    }
}

/// Every strategy `select` runs, row-wise and batch-aware, from [`Query`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryArg(pub Query);

impl ValueEnum for QueryArg {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: LazyLock<Vec<QueryArg>> =
            LazyLock::new(|| Query::all().into_iter().map(QueryArg).collect());
        &ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.name()).help(self.0.summary()))
    }
}

impl From<QueryArg> for Query {
    fn from(s: QueryArg) -> Query {
        s.0
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LayoutArg {
    /// T x N x C: each sample's N x C predictions in turn (np.stack of T).
    Tnc,
    /// N x T x C: each row's T samples together.
    Ntc,
}

impl From<LayoutArg> for SampleLayout {
    fn from(l: LayoutArg) -> SampleLayout {
        match l {
            LayoutArg::Tnc => SampleLayout::Tnc,
            LayoutArg::Ntc => SampleLayout::Ntc,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StochasticArg {
    /// Chance ∝ score^β (1 − margin for margin): Kirsch et al.'s choice for
    /// BALD.
    Power,
    /// Chance ∝ exp(β · score) (−margin for margin).
    Softmax,
    /// Chance ∝ rank^−β; holds 16 bytes per row to rank the whole pool, and
    /// writes no parts.
    Softrank,
}

impl From<StochasticArg> for StochasticKind {
    fn from(s: StochasticArg) -> StochasticKind {
        match s {
            StochasticArg::Power => StochasticKind::Power,
            StochasticArg::Softmax => StochasticKind::Softmax,
            StochasticArg::Softrank => StochasticKind::Softrank,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InputArg {
    /// Rows are probabilities: finite, ≥ 0, summing to 1 (see --sum-tol).
    Probs,
    /// Rows are logits; alpool applies a numerically stable softmax.
    Logits,
    /// A multi-label pool: N x L independent sigmoid outputs, each in
    /// [0, 1] (rows need not sum to anything), for the multi-label
    /// strategies (mean-entropy, max-entropy, min-margin, cardinality,
    /// adaptive, avg-score, max-score).
    Multilabel,
    /// A multi-label pool of logits: p = 1 / (1 + e^−z) per label.
    MultilabelLogits,
    /// A regression model's predictions, one a row (N or N x 1), for gsy
    /// and igs.
    Regression,
    /// A regression model's (mean, std) rows, N x 2: std ranks by the std,
    /// gsy and igs read the mean.
    RegressionMeanStd,
    /// T predictions a row from an ensemble or MC dropout, T x N
    /// (sample-major) or T files of N, for std.
    RegressionSamples,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogBaseArg {
    #[value(name = "2")]
    Two,
    #[value(name = "e")]
    E,
    #[value(name = "10")]
    Ten,
}

/// Options shared by every command that reads a pool.
#[derive(Args, Debug, Clone)]
pub struct PoolArgs {
    /// Pool files (.npy, N x C, float32, float16 or float64, C order). Several files
    /// are shards of one pool: the global row index counts across them in
    /// the order given.
    #[arg(value_name = "POOL")]
    pub pools: Vec<PathBuf>,

    /// Score the pool a saved model (`alpool train`) makes of feature files
    /// instead of a probability file: blocks of rows go through the model,
    /// softmax, the score and the top k on the fly, with no N x C matrix
    /// anywhere — exactly what `alpool predict` then `select` gives. With
    /// --device gpu the layers run in WGSL too, and the GPU's candidates
    /// are re-scored by the CPU model (same selection). Several models are
    /// a committee: each block's T members' probabilities are the samples
    /// the disagreement strategies (bald, vote-entropy, …) read, exactly
    /// what `--samples` of the members' `alpool predict` files gives, with
    /// no T x N x C array anywhere.
    #[arg(
        long,
        value_name = "MODEL.safetensors",
        num_args = 1..,
        requires = "features",
        conflicts_with = "pools"
    )]
    pub model: Vec<PathBuf>,

    /// Feature files for --model (.npy N x D: float32, float16, float64, or
    /// uint8 images read as [0, 1]); several are shards of one pool.
    #[arg(long, value_name = "X.npy", num_args = 1.., requires = "model")]
    pub features: Vec<PathBuf>,

    /// MC dropout (Gal and Ghahramani 2016): T passes of the --model (one,
    /// trained with --dropout) with dropout kept on at inference are the
    /// samples the disagreement strategies (bald, mean-std, …) read, block
    /// by block, with no T x N x C array. Each pass is one thinned network,
    /// the same for every row (consistent masks, as BatchBALD needs),
    /// seeded by --seed per (pass, layer, unit): the same samples on any
    /// machine, thread count or shard split.
    #[arg(long, value_name = "T", requires = "model")]
    pub mc_samples: Option<usize>,

    /// Query strategy.
    #[arg(short, long, value_enum, default_value = "margin")]
    pub strategy: QueryArg,

    /// T samples of the probabilities, for the disagreement strategies
    /// (bald, mean-std, variation-ratio, vote-entropy, consensus-entropy,
    /// kl-mean, kl-max): one .npy of T x N x C (N x T x C with --layout
    /// ntc), or T files of N x C, one per sample (MC-dropout passes,
    /// committee members). Read in chunks, never whole; --input, --sum-tol
    /// and --renormalize apply to every sample.
    #[arg(long, value_name = "S.npy", num_args = 1..)]
    pub samples: Vec<PathBuf>,

    /// How a 3-D --samples file is laid out.
    #[arg(long, value_enum, default_value = "tnc")]
    pub layout: LayoutArg,

    /// What the rows hold.
    #[arg(long, value_enum, default_value = "probs")]
    pub input: InputArg,

    /// Softmax temperature for --input logits: p = softmax(z / T).
    #[arg(long, default_value_t = 1.0, value_name = "T")]
    pub temperature: f64,

    /// Accept probability rows that do not sum to 1 and divide each row by
    /// its sum instead of rejecting it.
    #[arg(long)]
    pub renormalize: bool,

    /// How far a probability row's sum may be from 1 [default: 1e-3 for
    /// float32, 1e-2 for float16].
    #[arg(long, value_name = "TOL")]
    pub sum_tol: Option<f64>,

    /// Logarithm base of the entropy.
    #[arg(long, value_enum, default_value = "e")]
    pub log_base: LogBaseArg,

    /// Multi-label cardinality and adaptive: the labeled set's mean label
    /// count (how many labels a labeled item carries, on average).
    #[arg(long, value_name = "C")]
    pub label_cardinality: Option<f64>,

    /// Multi-label adaptive: β in [0, 1], the weight of the separation
    /// margin's uncertainty against the cardinality inconsistency.
    #[arg(long, value_name = "B", default_value_t = alpool::query::DEFAULT_UNCERTAINTY_WEIGHT)]
    pub uncertainty_weight: f64,

    /// Seed of the random strategy, of --stochastic's draws and of batchbald's sampled configurations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,

    /// Print what was done and how long it took to stderr.
    #[arg(short, long)]
    pub verbose: bool,

    /// Rows per unit of parallel work, 0 = auto (results never depend on it).
    #[arg(long, default_value_t = 0, hide = true)]
    pub chunk_rows: u64,

    /// How pool files are read: positioned reads into each worker's buffer
    /// (read); the same with drop-behind, leaving the page cache as it was
    /// (stream); a memory map (map); auto = read, or stream for pools
    /// larger than half the machine's memory. Selections never depend on it.
    #[arg(long, value_enum, default_value = "auto")]
    pub read: ReadArg,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ReadArg {
    Auto,
    Read,
    Stream,
    Map,
}

impl From<ReadArg> for ReadPath {
    fn from(r: ReadArg) -> ReadPath {
        match r {
            ReadArg::Auto => ReadPath::Auto,
            ReadArg::Read => ReadPath::Read,
            ReadArg::Stream => ReadPath::Stream,
            ReadArg::Map => ReadPath::Map,
        }
    }
}

impl PoolArgs {
    /// The job for `k` rows, for inputs with float16 probabilities or not
    /// (a looser default sum tolerance).
    pub fn job(&self, f16: bool, k: usize) -> Job {
        let mut job = Job::new(Query::from(self.strategy), self.input_form(f16), k)
            .seed(self.seed)
            .log_base(self.log_base.into());
        job.chunk_rows = self.chunk_rows;
        job.label_cardinality = self.label_cardinality;
        job.uncertainty_weight = self.uncertainty_weight;
        job
    }

    /// What the rows hold, for a pool with float16 shards or not.
    pub fn input_form(&self, f16: bool) -> InputForm {
        match self.input {
            InputArg::Probs => InputForm::Probs {
                renormalize: self.renormalize,
                sum_tol: self.sum_tol.unwrap_or_else(|| default_sum_tol(f16)),
            },
            InputArg::Logits => InputForm::Logits {
                temperature: self.temperature,
            },
            InputArg::Multilabel => InputForm::MultiLabel { logits: false },
            InputArg::MultilabelLogits => InputForm::MultiLabel { logits: true },
            InputArg::Regression => InputForm::Regression(RegressionInput::Predictions),
            InputArg::RegressionMeanStd => InputForm::Regression(RegressionInput::MeanStd),
            InputArg::RegressionSamples => InputForm::Regression(RegressionInput::Samples),
        }
    }
}

impl From<LogBaseArg> for LogBase {
    fn from(b: LogBaseArg) -> LogBase {
        match b {
            LogBaseArg::Two => LogBase::Two,
            LogBaseArg::E => LogBase::E,
            LogBaseArg::Ten => LogBase::Ten,
        }
    }
}

impl From<DeviceArg> for Device {
    fn from(d: DeviceArg) -> Device {
        match d {
            DeviceArg::Auto => Device::Auto,
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Gpu => Device::Gpu,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The GPU when a hardware adapter exists and the pool is large enough
    /// to gain (≥ 256 MiB), otherwise the CPU; -v says which and why.
    Auto,
    /// The rayon CPU path.
    Cpu,
    /// The wgpu path; an error if no adapter is found.
    Gpu,
}

#[derive(Args, Debug)]
pub struct SelectArgs {
    #[command(flatten)]
    pub pool: PoolArgs,

    /// Where to score. Either device selects the same rows with the same
    /// scores. A query with no GPU path yet (softrank batches; the
    /// row-wise disagreement strategies over samples a model makes in the
    /// run) stays on the CPU under auto and is refused by name under gpu.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,

    /// Use the GPU adapter whose name contains this text (see `alpool devices`).
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,

    /// Also run the CPU path and fail if the selections differ.
    #[arg(long)]
    pub verify: bool,

    /// Rows to select. 0 selects nothing; k ≥ N ranks every row.
    #[arg(short, default_value_t = 100, conflicts_with = "all")]
    pub k: usize,

    /// Rank every row of the pool (k = N).
    #[arg(long)]
    pub all: bool,

    /// Rows never to select (already labeled): a text file with one global
    /// row index per line, or a 1-D integer .npy.
    #[arg(long, value_name = "FILE")]
    pub exclude: Option<PathBuf>,

    /// gsy, igs: the pool's regression targets, .npy of N values (or N x 1)
    /// with NaN for unlabeled rows. The labeled rows are --exclude's, or,
    /// without it, every row whose target is not NaN.
    #[arg(long, value_name = "y.npy")]
    pub targets: Option<PathBuf>,

    /// Output file; the format follows the extension: .csv (rank,index,score),
    /// .jsonl, .npy (int64 indices, best first), or .alpart (a part for
    /// `alpool merge`: priorities, global rows and the job). Default: CSV to
    /// stdout.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// The global index of this pool's first row, when it is one machine's
    /// part of a bigger pool: output indices are global, and --exclude
    /// lists global indices (those outside this machine's rows are
    /// ignored).
    #[arg(long, value_name = "R")]
    pub row_offset: Option<u64>,

    /// Embeddings for the batch strategies (badge, coreset, cluster-margin):
    /// .npy N x D (float32, float16 or float64, read as float32), one row
    /// per pool row; several files are shards, as for the pool.
    #[arg(long, value_name = "E.npy", num_args = 1..)]
    pub embeddings: Vec<PathBuf>,

    /// cluster-margin: how many lowest-margin rows to cluster [default: 10·k].
    #[arg(long, value_name = "N")]
    pub candidates: Option<usize>,

    /// cluster-margin: how many clusters to form [default: k]; typiclust,
    /// kmeans: the k-means clusters [default: labeled rows + k].
    #[arg(long, value_name = "N")]
    pub clusters: Option<usize>,

    /// batchbald: the configuration budget M. The batch's joint entropy is
    /// exact while C^(picks) ≤ M, then estimated from M configurations
    /// drawn by --seed (as batchbald_redux); larger is closer and slower.
    #[arg(long, value_name = "M", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub configurations: u64,

    /// Draw k rows at random, favouring informative ones, instead of the k
    /// best (stochastic batch acquisition, Kirsch et al. 2023): a batch of
    /// top-scored rows is often redundant. Seeded by --seed per global row:
    /// the same rows on every machine, thread count, shard split and
    /// device. For row-wise, multi-label and disagreement strategies; power
    /// and softmax run on the GPU too (over given files), softrank on the
    /// CPU.
    #[arg(long, value_enum, value_name = "KIND")]
    pub stochastic: Option<StochasticArg>,

    /// probcover: the ball radius δ (Euclidean, in embedding units);
    /// maxherding: the Gaussian kernel's width σ, in the same units. Without
    /// it, it is the largest radius whose balls are at least --purity pure
    /// over --classes k-means clusters.
    #[arg(long, value_name = "D")]
    pub delta: Option<f64>,

    /// probcover and maxherding without --delta: the number of classes, one
    /// k-means cluster each, over which δ's purity is measured.
    #[arg(long, value_name = "C")]
    pub classes: Option<usize>,

    /// probcover and maxherding without --delta: the fraction of balls that
    /// must hold rows of one cluster only.
    #[arg(long, value_name = "A", default_value_t = 0.95)]
    pub purity: f64,

    /// typiclust, kmeans, the δ by purity: Lloyd's k-means assignments at most
    /// (they stop earlier once no row moves).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,

    /// Weight a row-wise strategy by information density (Settles and
    /// Craven 2008): its informativeness (1 − margin for margin) times
    /// max(0, mean cosine similarity to the pool)^B, from --embeddings.
    #[arg(long, value_name = "B")]
    pub density_beta: Option<f64>,

    /// --stochastic's inverse temperature (> 0): larger follows the scores
    /// more closely; "inf" is the plain top k.
    #[arg(long, value_name = "B", default_value_t = 1.0, requires = "stochastic")]
    pub beta: f64,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub pool: PoolArgs,

    /// Output .npy file: N float64 scores in row order.
    #[arg(short, long, value_name = "FILE")]
    pub out: PathBuf,
}

/// What a `select` or `score` command reads, opened: a pool, embeddings,
/// or a model with its feature files.
struct Sources {
    probs: Option<Pool<'static>>,
    embeddings: Option<Pool<'static>>,
    samples: Option<Samples<'static>>,
    model: Option<(Mlp, FeaturePool)>,
    /// Several models: a committee over the features.
    committee: Option<(Vec<Mlp>, FeaturePool)>,
    /// MC dropout's passes and seed, over the one model.
    mc: Option<(usize, u64)>,
}

impl Sources {
    /// Opens what the arguments name (checking headers and sizes only); the
    /// files are rows `offset..` of a bigger pool.
    fn open(p: &PoolArgs, embeddings: &[PathBuf], offset: u64) -> anyhow::Result<Sources> {
        // A regressor with its features (std over its MC-dropout passes or
        // a committee of regressors) opens as any model does.
        let regression = p.input_form(false).regression();
        if let (Some(kind), true) = (regression, p.model.is_empty()) {
            return Sources::open_regression(p, kind, embeddings, offset);
        }
        let probs = match p.pools.is_empty() {
            true => None,
            false => Some(Pool::open_with(&p.pools, p.read.into())?.with_row_offset(offset)),
        };
        let embeddings = match embeddings.is_empty() {
            true => None,
            false => Some(Pool::open_embeddings(embeddings)?),
        };
        let features = || -> anyhow::Result<FeaturePool> {
            Ok(FeaturePool::open(&p.features)?.with_row_offset(offset))
        };
        let (model, committee) = match p.model.as_slice() {
            [] => (None, None),
            [m] => (Some((Mlp::load(m)?, features()?)), None),
            many => {
                let models = many
                    .iter()
                    .map(|m| Mlp::load(m))
                    .collect::<Result<_, _>>()?;
                (None, Some((models, features()?)))
            }
        };
        let samples = match p.samples.is_empty() {
            true => None,
            false => Some(
                Samples::open(&p.samples, p.layout.into(), p.read.into())?.with_row_offset(offset),
            ),
        };
        if p.mc_samples.is_some() && committee.is_some() {
            anyhow::bail!("--mc-samples runs one model's dropout passes; give one --model");
        }
        Ok(Sources {
            probs,
            embeddings,
            samples,
            model,
            committee,
            mc: p.mc_samples.map(|t| (t, p.seed)),
        })
    }

    /// A regression model's outputs: std reads the pool (or --samples) as
    /// its spread, T predictions or (mean, std) rows; gsy and igs read
    /// one prediction a row (or the mean of (mean, std) rows).
    fn open_regression(
        p: &PoolArgs,
        kind: RegressionInput,
        embeddings: &[PathBuf],
        offset: u64,
    ) -> anyhow::Result<Sources> {
        let spread = Query::from(p.strategy) == Query::Regress(Regression::Std);
        let read = p.read.into();
        let both = !p.samples.is_empty() && !p.pools.is_empty();
        let emcm = Query::from(p.strategy) == Query::Regress(Regression::Emcm);
        if both && !emcm {
            anyhow::bail!(
                "give the regression model's outputs once: as POOL or as --samples, not both"
            );
        }
        // emcm reads both: the model's predictions (POOL) and the
        // ensemble's (--samples).
        let none = Vec::new();
        let (spread_files, pred_files) = match (spread, p.samples.is_empty()) {
            (true, true) => (&p.pools, &none),
            (_, false) => (&p.samples, &p.pools),
            (false, true) => (&none, &p.pools),
        };
        let samples = match spread_files.is_empty() {
            true => None,
            false => {
                Some(Samples::open_regression(spread_files, kind, read)?.with_row_offset(offset))
            }
        };
        let probs = match pred_files.is_empty() {
            true => None,
            false => Some(Pool::open_column(pred_files, read)?.with_row_offset(offset)),
        };
        let embeddings = match embeddings.is_empty() {
            true => None,
            false => Some(Pool::open_embeddings(embeddings)?),
        };
        Ok(Sources {
            probs,
            embeddings,
            samples,
            model: None,
            committee: None,
            mc: None,
        })
    }

    fn inputs(&self) -> Inputs<'_> {
        let mut inputs = match (&self.model, &self.committee) {
            (Some((m, f)), _) if self.mc.is_some() => {
                let (passes, seed) = self.mc.unwrap_or_default();
                Inputs::mc_dropout(m, f, passes, seed)
            }
            (Some((m, f)), _) => Inputs::model(m, f),
            (None, Some((models, f))) => Inputs::committee(models, f),
            (None, None) => Inputs::default(),
        };
        if let Some(p) = &self.probs {
            inputs = inputs.with_probs(p);
        }
        if let Some(e) = &self.embeddings {
            inputs = inputs.with_embeddings(e);
        }
        if let Some(s) = &self.samples {
            inputs = inputs.with_samples(s);
        }
        inputs
    }

    fn f16(&self) -> bool {
        self.probs.as_ref().is_some_and(|p| p.has_f16())
            || self.samples.as_ref().is_some_and(|s| s.has_f16())
    }

    /// The feature files a model or a committee scores.
    fn features(&self) -> Option<&FeaturePool> {
        let committee = self.committee.as_ref().map(|(_, f)| f);
        self.model.as_ref().map(|(_, f)| f).or(committee)
    }

    /// Rows of the pool, whichever input gives them.
    fn rows(&self) -> u64 {
        let model = self.features().map(FeaturePool::rows);
        let samples = self.samples.as_ref().map(|s| s.rows());
        let pools = [&self.probs, &self.embeddings];
        let pool = pools.iter().find_map(|p| p.as_ref().map(|p| p.rows()));
        model.or(samples).or(pool).unwrap_or(0)
    }

    /// Bytes read by one pass over the inputs.
    fn bytes(&self) -> u64 {
        let pools = [&self.probs, &self.embeddings];
        let model = self.features().map_or(0, FeaturePool::data_bytes);
        let samples = self.samples.as_ref().map_or(0, |s| s.data_bytes());
        let pools: u64 = pools
            .iter()
            .flat_map(|p| p.as_ref())
            .map(|p| p.data_bytes())
            .sum();
        pools + model + samples
    }
}

impl SelectArgs {
    /// Refuses parts and shards for selections that see the whole pool at
    /// once (batch, cold-start, density-weighted): they have none to merge.
    fn refuse_parts(&self, query: Query, format: Option<report::Format>) -> anyhow::Result<()> {
        if !query.picks_batch() && !matches!(query, Query::Cold(_)) && self.density_beta.is_none() {
            return Ok(());
        }
        let what = match self.density_beta {
            Some(_) => format!("{query} with --density-beta"),
            None => query.to_string(),
        };
        if self.row_offset.is_some() || self.all {
            anyhow::bail!("{what} picks k rows of one machine's pool (no --row-offset or --all)");
        }
        if format == Some(report::Format::Part) {
            anyhow::bail!("{what} writes a final batch (.csv, .jsonl or .npy), not a part");
        }
        Ok(())
    }

    /// The labeled rows (--exclude, restricted to this machine's rows) and,
    /// for the regression strategies, their targets (--targets), onto
    /// `job`.
    fn labeled(&self, mut job: Job, sources: &Sources, offset: u64) -> anyhow::Result<Job> {
        if let Some(ex) = &self.exclude {
            // With --row-offset the file lists rows of the whole pool.
            let bound = self.row_offset.map_or(sources.rows(), |_| u64::MAX);
            job.exclusions = Exclusions::read(ex, bound)?.restrict(offset, sources.rows());
        }
        if let Some(path) = &self.targets {
            let column = Pool::open_column(&[path], self.pool.read.into())?.column_f64()?;
            if column.len() as u64 != sources.rows() {
                anyhow::bail!(
                    "{}: {} targets for a pool of {} rows; give one target a row (NaN for unlabeled rows)",
                    path.display(),
                    column.len(),
                    sources.rows()
                );
            }
            job = job
                .with_targets(&column)
                .with_context(|| format!("in {}", path.display()))?;
        }
        Ok(job)
    }

    /// The strategy-specific options, onto `job`.
    fn options(&self, job: &mut Job) {
        job.candidates = self.candidates.unwrap_or(0);
        job.clusters = self.clusters.unwrap_or(0);
        job.configurations = usize::try_from(self.configurations).unwrap_or(usize::MAX);
        job.iterations = usize::try_from(self.iterations).unwrap_or(usize::MAX);
        job.delta = self.delta;
        job.purity = self.purity;
        job.purity_classes = self.classes.unwrap_or(0);
        job.density_beta = self.density_beta;
        job.stochastic = self
            .stochastic
            .map(|s| Stochastic::new(s.into(), self.beta));
    }
}

pub fn select(a: SelectArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let format = a
        .out
        .as_deref()
        .map(report::Format::from_path)
        .transpose()?;
    let k = if a.all { usize::MAX } else { a.k };
    let query = Query::from(a.pool.strategy);
    a.refuse_parts(query, format)?;
    let offset = a.row_offset.unwrap_or(0);
    let sources = Sources::open(&a.pool, &a.embeddings, offset)?;
    if let (true, Some(s)) = (a.pool.verbose, &sources.samples) {
        eprintln!(
            "alpool: samples read as {}: T = {} samples of N = {} rows x C = {} classes",
            s.layout().name(),
            s.samples(),
            s.rows(),
            s.classes()
        );
    }
    let mut job = a.pool.job(sources.f16(), k);
    a.options(&mut job);
    if format == Some(report::Format::Part) && !alpool::part::mergeable(query, job.stochastic) {
        anyhow::bail!(
            "{query} with --stochastic softrank ranks the whole pool: its parts cannot be merged (use power or softmax across machines)"
        );
    }
    let job = a.labeled(job, &sources, offset)?;
    // A batch strategy reads the embeddings once per pick.
    let passes = match query {
        Query::Batch(BatchStrategy::Badge | BatchStrategy::Coreset | BatchStrategy::BatchBald)
        | Query::Regress(Regression::Gsx | Regression::Igs) => {
            a.k as u64 + job.exclusions.len().div_ceil(64) as u64 + 1
        }
        _ => 1,
    };
    let bar = Bar::bytes(
        sources.bytes().saturating_mul(passes),
        a.pool.quiet,
        query.name(),
    );
    let run = Run {
        device: a.device.into(),
        adapter: a.adapter.clone(),
        progress: &bar,
        gpu: None,
    };
    let out = alpool::select(sources.inputs(), &job, &run);
    bar.finish();
    let out = out?;
    if a.pool.verbose {
        eprintln!("alpool: {}", out.reason);
    }
    if !a.pool.quiet {
        for note in &out.selection.notes {
            eprintln!("alpool: {note}");
        }
    }
    if a.verify {
        verify(&sources, &job, &out)?;
    }
    match (format, &a.out) {
        (Some(report::Format::Part), Some(path)) => {
            let header = PartHeader::of(&job, offset, &out.selection, k)?;
            report::save_part(&out.selection, &header, path)
        }
        _ => report::save_selection(&out.selection, a.out.as_deref()),
    }
    .with_context(|| "could not write the selection")?;
    if a.pool.verbose {
        say_what_ran(&out.selection, t0, out.gpu_phases.as_ref());
    }
    Ok(())
}

/// `-v`: what was selected, how long it took, the GPU's phases.
fn say_what_ran(sel: &alpool::Selection, t0: Instant, phases: Option<&Phases>) {
    eprintln!(
        "alpool: selected {} of {} rows ({} excluded) by {} in {:.3} s; {} rows re-scored canonically",
        sel.entries.len(),
        sel.rows,
        sel.excluded,
        sel.strategy,
        t0.elapsed().as_secs_f64(),
        sel.refined
    );
    if !sel.phases.is_empty() {
        let list: Vec<String> = sel
            .phases
            .iter()
            .map(|(name, t)| format!("{name} {:.3} s", t.as_secs_f64()))
            .collect();
        eprintln!("alpool: phases: {}", list.join(", "));
    }
    if let Some(p) = phases {
        eprintln!(
            "alpool: GPU phases: upload {:.1} ms, forward {:.1} ms, score {:.1} ms, top-k {:.1} ms, readback {:.1} ms, refine {:.1} ms over {} chunk(s), {} rows re-scored",
            p.upload.as_secs_f64() * 1e3,
            p.forward.as_secs_f64() * 1e3,
            p.score.as_secs_f64() * 1e3,
            p.topk.as_secs_f64() * 1e3,
            p.readback.as_secs_f64() * 1e3,
            p.refine.as_secs_f64() * 1e3,
            p.chunks,
            p.candidates
        );
    }
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Part files written by `alpool select ... --out PART.alpart`, one per
    /// shard of the pool (any order).
    #[arg(required = true, value_name = "PART")]
    pub parts: Vec<PathBuf>,
    /// Rows to select from the whole pool; each part must hold at least
    /// this many rows (or all its shard's selectable rows).
    #[arg(short, default_value_t = 100)]
    pub k: usize,
    /// Output file: .csv, .jsonl or .npy, as for select. Default: CSV to stdout.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn merge(a: MergeArgs) -> anyhow::Result<()> {
    if let Some(out) = &a.out
        && report::Format::from_path(out)? == report::Format::Part
    {
        anyhow::bail!(
            "{}: merge writes a final batch (.csv, .jsonl or .npy), not a part",
            out.display()
        );
    }
    let sel = alpool::part::merge(&a.parts, a.k)?;
    report::save_selection(&sel, a.out.as_deref()).with_context(|| "could not write the selection")
}

/// `--verify`: the CPU's selection must be identical.
fn verify(sources: &Sources, job: &Job, out: &alpool::Outcome) -> anyhow::Result<()> {
    let cpu = alpool::select(sources.inputs(), job, &Run::on(Device::Cpu))?;
    if let Some(p) = &out.gpu_phases {
        eprintln!(
            "alpool: verify: {} rows re-scored on the CPU; largest |GPU f32 key − canonical key|: {:.3e}",
            p.candidates, p.max_score_diff
        );
    }
    same_selection(&out.selection, &cpu.selection)
}

/// `--verify`'s check: `sel` must equal the CPU's selection, row for row.
fn same_selection(sel: &alpool::Selection, cpu: &alpool::Selection) -> anyhow::Result<()> {
    if cpu.entries.len() != sel.entries.len() {
        anyhow::bail!(
            "verify failed: the CPU selected {} rows, this run {}",
            cpu.entries.len(),
            sel.entries.len()
        );
    }
    if let Some((a, b)) = sel.entries.iter().zip(&cpu.entries).find(|(a, b)| a != b) {
        anyhow::bail!(
            "verify failed at rank {}: this run has row {} (score {}), the CPU row {} (score {})",
            b.rank,
            a.index,
            a.score,
            b.index,
            b.score
        );
    }
    eprintln!(
        "alpool: verify: identical to the CPU path ({} rows)",
        cpu.entries.len()
    );
    Ok(())
}

pub fn score(a: ScoreArgs) -> anyhow::Result<()> {
    report::Format::from_path(&a.out)?;
    let sources = Sources::open(&a.pool, &[], 0)?;
    let job = a.pool.job(sources.f16(), 0);
    let bar = Bar::bytes(sources.bytes(), a.pool.quiet, "score");
    let r = report::save_scores(&a.out, sources.rows(), |sink| {
        alpool::score_each(sources.inputs(), &job, &bar, sink)
    });
    bar.finish();
    Ok(r?)
}
