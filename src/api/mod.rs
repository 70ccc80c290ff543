//! The one door: [`select`] takes the inputs a query needs and one [`Job`]
//! for every query, decides where to run ([`device`]), and returns the
//! selection with where it ran and why. The CLI, the loop, the workspace,
//! the ML backend and the Python package all come through here, so the
//! input checks and the device policy are written once.
//!
//! The path of one call: [`Query::needs`] is checked against the
//! [`Inputs`]; the bytes the query reads and the probabilities' dtype go to
//! [`device::decide`]; then the engine of the query's family runs on the
//! device opened: the row-wise engines ([`crate::backend`]) over a pool or,
//! block by block, over a model's outputs ([`crate::features`]); the
//! batch-aware ones ([`mod@crate::batch`]) over probabilities and embeddings.

pub mod device;
mod stochastic;

use crate::backend::gpu::Gpu;
use crate::backend::{self, Backend, Phases, Progress, RowJob, Silent};
use crate::error::{Error, Result};
#[cfg(feature = "learner")]
use crate::features::FeaturePool;
use crate::job::Job;
#[cfg(feature = "learner")]
use crate::learner::Mlp;
use crate::pool::{Pool, Samples};
use crate::query::{BatchStrategy, ColdStart, Input, Needs, Query, Regression, Strategy, Use};
use crate::score::random_priority;
use crate::select::Selection;
pub use device::Device;

/// What a query reads, as given: a pool of probabilities (or logits),
/// embeddings, T samples of the probabilities, or a model with the feature
/// files it scores. Build it with [`Inputs::probs`], [`Inputs::embeddings`],
/// [`Inputs::samples`] or [`Inputs::model`]; a `&Pool` converts into
/// probabilities alone.
#[derive(Clone, Copy, Default)]
pub struct Inputs<'a> {
    probs: Option<&'a Pool<'a>>,
    embeddings: Option<&'a Pool<'a>>,
    samples: Option<&'a Samples<'a>>,
    #[cfg(feature = "learner")]
    model: Option<(&'a Mlp, &'a FeaturePool)>,
    #[cfg(feature = "learner")]
    committee: Option<(crate::features::Members<'a>, &'a FeaturePool)>,
    rows: Option<&'a [u64]>,
}

impl<'a> Inputs<'a> {
    /// N x C probabilities or logits.
    pub fn probs(pool: &'a Pool<'a>) -> Self {
        Inputs {
            probs: Some(pool),
            ..Inputs::default()
        }
    }

    /// N x D embeddings alone (core-set needs nothing else).
    pub fn embeddings(emb: &'a Pool<'a>) -> Self {
        Inputs {
            embeddings: Some(emb),
            ..Inputs::default()
        }
    }

    /// T samples of N x C probabilities, for the disagreement strategies.
    pub fn samples(samples: &'a Samples<'a>) -> Self {
        Inputs {
            samples: Some(samples),
            ..Inputs::default()
        }
    }

    /// A model and its N x D feature files: the model makes the
    /// probabilities (and, for batch strategies, the embeddings: its last
    /// hidden layer), block by block, with no N x C matrix held.
    #[cfg(feature = "learner")]
    pub fn model(model: &'a Mlp, features: &'a FeaturePool) -> Self {
        Inputs {
            model: Some((model, features)),
            ..Inputs::default()
        }
    }

    /// A committee's models and the N x D feature files they score: block
    /// by block, every member's probabilities of the block are its T
    /// samples, for the disagreement strategies; no T x N x C array is
    /// held. A model's outputs bit for bit, so the same as `--samples` of
    /// the members' `alpool predict` files.
    #[cfg(feature = "learner")]
    pub fn committee(models: &'a [Mlp], features: &'a FeaturePool) -> Self {
        Inputs {
            committee: Some((crate::features::Members::Committee(models), features)),
            ..Inputs::default()
        }
    }

