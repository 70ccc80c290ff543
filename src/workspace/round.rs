//! One batch round of a workspace (`alpool next`): train on every label so
//! far, score the unlabeled items straight from the memory-mapped features
//! (no copy of the pool, no N x C matrix: [`crate::features`]), export the
//! batch atomically, then record the round. Killed at any point, the
//! workspace is as before or as after (the checkpoints below are where the
//! crash tests abort).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::export::{self, BatchFormat, BatchInfo, BatchRow};
use super::{Pick, Workspace, checkpoint};
use crate::backend::Progress;
use crate::batch::BatchJob;
use crate::error::{Error, Result};
use crate::features::{FeaturePool, select_features_on};
use crate::learner::{Mlp, MlpConfig, Scaler, TrainReport, argmax};
use crate::pool::Exclusions;
use crate::pool::Pool;
use crate::pool::npy::{self, DType};
use crate::report::atomic_write;
use crate::score::{InputForm, LogBase, Query, ScoreSpec};
use crate::{Backend, Device, Job};

/// What `next` is asked for.
pub struct NextOptions {
    /// Items to select.
    pub k: usize,
    /// A row-wise strategy, or a batch-aware one (embeddings: the model's
    /// last hidden layer).
    pub strategy: Query,
    /// Seeds the random strategy and BADGE.
    pub seed: u64,
    /// The model trained each round.
    pub learner: MlpConfig,
    /// Where the selection runs.
    pub device: Device,
    /// The batch file; its extension picks the format.
    pub out: PathBuf,
    /// Select items annotators skipped again (by default they are left out
    /// until someone labels them).
    pub reselect_skipped: bool,
}

/// What a round did.
pub struct NextRound {
    /// The round's number.
    pub round: i64,
    /// Items in the batch.
    pub picked: usize,
    /// `None` when no label arrived since the last round, whose batch was
    /// exported again.
    pub trained: Option<TrainReport>,
    /// Labels the model trained on.
    pub labels: usize,
    /// Items scored.
    pub scored: u64,
}

/// Runs one round of `ws` (in `dir`).
pub fn next_round(
    ws: &mut Workspace,
    dir: &Path,
    opts: &NextOptions,
    progress: &dyn Progress,
) -> Result<NextRound> {
    let format = BatchFormat::from_path(&opts.out)?;
    let classes = ws.classes()?;
    let seq = ws.label_seq()?;
    let labels = ws.labels()?;
    let skipped = if opts.reselect_skipped {
        Vec::new()
    } else {
        ws.skipped()?
    };
    // Recorded relative to the workspace, so it can move.
    let model_rel = format!("models/labels-{seq}.safetensors");
    let model_path = dir.join(&model_rel);
    let features = FeaturePool::open(&[PathBuf::from(ws.meta("features")?)])?;

    let (round, picks, model, trained, scored) = if let Some(round) =
        ws.round_for(seq, skipped.len())?
    {
        let model = Mlp::load(&model_path)?;
        let picks: Vec<(usize, f64)> = ws
            .selection(round)?
            .into_iter()
            .map(|p| (p.index, p.score))
            .collect();
        (round, picks, model, None, 0)
    } else {
        let distinct: HashSet<usize> = labels.iter().map(|l| l.class).collect();
        if labels.len() < 2 || distinct.len() < 2 {
            return Err(Error::Config(format!(
                "{} labels of {} classes so far; the first model needs at least 2 labels of 2 classes (alpool ingest)",
                labels.len(),
                distinct.len()
            )));
        }
        let rows: Vec<usize> = labels.iter().map(|l| l.index).collect();
        let ys: Vec<usize> = labels.iter().map(|l| l.class).collect();
        let (model, fit) = train(&features, &rows, &ys, classes.len(), &opts.learner)?;
        checkpoint("next-after-train");
        save_model(&model, &model_path)?;
        let excluded: Vec<usize> = rows.iter().chain(&skipped).copied().collect();
        let sel = score_unlabeled(&model, &features, &excluded, (opts, seq, dir), progress)?;
        let picks = sel
            .entries
            .iter()
            .map(|e| (e.index as usize, e.score))
            .collect();
        let round = ws.last_round()?.map_or(0, |(r, _)| r + 1);
        let scored = features.rows() - sel.excluded;
        (round, picks, model, Some(fit), scored)
    };

    // Export the batch (atomically), then record the round.
    let sel_rows: Vec<usize> = picks.iter().map(|p| p.0).collect();
    let probs = model.predict_proba(&features.gather(&sel_rows)?)?;
    let c = classes.len();
    let predicted: Vec<usize> = probs.chunks_exact(c).map(argmax).collect();
    let ids = ws.ids_of(&sel_rows)?;
    let data = ws.item_data(&sel_rows)?;
    let rows: Vec<BatchRow> = picks
        .iter()
        .enumerate()
        .map(|(r, &(index, score))| BatchRow {
            rank: r as i64 + 1,
            index,
            id: &ids[r],
            score,
            predicted: predicted[r],
            probabilities: &probs[r * c..(r + 1) * c],
            data: data[r].as_ref(),
        })
        .collect();
    atomic_write(&opts.out, |w| {
        let token = ws.token()?;
        let info = BatchInfo {
            classes: &classes,
            round,
            strategy: opts.strategy,
            token: &token,
        };
        export::write_batch(w, format, &info, &rows).map_err(|e| Error::io(&opts.out, e))
    })?;
    checkpoint("next-after-export");
    let records: Vec<Pick> = picks
        .iter()
        .zip(&predicted)
        .map(|(&(index, score), &predicted)| Pick {
            index,
            score,
            predicted,
        })
        .collect();
    let round = ws.record_round(
        opts.strategy.name(),
        &model_rel,
        labels.len(),
        seq,
        skipped.len(),
        &records,
    )?;
    Ok(NextRound {
        round,
        picked: picks.len(),
        trained,
        labels: labels.len(),
        scored,
    })
}

