//! One batch round of a workspace (`alpool next`): train on every label so
//! far, score the unlabeled items straight from the memory-mapped features
//! (no copy of the pool, no N x C matrix: [`crate::features`]), export the
//! batch atomically, then record the round. Killed at any point, the
//! workspace is as before or as after (the checkpoints below are where the
//! crash tests abort).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::export::{self, BatchFormat, BatchInfo, BatchRow};
use super::vocab::{LabelKind, Vocab};
use super::{Pick, Workspace, checkpoint};
use crate::api::{Device, Inputs, Run};
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::features::FeaturePool;
use crate::job::Job;
use crate::learner::{Mlp, MlpConfig, Scaler, TrainReport};
use crate::pool::Exclusions;
use crate::query::{InputForm, Method, Query, Stochastic};

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
    /// The disagreement strategies' samples: T MC-dropout passes of the
    /// round's model (trained with `learner.dropout` > 0); 0: none.
    pub mc_samples: usize,
    /// Or a committee's: T learners trained each round beside the model,
    /// each on its own bootstrap resample of the labels
    /// ([`crate::learner::Committee`]); 0: none.
    pub committee: usize,
    /// Draw the batch at random with chances that grow with the scores
    /// (`next --stochastic`, [`crate::query::Stochastic`]), seeded by
    /// `seed` and the labels so far, instead of taking the k best: for
    /// strategies that score items.
    pub stochastic: Option<Stochastic>,
}