    /// T MC-dropout passes of `model` over its N x D feature files (Gal and
    /// Ghahramani 2016): dropout stays on at inference, with one mask a
    /// pass drawn from `seed` per (pass, layer, unit), the same for every
    /// row (see [`crate::learner::McPass`]), and each pass's probabilities of a
    /// block are one of its T samples, for the disagreement strategies;
    /// no T x N x C array is held. The model must have been trained with
    /// dropout.
    #[cfg(feature = "learner")]
    pub fn mc_dropout(model: &'a Mlp, features: &'a FeaturePool, passes: usize, seed: u64) -> Self {
        let members = crate::features::Members::Dropout {
            model,
            passes,
            seed,
        };
        Inputs {
            committee: Some((members, features)),
            ..Inputs::default()
        }
    }

    /// These inputs with embeddings `emb` too.
    pub fn with_embeddings(mut self, emb: &'a Pool<'a>) -> Self {
        self.embeddings = Some(emb);
        self
    }

    /// These inputs with samples `samples` too.
    pub fn with_samples(mut self, samples: &'a Samples<'a>) -> Self {
        self.samples = Some(samples);
        self
    }

    /// These inputs with probabilities `pool` too.
    pub fn with_probs(mut self, pool: &'a Pool<'a>) -> Self {
        self.probs = Some(pool);
        self
    }

    /// The global row index of each probability row, in any order (a Ray
    /// batch, the tasks Label Studio asks about): indices, exclusions, the
    /// random strategy's hash and the tie rule then use these. Row-wise
    /// queries only; they are ranked on the CPU.
    pub fn at_rows(mut self, rows: &'a [u64]) -> Self {
        self.rows = Some(rows);
        self
    }

    #[cfg(feature = "learner")]
    fn has_model(&self) -> bool {
        self.model.is_some()
    }

    #[cfg(not(feature = "learner"))]
    fn has_model(&self) -> bool {
        false
    }

    #[cfg(feature = "learner")]
    fn has_committee(&self) -> bool {
        self.committee.is_some()
    }

    #[cfg(not(feature = "learner"))]
    fn has_committee(&self) -> bool {
        false
    }

    /// Whether `input` is given, or can be made (a model makes the
    /// probabilities and the embeddings).
    fn gives(&self, input: Input) -> bool {
        self.given(input)
            || (self.has_model() && input != Input::Samples)
            || (self.has_committee() && input == Input::Samples)
    }

    /// Whether `input` is given by the caller (not made by a model).
    fn given(&self, input: Input) -> bool {
        match input {
            Input::Probs => self.probs.is_some(),
            Input::Embeddings => self.embeddings.is_some(),
            Input::Samples => self.samples.is_some(),
        }
    }

    /// Bytes the query reads: what the device policy weighs.
    fn bytes(&self) -> u64 {
        let pools = [self.probs, self.embeddings]
            .iter()
            .flatten()
            .map(|p| p.data_bytes())
            .sum::<u64>()
            + self.samples.map_or(0, |s| s.data_bytes());
        #[cfg(feature = "learner")]
        let pools = pools
            + self.model.map_or(0, |(_, f)| f.data_bytes())
            + self.committee.map_or(0, |(_, f)| f.data_bytes());
        pools
    }

    /// The global index of the first row of what is scored.
    fn first_row(&self) -> u64 {
        #[cfg(feature = "learner")]
        if let Some(features) = self
            .model
            .map(|(_, f)| f)
            .or(self.committee.map(|(_, f)| f))
        {
            return features.first_row();
        }
        match (self.samples, self.probs) {
            (Some(s), _) => s.first_row(),
            (None, Some(p)) => p.first_row(),
            (None, None) => 0,
        }
    }

    /// Whether the probabilities are float64 (a model's are float32).
    fn float64(&self) -> bool {
        self.probs.is_some_and(|p| p.has_f64()) || self.samples.is_some_and(|s| s.has_f64())
    }
}

impl<'a> From<&'a Pool<'a>> for Inputs<'a> {
    fn from(pool: &'a Pool<'a>) -> Self {
        Inputs::probs(pool)
    }
}

