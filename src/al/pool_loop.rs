//! Pool-based active learning: train, evaluate, check the stopping
//! criteria, score the unlabeled pool with the core engine, ask the oracle
//! for the selected batch, repeat.

use std::time::Instant;

use super::stopping::{Fired, RoundFacts, StopConfig, Stopper};
use super::{Dataset, Oracle, Split, accuracy_and_macro_f1, seed_set};
use crate::api::Backend;
use crate::backend::gpu::Gpu;
use crate::backend::{Job, Silent};

use crate::batch::{BatchJob, BatchStrategy};
use crate::error::{Error, Result};
use crate::features::BlockSelect;
use crate::learner::{Mlp, MlpConfig};
use crate::pool::Exclusions;
use crate::pool::Pool;
use crate::pool::synth::Rng;
use crate::score::{InputForm, LogBase, Query, ScoreSpec};
use crate::select::Selection;

/// One pool-based run.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    /// A row-wise strategy, or a batch-aware one (its embeddings are the
    /// learner's last hidden layer).
    pub strategy: Query,
    /// Entropy's log base.
    pub log_base: LogBase,
    /// Labels drawn from the pool before the first round.
    pub seed_size: usize,
    /// Draw the seed set stratified by class instead of at random.
    pub seed_stratified: bool,
    /// Rows queried per round.
    pub batch_size: usize,
    /// When to stop.
    pub stop: StopConfig,
    /// The learner trained each round.
    pub mlp: MlpConfig,
    /// Continue training last round's model instead of starting afresh.
    pub warm_start: bool,
    /// Seeds the seed set, the stop set and the random strategy.
    pub seed: u64,
}

/// What one round did and measured.
#[derive(Clone, Debug)]
pub struct Round {
    /// 0 for the round trained on the seed set.
    pub round: usize,
    /// Labels the round trained on.
    pub labels: usize,
    /// Accuracy on the held-out test rows.
    pub test_accuracy: f64,
    /// Macro-averaged F1 on the test rows.
    pub macro_f1: f64,
    /// Accuracy on the labeled rows it trained on.
    pub train_accuracy: f64,
    /// Seconds spent training. These are wall seconds: next to other runs
    /// on the same threads (`simulate`'s parallel runs), they include time a
    /// waiting thread spent on the others' work.
    pub train_s: f64,
    /// Seconds spent predicting the unlabeled pool.
    pub predict_s: f64,
    /// Seconds spent selecting the next batch.
    pub select_s: f64,
    /// Largest least-confidence score left in the pool.
    pub max_uncertainty: f64,
    /// Cohen's kappa between successive models on the stop set.
    pub kappa: Option<f64>,
    /// Stopping criteria that hold after this round.
    pub fired: Vec<Fired>,
}

/// A whole run of the loop.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Every round, in order.
    pub rounds: Vec<Round>,
    /// Dataset rows labeled, in the order they were queried.
    pub labeled: Vec<usize>,
    /// The criteria that ended the run.
    pub stopped_by: Vec<Fired>,
}

impl RunResult {
    /// Area under the learning curve: mean test accuracy over the rounds.
    pub fn aulc(&self) -> f64 {
        self.rounds.iter().map(|r| r.test_accuracy).sum::<f64>() / self.rounds.len().max(1) as f64
    }
}

/// Unlabeled rows per block of the loop's scoring pass: whole inference
/// tiles, so each row's probabilities are the bits of one pass over all.
const LOOP_BLOCK: usize = 64 * crate::learner::TILE_ROWS;

