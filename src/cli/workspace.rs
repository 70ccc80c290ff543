//! `alpool init`, `next`, `ingest`, `status`: batch selection jobs with
//! people in the loop, on a persistent workspace.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::select::{DeviceArg, QueryArg, StochasticArg};
use super::simulate::LearnerArgs;
use alpool::Stochastic;
use alpool::features::FEATURE_DTYPES;
use alpool::workspace::ingest::{Expect, read_label_file};
use alpool::workspace::live::LiveOptions;
use alpool::workspace::round::{NextOptions, next_round};
use alpool::workspace::serve::{ServeOptions, serve};
use alpool::workspace::vocab::LabelKind;
use alpool::workspace::{IngestOptions, InitSpec, Workspace, export};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The workspace folder to create.
    pub dir: PathBuf,
    /// Pool features: N x D .npy (float32, float16, float64, or uint8 images).
    #[arg(long, value_name = "pool.npy")]
    pub features: PathBuf,
    /// Class names, in order (none with --regression).
    #[arg(long, value_delimiter = ',', required_unless_present = "regression")]
    pub classes: Vec<String>,
    /// Item ids, one per line, one per row [default: the row numbers].
    #[arg(long, value_name = "FILE")]
    pub ids: Option<PathBuf>,
    /// Seed labels: CSV `id,label` (with --multilabel, the label is a set:
    /// `cat|dog`, or empty for none; with --regression, a number).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// A multi-label workspace: an item's label is the set of classes that
    /// apply (CSV `cat|dog`; in Label Studio, every ticked choice of
    /// `labeling-config`'s `choice="multiple"`, an empty submit meaning
    /// none). `next` trains one sigmoid output per class and runs the
    /// multi-label strategies (default adaptive); annotators who tick
    /// different sets are a conflict. At most 63 classes.
    #[arg(long)]
    pub multilabel: bool,
    /// A regression workspace: an item's label is a number, the target
    /// NAME (CSV `id,label` with a number; in Label Studio, the `Number`
    /// control of `labeling-config`). `next` trains an MLP regressor on
    /// the standardized targets and runs the regression strategies
    /// (default igs; std with --mc-samples or --committee, gsx, gsy,
    /// emcm with --committee); annotators who give different numbers are
    /// a conflict.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["classes", "multilabel"])]
    pub regression: Option<String>,
    /// Item data for annotators, carried in every Label Studio task: JSON
    /// lines with the item's "id" and the fields to show, e.g.
    /// {"id": "a17", "image": "https://host/a17.jpg"} or {"id": 3, "text": "…"}.
    #[arg(long, value_name = "items.jsonl")]
    pub data: Option<PathBuf>,
    /// Choose the first batch now, with no labels or model: a cold-start
    /// strategy (typiclust, probcover, maxherding, kmeans, density) over
    /// --embeddings, written to --out; seed labels count as covered.
    #[arg(long, value_name = "STRATEGY", requires = "out")]
    pub seed_strategy: Option<QueryArg>,
    /// Items in the first batch.
    #[arg(short, default_value_t = 100)]
    pub k: usize,
    /// The first batch: .csv (id,index,score), .jsonl, or .json (Label
    /// Studio tasks, no predictions yet).
    #[arg(long, value_name = "FILE", requires = "seed_strategy")]
    pub out: Option<PathBuf>,
    /// Embeddings for --seed-strategy, one row per item (float32, float16 or
    /// float64) [default: the features].
    #[arg(long, value_name = "E.npy", requires = "seed_strategy")]
    pub embeddings: Option<PathBuf>,
    /// Seed of the strategy's k-means.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// probcover: the ball radius δ; maxherding: the Gaussian kernel's width
    /// σ [default: chosen by purity 0.95 over one k-means cluster per class].
    #[arg(long, value_name = "D")]
    pub delta: Option<f64>,
}

impl InitArgs {
    /// The first batch's job, refused before anything is written when its
    /// strategy needs a model.
    fn first_batch_job(&self) -> anyhow::Result<Option<alpool::Job>> {
        let Some(s) = self.seed_strategy else {
            return Ok(None);
        };
        let query = alpool::Query::from(s);
        if !matches!(query, alpool::Query::Cold(_)) {
            anyhow::bail!(
                "--seed-strategy {query} needs a model; the first batch takes typiclust, probcover, maxherding, kmeans or density"
            );
        }
        if let Some(out) = &self.out {
            alpool::workspace::export::BatchFormat::from_path(out)?;
        }
        let mut job = alpool::Job::new(query, alpool::InputForm::probs(), self.k).seed(self.seed);
        job.delta = self.delta;
        job.purity_classes = self.classes.len();
        Ok(Some(job))
    }
}