/// How a selection runs: device, adapter, progress.
pub struct Run<'p> {
    /// CPU, GPU, or the library's choice ([`Device::Auto`]).
    pub device: Device,
    /// With a GPU: the adapter whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// Told of the bytes scored; may ask the work to stop.
    pub progress: &'p dyn Progress,
    /// A GPU the caller holds open across many selections (the loop's
    /// rounds): used, under the same policy, instead of opening one.
    pub gpu: Option<&'p Gpu>,
}

impl Run<'static> {
    /// On `device`, silently.
    pub fn on(device: Device) -> Run<'static> {
        Run {
            device,
            adapter: None,
            progress: &Silent,
            gpu: None,
        }
    }
}

impl Default for Run<'static> {
    fn default() -> Self {
        Run::on(Device::Auto)
    }
}

/// A selection and where it ran.
pub struct Outcome {
    /// The k rows, best (or first picked) first.
    pub selection: Selection,
    /// The GPU adapter's name, or `None` for the CPU.
    pub adapter: Option<String>,
    /// Why this device: the policy's reason.
    pub reason: String,
    /// The GPU's phase timings, when a row-wise query ran there.
    pub gpu_phases: Option<Phases>,
}

/// The k most informative rows under `job`, exactly, from the inputs its
/// query needs, on the device [`device::decide`] picks for `run`. Every
/// device returns the same selection.
///
/// ```
/// use alpool::{InputForm, Job, Pool, Run, Strategy};
/// # fn main() -> alpool::Result<()> {
/// // d1 = (0.9, 0.09, 0.01), d2 = (0.2, 0.5, 0.3): every strategy prefers d2.
/// let probs = [0.9f32, 0.09, 0.01, 0.2, 0.5, 0.3];
/// let pool = Pool::from_f32(&probs, 3)?; // borrowed, not copied
/// let job = Job::new(Strategy::Margin, InputForm::probs(), 1);
/// let out = alpool::select(&pool, &job, &Run::default())?;
/// assert_eq!(out.selection.indices(), [1]);
/// assert!((out.selection.entries[0].score - 0.2).abs() < 1e-7);
/// assert!(out.reason.starts_with("using the CPU"));
/// # Ok(()) }
/// ```
pub fn select<'a>(inputs: impl Into<Inputs<'a>>, job: &Job, run: &Run) -> Result<Outcome> {
    let inputs = inputs.into();
    let job = &*model_job(&inputs, job);
    check_inputs(&inputs, job)?;
    if inputs.rows.is_some() {
        if !matches!(job.query, Query::Score(_) | Query::Multi(_)) || job.density_beta.is_some() {
            return Err(Error::Config(format!(
                "{}: rows given by index are ranked for row-wise and multi-label strategies only",
                job.query
            )));
        }
        return Ok(Outcome {
            selection: stochastic::select(&inputs, job, run.progress)?,
            adapter: None,
            reason: "using the CPU: rows given by index are ranked there".into(),
            gpu_phases: None,
        });
    }
    let opened = device::open(&request(&inputs, job, run), run.gpu)?;
    let backend = opened.backend();
    let (selection, gpu_phases) = match job.query {
        // On the GPU a stochastic batch runs on its strategy's kernels,
        // which bound each row's key (the device policy sends the rest
        // here).
        _ if job.stochastic.is_some() && matches!(backend, Backend::Cpu) => {
            (stochastic::select(&inputs, job, run.progress)?, None)
        }
        Query::Score(_) if job.density_beta.is_some() => {
            let beta = job.density_beta.unwrap_or(0.0);
            let (probs, emb) = match (inputs.probs, inputs.embeddings) {
                (Some(p), Some(e)) => (p, e),
                (None, _) => return Err(missing(job.query, Input::Probs)),
                (_, None) => return Err(missing(job.query, Input::Embeddings)),
            };
            crate::coldstart::select_weighted(backend, probs, emb, job, beta, run.progress)?
        }
        Query::Cold(_) => {
            let emb = inputs
                .embeddings
                .ok_or_else(|| missing(job.query, Input::Embeddings))?;
            crate::coldstart::select_on(backend, emb, job, run.progress)?
        }
        Query::Score(_) => select_rows(&inputs, job, backend, run.progress)?,
        Query::Batch(BatchStrategy::BatchBald) => {
            (select_batchbald(&inputs, job, backend, run.progress)?, None)
        }
        Query::Batch(_) => (select_batch(&inputs, job, backend, run.progress)?, None),
        Query::Disagree(_) | Query::Regress(Regression::Std) => {
            select_disagreement(&inputs, job, backend, run.progress)?
        }
        Query::Regress(_) => select_regression(&inputs, job, backend, run.progress)?,
        Query::Multi(_) => select_multilabel(&inputs, job, backend, run.progress)?,
    };
    Ok(Outcome {
        selection,
        adapter: opened.adapter(),
        reason: opened.reason.clone(),
        gpu_phases,
    })
}