/// A fresh model, scaled by statistics of every item (the pool it will
/// score), trained on the labeled rows.
fn train(
    features: &FeaturePool,
    rows: &[usize],
    ys: &[usize],
    classes: usize,
    config: &MlpConfig,
) -> Result<(Mlp, TrainReport)> {
    let scaler = match config.scale.resolve(features.unit_images()) {
        Some(kind) => Some(Scaler::from_stats(kind, &features.column_stats()?)?),
        None => None,
    };
    let mut model = Mlp::new(features.dim(), classes, config.clone())?.with_scaler(scaler)?;
    let fit = model.fit(&features.gather(rows)?, ys)?;
    Ok((model, fit))
}

/// Written under temporary names, then renamed: never half a model.
fn save_model(model: &Mlp, path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = path.with_extension("partial.safetensors");
    model.save(&tmp)?;
    let rename = |a: &Path, b: &Path| std::fs::rename(a, b).map_err(|e| Error::io(b, e));
    rename(&tmp.with_extension("json"), &path.with_extension("json"))?;
    rename(&tmp, path)
}

/// The k best unlabeled items, scored from the features in blocks.
fn score_unlabeled(
    model: &Mlp,
    features: &FeaturePool,
    labeled: &[usize],
    (opts, seq, dir): (&NextOptions, i64, &Path),
    progress: &dyn Progress,
) -> Result<crate::Selection> {
    // A model's softmax sums to 1 within f32 rounding; renormalizing
    // defines the scores on exactly what the model meant.
    let input = InputForm::Probs {
        renormalize: true,
        sum_tol: 1e-3,
    };
    let exclusions = Exclusions::new(labeled.iter().map(|&r| r as u64).collect());
    // A block's probabilities are far below the size where a GPU gains
    // (`alpool select --device auto`): the GPU only when asked for.
    let (gpu, _) = match opts.device {
        Device::Gpu => crate::api::choose_device(Device::Gpu, None, u64::MAX)?,
        _ => (None, String::new()),
    };
    let backend = gpu.as_ref().map_or(Backend::Cpu, Backend::Gpu);
    let strategy = match opts.strategy {
        Query::Score(strategy) => strategy,
        Query::Batch(b) => {
            let selectable = features.rows() - exclusions.len() as u64;
            let mut job = BatchJob::new(b, input, opts.k.min(selectable as usize));
            job.seed = opts.seed ^ seq as u64;
            job.exclusions = exclusions;
            return select_batch_from_model(backend, model, features, &job, dir, progress);
        }
    };
    let spec = ScoreSpec {
        strategy,
        log_base: LogBase::E,
        seed: opts.seed ^ seq as u64,
    };
    let mut job = Job::new(spec, input, opts.k);
    job.exclusions = exclusions;
    Ok(select_features_on(backend, model, features, &job, progress)?.0)
}

/// A batch-aware round: the model's probabilities and embeddings of every
/// item go to two temporary .npy files beside the workspace, block by
/// block (memory stays bounded whatever the pool's size), and the batch
/// strategy reads them memory-mapped.
fn select_batch_from_model(
    backend: Backend,
    model: &Mlp,
    features: &FeaturePool,
    job: &BatchJob,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<crate::Selection> {
    let tmp = tempfile::Builder::new()
        .prefix(".alpool-round-")
        .tempdir_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let n = features.rows() as usize;
    let views = [
        (tmp.path().join("probs.npy"), model.classes()),
        (tmp.path().join("embeddings.npy"), model.embed_width()),
    ];
    let mut files = Vec::new();
    for (path, width) in &views {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
        std::io::Write::write_all(&mut f, &npy::encode_header(DType::F32, &[n, *width]))
            .map_err(|e| Error::io(path, e))?;
        files.push(f);
    }
    const BLOCK: usize = 8192;
    for start in (0..n).step_by(BLOCK) {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let rows: Vec<usize> = (start..(start + BLOCK).min(n)).collect();
        let x = features.gather(&rows)?;
        let all: Vec<usize> = (0..rows.len()).collect();
        let parts = [model.predict_proba(&x)?, model.embed_rows(&x, &all)?];
        for ((f, (path, _)), part) in files.iter_mut().zip(&views).zip(&parts) {
            std::io::Write::write_all(f, bytemuck::cast_slice(part))
                .map_err(|e| Error::io(path, e))?;
        }
    }
    for (f, (path, _)) in files.into_iter().zip(&views) {
        f.into_inner()
            .map_err(|e| Error::io(path, e.into_error()))?;
    }
    let probs = Pool::open(&[&views[0].0])?;
    let emb = Pool::open(&[&views[1].0])?;
    crate::batch::select_batch_on(backend, &probs, &emb, job, progress)
}
