//! Pool-based active learning: train, evaluate, check the stopping
//! criteria, score the unlabeled pool with the core engine, ask the oracle
//! for the selected batch, repeat.

use std::sync::Arc;
use std::time::Instant;

use super::stopping::{Fired, RoundFacts, StopConfig, Stopper};
use super::{Dataset, Oracle, Split, accuracy_and_macro_f1, seed_set};
use crate::api::{Device, Inputs, Run};
use crate::backend::Silent;
use crate::backend::gpu::Gpu;
use crate::error::{Error, Result};
use crate::features::FeaturePool;
use crate::job::Job;
use crate::learner::{Committee, Mlp, MlpConfig, TrainReport};
use crate::pool::Exclusions;
use crate::pool::{Pool, SampleLayout, Samples};
use crate::query::{BatchStrategy, InputForm, LogBase, Method, Query, Stochastic, Strategy, Use};
use crate::rng::Rng;
use crate::select::Blocks;
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
    /// The embeddings the batch-aware and cold-start strategies read, and
    /// the cold-start strategies' settings.
    pub embedding: EmbeddingSettings,
    /// Members of the committee whose probabilities are the samples the
    /// disagreement strategies and BatchBALD read (`--committee T`; 0: no
    /// committee). Each round trains them beside the model, each on its own
    /// bootstrap resample of the labels ([`Committee`]).
    pub committee: usize,
    /// MC dropout instead (`--mc-samples T`; 0: the committee): T passes of
    /// the round's model, trained with `mlp.dropout` > 0, with dropout
    /// kept on ([`crate::learner::McPass`]); the masks are seeded by the
    /// round.
    pub mc_samples: usize,
    /// Draw each batch at random with chances that grow with the scores
    /// (`--stochastic`: Kirsch et al. 2023's power, softmax or softrank
    /// acquisition), keyed on the round's seed, instead of taking the top
    /// k. Applies to strategies with a score per row
    /// ([`Stochastic::check_for`]); random stays the uniform baseline, and
    /// a strategy that picks a batch itself is refused.
    pub stochastic: Option<Stochastic>,
}

impl LoopConfig {
    /// The strategy as this run runs it.
    pub fn method(&self) -> Method {
        Method {
            query: self.strategy,
            stochastic: self.stochastic,
        }
    }
}

/// The embeddings a strategy reads in the loop, and the cold-start
/// strategies' settings (see [`Job`]'s fields of the same names).
#[derive(Clone, Default)]
pub struct EmbeddingSettings {
    /// One row per dataset row (`simulate --embeddings`); `None`: the
    /// learner's last hidden layer, recomputed each round.
    pub given: Option<Arc<FeaturePool>>,
    /// k-means's Lloyd iterations at most (0 = 100).
    pub iterations: usize,
    /// ProbCover's δ; `None`: the smallest δ whose balls reach `purity`
    /// over a k-means with one cluster per class of the dataset.
    pub delta: Option<f64>,
    /// The purity δ must reach (0 = 0.95).
    pub purity: f64,
    /// Weights a row-wise uncertainty strategy (not random, which stays
    /// the baseline) by information density over the embeddings (`select
    /// --density-beta`); `None`: unweighted.
    pub density_beta: Option<f64>,
}

impl std::fmt::Debug for EmbeddingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingSettings")
            .field(
                "given",
                &self
                    .given
                    .as_ref()
                    .map(|e| format!("{} x {}", e.rows(), e.dim())),
            )
            .field("iterations", &self.iterations)
            .field("delta", &self.delta)
            .field("purity", &self.purity)
            .field("density_beta", &self.density_beta)
            .finish()
    }
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

/// The labeled set as the loop grows it.
struct Labeled {
    /// Dataset rows, in the order they were labeled.
    rows: Vec<usize>,
    /// Their labels.
    labels: Vec<usize>,
    /// Whether each dataset row is labeled.
    is: Vec<bool>,
}

impl Labeled {
    /// The seed set, labeled by the oracle.
    fn seed(
        data: &Dataset,
        split: &Split,
        cfg: &LoopConfig,
        oracle: &mut dyn Oracle,
    ) -> Result<Self> {
        let rows = seed_set(
            &split.pool,
            &data.y,
            cfg.seed_size.max(1),
            cfg.seed_stratified,
            cfg.seed,
        );
        let labels = oracle.label(&rows)?;
        let mut is = vec![false; data.rows()];
        rows.iter().for_each(|&r| is[r] = true);
        Ok(Labeled { rows, labels, is })
    }