/// What the device policy is told about `job` over `inputs`.
fn request<'r>(inputs: &Inputs, job: &Job, run: &'r Run) -> device::Request<'r> {
    device::Request {
        device: run.device,
        adapter: run.adapter.as_deref(),
        bytes: inputs.bytes(),
        // igs and gsy read their predictions on the host (the kernel
        // bounds their rounding to float32); EMCM's kernel reads the
        // features too.
        // BatchBALD and the disagreement strategies round the canonical
        // values to float32 within their bounds.
        float64: (inputs.float64()
            && !matches!(
                job.query,
                Query::Regress(Regression::Igs | Regression::Gsy)
                    | Query::Batch(BatchStrategy::BatchBald)
                    | Query::Disagree(_)
            ))
            || (job.query == Query::Regress(Regression::Emcm)
                && inputs.embeddings.is_some_and(|e| e.has_f64()))
            || (job.query == Query::Cold(ColdStart::Density)
                && inputs.embeddings.is_some_and(|e| e.has_f64())),
        // A density-weighted query runs where density runs.
        query: match job.density_beta {
            Some(_) => Query::Cold(ColdStart::Density),
            None => job.query,
        },
        stochastic: job.stochastic,
        model_made: inputs.has_model() || inputs.has_committee(),
    }
}

/// A multi-label strategy's selection: over a given pool, or block by
/// block over a multi-label model's outputs.
fn select_multilabel(
    inputs: &Inputs,
    job: &Job,
    backend: Backend,
    progress: &dyn Progress,
) -> Result<(Selection, Option<Phases>)> {
    #[cfg(feature = "learner")]
    if let Some((model, features)) = inputs.model {
        let sel = crate::features::select_multilabel(backend, model, features, job, progress)?;
        return Ok((sel, None));
    }
    let pool = multilabel_pool(inputs, job)?;
    crate::multilabel::select_on(backend, pool, job, progress)
}

/// BatchBALD over given samples, or over the samples a committee (or MC
/// dropout) makes of its feature files, written once to a temporary file
/// beside them (BatchBALD reads every row's samples at each pick).
fn select_batchbald(
    inputs: &Inputs,
    job: &Job,
    backend: Backend,
    progress: &dyn Progress,
) -> Result<Selection> {
    let gpu = match backend {
        Backend::Gpu(g) => Some(g),
        Backend::Cpu => None,
    };
    #[cfg(feature = "learner")]
    if let (None, Some((members, features))) = (inputs.samples, inputs.committee) {
        let dir = scratch_dir(features);
        let view = crate::features::SampleView::write(members, features, &dir, progress)?;
        return crate::batch::batchbald::select(&view.open()?, job, gpu, progress);
    }
    let samples = inputs
        .samples
        .ok_or_else(|| missing(job.query, Input::Samples))?;
    crate::batch::batchbald::select(samples, job, gpu, progress)
}

