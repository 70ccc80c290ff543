//! The Python face of alpool: NumPy arrays in, exact selections out, on the
//! library's one front door (`alpool::select`). C-contiguous float32 and
//! float16 arrays are borrowed in place; the work runs with the GIL
//! released on a helper thread, while the calling thread checks for Ctrl-C
//! every few milliseconds and asks the engine to stop between chunks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use alpool::backend::Progress;
use alpool::features::{FeaturePool, select_features, select_features_on};
use alpool::learner::Mlp;
use alpool::score::Ranked;
use alpool::score::input::default_sum_tol;
use alpool::{Device, Error, Exclusions, InputForm, Job, LogBase, Pool, ScoreSpec, Strategy};
use numpy::{
    PyArray1, PyArrayDescrMethods, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyAny;

pyo3::create_exception!(
    _alpool,
    AlpoolError,
    PyValueError,
    "A pool, a request or a file alpool cannot use; the message names it."
);

/// alpool's typed errors as Python exceptions with the same text.
fn to_py(e: Error) -> PyErr {
    match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => AlpoolError::new_err(e.to_string()),
    }
}

/// Stops the engine between chunks once set.
struct Cancel(AtomicBool);

impl Progress for Cancel {
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `work` with the GIL released, as a job on the engine's own thread
/// pool (no thread is created per call); the calling thread wakes every
/// 20 ms to let Python handle signals (Ctrl-C raises KeyboardInterrupt once
/// the engine has stopped at its next chunk).
fn run_released<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&Cancel) -> alpool::Result<T> + Send,
) -> PyResult<T> {
    let cancel = Cancel(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::channel();
    let cancel = &cancel;
    rayon::in_place_scope(|scope| {
        scope.spawn(move |_| {
            // The receiver outlives the scope; a send cannot fail.
            let _ = tx.send(work(cancel));
        });
        let mut interrupted: Option<PyErr> = None;
        loop {
            // The receiver is Send but not Sync: it goes into the released
            // section and comes back.
            let (got, back) = py.detach(move || (rx.recv_timeout(Duration::from_millis(20)), rx));
            rx = back;
            match got {
                Ok(result) => {
                    return match (interrupted, result) {
                        (Some(err), _) => Err(err),
                        (None, r) => r.map_err(to_py),
                    };
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if interrupted.is_none()
                        && let Err(err) = py.check_signals()
                    {
                        cancel.0.store(true, Ordering::Relaxed);
                        interrupted = Some(err);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(AlpoolError::new_err(
                        "the selection job stopped unexpectedly",
                    ));
                }
            }
        }
    })
}

/// A 2-D probability (or logit) array as the engine reads it: float32,
/// float16 and float64 borrowed when C-contiguous (float64 scored from its
/// own values). Anything else is refused with its shape, dtype and order.
enum Probs<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F16(PyReadonlyArray2<'py, half::f16>),
    F64(PyReadonlyArray2<'py, f64>),
}

fn describe(a: &Bound<'_, PyUntypedArray>) -> String {
    let order = if a.is_c_contiguous() {
        "C-contiguous"
    } else if a.is_fortran_contiguous() {
        "Fortran-ordered"
    } else {
        "non-contiguous"
    };
    format!(
        "shape {:?}, dtype {}, {order}",
        a.shape(),
        a.dtype().str().map(|s| s.to_string()).unwrap_or_default()
    )
}

impl<'py> Probs<'py> {
    fn from_py(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Self> {
        let Ok(arr) = obj.cast::<PyUntypedArray>() else {
            return Err(PyTypeError::new_err(format!(
                "{name} must be a NumPy array (N x C), got {}",
                obj.get_type().name()?
            )));
        };
        let what = describe(arr);
        if arr.ndim() != 2 {
            return Err(PyValueError::new_err(format!(
                "{name} must be 2-D (N rows x C classes); got {what}"
            )));
        }
        let dtype = arr.dtype();
        let kind = dtype.kind();
        let size = dtype.itemsize();
        if kind != b'f' || !matches!(size, 2 | 4 | 8) {
            return Err(PyTypeError::new_err(format!(
                "{name} must be float32, float16 or float64; got {what}"
            )));
        }
        if !arr.is_c_contiguous() {
            return Err(PyValueError::new_err(format!(
                "{name} must be C-contiguous (row-major) so it can be read in place; got {what} (use numpy.ascontiguousarray)"
            )));
        }
        if !dtype.is_native_byteorder().unwrap_or(true) {
            return Err(PyTypeError::new_err(format!(
                "{name} must be in native byte order; got {what}"
            )));
        }
        Ok(match size {
            4 => Probs::F32(obj.extract()?),
            2 => Probs::F16(obj.extract()?),
            _ => Probs::F64(obj.extract()?),
        })
    }

    fn is_f16(&self) -> bool {
        matches!(self, Probs::F16(_))
    }

    fn pool(&self) -> PyResult<Pool<'_>> {
        let r = match self {
            Probs::F32(a) => Pool::from_f32(a.as_slice()?, a.shape()[1]),
            Probs::F16(a) => Pool::from_f16(a.as_slice()?, a.shape()[1]),
            Probs::F64(a) => Pool::from_f64(a.as_slice()?, a.shape()[1]),
        };
        r.map(|p| p.named("probs")).map_err(to_py)
    }
}

/// The job's settings as Python passes them.
struct Request {
    strategy: Strategy,
    input: String,
    temperature: f64,
    log_base: LogBase,
    seed: u64,
    renormalize: bool,
    sum_tol: Option<f64>,
}

impl Request {
    #[allow(clippy::too_many_arguments)]
    fn new(
        strategy: &str,
        input: &str,
        temperature: f64,
        log_base: &str,
        seed: u64,
        renormalize: bool,
        sum_tol: Option<f64>,
    ) -> PyResult<Self> {
        let strategy = Strategy::from_name(strategy).ok_or_else(|| {
            let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
            PyValueError::new_err(format!(
                "unknown strategy {strategy:?}; expected one of {}",
                names.join(", ")
            ))
        })?;
        if !matches!(input, "probs" | "logits") {
            return Err(PyValueError::new_err(format!(
                "input must be \"probs\" or \"logits\", got {input:?}"
            )));
        }
        let log_base = log_base.parse().map_err(|_| {
            PyValueError::new_err(format!(
                "log_base must be \"2\", \"e\" or \"10\", got {log_base:?}"
            ))
        })?;
        Ok(Request {
            strategy,
            input: input.into(),
            temperature,
            log_base,
            seed,
            renormalize,
            sum_tol,
        })
    }

    fn job(&self, f16: bool, k: usize) -> Job {
        let input = match self.input.as_str() {
            "logits" => InputForm::Logits {
                temperature: self.temperature,
            },
            _ => InputForm::Probs {
                renormalize: self.renormalize,
                sum_tol: self.sum_tol.unwrap_or(default_sum_tol(f16)),
            },
        };
        Job::new(
            ScoreSpec {
                strategy: self.strategy,
                log_base: self.log_base,
                seed: self.seed,
            },
            input,
            k,
        )
    }
}

fn parse_device(device: &str) -> PyResult<Device> {
    match device {
        "auto" => Ok(Device::Auto),
        "cpu" => Ok(Device::Cpu),
        "gpu" => Ok(Device::Gpu),
        _ => Err(PyValueError::new_err(format!(
            "device must be \"auto\", \"cpu\" or \"gpu\", got {device:?}"
        ))),
    }
}

fn parse_k(k: Option<i64>) -> PyResult<usize> {
    match k {
        None => Ok(usize::MAX),
        Some(k) if k < 0 => Err(PyValueError::new_err(format!("k must be >= 0, got {k}"))),
        Some(k) => Ok(k as usize),
    }
}

/// Exclusions given as global rows of a bigger pool, restricted to the
/// shard at `offset` (those elsewhere belong to other shards).
fn parse_exclude_in(
    obj: Option<&Bound<'_, PyAny>>,
    offset: u64,
    rows: u64,
) -> PyResult<Exclusions> {
    if offset == 0 && rows != u64::MAX {
        return parse_exclude(obj, rows);
    }
    Ok(parse_exclude(obj, u64::MAX)?.restrict(offset, rows))
}

/// Rows never to select: a sequence of row indices (or a 1-D integer
/// array), or the path of an exclusion file as the CLI reads it.
fn parse_exclude(obj: Option<&Bound<'_, PyAny>>, rows: u64) -> PyResult<Exclusions> {
    let Some(obj) = obj else {
        return Ok(Exclusions::default());
    };
    if obj.is_none() {
        return Ok(Exclusions::default());
    }
    if let Ok(path) = obj.extract::<std::path::PathBuf>()
        && !obj.is_instance_of::<pyo3::types::PyList>()
    {
        return Exclusions::read(&path, rows).map_err(to_py);
    }
    let values: Vec<i64> = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "exclude must be a sequence or 1-D array of integer row indices, or a file path; got {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    let mut out = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        if v < 0 || v as u64 >= rows {
            return Err(PyValueError::new_err(format!(
                "exclude[{i}] = {v} is not a row of this pool (0..{rows})"
            )));
        }
        out.push(v as u64);
    }
    Ok(Exclusions::new(out))
}

/// A path or a list of paths, or `None` for anything else.
fn as_paths(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<std::path::PathBuf>>> {
    if obj.is_instance_of::<pyo3::types::PyList>() || obj.is_instance_of::<pyo3::types::PyTuple>() {
        return Ok(Some(obj.extract().map_err(|_| {
            PyTypeError::new_err("paths must be a path or a list of paths to .npy shards")
        })?));
    }
    if obj.cast::<PyUntypedArray>().is_err()
        && let Ok(p) = obj.extract::<std::path::PathBuf>()
    {
        return Ok(Some(vec![p]));
    }
    Ok(None)
}

/// A selection as (priorities, global rows).
fn part_arrays<'py>(
    py: Python<'py>,
    strategy: Strategy,
    sel: &alpool::Selection,
) -> PartArrays<'py> {
    let pr: Vec<f64> = sel
        .entries
        .iter()
        .map(|e| strategy.priority(e.score))
        .collect();
    let ix: Vec<i64> = sel.entries.iter().map(|e| e.index as i64).collect();
    (PyArray1::from_vec(py, pr), PyArray1::from_vec(py, ix))
}

