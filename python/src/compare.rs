//! The native half of `alpool.compare`: protocols, each restart's rows,
//! the built-in learner's runs and the statistics, all from the library,
//! so that a scikit-learn learner's comparison is split, counted and
//! tested exactly as the command's. Documents cross as JSON text.

use std::path::PathBuf;

use alpool::Method;
use alpool::al::Dataset;
use alpool::compare::{self, Curve, Overrides, Protocol};
use alpool::learner::MlpConfig;
use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::release::{run_released, to_py};

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> PyResult<T> {
    serde_json::from_str(text).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Class labels as indices, each checked to be a non-negative integer.
fn labels(y: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<usize>> {
    let y = y.as_array();
    y.iter()
        .enumerate()
        .map(|(i, &c)| {
            usize::try_from(c).map_err(|_| {
                PyValueError::new_err(format!("y[{i}] = {c}: labels must be class indices 0..K-1"))
            })
        })
        .collect()
}

/// protocol(name, overrides) -> the resolved protocol (JSON).
#[pyfunction]
pub fn protocol(name: &str, overrides: &str) -> PyResult<String> {
    let o: Overrides = from_json(overrides, "protocol overrides")?;
    to_json(&Protocol::resolve(name, &o).map_err(to_py)?)
}

type Rows<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

/// restart_rows(y, protocol, seed) -> (pool, test, initial): the rows a
/// restart seeded `seed` splits and starts from, after checking the
/// protocol against the labels.
#[pyfunction]
pub fn restart_rows<'py>(
    py: Python<'py>,
    y: PyReadonlyArray1<'py, i64>,
    protocol: &str,
    seed: u64,
) -> PyResult<Rows<'py>> {
    let p: Protocol = from_json(protocol, "protocol")?;
    let y = labels(&y)?;
    p.check(&y).map_err(to_py)?;
    let (split, initial) = compare::restart_rows(&y, &p, seed);
    let arr = |v: Vec<usize>| PyArray1::from_vec(py, v.into_iter().map(|i| i as i64).collect());
    Ok((arr(split.pool), arr(split.test), arr(initial)))
}

/// method(name, beta) -> (strategy, kind or None): a strategy's name,
/// perhaps prefixed by a stochastic batch's kind (`power-bald`), checked
/// as the library checks it (no kind on random, nor on a strategy that
/// picks its own batch; beta above 0).
#[pyfunction]
pub fn method(name: &str, beta: f64) -> PyResult<(String, Option<String>)> {
    let m = Method::parse(name, beta).map_err(|e| to_py(alpool::Error::Config(e)))?;
    Ok((
        m.query.name().to_string(),
        m.stochastic.map(|s| s.kind.name().to_string()),
    ))
}

/// compare_mlp(x, y, strategies, protocol, seed, committee=5, mc_samples=0,
/// dropout=0.0, beta=1.0) -> curves (JSON): the built-in MLP's runs (a
/// committee of `committee` for the strategies that read samples, or
/// `mc_samples` MC-dropout passes of each round's model trained with
/// `dropout`; `power-bald` and the like draw their batches at inverse
/// temperature `beta`), with the GIL released.
#[pyfunction]
#[pyo3(signature = (x, y, strategies, protocol, seed, committee = 5, mc_samples = 0, dropout = 0.0, beta = 1.0))]
#[allow(clippy::too_many_arguments)]
pub fn compare_mlp(
    py: Python<'_>,
    x: PyReadonlyArray2<'_, f32>,
    y: PyReadonlyArray1<'_, i64>,
    strategies: Vec<String>,
    protocol: &str,
    seed: u64,
    committee: usize,
    mc_samples: usize,
    dropout: f32,
    beta: f64,
) -> PyResult<String> {
    let p: Protocol = from_json(protocol, "protocol")?;
    let dim = x.as_array().ncols();
    let xs = x.as_array().iter().copied().collect::<Vec<f32>>();
    let y = labels(&y)?;
    let data = Dataset::new(xs, y, dim, "<arrays>").map_err(to_py)?;
    let methods = strategies
        .iter()
        .map(|s| Method::parse(s, beta).map_err(|e| to_py(alpool::Error::Config(e))))
        .collect::<PyResult<Vec<Method>>>()?;
    // Ctrl-C stops the runs not yet started.
    let runs = run_released(py, |cancel| {
        compare::run(
            &data,
            &p,
            &methods,
            (
                seed,
                MlpConfig {
                    dropout,
                    ..MlpConfig::default()
                },
                (committee, mc_samples),
            ),
            cancel,
        )
    })?;
    to_json(&compare::curves(&runs))
}

/// summarize(curves, names, protocol, target, out, meta) -> the comparison
/// document (JSON); with `out`, also written there as `alpool compare`
/// writes it.
#[pyfunction]
#[pyo3(signature = (curves, names, protocol, target, out, meta))]
pub fn summarize(
    curves: &str,
    names: Vec<String>,
    protocol: &str,
    target: Option<f64>,
    out: Option<PathBuf>,
    meta: &str,
) -> PyResult<String> {
    let curves: Vec<Curve> = from_json(curves, "curves")?;
    let p: Protocol = from_json(protocol, "protocol")?;
    let meta: serde_json::Value = from_json(meta, "meta")?;
    let cmp = compare::summarize(&curves, &names, &p, target).map_err(to_py)?;
    if let Some(dir) = out {
        compare::write(&dir, &cmp, &curves, &meta).map_err(to_py)?;
    }
    to_json(&compare::document(&cmp, &curves, &meta))
}