/// EMCM's three inputs.
fn emcm_inputs<'a>(inputs: &Inputs<'a>, job: &Job) -> Result<crate::regression::EmcmInputs<'a>> {
    Ok(crate::regression::EmcmInputs {
        samples: inputs
            .samples
            .ok_or_else(|| missing(job.query, Input::Samples))?,
        preds: inputs
            .probs
            .ok_or_else(|| missing(job.query, Input::Probs))?,
        emb: inputs
            .embeddings
            .ok_or_else(|| missing(job.query, Input::Embeddings))?,
    })
}

/// A regression strategy's selection (std runs with the disagreement
/// strategies): EMCM's pass, or greedy sampling.
fn select_regression(
    inputs: &Inputs,
    job: &Job,
    backend: Backend,
    progress: &dyn Progress,
) -> Result<(Selection, Option<Phases>)> {
    if job.query == Query::Regress(Regression::Emcm) {
        let inp = emcm_inputs(inputs, job)?;
        return match backend {
            Backend::Gpu(g) => {
                let (sel, phases) = crate::regression::select_on_gpu(g, &inp, job, progress)?;
                Ok((sel, Some(phases)))
            }
            Backend::Cpu => Ok((crate::regression::select(&inp, job, progress)?, None)),
        };
    }
    let gpu = match backend {
        Backend::Gpu(g) => Some(g),
        Backend::Cpu => None,
    };
    let sel = crate::batch::greedy::select(inputs.probs, inputs.embeddings, job, gpu, progress)?;
    Ok((sel, None))
}

/// A disagreement strategy's selection: over given samples, or block by
/// block over a committee's outputs.
fn select_disagreement(
    inputs: &Inputs,
    job: &Job,
    backend: Backend,
    progress: &dyn Progress,
) -> Result<(Selection, Option<Phases>)> {
    #[cfg(feature = "learner")]
    if let (None, Some((models, features))) = (inputs.samples, inputs.committee) {
        if let Backend::Gpu(g) = backend {
            let (sel, phases) =
                crate::features::select_members_on_gpu(g, models, features, job, progress)?;
            return Ok((sel, Some(phases)));
        }
        let sel = crate::features::select_committee(models, features, job, progress)?;
        return Ok((sel, None));
    }
    let samples = inputs
        .samples
        .ok_or_else(|| missing(job.query, Input::Samples))?;
    match backend {
        Backend::Gpu(g) => {
            let (sel, phases) = crate::disagree::select_on_gpu(g, samples, job, progress)?;
            Ok((sel, Some(phases)))
        }
        Backend::Cpu => Ok((crate::disagree::select(samples, job, progress)?, None)),
    }
}

