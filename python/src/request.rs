//! One request, read once: the inputs dictionary (what the query reads)
//! and the options dictionary (how), both built by the package's Python
//! layer with every key present. Every native function starts here.

use std::path::PathBuf;

use alpool::features::FeaturePool;
use alpool::learner::Mlp;
use alpool::query::default_sum_tol;
use alpool::score::stochastic::RowKeys;
use alpool::{InputForm, Inputs, Job, Pool, SampleLayout, Samples, Stochastic};
use numpy::{PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyDict};

use crate::arrays::Array;
use crate::convert::{self, DeviceArg, InputArg, LogBaseArg, QueryArg, StochasticArg, Within};
use crate::release::to_py;

/// The inputs as Python gives them.
pub struct RawInputs<'py> {
    /// N x C probabilities or logits, in memory.
    probs: Option<Bound<'py, PyAny>>,
    /// Or the .npy shards holding them.
    paths: Option<Vec<PathBuf>>,
    /// N x D embeddings, in memory.
    embeddings: Option<Bound<'py, PyAny>>,
    /// T samples of the probabilities: a 3-D array in memory, or files.
    samples: Option<Bound<'py, PyAny>>,
    sample_paths: Option<Vec<PathBuf>>,
    /// "tnc" or "ntc".
    layout: String,
    /// A saved model (several: a committee), with its feature files.
    model: Option<Vec<PathBuf>>,
    features: Option<Vec<PathBuf>>,
    /// The global row of each probability row (any order).
    rows: Option<PyReadonlyArray1<'py, i64>>,
    /// The global row of the first row.
    row_offset: u64,
    /// A regression input form's name, when files hold a regression
    /// model's outputs (opened as such).
    regression: Option<String>,
    /// MC dropout: T passes of the one model, and the masks' seed.
    mc_samples: Option<usize>,
    mc_seed: u64,
}

/// The options as Python gives them.
pub struct Options<'py> {
    pub strategy: QueryArg,
    k: Option<i64>,
    exclude: Option<Bound<'py, PyAny>>,
    input: InputArg,
    temperature: f64,
    log_base: LogBaseArg,
    seed: u64,
    pub device: DeviceArg,
    pub adapter: Option<String>,
    renormalize: bool,
    sum_tol: Option<f64>,
    candidates: Option<usize>,
    clusters: Option<usize>,
    stochastic: Option<StochasticArg>,
    beta: f64,
    configurations: Option<usize>,
    delta: Option<f64>,
    classes: Option<usize>,
    purity: f64,
    iterations: usize,
    density_beta: Option<f64>,
    label_cardinality: Option<f64>,
    uncertainty_weight: f64,
    targets: Option<PyReadonlyArray1<'py, f64>>,
}

/// `dict[key]` converted; a conversion's own error (which names the
/// argument) goes to the caller as it is.
fn item<'py, T>(dict: &Bound<'py, PyDict>, key: &str) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py>,
{
    match dict.get_item(key)? {
        Some(v) => v.extract::<T>().map_err(Into::into),
        None => Err(PyKeyError::new_err(format!("the request has no {key:?}"))),
    }
}

impl<'py> FromPyObject<'_, 'py> for RawInputs<'py> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let d = obj.cast::<PyDict>()?;
        Ok(RawInputs {
            probs: item(&d, "probs")?,
            paths: item(&d, "paths")?,
            embeddings: item(&d, "embeddings")?,
            samples: item(&d, "samples")?,
            sample_paths: item(&d, "sample_paths")?,
            layout: item(&d, "layout")?,
            model: item(&d, "model")?,
            features: item(&d, "features")?,
            rows: item(&d, "rows")?,
            row_offset: item(&d, "row_offset")?,
            regression: item(&d, "regression")?,
            mc_samples: item(&d, "mc_samples")?,
            mc_seed: item(&d, "mc_seed")?,
        })
    }
}

impl<'py> FromPyObject<'_, 'py> for Options<'py> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let d = obj.cast::<PyDict>()?;
        Ok(Options {
            strategy: item(&d, "strategy")?,
            k: item(&d, "k")?,
            exclude: item(&d, "exclude")?,
            input: item(&d, "input")?,
            temperature: item(&d, "temperature")?,
            log_base: item(&d, "log_base")?,
            seed: item(&d, "seed")?,
            device: item(&d, "device")?,
            adapter: item(&d, "adapter")?,
            renormalize: item(&d, "renormalize")?,
            sum_tol: item(&d, "sum_tol")?,
            candidates: item(&d, "candidates")?,
            clusters: item(&d, "clusters")?,
            stochastic: item(&d, "stochastic")?,
            beta: item(&d, "beta")?,
            configurations: item(&d, "configurations")?,
            delta: item(&d, "delta")?,
            classes: item(&d, "classes")?,
            purity: item(&d, "purity")?,
            iterations: item(&d, "iterations")?,
            density_beta: item(&d, "density_beta")?,
            label_cardinality: item(&d, "label_cardinality")?,
            uncertainty_weight: item(&d, "uncertainty_weight")?,
            targets: item(&d, "targets")?,
        })
    }
}