/// (priorities, global rows).
type PartArrays<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<i64>>);

type Selected<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f64>>);

fn selection_arrays<'py>(py: Python<'py>, sel: &alpool::Selection) -> Selected<'py> {
    let idx: Vec<i64> = sel.entries.iter().map(|e| e.index as i64).collect();
    let scores: Vec<f64> = sel.entries.iter().map(|e| e.score).collect();
    (PyArray1::from_vec(py, idx), PyArray1::from_vec(py, scores))
}

fn select_released(
    py: Python<'_>,
    pool: &Pool<'_>,
    job: Job,
    device: Device,
) -> PyResult<alpool::Selection> {
    run_released(py, |cancel| {
        let run = alpool::Run {
            device,
            adapter: None,
            progress: cancel,
        };
        alpool::select_with(pool, &job, &run).map(|o| o.selection)
    })
}

fn select_pool<'py>(
    py: Python<'py>,
    pool: &Pool<'_>,
    job: Job,
    device: Device,
) -> PyResult<Selected<'py>> {
    Ok(selection_arrays(
        py,
        &select_released(py, pool, job, device)?,
    ))
}

/// select(probs, strategy="margin", k=1000, *, exclude=None, input="probs",
/// temperature=1.0, log_base="e", seed=0, device="auto", renormalize=False,
/// sum_tol=None) -> (indices, scores)
#[pyfunction]
#[pyo3(signature = (probs=None, strategy="margin", k=Some(1000), *, exclude=None, input="probs", temperature=1.0, log_base="e", seed=0, device="auto", renormalize=false, sum_tol=None, model=None, features=None))]
#[allow(clippy::too_many_arguments)]
fn select<'py>(
    py: Python<'py>,
    probs: Option<&Bound<'py, PyAny>>,
    strategy: &str,
    k: Option<i64>,
    exclude: Option<&Bound<'py, PyAny>>,
    input: &str,
    temperature: f64,
    log_base: &str,
    seed: u64,
    device: &str,
    renormalize: bool,
    sum_tol: Option<f64>,
    model: Option<std::path::PathBuf>,
    features: Option<&Bound<'py, PyAny>>,
) -> PyResult<Selected<'py>> {
    let req = Request::new(
        strategy,
        input,
        temperature,
        log_base,
        seed,
        renormalize,
        sum_tol,
    )?;
    let (k, device) = (parse_k(k)?, parse_device(device)?);
    if let Some((m, fp)) = model_source(probs, model, features)? {
        let mut job = req.job(false, k);
        job.exclusions = parse_exclude(exclude, fp.rows())?;
        let sel = run_released(py, |cancel| {
            let (gpu, _) = alpool::api::choose_device(device, None, fp.data_bytes())?;
            let backend = gpu
                .as_ref()
                .map_or(alpool::Backend::Cpu, alpool::Backend::Gpu);
            select_features_on(backend, &m, &fp, &job, cancel).map(|(sel, _)| sel)
        })?;
        return Ok(selection_arrays(py, &sel));
    }
    let probs = Probs::from_py(probs.expect("checked by model_source"), "probs")?;
    let pool = probs.pool()?;
    let mut job = req.job(probs.is_f16(), k);
    job.exclusions = parse_exclude(exclude, pool.rows())?;
    select_pool(py, &pool, job, device)
}

