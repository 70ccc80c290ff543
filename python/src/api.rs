//! The native functions the package calls: each reads one request
//! ([`crate::request`]) and runs the library's door with the GIL released.

use alpool::part::{merge_ranked, mergeable};
use alpool::score::Ranked;
use alpool::{Run, Selection};
use numpy::PyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::release::run_released;
use crate::request::{Options, RawInputs, Sources};

/// (indices, scores), best first.
type Selected<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f64>>);

/// (priorities, global rows).
type Part<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<i64>>);

fn arrays<'py>(py: Python<'py>, sel: &Selection) -> Selected<'py> {
    let idx: Vec<i64> = sel.entries.iter().map(|e| e.index as i64).collect();
    let scores: Vec<f64> = sel.entries.iter().map(|e| e.score).collect();
    (PyArray1::from_vec(py, idx), PyArray1::from_vec(py, scores))
}

/// The door, on the request's inputs and options.
fn run_door(
    py: Python<'_>,
    inputs: &RawInputs<'_>,
    opts: &Options<'_>,
    part: bool,
) -> PyResult<Selection> {
    let sources = Sources::open(inputs)?;
    let job = opts.job(&sources, part)?;
    let device = opts.device.0;
    let adapter = opts.adapter.clone();
    sources.with(|inputs| {
        run_released(py, |cancel| {
            let run = Run {
                device,
                adapter,
                progress: cancel,
                gpu: None,
            };
            alpool::select(inputs, &job, &run).map(|o| o.selection)
        })
    })
}

/// What the strategy built on the way (ProbCover's δ, graph and coverage,
/// k-means' iterations): the CLI prints these on stderr; here they go to
/// the `alpool` logger at INFO, so a script sees them with logging on and
/// stays quiet without.
fn log_notes(py: Python<'_>, sel: &Selection) -> PyResult<()> {
    if sel.notes.is_empty() {
        return Ok(());
    }
    let logger = py
        .import("logging")?
        .call_method1("getLogger", ("alpool",))?;
    for note in &sel.notes {
        logger.call_method1("info", (note,))?;
    }
    Ok(())
}

/// select(inputs, options) -> (indices, scores)
#[pyfunction]
pub fn select<'py>(
    py: Python<'py>,
    inputs: RawInputs<'py>,
    options: Options<'py>,
) -> PyResult<Selected<'py>> {
    let sel = run_door(py, &inputs, &options, false)?;
    log_notes(py, &sel)?;
    Ok(arrays(py, &sel))
}

/// select_part(inputs, options) -> (priorities, global rows): one shard's
/// k best, for an exact merge.
#[pyfunction]
pub fn select_part<'py>(
    py: Python<'py>,
    inputs: RawInputs<'py>,
    options: Options<'py>,
) -> PyResult<Part<'py>> {
    let query = options.strategy.0;
    if !mergeable(query, options.stochastic()) {
        return Err(PyValueError::new_err(format!(
            "{query}: its picks depend on the whole pool (a batch strategy, or softrank's ranks); shards of it cannot be merged"
        )));
    }
    let sel = run_door(py, &inputs, &options, true)?;
    let pr: Vec<f64> = sel
        .entries
        .iter()
        .map(|e| query.priority(e.score))
        .collect();
    let ix: Vec<i64> = sel.entries.iter().map(|e| e.index as i64).collect();
    Ok((PyArray1::from_vec(py, pr), PyArray1::from_vec(py, ix)))
}

/// score(inputs, options) -> every row's score, in row order
#[pyfunction]
pub fn score<'py>(
    py: Python<'py>,
    inputs: RawInputs<'py>,
    options: Options<'py>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let sources = Sources::open(&inputs)?;
    let job = options.job(&sources, false)?;
    let scores = sources.with(|inputs| {
        run_released(py, |cancel| {
            let mut out = Vec::new();
            alpool::score_each(inputs, &job, cancel, &mut |s| {
                out.extend_from_slice(s);
                Ok(())
            })?;
            Ok(out)
        })
    })?;
    Ok(PyArray1::from_vec(py, scores))
}

/// merge(parts, options) -> (indices, scores): the exact top k over
/// parts from select_part (under the same options), ties to the lower
/// global row.
#[pyfunction]
pub fn merge<'py>(
    py: Python<'py>,
    parts: Vec<(Vec<f64>, Vec<i64>)>,
    options: Options<'py>,
) -> PyResult<Selected<'py>> {
    let strategy = options.strategy.0;
    if !mergeable(strategy, options.stochastic()) {
        return Err(PyValueError::new_err(format!(
            "{strategy}: its picks depend on the whole pool (a batch strategy, or softrank's ranks); it has no parts to merge"
        )));
    }
    let k = options.k()?;
    let mut ranked = Vec::with_capacity(parts.len());
    for (i, (pr, ix)) in parts.into_iter().enumerate() {
        if pr.len() != ix.len() || ix.iter().any(|&r| r < 0) || pr.iter().any(|p| p.is_nan()) {
            return Err(PyValueError::new_err(format!(
                "part {i}: priorities and rows must pair up, with rows >= 0 and no NaN"
            )));
        }
        let part: Vec<Ranked> = pr
            .into_iter()
            .zip(ix)
            .map(|(priority, index)| Ranked {
                priority,
                index: index as u64,
            })
            .collect();
        ranked.push(part);
    }
    let keys = options.keys();
    let sel = py.detach(|| merge_ranked(strategy, keys, &ranked, k));
    Ok(arrays(py, &sel))
}
