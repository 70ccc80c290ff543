//! `alpool init`, `next`, `ingest`, `status`: batch selection jobs with
//! people in the loop, on a persistent workspace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::select::{DeviceArg, StrategyArg};
use super::simulate::LearnerArgs;
use alpool::learner::{Mlp, Scaler, argmax};
use alpool::pool::npy::{self, DType};
use alpool::report::atomic_write;
use alpool::workspace::exchange::{self, BatchFormat, BatchRow};
use alpool::workspace::{InitSpec, Workspace, checkpoint};
use alpool::{InputForm, Job, LogBase, Pool, ScoreSpec, Strategy};

const FEATURE_DTYPES: &[DType] = &[DType::F32, DType::F16, DType::F64, DType::U8];

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

/// The features as f32, their width, and whether they were uint8 images.
fn load_features(path: &Path) -> anyhow::Result<(Vec<f32>, usize, bool)> {
    let (map, h) = alpool::pool::map_npy(
        path,
        FEATURE_DTYPES,
        "features must be float32, float16, float64 or uint8",
    )?;
    let dim = h.shape.get(1).copied().unwrap_or(0);
    let x = npy::features_f32(h.dtype, &map[h.data_offset..]);
    Ok((x, dim, h.dtype == npy::DType::U8))
}

pub fn next(a: NextArgs) -> anyhow::Result<()> {
    let format = BatchFormat::from_path(&a.out)?;
    let mut ws = Workspace::open(&a.dir, Duration::from_secs(a.wait))?;
    let classes = ws.classes()?;
    let ids = ws.ids()?;
    let seq = ws.label_seq()?;
    let labels = ws.labels()?;
    // Recorded relative to the workspace, so it can move.
    let model_rel = format!("models/labels-{seq}.safetensors");
    let model_path = a.dir.join(&model_rel);
    let (x, dim, unit_images) = load_features(Path::new(&ws.meta("features")?))?;
    let strategy: Strategy = a.strategy.into();

    let (round, picks, model) = if let Some(round) = ws.round_for(seq)? {
        // No label arrived since that round: the same batch again.
        eprintln!("no new labels since round {round}: exporting its batch again");
        let model = Mlp::load(&model_path)?;
        let picks: Vec<(usize, f64, usize)> = ws
            .selection(round)?
            .into_iter()
            .map(|(_, i, s, p)| (i, s, p))
            .collect();
        (round, picks, model)
    } else {
        let distinct: std::collections::HashSet<usize> = labels.iter().map(|l| l.class).collect();
        if labels.len() < 2 || distinct.len() < 2 {
            anyhow::bail!(
                "{} labels of {} classes so far; the first model needs at least 2 labels of 2 classes (alpool ingest)",
                labels.len(),
                distinct.len()
            );
        }
        let rows: Vec<usize> = labels.iter().map(|l| l.index).collect();
        let ys: Vec<usize> = labels.iter().map(|l| l.class).collect();
        let gather = |idx: &[usize]| -> Vec<f32> {
            idx.iter()
                .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied())
                .collect()
        };
        // Scaled by statistics of every item (the pool the model scores).
        let config = a.learner.config(a.seed);
        let scaler = config
            .scale
            .resolve(unit_images)
            .map(|kind| Scaler::fit(kind, &x, dim, None))
            .transpose()?;
        let mut model = Mlp::new(dim, classes.len(), config)?.with_scaler(scaler)?;
        let fit = model.fit(&gather(&rows), &ys)?;
        checkpoint("next-after-train");
        std::fs::create_dir_all(model_path.parent().unwrap_or(Path::new(".")))
            .context("cannot create models/")?;
        // Written under temporary names, then renamed: never half a model.
        let tmp = model_path.with_extension("partial.safetensors");
        model.save(&tmp)?;
        std::fs::rename(
            tmp.with_extension("json"),
            model_path.with_extension("json"),
        )?;
        std::fs::rename(&tmp, &model_path)?;

        let labeled: std::collections::HashSet<usize> = rows.iter().copied().collect();
        let unlabeled: Vec<usize> = (0..ids.len()).filter(|i| !labeled.contains(i)).collect();
        let probs = model.predict_proba_rows(&x, &unlabeled)?;
        let pool = Pool::from_memory(&probs, classes.len())?;
        let spec = ScoreSpec {
            strategy,
            log_base: LogBase::E,
            seed: a.seed ^ seq as u64,
        };
        let job = Job::new(
            spec,
            InputForm::Probs {
                renormalize: true,
                sum_tol: 1e-3,
            },
            a.k,
        );
        let sel = alpool::select(&pool, &job, a.device.into())?;
        let picks: Vec<(usize, f64, usize)> = sel
            .entries
            .iter()
            .map(|e| {
                let i = e.index as usize;
                (
                    unlabeled[i],
                    e.score,
                    argmax(&probs[i * classes.len()..(i + 1) * classes.len()]),
                )
            })
            .collect();
        eprintln!(
            "trained on {} labels ({} steps, training accuracy {:.3}); scored {} unlabeled items",
            labels.len(),
            fit.steps,
            fit.train_accuracy,
            unlabeled.len()
        );
        let round = ws.last_round()?.map_or(0, |(r, _)| r + 1);
        (round, picks, model)
    };

    // Export the batch (atomically), then record the round.
    let sel_rows: Vec<usize> = picks.iter().map(|p| p.0).collect();
    let sel_x: Vec<f32> = sel_rows
        .iter()
        .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let probs = model.predict_proba(&sel_x)?;
    let c = classes.len();
    let rows: Vec<BatchRow> = picks
        .iter()
        .enumerate()
        .map(|(r, &(i, score, predicted))| BatchRow {
            rank: r as i64 + 1,
            index: i,
            id: &ids[i],
            score,
            predicted,
            probabilities: &probs[r * c..(r + 1) * c],
        })
        .collect();
    atomic_write(&a.out, |w| {
        exchange::write_batch(w, format, &classes, round, &rows)
            .map_err(|e| alpool::Error::io(&a.out, e))
    })?;
    checkpoint("next-after-export");
    let recorded = ws.record_round(strategy.name(), &model_rel, labels.len(), seq, &picks)?;
    println!(
        "round {recorded}: {} items selected by {} → {}",
        picks.len(),
        strategy.name(),
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
            let scores: Vec<f64> = sel.iter().map(|s| s.2).collect();
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
                    let (x, dim, _) = load_features(Path::new(&ws.meta("features")?))?;
                    let rows = ids.len();
                    let step = (rows / 2000).max(1);
                    let sample: Vec<f32> = (0..rows)
                        .step_by(step)
                        .flat_map(|i| x[i * dim..(i + 1) * dim].iter().copied())
                        .collect();
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