/// Every row's canonical score under a row-wise `job`, in row order
/// (excluded rows included), handed to `sink` chunk by chunk: memory stays
/// bounded whatever the pool's size. Scores are defined on the CPU.
pub fn score_each<'a>(
    inputs: impl Into<Inputs<'a>>,
    job: &Job,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(&[f64]) -> Result<()>,
) -> Result<()> {
    let inputs = inputs.into();
    let job = &*model_job(&inputs, job);
    if let Query::Multi(_) = job.query {
        check_inputs(&inputs, job)?;
        #[cfg(feature = "learner")]
        if let Some((model, features)) = inputs.model {
            return crate::features::score_multilabel(model, features, job, progress, sink);
        }
        let pool = multilabel_pool(&inputs, job)?;
        // A multi-label score does not depend on the row's index: listed
        // rows need only be one per row.
        check_listed(inputs.rows, pool)?;
        return crate::multilabel::score_each(pool, job, progress, sink);
    }
    if let Query::Regress(Regression::Emcm) = job.query {
        check_inputs(&inputs, job)?;
        let inp = emcm_inputs(&inputs, job)?;
        return crate::regression::score_each(&inp, job, progress, sink);
    }
    if let Query::Disagree(_) | Query::Regress(Regression::Std) = job.query {
        check_inputs(&inputs, job)?;
        #[cfg(feature = "learner")]
        if let (None, Some((models, features))) = (inputs.samples, inputs.committee) {
            return crate::features::score_committee(models, features, job, progress, sink);
        }
        let samples = inputs
            .samples
            .ok_or_else(|| missing(job.query, Input::Samples))?;
        return crate::disagree::score_each(samples, job, progress, sink);
    }
    let rows = RowJob::of(job)?;
    check_inputs(&inputs, job)?;
    #[cfg(feature = "learner")]
    if let Some((model, features)) = inputs.model {
        return features.predict_blocks(model, progress, &mut |g0, probs| {
            let pool = Pool::from_f32(probs, model.classes())?.with_row_offset(g0);
            backend::cpu::score_all(&pool, &rows, &Silent, sink)
        });
    }
    let pool = inputs
        .probs
        .ok_or_else(|| missing(job.query, Input::Probs))?;
    rows.check(pool)?;
    check_listed(inputs.rows, pool)?;
    let Some(listed) = inputs.rows else {
        return backend::cpu::score_all(pool, &rows, progress, sink);
    };
    // The random strategy is the one score that depends on the row's index.
    let mut at = 0;
    backend::cpu::score_all(pool, &rows, progress, &mut |scores| {
        let here = &listed[at..at + scores.len()];
        at += scores.len();
        if rows.spec.strategy != Strategy::Random {
            return sink(scores);
        }
        let seed = rows.spec.seed;
        let redone: Vec<f64> = here.iter().map(|&r| random_priority(seed, r)).collect();
        sink(&redone)
    })
}

/// Every row's canonical score, in row order ([`score_each`] into a
/// vector of N f64).
pub fn score<'a>(inputs: impl Into<Inputs<'a>>, job: &Job) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    score_each(inputs, job, &Silent, &mut |s| {
        out.extend_from_slice(s);
        Ok(())
    })?;
    Ok(out)
}

/// Refuses row indices that are not one per row of `pool`.
fn check_listed(listed: Option<&[u64]>, pool: &Pool) -> Result<()> {
    match listed {
        Some(l) if l.len() as u64 != pool.rows() => Err(Error::Config(format!(
            "{} row indices for {} rows of probabilities; give one global index per row",
            l.len(),
            pool.rows()
        ))),
        _ => Ok(()),
    }
}

/// The multi-label pool given as probabilities (a multi-label model's
/// outputs are read block by block instead).
fn multilabel_pool<'a>(inputs: &Inputs<'a>, job: &Job) -> Result<&'a Pool<'a>> {
    if inputs.has_model() {
        return Err(Error::Config(format!(
            "{} over a model's outputs: give the pool's sigmoid outputs (alpool predict, then POOL.npy or probs=)",
            job.query
        )));
    }
    inputs.probs.ok_or_else(|| missing(job.query, Input::Probs))
}

/// The job as a model's outputs make it: a multi-label model's rows are a
/// multi-label pool whatever input form a job defaulted to (`--input
/// probs`).
fn model_job<'j>(inputs: &Inputs, job: &'j Job) -> std::borrow::Cow<'j, Job> {
    #[cfg(feature = "learner")]
    if let (Some((m, _)), crate::query::InputForm::Probs { .. }) = (inputs.model, job.input)
        && m.output() == crate::learner::Output::Sigmoid
    {
        let mut job = job.clone();
        job.input = crate::query::InputForm::MultiLabel { logits: false };
        return std::borrow::Cow::Owned(job);
    }
    let _ = inputs;
    std::borrow::Cow::Borrowed(job)
}