/// Runs the loop on `data` with the given split. The test rows are used
/// only to evaluate; the oracle is asked only for the seed set and for
/// selected pool rows.
pub fn run(
    data: &Dataset,
    split: &Split,
    cfg: &LoopConfig,
    oracle: &mut dyn Oracle,
    gpu: Option<&Gpu>,
) -> Result<RunResult> {
    if split.pool.is_empty() {
        return Err(Error::Config("the pool is empty".into()));
    }
    let mut labeled = seed_set(
        &split.pool,
        &data.y,
        cfg.seed_size.max(1),
        cfg.seed_stratified,
        cfg.seed,
    );
    let mut labels = oracle.label(&labeled)?;
    let mut in_labeled = vec![false; data.rows()];
    labeled.iter().for_each(|&r| in_labeled[r] = true);

    let test_y = data.labels(&split.test);
    // Fitted once on the pool (never the test rows): the same transform in
    // every round, whatever was labeled.
    let scaler = data.scaler(cfg.mlp.scale, Some(&split.pool))?;
    let mut stopper = Stopper::new(cfg.stop.clone());
    // The stop set: a fixed random sample of the initial pool.
    let stop_set: Vec<usize> = match cfg.stop.stabilizing {
        Some(s) => {
            let mut rows = split.pool.clone();
            crate::learner::shuffle(&mut rows, &mut Rng::new(cfg.seed ^ 0x570b));
            rows.truncate(s.stop_set.max(1));
            rows
        }
        None => Vec::new(),
    };

    let mut rounds = Vec::new();
    let mut model: Option<Mlp> = None;
    for round in 0.. {
        let t = Instant::now();
        let mut m = match (cfg.warm_start, model.take()) {
            (true, Some(m)) => m,
            _ => Mlp::new(
                data.dim,
                data.classes,
                MlpConfig {
                    seed: cfg.mlp.seed ^ cfg.seed.wrapping_mul(0x9E37_79B9) ^ round as u64,
                    ..cfg.mlp.clone()
                },
            )?
            .with_scaler(scaler.clone())?,
        };
        let fit = m.fit(&data.gather(&labeled), &labels)?;
        let train_s = t.elapsed().as_secs_f64();

        let pred = data.predict(&m, &split.test)?;
        let (test_accuracy, macro_f1) = accuracy_and_macro_f1(&test_y, &pred);

        let t = Instant::now();
        let unlabeled: Vec<usize> = split
            .pool
            .iter()
            .copied()
            .filter(|&r| !in_labeled[r])
            .collect();
        let budget_left = cfg
            .stop
            .budget
            .map_or(usize::MAX, |b| b.saturating_sub(labeled.len()));
        let k = cfg.batch_size.max(1).min(budget_left).min(unlabeled.len());
        let seed = cfg.seed.wrapping_mul(1_000_003).wrapping_add(round as u64);
        // A model's softmax sums to 1 within f32 rounding; renormalizing
        // defines the scores on exactly what the model meant.
        let input = InputForm::Probs {
            renormalize: true,
            sum_tol: 1e-3,
        };
        let job = match cfg.strategy {
            Query::Score(strategy) => Some(Job::new(
                ScoreSpec {
                    strategy,
                    log_base: cfg.log_base,
                    seed,
                },
                input,
                k,
            )),
            Query::Batch(_) => None,
        };
        // One pass over the unlabeled rows, block by block: the stopping
        // criteria's uncertainties and (row-wise strategies) the exact top
        // k, with no N x C matrix; batch strategies keep the probabilities.
        let backend = gpu.map_or(Backend::Cpu, Backend::Gpu);
        let mut blocks = job
            .as_ref()
            .map(|j| BlockSelect::new(backend, j, unlabeled.len() as u64));
        let mut kept = Vec::new();
        let mut lc = Vec::with_capacity(unlabeled.len());
        let mut select_s = 0.0;
        for (b, rows) in unlabeled.chunks(LOOP_BLOCK).enumerate() {
            let probs = data.predict_proba_rows(&m, rows)?;
            lc.extend(
                probs
                    .chunks_exact(data.classes)
                    .map(|p| 1.0 - p.iter().copied().fold(0f32, f32::max) as f64),
            );
            let u = Instant::now();
            match &mut blocks {
                Some(sel) if k > 0 => sel.offer((b * LOOP_BLOCK) as u64, &probs, data.classes)?,
                Some(_) => {}
                None => kept.extend_from_slice(&probs),
            }
            select_s += u.elapsed().as_secs_f64();
        }
        let predict_s = t.elapsed().as_secs_f64() - select_s;
        let stop_pred = if stop_set.is_empty() {
            None
        } else {
            Some(data.predict(&m, &stop_set)?)
        };
        let fired = stopper.check(&RoundFacts {
            labels: labeled.len(),
            accuracy: test_accuracy,
            stop_set_predictions: stop_pred.as_deref(),
            pool_uncertainty: Some(&lc),
        });
        let mut record = Round {
            round,
            labels: labeled.len(),
            test_accuracy,
            macro_f1,
            train_accuracy: fit.train_accuracy,
            train_s,
            predict_s,
            select_s,
            max_uncertainty: lc.iter().copied().fold(0.0, f64::max),
            kappa: stopper.last_kappa,
            fired: fired.clone(),
        };
        let m: &Mlp = model.insert(m);
        if !fired.is_empty() || unlabeled.is_empty() || budget_left == 0 {
            let mut stopped_by = fired;
            if stopped_by.is_empty() {
                stopped_by.push(Fired::new("pool-exhausted", "no unlabeled rows left"));
            }
            rounds.push(record);
            return Ok(RunResult {
                rounds,
                labeled,
                stopped_by,
            });
        }

        // The next batch.
        let t = Instant::now();
        let (sel, rows) = match (blocks, cfg.strategy) {
            (Some(blocks), _) => (blocks.finish(), unlabeled.clone()),
            (None, Query::Batch(b)) => {
                batch_round(data, (m, &kept), b, &unlabeled, &labeled, input, k, seed)?
            }
            (None, Query::Score(_)) => unreachable!("row-wise strategies select in blocks"),
        };
        let batch: Vec<usize> = sel.entries.iter().map(|e| rows[e.index as usize]).collect();
        record.select_s += t.elapsed().as_secs_f64();
        rounds.push(record);

        let new = oracle.label(&batch)?;
        for (&r, l) in batch.iter().zip(new) {
            debug_assert!(!in_labeled[r]);
            in_labeled[r] = true;
            labeled.push(r);
            labels.push(l);
        }
    }
    unreachable!("the loop returns when a criterion fires or the pool is empty")
}

/// A batch-aware round: the unlabeled rows then the labeled ones (core-set's
/// centres, excluded), with the model's probabilities and embeddings.
/// Returns the selection and the dataset row of each pool position.
#[allow(clippy::too_many_arguments)]
fn batch_round(
    data: &Dataset,
    (m, unlabeled_probs): (&Mlp, &[f32]),
    strategy: BatchStrategy,
    unlabeled: &[usize],
    labeled: &[usize],
    input: InputForm,
    k: usize,
    seed: u64,
) -> Result<(Selection, Vec<usize>)> {
    let rows: Vec<usize> = unlabeled.iter().chain(labeled).copied().collect();
    let mut probs = unlabeled_probs.to_vec();
    probs.extend(data.predict_proba_rows(m, labeled)?);
    let emb = data.embed_rows(m, &rows)?;
    let mut job = BatchJob::new(strategy, input, k);
    job.seed = seed;
    job.exclusions = Exclusions::new((unlabeled.len() as u64..rows.len() as u64).collect());
    let sel = crate::batch::select_batch(
        &Pool::from_f32(&probs, data.classes)?,
        &Pool::from_f32(&emb, m.embed_width())?,
        &job,
        &Silent,
    )?;
    Ok((sel, rows))
}