/// `model=` and `features=` instead of `probs`: the saved model and its
/// memory-mapped feature files; `None` when `probs` is given.
fn model_source(
    probs: Option<&Bound<'_, PyAny>>,
    model: Option<std::path::PathBuf>,
    features: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<(Mlp, FeaturePool)>> {
    match (probs, model, features) {
        (Some(_), None, None) => Ok(None),
        (None, Some(m), Some(f)) => {
            let paths = as_paths(f)?.ok_or_else(|| {
                PyTypeError::new_err(
                    "features must be a path or a list of paths to .npy feature files",
                )
            })?;
            let model = Mlp::load(&m).map_err(to_py)?;
            let pool = FeaturePool::open(&paths).map_err(to_py)?;
            Ok(Some((model, pool)))
        }
        _ => Err(PyTypeError::new_err(
            "give probs (an N x C array), or model= (a saved model) and features= (its feature files), not both",
        )),
    }
}

/// score(probs, strategy="margin", *, ...) -> scores, one per row
#[pyfunction]
#[pyo3(signature = (probs=None, strategy="margin", *, input="probs", temperature=1.0, log_base="e", seed=0, renormalize=false, sum_tol=None, model=None, features=None))]
#[allow(clippy::too_many_arguments)]
fn score<'py>(
    py: Python<'py>,
    probs: Option<&Bound<'py, PyAny>>,
    strategy: &str,
    input: &str,
    temperature: f64,
    log_base: &str,
    seed: u64,
    renormalize: bool,
    sum_tol: Option<f64>,
    model: Option<std::path::PathBuf>,
    features: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let req = Request::new(
        strategy,
        input,
        temperature,
        log_base,
        seed,
        renormalize,
        sum_tol,
    )?;
    if let Some((m, fp)) = model_source(probs, model, features)? {
        let job = req.job(false, 0);
        let scores = run_released(py, |cancel| {
            let mut out = Vec::with_capacity(fp.rows() as usize);
            fp.predict_blocks(&m, cancel, &mut |g0, p| {
                let pool = Pool::from_f32(p, m.classes())?.with_row_offset(g0);
                alpool::backend::cpu::score_all(&pool, &job, &alpool::backend::Silent, &mut |s| {
                    out.extend_from_slice(s);
                    Ok(())
                })
            })?;
            Ok(out)
        })?;
        return Ok(PyArray1::from_vec(py, scores));
    }
    let probs = Probs::from_py(probs.expect("checked by model_source"), "probs")?;
    let pool = probs.pool()?;
    let job = req.job(probs.is_f16(), 0);
    let scores = run_released(py, |cancel| {
        job.check(&pool)?;
        let mut out = Vec::with_capacity(pool.rows() as usize);
        alpool::backend::cpu::score_all(&pool, &job, cancel, &mut |s| {
            out.extend_from_slice(s);
            Ok(())
        })?;
        Ok(out)
    })?;
    Ok(PyArray1::from_vec(py, scores))
}

