//! The Python face of alpool: NumPy arrays in, exact selections out, on the
//! library's one front door (`alpool::select`). C-contiguous float32 and
//! float16 arrays are borrowed in place; the work runs with the GIL
//! released on a helper thread, while the calling thread checks for Ctrl-C
//! every few milliseconds and asks the engine to stop between chunks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use alpool::backend::Progress;
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

/// A 2-D probability (or logit) array as the engine reads it: float32 and
/// float16 borrowed when C-contiguous, float64 rounded to float32 (one
/// copy). Anything else is refused with its shape, dtype and order.
enum Probs<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F16(PyReadonlyArray2<'py, half::f16>),
    F64(Vec<f32>, usize),
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
            _ => {
                let a: PyReadonlyArray2<'py, f64> = obj.extract()?;
                let c = a.shape()[1];
                let v = a.as_slice()?.iter().map(|&x| x as f32).collect();
                Probs::F64(v, c)
            }
        })
    }

    fn is_f16(&self) -> bool {
        matches!(self, Probs::F16(_))
    }

    fn pool(&self) -> PyResult<Pool<'_>> {
        let r = match self {
            Probs::F32(a) => Pool::from_f32(a.as_slice()?, a.shape()[1]),
            Probs::F16(a) => Pool::from_f16(a.as_slice()?, a.shape()[1]),
            Probs::F64(v, c) => Pool::from_f32(v, *c),
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

type Selected<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f64>>);

fn selection_arrays<'py>(py: Python<'py>, sel: &alpool::Selection) -> Selected<'py> {
    let idx: Vec<i64> = sel.entries.iter().map(|e| e.index as i64).collect();
    let scores: Vec<f64> = sel.entries.iter().map(|e| e.score).collect();
    (PyArray1::from_vec(py, idx), PyArray1::from_vec(py, scores))
}

fn select_pool<'py>(
    py: Python<'py>,
    pool: &Pool<'_>,
    job: Job,
    device: Device,
) -> PyResult<Selected<'py>> {
    let sel = run_released(py, |cancel| {
        let run = alpool::Run {
            device,
            adapter: None,
            progress: cancel,
        };
        alpool::select_with(pool, &job, &run).map(|o| o.selection)
    })?;
    Ok(selection_arrays(py, &sel))
}

/// select(probs, strategy="margin", k=1000, *, exclude=None, input="probs",
/// temperature=1.0, log_base="e", seed=0, device="auto", renormalize=False,
/// sum_tol=None) -> (indices, scores)
#[pyfunction]
#[pyo3(signature = (probs, strategy="margin", k=Some(1000), *, exclude=None, input="probs", temperature=1.0, log_base="e", seed=0, device="auto", renormalize=false, sum_tol=None))]
#[allow(clippy::too_many_arguments)]
fn select<'py>(
    py: Python<'py>,
    probs: &Bound<'py, PyAny>,
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
    let probs = Probs::from_py(probs, "probs")?;
    let pool = probs.pool()?;
    let mut job = req.job(probs.is_f16(), k);
    job.exclusions = parse_exclude(exclude, pool.rows())?;
    select_pool(py, &pool, job, device)
}

/// score(probs, strategy="margin", *, ...) -> scores, one per row
#[pyfunction]
#[pyo3(signature = (probs, strategy="margin", *, input="probs", temperature=1.0, log_base="e", seed=0, renormalize=false, sum_tol=None))]
#[allow(clippy::too_many_arguments)]
fn score<'py>(
    py: Python<'py>,
    probs: &Bound<'py, PyAny>,
    strategy: &str,
    input: &str,
    temperature: f64,
    log_base: &str,
    seed: u64,
    renormalize: bool,
    sum_tol: Option<f64>,
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
    let probs = Probs::from_py(probs, "probs")?;
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
#[pyo3(signature = (paths, strategy="margin", k=Some(1000), *, exclude=None, input="probs", temperature=1.0, log_base="e", seed=0, device="auto", renormalize=false, sum_tol=None))]
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
    let paths: Vec<std::path::PathBuf> = match paths.extract::<std::path::PathBuf>() {
        Ok(p) if !paths.is_instance_of::<pyo3::types::PyList>() => vec![p],
        _ => paths.extract().map_err(|_| {
            PyTypeError::new_err("paths must be a path or a list of paths to .npy shards")
        })?,
    };
    let pool = Pool::open(&paths).map_err(to_py)?;
    let mut job = req.job(pool.has_f16(), k);
    job.exclusions = parse_exclude(exclude, pool.rows())?;
    select_pool(py, &pool, job, device)
}

#[pymodule]
fn _alpool(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(select, m)?)?;
    m.add_function(wrap_pyfunction!(score, m)?)?;
    m.add_function(wrap_pyfunction!(select_files, m)?)?;
    m.add("AlpoolError", m.py().get_type::<AlpoolError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