/// Refuses a softmax model for a multi-label strategy, and the reverse.
#[cfg(feature = "learner")]
fn check_model_output(inputs: &Inputs, job: &Job) -> Result<()> {
    use crate::learner::Output;
    let Some((model, _)) = inputs.model else {
        return Ok(());
    };
    match (model.output(), job.query) {
        (Output::Softmax, Query::Multi(m)) => Err(Error::Config(format!(
            "{m} reads a multi-label model's sigmoid outputs, but the model is a softmax classifier (train one with alpool train --multilabel)"
        ))),
        (Output::Sigmoid, Query::Multi(_))
        | (Output::Linear, Query::Regress(Regression::Std))
        | (Output::Softmax, _) => Ok(()),
        (Output::Linear, q) => Err(Error::Config(format!(
            "the model is a regressor: {q} reads no model's passes over features here; std reads its MC-dropout passes or an ensemble's predictions, and the other regression strategies read its predictions (alpool predict, then --input regression)"
        ))),
        (Output::Sigmoid, q) => {
            let names: Vec<&str> = crate::query::MultiLabel::ALL.map(|m| m.name()).to_vec();
            Err(Error::Config(format!(
                "the model is multi-label (sigmoid outputs), which {q} does not read; its strategies are {}",
                names.join(", ")
            )))
        }
    }
}