/// select_files(paths, strategy="margin", k=1000, *, ...) -> (indices, scores)
#[pyfunction]
#[pyo3(signature = (paths, strategy="margin", k=Some(1000), *, exclude=None, input="probs", temperature=1.0, log_base="e", seed=0, device="auto", renormalize=false, sum_tol=None, row_offset=0))]
#[allow(clippy::too_many_arguments)]
fn select_files<'py>(
    py: Python<'py>,
    paths: &Bound<'py, PyAny>,
    strategy: &str,
    k: Option<i64>,
    exclude: Option<&Bound<'py, PyAny>>,
    input: &str,
    temperature: f64,
    log_base: &str,
    seed: u64,
    device: &str,
    renormalize: bool,
    sum_tol: Option<f64>,
    row_offset: u64,
) -> PyResult<Selected<'py>> {
    let req = Request::new(
        strategy,
        input,
        temperature,
        log_base,
        seed,
        renormalize,
        sum_tol,
    )?;
    let (k, device) = (parse_k(k)?, parse_device(device)?);
    let paths = as_paths(paths)?.ok_or_else(|| {
        PyTypeError::new_err("paths must be a path or a list of paths to .npy shards")
    })?;
    let pool = Pool::open(&paths)
        .map_err(to_py)?
        .with_row_offset(row_offset);
    let mut job = req.job(pool.has_f16(), k);
    job.exclusions = parse_exclude_in(exclude, row_offset, pool.rows())?;
    select_pool(py, &pool, job, device)
}