impl NextOptions {
    /// The strategy as the round runs it.
    pub fn method(&self) -> Method {
        Method {
            query: self.strategy,
            stochastic: self.stochastic,
        }
    }
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

/// The round's model and batch: a round already recorded for these labels
/// and skips is exported again; otherwise a new model is trained and the
/// pool scored.
struct Decided {
    round: i64,
    picks: Vec<(usize, f64)>,
    model: Mlp,
    trained: Option<TrainReport>,
    scored: u64,
}

/// Refuses, before any training, a strategy that reads samples without MC
/// dropout to make them, and MC dropout of a learner without dropout.
pub(super) fn check_samples(opts: &NextOptions) -> Result<()> {
    let reads = opts.strategy.needs().samples == crate::query::Use::Required;
    let rate = opts.learner.dropout;
    if opts.committee > 0 && (opts.mc_samples > 0 || opts.committee < 2 || !reads) {
        return Err(Error::Config(format!(
            "--committee T (T ≥ 2, got {}) trains the learners whose disagreement {} would read: give it to a disagreement strategy, without --mc-samples",
            opts.committee, opts.strategy
        )));
    }
    match (reads, opts.mc_samples) {
        (true, _) if opts.committee >= 2 => Ok(()),
        (true, t) if t < 2 => Err(Error::Config(format!(
            "{} reads T samples of each item's probabilities: give --mc-samples T (T ≥ 2) with --dropout P, and the round's model makes them, or --committee T",
            opts.strategy
        ))),
        (true, _) if rate.is_nan() || rate <= 0.0 => Err(Error::Config(
            "--mc-samples keeps the model's dropout on at inference: train it with --dropout P (0 < P < 1)".into(),
        )),
        _ => Ok(()),
    }
}

/// Refuses, before anything, a strategy for the other kind of workspace:
/// a multi-label workspace's model has one sigmoid output per class, which
/// only the multi-label strategies read, and the reverse.
pub(super) fn check_kind(vocab: &Vocab, strategy: Query) -> Result<()> {
    if vocab.numeric() {
        return super::regression::check_strategy(strategy);
    }
    if let Query::Regress(r) = strategy {
        return Err(Error::Config(format!(
            "{r} reads a regressor's predictions; this workspace's labels are classes (regression workspaces are made by init --regression NAME)"
        )));
    }
    match (vocab.multilabel(), strategy) {
        (false, Query::Multi(m)) => Err(Error::Config(format!(
            "{m} reads a multi-label model; this workspace's labels are single classes (multi-label workspaces are made by init --multilabel)"
        ))),
        (true, Query::Multi(_)) | (false, _) => Ok(()),
        (true, q) => {
            let names: Vec<&str> = crate::query::MultiLabel::ALL.map(|m| m.name()).to_vec();
            Err(Error::Config(format!(
                "the workspace is multi-label: its model has one sigmoid output per class, which {q} does not read; its strategies are {}",
                names.join(", ")
            )))
        }
    }
}

/// Runs one round of `ws` (in `dir`).
pub fn next_round(
    ws: &mut Workspace,
    dir: &Path,
    opts: &NextOptions,
    progress: &dyn Progress,
) -> Result<NextRound> {
    let format = BatchFormat::from_path(&opts.out)?;
    check_kind(&ws.vocab()?, opts.strategy)?;
    check_samples(opts)?;
    opts.method().check().map_err(Error::Config)?;
    let seq = ws.label_seq()?;
    let labels = ws.labels()?;
    let skipped = if opts.reselect_skipped {
        Vec::new()
    } else {
        ws.skipped()?
    };
    // Recorded relative to the workspace, so it can move.
    let model_rel = format!("models/labels-{seq}.safetensors");
    let features = FeaturePool::open(&[PathBuf::from(ws.meta("features")?)])?;
    let decided = match ws.round_for(seq, skipped.len())? {
        Some(round) => Decided {
            round,
            picks: ws
                .selection(round)?
                .into_iter()
                .map(|p| (p.index, p.score))
                .collect(),
            model: Mlp::load(&dir.join(&model_rel))?,
            trained: None,
            scored: 0,
        },
        None => {
            let ctx = (opts, seq, dir.join(&model_rel));
            new_round(ws, &features, &labels, &skipped, ctx, progress)?
        }
    };
    let predicted = export(ws, &features, &decided, opts, format)?;
    checkpoint("next-after-export");
    let records: Vec<Pick> = decided
        .picks
        .iter()
        .zip(&predicted)
        .map(|(&(index, score), &predicted)| Pick {
            index,
            score,
            predicted,
        })
        .collect();
    let round = ws.record_round(
        &opts.method().name(),
        &model_rel,
        labels.len(),
        seq,
        skipped.len(),
        &records,
    )?;
    Ok(NextRound {
        round,
        picked: decided.picks.len(),
        trained: decided.trained,
        labels: labels.len(),
        scored: decided.scored,
    })
}

/// Trains on every label, saves the model, and selects the batch.
fn new_round(
    ws: &Workspace,
    features: &FeaturePool,
    labels: &[super::LabelRow],
    skipped: &[usize],
    (opts, seq, model_path): (&NextOptions, i64, PathBuf),
    progress: &dyn Progress,
) -> Result<Decided> {
    let vocab = ws.vocab()?;
    let distinct: HashSet<usize> = labels.iter().map(|l| l.class).collect();
    if labels.len() < 2 || (distinct.len() < 2 && vocab.kind == LabelKind::Class) {
        return Err(Error::Config(format!(
            "{} labels of {} classes so far; the first model needs at least 2 labels of 2 classes (alpool ingest)",
            labels.len(),
            distinct.len()
        )));
    }
    let rows: Vec<usize> = labels.iter().map(|l| l.index).collect();
    let ys: Vec<usize> = labels.iter().map(|l| l.class).collect();
    let (model, fit) = train(features, &rows, &ys, &vocab, &opts.learner)?;
    checkpoint("next-after-train");
    save_model(&model, &model_path)?;
    if vocab.numeric() {
        let round = super::regression::Round {
            model: &model,
            features,
            labels,
            skipped,
            dir: &ws.dir,
            seed: opts.seed ^ seq as u64,
        };
        let picks = super::regression::select(&round, opts, progress)?;
        return Ok(Decided {
            round: ws.last_round()?.map_or(0, |(r, _)| r + 1),
            picks,
            model,
            trained: Some(fit),
            scored: features.rows() - (rows.len() + skipped.len()) as u64,
        });
    }
    let committee = match opts.committee {
        0 => Vec::new(),
        t => {
            let x = features.gather(&rows)?;
            let shape = (features.dim(), vocab.width());
            let scaler = model.scaler().cloned();
            let seed = opts.seed ^ seq as u64;
            let c =
                crate::learner::Committee::fit(t, shape, &opts.learner, scaler, (&x, &ys), seed)?;
            c.into_members()
        }
    };
    let excluded: Vec<usize> = rows.iter().chain(skipped).copied().collect();
    let job = (seq, cardinality(&vocab, labels));
    let models = (&model, committee.as_slice());
    let sel = score_unlabeled(models, features, &excluded, opts, job, progress)?;
    Ok(Decided {
        round: ws.last_round()?.map_or(0, |(r, _)| r + 1),
        picks: sel
            .entries
            .iter()
            .map(|e| (e.index as usize, e.score))
            .collect(),
        model,
        trained: Some(fit),
        scored: features.rows() - sel.excluded,
    })
}

/// Exports the batch (atomically), with the model's predictions of each
/// picked item, which it returns.
fn export(
    ws: &Workspace,
    features: &FeaturePool,
    d: &Decided,
    opts: &NextOptions,
    format: BatchFormat,
) -> Result<Vec<usize>> {
    let vocab = ws.vocab()?;
    let sel_rows: Vec<usize> = d.picks.iter().map(|p| p.0).collect();
    let probs = d.model.predict_proba(&features.gather(&sel_rows)?)?;
    let c = vocab.width();
    let predicted: Vec<usize> = probs.chunks_exact(c).map(|p| vocab.predicted(p)).collect();
    let ids = ws.ids_of(&sel_rows)?;
    let data = ws.item_data(&sel_rows)?;
    let rows: Vec<BatchRow> = d
        .picks
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
    crate::atomic::write(&opts.out, |w| {
        let token = ws.token()?;
        let info = BatchInfo {
            vocab: &vocab,
            round: d.round,
            strategy: opts.strategy,
            token: &token,
            model: true,
        };
        export::write_batch(w, format, &info, &rows).map_err(|e| Error::io(&opts.out, e))
    })?;
    Ok(predicted)
}

/// A fresh model, scaled by statistics of every item (the pool it will
/// score), trained on the labeled rows: a softmax classifier, in a
/// multi-label workspace one sigmoid output per class, in a regression
/// one a regressor.
pub(super) fn train(
    features: &FeaturePool,
    rows: &[usize],
    ys: &[usize],
    vocab: &Vocab,
    config: &MlpConfig,
) -> Result<(Mlp, TrainReport)> {
    let scaler = match config.scale.resolve(features.unit_images()) {
        Some(kind) => Some(Scaler::from_stats(kind, &features.column_stats()?)?),
        None => None,
    };
    let (d, x) = (features.dim(), features.gather(rows)?);
    if vocab.numeric() {
        let mut model = Mlp::new_regressor(d, config.clone())?.with_scaler(scaler)?;
        let y: Vec<f32> = ys.iter().flat_map(|&code| vocab.targets(code)).collect();
        let fit = model.fit_regression(&x, &y)?;
        return Ok((model, fit));
    }
    if vocab.multilabel() {
        let mut model =
            Mlp::new_multilabel(d, vocab.width(), config.clone())?.with_scaler(scaler)?;
        let targets: Vec<f32> = ys.iter().flat_map(|&code| vocab.targets(code)).collect();
        let fit = model.fit_multilabel(&x, &targets)?;
        return Ok((model, fit));
    }
    let mut model = Mlp::new(d, vocab.width(), config.clone())?.with_scaler(scaler)?;
    let fit = model.fit(&x, ys)?;
    Ok((model, fit))
}

/// The labeled items' mean set size in a multi-label workspace (what the
/// cardinality strategies read), `None` otherwise.
pub(super) fn cardinality(vocab: &Vocab, labels: &[super::LabelRow]) -> Option<f64> {
    let sizes = labels.iter().map(|l| vocab.classes_of(l.class).len());
    let mean = sizes.sum::<usize>() as f64 / labels.len().max(1) as f64;
    vocab.multilabel().then_some(mean)
}

impl Workspace {
    /// [`cardinality`] of the stored labels, read only in a multi-label
    /// workspace (the ML backend asks on every request).
    pub(super) fn label_cardinality(&self, vocab: &Vocab) -> Result<Option<f64>> {
        match vocab.multilabel() {
            true => Ok(cardinality(vocab, &self.labels()?)),
            false => Ok(None),
        }
    }
}

/// The input form of a workspace model's outputs: softmax rows, or a
/// multi-label model's sigmoid outputs.
pub(super) fn output_form(vocab: &Vocab) -> InputForm {
    match vocab.kind {
        LabelKind::Set => InputForm::MultiLabel { logits: false },
        LabelKind::Number => InputForm::Regression(crate::query::RegressionInput::Samples),
        LabelKind::Class => InputForm::model_output(),
    }
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

/// The k best unlabeled items, through the door: scored from the
/// features in blocks (row-wise), or from the model's probabilities and
/// embeddings (batch-aware).
fn score_unlabeled(
    (model, committee): (&Mlp, &[Mlp]),
    features: &FeaturePool,
    labeled: &[usize],
    opts: &NextOptions,
    (seq, cardinality): (i64, Option<f64>),
    progress: &dyn Progress,
) -> Result<crate::Selection> {
    let input = InputForm::model_output();
    let exclusions = Exclusions::new(labeled.iter().map(|&r| r as u64).collect());
    let selectable = features.rows() - exclusions.len() as u64;
    let k = match opts.strategy {
        Query::Batch(_) => opts.k.min(selectable as usize),
        _ => opts.k,
    };
    let mut job = Job::new(opts.strategy, input, k)
        .seed(opts.seed ^ seq as u64)
        .exclude(exclusions);
    job.label_cardinality = cardinality;
    job.stochastic = opts.stochastic;
    let run = Run {
        device: opts.device,
        adapter: None,
        progress,
        gpu: None,
    };
    let reads_samples = opts.strategy.needs().samples == crate::query::Use::Required;
    let inputs = match (reads_samples, committee.is_empty()) {
        (true, false) => Inputs::committee(committee, features),
        (true, true) => {
            Inputs::mc_dropout(model, features, opts.mc_samples, opts.seed ^ seq as u64)
        }
        (false, _) => Inputs::model(model, features),
    };
    Ok(crate::select(inputs, &job, &run)?.selection)
}