pub fn init(a: InitArgs) -> anyhow::Result<()> {
    let first = a.first_batch_job()?;
    let (_, h) = alpool::pool::map_npy(
        &a.features,
        FEATURE_DTYPES,
        "features must be float32, float16, float64 or uint8",
    )?;
    let [rows, dim] = h.shape[..] else {
        anyhow::bail!(
            "{}: expected a 2-D array, got shape {:?}",
            a.features.display(),
            h.shape
        );
    };
    let spec = InitSpec {
        features: a.features.clone(),
        rows,
        dim,
        classes: match &a.regression {
            Some(target) => vec![target.clone()],
            None => a.classes.clone(),
        },
        ids: a.ids.clone(),
        labels: a.labels.clone(),
        kind: match (&a.regression, a.multilabel) {
            (Some(_), _) => LabelKind::Number,
            (None, true) => LabelKind::Set,
            (None, false) => LabelKind::Class,
        },
        data: a.data.clone(),
    };
    let bar = super::progress::Bar::items(rows as u64, "init");
    let ws = Workspace::init(&a.dir, &spec, &bar);
    bar.finish();
    let ws = ws?;
    let what = match &a.regression {
        Some(target) => format!("regression target {target}"),
        None => format!("{} classes", a.classes.len()),
    };
    println!(
        "created {}: {rows} items x {dim} features, {what}, {} seed labels",
        a.dir.display(),
        ws.labels()?.len()
    );
    if let (Some(job), Some(out)) = (first, &a.out) {
        // A failed first batch takes the new workspace with it: nothing
        // half-made is left behind.
        if let Err(e) = first_batch(&ws, &a, &job, out) {
            drop(ws);
            let _ = std::fs::remove_dir_all(&a.dir);
            return Err(e.context(format!(
                "no workspace was created at {}: its first batch failed",
                a.dir.display()
            )));
        }
    }
    Ok(())
}