/// select_part(probs, strategy, k, *, rows=None, row_offset=0, ...) ->
/// (priorities, global rows): one shard's k best for an exact merge.
#[pyfunction]
#[pyo3(signature = (probs, strategy="margin", k=Some(1000), *, rows=None, row_offset=0, exclude=None, input="probs", temperature=1.0, log_base="e", seed=0, device="cpu", renormalize=false, sum_tol=None, model=None))]
#[allow(clippy::too_many_arguments)]
fn select_part<'py>(
    py: Python<'py>,
    probs: &Bound<'py, PyAny>,
    strategy: &str,
    k: Option<i64>,
    rows: Option<&Bound<'py, PyAny>>,
    row_offset: u64,
    exclude: Option<&Bound<'py, PyAny>>,
    input: &str,
    temperature: f64,
    log_base: &str,
    seed: u64,
    device: &str,
    renormalize: bool,
    sum_tol: Option<f64>,
    model: Option<std::path::PathBuf>,
) -> PyResult<PartArrays<'py>> {
    let req = Request::new(
        strategy,
        input,
        temperature,
        log_base,
        seed,
        renormalize,
        sum_tol,
    )?;
    let (k, device) = (parse_k(k)?, parse_device(device)?);
    let strategy = req.strategy;
    if let Some(model) = model {
        // Feature files through a model: the fused path, at this shard's
        // global offset.
        let paths = as_paths(probs)?.ok_or_else(|| {
            PyTypeError::new_err("with model=, give the shard's feature files (paths)")
        })?;
        let m = Mlp::load(&model).map_err(to_py)?;
        let fp = FeaturePool::open(&paths)
            .map_err(to_py)?
            .with_row_offset(row_offset);
        let mut job = req.job(false, k);
        job.exclusions = parse_exclude_in(exclude, row_offset, fp.rows())?;
        let sel = run_released(py, |cancel| select_features(&m, &fp, &job, cancel))?;
        return Ok(part_arrays(py, strategy, &sel));
    }
    if let Some(paths) = as_paths(probs)? {
        // Shard files: memory-mapped by the engine, read in chunks.
        let pool = Pool::open(&paths)
            .map_err(to_py)?
            .with_row_offset(row_offset);
        let mut job = req.job(pool.has_f16(), k);
        job.exclusions = parse_exclude_in(exclude, row_offset, pool.rows())?;
        let sel = select_released(py, &pool, job, device)?;
        return Ok(part_arrays(py, strategy, &sel));
    }
    let probs = Probs::from_py(probs, "probs")?;
    let ranked: Vec<Ranked> = match rows {
        None => {
            let pool = probs.pool()?.with_row_offset(row_offset);
            let mut job = req.job(probs.is_f16(), k);
            job.exclusions = parse_exclude_in(exclude, row_offset, pool.rows())?;
            select_released(py, &pool, job, device)?
                .entries
                .iter()
                .map(|e| Ranked {
                    priority: strategy.priority(e.score),
                    index: e.index,
                })
                .collect()
        }
        Some(rows) => {
            // Rows in any order (a Ray Data batch): every score, then the
            // k best under the global tie rule.
            let rows: Vec<i64> = rows.extract().map_err(|_| {
                PyTypeError::new_err("rows must be a 1-D integer array of global row indices")
            })?;
            let pool = probs.pool()?;
            if rows.len() as u64 != pool.rows() || rows.iter().any(|&r| r < 0) {
                return Err(PyValueError::new_err(format!(
                    "rows must hold one non-negative global index per row of probs ({} rows), got {}",
                    pool.rows(),
                    rows.len()
                )));
            }
            let excluded = parse_exclude_in(exclude, 0, u64::MAX)?;
            let job = req.job(probs.is_f16(), 0);
            run_released(py, |cancel| {
                job.check(&pool)?;
                let mut top = alpool::select::TopK::new(k);
                let mut at = 0usize;
                alpool::backend::cpu::score_all(&pool, &job, cancel, &mut |scores| {
                    for &s in scores {
                        let row = rows[at] as u64;
                        at += 1;
                        if excluded.contains(row) {
                            continue;
                        }
                        // The random strategy hashes the row: the global one.
                        let priority = match strategy {
                            Strategy::Random => alpool::score::random_priority(job.spec.seed, row),
                            _ => strategy.priority(s),
                        };
                        top.offer(Ranked {
                            priority,
                            index: row,
                        });
                    }
                    Ok(())
                })?;
                Ok(top.into_sorted())
            })?
        }
    };
    let pr: Vec<f64> = ranked.iter().map(|r| r.priority).collect();
    let ix: Vec<i64> = ranked.iter().map(|r| r.index as i64).collect();
    Ok((PyArray1::from_vec(py, pr), PyArray1::from_vec(py, ix)))
}