/// The inputs opened: arrays borrowed, files mapped (headers checked, no
/// data read), the model loaded.
pub struct Sources<'py> {
    probs: Option<Array<'py>>,
    files: Option<Pool<'static>>,
    embeddings: Option<Array<'py>>,
    samples: Option<Array<'py>>,
    sample_files: Option<Samples<'static>>,
    layout: SampleLayout,
    /// The saved models (one, or a committee) with their feature files.
    model: Option<(Vec<Mlp>, FeaturePool)>,
    /// MC dropout's passes and seed.
    mc: Option<(usize, u64)>,
    rows: Option<Vec<u64>>,
    offset: u64,
}

impl<'py> Sources<'py> {
    pub fn open(raw: &RawInputs<'py>) -> PyResult<Self> {
        let borrow = |o: &Option<Bound<'py, PyAny>>, name, ndim, what| {
            o.as_ref()
                .map(|o| Array::borrow(o, name, ndim, what))
                .transpose()
        };
        let layout: SampleLayout = raw.layout.parse().map_err(PyValueError::new_err)?;
        let regression = raw.regression.as_deref().map(|name| {
            convert::regression_input(name)
                .ok_or_else(|| PyValueError::new_err(format!("unknown regression input {name:?}")))
        });
        let regression = regression.transpose()?;
        let sample_files = match (&raw.sample_paths, regression) {
            (Some(paths), Some(kind)) => Some(
                Samples::open_regression(paths, kind, Default::default())
                    .map_err(to_py)?
                    .with_row_offset(raw.row_offset),
            ),
            (Some(paths), None) => Some(
                Samples::open(paths, layout, Default::default())
                    .map_err(to_py)?
                    .with_row_offset(raw.row_offset),
            ),
            (None, _) => None,
        };
        let what = match layout {
            SampleLayout::Tnc => "T samples x N rows x C classes",
            SampleLayout::Ntc => "N rows x T samples x C classes",
        };
        let files = match (&raw.paths, regression) {
            (Some(paths), Some(_)) => {
                Some(Pool::open_column(paths, Default::default()).map_err(to_py)?)
            }
            (Some(paths), None) => Some(Pool::open(paths).map_err(to_py)?),
            (None, _) => None,
        };
        let model = match (&raw.model, &raw.features) {
            (Some(m), Some(f)) => Some((
                m.iter()
                    .map(|m| Mlp::load(m).map_err(to_py))
                    .collect::<PyResult<Vec<_>>>()?,
                FeaturePool::open(f)
                    .map_err(to_py)?
                    .with_row_offset(raw.row_offset),
            )),
            _ => None,
        };
        let rows = raw.rows.as_ref().map(listed).transpose()?;
        Ok(Sources {
            probs: borrow(&raw.probs, "probs", 2, "N rows x C classes")?,
            files: files.map(|f| f.with_row_offset(raw.row_offset)),
            embeddings: borrow(&raw.embeddings, "embeddings", 2, "N rows x D values")?,
            samples: borrow(&raw.samples, "samples", 3, what)?,
            sample_files,
            layout,
            model,
            mc: raw.mc_samples.map(|t| (t, raw.mc_seed)),
            rows,
            offset: raw.row_offset,
        })
    }

    /// Rows of the pool, whichever input gives them.
    fn rows(&self) -> u64 {
        let arrays = [&self.probs, &self.embeddings];
        let in_memory = arrays.iter().find_map(|a| a.as_ref().map(Array::rows));
        let samples = self
            .samples
            .as_ref()
            .map(|a| self.sample_shape(a)[1] as u64);
        let sample_files = self.sample_files.as_ref().map(|s| s.rows());
        let files = self.files.as_ref().map(|p| p.rows());
        let model = self.model.as_ref().map(|(_, f)| f.rows());
        let found = [in_memory, samples, sample_files, files, model];
        found.into_iter().flatten().next().unwrap_or(0)
    }

    /// A 3-D samples array's shape as [T, N, C], whatever its layout.
    fn sample_shape(&self, a: &Array) -> [usize; 3] {
        let s = a.shape();
        match self.layout {
            SampleLayout::Tnc => [s[0], s[1], s[2]],
            SampleLayout::Ntc => [s[1], s[0], s[2]],
        }
    }

    fn f16(&self) -> bool {
        self.probs.as_ref().is_some_and(Array::is_f16)
            || self.files.as_ref().is_some_and(|p| p.has_f16())
            || self.samples.as_ref().is_some_and(Array::is_f16)
            || self.sample_files.as_ref().is_some_and(|s| s.has_f16())
    }

    /// Runs `f` on the door's inputs, borrowing the arrays in place.
    pub fn with<T>(&self, f: impl FnOnce(Inputs<'_>) -> PyResult<T>) -> PyResult<T> {
        let probs = match &self.probs {
            Some(a) => Some(a.pool("probs", a.shape()[1])?.with_row_offset(self.offset)),
            None => None,
        };
        let embeddings = match &self.embeddings {
            Some(a) => Some(a.pool("embeddings", a.shape()[1])?),
            None => None,
        };
        let samples = match &self.samples {
            Some(a) => {
                let s = a.shape();
                let width = match self.layout {
                    SampleLayout::Tnc => s[2],
                    SampleLayout::Ntc => s[1] * s[2],
                };
                let pool = a.pool("samples", width)?;
                let shape = [s[0], s[1], s[2]];
                let samples = Samples::from_pool(pool, shape, self.layout).map_err(to_py)?;
                Some(samples.with_row_offset(self.offset))
            }
            None => None,
        };
        let mut inputs = match (&self.model, self.mc) {
            (Some((m, f)), Some((t, seed))) if m.len() == 1 => {
                Inputs::mc_dropout(&m[0], f, t, seed)
            }
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "mc_samples runs one model's dropout passes; give one model",
                ));
            }
            (Some((m, f)), None) if m.len() == 1 => Inputs::model(&m[0], f),
            (Some((m, f)), None) => Inputs::committee(m, f),
            (None, _) => Inputs::default(),
        };
        if let Some(p) = probs.as_ref().or(self.files.as_ref()) {
            inputs = inputs.with_probs(p);
        }
        if let Some(e) = &embeddings {
            inputs = inputs.with_embeddings(e);
        }
        if let Some(s) = samples.as_ref().or(self.sample_files.as_ref()) {
            inputs = inputs.with_samples(s);
        }
        if let Some(rows) = &self.rows {
            inputs = inputs.at_rows(rows);
        }
        f(inputs)
    }
}