    /// The pool rows not labeled yet, in pool order.
    fn unlabeled(&self, pool: &[usize]) -> Vec<usize> {
        pool.iter().copied().filter(|&r| !self.is[r]).collect()
    }

    /// Adds the oracle's labels of `batch`.
    fn add(&mut self, batch: &[usize], labels: Vec<usize>) {
        for (&r, l) in batch.iter().zip(labels) {
            debug_assert!(!self.is[r]);
            self.is[r] = true;
            self.rows.push(r);
            self.labels.push(l);
        }
    }
}

/// The stop set: a fixed random sample of the initial pool.
fn stop_set(split: &Split, cfg: &LoopConfig) -> Vec<usize> {
    match cfg.stop.stabilizing {
        Some(s) => {
            let mut rows = split.pool.clone();
            crate::learner::shuffle(&mut rows, &mut Rng::new(cfg.seed ^ 0x570b));
            rows.truncate(s.stop_set.max(1));
            rows
        }
        None => Vec::new(),
    }
}

/// The round's model: last round's (warm start) or a fresh one, trained on
/// every label so far.
fn train(
    data: &Dataset,
    cfg: &LoopConfig,
    round: usize,
    last: Option<Mlp>,
    scaler: &Option<crate::learner::Scaler>,
    labeled: &Labeled,
) -> Result<(Mlp, TrainReport)> {
    let mut m = match (cfg.warm_start, last) {
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
    let fit = m.fit(&data.gather(&labeled.rows), &labeled.labels)?;
    Ok((m, fit))
}

/// The round's committee, when the strategy reads samples: members seeded
/// from the run's seed and the round, scaled as the model is.
fn train_committee(
    data: &Dataset,
    cfg: &LoopConfig,
    round: usize,
    scaler: &Option<crate::learner::Scaler>,
    labeled: &Labeled,
) -> Result<Option<Committee>> {
    if cfg.strategy.needs().samples != Use::Required || cfg.mc_samples > 0 {
        return Ok(None);
    }
    let x = data.gather(&labeled.rows);
    let seed = round_seed(cfg.seed, round) ^ 0xC0_44_17_7E;
    let members = Committee::fit(
        cfg.committee,
        (data.dim, data.classes),
        &cfg.mlp,
        scaler.clone(),
        (&x, &labeled.labels),
        seed,
    )?;
    Ok(Some(members))
}

/// T MC-dropout passes of `m` over the listed rows, sample-major (T x
/// rows x C).
fn mc_samples(
    data: &Dataset,
    m: &Mlp,
    rows: &[usize],
    (passes, seed): (usize, u64),
) -> Result<Vec<f32>> {
    let mc = crate::learner::McPass {
        pass: 0,
        seed,
        rate: m.config().dropout,
        softmax: true,
    };
    // A row's T x C samples are its width; the buffer is T x rows x C.
    data.filled_rows(rows, passes * data.classes, |o, fill| {
        m.predict_mc_passes_filled((o, passes), fill, mc)
    })
}

/// What one pass over the unlabeled rows found.
struct Pass {
    /// Each unlabeled row's least-confidence score, for the stopping rules.
    uncertainty: Vec<f64>,
    /// A row-wise strategy's exact top k (positions in the unlabeled list).
    selection: Option<Selection>,
    /// A batch strategy's probabilities of the unlabeled rows.
    kept: Vec<f32>,
    predict_s: f64,
    select_s: f64,
}

/// One pass over the unlabeled rows, block by block: the stopping
/// criteria's uncertainties and, for a row-wise strategy, the exact top k
/// through the door (no N x C matrix); a batch strategy keeps the
/// probabilities.
fn score_pass(
    data: &Dataset,
    (m, committee, mc): (&Mlp, Option<&Committee>, Option<(usize, u64)>),
    unlabeled: &[usize],
    job: &Job,
    run: &Run,
) -> Result<Pass> {
    let t = Instant::now();
    // Density weighting, the batch and the cold-start strategies read the
    // whole pool's embeddings: selected after the pass, not block by block.
    // So does a softrank batch, whose keys are ranks in the whole pool.
    let whole = job.density_beta.is_some()
        || matches!(job.query, Query::Batch(_) | Query::Cold(_))
        || job.stochastic.is_some_and(|s| !s.per_row());
    let mut blocks = if whole {
        None
    } else {
        Some(Blocks::new(job, unlabeled.len() as u64)?)
    };
    // Cold-start strategies read embeddings alone.
    let keep = whole && !matches!(job.query, Query::Cold(_));
    let mut kept = Vec::new();
    let mut committee_kept: Vec<Vec<f32>> = Vec::new();
    let mut uncertainty = Vec::with_capacity(unlabeled.len());
    let mut select_s = 0.0;
    for (b, rows) in unlabeled.chunks(LOOP_BLOCK).enumerate() {
        let probs = data.predict_proba_rows(m, rows)?;
        uncertainty.extend(
            probs
                .chunks_exact(data.classes)
                .map(|p| 1.0 - p.iter().copied().fold(0f32, f32::max) as f64),
        );
        let u = Instant::now();
        let g0 = (b * LOOP_BLOCK) as u64;
        // The committee's samples of the block, member by member, or the
        // model's MC-dropout passes.
        let samples = match (committee, mc) {
            (Some(c), _) => Some(c.samples(&|member| data.predict_proba_rows(member, rows))?),
            (None, Some((passes, seed))) => Some(mc_samples(data, m, rows, (passes, seed))?),
            (None, None) => None,
        };
        match (&mut blocks, samples) {
            (Some(sel), Some(s)) if job.k > 0 => {
                let t = s.len() / probs.len();
                let samples = crate::features::block_samples(&s, t, rows.len(), g0)?;
                let block_job = sel.job_for(g0, rows.len() as u64);
                sel.add(crate::api::select(Inputs::samples(&samples), &block_job, run)?.selection);
            }
            (Some(sel), None) if job.k > 0 => {
                let pool = Pool::from_f32(&probs, data.classes)?.with_row_offset(g0);
                let block_job = sel.job_for(g0, pool.rows());
                sel.add(crate::api::select(&pool, &block_job, run)?.selection);
            }
            (Some(_), _) => {}
            (None, Some(s)) => committee_kept.push(s),
            (None, None) if keep => kept.extend_from_slice(&probs),
            (None, None) => {}
        }
        select_s += u.elapsed().as_secs_f64();
    }
    let members = committee.map(|c| c.members().len()).or(mc.map(|(t, _)| t));
    if let Some(t) = members.filter(|_| !committee_kept.is_empty()) {
        kept = sample_major(&committee_kept, t);
    }
    Ok(Pass {
        uncertainty,
        selection: blocks.map(Blocks::finish),
        kept,
        predict_s: t.elapsed().as_secs_f64() - select_s,
        select_s,
    })
}

/// Blocks of T x rows x C samples joined into T x n x C: each member's
/// rows of every block, in order.
fn sample_major(blocks: &[Vec<f32>], t: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(blocks.iter().map(Vec::len).sum());
    for member in 0..t {
        for b in blocks {
            let per = b.len() / t;
            out.extend_from_slice(&b[member * per..(member + 1) * per]);
        }
    }
    out
}

/// Committee members when a strategy reading samples is given none.
pub const DEFAULT_COMMITTEE: usize = 5;

/// The round's record: its measures, and the stopping criteria that hold.
fn measure(
    data: &Dataset,
    m: &Mlp,
    stop_set: &[usize],
    stopper: &mut Stopper,
    (round, labels, test_accuracy, macro_f1, fit): (usize, usize, f64, f64, &TrainReport),
    pass: &Pass,
    train_s: f64,
) -> Result<Round> {
    let stop_pred = if stop_set.is_empty() {
        None
    } else {
        Some(data.predict(m, stop_set)?)
    };
    let fired = stopper.check(&RoundFacts {
        labels,
        accuracy: test_accuracy,
        stop_set_predictions: stop_pred.as_deref(),
        pool_uncertainty: Some(&pass.uncertainty),
    });
    Ok(Round {
        round,
        labels,
        test_accuracy,
        macro_f1,
        train_accuracy: fit.train_accuracy,
        train_s,
        predict_s: pass.predict_s,
        select_s: pass.select_s,
        max_uncertainty: pass.uncertainty.iter().copied().fold(0.0, f64::max),
        kappa: stopper.last_kappa,
        fired,
    })
}

/// What can be refused before the first round: an empty pool, given
/// embeddings that are not one per dataset row, a strategy that reads
/// samples the loop's learner does not give.
fn check_inputs(data: &Dataset, split: &Split, cfg: &LoopConfig) -> Result<()> {
    if split.pool.is_empty() {
        return Err(Error::Config("the pool is empty".into()));
    }
    if let Some(e) = &cfg.embedding.given
        && e.rows() != data.rows() as u64
    {
        return Err(Error::EmbeddingRows {
            path: e.path().into(),
            pool: data.name.clone().into(),
            expected: data.rows() as u64,
            found: e.rows(),
        });
    }
    check_strategy(cfg.strategy, cfg.committee.max(cfg.mc_samples))?;
    if let Some(st) = cfg.stochastic {
        check_stochastic(cfg.strategy, st, cfg.embedding.density_beta)?;
    }
    if cfg.mc_samples > 0 && (cfg.mlp.dropout.is_nan() || cfg.mlp.dropout <= 0.0) {
        return Err(Error::Config(format!(
            "MC dropout ({} passes) keeps the learner's dropout on at inference: train it with --dropout P (0 < P < 1)",
            cfg.mc_samples
        )));
    }
    Ok(())
}

/// Whether a loop running `q` can draw `st`'s stochastic batches: `q`
/// scores rows (or is random, which stays the baseline), β is above 0,
/// and no density weight is asked for beside it.
pub fn check_stochastic(q: Query, st: Stochastic, density_beta: Option<f64>) -> Result<()> {
    st.check_for(q).map_err(Error::Config)?;
    if density_beta.is_some() && q != Query::Score(Strategy::Random) {
        return Err(Error::Config(
            "--density-beta and a stochastic batch (power-…, --stochastic) do not combine yet: choose one".into(),
        ));
    }
    Ok(())
}

/// Whether the loop's learner (one softmax row per item, or a committee of
/// `committee` members) can run `q`.
pub fn check_strategy(q: Query, committee: usize) -> Result<()> {
    if q.needs().samples == Use::Required && committee < 2 {
        return Err(Error::Config(format!(
            "{q} reads T samples of each row's probabilities; give the loop a committee of T ≥ 2 learners (--committee T) to make them"
        )));
    }
    if let Query::Multi(_) = q {
        return Err(Error::Config(format!(
            "{q} is a multi-label strategy; the loop's learner predicts one class per item (a multi-label learner is not built yet): select with --input multilabel"
        )));
    }
    Ok(())
}

/// Runs the loop on `data` with the given split. The test rows are used
/// only to evaluate; the oracle is asked only for the seed set and for
/// selected pool rows. With `gpu`, every selection runs there.
pub fn run(
    data: &Dataset,
    split: &Split,
    cfg: &LoopConfig,
    oracle: &mut dyn Oracle,
    gpu: Option<&Gpu>,
) -> Result<RunResult> {
    check_inputs(data, split, cfg)?;
    let mut labeled = Labeled::seed(data, split, cfg, oracle)?;
    let test_y = data.labels(&split.test);
    // Fitted once on the pool (never the test rows): the same transform in
    // every round, whatever was labeled.
    let scaler = data.scaler(cfg.mlp.scale, Some(&split.pool))?;
    let mut stopper = Stopper::new(cfg.stop.clone());
    let stop_set = stop_set(split, cfg);
    let run = Run {
        device: if gpu.is_some() {
            Device::Gpu
        } else {
            Device::Cpu
        },
        adapter: None,
        progress: &Silent,
        gpu,
    };
    let mut rounds = Vec::new();
    let mut model: Option<Mlp> = None;
    for round in 0.. {
        let t = Instant::now();
        let (m, fit) = train(data, cfg, round, model.take(), &scaler, &labeled)?;
        let committee = train_committee(data, cfg, round, &scaler, &labeled)?;
        let train_s = t.elapsed().as_secs_f64();
        let pred = data.predict(&m, &split.test)?;
        let (test_accuracy, macro_f1) = accuracy_and_macro_f1(&test_y, &pred);

        let unlabeled = labeled.unlabeled(&split.pool);
        let budget_left = cfg
            .stop
            .budget
            .map_or(usize::MAX, |b| b.saturating_sub(labeled.rows.len()));
        let k = cfg.batch_size.max(1).min(budget_left).min(unlabeled.len());
        let seed = round_seed(cfg.seed, round);
        let job = round_job(data, cfg, k, seed);
        let reads_samples = cfg.strategy.needs().samples == Use::Required;
        let mc =
            (cfg.mc_samples > 0 && reads_samples).then_some((cfg.mc_samples, seed ^ 0x6d63_6472));
        let pass = score_pass(data, (&m, committee.as_ref(), mc), &unlabeled, &job, &run)?;
        let facts = (round, labeled.rows.len(), test_accuracy, macro_f1, &fit);
        let mut record = measure(data, &m, &stop_set, &mut stopper, facts, &pass, train_s)?;
        let fired = record.fired.clone();
        let m: &Mlp = model.insert(m);
        if !fired.is_empty() || unlabeled.is_empty() || budget_left == 0 {
            let mut stopped_by = fired;
            if stopped_by.is_empty() {
                stopped_by.push(Fired::new("pool-exhausted", "no unlabeled rows left"));
            }
            rounds.push(record);
            return Ok(RunResult {
                rounds,
                labeled: labeled.rows,
                stopped_by,
            });
        }

        // The next batch.
        let t = Instant::now();
        let (sel, rows) = match pass.selection {
            Some(sel) => (sel, unlabeled),
            None if job.density_beta.is_none()
                && (job.query.scores_rows()
                    || job.query == Query::Batch(BatchStrategy::BatchBald)) =>
            {
                let sel = whole_pool_round(data.classes, &pass.kept, unlabeled.len(), &job, &run)?;
                (sel, unlabeled)
            }
            None => {
                let rows = (unlabeled.as_slice(), labeled.rows.as_slice());
                batch_round(data, (m, &pass.kept), rows, cfg, &job, &run)?
            }
        };
        let batch: Vec<usize> = sel.entries.iter().map(|e| rows[e.index as usize]).collect();
        record.select_s += t.elapsed().as_secs_f64();
        rounds.push(record);
        let new = oracle.label(&batch)?;
        labeled.add(&batch, new);
    }
    unreachable!("the loop returns when a criterion fires or the pool is empty")
}

/// The seed of round `round` of a run seeded `seed` (its random and
/// stochastic picks).
pub fn round_seed(seed: u64, round: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(round as u64)
}

/// The round's job: the strategy with its settings, `k` rows, the round's
/// seed. ProbCover's δ, unless given, is chosen over one k-means cluster
/// per class of the dataset.
fn round_job(data: &Dataset, cfg: &LoopConfig, k: usize, seed: u64) -> Job {
    let e = &cfg.embedding;
    let mut job = Job::new(cfg.strategy, InputForm::model_output(), k)
        .seed(seed)
        .log_base(cfg.log_base);
    job.iterations = e.iterations;
    job.delta = e.delta;
    // The weight is for uncertainty: random stays the baseline, and the
    // batch and cold-start strategies run as they are.
    job.density_beta = match cfg.strategy {
        Query::Score(s) if s != crate::query::Strategy::Random => e.density_beta,
        _ => None,
    };
    if e.purity > 0.0 {
        job.purity = e.purity;
    }
    job.purity_classes = data.classes;
    job.stochastic = cfg.method().drawn();
    job
}

/// BatchBALD's round, and a softrank batch's: the `n` unlabeled rows'
/// outputs kept by the pass (probabilities, or T x n x `classes` samples
/// when the job reads samples), selected at once.
fn whole_pool_round(
    classes: usize,
    kept: &[f32],
    n: usize,
    job: &Job,
    run: &Run,
) -> Result<Selection> {
    let pool = Pool::from_f32(kept, classes)?;
    let sel = if job.query.needs().samples == Use::Required {
        let t = kept.len() / (n * classes).max(1);
        let pool = pool.named("<the committee>");
        let samples = Samples::from_pool(pool, [t, n, classes], SampleLayout::Tnc)?;
        crate::api::select(Inputs::samples(&samples), job, run)?
    } else {
        crate::api::select(&pool, job, run)?
    };
    Ok(sel.selection)
}

/// A batch-aware, cold-start or density-weighted round: the unlabeled rows
/// then the labeled ones (core-set's centres; covered already for the
/// cold-start strategies; part of the pool whose density weighs a row),
/// excluded, with their embeddings (given, or the model's last hidden
/// layer) and, for all but the cold-start strategies, the model's
/// probabilities, through the door. Returns the selection and the dataset
/// row of each pool position.
fn batch_round(
    data: &Dataset,
    (m, unlabeled_probs): (&Mlp, &[f32]),
    (unlabeled, labeled): (&[usize], &[usize]),
    cfg: &LoopConfig,
    job: &Job,
    run: &Run,
) -> Result<(Selection, Vec<usize>)> {
    let rows: Vec<usize> = unlabeled.iter().chain(labeled).copied().collect();
    let (emb, width) = match &cfg.embedding.given {
        Some(e) => (e.gather(&rows)?, e.dim()),
        None => (data.embed_rows(m, &rows)?, m.embed_width()),
    };
    let exclusions = Exclusions::new((unlabeled.len() as u64..rows.len() as u64).collect());
    let job = job.clone().exclude(exclusions);
    let emb = Pool::from_f32(&emb, width)?.named("<the embeddings>");
    let sel = if let Query::Cold(_) = job.query {
        crate::api::select(Inputs::embeddings(&emb), &job, run)?
    } else {
        let mut probs = unlabeled_probs.to_vec();
        probs.extend(data.predict_proba_rows(m, labeled)?);
        let probs = Pool::from_f32(&probs, data.classes)?;
        crate::api::select(Inputs::probs(&probs).with_embeddings(&emb), &job, run)?
    };
    Ok((sel.selection, rows))
}