/// merge(parts, strategy, k) -> (indices, scores): the exact top k over
/// parts from select_part, ties to the lower global row.
#[pyfunction]
#[pyo3(signature = (parts, strategy="margin", k=Some(1000)))]
fn merge<'py>(
    py: Python<'py>,
    parts: Vec<(Vec<f64>, Vec<i64>)>,
    strategy: &str,
    k: Option<i64>,
) -> PyResult<Selected<'py>> {
    let strategy = Strategy::from_name(strategy)
        .ok_or_else(|| PyValueError::new_err(format!("unknown strategy {strategy:?}")))?;
    let k = parse_k(k)?;
    let mut ranked = Vec::with_capacity(parts.len());
    for (i, (pr, ix)) in parts.into_iter().enumerate() {
        if pr.len() != ix.len() || ix.iter().any(|&r| r < 0) || pr.iter().any(|p| p.is_nan()) {
            return Err(PyValueError::new_err(format!(
                "part {i}: priorities and rows must pair up, with rows >= 0 and no NaN"
            )));
        }
        ranked.push(
            pr.into_iter()
                .zip(ix)
                .map(|(priority, index)| Ranked {
                    priority,
                    index: index as u64,
                })
                .collect::<Vec<_>>(),
        );
    }
    let sel = py.detach(|| alpool::part::merge_ranked(strategy, &ranked, k));
    Ok(selection_arrays(py, &sel))
}