/// Global row indices, each ≥ 0.
fn listed(rows: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<u64>> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, &r) in rows.as_array().iter().enumerate() {
        if r < 0 {
            return Err(PyValueError::new_err(format!(
                "rows[{i}] = {r}: rows must hold one non-negative global index per row of probs"
            )));
        }
        out.push(r as u64);
    }
    Ok(out)
}

impl Options<'_> {
    /// The stochastic batch asked for, if any.
    pub fn stochastic(&self) -> Option<Stochastic> {
        self.stochastic
            .as_ref()
            .map(|s| Stochastic::new(s.0, self.beta))
    }

    /// How merged parts' rows are ranked: plainly, or by the stochastic
    /// batch's keys (a softrank request is refused before this).
    pub fn keys(&self) -> RowKeys {
        RowKeys::new(self.strategy.0, self.stochastic(), self.seed).unwrap_or_else(RowKeys::plain)
    }

    /// k as asked (None: every row).
    pub fn k(&self) -> PyResult<usize> {
        convert::k(self.k)
    }

    /// The job these options ask of `sources`: k, the exclusions (checked
    /// against the pool's rows, or restricted to a shard's) and the input
    /// form (float16's looser default tolerance). A `part` is always a
    /// shard's, the first one at offset 0 included: its exclusions list rows
    /// of the whole pool.
    pub fn job(&self, sources: &Sources, part: bool) -> PyResult<Job> {
        let input = match self.input {
            InputArg::Logits => InputForm::logits(self.temperature),
            InputArg::Probs => InputForm::Probs {
                renormalize: self.renormalize,
                sum_tol: self.sum_tol.unwrap_or(default_sum_tol(sources.f16())),
            },
            InputArg::Multilabel => InputForm::MultiLabel { logits: false },
            InputArg::MultilabelLogits => InputForm::MultiLabel { logits: true },
            InputArg::Regression(kind) => InputForm::Regression(kind),
        };
        let rows = sources.rows();
        let within = match (&sources.rows, sources.offset) {
            (Some(_), _) => Within::Anywhere,
            (None, 0) if !part => Within::Pool(rows),
            (None, offset) => Within::Shard { offset, rows },
        };
        let mut job = Job::new(self.strategy.0, input, convert::k(self.k)?)
            .seed(self.seed)
            .log_base(self.log_base.0)
            .exclude(convert::exclusions(self.exclude.as_ref(), within)?);
        job.candidates = self.candidates.unwrap_or(0);
        job.clusters = self.clusters.unwrap_or(0);
        job.stochastic = self.stochastic();
        job.configurations = match self.configurations {
            Some(0) => {
                return Err(PyValueError::new_err(
                    "configurations must be at least 1 (the default is 10,000)",
                ));
            }
            Some(m) => m,
            None => 0,
        };
        if self.iterations == 0 {
            return Err(PyValueError::new_err(
                "iterations must be at least 1 (the default is 100)",
            ));
        }
        job.iterations = self.iterations;
        job.delta = self.delta;
        job.purity = self.purity;
        job.purity_classes = self.classes.unwrap_or(0);
        job.density_beta = self.density_beta;
        job.label_cardinality = self.label_cardinality;
        job.uncertainty_weight = self.uncertainty_weight;
        match &self.targets {
            Some(t) if t.len() as u64 != rows => Err(PyValueError::new_err(format!(
                "targets holds {} values for {rows} rows; give one target a row (NaN for unlabeled rows)",
                t.len()
            ))),
            Some(t) => {
                let column = t.as_array().iter().copied().collect::<Vec<f64>>();
                job.with_targets(&column).map_err(to_py)
            }
            None => Ok(job),
        }
    }
}