fn first_batch(
    ws: &Workspace,
    a: &InitArgs,
    job: &alpool::Job,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let path = a.embeddings.as_ref().unwrap_or(&a.features);
    let emb = alpool::Pool::open_embeddings(&[path])?;
    let bar = super::progress::Bar::bytes(emb.data_bytes(), false, job.query.name());
    let sel = alpool::workspace::first::first_batch(ws, &emb, job, out, &bar);
    bar.finish();
    let sel = sel?;
    for note in &sel.notes {
        eprintln!("alpool: {note}");
    }
    println!(
        "first batch: {} items by {} written to {}",
        sel.entries.len(),
        job.query,
        out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct NextArgs {
    pub dir: PathBuf,
    /// Items to select.
    #[arg(short, default_value_t = 100)]
    pub k: usize,
    /// The query [default: margin; adaptive in a multi-label workspace;
    /// igs in a regression one].
    #[arg(short, long, value_enum)]
    pub strategy: Option<QueryArg>,
    /// The batch file: .csv (id,index,score,predicted,p_CLASS...), .jsonl, or
    /// .json (Label Studio task import, prediction and score attached).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Where to score the pool (auto: a hardware GPU for pools of 256 MiB
    /// of probabilities and more).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Seconds to wait for another command on this workspace.
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Select items annotators skipped (or submitted empty) again; by
    /// default they are left out until someone labels them.
    #[arg(long)]
    pub reselect_skipped: bool,
    /// The disagreement strategies (bald, vote-entropy, …): T MC-dropout
    /// passes of the round's model are each item's samples (the model
    /// needs --dropout P > 0); the masks are seeded by --seed and the
    /// round.
    #[arg(long, value_name = "T", default_value_t = 0)]
    pub mc_samples: usize,
    /// The disagreement strategies, by a committee instead: T learners
    /// trained each round beside the model, each on its own bootstrap
    /// resample of the labels with its own seed (query by bagging); their
    /// probabilities are each item's T samples.
    #[arg(long, value_name = "T", default_value_t = 0)]
    pub committee: usize,
    /// Draw the batch at random, favouring informative items, instead of
    /// the k best (stochastic batch acquisition, Kirsch et al. 2023): a
    /// batch of top-scored items is often redundant. Seeded by --seed and
    /// the labels so far, so running the round again draws the same
    /// batch. For strategies that score items (row-wise, disagreement,
    /// multi-label, std, emcm); the round is recorded as KIND-STRATEGY.
    #[arg(long, value_enum, value_name = "KIND")]
    pub stochastic: Option<StochasticArg>,
    /// --stochastic's inverse temperature (> 0): larger follows the scores
    /// more closely; "inf" is the plain top k.
    #[arg(long, value_name = "B", default_value_t = 1.0, requires = "stochastic")]
    pub beta: f64,
    #[command(flatten)]
    pub learner: LearnerArgs,
}

pub fn next(a: NextArgs) -> anyhow::Result<()> {
    let mut ws = Workspace::open(&a.dir, Duration::from_secs(a.wait))?;
    let vocab = ws.vocab()?;
    let strategy = match (a.strategy, vocab.kind) {
        (Some(s), _) => s.into(),
        (None, LabelKind::Class) => alpool::Strategy::Margin.into(),
        (None, LabelKind::Set) => alpool::MultiLabel::Adaptive.into(),
        (None, LabelKind::Number) => alpool::Regression::Igs.into(),
    };
    let opts = NextOptions {
        k: a.k,
        strategy,
        seed: a.seed,
        learner: a.learner.config(a.seed),
        device: a.device.into(),
        out: a.out.clone(),
        reselect_skipped: a.reselect_skipped,
        mc_samples: a.mc_samples,
        committee: a.committee,
        stochastic: a.stochastic.map(|s| Stochastic::new(s.into(), a.beta)),
    };
    let size = std::fs::metadata(ws.meta("features")?).map_or(0, |m| m.len());
    let bar = super::progress::Bar::bytes(size, false, "score");
    let r = next_round(&mut ws, &a.dir, &opts, &bar);
    bar.finish();
    let r = r?;
    match &r.trained {
        None => eprintln!(
            "no new labels since round {}: exported its batch again",
            r.round
        ),
        Some(fit) => eprintln!(
            "trained on {} labels ({} steps, training {} {:.3}); scored {} unlabeled items",
            r.labels,
            fit.steps,
            if vocab.numeric() { "R²" } else { "accuracy" },
            fit.train_accuracy,
            r.scored
        ),
    }
    println!(
        "round {}: {} items selected by {} → {}",
        r.round,
        r.picked,
        opts.method().name(),
        a.out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    pub dir: PathBuf,
    /// Labels: CSV `id,label` (a header line; the label a class name), or a
    /// Label Studio export of this workspace's tasks: JSON, JSON_MIN
    /// (.json), CSV (.csv) or TSV (.tsv).
    pub labels: PathBuf,
    /// Replace conflicting labels instead of keeping them apart (recorded).
    #[arg(long)]
    pub overwrite: bool,
    /// Share of an item's votes the winning class needs when several
    /// annotators labeled it (it also needs a strict plurality); items
    /// below it are kept apart as conflicts.
    #[arg(long, default_value_t = 0.5, value_parser = agreement)]
    pub agreement: f64,
    /// Seconds to wait for another command on this workspace.
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
}

fn agreement(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(a) if (0.0..=1.0).contains(&a) => Ok(a),
        _ => Err(format!("{s:?}: expected a share between 0 and 1")),
    }
}

pub fn ingest(a: IngestArgs) -> anyhow::Result<()> {
    let mut ws = Workspace::open(&a.dir, Duration::from_secs(a.wait))?;
    let (vocab, token) = (ws.vocab()?, ws.token()?);
    let expect = Expect {
        ids: &ws,
        vocab: &vocab,
        token: &token,
    };
    let file = read_label_file(&a.labels, &expect)?;
    let opts = IngestOptions {
        overwrite: a.overwrite,
        agreement: a.agreement,
    };
    let r = ws.ingest(&file, &a.labels.display().to_string(), opts)?;
    println!(
        "{} ({}): {} tasks, {} items, {} annotations",
        a.labels.display(),
        file.shape.name(),
        r.tasks,
        r.items,
        r.annotations
    );
    println!(
        "  {} new labels, {} unchanged, {} overwritten, {} conflicts (kept apart; see alpool status), {} skipped, {} submitted empty",
        r.labeled, r.unchanged, r.overwritten, r.conflicts, r.skipped, r.empty
    );
    if r.ignored_results > 0 {
        println!(
            "  {} results of other controls ignored (only <Choices name=\"{}\"> is a label)",
            r.ignored_results,
            export::CONTROL
        );
    }
    for (round, missing, size) in &r.missing {
        if *missing > 0 {
            println!(
                "  round {round}: {missing} of its {size} items are unlabeled and not in this file (skipped in a JSON_MIN/CSV/TSV export, not annotated yet, or deleted in Label Studio)"
            );
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    pub dir: PathBuf,
    /// The page to write [default: DIR/report.html]; its JSON goes beside
    /// it (.json).
    #[arg(long, value_name = "FILE.html")]
    pub out: Option<PathBuf>,
}

pub fn report(a: ReportArgs) -> anyhow::Result<()> {
    let ws = Workspace::open(&a.dir, Duration::from_secs(5))?;
    let out = a.out.unwrap_or_else(|| a.dir.join("report.html"));
    let rep = ws.write_report(&out)?;
    let json = out.with_extension("json");
    let labeled = rep.labeled;
    println!(
        "{} items, {labeled} labeled, {} rounds; held-out curve: {}; wrote {} and {}",
        rep.items,
        rep.rounds.len(),
        match rep.curve.last() {
            Some((n, acc)) => format!(
                "{acc:.4} {} on {} held-out labels at {n} labels",
                rep.curve_metric, rep.held_out
            ),
            None => "too few labels yet".into(),
        },
        out.display(),
        json.display()
    );
    Ok(())
}

pub fn status(a: StatusArgs) -> anyhow::Result<()> {
    let ws = Workspace::open(&a.dir, Duration::from_secs(5))?;
    let s = ws.status()?;
    let items = s.items;
    println!(
        "workspace {}: {items} items, {} labeled, {} unlabeled",
        a.dir.display(),
        s.labeled,
        items - s.labeled
    );
    if s.kind == alpool::workspace::vocab::LabelKind::Set {
        println!("  multi-label: an item counts under each class its label set holds");
    }
    if let Some((lo, mean, hi)) = s.numbers {
        println!("  regression: labels from {lo} to {hi}, mean {mean:.6}");
    }
    for (c, n) in s.classes.iter().zip(&s.per_class) {
        println!("  {c:<20} {n}");
    }
    match &s.last {
        Some(r) => {
            println!(
                "rounds: {} (last: round {}, trained on {} labels, {} selected)",
                r.round + 1,
                r.round,
                r.labels,
                r.selected
            );
            if let Some((best, last, mean)) = r.scores {
                println!("  last batch scores: best {best:.4}, last {last:.4}, mean {mean:.4}");
            }
            println!("  labels since that round: {}", s.labeled as i64 - r.labels);
            if let Some((kappa, n)) = r.kappa {
                println!(
                    "  stopping, stabilizing predictions: kappa of the last two models on {n} items = {kappa:.4} (stop once ≥ 0.99 for a few rounds)"
                );
            }
        }
        None => println!("rounds: none yet (alpool next)"),
    }
    if s.skipped > 0 {
        println!(
            "skipped by annotators, not selected again (next --reselect-skipped): {}",
            s.skipped
        );
    }
    print_conflicts(&s);
    if let Some(live) = ws.live_status()? {
        print_live(&live);
    }
    Ok(())
}

/// `status`'s live queue: the project, what it serves, the last push.
fn print_live(l: &alpool::workspace::live::LiveStatus) {
    println!(
        "live queue: {} ({} items as tasks), serving {}",
        l.place,
        l.tasks,
        l.serving.as_deref().unwrap_or("no predictions yet")
    );
    if let Some(p) = &l.last {
        println!(
            "  last push: {} (round {}): {}, {} of {} predictions{}",
            p.version,
            p.round,
            p.state,
            p.pushed,
            p.total,
            match (&p.error, p.attempts) {
                (Some(e), n) => format!("; {n} failed attempts, last: {e}"),
                (None, _) => String::new(),
            }
        );
    }
}

#[derive(Args, Debug)]
pub struct TasksArgs {
    pub dir: PathBuf,
    /// The Label Studio task file to write (JSON).
    #[arg(long, value_name = "FILE.json")]
    pub out: PathBuf,
}

/// Every item as a Label Studio task, for a person to import (what `serve
/// --project` imports itself).
pub fn tasks(a: TasksArgs) -> anyhow::Result<()> {
    let ws = Workspace::open(&a.dir, Duration::from_secs(5))?;
    let n = ws.write_tasks(&a.out)?;
    println!("wrote {n} tasks to {}", a.out.display());
    Ok(())
}

/// `status`'s conflicts: the open ones (20 at most), or how many were
/// resolved.
fn print_conflicts(s: &alpool::workspace::status::Status) {
    let vocab = alpool::workspace::vocab::Vocab {
        names: s.classes.clone(),
        kind: s.kind,
    };
    let name = |c: Option<usize>| match c.map(|c| vocab.name(c)) {
        None => "—".to_string(),
        Some(n) if n.is_empty() => "(none)".to_string(),
        Some(n) => n,
    };
    if s.open_conflicts.is_empty() {
        if s.resolved_conflicts > 0 {
            println!(
                "no open conflicts ({} resolved in the history)",
                s.resolved_conflicts
            );
        }
        return;
    }
    println!(
        "open conflicts, kept apart ({}; {} resolved in the history):",
        s.open_conflicts.len(),
        s.resolved_conflicts
    );
    for (c, id) in s.open_conflicts.iter().zip(&s.open_conflict_ids).take(20) {
        println!(
            "  {}: stored {}, proposed {}: {} ({})",
            id,
            name(c.stored),
            name(c.proposed),
            c.reason,
            c.source
        );
    }
}

#[derive(Args, Debug)]
pub struct LabelingConfigArgs {
    pub dir: PathBuf,
}

pub fn labeling_config(a: LabelingConfigArgs) -> anyhow::Result<()> {
    let ws = Workspace::open(&a.dir, Duration::from_secs(5))?;
    print!(
        "{}",
        export::labeling_config(&ws.vocab()?, &ws.data_keys()?)
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    pub dir: PathBuf,
    /// Port to listen on.
    #[arg(long, default_value_t = 9090)]
    pub port: u16,
    /// Address to bind; the default accepts connections from this machine
    /// only.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Require this token from Label Studio (set it as the ML backend's
    /// basic-auth password) and from any other client.
    #[arg(long, env = "ALPOOL_SERVE_TOKEN")]
    pub token: Option<String>,
    /// The strategy behind the prediction scores Label Studio sorts by:
    /// one that scores each item on its own — a row-wise one, a
    /// disagreement one (bald, … with --mc-samples), a multi-label one in
    /// a multi-label workspace, std or random in a regression one
    /// [default: margin; adaptive in a multi-label workspace; std in a
    /// regression one].
    #[arg(short, long, value_enum)]
    pub strategy: Option<QueryArg>,
    /// The strategies that read samples (bald, vote-entropy, …, and a
    /// regression's std): T MC-dropout passes of the newest model are each
    /// item's samples (train with --dropout P > 0); the masks are the
    /// round's, as `next --mc-samples T` draws them.
    #[arg(long, value_name = "T", default_value_t = 0)]
    pub mc_samples: usize,
    /// Retrain after this many new labels (0: only when Label Studio asks).
    #[arg(long, default_value_t = 20)]
    pub retrain_every: usize,
    /// Batch size of each retrain's round (written to batches/next.json).
    #[arg(short, default_value_t = 100)]
    pub k: usize,
    /// Draw each retrain's batch (batches/next.json) at random, favouring
    /// informative items, instead of taking the k best, as `next
    /// --stochastic` does: the same labels and --seed draw the same batch.
    /// A live queue (--project) follows the draw, the batch first, so
    /// annotators working through it between trainings are not given a run
    /// of near-duplicates; /predict still answers each task's plain score.
    #[arg(long, value_enum, value_name = "KIND")]
    pub stochastic: Option<StochasticArg>,
    /// --stochastic's inverse temperature (> 0): larger follows the scores
    /// more closely; "inf" is the plain top k.
    #[arg(long, value_name = "B", default_value_t = 1.0, requires = "stochastic")]
    pub beta: f64,
    /// Agreement needed among several annotators (as for ingest).
    #[arg(long, default_value_t = 0.5, value_parser = agreement)]
    pub agreement: f64,
    /// Replace conflicting labels instead of keeping them apart.
    #[arg(long)]
    pub overwrite: bool,
    /// Worker threads answering requests.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Select items annotators skipped again (by default a skipped item is
    /// left out of the batches and of the live queue).
    #[arg(long)]
    pub reselect_skipped: bool,
    #[command(flatten)]
    pub learner: LearnerArgs,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// The live queue: a Label Studio project re-ranked after every training.
#[derive(Args, Debug)]
#[command(next_help_heading = "Live queue (a Label Studio project re-ranked after every training)")]
pub struct LiveArgs {
    /// Keep this Label Studio project's queue live: at start, import the
    /// workspace's items it lacks (a project holding other tasks is
    /// refused), add this server as its ML backend (and so its annotation
    /// webhook), a Data Manager tab "alpool: most informative first", and
    /// uncertainty sampling; after every training, push a prediction of
    /// every unlabeled item under a new model_version and make it the
    /// project's. With one annotator, Label Studio's next task is then
    /// alpool's most informative one; with several, uncertainty sampling
    /// draws among the first (annotators + 1) so they do not collide, and
    /// the tab with "Label Tasks As Displayed" follows the exact order.
    #[arg(long, value_name = "ID", requires_all = ["label_studio", "api_key"])]
    pub project: Option<i64>,
    /// Label Studio's address.
    #[arg(long, env = "LABEL_STUDIO_URL", value_name = "URL")]
    pub label_studio: Option<String>,
    /// An API key: Label Studio → Account & Settings → Access Token (a
    /// legacy token or a personal access token).
    #[arg(
        long,
        env = "LABEL_STUDIO_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// How Label Studio reaches this server [default: http://HOST:PORT].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Predictions per import request (each must stay well under Label
    /// Studio's 30 s gateway timeouts).
    #[arg(long, default_value_t = 2000)]
    pub push_batch: usize,
    /// Leave the project's sampling as it is (follow the queue through the
    /// Data Manager tab instead).
    #[arg(long)]
    pub keep_sampling: bool,
    /// Keep the predictions of only the last N trainings in the project,
    /// deleting older ones once a newer training serves [default: 0, keep
    /// all]. Only the project's current version counts either way; this
    /// keeps the database from growing by one prediction per task at every
    /// training, but Label Studio 1.23 deletes about 200 predictions a
    /// second and holds its database meanwhile (8 minutes for a 100k-task
    /// version), so use it on small projects or between labeling sessions.
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub keep_versions: usize,
}

pub fn serve_cmd(a: ServeArgs) -> anyhow::Result<()> {
    let kind = Workspace::open(&a.dir, Duration::from_secs(30))?
        .vocab()?
        .kind;
    let strategy = match (a.strategy, kind) {
        (Some(s), _) => s.into(),
        (None, LabelKind::Class) => alpool::Strategy::Margin.into(),
        (None, LabelKind::Set) => alpool::MultiLabel::Adaptive.into(),
        (None, LabelKind::Number) => alpool::Regression::Std.into(),
    };
    let opts = ServeOptions {
        addr: format!("{}:{}", a.host, a.port),
        token: a.token.filter(|t| !t.is_empty()),
        strategy,
        mc_samples: a.mc_samples,
        retrain_every: a.retrain_every,
        k: a.k,
        stochastic: a.stochastic.map(|s| Stochastic::new(s.into(), a.beta)),
        ingest: IngestOptions {
            overwrite: a.overwrite,
            agreement: a.agreement,
        },
        learner: a.learner.config(a.seed),
        seed: a.seed,
        threads: a.threads,
        wait: Duration::from_secs(30),
        max_body: 64 << 20,
        reselect_skipped: a.reselect_skipped,
        live: a.live.project.map(|project| LiveOptions {
            url: a.live.label_studio.clone().unwrap_or_default(),
            key: a.live.api_key.clone().unwrap_or_default(),
            project,
            batch: a.live.push_batch.max(1),
            sampling: !a.live.keep_sampling,
            reselect_skipped: a.reselect_skipped,
            keep_versions: a.live.keep_versions,
            timeout: Duration::from_secs(120),
        }),
        public_url: a.live.public_url.clone(),
    };
    let dir = a.dir.clone();
    serve(&a.dir, opts, |addr| {
        // One line on stdout, so a script can wait for it.
        println!(
            "alpool ML backend for {} listening on http://{addr}",
            dir.display()
        );
    })?;
    Ok(())
}