/// select_batch(probs, embeddings, strategy="badge", k=100, *, exclude=None,
/// input="probs", temperature=1.0, seed=0, candidates=None, clusters=None,
/// device="cpu", renormalize=False, sum_tol=None) -> (indices, scores)
#[pyfunction]
#[pyo3(signature = (probs, embeddings, strategy="badge", k=100, *, exclude=None, input="probs", temperature=1.0, seed=0, candidates=None, clusters=None, device="cpu", renormalize=false, sum_tol=None))]
#[allow(clippy::too_many_arguments)]
fn select_batch<'py>(
    py: Python<'py>,
    probs: &Bound<'py, PyAny>,
    embeddings: &Bound<'py, PyAny>,
    strategy: &str,
    k: usize,
    exclude: Option<&Bound<'py, PyAny>>,
    input: &str,
    temperature: f64,
    seed: u64,
    candidates: Option<usize>,
    clusters: Option<usize>,
    device: &str,
    renormalize: bool,
    sum_tol: Option<f64>,
) -> PyResult<Selected<'py>> {
    let batch = alpool::BatchStrategy::from_name(strategy).ok_or_else(|| {
        let names: Vec<&str> = alpool::BatchStrategy::ALL.iter().map(|s| s.name()).collect();
        PyValueError::new_err(format!(
            "unknown batch strategy {strategy:?}; expected one of {} (row-wise strategies: alpool.select)",
            names.join(", ")
        ))
    })?;
    let req = Request::new(
        "margin",
        input,
        temperature,
        "e",
        seed,
        renormalize,
        sum_tol,
    )?;
    let device = parse_device(device)?;
    let probs = Probs::from_py(probs, "probs")?;
    let emb = Probs::from_py(embeddings, "embeddings")?;
    let pool = probs.pool()?;
    let emb_pool = emb.pool()?.named("embeddings");
    let mut job = alpool::BatchJob::new(batch, req.job(probs.is_f16(), k).input, k);
    job.seed = seed;
    job.candidates = candidates.unwrap_or(0);
    job.clusters = clusters.unwrap_or(0);
    job.exclusions = parse_exclude(exclude, pool.rows())?;
    let sel = run_released(py, |cancel| {
        let bytes = pool.data_bytes() + emb_pool.data_bytes();
        let (gpu, _) = alpool::api::choose_device(device, None, bytes)?;
        let backend = gpu
            .as_ref()
            .map_or(alpool::Backend::Cpu, alpool::Backend::Gpu);
        alpool::select_batch_on(backend, &pool, &emb_pool, &job, cancel)
    })?;
    Ok(selection_arrays(py, &sel))
}

#[pymodule]
fn _alpool(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(select, m)?)?;
    m.add_function(wrap_pyfunction!(score, m)?)?;
    m.add_function(wrap_pyfunction!(select_files, m)?)?;
    m.add_function(wrap_pyfunction!(select_part, m)?)?;
    m.add_function(wrap_pyfunction!(merge, m)?)?;
    m.add_function(wrap_pyfunction!(select_batch, m)?)?;
    m.add("AlpoolError", m.py().get_type::<AlpoolError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