/// Refuses a regression strategy on class probabilities, and the
/// reverse: the input form says which kind of pool the rows are.
fn check_regression_kind(job: &Job) -> Result<()> {
    let needs = job.query.needs();
    let reads_rows = needs.probs != Use::Unused || needs.samples != Use::Unused;
    match (job.query, job.input.regression()) {
        (Query::Regress(Regression::Gsx), _) => Ok(()),
        (Query::Regress(r), None) => Err(Error::Config(format!(
            "{r} reads a regression model's predictions: give --input {} (input=\"{}\" in Python)",
            match r {
                Regression::Std => "regression-samples (T x N) or regression-mean-std (N x 2)",
                Regression::Emcm => "regression-samples (the ensemble's T x N predictions)",
                _ => "regression (N predictions) or regression-mean-std (N x 2)",
            },
            match r {
                Regression::Std | Regression::Emcm => "regression-samples",
                _ => "regression",
            },
        ))),
        (q, Some(form)) if !q.is_regression() && reads_rows => {
            let names: Vec<&str> = Regression::ALL.map(|r| r.name()).to_vec();
            Err(Error::Config(format!(
                "{q} reads class probabilities, but --input {} says the pool is a regression model's predictions; its strategies are {}",
                form.name(),
                names.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// Refuses a multi-label strategy on softmax rows, and the reverse: the
/// input form says which kind of pool the rows are.
fn check_pool_kind(job: &Job) -> Result<()> {
    check_regression_kind(job)?;
    let multi = job.query.is_multilabel();
    if multi && !job.input.is_multilabel() {
        return Err(Error::Config(format!(
            "{} scores a multi-label pool (N x L independent sigmoid outputs): give --input multilabel or multilabel-logits (input=\"multilabel\" or \"multilabel-logits\" in Python)",
            job.query
        )));
    }
    // Only the queries that read probabilities (as a pool or as samples)
    // care what form they take.
    let needs = job.query.needs();
    let reads_rows = needs.probs != Use::Unused || needs.samples != Use::Unused;
    if !multi && reads_rows && job.input.is_multilabel() {
        let names: Vec<&str> = crate::query::MultiLabel::ALL.map(|m| m.name()).to_vec();
        return Err(Error::Config(format!(
            "{} reads softmax rows (class probabilities or logits), but --input says the pool is multi-label; its strategies are {}",
            job.query,
            names.join(", ")
        )));
    }
    Ok(())
}

fn missing(query: Query, input: Input) -> Error {
    match (query, input) {
        (Query::Regress(Regression::Emcm), Input::Samples) => Error::Config(
            "emcm reads T x N ensemble predictions: --samples S.npy with --input regression-samples (samples= in Python)".into(),
        ),
        (Query::Regress(Regression::Std), Input::Samples) => Error::Config(
            "std reads a regression model's spread: T x N predictions with --input regression-samples, or N x 2 (mean, std) rows with --input regression-mean-std (samples= in Python)".into(),
        ),
        (Query::Regress(r), Input::Probs) => Error::Config(format!(
            "{r} reads the model's predictions: a pool of N (or N x 1) predictions with --input regression, or N x 2 (mean, std) rows with --input regression-mean-std"
        )),
        _ => Error::MissingInput {
            query: query.name(),
            input,
        },
    }
}

/// Refuses a request lacking an input its query needs, or giving one it
/// never reads, naming the flag.
fn check_inputs(inputs: &Inputs, job: &Job) -> Result<()> {
    #[cfg(feature = "learner")]
    check_model_output(inputs, job)?;
    job.input.check().map_err(Error::Config)?;
    check_pool_kind(job)?;
    if let Some(st) = job.stochastic {
        st.check_for(job.query).map_err(Error::Config)?;
    }
    let mut needs: Needs = job.query.needs();
    if job.density_beta.is_some() {
        let Query::Score(_) = job.query else {
            return Err(Error::Config(format!(
                "--density-beta (density_beta=) weights a row-wise strategy; {} is not one",
                job.query
            )));
        };
        if job.stochastic.is_some() {
            return Err(Error::Config(
                "--density-beta and --stochastic do not combine yet: choose one".into(),
            ));
        }
        needs.embeddings = Use::Required;
    }
    #[cfg(feature = "learner")]
    if inputs.model.is_some() && inputs.probs.is_some() {
        return Err(Error::Config(
            "give probabilities or a model with its features, not both".into(),
        ));
    }
    #[cfg(feature = "learner")]
    if let Some((crate::features::Members::Dropout { .. }, _)) = inputs.committee
        && needs.samples == Use::Unused
    {
        return Err(Error::Config(format!(
            "MC dropout (--mc-samples, mc_samples=) makes T samples for the disagreement strategies; {} does not read samples: drop it",
            job.query
        )));
    }
    // A missing input first: it says what to give instead of a stray one.
    let lacking = Needs::INPUTS
        .into_iter()
        .find(|&i| needs.of(i) == Use::Required && !inputs.gives(i));
    if let Some(input) = lacking {
        return Err(missing(job.query, input));
    }
    let stray = Needs::INPUTS
        .into_iter()
        .find(|&i| needs.of(i) == Use::Unused && inputs.given(i));
    match stray {
        Some(input) => Err(Error::UnusedInput {
            query: job.query.name(),
            input,
        }),
        None => Ok(()),
    }
}

fn select_rows(
    inputs: &Inputs,
    job: &Job,
    backend: Backend,
    progress: &dyn Progress,
) -> Result<(Selection, Option<Phases>)> {
    #[cfg(feature = "learner")]
    if let Some((model, features)) = inputs.model {
        return crate::features::select_on(backend, model, features, job, progress);
    }
    let pool = inputs
        .probs
        .ok_or_else(|| missing(job.query, Input::Probs))?;
    backend::select_on(backend, pool, &RowJob::of(job)?, progress)
}

fn select_batch(
    inputs: &Inputs,
    job: &Job,
    backend: Backend,
    progress: &dyn Progress,
) -> Result<Selection> {
    if let Some(emb) = inputs.embeddings {
        return crate::batch::select_on(backend, inputs.probs, emb, job, progress);
    }
    #[cfg(feature = "learner")]
    if let Some((model, features)) = inputs.model {
        let views = crate::features::ModelViews::write(
            model,
            features,
            (&scratch_dir(features), crate::features::Space::Hidden),
            progress,
        )?;
        let (probs, emb) = views.open()?;
        return crate::batch::select_on(backend, Some(&probs), &emb, job, progress);
    }
    Err(missing(job.query, Input::Embeddings))
}

/// Where a model's probabilities and embeddings are written for a batch
/// query: beside the features (the same disk, which has room for files of
/// their size), or the system's temporary folder when that is not
/// writable.
#[cfg(feature = "learner")]
fn scratch_dir(features: &FeaturePool) -> std::path::PathBuf {
    let beside = features
        .path()
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| ".".into(), std::path::PathBuf::from);
    let writable = tempfile::tempfile_in(&beside).is_ok();
    if writable {
        beside
    } else {
        std::env::temp_dir()
    }
}
