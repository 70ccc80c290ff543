//! `alpool init`, `next`, `ingest`, `status`: batch selection jobs with
//! people in the loop, on a persistent workspace.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::select::{DeviceArg, StrategyArg};
use super::simulate::LearnerArgs;
use alpool::features::{FEATURE_DTYPES, FeaturePool};
use alpool::learner::Mlp;
use alpool::workspace::exchange;
use alpool::workspace::round::{NextOptions, next_round};
use alpool::workspace::{InitSpec, Workspace};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The workspace folder to create.
    pub dir: PathBuf,
    /// Pool features: N x D .npy (float32, float16, float64, or uint8 images).
    #[arg(long, value_name = "pool.npy")]
    pub features: PathBuf,
    /// Class names, in order.
    #[arg(long, value_delimiter = ',', required = true)]
    pub classes: Vec<String>,
    /// Item ids, one per line, one per row [default: the row numbers].
    #[arg(long, value_name = "FILE")]
    pub ids: Option<PathBuf>,
    /// Seed labels: CSV `id,label` or a Label Studio JSON export.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
}

pub fn init(a: InitArgs) -> anyhow::Result<()> {
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
    let ids: Vec<String> = match &a.ids {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let v: Vec<String> = text
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            if v.len() != rows {
                anyhow::bail!(
                    "{}: {} ids for {} rows in {}",
                    p.display(),
                    v.len(),
                    rows,
                    a.features.display()
                );
            }
            v
        }
        None => (0..rows).map(|i| i.to_string()).collect(),
    };
    let seed = match &a.labels {
        Some(p) => {
            let map: HashMap<String, usize> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i))
                .collect();
            Some((
                exchange::read_labels(p, &map, &a.classes)?,
                p.display().to_string(),
            ))
        }
        None => None,
    };
    let spec = InitSpec {
        features: a.features.clone(),
        rows,
        dim,
        classes: a.classes.clone(),
        ids,
        seed_labels: seed.clone().map(|s| s.0).unwrap_or_default(),
        seed_source: seed.map(|s| s.1).unwrap_or_default(),
    };
    Workspace::init(&a.dir, &spec)?;
    println!(
        "created {}: {rows} items x {dim} features, {} classes, {} seed labels",
        a.dir.display(),
        a.classes.len(),
        spec.seed_labels.len()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct NextArgs {
    pub dir: PathBuf,
    /// Items to select.
    #[arg(short, default_value_t = 100)]
    pub k: usize,
    #[arg(short, long, value_enum, default_value = "margin")]
    pub strategy: StrategyArg,
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
    #[command(flatten)]
    pub learner: LearnerArgs,
}

pub fn next(a: NextArgs) -> anyhow::Result<()> {
    let mut ws = Workspace::open(&a.dir, Duration::from_secs(a.wait))?;
    let opts = NextOptions {
        k: a.k,
        strategy: a.strategy.into(),
        seed: a.seed,
        learner: a.learner.config(a.seed),
        device: a.device.into(),
        out: a.out.clone(),
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
            "trained on {} labels ({} steps, training accuracy {:.3}); scored {} unlabeled items",
            r.labels, fit.steps, fit.train_accuracy, r.scored
        ),
    }
    println!(
        "round {}: {} items selected by {} → {}",
        r.round,
        r.picked,
        opts.strategy.name(),
        a.out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    pub dir: PathBuf,
    /// Labels: CSV `id,label` (a header line; the label a class name) or a
    /// Label Studio JSON export (.json).
    pub labels: PathBuf,
    /// Replace conflicting labels instead of keeping them apart (recorded).
    #[arg(long)]
    pub overwrite: bool,
    /// Seconds to wait for another command on this workspace.
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
}

pub fn ingest(a: IngestArgs) -> anyhow::Result<()> {
    let mut ws = Workspace::open(&a.dir, Duration::from_secs(a.wait))?;
    let classes = ws.classes()?;
    let map: HashMap<String, usize> = ws
        .ids()?
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    let labels = exchange::read_labels(&a.labels, &map, &classes)?;
    let (applied, same, conflicts, overwritten) =
        ws.apply_labels(&labels, &a.labels.display().to_string(), a.overwrite)?;
    println!(
        "{}: {applied} new labels, {same} unchanged, {overwritten} overwritten, {conflicts} conflicting (kept apart; see alpool status)",
        a.labels.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    pub dir: PathBuf,
}

pub fn status(a: StatusArgs) -> anyhow::Result<()> {
    let ws = Workspace::open(&a.dir, Duration::from_secs(5))?;
    let classes = ws.classes()?;
    let ids = ws.ids()?;
    let labels = ws.labels()?;
    let mut per = vec![0usize; classes.len()];
    labels.iter().for_each(|l| per[l.class] += 1);
    println!(
        "workspace {}: {} items, {} labeled, {} unlabeled",
        a.dir.display(),
        ids.len(),
        labels.len(),
        ids.len() - labels.len()
    );
    for (c, n) in classes.iter().zip(&per) {
        println!("  {c:<20} {n}");
    }
    match ws.last_round()? {
        Some((round, n)) => {
            let sel = ws.selection(round)?;
            let scores: Vec<f64> = sel.iter().map(|p| p.score).collect();
            let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
            println!(
                "rounds: {} (last: round {round}, trained on {n} labels, {} selected)",
                round + 1,
                sel.len()
            );
            if let (Some(first), Some(last)) = (scores.first(), scores.last()) {
                println!("  last batch scores: best {first:.4}, last {last:.4}, mean {mean:.4}");
            }
            println!("  labels since that round: {}", labels.len() as i64 - n);
            // Stopping: how far successive models still disagree (Cohen's
            // kappa on a fixed sample of items; Bloodgood & Vijay-Shanker
            // stop once it stays ≥ 0.99), and how informative the best
            // remaining item was.
            if round >= 1 {
                let models = ws.models()?;
                if let [.., prev, last] = &models[..] {
                    let features = FeaturePool::open(&[ws.meta("features")?])?;
                    let rows = ids.len();
                    let step = (rows / 2000).max(1);
                    let picked: Vec<usize> = (0..rows).step_by(step).collect();
                    let sample = features.gather(&picked)?;
                    let a = Mlp::load(&ws.dir.join(prev))?.predict(&sample)?;
                    let b = Mlp::load(&ws.dir.join(last))?.predict(&sample)?;
                    println!(
                        "  stopping, stabilizing predictions: kappa of the last two models on {} items = {:.4} (stop once ≥ 0.99 for a few rounds)",
                        a.len(),
                        alpool::al::stopping::cohen_kappa(&a, &b)
                    );
                }
            }
        }
        None => println!("rounds: none yet (alpool next)"),
    }
    let conflicts = ws.conflicts()?;
    if !conflicts.is_empty() {
        println!("conflicting labels kept apart ({}):", conflicts.len());
        for c in conflicts.iter().take(20) {
            println!(
                "  {}: stored {}, proposed {} by {}",
                ids[c.index],
                c.stored.map_or("—".to_string(), |o| classes[o].clone()),
                classes[c.proposed],
                c.source
            );
        }
    }
    Ok(())
}
